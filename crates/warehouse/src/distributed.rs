//! Queries on a cluster: the process that asks (the coordinator) plans as on one machine, and
//! the physical stages below its last one run on workers, through `datafusion-distributed`.
//!
//! Only plans travel: a worker reads the warehouse's Parquet files itself, from the same storage
//! (a bucket, or a folder every machine sees), so the coordinator never ships table data. The
//! semantic compiler, the audience, the rollup choice and the result cache all stay in the
//! coordinator, before the physical plan exists, so a cluster changes where the work runs and
//! nothing of what is asked.
//!
//! A cluster is a list of worker URLs (`http://host:port,http://host:port`); there is no
//! scheduler process to keep alive. A worker that refuses connections is left out of the next
//! questions' plans (the others run them); one that dies or goes silent while a question runs
//! makes that question fail with an error naming it. Nothing is retried behind the user's back,
//! so no answer is ever built from part of the data.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::DataFusionError;
use datafusion::common::Result as DfResult;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::TaskContext;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::physical_expr::{Distribution, Partitioning};
use datafusion::physical_plan::ExecutionPlanProperties as _;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_distributed::grpc::{BoxCloneSyncChannel, create_worker_client};
use datafusion_distributed::{
    ChannelResolver, CoordinatorToWorkerMsg, DesiredTaskCountEvent, DesiredTaskCountEventResponse,
    DistributedExt as _, ExecuteTaskRequest, GetWorkerInfoRequest, GetWorkerInfoResponse,
    SessionStateBuilderExt as _, SetPlanRequest, Worker, WorkerChannel, WorkerResolver,
    WorkerToCoordinatorMsg,
};
use futures::stream::BoxStream;
use futures::{StreamExt as _, TryStreamExt as _};
use url::Url;

use crate::storage::Root;
use crate::{Result, WarehouseError};

/// How long a worker may take to accept a connection before the question fails, unless
/// `PRISM_CLUSTER_CONNECT_SECONDS` says otherwise.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The workers a process sends its questions' stages to, and how long it waits for them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    workers: Vec<Url>,
    connect_timeout: Duration,
    bytes_per_task: Option<usize>,
}

impl Cluster {
    /// Reads `--cluster`: worker addresses separated by commas, each `http://host:port` or
    /// `host:port`. The connection timeout comes from `PRISM_CLUSTER_CONNECT_SECONDS` (default
    /// 5; a worker silent for twice as long during a question fails it), and
    /// `PRISM_CLUSTER_BYTES_PER_TASK` sets how many bytes of Parquet one task scans (default:
    /// the engine's own choice; a small value spreads even a small table over every worker,
    /// which the tests use).
    pub fn parse(spec: &str) -> Result<Cluster> {
        let bad = |why: String| WarehouseError::Cluster(format!("--cluster {spec:?}: {why}"));
        let mut workers = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let text = if part.contains("://") {
                part.to_string()
            } else {
                format!("http://{part}")
            };
            let url = Url::parse(&text).map_err(|e| bad(format!("{part}: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") || url.port_or_known_default().is_none() {
                return Err(bad(format!("{part}: expected http://HOST:PORT")));
            }
            if url.host_str().is_none_or(str::is_empty) {
                return Err(bad(format!("{part}: no host")));
            }
            workers.push(url);
        }
        if workers.is_empty() {
            return Err(bad("no worker address".into()));
        }
        Ok(Cluster {
            workers,
            connect_timeout: whole_number("PRISM_CLUSTER_CONNECT_SECONDS")?
                .map_or(CONNECT_TIMEOUT, Duration::from_secs),
            bytes_per_task: whole_number("PRISM_CLUSTER_BYTES_PER_TASK")?.map(|b| b as usize),
        })
    }

    /// The workers' URLs, in the order given.
    pub fn workers(&self) -> &[Url] {
        &self.workers
    }

    /// Asks each worker who it is: its URL and either its version or why it did not answer.
    pub async fn ping(&self) -> Vec<(Url, std::result::Result<String, String>)> {
        let channels = TimedChannels::new(self.connect_timeout);
        let mut answers = Vec::new();
        for url in &self.workers {
            let answer = match channels.get_worker_client_for_url(url).await {
                Ok(mut client) => client
                    .get_worker_info(GetWorkerInfoRequest {})
                    .await
                    .map(|info| info.version)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            answers.push((url.clone(), answer));
        }
        answers
    }
}

/// A whole number from the environment variable `name`, if set; anything else set there is an
/// error that names it.
fn whole_number(name: &str) -> Result<Option<u64>> {
    match std::env::var(name) {
        Ok(v) => {
            v.trim().parse().map(Some).map_err(|_| {
                WarehouseError::Cluster(format!("{name}={v:?}: expected a whole number"))
            })
        }
        Err(_) => Ok(None),
    }
}

static CLUSTER: OnceLock<Mutex<Option<Cluster>>> = OnceLock::new();

/// Sends the work of every session this process opens over a warehouse to `cluster` (or keeps it
/// here, with `None`). Set once, from `--cluster`, before the first session.
pub fn set_cluster(cluster: Option<Cluster>) {
    *CLUSTER
        .get_or_init(Default::default)
        .lock()
        .expect("cluster lock") = cluster;
}

/// The cluster this process sends its work to, if any.
pub fn cluster() -> Option<Cluster> {
    CLUSTER
        .get_or_init(Default::default)
        .lock()
        .expect("cluster lock")
        .clone()
}

/// A session with `config`: on this machine, or, with a cluster set, one whose physical plans
/// are cut into stages that run on its workers.
pub(crate) fn session(config: SessionConfig) -> Result<SessionContext> {
    let Some(cluster) = cluster() else {
        return Ok(local_session(config));
    };
    let builder = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_distributed_worker_resolver(Workers::new(&cluster))
        .with_distributed_channel_resolver(TimedChannels::new(cluster.connect_timeout))
        .with_distributed_desired_task_count_handler(whole_input_in_one_task)
        .with_distributed_planner();
    let builder = match cluster.bytes_per_task {
        Some(bytes) => builder.with_distributed_file_scan_config_bytes_per_partition(bytes)?,
        None => builder,
    };
    Ok(SessionContext::new_with_state(builder.build()))
}

/// A session with `config` on this machine, with Prism's own steps and functions: a grouping
/// by one text column looks up each run of equal values once (`runs`), metrics' conditions and
/// filters compare text by its views (`texts`), and an integer cast to a decimal it always fits
/// is widened unchecked (`decimals`). Each gives the answers DataFusion's own would, and each
/// leaves alone what it does not apply to (text read as plain strings, not views). The workers
/// of a cluster plan with DataFusion's own steps and functions only, which they can be sent.
pub(crate) fn local_session(config: SessionConfig) -> SessionContext {
    let state = local_state(config)
        .with_physical_optimizer_rule(Arc::new(crate::runs::RunsFirst))
        .build();
    SessionContext::new_with_state(state)
}

/// The session a load builds and brings its rollups up to date in: `local_session`'s, but
/// for the runs, which the load's groupings gain nothing from (their rows are in the order of
/// none of their keys but the partner's) and which cost it memory: with them, a day's load at
/// scale 100 peaked at 4.3 GB, without them at 3.1-3.4 GB, no slower.
pub(crate) fn load_session(config: SessionConfig) -> SessionContext {
    SessionContext::new_with_state(local_state(config).build())
}

/// Prism's own rules but for the runs.
fn local_state(config: SessionConfig) -> SessionStateBuilder {
    SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_optimizer_rule(Arc::new(crate::texts::TextsByView))
        .with_optimizer_rule(Arc::new(crate::decimals::IntegersAsDecimals))
        .with_physical_optimizer_rule(Arc::new(crate::texts::FiltersByView))
}

/// One task for every stage that holds a step which must see all its input at once: an
/// aggregation in one step (DataFusion's plan when its input is a single file), a window over
/// every row, a sort or a limit over everything. `datafusion-distributed` 4.0 would otherwise cut
/// such a step's file into as many tasks as there are workers, and each task would answer for
/// its part: a total without grouping came back as two rows, one per worker (found by running the
/// query-case suite on a cluster). Joins are left to the planner, which knows when their build
/// side is broadcast to every task.
fn whole_input_in_one_task(
    event: DesiredTaskCountEvent<'_>,
) -> Option<DfResult<DesiredTaskCountEventResponse>> {
    let step = event.plan;
    if step.children().is_empty() || step.name().contains("Join") {
        return None;
    }
    let whole_input = step
        .input_distribution_requirements()
        .into_per_child()
        .iter()
        .any(|d| matches!(d, Distribution::SinglePartition));
    // A round-robin spread of one partition (DataFusion's way to use both cores on a small
    // file): 4.0 cut the file into tasks and then asked each for a partition it did not have
    // ("partition 1 not available"). With the library's default task size such a file is
    // never cut; with a small `PRISM_CLUSTER_BYTES_PER_TASK` it would be.
    let spread_of_one = step.downcast_ref::<RepartitionExec>().is_some_and(|r| {
        matches!(r.partitioning(), Partitioning::RoundRobinBatch(_))
            && r.input().output_partitioning().partition_count() == 1
    });
    (whole_input || spread_of_one).then(|| Ok(DesiredTaskCountEventResponse::maximum(1)))
}

/// How long a worker found up (or down) is taken to be so before it is asked again.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The workers `--cluster` named that accept a connection: a worker found down is left out of the
/// next questions' plans (they run on the others) until it answers again.
struct Workers {
    all: Vec<Url>,
    probe_timeout: Duration,
    seen: Mutex<Option<(Instant, Vec<Url>)>>,
}

impl Workers {
    fn new(cluster: &Cluster) -> Workers {
        Workers {
            all: cluster.workers.clone(),
            probe_timeout: cluster.connect_timeout.min(Duration::from_secs(1)),
            seen: Mutex::new(None),
        }
    }
}

impl WorkerResolver for Workers {
    fn get_urls(&self) -> std::result::Result<Vec<Url>, DataFusionError> {
        let mut seen = self.seen.lock().expect("workers lock");
        if let Some((at, live)) = &*seen
            && at.elapsed() < PROBE_EVERY
        {
            return Ok(live.clone());
        }
        // Every worker asked at once: a cluster with machines gone costs one timeout, not one
        // per machine.
        let answers: Vec<_> = std::thread::scope(|scope| {
            let asked: Vec<_> = (self.all.iter())
                .map(|url| scope.spawn(move || probe(url, self.probe_timeout)))
                .collect();
            asked.into_iter().map(|a| a.join()).collect()
        });
        let mut live = Vec::new();
        let mut down = Vec::new();
        for (url, answer) in self.all.iter().zip(answers) {
            match answer {
                Ok(Ok(())) => live.push(url.clone()),
                Ok(Err(e)) => down.push(format!("{} ({e})", url.as_str().trim_end_matches('/'))),
                Err(_) => down.push(format!("{} (its probe failed)", url.as_str())),
            }
        }
        if live.is_empty() {
            return Err(DataFusionError::Execution(format!(
                "no worker of the cluster answers: {}",
                down.join(", ")
            )));
        }
        if !down.is_empty() {
            tracing::warn!(down = %down.join(", "), "workers left out of the plan");
        }
        *seen = Some((Instant::now(), live.clone()));
        Ok(live)
    }
}

/// Whether a worker accepts a connection within `timeout`.
fn probe(url: &Url, timeout: Duration) -> std::io::Result<()> {
    use std::net::ToSocketAddrs as _;
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(80);
    let mut last = std::io::Error::other("no address");
    for addr in (host, port).to_socket_addrs()? {
        match std::net::TcpStream::connect_timeout(&addr, timeout) {
            Ok(_) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Connections to workers: one per worker, kept while it works, made with the cluster's
/// connection timeout (the engine's default would wait on an unreachable address for minutes),
/// and whose every error names the worker.
#[derive(Clone)]
struct TimedChannels {
    connect_timeout: Duration,
    open: Arc<Mutex<HashMap<Url, BoxCloneSyncChannel>>>,
}

impl TimedChannels {
    fn new(connect_timeout: Duration) -> TimedChannels {
        TimedChannels {
            connect_timeout,
            open: Arc::default(),
        }
    }
}

#[async_trait::async_trait]
impl ChannelResolver for TimedChannels {
    async fn get_worker_client_for_url(
        &self,
        url: &Url,
    ) -> std::result::Result<Box<dyn WorkerChannel>, DataFusionError> {
        let worker = url.as_str().trim_end_matches('/').to_string();
        let known = self.open.lock().expect("channels lock").get(url).cloned();
        let channel = match known {
            Some(channel) => channel,
            None => {
                let endpoint = tonic::transport::Channel::from_shared(url.to_string())
                    .map_err(|e| DataFusionError::Execution(format!("worker {worker}: {e}")))?
                    .connect_timeout(self.connect_timeout)
                    .tcp_nodelay(true)
                    // A worker that stops answering without closing its connection (its
                    // machine lost, a network cut) is found by its missing pings, within twice
                    // the timeout, and the question fails naming it rather than waiting forever.
                    .http2_keep_alive_interval(self.connect_timeout)
                    .keep_alive_timeout(self.connect_timeout)
                    .keep_alive_while_idle(true);
                let channel = endpoint.connect().await.map_err(|e| {
                    DataFusionError::Execution(format!("worker {worker} is unreachable: {e}"))
                })?;
                let channel = BoxCloneSyncChannel::new(channel);
                self.open
                    .lock()
                    .expect("channels lock")
                    .insert(url.clone(), channel.clone());
                channel
            }
        };
        Ok(Box::new(Named {
            worker,
            inner: create_worker_client(channel),
        }))
    }
}

/// A worker's connection whose errors say which worker failed: a worker that dies while a
/// question runs breaks the question with its address, never with a bare transport error.
struct Named {
    worker: String,
    inner: Box<dyn WorkerChannel>,
}

impl Named {
    fn error(&self) -> impl Fn(DataFusionError) -> DataFusionError + Send + Sync + 'static {
        let worker = self.worker.clone();
        move |e| DataFusionError::Execution(format!("worker {worker} failed: {e}"))
    }
}

#[async_trait::async_trait]
impl WorkerChannel for Named {
    async fn coordinator_channel(
        &mut self,
        headers: http::HeaderMap,
        set_plan_request: SetPlanRequest,
        c2w_stream: BoxStream<'static, CoordinatorToWorkerMsg>,
        metrics: ExecutionPlanMetricsSet,
        task_ctx: &Arc<TaskContext>,
    ) -> DfResult<BoxStream<'static, DfResult<WorkerToCoordinatorMsg>>> {
        let error = self.error();
        let stream = self
            .inner
            .coordinator_channel(headers, set_plan_request, c2w_stream, metrics, task_ctx)
            .await
            .map_err(&error)?;
        Ok(stream.map_err(error).boxed())
    }

    async fn execute_task(
        &mut self,
        headers: http::HeaderMap,
        request: ExecuteTaskRequest,
        metrics: ExecutionPlanMetricsSet,
        task_ctx: &Arc<TaskContext>,
    ) -> DfResult<Vec<BoxStream<'static, DfResult<RecordBatch>>>> {
        let streams = self
            .inner
            .execute_task(headers, request, metrics, task_ctx)
            .await
            .map_err(self.error())?;
        Ok(streams
            .into_iter()
            .map(|s| s.map_err(self.error()).boxed())
            .collect())
    }

    async fn get_worker_info(
        &mut self,
        request: GetWorkerInfoRequest,
    ) -> DfResult<GetWorkerInfoResponse> {
        self.inner
            .get_worker_info(request)
            .await
            .map_err(self.error())
    }
}

/// Runs a worker on `listener` until `shutdown` completes: it executes the stages coordinators
/// send it, reading the warehouse's files from `data`'s storage (a bucket's store is registered
/// for it; local files are read where the coordinator's plan says they are), through the store
/// that keeps the Parquet bytes it read between questions (`kept`): a worker only answers
/// questions, and reads the same columns for each.
pub async fn serve_worker(
    listener: tokio::net::TcpListener,
    data: &Path,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<()> {
    let runtime = RuntimeEnv::default();
    let root = if crate::storage::is_remote(data) {
        Root::remote(data.to_str().unwrap_or_default())?
    } else {
        Root::Local(data.to_path_buf())
    };
    root.register_kept_store_in(&runtime);
    let worker = Worker::default()
        .with_runtime_env(Arc::new(runtime))
        .with_version(env!("CARGO_PKG_VERSION"));
    let addr = listener
        .local_addr()
        .map_err(|e| WarehouseError::Cluster(format!("worker: {e}")))?;
    tonic::transport::Server::builder()
        .add_service(worker.into_worker_server())
        .serve_with_incoming_shutdown(
            // Small messages (plans, the last batch of a stage) go at once: with Nagle's
            // algorithm each waited for the peer's delayed acknowledgement, 40 ms a hop.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
        .map_err(|e| WarehouseError::Cluster(format!("worker on {addr}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_is_a_list_of_worker_addresses() {
        let c = Cluster::parse("127.0.0.1:7001, http://10.0.0.2:7002").unwrap();
        let urls: Vec<&str> = c.workers().iter().map(Url::as_str).collect();
        assert_eq!(urls, ["http://127.0.0.1:7001/", "http://10.0.0.2:7002/"]);
        for bad in ["", " , ", "ftp://h:1", "http://:1"] {
            let e = Cluster::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--cluster"), "{bad:?}: {e}");
        }
    }
}
