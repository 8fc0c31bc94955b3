//! Accounts at risk, built by every load: the high-risk accounts of the brand owner and of each
//! partner (spec: "High-risk accounts" in metrics.md), so that the customers page does not read
//! every survey, open request and customer of the warehouse at each first request (at 100 M
//! order lines: 6 M surveys, 10 M requests, 4.5 M customers, seven seconds).
//!
//! The table holds, for each scope a question can come in — the brand owner's (every row; its
//! partner column empty) and each partner's own (its rows alone) — the customers flagged in that
//! scope: open critical requests, the sum and number of the last surveys' scores, and the
//! attributes the analysis shows. A partner's figures are computed from its own rows only, as
//! the analysis over the base tables does in a partner's audience, so a partner reads its rows
//! of the table and nothing of another's. A channel manager's several partners, a period, or a
//! warehouse loaded before the table existed are answered from the base tables.

use prism_model::{Aggregate, MetricKind};

use crate::{
    Compiled, Engine, EngineError, QueryResult, ResultColumn, Scope, built_rollups, quote_literal,
};

/// Open critical (P1/P2) requests that make an account high-risk.
pub const OPEN_CRITICAL: i64 = 3;
/// The surveys an account's recent satisfaction is averaged over.
pub const RECENT_SURVEYS: usize = 5;
/// An average of the recent surveys below this is high-risk.
pub const LOW_CSAT: f64 = 3.0;
/// The priorities that are critical.
pub const CRITICAL_PRIORITIES: [&str; 2] = ["P1", "P2"];

/// The name of the table's build in a load's report (its table is `rollup_<name>_<digest>`).
pub const ACCOUNTS_AT_RISK: &str = "accounts_at_risk";

/// The customer attributes the table holds beside the key, in the columns of the same names.
pub const RISK_ATTRIBUTES: [&str; 4] = ["customer_name", "industry", "size_band", "region"];

/// The table's columns after the attributes: the account's open critical requests, and the sum
/// and number of its recent surveys' scores (the sum empty without a survey).
const RISK_FIGURES: [&str; 3] = [
    "open_critical_requests",
    "recent_score_sum",
    "recent_surveys",
];

/// One scope's accounts at risk as the table gives them: the accounts (all of them, or the most
/// urgent first up to a limit) and how many there are in all.
pub struct AccountsAtRisk {
    /// Columns `customer_id`, the `RISK_ATTRIBUTES`, then `open_critical_requests` (integer),
    /// `recent_score_sum` (integer, empty without a survey) and `recent_surveys` (integer).
    pub accounts: QueryResult,
    /// The accounts at risk in the scope.
    pub total: usize,
}

impl Engine {
    /// The load's build of the accounts at risk, from the model's service requests (their
    /// `open_sr_count` and `service_request.priority`), satisfaction surveys and customers;
    /// none when the model lacks one of them, and the analysis reads the base tables.
    pub(crate) fn risk_build(&self) -> Option<prism_warehouse::RollupBuild> {
        // A model rollup of the same name keeps its table name.
        if self.model.rollups.contains_key(ACCOUNTS_AT_RISK) {
            return None;
        }
        let open = self.model.metrics.get("open_sr_count")?;
        let requests = self.model.facts.get(&open.fact)?;
        let MetricKind::Base { aggregate, filter } = &open.kind else {
            return None;
        };
        // The requests the metric counts, each once: its condition is a filter of the rows, so
        // that only open critical requests are grouped (a few percent of the requests), not
        // every critical request's customer with a count of 0.
        let counted = match aggregate {
            Aggregate::CountRows => None,
            Aggregate::Count(e) => Some(format!("{} IS NOT NULL", e.qualified("f"))),
            _ => return None,
        };
        let priority = &requests.attributes.get("service_request.priority")?.column;
        let surveys = self.model.facts.get("satisfaction_surveys")?;
        let customer = self.model.dimensions.get("customer")?;
        let mut attributes = Vec::new();
        for a in RISK_ATTRIBUTES {
            let attribute = customer.attributes.get(a)?;
            let expr = match &attribute.expression {
                Some(e) => e.qualified("c"),
                None => format!("c.{}", attribute.name),
            };
            attributes.push(format!("{expr} AS {a}"));
        }
        let critical = CRITICAL_PRIORITIES.map(quote_literal).join(", ");
        let mut open_where = vec![format!("f.{priority} IN ({critical})")];
        open_where.extend(filter.as_ref().map(|e| format!("({})", e.qualified("f"))));
        open_where.extend(counted);
        // The brand owner's scope is computed under the partner '' (no partner has it: the
        // contract requires a partner on requests and surveys), so that both scopes group and
        // join alike; it is made empty at the end.
        struct Level {
            /// The row's scope, over a fact row `f`.
            partner: &'static str,
            /// The rows it reads.
            rows: &'static str,
        }
        let levels = [
            Level {
                partner: "f.partner_id",
                rows: " AND f.partner_id IS NOT NULL",
            },
            Level {
                partner: "''",
                rows: "",
            },
        ];
        let open_in = |l: &Level| {
            format!(
                "SELECT {partner} AS partner_id, f.customer_id AS customer_id, \
                 CAST(COUNT(*) AS BIGINT) AS open_critical, \
                 CAST(NULL AS BIGINT) AS score_sum, CAST(0 AS BIGINT) AS surveys \
                 FROM {source} f WHERE {open_where}{rows} GROUP BY {partner}, f.customer_id",
                partner = l.partner,
                rows = l.rows,
                source = requests.source_sql(),
                open_where = open_where.join(" AND "),
            )
        };
        // Each account's surveys in each scope, summed whole: the last five are all of them for
        // most accounts. Those with more are taken again, latest day first and a day's surveys
        // by id, latest first — the order the analysis over the base tables takes them in — so
        // that only their surveys are put in order, not every survey of the warehouse.
        let survey_source = surveys.source_sql();
        let counted_in = |l: &Level| {
            format!(
                "SELECT {partner} AS partner_id, f.customer_id AS customer_id, \
                 CAST(SUM(f.score) AS BIGINT) AS score_sum, CAST(COUNT(*) AS BIGINT) AS surveys \
                 FROM {survey_source} f WHERE f.customer_id IS NOT NULL{rows} \
                 GROUP BY {partner}, f.customer_id",
                partner = l.partner,
                rows = l.rows,
            )
        };
        let recent_in = |l: &Level| {
            format!(
                "SELECT partner_id, customer_id, CAST(0 AS BIGINT) AS open_critical, score_sum, surveys \
                 FROM ({counted}) a WHERE surveys <= {RECENT_SURVEYS} \
                 UNION ALL \
                 SELECT partner_id, customer_id, CAST(0 AS BIGINT) AS open_critical, \
                 CAST(SUM(score) AS BIGINT) AS score_sum, CAST(COUNT(*) AS BIGINT) AS surveys \
                 FROM (SELECT {partner} AS partner_id, f.customer_id AS customer_id, f.score AS score, \
                 ROW_NUMBER() OVER (PARTITION BY {partner}, f.customer_id \
                 ORDER BY f.{time} DESC, f.survey_id DESC) AS recent \
                 FROM {survey_source} f JOIN (SELECT partner_id, customer_id FROM ({counted}) m \
                 WHERE surveys > {RECENT_SURVEYS}) many \
                 ON {partner} = many.partner_id AND f.customer_id = many.customer_id \
                 WHERE f.customer_id IS NOT NULL{rows}) s \
                 WHERE recent <= {RECENT_SURVEYS} GROUP BY partner_id, customer_id",
                counted = counted_in(l),
                partner = l.partner,
                rows = l.rows,
                time = surveys.time,
            )
        };
        let sql = format!(
            "SELECT NULLIF(r.partner_id, '') AS partner_id, r.customer_id AS customer_id, \
             {attributes}, r.open_critical AS open_critical_requests, \
             r.score_sum AS recent_score_sum, r.surveys AS recent_surveys \
             FROM (SELECT partner_id, customer_id, CAST(SUM(open_critical) AS BIGINT) AS open_critical, \
             CAST(SUM(score_sum) AS BIGINT) AS score_sum, CAST(SUM(surveys) AS BIGINT) AS surveys \
             FROM ({} UNION ALL {} UNION ALL {} UNION ALL {}) a GROUP BY partner_id, customer_id) r \
             JOIN {customers} c ON c.{key} = r.customer_id \
             WHERE r.open_critical >= {OPEN_CRITICAL} \
             OR (r.surveys > 0 AND CAST(r.score_sum AS DOUBLE) / CAST(r.surveys AS DOUBLE) < {LOW_CSAT:?})",
            open_in(&levels[0]),
            open_in(&levels[1]),
            recent_in(&levels[0]),
            recent_in(&levels[1]),
            attributes = attributes.join(", "),
            customers = customer.table,
            key = customer.key,
        );
        let mut reads = vec![
            requests.table.clone(),
            surveys.table.clone(),
            customer.table.clone(),
        ];
        reads.extend(requests.lookups.values().map(|l| l.table.clone()));
        reads.extend(surveys.lookups.values().map(|l| l.table.clone()));
        reads.sort();
        reads.dedup();
        Some(prism_warehouse::RollupBuild {
            name: ACCOUNTS_AT_RISK.into(),
            table: crate::rollups::table_of(ACCOUNTS_AT_RISK, &sql),
            definition: sql.clone(),
            sql,
            from: None,
            reads,
            // A partner's rows together, the brand owner's (no partner) after them.
            cluster_by: Some("partner_id".into()),
            slices: None,
            delta: None,
            // Every account's surveys in two scopes, held while it runs: beside the customers'
            // rollup over the order lines, the load's peak rose by a third.
            alone: true,
        })
    }

    /// The accounts at risk of an audience, from the table the load built: the most urgent
    /// first (most open critical requests, then the lowest recent satisfaction, then by id), up
    /// to `limit`. None when the table cannot answer: it was not built in the session's
    /// version, rollups are off, or the audience is several partners.
    pub async fn accounts_at_risk(
        &self,
        ctx: &datafusion::prelude::SessionContext,
        audience: &crate::Audience,
        limit: Option<usize>,
    ) -> Result<Option<AccountsAtRisk>, EngineError> {
        let condition = match audience.rows_scope()? {
            Scope::All => "partner_id IS NULL".to_string(),
            Scope::Partner(id) => format!("partner_id = {}", quote_literal(id)),
            // Several partners' last surveys do not merge from each one's figures.
            Scope::Partners(_) => return Ok(None),
        };
        // Its table's name, made once with the engine's rollups'.
        let Some(table) = self
            .rollup_tables
            .get(ACCOUNTS_AT_RISK)
            .filter(|_| self.use_rollups)
        else {
            return Ok(None);
        };
        if !built_rollups(ctx).is_some_and(|b| b.tables.contains_key(table)) {
            return Ok(None);
        }
        let mut names = vec!["customer_id".to_string()];
        names.extend(RISK_ATTRIBUTES.map(String::from));
        names.extend(RISK_FIGURES.map(String::from));
        let columns = names
            .iter()
            .map(|n| ResultColumn {
                name: n.clone(),
                format: None,
            })
            .collect();
        // The analysis's order, with an account without surveys read as satisfied (5).
        let mut sql = format!(
            "SELECT {} FROM {table} WHERE {condition} ORDER BY open_critical_requests DESC, \
             COALESCE(CAST(recent_score_sum AS DOUBLE) / CAST(recent_surveys AS DOUBLE), 5.0) ASC, \
             customer_id ASC",
            names.join(", "),
        );
        if let Some(n) = limit {
            sql.push_str(&format!(" LIMIT {n}"));
        }
        let count = Compiled::listing(
            format!("SELECT COUNT(*) AS accounts FROM {table} WHERE {condition}"),
            vec![ResultColumn {
                name: "accounts".into(),
                format: None,
            }],
        );
        // One after the other: the count reads a column of a few hundred thousand rows.
        let accounts = self.execute(ctx, Compiled::listing(sql, columns)).await?;
        let total = self.execute(ctx, count).await?;
        let total = total
            .batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .and_then(|b| {
                arrow::array::AsArray::as_primitive_opt::<arrow::datatypes::Int64Type>(
                    b.column(0).as_ref(),
                )
                .map(|c| c.value(0))
            })
            .unwrap_or(0);
        Ok(Some(AccountsAtRisk {
            accounts,
            total: usize::try_from(total).unwrap_or(0),
        }))
    }
}
