//! The app's own state in SQLite (`DATA/app.sqlite`): users with their role and partners,
//! argon2id password hashes, sign-in sessions with their CSRF token, failed sign-ins for
//! throttling, and the audit log of sign-ins and exports.

use std::path::Path;
use std::sync::Mutex;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use prism_engine::Scope;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the app database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Every partner, and direct sales.
    ChannelExecutive,
    /// The partners assigned to them.
    ChannelManager,
    /// One partner: its own data and channel benchmarks.
    PartnerManager,
    /// Users and loads; sees every partner.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::ChannelExecutive, Role::ChannelManager, Role::PartnerManager, Role::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Role::ChannelExecutive => "channel_executive",
            Role::ChannelManager => "channel_manager",
            Role::PartnerManager => "partner_manager",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
            StoreError::Invalid(format!("role {s:?}: the roles are {}{}", names.join(", "), prism_model::did_you_mean(s, names.iter().copied())))
        })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// The partner of a partner manager, the partners of a channel manager.
    pub partners: Vec<String>,
}

impl User {
    /// The scope every query of this user runs with.
    pub fn scope(&self) -> Scope {
        match self.role {
            Role::ChannelExecutive | Role::Admin => Scope::All,
            Role::ChannelManager => Scope::Partners(self.partners.iter().cloned().collect()),
            Role::PartnerManager => Scope::Partner(self.partners.first().cloned().unwrap_or_default()),
        }
    }

    pub fn is_partner_user(&self) -> bool {
        self.role == Role::PartnerManager
    }
}

/// How long a session lasts without signing in again.
pub const SESSION_HOURS: i64 = 12;
/// Failed sign-ins for one user name within the window that lock it; from one address (an
/// office behind one gateway has many users), more.
pub const MAX_FAILURES: i64 = 5;
pub const MAX_FAILURES_PER_ADDRESS: i64 = 20;
pub const FAILURE_WINDOW_MINUTES: i64 = 15;

pub struct Store {
    conn: Mutex<Connection>,
}

/// 32 random bytes as hex: session ids and CSRF tokens.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the operating system's random source");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA foreign_keys = ON;
             CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, role TEXT NOT NULL, password_hash TEXT NOT NULL, created_at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS user_partners (user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE, partner_id TEXT NOT NULL, PRIMARY KEY (user_id, partner_id));
             CREATE TABLE IF NOT EXISTS sessions (token TEXT PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE, csrf TEXT NOT NULL, expires_at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS failed_sign_ins (name TEXT NOT NULL, address TEXT NOT NULL, at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS audit (at INTEGER NOT NULL, user_name TEXT NOT NULL, event TEXT NOT NULL, detail TEXT NOT NULL);",
        )?;
        Ok(Store { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add_user(&self, name: &str, role: Role, partners: &[String], password: &str) -> Result<()> {
        if name.trim().is_empty() {
            return Err(StoreError::Invalid("a user needs a name".into()));
        }
        match role {
            Role::PartnerManager if partners.len() != 1 => {
                return Err(StoreError::Invalid("a partner_manager belongs to exactly one partner: give --partner ID".into()));
            }
            Role::ChannelManager if partners.is_empty() => {
                return Err(StoreError::Invalid("a channel_manager manages at least one partner: give --partners ID,ID".into()));
            }
            Role::ChannelExecutive | Role::Admin if !partners.is_empty() => {
                return Err(StoreError::Invalid(format!("a {} sees every partner: --partner/--partners do not apply", role.name())));
            }
            _ => {}
        }
        check_password(password)?;
        let hash = hash(password)?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let exists: Option<i64> = tx.query_row("SELECT id FROM users WHERE name = ?1", [name], |r| r.get(0)).optional()?;
        if exists.is_some() {
            return Err(StoreError::Invalid(format!("user {name:?} already exists")));
        }
        tx.execute("INSERT INTO users (name, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)", params![name, role.name(), hash, now()])?;
        let id = tx.last_insert_rowid();
        for p in partners {
            tx.execute("INSERT OR IGNORE INTO user_partners (user_id, partner_id) VALUES (?1, ?2)", params![id, p])?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn users(&self) -> Result<Vec<User>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id, name, role FROM users ORDER BY name")?;
        let rows: Vec<(i64, String, String)> = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<std::result::Result<_, _>>()?;
        drop(stmt);
        rows.into_iter().map(|(id, name, role)| Ok(User { id, name, role: Role::parse(&role)?, partners: partners_of(&conn, id)? })).collect()
    }

    pub fn remove_user(&self, name: &str) -> Result<()> {
        let n = self.conn().execute("DELETE FROM users WHERE name = ?1", [name])?;
        if n == 0 {
            return Err(StoreError::Invalid(format!("no user {name:?}")));
        }
        Ok(())
    }

    pub fn set_password(&self, name: &str, password: &str) -> Result<()> {
        check_password(password)?;
        let hash = hash(password)?;
        let conn = self.conn();
        let n = conn.execute("UPDATE users SET password_hash = ?1 WHERE name = ?2", params![hash, name])?;
        if n == 0 {
            return Err(StoreError::Invalid(format!("no user {name:?}")));
        }
        // A new password ends every session of the old one.
        conn.execute("DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE name = ?1)", [name])?;
        Ok(())
    }

    /// The user, when the password is theirs. The same time is spent for an unknown name, so
    /// that the answer's speed does not tell which names exist.
    pub fn verify(&self, name: &str, password: &str) -> Result<Option<User>> {
        let found: Option<(i64, String, String)> = self
            .conn()
            .query_row("SELECT id, role, password_hash FROM users WHERE name = ?1", [name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let stored = found.as_ref().map_or_else(dummy_hash, |f| f.2.clone());
        let ok = PasswordHash::new(&stored).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok());
        match found {
            Some((id, role, _)) if ok => {
                let conn = self.conn();
                Ok(Some(User { id, name: name.to_string(), role: Role::parse(&role)?, partners: partners_of(&conn, id)? }))
            }
            _ => Ok(None),
        }
    }

    /// A new session: its token (the cookie) and its CSRF token (in every form).
    pub fn start_session(&self, user: &User) -> Result<(String, String)> {
        let (token, csrf) = (random_token(), random_token());
        let conn = self.conn();
        conn.execute("DELETE FROM sessions WHERE expires_at < ?1", [now()])?;
        conn.execute("INSERT INTO sessions (token, user_id, csrf, expires_at) VALUES (?1, ?2, ?3, ?4)", params![token, user.id, csrf, now() + SESSION_HOURS * 3600])?;
        Ok((token, csrf))
    }

    /// The signed-in user of a session token and the session's CSRF token, while it lasts.
    pub fn session(&self, token: &str) -> Result<Option<(User, String)>> {
        let conn = self.conn();
        let found: Option<(i64, String, String, String)> = conn
            .query_row(
                "SELECT u.id, u.name, u.role, s.csrf FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token = ?1 AND s.expires_at >= ?2",
                params![token, now()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        match found {
            None => Ok(None),
            Some((id, name, role, csrf)) => Ok(Some((User { id, name, role: Role::parse(&role)?, partners: partners_of(&conn, id)? }, csrf))),
        }
    }

    pub fn end_session(&self, token: &str) -> Result<()> {
        self.conn().execute("DELETE FROM sessions WHERE token = ?1", [token])?;
        Ok(())
    }

    /// Minutes until a name or an address may try again, when it failed too often lately.
    pub fn locked_for(&self, name: &str, address: &str) -> Result<Option<i64>> {
        let since = now() - FAILURE_WINDOW_MINUTES * 60;
        let conn = self.conn();
        let mut worst = None;
        for (column, value, limit) in [("name", name, MAX_FAILURES), ("address", address, MAX_FAILURES_PER_ADDRESS)] {
            let (count, first): (i64, Option<i64>) = conn.query_row(
                &format!("SELECT COUNT(*), MIN(at) FROM failed_sign_ins WHERE {column} = ?1 AND at >= ?2"),
                params![value, since],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if count >= limit {
                let minutes = ((first.unwrap_or(since) + FAILURE_WINDOW_MINUTES * 60 - now()) / 60).max(1);
                worst = Some(worst.map_or(minutes, |w: i64| w.max(minutes)));
            }
        }
        Ok(worst)
    }

    pub fn record_failure(&self, name: &str, address: &str) -> Result<()> {
        self.conn().execute("INSERT INTO failed_sign_ins (name, address, at) VALUES (?1, ?2, ?3)", params![name, address, now()])?;
        Ok(())
    }

    pub fn audit(&self, user: &str, event: &str, detail: &str) -> Result<()> {
        self.conn().execute("INSERT INTO audit (at, user_name, event, detail) VALUES (?1, ?2, ?3, ?4)", params![now(), user, event, detail])?;
        Ok(())
    }

    /// The audit log, newest first: (unix time, user, event, detail).
    pub fn audit_log(&self, limit: usize) -> Result<Vec<(i64, String, String, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT at, user_name, event, detail FROM audit ORDER BY rowid DESC LIMIT ?1")?;
        let rows = stmt.query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect::<std::result::Result<_, _>>()?;
        Ok(rows)
    }
}

fn partners_of(conn: &Connection, id: i64) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT partner_id FROM user_partners WHERE user_id = ?1 ORDER BY partner_id")?;
    let rows = stmt.query_map([id], |r| r.get(0))?.collect::<std::result::Result<_, _>>()?;
    Ok(rows)
}

fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < 8 {
        return Err(StoreError::Invalid("a password has at least 8 characters".into()));
    }
    Ok(())
}

fn hash(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Invalid(format!("hashing the password: {e}")))
}

/// A hash verified against for unknown names, made once.
fn dummy_hash() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash("no user has this password").expect("hashing")).clone()
}
