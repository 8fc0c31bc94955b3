//! The shipped pages an administrator hid from a role: a brand owner whose partners never
//! file service requests hides Service from its channel managers, and a dashboard of its own
//! takes its place. Hiding shows less, never more: a hidden page is refused as if it were not
//! there, and every other rule of who sees what holds as before.

use rusqlite::{Connection, params};

use super::{Result, Role, Store};

/// The table, created with the others when the store opens.
pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS hidden_pages (role TEXT NOT NULL, page TEXT NOT NULL, PRIMARY KEY (role, page));";

/// The names of the pages hidden from a role.
pub(super) fn hidden_of(conn: &Connection, role: Role) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT page FROM hidden_pages WHERE role = ?1 ORDER BY page")?;
    let rows = stmt
        .query_map([role.name()], |r| r.get(0))?
        .collect::<std::result::Result<_, _>>()?;
    Ok(rows)
}

impl Store {
    /// Hides a shipped page (by its name, `service`) from a role, or shows it again. The
    /// caller checks that the name is a page's that may be hidden.
    pub fn set_page_hidden(&self, role: Role, page: &str, hidden: bool) -> Result<()> {
        let conn = self.conn();
        if hidden {
            conn.execute(
                "INSERT OR IGNORE INTO hidden_pages (role, page) VALUES (?1, ?2)",
                params![role.name(), page],
            )?;
        } else {
            conn.execute(
                "DELETE FROM hidden_pages WHERE role = ?1 AND page = ?2",
                params![role.name(), page],
            )?;
        }
        Ok(())
    }

    /// The pages hidden from a role, by name.
    pub fn hidden_pages(&self, role: Role) -> Result<Vec<String>> {
        hidden_of(&self.conn(), role)
    }
}
