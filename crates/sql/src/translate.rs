//! SQL over the subject tables, translated to one semantic query of the engine.
//!
//! A client sees one table per fact, named as the business says it (`sales`, `pipeline`),
//! whose columns are the dimensions that fact reaches (`partner_tier`, `time_quarter`) and
//! its metrics (`closed_revenue`). These tables hold no rows: a `SELECT` over one is read as
//! a question — the metrics asked, the dimensions it groups by, the filters and the period
//! its `WHERE` sets, its order and limit — and answered by the engine in the connection's
//! scope, so a ratio is always the ratio of its parts and a partner user never reaches a row
//! that is not its partner's. Anything else over them is refused with what is supported.

use std::collections::BTreeMap;

use arrow::datatypes::DataType;
use chrono::NaiveDate;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Distinct, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    LimitClause, ObjectName, ObjectNamePart, OrderBy, OrderByKind, Query as SqlQuery, Select,
    SelectItem, SetExpr, Statement, TableFactor, UnaryOperator, Value, visit_relations,
};
use prism_engine::{Filter, FilterOp, Order, Period, Query};
use prism_model::{Aggregate, Format, Metric, MetricKind, Model, TIME_GRAINS};

/// What a client may ask, appended to every refusal.
pub const SUPPORTED: &str = "supported: SELECT dimension columns and metrics (bare, or in SUM(…) or MEASURE(…)) FROM one subject table, WHERE with AND of column = / <> / IN / NOT IN / BETWEEN / >= / <= values (time_day sets the period), GROUP BY the dimension columns, ORDER BY columns or positions, LIMIT n";

/// Why a statement over a subject table cannot be answered.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}; {SUPPORTED}")]
pub struct Unsupported(pub String);

fn refuse<T>(message: impl Into<String>) -> Result<T, Unsupported> {
    Err(Unsupported(message.into()))
}

/// What a column of a subject table stands for.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnRole {
    /// A dimension attribute, by its model name (`partner.tier`, `time.quarter`).
    Dimension(String),
    /// A metric, by name.
    Metric(String),
}

/// A column of a subject table.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// As SQL names it: `partner_tier`, `closed_revenue`.
    pub name: String,
    /// A dimension's column or a metric's.
    pub role: ColumnRole,
    /// Its SQL type (money `numeric(38,2)`, counts `int8`, rates `float8`, `time_day` a date).
    pub data_type: DataType,
    /// What it is, for the catalog's comments and the docs.
    pub description: String,
}

/// One fact as a table.
#[derive(Clone, Debug)]
pub struct Subject {
    /// The table's name: `sales`.
    pub table: String,
    /// The model's fact the table answers from.
    pub fact: String,
    /// Its columns: the dimensions the fact reaches, then its metrics.
    pub columns: Vec<Column>,
}

impl Subject {
    fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Why a name is not a column, with the column meant: an attribute named without its
    /// dimension (`partner_name` for `partner_partner_name`), or the nearest spelling.
    fn no_column(&self, name: &str) -> Unsupported {
        let suffix = format!("_{name}");
        let hint = match self.columns.iter().find(|c| c.name.ends_with(&suffix)) {
            Some(c) => format!("; did you mean `{}`?", c.name),
            None => prism_model::did_you_mean(name, self.columns.iter().map(|c| c.name.as_str())),
        };
        Unsupported(format!("`{}` has no column `{name}`{hint}", self.table))
    }
}

/// The subject tables of a model.
#[derive(Clone, Debug)]
pub struct Catalog {
    /// Each subject table by name.
    pub subjects: BTreeMap<String, Subject>,
    /// The warehouse's own tables, which no SQL reaches: a statement naming one is told so.
    pub base_tables: Vec<String>,
}

/// The SQL type of a metric's answers: money exact to the cent, counts and sums of whole
/// numbers whole; a ratio shown as a whole number keeps its fraction.
pub fn metric_type(metric: &Metric) -> DataType {
    match (metric.format, &metric.kind) {
        (Format::Money, _) => DataType::Decimal128(38, 2),
        (Format::Integer, MetricKind::Base { .. }) => DataType::Int64,
        _ => DataType::Float64,
    }
}

/// A model name as a SQL column: `partner.tier` → `partner_tier`.
pub fn sql_name(model_name: &str) -> String {
    model_name.replace('.', "_")
}

impl Catalog {
    /// One subject table per fact with a metric people see.
    pub fn of(model: &Model) -> Catalog {
        let mut subjects = BTreeMap::new();
        for fact in model.facts.values() {
            let metrics: Vec<_> = model
                .metrics
                .values()
                .filter(|m| !m.hidden && m.fact == fact.name)
                .collect();
            if metrics.is_empty() {
                continue;
            }
            let mut columns = Vec::new();
            for d in &fact.reaches {
                if let Some(dim) = model.dimensions.get(d) {
                    for a in dim.attributes.values() {
                        let name = format!("{d}.{}", a.name);
                        columns.push(Column {
                            name: sql_name(&name),
                            role: ColumnRole::Dimension(name),
                            data_type: DataType::Utf8,
                            description: a.description.clone(),
                        });
                    }
                }
            }
            for a in fact.attributes.values() {
                columns.push(Column {
                    name: sql_name(&a.name),
                    role: ColumnRole::Dimension(a.name.clone()),
                    data_type: DataType::Utf8,
                    description: a.description.clone(),
                });
            }
            for g in TIME_GRAINS {
                let name = format!("time.{g}");
                columns.push(Column {
                    name: sql_name(&name),
                    role: ColumnRole::Dimension(name),
                    // A day is a date, so that tools filter it as one; coarser grains are
                    // labels (`2026-Q3`).
                    data_type: if *g == "day" {
                        DataType::Date32
                    } else {
                        DataType::Utf8
                    },
                    description: format!("The {g} of the fact's {}.", fact.time),
                });
            }
            for m in metrics {
                columns.push(Column {
                    name: m.name.clone(),
                    role: ColumnRole::Metric(m.name.clone()),
                    data_type: metric_type(m),
                    description: m.description.clone(),
                });
            }
            let table = fact.subject_table();
            subjects.insert(
                table.clone(),
                Subject {
                    table,
                    fact: fact.name.clone(),
                    columns,
                },
            );
        }
        let mut base_tables: Vec<String> = model
            .facts
            .values()
            .map(|f| f.table.clone())
            .chain(model.dimensions.values().map(|d| d.table.clone()))
            .filter(|t| !subjects.contains_key(t))
            .collect();
        base_tables.sort();
        base_tables.dedup();
        Catalog {
            subjects,
            base_tables,
        }
    }

    /// The subject table a statement reads, when it reads one; a statement that names none
    /// (a catalog query) is not the translator's. A base table's name is refused here.
    pub fn subject_of(&self, statement: &Statement) -> Result<Option<&Subject>, Unsupported> {
        let mut found: Vec<String> = Vec::new();
        let _ = visit_relations(statement, |name: &ObjectName| {
            found.push(table_name(name));
            std::ops::ControlFlow::<()>::Continue(())
        });
        if let Some(base) = found.iter().find(|t| self.base_tables.contains(t)) {
            return refuse(format!(
                "`{base}` is not reachable over SQL: ask the subject tables ({})",
                self.subject_list()
            ));
        }
        let mut subjects = found.iter().filter_map(|t| self.subjects.get(t));
        let first = subjects.next();
        // A catalog query may combine catalog tables; a question may not.
        if first.is_some()
            && let Statement::Query(q) = statement
            && matches!(q.body.as_ref(), SetExpr::SetOperation { .. })
        {
            return refuse(
                "UNION, INTERSECT and EXCEPT are not supported: a question reads one subject table",
            );
        }
        if subjects.next().is_some() {
            return refuse("a question reads one subject table, once: no joins or subqueries");
        }
        Ok(first)
    }

    fn subject_list(&self) -> String {
        self.subjects.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// A table's own name, without its schema, as Postgres folds it.
fn table_name(name: &ObjectName) -> String {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(i)) if i.quote_style.is_some() => i.value.clone(),
        Some(ObjectNamePart::Identifier(i)) => i.value.to_lowercase(),
        _ => String::new(),
    }
}

/// A column of the answer: its SQL label, the engine's column it comes from, its type.
#[derive(Clone, Debug, PartialEq)]
pub struct OutColumn {
    /// The column's name in the answer (an alias, or the column's own).
    pub label: String,
    /// The engine's name for it: `partner.tier`, `closed_revenue`, `closed_revenue:change`.
    pub source: String,
    /// Its SQL type.
    pub data_type: DataType,
}

/// A statement over a subject table as the engine's question.
#[derive(Clone, Debug, PartialEq)]
pub struct Translated {
    /// The engine's question.
    pub query: Query,
    /// The answer's columns, in the statement's order.
    pub columns: Vec<OutColumn>,
    /// `LIMIT 0` (a tool reading the columns): the answer is empty without asking anything.
    pub empty: bool,
}

/// Translates a statement over `subject`. Every placeholder must have been replaced by its
/// value (see `bind`), except when only the answer's columns are wanted (`shape_only`): then
/// the `WHERE` is not read.
pub fn translate(
    model: &Model,
    subject: &Subject,
    statement: &Statement,
    shape_only: bool,
) -> Result<Translated, Unsupported> {
    let (select, order_by, limit_clause) = one_select(statement)?;
    let limit = limit_of(limit_clause)?;
    let SelectList {
        columns,
        by,
        mut metrics,
        wildcard,
    } = select_list(model, subject, select)?;
    if wildcard {
        return wildcard_answer(subject, limit, &columns);
    }
    if columns.is_empty() {
        return refuse("select at least one column");
    }
    grouped_by_dimensions(select, subject, &columns, &by)?;
    let order = order_of(order_by.as_ref(), subject, &columns)?;

    // A question of dimensions only lists the values that have rows in the scope: it asks a
    // count of the fact's rows, which the answer then leaves out.
    if metrics.is_empty() {
        metrics.push(row_count_metric(model, &subject.fact)?);
    }

    let (filters, period) = match (&select.selection, shape_only) {
        (Some(w), false) => conditions(subject, w)?,
        _ => (Vec::new(), None),
    };
    Ok(Translated {
        query: Query {
            metrics,
            by,
            filters,
            period,
            order,
            limit: limit.filter(|l| *l > 0),
        },
        columns,
        empty: limit == Some(0),
    })
}

/// The one SELECT of a statement, its ORDER BY and its LIMIT; whatever else a statement may
/// hold is refused by name.
fn one_select(
    statement: &Statement,
) -> Result<(&Select, &Option<OrderBy>, &Option<LimitClause>), Unsupported> {
    let Statement::Query(q) = statement else {
        return refuse("only SELECT statements are answered");
    };
    let SqlQuery {
        with,
        body,
        order_by,
        limit_clause,
        fetch,
        locks,
        for_clause,
        settings,
        format_clause,
        pipe_operators,
    } = q.as_ref();
    if with.is_some() {
        return refuse("WITH is not supported");
    }
    if fetch.is_some()
        || !locks.is_empty()
        || for_clause.is_some()
        || settings.is_some()
        || format_clause.is_some()
        || !pipe_operators.is_empty()
    {
        return refuse("FETCH, FOR, SETTINGS, FORMAT and pipes are not supported");
    }
    let select = match body.as_ref() {
        SetExpr::Select(s) => s,
        SetExpr::SetOperation { .. } => {
            return refuse("UNION, INTERSECT and EXCEPT are not supported");
        }
        _ => return refuse("a question is one SELECT"),
    };
    if select.from.len() != 1 || !select.from[0].joins.is_empty() {
        return refuse("a question reads one subject table, without joins");
    }
    match &select.from[0].relation {
        TableFactor::Table {
            args: None,
            version: None,
            sample: None,
            ..
        } => {}
        _ => return refuse("a question reads a subject table by name"),
    }
    if select.having.is_some() || select.qualify.is_some() {
        return refuse("HAVING and QUALIFY are not supported: filter on dimensions");
    }
    if select.top.is_some()
        || select.into.is_some()
        || select.prewhere.is_some()
        || select.exclude.is_some()
        || !select.lateral_views.is_empty()
        || !select.named_window.is_empty()
        || !select.connect_by.is_empty()
        || !select.cluster_by.is_empty()
        || !select.distribute_by.is_empty()
        || !select.sort_by.is_empty()
    {
        return refuse("this SELECT clause is not supported");
    }
    if matches!(select.distinct, Some(Distinct::On(_))) {
        return refuse("DISTINCT ON is not supported");
    }

    Ok((select, order_by, limit_clause))
}

/// `LIMIT n [OFFSET 0]`: the limit, if any.
fn limit_of(limit_clause: &Option<LimitClause>) -> Result<Option<usize>, Unsupported> {
    let (limit, offset) = match limit_clause {
        None => (None, None),
        Some(LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) if limit_by.is_empty() => (limit.as_ref(), offset.as_ref().map(|o| &o.value)),
        Some(_) => return refuse("LIMIT n [OFFSET 0] only"),
    };
    let limit = limit.map(whole_number).transpose()?;
    if let Some(o) = offset
        && whole_number(o)? != 0
    {
        return refuse("OFFSET is not supported");
    }

    Ok(limit)
}

/// The select list read: the columns in the client's order, the dimensions and metrics they
/// name, and whether it had a `*`.
struct SelectList {
    columns: Vec<OutColumn>,
    by: Vec<String>,
    metrics: Vec<String>,
    wildcard: bool,
}

/// The select list: dimensions and metrics, in the order the client wants them.
fn select_list(
    model: &Model,
    subject: &Subject,
    select: &Select,
) -> Result<SelectList, Unsupported> {
    let mut columns: Vec<OutColumn> = Vec::new();
    let mut by: Vec<String> = Vec::new();
    let mut metrics: Vec<String> = Vec::new();
    let mut wildcard = false;
    for item in &select.projection {
        let (expr, alias) = match item {
            SelectItem::UnnamedExpr(e) => (e, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.clone())),
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                wildcard = true;
                continue;
            }
            SelectItem::ExprWithAliases { .. } => {
                return refuse("one alias per column");
            }
        };
        let (column, form) = select_column(subject, expr)?;
        let source = match (&column.role, &form) {
            (ColumnRole::Dimension(d), None) => {
                if !by.contains(d) {
                    by.push(d.clone());
                }
                d.clone()
            }
            (ColumnRole::Dimension(_), Some(_)) => {
                return refuse(format!("`{}` is a dimension, not a metric", column.name));
            }
            (ColumnRole::Metric(m), form) => {
                let name = match form {
                    Some(f) => format!("{m}:{f}"),
                    None => m.clone(),
                };
                if !metrics.contains(&name) {
                    metrics.push(name.clone());
                }
                name
            }
        };
        let data_type = match &form {
            None => column.data_type.clone(),
            Some(f) => derived_type(model, &column.name, f)?,
        };
        columns.push(OutColumn {
            label: alias.unwrap_or_else(|| match &form {
                Some(f) => format!("{}:{f}", column.name),
                None => column.name.clone(),
            }),
            source,
            data_type,
        });
    }
    Ok(SelectList {
        columns,
        by,
        metrics,
        wildcard,
    })
}

/// `SELECT * … LIMIT 0`: the subject's columns and no rows.
fn wildcard_answer(
    subject: &Subject,
    limit: Option<usize>,
    columns: &[OutColumn],
) -> Result<Translated, Unsupported> {
    // A tool reading a table's columns asks `SELECT * … LIMIT 0`; every dimension by
    // every metric would be an answer nobody wants.
    if limit != Some(0) || !columns.is_empty() {
        return refuse("SELECT * is answered only with LIMIT 0: name the columns");
    }
    Ok(Translated {
        query: Query {
            metrics: Vec::new(),
            by: Vec::new(),
            filters: Vec::new(),
            period: None,
            order: Vec::new(),
            limit: Some(0),
        },
        columns: subject
            .columns
            .iter()
            .map(|c| OutColumn {
                label: c.name.clone(),
                source: match &c.role {
                    ColumnRole::Dimension(d) | ColumnRole::Metric(d) => d.clone(),
                },
                data_type: c.data_type.clone(),
            })
            .collect(),
        empty: true,
    })
}

/// GROUP BY may name the selected dimensions (by name, alias or position) and nothing else;
/// the answer is grouped by them whether or not it says so, as a semantic layer is.
fn grouped_by_dimensions(
    select: &Select,
    subject: &Subject,
    columns: &[OutColumn],
    by: &[String],
) -> Result<(), Unsupported> {
    match &select.group_by {
        GroupByExpr::Expressions(exprs, modifiers) => {
            if !modifiers.is_empty() {
                return refuse("ROLLUP, CUBE and GROUPING SETS are not supported");
            }
            for e in exprs {
                let i = select_position(e, columns, subject)?;
                if !by.contains(&columns[i].source) {
                    return refuse(format!("GROUP BY `{e}`: group by dimension columns only"));
                }
            }
        }
        GroupByExpr::All(_) => {}
    }

    Ok(())
}

/// ORDER BY: selected columns, by name, alias or position.
fn order_of(
    order_by: Option<&OrderBy>,
    subject: &Subject,
    columns: &[OutColumn],
) -> Result<Vec<Order>, Unsupported> {
    let mut order = Vec::new();
    if let Some(o) = order_by {
        let OrderByKind::Expressions(items) = &o.kind else {
            return refuse("ORDER BY ALL is not supported");
        };
        if o.interpolate.is_some() {
            return refuse("INTERPOLATE is not supported");
        }
        for item in items {
            let i = select_position(&item.expr, columns, subject)?;
            order.push(Order {
                column: columns[i].source.clone(),
                descending: item.options.asc == Some(false),
            });
        }
    }

    Ok(order)
}

/// A metric of the fact over all its rows — one that counts them when there is one — so
/// that every group with a row of the fact is in the answer, whatever the metric's value.
fn row_count_metric(model: &Model, fact: &str) -> Result<String, Unsupported> {
    let unconditional = |m: &&prism_model::Metric| {
        m.fact == fact && !m.state && matches!(m.kind, MetricKind::Base { filter: None, .. })
    };
    let counts_rows = |m: &&&prism_model::Metric| {
        matches!(
            m.kind,
            MetricKind::Base {
                aggregate: Aggregate::CountRows,
                ..
            }
        )
    };
    let candidates: Vec<&prism_model::Metric> =
        model.metrics.values().filter(unconditional).collect();
    candidates
        .iter()
        .find(counts_rows)
        .or(candidates.first())
        .map(|m| m.name.clone())
        .ok_or_else(|| Unsupported(format!("select a metric of `{fact}` too")))
}

/// The type of a metric's derived form: a rank is whole, a share or cumulative share a rate,
/// a change of money money.
fn derived_type(model: &Model, metric: &str, form: &str) -> Result<DataType, Unsupported> {
    let m = model
        .metrics
        .get(metric)
        .ok_or_else(|| Unsupported(format!("no metric `{metric}`")))?;
    Ok(match form {
        "rank" => DataType::Int64,
        "pct_of_total" | "cumulative_pct" | "change_pct" | "change_pct_year_before" => {
            DataType::Float64
        }
        _ => metric_type(m),
    })
}

/// A select item: a column of the subject, bare or in `SUM(…)`/`MEASURE(…)`, or a quoted
/// `"metric:form"`; with the derived form when there is one.
fn select_column<'s>(
    subject: &'s Subject,
    expr: &Expr,
) -> Result<(&'s Column, Option<String>), Unsupported> {
    match expr {
        Expr::Nested(e) => select_column(subject, e),
        Expr::Function(f) => {
            let name = f.name.to_string().to_lowercase();
            if !matches!(name.as_str(), "sum" | "measure") {
                return refuse(format!(
                    "`{}(…)`: a metric is aggregated as its definition says; write it bare, or in SUM(…) or MEASURE(…)",
                    f.name
                ));
            }
            if f.over.is_some() || f.filter.is_some() || !f.within_group.is_empty() {
                return refuse("window functions and FILTER are not supported");
            }
            let arg = match &f.args {
                FunctionArguments::List(l)
                    if l.args.len() == 1 && l.duplicate_treatment.is_none() =>
                {
                    match &l.args[0] {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => e,
                        _ => return refuse(format!("`{expr}`: one metric column")),
                    }
                }
                _ => return refuse(format!("`{expr}`: one metric column")),
            };
            let (c, form) = select_column(subject, arg)?;
            if !matches!(c.role, ColumnRole::Metric(_)) {
                return refuse(format!("`{expr}`: `{}` is a dimension", c.name));
            }
            Ok((c, form))
        }
        _ => {
            let name = column_name(expr)
                .ok_or_else(|| Unsupported(format!("`{expr}` is not a column")))?;
            let (base, form) = match name.split_once(':') {
                Some((b, f)) => (b.to_string(), Some(f.to_string())),
                None => (name, None),
            };
            let c = subject
                .column(&base)
                .ok_or_else(|| subject.no_column(&base))?;
            if let Some(f) = &form
                && !matches!(c.role, ColumnRole::Metric(_))
            {
                return refuse(format!("`{base}:{f}`: only a metric has derived forms"));
            }
            Ok((c, form))
        }
    }
}

/// A column reference's name (`partner_tier`, `sales.partner_tier`), folded as Postgres does.
fn column_name(expr: &Expr) -> Option<String> {
    let ident = match expr {
        Expr::Identifier(i) => i,
        Expr::CompoundIdentifier(parts) => parts.last()?,
        _ => return None,
    };
    Some(if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    })
}

/// Which selected column an ORDER BY or GROUP BY item means: a position (1-based), an alias,
/// or a column (bare or aggregated as selected).
fn select_position(
    expr: &Expr,
    columns: &[OutColumn],
    subject: &Subject,
) -> Result<usize, Unsupported> {
    if let Expr::Value(v) = expr {
        let n = whole_number(expr).map_err(|_| Unsupported(format!("`{v}` is not a position")))?;
        return match n.checked_sub(1).filter(|i| *i < columns.len()) {
            Some(i) => Ok(i),
            None => refuse(format!("position {n} is not in the select list")),
        };
    }
    if let Some(name) = column_name(expr)
        && let Some(i) = columns.iter().position(|c| c.label == name)
    {
        return Ok(i);
    }
    let (c, form) = select_column(subject, expr)?;
    let source = match (&c.role, form) {
        (ColumnRole::Dimension(d), _) => d.clone(),
        (ColumnRole::Metric(m), Some(f)) => format!("{m}:{f}"),
        (ColumnRole::Metric(m), None) => m.clone(),
    };
    columns
        .iter()
        .position(|o| o.source == source)
        .ok_or_else(|| Unsupported(format!("`{expr}` is not in the select list")))
}

/// A non-negative whole number literal.
fn whole_number(expr: &Expr) -> Result<usize, Unsupported> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n
                .parse()
                .map_err(|_| Unsupported(format!("`{n}` is not a whole number"))),
            other => refuse(format!("`{other}` is not a whole number")),
        },
        other => refuse(format!("`{other}` is not a whole number")),
    }
}

/// A literal's text: a string, a number, `DATE '…'`, `'…'::date`.
fn literal(expr: &Expr) -> Result<String, Unsupported> {
    match expr {
        Expr::Nested(e) => literal(e),
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => Ok(s.clone()),
            Value::Number(n, _) => Ok(n.clone()),
            Value::Boolean(b) => Ok(b.to_string()),
            Value::Placeholder(p) => refuse(format!("parameter {p} has no value")),
            Value::Null => refuse("NULL is not a value to compare with"),
            other => refuse(format!("`{other}` is not a supported value")),
        },
        Expr::TypedString(t) => match &t.value.value {
            Value::SingleQuotedString(s) => Ok(s.clone()),
            other => refuse(format!("`{other}` is not a supported value")),
        },
        Expr::Cast { expr, .. } => literal(expr),
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => Ok(format!("-{}", literal(expr)?)),
        other => refuse(format!("`{other}` is not a value")),
    }
}

fn date(expr: &Expr) -> Result<NaiveDate, Unsupported> {
    let text = literal(expr)?;
    // A timestamp's date part: tools send `'2026-07-01 00:00:00'` or `'2026-07-01T00:00:00Z'`.
    let day = text.get(..10).unwrap_or(&text);
    NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .map_err(|_| Unsupported(format!("time_day: `{text}` is not a date (YYYY-MM-DD)")))
}

/// The period's bounds as they are narrowed by `time_day` conditions.
#[derive(Default)]
struct Bounds {
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
}

impl Bounds {
    fn at_least(&mut self, d: NaiveDate) {
        self.from = Some(self.from.map_or(d, |f| f.max(d)));
    }
    fn at_most(&mut self, d: NaiveDate) {
        self.to = Some(self.to.map_or(d, |t| t.min(d)));
    }
}

/// The filters and the period of a `WHERE`: a conjunction of conditions on columns.
fn conditions(
    subject: &Subject,
    expr: &Expr,
) -> Result<(Vec<Filter>, Option<Period>), Unsupported> {
    let mut filters = Vec::new();
    let mut bounds = Bounds::default();
    let mut parts = Vec::new();
    conjuncts(expr, &mut parts);
    for c in parts {
        condition(subject, c, &mut filters, &mut bounds)?;
    }
    let period = match (bounds.from, bounds.to) {
        (None, None) => None,
        (Some(from), Some(to)) if from <= to => Some(Period { from, to }),
        (Some(_), Some(_)) => {
            return refuse("the time_day conditions leave no day");
        }
        _ => {
            return refuse(
                "a period needs both ends: time_day BETWEEN '…' AND '…', or >= and <= (or <)",
            );
        }
    };
    Ok((filters, period))
}

fn conjuncts<'e>(expr: &'e Expr, out: &mut Vec<&'e Expr>) {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        Expr::Nested(e) => conjuncts(e, out),
        other => out.push(other),
    }
}

/// The dimension a condition's column names; `None` for `time_day`, which sets the period.
fn condition_column(subject: &Subject, expr: &Expr) -> Result<Option<String>, Unsupported> {
    let name = column_name(expr).ok_or_else(|| {
        Unsupported(format!(
            "`{expr}`: a condition compares a dimension column with values"
        ))
    })?;
    if name == "time_day" {
        return Ok(None);
    }
    match subject.column(&name).map(|c| &c.role) {
        Some(ColumnRole::Dimension(d)) => Ok(Some(d.clone())),
        Some(ColumnRole::Metric(_)) => refuse(format!(
            "`{name}` is a metric: conditions are on dimensions (HAVING is not supported)"
        )),
        None => Err(subject.no_column(&name)),
    }
}

fn condition(
    subject: &Subject,
    expr: &Expr,
    filters: &mut Vec<Filter>,
    bounds: &mut Bounds,
) -> Result<(), Unsupported> {
    match expr {
        Expr::BinaryOp {
            op: BinaryOperator::Or,
            ..
        } => refuse(format!(
            "`{expr}`: conditions are joined by AND; for one column's values, IN (…)"
        )),
        Expr::BinaryOp { left, op, right } => {
            // `'EMEA' = partner_region` reads as `partner_region = 'EMEA'`.
            let (column, value, op) = if column_name(left).is_some() {
                (left.as_ref(), right.as_ref(), op.clone())
            } else {
                let flipped = match op {
                    BinaryOperator::Lt => BinaryOperator::Gt,
                    BinaryOperator::LtEq => BinaryOperator::GtEq,
                    BinaryOperator::Gt => BinaryOperator::Lt,
                    BinaryOperator::GtEq => BinaryOperator::LtEq,
                    o => o.clone(),
                };
                (right.as_ref(), left.as_ref(), flipped)
            };
            match condition_column(subject, column)? {
                None => day_bound(&op, date(value)?, bounds),
                Some(dimension) => {
                    filters.push(Filter {
                        dimension,
                        op: comparison(&op, literal(value)?, column)?,
                    });
                    Ok(())
                }
            }
        }
        Expr::InList {
            expr,
            list,
            negated,
        } => {
            let Some(dimension) = condition_column(subject, expr)? else {
                return refuse("time_day IN is not supported: use BETWEEN");
            };
            let values = list.iter().map(literal).collect::<Result<Vec<_>, _>>()?;
            filters.push(Filter {
                dimension,
                op: if *negated {
                    FilterOp::NotIn(values)
                } else {
                    FilterOp::In(values)
                },
            });
            Ok(())
        }
        Expr::Between {
            expr,
            negated: false,
            low,
            high,
        } => between(subject, expr, low, high, filters, bounds),
        other => refuse(format!(
            "`{other}`: conditions are column = / <> / IN / NOT IN / BETWEEN / >= / <= values, joined by AND"
        )),
    }
}

/// `column BETWEEN low AND high`: the period's bounds for `time_day`, a range otherwise.
fn between(
    subject: &Subject,
    expr: &Expr,
    low: &Expr,
    high: &Expr,
    filters: &mut Vec<Filter>,
    bounds: &mut Bounds,
) -> Result<(), Unsupported> {
    match condition_column(subject, expr)? {
        None => {
            bounds.at_least(date(low)?);
            bounds.at_most(date(high)?);
        }
        Some(dimension) => filters.push(Filter {
            dimension,
            op: FilterOp::Range {
                from: Some(literal(low)?),
                to: Some(literal(high)?),
            },
        }),
    }
    Ok(())
}

/// `time_day <op> day`: the period's bounds narrowed.
fn day_bound(op: &BinaryOperator, d: NaiveDate, bounds: &mut Bounds) -> Result<(), Unsupported> {
    match op {
        BinaryOperator::Eq => {
            bounds.at_least(d);
            bounds.at_most(d);
        }
        BinaryOperator::GtEq => bounds.at_least(d),
        BinaryOperator::Gt => bounds.at_least(d.succ_opt().unwrap_or(d)),
        BinaryOperator::LtEq => bounds.at_most(d),
        BinaryOperator::Lt => bounds.at_most(d.pred_opt().unwrap_or(d)),
        o => return refuse(format!("time_day {o}: use =, >=, >, <=, <")),
    }
    Ok(())
}

/// `dimension <op> value` as a filter's operation.
fn comparison(op: &BinaryOperator, v: String, column: &Expr) -> Result<FilterOp, Unsupported> {
    Ok(match op {
        BinaryOperator::Eq => FilterOp::In(vec![v]),
        BinaryOperator::NotEq => FilterOp::NotIn(vec![v]),
        BinaryOperator::GtEq => FilterOp::Range {
            from: Some(v),
            to: None,
        },
        BinaryOperator::LtEq => FilterOp::Range {
            from: None,
            to: Some(v),
        },
        o => {
            return refuse(format!(
                "`{column} {o} …`: use =, <>, >=, <=, IN, NOT IN or BETWEEN"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn ask(sql: &str) -> Result<Translated, Unsupported> {
        let model = Model::shipped();
        let catalog = Catalog::of(&model);
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        let subject = catalog.subject_of(&statement)?.expect("a subject table");
        translate(&model, subject, &statement, false)
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_issues_example_is_one_semantic_query() {
        let t = ask("SELECT partner_tier, time_quarter, closed_revenue FROM sales WHERE partner_region = 'EMEA' GROUP BY 1, 2").unwrap();
        assert_eq!(
            t.query,
            Query {
                metrics: vec!["closed_revenue".into()],
                by: vec!["partner.tier".into(), "time.quarter".into()],
                filters: vec![Filter {
                    dimension: "partner.region".into(),
                    op: FilterOp::In(vec!["EMEA".into()])
                }],
                period: None,
                order: vec![],
                limit: None,
            }
        );
        let labels: Vec<_> = t.columns.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["partner_tier", "time_quarter", "closed_revenue"]);
        assert_eq!(t.columns[2].data_type, DataType::Decimal128(38, 2));
    }

    #[test]
    fn sum_and_measure_around_a_metric_ask_the_same() {
        let bare =
            ask("SELECT partner_tier, win_rate FROM pipeline GROUP BY partner_tier").unwrap();
        for sql in [
            "SELECT partner_tier, SUM(win_rate) FROM pipeline GROUP BY partner_tier",
            "select partner_tier, measure(win_rate) from public.pipeline group by 1",
        ] {
            let t = ask(sql).unwrap();
            assert_eq!(t.query, bare.query, "{sql}");
        }
    }

    #[test]
    fn time_day_conditions_set_the_period() {
        let expected = Some(Period {
            from: d("2026-07-01"),
            to: d("2026-09-30"),
        });
        for sql in [
            "SELECT closed_revenue FROM sales WHERE time_day BETWEEN '2026-07-01' AND '2026-09-30'",
            "SELECT closed_revenue FROM sales WHERE time_day >= DATE '2026-07-01' AND time_day < '2026-10-01'",
            "SELECT closed_revenue FROM sales WHERE '2026-06-30' < time_day AND time_day <= '2026-09-30 00:00:00'",
        ] {
            assert_eq!(ask(sql).unwrap().query.period, expected, "{sql}");
        }
    }

    #[test]
    fn order_limit_aliases_and_in_lists() {
        let t = ask("SELECT partner_name AS who, closed_revenue AS revenue FROM sales WHERE partner_tier IN ('Gold', 'Platinum') AND partner_region <> 'EMEA' GROUP BY who ORDER BY revenue DESC, 1 LIMIT 5").unwrap_err();
        // `partner_name` is not a column: the partner's name is `partner_partner_name`.
        assert!(t.0.contains("partner_partner_name"), "{t}");
        let t = ask("SELECT partner_partner_name AS who, closed_revenue AS revenue FROM sales WHERE partner_tier IN ('Gold', 'Platinum') AND partner_region <> 'EMEA' GROUP BY who ORDER BY revenue DESC, 1 LIMIT 5").unwrap();
        assert_eq!(
            t.query.order,
            vec![
                Order {
                    column: "closed_revenue".into(),
                    descending: true
                },
                Order {
                    column: "partner.partner_name".into(),
                    descending: false
                }
            ]
        );
        assert_eq!(t.query.limit, Some(5));
        assert_eq!(t.query.filters.len(), 2);
        assert_eq!(t.columns[0].label, "who");
    }

    #[test]
    fn a_derived_form_is_a_quoted_metric_name() {
        let t = ask(r#"SELECT partner_tier, "closed_revenue:pct_of_total" FROM sales GROUP BY 1"#)
            .unwrap();
        assert_eq!(t.query.metrics, ["closed_revenue:pct_of_total"]);
        assert_eq!(t.columns[1].data_type, DataType::Float64);
    }

    #[test]
    fn dimensions_alone_list_the_values_with_rows() {
        let t = ask("SELECT DISTINCT partner_tier FROM sales ORDER BY 1").unwrap();
        assert_eq!(t.query.by, ["partner.tier"]);
        assert_eq!(t.query.metrics.len(), 1);
        assert_eq!(t.columns.len(), 1);
    }

    #[test]
    fn what_cannot_be_translated_is_refused_with_what_is_supported() {
        for (sql, says) in [
            ("SELECT * FROM orders", "not reachable"),
            ("SELECT * FROM sales", "LIMIT 0"),
            (
                "SELECT closed_revenue FROM sales UNION SELECT closed_revenue FROM sales",
                "UNION",
            ),
            (
                "SELECT closed_revenue FROM sales WHERE partner_partner_id IN (SELECT partner_partner_id FROM sales)",
                "subqueries",
            ),
            (
                "SELECT closed_revenue FROM sales WHERE partner_partner_id IN (SELECT 'P-1')",
                "IN / NOT IN / BETWEEN",
            ),
            (
                "SELECT closed_revenue FROM sales WHERE partner_tier = 'Gold' OR partner_tier = 'Silver'",
                "joined by AND",
            ),
            (
                "SELECT avg(closed_revenue) FROM sales",
                "SUM(…) or MEASURE(…)",
            ),
            (
                "SELECT closed_revenue FROM sales WHERE closed_revenue > 5",
                "is a metric",
            ),
            (
                "SELECT closed_revenue FROM sales s JOIN pipeline p ON true",
                "one subject table",
            ),
            (
                "SELECT closed_revenue FROM sales WHERE time_day >= '2026-01-01'",
                "both ends",
            ),
            (
                "SELECT partner_tier, closed_revenue FROM sales GROUP BY 2",
                "dimension columns only",
            ),
            (
                "WITH x AS (SELECT 1) SELECT closed_revenue FROM sales",
                "WITH",
            ),
        ] {
            let e = ask(sql).unwrap_err();
            assert!(e.to_string().contains(says), "{sql}: {e}");
            assert!(e.to_string().contains("supported: SELECT"), "{sql}: {e}");
        }
    }

    #[test]
    fn every_fact_with_metrics_is_a_subject_table_named_by_the_business() {
        let catalog = Catalog::of(&Model::shipped());
        for t in ["sales", "pipeline", "service", "satisfaction"] {
            assert!(catalog.subjects.contains_key(t), "{t}");
        }
        assert!(catalog.base_tables.contains(&"orders".to_string()));
        let sales = &catalog.subjects["sales"];
        assert!(sales.column("partner_tier").is_some());
        assert_eq!(
            sales.column("time_day").unwrap().data_type,
            DataType::Date32
        );
    }
}
