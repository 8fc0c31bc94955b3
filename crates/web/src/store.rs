//! The app's own state in SQLite (`DATA/app.sqlite`): users with their role and partners,
//! argon2id password hashes, sign-in sessions with their CSRF token, failed sign-ins for
//! throttling, the audit log of sign-ins and exports, saved questions, API tokens, and the
//! alerts with their delivery log and each user's inbox (`store::alerts`).

use std::path::Path;
use std::sync::Mutex;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use prism_engine::{Audience, EngineError};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

mod alerts;
mod campaigns;
mod dashboards;
mod pages;
mod questions;
pub use alerts::{Alert, Attachment, Delivery, InboxItem, NewAlert, News};
pub use campaigns::{PlannedCampaign, campaign_name};
pub use dashboards::{Dashboard, TileSize};
pub use questions::{Changed, QuestionChange};

/// Why the store refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("the app database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// What was asked cannot be done (an unknown user, a short password); the message says why.
    #[error("{0}")]
    Invalid(String),
}

/// A result of the store.
pub type Result<T> = std::result::Result<T, StoreError>;

/// What a user is, which decides what they see.
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
    /// Every role.
    pub const ALL: [Role; 4] = [
        Role::ChannelExecutive,
        Role::ChannelManager,
        Role::PartnerManager,
        Role::Admin,
    ];

    /// Its name, as the CLI and the database write it.
    pub fn name(self) -> &'static str {
        match self {
            Role::ChannelExecutive => "channel_executive",
            Role::ChannelManager => "channel_manager",
            Role::PartnerManager => "partner_manager",
            Role::Admin => "admin",
        }
    }

    /// The role of a name, or why it is not one.
    pub fn parse(s: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
                StoreError::Invalid(format!(
                    "role {s:?}: the roles are {}{}",
                    names.join(", "),
                    prism_model::did_you_mean(s, names.iter().copied())
                ))
            })
    }
}

/// A user of the app.
#[derive(Clone, Debug, Serialize)]
pub struct User {
    /// Its row id.
    pub id: i64,
    /// Its sign-in name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The partner of a partner manager, the partners of a channel manager.
    pub partners: Vec<String>,
    /// Unread messages in the user's inbox when the user was read (the number beside
    /// Alerts in the navigation).
    pub unread: i64,
    /// The names of the shipped pages an administrator hid from the user's role (`service`):
    /// not in its navigation, and not served to it.
    pub hidden_pages: Vec<String>,
}

impl User {
    /// The audience every query of this user runs with; a partner user without a partner has
    /// none (`Forbidden`).
    pub fn audience(&self) -> std::result::Result<Audience, EngineError> {
        match self.role {
            Role::ChannelExecutive | Role::Admin => Ok(Audience::everyone()),
            Role::ChannelManager => Ok(Audience::partners(self.partners.iter().cloned())),
            Role::PartnerManager => {
                Audience::partner(self.partners.first().cloned().unwrap_or_default())
            }
        }
    }

    /// Whether the user is a partner's.
    pub fn is_partner_user(&self) -> bool {
        self.role == Role::PartnerManager
    }
}

/// How long a session lasts without signing in again.
pub const SESSION_HOURS: i64 = 12;

/// How sign-ins are slowed down after failures. No limit ever locks a user out: past its free
/// failures, a key (a name from one address, a name from anywhere, an address for any name)
/// must wait before its next try, a wait that doubles with each failure up to its cap. The
/// name from one address is the tight limit, so that someone guessing a user's password from
/// elsewhere slows themselves and hardly the user; the name alone has a higher and slower one,
/// against guessing from many addresses; an address alone (an office behind one gateway has
/// many users) the highest.
pub struct Throttle {
    /// Its name, in the throttle table.
    pub key: &'static str,
    /// Failures within the window that cost nothing.
    pub free: i64,
    /// Failures per doubling of the wait past the free ones.
    pub per_doubling: i64,
    /// The longest wait, in seconds.
    pub cap_seconds: i64,
}

/// The throttles of failed sign-ins: by name and address, by name, by address.
pub const THROTTLES: [Throttle; 3] = [
    Throttle {
        key: "name and address",
        free: 5,
        per_doubling: 1,
        cap_seconds: 300,
    },
    Throttle {
        key: "name",
        free: 30,
        per_doubling: 5,
        cap_seconds: 60,
    },
    Throttle {
        key: "address",
        free: 100,
        per_doubling: 10,
        cap_seconds: 300,
    },
];
/// Failures older than this are forgotten.
pub const FAILURE_WINDOW_MINUTES: i64 = 15;

/// The longest user name and password a sign-in accepts: anything longer is refused before
/// any hashing, so that a megabyte password cannot occupy a core.
pub const MAX_NAME_BYTES: usize = 200;
/// A saved question's description, and its question, at most this long.
pub const MAX_DESCRIPTION_BYTES: usize = 4 * 1024;

/// A question a user saved: its URL query (never its answer), answered in whoever opens it's
/// own audience.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SavedQuestion {
    /// Its id.
    pub id: i64,
    /// Its owner's name.
    pub owner: String,
    /// Its name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// The Explore URL's query: `metrics=...&by=...`.
    pub question: String,
    /// `private`, `everyone`, or a role's name.
    pub shared_with: String,
    /// When it was saved, in seconds since 1970.
    pub created_at: i64,
}
/// The longest password a sign-in accepts, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// What an administrator sets for sessions and the audit log (`prism serve` options).
#[derive(Clone, Debug)]
pub struct Policy {
    /// A session not used for this long ends.
    pub idle_minutes: i64,
    /// A new sign-in ends the user's other sessions.
    pub single_session: bool,
    /// Audit entries older than this are deleted.
    pub audit_retention_days: i64,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            idle_minutes: 60,
            single_session: false,
            audit_retention_days: 365,
        }
    }
}

/// The app's own state in SQLite: users, sessions, throttles, the audit log, saved questions, dashboards, alerts and planned campaigns.
pub struct Store {
    conn: Mutex<Connection>,
    policy: Policy,
}

/// 32 random bytes as hex: session ids and CSRF tokens.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the operating system's random source");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A user as the app works with it: its partners, its unread messages and the shipped pages
/// hidden from its role, read with it.
fn user_of(conn: &Connection, id: i64, name: String, role: &str) -> Result<User> {
    let role = Role::parse(role)?;
    Ok(User {
        id,
        name,
        role,
        partners: partners_of(conn, id)?,
        unread: unread_of(conn, id)?,
        hidden_pages: pages::hidden_of(conn, role)?,
    })
}

fn unread_of(conn: &Connection, user_id: i64) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT COUNT(*) FROM inbox WHERE user_id = ?1 AND read = 0",
        [user_id],
        |r| r.get(0),
    )
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Store {
    /// Opens (or makes) the database and brings its tables up to date.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA foreign_keys = ON;
             CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, role TEXT NOT NULL, password_hash TEXT NOT NULL, created_at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS user_partners (user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE, partner_id TEXT NOT NULL, PRIMARY KEY (user_id, partner_id));
             -- Sessions of an earlier version kept their token in the clear: they end.
             DROP TABLE IF EXISTS sessions;
             CREATE TABLE IF NOT EXISTS web_sessions (token_hash TEXT PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE, csrf TEXT NOT NULL, expires_at INTEGER NOT NULL, last_seen INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS web_sessions_by_user ON web_sessions (user_id);
             CREATE TABLE IF NOT EXISTS failed_sign_ins (name TEXT NOT NULL, address TEXT NOT NULL, at INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS failed_sign_ins_by_name ON failed_sign_ins (name, at);
             CREATE INDEX IF NOT EXISTS failed_sign_ins_by_address ON failed_sign_ins (address, at);
             CREATE INDEX IF NOT EXISTS failed_sign_ins_by_time ON failed_sign_ins (at);
             CREATE TABLE IF NOT EXISTS audit (at INTEGER NOT NULL, user_name TEXT NOT NULL, event TEXT NOT NULL, detail TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS audit_by_time ON audit (at);
             CREATE TABLE IF NOT EXISTS questions (id INTEGER PRIMARY KEY, owner_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE, name TEXT NOT NULL, description TEXT NOT NULL, question TEXT NOT NULL, shared_with TEXT NOT NULL, created_at INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS questions_by_owner ON questions (owner_id);
             CREATE TABLE IF NOT EXISTS api_tokens (token_hash TEXT PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE, label TEXT NOT NULL, created_at INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS api_tokens_by_user ON api_tokens (user_id);",
        )?;
        conn.execute_batch(alerts::SCHEMA)?;
        conn.execute_batch(campaigns::SCHEMA)?;
        conn.execute_batch(dashboards::SCHEMA)?;
        conn.execute_batch(pages::SCHEMA)?;
        // Stores of earlier versions: users without an e-mail address, dashboards with tiles of
        // one size.
        add_missing_column(&conn, "users", "email", "TEXT NOT NULL DEFAULT ''")?;
        add_missing_column(
            &conn,
            "dashboard_questions",
            "size",
            "TEXT NOT NULL DEFAULT 'medium'",
        )?;
        let store = Store {
            conn: Mutex::new(conn),
            policy: Policy::default(),
        };
        store.prune()?;
        Ok(store)
    }

    /// The store under an administrator's policy.
    pub fn with_policy(mut self, policy: Policy) -> Result<Store> {
        self.policy = policy;
        self.prune()?;
        Ok(self)
    }

    /// Whether the database answers (a readiness probe's question): one trivial query.
    pub fn ping(&self) -> Result<()> {
        self.conn().query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }

    /// The session and audit policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Deletes what is kept no longer: ended sessions, forgotten failures, old audit entries.
    /// Each delete reads an index on the time.
    pub fn prune(&self) -> Result<()> {
        let now = now();
        let conn = self.conn();
        conn.execute(
            "DELETE FROM web_sessions WHERE expires_at < ?1 OR last_seen < ?2",
            params![now, now - self.policy.idle_minutes * 60],
        )?;
        conn.execute(
            "DELETE FROM failed_sign_ins WHERE at < ?1",
            [now - FAILURE_WINDOW_MINUTES * 60],
        )?;
        conn.execute(
            "DELETE FROM audit WHERE at < ?1",
            [now - self.policy.audit_retention_days * 86_400],
        )?;
        Ok(())
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a user with a role, its partners and a password (hashed with argon2id).
    pub fn add_user(
        &self,
        name: &str,
        role: Role,
        partners: &[String],
        password: &str,
    ) -> Result<()> {
        if name.trim().is_empty() {
            return Err(StoreError::Invalid("a user needs a name".into()));
        }
        match role {
            Role::PartnerManager if partners.len() != 1 => {
                return Err(StoreError::Invalid(
                    "a partner_manager belongs to exactly one partner: give --partner ID".into(),
                ));
            }
            Role::ChannelManager if partners.is_empty() => {
                return Err(StoreError::Invalid(
                    "a channel_manager manages at least one partner: give --partners ID,ID".into(),
                ));
            }
            Role::ChannelExecutive | Role::Admin if !partners.is_empty() => {
                return Err(StoreError::Invalid(format!(
                    "a {} sees every partner: --partner/--partners do not apply",
                    role.name()
                )));
            }
            _ => {}
        }
        check_password(password)?;
        let hash = hash(password)?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let exists: Option<i64> = tx
            .query_row("SELECT id FROM users WHERE name = ?1", [name], |r| r.get(0))
            .optional()?;
        if exists.is_some() {
            return Err(StoreError::Invalid(format!("user {name:?} already exists")));
        }
        tx.execute(
            "INSERT INTO users (name, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, role.name(), hash, now()],
        )?;
        let id = tx.last_insert_rowid();
        for p in partners {
            tx.execute(
                "INSERT OR IGNORE INTO user_partners (user_id, partner_id) VALUES (?1, ?2)",
                params![id, p],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// A user by name, as the store holds them now (the SQL endpoint reads its connection's
    /// user again for every statement, so a changed role or a removed user counts at once).
    pub fn user(&self, name: &str) -> Result<Option<User>> {
        let conn = self.conn();
        let found: Option<(i64, String)> = conn
            .query_row("SELECT id, role FROM users WHERE name = ?1", [name], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        found
            .map(|(id, role)| user_of(&conn, id, name.to_string(), &role))
            .transpose()
    }

    /// Every user.
    pub fn users(&self) -> Result<Vec<User>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id, name, role FROM users ORDER BY name")?;
        let rows: Vec<(i64, String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<std::result::Result<_, _>>()?;
        drop(stmt);
        rows.into_iter()
            .map(|(id, name, role)| user_of(&conn, id, name, &role))
            .collect()
    }

    /// Removes a user; their sessions end.
    pub fn remove_user(&self, name: &str) -> Result<()> {
        let n = self
            .conn()
            .execute("DELETE FROM users WHERE name = ?1", [name])?;
        if n == 0 {
            return Err(StoreError::Invalid(format!("no user {name:?}")));
        }
        Ok(())
    }

    /// Sets a user's password; their sessions end.
    pub fn set_password(&self, name: &str, password: &str) -> Result<()> {
        check_password(password)?;
        let hash = hash(password)?;
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE users SET password_hash = ?1 WHERE name = ?2",
            params![hash, name],
        )?;
        if n == 0 {
            return Err(StoreError::Invalid(format!("no user {name:?}")));
        }
        // A new password ends every session of the old one.
        conn.execute(
            "DELETE FROM web_sessions WHERE user_id = (SELECT id FROM users WHERE name = ?1)",
            [name],
        )?;
        Ok(())
    }

    /// The user, when the password is theirs. The same time is spent for an unknown name, so
    /// that the answer's speed does not tell which names exist.
    pub fn verify(&self, name: &str, password: &str) -> Result<Option<User>> {
        let found: Option<(i64, String, String)> = self
            .conn()
            .query_row(
                "SELECT id, role, password_hash FROM users WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let stored = found.as_ref().map_or_else(dummy_hash, |f| f.2.clone());
        let ok = PasswordHash::new(&stored).is_ok_and(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        });
        match found {
            Some((id, role, _)) if ok => {
                let conn = self.conn();
                Ok(Some(user_of(&conn, id, name.to_string(), &role)?))
            }
            _ => Ok(None),
        }
    }

    /// A new API token of a user, for a tool that signs in with it instead of the password
    /// (the SQL endpoint takes it as the password). Shown once: only its hash is kept.
    pub fn add_api_token(&self, name: &str, label: &str) -> Result<String> {
        let conn = self.conn();
        let id: Option<i64> = conn
            .query_row("SELECT id FROM users WHERE name = ?1", [name], |r| r.get(0))
            .optional()?;
        let id = id.ok_or_else(|| StoreError::Invalid(format!("no user named {name:?}")))?;
        let token = format!("prism_{}", random_token());
        conn.execute(
            "INSERT INTO api_tokens (token_hash, user_id, label, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![token_hash(&token), id, label, now()],
        )?;
        Ok(token)
    }

    /// Ends every API token of a user; how many there were.
    pub fn revoke_api_tokens(&self, name: &str) -> Result<usize> {
        Ok(self.conn().execute(
            "DELETE FROM api_tokens WHERE user_id = (SELECT id FROM users WHERE name = ?1)",
            [name],
        )?)
    }

    /// The user, when the token is one of theirs. A token is 32 random bytes, so a lookup by
    /// its hash is as good as a slow hash.
    pub fn verify_api_token(&self, name: &str, token: &str) -> Result<Option<User>> {
        if !token.starts_with("prism_") {
            return Ok(None);
        }
        let found: Option<i64> = self
            .conn()
            .query_row(
                "SELECT u.id FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?1 AND u.name = ?2",
                params![token_hash(token), name],
                |r| r.get(0),
            )
            .optional()?;
        match found {
            Some(_) => self.user(name),
            None => Ok(None),
        }
    }

    /// The user of an API token given alone (`Authorization: Bearer`), when it is one.
    pub fn api_token_user(&self, token: &str) -> Result<Option<User>> {
        if !token.starts_with("prism_") {
            return Ok(None);
        }
        let name: Option<String> = self
            .conn()
            .query_row(
                "SELECT u.name FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?1",
                [token_hash(token)],
                |r| r.get(0),
            )
            .optional()?;
        match name {
            Some(name) => self.user(&name),
            None => Ok(None),
        }
    }

    /// A new session: its token (the cookie) and its CSRF token (in every form). Only a hash
    /// of the token is kept, so that a copy of the database signs nobody in.
    pub fn start_session(&self, user: &User) -> Result<(String, String)> {
        let (token, csrf) = (random_token(), random_token());
        self.prune()?;
        let conn = self.conn();
        if self.policy.single_session {
            conn.execute("DELETE FROM web_sessions WHERE user_id = ?1", [user.id])?;
        }
        conn.execute(
            "INSERT INTO web_sessions (token_hash, user_id, csrf, expires_at, last_seen) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![token_hash(&token), user.id, csrf, now() + SESSION_HOURS * 3600, now()],
        )?;
        Ok((token, csrf))
    }

    /// The signed-in user of a session token and the session's CSRF token, while it lasts:
    /// no longer than `SESSION_HOURS` after signing in, nor than the idle time after its last use.
    pub fn session(&self, token: &str) -> Result<Option<(User, String)>> {
        if token.len() != 64 {
            return Ok(None);
        }
        let now = now();
        let hash = token_hash(token);
        let conn = self.conn();
        let found: Option<(i64, String, String, String, i64)> = conn
            .query_row(
                "SELECT u.id, u.name, u.role, s.csrf, s.last_seen FROM web_sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?1 AND s.expires_at >= ?2 AND s.last_seen >= ?3",
                params![hash, now, now - self.policy.idle_minutes * 60],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        match found {
            None => Ok(None),
            Some((id, name, role, csrf, last_seen)) => {
                // Written at most once a minute: a page's requests do not each write.
                if now - last_seen >= 60 {
                    conn.execute(
                        "UPDATE web_sessions SET last_seen = ?1 WHERE token_hash = ?2",
                        params![now, hash],
                    )?;
                }
                Ok(Some((user_of(&conn, id, name, &role)?, csrf)))
            }
        }
    }

    /// Ends a session.
    pub fn end_session(&self, token: &str) -> Result<()> {
        self.conn().execute(
            "DELETE FROM web_sessions WHERE token_hash = ?1",
            [token_hash(token)],
        )?;
        Ok(())
    }

    /// The sessions a user has open.
    pub fn session_count(&self, name: &str) -> Result<i64> {
        Ok(self.conn().query_row("SELECT COUNT(*) FROM web_sessions s JOIN users u ON u.id = s.user_id WHERE u.name = ?1", [name], |r| r.get(0))?)
    }

    /// Seconds until a name from an address may try to sign in again, when recent failures
    /// make it wait (see `THROTTLES`).
    pub fn wait_for(&self, name: &str, address: &str) -> Result<Option<i64>> {
        let now = now();
        let since = now - FAILURE_WINDOW_MINUTES * 60;
        let conn = self.conn();
        let mut longest: Option<i64> = None;
        for t in &THROTTLES {
            let (count, last): (i64, Option<i64>) = match t.key {
                "name and address" => conn.query_row(
                    "SELECT COUNT(*), MAX(at) FROM failed_sign_ins WHERE name = ?1 AND address = ?2 AND at >= ?3",
                    params![name, address, since],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?,
                "name" => conn.query_row("SELECT COUNT(*), MAX(at) FROM failed_sign_ins WHERE name = ?1 AND at >= ?2", params![name, since], |r| Ok((r.get(0)?, r.get(1)?)))?,
                _ => conn.query_row("SELECT COUNT(*), MAX(at) FROM failed_sign_ins WHERE address = ?1 AND at >= ?2", params![address, since], |r| Ok((r.get(0)?, r.get(1)?)))?,
            };
            if count < t.free {
                continue;
            }
            let doublings = ((count - t.free) / t.per_doubling).min(20) as u32;
            let wait = (1i64 << doublings).min(t.cap_seconds);
            let left = last.unwrap_or(now) + wait - now;
            if left > 0 {
                longest = Some(longest.map_or(left, |l| l.max(left)));
            }
        }
        Ok(longest)
    }

    /// Counts a failed sign-in for its throttles.
    pub fn record_failure(&self, name: &str, address: &str) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO failed_sign_ins (name, address, at) VALUES (?1, ?2, ?3)",
            params![name, address, now()],
        )?;
        conn.execute(
            "DELETE FROM failed_sign_ins WHERE at < ?1",
            [now() - FAILURE_WINDOW_MINUTES * 60],
        )?;
        Ok(())
    }

    /// Writes an entry of the audit log.
    pub fn audit(&self, user: &str, event: &str, detail: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO audit (at, user_name, event, detail) VALUES (?1, ?2, ?3, ?4)",
            params![now(), user, event, detail],
        )?;
        Ok(())
    }

    /// The audit log, newest first: (unix time, user, event, detail).
    pub fn audit_log(&self, limit: usize) -> Result<Vec<(i64, String, String, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT at, user_name, event, detail FROM audit ORDER BY rowid DESC LIMIT ?1",
        )?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<std::result::Result<_, _>>()?;
        Ok(rows)
    }
}

/// What the database keeps of a session token: its SHA-256. The token is 32 random bytes, so
/// a plain digest is as strong as a slow hash would be.
fn token_hash(token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn partners_of(conn: &Connection, id: i64) -> Result<Vec<String>> {
    let mut stmt = conn
        .prepare("SELECT partner_id FROM user_partners WHERE user_id = ?1 ORDER BY partner_id")?;
    let rows = stmt
        .query_map([id], |r| r.get(0))?
        .collect::<std::result::Result<_, _>>()?;
    Ok(rows)
}

fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < 8 {
        return Err(StoreError::Invalid(
            "a password has at least 8 characters".into(),
        ));
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
    DUMMY
        .get_or_init(|| hash("no user has this password").expect("hashing"))
        .clone()
}

/// Adds a column a store of an earlier version lacks (SQLite has no `ADD COLUMN IF NOT EXISTS`).
fn add_missing_column(
    conn: &Connection,
    table: &str,
    column: &str,
    definition: &str,
) -> Result<()> {
    let has = conn
        .prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?
        .exists(params![table, column])?;
    if !has {
        conn.execute(
            &format!("ALTER TABLE {table} ADD COLUMN {column} {definition}"),
            [],
        )?;
    }
    Ok(())
}

/// Whom a saved question or a dashboard may be shared with, as a form offers it.
pub fn share_choices() -> Vec<&'static str> {
    ["private", "everyone"]
        .into_iter()
        .chain(Role::ALL.iter().map(|r| r.name()))
        .collect()
}

/// Whom a saved question or a dashboard may be shared with: `private`, `everyone`, or a role.
pub(super) fn check_shared_with(shared_with: &str) -> Result<()> {
    if shared_with != "private" && shared_with != "everyone" && Role::parse(shared_with).is_err() {
        let roles: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
        return Err(StoreError::Invalid(format!(
            "shared_with {shared_with:?}: private, everyone, or a role ({})",
            roles.join(", ")
        )));
    }
    Ok(())
}
