//! Exports in another layout — a Salesforce data export, a Dynamics one — read through a
//! mapping file: which file holds each entity, which column (of that file, or of a file joined
//! to it by a key) each field comes from, value maps (stage names, tiers, priorities), date and
//! timestamp formats, and a default when a field is missing or empty.
//!
//! The mapped export is written in the contract's layout into a folder of the caller's, which
//! the loader then validates like any export; every fault — of the mapping (a stage the value
//! map does not know, a date not in the format) or of the contract (a quantity below zero) — is
//! located in the original file, line and column by the [`Locator`] the mapping leaves.
//!
//! ```yaml
//! formats: { timestamp: "%Y-%m-%dT%H:%M:%S%.fZ" }
//! entities:
//!   partners:
//!     file: Account.csv
//!     keep: { IsPartner: "true" }
//!     fields:
//!       partner_id: Id
//!       tier: { column: Partner_Tier__c, default: Registered }
//!   orders:
//!     file: OrderItem.csv
//!     join: { order: { file: Order.csv, key: Id, on: OrderId } }
//!     fields:
//!       order_date: order.EffectiveDate
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::entity::{ColumnType, Entity};
use crate::reader::Rejection;

/// A mapping that cannot be used, or an export the mapping cannot read.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    /// The mapping file itself: its syntax, an entity or field the contract lacks, a required
    /// field it does not give, a join that names nothing.
    #[error("{0}")]
    Invalid(String),
    /// Rows of the export the mapping cannot turn into the contract's: each located in the
    /// original file. Nothing was loaded.
    #[error("{} row(s) of the export cannot be mapped", .0.len())]
    Rejected(Vec<Rejection>),
    /// A file or the database could not be read.
    #[error("{0}")]
    Io(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    #[serde(default)]
    formats: Formats,
    entities: BTreeMap<String, RawEntity>,
}

/// How the export writes days and times, as chrono formats (`%d/%m/%Y`); a field may say its own.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Formats {
    date: Option<String>,
    timestamp: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntity {
    /// The export's file holding the entity's rows; or, reading a database (`--from`), the
    /// `query` whose rows they are, or the `table`.
    #[serde(flatten)]
    from: From,
    /// Only the rows whose columns have these values (`IsPartner: "true"`).
    #[serde(default)]
    keep: BTreeMap<String, String>,
    /// Other files joined by a key: `alias: { file, key, on }`, the first row whose `key`
    /// equals this row's `on` (a column, or `alias.Column` of an earlier join).
    #[serde(default)]
    join: BTreeMap<String, Join>,
    fields: BTreeMap<String, RawField>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Join {
    #[serde(flatten)]
    from: From,
    key: String,
    on: String,
}

/// An entity's mapping resolved against its files (see `Mapping::plan`).
struct EntityPlan<'m> {
    source: Table,
    joins: Vec<JoinPlan>,
    fields: Vec<FieldPlan>,
    /// Column positions and the values rows must have there.
    keep: Vec<(usize, &'m String)>,
}

/// A joined file: its rows, the first row of each key, and where a row's key is read: a
/// column of the entity's file (`None`) or of an earlier join (its index).
struct JoinPlan {
    alias: String,
    table: Table,
    index: HashMap<String, usize>,
    on: (Option<usize>, usize),
}

/// A contract field: how it is mapped, where it is read (the file: 0 the entity's, i + 1 the
/// i-th join; the column's name and position there), and its contract type.
struct FieldPlan {
    name: &'static str,
    field: Field,
    at: Option<(usize, String, Option<usize>)>,
    ty: ColumnType,
}

impl EntityPlan<'_> {
    /// The row each join finds for a row of the entity's file, in join order.
    fn joined(&self, row: &[String]) -> Vec<Option<usize>> {
        let mut found: Vec<Option<usize>> = Vec::with_capacity(self.joins.len());
        for j in &self.joins {
            let key = match j.on {
                (None, p) => Some(&row[p]),
                (Some(i), p) => found[i].map(|r| &self.joins[i].table.rows[r].1[p]),
            };
            found.push(key.and_then(|k| j.index.get(k).copied()));
        }
        found
    }
}

/// Where rows are read: a file of the export, or a database's query or table.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct From {
    /// A CSV file of the export folder, with a header row.
    pub file: Option<String>,
    /// A query of the database whose columns are the names the fields name.
    pub query: Option<String>,
    /// A table of the database: every row and column.
    pub table: Option<String>,
}

impl From {
    /// How messages name it: the file, `query of ENTITY`, or the table.
    pub fn name(&self, entity: &str) -> String {
        match (&self.file, &self.query, &self.table) {
            (Some(f), _, _) => f.clone(),
            (None, Some(_), _) => format!("the query of {entity}"),
            (None, None, Some(t)) => format!("table {t}"),
            _ => String::new(),
        }
    }

    fn problem(&self) -> Option<&'static str> {
        match (
            self.file.is_some(),
            self.query.is_some(),
            self.table.is_some(),
        ) {
            (true, false, false) | (false, true, false) | (false, false, true) => None,
            (false, false, false) => Some("says neither `file`, `query` nor `table`"),
            _ => Some("says more than one of `file`, `query` and `table`"),
        }
    }
}

/// Where a mapping's rows come from: the files of an export folder, or a database.
pub trait Source {
    /// The rows of `from`, which messages call `name`.
    fn read(&mut self, from: &From, name: &str) -> Result<Table, MappingError>;
}

/// The CSV files of an export folder.
pub struct Folder<'a>(pub &'a Path);

impl Source for Folder<'_> {
    fn read(&mut self, from: &From, name: &str) -> Result<Table, MappingError> {
        match &from.file {
            Some(file) => Table::read(&self.0.join(file), file),
            None => Err(MappingError::Invalid(format!(
                "{name}: a query or a table is read from a database: give `--from postgres://...`"
            ))),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawField {
    Column(String),
    Full(Field),
}

/// Where a field's value comes from and how it is turned into the contract's.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Field {
    /// A column of the entity's file, or `alias.Column` of a joined one.
    column: Option<String>,
    /// A constant instead of a column.
    value: Option<String>,
    /// The export's values as the contract's (`"Proposal/Price Quote": Proposal`).
    #[serde(default)]
    values: BTreeMap<String, String>,
    /// The contract's value for an export value the map does not list; without it, such a
    /// value is a fault.
    other: Option<String>,
    /// The value when the column is missing from the file or the cell is empty.
    default: Option<String>,
    /// The chrono format the column's days or times are written in.
    format: Option<String>,
}

/// A mapping file, read and checked against the contract.
pub struct Mapping {
    file: String,
    formats: Formats,
    entities: Vec<(Entity, RawEntity)>,
}

/// Where each row and field of a mapped file came from, to locate a fault in the original.
#[derive(Debug, Default)]
pub struct Locator {
    files: HashMap<String, MappedFile>,
}

#[derive(Debug)]
struct MappedFile {
    /// The entity's own file in the export.
    source: String,
    /// Each written row: its first line in the mapped file, its line in the source file, and
    /// the line of the row each join found (0: none).
    rows: Vec<(u64, u64, Vec<u64>)>,
    /// Each contract column: the file (0 the entity's, i + 1 the i-th join), the column's name
    /// and 1-based position there, or `None` for a constant.
    columns: HashMap<String, Option<(usize, String, Option<usize>)>>,
    /// The joined files, in join order.
    joins: Vec<String>,
}

impl Locator {
    /// The original file a contract file (`orders.csv`) was mapped from.
    pub fn source_of(&self, contract_file: &str) -> Option<&str> {
        self.files.get(contract_file).map(|m| m.source.as_str())
    }

    /// A fault found in a mapped file, located in the original export instead.
    pub fn locate(&self, r: &Rejection) -> Rejection {
        let Some(m) = self.files.get(&r.file) else {
            return r.clone();
        };
        let mut out = Rejection {
            file: m.source.clone(),
            ..r.clone()
        };
        let row = m
            .rows
            .binary_search_by_key(&r.line, |(line, _, _)| *line)
            .ok()
            .map(|i| &m.rows[i]);
        if let Some((_, source_line, joined)) = row {
            out.line = *source_line;
            if let Some(Some((file, name, position))) =
                r.column.as_ref().and_then(|c| m.columns.get(c))
            {
                if *file > 0 {
                    out.file = m.joins[file - 1].clone();
                    out.line = joined[file - 1];
                }
                out.column = Some(format!("{name} (as {})", r.column.as_deref().unwrap_or("")));
                out.column_number = *position;
            } else if r.column.is_some() {
                out.column = Some(format!(
                    "{} (a constant of the mapping)",
                    r.column.as_deref().unwrap_or("")
                ));
                out.column_number = None;
            }
        }
        out
    }
}

impl Mapping {
    /// Reads and checks a mapping file: its entities and fields are the contract's, and every
    /// required field of an entity it maps is given.
    pub fn read(path: &Path) -> Result<Mapping, MappingError> {
        let file = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| MappingError::Io(format!("{file}: {e}")))?;
        Mapping::parse(&file, &text)
    }

    /// [`Mapping::read`] of a text, `file` naming it in messages.
    pub fn parse(file: &str, text: &str) -> Result<Mapping, MappingError> {
        let raw: RawMapping = serde_norway::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}", l.line()))
                .unwrap_or_default();
            MappingError::Invalid(format!("{file}{at}: {e}"))
        })?;
        let mut problems = Vec::new();
        let mut entities = Vec::new();
        for (name, e) in raw.entities {
            let Some(entity) = Entity::from_name(&name) else {
                let names: Vec<&str> = Entity::ALL.iter().map(|e| e.name()).collect();
                problems.push(format!(
                    "entities.{name}: not an entity of the contract (one of {})",
                    names.join(", ")
                ));
                continue;
            };
            for field in e.fields.keys() {
                if entity.column_index(field).is_none() {
                    let columns: Vec<&str> = entity.columns().iter().map(|c| c.name).collect();
                    problems.push(format!(
                        "entities.{name}.fields.{field}: not a column of {} (one of {})",
                        entity.file_name(),
                        columns.join(", ")
                    ));
                }
            }
            for c in entity.columns().iter().filter(|c| c.required) {
                if !e.fields.contains_key(c.name) {
                    problems.push(format!(
                        "entities.{name}.fields: no `{}`, which {} requires",
                        c.name,
                        entity.file_name()
                    ));
                }
            }
            for (field, f) in &e.fields {
                if let RawField::Full(f) = f
                    && f.column.is_none()
                    && f.value.is_none()
                    && f.default.is_none()
                {
                    problems.push(format!(
                        "entities.{name}.fields.{field}: says neither `column`, `value` nor `default`"
                    ));
                }
            }
            if let Err(p) = join_order(&e.join) {
                problems.push(format!("entities.{name}.join: {p}"));
            }
            if let Some(p) = e.from.problem() {
                problems.push(format!("entities.{name}: {p}"));
            }
            for (alias, j) in &e.join {
                if let Some(p) = j.from.problem() {
                    problems.push(format!("entities.{name}.join.{alias}: {p}"));
                }
            }
            entities.push((entity, e));
        }
        if !problems.is_empty() {
            return Err(MappingError::Invalid(
                problems
                    .iter()
                    .map(|p| format!("{file}: {p}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ));
        }
        Ok(Mapping {
            file: file.to_string(),
            formats: raw.formats,
            entities,
        })
    }

    /// Writes the export in `export_dir` into `out_dir` in the contract's layout. A contract
    /// file the mapping does not name (surveys kept in the contract's own layout) is copied as
    /// it is. Every row the mapping cannot read is a fault located in the original file.
    pub fn apply(&self, export_dir: &Path, out_dir: &Path) -> Result<Locator, MappingError> {
        self.apply_from(&mut Folder(export_dir), Some(export_dir), out_dir)
    }

    /// [`Mapping::apply`] reading from any source (a database); a contract file the mapping
    /// does not name is copied from `export_dir` when one is given.
    pub fn apply_from(
        &self,
        source: &mut dyn Source,
        export_dir: Option<&Path>,
        out_dir: &Path,
    ) -> Result<Locator, MappingError> {
        let io =
            |p: &Path, e: &dyn std::fmt::Display| MappingError::Io(format!("{}: {e}", p.display()));
        std::fs::create_dir_all(out_dir).map_err(|e| io(out_dir, &e))?;
        let mut locator = Locator::default();
        let mut faults = Vec::new();
        for entity in Entity::ALL {
            let target = out_dir.join(entity.file_name());
            match self.entities.iter().find(|(e, _)| *e == entity) {
                Some((_, spec)) => {
                    let mapped = self.map_entity(entity, spec, source, &target, &mut faults)?;
                    locator.files.insert(entity.file_name(), mapped);
                }
                None => {
                    let Some(dir) = export_dir else { continue };
                    let own = dir.join(entity.file_name());
                    if own.is_file() {
                        std::fs::copy(&own, &target).map_err(|e| io(&own, &e))?;
                    }
                }
            }
        }
        if faults.is_empty() {
            Ok(locator)
        } else {
            Err(MappingError::Rejected(faults))
        }
    }

    fn map_entity(
        &self,
        entity: Entity,
        spec: &RawEntity,
        rows_from: &mut dyn Source,
        target: &Path,
        faults: &mut Vec<Rejection>,
    ) -> Result<MappedFile, MappingError> {
        let plan = self.plan(entity, spec, rows_from)?;
        let mut writer = csv::Writer::from_path(target)
            .map_err(|e| MappingError::Io(format!("{}: {e}", target.display())))?;
        let header: Vec<&str> = plan.fields.iter().map(|f| f.name).collect();
        writer
            .write_record(&header)
            .map_err(|e| MappingError::Io(e.to_string()))?;
        let mut line = 2u64;
        let mut rows = Vec::new();
        for (source_line, row) in &plan.source.rows {
            if !plan.keep.iter().all(|(p, v)| row[*p] == **v) {
                continue;
            }
            let found = plan.joined(row);
            let Some(record) = self.map_row(&plan, *source_line, row, &found, faults) else {
                continue;
            };
            writer
                .write_record(&record)
                .map_err(|e| MappingError::Io(e.to_string()))?;
            let joined = found
                .iter()
                .zip(&plan.joins)
                .map(|(r, j)| r.map_or(0, |r| j.table.rows[r].0))
                .collect();
            rows.push((line, *source_line, joined));
            // A value with a line break is one quoted field over several lines.
            line += 1 + record
                .iter()
                .map(|v| v.matches('\n').count() as u64)
                .sum::<u64>();
        }
        writer
            .flush()
            .map_err(|e| MappingError::Io(e.to_string()))?;
        Ok(MappedFile {
            columns: plan
                .fields
                .iter()
                .map(|f| {
                    let at =
                        f.at.as_ref()
                            .map(|(i, c, p)| (*i, c.clone(), p.map(|p| p + 1)));
                    (f.name.to_string(), at)
                })
                .collect(),
            joins: plan.joins.iter().map(|j| j.table.name.clone()).collect(),
            source: plan.source.name,
            rows,
        })
    }

    /// An entity's mapping resolved against its files once: the rows read, each join indexed
    /// by key, each field's column found, the `keep` columns found. A column the mapping names
    /// and a file lacks is refused here, before any row.
    fn plan<'m>(
        &self,
        entity: Entity,
        spec: &'m RawEntity,
        rows_from: &mut dyn Source,
    ) -> Result<EntityPlan<'m>, MappingError> {
        let spec_file = spec.from.name(entity.name());
        let source = rows_from.read(&spec.from, &spec_file)?;
        let joins = self.join_plans(entity, spec, rows_from, &source, &spec_file)?;
        let fields = self.field_plans(entity, spec, &source, &spec_file, &joins)?;
        let keep = spec
            .keep
            .iter()
            .map(|(c, v)| {
                source
                    .position(c)
                    .map(|p| (p, v))
                    .ok_or_else(|| self.missing(entity, "keep", &spec_file, c))
            })
            .collect::<Result<_, _>>()?;
        Ok(EntityPlan {
            source,
            joins,
            fields,
            keep,
        })
    }

    /// A column a mapping names that its file lacks, said with where the mapping names it.
    fn missing(&self, entity: Entity, what: &str, file: &str, column: &str) -> MappingError {
        MappingError::Invalid(format!(
            "{}: entities.{}.{what}: {file} has no column `{column}`",
            self.file,
            entity.name()
        ))
    }

    /// Each join's rows read and indexed by key, in an order where `on` names only earlier
    /// joins (or the entity's own file).
    fn join_plans(
        &self,
        entity: Entity,
        spec: &RawEntity,
        rows_from: &mut dyn Source,
        source: &Table,
        spec_file: &str,
    ) -> Result<Vec<JoinPlan>, MappingError> {
        let missing =
            |what: &str, file: &str, column: &str| self.missing(entity, what, file, column);
        let order = join_order(&spec.join).map_err(MappingError::Invalid)?;
        let mut joins: Vec<JoinPlan> = Vec::new();
        for alias in &order {
            let j = &spec.join[alias];
            let name = j.from.name(&format!("{}.join.{alias}", entity.name()));
            let table = rows_from.read(&j.from, &name)?;
            let key = table
                .position(&j.key)
                .ok_or_else(|| missing(&format!("join.{alias}"), &name, &j.key))?;
            let on = match j.on.split_once('.') {
                Some((a, c)) if spec.join.contains_key(a) => {
                    let i = joins.iter().position(|x| x.alias == *a).expect("ordered");
                    let p = joins[i].table.position(c);
                    (
                        Some(i),
                        p.ok_or_else(|| {
                            missing(&format!("join.{alias}.on"), &joins[i].table.name, c)
                        })?,
                    )
                }
                _ => (
                    None,
                    source
                        .position(&j.on)
                        .ok_or_else(|| missing(&format!("join.{alias}.on"), spec_file, &j.on))?,
                ),
            };
            let mut index = HashMap::new();
            for (i, row) in table.rows.iter().enumerate() {
                index.entry(row.1[key].clone()).or_insert(i);
            }
            joins.push(JoinPlan {
                alias: alias.clone(),
                table,
                index,
                on,
            });
        }
        Ok(joins)
    }

    /// Each contract field the mapping gives, with the file and column it is read from; a
    /// column no file has is refused unless the field has a `default`.
    fn field_plans(
        &self,
        entity: Entity,
        spec: &RawEntity,
        source: &Table,
        spec_file: &str,
        joins: &[JoinPlan],
    ) -> Result<Vec<FieldPlan>, MappingError> {
        let mut fields = Vec::new();
        for column in entity
            .columns()
            .iter()
            .filter(|c| spec.fields.contains_key(c.name))
        {
            let field = match &spec.fields[column.name] {
                RawField::Column(c) => Field {
                    column: Some(c.clone()),
                    ..Field::default()
                },
                RawField::Full(f) => f.clone(),
            };
            let at = field.column.as_ref().map(|c| match c.split_once('.') {
                Some((alias, col)) if spec.join.contains_key(alias) => {
                    let i = joins.iter().position(|j| j.alias == alias).expect("joined");
                    (i + 1, col.to_string(), joins[i].table.position(col))
                }
                _ => (0, c.clone(), source.position(c)),
            });
            if let Some((file, col, None)) = &at
                && field.default.is_none()
            {
                let file = match file {
                    0 => spec_file,
                    i => &joins[i - 1].table.name,
                };
                return Err(MappingError::Invalid(format!(
                    "{}: entities.{}.fields.{}: {file} has no column `{col}` (give a `default` when the export may lack it)",
                    self.file,
                    entity.name(),
                    column.name
                )));
            }
            fields.push(FieldPlan {
                name: column.name,
                field,
                at,
                ty: column.ty,
            });
        }
        Ok(fields)
    }

    /// One row in the contract's form, or `None` with its faults added, each located in the
    /// file (the entity's or a joined one) its value came from.
    fn map_row(
        &self,
        plan: &EntityPlan<'_>,
        source_line: u64,
        row: &[String],
        found: &[Option<usize>],
        faults: &mut Vec<Rejection>,
    ) -> Option<Vec<String>> {
        let mut record = Vec::with_capacity(plan.fields.len());
        let mut ok = true;
        for f in &plan.fields {
            // The file, line and row the value is read from; none for a constant or a join
            // that found nothing.
            let from = match &f.at {
                None => None,
                Some((0, _, _)) => Some((&plan.source, source_line, row)),
                Some((i, _, _)) => found[i - 1].map(|r| {
                    let t = &plan.joins[i - 1].table;
                    (t, t.rows[r].0, t.rows[r].1.as_slice())
                }),
            };
            let position = f.at.as_ref().and_then(|(_, _, p)| *p);
            let raw = match (from, position) {
                (Some((_, _, values)), Some(p)) => values[p].as_str(),
                _ => "",
            };
            match self.value(&f.field, raw, f.ty) {
                Ok(v) => record.push(v),
                Err(reason) => {
                    ok = false;
                    let (file, line) =
                        from.map_or((&plan.source.name, source_line), |(t, l, _)| (&t.name, l));
                    let column = f.at.as_ref().map_or(f.name, |(_, c, _)| c.as_str());
                    faults.push(Rejection {
                        file: file.clone(),
                        line,
                        column_number: position.map(|p| p + 1),
                        column: Some(format!("{column} (as {})", f.name)),
                        value: Some(raw.to_string()),
                        reason,
                    });
                }
            }
        }
        ok.then_some(record)
    }

    /// One field's value in the contract's form, or why it cannot be.
    fn value(&self, field: &Field, raw: &str, ty: ColumnType) -> Result<String, String> {
        let raw = raw.trim();
        let given = match (&field.value, raw.is_empty()) {
            (Some(constant), _) => constant.clone(),
            (None, true) => return Ok(field.default.clone().unwrap_or_default()),
            (None, false) => raw.to_string(),
        };
        let mapped = if field.values.is_empty() {
            given
        } else {
            match (field.values.get(&given), &field.other) {
                (Some(v), _) => v.clone(),
                (None, Some(other)) => other.clone(),
                (None, None) => {
                    let known: Vec<&str> = field.values.keys().map(String::as_str).collect();
                    return Err(format!(
                        "`{given}` is not a value the mapping knows ({}); add it to `values` or give `other`",
                        known.join(", ")
                    ));
                }
            }
        };
        let format = field.format.as_ref().or(match ty {
            ColumnType::Date => self.formats.date.as_ref(),
            ColumnType::Timestamp => self.formats.timestamp.as_ref(),
            _ => None,
        });
        match (ty, format) {
            (ColumnType::Date | ColumnType::Timestamp, Some(f)) => moment(&mapped, f, ty),
            _ => Ok(mapped),
        }
    }
}

/// A day or a time written in `format`, as the contract writes it.
fn moment(value: &str, format: &str, ty: ColumnType) -> Result<String, String> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
    let time = DateTime::parse_from_str(value, format)
        .map(|t| t.with_timezone(&Utc).naive_utc())
        .or_else(|_| NaiveDateTime::parse_from_str(value, format))
        .ok();
    let day = time
        .map(|t| t.date())
        .or_else(|| NaiveDate::parse_from_str(value, format).ok());
    match (ty, time, day) {
        (ColumnType::Timestamp, Some(t), _) => Ok(t.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string()),
        (ColumnType::Timestamp, None, Some(d)) => Ok(format!("{d}T00:00:00Z")),
        (_, _, Some(d)) => Ok(d.to_string()),
        _ => Err(format!("not written as `{format}`")),
    }
}

/// The joins in an order where each `on` names only the entity's columns or earlier joins.
fn join_order(joins: &BTreeMap<String, Join>) -> Result<Vec<String>, String> {
    let mut order: Vec<String> = Vec::new();
    while order.len() < joins.len() {
        let next = joins.iter().find(|(alias, j)| {
            !order.contains(alias)
                && match j.on.split_once('.') {
                    Some((a, _)) if joins.contains_key(a) => order.iter().any(|o| o == a),
                    _ => true,
                }
        });
        match next {
            Some((alias, _)) => order.push(alias.clone()),
            None => {
                return Err("joins that name each other in a circle".into());
            }
        }
    }
    Ok(order)
}

/// Rows of a source, all in memory: a file's header and rows with their first lines, or a
/// query's columns and rows with their numbers.
pub struct Table {
    name: String,
    header: Vec<String>,
    rows: Vec<(u64, Vec<String>)>,
}

impl Table {
    /// Rows read from elsewhere (a database): `name` for messages, the columns' names, and each
    /// row's values as text (empty for NULL), numbered from 1 for messages.
    pub fn new(name: &str, header: Vec<String>, rows: Vec<Vec<String>>) -> Table {
        Table {
            name: name.to_string(),
            header,
            rows: rows
                .into_iter()
                .enumerate()
                .map(|(i, r)| (i as u64 + 1, r))
                .collect(),
        }
    }

    fn read(path: &Path, name: &str) -> Result<Table, MappingError> {
        let io = |e: &dyn std::fmt::Display| MappingError::Io(format!("{}: {e}", path.display()));
        let mut reader = csv::ReaderBuilder::new()
            .flexible(false)
            .from_path(path)
            .map_err(|e| io(&e))?;
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| io(&e))?
            .iter()
            // A byte-order mark is not part of the first column's name.
            .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
            .collect();
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| io(&e))?;
            let line = record.position().map_or(0, |p| p.line());
            rows.push((line, record.iter().map(str::to_string).collect()));
        }
        Ok(Table {
            name: name.to_string(),
            header,
            rows,
        })
    }

    fn position(&self, column: &str) -> Option<usize> {
        self.header.iter().position(|h| h == column)
    }
}

/// Where the mapped files of a load go: a new folder under `parent`, removed when dropped.
pub struct MappedExport {
    /// The folder holding the export in the contract's layout.
    pub dir: PathBuf,
}

impl MappedExport {
    /// A new empty folder under `parent` (the data folder: the same disk as the warehouse).
    pub fn new(parent: &Path) -> Result<MappedExport, MappingError> {
        remove_stale(parent);
        let dir = parent.join(format!(
            ".mapped-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| MappingError::Io(format!("{}: {e}", dir.display())))?;
        Ok(MappedExport { dir })
    }
}

/// Removes the folders of mapped loads whose process is gone (killed before it could): the
/// folder's name holds its process id.
fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(".mapped-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        // Only where a process's liveness can be seen; elsewhere the folder stays.
        let proc = Path::new("/proc");
        if proc.is_dir() && pid != std::process::id() && !proc.join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for MappedExport {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_key_is_refused() {
        let text = "entities:\n  products:\n    file: P.csv\n    keeep: { A: b }\n    fields: { product_id: Id, product_name: Name, product_line: F }\n";
        let e = Mapping::parse("m.yaml", text)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("keeep"), "{e}");
        let text = "entities:\n  products:\n    file: P.csv\n    query: SELECT 1\n    fields: { product_id: Id, product_name: Name, product_line: F }\n";
        let e = Mapping::parse("m.yaml", text)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            e.contains("more than one of `file`, `query` and `table`"),
            "{e}"
        );
    }

    /// Rows of a database, as a source gives them.
    struct Rows;
    impl Source for Rows {
        fn read(&mut self, from: &From, name: &str) -> Result<Table, MappingError> {
            assert_eq!(from.table.as_deref(), Some("product"));
            Ok(Table::new(
                name,
                vec!["id".into(), "title".into(), "family".into()],
                vec![
                    vec!["A".into(), "Alpha".into(), "cloud".into()],
                    vec!["B".into(), "Beta".into(), "edge".into()],
                ],
            ))
        }
    }

    #[test]
    fn rows_of_a_database_are_mapped_and_faults_named_by_row() {
        let text = "entities:\n  products:\n    table: product\n    fields:\n      product_id: id\n      product_name: title\n      product_line: { column: family, values: { cloud: Cloud } }\n";
        let m = Mapping::parse("m.yaml", text).unwrap();
        let out = std::env::temp_dir().join(format!("prism-mapping-{}", std::process::id()));
        let e = m.apply_from(&mut Rows, None, &out).err().unwrap();
        let MappingError::Rejected(faults) = e else {
            panic!("{e}")
        };
        assert_eq!(faults.len(), 1);
        assert_eq!(
            faults[0].to_string(),
            "table product:2:3 (family (as product_line)): `edge` is not a value the mapping knows (cloud); add it to `values` or give `other`"
        );
        let _ = std::fs::remove_dir_all(out);
    }
}
