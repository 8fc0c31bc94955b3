//! On a generated export, every base metric of the shipped model — by partner, by tier ×
//! quarter, and over everything — agrees with a second, deliberately simple implementation:
//! plain Rust over the CSV files, sharing no code with the engine, the model or the loader.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime};
mod common;

use prism_engine::{Audience, Engine, Query};
use prism_model::Model;

/// Money as cents, read digit by digit.
fn cents(s: &str) -> i128 {
    let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
    let (a, b) = s.split_once('.').unwrap_or((s, "0"));
    let v = a.parse::<i128>().unwrap() * 100 + format!("{b:0<2}")[..2].parse::<i128>().unwrap();
    if neg { -v } else { v }
}

fn money(c: Option<i128>) -> String {
    c.map_or(String::new(), |c| {
        format!(
            "{}{}.{:02}",
            if c < 0 { "-" } else { "" },
            c.abs() / 100,
            c.abs() % 100
        )
    })
}

/// `num / den` cents rounded half away from zero.
fn money_div(num: i128, den: i128) -> String {
    let q = num / den;
    let r = num % den;
    let q = if 2 * r.abs() >= den.abs() {
        q + num.signum() * den.signum()
    } else {
        q
    };
    money(Some(q))
}

/// Microseconds since the epoch; no offset means UTC (data contract).
fn micros(s: &str) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    let t = DateTime::parse_from_rfc3339(s)
        .map(|t| t.naive_utc())
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f"))
        .unwrap_or_else(|e| panic!("{s}: {e}"));
    Some(t.and_utc().timestamp_micros())
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn quarter(d: NaiveDate) -> String {
    format!("{}-Q{}", d.year(), (d.month() - 1) / 3 + 1)
}

fn add(slot: &mut Option<i128>, v: i128) {
    *slot = Some(slot.unwrap_or(0) + v);
}

#[derive(Default, Clone)]
struct Acc {
    revenue: Option<i128>,
    units: Option<i128>,
    orders: BTreeSet<String>,
    customers: BTreeSet<String>,
    margin: Option<i128>,
    costed_revenue: Option<i128>,
    indirect_revenue: Option<i128>,
    open_pipeline: Option<i128>,
    /// Cents × probability: exact until the final rounding.
    weighted_cents_x100: Option<i128>,
    open_count: i128,
    won_amount: Option<i128>,
    won: i128,
    lost: i128,
    opportunities: i128,
    registered: i128,
    won_days: i128,
    surveys: i128,
    score_sum: i128,
    satisfied: i128,
    requests: i128,
    open_requests: i128,
    resolved: i128,
    responded: i128,
    response_secs: f64,
    resolution_secs: f64,
    sla_met: i128,
}

fn ratio(n: f64, d: i128, scale: f64) -> String {
    if d == 0 {
        String::new()
    } else {
        (scale * n / d as f64).to_string()
    }
}

impl Acc {
    fn expected(&self, metric: &str) -> String {
        match metric {
            "closed_revenue" => money(self.revenue),
            "units_sold" => self.units.map_or(String::new(), |u| u.to_string()),
            "order_count" => self.orders.len().to_string(),
            "buying_customers" => self.customers.len().to_string(),
            "gross_margin" => money(self.margin),
            "gross_margin_pct" => ratio(
                self.margin.unwrap_or(0) as f64,
                self.costed_revenue.unwrap_or(0),
                100.0,
            ),
            "indirect_revenue_share" => ratio(
                self.indirect_revenue.unwrap_or(0) as f64,
                self.revenue.unwrap_or(0),
                100.0,
            ),
            "open_pipeline" => money(self.open_pipeline),
            "weighted_pipeline" => self
                .weighted_cents_x100
                .map_or(String::new(), |w| money_div(w, 100)),
            "open_opportunities" => self.open_count.to_string(),
            "won_amount" => money(self.won_amount),
            "won_count" => self.won.to_string(),
            "lost_count" => self.lost.to_string(),
            "win_rate" => ratio(self.won as f64, self.won + self.lost, 1.0),
            "avg_deal_size" => {
                if self.won == 0 {
                    String::new()
                } else {
                    money_div(self.won_amount.unwrap(), self.won)
                }
            }
            "registered_deal_share" => ratio(self.registered as f64, self.opportunities, 1.0),
            "avg_sales_cycle_days" => ratio(self.won_days as f64, self.won, 1.0),
            "csat_avg" => ratio(self.score_sum as f64, self.surveys, 1.0),
            "csat_satisfied_pct" => ratio(self.satisfied as f64, self.surveys, 100.0),
            "survey_count" => self.surveys.to_string(),
            "sr_count" => self.requests.to_string(),
            "open_sr_count" => self.open_requests.to_string(),
            "resolution_rate" => ratio(self.resolved as f64, self.requests, 100.0),
            "avg_first_response_hours" => ratio(self.response_secs / 3600.0, self.responded, 1.0),
            "avg_resolution_hours" => ratio(self.resolution_secs / 3600.0, self.resolved, 1.0),
            "sla_met_pct" => ratio(self.sla_met as f64, self.requests, 100.0),
            other => panic!("the plain implementation does not know `{other}`: add it here"),
        }
    }
}

/// The three cuts: by partner, by tier × quarter, and everything in one row.
const CUTS: [&[&str]; 3] = [
    &["partner.partner_id"],
    &["partner.tier", "time.quarter"],
    &[],
];

struct Plain {
    cuts: Vec<BTreeMap<String, Acc>>,
}

impl Plain {
    fn over(export: &std::path::Path) -> Plain {
        let read = |f: &str| {
            csv::Reader::from_path(export.join(f))
                .unwrap()
                .into_records()
                .map(Result::unwrap)
        };
        let tiers: BTreeMap<String, String> = read("partners.csv")
            .map(|r| (r[0].to_string(), r[2].to_string()))
            .collect();
        let mut plain = Plain {
            cuts: vec![BTreeMap::new(); CUTS.len()],
        };
        // The row of each cut that a fact row with this partner and date counts in.
        let mut each = |partner: &str, day: NaiveDate, f: &mut dyn FnMut(&mut Acc)| {
            let direct = partner.is_empty();
            let keys = [
                if direct {
                    "(direct)".to_string()
                } else {
                    partner.to_string()
                },
                format!(
                    "{}|{}",
                    if direct { "(direct)" } else { &tiers[partner] },
                    quarter(day)
                ),
                String::new(),
            ];
            for (cut, key) in plain.cuts.iter_mut().zip(keys) {
                f(cut.entry(key).or_default());
            }
        };
        for r in read("orders.csv") {
            let (partner, revenue, cost) = (&r[2], cents(&r[7]), &r[8]);
            each(partner, date(&r[5]), &mut |a| {
                add(&mut a.revenue, revenue);
                add(&mut a.units, r[6].parse().unwrap());
                a.orders.insert(r[0].to_string());
                a.customers.insert(r[3].to_string());
                if !cost.is_empty() {
                    add(&mut a.margin, revenue - cents(cost));
                    add(&mut a.costed_revenue, revenue);
                }
                if !partner.is_empty() {
                    add(&mut a.indirect_revenue, revenue);
                }
            });
        }
        for r in read("opportunities.csv") {
            let (stage, amount, probability) = (&r[4], cents(&r[5]), r[6].parse::<i128>().unwrap());
            let days = (date(&r[8]) - date(&r[7])).num_days() as i128;
            each(&r[1], date(&r[8]), &mut |a| {
                a.opportunities += 1;
                if &r[9] == "true" {
                    a.registered += 1;
                }
                match stage {
                    "Closed Won" => {
                        a.won += 1;
                        add(&mut a.won_amount, amount);
                        a.won_days += days;
                    }
                    "Closed Lost" => a.lost += 1,
                    _ => {
                        a.open_count += 1;
                        add(&mut a.open_pipeline, amount);
                        add(&mut a.weighted_cents_x100, amount * probability);
                    }
                }
            });
        }
        for r in read("satisfaction_surveys.csv") {
            let score: i128 = r[5].parse().unwrap();
            each(&r[1], date(&r[4]), &mut |a| {
                a.surveys += 1;
                a.score_sum += score;
                if score >= 4 {
                    a.satisfied += 1;
                }
            });
        }
        for r in read("service_requests.csv") {
            let opened = micros(&r[5]).unwrap();
            let (response, resolved) = (micros(&r[6]), micros(&r[7]));
            let target_hours = match &r[4] {
                "P1" => 1,
                "P2" => 4,
                "P3" => 8,
                _ => 24,
            };
            let day = DateTime::from_timestamp_micros(opened)
                .unwrap()
                .date_naive();
            each(&r[1], day, &mut |a| {
                a.requests += 1;
                match resolved {
                    None => a.open_requests += 1,
                    Some(t) => {
                        a.resolved += 1;
                        a.resolution_secs += (t - opened) as f64 / 1e6;
                    }
                }
                if let Some(t) = response {
                    a.responded += 1;
                    a.response_secs += (t - opened) as f64 / 1e6;
                    if t - opened <= target_hours * 3_600_000_000 {
                        a.sla_met += 1;
                    }
                }
            });
        }
        plain
    }
}

fn agree(engine: &str, plain: &str) -> bool {
    engine == plain
        || matches!((engine.parse::<f64>(), plain.parse::<f64>()), (Ok(a), Ok(b)) if (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0))
}

#[tokio::test]
async fn every_base_metric_by_partner_by_tier_and_quarter_and_overall_agrees_with_a_plain_computation()
 {
    let (_tmp, export, wh) = common::generated(0.02, 33, true).await;
    let plain = Plain::over(&export);
    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    let engine = Engine::new(Model::shipped());
    let metrics: Vec<String> = engine
        .model
        .metrics
        .values()
        .filter(|m| !m.hidden)
        .map(|m| m.name.clone())
        .collect();
    assert_eq!(metrics.len(), 26, "every base metric of metrics.md");

    let mut differences = Vec::new();
    for (cut, expected) in CUTS.iter().zip(&plain.cuts) {
        let q = Query {
            metrics: metrics.clone(),
            by: cut.iter().map(|d| d.to_string()).collect(),
            ..Query::default()
        };
        let r = engine.run(&ctx, &q, &Audience::everyone()).await.unwrap();
        let got: BTreeMap<String, Vec<String>> = r
            .formatted_rows()
            .into_iter()
            .map(|cells| (cells[..cut.len()].join("|"), cells[cut.len()..].to_vec()))
            .collect();
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "rows by {cut:?}"
        );
        assert!(
            expected.len() > if cut.is_empty() { 0 } else { 20 },
            "a cut with rows to compare"
        );
        for (key, acc) in expected {
            for (i, m) in metrics.iter().enumerate() {
                let (e, p) = (&got[key][i], acc.expected(m));
                if !agree(e, &p) {
                    differences.push(format!("by {cut:?} {key:?} {m}: engine {e:?}, plain {p:?}"));
                }
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{} differences:\n{}",
        differences.len(),
        differences[..differences.len().min(40)].join("\n")
    );
}

/// The channel's buying customers by segment, as the benchmark behind customer potential asks
/// them (answered by the shipped channel rollup, and again from the base tables): the distinct
/// customers and partners of partners' order lines in each industry × size band, the count
/// withheld below 5 partners.
#[tokio::test]
async fn the_channel_buyers_by_segment_agree_with_a_plain_count_from_rollup_and_base() {
    let (_tmp, export, wh) = common::generated(0.02, 34, true).await;
    let read = |f: &str| {
        csv::Reader::from_path(export.join(f))
            .unwrap()
            .into_records()
            .map(Result::unwrap)
    };
    let segment: BTreeMap<String, (String, String)> = read("customers.csv")
        .map(|r| (r[0].to_string(), (r[2].to_string(), r[3].to_string())))
        .collect();
    let mut plain: BTreeMap<(String, String), (BTreeSet<String>, BTreeSet<String>)> =
        BTreeMap::new();
    for r in read("orders.csv").filter(|r| !r[2].is_empty()) {
        let e = plain.entry(segment[&r[3]].clone()).or_default();
        e.0.insert(r[3].to_string());
        e.1.insert(r[2].to_string());
    }
    let expected: Vec<String> = plain
        .iter()
        .map(|((industry, size), (customers, partners))| {
            let shown = if partners.len() >= 5 {
                customers.len().to_string()
            } else {
                String::new()
            };
            format!("{industry},{size},{shown},{}", partners.len())
        })
        .collect();
    assert!(
        expected.iter().filter(|r| !r.contains(",,")).count() >= 10,
        "segments with a figure to compare: {expected:?}"
    );

    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    let q = Query {
        metrics: vec!["buying_customers".into()],
        by: vec!["customer.industry".into(), "customer.size_band".into()],
        ..Query::default()
    };
    for engine in [
        Engine::new(Model::shipped()),
        Engine::new(Model::shipped()).without_rollups(),
    ] {
        let read_from = engine.compile_benchmark_in(&ctx, &q).unwrap().rollups[0]
            .rollup
            .clone();
        let got: Vec<String> = engine
            .run_benchmark(&ctx, &q)
            .await
            .unwrap()
            .formatted_rows()
            .iter()
            .map(|r| r.join(","))
            .collect();
        assert_eq!(got, expected, "read from {read_from:?}");
    }
    assert_eq!(
        Engine::new(Model::shipped())
            .compile_benchmark_in(&ctx, &q)
            .unwrap()
            .rollups[0]
            .rollup
            .as_deref(),
        Some("channel_buyers_by_segment")
    );
}
