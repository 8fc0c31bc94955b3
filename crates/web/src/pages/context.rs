//! What every page's builder asks through: the user's audience, the session of one warehouse
//! version, the prompts as filters, and the panels' shapes (tiles, a chart, a table).

use super::*;

/// How many months a tile's trend line shows.
const TREND_MONTHS: u32 = 12;

/// What a page's builders share: the user, their audience, the session, the prompts as
/// filters.
pub(super) struct Ctx<'a> {
    pub(super) st: &'a AppState,
    pub(super) user: &'a User,
    pub(super) session: Arc<Session>,
    pub(super) audience: Audience,
    pub(super) period: Option<Period>,
    pub(super) filters: Vec<Filter>,
    /// Behind a lock so that a page's panels can be asked side by side.
    pub(super) notes: std::sync::Mutex<Vec<String>>,
}

impl Ctx<'_> {
    /// The prompt filters a query's metrics can take: a survey is of no product, so the product
    /// line prompt does not apply to satisfaction figures (and the page says so).
    pub(super) fn filters_for(&self, metrics: &[&str]) -> Vec<Filter> {
        let model = &self.st.engine.model;
        let reaches = |dimension: &str| {
            metrics.iter().all(|m| {
                let base = m.split(':').next().unwrap_or(m);
                model.metrics.get(base).is_none_or(|metric| {
                    model
                        .facts_of(metric)
                        .iter()
                        .all(|f| model.facts[*f].reaches.iter().any(|r| r == dimension))
                })
            })
        };
        let mut out = Vec::new();
        for f in &self.filters {
            let dimension = f.dimension.split('.').next().unwrap_or_default();
            if reaches(dimension) {
                out.push(f.clone());
            } else {
                let note = format!(
                    "the {} prompt does not apply to {}",
                    f.dimension,
                    metrics.join(", ")
                );
                let mut notes = self
                    .notes
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if !notes.contains(&note) {
                    notes.push(note);
                }
            }
        }
        out
    }

    pub(super) fn query(
        &self,
        metrics: &[&str],
        by: &[&str],
        order: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Query, WebError> {
        Ok(Query {
            metrics: metrics.iter().map(|m| m.to_string()).collect(),
            by: by.iter().map(|d| d.to_string()).collect(),
            filters: self.filters_for(metrics),
            period: self.period,
            order: order.map(Order::parse).transpose()?.into_iter().collect(),
            limit,
        })
    }

    pub(super) async fn run(&self, q: &Query) -> Result<QueryResult, WebError> {
        Ok(self.st.engine.run(&self.session, q, &self.audience).await?)
    }

    pub(super) async fn tiles(
        &self,
        id: &str,
        title: &str,
        metrics: &[&str],
    ) -> Result<Panel, WebError> {
        let mut asked: Vec<String> = metrics.iter().map(|m| m.to_string()).collect();
        if self.period.is_some() {
            asked.extend(metrics.iter().map(|m| format!("{m}:change_pct")));
        }
        let names: Vec<&str> = asked.iter().map(String::as_str).collect();
        let q = self.query(&names, &[], None, None)?;
        let (r, mut trends) = tokio::try_join!(self.run(&q), self.trends(metrics))?;
        let row = r.first_row();
        let mut p = Panel::new("tiles", id, title);
        for (m, trend) in metrics.iter().zip(trends.drain(..)) {
            let change_pct = self
                .period
                .and_then(|_| row.number(&format!("{m}:change_pct")));
            p.tiles.push(Tile {
                metric: m.to_string(),
                value: row.get(m).exact(),
                change_pct,
                trend,
                definition: self
                    .st
                    .engine
                    .model
                    .metrics
                    .get(*m)
                    .map(|d| d.description.clone())
                    .unwrap_or_default(),
                sql: (self.user.role == Role::Admin).then(|| r.sql.clone()),
            });
        }
        Ok(p)
    }

    /// Each metric's last twelve months, for its tile's trend line: the months up to the
    /// period's last day, or, when the page is over all loaded data, up to the newest month
    /// with a figure of the first metric. Every month is listed, a month without a value as
    /// none, so that the lines of a page's tiles share one time axis. Each month's figure is the
    /// metric's own (a ratio of the month's parts), with the page's prompts.
    async fn trends(&self, metrics: &[&str]) -> Result<Vec<Vec<TrendPoint>>, WebError> {
        let Some(first) = metrics.first() else {
            return Ok(Vec::new());
        };
        // With a period, its last twelve months; without one, every month in one question
        // (a monthly rollup answers it), of which the twelve up to the newest month with a
        // figure of the first metric are drawn.
        let mut q = self.query(metrics, &["time.month"], None, None)?;
        if let Some(p) = self.period {
            q.period = Some(Period {
                from: p.to.with_day(1).unwrap_or(p.to) - chrono::Months::new(TREND_MONTHS - 1),
                to: p.to,
            });
        }
        let r = self.run(&q).await?;
        let by_month: BTreeMap<String, prism_engine::Row> = r
            .rows()
            .into_iter()
            .filter_map(|row| Some((row.text("time.month")?.to_string(), row)))
            .collect();
        let last = match self.period {
            Some(p) => Some(p.to.with_day(1).unwrap_or(p.to)),
            None => by_month
                .iter()
                .rev()
                .find(|(_, row)| row.number(first).is_some())
                .and_then(|(month, _)| {
                    chrono::NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").ok()
                }),
        };
        let Some(last) = last else {
            return Ok(vec![Vec::new(); metrics.len()]);
        };
        let months: Vec<String> = (0..TREND_MONTHS)
            .rev()
            .map(|i| (last - chrono::Months::new(i)).format("%Y-%m").to_string())
            .collect();
        Ok(metrics
            .iter()
            .map(|m| {
                months
                    .iter()
                    .map(|month| TrendPoint {
                        month: month.clone(),
                        value: by_month.get(month).and_then(|row| row.number(m)),
                    })
                    .collect()
            })
            .collect())
    }

    // A panel's parts, each named at the call: a struct for them would only restate the calls.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn chart(
        &self,
        id: &str,
        title: &str,
        kind: &'static str,
        metrics: &[&str],
        by: &str,
        order: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Panel, WebError> {
        let q = self.query(metrics, &[by], order, limit)?;
        let r = self.run(&q).await?;
        let rows = r.rows();
        let mut p = Panel::new("chart", id, title);
        p.chart = Some(Chart {
            kind,
            categories: rows.iter().map(|r| r.get(by).exact()).collect(),
            series: metrics
                .iter()
                .map(|m| Series {
                    name: m.to_string(),
                    values: rows.iter().map(|r| r.number(m)).collect(),
                    ..Default::default()
                })
                .collect(),
        });
        // The chart's figures as a table too: readable without the script, and exportable.
        p.header = r.columns.iter().map(|c| c.name.clone()).collect();
        p.rows = r.formatted_rows();
        Ok(p)
    }

    pub(super) async fn table(
        &self,
        id: &str,
        title: &str,
        metrics: &[&str],
        by: &[&str],
        order: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Panel, WebError> {
        let q = self.query(metrics, by, order, limit)?;
        let r = self.run(&q).await?;
        let mut p = Panel::new("table", id, title);
        p.header = r.columns.iter().map(|c| c.name.clone()).collect();
        p.rows = r.formatted_rows();
        if p.header.first().is_some_and(|h| h == "partner.partner_id") {
            p.links = partner_links(&r);
        }
        Ok(p)
    }

    /// A table of the top rows by one metric, with more figures for those rows only: the
    /// ranking reads what a rollup can answer (revenue by customer), and the figures that only
    /// the base tables answer (distinct orders, say) are computed for the few rows shown
    /// instead of every customer. The same answer as one query with every metric.
    ///
    /// `by[0]` is the key ranked (`customer.customer_id`); the dimensions after it are that
    /// key's own attributes (its name, industry, size), one value per key: the ranking groups by
    /// the key alone and the attributes come with the shown rows' figures. Grouped by the key
    /// and three attributes, the brand owner's ranking over the customers' rollup (5.9 M rows at
    /// scale 100) took 1.45 s; by the key alone, 0.8 s.
    pub(super) async fn top_table(
        &self,
        id: &str,
        title: &str,
        rank_by: &str,
        more: &[&str],
        by: &[&str],
        limit: usize,
    ) -> Result<Panel, WebError> {
        let order = format!("{rank_by}:desc");
        let ranking = self.query(&[rank_by], &by[..1], Some(&order), Some(limit))?;
        let shown: Vec<String> = self
            .run(&ranking)
            .await?
            .rows()
            .iter()
            .map(|r| r.get(by[0]).exact())
            .collect();
        let mut all: Vec<&str> = vec![rank_by];
        all.extend(more);
        if shown.len() < limit {
            // Fewer rows with the ranking figure than asked: rows with only the other figures
            // (a customer with surveys but no orders) fill the table, as in one query.
            return self
                .table(id, title, &all, by, Some(&order), Some(limit))
                .await;
        }
        let mut details = self.query(&all, by, None, None)?;
        details.filters.push(Filter {
            dimension: by[0].to_string(),
            op: FilterOp::In(shown.clone()),
        });
        let mut details: std::collections::HashMap<String, Vec<String>> = self
            .run(&details)
            .await?
            .rows()
            .iter()
            .map(|r| {
                let cells: Vec<String> = r.values().iter().map(Value::exact).collect();
                (r.get(by[0]).exact(), cells)
            })
            .collect();
        let mut p = Panel::new("table", id, title);
        p.header = by.iter().chain(all.iter()).map(|d| d.to_string()).collect();
        // In the ranking's order: the details come back in the key's.
        p.rows = shown.iter().filter_map(|k| details.remove(k)).collect();
        Ok(p)
    }

    pub(super) fn analysis(&self) -> prism_analyses::Context<'_> {
        prism_analyses::Context {
            engine: &self.st.engine,
            session: &self.session,
            audience: self.audience.clone(),
            period: self.period,
        }
    }
}
