//! A compiled question's stages built into one DataFusion logical plan over a session: each
//! fact's aggregation built from its steps under its name, the aggregations joined, the joined
//! rows' columns, the derived forms (window functions), order and limit.

use datafusion::execution::SessionState;
use datafusion::logical_expr::utils::find_window_exprs;
use datafusion::logical_expr::{JoinType, LogicalPlan, LogicalPlanBuilder};

use super::Stages;
use crate::{Engine, EngineError};

impl Engine {
    /// The question's plan over the session's tables (`state`), unoptimised: DataFusion's
    /// analyzer and optimizer run on it as they would on the same question written as SQL.
    pub(crate) async fn logical_plan(
        &self,
        state: &SessionState,
        stages: &Stages,
    ) -> Result<LogicalPlan, EngineError> {
        let mut aggregations = Vec::with_capacity(stages.aggregations.len());
        for a in &stages.aggregations {
            let sources = super::rows::sources(state, &a.steps).await?;
            let plan = super::rows::build(&a.steps, &sources)?;
            aggregations.push((
                a.alias.as_str(),
                LogicalPlanBuilder::from(plan)
                    .alias(a.alias.as_str())?
                    .build()?,
            ));
        }
        let take = |name: &str| {
            aggregations
                .iter()
                .find(|(alias, _)| *alias == name)
                .map(|(_, p)| p.clone())
                .expect("every joined aggregation is planned")
        };
        let joins = &stages.joins;
        let mut joined = LogicalPlanBuilder::from(take(&joins.full[0]));
        if joins.single {
            for name in joins.full[1..].iter().chain(&joins.left) {
                joined = joined.cross_join(take(name))?;
            }
        } else {
            for (j, name) in joins.full.iter().enumerate().skip(1) {
                joined = joined.join_on(take(name), JoinType::Full, [joins.on(name, j)])?;
            }
            for name in &joins.left {
                joined = joined.join_on(
                    take(name),
                    JoinType::Left,
                    [joins.on(name, joins.full.len())],
                )?;
            }
        }
        let across = joined.project(stages.across.clone())?.build()?;
        // The derived forms' window functions are computed over the joined rows first, and the
        // answer's columns read them, as DataFusion plans `SELECT rank() OVER (...)`.
        let windows = find_window_exprs(&stages.answer);
        let windowed = if windows.is_empty() {
            across
        } else {
            LogicalPlanBuilder::window_plan(across, windows)?
        };
        let mut answer = LogicalPlanBuilder::from(windowed).project(stages.answer.clone())?;
        if !stages.order.is_empty() {
            answer = answer.sort(stages.order.clone())?;
        }
        if let Some(n) = stages.limit {
            answer = answer.limit(0, Some(n))?;
        }
        Ok(answer.build()?)
    }
}
