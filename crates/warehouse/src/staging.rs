//! Staging: validated rows written to Parquet beside the warehouse, before anything is committed.
//!
//! Parsing and Parquet encoding each take a core, so the encoder runs on its own thread behind a
//! small bounded channel: the parser never waits for the disk, and memory holds only the few
//! batches in flight, whatever the size of the export.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use crossbeam_channel::{Sender, bounded};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::WarehouseError;

/// Rows per staged file: several files let the commit read them in parallel.
const ROWS_PER_FILE: usize = 2 * 1024 * 1024;

/// Writes one table's staged rows on a background thread.
pub struct StagedTable {
    sender: Option<Sender<RecordBatch>>,
    writer: Option<JoinHandle<Result<u64, WarehouseError>>>,
    pub dir: PathBuf,
}

impl StagedTable {
    pub fn start(dir: PathBuf, schema: SchemaRef) -> Result<StagedTable, WarehouseError> {
        fs::create_dir_all(&dir).map_err(|e| WarehouseError::io(&dir, e))?;
        let (sender, receiver) = bounded::<RecordBatch>(4);
        let thread_dir = dir.clone();
        let writer = std::thread::Builder::new()
            .name("prism-stage".into())
            .spawn(move || -> Result<u64, WarehouseError> {
                let props = WriterProperties::builder()
                    // A new table takes the staged files as they are, so they are written in
                    // the table's own format.
                    .set_compression(Compression::SNAPPY)
                    .set_max_row_group_row_count(Some(1024 * 1024))
                    .build();
                let mut rows = 0u64;
                let mut file_no = 0usize;
                let mut in_file = 0usize;
                let mut current: Option<(PathBuf, ArrowWriter<BufWriter<File>>)> = None;
                let open = |n: usize| -> Result<(PathBuf, ArrowWriter<BufWriter<File>>), WarehouseError> {
                    let path = thread_dir.join(format!("part-{n:05}.parquet"));
                    let f = File::create(&path).map_err(|e| WarehouseError::io(&path, e))?;
                    let w = ArrowWriter::try_new(BufWriter::with_capacity(1 << 20, f), schema.clone(), Some(props.clone()))
                        .map_err(|e| WarehouseError::Staging(format!("{}: {e}", path.display())))?;
                    Ok((path, w))
                };
                for batch in receiver {
                    if current.is_none() {
                        current = Some(open(file_no)?);
                        file_no += 1;
                    }
                    let (path, w) = current.as_mut().expect("open");
                    w.write(&batch).map_err(|e| WarehouseError::Staging(format!("{}: {e}", path.display())))?;
                    rows += batch.num_rows() as u64;
                    in_file += batch.num_rows();
                    if in_file >= ROWS_PER_FILE {
                        let (path, w) = current.take().expect("open");
                        w.close().map_err(|e| WarehouseError::Staging(format!("{}: {e}", path.display())))?;
                        in_file = 0;
                    }
                }
                if let Some((path, w)) = current.take() {
                    w.close().map_err(|e| WarehouseError::Staging(format!("{}: {e}", path.display())))?;
                } else if file_no == 0 {
                    // No rows: one empty file still carries the schema for the commit.
                    let (path, w) = open(0)?;
                    w.close().map_err(|e| WarehouseError::Staging(format!("{}: {e}", path.display())))?;
                }
                Ok(rows)
            })
            .map_err(|e| WarehouseError::io(&dir, e))?;
        Ok(StagedTable { sender: Some(sender), writer: Some(writer), dir })
    }

    /// Queues a batch; fails only if the writer thread has stopped (its error comes at `finish`).
    pub fn push(&self, batch: RecordBatch) -> bool {
        self.sender.as_ref().is_some_and(|s| s.send(batch).is_ok())
    }

    /// Waits for the writer and returns the rows staged.
    pub fn finish(mut self) -> Result<u64, WarehouseError> {
        self.sender.take();
        match self.writer.take().expect("joined once").join() {
            Ok(result) => result,
            Err(_) => Err(WarehouseError::Staging(format!("the writer of {} panicked", self.dir.display()))),
        }
    }
}

impl Drop for StagedTable {
    fn drop(&mut self) {
        self.sender.take();
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
