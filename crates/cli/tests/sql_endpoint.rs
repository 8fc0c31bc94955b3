//! The SQL endpoint as a psql user meets it: `prism serve --sql-addr`, sign-in as an app user,
//! `\dt` and `\d sales`, and questions whose answers equal `prism query --format csv` for the
//! same question and scope. Needs `psql` (Debian's postgresql-client; `scripts/test` installs it).

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse battery";

fn prism(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prism"))
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

fn add_user(data: &Path, args: &[&str]) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_prism"))
        .arg("--data")
        .arg(data)
        .args(["users", "add"])
        .args(args)
        .arg("--password-stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    assert!(child.wait().unwrap().success(), "users add {args:?}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The running server, stopped when the test ends however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `prism serve` with the SQL endpoint (and these flags), once it listens: the server and the
/// endpoint's port.
fn serve(data: &Path, flags: &[String]) -> (Server, u16) {
    let (web, sql) = (free_port(), free_port());
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_prism"))
            .arg("--data")
            .arg(data)
            .args(["serve", "--addr", &format!("127.0.0.1:{web}")])
            .args(["--sql-addr", &format!("127.0.0.1:{sql}")])
            .args(flags)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", sql)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the SQL endpoint never listened"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (server, sql)
}

fn psql(port: u16, user: &str, password: &str, commands: &[&str]) -> Output {
    let mut c = Command::new("psql");
    c.env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", user])
        .args(["-d", "prism", "-X", "--csv", "-t", "-v", "ON_ERROR_STOP=1"]);
    for cmd in commands {
        c.args(["-c", cmd]);
    }
    c.output()
        .expect("psql is missing: install postgresql-client (scripts/test does)")
}

fn csv_rows(text: &str, skip_header: bool) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(skip_header)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

/// Two answers agree when every cell is the same text, or the same number to 12 digits (a
/// float's last digits are the wire encoder's, not the figure's).
fn same(a: &[Vec<String>], b: &[Vec<String>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.len() == y.len()
                && x.iter().zip(y).all(|(p, q)| {
                    p == q
                        || matches!((p.parse::<f64>(), q.parse::<f64>()),
                            (Ok(u), Ok(v)) if (u - v).abs() <= 1e-12 * u.abs().max(v.abs()))
                })
        })
}

#[test]
fn psql_asks_as_an_executive_and_as_a_partner_and_gets_what_prism_query_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny");
    let out = prism(&data, &["load", fixture.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    add_user(&data, &["exec", "--role", "channel_executive"]);
    add_user(
        &data,
        &["partner", "--role", "partner_manager", "--partner", "P-2"],
    );

    let (_server, sql) = serve(&data, &[]);

    // The catalog: one table per subject area, with dimensions and metrics as columns.
    let out = psql(sql, "partner", PASSWORD, &["\\dt"]);
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for table in ["sales", "pipeline", "service", "satisfaction"] {
        assert!(
            listing.contains(&format!(",{table},")),
            "{table} in {listing}"
        );
    }
    assert!(!listing.contains(",orders,"), "{listing}");
    let out = psql(sql, "exec", PASSWORD, &["\\d sales"]);
    let described = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(described.contains("partner_tier"), "{described}");
    assert!(described.contains("closed_revenue,numeric"), "{described}");
    assert!(described.contains("time_day,date"), "{described}");

    // The same questions over SQL and over `prism query`, in both scopes.
    let questions: &[(&str, &[&str])] = &[
        (
            "SELECT partner_partner_id, closed_revenue, units_sold FROM sales GROUP BY 1 ORDER BY 1",
            &[
                "--metrics",
                "closed_revenue,units_sold",
                "--by",
                "partner.partner_id",
                "--order",
                "partner.partner_id",
            ],
        ),
        (
            "SELECT partner_tier, SUM(win_rate), open_pipeline FROM pipeline GROUP BY partner_tier ORDER BY partner_tier",
            &[
                "--metrics",
                "win_rate,open_pipeline",
                "--by",
                "partner.tier",
                "--order",
                "partner.tier",
            ],
        ),
        (
            "SELECT time_month, MEASURE(gross_margin_pct) FROM sales WHERE time_day BETWEEN '2024-01-01' AND '2024-03-31' AND partner_region = 'EMEA' GROUP BY 1 ORDER BY 1",
            &[
                "--metrics",
                "gross_margin_pct",
                "--by",
                "time.month",
                "--filter",
                "partner.region=EMEA",
                "--period",
                "2024-01-01..2024-03-31",
                "--order",
                "time.month",
            ],
        ),
        (
            "SELECT customer_industry, csat_avg FROM satisfaction GROUP BY 1 ORDER BY 1",
            &[
                "--metrics",
                "csat_avg",
                "--by",
                "customer.industry",
                "--order",
                "customer.industry",
            ],
        ),
    ];
    for (user, scope) in [("exec", None), ("partner", Some("P-2"))] {
        for (sql_text, args) in questions {
            let out = psql(sql, user, PASSWORD, &[sql_text]);
            assert!(
                out.status.success(),
                "{user}: {sql_text}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let over_sql = csv_rows(&String::from_utf8_lossy(&out.stdout), false);
            let mut query_args = vec!["query", "--format", "csv"];
            query_args.extend_from_slice(args);
            if let Some(p) = scope {
                query_args.extend(["--as-partner", p]);
            }
            let cli = prism(&data, &query_args);
            assert!(
                cli.status.success(),
                "{}",
                String::from_utf8_lossy(&cli.stderr)
            );
            let over_cli = csv_rows(&String::from_utf8_lossy(&cli.stdout), true);
            assert!(
                same(&over_sql, &over_cli),
                "{user}: {sql_text}\nSQL: {over_sql:?}\nprism query: {over_cli:?}"
            );
        }
    }

    // By hand from fixtures/tiny: P-1 sold 2400 + 99.50, P-2 returned 49.75, and a direct
    // sale of 1200. The partner user sees its own row only, even when it names another.
    let answer = |user: &str, q: &str| {
        let out = psql(sql, user, PASSWORD, &[q]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        csv_rows(&String::from_utf8_lossy(&out.stdout), false)
    };
    let q = "SELECT partner_partner_id, closed_revenue FROM sales GROUP BY 1 ORDER BY 1";
    assert_eq!(
        answer("exec", q),
        [
            ["(direct)", "1200.00"],
            ["P-1", "2499.50"],
            ["P-2", "-49.75"]
        ]
    );
    assert_eq!(answer("partner", q), [["P-2", "-49.75"]]);
    assert!(
        answer(
            "partner",
            "SELECT closed_revenue FROM sales WHERE partner_partner_id = 'P-1'"
        )
        .iter()
        .all(|r| r.iter().all(String::is_empty)),
        "another partner's id in WHERE answers nothing"
    );

    let out = psql(sql, "exec", "wrong password", &["SELECT 1"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("password authentication failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// With a certificate and key, the endpoint speaks TLS: psql requiring it connects, is told
/// it is encrypted, and gets the same answer (by hand: 2 499.50 - 49.75 + 1 200.00).
#[test]
fn psql_connects_over_tls_when_the_endpoint_has_a_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny");
    assert!(
        prism(&data, &["load", fixture.to_str().unwrap()])
            .status
            .success()
    );
    add_user(&data, &["exec", "--role", "channel_executive"]);
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl makes the test's certificate");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    let tls = [
        "--sql-tls-cert".to_string(),
        cert.display().to_string(),
        "--sql-tls-key".to_string(),
        key.display().to_string(),
    ];
    let (_server, sql) = serve(&data, &tls);
    let out = Command::new("psql")
        .env("PGPASSWORD", PASSWORD)
        .env("PGSSLMODE", "require")
        .env("PGCONNECT_TIMEOUT", "10")
        .args(["-h", "127.0.0.1", "-p", &sql.to_string(), "-U", "exec"])
        .args(["-d", "prism", "-X", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(["-c", "\\conninfo", "-c", "SELECT closed_revenue FROM sales"])
        .output()
        .expect("psql is missing: install postgresql-client (scripts/test does)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // psql names the protocol in its connection info (TLSv1.3), whatever its version's layout.
    assert!(stdout.to_lowercase().contains("tlsv1"), "{stdout}");
    assert!(stdout.contains("3649.75"), "{stdout}");
}
