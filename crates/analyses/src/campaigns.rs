//! Funds and campaigns: for each campaign (and rolled up by partner), the market development
//! funds requested, approved, claimed and paid, the pipeline and won amount of the
//! opportunities it sourced, and the return on the funds (`mdf_roi`); campaigns that were paid
//! for and sourced no opportunity are flagged.

use std::collections::BTreeMap;

use prism_engine::{Query, Row};
use serde::Serialize;

use crate::{Context, Money, Result, Table, Value, num, opt, text};

/// The money of one campaign, or of one partner's campaigns.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Funds {
    /// Funds requested.
    pub mdf_requested: Option<Money>,
    /// Funds approved.
    pub mdf_approved: Option<Money>,
    /// Funds claimed with proof of performance.
    pub mdf_claimed: Option<Money>,
    /// Funds paid.
    pub mdf_paid: Option<Money>,
    /// Opportunities the campaign sourced that close in the period, open or not.
    pub sourced_opportunities: i64,
    /// The open amount of those opportunities.
    pub sourced_pipeline: Option<Money>,
    /// The won amount of those opportunities.
    pub sourced_won: Option<Money>,
    /// Won amount sourced per unit of funds paid; none when nothing was paid.
    pub mdf_roi: Option<f64>,
}

const METRICS: [&str; 8] = [
    "mdf_requested",
    "mdf_approved",
    "mdf_claimed",
    "mdf_paid",
    "campaign_sourced_opportunities",
    "campaign_sourced_pipeline",
    "campaign_sourced_won",
    "mdf_roi",
];

impl Funds {
    fn from_row(row: &Row) -> Funds {
        Funds {
            mdf_requested: row.money("mdf_requested"),
            mdf_approved: row.money("mdf_approved"),
            mdf_claimed: row.money("mdf_claimed"),
            mdf_paid: row.money("mdf_paid"),
            sourced_opportunities: row.count("campaign_sourced_opportunities").unwrap_or(0),
            sourced_pipeline: row.money("campaign_sourced_pipeline"),
            sourced_won: row.money("campaign_sourced_won"),
            mdf_roi: row.number("mdf_roi"),
        }
    }

    /// Paid for, and not one opportunity came of it.
    pub fn paid_without_pipeline(&self) -> bool {
        self.mdf_paid.is_some_and(|m| m.0 > 0) && self.sourced_opportunities == 0
    }
}

/// One campaign's funds and what it sourced.
#[derive(Clone, Debug, Serialize)]
pub struct CampaignRow {
    /// The campaign's id.
    pub campaign_id: String,
    /// Its name.
    pub campaign_name: String,
    /// The running partner's id, or "(brand owner)".
    pub owner: String,
    /// Email, Event, Webinar, Digital, Telemarketing.
    pub channel: String,
    /// The customer industry it targets.
    pub target_industry: String,
    /// The customer size it targets.
    pub target_size_band: String,
    /// Its money and sourced pipeline.
    #[serde(flatten)]
    pub funds: Funds,
    /// Funds were paid and it sourced no opportunity: the flag of a campaign that bought nothing.
    pub paid_without_pipeline: bool,
}

/// One partner's funds over all its campaigns.
#[derive(Clone, Debug, Serialize)]
pub struct PartnerFunds {
    /// The partner.
    pub partner_id: String,
    /// Its money and sourced pipeline.
    #[serde(flatten)]
    pub funds: Funds,
}

/// Funds and campaigns: the money of market development and what it sourced.
#[derive(Clone, Debug, Serialize)]
pub struct Campaigns {
    /// Over the audience's rows.
    pub total: Funds,
    /// Every campaign with funds or sourced opportunities in the period, the largest return
    /// first; "(none)" holds the funds and opportunities of no campaign.
    pub campaigns: Vec<CampaignRow>,
    /// Each partner's funds and sourced pipeline.
    pub partners: Vec<PartnerFunds>,
}

/// The campaigns the audience sees, each as its id, name, owner, channel, target industry
/// and size band, by id.
async fn known_campaigns(cx: &Context<'_>) -> Result<BTreeMap<String, Vec<String>>> {
    let members = cx
        .engine
        .members(cx.session, "campaign", &cx.audience)
        .await?;
    const ABOUT: [&str; 6] = [
        "campaign.campaign_id",
        "campaign.campaign_name",
        "campaign.owner",
        "campaign.channel",
        "campaign.target_industry",
        "campaign.target_size_band",
    ];
    Ok(members
        .rows()
        .into_iter()
        .map(|row| {
            (
                row.get(ABOUT[0]).exact(),
                ABOUT.iter().map(|&c| row.get(c).exact()).collect(),
            )
        })
        .collect())
}

/// Funds requested, approved, claimed and paid, with the pipeline and won amount of the opportunities each campaign sourced, and its return.
pub async fn campaigns(cx: &Context<'_>) -> Result<Campaigns> {
    let query = |by: Vec<String>| Query {
        metrics: METRICS.iter().map(|m| m.to_string()).collect(),
        by,
        ..Query::default()
    };
    // Four independent reads, asked together.
    let (total, known, rows, by_partner) = tokio::try_join!(
        cx.totals(&METRICS),
        known_campaigns(cx),
        cx.run(query(vec!["campaign.campaign_id".into()])),
        cx.by_partner(&METRICS),
    )?;
    let total = Funds::from_row(&total);
    let rows = rows.rows();
    let mut campaigns: Vec<CampaignRow> = rows
        .into_iter()
        .map(|row| {
            let id = row.get("campaign.campaign_id").exact();
            let funds = Funds::from_row(&row);
            let about = known.get(&id);
            let field = |i: usize| about.map_or(String::new(), |a| a[i].clone());
            CampaignRow {
                campaign_name: if about.is_some() {
                    field(1)
                } else {
                    "(no campaign)".into()
                },
                owner: field(2),
                channel: field(3),
                target_industry: field(4),
                target_size_band: field(5),
                // Funds asked for no campaign are not a campaign that failed.
                paid_without_pipeline: about.is_some() && funds.paid_without_pipeline(),
                campaign_id: id,
                funds,
            }
        })
        .collect();
    campaigns.sort_by(|a, b| {
        b.paid_without_pipeline
            .cmp(&a.paid_without_pipeline)
            .then_with(|| {
                b.funds
                    .mdf_roi
                    .unwrap_or(f64::NEG_INFINITY)
                    .total_cmp(&a.funds.mdf_roi.unwrap_or(f64::NEG_INFINITY))
            })
            .then_with(|| a.campaign_id.cmp(&b.campaign_id))
    });
    let partners = by_partner
        .into_iter()
        .map(|(partner_id, row)| PartnerFunds {
            partner_id,
            funds: Funds::from_row(&row),
        })
        .collect();
    Ok(Campaigns {
        total,
        campaigns,
        partners,
    })
}

impl Table for Campaigns {
    fn headline(&self) -> Vec<String> {
        let t = &self.total;
        let flagged = self
            .campaigns
            .iter()
            .filter(|c| c.paid_without_pipeline)
            .count();
        let mut h = vec![format!(
            "funds requested {}, approved {}, claimed {}, paid {}; campaign-sourced pipeline {}, won {}; return {}",
            opt(t.mdf_requested),
            opt(t.mdf_approved),
            opt(t.mdf_claimed),
            opt(t.mdf_paid),
            opt(t.sourced_pipeline),
            opt(t.sourced_won),
            t.mdf_roi.map_or("none (nothing paid)".into(), |r| format!(
                "{r:.2} won per unit paid"
            ))
        )];
        if flagged > 0 {
            h.push(format!(
                "{flagged} campaigns were paid for and sourced no opportunity"
            ));
        }
        h
    }

    fn header(&self) -> Vec<String> {
        [
            "campaign_id",
            "campaign_name",
            "owner",
            "channel",
            "mdf_requested",
            "mdf_approved",
            "mdf_claimed",
            "mdf_paid",
            "sourced_opportunities",
            "sourced_pipeline",
            "sourced_won",
            "mdf_roi",
            "paid_without_pipeline",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn rows(&self) -> Vec<Vec<Value>> {
        self.campaigns
            .iter()
            .map(|c| {
                let f = &c.funds;
                vec![
                    text(&c.campaign_id),
                    text(&c.campaign_name),
                    text(&c.owner),
                    text(&c.channel),
                    f.mdf_requested.into(),
                    f.mdf_approved.into(),
                    f.mdf_claimed.into(),
                    f.mdf_paid.into(),
                    Value::Count(f.sourced_opportunities),
                    f.sourced_pipeline.into(),
                    f.sourced_won.into(),
                    num(f.mdf_roi),
                    text(if c.paid_without_pipeline { "yes" } else { "" }),
                ]
            })
            .collect()
    }
}
