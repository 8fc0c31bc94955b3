//! Closing the campaign loop: a campaign planned in Prism from a customer-potential target list
//! (a partner, a product, a segment, its untapped customers and the buyers expected among them at
//! that moment), and what became of it as later loads bring its results — the targets that
//! bought the product since, and the opportunities the CRM attributes to the campaign's id, with
//! their pipeline and won amount.

use chrono::NaiveDate;
use prism_engine::{Filter, FilterOp, Period, Query};
use serde::{Deserialize, Serialize};

use crate::potential::{Target, potential};
use crate::{Context, Money, Result};

/// What a campaign is planned from, as its maker saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The partner that runs it.
    pub partner_id: String,
    /// The product it promotes.
    pub product_id: String,
    /// `INDUSTRY/SIZE_BAND`.
    pub segment: String,
    /// The customers targeted, as the list stood.
    pub targets: Vec<Target>,
    /// The segment's expected additional buyers (untapped customers × channel adoption); none
    /// where the channel adoption is withheld.
    pub expected_buyers: Option<f64>,
    /// The first day whose orders count as the campaign's result: the day after the newest order
    /// of the partner's the warehouse held when the campaign was planned.
    pub since: NaiveDate,
}

/// Plans a campaign for a partner's product in a segment of its customer potential.
pub async fn plan(cx: &Context<'_>, partner: &str, product: &str, segment: &str) -> Result<Plan> {
    let potential = potential(cx, partner, product).await?;
    let chosen = potential.segment(segment)?;
    let list = potential.targets(cx, segment).await?;
    let newest = cx
        .engine
        .newest_day(cx.session, "units_sold", &cx.audience.narrow_to(partner)?)
        .await?;
    Ok(Plan {
        partner_id: partner.to_string(),
        product_id: product.to_string(),
        segment: format!("{}/{}", chosen.industry, chosen.size_band),
        targets: list.customers,
        expected_buyers: chosen.expected_additional_buyers,
        since: newest
            .and_then(|d| d.succ_opt())
            .unwrap_or(NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date")),
    })
}

/// What became of a planned campaign so far.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    /// Targets that bought the product from the partner since the campaign was planned.
    pub buyers: i64,
    /// Opportunities the CRM attributes to the campaign, open or not, and their amounts.
    pub sourced_opportunities: i64,
    /// The open amount of those opportunities.
    pub sourced_pipeline: Option<Money>,
    /// The won amount of those opportunities.
    pub sourced_won: Option<Money>,
}

/// The results of the campaign `campaign_id`, planned as `plan`, in the partner's rows.
pub async fn outcome(cx: &Context<'_>, campaign_id: &str, plan: &Plan) -> Result<Outcome> {
    let audience = cx.audience.narrow_to(&plan.partner_id)?;
    let buyers = if plan.targets.is_empty() {
        0
    } else {
        let q = Query {
            metrics: vec!["buying_customers".into()],
            by: vec!["customer.customer_id".into()],
            filters: vec![
                Filter {
                    dimension: "product.product_id".into(),
                    op: FilterOp::In(vec![plan.product_id.clone()]),
                },
                Filter {
                    dimension: "customer.customer_id".into(),
                    op: FilterOp::In(plan.targets.iter().map(|t| t.customer_id.clone()).collect()),
                },
            ],
            period: Some(Period {
                from: plan.since,
                // Every later load's orders, however far ahead.
                to: NaiveDate::from_ymd_opt(9999, 12, 31).expect("a date"),
            }),
            ..Query::default()
        };
        let r = cx.engine.run(cx.session, &q, &audience).await?;
        r.rows()
            .iter()
            .filter(|r| r.count("buying_customers").is_some_and(|n| n > 0))
            .count() as i64
    };
    let q = Query {
        metrics: vec![
            "campaign_sourced_opportunities".into(),
            "campaign_sourced_pipeline".into(),
            "campaign_sourced_won".into(),
        ],
        filters: vec![Filter {
            dimension: "campaign.campaign_id".into(),
            op: FilterOp::In(vec![campaign_id.to_string()]),
        }],
        ..Query::default()
    };
    let sourced = cx.engine.run(cx.session, &q, &audience).await?.first_row();
    Ok(Outcome {
        buyers,
        sourced_opportunities: sourced.count("campaign_sourced_opportunities").unwrap_or(0),
        sourced_pipeline: sourced.money("campaign_sourced_pipeline"),
        sourced_won: sourced.money("campaign_sourced_won"),
    })
}
