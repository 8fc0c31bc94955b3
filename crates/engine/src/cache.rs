//! A result cache: answers kept by the session they were computed in and their SQL. A session
//! reads one warehouse version, and the SQL holds the scope (its partner conditions), so an
//! answer is only ever served again for the same version, scope and query. A new session — a
//! load switched the version — empties the cache.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use arrow::record_batch::RecordBatch;

pub(crate) struct ResultCache {
    limit_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    session: String,
    entries: HashMap<String, (Vec<RecordBatch>, usize)>,
    order: VecDeque<String>,
    bytes: usize,
}

impl ResultCache {
    pub(crate) fn new(limit_bytes: usize) -> ResultCache {
        ResultCache {
            limit_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, session: &str, sql: &str) -> Option<Vec<RecordBatch>> {
        let inner = self.lock();
        if inner.session != session {
            return None;
        }
        inner.entries.get(sql).map(|(b, _)| b.clone())
    }

    pub(crate) fn put(&self, session: &str, sql: &str, batches: &[RecordBatch]) {
        let size: usize = batches
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum::<usize>()
            + sql.len();
        if size > self.limit_bytes / 4 {
            return; // One answer never takes most of the cache.
        }
        let mut inner = self.lock();
        if inner.session != session {
            *inner = Inner {
                session: session.to_string(),
                ..Inner::default()
            };
        }
        if inner.entries.contains_key(sql) {
            return;
        }
        // Oldest out first until the new answer fits.
        while inner.bytes + size > self.limit_bytes {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some((_, s)) = inner.entries.remove(&old) {
                inner.bytes -= s;
            }
        }
        inner
            .entries
            .insert(sql.to_string(), (batches.to_vec(), size));
        inner.order.push_back(sql.to_string());
        inner.bytes += size;
    }
}
