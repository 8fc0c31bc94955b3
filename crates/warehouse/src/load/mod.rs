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
//!
//! This module is the pipeline and its recovery; each job is a module of its own: `validate`
//! (reading, validating and staging), `report` (the report and quarantine files), `commit`
//! (staged rows into Delta) and `rollups` (the rollups of the new version).

mod commit;
mod lease;
mod maintain;
pub(crate) mod phases;
mod report;
mod rollups;
mod validate;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use prism_contract::Entity;

use crate::staging::remove_dir_if_exists;
use crate::storage::Root;
use crate::versions::{LoadMode, TableChange, TablePin, VersionFile, WarehouseVersion};
use crate::{Result, Warehouse, WarehouseError, open_delta};
use object_store::UpdateVersion;

use commit::commit_table;
pub use phases::LoadPhases;
use phases::{BusyClock, ms_since};
use report::ReportWriter;
pub use report::{FileOutcome, LoadReport};
pub(crate) use rollups::build_rollups;
use validate::{KnownIdSet, validate_and_stage, warehouse_ids};

/// What to load and how.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// The export folder, in the contract's layout.
    pub export_dir: PathBuf,
    /// Upsert by key, or replace the whole warehouse.
    pub mode: LoadMode,
    /// Load the valid rows and set the rejected ones aside, instead of refusing the export.
    pub quarantine: bool,
    /// The rollups to build from the loaded tables, in this order, into the same version.
    pub rollups: Vec<RollupBuild>,
}

impl LoadOptions {
    /// A whole export upserted by key, refused if any row is rejected, with `rollups` built:
    /// the load most callers make.
    pub fn upsert(export_dir: impl Into<PathBuf>, rollups: Vec<RollupBuild>) -> LoadOptions {
        LoadOptions {
            export_dir: export_dir.into(),
            mode: LoadMode::Upsert,
            quarantine: false,
            rollups,
        }
    }
}

/// A rollup to build: the table it becomes, its definition (SQL over the entity tables), and the
/// SQL that builds it, which may read the rollups built before it in the same load. The table
/// keeps the column types of the definition, whichever way it was built. The warehouse runs
/// these as given; what a rollup means is the engine's business.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollupBuild {
    /// The rollup's name in the model, for progress and reports.
    pub name: String,
    /// The table it becomes.
    pub table: String,
    /// Its definition (SQL over the entity tables), which says whether it must be built again.
    pub definition: String,
    /// The SQL that builds it.
    pub sql: String,
    /// The rollup table `sql` reads, built earlier in the same load; none: the entity tables.
    pub from: Option<String>,
    /// The entity tables the definition reads: when none of them changed since the version
    /// before, the rollup it built is kept as it is.
    pub reads: Vec<String>,
    /// The column whose order the rows are written in, so that a query filtering on it reads
    /// only its slice of the rollup.
    pub cluster_by: Option<String>,
    /// How the rollup is brought up to date when a load changed its fact alone, by key: the
    /// slices the changed rows fall in are computed again and the others kept. None: it is
    /// built whole whenever a table it reads changed.
    pub slices: Option<RollupSlices>,
    /// How the rollup is brought up to date by adding a load's changed rows to it, when its
    /// measures add up: preferred to `slices`, as it reads only the changed rows.
    pub delta: Option<RollupDelta>,
    /// Built after every other build of the load, with none beside it: what it holds while it
    /// runs (the accounts at risk: every account's surveys, in two scopes) would otherwise add
    /// to the largest build's peak (at 96 M order lines, 4.5 GB instead of 3.3 GB).
    pub alone: bool,
}

/// A rollup whose measures add up (sums and counts): a load that changed its fact alone, by
/// key, brings it up to date by adding the rollup of the rows it added and subtracting that of
/// the rows it removed, group by group. Rows a rewritten file holds unchanged are both added
/// and subtracted, so they cancel out exactly (sums of decimals and integers only: a float sum
/// depends on the order of its terms, and such a rollup goes by `slices`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollupDelta {
    /// The entity table whose rows the rollup aggregates (its `sql` reads it under this name).
    pub fact: String,
    /// The rollup's grouping columns: one row per distinct combination.
    pub groups: Vec<String>,
    /// Its columns that depend on `groups` alone (a customer's segment, beside the customer's
    /// key): carried, not compared.
    pub attributes: Vec<String>,
    /// Its measure columns.
    pub measures: Vec<DeltaMeasure>,
    /// The column counting each row's fact rows: a group whose count falls to zero is removed.
    pub rows: String,
}

/// A measure column of a `RollupDelta`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaMeasure {
    /// The column.
    pub column: String,
    /// For a sum, the column counting the rows with a value: NULL, not 0, when it falls to
    /// zero. None for a count.
    pub values: Option<String>,
}

/// A rollup's slices: groups of its rows that each depend only on the fact rows with the same
/// slice key, so that rows changed by a load change only the slices of their keys (before and
/// after the change). The columns are a subset of the rollup's grouping that a fact row holds
/// itself: a partner's month is a slice of the revenue by partner, product line and month.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollupSlices {
    /// The entity table whose rows the rollup aggregates (its `sql` reads it as `f`).
    pub fact: String,
    /// The slice key: each a column of the rollup and the SQL expression over a fact row
    /// (aliased `f`) that gives the column's value for the row's group.
    pub keys: Vec<(String, String)>,
    /// The fact's time column and its slice's period, so that the changed slices' rows are
    /// read from the files and row groups of their periods only.
    pub period: Option<SlicePeriod>,
}

/// The period a fact row's slice covers, for reading the rows of the changed slices only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlicePeriod {
    /// The fact's time column.
    pub column: String,
    /// Over a fact row (`f`): the first day of its slice's period, as a date.
    pub start: String,
    /// Over a fact row (`f`): the first day after its slice's period, as a date.
    pub end: String,
}

/// Callbacks for progress display; the warehouse knows nothing of terminals.
pub trait LoadProgress: Sync {
    /// A file's reading began (`bytes` long).
    fn file_started(&self, _file: &str, _bytes: u64) {}
    /// So many of a file's bytes are read.
    fn file_advanced(&self, _file: &str, _bytes_done: u64) {}
    /// A file is read: its rows and those rejected.
    fn file_finished(&self, _file: &str, _rows: u64, _rejected: u64) {}
    /// A step of the load began (committing a table, building a rollup).
    fn step(&self, _message: &str) {}
}

/// A load that reports no progress (tests, the server).
pub struct NoProgress;
impl LoadProgress for NoProgress {}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Holds the load lock for the duration of a load: a locked file in a data folder, a renewed
/// lease on a bucket.
enum LoadLock {
    Folder(#[allow(dead_code)] File),
    Bucket(lease::Lease),
}

impl LoadLock {
    async fn take(wh: &Warehouse, progress: &dyn LoadProgress) -> Result<LoadLock> {
        match &wh.root {
            Root::Local(dir) => lock(dir).map(LoadLock::Folder),
            Root::Remote(remote) => lease::Lease::take(remote.clone(), progress)
                .await
                .map(LoadLock::Bucket),
        }
    }

    /// Fails when the lease was lost (it expired unrenewed, and another load took it): the
    /// load must then not switch the version.
    fn check(&self) -> Result<()> {
        match self {
            LoadLock::Folder(_) => Ok(()),
            LoadLock::Bucket(lease) => lease.check(),
        }
    }

    async fn release(self) {
        if let LoadLock::Bucket(lease) = self {
            lease.release().await;
        }
    }
}

fn lock(dir: &Path) -> Result<File> {
    let path = dir.join(".lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| WarehouseError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(WarehouseError::Locked(dir.display().to_string())),
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
        let folder = format!("tables/{}", entity.name());
        if !wh.root.has_table(&folder).await? {
            // A folder without a log holds no table: files a load moved in before it died.
            wh.root.remove_folder(&folder).await?;
            continue;
        }
        match current.and_then(|v| v.tables.get(entity.name())) {
            None => {
                progress.step(&format!(
                    "removing {} left by an unfinished load",
                    entity.name()
                ));
                wh.root.remove_folder(&folder).await?;
            }
            Some(pin) => {
                let latest = open_delta(&wh.root, wh.table_url(entity)?, None).await?;
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

pub(crate) async fn run(
    wh: &Warehouse,
    options: &LoadOptions,
    source: Option<&str>,
    progress: &dyn LoadProgress,
) -> Result<LoadReport> {
    let lock = LoadLock::take(wh, progress).await?;
    let load_id = format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut outcome = run_locked(wh, options, source, progress, &lock, &load_id).await;
    if let Root::Remote(remote) = &wh.root {
        // The report and the rejected rows are for people: they go where the warehouse is.
        let published =
            publish_load_files(remote, &wh.dir.join("loads").join(&load_id), &load_id).await;
        match published {
            // A committed load whose report could not be sent says so; a failed one keeps
            // its own error.
            Err(e) if outcome.is_ok() => outcome = Err(e),
            _ => match &mut outcome {
                Ok(report) => point_at_bucket(report, remote, &load_id),
                Err(WarehouseError::Rejected(report)) => point_at_bucket(report, remote, &load_id),
                Err(_) => {}
            },
        }
    }
    lock.release().await;
    outcome
}

/// Sends a load's report and quarantine files from the work folder to the bucket's
/// `loads/<id>/`, and removes them from the work folder.
async fn publish_load_files(
    remote: &crate::storage::Remote,
    local: &Path,
    load_id: &str,
) -> Result<()> {
    let mut files = vec![local.join("report.json")];
    if let Ok(rejects) = fs::read_dir(local.join("rejects")) {
        files.extend(rejects.filter_map(|e| e.ok().map(|e| e.path())));
    }
    for file in files.iter().filter(|f| f.is_file()) {
        let relative = file.strip_prefix(local).unwrap_or(file).to_string_lossy();
        remote
            .upload(file, &format!("loads/{load_id}/{relative}"))
            .await?;
    }
    remove_dir_if_exists(local)
}

/// Makes a report name the bucket's copies of its files rather than the work folder's.
fn point_at_bucket(report: &mut LoadReport, remote: &crate::storage::Remote, load_id: &str) {
    let folder = format!("{}loads/{load_id}", remote.url);
    report.report_path = PathBuf::from(format!("{folder}/report.json"));
    if report.rejects_dir.is_some() {
        report.rejects_dir = Some(PathBuf::from(format!("{folder}/rejects")));
    }
}

/// The warehouse's version file as this load found it, and (on a bucket) the object's version
/// that the switch must still find.
async fn read_versions(wh: &Warehouse) -> Result<(VersionFile, Option<UpdateVersion>)> {
    match &wh.root {
        Root::Local(dir) => Ok((VersionFile::read(dir)?, None)),
        Root::Remote(remote) => crate::versions::read_remote(remote).await,
    }
}

/// Switches the warehouse to the new version file: the one moment a load becomes visible.
async fn switch_versions(
    wh: &Warehouse,
    versions: &VersionFile,
    read: Option<UpdateVersion>,
) -> Result<()> {
    match &wh.root {
        Root::Local(dir) => versions.write(dir),
        Root::Remote(remote) => versions.write_remote(remote, read).await,
    }
}

/// What a load committed before its switch: each table's pin and change, and the rollups.
struct Committed {
    pins: BTreeMap<String, TablePin>,
    changes: BTreeMap<String, TableChange>,
    rollups: BTreeMap<String, crate::RollupPin>,
    rollups_build_ms: u64,
}

/// Commits each staged table to Delta, then builds the rollups from the tables just committed:
/// in the same warehouse version, so that no reader ever sees a rollup that disagrees with its
/// base tables. Nothing is visible until warehouse.json switches.
async fn commit_and_build(
    wh: &Warehouse,
    staged: &[(Entity, PathBuf, u64)],
    current: Option<&WarehouseVersion>,
    options: &LoadOptions,
    progress: &dyn LoadProgress,
) -> Result<Committed> {
    let mut pins: BTreeMap<String, TablePin> =
        current.map(|c| c.tables.clone()).unwrap_or_default();
    let mut changes: BTreeMap<String, TableChange> = BTreeMap::new();
    let mut merged = BTreeMap::new();
    for (entity, dir, rows) in staged {
        progress.step(&format!("committing {}", entity.name()));
        let prev = pins.get(entity.name()).cloned();
        if prev.is_some() && options.mode == LoadMode::Upsert {
            // Merged by key: the staged rows' keys are the rows the load changed.
            merged.insert(entity.name().to_string(), (dir.clone(), entity.key()));
        }
        let (pin, change) = commit_table(wh, *entity, dir, *rows, prev, options.mode).await?;
        pins.insert(entity.name().to_string(), pin);
        changes.insert(entity.name().to_string(), change);
    }
    let rollups_started = std::time::Instant::now();
    let rollups = build_rollups(wh, &pins, &merged, current, options, progress).await?;
    Ok(Committed {
        pins,
        changes,
        rollups,
        rollups_build_ms: ms_since(rollups_started),
    })
}

/// Each file's rows read and rejected into its table's change, and the rows added and replaced
/// into the file's line of the report.
fn count_changes(report: &mut LoadReport, changes: &mut BTreeMap<String, TableChange>) {
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
}

impl Committed {
    /// The warehouse version these commits make, after `current`; the report gains each file's
    /// rows added and replaced.
    fn into_version(
        self,
        current: Option<&WarehouseVersion>,
        report: &mut LoadReport,
        options: &LoadOptions,
        load_ms: u64,
    ) -> WarehouseVersion {
        let mut changes = self.changes;
        count_changes(report, &mut changes);
        WarehouseVersion {
            version: current.map_or(1, |c| c.version + 1),
            loaded_at: now_rfc3339(),
            source: report.source.clone(),
            mode: options.mode,
            quarantine: options.quarantine,
            tables: self.pins,
            changes,
            rollups: self.rollups,
            rollups_build_ms: self.rollups_build_ms,
            load_ms,
        }
    }
}

/// The ids the export's rows may refer to: its own, and on an upsert the warehouse's.
async fn known_ids(
    wh: &Warehouse,
    current: Option<&WarehouseVersion>,
    options: &LoadOptions,
    progress: &dyn LoadProgress,
) -> Result<KnownIdSet> {
    let mut known = KnownIdSet::for_export(&options.export_dir);
    if let (Some(cur), LoadMode::Upsert) = (current, options.mode) {
        progress.step("reading the ids already in the warehouse");
        warehouse_ids(wh, cur, &mut known).await?;
    }
    Ok(known)
}

/// An export is a folder of CSV files; anything else is refused before the load begins.
fn is_an_export(export: &Path) -> Result<()> {
    if export.is_dir() {
        return Ok(());
    }
    Err(WarehouseError::Export(format!(
        "{}: not a folder (an export is a folder of CSV files)",
        export.display()
    )))
}

/// The load's own folder (`loads/<id>/`), where its report is written as it goes.
fn load_folder(wh: &Warehouse, load_id: &str) -> Result<(PathBuf, PathBuf, ReportWriter)> {
    let load_dir = wh.dir.join("loads").join(load_id);
    fs::create_dir_all(&load_dir).map_err(|e| WarehouseError::io(&load_dir, e))?;
    let report_path = load_dir.join("report.json");
    let writer = ReportWriter::create(report_path.clone())?;
    Ok((load_dir, report_path, writer))
}

/// A load that failed after its report was begun: the report is finished as it stands (what
/// was read and rejected until then), and the error goes on.
fn failed(report: &mut LoadReport, writer: ReportWriter, e: WarehouseError) -> WarehouseError {
    report.finished_at = now_rfc3339();
    let _ = writer.finish(report);
    e
}

/// The export read, checked and staged against the keys the warehouse already holds: the
/// staging phases of a load. A rejected export ends here, its report written, nothing committed.
struct Staging<'a> {
    wh: &'a Warehouse,
    options: &'a LoadOptions,
    current: Option<&'a WarehouseVersion>,
    load_dir: &'a Path,
    staging_dir: &'a Path,
    progress: &'a dyn LoadProgress,
    started: std::time::Instant,
}

/// Each staged table: its entity, its folder and its rows.
type Staged = Vec<(Entity, PathBuf, u64)>;

impl Staging<'_> {
    async fn run(
        &self,
        mut report: LoadReport,
        mut report_writer: ReportWriter,
    ) -> Result<(LoadReport, ReportWriter, Staged)> {
        let (wh, options) = (self.wh, self.options);
        let keys_started = std::time::Instant::now();
        let known = known_ids(wh, self.current, options, self.progress).await;
        report.phases.warehouse_keys_ms = ms_since(keys_started);
        let mut known = match known {
            Ok(k) => k,
            Err(e) => return Err(failed(&mut report, report_writer, e)),
        };
        let mut staged = Staged::new();
        let staging_started = std::time::Instant::now();
        let busy = BusyClock::default();
        let outcome = validate_and_stage(
            options,
            self.current.is_none() || options.mode == LoadMode::Replace,
            self.staging_dir,
            self.load_dir,
            &mut known,
            &mut report,
            &mut report_writer,
            &mut staged,
            self.progress,
            &busy,
        );
        busy.fill(&mut report.phases);
        report.phases.staging_ms = ms_since(staging_started);
        if let Err(e) = outcome {
            let _ = remove_dir_if_exists(self.staging_dir);
            return Err(failed(&mut report, report_writer, e));
        }
        if !report.file_errors.is_empty() || (!options.quarantine && report.rows_rejected() > 0) {
            remove_dir_if_exists(&wh.dir.join("staging"))?;
            report.phases.total_ms = ms_since(self.started);
            report.finished_at = now_rfc3339();
            report_writer.finish(&report)?;
            return Err(WarehouseError::Rejected(Box::new(report)));
        }
        Ok((report, report_writer, staged))
    }
}

async fn run_locked(
    wh: &Warehouse,
    options: &LoadOptions,
    source: Option<&str>,
    progress: &dyn LoadProgress,
    lock: &LoadLock,
    load_id: &str,
) -> Result<LoadReport> {
    let started_at = now_rfc3339();
    let started = std::time::Instant::now();
    let export = &options.export_dir;
    is_an_export(export)?;
    let (mut versions, read_version) = read_versions(wh).await?;
    let current = versions.current().cloned();
    recover(wh, current.as_ref(), progress).await?;

    let (load_dir, report_path, report_writer) = load_folder(wh, load_id)?;
    let source = source.map_or_else(|| export.display().to_string(), str::to_string);
    let report = LoadReport::begin(source, options, started_at, report_path);
    let export_staged = Staging {
        wh,
        options,
        current: current.as_ref(),
        load_dir: &load_dir,
        staging_dir: &wh.dir.join("staging").join(load_id),
        progress,
        started,
    };
    let (mut report, report_writer, staged) = export_staged.run(report, report_writer).await?;

    let committing_started = std::time::Instant::now();
    let committed = match commit_and_build(wh, &staged, current.as_ref(), options, progress).await {
        Ok(c) => c,
        Err(e) => {
            // The Delta commits made so far are past the pinned versions: put them back now (or,
            // if that fails too, at the start of the next load).
            let _ = recover(wh, current.as_ref(), progress).await;
            return Err(failed(&mut report, report_writer, e));
        }
    };
    report.phases.rollups_ms = committed.rollups_build_ms;
    report.phases.committing_ms =
        ms_since(committing_started).saturating_sub(committed.rollups_build_ms);
    let load_ms = ms_since(started);
    let next = committed.into_version(current.as_ref(), &mut report, options, load_ms);
    let version = next.version;
    versions.versions.push(next);
    progress.step("switching the warehouse version");
    let switching_started = std::time::Instant::now();
    let switched = match lock.check() {
        Ok(()) => switch_versions(wh, &versions, read_version).await,
        Err(e) => Err(e),
    };
    if let Err(e) = switched {
        let _ = recover(wh, current.as_ref(), progress).await;
        return Err(failed(&mut report, report_writer, e));
    }
    report.phases.switching_ms = ms_since(switching_started);
    report.phases.total_ms = ms_since(started);
    remove_dir_if_exists(&wh.dir.join("staging"))?;
    report.committed = true;
    report.version = Some(version);
    report.finished_at = now_rfc3339();
    report_writer.finish(&report)?;
    Ok(report)
}
