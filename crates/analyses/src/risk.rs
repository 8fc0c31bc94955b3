//! High-risk accounts: customers with 3 or more open P1/P2 service requests, or an average CSAT
//! below 3 over their last 5 surveys. Under a partner scope, only the partner's own customers,
//! requests and surveys count.

use std::collections::HashMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Date32Type, Int64Type};
use prism_engine::{Filter, FilterOp, Query};
use serde::Serialize;

use crate::{AnalysisError, Context, Result, Table, Value, num, text};

/// A map looked up once per customer and survey (hundreds of thousands of times): a fast
/// hash, as the keys are customer ids from the warehouse, not from a request.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Open critical (P1/P2) requests that make an account high-risk.
pub const OPEN_CRITICAL: i64 = 3;
/// The surveys an account's recent satisfaction is averaged over, and the average below which
/// it is high-risk.
pub const RECENT_SURVEYS: usize = 5;
/// An average of the recent surveys below this is high-risk.
pub const LOW_CSAT: f64 = 3.0;

/// A customer account at risk, with why.
#[derive(Clone, Debug, Serialize)]
pub struct RiskAccount {
    /// The customer's id.
    pub customer_id: String,
    /// Its name.
    pub customer_name: String,
    /// Its industry.
    pub industry: String,
    /// Its size band.
    pub size_band: String,
    /// Its region.
    pub region: String,
    /// Its open P1 and P2 requests.
    pub open_critical_requests: i64,
    /// The average score of its recent surveys.
    pub recent_csat: Option<f64>,
    /// How many surveys that average is over.
    pub recent_surveys: usize,
    /// Why it is at risk, in words.
    pub reasons: Vec<String>,
}

/// High-risk accounts.
#[derive(Clone, Debug, Serialize)]
pub struct Risk {
    /// The accounts, most open critical requests first.
    pub accounts: Vec<RiskAccount>,
}

/// Accounts with 3 or more open P1/P2 requests, or an average CSAT below 3 over their last 5 surveys.
pub async fn risk(cx: &Context<'_>) -> Result<Risk> {
    // The open critical requests, the surveys and the customers do not depend on each other:
    // asked side by side, each one's single-threaded phases leave the cores to the others.
    let (open, surveys, customers) = tokio::try_join!(
        cx.run(Query {
            metrics: vec!["open_sr_count".into()],
            by: vec!["customer.customer_id".into()],
            filters: vec![Filter {
                dimension: "service_request.priority".into(),
                op: FilterOp::In(vec!["P1".into(), "P2".into()])
            }],
            ..Query::default()
        }),
        async {
            Ok(cx
                .engine
                .rows(
                    cx.session,
                    "satisfaction_surveys",
                    &["customer_id", "surveyed_on", "survey_id", "score"],
                    &cx.audience,
                    cx.period.as_ref(),
                )
                .await?)
        },
        // Looked up, not listed: the accounts are put in their own order below.
        async {
            Ok(cx
                .engine
                .members_unordered(cx.session, "customer", &cx.audience)
                .await?)
        },
    )?;
    let as_type = |a: &arrow::array::ArrayRef, t: &DataType| {
        arrow::compute::cast(a, t).map_err(|e| {
            AnalysisError::Invalid(format!("unexpected column type in the warehouse: {e}"))
        })
    };
    // Each customer's open critical requests, read from the columns as stored.
    let mut open_columns = Vec::new();
    for b in &open.batches {
        open_columns.push((
            as_type(b.column(0), &DataType::Utf8)?,
            as_type(b.column(1), &DataType::Int64)?,
        ));
    }
    let mut open: FastMap<&str, i64> = FastMap::default();
    for (customer, count) in &open_columns {
        let (customer, count) = (
            customer.as_string::<i32>(),
            count.as_primitive::<Int64Type>(),
        );
        for i in 0..customer.len() {
            if customer.is_valid(i) && count.is_valid(i) {
                open.insert(customer.value(i), count.value(i));
            }
        }
    }

    // Read straight from the columns: made into text, every survey's four cells took most of the
    // analysis's time over hundreds of thousands of surveys.
    let mut columns = Vec::new();
    for b in &surveys.batches {
        columns.push((
            as_type(b.column(0), &DataType::Utf8)?,
            as_type(b.column(1), &DataType::Date32)?,
            as_type(b.column(2), &DataType::Utf8)?,
            as_type(b.column(3), &DataType::Int64)?,
        ));
    }
    // Each survey with a dense number for its customer, then sorted: each customer's surveys
    // side by side, latest first, a day's surveys by id (so the answer does not depend on the
    // order rows come in). One flat list instead of a list per customer: allocating 300 k
    // small lists was most of the analysis's time.
    let mut number: FastMap<&str, u32> = FastMap::default();
    let mut surveyed: Vec<&str> = Vec::new();
    let mut list: Vec<(u32, i32, &str, i64)> =
        Vec::with_capacity(surveys.batches.iter().map(|b| b.num_rows()).sum());
    for (customer, day, survey, score) in &columns {
        let (customer, day, survey, score) = (
            customer.as_string::<i32>(),
            day.as_primitive::<Date32Type>(),
            survey.as_string::<i32>(),
            score.as_primitive::<Int64Type>(),
        );
        for i in 0..customer.len() {
            if customer.is_valid(i) {
                let c = customer.value(i);
                let n = *number.entry(c).or_insert_with(|| {
                    surveyed.push(c);
                    (surveyed.len() - 1) as u32
                });
                list.push((n, day.value(i), survey.value(i), score.value(i)));
            }
        }
    }
    list.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| b.1.cmp(&a.1))
            .then_with(|| b.2.cmp(a.2))
    });
    // The average over each customer's last surveys, and how many, by the customer's number.
    let mut recent: Vec<(f64, usize)> = vec![(0.0, 0); surveyed.len()];
    for group in list.chunk_by(|a, b| a.0 == b.0) {
        let last = &group[..group.len().min(RECENT_SURVEYS)];
        recent[group[0].0 as usize] = (
            last.iter().map(|s| s.3).sum::<i64>() as f64 / last.len() as f64,
            last.len(),
        );
    }
    let recent_of = |id: &str| number.get(id).map(|n| recent[*n as usize]);

    let at = |n: &str| customers.column(n).expect("the shipped customer dimension");
    // Only the flagged customers' attributes are read out: most customers are not at risk.
    let flagged = |id: &str| {
        open.get(id).is_some_and(|n| *n >= OPEN_CRITICAL)
            || recent_of(id).is_some_and(|(a, _)| a < LOW_CSAT)
    };
    let mut accounts = Vec::new();
    for b in &customers.batches {
        // Read as stored, not formatted cell by cell: 360 k customers at scale 8.
        let text = |name: &str| as_type(b.column(at(name)), &DataType::Utf8);
        let (ids, names, industries, sizes, regions) = (
            text("customer.customer_id")?,
            text("customer.customer_name")?,
            text("customer.industry")?,
            text("customer.size_band")?,
            text("customer.region")?,
        );
        let (ids, names, industries, sizes, regions) = (
            ids.as_string::<i32>(),
            names.as_string::<i32>(),
            industries.as_string::<i32>(),
            sizes.as_string::<i32>(),
            regions.as_string::<i32>(),
        );
        let cell = |a: &arrow::array::StringArray, r: usize| {
            if a.is_valid(r) {
                a.value(r).to_string()
            } else {
                String::new()
            }
        };
        for r in 0..b.num_rows() {
            if !ids.is_valid(r) || !flagged(ids.value(r)) {
                continue;
            }
            let customer = ids.value(r);
            let critical = open.get(customer).copied().unwrap_or(0);
            let (csat, n) = recent_of(customer).map_or((None, 0), |(a, n)| (Some(a), n));
            let mut reasons = Vec::new();
            if critical >= OPEN_CRITICAL {
                reasons.push(format!("{critical} open P1/P2 service requests"));
            }
            if let Some(a) = csat
                && a < LOW_CSAT
            {
                reasons.push(format!(
                    "average CSAT {a:.2} over the last {n} survey{}",
                    if n == 1 { "" } else { "s" }
                ));
            }
            accounts.push(RiskAccount {
                customer_id: customer.to_string(),
                customer_name: cell(names, r),
                industry: cell(industries, r),
                size_band: cell(sizes, r),
                region: cell(regions, r),
                open_critical_requests: critical,
                recent_csat: csat,
                recent_surveys: n,
                reasons,
            });
        }
    }
    // Most urgent first: open critical requests, then the lowest recent satisfaction.
    accounts.sort_by(|a, b| {
        b.open_critical_requests
            .cmp(&a.open_critical_requests)
            .then_with(|| {
                a.recent_csat
                    .unwrap_or(5.0)
                    .total_cmp(&b.recent_csat.unwrap_or(5.0))
            })
            .then_with(|| a.customer_id.cmp(&b.customer_id))
    });
    Ok(Risk { accounts })
}

impl Table for Risk {
    fn headline(&self) -> Vec<String> {
        vec![format!(
            "{} high-risk accounts: {OPEN_CRITICAL} or more open P1/P2 requests, or an average CSAT below {LOW_CSAT} over the last {RECENT_SURVEYS} surveys",
            self.accounts.len()
        )]
    }

    fn header(&self) -> Vec<String> {
        [
            "customer_id",
            "customer_name",
            "industry",
            "size_band",
            "region",
            "open_critical_requests",
            "recent_csat",
            "recent_surveys",
            "reasons",
        ]
        .map(String::from)
        .to_vec()
    }

    fn rows(&self) -> Vec<Vec<Value>> {
        self.accounts
            .iter()
            .map(|a| {
                vec![
                    text(&a.customer_id),
                    text(&a.customer_name),
                    text(&a.industry),
                    text(&a.size_band),
                    text(&a.region),
                    Value::Count(a.open_critical_requests),
                    num(a.recent_csat),
                    Value::Count(a.recent_surveys as i64),
                    Value::Text(a.reasons.join("; ")),
                ]
            })
            .collect()
    }
}
