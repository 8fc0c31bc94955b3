//! The load report: what each file gave, the rejections located, and the report file and
//! quarantine files a load writes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use prism_contract::Rejection;
use serde::Serialize;

use crate::versions::LoadMode;
use crate::{Result, WarehouseError};

/// On screen, a report shows this many rejections per file; the JSON report has all of them.
pub const SHOWN_PER_FILE: usize = 100;

/// What happened to one file of the export.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FileOutcome {
    /// The contract file.
    pub file: String,
    /// Whether the export has it.
    pub present: bool,
    /// Rows read.
    pub rows_read: u64,
    /// Rows loaded.
    pub rows_loaded: u64,
    /// Rows rejected.
    pub rows_rejected: u64,
    /// Rows with a new key.
    pub added: u64,
    /// Rows that replaced a stored row of the same key.
    pub replaced: u64,
    /// What was read but ignored (an unknown column).
    pub warnings: Vec<String>,
    /// The first rejections of this file, for the screen.
    #[serde(skip)]
    pub shown: Vec<Rejection>,
}

/// The outcome of a load, also written as `report.json` in the load's folder.
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    /// Whether a new version was committed.
    pub committed: bool,
    /// The new warehouse version, when committed.
    pub version: Option<u64>,
    /// The export, as the load names it.
    pub source: String,
    /// Upsert or replace.
    pub mode: LoadMode,
    /// Whether rejected rows were set aside rather than refusing the export.
    pub quarantine: bool,
    /// When the load started (RFC 3339, UTC).
    pub started_at: String,
    /// When it finished.
    pub finished_at: String,
    /// Each contract file's outcome.
    pub files: Vec<FileOutcome>,
    /// Problems with whole files (missing, unreadable header, no rows where rows are needed).
    pub file_errors: Vec<Rejection>,
    /// Where the report is written (`report.json`).
    pub report_path: PathBuf,
    /// Where quarantined rows went, when any were.
    pub rejects_dir: Option<PathBuf>,
    /// Where the load's time went, phase by phase (the phases reached).
    pub phases: super::LoadPhases,
}

impl LoadReport {
    /// The report of a load that has just started: nothing read, nothing committed.
    pub(super) fn begin(
        source: String,
        options: &super::LoadOptions,
        started_at: String,
        report_path: PathBuf,
    ) -> LoadReport {
        LoadReport {
            committed: false,
            version: None,
            source,
            mode: options.mode,
            quarantine: options.quarantine,
            started_at,
            finished_at: String::new(),
            files: Vec::new(),
            file_errors: Vec::new(),
            report_path,
            rejects_dir: None,
            phases: super::LoadPhases::default(),
        }
    }

    /// Rows rejected over all files.
    pub fn rows_rejected(&self) -> u64 {
        self.files.iter().map(|f| f.rows_rejected).sum()
    }
}

/// Streams every rejection into the JSON report as it is found, so that an export with millions
/// of bad rows is reported in full without holding them in memory.
pub(super) struct ReportWriter {
    out: BufWriter<File>,
    path: PathBuf,
    first: bool,
}

impl ReportWriter {
    pub(super) fn create(path: PathBuf) -> Result<ReportWriter> {
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

    pub(super) fn rejection(&mut self, r: &Rejection) -> Result<()> {
        let sep: &[u8] = if self.first { b"\n  " } else { b",\n  " };
        self.first = false;
        self.out
            .write_all(sep)
            .map_err(|e| WarehouseError::io(&self.path, e))?;
        serde_json::to_writer(&mut self.out, r)
            .map_err(|e| WarehouseError::io(&self.path, e.into()))
    }

    pub(super) fn finish(mut self, report: &LoadReport) -> Result<()> {
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
pub(super) struct RejectsFile {
    pub(super) writer: csv::Writer<BufWriter<File>>,
    pub(super) path: PathBuf,
}
