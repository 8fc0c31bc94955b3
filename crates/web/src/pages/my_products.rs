//! My products (a partner's user): best and poor sellers.

use super::*;

/// Fills the page's panels.
pub(super) async fn build(cx: &Ctx<'_>, out: &mut Page) -> Result<(), WebError> {
    let user = cx.user;
    let own = own_partner(user)?;
    let products = prism_analyses::products::products(&cx.analysis(), &own).await?;
    out.headline = products.headline();
    out.panels.push(
        cx.chart(
            "by-line",
            "My revenue by product line",
            "bar",
            &["closed_revenue"],
            "product.product_line",
            Some("closed_revenue:desc"),
            None,
        )
        .await?,
    );
    out.panels.push(Panel::from_table(
        "products",
        "My products: best sellers first, poor sellers marked",
        &products,
    ));
    Ok(())
}
