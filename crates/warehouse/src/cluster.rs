//! Keeping a rollup's rows in the order of one column, so that the statistics of each row group
//! and page say which values it holds, and a query filtering on that column (one partner's
//! pages, one product's customers) skips the rest.
//!
//! Where the column's distinct values are few next to its rows (partners, products), the rows
//! are put in order by counting: each value's rank is found once, then every row is placed in
//! its value's bucket. This is linear in the rows, where a comparison sort of millions of
//! strings would cost more than building the rollup. A text column whose values mostly differ
//! from row to row (the brand owner's customers, one row each) has as many ranks to find as
//! rows, and is sorted by comparing instead.

use arrow::array::{Array, ArrayAccessor, ArrayRef, AsArray, UInt32Array};
use arrow::compute::{
    SortOptions, cast, interleave_record_batch, sort_to_indices, take_record_batch,
};
use arrow::datatypes::{DataType, Int32Type};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, Rows, SortField};

/// The rows of `batch` in ascending order of column `column`, empty values last.
pub(crate) fn by_column(batch: &RecordBatch, column: usize) -> Result<RecordBatch, ArrowError> {
    take_record_batch(batch, &order_of(batch.column(column))?)
}

/// The positions of `values` in ascending order, empty values last, stable among equals.
fn order_of(values: &ArrayRef) -> Result<UInt32Array, ArrowError> {
    if let Some(order) = distinct_texts_order(values) {
        return Ok(order);
    }
    Ok(match ranks(values) {
        Some((ranks, distinct)) => counting_order(&ranks, distinct),
        // A type without dictionaries (a boolean, a decimal): a plain stable sort.
        None => sort_to_indices(
            values,
            Some(SortOptions {
                descending: false,
                nulls_first: false,
            }),
            None,
        )?,
    })
}

/// The rows of several batches in ascending order of one column, empty values last, made a
/// batch of `rows` rows at a time when asked. The batches stay as they were given, and only the
/// order of their rows is held beside them: the rows are held once, where gathering them and
/// then taking them in order held them twice — a rollup of millions of rows, while another
/// was being built, was a load's peak.
#[derive(Debug)]
pub(crate) struct InOrder {
    batches: Vec<RecordBatch>,
    /// The first row of each batch, counted over all of them.
    starts: Vec<usize>,
    /// The rows, counted over all batches, in order.
    order: UInt32Array,
    rows: usize,
}

impl InOrder {
    /// The rows of `batches` (one schema, at least one batch) in the order of column `column`,
    /// to be taken `rows` at a time.
    pub(crate) fn new(
        batches: Vec<RecordBatch>,
        column: usize,
        rows: usize,
    ) -> Result<InOrder, ArrowError> {
        if batches.is_empty() {
            return Err(ArrowError::InvalidArgumentError(
                "no rows to put in order".into(),
            ));
        }
        if batches.iter().map(|b| b.num_rows()).sum::<usize>() > u32::MAX as usize {
            return Err(ArrowError::InvalidArgumentError(format!(
                "more than {} rows to put in order",
                u32::MAX
            )));
        }
        // Only the column is gathered, to find the order.
        let values: Vec<&dyn Array> = batches.iter().map(|b| b.column(column).as_ref()).collect();
        let order = order_of(&arrow::compute::concat(&values)?)?;
        let starts = batches
            .iter()
            .scan(0, |next, b| {
                let start = *next;
                *next += b.num_rows();
                Some(start)
            })
            .collect();
        Ok(InOrder {
            batches,
            starts,
            order,
            rows: rows.max(1),
        })
    }

    /// The rows.
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// The rows as they were given, in no order.
    pub(crate) fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    /// The schema of the rows.
    pub(crate) fn schema(&self) -> arrow::datatypes::SchemaRef {
        self.batches[0].schema()
    }

    /// How many batches the rows are taken in (one, empty, when there are no rows).
    pub(crate) fn groups(&self) -> usize {
        self.len().div_ceil(self.rows).max(1)
    }

    /// The `i`th batch of rows in order, made now.
    pub(crate) fn group(&self, i: usize) -> Result<RecordBatch, ArrowError> {
        let from = (i * self.rows).min(self.len());
        let until = (from + self.rows).min(self.len());
        if from == until {
            return Ok(RecordBatch::new_empty(self.schema()));
        }
        let at: Vec<(usize, usize)> = self.order.values()[from..until]
            .iter()
            .map(|&row| {
                let row = row as usize;
                // The last batch starting at or before the row: an empty batch starts where the
                // next one does, and is passed over.
                let batch = self.starts.partition_point(|&s| s <= row) - 1;
                (batch, row - self.starts[batch])
            })
            .collect();
        let batches: Vec<&RecordBatch> = self.batches.iter().collect();
        arrow::compute::interleave_record_batch(&batches, &at)
    }
}

/// The rows of a column's first rows that say whether its values mostly differ from row to row.
const SAMPLE_ROWS: usize = 65_536;

/// The order of a text column whose values mostly differ from row to row (each customer once,
/// as the brand owner's customers are), by comparing them; `None` for any other column.
/// Counting needs each row's rank, and finding ranks hashes every value into a dictionary and
/// then sorts the dictionary, as many values as rows: for 4.5 M customer ids comparing them took
/// 2.4 s where counting took 4.1-4.4 s (BENCHMARKS.md). A sample of the first rows decides:
/// values repeated four times or more on average are counted.
fn distinct_texts_order(values: &ArrayRef) -> Option<UInt32Array> {
    if !matches!(
        values.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) {
        return None;
    }
    let sample = values.slice(0, values.len().min(SAMPLE_ROWS));
    let as_dictionary = DataType::Dictionary(
        Box::new(DataType::Int32),
        Box::new(values.data_type().clone()),
    );
    let distinct = cast(&sample, &as_dictionary)
        .ok()?
        .as_dictionary::<Int32Type>()
        .values()
        .len();
    if distinct * 4 <= sample.len() {
        return None;
    }
    Some(match values.data_type() {
        DataType::Utf8 => texts_order(values.as_string::<i32>()),
        DataType::LargeUtf8 => texts_order(values.as_string::<i64>()),
        _ => texts_order(values.as_string_view()),
    })
}

/// Rows from which a text column compared into order is sorted in two halves on two threads and
/// merged (a few in unit tests, so that they take that way too).
const HALVED_ROWS: usize = if cfg!(test) { 64 } else { 1 << 16 };

/// The positions of texts in ascending order, empty values last, stable among equals (ties
/// broken by position, so an unstable sort of the positions gives the stable order). A long
/// column's two halves are sorted side by side and merged: the brand owner's customers are put
/// in order at the end of a full load, when the other core has nothing left to do.
fn texts_order<'a, A>(texts: A) -> UInt32Array
where
    A: ArrayAccessor<Item = &'a str> + Copy + Sync,
{
    // Empty values sort after every text: `true` after `false`.
    let key = |row: u32| {
        let row = row as usize;
        match texts.is_null(row) {
            true => (true, ""),
            false => (false, texts.value(row)),
        }
    };
    let before = |a: &u32, b: &u32| key(*a).cmp(&key(*b)).then(a.cmp(b));
    let mut order: Vec<u32> = (0..texts.len() as u32).collect();
    if order.len() < HALVED_ROWS {
        order.sort_unstable_by(before);
        return UInt32Array::from(order);
    }
    let (low, high) = order.split_at_mut(texts.len() / 2);
    std::thread::scope(|s| {
        s.spawn(|| low.sort_unstable_by(before));
        high.sort_unstable_by(before);
    });
    // Positions are distinct, so the order is total and the merge has one answer.
    let mut merged = Vec::with_capacity(texts.len());
    let (mut i, mut j) = (0, 0);
    while i < low.len() && j < high.len() {
        if before(&high[j], &low[i]).is_lt() {
            merged.push(high[j]);
            j += 1;
        } else {
            merged.push(low[i]);
            i += 1;
        }
    }
    merged.extend_from_slice(&low[i..]);
    merged.extend_from_slice(&high[j..]);
    UInt32Array::from(merged)
}

/// Each row's rank among the column's distinct values (nulls after every value), and the number
/// of ranks; `None` when the column's type has no dictionary form.
fn ranks(values: &ArrayRef) -> Option<(Vec<u32>, usize)> {
    let dictionary = cast(
        values,
        &DataType::Dictionary(
            Box::new(DataType::Int32),
            Box::new(values.data_type().clone()),
        ),
    )
    .ok()?;
    let dictionary = dictionary.as_dictionary::<Int32Type>();
    let order = sort_to_indices(dictionary.values(), None, None).ok()?;
    let mut rank_of_key = vec![0u32; dictionary.values().len()];
    for (rank, key) in order.values().iter().enumerate() {
        rank_of_key[*key as usize] = rank as u32;
    }
    let null_rank = rank_of_key.len() as u32;
    let keys = dictionary.keys();
    let ranks = (0..keys.len())
        .map(|i| {
            if keys.is_null(i) {
                null_rank
            } else {
                rank_of_key[keys.value(i) as usize]
            }
        })
        .collect();
    Some((ranks, rank_of_key.len() + 1))
}

/// The rows of several batches of one schema as one batch in ascending order of column
/// `column`, empty values last. The batches are let go once gathered: a rollup's rows are then
/// held twice at most, not three times.
pub(crate) fn batches_by_column(
    batches: Vec<RecordBatch>,
    column: usize,
) -> Result<RecordBatch, ArrowError> {
    let Some(first) = batches.first() else {
        return Err(ArrowError::InvalidArgumentError(
            "no rows to put in order".into(),
        ));
    };
    // Gathered whole, then taken in order: measured faster than interleaving from the batches.
    let gathered = arrow::compute::concat_batches(&first.schema(), &batches)?;
    drop(batches);
    by_column(&gathered, column)
}

/// The rows of several batches of one schema as one batch in the order of `columns`: one
/// column's ascending order (empty values last), or, for two or more, the Z-order of their
/// values' ranks. A table filtered on either of two columns (the order lines by partner, by
/// product) cannot be in both orders at once; interleaving the bits of each row's ranks keeps
/// the rows of one value of either column in a few runs of the row group, so that each page's
/// statistics name few values of both and a filter on either reads a small share of the pages
/// — where the order of one column leaves a filter on the other reading every page.
pub(crate) fn batches_by_columns(
    batches: Vec<RecordBatch>,
    columns: &[usize],
) -> Result<RecordBatch, ArrowError> {
    let [first, ..] = columns else {
        return Err(ArrowError::InvalidArgumentError(
            "no column to put rows in order of".into(),
        ));
    };
    if columns.len() == 1 {
        return batches_by_column(batches, *first);
    }
    let Some(head) = batches.first() else {
        return Err(ArrowError::InvalidArgumentError(
            "no rows to put in order".into(),
        ));
    };
    let gathered = arrow::compute::concat_batches(&head.schema(), &batches)?;
    drop(batches);
    let order = z_order(
        &columns
            .iter()
            .map(|c| gathered.column(*c).clone())
            .collect::<Vec<_>>(),
    )?;
    take_record_batch(&gathered, &order)
}

/// The bits each column's rank is scaled to before they are interleaved: four columns fill
/// the 64-bit key.
const Z_BITS: u32 = 16;

/// The positions of the rows in the Z-order of the columns' ranks, each rank scaled to
/// `Z_BITS` bits so that a column of few values (93 products) weighs as much as one of many
/// (3,000 partners); stable among rows with the same key.
fn z_order(columns: &[ArrayRef]) -> Result<UInt32Array, ArrowError> {
    if columns.is_empty() || columns.len() > 64 / Z_BITS as usize {
        return Err(ArrowError::InvalidArgumentError(format!(
            "rows are put in the order of 1 to {} columns, not {}",
            64 / Z_BITS,
            columns.len()
        )));
    }
    let rows = columns[0].len();
    if rows > u32::MAX as usize {
        return Err(ArrowError::InvalidArgumentError(format!(
            "more than {} rows to put in order",
            u32::MAX
        )));
    }
    let scaled: Vec<Vec<u64>> = columns
        .iter()
        .map(|values| {
            let (ranks, distinct) = match ranks(values) {
                Some(r) => r,
                // A type without dictionaries: its sorted position stands for its rank.
                None => {
                    let order = order_of(values)?;
                    let mut ranks = vec![0u32; values.len()];
                    for (position, row) in order.values().iter().enumerate() {
                        ranks[*row as usize] = position as u32;
                    }
                    (ranks, values.len())
                }
            };
            // The ranks in use: a column without empty values leaves the rank after its
            // values unused, and scaling by it would put the grid's lines off the values'.
            let distinct = ranks
                .iter()
                .max()
                .map_or(distinct, |r| *r as usize + 1)
                .max(1) as u64;
            Ok(ranks
                .iter()
                .map(|r| ((*r as u64) << Z_BITS) / distinct)
                .collect())
        })
        .collect::<Result<_, ArrowError>>()?;
    let mut keyed: Vec<(u64, u32)> = (0..rows)
        .map(|row| {
            let mut key = 0u64;
            for bit in (0..Z_BITS).rev() {
                for column in &scaled {
                    key = (key << 1) | ((column[row] >> bit) & 1);
                }
            }
            (key, row as u32)
        })
        .collect();
    keyed.sort_unstable();
    Ok(UInt32Array::from_iter_values(
        keyed.into_iter().map(|(_, row)| row),
    ))
}

/// The rows of `runs` and of `rest` as batches of `rows` rows (the last fewer) in ascending
/// order of column `column`, empty values last. Each run is the rows of one file of a rollup
/// that was written in that order, less those computed again; `rest` holds those, in any
/// order. A rollup brought up to date keeps most of its rows: merging the few computed again
/// into the many already in order costs a pass over them, where putting all of them in order
/// again costs gathering and moving every row. None when a run is not in order (a rollup
/// written before its rows were kept in order), with `rest` given back: only putting every
/// row in order will do. None as well when there are no rows.
pub(crate) fn merged(
    runs: &[Vec<RecordBatch>],
    rest: Vec<RecordBatch>,
    column: usize,
    rows: usize,
) -> Result<Result<Vec<RecordBatch>, Vec<RecordBatch>>, ArrowError> {
    let runs: Vec<Vec<&RecordBatch>> = runs
        .iter()
        .map(|run| run.iter().filter(|b| b.num_rows() > 0).collect::<Vec<_>>())
        .filter(|run| !run.is_empty())
        .collect();
    let rest_is_empty = rest.iter().all(|b| b.num_rows() == 0);
    if runs.is_empty() {
        return Ok(match rest_is_empty {
            true => Err(rest),
            false => Ok(slices(&batches_by_column(rest, column)?, rows)),
        });
    }
    let schema = runs[0][0].schema();
    let order = SortOptions {
        descending: false,
        nulls_first: false,
    };
    let converter = RowConverter::new(vec![SortField::new_with_options(
        schema.field(column).data_type().clone(),
        order,
    )])?;
    let keys = |b: &RecordBatch| -> Result<Rows, ArrowError> {
        let values = cast(b.column(column), schema.field(column).data_type())?;
        converter.convert_columns(&[values])
    };
    // Each run's batches with their values as comparable rows; a run out of order is no help.
    let mut keyed: Vec<Vec<(&RecordBatch, Rows)>> = Vec::with_capacity(runs.len());
    for run in &runs {
        let mut batches = Vec::with_capacity(run.len());
        for b in run {
            batches.push((*b, keys(b)?));
        }
        let mut values = batches.iter().flat_map(|(_, k)| k.iter());
        let mut last = values.next();
        for value in values {
            if last.is_some_and(|l| l > value) {
                return Ok(Err(rest));
            }
            last = Some(value);
        }
        keyed.push(batches);
    }
    // Files of one ordered write hold consecutive stretches of the order: put them back in it.
    let first = |run: &Vec<(&RecordBatch, Rows)>| run[0].1.row(0).owned();
    let last = |run: &Vec<(&RecordBatch, Rows)>| {
        let (_, k) = run.last().expect("runs are not empty");
        k.row(k.num_rows() - 1).owned()
    };
    keyed.sort_by_cached_key(|run| (first(run), last(run)));
    if keyed.windows(2).any(|w| last(&w[0]) > first(&w[1])) {
        return Ok(Err(rest));
    }
    let rest = match rest_is_empty {
        true => None,
        false => Some(batches_by_column(rest, column)?),
    };
    let (rest, rest_keys) = match rest {
        Some(r) => {
            let k = keys(&r)?;
            (Some(r), Some(k))
        }
        None => (None, None),
    };
    let rest_rows = rest.as_ref().map_or(0, |r| r.num_rows());
    // Where each row comes from, in order: (batch, row) of the runs' batches and, last, of
    // `rest`. The rows are then gathered by these a group at a time; cutting the runs into
    // slices between the rows computed again and coalescing them copied each slice's columns
    // one by one (a row computed again every dozen rows: the brand owner's 4.2 M customers at
    // scale 100 took 1.0-1.9 s to merge, 0.5-0.9 s gathered).
    let mut sources: Vec<&RecordBatch> = keyed.iter().flatten().map(|(b, _)| *b).collect();
    let rest_source = sources.len();
    if let Some(r) = &rest {
        sources.push(r);
    }
    let mut order: Vec<(usize, usize)> =
        Vec::with_capacity(sources.iter().map(|b| b.num_rows()).sum());
    // The next row of `rest` not yet placed.
    let mut next = 0;
    for (source, (batch, batch_keys)) in keyed.iter().flatten().enumerate() {
        for i in 0..batch.num_rows() {
            if let Some(rk) = &rest_keys {
                while next < rest_rows && rk.row(next) < batch_keys.row(i) {
                    order.push((rest_source, next));
                    next += 1;
                }
            }
            order.push((source, i));
        }
    }
    order.extend((next..rest_rows).map(|row| (rest_source, row)));
    order
        .chunks(rows.max(1))
        .map(|group| interleave_record_batch(&sources, group))
        .collect::<Result<Vec<_>, _>>()
        .map(Ok)
}

/// Row indices ordered by rank, stable within a rank.
fn counting_order(ranks: &[u32], distinct: usize) -> UInt32Array {
    let mut start = vec![0u32; distinct + 1];
    for r in ranks {
        start[*r as usize + 1] += 1;
    }
    for i in 1..start.len() {
        start[i] += start[i - 1];
    }
    let mut out = vec![0u32; ranks.len()];
    for (row, r) in ranks.iter().enumerate() {
        let slot = &mut start[*r as usize];
        out[*slot as usize] = row as u32;
        *slot += 1;
    }
    UInt32Array::from(out)
}

/// `batch` as consecutive slices of at most `rows` rows (no copy).
pub(crate) fn slices(batch: &RecordBatch, rows: usize) -> Vec<RecordBatch> {
    if batch.num_rows() == 0 {
        return vec![batch.clone()];
    }
    (0..batch.num_rows())
        .step_by(rows.max(1))
        .map(|from| batch.slice(from, rows.min(batch.num_rows() - from)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch(ids: Vec<Option<&str>>) -> RecordBatch {
        let n = ids.len() as i64;
        let schema = Arc::new(Schema::new(vec![
            Field::new("partner_id", DataType::Utf8, true),
            Field::new("row", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(ids)),
                Arc::new(Int64Array::from_iter_values(0..n)),
            ],
        )
        .unwrap()
    }

    /// A test batch's partner ids, in its order.
    fn ids_of(b: &RecordBatch) -> Vec<Option<&str>> {
        b.column(0).as_string::<i32>().iter().collect()
    }

    /// A test batch's `row` numbers, in its order.
    fn numbers(b: &RecordBatch) -> Vec<i64> {
        b.column(1)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .values()
            .to_vec()
    }

    #[test]
    fn rows_in_the_z_order_of_two_columns_keep_each_value_of_either_in_few_pages() {
        // A 32 × 32 grid of (a, b), each pair once, in a scrambled order; pages of 64 rows are
        // 16 pages. In the order of `a` alone, each value of `b` would be in all 16; in the
        // Z-order, each page is close to an 8 × 8 block of the grid, so each value of either
        // is in about 4 of them (a few more where a block's edge falls between two values).
        let n = 32usize;
        let cells: Vec<(usize, usize)> = (0..n * n).map(|i| ((i * 389) % (n * n), i)).collect();
        let name = |v: usize| format!("v{v:02}");
        let a: Vec<String> = cells.iter().map(|(c, _)| name(c / n)).collect();
        let b: Vec<String> = cells.iter().map(|(c, _)| name(c % n)).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8, false),
            Field::new("b", DataType::Utf8, false),
            Field::new("row", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(a)),
                Arc::new(StringArray::from(b)),
                Arc::new(Int64Array::from_iter_values(0..(n * n) as i64)),
            ],
        )
        .unwrap();
        // Given as two batches, as the staging holds a row group.
        let out = batches_by_columns(
            vec![batch.slice(0, 500), batch.slice(500, n * n - 500)],
            &[0, 1],
        )
        .unwrap();
        // Every row once.
        let mut rows: Vec<i64> = out
            .column(2)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .values()
            .to_vec();
        rows.sort();
        assert_eq!(rows, (0..(n * n) as i64).collect::<Vec<_>>());
        for column in [0, 1] {
            let values: Vec<&str> = out
                .column(column)
                .as_string::<i32>()
                .iter()
                .map(Option::unwrap)
                .collect();
            let most = (0..n)
                .map(|v| {
                    let v = name(v);
                    values
                        .chunks(64)
                        .filter(|page| page.contains(&v.as_str()))
                        .count()
                })
                .max()
                .unwrap();
            assert!(
                most <= 6,
                "a value of column {column} is in {most} of 16 pages"
            );
        }
    }

    #[test]
    fn rows_are_ordered_by_the_column_stably_with_empty_values_last() {
        let b = batch(vec![
            Some("P-3"),
            None,
            Some("P-1"),
            Some("P-3"),
            Some("P-2"),
            Some("P-1"),
            None,
        ]);
        let out = by_column(&b, 0).unwrap();
        let ids = ids_of(&out);
        assert_eq!(
            ids,
            vec![
                Some("P-1"),
                Some("P-1"),
                Some("P-2"),
                Some("P-3"),
                Some("P-3"),
                None,
                None
            ]
        );
        // The other columns move with their rows, which keep their order within a value.
        let rows = numbers(&out);
        assert_eq!(rows, vec![2, 5, 4, 0, 3, 1, 6]);
    }

    /// Text columns are put in order by comparing their values when they mostly differ (a
    /// rollup's customers) and by counting when they repeat (its partners): either way the order
    /// of a plain stable sort, empty values last, in each of Arrow's text types.
    #[test]
    fn texts_are_ordered_alike_whether_compared_or_counted() {
        let customers: Vec<Option<String>> = (0..300)
            .map(|i| (i % 37 != 0).then(|| format!("C-{:04}", (i * 7919) % 250)))
            .collect();
        let partners: Vec<Option<String>> = (0..300)
            .map(|i| (i % 41 != 0).then(|| format!("P-{}", (i * 13) % 7)))
            .collect();
        for (values, compared) in [(customers, true), (partners, false)] {
            let mut expected: Vec<u32> = (0..values.len() as u32).collect();
            expected.sort_by_key(|i| {
                let v = &values[*i as usize];
                (v.is_none(), v.clone())
            });
            let texts = || values.iter().map(|v| v.as_deref());
            let arrays: [ArrayRef; 3] = [
                Arc::new(texts().collect::<StringArray>()),
                Arc::new(texts().collect::<arrow::array::LargeStringArray>()),
                Arc::new(texts().collect::<arrow::array::StringViewArray>()),
            ];
            for array in arrays {
                let ty = array.data_type().clone();
                assert_eq!(distinct_texts_order(&array).is_some(), compared, "{ty}");
                assert_eq!(
                    order_of(&array).unwrap().values().to_vec(),
                    expected,
                    "{ty}"
                );
            }
        }
    }

    #[test]
    fn several_batches_are_ordered_as_one() {
        let (a, b) = (
            batch(vec![Some("P-2"), Some("P-1")]),
            batch(vec![None, Some("P-1"), Some("P-0")]),
        );
        let out = batches_by_column(vec![a, b], 0).unwrap();
        let ids = ids_of(&out);
        assert_eq!(
            ids,
            vec![Some("P-0"), Some("P-1"), Some("P-1"), Some("P-2"), None]
        );
        // Rows 0..1 of the first batch and 0..2 of the second: each keeps its own values.
        let rows = numbers(&out);
        assert_eq!(rows, vec![2, 1, 1, 0, 0]);
    }

    #[test]
    fn rows_put_in_order_as_the_write_takes_them_are_each_row_once_in_order() {
        let batches = vec![
            batch(vec![Some("P-2"), Some("P-1")]),
            batch(vec![]),
            batch(vec![None, Some("P-1"), Some("P-0")]),
            batch(vec![Some("P-1"), Some("P-3")]),
        ];
        let rows = InOrder::new(batches, 0, 3).unwrap();
        assert_eq!((rows.len(), rows.groups()), (7, 3));
        let groups: Vec<RecordBatch> = (0..rows.groups()).map(|i| rows.group(i).unwrap()).collect();
        assert_eq!(
            groups.iter().map(|g| g.num_rows()).collect::<Vec<_>>(),
            [3, 3, 1]
        );
        let all = arrow::compute::concat_batches(&groups[0].schema(), &groups).unwrap();
        let ids = ids_of(&all);
        // By hand: each value's rows in the order the batches gave them, empty values last.
        assert_eq!(
            ids,
            [
                Some("P-0"),
                Some("P-1"),
                Some("P-1"),
                Some("P-1"),
                Some("P-2"),
                Some("P-3"),
                None
            ]
        );
        // Each row with its own columns: P-0 was the third row of its batch, the P-1s the
        // second of the first batch, the second of the third and the first of the last.
        let at = numbers(&all);
        assert_eq!(at, [2, 1, 1, 0, 0, 1, 0]);
        // The rows as given stay for the rollups built from this one.
        assert_eq!(rows.batches().len(), 4);
        // No rows: one empty batch with the columns, as a rollup with no rows is still written.
        let none = InOrder::new(vec![batch(vec![])], 0, 3).unwrap();
        assert_eq!((none.groups(), none.group(0).unwrap().num_rows()), (1, 0));
        assert_eq!(none.group(0).unwrap().num_columns(), 2);
    }

    /// A batch of partner ids whose `row` column numbers them from `first`.
    fn numbered(ids: Vec<Option<&str>>, first: i64) -> RecordBatch {
        let b = batch(ids);
        let n = b.num_rows() as i64;
        RecordBatch::try_new(
            b.schema(),
            vec![
                b.column(0).clone(),
                Arc::new(Int64Array::from_iter_values(first..first + n)),
            ],
        )
        .unwrap()
    }

    /// The partner ids of batches, in order.
    fn partner_ids<'a>(batches: impl IntoIterator<Item = &'a RecordBatch>) -> Vec<Option<String>> {
        batches
            .into_iter()
            .flat_map(|b| {
                b.column(0)
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.map(String::from))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn rows_computed_again_are_merged_into_runs_in_order() {
        // Two files of one ordered write, listed last first; the first file's stretch ends
        // where the second's begins (P-2).
        let runs = vec![
            vec![numbered(vec![Some("P-2"), Some("P-4"), None], 10)],
            vec![
                numbered(vec![Some("P-1"), Some("P-1")], 0),
                numbered(vec![Some("P-2")], 2),
            ],
        ];
        let rest = vec![
            numbered(vec![None, Some("P-3"), Some("P-0")], 20),
            numbered(vec![Some("P-2"), Some("P-5")], 23),
        ];
        let out = merged(&runs, rest.clone(), 0, 3)
            .unwrap()
            .expect("runs in order");
        assert_eq!(
            out.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            vec![3, 3, 3, 2]
        );
        let ids = partner_ids(&out);
        let mut expected = partner_ids(runs.iter().flatten().chain(&rest));
        // Ascending, empty values last.
        expected.sort_by_key(|v| (v.is_none(), v.clone()));
        assert_eq!(ids, expected);
        // Every row once, its columns together.
        let mut rows: Vec<(Option<String>, i64)> = out
            .iter()
            .flat_map(|b| {
                let ids = b.column(0).as_string::<i32>();
                let n = b.column(1).as_primitive::<arrow::datatypes::Int64Type>();
                (0..b.num_rows())
                    .map(|i| {
                        (
                            ids.is_valid(i).then(|| ids.value(i).to_string()),
                            n.value(i),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        rows.sort_by_key(|r| r.1);
        let numbers: Vec<i64> = rows.iter().map(|r| r.1).collect();
        assert_eq!(numbers, vec![0, 1, 2, 10, 11, 12, 20, 21, 22, 23, 24]);
        assert_eq!(rows[3], (Some("P-2".to_string()), 10));
        assert_eq!(rows[9], (Some("P-2".to_string()), 23));
    }

    #[test]
    fn runs_out_of_order_are_no_help() {
        let rest = vec![numbered(vec![Some("P-1")], 0)];
        // A file out of order.
        let unordered = vec![vec![numbered(vec![Some("P-3"), Some("P-2")], 1)]];
        assert!(merged(&unordered, rest.clone(), 0, 8).unwrap().is_err());
        // Two files each in order, whose stretches overlap.
        let overlapping = vec![
            vec![numbered(vec![Some("P-1"), Some("P-3")], 1)],
            vec![numbered(vec![Some("P-2"), Some("P-4")], 3)],
        ];
        assert!(merged(&overlapping, rest, 0, 8).unwrap().is_err());
    }

    #[test]
    fn a_column_without_a_dictionary_form_is_sorted() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "flag",
            DataType::Boolean,
            true,
        )]));
        let b = RecordBatch::try_new(
            schema,
            vec![Arc::new(arrow::array::BooleanArray::from(vec![
                Some(true),
                None,
                Some(false),
            ]))],
        )
        .unwrap();
        let out = by_column(&b, 0).unwrap();
        let flags: Vec<Option<bool>> = out.column(0).as_boolean().iter().collect();
        assert_eq!(flags, vec![Some(false), Some(true), None]);
    }

    #[test]
    fn slices_cover_every_row_once() {
        let b = batch((0..10).map(|_| Some("P")).collect());
        let parts = slices(&b, 4);
        assert_eq!(
            parts.iter().map(|p| p.num_rows()).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
    }
}
