//! One partner's page: its key figures, its side of the partner program, revenue over time,
//! products and customers — refused when the partner is outside the user's audience.

use super::*;

/// Fills the page's panels.
pub(super) async fn build(
    cx: &mut Ctx<'_>,
    out: &mut Page,
    id: Option<&str>,
) -> Result<(), WebError> {
    let st = cx.st;
    let id = id.ok_or_else(|| WebError::NotFound("which partner?".into()))?;
    // From here on, only this partner's rows: refused when it is not the user's.
    cx.audience = cx.audience.narrow_to(id)?;
    let partners = st
        .engine
        .members(&cx.session, "partner", &cx.audience)
        .await?;
    let rows = partners.rows();
    let Some(row) = rows.first() else {
        return Err(WebError::NotFound(format!("no partner {id}")));
    };
    let at = |n: &str| row.get(n).exact();
    out.title = at("partner.partner_name");
    out.headline = vec![format!(
        "{} · {} · {} · {} · {}",
        id,
        at("partner.tier"),
        at("partner.partner_type"),
        at("partner.region"),
        at("partner.status")
    )];
    let (kpi, program, trend, products, customers) = tokio::try_join!(
        cx.tiles(
            "kpi",
            "Key figures",
            &[
                "closed_revenue",
                "open_pipeline",
                "win_rate",
                "csat_avg",
                "avg_first_response_hours",
                "sla_met_pct"
            ]
        ),
        // Its side of the partner program: registrations, funds, enablement.
        cx.tiles(
            "program",
            "Partner program",
            &[
                "registrations",
                "registration_approval_rate",
                "registration_win_rate",
                "mdf_paid",
                "mdf_roi",
                "certified_people",
                "expiring_certifications"
            ]
        ),
        cx.chart(
            "revenue-trend",
            "Closed revenue by month",
            "line",
            &["closed_revenue"],
            "time.month",
            None,
            None
        ),
        async { Ok::<_, WebError>(prism_analyses::products::products(&cx.analysis(), id).await?) },
        cx.top_table(
            "customers",
            "Customers",
            "closed_revenue",
            &["order_count", "open_sr_count", "csat_avg"],
            &[
                "customer.customer_id",
                "customer.customer_name",
                "customer.industry",
                "customer.size_band"
            ],
            50
        ),
    )?;
    out.panels.extend([
        kpi,
        program,
        trend,
        Panel::from_table("products", "Products", &products),
        customers,
    ]);
    Ok(())
}
