//! A question about a sliver of the order lines (one product, one partner) builds its join's hash
//! table from that sliver, not from every customer: DataFusion, assuming a filter keeps a fifth
//! of the rows, would otherwise build it from the customers table (45 of potential's 75 ms at
//! scale 8). `prism explain --analyze` shows the plan as it runs.

mod common;

use prism_engine::{Audience, Engine, Filter, FilterOp, Query};
use prism_model::Model;

/// The table the first hash join of the physical plan builds its hash table from: the first
/// scan under it, as DataFusion prints the build side first.
async fn build_side(
    engine: &Engine,
    ctx: &prism_engine::Session,
    q: &Query,
    scope: &Audience,
) -> String {
    let compiled = engine.compile_in(ctx, q, scope).unwrap();
    assert!(
        compiled.sql.contains("JOIN customers"),
        "the question joins the customers: {}",
        compiled.sql
    );
    let batches = engine.explain_plan(ctx, &compiled, false).await.unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    let physical = &text[text.find("physical_plan").expect("a physical plan")..];
    let join = physical
        .find("HashJoinExec")
        .unwrap_or_else(|| panic!("no hash join in\n{physical}"));
    let scan = &physical[join..][physical[join..]
        .find("DataSourceExec")
        .unwrap_or_else(|| panic!("no scan in\n{physical}"))..];
    ["orders", "customers"]
        .into_iter()
        .find(|t| scan.lines().next().unwrap().contains(&format!("/{t}/")))
        .unwrap_or_else(|| panic!("the build side reads neither table:\n{physical}"))
        .to_string()
}

#[tokio::test]
async fn a_narrow_question_builds_its_join_from_the_fact_rows_it_keeps() {
    // 900 customers and 19 k order lines.
    let (_tmp, _, wh) = common::generated(0.02, 5, false).await;
    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    let engine = Engine::new(Model::shipped());
    let products = |ids: &[&str]| Filter {
        dimension: "product.product_id".into(),
        op: FilterOp::In(ids.iter().map(|s| s.to_string()).collect()),
    };
    let by_industry = |filters: Vec<Filter>| Query {
        metrics: vec!["buying_customers".into()],
        by: vec!["customer.industry".into()],
        filters,
        ..Query::default()
    };

    // One product's lines (a few hundred): they are the hash table.
    assert_eq!(
        build_side(
            &engine,
            &ctx,
            &by_industry(vec![products(&["PR-001"])]),
            &Audience::everyone()
        )
        .await,
        "orders"
    );
    // One partner's lines, the same.
    assert_eq!(
        build_side(
            &engine,
            &ctx,
            &by_industry(Vec::new()),
            &Audience::partner("P-00001").unwrap()
        )
        .await,
        "orders"
    );
    // Every line: the 900 customers are the hash table.
    assert_eq!(
        build_side(
            &engine,
            &ctx,
            &by_industry(Vec::new()),
            &Audience::everyone()
        )
        .await,
        "customers"
    );
    // A third of the catalogue is not a sliver: planned as DataFusion would.
    let many: Vec<String> = (1..=30).map(|i| format!("PR-{i:03}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(
        build_side(
            &engine,
            &ctx,
            &by_industry(vec![products(&many)]),
            &Audience::everyone()
        )
        .await,
        "customers"
    );
}
