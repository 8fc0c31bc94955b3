//! `prism query`, `prism explain` and `prism model`: the query flags, and the three output
//! formats of a result.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use prism_engine::{Audience, Engine, Query, QueryResult};
use prism_model::{MetricKind, Model};

use crate::Format;

#[derive(Args, Clone)]
pub struct QueryArgs {
    /// Metrics to compute, comma-separated (`prism model` lists them).
    #[arg(long, value_delimiter = ',', required = true)]
    pub metrics: Vec<String>,
    /// Dimensions to cut by, comma-separated: partner.tier, time.quarter, ...
    #[arg(long, value_delimiter = ',')]
    pub by: Vec<String>,
    /// D=V, D=V1|V2, D!=V, D>=V, D<=V or D=FROM..TO; repeatable.
    #[arg(long)]
    pub filter: Vec<String>,
    /// FROM..TO (inclusive dates), or a year, quarter (2024-Q2) or month (2024-05). Default: all loaded data.
    #[arg(long)]
    pub period: Option<String>,
    /// NAME or NAME:asc or NAME:desc; repeatable.
    #[arg(long)]
    pub order: Vec<String>,
    #[arg(long)]
    pub limit: Option<usize>,
    /// Answer as this partner's user would see it: its own rows only.
    #[arg(long, value_name = "PARTNER_ID")]
    pub as_partner: Option<String>,
    /// Channel benchmark: the figures over all partners' rows (no direct sales), each withheld
    /// where fewer than 5 partners contribute; the only cross-partner answer for a partner user.
    #[arg(long)]
    pub benchmark: bool,
    /// Read an earlier warehouse version.
    #[arg(long, value_name = "VERSION")]
    pub as_of: Option<u64>,
    /// Read the base tables only, never a rollup (the answer is the same; the time is not).
    #[arg(long)]
    pub no_rollups: bool,
}

impl QueryArgs {
    /// The engine these flags ask for.
    pub fn engine(&self, model: Model, cache: bool) -> Engine {
        let engine = if cache {
            Engine::with_result_cache(model, prism_web::RESULT_CACHE_BYTES)
        } else {
            Engine::new(model)
        };
        if self.no_rollups {
            engine.without_rollups()
        } else {
            engine
        }
    }
}

impl QueryArgs {
    /// The query and the audience it is asked for.
    pub fn query(&self) -> Result<(Query, Audience)> {
        // The same parsing as the JSON API's: one syntax, one parser.
        let query = prism_engine::api::QueryRequest {
            api_version: prism_engine::api::API_VERSION,
            metrics: self.metrics.clone(),
            by: self.by.clone(),
            filters: self.filter.clone(),
            period: self.period.clone(),
            order: self.order.clone(),
            limit: self.limit,
        }
        .to_query()?;
        let audience = match (&self.as_partner, self.benchmark) {
            (Some(_), true) => {
                anyhow::bail!(
                    "--benchmark is every partner's figures together, --as-partner one partner's own: give one"
                )
            }
            (Some(p), false) => Audience::partner(p.clone())?,
            (None, true) => Audience::channel_benchmark(),
            (None, false) => Audience::everyone(),
        };
        Ok((query, audience))
    }
}

/// The shipped model, extended by `--model FILE` or by `model.yaml` in the data folder (in the
/// state folder when the data is a bucket: the model is the serving machine's configuration).
pub fn load_model(data: &Path, model: Option<&PathBuf>) -> Result<Model> {
    let folder = if prism_warehouse::is_remote(data) {
        crate::web_cmd::state_folder(data)
    } else {
        data.to_path_buf()
    };
    let file = model
        .cloned()
        .or_else(|| Some(folder.join("model.yaml")).filter(|p| p.exists()));
    match file {
        None => Ok(Model::shipped()),
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading the model {}", path.display()))?;
            let model = Model::extended(&path.display().to_string(), &text)?;
            // Checked against the tables now, so that a user's mistake is a model error with
            // its line rather than a failure of the first query that uses it.
            prism_engine::check_model(&model)?;
            Ok(model)
        }
    }
}

/// What a result's columns are headed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Headers {
    /// The names a query takes: `partner.tier`, `closed_revenue:pct_of_total`.
    Names,
    /// The model's labels: `Tier`, `Closed revenue (share of total)`.
    Labels,
}

/// Prints a result: CSV and JSON with every digit (JSON always by name), a table for a person
/// with each figure by its kind (money grouped with its currency, rates as percentages, hours
/// with their unit, a missing figure as a dash).
pub fn print(
    result: &QueryResult,
    format: crate::Format,
    headers: Headers,
    model: &Model,
) -> Result<()> {
    let header: Vec<String> = result
        .columns
        .iter()
        .map(|c| match headers {
            Headers::Names => c.name.clone(),
            Headers::Labels => model.label(&c.name),
        })
        .collect();
    let rows = result.formatted_rows();
    match format {
        crate::Format::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            w.write_record(&header)?;
            for r in &rows {
                w.write_record(
                    r.iter()
                        .map(|c| prism_analyses::spreadsheet_safe(c).into_owned()),
                )?;
            }
            w.flush()?;
        }
        crate::Format::Json => {
            let text = serde_json::to_string_pretty(
                &prism_engine::api::QueryResponse::from_result(result),
            )?;
            writeln!(std::io::stdout().lock(), "{text}")?;
        }
        crate::Format::Table => {
            let kinds: Vec<_> = result
                .columns
                .iter()
                .map(|c| model.column_format(&c.name))
                .collect();
            let readable: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    r.iter()
                        .zip(&kinds)
                        .map(|(cell, kind)| match kind {
                            Some((format, unit)) => prism_engine::display::figure(
                                cell,
                                Some(*format),
                                unit.as_deref(),
                                &model.currency,
                                false,
                            ),
                            None => cell.clone(),
                        })
                        .collect()
                })
                .collect();
            let numeric: Vec<bool> = result.columns.iter().map(|c| c.format.is_some()).collect();
            print_aligned(&header, &readable, &numeric)?;
        }
    }
    Ok(())
}

/// Prints what a query uses and each fact's aggregation as SQL; with a session, which rollup
/// answers each aggregation and why the others do not.
pub fn explain(
    engine: &Engine,
    ctx: Option<&prism_engine::Session>,
    query: &Query,
    audience: &Audience,
) -> Result<prism_engine::Compiled> {
    let mut stdout = std::io::stdout();
    let compiled = match ctx {
        Some(ctx) => engine.compile_in(ctx, query, audience)?,
        None => engine.compile(query, audience)?,
    };
    writeln!(stdout, "metrics:")?;
    for m in &compiled.metrics {
        let definition = match &m.kind {
            MetricKind::Base { .. } => String::new(),
            MetricKind::Ratio {
                numerator,
                denominator,
                ..
            } => format!(" [ratio of {numerator} / {denominator}]"),
        };
        writeln!(
            stdout,
            "  {} ({}): {}{definition}",
            m.name, m.fact, m.description
        )?;
    }
    writeln!(stdout, "audience: {audience}")?;
    if ctx.is_none() {
        writeln!(
            stdout,
            "rollup: none (the warehouse is empty: nothing is built yet)"
        )?;
    }
    for c in &compiled.rollups {
        match (&c.rollup, &c.reason) {
            (Some(r), _) => writeln!(stdout, "rollup: {r} (for {})", c.fact)?,
            (None, reason) => writeln!(
                stdout,
                "rollup: none (for {}): {}",
                c.fact,
                reason.as_deref().unwrap_or("")
            )?,
        }
        for (name, why) in &c.passed_over {
            writeln!(stdout, "  not {name}: {why}")?;
        }
    }
    match compiled.statement {
        prism_engine::Statement::Sql => writeln!(stdout, "sql:\n{}", compiled.sql)?,
        prism_engine::Statement::Question(_) => writeln!(
            stdout,
            "aggregations (the steps of each plan):\n{}",
            compiled.sql
        )?,
    }
    Ok(compiled)
}

/// What `prism query` is told.
#[derive(Args)]
pub struct QueryCommand {
    #[command(flatten)]
    args: QueryArgs,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Column headings: the names a query takes (`closed_revenue`), or the model's labels
    /// (`Closed revenue`) for a file people will read.
    #[arg(long, value_enum, default_value = "names")]
    headers: Headers,
    /// A model file extending the shipped one (default: model.yaml in the data folder, if any).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Run the query N times and print the first and median times (to stderr).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Keep no answers: every repeat runs the query again.
    #[arg(long)]
    no_cache: bool,
}

/// Answers a query and prints it; with `--repeat`, times it.
pub fn query(data: &Path, c: QueryCommand) -> Result<()> {
    let model = load_model(data, c.model.as_ref())?;
    let (query, audience) = c.args.query()?;
    let snapshot = prism_warehouse::Warehouse::open(data)?.snapshot(c.args.as_of)?;
    let engine = c.args.engine(model, !c.no_cache);
    let mut times = Vec::new();
    let result = crate::runtime()?.block_on(async {
        let ctx = snapshot.session().await?;
        let mut result = None;
        for _ in 0..c.repeat.max(1) {
            let started = std::time::Instant::now();
            result = Some(engine.run(&ctx, &query, &audience).await?);
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        Ok::<_, anyhow::Error>(result.expect("at least one run"))
    })?;
    if c.repeat > 1 {
        eprintln!(
            "{} runs: first {:.1} ms, median {:.1} ms ({}, {})",
            times.len(),
            times[0],
            crate::bench::median(&times),
            if c.args.no_rollups {
                "no rollups"
            } else {
                "rollups"
            },
            if c.no_cache {
                "no result cache"
            } else {
                "result cache"
            }
        );
    }
    print(&result, c.format, c.headers, &engine.model)?;
    if c.args.benchmark {
        let withheld = result.rows().iter().any(|r| {
            r.count("benchmark_partners")
                .is_some_and(|n| n < prism_engine::BENCHMARK_MIN_PARTNERS)
        });
        if withheld {
            eprintln!(
                "note: figures over fewer than {} partners are withheld",
                prism_engine::BENCHMARK_MIN_PARTNERS
            );
        }
    }
    Ok(())
}

/// What `prism explain` is told.
#[derive(Args)]
pub struct ExplainCommand {
    #[command(flatten)]
    args: QueryArgs,
    #[arg(long)]
    model: Option<PathBuf>,
    /// Also run the query and print DataFusion's plan with the time and rows of each step.
    #[arg(long)]
    analyze: bool,
}

/// Explains a query (over the warehouse when one is loaded); with `--analyze`, runs it and
/// prints the executed plan.
pub fn explain_command(data: &Path, c: ExplainCommand) -> Result<()> {
    let mut stdout = std::io::stdout();
    let model = load_model(data, c.model.as_ref())?;
    let (query, audience) = c.args.query()?;
    let engine = c.args.engine(model, false);
    let snapshot = match prism_warehouse::Warehouse::open(data)?.snapshot(c.args.as_of) {
        Ok(s) => Some(s),
        Err(prism_warehouse::WarehouseError::Empty) if !c.analyze => None,
        Err(e) => return Err(e.into()),
    };
    crate::runtime()?.block_on(async {
        let ctx = match &snapshot {
            Some(s) => Some(s.session().await?),
            None => None,
        };
        let compiled = explain(&engine, ctx.as_deref(), &query, &audience)?;
        if let Some(ctx) = &ctx {
            let (plan, sql) = engine.logical_plan_of(ctx, &compiled).await?;
            writeln!(stdout, "plan:\n{plan}")?;
            if let Some(sql) = sql {
                writeln!(stdout, "sql:\n{sql}")?;
            }
        }
        if c.analyze
            && let Some(ctx) = &ctx
        {
            let batches = engine.explain_plan(ctx, &compiled, true).await?;
            writeln!(
                stdout,
                "plan (executed):\n{}",
                arrow::util::pretty::pretty_format_batches(&batches)?
            )?;
        }
        Ok::<_, anyhow::Error>(())
    })
}

pub fn print_model(model: &Model, all: bool) -> Result<()> {
    let mut stdout = std::io::stdout();
    writeln!(stdout, "metrics:")?;
    for m in model.metrics.values().filter(|m| all || !m.hidden) {
        writeln!(stdout, "  {:<26} {:<22} {}", m.name, m.fact, m.description)?;
    }
    writeln!(stdout, "\ndimensions:")?;
    for d in model.dimensions.values() {
        for a in d.attributes.values() {
            writeln!(
                stdout,
                "  {:<34} {}",
                format!("{}.{}", d.name, a.name),
                a.description
            )?;
        }
    }
    for f in model.facts.values() {
        for a in f.attributes.values() {
            writeln!(
                stdout,
                "  {:<34} {} (with {} metrics only)",
                a.name, a.description, f.name
            )?;
        }
    }
    for g in prism_model::TIME_GRAINS {
        writeln!(
            stdout,
            "  {:<34} each fact's own date: {}",
            format!("time.{g}"),
            model
                .facts
                .values()
                .map(|f| format!("{}.{}", f.name, f.time))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    if model.rollups.is_empty() {
        return Ok(());
    }
    writeln!(
        stdout,
        "\nrollups (built by every load; `prism explain` says which one answers a query):"
    )?;
    // With --all, how each is built: from the base tables or from a finer rollup of the same load.
    let builds = prism_engine::Engine::new(model.clone()).rollup_builds();
    for b in &builds {
        match model.rollups.get(&b.name) {
            Some(r) => print_rollup(&mut stdout, r)?,
            // Built by every load for an analysis, not declared by the model.
            None => writeln!(
                stdout,
                "  {:<34} the high-risk accounts of the brand owner and of each partner, over all loaded data",
                b.name
            )?,
        }
        if all {
            writeln!(
                stdout,
                "  {:<34} table {}, built from {}",
                "",
                b.table,
                b.from
                    .as_ref()
                    .map_or_else(|| b.reads.join(", "), |f| format!("rollup {f}"))
            )?;
            writeln!(stdout, "  {:<34} {}", "", b.sql)?;
        }
    }
    Ok(())
}

/// A model rollup as `prism model` lists it: its description, what it groups and what it holds.
fn print_rollup(stdout: &mut std::io::Stdout, r: &prism_model::Rollup) -> Result<()> {
    writeln!(stdout, "  {:<34} {}", r.name, r.description)?;
    writeln!(
        stdout,
        "  {:<34} {} by {}{}",
        "",
        r.fact,
        r.dimensions.join(", "),
        r.grain
            .as_ref()
            .map_or(", all time".to_string(), |g| format!(", {g}"))
    )?;
    writeln!(
        stdout,
        "  {:<34} holds {}{}",
        "",
        r.metrics.join(", "),
        if r.channel {
            "; partners' rows only, with their number (channel benchmarks)"
        } else {
            ""
        }
    )?;
    Ok(())
}

/// A table for a person: columns padded to their widest cell, numbers aligned right, and the
/// number of rows at the end.
pub fn print_aligned(header: &[String], rows: &[Vec<String>], numeric: &[bool]) -> Result<()> {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = " ".repeat(widths[i] - c.chars().count());
                if numeric[i] {
                    format!("{pad}{c}")
                } else {
                    format!("{c}{pad}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", line(header))?;
    writeln!(
        out,
        "{}",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("  ")
    )?;
    for r in rows {
        writeln!(out, "{}", line(r))?;
    }
    writeln!(
        out,
        "({} row{})",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    )?;
    Ok(())
}
