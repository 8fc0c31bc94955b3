//! `prism`: flags and glue over the library crates. Nothing here that a library should own.

mod alerts_cmd;
mod analyses_cmd;
mod bench;
mod config;
mod load_test;
mod mapping_cmd;
mod postgres_source;
mod progress;
mod query_cmd;
mod web_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};
use prism_engine::Engine;
use prism_generator::{GenerateConfig, generate};
use prism_warehouse::{LoadMode, LoadOptions, LoadReport, Warehouse, WarehouseError};

#[derive(Parser)]
#[command(
    name = "prism",
    version,
    about = "Partner relationship management analytics"
)]
struct Cli {
    /// The data folder holding the warehouse.
    #[arg(
        long,
        global = true,
        env = "PRISM_DATA",
        default_value = "./prism-data"
    )]
    data: PathBuf,
    /// A file of settings: `key = value` for `--data`, `--log-format` and every flag of
    /// `prism serve` (default: prism.toml in the current folder, if any). The environment
    /// (`PRISM_IDLE_MINUTES`) and the command line override it.
    #[arg(long, global = true, env = "PRISM_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Logs as text for people, or as JSON lines for a log collector.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Load a CRM export (a folder of CSV files) into the warehouse, all or nothing.
    Load {
        /// The export folder: partners.csv, products.csv, customers.csv, orders.csv, ... With
        /// `--from`, optional: contract files the mapping does not name are read from it.
        #[arg(required_unless_present = "from")]
        export_dir: Option<PathBuf>,
        /// Replace the whole warehouse with this export instead of applying it by key.
        #[arg(long)]
        replace: bool,
        /// Load the valid rows and set every rejected row aside in a rejects file.
        #[arg(long)]
        quarantine: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// A model file extending the shipped one (default: DATA/model.yaml if present); the
        /// load builds its rollups.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Read an export in another layout (a Salesforce data export: mappings/salesforce.yaml)
        /// through this mapping file; faults are located in the original files.
        #[arg(long, value_name = "FILE")]
        mapping: Option<PathBuf>,
        /// Read the export from a PostgreSQL database (`postgres://USER:PASSWORD@HOST/DB`):
        /// the mapping gives a `query` or a `table` per entity.
        #[arg(long, value_name = "URL", requires = "mapping")]
        from: Option<String>,
    },
    /// The current warehouse version, each table's rows, and the history of loads.
    Status {
        /// Show an earlier warehouse version instead of the current one.
        #[arg(long, value_name = "VERSION")]
        as_of: Option<u64>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Write a realistic demo export to the data contract.
    Generate {
        #[arg(long)]
        out: PathBuf,
        /// 1 is about one million order lines.
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Compute metrics, cut by dimensions, for a period and a scope.
    Query {
        #[command(flatten)]
        args: query_cmd::QueryArgs,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Column headings: the names a query takes (`closed_revenue`), or the model's labels
        /// (`Closed revenue`) for a file people will read.
        #[arg(long, value_enum, default_value = "names")]
        headers: query_cmd::Headers,
        /// A model file extending the shipped one (default: model.yaml in the data folder, if any).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Run the query N times and print the first and median times (to stderr).
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        /// Keep no answers: every repeat runs the query again.
        #[arg(long)]
        no_cache: bool,
    },
    /// Show the definitions a query uses and the SQL it compiles to, without running it.
    Explain {
        #[command(flatten)]
        args: query_cmd::QueryArgs,
        #[arg(long)]
        model: Option<PathBuf>,
        /// Also run the query and print DataFusion's plan with the time and rows of each step.
        #[arg(long)]
        analyze: bool,
    },
    /// List the metrics and dimensions of the model, with their definitions.
    Model {
        /// Also list the hidden parts of ratios, and how each rollup is built (its table and SQL).
        #[arg(long)]
        all: bool,
        #[arg(long)]
        model: Option<PathBuf>,
    },
    #[command(flatten)]
    Analysis(analyses_cmd::Analysis),
    /// Serve the dashboards, the JSON API and CSV exports in the browser.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
        /// Mark cookies Secure (when serving over TLS; behind a proxy, X-Forwarded-Proto does it).
        #[arg(long)]
        secure_cookies: bool,
        #[arg(long)]
        model: Option<PathBuf>,
        /// Read the base tables only, never a rollup (for comparisons).
        #[arg(long)]
        no_rollups: bool,
        /// Keep no answers between requests (for comparisons).
        #[arg(long)]
        no_cache: bool,
        #[command(flatten)]
        options: web_cmd::ServeOptions,
    },
    /// Alerts: conditions evaluated after each load or on a schedule, in their owner's scope.
    Alerts {
        #[command(subcommand)]
        command: alerts_cmd::Alerts,
    },
    /// Manage the users of the web app.
    Users {
        #[command(subcommand)]
        command: web_cmd::Users,
    },
    /// Time the dashboard questions in Prism and in DuckDB over the same data, in the same run.
    Bench {
        /// Size of the generated export (1 is about one million order lines).
        #[arg(long, default_value_t = 8.0)]
        scale: f64,
        /// Runs of each question: the first is reported apart, the rest give the warm median.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Where the export and its warehouse are kept between runs.
        #[arg(long, default_value = "./prism-bench")]
        dir: PathBuf,
    },
    /// Signed-in users of every role asking a running app at once: requests per second,
    /// latency percentiles, errors, and whether any answer mixed two warehouse versions.
    LoadTest(load_test::LoadTestArgs),
    /// Generate a demo export if there is none, load it, and say what to run next.
    Demo {
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Where the demo export is written.
        #[arg(long, default_value = "./demo-export")]
        export: PathBuf,
        /// Where the web app listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
        /// Prepare the data and the demo users, but do not start the web app.
        #[arg(long)]
        no_serve: bool,
        /// Listen on an address other machines reach, with the demo's published passwords.
        #[arg(long)]
        yes: bool,
    },
}

fn main() -> ExitCode {
    let command = config::with_environment(Cli::command());
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let args = match config::config_file(&args) {
        None => args,
        Some(file) => match config::args_with_file(args, &file, &command) {
            Ok(args) => args,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        },
    };
    let cli = match Cli::from_arg_matches(&command.get_matches_from(args)) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PRISM_LOG")
                .unwrap_or_else(|_| "warn,deltalake_core=error,buoyant_kernel=error".into()),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    match run(cli) {
        Ok(code) => code,
        // A reader that stopped early (`prism query ... | head`) is not an error.
        Err(e) if e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
                || c.downcast_ref::<csv::Error>().is_some_and(|c| matches!(c.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe))
        }) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Load {
            export_dir,
            replace,
            quarantine,
            format,
            model,
            mapping,
            from,
        } => {
            let wh = Warehouse::open(&cli.data)
                .with_context(|| format!("opening the data folder {}", cli.data.display()))?;
            // An export in another layout is written in the contract's first; its faults are
            // then located in the original files.
            let source = match (&from, &export_dir) {
                (Some(url), dir) => mapping_cmd::From::Database(url.clone(), dir.clone()),
                (None, Some(dir)) => mapping_cmd::From::Folder(dir.clone()),
                (None, None) => anyhow::bail!("give the export folder, or --from URL"),
            };
            let original = source.to_string();
            let mapped = match &mapping {
                None => None,
                Some(file) => match mapping_cmd::mapped(file, &source, &cli.data, format)? {
                    Ok(m) => Some(m),
                    Err(code) => return Ok(code),
                },
            };
            let export_dir = match &mapped {
                Some((m, _)) => m.dir.clone(),
                None => export_dir.expect("a folder without --from"),
            };
            // The rollups of the model in use are built with the tables, in the same version.
            let model = query_cmd::load_model(&cli.data, model.as_ref())?;
            let options = LoadOptions {
                export_dir,
                mode: if replace {
                    LoadMode::Replace
                } else {
                    LoadMode::Upsert
                },
                quarantine,
                rollups: Engine::new(model).rollup_builds(),
            };
            let progress = progress::Reporter::new();
            let result = runtime()?.block_on(async {
                match (&mapped, &mapping) {
                    (Some(_), Some(file)) => {
                        let source = format!("{original} (through {})", file.display());
                        wh.load_from(&options, &source, &progress).await
                    }
                    _ => wh.load(&options, &progress).await,
                }
            });
            progress.clear();
            let result = match &mapped {
                Some((_, locator)) => {
                    result
                        .map(|r| mapping_cmd::located(r, locator))
                        .map_err(|e| match e {
                            WarehouseError::Rejected(r) => WarehouseError::Rejected(Box::new(
                                mapping_cmd::located(*r, locator),
                            )),
                            other => other,
                        })
                }
                None => result,
            };
            match result {
                Ok(report) => {
                    print_load(&report, format);
                    Ok(ExitCode::SUCCESS)
                }
                Err(WarehouseError::Rejected(report)) => {
                    print_load(&report, format);
                    eprintln!("error: {}", WarehouseError::Rejected(report));
                    Ok(ExitCode::from(2))
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Status { as_of, format } => {
            let wh = Warehouse::open(&cli.data)?;
            let versions = wh.versions()?;
            let snapshot = match wh.snapshot(as_of) {
                Ok(s) => Some(s),
                Err(WarehouseError::Empty) => None,
                Err(e) => return Err(e.into()),
            };
            if format == Format::Json {
                let value = serde_json::json!({
                    "data": wh.dir(),
                    "current_version": versions.current().map(|v| v.version),
                    "shown_version": snapshot.as_ref().map(|s| s.version.version),
                    "tables": snapshot.as_ref().map(|s| s.table_rows()),
                    "rollups": snapshot.as_ref().map(|s| &s.version.rollups),
                    "history": versions.versions,
                });
                println!("{}", serde_json::to_string_pretty(&value)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("data folder: {}", wh.dir().display());
            let Some(snapshot) = snapshot else {
                println!(
                    "the warehouse is empty: load an export with `prism load EXPORT_DIR` (or run `prism demo`)"
                );
                return Ok(ExitCode::SUCCESS);
            };
            let v = &snapshot.version;
            let current = versions.current().map_or(0, |c| c.version);
            println!(
                "version {}{} — loaded {} from {} ({}{})",
                v.version,
                if v.version == current {
                    " (current)"
                } else {
                    ""
                },
                v.loaded_at,
                v.source,
                v.mode,
                if v.quarantine { ", quarantine" } else { "" }
            );
            println!("\n{:<22} {:>12}", "table", "rows");
            for (name, pin) in &v.tables {
                println!("{name:<22} {:>12}", pin.rows);
            }
            // The model's rollups as this version holds them.
            let engine = Engine::new(query_cmd::load_model(&cli.data, None)?);
            if !engine.model.rollups.is_empty() {
                println!("\n{:<34} {:>12}  state", "rollup", "rows");
                for name in engine.model.rollups.keys() {
                    let table = engine.rollup_table(name);
                    match v.rollups.get(&table) {
                        Some(pin) => {
                            println!("{name:<34} {:>12}  built ({} ms)", pin.rows, pin.build_ms)
                        }
                        None if v.rollups.keys().any(|t| prism_engine::is_table_of(t, name)) => {
                            println!(
                                "{name:<34} {:>12}  built from an earlier definition: not read until the next load rebuilds it",
                                ""
                            )
                        }
                        None => {
                            println!("{name:<34} {:>12}  not built: the next load builds it", "")
                        }
                    }
                }
                if v.rollups_build_ms > 0 {
                    println!(
                        "(built in {:.2} s by the load of this version)",
                        v.rollups_build_ms as f64 / 1000.0
                    );
                }
            }
            println!("\nhistory:");
            println!(
                "{:>7}  {:<20}  {:<8} {:>10} {:>10} {:>10}  source",
                "version", "loaded at", "mode", "added", "replaced", "rejected"
            );
            for h in &versions.versions {
                let added: u64 = h.changes.values().map(|c| c.added).sum();
                let replaced: u64 = h.changes.values().map(|c| c.replaced).sum();
                let rejected: u64 = h.changes.values().map(|c| c.rejected).sum();
                println!(
                    "{:>7}  {:<20}  {:<8} {added:>10} {replaced:>10} {rejected:>10}  {}",
                    h.version,
                    h.loaded_at,
                    h.mode.to_string(),
                    h.source
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Query {
            args,
            format,
            headers,
            model,
            repeat,
            no_cache,
        } => {
            let model = query_cmd::load_model(&cli.data, model.as_ref())?;
            let (query, audience) = args.query()?;
            let wh = Warehouse::open(&cli.data)?;
            let snapshot = wh.snapshot(args.as_of)?;
            let rt = runtime()?;
            let engine = args.engine(model, !no_cache);
            let mut times = Vec::new();
            let result = rt.block_on(async {
                let ctx = snapshot.session().await?;
                let mut result = None;
                for _ in 0..repeat.max(1) {
                    let started = std::time::Instant::now();
                    result = Some(engine.run(&ctx, &query, &audience).await?);
                    times.push(started.elapsed().as_secs_f64() * 1000.0);
                }
                Ok::<_, anyhow::Error>(result.expect("at least one run"))
            })?;
            if repeat > 1 {
                eprintln!(
                    "{} runs: first {:.1} ms, median {:.1} ms ({}, {})",
                    times.len(),
                    times[0],
                    bench::median(&times),
                    if args.no_rollups {
                        "no rollups"
                    } else {
                        "rollups"
                    },
                    if no_cache {
                        "no result cache"
                    } else {
                        "result cache"
                    }
                );
            }
            query_cmd::print(&result, format, headers, &engine.model)?;
            if args.benchmark {
                let withheld = result.rows().iter().any(|r| {
                    r.count("benchmark_partners")
                        .is_some_and(|n| n < prism_engine::BENCHMARK_MIN_PARTNERS)
                });
                if withheld {
                    eprintln!(
                        "note: figures over fewer than {} partners are withheld",
                        prism_engine::BENCHMARK_MIN_PARTNERS
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain {
            args,
            model,
            analyze,
        } => {
            let model = query_cmd::load_model(&cli.data, model.as_ref())?;
            let (query, audience) = args.query()?;
            let engine = args.engine(model, false);
            let rt = runtime()?;
            let wh = Warehouse::open(&cli.data)?;
            let snapshot = match wh.snapshot(args.as_of) {
                Ok(s) => Some(s),
                Err(WarehouseError::Empty) if !analyze => None,
                Err(e) => return Err(e.into()),
            };
            rt.block_on(async {
                let ctx = match &snapshot {
                    Some(s) => Some(s.session().await?),
                    None => None,
                };
                let compiled = query_cmd::explain(&engine, ctx.as_deref(), &query, &audience)?;
                if analyze && let Some(ctx) = &ctx {
                    let batches = engine.explain_plan(ctx, &compiled, true).await?;
                    println!(
                        "plan (executed):\n{}",
                        arrow::util::pretty::pretty_format_batches(&batches)?
                    );
                }
                Ok::<_, anyhow::Error>(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Model { all, model } => {
            query_cmd::print_model(&query_cmd::load_model(&cli.data, model.as_ref())?, all);
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate { out, scale, seed } => {
            let started = std::time::Instant::now();
            let summary = generate(&GenerateConfig {
                out: out.clone(),
                scale,
                seed,
            })?;
            for (entity, rows) in &summary.rows {
                println!("{:<26} {rows:>12} rows", entity.file_name());
            }
            println!(
                "wrote {} ({:.1} MB) in {:.1} s",
                out.display(),
                summary.bytes as f64 / 1e6,
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            addr,
            secure_cookies,
            model,
            no_rollups,
            no_cache,
            options,
        } => {
            let model = query_cmd::load_model(&cli.data, model.as_ref())?;
            let engine = if no_cache {
                Engine::new(model)
            } else {
                Engine::with_result_cache(model, prism_web::RESULT_CACHE_BYTES)
            };
            let engine = if no_rollups {
                engine.without_rollups()
            } else {
                engine
            };
            web_cmd::serve(
                &cli.data,
                engine,
                &addr,
                secure_cookies,
                &options,
                &runtime()?,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Alerts { command } => {
            alerts_cmd::run(&cli.data, command, &runtime()?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Users { command } => {
            web_cmd::users(&cli.data, command)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Analysis(analysis) => {
            analyses_cmd::run(&cli.data, analysis, &runtime()?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { scale, runs, dir } => {
            bench::run(&bench::BenchArgs { scale, runs, dir }, &runtime()?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::LoadTest(args) => {
            load_test::run(&args, &runtime()?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            scale,
            export,
            addr,
            no_serve,
            yes,
        } => {
            // Checked before any work: the demo's passwords are in this README for all to read.
            if !no_serve {
                web_cmd::check_demo_address(&addr, yes)?;
            }
            if !export.join("partners.csv").exists() {
                println!(
                    "generating a demo export (scale {scale}) in {} ...",
                    export.display()
                );
                generate(&GenerateConfig {
                    out: export.clone(),
                    scale,
                    seed: 42,
                })?;
            }
            let wh = Warehouse::open(&cli.data)?;
            if wh.versions()?.current().is_none() {
                println!(
                    "loading {} into {} ...",
                    export.display(),
                    wh.dir().display()
                );
                let progress = progress::Reporter::new();
                let report = runtime()?.block_on(wh.load(
                    &LoadOptions {
                        export_dir: export.clone(),
                        mode: LoadMode::Upsert,
                        quarantine: false,
                        rollups:
                            Engine::new(query_cmd::load_model(&cli.data, None)?).rollup_builds(),
                    },
                    &progress,
                ));
                progress.clear();
                print_load(&report?, Format::Table);
            } else {
                println!("the warehouse in {} is already loaded", wh.dir().display());
            }
            // The binary as it was started, so that the hints can be pasted as they are.
            let prism = std::env::current_exe()
                .map_or_else(|_| "prism".to_string(), |p| p.display().to_string());
            let data = format!("--data {}", wh.dir().display());
            println!("\nnext:");
            println!("  {prism} {data} status");
            println!("  {prism} {data} model");
            println!(
                "  {prism} {data} query --metrics closed_revenue,win_rate,csat_avg --by partner.tier"
            );
            println!(
                "  {prism} {data} query --metrics closed_revenue --by partner.partner_name --order closed_revenue:desc --limit 10"
            );
            println!("  {prism} {data} pareto");
            let sign_ins = web_cmd::demo_users(wh.dir())?;
            if no_serve {
                return Ok(ExitCode::SUCCESS);
            }
            println!("\nsign in at http://{addr}/ as any of:");
            for (name, role, password) in &sign_ins {
                println!("  {name:<10} password {password:<12} ({role})");
            }
            let engine = Engine::with_result_cache(
                query_cmd::load_model(&cli.data, None)?,
                prism_web::RESULT_CACHE_BYTES,
            );
            web_cmd::serve(
                wh.dir(),
                engine,
                &addr,
                false,
                &web_cmd::ServeOptions::default(),
                &runtime()?,
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_load(report: &LoadReport, format: Format) {
    if format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).expect("report serialises")
        );
        return;
    }
    for e in &report.file_errors {
        eprintln!("{e}");
    }
    for f in &report.files {
        for r in &f.shown {
            eprintln!("{r}");
        }
        if f.rows_rejected as usize > f.shown.len() {
            eprintln!(
                "{}: ... and more rejected rows (all of them are in the report)",
                f.file
            );
        }
        for w in &f.warnings {
            eprintln!("warning: {w}");
        }
    }
    // As wide as the longest name: a mapped file says where it came from.
    let w = report
        .files
        .iter()
        .map(|f| f.file.chars().count())
        .max()
        .unwrap_or(0)
        .max(26);
    println!(
        "{:<w$} {:>12} {:>12} {:>12} {:>12}",
        "file", "rows", "rejected", "added", "replaced"
    );
    for f in &report.files {
        if f.present {
            println!(
                "{:<w$} {:>12} {:>12} {:>12} {:>12}",
                f.file, f.rows_read, f.rows_rejected, f.added, f.replaced
            );
        } else {
            println!("{:<w$} {:>12}", f.file, "(absent)");
        }
    }
    match report.version {
        Some(v) => println!("committed warehouse version {v}"),
        None => println!("nothing was committed"),
    }
    if let Some(dir) = &report.rejects_dir {
        println!("rejected rows were set aside in {}", dir.display());
    }
    println!("report: {}", report.report_path.display());
}
