//! Under-performers: the partners in the bottom quartile of the scorecard's score, and the
//! partners whose closed_revenue fell by 25 % or more against the previous period of the same
//! length; each with the reason it was flagged and the figures behind it.

use serde::Serialize;

use prism_engine::Period;

use crate::scorecard::{Scorecard, ScorecardRow, Weights, scorecard};
use crate::{
    Context, Money, Partner, Result, Table, Value, count, opt, pct, percentile_ranks, text,
};

/// An under-performing partner, with why.
#[derive(Clone, Debug, Serialize)]
pub struct Underperformer {
    /// The partner.
    #[serde(flatten)]
    pub partner: Partner,
    /// Why: the bottom quartile of the score, a fall of revenue of 25 % or more.
    pub reasons: Vec<String>,
    /// Its score.
    pub score: Option<f64>,
    /// Its score's percentile rank.
    pub score_percentile: Option<f64>,
    /// Its rank on the scorecard.
    pub rank: Option<usize>,
    /// Its closed revenue in the period.
    pub closed_revenue: Option<Money>,
    /// In the previous period of the same length.
    pub previous_revenue: Option<Money>,
    /// The change, in percent.
    pub revenue_change_pct: Option<f64>,
    /// Product lines it sold or had in the pipeline without anyone certified to deliver or
    /// support them (see `enablement`): often why a partner fails.
    pub enablement_gaps: Vec<String>,
}

/// Under-performing partners.
#[derive(Clone, Debug, Serialize)]
pub struct Underperformers {
    /// The scorecard's weights.
    pub weights: Weights,
    /// Why decliners could not be looked for (no period to compare), if so.
    pub note: Option<String>,
    /// The partners, lowest score first.
    pub partners: Vec<Underperformer>,
}

/// The share of revenue lost that flags a decliner: 25 %.
const DECLINE: (i128, i128) = (1, 4);

/// Partners in the bottom quartile of the score, and (with a period) partners whose revenue fell 25 % or more against the previous period.
pub async fn underperformers(cx: &Context<'_>, weights: Weights) -> Result<Underperformers> {
    let card = scorecard(cx, weights).await?;
    let mut out = bottom_quartile(&card);
    let note = match cx.period {
        None => Some("no --period: decliners need a period to compare with the previous one; only the bottom quartile is shown".to_string()),
        Some(period) => {
            decliners(cx, period, &card, &mut out).await?;
            None
        }
    };
    // Worst first: the lowest scores, then the partners flagged only for a decline, by fall.
    out.sort_by(|a, b| {
        match (a.score_percentile, b.score_percentile) {
            (Some(x), Some(y)) => a
                .score
                .unwrap_or_default()
                .total_cmp(&b.score.unwrap_or_default())
                .then(x.total_cmp(&y)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a
                .revenue_change_pct
                .unwrap_or_default()
                .total_cmp(&b.revenue_change_pct.unwrap_or_default()),
        }
        .then_with(|| a.partner.partner_id.cmp(&b.partner.partner_id))
    });
    let mut gaps = crate::enablement::gaps(cx).await?;
    for u in &mut out {
        u.enablement_gaps = gaps.remove(&u.partner.partner_id).unwrap_or_default();
    }
    Ok(Underperformers {
        weights,
        note,
        partners: out,
    })
}

/// A flagged partner with its scorecard figures and no reason yet.
fn flagged(
    partner: Partner,
    row: Option<&ScorecardRow>,
    percentile: Option<f64>,
) -> Underperformer {
    Underperformer {
        partner,
        reasons: Vec::new(),
        score: row.and_then(|r| r.score),
        score_percentile: percentile,
        rank: row.and_then(|r| r.rank),
        closed_revenue: None,
        previous_revenue: None,
        revenue_change_pct: None,
        enablement_gaps: Vec::new(),
    }
}

/// The scored partners in the bottom quartile, each with the two attributes that pulled its
/// score down most.
fn bottom_quartile(card: &Scorecard) -> Vec<Underperformer> {
    let scored: Vec<f64> = card.rows.iter().filter_map(|r| r.score).collect();
    let ranked = percentile_ranks(&scored, true);
    let total = scored.len();
    let mut out = Vec::new();
    for (row, percentile) in card.rows.iter().filter(|r| r.score.is_some()).zip(ranked) {
        if percentile > 25.0 {
            continue;
        }
        let mut weakest: Vec<(&str, f64)> = row
            .attributes
            .iter()
            .filter_map(|a| a.percentile.map(|p| (a.metric, p)))
            .collect();
        weakest.sort_by(|a, b| a.1.total_cmp(&b.1));
        let weakest: Vec<String> = weakest
            .iter()
            .take(2)
            .map(|(m, p)| format!("{m} at percentile {p:.0}"))
            .collect();
        let mut u = flagged(row.partner.clone(), Some(row), Some(percentile));
        u.reasons.push(format!(
            "score {:.1} is in the bottom quartile (rank {} of {total}); weakest: {}",
            row.score.unwrap_or_default(),
            opt(row.rank),
            weakest.join(", ")
        ));
        out.push(u);
    }
    out
}

/// Adds to `out` the partners whose closed revenue fell by a quarter or more against the
/// previous period of the same length (a partner already flagged gets the reason added).
async fn decliners(
    cx: &Context<'_>,
    period: Period,
    card: &Scorecard,
    out: &mut Vec<Underperformer>,
) -> Result<()> {
    let previous = period.previous();
    let (revenue, partners) = tokio::try_join!(
        cx.by_partner(&["closed_revenue", "closed_revenue:previous_period"]),
        cx.partners()
    )?;
    for (id, v) in &revenue {
        let (now, then) = (
            v.money("closed_revenue"),
            v.money("closed_revenue:previous_period"),
        );
        let Some(then) = then.filter(|t| t.0 > 0) else {
            continue;
        };
        let now_or_zero = now.unwrap_or_default();
        // Exact: fell by at least a quarter when now <= then * 3/4.
        if now_or_zero.0 * DECLINE.1 > then.0 * (DECLINE.1 - DECLINE.0) {
            continue;
        }
        let change = 100.0 * (now_or_zero.0 - then.0) as f64 / then.0 as f64;
        let reason = format!(
            "closed revenue fell {:.1} %, from {then} ({}..{}) to {now_or_zero} ({}..{})",
            -change, previous.from, previous.to, period.from, period.to
        );
        let entry = match out.iter().position(|u| &u.partner.partner_id == id) {
            Some(i) => &mut out[i],
            None => {
                let Some(partner) = partners.get(id) else {
                    continue;
                };
                let row = card.rows.iter().find(|r| &r.partner.partner_id == id);
                out.push(flagged(partner.clone(), row, None));
                out.last_mut().expect("pushed")
            }
        };
        entry.reasons.push(reason);
        entry.closed_revenue = Some(now_or_zero);
        entry.previous_revenue = Some(then);
        entry.revenue_change_pct = Some(change);
    }
    Ok(())
}

impl Table for Underperformers {
    fn headline(&self) -> Vec<String> {
        let mut h = vec![format!("{} partners flagged", self.partners.len())];
        h.extend(self.note.clone());
        h
    }

    fn header(&self) -> Vec<String> {
        [
            "partner_id",
            "partner_name",
            "tier",
            "region",
            "reasons",
            "score",
            "rank",
            "closed_revenue",
            "previous_revenue",
            "revenue_change_pct",
            "enablement_gaps",
        ]
        .map(String::from)
        .to_vec()
    }

    fn rows(&self) -> Vec<Vec<Value>> {
        self.partners
            .iter()
            .map(|u| {
                let p = &u.partner;
                vec![
                    text(&p.partner_id),
                    text(&p.partner_name),
                    text(&p.tier),
                    text(&p.region),
                    Value::Text(u.reasons.join("; ")),
                    pct(u.score),
                    count(u.rank),
                    u.closed_revenue.into(),
                    u.previous_revenue.into(),
                    pct(u.revenue_change_pct),
                    Value::Text(u.enablement_gaps.join(", ")),
                ]
            })
            .collect()
    }
}
