//! `prism alerts`: alerts set up, listed, tried and run from scripts; and the flags that say
//! how news leaves the app (shared by `prism serve` and `prism alerts run`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use prism_delivers::{
    AlertRequest, Condition, Delivers, ListAnalysis, Outbound, Schedule, Smtp, Watch,
};
use prism_web::AppState;

use crate::query_cmd::{self, QueryArgs};

#[derive(Subcommand)]
pub enum Alerts {
    /// Add an alert: `prism alerts add NAME --owner USER ((--query 'ARGS OF prism query' |
    /// --question ID) (--when 'METRIC OP NUMBER' | --report) | --analysis
    /// underperformers|risk|class_changed [--period P]) [--on load|'CRON'] [--to inbox|email|webhook:URL]`.
    Add {
        name: String,
        /// The user the alert belongs to: it is evaluated in their scope, and tells them.
        #[arg(long)]
        owner: String,
        /// The question, as the flags of `prism query` (`--metrics closed_revenue:change_pct
        /// --by partner.partner_id --period latest-quarter`); a period may be latest-month,
        /// latest-quarter or latest-year, the one holding the newest day loaded.
        #[arg(long, allow_hyphen_values = true, conflicts_with_all = ["analysis", "question"])]
        query: Option<String>,
        /// The question instead: a saved question the owner may open, by its id.
        #[arg(long, conflicts_with = "analysis")]
        question: Option<i64>,
        /// The rows that are news: `METRIC OP NUMBER` with OP one of > >= < <=, the metric's
        /// value as `prism query --format csv` prints it.
        #[arg(long, allow_hyphen_values = true, conflicts_with = "report")]
        when: Option<String>,
        /// A scheduled report: the question's whole answer every time it falls due, in the
        /// message and attached as CSV and .xlsx.
        #[arg(long, conflicts_with = "analysis")]
        report: bool,
        /// A dashboard as a scheduled report (its id on /dashboards): every question of it,
        /// answered in the owner's scope, attached as one workbook with a sheet per question.
        #[arg(long, conflicts_with_all = ["query", "question", "when", "report", "analysis"])]
        dashboard: Option<i64>,
        /// News when this analysis's list is not empty: underperformers, risk, or class_changed
        /// (partners whose Pareto class differs from the previous period's; needs --period).
        #[arg(long)]
        analysis: Option<String>,
        /// The analysis's period (a fixed one, or latest-month|latest-quarter|latest-year).
        #[arg(long, requires = "analysis")]
        period: Option<String>,
        /// `load` (after each load) or a cron expression (`0 7 * * MON`).
        #[arg(long = "on", default_value = "load")]
        on: String,
        /// The IANA time zone a cron expression is read in.
        #[arg(long, default_value = "UTC")]
        time_zone: String,
        /// inbox, email (the owner's address) or webhook:URL.
        #[arg(long, default_value = "inbox")]
        to: String,
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// List the alerts (of one owner), with their last evaluation.
    List {
        #[arg(long)]
        owner: Option<String>,
    },
    /// Remove an alert of an owner.
    Remove {
        name: String,
        #[arg(long)]
        owner: String,
    },
    /// Evaluate an alert now and print what it finds; nothing is recorded or sent.
    Test {
        name: String,
        #[arg(long)]
        owner: String,
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Evaluate the due alerts once, send what is due, and exit (for the system's cron).
    Run {
        #[command(flatten)]
        outbound: OutboundArgs,
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// The delivery log, newest first.
    Log {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

/// How news leaves the app.
#[derive(clap::Args, Clone, Debug)]
pub struct OutboundArgs {
    /// The SMTP server alerts are mailed through: smtp://HOST:PORT or smtps://HOST:PORT.
    #[arg(long, value_name = "URL")]
    pub smtp: Option<String>,
    /// The sender's address.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "prism@localhost",
        requires = "smtp"
    )]
    pub smtp_from: String,
    #[arg(long, value_name = "USER", requires_all = ["smtp", "smtp_password_file"])]
    pub smtp_user: Option<String>,
    /// A file whose first line is the SMTP password (never on the command line).
    #[arg(long, value_name = "FILE", requires = "smtp_user")]
    pub smtp_password_file: Option<PathBuf>,
    /// Upgrade smtp:// with STARTTLS, refusing a server that cannot.
    #[arg(long, requires = "smtp")]
    pub smtp_starttls: bool,
    /// Seconds a webhook or SMTP server has to answer.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub delivery_timeout: u64,
    /// Seconds before the first retry of a failed delivery; each next one waits twice as long.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub delivery_retry: u64,
    /// The app's address, put at the end of each message.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
}

impl Default for OutboundArgs {
    fn default() -> OutboundArgs {
        let d = Outbound::default();
        OutboundArgs {
            smtp: None,
            smtp_from: "prism@localhost".into(),
            smtp_user: None,
            smtp_password_file: None,
            smtp_starttls: false,
            delivery_timeout: d.timeout.as_secs(),
            delivery_retry: d.retry_after.as_secs(),
            public_url: None,
        }
    }
}

impl OutboundArgs {
    pub fn outbound(&self) -> Result<Outbound> {
        let password = match &self.smtp_password_file {
            Some(f) => Some(
                std::fs::read_to_string(f)
                    .with_context(|| format!("--smtp-password-file {}", f.display()))?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            ),
            None => None,
        };
        Ok(Outbound {
            smtp: self.smtp.as_ref().map(|url| Smtp {
                url: url.clone(),
                from: self.smtp_from.clone(),
                user: self.smtp_user.clone(),
                password,
                starttls: self.smtp_starttls,
            }),
            timeout: Duration::from_secs(self.delivery_timeout),
            retry_after: Duration::from_secs(self.delivery_retry),
            link: self.public_url.clone(),
            ..Outbound::default()
        })
    }
}

/// `--query`'s text read as `prism query`'s flags.
#[derive(Parser)]
#[command(name = "--query", no_binary_name = true)]
struct QueryLine {
    #[command(flatten)]
    args: QueryArgs,
}

/// Splits a command line as a shell would: words apart on blanks, '…' and "…" kept whole.
fn words(text: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_default().push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_default();
            }
            (None, c) if c.is_whitespace() => out.extend(word.take()),
            (None, c) => word.get_or_insert_default().push(c),
        }
    }
    if quote.is_some() {
        bail!("--query {text:?}: a quote is not closed");
    }
    out.extend(word);
    Ok(out)
}

/// The question of `--query` (`prism query`'s flags) or of `--question ID` (a saved question
/// the owner may open).
fn question_of(
    state: &AppState,
    owner: &str,
    query: Option<String>,
    saved: Option<i64>,
) -> Result<Option<prism_engine::api::QueryRequest>> {
    if let Some(id) = saved {
        let user = state
            .store
            .user(owner)?
            .with_context(|| format!("--owner: no user {owner:?}"))?;
        let saved = state
            .store
            .questions_for(&user)?
            .into_iter()
            .find(|q| q.id == id)
            .with_context(|| format!("--question {id}: no saved question {owner} may open"))?;
        let request =
            prism_web::explore::Question::from_query_string(Some(&saved.question)).request()?;
        return Ok(Some(request));
    }
    let Some(q) = query else { return Ok(None) };
    let line = QueryLine::try_parse_from(words(&q)?)
        .map_err(|e| anyhow::anyhow!("--query: {}", e.render().to_string().trim()))?;
    let a = line.args;
    if a.as_partner.is_some() || a.benchmark || a.as_of.is_some() {
        bail!(
            "--query: an alert is asked in its owner's scope over the newest data: --as-partner, --benchmark and --as-of do not apply"
        );
    }
    Ok(Some(prism_engine::api::QueryRequest {
        api_version: prism_engine::api::API_VERSION,
        metrics: a.metrics,
        by: a.by,
        filters: a.filter,
        period: a.period,
        order: a.order,
        limit: a.limit,
    }))
}

fn watch(
    question: Option<prism_engine::api::QueryRequest>,
    when: Option<String>,
    report: bool,
    analysis: Option<String>,
    period: Option<String>,
) -> Result<Watch> {
    match (question, when, report, analysis) {
        (Some(q), Some(w), false, None) => Ok(Watch::question(q, Condition::parse(&w)?)),
        (Some(q), None, true, None) => Ok(Watch::Report { question: q }),
        (None, None, false, Some(a)) => Ok(Watch::List {
            analysis: ListAnalysis::parse(&a)?,
            period,
        }),
        (Some(_), None, false, None) => {
            bail!("a question needs --when (an alert) or --report (a scheduled report)")
        }
        _ => bail!("give --query or --question with --when or --report, or --analysis"),
    }
}

pub fn run(data: &Path, command: Alerts, runtime: &tokio::runtime::Runtime) -> Result<()> {
    match command {
        Alerts::Add {
            name,
            owner,
            query,
            question,
            when,
            report,
            analysis,
            dashboard,
            period,
            on,
            time_zone,
            to,
            model,
        } => {
            let state = app(data, model.as_ref())?;
            let asked = question_of(&state, &owner, query, question)?;
            let request = AlertRequest {
                watch: match dashboard {
                    Some(dashboard) => Watch::Dashboard { dashboard },
                    None => watch(asked, when, report, analysis, period)?,
                },
                owner,
                name,
                schedule: Schedule::parse(&on, &time_zone)?,
                channel: to,
            };
            prism_delivers::add_alert(&state.store, &state.engine, &request)?;
            state
                .store
                .audit(&request.owner, "alert added", &request.name)?;
            say!(
                "added alert {:?} of {}: {} ({}), to {}",
                request.name,
                request.owner,
                request.watch.describe(),
                match request.schedule.expression().as_str() {
                    "load" => "after each load".to_string(),
                    cron => format!("at {cron} {}", request.schedule.time_zone()),
                },
                request.channel
            );
        }
        Alerts::List { owner } => list(data, owner.as_deref())?,
        Alerts::Remove { name, owner } => {
            let state = app(data, None)?;
            state.store.remove_alert(&owner, &name)?;
            state.store.audit(&owner, "alert removed", &name)?;
            say!("removed alert {name:?} of {owner}");
        }
        Alerts::Test { name, owner, model } => test(data, &name, &owner, model.as_ref(), runtime)?,
        Alerts::Run { outbound, model } => run_due(data, &outbound, model.as_ref(), runtime)?,
        Alerts::Log { limit } => delivery_log(data, limit)?,
    }
    Ok(())
}

/// `alerts test`: the alert evaluated now, in its owner's scope, with nothing sent.
fn test(
    data: &Path,
    name: &str,
    owner: &str,
    model: Option<&PathBuf>,
    runtime: &tokio::runtime::Runtime,
) -> Result<()> {
    let state = Arc::new(app(data, model)?);
    let alert = state
        .store
        .alerts(Some(owner))?
        .into_iter()
        .find(|a| a.name == name)
        .with_context(|| format!("{owner} has no alert named {name:?}"))?;
    let delivers = Delivers::new(state, Outbound::default())?;
    let (version, finding) = runtime.block_on(delivers.test(&alert))?;
    say!(
        "{} over warehouse version {version}, period {}: {}",
        if finding.holds { "holds" } else { "clear" },
        finding.period.as_deref().unwrap_or("all loaded data"),
        prism_delivers::watch_of(&alert)?.describe()
    );
    for row in &finding.rows {
        say!("  {}: {}", row.label, row.figure);
    }
    Ok(())
}

/// `alerts run`: every due alert evaluated once, its news queued and delivered.
fn run_due(
    data: &Path,
    outbound: &OutboundArgs,
    model: Option<&PathBuf>,
    runtime: &tokio::runtime::Runtime,
) -> Result<()> {
    let state = Arc::new(app(data, model)?);
    let delivers = Delivers::new(state, outbound.outbound()?)?;
    let pass = runtime.block_on(delivers.pass(chrono::Utc::now()))?;
    for (owner, name, outcome) in &pass.evaluated {
        say!("{owner} / {name}: {outcome}");
    }
    say!(
        "{} evaluated, {} news queued, {} of {} deliveries sent",
        pass.evaluated.len(),
        pass.queued,
        pass.sent,
        pass.attempted
    );
    Ok(())
}

/// `alerts list`: every alert (or one owner's), with its state and last outcome.
fn list(data: &Path, owner: Option<&str>) -> Result<()> {
    let state = app(data, None)?;
    let header: Vec<String> = [
        "owner",
        "name",
        "watches",
        "on",
        "to",
        "firing",
        "last outcome",
    ]
    .map(String::from)
    .to_vec();
    let rows: Vec<Vec<String>> = state
        .store
        .alerts(owner)?
        .into_iter()
        .map(|a| {
            vec![
                a.owner.clone(),
                a.name.clone(),
                prism_delivers::watch_of(&a)
                    .map(|w| w.describe())
                    .unwrap_or_else(|e| e.to_string()),
                a.schedule.clone(),
                a.channel.clone(),
                if a.firing { "yes" } else { "no" }.to_string(),
                a.outcome.clone(),
            ]
        })
        .collect();
    query_cmd::print_aligned(&header, &rows, &[false; 7])?;
    Ok(())
}

/// `alerts log`: the latest deliveries, with their status and reason.
fn delivery_log(data: &Path, limit: usize) -> Result<()> {
    let state = app(data, None)?;
    let header: Vec<String> = ["id", "owner", "alert", "to", "status", "attempts", "reason"]
        .map(String::from)
        .to_vec();
    let rows: Vec<Vec<String>> = state
        .store
        .deliveries(None, limit)?
        .into_iter()
        .map(|d| {
            vec![
                d.id.to_string(),
                d.owner,
                d.alert,
                d.channel,
                d.status,
                d.attempts.to_string(),
                d.reason,
            ]
        })
        .collect();
    query_cmd::print_aligned(
        &header,
        &rows,
        &[true, false, false, false, false, true, false],
    )?;
    Ok(())
}

fn app(data: &Path, model: Option<&PathBuf>) -> Result<AppState> {
    let model = query_cmd::load_model(data, model)?;
    crate::web_cmd::app_state(data, model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_line_splits_as_a_shell_would() {
        assert_eq!(
            words(r#"--metrics closed_revenue --filter 'partner.region=North America' --period "2026-Q3""#).unwrap(),
            ["--metrics", "closed_revenue", "--filter", "partner.region=North America", "--period", "2026-Q3"]
        );
        assert!(words("--filter 'open").is_err());
    }
}
