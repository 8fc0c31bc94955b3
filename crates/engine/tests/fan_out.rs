//! Asking for a second metric never changes the first one's value: every pair of metrics,
//! asked together, agrees with each asked alone (no fan-out across facts).

use std::collections::HashMap;

mod common;

use prism_engine::{Audience, Engine, Query};
use prism_model::Model;

fn table(r: &prism_engine::QueryResult, dims: usize) -> HashMap<Vec<String>, Vec<String>> {
    r.formatted_rows()
        .into_iter()
        .map(|cells| (cells[..dims].to_vec(), cells[dims..].to_vec()))
        .collect()
}

#[tokio::test]
async fn any_two_metrics_asked_together_equal_each_asked_alone() {
    let (_tmp, _, wh) = common::generated(0.01, 9, true).await;
    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    let model = Model::shipped();
    let metrics: Vec<String> = model
        .metrics
        .values()
        .filter(|m| !m.hidden)
        .map(|m| m.name.clone())
        .collect();
    let engine = Engine::new(model);
    let by = vec!["partner.tier".to_string(), "time.year".to_string()];

    let mut alone = HashMap::new();
    for m in &metrics {
        let q = Query {
            metrics: vec![m.clone()],
            by: by.clone(),
            ..Query::default()
        };
        alone.insert(
            m.clone(),
            table(
                &engine.run(&ctx, &q, &Audience::everyone()).await.unwrap(),
                by.len(),
            ),
        );
    }
    let mut checked = 0;
    for (i, a) in metrics.iter().enumerate() {
        for b in &metrics[i + 1..] {
            let q = Query {
                metrics: vec![a.clone(), b.clone()],
                by: by.clone(),
                ..Query::default()
            };
            let together = table(
                &engine.run(&ctx, &q, &Audience::everyone()).await.unwrap(),
                by.len(),
            );
            for (col, m) in [(0, a), (1, b)] {
                for (key, values) in &alone[m] {
                    let got = &together
                        .get(key)
                        .unwrap_or_else(|| panic!("{m} with {a}+{b}: row {key:?} lost"))[col];
                    assert_eq!(
                        got,
                        &values[0],
                        "{m} at {key:?}, asked with {}",
                        if m == a { b } else { a }
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 1000, "only {checked} values compared");
}
