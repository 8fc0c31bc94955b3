//! A partner user's answers contain only their partner's rows and do not move when other
//! partners' data changes.

mod common;

use prism_engine::{Audience, Engine, Query};
use prism_model::Model;
use prism_warehouse::{LoadMode, LoadOptions, NoProgress, Warehouse};

async fn answer(wh: &Warehouse, engine: &Engine, q: &Query, scope: &Audience) -> Vec<Vec<String>> {
    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    engine.run(&ctx, q, scope).await.unwrap().formatted_rows()
}

/// Whether every fact a metric reads reaches every dimension of `by`.
fn reaches(model: &Model, metric: &str, by: &[&str]) -> bool {
    let m = &model.metrics[metric];
    let facts = match &m.kind {
        prism_model::MetricKind::Ratio {
            numerator,
            denominator,
            ..
        } => vec![
            &model.metrics[numerator].fact,
            &model.metrics[denominator].fact,
        ],
        _ => vec![&m.fact],
    };
    facts.iter().all(|f| {
        by.iter().all(|d| {
            let dimension = d.split('.').next().unwrap_or("");
            dimension == "time" || model.facts[*f].reaches.iter().any(|r| r == dimension)
        })
    })
}

#[tokio::test]
async fn a_partner_scope_sees_only_its_rows_and_ignores_other_partners_changes() {
    let (tmp, export, wh) = common::generated(0.01, 21, true).await;
    let engine = Engine::new(Model::shipped());
    let metrics: Vec<String> = engine
        .model
        .metrics
        .values()
        .filter(|m| !m.hidden)
        .map(|m| m.name.clone())
        .collect();
    let queries: Vec<Query> = [
        vec!["partner.partner_id"],
        vec!["partner.partner_id", "time.quarter"],
        vec!["customer.industry"],
    ]
    .into_iter()
    .map(|by| Query {
        // Every metric whose facts reach the dimensions (funds and certifications have no
        // customer).
        metrics: metrics
            .iter()
            .filter(|m| reaches(&engine.model, m, &by))
            .cloned()
            .collect(),
        by: by.into_iter().map(str::to_string).collect(),
        ..Query::default()
    })
    .collect();
    let partners = ["P-00001", "P-00002", "P-00005"];

    let mut before = Vec::new();
    for p in partners {
        for q in &queries {
            let rows = answer(&wh, &engine, q, &Audience::partner(p.to_string()).unwrap()).await;
            if q.by[0] == "partner.partner_id" {
                assert!(!rows.is_empty(), "{p} has data to compare");
                assert!(
                    rows.iter().all(|r| r[0] == p),
                    "{p}: {:?}",
                    rows.iter().map(|r| &r[0]).collect::<Vec<_>>()
                );
            }
            before.push(rows);
        }
    }
    let channel_before = answer(&wh, &engine, &queries[0], &Audience::everyone()).await;

    // Every other partner's order lines change revenue; these partners' lines stay.
    let orders = std::fs::read_to_string(export.join("orders.csv")).unwrap();
    let mut changed = String::new();
    for (i, line) in orders.lines().enumerate() {
        let mut fields: Vec<String> = line.split(',').map(str::to_string).collect();
        if i > 0 && !partners.contains(&fields[2].as_str()) {
            fields[7] = "1.00".into();
        }
        changed.push_str(&fields.join(","));
        changed.push('\n');
    }
    let update = tmp.path().join("update");
    std::fs::create_dir_all(&update).unwrap();
    std::fs::write(update.join("orders.csv"), changed).unwrap();
    wh.load(
        &LoadOptions::upsert(
            update,
            prism_engine::Engine::new(prism_model::Model::shipped()).rollup_builds(),
        ),
        &NoProgress,
    )
    .await
    .unwrap();

    assert_ne!(
        answer(&wh, &engine, &queries[0], &Audience::everyone()).await,
        channel_before,
        "the update changed the channel"
    );
    let mut i = 0;
    for p in partners {
        for q in &queries {
            assert_eq!(
                answer(&wh, &engine, q, &Audience::partner(p.to_string()).unwrap()).await,
                before[i],
                "{p} by {:?}",
                q.by
            );
            i += 1;
        }
    }
}

#[tokio::test]
async fn a_benchmark_is_an_aggregate_over_at_least_five_partners_and_never_one_partners_value() {
    let (_tmp, export, wh) = common::generated(0.01, 4, true).await;
    // The plain answer: the mean score over every survey (surveys always name a partner).
    let (mut sum, mut n, mut partners) = (0i64, 0i64, std::collections::BTreeSet::new());
    for r in csv::Reader::from_path(export.join("satisfaction_surveys.csv"))
        .unwrap()
        .records()
    {
        let r = r.unwrap();
        sum += r[5].parse::<i64>().unwrap();
        n += 1;
        partners.insert(r[1].to_string());
    }
    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    let engine = Engine::new(Model::shipped());

    let whole = engine
        .run_benchmark(
            &ctx,
            &Query {
                metrics: vec!["csat_avg".into()],
                ..Query::default()
            },
        )
        .await
        .unwrap()
        .formatted_rows();
    assert!(partners.len() >= 5);
    let got: f64 = whole[0][0].parse().unwrap();
    assert!((got - sum as f64 / n as f64).abs() < 1e-9, "{got}");
    assert_eq!(whole[0][1], partners.len().to_string());

    // Cut by partner, every group is one partner: every figure is withheld.
    let by_partner = engine
        .run_benchmark(
            &ctx,
            &Query {
                metrics: vec!["csat_avg".into(), "closed_revenue".into()],
                by: vec!["partner.partner_id".into()],
                ..Query::default()
            },
        )
        .await
        .unwrap()
        .formatted_rows();
    assert!(!by_partner.is_empty());
    assert!(
        by_partner
            .iter()
            .all(|r| r[1].is_empty() && r[2].is_empty() && r[3].parse::<i64>().unwrap() <= 1),
        "{by_partner:?}"
    );
}

/// A partner's fact looks up only its own partner's rows, or the brand owner's: P-2's approved
/// registration that names P-1's won opportunity does not count as won — not for P-2's user,
/// nor for anyone — while P-1's registration of the brand owner's direct deal (DR-6, OP-2)
/// still does. Without the rule, P-2's user would read P-1's deal outcome from its own win rate.
#[tokio::test]
async fn a_lookup_never_reads_another_partners_row() {
    let tmp = tempfile::tempdir().unwrap();
    let opportunities = common::tiny_file_and(
        "opportunities.csv",
        "OP-11,P-1,C-1,PR-1,Closed Won,9000,100,2024-01-10,2024-02-20,yes,",
    );
    let registrations = common::tiny_file_and(
        "deal_registrations.csv",
        "DR-7,P-2,C-1,PR-1,9000,2024-01-11,2024-01-12,Approved,OP-11",
    );
    let wh = common::tiny_with(
        tmp.path(),
        &[
            ("opportunities.csv", &opportunities),
            ("deal_registrations.csv", &registrations),
        ],
    )
    .await;
    let engine = Engine::new(Model::shipped());
    let q = Query {
        metrics: vec![
            "registrations_converted".into(),
            "registrations_won".into(),
            "registration_win_rate".into(),
        ],
        by: vec!["partner.partner_id".into()],
        ..Query::default()
    };
    // By hand. P-2: DR-2 (OP-3, its own, Closed Lost) and DR-7 (OP-11, P-1's): both converted,
    // neither won, one closed (OP-3) → 0 %. P-1: DR-1 (OP-1, its own, Proposal) and DR-6
    // (OP-2, direct, Closed Won): both converted, one won, one closed → 100 %.
    assert_eq!(
        answer(&wh, &engine, &q, &Audience::partner("P-2").unwrap()).await,
        [["P-2", "2", "0", "0.0"]]
    );
    assert_eq!(
        answer(&wh, &engine, &q, &Audience::everyone()).await,
        [["P-1", "2", "1", "100.0"], ["P-2", "2", "0", "0.0"]]
    );
}

#[tokio::test]
async fn a_partners_newest_month_is_its_own_never_the_channels() {
    // fixtures/tiny by hand: order lines of P-1 in January 2024, direct sales in February, P-2
    // in March; surveys of P-1 in January, of P-2 in February; P-3 has neither.
    let tmp = tempfile::tempdir().unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny");
    let wh = Warehouse::open(tmp.path().join("data")).unwrap();
    for rollups in [true, false] {
        let engine = Engine::new(Model::shipped());
        wh.load(
            &LoadOptions {
                export_dir: fixture.clone(),
                mode: LoadMode::Replace,
                quarantine: false,
                rollups: if rollups {
                    engine.rollup_builds()
                } else {
                    Vec::new()
                },
            },
            &NoProgress,
        )
        .await
        .unwrap();
        let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
        let newest = async |metric: &str, audience: Audience| {
            engine
                .newest_month(&ctx, metric, &audience)
                .await
                .unwrap()
                .map(|d| d.to_string())
        };
        let month = |m: &str| Some(format!("2024-{m}-01"));
        let partner = |p: &str| Audience::partner(p).unwrap();
        let managed = |ps: &[&str]| Audience::partners(ps.iter().map(|p| p.to_string()));
        assert_eq!(newest("closed_revenue", partner("P-1")).await, month("01"));
        assert_eq!(newest("closed_revenue", partner("P-2")).await, month("03"));
        assert_eq!(newest("closed_revenue", partner("P-3")).await, None);
        assert_eq!(
            newest("closed_revenue:change_pct", partner("P-1")).await,
            month("01")
        );
        assert_eq!(
            newest("closed_revenue", managed(&["P-1", "P-3"])).await,
            month("01")
        );
        assert_eq!(
            newest("closed_revenue", managed(&["P-1", "P-2"])).await,
            month("03")
        );
        assert_eq!(newest("closed_revenue", managed(&[])).await, None);
        assert_eq!(
            newest("closed_revenue", Audience::everyone()).await,
            month("03")
        );
        assert_eq!(newest("csat_avg", partner("P-1")).await, month("01"));
        assert_eq!(newest("csat_avg", partner("P-2")).await, month("02"));
    }
}
