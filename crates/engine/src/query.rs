//! The query a user asks: metrics, dimensions, filters, a period, order and limit — parsed from
//! the text a user types, so that once a `Query` exists its parts are well-formed.

use chrono::{Datelike, Months, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::EngineError;

/// A question: metrics, cut by dimensions, filtered, over a period, ordered and limited.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Query {
    /// Metrics and derived forms.
    pub metrics: Vec<String>,
    /// Dimensions.
    #[serde(default)]
    pub by: Vec<String>,
    /// Filters.
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// The period; none is all loaded data.
    #[serde(default)]
    pub period: Option<Period>,
    /// The order of the rows.
    #[serde(default)]
    pub order: Vec<Order>,
    /// At most this many rows.
    #[serde(default)]
    pub limit: Option<usize>,
}

/// A filter on a dimension.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    /// The dimension (`partner.region`, `time.month`).
    pub dimension: String,
    /// What it keeps.
    pub op: FilterOp,
}

/// What a filter keeps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterOp {
    /// Rows with one of these values.
    In(Vec<String>),
    /// Rows with none of these values.
    NotIn(Vec<String>),
    /// Inclusive bounds; either may be open.
    Range {
        /// The lowest value kept.
        from: Option<String>,
        /// The highest value kept.
        to: Option<String>,
    },
}

/// Days from `from` to `to`, both included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    /// The first day.
    pub from: NaiveDate,
    /// The last day.
    pub to: NaiveDate,
}

/// An order of the answer's rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// A metric, derived form or dimension of the question.
    pub column: String,
    /// Largest first.
    pub descending: bool,
}

fn parse_date(s: &str, what: &str) -> Result<NaiveDate, EngineError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| EngineError::Parse(format!("{what}: {s:?} is not a date (YYYY-MM-DD)")))
}

impl Period {
    /// `FROM..TO` with dates (`2024-01-01..2024-03-31`), or a year (`2024`), a quarter
    /// (`2024-Q2`), a month (`2024-05`) or a day (`2024-05-17`); the ends of a range may be
    /// those too (`2024-01..2024-06`, `2023-Q4..2024-Q1`).
    pub fn parse(s: &str) -> Result<Period, EngineError> {
        let bad = || {
            EngineError::Parse(format!(
                "period {s:?}: expected FROM..TO (2024-01-01..2024-03-31), a year (2024), a quarter (2024-Q2), a month (2024-05) or a day (2024-05-17)"
            ))
        };
        if s.len() == 10 && !s.contains("..") && !s.contains("-Q") {
            let d = parse_date(s, "period")?;
            return Ok(Period { from: d, to: d });
        }
        if let Some((a, b)) = s.split_once("..") {
            // Each end is a date, or a year, quarter or month taken from its first or last day.
            let end = |t: &str, what: &str| -> Result<Period, EngineError> {
                let t = t.trim();
                if t.len() == 10 {
                    let d = parse_date(t, what)?;
                    return Ok(Period { from: d, to: d });
                }
                if t.is_empty() || t.contains("..") {
                    return Err(bad());
                }
                Period::parse(t).map_err(|_| bad())
            };
            let from = end(a, "period start")?.from;
            let to = end(b, "period end")?.to;
            if to < from {
                return Err(EngineError::Parse(format!(
                    "period {s:?}: the end comes before the start"
                )));
            }
            return Ok(Period { from, to });
        }
        let ymd = |y: i32, m: u32| NaiveDate::from_ymd_opt(y, m, 1).ok_or_else(bad);
        let last_of = |y: i32, m: u32| -> Result<NaiveDate, EngineError> {
            let next = if m == 12 {
                ymd(y + 1, 1)?
            } else {
                ymd(y, m + 1)?
            };
            Ok(next.pred_opt().expect("a day before"))
        };
        if let Some((y, q)) = s.split_once("-Q") {
            let y: i32 = y.parse().map_err(|_| bad())?;
            let q: u32 = q.parse().map_err(|_| bad())?;
            if !(1..=4).contains(&q) {
                return Err(bad());
            }
            return Ok(Period {
                from: ymd(y, q * 3 - 2)?,
                to: last_of(y, q * 3)?,
            });
        }
        if let Some((y, m)) = s.split_once('-') {
            let y: i32 = y.parse().map_err(|_| bad())?;
            let m: u32 = m.parse().map_err(|_| bad())?;
            if !(1..=12).contains(&m) {
                return Err(bad());
            }
            return Ok(Period {
                from: ymd(y, m)?,
                to: last_of(y, m)?,
            });
        }
        let y: i32 = s.parse().map_err(|_| bad())?;
        Ok(Period {
            from: ymd(y, 1)?,
            to: last_of(y, 12)?,
        })
    }

    /// The number of calendar months the period spans, when it is made of whole months
    /// (a month, a quarter, a year, or a range from a first to a last day of a month).
    pub fn whole_months(&self) -> Option<u32> {
        let first = self.from.day() == 1;
        let last = self.to.succ_opt().is_some_and(|d| d.day() == 1);
        if !(first && last) {
            return None;
        }
        let months = (self.to.year() - self.from.year()) * 12 + self.to.month() as i32
            - self.from.month() as i32
            + 1;
        u32::try_from(months).ok()
    }

    /// The number of days in the period, both ends included.
    /// Whether it is exactly one calendar quarter (`2024-Q2`).
    pub fn is_calendar_quarter(&self) -> bool {
        self.whole_months() == Some(3) && [1, 4, 7, 10].contains(&self.from.month())
    }

    /// Its length in days, both ends included.
    pub fn days(&self) -> i64 {
        (self.to - self.from).num_days() + 1
    }

    /// The period of the same length just before this one: the previous quarter for a quarter,
    /// the previous N months for N whole months, otherwise the same number of days before.
    pub fn previous(&self) -> Period {
        match self.whole_months() {
            Some(n) => {
                let from = self.from - Months::new(n);
                let to = self.from.pred_opt().expect("a day before");
                Period { from, to }
            }
            None => {
                let to = self.from.pred_opt().expect("a day before");
                Period {
                    from: to - chrono::Duration::days(self.days() - 1),
                    to,
                }
            }
        }
    }

    /// The same period a year before (29 February becomes 28 February).
    pub fn year_before(&self) -> Period {
        match self.whole_months() {
            // Whole months stay whole months: February 2025 compares with all of February 2024.
            Some(_) => Period {
                from: self.from - Months::new(12),
                to: (self.to.succ_opt().expect("a day after") - Months::new(12))
                    .pred_opt()
                    .expect("a day before"),
            },
            None => Period {
                from: self.from - Months::new(12),
                to: self.to - Months::new(12),
            },
        }
    }
}

impl Filter {
    /// `D=V`, `D=V1|V2` (any of), `D!=V1|V2` (none of), `D>=V`, `D<=V`, `D=A..B` (range).
    pub fn parse(s: &str) -> Result<Filter, EngineError> {
        let bad = || {
            EngineError::Parse(format!(
                "filter {s:?}: expected DIMENSION=VALUE, DIMENSION=V1|V2, DIMENSION!=VALUE, DIMENSION>=VALUE, DIMENSION<=VALUE or DIMENSION=FROM..TO"
            ))
        };
        let values = |v: &str| {
            v.split('|')
                .map(|x| x.trim().to_string())
                .collect::<Vec<_>>()
        };
        let (dimension, op) = if let Some((d, v)) = s.split_once("!=") {
            (d, FilterOp::NotIn(values(v)))
        } else if let Some((d, v)) = s.split_once(">=") {
            (
                d,
                FilterOp::Range {
                    from: Some(v.trim().to_string()),
                    to: None,
                },
            )
        } else if let Some((d, v)) = s.split_once("<=") {
            (
                d,
                FilterOp::Range {
                    from: None,
                    to: Some(v.trim().to_string()),
                },
            )
        } else if let Some((d, v)) = s.split_once('=') {
            match v.split_once("..") {
                Some((a, b)) => (
                    d,
                    FilterOp::Range {
                        from: Some(a.trim().into()),
                        to: Some(b.trim().into()),
                    },
                ),
                None => (d, FilterOp::In(values(v))),
            }
        } else {
            return Err(bad());
        };
        let dimension = dimension.trim();
        if dimension.is_empty() {
            return Err(bad());
        }
        if let FilterOp::In(v) | FilterOp::NotIn(v) = &op
            && v.iter().any(String::is_empty)
        {
            return Err(EngineError::Parse(format!("filter {s:?}: an empty value")));
        }
        Ok(Filter {
            dimension: dimension.to_string(),
            op,
        })
    }
}

impl Order {
    /// `NAME`, `NAME:asc` or `NAME:desc`; NAME may itself be a derived form (`units_sold:rank`).
    pub fn parse(s: &str) -> Result<Order, EngineError> {
        let (column, descending) = match s.rsplit_once(':') {
            Some((c, "asc")) => (c, false),
            Some((c, "desc")) => (c, true),
            _ => (s, false),
        };
        if column.trim().is_empty() {
            return Err(EngineError::Parse(format!(
                "order {s:?}: expected NAME, NAME:asc or NAME:desc"
            )));
        }
        Ok(Order {
            column: column.trim().to_string(),
            descending,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn periods_are_ranges_years_quarters_months_or_days() {
        assert_eq!(
            Period::parse("2025-02-11").unwrap(),
            Period {
                from: d("2025-02-11"),
                to: d("2025-02-11")
            }
        );
        assert!(Period::parse("2025-02-30").is_err());
        assert_eq!(
            Period::parse("2024-01-05..2024-02-10").unwrap(),
            Period {
                from: d("2024-01-05"),
                to: d("2024-02-10")
            }
        );
        assert_eq!(
            Period::parse("2024").unwrap(),
            Period {
                from: d("2024-01-01"),
                to: d("2024-12-31")
            }
        );
        assert_eq!(
            Period::parse("2024-Q1").unwrap(),
            Period {
                from: d("2024-01-01"),
                to: d("2024-03-31")
            }
        );
        assert_eq!(
            Period::parse("2024-02").unwrap(),
            Period {
                from: d("2024-02-01"),
                to: d("2024-02-29")
            }
        );
        assert_eq!(
            Period::parse("2024-01..2024-06").unwrap(),
            Period {
                from: d("2024-01-01"),
                to: d("2024-06-30")
            }
        );
        assert_eq!(
            Period::parse("2023-Q4..2024-02-10").unwrap(),
            Period {
                from: d("2023-10-01"),
                to: d("2024-02-10")
            }
        );
        assert_eq!(
            Period::parse("2023..2024").unwrap(),
            Period {
                from: d("2023-01-01"),
                to: d("2024-12-31")
            }
        );
    }

    #[test]
    fn the_previous_period_of_whole_months_is_whole_months_otherwise_the_same_number_of_days() {
        let p = |s: &str| Period::parse(s).unwrap();
        // Q3 has 92 days, Q2 91: the previous quarter all the same.
        assert_eq!(p("2024-Q3").previous(), p("2024-Q2"));
        assert_eq!(p("2024-Q1").previous(), p("2023-Q4"));
        assert_eq!(p("2024-03").previous(), p("2024-02"));
        assert_eq!(p("2024").previous(), p("2023"));
        assert_eq!(
            p("2024-02-01..2024-04-30").previous(),
            p("2023-11-01..2024-01-31")
        );
        // 34 days before 2024-02-01.
        assert_eq!(
            p("2024-02-01..2024-03-05").previous(),
            p("2023-12-29..2024-01-31")
        );
        assert_eq!(p("2024-02").year_before(), p("2023-02"));
        assert_eq!(p("2025-02").year_before(), p("2024-02"));
        assert_eq!(
            p("2024-02-29..2024-03-10").year_before(),
            p("2023-02-28..2023-03-10")
        );
    }

    #[test]
    fn malformed_periods_are_refused() {
        for bad in [
            "2024-Q5",
            "2024-13",
            "Q1",
            "2024-02-01..2024-01-01",
            "2024-02-30..2024-03-01",
            "",
            "2024-06..2024-01",
            "..2024",
            "2024..",
            "2024-1-5..2024-02",
        ] {
            assert!(Period::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_read_as_typed() {
        assert_eq!(
            Filter::parse("partner.tier=Gold|Platinum").unwrap().op,
            FilterOp::In(vec!["Gold".into(), "Platinum".into()])
        );
        assert_eq!(
            Filter::parse("partner.region!=EMEA").unwrap().op,
            FilterOp::NotIn(vec!["EMEA".into()])
        );
        assert_eq!(
            Filter::parse("time.month=2024-01..2024-03").unwrap().op,
            FilterOp::Range {
                from: Some("2024-01".into()),
                to: Some("2024-03".into())
            }
        );
        assert!(Filter::parse("partner.tier").is_err());
        assert!(Filter::parse("=Gold").is_err());
        assert!(Filter::parse("partner.tier=").is_err());
    }
}
