//! Partner segmentation (Pareto): which partners bring 80 % of partner revenue.
//!
//! Partners are ordered by closed_revenue in the period, descending, ties by partner_id;
//! direct sales take no part. Class A is every partner up to and including the first whose
//! cumulative share reaches 80 %, class B the following ones up to and including the first that
//! reaches 95 %, class C the rest, and always the partners without revenue (none, or a net
//! credit).

use serde::Serialize;

use crate::{Context, Money, Partner, Result, Table, Value, active_partners, pct, text};

/// One partner in the segmentation.
#[derive(Clone, Debug, Serialize)]
pub struct ParetoRow {
    /// The value of the cut (`partner.tier` = Gold), when the segmentation is cut.
    pub group: Option<String>,
    /// The partner.
    #[serde(flatten)]
    pub partner: Partner,
    /// Its closed revenue in the period.
    pub closed_revenue: Money,
    /// Its share of the group's partner revenue, in percent.
    pub share_pct: Option<f64>,
    /// The running share of the group's partner revenue, largest first, up to this partner.
    pub cumulative_pct: Option<f64>,
    /// A (largest first, up to the first partner whose running share reaches 80 %), B (up to
    /// the first reaching 95 %) or C.
    pub class: char,
}

/// The segmentation of one group (or of all partners).
#[derive(Clone, Debug, Serialize)]
pub struct ParetoGroup {
    /// The group's value of the cut; none when not cut.
    pub group: Option<String>,
    /// Its partners' closed revenue.
    pub partner_revenue: Money,
    /// Its active partners.
    pub active_partners: usize,
    /// Its class A partners.
    pub class_a_partners: usize,
    /// Class A partners' share of the active partners, in percent.
    pub class_a_pct_of_partners: Option<f64>,
    /// The sentence that says it ("12 partners, 14.6 % of them, bring 80 % ...").
    pub headline: String,
}

/// Partner segmentation: which partners bring 80 % of partner revenue.
#[derive(Clone, Debug, Serialize)]
pub struct Pareto {
    /// The dimension it is cut by, if any.
    pub by: Option<String>,
    /// Each group's figures.
    pub groups: Vec<ParetoGroup>,
    /// Every active partner, by group and revenue.
    pub rows: Vec<ParetoRow>,
}

/// The cuts a segmentation can be made within.
pub const CUTS: [&str; 3] = ["partner.partner_type", "partner.tier", "partner.region"];

/// Classes A, B and C of the active partners the audience sees, by their closed revenue in the period, optionally within each value of `by`.
pub async fn pareto(cx: &Context<'_>, by: Option<&str>) -> Result<Pareto> {
    if let Some(b) = by
        && !CUTS.contains(&b)
    {
        return Err(crate::AnalysisError::Invalid(format!(
            "--by {b}: a segmentation can be cut by {}{}",
            CUTS.join(", "),
            prism_model::did_you_mean(b, CUTS)
        )));
    }
    // Asked together: the partners' list is read while the revenue is summed.
    let (revenue, partners) = tokio::try_join!(cx.by_partner(&["closed_revenue"]), cx.partners())?;
    let revenue_of = |id: &str| revenue.get(id).and_then(|r| r.money("closed_revenue"));
    let partners = active_partners(&partners, |id| revenue_of(id).is_some());

    let mut groups: std::collections::BTreeMap<Option<String>, Vec<(Partner, Money, bool)>> =
        Default::default();
    for p in partners {
        let key = by.map(|b| p.attribute(b).unwrap_or_default().to_string());
        let r = revenue_of(&p.partner_id);
        groups
            .entry(key)
            .or_default()
            .push((p, r.unwrap_or_default(), r.is_some_and(|m| m.0 > 0)));
    }
    let mut out = Pareto {
        by: by.map(str::to_string),
        groups: Vec::new(),
        rows: Vec::new(),
    };
    for (group, members) in groups {
        let (summary, rows) = classify(group, members, by);
        out.groups.push(summary);
        out.rows.extend(rows);
    }
    Ok(out)
}

/// One group's partners in classes A, B and C by their revenue, largest first, and the
/// group's summary. `members` are (partner, closed revenue, whether it sold at all).
fn classify(
    group: Option<String>,
    mut members: Vec<(Partner, Money, bool)>,
    by: Option<&str>,
) -> (ParetoGroup, Vec<ParetoRow>) {
    members.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then_with(|| a.0.partner_id.cmp(&b.0.partner_id))
    });
    let total: i128 = members.iter().map(|m| m.1.0).sum();
    let mut running = 0i128;
    // A: until the first reaching 80 % (included); B: until the first reaching 95 %.
    let mut class = 'A';
    let mut class_a = 0;
    let n = members.len();
    let mut rows = Vec::with_capacity(n);
    for (partner, revenue, sold) in members {
        running += revenue.0;
        let (share, cumulative) = if total > 0 {
            (
                Some(100.0 * revenue.0 as f64 / total as f64),
                Some(100.0 * running as f64 / total as f64),
            )
        } else {
            (None, None)
        };
        let this = if total <= 0 || !sold { 'C' } else { class };
        if this == 'A' {
            class_a += 1;
        }
        // Exact, in cents: a boundary partner reaching exactly 80 % is in A.
        if this == 'A' && running * 100 >= total * 80 {
            class = 'B';
        } else if this == 'B' && running * 100 >= total * 95 {
            class = 'C';
        }
        rows.push(ParetoRow {
            group: group.clone(),
            partner,
            closed_revenue: revenue,
            share_pct: share,
            cumulative_pct: cumulative,
            class: this,
        });
    }
    let share_of_partners = (n > 0).then(|| 100.0 * class_a as f64 / n as f64);
    let within = group.as_ref().map_or(String::new(), |g| {
        format!(" ({} {g})", by.unwrap_or_default())
    });
    let headline = if total <= 0 {
        format!("no partner revenue in the period{within}: every partner is class C")
    } else {
        format!(
            "{class_a} partner{}, {:.1} % of the {n} active partners, bring 80 % of partner revenue{within}",
            if class_a == 1 { "" } else { "s" },
            share_of_partners.unwrap_or(0.0)
        )
    };
    let summary = ParetoGroup {
        group,
        partner_revenue: Money(total),
        active_partners: n,
        class_a_partners: class_a,
        class_a_pct_of_partners: share_of_partners,
        headline,
    };
    (summary, rows)
}

/// A partner whose class is not what it was in the previous period.
#[derive(Clone, Debug, Serialize)]
pub struct ClassChange {
    /// The partner.
    #[serde(flatten)]
    pub partner: Partner,
    /// Its class in the previous period.
    pub class_before: char,
    /// Its class in the period.
    pub class_now: char,
    /// Its closed revenue in the previous period.
    pub closed_revenue_before: Money,
    /// Its closed revenue in the period.
    pub closed_revenue_now: Money,
}

/// The partners whose class in the period differs from their class in the previous period of
/// the same length (`Period::previous`), each segmentation over all the partners the audience
/// holds; partners in only one of the two are not compared. A class is the channel's: a
/// partner user, whose audience holds one partner, is refused.
pub async fn class_changes(cx: &Context<'_>) -> Result<Vec<ClassChange>> {
    if cx.audience.own_partner().is_some() {
        return Err(crate::AnalysisError::Forbidden(
            "a partner's class is among the channel's partners: not for a partner's user".into(),
        ));
    }
    let Some(period) = cx.period else {
        return Err(crate::AnalysisError::Invalid(
            "a class change is against the previous period: give a period (latest-quarter, 2025-Q3)"
                .into(),
        ));
    };
    let before_cx = Context {
        period: Some(period.previous()),
        audience: cx.audience.clone(),
        ..*cx
    };
    let (now, before) = tokio::try_join!(pareto(cx, None), pareto(&before_cx, None))?;
    let before: std::collections::BTreeMap<&str, &ParetoRow> = before
        .rows
        .iter()
        .map(|r| (r.partner.partner_id.as_str(), r))
        .collect();
    Ok(now
        .rows
        .iter()
        .filter_map(|r| {
            let was = before.get(r.partner.partner_id.as_str())?;
            (was.class != r.class).then(|| ClassChange {
                partner: r.partner.clone(),
                class_before: was.class,
                class_now: r.class,
                closed_revenue_before: was.closed_revenue,
                closed_revenue_now: r.closed_revenue,
            })
        })
        .collect())
}

impl Table for Pareto {
    fn headline(&self) -> Vec<String> {
        self.groups.iter().map(|g| g.headline.clone()).collect()
    }

    fn header(&self) -> Vec<String> {
        let mut h: Vec<String> = self.by.iter().cloned().collect();
        h.extend(
            [
                "partner_id",
                "partner_name",
                "tier",
                "partner_type",
                "region",
                "closed_revenue",
                "share_pct",
                "cumulative_pct",
                "class",
            ]
            .map(String::from),
        );
        h
    }

    fn rows(&self) -> Vec<Vec<Value>> {
        self.rows
            .iter()
            .map(|r| {
                let mut row: Vec<Value> = r.group.iter().map(|g| text(g)).collect();
                let p = &r.partner;
                row.extend([
                    text(&p.partner_id),
                    text(&p.partner_name),
                    text(&p.tier),
                    text(&p.partner_type),
                    text(&p.region),
                ]);
                row.extend([
                    Value::Money(r.closed_revenue),
                    pct(r.share_pct),
                    pct(r.cumulative_pct),
                    Value::Text(r.class.to_string()),
                ]);
                row
            })
            .collect()
    }
}
