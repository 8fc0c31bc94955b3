//! The deal registration funnel: registrations submitted, decided, approved, rejected, expired
//! and pending; the approval rate and days to a decision; the approved registrations that became
//! opportunities and those won; each partner's figures for brand-owner users; and the partners
//! whose approval rate or win rate on registered deals is in the bottom quartile.

use serde::Serialize;

use prism_engine::Row;

use crate::{Context, Partner, Result, Table, Value, num, pct, percentile_ranks, text};

/// One funnel: the channel's, or one partner's.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Funnel {
    /// Registrations submitted in the period.
    pub submitted: i64,
    /// Of those, decided (approved or rejected).
    pub decided: i64,
    /// Approved.
    pub approved: i64,
    /// Rejected.
    pub rejected: i64,
    /// Expired without a decision.
    pub expired: i64,
    /// Still pending.
    pub pending: i64,
    /// 100 * approved / (approved + rejected).
    pub approval_rate: Option<f64>,
    /// Average days from submission to decision.
    pub avg_decision_days: Option<f64>,
    /// Approved registrations that became an opportunity.
    pub converted: i64,
    /// Approved registrations whose opportunity is won now.
    pub won: i64,
    /// 100 * won / approved registrations whose opportunity is closed.
    pub win_rate: Option<f64>,
}

/// The metrics of a funnel.
const METRICS: [&str; 11] = [
    "registrations",
    "decided_registrations",
    "approved_registrations",
    "rejected_registrations",
    "expired_registrations",
    "pending_registrations",
    "registration_approval_rate",
    "avg_registration_decision_days",
    "registrations_converted",
    "registrations_won",
    "registration_win_rate",
];

impl Funnel {
    fn from_row(row: &Row) -> Funnel {
        let count = |metric: &str| row.count(metric).unwrap_or(0);
        Funnel {
            submitted: count("registrations"),
            decided: count("decided_registrations"),
            approved: count("approved_registrations"),
            rejected: count("rejected_registrations"),
            expired: count("expired_registrations"),
            pending: count("pending_registrations"),
            approval_rate: row.number("registration_approval_rate"),
            avg_decision_days: row.number("avg_registration_decision_days"),
            converted: count("registrations_converted"),
            won: count("registrations_won"),
            win_rate: row.number("registration_win_rate"),
        }
    }
}

/// One partner's funnel.
#[derive(Clone, Debug, Serialize)]
pub struct PartnerFunnel {
    /// The partner.
    #[serde(flatten)]
    pub partner: Partner,
    /// Its funnel.
    #[serde(flatten)]
    pub funnel: Funnel,
    /// Why the partner is flagged: its approval rate or registered win rate in the bottom
    /// quartile of the partners that have one.
    pub flags: Vec<String>,
}

/// The deal registration funnel: the channel's and each partner's.
#[derive(Clone, Debug, Serialize)]
pub struct Registrations {
    /// Over the audience's registrations: the channel for the brand owner, one partner's own.
    pub total: Funnel,
    /// Every partner with registrations in the period, most submitted first.
    pub partners: Vec<PartnerFunnel>,
}

/// Registrations submitted, decided, approved and won, for the audience and each partner, the bottom quartile flagged.
pub async fn registrations(cx: &Context<'_>) -> Result<Registrations> {
    let (total, by_partner, partners) =
        tokio::try_join!(cx.totals(&METRICS), cx.by_partner(&METRICS), cx.partners())?;
    let total = Funnel::from_row(&total);
    let mut rows: Vec<PartnerFunnel> = by_partner
        .iter()
        .filter_map(|(id, row)| {
            Some(PartnerFunnel {
                partner: partners.get(id)?.clone(),
                funnel: Funnel::from_row(row),
                flags: Vec::new(),
            })
        })
        .filter(|p| p.funnel.submitted > 0)
        .collect();
    // The bottom quartile is among several partners: a partner user's one row is no quartile.
    if rows.len() >= 4 {
        for (what, value) in [
            (
                "approval rate",
                (|f: &Funnel| f.approval_rate) as fn(&Funnel) -> Option<f64>,
            ),
            ("win rate on registered deals", |f: &Funnel| f.win_rate),
        ] {
            let with: Vec<(usize, f64)> = rows
                .iter()
                .enumerate()
                .filter_map(|(i, r)| value(&r.funnel).map(|v| (i, v)))
                .collect();
            let values: Vec<f64> = with.iter().map(|(_, v)| *v).collect();
            for ((i, v), rank) in with.iter().zip(percentile_ranks(&values, true)) {
                if rank <= 25.0 {
                    rows[*i].flags.push(format!(
                        "{what} {v:.1} % is in the bottom quartile (percentile {rank:.0} of {} partners)",
                        values.len()
                    ));
                }
            }
        }
    }
    rows.sort_by(|a, b| {
        b.funnel
            .submitted
            .cmp(&a.funnel.submitted)
            .then_with(|| a.partner.partner_id.cmp(&b.partner.partner_id))
    });
    Ok(Registrations {
        total,
        partners: rows,
    })
}

impl Table for Registrations {
    fn headline(&self) -> Vec<String> {
        let t = &self.total;
        let flagged = self.partners.iter().filter(|p| !p.flags.is_empty()).count();
        let mut h = vec![format!(
            "{} registrations: {} approved, {} rejected, {} expired, {} pending; approval rate {} %, {} days to a decision on average",
            t.submitted,
            t.approved,
            t.rejected,
            t.expired,
            t.pending,
            pct(t.approval_rate),
            t.avg_decision_days
                .map_or(String::new(), |d| format!("{d:.1}"))
        )];
        h.push(format!(
            "{} approved registrations became opportunities, {} of them won; win rate on registered deals {} %",
            t.converted,
            t.won,
            pct(t.win_rate)
        ));
        if flagged > 0 {
            h.push(format!(
                "{flagged} partners in the bottom quartile of approval rate or registered win rate"
            ));
        }
        h
    }

    fn header(&self) -> Vec<String> {
        [
            "partner_id",
            "partner_name",
            "tier",
            "submitted",
            "approved",
            "rejected",
            "expired",
            "pending",
            "approval_rate_pct",
            "avg_decision_days",
            "converted",
            "won",
            "win_rate_pct",
            "flags",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn rows(&self) -> Vec<Vec<Value>> {
        self.partners
            .iter()
            .map(|p| {
                let f = &p.funnel;
                vec![
                    text(&p.partner.partner_id),
                    text(&p.partner.partner_name),
                    text(&p.partner.tier),
                    Value::Count(f.submitted),
                    Value::Count(f.approved),
                    Value::Count(f.rejected),
                    Value::Count(f.expired),
                    Value::Count(f.pending),
                    pct(f.approval_rate),
                    num(f.avg_decision_days),
                    Value::Count(f.converted),
                    Value::Count(f.won),
                    pct(f.win_rate),
                    Value::Text(p.flags.join("; ")),
                ]
            })
            .collect()
    }
}
