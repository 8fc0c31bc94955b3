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
use prism_model::{Aggregate, Metric, MetricKind};

use super::Plan;
use super::fact::{aggregate_sql, direct_flag, scope_condition};
use crate::{Dim, Engine, EngineError, quote_ident};

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
    pub(crate) fn late_joined_sql(
        &self,
        plan: &Plan<'_>,
        parts: &[&Metric],
        day: &str,
        joins: &BTreeSet<String>,
    ) -> Result<Option<String>, EngineError> {
        let Some(shape) = self.regrouped(plan, parts, joins) else {
            return Ok(None);
        };
        let (inner, after) = self.grouped_by_keys(plan, parts, day, &shape)?;
        // Those rows joined to the dimensions, and grouped again where a key was not asked.
        let mut select = Vec::new();
        let mut group = Vec::new();
        for (i, (_, d)) in plan.dims.iter().enumerate() {
            if self.joined_dimension(d, None).is_some() {
                select.push(format!("{} AS d{i}", self.group_sql(d, day, None)));
            } else {
                select.push(format!("f.d{i} AS d{i}"));
            }
            group.push(format!("d{i}"));
        }
        if let Some(from_key) = shape.direct {
            select.push(
                if from_key {
                    "f.partner_id IS NULL AS direct"
                } else {
                    "f.direct AS direct"
                }
                .into(),
            );
            group.push("direct".into());
        }
        for p in parts {
            let column = format!("f.{}", quote_ident(&p.name));
            let value = if shape.one_to_one {
                column
            } else {
                self.summed_again(p, &column, plan.dims.is_empty())?
            };
            select.push(format!("{value} AS {}", quote_ident(&p.name)));
        }
        let joined: Vec<String> = joins.iter().map(|j| self.join_sql(j)).collect();
        if shape.one_to_one {
            group.clear();
        }
        Ok(Some(statement(
            &select,
            &format!("({inner})"),
            &joined,
            &after,
            &group,
        )))
    }

    /// The fact's rows grouped by the joined dimensions' keys and the dimensions that need no
    /// join, over the audience, the period and the filters a fact row can answer; and the
    /// filters on the joined dimensions' attributes, for after the join. A dimension's key is
    /// on the fact: a filter on it is applied before.
    fn grouped_by_keys(
        &self,
        plan: &Plan<'_>,
        parts: &[&Metric],
        day: &str,
        shape: &Regrouped<'_>,
    ) -> Result<(String, Vec<String>), EngineError> {
        let late = |d: &Dim| self.joined_dimension(d, None).is_some();
        let mut select = Vec::new();
        let mut group = Vec::new();
        for (i, (_, d)) in plan.dims.iter().enumerate() {
            if !late(d) {
                select.push(format!("{} AS d{i}", self.group_sql(d, day, None)));
                group.push(format!("d{i}"));
            }
        }
        for key in &shape.keys {
            select.push(format!("f.{key} AS {key}"));
            group.push((*key).to_string());
        }
        if shape.direct == Some(false) {
            select.push("f.partner_id IS NULL AS direct".into());
            group.push("direct".into());
        }
        for p in parts {
            select.push(format!(
                "{} AS {}",
                aggregate_sql(p, None),
                quote_ident(&p.name)
            ));
        }
        let mut conditions: Vec<String> = scope_condition(plan.scope, false).into_iter().collect();
        if let Some(p) = &plan.query.period {
            conditions.push(format!(
                "{day} BETWEEN DATE '{}' AND DATE '{}'",
                p.from, p.to
            ));
        }
        let mut after = Vec::new();
        for (f, d) in &plan.filters {
            let condition = self.filter_sql(f, d, day, None, plan.scope)?;
            if late(d) {
                after.push(condition)
            } else {
                conditions.push(condition)
            }
        }
        let fact = &self.model.facts[&parts[0].fact];
        let inner = statement(&select, &fact.source_sql(), &[], &conditions, &group);
        Ok((inner, after))
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
    fn summed_again(
        &self,
        p: &Metric,
        column: &str,
        ungrouped: bool,
    ) -> Result<String, EngineError> {
        let MetricKind::Base { aggregate, .. } = &p.kind else {
            unreachable!("ratios are expanded into their parts")
        };
        Ok(match aggregate {
            Aggregate::Count(_) | Aggregate::CountRows if ungrouped => {
                format!("COALESCE(CAST(SUM({column}) AS BIGINT), 0)")
            }
            Aggregate::Count(_) | Aggregate::CountRows => format!("CAST(SUM({column}) AS BIGINT)"),
            Aggregate::Sum(_) => match self.sum_types.get(&p.name) {
                Some(DataType::Decimal128(precision, scale)) => {
                    format!("CAST(SUM({column}) AS DECIMAL({precision}, {scale}))")
                }
                _ => format!("SUM({column})"),
            },
            Aggregate::CountDistinct(_) => {
                unreachable!("a distinct count is never summed again (`regrouped`)")
            }
        })
    }
}

/// One SELECT statement from its parts; the table is aliased `f`.
pub(super) fn statement(
    select: &[String],
    from: &str,
    joins: &[String],
    conditions: &[String],
    group: &[String],
) -> String {
    let mut sql = format!("SELECT {} FROM {from} f", select.join(", "));
    for j in joins {
        sql.push(' ');
        sql.push_str(j);
    }
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    if !group.is_empty() {
        sql.push_str(" GROUP BY ");
        sql.push_str(&group.join(", "));
    }
    sql
}
