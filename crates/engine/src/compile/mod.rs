//! The compiler: a query and an audience into a DataFusion plan, in stages — the metrics and
//! their parts per fact, the compared periods, each fact's source (a rollup or the base), each
//! fact's aggregation, the drill-across join, the derived forms, and order and limit.
//!
//! Every stage is typed expressions (`Expr`): each fact's aggregation as the steps of a plan
//! (`fact.rs`, `late.rs`, over `exprs.rs`; `rows.rs` builds them over a session's tables), the
//! stages after it assembled with `LogicalPlanBuilder` (`statement.rs`). Model expressions are
//! planned from their parsed trees by DataFusion's SQL planner; nothing is SQL text but the
//! rollups' definitions (`rollups.rs`).

mod across;
mod derived;
mod exprs;
mod fact;
mod late;
mod rows;
mod statement;

pub(crate) use across::Joins;
pub(crate) use derived::{Comparison, Derived, Shift, compared};
pub(crate) use fact::{
    aggregation_alias, aggregation_of, contributors_column, direct_flag, metric_parts,
};
pub(crate) use rows::Step;

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, TableReference};
use datafusion::logical_expr::{Expr, SortExpr};
use prism_model::{Grain, Metric, MetricKind, did_you_mean};

use crate::rollups::{Need, RollupSource};
use crate::{
    Compiled, Dim, Engine, EngineError, Filter, FilterOp, NARROW_VALUES, Query, ResultColumn,
    Scope, Statement,
};

/// Text as DataFusion's SQL planner reads `VARCHAR` (`map_string_types_to_utf8view`), so that
/// a label has the type it had when the whole statement was SQL.
pub(crate) const TEXT: DataType = DataType::Utf8View;

/// A column of the answer's rows by its name, which may hold a dot (`partner.tier`) and is
/// never read as a table's name.
pub(crate) fn named(name: &str) -> Expr {
    Expr::Column(Column::from_name(name))
}

/// A column of one aggregation (`agg_order_lines.d0`).
pub(crate) fn of(aggregation: &str, column: &str) -> Expr {
    Expr::Column(Column::new(Some(TableReference::bare(aggregation)), column))
}

/// The stages of a compiled question after each fact's aggregation, as typed expressions:
/// built into a DataFusion plan over a session by `Engine::logical_plan`.
#[derive(Clone, Debug, PartialEq)]
pub struct Stages {
    /// Each fact's aggregation, for the period and each compared period.
    pub(crate) aggregations: Vec<Aggregation>,
    /// How the aggregations are joined.
    pub(crate) joins: Joins,
    /// The joined rows' columns: labels, metrics from their parts, a benchmark's count.
    pub(crate) across: Vec<Expr>,
    /// The answer's columns: the dimensions and each metric as asked (derived forms included).
    pub(crate) answer: Vec<Expr>,
    /// The order of the answer's rows.
    pub(crate) order: Vec<SortExpr>,
    /// At most this many rows.
    pub(crate) limit: Option<usize>,
}

/// One metric as the query asks it: its column name, the model metric, and its derived form.
pub(crate) type Asked<'m> = (String, &'m Metric, Option<Derived>);

/// One aggregation of the statement: its alias, its plan's steps, and whether its rows add
/// keys to the answer (a compared period's rows do not, on a time cut: a month after the last
/// one is not a row of a trend).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Aggregation {
    pub alias: String,
    pub steps: Vec<Step>,
    pub adds_keys: bool,
}

/// What every stage after the first reads: the query's metrics and dimensions, resolved.
pub(crate) struct Plan<'q> {
    pub query: &'q Query,
    pub scope: &'q Scope,
    pub benchmark: bool,
    pub asked: Vec<Asked<'q>>,
    /// The model metrics asked, each once, in the order first asked.
    pub metrics: Vec<&'q Metric>,
    pub dims: Vec<(String, Dim)>,
    pub filters: Vec<(&'q Filter, Dim)>,
    /// The base metrics each aggregation must compute (a ratio's parts), by aggregation.
    pub per_fact: BTreeMap<String, Vec<&'q Metric>>,
    /// The earlier periods compared with, and how far each moves to meet the query's.
    pub shifts: Vec<(Comparison, Shift)>,
}

impl Plan<'_> {
    /// The finest time grain the query is cut by, if any.
    pub fn finest_grain(&self) -> Option<Grain> {
        self.dims
            .iter()
            .filter_map(|(_, d)| match d {
                Dim::Time { grain } => Some(*grain),
                _ => None,
            })
            .min()
    }

    pub fn comparisons(&self) -> Vec<Comparison> {
        self.shifts.iter().map(|(c, _)| *c).collect()
    }
}

impl Engine {
    /// Compiles a query in stages: resolve it (`plan`), choose each fact's source, aggregate
    /// each fact for the period and each compared period, join the aggregations on the
    /// dimensions (`drill_across`), add the derived forms (`derived::outer`), order and limit.
    pub(crate) fn compile_with(
        &self,
        query: &Query,
        scope: &Scope,
        benchmark: bool,
        built: Option<&prism_warehouse::BuiltRollups>,
    ) -> Result<Compiled, EngineError> {
        let plan = self.plan_query(query, scope, benchmark)?;
        let (sources, choices) = self.sources(&plan, built);
        let aggregations = self.aggregations(&plan, &sources, built)?;
        let (joins, across, base_columns) = self.drill_across(&plan, &aggregations);
        let (answer, columns) = derived::outer(&plan, &base_columns);
        let order = order_by(&plan, &columns)?;
        // For reading (`explain`, an administrator's view of a panel): each aggregation's
        // steps under its name.
        let sql = aggregations
            .iter()
            .map(|a| format!("-- {}\n{}", a.alias, rows::described(&a.steps)))
            .collect::<Vec<_>>()
            .join("\n");
        Ok(Compiled {
            sql,
            statement: Statement::Question(Box::new(Stages {
                aggregations,
                joins,
                across,
                answer,
                order,
                limit: plan.query.limit,
            })),
            columns,
            metrics: plan.metrics.iter().map(|m| (*m).clone()).collect(),
            rollups: choices,
            narrow: self.is_narrow(&plan),
            by_key: self.filters_by_key(&plan),
        })
    }

    /// The query resolved against the model: each asked metric (a model metric, or one in a
    /// derived form: `closed_revenue:rank`), each dimension and filter, the parts each fact
    /// aggregates, and the compared periods.
    fn plan_query<'q>(
        &'q self,
        query: &'q Query,
        scope: &'q Scope,
        benchmark: bool,
    ) -> Result<Plan<'q>, EngineError> {
        if query.metrics.is_empty() {
            return Err(EngineError::Invalid(
                "a query needs at least one metric".into(),
            ));
        }
        let mut asked: Vec<Asked> = Vec::new();
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
        let per_fact = self.parts_by_aggregation(&metrics);
        let mut plan = Plan {
            query,
            scope,
            benchmark,
            asked,
            metrics,
            dims,
            filters,
            per_fact,
            shifts: Vec::new(),
        };
        plan.shifts = derived::shifts(&plan)?;
        Ok(plan)
    }

    /// The base metrics each aggregation must compute, ratios expanded into their parts. Each
    /// part is aggregated with its own fact: a ratio of two facts' metrics is divided after the
    /// two aggregations are joined. A state is read apart from the flows of its fact, at the
    /// period's last day instead of over the period.
    fn parts_by_aggregation<'m>(
        &'m self,
        metrics: &[&'m Metric],
    ) -> BTreeMap<String, Vec<&'m Metric>> {
        let mut per_fact: BTreeMap<String, Vec<&Metric>> = BTreeMap::new();
        for m in metrics {
            let parts: Vec<&Metric> = match &m.kind {
                MetricKind::Base { .. } => vec![m],
                MetricKind::Ratio {
                    numerator,
                    denominator,
                    ..
                } => vec![
                    &self.model.metrics[numerator],
                    &self.model.metrics[denominator],
                ],
            };
            for p in parts {
                let list = per_fact.entry(aggregation_of(p)).or_default();
                if !list.iter().any(|x| x.name == p.name) {
                    list.push(p);
                }
            }
        }
        per_fact
    }

    /// Each aggregation reads the smallest rollup that answers all of its parts, or the base.
    fn sources(
        &self,
        plan: &Plan<'_>,
        built: Option<&prism_warehouse::BuiltRollups>,
    ) -> (
        BTreeMap<String, Option<RollupSource<'_>>>,
        Vec<crate::RollupChoice>,
    ) {
        let mut sources = BTreeMap::new();
        let mut choices = Vec::new();
        for (aggregation, parts) in &plan.per_fact {
            let need = Need {
                parts,
                dims: &plan.dims,
                filters: &plan.filters,
                period: plan.query.period.as_ref(),
                shifts: &plan.shifts,
                scope: plan.scope,
                benchmark: plan.benchmark,
            };
            let (source, choice) = self.navigate(&parts[0].fact, &need, built);
            sources.insert(aggregation.clone(), source);
            choices.push(choice);
        }
        (sources, choices)
    }

    /// One aggregation per fact for the query's period, and one per fact and compared period.
    fn aggregations(
        &self,
        plan: &Plan<'_>,
        sources: &BTreeMap<String, Option<RollupSource<'_>>>,
        built: Option<&prism_warehouse::BuiltRollups>,
    ) -> Result<Vec<Aggregation>, EngineError> {
        let mut views: Vec<(Option<Comparison>, Option<Shift>)> = vec![(None, None)];
        views.extend(plan.shifts.iter().map(|(c, i)| (Some(*c), Some(*i))));
        let mut out = Vec::new();
        for (comparison, shift) in views {
            for (aggregation, parts) in &plan.per_fact {
                let source = sources.get(aggregation).and_then(Option::as_ref);
                let steps =
                    self.fact_rows(plan, parts, shift, source, built.and_then(|b| b.loaded_on))?;
                out.push(Aggregation {
                    alias: aggregation_alias(aggregation, comparison),
                    steps,
                    // A partner that sold last quarter and not this one is a row of "revenue by
                    // partner with its change"; a month after the last one is not a row of a trend.
                    adds_keys: comparison.is_none() || plan.finest_grain().is_none(),
                });
            }
        }
        Ok(out)
    }

    /// How many values each filter on a dimension's key keeps its rows to.
    fn key_filter_values<'p>(&'p self, plan: &'p Plan<'_>) -> impl Iterator<Item = usize> + 'p {
        plan.filters.iter().filter_map(|(f, d)| match (d, &f.op) {
            (
                Dim::Attribute {
                    dimension,
                    attribute,
                },
                FilterOp::In(values),
            ) if self.model.dimensions[dimension].key == *attribute => Some(values.len()),
            _ => None,
        })
    }

    /// Its fact rows are filtered by a dimension key or by the audience's partners; a narrow
    /// question is.
    fn filters_by_key(&self, plan: &Plan<'_>) -> bool {
        matches!(plan.scope, Scope::Partners(_))
            || self.is_narrow(plan)
            || self.key_filter_values(plan).next().is_some()
    }

    /// Its fact rows are a sliver of the table: one partner's, or a key pinned to a few values.
    fn is_narrow(&self, plan: &Plan<'_>) -> bool {
        matches!(plan.scope, Scope::Partner(_))
            || self.key_filter_values(plan).any(|n| n <= NARROW_VALUES)
    }
}

/// The order of the answer's rows: what was asked, then the dimensions (a stable order), each
/// with empty values last.
fn order_by(plan: &Plan<'_>, columns: &[ResultColumn]) -> Result<Vec<SortExpr>, EngineError> {
    let query = plan.query;
    let mut order = Vec::new();
    for o in &query.order {
        if !columns.iter().any(|c| c.name == o.column) {
            return Err(EngineError::Invalid(format!(
                "cannot order by `{}`: it is not a metric or dimension of this query{}",
                o.column,
                did_you_mean(&o.column, columns.iter().map(|c| c.name.as_str()))
            )));
        }
        order.push(named(&o.column).sort(!o.descending, false));
    }
    for (name, _) in &plan.dims {
        if !query.order.iter().any(|o| &o.column == name) {
            order.push(named(name).sort(true, false));
        }
    }
    Ok(order)
}
