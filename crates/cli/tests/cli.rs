//! The CLI as a user meets it: exit codes, what is printed, and the generate → load → status
//! round trip.

use std::path::Path;
use std::process::{Command, Output};

fn prism(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prism"))
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

/// A fresh data folder (kept while the returned directory lives) with the tiny fixture loaded.
fn tiny_loaded() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny");
    assert!(
        prism(&data, &["load", fixture.to_str().unwrap()])
            .status
            .success()
    );
    (tmp, data)
}

#[test]
fn a_rejected_load_exits_2_and_says_where_and_why() {
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join("export");
    prism_generator::generate(&prism_generator::GenerateConfig {
        out: export.clone(),
        scale: 0.01,
        seed: 3,
        partners: None,
        customers: None,
    })
    .unwrap();
    // Break line 3 of orders.csv: quantity (column 7) becomes 0.
    let orders = std::fs::read_to_string(export.join("orders.csv")).unwrap();
    let mut lines: Vec<String> = orders.lines().map(str::to_string).collect();
    let mut fields: Vec<String> = lines[2].split(',').map(str::to_string).collect();
    fields[6] = "0".into();
    lines[2] = fields.join(",");
    std::fs::write(export.join("orders.csv"), lines.join("\n") + "\n").unwrap();

    let data = tmp.path().join("data");
    let out = prism(&data, &["load", export.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("orders.csv:3:7 (quantity): quantity must be greater than 0, found 0"),
        "{stderr}"
    );
    assert!(stderr.contains("the warehouse is unchanged"), "{stderr}");
    let status = String::from_utf8_lossy(&prism(&data, &["status"]).stdout).to_string();
    assert!(status.contains("the warehouse is empty"), "{status}");
}

#[test]
fn generate_then_load_then_status_agree_on_every_count() {
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join("export");
    let data = tmp.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_prism"))
        .args([
            "generate",
            "--out",
            export.to_str().unwrap(),
            "--scale",
            "0.02",
            "--seed",
            "11",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    // The generator's own summary: "orders.csv    12345 rows".
    let generated: Vec<(String, u64)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            (parts.len() == 3 && parts[2] == "rows").then(|| {
                (
                    parts[0].trim_end_matches(".csv").to_string(),
                    parts[1].parse().unwrap(),
                )
            })
        })
        .collect();
    assert_eq!(generated.len(), 11);

    let load = prism(
        &data,
        &["load", export.to_str().unwrap(), "--format", "json"],
    );
    assert!(load.status.success());
    let report: serde_json::Value = serde_json::from_slice(&load.stdout).unwrap();
    let phase = |name: &str| report["phases"][name].as_u64().unwrap();
    // The stages run one after the other inside the load's time; inside staging, one file at a
    // time is read and written by one thread each, while checking is spread over several.
    let stages: u64 = [
        "warehouse_keys_ms",
        "staging_ms",
        "committing_ms",
        "rollups_ms",
        "switching_ms",
    ]
    .iter()
    .map(|p| phase(p))
    .sum();
    assert!(stages <= phase("total_ms"), "{}", report["phases"]);
    for one_thread in ["reading_ms", "ordering_ms", "writing_ms"] {
        assert!(
            phase(one_thread) <= phase("staging_ms"),
            "{}",
            report["phases"]
        );
    }
    assert!(
        phase("staging_ms") > 0 && phase("rollups_ms") > 0,
        "{}",
        report["phases"]
    );
    assert!(
        phase("checking_ms") + phase("writing_ms") > 0,
        "{}",
        report["phases"]
    );
    let status: serde_json::Value =
        serde_json::from_slice(&prism(&data, &["status", "--format", "json"]).stdout).unwrap();
    assert_eq!(status["current_version"], 1);
    for (table, rows) in &generated {
        assert_eq!(status["tables"][table], *rows, "{table}");
        assert_eq!(
            status["history"][0]["changes"][table]["added"], *rows,
            "{table}"
        );
    }

    // The same seed writes the same bytes.
    let again = tmp.path().join("again");
    Command::new(env!("CARGO_BIN_EXE_prism"))
        .args([
            "generate",
            "--out",
            again.to_str().unwrap(),
            "--scale",
            "0.02",
            "--seed",
            "11",
        ])
        .output()
        .unwrap();
    for (table, _) in &generated {
        let a = std::fs::read(export.join(format!("{table}.csv"))).unwrap();
        let b = std::fs::read(again.join(format!("{table}.csv"))).unwrap();
        assert!(
            a == b,
            "{table}.csv differs between two runs with the same seed"
        );
    }
}

#[test]
fn a_query_answers_as_table_csv_and_versioned_json_with_exact_money() {
    let (_tmp, data) = tiny_loaded();
    let ask = |format: &str, extra: &[&str]| {
        let mut args = vec![
            "query",
            "--metrics",
            "closed_revenue,order_count,win_rate",
            "--by",
            "partner.partner_id",
            "--format",
            format,
        ];
        args.extend_from_slice(extra);
        let out = prism(&data, &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // Hand-computed from fixtures/tiny (see crates/engine/tests/cases): P-1 2400 + 99.50, P-2 a credit.
    assert_eq!(
        ask("csv", &[]),
        "partner.partner_id,closed_revenue,order_count,win_rate\n(direct),1200.00,1,1.0\nP-1,2499.50,1,\nP-2,-49.75,1,0.0\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ask("json", &["--as-partner", "P-1"])).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "api_version": 1,
            "columns": [
                {"name": "partner.partner_id", "kind": "dimension"},
                {"name": "closed_revenue", "kind": "money"},
                {"name": "order_count", "kind": "integer"},
                {"name": "win_rate", "kind": "ratio"}
            ],
            "rows": [{"partner.partner_id": "P-1", "closed_revenue": "2499.50", "order_count": 1, "win_rate": null}]
        })
    );
    let table = ask("table", &[]);
    assert!(
        table.lines().nth(2).unwrap().starts_with("(direct)"),
        "{table}"
    );
    assert!(table.ends_with("(3 rows)\n"), "{table}");
    // A table is for a person: each figure by its kind (by hand from the CSV above: money
    // grouped with its currency, a ratio as a percentage, no closed deal as a dash).
    let line = |id: &str| {
        table
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("no {id} in {table}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(line("(direct)"), "(direct) $1,200.00 1 100.0 %");
    assert_eq!(line("P-1"), "P-1 $2,499.50 1 —");
    assert_eq!(line("P-2"), "P-2 -$49.75 1 0.0 %");
    // CSV for people: the model's labels over the same exact figures.
    assert_eq!(
        ask("csv", &["--headers", "labels"]),
        "Partner id,Closed revenue,Orders,Win rate\n(direct),1200.00,1,1.0\nP-1,2499.50,1,\nP-2,-49.75,1,0.0\n"
    );

    // Only two partners sold: the channel benchmark withholds the figure and says why.
    let out = prism(
        &data,
        &[
            "query",
            "--metrics",
            "closed_revenue",
            "--benchmark",
            "--format",
            "csv",
        ],
    );
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "closed_revenue,benchmark_partners\n,2\n"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("figures over fewer than 5 partners are withheld")
    );

    // A mistake says what and where, and exits 1 without an answer.
    let out = prism(&data, &["query", "--metrics", "closed_revnue"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no metric `closed_revnue`; did you mean `closed_revenue`?")
    );
}

#[test]
fn analyses_print_program_lists_and_refuse_a_partner_user_another_partner() {
    let (_tmp, data) = tiny_loaded();
    // Partner revenue: P-1 2499.50 and P-2's credit of -49.75, 2449.75 in all; the direct sale
    // takes no part and P-3 (inactive, no revenue) is not listed. P-1 alone reaches 80 %. The
    // CSV keeps every digit of its share (100 × 2499.50 / 2449.75 = 102.03081947137463, as
    // Python prints it); the table rounds it.
    let out = prism(&data, &["pareto", "--class", "A", "--format", "csv"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "partner_id,partner_name,tier,partner_type,region,closed_revenue,share_pct,cumulative_pct,class\nP-1,\"Acme, \"\"Best\"\" Partners\",Gold,Reseller,EMEA,2499.50,102.03081947137463,102.03081947137463,A\n"
    );
    let table = String::from_utf8_lossy(&prism(&data, &["pareto"]).stdout).to_string();
    assert!(
        table.starts_with(
            "1 partner, 50.0 % of the 2 active partners, bring 80 % of partner revenue\n"
        ),
        "{table}"
    );
    let p1 = table.lines().find(|l| l.contains("P-1")).unwrap();
    assert!(
        p1.contains(" 102.0 ") && !p1.contains("102.03"),
        "the table rounds the share to one decimal: {p1}"
    );
    // Money in the table is for reading: grouped, with the currency; a credit keeps its sign.
    assert!(p1.contains(" $2,499.50 "), "{p1}");
    let p2 = table.lines().find(|l| l.contains("P-2")).unwrap();
    assert!(p2.contains(" -$49.75 "), "{p2}");

    let out = prism(
        &data,
        &["products", "--as-partner", "P-2", "--partner", "P-1"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("partner P-1: a partner user sees only their own partner (P-2)")
    );
    assert!(out.stdout.is_empty());

    let json: serde_json::Value = serde_json::from_slice(
        &prism(
            &data,
            &["pareto", "--as-partner", "P-2", "--format", "json"],
        )
        .stdout,
    )
    .unwrap();
    let ids: Vec<&str> = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["partner_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["P-2"]);
}

/// A printing command whose reader stops early (`prism status | head`) stops quietly and
/// successfully, as reading on was not wanted: `println!` panicked there with "failed printing
/// to stdout" (Rust ignores SIGPIPE, so the write fails instead of ending the process).
#[test]
fn a_printing_command_ends_quietly_when_its_reader_stops() {
    let (tmp, data) = tiny_loaded();
    let generated = tmp.path().join("generated");
    for args in [
        &["status"][..],
        &["model", "--all"],
        &["users", "list"],
        &[
            "generate",
            "--out",
            generated.to_str().unwrap(),
            "--scale",
            "0.001",
        ],
        &[
            "explain",
            "--metrics",
            "closed_revenue",
            "--by",
            "partner.tier",
        ],
        &["scorecard"],
    ] {
        // A pipe whose reading end is closed before the command starts: its first line
        // already finds no reader, whatever the timing.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_prism"))
            .arg("--data")
            .arg(&data)
            .args(args)
            .stdout(writer)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && err.is_empty(),
            "{args:?}: {:?} {err}",
            out.status
        );
    }
    // The export was written before its summary found no reader.
    assert!(generated.join("orders.csv").exists());
}

/// The demo's passwords are published: on an address other machines reach it refuses before
/// doing any work, unless told `--yes`; on loopback it is not asked.
#[test]
fn the_demo_refuses_a_non_loopback_address_without_yes() {
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join("export");
    let out = prism(
        &tmp.path().join("data"),
        &[
            "demo",
            "--addr",
            "0.0.0.0:0",
            "--export",
            export.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("published password") && err.contains("--yes"),
        "{err}"
    );
    assert!(!export.exists(), "nothing was generated");
}

/// `prism alerts` as a script sets alerts up: a bad one refused with the reason and nothing
/// kept, a good one tried, run once (its news in the owner's inbox), and run again without
/// repeating the news. Figures by hand from fixtures/tiny: P-2 closed -49.75.
#[test]
fn alerts_are_set_up_tried_and_run_from_the_command_line() {
    use std::io::Write as _;
    let (_tmp, data) = tiny_loaded();
    let mut child = Command::new(env!("CARGO_BIN_EXE_prism"))
        .arg("--data")
        .arg(&data)
        .args(["users", "add", "exec", "--role", "channel_executive"])
        .args(["--email", "exec@brand.example", "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "a long password").unwrap();
    assert!(child.wait().unwrap().success());

    let refused = |args: &[&str], says: &str| {
        let out = prism(&data, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    };
    let add = ["alerts", "add", "credits", "--owner", "exec"];
    refused(
        &[
            &add[..],
            &[
                "--query",
                "--metrics closed_revenu",
                "--when",
                "closed_revenu < 0",
            ],
        ]
        .concat(),
        "did you mean `closed_revenue`",
    );
    refused(
        &[
            &add[..],
            &[
                "--query",
                "--metrics closed_revenue",
                "--when",
                "closed_revenue about 0",
            ],
        ]
        .concat(),
        "expected METRIC OP NUMBER",
    );
    refused(
        &[&add[..], &["--analysis", "risk", "--on", "0 7 30 2 *"]].concat(),
        "no such time ever comes",
    );
    refused(
        &[
            &add[..],
            &[
                "--analysis",
                "risk",
                "--to",
                "webhook:http://hooks.example.com/x",
            ],
        ]
        .concat(),
        "https://",
    );
    refused(
        &[
            &add[..],
            &[
                "--query",
                "--metrics closed_revenue --as-partner P-1",
                "--when",
                "closed_revenue < 0",
            ],
        ]
        .concat(),
        "owner's scope",
    );
    let listed = prism(&data, &["alerts", "list"]);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("credits"));

    let out = prism(
        &data,
        &[
            &add[..],
            &[
                "--query",
                "--metrics closed_revenue --by partner.partner_id",
                "--when",
                "closed_revenue < 0",
            ],
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tried = prism(&data, &["alerts", "test", "credits", "--owner", "exec"]);
    let tried = String::from_utf8_lossy(&tried.stdout).to_string();
    assert!(tried.starts_with("holds"), "{tried}");
    assert!(tried.contains("P-2 · Müller & Söhne: -49.75"), "{tried}");
    assert!(!tried.contains("P-1"), "{tried}");

    let run = prism(&data, &["alerts", "run"]);
    let run = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(
        run.contains("1 evaluated, 1 news queued, 1 of 1 deliveries sent"),
        "{run}"
    );
    let again = prism(&data, &["alerts", "run"]);
    let again = String::from_utf8_lossy(&again.stdout).to_string();
    assert!(
        again.contains("0 evaluated, 0 news queued, 0 of 0 deliveries sent"),
        "{again}"
    );
    let log = String::from_utf8_lossy(&prism(&data, &["alerts", "log"]).stdout).to_string();
    assert_eq!(log.matches("sent").count(), 1, "{log}");
    let listed = String::from_utf8_lossy(&prism(&data, &["alerts", "list"]).stdout).to_string();
    assert!(listed.contains("holds for P-2"), "{listed}");

    assert!(
        prism(&data, &["alerts", "remove", "credits", "--owner", "exec"])
            .status
            .success()
    );
    let listed = String::from_utf8_lossy(&prism(&data, &["alerts", "list"]).stdout).to_string();
    assert!(!listed.contains("credits"), "{listed}");
}

/// `prism potential ... --create-campaign NAME` plans a campaign from the segment's target
/// list: the list comes out with the new campaign's id on every row, for the CRM, and a second
/// campaign gets an id of its own. A partner user may not plan one for another partner.
#[test]
fn a_campaign_is_planned_from_a_target_list_on_the_command_line() {
    let (_tmp, data) = tiny_loaded();
    let plan = |name: &str| {
        prism(
            &data,
            &[
                "potential",
                "--as-partner",
                "P-2",
                "--product",
                "PR-1",
                "--segment",
                "Financial Services/Mid-Market",
                "--create-campaign",
                name,
            ],
        )
    };
    let out = plan("Spring push");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        "campaign_id,campaign_name,customer_id,customer_name,industry,size_band,region,already_buys"
    );
    // C-2 bought PR-1 only directly: untapped for P-2, which sold it Security (PR-2).
    assert_eq!(lines.len(), 2, "{stdout}");
    let id = lines[1].split(',').next().unwrap().to_string();
    assert!(id.starts_with("PRISM-") && id.len() == 14, "{id}");
    assert_eq!(
        lines[1],
        format!(
            "{id},Spring push,C-2,\"Bank of Foo, Inc.\",Financial Services,Mid-Market,EMEA,Security"
        )
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("planned campaign {id} for 1 untapped customers"))
    );
    let again = plan("Autumn push");
    let second = String::from_utf8_lossy(&again.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string();
    assert_ne!(second, id);

    let out = prism(
        &data,
        &[
            "potential",
            "--as-partner",
            "P-2",
            "--partner",
            "P-1",
            "--product",
            "PR-1",
            "--segment",
            "Healthcare/Enterprise",
            "--create-campaign",
            "Not mine",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
}

/// The allocator's settings are compiled into the binary: a load's buffers of 8 to 32 MB are
/// reused rather than handed back and faulted in again (BENCHMARKS.md). The exported name is
/// jemalloc's own; were it to change (a new jemalloc crate, another prefix), the settings would
/// silently stop applying, and this says so. The environment still overrides them.
#[test]
fn the_allocator_runs_with_the_settings_compiled_in_and_the_environment_over_them() {
    let options = |conf: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_prism"))
            .arg("--version")
            .env("_RJEM_MALLOC_CONF", conf)
            .output()
            .unwrap();
        assert!(out.status.success());
        // jemalloc prints its statistics, options first, to stderr at exit.
        let stats = String::from_utf8_lossy(&out.stderr).into_owned();
        let option = |name: &str| {
            (stats.lines())
                .find_map(|l| l.trim().strip_prefix(&format!("opt.{name}: ")))
                .unwrap_or_else(|| panic!("no opt.{name} in jemalloc's statistics:\n{stats}"))
                .split(' ')
                .next()
                .unwrap()
                .to_string()
        };
        (option("oversize_threshold"), option("dirty_decay_ms"))
    };
    assert_eq!(
        options("stats_print:true"),
        ("33554432".to_string(), "2000".to_string())
    );
    assert_eq!(
        options("stats_print:true,dirty_decay_ms:5000"),
        ("33554432".to_string(), "5000".to_string())
    );
}
