//! Validation and staging: every file of an export read in chunks, validated on as many
//! threads as cores (references against this export's dimensions and the warehouse's ids), put
//! back in file order, and its valid rows staged as Parquet.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, LargeStringArray};
use arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use prism_contract::{
    CHUNK_ROWS, DigestSet, Entity, FileError, FileReader, IdStatus, KeyRegistry, KnownIds,
    Rejection, Rule, ValidatedChunk, text_digest,
};

use super::phases::{Busy, BusyClock};
use super::report::{FileOutcome, LoadReport, RejectsFile, ReportWriter, SHOWN_PER_FILE};
use super::{LoadOptions, LoadProgress};
use crate::staging::{StagedTable, clustered_by};
use crate::versions::{LoadMode, WarehouseVersion};
use crate::{Result, Warehouse, WarehouseError, open_delta};

/// Threads validating rows of one file: one per core. Reading, putting in order and Parquet
/// encoding share the cores with them; more validators than cores measured slower.
pub(super) fn validators() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(8))
}

pub(super) type FastSet<T> = HashSet<T, foldhash::fast::RandomState>;
/// Looked up for every reference of every row: SipHash's set-up alone cost more than the
/// entity's id set's own look-up.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The ids (and product lines) that the rows of an export may refer to.
#[derive(Default)]
pub(super) struct KnownIdSet {
    /// The ids of each entity that a file of this export refers to, those of the export's own
    /// valid rows, by their digests: looked up for every reference of every row, a set of
    /// owned strings cost a pointer's chase and a text compare each (a tenth of an order
    /// file's load). An entity nothing refers to is not tracked at all (a warehouse's
    /// opportunity ids are read only when deal registrations come).
    ids: FastMap<Entity, DigestSet>,
    /// The ids of those entities already in the warehouse.
    stored: FastMap<Entity, StoredIds>,
    /// Every product line of the products, which certifications may name.
    product_lines: FastSet<String>,
    /// Ids whose row was rejected in this export.
    rejected: HashSet<(Entity, String)>,
    /// Entities whose file could not be read at all: the load fails for that already, and
    /// checking references against them would only bury that one error under a row per fact.
    unchecked: FastSet<Entity>,
}

impl KnownIdSet {
    /// Tracks the entities that the files present in `export` refer to.
    pub(super) fn for_export(export: &Path) -> KnownIdSet {
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

    pub(super) fn set_mut(&mut self, entity: Entity) -> Option<&mut DigestSet> {
        self.ids.get_mut(&entity)
    }

    /// Adds the ids of `entity` already in the warehouse.
    pub(super) fn add_stored(&mut self, entity: Entity, ids: LargeStringArray) {
        self.stored.insert(entity, StoredIds::new(ids));
    }

    pub(super) fn tracks(&self, entity: Entity) -> bool {
        self.ids.contains_key(&entity)
    }
}

impl KnownIds for KnownIdSet {
    fn lookup(&self, entity: Entity, id: &str) -> IdStatus {
        let known = (self.ids.get(&entity))
            .is_some_and(|s| s.contains(&text_digest(id.as_bytes())))
            || self.stored.get(&entity).is_some_and(|s| s.contains(id));
        if known || self.unchecked.contains(&entity) {
            IdStatus::Known
        } else if self.rejected.contains(&(entity, id.to_string())) {
            IdStatus::Rejected
        } else {
            IdStatus::Unknown
        }
    }

    fn warm(&self, entity: Entity, id: &[u8]) {
        // A set a few cache lines hold is in the cache anyway: the partners, the products.
        if let Some(set) = self.ids.get(&entity)
            && set.len() > WARMED_ABOVE
        {
            std::hint::black_box(set.contains(&text_digest(id)));
        }
        if let Some(stored) = self.stored.get(&entity)
            && stored.len() > WARMED_ABOVE
        {
            std::hint::black_box(stored.rows.get(&xxhash_rust::xxh3::xxh3_64(id)));
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

/// Ids of an entity beyond which its set is warmed before rows are checked (`KnownIds::warm`):
/// 16 k digests are a table of about 300 KB, which the cache holds.
const WARMED_ABOVE: usize = 16 * 1024;

/// The ids of one entity already in the warehouse, held as Arrow read them (one buffer) and
/// found by their 64-bit hash: a set of as many owned strings took seconds to build (2.1 s for
/// 4.5 M customers), most of a day's load before its first row was read.
pub(super) struct StoredIds {
    values: LargeStringArray,
    /// Each hash's row in `values`.
    rows: FastMap<u64, usize>,
    /// Ids whose hash another id has already: checked by their text.
    collided: FastSet<String>,
}

impl StoredIds {
    fn new(values: LargeStringArray) -> StoredIds {
        let mut rows = HashMap::with_capacity_and_hasher(values.len(), Default::default());
        let mut collided = FastSet::default();
        for (row, id) in values.iter().enumerate() {
            let Some(id) = id else { continue };
            match rows.entry(xxhash_rust::xxh3::xxh3_64(id.as_bytes())) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(row);
                }
                std::collections::hash_map::Entry::Occupied(o) => {
                    if values.value(*o.get()) != id {
                        collided.insert(id.to_string());
                    }
                }
            }
        }
        StoredIds {
            values,
            rows,
            collided,
        }
    }

    fn contains(&self, id: &str) -> bool {
        let row = self.rows.get(&xxhash_rust::xxh3::xxh3_64(id.as_bytes()));
        row.is_some_and(|r| self.values.value(*r) == id) || self.collided.contains(id)
    }

    fn len(&self) -> usize {
        self.rows.len() + self.collided.len()
    }
}

/// The ids already in the warehouse, for reference checks.
pub(super) async fn warehouse_ids(
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
        let started = std::time::Instant::now();
        let table = open_delta(&wh.root, wh.table_url(entity)?, Some(pin.delta_version)).await?;
        let ctx = SessionContext::new();
        table.update_datafusion_session(&ctx.state())?;
        ctx.register_table("t", table.table_provider().await?)?;
        let key = entity.key()[0];
        let batches = ctx
            .sql(&format!("SELECT {key} FROM t"))
            .await?
            .collect()
            .await?;
        let read_ms = started.elapsed().as_millis() as u64;
        let ids = batches
            .iter()
            .map(|b| arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::LargeUtf8))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(datafusion::error::DataFusionError::from)?;
        let ids: Vec<&dyn Array> = ids.iter().map(|a| a.as_ref()).collect();
        let ids = match ids.is_empty() {
            true => LargeStringArray::from(Vec::<&str>::new()),
            false => arrow::compute::concat(&ids)
                .map_err(datafusion::error::DataFusionError::from)?
                .as_string::<i64>()
                .clone(),
        };
        known.add_stored(entity, ids);
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
        tracing::debug!(
            entity = entity.name(),
            ids = known.stored.get(&entity).map_or(0, |s| s.len()),
            read_ms,
            ms = started.elapsed().as_millis() as u64,
            "ids in the warehouse read"
        );
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(super) fn validate_and_stage(
    options: &LoadOptions,
    first_load: bool,
    staging_dir: &Path,
    load_dir: &Path,
    known: &mut KnownIdSet,
    report: &mut LoadReport,
    report_writer: &mut ReportWriter,
    staged: &mut Vec<(Entity, PathBuf, u64)>,
    progress: &dyn LoadProgress,
    busy: &BusyClock,
) -> Result<()> {
    let export = &options.export_dir;
    for entity in Entity::ALL {
        let file_name = entity.file_name();
        let path = export.join(&file_name);
        if !path.exists() {
            missing_file(entity, options, first_load, staging_dir, report, staged)?;
            continue;
        }
        let bytes = fs::metadata(&path)
            .map_err(|e| WarehouseError::io(&path, e))?
            .len();
        progress.file_started(&file_name, bytes);
        let file = File::open(&path).map_err(|e| WarehouseError::io(&path, e))?;
        let reader = match FileReader::new(
            entity,
            file_name.clone(),
            // Unbuffered: the reader's own buffer takes the file's bytes a megabyte at a time.
            file,
        ) {
            Ok(r) => r,
            Err(FileError::Rejected(r)) => {
                known.unchecked.insert(entity);
                report_writer.rejection(&r)?;
                report.file_errors.push(r);
                progress.file_finished(&file_name, 0, 0);
                report.files.push(FileOutcome {
                    file: file_name,
                    present: true,
                    ..FileOutcome::default()
                });
                continue;
            }
            Err(FileError::Io { source, .. }) => return Err(WarehouseError::io(&path, source)),
        };
        let mut quarantine = options
            .quarantine
            .then(|| Quarantine::new(load_dir.join("rejects"), &file_name, reader.header()));
        let file = StagedFile {
            entity,
            path: &path,
            bytes,
            staging_dir,
            progress,
            busy,
        };
        let (outcome, dir, rows) = file.stage(reader, quarantine.as_mut(), known, report_writer)?;
        if let Some(q) = quarantine
            && q.finish()?
        {
            report.rejects_dir = Some(load_dir.join("rejects"));
        }
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

/// A file the export does not have: a dimension's is an error on a first load (or a replace);
/// a replace stages an empty fact, since the warehouse is replaced by an export without its
/// rows; an upsert leaves the table as it is.
fn missing_file(
    entity: Entity,
    options: &LoadOptions,
    first_load: bool,
    staging_dir: &Path,
    report: &mut LoadReport,
    staged: &mut Vec<(Entity, PathBuf, u64)>,
) -> Result<()> {
    let file_name = entity.file_name();
    if entity.is_dimension() && first_load {
        report.file_errors.push(Rejection {
            file: file_name.clone(),
            line: 0,
            column_number: None,
            column: None,
            value: None,
            reason: format!(
                "{file_name} is missing: a first load{} needs partners.csv, products.csv and customers.csv",
                if options.mode == LoadMode::Replace {
                    " or a replace"
                } else {
                    ""
                }
            ),
        });
    } else if options.mode == LoadMode::Replace {
        let table = StagedTable::start(
            staging_dir.join(entity.name()),
            entity,
            clustered_by(entity),
            &BusyClock::default(),
        )?;
        let dir = table.dir.clone();
        staged.push((entity, dir, table.finish()?));
    }
    report.files.push(FileOutcome {
        file: file_name,
        ..FileOutcome::default()
    });
    Ok(())
}

/// Rejected rows set aside in `rejects/` as the export wrote them, with their line and reason
/// (`prism load --quarantine`); the file is made at the first rejected row.
struct Quarantine {
    dir: PathBuf,
    path: PathBuf,
    /// The export's own header, then the line and the reason.
    header: Vec<String>,
    file: Option<RejectsFile>,
}

impl Quarantine {
    fn new(dir: PathBuf, file_name: &str, header: &[String]) -> Quarantine {
        Quarantine {
            path: dir.join(file_name),
            dir,
            header: header.to_vec(),
            file: None,
        }
    }

    /// Sets one rejected row aside with its faults.
    fn keep(&mut self, record: &csv::ByteRecord, faults: &[Rejection]) -> Result<()> {
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                let f = fs::create_dir_all(&self.dir)
                    .and_then(|()| File::create(&self.path))
                    .map_err(|e| WarehouseError::io(&self.path, e))?;
                let mut writer = csv::WriterBuilder::new()
                    .flexible(true)
                    .from_writer(BufWriter::new(f));
                let mut h = self.header.clone();
                h.push("reject_line".into());
                h.push("reject_reason".into());
                writer
                    .write_record(&h)
                    .map_err(|e| WarehouseError::io(&self.path, e.into()))?;
                self.file.insert(RejectsFile {
                    writer,
                    path: self.path.clone(),
                })
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
        file.writer
            .write_byte_record(&row)
            .map_err(|e| WarehouseError::io(&file.path, e.into()))
    }

    /// Writes what is set aside out; whether anything was.
    fn finish(self) -> Result<bool> {
        match self.file {
            Some(mut r) => {
                r.writer
                    .flush()
                    .map_err(|e| WarehouseError::io(&r.path, e))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// One file of the export being validated and staged.
struct StagedFile<'a> {
    entity: Entity,
    path: &'a Path,
    bytes: u64,
    staging_dir: &'a Path,
    progress: &'a dyn LoadProgress,
    busy: &'a BusyClock,
}

impl StagedFile<'_> {
    /// Validates every row, reports and sets aside the rejected ones, stages the valid ones,
    /// and adds their ids to what later files may refer to. The file's outcome, its staged
    /// table's folder and rows.
    fn stage(
        &self,
        reader: FileReader<File>,
        mut quarantine: Option<&mut Quarantine>,
        known: &mut KnownIdSet,
        report_writer: &mut ReportWriter,
    ) -> Result<(FileOutcome, PathBuf, u64)> {
        let entity = self.entity;
        let file_name = entity.file_name();
        let (mut outcome, table) = self.start(&reader)?;
        let tracked = known.tracks(entity);
        let key_position = reader.key_position();
        let mut found = FileIds::default();
        let mut rejected_ids: Vec<String> = Vec::new();
        let mut sink_error: Option<WarehouseError> = None;
        let mut on_reject = |faults: Vec<Rejection>, record: &csv::ByteRecord| {
            if sink_error.is_some() {
                return;
            }
            if tracked && let Some(id) = record.get(key_position) {
                rejected_ids.push(String::from_utf8_lossy(id).into_owned());
            }
            let shown = SHOWN_PER_FILE.saturating_sub(outcome.shown.len());
            outcome.shown.extend(faults.iter().take(shown).cloned());
            let written = faults.iter().try_for_each(|f| report_writer.rejection(f));
            let kept = match &mut quarantine {
                Some(q) => written.and_then(|()| q.keep(record, &faults)),
                None => written,
            };
            sink_error = kept.err();
        };
        let validator = reader.validator();
        // No export row is shorter than about 40 bytes; a table sized for that never grows.
        let mut keys = KeyRegistry::with_capacity((self.bytes / 40).min(64 << 20) as usize);
        let mut rejected_here = 0u64;
        let busy = self.busy;
        let (mut reader, read_result) = self.validate_in_order(reader, known, |records, chunk| {
            let mut faults: Vec<(usize, Vec<Rejection>)> = chunk.rejected;
            let keep = busy.time(Busy::Checking, || {
                duplicate_keys(&mut keys, &chunk.keys, records, &validator, &mut faults)
            });
            faults.sort_by_key(|(i, _)| *i);
            rejected_here += faults.len() as u64;
            for (i, f) in faults {
                on_reject(f, &records[i]);
            }
            if let Some(batch) = chunk.batch {
                let keep = keep.map(arrow::array::BooleanArray::from);
                let batch = match &keep {
                    Some(keep) => arrow::compute::filter_record_batch(&batch, keep)
                        .expect("mask matches the batch"),
                    None => batch,
                };
                let kept = |row: &usize| keep.as_ref().is_none_or(|k| k.value(*row));
                let digests = (chunk.keys.iter().enumerate())
                    .filter(|(row, _)| kept(row))
                    .map(|(_, (digest, _))| *digest);
                found.collect(entity, tracked, &batch, digests);
                // A stopped stager reports its error from finish().
                let _ = table.push(batch);
            }
        });
        if let Some(e) = sink_error.take() {
            return Err(e);
        }
        read_result.map_err(|e| match e {
            FileError::Io { source, .. } => WarehouseError::io(self.path, source),
            FileError::Rejected(r) => WarehouseError::Export(r.to_string()),
        })?;
        reader.add_rejected(rejected_here);
        found.rejected = rejected_ids;
        found.add_to(known, entity);
        let dir = table.dir.clone();
        let rows = table.finish()?;
        (outcome.rows_read, outcome.rows_rejected) = (reader.rows_read(), reader.rows_rejected());
        outcome.rows_loaded = rows;
        self.progress
            .file_finished(&file_name, outcome.rows_read, outcome.rows_rejected);
        Ok((outcome, dir, rows))
    }

    /// The file's outcome so far (its reader's warnings), and its staged table, started.
    fn start(&self, reader: &FileReader<File>) -> Result<(FileOutcome, StagedTable)> {
        let outcome = FileOutcome {
            file: self.entity.file_name(),
            present: true,
            warnings: reader.warnings().to_vec(),
            ..FileOutcome::default()
        };
        let table = StagedTable::start(
            self.staging_dir.join(self.entity.name()),
            self.entity,
            clustered_by(self.entity),
            self.busy,
        )?;
        Ok((outcome, table))
    }

    /// Validation runs on `validators()` threads; a reader thread feeds them chunks of raw
    /// records, and this thread hands each chunk's records and result to `each` in file order,
    /// where duplicate keys are found, rejections reported and batches handed to the stager.
    /// The reader back, and how its reading ended.
    fn validate_in_order(
        &self,
        mut reader: FileReader<File>,
        known: &KnownIdSet,
        mut each: impl FnMut(&[csv::ByteRecord], ValidatedChunk),
    ) -> (FileReader<File>, std::result::Result<(), FileError>) {
        let validator = reader.validator();
        let file_name = self.entity.file_name();
        let progress = self.progress;
        let (chunk_tx, chunk_rx) =
            crossbeam_channel::bounded::<(u64, Vec<csv::ByteRecord>, usize)>(4);
        let (done_tx, done_rx) =
            crossbeam_channel::bounded::<(u64, Vec<csv::ByteRecord>, usize, ValidatedChunk)>(4);
        let (pool_tx, pool_rx) = crossbeam_channel::unbounded::<Vec<csv::ByteRecord>>();
        std::thread::scope(|scope| {
            for _ in 0..validators() {
                let mut v = validator.clone();
                let rx = chunk_rx.clone();
                let tx = done_tx.clone();
                let busy = self.busy;
                scope.spawn(move || {
                    for (seq, records, n) in rx {
                        let out =
                            busy.time(Busy::Checking, || v.validate_chunk(&records[..n], known));
                        if tx.send((seq, records, n, out)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(done_tx);
            drop(chunk_rx);
            let busy = self.busy;
            let reading = scope.spawn(move || {
                let mut seq = 0u64;
                let mut last_progress = 0u64;
                let result = loop {
                    let mut records = pool_rx
                        .try_recv()
                        .unwrap_or_else(|_| vec![csv::ByteRecord::new(); CHUNK_ROWS]);
                    match busy.time(Busy::Reading, || reader.read_chunk(&mut records)) {
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
                        progress.file_advanced(&file_name, done);
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
                while let Some((_, records, n, chunk)) = pending.remove(&next) {
                    next += 1;
                    each(&records[..n], chunk);
                    let _ = pool_tx.send(records);
                }
            }
            reading.join().expect("the reader thread does not panic")
        })
    }
}

/// The rows of a chunk whose key an earlier row of the file had, each added to `faults` as a
/// rejection; which of the chunk's valid rows to keep (`None`: every one).
fn duplicate_keys(
    keys: &mut KeyRegistry,
    chunk_keys: &[(u128, usize)],
    records: &[csv::ByteRecord],
    validator: &prism_contract::RowValidator,
    faults: &mut Vec<(usize, Vec<Rejection>)>,
) -> Option<Vec<bool>> {
    let mut keep: Option<Vec<bool>> = None;
    for (row, (digest, index)) in chunk_keys.iter().enumerate() {
        if !keys.first(*digest) {
            faults.push((*index, vec![validator.duplicate(&records[*index])]));
            keep.get_or_insert_with(|| vec![true; chunk_keys.len()])[row] = false;
        }
    }
    keep
}

/// What one file's rows add to the ids later files may refer to: its valid rows' ids (of an
/// entity something refers to) and product lines, and its rejected rows' ids.
#[derive(Default)]
struct FileIds {
    ids: Vec<u128>,
    product_lines: Vec<String>,
    rejected: Vec<String>,
}

impl FileIds {
    /// The ids and product lines of a batch of valid rows, whose key digests are `digests`:
    /// an entity's id, when it is its whole key, is taken as its key's digest (the same
    /// `text_digest`), not hashed again.
    fn collect(
        &mut self,
        entity: Entity,
        tracked: bool,
        batch: &RecordBatch,
        digests: impl Iterator<Item = u128>,
    ) {
        if tracked {
            match entity.key() {
                [_] => self.ids.extend(digests),
                _ => collect_ids(batch, &mut self.ids),
            }
        }
        if entity == Entity::Products {
            collect_product_lines(batch, &mut self.product_lines);
        }
    }

    /// Added to what the export's later files may refer to, once the file is read whole.
    fn add_to(self, known: &mut KnownIdSet, entity: Entity) {
        if let Some(set) = known.set_mut(entity) {
            set.extend(self.ids);
        }
        known.product_lines.extend(self.product_lines);
        known
            .rejected
            .extend(self.rejected.into_iter().map(|id| (entity, id)));
    }
}

/// The product lines of a batch of products.
pub(super) fn collect_product_lines(batch: &RecordBatch, out: &mut Vec<String>) {
    let index = Entity::Products
        .column_index("product_line")
        .expect("products have a product line");
    let lines = batch.column(index).as_string::<i32>();
    out.extend(lines.iter().flatten().map(str::to_string));
}

/// The digests of a batch's ids (its first column), as `KnownIdSet` holds them.
pub(super) fn collect_ids(batch: &RecordBatch, out: &mut Vec<u128>) {
    let ids = batch.column(0).as_string::<i32>();
    out.extend(ids.iter().flatten().map(|id| text_digest(id.as_bytes())));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_ids_are_found_by_their_text() {
        let ids = LargeStringArray::from(vec![Some("C-1"), None, Some("C-22"), Some("C-1")]);
        let stored = StoredIds::new(ids);
        assert!(stored.contains("C-1") && stored.contains("C-22"));
        // Not a prefix, an extension, an empty text or a missing value's stand-in.
        for absent in ["C-2", "C-222", "", "C-", "null"] {
            assert!(!stored.contains(absent), "{absent}");
        }
        assert_eq!(stored.len(), 2);
    }
}
