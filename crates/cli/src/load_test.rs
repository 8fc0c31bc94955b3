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
}

/// One user's sign-in and the paths it asks, in turn.
struct VirtualUser {
    cookie: String,
    paths: Vec<String>,
    /// Its overview answers are checked for a mix of versions.
    checks_versions: bool,
}

#[derive(Default)]
struct Tally {
    latencies_ms: Vec<f64>,
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
        let mut users = Vec::with_capacity(args.users);
        for i in 0..args.users {
            let role = i % 4;
            let cookie = sign_in(&client, &url, &args.names[role], &args.password).await?;
            let mut paths = paths_of(role, &args.partner, &args.product);
            let turn = i / 4 % paths.len();
            paths.rotate_left(turn);
            users.push(VirtualUser {
                cookie,
                paths,
                checks_versions: role == 0,
            });
        }
        println!(
            "{} users signed in; asking for {} s",
            users.len(),
            args.seconds
        );
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for u in users {
            let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let path = &u.paths[n % u.paths.len()];
                    n += 1;
                    let asked = Instant::now();
                    let reply = client
                        .get(format!("{url}{path}"))
                        .header("cookie", &u.cookie)
                        .send()
                        .await;
                    let body = match reply {
                        Ok(r) if r.status().is_success() => {
                            r.text().await.map_err(|e| e.to_string())
                        }
                        Ok(r) => Err(format!("{} {path}", r.status())),
                        Err(e) => Err(format!("{path}: {e}")),
                    };
                    tally
                        .latencies_ms
                        .push(asked.elapsed().as_secs_f64() * 1000.0);
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
            }));
        }
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Tally::default();
        for t in tasks {
            let t = t.await?;
            all.latencies_ms.extend(t.latencies_ms);
            all.errors.extend(t.errors);
            all.revenues.extend(t.revenues);
            all.mixed.extend(t.mixed);
        }
        let elapsed = started.elapsed().as_secs_f64();
        all.latencies_ms.sort_by(f64::total_cmp);
        let at = |q: f64| {
            all.latencies_ms
                .get(((all.latencies_ms.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        println!("requests        {}", all.latencies_ms.len());
        println!(
            "per second      {:.0}",
            all.latencies_ms.len() as f64 / elapsed
        );
        println!(
            "p50 / p95 / p99 {:.1} / {:.1} / {:.1} ms (max {:.1})",
            at(0.5),
            at(0.95),
            at(0.99),
            at(1.0)
        );
        println!("errors          {}", all.errors.len());
        let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
        for e in &all.errors {
            *kinds.entry(e.as_str()).or_default() += 1;
        }
        for (k, n) in kinds.iter().take(10) {
            println!("  {n:>6} × {k}");
        }
        println!(
            "versions seen   {} (channel revenue {})",
            all.revenues.len(),
            all.revenues.iter().cloned().collect::<Vec<_>>().join(", ")
        );
        println!("mixed answers   {}", all.mixed.len());
        for m in all.mixed.iter().take(5) {
            println!("  {m}");
        }
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
