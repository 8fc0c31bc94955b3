//! The state of alerts (see the `prism-delivers` crate, which evaluates and sends them): each
//! alert's definition and last outcome, the outbox of news to deliver with its delivery log,
//! and every user's in-app inbox. The store keeps the rules that make news exactly-once: an
//! alert's news is queued in the same transaction that marks it firing, under a key a second
//! evaluation cannot insert again.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{MAX_DESCRIPTION_BYTES, MAX_NAME_BYTES, Result, Store, StoreError, now};

/// The tables, created with the others when the store opens.
pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS alerts (id INTEGER PRIMARY KEY, owner_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE, name TEXT NOT NULL, definition TEXT NOT NULL, schedule TEXT NOT NULL, time_zone TEXT NOT NULL, channel TEXT NOT NULL, secret TEXT NOT NULL, created_at INTEGER NOT NULL, firing INTEGER NOT NULL DEFAULT 0, evaluated_version INTEGER, evaluated_at INTEGER, outcome TEXT NOT NULL DEFAULT '', next_due_at INTEGER, UNIQUE (owner_id, name));
    CREATE TABLE IF NOT EXISTS deliveries (id INTEGER PRIMARY KEY, alert_id INTEGER NOT NULL REFERENCES alerts(id) ON DELETE CASCADE, news_key TEXT NOT NULL UNIQUE, channel TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL, payload TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER NOT NULL, reason TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL, done_at INTEGER);
    CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_at);
    CREATE TABLE IF NOT EXISTS delivery_files (delivery_id INTEGER NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE, name TEXT NOT NULL, content_type TEXT NOT NULL, bytes BLOB NOT NULL);
    CREATE INDEX IF NOT EXISTS delivery_files_by_delivery ON delivery_files (delivery_id);
    CREATE TABLE IF NOT EXISTS inbox (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE, at INTEGER NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL, read INTEGER NOT NULL DEFAULT 0);
    CREATE INDEX IF NOT EXISTS inbox_by_user ON inbox (user_id, id);";

/// An alert as the store keeps it. Its definition is the delivers crate's to read.
#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    /// Its id.
    pub id: i64,
    /// Its owner's name.
    pub owner: String,
    /// Its name.
    pub name: String,
    /// What is watched, as JSON (a question and a condition, or an analysis's list).
    pub definition: String,
    /// `load`, or a cron expression read in `time_zone`.
    pub schedule: String,
    /// The time zone its schedule is read in.
    pub time_zone: String,
    /// `inbox`, `email` (the owner's address) or `webhook:URL`.
    pub channel: String,
    /// The key of the webhook's signature.
    #[serde(skip)]
    pub secret: String,
    /// When it was made, in seconds since 1970.
    pub created_at: i64,
    /// Whether the condition held at the last evaluation.
    pub firing: bool,
    /// The warehouse version of the last evaluation.
    pub evaluated_version: Option<i64>,
    /// When it was last evaluated.
    pub evaluated_at: Option<i64>,
    /// What the last evaluation found, or why it could not.
    pub outcome: String,
    /// When a scheduled alert is next evaluated.
    pub next_due_at: Option<i64>,
}

/// A new alert, checked by its maker before it is kept.
pub struct NewAlert<'a> {
    /// Its owner's name.
    pub owner: &'a str,
    /// Its name.
    pub name: &'a str,
    /// What it watches, as JSON.
    pub definition: &'a str,
    /// `load`, or a cron expression.
    pub schedule: &'a str,
    /// The time zone of the schedule.
    pub time_zone: &'a str,
    /// `inbox`, `email` or `webhook:URL`.
    pub channel: &'a str,
    /// When a scheduled alert is next due.
    pub next_due_at: Option<i64>,
}

/// News to deliver, and what became of it.
#[derive(Clone, Debug, Serialize)]
pub struct Delivery {
    /// Its id.
    pub id: i64,
    /// The alert that found the news.
    pub alert_id: i64,
    /// The alert's name.
    pub alert: String,
    /// The alert's owner.
    pub owner: String,
    /// Unique per alert and news: the receiver's key to recognise a repeat after a crash.
    pub news_key: String,
    /// Where it goes: `inbox`, `email` or `webhook:URL`.
    pub channel: String,
    /// The message's subject.
    pub subject: String,
    /// The message's body, with the figures.
    pub body: String,
    /// The JSON a webhook receives.
    pub payload: String,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    /// Attempts made so far.
    pub attempts: i64,
    /// When the next attempt is due.
    pub next_attempt_at: i64,
    /// Why the last attempt failed.
    pub reason: String,
    /// When it was queued.
    pub created_at: i64,
    /// When it was sent, or given up.
    pub done_at: Option<i64>,
    /// The files sent with it (a report's answer as CSV and .xlsx); read for sending only.
    #[serde(skip)]
    pub files: Vec<Attachment>,
}

/// A file sent with news.
#[derive(Clone, Debug)]
pub struct Attachment {
    /// The file's name.
    pub name: String,
    /// Its media type.
    pub content_type: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// One message of a user's inbox.
#[derive(Clone, Debug, Serialize)]
pub struct InboxItem {
    /// Its id.
    pub id: i64,
    /// When it arrived.
    pub at: i64,
    /// Its subject.
    pub subject: String,
    /// Its body.
    pub body: String,
    /// Whether the user has read it.
    pub read: bool,
}

/// The news an evaluation found, to be queued when the alert starts firing.
pub struct News<'a> {
    /// Unique per alert and news, so that the same news is never queued twice.
    pub key: &'a str,
    /// The message's subject.
    pub subject: &'a str,
    /// The message's body.
    pub body: &'a str,
    /// The JSON a webhook receives.
    pub payload: &'a str,
    /// Files sent with it.
    pub files: &'a [Attachment],
    /// A report's news: queued at every evaluation (each under its own key), not only when
    /// the condition starts to hold.
    pub every_time: bool,
    /// When it is first due for delivery: the time of the evaluation that found it, by the
    /// scheduler's clock, so that the same pass sends it whatever second the clock shows now.
    pub due_at: i64,
}

const ALERT_COLUMNS: &str = "a.id, u.name, a.name, a.definition, a.schedule, a.time_zone, a.channel, a.secret, a.created_at, a.firing, a.evaluated_version, a.evaluated_at, a.outcome, a.next_due_at";

fn alert_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Alert> {
    Ok(Alert {
        id: r.get(0)?,
        owner: r.get(1)?,
        name: r.get(2)?,
        definition: r.get(3)?,
        schedule: r.get(4)?,
        time_zone: r.get(5)?,
        channel: r.get(6)?,
        secret: r.get(7)?,
        created_at: r.get(8)?,
        firing: r.get(9)?,
        evaluated_version: r.get(10)?,
        evaluated_at: r.get(11)?,
        outcome: r.get(12)?,
        next_due_at: r.get(13)?,
    })
}

const DELIVERY_COLUMNS: &str = "d.id, d.alert_id, a.name, u.name, d.news_key, d.channel, d.subject, d.body, d.payload, d.status, d.attempts, d.next_attempt_at, d.reason, d.created_at, d.done_at";

fn delivery_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        alert_id: r.get(1)?,
        alert: r.get(2)?,
        owner: r.get(3)?,
        news_key: r.get(4)?,
        channel: r.get(5)?,
        subject: r.get(6)?,
        body: r.get(7)?,
        payload: r.get(8)?,
        status: r.get(9)?,
        attempts: r.get(10)?,
        next_attempt_at: r.get(11)?,
        reason: r.get(12)?,
        created_at: r.get(13)?,
        done_at: r.get(14)?,
        files: Vec::new(),
    })
}

impl Store {
    /// The user's e-mail address, where alerts sent by e-mail go (empty: none).
    pub fn email(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row("SELECT email FROM users WHERE name = ?1", [name], |r| {
                r.get::<_, String>(0)
            })
            .optional()?
            .filter(|e| !e.is_empty()))
    }

    /// Sets a user's e-mail address: one `local@domain`, nothing else (an alert is mailed to
    /// its owner's address only, never to one typed into the alert).
    pub fn set_email(&self, name: &str, email: &str) -> Result<()> {
        let email = email.trim();
        let valid = email.len() <= MAX_NAME_BYTES
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            })
            && !email
                .chars()
                .any(|c| c.is_whitespace() || c == ',' || c == '<' || c == '>');
        if !valid {
            return Err(StoreError::Invalid(format!(
                "e-mail {email:?}: expected one address like name@example.com"
            )));
        }
        let n = self.conn().execute(
            "UPDATE users SET email = ?1 WHERE name = ?2",
            params![email, name],
        )?;
        if n == 0 {
            return Err(StoreError::Invalid(format!("no user {name:?}")));
        }
        Ok(())
    }

    /// Keeps a new alert of a user; its name is unique among the user's alerts.
    pub fn add_alert(&self, alert: &NewAlert<'_>) -> Result<i64> {
        let name = alert.name.trim();
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(StoreError::Invalid(format!(
                "an alert needs a name of 1 to {MAX_NAME_BYTES} bytes"
            )));
        }
        if alert.definition.len() > MAX_DESCRIPTION_BYTES {
            return Err(StoreError::Invalid(format!(
                "an alert's definition is at most {MAX_DESCRIPTION_BYTES} bytes"
            )));
        }
        let conn = self.conn();
        let owner: Option<i64> = conn
            .query_row("SELECT id FROM users WHERE name = ?1", [alert.owner], |r| {
                r.get(0)
            })
            .optional()?;
        let owner =
            owner.ok_or_else(|| StoreError::Invalid(format!("no user {:?}", alert.owner)))?;
        let taken: Option<i64> = conn
            .query_row(
                "SELECT id FROM alerts WHERE owner_id = ?1 AND name = ?2",
                params![owner, name],
                |r| r.get(0),
            )
            .optional()?;
        if taken.is_some() {
            return Err(StoreError::Invalid(format!(
                "{} already has an alert named {name:?}",
                alert.owner
            )));
        }
        conn.execute(
            "INSERT INTO alerts (owner_id, name, definition, schedule, time_zone, channel, secret, created_at, next_due_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                owner,
                name,
                alert.definition,
                alert.schedule,
                alert.time_zone,
                alert.channel,
                super::random_token(),
                now(),
                alert.next_due_at
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Every alert (an administrator's view), or one user's; by owner, then name.
    pub fn alerts(&self, owner: Option<&str>) -> Result<Vec<Alert>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts a JOIN users u ON u.id = a.owner_id
             WHERE ?1 IS NULL OR u.name = ?1 ORDER BY u.name, a.name"
        ))?;
        let rows = stmt
            .query_map([owner], alert_row)?
            .collect::<std::result::Result<_, _>>()?;
        Ok(rows)
    }

    /// One alert by its id.
    pub fn alert(&self, id: i64) -> Result<Option<Alert>> {
        Ok(self
            .conn()
            .query_row(
                &format!(
                    "SELECT {ALERT_COLUMNS} FROM alerts a JOIN users u ON u.id = a.owner_id WHERE a.id = ?1"
                ),
                [id],
                alert_row,
            )
            .optional()?)
    }

    /// Removes a user's alert by name, with its delivery log.
    pub fn remove_alert(&self, owner: &str, name: &str) -> Result<()> {
        let n = self.conn().execute(
            "DELETE FROM alerts WHERE name = ?2 AND owner_id = (SELECT id FROM users WHERE name = ?1)",
            params![owner, name],
        )?;
        if n == 0 {
            return Err(StoreError::Invalid(format!(
                "{owner} has no alert named {name:?}"
            )));
        }
        Ok(())
    }

    /// Deletes an alert by id, with its delivery log: its owner's or an administrator's to
    /// delete. Whether it was.
    pub fn delete_alert(&self, user: &super::User, id: i64) -> Result<bool> {
        let n = self.conn().execute(
            "DELETE FROM alerts WHERE id = ?1 AND (?2 OR owner_id = ?3)",
            params![id, user.role == super::Role::Admin, user.id],
        )?;
        Ok(n > 0)
    }

    /// Records an evaluation of an alert over a warehouse version. When the condition holds
    /// and did not at the previous evaluation, the news is queued for delivery in the same
    /// transaction — and under its key, which a second evaluation (a restart, another
    /// process running `prism alerts run`) cannot insert again. Whether news was queued.
    pub fn record_evaluation(
        &self,
        alert_id: i64,
        version: i64,
        holds: bool,
        outcome: &str,
        news: Option<&News<'_>>,
    ) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let (was_firing, channel): (bool, String) = tx.query_row(
            "SELECT firing, channel FROM alerts WHERE id = ?1",
            [alert_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        tx.execute(
            "UPDATE alerts SET firing = ?2, evaluated_version = ?3, evaluated_at = ?4, outcome = ?5 WHERE id = ?1",
            params![alert_id, holds, version, now(), outcome],
        )?;
        let mut queued = false;
        if holds
            && let Some(news) = news
            && (news.every_time || !was_firing)
        {
            queued = tx.execute(
                "INSERT OR IGNORE INTO deliveries (alert_id, news_key, channel, subject, body, payload, status, next_attempt_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7)",
                params![alert_id, news.key, channel, news.subject, news.body, news.payload, news.due_at],
            )? > 0;
            if queued {
                let delivery = tx.last_insert_rowid();
                for f in news.files {
                    tx.execute(
                        "INSERT INTO delivery_files (delivery_id, name, content_type, bytes) VALUES (?1, ?2, ?3, ?4)",
                        params![delivery, f.name, f.content_type, f.bytes],
                    )?;
                }
            }
        }
        tx.commit()?;
        Ok(queued)
    }

    /// Records an evaluation that could not be made (an unknown metric after a model change,
    /// no data): the reason is the outcome, the firing state is kept.
    /// It is not tried again over the same version.
    pub fn record_failed_evaluation(
        &self,
        alert_id: i64,
        version: i64,
        reason: &str,
    ) -> Result<()> {
        self.conn().execute(
            "UPDATE alerts SET evaluated_version = ?2, evaluated_at = ?3, outcome = ?4 WHERE id = ?1",
            params![alert_id, version, now(), format!("not evaluated: {reason}")],
        )?;
        Ok(())
    }

    /// When a scheduled alert is next due.
    pub fn set_next_due(&self, alert_id: i64, at: Option<i64>) -> Result<()> {
        self.conn().execute(
            "UPDATE alerts SET next_due_at = ?2 WHERE id = ?1",
            params![alert_id, at],
        )?;
        Ok(())
    }

    /// The deliveries waiting for an attempt at `at` or before, oldest first.
    pub fn due_deliveries(&self, at: i64) -> Result<Vec<Delivery>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN alerts a ON a.id = d.alert_id JOIN users u ON u.id = a.owner_id
             WHERE d.status = 'pending' AND d.next_attempt_at <= ?1 ORDER BY d.id"
        ))?;
        let mut rows: Vec<Delivery> = stmt
            .query_map([at], delivery_row)?
            .collect::<std::result::Result<_, _>>()?;
        let mut files = conn.prepare(
            "SELECT name, content_type, bytes FROM delivery_files WHERE delivery_id = ?1 ORDER BY rowid",
        )?;
        for d in &mut rows {
            d.files = files
                .query_map([d.id], |r| {
                    Ok(Attachment {
                        name: r.get(0)?,
                        content_type: r.get(1)?,
                        bytes: r.get(2)?,
                    })
                })?
                .collect::<std::result::Result<_, _>>()?;
        }
        Ok(rows)
    }

    /// The delivery log, newest first: every alert's, or one owner's.
    pub fn deliveries(&self, owner: Option<&str>, limit: usize) -> Result<Vec<Delivery>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN alerts a ON a.id = d.alert_id JOIN users u ON u.id = a.owner_id
             WHERE ?1 IS NULL OR u.name = ?1 ORDER BY d.id DESC LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map(params![owner, limit as i64], delivery_row)?
            .collect::<std::result::Result<_, _>>()?;
        Ok(rows)
    }

    /// An attempt's end: sent, to be retried at `retry_at`, or given up (`retry_at` none).
    pub fn record_attempt(
        &self,
        delivery_id: i64,
        result: std::result::Result<(), &str>,
        retry_at: Option<i64>,
    ) -> Result<()> {
        let (status, reason, next, done) = match (result, retry_at) {
            (Ok(()), _) => ("sent", "", 0, Some(now())),
            (Err(why), Some(at)) => ("pending", why, at, None),
            (Err(why), None) => ("failed", why, 0, Some(now())),
        };
        self.conn().execute(
            "UPDATE deliveries SET status = ?2, reason = ?3, attempts = attempts + 1, next_attempt_at = CASE WHEN ?4 > 0 THEN ?4 ELSE next_attempt_at END, done_at = ?5 WHERE id = ?1",
            params![delivery_id, status, reason, next, done],
        )?;
        Ok(())
    }

    /// Puts a message in a user's inbox.
    pub fn notify(&self, user: &str, subject: &str, body: &str) -> Result<()> {
        let n = self.conn().execute(
            "INSERT INTO inbox (user_id, at, subject, body) SELECT id, ?2, ?3, ?4 FROM users WHERE name = ?1",
            params![user, now(), subject, body],
        )?;
        if n == 0 {
            return Err(StoreError::Invalid(format!("no user {user:?}")));
        }
        Ok(())
    }

    /// A user's inbox, newest first.
    pub fn inbox(&self, user_id: i64, limit: usize) -> Result<Vec<InboxItem>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, at, subject, body, read FROM inbox WHERE user_id = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![user_id, limit as i64], |r| {
                Ok(InboxItem {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    subject: r.get(2)?,
                    body: r.get(3)?,
                    read: r.get(4)?,
                })
            })?
            .collect::<std::result::Result<_, _>>()?;
        Ok(rows)
    }

    /// How many of a user's messages are unread (the bell's number).
    pub fn unread(&self, user_id: i64) -> Result<i64> {
        Ok(super::unread_of(&self.conn(), user_id)?)
    }

    /// Marks all of a user's messages read.
    pub fn mark_read(&self, user_id: i64) -> Result<()> {
        self.conn()
            .execute("UPDATE inbox SET read = 1 WHERE user_id = ?1", [user_id])?;
        Ok(())
    }
}
