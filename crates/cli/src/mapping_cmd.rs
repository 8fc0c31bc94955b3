//! `prism load --mapping FILE`: an export in a CRM's own layout, written in the contract's
//! layout first and then loaded like any export, every fault located in the original files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use prism_contract::mapping::{Locator, MappedExport, Mapping, MappingError};
use prism_warehouse::LoadReport;

use crate::Format;

/// Faults shown on the screen before "... and N more".
const SHOWN: usize = 20;

/// Where a mapped export is read.
pub enum From {
    /// An export folder in a CRM's layout.
    Folder(PathBuf),
    /// A PostgreSQL database, and a folder holding the contract files the mapping does not name.
    Database(String, Option<PathBuf>),
}

impl std::fmt::Display for From {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            From::Folder(dir) => write!(f, "{}", dir.display()),
            // The password is not kept in the history.
            From::Database(url, _) => f.write_str(&crate::postgres_source::redacted(url)),
        }
    }
}

/// The export written through the mapping into a folder under the data folder, with where each
/// row came from; or, when rows cannot be mapped, the exit code after saying which (nothing is
/// loaded).
pub fn mapped(
    mapping: &Path,
    from: &From,
    data: &Path,
    format: Format,
) -> Result<Result<(MappedExport, Locator), ExitCode>> {
    let mapping = Mapping::read(mapping)?;
    let folder = match from {
        From::Folder(dir) | From::Database(_, Some(dir)) => Some(dir.as_path()),
        From::Database(_, None) => None,
    };
    if let Some(dir) = folder
        && !dir.is_dir()
    {
        anyhow::bail!(
            "{}: not a folder (an export is a folder of CSV files)",
            dir.display()
        );
    }
    let out = MappedExport::new(data)?;
    let applied = match from {
        From::Folder(dir) => mapping.apply(dir, &out.dir),
        From::Database(url, _) => {
            let mut db = crate::postgres_source::Postgres::connect(url)?;
            mapping.apply_from(&mut db, folder, &out.dir)
        }
    };
    match applied {
        Ok(locator) => Ok(Ok((out, locator))),
        Err(MappingError::Rejected(faults)) => {
            if format == Format::Json {
                say!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "committed": false,
                        "mapping_faults": faults,
                    }))?
                );
            } else {
                for f in faults.iter().take(SHOWN) {
                    eprintln!("{f}");
                }
                if faults.len() > SHOWN {
                    eprintln!("... and {} more", faults.len() - SHOWN);
                }
            }
            eprintln!(
                "error: {} row(s) of the export cannot be mapped; nothing was loaded",
                faults.len()
            );
            Ok(Err(ExitCode::from(2)))
        }
        Err(e) => Err(e.into()),
    }
}

/// A load's report with every fault located in the original export, and each file named with
/// the one it was mapped from.
pub fn located(mut report: LoadReport, locator: &Locator) -> LoadReport {
    report.file_errors = report
        .file_errors
        .iter()
        .map(|r| locator.locate(r))
        .collect();
    for f in &mut report.files {
        f.shown = f.shown.iter().map(|r| locator.locate(r)).collect();
        if let Some(source) = locator.source_of(&f.file) {
            f.file = format!("{} (from {source})", f.file);
        }
    }
    report
}
