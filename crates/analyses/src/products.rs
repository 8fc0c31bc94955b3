//! A partner's products in a period: every product with closed_revenue, units_sold and the
//! change against the previous period; the best sellers (top by revenue) and the poor sellers
//! (the products of the partner's active lines with the lowest revenue, those it did not sell
//! at all included).

use std::collections::{BTreeMap, BTreeSet};

use prism_engine::Query;
use serde::Serialize;

use crate::{Context, Money, Result, Table, number, opt, pct};

/// How many best and poor sellers are named.
pub const TOP: usize = 5;

#[derive(Clone, Debug, Serialize)]
pub struct ProductRow {
    pub product_id: String,
    pub product_name: String,
    pub product_line: String,
    pub closed_revenue: Option<Money>,
    pub units_sold: Option<i64>,
    pub previous_revenue: Option<Money>,
    pub revenue_change: Option<Money>,
    pub revenue_change_pct: Option<f64>,
    pub previous_units: Option<i64>,
    /// "best seller", "poor seller", or none.
    pub role: Option<&'static str>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Products {
    pub partner_id: String,
    pub active_lines: Vec<String>,
    pub rows: Vec<ProductRow>,
}

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
    let sold: BTreeMap<String, Vec<String>> = sold
        .formatted_rows()
        .into_iter()
        .map(|mut r| (r.remove(0), r))
        .collect();
    let catalogue = cx
        .engine
        .members(cx.session, "product", &cx.audience)
        .await?;
    let at = |n: &str| catalogue.column(n).expect("the shipped product dimension");
    let (id, name, line) = (
        at("product.product_id"),
        at("product.product_name"),
        at("product.product_line"),
    );

    let mut rows: Vec<ProductRow> = Vec::new();
    for p in catalogue.formatted_rows() {
        let v = sold.get(&p[id]);
        let cell = |i: usize| v.map(|v| v[i].clone()).filter(|s| !s.is_empty());
        rows.push(ProductRow {
            product_id: p[id].clone(),
            product_name: p[name].clone(),
            product_line: p[line].clone(),
            closed_revenue: cell(0).and_then(|s| Money::parse(&s)),
            units_sold: cell(1).and_then(|s| s.parse().ok()),
            previous_revenue: if compare {
                cell(2).and_then(|s| Money::parse(&s))
            } else {
                None
            },
            revenue_change: if compare {
                cell(3).and_then(|s| Money::parse(&s))
            } else {
                None
            },
            revenue_change_pct: if compare {
                cell(4).and_then(|s| number(&s))
            } else {
                None
            },
            previous_units: if compare {
                cell(5).and_then(|s| s.parse().ok())
            } else {
                None
            },
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
    let order: Vec<ProductRow> = by_revenue.into_iter().map(|i| rows[i].clone()).collect();
    Ok(Products {
        partner_id: partner.to_string(),
        active_lines: active.into_iter().collect(),
        rows: order,
    })
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

    fn rows(&self) -> Vec<Vec<String>> {
        self.rows
            .iter()
            .map(|r| {
                vec![
                    r.product_id.clone(),
                    r.product_name.clone(),
                    r.product_line.clone(),
                    opt(r.closed_revenue),
                    opt(r.units_sold),
                    opt(r.previous_revenue),
                    opt(r.revenue_change),
                    pct(r.revenue_change_pct),
                    opt(r.previous_units),
                    r.role.unwrap_or_default().to_string(),
                ]
            })
            .collect()
    }
}
