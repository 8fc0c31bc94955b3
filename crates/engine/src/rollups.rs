//! Aggregate navigation: which rollup, if any, answers one fact's aggregation of a query, and
//! the SQL that builds each rollup.
//!
//! A rollup answers exactly when every row it holds is a whole group of base rows for every cut
//! the query makes: its dimensions and grain must be at least as fine as the query's dimensions,
//! filters, period and compared periods, it must hold every part the query's metrics are made
//! of, and a distinct count is only summed again when what it counts is one of its dimensions.
//! A rollup whose rows are exactly the query's groups (the same dimensions and grain, filters
//! only on those) answers with what it stores, distinct counts too, as Cube does with
//! non-additive measures; a channel rollup, built over partners' rows with the number of
//! partners in each, answers channel benchmarks that way. Anything else reads the base tables,
//! and `explain` says why.

use chrono::{Datelike, Duration, Weekday};
use prism_model::{Aggregate, Grain, Metric, MetricKind, Rollup};
use prism_warehouse::BuiltRollups;

use crate::{Comparison, Dim, Engine, Period, Scope, quote_ident, quote_literal};

/// What answered one fact's aggregation, and why the other rollups of the fact could not.
#[derive(Clone, Debug, PartialEq)]
pub struct RollupChoice {
    /// The fact aggregated.
    pub fact: String,
    /// The rollup that answered, by its model name.
    pub rollup: Option<String>,
    /// Why no rollup answered, when none did.
    pub reason: Option<String>,
    /// Every other rollup of the fact, with why it was not used.
    pub passed_over: Vec<(String, String)>,
}

/// A rollup chosen for a fact's aggregation: its definition and the table that holds it.
pub(crate) struct RollupSource<'a> {
    pub rollup: &'a Rollup,
    pub table: String,
    pub schema: arrow::datatypes::SchemaRef,
    /// Each of its rows is exactly one group of the query: what it stores is the answer, distinct
    /// counts and partner counts included.
    pub exact: bool,
}

/// Whether a period starts and ends on boundaries of the grain.
fn aligned(p: &Period, grain: Grain) -> bool {
    let after = p.to + Duration::days(1);
    let months = |step: u32| {
        p.from.day() == 1
            && after.day() == 1
            && (p.from.month() - 1).is_multiple_of(step)
            && (after.month() - 1).is_multiple_of(step)
    };
    match grain.months() {
        Some(step) => months(step),
        None if grain == Grain::Week => {
            p.from.weekday() == Weekday::Mon && p.to.weekday() == Weekday::Sun
        }
        None => true,
    }
}

/// What a query asks of one fact's aggregation, as navigation needs it.
pub(crate) struct Need<'q> {
    pub parts: &'q [&'q Metric],
    pub dims: &'q [(String, Dim)],
    pub filters: &'q [(&'q crate::Filter, Dim)],
    pub period: Option<&'q Period>,
    pub shifts: &'q [(Comparison, crate::Shift)],
    pub scope: &'q Scope,
    pub benchmark: bool,
}

impl Engine {
    /// The table a rollup is built into: its name and a digest of its definition, so that a
    /// rollup built from an earlier definition (of itself or of a metric it holds) is never read.
    pub fn rollup_table(&self, rollup: &str) -> String {
        self.rollup_tables
            .get(rollup)
            .cloned()
            .unwrap_or_else(|| self.rollup_table_of(rollup))
    }

    pub(crate) fn rollup_table_of(&self, rollup: &str) -> String {
        table_of(rollup, &self.rollup_sql(&self.model.rollups[rollup], None))
    }

    /// Whether the rollup read holds a dimension's attribute (not its key) as a column of its own.
    pub(crate) fn stored_in(
        &self,
        source: Option<&RollupSource>,
        dimension: &str,
        attribute: &str,
    ) -> bool {
        self.model.dimensions[dimension].key != attribute
            && source.is_some_and(|s| {
                s.rollup
                    .dimensions
                    .iter()
                    .any(|d| *d == format!("{dimension}.{attribute}"))
            })
    }

    /// The dimension table a dimension is read from by a join: any attribute but the key, which
    /// is on the fact, unless the rollup read holds the attribute itself.
    pub(crate) fn joined_dimension<'d>(
        &self,
        d: &'d Dim,
        source: Option<&RollupSource>,
    ) -> Option<&'d str> {
        match d {
            Dim::Attribute {
                dimension,
                attribute,
            } if self.model.dimensions[dimension].key != *attribute
                && !self.stored_in(source, dimension, attribute) =>
            {
                Some(dimension.as_str())
            }
            _ => None,
        }
    }

    /// Every rollup of the model, in the order a load builds them, each with its definition over
    /// the base tables and the SQL that builds it: from a finer rollup built before it in the
    /// same load when one answers it exactly (the monthly totals from the monthly totals by
    /// product), which reads far fewer rows than the base tables; then the accounts at risk
    /// (`risk`), built by every load the same way though no model rollup declares them.
    pub fn rollup_builds(&self) -> Vec<prism_warehouse::RollupBuild> {
        let mut remaining: Vec<&Rollup> = self.model.rollups.values().collect();
        let mut built: Vec<&Rollup> = Vec::new();
        let mut out = Vec::new();
        while !remaining.is_empty() {
            // Next, one that no other rollup still to build could be built from.
            let next = remaining
                .iter()
                .position(|r| {
                    !remaining
                        .iter()
                        .any(|o| o.name != r.name && self.serves(o, r))
                })
                .unwrap_or(0);
            let r = remaining.remove(next);
            // All time in one row is coarser than any grain.
            let grain_rank = |x: &Rollup| x.grain.map_or(usize::MAX, |g| g as usize);
            // A channel rollup holds partners' rows only: nothing is built from it.
            let from = built
                .iter()
                .filter(|o| !o.channel && self.serves(o, r))
                .min_by_key(|o| {
                    (
                        o.dimensions.len(),
                        std::cmp::Reverse(grain_rank(o)),
                        o.name.clone(),
                    )
                });
            // No schema: the warehouse casts what the build gives to the definition's types.
            let source = from.map(|o| RollupSource {
                rollup: o,
                table: self.rollup_table(&o.name),
                schema: std::sync::Arc::new(arrow::datatypes::Schema::empty()),
                exact: false,
            });
            // The fact's table, the tables its rows look columns up in, and the dimension
            // tables the definition joins: a change to any of them changes the rollup.
            let fact = &self.model.facts[&r.fact];
            let mut reads = vec![fact.table.clone()];
            reads.extend(fact.lookups.values().map(|l| l.table.clone()));
            reads.extend(
                self.rollup_joins(r, None)
                    .iter()
                    .map(|d| self.model.dimensions[d].table.clone()),
            );
            reads.sort();
            reads.dedup();
            out.push(prism_warehouse::RollupBuild {
                name: r.name.clone(),
                table: self.rollup_table(&r.name),
                definition: self.rollup_sql(r, None),
                sql: self.rollup_sql(r, source.as_ref()),
                from: source.map(|s| s.table),
                reads,
                cluster_by: self.cluster_column(r),
                slices: self.rollup_slices(r),
                delta: self.rollup_delta(r),
                alone: false,
            });
            built.push(r);
        }
        // The accounts at risk read the base tables only, and nothing is built from them.
        out.extend(self.risk_build());
        out
    }

    /// A rollup's slices, for a load that changed only its fact to bring it up to date by the
    /// slices it changed: the columns of its grouping that a fact row holds itself (a
    /// dimension's key, the fact's own attributes — not a column looked up in another table)
    /// and its time grain's period. None without a time grain (each partner's customers over
    /// all time, the channel's segments): it is built whole.
    fn rollup_slices(&self, r: &Rollup) -> Option<prism_warehouse::RollupSlices> {
        let fact = &self.model.facts[&r.fact];
        let looked_up = |column: &str| fact.lookups.values().any(|l| l.name == column);
        let mut keys = Vec::new();
        for d in &r.dimensions {
            let own = match self.resolve_dim(d).ok()? {
                Dim::Attribute {
                    dimension,
                    attribute,
                } => {
                    let dim = &self.model.dimensions[&dimension];
                    dim.key == attribute && dim.attributes[&attribute].expression.is_none()
                }
                Dim::FactAttribute { column, .. } => !looked_up(&column),
                Dim::Time { .. } => false,
            };
            if own {
                let column = self.rollup_column(r, d);
                keys.push((column.clone(), format!("f.{}", crate::quote_ident(&column))));
            }
        }
        let period = r.grain.map(|g| {
            let day = format!("CAST(f.{} AS DATE)", crate::quote_ident(&fact.time));
            let (unit, length) = match g {
                Grain::Day => ("day", "1 day"),
                Grain::Week => ("week", "7 days"),
                Grain::Month => ("month", "1 month"),
                Grain::Quarter => ("quarter", "3 months"),
                Grain::Year => ("year", "1 year"),
            };
            let start = format!("CAST(date_trunc('{unit}', {day}) AS DATE)");
            prism_warehouse::SlicePeriod {
                column: fact.time.clone(),
                end: format!("CAST({start} + INTERVAL '{length}' AS DATE)"),
                start,
            }
        });
        if let Some(p) = &period {
            // The rollup holds the period's first day in the fact's time column.
            keys.push((fact.time.clone(), p.start.clone()));
        }
        // Without a period, the changed slices' rows are spread over every file and row group:
        // reading them costs what building the rollup whole costs (each partner's customers).
        period.as_ref()?;
        (!keys.is_empty()).then(|| prism_warehouse::RollupSlices {
            fact: fact.table.clone(),
            keys,
            period,
        })
    }

    /// The counts a partners' rollup holds beside its metrics so that a load can add a day's
    /// changed rows to it (`RollupDelta`): its fact rows, and for each sum the rows with a value
    /// (a sum with none is NULL, not 0). Each is a name and its aggregate over the fact's rows
    /// (`f`), or summed again from a finer rollup's column of the same name.
    fn delta_counts(&self, r: &Rollup, source: Option<&RollupSource>) -> Vec<(String, String)> {
        let from_source = |name: &str| {
            source.map(|_| format!("CAST(SUM(f.{}) AS BIGINT)", crate::quote_ident(name)))
        };
        let mut out = vec![(
            DELTA_ROWS.to_string(),
            from_source(DELTA_ROWS).unwrap_or_else(|| "COUNT(*)".into()),
        )];
        for m in &r.metrics {
            if let MetricKind::Base {
                aggregate: Aggregate::Sum(e),
                filter,
            } = &self.model.metrics[m].kind
            {
                let name = delta_values(m);
                let count = from_source(&name).unwrap_or_else(|| match filter {
                    Some(f) => format!(
                        "COUNT(CASE WHEN {} THEN {} END)",
                        f.qualified("f"),
                        e.qualified("f")
                    ),
                    None => format!("COUNT({})", e.qualified("f")),
                });
                out.push((name, count));
            }
        }
        out
    }

    /// How a rollup is brought up to date by adding a load's changed rows to it: when it is a
    /// partners' rollup (not the channel's, whose partner counts are distinct counts) and every
    /// metric is a sum or a count. A distinct count cannot be: a customer's line removed may or
    /// may not have been the customer's last.
    fn rollup_delta(&self, r: &Rollup) -> Option<prism_warehouse::RollupDelta> {
        if r.channel {
            return None;
        }
        let mut measures = Vec::new();
        for m in &r.metrics {
            let MetricKind::Base { aggregate, .. } = &self.model.metrics[m].kind else {
                return None;
            };
            measures.push(match aggregate {
                Aggregate::Sum(_) => prism_warehouse::DeltaMeasure {
                    column: m.clone(),
                    values: Some(delta_values(m)),
                },
                Aggregate::Count(_) | Aggregate::CountRows => prism_warehouse::DeltaMeasure {
                    column: m.clone(),
                    values: None,
                },
                Aggregate::CountDistinct(_) => return None,
            });
        }
        // A dimension's attributes joined after aggregation depend on its key alone.
        let late = self.late_joins(r);
        let (mut groups, mut attributes) = (Vec::new(), Vec::new());
        for d in &r.dimensions {
            let column = self.rollup_column(r, d);
            match self.resolve_dim(d).ok()? {
                Dim::Attribute {
                    dimension,
                    attribute,
                } if late.contains(&dimension)
                    && self.model.dimensions[&dimension].key != attribute =>
                {
                    attributes.push(column)
                }
                _ => groups.push(column),
            }
        }
        if r.grain.is_some() {
            groups.push(self.model.facts[&r.fact].time.clone());
        }
        Some(prism_warehouse::RollupDelta {
            fact: self.model.facts[&r.fact].table.clone(),
            groups,
            attributes,
            measures,
            rows: DELTA_ROWS.to_string(),
        })
    }

    /// Whether rollup `a` answers everything rollup `b` holds, so `b` can be built from `a`.
    fn serves(&self, a: &Rollup, b: &Rollup) -> bool {
        if a.fact != b.fact {
            return false;
        }
        let parts: Vec<&Metric> = b.metrics.iter().map(|m| &self.model.metrics[m]).collect();
        let mut dims: Vec<(String, Dim)> = b
            .dimensions
            .iter()
            .filter_map(|d| Some((d.clone(), self.resolve_dim(d).ok()?)))
            .collect();
        if let Some(g) = &b.grain {
            dims.push((format!("time.{g}"), Dim::Time { grain: *g }));
        }
        // A channel rollup is built as a benchmark over the source reads it.
        let need = Need {
            parts: &parts,
            dims: &dims,
            filters: &[],
            period: None,
            shifts: &[],
            scope: &Scope::All,
            benchmark: b.channel,
        };
        self.fit(a, &need).is_ok()
    }

    /// A dimension of a rollup as a column of its table: a dimension's key or a fact attribute
    /// by the fact's column name (so that scope and joins read it as they read the fact), any
    /// other attribute by its full name.
    pub(crate) fn rollup_column(&self, r: &Rollup, dimension: &str) -> String {
        let fact = &self.model.facts[&r.fact];
        if let Some(a) = fact.attributes.get(dimension) {
            return a.column.clone();
        }
        match dimension.split_once('.') {
            Some((d, a)) if self.model.dimensions[d].key == a => a.to_string(),
            _ => dimension.to_string(),
        }
    }

    /// The SQL that computes a rollup from its fact's base rows: one row per group of its
    /// dimensions and time grain (the grain's first day, in the fact's time column).
    /// `source` is a finer rollup to read instead of the fact's rows.
    ///
    /// An attribute of a dimension whose key the rollup also holds depends on the key alone: it
    /// is not grouped by but joined after aggregation, on the rollup's rows rather than on every
    /// base row (the customers' segments on 0.5 M customer rows instead of 7.7 M order lines).
    pub(crate) fn rollup_sql(&self, r: &Rollup, source: Option<&RollupSource>) -> String {
        let fact = &self.model.facts[&r.fact];
        let day = format!("CAST(f.{} AS DATE)", fact.time);
        let late = self.late_joins(r);
        // Grouped (`inner`) and the rollup's columns in its order (`outer`, over `g`).
        let (mut inner, mut outer) = (Vec::new(), Vec::new());
        for d in &r.dimensions {
            let dim = self
                .resolve_dim(d)
                .expect("the model checked the rollup's dimensions");
            let name = crate::quote_ident(&self.rollup_column(r, d));
            match &dim {
                // Read from the dimension table joined after aggregation, as a query reads it.
                Dim::Attribute {
                    dimension,
                    attribute,
                } if late.contains(dimension)
                    && self.model.dimensions[dimension].key != *attribute =>
                {
                    outer.push(format!("{} AS {name}", self.group_sql(&dim, &day, None)));
                }
                // A dimension's key as the fact holds it, a missing member's NULL included: a
                // query reading another attribute joins the dimension on it, and labels the
                // missing member itself ("(none)"), as over the base table.
                Dim::Attribute {
                    dimension,
                    attribute,
                } if self.model.dimensions[dimension].key == *attribute => {
                    inner.push(format!("{} AS {name}", self.value_sql(&dim, source)));
                    outer.push(format!("g.{name}"));
                }
                _ => {
                    inner.push(format!("{} AS {name}", self.group_sql(&dim, &day, source)));
                    outer.push(format!("g.{name}"));
                }
            }
        }
        if let Some(g) = r.grain {
            let (grouped, read) = grain_columns(g, &fact.time, |d| self.group_sql(d, &day, None));
            inner.push(grouped);
            outer.push(read);
        }
        let groups = inner.len();
        for m in &r.metrics {
            let name = crate::quote_ident(m);
            inner.push(format!(
                "{} AS {name}",
                crate::aggregate_sql(&self.model.metrics[m], source)
            ));
            outer.push(format!("g.{name}"));
        }
        if r.channel {
            inner.push(format!(
                "COUNT(DISTINCT f.partner_id) AS {CHANNEL_PARTNERS}"
            ));
            outer.push(format!("g.{CHANNEL_PARTNERS}"));
        } else {
            for (name, count) in self.delta_counts(r, source) {
                inner.push(format!("{count} AS {}", crate::quote_ident(&name)));
                outer.push(format!("g.{}", crate::quote_ident(&name)));
            }
        }
        let grouped = self.grouped_sql(r, source, &inner, groups, &late);
        // Without a grain made a first day or a join after aggregation, the grouping is the rollup.
        let made_after = r
            .grain
            .is_some_and(|g| !matches!(g, Grain::Day | Grain::Week));
        if !made_after && late.is_empty() {
            return grouped;
        }
        let mut out = format!("SELECT {} FROM ({grouped}) g", outer.join(", "));
        for j in &late {
            let d = &self.model.dimensions[j];
            out.push_str(&format!(
                " LEFT JOIN {} {j} ON g.{} = {j}.{key}",
                d.table,
                crate::quote_ident(&d.key),
                key = d.key
            ));
        }
        out
    }

    /// The rollup's aggregation: its `inner` columns over the fact's rows (or a finer
    /// rollup's), joined to the dimensions read before aggregation, grouped by the first
    /// `groups` columns.
    fn grouped_sql(
        &self,
        r: &Rollup,
        source: Option<&RollupSource>,
        inner: &[String],
        groups: usize,
        late: &std::collections::BTreeSet<String>,
    ) -> String {
        let fact = &self.model.facts[&r.fact];
        let mut sql = format!(
            "SELECT {} FROM {} f",
            inner.join(", "),
            source.map_or_else(|| fact.source_sql(), |s| s.table.clone())
        );
        for j in self
            .rollup_joins(r, source)
            .iter()
            .filter(|j| !late.contains(*j))
        {
            let d = &self.model.dimensions[j];
            sql.push_str(&format!(
                " LEFT JOIN {} {j} ON f.{key} = {j}.{key}",
                d.table,
                key = d.key
            ));
        }
        if r.channel {
            // As a channel benchmark reads the fact: partners' rows, never direct sales.
            sql.push_str(" WHERE f.partner_id IS NOT NULL");
        }
        if groups > 0 {
            sql.push_str(&format!(
                " GROUP BY {}",
                (1..=groups)
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        sql
    }

    /// The dimensions whose attributes a rollup holds beside their key: joined after its
    /// aggregation.
    fn late_joins(&self, r: &Rollup) -> std::collections::BTreeSet<String> {
        r.dimensions
            .iter()
            .filter_map(|d| d.split_once('.'))
            .filter(|(dim, attr)| {
                self.model.dimensions.get(*dim).is_some_and(|x| {
                    x.key != *attr && r.dimensions.contains(&format!("{dim}.{}", x.key))
                })
            })
            .map(|(dim, _)| dim.to_string())
            .collect()
    }

    /// The column a rollup's rows are kept in the order of: its first dimension, so that a
    /// query filtering on it (a partner's pages, a product's customers) reads only its slice.
    fn cluster_column(&self, r: &Rollup) -> Option<String> {
        r.dimensions.first().map(|d| self.rollup_column(r, d))
    }

    /// The dimensions a rollup's build joins (read from `source` when given).
    fn rollup_joins(
        &self,
        r: &Rollup,
        source: Option<&RollupSource>,
    ) -> std::collections::BTreeSet<String> {
        r.dimensions
            .iter()
            .filter_map(|d| self.resolve_dim(d).ok())
            .filter_map(|d| self.joined_dimension(&d, source).map(str::to_string))
            .collect()
    }

    /// Whether a rollup holds a dimension the query cuts or filters by.
    fn holds(&self, r: &Rollup, d: &Dim) -> bool {
        match d {
            Dim::Attribute {
                dimension,
                attribute,
            } => {
                let key = &self.model.dimensions[dimension].key;
                r.dimensions.iter().any(|x| {
                    *x == format!("{dimension}.{key}") || *x == format!("{dimension}.{attribute}")
                })
            }
            Dim::FactAttribute { fact, column } => {
                *fact == r.fact
                    && r.dimensions.iter().any(|x| {
                        self.model.facts[fact]
                            .attributes
                            .get(x)
                            .is_some_and(|a| a.column == *column)
                    })
            }
            Dim::Time { grain } => r.grain.is_some_and(|g| g.composes_into(*grain)),
        }
    }

    /// A query dimension by the name a user gives it.
    fn dim_name(&self, d: &Dim) -> String {
        match d {
            Dim::Attribute {
                dimension,
                attribute,
            } => format!("{dimension}.{attribute}"),
            Dim::FactAttribute { fact, column } => self.model.facts[fact]
                .attributes
                .iter()
                .find(|(_, a)| a.column == *column)
                .map_or(column.clone(), |(n, _)| n.clone()),
            Dim::Time { grain } => format!("time.{grain}"),
        }
    }

    /// Why the rollup's rows are not exactly the query's groups, or `Ok` when they are: then
    /// what it stores for a row (a distinct count, a number of partners) is the answer for that
    /// group as it stands, with nothing added up.
    fn exact(&self, r: &Rollup, need: &Need) -> Result<(), String> {
        if !need.shifts.is_empty() {
            return Err("the query compares with another period".into());
        }
        let asked: Vec<&Dim> = need
            .dims
            .iter()
            .map(|(_, d)| d)
            .filter(|d| !matches!(d, Dim::Time { .. }))
            .collect();
        let held: Vec<Dim> = r
            .dimensions
            .iter()
            .filter_map(|d| self.resolve_dim(d).ok())
            .collect();
        // A customer's name, industry and size come with its key: a rollup holding them beside
        // the key still has one row per key when the query cuts by the key alone.
        let covered = |d: &Dim| asked.contains(&d) || self.comes_with_an_asked_key(d, &asked);
        if let Some(d) = held.iter().find(|d| !covered(d)) {
            return Err(format!("the query does not cut by {}", self.dim_name(d)));
        }
        if let Some(d) = asked.iter().find(|d| !held.contains(d)) {
            return Err(format!("it has no dimension {}", self.dim_name(d)));
        }
        let times: Vec<Grain> = need
            .dims
            .iter()
            .filter_map(|(_, d)| match d {
                Dim::Time { grain } => Some(*grain),
                _ => None,
            })
            .collect();
        match (&r.grain, times.as_slice()) {
            (None, []) => {}
            (Some(g), [t]) if g == t => {}
            (Some(g), _) => return Err(format!("the query does not cut by time.{g} alone")),
            (None, _) => {
                return Err("it holds all time in one row, and the query cuts by time".into());
            }
        }
        if let Some((f, _)) = need
            .filters
            .iter()
            .find(|(_, d)| !covered(d) && !matches!(d, Dim::Time { .. }))
        {
            return Err(format!(
                "the query filters by {}, which it does not cut by",
                f.dimension
            ));
        }
        if need
            .filters
            .iter()
            .any(|(_, d)| matches!(d, Dim::Time { .. }))
        {
            return Err("the query filters by a time dimension".into());
        }
        Ok(())
    }

    /// Whether `d` is an attribute of a dimension whose key the query cuts by: one value per
    /// key (the data contract makes a dimension's key unique), so grouping by it as well splits
    /// no group.
    fn comes_with_an_asked_key(&self, d: &Dim, asked: &[&Dim]) -> bool {
        let Dim::Attribute { dimension, .. } = d else {
            return false;
        };
        let Some(key) = self.model.dimensions.get(dimension).map(|x| &x.key) else {
            return false;
        };
        asked.iter().any(|a| {
            matches!(a, Dim::Attribute { dimension: ad, attribute } if ad == dimension && attribute == key)
        })
    }

    /// Why a rollup cannot answer what a query needs of its fact, or `Ok` when it can.
    fn fit(&self, r: &Rollup, need: &Need) -> Result<(), String> {
        let exact = self.exact(r, need);
        if r.channel {
            self.fit_channel(r, need, &exact)?;
        }
        self.fit_metrics(r, need, &exact)?;
        self.fit_cuts(r, need)?;
        self.fit_partner(r, need)
    }

    /// A channel rollup answers a benchmark only, at exactly its grain, of metrics counting
    /// every row of a partner.
    fn fit_channel(
        &self,
        r: &Rollup,
        need: &Need,
        exact: &Result<(), String>,
    ) -> Result<(), String> {
        if !need.benchmark {
            return Err(
                "holds partners' rows only, with their number: it answers channel benchmarks only"
                    .into(),
            );
        }
        if let Err(why) = exact {
            return Err(format!(
                "holds the number of partners of each row, so it answers a benchmark only at exactly its own grain, and {why}"
            ));
        }
        // Its number of partners is those with any row in the group: the partners behind a
        // figure only when every row of a partner counts in it.
        let fact = &self.model.facts[&r.fact];
        if let Some(p) = need.parts.iter().find(|p| !self.every_row_counts(fact, p)) {
            return Err(format!(
                "holds the number of partners with any row, and `{}` counts only some rows (a condition, or a value that may be empty), so the partners behind it are not stored",
                p.name
            ));
        }
        Ok(())
    }

    /// Whether the rollup holds each metric part asked, or can count it from its keys.
    fn fit_metrics(
        &self,
        r: &Rollup,
        need: &Need,
        exact: &Result<(), String>,
    ) -> Result<(), String> {
        for p in need.parts {
            // An unconditional distinct count of a key the rollup holds needs nothing stored: the
            // rollup's rows hold each key exactly when the base rows do.
            let key_count = matches!(&p.kind, MetricKind::Base { aggregate: Aggregate::CountDistinct(e), filter: None } if self.counts_a_dimension_key(r, e));
            if !r.metrics.contains(&p.name) && !key_count {
                return Err(format!("does not hold `{}`", p.name));
            }
            if let MetricKind::Base {
                aggregate: Aggregate::CountDistinct(e),
                ..
            } = &p.kind
                && !self.counts_a_dimension_key(r, e)
                && let Err(why) = exact
            {
                return Err(format!(
                    "`{}` counts distinct {e}, which is not a dimension of the rollup: its counts cannot be added up, and {why}",
                    p.name
                ));
            }
        }
        Ok(())
    }

    /// Whether the rollup holds the dimensions, filters, period and comparisons asked.
    fn fit_cuts(&self, r: &Rollup, need: &Need) -> Result<(), String> {
        let name = |d: &Dim| self.dim_name(d);
        for (_, d) in need.dims {
            if !self.holds(r, d) {
                return Err(match (d, &r.grain) {
                    (Dim::Time { grain }, Some(g)) => {
                        format!("its grain, {g}, is too coarse for time.{grain}")
                    }
                    (Dim::Time { .. }, None) => {
                        "holds all time in one row, and the query cuts by time".into()
                    }
                    _ => format!("has no dimension {}", name(d)),
                });
            }
        }
        for (_, d) in need.filters {
            if !self.holds(r, d) {
                return Err(format!("cannot filter by {}", name(d)));
            }
        }
        if let Some(p) = need.period {
            match &r.grain {
                None => return Err("holds all time in one row, and the query has a period".into()),
                Some(g) if !aligned(p, *g) => {
                    return Err(format!(
                        "the period {} to {} does not start and end on whole {g}s",
                        p.from, p.to
                    ));
                }
                Some(_) => {}
            }
        }
        for (_, interval) in need.shifts {
            if let Some(g) = r.grain
                && !interval.keeps(g)
            {
                return Err(format!(
                    "the compared period moves dates by {interval}, which does not keep whole {g}s"
                ));
            }
        }
        Ok(())
    }

    /// A rollup without the partner's key answers only everyone's questions that do not cut
    /// by partner.
    fn fit_partner(&self, r: &Rollup, need: &Need) -> Result<(), String> {
        let partner_key = format!(
            "partner.{}",
            self.model
                .dimensions
                .get("partner")
                .map_or("partner_id", |d| d.key.as_str())
        );
        if !r.dimensions.contains(&partner_key) {
            let uses_partner = need
                .dims
                .iter()
                .map(|(_, d)| d)
                .chain(need.filters.iter().map(|(_, d)| d))
                .any(|d| matches!(d, Dim::Attribute { dimension, .. } if dimension == "partner"));
            if need.benchmark && !r.channel {
                return Err(format!(
                    "has no {partner_key}, which a channel benchmark counts partners by"
                ));
            }
            if *need.scope != Scope::All {
                return Err(format!(
                    "has no {partner_key}, which the partner scope needs"
                ));
            }
            if uses_partner {
                return Err(format!(
                    "has no {partner_key}, which sets direct sales apart"
                ));
            }
        }
        Ok(())
    }

    /// Whether every row of the fact counts in a base metric: `COUNT(*)`, or a count of a
    /// dimension's key (which the data contract requires on every row), with no condition.
    fn every_row_counts(&self, fact: &prism_model::Fact, m: &Metric) -> bool {
        match &m.kind {
            MetricKind::Base {
                aggregate: Aggregate::CountRows,
                filter: None,
            } => true,
            MetricKind::Base {
                aggregate: Aggregate::Count(e) | Aggregate::CountDistinct(e),
                filter: None,
            } => fact.reaches.iter().any(|d| {
                self.model
                    .dimensions
                    .get(d)
                    .is_some_and(|x| e.column().is_some_and(|c| x.key == c))
            }),
            _ => false,
        }
    }

    /// Whether `expr` (a distinct count's expression) is the key column of a dimension the
    /// rollup holds: then each key appears in a rollup row exactly when it appears in a base row.
    fn counts_a_dimension_key(&self, r: &Rollup, expr: &prism_model::Expression) -> bool {
        let Some(column) = expr.column() else {
            return false;
        };
        r.dimensions.iter().any(|d| {
            d.split_once('.').is_some_and(|(dim, attr)| {
                self.model
                    .dimensions
                    .get(dim)
                    .is_some_and(|x| x.key == attr && attr == column)
            })
        })
    }

    /// The smallest built rollup that answers one fact's aggregation, with the choice explained.
    pub(crate) fn navigate<'a>(
        &'a self,
        fact: &str,
        need: &Need,
        built: Option<&BuiltRollups>,
    ) -> (Option<RollupSource<'a>>, RollupChoice) {
        let mut choice = RollupChoice {
            fact: fact.to_string(),
            rollup: None,
            reason: None,
            passed_over: Vec::new(),
        };
        let declared: Vec<&Rollup> = self
            .model
            .rollups
            .values()
            .filter(|r| r.fact == fact)
            .collect();
        if declared.is_empty() {
            choice.reason = Some(format!("the model declares no rollup of {fact}"));
            return (None, choice);
        }
        if !self.use_rollups {
            choice.reason = Some("rollups are turned off".into());
            return (None, choice);
        }
        let mut fitting: Vec<(&Rollup, String, u64, arrow::datatypes::SchemaRef)> = Vec::new();
        for r in declared {
            let table = self.rollup_table(&r.name);
            let Some(b) = built.and_then(|b| b.tables.get(&table)) else {
                let earlier =
                    built.is_some_and(|b| b.tables.keys().any(|t| is_table_of(t, &r.name)));
                choice.passed_over.push((
                    r.name.clone(),
                    if earlier {
                        "was built from an earlier definition; the next load rebuilds it".into()
                    } else {
                        "is not built in this warehouse version; the next load builds it".into()
                    },
                ));
                continue;
            };
            match self.fit(r, need) {
                Ok(()) => fitting.push((r, table, b.rows, b.schema.clone())),
                Err(why) => choice.passed_over.push((r.name.clone(), why)),
            }
        }
        fitting.sort_by(|a, b| a.2.cmp(&b.2).then_with(|| a.0.name.cmp(&b.0.name)));
        let mut fitting = fitting.into_iter();
        let Some((r, table, rows, schema)) = fitting.next() else {
            choice.reason = Some(format!("no rollup of {fact} answers this query"));
            return (None, choice);
        };
        for (other, _, other_rows, _) in fitting {
            choice.passed_over.push((
                other.name.clone(),
                format!("answers too, but has {other_rows} rows against {rows}"),
            ));
        }
        choice.passed_over.sort();
        choice.rollup = Some(r.name.clone());
        let exact = self.exact(r, need).is_ok();
        (
            Some(RollupSource {
                rollup: r,
                table,
                schema,
                exact,
            }),
            choice,
        )
    }
}

/// The table a build called `name` with this definition is written into:
/// `rollup_<name>_<digest of the definition>`.
pub(crate) fn table_of(name: &str, definition: &str) -> String {
    format!(
        "rollup_{name}_{:012x}",
        xxhash_rust::xxh3::xxh3_64(definition.as_bytes()) >> 16
    )
}

/// Whether `table` is a table of the rollup `name` (of any definition): `rollup_<name>_<digest>`.
pub fn is_table_of(table: &str, name: &str) -> bool {
    table
        .strip_prefix("rollup_")
        .and_then(|t| t.strip_prefix(name))
        .and_then(|t| t.strip_prefix('_'))
        .is_some_and(|digest| digest.len() == 12 && digest.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The column of a channel rollup holding the number of partners in each row.
pub(crate) const CHANNEL_PARTNERS: &str = "channel_partners";

/// A partners' rollup's count of its fact rows in each row (see `Engine::delta_counts`).
const DELTA_ROWS: &str = "__rows";

/// The column of a partners' rollup counting the rows with a value of its sum `metric`: named
/// in one place, as the rollup's SQL writes it and a load's maintenance reads it.
fn delta_values(metric: &str) -> String {
    format!("__values.{metric}")
}

/// A base metric summed again from a rollup's column: sums and counts add up; a distinct count
/// of a key the rollup holds counts its keys (those of the rows where it was not zero, when the
/// count has a condition); a distinct count the rollup stores is read as stored when its rows
/// are the query's groups.
pub(crate) fn reaggregate(m: &Metric, source: &RollupSource) -> String {
    let MetricKind::Base { aggregate, filter } = &m.kind else {
        unreachable!("ratios are expanded into their parts")
    };
    let column = format!("f.{}", crate::quote_ident(&m.name));
    match aggregate {
        // One row per group: its sum is the row's own count.
        Aggregate::CountDistinct(_)
            if source.exact && source.schema.field_with_name(&m.name).is_ok() =>
        {
            format!("CAST(SUM({column}) AS BIGINT)")
        }
        Aggregate::Sum(_) => {
            // Summed again, a decimal would widen; the answer keeps the type the base table gives.
            match source
                .schema
                .field_with_name(&m.name)
                .map(|f| f.data_type().clone())
            {
                Ok(arrow::datatypes::DataType::Decimal128(p, s)) => {
                    format!("CAST(SUM({column}) AS DECIMAL({p}, {s}))")
                }
                _ => format!("SUM({column})"),
            }
        }
        Aggregate::Count(_) | Aggregate::CountRows => format!("CAST(SUM({column}) AS BIGINT)"),
        // A key the rollup holds (see `counts_a_dimension_key`): a column of its own.
        Aggregate::CountDistinct(e) if filter.is_none() => {
            format!("COUNT(DISTINCT {})", e.qualified("f"))
        }
        Aggregate::CountDistinct(e) => format!(
            "COUNT(DISTINCT CASE WHEN {column} > 0 THEN {} END)",
            e.qualified("f")
        ),
    }
}

/// `reaggregate` as a typed expression, for a question read from a rollup.
pub(crate) fn reaggregate_expr(
    engine: &Engine,
    m: &Metric,
    source: &RollupSource,
) -> Result<datafusion::logical_expr::Expr, crate::EngineError> {
    use arrow::datatypes::DataType;
    use datafusion::functions_aggregate::expr_fn::{count_distinct, sum};
    use datafusion::logical_expr::{cast, lit, when};
    let MetricKind::Base { aggregate, filter } = &m.kind else {
        unreachable!("ratios are expanded into their parts")
    };
    let column = crate::compile::of("f", &m.name);
    let stored = source.schema.field_with_name(&m.name).ok();
    Ok(match aggregate {
        // One row per group: its sum is the row's own count.
        Aggregate::CountDistinct(_) if source.exact && stored.is_some() => {
            cast(sum(column), DataType::Int64)
        }
        // Summed again, a decimal would widen; the answer keeps the type the base table gives.
        Aggregate::Sum(_) => match stored.map(|f| f.data_type().clone()) {
            Some(t @ DataType::Decimal128(..)) => cast(sum(column), t),
            _ => sum(column),
        },
        Aggregate::Count(_) | Aggregate::CountRows => cast(sum(column), DataType::Int64),
        // A key the rollup holds (see `counts_a_dimension_key`): a column of its own.
        Aggregate::CountDistinct(e) => {
            let key = engine.model_expr(e, "f", &source.schema)?;
            match filter {
                None => count_distinct(key),
                Some(_) => count_distinct(when(column.gt(lit(0i64)), key).end()?),
            }
        }
    })
}

/// A base metric read from a rollup whose rows are the query's groups (`RollupSource::exact`),
/// as the row's own value, of the type `reaggregate_expr` gives: summing one row is the row.
/// `None` for a distinct count of a key the rollup holds without a column of its own, which is
/// counted over the rows.
pub(crate) fn stored_expr(
    m: &Metric,
    source: &RollupSource,
) -> Option<datafusion::logical_expr::Expr> {
    use arrow::datatypes::DataType;
    use datafusion::logical_expr::cast;
    let MetricKind::Base { aggregate, .. } = &m.kind else {
        unreachable!("ratios are expanded into their parts")
    };
    let stored = source.schema.field_with_name(&m.name).ok()?;
    let column = crate::compile::of("f", &m.name);
    Some(match aggregate {
        // A stored sum is of a type `SUM` gives (the table keeps its definition's types), and
        // `SUM` over it gives that type again; any other is grouped, as before.
        Aggregate::Sum(_) => match stored.data_type() {
            DataType::Decimal128(..) | DataType::Int64 | DataType::UInt64 | DataType::Float64 => {
                column
            }
            _ => return None,
        },
        Aggregate::Count(_) | Aggregate::CountRows | Aggregate::CountDistinct(_) => {
            cast(column, DataType::Int64)
        }
    })
}

/// A rollup's time column: grouped (`inner`) and as the rollup holds it (`outer`, over `g`).
/// Days and weeks are grouped as dates; months, quarters and years as numbers (2024 * 100 + 5),
/// far cheaper than truncating every row's date, made the grain's first day after aggregation.
fn grain_columns(
    grain: Grain,
    time_column: &str,
    group_sql: impl Fn(&Dim) -> String,
) -> (String, String) {
    let time = crate::quote_ident(time_column);
    let grouped = format!("{} AS {time}", group_sql(&Dim::Time { grain }));
    let first_day = match grain {
        Grain::Month => Some("make_date(CAST({t} / 100 AS INT), CAST({t} % 100 AS INT), 1)"),
        Grain::Quarter => {
            Some("make_date(CAST({t} / 10 AS INT), CAST(({t} % 10) * 3 - 2 AS INT), 1)")
        }
        Grain::Year => Some("make_date(CAST({t} AS INT), 1, 1)"),
        Grain::Day | Grain::Week => None,
    }
    .map(|e| e.replace("{t}", &format!("g.{time}")));
    let read = match first_day {
        Some(e) => format!("{e} AS {time}"),
        None => format!("g.{time}"),
    };
    (grouped, read)
}

/// The rollups' definitions are SQL text, planned by DataFusion's SQL planner when a load
/// builds them, and their text names their tables (`rollup_table_of`): these are a dimension,
/// its value and a metric's aggregate as that text.
impl Engine {
    /// The SQL expression of a dimension over a fact aliased `f`, joined dimensions aliased by name.
    /// What a fact row is grouped by for a dimension: the raw column, or for a time grain a
    /// number or date that is cheap to group; the label users see is made after aggregation
    /// (`across::label`), on a few rows instead of every row. `day` is the fact's date, shifted
    /// forward when the aggregation is of a compared period.
    pub(crate) fn group_sql(&self, dim: &Dim, day: &str, source: Option<&RollupSource>) -> String {
        match dim {
            Dim::Attribute {
                dimension,
                attribute,
            } => {
                let d = &self.model.dimensions[dimension];
                let value = self.value_sql(dim, source);
                match &d.absent {
                    // A row without a member is the dimension's "(none)", whatever attribute;
                    // a rollup that holds the attribute holds it so already.
                    Some(label) if !self.stored_in(source, dimension, attribute) => format!(
                        "CASE WHEN f.{} IS NULL THEN {} ELSE CAST({value} AS VARCHAR) END",
                        d.key,
                        quote_literal(label)
                    ),
                    _ => value,
                }
            }
            Dim::FactAttribute { column, .. } => format!("f.{column}"),
            Dim::Time { grain } => {
                let part = |p: &str| format!("CAST(date_part('{p}', {day}) AS BIGINT)");
                match grain {
                    Grain::Day => day.to_string(),
                    Grain::Week => format!("CAST(date_trunc('week', {day}) AS DATE)"),
                    Grain::Month => format!("{} * 100 + {}", part("year"), part("month")),
                    Grain::Quarter => format!("{} * 10 + {}", part("year"), part("quarter")),
                    Grain::Year => part("year"),
                }
            }
        }
    }

    /// An attribute's own value over a fact row, of the type the warehouse holds it in: a
    /// missing member's is NULL. A rollup that holds the attribute has it as a column named
    /// after it; a dimension's key is on the fact itself, so it needs no join.
    pub(crate) fn value_sql(&self, dim: &Dim, source: Option<&RollupSource>) -> String {
        match dim {
            Dim::Attribute {
                dimension,
                attribute,
            } if self.stored_in(source, dimension, attribute) => {
                format!("f.{}", quote_ident(&format!("{dimension}.{attribute}")))
            }
            Dim::Attribute {
                dimension,
                attribute,
            } => {
                let d = &self.model.dimensions[dimension];
                match &d.attributes[attribute].expression {
                    Some(e) => e.qualified(dimension),
                    None if *attribute == d.key => format!("f.{attribute}"),
                    None => format!("{dimension}.{attribute}"),
                }
            }
            Dim::FactAttribute { column, .. } => format!("f.{column}"),
            Dim::Time { .. } => self.group_sql(dim, "day", source),
        }
    }
}

/// A base metric's aggregate over its fact's rows (`f`), or summed again from a rollup's.
pub(crate) fn aggregate_sql(m: &Metric, source: Option<&RollupSource>) -> String {
    if let Some(s) = source {
        return reaggregate(m, s);
    }
    let MetricKind::Base { aggregate, filter } = &m.kind else {
        unreachable!("ratios are expanded into their parts")
    };
    let cond = |e: &str| match filter {
        Some(f) => format!("CASE WHEN {} THEN {} END", f.qualified("f"), e),
        None => e.to_string(),
    };
    match aggregate {
        Aggregate::Sum(e) => format!("SUM({})", cond(&e.qualified("f"))),
        Aggregate::CountRows => match filter {
            Some(f) => format!("COUNT(CASE WHEN {} THEN 1 END)", f.qualified("f")),
            None => "COUNT(*)".into(),
        },
        Aggregate::Count(e) => format!("COUNT({})", cond(&e.qualified("f"))),
        Aggregate::CountDistinct(e) => format!("COUNT(DISTINCT {})", cond(&e.qualified("f"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_belongs_to_the_rollup_whose_whole_name_it_carries() {
        assert!(is_table_of(
            "rollup_orders_by_partner_month_0123456789ab",
            "orders_by_partner_month"
        ));
        // `orders` is a prefix of the name, not the name.
        assert!(!is_table_of(
            "rollup_orders_by_partner_month_0123456789ab",
            "orders"
        ));
        assert!(!is_table_of(
            "rollup_orders_by_partner_month_0123456789ab",
            "orders_by_partner"
        ));
    }
}
