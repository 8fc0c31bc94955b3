//! On a generated export, base metrics by partner agree with a second, deliberately simple
//! implementation: plain Rust over the CSV files, sharing no code with the engine.

use std::collections::{BTreeMap, BTreeSet};

use prism_engine::{Engine, Query, Scope};
use prism_model::Model;
use prism_warehouse::{LoadMode, LoadOptions, NoProgress, Warehouse};

fn cents(s: &str) -> i64 {
    let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
    let (a, b) = s.split_once('.').unwrap_or((s, "0"));
    let v = a.parse::<i64>().unwrap() * 100 + format!("{b:0<2}")[..2].parse::<i64>().unwrap();
    if neg { -v } else { v }
}

fn money(c: i64) -> String {
    format!("{}{}.{:02}", if c < 0 { "-" } else { "" }, c.abs() / 100, c.abs() % 100)
}

#[derive(Default)]
struct Expected {
    revenue: i64,
    units: i64,
    orders: BTreeSet<String>,
    customers: BTreeSet<String>,
    won: i64,
    lost: i64,
    open_pipeline: i64,
    open_count: i64,
    score_sum: i64,
    surveys: i64,
    requests: i64,
    open_requests: i64,
}

#[tokio::test]
async fn base_metrics_by_partner_agree_with_a_plain_computation_over_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join("export");
    prism_generator::generate(&prism_generator::GenerateConfig { out: export.clone(), scale: 0.02, seed: 33 }).unwrap();

    let mut by: BTreeMap<String, Expected> = BTreeMap::new();
    let key = |p: &str| if p.is_empty() { "(direct)".to_string() } else { p.to_string() };
    for r in csv::Reader::from_path(export.join("orders.csv")).unwrap().records() {
        let r = r.unwrap();
        let e = by.entry(key(&r[2])).or_default();
        e.revenue += cents(&r[7]);
        e.units += r[6].parse::<i64>().unwrap();
        e.orders.insert(r[0].to_string());
        e.customers.insert(r[3].to_string());
    }
    for r in csv::Reader::from_path(export.join("opportunities.csv")).unwrap().records() {
        let r = r.unwrap();
        let e = by.entry(key(&r[1])).or_default();
        match &r[4] {
            "Closed Won" => e.won += 1,
            "Closed Lost" => e.lost += 1,
            _ => {
                e.open_pipeline += cents(&r[5]);
                e.open_count += 1;
            }
        }
    }
    for r in csv::Reader::from_path(export.join("satisfaction_surveys.csv")).unwrap().records() {
        let r = r.unwrap();
        let e = by.entry(key(&r[1])).or_default();
        e.score_sum += r[5].parse::<i64>().unwrap();
        e.surveys += 1;
    }
    for r in csv::Reader::from_path(export.join("service_requests.csv")).unwrap().records() {
        let r = r.unwrap();
        let e = by.entry(key(&r[1])).or_default();
        e.requests += 1;
        if r[7].is_empty() {
            e.open_requests += 1;
        }
    }

    let wh = Warehouse::open(tmp.path().join("data")).unwrap();
    wh.load(&LoadOptions { export_dir: export, mode: LoadMode::Upsert, quarantine: false }, &NoProgress).await.unwrap();
    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    let engine = Engine::new(Model::shipped());
    let metrics = ["closed_revenue", "units_sold", "order_count", "buying_customers", "won_count", "lost_count", "open_pipeline", "csat_avg", "sr_count", "open_sr_count"];
    let q = Query { metrics: metrics.iter().map(|m| m.to_string()).collect(), by: vec!["partner.partner_id".into()], ..Query::default() };
    let r = engine.run(&ctx, &q, &Scope::All).await.unwrap();
    let got: BTreeMap<String, Vec<String>> = r.formatted_rows().into_iter().map(|cells| (cells[0].clone(), cells[1..].to_vec())).collect();
    assert_eq!(got.keys().collect::<Vec<_>>(), by.keys().collect::<Vec<_>>());
    for (partner, e) in &by {
        let has_orders = !e.orders.is_empty();
        let expected = vec![
            if has_orders { money(e.revenue) } else { String::new() },
            if has_orders { e.units.to_string() } else { String::new() },
            e.orders.len().to_string(),
            e.customers.len().to_string(),
            e.won.to_string(),
            e.lost.to_string(),
            // A sum over no open opportunities has no value.
            if e.open_count > 0 { money(e.open_pipeline) } else { String::new() },
            if e.surveys > 0 { (e.score_sum as f64 / e.surveys as f64).to_string() } else { String::new() },
            e.requests.to_string(),
            e.open_requests.to_string(),
        ];
        let row = &got[partner];
        for (i, m) in metrics.iter().enumerate() {
            let same = row[i] == expected[i]
                || matches!((row[i].parse::<f64>(), expected[i].parse::<f64>()), (Ok(a), Ok(b)) if (a - b).abs() < 1e-9);
            assert!(same, "{partner} {m}: engine {} vs plain {}", row[i], expected[i]);
        }
    }
}
