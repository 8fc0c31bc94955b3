//! A rollup brought up to date rather than built whole, when a load changed only the rollup's
//! fact, by key. A day's changes then cost the rows they touch, not the table. Two ways:
//!
//! - **By its changed rows** (`RollupDelta`), when its measures add up: the rollup of the rows
//!   the load added, less that of the rows it removed, is added to the version before's rows
//!   group by group; a group left with no fact rows is removed. Each partner's customers over
//!   all time are brought up to date this way, though their rows lie in every file.
//! - **By slices** (`RollupSlices`), otherwise: the slices its changed rows fall in (before and
//!   after the change) are computed again from the fact's rows of their periods, and the
//!   rollup's other rows are kept as the version before built them.
//!
//! The changed rows are read from the Delta log, not from the export: the files the load's
//! MERGE removed (the rows before) and added (the rows after). A rewritten file also holds rows
//! that did not change: by changed rows they are added and subtracted, and cancel out; by
//! slices theirs are computed again, to the same values. Wasted work, never a wrong answer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, BooleanArray, UInt32Array};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion::catalog::TableProvider;
use datafusion::common::HashSet;
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::datasource::MemTable;
use datafusion::prelude::{JoinType, SessionContext, col, lit};
use datafusion::scalar::ScalarValue;
use futures::StreamExt;

use super::{RollupBuild, RollupDelta, RollupSlices};
use crate::storage::Root;
use crate::versions::{LoadMode, RollupPin, TablePin, WarehouseVersion};
use crate::{Result, WarehouseError};

/// The folder of a table's staged rows, merged by this load, and the table's key columns: the
/// rows with those keys are the only ones the merge changed.
pub(super) type ChangedKeys = (PathBuf, &'static [&'static str]);

/// A rollup's rows brought up to date: the version before's rows left as they were, file by
/// file in the order each file holds them (a rollup written in the order of a column stays so
/// at little cost), and the rows computed again.
pub(super) struct Maintained {
    pub(super) kept: Vec<Vec<RecordBatch>>,
    pub(super) computed: Vec<RecordBatch>,
}

/// What a rollup is brought up to date from: its rows in the version before, its fact's Delta
/// versions before and after the load, and the keys of the fact rows the load changed.
#[derive(Clone, Debug)]
pub(super) struct Previous {
    rollup: RollupPin,
    fact: String,
    fact_before: u64,
    fact_after: u64,
    changed_keys: Option<ChangedKeys>,
}

/// The fact rows a load changed, read once for every rollup of the fact brought up to date:
/// each rollup of the order lines used to read the files the MERGE rewrote again, about two
/// million rows a side at scale 100, for the same 958 k changed lines.
#[derive(Default)]
pub(super) struct ChangedFacts {
    facts: std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::OnceCell<Arc<ChangedFact>>>>>,
}

/// One fact's files the load removed and added, how many it had before, and, once a rollup
/// asked for them, the changed rows of each side.
struct ChangedFact {
    removed: Vec<String>,
    added: Vec<String>,
    files_before: usize,
    rows: tokio::sync::OnceCell<(Vec<RecordBatch>, Vec<RecordBatch>)>,
}

impl ChangedFacts {
    /// The changed files of `previous`'s fact, read from the Delta log by the first rollup of
    /// the fact that asks.
    async fn of(&self, root: &Root, previous: &Previous) -> Result<Arc<ChangedFact>> {
        let cell = {
            let mut facts = self.facts.lock().expect("no build panics holding the lock");
            facts.entry(previous.fact.clone()).or_default().clone()
        };
        let fact = cell
            .get_or_try_init(|| async {
                let (removed, added, files_before) =
                    changed_files(root, &previous.fact, previous).await?;
                Ok::<_, WarehouseError>(Arc::new(ChangedFact {
                    removed,
                    added,
                    files_before,
                    rows: tokio::sync::OnceCell::new(),
                }))
            })
            .await?;
        Ok(fact.clone())
    }
}

impl ChangedFact {
    /// The fact's changed rows before the load (of the removed files) and after (of the added
    /// ones), as tables. With the keys the load merged they are few and are read once, held
    /// for the other rollups of the fact; without, every row of the files counts, and they are
    /// read where they lie each time.
    async fn rows(
        &self,
        session: &SessionContext,
        fact_schema: SchemaRef,
        previous: &Previous,
    ) -> Result<(Arc<dyn TableProvider>, Arc<dyn TableProvider>)> {
        let side = |files: &Vec<String>| {
            changed_rows(session, files.clone(), fact_schema.clone(), previous)
        };
        if previous.changed_keys.is_none() {
            return Ok((side(&self.removed).await?, side(&self.added).await?));
        }
        let (removed, added) = self
            .rows
            .get_or_try_init(|| async {
                let removed = session.read_table(side(&self.removed).await?)?;
                let added = session.read_table(side(&self.added).await?)?;
                Ok::<_, WarehouseError>((removed.collect().await?, added.collect().await?))
            })
            .await?;
        let cores = session.state().config().target_partitions().max(1);
        let table = |rows: &Vec<RecordBatch>| -> Result<Arc<dyn TableProvider>> {
            // Spread over the session's partitions, for the aggregations that read them.
            let mut parts = vec![Vec::new(); cores];
            for (i, batch) in rows.iter().enumerate() {
                parts[i % cores].push(batch.clone());
            }
            Ok(Arc::new(MemTable::try_new(fact_schema.clone(), parts)?))
        };
        Ok((table(removed)?, table(added)?))
    }
}

/// Whether `b` can be brought up to date: the load added to or replaced rows of its fact by
/// key, no other table it reads changed, and the version before holds it (built by the same
/// definition, as its table's name says).
pub(super) fn previous(
    b: &RollupBuild,
    pins: &BTreeMap<String, TablePin>,
    merged: &BTreeMap<String, ChangedKeys>,
    before: Option<&WarehouseVersion>,
    mode: LoadMode,
) -> Option<Previous> {
    let fact = (b.delta.as_ref().map(|d| &d.fact))
        .or(b.slices.as_ref().map(|s| &s.fact))?
        .clone();
    let before = before?;
    // A rollup built from another is built again from it, which is cheap when the other is
    // small (the monthly totals from those by product), and computing its slices again from
    // the fact would not be. One without slices that takes the day's rows is brought up to
    // date from them instead: the brand owner's customers over all time, grouped again from
    // every partner's customers (5.9 M rows at scale 100), took as long as the rest of a day's
    // load.
    let from_its_source = b.from.is_some() && (b.delta.is_none() || b.slices.is_some());
    if mode != LoadMode::Upsert || from_its_source {
        return None;
    }
    let version = |t: &str, of: &BTreeMap<String, TablePin>| of.get(t).map(|p| p.delta_version);
    let others_unchanged = b
        .reads
        .iter()
        .filter(|t| **t != fact)
        .all(|t| version(t, &before.tables) == version(t, pins));
    Some(Previous {
        rollup: before.rollups.get(&b.table)?.clone(),
        fact_before: version(&fact, &before.tables)?,
        fact_after: version(&fact, pins)?,
        changed_keys: merged.get(&fact).cloned(),
        fact,
    })
    .filter(|_| others_unchanged)
}

/// The condition that a row (aliased `row`, its slice key's parts given by `parts`) is in the
/// slice of an `__affected` row (`a`, its parts `k0`, `k1`, …): equal part for part, NULL
/// equal to NULL (a direct sale's missing partner is a slice of its own).
fn in_slice(parts: impl Iterator<Item = String>) -> String {
    parts
        .enumerate()
        .map(|(i, e)| format!("(({e}) IS NOT DISTINCT FROM a.k{i})"))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The Parquet files of the fact that the load removed and added, and how many it had before.
async fn changed_files(
    root: &Root,
    fact: &str,
    previous: &Previous,
) -> Result<(Vec<String>, Vec<String>, usize)> {
    let url = root.folder_url(&format!("tables/{fact}"))?;
    let files = |v: u64| {
        let url = url.clone();
        async move {
            let table = crate::open_delta(root, url, Some(v)).await?;
            Ok::<BTreeSet<String>, WarehouseError>(table.get_file_uris()?.collect())
        }
    };
    let before = files(previous.fact_before).await?;
    let after = files(previous.fact_after).await?;
    Ok((
        before.difference(&after).cloned().collect(),
        after.difference(&before).cloned().collect(),
        before.len(),
    ))
}

/// A session with every table of `ctx` under the same name: the fact's name is then given to
/// its changed slices' rows, for the rollup's own SQL to read.
async fn copied_session(ctx: &SessionContext, root: &Root) -> Result<SessionContext> {
    let copy = crate::distributed::load_session(ctx.copied_config());
    root.register_store(&copy);
    let catalog = ctx.catalog("datafusion").expect("the default catalog");
    let schema = catalog.schema("public").expect("the default schema");
    for name in schema.table_names() {
        if let Some(provider) = schema.table(&name).await? {
            copy.register_table(name.as_str(), provider)?;
        }
    }
    Ok(copy)
}

/// The first and last bounds of the changed rows' slice periods, as the fact's time column's
/// type: only rows between them can be in a changed slice.
async fn period_bounds(
    ctx: &SessionContext,
    slices: &RollupSlices,
) -> Result<Option<(String, ScalarValue, ScalarValue)>> {
    let Some(p) = &slices.period else {
        return Ok(None);
    };
    let rows = ctx
        .sql(&format!(
            "SELECT min({}), max({}) FROM __changed f",
            p.start, p.end
        ))
        .await?
        .collect()
        .await?;
    let Some(batch) = rows.first().filter(|b| b.num_rows() == 1) else {
        return Ok(None);
    };
    let column_type = ctx
        .table("__changed")
        .await?
        .schema()
        .field_with_unqualified_name(&p.column)?
        .data_type()
        .clone();
    // A bound that cannot be given in the column's type only costs reading more rows.
    let bound = |i: usize| {
        ScalarValue::try_from_array(batch.column(i), 0)
            .and_then(|v| v.cast_to(&column_type))
            .ok()
            .filter(|v| !v.is_null())
    };
    let (Some(first), Some(after)) = (bound(0), bound(1)) else {
        return Ok(None);
    };
    Ok(Some((p.column.clone(), first, after)))
}

/// How a rollup is brought up to date (see the module).
enum Way<'b> {
    ByChangedRows(&'b RollupDelta),
    BySlices(&'b RollupSlices),
}

/// How `b` is brought up to date from its fact's changes, or None when building it whole costs
/// less: the load rewrote more of the fact's files than the way allows. `defined` is the
/// rollup's schema.
fn way<'b>(b: &'b RollupBuild, fact: &ChangedFact, defined: &Schema) -> Option<Way<'b>> {
    let files_before = fact.files_before.max(1);
    if let Some(delta) = b.delta.as_ref().filter(|d| adds_up_exactly(d, defined)) {
        // The removed files' rows and the added files' are read once each, against every file
        // once for a build whole.
        return (fact.removed.len() * 4 <= files_before).then_some(Way::ByChangedRows(delta));
    }
    // A rewritten file's rows all count as changed, and their slices' periods are read again:
    // measured on 7.7 M order lines in four files, bringing the rollup by product up to date
    // after a day's changes that rewrote one of them took longer than building it whole.
    let slices = b.slices.as_ref()?;
    (fact.removed.len() * 8 <= files_before).then_some(Way::BySlices(slices))
}

/// Whether `b` will be brought up to date rather than built whole. One built from another
/// rollup that will be, from its fact's rows, need not wait for the other to be built.
pub(super) async fn will_be_brought_up_to_date(
    ctx: &SessionContext,
    root: &Root,
    b: &RollupBuild,
    previous: &Previous,
    changed: &ChangedFacts,
) -> Result<bool> {
    let fact = changed.of(root, previous).await?;
    let defined = ctx.sql(&b.definition).await?.schema().as_arrow().clone();
    Ok(way(b, &fact, &defined).is_some())
}

/// The rows of `b` in this load's version, brought up to date from the version before, by its
/// changed rows or by slices (see the module). `ctx` has the tables of this load's version (and
/// the rollups built so far) registered; `defined` is the rollup's schema. None when building
/// it whole costs less (`way`).
pub(super) async fn maintained(
    ctx: &SessionContext,
    root: &Root,
    b: &RollupBuild,
    previous: &Previous,
    defined: &Schema,
    changed: &ChangedFacts,
) -> Result<Option<Maintained>> {
    let fact = changed.of(root, previous).await?;
    let session = copied_session(ctx, root).await?;
    let fact_schema = ctx
        .table(previous.fact.as_str())
        .await?
        .schema()
        .inner()
        .clone();
    let slices = match way(b, &fact, defined) {
        None => return Ok(None),
        Some(Way::ByChangedRows(delta)) => {
            let sides = fact.rows(&session, fact_schema, previous).await?;
            let rows = by_changed_rows(&session, root, b, delta, previous, sides).await?;
            return Ok(Some(rows));
        }
        Some(Way::BySlices(slices)) => slices,
    };
    let (removed, added) = fact.rows(&session, fact_schema, previous).await?;
    let changed = session
        .read_table(removed)?
        .union(session.read_table(added)?)?;
    session.register_table("__changed", changed.into_view())?;
    let parts: Vec<String> = slices
        .keys
        .iter()
        .enumerate()
        .map(|(i, (_, e))| format!("{e} AS k{i}"))
        .collect();
    let affected = session
        .sql(&format!(
            "SELECT DISTINCT {} FROM __changed f",
            parts.join(", ")
        ))
        .await?;
    let affected = collected(&session, "__affected", affected).await?;
    tracing::debug!(
        rollup = b.name.as_str(),
        slices = affected.iter().map(|b| b.num_rows()).sum::<usize>(),
        "rollup slices changed"
    );
    // The fact's rows of the changed slices, under the fact's name: the rollup's SQL then
    // computes those slices alone.
    let mut all = session.table(slices.fact.as_str()).await?;
    if let Some((column, first, after)) = period_bounds(&session, slices).await? {
        all = all.filter(
            col(column.as_str())
                .gt_eq(lit(first))
                .and(col(column.as_str()).lt(lit(after))),
        )?;
    }
    session.deregister_table(slices.fact.as_str())?;
    session.register_table("__ranged", all.into_view())?;
    let rows = session
        .sql(&format!(
            "SELECT f.* FROM __ranged f LEFT SEMI JOIN __affected a ON {}",
            in_slice(slices.keys.iter().map(|(_, e)| e.clone()))
        ))
        .await?;
    session.register_table(slices.fact.as_str(), rows.into_view())?;
    // The definition reads the fact (`sql` may read the rollup it was built from).
    let computed = session.sql(&b.definition).await?.collect().await?;
    // The version before's rows of the other slices.
    let keys: Vec<(String, String)> = (slices.keys.iter().enumerate())
        .map(|(i, (c, _))| (c.clone(), format!("k{i}")))
        .collect();
    let (kept, _) = split_before(&session, root, b, previous, &keys, &affected).await?;
    Ok(Some(Maintained { kept, computed }))
}

/// The version before's rows of rollup `b`, read file by file in the order each file holds
/// them, split by whether their `keys` (the rollup's column and `against`'s, pair by pair)
/// equal those of a row of `against`, NULL equal to NULL: for each file its rows that match no
/// row of `against`, and all the rows that match one.
async fn split_before(
    session: &SessionContext,
    root: &Root,
    b: &RollupBuild,
    previous: &Previous,
    keys: &[(String, String)],
    against: &[RecordBatch],
) -> Result<(Vec<Vec<RecordBatch>>, Vec<RecordBatch>)> {
    let before = crate::open_delta(
        root,
        root.folder_url(&format!("rollups/{}", b.table))?,
        Some(previous.rollup.delta_version),
    )
    .await?;
    let files: Vec<String> = before.get_file_uris()?.collect();
    // Without a row to match, every row is kept.
    let against_columns = match against.iter().any(|a| a.num_rows() > 0) {
        true => Some(key_columns(against, keys.iter().map(|(_, a)| a.as_str()))?),
        false => None,
    };
    let converter = (against_columns.as_ref())
        .map(|columns| {
            RowConverter::new(
                (columns.iter())
                    .map(|c| SortField::new(c.data_type().clone()))
                    .collect(),
            )
        })
        .transpose()
        .map_err(datafusion::error::DataFusionError::from)?;
    let against_rows = match (&converter, &against_columns) {
        (Some(converter), Some(columns)) => Some(
            converter
                .convert_columns(columns)
                .map_err(datafusion::error::DataFusionError::from)?,
        ),
        _ => None,
    };
    let matched_keys: HashSet<arrow::row::Row<'_>> =
        against_rows.iter().flat_map(|rows| rows.iter()).collect();
    // Each key's hash, computed a column at a time: a row whose hash is none of these is kept
    // without being converted and looked up, which for a day's changes is most rows (converting
    // every row of 6 M took longer than reading them).
    let hashing = RandomState::default();
    let matched_hashes: HashSet<u64> = match &against_columns {
        Some(columns) => {
            let mut hashes = vec![0; columns[0].len()];
            create_hashes(columns, &hashing, &mut hashes)?;
            hashes.into_iter().collect()
        }
        None => HashSet::default(),
    };
    // One partition: a file's rows come in the order the file holds them.
    let one = SessionContext::new_with_config(session.copied_config().with_target_partitions(1));
    root.register_store(&one);
    let (mut kept, mut matched) = (Vec::new(), Vec::new());
    for file in files {
        let Some(provider) =
            crate::listing_of(&one, vec![file], None, crate::Text::Strings).await?
        else {
            continue;
        };
        let mut rows = one.read_table(provider)?.execute_stream().await?;
        let mut file_kept = Vec::new();
        while let Some(batch) = rows.next().await.transpose()? {
            let (Some(converter), Some(against_columns)) = (&converter, &against_columns) else {
                file_kept.push(batch);
                continue;
            };
            let columns = (keys.iter().zip(against_columns))
                .map(|((c, _), a)| {
                    let column = batch.column(batch.schema().index_of(c)?).clone();
                    arrow::compute::cast(&column, a.data_type())
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(datafusion::error::DataFusionError::from)?;
            let mut hashes = vec![0; batch.num_rows()];
            create_hashes(&columns, &hashing, &mut hashes)?;
            let candidates: UInt32Array = (hashes.iter().enumerate())
                .filter(|(_, h)| matched_hashes.contains(*h))
                .map(|(i, _)| i as u32)
                .collect();
            if candidates.is_empty() {
                file_kept.push(batch);
                continue;
            }
            // The candidates' keys compared whole: two keys may share a hash.
            let candidate_columns = (columns.iter())
                .map(|c| arrow::compute::take(c, &candidates, None))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(datafusion::error::DataFusionError::from)?;
            let rows = converter
                .convert_columns(&candidate_columns)
                .map_err(datafusion::error::DataFusionError::from)?;
            let mut hit = vec![false; batch.num_rows()];
            for (row, i) in rows.iter().zip(candidates.values()) {
                hit[*i as usize] = matched_keys.contains(&row);
            }
            let hit = BooleanArray::from(hit);
            let split = |mask: &BooleanArray| arrow::compute::filter_record_batch(&batch, mask);
            let missed = arrow::compute::not(&hit).and_then(|m| split(&m));
            file_kept.push(missed.map_err(datafusion::error::DataFusionError::from)?);
            matched.push(split(&hit).map_err(datafusion::error::DataFusionError::from)?);
        }
        kept.push(file_kept);
    }
    Ok((kept, matched))
}

/// The `names` columns of `batches` (of one schema), each as one array.
fn key_columns<'a>(
    batches: &[RecordBatch],
    names: impl Iterator<Item = &'a str>,
) -> Result<Vec<arrow::array::ArrayRef>> {
    let schema = batches[0].schema();
    let columns = names
        .map(|name| {
            let i = schema.index_of(name)?;
            let parts: Vec<&dyn Array> = batches.iter().map(|b| b.column(i).as_ref()).collect();
            arrow::compute::concat(&parts)
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(datafusion::error::DataFusionError::from)?;
    Ok(columns)
}

/// A query's rows computed once and held as table `name`, for the queries that read them
/// after; the rows.
async fn collected(
    session: &SessionContext,
    name: &str,
    rows: datafusion::dataframe::DataFrame,
) -> Result<Vec<RecordBatch>> {
    let schema = rows.schema().inner().clone();
    let batches = rows.collect().await?;
    let table = MemTable::try_new(schema, vec![batches.clone()])?;
    session.register_table(name, Arc::new(table))?;
    Ok(batches)
}

/// Parquet files of the fact as one table, empty when there are none.
async fn files_table(
    session: &SessionContext,
    files: Vec<String>,
    schema: SchemaRef,
) -> Result<Arc<dyn TableProvider>> {
    Ok(
        match crate::listing_of(session, files, Some(schema.clone()), crate::Text::Strings).await? {
            Some(provider) => provider,
            None => Arc::new(MemTable::try_new(schema, vec![vec![]])?),
        },
    )
}

/// The rows of the fact's `files` that the load changed: those whose key it staged, when it
/// merged the fact by key; otherwise every row. A file the MERGE rewrote holds mostly rows it
/// copied as they were, which change no rollup.
async fn changed_rows(
    session: &SessionContext,
    files: Vec<String>,
    schema: SchemaRef,
    previous: &Previous,
) -> Result<Arc<dyn TableProvider>> {
    let rows = files_table(session, files, schema).await?;
    let Some((dir, key)) = &previous.changed_keys else {
        return Ok(rows);
    };
    let keys = session
        .read_parquet(
            format!("{}/", dir.display()),
            datafusion::prelude::ParquetReadOptions::default(),
        )
        .await?
        .select_columns(key)?;
    let on: Vec<&str> = key.to_vec();
    let changed = session
        .read_table(rows)?
        .join(keys, JoinType::LeftSemi, &on, &on, None)?;
    Ok(changed.into_view())
}

/// Whether every measure of the rollup is an exact number: a sum of floats depends on the order
/// of its terms, and a sum brought up to date would differ from one built whole in its last
/// digits.
fn adds_up_exactly(delta: &RollupDelta, defined: &Schema) -> bool {
    let exact = |column: &str| {
        defined.field_with_name(column).is_ok_and(|f| {
            matches!(
                f.data_type(),
                DataType::Decimal128(..)
                    | DataType::Int8
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::Int64
            )
        })
    };
    !delta.groups.is_empty()
        && exact(&delta.rows)
        && delta
            .measures
            .iter()
            .all(|m| exact(&m.column) && m.values.as_deref().is_none_or(exact))
}

/// The rollup brought up to date by its changed rows (see the module): the rollup of the
/// changed rows (`sides`: removed, added) — subtracted and added — summed into the version
/// before's rows of the same groups; the other groups' rows kept as they were.
async fn by_changed_rows(
    session: &SessionContext,
    root: &Root,
    b: &RollupBuild,
    delta: &RollupDelta,
    previous: &Previous,
    sides: (Arc<dyn TableProvider>, Arc<dyn TableProvider>),
) -> Result<Maintained> {
    let (removed, added) = sides;
    let t0 = std::time::Instant::now();
    // The rollup's own definition over each side's rows alone, under the fact's name.
    for (name, rows) in [("__removed", removed), ("__added", added)] {
        session.deregister_table(delta.fact.as_str())?;
        session.register_table(delta.fact.as_str(), rows)?;
        collected(session, name, session.sql(&b.definition).await?).await?;
    }
    let measures: BTreeSet<&str> = delta
        .measures
        .iter()
        .flat_map(|m| std::iter::once(m.column.as_str()).chain(m.values.as_deref()))
        .chain([delta.rows.as_str()])
        .collect();
    let columns: Vec<String> = session
        .table("__added")
        .await?
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let q = |c: &str| quote_ident(c);
    let groups: Vec<String> = delta.groups.iter().map(|g| q(g)).collect();
    // The change to each group: what the load added less what it removed.
    let negated: Vec<String> = columns
        .iter()
        .map(|c| match measures.contains(c.as_str()) {
            true => format!("-{} AS {}", q(c), q(c)),
            false => q(c),
        })
        .collect();
    // A group's attributes are the same in every row of it.
    let attributes: BTreeSet<&str> = delta.attributes.iter().map(String::as_str).collect();
    let summed = |c: &String| match measures.contains(c.as_str()) {
        true => format!("SUM({}) AS {}", q(c), q(c)),
        false if attributes.contains(c.as_str()) => format!("MAX({}) AS {}", q(c), q(c)),
        false => q(c),
    };
    let quoted: Vec<String> = columns.iter().map(|c| q(c)).collect();
    // A group whose every sum and count changed by nothing is left as it is: the rows of a
    // rewritten file that did not change are most of the change otherwise.
    let changed = measures
        .iter()
        .map(|c| format!("COALESCE({}, 0) <> 0", q(c)))
        .collect::<Vec<_>>()
        .join(" OR ");
    let change = session
        .sql(&format!(
            "SELECT * FROM (SELECT {} FROM (SELECT {} FROM __added UNION ALL SELECT {} FROM \
             __removed) GROUP BY {}) WHERE {changed}",
            columns.iter().map(summed).collect::<Vec<_>>().join(", "),
            quoted.join(", "),
            negated.join(", "),
            groups.join(", ")
        ))
        .await?;
    let change_schema = change.schema().inner().clone();
    let change = collected(session, "__change", change).await?;
    tracing::debug!(
        rollup = b.name.as_str(),
        groups = change.iter().map(|b| b.num_rows()).sum::<usize>(),
        ms = t0.elapsed().as_millis() as u64,
        "rollup groups changed"
    );
    let keys: Vec<(String, String)> = (delta.groups.iter())
        .map(|g| (g.clone(), g.clone()))
        .collect();
    let (kept, touched) = split_before(session, root, b, previous, &keys, &change).await?;
    // The version before's rows of the changed groups, as the change's columns.
    let touched = touched
        .into_iter()
        .map(|batch| {
            let columns = (change_schema.fields().iter())
                .map(|f| {
                    let column = batch.column(batch.schema().index_of(f.name())?).clone();
                    arrow::compute::cast(&column, f.data_type())
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            RecordBatch::try_new(change_schema.clone(), columns)
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(datafusion::error::DataFusionError::from)?;
    let touched = MemTable::try_new(change_schema, vec![touched])?;
    session.register_table("__touched", Arc::new(touched))?;
    let values: BTreeMap<&str, &str> = delta
        .measures
        .iter()
        .filter_map(|m| Some((m.column.as_str(), m.values.as_deref()?)))
        .collect();
    // A sum whose rows with a value are all gone is NULL, as a sum of no values is.
    let combined: Vec<String> = columns
        .iter()
        .map(|c| match values.get(c.as_str()) {
            Some(v) => format!(
                "CASE WHEN SUM({}) > 0 THEN SUM({}) END AS {}",
                q(v),
                q(c),
                q(c)
            ),
            None => summed(c),
        })
        .collect();
    let computed = session
        .sql(&format!(
            "SELECT * FROM (SELECT {} FROM (SELECT {} FROM __touched UNION ALL SELECT {} FROM \
             __change) GROUP BY {}) WHERE {} > 0",
            combined.join(", "),
            quoted.join(", "),
            quoted.join(", "),
            groups.join(", "),
            q(&delta.rows)
        ))
        .await?
        .collect()
        .await?;
    Ok(Maintained { kept, computed })
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
