//! Dashboards of one's own: a name and saved questions in an order, private or shared as a
//! saved question is (with a role, or everyone). A dashboard holds questions, never answers:
//! whoever opens it gets each answer in their own audience.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{MAX_NAME_BYTES, Result, Role, SavedQuestion, Store, StoreError, User, now};

/// The tables, created with the others when the store opens. A question deleted leaves the
/// dashboards that held it.
pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS dashboards (id INTEGER PRIMARY KEY, owner_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE, name TEXT NOT NULL, shared_with TEXT NOT NULL, created_at INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS dashboard_questions (dashboard_id INTEGER NOT NULL REFERENCES dashboards(id) ON DELETE CASCADE, question_id INTEGER NOT NULL REFERENCES questions(id) ON DELETE CASCADE, position INTEGER NOT NULL, size TEXT NOT NULL DEFAULT 'medium', PRIMARY KEY (dashboard_id, question_id));
    -- A dashboard a user opens on signing in, instead of the role's home page.
    CREATE TABLE IF NOT EXISTS home_dashboards (user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE, dashboard_id INTEGER NOT NULL REFERENCES dashboards(id) ON DELETE CASCADE);";

/// A dashboard, with its questions in order.
#[derive(Clone, Debug, Serialize)]
pub struct Dashboard {
    /// Its id.
    pub id: i64,
    /// Its owner's name.
    pub owner: String,
    /// Its name.
    pub name: String,
    /// `private`, `everyone`, or a role's name.
    pub shared_with: String,
    /// When it was made, in seconds since 1970.
    pub created_at: i64,
    /// Its questions, in order.
    pub questions: Vec<SavedQuestion>,
    /// How wide each question's tile is, in the order of `questions` (the API gives each
    /// with its answer).
    #[serde(skip)]
    pub sizes: Vec<TileSize>,
}

/// How much of a dashboard's width a question's tile takes: the owner sizes each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TileSize {
    /// A third: three side by side (a pie, a short list).
    Small,
    /// A half: two side by side.
    #[default]
    Medium,
    /// Two thirds, beside a small one.
    Large,
    /// The whole width (a wide table, a long time series).
    Full,
}

impl TileSize {
    /// Every size, smallest first.
    pub const ALL: [TileSize; 4] = [
        TileSize::Small,
        TileSize::Medium,
        TileSize::Large,
        TileSize::Full,
    ];

    /// Its name in forms, the API and the store.
    pub fn name(self) -> &'static str {
        match self {
            TileSize::Small => "small",
            TileSize::Medium => "medium",
            TileSize::Large => "large",
            TileSize::Full => "full",
        }
    }

    /// The size of a name, or why it is none.
    pub fn parse(name: &str) -> Result<TileSize> {
        TileSize::ALL
            .into_iter()
            .find(|s| s.name() == name.trim())
            .ok_or_else(|| {
                StoreError::Invalid(format!("tile size {name:?}: small, medium, large or full"))
            })
    }
}

/// Who may open what is kept with `shared_with`: its owner, everyone, the users of a role; an
/// administrator, everything.
const VISIBLE: &str = "(?1 OR d.owner_id = ?2 OR d.shared_with = 'everyone' OR d.shared_with = ?3)";

impl Store {
    /// Keeps a new, empty dashboard for its owner; its id.
    pub fn add_dashboard(&self, owner: &User, name: &str, shared_with: &str) -> Result<i64> {
        let name = checked_name(name)?;
        super::check_shared_with(shared_with)?;
        let conn = self.conn();
        conn.execute(
            "INSERT INTO dashboards (owner_id, name, shared_with, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![owner.id, name, shared_with, now()],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// The dashboards a user may open, newest first, each without its questions.
    pub fn dashboards_for(&self, user: &User) -> Result<Vec<Dashboard>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT d.id, u.name, d.name, d.shared_with, d.created_at FROM dashboards d
             JOIN users u ON u.id = d.owner_id WHERE {VISIBLE} ORDER BY d.id DESC"
        ))?;
        let rows = stmt
            .query_map(
                params![user.role == Role::Admin, user.id, user.role.name()],
                dashboard_row,
            )?
            .collect::<std::result::Result<_, _>>()?;
        Ok(rows)
    }

    /// A dashboard the user may open, with its questions in order; none when it may not (or
    /// there is no such dashboard: the two are not told apart).
    pub fn dashboard(&self, user: &User, id: i64) -> Result<Option<Dashboard>> {
        let conn = self.conn();
        let found = conn
            .query_row(
                &format!(
                    "SELECT d.id, u.name, d.name, d.shared_with, d.created_at FROM dashboards d
                     JOIN users u ON u.id = d.owner_id WHERE d.id = ?4 AND {VISIBLE}"
                ),
                params![user.role == Role::Admin, user.id, user.role.name(), id],
                dashboard_row,
            )
            .optional()?;
        let Some(mut dashboard) = found else {
            return Ok(None);
        };
        let mut stmt = conn.prepare(
            "SELECT q.id, u.name, q.name, q.description, q.question, q.shared_with, q.created_at, dq.size
             FROM dashboard_questions dq JOIN questions q ON q.id = dq.question_id
             JOIN users u ON u.id = q.owner_id
             WHERE dq.dashboard_id = ?1 ORDER BY dq.position",
        )?;
        let tiles: Vec<(SavedQuestion, String)> = stmt
            .query_map([id], |r| {
                Ok((super::questions::question_row(r)?, r.get::<_, String>(7)?))
            })?
            .collect::<std::result::Result<_, _>>()?;
        for (question, size) in tiles {
            dashboard.questions.push(question);
            // A size this version does not know (written by a later one) shows as the default.
            dashboard
                .sizes
                .push(TileSize::parse(&size).unwrap_or_default());
        }
        Ok(Some(dashboard))
    }

    /// Puts a saved question at the end of its owner's dashboard. The question must be one the
    /// owner may open. Whether the dashboard is the user's (an administrator's: any).
    pub fn add_to_dashboard(&self, user: &User, id: i64, question: i64) -> Result<bool> {
        if !self.owns_dashboard(user, id)? {
            return Ok(false);
        }
        if !self.questions_for(user)?.iter().any(|q| q.id == question) {
            return Err(StoreError::Invalid(format!(
                "no saved question {question} of yours or shared with you"
            )));
        }
        self.conn().execute(
            "INSERT OR IGNORE INTO dashboard_questions (dashboard_id, question_id, position)
             VALUES (?1, ?2, (SELECT COALESCE(MAX(position), 0) + 1 FROM dashboard_questions WHERE dashboard_id = ?1))",
            params![id, question],
        )?;
        Ok(true)
    }

    /// Takes a question off its owner's dashboard. Whether the dashboard is the user's.
    pub fn remove_from_dashboard(&self, user: &User, id: i64, question: i64) -> Result<bool> {
        if !self.owns_dashboard(user, id)? {
            return Ok(false);
        }
        self.conn().execute(
            "DELETE FROM dashboard_questions WHERE dashboard_id = ?1 AND question_id = ?2",
            params![id, question],
        )?;
        Ok(true)
    }

    /// Sizes a question's tile on the owner's dashboard. Whether the dashboard is the user's
    /// and holds the question.
    pub fn resize_tile(&self, user: &User, id: i64, question: i64, size: TileSize) -> Result<bool> {
        if !self.owns_dashboard(user, id)? {
            return Ok(false);
        }
        let n = self.conn().execute(
            "UPDATE dashboard_questions SET size = ?3 WHERE dashboard_id = ?1 AND question_id = ?2",
            params![id, question, size.name()],
        )?;
        Ok(n > 0)
    }

    /// Moves a question's tile on the owner's dashboard `by` places (-1: one earlier, 1: one
    /// later; at either end it stays). Whether the dashboard is the user's and holds the
    /// question.
    pub fn move_tile(&self, user: &User, id: i64, question: i64, by: i64) -> Result<bool> {
        if !self.owns_dashboard(user, id)? {
            return Ok(false);
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut order: Vec<i64> = tx
            .prepare(
                "SELECT question_id FROM dashboard_questions WHERE dashboard_id = ?1 ORDER BY position",
            )?
            .query_map([id], |r| r.get(0))?
            .collect::<std::result::Result<_, _>>()?;
        let Some(from) = order.iter().position(|q| *q == question) else {
            return Ok(false);
        };
        let to = (from as i64 + by).clamp(0, order.len() as i64 - 1) as usize;
        let moved = order.remove(from);
        order.insert(to, moved);
        // Positions are rewritten 1..n, so that gaps left by removed tiles never make a move
        // look like nothing happened.
        for (position, q) in order.iter().enumerate() {
            tx.execute(
                "UPDATE dashboard_questions SET position = ?3 WHERE dashboard_id = ?1 AND question_id = ?2",
                params![id, q, position as i64 + 1],
            )?;
        }
        tx.commit()?;
        Ok(true)
    }

    /// Gives a dashboard a new name. Whether the dashboard is the user's.
    pub fn rename_dashboard(&self, user: &User, id: i64, name: &str) -> Result<bool> {
        let name = checked_name(name)?;
        if !self.owns_dashboard(user, id)? {
            return Ok(false);
        }
        self.conn().execute(
            "UPDATE dashboards SET name = ?2 WHERE id = ?1",
            params![id, name],
        )?;
        Ok(true)
    }

    /// A private copy, for the user, of a dashboard the user may open: its questions the user
    /// may open too, in order, under a new name. The copy's id; none when the user may not open
    /// the dashboard.
    pub fn duplicate_dashboard(&self, user: &User, id: i64, name: &str) -> Result<Option<i64>> {
        let Some(original) = self.dashboard(user, id)? else {
            return Ok(None);
        };
        let copy = self.add_dashboard(user, name, "private")?;
        let allowed: Vec<i64> = self.questions_for(user)?.iter().map(|q| q.id).collect();
        for (q, size) in original
            .questions
            .iter()
            .zip(&original.sizes)
            .filter(|(q, _)| allowed.contains(&q.id))
        {
            self.add_to_dashboard(user, copy, q.id)?;
            self.resize_tile(user, copy, q.id, *size)?;
        }
        Ok(Some(copy))
    }

    /// Makes a dashboard the user may open the user's home page (`None`: the role's again).
    /// Whether it was one the user may open.
    pub fn set_home_dashboard(&self, user: &User, id: Option<i64>) -> Result<bool> {
        let conn = self.conn();
        match id {
            None => {
                conn.execute("DELETE FROM home_dashboards WHERE user_id = ?1", [user.id])?;
            }
            Some(id) => {
                drop(conn);
                if self.dashboard(user, id)?.is_none() {
                    return Ok(false);
                }
                self.conn().execute(
                    "INSERT OR REPLACE INTO home_dashboards (user_id, dashboard_id) VALUES (?1, ?2)",
                    params![user.id, id],
                )?;
            }
        }
        Ok(true)
    }

    /// The dashboard the user opens on signing in, while the user may still open it (unshared
    /// since, or its owner's role changed: none, and the role's home page again).
    pub fn home_dashboard(&self, user: &User) -> Result<Option<i64>> {
        Ok(self
            .conn()
            .query_row(
                &format!(
                    "SELECT d.id FROM home_dashboards h JOIN dashboards d ON d.id = h.dashboard_id
                     WHERE h.user_id = ?2 AND {VISIBLE}"
                ),
                params![user.role == Role::Admin, user.id, user.role.name()],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Deletes a dashboard (not its questions): its owner's or an administrator's to delete.
    pub fn delete_dashboard(&self, user: &User, id: i64) -> Result<bool> {
        let n = self.conn().execute(
            "DELETE FROM dashboards WHERE id = ?1 AND (?2 OR owner_id = ?3)",
            params![id, user.role == Role::Admin, user.id],
        )?;
        Ok(n > 0)
    }

    fn owns_dashboard(&self, user: &User, id: i64) -> Result<bool> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM dashboards WHERE id = ?1 AND (?2 OR owner_id = ?3)",
                params![id, user.role == Role::Admin, user.id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }
}

/// A row of `dashboards` as selected above, its questions not yet read.
fn dashboard_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Dashboard> {
    Ok(Dashboard {
        id: r.get(0)?,
        owner: r.get(1)?,
        name: r.get(2)?,
        shared_with: r.get(3)?,
        created_at: r.get(4)?,
        questions: Vec::new(),
        sizes: Vec::new(),
    })
}

/// A dashboard's name as given, trimmed, or why it cannot be one.
fn checked_name(name: &str) -> Result<&str> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(StoreError::Invalid(format!(
            "a dashboard needs a name of 1 to {MAX_NAME_BYTES} bytes"
        )));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store kept by a version before tile sizes opens with every tile medium.
    #[test]
    fn a_store_of_an_earlier_version_gets_tile_sizes() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("app.db");
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE dashboard_questions (dashboard_id INTEGER NOT NULL, question_id INTEGER NOT NULL, position INTEGER NOT NULL, PRIMARY KEY (dashboard_id, question_id));
                 INSERT INTO dashboard_questions VALUES (1, 1, 1);",
            )
            .unwrap();
        let store = Store::open(&path).unwrap();
        let size: String = store
            .conn()
            .query_row("SELECT size FROM dashboard_questions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(TileSize::parse(&size).unwrap(), TileSize::Medium);
    }
}
