//! A tiny export whose every figure is known by hand, and helpers to load variants of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use arrow::util::display::array_value_to_string;
use prism_warehouse::{LoadMode, LoadOptions, LoadReport, NoProgress, Warehouse, WarehouseError};

pub const PARTNERS: &str = "partner_id,partner_name,tier,partner_type,region,country,joined_on,status
P-1,\"Acme, \"\"Best\"\" Partners\",Gold,Reseller,EMEA,Germany,2020-01-15,Active
P-2,Müller & Söhne,Silver,System Integrator,EMEA,,,Active
P-3,東京データ,Registered,ISV,APAC,Japan,2021-06-01,Inactive
";

pub const PRODUCTS: &str = "product_id,product_name,product_line,category,list_price
PR-1,Cloud Pro,Cloud Infrastructure,Subscription,1200.00
PR-2,Firewall X,Security,,99.5
";

pub const CUSTOMERS: &str = "customer_id,customer_name,industry,size_band,region,country,annual_revenue
C-1,General Hospital,Healthcare,Enterprise,EMEA,Germany,2500000000
C-2,\"Bank of Foo, Inc.\",Financial Services,Mid-Market,EMEA,,
";

/// Columns in another order than the contract's, an unknown column, a byte-order mark, a direct
/// sale (no partner) and a credit line.
pub const ORDERS: &str = "\u{feff}order_id,line_number,customer_id,product_id,partner_id,order_date,quantity,revenue,cost,note
O-1,1,C-1,PR-1,P-1,2024-01-10,2,2400.00,1500.00,hello
O-1,2,C-1,PR-2,P-1,2024-01-10,1,99.50,,
O-2,1,C-2,PR-1,,2024-02-01,1,1200,800,
O-3,1,C-2,PR-2,P-2,2024-03-05,1,-49.75,-30.00,return
";

pub const OPPORTUNITIES: &str = "opportunity_id,partner_id,customer_id,product_id,stage,amount,probability,created_on,close_date,deal_registered
OP-1,P-1,C-1,PR-1,Proposal,10000,50,2024-01-01,2024-06-30,yes
OP-2,,C-2,PR-2,Closed Won,500.00,100,2024-01-01,2024-02-15,
OP-3,P-2,C-2,PR-1,closed lost,700,0,2024-02-01,2024-03-01,FALSE
";

pub const SERVICE_REQUESTS: &str = "request_id,partner_id,customer_id,product_id,priority,opened_at,first_response_at,resolved_at
SR-1,P-1,C-1,PR-1,P1,2024-01-10T08:00:00,2024-01-10T08:30:00.250Z,2024-01-10T12:00:00+02:00
SR-2,P-2,C-2,,P3,2024-02-01T09:00:00Z,,
";

pub const SURVEYS: &str = "survey_id,partner_id,customer_id,request_id,surveyed_on,score
S-1,P-1,C-1,SR-1,2024-01-12,5
S-2,P-2,C-2,,2024-02-10,2
";

pub fn base_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("partners.csv", PARTNERS.as_bytes().to_vec()),
        ("products.csv", PRODUCTS.as_bytes().to_vec()),
        ("customers.csv", CUSTOMERS.as_bytes().to_vec()),
        ("orders.csv", ORDERS.as_bytes().to_vec()),
        ("opportunities.csv", OPPORTUNITIES.as_bytes().to_vec()),
        ("service_requests.csv", SERVICE_REQUESTS.as_bytes().to_vec()),
        ("satisfaction_surveys.csv", SURVEYS.as_bytes().to_vec()),
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
        .filter_map(|(n, c)| if n == file { content.map(|c| (n, c.to_vec())) } else { Some((n, c)) })
        .collect();
    write_export(dir, &files)
}

pub async fn load(wh: &Warehouse, export: &Path, mode: LoadMode, quarantine: bool) -> Result<LoadReport, WarehouseError> {
    wh.load(&LoadOptions { export_dir: export.to_path_buf(), mode, quarantine }, &NoProgress).await
}

/// Runs SQL over a warehouse version and returns the rows as strings, for comparison.
pub async fn query(wh: &Warehouse, as_of: Option<u64>, sql: &str) -> Vec<Vec<String>> {
    let ctx = wh.snapshot(as_of).unwrap().session().await.unwrap();
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut rows = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            rows.push(b.columns().iter().map(|c| array_value_to_string(c, r).unwrap()).collect());
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
        for row in query(wh, None, &format!("SELECT * FROM {} ORDER BY {key}", e.name())).await {
            out.push_str(&row.join("|"));
            out.push('\n');
        }
    }
    out
}
