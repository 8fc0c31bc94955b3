//! Where a test's warehouse lives: a folder of its temporary folder, or — in the cluster run of
//! `scripts/test`, which sets `PRISM_TEST_BUCKET` and `PRISM_CLUSTER` — a fresh prefix of a
//! bucket on an S3-compatible server, read by a cluster's workers. The same tests then prove
//! the same answers on both.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use prism_warehouse::{Cluster, Warehouse};

/// Sends this process's questions to the cluster `PRISM_CLUSTER` names, if any; the warehouse
/// stays where the test put it (a local folder the workers, on the same machine, read too).
pub fn join_cluster() {
    if let Ok(spec) = std::env::var("PRISM_CLUSTER") {
        prism_warehouse::set_cluster(Some(Cluster::parse(&spec).expect("PRISM_CLUSTER")));
    }
}

/// A new, empty warehouse for one test (see the module's comment).
#[allow(dead_code)] // Not every test that includes this module opens its warehouses here.
pub fn warehouse(dir: &Path) -> Warehouse {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    join_cluster();
    match std::env::var("PRISM_TEST_BUCKET") {
        Ok(bucket) => Warehouse::open(format!(
            "{}/{}-{}",
            bucket.trim_end_matches('/'),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ))
        .expect("a warehouse on PRISM_TEST_BUCKET"),
        Err(_) => Warehouse::open(dir).expect("a warehouse folder"),
    }
}
