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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PageId {
    Overview,
    Segmentation,
    Scorecard,
    Underperformers,
    Sales,
    Service,
    Customers,
    PartnerDetail,
    MyPerformance,
    MyProducts,
    MyPotential,
    Registrations,
    Campaigns,
    Enablement,
    Admin,
}

impl PageId {
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

pub fn home_of(user: &User) -> PageId {
    match user.role {
        Role::PartnerManager => PageId::MyPerformance,
        Role::Admin => PageId::Admin,
        _ => PageId::Overview,
    }
}

/// The links of the navigation bar for a user.
pub fn nav(user: Option<&User>) -> Vec<(String, String)> {
    let Some(user) = user else { return Vec::new() };
    let mut links: Vec<(String, String)> = PageId::ALL
        .iter()
        .filter(|p| p.allows(user.role) && **p != PageId::PartnerDetail)
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
    let alerts = match user.unread {
        0 => "Alerts".to_string(),
        n => format!("Alerts ({n} new)"),
    };
    links.insert(at + 2, ("/alerts".into(), alerts));
    links
}

/// The prompts of every page, kept in the URL so a view can be bookmarked and shared.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Prompts {
    pub period: Option<String>,
    pub region: Option<String>,
    pub tier: Option<String>,
    pub partner_type: Option<String>,
    pub product_line: Option<String>,
    /// Scorecard weights: `revenue=0.4,csat=0.3`.
    pub weights: Option<String>,
    /// Customer potential: the product, and the segment whose target list is shown.
    pub product: Option<String>,
    pub segment: Option<String>,
    /// Export: which table of the page.
    pub table: Option<String>,
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
    pub definition: String,
    /// The generated SQL, for admins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Series {
    pub name: String,
    pub values: Vec<Option<f64>>,
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
        if let Some(c) = p.header.iter().position(|h| h == "partner_id") {
            p.links = p
                .rows
                .iter()
                .map(|r| Some(format!("/partners/{}", r[c])))
                .collect();
            // The id first, so that the link is on it.
            if c != 0 {
                for r in p.rows.iter_mut().chain(p.readable.iter_mut()) {
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

/// What a page's builders share: the user, their audience, the session, the prompts as
/// filters.
struct Ctx<'a> {
    st: &'a AppState,
    user: &'a User,
    session: Arc<Session>,
    audience: Audience,
    period: Option<Period>,
    filters: Vec<Filter>,
    /// Behind a lock so that a page's panels can be asked side by side.
    notes: std::sync::Mutex<Vec<String>>,
}

impl Ctx<'_> {
    /// The prompt filters a query's metrics can take: a survey is of no product, so the product
    /// line prompt does not apply to satisfaction figures (and the page says so).
    fn filters_for(&self, metrics: &[&str]) -> Vec<Filter> {
        let model = &self.st.engine.model;
        let reaches = |dimension: &str| {
            metrics.iter().all(|m| {
                let base = m.split(':').next().unwrap_or(m);
                model.metrics.get(base).is_none_or(|metric| {
                    model
                        .facts_of(metric)
                        .iter()
                        .all(|f| model.facts[*f].reaches.iter().any(|r| r == dimension))
                })
            })
        };
        let mut out = Vec::new();
        for f in &self.filters {
            let dimension = f.dimension.split('.').next().unwrap_or_default();
            if reaches(dimension) {
                out.push(f.clone());
            } else {
                let note = format!(
                    "the {} prompt does not apply to {}",
                    f.dimension,
                    metrics.join(", ")
                );
                let mut notes = self
                    .notes
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if !notes.contains(&note) {
                    notes.push(note);
                }
            }
        }
        out
    }

    fn query(
        &self,
        metrics: &[&str],
        by: &[&str],
        order: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Query, WebError> {
        Ok(Query {
            metrics: metrics.iter().map(|m| m.to_string()).collect(),
            by: by.iter().map(|d| d.to_string()).collect(),
            filters: self.filters_for(metrics),
            period: self.period,
            order: order.map(Order::parse).transpose()?.into_iter().collect(),
            limit,
        })
    }

    async fn run(&self, q: &Query) -> Result<QueryResult, WebError> {
        Ok(self.st.engine.run(&self.session, q, &self.audience).await?)
    }

    async fn tiles(&self, id: &str, title: &str, metrics: &[&str]) -> Result<Panel, WebError> {
        let mut asked: Vec<String> = metrics.iter().map(|m| m.to_string()).collect();
        if self.period.is_some() {
            asked.extend(metrics.iter().map(|m| format!("{m}:change_pct")));
        }
        let names: Vec<&str> = asked.iter().map(String::as_str).collect();
        let q = self.query(&names, &[], None, None)?;
        let r = self.run(&q).await?;
        let row = r.first_row();
        let mut p = Panel::new("tiles", id, title);
        for m in metrics {
            let change_pct = self
                .period
                .and_then(|_| row.number(&format!("{m}:change_pct")));
            p.tiles.push(Tile {
                metric: m.to_string(),
                value: row.get(m).exact(),
                change_pct,
                definition: self
                    .st
                    .engine
                    .model
                    .metrics
                    .get(*m)
                    .map(|d| d.description.clone())
                    .unwrap_or_default(),
                sql: (self.user.role == Role::Admin).then(|| r.sql.clone()),
            });
        }
        Ok(p)
    }

    // A panel's parts, each named at the call: a struct for them would only restate the calls.
    #[allow(clippy::too_many_arguments)]
    async fn chart(
        &self,
        id: &str,
        title: &str,
        kind: &'static str,
        metrics: &[&str],
        by: &str,
        order: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Panel, WebError> {
        let q = self.query(metrics, &[by], order, limit)?;
        let r = self.run(&q).await?;
        let rows = r.rows();
        let mut p = Panel::new("chart", id, title);
        p.chart = Some(Chart {
            kind,
            categories: rows.iter().map(|r| r.get(by).exact()).collect(),
            series: metrics
                .iter()
                .map(|m| Series {
                    name: m.to_string(),
                    values: rows.iter().map(|r| r.number(m)).collect(),
                })
                .collect(),
        });
        // The chart's figures as a table too: readable without the script, and exportable.
        p.header = r.columns.iter().map(|c| c.name.clone()).collect();
        p.rows = r.formatted_rows();
        Ok(p)
    }

    async fn table(
        &self,
        id: &str,
        title: &str,
        metrics: &[&str],
        by: &[&str],
        order: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Panel, WebError> {
        let q = self.query(metrics, by, order, limit)?;
        let r = self.run(&q).await?;
        let mut p = Panel::new("table", id, title);
        p.header = r.columns.iter().map(|c| c.name.clone()).collect();
        p.rows = r.formatted_rows();
        if p.header.first().is_some_and(|h| h == "partner.partner_id") {
            p.links = partner_links(&r);
        }
        Ok(p)
    }

    /// A table of the top rows by one metric, with more figures for those rows only: the
    /// ranking reads what a rollup can answer (revenue by customer), and the figures that only
    /// the base tables answer (distinct orders, say) are computed for the few rows shown
    /// instead of every customer. The same answer as one query with every metric.
    async fn top_table(
        &self,
        id: &str,
        title: &str,
        rank_by: &str,
        more: &[&str],
        by: &[&str],
        limit: usize,
    ) -> Result<Panel, WebError> {
        let order = format!("{rank_by}:desc");
        let ranking = self.query(&[rank_by], by, Some(&order), Some(limit))?;
        let top = self.run(&ranking).await?;
        let top_rows: Vec<Vec<String>> = top.formatted_rows();
        let shown: Vec<String> = top.rows().iter().map(|r| r.get(by[0]).exact()).collect();
        let mut all: Vec<&str> = vec![rank_by];
        all.extend(more);
        if top_rows.len() < limit {
            // Fewer rows with the ranking figure than asked: rows with only the other figures
            // (a customer with surveys but no orders) fill the table, as in one query.
            return self
                .table(id, title, &all, by, Some(&order), Some(limit))
                .await;
        }
        let mut details = self.query(more, by, None, None)?;
        details.filters.push(Filter {
            dimension: by[0].to_string(),
            op: FilterOp::In(shown),
        });
        let details: BTreeMap<Vec<String>, Vec<String>> = self
            .run(&details)
            .await?
            .rows()
            .iter()
            .map(|r| {
                let mut cells: Vec<String> = r.values().iter().map(Value::exact).collect();
                (cells.drain(..by.len()).collect(), cells)
            })
            .collect();
        let mut p = Panel::new("table", id, title);
        p.header = by
            .iter()
            .map(|d| d.to_string())
            .chain(all.iter().map(|m| m.to_string()))
            .collect();
        p.rows = top_rows
            .into_iter()
            .map(|r| {
                let extra = details
                    .get(&r[..by.len()])
                    .cloned()
                    .unwrap_or_else(|| vec![String::new(); more.len()]);
                r.into_iter().chain(extra).collect()
            })
            .collect();
        Ok(p)
    }

    fn analysis(&self) -> prism_analyses::Context<'_> {
        prism_analyses::Context {
            engine: &self.st.engine,
            session: &self.session,
            audience: self.audience.clone(),
            period: self.period,
        }
    }
}

/// Builds a page for a user, or says why not.
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
    let audience = user.audience()?;
    let period = given(&prompts.period).map(Period::parse).transpose()?;
    let mut filters = Vec::new();
    for (dimension, value) in [
        ("partner.region", &prompts.region),
        ("partner.tier", &prompts.tier),
        ("partner.partner_type", &prompts.partner_type),
        ("product.product_line", &prompts.product_line),
    ] {
        if let Some(v) = given(value) {
            filters.push(Filter {
                dimension: dimension.into(),
                op: FilterOp::In(vec![v.to_string()]),
            });
        }
    }
    let (version, session) = st.session().await?;
    // A page is the same for the same version, role, scope and prompts: its analyses (whose
    // answers the engine's cache does not keep, only the queries under them) run once per load.
    // Administration shows users and the audit log, which change without a load.
    // Keyed by the prompts as understood, not as typed: `?period=2024-Q1` and
    // `?period=+2024-01-01..2024-03-31&region=` are one page, so varying the spelling of a
    // question cannot fill the cache with copies of it.
    let cache_key = (page != PageId::Admin).then(|| {
        let given = |v: &Option<String>| given(v).map(str::to_string);
        let prompts = Prompts {
            period: period.map(|p| format!("{}..{}", p.from, p.to)),
            region: given(&prompts.region),
            tier: given(&prompts.tier),
            partner_type: given(&prompts.partner_type),
            product_line: given(&prompts.product_line),
            weights: given(&prompts.weights).map(|w| {
                w.split(',')
                    .map(|kv| kv.split_whitespace().collect::<String>())
                    .collect::<Vec<_>>()
                    .join(",")
            }),
            product: given(&prompts.product),
            segment: given(&prompts.segment),
            table: None,
        };
        format!(
            "{:?}|{:?}|{page:?}|{id:?}|{}",
            user.role,
            audience,
            serde_json::to_string(&prompts).unwrap_or_default()
        )
    });
    if let Some(key) = &cache_key
        && let Some(cached) = st.cached_page(version, key)
    {
        return Ok(cached);
    }
    // Built once: whoever asks while it is being built waits and takes the kept page.
    let gate = cache_key.as_ref().map(|key| st.page_gate(version, key));
    let _building = match &gate {
        Some(g) => Some(g.lock().await),
        None => None,
    };
    if let Some(key) = &cache_key
        && let Some(cached) = st.cached_page(version, key)
    {
        return Ok(cached);
    }
    let mut cx = Ctx {
        st,
        user,
        session,
        audience,
        period,
        filters,
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
        period,
        headline: Vec::new(),
        notes: Vec::new(),
        panels: Vec::new(),
    };
    match page {
        PageId::Overview => {
            // Seven independent questions, asked side by side (each is small; together they
            // keep both cores busy), shown in this order.
            let (kpi, revenue, pipeline, by_tier, by_type, by_region, top) = tokio::try_join!(
                cx.tiles(
                    "kpi",
                    "Key figures",
                    &[
                        "closed_revenue",
                        "open_pipeline",
                        "win_rate",
                        "csat_avg",
                        "avg_first_response_hours",
                        "indirect_revenue_share"
                    ]
                ),
                cx.chart(
                    "revenue-trend",
                    "Closed revenue by month",
                    "line",
                    &["closed_revenue"],
                    "time.month",
                    None,
                    None
                ),
                cx.chart(
                    "pipeline-trend",
                    "Open pipeline by expected close month",
                    "bar",
                    &["open_pipeline"],
                    "time.month",
                    None,
                    None
                ),
                cx.chart(
                    "by-tier",
                    "Revenue by tier",
                    "bar",
                    &["closed_revenue"],
                    "partner.tier",
                    Some("closed_revenue:desc"),
                    None
                ),
                cx.chart(
                    "by-type",
                    "Revenue by partner type",
                    "pie",
                    &["closed_revenue"],
                    "partner.partner_type",
                    Some("closed_revenue:desc"),
                    None
                ),
                cx.chart(
                    "by-region",
                    "Revenue by region",
                    "bar",
                    &["closed_revenue"],
                    "partner.region",
                    Some("closed_revenue:desc"),
                    None
                ),
                cx.table(
                    "top-partners",
                    "Top partners by revenue",
                    &[
                        "closed_revenue",
                        "closed_revenue:pct_of_total",
                        "win_rate",
                        "csat_avg"
                    ],
                    &[
                        "partner.partner_id",
                        "partner.partner_name",
                        "partner.tier",
                        "partner.region"
                    ],
                    Some("closed_revenue:desc"),
                    Some(15)
                ),
            )?;
            out.panels
                .extend([kpi, revenue, pipeline, by_tier, by_type, by_region, top]);
        }
        PageId::Segmentation => {
            let p = prism_analyses::pareto::pareto(&cx.analysis(), None).await?;
            out.headline = p.headline();
            let mut chart = Panel::new(
                "chart",
                "pareto-chart",
                "Cumulative share of partner revenue, largest partners first",
            );
            let top: Vec<&prism_analyses::pareto::ParetoRow> = p.rows.iter().take(60).collect();
            chart.chart = Some(Chart {
                kind: "bar",
                categories: top.iter().map(|r| r.partner.partner_name.clone()).collect(),
                series: vec![Series {
                    name: "cumulative_pct".into(),
                    values: top.iter().map(|r| r.cumulative_pct).collect(),
                }],
            });
            out.panels.push(chart);
            out.panels.push(Panel::from_table(
                "partners",
                "Partners by revenue, with their class (export: a program list)",
                &p,
            ));
        }
        PageId::Scorecard => {
            let weights = given(&prompts.weights)
                .map(prism_analyses::scorecard::Weights::parse)
                .transpose()?
                .unwrap_or_default();
            let s = prism_analyses::scorecard::scorecard(&cx.analysis(), weights).await?;
            out.headline = s.headline();
            out.panels.push(Panel::from_table(
                "scorecard",
                "Partners ranked by score",
                &s,
            ));
        }
        PageId::Underperformers => {
            let weights = given(&prompts.weights)
                .map(prism_analyses::scorecard::Weights::parse)
                .transpose()?
                .unwrap_or_default();
            let u =
                prism_analyses::underperformers::underperformers(&cx.analysis(), weights).await?;
            out.headline = u.headline();
            out.panels.push(Panel::from_table(
                "underperformers",
                "Partners flagged, worst first (export: an improvement-program list)",
                &u,
            ));
        }
        PageId::Registrations => {
            let r = prism_analyses::registrations::registrations(&cx.analysis()).await?;
            out.headline = r.headline();
            if r.total.submitted == 0 {
                out.notes
                    .push(NO_PROGRAM_DATA.replace("{}", "deal registrations"));
            }
            out.panels.push(
                cx.tiles(
                    "kpi",
                    "Deal registration",
                    &[
                        "registrations",
                        "registration_approval_rate",
                        "avg_registration_decision_days",
                        "registration_win_rate",
                        "pending_registrations",
                    ],
                )
                .await?,
            );
            out.panels.push(
                cx.chart(
                    "by-status",
                    "Registrations by status",
                    "bar",
                    &["registrations"],
                    "deal_registration.status",
                    None,
                    None,
                )
                .await?,
            );
            out.panels.push(Panel::from_table(
                "partners",
                "Each partner's funnel; the bottom quartile of approval or registered win rate flagged",
                &r,
            ));
        }
        PageId::Campaigns => {
            let c = prism_analyses::campaigns::campaigns(&cx.analysis()).await?;
            out.headline = c.headline();
            if c.campaigns.is_empty() {
                out.notes
                    .push(NO_PROGRAM_DATA.replace("{}", "campaigns or fund requests"));
            }
            out.panels.push(
                cx.tiles(
                    "kpi",
                    "Funds and campaigns",
                    &[
                        "mdf_requested",
                        "mdf_paid",
                        "mdf_utilization_pct",
                        "campaign_sourced_pipeline",
                        "campaign_sourced_won",
                        "mdf_roi",
                    ],
                )
                .await?,
            );
            out.panels.push(Panel::from_table(
                "campaigns",
                "Campaigns: funds against what they sourced (paid, and no opportunity, first)",
                &c,
            ));
        }
        PageId::Enablement => {
            let e = prism_analyses::enablement::enablement(&cx.analysis()).await?;
            out.headline = e.headline();
            if e.partners
                .iter()
                .all(|p| p.certified_people == 0 && p.by_track.is_empty())
            {
                out.notes
                    .push(NO_PROGRAM_DATA.replace("{}", "certifications"));
            }
            out.panels.push(
                cx.tiles(
                    "kpi",
                    "Enablement",
                    &[
                        "certified_people",
                        "expiring_certifications",
                        "certifications_earned",
                    ],
                )
                .await?,
            );
            out.panels.push(
                cx.chart(
                    "by-track",
                    "Certified people by track, on the period's last day",
                    "bar",
                    &["certified_people"],
                    "certification.track",
                    None,
                    None,
                )
                .await?,
            );
            out.panels.push(Panel::from_table(
                "partners",
                "Partners, those selling lines nobody of theirs is certified to deliver first",
                &e,
            ));
        }
        PageId::Sales => {
            out.panels.push(
                cx.tiles(
                    "kpi",
                    "Sales",
                    &[
                        "won_amount",
                        "win_rate",
                        "avg_deal_size",
                        "avg_sales_cycle_days",
                        "open_opportunities",
                        "weighted_pipeline",
                    ],
                )
                .await?,
            );
            out.panels.push(
                cx.chart(
                    "pipeline-by-stage",
                    "Open pipeline by stage",
                    "bar",
                    &["open_pipeline"],
                    "opportunity.stage",
                    None,
                    None,
                )
                .await?,
            );
            out.panels.push(
                cx.chart(
                    "pipeline-by-quarter",
                    "Open pipeline by close quarter",
                    "bar",
                    &["open_pipeline"],
                    "time.quarter",
                    None,
                    None,
                )
                .await?,
            );
            out.panels.push(
                cx.chart(
                    "wins-losses",
                    "Wins and losses by quarter",
                    "bar",
                    &["won_count", "lost_count"],
                    "time.quarter",
                    None,
                    None,
                )
                .await?,
            );
            out.panels.push(
                cx.table(
                    "margin",
                    "Margin by product line",
                    &["closed_revenue", "gross_margin", "gross_margin_pct"],
                    &["product.product_line"],
                    Some("closed_revenue:desc"),
                    None,
                )
                .await?,
            );
        }
        PageId::Service => {
            out.panels.push(
                cx.tiles(
                    "kpi",
                    "Service",
                    &[
                        "sr_count",
                        "open_sr_count",
                        "avg_first_response_hours",
                        "avg_resolution_hours",
                        "sla_met_pct",
                        "resolution_rate",
                    ],
                )
                .await?,
            );
            out.panels.push(
                cx.chart(
                    "csat-trend",
                    "CSAT by month",
                    "line",
                    &["csat_avg"],
                    "time.month",
                    None,
                    None,
                )
                .await?,
            );
            out.panels.push(
                cx.table(
                    "by-priority",
                    "By priority",
                    &[
                        "sr_count",
                        "open_sr_count",
                        "avg_first_response_hours",
                        "avg_resolution_hours",
                        "sla_met_pct",
                    ],
                    &["service_request.priority"],
                    None,
                    None,
                )
                .await?,
            );
            let critical = Filter {
                dimension: "service_request.priority".into(),
                op: FilterOp::In(vec!["P1".into(), "P2".into()]),
            };
            let mut q = cx.query(
                &["open_sr_count"],
                &["partner.partner_id", "partner.partner_name"],
                Some("open_sr_count:desc"),
                Some(20),
            )?;
            q.filters.push(critical);
            let r = cx.run(&q).await?;
            let mut p = Panel::new(
                "table",
                "open-critical",
                "Open critical (P1/P2) requests by partner",
            );
            p.header = r.columns.iter().map(|c| c.name.clone()).collect();
            p.rows = r.formatted_rows();
            p.links = partner_links(&r);
            out.panels.push(p);
        }
        PageId::Customers => {
            // The panels do not depend on each other: asked side by side, the high-risk accounts
            // (the longest, through every survey and customer) overlap the rest.
            let (by_industry, by_size, by_band, top, risk) = tokio::try_join!(
                cx.chart(
                    "by-industry",
                    "Revenue by industry",
                    "bar",
                    &["closed_revenue"],
                    "customer.industry",
                    Some("closed_revenue:desc"),
                    None
                ),
                cx.chart(
                    "by-size",
                    "Revenue by company size",
                    "pie",
                    &["closed_revenue"],
                    "customer.size_band",
                    None,
                    None
                ),
                cx.chart(
                    "by-revenue-band",
                    "Revenue by the customer's own annual revenue",
                    "bar",
                    &["closed_revenue"],
                    "customer.annual_revenue_band",
                    None,
                    None
                ),
                cx.top_table(
                    "top-accounts",
                    "Top accounts",
                    "closed_revenue",
                    &["order_count", "csat_avg"],
                    &[
                        "customer.customer_id",
                        "customer.customer_name",
                        "customer.industry",
                        "customer.size_band"
                    ],
                    20
                ),
                async { Ok::<_, WebError>(prism_analyses::risk::risk(&cx.analysis()).await?) },
            )?;
            out.panels.extend([by_industry, by_size, by_band, top]);
            let mut p = Panel::from_table("high-risk", "High-risk accounts", &risk);
            p.note = Some(risk.headline().join(" "));
            p.rows.truncate(100);
            out.panels.push(p);
        }
        PageId::PartnerDetail => {
            let id = id.ok_or_else(|| WebError::NotFound("which partner?".into()))?;
            // From here on, only this partner's rows: refused when it is not the user's.
            cx.audience = cx.audience.narrow_to(id)?;
            let partners = st
                .engine
                .members(&cx.session, "partner", &cx.audience)
                .await?;
            let rows = partners.rows();
            let Some(row) = rows.first() else {
                return Err(WebError::NotFound(format!("no partner {id}")));
            };
            let at = |n: &str| row.get(n).exact();
            out.title = at("partner.partner_name");
            out.headline = vec![format!(
                "{} · {} · {} · {} · {}",
                id,
                at("partner.tier"),
                at("partner.partner_type"),
                at("partner.region"),
                at("partner.status")
            )];
            let (kpi, program, trend, products, customers) = tokio::try_join!(
                cx.tiles(
                    "kpi",
                    "Key figures",
                    &[
                        "closed_revenue",
                        "open_pipeline",
                        "win_rate",
                        "csat_avg",
                        "avg_first_response_hours",
                        "sla_met_pct"
                    ]
                ),
                // Its side of the partner program: registrations, funds, enablement.
                cx.tiles(
                    "program",
                    "Partner program",
                    &[
                        "registrations",
                        "registration_approval_rate",
                        "registration_win_rate",
                        "mdf_paid",
                        "mdf_roi",
                        "certified_people",
                        "expiring_certifications"
                    ]
                ),
                cx.chart(
                    "revenue-trend",
                    "Closed revenue by month",
                    "line",
                    &["closed_revenue"],
                    "time.month",
                    None,
                    None
                ),
                async {
                    Ok::<_, WebError>(prism_analyses::products::products(&cx.analysis(), id).await?)
                },
                cx.top_table(
                    "customers",
                    "Customers",
                    "closed_revenue",
                    &["order_count", "open_sr_count", "csat_avg"],
                    &[
                        "customer.customer_id",
                        "customer.customer_name",
                        "customer.industry",
                        "customer.size_band"
                    ],
                    50
                ),
            )?;
            out.panels.extend([
                kpi,
                program,
                trend,
                Panel::from_table("products", "Products", &products),
                customers,
            ]);
        }
        PageId::MyPerformance => {
            let own = own_partner(user)?;
            out.panels.push(
                cx.tiles(
                    "kpi",
                    "My key figures",
                    &[
                        "closed_revenue",
                        "open_pipeline",
                        "win_rate",
                        "csat_avg",
                        "avg_first_response_hours",
                        "sla_met_pct",
                    ],
                )
                .await?,
            );
            let b = prism_analyses::benchmarks::benchmarks(&cx.analysis(), &own).await?;
            out.headline = b.headline();
            out.panels.push(Panel::from_table(
                "benchmarks",
                "Against the channel (channel figures over at least 5 partners)",
                &b,
            ));
            out.panels.push(
                cx.chart(
                    "csat-trend",
                    "My CSAT by month",
                    "line",
                    &["csat_avg"],
                    "time.month",
                    None,
                    None,
                )
                .await?,
            );
            out.panels.push(
                cx.chart(
                    "revenue-trend",
                    "My revenue by month",
                    "line",
                    &["closed_revenue"],
                    "time.month",
                    None,
                    None,
                )
                .await?,
            );
        }
        PageId::MyProducts => {
            let own = own_partner(user)?;
            let products = prism_analyses::products::products(&cx.analysis(), &own).await?;
            out.headline = products.headline();
            out.panels.push(
                cx.chart(
                    "by-line",
                    "My revenue by product line",
                    "bar",
                    &["closed_revenue"],
                    "product.product_line",
                    Some("closed_revenue:desc"),
                    None,
                )
                .await?,
            );
            out.panels.push(Panel::from_table(
                "products",
                "My products: best sellers first, poor sellers marked",
                &products,
            ));
        }
        PageId::MyPotential => {
            let own = own_partner(user)?;
            match given(&prompts.product) {
                // On arrival, the scenario's question answered: where could my poorly selling
                // products sell?
                None => {
                    let guide = prism_analyses::potential::guide(&cx.analysis(), &own).await?;
                    out.headline = guide.headline();
                    let mut p = Panel::from_table(
                        "poor-sellers",
                        "Your poor sellers and where each could sell",
                        &guide,
                    );
                    p.links = guide
                        .products
                        .iter()
                        .map(|g| {
                            Some(match &g.best_segment {
                                Some(s) => format!(
                                    "/my/potential?product={}&segment={}",
                                    url(&g.product_id),
                                    url(s)
                                ),
                                None => format!("/my/potential?product={}", url(&g.product_id)),
                            })
                        })
                        .collect();
                    out.panels.push(p);
                    out.notes.push(
                        "open a product to see every segment and its target list, or choose another product above".into(),
                    );
                }
                Some(product) => {
                    let potential =
                        prism_analyses::potential::potential(&cx.analysis(), &own, product).await?;
                    out.headline = potential.headline();
                    let mut p = Panel::from_table(
                        "segments",
                        "Segments by expected additional buyers",
                        &potential,
                    );
                    p.links = potential
                        .segments
                        .iter()
                        .map(|s| {
                            Some(format!(
                                "/my/potential?product={}&segment={}/{}",
                                url(product),
                                url(&s.industry),
                                url(&s.size_band)
                            ))
                        })
                        .collect();
                    out.panels.push(p);
                    if let Some(segment) = given(&prompts.segment) {
                        let targets = potential.targets(&cx.analysis(), segment).await?;
                        let mut p = Panel::from_table(
                            "targets",
                            &format!("Target list: untapped customers in {segment}"),
                            &targets,
                        );
                        if !targets.customers.is_empty() {
                            p.plan_fields = vec![
                                ("product".into(), product.to_string()),
                                ("segment".into(), segment.to_string()),
                            ];
                        }
                        out.panels.push(p);
                    }
                }
            }
        }
        PageId::Admin => {
            let wh = prism_warehouse::Warehouse::open(&st.data)
                .map_err(|e| WebError::Internal(e.to_string()))?;
            let versions = wh
                .versions()
                .map_err(|e| WebError::Internal(e.to_string()))?;
            let mut p = Panel::new("table", "loads", "Warehouse versions (loads)");
            p.header = [
                "version",
                "loaded_at",
                "mode",
                "source",
                "rows_added",
                "rows_rejected",
            ]
            .map(String::from)
            .to_vec();
            p.rows = versions
                .versions
                .iter()
                .rev()
                .map(|v| {
                    let added: u64 = v.changes.values().map(|c| c.added).sum();
                    let rejected: u64 = v.changes.values().map(|c| c.rejected).sum();
                    vec![
                        v.version.to_string(),
                        v.loaded_at.to_string(),
                        v.mode.to_string(),
                        v.source.clone(),
                        added.to_string(),
                        rejected.to_string(),
                    ]
                })
                .collect();
            out.panels.push(p);
            let mut u = Panel::new("table", "users", "Users (manage with `prism users`)");
            u.header = ["name", "role", "partners"].map(String::from).to_vec();
            u.rows = st
                .store
                .users()?
                .into_iter()
                .map(|x| vec![x.name, x.role.name().to_string(), x.partners.join(", ")])
                .collect();
            out.panels.push(u);
            let mut a = Panel::new(
                "table",
                "audit",
                "Audit log: sign-ins and exports, newest first",
            );
            a.header = ["at", "user", "event", "detail"].map(String::from).to_vec();
            a.rows = st
                .store
                .audit_log(200)?
                .into_iter()
                .map(|(at, user, event, detail)| {
                    vec![
                        chrono::DateTime::from_timestamp(at, 0)
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_default(),
                        user,
                        event,
                        detail,
                    ]
                })
                .collect();
            out.panels.push(a);
        }
    }
    out.notes.extend(
        cx.notes
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    );
    if let Some(key) = cache_key {
        st.keep_page(version, key, &out);
    }
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

// ----- rendering -----

pub struct TileView {
    pub label: String,
    pub value: String,
    /// The figure in full, on hover.
    pub exact: String,
    /// The exact value and its kind, for the browser to write in its own language.
    pub raw: String,
    pub format: &'static str,
    pub currency: String,
    pub change: String,
    pub change_class: &'static str,
    pub definition: String,
    pub sql: String,
}

pub struct CellView {
    pub text: String,
    pub href: String,
    pub numeric: bool,
    /// The exact value and its kind (empty when the column is not a metric's), for the browser
    /// to write in its own language.
    pub raw: String,
    pub format: &'static str,
    pub currency: String,
}

/// Series named after metrics take the metrics' labels (a legend is read, not parsed).
pub(crate) fn labelled(model: &prism_model::Model, series: &mut [Series]) {
    for s in series {
        if column_format(model, &s.name).is_some() {
            s.name = model.label(&s.name);
        }
    }
}

/// The kind and unit of a column named after a metric or one of its derived forms.
pub(crate) fn column_format(
    model: &prism_model::Model,
    column: &str,
) -> Option<(prism_model::Format, Option<String>)> {
    use prism_model::Format;
    let (name, form) = match column.split_once(':') {
        Some((n, f)) => (n, Some(f)),
        None => (column, None),
    };
    let m = model.metrics.get(name)?;
    Some(match form {
        Some("pct_of_total" | "cumulative_pct" | "change_pct" | "change_pct_year_before") => {
            (Format::Percent, None)
        }
        Some("rank") => (Format::Integer, None),
        _ => (m.format, m.unit.clone()),
    })
}

fn format_name(f: prism_model::Format) -> &'static str {
    use prism_model::Format;
    match f {
        Format::Money => "money",
        Format::Integer => "integer",
        Format::Number => "number",
        Format::Percent => "percent",
        Format::Ratio => "ratio",
    }
}

/// Each row's link to its partner's page; none for direct sales, which are no partner's.
fn partner_links(r: &QueryResult) -> Vec<Option<String>> {
    r.rows()
        .iter()
        .map(|row| {
            row.text("partner.partner_id")
                .map(|id| format!("/partners/{id}"))
        })
        .collect()
}

/// A cell as people read it: a metric's value by its kind (money grouped with its symbol, rates
/// as `46.2 %`, a missing one as a dash); anything else as before.
pub(crate) fn cell_view(
    model: &prism_model::Model,
    column: &str,
    value: &str,
    href: String,
) -> CellView {
    match column_format(model, column) {
        Some((format, unit)) => CellView {
            text: prism_engine::display::figure(
                value,
                Some(format),
                unit.as_deref(),
                &model.currency,
                false,
            ),
            href,
            numeric: true,
            raw: value.to_string(),
            format: format_name(format),
            currency: model.currency.clone(),
        },
        None => {
            let (text, numeric) = display(value);
            CellView {
                text,
                href,
                numeric,
                raw: String::new(),
                format: "",
                currency: String::new(),
            }
        }
    }
}

pub struct PanelView {
    pub kind: &'static str,
    pub id: String,
    pub title: String,
    pub tiles: Vec<TileView>,
    pub chart_json: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<CellView>>,
    pub export_href: String,
    pub note: String,
    pub plan_fields: Vec<(String, String)>,
}

pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "page.html")]
pub struct PageTemplate {
    pub user_name: String,
    pub role: String,
    pub nav: Vec<(String, String)>,
    pub current: String,
    pub csrf: String,
    pub title: String,
    pub headline: Vec<String>,
    pub notes: Vec<String>,
    pub panels: Vec<PanelView>,
    pub periods: Vec<Choice>,
    pub period_text: String,
    pub regions: Vec<Choice>,
    pub tiers: Vec<Choice>,
    pub types: Vec<Choice>,
    pub lines: Vec<Choice>,
    pub show_weights: bool,
    pub weights: String,
    pub show_products: bool,
    pub products: Vec<Choice>,
    pub segment: String,
}

#[derive(Template)]
#[template(path = "sign_in.html")]
pub struct SignInPage {
    pub csrf: String,
    pub message: String,
}

impl SignInPage {
    pub fn render(&self) -> String {
        Template::render(self).unwrap_or_else(|e| format!("template: {e}"))
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub user_name: String,
    pub nav: Vec<(String, String)>,
    pub status: u16,
    pub message: String,
}

impl ErrorPage {
    pub fn render(&self) -> String {
        Template::render(self).unwrap_or_else(|e| format!("template: {e}"))
    }
}

/// A number for a person: at most two decimals for fractions; money and counts as they are.
pub(crate) fn display(v: &str) -> (String, bool) {
    match v.parse::<f64>() {
        Ok(f) if v.contains('.') && v.split('.').nth(1).is_some_and(|d| d.len() > 2) => {
            (format!("{f:.2}"), true)
        }
        Ok(_) => (v.to_string(), true),
        Err(_) => (v.to_string(), false),
    }
}

fn query_string(prompts: &Prompts, table: Option<&str>) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("period", &prompts.period),
        ("region", &prompts.region),
        ("tier", &prompts.tier),
        ("partner_type", &prompts.partner_type),
        ("product_line", &prompts.product_line),
        ("weights", &prompts.weights),
        ("product", &prompts.product),
        ("segment", &prompts.segment),
    ] {
        if let Some(v) = given(v) {
            parts.push(format!("{k}={}", url(v)));
        }
    }
    if let Some(t) = table {
        parts.push(format!("table={}", url(t)));
    }
    parts.join("&")
}

/// The periods offered: all data, this year to date, the last eight quarters and three years.
fn periods(selected: Option<&str>) -> Vec<Choice> {
    let today = chrono::Utc::now().date_naive();
    let mut v = vec![("".to_string(), "All loaded data".to_string())];
    v.push((
        format!("{}-01-01..{today}", today.year()),
        format!("{} year to date", today.year()),
    ));
    let (mut y, mut q) = (today.year(), (today.month() - 1) / 3 + 1);
    for _ in 0..8 {
        v.push((format!("{y}-Q{q}"), format!("{y} Q{q}")));
        if q == 1 {
            y -= 1;
            q = 4;
        } else {
            q -= 1;
        }
    }
    for y in (today.year() - 2..=today.year()).rev() {
        v.push((y.to_string(), y.to_string()));
    }
    let mut out: Vec<Choice> = v
        .into_iter()
        .map(|(value, label)| Choice {
            selected: Some(value.as_str()) == selected.or(Some("")),
            value,
            label,
        })
        .collect();
    // A custom range typed in the URL stays selected.
    if let Some(s) = selected
        && !out.iter().any(|c| c.value == s)
    {
        out.push(Choice {
            value: s.to_string(),
            label: s.to_string(),
            selected: true,
        });
    }
    out
}

fn choices(values: Vec<String>, selected: Option<&str>) -> Vec<Choice> {
    let mut out = vec![Choice {
        value: String::new(),
        label: "All".into(),
        selected: selected.is_none(),
    }];
    out.extend(values.into_iter().map(|v| Choice {
        selected: Some(v.as_str()) == selected,
        label: v.clone(),
        value: v,
    }));
    out
}

/// The distinct values of some attributes of a dimension among the members the user may see,
/// each list sorted: one read of the members for all of them, each column read from its Arrow
/// array (a customer dimension has hundreds of thousands of members).
pub(crate) async fn members_of(
    st: &AppState,
    user: &User,
    dimension: &str,
    attributes: &[&str],
) -> Vec<Vec<String>> {
    let none = || vec![Vec::new(); attributes.len()];
    let (Ok((_, session)), Ok(audience)) = (st.session().await, user.audience()) else {
        return none();
    };
    let Ok(r) = st
        .engine
        .members_unordered(&session, dimension, &audience)
        .await
    else {
        return none();
    };
    attributes
        .iter()
        .map(|a| {
            let Some(i) = r.column(a) else {
                return Vec::new();
            };
            let values: std::collections::BTreeSet<String> = r
                .batches
                .iter()
                .flat_map(|b| {
                    let column = b.column(i);
                    (0..b.num_rows()).map(move |row| prism_engine::format_value(column, row, None))
                })
                .collect();
            values.into_iter().collect()
        })
        .collect()
}

pub async fn render(
    st: &AppState,
    user: &User,
    csrf: &str,
    page: &Page,
    prompts: &Prompts,
) -> String {
    let page_id = PageId::ALL
        .iter()
        .copied()
        .find(|p| p.name() == page.page)
        .unwrap_or(PageId::Overview);
    let export_base = format!("/export{}", page.path);
    let model = &st.engine.model;
    let figure = |t: &Tile, compact: bool| {
        let (format, unit) = column_format(model, &t.metric).unzip();
        prism_engine::display::figure(
            &t.value,
            format,
            unit.flatten().as_deref(),
            &model.currency,
            compact,
        )
    };
    let panels = page
        .panels
        .iter()
        .map(|p| PanelView {
            kind: p.kind,
            id: p.id.clone(),
            title: p.title.clone(),
            tiles: p
                .tiles
                .iter()
                .map(|t| TileView {
                    label: model.label(&t.metric),
                    value: figure(t, true),
                    exact: figure(t, false),
                    raw: t.value.clone(),
                    format: column_format(model, &t.metric).map_or("", |f| format_name(f.0)),
                    currency: model.currency.clone(),
                    change: t.change_pct.map_or(String::new(), |c| {
                        let arrow = if c > 0.0 {
                            "▲"
                        } else if c < 0.0 {
                            "▼"
                        } else {
                            "="
                        };
                        format!("{arrow} {:.1} % vs previous period", c.abs())
                    }),
                    change_class: {
                        let up_is_good = model
                            .metrics
                            .get(&t.metric)
                            .is_none_or(|m| m.higher_is_better);
                        match t.change_pct {
                            Some(c) if c != 0.0 && (c > 0.0) == up_is_good => "good",
                            Some(c) if c != 0.0 => "bad",
                            _ => "",
                        }
                    },
                    definition: t.definition.clone(),
                    sql: t.sql.clone().unwrap_or_default(),
                })
                .collect(),
            chart_json: p
                .chart
                .as_ref()
                .map(|c| {
                    let mut c = c.clone();
                    labelled(model, &mut c.series);
                    serde_json::to_string(&c).unwrap_or_default()
                })
                .unwrap_or_default(),
            header: p.header.iter().map(|h| model.label(h)).collect(),
            rows: p
                .rows
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    r.iter()
                        .enumerate()
                        .map(|(j, c)| {
                            let href = if j == 0 {
                                p.links.get(i).cloned().flatten().unwrap_or_default()
                            } else {
                                String::new()
                            };
                            let mut cell = cell_view(
                                model,
                                p.header.get(j).map_or("", String::as_str),
                                c,
                                href,
                            );
                            // A column that is no metric reads as the analysis rounds it.
                            if let Some(text) = p.readable.get(i).and_then(|r| r.get(j))
                                && cell.raw.is_empty()
                            {
                                cell.text = text.clone();
                            }
                            cell
                        })
                        .collect()
                })
                .collect(),
            export_href: if p.kind == "chart" && p.chart.is_some() || p.kind == "table" {
                format!("{export_base}?{}", query_string(prompts, Some(&p.id)))
            } else {
                String::new()
            },
            note: p.note.clone().unwrap_or_default(),
            plan_fields: p.plan_fields.clone(),
        })
        .collect();
    let channel_page = !matches!(page_id, PageId::Admin | PageId::MyPotential);
    let product_choices = if page_id == PageId::MyPotential {
        let ids = members_pairs(st, user).await;
        // Nothing chosen is a choice of its own: the page then lists the poor sellers.
        std::iter::once(Choice {
            selected: given(&prompts.product).is_none(),
            label: "— my poor sellers —".into(),
            value: String::new(),
        })
        .chain(ids.into_iter().map(|(id, name)| Choice {
            selected: given(&prompts.product) == Some(id.as_str()),
            label: format!("{name} ({id})"),
            value: id,
        }))
        .collect()
    } else {
        Vec::new()
    };
    // The partner prompts, from one read of the partners the user may see.
    let [regions, tiers, types]: [Vec<Choice>; 3] = if channel_page && !user.is_partner_user() {
        let prompts_given = [&prompts.region, &prompts.tier, &prompts.partner_type];
        members_of(
            st,
            user,
            "partner",
            &["partner.region", "partner.tier", "partner.partner_type"],
        )
        .await
        .into_iter()
        .zip(prompts_given)
        .map(|(values, chosen)| choices(values, given(chosen)))
        .collect::<Vec<_>>()
        .try_into()
        .unwrap_or_default()
    } else {
        Default::default()
    };
    let t = PageTemplate {
        user_name: user.name.clone(),
        role: user.role.name().to_string(),
        nav: nav(Some(user)),
        current: page_id.path().to_string(),
        csrf: csrf.to_string(),
        title: page.title.clone(),
        headline: page.headline.clone(),
        notes: page.notes.clone(),
        panels,
        periods: if channel_page {
            periods(given(&prompts.period))
        } else {
            Vec::new()
        },
        period_text: given(&prompts.period).unwrap_or_default().to_string(),
        regions,
        tiers,
        types,
        lines: if channel_page {
            choices(
                members_of(st, user, "product", &["product.product_line"])
                    .await
                    .remove(0),
                given(&prompts.product_line),
            )
        } else {
            Vec::new()
        },
        show_weights: matches!(page_id, PageId::Scorecard | PageId::Underperformers),
        weights: given(&prompts.weights).unwrap_or_default().to_string(),
        show_products: page_id == PageId::MyPotential,
        products: product_choices,
        segment: given(&prompts.segment).unwrap_or_default().to_string(),
    };
    Template::render(&t).unwrap_or_else(|e| format!("template: {e}"))
}

async fn members_pairs(st: &AppState, user: &User) -> Vec<(String, String)> {
    let Ok((_, session)) = st.session().await else {
        return Vec::new();
    };
    let Ok(audience) = user.audience() else {
        return Vec::new();
    };
    let Ok(r) = st.engine.members(&session, "product", &audience).await else {
        return Vec::new();
    };
    r.rows()
        .iter()
        .map(|row| {
            (
                row.get("product.product_id").exact(),
                row.get("product.product_name").exact(),
            )
        })
        .collect()
}
