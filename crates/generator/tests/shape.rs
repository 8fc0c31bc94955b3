//! The demo channel has the shape the product is meant to reveal: a heavy tail of partner
//! revenue, some direct sales, partners without revenue, and names that test the CSV quoting.

use std::collections::HashMap;

use prism_generator::{GenerateConfig, generate};

#[test]
fn partner_revenue_is_heavy_tailed_with_direct_sales_and_partners_without_revenue() {
    let tmp = tempfile::tempdir().unwrap();
    let summary = generate(&GenerateConfig {
        out: tmp.path().to_path_buf(),
        scale: 0.05,
        seed: 42,
        partners: None,
        customers: None,
    })
    .unwrap();

    let mut by_partner: HashMap<String, f64> = HashMap::new();
    let mut direct = 0.0;
    let mut total = 0.0;
    let mut reader = csv::Reader::from_path(tmp.path().join("orders.csv")).unwrap();
    for r in reader.records() {
        let r = r.unwrap();
        let revenue: f64 = r[7].parse().unwrap();
        total += revenue;
        if r[2].is_empty() {
            direct += revenue;
        } else {
            *by_partner.entry(r[2].to_string()).or_default() += revenue;
        }
    }
    let partners = summary.rows_of(prism_contract::Entity::Partners) as usize;
    let mut revenues: Vec<f64> = by_partner.values().copied().collect();
    revenues.sort_by(|a, b| b.total_cmp(a));
    let partner_total: f64 = revenues.iter().sum();
    let top_fifth: f64 = revenues.iter().take(partners / 5).sum();
    assert!(
        top_fifth / partner_total > 0.7,
        "the top 20 % of partners bring {:.0} %",
        100.0 * top_fifth / partner_total
    );
    let direct_share = direct / total;
    assert!(
        (0.03..0.15).contains(&direct_share),
        "direct share {direct_share}"
    );
    assert!(by_partner.len() < partners, "some partners have not sold");

    let names = std::fs::read_to_string(tmp.path().join("partners.csv")).unwrap();
    assert!(names.contains('"'), "some names need quoting");
    assert!(!names.is_ascii(), "some names are not ASCII");
}

#[test]
fn a_scale_that_is_not_positive_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let err = generate(&GenerateConfig {
        out: tmp.path().to_path_buf(),
        scale: 0.0,
        seed: 1,
        partners: None,
        customers: None,
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "scale must be a positive number, found 0");
}

/// Every file of an export folder, by name.
fn files(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn partners_and_customers_may_be_set_apart_from_the_scale() {
    let config = |out: &std::path::Path, partners, customers| GenerateConfig {
        out: out.to_path_buf(),
        scale: 0.05,
        seed: 9,
        partners,
        customers,
    };
    // The scale's own counts given explicitly (300 × √0.05 = 67.08 → 67 partners, 45,000 ×
    // 0.05 = 2,250 customers): the same export, byte for byte.
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    generate(&config(a.path(), None, None)).unwrap();
    generate(&config(b.path(), Some(67), Some(2250))).unwrap();
    assert!(
        files(a.path()) == files(b.path()),
        "the default shape moved"
    );

    // A long tail of partners and many customers for the same volume of order lines.
    let c = tempfile::tempdir().unwrap();
    let summary = generate(&config(c.path(), Some(400), Some(9000))).unwrap();
    assert_eq!(summary.rows_of(prism_contract::Entity::Partners), 400);
    assert_eq!(summary.rows_of(prism_contract::Entity::Customers), 9000);
    let rows = |dir: &std::path::Path, file: &str| {
        csv::Reader::from_path(dir.join(file))
            .unwrap()
            .records()
            .count() as u64
    };
    assert_eq!(rows(c.path(), "partners.csv"), 400);
    assert_eq!(rows(c.path(), "customers.csv"), 9000);
    let (default_lines, shaped_lines) =
        (rows(a.path(), "orders.csv"), rows(c.path(), "orders.csv"));
    assert!(
        shaped_lines.abs_diff(default_lines) * 5 < default_lines,
        "order lines {shaped_lines} against {default_lines}: the volume follows the scale"
    );

    let err = generate(&config(c.path(), Some(3), None)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "3 partners and 2250 customers: an export needs at least 12 partners and 60 customers"
    );
}
