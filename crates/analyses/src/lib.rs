//! The analyses of the scenario (spec: "Analyses" in metrics.md): Pareto segmentation, the
//! partner scorecard, under-performers, a partner's products, customer potential with target
//! lists, high-risk accounts, channel benchmarks, and the partner program: the deal
//! registration funnel, funds and campaigns, and enablement.
//!
//! Every figure is a model metric computed by the engine under the caller's scope; this crate
//! only orders, ranks and classifies the answers. It knows nothing of DataFusion.

#![warn(missing_docs)]

pub mod benchmarks;
pub mod campaigns;
pub mod enablement;
pub mod pareto;
pub mod planned;
pub mod potential;
pub mod products;
pub mod registrations;
pub mod risk;
pub mod scorecard;
pub mod underperformers;

use std::collections::BTreeMap;

use prism_engine::{Audience, Engine, EngineError, Period, Query, QueryResult, Row, Session};
pub use prism_engine::{Money, Value};
use serde::Serialize;

/// Why an analysis cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// The engine refused or failed a question.
    #[error(transparent)]
    Engine(EngineError),
    /// A parameter is wrong; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// The scope does not reach what was asked.
    #[error("{0}")]
    Forbidden(String),
}

impl From<EngineError> for AnalysisError {
    /// The engine's refusal to narrow an audience is the analysis's refusal too.
    fn from(e: EngineError) -> AnalysisError {
        match e {
            EngineError::Forbidden(m) => AnalysisError::Forbidden(m),
            other => AnalysisError::Engine(other),
        }
    }
}

/// A result of an analysis.
pub type Result<T> = std::result::Result<T, AnalysisError>;

/// What every analysis runs with: the engine, a session over one warehouse version, the
/// caller's audience and the period (none: all loaded data).
pub struct Context<'a> {
    /// The engine that answers.
    pub engine: &'a Engine,
    /// A session over one warehouse version.
    pub session: &'a Session,
    /// Whose rows the analysis sees.
    pub audience: Audience,
    /// The period; none is all loaded data.
    pub period: Option<Period>,
}

impl Context<'_> {
    async fn run(&self, query: Query) -> Result<QueryResult> {
        Ok(self
            .engine
            .run(
                self.session,
                &Query {
                    period: self.period,
                    ..query
                },
                &self.audience,
            )
            .await?)
    }

    /// The same query for one partner only, when the audience reaches it.
    async fn run_for(&self, partner: &str, query: Query) -> Result<QueryResult> {
        Ok(self
            .engine
            .run(
                self.session,
                &Query {
                    period: self.period,
                    ..query
                },
                &self.audience.narrow_to(partner)?,
            )
            .await?)
    }

    async fn benchmark(&self, query: Query) -> Result<QueryResult> {
        Ok(self
            .engine
            .run_benchmark(
                self.session,
                &Query {
                    period: self.period,
                    ..query
                },
            )
            .await?)
    }

    /// Refuses a partner outside the audience: a partner user asking for another partner, or a
    /// channel manager for a partner they do not manage.
    pub fn check_partner(&self, partner: &str) -> Result<()> {
        self.audience.narrow_to(partner)?;
        Ok(())
    }

    /// The partners the scope sees, by id.
    async fn partners(&self) -> Result<BTreeMap<String, Partner>> {
        let r = self
            .engine
            .members(self.session, "partner", &self.audience)
            .await?;
        let text = |row: &Row, name: &str| row.text(name).unwrap_or_default().to_string();
        Ok(r.rows()
            .iter()
            .map(|row| {
                let p = Partner {
                    partner_id: text(row, "partner.partner_id"),
                    partner_name: text(row, "partner.partner_name"),
                    tier: text(row, "partner.tier"),
                    partner_type: text(row, "partner.partner_type"),
                    region: text(row, "partner.region"),
                    status: text(row, "partner.status"),
                };
                (p.partner_id.clone(), p)
            })
            .collect())
    }

    /// The metrics over the whole audience and period (missing values when no row).
    async fn totals(&self, metrics: &[&str]) -> Result<Row> {
        let r = self
            .run(Query {
                metrics: metrics.iter().map(|m| m.to_string()).collect(),
                ..Query::default()
            })
            .await?;
        Ok(r.first_row())
    }

    /// One query's rows by partner id, without direct sales (which are no partner).
    async fn by_partner(&self, metrics: &[&str]) -> Result<BTreeMap<String, Row>> {
        let r = self
            .run(Query {
                metrics: metrics.iter().map(|m| m.to_string()).collect(),
                by: vec!["partner.partner_id".into()],
                ..Query::default()
            })
            .await?;
        Ok(r.rows()
            .into_iter()
            .filter_map(|row| Some((row.text("partner.partner_id")?.to_string(), row)))
            .collect())
    }
}

/// A partner, as the partner lists of every analysis show it (so each list can go to a loyalty
/// or improvement program as it is).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Partner {
    /// The partner's id.
    pub partner_id: String,
    /// Its name.
    pub partner_name: String,
    /// Its program tier.
    pub tier: String,
    /// Reseller, Distributor, System Integrator, ...
    pub partner_type: String,
    /// Its region.
    pub region: String,
    /// Active or Inactive.
    pub status: String,
}

impl Partner {
    /// The value of a partner attribute named as in the model (`partner.tier`).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        Some(match name {
            "partner.partner_id" => &self.partner_id,
            "partner.partner_name" => &self.partner_name,
            "partner.tier" => &self.tier,
            "partner.partner_type" => &self.partner_type,
            "partner.region" => &self.region,
            "partner.status" => &self.status,
            _ => return None,
        })
    }
}

/// The partners an analysis of a period covers: every partner with status Active, and any
/// other partner with revenue in the period (an inactive partner that still sold is part of
/// the channel's revenue).
fn active_partners(
    partners: &BTreeMap<String, Partner>,
    with_revenue: impl Fn(&str) -> bool,
) -> Vec<Partner> {
    partners
        .values()
        .filter(|p| p.status.eq_ignore_ascii_case("active") || with_revenue(&p.partner_id))
        .cloned()
        .collect()
}

/// Percentile ranks, 0 (worst) to 100 (best), among the values given; ties share the average
/// of the ranks they span. A single value ranks 100.
pub fn percentile_ranks(values: &[f64], higher_is_better: bool) -> Vec<f64> {
    let n = values.len();
    let mut order: Vec<usize> = (0..n).collect();
    // Worst first.
    order.sort_by(|&a, &b| {
        let c = values[a].total_cmp(&values[b]);
        if higher_is_better { c } else { c.reverse() }
    });
    let mut ranks = vec![0.0; n];
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        // Positions i..=j (0-based) share the average rank.
        let average = (i + j) as f64 / 2.0;
        for k in i..=j {
            ranks[order[k]] = if n == 1 {
                100.0
            } else {
                100.0 * average / (n - 1) as f64
            };
        }
        i = j + 1;
    }
    ranks
}

/// A table for a person or a CSV file: what every analysis can print. Its cells are typed;
/// the edges make their text (`Value::exact` for CSV, `Value::readable` for reading).
pub trait Table {
    /// Sentences that say what the table means ("12 partners, 14.6 % of ... bring 80 % ...").
    fn headline(&self) -> Vec<String>;
    /// The columns' headings.
    fn header(&self) -> Vec<String>;
    /// The rows, typed cells in the heading's order.
    fn rows(&self) -> Vec<Vec<Value>>;
    /// Why a cell of `rows()` (by row and column name) is missing, when the table knows better
    /// than the metric's own reason: a channel figure withheld, say.
    fn missing_reason(&self, _row: usize, _column: &str) -> Option<String> {
        None
    }
}

/// A figure in a headline sentence; nothing when missing.
fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or(String::new(), |v| v.to_string())
}

/// A percentage cell.
fn pct(v: Option<f64>) -> Value {
    v.map_or(Value::Missing, Value::Percent)
}

/// A rate, average or ratio cell.
fn num(v: Option<f64>) -> Value {
    v.map_or(Value::Missing, Value::Number)
}

/// A count or position cell.
fn count(v: Option<usize>) -> Value {
    v.map_or(Value::Missing, |n| Value::Count(n as i64))
}

/// A text cell.
fn text(v: &str) -> Value {
    Value::Text(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_ranks_share_ties_and_invert_when_lower_is_better() {
        assert_eq!(
            percentile_ranks(&[10.0, 30.0, 20.0], true),
            vec![0.0, 100.0, 50.0]
        );
        assert_eq!(
            percentile_ranks(&[10.0, 30.0, 20.0], false),
            vec![100.0, 0.0, 50.0]
        );
        // 5 and 5 span positions 1 and 2 of 0..3: both 1.5 / 3.
        assert_eq!(
            percentile_ranks(&[1.0, 5.0, 5.0, 9.0], true),
            vec![0.0, 50.0, 50.0, 100.0]
        );
        assert_eq!(percentile_ranks(&[7.0], true), vec![100.0]);
    }
}

/// A cell as a CSV or Excel export writes it: a text cell that a spreadsheet would run as a
/// formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) gets a leading `'`,
/// which spreadsheets show as text; a number stays a number, a negative amount included. A
/// partner or customer name comes from the CRM as anyone typed it, and must not become a
/// formula on the machine of whoever opens the export.
pub fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && !is_plain_number(cell) {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// A cell of an analysis as its CSV file writes it: exact, and safe from spreadsheet formulas.
pub fn csv_cell(v: &Value) -> String {
    spreadsheet_safe(&v.exact()).into_owned()
}

/// A decimal number as Prism writes one: an optional sign, digits, and an optional fraction.
fn is_plain_number(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
    !whole.is_empty()
        && !fraction.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod spreadsheet_tests {
    use super::spreadsheet_safe;

    #[test]
    fn text_a_spreadsheet_would_run_is_quoted_and_numbers_stay_numbers() {
        for (cell, written) in [
            (
                "=HYPERLINK(\"http://x\",\"y\")",
                "'=HYPERLINK(\"http://x\",\"y\")",
            ),
            ("+1+cmd", "'+1+cmd"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("-", "'-"),
            ("-49.75", "-49.75"),
            ("-3", "-3"),
            ("+12.5", "+12.5"),
            ("1200.00", "1200.00"),
            ("Acme = Best", "Acme = Best"),
            ("", ""),
        ] {
            assert_eq!(spreadsheet_safe(cell), written, "{cell:?}");
        }
    }
}
