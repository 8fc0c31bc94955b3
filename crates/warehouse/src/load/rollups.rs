//! Rollup building: each rollup computed over the tables just committed and written whole as a
//! new Delta version, in the same warehouse version as its base tables.

use std::collections::{BTreeMap, BTreeSet};

use arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use deltalake::protocol::SaveMode;
use futures::StreamExt;

use super::maintain::{self, Previous};
use super::{LoadOptions, LoadProgress, RollupBuild};
use crate::storage::Root;
use crate::versions::{RollupPin, TablePin, WarehouseVersion};
use crate::{Result, Warehouse, WarehouseError};

/// Builds each rollup over the base tables at `pins` (and the rollups built before it), writing
/// it whole as a new Delta version of `rollups/<table>/`. Nothing is visible until the version
/// that pins them is switched.
pub(crate) async fn build_rollups(
    wh: &Warehouse,
    pins: &BTreeMap<String, TablePin>,
    merged: &BTreeMap<String, maintain::ChangedKeys>,
    previous: Option<&WarehouseVersion>,
    options: &LoadOptions,
    progress: &dyn LoadProgress,
) -> Result<BTreeMap<String, RollupPin>> {
    let builds = &options.rollups;
    let mut out = BTreeMap::new();
    if builds.is_empty() {
        return Ok(out);
    }
    let kept = kept_rollups(pins, previous, builds);
    // Prism's own rules too: the service rollups' summed durations are widened to decimals
    // without a check of each value, as a question's are.
    let ctx = crate::distributed::load_session(crate::session_config()?);
    let cores = ctx.state().config().target_partitions();
    // The kept rollups are registered too: others may be built from them. Text is read as
    // plain strings: read as views, a full load's rollups were an eighth faster at scale 8 but
    // no faster at scale 100, where the load then peaked at 4.0-4.4 GB instead of 3.0
    // (BENCHMARKS.md).
    crate::register_tables(&wh.root, pins, &kept, &ctx, crate::Text::Strings).await?;
    if !kept.is_empty() {
        progress.step(&format!(
            "keeping {} rollup(s) whose tables did not change",
            kept.len()
        ));
    }
    out.extend(kept.clone());
    // A build starts as soon as its source is built, the costliest ready build first, at most
    // one per core at a time, each on its own core: the two builds over the order lines take
    // most of the time, and each of them running alone on a core from the start, with the
    // small ones (and the rollups built from rollups) filling the other core, ends them sooner
    // than all of them sharing every core (no shuffle between the phases of an aggregation,
    // and the longest build no longer waits for its share behind short ones).
    let mut waiting: Vec<&RollupBuild> = builds
        .iter()
        .filter(|b| !kept.contains_key(&b.table))
        .collect();
    let slots = cores.min(waiting.len()).max(1);
    ctx.state_ref()
        .write()
        .config_mut()
        .options_mut()
        .execution
        .target_partitions = (cores / slots).max(1);
    // Rows a build reads, as its expected cost: a base table's from the pins, a rollup's once
    // it is built.
    let mut rows_of: BTreeMap<String, u64> =
        pins.iter().map(|(t, p)| (t.clone(), p.rows)).collect();
    rows_of.extend(kept.iter().map(|(t, p)| (t.clone(), p.rows)));
    let mut tasks = tokio::task::JoinSet::new();
    // The rollups built by this load held in memory for others, and those the running builds
    // read.
    let (mut in_memory, mut reading): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    // The rollups a build set out to bring up to date.
    let mut tried: Vec<String> = Vec::new();
    let changed = std::sync::Arc::new(maintain::ChangedFacts::default());
    // A rollup built from another but brought up to date from its fact's changed rows does not
    // wait for the other: the brand owner's customers over all time, behind every partner's
    // customers, ran on one core while the other had nothing left to do, for a third of a
    // day's load at scale 100.
    let mut without_source: BTreeSet<String> = BTreeSet::new();
    for b in waiting.iter().filter(|b| b.from.is_some()) {
        if let Some(before) = maintain::previous(b, pins, merged, previous, options.mode)
            && maintain::will_be_brought_up_to_date(&ctx, &wh.root, b, &before, &changed).await?
        {
            without_source.insert(b.table.clone());
        }
    }
    let reads_source = |b: &RollupBuild| b.from.is_some() && !without_source.contains(&b.table);
    while !waiting.is_empty() || !tasks.is_empty() {
        // Ready: every source built (or kept), not started.
        let mut ready: Vec<&RollupBuild> = waiting
            .iter()
            .copied()
            .filter(|b| !reads_source(b) || b.from.as_ref().is_some_and(|f| out.contains_key(f)))
            .collect();
        if ready.is_empty() && tasks.is_empty() {
            return Err(WarehouseError::Staging(
                "the rollups read each other in a circle".into(),
            ));
        }
        // What one brought up to date without its source reads is about its rows before.
        let cost = |b: &RollupBuild| match &b.from {
            Some(_) if !reads_source(b) => {
                (previous.and_then(|p| p.rollups.get(&b.table))).map_or(0, |p| p.rows)
            }
            Some(f) => rows_of.get(f).copied().unwrap_or(0),
            None => b.reads.iter().filter_map(|t| rows_of.get(t)).sum(),
        };
        in_start_order(&mut ready, &in_memory, cost);
        for b in starting(&ready, &waiting, tasks.len(), slots) {
            let before = maintain::previous(b, pins, merged, previous, options.mode);
            progress.step(&match before {
                Some(_) => {
                    tried.push(b.table.clone());
                    format!("bringing rollup {} up to date", b.name)
                }
                None => format!("building rollup {}", b.name),
            });
            waiting.retain(|w| w.table != b.table);
            if reads_source(b) {
                reading.extend(b.from.clone());
            }
            tasks.spawn(build_rollup(
                ctx.clone(),
                wh.root.clone(),
                b.clone(),
                before,
                cores,
                changed.clone(),
            ));
        }
        if let Some(done) = tasks.join_next().await {
            let (b, pin, table) =
                done.map_err(|e| WarehouseError::Staging(format!("a rollup build stopped: {e}")))??;
            if let Some(source) = b.from.as_ref().filter(|_| reads_source(&b))
                && let Some(i) = reading.iter().position(|r| r == source)
            {
                reading.swap_remove(i);
            }
            // Later rollups may be built from this one: it is held in memory until the last of
            // them is built, and not at all when none is (the rollups over the order lines are
            // millions of rows each; holding all of them to the end raised the load's peak).
            let source_of =
                |t: &str| (waiting.iter()).any(|w| reads_source(w) && w.from.as_deref() == Some(t));
            if source_of(&b.table) {
                ctx.register_table(b.table.as_str(), table)?;
                in_memory.push(b.table.clone());
            }
            let (read, done_with): (Vec<String>, Vec<String>) = std::mem::take(&mut in_memory)
                .into_iter()
                .partition(|t| source_of(t) || reading.contains(t));
            for t in done_with {
                ctx.deregister_table(t.as_str())?;
            }
            in_memory = read;
            // Whether it could be brought up to date is known only once its changed files are
            // read: the line that said it would be is corrected.
            if tried.contains(&b.table) && !pin.by_slices {
                progress.step(&format!(
                    "rollup {} built whole instead: bringing it up to date would have read about \
                     as much",
                    b.name
                ));
            }
            rows_of.insert(b.table.clone(), pin.rows);
            out.insert(b.table.clone(), pin);
        }
    }
    Ok(out)
}

/// The ready builds in the order they start: a build reading a rollup this load holds in memory
/// first, whatever its cost — it is short (a rollup is a fraction of its fact), and once the last
/// of them is done the rollup is let go (left behind the costlier builds over base tables, the
/// order lines' product rollup, millions of rows, stayed in memory while the customers'
/// aggregation grew beside it: the load's peak) — then the costliest first.
fn in_start_order(
    ready: &mut [&RollupBuild],
    in_memory: &[String],
    cost: impl Fn(&RollupBuild) -> u64,
) {
    ready.sort_by_key(|b| {
        let from_memory = b.from.as_ref().is_some_and(|f| in_memory.contains(f));
        (std::cmp::Reverse(from_memory), std::cmp::Reverse(cost(b)))
    });
}

/// Of the ready builds (in start order), those to start now: as many as the free cores allow;
/// a build that runs `alone` only when no other build runs or waits, and then by itself.
fn starting<'b>(
    ready: &[&'b RollupBuild],
    waiting: &[&RollupBuild],
    running: usize,
    slots: usize,
) -> Vec<&'b RollupBuild> {
    let others_left = running > 0 || waiting.iter().any(|w| !w.alone);
    let mut start = Vec::new();
    for b in ready {
        if start.len() + running >= slots {
            break;
        }
        match b.alone {
            true if others_left || !start.is_empty() => continue,
            true => return vec![*b],
            false => start.push(*b),
        }
    }
    start
}

/// The rollups whose tables this load left as they were, kept as they are: the same definition
/// over the same Delta versions is the same rows.
fn kept_rollups(
    pins: &BTreeMap<String, TablePin>,
    previous: Option<&WarehouseVersion>,
    builds: &[RollupBuild],
) -> BTreeMap<String, RollupPin> {
    let mut kept = BTreeMap::new();
    if let Some(prev) = previous {
        for b in builds {
            let unchanged = b.reads.iter().all(|t| {
                prev.tables.get(t).map(|p| p.delta_version) == pins.get(t).map(|p| p.delta_version)
            });
            if let (true, Some(pin)) = (unchanged, prev.rollups.get(&b.table)) {
                kept.insert(b.table.clone(), pin.clone());
            }
        }
    }
    kept
}

/// Rows per row group of a rollup's files.
pub(super) const ROLLUP_ROW_GROUP_ROWS: usize = 64 * 1024;

/// A rollup's rows, computed (or brought up to date from the version `before`), in the column
/// types of its definition: the version before's rows kept as they were (file by file, in each
/// file's order), the rows computed, and whether it was brought up to date.
async fn computed(
    ctx: &SessionContext,
    root: &Root,
    b: &RollupBuild,
    before: Option<&Previous>,
    changed: &maintain::ChangedFacts,
) -> Result<(
    arrow::datatypes::SchemaRef,
    Vec<Vec<RecordBatch>>,
    Vec<RecordBatch>,
    bool,
)> {
    // The definition is only planned, for its column types: a sum summed again is wider.
    let defined = ctx.sql(&b.definition).await?.schema().as_arrow().clone();
    let maintained = match before {
        Some(before) => maintain::maintained(ctx, root, b, before, &defined, changed).await?,
        None => None,
    };
    let brought_up_to_date = maintained.is_some();
    let (mut kept, mut batches) = match maintained {
        Some(m) => (m.kept, m.computed),
        None => (vec![], ctx.sql(&b.sql).await?.collect().await?),
    };
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(
        defined
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    for batch in kept.iter_mut().flatten().chain(&mut batches) {
        let columns = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(datafusion::error::DataFusionError::from)?;
        *batch = RecordBatch::try_new(schema.clone(), columns)
            .map_err(datafusion::error::DataFusionError::from)?;
    }
    if batches.is_empty() {
        // An empty rollup (no rows in its fact yet) is still a table with its columns.
        batches.push(RecordBatch::new_empty(schema.clone()));
    }
    Ok((schema, kept, batches, brought_up_to_date))
}

/// A rollup's rows as they are written.
enum Written {
    /// Batches as they are, in their order.
    Batches(Vec<RecordBatch>),
    /// Rows put in order a row group at a time as the write takes them.
    InOrder(std::sync::Arc<crate::cluster::InOrder>),
}

impl Written {
    fn rows(&self) -> u64 {
        match self {
            Written::Batches(b) => b.iter().map(|x| x.num_rows() as u64).sum(),
            Written::InOrder(o) => o.len() as u64,
        }
    }

    /// The rows in no particular order, for the rollups built from this one.
    fn batches(&self) -> Vec<RecordBatch> {
        match self {
            Written::Batches(b) => b.clone(),
            Written::InOrder(o) => o.batches().to_vec(),
        }
    }
}

/// A rollup's rows in the order of its column `column` (each row group then holds a stretch of
/// its values), as batches of a row group's rows: the rows computed merged into the kept ones
/// when those are in order, otherwise all of them put in order as they are written.
fn clustered(
    kept: Vec<Vec<RecordBatch>>,
    computed: Vec<RecordBatch>,
    column: usize,
) -> std::result::Result<Written, arrow::error::ArrowError> {
    use crate::cluster;
    let computed = match cluster::merged(&kept, computed, column, ROLLUP_ROW_GROUP_ROWS)? {
        Ok(merged) => return Ok(Written::Batches(merged)),
        Err(computed) => computed,
    };
    if kept.iter().flatten().any(|b| b.num_rows() > 0) {
        tracing::debug!("the rows kept were not in order: all of them are put in order");
    }
    let all: Vec<RecordBatch> = kept.into_iter().flatten().chain(computed).collect();
    Ok(Written::InOrder(std::sync::Arc::new(
        cluster::InOrder::new(all, column, ROLLUP_ROW_GROUP_ROWS)?,
    )))
}

/// The rows of an `InOrder` as the one partition of a table the Delta write reads: each row
/// group's rows are made when the write asks for them, and let go once written.
#[derive(Debug)]
struct InOrderPartition(
    std::sync::Arc<crate::cluster::InOrder>,
    arrow::datatypes::SchemaRef,
);

impl datafusion::physical_plan::streaming::PartitionStream for InOrderPartition {
    fn schema(&self) -> &arrow::datatypes::SchemaRef {
        &self.1
    }

    fn execute(
        &self,
        _: std::sync::Arc<datafusion::execution::TaskContext>,
    ) -> datafusion::physical_plan::SendableRecordBatchStream {
        let rows = self.0.clone();
        let groups = futures::stream::iter(0..rows.groups()).map(move |i| {
            rows.group(i)
                .map_err(datafusion::error::DataFusionError::from)
        });
        Box::pin(
            datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                self.1.clone(),
                groups,
            ),
        )
    }
}

/// Writes a rollup's rows whole as a new Delta version of `rollups/<table>/`; that version.
async fn write_rollup(root: &Root, b: &RollupBuild, rows: Written) -> Result<u64> {
    let folder = format!("rollups/{}", b.table);
    let url = root.folder_url(&folder)?;
    let table = if root.has_table(&folder).await? {
        crate::open_delta(root, url, None).await?
    } else {
        // A new rollup: the write creates the table.
        crate::new_delta(root, url)?
    };
    // One stream into the writer: with more, the write's plan spreads the batches over several
    // and the file receives them in whatever order they come, out of the rows' order.
    let one_stream = deltalake::delta_datafusion::DeltaSessionContext::new_with_session_overrides(
        &std::collections::HashMap::from([(
            "datafusion.execution.target_partitions".to_string(),
            "1".to_string(),
        )]),
    )?;
    let write = match rows {
        Written::Batches(batches) => table.write(batches),
        Written::InOrder(rows) => {
            let schema = rows.schema();
            let partition = std::sync::Arc::new(InOrderPartition(rows, schema.clone()));
            let provider =
                datafusion::catalog::streaming::StreamingTable::try_new(schema, vec![partition])?;
            let plan = datafusion::logical_expr::LogicalPlanBuilder::scan(
                b.table.as_str(),
                datafusion::datasource::provider_as_source(std::sync::Arc::new(provider)),
                None,
            )?
            .build()?;
            table.write(Vec::new()).with_input_plan(plan)
        }
    };
    let table = write
        .with_session_state(std::sync::Arc::new(one_stream.state()))
        .with_save_mode(SaveMode::Overwrite)
        .with_schema_mode(deltalake::operations::write::SchemaMode::Overwrite)
        .with_table_name(b.table.as_str())
        // Row groups small enough for their statistics to skip whole slices of the clustered
        // column.
        .with_writer_properties(
            parquet::file::properties::WriterProperties::builder()
                .set_max_row_group_row_count(Some(ROLLUP_ROW_GROUP_ROWS))
                // Pages as a table's: one partner's rows of a rollup kept in partner order
                // are a few of a row group's.
                .set_data_page_row_count_limit(crate::staging::PAGE_ROWS)
                .set_dictionary_page_size_limit(crate::staging::DICTIONARY_BYTES)
                .build(),
        )
        .await?;
    let delta_version = table.version().ok_or_else(|| {
        WarehouseError::Corrupt(format!("rollup {} has no version after its write", b.table))
    })?;
    Ok(delta_version)
}

/// Builds one rollup and writes it as a new Delta version of its folder; returns its pin and
/// its rows in memory, for the rollups built from it.
pub(super) async fn build_rollup(
    ctx: SessionContext,
    root: Root,
    b: RollupBuild,
    before: Option<Previous>,
    cores: usize,
    changed: std::sync::Arc<maintain::ChangedFacts>,
) -> Result<(
    RollupBuild,
    RollupPin,
    std::sync::Arc<datafusion::datasource::MemTable>,
)> {
    let started = std::time::Instant::now();
    let (schema, kept, rows, by_slices) =
        computed(&ctx, &root, &b, before.as_ref(), &changed).await?;
    let computed = started.elapsed();
    let written = match (b.cluster_by.as_deref()).and_then(|c| schema.index_of(c).ok()) {
        Some(column) => {
            clustered(kept, rows, column).map_err(datafusion::error::DataFusionError::from)?
        }
        None => Written::Batches(kept.into_iter().flatten().chain(rows).collect()),
    };
    let clustered = started.elapsed();
    let rows = written.rows();
    let batches = written.batches();
    let delta_version = write_rollup(&root, &b, written).await?;
    let pin = RollupPin {
        delta_version,
        rows,
        build_ms: started.elapsed().as_millis() as u64,
        by_slices,
    };
    tracing::debug!(
        rollup = b.name.as_str(),
        rows,
        computed_ms = computed.as_millis() as u64,
        clustered_ms = clustered.as_millis() as u64,
        written_ms = pin.build_ms,
        "rollup built"
    );
    // Rollups built from this one read it from memory, split so that their builds can use
    // every core.
    let mut split = vec![Vec::new(); cores.max(1)];
    for (i, batch) in batches.into_iter().enumerate() {
        split[i % cores.max(1)].push(batch);
    }
    let memory = std::sync::Arc::new(datafusion::datasource::MemTable::try_new(schema, split)?);
    Ok((b, pin, memory))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(table: &str, from: Option<&str>) -> RollupBuild {
        RollupBuild {
            name: table.into(),
            table: table.into(),
            definition: String::new(),
            sql: String::new(),
            from: from.map(String::from),
            reads: vec![],
            cluster_by: None,
            slices: None,
            delta: None,
            alone: false,
        }
    }

    #[test]
    fn builds_reading_a_rollup_held_in_memory_start_first_then_the_costliest() {
        let (registrations, customers) = (build("registrations", None), build("customers", None));
        let (by_line, by_month) = (
            build("by_line", Some("by_product")),
            build("by_month", Some("kept")),
        );
        let mut ready = vec![&registrations, &by_month, &customers, &by_line];
        // Rows read: the base tables' many, the product rollup's fewer.
        let cost = |b: &RollupBuild| match b.table.as_str() {
            "registrations" => 8_000,
            "customers" => 96_000,
            "by_line" => 5_000,
            _ => 90,
        };
        in_start_order(&mut ready, &["by_product".to_string()], cost);
        let order: Vec<&str> = ready.iter().map(|b| b.table.as_str()).collect();
        // `by_month` reads a rollup kept from the version before (on disk, not in memory): it
        // waits its turn by cost.
        assert_eq!(order, ["by_line", "customers", "registrations", "by_month"]);
        // With nothing held in memory, by cost alone.
        in_start_order(&mut ready, &[], cost);
        let order: Vec<&str> = ready.iter().map(|b| b.table.as_str()).collect();
        assert_eq!(order, ["customers", "registrations", "by_line", "by_month"]);
    }

    #[test]
    fn a_build_that_runs_alone_waits_for_every_other_and_runs_by_itself() {
        let alone = |t: &str| RollupBuild {
            alone: true,
            ..build(t, None)
        };
        let (risk, other_alone) = (alone("risk"), alone("other_alone"));
        let (customers, products) = (build("customers", None), build("products", None));
        let names = |v: Vec<&RollupBuild>| v.iter().map(|b| b.table.clone()).collect::<Vec<_>>();
        // First in cost order, yet others wait: the two cores go to them.
        let all = [&risk, &customers, &products, &other_alone];
        assert_eq!(names(starting(&all, &all, 0, 2)), ["customers", "products"]);
        // Nothing else waits, but one still runs.
        assert!(starting(&[&risk, &other_alone], &[&risk, &other_alone], 1, 2).is_empty());
        // Nothing runs or waits: one of them, by itself, though two cores are free.
        assert_eq!(
            names(starting(
                &[&risk, &other_alone],
                &[&risk, &other_alone],
                0,
                2
            )),
            ["risk"]
        );
        // Builds that need not run alone fill the free cores as before.
        assert_eq!(
            names(starting(&[&products], &[&products], 1, 2)),
            ["products"]
        );
        assert!(starting(&[&products], &[&products], 2, 2).is_empty());
    }
}
