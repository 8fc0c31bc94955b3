//! Funds and campaigns: for each campaign (and rolled up by partner), the market development
//! funds requested, approved, claimed and paid, the pipeline and won amount of the
//! opportunities it sourced, and the return on the funds (`mdf_roi`); campaigns that were paid
//! for and sourced no opportunity are flagged.

use std::collections::BTreeMap;

use prism_engine::Query;
use serde::Serialize;

use crate::{Context, Money, Result, Table, number, opt};

/// The money of one campaign, or of one partner's campaigns.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Funds {
    pub mdf_requested: Option<Money>,
    pub mdf_approved: Option<Money>,
    pub mdf_claimed: Option<Money>,
    pub mdf_paid: Option<Money>,
    /// Opportunities the campaign sourced that close in the period, open or not.
    pub sourced_opportunities: i64,
    pub sourced_pipeline: Option<Money>,
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
    fn from_cells(cells: &[String]) -> Funds {
        Funds {
            mdf_requested: Money::parse(&cells[0]),
            mdf_approved: Money::parse(&cells[1]),
            mdf_claimed: Money::parse(&cells[2]),
            mdf_paid: Money::parse(&cells[3]),
            sourced_opportunities: cells[4].parse().unwrap_or(0),
            sourced_pipeline: Money::parse(&cells[5]),
            sourced_won: Money::parse(&cells[6]),
            mdf_roi: number(&cells[7]),
        }
    }

    /// Paid for, and not one opportunity came of it.
    pub fn paid_without_pipeline(&self) -> bool {
        self.mdf_paid.is_some_and(|m| m.0 > 0) && self.sourced_opportunities == 0
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CampaignRow {
    pub campaign_id: String,
    pub campaign_name: String,
    /// The running partner's id, or "(brand owner)".
    pub owner: String,
    pub channel: String,
    pub target_industry: String,
    pub target_size_band: String,
    #[serde(flatten)]
    pub funds: Funds,
    pub paid_without_pipeline: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct PartnerFunds {
    pub partner_id: String,
    #[serde(flatten)]
    pub funds: Funds,
}

#[derive(Clone, Debug, Serialize)]
pub struct Campaigns {
    pub total: Funds,
    /// Every campaign with funds or sourced opportunities in the period, the largest return
    /// first; "(none)" holds the funds and opportunities of no campaign.
    pub campaigns: Vec<CampaignRow>,
    pub partners: Vec<PartnerFunds>,
}

pub async fn campaigns(cx: &Context<'_>) -> Result<Campaigns> {
    let query = |by: Vec<String>| Query {
        metrics: METRICS.iter().map(|m| m.to_string()).collect(),
        by,
        ..Query::default()
    };
    let total = Funds::from_cells(&cx.totals(&METRICS).await?);
    let members = cx
        .engine
        .members(cx.session, "campaign", &cx.audience)
        .await?;
    let at = |name: &str| {
        members
            .column(name)
            .expect("the shipped campaign dimension")
    };
    let columns = [
        at("campaign.campaign_id"),
        at("campaign.campaign_name"),
        at("campaign.owner"),
        at("campaign.channel"),
        at("campaign.target_industry"),
        at("campaign.target_size_band"),
    ];
    let known: BTreeMap<String, Vec<String>> = members
        .formatted_rows()
        .into_iter()
        .map(|row| {
            (
                row[columns[0]].clone(),
                columns.iter().map(|&c| row[c].clone()).collect(),
            )
        })
        .collect();
    let rows = cx
        .run(query(vec!["campaign.campaign_id".into()]))
        .await?
        .formatted_rows();
    let mut campaigns: Vec<CampaignRow> = rows
        .into_iter()
        .map(|mut row| {
            let id = row.remove(0);
            let funds = Funds::from_cells(&row);
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
    let partners = cx
        .by_partner(&METRICS)
        .await?
        .into_iter()
        .map(|(partner_id, cells)| PartnerFunds {
            partner_id,
            funds: Funds::from_cells(&cells),
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

    fn rows(&self) -> Vec<Vec<String>> {
        self.campaigns
            .iter()
            .map(|c| {
                let f = &c.funds;
                vec![
                    c.campaign_id.clone(),
                    c.campaign_name.clone(),
                    c.owner.clone(),
                    c.channel.clone(),
                    opt(f.mdf_requested),
                    opt(f.mdf_approved),
                    opt(f.mdf_claimed),
                    opt(f.mdf_paid),
                    f.sourced_opportunities.to_string(),
                    opt(f.sourced_pipeline),
                    opt(f.sourced_won),
                    opt(f.mdf_roi.map(|r| format!("{r:.2}"))),
                    if c.paid_without_pipeline { "yes" } else { "" }.into(),
                ]
            })
            .collect()
    }
}
