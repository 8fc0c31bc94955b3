//! Under-performers: partners in the bottom of the scorecard, each with why.

use super::*;

/// Fills the page's panels.
pub(super) async fn build(cx: &Ctx<'_>, out: &mut Page, prompts: &Prompts) -> Result<(), WebError> {
    let weights = weights(prompts)?;
    let u = prism_analyses::underperformers::underperformers(&cx.analysis(), weights).await?;
    out.headline = u.headline();
    out.panels.push(Panel::from_table(
        "underperformers",
        "Partners flagged, worst first (export: an improvement-program list)",
        &u,
    ));
    Ok(())
}
