//! What the engine did, for an operator's monitoring: how many answers it gave and from where
//! (the result cache, a rollup, the base tables), and how long each took. The web app exposes
//! them at `/metrics`; nothing here holds a figure of the business.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Where an answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnsweredFrom {
    /// The result cache: the same question over the same warehouse version was asked before.
    Cache = 0,
    /// At least one fact was read from a rollup.
    Rollup = 1,
    /// Every fact was read from its base table.
    Base = 2,
}

impl AnsweredFrom {
    fn label(self) -> &'static str {
        match self {
            AnsweredFrom::Cache => "cache",
            AnsweredFrom::Rollup => "rollup",
            AnsweredFrom::Base => "base",
        }
    }
}

/// The engine's counters; clones share them. Each source's counter is looked up once, so
/// that counting an answer takes no lock and makes no label.
#[derive(Clone, Debug)]
pub struct EngineStats {
    answers: Family<Vec<(String, String)>, Counter>,
    by_source: [Counter; 3],
    seconds: Histogram,
}

impl Default for EngineStats {
    fn default() -> EngineStats {
        let answers = Family::<Vec<(String, String)>, Counter>::default();
        let counter = |from: AnsweredFrom| {
            answers
                .get_or_create(&vec![("from".into(), from.label().into())])
                .clone()
        };
        let by_source = [
            counter(AnsweredFrom::Cache),
            counter(AnsweredFrom::Rollup),
            counter(AnsweredFrom::Base),
        ];
        EngineStats {
            answers,
            by_source,
            // 1 ms to about 33 s.
            seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
        }
    }
}

impl EngineStats {
    /// Counts an answer and the time it took.
    pub fn record(&self, from: AnsweredFrom, seconds: f64) {
        self.by_source[from as usize].inc();
        self.seconds.observe(seconds);
    }

    /// How many answers came from `from` so far.
    pub fn answers(&self, from: AnsweredFrom) -> u64 {
        self.by_source[from as usize].get()
    }

    /// Registers the counters under `prism_query_…`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "prism_query_answers",
            "Answers the engine gave, by where they came from: the result cache, a rollup or the base tables",
            self.answers.clone(),
        );
        registry.register(
            "prism_query_seconds",
            "Time to answer a question, cache hits included",
            self.seconds.clone(),
        );
    }
}
