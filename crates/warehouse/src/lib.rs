//! The warehouse: one Delta Lake table per entity of the contract, and one current warehouse
//! version that pins each table's Delta version.
//!
//! Layout of a data folder:
//! ```text
//! warehouse.json        current version + history (see `versions`)
//! tables/<entity>/      a Delta Lake table (Parquet files + _delta_log), readable by Spark,
//!                       Trino or DuckDB as they are
//! rollups/<table>/      a rollup (Delta Lake): rewritten whole by every load that builds it;
//!                       each warehouse version pins the Delta version it built
//! loads/<id>/           report.json of each load attempt, and rejects/*.csv in quarantine mode
//! staging/              validated rows of a load in progress (removed when it ends)
//! .lock                 held by the one load that may run at a time
//! ```
//! The same layout may live under a prefix of an S3 bucket (`s3://bucket/prefix`, see
//! `storage`); a load's staging is then a local work folder.
//!
//! Readers open tables at the pinned versions only, so a load in progress, or one that died,
//! is invisible until it switches `warehouse.json`.
//!
//! This crate knows nothing of the business model, metrics or HTTP.

#![warn(missing_docs)]

mod cluster;
mod decimals;
mod distributed;
mod kept;
mod load;
mod runs;
mod staging;
mod storage;
mod texts;
pub mod versions;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use prism_contract::Entity;
use url::Url;

pub use distributed::{Cluster, cluster, serve_worker, set_cluster};
pub use kept::{FileCacheStats, file_cache_stats, set_file_cache_mb};
pub use load::{DeltaMeasure, RollupBuild, RollupDelta, RollupSlices, SlicePeriod};
pub use load::{FileOutcome, LoadOptions, LoadPhases, LoadProgress, LoadReport, NoProgress};
pub use storage::{is_remote, set_storage_options};
pub use versions::{LoadMode, RollupPin, TableChange, TablePin, VersionFile, WarehouseVersion};

/// What can go wrong reading or loading the warehouse.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// Which.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The warehouse's files contradict each other or cannot be read.
    #[error("the warehouse is damaged: {0}")]
    Corrupt(String),
    /// The Delta Lake library failed.
    #[error("Delta Lake: {0}")]
    Delta(#[from] deltalake::DeltaTableError),
    /// A query over the tables failed.
    #[error("query: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    /// The staged rows of a load could not be written.
    #[error("staging: {0}")]
    Staging(String),
    /// Another load holds the data folder's lock.
    #[error("another load is running on {0}; try again when it has finished")]
    Locked(String),
    /// Another load switched the warehouse version while this one ran (only possible on a
    /// bucket whose lease this load lost): this load's tables were put back.
    #[error("{0}")]
    Conflict(String),
    /// The object store (S3) refused or failed.
    #[error("storage: {0}")]
    Storage(String),
    /// A cluster was named wrongly, or a worker could not start.
    #[error("cluster: {0}")]
    Cluster(String),
    /// An earlier version that does not exist was asked for.
    #[error("no warehouse version {asked}: {available}")]
    NoSuchVersion {
        /// The version asked for.
        asked: u64,
        /// The versions there are, in words.
        available: String,
    },
    /// Nothing has been loaded yet.
    #[error("the warehouse is empty: load an export first (prism load EXPORT_DIR)")]
    Empty,
    /// The export cannot be loaded (not a folder, a missing file).
    #[error("{0}")]
    Export(String),
    /// The export was rejected: nothing changed. The report says why, row by row.
    #[error("the load was rejected ({} rejected row{}, {} file error{}); the warehouse is unchanged. Full report: {}",
        .0.rows_rejected(), if .0.rows_rejected() == 1 { "" } else { "s" },
        .0.file_errors.len(), if .0.file_errors.len() == 1 { "" } else { "s" },
        .0.report_path.display())]
    Rejected(Box<LoadReport>),
}

impl WarehouseError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> WarehouseError {
        WarehouseError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A result of the warehouse.
pub type Result<T, E = WarehouseError> = std::result::Result<T, E>;

/// A warehouse: a data folder, or a prefix of an S3 bucket.
#[derive(Clone, Debug)]
pub struct Warehouse {
    /// The data folder; for a bucket, the local work folder of its loads (staging).
    dir: PathBuf,
    root: storage::Root,
}

/// The tables of one warehouse version, as a reader sees them.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The version: each table's Delta version, and the load that made it.
    pub version: WarehouseVersion,
    root: storage::Root,
}

impl Warehouse {
    /// Opens (and creates, if needed) the data folder; `s3://bucket/prefix` opens a bucket's
    /// prefix instead, with the `AWS_*` environment and the options of
    /// [`set_storage_options`].
    pub fn open(dir: impl Into<PathBuf>) -> Result<Warehouse> {
        let dir = dir.into();
        if storage::is_remote(&dir) {
            let root = storage::Root::remote(&dir.to_string_lossy())?;
            // Each bucket's loads stage in a folder of their own, so two warehouses loaded
            // from one machine never share one.
            let key = xxhash_rust::xxh3::xxh3_64(root.display().as_bytes());
            let work = std::env::temp_dir().join(format!("prism-work-{key:016x}"));
            fs::create_dir_all(&work).map_err(|e| WarehouseError::io(&work, e))?;
            return Ok(Warehouse { dir: work, root });
        }
        fs::create_dir_all(&dir).map_err(|e| WarehouseError::io(&dir, e))?;
        let dir = fs::canonicalize(&dir).map_err(|e| WarehouseError::io(&dir, e))?;
        Ok(Warehouse {
            root: storage::Root::Local(dir.clone()),
            dir,
        })
    }

    /// The data folder; for a warehouse on a bucket, the local work folder of its loads.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the warehouse is, as people read it: its folder, or its bucket's URL.
    pub fn location(&self) -> String {
        self.root.display()
    }

    /// Every committed version, oldest first.
    pub fn versions(&self) -> Result<VersionFile> {
        match &self.root {
            storage::Root::Local(dir) => VersionFile::read(dir),
            storage::Root::Remote(remote) => versions::read_remote_blocking(remote),
        }
    }

    pub(crate) fn table_url(&self, entity: Entity) -> Result<Url> {
        self.root.folder_url(&format!("tables/{}", entity.name()))
    }

    /// The current version, or the one asked for (`--as-of`).
    pub fn snapshot(&self, as_of: Option<u64>) -> Result<Snapshot> {
        let file = self.versions()?;
        let version = match as_of {
            None => file.current().ok_or(WarehouseError::Empty)?,
            Some(v) => file.get(v).ok_or_else(|| WarehouseError::NoSuchVersion {
                asked: v,
                available: match (file.versions.first(), file.versions.last()) {
                    (Some(a), Some(b)) => format!("versions {} to {} exist", a.version, b.version),
                    _ => "the warehouse is empty".into(),
                },
            })?,
        };
        Ok(Snapshot {
            version: version.clone(),
            root: self.root.clone(),
        })
    }

    /// Loads an export. See `load::run`.
    pub async fn load(
        &self,
        options: &LoadOptions,
        progress: &dyn LoadProgress,
    ) -> Result<LoadReport> {
        load::run(self, options, None, progress).await
    }

    /// [`Warehouse::load`] of an export that was written into `options.export_dir` from
    /// another (a CRM's layout through a mapping): `source` names the original in the report
    /// and the version's history.
    pub async fn load_from(
        &self,
        options: &LoadOptions,
        source: &str,
        progress: &dyn LoadProgress,
    ) -> Result<LoadReport> {
        load::run(self, options, Some(source), progress).await
    }
}

pub(crate) fn table_url(dir: &Path) -> Result<Url> {
    Url::from_directory_path(dir)
        .map_err(|()| WarehouseError::Corrupt(format!("{} is not an absolute path", dir.display())))
}

/// A Delta table of the warehouse at a version, or its latest (`None`).
pub(crate) async fn open_delta(
    root: &storage::Root,
    url: Url,
    delta_version: Option<u64>,
) -> Result<DeltaTable> {
    let mut builder =
        deltalake::DeltaTableBuilder::from_url(url)?.with_storage_options(root.delta_options());
    if let Some(v) = delta_version {
        builder = builder.with_version(v);
    }
    Ok(builder.load().await?)
}

/// A Delta table of the warehouse that has no log yet, ready to be created.
pub(crate) fn new_delta(root: &storage::Root, url: Url) -> Result<DeltaTable> {
    Ok(deltalake::DeltaTableBuilder::from_url(url)?
        .with_storage_options(root.delta_options())
        .build()?)
}

/// The environment variable that, when set, decides for every session whether Parquet filters
/// are evaluated while the files are decoded, overriding `filter_while_decoding`.
const PUSHDOWN_FILTERS_ENV: &str = "DATAFUSION_EXECUTION_PARQUET_PUSHDOWN_FILTERS";

/// The configuration of a load's sessions over the warehouse: DataFusion's defaults and the
/// `DATAFUSION_*` environment, with Parquet filters evaluated while the files are decoded
/// (`filter_while_decoding`).
pub(crate) fn session_config() -> Result<datafusion::prelude::SessionConfig> {
    let mut config = datafusion::prelude::SessionConfig::from_env()?;
    filter_while_decoding(config.options_mut(), true);
    Ok(config)
}

/// Whether a session's scans evaluate their filters while decoding a file's pages, unless the
/// environment says (`DATAFUSION_EXECUTION_PARQUET_PUSHDOWN_FILTERS`). Worth it for a sliver
/// of a table: a partner's or a product's rows are a few of the order lines, and the other
/// columns of the rest are never decoded (a partner's products 25 → 16 ms at scale 8). For a
/// filter that keeps many rows, or rows spread over every page, decoding whole pages and
/// filtering after is faster: at scale 8, a year's open pipeline 31–35 → 13 ms, a year's
/// revenue 38 → 28–31 ms, twenty customers' orders 134–142 → 101–105 ms.
pub fn filter_while_decoding(options: &mut datafusion::config::ConfigOptions, on: bool) {
    if std::env::var_os(PUSHDOWN_FILTERS_ENV).is_none() {
        options.execution.parquet.pushdown_filters = on;
        options.execution.parquet.reorder_filters = on;
    }
}

/// The rollups registered in a session, with their rows and columns: the engine reads this from
/// the session's configuration to know what it may answer from.
#[derive(Clone, Debug, Default)]
pub struct BuiltRollups {
    /// Each rollup's table, by name.
    pub tables: BTreeMap<String, BuiltRollup>,
    /// The day (UTC) the registered warehouse version was loaded: what a state (certified
    /// people) is read at when a query gives no period.
    pub loaded_on: Option<chrono::NaiveDate>,
}

/// A rollup table of the session.
#[derive(Clone, Debug)]
pub struct BuiltRollup {
    /// Its rows.
    pub rows: u64,
    /// Its columns.
    pub schema: arrow::datatypes::SchemaRef,
}

/// The Parquet files of a pinned Delta version as a DataFusion table. Prism is the only writer of
/// these tables and uses no Delta feature that changes how a file reads (no deletion vectors,
/// column mapping or partitions), and DataFusion's own Parquet path keeps each file's metadata
/// cached between queries. `None` when the version has no file (an empty table).
pub(crate) async fn listing(
    ctx: &SessionContext,
    table: &DeltaTable,
    schema: Option<arrow::datatypes::SchemaRef>,
    text: Text,
) -> Result<Option<Arc<dyn datafusion::catalog::TableProvider>>> {
    // Collected first: the iterator is not `Send`, and must not live across the await.
    let files: Vec<String> = table.get_file_uris()?.collect();
    listing_of(ctx, files, schema, text).await
}

/// How the text columns of the tables a session reads come: as views or as plain strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Text {
    /// Views (`Utf8View`), for questions: a view of a dictionary page's value is made without
    /// copying its bytes, and DataFusion groups and joins views faster than strings. Revenue by
    /// partner off the rollups, scale 8: 111 ms as strings, 80-85 ms as views.
    Views,
    /// Plain strings (`Utf8`), as a load stages them: the rollups a load builds or brings up
    /// to date are merged with rows it computed or read back, all of one schema.
    Strings,
}

impl Text {
    /// `schema` with its text columns read as `self` says.
    pub(crate) fn schema(self, schema: arrow::datatypes::SchemaRef) -> arrow::datatypes::SchemaRef {
        use arrow::datatypes::{DataType, Schema};
        if self == Text::Strings {
            return schema;
        }
        let fields: Vec<_> = (schema.fields().iter())
            .map(|f| match f.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 => {
                    Arc::new(f.as_ref().clone().with_data_type(DataType::Utf8View))
                }
                _ => f.clone(),
            })
            .collect();
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
    }
}

/// Parquet files as one DataFusion table (`None` when there are none): with `schema`, read
/// as it; without, the files' own; text as `text` says.
pub(crate) async fn listing_of(
    ctx: &SessionContext,
    files: Vec<String>,
    schema: Option<arrow::datatypes::SchemaRef>,
    text: Text,
) -> Result<Option<Arc<dyn datafusion::catalog::TableProvider>>> {
    use datafusion::datasource::file_format::parquet::ParquetFormat;
    use datafusion::datasource::listing::{
        ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
    };
    if files.is_empty() {
        return Ok(None);
    }
    let urls = files
        .iter()
        .map(ListingTableUrl::parse)
        .collect::<std::result::Result<Vec<_>, _>>()?;
    // Every table of a session reads its text alike: a join of a rollup's key with a dimension
    // table's would otherwise cast one side on every row.
    let options = ListingOptions::new(Arc::new(
        ParquetFormat::default().with_force_view_types(text == Text::Views),
    ))
    .with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls).with_listing_options(options);
    let config = match schema {
        Some(s) => config.with_schema(text.schema(s)),
        // A rollup's columns are what its build wrote.
        None => config.infer_schema(&ctx.state()).await?,
    };
    Ok(Some(Arc::new(ListingTable::try_new(config)?)))
}

pub(crate) async fn register_tables(
    root: &storage::Root,
    tables: &BTreeMap<String, TablePin>,
    rollups: &BTreeMap<String, RollupPin>,
    ctx: &SessionContext,
    text: Text,
) -> Result<()> {
    use datafusion::datasource::MemTable;
    root.register_store(ctx);
    for (name, pin) in tables {
        let url = root.folder_url(&format!("tables/{name}"))?;
        let table = open_delta(root, url, Some(pin.delta_version)).await?;
        let Some(entity) = Entity::ALL.iter().find(|e| e.name() == name) else {
            return Err(WarehouseError::Corrupt(format!(
                "warehouse.json names a table `{name}` that is no entity"
            )));
        };
        let provider = match listing(ctx, &table, Some(entity.schema()), text).await? {
            Some(p) => p,
            None => Arc::new(MemTable::try_new(
                text.schema(entity.schema()),
                vec![vec![]],
            )?),
        };
        ctx.register_table(name.as_str(), provider)?;
    }
    // An entity no load has brought yet (no survey file so far, say) reads as empty, not as
    // a missing table.
    for entity in Entity::ALL {
        if !tables.contains_key(entity.name()) {
            ctx.register_table(
                entity.name(),
                Arc::new(MemTable::try_new(
                    text.schema(entity.schema()),
                    vec![vec![]],
                )?),
            )?;
        }
    }
    let mut built = BuiltRollups::default();
    for (name, pin) in rollups {
        let url = root.folder_url(&format!("rollups/{name}"))?;
        let table = open_delta(root, url, Some(pin.delta_version)).await?;
        let provider = match listing(ctx, &table, None, text).await? {
            Some(p) => p,
            None => Arc::new(MemTable::try_new(
                text.schema(table.snapshot()?.snapshot().arrow_schema()),
                vec![vec![]],
            )?),
        };
        built.tables.insert(
            name.clone(),
            BuiltRollup {
                rows: pin.rows,
                schema: provider.schema(),
            },
        );
        ctx.register_table(name.as_str(), provider)?;
    }
    ctx.state_ref()
        .write()
        .config_mut()
        .set_extension(Arc::new(built));
    Ok(())
}

impl Snapshot {
    /// Each table's rows in this version.
    pub fn table_rows(&self) -> BTreeMap<String, u64> {
        self.version
            .tables
            .iter()
            .map(|(k, v)| (k.clone(), v.rows))
            .collect()
    }

    /// Registers every table of this version, at its pinned Delta version, in a DataFusion
    /// session under the entity's name, and its rollups under their table names; the session's
    /// configuration carries `BuiltRollups`, which says what they are.
    pub async fn register(&self, ctx: &SessionContext) -> Result<()> {
        register_tables(
            &self.root,
            &self.version.tables,
            &self.version.rollups,
            ctx,
            Text::Views,
        )
        .await?;
        let loaded_on = chrono::DateTime::parse_from_rfc3339(&self.version.loaded_at)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc).date_naive());
        let state = ctx.state_ref();
        let mut state = state.write();
        let config = state.config_mut();
        let mut built = config
            .get_extension::<BuiltRollups>()
            .map(|b| b.as_ref().clone())
            .unwrap_or_default();
        built.loaded_on = loaded_on;
        config.set_extension(Arc::new(built));
        Ok(())
    }

    /// A session over this version, ready for SQL over the entity tables. Its scans decode
    /// whole pages before filtering; the engine plans a question filtered by a key in a copy
    /// that filters while decoding (`filter_while_decoding`).
    pub async fn session(&self) -> Result<Arc<SessionContext>> {
        let mut config = session_config()?;
        filter_while_decoding(config.options_mut(), false);
        let ctx = distributed::session(config)?;
        self.register(&ctx).await?;
        self.root.register_kept_store(&ctx);
        Ok(Arc::new(ctx))
    }
}
