//! The query engine: a `Query` plus an `Audience`, compiled against the `Model` into SQL that
//! DataFusion plans and runs over one warehouse version.
//!
//! Metrics of several facts are aggregated per fact, each with its own filters and the scope,
//! and then joined on the requested dimensions (drill-across), so asking for a second metric
//! never changes the first one's value. Ratios are computed after aggregation from their
//! additive parts. There is no way to compile without an audience: it is a parameter of
//! `compile`, and the rows it reaches are applied to every fact scan in one place.
//!
//! Only this crate knows DataFusion; the model knows nothing of it.

pub mod answer;
pub mod api;
mod audience;
mod cache;
pub mod display;
mod model_check;
pub mod query;
mod rollups;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use arrow::record_batch::RecordBatch;
use chrono::NaiveDate;
use datafusion::prelude::SessionContext;
use prism_model::{Aggregate, Format, Grain, Metric, MetricKind, Model, did_you_mean};

pub use answer::{DIRECT_LABEL, Money, Row, Value};
pub use audience::Audience;
pub use model_check::check_model;
pub use query::{Filter, FilterOp, Order, Period, Query};
use rollups::{Need, RollupSource};
pub use rollups::{RollupChoice, is_table_of};

/// A session over one warehouse version, as the engine runs queries on it. Callers hold one
/// without needing to know the query engine behind it.
pub type Session = SessionContext;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The query as typed cannot be read.
    #[error("{0}")]
    Parse(String),
    /// The query names something the model lacks, or asks for a cut the model cannot make.
    #[error("{0}")]
    Invalid(String),
    /// A partner user asked for something outside their scope.
    #[error("{0}")]
    Forbidden(String),
    #[error("query execution: {0}")]
    Execution(#[from] datafusion::error::DataFusionError),
}

/// A channel benchmark shows no figure over fewer partners than this, so that no partner user
/// can read another partner's value from it.
pub const BENCHMARK_MIN_PARTNERS: i64 = 5;

/// The rows an `Audience` reaches, as the compiler applies them to every fact scan.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    /// Every partner, and direct sales (a brand-owner user).
    All,
    /// The partners a channel manager manages.
    Partners(BTreeSet<String>),
    /// One partner (a partner user): its own rows only, never direct sales.
    Partner(String),
}

/// A filter pinning a dimension key to at most this many values makes a query narrow (see
/// `Compiled::narrow`), planned with this share of rows kept by a filter, in percent.
const NARROW_VALUES: usize = 3;
const NARROW_SELECTIVITY_PCT: u8 = 1;

/// A dimension as the compiler understands it.
#[derive(Clone, Debug, PartialEq)]
enum Dim {
    /// An attribute of a conformed dimension: `partner.tier`.
    Attribute {
        dimension: String,
        attribute: String,
    },
    /// An attribute of one fact: `opportunity.stage`.
    FactAttribute { fact: String, column: String },
    /// `time.month`: the fact's own time column at a grain.
    Time { grain: Grain },
}

/// The period a comparison form compares with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Comparison {
    /// The period of the same length just before: the previous month on a monthly row, the
    /// previous quarter for a quarter's period (see `Period::previous`).
    PreviousPeriod,
    /// The same period a year before.
    YearBefore,
}

impl Comparison {
    /// The suffix of the comparison's columns and aggregations in the SQL.
    fn suffix(self) -> &'static str {
        match self {
            Comparison::PreviousPeriod => "previous_period",
            Comparison::YearBefore => "year_before",
        }
    }
}

/// A derived form of a metric, asked as `METRIC:FORM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Derived {
    /// 100 * the row's value / the total over all rows of the answer.
    PctOfTotal,
    /// 1 for the largest value; ties share a rank.
    Rank,
    /// The running share of the total, largest values first (ties by the dimensions).
    CumulativePct,
    /// The metric's value in the compared period.
    Compared(Comparison),
    /// The value minus the compared value.
    Change(Comparison),
    /// 100 * the change / |the compared value|; none when the compared value is 0 or absent.
    ChangePct(Comparison),
}

impl Derived {
    const FORMS: [&str; 9] = [
        "pct_of_total",
        "rank",
        "cumulative_pct",
        "previous_period",
        "year_before",
        "change",
        "change_pct",
        "change_year_before",
        "change_pct_year_before",
    ];

    fn parse(s: &str) -> Result<Derived, EngineError> {
        use Comparison::*;
        match s {
            "pct_of_total" => Ok(Derived::PctOfTotal),
            "rank" => Ok(Derived::Rank),
            "cumulative_pct" => Ok(Derived::CumulativePct),
            "previous_period" => Ok(Derived::Compared(PreviousPeriod)),
            "year_before" => Ok(Derived::Compared(YearBefore)),
            "change" => Ok(Derived::Change(PreviousPeriod)),
            "change_pct" => Ok(Derived::ChangePct(PreviousPeriod)),
            "change_year_before" => Ok(Derived::Change(YearBefore)),
            "change_pct_year_before" => Ok(Derived::ChangePct(YearBefore)),
            other => Err(EngineError::Invalid(format!(
                "no derived form `{other}`: the forms are {}{}",
                Derived::FORMS.join(", "),
                did_you_mean(other, Derived::FORMS)
            ))),
        }
    }

    fn comparison(self) -> Option<Comparison> {
        match self {
            Derived::Compared(c) | Derived::Change(c) | Derived::ChangePct(c) => Some(c),
            _ => None,
        }
    }
}

/// How far a compared period's dates move forward to land on the query's own: whole days or
/// whole months (calendar months, so a month's step from 31 January is the end of February).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shift {
    Days(i64),
    Months(u32),
}

impl std::fmt::Display for Shift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shift::Days(n) => write!(f, "{n} days"),
            Shift::Months(n) => write!(f, "{n} months"),
        }
    }
}

impl Shift {
    /// One step of a grain.
    fn step(grain: Grain) -> Shift {
        match (grain, grain.months()) {
            (_, Some(n)) => Shift::Months(n),
            (Grain::Week, None) => Shift::Days(7),
            _ => Shift::Days(1),
        }
    }

    /// The SQL interval it adds to a date.
    fn interval_sql(self) -> String {
        format!("INTERVAL '{self}'")
    }

    /// Whether moving dates by it keeps rows of the grain whole.
    fn keeps(self, grain: Grain) -> bool {
        match (grain, self) {
            (Grain::Day, _) => true,
            (Grain::Week, Shift::Days(n)) => n % 7 == 0,
            (g, Shift::Months(n)) => g.months().is_some_and(|m| n.is_multiple_of(m)),
            _ => false,
        }
    }
}

/// A column of a result.
#[derive(Clone, Debug, PartialEq)]
pub struct ResultColumn {
    pub name: String,
    /// `None` for dimensions.
    pub format: Option<Format>,
}

#[derive(Clone, Debug)]
pub struct QueryResult {
    pub columns: Vec<ResultColumn>,
    pub batches: Vec<RecordBatch>,
    pub sql: String,
}

impl QueryResult {
    /// The position of a column by name (`partner.tier`, `closed_revenue`).
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Every row as the text a CSV file or JSON gets: `Value::exact` of each cell.
    pub fn formatted_rows(&self) -> Vec<Vec<String>> {
        self.rows()
            .iter()
            .map(|r| r.values().iter().map(Value::exact).collect())
            .collect()
    }
}

/// A time grain's value as users write it (`2024-03-05`, `2024-W10`, `2024-03`, `2024-Q1`,
/// `2024`), as the SQL literal of the key `group_sql` groups that grain by.
fn time_key(grain: Grain, value: &str, dimension: &str) -> Result<String, EngineError> {
    let v = value.trim();
    let refuse = |what: &str, example: &str| {
        EngineError::Invalid(format!(
            "filter {dimension}: `{v}` is not {what}: write it {example}"
        ))
    };
    let number = |s: &str, digits: usize| -> Option<i64> {
        (s.len() == digits && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match grain {
        Grain::Day => NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .ok()
            .filter(|_| v.len() == 10)
            .map(|d| format!("DATE '{d}'"))
            .ok_or_else(|| refuse("a day", "2024-03-05")),
        Grain::Week => v
            .split_once("-W")
            .and_then(|(y, w)| {
                let (y, w) = (number(y, 4)?, number(w, 2)?);
                NaiveDate::from_isoywd_opt(y as i32, w as u32, chrono::Weekday::Mon)
            })
            .map(|monday| format!("DATE '{monday}'"))
            .ok_or_else(|| refuse("an ISO week", "2024-W10")),
        Grain::Month => v
            .split_once('-')
            .and_then(|(y, m)| {
                let (y, m) = (number(y, 4)?, number(m, 2)?);
                (1..=12).contains(&m).then_some(y * 100 + m)
            })
            .map(|k| k.to_string())
            .ok_or_else(|| refuse("a month", "2024-03")),
        Grain::Quarter => v
            .split_once("-Q")
            .and_then(|(y, q)| {
                let (y, q) = (number(y, 4)?, number(q, 1)?);
                (1..=4).contains(&q).then_some(y * 10 + q)
            })
            .map(|k| k.to_string())
            .ok_or_else(|| refuse("a quarter", "2024-Q1")),
        Grain::Year => number(v, 4)
            .map(|y| y.to_string())
            .ok_or_else(|| refuse("a year", "2024")),
    }
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The compiled form of a query, before execution.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub sql: String,
    pub columns: Vec<ResultColumn>,
    /// The metrics used, with their definitions, for `explain`.
    pub metrics: Vec<Metric>,
    /// For each fact aggregated, the rollup that answered or why none did.
    pub rollups: Vec<RollupChoice>,
    /// Its fact rows are a sliver of the table — one partner's, or those of a key pinned to a few
    /// values (a product) — which the planner cannot know: it assumes a filter keeps a fifth of
    /// the rows, and would then build a join's hash table from the 360 k customers rather than
    /// from a product's 16 k order lines.
    pub narrow: bool,
}

pub struct Engine {
    pub model: Model,
    cache: Option<cache::ResultCache>,
    use_rollups: bool,
    /// Each rollup's table name (see `rollup_table`), made once: every query looks them up.
    rollup_tables: BTreeMap<String, String>,
}

impl Engine {
    pub fn new(model: Model) -> Engine {
        let mut engine = Engine {
            model,
            cache: None,
            use_rollups: true,
            rollup_tables: BTreeMap::new(),
        };
        engine.rollup_tables = engine
            .model
            .rollups
            .keys()
            .map(|r| (r.clone(), engine.rollup_table_of(r)))
            .collect();
        engine
    }

    /// An engine that keeps answers (up to `limit_bytes`) for the session they were computed
    /// in: a server asks the same questions again and again over one warehouse version.
    pub fn with_result_cache(model: Model, limit_bytes: usize) -> Engine {
        Engine {
            cache: Some(cache::ResultCache::new(limit_bytes)),
            ..Engine::new(model)
        }
    }

    /// The same engine reading base tables only (`--no-rollups`): for tests and comparisons.
    pub fn without_rollups(mut self) -> Engine {
        self.use_rollups = false;
        self
    }

    fn resolve_dim(&self, name: &str) -> Result<Dim, EngineError> {
        if let Some(grain) = name.strip_prefix("time.").and_then(Grain::parse) {
            return Ok(Dim::Time { grain });
        }
        for fact in self.model.facts.values() {
            if let Some(a) = fact.attributes.get(name) {
                return Ok(Dim::FactAttribute {
                    fact: fact.name.clone(),
                    column: a.column.clone(),
                });
            }
        }
        if let Some((d, a)) = name.split_once('.')
            && let Some(dim) = self.model.dimensions.get(d)
            && dim.attributes.contains_key(a)
        {
            return Ok(Dim::Attribute {
                dimension: d.to_string(),
                attribute: a.to_string(),
            });
        }
        let names = self.model.dimension_names();
        Err(EngineError::Invalid(format!(
            "no dimension `{name}`{}",
            did_you_mean(name, names.iter().map(String::as_str))
        )))
    }

    /// The SQL expression of a dimension over a fact aliased `f`, joined dimensions aliased by name.
    /// What a fact row is grouped by for a dimension: the raw column, or for a time grain a
    /// number or date that is cheap to group; the label users see is made after aggregation
    /// (`label_sql`), on a few rows instead of every row. `day` is the fact's date, shifted
    /// forward when the aggregation is of a compared period.
    fn group_sql(&self, dim: &Dim, day: &str, source: Option<&RollupSource>) -> String {
        match dim {
            // A rollup that holds the attribute itself has it as a column named after it.
            Dim::Attribute {
                dimension,
                attribute,
            } if self.stored_in(source, dimension, attribute) => {
                format!("f.{}", quote_ident(&format!("{dimension}.{attribute}")))
            }
            Dim::Attribute {
                dimension,
                attribute,
            } => {
                let d = &self.model.dimensions[dimension];
                let value = match &d.attributes[attribute].expression {
                    Some(e) => e.qualified(dimension),
                    // The key is on the fact itself: no join needed.
                    None if *attribute == d.key => format!("f.{attribute}"),
                    None => format!("{dimension}.{attribute}"),
                };
                match &d.absent {
                    // A row without a member is the dimension's "(none)", whatever attribute.
                    Some(label) => format!(
                        "CASE WHEN f.{} IS NULL THEN {} ELSE CAST({value} AS VARCHAR) END",
                        d.key,
                        quote_literal(label)
                    ),
                    None => value,
                }
            }
            Dim::FactAttribute { column, .. } => format!("f.{column}"),
            Dim::Time { grain } => {
                let part = |p: &str| format!("CAST(date_part('{p}', {day}) AS BIGINT)");
                match grain {
                    Grain::Day => day.to_string(),
                    Grain::Week => format!("CAST(date_trunc('week', {day}) AS DATE)"),
                    Grain::Month => format!("{} * 100 + {}", part("year"), part("month")),
                    Grain::Quarter => format!("{} * 10 + {}", part("year"), part("quarter")),
                    Grain::Year => part("year"),
                }
            }
        }
    }

    /// The label of a grouped value (`group_sql`), as users see and filter it. `direct` is the
    /// SQL of "this row is a direct sale", for a brand-owner user's partner dimensions.
    fn label_sql(&self, dim: &Dim, value: &str, direct: Option<&str>) -> String {
        match dim {
            // Direct sales have no partner; a brand-owner user sees them as "(direct)".
            Dim::Attribute { dimension, .. } if dimension == "partner" && direct.is_some() => {
                format!(
                    "CASE WHEN {} THEN {} ELSE CAST({value} AS VARCHAR) END",
                    direct.expect("checked"),
                    quote_literal(DIRECT_LABEL)
                )
            }
            Dim::Time { grain } => match grain {
                Grain::Day => format!("to_char({value}, '%Y-%m-%d')"),
                Grain::Week => format!("to_char({value}, '%G-W%V')"),
                // Parenthesised: `value` may be an expression (`year * 100 + month`).
                Grain::Month => format!(
                    "concat(CAST(({value}) / 100 AS VARCHAR), '-', lpad(CAST(({value}) % 100 AS VARCHAR), 2, '0'))"
                ),
                Grain::Quarter => format!(
                    "concat(CAST(({value}) / 10 AS VARCHAR), '-Q', CAST(({value}) % 10 AS VARCHAR))"
                ),
                Grain::Year => format!("CAST({value} AS VARCHAR)"),
            },
            _ => value.to_string(),
        }
    }

    /// Compiles a query for an audience. Validation happens here, before anything runs.
    /// This compiles for the base tables only; `compile_in` also reads the session's rollups.
    pub fn compile(&self, query: &Query, audience: &Audience) -> Result<Compiled, EngineError> {
        self.compile_with(query, audience.scope(), audience.is_benchmark(), None)
    }

    /// Compiles a query for a scope over a session: each fact's aggregation reads the smallest
    /// of the session's rollups that answers it exactly, or the base tables.
    pub fn compile_in(
        &self,
        ctx: &SessionContext,
        query: &Query,
        audience: &Audience,
    ) -> Result<Compiled, EngineError> {
        self.compile_with(
            query,
            audience.scope(),
            audience.is_benchmark(),
            built_rollups(ctx).as_deref(),
        )
    }

    /// `compile_benchmark` over a session's rollups.
    pub fn compile_benchmark_in(
        &self,
        ctx: &SessionContext,
        query: &Query,
    ) -> Result<Compiled, EngineError> {
        self.compile_with(query, &Scope::All, true, built_rollups(ctx).as_deref())
    }

    /// Compiles a channel benchmark: the query over every partner's rows (never direct sales),
    /// with each metric withheld (null) wherever fewer than `BENCHMARK_MIN_PARTNERS` partners
    /// contribute to it, and a `benchmark_partners` column saying over how many partners each
    /// row is. This is the only cross-partner answer a partner user may get, so the rule lives
    /// here and not in a page.
    pub fn compile_benchmark(&self, query: &Query) -> Result<Compiled, EngineError> {
        self.compile_with(query, &Scope::All, true, None)
    }

    fn compile_with(
        &self,
        query: &Query,
        scope: &Scope,
        benchmark: bool,
        built: Option<&prism_warehouse::BuiltRollups>,
    ) -> Result<Compiled, EngineError> {
        if query.metrics.is_empty() {
            return Err(EngineError::Invalid(
                "a query needs at least one metric".into(),
            ));
        }
        // Each asked metric is a model metric, or one in a derived form (`closed_revenue:rank`).
        let mut asked: Vec<(String, &Metric, Option<Derived>)> = Vec::new();
        let mut metrics: Vec<&Metric> = Vec::new();
        for name in &query.metrics {
            let (base, derived) = match name.split_once(':') {
                Some((b, d)) => (b, Some(Derived::parse(d)?)),
                None => (name.as_str(), None),
            };
            let m = self.model.metric(base).map_err(EngineError::Invalid)?;
            if !metrics.iter().any(|x| x.name == m.name) {
                metrics.push(m);
            }
            asked.push((name.clone(), m, derived));
        }
        let dims: Vec<(String, Dim)> = query
            .by
            .iter()
            .map(|d| Ok((d.clone(), self.resolve_dim(d)?)))
            .collect::<Result<_, EngineError>>()?;
        let filters: Vec<(&Filter, Dim)> = query
            .filters
            .iter()
            .map(|f| Ok((f, self.resolve_dim(&f.dimension)?)))
            .collect::<Result<_, EngineError>>()?;

        // The base metrics each fact must aggregate, ratios expanded into their parts.
        let mut per_fact: BTreeMap<String, Vec<&Metric>> = BTreeMap::new();
        for m in &metrics {
            let parts: Vec<&Metric> = match &m.kind {
                MetricKind::Base { .. } => vec![m],
                MetricKind::Ratio {
                    numerator,
                    denominator,
                    ..
                } => {
                    vec![
                        &self.model.metrics[numerator],
                        &self.model.metrics[denominator],
                    ]
                }
            };
            // Each part is aggregated with its own fact: a ratio of two facts' metrics is
            // divided after the two aggregations are joined. A state is read apart from the
            // flows of its fact, at the period's last day instead of over the period.
            for p in parts {
                let list = per_fact.entry(aggregation_of(p)).or_default();
                if !list.iter().any(|x| x.name == p.name) {
                    list.push(p);
                }
            }
        }

        // The periods compared with, each with how far its dates move forward to meet the
        // query's own: by a step of the finest time grain asked (month over month on a monthly
        // row), otherwise by the length of the query's period.
        let comparisons: BTreeSet<Comparison> = asked
            .iter()
            .filter_map(|(_, _, d)| d.and_then(Derived::comparison))
            .collect();
        let finest_grain = dims
            .iter()
            .filter_map(|(_, d)| match d {
                Dim::Time { grain } => Some(*grain),
                _ => None,
            })
            .min();
        let mut shifts: Vec<(Comparison, Shift)> = Vec::new();
        for c in &comparisons {
            let interval = match (c, finest_grain, &query.period) {
                (Comparison::PreviousPeriod, Some(grain), _) => Shift::step(grain),
                // ISO weeks: week N of the year before, not the week holding the same date.
                (Comparison::YearBefore, Some(Grain::Week), _) => Shift::Days(364),
                (Comparison::YearBefore, _, _)
                    if finest_grain.is_some() || query.period.is_some() =>
                {
                    Shift::Months(12)
                }
                (Comparison::PreviousPeriod, None, Some(p)) => match p.whole_months() {
                    Some(n) => Shift::Months(n),
                    None => Shift::Days(p.days()),
                },
                _ => {
                    return Err(EngineError::Invalid(format!(
                        "`{}` compares with {}, which needs a period (--period 2024-Q2) or a time dimension (--by time.quarter) to compare",
                        asked
                            .iter()
                            .find(|(_, _, d)| d.and_then(Derived::comparison) == Some(*c))
                            .map_or("", |a| a.0.as_str()),
                        match c {
                            Comparison::PreviousPeriod => "the previous period",
                            Comparison::YearBefore => "the same period a year before",
                        }
                    )));
                }
            };
            shifts.push((*c, interval));
        }

        // Each fact's aggregations read the smallest rollup that answers all of them, or the base.
        let mut sources: BTreeMap<&str, Option<RollupSource>> = BTreeMap::new();
        let mut choices = Vec::new();
        for (aggregation, parts) in &per_fact {
            let fact_name = &parts[0].fact;
            let need = Need {
                parts,
                dims: &dims,
                filters: &filters,
                period: query.period.as_ref(),
                shifts: &shifts,
                scope,
                benchmark,
            };
            let (source, choice) = self.navigate(fact_name, &need, built);
            sources.insert(aggregation.as_str(), source);
            choices.push(choice);
        }
        // One aggregation per fact for the query's period, and one per fact and compared period.
        // A source is (alias, SQL, whether its rows add keys to the answer).
        let mut ctes: Vec<(String, String, bool)> = Vec::new();
        let mut views: Vec<(Option<Comparison>, Option<Shift>)> = vec![(None, None)];
        views.extend(shifts.iter().map(|(c, i)| (Some(*c), Some(*i))));
        for (comparison, shift) in views {
            for (aggregation, parts) in &per_fact {
                let source = sources.get(aggregation.as_str()).and_then(Option::as_ref);
                let sql = self.fact_sql(
                    &parts[0].fact,
                    parts,
                    &metrics,
                    &dims,
                    &filters,
                    query.period.as_ref(),
                    shift,
                    scope,
                    benchmark,
                    source,
                    built.and_then(|b| b.loaded_on),
                )?;
                let alias = aggregation_alias(aggregation, comparison);
                // A partner that sold last quarter and not this one is a row of "revenue by
                // partner with its change"; a month after the last one is not a row of a trend.
                let adds_keys = comparison.is_none() || finest_grain.is_none();
                ctes.push((alias, sql, adds_keys));
            }
        }

        // Drill-across: the aggregations that add keys are full-joined one after the other, each
        // on the keys of those before it (the first that has a row gives them), and the others
        // left-joined onto the result. Each aggregation is read once: DataFusion runs a CTE
        // again at each mention, so a separate key set would compute every aggregation twice.
        let mut dim_cols: Vec<String> = (0..dims.len()).map(|i| format!("d{i}")).collect();
        let direct = direct_flag(&dims, scope);
        if direct {
            dim_cols.push("direct".into());
        }
        let mut sql = String::from("WITH ");
        sql.push_str(
            &ctes
                .iter()
                .map(|(n, s, _)| format!("{n} AS ({s})"))
                .collect::<Vec<_>>()
                .join(",\n"),
        );
        let single = ctes.len() == 1;
        let key_sources: Vec<&str> = ctes
            .iter()
            .filter(|c| c.2)
            .map(|(n, _, _)| n.as_str())
            .collect();
        // A key column of the joined rows, over the first `upto` key-adding aggregations.
        let key = |c: &str, upto: usize| -> String {
            if upto <= 1 || single || dims.is_empty() {
                format!(
                    "{}.{c}",
                    key_sources.first().copied().unwrap_or(ctes[0].0.as_str())
                )
            } else {
                format!(
                    "COALESCE({})",
                    key_sources[..upto]
                        .iter()
                        .map(|n| format!("{n}.{c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        };
        let mut select = Vec::new();
        let mut columns = Vec::new();
        for (i, (name, d)) in dims.iter().enumerate() {
            let flag = key("direct", key_sources.len());
            let label = self.label_sql(
                d,
                &key(&format!("d{i}"), key_sources.len()),
                direct.then_some(flag.as_str()),
            );
            select.push(format!("{label} AS {}", quote_ident(name)));
            columns.push(ResultColumn {
                name: name.clone(),
                format: None,
            });
        }
        let mut views: Vec<Option<Comparison>> = vec![None];
        views.extend(comparisons.iter().copied().map(Some));
        for view in views {
            for m in &metrics {
                let alias = |part: &Metric| aggregation_alias(&aggregation_of(part), view);
                let col = |name: &str| -> String {
                    let part = &self.model.metrics[name];
                    let c = format!("{}.{}", alias(part), quote_ident(name));
                    // A count over no rows is 0; a sum over no rows has no value.
                    if matches!(
                        &part.kind,
                        MetricKind::Base {
                            aggregate: Aggregate::CountRows
                                | Aggregate::Count(_)
                                | Aggregate::CountDistinct(_),
                            ..
                        }
                    ) {
                        format!("COALESCE({c}, 0)")
                    } else {
                        c
                    }
                };
                let expr = match &m.kind {
                    MetricKind::Base { .. } => col(&m.name),
                    MetricKind::Ratio {
                        numerator,
                        denominator,
                        scale,
                        divide_by,
                    } => {
                        // A part with no rows in its filter sums to nothing, which in a share means 0.
                        let (n, d) = (format!("COALESCE({}, 0)", col(numerator)), col(denominator));
                        let factor = scale / divide_by;
                        // Compared as a float: an exact zero either way, and it spares DataFusion
                        // comparing decimals of different precisions after the joins.
                        let zero = format!("CAST({d} AS DOUBLE) = 0");
                        if m.format == Format::Money {
                            format!(
                                "CASE WHEN {zero} THEN NULL ELSE CAST({n} AS DECIMAL(38, 6)) / {d} END"
                            )
                        } else if factor == 1.0 {
                            format!("CASE WHEN {zero} THEN NULL ELSE CAST({n} AS DOUBLE) / {d} END")
                        } else {
                            format!(
                                "CASE WHEN {zero} THEN NULL ELSE {scale:?} * CAST({n} AS DOUBLE) / {d} / {divide_by:?} END"
                            )
                        }
                    }
                };
                let expr = if benchmark {
                    // Released only when every part of the figure has enough partners behind it:
                    // a ratio's numerator and its denominator each.
                    let enough: Vec<String> = metric_parts(&self.model, m)
                        .iter()
                        .map(|p| {
                            format!(
                                "COALESCE({}.{}, 0) >= {BENCHMARK_MIN_PARTNERS}",
                                alias(p),
                                quote_ident(&contributors_column(&p.name))
                            )
                        })
                        .collect();
                    format!("CASE WHEN {} THEN {expr} END", enough.join(" AND "))
                } else {
                    expr
                };
                let name = match view {
                    None => m.name.clone(),
                    Some(c) => format!("{}@{}", m.name, c.suffix()),
                };
                select.push(format!("{expr} AS {}", quote_ident(&name)));
                columns.push(ResultColumn {
                    name,
                    format: Some(m.format),
                });
            }
        }
        if benchmark {
            // The fewest partners behind any figure of the row, in the query's own period.
            let mut counts: Vec<String> = Vec::new();
            for m in &metrics {
                for p in metric_parts(&self.model, m) {
                    let c = format!(
                        "COALESCE({}.{}, 0)",
                        aggregation_alias(&aggregation_of(p), None),
                        quote_ident(&contributors_column(&p.name))
                    );
                    if !counts.contains(&c) {
                        counts.push(c);
                    }
                }
            }
            let fewest = if counts.len() == 1 {
                counts[0].clone()
            } else {
                format!("least({})", counts.join(", "))
            };
            select.push(format!("{fewest} AS benchmark_partners"));
            columns.push(ResultColumn {
                name: "benchmark_partners".into(),
                format: Some(Format::Integer),
            });
        }
        write!(sql, "\nSELECT {}", select.join(", ")).expect("string");
        if single || dims.is_empty() {
            write!(sql, " FROM {}", ctes[0].0).expect("string");
            for (n, _, _) in &ctes[1..] {
                write!(sql, " CROSS JOIN {n}").expect("string");
            }
        } else {
            write!(sql, " FROM {}", key_sources[0]).expect("string");
            // Parenthesised: the SQL parser binds IS NOT DISTINCT FROM looser than AND.
            let on = |n: &str, upto: usize| {
                dim_cols
                    .iter()
                    .map(|c| format!("({} IS NOT DISTINCT FROM {n}.{c})", key(c, upto)))
                    .collect::<Vec<_>>()
                    .join(" AND ")
            };
            for (j, n) in key_sources.iter().enumerate().skip(1) {
                write!(sql, " FULL JOIN {n} ON {}", on(n, j)).expect("string");
            }
            for (n, _, adds_keys) in &ctes {
                if !adds_keys {
                    write!(sql, " LEFT JOIN {n} ON {}", on(n, key_sources.len())).expect("string");
                }
            }
        }
        // The asked columns over the aggregated rows, with derived forms as window functions.
        let base_columns = columns;
        let mut columns: Vec<ResultColumn> = base_columns
            .iter()
            .filter(|c| c.format.is_none() || c.name == "benchmark_partners")
            .cloned()
            .collect();
        let mut outer: Vec<String> = columns.iter().map(|c| quote_ident(&c.name)).collect();
        let dim_order: Vec<String> = dims
            .iter()
            .map(|(n, _)| format!("{} ASC", quote_ident(n)))
            .collect();
        for (name, m, derived) in &asked {
            let v = quote_ident(&m.name);
            let (expr, format) = match derived {
                None => (v.clone(), Some(m.format)),
                Some(Derived::PctOfTotal) => (
                    format!(
                        "100.0 * CAST({v} AS DOUBLE) / NULLIF(CAST(SUM({v}) OVER () AS DOUBLE), 0)"
                    ),
                    Some(Format::Percent),
                ),
                Some(Derived::Rank) => (
                    format!("RANK() OVER (ORDER BY {v} DESC NULLS LAST)"),
                    Some(Format::Integer),
                ),
                Some(Derived::CumulativePct) => {
                    let mut by = vec![format!("{v} DESC NULLS LAST")];
                    by.extend(dim_order.iter().cloned());
                    (
                        format!(
                            "100.0 * CAST(SUM({v}) OVER (ORDER BY {} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS DOUBLE) / NULLIF(CAST(SUM({v}) OVER () AS DOUBLE), 0)",
                            by.join(", ")
                        ),
                        Some(Format::Percent),
                    )
                }
                Some(Derived::Compared(c)) => (
                    quote_ident(&format!("{}@{}", m.name, c.suffix())),
                    Some(m.format),
                ),
                Some(Derived::Change(c)) | Some(Derived::ChangePct(c)) => {
                    let was = quote_ident(&format!("{}@{}", m.name, c.suffix()));
                    // A sum or count over no rows is nothing sold: revenue that fell to nothing
                    // changed by all of it. An average over no rows has no value to compare.
                    let additive = matches!(m.kind, MetricKind::Base { .. });
                    let (now, then) = if additive {
                        (format!("COALESCE({v}, 0)"), format!("COALESCE({was}, 0)"))
                    } else {
                        (v.clone(), was.clone())
                    };
                    if matches!(derived, Some(Derived::Change(_))) {
                        let change = format!("{now} - {then}");
                        let change = if additive {
                            format!(
                                "CASE WHEN {v} IS NULL AND {was} IS NULL THEN NULL ELSE {change} END"
                            )
                        } else {
                            change
                        };
                        // One declared type: DataFusion's inferred decimal precision of the CASE
                        // differs from the one it computes (found by the scope property test).
                        let change = match m.format {
                            Format::Money => format!("CAST({change} AS DECIMAL(38, 6))"),
                            Format::Integer => format!("CAST({change} AS BIGINT)"),
                            _ => format!("CAST({change} AS DOUBLE)"),
                        };
                        (change, Some(m.format))
                    } else {
                        // Against the absolute value, so that a credit turning into a sale is a rise.
                        (
                            format!(
                                "100.0 * (CAST({now} AS DOUBLE) - CAST({then} AS DOUBLE)) / NULLIF(abs(CAST({then} AS DOUBLE)), 0)"
                            ),
                            Some(Format::Percent),
                        )
                    }
                }
            };
            if columns.iter().any(|c| &c.name == name) {
                continue;
            }
            outer.push(format!("{expr} AS {}", quote_ident(name)));
            columns.push(ResultColumn {
                name: name.clone(),
                format,
            });
        }
        // Dimensions first, then the metrics in the order asked, then the benchmark count.
        if let Some(i) = columns.iter().position(|c| c.name == "benchmark_partners") {
            let c = columns.remove(i);
            let o = outer.remove(i);
            columns.push(c);
            outer.push(o);
        }
        let sql_inner = sql;
        let mut sql = format!(
            "SELECT {} FROM (\n{sql_inner}\n) aggregated",
            outer.join(", ")
        );
        let mut order = Vec::new();
        for o in &query.order {
            if !columns.iter().any(|c| c.name == o.column) {
                return Err(EngineError::Invalid(format!(
                    "cannot order by `{}`: it is not a metric or dimension of this query{}",
                    o.column,
                    did_you_mean(&o.column, columns.iter().map(|c| c.name.as_str()))
                )));
            }
            order.push(format!(
                "{} {} NULLS LAST",
                quote_ident(&o.column),
                if o.descending { "DESC" } else { "ASC" }
            ));
        }
        // A stable order: what was asked, then the dimensions.
        for (name, _) in &dims {
            if !query.order.iter().any(|o| &o.column == name) {
                order.push(format!("{} ASC NULLS LAST", quote_ident(name)));
            }
        }
        if !order.is_empty() {
            write!(sql, " ORDER BY {}", order.join(", ")).expect("string");
        }
        if let Some(n) = query.limit {
            write!(sql, " LIMIT {n}").expect("string");
        }
        let pins_a_key = |(f, d): &&(&Filter, Dim)| {
            matches!(d, Dim::Attribute { dimension, attribute } if self.model.dimensions[dimension].key == *attribute)
                && matches!(&f.op, FilterOp::In(values) if values.len() <= NARROW_VALUES)
        };
        let narrow = matches!(scope, Scope::Partner(_)) || filters.iter().any(|f| pins_a_key(&f));
        Ok(Compiled {
            sql,
            columns,
            metrics: metrics.into_iter().cloned().collect(),
            rollups: choices,
            narrow,
        })
    }

    /// One fact's aggregation: its parts by the asked dimensions, over the scope, the period and
    /// the filters. With a shift, each row's date moves forward by it first, so that the rows of
    /// the compared period land on the dimensions and the period of the query.
    #[allow(clippy::too_many_arguments)]
    fn fact_sql(
        &self,
        fact_name: &str,
        parts: &[&Metric],
        metrics: &[&Metric],
        dims: &[(String, Dim)],
        filters: &[(&Filter, Dim)],
        period: Option<&Period>,
        shift: Option<Shift>,
        scope: &Scope,
        benchmark: bool,
        source: Option<&RollupSource>,
        loaded_on: Option<NaiveDate>,
    ) -> Result<String, EngineError> {
        let fact = &self.model.facts[fact_name];
        // A state is read on a day (`as_of`) rather than over the period: each row of the fact
        // is paired with the last day of the period, or of each time row, and the row's date
        // is that day.
        let state = parts.iter().any(|p| p.state);
        let time = if state {
            "f.as_of".to_string()
        } else {
            format!("CAST(f.{} AS DATE)", fact.time)
        };
        let day = match shift {
            None => time,
            Some(s) => format!("({time} + {})", s.interval_sql()),
        };
        let reaches = |dim: &Dim, used_as: &str| -> Result<(), EngineError> {
            let ok = match dim {
                Dim::Attribute { dimension, .. } => fact.reaches.contains(dimension),
                Dim::FactAttribute { fact: f, .. } => f == fact_name,
                Dim::Time { .. } => true,
            };
            if ok {
                return Ok(());
            }
            let metric = metrics
                .iter()
                .find(|m| {
                    metric_parts(&self.model, m)
                        .iter()
                        .any(|p| p.fact == fact_name)
                })
                .map_or("", |m| m.name.as_str());
            // A ratio of two facts' metrics reads the other fact too.
            let relation = if metrics
                .iter()
                .any(|m| m.name == metric && m.fact == fact_name)
            {
                "is a metric of"
            } else {
                "reads"
            };
            Err(EngineError::Invalid(format!(
                "`{metric}` {relation} {fact_name}, which does not reach the dimension `{used_as}`{}",
                match dim {
                    Dim::FactAttribute { fact, .. } =>
                        format!(" (an attribute of {fact}, usable with that fact's metrics only)"),
                    _ => String::new(),
                }
            )))
        };
        let mut joins: BTreeSet<String> = BTreeSet::new();
        let mut need_join = |d: &Dim| {
            if let Some(dimension) = self.joined_dimension(d, source) {
                joins.insert(dimension.to_string());
            }
        };
        for (name, d) in dims {
            reaches(d, name)?;
            need_join(d);
        }
        for (f, d) in filters {
            reaches(d, &f.dimension)?;
            need_join(d);
        }
        let mut sql = String::from("SELECT ");
        let mut select = Vec::new();
        for (i, (_, d)) in dims.iter().enumerate() {
            select.push(format!("{} AS d{i}", self.group_sql(d, &day, source)));
        }
        let direct = direct_flag(dims, scope);
        if direct {
            select.push("f.partner_id IS NULL AS direct".into());
        }
        for p in parts {
            select.push(format!(
                "{} AS {}",
                aggregate_sql(p, source),
                quote_ident(&p.name)
            ));
        }
        let channel = source.is_some_and(|s| s.rollup.channel);
        if benchmark {
            // Per part, the partners with rows in it: a figure is over the partners that
            // contribute to it, not over every partner with a row of the fact.
            for p in parts {
                let count = if channel {
                    // Its rows are the query's groups (navigation saw to it), and each of its
                    // parts has every row of a partner in it (`rollups::fit`).
                    format!("CAST(SUM(f.{}) AS BIGINT)", rollups::CHANNEL_PARTNERS)
                } else {
                    format!(
                        "COUNT(DISTINCT CASE WHEN {} THEN f.partner_id END)",
                        contributes_sql(p, source)
                    )
                };
                select.push(format!(
                    "{count} AS {}",
                    quote_ident(&contributors_column(&p.name))
                ));
            }
        }
        sql.push_str(&select.join(", "));
        let from = match source {
            Some(s) => s.table.clone(),
            None if state => {
                let dims_grain = dims
                    .iter()
                    .map(|(_, d)| d)
                    .chain(filters.iter().map(|(_, d)| d))
                    .filter_map(|d| match d {
                        Dim::Time { grain } => Some(*grain),
                        _ => None,
                    })
                    .min();
                format!(
                    "(SELECT t.*, b.as_of FROM {} t CROSS JOIN ({}) b)",
                    fact.source_sql(),
                    self.state_days(fact, dims_grain, period, shift, loaded_on)
                )
            }
            None => fact.source_sql(),
        };
        write!(sql, " FROM {from} f").expect("string");
        for j in &joins {
            let d = &self.model.dimensions[j];
            write!(
                sql,
                " LEFT JOIN {} {j} ON f.{key} = {j}.{key}",
                d.table,
                key = d.key
            )
            .expect("string");
        }
        // A channel rollup holds partners' rows only, and no partner column.
        let mut conditions: Vec<String> = if channel {
            Vec::new()
        } else {
            scope_condition(scope, benchmark).into_iter().collect()
        };
        // A state's days are the period's already.
        if let (Some(p), false) = (period, state) {
            conditions.push(format!(
                "{day} BETWEEN DATE '{}' AND DATE '{}'",
                p.from, p.to
            ));
        }
        for (f, d) in filters {
            conditions.push(self.filter_sql(f, d, &day, source, scope)?);
        }
        if !conditions.is_empty() {
            write!(sql, " WHERE {}", conditions.join(" AND ")).expect("string");
        }
        if !dims.is_empty() {
            let mut group: Vec<String> = (0..dims.len()).map(|i| format!("d{i}")).collect();
            if direct {
                group.push("direct".into());
            }
            write!(sql, " GROUP BY {}", group.join(", ")).expect("string");
        }
        Ok(sql)
    }

    /// A filter's condition on a fact row. A time grain's values are read as the grain's own
    /// keys (`2024-03` as the month 202403, `2024-W10` as that week's Monday) and compared with
    /// the row's key, never with a label made on every row; a value not written as the grain
    /// writes it is refused. Other dimensions compare their values as users see them (a
    /// brand-owner user's direct sales as "(direct)", a row without a member as "(none)").
    fn filter_sql(
        &self,
        f: &Filter,
        d: &Dim,
        day: &str,
        source: Option<&RollupSource>,
        scope: &Scope,
    ) -> Result<String, EngineError> {
        let time = match d {
            Dim::Time { grain } => Some(*grain),
            _ => None,
        };
        let expr = match time {
            Some(_) => self.group_sql(d, day, source),
            None => self.label_sql(
                d,
                &self.group_sql(d, day, source),
                (*scope == Scope::All).then_some("f.partner_id IS NULL"),
            ),
        };
        let value = |v: &str| match time {
            Some(grain) => time_key(grain, v, &f.dimension),
            None => Ok(quote_literal(v)),
        };
        let list = |values: &[String]| -> Result<String, EngineError> {
            Ok(values
                .iter()
                .map(|v| value(v))
                .collect::<Result<Vec<_>, _>>()?
                .join(", "))
        };
        Ok(match &f.op {
            FilterOp::In(v) => format!("{expr} IN ({})", list(v)?),
            FilterOp::NotIn(v) => format!("{expr} NOT IN ({})", list(v)?),
            FilterOp::Range { from, to } => {
                let mut c = Vec::new();
                if let Some(a) = from {
                    c.push(format!("{expr} >= {}", value(a)?));
                }
                if let Some(b) = to {
                    c.push(format!("{expr} <= {}", value(b)?));
                }
                c.join(" AND ")
            }
        })
    }

    /// The days a state is read at (`as_of`), one row each: the last day of the period (or,
    /// without one, the day of the last load); by a time grain, the last day of each of its
    /// rows within the period (without one, from the fact's first row to the day of the last
    /// load). For a compared period, the same days that far back.
    fn state_days(
        &self,
        fact: &prism_model::Fact,
        grain: Option<Grain>,
        period: Option<&Period>,
        shift: Option<Shift>,
        loaded_on: Option<NaiveDate>,
    ) -> String {
        let back = |d: NaiveDate| match shift {
            None => d,
            Some(Shift::Days(n)) => d - chrono::Duration::days(n),
            Some(Shift::Months(n)) => d.checked_sub_months(chrono::Months::new(n)).unwrap_or(d),
        };
        let last = period.map(|p| back(p.to)).or(loaded_on.map(back));
        let Some(grain) = grain else {
            return match last {
                Some(d) => format!("SELECT DATE '{d}' AS as_of"),
                // Compiled without a session: the day it runs.
                None => "SELECT current_date() AS as_of".into(),
            };
        };
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("date");
        let today = chrono::Utc::now().date_naive();
        let last = last.unwrap_or(today);
        // Without a period, from 1990 on: the fact's first row bounds it below.
        let first = period
            .map(|p| back(p.from))
            .unwrap_or(NaiveDate::from_ymd_opt(1990, 1, 1).expect("date"))
            .min(last);
        let bucket = self.group_sql(&Dim::Time { grain }, "day", None);
        let mut sql = format!(
            "SELECT MAX(day) AS as_of FROM (SELECT CAST(CAST(value AS INT) AS DATE) AS day FROM range({}, {})) days",
            (first - epoch).num_days(),
            (last - epoch).num_days() + 1
        );
        if period.is_none() {
            write!(
                sql,
                " WHERE day >= (SELECT MIN(CAST({} AS DATE)) FROM {})",
                fact.time, fact.table
            )
            .expect("string");
        }
        write!(sql, " GROUP BY {bucket}").expect("string");
        sql
    }

    /// Compiles the list of a dimension's members a scope may see, with every attribute,
    /// ordered by key: the partners of a scope (a partner user: its own row only), every
    /// product (the brand owner's catalogue), and the customers a scope serves (for a partner
    /// scope, those with at least one fact row of its partners). Analyses use it for members
    /// that have no fact rows at all: a partner without revenue, a product nobody sold.
    pub fn compile_members(
        &self,
        dimension: &str,
        audience: &Audience,
    ) -> Result<Compiled, EngineError> {
        self.compile_members_with(dimension, audience.rows_scope()?, true)
    }

    fn compile_members_with(
        &self,
        dimension: &str,
        scope: &Scope,
        ordered: bool,
    ) -> Result<Compiled, EngineError> {
        let d = self.model.dimensions.get(dimension).ok_or_else(|| {
            EngineError::Invalid(format!(
                "no dimension `{dimension}`{}",
                did_you_mean(dimension, self.model.dimensions.keys().map(String::as_str))
            ))
        })?;
        let mut select = Vec::new();
        let mut columns = Vec::new();
        for a in d.attributes.values() {
            let expr = match &a.expression {
                Some(e) => e.qualified("m"),
                None => format!("m.{}", a.name),
            };
            let name = format!("{dimension}.{}", a.name);
            select.push(format!("{expr} AS {}", quote_ident(&name)));
            columns.push(ResultColumn { name, format: None });
        }
        let partners = match scope {
            Scope::All => None,
            Scope::Partner(id) => Some(quote_literal(id)),
            Scope::Partners(ids) if ids.is_empty() => Some("NULL".to_string()),
            Scope::Partners(ids) => Some(
                ids.iter()
                    .map(|i| quote_literal(i))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        };
        let condition = match (&partners, dimension) {
            (None, _) => None,
            (Some(list), "partner") => Some(format!("m.{} IN ({list})", d.key)),
            // The catalogue is the brand owner's, and the same for every partner.
            (Some(_), "product") => None,
            (Some(list), _) => {
                let served: Vec<String> = self
                    .model
                    .facts
                    .values()
                    .filter(|f| f.reaches.iter().any(|r| r == dimension))
                    .map(|f| {
                        format!(
                            "SELECT {key} FROM {} WHERE partner_id IN ({list})",
                            f.table,
                            key = d.key
                        )
                    })
                    .collect();
                let mut served = served;
                // The members it owns (the campaigns it runs) too; one IN over a union, which
                // DataFusion decorrelates where it cannot an OR of two.
                if let Some(column) = &d.partner {
                    served.push(format!(
                        "SELECT {key} FROM {} WHERE {column} IN ({list})",
                        d.table,
                        key = d.key
                    ));
                }
                Some(format!("m.{} IN ({})", d.key, served.join(" UNION ")))
            }
        };
        let mut sql = format!("SELECT {} FROM {} m", select.join(", "), d.table);
        if let Some(c) = condition {
            write!(sql, " WHERE {c}").expect("string");
        }
        if ordered {
            write!(sql, " ORDER BY m.{}", d.key).expect("string");
        }
        Ok(Compiled {
            sql,
            columns,
            metrics: Vec::new(),
            rollups: Vec::new(),
            narrow: false,
        })
    }

    /// Compiles a listing of a fact's own rows (the columns named, as stored) for a scope and
    /// period: for analyses that look at rows one by one, like a customer's last five surveys.
    pub fn compile_rows(
        &self,
        fact: &str,
        columns: &[&str],
        audience: &Audience,
        period: Option<&Period>,
    ) -> Result<Compiled, EngineError> {
        let scope = audience.rows_scope()?;
        let f = self.model.facts.get(fact).ok_or_else(|| {
            EngineError::Invalid(format!(
                "no fact `{fact}`{}",
                did_you_mean(fact, self.model.facts.keys().map(String::as_str))
            ))
        })?;
        let select: Vec<String> = columns
            .iter()
            .map(|c| format!("f.{} AS {}", quote_ident(c), quote_ident(c)))
            .collect();
        let mut conditions: Vec<String> = scope_condition(scope, false).into_iter().collect();
        if let Some(p) = period {
            conditions.push(format!(
                "CAST(f.{} AS DATE) BETWEEN DATE '{}' AND DATE '{}'",
                f.time, p.from, p.to
            ));
        }
        let mut sql = format!("SELECT {} FROM {} f", select.join(", "), f.source_sql());
        if !conditions.is_empty() {
            write!(sql, " WHERE {}", conditions.join(" AND ")).expect("string");
        }
        let columns = columns
            .iter()
            .map(|c| ResultColumn {
                name: c.to_string(),
                format: None,
            })
            .collect();
        Ok(Compiled {
            sql,
            columns,
            metrics: Vec::new(),
            rollups: Vec::new(),
            narrow: false,
        })
    }

    /// Runs `compile_rows`.
    pub async fn rows(
        &self,
        ctx: &SessionContext,
        fact: &str,
        columns: &[&str],
        audience: &Audience,
        period: Option<&Period>,
    ) -> Result<QueryResult, EngineError> {
        self.execute(ctx, self.compile_rows(fact, columns, audience, period)?)
            .await
    }

    /// Runs `compile_members`.
    pub async fn members(
        &self,
        ctx: &SessionContext,
        dimension: &str,
        audience: &Audience,
    ) -> Result<QueryResult, EngineError> {
        self.execute(ctx, self.compile_members(dimension, audience)?)
            .await
    }

    /// `members` in the order they are stored, for a caller that looks members up rather than
    /// lists them: sorting 360 k customers by key took twice as long as reading them.
    pub async fn members_unordered(
        &self,
        ctx: &SessionContext,
        dimension: &str,
        audience: &Audience,
    ) -> Result<QueryResult, EngineError> {
        self.execute(
            ctx,
            self.compile_members_with(dimension, audience.rows_scope()?, false)?,
        )
        .await
    }

    /// The newest day with a row of the metric's fact (a derived form's base metric) in the
    /// audience; none when it has no row.
    pub async fn newest_day(
        &self,
        session: &SessionContext,
        metric: &str,
        audience: &Audience,
    ) -> Result<Option<NaiveDate>, EngineError> {
        let base = metric.split(':').next().unwrap_or(metric).to_string();
        let query = Query {
            metrics: vec![base],
            by: vec!["time.day".into()],
            order: vec![Order {
                column: "time.day".into(),
                descending: true,
            }],
            limit: Some(1),
            ..Query::default()
        };
        let result = self.run(session, &query, audience).await?;
        Ok(result
            .rows()
            .first()
            .and_then(|r| NaiveDate::parse_from_str(r.text("time.day")?, "%Y-%m-%d").ok()))
    }

    /// Compiles and runs a query over a session holding the warehouse's tables.
    pub async fn run(
        &self,
        ctx: &SessionContext,
        query: &Query,
        audience: &Audience,
    ) -> Result<QueryResult, EngineError> {
        self.execute(ctx, self.compile_in(ctx, query, audience)?)
            .await
    }

    /// Compiles and runs a channel benchmark (see `compile_benchmark`).
    pub async fn run_benchmark(
        &self,
        ctx: &SessionContext,
        query: &Query,
    ) -> Result<QueryResult, EngineError> {
        self.execute(ctx, self.compile_benchmark_in(ctx, query)?)
            .await
    }

    /// `sql` planned as the compiled query is run: in the session, or for a narrow query in a
    /// copy of its state that assumes a filter keeps 1 % of the rows.
    async fn plan(
        &self,
        ctx: &SessionContext,
        compiled: &Compiled,
        sql: &str,
    ) -> Result<datafusion::dataframe::DataFrame, EngineError> {
        if !compiled.narrow {
            return Ok(ctx.sql(sql).await?);
        }
        let state = ctx.state();
        // Not creating a default catalog: it would hide the session's tables.
        let mut config = state
            .config()
            .clone()
            .with_create_default_catalog_and_schema(false);
        config.options_mut().optimizer.default_filter_selectivity = NARROW_SELECTIVITY_PCT;
        let state = datafusion::execution::SessionStateBuilder::new_from_existing(state)
            .with_config(config)
            .build();
        let plan = state.create_logical_plan(sql).await?;
        Ok(datafusion::dataframe::DataFrame::new(state, plan))
    }

    /// DataFusion's physical plan of a compiled query, as it runs; with `analyze`, run, with the
    /// time and rows of each step.
    pub async fn explain_plan(
        &self,
        ctx: &SessionContext,
        compiled: &Compiled,
        analyze: bool,
    ) -> Result<Vec<RecordBatch>, EngineError> {
        let sql = format!(
            "EXPLAIN {}{}",
            if analyze { "ANALYZE " } else { "" },
            compiled.sql
        );
        Ok(self.plan(ctx, compiled, &sql).await?.collect().await?)
    }

    async fn execute(
        &self,
        ctx: &SessionContext,
        compiled: Compiled,
    ) -> Result<QueryResult, EngineError> {
        let session = ctx.session_id();
        if let Some(batches) = self
            .cache
            .as_ref()
            .and_then(|c| c.get(&session, &compiled.sql))
        {
            return Ok(QueryResult {
                columns: compiled.columns,
                batches,
                sql: compiled.sql,
            });
        }
        let batches = self
            .plan(ctx, &compiled, &compiled.sql)
            .await?
            .collect()
            .await?;
        if let Some(c) = &self.cache {
            c.put(&session, &compiled.sql, &batches);
        }
        Ok(QueryResult {
            columns: compiled.columns,
            batches,
            sql: compiled.sql,
        })
    }
}

/// The condition a scope puts on every fact row (`f`): its partners' rows only, and for a
/// benchmark every partner's rows but no direct sales.
fn scope_condition(scope: &Scope, benchmark: bool) -> Option<String> {
    match scope {
        Scope::All if benchmark => Some("f.partner_id IS NOT NULL".into()),
        Scope::All => None,
        Scope::Partner(id) => Some(format!("f.partner_id = {}", quote_literal(id))),
        Scope::Partners(ids) if ids.is_empty() => Some("FALSE".into()),
        Scope::Partners(ids) => Some(format!(
            "f.partner_id IN ({})",
            ids.iter()
                .map(|i| quote_literal(i))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Whether the aggregations group by "is a direct sale" too: for a brand-owner user cutting by a
/// partner attribute, so that direct sales are their own "(direct)" row and never merge with a
/// partner whose attribute happens to be empty.
fn direct_flag(dims: &[(String, Dim)], scope: &Scope) -> bool {
    *scope == Scope::All
        && dims
            .iter()
            .any(|(_, d)| matches!(d, Dim::Attribute { dimension, .. } if dimension == "partner"))
}

/// Which aggregation of a query a base metric is computed in: its fact's, or for a state (read
/// at a date, not over the period) its fact's states'.
fn aggregation_of(part: &Metric) -> String {
    if part.state {
        format!("{}_state", part.fact)
    } else {
        part.fact.clone()
    }
}

/// The name of a fact's aggregation in the SQL; never a table's name, which it would hide from
/// the aggregations after it.
fn aggregation_alias(fact: &str, comparison: Option<Comparison>) -> String {
    match comparison {
        None => format!("{fact}_now"),
        Some(c) => format!("{fact}_{}", c.suffix()),
    }
}

/// The rollups registered in a session (see `prism_warehouse::BuiltRollups`).
fn built_rollups(ctx: &SessionContext) -> Option<std::sync::Arc<prism_warehouse::BuiltRollups>> {
    ctx.state_ref()
        .read()
        .config()
        .get_extension::<prism_warehouse::BuiltRollups>()
}

/// The base metrics a metric is made of: itself, or a ratio's numerator and denominator.
fn metric_parts<'m>(model: &'m prism_model::Model, m: &'m Metric) -> Vec<&'m Metric> {
    match &m.kind {
        MetricKind::Base { .. } => vec![m],
        MetricKind::Ratio {
            numerator,
            denominator,
            ..
        } => vec![&model.metrics[numerator], &model.metrics[denominator]],
    }
}

/// The column of a benchmark's aggregation holding how many partners contribute to a part.
fn contributors_column(part: &str) -> String {
    format!("{part}#partners")
}

/// Whether a fact row (`f`), or a rollup's row, contributes to a base metric: it passes the
/// metric's condition and has a value to aggregate (`COUNT(*)` counts every row that passes).
/// A partner contributes to a figure when one of its rows does.
fn contributes_sql(m: &Metric, source: Option<&RollupSource>) -> String {
    let MetricKind::Base { aggregate, filter } = &m.kind else {
        unreachable!("ratios are expanded into their parts")
    };
    if let Some(s) = source {
        // A rollup row stands for a partner's rows of a group: it has a sum when one of them
        // had a value, a count above zero when one of them was counted.
        return match (aggregate, s.schema.field_with_name(&m.name).is_ok()) {
            (Aggregate::Sum(_), _) => format!("f.{} IS NOT NULL", quote_ident(&m.name)),
            (_, true) => format!("f.{} > 0", quote_ident(&m.name)),
            // An unconditional distinct count of a key the rollup holds: every row has one.
            (_, false) => "TRUE".into(),
        };
    }
    let has_value = match aggregate {
        Aggregate::CountRows => None,
        Aggregate::Sum(e) | Aggregate::Count(e) | Aggregate::CountDistinct(e) => {
            Some(format!("({}) IS NOT NULL", e.qualified("f")))
        }
    };
    match (filter, has_value) {
        (Some(f), Some(v)) => format!("({}) AND {v}", f.qualified("f")),
        (Some(f), None) => format!("({})", f.qualified("f")),
        (None, Some(v)) => v,
        (None, None) => "TRUE".into(),
    }
}

/// A base metric's aggregate over its fact's rows (`f`), or summed again from a rollup's.
fn aggregate_sql(m: &Metric, source: Option<&RollupSource>) -> String {
    if let Some(s) = source {
        return rollups::reaggregate(m, s);
    }
    let MetricKind::Base { aggregate, filter } = &m.kind else {
        unreachable!("ratios are expanded into their parts")
    };
    let cond = |e: &str| match filter {
        Some(f) => format!("CASE WHEN {} THEN {} END", f.qualified("f"), e),
        None => e.to_string(),
    };
    match aggregate {
        Aggregate::Sum(e) => format!("SUM({})", cond(&e.qualified("f"))),
        Aggregate::CountRows => match filter {
            Some(f) => format!("COUNT(CASE WHEN {} THEN 1 END)", f.qualified("f")),
            None => "COUNT(*)".into(),
        },
        Aggregate::Count(e) => format!("COUNT({})", cond(&e.qualified("f"))),
        Aggregate::CountDistinct(e) => format!("COUNT(DISTINCT {})", cond(&e.qualified("f"))),
    }
}

/// One cell of an Arrow array as the text a CSV file gets (`Value::exact`): money with exactly
/// two decimals, ratios unrounded, nulls empty.
pub fn format_value(array: &dyn arrow::array::Array, row: usize, format: Option<Format>) -> String {
    answer::value_of(array, row, format, "").exact()
}

/// Rounds a decimal of any scale to cents, half away from zero.
fn rescale_to_cents(v: i128, scale: i8) -> i128 {
    if scale <= 2 {
        return v * 10i128.pow((2 - scale) as u32);
    }
    let div = 10i128.pow((scale - 2) as u32);
    let q = v / div;
    let r = v % div;
    if r.abs() * 2 >= div {
        q + v.signum()
    } else {
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_rounds_half_away_from_zero_to_cents() {
        assert_eq!(rescale_to_cents(123_456, 4), 1235);
        assert_eq!(rescale_to_cents(-123_450, 4), -1235);
        assert_eq!(rescale_to_cents(5, 0), 500);
    }
}
