//! The bytes of the warehouse's Parquet files that questions read, kept in memory between
//! questions, up to a budget.
//!
//! Every question off the rollups reads its columns' chunks again: revenue by partner at scale
//! 8 reads 25 MB of the order lines each time. From the operating system's cache, that read
//! was a fifth of the question's CPU: the object store's local reader allocates a buffer,
//! zero-fills it (faulting in fresh pages) and copies the file's pages into it, every time.
//! [`KeptReads`] stands in front of a warehouse's object store in the sessions that answer
//! questions and hands out the bytes it read before, without copying them (a slice of the
//! kept buffer). A data file of a Delta table is never written twice under one name (each
//! write names its files afresh), so a file's bytes, once read, stay true; only `.parquet`
//! files outside `_delta_log` are kept, and everything else (the log, the version file,
//! listings, writes) goes straight to the store. Loads read and write through the plain
//! store: a load's scans of whole tables would otherwise push out what the pages use.
//!
//! The budget (`prism serve --file-cache-mb N`, or `PRISM_FILE_CACHE_MB` for every command;
//! 1,024 MB unless set; `0` keeps nothing) bounds the bytes kept; past it, the bytes used
//! longest ago go first.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result,
};

/// The budget when none is set: the hot columns of a warehouse at scale 8 (about 300 MB of
/// files in all) fit whole; at scale 100 (5.6 GB) the most used do.
const DEFAULT_BUDGET_MB: usize = 1024;

/// A range read once is not kept if it is larger than this share of the budget: one scan of a
/// large column would otherwise push out everything else.
const LARGEST_SHARE: usize = 8;

static BUDGET_MB: OnceLock<usize> = OnceLock::new();

/// Sets the megabytes of Parquet bytes kept in memory between questions, before the first
/// question opens a session (`false`, changing nothing, once one has).
pub fn set_file_cache_mb(mb: usize) -> bool {
    BUDGET_MB.set(mb).is_ok()
}

/// The budget in bytes: as set, else `PRISM_FILE_CACHE_MB`, else the default.
pub(crate) fn budget() -> usize {
    let mb = *BUDGET_MB.get_or_init(|| {
        std::env::var("PRISM_FILE_CACHE_MB")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(DEFAULT_BUDGET_MB)
    });
    mb.saturating_mul(1 << 20)
}

/// Every store of the process that keeps bytes, for [`file_cache_stats`].
static STORES: Mutex<Vec<Weak<KeptReads>>> = Mutex::new(Vec::new());

/// What the stores that keep Parquet bytes hold and have handed out, summed over the process
/// (the local files' store and a bucket's): for an operator's metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileCacheStats {
    /// The budget of each store, in bytes.
    pub budget_bytes: u64,
    /// Bytes kept now.
    pub kept_bytes: u64,
    /// Bytes of data files handed out from memory, since the process started.
    pub from_memory_bytes: u64,
    /// Bytes of data files read from the disk or the bucket, since the process started.
    pub from_storage_bytes: u64,
}

/// The stats of every store that keeps bytes.
pub fn file_cache_stats() -> FileCacheStats {
    let stores = STORES.lock().unwrap_or_else(|e| e.into_inner());
    let mut stats = FileCacheStats {
        budget_bytes: budget() as u64,
        ..FileCacheStats::default()
    };
    for store in stores.iter().filter_map(Weak::upgrade) {
        let own = store.stats();
        stats.kept_bytes += own.kept_bytes;
        stats.from_memory_bytes += own.from_memory_bytes;
        stats.from_storage_bytes += own.from_storage_bytes;
    }
    stats
}

/// The one store in front of this machine's files, shared by every session of the process
/// (each session's own runtime would otherwise keep its own copy).
pub(crate) fn local() -> Arc<KeptReads> {
    static LOCAL: OnceLock<Arc<KeptReads>> = OnceLock::new();
    Arc::clone(LOCAL.get_or_init(|| {
        KeptReads::shared(
            Arc::new(object_store::local::LocalFileSystem::new()),
            budget(),
        )
    }))
}

/// An object store that keeps the Parquet bytes read through it (see the module's
/// documentation).
pub struct KeptReads {
    inner: Arc<dyn ObjectStore>,
    budget: usize,
    kept: Mutex<Kept>,
    from_memory: AtomicU64,
    from_storage: AtomicU64,
}

/// The bytes kept: for each file, its ranges by where they start.
#[derive(Default)]
struct Kept {
    files: HashMap<Path, KeptFile>,
    bytes: usize,
    /// A clock, ticking at every use: an entry's last use orders the evictions.
    clock: u64,
}

#[derive(Default)]
struct KeptFile {
    /// The file's metadata, as a whole read (`get_opts`) must return it.
    meta: Option<ObjectMeta>,
    ranges: BTreeMap<u64, KeptRange>,
}

struct KeptRange {
    bytes: Bytes,
    used: u64,
}

impl KeptReads {
    /// A store in front of `inner`, keeping up to `budget` bytes.
    pub fn new(inner: Arc<dyn ObjectStore>, budget: usize) -> KeptReads {
        KeptReads {
            inner,
            budget,
            kept: Mutex::new(Kept::default()),
            from_memory: AtomicU64::new(0),
            from_storage: AtomicU64::new(0),
        }
    }

    /// A store in front of `inner`, counted in [`file_cache_stats`].
    pub fn shared(inner: Arc<dyn ObjectStore>, budget: usize) -> Arc<KeptReads> {
        let store = Arc::new(KeptReads::new(inner, budget));
        let mut stores = STORES.lock().unwrap_or_else(|e| e.into_inner());
        stores.retain(|s| s.strong_count() > 0);
        stores.push(Arc::downgrade(&store));
        store
    }

    /// What this store holds and has handed out.
    pub fn stats(&self) -> FileCacheStats {
        FileCacheStats {
            budget_bytes: self.budget as u64,
            kept_bytes: self.lock().bytes as u64,
            from_memory_bytes: self.from_memory.load(Ordering::Relaxed),
            from_storage_bytes: self.from_storage.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // A panic while holding the lock leaves the map consistent (every change is one
        // insertion or removal), so a poisoned lock is taken as it is.
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the bytes of `location` may be kept: a Delta table's data file.
    fn keeps(&self, location: &Path) -> bool {
        self.budget > 0
            && location.as_ref().ends_with(".parquet")
            && !location.parts().any(|p| p.as_ref() == "_delta_log")
    }

    /// The bytes of `range`, if a kept range holds them.
    fn find(&self, location: &Path, range: &Range<u64>) -> Option<Bytes> {
        let mut kept = self.lock();
        kept.clock += 1;
        let clock = kept.clock;
        let file = kept.files.get_mut(location)?;
        let (&start, entry) = file.ranges.range_mut(..=range.start).next_back()?;
        let end = start + entry.bytes.len() as u64;
        if range.end > end {
            return None;
        }
        entry.used = clock;
        self.from_memory
            .fetch_add(range.end - range.start, Ordering::Relaxed);
        let from = (range.start - start) as usize;
        Some(
            entry
                .bytes
                .slice(from..from + (range.end - range.start) as usize),
        )
    }

    /// Keeps `bytes`, read at `start` of `location`, pushing out the longest unused if the
    /// budget is passed.
    fn keep(&self, location: &Path, start: u64, bytes: &Bytes, meta: Option<&ObjectMeta>) {
        self.from_storage
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if bytes.len() > self.budget / LARGEST_SHARE {
            return;
        }
        let mut kept = self.lock();
        kept.clock += 1;
        let used = kept.clock;
        let file = kept.files.entry(location.clone()).or_default();
        if let Some(meta) = meta {
            file.meta = Some(meta.clone());
        }
        let entry = KeptRange {
            bytes: bytes.clone(),
            used,
        };
        let added = bytes.len();
        let replaced = file
            .ranges
            .insert(start, entry)
            .map_or(0, |r| r.bytes.len());
        kept.bytes = kept.bytes + added - replaced;
        if kept.bytes > self.budget {
            kept.push_out(self.budget - self.budget / 10);
        }
    }
}

impl Kept {
    /// Drops the longest unused ranges until at most `to` bytes are kept.
    fn push_out(&mut self, to: usize) {
        let mut by_use: Vec<(u64, Path, u64, usize)> = self
            .files
            .iter()
            .flat_map(|(path, file)| {
                file.ranges
                    .iter()
                    .map(move |(&start, r)| (r.used, path.clone(), start, r.bytes.len()))
            })
            .collect();
        by_use.sort_unstable_by_key(|&(used, ..)| used);
        for (_, path, start, len) in by_use {
            if self.bytes <= to {
                break;
            }
            if let Some(file) = self.files.get_mut(&path) {
                file.ranges.remove(&start);
                if file.ranges.is_empty() {
                    self.files.remove(&path);
                }
            }
            self.bytes -= len;
        }
    }
}

impl fmt::Display for KeptReads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeptReads({})", self.inner)
    }
}

impl fmt::Debug for KeptReads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeptReads")
            .field("inner", &self.inner)
            .field("budget", &self.budget)
            .finish()
    }
}

/// Whether a read asks for nothing but a range of the file as it is.
fn plain_range(options: &GetOptions) -> Option<Range<u64>> {
    let GetOptions {
        if_match: None,
        if_none_match: None,
        if_modified_since: None,
        if_unmodified_since: None,
        range: Some(GetRange::Bounded(range)),
        version: None,
        head: false,
        ..
    } = options
    else {
        return None;
    };
    Some(range.clone())
}

fn result_of(bytes: Bytes, meta: ObjectMeta, range: Range<u64>) -> GetResult {
    GetResult {
        payload: GetResultPayload::Stream(futures::stream::once(async move { Ok(bytes) }).boxed()),
        meta,
        range,
        attributes: Default::default(),
    }
}

#[async_trait]
impl ObjectStore for KeptReads {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let Some(range) = plain_range(&options).filter(|_| self.keeps(location)) else {
            return self.inner.get_opts(location, options).await;
        };
        let meta = self.lock().files.get(location).and_then(|f| f.meta.clone());
        if let Some(meta) = meta
            && let Some(bytes) = self.find(location, &range)
        {
            return Ok(result_of(bytes, meta, range));
        }
        let result = self.inner.get_opts(location, options).await?;
        let (meta, range) = (result.meta.clone(), result.range.clone());
        let bytes = result.bytes().await?;
        self.keep(location, range.start, &bytes, Some(&meta));
        Ok(result_of(bytes, meta, range))
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        if !self.keeps(location) {
            return self.inner.get_ranges(location, ranges).await;
        }
        let mut found: Vec<Option<Bytes>> = ranges.iter().map(|r| self.find(location, r)).collect();
        let missing: Vec<Range<u64>> = ranges
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(r, _)| r.clone())
            .collect();
        if !missing.is_empty() {
            let read = self.inner.get_ranges(location, &missing).await?;
            let mut read = missing.iter().zip(read);
            for slot in found.iter_mut().filter(|f| f.is_none()) {
                let (range, bytes) = read.next().expect("one read for each missing range");
                self.keep(location, range.start, &bytes, None);
                *slot = Some(bytes);
            }
        }
        Ok(found.into_iter().flatten().collect())
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    use super::*;

    /// An in-memory store that counts the bytes read from it.
    #[derive(Debug, Default)]
    struct Counted {
        store: InMemory,
        read: AtomicUsize,
    }

    impl fmt::Display for Counted {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "Counted")
        }
    }

    #[async_trait]
    impl ObjectStore for Counted {
        async fn put_opts(&self, l: &Path, p: PutPayload, o: PutOptions) -> Result<PutResult> {
            self.store.put_opts(l, p, o).await
        }
        async fn put_multipart_opts(
            &self,
            l: &Path,
            o: PutMultipartOptions,
        ) -> Result<Box<dyn MultipartUpload>> {
            self.store.put_multipart_opts(l, o).await
        }
        async fn get_opts(&self, l: &Path, o: GetOptions) -> Result<GetResult> {
            let result = self.store.get_opts(l, o).await?;
            self.read.fetch_add(
                (result.range.end - result.range.start) as usize,
                Ordering::SeqCst,
            );
            Ok(result)
        }
        async fn get_ranges(&self, l: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
            let read: u64 = ranges.iter().map(|r| r.end - r.start).sum();
            self.read.fetch_add(read as usize, Ordering::SeqCst);
            self.store.get_ranges(l, ranges).await
        }
        fn delete_stream(
            &self,
            l: BoxStream<'static, Result<Path>>,
        ) -> BoxStream<'static, Result<Path>> {
            self.store.delete_stream(l)
        }
        fn list(&self, p: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
            self.store.list(p)
        }
        async fn list_with_delimiter(&self, p: Option<&Path>) -> Result<ListResult> {
            self.store.list_with_delimiter(p).await
        }
        async fn copy_opts(&self, f: &Path, t: &Path, o: CopyOptions) -> Result<()> {
            self.store.copy_opts(f, t, o).await
        }
    }

    /// A file of `len` bytes, each its place modulo 251, so that any slice shows where it
    /// came from.
    async fn store_with(files: &[(&str, usize)], budget: usize) -> (Arc<Counted>, KeptReads) {
        let counted = Arc::new(Counted::default());
        for &(name, len) in files {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            counted.put(&Path::from(name), bytes.into()).await.unwrap();
        }
        let kept = KeptReads::new(Arc::clone(&counted) as Arc<dyn ObjectStore>, budget);
        (counted, kept)
    }

    /// One range read through `get_ranges`, the way a scan reads its column chunks.
    async fn one(kept: &KeptReads, file: &Path, range: Range<u64>) -> Bytes {
        let mut got = kept
            .get_ranges(file, std::slice::from_ref(&range))
            .await
            .unwrap();
        got.pop().unwrap()
    }

    fn expected(range: Range<u64>) -> Vec<u8> {
        range.map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test]
    async fn a_range_read_twice_is_read_from_the_store_once() {
        let file = Path::from("tables/orders/part-0.parquet");
        let (counted, kept) = store_with(&[(file.as_ref(), 10_000)], 1 << 20).await;
        let ranges = [100..1_100, 5_000..9_000];
        for _ in 0..3 {
            let got = kept.get_ranges(&file, &ranges).await.unwrap();
            assert_eq!(got[0].as_ref(), expected(100..1_100).as_slice());
            assert_eq!(got[1].as_ref(), expected(5_000..9_000).as_slice());
        }
        assert_eq!(counted.read.load(Ordering::SeqCst), 5_000);
        // A range inside one kept is a slice of it; one reaching past it is read.
        let got = one(&kept, &file, 6_000..6_500).await;
        assert_eq!(got.as_ref(), expected(6_000..6_500).as_slice());
        assert_eq!(counted.read.load(Ordering::SeqCst), 5_000);
        let got = one(&kept, &file, 8_500..9_500).await;
        assert_eq!(got.as_ref(), expected(8_500..9_500).as_slice());
        assert_eq!(counted.read.load(Ordering::SeqCst), 6_000);
        // A single range through `get_range`, the way a file's footer is read.
        for _ in 0..2 {
            let got = kept.get_range(&file, 2_000..2_100).await.unwrap();
            assert_eq!(got.as_ref(), expected(2_000..2_100).as_slice());
        }
        assert_eq!(counted.read.load(Ordering::SeqCst), 6_100);
        // Two rounds of both ranges, the slice and the footer's second read from memory.
        assert_eq!(
            kept.stats(),
            FileCacheStats {
                budget_bytes: 1 << 20,
                kept_bytes: 6_100,
                from_memory_bytes: 2 * 5_000 + 500 + 100,
                from_storage_bytes: 6_100,
            }
        );
    }

    #[tokio::test]
    async fn the_log_and_other_files_are_read_from_the_store_every_time() {
        let log = Path::from("tables/orders/_delta_log/00000000000000000001.checkpoint.parquet");
        let version = Path::from("warehouse.json");
        let (counted, kept) =
            store_with(&[(log.as_ref(), 1_000), (version.as_ref(), 1_000)], 1 << 20).await;
        for _ in 0..2 {
            one(&kept, &log, 0..500).await;
            kept.get_range(&version, 0..500).await.unwrap();
        }
        assert_eq!(counted.read.load(Ordering::SeqCst), 2_000);
        assert_eq!(kept.stats().kept_bytes, 0);
        // No budget, nothing kept.
        let file = Path::from("tables/orders/part-0.parquet");
        let (counted, kept) = store_with(&[(file.as_ref(), 1_000)], 0).await;
        for _ in 0..2 {
            one(&kept, &file, 0..500).await;
        }
        assert_eq!(counted.read.load(Ordering::SeqCst), 1_000);
    }

    #[tokio::test]
    async fn past_the_budget_the_range_used_longest_ago_goes_first() {
        let file = Path::from("rollups/r/part-0.parquet");
        // Ranges of 1,000 bytes against 8,000 of budget (a range may be an eighth of it).
        let (counted, kept) = store_with(&[(file.as_ref(), 20_000)], 8_000).await;
        let range = |i: u64| i * 1_000..(i + 1) * 1_000;
        for i in 0..8 {
            one(&kept, &file, range(i)).await;
        }
        assert_eq!(kept.stats().kept_bytes, 8_000);
        // The first range is used again, then a ninth is read: the budget is passed, and the
        // ranges used longest ago (the second and third) make room down to 7,200 bytes.
        one(&kept, &file, range(0)).await;
        one(&kept, &file, range(8)).await;
        assert_eq!(kept.stats().kept_bytes, 7_000);
        let before = counted.read.load(Ordering::SeqCst);
        for i in [0, 3, 4, 5, 6, 7, 8] {
            one(&kept, &file, range(i)).await;
        }
        assert_eq!(counted.read.load(Ordering::SeqCst), before);
        one(&kept, &file, range(1)).await;
        assert_eq!(counted.read.load(Ordering::SeqCst), before + 1_000);
        // A range over an eighth of the budget is handed on, never kept.
        let got = one(&kept, &file, 10_000..11_001).await;
        assert_eq!(got.as_ref(), expected(10_000..11_001).as_slice());
        assert!(kept.stats().kept_bytes <= 8_000);
    }
}
