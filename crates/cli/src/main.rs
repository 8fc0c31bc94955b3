//! `prism`: flags and glue over the library crates. Nothing here that a library should own.

/// `println!` for a command's output: when its reader has gone (`prism users list | head`), the
/// command ends there, quietly and with success, as the reader asked for no more. `println!`
/// panics instead ("failed printing to stdout", exit 101): Rust ignores SIGPIPE, and must, for a
/// query sent to a worker that breaks its connection to fail with the worker named.
macro_rules! say {
    () => {
        say!("")
    };
    ($($arg:tt)*) => {
        $crate::said(::std::io::Write::write_fmt(
            &mut ::std::io::stdout().lock(),
            format_args!("{}\n", format_args!($($arg)*)),
        ))
    };
}

/// What `say!` does with a failed write: a closed pipe ends the process with success; any
/// other failure is a failure of the command, said on stderr.
fn said(written: std::io::Result<()>) {
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing the output: {e}");
        std::process::exit(1);
    }
}

mod alerts_cmd;
mod analyses_cmd;
mod bench;
mod cluster_cmd;
mod config;
mod load_cmd;
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
use prism_generator::{ChangesConfig, GenerateConfig, GenerateSummary, generate};

/// jemalloc, not the system's allocator: glibc's kept most of what a load's rollup builds freed
/// (2.1-2.8 GB resident between builds at scale 100), so the last build's memory came on top of
/// it and the load peaked over 4 GB; jemalloc hands freed pages back. (mimalloc did too, but
/// slowed a grouping of 5.9 M customers' rows by a quarter.)
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read when it starts (`_RJEM_MALLOC_CONF` in the environment still
/// overrides them). By default an allocation of 8 MB or more (a million rows of one 8-byte
/// column, as a load's row groups are) comes from an arena that hands its pages back the moment
/// it is freed, so the next such buffer faulted in and zeroed fresh pages: a tenth of a load's
/// time. Up to 32 MB they are now served like the others, and every arena keeps freed pages two
/// seconds (not ten) for reuse: a load 0.93-0.95x the time at scale 8, 0.94x at scale 100, at
/// about the same peak memory. Larger ones (a rollup's hash tables at scale 100) are still
/// handed back at once: with those kept too, one load at scale 100 peaked at 4.2 GB instead of
/// 3.0 (BENCHMARKS.md).
// Unsafe only in name: a static of constant bytes that jemalloc reads once as its settings;
// the symbol is jemalloc's own, which no other library of the binary defines.
#[allow(unsafe_code)]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 48] = b"oversize_threshold:33554432,dirty_decay_ms:2000\0";

#[derive(Parser)]
#[command(
    name = "prism",
    version,
    about = "Partner relationship management analytics"
)]
struct Cli {
    /// The data folder holding the warehouse, or a bucket's prefix (`s3://bucket/prefix`:
    /// credentials and region from the usual AWS_* environment, and --storage-option).
    #[arg(
        long,
        global = true,
        env = "PRISM_DATA",
        default_value = "./prism-data"
    )]
    data: PathBuf,
    /// Where the app's own state lives (users, sessions, saved questions, dashboards, alerts):
    /// the data folder, unless it is a bucket; then ./prism-state.
    #[arg(long, global = true, env = "PRISM_STATE", value_name = "DIR")]
    state: Option<PathBuf>,
    /// An option of the bucket --data names, over the AWS_* environment (repeatable):
    /// aws_endpoint=http://127.0.0.1:9000, aws_allow_http=true, aws_region=eu-west-1, …
    #[arg(long = "storage-option", global = true, value_name = "KEY=VALUE")]
    storage_options: Vec<String>,
    /// A file of settings: `key = value` for `--data`, `--log-format` and every flag of
    /// `prism serve` (default: prism.toml in the current folder, if any). The environment
    /// (`PRISM_IDLE_MINUTES`) and the command line override it.
    #[arg(long, global = true, env = "PRISM_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Send the work of queries, analyses, pages and benchmarks to these workers (`prism worker`,
    /// `prism cluster up`): their addresses, separated by commas (`http://10.0.0.2:7100,…`).
    #[arg(long, global = true, env = "PRISM_CLUSTER", value_name = "WORKERS")]
    cluster: Option<String>,
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
    Load(load_cmd::LoadArgs),
    /// The current warehouse version, each table's rows, and the history of loads.
    Status(load_cmd::StatusArgs),
    /// Write a realistic demo export to the data contract.
    Generate {
        #[arg(long)]
        out: PathBuf,
        /// 1 is about one million order lines.
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// How many partners, instead of the scale's (300 × √scale).
        #[arg(long)]
        partners: Option<usize>,
        /// How many customers, instead of the scale's (45,000 × scale).
        #[arg(long)]
        customers: Option<usize>,
        /// Instead of an export, a day's changes to this one: new orders after its last, and
        /// corrections to its recent order lines, for `prism load` to apply on top of it.
        #[arg(long, value_name = "EXPORT", conflicts_with_all = ["scale", "partners", "customers"])]
        changes_of: Option<PathBuf>,
        /// With --changes-of: the changed and new order lines together as a share of the
        /// export's (0.01: 1 %), half of each.
        #[arg(long, default_value_t = 0.01, requires = "changes_of")]
        share: f64,
    },
    /// Compute metrics, cut by dimensions, for a period and a scope.
    Query(query_cmd::QueryCommand),
    /// Show the definitions a query uses and the SQL it compiles to, without running it.
    Explain(query_cmd::ExplainCommand),
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
        /// How many partners, instead of the scale's: with --customers, the shape of a brand
        /// owner with many partners and customers (2146 and 480000 at scale 8, say).
        #[arg(long)]
        partners: Option<usize>,
        /// How many customers, instead of the scale's.
        #[arg(long)]
        customers: Option<usize>,
    },
    /// Signed-in users of every role asking a running app at once: requests per second,
    /// latency percentiles, errors, and whether any answer mixed two warehouse versions.
    LoadTest(load_test::LoadTestArgs),
    /// Generate a demo export if there is none, load it, and say what to run next.
    Demo(load_cmd::DemoArgs),
    /// Run a worker of a cluster: it runs the stages of questions that coordinators (any prism
    /// command given --cluster) send it, reading the same --data.
    Worker(cluster_cmd::WorkerArgs),
    /// Start a cluster's workers on this machine, for tests and demos.
    Cluster {
        #[command(subcommand)]
        command: cluster_cmd::ClusterCommand,
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
        // A page's build nests deep futures over DataFusion's planning, which recurses: room
        // to spare over tokio's 2 MiB, whatever the build's optimisation.
        .thread_stack_size(8 << 20)
        .build()
        .context("starting the async runtime")
}

/// The global flags that say where things are: the bucket's options, the app's state folder,
/// the cluster.
fn settle_places(cli: &Cli) -> Result<()> {
    let options = cli
        .storage_options
        .iter()
        .map(|o| {
            o.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .with_context(|| format!("--storage-option {o:?}: expected KEY=VALUE"))
        })
        .collect::<Result<Vec<_>>>()?;
    prism_warehouse::set_storage_options(&options)?;
    web_cmd::set_state_folder(cli.state.clone().unwrap_or_else(|| {
        if prism_warehouse::is_remote(&cli.data) {
            PathBuf::from("./prism-state")
        } else {
            cli.data.clone()
        }
    }));
    cluster_cmd::set(cli.cluster.as_deref())
}

/// `prism generate`: the export written, and each file's rows.
fn generate_export(config: &GenerateConfig) -> Result<()> {
    let started = std::time::Instant::now();
    let summary = generate(config)?;
    print_generated(&summary, &config.out, started);
    Ok(())
}

fn generate_changes(config: &ChangesConfig) -> Result<()> {
    let started = std::time::Instant::now();
    let summary = prism_generator::generate_changes(config)?;
    print_generated(&summary, &config.out, started);
    Ok(())
}

/// What `prism generate` wrote: each file's rows, the folder, its size and the time taken.
fn print_generated(summary: &GenerateSummary, out: &std::path::Path, started: std::time::Instant) {
    for (entity, rows) in &summary.rows {
        say!("{:<26} {rows:>12} rows", entity.file_name());
    }
    say!(
        "wrote {} ({:.1} MB) in {:.1} s",
        out.display(),
        summary.bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
}

fn run(cli: Cli) -> Result<ExitCode> {
    settle_places(&cli)?;
    let data = &cli.data;
    match cli.command {
        Command::Load(args) => return load_cmd::load(data, args),
        Command::Status(args) if args.workers => return cluster_cmd::status(&runtime()?),
        Command::Status(args) => return load_cmd::status(data, args),
        Command::Demo(args) => return load_cmd::demo(data, args),
        Command::Query(c) => query_cmd::query(data, c)?,
        Command::Explain(c) => query_cmd::explain_command(data, c)?,
        Command::Model { all, model } => {
            query_cmd::print_model(&query_cmd::load_model(data, model.as_ref())?, all)?
        }
        Command::Generate {
            out,
            seed,
            changes_of: Some(export),
            share,
            ..
        } => generate_changes(&ChangesConfig {
            export,
            out,
            share,
            seed,
        })?,
        Command::Generate {
            out,
            scale,
            seed,
            partners,
            customers,
            ..
        } => generate_export(&GenerateConfig {
            out,
            scale,
            seed,
            partners,
            customers,
        })?,
        Command::Serve {
            addr,
            secure_cookies,
            model,
            no_rollups,
            no_cache,
            options,
        } => {
            prism_warehouse::set_file_cache_mb(options.file_cache_mb);
            let model = query_cmd::load_model(data, model.as_ref())?;
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
            web_cmd::serve(data, engine, &addr, secure_cookies, &options, &runtime()?)?;
        }
        Command::Alerts { command } => alerts_cmd::run(data, command, &runtime()?)?,
        Command::Users { command } => web_cmd::users(data, command)?,
        Command::Analysis(analysis) => analyses_cmd::run(data, analysis, &runtime()?)?,
        Command::Bench {
            scale,
            runs,
            dir,
            partners,
            customers,
        } => bench::run(
            &bench::BenchArgs {
                scale,
                runs,
                dir,
                partners,
                customers,
            },
            &runtime()?,
        )?,
        Command::LoadTest(args) => load_test::run(&args, &runtime()?)?,
        Command::Worker(args) => cluster_cmd::worker(data, &args, &runtime()?)?,
        Command::Cluster {
            command: cluster_cmd::ClusterCommand::Up { workers },
        } => cluster_cmd::up(data, &cli.storage_options, workers, &runtime()?)?,
    }
    Ok(ExitCode::SUCCESS)
}
