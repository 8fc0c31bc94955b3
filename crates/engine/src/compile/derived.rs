//! The derived forms of a metric (`closed_revenue:rank`, `:change_pct`, …) and the comparisons
//! with an earlier period they need, with how far that period's dates move to meet the query's.

use prism_model::{Grain, did_you_mean};

use crate::EngineError;

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

    /// The SQL interval it adds to a date.
    pub(crate) fn interval_sql(self) -> String {
        format!("INTERVAL '{self}'")
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
