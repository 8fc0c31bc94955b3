//! Explore (`/explore`): any question of the model asked in the browser, with the CLI's names,
//! so that what works on one works on the other. The whole question lives in the URL
//! (`?metrics=closed_revenue,win_rate&by=partner.tier&filter=partner.region%3DEMEA&period=2025-Q3`),
//! so the back button, a bookmark and a shared link ask it again — in the opener's audience.
//! `/api/explore` answers the same question with the JSON API's versioned answer, and
//! `/export/explore` as CSV at full precision.

use std::collections::BTreeMap;

use askama::Template;
use prism_engine::api::{API_VERSION, QueryRequest, QueryResponse};
use prism_engine::{Query, QueryResult};
use serde::Serialize;

use crate::pages::{self, CellView};
use crate::store::User;
use crate::{AppState, WebError};

/// The first question on an empty Explore page: the scenario's first one.
const FIRST_QUESTION: &str =
    "metrics=closed_revenue&by=partner.partner_name&order=closed_revenue:desc&limit=20&chart=bar";

/// How an answer is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChartKind {
    /// One bar per row and metric.
    Bar,
    /// The second dimension's values stacked in each bar of the first.
    StackedBar,
    /// A line per metric (or per value of the second dimension).
    Line,
    /// Lines with the area under them filled, stacked.
    Area,
    /// The first metric's share of each row.
    Pie,
    /// A point per row: the first metric across, the second up (partners by revenue and
    /// satisfaction, say).
    Scatter,
    /// No chart: the table only.
    Table,
}

impl ChartKind {
    const ALL: [ChartKind; 7] = [
        ChartKind::Bar,
        ChartKind::StackedBar,
        ChartKind::Line,
        ChartKind::Area,
        ChartKind::Pie,
        ChartKind::Scatter,
        ChartKind::Table,
    ];

    fn name(self) -> &'static str {
        match self {
            ChartKind::Bar => "bar",
            ChartKind::StackedBar => "stacked",
            ChartKind::Line => "line",
            ChartKind::Area => "area",
            ChartKind::Pie => "pie",
            ChartKind::Scatter => "scatter",
            ChartKind::Table => "table",
        }
    }

    fn label(self) -> &'static str {
        match self {
            ChartKind::Bar => "Bar",
            ChartKind::StackedBar => "Stacked bar",
            ChartKind::Line => "Line",
            ChartKind::Area => "Area",
            ChartKind::Pie => "Pie",
            ChartKind::Scatter => "Scatter (two metrics)",
            ChartKind::Table => "Table only",
        }
    }
}

/// A question as the URL gives it. Lists may be comma-separated or repeated
/// (`metrics=a,b` or `metrics=a&metrics=b`); each `filter` is one `DIMENSION=VALUE` (it may hold
/// commas). Blank values are ignored, so an empty form field asks nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Question {
    /// Metrics and derived forms, as the URL gives them.
    pub metrics: Vec<String>,
    /// Dimensions.
    pub by: Vec<String>,
    /// Filters (`partner.region=EMEA`).
    pub filters: Vec<String>,
    /// The period as typed.
    pub period: Option<String>,
    /// Orders (`closed_revenue:desc`).
    pub order: Vec<String>,
    /// At most this many rows, as typed.
    pub limit: Option<String>,
    /// The chart: bar, stacked, line, area, pie, scatter or table.
    pub chart: Option<String>,
}

impl Question {
    /// Reads a URL's query; nothing asked means the first question.
    pub fn from_query_string(raw: Option<&str>) -> Question {
        let raw = raw.filter(|r| !r.trim().is_empty());
        let asked = Question::parse(raw.unwrap_or(FIRST_QUESTION));
        if asked.metrics.is_empty() && asked.by.is_empty() && raw.is_some() {
            // Only a chart or a period: keep them on the first question.
            let mut first = Question::parse(FIRST_QUESTION);
            first.period = asked.period.or(first.period);
            first.chart = asked.chart.or(first.chart);
            return first;
        }
        asked
    }

    /// Reads a URL's query as it is: nothing asked asks nothing (see `from_query_string`).
    pub(crate) fn parse(raw: &str) -> Question {
        let mut q = Question::default();
        for (k, v) in form_urlencoded(raw) {
            let v = v.trim().to_string();
            if v.is_empty() {
                continue;
            }
            let list = |v: &str| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
            };
            match k.as_str() {
                "metrics" => q.metrics.extend(list(&v)),
                "by" => q.by.extend(list(&v)),
                "order" => q.order.extend(list(&v)),
                "filter" => q.filters.push(v),
                // A textarea of filters, one per line.
                "filters" => q.filters.extend(
                    v.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_string),
                ),
                "period" => q.period = Some(v),
                "limit" => q.limit = Some(v),
                "chart" => q.chart = Some(v),
                // Anything else (a form's button) asks nothing.
                _ => {}
            }
        }
        q
    }

    /// The question of the engine's versioned request (the JSON API's), drawn as `chart`;
    /// a request of another API version is refused.
    pub fn from_request(
        request: &QueryRequest,
        chart: Option<String>,
    ) -> Result<Question, WebError> {
        request.to_query()?;
        Ok(Question {
            metrics: request.metrics.clone(),
            by: request.by.clone(),
            filters: request.filters.clone(),
            period: request.period.clone(),
            order: request.order.clone(),
            limit: request.limit.map(|l| l.to_string()),
            chart,
        })
    }

    /// The engine's versioned request (what a scheduled report keeps of a saved question).
    pub fn request(&self) -> Result<QueryRequest, WebError> {
        let limit = match &self.limit {
            None => None,
            Some(l) => Some(l.parse::<usize>().map_err(|_| {
                WebError::BadRequest(format!("limit {l:?}: expected a whole number of rows"))
            })?),
        };
        Ok(QueryRequest {
            api_version: API_VERSION,
            metrics: self.metrics.clone(),
            by: self.by.clone(),
            filters: self.filters.clone(),
            period: self.period.clone(),
            order: self.order.clone(),
            limit,
        })
    }

    /// The query, every text form parsed by the same parser as the CLI's and the JSON API's.
    fn query(&self) -> Result<Query, WebError> {
        Ok(self.request()?.to_query()?)
    }

    /// Whether the question can be asked at all: its forms parse and it compiles against the
    /// model (nothing is run).
    pub fn check(&self, st: &AppState, user: &User) -> Result<(), WebError> {
        st.engine.compile(&self.query()?, &user.audience()?)?;
        self.chart_kind()?;
        Ok(())
    }

    /// How the answer is drawn, or why it cannot be drawn so.
    pub(crate) fn chart_kind(&self) -> Result<ChartKind, WebError> {
        let kind = self.named_chart()?;
        if kind == ChartKind::Scatter && self.metrics.len() < 2 {
            return Err(WebError::BadRequest(format!(
                "chart scatter: needs two metrics, the first across and the second up; this question has {}",
                self.metrics.len()
            )));
        }
        Ok(kind)
    }

    fn named_chart(&self) -> Result<ChartKind, WebError> {
        match self.chart.as_deref() {
            None => Ok(ChartKind::Bar),
            Some(c) => ChartKind::ALL
                .into_iter()
                .find(|k| k.name() == c)
                .ok_or_else(|| {
                    let names: Vec<&str> = ChartKind::ALL.iter().map(|k| k.name()).collect();
                    WebError::BadRequest(format!(
                        "chart {c:?}: one of {}{}",
                        names.join(", "),
                        prism_model::did_you_mean(c, names.iter().copied())
                    ))
                }),
        }
    }

    /// The question as a URL query, in its canonical spelling.
    pub fn to_query_string(&self) -> String {
        let mut parts = Vec::new();
        let mut push = |k: &str, v: &str| parts.push(format!("{k}={}", encode(v)));
        if !self.metrics.is_empty() {
            push("metrics", &self.metrics.join(","));
        }
        if !self.by.is_empty() {
            push("by", &self.by.join(","));
        }
        for f in &self.filters {
            push("filter", f);
        }
        if let Some(p) = &self.period {
            push("period", p);
        }
        if !self.order.is_empty() {
            push("order", &self.order.join(","));
        }
        if let Some(l) = &self.limit {
            push("limit", l);
        }
        if let Some(c) = &self.chart {
            push("chart", c);
        }
        parts.join("&")
    }
}

/// `key=value` pairs of a URL query, decoded.
fn form_urlencoded(raw: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A value for a URL query; `:` and `,` stay readable (`closed_revenue:desc`, `a,b`).
fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace("%3A", ":")
        .replace("%2C", ",")
}

/// An answer to a question, asked in the user's audience.
pub struct Answer {
    /// The engine's answer.
    pub result: QueryResult,
    /// With two dimensions: the first metric with the second dimension across, and totals.
    pub pivot: Option<Pivot>,
}

/// A pivot table: rows of the first dimension, columns of the second, and the totals each
/// asked of the engine (a ratio's total is not the sum of its cells).
pub struct Pivot {
    /// The metric shown.
    pub metric: String,
    /// The dimension down the rows.
    pub row_dimension: String,
    /// The second dimension's values, across.
    pub columns: Vec<String>,
    /// Each row: its value, its cells, its total.
    pub rows: Vec<(String, Vec<String>, String)>,
    /// Each column's total.
    pub totals: Vec<String>,
    /// The total of everything.
    pub grand_total: String,
}

/// Asks a question in the user's audience.
pub async fn answer(st: &AppState, user: &User, question: &Question) -> Result<Answer, WebError> {
    let audience = user.audience()?;
    let query = question.query()?;
    question.chart_kind()?;
    let (_, session) = st.session().await?;
    let result = st.engine.run(&session, &query, &audience).await?;
    let pivot = match (query.by.as_slice(), query.metrics.first()) {
        ([across_rows, across_columns], Some(metric)) if !metric.contains(':') => {
            let ask = |by: Vec<String>| Query {
                metrics: vec![metric.clone()],
                by,
                order: Vec::new(),
                limit: None,
                ..query.clone()
            };
            let (rows_only, columns_only, neither) = (
                ask(vec![across_rows.clone()]),
                ask(vec![across_columns.clone()]),
                ask(Vec::new()),
            );
            let (by_row, by_column, grand) = tokio::try_join!(
                st.engine.run(&session, &rows_only, &audience),
                st.engine.run(&session, &columns_only, &audience),
                st.engine.run(&session, &neither, &audience),
            )?;
            Some(pivot(
                metric,
                [across_rows, across_columns],
                &result,
                [&by_row, &by_column, &grand],
            ))
        }
        _ => None,
    };
    Ok(Answer { result, pivot })
}

/// For a partner's user, its own rates and averages among the question's metrics beside the
/// channel's, over the question's period — the analysis' benchmark, with its rules: each
/// channel figure over at least 5 partners, one calendar quarter at a time, rates and averages
/// only, and neither the question's filters nor its cuts (two differently cut channel figures
/// could be subtracted). None for other users, and for a question of totals only.
pub async fn benchmark(
    st: &AppState,
    user: &User,
    question: &Question,
) -> Option<Result<prism_analyses::benchmarks::Benchmarks, WebError>> {
    let own = user.partners.first().filter(|_| user.is_partner_user())?;
    let metrics: Vec<&str> = question
        .metrics
        .iter()
        .map(String::as_str)
        .filter(|m| {
            prism_analyses::benchmarks::METRICS
                .iter()
                .any(|(name, _)| name == m)
        })
        .collect();
    if metrics.is_empty() {
        return None;
    }
    let compared = async {
        let period = question.query()?.period;
        let (_, session) = st.session().await?;
        let cx = prism_analyses::Context {
            engine: &st.engine,
            session: &session,
            audience: user.audience()?,
            period,
        };
        Ok(prism_analyses::benchmarks::benchmarks_of(&cx, own, &metrics).await?)
    };
    Some(compared.await)
}

/// The pivot of `metric` by two dimensions (rows, columns), from the answer and the totals
/// asked by the rows' dimension, by the columns', and by neither.
fn pivot(
    metric: &str,
    [row_dimension, column_dimension]: [&str; 2],
    result: &QueryResult,
    [by_row, by_column, grand]: [&QueryResult; 3],
) -> Pivot {
    let mut cells: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut columns: Vec<String> = Vec::new();
    let mut row_keys: Vec<String> = Vec::new();
    for r in result.rows() {
        let (key, column) = (
            r.get(row_dimension).exact(),
            r.get(column_dimension).exact(),
        );
        if !row_keys.contains(&key) {
            row_keys.push(key.clone());
        }
        if !columns.contains(&column) {
            columns.push(column.clone());
        }
        cells.insert((key, column), r.get(metric).exact());
    }
    columns.sort();
    // Each total by its member, read once.
    let totals_by = |totals: &QueryResult, dimension: &str| -> BTreeMap<String, String> {
        totals
            .rows()
            .iter()
            .map(|r| (r.get(dimension).exact(), r.get(metric).exact()))
            .collect()
    };
    let (row_totals, column_totals) = (
        totals_by(by_row, row_dimension),
        totals_by(by_column, column_dimension),
    );
    let total_of =
        |totals: &BTreeMap<String, String>, key: &str| totals.get(key).cloned().unwrap_or_default();
    let rows = row_keys
        .iter()
        .map(|k| {
            let values = columns
                .iter()
                .map(|c| {
                    cells
                        .get(&(k.clone(), c.clone()))
                        .cloned()
                        .unwrap_or_default()
                })
                .collect();
            (k.clone(), values, total_of(&row_totals, k))
        })
        .collect();
    let totals = columns
        .iter()
        .map(|c| total_of(&column_totals, c))
        .collect();
    Pivot {
        metric: metric.to_string(),
        row_dimension: row_dimension.to_string(),
        columns,
        rows,
        totals,
        grand_total: grand.first_row().get(metric).exact(),
    }
}

/// The chart's data, as `web/src/app.js` draws it.
#[derive(Serialize)]
struct ChartSpec {
    kind: &'static str,
    stack: bool,
    area: bool,
    categories: Vec<String>,
    series: Vec<pages::Series>,
}

/// The chart of an answer: categories are the first dimension's values (the dimensions joined,
/// when there are more, unless the chart stacks the second); series are the metrics.
fn chart(kind: ChartKind, result: &QueryResult, dimensions: usize) -> Option<ChartSpec> {
    if kind == ChartKind::Table || result.columns.len() <= dimensions {
        return None;
    }
    // An answer's columns are its dimensions, then its metrics (and a benchmark's count).
    let names: Vec<&str> = result.columns.iter().map(|c| c.name.as_str()).collect();
    let rows = result.rows();
    let stacked = matches!(kind, ChartKind::StackedBar | ChartKind::Area);
    let metrics = names[dimensions..]
        .iter()
        .filter(|n| **n != "benchmark_partners")
        .count();
    if kind == ChartKind::Scatter && metrics < 2 {
        return None;
    }
    let (categories, series) = if stacked && dimensions == 2 {
        stacked_series(&rows, names[0], names[1], names[2])
    } else {
        metric_series(&rows, &names, dimensions)
    };
    Some(ChartSpec {
        kind: match kind {
            ChartKind::Bar | ChartKind::StackedBar => "bar",
            ChartKind::Line | ChartKind::Area => "line",
            ChartKind::Pie => "pie",
            // The first two series are the points' two coordinates.
            ChartKind::Scatter => "scatter",
            ChartKind::Table => unreachable!("no chart"),
        },
        // Only the second dimension's values add up in a stack: metrics of different units do not.
        stack: stacked && dimensions == 2,
        area: kind == ChartKind::Area,
        categories,
        series,
    })
}

/// A stacked chart's categories (the first dimension's values) and series (the second
/// dimension's values, each with the metric's values).
fn stacked_series(
    rows: &[prism_engine::Row],
    first: &str,
    second: &str,
    metric: &str,
) -> (Vec<String>, Vec<pages::Series>) {
    let mut categories: Vec<String> = Vec::new();
    let mut series_names: Vec<String> = Vec::new();
    let mut values: BTreeMap<(String, String), Option<f64>> = BTreeMap::new();
    for r in rows {
        let (c, n) = (r.get(first).exact(), r.get(second).exact());
        if !categories.contains(&c) {
            categories.push(c.clone());
        }
        if !series_names.contains(&n) {
            series_names.push(n.clone());
        }
        values.insert((c, n), r.number(metric));
    }
    let series = series_names
        .iter()
        .map(|n| pages::Series {
            name: n.clone(),
            values: categories
                .iter()
                .map(|c| values.get(&(c.clone(), n.clone())).copied().flatten())
                .collect(),
            ..Default::default()
        })
        .collect();
    (categories, series)
}

/// A chart's categories (the dimensions' values joined, or "all" without one) and a series per
/// metric.
fn metric_series(
    rows: &[prism_engine::Row],
    names: &[&str],
    dimensions: usize,
) -> (Vec<String>, Vec<pages::Series>) {
    let categories = rows
        .iter()
        .map(|r| {
            names[..dimensions]
                .iter()
                .map(|d| r.get(d).exact())
                .collect::<Vec<_>>()
                .join(" · ")
        })
        .collect::<Vec<_>>();
    let series = names[dimensions..]
        .iter()
        .filter(|n| **n != "benchmark_partners")
        .map(|n| pages::Series {
            name: n.to_string(),
            values: rows.iter().map(|r| r.number(n)).collect(),
            ..Default::default()
        })
        .collect();
    (
        if dimensions == 0 {
            vec!["all".to_string()]
        } else {
            categories
        },
        series,
    )
}

/// A choice of a select or a checkbox.
pub(crate) struct Choice {
    pub(crate) value: String,
    pub(crate) label: String,
    pub(crate) title: String,
    pub(crate) selected: bool,
}

/// The metrics of one subject area.
pub(crate) struct MetricGroup {
    pub(crate) title: String,
    pub(crate) metrics: Vec<Choice>,
}

/// The Explore page.
#[derive(Template)]
#[template(path = "explore.html")]
pub(crate) struct ExplorePage {
    pub(crate) title: String,
    pub(crate) user_name: String,
    pub(crate) role: String,
    pub(crate) csrf: String,
    pub(crate) nav: Vec<(String, String)>,
    pub(crate) groups: Vec<MetricGroup>,
    /// Three dimension selects: rows, columns (a pivot), and one more.
    pub(crate) dimension_slots: Vec<Vec<Choice>>,
    pub(crate) filters: Vec<String>,
    pub(crate) suggestions: Vec<String>,
    pub(crate) period: String,
    pub(crate) order: String,
    pub(crate) limit: String,
    pub(crate) charts: Vec<Choice>,
    pub(crate) error: String,
    pub(crate) link: String,
    /// Whom a saved question may be shared with: nobody, everyone, or a role.
    pub(crate) share_choices: Vec<&'static str>,
    /// For a partner's user: what its benchmark against the channel says as a whole.
    pub(crate) benchmark_note: String,
    /// Its rows: metric, the partner's figure, the channel's, partners behind it, verdict.
    pub(crate) benchmark_rows: Vec<Vec<CellView>>,
    /// The saved question this page was opened from, when the user may save over it (id, name).
    pub(crate) saved: Option<(i64, String)>,
    /// The question's metrics (name, label), which an alert's condition may watch.
    pub(crate) alert_metrics: Vec<(String, String)>,
    pub(crate) chart_json: String,
    pub(crate) header: Vec<String>,
    pub(crate) rows: Vec<Vec<CellView>>,
    pub(crate) pivot_title: String,
    pub(crate) pivot_header: Vec<String>,
    pub(crate) pivot_rows: Vec<Vec<CellView>>,
}

/// Dimension values worth offering as filters: few values each, seen in the user's audience;
/// each dimension's members read once.
const SUGGESTED: &[(&str, &[&str])] = &[
    (
        "partner",
        &["partner.region", "partner.tier", "partner.partner_type"],
    ),
    ("product", &["product.product_line"]),
    ("customer", &["customer.industry", "customer.size_band"]),
];

/// An answer as a page shows it: its chart (none when the question asks for the table only, or
/// the answer cannot be drawn), its header in the model's labels, and its cells formatted for
/// people, a partner's id leading to its page.
pub(crate) struct AnswerView {
    pub chart_json: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<CellView>>,
}

pub(crate) fn answer_view(
    model: &prism_model::Model,
    question: &Question,
    kind: ChartKind,
    result: &QueryResult,
) -> AnswerView {
    let dimensions = question.by.len();
    let chart_json = chart(kind, result, dimensions)
        .map(|mut c| {
            pages::labelled(model, &mut c.series);
            serde_json::to_string(&c).unwrap_or_default()
        })
        .unwrap_or_default();
    let names: Vec<String> = result.columns.iter().map(|c| c.name.clone()).collect();
    let header = names.iter().map(|n| model.label(n)).collect();
    let rows = result
        .rows()
        .iter()
        .map(|r| {
            r.values()
                .iter()
                .zip(&names)
                .enumerate()
                .map(|(i, (v, name))| {
                    let href = if i < dimensions {
                        drill(question, name, &v.exact())
                    } else {
                        String::new()
                    };
                    pages::cell_view(model, name, &v.exact(), href)
                })
                .collect()
        })
        .collect();
    AnswerView {
        chart_json,
        header,
        rows,
    }
}

/// Where a cell of a dimension leads: a partner's id to its page (refused there if not the
/// user's); a time to the same question over that period, a grain finer; any other member to
/// the same question filtered to it (and no longer cut by it, when other cuts remain). Nothing
/// for a value the filter syntax cannot say.
fn drill(question: &Question, dimension: &str, value: &str) -> String {
    if value.is_empty() || value.contains('|') {
        return String::new();
    }
    if dimension == "partner.partner_id" && value != "(direct)" {
        return format!("/partners/{}", pages::url(value));
    }
    let mut drilled = question.clone();
    let finer = match dimension {
        "time.year" => Some("time.quarter"),
        "time.quarter" => Some("time.month"),
        "time.month" => Some("time.day"),
        "time.day" => None,
        _ => {
            drilled
                .filters
                .retain(|f| f.split(['=', '!', '<', '>']).next() != Some(dimension));
            drilled.filters.push(format!("{dimension}={value}"));
            if drilled.by.len() > 1 {
                drilled.by.retain(|d| d != dimension);
            }
            return format!("/explore?{}", drilled.to_query_string());
        }
    };
    drilled.period = Some(value.to_string());
    drilled.by.retain(|d| d != dimension);
    if let Some(finer) = finer {
        drilled.by.insert(0, finer.to_string());
    }
    // An order or a limit on the coarser grain would cut the finer one short.
    drilled.limit = None;
    format!("/explore?{}", drilled.to_query_string())
}

/// The filters the form suggests as one types: `dimension=value` for the members the user
/// sees of the suggested attributes.
async fn suggestions(st: &AppState, user: &User) -> Vec<String> {
    let mut suggestions = Vec::new();
    for (dimension, attributes) in SUGGESTED {
        let values = pages::members_of(st, user, dimension, attributes).await;
        for (name, values) in attributes.iter().zip(values) {
            for v in values.into_iter().filter(|v| !v.is_empty()) {
                suggestions.push(format!("{name}={v}"));
            }
        }
    }
    suggestions
}

/// The kinds of chart to pick from, `kind` selected.
fn chart_choices(kind: ChartKind) -> Vec<Choice> {
    ChartKind::ALL
        .iter()
        .map(|k| Choice {
            value: k.name().into(),
            label: k.label().into(),
            title: String::new(),
            selected: *k == kind,
        })
        .collect()
}

/// Renders the page: the form with the question filled in, and its answer or why there is none.
pub async fn render(
    st: &AppState,
    user: &User,
    csrf: &str,
    question: &Question,
    answer: Result<&Answer, &WebError>,
    saved: Option<&crate::store::SavedQuestion>,
    benchmark: Option<Result<prism_analyses::benchmarks::Benchmarks, WebError>>,
) -> String {
    let model = &st.engine.model;
    let groups = metric_groups(model, question);
    let dimension_slots = dimension_slots(model, question);
    let suggestions = suggestions(st, user).await;
    let kind = question.chart_kind().unwrap_or(ChartKind::Bar);
    let charts = chart_choices(kind);
    let mut filters = question.filters.clone();
    filters.resize(filters.len().max(3), String::new());
    let link = question.to_query_string();
    let (mut error, mut chart_json, mut header, mut rows) =
        (String::new(), String::new(), Vec::new(), Vec::new());
    let (mut pivot_title, mut pivot_header, mut pivot_rows) =
        (String::new(), Vec::new(), Vec::new());
    match answer {
        Err(e) => error = e.to_string(),
        Ok(a) => {
            let view = answer_view(model, question, kind, &a.result);
            (chart_json, header, rows) = (view.chart_json, view.header, view.rows);
            if let Some(p) = &a.pivot {
                (pivot_title, pivot_header, pivot_rows) = pivot_view(model, question, p);
            }
        }
    }
    // An answer that asks nothing cannot be watched.
    let alert_metrics: Vec<(String, String)> = question
        .metrics
        .iter()
        .filter(|_| error.is_empty())
        .map(|m| (m.clone(), st.engine.model.label(m)))
        .collect();
    let (benchmark_note, benchmark_rows) = match benchmark {
        None => (String::new(), Vec::new()),
        Some(Err(e)) => (format!("no channel figures: {e}"), Vec::new()),
        Some(Ok(b)) => benchmark_view(model, &b),
    };
    ExplorePage {
        title: "Explore".into(),
        user_name: user.name.clone(),
        role: user.role.name().into(),
        csrf: csrf.into(),
        nav: pages::nav(Some(user)),
        groups,
        dimension_slots,
        filters,
        suggestions,
        period: question.period.clone().unwrap_or_default(),
        order: question.order.join(","),
        limit: question.limit.clone().unwrap_or_default(),
        charts,
        error,
        link,
        share_choices: crate::store::share_choices(),
        saved: saved.map(|q| (q.id, q.name.clone())),
        benchmark_note,
        benchmark_rows,
        alert_metrics,
        chart_json,
        header,
        rows,
        pivot_title,
        pivot_header,
        pivot_rows,
    }
    .render()
    .unwrap_or_else(|e| format!("template: {e}"))
}

/// The metrics users may pick, grouped by subject area: the scenario's four first, in the
/// order the business reads them.
fn metric_groups(model: &prism_model::Model, question: &Question) -> Vec<MetricGroup> {
    let mut groups: Vec<MetricGroup> = Vec::new();
    for m in model.metrics.values().filter(|m| !m.hidden) {
        let title = model
            .facts
            .get(&m.fact)
            .map_or_else(|| m.fact.clone(), |f| f.subject.clone());
        let choice = Choice {
            value: m.name.clone(),
            label: m.label.clone(),
            title: m.description.clone(),
            selected: question
                .metrics
                .iter()
                .any(|q| q.split(':').next() == Some(&m.name)),
        };
        match groups.iter_mut().find(|g| g.title == title) {
            Some(g) => g.metrics.push(choice),
            None => groups.push(MetricGroup {
                title,
                metrics: vec![choice],
            }),
        }
    }
    let order = ["Sales", "Pipeline", "Service", "Satisfaction"];
    groups.sort_by_key(|g| {
        order
            .iter()
            .position(|o| *o == g.title)
            .unwrap_or(order.len())
    });
    groups
}

/// The three dimension pickers, each with the question's choice in its place selected.
fn dimension_slots(model: &prism_model::Model, question: &Question) -> Vec<Vec<Choice>> {
    let names = model.dimension_names();
    (0..3)
        .map(|slot| {
            let chosen = question.by.get(slot);
            std::iter::once(Choice {
                value: String::new(),
                label: "—".into(),
                title: String::new(),
                selected: chosen.is_none(),
            })
            .chain(names.iter().map(|n| Choice {
                value: n.clone(),
                label: n.clone(),
                title: String::new(),
                selected: chosen == Some(n),
            }))
            .collect()
        })
        .collect()
}

/// The pivot table's title, header and rows: a row per member of the first dimension, a column
/// per member of the second, a total at the end of each row and a row of totals.
fn pivot_view(
    model: &prism_model::Model,
    question: &Question,
    p: &Pivot,
) -> (String, Vec<String>, Vec<Vec<CellView>>) {
    let title = format!(
        "{} by {} across {}",
        model.label(&p.metric),
        model.label(&p.row_dimension),
        model.label(&question.by[1])
    );
    let header = std::iter::once(model.label(&p.row_dimension))
        .chain(p.columns.iter().cloned())
        .chain(std::iter::once("Total".to_string()))
        .collect();
    let cell = |v: &str, is_figure: bool| {
        pages::cell_view(
            model,
            if is_figure { &p.metric } else { "" },
            v,
            String::new(),
        )
    };
    let mut rows: Vec<Vec<CellView>> = p
        .rows
        .iter()
        .map(|(k, values, total)| {
            std::iter::once(cell(k, false))
                .chain(values.iter().map(|v| cell(v, true)))
                .chain(std::iter::once(cell(total, true)))
                .collect()
        })
        .collect();
    rows.push(
        std::iter::once(cell("Total", false))
            .chain(p.totals.iter().map(|v| cell(v, true)))
            .chain(std::iter::once(cell(&p.grand_total, true)))
            .collect(),
    );
    (title, header, rows)
}

/// The channel benchmark beside a partner user's answer: its headline and a row per metric,
/// a withheld figure titled with why.
fn benchmark_view(
    model: &prism_model::Model,
    b: &prism_analyses::benchmarks::Benchmarks,
) -> (String, Vec<Vec<CellView>>) {
    let rows = b
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let figure = |v: &prism_analyses::Value| {
                pages::cell_view(model, r.metric, &v.exact(), String::new())
            };
            let text = |t: String| pages::cell_view(model, "", &t, String::new());
            let mut channel = figure(&r.channel);
            // Withheld, and why: the benchmark's reason, not the metric's own.
            if let Some(why) = prism_analyses::Table::missing_reason(b, i, "channel") {
                channel.title = why;
            }
            vec![
                text(model.label(r.metric)),
                figure(&r.partner),
                channel,
                text(r.channel_partners.to_string()),
                text(r.verdict.unwrap_or("—").to_string()),
            ]
        })
        .collect();
    (prism_analyses::Table::headline(b).join("; "), rows)
}

/// How an answer is downloaded: `format=csv` (the default) or `format=xlsx`.
pub fn download_format(raw: Option<&str>) -> Result<&'static str, WebError> {
    let asked = raw
        .map(form_urlencoded)
        .unwrap_or_default()
        .into_iter()
        .rev()
        .find(|(k, _)| k == "format")
        .map(|(_, v)| v);
    match asked.as_deref().map(str::trim) {
        None | Some("") | Some("csv") => Ok("csv"),
        Some("xlsx") => Ok("xlsx"),
        Some(other) => Err(WebError::BadRequest(format!(
            "format {other:?}: csv or xlsx"
        ))),
    }
}

/// The answer as an Excel workbook: a header row of labels, frozen; money as numbers in the
/// model's currency format, rates as percentages, counts as whole numbers, days as dates, the
/// rest as text. (A workbook holds numbers as doubles: what it shows is exact to the cent.)
pub fn xlsx(model: &prism_model::Model, result: &QueryResult) -> Result<Vec<u8>, WebError> {
    workbook(model, &[("Answer", result)])
}

/// Answers as one workbook, a sheet each, named by its title (cut to Excel's 31 characters,
/// without the characters Excel refuses, and made unique), each written as `xlsx` writes one.
pub fn workbook(
    model: &prism_model::Model,
    sheets: &[(&str, &QueryResult)],
) -> Result<Vec<u8>, WebError> {
    use prism_model::Format as Kind;
    use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
    let failed =
        |e: rust_xlsxwriter::XlsxError| WebError::Internal(format!("writing the workbook: {e}"));
    let symbol = prism_engine::display::currency_symbol(&model.currency);
    let money = Format::new().set_num_format(format!("\"{symbol}\"#,##0.00;-\"{symbol}\"#,##0.00"));
    let (percent, integer, number, date, header) = (
        Format::new().set_num_format("0.0%"),
        Format::new().set_num_format("#,##0"),
        Format::new().set_num_format("#,##0.00"),
        Format::new().set_num_format("yyyy-mm-dd"),
        Format::new().set_bold(),
    );
    let mut book = Workbook::new();
    let mut names: Vec<String> = Vec::new();
    for (title, result) in sheets {
        let sheet = book.add_worksheet();
        sheet.set_name(sheet_name(title, &names)).map_err(failed)?;
        names.push(sheet.name());
        for (c, column) in result.columns.iter().enumerate() {
            sheet
                .write_string_with_format(0, c as u16, model.label(&column.name), &header)
                .map_err(failed)?;
        }
        for (r, row) in result.rows().iter().enumerate() {
            let r = r as u32 + 1;
            for (c, (cell, column)) in row.values().iter().zip(&result.columns).enumerate() {
                let c = c as u16;
                if cell.is_missing() {
                    continue;
                }
                let (value, figure) = (&cell.exact(), cell.number());
                match (model.column_format(&column.name), figure) {
                    (Some((Kind::Money, _)), Some(x)) => {
                        sheet.write_number_with_format(r, c, x, &money)
                    }
                    (Some((Kind::Ratio, _)), Some(x)) => {
                        sheet.write_number_with_format(r, c, x, &percent)
                    }
                    (Some((Kind::Percent, _)), Some(x)) => {
                        sheet.write_number_with_format(r, c, x / 100.0, &percent)
                    }
                    (Some((Kind::Integer, _)), Some(x)) => {
                        sheet.write_number_with_format(r, c, x, &integer)
                    }
                    (Some((Kind::Number, _)), Some(x)) => {
                        sheet.write_number_with_format(r, c, x, &number)
                    }
                    _ if column.name == "time.day" => match ExcelDateTime::parse_from_str(value) {
                        Ok(d) => sheet.write_date_with_format(r, c, &d, &date),
                        Err(_) => sheet.write_string(r, c, value),
                    },
                    _ => sheet.write_string(r, c, value),
                }
                .map_err(failed)?;
            }
        }
        sheet.set_freeze_panes(1, 0).map_err(failed)?;
        sheet.autofit();
    }
    book.save_to_buffer().map_err(failed)
}

/// A sheet's name Excel takes: at most 31 characters, none of `[]:*?/\`, not empty, and not
/// one of `taken` (a number is added).
fn sheet_name(title: &str, taken: &[String]) -> String {
    let clean: String = title
        .chars()
        .map(|c| if "[]:*?/\\".contains(c) { ' ' } else { c })
        .collect();
    let clean = clean.trim();
    let base: String = if clean.is_empty() { "Answer" } else { clean }
        .chars()
        .take(26)
        .collect();
    let mut name = base.clone();
    let mut n = 1;
    while taken.iter().any(|t| t.eq_ignore_ascii_case(&name)) {
        n += 1;
        name = format!("{base} ({n})");
    }
    name
}

/// The JSON API's answer.
pub fn response(answer: &Answer) -> QueryResponse {
    QueryResponse::from_result(&answer.result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_drills_to_its_partner_a_finer_grain_or_a_filter() {
        let q = Question::from_query_string(Some(
            "metrics=closed_revenue&by=partner.tier,time.quarter&filter=partner.tier!=Gold&period=2024&limit=5",
        ));
        assert_eq!(drill(&q, "partner.partner_id", "P-1"), "/partners/P-1");
        // A member: filtered to it (any filter on it before replaced), no longer cut by it.
        assert_eq!(
            drill(&q, "partner.tier", "Silver"),
            "/explore?metrics=closed_revenue&by=time.quarter&filter=partner.tier%3DSilver&period=2024&limit=5"
        );
        // A quarter: the question over that quarter, by month, without the limit.
        assert_eq!(
            drill(&q, "time.quarter", "2024-Q1"),
            "/explore?metrics=closed_revenue&by=time.month,partner.tier&filter=partner.tier%21%3DGold&period=2024-Q1"
        );
        // The only cut stays a cut; direct sales and values the filter syntax cannot say
        // lead nowhere but a filter that says them.
        let one = Question::from_query_string(Some("metrics=closed_revenue&by=partner.partner_id"));
        assert_eq!(
            drill(&one, "partner.partner_id", "(direct)"),
            "/explore?metrics=closed_revenue&by=partner.partner_id&filter=partner.partner_id%3D%28direct%29"
        );
        assert_eq!(drill(&one, "partner.partner_name", "A|B"), "");
        assert_eq!(drill(&one, "partner.partner_name", ""), "");
    }

    #[test]
    fn a_question_reads_lists_either_way_and_filters_one_by_one() {
        let q = Question::from_query_string(Some(
            "metrics=closed_revenue,win_rate&by=partner.tier&by=time.quarter&filter=partner.region%3DEMEA&filter=customer.industry%3DRetail%2C+Trade&period=2026-Q3&order=closed_revenue:desc&limit=20&chart=bar&ask=",
        ));
        assert_eq!(q.metrics, ["closed_revenue", "win_rate"]);
        assert_eq!(q.by, ["partner.tier", "time.quarter"]);
        assert_eq!(
            q.filters,
            ["partner.region=EMEA", "customer.industry=Retail, Trade"]
        );
        assert_eq!(q.period.as_deref(), Some("2026-Q3"));
        assert_eq!(q.limit.as_deref(), Some("20"));
        // Written back, it reads the same.
        assert_eq!(Question::from_query_string(Some(&q.to_query_string())), q);
    }

    #[test]
    fn an_empty_page_asks_the_first_question_and_blank_fields_ask_nothing() {
        let first = Question::from_query_string(None);
        assert_eq!(first.metrics, ["closed_revenue"]);
        assert_eq!(first.by, ["partner.partner_name"]);
        let blank = Question::from_query_string(Some("metrics=win_rate&by=&by=&filters=&period="));
        assert!(blank.by.is_empty() && blank.filters.is_empty() && blank.period.is_none());
    }

    #[test]
    fn a_sheet_is_named_as_excel_takes_it() {
        // Excel refuses []:*?/\ in a name, more than 31 characters, and a name twice (in any case).
        assert_eq!(
            sheet_name("Revenue: Q1/Q2 [EMEA]", &[]),
            "Revenue  Q1 Q2  EMEA"
        );
        assert_eq!(sheet_name("  ", &[]), "Answer");
        let long = "Closed revenue by partner tier and region";
        assert_eq!(sheet_name(long, &[]), "Closed revenue by partner ");
        let taken = vec!["CSAT".to_string()];
        assert_eq!(sheet_name("csat", &taken), "csat (2)");
        assert!(sheet_name(long, &[sheet_name(long, &[])]).chars().count() <= 31);
    }
}
