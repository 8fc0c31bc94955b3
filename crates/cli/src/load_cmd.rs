//! `prism load`, `prism status` and `prism demo`: exports into the warehouse, and what it holds.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use prism_engine::Engine;
use prism_generator::{GenerateConfig, generate};
use prism_warehouse::{LoadMode, LoadOptions, LoadReport, Warehouse, WarehouseError};

use crate::{Format, mapping_cmd, progress, query_cmd, runtime, web_cmd};

/// What `prism load` is told.
#[derive(clap::Args)]
pub struct LoadArgs {
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
}

/// Loads an export, all or nothing: 0 when committed, 2 when refused for its rows.
pub fn load(data: &Path, args: LoadArgs) -> Result<ExitCode> {
    let wh = Warehouse::open(data)
        .with_context(|| format!("opening the data folder {}", data.display()))?;
    // An export in another layout is written in the contract's first; its faults are then
    // located in the original files.
    let source = match (&args.from, &args.export_dir) {
        (Some(url), dir) => mapping_cmd::From::Database(url.clone(), dir.clone()),
        (None, Some(dir)) => mapping_cmd::From::Folder(dir.clone()),
        (None, None) => anyhow::bail!("give the export folder, or --from URL"),
    };
    let original = source.to_string();
    let mapped = match &args.mapping {
        None => None,
        Some(file) => match mapping_cmd::mapped(file, &source, data, args.format)? {
            Ok(m) => Some(m),
            Err(code) => return Ok(code),
        },
    };
    let export_dir = match &mapped {
        Some((m, _)) => m.dir.clone(),
        None => args.export_dir.expect("a folder without --from"),
    };
    // The rollups of the model in use are built with the tables, in the same version.
    let model = query_cmd::load_model(data, args.model.as_ref())?;
    let options = LoadOptions {
        export_dir,
        mode: if args.replace {
            LoadMode::Replace
        } else {
            LoadMode::Upsert
        },
        quarantine: args.quarantine,
        rollups: Engine::new(model).rollup_builds(),
    };
    let progress = progress::Reporter::new();
    let result = runtime()?.block_on(async {
        match (&mapped, &args.mapping) {
            (Some(_), Some(file)) => {
                let source = format!("{original} (through {})", file.display());
                wh.load_from(&options, &source, &progress).await
            }
            _ => wh.load(&options, &progress).await,
        }
    });
    progress.clear();
    let result =
        match &mapped {
            Some((_, locator)) => result
                .map(|r| mapping_cmd::located(r, locator))
                .map_err(|e| match e {
                    WarehouseError::Rejected(r) => {
                        WarehouseError::Rejected(Box::new(mapping_cmd::located(*r, locator)))
                    }
                    other => other,
                }),
            None => result,
        };
    match result {
        Ok(report) => {
            print_load(&report, args.format);
            Ok(ExitCode::SUCCESS)
        }
        Err(WarehouseError::Rejected(report)) => {
            print_load(&report, args.format);
            eprintln!("error: {}", WarehouseError::Rejected(report));
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e.into()),
    }
}

/// What `prism status` is told.
#[derive(clap::Args)]
pub struct StatusArgs {
    /// Show an earlier warehouse version instead of the current one.
    #[arg(long, value_name = "VERSION")]
    as_of: Option<u64>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Instead: whether each worker of --cluster is up.
    #[arg(long)]
    pub workers: bool,
}

/// The warehouse version shown, its tables' rows and rollups, and the history of loads.
pub fn status(data: &Path, args: StatusArgs) -> Result<ExitCode> {
    // Written with `?`, not `println!`: when the reader stops early (`prism status | head`)
    // the write's error ends the command quietly (see `main`), where `println!` panicked.
    let mut stdout = std::io::stdout();
    let wh = Warehouse::open(data)?;
    let versions = wh.versions()?;
    let snapshot = match wh.snapshot(args.as_of) {
        Ok(s) => Some(s),
        Err(WarehouseError::Empty) => None,
        Err(e) => return Err(e.into()),
    };
    if args.format == Format::Json {
        let value = serde_json::json!({
            "data": wh.location(),
            "current_version": versions.current().map(|v| v.version),
            "shown_version": snapshot.as_ref().map(|s| s.version.version),
            "tables": snapshot.as_ref().map(|s| s.table_rows()),
            "rollups": snapshot.as_ref().map(|s| &s.version.rollups),
            "history": versions.versions,
        });
        writeln!(stdout, "{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(stdout, "data folder: {}", wh.location())?;
    let Some(snapshot) = snapshot else {
        writeln!(
            stdout,
            "the warehouse is empty: load an export with `prism load EXPORT_DIR` (or run `prism demo`)"
        )?;
        return Ok(ExitCode::SUCCESS);
    };
    let v = &snapshot.version;
    let current = versions.current().map_or(0, |c| c.version);
    writeln!(
        stdout,
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
    )?;
    writeln!(stdout, "\n{:<22} {:>12}", "table", "rows")?;
    for (name, pin) in &v.tables {
        writeln!(stdout, "{name:<22} {:>12}", pin.rows)?;
    }
    print_rollups(data, v)?;
    writeln!(stdout, "\nhistory:")?;
    writeln!(
        stdout,
        "{:>7}  {:<20}  {:<8} {:>10} {:>10} {:>10}  source",
        "version", "loaded at", "mode", "added", "replaced", "rejected"
    )?;
    for h in &versions.versions {
        let added: u64 = h.changes.values().map(|c| c.added).sum();
        let replaced: u64 = h.changes.values().map(|c| c.replaced).sum();
        let rejected: u64 = h.changes.values().map(|c| c.rejected).sum();
        writeln!(
            stdout,
            "{:>7}  {:<20}  {:<8} {added:>10} {replaced:>10} {rejected:>10}  {}",
            h.version,
            h.loaded_at,
            h.mode.to_string(),
            h.source
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The model's rollups as a version holds them: built, built from an earlier definition (not
/// read), or not built yet.
fn print_rollups(data: &Path, v: &prism_warehouse::WarehouseVersion) -> Result<()> {
    let mut stdout = std::io::stdout();
    let engine = Engine::new(query_cmd::load_model(data, None)?);
    if engine.model.rollups.is_empty() {
        return Ok(());
    }
    writeln!(stdout, "\n{:<34} {:>12}  state", "rollup", "rows")?;
    for name in engine.model.rollups.keys() {
        let table = engine.rollup_table(name);
        match v.rollups.get(&table) {
            Some(pin) if pin.by_slices => writeln!(
                stdout,
                "{name:<34} {:>12}  brought up to date ({} ms)",
                pin.rows, pin.build_ms
            )?,
            Some(pin) => writeln!(
                stdout,
                "{name:<34} {:>12}  built ({} ms)",
                pin.rows, pin.build_ms
            )?,
            None if v.rollups.keys().any(|t| prism_engine::is_table_of(t, name)) => writeln!(
                stdout,
                "{name:<34} {:>12}  built from an earlier definition: not read until the next load rebuilds it",
                ""
            )?,
            None => writeln!(
                stdout,
                "{name:<34} {:>12}  not built: the next load builds it",
                ""
            )?,
        }
    }
    if v.rollups_build_ms > 0 {
        writeln!(
            stdout,
            "(built in {:.2} s by the load of this version)",
            v.rollups_build_ms as f64 / 1000.0
        )?;
    }
    Ok(())
}

/// What `prism demo` is told.
#[derive(clap::Args)]
pub struct DemoArgs {
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
}

/// Generates a demo export if there is none, loads it into an empty warehouse, makes the demo
/// users, says what to run next and serves the app.
pub fn demo(data: &Path, args: DemoArgs) -> Result<ExitCode> {
    // Checked before any work: the demo's passwords are in the README for all to read.
    if !args.no_serve {
        web_cmd::check_demo_address(&args.addr, args.yes)?;
    }
    if !args.export.join("partners.csv").exists() {
        say!(
            "generating a demo export (scale {}) in {} ...",
            args.scale,
            args.export.display()
        );
        generate(&GenerateConfig {
            out: args.export.clone(),
            scale: args.scale,
            seed: 42,
            partners: None,
            customers: None,
        })?;
    }
    let wh = Warehouse::open(data)?;
    if wh.versions()?.current().is_none() {
        say!(
            "loading {} into {} ...",
            args.export.display(),
            wh.location()
        );
        let progress = progress::Reporter::new();
        let report = runtime()?.block_on(wh.load(
            &LoadOptions::upsert(
                args.export.clone(),
                Engine::new(query_cmd::load_model(data, None)?).rollup_builds(),
            ),
            &progress,
        ));
        progress.clear();
        print_load(&report?, Format::Table);
    } else {
        say!("the warehouse in {} is already loaded", wh.location());
    }
    print_next_steps(wh.dir());
    let sign_ins = web_cmd::demo_users(data)?;
    if args.no_serve {
        return Ok(ExitCode::SUCCESS);
    }
    say!("\nsign in at http://{}/ as any of:", args.addr);
    for (name, role, password) in &sign_ins {
        say!("  {name:<10} password {password:<12} ({role})");
    }
    let engine = Engine::with_result_cache(
        query_cmd::load_model(data, None)?,
        prism_web::RESULT_CACHE_BYTES,
    );
    web_cmd::serve(
        data,
        engine,
        &args.addr,
        false,
        &web_cmd::ServeOptions::default(),
        &runtime()?,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Commands to try on the demo's warehouse, with the binary as it was started, so that they
/// can be pasted as they are.
fn print_next_steps(data: &Path) {
    let prism =
        std::env::current_exe().map_or_else(|_| "prism".to_string(), |p| p.display().to_string());
    let data = format!("--data {}", data.display());
    say!("\nnext:");
    say!("  {prism} {data} status");
    say!("  {prism} {data} model");
    say!("  {prism} {data} query --metrics closed_revenue,win_rate,csat_avg --by partner.tier");
    say!(
        "  {prism} {data} query --metrics closed_revenue --by partner.partner_name --order closed_revenue:desc --limit 10"
    );
    say!("  {prism} {data} pareto");
}

/// Where the load's time went: the stages one after the other, and inside staging the busy
/// time of each overlapping phase.
fn print_phases(p: &prism_warehouse::LoadPhases) {
    let s = |ms: u64| format!("{:.1} s", ms as f64 / 1000.0);
    say!(
        "time: {} (warehouse keys {}, staging {}, committing {}, rollups {}, switching {})",
        s(p.total_ms),
        s(p.warehouse_keys_ms),
        s(p.staging_ms),
        s(p.committing_ms),
        s(p.rollups_ms),
        s(p.switching_ms)
    );
    say!(
        "staging's threads busy: reading {}, checking {}, ordering {}, writing {}",
        s(p.reading_ms),
        s(p.checking_ms),
        s(p.ordering_ms),
        s(p.writing_ms)
    );
}

/// Prints a load's report: each rejection and warning, the files' rows, and what was committed.
pub(crate) fn print_load(report: &LoadReport, format: Format) {
    if format == Format::Json {
        say!(
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
    say!(
        "{:<w$} {:>12} {:>12} {:>12} {:>12}",
        "file",
        "rows",
        "rejected",
        "added",
        "replaced"
    );
    for f in &report.files {
        if f.present {
            say!(
                "{:<w$} {:>12} {:>12} {:>12} {:>12}",
                f.file,
                f.rows_read,
                f.rows_rejected,
                f.added,
                f.replaced
            );
        } else {
            say!("{:<w$} {:>12}", f.file, "(absent)");
        }
    }
    match report.version {
        Some(v) => say!("committed warehouse version {v}"),
        None => say!("nothing was committed"),
    }
    if report.committed {
        print_phases(&report.phases);
    }
    if let Some(dir) = &report.rejects_dir {
        say!("rejected rows were set aside in {}", dir.display());
    }
    say!("report: {}", report.report_path.display());
}
