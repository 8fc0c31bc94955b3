//! The tiny export of `fixtures/tiny`, whose every figure is known by hand, and helpers to load
//! variants of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use arrow::util::display::array_value_to_string;
use prism_warehouse::{LoadMode, LoadOptions, LoadReport, NoProgress, Warehouse, WarehouseError};

pub const PARTNERS: &str = include_str!("../../../../fixtures/tiny/partners.csv");

pub const PRODUCTS: &str = include_str!("../../../../fixtures/tiny/products.csv");

pub const CUSTOMERS: &str = include_str!("../../../../fixtures/tiny/customers.csv");

/// Columns in another order than the contract's, an unknown column, a byte-order mark, a direct
/// sale (no partner) and a credit line.
pub const ORDERS: &str = include_str!("../../../../fixtures/tiny/orders.csv");

pub const OPPORTUNITIES: &str = include_str!("../../../../fixtures/tiny/opportunities.csv");

pub const SERVICE_REQUESTS: &str = include_str!("../../../../fixtures/tiny/service_requests.csv");

pub const SURVEYS: &str = include_str!("../../../../fixtures/tiny/satisfaction_surveys.csv");

pub const CAMPAIGNS: &str = include_str!("../../../../fixtures/tiny/campaigns.csv");

pub const DEAL_REGISTRATIONS: &str =
    include_str!("../../../../fixtures/tiny/deal_registrations.csv");

pub const MDF_REQUESTS: &str = include_str!("../../../../fixtures/tiny/mdf_requests.csv");

pub const CERTIFICATIONS: &str = include_str!("../../../../fixtures/tiny/certifications.csv");

pub fn base_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("partners.csv", PARTNERS.as_bytes().to_vec()),
        ("products.csv", PRODUCTS.as_bytes().to_vec()),
        ("customers.csv", CUSTOMERS.as_bytes().to_vec()),
        ("orders.csv", ORDERS.as_bytes().to_vec()),
        ("opportunities.csv", OPPORTUNITIES.as_bytes().to_vec()),
        ("service_requests.csv", SERVICE_REQUESTS.as_bytes().to_vec()),
        ("satisfaction_surveys.csv", SURVEYS.as_bytes().to_vec()),
        ("campaigns.csv", CAMPAIGNS.as_bytes().to_vec()),
        (
            "deal_registrations.csv",
            DEAL_REGISTRATIONS.as_bytes().to_vec(),
        ),
        ("mdf_requests.csv", MDF_REQUESTS.as_bytes().to_vec()),
        ("certifications.csv", CERTIFICATIONS.as_bytes().to_vec()),
    ]
}

/// Writes an export folder: the given files, and nothing else.
pub fn write_export(dir: &Path, files: &[(&str, Vec<u8>)]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
    dir.to_path_buf()
}

/// The base export with one file replaced (or removed, with `None`).
pub fn variant(dir: &Path, file: &str, content: Option<&[u8]>) -> PathBuf {
    let files: Vec<(&str, Vec<u8>)> = base_files()
        .into_iter()
        .filter_map(|(n, c)| {
            if n == file {
                content.map(|c| (n, c.to_vec()))
            } else {
                Some((n, c))
            }
        })
        .collect();
    write_export(dir, &files)
}

/// A generated export in `dir/export` and an empty warehouse in `dir/data`.
pub fn generated(
    dir: &Path,
    scale: f64,
    seed: u64,
) -> (PathBuf, prism_generator::GenerateSummary, Warehouse) {
    let export = dir.join("export");
    let summary = prism_generator::generate(&prism_generator::GenerateConfig {
        out: export.clone(),
        scale,
        seed,
        partners: None,
        customers: None,
    })
    .unwrap();
    (export, summary, Warehouse::open(dir.join("data")).unwrap())
}

pub async fn load(
    wh: &Warehouse,
    export: &Path,
    mode: LoadMode,
    quarantine: bool,
) -> Result<LoadReport, WarehouseError> {
    wh.load(
        &LoadOptions {
            export_dir: export.to_path_buf(),
            mode,
            quarantine,
            ..Default::default()
        },
        &NoProgress,
    )
    .await
}

/// Runs SQL over a warehouse version and returns the rows as strings, for comparison.
pub async fn query(wh: &Warehouse, as_of: Option<u64>, sql: &str) -> Vec<Vec<String>> {
    let ctx = wh.snapshot(as_of).unwrap().session().await.unwrap();
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut rows = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            rows.push(
                b.columns()
                    .iter()
                    .map(|c| array_value_to_string(c, r).unwrap())
                    .collect(),
            );
        }
    }
    rows
}

/// Everything a reader could see, as text: the version file and every table's rows in order.
pub async fn everything(wh: &Warehouse) -> String {
    let mut out = std::fs::read_to_string(wh.dir().join("warehouse.json")).unwrap_or_default();
    if wh.versions().unwrap().current().is_none() {
        return out;
    }
    for e in prism_contract::Entity::ALL {
        let key = e.key().join(", ");
        for row in query(
            wh,
            None,
            &format!("SELECT * FROM {} ORDER BY {key}", e.name()),
        )
        .await
        {
            out.push_str(&row.join("|"));
            out.push('\n');
        }
    }
    out
}
