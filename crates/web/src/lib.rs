//! The browser app: `prism serve`. Server-rendered pages (askama, one layout) with charts drawn
//! by the bundled ECharts script, a JSON API under `/api/` with the same data as every page, and
//! a CSV export of every table. Users sign in; every query runs with the scope of their role, in
//! the engine — a page never filters anything itself.
//!
//! Every route is listed in `ROUTES`, from which the router is built, so that the route × role
//! test covers every route there is.

#![warn(missing_docs)]

pub mod alerts;
pub mod dashboards;
pub mod explore;
pub mod ops;
pub(crate) mod pages;
pub mod planned;
pub mod questions;
pub mod store;
pub(crate) mod visibility;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Form, Query as UrlQuery, RawPathParams, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{delete, get, patch, post};
use axum::{Extension, Router};
use prism_engine::{Engine, Session};
use prism_model::Model;
use prism_warehouse::Warehouse;
use serde::Deserialize;

pub use dashboards::DashboardsRoute;
pub use pages::{PageId, Prompts};
pub use store::{Role, Store, User};

/// The front-end bundle (Apache ECharts and the chart script), built by `scripts/build-web`.
const APP_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/app.js"));
const STYLE_CSS: &str = include_str!("../assets/style.css");
/// The JSON API's OpenAPI description, kept with the docs; a test holds it to `routes()`.
pub const OPENAPI_JSON: &str = include_str!("../../../docs/openapi.json");

/// The app: its data folder, engine and store, and what it keeps per warehouse version.
pub struct AppState {
    /// The app's own folder: its store (`app.sqlite`). The data folder, unless the warehouse
    /// is on a bucket.
    pub data: PathBuf,
    /// Where the warehouse is: the data folder, or a bucket's `s3://` URL.
    pub warehouse: PathBuf,
    /// The engine every figure is asked of.
    pub engine: Engine,
    /// Users, sessions, saved questions, dashboards, alerts, the audit log.
    pub store: Store,
    /// Cookies marked Secure: set when the app is served over TLS (directly or behind a proxy).
    pub secure_cookies: bool,
    /// The proxies whose `X-Forwarded-For` is believed (`prism serve --trusted-proxy`); from
    /// anyone else the header is ignored and the socket's address counts, for throttling and
    /// the audit log.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The session over the current warehouse version, kept until a load switches the version.
    session: Mutex<Option<(u64, Arc<Session>)>>,
    /// Held while a session over a new version is made: the requests that notice a load
    /// together wait for one session instead of each opening every table (200 users noticing
    /// a load at once stalled the server for seconds).
    new_session: tokio::sync::Mutex<()>,
    /// The app itself, for building pages in the background after a load (set by `router`,
    /// whose requests are the ones that keep pages).
    shared: std::sync::OnceLock<std::sync::Weak<AppState>>,
    /// How many background builds of a new version's pages are under way.
    warming: tokio::sync::watch::Sender<usize>,
    /// Pages built over the current version (see `pages::build`), oldest first out.
    pages: Mutex<PageCache>,
    /// What keeps alerts asked for on a page (`set_alert_maker`); none: pages cannot set one up.
    alert_maker: std::sync::OnceLock<Arc<dyn alerts::AlertMaker>>,
    /// Requests, sign-in failures and the engine's answers counted for `/metrics`.
    pub ops: ops::Ops,
}

#[derive(Default)]
struct PageCache {
    version: u64,
    pages: std::collections::HashMap<String, pages::Page>,
    order: std::collections::VecDeque<String>,
    /// One gate per page being built: requests for a page another request is building wait
    /// for it instead of building it again (200 users opening the overview after a load ask
    /// its questions once, not 200 times).
    gates: std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// How each kept page was asked for, to build it again over a load's new version.
    recipes: std::collections::HashMap<String, PageRecipe>,
}

/// Who asked for a kept page, which page and with which prompts: enough to build it again.
#[derive(Clone)]
pub(crate) struct PageRecipe {
    pub(crate) user: User,
    pub(crate) page: PageId,
    pub(crate) id: Option<String>,
    pub(crate) prompts: Prompts,
}

/// The most pages built again over a new version, newest first, and the longest that may take:
/// the rest are built when first asked. Built in the background, nobody waits for them; the
/// budget bounds the work spent on pages no one may ask for again.
const WARMED_PAGES: usize = 100;
const WARMING_BUDGET: std::time::Duration = std::time::Duration::from_secs(30);

/// One background build of a new version's pages, counted in `AppState::warming` while it
/// lives.
struct Warming(Arc<AppState>);

impl Drop for Warming {
    fn drop(&mut self) {
        self.0.warming.send_modify(|n| *n -= 1);
    }
}

impl PageCache {
    /// Keeps a page, the oldest out beyond `PAGES_KEPT`.
    fn keep(&mut self, key: String, page: pages::Page, recipe: PageRecipe) {
        self.recipes.insert(key.clone(), recipe);
        if self.pages.insert(key.clone(), page).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > PAGES_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.pages.remove(&old);
                self.recipes.remove(&old);
            }
        }
    }

    /// Empties the cache for a newer version's pages (the older ones are never asked again).
    fn start(&mut self, version: u64) {
        if self.version != version {
            *self = PageCache {
                version,
                ..PageCache::default()
            };
        }
    }
}

/// Pages kept per warehouse version.
const PAGES_KEPT: usize = 500;

/// Memory the web app's result cache may hold.
pub const RESULT_CACHE_BYTES: usize = 256 << 20;

impl AppState {
    /// The app over a data folder with its own result cache.
    pub fn open(
        data: &Path,
        model: Model,
        secure_cookies: bool,
    ) -> Result<AppState, store::StoreError> {
        // Pages ask the same questions again and again; a load starts a new session.
        Self::with_engine(
            data,
            Engine::with_result_cache(model, RESULT_CACHE_BYTES),
            secure_cookies,
        )
    }

    /// An app over an engine of the caller's making (`prism serve --no-cache --no-rollups`).
    pub fn with_engine(
        data: &Path,
        engine: Engine,
        secure_cookies: bool,
    ) -> Result<AppState, store::StoreError> {
        std::fs::create_dir_all(data)
            .map_err(|e| store::StoreError::Invalid(format!("{}: {e}", data.display())))?;
        let ops = ops::Ops::new(data.to_path_buf(), engine.stats());
        Ok(AppState {
            data: data.to_path_buf(),
            warehouse: data.to_path_buf(),
            ops,
            engine,
            store: Store::open(&data.join("app.sqlite"))?,
            secure_cookies,
            trusted_proxies: Vec::new(),
            session: Mutex::new(None),
            new_session: tokio::sync::Mutex::new(()),
            shared: std::sync::OnceLock::new(),
            warming: tokio::sync::watch::Sender::new(0),
            pages: Mutex::new(PageCache::default()),
            alert_maker: std::sync::OnceLock::new(),
        })
    }

    /// The same app believing `X-Forwarded-For` from these proxies only.
    pub fn with_trusted_proxies(mut self, proxies: Vec<std::net::IpAddr>) -> AppState {
        self.trusted_proxies = proxies;
        self
    }

    /// The same app under an administrator's session and audit policy.
    pub fn with_policy(self, policy: store::Policy) -> Result<AppState, store::StoreError> {
        Ok(AppState {
            store: self.store.with_policy(policy)?,
            ..self
        })
    }

    /// Lets pages set up alerts, through what the delivers crate gives (once; later calls
    /// change nothing).
    pub fn set_alert_maker(&self, maker: Arc<dyn alerts::AlertMaker>) {
        let _ = self.alert_maker.set(maker);
    }

    /// A page built before over the same warehouse version.
    pub(crate) fn cached_page(&self, version: u64, key: &str) -> Option<pages::Page> {
        let cache = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        (cache.version == version)
            .then(|| cache.pages.get(key).cloned())
            .flatten()
    }

    /// The gate of a page being built over a version (see `PageCache::gates`).
    pub(crate) fn page_gate(&self, version: u64, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut cache = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        if version < cache.version {
            // A request over a version a load has since replaced builds its page alone.
            return Arc::default();
        }
        cache.start(version);
        // Gates of pages whose build failed stay; a bound keeps them from piling up.
        if cache.gates.len() > 4 * PAGES_KEPT {
            cache.gates.clear();
        }
        cache.gates.entry(key.to_string()).or_default().clone()
    }

    pub(crate) fn keep_page(
        &self,
        version: u64,
        key: String,
        page: &pages::Page,
        recipe: PageRecipe,
    ) {
        let mut cache = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        // A page of a replaced version, finished after the newer version's first pages, is
        // not kept: putting it back would throw those away.
        if version < cache.version {
            return;
        }
        cache.start(version);
        cache.gates.remove(&key);
        cache.keep(key, page.clone(), recipe);
    }

    /// The same app over a warehouse elsewhere than its own folder (`--data s3://…` with
    /// `--state DIR`).
    pub fn with_warehouse(mut self, location: PathBuf) -> AppState {
        self.ops = ops::Ops::new(location.clone(), self.engine.stats());
        self.warehouse = location;
        self
    }

    /// A session over the current warehouse version (the same one until a load commits).
    pub async fn session(&self) -> Result<(u64, Arc<Session>), WebError> {
        let wh = Warehouse::open(&self.warehouse).map_err(|e| WebError::Internal(e.to_string()))?;
        let snapshot = wh
            .snapshot(None)
            .map_err(|e| WebError::NoData(e.to_string()))?;
        let version = snapshot.version.version;
        let current = || {
            self.session
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .filter(|(v, _)| *v == version)
                .map(|(_, s)| (version, s.clone()))
        };
        if let Some(kept) = current() {
            return Ok(kept);
        }
        // A load committed: one request makes the new version's session (opening each table
        // at its pinned version) and switches; meanwhile the others go on with the version
        // before (each answer is of one version or the other, never a mix).
        let _making = match self.new_session.try_lock() {
            Ok(making) => making,
            Err(_) => {
                let served = self
                    .session
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                match served {
                    Some((v, s)) if v < version => return Ok((v, s)),
                    _ => self.new_session.lock().await,
                }
            }
        };
        if let Some(kept) = current() {
            return Ok(kept);
        }
        let session = snapshot
            .session()
            .await
            .map_err(|e| WebError::Internal(e.to_string()))?;
        // Served at once: this request and every later one see the new version, and the pages
        // kept for the version before are built again beside them. A page asked for while it
        // is being built waits for that build (its gate), not for the others. Pages are kept
        // only by the router's requests, which set `shared`.
        let recipes = self.kept_recipes();
        self.switch(version, &session);
        if let Some(app) = self.shared.get().and_then(std::sync::Weak::upgrade)
            && !recipes.is_empty()
        {
            self.warming.send_modify(|n| *n += 1);
            let served = session.clone();
            tokio::spawn(async move {
                // Counted down however the builds end, a panic included, so that
                // `pages_warmed` never waits for ever.
                let _done = Warming(app.clone());
                // Boxed: a page's build is a large future.
                Box::pin(app.warm_in_background(version, served, recipes)).await;
            });
        }
        Ok((version, session))
    }

    /// Waits until the pages kept before a load are built again over the version it made (or
    /// their builds have given up): what a test or a readiness check waits for.
    pub async fn pages_warmed(&self) {
        let mut warming = self.warming.subscribe();
        // The sender lives as long as `self`, so the wait cannot fail.
        let _ = warming.wait_for(|n| *n == 0).await;
    }

    /// How each page kept over the version being replaced was asked for, newest first, at
    /// most `WARMED_PAGES`.
    fn kept_recipes(&self) -> Vec<(String, PageRecipe)> {
        let cache = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .order
            .iter()
            .rev()
            .filter_map(|k| cache.recipes.get(k).map(|r| (k.clone(), r.clone())))
            .take(WARMED_PAGES)
            .collect()
    }

    /// Builds the kept pages again over `version`, now served, as their users' requests do
    /// (`pages::build_over`: each under its gate, kept for the version, skipped when a
    /// request has built it first), within `WARMING_BUDGET`; stops when a later load is
    /// served. A page that fails is left to be built (and its error shown) when asked.
    async fn warm_in_background(
        &self,
        version: u64,
        session: Arc<Session>,
        recipes: Vec<(String, PageRecipe)>,
    ) {
        let started = std::time::Instant::now();
        for (_, r) in recipes {
            let served = self
                .session
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|(v, _)| *v);
            if started.elapsed() > WARMING_BUDGET || served != Some(version) {
                break;
            }
            let built = Box::pin(pages::build_over(
                self,
                &r.user,
                r.page,
                r.id.as_deref(),
                &r.prompts,
                version,
                session.clone(),
            ))
            .await;
            if let Err(e) = built {
                tracing::debug!(page = r.page.name(), error = %e, "a kept page was not built again after a load");
            }
        }
    }

    /// Serves a new version: its session, and a page cache emptied for its pages.
    fn switch(&self, version: u64, session: &Arc<Session>) {
        let mut cache = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        if version > cache.version {
            cache.start(version);
        }
        drop(cache);
        let mut kept = self.session.lock().unwrap_or_else(|e| e.into_inner());
        // A request that read the version before a later load committed does not put its
        // older session back over the newer one.
        if kept.as_ref().is_none_or(|(v, _)| *v < version) {
            *kept = Some((version, session.clone()));
        }
    }
}

/// Why a request is refused or failed; each is a status and a message.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// No session: 401 (a page redirects to the sign-in).
    #[error("sign in first")]
    SignedOut,
    /// Outside the user's audience or role: 403.
    #[error("{0}")]
    Forbidden(String),
    /// A malformed parameter: 400, naming it.
    #[error("{0}")]
    BadRequest(String),
    /// Nothing of that name the user may see: 404.
    #[error("{0}")]
    NotFound(String),
    /// Nothing loaded yet: 503.
    #[error("no data yet: {0}")]
    NoData(String),
    /// An unexpected failure: 500 with an incident id; the details go to the log only.
    #[error("{0}")]
    Internal(String),
    /// A service this server runs without.
    #[error("{0}")]
    Unavailable(String),
}

impl From<prism_analyses::AnalysisError> for WebError {
    fn from(e: prism_analyses::AnalysisError) -> WebError {
        use prism_analyses::AnalysisError as A;
        match e {
            A::Forbidden(m) => WebError::Forbidden(m),
            A::Invalid(m) => WebError::BadRequest(m),
            A::Engine(prism_engine::EngineError::Forbidden(m)) => WebError::Forbidden(m),
            A::Engine(prism_engine::EngineError::Execution(e)) => WebError::Internal(e.to_string()),
            A::Engine(other) => WebError::BadRequest(other.to_string()),
        }
    }
}

impl From<prism_engine::EngineError> for WebError {
    fn from(e: prism_engine::EngineError) -> WebError {
        prism_analyses::AnalysisError::Engine(e).into()
    }
}

impl From<store::StoreError> for WebError {
    /// What the user gave the store is the user's to fix (a 400 with the reason); the database
    /// failing is not.
    fn from(e: store::StoreError) -> WebError {
        match e {
            store::StoreError::Invalid(m) => WebError::BadRequest(m),
            other => WebError::Internal(other.to_string()),
        }
    }
}

impl WebError {
    fn status(&self) -> StatusCode {
        match self {
            WebError::SignedOut => StatusCode::UNAUTHORIZED,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::NoData(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            WebError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// What the client is told. An unexpected failure's own text stays in the log, under an
    /// id the client gets, so that nothing of the server's insides reaches a browser.
    fn public_message(&self) -> String {
        match self {
            WebError::Internal(m) => {
                let id = incident_id();
                tracing::error!(incident = %id, "{m}");
                format!(
                    "something went wrong on the server; the administrator can find it in the log under incident {id}"
                )
            }
            other => other.to_string(),
        }
    }

    /// As a page: signed-out visitors go to the sign-in page; the rest see the reason.
    fn page(self, user: Option<&User>) -> Response {
        if matches!(self, WebError::SignedOut) {
            return Redirect::to("/").into_response();
        }
        let status = self.status();
        let body = pages::ErrorPage {
            user_name: user.map(|u| u.name.clone()).unwrap_or_default(),
            nav: pages::nav(user),
            status: status.as_u16(),
            message: self.public_message(),
        }
        .render();
        (status, Html(body)).into_response()
    }

    /// As JSON: `{"error": "..."}` with the status.
    fn json(self) -> Response {
        (
            self.status(),
            axum::Json(serde_json::json!({ "error": self.public_message() })),
        )
            .into_response()
    }

    /// As plain text (the CSV exports).
    fn text(self) -> Response {
        (self.status(), self.public_message()).into_response()
    }
}

/// A short random id for an incident: in the client's message and in the log line.
fn incident_id() -> String {
    store::random_token()[..12].to_string()
}

/// The limits every request runs under (see `router`).
pub mod limits {
    /// A question still unanswered after this long is cut off with a 503, so that one slow
    /// question cannot hold a worker for good.
    pub const REQUEST_SECONDS: u64 = 30;
    /// Requests served at once; more wait their turn.
    pub const IN_FLIGHT: usize = 64;
    /// A request body (the sign-in form) at most this long.
    pub const BODY_BYTES: usize = 16 * 1024;
    /// A URL's query (the prompts) at most this long.
    pub const QUERY_BYTES: usize = 4 * 1024;
}

/// Security headers on every response, and the size of the prompts checked before anything
/// reads them.
async fn guard(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let too_long = request
        .uri()
        .query()
        .is_some_and(|q| q.len() > limits::QUERY_BYTES);
    let mut response = if too_long {
        (
            StatusCode::BAD_REQUEST,
            format!(
                "the URL's parameters are too long: at most {} bytes",
                limits::QUERY_BYTES
            ),
        )
            .into_response()
    } else {
        next.run(request).await
    };
    let h = response.headers_mut();
    // Scripts only from the app's own bundle (no inline script runs); styles may be set by
    // the charts' script on the elements it draws.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Data is never kept by a browser or a proxy; the bundled script and style say otherwise.
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A panic in a handler: a 500 with an incident id, the panic's text in the log only.
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let text = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    WebError::Internal(format!("a request panicked: {text}")).text()
}

/// What a route serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serves {
    /// A dashboard page, its JSON, or its table as CSV.
    Html(PageId),
    /// The page's data as JSON (`/api/...`).
    Api(PageId),
    /// A table of the page as CSV (`/export/...`).
    Csv(PageId),
    /// Explore: a question of one's own as a page, as the JSON API's answer, or as CSV.
    Explore(ExploreForm),
    /// Saved questions: the list, saving, opening, running through the API, deleting.
    Questions(QuestionsRoute),
    /// The user's inbox, alerts and delivery log: `/alerts` (reading marks the inbox read)
    /// or `/api/alerts`.
    Alerts(AlertsRoute),
    /// Campaigns planned from a target list: planning one, its page, JSON and files.
    Planned(PlannedRoute),
    /// Dashboards of one's own: the list, making one, its page and JSON, editing, deleting.
    Dashboards(DashboardsRoute),
    /// `GET /admin/pages`: which shipped pages each role sees (administrators only).
    PageVisibility,
    /// `POST /admin/pages`: hides a shipped page from a role, or shows it again.
    HidePage,
    /// `GET /`: the sign-in page (or the home page of a signed-in user).
    SignInPage,
    /// `POST /sign-in`.
    SignIn,
    /// `POST /sign-out`.
    SignOut,
    /// The bundled script (charts, tables).
    Script,
    /// The style sheet.
    Style,
    /// No icon.
    Favicon,
    /// `/healthz`, `/readyz` and `/metrics`: for an operator's monitoring, without a sign-in.
    Ops(OpsRoute),
    /// `/api/openapi.json`: the JSON API's description (docs/openapi.json), without a sign-in.
    OpenApi,
}

/// The routes of an operator's monitoring (see `ops`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpsRoute {
    /// `/healthz`: the process answers.
    Health,
    /// `/readyz`: a warehouse version is loaded and the app's store answers.
    Ready,
    /// `/metrics`: Prometheus' text format.
    Metrics,
}

/// The forms an Explore answer takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExploreForm {
    /// The page: the question's form and its answer.
    Html,
    /// `/api/explore`: the JSON API's versioned answer.
    Api,
    /// `/export/explore`: the answer as CSV, at full precision.
    Csv,
}

/// The routes of saved questions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuestionsRoute {
    /// `GET /questions?q=`: the questions the user may open, searched.
    List,
    /// `GET /api/questions`: the same as JSON.
    ApiList,
    /// `POST /questions`: saves the Explore question of the form.
    Save,
    /// `GET /questions/{id}`: asks it again in Explore, in the opener's audience.
    Open,
    /// `GET /api/questions/{id}`: the question with its answer, as JSON.
    ApiRun,
    /// `POST /questions/{id}/delete`: the owner's or an administrator's.
    Delete,
    /// `POST /questions/{id}/dashboard`: puts it on one of the user's own dashboards
    /// (`dashboard=ID`), from the list.
    AddToDashboard,
    /// `POST /questions/{id}/edit`: renames, describes, shares or re-asks it (the owner's or
    /// an administrator's), or keeps a private copy (whoever may open it).
    Edit,
    /// `POST /api/questions`: creates one from JSON.
    ApiCreate,
    /// `PATCH /api/questions/{id}`: changes what the JSON gives.
    ApiChange,
    /// `DELETE /api/questions/{id}`.
    ApiDelete,
    /// `POST /api/questions/{id}/copy`: a private copy for the caller.
    ApiCopy,
}

/// The routes of the Alerts overview.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertsRoute {
    /// `GET /alerts`: the page (reading marks the inbox read).
    Page,
    /// `GET /api/alerts`: the same as JSON.
    Api,
    /// `POST /alerts/{id}/delete`: the owner's or an administrator's.
    Delete,
    /// `POST /alerts`: sets up an alert or a scheduled report on an Explore question.
    Create,
}

/// The routes of a campaign planned from a target list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlannedRoute {
    /// `POST /my/potential/campaign`: plans one from Customer potential's target list.
    Create,
    /// `GET /campaigns/planned`: the planned campaigns the user may see.
    List,
    /// `GET /api/campaigns/planned`: the same as JSON.
    ApiList,
    /// `GET /campaigns/planned/{id}`: expected against actual.
    Page,
    /// `GET /api/campaigns/planned/{id}`: the same as JSON.
    Api,
    /// `GET /export/campaigns/planned/{id}`: the target list with the campaign's id, as CSV.
    Targets,
    /// `GET /export/campaigns/planned/{id}/campaign`: the campaign as a `campaigns.csv` row.
    CampaignRow,
}

/// Every route: method, path and what it serves. The router is built from this list.
pub fn routes() -> Vec<(&'static str, String, Serves)> {
    let mut r = vec![
        ("GET", "/".to_string(), Serves::SignInPage),
        ("POST", "/sign-in".to_string(), Serves::SignIn),
        ("POST", "/sign-out".to_string(), Serves::SignOut),
        ("GET", "/assets/app.js".to_string(), Serves::Script),
        ("GET", "/assets/style.css".to_string(), Serves::Style),
        ("GET", "/favicon.ico".to_string(), Serves::Favicon),
        ("GET", "/api/openapi.json".to_string(), Serves::OpenApi),
        ("GET", "/healthz".to_string(), Serves::Ops(OpsRoute::Health)),
        ("GET", "/readyz".to_string(), Serves::Ops(OpsRoute::Ready)),
        (
            "GET",
            "/metrics".to_string(),
            Serves::Ops(OpsRoute::Metrics),
        ),
    ];
    for page in PageId::ALL {
        r.push(("GET", page.path().to_string(), Serves::Html(page)));
        r.push(("GET", format!("/api{}", page.path()), Serves::Api(page)));
        r.push(("GET", format!("/export{}", page.path()), Serves::Csv(page)));
    }
    r.push(("GET", "/explore".into(), Serves::Explore(ExploreForm::Html)));
    r.push((
        "GET",
        "/api/explore".into(),
        Serves::Explore(ExploreForm::Api),
    ));
    r.push((
        "GET",
        "/export/explore".into(),
        Serves::Explore(ExploreForm::Csv),
    ));
    for (method, path, route) in [
        ("GET", "/questions", QuestionsRoute::List),
        ("GET", "/api/questions", QuestionsRoute::ApiList),
        ("POST", "/questions", QuestionsRoute::Save),
        ("GET", "/questions/{id}", QuestionsRoute::Open),
        ("GET", "/api/questions/{id}", QuestionsRoute::ApiRun),
        ("POST", "/questions/{id}/delete", QuestionsRoute::Delete),
        (
            "POST",
            "/questions/{id}/dashboard",
            QuestionsRoute::AddToDashboard,
        ),
        ("POST", "/questions/{id}/edit", QuestionsRoute::Edit),
        ("POST", "/api/questions", QuestionsRoute::ApiCreate),
        ("PATCH", "/api/questions/{id}", QuestionsRoute::ApiChange),
        ("DELETE", "/api/questions/{id}", QuestionsRoute::ApiDelete),
        ("POST", "/api/questions/{id}/copy", QuestionsRoute::ApiCopy),
    ] {
        r.push((method, path.into(), Serves::Questions(route)));
    }
    for (method, path, route) in [
        ("GET", "/dashboards", DashboardsRoute::List),
        ("POST", "/dashboards", DashboardsRoute::Create),
        ("GET", "/dashboards/{id}", DashboardsRoute::Page),
        ("GET", "/api/dashboards/{id}", DashboardsRoute::Api),
        ("GET", "/export/dashboards/{id}", DashboardsRoute::Export),
        ("POST", "/dashboards/{id}/questions", DashboardsRoute::Edit),
        ("POST", "/dashboards/{id}/delete", DashboardsRoute::Delete),
    ] {
        r.push((method, path.into(), Serves::Dashboards(route)));
    }
    r.extend(delivery_routes());
    r
}

/// The routes of alerts, the page list's administration and planned campaigns.
fn delivery_routes() -> Vec<(&'static str, String, Serves)> {
    let mut r: Vec<(&'static str, String, Serves)> = [
        ("GET", "/alerts", Serves::Alerts(AlertsRoute::Page)),
        ("GET", "/api/alerts", Serves::Alerts(AlertsRoute::Api)),
        (
            "POST",
            "/alerts/{id}/delete",
            Serves::Alerts(AlertsRoute::Delete),
        ),
        ("POST", "/alerts", Serves::Alerts(AlertsRoute::Create)),
        ("GET", "/admin/pages", Serves::PageVisibility),
        ("POST", "/admin/pages", Serves::HidePage),
    ]
    .into_iter()
    .map(|(method, path, serves)| (method, path.to_string(), serves))
    .collect();
    for (method, path, route) in [
        ("POST", "/my/potential/campaign", PlannedRoute::Create),
        ("GET", "/campaigns/planned", PlannedRoute::List),
        ("GET", "/api/campaigns/planned", PlannedRoute::ApiList),
        ("GET", "/campaigns/planned/{id}", PlannedRoute::Page),
        ("GET", "/api/campaigns/planned/{id}", PlannedRoute::Api),
        (
            "GET",
            "/export/campaigns/planned/{id}",
            PlannedRoute::Targets,
        ),
        (
            "GET",
            "/export/campaigns/planned/{id}/campaign",
            PlannedRoute::CampaignRow,
        ),
    ] {
        r.push((method, path.into(), Serves::Planned(route)));
    }
    r
}

/// The app's routes over its state, with the limits and headers every answer carries.
pub fn router(state: Arc<AppState>) -> Router {
    // Served by a router, the app builds a new version's pages in the background.
    let _ = state.shared.set(Arc::downgrade(&state));
    let mut router = Router::new();
    for (method, path, serves) in routes() {
        let handler = handler(serves);
        debug_assert!(matches!(method, "GET" | "POST" | "PATCH" | "DELETE"));
        router = router.route(&path, handler);
    }
    // Outermost last: the headers go on every answer, timeouts and panics included.
    router
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::measure,
        ))
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such page") })
        .with_state(state)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            std::time::Duration::from_secs(limits::REQUEST_SECONDS),
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            limits::BODY_BYTES,
        ))
        .layer(axum::middleware::from_fn(guard))
        .layer(tower::limit::ConcurrencyLimitLayer::new(limits::IN_FLIGHT))
}

/// What serves a route: its method and handler.
fn handler(serves: Serves) -> axum::routing::MethodRouter<Arc<AppState>> {
    match serves {
        Serves::SignInPage => get(home),
        Serves::SignIn => post(sign_in),
        Serves::SignOut => post(sign_out),
        Serves::Script => get(|| async {
            (
                [
                    (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                    (header::CACHE_CONTROL, "max-age=3600"),
                ],
                APP_JS,
            )
        }),
        Serves::Style => get(|| async {
            (
                [
                    (header::CONTENT_TYPE, "text/css; charset=utf-8"),
                    (header::CACHE_CONTROL, "max-age=3600"),
                ],
                STYLE_CSS,
            )
        }),
        // Browsers ask for it on every site: no icon, and no error either.
        Serves::Favicon => get(|| async { StatusCode::NO_CONTENT }),
        Serves::Ops(OpsRoute::Health) => get(ops::healthz),
        Serves::Ops(OpsRoute::Ready) => get(ops::readyz),
        Serves::Ops(OpsRoute::Metrics) => get(ops::metrics),
        Serves::OpenApi => {
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON) })
        }
        Serves::Html(page) => get(move |s, h, p, q| html_page(s, h, p, q, page)),
        Serves::Api(page) => get(move |s, h, p, q| api_page(s, h, p, q, page)),
        Serves::Csv(page) => get(move |s, h, p, q| csv_export(s, h, p, q, page)),
        Serves::Explore(form) => get(move |s, h, q| explore(s, h, q, form)),
        Serves::Questions(QuestionsRoute::Save) => post(save_question),
        Serves::Questions(QuestionsRoute::Delete) => post(delete_question),
        Serves::Questions(QuestionsRoute::AddToDashboard) => post(dashboards::add_from_list),
        Serves::Questions(QuestionsRoute::Edit) => post(questions::edit),
        Serves::Questions(QuestionsRoute::ApiCreate) => post(questions::api_create),
        Serves::Questions(QuestionsRoute::ApiChange) => patch(questions::api_change),
        Serves::Questions(QuestionsRoute::ApiDelete) => delete(questions::api_delete),
        Serves::Questions(QuestionsRoute::ApiCopy) => post(questions::api_copy),
        Serves::Questions(route) => get(move |s, h, p, q| questions(s, h, p, q, route)),
        Serves::Alerts(AlertsRoute::Delete) => post(delete_alert),
        Serves::Alerts(AlertsRoute::Create) => post(create_alert),
        Serves::Alerts(route) => get(move |s, h| alerts_overview(s, h, route)),
        Serves::Planned(PlannedRoute::Create) => post(plan_campaign),
        Serves::Planned(route @ (PlannedRoute::List | PlannedRoute::ApiList)) => {
            get(move |s, h| planned_campaigns(s, h, route))
        }
        Serves::Planned(route) => get(move |s, h, p| planned_campaign(s, h, p, route)),
        Serves::PageVisibility => get(visibility::show),
        Serves::HidePage => post(visibility::change),
        Serves::Dashboards(DashboardsRoute::Create) => post(dashboards::create),
        Serves::Dashboards(DashboardsRoute::Edit) => post(dashboards::edit),
        Serves::Dashboards(DashboardsRoute::Delete) => post(delete_dashboard),
        Serves::Dashboards(route) => get(move |s, h, p, q| dashboards::show(s, h, p, q, route)),
    }
}

/// Serves the app until the process is asked to stop (Ctrl-C, or SIGTERM as `docker stop`,
/// systemd and Kubernetes send it): then it takes no new connection and returns once the
/// requests in flight are answered.
pub async fn serve(state: Arc<AppState>, addr: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop_asked())
    .await
}

/// Ctrl-C, or SIGTERM where there is one.
pub async fn stop_asked() {
    let interrupted = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminated = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            // Without the handler, only Ctrl-C stops it gracefully.
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminated = std::future::pending::<()>();
    tokio::select! {
        _ = interrupted => {}
        _ = terminated => {}
    }
    tracing::warn!("stopping: answering the requests in flight, taking no new ones");
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

const SESSION_COOKIE: &str = "prism_session";
const SIGN_IN_CSRF_COOKIE: &str = "prism_csrf";

fn set_cookie(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
    value: &str,
    max_age: i64,
) -> HeaderValue {
    let tls = state.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes() == b"https");
    let secure = if tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .expect("cookie text")
}

/// The signed-in user and their session's CSRF token. A tool without a session gives one of
/// the user's API tokens instead (`prism users token NAME`): `Authorization: Bearer TOKEN`, or
/// `Basic` of `NAME:TOKEN` (`curl -u executive:prism_...`). Such a request posts no form: its
/// CSRF token is new each time and known to nobody; it changes things through the JSON API
/// only (`api_writer`).
async fn signed_in(state: &Arc<AppState>, headers: &HeaderMap) -> Result<(User, String), WebError> {
    if let Some(token) = cookie(headers, SESSION_COOKIE) {
        let token = token.to_string();
        return blocking(state, move |st| {
            st.store.session(&token).map_err(WebError::from)
        })
        .await?
        .ok_or(WebError::SignedOut);
    }
    let Some(credentials) = api_credentials(headers) else {
        return Err(WebError::SignedOut);
    };
    let user = blocking(state, move |st| {
        Ok(match credentials {
            (None, token) => st.store.api_token_user(&token)?,
            (Some(name), token) => st.store.verify_api_token(&name, &token)?,
        })
    })
    .await?
    .ok_or(WebError::SignedOut)?;
    Ok((user, store::random_token()))
}

/// An API token from `Authorization`: `Bearer TOKEN`, or `Basic` of `NAME:TOKEN`, with the name.
fn api_credentials(headers: &HeaderMap) -> Option<(Option<String>, String)> {
    use base64::Engine as _;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Some((None, rest.trim().to_string())),
        "basic" => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()?;
            let (name, token) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
            Some((Some(name.to_string()), token.to_string()))
        }
        _ => None,
    }
}

/// Runs SQLite and password hashing on the blocking pool: an async worker waiting on a disk
/// or spending 50 ms on an argon2 hash serves nobody else meanwhile.
async fn blocking<T: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(&AppState) -> Result<T, WebError> + Send + 'static,
) -> Result<T, WebError> {
    let st = state.clone();
    tokio::task::spawn_blocking(move || f(&st))
        .await
        .map_err(|e| WebError::Internal(format!("a blocking task failed: {e}")))?
}

/// The `{id}` of a route like `/partners/{id}`.
fn path_id(params: &RawPathParams) -> Option<String> {
    params
        .iter()
        .find(|(k, _)| *k == "id")
        .map(|(_, v)| v.to_string())
}

/// The client's address: the socket's, unless the socket is a trusted proxy; then the
/// right-most address of `X-Forwarded-For` that is not itself a trusted proxy (what a client
/// writes at the left of the header is not believed).
fn address(headers: &HeaderMap, peer: Option<SocketAddr>, trusted: &[std::net::IpAddr]) -> String {
    let Some(peer) = peer.map(|p| p.ip()) else {
        return "unknown".into();
    };
    if !trusted.contains(&peer) {
        return peer.to_string();
    }
    let forwarded: Vec<std::net::IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    forwarded
        .iter()
        .rev()
        .find(|a| !trusted.contains(a))
        .unwrap_or(&peer)
        .to_string()
}

async fn home(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Ok((user, _)) = signed_in(&st, &headers).await {
        let who = user.clone();
        let path = blocking(&st, move |st| home_path(st, &who)).await;
        return match path {
            Ok(path) => Redirect::to(&path).into_response(),
            Err(e) => e.page(Some(&user)),
        };
    }
    sign_in_page(&st, &headers, None, StatusCode::OK)
}

/// Where a user lands: the dashboard chosen as home page, while the user may open it, or the
/// role's home page.
fn home_path(st: &AppState, user: &User) -> Result<String, WebError> {
    Ok(match st.store.home_dashboard(user)? {
        Some(id) => format!("/dashboards/{id}"),
        None => pages::home_of(user),
    })
}

fn sign_in_page(
    st: &AppState,
    headers: &HeaderMap,
    message: Option<String>,
    status: StatusCode,
) -> Response {
    let csrf = store::random_token();
    let body = pages::SignInPage {
        csrf: csrf.clone(),
        message: message.unwrap_or_default(),
    }
    .render();
    let mut response = (status, Html(body)).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(st, headers, SIGN_IN_CSRF_COOKIE, &csrf, 3600),
    );
    response
}

#[derive(Deserialize)]
struct SignInForm {
    name: String,
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn sign_in(
    State(st): State<Arc<AppState>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    // Double-submit: the form's token must equal the cookie set with the sign-in page.
    if cookie(&headers, SIGN_IN_CSRF_COOKIE).is_none_or(|c| c.is_empty() || c != form.csrf) {
        return sign_in_page(
            &st,
            &headers,
            Some("the form has expired; please sign in again".into()),
            StatusCode::FORBIDDEN,
        );
    }
    let addr = address(&headers, peer.map(|c| c.0.0), &st.trusted_proxies);
    if form.name.len() > store::MAX_NAME_BYTES || form.password.len() > store::MAX_PASSWORD_BYTES {
        return sign_in_page(
            &st,
            &headers,
            Some(format!(
                "a user name has at most {} bytes and a password at most {}",
                store::MAX_NAME_BYTES,
                store::MAX_PASSWORD_BYTES
            )),
            StatusCode::BAD_REQUEST,
        );
    }
    let name = form.name.clone();
    let result = blocking(&st, move |st| {
        checked_sign_in(st, &name, &form.password, &addr)
    })
    .await;
    match result {
        Err(e) => e.page(None),
        Ok(Err(message)) => sign_in_page(&st, &headers, Some(message), StatusCode::UNAUTHORIZED),
        Ok(Ok((_, token, home))) => {
            let mut r = Redirect::to(&home).into_response();
            r.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(
                    &st,
                    &headers,
                    SESSION_COOKIE,
                    &token,
                    store::SESSION_HOURS * 3600,
                ),
            );
            r.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(&st, &headers, SIGN_IN_CSRF_COOKIE, "", 0),
            );
            r
        }
    }
}

/// A sign-in's name and password checked (off the async runtime: argon2 and SQLite), with
/// the wait after too many failures from one address; the user, its session's token and its
/// home page, or what to tell the person signing in. Every attempt is audited.
fn checked_sign_in(
    st: &AppState,
    name: &str,
    password: &str,
    addr: &str,
) -> Result<Result<(User, String, String), String>, WebError> {
    if let Some(seconds) = st.store.wait_for(name, addr)? {
        st.ops.sign_in_failed();
        st.store.audit(
            name,
            "sign-in refused",
            &format!("too many failures, from {addr}"),
        )?;
        return Ok(Err(format!(
            "too many failed sign-ins; try again in {seconds} second{}",
            if seconds == 1 { "" } else { "s" }
        )));
    }
    match st.store.verify(name, password)? {
        Some(user) => {
            st.store
                .audit(&user.name, "sign-in", &format!("from {addr}"))?;
            let (token, _) = st.store.start_session(&user)?;
            let home = home_path(st, &user)?;
            Ok(Ok((user, token, home)))
        }
        None => {
            st.ops.sign_in_failed();
            st.store.record_failure(name, addr)?;
            st.store
                .audit(name, "sign-in failed", &format!("from {addr}"))?;
            Ok(Err("wrong name or password".into()))
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// The user of a posted form, when signed in and the form carries the session's CSRF token;
/// otherwise the page that says why.
async fn form_user(st: &Arc<AppState>, headers: &HeaderMap, csrf: &str) -> Result<User, Response> {
    let (user, expected) = signed_in(st, headers).await.map_err(|e| e.page(None))?;
    if csrf != expected {
        return Err(
            WebError::Forbidden("the form has no valid CSRF token".into()).page(Some(&user)),
        );
    }
    Ok(user)
}

/// The user of a change through the JSON API (`POST`, `PATCH`, `DELETE` under `/api/`). A
/// script signs with an API token, which no browser adds by itself; a page of the app's own
/// signs with its session and gives the session's CSRF token in `X-CSRF-Token`, which no
/// other site's page can read or send.
async fn api_writer(st: &Arc<AppState>, headers: &HeaderMap) -> Result<User, WebError> {
    let by_token = cookie(headers, SESSION_COOKIE).is_none();
    let (user, csrf) = signed_in(st, headers).await?;
    if by_token {
        return Ok(user);
    }
    let given = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if given.is_empty() || given != csrf {
        return Err(WebError::Forbidden(
            "a change through the API from a signed-in browser needs the session's CSRF token in X-CSRF-Token; a script signs with an API token instead".into(),
        ));
    }
    Ok(user)
}

async fn sign_out(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let user = match form_user(&st, &headers, &form.csrf).await {
        Ok(u) => u,
        Err(page) => return page,
    };
    let token = cookie(&headers, SESSION_COOKIE)
        .unwrap_or_default()
        .to_string();
    let name = user.name.clone();
    if let Err(e) = blocking(&st, move |st| {
        st.store.end_session(&token)?;
        st.store.audit(&name, "sign-out", "")?;
        Ok(())
    })
    .await
    {
        return e.page(Some(&user));
    }
    let mut r = Redirect::to("/").into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&st, &headers, SESSION_COOKIE, "", 0),
    );
    r
}

async fn html_page(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    params: RawPathParams,
    UrlQuery(prompts): UrlQuery<Prompts>,
    page: PageId,
) -> Response {
    let (user, csrf) = match signed_in(&st, &headers).await {
        Ok(u) => u,
        Err(e) => return e.page(None),
    };
    match pages::build(&st, &user, page, path_id(&params).as_deref(), &prompts).await {
        Ok(p) => Html(pages::render(&st, &user, &csrf, &p, &prompts).await).into_response(),
        Err(e) => e.page(Some(&user)),
    }
}

async fn api_page(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    params: RawPathParams,
    UrlQuery(prompts): UrlQuery<Prompts>,
    page: PageId,
) -> Response {
    let (user, _) = match signed_in(&st, &headers).await {
        Ok(u) => u,
        Err(e) => return e.json(),
    };
    match pages::build(&st, &user, page, path_id(&params).as_deref(), &prompts).await {
        Ok(p) => axum::Json(p).into_response(),
        Err(e) => e.json(),
    }
}

#[derive(Deserialize)]
struct SaveQuestionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    question: String,
    #[serde(default)]
    shared_with: String,
}

#[derive(Deserialize, Default)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// Saves the question of Explore's form, if it can be asked at all.
async fn save_question(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<SaveQuestionForm>,
) -> Response {
    let user = match form_user(&st, &headers, &form.csrf).await {
        Ok(u) => u,
        Err(page) => return page,
    };
    // A question that cannot be asked is not kept: it would only fail for whoever opens it.
    let question = explore::Question::from_query_string(Some(&form.question));
    if let Err(e) = question.check(&st, &user) {
        return e.page(Some(&user));
    }
    let owner = user.clone();
    let saved = blocking(&st, move |st| {
        let shared_with = if form.shared_with.is_empty() {
            "private"
        } else {
            &form.shared_with
        };
        let id = st.store.save_question(
            &owner,
            &form.name,
            &form.description,
            &question.to_query_string(),
            shared_with,
        )?;
        st.store.audit(
            &owner.name,
            "save-question",
            &format!("{id}: {}", form.name.trim()),
        )?;
        Ok(id)
    })
    .await;
    match saved {
        Ok(id) => Redirect::to(&format!("/questions/{id}")).into_response(),
        Err(e) => e.page(Some(&user)),
    }
}

/// Deletes a saved question: the owner's or an administrator's.
async fn delete_question(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    params: RawPathParams,
    Form(form): Form<CsrfForm>,
) -> Response {
    delete_owned(
        st,
        headers,
        params,
        form,
        ("saved question", "/questions", "delete-question"),
        |store, user, id| store.delete_question(user, id),
    )
    .await
}

/// Sets up an alert or a scheduled report on the Explore question of the form, for the
/// signed-in user: checked and evaluated in the user's audience, sent to the user only.
async fn create_alert(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<alerts::AlertForm>,
) -> Response {
    let user = match form_user(&st, &headers, &form.csrf).await {
        Ok(u) => u,
        Err(page) => return page,
    };
    let Some(maker) = st.alert_maker.get().cloned() else {
        return WebError::Unavailable("alerts cannot be set up on this server".into())
            .page(Some(&user));
    };
    let alert = match form.read() {
        Ok(a) => a,
        Err(why) => return WebError::BadRequest(why).page(Some(&user)),
    };
    let owner = user.clone();
    let made = blocking(&st, move |st| {
        let id = maker
            .add(st, &owner, &alert)
            .map_err(WebError::BadRequest)?;
        st.store
            .audit(&owner.name, "add-alert", &format!("{id} {}", alert.name))?;
        Ok(id)
    })
    .await;
    match made {
        Ok(_) => Redirect::to("/alerts").into_response(),
        Err(e) => e.page(Some(&user)),
    }
}

/// Deletes one of the user's alerts (an administrator: anyone's).
async fn delete_alert(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    params: RawPathParams,
    Form(form): Form<CsrfForm>,
) -> Response {
    delete_owned(
        st,
        headers,
        params,
        form,
        ("alert", "/alerts", "delete-alert"),
        |store, user, id| store.delete_alert(user, id),
    )
    .await
}

/// Deletes one of the user's dashboards (an administrator: anyone's); its questions stay.
async fn delete_dashboard(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    params: RawPathParams,
    Form(form): Form<CsrfForm>,
) -> Response {
    delete_owned(
        st,
        headers,
        params,
        form,
        ("dashboard", "/dashboards", "delete-dashboard"),
        |store, user, id| store.delete_dashboard(user, id),
    )
    .await
}

/// A posted delete of something a user owns, by the `{id}` of the path: audited, then back to
/// its list. Another user's is as absent as one that never was (a 404).
async fn delete_owned(
    st: Arc<AppState>,
    headers: HeaderMap,
    params: RawPathParams,
    form: CsrfForm,
    (what, list, event): (&'static str, &'static str, &'static str),
    delete: fn(&Store, &User, i64) -> store::Result<bool>,
) -> Response {
    let user = match form_user(&st, &headers, &form.csrf).await {
        Ok(u) => u,
        Err(page) => return page,
    };
    let Some(id) = path_id(&params).and_then(|i| i.parse::<i64>().ok()) else {
        return WebError::NotFound(format!("no such {what}")).page(Some(&user));
    };
    let who = user.clone();
    let deleted = blocking(&st, move |st| {
        let deleted = delete(&st.store, &who, id)?;
        if deleted {
            st.store.audit(&who.name, event, &id.to_string())?;
        }
        Ok(deleted)
    })
    .await;
    match deleted {
        Ok(true) => Redirect::to(list).into_response(),
        Ok(false) => WebError::NotFound(format!("no {what} {id} of yours")).page(Some(&user)),
        Err(e) => e.page(Some(&user)),
    }
}

/// The list, opening a question, and the JSON API's list and run.
async fn questions(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    params: RawPathParams,
    UrlQuery(search): UrlQuery<SearchQuery>,
    route: QuestionsRoute,
) -> Response {
    let html = matches!(route, QuestionsRoute::List | QuestionsRoute::Open);
    let fail = |e: WebError, user: Option<&User>| if html { e.page(user) } else { e.json() };
    let (user, csrf) = match signed_in(&st, &headers).await {
        Ok(u) => u,
        Err(e) => return fail(e, None),
    };
    let who = user.clone();
    let visible = match blocking(&st, move |st| Ok(st.store.questions_for(&who)?)).await {
        Ok(v) => v,
        Err(e) => return fail(e, Some(&user)),
    };
    let one = || {
        let id = path_id(&params).and_then(|i| i.parse::<i64>().ok());
        // Another user's private question is as absent as one that never was.
        id.and_then(|id| visible.iter().find(|q| q.id == id).cloned())
            .ok_or_else(|| WebError::NotFound("no such saved question".into()))
    };
    match route {
        QuestionsRoute::List => match own_dashboards(&st, &user).await {
            Ok(own) => {
                Html(questions::render(&user, &csrf, &search.q, &visible, &own)).into_response()
            }
            Err(e) => fail(e, Some(&user)),
        },
        QuestionsRoute::ApiList => {
            let listed: Vec<_> = visible
                .iter()
                .filter(|q| questions::matches(q, &search.q))
                .collect();
            axum::Json(listed).into_response()
        }
        QuestionsRoute::Open => match one() {
            // Explore offers its owner to save changes over it.
            Ok(q) => {
                Redirect::to(&format!("/explore?{}&saved={}", q.question, q.id)).into_response()
            }
            Err(e) => fail(e, Some(&user)),
        },
        QuestionsRoute::ApiRun => {
            let q = match one() {
                Ok(q) => q,
                Err(e) => return fail(e, Some(&user)),
            };
            let question = explore::Question::from_query_string(Some(&q.question));
            match explore::answer(&st, &user, &question).await {
                Ok(a) => axum::Json(questions::Answered {
                    question: q,
                    answer: explore::response(&a),
                })
                .into_response(),
                Err(e) => fail(e, Some(&user)),
            }
        }
        QuestionsRoute::Save
        | QuestionsRoute::Delete
        | QuestionsRoute::AddToDashboard
        | QuestionsRoute::Edit
        | QuestionsRoute::ApiCreate
        | QuestionsRoute::ApiChange
        | QuestionsRoute::ApiDelete
        | QuestionsRoute::ApiCopy => {
            unreachable!("changes have their own handlers")
        }
    }
}

/// The dashboards a question can be added to from the list: the user's own.
async fn own_dashboards(
    st: &Arc<AppState>,
    user: &User,
) -> Result<Vec<store::Dashboard>, WebError> {
    let who = user.clone();
    blocking(st, move |st| {
        Ok(st
            .store
            .dashboards_for(&who)?
            .into_iter()
            .filter(|d| d.owner == who.name)
            .collect::<Vec<_>>())
    })
    .await
}

/// The user's inbox, alerts and delivery log. The page marks the inbox read; the API does not.
async fn alerts_overview(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    route: AlertsRoute,
) -> Response {
    let page = route == AlertsRoute::Page;
    let fail = |e: WebError, user: Option<&User>| if page { e.page(user) } else { e.json() };
    let (user, csrf) = match signed_in(&st, &headers).await {
        Ok(u) => u,
        Err(e) => return fail(e, None),
    };
    let who = user.clone();
    let overview = blocking(&st, move |st| {
        let o = alerts::overview(&st.store, &who)?;
        if page {
            st.store.mark_read(who.id)?;
        }
        Ok(o)
    })
    .await;
    match overview {
        Ok(o) if page => Html(alerts::render(&user, &csrf, &o)).into_response(),
        Ok(o) => axum::Json(o).into_response(),
        Err(e) => fail(e, Some(&user)),
    }
}

/// Plans a campaign from the target list the form names, then shows it.
async fn plan_campaign(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<planned::PlanForm>,
) -> Response {
    let user = match form_user(&st, &headers, &form.csrf).await {
        Ok(u) => u,
        Err(page) => return page,
    };
    match planned::create(&st, &user, &form).await {
        Ok(c) => Redirect::to(&format!("/campaigns/planned/{}", c.campaign_id)).into_response(),
        Err(e) => e.page(Some(&user)),
    }
}

/// The planned campaigns the user may see, as a page or JSON.
async fn planned_campaigns(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    route: PlannedRoute,
) -> Response {
    let page = route == PlannedRoute::List;
    let fail = |e: WebError, user: Option<&User>| if page { e.page(user) } else { e.json() };
    let (user, csrf) = match signed_in(&st, &headers).await {
        Ok(u) => u,
        Err(e) => return fail(e, None),
    };
    match planned::visible(&st, &user).await {
        Ok(c) if page => Html(planned::render_list(&user, &csrf, &c)).into_response(),
        Ok(c) => axum::Json(c).into_response(),
        Err(e) => fail(e, Some(&user)),
    }
}

/// A planned campaign: its page, its JSON, its target list or its row for the CRM.
async fn planned_campaign(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    params: RawPathParams,
    route: PlannedRoute,
) -> Response {
    let fail = |e: WebError, user: Option<&User>| match route {
        PlannedRoute::Page => e.page(user),
        PlannedRoute::Api => e.json(),
        _ => e.text(),
    };
    let (user, csrf) = match signed_in(&st, &headers).await {
        Ok(u) => u,
        Err(e) => return fail(e, None),
    };
    let id = path_id(&params).unwrap_or_default();
    let progress = match planned::progress(&st, &user, &id).await {
        Ok(p) => p,
        Err(e) => return fail(e, Some(&user)),
    };
    let (bytes, file) = match route {
        PlannedRoute::Page => {
            return Html(planned::render(&st.engine.model, &user, &csrf, &progress))
                .into_response();
        }
        PlannedRoute::Api => return axum::Json(progress).into_response(),
        PlannedRoute::CampaignRow => (
            planned::campaign_csv(&progress.campaign),
            format!("{}-campaign.csv", progress.campaign.campaign_id),
        ),
        _ => (
            planned::targets_csv(&progress.campaign),
            format!("{}-targets.csv", progress.campaign.campaign_id),
        ),
    };
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) => return e.text(),
    };
    let (name, detail) = (
        user.name.clone(),
        format!("/export/campaigns/planned/{id} ({file})"),
    );
    if let Err(e) = blocking(&st, move |st| {
        Ok(st.store.audit(&name, "export", &detail)?)
    })
    .await
    {
        return e.text();
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        bytes,
    )
        .into_response()
}

/// A table as CSV, every cell a spreadsheet would run as a formula neutralised.
pub fn csv_bytes(header: &[String], rows: &[Vec<String>]) -> Result<Vec<u8>, WebError> {
    let internal = |e: &dyn std::fmt::Display| WebError::Internal(e.to_string());
    let mut w = csv::Writer::from_writer(Vec::new());
    let safe = |r: &[String]| {
        r.iter()
            .map(|c| prism_analyses::spreadsheet_safe(c).into_owned())
            .collect::<Vec<_>>()
    };
    w.write_record(safe(header)).map_err(|e| internal(&e))?;
    for r in rows {
        w.write_record(safe(r)).map_err(|e| internal(&e))?;
    }
    w.into_inner().map_err(|e| internal(&e))
}

/// The saved question Explore was opened from (`saved=ID`), when the user may save over it.
async fn saved_question(
    st: &Arc<AppState>,
    user: &User,
    raw: Option<&str>,
) -> Option<store::SavedQuestion> {
    let id = url::form_urlencoded::parse(raw?.as_bytes())
        .find(|(k, _)| k == "saved")
        .and_then(|(_, v)| v.parse::<i64>().ok())?;
    let who = user.clone();
    blocking(st, move |st| Ok(st.store.question_for(&who, id)?))
        .await
        .ok()
        .flatten()
        .filter(|q| questions::may_change(user, q))
}

/// An Explore question in the form asked. A question that cannot be asked is a 400 with the
/// reason: on the page, the form stays filled in above it.
async fn explore(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    form: ExploreForm,
) -> Response {
    let (user, csrf) = match signed_in(&st, &headers).await {
        Ok(u) => u,
        Err(e) => {
            return match form {
                ExploreForm::Html => e.page(None),
                ExploreForm::Api => e.json(),
                ExploreForm::Csv => e.text(),
            };
        }
    };
    let question = explore::Question::from_query_string(raw.as_deref());
    let answer = explore::answer(&st, &user, &question).await;
    match (form, answer) {
        (ExploreForm::Html, answer) => {
            let status = answer
                .as_ref()
                .err()
                .map_or(StatusCode::OK, WebError::status);
            if let Err(e @ (WebError::Internal(_) | WebError::NoData(_) | WebError::SignedOut)) =
                answer
            {
                return e.page(Some(&user));
            }
            let saved = saved_question(&st, &user, raw.as_deref()).await;
            let benchmark = match &answer {
                Ok(_) => explore::benchmark(&st, &user, &question).await,
                Err(_) => None,
            };
            let body = explore::render(
                &st,
                &user,
                &csrf,
                &question,
                answer.as_ref(),
                saved.as_ref(),
                benchmark,
            )
            .await;
            (status, Html(body)).into_response()
        }
        (ExploreForm::Api, Ok(a)) => axum::Json(explore::response(&a)).into_response(),
        (ExploreForm::Csv, Ok(a)) => explore_download(&st, &user, &question, raw.as_deref(), &a)
            .await
            .unwrap_or_else(|e| e.text()),
        (ExploreForm::Api, Err(e)) => e.json(),
        (ExploreForm::Csv, Err(e)) => e.text(),
    }
}

/// An Explore answer as a file to download (CSV, or Excel with `format=xlsx`), audited.
async fn explore_download(
    st: &Arc<AppState>,
    user: &User,
    question: &explore::Question,
    raw: Option<&str>,
    a: &explore::Answer,
) -> Result<Response, WebError> {
    let header: Vec<String> = a.result.columns.iter().map(|c| c.name.clone()).collect();
    let rows = a.result.formatted_rows();
    let format = explore::download_format(raw)?;
    let bytes = match format {
        "xlsx" => explore::xlsx(&st.engine.model, &a.result),
        _ => csv_bytes(&header, &rows),
    }?;
    let (name, detail) = (
        user.name.clone(),
        format!(
            "/explore?{} as {format} ({} rows)",
            question.to_query_string(),
            rows.len()
        ),
    );
    blocking(st, move |st| {
        Ok(st.store.audit(&name, "export", &detail)?)
    })
    .await?;
    let content_type = match format {
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "text/csv; charset=utf-8",
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"explore.{format}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

async fn csv_export(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    params: RawPathParams,
    UrlQuery(prompts): UrlQuery<Prompts>,
    page: PageId,
) -> Response {
    let (user, _) = match signed_in(&st, &headers).await {
        Ok(u) => u,
        Err(e) => return e.text(),
    };
    let result = async {
        let p = pages::build(&st, &user, page, path_id(&params).as_deref(), &prompts).await?;
        let wanted = prompts.table.clone().unwrap_or_default();
        let table = p
            .panels
            .iter()
            .find(|t| t.kind == "table" && (wanted.is_empty() || t.id == wanted))
            .ok_or_else(|| WebError::NotFound(format!("no table {wanted:?} on this page")))?;
        let bytes = csv_bytes(&table.header, &table.rows)?;
        let (name, detail) = (
            user.name.clone(),
            format!(
                "{} table {} ({} rows)",
                page.path(),
                table.id,
                table.rows.len()
            ),
        );
        blocking(&st, move |st| {
            Ok(st.store.audit(&name, "export", &detail)?)
        })
        .await?;
        Ok::<_, WebError>((table.id.clone(), bytes))
    }
    .await;
    match result {
        Ok((id, bytes)) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{}-{id}.csv\"", page.name()),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => e.text(),
    }
}
