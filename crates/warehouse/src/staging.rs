//! Staging: validated rows written to Parquet beside the warehouse, before anything is committed.
//!
//! Parsing and Parquet encoding each take a core, so the encoder runs on its own thread behind a
//! small bounded channel: the parser never waits for the disk, and memory holds only the few
//! batches in flight, whatever the size of the export — and, for a table kept in order (the order lines
//! by product and partner), the rows being put in order.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use crossbeam_channel::{Receiver, Sender, bounded};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use prism_contract::Entity;

use crate::WarehouseError;
use crate::load::phases::{Busy, BusyClock};

/// Rows per staged file: several files let the commit read them in parallel.
const ROWS_PER_FILE: usize = 2 * 1024 * 1024;

/// Rows put in order together, for a table kept in order: the larger the group, the fewer
/// pages one partner's or one product's rows are spread over.
const ORDERED_ROWS: usize = 1024 * 1024;

/// Rows per row group of most tables' files. A row group is the smallest part of a file one
/// core reads, so a table of one row group (a brand owner's 800 k service requests) was read by
/// one core while the other waited, and a filter's first rows came only once the whole group's
/// filter column was decoded. Row groups of 128 Ki rows give each core several to read (DuckDB
/// writes groups of 122,880). A table kept in one column's order (a partner's requests) is put
/// in order by `ORDERED_ROWS` and then cut into row groups of this size: one partner's rows, a
/// run within the ordered group, lie in one or two of them, whose statistics let the others be
/// skipped whole.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// The columns a table's rows are kept in the order of, within each row group; their indices in
/// the entity's schema. The order lines in the Z-order of product and partner
/// (`cluster::batches_by_columns`), so that both a product's lines (who bought it, from whom:
/// customer potential) and a partner's (its customers' orders, a partner user's own questions
/// that no rollup answers) are read from a few pages of each row group: in the order of the
/// product alone, a partner's lines lay in every page, and its 50 customers' orders read all 96
/// M lines at scale 100. The partner's own facts by partner, so that one partner's requests,
/// surveys, opportunities and registrations are read alone (its high-risk accounts, its alerts:
/// at scale 8 a partner's risk read every request and survey of the channel).
pub(crate) fn clustered_by(entity: Entity) -> Vec<usize> {
    let columns: &[&str] = match entity {
        Entity::Orders => &["product_id", "partner_id"],
        Entity::ServiceRequests
        | Entity::SatisfactionSurveys
        | Entity::Opportunities
        | Entity::DealRegistrations => &["partner_id"],
        _ => &[],
    };
    let schema = entity.schema();
    columns
        .iter()
        .filter_map(|c| schema.index_of(c).ok())
        .collect()
}

/// Rows per row group of a table's files: `ROW_GROUP_ROWS`, but a table kept in the Z-order of
/// several columns (the order lines) keeps each ordered group as one row group. The Z-order
/// spreads one partner's lines over the whole group, so cut into eight, each of the eight held
/// some of them, and reading one partner's lines read eight dictionaries per column instead of
/// one (at scale 100, 20 % slower); and a table of millions of lines has row groups enough for
/// both cores.
pub(crate) fn row_group_rows(entity: Entity) -> usize {
    match clustered_by(entity).len() {
        0 | 1 => ROW_GROUP_ROWS,
        _ => ORDERED_ROWS,
    }
}

/// Rows per data page of a table's files (Parquet's default is 20,000). A query filtering on a
/// table's cluster column reads the pages whose statistics hold the value: one product's order
/// lines are a few thousand of a row group's 1 Mi rows, so pages of 20,000 read several times the
/// rows asked for. Smaller pages cost a little in a full scan (a header and an index entry each).
pub(crate) const PAGE_ROWS: usize = 4096;

/// The largest dictionary a column chunk is encoded with before its values are written plain
/// (Parquet's default is 1 MB). A row group's page of one product's order lines reads the
/// chunk's dictionary whole: the customers' 1 MB dictionaries (90 k ids each) were most of what
/// a product's lines cost to read. The columns with few values (partners, products, dates) keep
/// theirs.
pub(crate) const DICTIONARY_BYTES: usize = 64 * 1024;

/// How the files of a table are written, staged or rewritten by a load's merge: LZ4 (raw), row
/// groups of `row_group_rows`, pages of `PAGE_ROWS` rows and dictionaries of at most
/// `DICTIONARY_BYTES`, so that a table reads the same whichever load wrote a file of it; its
/// numbers (`packed_columns`) bit-packed by their differences and not compressed again.
pub(crate) fn table_file_properties(entity: Entity) -> WriterProperties {
    let mut properties = WriterProperties::builder()
        // LZ4 rather than Snappy: the same size (171 MB of order lines at scale 8 either way),
        // but Snappy's decompression was a fifth of the CPU of a partner cut off the rollups.
        // LZ4_RAW, the codec Parquet defines without the Hadoop framing, which DuckDB, Spark
        // (3.4 and later) and Trino read.
        .set_compression(Compression::LZ4_RAW)
        .set_max_row_group_row_count(Some(row_group_rows(entity)))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_dictionary_page_size_limit(DICTIONARY_BYTES);
    // Amounts, counts and instants take most of their 8 bytes' range in no row group, so a
    // dictionary of them overflowed (and was written plain) and LZ4 over the plain values saved a
    // third. Bit-packed by their differences they are smaller than that, and read without a
    // decompression: at scale 8 the tables were 243 → 217 MB and revenue by partner off the
    // rollups a fifth faster. Every reader of Parquet reads DELTA_BINARY_PACKED.
    for column in packed_columns(entity) {
        let path = ColumnPath::from(column);
        properties = properties
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path.clone(), Encoding::DELTA_BINARY_PACKED)
            .set_column_compression(path, Compression::UNCOMPRESSED);
    }
    properties.build()
}

/// The columns of a table written bit-packed by their differences: those stored as 64-bit
/// integers in Parquet (integers, amounts of money, instants). An amount wider than 18 digits
/// would be stored as fixed-length bytes, which that encoding does not take.
fn packed_columns(entity: Entity) -> Vec<String> {
    entity
        .schema()
        .fields()
        .iter()
        .filter(|field| match field.data_type() {
            DataType::Int64 | DataType::Timestamp(..) => true,
            DataType::Decimal128(precision, _) => *precision <= 18,
            _ => false,
        })
        .map(|field| field.name().clone())
        .collect()
}

/// Writes one table's staged rows on a background thread.
pub struct StagedTable {
    sender: Option<Sender<RecordBatch>>,
    orderer: Option<JoinHandle<Result<(), WarehouseError>>>,
    writer: Option<JoinHandle<Result<u64, WarehouseError>>>,
    pub dir: PathBuf,
}

impl StagedTable {
    /// `cluster_by`: the columns whose order each row group's rows are written in (one
    /// column's, or the Z-order of several: `cluster::batches_by_columns`), so that the
    /// statistics of its pages let a query filtering on one of them read only the pages of its
    /// value (one partner's or one product's order lines: a few percent of the table). None:
    /// the rows are written as they come.
    pub fn start(
        dir: PathBuf,
        entity: Entity,
        cluster_by: Vec<usize>,
        busy: &BusyClock,
    ) -> Result<StagedTable, WarehouseError> {
        fs::create_dir_all(&dir).map_err(|e| WarehouseError::io(&dir, e))?;
        let (sender, receiver) = bounded::<RecordBatch>(4);
        // A clustered table's row groups are put in order on a thread of their own, beside the
        // parser and the encoder, so that neither waits for it.
        let clustered = !cluster_by.is_empty();
        let (receiver, orderer) = match clustered {
            false => (receiver, None),
            true => {
                let (ordered_sender, ordered) = bounded::<RecordBatch>(1);
                let busy = busy.clone();
                let orderer = std::thread::Builder::new()
                    .name("prism-order".into())
                    .spawn(move || order_row_groups(receiver, &cluster_by, ordered_sender, &busy))
                    .map_err(|e| WarehouseError::io(&dir, e))?;
                (ordered, Some(orderer))
            }
        };
        let thread_dir = dir.clone();
        let busy = busy.clone();
        let writer = std::thread::Builder::new()
            .name("prism-stage".into())
            .spawn(move || write_files(receiver, &thread_dir, entity, clustered, &busy))
            .map_err(|e| WarehouseError::io(&dir, e))?;
        Ok(StagedTable {
            sender: Some(sender),
            orderer,
            writer: Some(writer),
            dir,
        })
    }

    /// Queues a batch; fails only if the writer thread has stopped (its error comes at `finish`).
    pub fn push(&self, batch: RecordBatch) -> bool {
        self.sender.as_ref().is_some_and(|s| s.send(batch).is_ok())
    }

    /// Waits for the writer and returns the rows staged.
    pub fn finish(mut self) -> Result<u64, WarehouseError> {
        self.sender.take();
        let ordered = match self.orderer.take().map(|t| t.join()) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(_)) => Err(WarehouseError::Staging(format!(
                "the ordering of {} panicked",
                self.dir.display()
            ))),
        };
        let written = match self.writer.take().expect("joined once").join() {
            Ok(result) => result,
            Err(_) => Err(WarehouseError::Staging(format!(
                "the writer of {} panicked",
                self.dir.display()
            ))),
        };
        ordered.and(written)
    }
}

impl Drop for StagedTable {
    fn drop(&mut self) {
        self.sender.take();
        if let Some(o) = self.orderer.take() {
            let _ = o.join();
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

pub fn remove_dir_if_exists(dir: &Path) -> Result<(), WarehouseError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(WarehouseError::io(dir, e)),
    }
}

/// The orderer's thread: batches held until `ORDERED_ROWS`, then put in the order of `columns`
/// and sent on as one ordered group.
fn order_row_groups(
    receiver: Receiver<RecordBatch>,
    columns: &[usize],
    ordered_sender: Sender<RecordBatch>,
    busy: &BusyClock,
) -> Result<(), WarehouseError> {
    let mut held: Vec<RecordBatch> = Vec::new();
    let mut held_rows = 0usize;
    let send = |held: &mut Vec<RecordBatch>| -> Result<bool, WarehouseError> {
        let group = busy
            .time(Busy::Ordering, || {
                crate::cluster::batches_by_columns(std::mem::take(held), columns)
            })
            .map_err(|e| WarehouseError::Staging(e.to_string()))?;
        Ok(ordered_sender.send(group).is_ok())
    };
    for batch in receiver {
        held_rows += batch.num_rows();
        held.push(batch);
        if held_rows >= ORDERED_ROWS {
            held_rows = 0;
            if !send(&mut held)? {
                // The writer stopped; its error comes at `finish`.
                return Ok(());
            }
        }
    }
    if !held.is_empty() {
        send(&mut held)?;
    }
    Ok(())
}

/// The writer's thread: batches written to Parquet files of `ROWS_PER_FILE` rows in `dir`
/// (each ordered group starting a row group of its own when `clustered`); returns the rows
/// written.
fn write_files(
    receiver: Receiver<RecordBatch>,
    thread_dir: &Path,
    entity: Entity,
    clustered: bool,
    busy: &BusyClock,
) -> Result<u64, WarehouseError> {
    // A new table takes the staged files as they are, so they are written in the table's own
    // format.
    let props = table_file_properties(entity);
    let schema = entity.schema();
    let mut rows = 0u64;
    let mut file_no = 0usize;
    let mut in_file = 0usize;
    let mut current: Option<(PathBuf, ArrowWriter<BufWriter<File>>)> = None;
    let open = |n: usize| -> Result<(PathBuf, ArrowWriter<BufWriter<File>>), WarehouseError> {
        let path = thread_dir.join(format!("part-{n:05}.parquet"));
        let f = File::create(&path).map_err(|e| WarehouseError::io(&path, e))?;
        let w = ArrowWriter::try_new(
            BufWriter::with_capacity(1 << 20, f),
            schema.clone(),
            Some(props.clone()),
        )
        .map_err(|e| WarehouseError::Staging(format!("{}: {e}", path.display())))?;
        Ok((path, w))
    };
    for batch in receiver {
        let started = std::time::Instant::now();
        if current.is_none() {
            current = Some(open(file_no)?);
            file_no += 1;
        }
        let (path, w) = current.as_mut().expect("open");
        w.write(&batch)
            .map_err(|e| WarehouseError::Staging(format!("{}: {e}", path.display())))?;
        if clustered {
            // Each ordered group starts a row group of its own, so that no row group holds the
            // end of one order and the start of the next.
            w.flush()
                .map_err(|e| WarehouseError::Staging(format!("{}: {e}", path.display())))?;
        }
        rows += batch.num_rows() as u64;
        in_file += batch.num_rows();
        if in_file >= ROWS_PER_FILE {
            let (path, w) = current.take().expect("open");
            w.close()
                .map_err(|e| WarehouseError::Staging(format!("{}: {e}", path.display())))?;
            in_file = 0;
        }
        busy.add(Busy::Writing, started.elapsed());
    }
    let started = std::time::Instant::now();
    if let Some((path, w)) = current.take() {
        w.close()
            .map_err(|e| WarehouseError::Staging(format!("{}: {e}", path.display())))?;
    } else if file_no == 0 {
        // No rows: one empty file still carries the schema for the commit.
        let (path, w) = open(0)?;
        w.close()
            .map_err(|e| WarehouseError::Staging(format!("{}: {e}", path.display())))?;
    }
    busy.add(Busy::Writing, started.elapsed());
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::ArrayRef;
    use arrow::datatypes::DataType;
    use datafusion::common::ScalarValue;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    /// `rows` rows of an entity's columns, every value the same but the partner's, which
    /// cycles through 500 partners: enough for a table put in partner order.
    fn rows_of(entity: Entity, rows: usize) -> RecordBatch {
        let schema = entity.schema();
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8 if f.name() == "partner_id" => Arc::new(
                    (0..rows)
                        .map(|i| Some(format!("P-{:05}", i * 7919 % 500)))
                        .collect::<arrow::array::StringArray>(),
                ) as ArrayRef,
                DataType::Utf8 => ScalarValue::Utf8(Some("x".into()))
                    .to_array_of_size(rows)
                    .unwrap(),
                DataType::Boolean => ScalarValue::Boolean(Some(false))
                    .to_array_of_size(rows)
                    .unwrap(),
                t => ScalarValue::new_zero(t)
                    .unwrap()
                    .to_array_of_size(rows)
                    .unwrap(),
            })
            .collect();
        RecordBatch::try_new(schema, columns).unwrap()
    }

    /// The rows of each row group of the files staged in `dir`.
    fn row_groups(dir: &Path) -> Vec<i64> {
        let mut groups = Vec::new();
        for f in fs::read_dir(dir).unwrap() {
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(File::open(f.unwrap().path()).unwrap())
                    .unwrap();
            groups.extend(reader.metadata().row_groups().iter().map(|g| g.num_rows()));
        }
        groups
    }

    #[test]
    fn a_table_is_staged_in_row_groups_each_core_can_take_one_of() {
        let tmp = tempfile::tempdir().unwrap();
        let rows = 300_000;
        // Service requests, in partner order and not: row groups of 128 Ki rows, so that two
        // cores each read some of 300 k requests; in order, one partner's requests lie in
        // one or two of them.
        for (name, in_order) in [("ordered", true), ("as_they_come", false)] {
            let entity = Entity::ServiceRequests;
            let partner = entity.schema().index_of("partner_id").unwrap();
            let dir = tmp.path().join(name);
            let cluster_by = if in_order { vec![partner] } else { vec![] };
            let table =
                StagedTable::start(dir.clone(), entity, cluster_by, &BusyClock::default()).unwrap();
            for _ in 0..3 {
                assert!(table.push(rows_of(entity, rows / 3)));
            }
            assert_eq!(table.finish().unwrap(), rows as u64);
            assert_eq!(
                row_groups(&dir),
                vec![131_072, 131_072, 37_856],
                "{name}: 300 k requests"
            );
            if in_order {
                let reader = ParquetRecordBatchReaderBuilder::try_new(
                    File::open(dir.join("part-00000.parquet")).unwrap(),
                )
                .unwrap();
                let mut holding_p7 = 0;
                for g in reader.metadata().row_groups() {
                    let stats = g.column(partner).statistics().unwrap();
                    let (lo, hi) = (
                        String::from_utf8(stats.min_bytes_opt().unwrap().to_vec()).unwrap(),
                        String::from_utf8(stats.max_bytes_opt().unwrap().to_vec()).unwrap(),
                    );
                    holding_p7 += usize::from(lo.as_str() <= "P-00007" && "P-00007" <= hi.as_str());
                }
                assert_eq!(holding_p7, 1, "one partner's requests in one row group");
            }
        }
        // The order lines, in the Z-order of product and partner, keep that order's group
        // whole: one row group of 300 k lines.
        let entity = Entity::Orders;
        let dir = tmp.path().join("orders");
        let table = StagedTable::start(
            dir.clone(),
            entity,
            clustered_by(entity),
            &BusyClock::default(),
        )
        .unwrap();
        assert!(table.push(rows_of(entity, rows)));
        assert_eq!(table.finish().unwrap(), rows as u64);
        assert_eq!(row_groups(&dir), vec![rows as i64]);
    }
}
