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
use prism_engine::{Audience, Engine, Period, Query};
use prism_generator::{GenerateConfig, generate};
use prism_model::Model;
use prism_warehouse::{LoadOptions, NoProgress, Warehouse};

const DUCKDB_RUNNER: &str = include_str!("duckdb_runner.py");

/// What Prism is asked: a query, or one of the analyses behind a dashboard.
enum Ask {
    Query(Query),
    Pareto,
    Scorecard,
    Products,
    Potential,
}

/// One question of the dashboard set: what Prism is asked, and DuckDB's SQL for the figures the
/// answer is compared on.
struct Question {
    name: &'static str,
    ask: Ask,
    duckdb: String,
}

/// The dashboard set. `partner` is the partner whose products and customer potential are asked
/// (the one with the most revenue), `product` the product whose potential is asked (the one the
/// partner sold fewest units of).
fn questions(partner: &str, product: &str, loaded_on: &str) -> Result<Vec<Question>> {
    let mut questions = dashboard_questions()?;
    questions.extend(analysis_questions(partner, product, loaded_on));
    Ok(questions)
}

/// The dashboards' questions: the KPI tiles, the top partners, the 80/20, a cut by two
/// dimensions, and the full scan.
fn dashboard_questions() -> Result<Vec<Question>> {
    let period = Period::parse("2025-07..2026-06")?;
    let (from, to) = (period.from, period.to);
    let q = |metrics: &[&str], by: &[&str]| Query {
        metrics: metrics.iter().map(|m| m.to_string()).collect(),
        by: by.iter().map(|m| m.to_string()).collect(),
        ..Query::default()
    };
    Ok(vec![
        Question {
            name: "KPI tiles (one year)",
            ask: Ask::Query(Query {
                period: Some(period),
                ..q(&["closed_revenue", "open_pipeline", "win_rate", "csat_avg", "avg_first_response_hours", "sla_met_pct"], &[])
            }),
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
            name: "top partners",
            ask: Ask::Query(Query {
                order: vec![prism_engine::Order::parse("closed_revenue:desc")?],
                limit: Some(15),
                ..q(&["closed_revenue", "closed_revenue:pct_of_total", "win_rate", "csat_avg"], &["partner.partner_id", "partner.partner_name", "partner.tier", "partner.region"])
            }),
            duckdb: "WITH o AS (SELECT partner_id, SUM(revenue) AS revenue FROM orders GROUP BY 1),
                 op AS (SELECT partner_id, COUNT(*) FILTER (WHERE stage = 'Closed Won') AS won, COUNT(*) FILTER (WHERE stage IN ('Closed Won', 'Closed Lost')) AS closed FROM opportunities GROUP BY 1),
                 s AS (SELECT partner_id, AVG(score) AS csat FROM satisfaction_surveys GROUP BY 1),
                 k AS (SELECT partner_id FROM o UNION SELECT partner_id FROM op UNION SELECT partner_id FROM s)
                 SELECT COALESCE(k.partner_id, '(direct)') AS id, CASE WHEN k.partner_id IS NULL THEN '(direct)' ELSE p.partner_name END AS name,
                        CASE WHEN k.partner_id IS NULL THEN '(direct)' ELSE p.tier END AS tier, CASE WHEN k.partner_id IS NULL THEN '(direct)' ELSE p.region END AS region,
                        o.revenue, 100.0 * o.revenue / SUM(o.revenue) OVER () AS pct, op.won / NULLIF(op.closed, 0) AS win_rate, s.csat
                 FROM k LEFT JOIN o ON k.partner_id IS NOT DISTINCT FROM o.partner_id LEFT JOIN op ON k.partner_id IS NOT DISTINCT FROM op.partner_id
                      LEFT JOIN s ON k.partner_id IS NOT DISTINCT FROM s.partner_id LEFT JOIN partners p ON k.partner_id = p.partner_id
                 ORDER BY o.revenue DESC NULLS LAST, 1, 2, 3, 4 LIMIT 15"
                .into(),
        },
        Question {
            name: "Pareto (80/20)",
            ask: Ask::Pareto,
            duckdb: "SELECT partner_id, SUM(revenue) FROM orders WHERE partner_id IS NOT NULL GROUP BY 1 HAVING SUM(revenue) <> 0 ORDER BY 1".into(),
        },
        Question {
            name: "revenue by tier x quarter",
            ask: Ask::Query(q(&["closed_revenue"], &["partner.tier", "time.quarter"])),
            duckdb: "SELECT CASE WHEN o.partner_id IS NULL THEN '(direct)' ELSE p.tier END AS tier,
                            year(o.order_date) || '-Q' || quarter(o.order_date) AS quarter, SUM(o.revenue)
                     FROM orders o LEFT JOIN partners p ON o.partner_id = p.partner_id GROUP BY 1, 2 ORDER BY 1, 2"
                .into(),
        },
        Question {
            // Every order line read and grouped by one of many keys: the full scan a question of
            // a user's own may need (off the rollups, or with them where none answers it).
            name: "revenue by customer",
            ask: Ask::Query(q(&["closed_revenue"], &["customer.customer_id"])),
            duckdb: "SELECT customer_id, SUM(revenue) FROM orders GROUP BY 1 ORDER BY 1".into(),
        },
    ])
}

/// The analyses' questions, for one partner and product.
fn analysis_questions(partner: &str, product: &str, loaded_on: &str) -> Vec<Question> {
    vec![
        Question {
            name: "scorecard",
            ask: Ask::Scorecard,
            // The six attributes, certified people on the day of the load.
            duckdb: format!("WITH o AS (SELECT partner_id, SUM(revenue) AS revenue FROM orders WHERE partner_id IS NOT NULL GROUP BY 1),
                 op AS (SELECT partner_id, SUM(amount) FILTER (WHERE stage NOT IN ('Closed Won', 'Closed Lost')) AS pipeline,
                               COUNT(*) FILTER (WHERE stage = 'Closed Won') / NULLIF(COUNT(*) FILTER (WHERE stage IN ('Closed Won', 'Closed Lost')), 0) AS win_rate
                        FROM opportunities WHERE partner_id IS NOT NULL GROUP BY 1),
                 s AS (SELECT partner_id, AVG(score) AS csat FROM satisfaction_surveys WHERE partner_id IS NOT NULL GROUP BY 1),
                 sr AS (SELECT partner_id, AVG(epoch_us(first_response_at) - epoch_us(opened_at)) / 3600e6 AS response_hours FROM service_requests WHERE partner_id IS NOT NULL GROUP BY 1),
                 c AS (SELECT partner_id, COUNT(DISTINCT person_id) AS certified FROM certifications WHERE earned_on <= DATE '{loaded_on}' AND (expires_on IS NULL OR expires_on > DATE '{loaded_on}') GROUP BY 1)
                 SELECT p.partner_id, o.revenue, op.pipeline, op.win_rate, s.csat, sr.response_hours, COALESCE(c.certified, 0)
                 FROM partners p LEFT JOIN o USING (partner_id) LEFT JOIN op USING (partner_id) LEFT JOIN s USING (partner_id) LEFT JOIN sr USING (partner_id) LEFT JOIN c USING (partner_id) ORDER BY 1"
            ),
        },
        Question {
            name: "one partner's products",
            ask: Ask::Products,
            duckdb: format!("SELECT product_id, SUM(revenue), SUM(quantity) FROM orders WHERE partner_id = '{partner}' GROUP BY 1 ORDER BY 1"),
        },
        Question {
            name: "customer potential",
            ask: Ask::Potential,
            // The whole segments table: adoption in the channel (withheld under 5 partners, 0
            // where 5 or more partners sold in the segment and none of them the product) and the
            // partners behind it (the fewer of those that sold the product there and those that
            // sold anything there), the partner's customers and buyers, and its customers nobody
            // sold the product to.
            duckdb: format!(
                "WITH oc AS (SELECT o.customer_id, o.partner_id, o.product_id, c.industry, c.size_band FROM orders o JOIN customers c USING (customer_id)),
                 chx AS (SELECT industry, size_band, COUNT(DISTINCT customer_id) AS n, COUNT(DISTINCT partner_id) AS p FROM oc WHERE partner_id IS NOT NULL AND product_id = '{product}' GROUP BY 1, 2),
                 cha AS (SELECT industry, size_band, COUNT(DISTINCT customer_id) AS n, COUNT(DISTINCT partner_id) AS p FROM oc WHERE partner_id IS NOT NULL GROUP BY 1, 2),
                 pc AS (SELECT DISTINCT customer_id, industry, size_band FROM oc WHERE partner_id = '{partner}'),
                 own AS (SELECT industry, size_band, COUNT(*) AS n FROM pc GROUP BY 1, 2),
                 ownx AS (SELECT industry, size_band, COUNT(DISTINCT customer_id) AS n FROM oc WHERE partner_id = '{partner}' AND product_id = '{product}' GROUP BY 1, 2),
                 open AS (SELECT industry, size_band, COUNT(*) AS n FROM pc WHERE customer_id NOT IN (SELECT customer_id FROM orders WHERE product_id = '{product}') GROUP BY 1, 2)
                 SELECT own.industry, own.size_band,
                        CASE WHEN cha.p >= 5 AND cha.n > 0 THEN CASE WHEN chx.n IS NULL THEN 0.0 WHEN chx.p >= 5 THEN 100.0 * chx.n / cha.n END END,
                        LEAST(COALESCE(chx.p, 0), COALESCE(cha.p, 0)), own.n, COALESCE(ownx.n, 0), COALESCE(open.n, 0)
                 FROM own LEFT JOIN cha USING (industry, size_band) LEFT JOIN chx USING (industry, size_band)
                      LEFT JOIN ownx USING (industry, size_band) LEFT JOIN open USING (industry, size_band)
                 ORDER BY 1, 2"
            ),
        },
    ]
}

/// How answers are compared: row by row, or only where both give a figure (an analysis fills
/// in figures a plain query leaves empty, such as 0 revenue for a partner without orders).
#[derive(Clone, Copy, PartialEq)]
enum Compare {
    Rows,
    WhereBothHaveFigures,
}

/// Rows of text, and how they are compared with DuckDB's.
type Answer = (Vec<Vec<String>>, Compare);

/// Prism's answer to a question as rows of text comparable with DuckDB's.
async fn answer(
    engine: &Engine,
    ctx: &prism_engine::Session,
    ask: &Ask,
    partner: &str,
    product: &str,
) -> Result<Answer> {
    let cx = prism_analyses::Context {
        engine,
        session: ctx,
        audience: Audience::everyone(),
        period: None,
    };
    Ok(match ask {
        Ask::Query(q) => (
            engine
                .run(ctx, q, &Audience::everyone())
                .await?
                .formatted_rows(),
            Compare::Rows,
        ),
        Ask::Pareto => {
            let p = prism_analyses::pareto::pareto(&cx, None).await?;
            let mut rows: Vec<Vec<String>> = p
                .rows
                .iter()
                .filter(|r| r.closed_revenue.to_string() != "0.00")
                .map(|r| vec![r.partner.partner_id.clone(), r.closed_revenue.to_string()])
                .collect();
            rows.sort();
            (rows, Compare::Rows)
        }
        Ask::Scorecard => {
            let s = prism_analyses::scorecard::scorecard(
                &cx,
                prism_analyses::scorecard::Weights::default(),
            )
            .await?;
            let mut rows: Vec<Vec<String>> = s
                .rows
                .iter()
                .map(|r| {
                    std::iter::once(r.partner.partner_id.clone())
                        .chain(r.attributes.iter().map(|a| a.value.exact()))
                        .collect()
                })
                .collect();
            rows.sort();
            (rows, Compare::WhereBothHaveFigures)
        }
        Ask::Products => {
            let p = prism_analyses::products::products(&cx, partner).await?;
            let rows = p
                .rows
                .iter()
                .filter(|r| r.units_sold.is_some())
                .map(|r| {
                    vec![
                        r.product_id.clone(),
                        r.closed_revenue.map(|m| m.to_string()).unwrap_or_default(),
                        r.units_sold.map(|u| u.to_string()).unwrap_or_default(),
                    ]
                })
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            (rows, Compare::Rows)
        }
        Ask::Potential => (potential_rows(&cx, partner, product).await?, Compare::Rows),
    })
}

/// Customer potential's segments as rows of text: industry, size band, the channel's adoption,
/// its partners, the partner's customers, buyers and untapped customers.
async fn potential_rows(
    cx: &prism_analyses::Context<'_>,
    partner: &str,
    product: &str,
) -> Result<Vec<Vec<String>>> {
    let p = prism_analyses::potential::potential(cx, partner, product).await?;
    let mut rows: Vec<Vec<String>> = p
        .segments
        .iter()
        .map(|s| {
            vec![
                s.industry.clone(),
                s.size_band.clone(),
                s.channel_adoption_pct
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                s.channel_partners.to_string(),
                s.partner_customers.to_string(),
                s.partner_buyers.to_string(),
                s.untapped_customers.to_string(),
            ]
        })
        .collect();
    rows.sort();
    Ok(rows)
}

pub struct BenchArgs {
    pub scale: f64,
    pub runs: usize,
    pub dir: PathBuf,
    /// Partners and customers instead of the scale's: the shape of a brand owner with a long
    /// tail of partners and many customers.
    pub partners: Option<usize>,
    pub customers: Option<usize>,
}

impl BenchArgs {
    /// The export's and the warehouse's folder name: the scale, and the shape when it is not
    /// the scale's own.
    fn shape(&self) -> String {
        let mut name = format!("scale-{}", self.scale);
        if let Some(p) = self.partners {
            name.push_str(&format!("-partners-{p}"));
        }
        if let Some(c) = self.customers {
            name.push_str(&format!("-customers-{c}"));
        }
        name
    }
}

pub(crate) fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn ms(s: f64) -> String {
    format!("{:.1} ms", s * 1000.0)
}

/// Cells agree as text, or as numbers within 1e-9 relative (floating averages summed in
/// another order).
fn same_cell(a: &str, b: &str) -> bool {
    a == b
        || matches!((a.parse::<f64>(), b.parse::<f64>()), (Ok(x), Ok(y)) if (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0))
}

fn python_with_duckdb() -> Result<()> {
    let has = |_: ()| {
        Command::new("python3")
            .args(["-c", "import duckdb"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has(()) {
        return Ok(());
    }
    eprintln!("installing the DuckDB Python package for the comparison ...");
    for extra in [&[][..], &["--break-system-packages"][..]] {
        let _ = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "duckdb"])
            .args(extra)
            .status();
        if has(()) {
            return Ok(());
        }
    }
    bail!("DuckDB is needed for the comparison: `python3 -m pip install duckdb` did not succeed")
}

/// Same cells, or both figures where `compare` allows an empty one.
fn same_rows(p: &[Vec<String>], d: &[Vec<String>], compare: Compare) -> bool {
    match compare {
        Compare::Rows => {
            p.len() == d.len()
                && p.iter().zip(d).all(|(a, b)| {
                    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_cell(x, y))
                })
        }
        Compare::WhereBothHaveFigures => {
            let by_key: std::collections::HashMap<&str, &Vec<String>> =
                d.iter().map(|r| (r[0].as_str(), r)).collect();
            !p.is_empty()
                && p.iter().all(|a| {
                    by_key.get(a[0].as_str()).is_some_and(|b| {
                        a.len() == b.len()
                            && a.iter()
                                .zip(b.iter())
                                .all(|(x, y)| x.is_empty() || y.is_empty() || same_cell(x, y))
                    })
                })
        }
    }
}

/// Times of one way of answering: the first run, then the warm median.
struct Timing {
    first: f64,
    warm: f64,
}

fn time_set(
    runtime: &tokio::runtime::Runtime,
    engine: &Engine,
    ctx: &prism_engine::Session,
    questions: &[Question],
    runs: usize,
    partner: &str,
    product: &str,
) -> Result<(Vec<Timing>, Vec<Answer>)> {
    let mut timings = Vec::new();
    let mut answers = Vec::new();
    // First runs in dashboard order, as a user opening the pages after a load; then warm runs.
    let mut firsts = Vec::new();
    for q in questions {
        let started = Instant::now();
        answers.push(runtime.block_on(answer(engine, ctx, &q.ask, partner, product))?);
        firsts.push(started.elapsed().as_secs_f64());
    }
    for (i, q) in questions.iter().enumerate() {
        let mut times = Vec::new();
        for _ in 1..runs.max(2) {
            let started = Instant::now();
            runtime.block_on(answer(engine, ctx, &q.ask, partner, product))?;
            times.push(started.elapsed().as_secs_f64());
        }
        timings.push(Timing {
            first: firsts[i],
            warm: median(&times),
        });
    }
    Ok((timings, answers))
}

pub fn run(args: &BenchArgs, runtime: &tokio::runtime::Runtime) -> Result<()> {
    if args.runs == 0 {
        bail!("--runs: at least 1");
    }
    let export = generated_export(args)?;
    let model = Model::shipped();
    let data = args.dir.join(format!("data-{}", args.shape()));
    load_once(&data, &export, &model, runtime)?;
    let wh = Warehouse::open(&data)?;
    let snapshot = wh.snapshot(None)?;
    python_with_duckdb()?;
    let (partner, product) =
        busiest_partner_and_its_least_sold_product(&model, &snapshot, runtime)?;
    // Without a period, a state (certified people) is read on the day of the load.
    let loaded_on = snapshot
        .version
        .loaded_at
        .get(..10)
        .unwrap_or_default()
        .to_string();
    let questions = questions(&partner, &product, &loaded_on)?;

    // Each way in a fresh session of its own, so that each first run starts cold.
    let session = || runtime.block_on(snapshot.session());
    let started = Instant::now();
    let ctx = session()?;
    let open_secs = started.elapsed().as_secs_f64();
    let time = |engine: Engine, ctx: &prism_engine::Session| {
        time_set(
            runtime, &engine, ctx, &questions, args.runs, &partner, &product,
        )
    };
    let (rolled, answers) = time(Engine::new(model.clone()), &ctx)?;
    let (based, base_answers) = time(Engine::new(model.clone()).without_rollups(), &*session()?)?;
    let (cached, _) = time(
        Engine::with_result_cache(model.clone(), 256 << 20),
        &*session()?,
    )?;
    let duck = duckdb_answers(args, &data, &snapshot, &questions)?;
    say!(
        "\nscale {} ({} order lines), {} runs each; partner {partner}, product {product}; Prism opened the warehouse version in {}; DuckDB {}",
        args.scale,
        snapshot.table_rows().get("orders").copied().unwrap_or(0),
        args.runs.max(2),
        ms(open_secs),
        duck["duckdb"].as_str().unwrap_or("?")
    );
    say!(
        "rollups: {} built in {:.2} s at load, {} rows in all",
        snapshot.version.rollups.len(),
        snapshot.version.rollups_build_ms as f64 / 1000.0,
        snapshot
            .version
            .rollups
            .values()
            .map(|r| r.rows)
            .sum::<u64>()
    );
    let all_agree = print_table(
        &questions,
        &duck,
        [&rolled, &based, &cached],
        &answers,
        &base_answers,
    );
    if !all_agree {
        bail!("Prism and DuckDB answered differently: the comparison is void");
    }
    Ok(())
}

/// The export of `--scale`, generated once into `--dir` and kept.
fn generated_export(args: &BenchArgs) -> Result<PathBuf> {
    let export = args.dir.join(format!("export-{}", args.shape()));
    if !export.join("satisfaction_surveys.csv").exists() {
        say!(
            "generating scale {} in {} ...",
            args.scale,
            export.display()
        );
        generate(&GenerateConfig {
            out: export.clone(),
            scale: args.scale,
            seed: 42,
            partners: args.partners,
            customers: args.customers,
        })?;
    }
    Ok(export)
}

/// Loads `export` into `data` unless it holds exactly one load with the model's rollups.
fn load_once(
    data: &std::path::Path,
    export: &std::path::Path,
    model: &Model,
    runtime: &tokio::runtime::Runtime,
) -> Result<()> {
    let builds = Engine::new(model.clone()).rollup_builds();
    // A warehouse of exactly one load, so that every Parquet file of a table is current and
    // DuckDB may read the folders as they are; loaded again when its rollups are not the
    // model's.
    let wh = Warehouse::open(data)?;
    let current = wh.versions()?;
    let up_to_date = current.versions.len() == 1
        && current.current().is_some_and(|v| {
            v.rollups.keys().eq(builds
                .iter()
                .map(|b| &b.table)
                .collect::<std::collections::BTreeSet<_>>())
        });
    if !up_to_date {
        drop(wh);
        if data.exists() {
            std::fs::remove_dir_all(data)
                .with_context(|| format!("clearing {}", data.display()))?;
        }
        let wh = Warehouse::open(data)?;
        say!("loading {} ...", export.display());
        let started = Instant::now();
        runtime.block_on(wh.load(
            &LoadOptions::upsert(export.to_path_buf(), builds.clone()),
            &NoProgress,
        ))?;
        let secs = started.elapsed().as_secs_f64();
        let rollups = wh.snapshot(None)?.version.rollups_build_ms as f64 / 1000.0;
        say!(
            "loaded in {secs:.2} s: the tables in {:.2} s, then the rollups in {rollups:.2} s ({:.0} % added to the load)",
            secs - rollups,
            100.0 * rollups / (secs - rollups)
        );
    }
    Ok(())
}

/// The partner with the most revenue, and the product it sells least of all it sells.
fn busiest_partner_and_its_least_sold_product(
    model: &Model,
    snapshot: &prism_warehouse::Snapshot,
    runtime: &tokio::runtime::Runtime,
) -> Result<(String, String)> {
    let setup = Engine::new(model.clone()).without_rollups();
    runtime.block_on(async {
        let ctx = snapshot.session().await?;
        let q = Query {
            metrics: vec!["closed_revenue".into()],
            by: vec!["partner.partner_id".into()],
            order: vec![prism_engine::Order::parse("closed_revenue:desc")?],
            ..Query::default()
        };
        let rows = setup.run(&ctx, &q, &Audience::everyone()).await?.rows();
        let partner = rows
            .iter()
            .find_map(|r| r.text("partner.partner_id"))
            .map(str::to_string)
            .context("no partner sold anything")?;
        let q = Query {
            metrics: vec!["units_sold".into()],
            by: vec!["product.product_id".into()],
            order: vec![prism_engine::Order::parse("units_sold:asc")?],
            limit: Some(1),
            ..Query::default()
        };
        let product = setup
            .run(&ctx, &q, &Audience::partner(partner.clone())?)
            .await?
            .rows()
            .first()
            .map(|r| r.get("product.product_id").exact())
            .context("the partner sold no product")?;
        Ok::<_, anyhow::Error>((partner, product))
    })
}

/// DuckDB's times and rows for every question, over the same Parquet files.
fn duckdb_answers(
    args: &BenchArgs,
    data: &std::path::Path,
    snapshot: &prism_warehouse::Snapshot,
    questions: &[Question],
) -> Result<serde_json::Value> {
    let tables: serde_json::Map<String, serde_json::Value> = snapshot
        .table_rows()
        .keys()
        .map(|t| {
            (
                t.clone(),
                serde_json::Value::String(data.join("tables").join(t).display().to_string()),
            )
        })
        .collect();
    let job = serde_json::json!({
        "tables": tables,
        "runs": args.runs.max(2),
        "queries": questions.iter().map(|q| serde_json::json!({"name": q.name, "sql": q.duckdb})).collect::<Vec<_>>(),
    });
    let script = args.dir.join("duckdb_runner.py");
    std::fs::write(&script, DUCKDB_RUNNER)?;
    let mut child = Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting python3")?;
    serde_json::to_writer(child.stdin.take().expect("piped"), &job)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("the DuckDB run failed (see above)");
    }
    serde_json::from_slice(&out.stdout).context("reading DuckDB's answers")
}

/// The table of times, one line per question and one for the whole set; whether every answer
/// agreed with DuckDB's.
fn print_table(
    questions: &[Question],
    duck: &serde_json::Value,
    [rolled, based, cached]: [&[Timing]; 3],
    answers: &[Answer],
    base_answers: &[Answer],
) -> bool {
    say!(
        "{:<26} {:>10} {:>10} {:>12} {:>12} {:>10} {:>12} {:>8}  answers",
        "question",
        "first",
        "warm",
        "first base",
        "warm base",
        "cached",
        "duckdb warm",
        "ratio"
    );
    let mut all_agree = true;
    let (mut sum_warm, mut sum_base, mut sum_cached, mut sum_duck, mut sum_first) =
        (0.0, 0.0, 0.0, 0.0, 0.0);
    for (i, q) in questions.iter().enumerate() {
        let d = &duck["results"][i];
        let d_times: Vec<f64> = d["times"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_f64())
            .collect();
        let d_rows: Vec<Vec<String>> =
            serde_json::from_value(d["rows"].clone()).unwrap_or_default();
        let d_warm = median(&d_times[1..]);
        let (p_rows, compare) = &answers[i];
        let agree = same_rows(p_rows, &d_rows, *compare)
            && same_rows(&base_answers[i].0, &d_rows, *compare);
        all_agree &= agree;
        sum_warm += rolled[i].warm;
        sum_base += based[i].warm;
        sum_cached += cached[i].warm;
        sum_duck += d_warm;
        sum_first += rolled[i].first;
        say!(
            "{:<26} {:>10} {:>10} {:>12} {:>12} {:>10} {:>12} {:>7.2}x  {}",
            q.name,
            ms(rolled[i].first),
            ms(rolled[i].warm),
            ms(based[i].first),
            ms(based[i].warm),
            ms(cached[i].warm),
            ms(d_warm),
            rolled[i].warm / d_warm,
            if agree {
                format!("same ({} rows)", p_rows.len())
            } else {
                "DIFFER".to_string()
            }
        );
        if !agree {
            eprintln!("  prism:  {:?}", &p_rows[..p_rows.len().min(3)]);
            eprintln!(
                "  base:   {:?}",
                &base_answers[i].0[..base_answers[i].0.len().min(3)]
            );
            eprintln!("  duckdb: {:?}", &d_rows[..d_rows.len().min(3)]);
        }
    }
    say!(
        "{:<26} {:>10} {:>10} {:>12} {:>12} {:>10} {:>12} {:>7.2}x",
        "whole set",
        ms(sum_first),
        ms(sum_warm),
        "",
        ms(sum_base),
        ms(sum_cached),
        ms(sum_duck),
        sum_warm / sum_duck
    );
    say!(
        "(first: the first run in a fresh session, pages in this order; warm: median of the later runs; base: rollups off;"
    );
    say!(
        " cached: with the result cache, as the web app runs; ratio: Prism warm with rollups, no cache / DuckDB warm; lower is better)"
    );
    all_agree
}
