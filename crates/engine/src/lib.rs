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

#![warn(missing_docs)]

pub mod answer;
pub mod api;
mod audience;
mod cache;
mod compile;
pub mod display;
mod model_check;
pub mod query;
pub mod risk;
mod rollups;
pub mod stats;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use arrow::record_batch::RecordBatch;
use chrono::NaiveDate;
use datafusion::prelude::SessionContext;
use prism_model::{Format, Grain, Metric, Model, did_you_mean};

pub use answer::{DIRECT_LABEL, Money, Row, Value};
pub use audience::Audience;
pub(crate) use compile::{Comparison, Shift};
pub use model_check::check_model;
pub use query::{Filter, FilterOp, Order, Period, Query};
pub(crate) use rollups::aggregate_sql;
pub use rollups::{RollupChoice, is_table_of};
pub use stats::{AnsweredFrom, EngineStats};

/// A session over one warehouse version, as the engine runs queries on it. Callers hold one
/// without needing to know the query engine behind it.
pub type Session = SessionContext;

/// Why a query cannot be answered.
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
    /// DataFusion failed running it.
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

/// A column of a result.
#[derive(Clone, Debug, PartialEq)]
pub struct ResultColumn {
    /// Its name as asked.
    pub name: String,
    /// `None` for dimensions.
    pub format: Option<Format>,
}

/// An answer: its columns and its rows as Arrow batches, with the SQL that computed it.
#[derive(Clone, Debug)]
pub struct QueryResult {
    /// The columns, in order.
    pub columns: Vec<ResultColumn>,
    /// The rows.
    pub batches: Vec<RecordBatch>,
    /// The SQL it was computed by.
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

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The compiled form of a query, before execution.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// For reading: a listing's whole statement; a question's aggregations, the stage still
    /// written as SQL (`explain` also prints the whole plan).
    pub sql: String,
    /// What runs.
    pub statement: Statement,
    /// The answer's columns.
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
    /// Its fact rows are filtered by a dimension key (any number of values) or by the audience's
    /// partners: the scans filter while decoding (`prism_warehouse::filter_while_decoding`),
    /// since the rows kept are a part of each page. A question filtered only by time or by
    /// attributes decodes whole pages and filters after, which is faster when a filter keeps
    /// many rows. A narrow question is filtered by a key; a listing keeps the filtering while
    /// decoding it was written for.
    pub by_key: bool,
}

impl Compiled {
    /// A listing: SQL that runs as it stands, with its columns.
    pub(crate) fn listing(sql: String, columns: Vec<ResultColumn>) -> Compiled {
        Compiled {
            sql,
            statement: Statement::Sql,
            columns,
            metrics: Vec::new(),
            rollups: Vec::new(),
            narrow: false,
            by_key: true,
        }
    }
}

/// What a compiled query runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Statement {
    /// A listing (a dimension's members, a fact's rows): `Compiled::sql` as it stands.
    Sql,
    /// A question of the model: its stages, built into a DataFusion plan over the session.
    Question(Box<compile::Stages>),
}

impl Compiled {
    /// What the result cache knows the answer by: the same statement over the same session is
    /// the same answer.
    fn cache_key(&self) -> String {
        match &self.statement {
            Statement::Sql => self.sql.clone(),
            Statement::Question(stages) => format!("{stages:?}"),
        }
    }
}

/// Compiles questions of the model into SQL and runs them over a session of the warehouse, in an audience.
pub struct Engine {
    /// The model it answers from.
    pub model: Model,
    cache: Option<cache::ResultCache>,
    use_rollups: bool,
    /// Each rollup's table name (see `rollup_table`), made once: every query looks them up.
    rollup_tables: BTreeMap<String, String>,
    /// Each attribute's type in the warehouse (`model_check::attribute_types`), made once:
    /// filters compare values of that type.
    attribute_types: BTreeMap<String, arrow::datatypes::DataType>,
    /// Each summed base metric's type as its fact's table sums it, when a sum of those sums
    /// can be given that type again (`model_check::sum_types`): the metrics an aggregation
    /// may group twice (`compile::late`).
    sum_types: BTreeMap<String, arrow::datatypes::DataType>,
    /// Answers given and their times, for monitoring.
    stats: stats::EngineStats,
    /// DataFusion's functions and SQL planner, to plan the model's expressions with: made once,
    /// no tables in it.
    planner: datafusion::execution::SessionState,
}

impl Engine {
    /// An engine over a model, reading rollups where they answer, keeping no answers.
    pub fn new(model: Model) -> Engine {
        let mut engine = Engine {
            model,
            cache: None,
            use_rollups: true,
            rollup_tables: BTreeMap::new(),
            attribute_types: BTreeMap::new(),
            sum_types: BTreeMap::new(),
            stats: stats::EngineStats::default(),
            planner: datafusion::execution::SessionStateBuilder::new()
                .with_default_features()
                .build(),
        };
        engine.attribute_types = model_check::attribute_types(&engine.model);
        engine.sum_types = model_check::sum_types(&engine.model);
        engine.rollup_tables = engine
            .model
            .rollups
            .keys()
            .map(|r| (r.clone(), engine.rollup_table_of(r)))
            .collect();
        // The accounts at risk, built by every load beside the model's rollups.
        if let Some(b) = engine.risk_build() {
            engine.rollup_tables.insert(b.name, b.table);
        }
        engine
    }

    /// The answers this engine gave and their times, for monitoring.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
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
        self.compile_members_with(dimension, audience.rows_scope()?, true, None)
    }

    /// `compile_members`; with the session's built rollups, a partner's members of a fact are
    /// read from the smallest rollup holding the partner and the dimension's key.
    fn compile_members_with(
        &self,
        dimension: &str,
        scope: &Scope,
        ordered: bool,
        built: Option<&prism_warehouse::BuiltRollups>,
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
        let condition = self.members_condition(d, scope, built);
        let mut sql = format!("SELECT {} FROM {} m", select.join(", "), d.table);
        if let Some(c) = condition {
            write!(sql, " WHERE {c}").expect("string");
        }
        if ordered {
            write!(sql, " ORDER BY m.{}", d.key).expect("string");
        }
        Ok(Compiled::listing(sql, columns))
    }

    /// Which members of a dimension (`m`) an audience sees: every one, or its partners
    /// themselves, or the members its partners' fact rows reach (from the smallest rollup
    /// holding them) and those it owns; every product, the catalogue being the brand owner's.
    fn members_condition(
        &self,
        d: &prism_model::Dimension,
        scope: &Scope,
        built: Option<&prism_warehouse::BuiltRollups>,
    ) -> Option<String> {
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
        match (&partners, d.name.as_str()) {
            (None, _) => None,
            (Some(list), "partner") => Some(format!("m.{} IN ({list})", d.key)),
            // The catalogue is the brand owner's, and the same for every partner.
            (Some(_), "product") => None,
            (Some(list), _) => {
                let mut served: Vec<String> = self
                    .model
                    .facts
                    .values()
                    .filter(|f| f.reaches.contains(&d.name))
                    .map(|f| {
                        let (table, key) = self
                            .members_rollup(&f.name, &d.name, built)
                            .unwrap_or_else(|| (f.table.clone(), d.key.clone()));
                        format!("SELECT {key} FROM {table} WHERE partner_id IN ({list})")
                    })
                    .collect();
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
        }
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
        Ok(Compiled::listing(sql, columns))
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

    /// The smallest built rollup of a fact that holds each partner's members of a dimension
    /// (the partner and the dimension's key among its dimensions; not a channel rollup, which
    /// holds no partner): its table and the key's column. A rollup groups every row of its fact,
    /// so it holds the same (partner, member) pairs as the fact, in far fewer rows: the
    /// customers of one partner read 7.7 M order lines at scale 8, their rollup a fraction.
    fn members_rollup(
        &self,
        fact: &str,
        dimension: &str,
        built: Option<&prism_warehouse::BuiltRollups>,
    ) -> Option<(String, String)> {
        let built = built.filter(|_| self.use_rollups)?;
        let key = format!("{dimension}.{}", self.model.dimensions[dimension].key);
        self.model
            .rollups
            .values()
            .filter(|r| r.fact == fact && !r.channel)
            .filter(|r| r.dimensions.iter().any(|d| d == "partner.partner_id"))
            .filter(|r| r.dimensions.contains(&key))
            .filter_map(|r| {
                let table = self.rollup_table(&r.name);
                let rows = built.tables.get(&table)?.rows;
                let column = quote_ident(&self.rollup_column(r, &key));
                Some((rows, table, column))
            })
            .min_by_key(|(rows, ..)| *rows)
            .map(|(_, table, column)| (table, column))
    }

    /// Runs `compile_members`.
    pub async fn members(
        &self,
        ctx: &SessionContext,
        dimension: &str,
        audience: &Audience,
    ) -> Result<QueryResult, EngineError> {
        let built = built_rollups(ctx);
        let compiled =
            self.compile_members_with(dimension, audience.rows_scope()?, true, built.as_deref())?;
        self.execute(ctx, compiled).await
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
            self.compile_members_with(
                dimension,
                audience.rows_scope()?,
                false,
                built_rollups(ctx).as_deref(),
            )?,
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
        let day = self.newest(session, metric, audience, "time.day").await?;
        Ok(day.and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()))
    }

    /// The first day of the newest month with a row of the metric's fact (a derived form's
    /// base metric) in the audience; none when it has no row. What a period relative to the
    /// newest data needs (`latest-quarter`), asked by month so that a rollup answers it: by day,
    /// one partner's newest order line read every order line.
    pub async fn newest_month(
        &self,
        session: &SessionContext,
        metric: &str,
        audience: &Audience,
    ) -> Result<Option<NaiveDate>, EngineError> {
        let month = self.newest(session, metric, audience, "time.month").await?;
        Ok(month.and_then(|m| NaiveDate::parse_from_str(&format!("{m}-01"), "%Y-%m-%d").ok()))
    }

    /// The newest member of a time dimension (`time.day`) with a row of the metric's fact in
    /// the audience, as the answer writes it.
    async fn newest(
        &self,
        session: &SessionContext,
        metric: &str,
        audience: &Audience,
        time: &str,
    ) -> Result<Option<String>, EngineError> {
        let base = metric.split(':').next().unwrap_or(metric).to_string();
        let query = Query {
            metrics: vec![base],
            by: vec![time.into()],
            order: vec![Order {
                column: time.into(),
                descending: true,
            }],
            limit: Some(1),
            ..Query::default()
        };
        let result = self.run(session, &query, audience).await?;
        Ok(result
            .rows()
            .first()
            .and_then(|r| r.text(time).map(str::to_string)))
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

    /// The compiled query as it is run: in the session, or for a query filtered by a key in a
    /// copy of its state that filters while decoding (`prism_warehouse::filter_while_decoding`)
    /// and, for a narrow one, assumes a filter keeps 1 % of the rows.
    async fn dataframe(
        &self,
        ctx: &SessionContext,
        compiled: &Compiled,
    ) -> Result<datafusion::dataframe::DataFrame, EngineError> {
        let mut state = ctx.state();
        if compiled.by_key {
            // Not creating a default catalog: it would hide the session's tables.
            let mut config = state
                .config()
                .clone()
                .with_create_default_catalog_and_schema(false);
            if compiled.narrow {
                config.options_mut().optimizer.default_filter_selectivity = NARROW_SELECTIVITY_PCT;
            }
            prism_warehouse::filter_while_decoding(config.options_mut(), true);
            state = datafusion::execution::SessionStateBuilder::new_from_existing(state)
                .with_config(config)
                .build();
        }
        let plan = match &compiled.statement {
            Statement::Sql => state.create_logical_plan(&compiled.sql).await?,
            Statement::Question(stages) => self.logical_plan(&state, stages).await?,
        };
        Ok(datafusion::dataframe::DataFrame::new(state, plan))
    }

    /// DataFusion's logical plan of a compiled query, unoptimised, and the same as SQL when
    /// DataFusion's unparser can write it.
    pub async fn logical_plan_of(
        &self,
        ctx: &SessionContext,
        compiled: &Compiled,
    ) -> Result<(String, Option<String>), EngineError> {
        let plan = self.dataframe(ctx, compiled).await?.into_unoptimized_plan();
        let sql = datafusion::sql::unparser::plan_to_sql(&plan)
            .ok()
            .map(|s| s.to_string());
        Ok((plan.display_indent().to_string(), sql))
    }

    /// DataFusion's physical plan of a compiled query, as it runs; with `analyze`, run, with the
    /// time and rows of each step.
    pub async fn explain_plan(
        &self,
        ctx: &SessionContext,
        compiled: &Compiled,
        analyze: bool,
    ) -> Result<Vec<RecordBatch>, EngineError> {
        Ok(self
            .dataframe(ctx, compiled)
            .await?
            .explain(false, analyze)?
            .collect()
            .await?)
    }

    async fn execute(
        &self,
        ctx: &SessionContext,
        compiled: Compiled,
    ) -> Result<QueryResult, EngineError> {
        let session = ctx.session_id();
        let started = std::time::Instant::now();
        let key = compiled.cache_key();
        if let Some(batches) = self.cache.as_ref().and_then(|c| c.get(&session, &key)) {
            self.stats
                .record(AnsweredFrom::Cache, started.elapsed().as_secs_f64());
            return Ok(QueryResult {
                columns: compiled.columns,
                batches,
                sql: compiled.sql,
            });
        }
        let batches = self.dataframe(ctx, &compiled).await?.collect().await?;
        if let Some(c) = &self.cache {
            c.put(&session, &key, &batches);
        }
        let from = match compiled.rollups.iter().any(|c| c.rollup.is_some()) {
            true => AnsweredFrom::Rollup,
            false => AnsweredFrom::Base,
        };
        self.stats.record(from, started.elapsed().as_secs_f64());
        Ok(QueryResult {
            columns: compiled.columns,
            batches,
            sql: compiled.sql,
        })
    }
}

/// The rollups registered in a session (see `prism_warehouse::BuiltRollups`).
fn built_rollups(ctx: &SessionContext) -> Option<std::sync::Arc<prism_warehouse::BuiltRollups>> {
    ctx.state_ref()
        .read()
        .config()
        .get_extension::<prism_warehouse::BuiltRollups>()
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

/// The condition an audience puts on every fact row (`f`) of a listing, as SQL: its partners' rows only, and for a
/// benchmark every partner's rows but no direct sales.
pub(crate) fn scope_condition(scope: &Scope, benchmark: bool) -> Option<String> {
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
