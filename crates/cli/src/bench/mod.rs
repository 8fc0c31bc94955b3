//! `prism bench`: generates and loads an export (once per scale, kept in the bench folder), then
//! asks the same questions of Prism and of DuckDB over the same data in the same run, and
//! prints the first run and the warm median of each, with the ratio. DuckDB reads the Parquet
//! files of the warehouse's Delta tables directly, with SQL written here by hand — not produced
//! by Prism's compiler — and every answer is compared cell by cell, so that the two are shown to
//! answer the same question.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use prism_engine::{Engine, Period, Query, Scope};
use prism_generator::{GenerateConfig, generate};
use prism_model::Model;
use prism_warehouse::{LoadMode, LoadOptions, NoProgress, Warehouse};

const DUCKDB_RUNNER: &str = include_str!("duckdb_runner.py");

/// One question: Prism's query and DuckDB's equivalent SQL.
struct Question {
    name: &'static str,
    query: Query,
    duckdb: String,
}

fn questions() -> Result<Vec<Question>> {
    let period = Period::parse("2025-07..2026-06")?;
    let (from, to) = (period.from, period.to);
    Ok(vec![
        Question {
            name: "revenue by partner",
            query: Query { metrics: vec!["closed_revenue".into()], by: vec!["partner.partner_id".into()], ..Query::default() },
            duckdb: "SELECT COALESCE(partner_id, '(direct)') AS partner, SUM(revenue) FROM orders GROUP BY 1 ORDER BY 1".into(),
        },
        Question {
            name: "KPI tiles (one year)",
            query: Query {
                metrics: ["closed_revenue", "open_pipeline", "win_rate", "csat_avg", "avg_first_response_hours", "sla_met_pct"]
                    .map(String::from)
                    .to_vec(),
                period: Some(period),
                ..Query::default()
            },
            duckdb: format!(
                "WITH o AS (SELECT SUM(revenue) AS revenue FROM orders WHERE order_date BETWEEN DATE '{from}' AND DATE '{to}'),
                 op AS (SELECT SUM(amount) FILTER (WHERE stage NOT IN ('Closed Won', 'Closed Lost')) AS pipeline,
                               COUNT(*) FILTER (WHERE stage = 'Closed Won') / NULLIF(COUNT(*) FILTER (WHERE stage IN ('Closed Won', 'Closed Lost')), 0) AS win_rate
                        FROM opportunities WHERE close_date BETWEEN DATE '{from}' AND DATE '{to}'),
                 s AS (SELECT AVG(score) AS csat FROM satisfaction_surveys WHERE surveyed_on BETWEEN DATE '{from}' AND DATE '{to}'),
                 sr AS (SELECT AVG(epoch_us(first_response_at) - epoch_us(opened_at)) / 3600e6 AS response_hours,
                               100.0 * COUNT(*) FILTER (WHERE epoch_us(first_response_at) - epoch_us(opened_at) <= 3600000000 * CASE priority WHEN 'P1' THEN 1 WHEN 'P2' THEN 4 WHEN 'P3' THEN 8 ELSE 24 END) / COUNT(*) AS sla
                        FROM service_requests WHERE CAST(opened_at AS DATE) BETWEEN DATE '{from}' AND DATE '{to}')
                 SELECT revenue, pipeline, win_rate, csat, response_hours, sla FROM o, op, s, sr"
            ),
        },
        Question {
            name: "revenue by tier x quarter",
            query: Query { metrics: vec!["closed_revenue".into()], by: vec!["partner.tier".into(), "time.quarter".into()], ..Query::default() },
            duckdb: "SELECT CASE WHEN o.partner_id IS NULL THEN '(direct)' ELSE p.tier END AS tier,
                            year(o.order_date) || '-Q' || quarter(o.order_date) AS quarter, SUM(o.revenue)
                     FROM orders o LEFT JOIN partners p ON o.partner_id = p.partner_id GROUP BY 1, 2 ORDER BY 1, 2"
                .into(),
        },
    ])
}

pub struct BenchArgs {
    pub scale: f64,
    pub runs: usize,
    pub dir: PathBuf,
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn ms(s: f64) -> String {
    format!("{:.1} ms", s * 1000.0)
}

/// Cells agree as text, or as numbers within 1e-9 relative (floating averages summed in
/// another order).
fn same_cell(a: &str, b: &str) -> bool {
    a == b || matches!((a.parse::<f64>(), b.parse::<f64>()), (Ok(x), Ok(y)) if (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0))
}

fn python_with_duckdb() -> Result<()> {
    let has = |_: ()| Command::new("python3").args(["-c", "import duckdb"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if has(()) {
        return Ok(());
    }
    eprintln!("installing the DuckDB Python package for the comparison ...");
    for extra in [&[][..], &["--break-system-packages"][..]] {
        let _ = Command::new("python3").args(["-m", "pip", "install", "--quiet", "duckdb"]).args(extra).status();
        if has(()) {
            return Ok(());
        }
    }
    bail!("DuckDB is needed for the comparison: `python3 -m pip install duckdb` did not succeed")
}

pub fn run(args: &BenchArgs, runtime: &tokio::runtime::Runtime) -> Result<()> {
    if args.runs == 0 {
        bail!("--runs: at least 1");
    }
    let export = args.dir.join(format!("export-scale-{}", args.scale));
    if !export.join("satisfaction_surveys.csv").exists() {
        println!("generating scale {} in {} ...", args.scale, export.display());
        generate(&GenerateConfig { out: export.clone(), scale: args.scale, seed: 42 })?;
    }
    // A warehouse of exactly one load, so that every Parquet file of a table is current and
    // DuckDB may read the folders as they are.
    let data = args.dir.join(format!("data-scale-{}", args.scale));
    let wh = Warehouse::open(&data)?;
    if wh.versions()?.versions.len() != 1 {
        drop(wh);
        if data.exists() {
            std::fs::remove_dir_all(&data).with_context(|| format!("clearing {}", data.display()))?;
        }
        let wh = Warehouse::open(&data)?;
        println!("loading {} ...", export.display());
        let started = Instant::now();
        runtime.block_on(wh.load(&LoadOptions { export_dir: export.clone(), mode: LoadMode::Upsert, quarantine: false, rollups: Engine::new(Model::shipped()).rollup_builds() }, &NoProgress))?;
        println!("loaded in {:.2} s", started.elapsed().as_secs_f64());
    }
    let wh = Warehouse::open(&data)?;
    let snapshot = wh.snapshot(None)?;
    let order_lines = snapshot.table_rows().get("orders").copied().unwrap_or(0);
    python_with_duckdb()?;

    let questions = questions()?;
    let engine = Engine::new(Model::shipped());
    let started = Instant::now();
    let ctx = runtime.block_on(snapshot.session())?;
    let open_secs = started.elapsed().as_secs_f64();
    let mut prism: Vec<(Vec<f64>, Vec<Vec<String>>)> = Vec::new();
    for q in &questions {
        let mut times = Vec::new();
        let mut rows = Vec::new();
        for _ in 0..args.runs {
            let started = Instant::now();
            let result = runtime.block_on(engine.run(&ctx, &q.query, &Scope::All))?;
            times.push(started.elapsed().as_secs_f64());
            rows = result.formatted_rows();
        }
        prism.push((times, rows));
    }

    let tables: serde_json::Map<String, serde_json::Value> = snapshot
        .table_rows()
        .keys()
        .map(|t| (t.clone(), serde_json::Value::String(data.join("tables").join(t).display().to_string())))
        .collect();
    let job = serde_json::json!({
        "tables": tables,
        "runs": args.runs,
        "queries": questions.iter().map(|q| serde_json::json!({"name": q.name, "sql": q.duckdb})).collect::<Vec<_>>(),
    });
    let script = args.dir.join("duckdb_runner.py");
    std::fs::write(&script, DUCKDB_RUNNER)?;
    let mut child = Command::new("python3").arg(&script).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().context("starting python3")?;
    serde_json::to_writer(child.stdin.take().expect("piped"), &job)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("the DuckDB run failed (see above)");
    }
    let duck: serde_json::Value = serde_json::from_slice(&out.stdout).context("reading DuckDB's answers")?;

    println!(
        "\nscale {} ({order_lines} order lines), {} runs each; Prism opened the warehouse version in {}; DuckDB {}",
        args.scale,
        args.runs,
        ms(open_secs),
        duck["duckdb"].as_str().unwrap_or("?")
    );
    println!("{:<28} {:>12} {:>12} {:>12} {:>12} {:>8}  answers", "question", "prism first", "prism warm", "duckdb first", "duckdb warm", "ratio");
    let mut all_agree = true;
    for (i, q) in questions.iter().enumerate() {
        let d = &duck["results"][i];
        let d_times: Vec<f64> = d["times"].as_array().into_iter().flatten().filter_map(|t| t.as_f64()).collect();
        let d_rows: Vec<Vec<String>> = serde_json::from_value(d["rows"].clone()).unwrap_or_default();
        let (p_times, p_rows) = &prism[i];
        let agree = p_rows.len() == d_rows.len()
            && p_rows.iter().zip(&d_rows).all(|(a, b)| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_cell(x, y)));
        all_agree &= agree;
        let warm = |t: &[f64]| if t.len() > 1 { median(&t[1..]) } else { t[0] };
        println!(
            "{:<28} {:>12} {:>12} {:>12} {:>12} {:>7.2}x  {}",
            q.name,
            ms(p_times[0]),
            ms(warm(p_times)),
            ms(d_times[0]),
            ms(warm(&d_times)),
            warm(p_times) / warm(&d_times),
            if agree { format!("same ({} rows)", p_rows.len()) } else { "DIFFER".to_string() }
        );
        if !agree {
            eprintln!("  prism:  {:?}", &p_rows[..p_rows.len().min(3)]);
            eprintln!("  duckdb: {:?}", &d_rows[..d_rows.len().min(3)]);
        }
    }
    println!("(warm: median of runs 2..N; ratio: Prism warm / DuckDB warm, lower is better)");
    if !all_agree {
        bail!("Prism and DuckDB answered differently: the comparison is void");
    }
    Ok(())
}

