//! A day's changes to an export, as a CRM's daily export would send them: new orders after the
//! last one, and corrections to recent order lines (prices, quantities, a line moved to another
//! partner or to a direct sale, a date put right). Loaded on top of the export, they replace the
//! lines whose keys they carry and add the others.

use std::path::{Path, PathBuf};

use chrono::{Days, NaiveDate};
use prism_contract::Entity;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::{GenerateError, GenerateSummary, Out, io, money};

/// What changes to write, and of which export.
#[derive(Clone, Debug)]
pub struct ChangesConfig {
    /// The export the changes apply to (its `orders.csv` is read).
    pub export: PathBuf,
    /// The folder the changes' `orders.csv` is written to.
    pub out: PathBuf,
    /// The changed and new lines together, as a share of the export's order lines (0.01: 1 %),
    /// half of them changed and half new.
    pub share: f64,
    /// The same seed and export give the same changes.
    pub seed: u64,
}

/// How far back from the export's last order date the changed lines are drawn: corrections
/// come to recent orders, as a daily export sends them.
const RECENT_DAYS: u64 = 45;

/// Recent lines held to draw new orders' partners, customers and products from.
const SAMPLE: usize = 20_000;

/// The columns of an order line, by name, in the file's own order.
struct Columns {
    order_id: usize,
    line_number: usize,
    partner_id: usize,
    order_date: usize,
    quantity: usize,
    revenue: usize,
    cost: usize,
}

impl Columns {
    fn of(header: &csv::StringRecord, path: &Path) -> Result<Self, GenerateError> {
        let find = |name: &str| {
            header
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| GenerateError::Io {
                    path: path.into(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("no column {name} in its header"),
                    ),
                })
        };
        Ok(Self {
            order_id: find("order_id")?,
            line_number: find("line_number")?,
            partner_id: find("partner_id")?,
            order_date: find("order_date")?,
            quantity: find("quantity")?,
            revenue: find("revenue")?,
            cost: find("cost")?,
        })
    }
}

/// What the first reading of the export's order lines found.
struct Survey {
    lines: u64,
    recent_lines: u64,
    last_order: u64,
    last_day: NaiveDate,
    /// Recent lines, for new orders to copy their partner, customer and product from.
    sample: Vec<csv::StringRecord>,
}

fn reader(path: &Path) -> Result<csv::Reader<std::fs::File>, GenerateError> {
    csv::ReaderBuilder::new()
        .from_path(path)
        .map_err(|e| io(path, e))
}

fn day_of(record: &csv::StringRecord, c: &Columns) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(record.get(c.order_date)?, "%Y-%m-%d").ok()
}

/// Reads the order lines twice over (for their last day first), keeping a sample of the recent
/// ones: memory stays flat at any size.
fn survey(rng: &mut Pcg64Mcg, path: &Path, c: &Columns) -> Result<Survey, GenerateError> {
    let mut last_day = NaiveDate::MIN;
    let mut last_order = 0u64;
    let mut lines = 0u64;
    for record in reader(path)?.records() {
        let record = record.map_err(|e| io(path, e))?;
        lines += 1;
        if let Some(day) = day_of(&record, c) {
            last_day = last_day.max(day);
        }
        let number = record.get(c.order_id).and_then(|id| {
            id.trim_start_matches(|ch: char| !ch.is_ascii_digit())
                .parse::<u64>()
                .ok()
        });
        last_order = last_order.max(number.unwrap_or(0));
    }
    let since = last_day - Days::new(RECENT_DAYS);
    let mut recent_lines = 0u64;
    let mut sample = Vec::new();
    for record in reader(path)?.records() {
        let record = record.map_err(|e| io(path, e))?;
        if day_of(&record, c).is_some_and(|d| d > since) {
            recent_lines += 1;
            // A reservoir: every recent line equally likely to be held.
            if sample.len() < SAMPLE {
                sample.push(record);
            } else {
                let j = rng.random_range(0..recent_lines) as usize;
                if j < SAMPLE {
                    sample[j] = record;
                }
            }
        }
    }
    Ok(Survey {
        lines,
        recent_lines,
        last_order,
        last_day,
        sample,
    })
}

fn cents(text: &str) -> Option<i64> {
    let negative = text.starts_with('-');
    let (whole, fraction) = text
        .trim_start_matches('-')
        .split_once('.')
        .unwrap_or((text.trim_start_matches('-'), "0"));
    let fraction = format!("{fraction:0<2}");
    let value = whole.parse::<i64>().ok()? * 100 + fraction.get(..2)?.parse::<i64>().ok()?;
    Some(if negative { -value } else { value })
}

/// One recent line corrected: most get a new price, some a larger quantity, some move to
/// another partner or to a direct sale, some an earlier date (which may move them to another
/// month).
fn corrected(
    rng: &mut Pcg64Mcg,
    record: &csv::StringRecord,
    c: &Columns,
    sample: &[csv::StringRecord],
) -> Vec<String> {
    let mut out: Vec<String> = record.iter().map(str::to_string).collect();
    let scale_money = |out: &mut Vec<String>, factor: f64| {
        for i in [c.revenue, c.cost] {
            if let Some(v) = cents(&out[i]) {
                out[i] = money((v as f64 * factor).round() as i64);
            }
        }
    };
    match rng.random_range(0..100) {
        0..60 => scale_money(&mut out, rng.random_range(0.9..1.1)),
        60..75 => {
            if let Ok(q) = out[c.quantity].parse::<i64>() {
                out[c.quantity] = (q + 1).to_string();
                scale_money(&mut out, (q + 1) as f64 / q.max(1) as f64);
            }
        }
        75..88 => {
            let other = &sample[rng.random_range(0..sample.len())];
            out[c.partner_id] = other.get(c.partner_id).unwrap_or_default().to_string();
        }
        88..94 => out[c.partner_id] = String::new(),
        _ => {
            if let Some(day) = day_of(record, c) {
                out[c.order_date] = (day - Days::new(rng.random_range(1..40))).to_string();
            }
        }
    }
    out
}

/// Writes a day's changes to `config.export` into `config.out/orders.csv`.
pub fn generate_changes(config: &ChangesConfig) -> Result<GenerateSummary, GenerateError> {
    if !(config.share > 0.0 && config.share <= 1.0) {
        return Err(GenerateError::BadShare(config.share));
    }
    let path = config.export.join(Entity::Orders.file_name());
    let rng = &mut Pcg64Mcg::seed_from_u64(config.seed);
    let header = reader(&path)?.headers().map_err(|e| io(&path, e))?.clone();
    let c = Columns::of(&header, &path)?;
    let survey = survey(rng, &path, &c)?;
    if survey.sample.is_empty() {
        return Err(GenerateError::Io {
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "no order lines"),
        });
    }
    std::fs::create_dir_all(&config.out).map_err(|source| GenerateError::Io {
        path: config.out.clone(),
        source,
    })?;
    let mut out = Out {
        dir: config.out.clone(),
        bytes: 0,
    };
    let wanted = (survey.lines as f64 * config.share).round() as u64;
    let to_change = wanted / 2;
    let chance = to_change as f64 / survey.recent_lines.max(1) as f64;
    let since = survey.last_day - Days::new(RECENT_DAYS);
    // The export's own header: its lines are written in its column order.
    let out_path = config.out.join(Entity::Orders.file_name());
    let mut w = csv::WriterBuilder::new().from_writer(std::io::BufWriter::new(
        std::fs::File::create(&out_path).map_err(|source| GenerateError::Io {
            path: out_path.clone(),
            source,
        })?,
    ));
    w.write_record(&header).map_err(|e| io(&out_path, e))?;
    let mut written = 0u64;
    for record in reader(&path)?.records() {
        let record = record.map_err(|e| io(&path, e))?;
        if day_of(&record, &c).is_some_and(|d| d > since) && rng.random::<f64>() < chance {
            let line = corrected(rng, &record, &c, &survey.sample);
            w.write_record(&line).map_err(|e| io(&out_path, e))?;
            written += 1;
        }
    }
    // New orders, dated the day after the export's last, of one to three lines each.
    let day = (survey.last_day + Days::new(1)).to_string();
    let mut order = survey.last_order;
    let mut new_lines = 0u64;
    while new_lines < wanted - to_change {
        order += 1;
        for line in 1..=rng.random_range(1..=3u32) {
            let from = &survey.sample[rng.random_range(0..survey.sample.len())];
            let mut rec: Vec<String> = from.iter().map(str::to_string).collect();
            rec[c.order_id] = format!("O-{order:08}");
            rec[c.line_number] = line.to_string();
            rec[c.order_date].clone_from(&day);
            w.write_record(&rec).map_err(|e| io(&out_path, e))?;
            new_lines += 1;
        }
    }
    out.close(&out_path, w)?;
    Ok(GenerateSummary {
        rows: vec![(Entity::Orders, written + new_lines)],
        bytes: out.bytes,
    })
}
