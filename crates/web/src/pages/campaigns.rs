//! Funds and campaigns: market development funds against the pipeline they sourced.

use super::*;

/// Fills the page's panels.
pub(super) async fn build(cx: &Ctx<'_>, out: &mut Page) -> Result<(), WebError> {
    let c = prism_analyses::campaigns::campaigns(&cx.analysis()).await?;
    out.headline = c.headline();
    if c.campaigns.is_empty() {
        out.notes
            .push(NO_PROGRAM_DATA.replace("{}", "campaigns or fund requests"));
    }
    out.panels.push(
        cx.tiles(
            "kpi",
            "Funds and campaigns",
            &[
                "mdf_requested",
                "mdf_paid",
                "mdf_utilization_pct",
                "campaign_sourced_pipeline",
                "campaign_sourced_won",
                "mdf_roi",
            ],
        )
        .await?,
    );
    out.panels.push(Panel::from_table(
        "campaigns",
        "Campaigns: funds against what they sourced (paid, and no opportunity, first)",
        &c,
    ));
    Ok(())
}
