//! A fact aggregated by its dimensions' keys first, and joined to those dimensions after: their
//! attributes (a partner's name, tier and region) are read for the few aggregated rows rather
//! than for every fact row, and the fact's rows are grouped by one narrow key rather than by
//! several long labels. Revenue by partner name over millions of order lines groups by
//! `partner_id` and joins a few thousand rows to the partners.
//!
//! Used for base tables only (a rollup's rows are few already), off a benchmark (whose
//! contributing partners are counted over fact rows), and off a state (read at days, not over
//! rows). When a dimension's key is not among the asked dimensions (revenue by tier), the rows
//! are grouped again by its attributes, which only sums and counts allow: a distinct count does
//! not add up, so such a question joins first as before.

use std::collections::BTreeSet;

use arrow::datatypes::DataType;
use datafusion::functions_aggregate::expr_fn::sum;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, cast, lit};
use prism_model::{Aggregate, Metric, MetricKind};

use super::Plan;
use super::fact::{Grouped, direct_flag, fact_source};
use super::of;
use super::rows::Step;
use crate::{Dim, Engine, EngineError};

/// How an aggregation joins late: what it groups by first, and how its rows are read after.
struct Regrouped<'e> {
    /// The keys of the joined dimensions, grouped by first.
    keys: BTreeSet<&'e str>,
    /// The outer rows are the inner rows, one each: every joined dimension's key is asked.
    one_to_one: bool,
    /// Whether rows say if they are direct sales, and if so whether that is read from the
    /// partner key after the join (it is grouped by) rather than grouped by before it.
    direct: Option<bool>,
}

impl Engine {
    /// The aggregation as keys first and dimensions after, or `None` where it must join first
    /// (see the module's note). `joins` are the dimensions the question reads attributes of.
    pub(crate) fn late_joined(
        &self,
        plan: &Plan<'_>,
        parts: &[&Metric],
        day: &Expr,
        joins: &BTreeSet<String>,
    ) -> Result<Option<Vec<Step>>, EngineError> {
        let Some(shape) = self.regrouped(plan, parts, joins) else {
            return Ok(None);
        };
        let (mut steps, after) = self.grouped_by_keys(plan, parts, day, &shape)?;
        // Those rows joined to the dimensions, and grouped again where a key was not asked.
        steps.extend(joins.iter().map(|j| self.dimension_join(j)));
        if let Some(c) = conjunction(after) {
            steps.push(Step::Filter(c));
        }
        let mut group = Vec::new();
        for (i, (_, d)) in plan.dims.iter().enumerate() {
            let value = if self.joined_dimension(d, None).is_some() {
                self.group_expr(d, day, None)?
            } else {
                of("f", &format!("d{i}"))
            };
            group.push(value.alias(format!("d{i}")));
        }
        if let Some(from_key) = shape.direct {
            let direct = match from_key {
                true => of("f", "partner_id").is_null(),
                false => of("f", "direct"),
            };
            group.push(direct.alias("direct"));
        }
        let mut aggregates = Vec::new();
        for p in parts {
            let column = of("f", &p.name);
            let value = if shape.one_to_one {
                column
            } else {
                self.summed_again(p, column, plan.dims.is_empty())
            };
            aggregates.push(value.alias(&p.name));
        }
        steps.push(if shape.one_to_one {
            Step::Project(group.into_iter().chain(aggregates).collect())
        } else {
            Step::Aggregate { group, aggregates }
        });
        Ok(Some(steps))
    }

    /// The fact's rows grouped by the joined dimensions' keys and the dimensions that need no
    /// join, over the audience, the period and the filters a fact row can answer, read as `f`;
    /// and the filters on the joined dimensions' attributes, for after the join. A dimension's
    /// key is on the fact: a filter on it is applied before.
    fn grouped_by_keys(
        &self,
        plan: &Plan<'_>,
        parts: &[&Metric],
        day: &Expr,
        shape: &Regrouped<'_>,
    ) -> Result<(Vec<Step>, Vec<Expr>), EngineError> {
        let late = |d: &Dim| self.joined_dimension(d, None).is_some();
        let fact = &self.model.facts[&parts[0].fact];
        let schema = self.rows_schema(fact, false, None);
        let mut grouped = Grouped {
            group: Vec::new(),
            aggregates: Vec::new(),
        };
        for (i, (_, d)) in plan.dims.iter().enumerate() {
            if !late(d) {
                grouped
                    .group
                    .push(self.group_expr(d, day, None)?.alias(format!("d{i}")));
            }
        }
        for key in &shape.keys {
            grouped.group.push(of("f", key).alias(*key));
        }
        if shape.direct == Some(false) {
            grouped
                .group
                .push(of("f", "partner_id").is_null().alias("direct"));
        }
        for p in parts {
            grouped
                .aggregates
                .push(self.aggregate_expr(p, None, &schema, parts)?.alias(&p.name));
        }
        // Never a benchmark here (`regrouped`): the audience's condition is a partner's.
        let (conditions, after) = self.fact_conditions(plan, fact, None, false, day, late)?;
        let mut steps = fact_source(fact, "f");
        if let Some(c) = conjunction(conditions) {
            steps.push(Step::Filter(c));
        }
        steps.push(Step::Aggregate {
            group: grouped.group,
            aggregates: grouped.aggregates,
        });
        steps.push(Step::Alias("f".into()));
        Ok((steps, after))
    }

    /// Whether the aggregation may join late, and how its rows are read after the join.
    fn regrouped<'e>(
        &'e self,
        plan: &Plan<'_>,
        parts: &[&Metric],
        joins: &'e BTreeSet<String>,
    ) -> Option<Regrouped<'e>> {
        if joins.is_empty() || plan.benchmark {
            return None;
        }
        let one_to_one = joins.iter().all(|j| {
            let key = &self.model.dimensions[j].key;
            plan.dims.iter().any(|(_, d)| {
                matches!(d, Dim::Attribute { dimension, attribute } if dimension == j && attribute == key)
            })
        });
        let adds_up = parts.iter().all(|p| match &p.kind {
            MetricKind::Base { aggregate, .. } => match aggregate {
                Aggregate::Count(_) | Aggregate::CountRows => true,
                Aggregate::Sum(_) => self.sum_types.contains_key(&p.name),
                Aggregate::CountDistinct(_) => false,
            },
            MetricKind::Ratio { .. } => false,
        });
        let keys: BTreeSet<&str> = joins
            .iter()
            .map(|j| self.model.dimensions[j].key.as_str())
            .collect();
        // Whether a row is a direct sale: the partner key's own NULL when it is grouped by.
        let direct = direct_flag(&plan.dims, plan.scope).then(|| keys.contains("partner_id"));
        (one_to_one || adds_up).then_some(Regrouped {
            keys,
            one_to_one,
            direct,
        })
    }

    /// A part summed again over the aggregated rows, of the type its first aggregation gives:
    /// counts as whole numbers (zero over no rows when nothing is grouped, as `COUNT` gives),
    /// a decimal sum at the precision the base table's sum has.
    fn summed_again(&self, p: &Metric, column: Expr, ungrouped: bool) -> Expr {
        let MetricKind::Base { aggregate, .. } = &p.kind else {
            unreachable!("ratios are expanded into their parts")
        };
        match aggregate {
            Aggregate::Count(_) | Aggregate::CountRows => {
                let counted = cast(sum(column), DataType::Int64);
                match ungrouped {
                    true => datafusion::functions::expr_fn::coalesce(vec![counted, lit(0i64)]),
                    false => counted,
                }
            }
            Aggregate::Sum(_) => match self.sum_types.get(&p.name) {
                Some(t @ DataType::Decimal128(..)) => cast(sum(column), t.clone()),
                _ => sum(column),
            },
            Aggregate::CountDistinct(_) => {
                unreachable!("a distinct count is never summed again (`regrouped`)")
            }
        }
    }
}
