//! High-risk accounts: customers with 3 or more open P1/P2 service requests, or an average CSAT
//! below 3 over their last 5 surveys. Under a partner scope, only the partner's own customers,
//! requests and surveys count.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Date32Type, Int64Type};
use arrow::record_batch::RecordBatch;
use prism_engine::{Filter, FilterOp, Query};
use serde::Serialize;

use crate::{AnalysisError, Context, Result, Table, Value, num, text};

/// A map looked up once per customer and survey (hundreds of thousands of times): a fast
/// hash, as the keys are customer ids from the warehouse, not from a request.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

pub use prism_engine::risk::{CRITICAL_PRIORITIES, LOW_CSAT, OPEN_CRITICAL, RECENT_SURVEYS};

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

impl RiskAccount {
    /// An account with its attributes (name, industry, size band, region) and figures, and why
    /// it is at risk in words.
    fn new(
        customer_id: String,
        [customer_name, industry, size_band, region]: [String; 4],
        open_critical_requests: i64,
        recent_csat: Option<f64>,
        recent_surveys: usize,
    ) -> RiskAccount {
        RiskAccount {
            reasons: reasons(open_critical_requests, recent_csat, recent_surveys),
            customer_id,
            customer_name,
            industry,
            size_band,
            region,
            open_critical_requests,
            recent_csat,
            recent_surveys,
        }
    }
}

/// High-risk accounts.
#[derive(Clone, Debug, Serialize)]
pub struct Risk {
    /// The accounts, most open critical requests first (the most urgent ones, when asked for a
    /// number of them).
    pub accounts: Vec<RiskAccount>,
    /// How many accounts are at risk in all.
    pub total: usize,
}

/// Accounts with 3 or more open P1/P2 requests, or an average CSAT below 3 over their last 5 surveys.
pub async fn risk(cx: &Context<'_>) -> Result<Risk> {
    risk_top(cx, None).await
}

/// The high-risk accounts, the most urgent first, up to `limit` of them (with how many there are
/// in all): what a page shows. Over all loaded data, in the brand owner's or one partner's
/// audience, read from the accounts at risk every load builds (`prism_engine::risk`); with a
/// period or a channel manager's partners, computed from the requests, surveys and customers.
pub async fn risk_top(cx: &Context<'_>, limit: Option<usize>) -> Result<Risk> {
    if cx.period.is_none()
        && let Some(built) = cx
            .engine
            .accounts_at_risk(cx.session, &cx.audience, limit)
            .await?
    {
        return Ok(Risk {
            accounts: built_accounts(&built.accounts)?,
            total: built.total,
        });
    }
    let mut risk = computed(cx).await?;
    if let Some(n) = limit {
        risk.accounts.truncate(n);
    }
    Ok(risk)
}

/// The accounts as the load's table holds them, in the order it gives them.
fn built_accounts(answer: &prism_engine::QueryResult) -> Result<Vec<RiskAccount>> {
    let mut types = vec![DataType::Utf8; 5];
    types.extend([const { DataType::Int64 }; 3]);
    let mut accounts = Vec::new();
    for batch in typed_columns(&answer.batches, &types)? {
        let text: Vec<&arrow::array::StringArray> =
            batch[..5].iter().map(|c| c.as_string::<i32>()).collect();
        let (open, sum, surveys) = (
            batch[5].as_primitive::<Int64Type>(),
            batch[6].as_primitive::<Int64Type>(),
            batch[7].as_primitive::<Int64Type>(),
        );
        for r in 0..open.len() {
            let n = usize::try_from(surveys.value(r)).unwrap_or(0);
            // The same division as over the base tables, so that the two agree to the bit.
            let csat = (n > 0 && sum.is_valid(r)).then(|| sum.value(r) as f64 / n as f64);
            accounts.push(RiskAccount::new(
                cell(text[0], r),
                [1, 2, 3, 4].map(|c| cell(text[c], r)),
                open.value(r),
                csat,
                n,
            ));
        }
    }
    Ok(accounts)
}

/// A text cell, empty when null.
fn cell(a: &arrow::array::StringArray, r: usize) -> String {
    if a.is_valid(r) {
        a.value(r).to_string()
    } else {
        String::new()
    }
}

/// The high-risk accounts computed from the requests, surveys and customers of the audience and
/// period.
async fn computed(cx: &Context<'_>) -> Result<Risk> {
    // The open critical requests, the surveys and the customers do not depend on each other:
    // asked side by side, each one's single-threaded phases leave the cores to the others.
    let (open, surveys, customers) = tokio::try_join!(
        cx.run(Query {
            metrics: vec!["open_sr_count".into()],
            by: vec!["customer.customer_id".into()],
            filters: vec![Filter {
                dimension: "service_request.priority".into(),
                op: FilterOp::In(CRITICAL_PRIORITIES.map(String::from).to_vec())
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
    let open_columns = typed_columns(&open.batches, &[DataType::Utf8, DataType::Int64])?;
    let open = open_by_customer(&open_columns);
    let survey_columns = typed_columns(
        &surveys.batches,
        &[
            DataType::Utf8,
            DataType::Date32,
            DataType::Utf8,
            DataType::Int64,
        ],
    )?;
    let recent = Recent::of(&survey_columns);
    let mut accounts = flagged_accounts(&customers, &open, &recent)?;
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
    Ok(Risk {
        total: accounts.len(),
        accounts,
    })
}

/// An answer's first columns, each cast to the type given, batch by batch: read straight from
/// the columns as stored, since made into text, hundreds of thousands of surveys' cells took
/// most of the analysis's time.
fn typed_columns(batches: &[RecordBatch], types: &[DataType]) -> Result<Vec<Vec<ArrayRef>>> {
    batches
        .iter()
        .map(|b| {
            types
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    arrow::compute::cast(b.column(i), t).map_err(|e| {
                        AnalysisError::Invalid(format!(
                            "unexpected column type in the warehouse: {e}"
                        ))
                    })
                })
                .collect()
        })
        .collect()
}

/// Each customer's open critical requests, from the columns customer id, count.
fn open_by_customer(columns: &[Vec<ArrayRef>]) -> FastMap<&str, i64> {
    let mut open = FastMap::default();
    for batch in columns {
        let (customer, count) = (
            batch[0].as_string::<i32>(),
            batch[1].as_primitive::<Int64Type>(),
        );
        for i in 0..customer.len() {
            if customer.is_valid(i) && count.is_valid(i) {
                open.insert(customer.value(i), count.value(i));
            }
        }
    }
    open
}

/// Each surveyed customer's average over its last surveys, and over how many.
struct Recent<'a> {
    /// A dense number for each surveyed customer.
    number: FastMap<&'a str, u32>,
    /// The average and the count, by the customer's number.
    recent: Vec<(f64, usize)>,
}

impl<'a> Recent<'a> {
    /// From the columns customer id, day, survey id, score.
    fn of(columns: &'a [Vec<ArrayRef>]) -> Recent<'a> {
        // Each survey with a dense number for its customer, then sorted: each customer's
        // surveys side by side, latest first, a day's surveys by id (so the answer does not
        // depend on the order rows come in). One flat list instead of a list per customer:
        // allocating 300 k small lists was most of the analysis's time.
        let mut number: FastMap<&str, u32> = FastMap::default();
        let mut surveyed = 0u32;
        let mut list: Vec<(u32, i32, &str, i64)> =
            Vec::with_capacity(columns.iter().map(|b| b[0].len()).sum());
        for batch in columns {
            let (customer, day, survey, score) = (
                batch[0].as_string::<i32>(),
                batch[1].as_primitive::<Date32Type>(),
                batch[2].as_string::<i32>(),
                batch[3].as_primitive::<Int64Type>(),
            );
            for i in 0..customer.len() {
                if customer.is_valid(i) {
                    let n = *number.entry(customer.value(i)).or_insert_with(|| {
                        surveyed += 1;
                        surveyed - 1
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
        let mut recent: Vec<(f64, usize)> = vec![(0.0, 0); surveyed as usize];
        for group in list.chunk_by(|a, b| a.0 == b.0) {
            let last = &group[..group.len().min(RECENT_SURVEYS)];
            recent[group[0].0 as usize] = (
                last.iter().map(|s| s.3).sum::<i64>() as f64 / last.len() as f64,
                last.len(),
            );
        }
        Recent { number, recent }
    }

    /// A customer's recent average and how many surveys it is over, if it was surveyed.
    fn get(&self, customer: &str) -> Option<(f64, usize)> {
        self.number.get(customer).map(|n| self.recent[*n as usize])
    }
}

/// The customers at risk, with their attributes and why; only the flagged customers'
/// attributes are read out, as most customers are not at risk.
fn flagged_accounts(
    customers: &prism_engine::QueryResult,
    open: &FastMap<&str, i64>,
    recent: &Recent<'_>,
) -> Result<Vec<RiskAccount>> {
    let at = |n: &str| customers.column(n).expect("the shipped customer dimension");
    let flagged = |id: &str| {
        open.get(id).is_some_and(|n| *n >= OPEN_CRITICAL)
            || recent.get(id).is_some_and(|(a, _)| a < LOW_CSAT)
    };
    let attributes = [
        "customer.customer_id",
        "customer.customer_name",
        "customer.industry",
        "customer.size_band",
        "customer.region",
    ];
    let mut accounts = Vec::new();
    for b in &customers.batches {
        // Read as stored, not formatted cell by cell: 360 k customers at scale 8.
        let columns = typed_columns(
            &[b.project(&attributes.map(at)).map_err(|e| {
                AnalysisError::Invalid(format!("unexpected customer columns: {e}"))
            })?],
            &[const { DataType::Utf8 }; 5],
        )?;
        let text: Vec<&arrow::array::StringArray> =
            columns[0].iter().map(|c| c.as_string::<i32>()).collect();
        let ids = text[0];
        for r in 0..b.num_rows() {
            if !ids.is_valid(r) || !flagged(ids.value(r)) {
                continue;
            }
            let customer = ids.value(r);
            let critical = open.get(customer).copied().unwrap_or(0);
            let (csat, n) = recent
                .get(customer)
                .map_or((None, 0), |(a, n)| (Some(a), n));
            accounts.push(RiskAccount::new(
                customer.to_string(),
                [1, 2, 3, 4].map(|c| cell(text[c], r)),
                critical,
                csat,
                n,
            ));
        }
    }
    Ok(accounts)
}

/// Why an account is at risk, in words.
fn reasons(critical: i64, csat: Option<f64>, surveys: usize) -> Vec<String> {
    let mut reasons = Vec::new();
    if critical >= OPEN_CRITICAL {
        reasons.push(format!("{critical} open P1/P2 service requests"));
    }
    if let Some(a) = csat
        && a < LOW_CSAT
    {
        reasons.push(format!(
            "average CSAT {a:.2} over the last {surveys} survey{}",
            if surveys == 1 { "" } else { "s" }
        ));
    }
    reasons
}

impl Table for Risk {
    fn headline(&self) -> Vec<String> {
        vec![format!(
            "{} high-risk accounts: {OPEN_CRITICAL} or more open P1/P2 requests, or an average CSAT below {LOW_CSAT} over the last {RECENT_SURVEYS} surveys",
            self.total
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
