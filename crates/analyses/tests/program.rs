//! The partner program's analyses over `fixtures/tiny`, every figure worked out by hand from its
//! files (see its README): the deal registration funnel, funds and campaigns, enablement.

use std::collections::BTreeMap;
use std::path::Path;

use prism_analyses::Context;
use prism_analyses::Money;
use prism_analyses::campaigns::campaigns;
use prism_analyses::enablement::enablement;
use prism_analyses::registrations::registrations;
use prism_engine::{Audience, Engine, Period, Session};
use prism_model::Model;
use prism_warehouse::{LoadOptions, NoProgress, Warehouse};

async fn tiny() -> (tempfile::TempDir, std::sync::Arc<Session>) {
    let tmp = tempfile::tempdir().unwrap();
    let wh = Warehouse::open(tmp.path().join("data")).unwrap();
    wh.load(
        &LoadOptions::upsert(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny"),
            Engine::new(Model::shipped()).rollup_builds(),
        ),
        &NoProgress,
    )
    .await
    .unwrap();
    let session = wh.snapshot(None).unwrap().session().await.unwrap();
    (tmp, session)
}

fn cx<'a>(
    engine: &'a Engine,
    session: &'a Session,
    audience: Audience,
    period: Option<&str>,
) -> Context<'a> {
    Context {
        engine,
        session,
        audience,
        period: period.map(|p| Period::parse(p).unwrap()),
    }
}

#[tokio::test]
async fn the_registration_funnel_counts_each_stage_and_reads_the_opportunity_as_it_stands() {
    let (_tmp, session) = tiny().await;
    let engine = Engine::new(Model::shipped());
    let r = registrations(&cx(&engine, &session, Audience::everyone(), None))
        .await
        .unwrap();
    let t = &r.total;
    // DR-1..DR-6: approved DR-1 (OP-1 open), DR-2 (OP-3 lost), DR-6 (OP-2 won); DR-3 rejected;
    // DR-4 pending; DR-5 expired. Decided in 3 + 10 + 1 + 30 + 1 days.
    assert_eq!(
        (
            t.submitted,
            t.decided,
            t.approved,
            t.rejected,
            t.expired,
            t.pending
        ),
        (6, 5, 3, 1, 1, 1)
    );
    assert_eq!(t.approval_rate, Some(75.0));
    assert_eq!(t.avg_decision_days, Some(9.0));
    assert_eq!((t.converted, t.won, t.win_rate), (3, 1, Some(50.0)));
    let by: BTreeMap<&str, (i64, Option<f64>)> = r
        .partners
        .iter()
        .map(|p| {
            (
                p.partner.partner_id.as_str(),
                (p.funnel.submitted, p.funnel.win_rate),
            )
        })
        .collect();
    assert_eq!(
        by,
        BTreeMap::from([("P-1", (4, Some(100.0))), ("P-2", (2, Some(0.0)))])
    );
    // Two partners are no quartile: nobody is flagged.
    assert!(r.partners.iter().all(|p| p.flags.is_empty()));

    // A partner user: its own registrations only, and nobody else's row.
    let own = registrations(&cx(
        &engine,
        &session,
        Audience::partner("P-2").unwrap(),
        None,
    ))
    .await
    .unwrap();
    assert_eq!(
        (own.total.submitted, own.total.approval_rate),
        (2, Some(50.0))
    );
    assert_eq!(own.partners.len(), 1);
    assert_eq!(own.partners[0].partner.partner_id, "P-2");
}

#[tokio::test]
async fn campaigns_show_funds_against_what_they_sourced_and_flag_paid_ones_that_sourced_nothing() {
    let (_tmp, session) = tiny().await;
    let engine = Engine::new(Model::shipped());
    let all = campaigns(&cx(&engine, &session, Audience::everyone(), None))
        .await
        .unwrap();
    let t = &all.total;
    assert_eq!(
        (t.mdf_requested, t.mdf_approved, t.mdf_claimed, t.mdf_paid),
        (
            Money::parse("8600"),
            Money::parse("4600"),
            Money::parse("3700"),
            Money::parse("3500")
        )
    );
    // OP-1 (CA-1, open, 10000) and OP-2 (CA-2, won 500): 500 / 3500.
    assert_eq!(t.sourced_opportunities, 2);
    assert!((t.mdf_roi.unwrap() - 500.0 / 3500.0).abs() < 1e-12);
    let ids: Vec<(&str, bool)> = all
        .campaigns
        .iter()
        .map(|c| (c.campaign_id.as_str(), c.paid_without_pipeline))
        .collect();
    // CA-1 returned 0 so far; the others have no return. Nothing is flagged over all time.
    assert_eq!(
        ids,
        vec![("CA-1", false), ("(none)", false), ("CA-2", false)]
    );
    let ca1 = &all.campaigns[0];
    assert_eq!(
        (ca1.campaign_name.as_str(), ca1.owner.as_str()),
        ("Cloud for hospitals", "P-1")
    );

    // In 2024-Q1 the opportunity CA-1 sourced does not close (it closes in June): paid 3500
    // for no opportunity of the period.
    let q1 = campaigns(&cx(
        &engine,
        &session,
        Audience::everyone(),
        Some("2024-Q1"),
    ))
    .await
    .unwrap();
    assert_eq!(q1.campaigns[0].campaign_id, "CA-1");
    assert!(q1.campaigns[0].paid_without_pipeline);
    assert_eq!(
        q1.campaigns
            .iter()
            .filter(|c| c.paid_without_pipeline)
            .count(),
        1
    );

    // P-2 sees the brand owner's campaign its funds name, never P-1's campaign.
    let own = campaigns(&cx(
        &engine,
        &session,
        Audience::partner("P-2").unwrap(),
        None,
    ))
    .await
    .unwrap();
    let ids: Vec<&str> = own
        .campaigns
        .iter()
        .map(|c| c.campaign_id.as_str())
        .collect();
    assert_eq!(ids, vec!["(none)", "CA-2"]);
    assert_eq!(own.total.mdf_requested, Money::parse("1600"));
    assert_eq!(own.campaigns[1].campaign_name, "Spring webinar, brand");
}

#[tokio::test]
async fn enablement_counts_people_valid_at_the_period_end_and_finds_lines_sold_without_technical_staff()
 {
    let (_tmp, session) = tiny().await;
    let engine = Engine::new(Model::shipped());
    let e = enablement(&cx(
        &engine,
        &session,
        Audience::everyone(),
        Some("2024-Q1"),
    ))
    .await
    .unwrap();
    let ids: Vec<&str> = e
        .partners
        .iter()
        .map(|p| p.partner.partner_id.as_str())
        .collect();
    assert_eq!(ids, vec!["P-1", "P-2"]);
    let p1 = &e.partners[0];
    // On 2024-03-31: CE-1 (E-1, Technical, Cloud Infrastructure), CE-2 (E-2, Sales), CE-4 (E-1,
    // Sales, Security); CE-1 expires on 06-01, within 90 days.
    assert_eq!(p1.certified_people, 2);
    assert_eq!(
        p1.by_track,
        BTreeMap::from([("Sales".to_string(), 2), ("Technical".to_string(), 1)])
    );
    assert_eq!(
        p1.by_level,
        BTreeMap::from([
            ("Associate".to_string(), 2),
            ("Professional".to_string(), 1)
        ])
    );
    assert_eq!(p1.expiring, 1);
    // P-1 sold Cloud Infrastructure and Security in Q1; only Cloud Infrastructure has a
    // technical certification.
    assert_eq!(p1.gaps, vec!["Security".to_string()]);
    // P-2's only certification lapsed on 03-15; its Q1 sale was a credit: nothing sold, no gap.
    let p2 = &e.partners[1];
    assert_eq!((p2.certified_people, p2.expiring, p2.gaps.len()), (0, 0, 0));

    // A year on, CE-1 has expired too and P-1 sold nothing: no gap, one person (E-1 by CE-4,
    // E-2 by CE-2).
    let later = enablement(&cx(
        &engine,
        &session,
        Audience::everyone(),
        Some("2024-Q4"),
    ))
    .await
    .unwrap();
    let p1 = later
        .partners
        .iter()
        .find(|p| p.partner.partner_id == "P-1")
        .unwrap();
    assert_eq!((p1.certified_people, p1.gaps.len()), (2, 0));

    // A partner user asking about another partner's enablement gets its own only.
    let own = enablement(&cx(
        &engine,
        &session,
        Audience::partner("P-2").unwrap(),
        Some("2024-Q1"),
    ))
    .await
    .unwrap();
    assert!(own.partners.iter().all(|p| p.partner.partner_id == "P-2"));
}
