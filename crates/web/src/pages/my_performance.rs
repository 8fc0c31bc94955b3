//! My performance (a partner's user): its key figures against the channel's.

use super::*;

/// Fills the page's panels.
pub(super) async fn build(cx: &Ctx<'_>, out: &mut Page) -> Result<(), WebError> {
    let user = cx.user;
    let own = own_partner(user)?;
    out.panels.push(
        cx.tiles(
            "kpi",
            "My key figures",
            &[
                "closed_revenue",
                "open_pipeline",
                "win_rate",
                "csat_avg",
                "avg_first_response_hours",
                "sla_met_pct",
            ],
        )
        .await?,
    );
    let b = prism_analyses::benchmarks::benchmarks(&cx.analysis(), &own).await?;
    out.headline = b.headline();
    out.panels.push(Panel::from_table(
        "benchmarks",
        "Against the channel (channel figures over at least 5 partners)",
        &b,
    ));
    out.panels.push(
        cx.chart(
            "csat-trend",
            "My CSAT by month",
            "line",
            &["csat_avg"],
            "time.month",
            None,
            None,
        )
        .await?,
    );
    out.panels.push(
        cx.chart(
            "revenue-trend",
            "My revenue by month",
            "line",
            &["closed_revenue"],
            "time.month",
            None,
            None,
        )
        .await?,
    );
    Ok(())
}
