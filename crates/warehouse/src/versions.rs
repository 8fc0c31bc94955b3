//! The warehouse version file: which Delta version of each table is current, and the history.
//!
//! `warehouse.json` is the single switch that makes a load visible. It is replaced whole by
//! writing a temporary file, fsyncing it, renaming it over the old one and fsyncing the folder,
//! so a reader (or a crash) sees either the previous file or the new one, never a mix. On a
//! bucket, a put replaces an object whole, and it is conditional: the file is replaced only if
//! it is still the one the load read.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use object_store::UpdateVersion;
use serde::{Deserialize, Serialize};

use crate::WarehouseError;
use crate::storage::Remote;

/// The version file's name in the data folder.
pub const FILE_NAME: &str = "warehouse.json";
const FORMAT: u32 = 1;

/// One table as pinned by a warehouse version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TablePin {
    /// The Delta Lake version of the table that this warehouse version reads.
    pub delta_version: u64,
    /// The table's rows in that version.
    pub rows: u64,
}

/// A rollup as pinned by a warehouse version: built by the load that made the version, from
/// the base tables of that version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupPin {
    /// The Delta Lake version of the rollup's table.
    pub delta_version: u64,
    /// Its rows.
    pub rows: u64,
    /// How long building it took, in milliseconds.
    #[serde(default)]
    pub build_ms: u64,
    /// Brought up to date from the version before by the rows its load changed (added to it,
    /// or its changed slices computed again), rather than built whole. The name is kept from
    /// when slices were the only way, for the version files that hold it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub by_slices: bool,
}

/// What a load did to one table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableChange {
    /// Rows of the file read.
    pub rows_read: u64,
    /// Rows with a new key.
    pub added: u64,
    /// Rows that replaced a stored row.
    pub replaced: u64,
    /// Rows rejected (set aside, in a quarantined load).
    pub rejected: u64,
}

/// A committed warehouse version: the result of one load.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarehouseVersion {
    /// Its number, from 1.
    pub version: u64,
    /// RFC 3339, UTC.
    pub loaded_at: String,
    /// The export folder the load read.
    pub source: String,
    /// Upsert or replace.
    pub mode: LoadMode,
    /// Whether rejected rows were set aside.
    pub quarantine: bool,
    /// Each table's pinned Delta version.
    pub tables: BTreeMap<String, TablePin>,
    /// What the load did to each table.
    pub changes: BTreeMap<String, TableChange>,
    /// The rollups of this version, by table name (`rollups/<name>/`). Versions written before
    /// rollups existed have none.
    #[serde(default)]
    pub rollups: BTreeMap<String, RollupPin>,
    /// How long building all of them took, in milliseconds of wall-clock time (they are built
    /// side by side, so this is less than the sum of their own times).
    #[serde(default)]
    pub rollups_build_ms: u64,
    /// How long the whole load took, from reading the export to switching the version, in
    /// milliseconds. Versions written before it was kept say 0.
    #[serde(default)]
    pub load_ms: u64,
}

/// How a load applies an export.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadMode {
    /// Rows whose key exists replace the stored row; new keys add rows.
    #[default]
    Upsert,
    /// The export becomes the whole warehouse.
    Replace,
}

impl std::fmt::Display for LoadMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LoadMode::Upsert => "upsert",
            LoadMode::Replace => "replace",
        })
    }
}

/// `warehouse.json`: every committed version; replaced atomically by each load.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionFile {
    /// The file's format number.
    pub format: u32,
    /// Every committed version, oldest first; the last one is current.
    pub versions: Vec<WarehouseVersion>,
}

/// The version file's contents, or why they cannot be read (`name` says where, in messages).
fn parse(bytes: &[u8], name: &str) -> Result<VersionFile, WarehouseError> {
    let file: VersionFile = serde_json::from_slice(bytes)
        .map_err(|e| WarehouseError::Corrupt(format!("{name}: {e}")))?;
    if file.format != FORMAT {
        return Err(WarehouseError::Corrupt(format!(
            "{name}: format {} is not supported by this version of Prism (expected {FORMAT})",
            file.format
        )));
    }
    Ok(file)
}

/// Reads a bucket's version file, with the object's version for a conditional replacement
/// (`None`: there is no file yet).
pub(crate) async fn read_remote(
    remote: &Remote,
) -> Result<(VersionFile, Option<UpdateVersion>), WarehouseError> {
    match remote.get(FILE_NAME).await? {
        Some((bytes, version)) => Ok((
            parse(&bytes, &format!("{}{FILE_NAME}", remote.url))?,
            Some(version),
        )),
        None => Ok((VersionFile::empty(), None)),
    }
}

/// [`read_remote`] from code that is not async (or is, but must not wait on its own runtime):
/// on a thread of its own, with a store of its own, since a store's connections belong to the
/// runtime that opened them.
///
/// Readers (the server asks at every request whether a load has switched the version) are
/// answered from a copy at most a second old, so that a bucket is asked once a second, not once
/// a request; a load reads the file itself, never this copy.
pub(crate) fn read_remote_blocking(remote: &Remote) -> Result<VersionFile, WarehouseError> {
    type Copies =
        std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, VersionFile)>>;
    static COPIES: std::sync::OnceLock<Copies> = std::sync::OnceLock::new();
    let data = remote.url.to_string();
    let copies = COPIES.get_or_init(Default::default);
    if let Some((read_at, file)) = copies.lock().expect("copies lock").get(&data)
        && read_at.elapsed() < std::time::Duration::from_secs(1)
    {
        return Ok(file.clone());
    }
    let (file, _) = read_uncached(&data)?;
    copies
        .lock()
        .expect("copies lock")
        .insert(data, (std::time::Instant::now(), file.clone()));
    Ok(file)
}

fn read_uncached(data: &str) -> Result<(VersionFile, Option<UpdateVersion>), WarehouseError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| WarehouseError::Storage(format!("{data}: {e}")))?;
            runtime.block_on(async {
                match crate::storage::Root::remote(data)? {
                    crate::storage::Root::Remote(own) => read_remote(&own).await,
                    crate::storage::Root::Local(_) => unreachable!("an s3:// URL is remote"),
                }
            })
        })
        .join()
        .unwrap_or_else(|_| {
            Err(WarehouseError::Storage(format!(
                "{data}: reading {FILE_NAME} panicked"
            )))
        })
    })
}

impl VersionFile {
    fn empty() -> VersionFile {
        VersionFile {
            format: FORMAT,
            versions: Vec::new(),
        }
    }

    /// Reads the version file of a data folder; none yet is no versions.
    pub fn read(data_dir: &Path) -> Result<VersionFile, WarehouseError> {
        let path = data_dir.join(FILE_NAME);
        match fs::read(&path) {
            Ok(bytes) => parse(&bytes, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(VersionFile::empty()),
            Err(e) => Err(WarehouseError::io(&path, e)),
        }
    }

    /// Replaces a bucket's version file with this one if it is still the one read (`read`:
    /// its object version, `None` when there was none); a [`WarehouseError::Conflict`] when
    /// another load replaced it first.
    pub(crate) async fn write_remote(
        &self,
        remote: &Remote,
        read: Option<UpdateVersion>,
    ) -> Result<(), WarehouseError> {
        let bytes = serde_json::to_vec_pretty(self).expect("version file serialises");
        if remote.put_if(FILE_NAME, bytes, read).await?.is_some() {
            Ok(())
        } else {
            Err(WarehouseError::Conflict(format!(
                "another load switched {}{FILE_NAME} while this one ran; this load was not \
                 committed and its tables were put back. Load again to apply it over the new \
                 version.",
                remote.url
            )))
        }
    }

    /// The current version: the newest.
    pub fn current(&self) -> Option<&WarehouseVersion> {
        self.versions.last()
    }

    /// A version by number.
    pub fn get(&self, version: u64) -> Option<&WarehouseVersion> {
        self.versions.iter().find(|v| v.version == version)
    }

    /// Atomically replaces the version file with this one.
    pub fn write(&self, data_dir: &Path) -> Result<(), WarehouseError> {
        let path = data_dir.join(FILE_NAME);
        let tmp = data_dir.join(format!("{FILE_NAME}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).expect("version file serialises");
        let mut f = File::create(&tmp).map_err(|e| WarehouseError::io(&tmp, e))?;
        f.write_all(&bytes)
            .map_err(|e| WarehouseError::io(&tmp, e))?;
        f.sync_all().map_err(|e| WarehouseError::io(&tmp, e))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(|e| WarehouseError::io(&path, e))?;
        // The rename is durable only once the folder itself is synced.
        File::open(data_dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| WarehouseError::io(data_dir, e))?;
        Ok(())
    }
}
