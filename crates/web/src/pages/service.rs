//! Service: requests, response and resolution times, SLA, CSAT over time, open critical
//! requests by partner.

use super::*;

/// Fills the page's panels.
pub(super) async fn build(cx: &Ctx<'_>, out: &mut Page) -> Result<(), WebError> {
    out.panels.push(
        cx.tiles(
            "kpi",
            "Service",
            &[
                "sr_count",
                "open_sr_count",
                "avg_first_response_hours",
                "avg_resolution_hours",
                "sla_met_pct",
                "resolution_rate",
            ],
        )
        .await?,
    );
    out.panels.push(
        cx.chart(
            "csat-trend",
            "CSAT by month",
            "line",
            &["csat_avg"],
            "time.month",
            None,
            None,
        )
        .await?,
    );
    out.panels.push(
        cx.table(
            "by-priority",
            "By priority",
            &[
                "sr_count",
                "open_sr_count",
                "avg_first_response_hours",
                "avg_resolution_hours",
                "sla_met_pct",
            ],
            &["service_request.priority"],
            None,
            None,
        )
        .await?,
    );
    let critical = Filter {
        dimension: "service_request.priority".into(),
        op: FilterOp::In(vec!["P1".into(), "P2".into()]),
    };
    let mut q = cx.query(
        &["open_sr_count"],
        &["partner.partner_id", "partner.partner_name"],
        Some("open_sr_count:desc"),
        Some(20),
    )?;
    q.filters.push(critical);
    let r = cx.run(&q).await?;
    let mut p = Panel::new(
        "table",
        "open-critical",
        "Open critical (P1/P2) requests by partner",
    );
    p.header = r.columns.iter().map(|c| c.name.clone()).collect();
    p.rows = r.formatted_rows();
    p.links = partner_links(&r);
    out.panels.push(p);
    Ok(())
}
