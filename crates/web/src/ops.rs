//! What an operator watches: whether the app lives (`/healthz`), whether it can answer
//! (`/readyz`), and its Prometheus metrics (`/metrics`). None of them needs a sign-in, and none
//! holds a figure of the business: requests are counted by route as the router names it
//! (`/partners/{id}`), never by the path asked for, so no partner's id is in them.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{MatchedPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::AppState;

type Labels = Vec<(String, String)>;

/// A request's time, in buckets from 1 ms to about 16 s.
fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The app's metrics: its own counters, the engine's, and the warehouse's, read at each scrape.
pub struct Ops {
    registry: Registry,
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram, fn() -> Histogram>,
    sign_in_failures: Counter,
}

impl Ops {
    /// The metrics of an app over the warehouse in `data`, whose engine counts in `engine`.
    pub fn new(data: PathBuf, engine: &prism_engine::EngineStats) -> Ops {
        let mut registry = Registry::default();
        let requests = Family::<Labels, Counter>::default();
        let latency =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(request_histogram);
        let sign_in_failures = Counter::default();
        registry.register(
            "prism_http_requests",
            "HTTP requests answered, by route, method and status",
            requests.clone(),
        );
        registry.register(
            "prism_http_request_seconds",
            "Time to answer an HTTP request, by route",
            latency.clone(),
        );
        registry.register(
            "prism_sign_in_failures",
            "Sign-ins refused: a wrong name or password, or too many failures",
            sign_in_failures.clone(),
        );
        engine.register(&mut registry);
        registry.register_collector(Box::new(WarehouseCollector { data }));
        Ops {
            registry,
            requests,
            latency,
            sign_in_failures,
        }
    }

    /// Counts a request to `route` and the time it took.
    pub fn request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&vec![
                ("route".into(), route.into()),
                ("method".into(), method.into()),
                ("status".into(), status.to_string()),
            ])
            .inc();
        self.latency
            .get_or_create(&vec![("route".into(), route.into())])
            .observe(seconds);
    }

    /// Counts a refused sign-in.
    pub fn sign_in_failed(&self) {
        self.sign_in_failures.inc();
    }

    /// The metrics in Prometheus' text format (OpenMetrics).
    pub fn text(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a string");
        out
    }
}

/// The warehouse's current version and its load, read from the version file at each scrape:
/// loads are made by `prism load`, another process.
#[derive(Debug)]
struct WarehouseCollector {
    data: PathBuf,
}

/// One gauge without labels.
fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for WarehouseCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // The Parquet bytes kept in memory between questions (`--file-cache-mb`): how full,
        // and how much of what questions read came from memory.
        let cache = prism_warehouse::file_cache_stats();
        for (name, help, value) in [
            (
                "prism_file_cache_budget_bytes",
                "The bytes of Parquet files that may be kept in memory between questions",
                cache.budget_bytes as f64,
            ),
            (
                "prism_file_cache_bytes",
                "The bytes of Parquet files kept in memory now",
                cache.kept_bytes as f64,
            ),
        ] {
            gauge(&mut encoder, name, help, value)?;
        }
        // A family's encoder holds the encoder until it goes out of scope.
        {
            let mut read = encoder.encode_descriptor(
                "prism_file_cache_read_bytes",
                "Bytes of Parquet data files questions read, from memory or from storage",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (from, bytes) in [
                ("memory", cache.from_memory_bytes),
                ("storage", cache.from_storage_bytes),
            ] {
                ConstCounter::new(bytes).encode(read.encode_family(&[("from", from)])?)?;
            }
        }
        let Ok(file) = prism_warehouse::Warehouse::open(&self.data).and_then(|w| w.versions())
        else {
            return Ok(());
        };
        let loads = ConstCounter::new(file.versions.len() as u64);
        loads.encode(encoder.encode_descriptor(
            "prism_warehouse_loads",
            "Loads committed to the warehouse",
            None,
            loads.metric_type(),
        )?)?;
        let Some(current) = file.current() else {
            return Ok(());
        };
        let loaded_at = chrono::DateTime::parse_from_rfc3339(&current.loaded_at)
            .map(|t| t.timestamp())
            .unwrap_or(0);
        for (name, help, value) in [
            (
                "prism_warehouse_version",
                "The warehouse version being served",
                current.version as f64,
            ),
            (
                "prism_warehouse_loaded_timestamp_seconds",
                "When the current version was committed, in seconds since 1970",
                loaded_at as f64,
            ),
            (
                "prism_warehouse_load_seconds",
                "How long the load of the current version took",
                current.load_ms as f64 / 1000.0,
            ),
            (
                "prism_warehouse_rollups_build_seconds",
                "How long building the current version's rollups took",
                current.rollups_build_ms as f64 / 1000.0,
            ),
        ] {
            gauge(&mut encoder, name, help, value)?;
        }
        let mut rows = encoder.encode_descriptor(
            "prism_warehouse_table_rows",
            "Rows of each table in the current version",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (table, pin) in &current.tables {
            let labels = [("table", table.as_str())];
            ConstGauge::new(pin.rows as i64).encode(rows.encode_family(&labels)?)?;
        }
        let mut changed = encoder.encode_descriptor(
            "prism_warehouse_load_rows",
            "Rows the load of the current version read, added, replaced and rejected, by table",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (table, c) in &current.changes {
            for (what, n) in [
                ("read", c.rows_read),
                ("added", c.added),
                ("replaced", c.replaced),
                ("rejected", c.rejected),
            ] {
                let labels = [("table", table.as_str()), ("rows", what)];
                ConstGauge::new(n as i64).encode(changed.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Counts every request of a matched route, by the route's pattern.
pub(crate) async fn measure(
    State(st): State<Arc<AppState>>,
    route: Option<MatchedPath>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = request.method().as_str().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("(none)", |r| r.as_str());
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    st.ops.request(route, &method, status, seconds);
    // The route's pattern, not the path: a log collector gets no partner's id either.
    tracing::info!(
        target: "prism::http",
        route,
        method,
        status,
        ms = (seconds * 1000.0).round() as u64,
        "request"
    );
    response
}

/// `/healthz`: the process answers.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// `/readyz`: the app can answer questions — the warehouse has a version it can read and the
/// app's own store answers. 503 with the reason otherwise.
pub(crate) async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    let checked = crate::blocking(&st, |st| Ok(ready(st))).await;
    let reason = match checked {
        Ok(Ok(text)) => return text.into_response(),
        Ok(Err(reason)) => reason,
        Err(e) => e.to_string(),
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("not ready: {reason}\n"),
    )
        .into_response()
}

fn ready(st: &AppState) -> Result<String, String> {
    st.store
        .ping()
        .map_err(|e| format!("the app's store does not answer: {e}"))?;
    let file = prism_warehouse::Warehouse::open(&st.warehouse)
        .and_then(|w| w.versions())
        .map_err(|e| format!("the warehouse cannot be read: {e}"))?;
    match file.current() {
        Some(v) => Ok(format!("ready: warehouse version {}\n", v.version)),
        None => Err("nothing is loaded yet: run `prism load`".to_string()),
    }
}

/// `/metrics`: Prometheus' text format.
pub(crate) async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.ops.text(),
    )
        .into_response()
}
