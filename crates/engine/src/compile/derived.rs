//! The derived forms of a metric (`closed_revenue:rank`, `:change_pct`, …) and the comparisons
//! with an earlier period they need, with how far that period's dates move to meet the query's.

use std::collections::BTreeSet;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::functions::expr_fn::{abs, coalesce, nullif};
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::functions_window::expr_fn::rank;
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::{
    Expr, ExprFunctionExt, SortExpr, WindowFrame, WindowFrameBound, WindowFrameUnits,
    WindowFunctionDefinition, cast, lit, when,
};
use prism_model::{Format, Grain, Metric, MetricKind, did_you_mean};

use super::{Plan, named};
use crate::{EngineError, ResultColumn};

/// The period a comparison form compares with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Comparison {
    /// The period of the same length just before: the previous month on a monthly row, the
    /// previous quarter for a quarter's period (see `Period::previous`).
    PreviousPeriod,
    /// The same period a year before.
    YearBefore,
}

impl Comparison {
    /// The suffix of the comparison's columns and aggregations in the SQL.
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Comparison::PreviousPeriod => "previous_period",
            Comparison::YearBefore => "year_before",
        }
    }
}

/// A derived form of a metric, asked as `METRIC:FORM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Derived {
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
    pub(crate) const FORMS: [&str; 9] = [
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

    pub(crate) fn parse(s: &str) -> Result<Derived, EngineError> {
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

    pub(crate) fn comparison(self) -> Option<Comparison> {
        match self {
            Derived::Compared(c) | Derived::Change(c) | Derived::ChangePct(c) => Some(c),
            _ => None,
        }
    }
}

/// How far a compared period's dates move forward to land on the query's own: whole days or
/// whole months (calendar months, so a month's step from 31 January is the end of February).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shift {
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
    pub(crate) fn step(grain: Grain) -> Shift {
        match (grain, grain.months()) {
            (_, Some(n)) => Shift::Months(n),
            (Grain::Week, None) => Shift::Days(7),
            _ => Shift::Days(1),
        }
    }

    /// Whether moving dates by it keeps rows of the grain whole.
    pub(crate) fn keeps(self, grain: Grain) -> bool {
        match (grain, self) {
            (Grain::Day, _) => true,
            (Grain::Week, Shift::Days(n)) => n % 7 == 0,
            (g, Shift::Months(n)) => g.months().is_some_and(|m| n.is_multiple_of(m)),
            _ => false,
        }
    }
}

/// The periods compared with, each with how far its dates move forward to meet the query's
/// own: by a step of the finest time grain asked (month over month on a monthly row),
/// otherwise by the length of the query's period. Sorted, each once.
pub(crate) fn shifts(plan: &Plan<'_>) -> Result<Vec<(Comparison, Shift)>, EngineError> {
    let comparisons: BTreeSet<Comparison> = plan
        .asked
        .iter()
        .filter_map(|(_, _, d)| d.and_then(Derived::comparison))
        .collect();
    let finest_grain = plan.finest_grain();
    let period = &plan.query.period;
    let mut shifts = Vec::new();
    for c in comparisons {
        let interval = match (c, finest_grain, period) {
            (Comparison::PreviousPeriod, Some(grain), _) => Shift::step(grain),
            // ISO weeks: week N of the year before, not the week holding the same date.
            (Comparison::YearBefore, Some(Grain::Week), _) => Shift::Days(364),
            (Comparison::YearBefore, _, _) if finest_grain.is_some() || period.is_some() => {
                Shift::Months(12)
            }
            (Comparison::PreviousPeriod, None, Some(p)) => match p.whole_months() {
                Some(n) => Shift::Months(n),
                None => Shift::Days(p.days()),
            },
            _ => {
                return Err(EngineError::Invalid(format!(
                    "`{}` compares with {}, which needs a period (--period 2024-Q2) or a time dimension (--by time.quarter) to compare",
                    plan.asked
                        .iter()
                        .find(|(_, _, d)| d.and_then(Derived::comparison) == Some(c))
                        .map_or("", |a| a.0.as_str()),
                    match c {
                        Comparison::PreviousPeriod => "the previous period",
                        Comparison::YearBefore => "the same period a year before",
                    }
                )));
            }
        };
        shifts.push((c, interval));
    }
    Ok(shifts)
}

/// The answer's columns over the joined aggregations: the dimensions, each metric as asked —
/// itself or a derived form, as a window function or from a compared period's column — and
/// the benchmark's count of partners last. Returns the projection and the columns.
pub(crate) fn outer(
    plan: &Plan<'_>,
    base_columns: &[ResultColumn],
) -> (Vec<Expr>, Vec<ResultColumn>) {
    let mut columns: Vec<ResultColumn> = base_columns
        .iter()
        .filter(|c| c.format.is_none() || c.name == "benchmark_partners")
        .cloned()
        .collect();
    let mut select: Vec<Expr> = columns.iter().map(|c| named(&c.name)).collect();
    // Ties of a cumulative share are broken by the dimensions, so that it is the same on every run.
    let dim_order: Vec<SortExpr> = plan
        .dims
        .iter()
        .map(|(n, _)| named(n).sort(true, false))
        .collect();
    for (name, m, derived) in &plan.asked {
        let (expr, format) = match derived {
            None => (named(&m.name), Some(m.format)),
            Some(d) => d.column(m, &dim_order),
        };
        if columns.iter().any(|c| &c.name == name) {
            continue;
        }
        select.push(expr.alias(name));
        columns.push(ResultColumn {
            name: name.clone(),
            format,
        });
    }
    // Dimensions first, then the metrics in the order asked, then the benchmark count.
    if let Some(i) = columns.iter().position(|c| c.name == "benchmark_partners") {
        let c = columns.remove(i);
        let s = select.remove(i);
        columns.push(c);
        select.push(s);
    }
    (select, columns)
}

/// A value as a double, as the shares and changes are computed.
fn double(e: Expr) -> Expr {
    cast(e, DataType::Float64)
}

/// `SUM(v) OVER (...)`: the metric summed over the answer's rows, in `order` when running.
fn sum_over(v: Expr, order: Option<Vec<SortExpr>>) -> Expr {
    let total = Expr::from(WindowFunction::new(
        WindowFunctionDefinition::AggregateUDF(sum_udaf()),
        vec![v],
    ));
    match order {
        None => total,
        Some(order) => total
            .order_by(order)
            .window_frame(WindowFrame::new_bounds(
                WindowFrameUnits::Rows,
                WindowFrameBound::Preceding(ScalarValue::UInt64(None)),
                WindowFrameBound::CurrentRow,
            ))
            .build()
            .expect("a window function takes an order"),
    }
}

impl Derived {
    /// The form's column over the aggregated row of its metric `m` (a column named after it,
    /// and one per compared period, `m@previous_period`), and its format. `dim_order` breaks
    /// ties of a cumulative share.
    fn column(self, m: &Metric, dim_order: &[SortExpr]) -> (Expr, Option<Format>) {
        let v = named(&m.name);
        match self {
            Derived::PctOfTotal => (
                lit(100.0) * double(v.clone()) / nullif(double(sum_over(v, None)), lit(0i64)),
                Some(Format::Percent),
            ),
            Derived::Rank => (
                rank()
                    .order_by(vec![v.sort(false, false)])
                    .build()
                    .expect("rank takes an order"),
                Some(Format::Integer),
            ),
            Derived::CumulativePct => {
                let mut by = vec![v.clone().sort(false, false)];
                by.extend(dim_order.iter().cloned());
                (
                    lit(100.0) * double(sum_over(v.clone(), Some(by)))
                        / nullif(double(sum_over(v, None)), lit(0i64)),
                    Some(Format::Percent),
                )
            }
            Derived::Compared(c) => (named(&compared(&m.name, c)), Some(m.format)),
            Derived::Change(c) | Derived::ChangePct(c) => self.change(m, c),
        }
    }

    /// A change against a compared period, in the metric's units or in percent.
    fn change(self, m: &Metric, c: Comparison) -> (Expr, Option<Format>) {
        let v = named(&m.name);
        let was = named(&compared(&m.name, c));
        // A sum or count over no rows is nothing sold: revenue that fell to nothing changed by
        // all of it. An average over no rows has no value to compare.
        let additive = matches!(m.kind, MetricKind::Base { .. });
        let (now, then) = if additive {
            (
                coalesce(vec![v.clone(), lit(0i64)]),
                coalesce(vec![was.clone(), lit(0i64)]),
            )
        } else {
            (v.clone(), was.clone())
        };
        if let Derived::ChangePct(_) = self {
            // Against the absolute value, so that a credit turning into a sale is a rise.
            return (
                lit(100.0) * (double(now) - double(then.clone()))
                    / nullif(abs(double(then)), lit(0i64)),
                Some(Format::Percent),
            );
        }
        let change = now - then;
        let change = if additive {
            when(v.is_null().and(was.is_null()), lit(ScalarValue::Null))
                .otherwise(change)
                .expect("a case with a branch")
        } else {
            change
        };
        // One declared type: DataFusion's inferred decimal precision of the CASE differs from
        // the one it computes (found by the scope property test).
        let change = match m.format {
            Format::Money => cast(change, DataType::Decimal128(38, 6)),
            Format::Integer => cast(change, DataType::Int64),
            _ => double(change),
        };
        (change, Some(m.format))
    }
}

/// The column of a metric's value in a compared period, `closed_revenue@previous_period`.
pub(crate) fn compared(metric: &str, c: Comparison) -> String {
    format!("{metric}@{}", c.suffix())
}
