//! A cluster on loopback over an S3-compatible server (moto; `scripts/test` installs it):
//! `prism cluster up` starts two workers, each its own process; questions sent there with
//! `--cluster` answer exactly what one machine answers, in every scope; the work really runs on
//! the workers; a worker that breaks or goes silent during a question fails it with the
//! worker's address; a killed worker is left out of the next questions, which the other
//! answers; `prism status --workers` says who is up.

mod common;

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Output, Stdio};

use common::{Moto, fixture, ok, prism_at, prism_command, start};

const DATA: &str = "s3://prism-test/cluster";

/// `prism cluster up`'s process and its workers' process ids; stopped with SIGTERM, as an
/// operator would, so that it stops its workers.
struct Up {
    child: Child,
    workers: Vec<(String, u32)>,
    spec: String,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        for (_, pid) in &self.workers {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn cluster_up(moto: &Moto, state: &Path) -> Up {
    // Held from the start, so that a failure below still stops it.
    let mut up = Up {
        child: prism_command(moto, state, DATA, &["cluster", "up", "--workers", "2"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
        workers: Vec::new(),
        spec: String::new(),
    };
    let mut lines = BufReader::new(up.child.stdout.take().unwrap()).lines();
    loop {
        let line = lines
            .next()
            .expect("cluster up prints its cluster")
            .unwrap();
        if let Some(spec) = line.strip_prefix("cluster: ") {
            up.spec = spec.to_string();
            return up;
        }
        // worker 1: http://127.0.0.1:PORT (process PID)
        let (url, pid) = line
            .split_once(": ")
            .and_then(|(_, rest)| rest.split_once(" (process "))
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        up.workers
            .push((url.to_string(), pid.trim_end_matches(')').parse().unwrap()));
    }
}

/// `prism ARGS` on one machine, or on the cluster `spec` with every table cut into as many
/// tasks as it has workers (a file of a few hundred bytes would otherwise stay on one).
fn ask(moto: &Moto, state: &Path, spec: Option<&str>, args: &[&str]) -> Output {
    let mut command = prism_command(moto, state, DATA, args);
    if let Some(spec) = spec {
        command
            .args(["--cluster", spec])
            .env("PRISM_CLUSTER_BYTES_PER_TASK", "1");
    }
    command.output().unwrap()
}

/// Questions across the model (each a command line, split at spaces): measures of every fact, cuts, a period, filters, derived forms,
/// a partner's scope, a benchmark's refusal, and the analyses.
const QUESTIONS: &[&str] = &[
    "query --metrics closed_revenue --format csv",
    "query --metrics closed_revenue,order_count,buying_customers --by partner.tier,time.month --format csv",
    "query --metrics closed_revenue,closed_revenue:pct_of_total,closed_revenue:rank,win_rate --by partner.partner_id --order closed_revenue:desc --format csv",
    "query --metrics csat_avg,open_sr_count,avg_resolution_hours --by partner.partner_id --format csv",
    "query --metrics closed_revenue --by product.product_id --period 2024-Q1 --format csv",
    "query --metrics closed_revenue --by customer.customer_id --as-partner P-1 --format csv",
    "pareto --format csv",
    "scorecard --format csv",
    "underperformers --format csv",
    "products --as-partner P-1 --format csv",
];

fn words(command: &str) -> Vec<&str> {
    command.split(' ').collect()
}

#[test]
fn a_cluster_of_two_workers_answers_as_one_machine_does_and_survives_a_lost_worker() {
    let moto = start();
    let state = tempfile::tempdir().unwrap();
    let state = state.path();
    ok(prism_at(&moto, state, DATA, &["load", &fixture()]));
    let up = cluster_up(&moto, state);
    assert_eq!(up.workers.len(), 2);

    let status = ok(ask(&moto, state, Some(&up.spec), &["status", "--workers"]));
    assert!(status.contains("2 of 2 workers up"), "{status}");

    // Every question: the same bytes from the cluster as from one machine, and (for the total)
    // the fixture's hand figure: P-1 2499.50 + P-2 -49.75 + direct 1200.00.
    for question in QUESTIONS {
        let args = words(question);
        let here = ask(&moto, state, None, &args);
        let there = ask(&moto, state, Some(&up.spec), &args);
        assert_eq!(
            String::from_utf8_lossy(&there.stdout),
            String::from_utf8_lossy(&here.stdout),
            "{question:?}: {}",
            String::from_utf8_lossy(&there.stderr)
        );
        assert_eq!(
            there.status.success(),
            here.status.success(),
            "{question:?}"
        );
        assert!(here.status.success(), "{question:?}: {here:?}");
    }
    let total = ok(ask(&moto, state, Some(&up.spec), &words(QUESTIONS[0])));
    assert_eq!(total, "closed_revenue\n3649.75\n");

    // The work ran on the workers: the plan as run has stages sent over the network.
    let plan = ok(ask(
        &moto,
        state,
        Some(&up.spec),
        &[
            "explain",
            "--analyze",
            "--no-rollups",
            "--metrics",
            "closed_revenue",
            "--by",
            "partner.tier",
        ],
    ));
    assert!(plan.contains("Network"), "no distributed stage:\n{plan}");

    // A worker that accepts a connection and then breaks it, as one that dies while a question
    // runs: the question fails, naming it — never a partial answer.
    let broken = TcpListener::bind("127.0.0.1:0").unwrap();
    let broken_url = format!("http://{}", broken.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in broken.incoming() {
            drop(stream);
        }
    });
    let with_broken = format!("{broken_url},{}", up.workers[1].0);
    let failed = ask(&moto, state, Some(&with_broken), &words(QUESTIONS[1]));
    assert!(!failed.status.success(), "{failed:?}");
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.contains(&format!("worker {broken_url}")), "{err}");
    assert!(failed.stdout.is_empty(), "a failed question printed rows");

    // A worker that goes silent without closing its connection (its machine lost): with a
    // timeout of 1 s, the question fails within seconds, naming it, instead of waiting forever.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming() {
            held.push(stream);
        }
    });
    let started = std::time::Instant::now();
    let failed = prism_command(&moto, state, DATA, &words(QUESTIONS[1]))
        .args(["--cluster", &format!("{silent_url},{}", up.workers[1].0)])
        .env("PRISM_CLUSTER_BYTES_PER_TASK", "1")
        .env("PRISM_CLUSTER_CONNECT_SECONDS", "1")
        .output()
        .unwrap();
    assert!(!failed.status.success(), "{failed:?}");
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.contains(&format!("worker {silent_url}")), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "a silent worker held the question for {:?}",
        started.elapsed()
    );

    // Worker 1 killed: status says so (and fails), and the next questions run on worker 2.
    let (dead_url, dead_pid) = up.workers[0].clone();
    std::process::Command::new("kill")
        .args(["-9", &dead_pid.to_string()])
        .status()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let status = ask(&moto, state, Some(&up.spec), &["status", "--workers"]);
    assert!(!status.status.success());
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("1 of 2 workers up") && text.contains(&format!("{dead_url}  down")),
        "{text}"
    );
    for question in &QUESTIONS[..3] {
        let here = ok(ask(&moto, state, None, &words(question)));
        let there = ok(ask(&moto, state, Some(&up.spec), &words(question)));
        assert_eq!(there, here, "{question:?} after worker 1 died");
    }
}
