//! A partner against the channel: the partner's own figures beside the channel's, where the
//! channel figure is an aggregate over at least 5 partners (the engine's benchmark withholds
//! any other), so that no figure reveals another partner's value.

use prism_engine::{BENCHMARK_MIN_PARTNERS, Query};
use serde::Serialize;

use crate::{Context, Result, Table, Value, text};

/// Figures that compare across partners of any size: rates and averages, not totals.
pub const METRICS: [(&str, bool); 15] = [
    ("win_rate", true),
    ("avg_deal_size", true),
    ("avg_sales_cycle_days", false),
    ("gross_margin_pct", true),
    ("csat_avg", true),
    ("csat_satisfied_pct", true),
    ("avg_first_response_hours", false),
    ("avg_resolution_hours", false),
    ("sla_met_pct", true),
    ("resolution_rate", true),
    ("registration_approval_rate", true),
    ("avg_registration_decision_days", false),
    ("registration_win_rate", true),
    ("mdf_approval_rate", true),
    ("mdf_utilization_pct", true),
];

/// One metric of a partner beside the channel's.
#[derive(Clone, Debug, Serialize)]
pub struct BenchmarkRow {
    /// The metric's name.
    pub metric: &'static str,
    /// Its definition.
    pub description: String,
    /// The partner's figure.
    pub partner: Value,
    /// Missing when withheld.
    pub channel: Value,
    /// How many partners the channel figure is over.
    pub channel_partners: i64,
    /// Whether a higher figure is the better one.
    pub higher_is_better: bool,
    /// "better", "worse", "same", or none when either figure is missing.
    pub verdict: Option<&'static str>,
}

/// A partner's rates and averages beside the channel's.
#[derive(Clone, Debug, Serialize)]
pub struct Benchmarks {
    /// The partner.
    pub partner_id: String,
    /// One row per metric.
    pub rows: Vec<BenchmarkRow>,
    /// Why no channel figure is given at all, when none is.
    pub channel_withheld: Option<String>,
}

/// Why a partner user gets no channel figures over a period, or `None` when it may.
///
/// Each channel figure is over at least `BENCHMARK_MIN_PARTNERS` partners, but two figures over
/// nested periods can be subtracted: a year less three of its quarters, or a range less a
/// shorter one, leaves a period where one other partner may be alone. Calendar quarters never
/// nest, so a partner user gets channel figures one calendar quarter at a time; the brand
/// owner's users, who see every partner anyway, over any period.
fn channel_withheld(cx: &Context<'_>) -> Option<String> {
    let quarter = cx.period.is_some_and(|p| p.is_calendar_quarter());
    (cx.audience.own_partner().is_some() && !quarter).then(|| {
        "channel figures are given one calendar quarter at a time: choose a quarter (2025-Q1); over other periods, two of them could be subtracted to reveal fewer than 5 partners".to_string()
    })
}

/// The partner's rates and averages beside the channel's, each channel figure over at least 5 partners or withheld.
pub async fn benchmarks(cx: &Context<'_>, partner: &str) -> Result<Benchmarks> {
    benchmarks_of(cx, partner, &METRICS.map(|(m, _)| m)).await
}

/// The same for some metrics only (an Explore question's): those of `METRICS` among them, in
/// `METRICS`' order; a total is left out, since totals of different cuts could be subtracted.
pub async fn benchmarks_of(
    cx: &Context<'_>,
    partner: &str,
    metrics: &[&str],
) -> Result<Benchmarks> {
    cx.check_partner(partner)?;
    let mut rows = Vec::new();
    // One metric at a time: each fact has its own count of partners behind the channel figure.
    let query = |m: &str| Query {
        metrics: vec![m.to_string()],
        ..Query::default()
    };
    let withheld = channel_withheld(cx);
    for (metric, higher_is_better) in METRICS.into_iter().filter(|(m, _)| metrics.contains(m)) {
        let own = cx.run_for(partner, query(metric)).await?.first_row();
        let own = own.get(metric).clone();
        let (channel_value, partners) = match withheld {
            Some(_) => (Value::Missing, 0),
            None => {
                let row = cx.benchmark(query(metric)).await?.first_row();
                (
                    row.get(metric).clone(),
                    row.count("benchmark_partners").unwrap_or(0),
                )
            }
        };
        let verdict = match (own.number(), channel_value.number()) {
            (Some(a), Some(b)) if a == b => Some("same"),
            (Some(a), Some(b)) => Some(if (a > b) == higher_is_better {
                "better"
            } else {
                "worse"
            }),
            _ => None,
        };
        rows.push(BenchmarkRow {
            metric,
            description: cx.engine.model.metrics[metric].description.clone(),
            partner: own,
            channel: channel_value,
            channel_partners: partners,
            higher_is_better,
            verdict,
        });
    }
    Ok(Benchmarks {
        partner_id: partner.to_string(),
        rows,
        channel_withheld: withheld,
    })
}

impl Table for Benchmarks {
    fn headline(&self) -> Vec<String> {
        let mut h = vec![format!(
            "partner {} against the channel (channel figures over at least {BENCHMARK_MIN_PARTNERS} partners)",
            self.partner_id
        )];
        if let Some(why) = &self.channel_withheld {
            h.push(format!("no channel figures: {why}"));
        } else if self
            .rows
            .iter()
            .any(|r| r.channel.is_missing() && r.channel_partners < BENCHMARK_MIN_PARTNERS)
        {
            h.push(format!("some channel figures are withheld: fewer than {BENCHMARK_MIN_PARTNERS} partners contribute to them"));
        }
        h
    }

    fn missing_reason(&self, row: usize, column: &str) -> Option<String> {
        let r = self.rows.get(row)?;
        match column {
            "channel" if r.channel.is_missing() => Some(match &self.channel_withheld {
                Some(why) => format!("withheld: {why}"),
                None if r.channel_partners < BENCHMARK_MIN_PARTNERS => format!(
                    "withheld: fewer than {BENCHMARK_MIN_PARTNERS} partners contribute to it ({})",
                    r.channel_partners
                ),
                None => "no value: no partner has this figure in the period".into(),
            }),
            _ => None,
        }
    }

    fn header(&self) -> Vec<String> {
        [
            "metric",
            "partner",
            "channel",
            "channel_partners",
            "verdict",
        ]
        .map(String::from)
        .to_vec()
    }

    fn rows(&self) -> Vec<Vec<Value>> {
        self.rows
            .iter()
            .map(|r| {
                let channel = match &r.channel {
                    Value::Missing if r.channel_partners < BENCHMARK_MIN_PARTNERS => {
                        text("(withheld)")
                    }
                    v => v.clone(),
                };
                vec![
                    text(r.metric),
                    r.partner.clone(),
                    channel,
                    Value::Count(r.channel_partners),
                    r.verdict.map_or(Value::Missing, text),
                ]
            })
            .collect()
    }
}
