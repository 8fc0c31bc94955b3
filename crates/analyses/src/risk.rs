//! High-risk accounts: customers with 3 or more open P1/P2 service requests, or an average CSAT
//! below 3 over their last 5 surveys. Under a partner scope, only the partner's own customers,
//! requests and surveys count.

use std::collections::HashMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Date32Type, Int64Type};
use prism_engine::{Filter, FilterOp, Query};
use serde::Serialize;

use crate::{AnalysisError, Context, Result, Table};

/// A map looked up once per customer and survey (hundreds of thousands of times): a fast
/// hash, as the keys are customer ids from the warehouse, not from a request.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Open critical (P1/P2) requests that make an account high-risk.
pub const OPEN_CRITICAL: i64 = 3;
/// The surveys an account's recent satisfaction is averaged over, and the average below which
/// it is high-risk.
pub const RECENT_SURVEYS: usize = 5;
pub const LOW_CSAT: f64 = 3.0;

#[derive(Clone, Debug, Serialize)]
pub struct RiskAccount {
    pub customer_id: String,
    pub customer_name: String,
    pub industry: String,
    pub size_band: String,
    pub region: String,
    pub open_critical_requests: i64,
    pub recent_csat: Option<f64>,
    pub recent_surveys: usize,
    pub reasons: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Risk {
    pub accounts: Vec<RiskAccount>,
}

pub async fn risk(cx: &Context<'_>) -> Result<Risk> {
    // The open critical requests, the surveys and the customers do not depend on each other:
    // asked side by side, each one's single-threaded phases leave the cores to the others.
    let (open, surveys, customers) = tokio::try_join!(
        cx.run(Query {
            metrics: vec!["open_sr_count".into()],
            by: vec!["customer.customer_id".into()],
            filters: vec![Filter { dimension: "service_request.priority".into(), op: FilterOp::In(vec!["P1".into(), "P2".into()]) }],
            ..Query::default()
        }),
        async { Ok(cx.engine.rows(cx.session, "satisfaction_surveys", &["customer_id", "surveyed_on", "survey_id", "score"], &cx.scope, cx.period.as_ref()).await?) },
        async { Ok(cx.engine.members(cx.session, "customer", &cx.scope).await?) },
    )?;
    let open = open.formatted_rows();
    let open: FastMap<String, i64> = open.into_iter().filter_map(|r| Some((r[0].clone(), r[1].parse().ok()?))).collect();

    // Read straight from the columns: made into text, every survey's four cells took most of the
    // analysis's time over hundreds of thousands of surveys.
    let as_type = |a: &arrow::array::ArrayRef, t: &DataType| {
        arrow::compute::cast(a, t).map_err(|e| AnalysisError::Invalid(format!("unexpected column type in the warehouse: {e}")))
    };
    let mut columns = Vec::new();
    for b in &surveys.batches {
        columns.push((
            as_type(b.column(0), &DataType::Utf8)?,
            as_type(b.column(1), &DataType::Date32)?,
            as_type(b.column(2), &DataType::Utf8)?,
            as_type(b.column(3), &DataType::Int64)?,
        ));
    }
    let mut by_customer: FastMap<&str, Vec<(i32, &str, i64)>> = FastMap::default();
    for (customer, day, survey, score) in &columns {
        let (customer, day, survey, score) = (customer.as_string::<i32>(), day.as_primitive::<Date32Type>(), survey.as_string::<i32>(), score.as_primitive::<Int64Type>());
        for i in 0..customer.len() {
            if customer.is_valid(i) {
                by_customer.entry(customer.value(i)).or_default().push((day.value(i), survey.value(i), score.value(i)));
            }
        }
    }
    let mut recent: FastMap<&str, (f64, usize)> = FastMap::default();
    for (customer, mut list) in by_customer {
        // Latest first; surveys of one day in id order, so the answer does not depend on the
        // order rows come in.
        list.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(a.1)));
        let last: Vec<i64> = list.iter().take(RECENT_SURVEYS).map(|s| s.2).collect();
        recent.insert(customer, (last.iter().sum::<i64>() as f64 / last.len() as f64, last.len()));
    }

    let at = |n: &str| customers.column(n).expect("the shipped customer dimension");
    let (id, name, industry, size, region) =
        (at("customer.customer_id"), at("customer.customer_name"), at("customer.industry"), at("customer.size_band"), at("customer.region"));
    // Only the flagged customers' attributes are read out: most customers are not at risk.
    let flagged = |id: &str| open.get(id).is_some_and(|n| *n >= OPEN_CRITICAL) || recent.get(id).is_some_and(|(a, _)| *a < LOW_CSAT);
    let mut rows = Vec::new();
    for b in &customers.batches {
        // The ids read as they are stored, not formatted one by one: 360 k customers at scale 8.
        let ids = as_type(b.column(id), &DataType::Utf8)?;
        let ids = ids.as_string::<i32>();
        for r in 0..b.num_rows() {
            if ids.is_valid(r) && flagged(ids.value(r)) {
                rows.push((0..b.num_columns()).map(|i| prism_engine::format_value(b.column(i).as_ref(), r, None)).collect::<Vec<String>>());
            }
        }
    }
    let mut accounts = Vec::new();
    for c in rows {
        let critical = open.get(&c[id]).copied().unwrap_or(0);
        let (csat, n) = recent.get(c[id].as_str()).map_or((None, 0), |(a, n)| (Some(*a), *n));
        let mut reasons = Vec::new();
        if critical >= OPEN_CRITICAL {
            reasons.push(format!("{critical} open P1/P2 service requests"));
        }
        if let Some(a) = csat
            && a < LOW_CSAT
        {
            reasons.push(format!("average CSAT {a:.2} over the last {n} survey{}", if n == 1 { "" } else { "s" }));
        }
        if reasons.is_empty() {
            continue;
        }
        accounts.push(RiskAccount {
            customer_id: c[id].clone(),
            customer_name: c[name].clone(),
            industry: c[industry].clone(),
            size_band: c[size].clone(),
            region: c[region].clone(),
            open_critical_requests: critical,
            recent_csat: csat,
            recent_surveys: n,
            reasons,
        });
    }
    // Most urgent first: open critical requests, then the lowest recent satisfaction.
    accounts.sort_by(|a, b| {
        b.open_critical_requests
            .cmp(&a.open_critical_requests)
            .then_with(|| a.recent_csat.unwrap_or(5.0).total_cmp(&b.recent_csat.unwrap_or(5.0)))
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
        ["customer_id", "customer_name", "industry", "size_band", "region", "open_critical_requests", "recent_csat", "recent_surveys", "reasons"].map(String::from).to_vec()
    }

    fn rows(&self) -> Vec<Vec<String>> {
        self.accounts
            .iter()
            .map(|a| {
                vec![
                    a.customer_id.clone(),
                    a.customer_name.clone(),
                    a.industry.clone(),
                    a.size_band.clone(),
                    a.region.clone(),
                    a.open_critical_requests.to_string(),
                    a.recent_csat.map_or(String::new(), |v| format!("{v:.2}")),
                    a.recent_surveys.to_string(),
                    a.reasons.join("; "),
                ]
            })
            .collect()
    }
}

