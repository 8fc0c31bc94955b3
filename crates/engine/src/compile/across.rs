//! Drill-across: the aggregations joined on the asked dimensions into one row per member of
//! the cut, each metric computed from its parts after the join (a ratio of two facts' parts is
//! divided here), withheld in a benchmark where too few partners contribute.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::functions::expr_fn::{coalesce, concat, least, lpad, to_char};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, Operator, binary_expr, cast, lit, when};
use prism_model::{Aggregate, Format, Grain, Metric, MetricKind};

use super::{
    Aggregation, Comparison, Plan, TEXT, aggregation_alias, aggregation_of, compared,
    contributors_column, direct_flag, metric_parts, of,
};
use crate::{BENCHMARK_MIN_PARTNERS, DIRECT_LABEL, Dim, Engine, ResultColumn};

/// How the aggregations are joined into one row per member of the cut: the aggregations that
/// add keys are full-joined one after the other, each on the keys of those before it (the
/// first that has a row gives them), and the others left-joined onto the result; with one
/// aggregation or no dimension, each has one row and they are cross-joined. Each aggregation
/// is read once.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Joins {
    /// The aggregations that add keys, in the order they are full-joined.
    pub full: Vec<String>,
    /// The aggregations left-joined onto them (a compared period on a time cut).
    pub left: Vec<String>,
    /// One row each: cross-joined in `full`'s then `left`'s order, keys read from the first.
    pub single: bool,
    /// The key columns the aggregations are joined on (`d0`, …, and `direct`).
    pub keys: Vec<String>,
}

impl Joins {
    /// A key column of the joined rows, over the first `upto` key-adding aggregations.
    pub(crate) fn key(&self, c: &str, upto: usize) -> Expr {
        if upto <= 1 || self.single {
            of(&self.full[0], c)
        } else {
            coalesce(self.full[..upto].iter().map(|n| of(n, c)).collect())
        }
    }

    /// The condition joining aggregation `n` to the first `upto` key-adding ones: every key
    /// equal, an empty key matching an empty key.
    pub(crate) fn on(&self, n: &str, upto: usize) -> Expr {
        conjunction(
            self.keys
                .iter()
                .map(|c| binary_expr(self.key(c, upto), Operator::IsNotDistinctFrom, of(n, c))),
        )
        .expect("joined aggregations have keys")
    }
}

impl Engine {
    /// The aggregations joined (`Joins`), and the columns of the joined rows: each dimension's
    /// label, each metric from its parts in the period and each compared period, and a
    /// benchmark's count of partners. Returns the joins, the projection and its columns.
    pub(crate) fn drill_across(
        &self,
        plan: &Plan<'_>,
        aggregations: &[Aggregation],
    ) -> (Joins, Vec<Expr>, Vec<ResultColumn>) {
        let dims = &plan.dims;
        let mut keys: Vec<String> = (0..dims.len()).map(|i| format!("d{i}")).collect();
        let direct = direct_flag(dims, plan.scope);
        if direct {
            keys.push("direct".into());
        }
        let (full, left): (Vec<&Aggregation>, Vec<&Aggregation>) =
            aggregations.iter().partition(|a| a.adds_keys);
        let joins = Joins {
            full: full.iter().map(|a| a.alias.clone()).collect(),
            left: left.iter().map(|a| a.alias.clone()).collect(),
            single: aggregations.len() == 1 || dims.is_empty(),
            keys,
        };
        let all = joins.full.len();
        let mut select = Vec::new();
        let mut columns = Vec::new();
        for (i, (name, d)) in dims.iter().enumerate() {
            let flag = direct.then(|| joins.key("direct", all));
            select.push(
                self.label(d, joins.key(&format!("d{i}"), all), flag)
                    .alias(name),
            );
            columns.push(ResultColumn {
                name: name.clone(),
                format: None,
            });
        }
        let mut views: Vec<Option<Comparison>> = vec![None];
        views.extend(plan.comparisons().into_iter().map(Some));
        for view in views {
            for m in &plan.metrics {
                let name = match view {
                    None => m.name.clone(),
                    Some(c) => compared(&m.name, c),
                };
                select.push(self.metric(plan, m, view).alias(&name));
                columns.push(ResultColumn {
                    name,
                    format: Some(m.format),
                });
            }
        }
        if plan.benchmark {
            select.push(self.fewest_partners(plan).alias("benchmark_partners"));
            columns.push(ResultColumn {
                name: "benchmark_partners".into(),
                format: Some(Format::Integer),
            });
        }
        (joins, select, columns)
    }

    /// The label of a grouped value (`group_sql`), as users see and filter it: a time grain's
    /// key as `2024-03`, `2024-Q1`, …; a brand-owner user's direct sales (`direct` is true) as
    /// "(direct)" on a partner dimension.
    fn label(&self, dim: &Dim, value: Expr, direct: Option<Expr>) -> Expr {
        match (dim, direct) {
            (Dim::Attribute { dimension, .. }, Some(direct)) if dimension == "partner" => {
                when(direct, lit(DIRECT_LABEL))
                    .otherwise(cast(value, TEXT))
                    .expect("a case with a branch")
            }
            (Dim::Time { grain }, _) => match grain {
                Grain::Day => to_char(value, lit("%Y-%m-%d")),
                Grain::Week => to_char(value, lit("%G-W%V")),
                Grain::Month => concat(vec![
                    cast(value.clone() / lit(100i64), TEXT),
                    lit("-"),
                    lpad(vec![cast(value % lit(100i64), TEXT), lit(2i64), lit("0")]),
                ]),
                Grain::Quarter => concat(vec![
                    cast(value.clone() / lit(10i64), TEXT),
                    lit("-Q"),
                    cast(value % lit(10i64), TEXT),
                ]),
                Grain::Year => cast(value, TEXT),
            },
            _ => value,
        }
    }

    /// A metric over the joined row, in the query's period or a compared one (`view`): a base
    /// metric's column, or a ratio of its parts' columns; in a benchmark, released only where
    /// every part has enough partners behind it.
    fn metric(&self, plan: &Plan<'_>, m: &Metric, view: Option<Comparison>) -> Expr {
        let alias = |part: &Metric| aggregation_alias(&aggregation_of(part), view);
        let col = |name: &str| -> Expr {
            let part = &self.model.metrics[name];
            let c = of(&alias(part), name);
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
                coalesce(vec![c, lit(0i64)])
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
                let (n, d) = (coalesce(vec![col(numerator), lit(0i64)]), col(denominator));
                let factor = scale / divide_by;
                // Compared as a float: an exact zero either way, and it spares DataFusion
                // comparing decimals of different precisions after the joins.
                let zero = cast(d.clone(), DataType::Float64).eq(lit(0i64));
                let ratio = if m.format == Format::Money {
                    cast(n, DataType::Decimal128(38, 6)) / d
                } else if factor == 1.0 {
                    cast(n, DataType::Float64) / d
                } else {
                    lit(*scale) * cast(n, DataType::Float64) / d / lit(*divide_by)
                };
                when(zero, lit(ScalarValue::Null))
                    .otherwise(ratio)
                    .expect("a case with a branch")
            }
        };
        if !plan.benchmark {
            return expr;
        }
        // Released only when every part of the figure has enough partners behind it: a
        // ratio's numerator and its denominator each.
        let enough = conjunction(metric_parts(&self.model, m).iter().map(|p| {
            coalesce(vec![
                of(&alias(p), &contributors_column(&p.name)),
                lit(0i64),
            ])
            .gt_eq(lit(BENCHMARK_MIN_PARTNERS))
        }))
        .expect("a metric has parts");
        when(enough, expr).end().expect("a case with a branch")
    }

    /// A benchmark row's fewest partners behind any of its figures, in the query's own period.
    fn fewest_partners(&self, plan: &Plan<'_>) -> Expr {
        let mut counts: Vec<Expr> = Vec::new();
        for m in &plan.metrics {
            for p in metric_parts(&self.model, m) {
                let c = coalesce(vec![
                    of(
                        &aggregation_alias(&aggregation_of(p), None),
                        &contributors_column(&p.name),
                    ),
                    lit(0i64),
                ]);
                if !counts.contains(&c) {
                    counts.push(c);
                }
            }
        }
        if counts.len() == 1 {
            counts.remove(0)
        } else {
            least(counts)
        }
    }
}
