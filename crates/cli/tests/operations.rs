//! What an operator runs: settings in `prism.toml` (weaker than the environment and the
//! command line, a bad key refused by name), a server that answers its health checks, logs
//! requests as JSON lines when asked, and stops gracefully on SIGTERM.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn prism(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_prism"));
    c.args(args)
        .env_remove("PRISM_DATA")
        .env_remove("PRISM_CONFIG");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn loaded(dir: &Path) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny");
    let out = Command::new(env!("CARGO_BIN_EXE_prism"))
        .arg("--data")
        .arg(dir)
        .arg("load")
        .arg(fixture)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The fixture's closed revenue: 2 499.50 (P-1) + 1 200.00 (direct) − 49.75 (P-2).
const TOTAL: &str = "$3,649.75";

#[test]
fn a_config_file_is_weaker_than_the_environment_and_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (loaded_dir, empty_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    loaded(&loaded_dir);
    std::fs::create_dir_all(&empty_dir).unwrap();
    let config = tmp.path().join("prism.toml");
    std::fs::write(
        &config,
        format!(
            "data = {:?}\nidle-minutes = 30\n",
            loaded_dir.to_str().unwrap()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let query = ["--config", cfg, "query", "--metrics", "closed_revenue"];
    let out = prism(&query, &[]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains(TOTAL), "the file's data folder: {said}");
    // The environment overrides the file, the command line both.
    let out = prism(&query, &[("PRISM_DATA", &empty_dir)]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(TOTAL));
    let mut flagged = vec!["--data", empty_dir.to_str().unwrap()];
    flagged.extend(query);
    let out = prism(&flagged, &[]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(TOTAL));
    // PRISM_CONFIG names the file too.
    let out = prism(&query[2..], &[("PRISM_CONFIG", &config)]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(TOTAL));

    // A key that is no setting is refused by name, and nothing runs.
    std::fs::write(&config, "idle-minute = 30\n").unwrap();
    let out = prism(&query, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("`idle-minute` is not a setting of `prism serve`")
            && err.contains("did you mean `idle-minutes`"),
        "{err}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A GET over a fresh connection: the status code and the body.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

#[test]
fn the_server_answers_its_health_checks_logs_json_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    loaded(&data);
    let port = free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_prism"))
        .arg("--data")
        .arg(&data)
        .args(["--log-format", "json", "serve"])
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .env("PRISM_LOG", "warn,prism::http=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let health = loop {
        if let Some(r) = http_get(port, "/healthz") {
            break r;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "never listened");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(health, (200, "ok\n".to_string()));
    assert_eq!(
        http_get(port, "/readyz").unwrap(),
        (200, "ready: warehouse version 1\n".to_string())
    );
    let (status, metrics) = http_get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("prism_warehouse_version 1"), "{metrics}");

    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = server.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "stopped by SIGTERM: {status}");
    let mut logs = String::new();
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    // One JSON object per line, each request by its route.
    let requests: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "request")
        .collect();
    assert!(
        requests
            .iter()
            .any(|v| v["fields"]["route"] == "/readyz" && v["fields"]["status"] == 200),
        "{logs}"
    );
}
