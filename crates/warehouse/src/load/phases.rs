//! Where a load's time goes, phase by phase, for the report and `prism load --format json`.
//!
//! Reading, checking, ordering and writing overlap: each runs on threads of its own while the
//! others work, so each is measured as the time its threads spent in it, summed over them, and
//! the wall-clock time of the whole stage is given beside them. A thread's time in a phase is
//! wall-clock time, so where threads outnumber cores it includes waiting for one: the phases'
//! shares, not their sum, say where the time goes. The later phases run one after
//! the other and are wall-clock times.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// A load's time by phase, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LoadPhases {
    /// Reading the warehouse's keys, against which an added export's references are checked
    /// (wall-clock; none on a first load).
    pub warehouse_keys_ms: u64,
    /// Reading the export's CSV records (busy time of the reading threads).
    pub reading_ms: u64,
    /// Checking each row's values, references and keys and building its columns (busy time of
    /// the checking threads, summed).
    pub checking_ms: u64,
    /// Putting the row groups of a clustered table in order (busy time).
    pub ordering_ms: u64,
    /// Writing the valid rows as Parquet in staging (busy time).
    pub writing_ms: u64,
    /// Reading, checking, ordering and writing together (wall-clock: they overlap).
    pub staging_ms: u64,
    /// Committing the staged tables to Delta: appends, overwrites and merges (wall-clock).
    pub committing_ms: u64,
    /// Building the version's rollups (wall-clock).
    pub rollups_ms: u64,
    /// Switching the warehouse version (wall-clock).
    pub switching_ms: u64,
    /// The whole load, from its start to its switch (wall-clock).
    pub total_ms: u64,
}

/// The busy time of the staging's threads, added to as they work; shared by every thread of a
/// load, so cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct BusyClock {
    reading: Arc<AtomicU64>,
    checking: Arc<AtomicU64>,
    ordering: Arc<AtomicU64>,
    writing: Arc<AtomicU64>,
}

/// One of the overlapping phases.
#[derive(Clone, Copy, Debug)]
pub enum Busy {
    /// Reading CSV records.
    Reading,
    /// Checking rows.
    Checking,
    /// Ordering row groups.
    Ordering,
    /// Writing Parquet.
    Writing,
}

impl BusyClock {
    /// Runs `work`, adding its time to the phase's.
    pub fn time<T>(&self, phase: Busy, work: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = work();
        self.add(phase, started.elapsed());
        out
    }

    /// Adds time spent to the phase's.
    pub fn add(&self, phase: Busy, spent: Duration) {
        let counter = match phase {
            Busy::Reading => &self.reading,
            Busy::Checking => &self.checking,
            Busy::Ordering => &self.ordering,
            Busy::Writing => &self.writing,
        };
        counter.fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
    }

    /// The busy times so far into `phases`.
    pub(super) fn fill(&self, phases: &mut LoadPhases) {
        let ms = |c: &AtomicU64| c.load(Ordering::Relaxed) / 1_000_000;
        phases.reading_ms = ms(&self.reading);
        phases.checking_ms = ms(&self.checking);
        phases.ordering_ms = ms(&self.ordering);
        phases.writing_ms = ms(&self.writing);
    }
}

/// Milliseconds since `started`.
pub(super) fn ms_since(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_time_is_summed_per_phase_across_threads() {
        let clock = BusyClock::default();
        std::thread::scope(|s| {
            for _ in 0..2 {
                let c = clock.clone();
                s.spawn(move || {
                    c.time(Busy::Checking, || {
                        std::thread::sleep(Duration::from_millis(30))
                    })
                });
            }
        });
        clock.time(Busy::Writing, || {
            std::thread::sleep(Duration::from_millis(10))
        });
        let mut phases = LoadPhases::default();
        clock.fill(&mut phases);
        // Two threads busy 30 ms each at the same time: 60 ms of checking, not 30.
        assert!(phases.checking_ms >= 60, "{phases:?}");
        assert!(
            phases.writing_ms >= 10 && phases.writing_ms < 60,
            "{phases:?}"
        );
        assert_eq!(phases.reading_ms, 0);
        assert_eq!(phases.ordering_ms, 0);
    }
}
