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
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "scale must be a positive number, found 0");
}
