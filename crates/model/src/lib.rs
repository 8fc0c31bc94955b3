//! The semantic model of the business (`model/prm.yaml`, docs/metrics.md): the conformed
//! dimensions and their attributes, each fact with its time column and the dimensions it
//! reaches, and every metric with one exact definition.
//!
//! A model is parsed and validated as a whole: every problem is reported at once, each with its
//! line and, for a misspelt name, the nearest valid one. Once a `Model` exists it is consistent:
//! every metric's fact exists, every ratio's parts are metrics of the same fact.
//!
//! This crate knows nothing of DataFusion, the warehouse or HTTP: expressions are SQL text over
//! the fact's own columns, handed to the engine as they are.

#![warn(missing_docs)]

use std::collections::BTreeMap;

use serde::Deserialize;

mod expression;
pub use expression::Expression;

/// The model that ships with Prism.
pub const SHIPPED: &str = include_str!("../../../model/prm.yaml");
/// The shipped model's file name, as messages name it.
pub const SHIPPED_NAME: &str = "prm.yaml";

/// The time grains every fact's time column can be cut by, finest first.
pub const TIME_GRAINS: &[&str] = &["day", "week", "month", "quarter", "year"];

/// A time grain: the calendar unit a fact's time column is cut by (`time.quarter`) or a rollup's
/// rows are kept at. Ordered from the finest to the coarsest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Grain {
    /// One calendar day.
    Day,
    /// An ISO week, Monday to Sunday.
    Week,
    /// A calendar month.
    Month,
    /// A calendar quarter.
    Quarter,
    /// A calendar year.
    Year,
}

impl Grain {
    /// Every grain, finest first.
    pub const ALL: [Grain; 5] = [
        Grain::Day,
        Grain::Week,
        Grain::Month,
        Grain::Quarter,
        Grain::Year,
    ];

    /// The grain of a name (`quarter`), if it is one.
    pub fn parse(name: &str) -> Option<Grain> {
        Grain::ALL.into_iter().find(|g| g.name() == name)
    }

    /// Its name, as in `time.quarter`.
    pub fn name(self) -> &'static str {
        match self {
            Grain::Day => "day",
            Grain::Week => "week",
            Grain::Month => "month",
            Grain::Quarter => "quarter",
            Grain::Year => "year",
        }
    }

    /// How many months one step of it is, for the grains made of whole months.
    pub fn months(self) -> Option<u32> {
        match self {
            Grain::Day | Grain::Week => None,
            Grain::Month => Some(1),
            Grain::Quarter => Some(3),
            Grain::Year => Some(12),
        }
    }

    /// Whether rows at this grain add up to rows at `coarser` (a week does not make a month).
    pub fn composes_into(self, coarser: Grain) -> bool {
        match (self, coarser) {
            (Grain::Day, _) => true,
            (Grain::Week, c) => c == Grain::Week,
            (_, Grain::Week | Grain::Day) => false,
            (fine, coarse) => fine <= coarse,
        }
    }
}

impl std::fmt::Display for Grain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The business model: every figure Prism shows is one of its metrics, cut by its dimensions.
#[derive(Clone, Debug)]
pub struct Model {
    /// The file it was read from: the user's own when it extends the shipped model.
    pub file: String,
    /// The currency of every money figure, an ISO 4217 code (`USD`, `EUR`).
    pub currency: String,
    /// The conformed dimensions, by name (`partner`).
    pub dimensions: BTreeMap<String, Dimension>,
    /// The facts, by name (`orders`).
    pub facts: BTreeMap<String, Fact>,
    /// The metrics, by name (`closed_revenue`).
    pub metrics: BTreeMap<String, Metric>,
    /// The rollups every load builds, by name.
    pub rollups: BTreeMap<String, Rollup>,
}

/// A rollup: a fact's metrics aggregated ahead of time by some dimensions and a time grain,
/// built by every load with the base tables. Queries it can answer read it instead of the fact.
#[derive(Clone, Debug, PartialEq)]
pub struct Rollup {
    /// Its name in the model.
    pub name: String,
    /// The fact it aggregates.
    pub fact: String,
    /// Dimension attributes (`partner.partner_id`, `customer.industry`) and attributes of the
    /// fact (`opportunity.stage`). A dimension's key brings every attribute of the dimension.
    pub dimensions: Vec<String>,
    /// The time grain of its rows; `None` holds all time in one row per group.
    pub grain: Option<Grain>,
    /// The base metrics it holds, ratios given in the file expanded into their parts.
    pub metrics: Vec<String>,
    /// Built over partners' rows only (never direct sales), each row with the number of
    /// partners in it: it answers channel benchmarks at exactly its grain, and nothing else.
    pub channel: bool,
    /// What it is for.
    pub description: String,
}

/// A conformed dimension: a table of members that facts reach by its key.
#[derive(Clone, Debug)]
pub struct Dimension {
    /// Its name (`partner`).
    pub name: String,
    /// The warehouse table of its members.
    pub table: String,
    /// The column facts join on.
    pub key: String,
    /// Its attributes, by name (`tier`).
    pub attributes: BTreeMap<String, Attribute>,
    /// The member that a fact row without a key belongs to, as people read it: an opportunity
    /// that no campaign sourced is the campaign "(none)". `None`: such rows show no value.
    pub absent: Option<String>,
    /// The column of the dimension's table naming the partner that owns a member (the partner
    /// that runs a campaign): a partner user sees the members it owns, not only those its rows
    /// reach.
    pub partner: Option<String>,
}

/// An attribute of a dimension: a column of its table, or an expression over them.
#[derive(Clone, Debug)]
pub struct Attribute {
    /// Its name (`tier`).
    pub name: String,
    /// What people read; the name with spaces when the model gives none.
    pub label: Option<String>,
    /// What people read about it.
    pub description: String,
    /// SQL over the dimension table's columns; `None` is the column of the same name.
    pub expression: Option<Expression>,
    /// Its line in the model file, when known.
    pub line: Option<usize>,
}

/// A fact: a table of events (order lines, opportunities) that metrics aggregate.
#[derive(Clone, Debug)]
pub struct Fact {
    /// Its name (`orders`).
    pub name: String,
    /// The warehouse table of its rows.
    pub table: String,
    /// The one time column that the time dimension and every period filter refer to.
    pub time: String,
    /// The dimensions its rows have a key of.
    pub reaches: Vec<String>,
    /// What it holds.
    pub description: String,
    /// Its subject area as people name it ("Sales" for orders, "Pipeline" for opportunities):
    /// the group of its metrics on Explore, and, in lower case with `_` for spaces, its table
    /// on the SQL endpoint (`sales`). The fact's name when the model gives none.
    pub subject: String,
    /// Degenerate dimensions (`opportunity.stage`): attributes of the fact itself.
    pub attributes: BTreeMap<String, FactAttribute>,
    /// Columns looked up in another table by a key of the fact's rows (a deal registration's
    /// opportunity's current stage), which the fact's metrics read as their own columns.
    pub lookups: BTreeMap<String, Lookup>,
}

/// A column of another table that a fact's rows read through a key they hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Lookup {
    /// The name the fact's expressions use.
    pub name: String,
    /// The table looked up.
    pub table: String,
    /// The key: a column of the fact and of the table looked up, of the same name.
    pub key: String,
    /// The column of the table looked up.
    pub column: String,
    /// The fact is a partner's (it reaches the partner dimension): a row looks up only a row
    /// of its own partner, or one of no partner (the brand owner's own), never another
    /// partner's — a partner's registration that names another partner's opportunity must not
    /// tell its user that opportunity's stage.
    pub same_partner: bool,
}

impl Fact {
    /// The subject area's table name on the SQL endpoint: `sales`, `deal_registrations`.
    pub fn subject_table(&self) -> String {
        self.subject
            .trim()
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    }

    /// What a query reads the fact's rows from: its table, or when it has lookups its table
    /// with those columns joined on (every row kept, a lookup without a match null).
    pub fn source_sql(&self) -> String {
        if self.lookups.is_empty() {
            return self.table.clone();
        }
        let mut select = vec!["t.*".to_string()];
        let mut joins = String::new();
        for (i, l) in self.lookups.values().enumerate() {
            select.push(format!("l{i}.{} AS {}", l.column, l.name));
            joins.push_str(&format!(
                " LEFT JOIN {table} l{i} ON t.{key} = l{i}.{key}",
                table = l.table,
                key = l.key
            ));
            if l.same_partner {
                joins.push_str(&format!(
                    " AND (l{i}.partner_id IS NULL OR l{i}.partner_id = t.partner_id)"
                ));
            }
        }
        format!(
            "(SELECT {} FROM {} t{joins})",
            select.join(", "),
            self.table
        )
    }
}

/// An attribute of a fact itself (`opportunity.stage`).
#[derive(Clone, Debug)]
pub struct FactAttribute {
    /// Its name, with the fact's prefix (`opportunity.stage`).
    pub name: String,
    /// The fact's column.
    pub column: String,
    /// What people read; the name with spaces when the model gives none.
    pub label: Option<String>,
    /// What people read about it.
    pub description: String,
}

/// How a base metric aggregates its fact's rows.
#[derive(Clone, Debug, PartialEq)]
pub enum Aggregate {
    /// `sum: EXPRESSION`.
    Sum(Expression),
    /// `count: "*"`: the rows.
    CountRows,
    /// `count: EXPRESSION`: the rows where it is not null.
    Count(Expression),
    /// `count_distinct: EXPRESSION`.
    CountDistinct(Expression),
}

/// What a metric computes.
#[derive(Clone, Debug, PartialEq)]
pub enum MetricKind {
    /// An aggregate over the fact's rows, optionally only those satisfying `filter`.
    Base {
        /// The aggregate.
        aggregate: Aggregate,
        /// The condition rows must satisfy (`where`), if any.
        filter: Option<Expression>,
    },
    /// `scale * numerator / denominator / divide_by`, after aggregation; null when the
    /// denominator is 0.
    Ratio {
        /// The metric divided.
        numerator: String,
        /// The metric it is divided by.
        denominator: String,
        /// A factor applied after dividing (100 for a percentage).
        scale: f64,
        /// A divisor applied after dividing (microseconds to hours).
        divide_by: f64,
    },
}

/// How a metric's values read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An amount in the model's currency, exact to the cent.
    Money,
    /// A count.
    Integer,
    /// Any other number (an average of days).
    Number,
    /// A percentage: 25.0 is 25 %.
    Percent,
    /// A ratio: 0.25 is 25 %.
    Ratio,
}

/// A metric of the model.
#[derive(Clone, Debug)]
pub struct Metric {
    /// Its name (`closed_revenue`).
    pub name: String,
    /// What people read: "Closed revenue", "CSAT (average)".
    pub label: String,
    /// The unit shown after a number (`hours`, `days`).
    pub unit: Option<String>,
    /// Whether a rise is good news (revenue) or bad (hours to respond).
    pub higher_is_better: bool,
    /// The fact it aggregates (the numerator's, for a ratio).
    pub fact: String,
    /// What it computes.
    pub kind: MetricKind,
    /// How its values read.
    pub format: Format,
    /// Its definition, as people read it.
    pub description: String,
    /// An additive part of a ratio, not listed by default.
    pub hidden: bool,
    /// A state at a date rather than a flow over a period (certified people): counted over
    /// every row as of the last day of the period, or of each time row, which its expressions
    /// read as the column `as_of`. Never summed over time.
    pub state: bool,
    /// Its line in the model file, when known.
    pub line: Option<usize>,
}

impl Metric {
    /// Sums and counts re-aggregate by summing; distinct counts do not.
    pub fn is_additive(&self) -> bool {
        matches!(
            &self.kind,
            MetricKind::Base {
                aggregate: Aggregate::Sum(_) | Aggregate::CountRows | Aggregate::Count(_),
                ..
            }
        )
    }
}

/// A problem in a model file, with the line it is on when known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelProblem {
    /// Its line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// A model file that cannot be used: every problem found, each with its line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.iter().map(|p| match p.line { Some(l) => format!("{}:{l}: {}", .file, p.message), None => format!("{}: {}", .file, p.message) }).collect::<Vec<_>>().join("\n"))]
pub struct ModelError {
    /// The file.
    pub file: String,
    /// Its problems.
    pub problems: Vec<ModelProblem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    currency: Option<String>,
    #[serde(default)]
    dimensions: BTreeMap<String, RawDimension>,
    #[serde(default)]
    facts: BTreeMap<String, RawFact>,
    #[serde(default)]
    metrics: BTreeMap<String, RawMetric>,
    #[serde(default)]
    rollups: BTreeMap<String, RawRollup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRollup {
    fact: String,
    #[serde(default)]
    dimensions: Vec<String>,
    grain: Option<String>,
    metrics: Vec<String>,
    #[serde(default)]
    channel: bool,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDimension {
    table: String,
    key: String,
    attributes: BTreeMap<String, RawAttribute>,
    absent: Option<String>,
    partner: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttribute {
    label: Option<String>,
    #[serde(default)]
    description: String,
    expression: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFact {
    table: String,
    time: String,
    #[serde(default)]
    reaches: Vec<String>,
    #[serde(default)]
    description: String,
    subject: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, RawFactAttribute>,
    #[serde(default)]
    lookups: BTreeMap<String, RawLookup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLookup {
    table: String,
    key: String,
    column: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFactAttribute {
    column: String,
    label: Option<String>,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetric {
    label: Option<String>,
    unit: Option<String>,
    higher_is_better: Option<bool>,
    fact: String,
    sum: Option<String>,
    count: Option<String>,
    count_distinct: Option<String>,
    ratio: Option<(String, String)>,
    #[serde(rename = "where")]
    filter: Option<String>,
    scale: Option<f64>,
    divide_by: Option<f64>,
    format: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    hidden: bool,
    #[serde(default)]
    state: bool,
}

/// The nearest of `candidates` to `name`, when one is close enough to be a likely misspelling.
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// " did you mean `x`?" or nothing.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    nearest(name, candidates)
        .map(|n| format!("; did you mean `{n}`?"))
        .unwrap_or_default()
}

/// A model file being read: its text, for the line of each entry, and the problems found so
/// far (all of them are reported at once).
struct Reading<'a> {
    text: &'a str,
    problems: Vec<ModelProblem>,
}

impl Reading<'_> {
    /// Reports what `check` finds wrong with one entry, at its line and under its name.
    fn each<T>(
        &mut self,
        line: Option<usize>,
        what: &str,
        check: impl FnOnce(&mut dyn FnMut(String)) -> Option<T>,
    ) -> Option<T> {
        let mut messages = Vec::new();
        let read = check(&mut |m| messages.push(m));
        self.problems
            .extend(messages.into_iter().map(|m| ModelProblem {
                line,
                message: format!("{what}: {m}"),
            }));
        read
    }

    fn dimensions(&mut self, raw: BTreeMap<String, RawDimension>) -> BTreeMap<String, Dimension> {
        let dimensions_line = line_of(self.text, "dimensions", 0).unwrap_or(0);
        let mut dimensions = BTreeMap::new();
        for (name, d) in raw {
            let dimension_line = line_of(self.text, &name, dimensions_line).unwrap_or(0);
            let mut attributes = BTreeMap::new();
            for (a, r) in d.attributes {
                let line = line_of(self.text, &a, dimension_line);
                let expression = r.expression.as_deref().and_then(|e| {
                    self.each(line, &format!("attribute `{name}.{a}`"), |problem| {
                        Expression::parse(e).map_err(&mut *problem).ok()
                    })
                });
                attributes.insert(
                    a.clone(),
                    Attribute {
                        name: a,
                        label: r.label,
                        description: r.description,
                        expression,
                        line,
                    },
                );
            }
            dimensions.insert(
                name.clone(),
                Dimension {
                    name,
                    table: d.table,
                    key: d.key,
                    attributes,
                    absent: d.absent,
                    partner: d.partner,
                },
            );
        }
        dimensions
    }

    fn facts(
        &mut self,
        raw: BTreeMap<String, RawFact>,
        dimensions: &BTreeMap<String, Dimension>,
    ) -> BTreeMap<String, Fact> {
        let facts_line = line_of(self.text, "facts", 0).unwrap_or(0);
        let mut facts = BTreeMap::new();
        for (name, f) in raw {
            let line = line_of(self.text, &name, facts_line);
            for r in &f.reaches {
                if !dimensions.contains_key(r) {
                    self.problems.push(ModelProblem {
                        line,
                        message: format!(
                            "fact `{name}` reaches `{r}`, which is not a dimension{}",
                            did_you_mean(r, dimensions.keys().map(String::as_str))
                        ),
                    });
                }
            }
            facts.insert(name.clone(), fact(name, f));
        }
        // Two facts under one subject table would make the SQL endpoint's catalog ambiguous.
        let mut subjects: BTreeMap<String, &str> = BTreeMap::new();
        for f in facts.values() {
            if let Some(other) = subjects.insert(f.subject_table(), &f.name) {
                self.problems.push(ModelProblem {
                    line: line_of(self.text, &f.name, facts_line),
                    message: format!(
                        "facts `{other}` and `{}` have the same subject `{}`: give each its own",
                        f.name, f.subject
                    ),
                });
            }
        }
        facts
    }

    fn metrics(
        &mut self,
        raw: BTreeMap<String, RawMetric>,
        facts: &BTreeMap<String, Fact>,
    ) -> BTreeMap<String, Metric> {
        let metrics_line = line_of(self.text, "metrics", 0).unwrap_or(0);
        let metric_facts: BTreeMap<String, String> = raw
            .iter()
            .map(|(n, m)| (n.clone(), m.fact.clone()))
            .collect();
        let mut metrics = BTreeMap::new();
        for (name, m) in raw {
            let line = line_of(self.text, &name, metrics_line);
            let read = self.each(line, &format!("metric `{name}`"), |problem| {
                metric(&name, m, line, facts, &metric_facts, problem)
            });
            if let Some(metric) = read {
                metrics.insert(name, metric);
            }
        }
        metrics
    }

    fn rollups(
        &mut self,
        raw: BTreeMap<String, RawRollup>,
        facts: &BTreeMap<String, Fact>,
        dimensions: &BTreeMap<String, Dimension>,
        metrics: &BTreeMap<String, Metric>,
    ) -> BTreeMap<String, Rollup> {
        let rollups_line = line_of(self.text, "rollups", 0).unwrap_or(0);
        let mut rollups = BTreeMap::new();
        for (name, r) in raw {
            let line = line_of(self.text, &name, rollups_line);
            let read = self.each(line, &format!("rollup `{name}`"), |problem| {
                rollup(&name, r, facts, dimensions, metrics, problem)
            });
            if let Some(rollup) = read {
                rollups.insert(name, rollup);
            }
        }
        rollups
    }
}

/// A fact as the model holds it; its lookups stay within one partner when the fact has one.
fn fact(name: String, f: RawFact) -> Fact {
    let attributes = f
        .attributes
        .into_iter()
        .map(|(a, r)| {
            (
                a.clone(),
                FactAttribute {
                    name: a,
                    column: r.column,
                    label: r.label,
                    description: r.description,
                },
            )
        })
        .collect();
    let partners_fact = f.reaches.iter().any(|d| d == "partner");
    let lookups = f
        .lookups
        .into_iter()
        .map(|(n, l)| {
            (
                n.clone(),
                Lookup {
                    name: n,
                    table: l.table,
                    key: l.key,
                    column: l.column,
                    same_partner: partners_fact,
                },
            )
        })
        .collect();
    Fact {
        subject: f.subject.unwrap_or_else(|| humanized(&name)),
        name,
        table: f.table,
        time: f.time,
        reaches: f.reaches,
        description: f.description,
        attributes,
        lookups,
    }
}

/// One metric, or `None` when it is too wrong to hold (its problems are told to `problem`).
fn metric(
    name: &str,
    m: RawMetric,
    line: Option<usize>,
    facts: &BTreeMap<String, Fact>,
    metric_facts: &BTreeMap<String, String>,
    problem: &mut dyn FnMut(String),
) -> Option<Metric> {
    if !facts.contains_key(&m.fact) {
        problem(format!(
            "`{}` is not a fact{}",
            m.fact,
            did_you_mean(&m.fact, facts.keys().map(String::as_str))
        ));
    }
    let given = [
        m.sum.is_some(),
        m.count.is_some(),
        m.count_distinct.is_some(),
        m.ratio.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if given != 1 {
        problem("needs exactly one of sum, count, count_distinct, ratio".into());
        return None;
    }
    let kind = match &m.ratio {
        Some((numerator, denominator)) => {
            ratio_kind(&m, numerator, denominator, metric_facts, problem)
        }
        None => base_kind(&m, problem)?,
    };
    let format = match m.format.as_deref() {
        None | Some("number") => Format::Number,
        Some("money") => Format::Money,
        Some("integer") => Format::Integer,
        Some("percent") => Format::Percent,
        Some("ratio") => Format::Ratio,
        Some(other) => {
            let formats = ["money", "integer", "number", "percent", "ratio"];
            problem(format!(
                "format `{other}` is not one of {}{}",
                formats.join(", "),
                did_you_mean(other, formats)
            ));
            Format::Number
        }
    };
    if let Some(u) = &m.unit
        && !["hours", "days"].contains(&u.as_str())
    {
        problem(format!("unit `{u}` is not one of hours, days"));
    }
    Some(Metric {
        label: m.label.unwrap_or_else(|| humanized(name)),
        unit: m.unit,
        higher_is_better: m.higher_is_better.unwrap_or(true),
        name: name.to_string(),
        fact: m.fact,
        kind,
        format,
        description: m.description,
        hidden: m.hidden,
        state: m.state,
        line,
    })
}

/// A ratio of two metrics. A ratio of two facts' metrics (mdf_roi: won amount over funds
/// paid) is computed after the two aggregations are joined on the query's dimensions; its
/// `fact` is one of the two.
fn ratio_kind(
    m: &RawMetric,
    numerator: &str,
    denominator: &str,
    metric_facts: &BTreeMap<String, String>,
    problem: &mut dyn FnMut(String),
) -> MetricKind {
    let part_facts: Vec<Option<&String>> = [numerator, denominator]
        .iter()
        .map(|part| metric_facts.get(*part))
        .collect();
    for (part, f) in [numerator, denominator].iter().zip(&part_facts) {
        if f.is_none() {
            problem(format!(
                "ratio part `{part}` is not a metric{}",
                did_you_mean(part, metric_facts.keys().map(String::as_str))
            ));
        }
    }
    if let [Some(a), Some(b)] = part_facts[..]
        && *a != m.fact
        && *b != m.fact
    {
        problem(format!(
            "a ratio's fact is the fact of one of its parts: `{a}` or `{b}`, not `{}`",
            m.fact
        ));
    }
    if m.state {
        problem("`state` applies to a sum or count: a ratio of states is one of states".into());
    }
    if m.filter.is_some() {
        problem("a ratio takes no `where`: put the condition on its parts".into());
    }
    MetricKind::Ratio {
        numerator: numerator.to_string(),
        denominator: denominator.to_string(),
        scale: m.scale.unwrap_or(1.0),
        divide_by: m.divide_by.unwrap_or(1.0),
    }
}

/// A sum or count of an expression over the fact's rows, with its `where`; `None` when an
/// expression does not parse.
fn base_kind(m: &RawMetric, problem: &mut dyn FnMut(String)) -> Option<MetricKind> {
    if m.scale.is_some() || m.divide_by.is_some() {
        problem("`scale` and `divide_by` apply to ratios only".into());
    }
    let mut parsed = |what: &str, text: &str| match Expression::parse(text) {
        Ok(e) => Some(e),
        Err(message) => {
            problem(format!("`{what}`: {message}"));
            None
        }
    };
    let aggregate = match (&m.sum, &m.count, &m.count_distinct) {
        (Some(e), _, _) => parsed("sum", e).map(Aggregate::Sum),
        (_, Some(e), _) if e.trim() == "*" => Some(Aggregate::CountRows),
        (_, Some(e), _) => parsed("count", e).map(Aggregate::Count),
        (_, _, Some(e)) => parsed("count_distinct", e).map(Aggregate::CountDistinct),
        _ => unreachable!("exactly one is given"),
    };
    let filter = m.filter.as_deref().map(|f| parsed("where", f));
    let (Some(aggregate), None | Some(Some(_))) = (aggregate, &filter) else {
        return None;
    };
    Some(MetricKind::Base {
        aggregate,
        filter: filter.flatten(),
    })
}

/// One rollup, or `None` when its fact is unknown (its problems are told to `problem`).
fn rollup(
    name: &str,
    r: RawRollup,
    facts: &BTreeMap<String, Fact>,
    dimensions: &BTreeMap<String, Dimension>,
    metrics: &BTreeMap<String, Metric>,
    problem: &mut dyn FnMut(String),
) -> Option<Rollup> {
    // Its name becomes part of a table's name.
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        problem("a rollup's name is lowercase letters, digits and `_`".into());
    }
    let Some(fact) = facts.get(&r.fact) else {
        problem(format!(
            "`{}` is not a fact{}",
            r.fact,
            did_you_mean(&r.fact, facts.keys().map(String::as_str))
        ));
        return None;
    };
    rollup_dimensions(&r, fact, dimensions, problem);
    let grain = r.grain.as_deref().and_then(|g| {
        let grain = Grain::parse(g);
        if grain.is_none() {
            problem(format!(
                "grain `{g}` is not one of {}{}",
                TIME_GRAINS.join(", "),
                did_you_mean(g, TIME_GRAINS.iter().copied())
            ));
        }
        grain
    });
    let held = rollup_metrics(&r, metrics, problem);
    // A channel rollup counts the partners in each row, and answers for all of them.
    if r.channel && !fact.reaches.iter().any(|d| d == "partner") {
        problem(format!(
            "`{}` has no partner: a channel rollup is built over partners' rows",
            r.fact
        ));
    }
    if r.channel && r.dimensions.iter().any(|d| d.starts_with("partner.")) {
        problem(
            "a channel rollup answers for all partners together: it cannot hold a partner dimension"
                .into(),
        );
    }
    Some(Rollup {
        name: name.to_string(),
        fact: r.fact,
        dimensions: r.dimensions,
        grain,
        metrics: held,
        channel: r.channel,
        description: r.description,
    })
}

/// A problem for each of a rollup's dimensions that its fact does not reach.
fn rollup_dimensions(
    r: &RawRollup,
    fact: &Fact,
    dimensions: &BTreeMap<String, Dimension>,
    problem: &mut dyn FnMut(String),
) {
    for d in &r.dimensions {
        let ok = fact.attributes.contains_key(d)
            || d.split_once('.').is_some_and(|(dim, attr)| {
                fact.reaches.iter().any(|x| x == dim)
                    && dimensions
                        .get(dim)
                        .is_some_and(|x: &Dimension| x.attributes.contains_key(attr))
            });
        if !ok {
            let names: Vec<String> = fact
                .reaches
                .iter()
                .filter_map(|x| dimensions.get(x))
                .flat_map(|x| x.attributes.keys().map(move |a| format!("{}.{a}", x.name)))
                .chain(fact.attributes.keys().cloned())
                .collect();
            problem(format!(
                "`{d}` is not a dimension that {} reaches{}",
                r.fact,
                did_you_mean(d, names.iter().map(String::as_str))
            ));
        }
    }
}

/// The sums and counts a rollup holds for its metrics: a ratio's two parts, each once.
fn rollup_metrics(
    r: &RawRollup,
    metrics: &BTreeMap<String, Metric>,
    problem: &mut dyn FnMut(String),
) -> Vec<String> {
    let mut held: Vec<String> = Vec::new();
    for m in &r.metrics {
        let parts = match metrics.get(m) {
            None => {
                problem(format!(
                    "`{m}` is not a metric{}",
                    did_you_mean(m, metrics.keys().map(String::as_str))
                ));
                continue;
            }
            Some(metric) if metric.fact != r.fact => {
                problem(format!(
                    "`{m}` is a metric of `{}`, not of `{}`",
                    metric.fact, r.fact
                ));
                continue;
            }
            Some(Metric {
                kind:
                    MetricKind::Ratio {
                        numerator,
                        denominator,
                        ..
                    },
                ..
            }) => vec![numerator.clone(), denominator.clone()],
            Some(_) => vec![m.clone()],
        };
        for p in parts {
            match metrics.get(&p) {
                Some(part) if part.fact != r.fact => problem(format!(
                    "`{m}` divides by `{p}`, a metric of `{}`: a rollup holds one fact's metrics",
                    part.fact
                )),
                Some(part) if part.state => problem(format!(
                    "`{p}` is a state at a date, which a rollup of sums cannot hold"
                )),
                _ => {
                    if !held.contains(&p) {
                        held.push(p);
                    }
                }
            }
        }
    }
    if r.metrics.is_empty() {
        problem("holds no metric".into());
    }
    held
}

/// The line of the first `key:` in the text after `after_line`, for locating a problem.
fn line_of(text: &str, key: &str, after_line: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(after_line.saturating_sub(1))
        .find(|(_, l)| {
            let t = l.trim_start();
            t.strip_prefix(key)
                .is_some_and(|rest| rest.starts_with(':'))
        })
        .map(|(i, _)| i + 1)
}

/// The line of an item in a user's own model file: `name`, or `dimension.attribute` under its
/// dimension.
fn users_line(text: &str, name: &str) -> Option<usize> {
    match name.split_once('.') {
        Some((dimension, attribute)) => {
            line_of(text, dimension, 0).and_then(|l| line_of(text, attribute, l))
        }
        None => line_of(text, name, 0),
    }
}

impl Model {
    /// The model that ships with Prism.
    pub fn shipped() -> Model {
        Model::parse(SHIPPED_NAME, SHIPPED).expect("the shipped model is valid")
    }

    /// Parses and validates a model file, reporting every problem at once.
    pub fn parse(file: &str, text: &str) -> Result<Model, ModelError> {
        let raw: RawModel = serde_norway::from_str(text).map_err(|e| ModelError {
            file: file.to_string(),
            problems: vec![ModelProblem {
                line: e.location().map(|l| l.line()),
                message: e.to_string(),
            }],
        })?;
        let mut reading = Reading {
            text,
            problems: Vec::new(),
        };
        let dimensions = reading.dimensions(raw.dimensions);
        let facts = reading.facts(raw.facts, &dimensions);
        let metrics = reading.metrics(raw.metrics, &facts);
        let currency = raw.currency.unwrap_or_else(|| "USD".into());
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
            reading.problems.push(ModelProblem {
                line: line_of(text, "currency", 0),
                message: format!(
                    "currency `{currency}` is not an ISO 4217 code of three capital letters (USD, EUR)"
                ),
            });
        }
        let rollups = reading.rollups(raw.rollups, &facts, &dimensions, &metrics);
        let mut problems = reading.problems;
        if problems.is_empty() {
            Ok(Model {
                file: file.to_string(),
                currency,
                dimensions,
                facts,
                metrics,
                rollups,
            })
        } else {
            problems.sort_by_key(|p| p.line);
            Err(ModelError {
                file: file.to_string(),
                problems,
            })
        }
    }

    /// The shipped model extended by a user's file: its dimensions, facts and metrics are added,
    /// or replace the shipped ones of the same name.
    pub fn extended(file: &str, text: &str) -> Result<Model, ModelError> {
        // The user's file on its own first: its syntax errors carry its own line numbers.
        serde_norway::from_str::<serde_norway::Value>(text).map_err(|e| ModelError {
            file: file.to_string(),
            problems: vec![ModelProblem {
                line: e.location().map(|l| l.line()),
                message: e.to_string(),
            }],
        })?;
        let combined = merge_yaml(SHIPPED, text).map_err(|message| ModelError {
            file: file.to_string(),
            problems: vec![ModelProblem {
                line: None,
                message,
            }],
        })?;
        let mut model = Model::parse(file, &combined).map_err(|mut e| {
            // Problems were found in the merged text: point at the user's own lines.
            for p in &mut e.problems {
                let named = ["metric `", "fact `", "rollup `", "attribute `"]
                    .iter()
                    .find_map(|prefix| {
                        p.message
                            .strip_prefix(prefix)
                            .and_then(|rest| rest.split('`').next())
                    });
                p.line = named.and_then(|name| users_line(text, name));
            }
            e
        })?;
        // Lines of the merged text mean nothing to the user: the user's own, or none for what
        // the shipped model defines.
        for m in model.metrics.values_mut() {
            m.line = users_line(text, &m.name);
        }
        for d in model.dimensions.values_mut() {
            for a in d.attributes.values_mut() {
                a.line = users_line(text, &format!("{}.{}", d.name, a.name));
            }
        }
        Ok(model)
    }

    /// Every dimension name a query may use: `partner.tier`, `opportunity.stage`, `time.month`.
    pub fn dimension_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .dimensions
            .values()
            .flat_map(|d| d.attributes.keys().map(move |a| format!("{}.{a}", d.name)))
            .collect();
        names.extend(
            self.facts
                .values()
                .flat_map(|f| f.attributes.keys().cloned()),
        );
        names.extend(TIME_GRAINS.iter().map(|g| format!("time.{g}")));
        names
    }

    /// The facts a metric reads: its own, and for a ratio of two facts' metrics the other's.
    pub fn facts_of<'m>(&'m self, metric: &'m Metric) -> Vec<&'m str> {
        let mut facts = vec![metric.fact.as_str()];
        if let MetricKind::Ratio {
            numerator,
            denominator,
            ..
        } = &metric.kind
        {
            for part in [numerator, denominator] {
                if let Some(p) = self.metrics.get(part)
                    && !facts.contains(&p.fact.as_str())
                {
                    facts.push(&p.fact);
                }
            }
        }
        facts
    }

    /// A metric by name, or a message naming the nearest one.
    pub fn metric(&self, name: &str) -> Result<&Metric, String> {
        self.metrics.get(name).ok_or_else(|| {
            format!(
                "no metric `{name}`{}",
                did_you_mean(name, self.metrics.keys().map(String::as_str))
            )
        })
    }
}

/// A name as people read it: `closed_revenue` → "Closed revenue".
pub fn humanized(name: &str) -> String {
    let spaced = name.replace('_', " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// How a derived form reads after its metric's label.
fn form_label(form: &str) -> Option<&'static str> {
    Some(match form {
        "pct_of_total" => "% of total",
        "rank" => "rank",
        "cumulative_pct" => "cumulative %",
        "previous_period" => "previous period",
        "year_before" => "year before",
        "change" => "change",
        "change_pct" => "change %",
        "change_year_before" => "change on the year before",
        "change_pct_year_before" => "change % on the year before",
        _ => return None,
    })
}

impl Model {
    /// What people read for a column of an answer: a metric (`closed_revenue:change_pct` →
    /// "Closed revenue (change %)"), a dimension (`partner.region` → "Partner region",
    /// Why a column named after a metric (or one of its derived forms) has no value, for a
    /// person who sees a dash: a ratio's denominator is 0 (no closed deal, no survey), a sum
    /// has no row in the period and scope, or a comparison has no earlier figure. None for a
    /// column that is no metric's.
    pub fn missing_reason(&self, column: &str) -> Option<String> {
        let (name, form) = match column.split_once(':') {
            Some((n, f)) => (n, Some(f)),
            None => (column, None),
        };
        let m = self.metrics.get(name)?;
        if let Some(
            "previous_period"
            | "year_before"
            | "change"
            | "change_pct"
            | "change_year_before"
            | "change_pct_year_before",
        ) = form
        {
            return Some("no value: no figure in the earlier period to compare with".into());
        }
        Some(match &m.kind {
            MetricKind::Ratio { denominator, .. } => format!(
                "no value: {} is 0 in this period and scope",
                self.label(denominator)
            ),
            MetricKind::Base { .. } => format!(
                "no value: no {} in this period and scope",
                m.fact.replace('_', " ")
            ),
        })
    }

    /// The kind and unit of a column named after a metric or one of its derived forms (a
    /// share, a cumulative share or a change is a percentage, a rank a whole number); none for
    /// a dimension's column.
    pub fn column_format(&self, column: &str) -> Option<(Format, Option<String>)> {
        let (name, form) = match column.split_once(':') {
            Some((n, f)) => (n, Some(f)),
            None => (column, None),
        };
        let m = self.metrics.get(name)?;
        Some(match form {
            Some("pct_of_total" | "cumulative_pct" | "change_pct" | "change_pct_year_before") => {
                (Format::Percent, None)
            }
            Some("rank") => (Format::Integer, None),
            _ => (m.format, m.unit.clone()),
        })
    }

    /// `time.quarter` → "Quarter"), or the name with spaces.
    pub fn label(&self, column: &str) -> String {
        let (name, form) = match column.split_once(':') {
            Some((n, f)) => (n, form_label(f)),
            None => (column, None),
        };
        if let Some(m) = self.metrics.get(name) {
            return match form {
                Some(f) => format!("{} ({f})", m.label),
                None => m.label.clone(),
            };
        }
        if let Some(grain) = name.strip_prefix("time.") {
            return humanized(grain);
        }
        for f in self.facts.values() {
            if let Some(a) = f.attributes.get(name) {
                return a
                    .label
                    .clone()
                    .unwrap_or_else(|| humanized(&name.replace('.', " ")));
            }
        }
        if let Some((d, a)) = name.split_once('.')
            && let Some(attribute) = self.dimensions.get(d).and_then(|x| x.attributes.get(a))
        {
            if let Some(l) = &attribute.label {
                return l.clone();
            }
            // `partner.partner_name` reads "Partner name", not "Partner partner name".
            let rest = a.strip_prefix(&format!("{d}_")).unwrap_or(a);
            return humanized(&format!("{d} {rest}"));
        }
        humanized(column)
    }
}

/// Merges two YAML models key by key at the second level (`metrics.x` from `extra` replaces
/// or adds to `base`). A dimension or fact of `extra` that names no `table` extends the one of
/// the same name in `base` instead: its attributes (and any other key it gives) are added to
/// the shipped ones, so that a user adds `product.list_price` without restating the product.
fn merge_yaml(base: &str, extra: &str) -> Result<String, String> {
    use serde_norway::Value;
    let mut b: Value = serde_norway::from_str(base).map_err(|e| e.to_string())?;
    let e: Value = serde_norway::from_str(extra).map_err(|e| e.to_string())?;
    let (Value::Mapping(bm), Value::Mapping(em)) = (&mut b, e) else {
        return Err("a model file is a mapping with dimensions, facts and metrics".into());
    };
    let extends = |section: &Value| matches!(section.as_str(), Some("dimensions" | "facts"));
    for (section, entries) in em {
        let extending = extends(&section);
        match (bm.get_mut(&section), entries) {
            (Some(Value::Mapping(target)), Value::Mapping(add)) => {
                for (k, v) in add {
                    match (target.get_mut(&k), v) {
                        (Some(Value::Mapping(shipped)), Value::Mapping(own))
                            if extending && !own.contains_key("table") =>
                        {
                            extend_entry(shipped, own);
                        }
                        (_, v) => {
                            target.insert(k, v);
                        }
                    }
                }
            }
            (_, entries) => {
                bm.insert(section, entries);
            }
        }
    }
    serde_norway::to_string(&b).map_err(|e| e.to_string())
}

/// A shipped dimension or fact extended by a user's entry of the same name: the user's keys
/// replace the shipped ones, except `attributes` and `lookups`, whose entries are added.
fn extend_entry(shipped: &mut serde_norway::Mapping, own: serde_norway::Mapping) {
    use serde_norway::Value;
    for (key, value) in own {
        let listed = matches!(key.as_str(), Some("attributes" | "lookups"));
        match (shipped.get_mut(&key), value) {
            (Some(Value::Mapping(entries)), Value::Mapping(added)) if listed => {
                for (name, entry) in added {
                    entries.insert(name, entry);
                }
            }
            (_, value) => {
                shipped.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_figure_says_why() {
        let m = Model::shipped();
        // win_rate is won_count / closed_count; csat_avg is score_total / survey_count.
        assert_eq!(
            m.missing_reason("win_rate").unwrap(),
            "no value: Closed count is 0 in this period and scope"
        );
        assert_eq!(
            m.missing_reason("csat_avg").unwrap(),
            "no value: Surveys is 0 in this period and scope"
        );
        assert_eq!(
            m.missing_reason("closed_revenue").unwrap(),
            "no value: no orders in this period and scope"
        );
        assert_eq!(
            m.missing_reason("closed_revenue:change_pct").unwrap(),
            "no value: no figure in the earlier period to compare with"
        );
        assert_eq!(m.missing_reason("partner.tier"), None);
    }

    #[test]
    fn the_shipped_model_defines_every_metric_of_the_spec() {
        let m = Model::shipped();
        for name in [
            "closed_revenue",
            "units_sold",
            "order_count",
            "buying_customers",
            "gross_margin",
            "gross_margin_pct",
            "indirect_revenue_share",
            "open_pipeline",
            "weighted_pipeline",
            "open_opportunities",
            "won_amount",
            "won_count",
            "lost_count",
            "win_rate",
            "avg_deal_size",
            "registered_deal_share",
            "avg_sales_cycle_days",
            "csat_avg",
            "csat_satisfied_pct",
            "survey_count",
            "sr_count",
            "open_sr_count",
            "resolution_rate",
            "avg_first_response_hours",
            "avg_resolution_hours",
            "sla_met_pct",
            "registrations",
            "registered_amount",
            "registration_approval_rate",
            "avg_registration_decision_days",
            "pending_registrations",
            "registration_win_rate",
            "mdf_requested",
            "mdf_approved",
            "mdf_paid",
            "mdf_approval_rate",
            "mdf_utilization_pct",
            "campaign_sourced_pipeline",
            "campaign_sourced_won",
            "mdf_roi",
            "certifications_earned",
            "certified_people",
            "expiring_certifications",
        ] {
            let metric = m.metric(name).unwrap();
            assert!(!metric.hidden && !metric.description.is_empty(), "{name}");
        }
        assert!(
            m.dimension_names()
                .contains(&"customer.annual_revenue_band".to_string())
        );
        for d in [
            "campaign.campaign_id",
            "campaign.campaign_name",
            "campaign.channel",
            "campaign.target_industry",
            "campaign.target_size_band",
            "campaign.owner",
            "deal_registration.status",
            "mdf_request.status",
            "certification.track",
            "certification.level",
            "certification.product_line",
        ] {
            assert!(m.dimension_names().contains(&d.to_string()), "{d}");
        }
        assert!(
            m.dimension_names()
                .contains(&"opportunity.stage".to_string())
        );
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_line_and_the_nearest_name() {
        let text = "\
dimensions:
  partner: { table: partners, key: partner_id, attributes: { tier: {} } }
facts:
  orders: { table: orders, time: order_date, reaches: [partnr] }
metrics:
  revenue: { fact: orders, sum: revenue }
  share: { fact: orders, ratio: [revenu, revenue] }
  bad: { fact: order, count: \"*\", format: percnt }
";
        let err = Model::parse("mine.yaml", text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "mine.yaml:4: fact `orders` reaches `partnr`, which is not a dimension; did you mean `partner`?\n\
             mine.yaml:7: metric `share`: ratio part `revenu` is not a metric; did you mean `revenue`?\n\
             mine.yaml:8: metric `bad`: `order` is not a fact; did you mean `orders`?\n\
             mine.yaml:8: metric `bad`: format `percnt` is not one of money, integer, number, percent, ratio; did you mean `percent`?"
        );
    }

    #[test]
    fn a_rollup_is_checked_against_its_fact_with_every_problem_at_once() {
        let err = Model::extended(
            "mine.yaml",
            "rollups:\n  by_line:\n    fact: orders\n    dimensions: [product.product_lin, opportunity.stage]\n    grain: monthly\n    metrics: [closed_revenue, win_rate]\n",
        )
        .unwrap_err();
        let text = err.to_string();
        for expected in [
            "mine.yaml:2: rollup `by_line`: `product.product_lin` is not a dimension that orders reaches; did you mean `product.product_line`?",
            "mine.yaml:2: rollup `by_line`: `opportunity.stage` is not a dimension that orders reaches",
            "mine.yaml:2: rollup `by_line`: grain `monthly` is not one of day, week, month, quarter, year; did you mean `month`?",
            "mine.yaml:2: rollup `by_line`: `win_rate` is a metric of `opportunities`, not of `orders`",
        ] {
            assert!(text.contains(expected), "{expected}\nnot in:\n{text}");
        }
        // A channel rollup answers for all partners together.
        let err = Model::extended("mine.yaml", "rollups:\n  by_tier:\n    fact: orders\n    dimensions: [partner.tier]\n    metrics: [closed_revenue]\n    channel: true\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "mine.yaml:2: rollup `by_tier`: a channel rollup answers for all partners together: it cannot hold a partner dimension"
        );
        // A ratio given to a rollup is held as its two parts.
        let m = Model::shipped();
        let r = &m.rollups["orders_by_partner_month"];
        assert!(
            r.metrics.contains(&"gross_margin".to_string())
                && r.metrics.contains(&"costed_revenue".to_string())
        );
    }

    #[test]
    fn every_column_has_a_label_people_read() {
        let m = Model::shipped();
        for (column, label) in [
            ("closed_revenue", "Closed revenue"),
            ("csat_avg", "CSAT (average)"),
            ("closed_revenue:change_pct", "Closed revenue (change %)"),
            ("win_rate:rank", "Win rate (rank)"),
            ("partner.partner_name", "Partner name"),
            ("customer.region", "Customer region"),
            ("time.quarter", "Quarter"),
            ("opportunity.stage", "Opportunity stage"),
            ("benchmark_partners", "Benchmark partners"),
        ] {
            assert_eq!(m.label(column), label, "{column}");
        }
        // No label a user is shown reads like an identifier.
        for metric in m.metrics.values().filter(|x| !x.hidden) {
            assert!(
                !metric.label.contains('_') && metric.label.starts_with(char::is_uppercase),
                "{}: {}",
                metric.name,
                metric.label
            );
        }
        assert_eq!(m.currency, "USD");
        let e = Model::extended("mine.yaml", "currency: euro\n").unwrap_err();
        assert!(e.to_string().contains("ISO 4217"), "{e}");
    }

    #[test]
    fn rows_of_a_grain_add_up_only_to_grains_made_of_them() {
        use Grain::*;
        // Written out by hand: a week straddles months, so weeks make weeks only.
        let adds_up = [
            (Day, vec![Day, Week, Month, Quarter, Year]),
            (Week, vec![Week]),
            (Month, vec![Month, Quarter, Year]),
            (Quarter, vec![Quarter, Year]),
            (Year, vec![Year]),
        ];
        for (fine, coarser) in adds_up {
            for g in Grain::ALL {
                assert_eq!(
                    fine.composes_into(g),
                    coarser.contains(&g),
                    "{fine} into {g}"
                );
            }
        }
        assert_eq!(Grain::parse("quarter"), Some(Quarter));
        assert_eq!(Grain::parse("monthly"), None);
    }

    #[test]
    fn a_yaml_syntax_error_says_where() {
        let err = Model::parse("mine.yaml", "metrics:\n  x: { fact: orders, sum: [\n").unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert!(err.problems[0].line.is_some(), "{err}");
    }

    #[test]
    fn a_user_model_adds_metrics_to_the_shipped_one() {
        let m = Model::extended(
            "mine.yaml",
            "metrics:\n  big_deals: { fact: opportunities, count: \"*\", where: \"amount >= 100000\", format: integer, description: Deals of 100 k or more. }\n",
        )
        .unwrap();
        assert!(m.metric("big_deals").is_ok());
        assert!(m.metric("closed_revenue").is_ok());
        assert_eq!(
            m.metric("closed_revnue").unwrap_err(),
            "no metric `closed_revnue`; did you mean `closed_revenue`?"
        );
    }

    #[test]
    fn a_problem_in_a_user_model_points_at_the_users_own_line() {
        let err = Model::extended(
            "mine.yaml",
            "# my metrics\nmetrics:\n  big_deals: { fact: opportunites, count: \"*\" }\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "mine.yaml:3: metric `big_deals`: `opportunites` is not a fact; did you mean `opportunities`?"
        );
    }
}
