//! Sales: won business, win rate, deal size, the pipeline by stage and quarter, margin by line.

use super::*;

/// Fills the page's panels.
pub(super) async fn build(cx: &Ctx<'_>, out: &mut Page) -> Result<(), WebError> {
    out.panels.push(
        cx.tiles(
            "kpi",
            "Sales",
            &[
                "won_amount",
                "win_rate",
                "avg_deal_size",
                "avg_sales_cycle_days",
                "open_opportunities",
                "weighted_pipeline",
            ],
        )
        .await?,
    );
    out.panels.push(
        cx.chart(
            "pipeline-by-stage",
            "Open pipeline by stage",
            "bar",
            &["open_pipeline"],
            "opportunity.stage",
            None,
            None,
        )
        .await?,
    );
    out.panels.push(
        cx.chart(
            "pipeline-by-quarter",
            "Open pipeline by close quarter",
            "bar",
            &["open_pipeline"],
            "time.quarter",
            None,
            None,
        )
        .await?,
    );
    out.panels.push(
        cx.chart(
            "wins-losses",
            "Wins and losses by quarter",
            "bar",
            &["won_count", "lost_count"],
            "time.quarter",
            None,
            None,
        )
        .await?,
    );
    out.panels.push(
        cx.table(
            "margin",
            "Margin by product line",
            &["closed_revenue", "gross_margin", "gross_margin_pct"],
            &["product.product_line"],
            Some("closed_revenue:desc"),
            None,
        )
        .await?,
    );
    Ok(())
}
