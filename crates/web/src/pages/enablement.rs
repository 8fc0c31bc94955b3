//! Enablement: certified people by track, and partners selling lines nobody of theirs is
//! certified to deliver.

use super::*;

/// Fills the page's panels.
pub(super) async fn build(cx: &Ctx<'_>, out: &mut Page) -> Result<(), WebError> {
    let e = prism_analyses::enablement::enablement(&cx.analysis()).await?;
    out.headline = e.headline();
    if e.partners
        .iter()
        .all(|p| p.certified_people == 0 && p.by_track.is_empty())
    {
        out.notes
            .push(NO_PROGRAM_DATA.replace("{}", "certifications"));
    }
    out.panels.push(
        cx.tiles(
            "kpi",
            "Enablement",
            &[
                "certified_people",
                "expiring_certifications",
                "certifications_earned",
            ],
        )
        .await?,
    );
    out.panels.push(
        cx.chart(
            "by-track",
            "Certified people by track, on the period's last day",
            "bar",
            &["certified_people"],
            "certification.track",
            None,
            None,
        )
        .await?,
    );
    out.panels.push(Panel::from_table(
        "partners",
        "Partners, those selling lines nobody of theirs is certified to deliver first",
        &e,
    ));
    Ok(())
}
