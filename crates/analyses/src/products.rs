//! A partner's products in a period: every product with closed_revenue, units_sold and the
//! change against the previous period; the best sellers (top by revenue) and the poor sellers
//! (the products of the partner's active lines with the lowest revenue, those it did not sell
//! at all included).

use std::collections::{BTreeMap, BTreeSet};

use prism_engine::{Query, Row};
use serde::Serialize;

use crate::{Context, Money, Result, Table, Value, pct, text};

/// How many best and poor sellers are named.
pub const TOP: usize = 5;

/// One product of a partner.
#[derive(Clone, Debug, Serialize)]
pub struct ProductRow {
    /// The product's id.
    pub product_id: String,
    /// Its name.
    pub product_name: String,
    /// Its product line.
    pub product_line: String,
    /// The partner's revenue of it in the period.
    pub closed_revenue: Option<Money>,
    /// Units sold in the period.
    pub units_sold: Option<i64>,
    /// Revenue in the previous period of the same length.
    pub previous_revenue: Option<Money>,
    /// Revenue minus the previous period's.
    pub revenue_change: Option<Money>,
    /// The change against the absolute previous revenue, in percent.
    pub revenue_change_pct: Option<f64>,
    /// Units sold in the previous period.
    pub previous_units: Option<i64>,
    /// "best seller", "poor seller", or none.
    pub role: Option<&'static str>,
}

/// One partner's products: best and poor sellers.
#[derive(Clone, Debug, Serialize)]
pub struct Products {
    /// The partner.
    pub partner_id: String,
    /// The product lines it sells.
    pub active_lines: Vec<String>,
    /// Its products in those lines, best seller first, unsold included.
    pub rows: Vec<ProductRow>,
}

/// The partner's products: revenue, units and the change against the previous period; best sellers and poor sellers.
pub async fn products(cx: &Context<'_>, partner: &str) -> Result<Products> {
    cx.check_partner(partner)?;
    let compare = cx.period.is_some();
    let mut metrics = vec!["closed_revenue", "units_sold"];
    if compare {
        metrics.extend([
            "closed_revenue:previous_period",
            "closed_revenue:change",
            "closed_revenue:change_pct",
            "units_sold:previous_period",
        ]);
    }
    let sold = cx
        .run_for(
            partner,
            Query {
                metrics: metrics.iter().map(|m| m.to_string()).collect(),
                by: vec!["product.product_id".into()],
                ..Query::default()
            },
        )
        .await?;
    let sold: BTreeMap<String, Row> = sold
        .rows()
        .into_iter()
        .map(|r| (r.get("product.product_id").exact(), r))
        .collect();
    let catalogue = cx
        .engine
        .members(cx.session, "product", &cx.audience)
        .await?;

    let mut rows: Vec<ProductRow> = Vec::new();
    for p in catalogue.rows() {
        let id = p.get("product.product_id").exact();
        let v = sold.get(&id);
        // The comparisons are asked only over a period.
        let compared = |metric: &str| v.filter(|_| compare).map(|v| v.get(metric));
        rows.push(ProductRow {
            product_name: p.get("product.product_name").exact(),
            product_line: p.get("product.product_line").exact(),
            product_id: id,
            closed_revenue: v.and_then(|v| v.money("closed_revenue")),
            units_sold: v.and_then(|v| v.count("units_sold")),
            previous_revenue: compared("closed_revenue:previous_period").and_then(Value::money),
            revenue_change: compared("closed_revenue:change").and_then(Value::money),
            revenue_change_pct: compared("closed_revenue:change_pct").and_then(Value::number),
            previous_units: compared("units_sold:previous_period").and_then(Value::count),
            role: None,
        });
    }
    // Lines in which the partner sold anything in the period.
    let active: BTreeSet<String> = rows
        .iter()
        .filter(|r| r.closed_revenue.is_some())
        .map(|r| r.product_line.clone())
        .collect();
    // Everything sold, and every product of an active line: the others are not this partner's business.
    rows.retain(|r| r.closed_revenue.is_some() || active.contains(&r.product_line));
    Ok(Products {
        partner_id: partner.to_string(),
        active_lines: active.into_iter().collect(),
        rows: ranked(rows),
    })
}

/// The products best seller first (by revenue, then id), the `TOP` best sellers (those that
/// sold) and the `TOP` poorest of the others marked.
fn ranked(mut rows: Vec<ProductRow>) -> Vec<ProductRow> {
    let revenue = |r: &ProductRow| r.closed_revenue.unwrap_or_default();
    let mut by_revenue: Vec<usize> = (0..rows.len()).collect();
    by_revenue.sort_by(|&a, &b| {
        revenue(&rows[b])
            .cmp(&revenue(&rows[a]))
            .then_with(|| rows[a].product_id.cmp(&rows[b].product_id))
    });
    let best: Vec<usize> = by_revenue
        .iter()
        .copied()
        .filter(|&i| revenue(&rows[i]).0 > 0)
        .take(TOP)
        .collect();
    let poor: Vec<usize> = by_revenue
        .iter()
        .rev()
        .copied()
        .filter(|i| !best.contains(i))
        .take(TOP)
        .collect();
    for i in best {
        rows[i].role = Some("best seller");
    }
    for i in poor {
        rows[i].role = Some("poor seller");
    }
    by_revenue.into_iter().map(|i| rows[i].clone()).collect()
}

impl Table for Products {
    fn headline(&self) -> Vec<String> {
        vec![format!(
            "partner {}: {} products in its active lines ({}); best sellers first, poor sellers (lowest revenue, unsold included) marked",
            self.partner_id,
            self.rows.len(),
            self.active_lines.join(", ")
        )]
    }

    fn header(&self) -> Vec<String> {
        [
            "product_id",
            "product_name",
            "product_line",
            "closed_revenue",
            "units_sold",
            "previous_revenue",
            "revenue_change",
            "revenue_change_pct",
            "previous_units",
            "role",
        ]
        .map(String::from)
        .to_vec()
    }

    fn rows(&self) -> Vec<Vec<Value>> {
        self.rows
            .iter()
            .map(|r| {
                vec![
                    text(&r.product_id),
                    text(&r.product_name),
                    text(&r.product_line),
                    r.closed_revenue.into(),
                    r.units_sold.into(),
                    r.previous_revenue.into(),
                    r.revenue_change.into(),
                    pct(r.revenue_change_pct),
                    r.previous_units.into(),
                    r.role.map_or(Value::Missing, text),
                ]
            })
            .collect()
    }
}
