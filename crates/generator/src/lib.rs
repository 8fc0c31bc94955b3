//! Deterministic demo exports that look like a real partner channel.
//!
//! `generate(config)` writes the eleven files of the data contract. The shape is what a channel
//! executive would recognise: partner revenue with a heavy tail (a real 80/20), tiers that follow
//! size, Q4 and quarter-end peaks, a product mix that depends on the customer's industry and size,
//! service speed and satisfaction that follow a partner's quality, direct sales, margins, returns,
//! a few partners in decline, and names with Unicode and punctuation. The same seed and scale give
//! byte-identical files. Rows are written as they are drawn, so memory stays flat at any scale.
#![warn(missing_docs)]

mod changes;
mod program;

pub use changes::{ChangesConfig, generate_changes};

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use prism_contract::Entity;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateConfig {
    /// The folder the export's CSV files are written to.
    pub out: PathBuf,
    /// 1.0 is about one million order lines; everything else scales in proportion.
    pub scale: f64,
    /// The random seed: the same seed and scale give the same export, byte for byte.
    pub seed: u64,
    /// How many partners, instead of the scale's (300 × √scale): a brand owner with a long
    /// tail of small partners has far more than its volume suggests.
    pub partners: Option<usize>,
    /// How many customers, instead of the scale's (45,000 × scale).
    pub customers: Option<usize>,
}

/// Rows written per entity, in the order they were written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GenerateSummary {
    /// Each entity and its rows.
    pub rows: Vec<(Entity, u64)>,
    /// Bytes written, every file together.
    pub bytes: u64,
}

impl GenerateSummary {
    /// The rows written of one entity (0 when none).
    pub fn rows_of(&self, entity: Entity) -> u64 {
        self.rows
            .iter()
            .find(|(e, _)| *e == entity)
            .map_or(0, |(_, n)| *n)
    }
}

/// Why an export could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// Fewer partners or customers than the generator's patterns need.
    #[error(
        "{0} partners and {1} customers: an export needs at least 12 partners and 60 customers"
    )]
    BadShape(usize, usize),
    /// A scale of zero, below zero, or not a number.
    #[error("scale must be a positive number, found {0}")]
    BadScale(f64),
    /// A share of changes not above 0 and at most 1.
    #[error("the changes' share must be above 0 and at most 1 (0.01 is 1 %), found {0}")]
    BadShare(f64),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

/// The first and last day of generated activity. Fixed, not relative to today, so that a seed
/// always gives the same export.
pub fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 1, 1).expect("date")
}

/// The last day of generated activity (see `first_day`).
pub fn last_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 9, 30).expect("date")
}

const REGIONS: &[(&str, &[&str], f64)] = &[
    (
        "North America",
        &["United States", "Canada", "Mexico"],
        0.38,
    ),
    (
        "EMEA",
        &[
            "Germany",
            "United Kingdom",
            "France",
            "Netherlands",
            "Sweden",
            "Spain",
            "Italy",
            "South Africa",
            "United Arab Emirates",
        ],
        0.32,
    ),
    (
        "APAC",
        &["Japan", "Australia", "Singapore", "India", "South Korea"],
        0.20,
    ),
    ("LATAM", &["Brazil", "Argentina", "Chile", "Colombia"], 0.10),
];

const PARTNER_TYPES: &[(&str, f64)] = &[
    ("Reseller", 0.42),
    ("Distributor", 0.08),
    ("System Integrator", 0.20),
    ("Managed Service Provider", 0.18),
    ("ISV", 0.12),
];

const INDUSTRIES: &[(&str, f64)] = &[
    ("Healthcare", 0.14),
    ("Financial Services", 0.16),
    ("Retail", 0.15),
    ("Manufacturing", 0.18),
    ("Public Sector", 0.11),
    ("Education", 0.10),
    ("Technology", 0.16),
];

const SIZES: &[(&str, f64)] = &[("SMB", 0.62), ("Mid-Market", 0.28), ("Enterprise", 0.10)];

/// Product lines with the categories of their products and a price range.
const PRODUCT_LINES: &[(&str, &str, f64, f64)] = &[
    ("Cloud Infrastructure", "Subscription", 400.0, 9_000.0),
    ("Security", "Subscription", 150.0, 4_000.0),
    ("Networking", "Hardware", 250.0, 18_000.0),
    ("Storage", "Hardware", 900.0, 40_000.0),
    ("Collaboration", "Subscription", 20.0, 600.0),
    ("Analytics", "Software", 300.0, 12_000.0),
    ("Endpoint", "Hardware", 300.0, 2_500.0),
    ("Professional Services", "Services", 1_000.0, 25_000.0),
];

/// How much each industry leans towards each product line (same order as PRODUCT_LINES).
/// This is what makes "where could this product sell" a real question in the demo.
const INDUSTRY_AFFINITY: &[[f64; 8]] = &[
    [1.0, 2.2, 0.8, 1.6, 1.2, 1.4, 1.0, 0.9], // Healthcare: security, storage
    [1.4, 2.5, 1.0, 1.2, 0.8, 2.0, 0.7, 1.0], // Financial Services: security, analytics
    [1.2, 0.9, 1.3, 0.6, 0.9, 1.8, 1.6, 0.6], // Retail: analytics, endpoint
    [0.9, 0.8, 1.8, 1.3, 0.6, 1.1, 1.2, 1.3], // Manufacturing: networking
    [0.7, 1.6, 1.1, 1.1, 1.3, 0.5, 1.4, 1.6], // Public Sector: services
    [0.8, 0.7, 1.2, 0.6, 2.4, 0.4, 1.9, 0.5], // Education: collaboration, endpoint
    [2.4, 1.3, 1.0, 0.9, 1.1, 1.3, 0.8, 0.7], // Technology: cloud
];

/// How much each size band leans towards each product line.
const SIZE_AFFINITY: &[[f64; 8]] = &[
    [1.2, 1.0, 0.8, 0.4, 1.8, 0.5, 1.5, 0.3], // SMB
    [1.1, 1.1, 1.1, 1.0, 1.0, 1.0, 1.0, 0.9], // Mid-Market
    [1.0, 1.2, 1.2, 1.8, 0.6, 1.6, 0.7, 1.9], // Enterprise
];

const NAME_STEMS: &[&str] = &[
    "Apex",
    "Blue Harbor",
    "Cobalt",
    "Delta Bridge",
    "Evergreen",
    "Fjord",
    "Granite",
    "Helix",
    "Ironwood",
    "Juniper",
    "Keystone",
    "Lumen",
    "Meridian",
    "Northwind",
    "Orion",
    "Pinnacle",
    "Quartz",
    "Redline",
    "Summit",
    "Tidewater",
    "Umbra",
    "Vertex",
    "Westgate",
    "Xenon",
    "Yellowfin",
    "Zenith",
    "Müller & Söhne",
    "O'Brien",
    "Nordström",
    "Sørensen",
    "Łukasz",
    "Ñandú",
    "Zürich",
    "東京データ",
    "Søndergaard",
    "Crème",
    "São Paulo",
    "Ærø",
    "Kraków",
    "Dvořák",
    "Smith, Jones &",
];
const PARTNER_SUFFIXES: &[&str] = &[
    "Systems",
    "Solutions",
    "IT GmbH",
    "Technologies, Inc.",
    "Consulting",
    "Networks Ltd",
    "Integration S.A.",
    "Cloud \"Partners\"",
    "Digital AB",
    "株式会社",
    "Data Services",
    "Group",
];
const CUSTOMER_SUFFIXES: &[&str] = &[
    "Hospital",
    "Bank",
    "Retail Group",
    "Manufacturing",
    "County",
    "University",
    "Labs",
    "Logistics",
    "Insurance",
    "Foods, Inc.",
    "Clinic",
    "Energy",
    "Motors",
    "\"Smart\" Stores",
];

fn pick<'a, T>(rng: &mut Pcg64Mcg, items: &'a [(T, f64)]) -> &'a T {
    let total: f64 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.random::<f64>() * total;
    for (item, w) in items {
        if x < *w {
            return item;
        }
        x -= w;
    }
    &items[items.len() - 1].0
}

/// Index drawn from cumulative weights.
/// An index drawn with the given weights.
fn pick_index(rng: &mut Pcg64Mcg, weights: impl IntoIterator<Item = f64>) -> usize {
    pick_cumulative(rng, &cumulate(weights))
}

fn pick_cumulative(rng: &mut Pcg64Mcg, cumulative: &[f64]) -> usize {
    let x = rng.random::<f64>() * cumulative[cumulative.len() - 1];
    cumulative
        .partition_point(|&c| c <= x)
        .min(cumulative.len() - 1)
}

fn cumulate(weights: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut sum = 0.0;
    weights
        .into_iter()
        .map(|w| {
            sum += w;
            sum
        })
        .collect()
}

struct Partner {
    id: String,
    /// Share of channel volume (heavy-tailed).
    weight: f64,
    /// 0 (poor) .. 1 (excellent): drives win rate, service speed and satisfaction.
    quality: f64,
    active: bool,
    /// Volume factor at the end of the period for partners in decline (1.0 = no decline).
    decline: f64,
    region: usize,
    customers: Vec<u32>,
    customer_cumulative: Vec<f64>,
}

struct Customer {
    id: String,
    size: usize,
    /// Per-product cumulative weights are shared per (industry, size) segment.
    segment: usize,
}

struct Product {
    id: String,
    price_cents: i64,
    line: usize,
}

struct Out {
    dir: PathBuf,
    bytes: u64,
}

impl Out {
    fn writer(
        &self,
        entity: Entity,
    ) -> Result<(PathBuf, csv::Writer<BufWriter<File>>), GenerateError> {
        let path = self.dir.join(entity.file_name());
        let file = File::create(&path).map_err(|source| GenerateError::Io {
            path: path.clone(),
            source,
        })?;
        let mut w = csv::WriterBuilder::new().from_writer(BufWriter::with_capacity(1 << 20, file));
        let header: Vec<&str> = entity.columns().iter().map(|c| c.name).collect();
        w.write_record(&header).map_err(|e| io(&path, e))?;
        Ok((path, w))
    }

    fn close(&mut self, path: &Path, w: csv::Writer<BufWriter<File>>) -> Result<(), GenerateError> {
        let mut inner = w.into_inner().map_err(|e| GenerateError::Io {
            path: path.into(),
            source: e.into_error(),
        })?;
        inner.flush().map_err(|source| GenerateError::Io {
            path: path.into(),
            source,
        })?;
        self.bytes += std::fs::metadata(path)
            .map_err(|source| GenerateError::Io {
                path: path.into(),
                source,
            })?
            .len();
        Ok(())
    }
}

fn io(path: &Path, e: csv::Error) -> GenerateError {
    GenerateError::Io {
        path: path.into(),
        source: e.into(),
    }
}

fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let a = cents.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

/// Writes an export to `config.out` and returns how many rows each file got.
pub fn generate(config: &GenerateConfig) -> Result<GenerateSummary, GenerateError> {
    if !(config.scale > 0.0 && config.scale.is_finite()) {
        return Err(GenerateError::BadScale(config.scale));
    }
    // Checked before anything is written: a refused shape leaves no folder behind.
    let n_partners = config
        .partners
        .unwrap_or(((300.0 * config.scale.sqrt()).round() as usize).max(12));
    let n_customers = config
        .customers
        .unwrap_or(((45_000.0 * config.scale).round() as usize).max(60));
    if n_partners < 12 || n_customers < 60 {
        return Err(GenerateError::BadShape(n_partners, n_customers));
    }
    std::fs::create_dir_all(&config.out).map_err(|source| GenerateError::Io {
        path: config.out.clone(),
        source,
    })?;
    let rng = &mut Pcg64Mcg::seed_from_u64(config.seed);
    let mut out = Out {
        dir: config.out.clone(),
        bytes: 0,
    };
    let mut summary = GenerateSummary::default();
    let s = config.scale;
    let mut partners = write_partners(rng, &mut out, &mut summary, n_partners)?;
    let products = write_products(rng, &mut out, &mut summary)?;
    let segment_cumulative = segment_choice(rng, &products);
    let customers = write_customers(rng, &mut out, &mut summary, n_customers, &mut partners)?;

    // The partner program draws from its own stream: the other files stay as they were.
    let program_rng = &mut Pcg64Mcg::seed_from_u64(config.seed ^ 0x005E_ED0F_9A11);
    let campaigns = program::campaigns(program_rng, &partners, &products, &mut out)?;
    summary
        .rows
        .push((Entity::Campaigns, campaigns.all.len() as u64));
    // Bigger partners also close bigger and more frequent deals: order volume grows faster
    // than partner size.
    let partner_cum = cumulate(partners.iter().map(|p| p.weight.powf(1.3)));
    let channel = Channel {
        partners,
        products,
        customers,
        segment_cumulative,
        calendar: calendar(),
        partner_cum,
    };
    // The product lines each partner sells, for the certifications it lacks.
    let mut lines_sold = vec![vec![false; PRODUCT_LINES.len()]; channel.partners.len()];
    write_orders(rng, &mut out, &mut summary, &channel, s, &mut lines_sold)?;
    write_opportunities(
        rng,
        program_rng,
        &mut out,
        &mut summary,
        &channel,
        s,
        &campaigns,
    )?;
    let (served, request_partner) =
        write_service_requests(rng, &mut out, &mut summary, &channel, s)?;
    write_surveys(
        rng,
        &mut out,
        &mut summary,
        &channel,
        s,
        &served,
        &request_partner,
    )?;
    let mdf_rows = program::mdf_requests(program_rng, &channel.partners, &campaigns, &mut out)?;
    summary.rows.push((Entity::MdfRequests, mdf_rows));
    let certification_rows =
        program::certifications(program_rng, &channel.partners, &lines_sold, &mut out)?;
    summary
        .rows
        .push((Entity::Certifications, certification_rows));
    summary.bytes = out.bytes;
    Ok(summary)
}

/// What every file's rows are drawn from: who sells what to whom, and when.
struct Channel {
    partners: Vec<Partner>,
    products: Vec<Product>,
    customers: Vec<Customer>,
    /// Per customer segment (industry × size), the cumulative choice of products.
    segment_cumulative: Vec<Vec<f64>>,
    calendar: Calendar,
    /// The cumulative choice of partner for an order or an opportunity.
    partner_cum: Vec<f64>,
}

impl Channel {
    /// A customer of partner `p`, larger ones more often; anyone's when it has none.
    fn customer_of(&self, rng: &mut Pcg64Mcg, p: &Partner) -> usize {
        if p.customers.is_empty() {
            rng.random_range(0..self.customers.len())
        } else {
            p.customers[pick_cumulative(rng, &p.customer_cumulative)] as usize
        }
    }
}

/// An opportunity's stage and probability: closed by now (won more often by better partners),
/// or still open at one of the open stages.
fn stage(rng: &mut Pcg64Mcg, quality: f64, close: NaiveDate) -> (&'static str, i64) {
    if close <= last_day() {
        let win = 0.18 + 0.5 * quality;
        if rng.random::<f64>() < win {
            ("Closed Won", 100)
        } else {
            ("Closed Lost", 0)
        }
    } else {
        *[
            ("Prospecting", 10),
            ("Qualification", 25),
            ("Proposal", 50),
            ("Negotiation", 75),
        ]
        .get(rng.random_range(0..4))
        .expect("stage")
    }
}

/// The days of the export, and how likely a sale is on each.
struct Calendar {
    days: Vec<NaiveDate>,
    day_cum: Vec<f64>,
    /// Where a partner in decline starts selling less: the last two quarters.
    decline_start: usize,
}

/// Calendar: quarter-end and Q4 peaks, with growth over the years.
fn calendar() -> Calendar {
    let days: Vec<NaiveDate> = first_day()
        .iter_days()
        .take_while(|d| *d <= last_day())
        .collect();
    let n_days = days.len() as f64;
    let day_cum = cumulate(days.iter().enumerate().map(|(i, d)| {
        let month_in_q = (d.month() - 1) % 3;
        let q4 = if d.month() >= 10 { 1.35 } else { 1.0 };
        let quarter_end = if month_in_q == 2 { 1.3 } else { 1.0 };
        let weekday = if d.weekday().number_from_monday() >= 6 {
            0.25
        } else {
            1.0
        };
        let growth = 1.0 + 0.35 * (i as f64 / n_days);
        q4 * quarter_end * weekday * growth
    }));
    Calendar {
        decline_start: days.len() - 183,
        days,
        day_cum,
    }
}

/// Partners: Pareto-sized, each with a quality, a region, and a few in decline or inactive.
fn write_partners(
    rng: &mut Pcg64Mcg,
    out: &mut Out,
    summary: &mut GenerateSummary,
    n_partners: usize,
) -> Result<Vec<Partner>, GenerateError> {
    let (path, mut w) = out.writer(Entity::Partners)?;
    let mut partners: Vec<Partner> = Vec::with_capacity(n_partners);
    for i in 0..n_partners {
        // Pareto(alpha = 0.75) sizes, capped so that no single partner dwarfs the channel,
        // give the familiar 80/20 split of revenue.
        let u: f64 = rng.random::<f64>().max(1e-9);
        let weight = u.powf(-1.0 / 0.75).min(100.0);
        let quality =
            (rng.random::<f64>() * 0.7 + 0.3 * (weight.ln() / 4.0).clamp(0.0, 1.0)).clamp(0.0, 1.0);
        let region = pick_index(rng, REGIONS.iter().map(|r| r.2));
        let active = rng.random::<f64>() > 0.07;
        let decline = if active && rng.random::<f64>() < 0.06 {
            rng.random_range(0.25..0.6)
        } else {
            1.0
        };
        let id = format!("P-{:05}", i + 1);
        let countries = REGIONS[region].1;
        let country = countries[rng.random_range(0..countries.len())];
        let name = partner_name(i, country);
        let joined = first_day() - chrono::Days::new(rng.random_range(0..3650));
        let ptype = pick(rng, PARTNER_TYPES);
        partners.push(Partner {
            id,
            weight,
            quality,
            active,
            decline,
            region,
            customers: Vec::new(),
            customer_cumulative: Vec::new(),
        });
        let p = partners.last().expect("pushed");
        let tier = match p.weight {
            w if w > 40.0 => "Platinum",
            w if w > 8.0 => "Gold",
            w if w > 2.5 => "Silver",
            _ => "Registered",
        };
        let joined = if i % 53 == 52 {
            None
        } else {
            Some(joined.to_string())
        };
        w.write_record([
            p.id.as_str(),
            &name,
            tier,
            ptype,
            REGIONS[region].0,
            if i % 41 == 40 { "" } else { country },
            joined.as_deref().unwrap_or(""),
            if p.active { "Active" } else { "Inactive" },
        ])
        .map_err(|e| io(&path, e))?;
    }
    out.close(&path, w)?;
    summary.rows.push((Entity::Partners, partners.len() as u64));
    // Every 37th partner is newly registered and has not sold yet.
    for (i, p) in partners.iter_mut().enumerate() {
        if i % 37 == 36 {
            p.weight = 0.0;
        }
    }
    Ok(partners)
}

/// Partner names are unique: every stem × suffix once (in a scattered order), then with the
/// country and a number.
fn partner_name(i: usize, country: &str) -> String {
    let combos = NAME_STEMS.len() * PARTNER_SUFFIXES.len();
    let c = (i * 7919) % combos;
    let stem = NAME_STEMS[c / PARTNER_SUFFIXES.len()];
    let suffix = PARTNER_SUFFIXES[c % PARTNER_SUFFIXES.len()];
    if i < combos {
        format!("{stem} {suffix}")
    } else {
        format!("{stem} {suffix} {country} {}", i / combos + 1)
    }
}

/// Products: ten to fourteen per product line, priced within the line's range.
fn write_products(
    rng: &mut Pcg64Mcg,
    out: &mut Out,
    summary: &mut GenerateSummary,
) -> Result<Vec<Product>, GenerateError> {
    let (path, mut w) = out.writer(Entity::Products)?;
    let mut products: Vec<Product> = Vec::new();
    for (line, (line_name, category, lo, hi)) in PRODUCT_LINES.iter().enumerate() {
        let n = 10 + line % 5;
        for k in 0..n {
            let id = format!("PR-{:03}", products.len() + 1);
            let price = (lo + (hi - lo) * rng.random::<f64>().powf(2.0)).round() as i64 * 100 - 1;
            let tag = [
                "Standard",
                "Pro",
                "Enterprise",
                "Lite",
                "Plus",
                "Max",
                "Edge",
                "Core",
            ][k % 8];
            let name = format!(
                "{} {} {}",
                line_name.split(' ').next().unwrap_or(line_name),
                tag,
                100 + k * 10
            );
            w.write_record([id.as_str(), &name, line_name, category, &money(price)])
                .map_err(|e| io(&path, e))?;
            products.push(Product {
                id,
                price_cents: price,
                line,
            });
        }
    }
    out.close(&path, w)?;
    summary.rows.push((Entity::Products, products.len() as u64));

    Ok(products)
}

/// Product choice per customer segment (industry × size): line affinity × a per-product
/// popularity, so each segment has its own best and worst sellers.
fn segment_choice(rng: &mut Pcg64Mcg, products: &[Product]) -> Vec<Vec<f64>> {
    let popularity: Vec<f64> = products
        .iter()
        .map(|_| 0.2 + rng.random::<f64>().powf(3.0) * 3.0)
        .collect();
    let mut segment_cumulative: Vec<Vec<f64>> = Vec::new();
    for industry in INDUSTRY_AFFINITY.iter().take(INDUSTRIES.len()) {
        for size in SIZE_AFFINITY.iter().take(SIZES.len()) {
            segment_cumulative.push(cumulate(products.iter().zip(&popularity).map(
                |(p, pop)| {
                    let a = industry[p.line] * size[p.line];
                    pop * a.powf(2.5)
                },
            )));
        }
    }

    segment_cumulative
}

/// Per region, the cumulative choice of a customer's home partner among the region's partners
/// that sell: bigger ones more often.
fn home_partner_choice(partners: &[Partner]) -> Vec<Vec<f64>> {
    (0..REGIONS.len())
        .map(|r| {
            cumulate(partners.iter().map(|p| {
                if p.region == r && p.weight > 0.0 {
                    p.weight.powf(0.8)
                } else {
                    0.0
                }
            }))
        })
        .collect()
}

/// Customers, each served mostly by one home partner in its region.
fn write_customers(
    rng: &mut Pcg64Mcg,
    out: &mut Out,
    summary: &mut GenerateSummary,
    n_customers: usize,
    partners: &mut [Partner],
) -> Result<Vec<Customer>, GenerateError> {
    let partner_cum_by_region = home_partner_choice(partners);
    let (path, mut w) = out.writer(Entity::Customers)?;
    let mut customers: Vec<Customer> = Vec::with_capacity(n_customers);
    for i in 0..n_customers {
        let industry = pick_index(rng, INDUSTRIES.iter().map(|x| x.1));
        let size = pick_index(rng, SIZES.iter().map(|x| x.1));
        let region = pick_index(rng, REGIONS.iter().map(|r| r.2));
        let id = format!("C-{:07}", i + 1);
        let name = format!(
            "{} {}",
            NAME_STEMS[rng.random_range(0..NAME_STEMS.len())],
            CUSTOMER_SUFFIXES[rng.random_range(0..CUSTOMER_SUFFIXES.len())]
        );
        let countries = REGIONS[region].1;
        let country = countries[rng.random_range(0..countries.len())];
        // Annual revenue by size band, log-uniform within the band; unknown for some.
        let (lo, hi): (f64, f64) = [(1e6, 5e7), (3e7, 8e8), (5e8, 5e10)][size];
        let revenue = (lo * (hi / lo).powf(rng.random::<f64>())).round() as i64 * 100;
        let annual = if i % 17 == 5 {
            String::new()
        } else {
            money(revenue)
        };
        w.write_record([
            id.as_str(),
            &name,
            INDUSTRIES[industry].0,
            SIZES[size].0,
            REGIONS[region].0,
            country,
            &annual,
        ])
        .map_err(|e| io(&path, e))?;
        let cum = &partner_cum_by_region[region];
        let home = if cum[cum.len() - 1] > 0.0 {
            pick_cumulative(rng, cum)
        } else {
            i % partners.len()
        };
        let c = customers.len() as u32;
        partners[home].customers.push(c);
        customers.push(Customer {
            id,
            size,
            segment: industry * SIZES.len() + size,
        });
    }
    out.close(&path, w)?;
    summary
        .rows
        .push((Entity::Customers, customers.len() as u64));
    for p in partners.iter_mut() {
        // Larger customers buy more often.
        p.customer_cumulative = cumulate(
            p.customers
                .iter()
                .map(|&c| [1.0, 2.5, 6.0][customers[c as usize].size]),
        );
    }

    Ok(customers)
}

/// Orders: by day of the calendar, from partners by size (some direct), to their customers.
fn write_orders(
    rng: &mut Pcg64Mcg,
    out: &mut Out,
    summary: &mut GenerateSummary,
    channel: &Channel,
    s: f64,
    lines_sold: &mut [Vec<bool>],
) -> Result<(), GenerateError> {
    let Channel {
        partners,
        products,
        customers,
        segment_cumulative,
        partner_cum,
        ..
    } = channel;
    let Calendar {
        days,
        day_cum,
        decline_start,
    } = &channel.calendar;
    let decline_start = *decline_start;
    let n_orders = ((430_000.0 * s).round() as usize).max(50);
    let (path, mut w) = out.writer(Entity::Orders)?;
    let mut lines_written = 0u64;
    let mut order_no = 0u64;
    let mut rec: Vec<String> = vec![String::new(); 9];
    // A CRM numbers orders as they come: ids follow the order date, as in a real export.
    let mut order_days: Vec<usize> = (0..n_orders)
        .map(|_| pick_cumulative(rng, day_cum))
        .collect();
    order_days.sort_unstable();
    for di in order_days {
        let direct = rng.random::<f64>() < 0.07;
        let pi = pick_cumulative(rng, partner_cum);
        let p = &partners[pi];
        if p.decline < 1.0 && di >= decline_start {
            let progress = (di - decline_start) as f64 / 183.0;
            if rng.random::<f64>() > 1.0 - (1.0 - p.decline) * (0.5 + progress) {
                continue;
            }
        }
        if !p.active && di >= days.len() / 2 {
            continue; // Inactive partners stopped selling half-way through.
        }
        let ci = channel.customer_of(rng, p);
        let c = &customers[ci];
        order_no += 1;
        let order_id = format!("O-{order_no:08}");
        let n_lines = 1 + (rng.random::<f64>().powf(2.0) * [3.0, 5.0, 8.0][c.size]) as u32;
        for line in 1..=n_lines {
            let prod = &products[pick_cumulative(rng, &segment_cumulative[c.segment])];
            if !direct {
                lines_sold[pi][prod.line] = true;
            }
            let (qty, revenue, cost) = line_amounts(rng, prod, c.size, direct);
            rec[0].clone_from(&order_id);
            rec[1] = line.to_string();
            rec[2] = if direct { String::new() } else { p.id.clone() };
            rec[3].clone_from(&c.id);
            rec[4].clone_from(&prod.id);
            rec[5] = days[di].to_string();
            rec[6] = qty.to_string();
            rec[7] = money(revenue);
            rec[8] = cost.map(money).unwrap_or_default();
            w.write_record(&rec).map_err(|e| io(&path, e))?;
            lines_written += 1;
        }
    }
    out.close(&path, w)?;
    summary.rows.push((Entity::Orders, lines_written));
    Ok(())
}

/// An order line's quantity, revenue and cost (in cents): larger customers buy more, partners
/// get a deeper discount, a few lines are credits for returns, and some costs are unknown.
fn line_amounts(
    rng: &mut Pcg64Mcg,
    prod: &Product,
    size: usize,
    direct: bool,
) -> (i64, i64, Option<i64>) {
    let qty = 1 + (rng.random::<f64>().powf(3.0) * [4.0, 12.0, 40.0][size]) as i64;
    let discount = rng.random_range(0.0..0.22) + if direct { 0.0 } else { 0.05 };
    let mut revenue = ((prod.price_cents * qty) as f64 * (1.0 - discount)).round() as i64;
    let returned = rng.random::<f64>() < 0.012;
    if returned {
        revenue = -revenue / 2; // A credit: a separate line with negative revenue.
    }
    let cost_ratio =
        [0.55, 0.40, 0.68, 0.72, 0.35, 0.45, 0.74, 0.62][prod.line] + rng.random_range(-0.05..0.05);
    let cost = if rng.random::<f64>() < 0.08 {
        None
    } else {
        Some((revenue as f64 * cost_ratio).round() as i64)
    };
    (qty, revenue, cost)
}

/// Opportunities: better partners win more; open ones close in the future. Deal registrations
/// are written beside them.
fn write_opportunities(
    rng: &mut Pcg64Mcg,
    program_rng: &mut Pcg64Mcg,
    out: &mut Out,
    summary: &mut GenerateSummary,
    channel: &Channel,
    s: f64,
    campaigns: &program::Campaigns,
) -> Result<(), GenerateError> {
    let Channel {
        partners,
        products,
        customers,
        segment_cumulative,
        partner_cum,
        ..
    } = channel;
    let Calendar { days, day_cum, .. } = &channel.calendar;
    let (path, mut w) = out.writer(Entity::Opportunities)?;
    let n_opps = ((150_000.0 * s).round() as usize).max(40);
    let mut opp_rows = 0u64;
    let mut rec: Vec<String> = vec![String::new(); 11];
    let mut registrations = program::Registrations::start(out)?;
    for i in 0..n_opps {
        let direct = rng.random::<f64>() < 0.08;
        let pi = pick_cumulative(rng, partner_cum);
        let p = &partners[pi];
        if !p.active && rng.random::<f64>() < 0.7 {
            continue;
        }
        let ci = channel.customer_of(rng, p);
        let c = &customers[ci];
        let prod = &products[pick_cumulative(rng, &segment_cumulative[c.segment])];
        let created = days[pick_cumulative(rng, day_cum)];
        let cycle = rng.random_range(14..[90, 150, 270][c.size]) as u64;
        let close = created + chrono::Days::new(cycle);
        let qty = 1 + (rng.random::<f64>().powf(2.0) * [10.0, 40.0, 150.0][c.size]) as i64;
        let amount = prod.price_cents * qty;
        let (stage, probability) = stage(rng, p.quality, close);
        let registered = if direct {
            ""
        } else if rng.random::<f64>() < 0.3 + 0.5 * p.quality {
            "true"
        } else {
            "false"
        };
        rec[0] = format!("OP-{:07}", i + 1);
        rec[1] = if direct { String::new() } else { p.id.clone() };
        rec[2].clone_from(&c.id);
        rec[3].clone_from(&prod.id);
        rec[4] = stage.into();
        rec[5] = money(amount);
        rec[6] = probability.to_string();
        rec[7] = created.to_string();
        rec[8] = close.to_string();
        rec[9] = registered.into();
        let sourced = campaigns.sourcing(program_rng, (!direct).then_some(pi), created);
        rec[10] = sourced.map(|c| c.id.clone()).unwrap_or_default();
        w.write_record(&rec).map_err(|e| io(&path, e))?;
        opp_rows += 1;
        if registered == "true" {
            registrations.register(program_rng, p, c, prod, amount, created, Some(&rec[0]))?;
        } else if !direct && program_rng.random::<f64>() < 0.06 {
            // A deal registered that never became an opportunity.
            registrations.register(program_rng, p, c, prod, amount, created, None)?;
        }
    }
    out.close(&path, w)?;
    summary.rows.push((Entity::Opportunities, opp_rows));
    let registration_rows = registrations.finish(out)?;
    summary
        .rows
        .push((Entity::DealRegistrations, registration_rows));
    Ok(())
}

/// A service request as the surveys that follow it need it: the partner serving it, the
/// customer and the day of its resolution.
type ResolvedRequest = (u32, u32, i64);

/// The cumulative choice of the partner serving a request: partners with customers, bigger
/// ones more often.
fn serving_choice(partners: &[Partner]) -> Vec<f64> {
    cumulate(partners.iter().map(|p| {
        if p.customers.is_empty() {
            0.0
        } else {
            p.weight.max(0.05)
        }
    }))
}

/// Service requests: good partners answer fast; a few requests are still open. Returns the
/// cumulative choice of serving partner, and each request's partner, customer and day of
/// resolution, for the surveys that follow them.
fn write_service_requests(
    rng: &mut Pcg64Mcg,
    out: &mut Out,
    summary: &mut GenerateSummary,
    channel: &Channel,
    s: f64,
) -> Result<(Vec<f64>, Vec<ResolvedRequest>), GenerateError> {
    let Channel {
        partners,
        products,
        customers,
        segment_cumulative,
        ..
    } = channel;
    let Calendar { days, day_cum, .. } = &channel.calendar;
    let (path, mut w) = out.writer(Entity::ServiceRequests)?;
    let n_srs = ((100_000.0 * s).round() as usize).max(40);
    let served = serving_choice(partners);
    let mut sr_rows = 0u64;
    let mut request_partner: Vec<ResolvedRequest> = Vec::with_capacity(n_srs);
    let mut rec: Vec<String> = vec![String::new(); 8];
    let end_ts = chrono::NaiveDateTime::from(last_day()) + chrono::Duration::hours(23);
    // Requests are numbered as they are opened.
    let mut request_days: Vec<usize> = (0..n_srs).map(|_| pick_cumulative(rng, day_cum)).collect();
    request_days.sort_unstable();
    for (i, di) in request_days.into_iter().enumerate() {
        let pi = pick_cumulative(rng, &served);
        let p = &partners[pi];
        let ci = p.customers[pick_cumulative(rng, &p.customer_cumulative)] as usize;
        let day = days[di];
        let opened = day
            .and_hms_opt(
                rng.random_range(6..20),
                rng.random_range(0..60),
                rng.random_range(0..60),
            )
            .expect("time");
        let priority = pick(rng, &[(0usize, 0.06), (1, 0.22), (2, 0.45), (3, 0.27)]);
        let target_h = [1.0, 4.0, 8.0, 24.0][*priority];
        let (response, resolution) = service_times(rng, p.quality, opened, target_h);
        let responded = response <= end_ts && rng.random::<f64>() > 0.01;
        let resolved = responded && resolution <= end_ts && rng.random::<f64>() > 0.015;
        rec[0] = format!("SR-{:07}", i + 1);
        rec[1].clone_from(&p.id);
        rec[2].clone_from(&customers[ci].id);
        rec[3] = if rng.random::<f64>() < 0.1 {
            String::new()
        } else {
            products[pick_cumulative(rng, &segment_cumulative[customers[ci].segment])]
                .id
                .clone()
        };
        rec[4] = format!("P{}", priority + 1);
        rec[5] = opened_text(i, opened);
        rec[6] = if responded {
            response.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
        } else {
            String::new()
        };
        rec[7] = if resolved {
            resolution.format("%Y-%m-%dT%H:%M:%SZ").to_string()
        } else {
            String::new()
        };
        w.write_record(&rec).map_err(|e| io(&path, e))?;
        request_partner.push((
            pi as u32,
            ci as u32,
            resolution.and_utc().timestamp() / 86_400,
        ));
        sr_rows += 1;
    }
    out.close(&path, w)?;
    summary.rows.push((Entity::ServiceRequests, sr_rows));
    Ok((served, request_partner))
}

/// When a request opened at `opened` gets its first response and its resolution: the time
/// scales with the priority's target (hours) and the partner's quality.
fn service_times(
    rng: &mut Pcg64Mcg,
    quality: f64,
    opened: chrono::NaiveDateTime,
    target_h: f64,
) -> (chrono::NaiveDateTime, chrono::NaiveDateTime) {
    let slowness = 0.3
        + 1.8 * (1.0 - quality) * rng.random::<f64>().powf(0.7)
        + rng.random::<f64>().powf(6.0) * 2.0;
    let response = opened + chrono::Duration::seconds((target_h * slowness * 3600.0) as i64);
    let resolution = response
        + chrono::Duration::seconds(
            (target_h * (2.0 + 10.0 * rng.random::<f64>() * (1.5 - quality)) * 3600.0) as i64,
        );
    (response, resolution)
}

/// When request `i` opened, as its CRM writes it: some systems export with an offset, others
/// without; the contract accepts both.
fn opened_text(i: usize, opened: chrono::NaiveDateTime) -> String {
    if i.is_multiple_of(11) {
        format!("{}+00:00", opened.format("%Y-%m-%dT%H:%M:%S"))
    } else {
        opened.format("%Y-%m-%dT%H:%M:%S").to_string()
    }
}

/// Satisfaction surveys: scores follow the partner's quality; most follow a service request.
fn write_surveys(
    rng: &mut Pcg64Mcg,
    out: &mut Out,
    summary: &mut GenerateSummary,
    channel: &Channel,
    s: f64,
    served: &[f64],
    request_partner: &[ResolvedRequest],
) -> Result<(), GenerateError> {
    let Channel {
        partners,
        customers,
        ..
    } = channel;
    let Calendar { days, day_cum, .. } = &channel.calendar;
    let (path, mut w) = out.writer(Entity::SatisfactionSurveys)?;
    let n_surveys = ((60_000.0 * s).round() as usize).max(30);
    let mut rec: Vec<String> = vec![String::new(); 6];
    for i in 0..n_surveys {
        let (pi, ci, request, day) = if rng.random::<f64>() < 0.8 {
            let r = rng.random_range(0..request_partner.len());
            let (pi, ci, day) = request_partner[r];
            let day = (prism_contract::values::date_from_days(day as i32)
                + chrono::Days::new(rng.random_range(1..10)))
            .min(last_day());
            (pi as usize, ci as usize, format!("SR-{:07}", r + 1), day)
        } else {
            let pi = pick_cumulative(rng, served);
            let p = &partners[pi];
            let ci = p.customers[pick_cumulative(rng, &p.customer_cumulative)] as usize;
            (pi, ci, String::new(), days[pick_cumulative(rng, day_cum)])
        };
        let q = partners[pi].quality;
        let x = q * 3.2 + 1.6 + rng.random_range(-1.6..1.6);
        let score = x.round().clamp(1.0, 5.0) as i64;
        rec[0] = format!("S-{:07}", i + 1);
        rec[1].clone_from(&partners[pi].id);
        rec[2].clone_from(&customers[ci].id);
        rec[3] = request;
        rec[4] = day.to_string();
        rec[5] = score.to_string();
        w.write_record(&rec).map_err(|e| io(&path, e))?;
    }
    out.close(&path, w)?;
    summary
        .rows
        .push((Entity::SatisfactionSurveys, n_surveys as u64));
    Ok(())
}
