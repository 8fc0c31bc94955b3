//! Saved questions: an Explore question kept with a name, private or shared with a role or
//! everyone. A saved question is its URL query, never its answer: whoever opens it gets the
//! answer in their own audience. The owner or an administrator may delete it.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Form, RawPathParams, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use prism_engine::api::QueryRequest;
use serde::{Deserialize, Serialize};

use crate::store::{Changed, Dashboard, QuestionChange, Role, SavedQuestion, User};
use crate::{AppState, WebError, explore, pages};

/// One row of the list.
pub(crate) struct QuestionView {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) owner: String,
    pub(crate) shared_with: String,
    /// Whether the user may rename, share, re-ask and delete it: its owner or an administrator.
    pub(crate) changeable: bool,
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
    /// Whom a question may be shared with.
    pub(crate) share_choices: Vec<&'static str>,
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
                changeable: may_change(user, q),
            })
            .collect(),
        dashboards: dashboards.iter().map(|d| (d.id, d.name.clone())).collect(),
        share_choices: crate::store::share_choices(),
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

/// A saved question as the JSON API takes it (`POST /api/questions` to create one, `PATCH
/// /api/questions/{id}` to change one: what is left out stays). The question is given once,
/// either as Explore's URL query (`"question": "metrics=closed_revenue&by=partner.tier"`) or as
/// the engine's versioned request (`"query": {"api_version": 1, "metrics": [...]}`). Unknown
/// fields are refused, so a misspelt one is an error and not ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuestionBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    shared_with: Option<String>,
    #[serde(default)]
    question: Option<String>,
    #[serde(default)]
    query: Option<QueryRequest>,
    #[serde(default)]
    chart: Option<String>,
}

impl QuestionBody {
    /// Reads a request's body: JSON, and said to be JSON (a form a page of another site
    /// posts cannot say so without the browser asking this server first, which it refuses).
    fn read(headers: &HeaderMap, body: &[u8]) -> Result<QuestionBody, WebError> {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().starts_with("application/json"));
        if !json {
            return Err(WebError::BadRequest(
                "send the saved question as JSON, with Content-Type: application/json".into(),
            ));
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(QuestionBody::default());
        }
        serde_json::from_slice(body)
            .map_err(|e| WebError::BadRequest(format!("saved question: {e}")))
    }

    /// The question it gives, in Explore's canonical spelling, checked against the model in
    /// the user's audience; `before` is the question changed (a chart alone changes its chart).
    /// None when it gives no question.
    fn question(
        &self,
        st: &AppState,
        user: &User,
        before: Option<&str>,
    ) -> Result<Option<String>, WebError> {
        let mut question = match (&self.question, &self.query, before) {
            (Some(_), Some(_), _) => {
                return Err(WebError::BadRequest(
                    "give the question once: `question` (Explore's URL query) or `query` (the versioned request)".into(),
                ));
            }
            (Some(q), None, _) => {
                let q = explore::Question::parse(q);
                if q.metrics.is_empty() {
                    return Err(WebError::BadRequest(
                        "question: it asks no metric (metrics=closed_revenue,...)".into(),
                    ));
                }
                q
            }
            (None, Some(r), _) => explore::Question::from_request(r, None)?,
            (None, None, Some(b)) if self.chart.is_some() => explore::Question::parse(b),
            (None, None, _) => return Ok(None),
        };
        if self.chart.is_some() {
            question.chart = self.chart.clone();
        }
        question.check(st, user)?;
        Ok(Some(question.to_query_string()))
    }
}

/// Whether the user may change a saved question it can open: it is the user's own, or the
/// user is an administrator.
pub(crate) fn may_change(user: &User, q: &SavedQuestion) -> bool {
    q.owner == user.name || user.role == Role::Admin
}

/// The id of `/api/questions/{id}`, or a 404.
fn question_id(params: &RawPathParams) -> Result<i64, WebError> {
    crate::path_id(params)
        .and_then(|i| i.parse::<i64>().ok())
        .ok_or_else(|| WebError::NotFound("no such saved question".into()))
}

/// Why a user may not change or delete a question: another user's that it may open is a 403
/// saying whose; one it may not open is as absent as one that never was.
fn not_changeable(st: &AppState, user: &User, id: i64) -> WebError {
    match st.store.question_for(user, id) {
        Ok(Some(q)) => WebError::Forbidden(format!(
            "saved question {id} is {}'s: only its owner or an administrator may change it",
            q.owner
        )),
        Ok(None) => WebError::NotFound(format!("no saved question {id}")),
        Err(e) => e.into(),
    }
}

/// `POST /api/questions`: keeps a new saved question for the caller; 201 with it.
pub(crate) async fn api_create(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let user = match crate::api_writer(&st, &headers).await {
        Ok(u) => u,
        Err(e) => return e.json(),
    };
    let created = async {
        let body = QuestionBody::read(&headers, &body)?;
        let question = body.question(&st, &user, None)?.ok_or_else(|| {
            WebError::BadRequest(
                "a saved question needs `question` (Explore's URL query) or `query` (the versioned request)".into(),
            )
        })?;
        let owner = user.clone();
        crate::blocking(&st, move |st| {
            let name = body.name.as_deref().unwrap_or_default();
            let shared_with = body.shared_with.as_deref().unwrap_or("private");
            let description = body.description.as_deref().unwrap_or_default();
            let id = st
                .store
                .save_question(&owner, name, description, &question, shared_with)?;
            st.store.audit(
                &owner.name,
                "save-question",
                &format!("{id}: {}", name.trim()),
            )?;
            st.store
                .question_for(&owner, id)?
                .ok_or_else(|| WebError::Internal(format!("saved question {id} vanished")))
        })
        .await
    };
    created_or_error(created.await)
}

/// `PATCH /api/questions/{id}`: changes what the body gives of the caller's saved question
/// (an administrator's: anyone's); the question as it now is.
pub(crate) async fn api_change(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    params: RawPathParams,
    body: Bytes,
) -> Response {
    let user = match crate::api_writer(&st, &headers).await {
        Ok(u) => u,
        Err(e) => return e.json(),
    };
    let changed = async {
        let id = question_id(&params)?;
        let body = QuestionBody::read(&headers, &body)?;
        let who = user.clone();
        let before = crate::blocking(&st, move |st| Ok(st.store.question_for(&who, id)?))
            .await?
            .ok_or_else(|| WebError::NotFound(format!("no saved question {id}")))?;
        if !may_change(&user, &before) {
            return Err(not_changeable(&st, &user, id));
        }
        let change = QuestionChange {
            name: body.name.clone(),
            description: body.description.clone(),
            question: body.question(&st, &user, Some(&before.question))?,
            shared_with: body.shared_with.clone(),
        };
        let who = user.clone();
        change_question(&st, who, id, change).await
    };
    match changed.await {
        Ok(q) => axum::Json(q).into_response(),
        Err(e) => e.json(),
    }
}

/// Changes a saved question for a user and audits it; a 403 or 404 when it may not.
async fn change_question(
    st: &Arc<AppState>,
    user: User,
    id: i64,
    change: QuestionChange,
) -> Result<SavedQuestion, WebError> {
    crate::blocking(st, move |st| {
        match st.store.change_question(&user, id, &change)? {
            Changed::Done(q) => {
                st.store
                    .audit(&user.name, "change-question", &format!("{id}: {}", q.name))?;
                Ok(q)
            }
            Changed::NotOwner | Changed::Missing => Err(not_changeable(st, &user, id)),
        }
    })
    .await
}

/// `DELETE /api/questions/{id}`: the caller's (an administrator's: anyone's); 204.
pub(crate) async fn api_delete(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    params: RawPathParams,
) -> Response {
    let user = match crate::api_writer(&st, &headers).await {
        Ok(u) => u,
        Err(e) => return e.json(),
    };
    let id = match question_id(&params) {
        Ok(id) => id,
        Err(e) => return e.json(),
    };
    let deleted = crate::blocking(&st, move |st| {
        if !st.store.delete_question(&user, id)? {
            return Err(not_changeable(st, &user, id));
        }
        st.store
            .audit(&user.name, "delete-question", &id.to_string())?;
        Ok(())
    })
    .await;
    match deleted {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.json(),
    }
}

/// `POST /api/questions/{id}/copy`: a private copy, for the caller, of a question it may
/// open, named by the body's `name` (or "Copy of" its name); 201 with the copy.
pub(crate) async fn api_copy(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    params: RawPathParams,
    body: Bytes,
) -> Response {
    let user = match crate::api_writer(&st, &headers).await {
        Ok(u) => u,
        Err(e) => return e.json(),
    };
    let copied = async {
        let id = question_id(&params)?;
        let body = QuestionBody::read(&headers, &body)?;
        if body.question.is_some()
            || body.query.is_some()
            || body.description.is_some()
            || body.shared_with.is_some()
            || body.chart.is_some()
        {
            return Err(WebError::BadRequest(
                "a copy takes only a `name`; change the copy afterwards".into(),
            ));
        }
        duplicate(&st, user.clone(), id, body.name).await
    };
    created_or_error(copied.await)
}

/// A new saved question as the JSON API answers it: 201 with where it now lives; a refusal as
/// the API's JSON error.
fn created_or_error(made: Result<SavedQuestion, WebError>) -> Response {
    match made {
        Ok(q) => (
            StatusCode::CREATED,
            [(header::LOCATION, format!("/api/questions/{}", q.id))],
            axum::Json(q),
        )
            .into_response(),
        Err(e) => e.json(),
    }
}

/// A private copy of a question the user may open, audited; a 404 when it may not open it.
async fn duplicate(
    st: &Arc<AppState>,
    user: User,
    id: i64,
    name: Option<String>,
) -> Result<SavedQuestion, WebError> {
    crate::blocking(st, move |st| {
        let original = st
            .store
            .question_for(&user, id)?
            .ok_or_else(|| WebError::NotFound(format!("no saved question {id}")))?;
        let name = name.unwrap_or_else(|| format!("Copy of {}", original.name));
        let copy = st
            .store
            .duplicate_question(&user, id, &name)?
            .ok_or_else(|| WebError::NotFound(format!("no saved question {id}")))?;
        st.store
            .audit(&user.name, "copy-question", &format!("{id} → {copy}"))?;
        st.store
            .question_for(&user, copy)?
            .ok_or_else(|| WebError::Internal(format!("saved question {copy} vanished")))
    })
    .await
}

/// The list page's and Explore's form on one saved question: `duplicate=NAME` keeps a
/// private copy; otherwise the owner changes what the form gives (`name`, `description`,
/// `shared_with`, and from Explore `question`, the question asked there now).
#[derive(Debug, Deserialize)]
pub(crate) struct EditForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    duplicate: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    shared_with: Option<String>,
    #[serde(default)]
    question: Option<String>,
}

/// `POST /questions/{id}/edit`: the page's form; back to the list (from Explore: to the
/// question as saved now).
pub(crate) async fn edit(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    params: RawPathParams,
    Form(form): Form<EditForm>,
) -> Response {
    let user = match crate::form_user(&st, &headers, &form.csrf).await {
        Ok(u) => u,
        Err(page) => return page,
    };
    let done = async {
        let id = question_id(&params)?;
        if let Some(name) = form.duplicate {
            duplicate(&st, user.clone(), id, Some(name)).await?;
            return Ok::<_, WebError>("/questions".to_string());
        }
        let from_explore = form.question.is_some();
        let question = match form.question.as_deref() {
            None => None,
            Some(q) => {
                let q = explore::Question::parse(q);
                q.check(&st, &user)?;
                Some(q.to_query_string())
            }
        };
        let change = QuestionChange {
            name: form.name,
            description: form.description,
            question,
            shared_with: form.shared_with,
        };
        change_question(&st, user.clone(), id, change).await?;
        Ok(if from_explore {
            format!("/questions/{id}")
        } else {
            "/questions".to_string()
        })
    };
    match done.await {
        Ok(to) => Redirect::to(&to).into_response(),
        Err(e) => e.page(Some(&user)),
    }
}
