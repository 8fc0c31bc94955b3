//! The dashboards: which role may open which page, and what each page shows — tiles, charts and
//! tables, every figure a model metric or an analysis run with the signed-in user's scope.
//! A page is built once as data (`Page`), then rendered as HTML, sent as JSON (`/api/...`) or
//! cut into CSV (`/export/...`), so the three never disagree.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use chrono::Datelike;
use prism_analyses::Table as _;
use prism_engine::{Audience, Filter, FilterOp, Order, Period, Query, QueryResult, Session, Value};
use serde::{Deserialize, Serialize};

use crate::store::{Role, User};
use crate::{AppState, WebError};

mod admin;
mod campaigns;
mod context;
mod customers;
mod enablement;
mod my_performance;
mod my_potential;
mod my_products;
mod overview;
mod partner_detail;
mod registrations;
mod sales;
mod scorecard;
mod segmentation;
mod service;
mod underperformers;
mod view;

use context::Ctx;

pub use view::*;

/// A page of the app.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PageId {
    /// The channel executive's overview.
    Overview,
    /// Partner segmentation (Pareto classes).
    Segmentation,
    /// The partner scorecard.
    Scorecard,
    /// Under-performing partners.
    Underperformers,
    /// Sales by product line, region and tier.
    Sales,
    /// Service performance.
    Service,
    /// Customers and satisfaction.
    Customers,
    /// One partner's page.
    PartnerDetail,
    /// A partner user's own performance beside the channel's.
    MyPerformance,
    /// A partner user's best and poor sellers.
    MyProducts,
    /// A partner user's customer potential.
    MyPotential,
    /// The deal registration funnel.
    Registrations,
    /// Funds and campaigns.
    Campaigns,
    /// Enablement.
    Enablement,
    /// Administration.
    Admin,
}

impl PageId {
    /// Every page.
    pub const ALL: [PageId; 15] = [
        PageId::Overview,
        PageId::Segmentation,
        PageId::Scorecard,
        PageId::Underperformers,
        PageId::Sales,
        PageId::Service,
        PageId::Customers,
        PageId::PartnerDetail,
        PageId::MyPerformance,
        PageId::MyProducts,
        PageId::MyPotential,
        PageId::Registrations,
        PageId::Campaigns,
        PageId::Enablement,
        PageId::Admin,
    ];

    /// Its route (`/overview`, `/partners/{id}`).
    pub fn path(self) -> &'static str {
        match self {
            PageId::Overview => "/overview",
            PageId::Segmentation => "/segmentation",
            PageId::Scorecard => "/scorecard",
            PageId::Underperformers => "/underperformers",
            PageId::Sales => "/sales",
            PageId::Service => "/service",
            PageId::Customers => "/customers",
            PageId::PartnerDetail => "/partners/{id}",
            PageId::MyPerformance => "/my/performance",
            PageId::MyProducts => "/my/products",
            PageId::MyPotential => "/my/potential",
            PageId::Registrations => "/registrations",
            PageId::Campaigns => "/campaigns",
            PageId::Enablement => "/enablement",
            PageId::Admin => "/admin",
        }
    }

    /// Its name in the JSON API (`overview`).
    pub fn name(self) -> &'static str {
        match self {
            PageId::Overview => "overview",
            PageId::Segmentation => "segmentation",
            PageId::Scorecard => "scorecard",
            PageId::Underperformers => "underperformers",
            PageId::Sales => "sales",
            PageId::Service => "service",
            PageId::Customers => "customers",
            PageId::PartnerDetail => "partner",
            PageId::MyPerformance => "my-performance",
            PageId::MyProducts => "my-products",
            PageId::MyPotential => "my-potential",
            PageId::Registrations => "registrations",
            PageId::Campaigns => "campaigns",
            PageId::Enablement => "enablement",
            PageId::Admin => "admin",
        }
    }

    /// Its title, as the navigation shows it.
    pub fn title(self) -> &'static str {
        match self {
            PageId::Overview => "Overview",
            PageId::Segmentation => "Segmentation",
            PageId::Scorecard => "Scorecard",
            PageId::Underperformers => "Under-performers",
            PageId::Sales => "Sales",
            PageId::Service => "Service",
            PageId::Customers => "Customers",
            PageId::PartnerDetail => "Partner",
            PageId::MyPerformance => "My performance",
            PageId::MyProducts => "My products",
            PageId::MyPotential => "Customer potential",
            PageId::Registrations => "Deal registration",
            PageId::Campaigns => "Funds and campaigns",
            PageId::Enablement => "Enablement",
            PageId::Admin => "Administration",
        }
    }

    /// Whether a role may open the page at all (a partner page still checks which partner).
    pub fn allows(self, role: Role) -> bool {
        match self {
            PageId::Overview
            | PageId::Segmentation
            | PageId::Scorecard
            | PageId::Underperformers
            | PageId::Sales
            | PageId::Service
            | PageId::Customers => {
                matches!(
                    role,
                    Role::ChannelExecutive | Role::ChannelManager | Role::Admin
                )
            }
            // Every role, in its own audience: a partner user sees its own program.
            PageId::PartnerDetail
            | PageId::Registrations
            | PageId::Campaigns
            | PageId::Enablement => true,
            PageId::MyPerformance | PageId::MyProducts | PageId::MyPotential => {
                role == Role::PartnerManager
            }
            PageId::Admin => role == Role::Admin,
        }
    }
}

/// What a partner-program page says when the export brought none of its data.
const NO_PROGRAM_DATA: &str =
    "no {} loaded yet: the exports so far have none (the file is optional in an export)";

pub fn home_of(user: &User) -> String {
    let home = match user.role {
        Role::PartnerManager => PageId::MyPerformance,
        Role::Admin => PageId::Admin,
        _ => PageId::Overview,
    };
    if !user.hidden_pages.iter().any(|h| h == home.name()) {
        return home.path().to_string();
    }
    // Hidden by an administrator: the first page the navigation still offers.
    nav(Some(user))
        .into_iter()
        .map(|(href, _)| href)
        .next()
        .unwrap_or_else(|| "/explore".into())
}

/// Whether an administrator may hide a page from a role: a page of the role's own, but not
/// Administration (an administrator could lock itself out) nor a partner's page, which
/// every list of partners links to.
pub fn hideable(page: PageId, role: Role) -> bool {
    page.allows(role) && !matches!(page, PageId::Admin | PageId::PartnerDetail)
}

/// The links of the navigation bar for a user.
pub fn nav(user: Option<&User>) -> Vec<(String, String)> {
    let Some(user) = user else { return Vec::new() };
    let mut links: Vec<(String, String)> = PageId::ALL
        .iter()
        .filter(|p| {
            p.allows(user.role)
                && **p != PageId::PartnerDetail
                && !user.hidden_pages.iter().any(|h| h == p.name())
        })
        .map(|p| (p.path().to_string(), p.title().to_string()))
        .collect();
    if user.is_partner_user()
        && let Some(own) = user.partners.first()
    {
        links.insert(1, (format!("/partners/{own}"), "My partner".into()));
    }
    // Campaigns planned from target lists, beside the funds and campaigns they become.
    if let Some(i) = links.iter().position(|(href, _)| href == "/campaigns") {
        links.insert(
            i + 1,
            ("/campaigns/planned".into(), "Planned campaigns".into()),
        );
    }
    // Every role asks its own questions, in its own audience.
    let at = links.len() - usize::from(user.role == Role::Admin);
    links.insert(at, ("/explore".into(), "Explore".into()));
    links.insert(at + 1, ("/questions".into(), "Saved questions".into()));
    links.insert(at + 2, ("/dashboards".into(), "My dashboards".into()));
    let alerts = match user.unread {
        0 => "Alerts".to_string(),
        n => format!("Alerts ({n} new)"),
    };
    links.insert(at + 3, ("/alerts".into(), alerts));
    if user.role == Role::Admin {
        links.push(("/admin/pages".into(), "Pages by role".into()));
    }
    links
}

/// The prompts of every page, kept in the URL so a view can be bookmarked and shared.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Prompts {
    /// The period: `2026-Q3`, `2026`, a month, a day or FROM..TO.
    pub period: Option<String>,
    /// The partners' region.
    pub region: Option<String>,
    /// The partners' tier.
    pub tier: Option<String>,
    /// The partners' type.
    pub partner_type: Option<String>,
    /// A product line.
    pub product_line: Option<String>,
    /// Scorecard weights: `revenue=0.4,csat=0.3`.
    pub weights: Option<String>,
    /// Scorecard weights one attribute at a time, as the page's number inputs send them; each
    /// overrides the same attribute in `weights`.
    pub w_revenue: Option<String>,
    /// Open pipeline's weight.
    pub w_pipeline: Option<String>,
    /// Win rate's weight.
    pub w_win_rate: Option<String>,
    /// Satisfaction's weight.
    pub w_csat: Option<String>,
    /// Responsiveness' weight.
    pub w_responsiveness: Option<String>,
    /// Certified people's weight.
    pub w_certified_people: Option<String>,
    /// Customer potential: the product, and the segment whose target list is shown.
    pub product: Option<String>,
    /// The segment (`INDUSTRY/SIZE_BAND`).
    pub segment: Option<String>,
    /// Export: which table of the page.
    pub table: Option<String>,
}

impl Prompts {
    /// The scorecard weights asked for, in `Weights::parse`'s syntax: `weights` first, then
    /// each attribute's own input (the later wins); none when neither is given.
    pub fn weights(&self) -> Option<String> {
        let mut parts: Vec<String> = given(&self.weights)
            .map(str::to_string)
            .into_iter()
            .collect();
        for (name, value) in [
            ("revenue", &self.w_revenue),
            ("pipeline", &self.w_pipeline),
            ("win_rate", &self.w_win_rate),
            ("csat", &self.w_csat),
            ("responsiveness", &self.w_responsiveness),
            ("certified_people", &self.w_certified_people),
        ] {
            if let Some(v) = given(value) {
                parts.push(format!("{name}={v}"));
            }
        }
        (!parts.is_empty()).then(|| parts.join(","))
    }
}

/// The scorecard weights the prompts ask for, the defaults when none.
fn weights(prompts: &Prompts) -> Result<prism_analyses::scorecard::Weights, WebError> {
    Ok(prompts
        .weights()
        .as_deref()
        .map(prism_analyses::scorecard::Weights::parse)
        .transpose()?
        .unwrap_or_default())
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

#[derive(Clone, Debug, Serialize)]
pub struct Tile {
    pub metric: String,
    pub value: String,
    /// Percent change against the previous period, when there is a period.
    pub change_pct: Option<f64>,
    /// The last twelve months, oldest first: the tile's trend line.
    pub trend: Vec<TrendPoint>,
    pub definition: String,
    /// The generated SQL, for admins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
}

/// One month of a tile's trend line.
#[derive(Clone, Debug, Serialize)]
pub struct TrendPoint {
    /// `2024-03`.
    pub month: String,
    /// The metric's figure for the month; none when it has none (no orders, no closed deal).
    pub value: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Series {
    pub name: String,
    pub values: Vec<Option<f64>>,
    /// The kind of a metric's figures (`money`, `ratio`, …), its unit and currency, for the
    /// chart's axis and tooltip; empty for a series that is no metric's.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub format: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub unit: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub currency: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Chart {
    /// bar, line or pie.
    pub kind: &'static str,
    pub categories: Vec<String>,
    pub series: Vec<Series>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Panel {
    /// tiles, chart or table.
    pub kind: &'static str,
    pub id: String,
    pub title: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tiles: Vec<Tile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chart: Option<Chart>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub header: Vec<String>,
    /// Exact text: every digit kept, for CSV and JSON.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rows: Vec<Vec<String>>,
    /// The same cells as a table meant for reading shows them (rates rounded), when that
    /// differs from the exact text; empty otherwise.
    #[serde(skip)]
    pub readable: Vec<Vec<String>>,
    /// Why a missing cell is missing, when its table knows (a withheld channel figure); empty
    /// text otherwise, and empty when the panel has none.
    #[serde(skip)]
    pub reasons: Vec<Vec<String>>,
    /// Where the first cell of each row leads (a partner's page, a segment's targets).
    #[serde(skip)]
    pub links: Vec<Option<String>>,
    /// A target list's product and segment, from which its partner's user may plan a campaign
    /// (`POST /my/potential/campaign`); empty otherwise.
    #[serde(skip)]
    pub plan_fields: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Panel {
    fn new(kind: &'static str, id: &str, title: &str) -> Panel {
        Panel {
            kind,
            id: id.into(),
            title: title.into(),
            tiles: Vec::new(),
            chart: None,
            header: Vec::new(),
            rows: Vec::new(),
            readable: Vec::new(),
            reasons: Vec::new(),
            links: Vec::new(),
            plan_fields: Vec::new(),
            note: None,
        }
    }

    /// A table from an analysis, linking partner ids to their page.
    fn from_table(id: &str, title: &str, t: &dyn prism_analyses::Table) -> Panel {
        let mut p = Panel::new("table", id, title);
        p.header = t.header();
        let cells = t.rows();
        p.rows = cells
            .iter()
            .map(|r| r.iter().map(Value::exact).collect())
            .collect();
        p.readable = cells
            .iter()
            .map(|r| r.iter().map(Value::readable).collect())
            .collect();
        p.reasons = cells
            .iter()
            .enumerate()
            .map(|(i, r)| {
                r.iter()
                    .zip(&p.header)
                    .map(|(_, h)| t.missing_reason(i, h).unwrap_or_default())
                    .collect()
            })
            .collect();
        if let Some(c) = p.header.iter().position(|h| h == "partner_id") {
            p.links = p
                .rows
                .iter()
                .map(|r| Some(format!("/partners/{}", r[c])))
                .collect();
            // The id first, so that the link is on it.
            if c != 0 {
                for r in p
                    .rows
                    .iter_mut()
                    .chain(p.readable.iter_mut())
                    .chain(p.reasons.iter_mut())
                {
                    let v = r.remove(c);
                    r.insert(0, v);
                }
                let h = p.header.remove(c);
                p.header.insert(0, h);
            }
        }
        p
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Page {
    pub page: &'static str,
    /// The page's own path (`/partners/P-00017`), which its exports are under.
    pub path: String,
    pub title: String,
    pub period: Option<Period>,
    pub headline: Vec<String>,
    pub notes: Vec<String>,
    pub panels: Vec<Panel>,
}

/// The partner and product prompts as the filters of every question on a page.
fn prompt_filters(prompts: &Prompts) -> Vec<Filter> {
    [
        ("partner.region", &prompts.region),
        ("partner.tier", &prompts.tier),
        ("partner.partner_type", &prompts.partner_type),
        ("product.product_line", &prompts.product_line),
    ]
    .into_iter()
    .filter_map(|(dimension, value)| {
        given(value).map(|v| Filter {
            dimension: dimension.into(),
            op: FilterOp::In(vec![v.to_string()]),
        })
    })
    .collect()
}

/// What a built page is kept under. A page is the same for the same version, role, scope and
/// prompts: its analyses (whose answers the engine's cache does not keep, only the queries
/// under them) run once per load. Keyed by the prompts as understood, not as typed:
/// `?period=2024-Q1` and `?period=+2024-01-01..2024-03-31&region=` are one page, so varying
/// the spelling of a question cannot fill the cache with copies of it.
fn page_key(
    user: &User,
    audience: &Audience,
    page: PageId,
    id: Option<&str>,
    period: Option<&Period>,
    prompts: &Prompts,
) -> String {
    let given = |v: &Option<String>| given(v).map(str::to_string);
    let understood = Prompts {
        period: period.map(|p| format!("{}..{}", p.from, p.to)),
        region: given(&prompts.region),
        tier: given(&prompts.tier),
        partner_type: given(&prompts.partner_type),
        product_line: given(&prompts.product_line),
        weights: prompts.weights().map(|w| {
            w.split(',')
                .map(|kv| kv.split_whitespace().collect::<String>())
                .collect::<Vec<_>>()
                .join(",")
        }),
        product: given(&prompts.product),
        segment: given(&prompts.segment),
        ..Prompts::default()
    };
    format!(
        "{:?}|{audience:?}|{page:?}|{id:?}|{}",
        user.role,
        serde_json::to_string(&understood).unwrap_or_default()
    )
}

/// Builds a page for a user, or says why not; kept for whoever asks the same over the same
/// warehouse version.
pub async fn build(
    st: &AppState,
    user: &User,
    page: PageId,
    id: Option<&str>,
    prompts: &Prompts,
) -> Result<Page, WebError> {
    if !page.allows(user.role) {
        return Err(WebError::Forbidden(format!(
            "the {} page is not for the {} role",
            page.title(),
            user.role.name()
        )));
    }
    if user.hidden_pages.iter().any(|h| h == page.name()) {
        return Err(WebError::NotFound(format!(
            "an administrator has hidden the {} page from the {} role",
            page.title(),
            user.role.name()
        )));
    }
    let (version, session) = st.session().await?;
    // Administration shows users and the audit log, which change without a load.
    if page == PageId::Admin {
        return assemble(st, user, page, id, prompts, session).await;
    }
    build_over(st, user, page, id, prompts, version, session).await
}

/// Builds a page over a version's session once, keeping it for that version: a page another
/// request is building is waited for and taken, not built again.
pub(crate) async fn build_over(
    st: &AppState,
    user: &User,
    page: PageId,
    id: Option<&str>,
    prompts: &Prompts,
    version: u64,
    session: Arc<Session>,
) -> Result<Page, WebError> {
    let audience = user.audience()?;
    let period = given(&prompts.period).map(Period::parse).transpose()?;
    let key = page_key(user, &audience, page, id, period.as_ref(), prompts);
    if let Some(cached) = st.cached_page(version, &key) {
        return Ok(cached);
    }
    // Built once: whoever asks while it is being built waits and takes the kept page.
    let gate = st.page_gate(version, &key);
    let _building = gate.lock().await;
    if let Some(cached) = st.cached_page(version, &key) {
        return Ok(cached);
    }
    let out = assemble(st, user, page, id, prompts, session).await?;
    let recipe = crate::PageRecipe {
        user: user.clone(),
        page,
        id: id.map(str::to_string),
        prompts: prompts.clone(),
    };
    st.keep_page(version, key, &out, recipe);
    Ok(out)
}

/// Builds a page over a session, keeping nothing: what `build` keeps, and what a load's new
/// version is warmed with before it is served.
pub(crate) async fn assemble(
    st: &AppState,
    user: &User,
    page: PageId,
    id: Option<&str>,
    prompts: &Prompts,
    session: Arc<Session>,
) -> Result<Page, WebError> {
    let mut cx = Ctx {
        st,
        user,
        session,
        audience: user.audience()?,
        period: given(&prompts.period).map(Period::parse).transpose()?,
        filters: prompt_filters(prompts),
        notes: Default::default(),
    };
    let path = match (page, id) {
        (PageId::PartnerDetail, Some(id)) => format!("/partners/{}", url(id)),
        _ => page.path().to_string(),
    };
    let mut out = Page {
        page: page.name(),
        path,
        title: page.title().into(),
        period: cx.period,
        headline: Vec::new(),
        notes: Vec::new(),
        panels: Vec::new(),
    };
    match page {
        PageId::Overview => overview::build(&cx, &mut out).await?,
        PageId::Segmentation => segmentation::build(&cx, &mut out).await?,
        PageId::Scorecard => scorecard::build(&cx, &mut out, prompts).await?,
        PageId::Underperformers => underperformers::build(&cx, &mut out, prompts).await?,
        PageId::Registrations => registrations::build(&cx, &mut out).await?,
        PageId::Campaigns => campaigns::build(&cx, &mut out).await?,
        PageId::Enablement => enablement::build(&cx, &mut out).await?,
        PageId::Sales => sales::build(&cx, &mut out).await?,
        PageId::Service => service::build(&cx, &mut out).await?,
        PageId::Customers => customers::build(&cx, &mut out).await?,
        PageId::PartnerDetail => partner_detail::build(&mut cx, &mut out, id).await?,
        PageId::MyPerformance => my_performance::build(&cx, &mut out).await?,
        PageId::MyProducts => my_products::build(&cx, &mut out).await?,
        PageId::MyPotential => my_potential::build(&cx, &mut out, prompts).await?,
        PageId::Admin => admin::build(&cx, &mut out).await?,
    }
    out.notes.extend(
        cx.notes
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    );
    Ok(out)
}

fn own_partner(user: &User) -> Result<String, WebError> {
    user.partners
        .first()
        .cloned()
        .ok_or_else(|| WebError::Forbidden("this user belongs to no partner".into()))
}

pub(crate) fn url(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
