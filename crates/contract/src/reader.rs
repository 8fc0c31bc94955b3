//! Reading one export file: header matching, row validation and Arrow batches.
//!
//! A [`FileReader`] checks a file's header and reads its records in chunks; a [`RowValidator`]
//! (one per thread) turns a chunk into an Arrow batch of the entity's schema. Every row is fully
//! validated before it is appended; a row with faults comes back with one [`Rejection`] per
//! fault and never reaches a batch, so the same code serves both the all-or-nothing load and the
//! quarantine mode. Duplicate keys are found in file order by a [`KeyRegistry`].

use std::collections::HashSet;
use std::io::Read;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::record_batch::RecordBatch;
use csv::ByteRecord;
use serde::Serialize;
use xxhash_rust::xxh3::xxh3_128;

use crate::entity::{Column, ColumnType, Entity, MONEY_PRECISION, MONEY_SCALE, Rule};
use crate::values;

/// Records per chunk, and so rows per Arrow batch at most: enough to keep a validator busy
/// between hand-overs, small enough that the chunks in flight stay a few megabytes.
pub const CHUNK_ROWS: usize = 16 * 1024;

/// One fault in an export: where it is and why it was rejected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// The file, as the export names it.
    pub file: String,
    /// 1-based line of the file where the row starts (the header is line 1).
    pub line: u64,
    /// 1-based position of the column in the file, when the fault is in one field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column_number: Option<usize>,
    /// The column's name, when the fault is in one column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The offending value as found, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Why the row is rejected, in words.
    pub reason: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        // Line 0: the fault is the file as a whole (it is missing, say).
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if let Some(n) = self.column_number {
            write!(f, ":{n}")?;
        }
        if let Some(c) = &self.column {
            write!(f, " ({c})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// What a load knows of an id that a fact row refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdStatus {
    /// In this export's dimension file or already in the warehouse.
    Known,
    /// In this export's dimension file, but its row was rejected.
    Rejected,
    /// Neither in this export nor in the warehouse.
    Unknown,
}

/// The ids a reference may point to: those of the export being loaded plus those already in
/// the warehouse.
pub trait KnownIds {
    /// Whether an id of `entity` is known, known but rejected, or unknown.
    fn lookup(&self, entity: Entity, id: &str) -> IdStatus;
    /// Whether some row of `entity` (in this export or the warehouse) has `value` in `column`.
    fn has_value(&self, entity: Entity, column: &str, value: &str) -> bool;
    /// Reads where `id` of `entity` would be, so that its `lookup` a moment later finds it in
    /// the cache. A validator warms a few hundred rows' references in a row before checking
    /// them: the look-ups of ids in sets larger than the cache then wait for memory together,
    /// where one by one, between the checks of each row, each waited alone. The default does
    /// nothing.
    fn warm(&self, _entity: Entity, _id: &[u8]) {}
}

/// A file that cannot be read at all (as opposed to rows that are rejected).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file as a whole is refused (a missing column, no header).
    #[error("{0}")]
    Rejected(Rejection),
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// Why not.
        source: std::io::Error,
    },
}

enum Builder {
    Text(StringBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Money(Decimal128Builder),
    Integer(Int64Builder),
    Bool(BooleanBuilder),
}

impl Builder {
    fn new(ty: ColumnType) -> Builder {
        match ty {
            ColumnType::Text => {
                Builder::Text(StringBuilder::with_capacity(CHUNK_ROWS, CHUNK_ROWS * 8))
            }
            ColumnType::Date => Builder::Date(Date32Builder::with_capacity(CHUNK_ROWS)),
            ColumnType::Timestamp => Builder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(CHUNK_ROWS).with_timezone("UTC"),
            ),
            ColumnType::Money => Builder::Money(
                Decimal128Builder::with_capacity(CHUNK_ROWS)
                    .with_precision_and_scale(MONEY_PRECISION, MONEY_SCALE)
                    .expect("valid decimal type"),
            ),
            ColumnType::Integer => Builder::Integer(Int64Builder::with_capacity(CHUNK_ROWS)),
            ColumnType::Bool => Builder::Bool(BooleanBuilder::with_capacity(CHUNK_ROWS)),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
            Builder::Money(b) => Arc::new(b.finish()),
            Builder::Integer(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
        }
    }
}

/// Hashes a set of 128-bit XXH3 digests (`DigestSet`): they are hashes already, and hashing
/// them again would only cost time, so the table takes their bits as they are.
#[derive(Clone, Copy, Default)]
pub struct KeyHashState;

/// The hasher `KeyHashState` builds.
#[derive(Default)]
pub struct KeyHasher(u64);

impl std::hash::BuildHasher for KeyHashState {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 ^= (v as u64) ^ ((v >> 64) as u64);
    }
}

/// A field's value once parsed, before it is appended.
#[derive(Clone, Copy)]
enum Parsed {
    Null,
    /// A text field, taken from the record as it is.
    Text,
    /// A text field replaced by the contract's spelling of an enumeration value.
    Canonical(&'static str),
    Integer(i64),
    Money(i128),
    Date(i32),
    Timestamp(i64),
    Bool(bool),
}

/// Turns records of one file into validated Arrow batches. Every field of a row is checked
/// before the row is appended. One validator per thread: `FileReader::validator` makes more.
pub struct RowValidator {
    entity: Entity,
    file: String,
    header_len: usize,
    /// For each column of the entity, its position in the file, if the file has it.
    positions: Vec<Option<usize>>,
    key_positions: Vec<usize>,
    not_before: Vec<Option<usize>>,
    not_more_than: Vec<Option<usize>>,
    parsed: Vec<Parsed>,
    builders: Vec<Builder>,
    rows_in_batch: usize,
    /// Per column, the last valid value of a reference or a date and what it parsed to: order
    /// lines of one order name the same partner, customer and date, so most lookups and date
    /// parses are answered here. Empty: none yet, or a column whose values rarely repeat.
    last_valid: Vec<(Vec<u8>, Parsed)>,
    /// Per column, whether its last valid value is kept in `last_valid`.
    repeats: Vec<bool>,
    /// The bytes of a row's key, reused from row to row.
    key_bytes: Vec<u8>,
}

/// The outcome of validating a chunk of records on a worker.
pub struct ValidatedChunk {
    /// The valid rows, in the chunk's order.
    pub batch: Option<RecordBatch>,
    /// For each row of `batch`: its key digest (a one-field key's `text_digest`) and the
    /// index of its record in the chunk.
    pub keys: Vec<(u128, usize)>,
    /// The records that failed, by index in the chunk, with their faults.
    pub rejected: Vec<(usize, Vec<Rejection>)>,
}

impl RowValidator {
    fn line(record: &ByteRecord) -> u64 {
        record.position().map_or(0, csv::Position::line)
    }

    fn fault(
        &self,
        record: &ByteRecord,
        column: Option<usize>,
        value: Option<&[u8]>,
        reason: String,
    ) -> Rejection {
        let columns = self.entity.columns();
        Rejection {
            file: self.file.clone(),
            line: Self::line(record),
            column_number: column.and_then(|c| self.positions[c]).map(|p| p + 1),
            column: column.map(|c| columns[c].name.to_string()),
            value: value.map(|v| String::from_utf8_lossy(v).into_owned()),
            reason,
        }
    }

    /// Parses every field of a record into `self.parsed`; returns the faults.
    fn check_row(&mut self, record: &ByteRecord, known: &dyn KnownIds) -> Vec<Rejection> {
        let mut faults = Vec::new();
        if record.len() != self.header_len {
            let reason = if record.len() < self.header_len {
                format!(
                    "truncated row: {} field{} where the header has {}",
                    record.len(),
                    if record.len() == 1 { "" } else { "s" },
                    self.header_len
                )
            } else {
                format!(
                    "{} fields where the header has {}",
                    record.len(),
                    self.header_len
                )
            };
            faults.push(self.fault(record, None, None, reason));
            return faults;
        }
        let columns = self.entity.columns();
        for (c, column) in columns.iter().enumerate() {
            let raw: &[u8] = match self.positions[c] {
                Some(p) => &record[p],
                None => b"",
            };
            let repeats = self.repeats[c];
            if repeats && !raw.is_empty() && self.last_valid[c].0 == raw {
                self.parsed[c] = self.last_valid[c].1;
                continue;
            }
            match parse_field(self.entity, column, raw, known) {
                Ok(v) => {
                    if repeats {
                        let last = &mut self.last_valid[c];
                        last.0.clear();
                        last.0.extend_from_slice(raw);
                        last.1 = v;
                    }
                    self.parsed[c] = v;
                }
                Err(reason) => {
                    self.parsed[c] = Parsed::Null;
                    faults.push(self.fault(record, Some(c), Some(raw), reason));
                }
            }
        }
        for (c, other) in self.not_before.iter().enumerate() {
            let Some(o) = *other else { continue };
            let precedes = match (self.parsed[c], self.parsed[o]) {
                (Parsed::Timestamp(t), Parsed::Timestamp(start)) => t < start,
                (Parsed::Date(d), Parsed::Date(start)) => d < start,
                _ => false,
            };
            if precedes {
                let raw = self.positions[c].map(|p| &record[p]);
                let reason = format!("{} must not precede {}", columns[c].name, columns[o].name);
                faults.push(self.fault(record, Some(c), raw, reason));
            }
        }
        for (c, other) in self.not_more_than.iter().enumerate() {
            let Some(o) = *other else { continue };
            let reason = match (self.parsed[c], self.parsed[o]) {
                (Parsed::Money(v), Parsed::Money(limit)) if v > limit => format!(
                    "{} must not be more than {} ({})",
                    columns[c].name,
                    columns[o].name,
                    self.positions[o]
                        .map(|p| String::from_utf8_lossy(&record[p]).into_owned())
                        .unwrap_or_default()
                ),
                (Parsed::Money(_), Parsed::Null) => format!(
                    "{} is given without a {}: it must not be more than that",
                    columns[c].name, columns[o].name
                ),
                _ => continue,
            };
            let raw = self.positions[c].map(|p| &record[p]);
            faults.push(self.fault(record, Some(c), raw, reason));
        }
        faults
    }

    /// The 128-bit digest of a valid record's key: its fields' bytes hashed at once (a
    /// streaming hasher's set-up cost more than hashing a short key). A key of one field is
    /// its `text_digest`, so that the loader takes an entity's ids for later files' references
    /// from these digests rather than hashing each id again.
    fn key_digest(&mut self, record: &ByteRecord) -> u128 {
        if let [k] = self.key_positions[..] {
            return text_digest(&record[self.positions[k].expect("key columns are required")]);
        }
        self.key_bytes.clear();
        for &k in &self.key_positions {
            self.key_bytes
                .extend_from_slice(&record[self.positions[k].expect("key columns are required")]);
            // 0xFF never occurs in UTF-8, so ("ab","c") and ("a","bc") hash apart.
            self.key_bytes.push(0xFF);
        }
        xxh3_128(&self.key_bytes)
    }

    /// The rejection of a record whose key an earlier record of the file already had.
    pub fn duplicate(&self, record: &ByteRecord) -> Rejection {
        let key: Vec<String> = self
            .key_positions
            .iter()
            .map(|&k| {
                String::from_utf8_lossy(&record[self.positions[k].expect("key column")])
                    .into_owned()
            })
            .collect();
        let reason = format!(
            "duplicate key {} = {}: an earlier row of this file has the same key",
            self.entity.key().join(", "),
            key.join(", ")
        );
        self.fault(
            record,
            Some(self.key_positions[0]),
            Some(key.join(", ").as_bytes()),
            reason,
        )
    }

    fn append_row(&mut self, record: &ByteRecord) {
        for (c, builder) in self.builders.iter_mut().enumerate() {
            let parsed = self.parsed[c];
            match (builder, parsed) {
                (Builder::Text(b), Parsed::Text) => {
                    let raw = &record[self.positions[c].expect("text field present")];
                    // Checked by parse_field.
                    b.append_value(std::str::from_utf8(raw).expect("validated UTF-8"));
                }
                (Builder::Text(b), Parsed::Canonical(s)) => b.append_value(s),
                (Builder::Text(b), Parsed::Null) => b.append_null(),
                (Builder::Date(b), Parsed::Date(d)) => b.append_value(d),
                (Builder::Date(b), Parsed::Null) => b.append_null(),
                (Builder::Timestamp(b), Parsed::Timestamp(t)) => b.append_value(t),
                (Builder::Timestamp(b), Parsed::Null) => b.append_null(),
                (Builder::Money(b), Parsed::Money(m)) => b.append_value(m),
                (Builder::Money(b), Parsed::Null) => b.append_null(),
                (Builder::Integer(b), Parsed::Integer(i)) => b.append_value(i),
                (Builder::Integer(b), Parsed::Null) => b.append_null(),
                (Builder::Bool(b), Parsed::Bool(v)) => b.append_value(v),
                (Builder::Bool(b), Parsed::Null) => b.append_null(),
                _ => unreachable!("parse_field returns the column's type"),
            }
        }
        self.rows_in_batch += 1;
    }

    fn finish_batch(&mut self) -> RecordBatch {
        self.rows_in_batch = 0;
        let arrays = self.builders.iter_mut().map(Builder::finish).collect();
        RecordBatch::try_new(self.entity.schema(), arrays).expect("builders match the schema")
    }

    /// Validates a chunk of records read by `FileReader::read_chunk`. Keys are not checked
    /// for uniqueness here: the caller does that in file order with `KeyRegistry`.
    pub fn validate_chunk(
        &mut self,
        records: &[ByteRecord],
        known: &dyn KnownIds,
    ) -> ValidatedChunk {
        let mut keys = Vec::with_capacity(records.len());
        let mut rejected = Vec::new();
        for (block, records) in records.chunks(WARMED_ROWS).enumerate() {
            self.warm_references(records, known);
            for (j, record) in records.iter().enumerate() {
                let i = block * WARMED_ROWS + j;
                let faults = self.check_row(record, known);
                if faults.is_empty() {
                    keys.push((self.key_digest(record), i));
                    self.append_row(record);
                } else {
                    rejected.push((i, faults));
                }
            }
        }
        let batch = (self.rows_in_batch > 0).then(|| self.finish_batch());
        ValidatedChunk {
            batch,
            keys,
            rejected,
        }
    }
}

/// Rows whose references are warmed together before they are checked: enough for the
/// look-ups' waits for memory to overlap, few enough that what they read is still in the cache
/// when the rows are checked.
const WARMED_ROWS: usize = 512;

impl RowValidator {
    /// Warms (`KnownIds::warm`) the references of `records`, each value once where rows in a
    /// row repeat it (as `check_row` looks it up once).
    fn warm_references(&self, records: &[ByteRecord], known: &dyn KnownIds) {
        for (c, column) in self.entity.columns().iter().enumerate() {
            let (Rule::References(target), Some(p)) = (column.rule, self.positions[c]) else {
                continue;
            };
            let mut previous: &[u8] = &[];
            for record in records {
                let Some(raw) = record.get(p) else { continue };
                if !raw.is_empty() && raw != previous {
                    known.warm(target, raw);
                    previous = raw;
                }
            }
        }
    }
}

impl Clone for RowValidator {
    fn clone(&self) -> RowValidator {
        RowValidator {
            entity: self.entity,
            file: self.file.clone(),
            header_len: self.header_len,
            positions: self.positions.clone(),
            key_positions: self.key_positions.clone(),
            not_before: self.not_before.clone(),
            not_more_than: self.not_more_than.clone(),
            parsed: self.parsed.clone(),
            builders: self
                .entity
                .columns()
                .iter()
                .map(|c| Builder::new(c.ty))
                .collect(),
            rows_in_batch: 0,
            last_valid: vec![(Vec::new(), Parsed::Null); self.positions.len()],
            repeats: self.repeats.clone(),
            key_bytes: Vec::new(),
        }
    }
}

/// A set of texts held as their 128-bit XXH3 digests (`text_digest`): each entry is 16 bytes
/// in the table itself, so a look-up reads one place in memory and compares no text. Two texts
/// share a digest with a probability of about 2^-128 per pair, far below that of a memory
/// error; duplicate keys are found the same way.
pub type DigestSet = HashSet<u128, KeyHashState>;

/// The 128-bit XXH3 digest of a text, as a `DigestSet` holds it.
pub fn text_digest(text: &[u8]) -> u128 {
    xxh3_128(text)
}

/// The keys seen so far in one file, to find duplicates in file order.
pub struct KeyRegistry {
    seen: DigestSet,
}

impl Default for KeyRegistry {
    fn default() -> Self {
        KeyRegistry {
            seen: HashSet::with_hasher(KeyHashState),
        }
    }
}

impl KeyRegistry {
    /// Room for about this many keys up front: growing a table of millions of keys copies it
    /// again and again.
    pub fn with_capacity(keys: usize) -> KeyRegistry {
        KeyRegistry {
            seen: HashSet::with_capacity_and_hasher(keys, KeyHashState),
        }
    }

    /// True the first time a key digest is seen.
    pub fn first(&mut self, digest: u128) -> bool {
        self.seen.insert(digest)
    }
}

/// One export file: its header, checked, and its records, read in chunks for `RowValidator`s.
/// The input of a `FileReader`, noting where each line feed is as the csv reader reads ahead,
/// so that a record's line is counted from the file's bytes rather than by the csv crate
/// (which counts a CRLF's line a record late and skips a blank line without counting it).
struct LineFeeds<R> {
    inner: R,
    /// Bytes read so far.
    offset: u64,
    /// Offsets of the line feeds read but not yet passed by a record, in order.
    ahead: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<u64>>>,
}

impl<R: Read> Read for LineFeeds<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut ahead = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        // memchr's vectorised search: a byte-at-a-time scan was a fair part of the reading
        // thread's time, the one part of a load no other thread shares.
        ahead.extend(memchr::memchr_iter(b'\n', &buf[..n]).map(|i| self.offset + i as u64));
        self.offset += n as u64;
        Ok(n)
    }
}

/// Counts lines from `LineFeeds`: the line of a record that starts at a byte offset.
struct LineCount {
    ahead: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<u64>>>,
    /// Line feeds before the last record's start.
    passed: u64,
}

impl LineCount {
    /// The 1-based line of a record the csv reader says starts at `byte` (it may say so at the
    /// line feed of a blank line it then skipped: a record never starts with a line feed).
    fn line_at(&mut self, mut byte: u64) -> (u64, u64) {
        let mut ahead = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            while ahead.front().is_some_and(|&f| f < byte) {
                ahead.pop_front();
                self.passed += 1;
            }
            if ahead.front() == Some(&byte) {
                byte += 1;
            } else {
                return (self.passed + 1, byte);
            }
        }
    }
}

/// Reads one file of an export: its header checked against the entity, its records in chunks for the validators, each with the line it starts on.
pub struct FileReader<R: Read> {
    csv: csv::Reader<LineFeeds<R>>,
    lines: LineCount,
    /// The header's column names as written (trimmed, without a byte-order mark).
    header: Vec<String>,
    validator: RowValidator,
    warnings: Vec<String>,
    rows_read: u64,
    rows_rejected: u64,
}

/// The header's column names, trimmed, without a byte-order mark; a blank first line is
/// skipped, as the csv crate skips blank lines. An empty file has none.
fn read_header<R: Read>(
    csv: &mut csv::Reader<LineFeeds<R>>,
    file: &str,
    header_error: &impl Fn(String, Option<String>) -> FileError,
) -> Result<Vec<String>, FileError> {
    let mut header = ByteRecord::new();
    let io = |e: csv::Error| FileError::Io {
        file: file.to_string(),
        source: e.into(),
    };
    let has_header = csv.read_byte_record(&mut header).map_err(io)?;
    let has_header = has_header
        && (end_of_line(&mut header, &mut Vec::new()) || {
            let mut more = true;
            while more {
                more = csv.read_byte_record(&mut header).map_err(io)?;
                if more && end_of_line(&mut header, &mut Vec::new()) {
                    break;
                }
            }
            more
        });
    if !has_header {
        return Err(header_error(
            "the file is empty: expected a header row naming the columns".into(),
            None,
        ));
    }
    let mut names = Vec::with_capacity(header.len());
    for (i, raw) in header.iter().enumerate() {
        let raw = if i == 0 {
            raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw)
        } else {
            raw
        };
        let name = std::str::from_utf8(raw)
            .map_err(|_| header_error(format!("header column {} is not valid UTF-8", i + 1), None))?
            .trim()
            .to_string();
        names.push(name);
    }
    Ok(names)
}

/// Where each of the entity's columns is in the header, and a warning for each column the
/// contract does not know; a column named twice or a required column missing is refused.
fn column_positions(
    entity: Entity,
    names: &[String],
    file: &str,
    header_error: &impl Fn(String, Option<String>) -> FileError,
) -> Result<(Vec<Option<usize>>, Vec<String>), FileError> {
    let columns = entity.columns();
    let mut positions = vec![None; columns.len()];
    let mut warnings = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match entity.column_index(name) {
            Some(c) if positions[c].is_some() => {
                return Err(header_error(
                    format!("column {name:?} appears twice in the header"),
                    Some(name.clone()),
                ));
            }
            Some(c) => positions[c] = Some(i),
            None => warnings.push(format!(
                "{file}: unknown column {name:?} (column {}) is ignored",
                i + 1
            )),
        }
    }
    let missing: Vec<&str> = columns
        .iter()
        .zip(&positions)
        .filter(|(c, p)| c.required && p.is_none())
        .map(|(c, _)| c.name)
        .collect();
    if !missing.is_empty() {
        let expected: Vec<&str> = columns.iter().map(|c| c.name).collect();
        return Err(header_error(
            format!(
                "required column{} {} missing from the header (expected columns: {})",
                if missing.len() > 1 { "s" } else { "" },
                missing.join(", "),
                expected.join(", ")
            ),
            Some(missing.join(", ")),
        ));
    }
    Ok((positions, warnings))
}

impl RowValidator {
    /// A validator of the entity's rows, its columns at these positions of a file's records.
    fn for_columns(
        entity: Entity,
        file: String,
        header_len: usize,
        positions: Vec<Option<usize>>,
    ) -> RowValidator {
        let columns = entity.columns();
        let key_positions = entity
            .key()
            .iter()
            .map(|k| entity.column_index(k).expect("key column"))
            .collect();
        let rule_column = |pick: fn(&Rule) -> Option<&'static str>| -> Vec<Option<usize>> {
            columns
                .iter()
                .map(|c| pick(&c.rule).and_then(|other| entity.column_index(other)))
                .collect()
        };
        RowValidator {
            entity,
            file,
            header_len,
            positions,
            key_positions,
            not_before: rule_column(|r| match r {
                Rule::NotBefore(other) => Some(*other),
                _ => None,
            }),
            not_more_than: rule_column(|r| match r {
                Rule::NotMoreThan(other) => Some(*other),
                _ => None,
            }),
            parsed: vec![Parsed::Null; columns.len()],
            builders: columns.iter().map(|c| Builder::new(c.ty)).collect(),
            rows_in_batch: 0,
            last_valid: vec![(Vec::new(), Parsed::Null); columns.len()],
            // References and dates: the values an order's lines (a partner's requests, a
            // survey round's surveys) share. A check of a value depends on nothing but the value
            // (and the ids known, fixed while a file is read), so a repeated valid value is
            // valid again.
            repeats: columns
                .iter()
                .map(|c| {
                    matches!(c.rule, Rule::References(_) | Rule::ValueOf(..))
                        || c.ty == ColumnType::Date
                })
                .collect(),
            key_bytes: Vec::new(),
        }
    }
}

impl<R: Read> FileReader<R> {
    /// Reads and checks the header. A header that lacks a required column, names a column
    /// twice, or is absent (an empty file) makes the whole file unreadable.
    pub fn new(entity: Entity, file: impl Into<String>, reader: R) -> Result<Self, FileError> {
        let file = file.into();
        // Records end at a line feed only, and a carriage return before it is taken off the
        // last field here (`end_of_line`): the csv crate counts a CRLF's line one record late,
        // which put every rejection of a file Excel wrote one line too early.
        let ahead = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
        let lines = LineCount {
            ahead: ahead.clone(),
            passed: 0,
        };
        let reader = LineFeeds {
            inner: reader,
            offset: 0,
            ahead,
        };
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .terminator(csv::Terminator::Any(b'\n'))
            // A megabyte at a time straight from the file (an 8 KiB buffer over a buffered
            // file copied every byte once more) and scanned for line feeds in one go.
            .buffer_capacity(1 << 20)
            .from_reader(reader);
        let header_error = |reason: String, column: Option<String>| {
            FileError::Rejected(Rejection {
                file: file.clone(),
                line: 1,
                column_number: None,
                column,
                value: None,
                reason,
            })
        };
        let names = read_header(&mut csv, &file, &header_error)?;
        let (positions, warnings) = column_positions(entity, &names, &file, &header_error)?;
        let validator = RowValidator::for_columns(entity, file, names.len(), positions);
        Ok(FileReader {
            csv,
            lines,
            header: names,
            validator,
            warnings,
            rows_read: 0,
            rows_rejected: 0,
        })
    }

    /// The file's column names, as written.
    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// Where the entity's first key column is in the file's records.
    pub fn key_position(&self) -> usize {
        self.validator.positions[self.validator.key_positions[0]].expect("key columns are required")
    }

    /// The entity the file holds.
    pub fn entity(&self) -> Entity {
        self.validator.entity
    }

    /// A validator for another thread, with this file's header.
    pub fn validator(&self) -> RowValidator {
        self.validator.clone()
    }

    /// Warnings about the header (unknown columns), for the load report.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Bytes of the file consumed so far, for progress.
    pub fn bytes_read(&self) -> u64 {
        self.csv.position().byte()
    }

    /// Data rows read so far, rejected or not.
    pub fn rows_read(&self) -> u64 {
        self.rows_read
    }

    /// Rows rejected so far.
    pub fn rows_rejected(&self) -> u64 {
        self.rows_rejected
    }

    /// Counts rows rejected by validators on other threads.
    pub fn add_rejected(&mut self, n: u64) {
        self.rows_rejected += n;
    }

    /// Reads up to `records.len()` raw records into `records` (reusing their buffers); returns
    /// how many were read (0 at the end of the file).
    pub fn read_chunk(&mut self, records: &mut [ByteRecord]) -> Result<usize, FileError> {
        let mut n = 0;
        let mut scratch = Vec::new();
        for r in records.iter_mut() {
            let more = loop {
                let more = self.csv.read_byte_record(r).map_err(|e| FileError::Io {
                    file: self.validator.file.clone(),
                    source: e.into(),
                })?;
                // A blank line ending in CRLF is skipped, as the csv crate skips a blank LF line.
                if !more || end_of_line(r, &mut scratch) {
                    break more;
                }
            };
            if !more {
                break;
            }
            // The line as an editor shows it, counted from the bytes.
            if let Some(p) = r.position().cloned() {
                let (line, byte) = self.lines.line_at(p.byte());
                let mut exact = csv::Position::new();
                exact.set_byte(byte).set_line(line).set_record(p.record());
                r.set_position(Some(exact));
            }
            n += 1;
        }
        self.rows_read += n as u64;
        Ok(n)
    }
}

/// Takes the carriage return of a CRLF line ending off a record's last field (records end at
/// the line feed); returns false when the record is a blank line. A carriage return inside a
/// quoted field stays: only the one right before the line feed is the line ending.
fn end_of_line(record: &mut ByteRecord, scratch: &mut Vec<u8>) -> bool {
    let Some(last) = record.len().checked_sub(1) else {
        return false;
    };
    if let Some(field) = record.get(last).and_then(|f| f.strip_suffix(b"\r")) {
        scratch.clear();
        scratch.extend_from_slice(field);
        // The position is the record's, which truncating and pushing keeps.
        let position = record.position().cloned();
        record.truncate(last);
        record.push_field(scratch);
        record.set_position(position);
    }
    !(record.len() == 1 && record[0].is_empty())
}

fn parse_field(
    entity: Entity,
    column: &Column,
    raw: &[u8],
    known: &dyn KnownIds,
) -> Result<Parsed, String> {
    if raw.is_empty() {
        return if column.required {
            Err(format!("{} is required but empty", column.name))
        } else {
            Ok(Parsed::Null)
        };
    }
    let text = std::str::from_utf8(raw).map_err(|e| {
        format!(
            "not valid UTF-8 (invalid byte at offset {} of the field)",
            e.valid_up_to()
        )
    })?;
    let value = match column.ty {
        ColumnType::Text => Parsed::Text,
        ColumnType::Date => Parsed::Date(values::parse_date(text)?),
        ColumnType::Timestamp => Parsed::Timestamp(values::parse_timestamp(text)?),
        ColumnType::Money => Parsed::Money(values::parse_money(text)?),
        ColumnType::Integer => Parsed::Integer(values::parse_integer(text)?),
        ColumnType::Bool => Parsed::Bool(values::parse_bool(text)?),
    };
    checked(entity, column, text, value, known)
}

/// A parsed value held to its column's rule (a range, a set of values, a reference to a row
/// of another file); an error says which rule and the value found.
#[inline]
fn checked(
    entity: Entity,
    column: &Column,
    text: &str,
    value: Parsed,
    known: &dyn KnownIds,
) -> Result<Parsed, String> {
    match (column.rule, value) {
        (Rule::None | Rule::NotBefore(_), v) => Ok(v),
        (Rule::NotMoreThan(_), Parsed::Money(m)) if m < 0 => Err(format!(
            "{} must not be negative, found {text}",
            column.name
        )),
        (Rule::ValueOf(target, attribute), v) => {
            if known.has_value(target, attribute, text) {
                Ok(v)
            } else {
                Err(format!(
                    "unknown {}: {text:?} is the {attribute} of no row in this export's {} nor in the warehouse",
                    column.name,
                    target.file_name()
                ))
            }
        }
        (Rule::OneOf(allowed), _) => allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(text))
            .map(|a| Parsed::Canonical(a))
            .ok_or_else(|| {
                format!(
                    "{} must be one of {}, found {text:?}",
                    column.name,
                    allowed.join(", ")
                )
            }),
        (Rule::Range(lo, hi), Parsed::Integer(i)) if i < lo || i > hi => Err(format!(
            "{} must be between {lo} and {hi}, found {i}",
            column.name
        )),
        (Rule::Positive, Parsed::Integer(i)) if i <= 0 => Err(format!(
            "{} must be greater than 0, found {i}{}",
            column.name,
            if entity == Entity::Orders {
                " (a return is a line with negative revenue, not negative quantity)"
            } else {
                ""
            }
        )),
        (Rule::NonNegative, Parsed::Money(m)) if m < 0 => Err(format!(
            "{} must not be negative, found {text}",
            column.name
        )),
        (Rule::References(target), v) => match known.lookup(target, text) {
            IdStatus::Known => Ok(v),
            IdStatus::Rejected => Err(format!(
                "{} {text:?} refers to a row of {} that was rejected",
                column.name,
                target.file_name()
            )),
            IdStatus::Unknown => Err(format!(
                "unknown {}: {text:?} is neither in this export's {} nor in the warehouse",
                column.name,
                target.file_name()
            )),
        },
        (_, v) => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Date32Array};

    /// Knows partner P-1, customers C-1 and C-2, products PR-1 and PR-2.
    struct Known;

    impl KnownIds for Known {
        fn lookup(&self, entity: Entity, id: &str) -> IdStatus {
            let known: &[&str] = match entity {
                Entity::Partners => &["P-1"],
                Entity::Customers => &["C-1", "C-2"],
                Entity::Products => &["PR-1", "PR-2"],
                _ => &[],
            };
            if known.contains(&id) {
                IdStatus::Known
            } else {
                IdStatus::Unknown
            }
        }
        fn has_value(&self, _: Entity, _: &str, _: &str) -> bool {
            false
        }
    }

    /// Rows repeat the values of the row before them (an order's lines) and alternate: a value
    /// kept from an earlier row must give that row's answer, a valid value parsed as the first
    /// time, an unknown id or a bad date rejected every time it comes.
    #[test]
    fn a_value_repeated_from_the_row_before_is_checked_as_the_first_time() {
        let csv = "order_id,line_number,partner_id,customer_id,product_id,order_date,quantity,revenue,cost\n\
            O-1,1,P-1,C-1,PR-1,2024-03-01,1,10.00,5.00\n\
            O-1,2,P-1,C-1,PR-1,2024-03-01,2,20.00,\n\
            O-2,1,P-1,C-9,PR-2,2024-03-02,1,30.00,\n\
            O-2,2,P-1,C-9,PR-2,2024-03-02,1,40.00,\n\
            O-3,1,P-1,C-2,PR-2,2024-02-30,1,50.00,\n\
            O-3,2,P-1,C-2,PR-2,2024-02-30,1,60.00,\n\
            O-4,1,P-1,C-1,PR-1,2024-03-02,1,70.00,\n\
            O-4,2,,C-1,PR-1,2024-03-01,1,80.00,\n";
        let mut reader = FileReader::new(Entity::Orders, "orders.csv", csv.as_bytes()).unwrap();
        let mut records = vec![ByteRecord::new(); 16];
        let n = reader.read_chunk(&mut records).unwrap();
        assert_eq!(n, 8);
        let chunk = reader.validator().validate_chunk(&records[..n], &Known);
        // Rows 2 and 3: an unknown customer; rows 4 and 5: no such day; lines 4 to 7.
        let rejected: Vec<(usize, u64, &str)> = chunk
            .rejected
            .iter()
            .flat_map(|(i, faults)| {
                faults
                    .iter()
                    .map(move |f| (*i, f.line, f.column.as_deref().unwrap_or("")))
            })
            .collect();
        assert_eq!(
            rejected,
            vec![
                (2, 4, "customer_id"),
                (3, 5, "customer_id"),
                (4, 6, "order_date"),
                (5, 7, "order_date"),
            ]
        );
        let batch = chunk.batch.expect("four valid rows");
        let dates: &Date32Array = batch.column(5).as_primitive();
        // 2024-03-01 is day 19,783 since 1970-01-01 (54 years with 13 leap days, and 60 days).
        assert_eq!(
            dates.values().to_vec(),
            vec![19_783, 19_783, 19_784, 19_783]
        );
        let partners = batch.column(2).as_string::<i32>();
        let partners: Vec<Option<&str>> = partners.iter().collect();
        assert_eq!(partners, vec![Some("P-1"), Some("P-1"), Some("P-1"), None]);
        // Keys are digested apart, and alike for the same key.
        let digests: HashSet<u128> = chunk.keys.iter().map(|(d, _)| *d).collect();
        assert_eq!(digests.len(), 4);
        assert_eq!(
            chunk.keys.iter().map(|(_, i)| *i).collect::<Vec<_>>(),
            vec![0, 1, 6, 7]
        );
    }
}
