//! Campaigns planned in Prism from a customer-potential target list: each one's id (the
//! `campaign_id` the CRM is given with the target list, and brings back on the opportunities the
//! campaign sources), its name, who planned it, and the plan as it stood — partner, product,
//! segment, targets, expected buyers and the day its results count from.

use prism_analyses::planned::Plan;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{MAX_NAME_BYTES, Result, Store, StoreError, now};

/// The table, created with the others when the store opens.
pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS planned_campaigns (campaign_id TEXT PRIMARY KEY, name TEXT NOT NULL, planned_by TEXT NOT NULL, partner_id TEXT NOT NULL, plan TEXT NOT NULL, created_at INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS planned_campaigns_by_partner ON planned_campaigns (partner_id);";

/// A campaign planned in Prism.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedCampaign {
    /// Its id (`PRISM-XXXXXXXX`), which the CRM's export names.
    pub campaign_id: String,
    /// Its name.
    pub name: String,
    /// Who planned it.
    pub planned_by: String,
    /// When, in seconds since 1970.
    pub created_at: i64,
    /// What it was planned from.
    pub plan: Plan,
}

const COLUMNS: &str = "campaign_id, name, planned_by, created_at, plan";

/// A row of `planned_campaigns` (`COLUMNS`), its plan read back.
fn campaign_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PlannedCampaign> {
    let plan: String = r.get(4)?;
    Ok(PlannedCampaign {
        campaign_id: r.get(0)?,
        name: r.get(1)?,
        planned_by: r.get(2)?,
        created_at: r.get(3)?,
        plan: serde_json::from_str(&plan).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
        })?,
    })
}

/// A campaign's name as it is kept, or why it cannot be: 1 to `MAX_NAME_BYTES` bytes once
/// trimmed. Asked before a campaign is planned, so that a bad name costs no query.
pub fn campaign_name(name: &str) -> Result<&str> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(StoreError::Invalid(format!(
            "a campaign needs a name of 1 to {MAX_NAME_BYTES} bytes"
        )));
    }
    Ok(name)
}

impl Store {
    /// Keeps a planned campaign under a new id (`PRISM-` and eight hexadecimal digits) and
    /// returns it.
    pub fn add_planned_campaign(
        &self,
        name: &str,
        planned_by: &str,
        plan: &Plan,
    ) -> Result<PlannedCampaign> {
        let name = campaign_name(name)?;
        let text = serde_json::to_string(plan)
            .map_err(|e| StoreError::Invalid(format!("the plan: {e}")))?;
        let campaign_id = format!("PRISM-{}", super::random_token()[..8].to_ascii_uppercase());
        let created_at = now();
        self.conn().execute(
            "INSERT INTO planned_campaigns (campaign_id, name, planned_by, partner_id, plan, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![campaign_id, name, planned_by, plan.partner_id, text, created_at],
        )?;
        Ok(PlannedCampaign {
            campaign_id,
            name: name.to_string(),
            planned_by: planned_by.to_string(),
            created_at,
            plan: plan.clone(),
        })
    }

    /// Every planned campaign, the newest first: the caller keeps those its user may see.
    pub fn planned_campaigns(&self) -> Result<Vec<PlannedCampaign>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM planned_campaigns ORDER BY created_at DESC, campaign_id"
        ))?;
        let rows = stmt
            .query_map([], campaign_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// A planned campaign by its id.
    pub fn planned_campaign(&self, campaign_id: &str) -> Result<Option<PlannedCampaign>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM planned_campaigns WHERE campaign_id = ?1"),
                [campaign_id],
                campaign_row,
            )
            .optional()?)
    }
}
