//! On a generated export, every metric of the shipped model — by partner, by tier ×
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
    campaign_opportunities: i128,
    campaign_pipeline: Option<i128>,
    campaign_won: Option<i128>,
    registrations: i128,
    registered_amount: Option<i128>,
    registrations_approved: i128,
    registrations_rejected: i128,
    registrations_expired: i128,
    registrations_pending: i128,
    registrations_decided: i128,
    registration_decision_days: i128,
    registrations_converted: i128,
    registrations_won: i128,
    registrations_closed: i128,
    mdf_requested: Option<i128>,
    mdf_approved: Option<i128>,
    mdf_claimed: Option<i128>,
    mdf_paid: Option<i128>,
    mdf_decided_requested: Option<i128>,
    mdf_claimed_of_approved: Option<i128>,
    mdf_approved_positive: Option<i128>,
    certifications_earned: i128,
    certified_people: BTreeSet<String>,
    expiring_certifications: i128,
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
            "campaign_sourced_opportunities" => self.campaign_opportunities.to_string(),
            "campaign_sourced_pipeline" => money(self.campaign_pipeline),
            "campaign_sourced_won" => money(self.campaign_won),
            "mdf_roi" => ratio(
                self.campaign_won.unwrap_or(0) as f64,
                self.mdf_paid.unwrap_or(0),
                1.0,
            ),
            "registrations" => self.registrations.to_string(),
            "registered_amount" => money(self.registered_amount),
            "approved_registrations" => self.registrations_approved.to_string(),
            "rejected_registrations" => self.registrations_rejected.to_string(),
            "expired_registrations" => self.registrations_expired.to_string(),
            "pending_registrations" => self.registrations_pending.to_string(),
            "registration_approval_rate" => ratio(
                self.registrations_approved as f64,
                self.registrations_approved + self.registrations_rejected,
                100.0,
            ),
            "decided_registrations" => self.registrations_decided.to_string(),
            "avg_registration_decision_days" => ratio(
                self.registration_decision_days as f64,
                self.registrations_decided,
                1.0,
            ),
            "registrations_converted" => self.registrations_converted.to_string(),
            "registrations_won" => self.registrations_won.to_string(),
            "registration_win_rate" => ratio(
                self.registrations_won as f64,
                self.registrations_closed,
                100.0,
            ),
            "mdf_requested" => money(self.mdf_requested),
            "mdf_approved" => money(self.mdf_approved),
            "mdf_claimed" => money(self.mdf_claimed),
            "mdf_paid" => money(self.mdf_paid),
            "mdf_approval_rate" => ratio(
                self.mdf_approved.unwrap_or(0) as f64,
                self.mdf_decided_requested.unwrap_or(0),
                100.0,
            ),
            "mdf_utilization_pct" => ratio(
                self.mdf_claimed_of_approved.unwrap_or(0) as f64,
                self.mdf_approved_positive.unwrap_or(0),
                100.0,
            ),
            "certifications_earned" => self.certifications_earned.to_string(),
            "certified_people" => self.certified_people.len().to_string(),
            "expiring_certifications" => self.expiring_certifications.to_string(),
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
    /// `loaded_on`: the day of the load, which a state without a period is read at.
    fn over(export: &std::path::Path, loaded_on: NaiveDate) -> Plain {
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
        let stages: BTreeMap<String, String> = read("opportunities.csv")
            .map(|r| (r[0].to_string(), r[4].to_string()))
            .collect();
        for r in read("opportunities.csv") {
            let (stage, amount, probability) = (&r[4], cents(&r[5]), r[6].parse::<i128>().unwrap());
            let sourced = !r[10].is_empty();
            let days = (date(&r[8]) - date(&r[7])).num_days() as i128;
            each(&r[1], date(&r[8]), &mut |a| {
                a.opportunities += 1;
                if sourced {
                    a.campaign_opportunities += 1;
                }
                if &r[9] == "true" {
                    a.registered += 1;
                }
                match stage {
                    "Closed Won" => {
                        a.won += 1;
                        add(&mut a.won_amount, amount);
                        a.won_days += days;
                        if sourced {
                            add(&mut a.campaign_won, amount);
                        }
                    }
                    "Closed Lost" => a.lost += 1,
                    _ => {
                        a.open_count += 1;
                        add(&mut a.open_pipeline, amount);
                        add(&mut a.weighted_cents_x100, amount * probability);
                        if sourced {
                            add(&mut a.campaign_pipeline, amount);
                        }
                    }
                }
            });
        }
        for r in read("deal_registrations.csv") {
            let (status, decided) = (&r[7], &r[6]);
            let stage = stages.get(&r[8]).map(String::as_str).unwrap_or("");
            each(&r[1], date(&r[5]), &mut |a| {
                a.registrations += 1;
                add(&mut a.registered_amount, cents(&r[4]));
                match status {
                    "Approved" => {
                        a.registrations_approved += 1;
                        if !r[8].is_empty() {
                            a.registrations_converted += 1;
                        }
                        if stage == "Closed Won" {
                            a.registrations_won += 1;
                        }
                        if stage == "Closed Won" || stage == "Closed Lost" {
                            a.registrations_closed += 1;
                        }
                    }
                    "Rejected" => a.registrations_rejected += 1,
                    "Expired" => a.registrations_expired += 1,
                    _ => a.registrations_pending += 1,
                }
                if !decided.is_empty() {
                    a.registrations_decided += 1;
                    a.registration_decision_days +=
                        (date(decided) - date(&r[5])).num_days() as i128;
                }
            });
        }
        for r in read("mdf_requests.csv") {
            let amount = |i: usize| (!r[i].is_empty()).then(|| cents(&r[i]));
            let (requested, approved, claimed, paid) =
                (cents(&r[4]), amount(5), amount(6), amount(7));
            each(&r[1], date(&r[3]), &mut |a| {
                add(&mut a.mdf_requested, requested);
                if let Some(v) = approved {
                    add(&mut a.mdf_approved, v);
                    add(&mut a.mdf_decided_requested, requested);
                    if v > 0 {
                        add(&mut a.mdf_approved_positive, v);
                        if let Some(c) = claimed {
                            add(&mut a.mdf_claimed_of_approved, c);
                        }
                    }
                }
                if let Some(v) = claimed {
                    add(&mut a.mdf_claimed, v);
                }
                if let Some(v) = paid {
                    add(&mut a.mdf_paid, v);
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
        // Certifications: earned is a flow over the period; certified people and expiring
        // ones are states, read on the load day by partner and overall, and on each quarter's
        // last day (the load day for the quarter it falls in) by tier and quarter, from the
        // quarter of the first certification on.
        let certifications: Vec<csv::StringRecord> = read("certifications.csv").collect();
        let first_quarter =
            certifications.iter().map(|r| date(&r[6])).min().map(|d| {
                NaiveDate::from_ymd_opt(d.year(), (d.month() - 1) / 3 * 3 + 1, 1).unwrap()
            });
        let mut quarter_ends = Vec::new();
        let mut q = first_quarter;
        while let Some(start) = q
            && start <= loaded_on
        {
            let next = start.checked_add_months(chrono::Months::new(3)).unwrap();
            quarter_ends.push((quarter(start), (next - chrono::Days::new(1)).min(loaded_on)));
            q = Some(next);
        }
        for r in &certifications {
            each(&r[1], date(&r[6]), &mut |a| a.certifications_earned += 1);
        }
        for r in &certifications {
            let earned = date(&r[6]);
            let expires = (!r[7].is_empty()).then(|| date(&r[7]));
            let valid = |day: NaiveDate| earned <= day && expires.is_none_or(|e| e > day);
            let expiring = |day: NaiveDate| {
                valid(day) && expires.is_some_and(|e| e <= day + chrono::Days::new(90))
            };
            let state = |a: &mut Acc, day: NaiveDate| {
                if valid(day) {
                    a.certified_people.insert(r[2].to_string());
                }
                if expiring(day) {
                    a.expiring_certifications += 1;
                }
            };
            state(
                plain.cuts[0].entry(r[1].to_string()).or_default(),
                loaded_on,
            );
            state(plain.cuts[2].entry(String::new()).or_default(), loaded_on);
            for (q, end) in &quarter_ends {
                let key = format!("{}|{q}", tiers[&r[1]]);
                state(plain.cuts[1].entry(key).or_default(), *end);
            }
        }
        plain
    }
}

fn agree(engine: &str, plain: &str) -> bool {
    engine == plain
        || matches!((engine.parse::<f64>(), plain.parse::<f64>()), (Ok(a), Ok(b)) if (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0))
}

/// The plain computation over the export, on the day the warehouse loaded it (the states, such
/// as certified people, are read on that day).
fn plain_of(export: &std::path::Path, wh: &prism_warehouse::Warehouse) -> Plain {
    let loaded_at = wh.versions().unwrap().current().unwrap().loaded_at.clone();
    let loaded_on = DateTime::parse_from_rfc3339(&loaded_at)
        .unwrap()
        .with_timezone(&chrono::Utc)
        .date_naive();
    Plain::over(export, loaded_on)
}

#[tokio::test]
async fn every_base_metric_by_partner_by_tier_and_quarter_and_overall_agrees_with_a_plain_computation()
 {
    let (_tmp, export, wh) = common::generated(0.02, 33, true).await;
    let plain = plain_of(&export, &wh);
    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    let engine = Engine::new(Model::shipped());
    let metrics: Vec<String> = engine
        .model
        .metrics
        .values()
        .filter(|m| !m.hidden)
        .map(|m| m.name.clone())
        .collect();
    assert_eq!(
        metrics.len(),
        51,
        "every metric of metrics.md, and the parts of the program's ratios worth reading"
    );

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

/// A distinct count asked alone in its fact's aggregation (the scorecard's certified people:
/// the other attributes come from other facts) is planned as a grouping by the counted value
/// and a count — DataFusion's rewrite, far cheaper than a set of person ids per partner — and
/// still agrees with the plain computation, by partner, by tier and quarter, and overall.
#[tokio::test]
async fn certified_people_asked_alone_are_counted_by_grouping_and_agree_with_a_plain_count() {
    let (_tmp, export, wh) = common::generated(0.02, 35, true).await;
    let plain = plain_of(&export, &wh);
    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    let engine = Engine::new(Model::shipped());
    for (cut, expected) in CUTS.iter().zip(&plain.cuts) {
        let q = Query {
            metrics: vec!["certified_people".into()],
            by: cut.iter().map(|d| d.to_string()).collect(),
            ..Query::default()
        };
        let compiled = engine.compile_in(&ctx, &q, &Audience::everyone()).unwrap();
        let plan = arrow::util::pretty::pretty_format_batches(
            &engine.explain_plan(&ctx, &compiled, false).await.unwrap(),
        )
        .unwrap()
        .to_string();
        assert!(plan.contains("AggregateExec"), "{plan}");
        assert!(
            !plan.contains("count(DISTINCT"),
            "by {cut:?}: a set of ids kept per group:\n{plan}"
        );
        let got: BTreeMap<String, String> = engine
            .run(&ctx, &q, &Audience::everyone())
            .await
            .unwrap()
            .formatted_rows()
            .into_iter()
            .map(|cells| (cells[..cut.len()].join("|"), cells[cut.len()].clone()))
            .collect();
        // Asked alone, a group without certifications (the direct sales' "partner", a quarter
        // before any) has no row rather than a 0: the groups with people are compared.
        let want: BTreeMap<String, String> = expected
            .iter()
            .map(|(k, acc)| (k.clone(), acc.expected("certified_people")))
            .filter(|(_, w)| w.as_str() != "0")
            .collect();
        let got: BTreeMap<String, String> =
            got.into_iter().filter(|(_, g)| g.as_str() != "0").collect();
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "by {cut:?}"
        );
        let mismatched: Vec<_> = want.iter().filter(|(k, w)| !agree(&got[*k], w)).collect();
        assert!(mismatched.is_empty(), "by {cut:?}: {mismatched:?}");
        assert!(!want.is_empty(), "people to count by {cut:?}");
    }
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
