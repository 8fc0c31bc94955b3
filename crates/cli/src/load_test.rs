//! `prism load-test`: signed-in users of every role asking pages, the API and exports of a
//! running `prism serve` at once, for a while; requests per second, latency percentiles and
//! errors, and a check that no answer mixes two warehouse versions (`scripts/load-test` runs it
//! with a load committed in the middle).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// What `prism load-test` is told.
#[derive(clap::Args, Clone, Debug)]
pub struct LoadTestArgs {
    /// The running app, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub url: String,
    /// Signed-in users asking at once, spread over the four roles.
    #[arg(long, default_value_t = 200)]
    pub users: usize,
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// The user names of the four roles (channel executive, channel manager, partner manager,
    /// admin), each signed in as many times as its share of the users.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "exec,manager,partner,admin"
    )]
    pub names: Vec<String>,
    /// Their password (one for all).
    #[arg(long)]
    pub password: String,
    /// The partner of the partner manager, and one the channel manager manages.
    #[arg(long, default_value = "P-00001")]
    pub partner: String,
    /// A product for the customer potential page.
    #[arg(long, default_value = "PR-001")]
    pub product: String,
    /// Each user's pause between an answer and its next request, on average, in milliseconds
    /// (drawn evenly between none and twice this, so that users do not ask in step). 0: every
    /// user asks again at once, which measures how much the server answers at most; a pause
    /// measures how quickly it answers people who read what they asked for.
    #[arg(long, default_value_t = 0)]
    pub think_ms: u64,
}

/// One user's sign-in and the paths it asks, in turn.
struct VirtualUser {
    cookie: String,
    paths: Vec<String>,
    /// Its overview answers are checked for a mix of versions.
    checks_versions: bool,
}

/// A user's pauses between requests: even between none and twice the mean, from a generator
/// of its own (each user another sequence, the same in every run).
struct Think {
    mean_ms: u64,
    rng: rand_pcg::Pcg64Mcg,
}

impl Think {
    fn new(mean_ms: u64, user: usize) -> Think {
        use rand::SeedableRng as _;
        Think {
            mean_ms,
            rng: rand_pcg::Pcg64Mcg::seed_from_u64(user as u64),
        }
    }

    fn next(&mut self) -> Option<Duration> {
        use rand::RngExt as _;
        (self.mean_ms > 0)
            .then(|| Duration::from_millis(self.rng.random_range(0..=2 * self.mean_ms)))
    }
}

/// One request: what was asked, when (seconds into the run) and how long its answer took.
struct Asked {
    path: String,
    at_s: f64,
    ms: f64,
}

#[derive(Default)]
struct Tally {
    asked: Vec<Asked>,
    errors: Vec<String>,
    /// The channel's closed revenue of every checked overview: one value per version seen.
    revenues: std::collections::BTreeSet<String>,
    mixed: Vec<String>,
}

fn paths_of(role: usize, partner: &str, product: &str) -> Vec<String> {
    let v: Vec<String> = match role {
        0 => vec![
            "/overview".into(),
            "/api/overview".into(),
            "/segmentation".into(),
            "/api/scorecard".into(),
            "/sales".into(),
            "/service".into(),
            "/customers".into(),
            "/export/overview?table=top-partners".into(),
            format!("/partners/{partner}"),
            "/api/overview?period=2025".into(),
        ],
        1 => vec![
            "/overview".into(),
            "/api/sales".into(),
            format!("/partners/{partner}"),
            "/export/overview?table=top-partners".into(),
            "/underperformers".into(),
        ],
        2 => vec![
            "/my/performance".into(),
            "/api/my/products".into(),
            format!("/my/potential?product={product}"),
            "/export/my/products?table=products".into(),
            format!("/api/partners/{partner}"),
        ],
        _ => vec!["/admin".into(), "/api/overview".into()],
    };
    v
}

async fn sign_in(
    client: &reqwest::Client,
    url: &str,
    name: &str,
    password: &str,
) -> Result<String> {
    let page = client.get(format!("{url}/")).send().await?;
    let csrf =
        session_cookie(&page, "prism_csrf").context("the sign-in page set no CSRF cookie")?;
    let r = client
        .post(format!("{url}/sign-in"))
        .header("cookie", format!("prism_csrf={csrf}"))
        .form(&[
            ("name", name),
            ("password", password),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await?;
    match session_cookie(&r, "prism_session") {
        Some(token) if !token.is_empty() => Ok(format!("prism_session={token}")),
        _ => bail!(
            "signing in as {name}: {} {}",
            r.status(),
            r.text()
                .await
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect::<String>()
        ),
    }
}

fn session_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            c.strip_prefix(&format!("{name}="))
                .map(|v| v.split(';').next().unwrap_or("").to_string())
        })
}

/// The overview's closed revenue tile and the sum of its monthly trend: one version gives the
/// same figure twice; two versions in one page would not.
fn version_check(body: &str) -> Result<String, String> {
    let page: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    let panels = page["panels"].as_array().ok_or("no panels")?;
    let tile = panels
        .iter()
        .flat_map(|p| p["tiles"].as_array().into_iter().flatten())
        .find(|t| t["metric"] == "closed_revenue")
        .ok_or("no revenue tile")?;
    let value = tile["value"].as_str().ok_or("no tile value")?.to_string();
    let trend = panels
        .iter()
        .find(|p| p["id"] == "revenue-trend")
        .ok_or("no revenue trend")?;
    let sum: f64 = trend["chart"]["series"][0]["values"]
        .as_array()
        .ok_or("no trend values")?
        .iter()
        .filter_map(|v| v.as_f64())
        .sum();
    let tile_value: f64 = value.parse().map_err(|_| format!("tile value {value:?}"))?;
    if (tile_value - sum).abs() > 0.01 + tile_value.abs() * 1e-9 {
        return Err(format!(
            "the tile says {value} and the months add up to {sum:.2}"
        ));
    }
    Ok(value)
}

pub fn run(args: &LoadTestArgs, runtime: &tokio::runtime::Runtime) -> Result<()> {
    if args.names.len() != 4 {
        bail!(
            "--names: four user names, one per role (channel executive, channel manager, partner manager, admin)"
        );
    }
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(args.users)
            .timeout(Duration::from_secs(60))
            .build()?;
        let url = args.url.trim_end_matches('/').to_string();
        let users = sign_in_all(&client, &url, args).await?;
        say!(
            "{} users signed in; asking for {} s",
            users.len(),
            args.seconds
        );
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let tasks: Vec<_> = users
            .into_iter()
            .enumerate()
            .map(|(i, u)| {
                let think = Think::new(args.think_ms, i);
                let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
                tokio::spawn(ask_in_turn(u, client, url, stop, started, think))
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Tally::default();
        for t in tasks {
            let t = t.await?;
            all.asked.extend(t.asked);
            all.errors.extend(t.errors);
            all.revenues.extend(t.revenues);
            all.mixed.extend(t.mixed);
        }
        report(&mut all, started.elapsed().as_secs_f64());
        if !all.errors.is_empty() || !all.mixed.is_empty() {
            bail!(
                "{} errors and {} answers mixing versions",
                all.errors.len(),
                all.mixed.len()
            );
        }
        Ok(())
    })
}

/// Signs every user in, each role in turn, each user starting its round at another path so
/// that the users do not all ask the same page at once.
async fn sign_in_all(
    client: &reqwest::Client,
    url: &str,
    args: &LoadTestArgs,
) -> Result<Vec<VirtualUser>> {
    let mut users = Vec::with_capacity(args.users);
    for i in 0..args.users {
        let role = i % 4;
        let cookie = sign_in(client, url, &args.names[role], &args.password).await?;
        let mut paths = paths_of(role, &args.partner, &args.product);
        let turn = i / 4 % paths.len();
        paths.rotate_left(turn);
        users.push(VirtualUser {
            cookie,
            paths,
            checks_versions: role == 0,
        });
    }
    Ok(users)
}

/// One user asking its paths in turn until told to stop.
async fn ask_in_turn(
    u: VirtualUser,
    client: reqwest::Client,
    url: String,
    stop: Arc<AtomicBool>,
    started: Instant,
    mut think: Think,
) -> Tally {
    let mut tally = Tally::default();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        if let Some(pause) = think.next() {
            tokio::time::sleep(pause).await;
        }
        let path = &u.paths[n % u.paths.len()];
        n += 1;
        let asked = Instant::now();
        let reply = client
            .get(format!("{url}{path}"))
            .header("cookie", &u.cookie)
            .send()
            .await;
        let body = match reply {
            Ok(r) if r.status().is_success() => r.text().await.map_err(|e| e.to_string()),
            Ok(r) => Err(format!("{} {path}", r.status())),
            Err(e) => Err(format!("{path}: {e}")),
        };
        tally.asked.push(Asked {
            path: path.clone(),
            at_s: (asked - started).as_secs_f64(),
            ms: asked.elapsed().as_secs_f64() * 1000.0,
        });
        match body {
            Err(e) => tally.errors.push(e),
            Ok(body) if u.checks_versions && path == "/api/overview" => {
                match version_check(&body) {
                    Ok(v) => {
                        tally.revenues.insert(v);
                    }
                    Err(e) => tally.mixed.push(e),
                }
            }
            Ok(_) => {}
        }
    }
    tally
}

/// The quantile `q` of sorted latencies (nearest rank).
fn quantile(sorted_ms: &[f64], q: f64) -> f64 {
    sorted_ms
        .get(((sorted_ms.len() as f64 - 1.0) * q).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

/// Prints the run's figures: over all requests, per path (the slowest tails first, to say
/// which page a slow tail is), the slowest requests with when they were asked, the errors,
/// and the versions seen.
fn report(all: &mut Tally, elapsed_s: f64) {
    let mut ms: Vec<f64> = all.asked.iter().map(|a| a.ms).collect();
    ms.sort_by(f64::total_cmp);
    say!("requests        {}", ms.len());
    say!("per second      {:.0}", ms.len() as f64 / elapsed_s);
    say!(
        "p50 / p95 / p99 {:.1} / {:.1} / {:.1} ms (max {:.1})",
        quantile(&ms, 0.5),
        quantile(&ms, 0.95),
        quantile(&ms, 0.99),
        quantile(&ms, 1.0)
    );
    let mut by_path: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    for a in &all.asked {
        by_path.entry(a.path.as_str()).or_default().push(a.ms);
    }
    let mut rows: Vec<(&str, usize, f64, f64, f64)> = by_path
        .into_iter()
        .map(|(path, mut v)| {
            v.sort_by(f64::total_cmp);
            (
                path,
                v.len(),
                quantile(&v, 0.5),
                quantile(&v, 0.99),
                quantile(&v, 1.0),
            )
        })
        .collect();
    rows.sort_by(|a, b| b.3.total_cmp(&a.3));
    say!("per path (slowest p99 first): requests, p50 / p99 / max ms");
    for (path, n, p50, p99, max) in rows.iter().take(8) {
        say!("  {path:<45} {n:>6}  {p50:>7.1} / {p99:>7.1} / {max:>7.1}");
    }
    // When the slow answers were asked: the mid-run load and the switch to its version show.
    let buckets = (elapsed_s / 5.0).ceil().max(1.0) as usize;
    let mut by_time: Vec<Vec<f64>> = vec![Vec::new(); buckets];
    for a in &all.asked {
        by_time[((a.at_s / 5.0) as usize).min(buckets - 1)].push(a.ms);
    }
    say!("asked in seconds: requests, p50 / p99 / max ms");
    for (i, mut v) in by_time.into_iter().enumerate() {
        v.sort_by(f64::total_cmp);
        say!(
            "  {:>3}-{:<3} {:>8}  {:>7.1} / {:>7.1} / {:>7.1}",
            i * 5,
            i * 5 + 5,
            v.len(),
            quantile(&v, 0.5),
            quantile(&v, 0.99),
            quantile(&v, 1.0)
        );
    }
    all.asked.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    say!("slowest requests: ms, asked at s, path");
    for a in all.asked.iter().take(5) {
        say!("  {:>8.1}  {:>6.1}  {}", a.ms, a.at_s, a.path);
    }
    say!("errors          {}", all.errors.len());
    let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
    for e in &all.errors {
        *kinds.entry(e.as_str()).or_default() += 1;
    }
    for (k, n) in kinds.iter().take(10) {
        say!("  {n:>6} × {k}");
    }
    say!(
        "versions seen   {} (channel revenue {})",
        all.revenues.len(),
        all.revenues.iter().cloned().collect::<Vec<_>>().join(", ")
    );
    say!("mixed answers   {}", all.mixed.len());
    for m in all.mixed.iter().take(5) {
        say!("  {m}");
    }
}
