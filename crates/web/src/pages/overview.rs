//! The channel Overview: the six key figures with their change, revenue and pipeline over time,
//! revenue by tier, type and region, and the top partners.

use super::*;

/// The channel's key figures.
const KEY_FIGURES: [&str; 6] = [
    "closed_revenue",
    "open_pipeline",
    "win_rate",
    "csat_avg",
    "avg_first_response_hours",
    "indirect_revenue_share",
];

/// Fills the page's panels.
pub(super) async fn build(cx: &Ctx<'_>, out: &mut Page) -> Result<(), WebError> {
    // Seven independent questions, asked side by side (each is small; together they
    // keep both cores busy), shown in this order.
    // With a period, each top partner's change against the previous period, as a column.
    let top_figures: &[&str] = if cx.period.is_some() {
        &[
            "closed_revenue",
            "closed_revenue:change_pct",
            "closed_revenue:pct_of_total",
            "win_rate",
            "csat_avg",
        ]
    } else {
        &[
            "closed_revenue",
            "closed_revenue:pct_of_total",
            "win_rate",
            "csat_avg",
        ]
    };
    // Revenue by a partner attribute, the largest first.
    let revenue_by = |id, title, kind, dimension| {
        cx.chart(
            id,
            title,
            kind,
            &["closed_revenue"],
            dimension,
            Some("closed_revenue:desc"),
            None,
        )
    };
    let (kpi, revenue, pipeline, by_tier, by_type, by_region, top) = tokio::try_join!(
        cx.tiles("kpi", "Key figures", &KEY_FIGURES),
        cx.chart(
            "revenue-trend",
            "Closed revenue by month",
            "line",
            &["closed_revenue"],
            "time.month",
            None,
            None
        ),
        cx.chart(
            "pipeline-trend",
            "Open pipeline by expected close month",
            "bar",
            &["open_pipeline"],
            "time.month",
            None,
            None
        ),
        revenue_by("by-tier", "Revenue by tier", "bar", "partner.tier"),
        revenue_by(
            "by-type",
            "Revenue by partner type",
            "pie",
            "partner.partner_type"
        ),
        revenue_by("by-region", "Revenue by region", "bar", "partner.region"),
        cx.table(
            "top-partners",
            "Top partners by revenue",
            top_figures,
            &[
                "partner.partner_id",
                "partner.partner_name",
                "partner.tier",
                "partner.region"
            ],
            Some("closed_revenue:desc"),
            Some(15)
        ),
    )?;
    out.panels
        .extend([kpi, revenue, pipeline, by_tier, by_type, by_region, top]);
    Ok(())
}
