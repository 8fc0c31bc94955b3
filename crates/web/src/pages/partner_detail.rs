//! One partner's page: its key figures, its side of the partner program, revenue over time,
//! products and customers — refused when the partner is outside the user's audience.

use super::*;

/// The partner's key figures.
const KEY_FIGURES: [&str; 6] = [
    "closed_revenue",
    "open_pipeline",
    "win_rate",
    "csat_avg",
    "avg_first_response_hours",
    "sla_met_pct",
];

/// Its side of the partner program: registrations, funds, enablement.
const PROGRAM: [&str; 7] = [
    "registrations",
    "registration_approval_rate",
    "registration_win_rate",
    "mdf_paid",
    "mdf_roi",
    "certified_people",
    "expiring_certifications",
];

/// The page's title and headline: the partner's name, id, tier, type, region and status;
/// not found when the audience (narrowed to it) has no such partner.
async fn heading(cx: &Ctx<'_>, out: &mut Page, id: &str) -> Result<(), WebError> {
    let partners = cx
        .st
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
    Ok(())
}

/// Fills the page's panels.
pub(super) async fn build(
    cx: &mut Ctx<'_>,
    out: &mut Page,
    id: Option<&str>,
) -> Result<(), WebError> {
    let st = cx.st;
    let id = id.ok_or_else(|| WebError::NotFound("which partner?".into()))?;
    // The partners this one is ranked among: the user's whole audience, kept before narrowing.
    let among = cx.audience.clone();
    // From here on, only this partner's rows: refused when it is not the user's.
    cx.audience = cx.audience.narrow_to(id)?;
    heading(cx, out, id).await?;
    let session = cx.session.clone();
    let channel = prism_analyses::Context {
        engine: &st.engine,
        session: &session,
        audience: among,
        period: cx.period,
    };
    let (kpi, program, trend, products, customers, profile) = tokio::try_join!(
        cx.tiles("kpi", "Key figures", &KEY_FIGURES),
        cx.tiles("program", "Partner program", &PROGRAM),
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
        profile(&channel, id, cx.user.is_partner_user()),
    )?;
    out.panels.extend([
        kpi,
        program,
        trend,
        Panel::from_table("products", "Products", &products),
        customers,
    ]);
    out.panels.extend(profile);
    Ok(())
}

/// The partner's percentile rank on each scorecard attribute among the partners the user sees,
/// beside the median partner's 50: where it stands, at a glance. Not for a partner's own user,
/// whose ranks would be read from other partners' values; its benchmarks (My performance)
/// compare it with the channel over at least 5 partners instead.
async fn profile(
    channel: &prism_analyses::Context<'_>,
    id: &str,
    partner_user: bool,
) -> Result<Option<Panel>, WebError> {
    if partner_user {
        return Ok(None);
    }
    let card = prism_analyses::scorecard::scorecard(
        channel,
        prism_analyses::scorecard::Weights::default(),
    )
    .await?;
    let Some(row) = card.rows.iter().find(|r| r.partner.partner_id == id) else {
        return Ok(None);
    };
    let model = &channel.engine.model;
    let mut p = Panel::new(
        "chart",
        "profile",
        &format!(
            "Percentile rank among the {} partners you see (the median partner ranks 50)",
            card.rows.len()
        ),
    );
    p.chart = Some(Chart {
        kind: "bar",
        categories: row
            .attributes
            .iter()
            .map(|a| model.label(a.metric))
            .collect(),
        series: vec![
            Series {
                name: "This partner".into(),
                values: row.attributes.iter().map(|a| a.percentile).collect(),
                ..Default::default()
            },
            Series {
                name: "Median partner".into(),
                values: row.attributes.iter().map(|_| Some(50.0)).collect(),
                ..Default::default()
            },
        ],
    });
    p.header = ["attribute", "value", "percentile"]
        .map(String::from)
        .to_vec();
    p.rows = row
        .attributes
        .iter()
        .map(|a| {
            vec![
                a.metric.to_string(),
                a.value.exact(),
                a.percentile.map_or(String::new(), |v| v.to_string()),
            ]
        })
        .collect();
    Ok(Some(p))
}
