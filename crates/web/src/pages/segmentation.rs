//! Segmentation: the 20 % of partners that bring 80 % of the revenue (the Pareto classes).

use super::*;

/// Fills the page's panels.
pub(super) async fn build(cx: &Ctx<'_>, out: &mut Page) -> Result<(), WebError> {
    let p = prism_analyses::pareto::pareto(&cx.analysis(), None).await?;
    out.headline = p.headline();
    let mut chart = Panel::new(
        "chart",
        "pareto-chart",
        "Cumulative share of partner revenue, largest partners first",
    );
    let top: Vec<&prism_analyses::pareto::ParetoRow> = p.rows.iter().take(60).collect();
    chart.chart = Some(Chart {
        kind: "bar",
        categories: top.iter().map(|r| r.partner.partner_name.clone()).collect(),
        series: vec![Series {
            name: "cumulative_pct".into(),
            values: top.iter().map(|r| r.cumulative_pct).collect(),
            ..Default::default()
        }],
    });
    out.panels.push(chart);
    out.panels.push(Panel::from_table(
        "partners",
        "Partners by revenue, with their class (export: a program list)",
        &p,
    ));
    Ok(())
}
