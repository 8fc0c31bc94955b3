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
