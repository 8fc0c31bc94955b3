//! Customer potential: where a product that sells poorly for a partner could sell. For a
//! partner P, a product X and each customer segment S = (industry, size band):
//! - channel adoption of X in S: customers in S that bought X from any partner / customers in S
//!   that bought anything from any partner (a channel benchmark: withheld below 5 partners);
//! - P's adoption of X in S: P's customers in S that bought X from P / P's customers in S;
//! - untapped customers: P's customers in S that have not bought X from anyone, as the brand
//!   owner's users see it; for P's own users, those that have not bought X from P (a partner
//!   never learns where else its customers buy, not by a list, a count or a difference);
//! - expected additional buyers: untapped × channel adoption.
//!
//! The target list of a segment is its untapped customers, for a campaign.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::AsArray;
use arrow::datatypes::DataType;

use prism_engine::{Filter, FilterOp, Query, Row};
use serde::{Deserialize, Serialize};

use crate::{AnalysisError, Context, Money, Result, Table, Value, num, pct, text};

/// A customer segment where a product could sell for a partner.
#[derive(Clone, Debug, Serialize)]
pub struct Segment {
    /// The customers' industry.
    pub industry: String,
    /// The customers' size band.
    pub size_band: String,
    /// Percent; none when withheld (fewer than 5 partners sold in the segment) or no buyers.
    pub channel_adoption_pct: Option<f64>,
    /// How many partners the channel adoption is over.
    pub channel_partners: i64,
    /// The partner's customers in the segment.
    pub partner_customers: i64,
    /// Those that bought the product from the partner.
    pub partner_buyers: i64,
    /// Their share of the partner's customers in the segment, in percent.
    pub partner_adoption_pct: Option<f64>,
    /// The partner's customers in the segment that have not bought the product (from that partner, for a partner's user).
    pub untapped_customers: i64,
    /// Untapped customers × channel adoption; none when the adoption may not be shown.
    pub expected_additional_buyers: Option<f64>,
}

/// A customer of a target list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// The customer's id.
    pub customer_id: String,
    /// Its name.
    pub customer_name: String,
    /// Its industry.
    pub industry: String,
    /// Its size band.
    pub size_band: String,
    /// Its region.
    pub region: String,
    /// The product lines the customer already buys from the partner.
    pub already_buys: Vec<String>,
}

/// Where a product could sell for a partner.
#[derive(Clone, Debug, Serialize)]
pub struct Potential {
    /// The partner.
    pub partner_id: String,
    /// The product.
    pub product_id: String,
    /// The segments, most expected buyers first.
    pub segments: Vec<Segment>,
    /// Untapped means "not bought from the partner" (a partner's own user asked), rather than
    /// "not bought from anyone" (the brand owner's users).
    pub untapped_from_partner: bool,
    /// The untapped customers of every segment, by "industry/size band" (what they already buy
    /// is asked with `targets`).
    #[serde(skip)]
    pub untapped: BTreeMap<(String, String), Vec<Target>>,
}

const SEGMENT: [&str; 2] = ["customer.industry", "customer.size_band"];

/// A count per segment, (industry, size band).
type SegmentCounts = BTreeMap<(String, String), i64>;
/// A partner's customers that have not bought the product, by segment: its targets.
type Targets = BTreeMap<(String, String), Vec<Target>>;

fn product_filter(product: &str) -> Filter {
    Filter {
        dimension: "product.product_id".into(),
        op: FilterOp::In(vec![product.to_string()]),
    }
}

fn by_segment(rows: Vec<Row>) -> BTreeMap<(String, String), Row> {
    rows.into_iter()
        .map(|r| ((r.get(SEGMENT[0]).exact(), r.get(SEGMENT[1]).exact()), r))
        .collect()
}

/// The customer ids of a query's rows by `customer.customer_id`.
fn customer_ids(rows: Vec<Row>) -> impl Iterator<Item = String> {
    rows.into_iter()
        .map(|r| r.get("customer.customer_id").exact())
}

/// Customer segments ranked by the buyers a partner could expect for a product: its untapped customers in each, times the channel's adoption there.
pub async fn potential(cx: &Context<'_>, partner: &str, product: &str) -> Result<Potential> {
    cx.check_partner(partner)?;
    let customers = partner_customers(cx, partner, product).await?;
    // For the brand owner's users, which of them bought X from anyone — another partner or the
    // brand owner directly: the one read outside the partner's scope. A partner's own users
    // never get it (their untapped customers are those that have not bought X from them), so
    // it is not even asked under a partner's scope.
    let from_anyone = cx.audience.own_partner().is_none();
    let ids: Vec<String> = if from_anyone {
        customers.iter().map(|c| c.customer_id.clone()).collect()
    } else {
        Vec::new()
    };
    let segment_query = |filters: Vec<Filter>| Query {
        metrics: vec!["buying_customers".into()],
        by: SEGMENT.map(String::from).to_vec(),
        filters,
        ..Query::default()
    };
    // P's buyers of X, by customer: counted by segment below from P's customer list, which has
    // their segments (no customer table to join).
    let buyers_query = Query {
        metrics: vec!["buying_customers".into()],
        by: vec!["customer.customer_id".into()],
        filters: vec![product_filter(product)],
        ..Query::default()
    };
    // The questions do not depend on each other: asked side by side, each one's waits and
    // single-threaded phases leave the cores to the others.
    let (channel_x, channel_any, buyers, has_x) = tokio::try_join!(
        cx.benchmark(segment_query(vec![product_filter(product)])),
        cx.benchmark(segment_query(vec![])),
        cx.run_for(partner, buyers_query),
        bought_from_anyone(cx, product, &ids),
    )?;
    let channel = Channel {
        x: by_segment(channel_x.rows()),
        any: by_segment(channel_any.rows()),
    };
    let buyers: BTreeSet<String> = customer_ids(buyers.rows()).collect();
    let has_x = if from_anyone { has_x } else { buyers.clone() };
    let (segments, untapped) = ranked_segments(customers, &buyers, &has_x, &channel);
    Ok(Potential {
        partner_id: partner.to_string(),
        product_id: product.to_string(),
        segments,
        untapped_from_partner: !from_anyone,
        untapped,
    })
}

/// Each segment of a partner's customers, ranked by the buyers of the product it could expect
/// there, and its customers in each that have not bought the product (`has_x`): the targets.
fn ranked_segments(
    customers: Vec<Target>,
    buyers: &BTreeSet<String>,
    has_x: &BTreeSet<String>,
    channel: &Channel,
) -> (Vec<Segment>, Targets) {
    // P's customers and its buyers of X in each segment.
    let (mut own_any, mut own_x): (SegmentCounts, SegmentCounts) = Default::default();
    for c in &customers {
        let segment = (c.industry.clone(), c.size_band.clone());
        *own_any.entry(segment.clone()).or_default() += 1;
        if buyers.contains(&c.customer_id) {
            *own_x.entry(segment).or_default() += 1;
        }
    }
    let mut untapped: Targets = BTreeMap::new();
    for c in customers {
        if has_x.contains(&c.customer_id) {
            continue;
        }
        untapped
            .entry((c.industry.clone(), c.size_band.clone()))
            .or_default()
            .push(c);
    }
    let mut segments: Vec<Segment> = own_any
        .iter()
        .map(|(k, customers)| {
            let buyers = own_x.get(k).copied().unwrap_or(0);
            let open = untapped.get(k).map_or(0, |v| v.len() as i64);
            channel.segment(k, *customers, buyers, open)
        })
        .collect();
    segments.sort_by(|a, b| {
        let (x, y) = (
            a.expected_additional_buyers.unwrap_or(-1.0),
            b.expected_additional_buyers.unwrap_or(-1.0),
        );
        y.total_cmp(&x)
            .then_with(|| (&a.industry, &a.size_band).cmp(&(&b.industry, &b.size_band)))
    });
    (segments, untapped)
}

/// The partner's customers (those with an order line with it), after checking that the
/// product is one of the catalogue's.
async fn partner_customers(cx: &Context<'_>, partner: &str, product: &str) -> Result<Vec<Target>> {
    let customers_query = Query {
        // A customer is a row when it has an order line with P, whatever the metric; revenue is
        // one the customer rollup holds.
        metrics: vec!["closed_revenue".into()],
        by: [
            "customer.customer_id",
            "customer.customer_name",
            "customer.industry",
            "customer.size_band",
            "customer.region",
        ]
        .map(String::from)
        .to_vec(),
        ..Query::default()
    };
    let (catalogue, customers) = tokio::try_join!(
        async {
            Ok::<_, AnalysisError>(
                cx.engine
                    .members(cx.session, "product", &cx.audience)
                    .await?,
            )
        },
        cx.run_for(partner, customers_query),
    )?;
    if !catalogue
        .rows()
        .iter()
        .any(|r| r.text("product.product_id") == Some(product))
    {
        return Err(AnalysisError::Invalid(format!(
            "--product {product}: no such product"
        )));
    }
    Ok(customers
        .rows()
        .iter()
        .map(|c| Target {
            customer_id: c.get("customer.customer_id").exact(),
            customer_name: c.get("customer.customer_name").exact(),
            industry: c.get("customer.industry").exact(),
            size_band: c.get("customer.size_band").exact(),
            region: c.get("customer.region").exact(),
            already_buys: Vec::new(),
        })
        .collect())
}

/// Up to this many customers, which of them bought a product is asked of their ids alone.
const FEW_CUSTOMERS: usize = 1_000;

/// Which of the customers `ids` bought the product from anyone, read in the brand owner's
/// view (`Audience::brand_owner_view` refuses a partner's user).
async fn bought_from_anyone(
    cx: &Context<'_>,
    product: &str,
    ids: &[String],
) -> Result<BTreeSet<String>> {
    if ids.is_empty() {
        return Ok(BTreeSet::new());
    }
    let mut filters = vec![product_filter(product)];
    // Many customers: the product's buyers, all of them, of which the partner's are kept. A
    // filter of thousands of ids is checked against the statistics of every row group and page,
    // which took longer than reading the product's lines (12 k ids: 0.43 s against 0.06 s at
    // scale 100); a product bought by more customers than that is read whole either way.
    if ids.len() <= FEW_CUSTOMERS {
        filters.push(Filter {
            dimension: "customer.customer_id".into(),
            op: FilterOp::In(ids.to_vec()),
        });
    }
    let q = Query {
        metrics: vec!["buying_customers".into()],
        by: vec!["customer.customer_id".into()],
        filters,
        period: cx.period,
        ..Query::default()
    };
    let answer = cx
        .engine
        .run(cx.session, &q, &cx.audience.brand_owner_view()?)
        .await?;
    // Read from the answer's column as stored: a product's buyers are a million and a half
    // customers at scale 100, made into rows of text they took a second.
    let column = answer.column("customer.customer_id").ok_or_else(|| {
        AnalysisError::Invalid("the answer has no customer.customer_id column".into())
    })?;
    let ids: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    let mut has_x = BTreeSet::new();
    for batch in &answer.batches {
        let buyers = arrow::compute::cast(batch.column(column), &DataType::Utf8)
            .map_err(|e| AnalysisError::Invalid(format!("unexpected customer ids: {e}")))?;
        has_x.extend(
            buyers
                .as_string::<i32>()
                .iter()
                .flatten()
                .filter_map(|c| ids.get(c))
                .map(|c| c.to_string()),
        );
    }
    Ok(has_x)
}

/// The channel's buyers of the product and of anything, by segment (benchmarks: a figure over
/// too few partners is withheld).
struct Channel {
    x: BTreeMap<(String, String), Row>,
    any: BTreeMap<(String, String), Row>,
}

impl Channel {
    /// A segment of the partner's, with the channel's adoption there and what it makes of
    /// the partner's untapped customers.
    fn segment(&self, k: &(String, String), customers: i64, buyers: i64, open: i64) -> Segment {
        // A withheld benchmark figure is missing: no adoption can be shown from it.
        let count = |m: &BTreeMap<(String, String), Row>| {
            m.get(k).and_then(|r| r.count("buying_customers"))
        };
        // The partners behind the adoption: the fewer of those that sold X in the segment
        // and those that sold anything in it.
        let partners = |m: &BTreeMap<(String, String), Row>| {
            m.get(k)
                .and_then(|r| r.count("benchmark_partners"))
                .unwrap_or(0)
        };
        // Withheld figures are empty: no adoption can be shown from them. Nor when fewer than
        // 5 partners sold X in the segment (none included): the numerator's partners count
        // as much as the denominator's, and "nobody sold it" is every partner's own figure.
        let adoption = match (count(&self.x), count(&self.any)) {
            (Some(x), Some(a)) if a > 0 => Some(100.0 * x as f64 / a as f64),
            _ => None,
        };
        Segment {
            industry: k.0.clone(),
            size_band: k.1.clone(),
            channel_adoption_pct: adoption,
            channel_partners: partners(&self.x).min(partners(&self.any)),
            partner_customers: customers,
            partner_buyers: buyers,
            partner_adoption_pct: (customers > 0).then(|| 100.0 * buyers as f64 / customers as f64),
            untapped_customers: open,
            expected_additional_buyers: adoption.map(|a| open as f64 * a / 100.0),
        }
    }
}

impl Potential {
    /// The segment `INDUSTRY/SIZE` names, or why it names none of the partner's.
    pub fn segment(&self, segment: &str) -> Result<&Segment> {
        let (industry, size) = segment.split_once('/').ok_or_else(|| {
            AnalysisError::Invalid(format!(
                "--segment {segment:?}: expected INDUSTRY/SIZE_BAND, e.g. Healthcare/Enterprise"
            ))
        })?;
        let (industry, size) = (industry.trim(), size.trim());
        self.segments
            .iter()
            .find(|s| (s.industry.as_str(), s.size_band.as_str()) == (industry, size))
            .ok_or_else(|| {
                let known: Vec<String> = self
                    .segments
                    .iter()
                    .map(|s| format!("{}/{}", s.industry, s.size_band))
                    .collect();
                AnalysisError::Invalid(format!(
                    "--segment {segment}: partner {} has no customers in it; its segments are {}{}",
                    self.partner_id,
                    known.join(", "),
                    prism_model::did_you_mean(segment, known.iter().map(String::as_str))
                ))
            })
    }

    /// The untapped customers of `INDUSTRY/SIZE`, for a campaign, each with the product lines
    /// it already buys from the partner (asked here, for this list's customers only: the
    /// segments do not need them).
    pub async fn targets(&self, cx: &Context<'_>, segment: &str) -> Result<TargetList> {
        let key = self.segment(segment)?;
        let key = (key.industry.clone(), key.size_band.clone());
        let mut customers = self.untapped.get(&key).cloned().unwrap_or_default();
        if customers.is_empty() {
            return Ok(TargetList { customers });
        }
        let ids = customers.iter().map(|c| c.customer_id.clone()).collect();
        let lines = Query {
            metrics: vec!["units_sold".into()],
            by: vec!["customer.customer_id".into(), "product.product_line".into()],
            filters: vec![Filter {
                dimension: "customer.customer_id".into(),
                op: FilterOp::In(ids),
            }],
            ..Query::default()
        };
        let mut buys: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for l in cx.run_for(&self.partner_id, lines).await?.rows() {
            buys.entry(l.get("customer.customer_id").exact())
                .or_default()
                .push(l.get("product.product_line").exact());
        }
        for c in &mut customers {
            c.already_buys = buys.remove(&c.customer_id).unwrap_or_default();
        }
        Ok(TargetList { customers })
    }
}

/// A segment's untapped customers, for a campaign.
#[derive(Clone, Debug, Serialize)]
pub struct TargetList {
    /// The customers.
    pub customers: Vec<Target>,
}

impl Table for TargetList {
    fn headline(&self) -> Vec<String> {
        vec![format!("{} untapped customers", self.customers.len())]
    }

    fn header(&self) -> Vec<String> {
        [
            "customer_id",
            "customer_name",
            "industry",
            "size_band",
            "region",
            "already_buys",
        ]
        .map(String::from)
        .to_vec()
    }

    fn rows(&self) -> Vec<Vec<Value>> {
        self.customers
            .iter()
            .map(|c| {
                vec![
                    text(&c.customer_id),
                    text(&c.customer_name),
                    text(&c.industry),
                    text(&c.size_band),
                    text(&c.region),
                    Value::Text(c.already_buys.join("; ")),
                ]
            })
            .collect()
    }
}

impl Table for Potential {
    fn headline(&self) -> Vec<String> {
        vec![
            format!(
                "partner {}, product {}: segments ranked by expected additional buyers (untapped customers × channel adoption); channel adoption withheld where fewer than {} partners sold the product in the segment",
                self.partner_id,
                self.product_id,
                prism_engine::BENCHMARK_MIN_PARTNERS
            ),
            if self.untapped_from_partner {
                format!(
                    "untapped customers: the partner's customers that have not bought {} from it",
                    self.product_id
                )
            } else {
                format!(
                    "untapped customers: the partner's customers that have not bought {} from anyone (another partner or directly)",
                    self.product_id
                )
            },
        ]
    }

    fn missing_reason(&self, row: usize, column: &str) -> Option<String> {
        let s = self.segments.get(row)?;
        (column == "channel_adoption_pct" && s.channel_adoption_pct.is_none()).then(|| {
            format!(
                "withheld: fewer than {} partners sold the product in this segment ({})",
                prism_engine::BENCHMARK_MIN_PARTNERS,
                s.channel_partners
            )
        })
    }

    fn header(&self) -> Vec<String> {
        [
            "industry",
            "size_band",
            "channel_adoption_pct",
            "channel_partners",
            "partner_customers",
            "partner_buyers",
            "partner_adoption_pct",
            "untapped_customers",
            "expected_additional_buyers",
        ]
        .map(String::from)
        .to_vec()
    }

    fn rows(&self) -> Vec<Vec<Value>> {
        self.segments
            .iter()
            .map(|s| {
                vec![
                    text(&s.industry),
                    text(&s.size_band),
                    s.channel_adoption_pct
                        .map_or_else(|| text("(withheld)"), Value::Percent),
                    Value::Count(s.channel_partners),
                    Value::Count(s.partner_customers),
                    Value::Count(s.partner_buyers),
                    pct(s.partner_adoption_pct),
                    Value::Count(s.untapped_customers),
                    num(s.expected_additional_buyers),
                ]
            })
            .collect()
    }
}

/// The way into customer potential without choosing anything: the partner's poor sellers (from
/// its product performance: the lowest revenue in its active lines, unsold included), each with
/// the segment where it could sell most, those with the most expected buyers first.
#[derive(Clone, Debug, Serialize)]
pub struct Guide {
    /// The partner.
    pub partner_id: String,
    /// Its poor sellers, most expected buyers first.
    pub products: Vec<GuideRow>,
}

/// One poor seller and its best segment.
#[derive(Clone, Debug, Serialize)]
pub struct GuideRow {
    /// The product's id.
    pub product_id: String,
    /// Its name.
    pub product_name: String,
    /// Its product line.
    pub product_line: String,
    /// The partner's revenue of it in the period.
    pub closed_revenue: Option<Money>,
    /// The segment with the most expected additional buyers, `INDUSTRY/SIZE_BAND`; none when no
    /// segment has a channel adoption to expect buyers from.
    pub best_segment: Option<String>,
    /// The partner's customers in that segment that have not bought it.
    pub untapped_customers: i64,
    /// The channel's adoption in that segment, in percent.
    pub channel_adoption_pct: Option<f64>,
    /// Untapped customers × channel adoption.
    pub expected_additional_buyers: Option<f64>,
}

/// The partner's poor sellers, the most promising first: each one's customer potential asked
/// side by side, and its best segment kept.
pub async fn guide(cx: &Context<'_>, partner: &str) -> Result<Guide> {
    let products = crate::products::products(cx, partner).await?;
    // The poorest sellers first (the rows are by revenue, highest first), best sellers never; a
    // few more than are shown, since a product the channel does not sell either has no adoption
    // to expect buyers from.
    let poor: Vec<&crate::products::ProductRow> = products
        .rows
        .iter()
        .rev()
        .filter(|r| r.role != Some("best seller"))
        .take(2 * crate::products::TOP)
        .collect();
    let potentials = potentials(cx, partner, &poor).await?;
    let mut rows: Vec<GuideRow> = poor
        .iter()
        .zip(potentials)
        .map(|(p, potential)| {
            let best = potential
                .segments
                .iter()
                .find(|s| s.expected_additional_buyers.is_some());
            GuideRow {
                product_id: p.product_id.clone(),
                product_name: p.product_name.clone(),
                product_line: p.product_line.clone(),
                closed_revenue: p.closed_revenue,
                best_segment: best.map(|s| format!("{}/{}", s.industry, s.size_band)),
                untapped_customers: best.map_or(0, |s| s.untapped_customers),
                channel_adoption_pct: best.and_then(|s| s.channel_adoption_pct),
                expected_additional_buyers: best.and_then(|s| s.expected_additional_buyers),
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        let (x, y) = (
            a.expected_additional_buyers.unwrap_or(-1.0),
            b.expected_additional_buyers.unwrap_or(-1.0),
        );
        y.total_cmp(&x)
            .then_with(|| a.product_id.cmp(&b.product_id))
    });
    rows.truncate(crate::products::TOP);
    Ok(Guide {
        partner_id: partner.to_string(),
        products: rows,
    })
}

/// Each product's potential, asked side by side.
async fn potentials(
    cx: &Context<'_>,
    partner: &str,
    products: &[&crate::products::ProductRow],
) -> Result<Vec<Potential>> {
    let mut out = Vec::with_capacity(products.len());
    // Two at a time: each is several scans, and a page must not take every core at once.
    for pair in products.chunks(2) {
        match pair {
            [a, b] => {
                let (x, y) = tokio::try_join!(
                    potential(cx, partner, &a.product_id),
                    potential(cx, partner, &b.product_id)
                )?;
                out.extend([x, y]);
            }
            [a] => out.push(potential(cx, partner, &a.product_id).await?),
            _ => unreachable!("chunks of two"),
        }
    }
    Ok(out)
}

impl Table for Guide {
    fn headline(&self) -> Vec<String> {
        vec![format!(
            "partner {}: its poor sellers and where each could sell — the segment with the most expected additional buyers (untapped customers × the channel's adoption there)",
            self.partner_id
        )]
    }

    fn header(&self) -> Vec<String> {
        [
            "product_id",
            "product_name",
            "product_line",
            "closed_revenue",
            "best_segment",
            "untapped_customers",
            "channel_adoption_pct",
            "expected_additional_buyers",
        ]
        .map(String::from)
        .to_vec()
    }

    fn rows(&self) -> Vec<Vec<Value>> {
        self.products
            .iter()
            .map(|r| {
                vec![
                    text(&r.product_id),
                    text(&r.product_name),
                    text(&r.product_line),
                    r.closed_revenue.into(),
                    r.best_segment.as_deref().map_or(Value::Missing, text),
                    Value::Count(r.untapped_customers),
                    pct(r.channel_adoption_pct),
                    num(r.expected_additional_buyers),
                ]
            })
            .collect()
    }
}
