//! The partner scorecard: every partner's weighted percentile score, with the user's weights.

use super::*;

/// Fills the page's panels.
pub(super) async fn build(cx: &Ctx<'_>, out: &mut Page, prompts: &Prompts) -> Result<(), WebError> {
    let weights = weights(prompts)?;
    let s = prism_analyses::scorecard::scorecard(&cx.analysis(), weights).await?;
    out.headline = s.headline();
    out.panels.push(Panel::from_table(
        "scorecard",
        "Partners ranked by score",
        &s,
    ));
    Ok(())
}
