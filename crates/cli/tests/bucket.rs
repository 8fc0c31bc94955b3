//! A warehouse on an S3-compatible server (moto, started on loopback; `scripts/test` installs
//! it): a load, answers equal to the hand figures of the tiny fixture, time travel, the report
//! kept in the bucket, and the load lock as a lease that works across machines — a live lease
//! refuses a second load and changes nothing, an expired one (its load died) is taken over.

mod common;

use std::path::Path;

use common::{Moto, fixture, http, ok, prism, prism_at, start};

fn total(moto: &Moto, state: &Path, extra: &[&str]) -> String {
    let mut args = vec!["query", "--metrics", "closed_revenue", "--format", "csv"];
    args.extend_from_slice(extra);
    ok(prism(moto, state, &args))
}

fn lease(holder: &str, expires_at: &str) -> Vec<u8> {
    format!(r#"{{"holder":"{holder}","host":"other","pid":1,"expires_at":"{expires_at}"}}"#)
        .into_bytes()
}

#[test]
fn a_warehouse_on_a_bucket_loads_answers_travels_in_time_and_locks_across_machines() {
    let moto = start();
    let state = tempfile::tempdir().unwrap();
    let state = state.path();

    // A load into the bucket, and the fixture's hand-computed total (P-1 2499.50, P-2 -49.75,
    // direct 1200.00) read back from it.
    let loaded = ok(prism(&moto, state, &["load", &fixture()]));
    assert!(loaded.contains("committed warehouse version 1"), "{loaded}");
    assert!(
        loaded.contains("report: s3://prism-test/warehouse/loads/"),
        "the report is kept in the bucket: {loaded}"
    );
    assert_eq!(total(&moto, state, &[]), "closed_revenue\n3649.75\n");
    let by_tier = ok(prism(
        &moto,
        state,
        &[
            "query",
            "--metrics",
            "closed_revenue",
            "--by",
            "partner.tier",
            "--format",
            "csv",
        ],
    ));
    assert!(by_tier.contains("Gold,2499.50"), "{by_tier}");
    assert!(by_tier.contains("Silver,-49.75"), "{by_tier}");

    // A model of one's own is read from the state folder (the bucket holds data only): the
    // tiny fixture has 4 order lines.
    std::fs::write(
        state.join("model.yaml"),
        "metrics:\n  lines: { fact: orders, count: \"*\", format: integer }\n",
    )
    .unwrap();
    let lines = ok(prism(
        &moto,
        state,
        &["query", "--metrics", "lines", "--format", "csv"],
    ));
    assert_eq!(lines, "lines\n4\n");

    // A live lease of another machine's load: refused, and nothing changes.
    let far = "2999-01-01T00:00:00.000Z";
    let planted = http(
        moto.port,
        "PUT",
        "/prism-test/warehouse/.lock",
        &lease("other-load", far),
    );
    assert!(planted.starts_with("HTTP/1.1 200"), "{planted}");
    let refused = prism(&moto, state, &["load", &fixture()]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("another load is running on s3://prism-test/warehouse")
            && err.contains("other-load"),
        "{err}"
    );
    let status = ok(prism(&moto, state, &["status"]));
    assert!(status.contains("version 1 (current)"), "{status}");

    // Time travel: version 1 answers as it did, and a version that does not exist is named.
    assert_eq!(
        total(&moto, state, &["--as-of", "1"]),
        "closed_revenue\n3649.75\n"
    );

    // An expired lease (its load died without releasing it) is taken over. (moto refuses an
    // unsigned overwrite, so this lease is planted under a prefix of its own.)
    let other = "s3://prism-test/other";
    let planted = http(
        moto.port,
        "PUT",
        "/prism-test/other/.lock",
        &lease("dead-load", "2000-01-01T00:00:00.000Z"),
    );
    assert!(planted.starts_with("HTTP/1.1 200"), "{planted}");
    let taken = ok(prism_at(&moto, state, other, &["load", &fixture()]));
    assert!(taken.contains("committed warehouse version 1"), "{taken}");
    // Released at the end (its lease would run another minute): the next load goes ahead.
    let next = ok(prism_at(&moto, state, other, &["load", &fixture()]));
    assert!(next.contains("committed warehouse version 2"), "{next}");
    let history = ok(prism_at(&moto, state, other, &["status"]));
    assert!(history.contains("version 2 (current)"), "{history}");

    // Quarantine on a bucket: a new order line with a quantity of 0 is set aside, the rest
    // loads, and the rejected row is kept in the bucket beside the report.
    let export = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), export.path().join(entry.file_name())).unwrap();
    }
    let orders = export.path().join("orders.csv");
    let mut text = std::fs::read_to_string(&orders).unwrap();
    text.push_str("O-9,1,C-1,PR-1,P-1,2024-01-11,0,10.00,5.00,\n");
    std::fs::write(&orders, text).unwrap();
    let quarantined = ok(prism_at(
        &moto,
        state,
        other,
        &["load", export.path().to_str().unwrap(), "--quarantine"],
    ));
    assert!(
        quarantined.contains("committed warehouse version 3"),
        "{quarantined}"
    );
    assert!(
        quarantined.contains("rejected rows were set aside in s3://prism-test/other/loads/"),
        "the rejected rows are kept in the bucket: {quarantined}"
    );
    // The rejected line added nothing: the total is the fixture's.
    let after = ok(prism_at(
        &moto,
        state,
        other,
        &["query", "--metrics", "closed_revenue", "--format", "csv"],
    ));
    assert_eq!(after, "closed_revenue\n3649.75\n");
}

/// The closed revenue of the warehouse at `data`, as CSV.
fn total_at(moto: &Moto, state: &Path, data: &str) -> String {
    ok(prism_at(
        moto,
        state,
        data,
        &["query", "--metrics", "closed_revenue", "--format", "csv"],
    ))
}

#[test]
fn two_loads_at_once_on_a_bucket_one_wins_and_a_killed_load_changes_nothing() {
    let moto = start();
    let state = tempfile::tempdir().unwrap();
    let state = state.path();
    let data = "s3://prism-test/race";
    let export = tempfile::tempdir().unwrap();
    let export = export.path().join("export");
    let generated = std::process::Command::new(env!("CARGO_BIN_EXE_prism"))
        .args([
            "generate",
            "--scale",
            "0.02",
            "--out",
            export.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    ok(generated);
    let export = export.to_str().unwrap();
    ok(prism_at(&moto, state, data, &["load", &fixture()]));

    // Two machines load at the same moment: one holds the lease and commits version 2, the
    // other is refused and says why; nothing is lost or half-applied.
    let spawn = || {
        common::prism_command(&moto, state, data, &["load", export])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let outcomes = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let won: Vec<_> = outcomes.iter().filter(|o| o.status.success()).collect();
    let lost: Vec<_> = outcomes.iter().filter(|o| !o.status.success()).collect();
    assert_eq!((won.len(), lost.len()), (1, 1), "{outcomes:?}");
    assert!(
        String::from_utf8_lossy(&won[0].stdout).contains("committed warehouse version 2"),
        "{:?}",
        won[0]
    );
    let why = String::from_utf8_lossy(&lost[0].stderr);
    assert!(
        why.contains("another load is running on s3://prism-test/race"),
        "{why}"
    );
    let status = ok(prism_at(&moto, state, data, &["status"]));
    assert!(status.contains("version 2 (current)"), "{status}");
    let before = total_at(&moto, state, data);

    // A load killed while it runs (its lease is in the bucket): the warehouse answers as before;
    // once its lease has expired, the next load takes over and commits version 3.
    let mut killed = common::prism_command(&moto, state, data, &["load", export])
        .env("PRISM_LOAD_LEASE_SECONDS", "3")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut leased = false;
    for _ in 0..200 {
        // The lease is private to its writer's keys: an anonymous read of it is refused (403),
        // of no lease at all answered 404.
        if !http(moto.port, "GET", "/prism-test/race/.lock", b"").starts_with("HTTP/1.1 404") {
            leased = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert!(leased, "the load never took its lease");
    let status = ok(prism_at(&moto, state, data, &["status"]));
    assert!(status.contains("version 2 (current)"), "{status}");
    assert_eq!(total_at(&moto, state, data), before);
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let next = ok(prism_at(&moto, state, data, &["load", export]));
    assert!(next.contains("committed warehouse version 3"), "{next}");
    // The same export again, upserted: the same figures.
    assert_eq!(total_at(&moto, state, data), before);
}
