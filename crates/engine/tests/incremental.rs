//! A day's changes loaded on top of an export bring the shipped rollups up to date by the
//! slices they changed, and every rollup then holds exactly what its definition computes over
//! the new version's tables from scratch (a full rebuild, run here as the definition's SQL over
//! the base tables: the second, simple implementation the maintained rollups are checked
//! against).

use std::collections::BTreeSet;
use std::path::Path;

use prism_engine::Engine;
use prism_model::Model;
use prism_warehouse::{LoadOptions, NoProgress, RollupBuild, Warehouse, WarehouseVersion};

/// Every row of a query's answer as text, sorted.
async fn rows(ctx: &prism_engine::Session, sql: &str) -> Vec<String> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("| "))
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

/// Each rollup of the current version against its definition computed whole over the
/// version's tables: equal, row for row and cent for cent.
async fn assert_rollups_as_defined(wh: &Warehouse, builds: &[RollupBuild]) {
    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    for b in builds {
        let stored = rows(&ctx, &format!("SELECT * FROM {}", b.table)).await;
        let defined = rows(&ctx, &b.definition).await;
        assert!(!defined.is_empty(), "{}: no rows to compare", b.name);
        assert_eq!(
            stored.len(),
            defined.len(),
            "{}: {} rows stored, {} defined",
            b.name,
            stored.len(),
            defined.len()
        );
        let differ: Vec<_> = stored
            .iter()
            .zip(&defined)
            .filter(|(s, d)| s != d)
            .take(3)
            .collect();
        assert!(differ.is_empty(), "{}: rows differ: {differ:?}", b.name);
    }
}

/// Each file of a rollup written in the order of a column (`cluster_by`) holds its rows in that
/// order, empty values last, in `version` as in a build whole: a query for one partner or
/// product reads only the row groups of its stretch. Returns how many files were checked.
async fn assert_rollups_in_order(
    data: &Path,
    version: &WarehouseVersion,
    builds: &[RollupBuild],
) -> usize {
    use arrow::compute::SortOptions;
    let mut checked = 0;
    for b in builds {
        let Some(column) = &b.cluster_by else {
            continue;
        };
        // The rollup's files in that version: each build overwrites it whole, so its commit
        // adds every file the version holds.
        let folder = data.join("rollups").join(&b.table);
        let log = folder.join(format!(
            "_delta_log/{:020}.json",
            version.rollups[&b.table].delta_version
        ));
        let files: Vec<String> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .filter_map(|l| {
                let action: serde_json::Value = serde_json::from_str(l).unwrap();
                Some(action.get("add")?["path"].as_str()?.to_string())
            })
            .collect();
        assert!(!files.is_empty(), "{}: no file", b.name);
        // One partition: the file's rows in the order it holds them.
        let ctx = datafusion::prelude::SessionContext::new_with_config(
            datafusion::prelude::SessionConfig::new().with_target_partitions(1),
        );
        for file in files {
            let path = folder.join(&file);
            let batches = ctx
                .read_parquet(
                    path.to_str().unwrap(),
                    datafusion::prelude::ParquetReadOptions::default(),
                )
                .await
                .unwrap()
                .select_columns(&[column.as_str()])
                .unwrap()
                .collect()
                .await
                .unwrap();
            let schema = batches[0].schema();
            let values = arrow::compute::concat_batches(&schema, &batches).unwrap();
            let values = values.column(0);
            let options = SortOptions {
                descending: false,
                nulls_first: false,
            };
            let sorted = arrow::compute::sort(values, Some(options)).unwrap();
            assert_eq!(
                sorted.as_ref(),
                values.as_ref(),
                "{}: {file} not in the order of {column}",
                b.name
            );
            checked += 1;
        }
    }
    checked
}

async fn load(wh: &Warehouse, export: &Path, builds: &[RollupBuild]) -> WarehouseVersion {
    load_telling(wh, export, builds, &NoProgress).await
}

async fn load_telling(
    wh: &Warehouse,
    export: &Path,
    builds: &[RollupBuild],
    progress: &dyn prism_warehouse::LoadProgress,
) -> WarehouseVersion {
    wh.load(
        &LoadOptions {
            export_dir: export.to_path_buf(),
            rollups: builds.to_vec(),
            ..Default::default()
        },
        progress,
    )
    .await
    .unwrap();
    wh.versions().unwrap().versions.last().unwrap().clone()
}

/// The steps a load said it took, as a user watching it reads them.
#[derive(Default)]
struct Steps(std::sync::Mutex<Vec<String>>);

impl prism_warehouse::LoadProgress for Steps {
    fn step(&self, message: &str) {
        self.0.lock().unwrap().push(message.to_string());
    }
}

impl Steps {
    fn said(&self, text: &str) -> bool {
        self.0.lock().unwrap().iter().any(|s| s.contains(text))
    }
}

/// Opportunities of the export changed as a day brings them: every fifth one a deal
/// registration names is closed (won, or lost when it was won), and every seventh of those moves
/// to the partner of the one before it, so that both the stage a registration looks up and the
/// slices of two partners change.
fn changed_opportunities(export: &Path, out: &Path) -> usize {
    let registered: BTreeSet<String> =
        csv::Reader::from_path(export.join("deal_registrations.csv"))
            .unwrap()
            .deserialize::<std::collections::HashMap<String, String>>()
            .map(|r| r.unwrap()["opportunity_id"].clone())
            .filter(|id| !id.is_empty())
            .collect();
    let mut reader = csv::Reader::from_path(export.join("opportunities.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let at = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (id, partner, stage, probability) = (
        at("opportunity_id"),
        at("partner_id"),
        at("stage"),
        at("probability"),
    );
    let mut w = csv::Writer::from_path(out.join("opportunities.csv")).unwrap();
    w.write_record(&header).unwrap();
    let (mut changed, mut last_partner) = (0, String::new());
    for (n, record) in reader
        .records()
        .map(|r| r.unwrap())
        .filter(|r| registered.contains(&r[id]))
        .enumerate()
        .filter(|(n, _)| n % 5 == 0)
    {
        let mut row: Vec<String> = record.iter().map(String::from).collect();
        let won = row[stage] == "Closed Won";
        row[stage] = if won { "Closed Lost" } else { "Closed Won" }.into();
        row[probability] = if won { "0" } else { "100" }.into();
        if n % 7 == 0 && !last_partner.is_empty() {
            row[partner] = last_partner.clone();
        }
        last_partner = record[partner].to_string();
        w.write_record(&row).unwrap();
        changed += 1;
    }
    w.flush().unwrap();
    changed
}

/// The shipped model with a rollup of a distinct count by partner and month: brought up to
/// date by slices, as distinct counts do not add up.
fn model() -> Model {
    Model::extended(
        "orders-by-month.yaml",
        "rollups:\n  orders_counted_by_partner_month:\n    fact: orders\n    \
         dimensions: [partner.partner_id]\n    grain: month\n    \
         metrics: [order_count, closed_revenue]\n",
    )
    .unwrap()
}

/// A generated export loaded with its order lines in ten parts, as months of daily exports
/// would bring them: the table is then ten files, of which a day's changes rewrite the last.
async fn loaded_in_ten_parts(
    tmp: &Path,
    seed: u64,
) -> (
    std::path::PathBuf,
    Warehouse,
    Vec<RollupBuild>,
    WarehouseVersion,
) {
    let export = tmp.join("export");
    prism_generator::generate(&prism_generator::GenerateConfig {
        out: export.clone(),
        scale: 0.02,
        seed,
        partners: None,
        customers: None,
    })
    .unwrap();
    let builds = Engine::new(model()).rollup_builds();
    let wh = Warehouse::open(tmp.join("data")).unwrap();
    let all = std::fs::read_to_string(export.join("orders.csv")).unwrap();
    let (header, lines) = all.split_once('\n').unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    let part = |n: usize| {
        let tenth = lines.len().div_ceil(10);
        let chunk = lines.chunks(tenth).nth(n).unwrap().join("\n");
        format!("{header}\n{chunk}\n")
    };
    std::fs::write(export.join("orders.csv"), part(0)).unwrap();
    let mut first = load(&wh, &export, &builds).await;
    for n in 1..10 {
        let more = tmp.join(format!("orders-{n}"));
        std::fs::create_dir_all(&more).unwrap();
        std::fs::write(more.join("orders.csv"), part(n)).unwrap();
        first = load(&wh, &more, &builds).await;
    }
    std::fs::write(export.join("orders.csv"), all).unwrap();
    (export, wh, builds, first)
}

#[tokio::test]
async fn a_days_changes_bring_the_rollups_up_to_date_as_a_rebuild_would() {
    let tmp = tempfile::tempdir().unwrap();
    let (export, wh, builds, first) = loaded_in_ten_parts(tmp.path(), 7).await;
    let engine = Engine::new(model());

    // A day's order lines: a fifth of the export's, so that many slices change — new orders,
    // and recent lines repriced, moved to another partner or to a direct sale, or dated back
    // into the month before.
    let day = tmp.path().join("day");
    let summary = prism_generator::generate_changes(&prism_generator::ChangesConfig {
        export: export.clone(),
        out: day.clone(),
        share: 0.2,
        seed: 3,
    })
    .unwrap();
    assert!(summary.rows_of(prism_contract::Entity::Orders) > 500);
    let told = Steps::default();
    let second = load_telling(&wh, &day, &builds, &told).await;
    // Brought up to date as the load said it would be: no line takes it back.
    assert!(told.said("bringing rollup orders_by_partner_customer up to date"));
    assert!(!told.said("built whole instead"));
    let by_product = engine.rollup_table("orders_by_partner_product_month");
    assert!(second.rollups[&by_product].by_slices);
    // Each partner's customers over all time: their rows lie in every file, and they are
    // brought up to date by the changed rows alone.
    let by_customer = engine.rollup_table("orders_by_partner_customer");
    assert!(second.rollups[&by_customer].by_slices);
    // So are the brand owner's customers, whoever sold to them, rather than grouped again
    // whole from the rollup by partner and customer.
    let channel_customers = engine.rollup_table("orders_by_customer");
    assert!(second.rollups[&channel_customers].by_slices);
    // A distinct count: by slices.
    let counted = builds
        .iter()
        .find(|b| b.name == "orders_counted_by_partner_month")
        .unwrap();
    assert!(counted.delta.is_none() && counted.slices.is_some());
    assert!(second.rollups[&counted.table].by_slices);
    // The rows computed again merged into those kept, in order (the customers' by partner,
    // the products' by product), load after load: a load that found them out of order would
    // put them back in order, so the ten loads before are checked too.
    let data = tmp.path().join("data");
    assert!(assert_rollups_in_order(&data, &first, &builds).await >= 2);
    assert!(assert_rollups_in_order(&data, &second, &builds).await >= 2);
    for b in &builds {
        let (before, after) = (&first.rollups[&b.table], &second.rollups[&b.table]);
        if b.reads.iter().any(|t| t == "orders") {
            assert_ne!(before.delta_version, after.delta_version, "{}", b.name);
            // Those built from the order lines are brought up to date; those built from
            // another rollup are built again from it, and so is the channel's (distinct
            // counts of buying customers) — but for one without slices that takes the day's
            // rows (the brand owner's customers), brought up to date from them.
            let from_order_lines = b.from.is_none() && (b.slices.is_some() || b.delta.is_some());
            let takes_the_days_rows = b.from.is_some() && b.slices.is_none() && b.delta.is_some();
            assert_eq!(
                after.by_slices,
                from_order_lines || takes_the_days_rows,
                "{}",
                b.name
            );
        } else {
            assert_eq!(before, after, "{} changed with the order lines", b.name);
        }
    }
    assert_rollups_as_defined(&wh, &builds).await;

    // Then opportunities: the registrations' rollup (whose funnel looks their opportunity's
    // stage up) is built again, though no registration changed.
    let day2 = tmp.path().join("day2");
    std::fs::create_dir_all(&day2).unwrap();
    assert!(changed_opportunities(&export, &day2) > 10);
    let told = Steps::default();
    let third = load_telling(&wh, &day2, &builds, &told).await;
    let registrations = engine.rollup_table("registrations_by_partner_month");
    assert_ne!(
        second.rollups[&registrations].delta_version, third.rollups[&registrations].delta_version,
        "the registrations' rollup was kept though the stages it looks up changed"
    );
    assert!(!third.rollups[&registrations].by_slices);
    // The opportunities are one file, which the change rewrites: their rollups are built whole
    // (every row of a rewritten file counts as changed), again equal to their definitions.
    let by_stage = engine.rollup_table("opportunities_by_partner_month");
    assert_ne!(
        second.rollups[&by_stage].delta_version,
        third.rollups[&by_stage].delta_version
    );
    assert!(!third.rollups[&by_stage].by_slices);
    // The load set out to bring it up to date, and says it built it whole instead.
    assert!(told.said("bringing rollup opportunities_by_partner_month up to date"));
    assert!(told.said("rollup opportunities_by_partner_month built whole instead"));
    assert_rollups_as_defined(&wh, &builds).await;
}

/// Writes `lines` (each a partner id, a cost, or None for a direct sale or no cost) as order
/// lines of one new order, copied from the export's first line with a partner: the same
/// customer and product, dated in a month of its own.
fn order_lines(export: &Path, out: &Path, lines: &[(Option<&str>, Option<&str>)]) {
    let mut reader = csv::Reader::from_path(export.join("orders.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let at = |name: &str| header.iter().position(|h| h == name).unwrap();
    let template = reader
        .records()
        .map(|r| r.unwrap())
        .find(|r| !r[at("partner_id")].is_empty())
        .unwrap();
    std::fs::create_dir_all(out).unwrap();
    let mut w = csv::Writer::from_path(out.join("orders.csv")).unwrap();
    w.write_record(&header).unwrap();
    for (n, (partner, cost)) in lines.iter().enumerate() {
        let mut row: Vec<String> = template.iter().map(String::from).collect();
        row[at("order_id")] = "O-DELTA-1".into();
        row[at("line_number")] = (n + 1).to_string();
        row[at("order_date")] = "2031-01-15".into();
        row[at("partner_id")] = partner.unwrap_or_default().into();
        row[at("cost")] = cost.unwrap_or_default().into();
        w.write_record(&row).unwrap();
    }
    w.flush().unwrap();
}

#[tokio::test]
async fn a_rollup_brought_up_to_date_drops_emptied_groups_and_keeps_a_sum_of_no_values_null() {
    let tmp = tempfile::tempdir().unwrap();
    let (export, wh, builds, _) = loaded_in_ten_parts(tmp.path(), 11).await;
    let partner = {
        let mut reader = csv::Reader::from_path(export.join("orders.csv")).unwrap();
        let at = reader
            .headers()
            .unwrap()
            .iter()
            .position(|h| h == "partner_id")
            .unwrap();
        reader
            .records()
            .map(|r| r.unwrap()[at].to_string())
            .find(|p| !p.is_empty())
            .unwrap()
    };
    let engine = Engine::new(model());
    let by_product = engine.rollup_table("orders_by_partner_product_month");
    // The partner's month of January 2031, which no other line is in: whether its margin is
    // NULL, for each row the rollup holds of it.
    let month = |ctx: std::sync::Arc<prism_engine::Session>| {
        let sql = format!(
            "SELECT CASE WHEN gross_margin IS NULL THEN 'null' ELSE 'value' END FROM {by_product} \
             WHERE partner_id = '{partner}' AND order_date = DATE '2031-01-01'"
        );
        async move {
            let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
            let mut out = Vec::new();
            for b in batches {
                let text =
                    arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
                let text = text
                    .as_any()
                    .downcast_ref::<arrow::array::StringArray>()
                    .unwrap();
                out.extend(text.iter().map(|v| v.unwrap().to_string()));
            }
            out
        }
    };
    // Two lines, one with a cost: the month has a margin.
    order_lines(
        &export,
        &tmp.path().join("a"),
        &[(Some(&partner), Some("10.00")), (Some(&partner), None)],
    );
    let v = load(&wh, &tmp.path().join("a"), &builds).await;
    assert!(v.rollups[&by_product].by_slices);
    assert_rollups_as_defined(&wh, &builds).await;
    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    assert_eq!(month(ctx).await, ["value"]);
    // The cost taken away: the month's lines are still there, its margin is a sum of no
    // values, NULL (not 0).
    order_lines(
        &export,
        &tmp.path().join("b"),
        &[(Some(&partner), None), (Some(&partner), None)],
    );
    let v = load(&wh, &tmp.path().join("b"), &builds).await;
    assert!(v.rollups[&by_product].by_slices);
    assert_rollups_as_defined(&wh, &builds).await;
    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    assert_eq!(month(ctx).await, ["null"], "the margin of no costed line");
    // Both lines made direct sales: the partner's month is gone.
    order_lines(
        &export,
        &tmp.path().join("c"),
        &[(None, None), (None, None)],
    );
    let v = load(&wh, &tmp.path().join("c"), &builds).await;
    assert!(v.rollups[&by_product].by_slices);
    assert_rollups_as_defined(&wh, &builds).await;
    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    assert_eq!(
        month(ctx).await,
        Vec::<String>::new(),
        "the partner's month is gone"
    );
}
