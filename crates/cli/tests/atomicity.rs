//! A load killed at any point leaves the previous warehouse version current and readable,
//! exactly as it was, and the next load succeeds.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use prism_engine::{Audience, Engine, Query};
use prism_generator::{GenerateConfig, generate};
use prism_model::Model;
use prism_warehouse::Warehouse;

fn prism(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_prism"));
    c.arg("--data")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// What a reader sees: the current version, and per table its row count and a checksum.
fn reader_view(data: &Path) -> String {
    let wh = Warehouse::open(data).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let snapshot = wh.snapshot(None).unwrap();
        let ctx = snapshot.session().await.unwrap();
        let mut out = format!("version {}\n", snapshot.version.version);
        for (sql, name) in [
            (
                "SELECT COUNT(*), SUM(revenue), SUM(quantity) FROM orders",
                "orders",
            ),
            (
                "SELECT COUNT(*), SUM(amount) FROM opportunities",
                "opportunities",
            ),
            (
                "SELECT COUNT(*), MIN(partner_id), MAX(partner_name) FROM partners",
                "partners",
            ),
            ("SELECT COUNT(*) FROM customers", "customers"),
            ("SELECT COUNT(*) FROM products", "products"),
            (
                "SELECT COUNT(*), SUM(score) FROM satisfaction_surveys",
                "surveys",
            ),
            (
                "SELECT COUNT(*), COUNT(resolved_at) FROM service_requests",
                "service_requests",
            ),
        ] {
            let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
            out.push_str(&format!(
                "{name}: {}\n",
                arrow::util::pretty::pretty_format_batches(&batches).unwrap()
            ));
        }
        // The rollups of the version read as the base tables do: built in the same version,
        // never one load behind or ahead of them.
        assert!(
            !snapshot.version.rollups.is_empty(),
            "version {} has no rollups",
            snapshot.version.version
        );
        let rolled = Engine::new(Model::shipped());
        let base = Engine::new(Model::shipped()).without_rollups();
        for (metrics, by) in [
            (
                "closed_revenue,units_sold,gross_margin_pct",
                "partner.tier,time.quarter",
            ),
            ("open_pipeline,win_rate", "opportunity.stage"),
            ("csat_avg", "time.month"),
            ("sr_count,sla_met_pct", "service_request.priority"),
        ] {
            let q = Query {
                metrics: metrics.split(',').map(String::from).collect(),
                by: by.split(',').map(String::from).collect(),
                ..Query::default()
            };
            let compiled = rolled.compile_in(&ctx, &q, &Audience::everyone()).unwrap();
            assert!(
                compiled.rollups.iter().all(|c| c.rollup.is_some()),
                "no rollup answered {metrics} by {by}: {:?}",
                compiled.rollups
            );
            let answer = rolled
                .run(&ctx, &q, &Audience::everyone())
                .await
                .unwrap()
                .formatted_rows();
            assert_eq!(
                answer,
                base.run(&ctx, &q, &Audience::everyone())
                    .await
                    .unwrap()
                    .formatted_rows(),
                "{metrics} by {by} in version {}",
                snapshot.version.version
            );
            out.push_str(&format!("{metrics} by {by}: {answer:?}\n"));
        }
        out
    })
}

fn without_version(view: &str) -> &str {
    view.split_once('\n').map_or(view, |(_, rest)| rest)
}

#[test]
fn a_load_killed_at_any_point_leaves_the_previous_version_and_the_next_load_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let small = tmp.path().join("small");
    let big = tmp.path().join("big");
    generate(&GenerateConfig {
        out: small.clone(),
        scale: 0.01,
        seed: 1,
        partners: None,
        customers: None,
    })
    .unwrap();
    let big_summary = generate(&GenerateConfig {
        out: big.clone(),
        scale: 0.25,
        seed: 2,
        partners: None,
        customers: None,
    })
    .unwrap();

    let data = tmp.path().join("data");
    assert!(
        prism(&data)
            .arg("load")
            .arg(&small)
            .status()
            .unwrap()
            .success()
    );
    let mut before = reader_view(&data);
    assert!(before.starts_with("version 1\n"));
    let mut version = 1;

    // How long an undisturbed load of the big export takes, to spread the kills over it.
    let timing = tmp.path().join("timing");
    assert!(
        prism(&timing)
            .arg("load")
            .arg(&small)
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    assert!(
        prism(&timing)
            .arg("load")
            .arg("--replace")
            .arg(&big)
            .status()
            .unwrap()
            .success()
    );
    let full = started.elapsed();
    let complete = reader_view(&timing);

    let mut killed = 0;
    for fraction in [0.02, 0.1, 0.25, 0.4, 0.55, 0.7, 0.8, 0.9, 0.95, 0.99] {
        let mut child = prism(&data)
            .arg("load")
            .arg("--replace")
            .arg(&big)
            .spawn()
            .unwrap();
        std::thread::sleep(full.mul_f64(fraction));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // A reader sees either the version before, exactly, or, when the kill came after the
        // switch, the whole new load: never anything in between.
        let view = reader_view(&data);
        if view == before {
            killed += 1;
            continue;
        }
        version += 1;
        assert_eq!(
            without_version(&view),
            without_version(&complete),
            "after a kill at {:.0} % of a load",
            fraction * 100.0
        );
        assert!(view.starts_with(&format!("version {version}\n")));
        before = view;
    }
    assert!(
        killed >= 5,
        "only {killed} loads were killed before they finished"
    );

    // The next load puts back what the killed ones left and commits.
    let out = Command::new(env!("CARGO_BIN_EXE_prism"))
        .arg("--data")
        .arg(&data)
        .args(["load", "--replace"])
        .arg(&big)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = Command::new(env!("CARGO_BIN_EXE_prism"))
        .arg("--data")
        .arg(&data)
        .args(["status", "--format", "json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["current_version"], version + 1);
    for (entity, rows) in &big_summary.rows {
        assert_eq!(status["tables"][entity.name()], *rows, "{entity}");
    }
    // And the version before is still there to read.
    let v1 = Warehouse::open(&data).unwrap().snapshot(Some(1)).unwrap();
    assert_eq!(
        v1.table_rows()["orders"],
        Warehouse::open(tmp.path().join("timing"))
            .unwrap()
            .snapshot(Some(1))
            .unwrap()
            .table_rows()["orders"]
    );
}
