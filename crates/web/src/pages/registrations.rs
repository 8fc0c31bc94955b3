//! Deal registration: the funnel from submitted to won, by partner.

use super::*;

/// Fills the page's panels.
pub(super) async fn build(cx: &Ctx<'_>, out: &mut Page) -> Result<(), WebError> {
    let r = prism_analyses::registrations::registrations(&cx.analysis()).await?;
    out.headline = r.headline();
    if r.total.submitted == 0 {
        out.notes
            .push(NO_PROGRAM_DATA.replace("{}", "deal registrations"));
    }
    out.panels.push(
        cx.tiles(
            "kpi",
            "Deal registration",
            &[
                "registrations",
                "registration_approval_rate",
                "avg_registration_decision_days",
                "registration_win_rate",
                "pending_registrations",
            ],
        )
        .await?,
    );
    out.panels.push(
        cx.chart(
            "by-status",
            "Registrations by status",
            "bar",
            &["registrations"],
            "deal_registration.status",
            None,
            None,
        )
        .await?,
    );
    out.panels.push(Panel::from_table(
        "partners",
        "Each partner's funnel; the bottom quartile of approval or registered win rate flagged",
        &r,
    ));
    Ok(())
}
