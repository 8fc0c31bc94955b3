//! Drill-across: the aggregations joined on the asked dimensions into one row per member of
//! the cut, each metric computed from its parts after the join (a ratio of two facts' parts is
//! divided here), withheld in a benchmark where too few partners contribute.

use std::fmt::Write as _;

use prism_model::{Aggregate, Format, Metric, MetricKind};

use super::{
    Aggregation, Comparison, Plan, aggregation_alias, aggregation_of, contributors_column,
    direct_flag, metric_parts,
};
use crate::{BENCHMARK_MIN_PARTNERS, Engine, ResultColumn, quote_ident};

/// The aggregations that add keys, and how a key column is read from them.
struct Keys<'a> {
    sources: Vec<&'a str>,
    /// The first aggregation's alias, when none adds keys.
    first: &'a str,
    /// One aggregation, or no dimension: the key is read from the one row.
    single: bool,
}

impl Keys<'_> {
    /// A key column of the joined rows, over the first `upto` key-adding aggregations.
    fn key(&self, c: &str, upto: usize) -> String {
        if upto <= 1 || self.single {
            format!(
                "{}.{c}",
                self.sources.first().copied().unwrap_or(self.first)
            )
        } else {
            format!(
                "COALESCE({})",
                self.sources[..upto]
                    .iter()
                    .map(|n| format!("{n}.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }
}

impl Engine {
    /// The statement that joins the aggregations: the aggregations that add keys are
    /// full-joined one after the other, each on the keys of those before it (the first that
    /// has a row gives them), and the others left-joined onto the result. Each aggregation is
    /// read once: DataFusion runs a CTE again at each mention, so a separate key set would
    /// compute every aggregation twice. Returns the SQL and its columns.
    pub(crate) fn drill_across(
        &self,
        plan: &Plan<'_>,
        aggregations: &[Aggregation],
    ) -> (String, Vec<ResultColumn>) {
        let dims = &plan.dims;
        let mut dim_cols: Vec<String> = (0..dims.len()).map(|i| format!("d{i}")).collect();
        let direct = direct_flag(dims, plan.scope);
        if direct {
            dim_cols.push("direct".into());
        }
        let mut sql = String::from("WITH ");
        sql.push_str(
            &aggregations
                .iter()
                .map(|a| format!("{} AS ({})", a.alias, a.sql))
                .collect::<Vec<_>>()
                .join(",\n"),
        );
        let keys = Keys {
            sources: aggregations
                .iter()
                .filter(|a| a.adds_keys)
                .map(|a| a.alias.as_str())
                .collect(),
            first: aggregations[0].alias.as_str(),
            single: aggregations.len() == 1 || dims.is_empty(),
        };
        let all = keys.sources.len();
        let mut select = Vec::new();
        let mut columns = Vec::new();
        for (i, (name, d)) in dims.iter().enumerate() {
            let flag = keys.key("direct", all);
            let label = self.label_sql(
                d,
                &keys.key(&format!("d{i}"), all),
                direct.then_some(flag.as_str()),
            );
            select.push(format!("{label} AS {}", quote_ident(name)));
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
                    Some(c) => format!("{}@{}", m.name, c.suffix()),
                };
                select.push(format!(
                    "{} AS {}",
                    self.metric_sql(plan, m, view),
                    quote_ident(&name)
                ));
                columns.push(ResultColumn {
                    name,
                    format: Some(m.format),
                });
            }
        }
        if plan.benchmark {
            select.push(format!(
                "{} AS benchmark_partners",
                self.fewest_partners(plan)
            ));
            columns.push(ResultColumn {
                name: "benchmark_partners".into(),
                format: Some(Format::Integer),
            });
        }
        write!(sql, "\nSELECT {}", select.join(", ")).expect("string");
        sql.push_str(&joins(aggregations, &keys, &dim_cols));
        (sql, columns)
    }

    /// A metric over the joined row, in the query's period or a compared one (`view`): a base
    /// metric's column, or a ratio of its parts' columns; in a benchmark, released only where
    /// every part has enough partners behind it.
    fn metric_sql(&self, plan: &Plan<'_>, m: &Metric, view: Option<Comparison>) -> String {
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
                    format!("CASE WHEN {zero} THEN NULL ELSE CAST({n} AS DECIMAL(38, 6)) / {d} END")
                } else if factor == 1.0 {
                    format!("CASE WHEN {zero} THEN NULL ELSE CAST({n} AS DOUBLE) / {d} END")
                } else {
                    format!(
                        "CASE WHEN {zero} THEN NULL ELSE {scale:?} * CAST({n} AS DOUBLE) / {d} / {divide_by:?} END"
                    )
                }
            }
        };
        if !plan.benchmark {
            return expr;
        }
        // Released only when every part of the figure has enough partners behind it: a
        // ratio's numerator and its denominator each.
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
    }

    /// A benchmark row's fewest partners behind any of its figures, in the query's own period.
    fn fewest_partners(&self, plan: &Plan<'_>) -> String {
        let mut counts: Vec<String> = Vec::new();
        for m in &plan.metrics {
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
        if counts.len() == 1 {
            counts[0].clone()
        } else {
            format!("least({})", counts.join(", "))
        }
    }
}

/// The FROM clause: one aggregation (or no dimension) cross-joined, otherwise the full and
/// left joins on the dimension columns.
fn joins(aggregations: &[Aggregation], keys: &Keys<'_>, dim_cols: &[String]) -> String {
    let mut sql = String::new();
    if keys.single {
        write!(sql, " FROM {}", aggregations[0].alias).expect("string");
        for a in &aggregations[1..] {
            write!(sql, " CROSS JOIN {}", a.alias).expect("string");
        }
        return sql;
    }
    write!(sql, " FROM {}", keys.sources[0]).expect("string");
    // Parenthesised: the SQL parser binds IS NOT DISTINCT FROM looser than AND.
    let on = |n: &str, upto: usize| {
        dim_cols
            .iter()
            .map(|c| format!("({} IS NOT DISTINCT FROM {n}.{c})", keys.key(c, upto)))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    for (j, n) in keys.sources.iter().enumerate().skip(1) {
        write!(sql, " FULL JOIN {n} ON {}", on(n, j)).expect("string");
    }
    for a in aggregations {
        if !a.adds_keys {
            write!(
                sql,
                " LEFT JOIN {} ON {}",
                a.alias,
                on(&a.alias, keys.sources.len())
            )
            .expect("string");
        }
    }
    sql
}
