//! Enablement: each partner's certified people by track and level on the period's last day,
//! the certifications expiring in the 90 days after it, and the enablement gaps: product lines
//! in which the partner had closed revenue or open pipeline in the period but nobody with a
//! valid Technical or Support certification for that line on the period's last day.

use std::collections::{BTreeMap, BTreeSet};

use prism_engine::{Filter, FilterOp, Query, Row};
use serde::Serialize;

use crate::{Context, Partner, Result, Table, Value, text};

/// The tracks that make a partner able to deliver and support a product line.
pub const DELIVERY_TRACKS: [&str; 2] = ["Technical", "Support"];

/// One partner's certified people, expiring certifications and gaps.
#[derive(Clone, Debug, Serialize)]
pub struct PartnerEnablement {
    /// The partner.
    #[serde(flatten)]
    pub partner: Partner,
    /// Distinct people with a valid certification on the period's last day.
    pub certified_people: i64,
    /// Certified people by track, and by level ("(none)" for a certification without one).
    pub by_track: BTreeMap<String, i64>,
    /// Certified people by level.
    pub by_level: BTreeMap<String, i64>,
    /// Valid certifications that expire within the 90 days after the period.
    pub expiring: i64,
    /// Product lines sold or in the pipeline without a valid Technical or Support certification.
    pub gaps: Vec<String>,
}

/// Enablement: who is certified to sell and support what.
#[derive(Clone, Debug, Serialize)]
pub struct Enablement {
    /// Every partner the audience sees that has certifications or sells, gaps first.
    pub partners: Vec<PartnerEnablement>,
}

/// Rows of a query by partner and a second dimension as (partner, member) → a count metric;
/// direct sales are no partner's.
fn by_partner_and(rows: Vec<Row>, by: &str, metric: &str) -> BTreeMap<(String, String), i64> {
    rows.into_iter()
        .filter_map(|r| {
            let partner = r.text("partner.partner_id")?.to_string();
            Some(((partner, r.get(by).exact()), r.count(metric).unwrap_or(0)))
        })
        .collect()
}

/// Each partner's enablement gaps, for the partners in `cx`'s audience.
pub async fn gaps(cx: &Context<'_>) -> Result<BTreeMap<String, Vec<String>>> {
    let selling = cx
        .run(Query {
            metrics: vec!["closed_revenue".into(), "open_pipeline".into()],
            by: vec!["partner.partner_id".into(), "product.product_line".into()],
            ..Query::default()
        })
        .await?
        .rows();
    let certified = cx
        .run(Query {
            metrics: vec!["certified_people".into()],
            by: vec![
                "partner.partner_id".into(),
                "certification.product_line".into(),
            ],
            filters: vec![Filter {
                dimension: "certification.track".into(),
                op: FilterOp::In(DELIVERY_TRACKS.iter().map(|t| t.to_string()).collect()),
            }],
            ..Query::default()
        })
        .await?
        .rows();
    let covered: BTreeSet<(String, String)> =
        by_partner_and(certified, "certification.product_line", "certified_people")
            .into_iter()
            .filter(|(_, people)| *people > 0)
            .map(|(k, _)| k)
            .collect();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in selling {
        let (Some(partner), Some(line)) = (
            r.text("partner.partner_id"),
            r.text("product.product_line").filter(|l| !l.is_empty()),
        ) else {
            continue;
        };
        let sells = |metric: &str| r.money(metric).is_some_and(|m| m.0 > 0);
        let key = (partner.to_string(), line.to_string());
        if (sells("closed_revenue") || sells("open_pipeline")) && !covered.contains(&key) {
            out.entry(key.0).or_default().push(key.1);
        }
    }
    Ok(out)
}

/// Certified people by track and level on the period's last day, expiring certifications, and the product lines each partner sells without anyone certified to deliver them.
pub async fn enablement(cx: &Context<'_>) -> Result<Enablement> {
    let state = |by: &str, metric: &str| Query {
        metrics: vec![metric.to_string()],
        by: vec!["partner.partner_id".into(), by.into()],
        ..Query::default()
    };
    // Five independent reads, asked together.
    let (by_track, by_level, totals, gaps, partners) = tokio::try_join!(
        cx.run(state("certification.track", "certified_people")),
        cx.run(state("certification.level", "certified_people")),
        cx.by_partner(&["certified_people", "expiring_certifications"]),
        gaps(cx),
        cx.partners(),
    )?;
    let by_track = by_partner_and(by_track.rows(), "certification.track", "certified_people");
    let by_level = by_partner_and(by_level.rows(), "certification.level", "certified_people");
    let mut rows: Vec<PartnerEnablement> = partners
        .values()
        .filter(|p| totals.contains_key(&p.partner_id) || gaps.contains_key(&p.partner_id))
        .map(|p| {
            let id = &p.partner_id;
            let of = |m: &BTreeMap<(String, String), i64>| -> BTreeMap<String, i64> {
                m.iter()
                    .filter(|((pid, _), n)| pid == id && **n > 0)
                    .map(|((_, v), n)| {
                        (
                            if v.is_empty() {
                                "(none)".into()
                            } else {
                                v.clone()
                            },
                            *n,
                        )
                    })
                    .collect()
            };
            let total = totals.get(id);
            let count = |metric: &str| total.and_then(|t| t.count(metric)).unwrap_or(0);
            PartnerEnablement {
                partner: p.clone(),
                certified_people: count("certified_people"),
                by_track: of(&by_track),
                by_level: of(&by_level),
                expiring: count("expiring_certifications"),
                gaps: gaps.get(id).cloned().unwrap_or_default(),
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.gaps
            .len()
            .cmp(&a.gaps.len())
            .then_with(|| a.certified_people.cmp(&b.certified_people))
            .then_with(|| a.partner.partner_id.cmp(&b.partner.partner_id))
    });
    Ok(Enablement { partners: rows })
}

impl Table for Enablement {
    fn headline(&self) -> Vec<String> {
        let with_gaps = self.partners.iter().filter(|p| !p.gaps.is_empty()).count();
        let people: i64 = self.partners.iter().map(|p| p.certified_people).sum();
        let expiring: i64 = self.partners.iter().map(|p| p.expiring).sum();
        vec![
            format!(
                "{people} certified people across {} partners; {expiring} certifications expire within 90 days",
                self.partners.len()
            ),
            format!(
                "{with_gaps} partners sell product lines nobody of theirs is certified to deliver or support (Technical or Support)"
            ),
        ]
    }

    fn header(&self) -> Vec<String> {
        [
            "partner_id",
            "partner_name",
            "tier",
            "certified_people",
            "by_track",
            "by_level",
            "expiring_90_days",
            "enablement_gaps",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn rows(&self) -> Vec<Vec<Value>> {
        let list = |m: &BTreeMap<String, i64>| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        self.partners
            .iter()
            .map(|p| {
                vec![
                    text(&p.partner.partner_id),
                    text(&p.partner.partner_name),
                    text(&p.partner.tier),
                    Value::Count(p.certified_people),
                    Value::Text(list(&p.by_track)),
                    Value::Text(list(&p.by_level)),
                    Value::Count(p.expiring),
                    Value::Text(p.gaps.join(", ")),
                ]
            })
            .collect()
    }
}
