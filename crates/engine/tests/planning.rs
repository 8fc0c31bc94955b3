//! A question about a sliver of the order lines (one product, one partner) builds its join's hash
//! table from that sliver, not from every customer: DataFusion, assuming a filter keeps a fifth
//! of the rows, would otherwise build it from the customers table (45 of potential's 75 ms at
//! scale 8). `prism explain --analyze` shows the plan as it runs.

mod common;

use prism_engine::{Audience, Engine, Filter, FilterOp, Query};
use prism_model::Model;

/// The physical plan of a compiled question, as `prism explain` prints it.
async fn physical_plan(
    engine: &Engine,
    ctx: &prism_engine::Session,
    compiled: &prism_engine::Compiled,
) -> String {
    let batches = engine.explain_plan(ctx, compiled, false).await.unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    text[text.find("physical_plan").expect("a physical plan")..].to_string()
}

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
    let text = physical_plan(engine, ctx, &compiled).await;
    let physical = text.as_str();
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

/// `prism explain` prints the whole question as SQL (DataFusion's unparser over the plan the
/// compiler built): that SQL, run as it stands, answers what the question answers. Checked on
/// fixtures/tiny for every stage the compiler builds as a plan: a drill-across of two facts, a
/// ratio, the window forms, a compared period, a benchmark's withheld figures, order and limit.
#[tokio::test]
async fn explain_prints_the_question_as_sql_that_answers_the_same() {
    let (_tmp, ctx) = common::tiny().await;
    let engine = Engine::new(Model::shipped());
    let ask = |metrics: &[&str], by: &[&str]| Query {
        metrics: metrics.iter().map(|m| m.to_string()).collect(),
        by: by.iter().map(|d| d.to_string()).collect(),
        ..Query::default()
    };
    let forms = ask(
        &[
            "closed_revenue",
            "closed_revenue:rank",
            "closed_revenue:pct_of_total",
            "closed_revenue:cumulative_pct",
        ],
        &["partner.partner_id"],
    );
    // By hand: (direct) 1200.00, P-1 2499.50, P-2 -49.75 of 3649.75 in all.
    let answer = engine
        .run(&ctx, &forms, &Audience::everyone())
        .await
        .unwrap();
    let rows = answer.formatted_rows();
    assert_eq!(
        rows.iter()
            .map(|r| (r[0].as_str(), r[1].as_str(), r[2].as_str()))
            .collect::<Vec<_>>(),
        [
            ("(direct)", "1200.00", "2"),
            ("P-1", "2499.50", "1"),
            ("P-2", "-49.75", "3")
        ]
    );
    let mut questions = vec![forms];
    questions.push(Query {
        period: Some(prism_engine::Period::parse("2024-03").unwrap()),
        ..ask(
            &[
                "closed_revenue",
                "closed_revenue:change",
                "csat_avg",
                "win_rate",
            ],
            &["partner.tier"],
        )
    });
    questions.push(Query {
        order: vec![prism_engine::Order::parse("closed_revenue:desc").unwrap()],
        limit: Some(2),
        ..ask(&["closed_revenue", "open_sr_count"], &["time.month"])
    });
    for q in &questions {
        let compiled = engine.compile_in(&ctx, q, &Audience::everyone()).unwrap();
        let answered = engine.run(&ctx, q, &Audience::everyone()).await.unwrap();
        check_explained(&engine, &ctx, &compiled, &answered.batches).await;
    }
    let q = ask(&["closed_revenue", "csat_avg"], &["time.quarter"]);
    let benchmark = engine.compile_benchmark_in(&ctx, &q).unwrap();
    let answered = engine.run_benchmark(&ctx, &q).await.unwrap();
    check_explained(&engine, &ctx, &benchmark, &answered.batches).await;
}

/// The SQL explain prints for `compiled` runs, and gives the batches it answered.
async fn check_explained(
    engine: &Engine,
    ctx: &prism_engine::Session,
    compiled: &prism_engine::Compiled,
    answered: &[arrow::record_batch::RecordBatch],
) {
    let (plan, sql) = engine.logical_plan_of(ctx, compiled).await.unwrap();
    let sql = sql.unwrap_or_else(|| panic!("no SQL for the plan\n{plan}"));
    let pretty = |b: &[arrow::record_batch::RecordBatch]| {
        arrow::util::pretty::pretty_format_batches(b)
            .unwrap()
            .to_string()
    };
    let by_sql = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    assert_eq!(
        pretty(&by_sql),
        pretty(answered),
        "explain's SQL answers otherwise:\n{sql}\nplan:\n{plan}"
    );
}

/// The ancestors of a plan's first line naming `node`, nearest first, each as its own line
/// trimmed: a plan printed indented has a node's parent at the nearest line above it that is
/// indented less.
fn ancestors(plan: &str, node: &str) -> Vec<String> {
    let lines: Vec<&str> = plan.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains(node))
        .unwrap_or_else(|| panic!("no {node} in\n{plan}"));
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut depth = indent(lines[at]);
    let mut out = Vec::new();
    for l in lines[..at].iter().rev() {
        if indent(l) < depth {
            depth = indent(l);
            out.push(l.trim().to_string());
        }
    }
    out
}

/// A cut by a partner's attributes groups the order lines by the partner's key first and reads
/// the partners for the grouped rows only (`compile::late`): the answer is the one joining
/// every line to its partner would give, to the cent, of the same type, with "(direct)" and
/// "(none)" rows as before; a distinct count, which does not add up across partners, still
/// joins first and is right. By hand on fixtures/tiny: P-1 (Gold, EMEA) 2400.00 + 99.50 on
/// O-1 (3 units), P-2 (Silver, EMEA) -49.75 on O-3 (1 unit), direct 1200 on O-2 (1 unit).
#[tokio::test]
async fn a_cut_by_partner_attributes_groups_by_partner_before_reading_partners() {
    let (_tmp, ctx) = common::tiny().await;
    let engine = Engine::new(Model::shipped()).without_rollups();
    let ask = |metrics: &[&str], by: &[&str], filters: Vec<Filter>| Query {
        metrics: metrics.iter().map(|m| m.to_string()).collect(),
        by: by.iter().map(|d| d.to_string()).collect(),
        filters,
        ..Query::default()
    };
    let rows = |q: Query| {
        let engine = &engine;
        let ctx = &ctx;
        async move {
            let answer = engine.run(ctx, &q, &Audience::everyone()).await.unwrap();
            let revenue = answer.batches[0]
                .schema()
                .field_with_name("closed_revenue")
                .map(|f| f.data_type().clone())
                .ok();
            (answer.formatted_rows(), revenue)
        }
    };

    // Both partners are in EMEA: their lines meet in one row after the join.
    let by_region = ask(
        &["closed_revenue", "units_sold"],
        &["partner.region"],
        Vec::new(),
    );
    let compiled = engine
        .compile_in(&ctx, &by_region, &Audience::everyone())
        .unwrap();
    let (plan, _) = engine.logical_plan_of(&ctx, &compiled).await.unwrap();
    let above_orders = ancestors(&plan, "TableScan: orders");
    let first = |kind: &str| above_orders.iter().position(|l| l.starts_with(kind));
    assert!(
        first("Aggregate").unwrap() < first("Left Join").unwrap(),
        "the order lines are grouped before the partners are joined:\n{plan}"
    );
    // Asked by the partner's key and name, the key the join needs is the key asked: the order
    // lines are grouped by it once, not by the same column under two names.
    let by_partner = ask(
        &["closed_revenue"],
        &["partner.partner_id", "partner.partner_name"],
        Vec::new(),
    );
    let compiled = engine
        .compile_in(&ctx, &by_partner, &Audience::everyone())
        .unwrap();
    let (plan, _) = engine.logical_plan_of(&ctx, &compiled).await.unwrap();
    let grouping = ancestors(&plan, "TableScan: orders")
        .into_iter()
        .find(|l| l.starts_with("Aggregate"))
        .expect("the order lines are grouped");
    assert!(
        grouping.starts_with("Aggregate: groupBy=[[f.partner_id]]"),
        "grouped by the partner key once: {grouping}"
    );
    let (answer, ty) = rows(by_region).await;
    assert_eq!(
        answer,
        [["(direct)", "1200.00", "1"], ["EMEA", "2449.75", "4"]]
    );
    // The type of a sum over the order lines, as a question without a join has it.
    let (total, total_ty) = rows(ask(&["closed_revenue"], &[], Vec::new())).await;
    assert_eq!(total, [["3649.75"]]);
    assert_eq!(ty, total_ty);
    assert!(
        matches!(ty, Some(arrow::datatypes::DataType::Decimal128(_, 2))),
        "{ty:?}"
    );

    // The partner's key asked beside its attributes: one row per partner, no regrouping.
    let (answer, _) = rows(ask(
        &["closed_revenue"],
        &["partner.partner_id", "partner.partner_name", "partner.tier"],
        Vec::new(),
    ))
    .await;
    assert_eq!(
        answer,
        [
            ["(direct)", "(direct)", "(direct)", "1200.00"],
            ["P-1", "Acme, \"Best\" Partners", "Gold", "2499.50"],
            ["P-2", "Müller & Söhne", "Silver", "-49.75"],
        ]
    );

    // A distinct count joins first: O-1 and O-3 are two orders in EMEA.
    let (answer, _) = rows(ask(
        &["closed_revenue", "order_count"],
        &["partner.region"],
        Vec::new(),
    ))
    .await;
    assert_eq!(
        answer,
        [["(direct)", "1200.00", "1"], ["EMEA", "2449.75", "2"]]
    );

    // Filtered by an attribute no partner has, and cut by nothing: no lines, a count of zero
    // (as `COUNT` over no rows gives) and no revenue.
    let platinum = || Filter {
        dimension: "partner.tier".into(),
        op: FilterOp::In(vec!["Platinum".into()]),
    };
    let (answer, _) = rows(ask(
        &["closed_revenue", "survey_count"],
        &[],
        vec![platinum()],
    ))
    .await;
    assert_eq!(answer, [["", "0"]]);
    // Filtered by a tier and cut by a month: P-1's January only.
    let gold = Filter {
        dimension: "partner.tier".into(),
        op: FilterOp::In(vec!["Gold".into()]),
    };
    let (answer, _) = rows(ask(&["closed_revenue"], &["time.month"], vec![gold])).await;
    assert_eq!(answer, [["2024-01", "2499.50"]]);
}

/// A metric's condition is its aggregate's filter, so that the rows it drops are skipped rather
/// than given a NULL each; but beside a distinct count a sum keeps its `CASE`, so that DataFusion
/// still plans the distinct count as a grouping (it does not when an aggregate has a filter).
/// The answers are those of `fixtures/tiny` by hand: gross margin over the lines with a cost.
#[tokio::test]
async fn a_conditioned_sum_is_filtered_unless_beside_a_distinct_count() {
    use arrow::array::AsArray;
    let (_tmp, ctx) = common::tiny().await;
    let engine = Engine::new(Model::shipped()).without_rollups();
    let plan_of = async |metrics: &[&str]| {
        let q = Query {
            metrics: metrics.iter().map(|m| m.to_string()).collect(),
            ..Query::default()
        };
        let compiled = engine.compile_in(&ctx, &q, &Audience::everyone()).unwrap();
        let batches = engine.explain_plan(&ctx, &compiled, false).await.unwrap();
        let mut text = String::new();
        for b in &batches {
            for line in b.column(1).as_string::<i32>().iter().flatten() {
                text.push_str(line);
                text.push('\n');
            }
        }
        let rows = engine
            .run(&ctx, &q, &Audience::everyone())
            .await
            .unwrap()
            .formatted_rows();
        (text, rows)
    };
    let (alone, rows) = plan_of(&["gross_margin", "units_sold"]).await;
    assert!(alone.contains("FILTER (WHERE"), "a filter:\n{alone}");
    let (beside, rows_beside) = plan_of(&["order_count", "gross_margin"]).await;
    assert!(
        !beside.contains("FILTER (WHERE") && beside.contains("alias1"),
        "a CASE, and the distinct count planned as a grouping:\n{beside}"
    );
    // By hand: 2400 - 1500 (O-1/1), 1200 - 800 (O-2), -49.75 + 30 (O-3); O-1/2 has no cost.
    assert_eq!(rows, vec![vec!["1280.25".to_string(), "5".into()]]);
    assert_eq!(rows_beside, vec![vec!["3".to_string(), "1280.25".into()]]);
}

/// Whether the scan of the order lines evaluates the question's filter while decoding (the
/// filter is then the scan's own, and no `FilterExec` is left above it) or decodes whole pages
/// and filters after them (a `FilterExec` above the scan).
async fn filters_while_decoding(
    engine: &Engine,
    ctx: &prism_engine::Session,
    q: &Query,
    scope: &Audience,
) -> bool {
    let compiled = engine.compile_in(ctx, q, scope).unwrap();
    let physical = physical_plan(engine, ctx, &compiled).await;
    assert!(
        physical.contains("/orders/") && physical.contains("predicate="),
        "the scan of the order lines carries the filter:\n{physical}"
    );
    !physical.contains("FilterExec")
}

/// A filter on a key (a partner, a product, twenty customers) or the audience's partners keeps
/// a part of each page the scan reads: it is evaluated while decoding, and the other columns of
/// the rows it drops are never decoded. A filter on time or on an attribute keeps most rows of
/// the pages it reads: the scan decodes them whole and filters after, which was faster (a
/// year's open pipeline 31–35 → 13 ms at scale 8).
#[tokio::test]
async fn only_a_filter_on_a_key_is_evaluated_while_decoding() {
    let (_tmp, _, wh) = common::generated(0.02, 5, false).await;
    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    // Off the rollups: the question reads the order lines.
    let engine = Engine::new(Model::shipped()).without_rollups();
    let on = |dimension: &str, values: &[&str]| Filter {
        dimension: dimension.into(),
        op: FilterOp::In(values.iter().map(|s| s.to_string()).collect()),
    };
    let revenue = |filters: Vec<Filter>, period: Option<&str>| Query {
        metrics: vec!["closed_revenue".into()],
        by: vec!["time.month".into()],
        filters,
        period: period.map(|p| prism_engine::Period::parse(p).unwrap()),
        ..Query::default()
    };
    let everyone = Audience::everyone();
    let twenty: Vec<String> = (0..20).map(|i| format!("C-{:07}", i * 7)).collect();
    let twenty: Vec<&str> = twenty.iter().map(String::as_str).collect();
    for (what, q, scope, expected) in [
        (
            "one partner",
            revenue(vec![on("partner.partner_id", &["P-00001"])], None),
            &everyone,
            true,
        ),
        (
            "twenty customers",
            revenue(vec![on("customer.customer_id", &twenty)], None),
            &everyone,
            true,
        ),
        (
            "a partner user's own rows over a year",
            revenue(Vec::new(), Some("2025")),
            &Audience::partner("P-00001").unwrap(),
            true,
        ),
        (
            "a year",
            revenue(Vec::new(), Some("2025")),
            &everyone,
            false,
        ),
        (
            "a month",
            revenue(vec![on("time.month", &["2025-03"])], None),
            &everyone,
            false,
        ),
        (
            "a tier",
            revenue(vec![on("partner.tier", &["Gold"])], Some("2025")),
            &everyone,
            false,
        ),
    ] {
        assert_eq!(
            filters_while_decoding(&engine, &ctx, &q, scope).await,
            expected,
            "{what}"
        );
    }
}
