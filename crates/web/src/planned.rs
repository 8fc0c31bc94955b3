//! Campaigns planned from a target list: a partner user plans one from Customer potential's
//! target list (`POST /my/potential/campaign`), takes its target list to the CRM with the
//! campaign's id (`/export/campaigns/planned/{id}`, and the campaign's row in the data
//! contract's `campaigns.csv` form at `.../campaign`), and its page (`/campaigns/planned/{id}`,
//! `/api/campaigns/planned/{id}`) shows the buyers expected against those that bought since, and
//! the pipeline and won amount of the opportunities the CRM attributes to it, as loads bring them.
//! A campaign is its partner's: only users whose audience reaches that partner see it; to
//! anyone else it is as absent as one that never was.

use std::sync::Arc;

use askama::Template;
use prism_analyses::planned::{self, Outcome};
use serde::{Deserialize, Serialize};

use crate::store::{PlannedCampaign, User};
use crate::{AppState, WebError, blocking, pages};

/// The form of `POST /my/potential/campaign`.
#[derive(Deserialize)]
pub(crate) struct PlanForm {
    pub(crate) csrf: String,
    pub(crate) product: String,
    pub(crate) segment: String,
    pub(crate) name: String,
}

/// A planned campaign with what became of it so far.
#[derive(Serialize)]
pub(crate) struct Progress {
    pub(crate) campaign: PlannedCampaign,
    pub(crate) outcome: Outcome,
}

/// A campaign's analyses run over all loaded data: its plan is the potential as it stands, its
/// results whatever came since.
fn all_time<'a>(
    st: &'a AppState,
    session: &'a prism_engine::Session,
    audience: prism_engine::Audience,
) -> prism_analyses::Context<'a> {
    prism_analyses::Context {
        engine: &st.engine,
        session,
        audience,
        period: None,
    }
}

/// Plans a campaign for the user's own partner from the target list of a product's segment.
pub(crate) async fn create(
    st: &Arc<AppState>,
    user: &User,
    form: &PlanForm,
) -> Result<PlannedCampaign, WebError> {
    let audience = user.audience()?;
    let Some(partner) = audience.own_partner().map(str::to_string) else {
        return Err(WebError::Forbidden(
            "campaigns are planned by the partner's own users, from Customer potential".into(),
        ));
    };
    let name = crate::store::campaign_name(&form.name)?.to_string();
    let (_, session) = st.session().await?;
    let cx = all_time(st, &session, audience);
    let plan = planned::plan(&cx, &partner, form.product.trim(), &form.segment).await?;
    let who = user.name.clone();
    blocking(st, move |st| {
        let campaign = st.store.add_planned_campaign(&name, &who, &plan)?;
        st.store
            .audit(&who, "plan-campaign", &campaign.campaign_id)?;
        Ok(campaign)
    })
    .await
}

/// A planned campaign the user may see, with its results in the current warehouse version.
pub(crate) async fn progress(
    st: &Arc<AppState>,
    user: &User,
    campaign_id: &str,
) -> Result<Progress, WebError> {
    let id = campaign_id.to_string();
    let campaign = blocking(st, move |st| Ok(st.store.planned_campaign(&id)?)).await?;
    let audience = user.audience()?;
    let Some(campaign) = campaign.filter(|c| audience.narrow_to(&c.plan.partner_id).is_ok()) else {
        return Err(WebError::NotFound(format!("no campaign {campaign_id}")));
    };
    let (_, session) = st.session().await?;
    let cx = all_time(st, &session, audience);
    let outcome = planned::outcome(&cx, &campaign.campaign_id, &campaign.plan).await?;
    Ok(Progress { campaign, outcome })
}

/// The planned campaigns the user may see: those of partners its audience reaches.
pub async fn visible(st: &Arc<AppState>, user: &User) -> Result<Vec<PlannedCampaign>, WebError> {
    let audience = user.audience()?;
    let all = blocking(st, |st| Ok(st.store.planned_campaigns()?)).await?;
    Ok(all
        .into_iter()
        .filter(|c| audience.narrow_to(&c.plan.partner_id).is_ok())
        .collect())
}

#[derive(Template)]
#[template(path = "planned_list.html")]
struct PlannedList<'a> {
    user_name: String,
    role: String,
    csrf: String,
    nav: Vec<(String, String)>,
    campaigns: &'a [PlannedCampaign],
}

impl PlannedList<'_> {
    fn expected(&self, c: &PlannedCampaign) -> String {
        c.plan
            .expected_buyers
            .map_or("—".into(), |e| format!("{e:.1}"))
    }
}

/// Renders the list of planned campaigns.
pub fn render_list(user: &User, csrf: &str, campaigns: &[PlannedCampaign]) -> String {
    PlannedList {
        user_name: user.name.clone(),
        role: user.role.name().into(),
        csrf: csrf.into(),
        nav: pages::nav(Some(user)),
        campaigns,
    }
    .render()
    .unwrap_or_else(|e| format!("template: {e}"))
}

/// The target list as the CRM takes it: each customer with the campaign's id and name.
pub fn targets_csv(campaign: &PlannedCampaign) -> Result<Vec<u8>, WebError> {
    let header = [
        "campaign_id",
        "campaign_name",
        "customer_id",
        "customer_name",
        "industry",
        "size_band",
        "region",
        "already_buys",
    ]
    .map(String::from);
    let rows: Vec<Vec<String>> = campaign
        .plan
        .targets
        .iter()
        .map(|t| {
            vec![
                campaign.campaign_id.clone(),
                campaign.name.clone(),
                t.customer_id.clone(),
                t.customer_name.clone(),
                t.industry.clone(),
                t.size_band.clone(),
                t.region.clone(),
                t.already_buys.join("; "),
            ]
        })
        .collect();
    crate::csv_bytes(&header, &rows)
}

/// The campaign as a row of the data contract's `campaigns.csv`, for the CRM to keep and export
/// back (the opportunities it sources name it, and must find it there). It runs from the day its
/// results count from, for 90 days.
pub fn campaign_csv(campaign: &PlannedCampaign) -> Result<Vec<u8>, WebError> {
    let header = [
        "campaign_id",
        "campaign_name",
        "partner_id",
        "product_id",
        "target_industry",
        "target_size_band",
        "channel",
        "start_on",
        "end_on",
    ]
    .map(String::from);
    let plan = &campaign.plan;
    let (industry, size) = plan.segment.split_once('/').unwrap_or((&plan.segment, ""));
    let end = plan.since + chrono::Days::new(90);
    let row = vec![
        campaign.campaign_id.clone(),
        campaign.name.clone(),
        plan.partner_id.clone(),
        plan.product_id.clone(),
        industry.to_string(),
        size.to_string(),
        String::new(),
        plan.since.to_string(),
        end.to_string(),
    ];
    crate::csv_bytes(&header, &[row])
}

#[derive(Template)]
#[template(path = "planned.html")]
struct PlannedPage<'a> {
    user_name: String,
    role: String,
    csrf: String,
    nav: Vec<(String, String)>,
    p: &'a Progress,
    expected: String,
    pipeline: String,
    won: String,
}

/// Renders a planned campaign's page.
pub(crate) fn render(model: &prism_model::Model, user: &User, csrf: &str, p: &Progress) -> String {
    let money = |m: Option<prism_analyses::Money>| {
        prism_engine::display::figure(
            &m.map(|m| m.to_string()).unwrap_or_default(),
            Some(prism_model::Format::Money),
            None,
            &model.currency,
            false,
        )
    };
    PlannedPage {
        user_name: user.name.clone(),
        role: user.role.name().into(),
        csrf: csrf.into(),
        nav: pages::nav(Some(user)),
        p,
        expected: p
            .campaign
            .plan
            .expected_buyers
            .map_or("— (channel adoption withheld)".into(), |e| {
                format!("{e:.1}")
            }),
        pipeline: money(p.outcome.sourced_pipeline),
        won: money(p.outcome.sourced_won),
    }
    .render()
    .unwrap_or_else(|e| format!("template: {e}"))
}
