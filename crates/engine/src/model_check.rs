//! The model checked against the warehouse's tables before any query is compiled from it.
//!
//! The model crate parses every expression; only here are the tables known. Each fact's and
//! dimension's table must be a table of the data contract, every column an expression reads must
//! be one of that table's, and every expression must plan with DataFusion's own type rules: a
//! `sum` adds numbers, a `where` is a condition. A model that passes this never fails at query
//! time for a reason the model file could have shown.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::prelude::SessionContext;
use prism_contract::Entity;
use prism_model::{
    Aggregate, Expression, MetricKind, Model, ModelError, ModelProblem, did_you_mean,
};

/// Checks every table, column and expression of a model against the warehouse's tables,
/// reporting every problem at once with its line.
pub fn check_model(model: &Model) -> Result<(), ModelError> {
    let mut checker = Checker {
        ctx: SessionContext::new(),
        problems: Vec::new(),
    };
    for d in model.dimensions.values() {
        checker.dimension(d);
    }
    for f in model.facts.values() {
        checker.fact(model, f);
    }
    let mut problems = checker.problems;
    if problems.is_empty() {
        Ok(())
    } else {
        problems.sort_by_key(|p| p.line);
        Err(ModelError {
            file: model.file.clone(),
            problems,
        })
    }
}

/// The problems found so far, and a session to type expressions in.
struct Checker {
    ctx: SessionContext,
    problems: Vec<ModelProblem>,
}

impl Checker {
    /// A warehouse table's schema, or a problem naming the tables there are.
    fn table(&mut self, name: &str, owner: &str) -> Option<SchemaRef> {
        let entity = Entity::from_name(name);
        if entity.is_none() {
            let names: Vec<&str> = Entity::ALL.iter().map(|e| e.name()).collect();
            self.problems.push(ModelProblem {
                line: None,
                message: format!(
                    "{owner}: `{name}` is not a table of the warehouse (one of {}){}",
                    names.join(", "),
                    did_you_mean(name, names.iter().copied())
                ),
            });
        }
        entity.map(|e| e.schema())
    }

    /// A dimension's table, key and attributes.
    fn dimension(&mut self, d: &prism_model::Dimension) {
        let owner = format!("dimension `{}`", d.name);
        let Some(schema) = self.table(&d.table, &owner) else {
            return;
        };
        column(&schema, &d.key, None, &owner, "key ", &mut self.problems);
        for a in d.attributes.values() {
            let owner = format!("attribute `{}.{}`", d.name, a.name);
            match &a.expression {
                Some(e) => {
                    typed(&self.ctx, &schema, e, a.line, &owner, &mut self.problems);
                }
                None => column(&schema, &a.name, a.line, &owner, "", &mut self.problems),
            }
        }
    }

    /// A fact's table, time column, attributes, lookups and base metrics.
    fn fact(&mut self, model: &Model, f: &prism_model::Fact) {
        let owner = format!("fact `{}`", f.name);
        let Some(schema) = self.table(&f.table, &owner) else {
            return;
        };
        match schema.field_with_name(&f.time).map(|x| x.data_type()) {
            Ok(DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)) => {}
            Ok(other) => self.problems.push(ModelProblem {
                line: None,
                message: format!("{owner}: time column `{}` is {other}, not a date", f.time),
            }),
            Err(_) => column(&schema, &f.time, None, &owner, "time ", &mut self.problems),
        }
        for a in f.attributes.values() {
            column(
                &schema,
                &a.column,
                None,
                &owner,
                "attribute ",
                &mut self.problems,
            );
        }
        let mut fields = self.lookups(f, &schema, &owner);
        let schema = Arc::new(Schema::new(fields.clone()));
        // A state reads the day it is taken at as `as_of`.
        fields.push(arrow::datatypes::Field::new(
            "as_of",
            DataType::Date32,
            false,
        ));
        let state_schema = Arc::new(Schema::new(fields));
        for m in model.metrics.values().filter(|m| m.fact == f.name) {
            self.metric(m, if m.state { &state_schema } else { &schema });
        }
    }

    /// The fact's columns with its lookups' columns under the lookups' names.
    fn lookups(
        &mut self,
        f: &prism_model::Fact,
        schema: &SchemaRef,
        owner: &str,
    ) -> Vec<arrow::datatypes::Field> {
        let mut fields: Vec<arrow::datatypes::Field> =
            schema.fields().iter().map(|x| x.as_ref().clone()).collect();
        for l in f.lookups.values() {
            let owner = format!("{owner}: lookup `{}`", l.name);
            column(schema, &l.key, None, &owner, "key ", &mut self.problems);
            let Some(looked_up) = self.table(&l.table, &owner) else {
                continue;
            };
            column(&looked_up, &l.key, None, &owner, "key ", &mut self.problems);
            // A partner's fact looks up its own partner's rows only: the table must say whose
            // each row is.
            if l.same_partner && looked_up.field_with_name("partner_id").is_err() {
                self.problems.push(ModelProblem {
                    line: None,
                    message: format!(
                        "{owner}: `{}` has no partner_id, so a partner's row could look up another partner's; look up a table with partner_id",
                        l.table
                    ),
                });
            }
            match looked_up.field_with_name(&l.column) {
                Ok(c) => fields.push(arrow::datatypes::Field::new(
                    &l.name,
                    c.data_type().clone(),
                    true,
                )),
                Err(_) => column(&looked_up, &l.column, None, &owner, "", &mut self.problems),
            }
        }
        fields
    }

    /// A base metric's measure (a sum adds numbers) and condition (a boolean).
    fn metric(&mut self, m: &prism_model::Metric, schema: &SchemaRef) {
        let MetricKind::Base { aggregate, filter } = &m.kind else {
            return;
        };
        let owner = format!("metric `{}`", m.name);
        let value = match aggregate {
            Aggregate::CountRows => None,
            Aggregate::Sum(e) | Aggregate::Count(e) | Aggregate::CountDistinct(e) => {
                typed(&self.ctx, schema, e, m.line, &owner, &mut self.problems)
            }
        };
        if let (Aggregate::Sum(e), Some(ty)) = (aggregate, value)
            && !ty.is_numeric()
        {
            self.problems.push(ModelProblem {
                line: m.line,
                message: format!("{owner}: `sum: {e}` is {ty}, not a number to add up"),
            });
        }
        if let Some(e) = filter
            && let Some(ty) = typed(&self.ctx, schema, e, m.line, &owner, &mut self.problems)
            && ty != DataType::Boolean
        {
            self.problems.push(ModelProblem {
                line: m.line,
                message: format!("{owner}: `where: {e}` is {ty}, not a condition"),
            });
        }
    }
}

/// The type of every attribute a filter may name (`partner.tier`, `opportunity.stage`), as the
/// warehouse's tables hold it, so that a filter compares typed values (a price as a number, a
/// day as a date) rather than text. An attribute whose type cannot be known (a model that does
/// not check) is left out, and is compared as text.
pub(crate) fn attribute_types(model: &Model) -> BTreeMap<String, DataType> {
    let mut types = BTreeMap::new();
    let mut ctx: Option<SessionContext> = None;
    for d in model.dimensions.values() {
        let Some(schema) = Entity::from_name(&d.table).map(|e| e.schema()) else {
            continue;
        };
        for a in d.attributes.values() {
            let ty = match &a.expression {
                None => schema
                    .field_with_name(&a.name)
                    .ok()
                    .map(|f| f.data_type().clone()),
                Some(e) => {
                    let ctx = ctx.get_or_insert_with(SessionContext::new);
                    typed(ctx, &schema, e, None, "", &mut Vec::new())
                }
            };
            if let Some(ty) = ty {
                types.insert(format!("{}.{}", d.name, a.name), ty);
            }
        }
    }
    for f in model.facts.values() {
        let Some(schema) = Entity::from_name(&f.table).map(|e| e.schema()) else {
            continue;
        };
        for a in f.attributes.values() {
            if let Ok(field) = schema.field_with_name(&a.column) {
                types.insert(a.name.clone(), field.data_type().clone());
            }
        }
    }
    types
}

/// Each summed base metric's type as DataFusion sums it over its fact's table, for the sums
/// that may be summed again and given that type back: a decimal (whose second sum widens, and
/// is cast back), or a type a sum keeps (whole numbers, floats). A sum whose type cannot be
/// known here (it reads a lookup's column) is left out, and is never summed twice.
pub(crate) fn sum_types(model: &Model) -> BTreeMap<String, DataType> {
    let sum = datafusion::functions_aggregate::sum::sum_udaf();
    let ctx = SessionContext::new();
    let mut types = BTreeMap::new();
    for m in model.metrics.values() {
        let MetricKind::Base {
            aggregate: Aggregate::Sum(e),
            ..
        } = &m.kind
        else {
            continue;
        };
        let Some(schema) = model
            .facts
            .get(&m.fact)
            .and_then(|f| Entity::from_name(&f.table))
            .map(|e| e.schema())
        else {
            continue;
        };
        let Some(summed) = typed(&ctx, &schema, e, None, "", &mut Vec::new())
            .and_then(|ty| sum.return_type(&[ty]).ok())
        else {
            continue;
        };
        let again = sum.return_type(std::slice::from_ref(&summed)).ok();
        if matches!(summed, DataType::Decimal128(..)) || again.as_ref() == Some(&summed) {
            types.insert(m.name.clone(), summed);
        }
    }
    types
}

/// A problem unless `name` is a column of the table.
fn column(
    schema: &Schema,
    name: &str,
    line: Option<usize>,
    owner: &str,
    what: &str,
    problems: &mut Vec<ModelProblem>,
) {
    if schema.field_with_name(name).is_err() {
        problems.push(ModelProblem {
            line,
            message: format!(
                "{owner}: {what}`{name}` is not a column of the table{}",
                columns_hint(schema, name)
            ),
        });
    }
}

fn columns_hint(schema: &Schema, name: &str) -> String {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    match did_you_mean(name, names.iter().copied()) {
        hint if !hint.is_empty() => hint,
        _ => format!(" ({})", names.join(", ")),
    }
}

/// The type of an expression over the table's row, as DataFusion plans it, or a problem.
fn typed(
    ctx: &SessionContext,
    schema: &Arc<Schema>,
    e: &Expression,
    line: Option<usize>,
    owner: &str,
    problems: &mut Vec<ModelProblem>,
) -> Option<DataType> {
    let before = problems.len();
    for c in e.columns() {
        column(schema, &c, line, owner, "", problems);
    }
    if problems.len() > before {
        return None;
    }
    let planned = DFSchema::try_from(schema.as_ref().clone())
        .and_then(|df| {
            let expr = ctx.parse_sql_expr(e.text(), &df)?;
            ctx.create_physical_expr(expr, &df)
        })
        .and_then(|p| p.data_type(schema));
    match planned {
        Ok(ty) => Some(ty),
        Err(err) => {
            problems.push(ModelProblem {
                line,
                message: format!(
                    "{owner}: `{e}` cannot be computed: {}",
                    err.strip_backtrace()
                ),
            });
            None
        }
    }
}
