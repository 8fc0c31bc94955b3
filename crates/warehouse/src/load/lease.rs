//! The load lock of a warehouse on a bucket: a lease object (`.lock`) that one load creates
//! with a conditional put, renews while it runs, and removes when it ends. A load that dies
//! stops renewing it; once it has expired, the next load takes it over (again a conditional
//! put, so of two loads taking over at once only one gets it). Works across machines, since
//! the bucket is the only thing they share.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use object_store::UpdateVersion;
use serde::{Deserialize, Serialize};

use super::LoadProgress;
use crate::storage::{Remote, lease_duration};
use crate::{Result, WarehouseError};

const LEASE_OBJECT: &str = ".lock";

/// What the lease object says: who holds it, and until when.
#[derive(Debug, Serialize, Deserialize)]
struct LeaseBody {
    holder: String,
    host: String,
    pid: u32,
    /// RFC 3339, UTC.
    expires_at: String,
}

impl LeaseBody {
    fn new(holder: &str) -> LeaseBody {
        let expires = chrono::Utc::now()
            + chrono::Duration::from_std(lease_duration()).unwrap_or(chrono::Duration::MAX);
        LeaseBody {
            holder: holder.to_string(),
            host: std::env::var("HOSTNAME").unwrap_or_default(),
            pid: std::process::id(),
            expires_at: expires.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("lease serialises")
    }

    fn expired(&self) -> bool {
        chrono::DateTime::parse_from_rfc3339(&self.expires_at)
            .map_or(true, |t| t < chrono::Utc::now())
    }
}

/// A held lease, renewed in the background until released.
pub(super) struct Lease {
    remote: Arc<Remote>,
    holder: String,
    lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Takes the lease, or says who holds it.
    pub async fn take(remote: Arc<Remote>, progress: &dyn LoadProgress) -> Result<Lease> {
        let holder = uuid::Uuid::new_v4().simple().to_string();
        // Twice: a lease removed between the failed create and the read is simply free.
        for _ in 0..2 {
            let body = LeaseBody::new(&holder);
            if let Some(written) = remote.put_if(LEASE_OBJECT, body.bytes(), None).await? {
                return Ok(Lease::held(remote, holder, written));
            }
            let Some((bytes, version)) = remote.get(LEASE_OBJECT).await? else {
                continue;
            };
            let other: Option<LeaseBody> = serde_json::from_slice(&bytes).ok();
            match other {
                Some(other) if !other.expired() => {
                    return Err(WarehouseError::Locked(format!(
                        "{} (load {} of process {} on {}, its lease runs to {})",
                        remote.display(),
                        other.holder,
                        other.pid,
                        if other.host.is_empty() {
                            "another machine"
                        } else {
                            &other.host
                        },
                        other.expires_at
                    )));
                }
                _ => {
                    // Expired (its load died) or unreadable: take it over, unless another
                    // load does so first.
                    if let Some(written) = remote
                        .put_if(LEASE_OBJECT, body.bytes(), Some(version))
                        .await?
                    {
                        progress.step("taking over the lock of a load that stopped renewing it");
                        return Ok(Lease::held(remote, holder, written));
                    }
                }
            }
        }
        Err(WarehouseError::Locked(remote.display()))
    }

    /// Starts renewing a lease just taken.
    fn held(remote: Arc<Remote>, holder: String, version: UpdateVersion) -> Lease {
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = tokio::spawn(renew(remote.clone(), holder.clone(), version, lost.clone()));
        Lease {
            remote,
            holder,
            lost,
            renewer,
        }
    }

    /// Fails when the lease could not be renewed in time and may now be another load's.
    pub fn check(&self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(WarehouseError::Conflict(format!(
                "this load lost its lock on {} (it could not renew its lease in time); it was \
                 not committed and its tables were put back. Load again.",
                self.remote.url
            )));
        }
        Ok(())
    }

    /// Stops renewing and removes the lease, if it is still this load's.
    pub async fn release(self) {
        self.renewer.abort();
        if let Ok(Some((bytes, _))) = self.remote.get(LEASE_OBJECT).await {
            let ours = serde_json::from_slice::<LeaseBody>(&bytes)
                .is_ok_and(|body| body.holder == self.holder);
            if ours {
                let _ = self.remote.delete(LEASE_OBJECT).await;
            }
        }
    }
}

/// Renews the lease every third of its duration, each time only if it is still the version
/// this load wrote; marks it lost when another wrote it or it could not be renewed in time.
async fn renew(
    remote: Arc<Remote>,
    holder: String,
    mut version: UpdateVersion,
    lost: Arc<AtomicBool>,
) {
    let mut renewed_at = std::time::Instant::now();
    loop {
        tokio::time::sleep(lease_duration() / 3).await;
        let renewed = remote
            .put_if(
                LEASE_OBJECT,
                LeaseBody::new(&holder).bytes(),
                Some(version.clone()),
            )
            .await;
        match renewed {
            Ok(Some(v)) => {
                version = v;
                renewed_at = std::time::Instant::now();
            }
            // A request that failed (the network, the server) is tried again at the next tick
            // while the lease still runs; a third of its time is left for that.
            Err(_) if renewed_at.elapsed() < lease_duration() * 2 / 3 => {}
            // Someone else wrote the lease, or it ran out: another load may hold it now.
            _ => {
                lost.store(true, Ordering::SeqCst);
                return;
            }
        }
    }
}
