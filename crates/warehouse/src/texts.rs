//! Text compared with constants by its views, in metrics' conditions and in filters.
//!
//! Metrics keep or sort their rows by comparing a text column with constants: `stage NOT IN
//! ('Closed Won', 'Closed Lost')`, `stage = 'Closed Won'`, `CASE priority WHEN 'P1' …`. Arrow
//! compares a column of views with a constant through a comparison function called for every
//! row: in the open pipeline and win rate by partner off the rollups, that call was 43 % of the
//! CPU. [`TextsByView`] rewrites such comparisons, in the aggregations and projections of a
//! plan, into one function ([`TextIs`]) that compares each row's 16-byte view with each
//! constant's as two numbers, and reads a row's bytes only when the constant is longer than a
//! view holds and the row has its length and first four bytes.
//!
//! A filter's comparisons are left as DataFusion wrote them in the logical plan: it prunes row
//! groups and pages by them, which it could not do with a function of Prism's. Once the scan
//! has its copy of the predicate, [`FiltersByView`] rewrites the filter step's own, which keeps
//! the rows the scan returns; with many constants (the twenty accounts a page shows), each
//! view is looked up in a set of them.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use arrow::buffer::{BooleanBuffer, Buffer};
use arrow::datatypes::DataType;
use arrow::datatypes::Schema;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::TransformedResult;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result, ScalarValue, exec_err};
use datafusion::logical_expr::expr::{Case, InList, ScalarFunction};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use datafusion::physical_expr::expressions::{
    BinaryExpr as PhysicalBinaryExpr, Column, InListExpr, Literal, not,
};
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};

/// The logical optimiser rule that writes a view column's comparisons with text constants, in
/// aggregations and projections, as [`TextIs`]: `=` and `IN` as it, `<>` and `NOT IN` as its
/// negation, `CASE column WHEN 'a' …` as `CASE WHEN text_is(column, 'a') …`, and an `OR` of two
/// (an `AND` of two negated) over the same column as one.
#[derive(Debug, Default)]
pub struct TextsByView;

impl OptimizerRule for TextsByView {
    fn name(&self) -> &str {
        "prism_texts_by_view"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        rewrite_aggregations_and_projections(plan, |e, schema| Ok(by_view(e, schema)))
    }
}

/// Rewrites each expression of an aggregation or a projection from the leaves up with
/// `rewrite` (given the input's schema), each keeping its name so that the plan's columns keep
/// theirs; other steps (filters, by which the scan prunes) are left as they are.
pub(crate) fn rewrite_aggregations_and_projections(
    plan: LogicalPlan,
    rewrite: impl Fn(Expr, &DFSchema) -> Result<Transformed<Expr>>,
) -> Result<Transformed<LogicalPlan>> {
    if !matches!(plan, LogicalPlan::Aggregate(_) | LogicalPlan::Projection(_)) {
        return Ok(Transformed::no(plan));
    }
    let schema = merge_schema(&plan.inputs());
    let names = NamePreserver::new(&plan);
    plan.map_expressions(|e| {
        if let Expr::GroupingSet(_) = e {
            return Ok(Transformed::no(e));
        }
        let name = names.save(&e);
        let e = e.transform_up(|e| rewrite(e, &schema))?;
        Ok(e.update_data(|e| name.restore(e)))
    })
}

/// The physical optimiser rule that evaluates a filter's comparisons of a column of views with
/// text constants (`=`, `<>`, `IN`, `NOT IN`) by [`TextIs`]. It runs after DataFusion has
/// given the scan below the filter its own copy of the predicate, by which the scan prunes row
/// groups and pages; the rows the scan returns are then kept by the faster comparison.
#[derive(Debug, Default)]
pub struct FiltersByView;

impl PhysicalOptimizerRule for FiltersByView {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let config = Arc::new(config.clone());
        plan.transform_up(|step| {
            let Some(filter) = step.downcast_ref::<FilterExec>() else {
                return Ok(Transformed::no(step));
            };
            let schema = filter.input().schema();
            let predicate = (filter.predicate().clone())
                .transform_up(|e| physical_by_view(e, &schema, &config))?;
            if !predicate.transformed {
                return Ok(Transformed::no(step));
            }
            let rewritten = FilterExecBuilder::new(predicate.data, filter.input().clone())
                .apply_projection_by_ref(filter.projection().as_ref())?
                .with_default_selectivity(filter.default_selectivity())
                .with_batch_size(filter.batch_size())
                .with_fetch(filter.fetch())
                .build()?;
            Ok(Transformed::yes(
                Arc::new(rewritten) as Arc<dyn ExecutionPlan>
            ))
        })
        .data()
    }

    fn name(&self) -> &str {
        "prism_filters_by_view"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A physical comparison of a column of views with text constants as a call of [`TextIs`].
fn physical_by_view(
    e: Arc<dyn PhysicalExpr>,
    schema: &Schema,
    config: &Arc<ConfigOptions>,
) -> Result<Transformed<Arc<dyn PhysicalExpr>>> {
    let view_column = |e: &Arc<dyn PhysicalExpr>| {
        e.downcast_ref::<Column>().is_some() && e.data_type(schema).ok() == Some(DataType::Utf8View)
    };
    let text = |e: &Arc<dyn PhysicalExpr>| {
        (e.downcast_ref::<Literal>())
            .and_then(|l| l.value().try_as_str().flatten().map(str::to_string))
    };
    let found = if let Some(b) = e.downcast_ref::<PhysicalBinaryExpr>() {
        let pair = match (text(b.left()), text(b.right())) {
            (None, Some(t)) if view_column(b.left()) => Some((b.left(), t)),
            (Some(t), None) if view_column(b.right()) => Some((b.right(), t)),
            _ => None,
        };
        match (b.op(), pair) {
            (Operator::Eq, Some((c, t))) => Some((c.clone(), vec![t], false)),
            (Operator::NotEq, Some((c, t))) => Some((c.clone(), vec![t], true)),
            _ => None,
        }
    } else if let Some(i) = e.downcast_ref::<InListExpr>() {
        let texts: Option<Vec<String>> = i.list().iter().map(text).collect();
        match texts {
            Some(texts) if view_column(i.expr()) => Some((i.expr().clone(), texts, i.negated())),
            _ => None,
        }
    } else {
        None
    };
    let Some((column, texts, negated)) = found else {
        return Ok(Transformed::no(e));
    };
    let args =
        std::iter::once(column)
            .chain(texts.into_iter().map(|t| {
                Arc::new(Literal::new(ScalarValue::Utf8(Some(t)))) as Arc<dyn PhysicalExpr>
            }))
            .collect();
    let is: Arc<dyn PhysicalExpr> = Arc::new(ScalarFunctionExpr::try_new(
        text_is_function(),
        args,
        schema,
        config.clone(),
    )?);
    Ok(Transformed::yes(match negated {
        false => is,
        true => not(is)?,
    }))
}

/// `e` with its own comparison written as [`TextIs`], when it is one (its operands have been
/// already).
fn by_view(e: Expr, schema: &DFSchema) -> Transformed<Expr> {
    let view_column = |e: &Expr| {
        matches!(e, Expr::Column(_)) && e.get_type(schema).ok() == Some(DataType::Utf8View)
    };
    let rewritten = match &e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::Eq | Operator::NotEq => {
                let pair = match (text_of(left), text_of(right)) {
                    (None, Some(t)) if view_column(left) => Some((left, t)),
                    (Some(t), None) if view_column(right) => Some((right, t)),
                    _ => None,
                };
                pair.map(|(column, t)| {
                    let is = text_is(column.as_ref().clone(), vec![t.to_string()]);
                    match op {
                        Operator::Eq => is,
                        _ => Expr::Not(Box::new(is)),
                    }
                })
            }
            // `a = 'x' OR a = 'y'`, as DataFusion writes a short `IN`: one look at each row.
            Operator::Or => match (text_is_of(left), text_is_of(right)) {
                (Some((a, x)), Some((b, y))) if a == b => {
                    Some(text_is(a.clone(), x.into_iter().chain(y).collect()))
                }
                _ => None,
            },
            // And `a <> 'x' AND a <> 'y'`, a short `NOT IN`. Null stays null either way.
            Operator::And => match (left.as_ref(), right.as_ref()) {
                (Expr::Not(l), Expr::Not(r)) => match (text_is_of(l), text_is_of(r)) {
                    (Some((a, x)), Some((b, y))) if a == b => Some(Expr::Not(Box::new(text_is(
                        a.clone(),
                        x.into_iter().chain(y).collect(),
                    )))),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        },
        Expr::InList(InList {
            expr,
            list,
            negated,
        }) if view_column(expr) => {
            let texts: Option<Vec<String>> = list
                .iter()
                .map(|v| text_of(v).map(str::to_string))
                .collect();
            texts.map(|texts| {
                let is = text_is(expr.as_ref().clone(), texts);
                match negated {
                    false => is,
                    true => Expr::Not(Box::new(is)),
                }
            })
        }
        // A null value matches no `WHEN`, as `text_is` is null for it.
        Expr::Case(Case {
            expr: Some(value),
            when_then_expr,
            else_expr,
        }) if view_column(value) && when_then_expr.iter().all(|(w, _)| text_of(w).is_some()) => {
            Some(Expr::Case(Case {
                expr: None,
                when_then_expr: (when_then_expr.iter())
                    .map(|(w, then)| {
                        let t = text_of(w).unwrap_or_default().to_string();
                        (
                            Box::new(text_is(value.as_ref().clone(), vec![t])),
                            then.clone(),
                        )
                    })
                    .collect(),
                else_expr: else_expr.clone(),
            }))
        }
        _ => None,
    };
    match rewritten {
        Some(r) => Transformed::yes(r),
        None => Transformed::no(e),
    }
}

/// A literal's text, unless it is not text or is null (as the physical rule reads one too).
fn text_of(e: &Expr) -> Option<&str> {
    match e {
        Expr::Literal(value, _) => value.try_as_str().flatten(),
        _ => None,
    }
}

/// The column and texts of a call of [`TextIs`].
fn text_is_of(e: &Expr) -> Option<(&Expr, Vec<String>)> {
    let Expr::ScalarFunction(ScalarFunction { func, args }) = e else {
        return None;
    };
    func.inner().downcast_ref::<TextIs>()?;
    let (column, texts) = args.split_first()?;
    let texts = texts.iter().map(|t| text_of(t).map(str::to_string));
    Some((column, texts.collect::<Option<Vec<_>>>()?))
}

/// `column` is one of `texts`.
fn text_is(column: Expr, texts: Vec<String>) -> Expr {
    let args = std::iter::once(column)
        .chain(
            texts
                .into_iter()
                .map(|t| Expr::Literal(ScalarValue::Utf8(Some(t)), None)),
        )
        .collect();
    Expr::ScalarFunction(ScalarFunction::new_udf(text_is_function(), args))
}

/// [`TextIs`], made once.
fn text_is_function() -> Arc<ScalarUDF> {
    static FUNCTION: LazyLock<Arc<ScalarUDF>> =
        LazyLock::new(|| Arc::new(ScalarUDF::new_from_impl(TextIs::default())));
    FUNCTION.clone()
}

/// `prism_text_is(column, 'a', 'b', …)`: whether each value is one of the texts; null for a
/// null value, as `column IN ('a', 'b', …)` is.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TextIs {
    signature: Signature,
}

impl Default for TextIs {
    fn default() -> Self {
        TextIs {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for TextIs {
    fn name(&self) -> &str {
        "prism_text_is"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Some((values, texts)) = args.args.split_first() else {
            return exec_err!("prism_text_is needs a column and texts");
        };
        let texts = texts
            .iter()
            .map(|t| match t {
                ColumnarValue::Scalar(s) => s.try_as_str().flatten(),
                ColumnarValue::Array(_) => None,
            })
            .collect::<Option<Vec<&str>>>();
        let Some(texts) = texts else {
            return exec_err!("prism_text_is compares with texts that are constants, not null");
        };
        match values {
            ColumnarValue::Array(a) => Ok(ColumnarValue::Array(Arc::new(is_any(a, &texts)?))),
            ColumnarValue::Scalar(s) => {
                let is = is_any(&s.to_array()?, &texts)?;
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&is, 0)?))
            }
        }
    }
}

/// Whether each of `values` is one of `texts`; null where the value is.
pub(crate) fn is_any(values: &ArrayRef, texts: &[&str]) -> Result<BooleanArray> {
    let values = match values.data_type() {
        DataType::Utf8View => values.clone(),
        _ => arrow::compute::cast(values, &DataType::Utf8View)?,
    };
    let values = values.as_string_view();
    let (views, buffers): (&[u128], _) = (values.views(), values.data_buffers());
    let wanted: Vec<Wanted> = texts.iter().map(|t| Wanted::of(t)).collect();
    let is = match wanted.len() {
        // A few texts: one pass over the views for each, each a loop the compiler can unroll,
        // rather than one pass asking each view about every text.
        ..=FEW => {
            let mut is = BooleanBuffer::new_unset(views.len());
            for w in &wanted {
                let (mask, view) = (w.mask, w.view);
                let found = match w.text.len() <= 12 {
                    true => BooleanBuffer::collect_bool(views.len(), |i| views[i] & mask == view),
                    false => BooleanBuffer::collect_bool(views.len(), |i| {
                        views[i] & mask == view && w.rest_matches(views[i], buffers)
                    }),
                };
                is = &is | &found;
            }
            is
        }
        // More (the twenty accounts a page shows, say): each view looked up once, a short
        // text's by its whole view, a long one's among the long texts.
        _ => {
            let (short, long): (Vec<&Wanted>, Vec<&Wanted>) =
                wanted.iter().partition(|w| w.text.len() <= 12);
            let short: HashSet<u128, foldhash::fast::RandomState> =
                short.iter().map(|w| w.view).collect();
            BooleanBuffer::collect_bool(views.len(), |i| {
                let view = views[i];
                match view as u32 {
                    n @ ..=12 => short.contains(&(view & held(n))),
                    _ => (long.iter())
                        .any(|w| view & w.mask == w.view && w.rest_matches(view, buffers)),
                }
            })
        }
    };
    Ok(BooleanArray::new(is, values.nulls().cloned()))
}

/// Up to this many texts, a column is compared with each in turn; with more, each value is
/// looked up in a set of them.
const FEW: usize = 4;

/// The bits of a view that hold a text of `length` bytes, up to 12, and its length.
fn held(length: u32) -> u128 {
    match 4 + length {
        16 => u128::MAX,
        n => (1u128 << (8 * n)) - 1,
    }
}

/// A text as a view is compared with it: the bits of the view it must have, and which.
struct Wanted<'a> {
    text: &'a [u8],
    /// The view's length and inline bytes (up to 12), or its length and first four bytes.
    view: u128,
    mask: u128,
}

impl<'a> Wanted<'a> {
    fn of(text: &'a str) -> Wanted<'a> {
        let text = text.as_bytes();
        // No view is that long: a mask that no view's length passes.
        let Ok(length) = u32::try_from(text.len()) else {
            return Wanted {
                text,
                view: 1,
                mask: 0,
            };
        };
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&length.to_le_bytes());
        let held_bytes = if text.len() <= 12 { text.len() } else { 4 };
        bytes[4..4 + held_bytes].copy_from_slice(&text[..held_bytes]);
        Wanted {
            text,
            view: u128::from_le_bytes(bytes),
            // The padding after a short text is not compared: Arrow asks for zeros there, but
            // a writer that left something else must not make a value unequal.
            mask: held(held_bytes as u32),
        }
    }

    /// Whether a view whose length and first bytes are the text's holds the text, when the
    /// text is longer than a view holds: its bytes are in a buffer the view names, at the offset
    /// it holds.
    fn rest_matches(&self, view: u128, buffers: &[Buffer]) -> bool {
        let buffer = (view >> 64) as u32 as usize;
        let offset = (view >> 96) as u32 as usize;
        (buffers.get(buffer))
            .and_then(|b| b.get(offset..offset + self.text.len()))
            .is_some_and(|bytes| bytes == self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch, StringArray, StringViewArray};
    use arrow::datatypes::{Field, Schema};
    use datafusion::common::tree_node::TreeNodeRecursion;
    use datafusion::datasource::MemTable;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::prelude::{SessionConfig, SessionContext};

    /// Values of every kind a view holds: empty, short, exactly 12 bytes (inline), 13 (in a
    /// buffer), long ones sharing their first four bytes or all but their last, and nulls.
    fn values() -> Vec<Option<&'static str>> {
        vec![
            Some("Closed Won"),
            Some("Closed Lost"),
            None,
            Some(""),
            Some("Prospecting"),
            Some("Qualification"),
            Some("twelve bytes"),
            Some("twelve bytez"),
            Some("thirteen byte"),
            Some("thirteen bytes, and then some more"),
            Some("thirteen bytes, and then some mora"),
            Some("Clos"),
            Some("Closed Won "),
            Some("Négociation"),
            None,
            Some("Closed Won"),
        ]
    }

    /// Texts to look for: present, absent, empty, of every length class.
    fn texts() -> Vec<Vec<&'static str>> {
        vec![
            vec!["Closed Won"],
            vec!["Closed Won", "Closed Lost"],
            vec![""],
            vec!["twelve bytes"],
            vec!["thirteen byte"],
            vec!["thirteen bytes, and then some more", "Qualification"],
            vec!["thirteen bytes, and then some morx"],
            vec!["Négociation", "nothing like it", "Clo"],
            vec![],
            // More than a few: looked up in a set.
            vec![
                "Closed Won",
                "",
                "Clos",
                "thirteen bytes, and then some more",
                "twelve bytes",
            ],
            vec![
                "thirteen byte",
                "thirteen bytes, and then some mora",
                "Qualification",
                "abcdefghijklmn",
                "Prospectingg",
            ],
            vec!["a", "b", "c", "d", "e", "Closed Lost", "twelve bytez"],
        ]
    }

    #[test]
    fn each_value_is_found_among_the_texts_as_plain_equality_finds_it() {
        let all = values();
        // Whole, and sliced so that the views and nulls start part-way.
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(StringViewArray::from(all.clone())),
            Arc::new(StringViewArray::from(all.clone()).slice(3, 11)),
            Arc::new(StringArray::from(all.clone())),
        ];
        for array in &arrays {
            let plain = arrow::compute::cast(array, &DataType::Utf8).unwrap();
            let plain = plain.as_string::<i32>();
            for texts in texts() {
                let is = is_any(array, &texts).unwrap();
                let expected: Vec<Option<bool>> = (0..plain.len())
                    .map(|i| plain.is_valid(i).then(|| texts.contains(&plain.value(i))))
                    .collect();
                let got: Vec<Option<bool>> = is.iter().collect();
                assert_eq!(got, expected, "{texts:?} in {array:?}");
            }
        }
    }

    fn session(by_view: bool) -> SessionContext {
        let mut state = SessionStateBuilder::new()
            .with_config(SessionConfig::new().with_target_partitions(2))
            .with_default_features();
        if by_view {
            state = state
                .with_optimizer_rule(Arc::new(TextsByView))
                .with_physical_optimizer_rule(Arc::new(FiltersByView));
        }
        let ctx = SessionContext::new_with_state(state.build());
        let stages = values();
        let n = stages.len() * 5;
        let schema = Arc::new(Schema::new(vec![
            Field::new("partner", DataType::Utf8View, false),
            Field::new("stage", DataType::Utf8View, true),
            Field::new("amount", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringViewArray::from_iter_values(
                    (0..n).map(|i| format!("P-{}", i % 3)),
                )),
                Arc::new(StringViewArray::from(
                    (0..n)
                        .map(|i| stages[(i * 7) % stages.len()])
                        .collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from_iter_values(
                    (0..n as i64).map(|i| i * i % 97),
                )),
            ],
        )
        .unwrap();
        let table = MemTable::try_new(schema, vec![vec![batch.clone()], vec![batch]]).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        ctx
    }

    const QUESTION: &str = "SELECT partner,
            sum(amount) FILTER (WHERE stage NOT IN ('Closed Won', 'Closed Lost')) AS open,
            count(*) FILTER (WHERE stage = 'Closed Won') AS won,
            count(*) FILTER (WHERE stage IN ('Closed Won', 'Closed Lost')) AS closed,
            count(*) FILTER (WHERE stage <> 'thirteen bytes, and then some more') AS not_long,
            count(*) FILTER (WHERE 'Qualification' = stage) AS qualified,
            count(*) FILTER (WHERE stage IN ('', 'Clos', 'Prospecting', 'Négociation', 'x')) AS many,
            count(*) FILTER (WHERE stage NOT IN ('', 'Clos', 'Prospecting', 'Négociation', 'x')) AS not_many,
            sum(CASE stage WHEN 'Closed Won' THEN 1 WHEN 'twelve bytes' THEN 10 WHEN 'thirteen byte' THEN 100 ELSE 1000 END) AS cases,
            sum(CASE WHEN stage = 'twelve bytez' OR stage IS NULL THEN amount END) AS either
        FROM t GROUP BY partner ORDER BY partner";

    async fn rows(ctx: &SessionContext, sql: &str) -> Vec<String> {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&batches).unwrap();
        text.to_string().lines().map(str::to_string).collect()
    }

    /// In the optimised plan of `sql`: the calls of `prism_text_is`, and the comparisons of
    /// text with constants left as they were, in every step or in filters alone.
    async fn comparisons(ctx: &SessionContext, sql: &str) -> (usize, Vec<String>) {
        let plan = ctx.sql(sql).await.unwrap().into_optimized_plan().unwrap();
        let (mut calls, mut left) = (0, Vec::new());
        plan.apply(|step| {
            for e in step.expressions() {
                e.apply(|e| {
                    match e {
                        Expr::ScalarFunction(f)
                            if f.func.inner().downcast_ref::<TextIs>().is_some() =>
                        {
                            calls += 1
                        }
                        Expr::BinaryExpr(BinaryExpr {
                            left: l,
                            op: Operator::Eq | Operator::NotEq,
                            right: r,
                        }) if text_of(l).is_some() || text_of(r).is_some() => {
                            left.push(e.to_string())
                        }
                        Expr::InList(_) | Expr::Case(Case { expr: Some(_), .. }) => {
                            left.push(e.to_string())
                        }
                        _ => {}
                    }
                    Ok(TreeNodeRecursion::Continue)
                })?;
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .unwrap();
        (calls, left)
    }

    #[tokio::test]
    async fn conditions_on_texts_give_datafusions_own_answers_compared_by_view() {
        let (by_view, own) = (session(true), session(false));
        let answers = rows(&by_view, QUESTION).await;
        assert_eq!(answers, rows(&own, QUESTION).await);
        assert_eq!(
            answers.len(),
            3 + 4,
            "three partners in a table: {answers:#?}"
        );
        // Each condition above is one the rule takes: none is left to Arrow's comparisons.
        let (calls, left) = comparisons(&by_view, QUESTION).await;
        assert!(calls >= 8, "{calls} calls");
        assert_eq!(left, Vec::<String>::new());
    }

    /// The filters' predicates of the physical plan of `sql`.
    async fn filters(ctx: &SessionContext, sql: &str) -> Vec<String> {
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let text = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("FilterExec: "))
            .map(str::to_string)
            .collect()
    }

    #[tokio::test]
    async fn filters_keep_rows_by_view_as_datafusion_does_and_scans_prune_by_the_comparisons() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.parquet");
        let own = session(false);
        // Row groups of 40 rows in the order of the stage: only those whose range of stages
        // holds 'Closed Won' are read.
        let options = datafusion::dataframe::DataFrameWriteOptions::new();
        let mut parquet = datafusion::common::config::TableParquetOptions::default();
        parquet.global.max_row_group_size = 40;
        let sorted = own
            .sql("SELECT * FROM t ORDER BY stage NULLS LAST, partner, amount")
            .await
            .unwrap();
        sorted
            .write_parquet(file.to_str().unwrap(), options, Some(parquet))
            .await
            .unwrap();
        let questions = [
            "SELECT partner, count(*), sum(amount) FROM t WHERE stage = 'Closed Won' GROUP BY partner ORDER BY partner",
            "SELECT partner, count(*), sum(amount) FROM t WHERE stage <> 'Qualification' AND partner IN ('P-1', 'P-2') GROUP BY partner ORDER BY partner",
            "SELECT partner, count(*) FROM t WHERE stage IN ('', 'Clos', 'twelve bytes', 'thirteen bytes, and then some more', 'Négociation', 'x') GROUP BY partner ORDER BY partner",
            "SELECT partner, count(*) FROM t WHERE stage NOT IN ('', 'Clos', 'twelve bytes', 'thirteen bytes, and then some more', 'Négociation', 'x') GROUP BY partner ORDER BY partner",
        ];
        let by_view = session(true);
        for ctx in [&by_view, &own] {
            ctx.deregister_table("t").unwrap();
            ctx.register_parquet("t", file.to_str().unwrap(), Default::default())
                .await
                .unwrap();
        }
        for q in questions {
            assert_eq!(rows(&by_view, q).await, rows(&own, q).await, "{q}");
            let kept_by = filters(&by_view, q).await;
            assert!(
                kept_by.iter().all(|f| f.contains("prism_text_is")),
                "{q}: {kept_by:?}"
            );
            assert!(
                !kept_by.is_empty()
                    && !kept_by
                        .iter()
                        .any(|f| f.contains(" IN (") || f.contains(" = ")),
                "{q}: {kept_by:?}"
            );
        }
        // The scan still has DataFusion's comparison, and prunes row groups by it.
        let q = questions[0];
        let plan = by_view
            .sql(&format!("EXPLAIN ANALYZE {q}"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let plan = arrow::util::pretty::pretty_format_batches(&plan)
            .unwrap()
            .to_string();
        assert!(plan.contains("predicate=stage@1 = Closed Won"), "{plan}");
        assert!(
            plan.contains("row_groups_pruned_statistics=4 total → 2 matched"),
            "{plan}"
        );
    }

    #[tokio::test]
    async fn the_logical_plans_filters_keep_datafusions_comparisons_for_pruning() {
        let sql =
            "SELECT count(*) FROM t WHERE stage = 'Closed Won' OR stage IN ('a', 'b', 'c', 'd')";
        let ctx = session(true);
        let (calls, left) = comparisons(&ctx, sql).await;
        assert_eq!(calls, 0);
        assert!(!left.is_empty(), "{left:?}");
        assert_eq!(rows(&ctx, sql).await, rows(&session(false), sql).await);
    }
}
