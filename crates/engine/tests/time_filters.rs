//! A filter on a time value answers what the cut by that grain shows on that value's row, at
//! every grain, from the rollups and from the base tables alike: a metamorphic check of the
//! filters against the grouping, over generated data.

mod common;

use prism_engine::{Audience, Engine, Filter, Query};
use prism_model::Model;

#[tokio::test]
async fn a_filter_on_a_time_value_answers_that_values_row_of_the_cut() {
    let (_tmp, _export, wh) = common::generated(0.02, 35, true).await;
    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    let metrics: Vec<String> = [
        "closed_revenue",
        "order_count",
        "win_rate",
        "csat_avg",
        "sr_count",
    ]
    .map(String::from)
    .to_vec();
    let mut checked = 0;
    for engine in [
        Engine::new(Model::shipped()),
        Engine::new(Model::shipped()).without_rollups(),
    ] {
        for grain in [
            "time.day",
            "time.week",
            "time.month",
            "time.quarter",
            "time.year",
        ] {
            let cut = Query {
                metrics: metrics.clone(),
                by: vec![grain.into()],
                ..Query::default()
            };
            let rows = engine
                .run(&ctx, &cut, &Audience::everyone())
                .await
                .unwrap()
                .formatted_rows();
            assert!(rows.len() >= 2, "{grain}: rows to compare");
            // The first, the last and a middle value of the grain.
            for row in [&rows[0], &rows[rows.len() / 2], &rows[rows.len() - 1]] {
                let one = Query {
                    metrics: metrics.clone(),
                    filters: vec![Filter::parse(&format!("{grain}={}", row[0])).unwrap()],
                    ..Query::default()
                };
                let got = engine
                    .run(&ctx, &one, &Audience::everyone())
                    .await
                    .unwrap()
                    .formatted_rows();
                assert_eq!(got, vec![row[1..].to_vec()], "{grain}={}", row[0]);
                checked += 1;
            }
            // A range from the first value to the middle one keeps exactly those rows.
            let upto = &rows[rows.len() / 2][0];
            let range = Query {
                filters: vec![Filter::parse(&format!("{grain}={}..{upto}", rows[0][0])).unwrap()],
                ..cut.clone()
            };
            let got = engine
                .run(&ctx, &range, &Audience::everyone())
                .await
                .unwrap()
                .formatted_rows();
            assert_eq!(
                got,
                rows[..=rows.len() / 2].to_vec(),
                "{grain} up to {upto}"
            );
        }
    }
    assert_eq!(checked, 30);
}

/// A service request falls in a period, or a filter on a time grain, by the day of its opening
/// in UTC, to the microsecond either side of midnight, whatever the offset it was exported
/// with; with the rollups and without, and as the cut by day counts it.
#[tokio::test]
async fn a_period_takes_a_timestamp_by_its_day_in_utc_to_the_microsecond() {
    use prism_engine::Period;
    let tmp = tempfile::tempdir().unwrap();
    // Opened (in UTC): A Jan 31 23:59:59.999999, B Feb 1 00:00, C Feb 29 23:59:59.999999,
    // D Mar 1 00:00, E Feb 15 08:00, F Feb 29 23:00, G Jan 31 23:00.
    let requests = "request_id,partner_id,customer_id,product_id,priority,opened_at,first_response_at,resolved_at\n\
         SR-A,P-1,C-1,,P1,2024-01-31T23:59:59.999999Z,,\n\
         SR-B,P-1,C-1,,P1,2024-02-01T00:00:00Z,,\n\
         SR-C,P-2,C-2,,P3,2024-02-29T23:59:59.999999Z,,\n\
         SR-D,P-2,C-2,,P3,2024-03-01T00:00:00Z,,\n\
         SR-E,P-1,C-1,,P2,2024-02-15T10:00:00+02:00,,\n\
         SR-F,P-2,C-2,,P2,2024-03-01T01:00:00+02:00,,\n\
         SR-G,P-1,C-1,,P4,2024-02-01T01:00:00+02:00,,\n";
    let wh = common::tiny_with(tmp.path(), &[("service_requests.csv", requests)]).await;
    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    let requests = |period: Option<&str>, filter: Option<&str>, by: Option<&str>| Query {
        metrics: vec!["sr_count".into()],
        period: period.map(|p| Period::parse(p).unwrap()),
        filters: filter
            .map(|f| Filter::parse(f).unwrap())
            .into_iter()
            .collect(),
        by: by.map(String::from).into_iter().collect(),
        ..Query::default()
    };
    // Counted by hand from the openings above.
    let in_periods = [
        ("2024-02", "4"),                // B, C, E, F
        ("2024-02-29", "2"),             // C, F
        ("2024-02-01", "1"),             // B
        ("2024-01-31", "2"),             // A, G
        ("2024-03-01..2024-12-31", "1"), // D
        ("2024-01-01..2024-03-31", "7"),
    ];
    // The same days by a filter on a time grain, which the base tables answer as ranges of
    // days (2024-02-29 is a Thursday of 2024-W09, Monday Feb 26 to Sunday Mar 3).
    let filtered = [
        ("time.day=2024-02-29", "2"),             // C, F
        ("time.month=2024-02", "4"),              // B, C, E, F
        ("time.month!=2024-02", "3"),             // A, D, G
        ("time.month=2024-01|2024-03", "3"),      // A, G, D
        ("time.week=2024-W09", "3"),              // C, D, F
        ("time.week=2024-W05", "3"),              // A, B, G (Jan 29 to Feb 4)
        ("time.day=2024-02-01..2024-02-29", "4"), // B, C, E, F
        ("time.day>=2024-03-01", "1"),            // D
        ("time.day<=2024-01-31", "2"),            // A, G
        ("time.quarter=2024-Q1", "7"),
        ("time.quarter=2024-Q2..2024-Q4", "0"),
        ("time.year=2024", "7"),
    ];
    for engine in [
        Engine::new(Model::shipped()),
        Engine::new(Model::shipped()).without_rollups(),
    ] {
        let rows = async |q: Query| {
            engine
                .run(&ctx, &q, &Audience::everyone())
                .await
                .unwrap()
                .formatted_rows()
        };
        for (period, count) in in_periods {
            let got = rows(requests(Some(period), None, None)).await;
            assert_eq!(got, vec![vec![count.to_string()]], "{period}");
        }
        for (filter, count) in filtered {
            // No request: no row, or a row without a count.
            let got = match rows(requests(None, Some(filter), None)).await.first() {
                None => "0".to_string(),
                Some(r) if ["", "0", "—"].contains(&r[0].as_str()) => "0".to_string(),
                Some(r) => r[0].clone(),
            };
            assert_eq!(got, count, "{filter}");
        }
        let days: Vec<(String, String)> = rows(requests(Some("2024-02"), None, Some("time.day")))
            .await
            .into_iter()
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect();
        assert_eq!(
            days,
            [
                ("2024-02-01", "1"),
                ("2024-02-15", "1"),
                ("2024-02-29", "2")
            ]
            .map(|(d, n)| (d.to_string(), n.to_string()))
        );
    }
}
