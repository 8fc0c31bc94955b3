//! The result cache never serves an answer of another scope or of an older warehouse version.

use std::path::Path;

use prism_engine::{Audience, Engine, Query};
use prism_model::Model;
use prism_warehouse::{LoadOptions, NoProgress, Warehouse};

#[tokio::test]
async fn the_cache_answers_per_scope_and_a_load_makes_a_new_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = Warehouse::open(tmp.path().join("data")).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny");
    wh.load(
        &LoadOptions::upsert(
            fixture.clone(),
            prism_engine::Engine::new(prism_model::Model::shipped()).rollup_builds(),
        ),
        &NoProgress,
    )
    .await
    .unwrap();
    let engine = Engine::with_result_cache(Model::shipped(), 1 << 20);
    let q = Query {
        metrics: vec!["closed_revenue".into()],
        ..Query::default()
    };
    let ask = |session, scope| {
        let (engine, q) = (&engine, &q);
        async move {
            engine
                .run(session, q, &scope)
                .await
                .unwrap()
                .formatted_rows()[0][0]
                .clone()
        }
    };
    let first = wh.snapshot(None).unwrap().session().await.unwrap();
    // Hand-computed (fixtures/tiny): everything 3649.75, P-1 2499.50, P-2 -49.75.
    assert_eq!(ask(&first, Audience::everyone()).await, "3649.75");
    assert_eq!(
        ask(&first, Audience::partner("P-1").unwrap()).await,
        "2499.50"
    );
    assert_eq!(
        ask(&first, Audience::partner("P-2").unwrap()).await,
        "-49.75"
    );
    assert_eq!(
        ask(&first, Audience::everyone()).await,
        "3649.75",
        "again, from the cache"
    );

    // A load changes P-1's first line from 2400.00 to 100.00: a new version, a new session.
    let update = tmp.path().join("update");
    std::fs::create_dir_all(&update).unwrap();
    let orders = std::fs::read_to_string(fixture.join("orders.csv"))
        .unwrap()
        .replace(",2400.00,", ",100.00,");
    std::fs::write(update.join("orders.csv"), orders).unwrap();
    wh.load(
        &LoadOptions::upsert(
            update,
            prism_engine::Engine::new(prism_model::Model::shipped()).rollup_builds(),
        ),
        &NoProgress,
    )
    .await
    .unwrap();
    let second = wh.snapshot(None).unwrap().session().await.unwrap();
    assert_eq!(
        ask(&second, Audience::partner("P-1").unwrap()).await,
        "199.50"
    );
    assert_eq!(ask(&second, Audience::everyone()).await, "1349.75");
    // The earlier version's session still answers for its own version.
    assert_eq!(
        ask(&first, Audience::partner("P-1").unwrap()).await,
        "2499.50"
    );
}
