//! One fact's aggregation as the steps of a DataFusion plan: which tables are read under which
//! names, how they are joined, the conditions, the grouping and the columns, each a typed
//! expression (`Expr`). The compiler writes the steps without a session; `Engine::logical_plan`
//! builds them with `LogicalPlanBuilder` over the session's own tables.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::execution::SessionState;
use datafusion::functions_aggregate::expr_fn::min;
use datafusion::logical_expr::{
    Expr, JoinType, LogicalPlan, LogicalPlanBuilder, TableSource, cast, scalar_subquery,
};

use super::named;
use crate::EngineError;

/// One step of an aggregation's plan, applied to the rows of the steps before it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Step {
    /// A table of the session, its columns read under `alias` (`f.partner_id`).
    Scan { table: String, alias: String },
    /// One row per expression, a column `as_of`: the days a state is read at.
    Days(Vec<Expr>),
    /// Every row of the rows so far, with the matching row of `right` or none.
    LeftJoin { right: Vec<Step>, on: Expr },
    /// Every row of the rows so far with every row of `right`.
    CrossJoin(Vec<Step>),
    /// Only the rows where the condition holds.
    Filter(Expr),
    /// One row per group: the grouping expressions' columns, then the aggregates'.
    Aggregate {
        group: Vec<Expr>,
        aggregates: Vec<Expr>,
    },
    /// The columns computed from each row.
    Project(Vec<Expr>),
    /// The rows so far read under a name.
    Alias(String),
    /// Only the rows whose `column` is on or after the first day of `table`'s `time`: a state
    /// read by a time grain over no period starts at its fact's first row.
    FromFirstDay {
        column: String,
        table: String,
        time: String,
    },
}

/// The tables an aggregation's steps read.
fn tables_read<'s>(steps: &'s [Step], out: &mut Vec<&'s str>) {
    for s in steps {
        match s {
            Step::Scan { table, .. } | Step::FromFirstDay { table, .. } => out.push(table),
            Step::LeftJoin { right, .. } | Step::CrossJoin(right) => tables_read(right, out),
            _ => {}
        }
    }
}

/// The session's tables an aggregation's steps read, by name.
pub(crate) async fn sources(
    state: &SessionState,
    steps: &[Step],
) -> Result<BTreeMap<String, Arc<dyn TableSource>>, EngineError> {
    let mut names = Vec::new();
    tables_read(steps, &mut names);
    let mut sources = BTreeMap::new();
    for name in names {
        if sources.contains_key(name) {
            continue;
        }
        let reference = TableReference::bare(name);
        let provider = state
            .schema_for_ref(reference.clone())?
            .table(name)
            .await?
            .ok_or_else(|| {
                EngineError::Invalid(format!(
                    "the warehouse has no table `{name}`: load it first"
                ))
            })?;
        sources.insert(name.to_string(), provider_as_source(provider));
    }
    Ok(sources)
}

/// An aggregation's steps built into a plan over the tables `sources` holds.
pub(crate) fn build(
    steps: &[Step],
    sources: &BTreeMap<String, Arc<dyn TableSource>>,
) -> Result<LogicalPlan, EngineError> {
    let scan = |table: &str| -> Result<LogicalPlanBuilder, EngineError> {
        let source = sources
            .get(table)
            .cloned()
            .expect("every table read is among the sources (`tables_read`)");
        Ok(LogicalPlanBuilder::scan(
            TableReference::bare(table),
            source,
            None,
        )?)
    };
    let mut rows: Option<LogicalPlanBuilder> = None;
    let so_far = |rows: Option<LogicalPlanBuilder>| {
        rows.expect("an aggregation's steps start with its rows (a scan or days)")
    };
    for step in steps {
        rows = Some(match step {
            Step::Scan { table, alias } => scan(table)?.alias(alias.as_str())?,
            Step::Days(days) => {
                LogicalPlanBuilder::values(days.iter().map(|d| vec![d.clone()]).collect())?
                    .project([named("column1").alias("as_of")])?
            }
            Step::LeftJoin { right, on } => {
                so_far(rows).join_on(build(right, sources)?, JoinType::Left, [on.clone()])?
            }
            Step::CrossJoin(right) => so_far(rows).cross_join(build(right, sources)?)?,
            Step::Filter(condition) => so_far(rows).filter(condition.clone())?,
            Step::Aggregate { group, aggregates } => grouped(so_far(rows), group, aggregates)?,
            Step::Project(columns) => so_far(rows).project(columns.clone())?,
            Step::Alias(name) => so_far(rows).alias(name.as_str())?,
            Step::FromFirstDay {
                column,
                table,
                time,
            } => {
                let first = scan(table)?
                    .aggregate(
                        Vec::<Expr>::new(),
                        [min(cast(named(time), DataType::Date32))],
                    )?
                    .build()?;
                so_far(rows).filter(named(column).gt_eq(scalar_subquery(Arc::new(first))))?
            }
        });
    }
    Ok(so_far(rows).build()?)
}

/// The rows grouped by each distinct expression once, each asked name read after: the partner
/// key asked as a dimension (`f.partner_id AS d0`) and as the key a late join joins on
/// (`f.partner_id AS partner_id`) is one key, as DataFusion's SQL planner makes it — grouping by
/// the same string twice takes twice the time. The aggregates are named after the aggregation
/// too, as the SQL planner names them: DataFusion's optimizer turns an aggregation whose
/// aggregates are all distinct counts of one value into a grouping by that value and a count
/// (certified people: a grouping and a count where a set of person ids was kept per partner),
/// and it does not recognise an aggregate that carries its name.
fn grouped(
    rows: LogicalPlanBuilder,
    group: &[Expr],
    aggregates: &[Expr],
) -> Result<LogicalPlanBuilder, EngineError> {
    // An expression without a name keeps its own (and its table's qualifier) when asked once.
    let unnamed = |e: &Expr| match e {
        Expr::Alias(a) => (a.expr.as_ref().clone(), Some(a.name.clone())),
        e => (e.clone(), None),
    };
    // Each distinct expression once, with the positions of the names asked of it.
    let once = |exprs: &[Expr]| {
        let mut distinct: Vec<Expr> = Vec::new();
        let mut names = Vec::new();
        for e in exprs {
            let (e, name) = unnamed(e);
            let i = match distinct.iter().position(|d| *d == e) {
                Some(i) => i,
                None => {
                    distinct.push(e.clone());
                    distinct.len() - 1
                }
            };
            let asked_before = names.iter().any(|(j, _)| *j == i);
            let name = match name {
                None if asked_before => Some(e.schema_name().to_string()),
                name => name,
            };
            names.push((i, name));
        }
        (distinct, names)
    };
    let (keys, key_names) = once(group);
    let (computed, computed_names) = once(aggregates);
    let aggregated = rows.aggregate(keys.clone(), computed)?;
    let schema = aggregated.schema().clone();
    let column = |i: usize| Expr::Column(Column::from(schema.qualified_field(i)));
    let columns: Vec<Expr> = key_names
        .into_iter()
        .chain(
            computed_names
                .into_iter()
                .map(|(i, name)| (keys.len() + i, name)),
        )
        .map(|(i, name)| match name {
            Some(name) => column(i).alias(name),
            None => column(i),
        })
        .collect();
    Ok(aggregated.project(columns)?)
}

/// An aggregation's steps for reading, a line each: `explain` prints them, and an
/// administrator sees them beside a panel.
pub(crate) fn described(steps: &[Step]) -> String {
    let list = |exprs: &[Expr]| {
        exprs
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let inner = |right: &[Step]| match right {
        [Step::Scan { table, alias }] => format!("{table} AS {alias}"),
        _ => format!("({})", described(right).replace('\n', " ")),
    };
    steps
        .iter()
        .map(|s| match s {
            Step::Scan { table, alias } => format!("FROM {table} AS {alias}"),
            Step::Days(days) => format!("DAYS {}", list(days)),
            Step::LeftJoin { right, on } => format!("LEFT JOIN {} ON {on}", inner(right)),
            Step::CrossJoin(right) => format!("CROSS JOIN {}", inner(right)),
            Step::Filter(c) => format!("WHERE {c}"),
            Step::Aggregate { group, aggregates } => {
                format!("GROUP BY {} COMPUTE {}", list(group), list(aggregates))
            }
            Step::Project(columns) => format!("SELECT {}", list(columns)),
            Step::Alias(name) => format!("AS {name}"),
            Step::FromFirstDay {
                column,
                table,
                time,
            } => format!("WHERE {column} >= first day of {table}.{time}"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
