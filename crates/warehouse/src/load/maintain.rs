//! A rollup brought up to date by slices: when a load changed only the rollup's fact, by key,
//! the slices its changed rows fall in (before and after the change) are computed again from
//! the fact and the rollup's other rows are kept as the version before built them. A day's
//! changes then cost the rows of the days they touch, not the table.
//!
//! The changed rows are read from the Delta log, not from the export: the files the load's
//! MERGE removed (the rows before) and added (the rows after). A rewritten file also holds rows
//! that did not change; their slices are computed again too, to the same values, which is
//! wasted work but never a wrong answer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::prelude::{SessionContext, col, lit};
use datafusion::scalar::ScalarValue;

use super::{RollupBuild, RollupSlices};
use crate::storage::Root;
use crate::versions::{LoadMode, RollupPin, TablePin, WarehouseVersion};
use crate::{Result, WarehouseError};

/// What a rollup is brought up to date from: its rows in the version before, and its fact's
/// Delta versions before and after the load.
#[derive(Clone, Debug)]
pub(super) struct Previous {
    rollup: RollupPin,
    fact_before: u64,
    fact_after: u64,
}

/// Whether `b` can be brought up to date by slices: the load added to or replaced rows of
/// its fact by key, no other table it reads changed, and the version before holds it (built by
/// the same definition, as its table's name says).
pub(super) fn previous(
    b: &RollupBuild,
    pins: &BTreeMap<String, TablePin>,
    before: Option<&WarehouseVersion>,
    mode: LoadMode,
) -> Option<Previous> {
    let slices = b.slices.as_ref()?;
    let before = before?;
    if mode != LoadMode::Upsert || b.from.is_some() {
        return None;
    }
    let version = |t: &str, of: &BTreeMap<String, TablePin>| of.get(t).map(|p| p.delta_version);
    let others_unchanged = b
        .reads
        .iter()
        .filter(|t| **t != slices.fact)
        .all(|t| version(t, &before.tables) == version(t, pins));
    Some(Previous {
        rollup: before.rollups.get(&b.table)?.clone(),
        fact_before: version(&slices.fact, &before.tables)?,
        fact_after: version(&slices.fact, pins)?,
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
    let copy = SessionContext::new_with_config(ctx.copied_config());
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

/// The rows of `b` in this load's version, brought up to date from the version before: its
/// changed slices computed again by its SQL over their fact rows, its other rows kept. `ctx`
/// has the tables of this load's version (and the rollups built so far) registered. None when
/// the load rewrote more than an eighth of the fact's files: building the rollup whole then
/// costs less.
pub(super) async fn maintained(
    ctx: &SessionContext,
    root: &Root,
    b: &RollupBuild,
    previous: &Previous,
) -> Result<Option<Vec<RecordBatch>>> {
    let slices = b.slices.as_ref().expect("maintained only with slices");
    let (removed, added, files_before) = changed_files(root, &slices.fact, previous).await?;
    // A rewritten file's rows all count as changed, and their slices' periods are read again:
    // measured on 7.7 M order lines in four files, bringing the rollup by product up to date
    // after a day's changes that rewrote one of them took longer than building it whole.
    if removed.len() * 8 > files_before.max(1) {
        return Ok(None);
    }
    let session = copied_session(ctx, root).await?;
    let fact_schema = ctx
        .table(slices.fact.as_str())
        .await?
        .schema()
        .inner()
        .clone();
    let changed = crate::listing_of(
        &session,
        removed.into_iter().chain(added).collect(),
        Some(fact_schema.clone()),
    )
    .await?
    .unwrap_or_else(|| {
        Arc::new(
            datafusion::datasource::MemTable::try_new(fact_schema, vec![vec![]])
                .expect("an empty table of the fact's columns"),
        )
    });
    session.register_table("__changed", changed)?;
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
    let key_schema = affected.schema().inner().clone();
    let affected = affected.collect().await?;
    tracing::debug!(
        rollup = b.name.as_str(),
        slices = affected.iter().map(|b| b.num_rows()).sum::<usize>(),
        "rollup slices changed"
    );
    session.register_table(
        "__affected",
        Arc::new(datafusion::datasource::MemTable::try_new(
            key_schema,
            vec![affected],
        )?),
    )?;
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
    let recomputed = session.sql(&b.sql).await?.collect().await?;
    // The version before's rows of the other slices.
    let before = crate::open_delta(
        root,
        root.folder_url(&format!("rollups/{}", b.table))?,
        Some(previous.rollup.delta_version),
    )
    .await?;
    if let Some(provider) = crate::listing(&session, &before, None).await? {
        session.register_table("__before", provider)?;
        let kept = session
            .sql(&format!(
                "SELECT r.* FROM __before r LEFT ANTI JOIN __affected a ON {}",
                in_slice(
                    slices
                        .keys
                        .iter()
                        .map(|(c, _)| format!("r.{}", quote_ident(c)))
                )
            ))
            .await?
            .collect()
            .await?;
        return Ok(Some(kept.into_iter().chain(recomputed).collect()));
    }
    Ok(Some(recomputed))
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
