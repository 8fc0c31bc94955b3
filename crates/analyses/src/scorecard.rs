//! The partner scorecard: every active partner's revenue, pipeline, win rate, CSAT and
//! responsiveness, each as a percentile rank among the partners that have a value, combined
//! into a weighted score, and the partners ranked by it.

use serde::Serialize;

use crate::{
    AnalysisError, Context, Money, Partner, Result, Table, Value, active_partners, count, pct,
    percentile_ranks, text,
};

/// The weight of each attribute in the score.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Weights {
    /// Closed revenue's weight.
    pub revenue: f64,
    /// Open pipeline's weight.
    pub pipeline: f64,
    /// Win rate's weight.
    pub win_rate: f64,
    /// Satisfaction's weight.
    pub csat: f64,
    /// Responsiveness' weight (first response time, lower better).
    pub responsiveness: f64,
    /// Certified people on the period's last day: 0 unless the user gives it a weight.
    pub certified_people: f64,
}

impl Default for Weights {
    fn default() -> Weights {
        Weights {
            revenue: 0.35,
            pipeline: 0.20,
            win_rate: 0.15,
            csat: 0.20,
            responsiveness: 0.10,
            certified_people: 0.0,
        }
    }
}

const WEIGHT_NAMES: [&str; 6] = [
    "revenue",
    "pipeline",
    "win_rate",
    "csat",
    "responsiveness",
    "certified_people",
];

impl Weights {
    /// `revenue=0.5,csat=0.3`: the named weights change, the others keep their defaults.
    /// Weights are non-negative numbers and not all zero.
    pub fn parse(s: &str) -> Result<Weights> {
        let mut w = Weights::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                return Err(AnalysisError::Invalid(format!(
                    "--weights {part:?}: expected NAME=NUMBER, e.g. revenue=0.4"
                )));
            };
            let (name, value) = (name.trim(), value.trim());
            let v: f64 = value
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| {
                    AnalysisError::Invalid(format!("--weights {name}: {value:?} is not a number"))
                })?;
            if v < 0.0 {
                return Err(AnalysisError::Invalid(format!(
                    "--weights {name}: {value} is negative; a weight is 0 or more"
                )));
            }
            *match name {
                "revenue" => &mut w.revenue,
                "pipeline" => &mut w.pipeline,
                "win_rate" => &mut w.win_rate,
                "csat" => &mut w.csat,
                "responsiveness" => &mut w.responsiveness,
                "certified_people" => &mut w.certified_people,
                other => {
                    return Err(AnalysisError::Invalid(format!(
                        "--weights: no attribute `{other}`: the attributes are {}{}",
                        WEIGHT_NAMES.join(", "),
                        prism_model::did_you_mean(other, WEIGHT_NAMES)
                    )));
                }
            } = v;
        }
        if w.all().iter().all(|v| *v == 0.0) {
            return Err(AnalysisError::Invalid(
                "--weights: every weight is 0; at least one must be more".into(),
            ));
        }
        Ok(w)
    }

    /// Each attribute's name (as `parse` takes it) and weight, in the scorecard's order.
    pub fn named(&self) -> [(&'static str, f64); 6] {
        let all = self.all();
        std::array::from_fn(|i| (WEIGHT_NAMES[i], all[i]))
    }

    fn all(&self) -> [f64; 6] {
        [
            self.revenue,
            self.pipeline,
            self.win_rate,
            self.csat,
            self.responsiveness,
            self.certified_people,
        ]
    }
}

/// The metrics behind the attributes, in the order of `Weights`, and whether more is better.
const ATTRIBUTES: [(&str, bool); 6] = [
    ("closed_revenue", true),
    ("open_pipeline", true),
    ("win_rate", true),
    ("csat_avg", true),
    ("avg_first_response_hours", false),
    ("certified_people", true),
];

/// One attribute of a partner's score.
#[derive(Clone, Debug, Serialize)]
pub struct Attribute {
    /// The metric.
    pub metric: &'static str,
    /// As the engine formats it (money with two decimals); none when the partner has no value.
    pub value: Value,
    /// Its percentile rank among the active partners, 100 the best.
    pub percentile: Option<f64>,
}

/// One partner on the scorecard.
#[derive(Clone, Debug, Serialize)]
pub struct ScorecardRow {
    /// 1 for the best score; equal scores share a rank; none without any attribute.
    pub rank: Option<usize>,
    /// The partner.
    #[serde(flatten)]
    pub partner: Partner,
    /// The weighted score, 0 to 100.
    pub score: Option<f64>,
    /// Each attribute's value and percentile rank.
    pub attributes: Vec<Attribute>,
}

/// The scorecard: every active partner's attributes as percentile ranks, a weighted score, and the ranking.
#[derive(Clone, Debug, Serialize)]
pub struct Scorecard {
    /// The weights used.
    pub weights: Weights,
    /// The partners, best score first.
    pub rows: Vec<ScorecardRow>,
}

/// Every active partner the audience sees, scored with `weights`.
pub async fn scorecard(cx: &Context<'_>, weights: Weights) -> Result<Scorecard> {
    let metrics: Vec<&str> = ATTRIBUTES.iter().map(|a| a.0).collect();
    // Asked together: the partners' list is read while the metrics are computed.
    let (values, partners) = tokio::try_join!(cx.by_partner(&metrics), cx.partners())?;
    let partners = active_partners(&partners, |id| {
        values
            .get(id)
            .is_some_and(|v| !v.get("closed_revenue").is_missing())
    });

    // A partner without orders or open opportunities sold nothing and has no pipeline: 0, which
    // ranks. A rate or an average over nothing has no value and does not rank.
    let value = |p: &Partner, i: usize| -> Value {
        let v = values
            .get(&p.partner_id)
            .map_or(Value::Missing, |row| row.get(ATTRIBUTES[i].0).clone());
        match v {
            Value::Missing if i < 2 => Value::Money(Money(0)),
            // Nobody certified is 0 people, which ranks.
            Value::Missing if i == 5 => Value::Count(0),
            v => v,
        }
    };
    let mut percentiles: Vec<Vec<Option<f64>>> = vec![vec![None; ATTRIBUTES.len()]; partners.len()];
    for (i, (_, higher_is_better)) in ATTRIBUTES.iter().enumerate() {
        let present: Vec<(usize, f64)> = partners
            .iter()
            .enumerate()
            .filter_map(|(k, p)| value(p, i).number().map(|v| (k, v)))
            .collect();
        let ranks = percentile_ranks(
            &present.iter().map(|x| x.1).collect::<Vec<_>>(),
            *higher_is_better,
        );
        for ((k, _), r) in present.iter().zip(ranks) {
            percentiles[*k][i] = Some(r);
        }
    }
    let w = weights.all();
    let mut rows: Vec<ScorecardRow> = partners
        .iter()
        .zip(&percentiles)
        .map(|(p, ranks)| {
            // The weighted mean over the attributes the partner has.
            let (sum, weight) = ranks
                .iter()
                .zip(w)
                .filter_map(|(r, w)| r.map(|r| (r * w, w)))
                .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
            ScorecardRow {
                rank: None,
                partner: p.clone(),
                score: (weight > 0.0).then(|| sum / weight),
                attributes: ATTRIBUTES
                    .iter()
                    .enumerate()
                    .map(|(i, (metric, _))| Attribute {
                        metric,
                        value: value(p, i),
                        percentile: ranks[i],
                    })
                    .collect(),
            }
        })
        .collect();
    rank(&mut rows);
    Ok(Scorecard { weights, rows })
}

/// Best score first (then by partner id), each ranked; partners with the same score share
/// the rank, and partners without a score come last, unranked.
fn rank(rows: &mut [ScorecardRow]) {
    rows.sort_by(|a, b| match (a.score, b.score) {
        (Some(x), Some(y)) => y
            .total_cmp(&x)
            .then_with(|| a.partner.partner_id.cmp(&b.partner.partner_id)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.partner.partner_id.cmp(&b.partner.partner_id),
    });
    for i in 0..rows.len() {
        rows[i].rank = match rows[i].score {
            None => None,
            Some(s) if i > 0 && rows[i - 1].score == Some(s) => rows[i - 1].rank,
            Some(_) => Some(i + 1),
        };
    }
}

impl Table for Scorecard {
    fn headline(&self) -> Vec<String> {
        let w = &self.weights;
        vec![format!(
            "{} partners ranked by score; weights: revenue {}, pipeline {}, win_rate {}, csat {}, responsiveness {}{} (percentile ranks 0-100, lower response hours rank higher)",
            self.rows.len(),
            w.revenue,
            w.pipeline,
            w.win_rate,
            w.csat,
            w.responsiveness,
            if w.certified_people > 0.0 {
                format!(", certified_people {}", w.certified_people)
            } else {
                String::new()
            }
        )]
    }

    fn header(&self) -> Vec<String> {
        let mut h: Vec<String> = [
            "rank",
            "partner_id",
            "partner_name",
            "tier",
            "region",
            "score",
        ]
        .map(String::from)
        .to_vec();
        for (m, _) in ATTRIBUTES {
            h.push(m.to_string());
            h.push(format!("{m}_percentile"));
        }
        h
    }

    fn rows(&self) -> Vec<Vec<Value>> {
        self.rows
            .iter()
            .map(|r| {
                let p = &r.partner;
                let mut row = vec![
                    count(r.rank),
                    text(&p.partner_id),
                    text(&p.partner_name),
                    text(&p.tier),
                    text(&p.region),
                    pct(r.score),
                ];
                for a in &r.attributes {
                    row.push(a.value.clone());
                    row.push(pct(a.percentile));
                }
                row
            })
            .collect()
    }
}
