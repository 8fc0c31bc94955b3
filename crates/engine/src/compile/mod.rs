//! The compiler: a query and an audience into one SQL statement, in stages — the metrics and
//! their parts per fact, the compared periods, each fact's source (a rollup or the base), each
//! fact's aggregation, the drill-across join, the derived forms, and order and limit.

mod derived;
mod fact;

pub(crate) use derived::{Comparison, Derived, Shift};
pub(crate) use fact::{
    aggregate_sql, aggregation_alias, aggregation_of, contributors_column, direct_flag,
    metric_parts, scope_condition,
};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use prism_model::{Aggregate, Format, Grain, Metric, MetricKind, did_you_mean};

use crate::rollups::{Need, RollupSource};
use crate::{
    BENCHMARK_MIN_PARTNERS, Compiled, Dim, Engine, EngineError, Filter, FilterOp, NARROW_VALUES,
    Query, ResultColumn, Scope, quote_ident,
};

impl Engine {
    pub(crate) fn compile_with(
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
}
