//! Saved questions: an Explore question (its URL query, never its answer) with a name, kept
//! for its owner, private or shared with a role or everyone. Its owner (or an administrator)
//! changes or deletes it; whoever may open it may keep a private copy of their own.

use rusqlite::{OptionalExtension, params};

use super::{
    MAX_DESCRIPTION_BYTES, MAX_NAME_BYTES, Result, Role, SavedQuestion, Store, StoreError, User,
    check_shared_with, now,
};

/// What a change of a saved question sets; what is `None` stays as it was.
#[derive(Clone, Debug, Default)]
pub struct QuestionChange {
    /// A new name.
    pub name: Option<String>,
    /// A new description.
    pub description: Option<String>,
    /// A new question (the Explore URL's query), already checked by the caller.
    pub question: Option<String>,
    /// Whom it is shared with now: `private`, `everyone`, or a role.
    pub shared_with: Option<String>,
}

/// What came of changing a saved question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Changed {
    /// Changed; the question as it now is.
    Done(SavedQuestion),
    /// The user may open it but it is another user's: only its owner or an administrator
    /// changes it.
    NotOwner,
    /// No such question the user may open: as absent as one that never was.
    Missing,
}

impl Store {
    /// Saves a question (its URL query, never its answer) for its owner; `shared_with` is
    /// `private`, `everyone`, or a role's name.
    pub fn save_question(
        &self,
        owner: &User,
        name: &str,
        description: &str,
        question: &str,
        shared_with: &str,
    ) -> Result<i64> {
        let name = checked_name(name)?;
        check_sizes(description, question)?;
        check_shared_with(shared_with)?;
        let conn = self.conn();
        conn.execute(
            "INSERT INTO questions (owner_id, name, description, question, shared_with, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![owner.id, name, description.trim(), question, shared_with, now()],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// The saved questions a user may open: its own, those shared with everyone or with its
    /// role; an administrator's, every one (to tidy up). Newest first.
    pub fn questions_for(&self, user: &User) -> Result<Vec<SavedQuestion>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT q.id, u.name, q.name, q.description, q.question, q.shared_with, q.created_at
             FROM questions q JOIN users u ON u.id = q.owner_id
             WHERE ?1 OR q.owner_id = ?2 OR q.shared_with = 'everyone' OR q.shared_with = ?3
             ORDER BY q.id DESC",
        )?;
        let rows = stmt
            .query_map(
                params![user.role == Role::Admin, user.id, user.role.name()],
                question_row,
            )?
            .collect::<std::result::Result<_, _>>()?;
        Ok(rows)
    }

    /// One saved question the user may open.
    pub fn question_for(&self, user: &User, id: i64) -> Result<Option<SavedQuestion>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT q.id, u.name, q.name, q.description, q.question, q.shared_with, q.created_at
                 FROM questions q JOIN users u ON u.id = q.owner_id
                 WHERE q.id = ?4 AND (?1 OR q.owner_id = ?2 OR q.shared_with = 'everyone' OR q.shared_with = ?3)",
                params![user.role == Role::Admin, user.id, user.role.name(), id],
                question_row,
            )
            .optional()?)
    }

    /// Changes a saved question: its owner's or an administrator's to change. Every part of
    /// the change is checked before anything is written, so a bad one changes nothing.
    pub fn change_question(
        &self,
        user: &User,
        id: i64,
        change: &QuestionChange,
    ) -> Result<Changed> {
        let Some(before) = self.question_for(user, id)? else {
            return Ok(Changed::Missing);
        };
        if before.owner != user.name && user.role != Role::Admin {
            return Ok(Changed::NotOwner);
        }
        let name = match &change.name {
            Some(n) => checked_name(n)?.to_string(),
            None => before.name,
        };
        let description = change
            .description
            .as_deref()
            .map(str::trim)
            .unwrap_or(&before.description)
            .to_string();
        let question = change.question.clone().unwrap_or(before.question);
        let shared_with = change.shared_with.clone().unwrap_or(before.shared_with);
        check_sizes(&description, &question)?;
        check_shared_with(&shared_with)?;
        self.conn().execute(
            "UPDATE questions SET name = ?2, description = ?3, question = ?4, shared_with = ?5 WHERE id = ?1",
            params![id, name, description, question, shared_with],
        )?;
        Ok(match self.question_for(user, id)? {
            Some(q) => Changed::Done(q),
            None => Changed::Missing,
        })
    }

    /// A private copy, for the user, of a question the user may open (its own or shared with
    /// it), under a new name. The copy's id; none when the user may not open the question.
    pub fn duplicate_question(&self, user: &User, id: i64, name: &str) -> Result<Option<i64>> {
        let Some(original) = self.question_for(user, id)? else {
            return Ok(None);
        };
        self.save_question(
            user,
            name,
            &original.description,
            &original.question,
            "private",
        )
        .map(Some)
    }

    /// Deletes a saved question: its owner's or an administrator's to delete. Whether it was.
    pub fn delete_question(&self, user: &User, id: i64) -> Result<bool> {
        let n = self.conn().execute(
            "DELETE FROM questions WHERE id = ?1 AND (?2 OR owner_id = ?3)",
            params![id, user.role == Role::Admin, user.id],
        )?;
        Ok(n > 0)
    }
}

/// A question's name as given, trimmed, or why it cannot be one.
fn checked_name(name: &str) -> Result<&str> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(StoreError::Invalid(format!(
            "a saved question needs a name of 1 to {MAX_NAME_BYTES} bytes"
        )));
    }
    Ok(name)
}

fn check_sizes(description: &str, question: &str) -> Result<()> {
    if description.len() > MAX_DESCRIPTION_BYTES || question.len() > MAX_DESCRIPTION_BYTES {
        return Err(StoreError::Invalid(format!(
            "a saved question's description and question are at most {MAX_DESCRIPTION_BYTES} bytes each"
        )));
    }
    Ok(())
}

/// A saved question selected as (id, owner's name, name, description, question, shared_with,
/// created_at).
pub(super) fn question_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SavedQuestion> {
    Ok(SavedQuestion {
        id: r.get(0)?,
        owner: r.get(1)?,
        name: r.get(2)?,
        description: r.get(3)?,
        question: r.get(4)?,
        shared_with: r.get(5)?,
        created_at: r.get(6)?,
    })
}
