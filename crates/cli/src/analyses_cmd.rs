//! The analysis commands: `pareto`, `scorecard`, `underperformers`, `products`, `potential`,
//! `risk`, `registrations`, `campaigns`, `enablement`, `benchmarks`. Each runs the library function of `prism-analyses` under the scope
//! the flags give, and prints its table, its CSV (a program list, ready for a campaign or a
//! loyalty or improvement program) or its JSON.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use prism_analyses::{Context, Table};
use prism_engine::{Audience, Engine, Period};
use prism_warehouse::Warehouse;
use serde::Serialize;

#[derive(Args, Clone)]
pub struct Common {
    /// FROM..TO, a year, a quarter (2024-Q2) or a month. Default: all loaded data.
    #[arg(long)]
    pub period: Option<String>,
    /// Answer as this partner's user would: its own data, and channel figures only as benchmarks.
    #[arg(long, value_name = "PARTNER_ID")]
    pub as_partner: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: crate::Format,
    /// Read an earlier warehouse version.
    #[arg(long, value_name = "VERSION")]
    pub as_of: Option<u64>,
    /// A model file extending the shipped one.
    #[arg(long)]
    pub model: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum Analysis {
    /// Partner segmentation: which partners bring 80 % of partner revenue (classes A, B, C).
    Pareto {
        #[command(flatten)]
        common: Common,
        /// Segment within each partner type, tier or region: partner.partner_type, partner.tier, partner.region.
        #[arg(long)]
        by: Option<String>,
        /// Only the partners of this class (A, B or C): a program list.
        #[arg(long)]
        class: Option<char>,
    },
    /// Every active partner's attributes as percentile ranks, a weighted score, and the ranking.
    Scorecard {
        #[command(flatten)]
        common: Common,
        /// revenue=..,pipeline=..,win_rate=..,csat=..,responsiveness=.. (defaults 0.35, 0.20, 0.15, 0.20, 0.10).
        #[arg(long)]
        weights: Option<String>,
        /// Only the best N partners: a program list.
        #[arg(long)]
        top: Option<usize>,
    },
    /// Partners in the bottom quartile of the score, and partners whose revenue fell 25 % or more.
    Underperformers {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        weights: Option<String>,
    },
    /// One partner's products: revenue, units, change against the previous period; best and poor sellers.
    Products {
        #[command(flatten)]
        common: Common,
        /// The partner (default: the --as-partner one).
        #[arg(long)]
        partner: Option<String>,
    },
    /// Where a product could sell for a partner: customer segments ranked by expected additional buyers.
    Potential {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        partner: Option<String>,
        #[arg(long)]
        product: String,
        /// INDUSTRY/SIZE_BAND: with --targets, that segment's untapped customers.
        #[arg(long)]
        segment: Option<String>,
        /// Print (or with --out, write) the segment's target list as CSV for a campaign.
        #[arg(long, requires = "segment")]
        targets: bool,
        /// The file the target list is written to.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Plans a campaign of this name from the segment's target list: kept with its own
        /// campaign id, whose target list (with the id, for the CRM) is printed or written to
        /// --out; its page in the web app shows expected against actual as loads bring results.
        #[arg(long, requires = "segment", value_name = "NAME")]
        create_campaign: Option<String>,
    },
    /// High-risk accounts: 3+ open P1/P2 requests, or average CSAT below 3 over the last 5 surveys.
    Risk {
        #[command(flatten)]
        common: Common,
    },
    /// The deal registration funnel: submitted, approved, won; each partner's, and the bottom quartile.
    Registrations {
        #[command(flatten)]
        common: Common,
    },
    /// Funds and campaigns: MDF requested, approved, claimed, paid; sourced pipeline and won; return.
    Campaigns {
        #[command(flatten)]
        common: Common,
        /// Only the campaigns paid for that sourced no opportunity.
        #[arg(long)]
        flagged: bool,
    },
    /// Enablement: certified people by track and level, expiring certifications, enablement gaps.
    Enablement {
        #[command(flatten)]
        common: Common,
        /// Only the partners with enablement gaps: a list for an enablement program.
        #[arg(long)]
        gaps: bool,
    },
    /// A partner against the channel (channel figures over at least 5 partners only).
    Benchmarks {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        partner: Option<String>,
    },
}

/// How an analysis is printed: the format asked, and the model's currency for a table's money.
#[derive(Clone)]
struct Out {
    format: crate::Format,
    currency: String,
}

impl Out {
    fn csv(&self) -> Out {
        Out {
            format: crate::Format::Csv,
            ..self.clone()
        }
    }
}

/// A cell of a table for a person: money grouped with its currency (`$1,234.50`) and counts
/// grouped; a percentage or a percentile rank (0–100, named so in its header) to one decimal.
/// CSV and JSON keep every digit.
fn readable(cell: &prism_analyses::Value, currency: &str) -> String {
    use prism_analyses::Value;
    use prism_model::Format;
    let figure =
        |format| prism_engine::display::figure(&cell.exact(), Some(format), None, currency, false);
    match cell {
        Value::Money(_) => figure(Format::Money),
        Value::Count(_) => figure(Format::Integer),
        _ => cell.readable(),
    }
}

fn output<T: Table + Serialize>(value: &T, out: &Out) -> Result<()> {
    let mut stdout = std::io::stdout();
    match out.format {
        crate::Format::Json => {
            writeln!(
                std::io::stdout().lock(),
                "{}",
                serde_json::to_string_pretty(value)?
            )?;
        }
        crate::Format::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            w.write_record(value.header())?;
            for r in value.rows() {
                w.write_record(r.iter().map(prism_analyses::csv_cell))?;
            }
            w.flush()?;
        }
        crate::Format::Table => {
            for h in value.headline() {
                writeln!(stdout, "{h}")?;
            }
            writeln!(stdout)?;
            let cells = value.rows();
            let header = value.header();
            // Figures right-aligned: a column whose values are all figures.
            let numeric: Vec<bool> = (0..header.len())
                .map(|i| {
                    let mut present = cells.iter().map(|r| &r[i]).filter(|c| !c.is_missing());
                    let first = present.next();
                    first.is_some()
                        && first
                            .into_iter()
                            .chain(present)
                            .all(|c| c.number().is_some())
                })
                .collect();
            let rows: Vec<Vec<String>> = cells
                .iter()
                .map(|r| r.iter().map(|c| readable(c, &out.currency)).collect())
                .collect();
            crate::query_cmd::print_aligned(&header, &rows, &numeric)?;
        }
    }
    Ok(())
}

fn partner_of(given: Option<String>, common: &Common, flag: &str) -> Result<String> {
    match given.or_else(|| common.as_partner.clone()) {
        Some(p) => Ok(p),
        None => bail!("{flag}: which partner? Give --partner ID"),
    }
}

impl Analysis {
    fn common(&self) -> &Common {
        match self {
            Analysis::Pareto { common, .. }
            | Analysis::Scorecard { common, .. }
            | Analysis::Underperformers { common, .. }
            | Analysis::Products { common, .. }
            | Analysis::Potential { common, .. }
            | Analysis::Risk { common }
            | Analysis::Registrations { common }
            | Analysis::Campaigns { common, .. }
            | Analysis::Enablement { common, .. }
            | Analysis::Benchmarks { common, .. } => common,
        }
    }
}

pub fn run(data: &Path, analysis: Analysis, runtime: &tokio::runtime::Runtime) -> Result<()> {
    let common = analysis.common().clone();
    let common = &common;
    let (engine, period, audience, snapshot) = setup(data, common)?;
    runtime.block_on(async {
        let session = snapshot.session().await?;
        let cx = Context {
            engine: &engine,
            session: &session,
            audience,
            period,
        };
        let currency = engine.model.currency.clone();
        let printed = Out {
            format: common.format,
            currency,
        };
        match analysis {
            Analysis::Pareto { by, class, .. } => pareto(&cx, by, class, &printed).await,
            Analysis::Scorecard { weights, top, .. } => {
                let w = weights_of(weights)?;
                let mut s = prism_analyses::scorecard::scorecard(&cx, w).await?;
                s.rows.truncate(top.unwrap_or(usize::MAX));
                output(&s, &printed)
            }
            Analysis::Underperformers { weights, .. } => {
                let w = weights_of(weights)?;
                let u = prism_analyses::underperformers::underperformers(&cx, w).await?;
                output(&u, &printed)
            }
            Analysis::Products { partner, .. } => {
                let p = partner_of(partner, common, "products")?;
                output(
                    &prism_analyses::products::products(&cx, &p).await?,
                    &printed,
                )
            }
            potential @ Analysis::Potential { .. } => {
                potential_command(data, &cx, common, potential, &printed).await
            }
            Analysis::Risk { .. } => output(&prism_analyses::risk::risk(&cx).await?, &printed),
            Analysis::Registrations { .. } => {
                let r = prism_analyses::registrations::registrations(&cx).await?;
                output(&r, &printed)
            }
            Analysis::Campaigns { flagged, .. } => {
                let mut c = prism_analyses::campaigns::campaigns(&cx).await?;
                c.campaigns.retain(|c| !flagged || c.paid_without_pipeline);
                output(&c, &printed)
            }
            Analysis::Enablement { gaps, .. } => {
                let mut e = prism_analyses::enablement::enablement(&cx).await?;
                e.partners.retain(|p| !gaps || !p.gaps.is_empty());
                output(&e, &printed)
            }
            Analysis::Benchmarks { partner, .. } => {
                let p = partner_of(partner, common, "benchmarks")?;
                let b = prism_analyses::benchmarks::benchmarks(&cx, &p).await?;
                output(&b, &printed)
            }
        }
    })
}

/// `potential --create-campaign NAME`: the campaign recorded with its target list, and the list
/// written for the CRM.
async fn plan_campaign(
    data: &Path,
    cx: &Context<'_>,
    p: &str,
    product: &str,
    segment: &str,
    name: &str,
    out: Option<PathBuf>,
) -> Result<()> {
    let name = prism_web::store::campaign_name(name)?.to_string();
    let plan = prism_analyses::planned::plan(cx, p, product, segment).await?;
    let state = crate::web_cmd::app_state(data, prism_model::Model::shipped())?;
    let campaign = state
        .store
        .add_planned_campaign(&name, "prism CLI", &plan)?;
    state
        .store
        .audit("prism CLI", "plan-campaign", &campaign.campaign_id)?;
    let csv = prism_web::planned::targets_csv(&campaign)?;
    match out {
        Some(path) => {
            std::fs::write(&path, csv).with_context(|| format!("writing {}", path.display()))?
        }
        None => std::io::stdout().lock().write_all(&csv)?,
    }
    eprintln!(
        "planned campaign {} for {} untapped customers{}; its page: /campaigns/planned/{}",
        campaign.campaign_id,
        plan.targets.len(),
        plan.expected_buyers
            .map_or(String::new(), |e| format!(", {e:.1} buyers expected")),
        campaign.campaign_id
    );
    Ok(())
}

/// `potential`: the segments where a product could sell for a partner, or (with `--targets`
/// and a segment) the untapped customers of one, printed or written to `out`.
async fn potential(
    cx: &Context<'_>,
    p: &str,
    product: &str,
    targets_of: Option<String>,
    out: Option<PathBuf>,
    printed: &Out,
) -> Result<()> {
    let potential = prism_analyses::potential::potential(cx, p, product).await?;
    let Some(s) = targets_of else {
        return output(&potential, printed);
    };
    let list = potential.targets(cx, &s).await?;
    match out {
        Some(path) => {
            let mut w = csv::Writer::from_path(&path)
                .with_context(|| format!("writing {}", path.display()))?;
            w.write_record(list.header())?;
            for r in list.rows() {
                w.write_record(r.iter().map(prism_analyses::csv_cell))?;
            }
            w.flush()?;
            writeln!(
                std::io::stdout(),
                "wrote {} untapped customers of {s} to {}",
                list.customers.len(),
                path.display()
            )?;
            Ok(())
        }
        None if printed.format == crate::Format::Table => output(&list, &printed.csv()),
        None => output(&list, printed),
    }
}

/// `pareto`: the classes, or only one class's partners (a program list).
async fn pareto(
    cx: &Context<'_>,
    by: Option<String>,
    class: Option<char>,
    printed: &Out,
) -> Result<()> {
    let mut p = prism_analyses::pareto::pareto(cx, by.as_deref()).await?;
    if let Some(c) = class {
        let c = c.to_ascii_uppercase();
        if !matches!(c, 'A' | 'B' | 'C') {
            bail!("--class {c}: the classes are A, B and C");
        }
        p.rows.retain(|r| r.class == c);
    }
    output(&p, printed)
}

/// `--weights`, or the scorecard's default weights.
fn weights_of(weights: Option<String>) -> Result<prism_analyses::scorecard::Weights> {
    Ok(weights
        .as_deref()
        .map(prism_analyses::scorecard::Weights::parse)
        .transpose()?
        .unwrap_or_default())
}

/// What every analysis runs with: the engine over the model, the period, the audience the
/// flags give, and the warehouse version.
fn setup(
    data: &Path,
    common: &Common,
) -> Result<(Engine, Option<Period>, Audience, prism_warehouse::Snapshot)> {
    let model = crate::query_cmd::load_model(data, common.model.as_ref())?;
    let period = common.period.as_deref().map(Period::parse).transpose()?;
    let audience = match &common.as_partner {
        Some(p) => Audience::partner(p.clone())?,
        None => Audience::everyone(),
    };
    let snapshot = Warehouse::open(data)?
        .snapshot(common.as_of)
        .with_context(|| format!("reading the warehouse in {}", data.display()))?;
    Ok((Engine::new(model), period, audience, snapshot))
}

/// `potential`: the segments, a segment's target list, or a campaign planned from it.
async fn potential_command(
    data: &Path,
    cx: &Context<'_>,
    common: &Common,
    analysis: Analysis,
    printed: &Out,
) -> Result<()> {
    let Analysis::Potential {
        partner,
        product,
        segment,
        targets,
        out,
        create_campaign,
        ..
    } = analysis
    else {
        unreachable!("called for potential only")
    };
    let p = partner_of(partner, common, "potential")?;
    if let Some(name) = create_campaign {
        let segment = segment.expect("clap requires --segment");
        return plan_campaign(data, cx, &p, &product, &segment, &name, out).await;
    }
    if out.is_some() && !targets {
        bail!("--out: the target list's file, with --targets or --create-campaign");
    }
    potential(cx, &p, &product, segment.filter(|_| targets), out, printed).await
}
