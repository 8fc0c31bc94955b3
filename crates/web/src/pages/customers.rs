//! Customers: revenue by industry, size and revenue band, the top accounts and the high-risk
//! accounts.

use super::*;

/// The high-risk accounts the page shows, most urgent first.
const SHOWN_AT_RISK: usize = 100;

/// Fills the page's panels.
pub(super) async fn build(cx: &Ctx<'_>, out: &mut Page) -> Result<(), WebError> {
    // The panels do not depend on each other: asked side by side, the high-risk accounts
    // (the longest, through every survey and customer) overlap the rest.
    let (by_industry, by_size, by_band, top, risk) = tokio::try_join!(
        cx.chart(
            "by-industry",
            "Revenue by industry",
            "bar",
            &["closed_revenue"],
            "customer.industry",
            Some("closed_revenue:desc"),
            None
        ),
        cx.chart(
            "by-size",
            "Revenue by company size",
            "pie",
            &["closed_revenue"],
            "customer.size_band",
            None,
            None
        ),
        cx.chart(
            "by-revenue-band",
            "Revenue by the customer's own annual revenue",
            "bar",
            &["closed_revenue"],
            "customer.annual_revenue_band",
            None,
            None
        ),
        cx.top_table(
            "top-accounts",
            "Top accounts",
            "closed_revenue",
            &["order_count", "csat_avg"],
            &[
                "customer.customer_id",
                "customer.customer_name",
                "customer.industry",
                "customer.size_band"
            ],
            20
        ),
        // The most urgent alone (at scale 100, 680 k accounts are at risk); the headline
        // counts them all.
        async {
            Ok::<_, WebError>(
                prism_analyses::risk::risk_top(&cx.analysis(), Some(SHOWN_AT_RISK)).await?,
            )
        },
    )?;
    out.panels.extend([by_industry, by_size, by_band, top]);
    let headline = risk.headline().join(" ");
    let mut p = Panel::from_table("high-risk", "High-risk accounts", &risk);
    p.note = Some(headline);
    out.panels.push(p);
    Ok(())
}
