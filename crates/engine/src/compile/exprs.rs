//! The typed expressions of a fact's aggregation: what a row is grouped by for a dimension,
//! an attribute's own value, a filter's condition with literals of the attribute's type, the
//! audience's condition and each base metric's aggregate. Model expressions (a metric's `sum`
//! and `where`, a computed attribute) are planned from their parsed trees with DataFusion's own
//! SQL planner, against the schema of the rows they are read from.

use chrono::{Datelike, NaiveDate};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::functions::expr_fn::{current_date, date_part, date_trunc};
use datafusion::functions_aggregate::count::count_all;
use datafusion::functions_aggregate::expr_fn::{count, count_distinct, sum};
use datafusion::logical_expr::{Expr, ExprFunctionExt, cast, lit, when};
use datafusion::sql::sqlparser::ast::ExprWithAlias;
use prism_contract::Entity;
use prism_model::{Aggregate, Expression, Grain, Metric, MetricKind};

use super::fact::days_between;
use super::{TEXT, of};
use crate::rollups::{self, RollupSource};
use crate::{DIRECT_LABEL, Dim, Engine, EngineError, Filter, FilterOp, Scope};

/// A day as a date literal.
pub(crate) fn date(d: NaiveDate) -> Expr {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("date");
    lit(ScalarValue::Date32(Some((d - epoch).num_days() as i32)))
}

/// The day a state is read at when compiled without a session: the day it runs.
pub(crate) fn today() -> Expr {
    current_date()
}

/// What a fact row is grouped by for a time grain, from its day: the day, a week's Monday, or
/// a number cheap to group (2024 * 100 + 3 for March 2024); the label users see is made after
/// aggregation (`across::label`), on a few rows instead of every row.
pub(crate) fn time_bucket(grain: Grain, day: &Expr) -> Expr {
    let part = |p: &str| cast(date_part(lit(p), day.clone()), DataType::Int64);
    match grain {
        Grain::Day => day.clone(),
        Grain::Week => cast(date_trunc(lit("week"), day.clone()), DataType::Date32),
        Grain::Month => part("year") * lit(100i64) + part("month"),
        Grain::Quarter => part("year") * lit(10i64) + part("quarter"),
        Grain::Year => part("year"),
    }
}

impl Engine {
    /// A model expression read from the rows called `alias`, whose columns are `schema`'s.
    pub(crate) fn model_expr(
        &self,
        e: &Expression,
        alias: &str,
        schema: &Schema,
    ) -> Result<Expr, EngineError> {
        let columns = DFSchema::try_from_qualified_schema(alias, schema)?;
        let tree = ExprWithAlias {
            expr: e.qualified_tree(alias),
            alias: None,
        };
        Ok(self
            .planner
            .create_logical_expr_from_sql_expr(tree, &columns)?)
    }

    /// The columns of a fact's rows: its table's, its lookups' under their names, and for a
    /// state the day it is read at (`as_of`); or a rollup's own.
    pub(crate) fn rows_schema(
        &self,
        fact: &prism_model::Fact,
        state: bool,
        source: Option<&RollupSource>,
    ) -> SchemaRef {
        if let Some(s) = source {
            return s.schema.clone();
        }
        let mut fields: Vec<Field> = table_schema(&fact.table)
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        for l in fact.lookups.values() {
            if let Ok(c) = table_schema(&l.table).field_with_name(&l.column) {
                fields.push(Field::new(&l.name, c.data_type().clone(), true));
            }
        }
        if state {
            fields.push(Field::new("as_of", DataType::Date32, false));
        }
        std::sync::Arc::new(Schema::new(fields))
    }

    /// What a fact row (`f`) is grouped by for a dimension: the attribute's value (a missing
    /// member's is the dimension's "(none)" label), a fact attribute's column, or a time
    /// grain's bucket of `day`.
    pub(crate) fn group_expr(
        &self,
        dim: &Dim,
        day: &Expr,
        source: Option<&RollupSource>,
    ) -> Result<Expr, EngineError> {
        Ok(match dim {
            Dim::Attribute {
                dimension,
                attribute,
            } => {
                let d = &self.model.dimensions[dimension];
                let value = self.value_expr(dim, source)?;
                match &d.absent {
                    // A rollup that holds the attribute holds "(none)" already.
                    Some(label) if !self.stored_in(source, dimension, attribute) => {
                        when(of("f", &d.key).is_null(), lit(label.as_str()))
                            .otherwise(cast(value, TEXT))?
                    }
                    _ => value,
                }
            }
            Dim::FactAttribute { column, .. } => of("f", column),
            Dim::Time { grain } => time_bucket(*grain, day),
        })
    }

    /// An attribute's own value over a fact row, of the type the warehouse holds it in: a
    /// missing member's is NULL. A rollup that holds the attribute has it as a column named
    /// after it; a dimension's key is on the fact, so it needs no join.
    pub(crate) fn value_expr(
        &self,
        dim: &Dim,
        source: Option<&RollupSource>,
    ) -> Result<Expr, EngineError> {
        Ok(match dim {
            Dim::Attribute {
                dimension,
                attribute,
            } if self.stored_in(source, dimension, attribute) => {
                of("f", &format!("{dimension}.{attribute}"))
            }
            Dim::Attribute {
                dimension,
                attribute,
            } => {
                let d = &self.model.dimensions[dimension];
                match &d.attributes[attribute].expression {
                    Some(e) => self.model_expr(e, dimension, &table_schema(&d.table))?,
                    None if *attribute == d.key => of("f", attribute),
                    None => of(dimension, attribute),
                }
            }
            Dim::FactAttribute { column, .. } => of("f", column),
            Dim::Time { grain } => time_bucket(*grain, &super::named("day")),
        })
    }

    /// A filter's condition on a fact row. A time grain compares the key it groups by; an
    /// attribute compares its own typed value (a price as a number, a day as a date), and the
    /// members without a value of their own that people name by a label — direct sales
    /// ("(direct)") in a brand-owner user's partner dimension, a fact row without a member
    /// ("(none)") — compare by the missing key.
    pub(crate) fn filter_expr(
        &self,
        f: &Filter,
        d: &Dim,
        day: &Expr,
        stamp: Option<&Expr>,
        source: Option<&RollupSource>,
        scope: &Scope,
    ) -> Result<Expr, EngineError> {
        if let (Dim::Time { grain }, None) = (d, source) {
            return time_filter_on_days(*grain, f, day, stamp);
        }
        if let Dim::Time { grain } = d {
            let expr = self.group_expr(d, day, source)?;
            return condition(expr, &f.op, |v| time_key(*grain, v, &f.dimension), None);
        }
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
            let expr = self.group_expr(d, day, source)?;
            return condition(expr, &f.op, |v| Ok(lit(v)), None);
        }
        let expr = self.value_expr(d, source)?;
        let ty = self.attribute_types.get(&f.dimension);
        let missing = self.missing_member(d, scope);
        condition(
            expr,
            &f.op,
            |v| typed_literal(ty, v, &f.dimension),
            missing.as_ref().map(|(c, l)| (c.clone(), l.as_str())),
        )
    }

    /// The members of a dimension that have no value of their own, as a condition on the fact
    /// row and the label people name them by: direct sales in a brand-owner user's partner
    /// dimension, and a fact row without a member of a dimension that names one (`absent`).
    fn missing_member(&self, d: &Dim, scope: &Scope) -> Option<(Expr, String)> {
        let Dim::Attribute { dimension, .. } = d else {
            return None;
        };
        if dimension == "partner" && *scope == Scope::All {
            return Some((of("f", "partner_id").is_null(), DIRECT_LABEL.into()));
        }
        let dim = &self.model.dimensions[dimension];
        dim.absent
            .as_ref()
            .map(|label| (of("f", &dim.key).is_null(), label.clone()))
    }

    /// A base metric's aggregate over its fact's rows (`f`, of `schema`), or summed again from
    /// a rollup's. `beside`: the metrics aggregated with it in the same step.
    pub(crate) fn aggregate_expr(
        &self,
        m: &Metric,
        source: Option<&RollupSource>,
        schema: &Schema,
        beside: &[&Metric],
    ) -> Result<Expr, EngineError> {
        if let Some(s) = source {
            return rollups::reaggregate_expr(self, m, s);
        }
        let MetricKind::Base { aggregate, filter } = &m.kind else {
            unreachable!("ratios are expanded into their parts")
        };
        let filter = match filter {
            Some(f) => Some(self.model_expr(f, "f", schema)?),
            None => None,
        };
        // A sum or a count over the rows that pass the metric's condition: the aggregate's
        // own filter, which skips them, rather than the value of a `CASE` computed for every
        // row (a year's open pipeline by partner, 15 % less time).
        let over_kept = |agg: Expr| -> Result<Expr, EngineError> {
            Ok(match &filter {
                Some(f) => agg.filter(f.clone()).build()?,
                None => agg,
            })
        };
        // A distinct count keeps its `CASE`, and so does a sum beside one: DataFusion plans
        // a step of one distinct count and sums as a grouping (`SingleDistinctToGroupBy`)
        // only when none of its aggregates has a filter.
        let when_kept = |e: Expr| -> Result<Expr, EngineError> {
            Ok(match &filter {
                Some(f) => when(f.clone(), e).end()?,
                None => e,
            })
        };
        let beside_distinct = beside.iter().any(|b| {
            matches!(
                &b.kind,
                MetricKind::Base {
                    aggregate: Aggregate::CountDistinct(_),
                    ..
                }
            )
        });
        Ok(match aggregate {
            Aggregate::Sum(e) if beside_distinct => {
                sum(when_kept(self.model_expr(e, "f", schema)?)?)
            }
            Aggregate::Sum(e) => over_kept(sum(self.model_expr(e, "f", schema)?))?,
            Aggregate::CountRows if filter.is_some() => over_kept(count(lit(1i64)))?,
            Aggregate::CountRows => count_all(),
            Aggregate::Count(e) => over_kept(count(self.model_expr(e, "f", schema)?))?,
            Aggregate::CountDistinct(e) => {
                count_distinct(when_kept(self.model_expr(e, "f", schema)?)?)
            }
        })
    }

    /// Whether a fact row (`f`), or a rollup's row, contributes to a base metric: it passes the
    /// metric's condition and has a value to aggregate (`COUNT(*)` counts every row that
    /// passes). A partner contributes to a figure when one of its rows does.
    pub(crate) fn contributes_expr(
        &self,
        m: &Metric,
        source: Option<&RollupSource>,
        schema: &Schema,
    ) -> Result<Expr, EngineError> {
        let MetricKind::Base { aggregate, filter } = &m.kind else {
            unreachable!("ratios are expanded into their parts")
        };
        if let Some(s) = source {
            // A rollup row stands for a partner's rows of a group: it has a sum when one of
            // them had a value, a count above zero when one of them was counted.
            let column = of("f", &m.name);
            return Ok(
                match (aggregate, s.schema.field_with_name(&m.name).is_ok()) {
                    (Aggregate::Sum(_), _) => column.is_not_null(),
                    (_, true) => column.gt(lit(0i64)),
                    // An unconditional distinct count of a key the rollup holds: every row has one.
                    (_, false) => lit(true),
                },
            );
        }
        let has_value = match aggregate {
            Aggregate::CountRows => None,
            Aggregate::Sum(e) | Aggregate::Count(e) | Aggregate::CountDistinct(e) => {
                Some(self.model_expr(e, "f", schema)?.is_not_null())
            }
        };
        let filter = match filter {
            Some(f) => Some(self.model_expr(f, "f", schema)?),
            None => None,
        };
        Ok(match (filter, has_value) {
            (Some(f), Some(v)) => f.and(v),
            (Some(f), None) => f,
            (None, Some(v)) => v,
            (None, None) => lit(true),
        })
    }
}

/// A warehouse table's columns, as the data contract gives them (the model check has made sure
/// each table a model names is one of the contract's).
pub(crate) fn table_schema(table: &str) -> SchemaRef {
    Entity::from_name(table)
        .map(|e| e.schema())
        .unwrap_or_else(|| std::sync::Arc::new(Schema::empty()))
}

/// The condition an audience puts on every fact row (`f`): its partners' rows only, and for a
/// benchmark every partner's rows but no direct sales.
pub(crate) fn scope_expr(scope: &Scope, benchmark: bool) -> Option<Expr> {
    let partner = of("f", "partner_id");
    match scope {
        Scope::All if benchmark => Some(partner.is_not_null()),
        Scope::All => None,
        Scope::Partner(id) => Some(partner.eq(lit(id.as_str()))),
        Scope::Partners(ids) if ids.is_empty() => Some(lit(false)),
        Scope::Partners(ids) => {
            Some(partner.in_list(ids.iter().map(|i| lit(i.as_str())).collect(), false))
        }
    }
}

/// A filter on a time grain over a fact's own rows, as the days its values span: `2024-03` is
/// March's first to last day, which a reader compares and prunes by as it does a period,
/// rather than the month's key computed from every row's day (2–3 times the time). The same
/// rows as the key's comparison (`time_key`), which a rollup's rows keep.
fn time_filter_on_days(
    grain: Grain,
    f: &Filter,
    day: &Expr,
    stamp: Option<&Expr>,
) -> Result<Expr, EngineError> {
    let span = |v: &str| time_span(grain, v, &f.dimension);
    let any = |values: &[String]| -> Result<Expr, EngineError> {
        let mut spans = Vec::new();
        for v in values {
            let (first, last) = span(v)?;
            spans.push(days_between(day, stamp, Some(first), Some(last)));
        }
        Ok(spans.into_iter().reduce(Expr::or).unwrap_or(lit(false)))
    };
    Ok(match &f.op {
        FilterOp::In(values) => any(values)?,
        FilterOp::NotIn(values) => datafusion::logical_expr::not(any(values)?),
        FilterOp::Range { from, to } => {
            let first = from.as_deref().map(span).transpose()?.map(|(a, _)| a);
            let last = to.as_deref().map(span).transpose()?.map(|(_, b)| b);
            days_between(day, stamp, first, last)
        }
    })
}

/// A time grain's value as users write it (`2024-03-05`, `2024-W10`, `2024-03`, `2024-Q1`,
/// `2024`), as the literal of the key `time_bucket` groups that grain by.
pub(crate) fn time_key(grain: Grain, value: &str, dimension: &str) -> Result<Expr, EngineError> {
    let (first, _) = time_span(grain, value, dimension)?;
    let year = i64::from(first.year());
    let month = i64::from(first.month());
    Ok(match grain {
        Grain::Day | Grain::Week => date(first),
        Grain::Month => lit(year * 100 + month),
        Grain::Quarter => lit(year * 10 + (month - 1) / 3 + 1),
        Grain::Year => lit(year),
    })
}

/// The first and last days of a time grain's value as users write it (`2024-W10` is that
/// week's Monday to Sunday); a value not written as the grain writes it is refused.
pub(crate) fn time_span(
    grain: Grain,
    value: &str,
    dimension: &str,
) -> Result<(NaiveDate, NaiveDate), EngineError> {
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
    // The first day of the month `months` after January of `year`.
    let month_start = |year: i64, months: i64| {
        NaiveDate::from_ymd_opt((year + months / 12) as i32, (months % 12) as u32 + 1, 1)
    };
    // From the first day to the day before the next value's first.
    let until = |first: NaiveDate, next: Option<NaiveDate>| Some((first, next?.pred_opt()?));
    match grain {
        Grain::Day => NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .ok()
            .filter(|_| v.len() == 10)
            .map(|d| (d, d))
            .ok_or_else(|| refuse("a day", "2024-03-05")),
        Grain::Week => v
            .split_once("-W")
            .and_then(|(y, w)| {
                let (y, w) = (number(y, 4)?, number(w, 2)?);
                let monday = NaiveDate::from_isoywd_opt(y as i32, w as u32, chrono::Weekday::Mon)?;
                until(monday, monday.checked_add_days(chrono::Days::new(7)))
            })
            .ok_or_else(|| refuse("an ISO week", "2024-W10")),
        Grain::Month => v
            .split_once('-')
            .and_then(|(y, m)| {
                let (y, m) = (number(y, 4)?, number(m, 2)?);
                (1..=12).contains(&m).then_some(())?;
                until(month_start(y, m - 1)?, month_start(y, m))
            })
            .ok_or_else(|| refuse("a month", "2024-03")),
        Grain::Quarter => v
            .split_once("-Q")
            .and_then(|(y, q)| {
                let (y, q) = (number(y, 4)?, number(q, 1)?);
                (1..=4).contains(&q).then_some(())?;
                until(month_start(y, (q - 1) * 3)?, month_start(y, q * 3))
            })
            .ok_or_else(|| refuse("a quarter", "2024-Q1")),
        Grain::Year => number(v, 4)
            .and_then(|y| until(month_start(y, 0)?, month_start(y, 12)))
            .ok_or_else(|| refuse("a year", "2024")),
    }
}

/// A filter's operation on `expr`, each value a literal made by `literal`. `missing` is the
/// condition of the rows that have no value and the label users name them by: they match a
/// list that names the label, are kept by an exclusion that does not name it, and never fall
/// in a range.
fn condition(
    expr: Expr,
    op: &FilterOp,
    literal: impl Fn(&str) -> Result<Expr, EngineError>,
    missing: Option<(Expr, &str)>,
) -> Result<Expr, EngineError> {
    let list = |values: &[&String]| -> Result<Vec<Expr>, EngineError> {
        values.iter().map(|v| literal(v)).collect()
    };
    // The missing rows' condition when the list names their label, and the other values.
    fn split<'v>(
        values: &'v [String],
        missing: Option<&(Expr, &str)>,
    ) -> (Option<Expr>, Vec<&'v String>) {
        let (named, rest): (Vec<&String>, Vec<&String>) = values
            .iter()
            .partition(|v| missing.is_some_and(|(_, label)| v.trim() == *label));
        let named = missing
            .filter(|_| !named.is_empty())
            .map(|(c, _)| c.clone());
        (named, rest)
    }
    // An expression over a missing member's row may still give a value (`COALESCE(x, 'none')`
    // over the NULLs of an outer join): only the members themselves have values.
    let member = |e: Expr| match &missing {
        Some((c, _)) => datafusion::logical_expr::not(c.clone()).and(e),
        None => e,
    };
    Ok(match op {
        FilterOp::In(values) => {
            let (named, rest) = split(values, missing.as_ref());
            let mut any = Vec::new();
            if !rest.is_empty() {
                any.push(member(expr.in_list(list(&rest)?, false)));
            }
            any.extend(named);
            any.into_iter().reduce(Expr::or).unwrap_or(lit(false))
        }
        FilterOp::NotIn(values) => {
            let (named, rest) = split(values, missing.as_ref());
            let others = match rest.is_empty() {
                true => None,
                false => Some(expr.in_list(list(&rest)?, true)),
            };
            match (&missing, named, others) {
                // The missing rows have no value, so NOT IN would drop them: keep them apart.
                (_, Some(c), Some(o)) => datafusion::logical_expr::not(c).and(o),
                (_, Some(c), None) => datafusion::logical_expr::not(c),
                (Some((c, _)), None, Some(o)) => c.clone().or(o),
                (_, None, Some(o)) => o,
                (_, None, None) => lit(true),
            }
        }
        FilterOp::Range { from, to } => {
            let mut c = Vec::new();
            if let Some(a) = from {
                c.push(expr.clone().gt_eq(literal(a)?));
            }
            if let Some(b) = to {
                c.push(expr.clone().lt_eq(literal(b)?));
            }
            member(c.into_iter().reduce(Expr::and).unwrap_or(lit(true)))
        }
    })
}

/// A value of an attribute as users write it, as a literal of the attribute's type: a number,
/// a day, true or false, or text. A value that is not of the type is refused with the filter's
/// name, rather than compared as text (where `9` sorts after `10`).
pub(crate) fn typed_literal(
    ty: Option<&DataType>,
    value: &str,
    dimension: &str,
) -> Result<Expr, EngineError> {
    use DataType as T;
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
            .map(lit)
            .map_err(|_| refuse("a whole number", "like 12")),
        Some(t @ (T::Decimal128(..) | T::Decimal256(..))) if decimal() => {
            Ok(cast(lit(v), t.clone()))
        }
        Some(T::Float16 | T::Float32 | T::Float64) if decimal() => Ok(cast(lit(v), T::Float64)),
        Some(T::Decimal128(..) | T::Decimal256(..) | T::Float16 | T::Float32 | T::Float64) => {
            Err(refuse("a number", "like 1200 or 99.50"))
        }
        Some(T::Date32 | T::Date64) => NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .map(date)
            .map_err(|_| refuse("a day", "like 2024-03-05")),
        Some(T::Timestamp(..)) => ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"]
            .iter()
            .find_map(|f| chrono::NaiveDateTime::parse_from_str(v, f).ok())
            .or_else(|| {
                NaiveDate::parse_from_str(v, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
            })
            .map(|t| {
                cast(
                    lit(t.format("%Y-%m-%d %H:%M:%S").to_string()),
                    T::Timestamp(TimeUnit::Nanosecond, None),
                )
            })
            .ok_or_else(|| refuse("a day or a time", "like 2024-03-05 or 2024-03-05 14:30:00")),
        Some(T::Boolean) => match v.to_ascii_lowercase().as_str() {
            "true" | "yes" => Ok(lit(true)),
            "false" | "no" => Ok(lit(false)),
            _ => Err(refuse("true or false", "as true or false")),
        },
        _ => Ok(lit(v)),
    }
}
