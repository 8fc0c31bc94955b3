//! The analyses on hand-built exports whose answers are known by construction. Each test
//! builds the few rows that matter, loads them, and checks the figures worked out in its
//! comments.

#[path = "../../engine/tests/common/target.rs"]
mod target;

use std::collections::BTreeSet;

use prism_analyses::scorecard::Weights;
use prism_analyses::{AnalysisError, Context, Money, Table, Value};

/// A table's cells as a table meant for reading shows them.
fn readable(rows: Vec<Vec<Value>>) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(Value::readable).collect())
        .collect()
}
use prism_engine::{Audience, Engine, Period, Session};
use prism_model::Model;
use prism_warehouse::{LoadOptions, NoProgress};

/// An export written row by row; ids of fact rows are numbered.
#[derive(Default)]
struct Export {
    partners: Vec<String>,
    products: Vec<String>,
    customers: Vec<String>,
    orders: Vec<String>,
    opportunities: Vec<String>,
    requests: Vec<String>,
    surveys: Vec<String>,
}

impl Export {
    fn partner(&mut self, id: &str, status: &str) -> &mut Self {
        self.partners
            .push(format!("{id},Partner {id},Gold,Reseller,EMEA,,,{status}"));
        self
    }
    fn product(&mut self, id: &str, line: &str) -> &mut Self {
        self.products.push(format!("{id},Product {id},{line},,"));
        self
    }
    fn customer(&mut self, id: &str, industry: &str, size: &str) -> &mut Self {
        self.customers
            .push(format!("{id},Customer {id},{industry},{size},EMEA,,"));
        self
    }
    /// One order line; `partner` empty for a direct sale. Cost is half the revenue.
    fn order(
        &mut self,
        partner: &str,
        customer: &str,
        product: &str,
        date: &str,
        revenue: &str,
    ) -> &mut Self {
        let n = self.orders.len() + 1;
        let cost = Money::parse(revenue).unwrap().0 / 2;
        self.orders.push(format!(
            "O-{n},1,{partner},{customer},{product},{date},1,{revenue},{}",
            Money(cost)
        ));
        self
    }
    fn opportunity(
        &mut self,
        partner: &str,
        customer: &str,
        stage: &str,
        amount: &str,
        close: &str,
    ) -> &mut Self {
        let n = self.opportunities.len() + 1;
        let probability = match stage {
            "Closed Won" => 100,
            "Closed Lost" => 0,
            _ => 50,
        };
        self.opportunities.push(format!(
            "OP-{n},{partner},{customer},PR-Y,{stage},{amount},{probability},2025-01-01,{close},"
        ));
        self
    }
    fn request(
        &mut self,
        partner: &str,
        customer: &str,
        priority: &str,
        opened: &str,
        response: &str,
    ) -> &mut Self {
        let n = self.requests.len() + 1;
        self.requests.push(format!(
            "SR-{n},{partner},{customer},,{priority},{opened},{response},"
        ));
        self
    }
    fn survey(&mut self, partner: &str, customer: &str, date: &str, score: u8) -> &mut Self {
        let n = self.surveys.len() + 1;
        self.surveys
            .push(format!("S-{n:03},{partner},{customer},,{date},{score}"));
        self
    }

    async fn load(&self) -> (tempfile::TempDir, std::sync::Arc<Session>) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("export");
        std::fs::create_dir_all(&dir).unwrap();
        let files = [
            (
                "partners",
                "partner_id,partner_name,tier,partner_type,region,country,joined_on,status",
                &self.partners,
            ),
            (
                "products",
                "product_id,product_name,product_line,category,list_price",
                &self.products,
            ),
            (
                "customers",
                "customer_id,customer_name,industry,size_band,region,country,annual_revenue",
                &self.customers,
            ),
            (
                "orders",
                "order_id,line_number,partner_id,customer_id,product_id,order_date,quantity,revenue,cost",
                &self.orders,
            ),
            (
                "opportunities",
                "opportunity_id,partner_id,customer_id,product_id,stage,amount,probability,created_on,close_date,deal_registered",
                &self.opportunities,
            ),
            (
                "service_requests",
                "request_id,partner_id,customer_id,product_id,priority,opened_at,first_response_at,resolved_at",
                &self.requests,
            ),
            (
                "satisfaction_surveys",
                "survey_id,partner_id,customer_id,request_id,surveyed_on,score",
                &self.surveys,
            ),
        ];
        for (name, header, rows) in files {
            let mut text = format!("{header}\n");
            for r in rows.iter() {
                text.push_str(r);
                text.push('\n');
            }
            std::fs::write(dir.join(format!("{name}.csv")), text).unwrap();
        }
        let wh = target::warehouse(&tmp.path().join("data"));
        wh.load(
            &LoadOptions::upsert(
                dir,
                prism_engine::Engine::new(prism_model::Model::shipped()).rollup_builds(),
            ),
            &NoProgress,
        )
        .await
        .unwrap();
        let session = wh.snapshot(None).unwrap().session().await.unwrap();
        (tmp, session)
    }
}

fn period(p: &str) -> Option<Period> {
    Some(Period::parse(p).unwrap())
}

fn cx<'a>(
    engine: &'a Engine,
    session: &'a Session,
    audience: Audience,
    period: Option<Period>,
) -> Context<'a> {
    Context {
        engine,
        session,
        audience,
        period,
    }
}

/// Revenue in 2025: P-01 500, P-02 200, P-03 100, P-04 100 (tied with P-03), P-05 50, P-06 30,
/// P-10 20 (inactive, still sold), P-07 nothing in 2025 (sold in 2024); P-09 inactive without
/// revenue; a direct sale of 5000 that must change nothing. Partner revenue 1000.
fn pareto_export() -> Export {
    let mut e = Export::default();
    for p in ["P-01", "P-02", "P-03", "P-04", "P-05", "P-06", "P-07"] {
        e.partner(p, "Active");
    }
    e.partner("P-09", "Inactive").partner("P-10", "Inactive");
    e.product("PR-Y", "Software")
        .customer("C-1", "Retail", "SMB");
    for (p, r) in [
        ("P-01", "500"),
        ("P-02", "200"),
        ("P-03", "100"),
        ("P-04", "100"),
        ("P-05", "50"),
        ("P-06", "30"),
        ("P-10", "20"),
        ("", "5000"),
    ] {
        e.order(p, "C-1", "PR-Y", "2025-03-01", r);
    }
    e.order("P-07", "C-1", "PR-Y", "2024-03-01", "999");
    e
}

#[tokio::test]
async fn pareto_splits_ties_at_the_boundary_by_partner_id_and_puts_partners_without_revenue_in_c() {
    let (_tmp, session) = pareto_export().load().await;
    let engine = Engine::new(Model::shipped());
    let p = prism_analyses::pareto::pareto(
        &cx(&engine, &session, Audience::everyone(), period("2025")),
        None,
    )
    .await
    .unwrap();
    let got: Vec<(String, String, String, String, char)> = p
        .rows
        .iter()
        .map(|r| {
            (
                r.partner.partner_id.clone(),
                r.closed_revenue.to_string(),
                format!("{:.1}", r.share_pct.unwrap()),
                format!("{:.1}", r.cumulative_pct.unwrap()),
                r.class,
            )
        })
        .collect();
    let want = [
        ("P-01", "500.00", "50.0", "50.0", 'A'),
        ("P-02", "200.00", "20.0", "70.0", 'A'),
        // Reaches exactly 80 %: the last of A. P-04 has the same revenue and a later id: B.
        ("P-03", "100.00", "10.0", "80.0", 'A'),
        ("P-04", "100.00", "10.0", "90.0", 'B'),
        // Reaches exactly 95 %: the last of B.
        ("P-05", "50.00", "5.0", "95.0", 'B'),
        ("P-06", "30.00", "3.0", "98.0", 'C'),
        // Inactive, but it sold in the period: it takes part.
        ("P-10", "20.00", "2.0", "100.0", 'C'),
        // Active without revenue in the period: class C. P-09 (inactive, no revenue) is absent.
        ("P-07", "0.00", "0.0", "100.0", 'C'),
    ]
    .map(|(a, b, c, d, e)| {
        (
            a.to_string(),
            b.to_string(),
            c.to_string(),
            d.to_string(),
            e,
        )
    });
    assert_eq!(got, want);
    // Direct sales are no partner: partner revenue is 1000, not 6000.
    assert_eq!(p.groups[0].partner_revenue, Money(100_000));
    assert_eq!(
        p.groups[0].headline,
        "3 partners, 37.5 % of the 8 active partners, bring 80 % of partner revenue"
    );
}

#[tokio::test]
async fn pareto_cut_by_tier_segments_each_tier_on_its_own_and_refuses_other_cuts() {
    let (_tmp, session) = pareto_export().load().await;
    let engine = Engine::new(Model::shipped());
    let c = cx(&engine, &session, Audience::everyone(), period("2025"));
    let p = prism_analyses::pareto::pareto(&c, Some("partner.tier"))
        .await
        .unwrap();
    // Every fixture partner is Gold: one group, the same classes.
    assert_eq!(p.groups.len(), 1);
    assert_eq!(p.groups[0].group.as_deref(), Some("Gold"));
    assert_eq!(p.rows.iter().filter(|r| r.class == 'A').count(), 3);
    let e = prism_analyses::pareto::pareto(&c, Some("partner.teir"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("did you mean `partner.tier`"), "{e}");
}

/// A: revenue 300, pipeline 100, won 1 of 1, CSAT 5, answers in 1 h.
/// B: revenue 200, no open pipeline (0), nothing closed (no win rate), CSAT 3, no requests.
/// C: revenue 100, pipeline 300, won 1 of 2, no surveys, answers in 2 h.
fn scorecard_export() -> Export {
    let mut e = Export::default();
    e.partner("A", "Active")
        .partner("B", "Active")
        .partner("C", "Active");
    e.product("PR-Y", "Software")
        .customer("C-1", "Retail", "SMB");
    e.order("A", "C-1", "PR-Y", "2025-02-01", "300")
        .order("B", "C-1", "PR-Y", "2025-02-01", "200")
        .order("C", "C-1", "PR-Y", "2025-02-01", "100");
    e.opportunity("A", "C-1", "Proposal", "100", "2025-06-01")
        .opportunity("A", "C-1", "Closed Won", "50", "2025-03-01");
    e.opportunity("C", "C-1", "Proposal", "300", "2025-06-01")
        .opportunity("C", "C-1", "Closed Won", "10", "2025-03-01")
        .opportunity("C", "C-1", "Closed Lost", "10", "2025-03-01");
    e.survey("A", "C-1", "2025-03-01", 5)
        .survey("B", "C-1", "2025-03-01", 3);
    e.request(
        "A",
        "C-1",
        "P3",
        "2025-03-01T08:00:00Z",
        "2025-03-01T09:00:00Z",
    );
    e.request(
        "C",
        "C-1",
        "P3",
        "2025-03-01T08:00:00Z",
        "2025-03-01T10:00:00Z",
    );
    e
}

fn approx(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[tokio::test]
async fn scorecard_ranks_over_the_attributes_each_partner_has_with_custom_weights() {
    let (_tmp, session) = scorecard_export().load().await;
    let engine = Engine::new(Model::shipped());
    let c = cx(&engine, &session, Audience::everyone(), period("2025"));
    // Percentiles (0 worst .. 100 best among those with a value):
    //   revenue A 100, B 50, C 0; pipeline A 50, B 0, C 100; win rate A 100, C 0;
    //   CSAT A 100, B 0; response hours (lower is better) A 100, C 0.
    let weights =
        Weights::parse("revenue=1,pipeline=1,win_rate=1,csat=1,responsiveness=0").unwrap();
    let s = prism_analyses::scorecard::scorecard(&c, weights)
        .await
        .unwrap();
    let order: Vec<&str> = s
        .rows
        .iter()
        .map(|r| r.partner.partner_id.as_str())
        .collect();
    assert_eq!(order, ["A", "C", "B"]);
    // A: (100 + 50 + 100 + 100 + 0 × 100) / 4; C: (0 + 100 + 0) / 3 over its attributes with
    // weight; B: (50 + 0 + 0) / 3, without a win rate or a response time.
    assert!(approx(s.rows[0].score, 87.5), "{:?}", s.rows[0].score);
    assert!(
        approx(s.rows[1].score, 100.0 / 3.0),
        "{:?}",
        s.rows[1].score
    );
    assert!(approx(s.rows[2].score, 50.0 / 3.0), "{:?}", s.rows[2].score);
    assert_eq!(
        s.rows.iter().map(|r| r.rank).collect::<Vec<_>>(),
        [Some(1), Some(2), Some(3)]
    );
    let b = &s.rows[2];
    assert_eq!(
        b.attributes[1].value.money(),
        Some(Money(0)),
        "no open pipeline is a pipeline of 0"
    );
    assert_eq!(
        b.attributes[2].value,
        Value::Missing,
        "nothing closed: no win rate"
    );
    assert_eq!(b.attributes[2].percentile, None);

    // The default weights: A (35 + 10 + 15 + 20 + 10) / 1, B 17.5 / 0.75, C 20 / 0.8.
    let s = prism_analyses::scorecard::scorecard(&c, Weights::default())
        .await
        .unwrap();
    let scores: Vec<(String, f64)> = s
        .rows
        .iter()
        .map(|r| (r.partner.partner_id.clone(), r.score.unwrap()))
        .collect();
    assert_eq!(
        scores.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        ["A", "C", "B"]
    );
    assert!(
        (scores[0].1 - 90.0).abs() < 1e-9
            && (scores[1].1 - 25.0).abs() < 1e-9
            && (scores[2].1 - 17.5 / 0.75).abs() < 1e-9,
        "{scores:?}"
    );
    assert_eq!(s.header()[5], "score");
}

#[test]
fn weights_are_validated_and_shown() {
    assert_eq!(
        Weights::parse("csat=0.5").unwrap(),
        Weights {
            csat: 0.5,
            ..Weights::default()
        }
    );
    for (bad, says) in [
        ("revenue=-1", "negative"),
        (
            "revenue=0,pipeline=0,win_rate=0,csat=0,responsiveness=0",
            "every weight is 0",
        ),
        ("csta=1", "did you mean `csat`"),
        ("revenue=lots", "not a number"),
        ("revenue", "expected NAME=NUMBER"),
    ] {
        let e = Weights::parse(bad).unwrap_err().to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }
}

#[tokio::test]
async fn a_decline_of_exactly_25_percent_is_flagged_and_one_of_a_cent_less_is_not() {
    let mut e = Export::default();
    e.partner("D", "Active")
        .partner("E", "Active")
        .partner("F", "Active")
        .partner("G", "Active")
        .partner("H", "Active");
    e.product("PR-Y", "Software")
        .customer("C-1", "Retail", "SMB");
    // Q1 against Q2 of 2025: D 400 → 300 (exactly -25 %), E 400 → 300.01 (-24.9975 %),
    // F 100 → nothing (-100 %), G and H grow.
    e.order("D", "C-1", "PR-Y", "2025-02-01", "400")
        .order("D", "C-1", "PR-Y", "2025-05-01", "300");
    e.order("E", "C-1", "PR-Y", "2025-02-01", "400").order(
        "E",
        "C-1",
        "PR-Y",
        "2025-05-01",
        "300.01",
    );
    e.order("F", "C-1", "PR-Y", "2025-02-01", "100");
    e.order("G", "C-1", "PR-Y", "2025-02-01", "100")
        .order("G", "C-1", "PR-Y", "2025-05-01", "900");
    e.order("H", "C-1", "PR-Y", "2025-02-01", "100")
        .order("H", "C-1", "PR-Y", "2025-05-01", "800");
    let (_tmp, session) = e.load().await;
    let engine = Engine::new(Model::shipped());
    let u = prism_analyses::underperformers::underperformers(
        &cx(&engine, &session, Audience::everyone(), period("2025-Q2")),
        Weights::default(),
    )
    .await
    .unwrap();
    let mut decliners: Vec<(&str, Option<f64>)> = u
        .partners
        .iter()
        .filter(|p| {
            p.reasons
                .iter()
                .any(|r| r.starts_with("closed revenue fell"))
        })
        .map(|p| (p.partner.partner_id.as_str(), p.revenue_change_pct))
        .collect();
    decliners.sort_by_key(|d| d.0);
    assert_eq!(decliners, [("D", Some(-25.0)), ("F", Some(-100.0))]);
    // Worst first: F is in the bottom quartile as well.
    assert_eq!(u.partners[0].partner.partner_id, "F");
    let d = u
        .partners
        .iter()
        .find(|p| p.partner.partner_id == "D")
        .unwrap();
    assert!(d.reasons.contains(&"closed revenue fell 25.0 %, from 400.00 (2025-01-01..2025-03-31) to 300.00 (2025-04-01..2025-06-30)".to_string()), "{:?}", d.reasons);
    // Bottom quartile of 5 scores (percentile <= 25): the two lowest, each with its reason.
    let bottom: BTreeSet<&str> = u
        .partners
        .iter()
        .filter(|p| p.reasons.iter().any(|r| r.contains("bottom quartile")))
        .map(|p| p.partner.partner_id.as_str())
        .collect();
    assert_eq!(bottom.len(), 2, "{:?}", u.partners);
    assert!(
        bottom.contains("F"),
        "F sold nothing in Q2: the lowest revenue, and no other attribute"
    );
}

/// Segment (Healthcare, SMB): partners P1..P5 each sell Y to Hi-b and X + Y to Hi-a. P1 also
/// sells Y to H1-c, who bought X directly from the brand owner, and to H1-d, who bought X from
/// P2. Channel: buyers of X from partners H1a..H5a and H1d = 6 (over P1..P5 = 5 partners),
/// buyers of anything from partners 12: adoption 50 %. P1's customers there: H1a, H1b, H1c,
/// H1d (4); its buyers of X: H1a. Untapped, as the brand owner sees it: H1b only (H1c and H1d
/// have X from elsewhere): 1 × 50 % = 0.5 expected; as P1's own user sees it (never where else
/// its customers buy): H1b, H1c and H1d, 3 × 50 % = 1.5 expected.
/// (Retail, SMB): P1..P5 sell Y to Ri; nobody bought X: no partner behind the adoption's
/// numerator, so it is withheld ("nobody sold it" would be every partner's own figure).
/// (Education, SMB): P2..P6 sell there, P1 has no customer. (Manufacturing, SMB): only P1..P4
/// sell there: the channel figure is over fewer than 5 partners and withheld.
fn potential_export() -> Export {
    let mut e = Export::default();
    for p in ["P1", "P2", "P3", "P4", "P5", "P6"] {
        e.partner(p, "Active");
    }
    e.product("PR-X", "Analytics").product("PR-Y", "Software");
    for i in 1..=5 {
        let (a, b, r) = (format!("H{i}-a"), format!("H{i}-b"), format!("R{i}"));
        e.customer(&a, "Healthcare", "SMB")
            .customer(&b, "Healthcare", "SMB")
            .customer(&r, "Retail", "SMB");
        let p = format!("P{i}");
        e.order(&p, &a, "PR-X", "2025-02-01", "100")
            .order(&p, &a, "PR-Y", "2025-02-01", "10")
            .order(&p, &b, "PR-Y", "2025-02-01", "10");
        e.order(&p, &r, "PR-Y", "2025-02-01", "10");
    }
    e.customer("H1-c", "Healthcare", "SMB")
        .customer("H1-d", "Healthcare", "SMB");
    e.order("P1", "H1-c", "PR-Y", "2025-02-01", "10").order(
        "",
        "H1-c",
        "PR-X",
        "2025-02-01",
        "100",
    );
    e.order("P1", "H1-d", "PR-Y", "2025-02-01", "10").order(
        "P2",
        "H1-d",
        "PR-X",
        "2025-02-01",
        "100",
    );
    for i in 2..=6 {
        let c = format!("E{i}");
        e.customer(&c, "Education", "SMB")
            .order(&format!("P{i}"), &c, "PR-Y", "2025-02-01", "10");
    }
    for i in 1..=4 {
        let c = format!("M{i}");
        e.customer(&c, "Manufacturing", "SMB").order(
            &format!("P{i}"),
            &c,
            "PR-Y",
            "2025-02-01",
            "10",
        );
    }
    // Surveys from four partners only: the channel's CSAT is withheld.
    for i in 1..=4 {
        e.survey(&format!("P{i}"), &format!("R{i}"), "2025-03-01", 4);
    }
    e
}

#[tokio::test]
async fn potential_ranks_segments_by_expected_buyers_and_lists_the_untapped_customers() {
    let (_tmp, session) = potential_export().load().await;
    let engine = Engine::new(Model::shipped());
    // The brand owner's user: untapped means not bought from anyone.
    let owner = cx(&engine, &session, Audience::everyone(), None);
    let p = prism_analyses::potential::potential(&owner, "P1", "PR-X")
        .await
        .unwrap();
    assert_eq!(
        readable(p.rows()),
        [
            // industry, size, channel adoption, partners, P1's customers, buyers, adoption, untapped, expected
            [
                "Healthcare",
                "SMB",
                "50.0",
                "5",
                "4",
                "1",
                "25.0",
                "1",
                "0.5"
            ],
            [
                "Manufacturing",
                "SMB",
                "(withheld)",
                "0",
                "1",
                "0",
                "0.0",
                "1",
                ""
            ],
            ["Retail", "SMB", "(withheld)", "0", "1", "0", "0.0", "1", ""],
        ]
        .map(|r| r.map(String::from).to_vec())
    );
    // The directly served H1-c and P2's buyer H1-d are not targets.
    let targets = p.targets(&owner, "Healthcare/SMB").await.unwrap();
    assert_eq!(
        targets
            .customers
            .iter()
            .map(|t| t.customer_id.as_str())
            .collect::<Vec<_>>(),
        ["H1-b"]
    );
    assert_eq!(targets.customers[0].already_buys, ["Software"]);
    assert_eq!(
        readable(targets.rows())[0],
        [
            "H1-b",
            "Customer H1-b",
            "Healthcare",
            "SMB",
            "EMEA",
            "Software"
        ]
    );
    assert!(
        p.headline()
            .iter()
            .any(|h| h.contains("not bought PR-X from anyone")),
        "{:?}",
        p.headline()
    );

    // P1's own user: untapped means not bought from P1, so neither the list, nor the count,
    // nor expected buyers tell that H1-c bought X directly and H1-d from P2.
    let c = cx(&engine, &session, Audience::partner("P1").unwrap(), None);
    let p = prism_analyses::potential::potential(&c, "P1", "PR-X")
        .await
        .unwrap();
    assert_eq!(
        readable(p.rows()),
        [
            [
                "Healthcare",
                "SMB",
                "50.0",
                "5",
                "4",
                "1",
                "25.0",
                "3",
                "1.5"
            ],
            [
                "Manufacturing",
                "SMB",
                "(withheld)",
                "0",
                "1",
                "0",
                "0.0",
                "1",
                ""
            ],
            ["Retail", "SMB", "(withheld)", "0", "1", "0", "0.0", "1", ""],
        ]
        .map(|r| r.map(String::from).to_vec())
    );
    let targets = p.targets(&c, "Healthcare/SMB").await.unwrap();
    assert_eq!(
        targets
            .customers
            .iter()
            .map(|t| t.customer_id.as_str())
            .collect::<Vec<_>>(),
        ["H1-b", "H1-c", "H1-d"]
    );
    assert!(
        targets
            .customers
            .iter()
            .all(|t| t.already_buys == ["Software"])
    );
    assert!(
        p.headline()
            .iter()
            .any(|h| h.contains("not bought PR-X from it")),
        "{:?}",
        p.headline()
    );
    // No customers of P1 in Education: nothing to target there, and it says so.
    let e = p
        .targets(&c, "Education/SMB")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("partner P1 has no customers in it"), "{e}");
    assert!(!p.segments.iter().any(|s| s.industry == "Education"));
}

/// A partner with more customers than are asked about by their ids (over a thousand): which of
/// them bought the product from anyone is read from all its buyers instead, with the same
/// answer. `potential_export` and 1,100 more Healthcare SMB customers of P1 (K0001..K1100, each
/// buying Y from P1); K0001..K0300 bought X from P2, K0301..K0350 from P1. P1's customers there:
/// 4 + 1,100; its buyers of X: H1-a and 50. Untapped as the brand owner sees it: H1-b and
/// K0351..K1100 (751); as P1's user sees it, every customer that has not bought X from P1
/// (1,104 − 51 = 1,053).
#[tokio::test]
async fn a_partner_with_over_a_thousand_customers_gets_the_same_untapped_customers() {
    let mut e = potential_export();
    let k = |i: usize| format!("K{i:04}");
    for i in 1..=1100 {
        e.customer(&k(i), "Healthcare", "SMB")
            .order("P1", &k(i), "PR-Y", "2025-02-01", "10");
        match i {
            1..=300 => e.order("P2", &k(i), "PR-X", "2025-02-01", "100"),
            301..=350 => e.order("P1", &k(i), "PR-X", "2025-02-01", "100"),
            _ => &mut e,
        };
    }
    let (_tmp, session) = e.load().await;
    let engine = Engine::new(Model::shipped());
    let owner = cx(&engine, &session, Audience::everyone(), None);
    let p = prism_analyses::potential::potential(&owner, "P1", "PR-X")
        .await
        .unwrap();
    let healthcare = |p: &prism_analyses::potential::Potential| {
        p.segments
            .iter()
            .find(|s| s.industry == "Healthcare")
            .map(|s| (s.partner_customers, s.partner_buyers, s.untapped_customers))
            .unwrap()
    };
    assert_eq!(healthcare(&p), (1104, 51, 751));
    let expected: Vec<String> = std::iter::once("H1-b".to_string())
        .chain((351..=1100).map(k))
        .collect();
    let targets = p.targets(&owner, "Healthcare/SMB").await.unwrap();
    assert_eq!(
        targets
            .customers
            .iter()
            .map(|t| t.customer_id.clone())
            .collect::<Vec<_>>(),
        expected
    );
    let user = cx(&engine, &session, Audience::partner("P1").unwrap(), None);
    let p = prism_analyses::potential::potential(&user, "P1", "PR-X")
        .await
        .unwrap();
    assert_eq!(healthcare(&p), (1104, 51, 1053));
}

#[tokio::test]
async fn a_partner_user_asking_for_another_partner_is_refused_by_every_analysis() {
    let (_tmp, session) = potential_export().load().await;
    let engine = Engine::new(Model::shipped());
    let c = cx(&engine, &session, Audience::partner("P1").unwrap(), None);
    let refused = |r: Result<(), AnalysisError>| match r {
        Err(AnalysisError::Forbidden(m)) => {
            assert!(m.contains("sees only their own partner"), "{m}")
        }
        other => panic!("not refused: {other:?}"),
    };
    refused(
        prism_analyses::products::products(&c, "P2")
            .await
            .map(|_| ()),
    );
    refused(
        prism_analyses::potential::potential(&c, "P2", "PR-X")
            .await
            .map(|_| ()),
    );
    refused(
        prism_analyses::benchmarks::benchmarks(&c, "P2")
            .await
            .map(|_| ()),
    );
    // A channel manager of P1 and P3 cannot read P2 either.
    let m = cx(
        &engine,
        &session,
        Audience::partners(["P1".to_string(), "P3".to_string()]),
        None,
    );
    assert!(matches!(
        prism_analyses::products::products(&m, "P2").await,
        Err(AnalysisError::Forbidden(_))
    ));
    // And the lists a partner user gets hold only its own partner.
    let p = prism_analyses::pareto::pareto(&c, None).await.unwrap();
    assert_eq!(
        p.rows
            .iter()
            .map(|r| r.partner.partner_id.as_str())
            .collect::<Vec<_>>(),
        ["P1"]
    );
    let s = prism_analyses::scorecard::scorecard(&c, Weights::default())
        .await
        .unwrap();
    assert_eq!(s.rows.len(), 1);
}

#[tokio::test]
async fn a_benchmark_over_4_partners_is_withheld_and_one_over_6_is_shown() {
    let (_tmp, session) = potential_export().load().await;
    let engine = Engine::new(Model::shipped());
    let q1 = Some(Period::parse("2025-Q1").unwrap());
    let b = prism_analyses::benchmarks::benchmarks(
        &cx(&engine, &session, Audience::partner("P1").unwrap(), q1),
        "P1",
    )
    .await
    .unwrap();
    let row = |m: &str| b.rows.iter().find(|r| r.metric == m).unwrap();
    // Surveys from P1..P4: withheld, and P1's own score still shown.
    assert_eq!(
        (
            row("csat_avg").partner.number(),
            row("csat_avg").channel.number(),
            row("csat_avg").channel_partners
        ),
        (Some(4.0), None, 4)
    );
    assert!(b.headline().iter().any(|h| h.contains("withheld")));
    // Every order has a cost of half its revenue: 50 % for P1 and for the six partners.
    assert_eq!(
        (
            row("gross_margin_pct").partner.number(),
            row("gross_margin_pct").channel.number(),
            row("gross_margin_pct").channel_partners
        ),
        (Some(50.0), Some(50.0), 6)
    );
    assert_eq!(row("gross_margin_pct").verdict, Some("same"));
}

/// Two channel figures over nested periods subtract to a third: the year's revenue less that of
/// January to November is December's, where P1 and P2 may be alone. So a partner user gets
/// channel figures one calendar quarter at a time, and none over a year, a range or all time;
/// the brand owner's users get them over any period.
#[tokio::test]
async fn a_partner_gets_channel_figures_one_calendar_quarter_at_a_time() {
    let (_tmp, session) = potential_export().load().await;
    let engine = Engine::new(Model::shipped());
    let benchmark = |audience: Audience, period: Option<&str>| {
        let engine = &engine;
        let session = &session;
        let period = period.map(|p| Period::parse(p).unwrap());
        async move {
            prism_analyses::benchmarks::benchmarks(&cx(engine, session, audience, period), "P1")
                .await
                .unwrap()
        }
    };
    let margin = |b: &prism_analyses::benchmarks::Benchmarks| {
        b.rows
            .iter()
            .find(|r| r.metric == "gross_margin_pct")
            .unwrap()
            .channel
            .clone()
    };
    for period in [
        None,
        Some("2025"),
        Some("2024-12..2025-03"),
        Some("2025-02-15..2025-03-15"),
    ] {
        let b = benchmark(Audience::partner("P1").unwrap(), period).await;
        assert!(b.rows.iter().all(|r| r.channel.is_missing()), "{period:?}");
        assert!(
            b.headline()
                .iter()
                .any(|h| h.contains("one calendar quarter at a time")),
            "{period:?}: {:?}",
            b.headline()
        );
        // The partner's own figures stay.
        assert_eq!(
            b.rows
                .iter()
                .find(|r| r.metric == "csat_avg")
                .unwrap()
                .partner
                .number(),
            Some(4.0)
        );
    }
    let b = benchmark(Audience::partner("P1").unwrap(), Some("2025-Q1")).await;
    assert_eq!(margin(&b).number(), Some(50.0));
    let b = benchmark(Audience::everyone(), None).await;
    assert_eq!(margin(&b).number(), Some(50.0));
    assert!(b.channel_withheld.is_none());
}

/// What P1's user sees of customer potential is the same whether its customers bought the
/// product directly, from another partner, or not at all (the channel adoption aside, which is
/// over 5 partners): take away H1-c's direct purchase of X, and nothing P1's user sees moves.
#[tokio::test]
async fn a_partner_user_cannot_tell_where_else_its_customers_bought() {
    let seen = |e: Export| async move {
        let (_tmp, session) = e.load().await;
        let engine = Engine::new(Model::shipped());
        let c = cx(&engine, &session, Audience::partner("P1").unwrap(), None);
        let p = prism_analyses::potential::potential(&c, "P1", "PR-X")
            .await
            .unwrap();
        let targets = p.targets(&c, "Healthcare/SMB").await.unwrap().rows();
        (p.rows(), p.headline(), targets)
    };
    let with_direct = potential_export();
    let mut without_direct = potential_export();
    without_direct
        .orders
        .retain(|o| !(o.contains(",,H1-c,PR-X,")));
    assert_eq!(
        without_direct.orders.len() + 1,
        with_direct.orders.len(),
        "the direct order was taken away"
    );
    assert_eq!(seen(with_direct).await, seen(without_direct).await);
}

/// Six partners closed deals in Q1 2025 and only P1 won one: the channel's win rate, average
/// deal size and sales cycle are P1's own figures, so P2's user gets none of them, though six
/// partners have opportunities. Four more partners winning a deal each makes 5 behind every
/// part, and the figures are shown: won 1000 + 4 × 2000 over 5 deals = 1800.00.
#[tokio::test]
async fn a_channel_figure_is_over_the_partners_that_contribute_to_it_not_to_its_fact() {
    let mut e = Export::default();
    e.product("PR-Y", "Software")
        .customer("C-1", "Retail", "SMB");
    for i in 1..=6 {
        let p = format!("P{i}");
        e.partner(&p, "Active")
            .opportunity(&p, "C-1", "Closed Lost", "500", "2025-03-01");
    }
    e.opportunity("P1", "C-1", "Closed Won", "1000", "2025-03-01");
    let one_won = e.load().await;
    for i in 2..=5 {
        e.opportunity(&format!("P{i}"), "C-1", "Closed Won", "2000", "2025-03-01");
    }
    let five_won = e.load().await;
    let q1 = Some(Period::parse("2025-Q1").unwrap());
    for engine in [
        Engine::new(Model::shipped()),
        Engine::new(Model::shipped()).without_rollups(),
    ] {
        let b = prism_analyses::benchmarks::benchmarks(
            &cx(&engine, &one_won.1, Audience::partner("P2").unwrap(), q1),
            "P2",
        )
        .await
        .unwrap();
        let row = |m: &str| b.rows.iter().find(|r| r.metric == m).unwrap().clone();
        for m in ["win_rate", "avg_deal_size", "avg_sales_cycle_days"] {
            assert_eq!(
                (row(m).channel, row(m).channel_partners),
                (Value::Missing, 1),
                "{m}"
            );
        }
        assert_eq!(row("win_rate").partner.number(), Some(0.0));

        let b = prism_analyses::benchmarks::benchmarks(
            &cx(&engine, &five_won.1, Audience::partner("P2").unwrap(), q1),
            "P2",
        )
        .await
        .unwrap();
        let row = |m: &str| b.rows.iter().find(|r| r.metric == m).unwrap().clone();
        assert_eq!(
            (
                row("avg_deal_size").channel.money(),
                row("avg_deal_size").channel_partners
            ),
            (Some(Money(180000)), 5)
        );
        // Won 5 of 11 closed: over the 5 partners that won (and the 6 that closed).
        assert_eq!(
            (
                row("win_rate").channel.number().map(|v| format!("{v:.4}")),
                row("win_rate").channel_partners
            ),
            (Some("0.4545".to_string()), 5)
        );
    }
}

#[tokio::test]
async fn products_name_best_sellers_and_poor_sellers_of_active_lines_including_unsold_ones() {
    let mut e = Export::default();
    e.partner("P1", "Active").customer("C-1", "Retail", "SMB");
    e.product("PR-A", "Software")
        .product("PR-B", "Software")
        .product("PR-C", "Software")
        .product("PR-H", "Hardware");
    // Q1 2025: A 100, B 10; Q2: A 50, B 40. C (same line) never sold; Hardware never sold.
    e.order("P1", "C-1", "PR-A", "2025-02-01", "100").order(
        "P1",
        "C-1",
        "PR-B",
        "2025-02-01",
        "10",
    );
    e.order("P1", "C-1", "PR-A", "2025-05-01", "50")
        .order("P1", "C-1", "PR-B", "2025-05-01", "40");
    let (_tmp, session) = e.load().await;
    let engine = Engine::new(Model::shipped());
    let p = prism_analyses::products::products(
        &cx(&engine, &session, Audience::everyone(), period("2025-Q2")),
        "P1",
    )
    .await
    .unwrap();
    let rows: Vec<(&str, String, String, String, &str)> = p
        .rows
        .iter()
        .map(|r| {
            (
                r.product_id.as_str(),
                r.closed_revenue.map_or(String::new(), |m| m.to_string()),
                r.revenue_change.map_or(String::new(), |m| m.to_string()),
                r.revenue_change_pct
                    .map_or(String::new(), |v| v.to_string()),
                r.role.unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (
                "PR-A",
                "50.00".into(),
                "-50.00".into(),
                "-50".into(),
                "best seller"
            ),
            (
                "PR-B",
                "40.00".into(),
                "30.00".into(),
                "300".into(),
                "best seller"
            ),
            // Software is an active line: its unsold product is a poor seller; Hardware is not the partner's line.
            (
                "PR-C",
                String::new(),
                String::new(),
                String::new(),
                "poor seller"
            ),
        ]
    );
    assert_eq!(p.active_lines, ["Software"]);
}

#[tokio::test]
async fn high_risk_accounts_have_three_open_critical_requests_or_low_recent_satisfaction() {
    let mut e = Export::default();
    e.partner("P1", "Active")
        .partner("P2", "Active")
        .product("PR-Y", "Software");
    for c in ["K-1", "K-2", "K-3", "K-4"] {
        e.customer(c, "Retail", "SMB");
    }
    // K-1: three open P1/P2 requests. K-2: two open P1 and an open P3: not enough.
    e.request("P1", "K-1", "P1", "2025-01-01T08:00:00Z", "")
        .request("P1", "K-1", "P2", "2025-01-02T08:00:00Z", "")
        .request("P1", "K-1", "P2", "2025-01-03T08:00:00Z", "");
    e.request("P1", "K-2", "P1", "2025-01-01T08:00:00Z", "")
        .request("P1", "K-2", "P1", "2025-01-02T08:00:00Z", "")
        .request("P1", "K-2", "P3", "2025-01-03T08:00:00Z", "");
    // K-3: old praise, then five recent scores averaging 2.6: at risk. K-4: 1, then five 4s: not.
    for (d, s) in [
        ("2024-01-01", 5),
        ("2024-02-01", 5),
        ("2025-01-01", 3),
        ("2025-02-01", 2),
        ("2025-03-01", 3),
        ("2025-04-01", 2),
        ("2025-05-01", 3),
    ] {
        e.survey("P1", "K-3", d, s);
    }
    for (d, s) in [
        ("2024-01-01", 1),
        ("2025-01-01", 4),
        ("2025-02-01", 4),
        ("2025-03-01", 4),
        ("2025-04-01", 4),
        ("2025-05-01", 4),
    ] {
        e.survey("P2", "K-4", d, s);
    }
    // K-5: P1's five surveys of 2024 average 2, P2's five of 2025 average 5. The brand
    // owner's last five are P2's: not at risk; P1's own last five are its 2s: at risk for P1.
    e.customer("K-5", "Retail", "SMB");
    for m in 1..=5 {
        e.survey("P1", "K-5", &format!("2024-0{m}-01"), 2);
        e.survey("P2", "K-5", &format!("2025-0{m}-01"), 5);
    }
    // K-6: two open critical requests served by P1, one by P2: three for the brand owner,
    // not enough for either partner.
    e.customer("K-6", "Retail", "SMB");
    e.request("P1", "K-6", "P1", "2025-02-01T08:00:00Z", "")
        .request("P1", "K-6", "P1", "2025-02-02T08:00:00Z", "")
        .request("P2", "K-6", "P2", "2025-02-03T08:00:00Z", "");
    // K-8: six surveys on one day, the first (the lowest id) a 1 and five 3s: a day's surveys
    // are taken latest id first, so the last five are the 3s, averaging exactly 3: not at risk
    // (the 1 among them would make 2.6).
    e.customer("K-8", "Retail", "SMB");
    e.survey("P1", "K-8", "2025-06-01", 1);
    for _ in 0..5 {
        e.survey("P1", "K-8", "2025-06-01", 3);
    }
    let (_tmp, session) = e.load().await;
    let open3 = || vec!["3 open P1/P2 service requests".to_string()];
    let everyone = [
        ("K-1", open3()),
        ("K-6", open3()),
        (
            "K-3",
            vec!["average CSAT 2.60 over the last 5 surveys".to_string()],
        ),
    ];
    // Most open requests first, then the lowest recent satisfaction.
    let p1 = [
        ("K-1", open3()),
        (
            "K-5",
            vec!["average CSAT 2.00 over the last 5 surveys".to_string()],
        ),
        (
            "K-3",
            vec!["average CSAT 2.60 over the last 5 surveys".to_string()],
        ),
    ];
    // The table every load builds, and the requests and surveys read whole: the same accounts.
    for engine in [
        Engine::new(Model::shipped()),
        Engine::new(Model::shipped()).without_rollups(),
    ] {
        let at_risk = |audience: Audience, period: Option<Period>| {
            let engine = &engine;
            let session = &session;
            async move {
                let r = prism_analyses::risk::risk(&cx(engine, session, audience, period))
                    .await
                    .unwrap();
                assert_eq!(r.total, r.accounts.len());
                r.accounts
                    .iter()
                    .map(|a| (a.customer_id.clone(), a.reasons.clone()))
                    .collect::<Vec<_>>()
            }
        };
        let owned = |v: &[(&str, Vec<String>)]| {
            v.iter()
                .map(|(c, r)| (c.to_string(), r.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(at_risk(Audience::everyone(), None).await, owned(&everyone));
        // A partner user sees only its own customers' accounts, from its own rows alone.
        assert_eq!(
            at_risk(Audience::partner("P1").unwrap(), None).await,
            owned(&p1)
        );
        assert_eq!(at_risk(Audience::partner("P2").unwrap(), None).await, []);
        // A channel manager of both: their rows together, as the brand owner's here.
        assert_eq!(
            at_risk(
                Audience::partners(["P1".to_string(), "P2".to_string()]),
                None
            )
            .await,
            owned(&everyone)
        );
        // In 2025, P1 has no survey of K-5.
        assert_eq!(
            at_risk(Audience::partner("P1").unwrap(), period("2025")).await,
            owned(&[p1[0].clone(), p1[2].clone()])
        );
        // The page's most urgent one, with how many there are.
        let top = prism_analyses::risk::risk_top(
            &cx(&engine, &session, Audience::everyone(), None),
            Some(1),
        )
        .await
        .unwrap();
        assert_eq!(top.accounts.len(), 1);
        assert_eq!(top.accounts[0].customer_id, "K-1");
        assert_eq!(top.total, 3);
        assert!(
            top.headline()[0].starts_with("3 high-risk accounts"),
            "{:?}",
            top.headline()
        );
    }
}

/// Over a generated export, the accounts at risk every load builds are, for the brand owner and
/// for each partner, exactly those computed from the requests, surveys and customers read
/// whole: the same accounts, figures, reasons and order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accounts_at_risk_a_load_builds_are_those_computed_from_every_row() {
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join("export");
    prism_generator::generate(&prism_generator::GenerateConfig {
        out: export.clone(),
        scale: 0.02,
        seed: 11,
        partners: None,
        customers: None,
    })
    .unwrap();
    let wh = target::warehouse(&tmp.path().join("data"));
    wh.load(
        &LoadOptions::upsert(
            export.clone(),
            Engine::new(Model::shipped()).rollup_builds(),
        ),
        &NoProgress,
    )
    .await
    .unwrap();
    let session = wh.snapshot(None).unwrap().session().await.unwrap();
    let (built, raw) = (
        Engine::new(Model::shipped()),
        Engine::new(Model::shipped()).without_rollups(),
    );
    let partners: Vec<String> = csv::Reader::from_path(export.join("partners.csv"))
        .unwrap()
        .records()
        .map(|r| r.unwrap()[0].to_string())
        .collect();
    let mut audiences = vec![Audience::everyone()];
    audiences.extend(
        partners
            .iter()
            .map(|p| Audience::partner(p.clone()).unwrap()),
    );
    let mut partners_at_risk = 0;
    for audience in audiences {
        // The built table answers; the base tables' answer is the independent one.
        assert!(
            built
                .accounts_at_risk(&session, &audience, None)
                .await
                .unwrap()
                .is_some(),
            "{audience}"
        );
        let from_table = prism_analyses::risk::risk(&cx(&built, &session, audience.clone(), None))
            .await
            .unwrap();
        let from_rows = prism_analyses::risk::risk(&cx(&raw, &session, audience.clone(), None))
            .await
            .unwrap();
        assert_eq!(
            serde_json::to_string(&from_table).unwrap(),
            serde_json::to_string(&from_rows).unwrap(),
            "{audience}"
        );
        if audience == Audience::everyone() {
            assert!(
                from_rows.accounts.len() > 20,
                "{}",
                from_rows.accounts.len()
            );
        } else if !from_rows.accounts.is_empty() {
            partners_at_risk += 1;
        }
    }
    assert!(
        partners_at_risk >= 3,
        "{partners_at_risk} partners with accounts at risk"
    );
}

/// The guide answers "where could my poorly selling products sell" without a choice. On
/// `potential_export`, PR-Z (Analytics, a line P1 sells in) is sold by P2..P5 to H2-b..H5-b and
/// by P6 to a new H6-z, all Healthcare/SMB; P1 never sold it: its poor seller. Channel in
/// Healthcare/SMB: 5 buyers of Z over 5 partners, 13 buyers of anything (the 12 of
/// `potential_export` and H6-z): adoption 5/13. P1's customers there, none of whom bought Z
/// from P1: H1-a, H1-b, H1-c, H1-d, so 4 × 5/13 = 1.538 expected. Retail has no buyer of Z and
/// Manufacturing fewer than 5 partners: withheld, so Healthcare/SMB is Z's best segment.
#[tokio::test]
async fn the_guide_lists_a_partners_poor_sellers_with_their_best_segment() {
    let mut e = potential_export();
    e.product("PR-Z", "Analytics")
        .customer("H6-z", "Healthcare", "SMB");
    for i in 2..=5 {
        e.order(
            &format!("P{i}"),
            &format!("H{i}-b"),
            "PR-Z",
            "2025-02-01",
            "50",
        );
    }
    e.order("P6", "H6-z", "PR-Z", "2025-02-01", "50");
    let (_tmp, session) = e.load().await;
    let engine = Engine::new(Model::shipped());
    let c = cx(&engine, &session, Audience::partner("P1").unwrap(), None);
    let g = prism_analyses::potential::guide(&c, "P1").await.unwrap();
    let ids: Vec<&str> = g.products.iter().map(|r| r.product_id.as_str()).collect();
    assert_eq!(ids, ["PR-Z"], "{:?}", g.products);
    let z = &g.products[0];
    assert_eq!(z.best_segment.as_deref(), Some("Healthcare/SMB"));
    assert_eq!(z.untapped_customers, 4);
    assert!((z.channel_adoption_pct.unwrap() - 500.0 / 13.0).abs() < 1e-9);
    assert!((z.expected_additional_buyers.unwrap() - 20.0 / 13.0).abs() < 1e-9);
    // Another partner's guide is refused.
    assert!(matches!(
        prism_analyses::potential::guide(&c, "P2").await,
        Err(AnalysisError::Forbidden(_))
    ));
}
