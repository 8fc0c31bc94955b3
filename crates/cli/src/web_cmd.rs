//! `prism serve` and `prism users`: the web app and its users.

use std::io::{BufRead as _, IsTerminal as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use prism_web::{AppState, Role};

#[derive(Subcommand)]
pub enum Users {
    /// Add a user: `prism users add NAME --role ROLE [--partner ID | --partners ID,ID] [--password-stdin]`.
    Add {
        name: String,
        /// channel_executive, channel_manager, partner_manager or admin.
        #[arg(long)]
        role: String,
        /// The partner of a partner_manager.
        #[arg(long, conflicts_with = "partners")]
        partner: Option<String>,
        /// The partners a channel_manager manages.
        #[arg(long, value_delimiter = ',')]
        partners: Vec<String>,
        /// Read the password from the first line of standard input instead of a prompt.
        #[arg(long)]
        password_stdin: bool,
        /// The user's e-mail address, where their alerts may be mailed.
        #[arg(long)]
        email: Option<String>,
    },
    /// Set a user's e-mail address, where their alerts may be mailed.
    Email { name: String, address: String },
    /// List the users, their roles and partners.
    List,
    /// Remove a user (their sessions end).
    Remove { name: String },
    /// Set a user's password (their sessions end).
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Print a new API token of a user, which a tool gives as the password (the SQL endpoint
    /// takes it); shown once. `--revoke` ends all of the user's tokens instead.
    Token {
        name: String,
        /// What the token is for, to recognise it later.
        #[arg(long, default_value = "api")]
        label: String,
        #[arg(long)]
        revoke: bool,
    },
}

fn password(from_stdin: bool) -> Result<String> {
    if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let p = line.trim_end_matches(['\r', '\n']).to_string();
        if p.is_empty() {
            bail!("no password on standard input");
        }
        return Ok(p);
    }
    let p = rpassword::prompt_password("password: ")?;
    let again = rpassword::prompt_password("again: ")?;
    if p != again {
        bail!("the two passwords differ");
    }
    Ok(p)
}

pub fn users(data: &Path, command: Users) -> Result<()> {
    let state = app_state(data, prism_model::Model::shipped())?;
    match command {
        Users::Add {
            name,
            role,
            partner,
            partners,
            password_stdin,
            email,
        } => {
            let role = Role::parse(&role)?;
            let partners: Vec<String> = partner.into_iter().chain(partners).collect();
            let pw = password(password_stdin)?;
            state.store.add_user(&name, role, &partners, &pw)?;
            if let Some(email) = email
                && let Err(e) = state.store.set_email(&name, &email)
            {
                // Nothing half-made: the user goes again with the address refused.
                state.store.remove_user(&name)?;
                return Err(e.into());
            }
            say!("added {name} ({})", role.name());
        }
        Users::Email { name, address } => {
            state.store.set_email(&name, &address)?;
            say!("e-mail of {name} set");
        }
        Users::List => {
            say!("{:<24} {:<18} partners", "name", "role");
            for u in state.store.users()? {
                say!(
                    "{:<24} {:<18} {}",
                    u.name,
                    u.role.name(),
                    u.partners.join(", ")
                );
            }
        }
        Users::Remove { name } => {
            state.store.remove_user(&name)?;
            say!("removed {name}");
        }
        Users::Passwd {
            name,
            password_stdin,
        } => {
            let pw = password(password_stdin)?;
            state.store.set_password(&name, &pw)?;
            say!("password of {name} changed");
        }
        Users::Token {
            name,
            label,
            revoke: false,
        } => {
            let token = state.store.add_api_token(&name, &label)?;
            state.store.audit(&name, "api token added", &label)?;
            say!("{token}");
        }
        Users::Token {
            name, revoke: true, ..
        } => {
            let n = state.store.revoke_api_tokens(&name)?;
            state
                .store
                .audit(&name, "api tokens revoked", &n.to_string())?;
            say!("{n} token(s) of {name} revoked");
        }
    }
    Ok(())
}

/// What an administrator sets for the web app's sessions, audit log and proxies.
#[derive(clap::Args, Clone, Debug)]
pub struct ServeOptions {
    /// A reverse proxy whose X-Forwarded-For is believed (repeat for several). From anyone
    /// else the header is ignored: the connection's address counts, for throttling and the
    /// audit log.
    #[arg(long = "trusted-proxy", value_name = "ADDR")]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// A session unused for this many minutes ends.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(i64).range(1..=10_080))]
    pub idle_minutes: i64,
    /// A new sign-in ends the user's other sessions.
    #[arg(long)]
    pub single_session: bool,
    /// Days the audit log keeps an entry.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(i64).range(1..=36_500))]
    pub audit_retention_days: i64,
    /// Also answer SQL clients (psql, Metabase, Superset) over the Postgres wire protocol on
    /// this address, each signed in as a user of the app and answered in its scope.
    #[arg(long, value_name = "HOST:PORT")]
    pub sql_addr: Option<String>,
    /// The SQL endpoint's TLS certificate chain (PEM); with --sql-tls-key.
    #[arg(long, value_name = "FILE", requires_all = ["sql_addr", "sql_tls_key"])]
    pub sql_tls_cert: Option<std::path::PathBuf>,
    /// The private key of --sql-tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["sql_addr", "sql_tls_cert"])]
    pub sql_tls_key: Option<std::path::PathBuf>,
    /// Megabytes of the warehouse's Parquet files kept in memory between questions (0: none):
    /// a question off the rollups reads its columns from memory instead of the disk or bucket.
    #[arg(long, default_value_t = 1024, value_name = "MB")]
    pub file_cache_mb: usize,
    #[command(flatten)]
    pub outbound: crate::alerts_cmd::OutboundArgs,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        let policy = prism_web::store::Policy::default();
        ServeOptions {
            trusted_proxies: Vec::new(),
            idle_minutes: policy.idle_minutes,
            single_session: policy.single_session,
            audit_retention_days: policy.audit_retention_days,
            sql_addr: None,
            sql_tls_cert: None,
            sql_tls_key: None,
            file_cache_mb: 1024,
            outbound: Default::default(),
        }
    }
}

/// The demo's users have published passwords: served on an address other machines reach, it
/// says so and needs `--yes`.
pub fn check_demo_address(addr: &str, yes: bool) -> Result<()> {
    let parsed: SocketAddr = addr
        .parse()
        .with_context(|| format!("--addr {addr:?}: expected HOST:PORT, e.g. 127.0.0.1:8080"))?;
    if parsed.ip().is_loopback() {
        return Ok(());
    }
    eprintln!(
        "warning: the demo's users have the published password \"prism-demo\", and {addr} is reachable from other machines"
    );
    if !yes {
        bail!("refusing to serve the demo on {addr} without --yes (or serve it on 127.0.0.1)");
    }
    Ok(())
}

/// Where the app's own state lives (`--state`): set once, before any command runs.
static STATE_FOLDER: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Sets the folder of the app's own state.
pub fn set_state_folder(folder: PathBuf) {
    let _ = STATE_FOLDER.set(folder);
}

/// The folder of the app's own state for the warehouse at `data` (`--state`, or `data`).
pub fn state_folder(data: &Path) -> PathBuf {
    STATE_FOLDER
        .get()
        .cloned()
        .unwrap_or_else(|| data.to_path_buf())
}

/// The app over the warehouse at `data` (a folder or a bucket), its state in `--state`.
pub fn app_with_engine(
    data: &Path,
    engine: prism_engine::Engine,
    secure_cookies: bool,
) -> Result<AppState> {
    let state = state_folder(data);
    let app = AppState::with_engine(&state, engine, secure_cookies)?;
    Ok(if state == data {
        app
    } else {
        app.with_warehouse(data.to_path_buf())
    })
}

/// [`app_with_engine`] with the web app's own result cache.
pub fn app_state(data: &Path, model: prism_model::Model) -> Result<AppState> {
    app_with_engine(
        data,
        prism_engine::Engine::with_result_cache(model, prism_web::RESULT_CACHE_BYTES),
        false,
    )
}

pub fn serve(
    data: &Path,
    engine: prism_engine::Engine,
    addr: &str,
    secure_cookies: bool,
    options: &ServeOptions,
    runtime: &tokio::runtime::Runtime,
) -> Result<()> {
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("--addr {addr:?}: expected HOST:PORT, e.g. 127.0.0.1:8080"))?;
    let policy = prism_web::store::Policy {
        idle_minutes: options.idle_minutes,
        single_session: options.single_session,
        audit_retention_days: options.audit_retention_days,
    };
    let state = Arc::new(
        app_with_engine(data, engine, secure_cookies)?
            .with_trusted_proxies(options.trusted_proxies.clone())
            .with_policy(policy)?,
    );
    // Pages set up alerts through the delivers crate, which checks and keeps them.
    state.set_alert_maker(Arc::new(prism_delivers::PageAlerts));
    if let Some(sql_addr) = &options.sql_addr {
        let parsed: SocketAddr = sql_addr.parse().with_context(|| {
            format!("--sql-addr {sql_addr:?}: expected HOST:PORT, e.g. 127.0.0.1:5433")
        })?;
        let tls = match (&options.sql_tls_cert, &options.sql_tls_key) {
            (Some(cert), Some(key)) => Some(prism_sql::tls(cert, key)?),
            _ => None,
        };
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(parsed))
            .with_context(|| format!("--sql-addr {sql_addr}"))?;
        say!(
            "SQL clients connect to {sql_addr} (Postgres protocol{}) as users of the app",
            if tls.is_some() { ", TLS" } else { "" }
        );
        let app = state.clone();
        runtime.spawn(async move {
            if let Err(e) = prism_sql::serve(app, listener, tls).await {
                tracing::error!("{e}");
                eprintln!("error: {e}");
            }
        });
    }
    // Alerts: evaluated after each load and on their schedules, their news sent, while the
    // app serves.
    let delivers = Arc::new(prism_delivers::Delivers::new(
        state.clone(),
        options.outbound.outbound()?,
    )?);
    runtime.spawn(delivers.run(std::time::Duration::from_secs(2)));
    say!(
        "Prism is serving {} on http://{addr}/ (Ctrl-C stops it)",
        data.display()
    );
    runtime
        .block_on(prism_web::serve(state, addr))
        .with_context(|| format!("serving on {addr}"))?;
    say!("Prism stopped");
    Ok(())
}

/// The demo's users, one per role, added to an app without users: (name, role, password).
/// A partner manager belongs to the first partner, a channel manager manages the first ten.
pub fn demo_users(data: &Path) -> Result<Vec<(String, String, String)>> {
    const PASSWORD: &str = "prism-demo";
    let state = app_state(data, prism_model::Model::shipped())?;
    let demo: Vec<(String, String, String)> = ["executive", "manager", "partner", "admin"]
        .iter()
        .zip([
            "channel_executive",
            "channel_manager",
            "partner_manager",
            "admin",
        ])
        .map(|(n, r)| (n.to_string(), r.to_string(), PASSWORD.to_string()))
        .collect();
    if state.store.users()?.is_empty() {
        let snapshot = prism_warehouse::Warehouse::open(data)?.snapshot(None)?;
        let partners: Vec<String> = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                let session = snapshot.session().await?;
                let r = state
                    .engine
                    .members(&session, "partner", &prism_engine::Audience::everyone())
                    .await?;
                Ok::<_, anyhow::Error>(
                    r.rows()
                        .iter()
                        .map(|row| row.get("partner.partner_id").exact())
                        .collect(),
                )
            })?;
        let Some(first) = partners.first() else {
            bail!("the demo export has no partners")
        };
        state
            .store
            .add_user("executive", Role::ChannelExecutive, &[], PASSWORD)?;
        state.store.add_user(
            "manager",
            Role::ChannelManager,
            &partners.iter().take(10).cloned().collect::<Vec<_>>(),
            PASSWORD,
        )?;
        state.store.add_user(
            "partner",
            Role::PartnerManager,
            std::slice::from_ref(first),
            PASSWORD,
        )?;
        state.store.add_user("admin", Role::Admin, &[], PASSWORD)?;
    } else if !state.store.users()?.iter().any(|u| u.name == "executive") {
        // Users of one's own: the demo's are not added over them, and their passwords are not ours to print.
        return Ok(Vec::new());
    }
    Ok(demo)
}
