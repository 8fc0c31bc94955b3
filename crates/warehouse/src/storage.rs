//! Where a warehouse lives: a local data folder, or a prefix of an S3 bucket (`s3://bucket/prefix`).
//!
//! Everything a reader needs (the Delta tables, the rollups, `warehouse.json`) and what a load
//! leaves for people (its report and quarantined rows) lives at the root. What a load only needs
//! while it runs (the staged Parquet files) is kept in a local work folder, so the export is
//! validated at local disk speed and sent to the bucket once, when it is committed.
//!
//! On a bucket the two guarantees of a local folder come from conditional puts instead of a
//! rename and a file lock: `warehouse.json` is replaced only if it is still the one the load read
//! (so two loads at once cannot both switch it, and neither is lost silently), and the load lock
//! is a lease object that one load creates, renews while it runs, and that another may take over
//! once it has expired (its holder died).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use deltalake::{DeltaResult, DeltaTableError};
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use url::Url;

use crate::{Result, WarehouseError};

/// Storage options given on the command line (`--storage-option KEY=VALUE`), over the usual
/// `AWS_*` environment variables: the endpoint of an S3-compatible server, its region, keys.
static OPTIONS: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();

/// Sets the options every bucket of this process is opened with (`aws_endpoint`,
/// `aws_allow_http`, `aws_region`, `aws_access_key_id`, …: the keys of the `object_store`
/// crate's S3 builder). An unknown key is refused with its name.
pub fn set_storage_options(options: &[(String, String)]) -> Result<()> {
    for (key, _) in options {
        if key.parse::<AmazonS3ConfigKey>().is_err() {
            return Err(WarehouseError::Storage(format!(
                "--storage-option {key}: not an S3 option (for example aws_endpoint, \
                 aws_region, aws_allow_http, aws_access_key_id, aws_secret_access_key)"
            )));
        }
    }
    let mut held = OPTIONS
        .get_or_init(Default::default)
        .lock()
        .expect("storage options lock");
    held.extend(options.iter().cloned());
    Ok(())
}

fn storage_options() -> HashMap<String, String> {
    OPTIONS
        .get_or_init(Default::default)
        .lock()
        .expect("storage options lock")
        .clone()
}

/// Whether a `--data` value names a bucket rather than a local folder.
pub fn is_remote(data: &Path) -> bool {
    data.to_str().is_some_and(|s| s.starts_with("s3://"))
}

/// The S3 store of a bucket, from the environment and the process's storage options (`raw`
/// adds a table's own, which Delta passes along).
fn s3_store(url: &Url, raw: &HashMap<String, String>) -> Result<Arc<dyn ObjectStore>> {
    let mut builder = AmazonS3Builder::from_env().with_url(url.as_str());
    for (key, value) in storage_options().iter().chain(raw) {
        if let Ok(key) = key.parse::<AmazonS3ConfigKey>() {
            builder = builder.with_config(key, value);
        }
    }
    let store = builder
        .build()
        .map_err(|e| WarehouseError::Storage(format!("{url}: {e}")))?;
    Ok(Arc::new(store))
}

/// Delta Lake's way to S3 in this process: Prism's own options, and Delta's default log store,
/// whose commits are conditional puts (`If-None-Match`), which S3 and compatible servers honour;
/// no lock table is needed.
struct S3Factory;

impl ObjectStoreFactory for S3Factory {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, ObjectPath)> {
        let store =
            s3_store(url, &config.raw).map_err(|e| DeltaTableError::Generic(e.to_string()))?;
        let path = ObjectPath::parse(url.path())
            .map_err(|e| DeltaTableError::Generic(format!("{url}: {e}")))?;
        Ok((store, path))
    }
}

impl LogStoreFactory for S3Factory {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

fn register_s3_with_delta() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let scheme = Url::parse("s3://").expect("scheme");
        object_store_factories().insert(scheme.clone(), Arc::new(S3Factory));
        logstore_factories().insert(scheme, Arc::new(S3Factory));
    });
}

/// A warehouse on a bucket: its root URL (ending in `/`), the bucket's store, and the prefix.
#[derive(Debug)]
pub(crate) struct Remote {
    pub url: Url,
    pub store: Arc<dyn ObjectStore>,
    pub prefix: ObjectPath,
    /// The bucket's store with the Parquet bytes questions read kept in memory (`kept`).
    pub kept: Arc<crate::kept::KeptReads>,
}

/// Where a warehouse's tables, version file and load reports live.
#[derive(Clone, Debug)]
pub(crate) enum Root {
    /// A data folder (absolute).
    Local(PathBuf),
    /// A prefix of a bucket.
    Remote(Arc<Remote>),
}

impl Root {
    /// Opens `data` as a bucket's prefix (`s3://bucket/prefix`).
    pub fn remote(data: &str) -> Result<Root> {
        register_s3_with_delta();
        let mut url = Url::parse(data)
            .map_err(|e| WarehouseError::Storage(format!("{data}: not a URL ({e})")))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(WarehouseError::Storage(format!(
                "{data}: no bucket (expected s3://bucket/prefix)"
            )));
        }
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        let store = s3_store(&url, &HashMap::new())?;
        let prefix = ObjectPath::parse(url.path())
            .map_err(|e| WarehouseError::Storage(format!("{data}: {e}")))?;
        let kept = crate::kept::KeptReads::shared(store.clone(), crate::kept::budget());
        Ok(Root::Remote(Arc::new(Remote {
            url,
            store,
            prefix,
            kept,
        })))
    }

    /// The URL of a folder under the root (`tables/orders`), ending in `/`.
    pub fn folder_url(&self, relative: &str) -> Result<Url> {
        match self {
            Root::Local(dir) => crate::table_url(&dir.join(relative)),
            Root::Remote(r) => r
                .url
                .join(&format!("{relative}/"))
                .map_err(|e| WarehouseError::Storage(format!("{}{relative}: {e}", r.url))),
        }
    }

    /// The storage options Delta must open a table of this root with.
    pub fn delta_options(&self) -> HashMap<String, String> {
        match self {
            Root::Local(_) => HashMap::new(),
            Root::Remote(_) => storage_options(),
        }
    }

    /// Makes the root's files readable by a DataFusion session (a bucket needs its store
    /// registered; a local folder is always readable).
    pub fn register_store(&self, ctx: &datafusion::prelude::SessionContext) {
        self.register_store_in(&ctx.runtime_env());
    }

    /// The same for a worker's runtime, which opens sessions of its own for each stage.
    pub fn register_store_in(&self, runtime: &datafusion::execution::runtime_env::RuntimeEnv) {
        if let Root::Remote(r) = self {
            let mut bucket = r.url.clone();
            bucket.set_path("");
            runtime.register_object_store(&bucket, r.store.clone());
        }
    }

    /// Makes a session answering questions read the root's Parquet files through the store
    /// that keeps their bytes in memory between questions (`kept`). Only such sessions: a
    /// load's scans of whole tables would push out what the pages use.
    pub fn register_kept_store(&self, ctx: &datafusion::prelude::SessionContext) {
        self.register_kept_store_in(&ctx.runtime_env());
    }

    /// The same for a worker's runtime, whose sessions answer the stages of questions only.
    pub fn register_kept_store_in(&self, runtime: &datafusion::execution::runtime_env::RuntimeEnv) {
        match self {
            Root::Local(_) => {
                let files = Url::parse("file://").expect("a valid URL");
                runtime.register_object_store(&files, crate::kept::local());
            }
            Root::Remote(r) => {
                let mut bucket = r.url.clone();
                bucket.set_path("");
                runtime.register_object_store(&bucket, r.kept.clone());
            }
        }
    }

    /// How the root reads in messages: the folder, or the bucket's URL.
    pub fn display(&self) -> String {
        match self {
            Root::Local(dir) => dir.display().to_string(),
            Root::Remote(r) => r.display(),
        }
    }

    /// Whether a Delta table exists in the folder `relative` (it has a log).
    pub async fn has_table(&self, relative: &str) -> Result<bool> {
        match self {
            Root::Local(dir) => Ok(dir.join(relative).join("_delta_log").is_dir()),
            Root::Remote(r) => {
                let log = r.path(&format!("{relative}/_delta_log"));
                let first = r
                    .store
                    .list(Some(&log))
                    .try_next()
                    .await
                    .map_err(|e| r.error(&log, e))?;
                Ok(first.is_some())
            }
        }
    }

    /// Removes the folder `relative` and everything in it.
    pub async fn remove_folder(&self, relative: &str) -> Result<()> {
        match self {
            Root::Local(dir) => crate::staging::remove_dir_if_exists(&dir.join(relative)),
            Root::Remote(r) => {
                let folder = r.path(relative);
                let objects: Vec<_> = r
                    .store
                    .list(Some(&folder))
                    .map_ok(|m| m.location)
                    .try_collect()
                    .await
                    .map_err(|e| r.error(&folder, e))?;
                for location in objects {
                    match r.store.delete(&location).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(r.error(&location, e)),
                    }
                }
                Ok(())
            }
        }
    }
}

impl Remote {
    /// The warehouse's URL as people read it, without the trailing `/`.
    pub fn display(&self) -> String {
        self.url.as_str().trim_end_matches('/').to_string()
    }

    /// The object path of `relative` under the prefix.
    pub fn path(&self, relative: &str) -> ObjectPath {
        let mut path = self.prefix.clone();
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            path = path.join(part);
        }
        path
    }

    /// An error of the store, naming the object's URL.
    pub fn error(&self, path: &ObjectPath, e: object_store::Error) -> WarehouseError {
        let mut url = self.url.clone();
        url.set_path(&format!("/{path}"));
        WarehouseError::Storage(format!("{url}: {e}"))
    }

    /// Reads an object; `None` when there is none. Returns its version too, for a conditional
    /// replacement.
    pub async fn get(&self, relative: &str) -> Result<Option<(Vec<u8>, UpdateVersion)>> {
        let path = self.path(relative);
        match self.store.get(&path).await {
            Ok(got) => {
                let version = UpdateVersion {
                    e_tag: got.meta.e_tag.clone(),
                    version: got.meta.version.clone(),
                };
                let bytes = got.bytes().await.map_err(|e| self.error(&path, e))?;
                Ok(Some((bytes.to_vec(), version)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(&path, e)),
        }
    }

    /// Writes an object if it is still the version `expected` names (none: if there is no
    /// object yet), and returns the version written; `Ok(None)` when someone else wrote it
    /// first.
    pub async fn put_if(
        &self,
        relative: &str,
        bytes: Vec<u8>,
        expected: Option<UpdateVersion>,
    ) -> Result<Option<UpdateVersion>> {
        let path = self.path(relative);
        let mode = match expected {
            None => PutMode::Create,
            Some(v) => PutMode::Update(v),
        };
        let options = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from(bytes), options)
            .await
        {
            Ok(put) => Ok(Some(UpdateVersion {
                e_tag: put.e_tag,
                version: put.version,
            })),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(None),
            Err(e) => Err(self.error(&path, e)),
        }
    }

    /// Copies a local file to `relative`, in parts, without holding it in memory.
    pub async fn upload(&self, file: &Path, relative: &str) -> Result<u64> {
        use tokio::io::AsyncWriteExt;
        let path = self.path(relative);
        let mut source = tokio::fs::File::open(file)
            .await
            .map_err(|e| WarehouseError::io(file, e))?;
        let mut writer = object_store::buffered::BufWriter::new(self.store.clone(), path.clone());
        let bytes = tokio::io::copy(&mut source, &mut writer)
            .await
            .map_err(|e| WarehouseError::Storage(format!("{}: {e}", self.url)))?;
        writer
            .shutdown()
            .await
            .map_err(|e| WarehouseError::Storage(format!("{}: {e}", self.url)))?;
        Ok(bytes)
    }

    /// Removes an object; none there is no error.
    pub async fn delete(&self, relative: &str) -> Result<()> {
        let path = self.path(relative);
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(&path, e)),
        }
    }
}

/// How long a load's lease on a bucket lasts without renewal: a load that dies leaves the lease
/// to expire, and the next load takes it over after this long.
pub(crate) fn lease_duration() -> Duration {
    std::env::var("PRISM_LOAD_LEASE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(60), Duration::from_secs)
}
