//! One fact's aggregation: its parts by the asked dimensions, over the audience's rows, the
//! period and the filters, read from the base table or a rollup.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use chrono::NaiveDate;
use prism_model::{Aggregate, Grain, Metric, MetricKind};

use super::late::statement;
use super::{Comparison, Plan, Shift};
use crate::rollups::{self, RollupSource};
use crate::{
    DIRECT_LABEL, Dim, Engine, EngineError, Filter, FilterOp, Period, Scope, quote_ident,
    quote_literal,
};

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

    /// One fact's aggregation: its parts by the asked dimensions, over the scope, the period and
    /// the filters. With a shift, each row's date moves forward by it first, so that the rows of
    /// the compared period land on the dimensions and the period of the query.
    pub(crate) fn fact_sql(
        &self,
        plan: &Plan<'_>,
        parts: &[&Metric],
        shift: Option<Shift>,
        source: Option<&RollupSource>,
        loaded_on: Option<NaiveDate>,
    ) -> Result<String, EngineError> {
        let fact_name = &parts[0].fact;
        let fact = &self.model.facts[fact_name];
        // A state is read on a day (`as_of`) rather than over the period: each row of the fact
        // is paired with the last day of the period, or of each time row, and the row's date
        // is that day.
        let state = parts.iter().any(|p| p.state);
        let time = if state {
            "f.as_of".to_string()
        } else {
            format!("CAST(f.{} AS DATE)", fact.time)
        };
        let day = match shift {
            None => time,
            Some(s) => format!("({time} + {})", s.interval_sql()),
        };
        let joins = self.dimensions_joined(plan, fact_name, source)?;
        if source.is_none()
            && !state
            && let Some(sql) = self.late_joined_sql(plan, parts, &day, &joins)?
        {
            return Ok(sql);
        }
        // Whether a row is a direct sale, read from the partner key after grouping when the key
        // is grouped by: one string key groups by DataFusion's fastest path, a key and a flag
        // do not.
        let direct_key = self.direct_from_key(plan, &day, source);
        let select = self.fact_select(plan, parts, &day, source, direct_key.is_none());
        let from = match source {
            Some(s) => s.table.clone(),
            None if state => self.state_source(plan, fact, shift, loaded_on),
            None => fact.source_sql(),
        };
        let joined: Vec<String> = joins.iter().map(|j| self.join_sql(j)).collect();
        let conditions = self.fact_conditions(plan, source, state, &day)?;
        let mut group: Vec<String> = (0..plan.dims.len()).map(|i| format!("d{i}")).collect();
        if !group.is_empty() && direct_flag(&plan.dims, plan.scope) && direct_key.is_none() {
            group.push("direct".into());
        }
        let sql = statement(&select, &from, &joined, &conditions, &group);
        Ok(match direct_key {
            Some(i) => format!("SELECT *, d{i} IS NULL AS direct FROM ({sql}) g"),
            None => sql,
        })
    }

    /// The join of a fact's rows (`f`) to a dimension, aliased by its name, on its key.
    pub(crate) fn join_sql(&self, dimension: &str) -> String {
        let d = &self.model.dimensions[dimension];
        format!(
            "LEFT JOIN {} {dimension} ON f.{key} = {dimension}.{key}",
            d.table,
            key = d.key
        )
    }

    /// The conditions on a fact's rows: the audience's, the period's (a state's days are the
    /// period's already) and each filter's.
    fn fact_conditions(
        &self,
        plan: &Plan<'_>,
        source: Option<&RollupSource>,
        state: bool,
        day: &str,
    ) -> Result<Vec<String>, EngineError> {
        // A channel rollup holds partners' rows only, and no partner column.
        let channel = source.is_some_and(|s| s.rollup.channel);
        let mut conditions: Vec<String> = if channel {
            Vec::new()
        } else {
            scope_condition(plan.scope, plan.benchmark)
                .into_iter()
                .collect()
        };
        if let (Some(p), false) = (&plan.query.period, state) {
            conditions.push(format!(
                "{day} BETWEEN DATE '{}' AND DATE '{}'",
                p.from, p.to
            ));
        }
        for (f, d) in &plan.filters {
            conditions.push(self.filter_sql(f, d, day, source, plan.scope)?);
        }
        Ok(conditions)
    }

    /// Which asked dimension is the partner key as the fact holds it, when the aggregation
    /// must say which rows are direct sales: its NULL is a direct sale.
    fn direct_from_key(
        &self,
        plan: &Plan<'_>,
        day: &str,
        source: Option<&RollupSource>,
    ) -> Option<usize> {
        if !direct_flag(&plan.dims, plan.scope) {
            return None;
        }
        plan.dims
            .iter()
            .position(|(_, d)| self.group_sql(d, day, source) == "f.partner_id")
    }

    /// The dimensions a fact's rows must be joined to for the asked dimensions and filters;
    /// refused, with which metric and why, when the fact does not reach one of them.
    fn dimensions_joined(
        &self,
        plan: &Plan<'_>,
        fact_name: &str,
        source: Option<&RollupSource>,
    ) -> Result<BTreeSet<String>, EngineError> {
        let fact = &self.model.facts[fact_name];
        let reaches = |dim: &Dim, used_as: &str| -> Result<(), EngineError> {
            let ok = match dim {
                Dim::Attribute { dimension, .. } => fact.reaches.contains(dimension),
                Dim::FactAttribute { fact: f, .. } => f == fact_name,
                Dim::Time { .. } => true,
            };
            if ok {
                return Ok(());
            }
            let metric = plan
                .metrics
                .iter()
                .find(|m| {
                    metric_parts(&self.model, m)
                        .iter()
                        .any(|p| p.fact == fact_name)
                })
                .map_or("", |m| m.name.as_str());
            // A ratio of two facts' metrics reads the other fact too.
            let relation = if plan
                .metrics
                .iter()
                .any(|m| m.name == metric && m.fact == fact_name)
            {
                "is a metric of"
            } else {
                "reads"
            };
            Err(EngineError::Invalid(format!(
                "`{metric}` {relation} {fact_name}, which does not reach the dimension `{used_as}`{}",
                match dim {
                    Dim::FactAttribute { fact, .. } =>
                        format!(" (an attribute of {fact}, usable with that fact's metrics only)"),
                    _ => String::new(),
                }
            )))
        };
        let mut joins: BTreeSet<String> = BTreeSet::new();
        let used = plan
            .dims
            .iter()
            .map(|(name, d)| (name.as_str(), d))
            .chain(plan.filters.iter().map(|(f, d)| (f.dimension.as_str(), d)));
        for (used_as, d) in used {
            reaches(d, used_as)?;
            if let Some(dimension) = self.joined_dimension(d, source) {
                joins.insert(dimension.to_string());
            }
        }
        Ok(joins)
    }

    /// The SELECT list of a fact's aggregation: the dimension keys (`d0`, …), whether the row
    /// is a direct sale (for a brand-owner user's partner cut, unless `direct` is false: it is
    /// read from the partner key after grouping), each part, and in a benchmark
    /// each part's contributing partners.
    fn fact_select(
        &self,
        plan: &Plan<'_>,
        parts: &[&Metric],
        day: &str,
        source: Option<&RollupSource>,
        direct: bool,
    ) -> Vec<String> {
        let mut select = Vec::new();
        for (i, (_, d)) in plan.dims.iter().enumerate() {
            select.push(format!("{} AS d{i}", self.group_sql(d, day, source)));
        }
        if direct && direct_flag(&plan.dims, plan.scope) {
            select.push("f.partner_id IS NULL AS direct".into());
        }
        for p in parts {
            select.push(format!(
                "{} AS {}",
                aggregate_sql(p, source),
                quote_ident(&p.name)
            ));
        }
        if plan.benchmark {
            let channel = source.is_some_and(|s| s.rollup.channel);
            // Per part, the partners with rows in it: a figure is over the partners that
            // contribute to it, not over every partner with a row of the fact.
            for p in parts {
                let count = if channel {
                    // Its rows are the query's groups (navigation saw to it), and each of its
                    // parts has every row of a partner in it (`rollups::fit`).
                    format!("CAST(SUM(f.{}) AS BIGINT)", rollups::CHANNEL_PARTNERS)
                } else {
                    format!(
                        "COUNT(DISTINCT CASE WHEN {} THEN f.partner_id END)",
                        contributes_sql(p, source)
                    )
                };
                select.push(format!(
                    "{count} AS {}",
                    quote_ident(&contributors_column(&p.name))
                ));
            }
        }
        select
    }

    /// A state's base rows, each paired with the day it is read at (`as_of`).
    fn state_source(
        &self,
        plan: &Plan<'_>,
        fact: &prism_model::Fact,
        shift: Option<Shift>,
        loaded_on: Option<NaiveDate>,
    ) -> String {
        let dims_grain = plan
            .dims
            .iter()
            .map(|(_, d)| d)
            .chain(plan.filters.iter().map(|(_, d)| d))
            .filter_map(|d| match d {
                Dim::Time { grain } => Some(*grain),
                _ => None,
            })
            .min();
        format!(
            "(SELECT t.*, b.as_of FROM {} t CROSS JOIN ({}) b)",
            fact.source_sql(),
            self.state_days(
                fact,
                dims_grain,
                plan.query.period.as_ref(),
                shift,
                loaded_on
            )
        )
    }

    /// A filter's condition on a fact row. A time grain compares the key it groups by; an
    /// attribute compares its own typed value (a price as a number, a day as a date), and the
    /// members without a value of their own that people name by a label — direct sales
    /// ("(direct)") in a brand-owner user's partner dimension, a fact row without a member
    /// ("(none)") — compare by the missing key.
    pub(crate) fn filter_sql(
        &self,
        f: &Filter,
        d: &Dim,
        day: &str,
        source: Option<&RollupSource>,
        scope: &Scope,
    ) -> Result<String, EngineError> {
        if let Dim::Time { grain } = d {
            let expr = self.group_sql(d, day, source);
            return condition(&expr, &f.op, |v| time_key(*grain, v, &f.dimension), None);
        }
        let missing = self.missing_member(d, scope);
        let stored_label = match d {
            Dim::Attribute {
                dimension,
                attribute,
            } => {
                self.model.dimensions[dimension].absent.is_some()
                    && self.stored_in(source, dimension, attribute)
            }
            _ => false,
        };
        if stored_label {
            // A rollup holds this attribute as its label, "(none)" included: compare labels.
            let expr = self.group_sql(d, day, source);
            return condition(&expr, &f.op, |v| Ok(quote_literal(v)), None);
        }
        let expr = self.value_sql(d, source);
        let ty = self.attribute_types.get(&f.dimension);
        condition(
            &expr,
            &f.op,
            |v| typed_literal(ty, v, &f.dimension),
            missing.as_ref().map(|(c, l)| (c.as_str(), l.as_str())),
        )
    }

    /// The members of a dimension that have no value of their own, as a condition on the fact
    /// row and the label people name them by: direct sales in a brand-owner user's partner
    /// dimension, and a fact row without a member of a dimension that names one (`absent`).
    fn missing_member(&self, d: &Dim, scope: &Scope) -> Option<(String, String)> {
        let Dim::Attribute { dimension, .. } = d else {
            return None;
        };
        if dimension == "partner" && *scope == Scope::All {
            return Some(("f.partner_id IS NULL".into(), DIRECT_LABEL.into()));
        }
        let dim = &self.model.dimensions[dimension];
        dim.absent
            .as_ref()
            .map(|label| (format!("f.{} IS NULL", dim.key), label.clone()))
    }

    /// The days a state is read at (`as_of`), one row each: the last day of the period (or,
    /// without one, the day of the last load); by a time grain, the last day of each of its
    /// rows within the period (without one, from the fact's first row to the day of the last
    /// load). For a compared period, the same days that far back.
    pub(crate) fn state_days(
        &self,
        fact: &prism_model::Fact,
        grain: Option<Grain>,
        period: Option<&Period>,
        shift: Option<Shift>,
        loaded_on: Option<NaiveDate>,
    ) -> String {
        let back = |d: NaiveDate| match shift {
            None => d,
            Some(Shift::Days(n)) => d - chrono::Duration::days(n),
            Some(Shift::Months(n)) => d.checked_sub_months(chrono::Months::new(n)).unwrap_or(d),
        };
        let last = period.map(|p| back(p.to)).or(loaded_on.map(back));
        let Some(grain) = grain else {
            return match last {
                Some(d) => format!("SELECT DATE '{d}' AS as_of"),
                // Compiled without a session: the day it runs.
                None => "SELECT current_date() AS as_of".into(),
            };
        };
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("date");
        let today = chrono::Utc::now().date_naive();
        let last = last.unwrap_or(today);
        // Without a period, from 1990 on: the fact's first row bounds it below.
        let first = period
            .map(|p| back(p.from))
            .unwrap_or(NaiveDate::from_ymd_opt(1990, 1, 1).expect("date"))
            .min(last);
        let bucket = self.group_sql(&Dim::Time { grain }, "day", None);
        let mut sql = format!(
            "SELECT MAX(day) AS as_of FROM (SELECT CAST(CAST(value AS INT) AS DATE) AS day FROM range({}, {})) days",
            (first - epoch).num_days(),
            (last - epoch).num_days() + 1
        );
        if period.is_none() {
            write!(
                sql,
                " WHERE day >= (SELECT MIN(CAST({} AS DATE)) FROM {})",
                fact.time, fact.table
            )
            .expect("string");
        }
        write!(sql, " GROUP BY {bucket}").expect("string");
        sql
    }
}

/// A time grain's value as users write it (`2024-03-05`, `2024-W10`, `2024-03`, `2024-Q1`,
/// `2024`), as the SQL literal of the key `group_sql` groups that grain by.
pub(crate) fn time_key(grain: Grain, value: &str, dimension: &str) -> Result<String, EngineError> {
    let v = value.trim();
    let refuse = |what: &str, example: &str| {
        EngineError::Invalid(format!(
            "filter {dimension}: `{v}` is not {what}: write it {example}"
        ))
    };
    let number = |s: &str, digits: usize| -> Option<i64> {
        (s.len() == digits && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match grain {
        Grain::Day => NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .ok()
            .filter(|_| v.len() == 10)
            .map(|d| format!("DATE '{d}'"))
            .ok_or_else(|| refuse("a day", "2024-03-05")),
        Grain::Week => v
            .split_once("-W")
            .and_then(|(y, w)| {
                let (y, w) = (number(y, 4)?, number(w, 2)?);
                NaiveDate::from_isoywd_opt(y as i32, w as u32, chrono::Weekday::Mon)
            })
            .map(|monday| format!("DATE '{monday}'"))
            .ok_or_else(|| refuse("an ISO week", "2024-W10")),
        Grain::Month => v
            .split_once('-')
            .and_then(|(y, m)| {
                let (y, m) = (number(y, 4)?, number(m, 2)?);
                (1..=12).contains(&m).then_some(y * 100 + m)
            })
            .map(|k| k.to_string())
            .ok_or_else(|| refuse("a month", "2024-03")),
        Grain::Quarter => v
            .split_once("-Q")
            .and_then(|(y, q)| {
                let (y, q) = (number(y, 4)?, number(q, 1)?);
                (1..=4).contains(&q).then_some(y * 10 + q)
            })
            .map(|k| k.to_string())
            .ok_or_else(|| refuse("a quarter", "2024-Q1")),
        Grain::Year => number(v, 4)
            .map(|y| y.to_string())
            .ok_or_else(|| refuse("a year", "2024")),
    }
}

/// A filter's operation on `expr` as SQL, each value written as a literal by `literal`.
/// `missing` is the condition of the rows that have no value and the label users name them by:
/// they match a list that names the label, are kept by an exclusion that does not name it,
/// and never fall in a range.
fn condition(
    expr: &str,
    op: &FilterOp,
    literal: impl Fn(&str) -> Result<String, EngineError>,
    missing: Option<(&str, &str)>,
) -> Result<String, EngineError> {
    let list = |values: &[&String]| -> Result<String, EngineError> {
        Ok(values
            .iter()
            .map(|v| literal(v))
            .collect::<Result<Vec<_>, _>>()?
            .join(", "))
    };
    // The missing rows' condition when the list names their label, and the other values.
    fn split<'v, 'm>(
        values: &'v [String],
        missing: Option<(&'m str, &str)>,
    ) -> (Option<&'m str>, Vec<&'v String>) {
        let (named, rest): (Vec<&String>, Vec<&String>) = values
            .iter()
            .partition(|v| missing.is_some_and(|(_, label)| v.trim() == label));
        (missing.filter(|_| !named.is_empty()).map(|(c, _)| c), rest)
    }
    // An expression over a missing member's row may still give a value (`COALESCE(x, 'none')`
    // over the NULLs of an outer join): only the members themselves have values.
    let member = missing
        .map(|(c, _)| format!("NOT ({c}) AND "))
        .unwrap_or_default();
    Ok(match op {
        FilterOp::In(values) => {
            let (named, rest) = split(values, missing);
            let mut any = Vec::new();
            if !rest.is_empty() {
                any.push(format!("({member}{expr} IN ({}))", list(&rest)?));
            }
            any.extend(named.map(|c| format!("({c})")));
            match any.len() {
                0 => "FALSE".into(),
                _ => format!("({})", any.join(" OR ")),
            }
        }
        FilterOp::NotIn(values) => {
            let (named, rest) = split(values, missing);
            let others = match rest.is_empty() {
                true => None,
                false => Some(format!("{expr} NOT IN ({})", list(&rest)?)),
            };
            match (missing, named, others) {
                // The missing rows have no value, so NOT IN would drop them: keep them apart.
                (_, Some(c), Some(o)) => format!("(NOT ({c}) AND {o})"),
                (_, Some(c), None) => format!("NOT ({c})"),
                (Some((c, _)), None, Some(o)) => format!("(({c}) OR {o})"),
                (_, None, Some(o)) => o,
                (_, None, None) => "TRUE".into(),
            }
        }
        FilterOp::Range { from, to } => {
            let mut c = Vec::new();
            if let Some(a) = from {
                c.push(format!("{expr} >= {}", literal(a)?));
            }
            if let Some(b) = to {
                c.push(format!("{expr} <= {}", literal(b)?));
            }
            if c.is_empty() {
                c.push("TRUE".into());
            }
            format!("{member}{}", c.join(" AND "))
        }
    })
}

/// A value of an attribute as users write it, as a SQL literal of the attribute's type: a
/// number, a day, true or false, or text. A value that is not of the type is refused with the
/// filter's name, rather than compared as text (where `9` sorts after `10`).
pub(crate) fn typed_literal(
    ty: Option<&arrow::datatypes::DataType>,
    value: &str,
    dimension: &str,
) -> Result<String, EngineError> {
    use arrow::datatypes::DataType as T;
    let v = value.trim();
    let refuse = |what: &str, example: &str| {
        EngineError::Invalid(format!(
            "filter {dimension}: `{v}` is not {what}: write it {example}"
        ))
    };
    // Digits with an optional sign and decimal point: what a price or a count is written as.
    let decimal = || {
        let digits = v.strip_prefix('-').unwrap_or(v);
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        !digits.is_empty()
            && digits != "."
            && whole.bytes().all(|b| b.is_ascii_digit())
            && fraction.bytes().all(|b| b.is_ascii_digit())
    };
    match ty {
        Some(t) if t.is_integer() => v
            .parse::<i64>()
            .map(|n| n.to_string())
            .map_err(|_| refuse("a whole number", "like 12")),
        Some(T::Decimal128(p, s) | T::Decimal256(p, s)) if decimal() => {
            Ok(format!("CAST('{v}' AS DECIMAL({p}, {s}))"))
        }
        Some(T::Float16 | T::Float32 | T::Float64) if decimal() => {
            Ok(format!("CAST('{v}' AS DOUBLE)"))
        }
        Some(T::Decimal128(..) | T::Decimal256(..) | T::Float16 | T::Float32 | T::Float64) => {
            Err(refuse("a number", "like 1200 or 99.50"))
        }
        Some(T::Date32 | T::Date64) => NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .map(|d| format!("DATE '{d}'"))
            .map_err(|_| refuse("a day", "like 2024-03-05")),
        Some(T::Timestamp(..)) => ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"]
            .iter()
            .find_map(|f| chrono::NaiveDateTime::parse_from_str(v, f).ok())
            .or_else(|| {
                NaiveDate::parse_from_str(v, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
            })
            .map(|t| format!("TIMESTAMP '{}'", t.format("%Y-%m-%d %H:%M:%S")))
            .ok_or_else(|| refuse("a day or a time", "like 2024-03-05 or 2024-03-05 14:30:00")),
        Some(T::Boolean) => match v.to_ascii_lowercase().as_str() {
            "true" | "yes" => Ok("TRUE".into()),
            "false" | "no" => Ok("FALSE".into()),
            _ => Err(refuse("true or false", "as true or false")),
        },
        _ => Ok(quote_literal(v)),
    }
}

/// The condition a scope puts on every fact row (`f`): its partners' rows only, and for a
/// benchmark every partner's rows but no direct sales.
pub(crate) fn scope_condition(scope: &Scope, benchmark: bool) -> Option<String> {
    match scope {
        Scope::All if benchmark => Some("f.partner_id IS NOT NULL".into()),
        Scope::All => None,
        Scope::Partner(id) => Some(format!("f.partner_id = {}", quote_literal(id))),
        Scope::Partners(ids) if ids.is_empty() => Some("FALSE".into()),
        Scope::Partners(ids) => Some(format!(
            "f.partner_id IN ({})",
            ids.iter()
                .map(|i| quote_literal(i))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Whether the aggregations group by "is a direct sale" too: for a brand-owner user cutting by a
/// partner attribute, so that direct sales are their own "(direct)" row and never merge with a
/// partner whose attribute happens to be empty.
pub(crate) fn direct_flag(dims: &[(String, Dim)], scope: &Scope) -> bool {
    *scope == Scope::All
        && dims
            .iter()
            .any(|(_, d)| matches!(d, Dim::Attribute { dimension, .. } if dimension == "partner"))
}

/// Which aggregation of a query a base metric is computed in: its fact's, or for a state (read
/// at a date, not over the period) its fact's states'.
pub(crate) fn aggregation_of(part: &Metric) -> String {
    if part.state {
        format!("{}_state", part.fact)
    } else {
        part.fact.clone()
    }
}

/// The name of a fact's aggregation in the SQL; never a table's name, which it would hide from
/// the aggregations after it.
pub(crate) fn aggregation_alias(fact: &str, comparison: Option<Comparison>) -> String {
    match comparison {
        None => format!("{fact}_now"),
        Some(c) => format!("{fact}_{}", c.suffix()),
    }
}

/// The base metrics a metric is made of: itself, or a ratio's numerator and denominator.
pub(crate) fn metric_parts<'m>(model: &'m prism_model::Model, m: &'m Metric) -> Vec<&'m Metric> {
    match &m.kind {
        MetricKind::Base { .. } => vec![m],
        MetricKind::Ratio {
            numerator,
            denominator,
            ..
        } => vec![&model.metrics[numerator], &model.metrics[denominator]],
    }
}

/// The column of a benchmark's aggregation holding how many partners contribute to a part.
pub(crate) fn contributors_column(part: &str) -> String {
    format!("{part}#partners")
}

/// Whether a fact row (`f`), or a rollup's row, contributes to a base metric: it passes the
/// metric's condition and has a value to aggregate (`COUNT(*)` counts every row that passes).
/// A partner contributes to a figure when one of its rows does.
pub(crate) fn contributes_sql(m: &Metric, source: Option<&RollupSource>) -> String {
    let MetricKind::Base { aggregate, filter } = &m.kind else {
        unreachable!("ratios are expanded into their parts")
    };
    if let Some(s) = source {
        // A rollup row stands for a partner's rows of a group: it has a sum when one of them
        // had a value, a count above zero when one of them was counted.
        return match (aggregate, s.schema.field_with_name(&m.name).is_ok()) {
            (Aggregate::Sum(_), _) => format!("f.{} IS NOT NULL", quote_ident(&m.name)),
            (_, true) => format!("f.{} > 0", quote_ident(&m.name)),
            // An unconditional distinct count of a key the rollup holds: every row has one.
            (_, false) => "TRUE".into(),
        };
    }
    let has_value = match aggregate {
        Aggregate::CountRows => None,
        Aggregate::Sum(e) | Aggregate::Count(e) | Aggregate::CountDistinct(e) => {
            Some(format!("({}) IS NOT NULL", e.qualified("f")))
        }
    };
    match (filter, has_value) {
        (Some(f), Some(v)) => format!("({}) AND {v}", f.qualified("f")),
        (Some(f), None) => format!("({})", f.qualified("f")),
        (None, Some(v)) => v,
        (None, None) => "TRUE".into(),
    }
}

/// A base metric's aggregate over its fact's rows (`f`), or summed again from a rollup's.
pub(crate) fn aggregate_sql(m: &Metric, source: Option<&RollupSource>) -> String {
    if let Some(s) = source {
        return rollups::reaggregate(m, s);
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
