//! The first step of an aggregation by one text column, taking each run of equal values once.
//!
//! The facts are stored in the order of their partner (and the order lines in the Z-order of
//! product and partner), so consecutive rows mostly share their partner: a dozen lines in a row
//! on average in the order lines at scale 8 (four at scale 100), thousands in the
//! partner-ordered facts. DataFusion's grouping hashes and looks up every row's value all the
//! same: in revenue by partner off the rollups, its hash table's look-ups were nearly half the
//! CPU. [`RunsFirst`] replaces the partial step of such an aggregation by [`RunsAggregateExec`],
//! which compares each value with the one before it (mostly a compare of their 16-byte views)
//! and looks up only the first of each run. Counts and sums of integers, decimals and
//! durations are computed for each run by the step itself and merged by DataFusion's own
//! accumulators as they merge partial states ([`Partial`]); every other aggregate is given
//! every row, with the group of its run, so what it computes (filters, nulls, averages) is
//! DataFusion's. Where runs are short (grouped by customer, say) a batch is looked up row by
//! row as before.

use std::fmt;
use std::sync::Arc;

use arrow::array::downcast_primitive_array;
use arrow::array::{
    Array, ArrayRef, ArrowNativeTypeOp, ArrowPrimitiveType, AsArray, BooleanArray, Int64Array,
    PrimitiveArray, RecordBatch, UInt32Array,
};
use arrow::buffer::BooleanBuffer;
use arrow::compute::take;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::GroupsAccumulator;
use datafusion::logical_expr::{ColumnarValue, EmitTo};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::InputOrderMode;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties, metrics,
    metrics::RecordOutput,
};
use futures::StreamExt;

/// Groups held before the partial step hands them on and starts again: the final step merges
/// them whatever their number, so this only bounds the memory of a grouping by many values.
/// (A few dozen in unit tests, so that they hand groups on early too.)
const MOST_GROUPS: usize = if cfg!(test) { 40 } else { 1 << 20 };

/// The physical optimiser rule that puts [`RunsAggregateExec`] in place of each partial
/// aggregation it can stand for: grouped by one text column (read as views), over input in no
/// particular order, every aggregate with a grouped accumulator, none distinct or ordered, and
/// no limit.
#[derive(Debug, Default)]
pub struct RunsFirst;

impl PhysicalOptimizerRule for RunsFirst {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(aggregate) = node.downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(node));
            };
            match RunsAggregateExec::standing_for(aggregate)? {
                Some(runs) => Ok(Transformed::yes(Arc::new(runs) as Arc<dyn ExecutionPlan>)),
                None => Ok(Transformed::no(node)),
            }
        })
        .data()
    }

    fn name(&self) -> &str {
        "runs_first"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The partial step of an aggregation by one text column, looking up each run of equal values
/// once (see the module's documentation). Its output is the partial step's: the group's value,
/// then each aggregate's state, as DataFusion's final step merges them.
#[derive(Debug)]
pub struct RunsAggregateExec {
    input: Arc<dyn ExecutionPlan>,
    group: Arc<dyn PhysicalExpr>,
    group_schema: SchemaRef,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: metrics::ExecutionPlanMetricsSet,
}

impl RunsAggregateExec {
    /// The step standing for `aggregate`, if it can.
    pub fn standing_for(aggregate: &AggregateExec) -> Result<Option<RunsAggregateExec>> {
        let by = aggregate.group_expr();
        let input_schema = aggregate.input().schema();
        // Only an aggregation that reads its input in no order: where DataFusion planned one
        // over sorted input, the steps above it may count on its output's order.
        let can = *aggregate.mode() == AggregateMode::Partial
            && *aggregate.input_order_mode() == InputOrderMode::Linear
            && aggregate.limit_options().is_none()
            && by.is_single()
            && by.expr().len() == 1
            && by.expr()[0].0.data_type(&input_schema)? == DataType::Utf8View
            && aggregate.aggr_expr().iter().all(|a| {
                a.groups_accumulator_supported() && !a.is_distinct() && a.order_bys().is_empty()
            });
        if !can {
            return Ok(None);
        }
        let schema = aggregate.schema();
        let properties = properties(&schema, aggregate.input());
        Ok(Some(RunsAggregateExec {
            input: Arc::clone(aggregate.input()),
            group: Arc::clone(&by.expr()[0].0),
            group_schema: by.group_schema(&input_schema)?,
            aggregates: aggregate.aggr_expr().to_vec(),
            filters: aggregate.filter_expr().to_vec(),
            schema,
            properties,
            metrics: Default::default(),
        }))
    }
}

/// A partial step's properties: its input's partitions, in no order, all handed on at the end.
fn properties(schema: &SchemaRef, input: &Arc<dyn ExecutionPlan>) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(
        EquivalenceProperties::new(Arc::clone(schema)),
        input.output_partitioning().clone(),
        EmissionType::Final,
        Boundedness::Bounded,
    ))
}

impl DisplayAs for RunsAggregateExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let aggregates: Vec<&str> = self.aggregates.iter().map(|a| a.name()).collect();
        write!(
            f,
            "RunsAggregateExec: mode=Partial, gby=[{}], aggr=[{}]",
            self.group,
            aggregates.join(", ")
        )
    }
}

impl ExecutionPlan for RunsAggregateExec {
    fn name(&self) -> &str {
        "RunsAggregateExec"
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let arguments = self.aggregates.iter().flat_map(|a| a.expressions());
        let filters = self.filters.iter().flatten().cloned();
        for e in std::iter::once(Arc::clone(&self.group))
            .chain(arguments)
            .chain(filters)
        {
            if f(&e)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children.swap_remove(0);
        let properties = properties(&self.schema, &input);
        Ok(Arc::new(RunsAggregateExec {
            input,
            group: Arc::clone(&self.group),
            group_schema: Arc::clone(&self.group_schema),
            aggregates: self.aggregates.clone(),
            filters: self.filters.clone(),
            schema: Arc::clone(&self.schema),
            properties,
            metrics: Default::default(),
        }))
    }

    fn metrics(&self) -> Option<metrics::MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, Arc::clone(&context))?;
        let accumulators = self
            .aggregates
            .iter()
            .map(|a| a.create_groups_accumulator())
            .collect::<Result<Vec<_>>>()?;
        let reservation = MemoryConsumer::new(format!("RunsAggregateExec[{partition}]"))
            .register(context.memory_pool());
        let baseline = metrics::BaselineMetrics::new(&self.metrics, partition);
        let state = Grouping {
            input,
            group: Arc::clone(&self.group),
            arguments: self.aggregates.iter().map(|a| a.expressions()).collect(),
            filters: self.filters.clone(),
            values: new_group_values(Arc::clone(&self.group_schema), &GroupOrdering::None)?,
            accumulators,
            partials: self.aggregates.iter().map(|a| Partial::of(a)).collect(),
            schema: Arc::clone(&self.schema),
            batch_size: context.session_config().batch_size(),
            reservation,
            baseline,
            heads: Vec::new(),
            head_groups: Vec::new(),
            groups: Vec::new(),
            pending: Vec::new(),
            done: false,
        };
        let batches = futures::stream::unfold(state, |mut state| async move {
            state.next().await.map(|batch| (batch, state))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches,
        )))
    }
}

/// The state of one partition's partial step.
struct Grouping {
    input: SendableRecordBatchStream,
    group: Arc<dyn PhysicalExpr>,
    arguments: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    values: Box<dyn GroupValues>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    /// For each aggregate, the state the step computes for a whole run itself, if any.
    partials: Vec<Option<Partial>>,
    schema: SchemaRef,
    batch_size: usize,
    reservation: MemoryReservation,
    baseline: metrics::BaselineMetrics,
    /// The first row of each run of the batch at hand.
    heads: Vec<u32>,
    /// The group of each run's first row.
    head_groups: Vec<usize>,
    /// The group of each row.
    groups: Vec<usize>,
    /// Output batches not yet handed on.
    pending: Vec<RecordBatch>,
    done: bool,
}

impl Grouping {
    async fn next(&mut self) -> Option<Result<RecordBatch>> {
        loop {
            if let Some(batch) = self.pending.pop() {
                // Rows, batches and bytes handed on, as `explain --analyze` shows them.
                return Some(Ok(batch.record_output(&self.baseline)));
            }
            if self.done {
                self.baseline.done();
                return None;
            }
            match self.input.next().await {
                Some(Ok(batch)) => {
                    let compute = self.baseline.elapsed_compute().clone();
                    let timer = compute.timer();
                    let added = self.add(&batch);
                    timer.done();
                    if let Err(e) = added {
                        return Some(Err(e));
                    }
                    // Handed on early where the groups grow many: the final step merges them.
                    if self.values.len() >= MOST_GROUPS
                        && let Err(e) = self.emit()
                    {
                        return Some(Err(e));
                    }
                }
                Some(Err(e)) => return Some(Err(e)),
                None => {
                    self.done = true;
                    if let Err(e) = self.emit() {
                        return Some(Err(e));
                    }
                }
            }
        }
    }

    /// Adds a batch's rows to their groups' accumulators.
    fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let column = self.group.evaluate(batch)?.into_array(rows)?;
        runs_of(&column, &mut self.heads);
        self.groups.clear();
        // Runs too short to pay for themselves: every row looked up, and given to each
        // accumulator.
        let by_run = self.heads.len() * 2 <= rows;
        if by_run {
            let first_rows = UInt32Array::from_iter_values(self.heads.iter().copied());
            let heads = take(&column, &first_rows, None)?;
            self.values.intern(&[heads], &mut self.head_groups)?;
        } else {
            self.values
                .intern(std::slice::from_ref(&column), &mut self.groups)?;
        }
        let total = self.values.len();
        for (i, accumulator) in self.accumulators.iter_mut().enumerate() {
            // Arguments as evaluated: a constant (`COUNT(*)` counts `1`) is made a column of
            // it only if the accumulator is given every row.
            let arguments = self.arguments[i]
                .iter()
                .map(|e| e.evaluate(batch))
                .collect::<Result<Vec<ColumnarValue>>>()?;
            let filter = match &self.filters[i] {
                Some(f) => Some(f.evaluate(batch)?.into_array(rows)?),
                None => None,
            };
            let filter: Option<&BooleanArray> = filter.as_ref().map(|f| f.as_boolean());
            if by_run
                && let Some(part) = &self.partials[i]
                && let Some(state) = part.of_runs(&arguments, filter, &self.heads, rows)
            {
                accumulator.merge_batch(&[state], &self.head_groups, total)?;
                continue;
            }
            if by_run && self.groups.is_empty() {
                for ((start, end), &group) in runs(&self.heads, rows).zip(&self.head_groups) {
                    self.groups.resize(self.groups.len() + end - start, group);
                }
            }
            let arguments = (arguments.into_iter())
                .map(|a| a.into_array(rows))
                .collect::<Result<Vec<ArrayRef>>>()?;
            accumulator.update_batch(&arguments, &self.groups, filter, total)?;
        }
        let size = self.values.size()
            + self.accumulators.iter().map(|a| a.size()).sum::<usize>()
            + self.groups.capacity() * size_of::<usize>();
        // Memory is accounted for as DataFusion's own step does; a partial step may always
        // hand its groups on, so a refusal empties it rather than failing the question.
        if self.reservation.try_resize(size).is_err() {
            self.emit()?;
        }
        Ok(())
    }

    /// Hands on every group held so far and starts again.
    fn emit(&mut self) -> Result<()> {
        if self.values.is_empty() {
            return Ok(());
        }
        let mut columns = self.values.emit(EmitTo::All)?;
        for accumulator in self.accumulators.iter_mut() {
            columns.extend(accumulator.state(EmitTo::All)?);
        }
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        let mut at = 0;
        let mut batches = Vec::new();
        while at < batch.num_rows() {
            let len = self.batch_size.min(batch.num_rows() - at);
            batches.push(batch.slice(at, len));
            at += len;
        }
        // Popped from the end, so put in reverse.
        batches.reverse();
        self.pending.extend(batches);
        self.reservation.resize(self.values.size());
        Ok(())
    }
}

/// An aggregate whose state the step computes for each run of rows itself, handing
/// DataFusion's accumulator one state per run to merge, as its final step merges the partial
/// steps' states: per row, the accumulator tracks which groups it has seen and adds to a group
/// found by index, which was a third of revenue by partner's grouping. Only where adding in
/// another order gives the same result: counts, and sums of integers, decimals and durations
/// (a service request's time to first response; wrapping on overflow, as DataFusion's own),
/// never of floating-point numbers.
#[derive(Debug, Clone)]
enum Partial {
    /// `SUM` of one argument, with its state's type (`Int64`, `UInt64`, `Decimal128` or a
    /// `Duration`).
    Sum(DataType),
    /// `COUNT` of one argument: its rows neither null nor filtered out.
    Count,
}

impl Partial {
    fn of(aggregate: &AggregateFunctionExpr) -> Option<Partial> {
        if aggregate.is_distinct() || aggregate.expressions().len() != 1 {
            return None;
        }
        let state = aggregate.state_fields().ok()?;
        let [state] = state.as_slice() else {
            return None;
        };
        match (aggregate.fun().name(), state.data_type()) {
            (
                "sum",
                t @ (DataType::Int64
                | DataType::UInt64
                | DataType::Decimal128(_, _)
                | DataType::Duration(_)),
            ) => Some(Partial::Sum(t.clone())),
            ("count", DataType::Int64) => Some(Partial::Count),
            _ => None,
        }
    }

    /// The state of each run (`heads` its first rows, of `rows` in all), or `None` where the
    /// argument is not of the type this sum adds, or a constant it does not count (left to the
    /// accumulator, row by row).
    fn of_runs(
        &self,
        arguments: &[ColumnarValue],
        filter: Option<&BooleanArray>,
        heads: &[u32],
        rows: usize,
    ) -> Option<ArrayRef> {
        let argument = match (self, arguments.first()?) {
            (_, ColumnarValue::Array(a)) => Some(a),
            // A count of a constant counts every row the filter keeps (none, if it is null).
            (Partial::Count, ColumnarValue::Scalar(s)) if !s.is_null() => None,
            // A sum of a constant, or a count of null: left to the accumulator.
            (_, ColumnarValue::Scalar(_)) => return None,
        };
        // The rows that count: not null, and kept by the filter (a null filter keeps none).
        let filter = filter.map(|f| match f.nulls() {
            Some(n) => f.values() & n.inner(),
            None => f.values().clone(),
        });
        let valid = argument
            .and_then(|a| a.logical_nulls())
            .map(|n| n.into_inner());
        let counted = match (filter, valid) {
            (Some(f), Some(v)) => Some(&f & &v),
            (f, v) => f.or(v),
        };
        let counted = counted.as_ref();
        let runs = runs(heads, rows);
        match self {
            Partial::Count => {
                let counts: Int64Array = runs
                    .map(|(start, end)| match counted {
                        Some(c) => c.slice(start, end - start).count_set_bits() as i64,
                        None => (end - start) as i64,
                    })
                    .collect();
                Some(Arc::new(counts))
            }
            Partial::Sum(state) => {
                let argument = argument?;
                // The state is the argument's type (a decimal's precision aside): sums are added
                // as they are stored.
                let same = match (state, argument.data_type()) {
                    (DataType::Decimal128(_, scale), DataType::Decimal128(_, s)) => scale == s,
                    (state, t) => state == t,
                };
                if !same {
                    return None;
                }
                // `Partial::of` took integers, decimals and durations only.
                Some(downcast_primitive_array!(
                    argument => Arc::new(
                        sums_of_runs(argument, counted, runs).with_data_type(state.clone())
                    ),
                    _ => return None,
                ))
            }
        }
    }
}

/// Each run's first row and the row after its last, from the first rows of the runs of a
/// batch of `rows`.
fn runs(heads: &[u32], rows: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
    let ends = heads.iter().skip(1).map(|&h| h as usize).chain([rows]);
    heads.iter().map(|&h| h as usize).zip(ends)
}

/// Each run's sum of the rows counted (all, without `counted`), wrapping on overflow; null
/// where a run has none.
fn sums_of_runs<T: ArrowPrimitiveType>(
    values: &PrimitiveArray<T>,
    counted: Option<&BooleanBuffer>,
    runs: impl Iterator<Item = (usize, usize)>,
) -> PrimitiveArray<T> {
    let values = values.values();
    let zero = T::Native::default();
    match counted {
        // Every run has a row: no nulls to track.
        None => PrimitiveArray::from_iter_values(runs.map(|(start, end)| {
            values[start..end]
                .iter()
                .fold(zero, |a, &v| a.add_wrapping(v))
        })),
        Some(counted) => runs
            .map(|(start, end)| {
                let mut any = false;
                let mut sum = zero;
                for row in counted.slice(start, end - start).set_indices() {
                    any = true;
                    sum = sum.add_wrapping(values[start + row]);
                }
                any.then_some(sum)
            })
            .collect(),
    }
}

/// The first row of each run of equal values of a column of text views: a row starts a run
/// where it is null and the row before is not, or the reverse, or where both are not null and
/// their texts differ (nulls are one group, as a grouping takes them). A view of up to 12 bytes
/// holds its text; a longer one its length, its first four bytes and its place: views that
/// differ hold different texts unless both are long with the same length and first bytes, and
/// only then are the texts compared.
fn runs_of(column: &ArrayRef, heads: &mut Vec<u32>) {
    heads.clear();
    heads.push(0);
    let texts = column.as_string_view();
    let views = texts.views();
    // Pairs of neighbours, without an index checked against the bounds at every row.
    let pairs = views.iter().zip(&views[1..]).enumerate();
    let same = |i: usize, a: u128, b: u128| {
        a == b || ((b as u32) > 12 && a as u64 == b as u64 && texts.value(i) == texts.value(i + 1))
    };
    match texts.nulls().filter(|n| n.null_count() > 0) {
        None => heads.extend(
            pairs
                .filter(|&(i, (&a, &b))| !same(i, a, b))
                .map(|(i, _)| i as u32 + 1),
        ),
        Some(nulls) => {
            let valid = nulls.inner();
            let validity = valid.iter().zip(valid.iter().skip(1));
            heads.extend(
                pairs
                    .zip(validity)
                    .filter(|&((i, (&a, &b)), (valid_a, valid_b))| {
                        valid_a != valid_b || (valid_b && !same(i, a, b))
                    })
                    .map(|((i, _), _)| i as u32 + 1),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Decimal128Array, StringViewArray};
    use arrow::datatypes::{Field, Schema, TimeUnit};
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;

    /// Order lines in runs of one partner, with the texts a view holds apart (up to 12 bytes
    /// inline, longer ones by place), nulls among the partners and the amounts, and one
    /// partner's runs far apart: every way a run can start or a group can recur. Runs of `run`
    /// rows.
    fn lines(batch: usize, batches: usize, run: usize) -> Vec<Vec<RecordBatch>> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("partner_id", DataType::Utf8View, true),
            Field::new("revenue", DataType::Decimal128(18, 2), true),
            Field::new("won", DataType::Boolean, false),
            Field::new("quantity", DataType::Int64, true),
            Field::new("waited", DataType::Duration(TimeUnit::Microsecond), true),
        ]));
        let partner = |i: usize| match (i / run) % 97 {
            0 => None,
            // An empty text, whose view is all zeros.
            1 => Some(String::new()),
            p if p % 3 == 0 => Some(format!("P-{p:05}")),
            p => Some(format!("a partner with a long name number {p}")),
        };
        let mut partitions = vec![Vec::new(), Vec::new()];
        for b in 0..batches {
            let rows = (b * batch)..((b + 1) * batch);
            let partners: StringViewArray = rows.clone().map(partner).collect();
            let revenue: Decimal128Array = rows
                .clone()
                .map(|i| (i % 11 != 0).then_some((i as i128 * 7919) % 100_000 - 20_000))
                .collect::<Decimal128Array>()
                .with_precision_and_scale(18, 2)
                .unwrap();
            let won: BooleanArray = rows.clone().map(|i| Some(i % 3 == 0)).collect();
            let quantity: arrow::array::Int64Array = rows
                .clone()
                .map(|i| (i % 13 != 0).then_some(i as i64 % 50 - 5))
                .collect();
            // A service request's wait for its first response.
            let waited: arrow::array::DurationMicrosecondArray = rows
                .map(|i| (i % 7 != 0).then_some(i as i64 * 1_000_003 % 86_400_000_000))
                .collect();
            let columns: Vec<ArrayRef> = vec![
                Arc::new(partners),
                Arc::new(revenue),
                Arc::new(won),
                Arc::new(quantity),
                Arc::new(waited),
            ];
            partitions[b % 2].push(RecordBatch::try_new(Arc::clone(&schema), columns).unwrap());
        }
        partitions
    }

    /// A session of two partitions, with the rule or without.
    fn session(runs_first: bool) -> SessionContext {
        let config = SessionConfig::new().with_target_partitions(2);
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features();
        if runs_first {
            state = state.with_physical_optimizer_rule(Arc::new(RunsFirst));
        }
        SessionContext::new_with_state(state.build())
    }

    /// A question's answer as a table of text, and its physical plan.
    async fn answer_in(ctx: &SessionContext, sql: &str) -> (String, String) {
        let frame = ctx.sql(sql).await.unwrap();
        let plan = frame.clone().create_physical_plan().await.unwrap();
        let plan = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(false)
            .to_string();
        let rows = frame.collect().await.unwrap();
        (pretty_format_batches(&rows).unwrap().to_string(), plan)
    }

    async fn answer(runs_first: bool, sql: &str, lines: &[Vec<RecordBatch>]) -> (String, String) {
        let ctx = session(runs_first);
        let schema = lines[0][0].schema();
        let table = MemTable::try_new(schema, lines.to_vec()).unwrap();
        ctx.register_table("orders", Arc::new(table)).unwrap();
        answer_in(&ctx, sql).await
    }

    #[tokio::test]
    async fn a_grouping_by_runs_answers_as_datafusion_s_own_and_takes_its_place() {
        let sql = "SELECT partner_id, SUM(revenue), COUNT(revenue), COUNT(*), \
                   SUM(revenue) FILTER (WHERE won), COUNT(*) FILTER (WHERE NOT won), \
                   AVG(revenue), MIN(revenue), MAX(revenue), \
                   SUM(quantity), SUM(quantity) FILTER (WHERE won), COUNT(quantity), \
                   SUM(revenue) FILTER (WHERE quantity > 10), \
                   COUNT(revenue) FILTER (WHERE quantity < 0), \
                   SUM(1) FILTER (WHERE won), COUNT(NULL), \
                   SUM(waited), SUM(waited) FILTER (WHERE NOT won) \
                   FROM orders GROUP BY partner_id ORDER BY partner_id NULLS FIRST";
        // Runs looked up once each, and runs of one row (every row looked up); more groups
        // than the step holds, so that it hands them on early and the final step merges a
        // group from several hand-overs.
        for (batch, batches, run) in [(1000, 9, 7), (50, 40, 3), (200, 10, 1)] {
            let lines = lines(batch, batches, run);
            let (plain, plain_plan) = answer(false, sql, &lines).await;
            let (runs, runs_plan) = answer(true, sql, &lines).await;
            assert!(!plain_plan.contains("RunsAggregateExec"), "{plain_plan}");
            assert!(runs_plan.contains("RunsAggregateExec"), "{runs_plan}");
            assert_eq!(runs, plain, "batches of {batch} rows, runs of {run}");
            assert!(plain.lines().count() > 60, "{plain}");
            // A distinct count, which DataFusion plans as a grouping by the partner and the
            // value, then a count by the partner: the count's partial step is the runs'.
            let distinct = "SELECT partner_id, COUNT(DISTINCT revenue) FROM orders \
                            GROUP BY 1 ORDER BY 1 NULLS FIRST";
            let (plain, _) = answer(false, distinct, &lines).await;
            let (runs, runs_plan) = answer(true, distinct, &lines).await;
            assert!(runs_plan.contains("RunsAggregateExec"), "{runs_plan}");
            assert_eq!(runs, plain, "a distinct count, batches of {batch} rows");
        }
    }

    #[tokio::test]
    async fn a_grouping_it_cannot_stand_for_is_left_to_datafusion() {
        let lines = lines(100, 4, 5);
        for sql in [
            // Two columns; a column not of text; an ordered aggregate; no grouping.
            "SELECT partner_id, won, SUM(revenue) FROM orders GROUP BY 1, 2 ORDER BY 1, 2",
            "SELECT won, SUM(revenue) FROM orders GROUP BY 1 ORDER BY 1",
            "SELECT partner_id, array_agg(revenue ORDER BY revenue) FROM orders GROUP BY 1 \
             ORDER BY 1",
            "SELECT SUM(revenue) FROM orders",
        ] {
            let (plain, _) = answer(false, sql, &lines).await;
            let (runs, plan) = answer(true, sql, &lines).await;
            assert!(!plan.contains("RunsAggregateExec"), "{sql}: {plan}");
            assert_eq!(runs, plain, "{sql}");
        }
    }

    #[tokio::test]
    async fn a_grouping_over_input_in_order_is_left_to_datafusion() {
        // Two partitions, each in partner order and declared so: DataFusion's partial step
        // then hands its groups on in order, which the steps above it may count on.
        let schema = Arc::new(Schema::new(vec![
            Field::new("partner_id", DataType::Utf8View, true),
            Field::new("revenue", DataType::Int64, true),
        ]));
        let batch = |partners: Vec<&str>, revenue: Vec<i64>| {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringViewArray::from(partners)),
                Arc::new(arrow::array::Int64Array::from(revenue)),
            ];
            RecordBatch::try_new(Arc::clone(&schema), columns).unwrap()
        };
        let partitions = vec![
            vec![batch(vec!["P-1", "P-1", "P-2", "P-3"], vec![1, 2, 3, 4])],
            vec![batch(vec!["P-2", "P-3", "P-3", "P-4"], vec![5, 6, 7, 8])],
        ];
        let mut answers = Vec::new();
        for runs_first in [false, true] {
            let ctx = session(runs_first);
            let table = MemTable::try_new(Arc::clone(&schema), partitions.clone())
                .unwrap()
                .with_sort_order(vec![vec![
                    datafusion::prelude::col("partner_id").sort(true, false),
                ]]);
            ctx.register_table("orders", Arc::new(table)).unwrap();
            let sql = "SELECT partner_id, SUM(revenue) FROM orders GROUP BY partner_id ORDER BY 1";
            let (rows, plan) = answer_in(&ctx, sql).await;
            assert!(plan.contains("ordering_mode=Sorted"), "{plan}");
            assert!(!plan.contains("RunsAggregateExec"), "{plan}");
            answers.push(rows);
        }
        assert_eq!(answers[0], answers[1]);
        assert!(answers[0].contains("| P-3        | 17 "), "{}", answers[0]);
    }

    #[test]
    fn runs_start_where_the_text_or_its_nullness_changes() {
        // The long text's two rows are held at two places, and still one run.
        let column: ArrayRef = Arc::new(StringViewArray::from(vec![
            Some("P-1"),
            Some("P-1"),
            None,
            None,
            Some("a partner with a long name"),
            Some("a partner with a long name"),
            Some("P-1"),
            None,
        ]));
        let mut heads = Vec::new();
        runs_of(&column, &mut heads);
        assert_eq!(heads, vec![0, 2, 4, 6, 7]);
        // Without nulls: two long texts alike in length and first four bytes, differing in
        // their last byte, and runs of one row.
        let column: ArrayRef = Arc::new(StringViewArray::from(vec![
            "P-1",
            "P-1",
            "a partner with a long name",
            "a partner with a long name",
            "a partner with a long nama",
            "P-2",
            "P-1",
            "P-1",
        ]));
        runs_of(&column, &mut heads);
        assert_eq!(heads, vec![0, 2, 4, 5, 6]);
        let one: ArrayRef = Arc::new(StringViewArray::from(vec!["P-1"]));
        runs_of(&one, &mut heads);
        assert_eq!(heads, vec![0]);
    }
}
