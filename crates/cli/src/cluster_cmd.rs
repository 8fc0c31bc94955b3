//! `prism worker`, `prism cluster up` and `prism status --workers`: the processes of a cluster
//! and a look at them. The work itself is planned in `prism_warehouse`'s distributed module.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use prism_warehouse::Cluster;

/// `prism worker`'s flags.
#[derive(clap::Args)]
pub struct WorkerArgs {
    /// Where the worker listens (port 0: any free port; the line it prints says which).
    #[arg(long, default_value = "127.0.0.1:7100")]
    addr: String,
}

/// `prism cluster …`.
#[derive(clap::Subcommand)]
pub enum ClusterCommand {
    /// Start workers on this machine (each its own process, on free loopback ports), print
    /// `cluster: WORKERS` — what `--cluster` takes — and stop them all on Ctrl-C or SIGTERM.
    Up {
        /// How many workers.
        #[arg(long, default_value_t = 2)]
        workers: usize,
    },
}

/// Runs one worker until Ctrl-C or SIGTERM; prints `worker: URL` once it listens.
pub fn worker(data: &Path, args: &WorkerArgs, runtime: &tokio::runtime::Runtime) -> Result<()> {
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .with_context(|| format!("worker: listening on {}", args.addr))?;
        let addr = listener.local_addr()?;
        say!("worker: http://{addr}");
        std::io::stdout().flush()?;
        prism_warehouse::serve_worker(listener, data, prism_web::stop_asked()).await?;
        Ok(())
    })
}

/// The workers `prism cluster up` started; dropping it stops them.
struct Workers(Vec<(Child, String)>);

impl Drop for Workers {
    fn drop(&mut self) {
        for (child, _) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `count` workers over `data`, prints their addresses and the cluster's, and waits.
pub fn up(
    data: &Path,
    storage_options: &[String],
    count: usize,
    runtime: &tokio::runtime::Runtime,
) -> Result<()> {
    if count == 0 {
        bail!("--workers 0: a cluster needs at least one worker");
    }
    let exe = std::env::current_exe().context("finding the prism executable")?;
    let mut workers = Workers(Vec::new());
    for n in 1..=count {
        let mut command = Command::new(&exe);
        command
            .arg("worker")
            .args(["--addr", "127.0.0.1:0", "--data"])
            .arg(data);
        for option in storage_options {
            command.args(["--storage-option", option]);
        }
        let mut child = command
            .env_remove("PRISM_CLUSTER")
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting worker {n}"))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line)?;
        let Some(url) = line.trim().strip_prefix("worker: ").map(str::to_string) else {
            let status = child.wait()?;
            bail!("worker {n} did not start ({status})");
        };
        say!("worker {n}: {url} (process {})", child.id());
        workers.0.push((child, url));
    }
    let spec = workers
        .0
        .iter()
        .map(|(_, url)| url.as_str())
        .collect::<Vec<_>>()
        .join(",");
    say!("cluster: {spec}");
    std::io::stdout().flush()?;
    runtime.block_on(async {
        let watch = async {
            // A worker that stops is said once; the others keep serving.
            let mut said = vec![false; workers.0.len()];
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                for (i, (child, url)) in workers.0.iter_mut().enumerate() {
                    if !said[i]
                        && let Ok(Some(status)) = child.try_wait()
                    {
                        eprintln!("worker {} ({url}) stopped: {status}", i + 1);
                        said[i] = true;
                    }
                }
            }
        };
        tokio::select! {
            _ = prism_web::stop_asked() => {}
            _ = watch => {}
        }
    });
    drop(workers);
    Ok(())
}

/// `prism status --workers`: each worker of `--cluster`, up (with its version) or down (why).
/// Fails when any is down, so that a script can tell.
pub fn status(runtime: &tokio::runtime::Runtime) -> Result<ExitCode> {
    let Some(cluster) = prism_warehouse::cluster() else {
        bail!("--workers: no cluster named (give --cluster WORKERS or PRISM_CLUSTER)");
    };
    let answers = runtime.block_on(cluster.ping());
    let mut down = 0;
    for (url, answer) in &answers {
        let url = url.as_str().trim_end_matches('/');
        match answer {
            Ok(version) => say!("{url}  up  prism {version}"),
            Err(why) => {
                down += 1;
                say!("{url}  down  {why}");
            }
        }
    }
    say!("{} of {} workers up", answers.len() - down, answers.len());
    Ok(if down == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Reads `--cluster` into the process's cluster, if given.
pub fn set(spec: Option<&str>) -> Result<()> {
    if let Some(spec) = spec {
        prism_warehouse::set_cluster(Some(Cluster::parse(spec)?));
    }
    Ok(())
}
