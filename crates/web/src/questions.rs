//! Saved questions: an Explore question kept with a name, private or shared with a role or
//! everyone. A saved question is its URL query, never its answer: whoever opens it gets the
//! answer in their own audience. The owner or an administrator may delete it.

use askama::Template;
use serde::Serialize;

use crate::pages;
use crate::store::{Dashboard, SavedQuestion, User};

/// One row of the list.
pub(crate) struct QuestionView {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) owner: String,
    pub(crate) shared_with: String,
    pub(crate) deletable: bool,
}

/// The list page.
#[derive(Template)]
#[template(path = "questions.html")]
pub(crate) struct QuestionsPage {
    pub(crate) user_name: String,
    pub(crate) role: String,
    pub(crate) csrf: String,
    pub(crate) nav: Vec<(String, String)>,
    pub(crate) search: String,
    pub(crate) questions: Vec<QuestionView>,
    /// The user's own dashboards (id, name), which a question can be added to from the list.
    pub(crate) dashboards: Vec<(i64, String)>,
}

/// Whether a question matches a search, in its name or description, ignoring case.
pub fn matches(q: &SavedQuestion, search: &str) -> bool {
    let search = search.trim().to_lowercase();
    search.is_empty()
        || q.name.to_lowercase().contains(&search)
        || q.description.to_lowercase().contains(&search)
}

/// Renders the list of the questions a user may open, each with a form adding it to one of
/// the user's own dashboards.
pub fn render(
    user: &User,
    csrf: &str,
    search: &str,
    questions: &[SavedQuestion],
    dashboards: &[Dashboard],
) -> String {
    QuestionsPage {
        user_name: user.name.clone(),
        role: user.role.name().into(),
        csrf: csrf.into(),
        nav: pages::nav(Some(user)),
        search: search.into(),
        questions: questions
            .iter()
            .filter(|q| matches(q, search))
            .map(|q| QuestionView {
                id: q.id,
                name: q.name.clone(),
                description: q.description.clone(),
                owner: q.owner.clone(),
                shared_with: q.shared_with.clone(),
                deletable: q.owner == user.name || user.role == crate::store::Role::Admin,
            })
            .collect(),
        dashboards: dashboards.iter().map(|d| (d.id, d.name.clone())).collect(),
    }
    .render()
    .unwrap_or_else(|e| format!("template: {e}"))
}

/// A saved question with its answer, as `/api/questions/{id}` gives it.
#[derive(Serialize)]
pub(crate) struct Answered {
    #[serde(flatten)]
    pub(crate) question: SavedQuestion,
    pub(crate) answer: prism_engine::api::QueryResponse,
}
