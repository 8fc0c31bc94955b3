//! A warehouse on an S3-compatible server (moto, started on loopback; `scripts/test` installs
//! it): a load, answers equal to the hand figures of the tiny fixture, time travel, the report
//! kept in the bucket, and the load lock as a lease that works across machines — a live lease
//! refuses a second load and changes nothing, an expired one (its load died) is taken over.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_server() -> PathBuf {
    if let Some(p) = std::env::var_os("PRISM_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("moto_server"))
        .find(|p| p.exists())
        .expect("no moto_server: install PyPI's moto[server] (scripts/test does) or set PRISM_MOTO_SERVER")
}

/// Sends one plain HTTP request to the server and returns its status line.
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

fn start() -> Moto {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(moto_server())
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let moto = Moto { child, port };
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let created = http(port, "PUT", "/prism-test", b"");
            assert!(created.starts_with("HTTP/1.1 200"), "{created}");
            return moto;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("moto_server did not start on port {port}");
}

fn prism(moto: &Moto, state: &Path, args: &[&str]) -> Output {
    prism_at(moto, state, "s3://prism-test/warehouse", args)
}

fn prism_at(moto: &Moto, state: &Path, data: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(args)
        .args([
            "--data",
            data,
            "--state",
            state.to_str().unwrap(),
            "--storage-option",
            &format!("aws_endpoint=http://127.0.0.1:{}", moto.port),
            "--storage-option",
            "aws_allow_http=true",
        ])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn fixture() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/tiny").to_string()
}

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
