//! Delivers: alerts that tell people the news instead of waiting for them to open a page.
//!
//! An alert belongs to a user and watches either a question of the semantic model (a metric,
//! derived forms included, cut by dimensions, against a threshold) or one of the analyses'
//! lists (under-performers, high-risk accounts) being non-empty. It is evaluated in its
//! owner's audience — the engine's scope, the same as every page — after each load that
//! commits a warehouse version, or on a cron schedule in the owner's time zone. When its
//! condition starts to hold, its news is queued in the same store transaction that marks it
//! firing (see `prism_web::store::alerts`), so a restart, a retry or a second evaluation never
//! queues it twice; it fires again only after it has cleared. The queued news is sent to the
//! owner's inbox, the owner's e-mail address, or a webhook signed with the alert's own key,
//! retried with growing waits, and every attempt ends in the delivery log.
#![warn(missing_docs)]

mod schedule;
mod send;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use futures::StreamExt as _;
use prism_analyses::{AnalysisError, Context};
use prism_engine::api::{API_VERSION, QueryRequest};
use prism_engine::{Audience, Engine, EngineError, Period, Session};
use prism_web::AppState;
use prism_web::store::{Alert, Attachment, NewAlert, News, Store, StoreError};
use serde::{Deserialize, Serialize};

pub use schedule::Schedule;
pub use send::{Outbound, Smtp};

/// Why an alert could not be made, evaluated or sent.
#[derive(Debug, thiserror::Error)]
pub enum DeliversError {
    /// What the user gave is wrong; the message says which part and why.
    #[error("{0}")]
    Invalid(String),
    /// The app's store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine refused or failed a question.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// An analysis refused or failed.
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    /// The warehouse has no version to evaluate over, or cannot be read.
    #[error("{0}")]
    Warehouse(String),
}

/// The result of the delivers crate's functions.
pub type Result<T> = std::result::Result<T, DeliversError>;

/// A comparison of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `>`: strictly above the number.
    Above,
    /// `>=`: the number or above.
    AtLeast,
    /// `<`: strictly below the number.
    Below,
    /// `<=`: the number or below.
    AtMost,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Above => ">",
            Op::AtLeast => ">=",
            Op::Below => "<",
            Op::AtMost => "<=",
        }
    }

    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Above => value > threshold,
            Op::AtLeast => value >= threshold,
            Op::Below => value < threshold,
            Op::AtMost => value <= threshold,
        }
    }
}

/// `METRIC OP NUMBER`: a row of the question's answer is news when its value of the metric
/// (as `prism query --format csv` prints it: money in currency units, a `change_pct` in
/// percent) compares so with the number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Condition {
    /// A column of the answer: a metric, or a metric's derived form (`closed_revenue:change_pct`).
    pub metric: String,
    /// How the value compares with the threshold.
    pub op: Op,
    /// The number, in the units `prism query --format csv` prints (a `change_pct` in percent).
    pub threshold: f64,
}

impl Condition {
    /// Reads `closed_revenue:change_pct <= -25`.
    pub fn parse(text: &str) -> Result<Condition> {
        let bad = |why: &str| {
            DeliversError::Invalid(format!(
                "condition {text:?}: {why}; expected METRIC OP NUMBER with OP one of > >= < <= (closed_revenue:change_pct <= -25)"
            ))
        };
        // The two-character operators first, so that `>=` is not read as `>` and `=…`.
        let (at, op) = [
            (">=", Op::AtLeast),
            ("<=", Op::AtMost),
            (">", Op::Above),
            ("<", Op::Below),
        ]
        .into_iter()
        .find_map(|(s, op)| text.find(s).map(|at| ((at, s.len()), op)))
        .ok_or_else(|| bad("no comparison"))?;
        let metric = text[..at.0].trim();
        let number = text[at.0 + at.1..].trim();
        if metric.is_empty() || metric.contains(char::is_whitespace) {
            return Err(bad("the left side is not one metric"));
        }
        let threshold: f64 = number
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite())
            .ok_or_else(|| bad(&format!("{number:?} is not a number")))?;
        Ok(Condition {
            metric: metric.to_string(),
            op,
            threshold,
        })
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.metric, self.op.symbol(), self.threshold)
    }
}

impl TryFrom<String> for Condition {
    type Error = DeliversError;
    fn try_from(s: String) -> Result<Condition> {
        Condition::parse(&s)
    }
}

impl From<Condition> for String {
    fn from(c: Condition) -> String {
        c.to_string()
    }
}

/// An analysis whose list, when not empty, is the news.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListAnalysis {
    /// Partners in the scorecard's bottom quartile or whose revenue fell by a quarter or more.
    Underperformers,
    /// Accounts with open critical requests or low recent satisfaction.
    Risk,
    /// Partners whose Pareto class (A, B, C) is not what it was in the previous period of the
    /// same length; needs a period, and is the channel's (not for a partner's user).
    ClassChanged,
}

impl ListAnalysis {
    /// `underperformers` or `risk`.
    pub fn parse(s: &str) -> Result<ListAnalysis> {
        match s {
            "underperformers" => Ok(ListAnalysis::Underperformers),
            "risk" => Ok(ListAnalysis::Risk),
            "class_changed" => Ok(ListAnalysis::ClassChanged),
            other => Err(DeliversError::Invalid(format!(
                "analysis {other:?}: an alert watches underperformers, risk or class_changed"
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            ListAnalysis::Underperformers => "underperformers",
            ListAnalysis::Risk => "risk",
            ListAnalysis::ClassChanged => "class_changed",
        }
    }
}

/// What an alert watches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "watch", rename_all = "snake_case")]
pub enum Watch {
    /// The rows of a question's answer whose metric meets the condition.
    Question {
        /// The question, in the engine's versioned form.
        question: QueryRequest,
        /// Which rows are news.
        when: Condition,
    },
    /// An analysis's list over a period (none: all loaded data).
    List {
        /// `underperformers`, `risk` or `class_changed`.
        analysis: ListAnalysis,
        /// A fixed period, or `latest-month`, `latest-quarter` or `latest-year`.
        period: Option<String>,
    },
    /// A scheduled report: the question's whole answer, sent every time it falls due, in the
    /// body and attached as CSV and .xlsx.
    Report {
        /// The question, in the engine's versioned form.
        question: QueryRequest,
    },
    /// A dashboard of the owner's (or shared with it) as a scheduled report: every question of
    /// it as it stands when the report falls due, answered in the owner's audience, attached as
    /// one workbook with a sheet per question.
    Dashboard {
        /// Its id, as `/dashboards/ID` shows it.
        dashboard: i64,
    },
    /// A dashboard's questions as read when it falls due (`Delivers` reads the dashboard; never
    /// kept): each question's name and question.
    #[serde(skip)]
    Book {
        /// The dashboard's name, the workbook's file name.
        title: String,
        /// Each question's name (a sheet's) and question.
        questions: Vec<(String, QueryRequest)>,
    },
}

/// The periods that move with the data: the month, quarter or year holding the newest day
/// loaded (in the owner's view), so that an alert asked "after every load" watches the latest
/// figures without being edited.
pub const RELATIVE_PERIODS: [&str; 3] = ["latest-month", "latest-quarter", "latest-year"];

/// A period as an alert gives it: a fixed one (`2026-Q3`) or one of `RELATIVE_PERIODS`,
/// resolved against the newest day of data (any day of its month will do).
pub fn resolve_period(text: &str, newest: Option<NaiveDate>) -> Result<Option<Period>> {
    let Some(kind) = RELATIVE_PERIODS.iter().find(|p| **p == text) else {
        return Ok(Some(Period::parse(text)?));
    };
    let Some(day) = newest else {
        return Ok(None);
    };
    let spelled = match *kind {
        "latest-month" => format!("{}-{:02}", day.year(), day.month()),
        "latest-quarter" => format!("{}-Q{}", day.year(), (day.month() - 1) / 3 + 1),
        _ => format!("{}", day.year()),
    };
    Ok(Some(Period::parse(&spelled)?))
}

impl Watch {
    /// A question and its condition; the condition's metric joins the question's metrics if
    /// it is not one of them, and a partner or customer id is shown with its name.
    pub fn question(mut question: QueryRequest, when: Condition) -> Watch {
        if !question.metrics.contains(&when.metric) {
            question.metrics.push(when.metric.clone());
        }
        let mut by = Vec::new();
        for d in &question.by {
            by.push(d.clone());
            for entity in ["partner", "customer"] {
                let name = format!("{entity}.{entity}_name");
                if *d == format!("{entity}.{entity}_id") && !question.by.contains(&name) {
                    by.push(name);
                }
            }
        }
        question.by = by;
        Watch::Question { question, when }
    }

    /// Checks the definition against the model, as its owner would ask it: every metric,
    /// dimension, filter and form known and allowed in the owner's audience, the period
    /// readable, the condition's metric in the answer.
    pub fn check(&self, engine: &Engine, audience: &Audience) -> Result<()> {
        match self {
            Watch::Question { question, when } => {
                let query = fixed(question)?.to_query()?;
                engine.compile(&query, audience)?;
                if !question.metrics.contains(&when.metric) {
                    return Err(DeliversError::Invalid(format!(
                        "condition: {} is not one of the question's metrics",
                        when.metric
                    )));
                }
                Ok(())
            }
            Watch::List { analysis, period } => {
                if let Some(p) = period {
                    resolve_period(p, NaiveDate::from_ymd_opt(2000, 1, 1))?;
                }
                if *analysis == ListAnalysis::ClassChanged {
                    if period.is_none() {
                        return Err(DeliversError::Invalid(
                            "class_changed compares a period with the one before it: give --period (latest-quarter, 2025-Q3)".into(),
                        ));
                    }
                    if audience.own_partner().is_some() {
                        return Err(DeliversError::Invalid(
                            "class_changed watches the channel's classes: not for a partner's user"
                                .into(),
                        ));
                    }
                }
                Ok(())
            }
            Watch::Report { question } => {
                engine.compile(&fixed(question)?.to_query()?, audience)?;
                Ok(())
            }
            // Read and checked against the store when kept (`add_alert`); its questions are
            // answered as they stand when it falls due.
            Watch::Dashboard { .. } | Watch::Book { .. } => Ok(()),
        }
    }

    /// Whether every evaluation is news (a report), not only a change to "holds".
    pub fn is_report(&self) -> bool {
        matches!(
            self,
            Watch::Report { .. } | Watch::Dashboard { .. } | Watch::Book { .. }
        )
    }

    /// How the alert reads in a list: `closed_revenue:change_pct <= -25 by partner.partner_id`.
    pub fn describe(&self) -> String {
        match self {
            Watch::Question { question, when } => {
                let mut s = when.to_string();
                if !question.by.is_empty() {
                    s += &format!(" by {}", question.by.join(","));
                }
                for f in &question.filters {
                    s += &format!(" where {f}");
                }
                if let Some(p) = &question.period {
                    s += &format!(" in {p}");
                }
                s
            }
            Watch::List { analysis, period } => match period {
                Some(p) => format!("{} not empty in {p}", analysis.name()),
                None => format!("{} not empty", analysis.name()),
            },
            Watch::Dashboard { dashboard } => format!("report of dashboard {dashboard}"),
            Watch::Book { title, .. } => format!("report of dashboard {title:?}"),
            Watch::Report { question } => {
                let mut s = format!("report of {}", question.metrics.join(","));
                if !question.by.is_empty() {
                    s += &format!(" by {}", question.by.join(","));
                }
                if let Some(p) = &question.period {
                    s += &format!(" in {p}");
                }
                s
            }
        }
    }
}

/// The question with a relative period replaced by a fixed one, for checking only.
fn fixed(question: &QueryRequest) -> Result<QueryRequest> {
    let mut q = question.clone();
    if let Some(p) = &q.period
        && RELATIVE_PERIODS.contains(&p.as_str())
    {
        q.period = Some("2000-Q1".into());
    }
    if q.api_version != API_VERSION {
        q.api_version = API_VERSION;
    }
    Ok(q)
}

/// One row an evaluation found.
#[derive(Clone, Debug, Serialize)]
pub struct Found {
    /// The row as a person reads it: `P-7 · Acme Networks`.
    pub label: String,
    /// Every column of the row by name, as the CSV export prints it.
    pub values: BTreeMap<String, String>,
    /// The figure the condition compared (empty for a list).
    pub figure: String,
}

/// What an evaluation found.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// Whether the condition holds: some row meets it, or the list is not empty.
    pub holds: bool,
    /// The period asked, as dates (none: all loaded data).
    pub period: Option<String>,
    /// What was found: the rows meeting the condition, the list's members, or a report's rows.
    pub rows: Vec<Found>,
    /// A report's answer as files.
    #[serde(skip)]
    pub files: Vec<Attachment>,
}

impl Finding {
    fn outcome(&self) -> String {
        if !self.files.is_empty() {
            return format!("report of {} rows", self.rows.len());
        }
        match (self.holds, self.rows.len()) {
            (false, _) => "clear".to_string(),
            (true, 1) => format!("holds for {}", self.rows[0].label),
            (true, n) => format!("holds for {n} rows"),
        }
    }
}

/// Evaluates a watch in an audience over one warehouse version. Nothing is recorded.
pub async fn evaluate(
    engine: &Engine,
    session: &Session,
    audience: &Audience,
    watch: &Watch,
) -> Result<Finding> {
    match watch {
        Watch::Question { question, when } => {
            condition(engine, session, audience, question, when).await
        }
        Watch::Report { question } => report(engine, session, audience, question).await,
        Watch::Book { title, questions } => book(engine, session, audience, title, questions).await,
        Watch::Dashboard { dashboard } => Err(DeliversError::Invalid(format!(
            "dashboard {dashboard} was not read before it was evaluated"
        ))),
        Watch::List { analysis, period } => {
            list(engine, session, audience, *analysis, period.as_deref()).await
        }
    }
}

/// A condition on a question's metric: the rows where it holds.
async fn condition(
    engine: &Engine,
    session: &Session,
    audience: &Audience,
    question: &QueryRequest,
    when: &Condition,
) -> Result<Finding> {
    let (period, result) = ask(engine, session, audience, question, &when.metric).await?;
    if result.column(&when.metric).is_none() {
        return Err(DeliversError::Invalid(format!(
            "the answer has no column {}",
            when.metric
        )));
    }
    let rows: Vec<Found> = result
        .rows()
        .iter()
        .filter(|r| {
            r.number(&when.metric)
                .is_some_and(|v| when.op.holds(v, when.threshold))
        })
        .map(|r| found(&result, r, Some(&when.metric)))
        .collect();
    Ok(Finding {
        holds: !rows.is_empty(),
        period,
        rows,
        files: Vec::new(),
    })
}

/// A scheduled report of a question: its rows, and the answer as CSV and as a workbook.
async fn report(
    engine: &Engine,
    session: &Session,
    audience: &Audience,
    question: &QueryRequest,
) -> Result<Finding> {
    let first = question.metrics.first().cloned().unwrap_or_default();
    let (period, result) = ask(engine, session, audience, question, &first).await?;
    let header: Vec<String> = result.columns.iter().map(|c| c.name.clone()).collect();
    let csv = prism_web::csv_bytes(&header, &result.formatted_rows())
        .map_err(|e| DeliversError::Invalid(e.to_string()))?;
    let xlsx = prism_web::explore::xlsx(&engine.model, &result)
        .map_err(|e| DeliversError::Invalid(e.to_string()))?;
    Ok(Finding {
        holds: true,
        period,
        rows: result
            .rows()
            .iter()
            .map(|r| found(&result, r, None))
            .collect(),
        files: vec![
            Attachment {
                name: "answer.csv".into(),
                content_type: "text/csv; charset=utf-8".into(),
                bytes: csv,
            },
            Attachment {
                name: "answer.xlsx".into(),
                content_type: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
                    .into(),
                bytes: xlsx,
            },
        ],
    })
}

/// One of the analyses' lists: it holds when the list is not empty, and speaks of its rows.
async fn list(
    engine: &Engine,
    session: &Session,
    audience: &Audience,
    analysis: ListAnalysis,
    period: Option<&str>,
) -> Result<Finding> {
    let period = match period {
        Some(p) => {
            let newest = engine
                .newest_month(session, "closed_revenue", audience)
                .await?;
            resolve_period(p, newest)?
        }
        None => None,
    };
    let cx = Context {
        engine,
        session,
        audience: audience.clone(),
        period,
    };
    let rows: Vec<Found> = match analysis {
        ListAnalysis::Underperformers => {
            prism_analyses::underperformers::underperformers(&cx, Default::default())
                .await?
                .partners
                .into_iter()
                .map(|u| {
                    let reasons = u.reasons.join("; ");
                    partner_found(
                        &u.partner,
                        BTreeMap::from([("reasons".to_string(), reasons.clone())]),
                        reasons,
                    )
                })
                .collect()
        }
        ListAnalysis::ClassChanged => prism_analyses::pareto::class_changes(&cx)
            .await?
            .into_iter()
            .map(|c| {
                partner_found(
                    &c.partner,
                    BTreeMap::from([
                        ("class_before".to_string(), c.class_before.to_string()),
                        ("class_now".to_string(), c.class_now.to_string()),
                    ]),
                    format!(
                        "class {} → {} (closed revenue {} → {})",
                        c.class_before, c.class_now, c.closed_revenue_before, c.closed_revenue_now
                    ),
                )
            })
            .collect(),
        ListAnalysis::Risk => prism_analyses::risk::risk(&cx)
            .await?
            .accounts
            .into_iter()
            .map(|a| Found {
                label: format!("{} · {}", a.customer_id, a.customer_name),
                values: BTreeMap::from([
                    ("customer_id".to_string(), a.customer_id.clone()),
                    ("customer_name".to_string(), a.customer_name.clone()),
                    ("reasons".to_string(), a.reasons.join("; ")),
                ]),
                figure: a.reasons.join("; "),
            })
            .collect(),
    };
    Ok(Finding {
        holds: !rows.is_empty(),
        period: period.map(|p| format!("{}..{}", p.from, p.to)),
        rows,
        files: Vec::new(),
    })
}

/// A partner of one of the analyses' lists as found: by id and name, with what the list says
/// of it.
fn partner_found(
    partner: &prism_analyses::Partner,
    mut values: BTreeMap<String, String>,
    figure: String,
) -> Found {
    values.insert("partner_id".into(), partner.partner_id.clone());
    values.insert("partner_name".into(), partner.partner_name.clone());
    Found {
        label: format!("{} · {}", partner.partner_id, partner.partner_name),
        values,
        figure,
    }
}

/// A dashboard's report: every question answered in the audience, one workbook with a sheet
/// per question; a question that cannot be answered (a metric since removed) is listed with
/// why, and the others are sent.
async fn book(
    engine: &Engine,
    session: &Session,
    audience: &Audience,
    title: &str,
    questions: &[(String, QueryRequest)],
) -> Result<Finding> {
    let mut answered = Vec::new();
    let mut rows = Vec::new();
    for (name, question) in questions {
        let first = question.metrics.first().cloned().unwrap_or_default();
        match ask(engine, session, audience, question, &first).await {
            Ok((_, result)) => {
                rows.push(Found {
                    label: name.clone(),
                    values: BTreeMap::from([("rows".to_string(), result.rows().len().to_string())]),
                    figure: format!("{} rows", result.rows().len()),
                });
                answered.push((name.clone(), result));
            }
            Err(e) => rows.push(Found {
                label: name.clone(),
                values: BTreeMap::from([("error".to_string(), e.to_string())]),
                figure: format!("not answered: {e}"),
            }),
        }
    }
    let sheets: Vec<(&str, &prism_engine::QueryResult)> =
        answered.iter().map(|(n, r)| (n.as_str(), r)).collect();
    let xlsx = prism_web::explore::workbook(&engine.model, &sheets)
        .map_err(|e| DeliversError::Invalid(e.to_string()))?;
    Ok(Finding {
        holds: true,
        period: None,
        rows,
        files: vec![Attachment {
            name: format!("{}.xlsx", file_name(title)),
            content_type: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
                .into(),
            bytes: xlsx,
        }],
    })
}

/// A title as a file's name: letters, digits, `-` and `_`, the rest as `-`.
fn file_name(title: &str) -> String {
    let name: String = title
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.trim_matches('-').is_empty() {
        "dashboard".into()
    } else {
        name
    }
}

/// Asks a question in the audience, a relative period resolved against the newest day of the
/// metric's fact; the period asked, as dates, and the answer.
async fn ask(
    engine: &Engine,
    session: &Session,
    audience: &Audience,
    question: &QueryRequest,
    metric: &str,
) -> Result<(Option<String>, prism_engine::QueryResult)> {
    let mut question = question.clone();
    let relative = question
        .period
        .clone()
        .filter(|p| RELATIVE_PERIODS.contains(&p.as_str()));
    if let Some(p) = relative {
        let newest = engine.newest_month(session, metric, audience).await?;
        question.period = resolve_period(&p, newest)?.map(|p| format!("{}..{}", p.from, p.to));
    }
    question.api_version = API_VERSION;
    let query = question.to_query()?;
    let result = engine.run(session, &query, audience).await?;
    Ok((
        query.period.map(|p| format!("{}..{}", p.from, p.to)),
        result,
    ))
}

/// A row of an answer as found: labelled by its dimensions (`P-7 · Acme`), its figure the
/// metric given, or every metric's `name value`.
fn found(
    result: &prism_engine::QueryResult,
    row: &prism_engine::Row,
    figure: Option<&str>,
) -> Found {
    let (dims, metrics): (Vec<_>, Vec<_>) = result.columns.iter().partition(|c| c.format.is_none());
    let mut parts: Vec<String> = dims.iter().map(|c| row.get(&c.name).exact()).collect();
    // Direct sales are the direct channel by id and by name alike: said once.
    parts.dedup();
    let label = if parts.is_empty() {
        "all".to_string()
    } else {
        parts.join(" · ")
    };
    let figure = match figure {
        Some(metric) => row.get(metric).exact(),
        None => metrics
            .iter()
            .map(|c| format!("{} {}", c.name, row.get(&c.name).exact()))
            .collect::<Vec<_>>()
            .join(", "),
    };
    Found {
        label,
        figure,
        values: result
            .columns
            .iter()
            .map(|c| (c.name.clone(), row.get(&c.name).exact()))
            .collect(),
    }
}

/// An alert as a user asks for it, before it is kept.
pub struct AlertRequest {
    /// The user the alert belongs to: evaluated in their audience, telling them only.
    pub owner: String,
    /// Unique among the owner's alerts.
    pub name: String,
    /// What it watches.
    pub watch: Watch,
    /// When it is evaluated.
    pub schedule: Schedule,
    /// `inbox`, `email` or `webhook:URL`.
    pub channel: String,
}

/// The channels an alert may use. E-mail goes to the owner's own address and nowhere else,
/// so that an alert cannot mail figures out of its owner's hands to a typed-in address.
pub fn check_channel(channel: &str) -> Result<()> {
    match channel {
        "inbox" | "email" => Ok(()),
        other => match other.strip_prefix("webhook:") {
            Some(url) => send::check_webhook_url(url),
            None => Err(DeliversError::Invalid(format!(
                "--to {other:?}: inbox, email (the owner's address) or webhook:URL"
            ))),
        },
    }
}

/// Checks and keeps a new alert; its id.
pub fn add_alert(store: &Store, engine: &Engine, request: &AlertRequest) -> Result<i64> {
    let owner = store
        .user(&request.owner)?
        .ok_or_else(|| DeliversError::Invalid(format!("no user {:?}", request.owner)))?;
    request.watch.check(engine, &owner.audience()?)?;
    if let Watch::Dashboard { dashboard } = &request.watch
        && store.dashboard(&owner, *dashboard)?.is_none()
    {
        return Err(DeliversError::Invalid(format!(
            "no dashboard {dashboard} that {} may open",
            owner.name
        )));
    }
    check_channel(&request.channel)?;
    if request.channel == "email" && store.email(&owner.name)?.is_none() {
        return Err(DeliversError::Invalid(format!(
            "{} has no e-mail address: set one first (prism users email {} ADDRESS)",
            owner.name, owner.name
        )));
    }
    let definition =
        serde_json::to_string(&request.watch).map_err(|e| DeliversError::Invalid(e.to_string()))?;
    Ok(store.add_alert(&NewAlert {
        owner: &request.owner,
        name: &request.name,
        definition: &definition,
        schedule: &request.schedule.expression(),
        time_zone: request.schedule.time_zone(),
        channel: &request.channel,
        next_due_at: request.schedule.next_after(Utc::now()),
    })?)
}

/// Alerts asked for on a page of the web app (the form under an Explore answer): the same
/// checks and the same definition as `prism alerts add --query ... --when ...|--report`.
pub struct PageAlerts;

impl prism_web::alerts::AlertMaker for PageAlerts {
    fn add(
        &self,
        st: &AppState,
        owner: &prism_web::store::User,
        alert: &prism_web::alerts::PageAlert,
    ) -> std::result::Result<i64, String> {
        let made = || -> Result<i64> {
            use prism_web::alerts::PageWatch;
            let watch = match &alert.watch {
                PageWatch::Condition { question, when } => {
                    Watch::question(question.clone(), Condition::parse(when)?)
                }
                PageWatch::Report { question } => Watch::Report {
                    question: question.clone(),
                },
                PageWatch::Dashboard { dashboard } => Watch::Dashboard {
                    dashboard: *dashboard,
                },
            };
            add_alert(
                &st.store,
                &st.engine,
                &AlertRequest {
                    owner: owner.name.clone(),
                    name: alert.name.clone(),
                    watch,
                    schedule: Schedule::parse(&alert.on, &alert.time_zone)?,
                    channel: alert.to.clone(),
                },
            )
        };
        made().map_err(|e| e.to_string())
    }
}

/// An alert's definition, as kept.
pub fn watch_of(alert: &Alert) -> Result<Watch> {
    serde_json::from_str(&alert.definition)
        .map_err(|e| DeliversError::Invalid(format!("alert {:?}: {e}", alert.name)))
}

/// Rows a message lists at most; a report's attachments hold them all.
const BODY_ROWS: usize = 50;

/// Alerts evaluated side by side in a pass.
const EVALUATED_AT_ONCE: usize = 4;

/// An alert as evaluated, before it is recorded.
struct Evaluated {
    alert: Alert,
    key: String,
    report: bool,
    found: std::result::Result<Finding, String>,
}

/// What one pass of the scheduler did.
#[derive(Debug, Default, Serialize)]
pub struct Pass {
    /// The warehouse version evaluated over.
    pub version: Option<u64>,
    /// Each alert evaluated: its owner and name, and what it found or why it could not.
    pub evaluated: Vec<(String, String, String)>,
    /// News queued by this pass.
    pub queued: usize,
    /// Deliveries attempted, and how many of them were sent.
    pub attempted: usize,
    /// Deliveries sent, of those attempted.
    pub sent: usize,
}

/// The scheduler: evaluates due alerts over the current warehouse version and sends what
/// they queued. One runs inside `prism serve`; `prism alerts run` makes one pass.
pub struct Delivers {
    app: Arc<AppState>,
    sender: send::Sender,
    outbound: Outbound,
}

impl Delivers {
    /// A scheduler over the app's store and engine, sending as configured.
    pub fn new(app: Arc<AppState>, outbound: Outbound) -> Result<Delivers> {
        Ok(Delivers {
            sender: send::Sender::new(&outbound)?,
            app,
            outbound,
        })
    }

    /// Evaluates one alert now, in its owner's current audience, without recording anything
    /// (`prism alerts test`).
    pub async fn test(&self, alert: &Alert) -> Result<(u64, Finding)> {
        let (version, session) = self.session().await?;
        let owner = self.owner_of(alert).await?;
        let audience = owner.audience()?;
        let watch = self.read_dashboard(&owner, watch_of(alert)?).await?;
        let finding = evaluate(&self.app.engine, &session, &audience, &watch).await?;
        Ok((version, finding))
    }

    async fn session(&self) -> Result<(u64, Arc<Session>)> {
        self.app
            .session()
            .await
            .map_err(|e| DeliversError::Warehouse(e.to_string()))
    }

    /// A dashboard report's questions as the dashboard holds them now, as its owner may open
    /// it (a dashboard deleted, or no longer shared with the owner, is an error of the alert);
    /// any other watch as it is.
    async fn read_dashboard(&self, owner: &prism_web::store::User, watch: Watch) -> Result<Watch> {
        let Watch::Dashboard { dashboard } = watch else {
            return Ok(watch);
        };
        let reader = owner.clone();
        let d = self
            .stored(move |store| store.dashboard(&reader, dashboard))
            .await?
            .ok_or_else(|| {
                DeliversError::Invalid(format!(
                    "no dashboard {dashboard} that {} may open",
                    owner.name
                ))
            })?;
        let questions = d
            .questions
            .iter()
            .map(|q| {
                prism_web::explore::Question::from_query_string(Some(&q.question))
                    .request()
                    .map(|r| (q.name.clone(), r))
                    .map_err(|e| DeliversError::Invalid(format!("{}: {e}", q.name)))
            })
            .collect::<Result<_>>()?;
        Ok(Watch::Book {
            title: d.name,
            questions,
        })
    }

    /// The alert's owner as the store holds it now: a changed role or partner counts at once.
    async fn owner_of(&self, alert: &Alert) -> Result<prism_web::store::User> {
        let name = alert.owner.clone();
        self.stored(move |store| store.user(&name))
            .await?
            .ok_or_else(|| {
                DeliversError::Invalid(format!("the owner {:?} is no longer a user", alert.owner))
            })
    }

    /// A store call on the blocking pool: SQLite's reads and writes (a report's workbook among
    /// them) never hold one of the async workers that `prism serve` answers people on.
    async fn stored<T: Send + 'static>(
        &self,
        call: impl FnOnce(&prism_web::Store) -> prism_web::store::Result<T> + Send + 'static,
    ) -> Result<T> {
        let app = self.app.clone();
        Ok(tokio::task::spawn_blocking(move || call(&app.store))
            .await
            .map_err(|e| DeliversError::Invalid(format!("a store call stopped: {e}")))??)
    }

    /// One pass at `now`: alerts on `load` not yet evaluated over the current version, and
    /// scheduled ones that are due, are evaluated; then every delivery due is attempted.
    pub async fn pass(&self, now: DateTime<Utc>) -> Result<Pass> {
        let mut pass = Pass::default();
        match self.session().await {
            Ok((version, session)) => {
                pass.version = Some(version);
                self.evaluate_due(version, &session, now, &mut pass).await?;
            }
            // No warehouse yet: nothing to evaluate, but earlier news may still be sent.
            Err(e) => tracing::debug!("alerts not evaluated: {e}"),
        }
        self.deliver_due(now, &mut pass).await?;
        Ok(pass)
    }

    /// Evaluates the alerts due: a few at once (a question's planning is single-threaded, so
    /// two cores answer two alerts side by side), each recorded in the order of the alerts.
    async fn evaluate_due(
        &self,
        version: u64,
        session: &Session,
        now: DateTime<Utc>,
        pass: &mut Pass,
    ) -> Result<()> {
        let mut due = Vec::new();
        for alert in self.stored(|store| store.alerts(None)).await? {
            let schedule = Schedule::parse(&alert.schedule, &alert.time_zone);
            let is_due = match &schedule {
                Ok(Schedule::OnLoad) => alert.evaluated_version != Some(version as i64),
                Ok(Schedule::Cron { .. }) => {
                    alert.next_due_at.is_some_and(|at| at <= now.timestamp())
                }
                Err(_) => alert.evaluated_version != Some(version as i64),
            };
            if !is_due {
                continue;
            }
            if let Ok(s @ Schedule::Cron { .. }) = &schedule {
                let (id, next) = (alert.id, s.next_after(now));
                self.stored(move |store| store.set_next_due(id, next))
                    .await?;
            }
            due.push((alert, schedule));
        }
        let mut found = futures::stream::iter(due)
            .map(|(alert, schedule)| self.evaluate_one(alert, schedule, version, session))
            .buffered(EVALUATED_AT_ONCE);
        while let Some(evaluated) = found.next().await {
            self.record(evaluated, version, now, pass).await?;
        }
        Ok(())
    }

    /// One alert evaluated in its owner's audience, under the key its news is kept by.
    async fn evaluate_one(
        &self,
        alert: Alert,
        schedule: Result<Schedule>,
        version: u64,
        session: &Session,
    ) -> Evaluated {
        // The owner read once: its audience now, and the dashboard it may open now.
        let (watch, audience) = match self.owner_of(&alert).await {
            Ok(owner) => {
                let watch = match watch_of(&alert) {
                    Ok(w) => self.read_dashboard(&owner, w).await,
                    Err(e) => Err(e),
                };
                (watch, owner.audience().map_err(DeliversError::from))
            }
            Err(e) => (watch_of(&alert), Err(e)),
        };
        let report = watch.as_ref().is_ok_and(Watch::is_report);
        // A report's news is its due time's; an alert's, the version's (it fires once per
        // version and state). Either way, two evaluations of the same make the same key.
        let key = match (&schedule, alert.next_due_at) {
            (Ok(Schedule::Cron { .. }), Some(due)) if report => {
                format!("alert-{}-at-{due}", alert.id)
            }
            _ => format!("alert-{}-v{version}", alert.id),
        };
        let started = std::time::Instant::now();
        let found = match (&schedule, watch, audience) {
            (Err(e), _, _) => Err(e.to_string()),
            (_, Err(e), _) | (_, _, Err(e)) => Err(e.to_string()),
            (Ok(_), Ok(watch), Ok(audience)) => {
                evaluate(&self.app.engine, session, &audience, &watch)
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        // Which alerts take the time of a pass (`PRISM_LOG=prism_delivers=debug`).
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        tracing::debug!(alert = %alert.name, owner = %alert.owner, ms, "evaluated");
        Evaluated {
            alert,
            key,
            report,
            found,
        }
    }

    /// Records an evaluation, queuing its news in the same transaction that marks the alert
    /// firing (so that it is never queued twice).
    async fn record(
        &self,
        evaluated: Evaluated,
        version: u64,
        now: DateTime<Utc>,
        pass: &mut Pass,
    ) -> Result<()> {
        let Evaluated {
            alert,
            key,
            report,
            found,
        } = evaluated;
        let outcome = match found {
            Ok(finding) => {
                let outcome = finding.outcome();
                let (subject, body, payload) = self.message(&alert, version, &key, &finding);
                let (id, holds, said) = (alert.id, finding.holds, outcome.clone());
                let (files, due_at) = (finding.files, now.timestamp());
                let queued = self
                    .stored(move |store| {
                        store.record_evaluation(
                            id,
                            version as i64,
                            holds,
                            &said,
                            Some(&News {
                                key: &key,
                                subject: &subject,
                                body: &body,
                                payload: &payload,
                                files: &files,
                                every_time: report,
                                due_at,
                            }),
                        )
                    })
                    .await?;
                pass.queued += usize::from(queued);
                outcome
            }
            Err(why) => {
                tracing::warn!(alert = %alert.name, owner = %alert.owner, "not evaluated: {why}");
                let (id, said) = (alert.id, why.clone());
                self.stored(move |store| store.record_failed_evaluation(id, version as i64, &said))
                    .await?;
                format!("not evaluated: {why}")
            }
        };
        pass.evaluated.push((alert.owner, alert.name, outcome));
        Ok(())
    }

    /// The news as a person reads it (subject and body) and as a webhook receives it.
    fn message(
        &self,
        alert: &Alert,
        version: u64,
        key: &str,
        finding: &Finding,
    ) -> (String, String, String) {
        let what = watch_of(alert).map(|w| w.describe()).unwrap_or_default();
        let subject = format!(
            "Prism {}: {} ({} {})",
            if finding.files.is_empty() {
                "alert"
            } else {
                "report"
            },
            alert.name,
            finding.rows.len(),
            if finding.rows.len() == 1 {
                "row"
            } else {
                "rows"
            }
        );
        let mut body = format!(
            "{}: {what}\nPeriod: {}\nIn the view of {} (warehouse version {version}).\n\n",
            alert.name,
            finding.period.as_deref().unwrap_or("all loaded data"),
            alert.owner
        );
        for row in finding.rows.iter().take(BODY_ROWS) {
            body += &format!("- {}: {}\n", row.label, row.figure);
        }
        if finding.rows.len() > BODY_ROWS {
            body += &format!("… and {} more rows", finding.rows.len() - BODY_ROWS);
            body += if finding.files.is_empty() {
                " (prism alerts test shows them all).\n"
            } else {
                " in the attached files.\n"
            };
        }
        if let Some(link) = &self.outbound.link {
            body += &format!("\n{link}\n");
        }
        let payload = serde_json::json!({
            "alert": alert.name,
            "owner": alert.owner,
            "news_key": key,
            "warehouse_version": version,
            "condition": what,
            "period": finding.period,
            "rows": finding.rows,
        })
        .to_string();
        (subject, body, payload)
    }

    async fn deliver_due(&self, now: DateTime<Utc>, pass: &mut Pass) -> Result<()> {
        let due = now.timestamp();
        for delivery in self.stored(move |store| store.due_deliveries(due)).await? {
            pass.attempted += 1;
            let alert_id = delivery.alert_id;
            let secret = self
                .stored(move |store| store.alert(alert_id))
                .await?
                .map(|a| a.secret)
                .unwrap_or_default();
            let id = delivery.id;
            match self.sender.send(&self.app.store, &delivery, &secret).await {
                Ok(()) => {
                    pass.sent += 1;
                    self.stored(move |store| store.record_attempt(id, Ok(()), None))
                        .await?;
                }
                Err(why) => {
                    let attempts = delivery.attempts + 1;
                    let retry_at = (attempts < self.outbound.max_attempts).then(|| {
                        let wait = self.outbound.retry_after.as_secs().max(1) as i64;
                        now.timestamp() + wait * (1 << (attempts - 1).min(16))
                    });
                    tracing::warn!(delivery = %delivery.news_key, attempts, "not delivered: {why}");
                    self.stored(move |store| store.record_attempt(id, Err(&why), retry_at))
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Passes forever, one every `every`; a failing pass is logged and the next one runs.
    pub async fn run(self: Arc<Self>, every: Duration) {
        loop {
            if let Err(e) = self.pass(Utc::now()).await {
                tracing::error!("alerts: {e}");
            }
            tokio::time::sleep(every).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_period_is_the_one_holding_the_newest_day() {
        let day = NaiveDate::from_ymd_opt(2024, 4, 15);
        let spelled = |p: &str| {
            resolve_period(p, day)
                .unwrap()
                .map(|p| format!("{}..{}", p.from, p.to))
        };
        assert_eq!(spelled("latest-month").unwrap(), "2024-04-01..2024-04-30");
        assert_eq!(spelled("latest-quarter").unwrap(), "2024-04-01..2024-06-30");
        assert_eq!(spelled("latest-year").unwrap(), "2024-01-01..2024-12-31");
        assert_eq!(spelled("2023-Q4").unwrap(), "2023-10-01..2023-12-31");
        assert_eq!(resolve_period("latest-quarter", None).unwrap(), None);
        assert!(resolve_period("latest-week", day).is_err());
    }

    #[test]
    fn a_condition_reads_its_metric_comparison_and_number() {
        let c = Condition::parse("closed_revenue:change_pct <= -25").unwrap();
        assert_eq!(
            (c.metric.as_str(), c.op, c.threshold),
            ("closed_revenue:change_pct", Op::AtMost, -25.0)
        );
        assert_eq!(Condition::parse("csat_avg<3").unwrap().op, Op::Below);
        assert_eq!(Condition::parse("win_rate >= 0.5").unwrap().op, Op::AtLeast);
        assert!(Op::AtMost.holds(-25.0, -25.0) && !Op::Below.holds(-25.0, -25.0));
        // Kept as text and read back the same.
        let kept = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Condition>(&kept).unwrap(), c);
    }
}
