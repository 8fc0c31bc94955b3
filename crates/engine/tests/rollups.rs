//! Aggregate navigation, one rule at a time, over fixtures/tiny with rollups of its own: the
//! query names the rollup that must answer it (or none, and the reason a rollup was passed
//! over), and the answer is the one computed by hand from the fixture's seven files.
//!
//! Orders of the fixture: O-1 (C-1, P-1, 2024-01-10) PR-1 2400.00 cost 1500, PR-2 99.50 no cost;
//! O-2 (C-2, direct, 2024-02-01) PR-1 1200 cost 800; O-3 (C-2, P-2, 2024-03-05) PR-2 -49.75
//! cost -30. C-1 is Enterprise, C-2 Mid-Market.

use std::path::Path;

use prism_engine::{Audience, Engine, Filter, Period, Query, Session};
use prism_model::Model;
use prism_warehouse::{LoadOptions, NoProgress, Warehouse};

/// The shipped model with these rollups instead of the shipped ones.
const ROLLUPS: &str = "
rollups:
  by_partner_month:
    fact: orders
    dimensions: [partner.partner_id]
    grain: month
    metrics: [closed_revenue, buying_customers, gross_margin]
  by_customer:
    fact: orders
    dimensions: [customer.customer_id]
    metrics: [closed_revenue, buying_customers]
  channel_by_industry:
    fact: orders
    dimensions: [customer.industry]
    metrics: [closed_revenue, buying_customers]
    channel: true
";

fn model_text() -> String {
    let shipped = prism_model::SHIPPED;
    format!(
        "{}{ROLLUPS}",
        &shipped[..shipped
            .find("\nrollups:")
            .expect("the shipped model has rollups")]
    )
}

fn model() -> Model {
    Model::parse("test.yaml", &model_text()).unwrap()
}

async fn warehouse() -> (tempfile::TempDir, std::sync::Arc<Session>) {
    let tmp = tempfile::tempdir().unwrap();
    let wh = Warehouse::open(tmp.path().join("data")).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny");
    let options = LoadOptions::upsert(fixture, Engine::new(model()).rollup_builds());
    wh.load(&options, &NoProgress).await.unwrap();
    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    (tmp, ctx)
}

fn query(metrics: &[&str], by: &[&str]) -> Query {
    Query {
        metrics: metrics.iter().map(|m| m.to_string()).collect(),
        by: by.iter().map(|d| d.to_string()).collect(),
        ..Query::default()
    }
}

/// The rollup that answered the orders aggregation, the reasons given for passing over the
/// others, and the answer as CSV lines without the header.
async fn ask(
    engine: &Engine,
    ctx: &Session,
    q: &Query,
    scope: &Audience,
) -> (Option<String>, Vec<(String, String)>, Vec<String>) {
    let compiled = engine.compile_in(ctx, q, scope).unwrap();
    let choice = compiled
        .rollups
        .iter()
        .find(|c| c.fact == "orders")
        .expect("an orders aggregation")
        .clone();
    let rows = engine
        .run(ctx, q, scope)
        .await
        .unwrap()
        .formatted_rows()
        .iter()
        .map(|r| r.join(","))
        .collect();
    (choice.rollup, choice.passed_over, rows)
}

fn reason<'a>(passed_over: &'a [(String, String)], rollup: &str) -> &'a str {
    passed_over
        .iter()
        .find(|(n, _)| n == rollup)
        .map(|(_, w)| w.as_str())
        .unwrap_or_else(|| panic!("no reason for {rollup}: {passed_over:?}"))
}

#[tokio::test]
async fn a_grain_too_coarse_reads_the_base_tables() {
    let (_tmp, ctx) = warehouse().await;
    let engine = Engine::new(model());
    let (used, why, rows) = ask(
        &engine,
        &ctx,
        &query(&["closed_revenue"], &["time.week"]),
        &Audience::everyone(),
    )
    .await;
    assert_eq!(used, None);
    assert_eq!(
        reason(&why, "by_partner_month"),
        "its grain, month, is too coarse for time.week"
    );
    assert_eq!(
        reason(&why, "by_customer"),
        "holds all time in one row, and the query cuts by time"
    );
    assert_eq!(
        rows,
        ["2024-W02,2499.50", "2024-W05,1200.00", "2024-W10,-49.75"]
    );
    // By quarter, the monthly rollup answers, with the same sums.
    let (used, _, rows) = ask(
        &engine,
        &ctx,
        &query(&["closed_revenue"], &["time.quarter"]),
        &Audience::everyone(),
    )
    .await;
    assert_eq!(used.as_deref(), Some("by_partner_month"));
    assert_eq!(rows, ["2024-Q1,3649.75"]);
}

#[tokio::test]
async fn a_filter_on_a_dimension_the_rollup_lacks_reads_the_base_tables() {
    let (_tmp, ctx) = warehouse().await;
    let engine = Engine::new(model());
    let mut q = query(&["closed_revenue"], &["time.month"]);
    q.filters
        .push(Filter::parse("customer.size_band=Enterprise").unwrap());
    let (used, why, rows) = ask(&engine, &ctx, &q, &Audience::everyone()).await;
    assert_eq!(used, None);
    assert_eq!(
        reason(&why, "by_partner_month"),
        "cannot filter by customer.size_band"
    );
    assert_eq!(rows, ["2024-01,2499.50"]);
    // Without the month, the customer rollup holds the customer's key, and so its size band.
    q.by.clear();
    let (used, _, rows) = ask(&engine, &ctx, &q, &Audience::everyone()).await;
    assert_eq!(used.as_deref(), Some("by_customer"));
    assert_eq!(rows, ["2499.50"]);
}

#[tokio::test]
async fn a_distinct_count_is_summed_again_only_over_the_key_it_counts() {
    let (_tmp, ctx) = warehouse().await;
    let engine = Engine::new(model());
    // By partner: the monthly rollup holds the count per partner and month, but C-2 would be
    // counted in two months; the customer rollup has no partner.
    let (used, why, rows) = ask(
        &engine,
        &ctx,
        &query(&["buying_customers"], &["partner.partner_id"]),
        &Audience::everyone(),
    )
    .await;
    assert_eq!(used, None);
    assert_eq!(
        reason(&why, "by_partner_month"),
        "`buying_customers` counts distinct customer_id, which is not a dimension of the rollup: its counts cannot be added up, and the query does not cut by time.month alone"
    );
    assert_eq!(
        reason(&why, "by_customer"),
        "has no dimension partner.partner_id"
    );
    assert_eq!(rows, ["(direct),1", "P-1,1", "P-2,1"]);
    // By partner and month, its rows are the query's groups: the count it stores is the answer.
    let (used, _, rows) = ask(
        &engine,
        &ctx,
        &query(&["buying_customers"], &["partner.partner_id", "time.month"]),
        &Audience::everyone(),
    )
    .await;
    assert_eq!(used.as_deref(), Some("by_partner_month"));
    assert_eq!(
        rows,
        ["(direct),2024-02,1", "P-1,2024-01,1", "P-2,2024-03,1"]
    );
    // By month alone, a customer of two partners in a month would be counted twice.
    let (used, why, _) = ask(
        &engine,
        &ctx,
        &query(&["buying_customers"], &["time.month"]),
        &Audience::everyone(),
    )
    .await;
    assert_eq!(used, None);
    assert!(
        reason(&why, "by_partner_month")
            .ends_with("and the query does not cut by partner.partner_id"),
        "{why:?}"
    );
    // Over everything, the customer rollup counts its keys: C-1 and C-2 (C-2 bought twice).
    let (used, _, rows) = ask(
        &engine,
        &ctx,
        &query(&["buying_customers"], &[]),
        &Audience::everyone(),
    )
    .await;
    assert_eq!(used.as_deref(), Some("by_customer"));
    assert_eq!(rows, ["2"]);
}

#[tokio::test]
async fn a_ratio_is_rebuilt_from_its_parts_only_when_the_rollup_holds_them_all() {
    let (_tmp, ctx) = warehouse().await;
    let engine = Engine::new(model());
    // gross_margin_pct = gross_margin / costed_revenue; the rollup holds the margin only.
    let (used, why, rows) = ask(
        &engine,
        &ctx,
        &query(&["gross_margin_pct"], &["partner.partner_id"]),
        &Audience::everyone(),
    )
    .await;
    assert_eq!(used, None);
    assert_eq!(
        reason(&why, "by_partner_month"),
        "does not hold `costed_revenue`"
    );
    // 100 * 400 / 1200, 100 * 900 / 2400, 100 * -19.75 / -49.75
    let pct: Vec<(String, f64)> = rows
        .iter()
        .map(|r| {
            r.split_once(',')
                .map(|(a, b)| (a.to_string(), b.parse().unwrap()))
                .unwrap()
        })
        .collect();
    let expected = [
        ("(direct)", 100.0 * 400.0 / 1200.0),
        ("P-1", 37.5),
        ("P-2", 100.0 * 19.75 / 49.75),
    ];
    for ((p, v), (ep, ev)) in pct.iter().zip(expected) {
        assert_eq!(p, ep);
        assert!((v - ev).abs() < 1e-9, "{p}: {v} against {ev}");
    }
    let (used, _, rows) = ask(
        &engine,
        &ctx,
        &query(&["gross_margin"], &["partner.partner_id"]),
        &Audience::everyone(),
    )
    .await;
    assert_eq!(used.as_deref(), Some("by_partner_month"));
    assert_eq!(rows, ["(direct),400.00", "P-1,900.00", "P-2,-19.75"]);
}

#[tokio::test]
async fn a_period_off_the_grain_and_a_scope_without_the_partner_read_the_base_tables() {
    let (_tmp, ctx) = warehouse().await;
    let engine = Engine::new(model());
    let mut q = query(&["closed_revenue"], &[]);
    q.period = Some(Period::parse("2024-01-05..2024-02-10").unwrap());
    let (used, why, rows) = ask(&engine, &ctx, &q, &Audience::everyone()).await;
    assert_eq!(used, None);
    assert_eq!(
        reason(&why, "by_partner_month"),
        "the period 2024-01-05 to 2024-02-10 does not start and end on whole months"
    );
    assert_eq!(rows, ["3699.50"]);
    q.period = Some(Period::parse("2024-Q1").unwrap());
    let (used, _, rows) = ask(&engine, &ctx, &q, &Audience::everyone()).await;
    assert_eq!(used.as_deref(), Some("by_partner_month"));
    assert_eq!(rows, ["3649.75"]);

    // A partner user: the customer rollup has no partner to scope by; the monthly one has.
    let q = query(&["buying_customers"], &[]);
    let (used, why, rows) = ask(&engine, &ctx, &q, &Audience::partner("P-2").unwrap()).await;
    assert_eq!(used, None);
    assert_eq!(
        reason(&why, "by_customer"),
        "has no partner.partner_id, which the partner scope needs"
    );
    assert_eq!(rows, ["1"]);
    let (used, _, rows) = ask(
        &engine,
        &ctx,
        &query(&["closed_revenue"], &["partner.partner_id"]),
        &Audience::partner("P-2").unwrap(),
    )
    .await;
    assert_eq!(used.as_deref(), Some("by_partner_month"));
    assert_eq!(rows, ["P-2,-49.75"]);
}

#[tokio::test]
async fn a_rollup_built_from_another_definition_is_never_read() {
    let (_tmp, ctx) = warehouse().await;
    // The same rollups, but closed revenue now means units: the rollups built by the load hold
    // the old definition, and must not answer until a load rebuilds them.
    let shipped = "closed_revenue: { label: \"Closed revenue\", fact: orders, sum: revenue,";
    assert!(
        model_text().contains(shipped),
        "the shipped definition moved"
    );
    let text = model_text().replace(
        shipped,
        "closed_revenue: { label: \"Closed revenue\", fact: orders, sum: quantity,",
    );
    let engine = Engine::new(Model::parse("changed.yaml", &text).unwrap());
    let (used, why, rows) = ask(
        &engine,
        &ctx,
        &query(&["closed_revenue"], &[]),
        &Audience::everyone(),
    )
    .await;
    assert_eq!(used, None);
    assert_eq!(
        reason(&why, "by_partner_month"),
        "was built from an earlier definition; the next load rebuilds it"
    );
    // Five units in all, written as the metric's money format writes every amount.
    assert_eq!(rows, ["5.00"]);
    // Turned off, rollups answer nothing; the answer is the same.
    let engine = Engine::new(model()).without_rollups();
    let compiled = engine
        .compile_in(
            &ctx,
            &query(&["closed_revenue"], &[]),
            &Audience::everyone(),
        )
        .unwrap();
    assert_eq!(
        compiled.rollups[0].reason.as_deref(),
        Some("rollups are turned off")
    );
    assert!(!compiled.sql.contains("rollup_"));
}

#[tokio::test]
async fn a_rollup_built_from_a_finer_one_holds_what_its_definition_computes_from_the_base() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = Warehouse::open(tmp.path().join("data")).unwrap();
    let engine = Engine::new(Model::shipped());
    let builds = engine.rollup_builds();
    let at = |name: &str| builds.iter().position(|b| b.name == name).unwrap();
    // The monthly totals are built after, and from, the monthly totals by product (or by line,
    // itself built from those by product).
    assert!(at("orders_by_partner_product_month") < at("orders_by_partner_line_month"));
    assert!(
        builds[at("orders_by_partner_line_month")]
            .sql
            .contains(&engine.rollup_table("orders_by_partner_product_month"))
    );
    assert!(
        builds[at("orders_by_partner_month")]
            .sql
            .contains("FROM rollup_orders_by_partner_")
    );
    assert!(
        builds[at("orders_by_partner_product_month")]
            .sql
            .contains("FROM orders f")
    );
    // The channel's buyers by segment from each partner's customers, who carry their segment.
    assert!(
        builds[at("channel_buyers_by_segment")]
            .sql
            .contains(&format!(
                "FROM {} f",
                engine.rollup_table("orders_by_partner_customer")
            ))
    );
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny");
    wh.load(&LoadOptions::upsert(fixture, builds.clone()), &NoProgress)
        .await
        .unwrap();
    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    let sorted = |batches: Vec<arrow::record_batch::RecordBatch>| {
        let text = arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines.sort();
        lines
    };
    let mut derived = 0;
    for b in &builds {
        let stored = sorted(
            ctx.sql(&format!("SELECT * FROM {}", b.table))
                .await
                .unwrap()
                .collect()
                .await
                .unwrap(),
        );
        let defined = sorted(
            ctx.sql(&b.definition)
                .await
                .unwrap()
                .collect()
                .await
                .unwrap(),
        );
        assert_eq!(stored, defined, "{} (built by {})", b.name, b.sql);
        derived += usize::from(b.sql != b.definition);
    }
    assert!(
        derived >= 2,
        "only {derived} rollups were built from another"
    );

    // The shipped customer rollups store no distinct count: they hold the customer key, so they
    // count keys. C-2 bought from P-2 and directly, and is one buyer. The brand owner's question
    // reads the smaller of the two, one row per customer.
    let (used, _, rows) = ask(
        &engine,
        &ctx,
        &query(&["buying_customers"], &["customer.industry"]),
        &Audience::everyone(),
    )
    .await;
    assert_eq!(used.as_deref(), Some("orders_by_customer"));
    assert_eq!(rows, ["Financial Services,1", "Healthcare,1"]);
}

#[tokio::test]
async fn a_load_keeps_the_rollups_whose_tables_it_did_not_change_and_rebuilds_the_others() {
    let (tmp, wh, engine) = shipped_warehouse().await;
    // One more survey, of P-1's customer C-1, scoring 1: only the surveys change.
    let versions = load_one_file(&tmp, &wh, &engine, "satisfaction_surveys.csv", "survey_id,partner_id,customer_id,request_id,surveyed_on,score\nS-9,P-1,C-1,,2024-04-02,1\n").await;
    let (before, after) = (&versions.versions[0], &versions.versions[1]);
    // The surveys' rollup and the accounts at risk read the surveys.
    let reading_surveys: Vec<String> = engine
        .rollup_builds()
        .into_iter()
        .filter(|b| b.reads.iter().any(|t| t == "satisfaction_surveys"))
        .map(|b| b.table)
        .collect();
    assert!(reading_surveys.contains(&engine.rollup_table("surveys_by_partner_month")));
    assert_eq!(reading_surveys.len(), 2, "{reading_surveys:?}");
    for (table, pin) in &after.rollups {
        if reading_surveys.contains(table) {
            assert_ne!(
                pin.delta_version, before.rollups[table].delta_version,
                "{table} was not rebuilt"
            );
        } else {
            assert_eq!(
                pin, &before.rollups[table],
                "{table} was rebuilt though its tables did not change"
            );
        }
    }
    // And the rebuilt one has the new survey: P-1's scores 5 and 1.
    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    let (used, _, rows) = ask_fact(
        &engine,
        &ctx,
        &query(&["csat_avg", "survey_count"], &["partner.partner_id"]),
        "satisfaction_surveys",
    )
    .await;
    assert_eq!(used.as_deref(), Some("surveys_by_partner_month"));
    let base = Engine::new(Model::shipped())
        .without_rollups()
        .run(
            &ctx,
            &query(&["csat_avg", "survey_count"], &["partner.partner_id"]),
            &Audience::everyone(),
        )
        .await
        .unwrap();
    assert_eq!(
        rows,
        base.formatted_rows()
            .iter()
            .map(|r| r.join(","))
            .collect::<Vec<_>>()
    );
    assert!(rows.contains(&"P-1,3.0,2".to_string()), "{rows:?}");
}

#[tokio::test]
async fn a_rollup_built_from_a_kept_one_is_rebuilt_when_its_own_tables_change() {
    let (tmp, wh, engine) = shipped_warehouse().await;
    // PR-2 moves to the Cloud Infrastructure line: only the products change. The rollup by
    // product reads no product table and is kept; the one by product line is built again, from
    // the kept one, and must hold the new line.
    let versions = load_one_file(&tmp, &wh, &engine, "products.csv", "product_id,product_name,product_line,category,list_price\nPR-2,Firewall X,Cloud Infrastructure,,99.5\n").await;
    let (before, after) = (&versions.versions[0], &versions.versions[1]);
    let (by_product, by_line) = (
        engine.rollup_table("orders_by_partner_product_month"),
        engine.rollup_table("orders_by_partner_line_month"),
    );
    assert_eq!(
        after.rollups[&by_product], before.rollups[&by_product],
        "the rollup by product was rebuilt though the order lines did not change"
    );
    assert_ne!(
        after.rollups[&by_line].delta_version, before.rollups[&by_line].delta_version,
        "the rollup by product line was not rebuilt"
    );
    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    let q = query(&["closed_revenue"], &["product.product_line"]);
    let (used, _, rows) = ask_fact(&engine, &ctx, &q, "orders").await;
    assert_eq!(used.as_deref(), Some("orders_by_partner_line_month"));
    let base = Engine::new(Model::shipped())
        .without_rollups()
        .run(&ctx, &q, &Audience::everyone())
        .await
        .unwrap();
    assert_eq!(
        rows,
        base.formatted_rows()
            .iter()
            .map(|r| r.join(","))
            .collect::<Vec<_>>()
    );
    // Every line is now Cloud Infrastructure: one row.
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].starts_with("Cloud Infrastructure,"), "{rows:?}");
}

/// Loads an export of one file over the warehouse, with the shipped rollups; the versions after.
async fn load_one_file(
    tmp: &tempfile::TempDir,
    wh: &Warehouse,
    engine: &Engine,
    file: &str,
    text: &str,
) -> prism_warehouse::versions::VersionFile {
    let update = tmp.path().join("update");
    std::fs::create_dir_all(&update).unwrap();
    std::fs::write(update.join(file), text).unwrap();
    wh.load(
        &LoadOptions {
            export_dir: update,
            rollups: engine.rollup_builds(),
            ..Default::default()
        },
        &NoProgress,
    )
    .await
    .unwrap();
    wh.versions().unwrap()
}

/// The tiny fixture loaded with the shipped model's rollups, and an engine of that model.
async fn shipped_warehouse() -> (tempfile::TempDir, Warehouse, Engine) {
    let tmp = tempfile::tempdir().unwrap();
    let wh = Warehouse::open(tmp.path().join("data")).unwrap();
    let engine = Engine::new(Model::shipped());
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny");
    wh.load(
        &LoadOptions {
            export_dir: fixture,
            rollups: engine.rollup_builds(),
            ..Default::default()
        },
        &NoProgress,
    )
    .await
    .unwrap();
    (tmp, wh, engine)
}

/// As `ask`, for the aggregation of another fact.
async fn ask_fact(
    engine: &Engine,
    ctx: &Session,
    q: &Query,
    fact: &str,
) -> (Option<String>, Vec<(String, String)>, Vec<String>) {
    let compiled = engine.compile_in(ctx, q, &Audience::everyone()).unwrap();
    let choice = compiled
        .rollups
        .iter()
        .find(|c| c.fact == fact)
        .expect("the fact's aggregation")
        .clone();
    let rows = engine
        .run(ctx, q, &Audience::everyone())
        .await
        .unwrap()
        .formatted_rows()
        .iter()
        .map(|r| r.join(","))
        .collect();
    (choice.rollup, choice.passed_over, rows)
}

#[tokio::test]
async fn a_rollup_holding_customer_attributes_answers_without_the_customer_table_and_follows_a_changed_customer()
 {
    let (tmp, wh, engine) = shipped_warehouse().await;
    let q = query(
        &["closed_revenue", "buying_customers"],
        &["customer.industry", "customer.size_band"],
    );
    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    let compiled = engine.compile_in(&ctx, &q, &Audience::everyone()).unwrap();
    assert!(
        !compiled.sql.contains("JOIN customers"),
        "the segment is read from the rollup: {}",
        compiled.sql
    );
    let (used, _, rows) = ask(&engine, &ctx, &q, &Audience::everyone()).await;
    assert_eq!(used.as_deref(), Some("orders_by_customer"));
    // C-1 (Healthcare, Enterprise): 2400.00 + 99.50; C-2 (Financial Services, Mid-Market):
    // 1200.00 directly and -49.75 through P-2, one buyer.
    assert_eq!(
        rows,
        [
            "Financial Services,Mid-Market,1150.25,1",
            "Healthcare,Enterprise,2499.50,1"
        ]
    );

    // C-2 moves to Retail: only the customers change, and the rollups holding customer
    // attributes are rebuilt with the new segment.
    let update = tmp.path().join("update");
    std::fs::create_dir_all(&update).unwrap();
    std::fs::write(update.join("customers.csv"), "customer_id,customer_name,industry,size_band,region,country,annual_revenue\nC-2,\"Bank of Foo, Inc.\",Retail,Mid-Market,EMEA,,\n").unwrap();
    wh.load(
        &LoadOptions {
            export_dir: update,
            rollups: engine.rollup_builds(),
            ..Default::default()
        },
        &NoProgress,
    )
    .await
    .unwrap();
    let versions = wh.versions().unwrap();
    for rollup in ["orders_by_partner_customer", "orders_by_customer"] {
        let customers = engine.rollup_table(rollup);
        assert_ne!(
            versions.versions[1].rollups[&customers].delta_version,
            versions.versions[0].rollups[&customers].delta_version,
            "{rollup} was not rebuilt"
        );
    }
    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    let (used, _, rows) = ask(&engine, &ctx, &q, &Audience::everyone()).await;
    assert_eq!(used.as_deref(), Some("orders_by_customer"));
    assert_eq!(
        rows,
        [
            "Healthcare,Enterprise,2499.50,1",
            "Retail,Mid-Market,1150.25,1"
        ]
    );
    let base = Engine::new(Model::shipped())
        .without_rollups()
        .run(&ctx, &q, &Audience::everyone())
        .await
        .unwrap();
    assert_eq!(
        rows,
        base.formatted_rows()
            .iter()
            .map(|r| r.join(","))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_rollup_with_one_row_per_asked_key_is_read_as_it_is_without_grouping() {
    let (_tmp, wh, engine) = shipped_warehouse().await;
    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    // The brand owner's top accounts: the customers' rollup holds each customer once, with its
    // name and segment beside the key, so its rows are the answer's rows. C-1: 2400.00 + 99.50
    // and 3 units; C-2: 1200.00 directly and -49.75 through P-2, 2 units.
    let mut q = query(
        &["closed_revenue", "units_sold"],
        &["customer.customer_id", "customer.industry"],
    );
    q.order = vec![prism_engine::Order::parse("closed_revenue:desc").unwrap()];
    let compiled = engine.compile_in(&ctx, &q, &Audience::everyone()).unwrap();
    assert!(
        !compiled.sql.contains("GROUP BY"),
        "the rollup's rows are read without grouping: {}",
        compiled.sql
    );
    let (used, _, rows) = ask(&engine, &ctx, &q, &Audience::everyone()).await;
    assert_eq!(used.as_deref(), Some("orders_by_customer"));
    assert_eq!(
        rows,
        [
            "C-1,Healthcare,2499.50,3",
            "C-2,Financial Services,1150.25,2"
        ]
    );
    // The same figures, of the same types, as the base tables give, filtered to one key too.
    q.filters
        .push(Filter::parse("customer.customer_id=C-2").unwrap());
    let (used, _, rows) = ask(&engine, &ctx, &q, &Audience::everyone()).await;
    assert_eq!(used.as_deref(), Some("orders_by_customer"));
    let base = Engine::new(Model::shipped())
        .without_rollups()
        .run(&ctx, &q, &Audience::everyone())
        .await
        .unwrap();
    let read = engine.run(&ctx, &q, &Audience::everyone()).await.unwrap();
    let types = |r: &prism_engine::QueryResult| -> Vec<_> {
        r.batches[0]
            .schema()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect()
    };
    assert_eq!(types(&base), types(&read));
    assert_eq!(rows, ["C-2,Financial Services,1150.25,2"]);
    // By industry alone, two customers could share a row: grouped.
    let q = query(&["closed_revenue"], &["customer.industry"]);
    let compiled = engine.compile_in(&ctx, &q, &Audience::everyone()).unwrap();
    assert!(compiled.sql.contains("GROUP BY"), "{}", compiled.sql);
    // A partner's user is answered from the rollup by partner and customer, grouped as before:
    // P-2's one customer.
    let q = query(&["closed_revenue"], &["customer.customer_id"]);
    let partner = Audience::partner("P-2").unwrap();
    let (used, _, rows) = ask(&engine, &ctx, &q, &partner).await;
    assert_eq!(used.as_deref(), Some("orders_by_partner_customer"));
    assert_eq!(rows, ["C-2,-49.75"]);
}

#[tokio::test]
async fn a_channel_rollup_answers_only_a_benchmark_at_exactly_its_grain() {
    let (_tmp, ctx) = warehouse().await;
    let engine = Engine::new(model());
    // What the load stored: partners' order lines only (O-2, C-2's 1200.00 direct order, is
    // not in it), with the customers and partners of each industry.
    let table = engine.rollup_table("channel_by_industry");
    let batches = ctx
        .sql(&format!("SELECT * FROM {table} ORDER BY 1"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let stored = arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    let lines: Vec<&str> = stored
        .lines()
        .filter(|l| l.starts_with("| "))
        .skip(1)
        .collect();
    assert_eq!(
        lines,
        [
            "| Financial Services | -49.75         | 1                | 1                |",
            "| Healthcare         | 2499.50        | 1                | 1                |"
        ],
        "{stored}"
    );

    let benchmark = |q: &Query| {
        let compiled = engine.compile_benchmark_in(&ctx, q).unwrap();
        let choice = compiled
            .rollups
            .into_iter()
            .find(|c| c.fact == "orders")
            .unwrap();
        (choice.rollup, choice.passed_over)
    };
    let by_industry = query(&["buying_customers"], &["customer.industry"]);
    assert_eq!(
        benchmark(&by_industry).0.as_deref(),
        Some("channel_by_industry")
    );
    // One partner in each industry: withheld, with the number of partners from the rollup; the
    // same as the base tables give.
    let from_rollup = benchmark_rows(&engine, &ctx, &by_industry).await;
    assert_eq!(from_rollup, ["Financial Services,,1", "Healthcare,,1"]);
    // Revenue is over the partners with a revenue, which the rollup does not store: a partner
    // with an order line of no revenue is not behind it.
    let revenue = query(
        &["buying_customers", "closed_revenue"],
        &["customer.industry"],
    );
    assert_eq!(benchmark(&revenue).0, None);
    assert!(
        benchmark(&revenue)
            .1
            .iter()
            .any(|(n, w)| n == "channel_by_industry"
                && w.contains("`closed_revenue` counts only some rows"))
    );
    assert_eq!(
        benchmark_rows(&engine, &ctx, &revenue).await,
        ["Financial Services,,,1", "Healthcare,,,1"]
    );
    assert_eq!(
        benchmark_rows(&Engine::new(model()).without_rollups(), &ctx, &by_industry).await,
        from_rollup
    );

    // Anything but its own grain reads elsewhere, and says why.
    let why = |q: &Query| {
        benchmark(q)
            .1
            .into_iter()
            .find(|(n, _)| n == "channel_by_industry")
            .map(|(_, w)| w)
            .unwrap()
    };
    let prefix = "holds the number of partners of each row, so it answers a benchmark only at exactly its own grain, and ";
    assert_eq!(
        why(&query(
            &["buying_customers"],
            &["customer.industry", "customer.size_band"]
        )),
        format!("{prefix}it has no dimension customer.size_band")
    );
    assert_eq!(
        why(&query(&["buying_customers"], &[])),
        format!("{prefix}the query does not cut by customer.industry")
    );
    let mut filtered = by_industry.clone();
    filtered.filters = vec![Filter {
        dimension: "product.product_id".into(),
        op: prism_engine::FilterOp::In(vec!["PR-1".into()]),
    }];
    assert_eq!(
        why(&filtered),
        format!("{prefix}the query filters by product.product_id, which it does not cut by")
    );
    let mut in_q1 = by_industry.clone();
    in_q1.period = Some(Period::parse("2024-Q1").unwrap());
    assert_eq!(
        why(&in_q1),
        "holds all time in one row, and the query has a period"
    );
    // Not a benchmark: it lacks the direct sales. The customer rollup counts its keys.
    let (used, passed_over, rows) = ask(
        &engine,
        &ctx,
        &query(&["buying_customers"], &["customer.industry"]),
        &Audience::everyone(),
    )
    .await;
    assert_eq!(used.as_deref(), Some("by_customer"));
    assert_eq!(
        reason(&passed_over, "channel_by_industry"),
        "holds partners' rows only, with their number: it answers channel benchmarks only"
    );
    assert_eq!(rows, ["Financial Services,1", "Healthcare,1"]);
}

async fn benchmark_rows(engine: &Engine, ctx: &Session, q: &Query) -> Vec<String> {
    engine
        .run_benchmark(ctx, q)
        .await
        .unwrap()
        .formatted_rows()
        .iter()
        .map(|r| r.join(","))
        .collect()
}

/// A partner's customers are read from the rollup holding each partner's customers for its
/// orders, and from the other facts' tables for theirs: P-1 has C-1 (its orders) and C-2 (its
/// deal registration DR-4 only), P-2 has C-2, P-3 none; a manager of P-1 and P-3 sees P-1's.
/// The base tables (rollups off) give the same, as read from the fixture by hand.
#[tokio::test]
async fn a_partners_customers_are_read_from_the_rollup_holding_them() {
    let (_tmp, wh, engine) = shipped_warehouse().await;
    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    let base = Engine::new(Model::shipped()).without_rollups();
    let rollup = engine.rollup_table("orders_by_partner_customer");
    let cases = [
        (Audience::partner("P-1").unwrap(), vec!["C-1", "C-2"]),
        (Audience::partner("P-2").unwrap(), vec!["C-2"]),
        (Audience::partner("P-3").unwrap(), vec![]),
        (
            Audience::partners(["P-1".into(), "P-3".into()]),
            vec!["C-1", "C-2"],
        ),
    ];
    for (audience, expected) in cases {
        for (engine, reads_rollup) in [(&engine, true), (&base, false)] {
            let ordered = engine.members(&ctx, "customer", &audience).await.unwrap();
            let unordered = engine
                .members_unordered(&ctx, "customer", &audience)
                .await
                .unwrap();
            for answer in [ordered, unordered] {
                assert_eq!(answer.sql.contains(&rollup), reads_rollup, "{}", answer.sql);
                let mut ids: Vec<String> = answer
                    .rows()
                    .iter()
                    .map(|r| r.text("customer.customer_id").unwrap().to_string())
                    .collect();
                ids.sort();
                assert_eq!(ids, expected, "{audience:?}, rollups {reads_rollup}");
            }
        }
    }
}
