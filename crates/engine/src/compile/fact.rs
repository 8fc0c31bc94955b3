//! One fact's aggregation: its parts by the asked dimensions, over the audience's rows, the
//! period and the filters, read from the base table or a rollup — as the steps of a plan
//! (`rows::Step`) whose every expression is typed.

use std::collections::BTreeSet;

use arrow::datatypes::{DataType, TimeUnit};
use chrono::NaiveDate;
use datafusion::common::ScalarValue;
use datafusion::functions_aggregate::expr_fn::{count_distinct, sum};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, cast, lit, when};
use prism_model::{Grain, Metric, MetricKind};

use super::exprs::{date, scope_expr, table_schema, today};
use super::rows::Step;
use super::{Comparison, Plan, Shift, named, of};
use crate::rollups::{self, RollupSource};
use crate::{Dim, Engine, EngineError, Period, Scope};

/// What an aggregation's rows are grouped by and what it computes over each group.
pub(crate) struct Grouped {
    pub group: Vec<Expr>,
    pub aggregates: Vec<Expr>,
}

impl Engine {
    /// One fact's aggregation: its parts by the asked dimensions, over the scope, the period and
    /// the filters. With a shift, each row's date moves forward by it first, so that the rows of
    /// the compared period land on the dimensions and the period of the query.
    pub(crate) fn fact_rows(
        &self,
        plan: &Plan<'_>,
        parts: &[&Metric],
        shift: Option<Shift>,
        source: Option<&RollupSource>,
        loaded_on: Option<NaiveDate>,
    ) -> Result<Vec<Step>, EngineError> {
        let fact_name = &parts[0].fact;
        let fact = &self.model.facts[fact_name];
        // A state is read on a day (`as_of`) rather than over the period: each row of the fact
        // is paired with the last day of the period, or of each time row, and the row's date
        // is that day.
        let state = parts.iter().any(|p| p.state);
        let day = day_of(fact, state, shift);
        let joins = self.dimensions_joined(plan, fact_name, source)?;
        if source.is_none()
            && !state
            && let Some(steps) = self.late_joined(plan, parts, &day, &joins)?
        {
            return Ok(steps);
        }
        let schema = self.rows_schema(fact, state, source);
        // Whether a row is a direct sale, read from the partner key after grouping when the key
        // is grouped by: one string key groups by DataFusion's fastest path, a key and a flag
        // do not.
        let direct_key = self.direct_from_key(plan, &day, source)?;
        let grouped =
            self.fact_grouped(plan, parts, &day, source, &schema, direct_key.is_none())?;
        let mut steps = match source {
            Some(s) => vec![Step::Scan {
                table: s.table.clone(),
                alias: "f".into(),
            }],
            None if state => self.state_rows(plan, fact, shift, loaded_on),
            None => fact_source(fact, "f"),
        };
        steps.extend(joins.iter().map(|j| self.dimension_join(j)));
        let (conditions, _) = self.fact_conditions(plan, fact, source, state, &day, |_| false)?;
        if let Some(c) = conjunction(conditions) {
            steps.push(Step::Filter(c));
        }
        let columns: Vec<String> = grouped
            .group
            .iter()
            .chain(&grouped.aggregates)
            .map(|e| e.schema_name().to_string())
            .collect();
        match self.read_as_stored(plan, parts, source) {
            // One rollup row per group (the brand owner's top accounts over the customers'
            // rollup): each row as it is, rather than 4.5 M rows grouped into themselves.
            Some(values) => {
                let named = values.into_iter().zip(parts).map(|(v, p)| v.alias(&p.name));
                steps.push(Step::Project(
                    grouped.group.into_iter().chain(named).collect(),
                ));
            }
            None => steps.push(Step::Aggregate {
                group: grouped.group,
                aggregates: grouped.aggregates,
            }),
        }
        if let Some(i) = direct_key {
            let mut all: Vec<Expr> = columns.iter().map(|c| named(c)).collect();
            all.push(named(&format!("d{i}")).is_null().alias("direct"));
            steps.push(Step::Project(all));
        }
        Ok(steps)
    }

    /// The join of a fact's rows (`f`) to a dimension, read under its name, on its key.
    pub(crate) fn dimension_join(&self, dimension: &str) -> Step {
        let d = &self.model.dimensions[dimension];
        Step::LeftJoin {
            right: vec![Step::Scan {
                table: d.table.clone(),
                alias: dimension.to_string(),
            }],
            on: of("f", &d.key).eq(of(dimension, &d.key)),
        }
    }

    /// The conditions on a fact's rows: the audience's, the period's (a state's days are the
    /// period's already) and each filter's; apart, the filters on a dimension read `after` the
    /// fact's rows are grouped and joined to it (`late.rs`).
    pub(crate) fn fact_conditions(
        &self,
        plan: &Plan<'_>,
        fact: &prism_model::Fact,
        source: Option<&RollupSource>,
        state: bool,
        day: &Expr,
        after: impl Fn(&Dim) -> bool,
    ) -> Result<(Vec<Expr>, Vec<Expr>), EngineError> {
        // A channel rollup holds partners' rows only, and no partner column.
        let channel = source.is_some_and(|s| s.rollup.channel);
        let mut conditions: Vec<Expr> = if channel {
            Vec::new()
        } else {
            scope_expr(plan.scope, plan.benchmark).into_iter().collect()
        };
        let stamp = match source {
            None => stamped_day(fact, day),
            Some(_) => None,
        };
        if let (Some(p), false) = (&plan.query.period, state) {
            conditions.push(days_between(day, stamp.as_ref(), Some(p.from), Some(p.to)));
        }
        let mut later = Vec::new();
        for (f, d) in &plan.filters {
            let condition = self.filter_expr(f, d, day, stamp.as_ref(), source, plan.scope)?;
            match after(d) {
                true => later.push(condition),
                false => conditions.push(condition),
            }
        }
        Ok((conditions, later))
    }

    /// Which asked dimension is the partner key as the fact holds it, when the aggregation
    /// must say which rows are direct sales: its NULL is a direct sale.
    fn direct_from_key(
        &self,
        plan: &Plan<'_>,
        day: &Expr,
        source: Option<&RollupSource>,
    ) -> Result<Option<usize>, EngineError> {
        if !direct_flag(&plan.dims, plan.scope) {
            return Ok(None);
        }
        for (i, (_, d)) in plan.dims.iter().enumerate() {
            if self.group_expr(d, day, source)? == of("f", "partner_id") {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// The dimensions a fact's rows must be joined to for the asked dimensions and filters;
    /// refused, with which metric and why, when the fact does not reach one of them.
    fn dimensions_joined(
        &self,
        plan: &Plan<'_>,
        fact_name: &str,
        source: Option<&RollupSource>,
    ) -> Result<BTreeSet<String>, EngineError> {
        let fact = &self.model.facts[fact_name];
        let reaches = |dim: &Dim, used_as: &str| -> Result<(), EngineError> {
            let ok = match dim {
                Dim::Attribute { dimension, .. } => fact.reaches.contains(dimension),
                Dim::FactAttribute { fact: f, .. } => f == fact_name,
                Dim::Time { .. } => true,
            };
            if ok {
                return Ok(());
            }
            let metric = plan
                .metrics
                .iter()
                .find(|m| {
                    metric_parts(&self.model, m)
                        .iter()
                        .any(|p| p.fact == fact_name)
                })
                .map_or("", |m| m.name.as_str());
            // A ratio of two facts' metrics reads the other fact too.
            let relation = if plan
                .metrics
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
        let used = plan
            .dims
            .iter()
            .map(|(name, d)| (name.as_str(), d))
            .chain(plan.filters.iter().map(|(f, d)| (f.dimension.as_str(), d)));
        for (used_as, d) in used {
            reaches(d, used_as)?;
            if let Some(dimension) = self.joined_dimension(d, source) {
                joins.insert(dimension.to_string());
            }
        }
        Ok(joins)
    }

    /// What a fact's aggregation groups by — the dimension keys (`d0`, …) and, for a brand-owner
    /// user's partner cut unless `direct` is false (it is then read from the partner key after
    /// grouping), whether the row is a direct sale — and what it computes: each part, and in a
    /// benchmark each part's contributing partners.
    fn fact_grouped(
        &self,
        plan: &Plan<'_>,
        parts: &[&Metric],
        day: &Expr,
        source: Option<&RollupSource>,
        schema: &arrow::datatypes::Schema,
        direct: bool,
    ) -> Result<Grouped, EngineError> {
        let mut group = Vec::new();
        for (i, (_, d)) in plan.dims.iter().enumerate() {
            group.push(self.group_expr(d, day, source)?.alias(format!("d{i}")));
        }
        if direct && direct_flag(&plan.dims, plan.scope) && !group.is_empty() {
            group.push(of("f", "partner_id").is_null().alias("direct"));
        }
        let mut aggregates = Vec::new();
        for p in parts {
            aggregates.push(
                self.aggregate_expr(p, source, schema, parts)?
                    .alias(&p.name),
            );
        }
        if plan.benchmark {
            let channel = source.is_some_and(|s| s.rollup.channel);
            // Per part, the partners with rows in it: a figure is over the partners that
            // contribute to it, not over every partner with a row of the fact.
            for p in parts {
                let count = if channel {
                    // Its rows are the query's groups (navigation saw to it), and each of its
                    // parts has every row of a partner in it (`rollups::fit`).
                    cast(sum(of("f", rollups::CHANNEL_PARTNERS)), DataType::Int64)
                } else {
                    count_distinct(
                        when(
                            self.contributes_expr(p, source, schema)?,
                            of("f", "partner_id"),
                        )
                        .end()?,
                    )
                };
                aggregates.push(count.alias(contributors_column(&p.name)));
            }
        }
        Ok(Grouped { group, aggregates })
    }

    /// Each part as a rollup row holds it, when the rollup's rows are the query's groups and
    /// every part has a column of its own; `None` when the rows must be grouped. Never for a
    /// benchmark (its partners are counted over rows) nor for a question without dimensions (its
    /// one row exists over no rows too).
    fn read_as_stored(
        &self,
        plan: &Plan<'_>,
        parts: &[&Metric],
        source: Option<&RollupSource>,
    ) -> Option<Vec<Expr>> {
        let s = source.filter(|s| s.exact)?;
        if plan.benchmark || plan.dims.is_empty() {
            return None;
        }
        parts.iter().map(|p| rollups::stored_expr(p, s)).collect()
    }

    /// A state's base rows, each paired with the day it is read at (`as_of`).
    fn state_rows(
        &self,
        plan: &Plan<'_>,
        fact: &prism_model::Fact,
        shift: Option<Shift>,
        loaded_on: Option<NaiveDate>,
    ) -> Vec<Step> {
        let grain = plan
            .dims
            .iter()
            .map(|(_, d)| d)
            .chain(plan.filters.iter().map(|(_, d)| d))
            .filter_map(|d| match d {
                Dim::Time { grain } => Some(*grain),
                _ => None,
            })
            .min();
        let period = plan.query.period.as_ref();
        let mut days = vec![Step::Days(state_days(grain, period, shift, loaded_on))];
        if grain.is_some() && period.is_none() {
            days.push(Step::FromFirstDay {
                column: "as_of".into(),
                table: fact.table.clone(),
                time: fact.time.clone(),
            });
        }
        days.push(Step::Alias("b".into()));
        let mut steps = fact_source(fact, "t");
        steps.push(Step::CrossJoin(days));
        steps.push(Step::Alias("f".into()));
        steps
    }
}

/// The day of a fact row (`f`): its date, or for a state the day it is read at; moved forward
/// by the shift of a compared period.
pub(crate) fn day_of(fact: &prism_model::Fact, state: bool, shift: Option<Shift>) -> Expr {
    let time = if state {
        of("f", "as_of")
    } else {
        cast(of("f", &fact.time), DataType::Date32)
    };
    match shift {
        None => time,
        Some(Shift::Days(n)) => time + lit(ScalarValue::new_interval_mdn(0, n as i32, 0)),
        Some(Shift::Months(n)) => time + lit(ScalarValue::new_interval_mdn(n as i32, 0, 0)),
    }
}

/// The timestamp a fact row's day is read from (a service request's opening), when `day` is
/// that timestamp's day in UTC, unshifted: a period is then a range of the timestamp itself.
fn stamped_day(fact: &prism_model::Fact, day: &Expr) -> Option<Expr> {
    let schema = table_schema(&fact.table);
    let field = schema.field_with_name(&fact.time).ok()?;
    let utc = match field.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            tz.as_deref().is_none_or(|z| z == "UTC" || z == "+00:00")
        }
        _ => false,
    };
    (utc && *day == day_of(fact, false, None)).then(|| of("f", &fact.time))
}

/// Whether a fact row's day falls from `from` to `to`, both included, either bound open. A day
/// read from a timestamp (`stamp`, microseconds in UTC) is compared as the timestamp is stored,
/// from the first day's midnight to the midnight after the last day: the cast of every
/// timestamp to its day took more time than the rest of a year's service requests'
/// aggregation, and the bounds let a reader skip pages by the timestamps' own statistics.
pub(crate) fn days_between(
    day: &Expr,
    stamp: Option<&Expr>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Expr {
    let midnight = |d: NaiveDate| {
        let micros = d
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc()
            .timestamp_micros();
        lit(ScalarValue::TimestampMicrosecond(
            Some(micros),
            Some("UTC".into()),
        ))
    };
    let mut bounds = Vec::new();
    match stamp {
        Some(stamp) => {
            if let Some(from) = from {
                bounds.push(stamp.clone().gt_eq(midnight(from)));
            }
            // The last day of all has no midnight after it: nothing is later.
            if let Some(after_last) = to.and_then(|t| t.succ_opt()) {
                bounds.push(stamp.clone().lt(midnight(after_last)));
            }
        }
        None => {
            if let Some(from) = from {
                bounds.push(day.clone().gt_eq(date(from)));
            }
            if let Some(to) = to {
                bounds.push(day.clone().lt_eq(date(to)));
            }
        }
    }
    bounds.into_iter().reduce(Expr::and).unwrap_or(lit(true))
}

/// A fact's rows under `alias`: its table's, with each lookup's column under the lookup's name.
pub(crate) fn fact_source(fact: &prism_model::Fact, alias: &str) -> Vec<Step> {
    if fact.lookups.is_empty() {
        return vec![Step::Scan {
            table: fact.table.clone(),
            alias: alias.into(),
        }];
    }
    let mut steps = vec![Step::Scan {
        table: fact.table.clone(),
        alias: "t".into(),
    }];
    let mut columns: Vec<Expr> = table_schema(&fact.table)
        .fields()
        .iter()
        .map(|f| of("t", f.name()))
        .collect();
    for (i, l) in fact.lookups.values().enumerate() {
        let looked_up = format!("l{i}");
        let mut on = of("t", &l.key).eq(of(&looked_up, &l.key));
        if l.same_partner {
            // A partner's row looks up its own partner's rows, or the brand owner's.
            on = on.and(
                of(&looked_up, "partner_id")
                    .is_null()
                    .or(of(&looked_up, "partner_id").eq(of("t", "partner_id"))),
            );
        }
        steps.push(Step::LeftJoin {
            right: vec![Step::Scan {
                table: l.table.clone(),
                alias: looked_up.clone(),
            }],
            on,
        });
        columns.push(of(&looked_up, &l.column).alias(&l.name));
    }
    steps.push(Step::Project(columns));
    steps.push(Step::Alias(alias.into()));
    steps
}

/// The days a state is read at (`as_of`), one each: the last day of the period (or, without
/// one, the day of the last load); by a time grain, the last day of each of its rows within the
/// period (without one, from 1990 to the day of the last load: `Step::FromFirstDay` then starts
/// them at the fact's first row). For a compared period, the same days that far back.
pub(crate) fn state_days(
    grain: Option<Grain>,
    period: Option<&Period>,
    shift: Option<Shift>,
    loaded_on: Option<NaiveDate>,
) -> Vec<Expr> {
    let back = |d: NaiveDate| match shift {
        None => d,
        Some(Shift::Days(n)) => d - chrono::Duration::days(n),
        Some(Shift::Months(n)) => d.checked_sub_months(chrono::Months::new(n)).unwrap_or(d),
    };
    let last = period.map(|p| back(p.to)).or(loaded_on.map(back));
    let Some(grain) = grain else {
        // Compiled without a session: the day it runs.
        return vec![last.map_or_else(today, date)];
    };
    let last = last.unwrap_or_else(|| chrono::Utc::now().date_naive());
    let first = period
        .map(|p| back(p.from))
        .unwrap_or(NaiveDate::from_ymd_opt(1990, 1, 1).expect("date"))
        .min(last);
    // Each row of the grain's last day within [first, last]: the day before the next row's.
    let mut days = Vec::new();
    let mut day = first;
    while day <= last {
        let next = day.succ_opt().expect("a next day");
        if next > last || bucket(grain, next) != bucket(grain, day) {
            days.push(date(day));
        }
        day = next;
    }
    days
}

/// Which row of a grain a day is in, as `exprs::time_bucket` groups it.
fn bucket(grain: Grain, d: NaiveDate) -> (i32, u32) {
    use chrono::Datelike;
    match grain {
        Grain::Day => (d.year(), d.ordinal()),
        Grain::Week => (d.iso_week().year(), d.iso_week().week()),
        Grain::Month => (d.year(), d.month()),
        Grain::Quarter => (d.year(), d.month0() / 3),
        Grain::Year => (d.year(), 0),
    }
}

/// Whether the aggregations group by "is a direct sale" too: for a brand-owner user cutting by a
/// partner attribute, so that direct sales are their own "(direct)" row and never merge with a
/// partner whose attribute happens to be empty.
pub(crate) fn direct_flag(dims: &[(String, Dim)], scope: &Scope) -> bool {
    *scope == Scope::All
        && dims
            .iter()
            .any(|(_, d)| matches!(d, Dim::Attribute { dimension, .. } if dimension == "partner"))
}

/// Which aggregation of a query a base metric is computed in: its fact's, or for a state (read
/// at a date, not over the period) its fact's states'.
pub(crate) fn aggregation_of(part: &Metric) -> String {
    if part.state {
        format!("{}_state", part.fact)
    } else {
        part.fact.clone()
    }
}

/// The name of a fact's aggregation in the SQL; never a table's name, which it would hide from
/// the aggregations after it.
pub(crate) fn aggregation_alias(fact: &str, comparison: Option<Comparison>) -> String {
    match comparison {
        None => format!("{fact}_now"),
        Some(c) => format!("{fact}_{}", c.suffix()),
    }
}

/// The base metrics a metric is made of: itself, or a ratio's numerator and denominator.
pub(crate) fn metric_parts<'m>(model: &'m prism_model::Model, m: &'m Metric) -> Vec<&'m Metric> {
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
pub(crate) fn contributors_column(part: &str) -> String {
    format!("{part}#partners")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn days(grain: Option<Grain>, from: &str, to: &str, shift: Option<Shift>) -> Vec<Expr> {
        let period = Period {
            from: day(from),
            to: day(to),
        };
        state_days(grain, Some(&period), shift, None)
    }

    /// A state by month over a period that starts and ends inside months is read on the last
    /// day of each month, the period's last day for the last one (2024 is a leap year).
    #[test]
    fn a_state_is_read_on_the_last_day_of_each_row_within_the_period() {
        let by_month = days(Some(Grain::Month), "2024-01-15", "2024-03-10", None);
        let expected: Vec<Expr> = ["2024-01-31", "2024-02-29", "2024-03-10"]
            .into_iter()
            .map(|d| date(day(d)))
            .collect();
        assert_eq!(by_month, expected);
        // ISO weeks run Monday to Sunday: 2024-01-07 and 2024-01-14 are Sundays.
        let by_week = days(Some(Grain::Week), "2024-01-03", "2024-01-16", None);
        let expected: Vec<Expr> = ["2024-01-07", "2024-01-14", "2024-01-16"]
            .into_iter()
            .map(|d| date(day(d)))
            .collect();
        assert_eq!(by_week, expected);
        assert_eq!(
            days(Some(Grain::Quarter), "2023-11-01", "2024-05-31", None),
            vec![
                date(day("2023-12-31")),
                date(day("2024-03-31")),
                date(day("2024-05-31"))
            ]
        );
        // Without a grain, one day: the period's last; a year back for a year-before comparison.
        assert_eq!(
            days(None, "2024-01-01", "2024-03-31", Some(Shift::Months(12))),
            vec![date(day("2023-03-31"))]
        );
    }
}
