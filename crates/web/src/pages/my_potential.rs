//! My customer potential (a partner's user): its poor sellers and where each could sell, then a
//! product's segments and a segment's target list.

use super::*;

/// Fills the page's panels.
pub(super) async fn build(cx: &Ctx<'_>, out: &mut Page, prompts: &Prompts) -> Result<(), WebError> {
    let user = cx.user;
    let own = own_partner(user)?;
    match given(&prompts.product) {
        // On arrival, the scenario's question answered: where could my poorly selling
        // products sell?
        None => {
            let guide = prism_analyses::potential::guide(&cx.analysis(), &own).await?;
            out.headline = guide.headline();
            let mut p = Panel::from_table(
                "poor-sellers",
                "Your poor sellers and where each could sell",
                &guide,
            );
            p.links = guide
                .products
                .iter()
                .map(|g| {
                    Some(match &g.best_segment {
                        Some(s) => format!(
                            "/my/potential?product={}&segment={}",
                            url(&g.product_id),
                            url(s)
                        ),
                        None => format!("/my/potential?product={}", url(&g.product_id)),
                    })
                })
                .collect();
            out.panels.push(p);
            out.notes.push(
                "open a product to see every segment and its target list, or choose another product above".into(),
            );
        }
        Some(product) => {
            let potential =
                prism_analyses::potential::potential(&cx.analysis(), &own, product).await?;
            out.headline = potential.headline();
            let mut p = Panel::from_table(
                "segments",
                "Segments by expected additional buyers",
                &potential,
            );
            p.links = potential
                .segments
                .iter()
                .map(|s| {
                    Some(format!(
                        "/my/potential?product={}&segment={}/{}",
                        url(product),
                        url(&s.industry),
                        url(&s.size_band)
                    ))
                })
                .collect();
            out.panels.push(p);
            if let Some(segment) = given(&prompts.segment) {
                let targets = potential.targets(&cx.analysis(), segment).await?;
                let mut p = Panel::from_table(
                    "targets",
                    &format!("Target list: untapped customers in {segment}"),
                    &targets,
                );
                if !targets.customers.is_empty() {
                    p.plan_fields = vec![
                        ("product".into(), product.to_string()),
                        ("segment".into(), segment.to_string()),
                    ];
                }
                out.panels.push(p);
            }
        }
    }
    Ok(())
}
