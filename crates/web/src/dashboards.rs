//! Dashboards of one's own: saved questions composed on one page, each answered in the
//! viewer's audience (a dashboard keeps questions, never answers), with one period prompt over
//! all of them. The owner adds and removes questions and deletes it; whom it is shared with
//! open it. Another user's private dashboard is as absent as one that never was.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Form, Query as UrlQuery, RawPathParams, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use crate::explore;
use crate::pages::CellView;
use crate::store::{Dashboard, Role, SavedQuestion, TileSize, User};
use crate::{AppState, WebError, blocking, form_user, pages, path_id, signed_in};

/// The routes of dashboards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DashboardsRoute {
    /// `GET /dashboards`: those the user may open, and a form to make one.
    List,
    /// `POST /dashboards`: makes an empty one.
    Create,
    /// `GET /dashboards/{id}?period=`: its questions answered.
    Page,
    /// `GET /api/dashboards/{id}?period=`: the same as JSON, each answer the JSON API's.
    Api,
    /// `GET /export/dashboards/{id}?period=`: every answer in one Excel workbook, a sheet each.
    Export,
    /// `POST /dashboards/{id}/questions`: the owner adds (`add=ID`) or removes (`remove=ID`) a
    /// question, or renames it (`rename=NAME`); anyone who may open it copies it for themselves
    /// (`duplicate=NAME`).
    Edit,
    /// `POST /dashboards/{id}/delete`: the owner's or an administrator's.
    Delete,
}

/// The prompts over every question of the dashboard: a period, and the pages' partner and
/// product prompts, each applied to the questions that can take it.
#[derive(Debug, Default, Deserialize)]
pub struct DashboardQuery {
    #[serde(default)]
    period: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    tier: String,
    #[serde(default)]
    partner_type: String,
    #[serde(default)]
    product_line: String,
}

impl DashboardQuery {
    /// The period given, if any.
    fn period(&self) -> Option<&str> {
        Some(self.period.trim()).filter(|p| !p.is_empty())
    }

    /// The prompts given, as a URL's query.
    fn query(&self) -> String {
        [
            ("period", &self.period),
            ("region", &self.region),
            ("tier", &self.tier),
            ("partner_type", &self.partner_type),
            ("product_line", &self.product_line),
        ]
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| format!("{k}={}", pages::url(v.trim())))
        .collect::<Vec<_>>()
        .join("&")
    }

    /// The filters the prompts ask for, each with the prompt's name.
    fn filters(&self) -> Vec<(&'static str, String)> {
        [
            ("region", "partner.region", &self.region),
            ("tier", "partner.tier", &self.tier),
            ("partner type", "partner.partner_type", &self.partner_type),
            ("product line", "product.product_line", &self.product_line),
        ]
        .into_iter()
        .filter(|(_, _, v)| !v.trim().is_empty())
        .map(|(name, dimension, v)| (name, format!("{dimension}={}", v.trim())))
        .collect()
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    shared_with: String,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct EditForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    add: Option<i64>,
    #[serde(default)]
    remove: Option<i64>,
    /// A new name (the owner's).
    #[serde(default)]
    rename: Option<String>,
    /// The name of a private copy for the user (anyone who may open the dashboard).
    #[serde(default)]
    duplicate: Option<String>,
    /// `set`: the user's home page from now on; `clear`: the role's home page again (anyone
    /// who may open the dashboard).
    #[serde(default)]
    home: Option<String>,
    /// A question whose tile the owner sizes (`size=small|medium|large|full`) or moves
    /// (`move=earlier|later`).
    #[serde(default)]
    tile: Option<i64>,
    #[serde(default)]
    size: Option<String>,
    #[serde(default, rename = "move")]
    move_to: Option<String>,
}

/// A question of a dashboard as its page shows it.
pub(crate) struct QuestionPanel {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) description: String,
    /// How wide its tile is.
    pub(crate) size: TileSize,
    /// The dashboard's prompts it cannot take.
    pub(crate) notes: Vec<String>,
    /// Why it has no answer (a metric since removed from the model, a bad period).
    pub(crate) error: String,
    pub(crate) chart_json: String,
    pub(crate) header: Vec<String>,
    pub(crate) rows: Vec<Vec<CellView>>,
}

#[derive(Template)]
#[template(path = "dashboards.html")]
struct ListPage<'a> {
    user_name: String,
    role: String,
    csrf: String,
    nav: Vec<(String, String)>,
    dashboards: &'a [Dashboard],
    share_choices: Vec<&'static str>,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage<'a> {
    user_name: String,
    role: String,
    csrf: String,
    nav: Vec<(String, String)>,
    d: &'a Dashboard,
    period: String,
    /// The partner and product prompts: (name, label, choices).
    prompts: Vec<(&'static str, &'static str, Vec<pages::Choice>)>,
    /// The prompts given, as a URL's query (for the workbook's link).
    query: String,
    panels: Vec<QuestionPanel>,
    editable: bool,
    /// The saved questions the owner may add.
    addable: Vec<SavedQuestion>,
    /// It is the user's home page.
    home: bool,
    /// The widths a tile may take.
    sizes: [TileSize; 4],
}

/// A dashboard's answers, as `/api/dashboards/{id}` gives them.
#[derive(Serialize)]
struct Answered<'a> {
    #[serde(flatten)]
    dashboard: &'a Dashboard,
    period: Option<&'a str>,
    answers: Vec<AnsweredQuestion>,
}

#[derive(Serialize)]
struct AnsweredQuestion {
    question_id: i64,
    name: String,
    /// How wide its tile is on the dashboard's page.
    size: TileSize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    answer: Option<prism_engine::api::QueryResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// A saved question as the dashboard asks it: its own period unless the dashboard's prompt
/// gives one, and each prompt's filter the question can take (its metrics' facts reach the
/// dimension); a prompt it cannot take is said in a note, not an error.
fn asked(
    st: &AppState,
    user: &User,
    q: &SavedQuestion,
    prompt: &DashboardQuery,
) -> (explore::Question, Vec<String>) {
    let mut question = explore::Question::from_query_string(Some(&q.question));
    if let Some(p) = prompt.period() {
        question.period = Some(p.to_string());
    }
    let mut notes = Vec::new();
    for (name, filter) in prompt.filters() {
        let mut with = question.clone();
        with.filters.push(filter);
        if with.check(st, user).is_ok() {
            question = with;
        } else {
            notes.push(format!("the {name} prompt does not apply to this question"));
        }
    }
    (question, notes)
}

/// A question of a dashboard as asked and answered.
struct Asked {
    question: explore::Question,
    notes: Vec<String>,
    answer: Result<explore::Answer, WebError>,
}

/// Every question answered in the viewer's audience.
async fn answers(st: &AppState, user: &User, d: &Dashboard, prompt: &DashboardQuery) -> Vec<Asked> {
    // One after the other: each is small, and the engine keeps its answers for the next viewer.
    let mut out = Vec::new();
    for q in &d.questions {
        let (question, notes) = asked(st, user, q, prompt);
        let answer = explore::answer(st, user, &question).await;
        out.push(Asked {
            question,
            notes,
            answer,
        });
    }
    out
}

/// `GET /dashboards`, `/dashboards/{id}` and `/api/dashboards/{id}`.
pub(crate) async fn show(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    params: RawPathParams,
    UrlQuery(prompt): UrlQuery<DashboardQuery>,
    route: DashboardsRoute,
) -> Response {
    let html = matches!(route, DashboardsRoute::List | DashboardsRoute::Page);
    let fail = |e: WebError, user: Option<&User>| if html { e.page(user) } else { e.json() };
    let (user, csrf) = match signed_in(&st, &headers).await {
        Ok(u) => u,
        Err(e) => return fail(e, None),
    };
    let who = user.clone();
    if route == DashboardsRoute::List {
        return match blocking(&st, move |st| Ok(st.store.dashboards_for(&who)?)).await {
            Ok(list) => Html(render_list(&user, &csrf, &list)).into_response(),
            Err(e) => fail(e, Some(&user)),
        };
    }
    let id = path_id(&params).and_then(|i| i.parse::<i64>().ok());
    let found = blocking(&st, move |st| {
        let d = match id {
            Some(id) => st.store.dashboard(&who, id)?,
            None => None,
        };
        // Only the page offers questions to add, and says whether it is the user's home.
        let (addable, home) = match (&d, route) {
            (Some(d), DashboardsRoute::Page) => (
                st.store.questions_for(&who)?,
                st.store.home_dashboard(&who)? == Some(d.id),
            ),
            _ => (Vec::new(), false),
        };
        Ok((d, (addable, home)))
    })
    .await;
    let (d, (addable, home)) = match found {
        Ok((Some(d), found)) => (d, found),
        Ok((None, _)) => return fail(WebError::NotFound("no such dashboard".into()), Some(&user)),
        Err(e) => return fail(e, Some(&user)),
    };
    let period = prompt.period();
    let answered = answers(&st, &user, &d, &prompt).await;
    if route == DashboardsRoute::Export {
        return export(&st, &user, &d, period, &answered).await;
    }
    if !html {
        return api_answer(&d, period, answered);
    }
    let panels = panels(&st.engine.model, &d, answered);
    let editable = d.owner == user.name || user.role == Role::Admin;
    let prompts = prompts(&st, &user, &prompt).await;
    let addable = addable
        .into_iter()
        .filter(|q| !d.questions.iter().any(|x| x.id == q.id))
        .collect();
    Html(
        DashboardPage {
            user_name: user.name.clone(),
            role: user.role.name().into(),
            csrf,
            nav: pages::nav(Some(&user)),
            d: &d,
            period: period.unwrap_or_default().to_string(),
            query: prompt.query(),
            prompts,
            panels,
            editable,
            addable,
            home,
            sizes: TileSize::ALL,
        }
        .render()
        .unwrap_or_else(|e| format!("template: {e}")),
    )
    .into_response()
}

/// A dashboard's answers as JSON: each question's id, name, tile size, notes, and its answer
/// or why it has none.
fn api_answer(d: &Dashboard, period: Option<&str>, answered: Vec<Asked>) -> Response {
    let answers = d
        .questions
        .iter()
        .zip(&d.sizes)
        .zip(answered)
        .map(|((q, size), a)| AnsweredQuestion {
            question_id: q.id,
            name: q.name.clone(),
            size: *size,
            notes: a.notes,
            error: a.answer.as_ref().err().map(|e| e.to_string()),
            answer: a.answer.ok().map(|a| explore::response(&a)),
        })
        .collect();
    axum::Json(Answered {
        dashboard: d,
        period,
        answers,
    })
    .into_response()
}

/// Each question's tile: its chart and table, or why it has no answer.
fn panels(model: &prism_model::Model, d: &Dashboard, answered: Vec<Asked>) -> Vec<QuestionPanel> {
    d.questions
        .iter()
        .zip(&d.sizes)
        .zip(answered)
        .map(|((q, size), a)| {
            let Asked {
                question,
                notes,
                answer: a,
            } = a;
            let mut panel = QuestionPanel {
                id: q.id,
                name: q.name.clone(),
                description: q.description.clone(),
                size: *size,
                notes,
                error: String::new(),
                chart_json: String::new(),
                header: Vec::new(),
                rows: Vec::new(),
            };
            match a {
                Ok(a) => {
                    let kind = question.chart_kind().unwrap_or(explore::ChartKind::Bar);
                    let view = explore::answer_view(model, &question, kind, &a.result);
                    (panel.chart_json, panel.header, panel.rows) =
                        (view.chart_json, view.header, view.rows);
                }
                Err(e) => panel.error = e.to_string(),
            }
            panel
        })
        .collect()
}

/// The dashboard-wide prompts with the members the user may pick: the partner prompts from one
/// read of the partners the user may see (a partner's user, who sees one, gets none), and the
/// product lines.
async fn prompts(
    st: &Arc<AppState>,
    user: &User,
    prompt: &DashboardQuery,
) -> Vec<(&'static str, &'static str, Vec<pages::Choice>)> {
    let mut prompts = Vec::new();
    if !user.is_partner_user() {
        let values = pages::members_of(
            st,
            user,
            "partner",
            &["partner.region", "partner.tier", "partner.partner_type"],
        )
        .await;
        for ((name, label, chosen), values) in [
            ("region", "Region", &prompt.region),
            ("tier", "Tier", &prompt.tier),
            ("partner_type", "Partner type", &prompt.partner_type),
        ]
        .into_iter()
        .zip(values)
        {
            let chosen = Some(chosen.trim()).filter(|c| !c.is_empty());
            prompts.push((name, label, pages::choices(values, chosen)));
        }
    }
    let lines = pages::members_of(st, user, "product", &["product.product_line"]).await;
    let chosen = Some(prompt.product_line.trim()).filter(|c| !c.is_empty());
    prompts.push((
        "product_line",
        "Product line",
        pages::choices(lines.into_iter().next().unwrap_or_default(), chosen),
    ));
    prompts
}

/// The dashboard's answers as one workbook, a sheet per question that could be answered (in
/// its order, named after it); audited like every export.
async fn export(
    st: &Arc<AppState>,
    user: &User,
    d: &Dashboard,
    period: Option<&str>,
    answered: &[Asked],
) -> Response {
    let sheets: Vec<(&str, &prism_engine::QueryResult)> = d
        .questions
        .iter()
        .zip(answered)
        .filter_map(|(q, a)| Some((q.name.as_str(), &a.answer.as_ref().ok()?.result)))
        .collect();
    let bytes = match explore::workbook(&st.engine.model, &sheets) {
        Ok(b) => b,
        Err(e) => return e.text(),
    };
    let (name, detail) = (
        user.name.clone(),
        format!(
            "dashboard {} period {}",
            d.id,
            period.unwrap_or("(each question's)")
        ),
    );
    if let Err(e) = blocking(st, move |st| {
        Ok(st.store.audit(&name, "export", &detail)?)
    })
    .await
    {
        return e.text();
    }
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet".to_string(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                "attachment; filename=\"dashboard.xlsx\"".to_string(),
            ),
        ],
        bytes,
    )
        .into_response()
}

fn render_list(user: &User, csrf: &str, list: &[Dashboard]) -> String {
    ListPage {
        user_name: user.name.clone(),
        role: user.role.name().into(),
        csrf: csrf.into(),
        nav: pages::nav(Some(user)),
        dashboards: list,
        share_choices: crate::store::share_choices(),
    }
    .render()
    .unwrap_or_else(|e| format!("template: {e}"))
}

/// `POST /dashboards`: an empty dashboard of the user's, then its page.
pub(crate) async fn create(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<CreateForm>,
) -> Response {
    let user = match form_user(&st, &headers, &form.csrf).await {
        Ok(u) => u,
        Err(page) => return page,
    };
    let owner = user.clone();
    let made = blocking(&st, move |st| {
        let shared_with = if form.shared_with.is_empty() {
            "private"
        } else {
            &form.shared_with
        };
        let id = st.store.add_dashboard(&owner, &form.name, shared_with)?;
        st.store
            .audit(&owner.name, "add-dashboard", &id.to_string())?;
        Ok(id)
    })
    .await;
    match made {
        Ok(id) => Redirect::to(&format!("/dashboards/{id}")).into_response(),
        Err(e) => e.page(Some(&user)),
    }
}

/// The form of `POST /questions/{id}/dashboard`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AddFromListForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    dashboard: i64,
}

/// `POST /questions/{id}/dashboard`: the saved question `{id}` put on one of the user's own
/// dashboards, from the list of saved questions; then that dashboard.
pub(crate) async fn add_from_list(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    params: RawPathParams,
    Form(form): Form<AddFromListForm>,
) -> Response {
    let user = match form_user(&st, &headers, &form.csrf).await {
        Ok(u) => u,
        Err(page) => return page,
    };
    let Some(question) = path_id(&params).and_then(|i| i.parse::<i64>().ok()) else {
        return WebError::NotFound("no such saved question".into()).page(Some(&user));
    };
    let id = form.dashboard;
    changed(&st, user, id, move |st, who| {
        Ok(st.store.add_to_dashboard(who, id, question)?.then_some(id))
    })
    .await
}

/// Makes a change to dashboard `id` for `user` off the async workers, audits it, and shows the
/// dashboard the change names (this one, or a copy); none is a 404, as for a dashboard that is
/// not the user's.
async fn changed(
    st: &Arc<AppState>,
    user: User,
    id: i64,
    change: impl FnOnce(&AppState, &User) -> Result<Option<i64>, WebError> + Send + 'static,
) -> Response {
    let who = user.clone();
    let done = blocking(st, move |st| {
        let shown = change(st, &who)?;
        if let Some(shown) = shown {
            let event = if shown == id {
                "edit-dashboard"
            } else {
                "add-dashboard"
            };
            st.store.audit(&who.name, event, &shown.to_string())?;
        }
        Ok(shown)
    })
    .await;
    match done {
        Ok(Some(shown)) => Redirect::to(&format!("/dashboards/{shown}")).into_response(),
        Ok(None) => WebError::NotFound(format!("no dashboard {id} of yours")).page(Some(&user)),
        Err(e) => e.page(Some(&user)),
    }
}

/// `POST /dashboards/{id}/questions`: the owner adds or removes a question.
pub(crate) async fn edit(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    params: RawPathParams,
    Form(form): Form<EditForm>,
) -> Response {
    let user = match form_user(&st, &headers, &form.csrf).await {
        Ok(u) => u,
        Err(page) => return page,
    };
    let Some(id) = path_id(&params).and_then(|i| i.parse::<i64>().ok()) else {
        return WebError::NotFound("no such dashboard".into()).page(Some(&user));
    };
    // The dashboard to show afterwards: this one, or its copy.
    changed(&st, user, id, move |st, who| {
        let one = [
            form.add.is_some(),
            form.remove.is_some(),
            form.rename.is_some(),
            form.duplicate.is_some(),
            form.home.is_some(),
            form.tile.is_some(),
        ];
        if one.iter().filter(|given| **given).count() != 1 {
            return Err(WebError::BadRequest(
                "say one thing: add=ID, remove=ID, rename=NAME, duplicate=NAME, home=set|clear, or tile=ID with size=small|medium|large|full or move=earlier|later"
                    .into(),
            ));
        }
        let store = &st.store;
        Ok(if let Some(q) = form.tile {
            match (form.size.as_deref(), form.move_to.as_deref()) {
                (Some(size), None) => store
                    .resize_tile(who, id, q, TileSize::parse(size)?)?
                    .then_some(id),
                (None, Some(to @ ("earlier" | "later"))) => {
                    let by = if to == "earlier" { -1 } else { 1 };
                    store.move_tile(who, id, q, by)?.then_some(id)
                }
                _ => {
                    return Err(WebError::BadRequest(
                        "a tile is sized (size=small|medium|large|full) or moved (move=earlier|later), one at a time".into(),
                    ));
                }
            }
        } else if let Some(q) = form.add {
            store.add_to_dashboard(who, id, q)?.then_some(id)
        } else if let Some(q) = form.remove {
            store.remove_from_dashboard(who, id, q)?.then_some(id)
        } else if let Some(name) = &form.rename {
            store.rename_dashboard(who, id, name)?.then_some(id)
        } else if let Some(name) = &form.duplicate {
            store.duplicate_dashboard(who, id, name)?
        } else {
            let home = match form.home.as_deref() {
                Some("set") => Some(id),
                Some("clear") => None,
                _ => return Err(WebError::BadRequest("home=set or home=clear".into())),
            };
            store.set_home_dashboard(who, home)?.then_some(id)
        })
    })
    .await
}
