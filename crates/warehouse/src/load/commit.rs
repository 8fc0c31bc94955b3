//! Committing a staged table to its Delta table: a new table takes the staged files as they
//! are, an existing one gets an append, an overwrite or a merge on the entity's key.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use datafusion::prelude::{ParquetReadOptions, SessionContext};
use deltalake::DeltaTable;
use deltalake::protocol::SaveMode;
use prism_contract::Entity;

use crate::storage::Root;
use crate::versions::{LoadMode, TableChange, TablePin};
use crate::{Result, Warehouse, WarehouseError, new_delta, open_delta};

pub(super) async fn create_with_staged_files(
    wh: &Warehouse,
    entity: Entity,
    staged_dir: &Path,
    table: DeltaTable,
) -> Result<DeltaTable> {
    use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
    use deltalake::kernel::{Action, Add, StructType};
    let mut staged: Vec<PathBuf> = fs::read_dir(staged_dir)
        .map_err(|e| WarehouseError::io(staged_dir, e))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| WarehouseError::io(staged_dir, e))?;
    staged.sort();
    let mut adds = Vec::new();
    let prefix = uuid::Uuid::new_v4().simple().to_string();
    for (n, path) in staged.iter().enumerate() {
        let file = File::open(path).map_err(|e| WarehouseError::io(path, e))?;
        let reader = parquet::file::reader::SerializedFileReader::new(file)
            .map_err(|e| WarehouseError::Staging(format!("{}: {e}", path.display())))?;
        let metadata = parquet::file::reader::FileReader::metadata(&reader);
        let rows = metadata.file_metadata().num_rows();
        let stats = delta_stats(metadata, entity.schema().as_ref());
        if rows == 0 {
            continue;
        }
        let name = format!("part-{n:05}-{prefix}.parquet");
        let size = match &wh.root {
            Root::Local(_) => {
                let target = wh.dir.join("tables").join(entity.name()).join(&name);
                fs::rename(path, &target).map_err(|e| WarehouseError::io(&target, e))?;
                fs::metadata(&target)
                    .map_err(|e| WarehouseError::io(&target, e))?
                    .len()
            }
            Root::Remote(remote) => {
                let folder = format!("tables/{}/{name}", entity.name());
                remote.upload(path, &folder).await?
            }
        };
        adds.push(Action::Add(Add {
            path: name,
            partition_values: Default::default(),
            size: size as i64,
            modification_time: chrono::Utc::now().timestamp_millis(),
            data_change: true,
            stats: Some(stats),
            tags: None,
            deletion_vector: None,
            base_row_id: None,
            default_row_commit_version: None,
            clustering_provider: None,
        }));
    }
    let schema: StructType = entity
        .schema()
        .as_ref()
        .try_into_kernel()
        .map_err(|e| WarehouseError::Staging(e.to_string()))?;
    Ok(table
        .create()
        .with_columns(schema.fields().cloned())
        .with_table_name(entity.name())
        .with_actions(adds)
        .await?)
}

/// A staged file's statistics as the Delta log holds them: its rows, and each column's least
/// and greatest value and nulls where its Parquet footer gives them for every row group. A
/// MERGE skips the files whose key range misses every changed key (a day's changes rewrite the
/// few files of recent orders, not the table), and other engines reading the table skip files
/// the same way. Columns of the types whose log form is unambiguous (text, integers, dates) are
/// given; for the others a reader reads the file, as it would without statistics.
fn delta_stats(
    metadata: &parquet::file::metadata::ParquetMetaData,
    schema: &arrow::datatypes::Schema,
) -> String {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Date32Type, Int32Type, Int64Type};
    use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
    let (mut least, mut greatest, mut nulls) = (
        serde_json::Map::new(),
        serde_json::Map::new(),
        serde_json::Map::new(),
    );
    let groups = metadata.row_groups();
    for field in schema.fields() {
        let Ok(converter) = StatisticsConverter::try_new(
            field.name(),
            schema,
            metadata.file_metadata().schema_descr(),
        ) else {
            continue;
        };
        if let Ok(counts) = converter.row_group_null_counts(groups.iter())
            && counts.null_count() == 0
        {
            let total: u64 = counts.values().iter().sum();
            nulls.insert(field.name().clone(), total.into());
        }
        let (Ok(mins), Ok(maxes)) = (
            converter.row_group_mins(groups.iter()),
            converter.row_group_maxes(groups.iter()),
        ) else {
            continue;
        };
        // A row group without a bound leaves the file's unknown.
        if mins.is_empty() || mins.null_count() > 0 || maxes.null_count() > 0 {
            continue;
        }
        let bounds = || -> Option<(serde_json::Value, serde_json::Value)> {
            match field.data_type() {
                DataType::Utf8 => {
                    let (lo, hi) = (mins.as_string::<i32>(), maxes.as_string::<i32>());
                    Some((
                        arrow::compute::min_string(lo)?.into(),
                        arrow::compute::max_string(hi)?.into(),
                    ))
                }
                DataType::Int32 => Some((
                    arrow::compute::min(mins.as_primitive::<Int32Type>())?.into(),
                    arrow::compute::max(maxes.as_primitive::<Int32Type>())?.into(),
                )),
                DataType::Int64 => Some((
                    arrow::compute::min(mins.as_primitive::<Int64Type>())?.into(),
                    arrow::compute::max(maxes.as_primitive::<Int64Type>())?.into(),
                )),
                DataType::Date32 => {
                    let day = |d: i32| {
                        arrow::temporal_conversions::date32_to_datetime(d)
                            .map(|t| t.date().to_string().into())
                    };
                    Some((
                        day(arrow::compute::min(mins.as_primitive::<Date32Type>())?)?,
                        day(arrow::compute::max(maxes.as_primitive::<Date32Type>())?)?,
                    ))
                }
                _ => None,
            }
        };
        if let Some((lo, hi)) = bounds() {
            least.insert(field.name().clone(), lo);
            greatest.insert(field.name().clone(), hi);
        }
    }
    serde_json::json!({
        "numRecords": metadata.file_metadata().num_rows(),
        "minValues": least,
        "maxValues": greatest,
        "nullCount": nulls,
    })
    .to_string()
}

/// Writes one table's staged rows into its Delta table and returns its new pin.
pub(super) async fn commit_table(
    wh: &Warehouse,
    entity: Entity,
    staged_dir: &Path,
    staged_rows: u64,
    prev: Option<TablePin>,
    mode: LoadMode,
) -> Result<(TablePin, TableChange)> {
    if let Root::Local(dir) = &wh.root {
        let dir = dir.join("tables").join(entity.name());
        fs::create_dir_all(&dir).map_err(|e| WarehouseError::io(&dir, e))?;
    }
    let url = wh.table_url(entity)?;
    let ctx = SessionContext::new();
    let staged_url = format!("{}/", staged_dir.display());
    let source = ctx
        .read_parquet(
            staged_url,
            ParquetReadOptions::default().schema(entity.schema().as_ref()),
        )
        .await?;
    let table = match &prev {
        // The latest Delta version: after `recover` its state is the pinned one, and a commit
        // must build on the latest version or Delta sees a conflict.
        Some(_) => open_delta(&wh.root, url, None).await?,
        // A new table: build without loading, as there is no log to read yet.
        None => new_delta(&wh.root, url)?,
    };
    let prev_rows = prev.as_ref().map_or(0, |p| p.rows);
    if prev.is_none() {
        // A new table: the staged files are already what the table needs, so they are moved in
        // and named by the table's first commit, without being written again.
        let table = create_with_staged_files(wh, entity, staged_dir, table).await?;
        let change = TableChange {
            added: staged_rows,
            ..TableChange::default()
        };
        return pinned(&table, entity, staged_rows, change);
    }
    let (table, change, rows): (DeltaTable, TableChange, u64) = match (mode, prev_rows) {
        (LoadMode::Replace, _) | (LoadMode::Upsert, 0) => {
            let save = if mode == LoadMode::Replace {
                SaveMode::Overwrite
            } else {
                SaveMode::Append
            };
            let t = table
                .write(Vec::new())
                .with_input_plan(source.into_unoptimized_plan())
                .with_save_mode(save)
                .with_table_name(entity.name())
                .with_writer_properties(crate::staging::table_file_properties(entity))
                .await?;
            (
                t,
                TableChange {
                    added: staged_rows,
                    ..TableChange::default()
                },
                staged_rows,
            )
        }
        (LoadMode::Upsert, _) => {
            let (t, added, replaced) = merge(table, source, entity).await?;
            let change = TableChange {
                added,
                replaced,
                ..TableChange::default()
            };
            (t, change, prev_rows + added)
        }
    };
    pinned(&table, entity, rows, change)
}

/// The staged rows merged into the table on the entity's key: a row whose key is there
/// replaces it, the others are added. Returns the table, and the rows added and replaced.
async fn merge(
    table: DeltaTable,
    source: datafusion::dataframe::DataFrame,
    entity: Entity,
) -> Result<(DeltaTable, u64, u64)> {
    let columns = entity.columns();
    let predicate = entity
        .key()
        .iter()
        .map(|k| format!("target.{k} = source.{k}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let (t, metrics) = table
        .merge(source, predicate)
        .with_source_alias("source")
        .with_target_alias("target")
        .with_writer_properties(crate::staging::table_file_properties(entity))
        .when_matched_update(|mut u| {
            for c in columns {
                u = u.update(c.name, format!("source.{}", c.name));
            }
            u
        })?
        .when_not_matched_insert(|mut i| {
            for c in columns {
                i = i.set(c.name, format!("source.{}", c.name));
            }
            i
        })?
        .await?;
    let added = metrics.num_target_rows_inserted as u64;
    let replaced = metrics.num_target_rows_updated as u64;
    Ok((t, added, replaced))
}

/// The pin of a table just committed: its new Delta version and its rows.
fn pinned(
    table: &DeltaTable,
    entity: Entity,
    rows: u64,
    change: TableChange,
) -> Result<(TablePin, TableChange)> {
    let delta_version = table.version().ok_or_else(|| {
        WarehouseError::Corrupt(format!("{} has no version after commit", entity.name()))
    })?;
    Ok((
        TablePin {
            delta_version,
            rows,
        },
        change,
    ))
}
