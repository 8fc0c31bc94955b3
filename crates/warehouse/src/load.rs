//! `prism load`: validate a whole export, then commit it as one new warehouse version.
//!
//! 1. Put back whatever a crashed load left behind (Delta versions past the pinned ones).
//! 2. Validate every file, dimensions first, streaming valid rows to staged Parquet. References
//!    are checked against this export's dimensions plus the warehouse's.
//! 3. Any rejected row without `--quarantine`: remove the staging, write the report, stop. Delta
//!    has not been touched.
//! 4. Commit each touched table to Delta (append, overwrite, or merge by key).
//! 5. Switch `warehouse.json`: only now do readers see the load. Dying anywhere before this
//!    leaves the previous version current, and step 1 of the next load cleans up.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::record_batch::RecordBatch;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use deltalake::DeltaTable;
use deltalake::protocol::SaveMode;
use prism_contract::{
    CHUNK_ROWS, Entity, FileError, FileReader, IdStatus, KeyRegistry, KnownIds, Rejection, Rule,
    ValidatedChunk,
};
use serde::Serialize;

use crate::staging::{StagedTable, remove_dir_if_exists};
use crate::versions::{LoadMode, RollupPin, TableChange, TablePin, VersionFile, WarehouseVersion};
use crate::{Result, Warehouse, WarehouseError, open_table_at, table_url};

/// On screen, a report shows this many rejections per file; the JSON report has all of them.
pub const SHOWN_PER_FILE: usize = 100;

/// Threads validating rows of one file: one per core. Reading, putting in order and Parquet
/// encoding share the cores with them; more validators than cores measured slower.
fn validators() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(8))
}

#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    pub export_dir: PathBuf,
    pub mode: LoadMode,
    /// Load the valid rows and set the rejected ones aside, instead of refusing the export.
    pub quarantine: bool,
    /// The rollups to build from the loaded tables, in this order, into the same version.
    pub rollups: Vec<RollupBuild>,
}

/// A rollup to build: the table it becomes, its definition (SQL over the entity tables), and the
/// SQL that builds it, which may read the rollups built before it in the same load. The table
/// keeps the column types of the definition, whichever way it was built. The warehouse runs
/// these as given; what a rollup means is the engine's business.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollupBuild {
    /// The rollup's name in the model, for progress and reports.
    pub name: String,
    pub table: String,
    pub definition: String,
    pub sql: String,
    /// The rollup table `sql` reads, built earlier in the same load; none: the entity tables.
    pub from: Option<String>,
    /// The entity tables the definition reads: when none of them changed since the version
    /// before, the rollup it built is kept as it is.
    pub reads: Vec<String>,
    /// The column whose order the rows are written in, so that a query filtering on it reads
    /// only its slice of the rollup.
    pub cluster_by: Option<String>,
}

/// Callbacks for progress display; the warehouse knows nothing of terminals.
pub trait LoadProgress: Sync {
    fn file_started(&self, _file: &str, _bytes: u64) {}
    fn file_advanced(&self, _file: &str, _bytes_done: u64) {}
    fn file_finished(&self, _file: &str, _rows: u64, _rejected: u64) {}
    fn step(&self, _message: &str) {}
}

pub struct NoProgress;
impl LoadProgress for NoProgress {}

/// What happened to one file of the export.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FileOutcome {
    pub file: String,
    pub present: bool,
    pub rows_read: u64,
    pub rows_loaded: u64,
    pub rows_rejected: u64,
    pub added: u64,
    pub replaced: u64,
    pub warnings: Vec<String>,
    /// The first rejections of this file, for the screen.
    #[serde(skip)]
    pub shown: Vec<Rejection>,
}

/// The outcome of a load, also written as `report.json` in the load's folder.
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    pub committed: bool,
    /// The new warehouse version, when committed.
    pub version: Option<u64>,
    pub source: String,
    pub mode: LoadMode,
    pub quarantine: bool,
    pub started_at: String,
    pub finished_at: String,
    pub files: Vec<FileOutcome>,
    /// Problems with whole files (missing, unreadable header, no rows where rows are needed).
    pub file_errors: Vec<Rejection>,
    pub report_path: PathBuf,
    /// Where quarantined rows went, when any were.
    pub rejects_dir: Option<PathBuf>,
}

impl LoadReport {
    pub fn rows_rejected(&self) -> u64 {
        self.files.iter().map(|f| f.rows_rejected).sum()
    }
}

type FastSet<T> = HashSet<T, foldhash::fast::RandomState>;

/// The ids (and product lines) that the rows of an export may refer to.
#[derive(Default)]
struct KnownIdSet {
    /// The ids of each entity that a file of this export refers to: those of the warehouse
    /// and of the export's own valid rows. An entity nothing refers to is not read at all
    /// (a warehouse's opportunity ids are read only when deal registrations come).
    ids: HashMap<Entity, FastSet<String>>,
    /// Every product line of the products, which certifications may name.
    product_lines: FastSet<String>,
    /// Ids whose row was rejected in this export.
    rejected: HashSet<(Entity, String)>,
    /// Entities whose file could not be read at all: the load fails for that already, and
    /// checking references against them would only bury that one error under a row per fact.
    unchecked: HashSet<Entity>,
}

impl KnownIdSet {
    /// Tracks the entities that the files present in `export` refer to.
    fn for_export(export: &Path) -> KnownIdSet {
        let mut known = KnownIdSet::default();
        for entity in Entity::ALL {
            if !export.join(entity.file_name()).exists() {
                continue;
            }
            for c in entity.columns() {
                if let Rule::References(target) | Rule::ValueOf(target, _) = c.rule {
                    known.ids.entry(target).or_default();
                }
            }
        }
        known
    }

    fn set_mut(&mut self, entity: Entity) -> Option<&mut FastSet<String>> {
        self.ids.get_mut(&entity)
    }

    fn tracks(&self, entity: Entity) -> bool {
        self.ids.contains_key(&entity)
    }
}

impl KnownIds for KnownIdSet {
    fn lookup(&self, entity: Entity, id: &str) -> IdStatus {
        let known = self.ids.get(&entity).is_some_and(|s| s.contains(id));
        if known || self.unchecked.contains(&entity) {
            IdStatus::Known
        } else if self.rejected.contains(&(entity, id.to_string())) {
            IdStatus::Rejected
        } else {
            IdStatus::Unknown
        }
    }

    fn has_value(&self, entity: Entity, column: &str, value: &str) -> bool {
        match (entity, column) {
            (Entity::Products, "product_line") => {
                self.unchecked.contains(&entity) || self.product_lines.contains(value)
            }
            _ => false,
        }
    }
}

/// Streams every rejection into the JSON report as it is found, so that an export with millions
/// of bad rows is reported in full without holding them in memory.
struct ReportWriter {
    out: BufWriter<File>,
    path: PathBuf,
    first: bool,
}

impl ReportWriter {
    fn create(path: PathBuf) -> Result<ReportWriter> {
        let f = File::create(&path).map_err(|e| WarehouseError::io(&path, e))?;
        let mut out = BufWriter::new(f);
        out.write_all(b"{\"rejections\": [")
            .map_err(|e| WarehouseError::io(&path, e))?;
        Ok(ReportWriter {
            out,
            path,
            first: true,
        })
    }

    fn rejection(&mut self, r: &Rejection) -> Result<()> {
        let sep: &[u8] = if self.first { b"\n  " } else { b",\n  " };
        self.first = false;
        self.out
            .write_all(sep)
            .map_err(|e| WarehouseError::io(&self.path, e))?;
        serde_json::to_writer(&mut self.out, r)
            .map_err(|e| WarehouseError::io(&self.path, e.into()))
    }

    fn finish(mut self, report: &LoadReport) -> Result<()> {
        let summary = serde_json::to_string_pretty(report).expect("report serialises");
        write!(self.out, "\n],\n\"summary\": {summary}\n}}\n")
            .map_err(|e| WarehouseError::io(&self.path, e))?;
        let f = self
            .out
            .into_inner()
            .map_err(|e| WarehouseError::io(&self.path, e.into_error()))?;
        f.sync_all().map_err(|e| WarehouseError::io(&self.path, e))
    }
}

/// Rejected rows of one file in quarantine mode: the original columns, unchanged, followed by
/// the line and the reason. Unknown columns are ignored by a load, so a corrected rejects file
/// can be loaded again as it is.
struct RejectsFile {
    writer: csv::Writer<BufWriter<File>>,
    path: PathBuf,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Holds the load lock for the duration of a load.
struct LoadLock {
    _file: File,
}

fn lock(dir: &Path) -> Result<LoadLock> {
    let path = dir.join(".lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| WarehouseError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(LoadLock { _file: file }),
        Err(fs::TryLockError::WouldBlock) => Err(WarehouseError::Locked(dir.to_path_buf())),
        Err(fs::TryLockError::Error(e)) => Err(WarehouseError::io(&path, e)),
    }
}

/// Puts back whatever a load that died before switching `warehouse.json` left behind: Delta
/// versions past the pinned ones are restored to the pinned state, tables that no version pins
/// are removed, and the staging folder goes.
async fn recover(
    wh: &Warehouse,
    current: Option<&WarehouseVersion>,
    progress: &dyn LoadProgress,
) -> Result<()> {
    remove_dir_if_exists(&wh.dir.join("staging"))?;
    let _ = fs::remove_file(wh.dir.join(format!("{}.tmp", crate::versions::FILE_NAME)));
    for entity in Entity::ALL {
        let dir = wh.table_dir(entity);
        if !dir.exists() {
            continue;
        }
        match current.and_then(|v| v.tables.get(entity.name())) {
            None => {
                progress.step(&format!(
                    "removing {} left by an unfinished load",
                    entity.name()
                ));
                remove_dir_if_exists(&dir)?;
            }
            Some(pin) => {
                let latest = deltalake::open_table(table_url(&dir)?).await?;
                let latest_version = latest.version().unwrap_or(0);
                if latest_version > pin.delta_version {
                    progress.step(&format!(
                        "restoring {} to version {} (an unfinished load had reached {latest_version})",
                        entity.name(),
                        pin.delta_version
                    ));
                    latest
                        .restore()
                        .with_version_to_restore(pin.delta_version)
                        .await?;
                }
            }
        }
    }
    Ok(())
}

/// The ids already in the warehouse, for reference checks.
async fn warehouse_ids(
    wh: &Warehouse,
    current: &WarehouseVersion,
    known: &mut KnownIdSet,
) -> Result<()> {
    let tracked: Vec<Entity> = Entity::ALL
        .into_iter()
        .filter(|e| known.tracks(*e))
        .collect();
    for entity in tracked {
        let Some(pin) = current.tables.get(entity.name()) else {
            continue;
        };
        let table = open_table_at(&wh.table_dir(entity), pin.delta_version).await?;
        let ctx = SessionContext::new();
        table.update_datafusion_session(&ctx.state())?;
        ctx.register_table("t", table.table_provider().await?)?;
        let key = entity.key()[0];
        let batches = ctx
            .sql(&format!("SELECT {key} FROM t"))
            .await?
            .collect()
            .await?;
        let set = known.set_mut(entity).expect("tracked");
        for b in batches {
            let ids = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8)
                .map_err(datafusion::error::DataFusionError::from)?;
            for id in ids.as_string::<i32>().iter().flatten() {
                set.insert(id.to_string());
            }
        }
        if entity == Entity::Products {
            let batches = ctx
                .sql("SELECT DISTINCT product_line FROM t")
                .await?
                .collect()
                .await?;
            for b in batches {
                let lines = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8)
                    .map_err(datafusion::error::DataFusionError::from)?;
                for line in lines.as_string::<i32>().iter().flatten() {
                    known.product_lines.insert(line.to_string());
                }
            }
        }
    }
    Ok(())
}

pub(crate) async fn run(
    wh: &Warehouse,
    options: &LoadOptions,
    progress: &dyn LoadProgress,
) -> Result<LoadReport> {
    let _lock = lock(&wh.dir)?;
    let started_at = now_rfc3339();
    let export = &options.export_dir;
    if !export.is_dir() {
        return Err(WarehouseError::Export(format!(
            "{}: not a folder (an export is a folder of CSV files)",
            export.display()
        )));
    }
    let mut versions = VersionFile::read(&wh.dir)?;
    let current = versions.current().cloned();
    recover(wh, current.as_ref(), progress).await?;

    let load_id = format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let load_dir = wh.dir.join("loads").join(&load_id);
    fs::create_dir_all(&load_dir).map_err(|e| WarehouseError::io(&load_dir, e))?;
    let report_path = load_dir.join("report.json");
    let mut report_writer = ReportWriter::create(report_path.clone())?;
    let staging_dir = wh.dir.join("staging").join(&load_id);

    let first_load = current.is_none() || options.mode == LoadMode::Replace;
    let mut known = KnownIdSet::for_export(export);
    if let (Some(cur), LoadMode::Upsert) = (&current, options.mode) {
        progress.step("reading the ids already in the warehouse");
        warehouse_ids(wh, cur, &mut known).await?;
    }

    let mut report = LoadReport {
        committed: false,
        version: None,
        source: export.display().to_string(),
        mode: options.mode,
        quarantine: options.quarantine,
        started_at,
        finished_at: String::new(),
        files: Vec::new(),
        file_errors: Vec::new(),
        report_path: report_path.clone(),
        rejects_dir: None,
    };
    // Tables to commit, with the rows staged for each.
    let mut staged: Vec<(Entity, PathBuf, u64)> = Vec::new();

    let outcome = validate_and_stage(
        export,
        options,
        first_load,
        &staging_dir,
        &load_dir,
        &mut known,
        &mut report,
        &mut report_writer,
        &mut staged,
        progress,
    );
    if let Err(e) = outcome {
        let _ = remove_dir_if_exists(&staging_dir);
        report.finished_at = now_rfc3339();
        let _ = report_writer.finish(&report);
        return Err(e);
    }
    if !report.file_errors.is_empty() || (!options.quarantine && report.rows_rejected() > 0) {
        remove_dir_if_exists(&wh.dir.join("staging"))?;
        report.finished_at = now_rfc3339();
        report_writer.finish(&report)?;
        return Err(WarehouseError::Rejected(Box::new(report)));
    }

    // Commit each table to Delta; nothing is visible until warehouse.json switches.
    let mut pins: BTreeMap<String, TablePin> = current
        .as_ref()
        .map(|c| c.tables.clone())
        .unwrap_or_default();
    let mut changes: BTreeMap<String, TableChange> = BTreeMap::new();
    let commit_result = async {
        for (entity, dir, rows) in &staged {
            progress.step(&format!("committing {}", entity.name()));
            let prev = pins.get(entity.name()).cloned();
            let (pin, change) = commit_table(wh, *entity, dir, *rows, prev, options.mode).await?;
            pins.insert(entity.name().to_string(), pin);
            changes.insert(entity.name().to_string(), change);
        }
        Ok::<(), WarehouseError>(())
    }
    .await;
    // The rollups, from the tables just committed: in the same warehouse version, so that no
    // reader ever sees a rollup that disagrees with its base tables.
    let rollups_started = std::time::Instant::now();
    let commit_result = match commit_result {
        Ok(()) => build_rollups(wh, &pins, current.as_ref(), &options.rollups, progress).await,
        Err(e) => Err(e),
    };
    let rollups_build_ms = rollups_started.elapsed().as_millis() as u64;
    let rollups = match commit_result {
        Ok(r) => r,
        Err(e) => {
            // The Delta commits made so far are past the pinned versions: put them back now (or,
            // if that fails too, at the start of the next load).
            let _ = recover(wh, current.as_ref(), progress).await;
            report.finished_at = now_rfc3339();
            let _ = report_writer.finish(&report);
            return Err(e);
        }
    };
    for f in &mut report.files {
        if let Some(c) = Entity::ALL
            .iter()
            .find(|e| e.file_name() == f.file)
            .and_then(|e| changes.get_mut(e.name()))
        {
            c.rows_read = f.rows_read;
            c.rejected = f.rows_rejected;
            f.added = c.added;
            f.replaced = c.replaced;
        }
    }
    let version = current.as_ref().map_or(1, |c| c.version + 1);
    versions.versions.push(WarehouseVersion {
        version,
        loaded_at: now_rfc3339(),
        source: report.source.clone(),
        mode: options.mode,
        quarantine: options.quarantine,
        tables: pins,
        changes,
        rollups,
        rollups_build_ms,
    });
    progress.step("switching the warehouse version");
    versions.write(&wh.dir)?;
    remove_dir_if_exists(&wh.dir.join("staging"))?;
    report.committed = true;
    report.version = Some(version);
    report.finished_at = now_rfc3339();
    report_writer.finish(&report)?;
    Ok(report)
}

/// Builds each rollup over the base tables at `pins` (and the rollups built before it), writing
/// it whole as a new Delta version of `rollups/<table>/`. Nothing is visible until the version
/// that pins them is switched.
pub(crate) async fn build_rollups(
    wh: &Warehouse,
    pins: &BTreeMap<String, TablePin>,
    previous: Option<&WarehouseVersion>,
    builds: &[RollupBuild],
    progress: &dyn LoadProgress,
) -> Result<BTreeMap<String, RollupPin>> {
    let mut out = BTreeMap::new();
    if builds.is_empty() {
        return Ok(out);
    }
    // A rollup whose tables this load left as they were is kept: the same definition over the
    // same Delta versions is the same rows.
    let mut kept = BTreeMap::new();
    if let Some(prev) = previous {
        for b in builds {
            let unchanged = b.reads.iter().all(|t| {
                prev.tables.get(t).map(|p| p.delta_version) == pins.get(t).map(|p| p.delta_version)
            });
            if let (true, Some(pin)) = (unchanged, prev.rollups.get(&b.table)) {
                kept.insert(b.table.clone(), pin.clone());
            }
        }
    }
    let ctx = SessionContext::new_with_config(crate::session_config()?);
    let cores = ctx.state().config().target_partitions();
    // The kept rollups are registered too: others may be built from them.
    crate::register_tables(&wh.dir, pins, &kept, &ctx).await?;
    if !kept.is_empty() {
        progress.step(&format!(
            "keeping {} rollup(s) whose tables did not change",
            kept.len()
        ));
    }
    out.extend(kept.clone());
    // A build starts as soon as its source is built, the costliest ready build first, at most
    // one per core at a time, each on its own core: the two builds over the order lines take
    // most of the time, and each of them running alone on a core from the start, with the
    // small ones (and the rollups built from rollups) filling the other core, ends them sooner
    // than all of them sharing every core (no shuffle between the phases of an aggregation,
    // and the longest build no longer waits for its share behind short ones).
    let mut waiting: Vec<&RollupBuild> = builds
        .iter()
        .filter(|b| !kept.contains_key(&b.table))
        .collect();
    let slots = cores.min(waiting.len()).max(1);
    ctx.state_ref()
        .write()
        .config_mut()
        .options_mut()
        .execution
        .target_partitions = (cores / slots).max(1);
    // Rows a build reads, as its expected cost: a base table's from the pins, a rollup's once
    // it is built.
    let mut rows_of: BTreeMap<String, u64> =
        pins.iter().map(|(t, p)| (t.clone(), p.rows)).collect();
    rows_of.extend(kept.iter().map(|(t, p)| (t.clone(), p.rows)));
    let mut tasks = tokio::task::JoinSet::new();
    while !waiting.is_empty() || !tasks.is_empty() {
        // Ready: every source built (or kept), not started.
        let mut ready: Vec<&RollupBuild> = waiting
            .iter()
            .copied()
            .filter(|b| b.from.as_ref().is_none_or(|f| out.contains_key(f)))
            .collect();
        if ready.is_empty() && tasks.is_empty() {
            return Err(WarehouseError::Staging(
                "the rollups read each other in a circle".into(),
            ));
        }
        let cost = |b: &RollupBuild| match &b.from {
            Some(f) => rows_of.get(f).copied().unwrap_or(0),
            None => b.reads.iter().filter_map(|t| rows_of.get(t)).sum(),
        };
        ready.sort_by_key(|b| std::cmp::Reverse(cost(b)));
        for b in ready.into_iter().take(slots - tasks.len()) {
            progress.step(&format!("building rollup {}", b.name));
            waiting.retain(|w| w.table != b.table);
            tasks.spawn(build_rollup(
                ctx.clone(),
                wh.rollup_dir(&b.table),
                b.clone(),
                cores,
            ));
        }
        if let Some(done) = tasks.join_next().await {
            let (b, pin, table) =
                done.map_err(|e| WarehouseError::Staging(format!("a rollup build stopped: {e}")))??;
            // Later rollups may be built from this one.
            ctx.register_table(b.table.as_str(), table)?;
            rows_of.insert(b.table.clone(), pin.rows);
            out.insert(b.table.clone(), pin);
        }
    }
    Ok(out)
}

/// The column a table's rows are kept in the order of, within each row group: the order lines
/// by product, so that a product's lines (who bought it, from whom: customer potential, a
/// product's page) are read alone; its index in the entity's schema.
fn clustered_by(entity: Entity) -> Option<usize> {
    match entity {
        Entity::Orders => entity.schema().index_of("product_id").ok(),
        _ => None,
    }
}

/// Rows per row group of a rollup's files.
const ROLLUP_ROW_GROUP_ROWS: usize = 64 * 1024;

/// Builds one rollup and writes it as a new Delta version of its folder; returns its pin and
/// its rows in memory, for the rollups built from it.
async fn build_rollup(
    ctx: SessionContext,
    dir: PathBuf,
    b: RollupBuild,
    cores: usize,
) -> Result<(
    RollupBuild,
    RollupPin,
    std::sync::Arc<datafusion::datasource::MemTable>,
)> {
    let started = std::time::Instant::now();
    // The definition is only planned, for its column types: a sum summed again is wider.
    let defined = ctx.sql(&b.definition).await?.schema().as_arrow().clone();
    let mut batches = ctx.sql(&b.sql).await?.collect().await?;
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(
        defined
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    for batch in &mut batches {
        let columns = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(datafusion::error::DataFusionError::from)?;
        *batch = RecordBatch::try_new(schema.clone(), columns)
            .map_err(datafusion::error::DataFusionError::from)?;
    }
    if batches.is_empty() {
        // An empty rollup (no rows in its fact yet) is still a table with its columns.
        batches.push(RecordBatch::new_empty(schema.clone()));
    }
    let computed = started.elapsed();
    if let Some(column) = b
        .cluster_by
        .as_deref()
        .and_then(|c| schema.index_of(c).ok())
    {
        let ordered = crate::cluster::batches_by_column(&batches, column)
            .map_err(datafusion::error::DataFusionError::from)?;
        batches = crate::cluster::slices(&ordered, ROLLUP_ROW_GROUP_ROWS);
    }
    let clustered = started.elapsed();
    let rows: u64 = batches.iter().map(|x| x.num_rows() as u64).sum();
    fs::create_dir_all(&dir).map_err(|e| WarehouseError::io(&dir, e))?;
    let table = if dir.join("_delta_log").is_dir() {
        deltalake::open_table(table_url(&dir)?).await?
    } else {
        // A new rollup: the write creates the table.
        deltalake::DeltaTableBuilder::from_url(table_url(&dir)?)?.build()?
    };
    let table = table
        .write(batches.clone())
        .with_save_mode(SaveMode::Overwrite)
        .with_schema_mode(deltalake::operations::write::SchemaMode::Overwrite)
        .with_table_name(b.table.as_str())
        // Row groups small enough for their statistics to skip whole slices of the clustered
        // column.
        .with_writer_properties(
            parquet::file::properties::WriterProperties::builder()
                .set_max_row_group_row_count(Some(ROLLUP_ROW_GROUP_ROWS))
                .build(),
        )
        .await?;
    let delta_version = table.version().ok_or_else(|| {
        WarehouseError::Corrupt(format!("rollup {} has no version after its write", b.table))
    })?;
    let pin = RollupPin {
        delta_version,
        rows,
        build_ms: started.elapsed().as_millis() as u64,
    };
    tracing::debug!(
        rollup = b.name.as_str(),
        rows,
        computed_ms = computed.as_millis() as u64,
        clustered_ms = clustered.as_millis() as u64,
        written_ms = pin.build_ms,
        "rollup built"
    );
    // Rollups built from this one read it from memory, split so that their builds can use
    // every core.
    let mut split = vec![Vec::new(); cores.max(1)];
    for (i, batch) in batches.into_iter().enumerate() {
        split[i % cores.max(1)].push(batch);
    }
    let memory = std::sync::Arc::new(datafusion::datasource::MemTable::try_new(schema, split)?);
    Ok((b, pin, memory))
}

#[allow(clippy::too_many_arguments)]
fn validate_and_stage(
    export: &Path,
    options: &LoadOptions,
    first_load: bool,
    staging_dir: &Path,
    load_dir: &Path,
    known: &mut KnownIdSet,
    report: &mut LoadReport,
    report_writer: &mut ReportWriter,
    staged: &mut Vec<(Entity, PathBuf, u64)>,
    progress: &dyn LoadProgress,
) -> Result<()> {
    for entity in Entity::ALL {
        let file_name = entity.file_name();
        let path = export.join(&file_name);
        let mut outcome = FileOutcome {
            file: file_name.clone(),
            ..FileOutcome::default()
        };
        if !path.exists() {
            if entity.is_dimension() && first_load {
                report.file_errors.push(Rejection {
                    file: file_name.clone(),
                    line: 0,
                    column_number: None,
                    column: None,
                    value: None,
                    reason: format!(
                        "{file_name} is missing: a first load{} needs partners.csv, products.csv and customers.csv",
                        if options.mode == LoadMode::Replace { " or a replace" } else { "" }
                    ),
                });
            } else if options.mode == LoadMode::Replace {
                // Replacing the warehouse with an export that has no rows of this fact.
                let table = StagedTable::start(
                    staging_dir.join(entity.name()),
                    entity.schema(),
                    clustered_by(entity),
                )?;
                let dir = table.dir.clone();
                staged.push((entity, dir, table.finish()?));
            }
            report.files.push(outcome);
            continue;
        }
        outcome.present = true;
        let bytes = fs::metadata(&path)
            .map_err(|e| WarehouseError::io(&path, e))?
            .len();
        progress.file_started(&file_name, bytes);
        let file = File::open(&path).map_err(|e| WarehouseError::io(&path, e))?;
        let mut reader = match FileReader::new(
            entity,
            file_name.clone(),
            BufReader::with_capacity(1 << 20, file),
        ) {
            Ok(r) => r,
            Err(FileError::Rejected(r)) => {
                known.unchecked.insert(entity);
                report_writer.rejection(&r)?;
                report.file_errors.push(r);
                progress.file_finished(&file_name, 0, 0);
                report.files.push(outcome);
                continue;
            }
            Err(FileError::Io { source, .. }) => return Err(WarehouseError::io(&path, source)),
        };
        outcome.warnings = reader.warnings().to_vec();
        let table = StagedTable::start(
            staging_dir.join(entity.name()),
            entity.schema(),
            clustered_by(entity),
        )?;
        let mut rejects: Option<RejectsFile> = None;
        let mut sink_error: Option<WarehouseError> = None;
        // The rejects file repeats the export's own header.
        let header: Vec<String> = reader.header().to_vec();
        let tracked = known.tracks(entity);
        let mut new_ids: Vec<String> = Vec::new();
        let mut new_product_lines: Vec<String> = Vec::new();
        let mut rejected_ids: Vec<String> = Vec::new();
        let key_position = reader.key_position();
        let mut on_reject = |faults: Vec<Rejection>, record: &csv::ByteRecord| {
            if sink_error.is_some() {
                return;
            }
            if tracked && let Some(id) = record.get(key_position) {
                rejected_ids.push(String::from_utf8_lossy(id).into_owned());
            }
            for f in &faults {
                if outcome.shown.len() < SHOWN_PER_FILE {
                    outcome.shown.push(f.clone());
                }
                if let Err(e) = report_writer.rejection(f) {
                    sink_error = Some(e);
                    return;
                }
            }
            if options.quarantine {
                let r = match &mut rejects {
                    Some(r) => r,
                    None => {
                        let dir = load_dir.join("rejects");
                        let path = dir.join(&file_name);
                        let created = fs::create_dir_all(&dir).and_then(|()| File::create(&path));
                        match created {
                            Ok(f) => {
                                let mut writer = csv::WriterBuilder::new()
                                    .flexible(true)
                                    .from_writer(BufWriter::new(f));
                                let mut h = header.clone();
                                h.push("reject_line".into());
                                h.push("reject_reason".into());
                                if let Err(e) = writer.write_record(&h) {
                                    sink_error = Some(WarehouseError::io(&path, e.into()));
                                    return;
                                }
                                rejects.insert(RejectsFile { writer, path })
                            }
                            Err(e) => {
                                sink_error = Some(WarehouseError::io(&path, e));
                                return;
                            }
                        }
                    }
                };
                let mut row = record.clone();
                row.push_field(faults[0].line.to_string().as_bytes());
                let reasons: Vec<String> = faults
                    .iter()
                    .map(|f| match &f.column {
                        Some(c) => format!("{c}: {}", f.reason),
                        None => f.reason.clone(),
                    })
                    .collect();
                row.push_field(reasons.join("; ").as_bytes());
                if let Err(e) = r.writer.write_byte_record(&row) {
                    sink_error = Some(WarehouseError::io(&r.path, e.into()));
                }
            }
        };
        // Validation runs on two workers; a reader thread feeds them chunks of raw records and
        // this thread puts their results back in file order, where duplicate keys are found,
        // rejections reported and batches handed to the stager.
        let known_ref: &KnownIdSet = known;
        let validator = reader.validator();
        // No export row is shorter than about 40 bytes; a table sized for that never grows.
        let mut keys = KeyRegistry::with_capacity((bytes / 40).min(64 << 20) as usize);
        let mut rejected_here = 0u64;
        let (chunk_tx, chunk_rx) =
            crossbeam_channel::bounded::<(u64, Vec<csv::ByteRecord>, usize)>(4);
        let (done_tx, done_rx) =
            crossbeam_channel::bounded::<(u64, Vec<csv::ByteRecord>, usize, ValidatedChunk)>(4);
        let (pool_tx, pool_rx) = crossbeam_channel::unbounded::<Vec<csv::ByteRecord>>();
        let file_for_reader = file_name.clone();
        let (mut reader, read_result) = std::thread::scope(|scope| {
            for _ in 0..validators() {
                let mut v = validator.clone();
                let rx = chunk_rx.clone();
                let tx = done_tx.clone();
                scope.spawn(move || {
                    for (seq, records, n) in rx {
                        let out = v.validate_chunk(&records[..n], known_ref);
                        if tx.send((seq, records, n, out)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(done_tx);
            drop(chunk_rx);
            let reading = scope.spawn(move || {
                let mut seq = 0u64;
                let mut last_progress = 0u64;
                let result = loop {
                    let mut records = pool_rx
                        .try_recv()
                        .unwrap_or_else(|_| vec![csv::ByteRecord::new(); CHUNK_ROWS]);
                    match reader.read_chunk(&mut records) {
                        Ok(0) => break Ok(()),
                        Ok(n) => {
                            if chunk_tx.send((seq, records, n)).is_err() {
                                break Ok(());
                            }
                            seq += 1;
                        }
                        Err(e) => break Err(e),
                    }
                    let done = reader.bytes_read();
                    if done - last_progress > (4 << 20) {
                        progress.file_advanced(&file_for_reader, done);
                        last_progress = done;
                    }
                };
                drop(chunk_tx);
                (reader, result)
            });
            let mut pending = BTreeMap::new();
            let mut next = 0u64;
            for item in done_rx {
                pending.insert(item.0, item);
                while let Some((_, records, _n, chunk)) = pending.remove(&next) {
                    next += 1;
                    let mut faults: Vec<(usize, Vec<Rejection>)> = chunk.rejected;
                    let mut keep: Option<Vec<bool>> = None;
                    for (row, (digest, index)) in chunk.keys.iter().enumerate() {
                        if !keys.first(*digest) {
                            faults.push((*index, vec![validator.duplicate(&records[*index])]));
                            keep.get_or_insert_with(|| vec![true; chunk.keys.len()])[row] = false;
                        }
                    }
                    faults.sort_by_key(|(i, _)| *i);
                    rejected_here += faults.len() as u64;
                    for (i, f) in faults {
                        on_reject(f, &records[i]);
                    }
                    if let Some(mut batch) = chunk.batch {
                        if let Some(keep) = keep {
                            batch = arrow::compute::filter_record_batch(
                                &batch,
                                &arrow::array::BooleanArray::from(keep),
                            )
                            .expect("mask matches the batch");
                        }
                        if tracked {
                            collect_ids(&batch, &mut new_ids);
                        }
                        if entity == Entity::Products {
                            collect_product_lines(&batch, &mut new_product_lines);
                        }
                        // A stopped stager reports its error from finish().
                        let _ = table.push(batch);
                    }
                    let _ = pool_tx.send(records);
                }
            }
            reading.join().expect("the reader thread does not panic")
        });
        if let Some(e) = sink_error.take() {
            return Err(e);
        }
        match read_result {
            Ok(()) => {}
            Err(FileError::Io { source, .. }) => return Err(WarehouseError::io(&path, source)),
            Err(FileError::Rejected(r)) => return Err(WarehouseError::Export(r.to_string())),
        }
        reader.add_rejected(rejected_here);
        if let Some(set) = known.set_mut(entity) {
            set.extend(new_ids);
        }
        known.product_lines.extend(new_product_lines);
        known
            .rejected
            .extend(rejected_ids.into_iter().map(|id| (entity, id)));
        if let Some(mut r) = rejects.take() {
            r.writer
                .flush()
                .map_err(|e| WarehouseError::io(&r.path, e))?;
            report.rejects_dir = Some(load_dir.join("rejects"));
        }
        let dir = table.dir.clone();
        let rows = table.finish()?;
        outcome.rows_read = reader.rows_read();
        outcome.rows_rejected = reader.rows_rejected();
        outcome.rows_loaded = rows;
        progress.file_finished(&file_name, outcome.rows_read, outcome.rows_rejected);
        if entity.is_dimension() && first_load && rows == 0 && outcome.rows_rejected == 0 {
            report.file_errors.push(Rejection {
                file: file_name.clone(),
                line: 1,
                column_number: None,
                column: None,
                value: None,
                reason: format!(
                    "{file_name} has a header but no rows: a first load needs at least one {}",
                    &entity.name()[..entity.name().len() - 1]
                ),
            });
        }
        staged.push((entity, dir, rows));
        report.files.push(outcome);
    }
    Ok(())
}

async fn create_with_staged_files(
    dir: &Path,
    entity: Entity,
    staged_dir: &Path,
    table: DeltaTable,
) -> Result<DeltaTable> {
    use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
    use deltalake::kernel::{Action, Add, StructType};
    let mut staged: Vec<PathBuf> = fs::read_dir(staged_dir)
        .map_err(|e| WarehouseError::io(staged_dir, e))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| WarehouseError::io(staged_dir, e))?;
    staged.sort();
    let mut adds = Vec::new();
    let prefix = uuid::Uuid::new_v4().simple().to_string();
    for (n, path) in staged.iter().enumerate() {
        let file = File::open(path).map_err(|e| WarehouseError::io(path, e))?;
        let rows = parquet::file::reader::FileReader::metadata(
            &parquet::file::reader::SerializedFileReader::new(file)
                .map_err(|e| WarehouseError::Staging(format!("{}: {e}", path.display())))?,
        )
        .file_metadata()
        .num_rows();
        if rows == 0 {
            continue;
        }
        let name = format!("part-{n:05}-{prefix}.parquet");
        let target = dir.join(&name);
        fs::rename(path, &target).map_err(|e| WarehouseError::io(&target, e))?;
        let size = fs::metadata(&target)
            .map_err(|e| WarehouseError::io(&target, e))?
            .len();
        adds.push(Action::Add(Add {
            path: name,
            partition_values: Default::default(),
            size: size as i64,
            modification_time: chrono::Utc::now().timestamp_millis(),
            data_change: true,
            stats: Some(format!("{{\"numRecords\":{rows}}}")),
            tags: None,
            deletion_vector: None,
            base_row_id: None,
            default_row_commit_version: None,
            clustering_provider: None,
        }));
    }
    let schema: StructType = entity
        .schema()
        .as_ref()
        .try_into_kernel()
        .map_err(|e| WarehouseError::Staging(e.to_string()))?;
    Ok(table
        .create()
        .with_columns(schema.fields().cloned())
        .with_table_name(entity.name())
        .with_actions(adds)
        .await?)
}

/// The product lines of a batch of products.
fn collect_product_lines(batch: &RecordBatch, out: &mut Vec<String>) {
    let index = Entity::Products
        .column_index("product_line")
        .expect("products have a product line");
    let lines = batch.column(index).as_string::<i32>();
    out.extend(lines.iter().flatten().map(str::to_string));
}

fn collect_ids(batch: &RecordBatch, out: &mut Vec<String>) {
    let ids = batch.column(0).as_string::<i32>();
    out.reserve(ids.len());
    for i in 0..ids.len() {
        if ids.is_valid(i) {
            out.push(ids.value(i).to_string());
        }
    }
}

/// Writes one table's staged rows into its Delta table and returns its new pin.
async fn commit_table(
    wh: &Warehouse,
    entity: Entity,
    staged_dir: &Path,
    staged_rows: u64,
    prev: Option<TablePin>,
    mode: LoadMode,
) -> Result<(TablePin, TableChange)> {
    let dir = wh.table_dir(entity);
    fs::create_dir_all(&dir).map_err(|e| WarehouseError::io(&dir, e))?;
    let ctx = SessionContext::new();
    let staged_url = format!("{}/", staged_dir.display());
    let source = ctx
        .read_parquet(
            staged_url,
            ParquetReadOptions::default().schema(entity.schema().as_ref()),
        )
        .await?;
    let table = match &prev {
        // The latest Delta version: after `recover` its state is the pinned one, and a commit
        // must build on the latest version or Delta sees a conflict.
        Some(_) => deltalake::open_table(table_url(&dir)?).await?,
        // A new table: build without loading, as there is no log to read yet.
        None => deltalake::DeltaTableBuilder::from_url(table_url(&dir)?)?.build()?,
    };
    let prev_rows = prev.as_ref().map_or(0, |p| p.rows);
    if prev.is_none() {
        // A new table: the staged files are already what the table needs, so they are moved in
        // and named by the table's first commit, without being written again.
        let table = create_with_staged_files(&dir, entity, staged_dir, table).await?;
        let delta_version = table.version().ok_or_else(|| {
            WarehouseError::Corrupt(format!("{} has no version after commit", entity.name()))
        })?;
        return Ok((
            TablePin {
                delta_version,
                rows: staged_rows,
            },
            TableChange {
                added: staged_rows,
                ..TableChange::default()
            },
        ));
    }
    let (table, change, rows): (DeltaTable, TableChange, u64) = match (mode, prev_rows) {
        (LoadMode::Replace, _) | (LoadMode::Upsert, 0) => {
            let save = if mode == LoadMode::Replace {
                SaveMode::Overwrite
            } else {
                SaveMode::Append
            };
            let t = table
                .write(Vec::new())
                .with_input_plan(source.into_unoptimized_plan())
                .with_save_mode(save)
                .with_table_name(entity.name())
                .await?;
            (
                t,
                TableChange {
                    added: staged_rows,
                    ..TableChange::default()
                },
                staged_rows,
            )
        }
        (LoadMode::Upsert, _) => {
            let columns = entity.columns();
            let predicate = entity
                .key()
                .iter()
                .map(|k| format!("target.{k} = source.{k}"))
                .collect::<Vec<_>>()
                .join(" AND ");
            let (t, metrics) = table
                .merge(source, predicate)
                .with_source_alias("source")
                .with_target_alias("target")
                .when_matched_update(|mut u| {
                    for c in columns {
                        u = u.update(c.name, format!("source.{}", c.name));
                    }
                    u
                })?
                .when_not_matched_insert(|mut i| {
                    for c in columns {
                        i = i.set(c.name, format!("source.{}", c.name));
                    }
                    i
                })?
                .await?;
            let added = metrics.num_target_rows_inserted as u64;
            let replaced = metrics.num_target_rows_updated as u64;
            (
                t,
                TableChange {
                    added,
                    replaced,
                    ..TableChange::default()
                },
                prev_rows + added,
            )
        }
    };
    let delta_version = table.version().ok_or_else(|| {
        WarehouseError::Corrupt(format!("{} has no version after commit", entity.name()))
    })?;
    Ok((
        TablePin {
            delta_version,
            rows,
        },
        change,
    ))
}
