//! A user's own metrics, written as a new user would write them, over `fixtures/tiny`: every
//! kind of expression DataFusion accepts is computed right, and a malformed one is refused when
//! the model is read, with its line, instead of failing the first query that uses it.
//!
//! The expected figures are computed by hand from the fixture's four order lines:
//!
//! | order | line | partner | date       | quantity | revenue | cost    |
//! |-------|------|---------|------------|----------|---------|---------|
//! | O-1   | 1    | P-1     | 2024-01-10 | 2        | 2400.00 | 1500.00 |
//! | O-1   | 2    | P-1     | 2024-01-10 | 1        | 99.50   |         |
//! | O-2   | 1    | direct  | 2024-02-01 | 1        | 1200.00 | 800.00  |
//! | O-3   | 1    | P-2     | 2024-03-05 | 1        | -49.75  | -30.00  |

mod common;

use prism_engine::{Audience, Engine, Filter, Query, check_model};
use prism_model::Model;

const USER_MODEL: &str = r#"metrics:
  mid_revenue: { fact: orders, sum: revenue, where: "revenue BETWEEN 1000 AND 2000", format: money }
  quarter_end_revenue: { fact: orders, sum: revenue, where: "EXTRACT(MONTH FROM order_date) IN (3, 6, 9, 12)", format: money }
  cost_or_zero: { fact: orders, sum: "COALESCE(cost, 0)", format: money }
  big_lines: { fact: orders, count: "*", where: "CASE WHEN quantity >= 2 THEN true ELSE false END", format: integer }
  partner_lines: { fact: orders, count: "*", where: "partner_id IN ('P-1', 'P-2')", format: integer }
  late_lines: { fact: orders, count: "*", where: "order_date + INTERVAL '25 days' > DATE '2024-02-20'", format: integer }
  half_units: { fact: orders, sum: "CAST(quantity AS DOUBLE) / 2", format: number }
  second_lines: { fact: orders, count: "*", where: "CAST(line_number AS VARCHAR) = '2'", format: integer }
"#;

/// fixtures/tiny loaded with the shipped model's rollups.
async fn tiny() -> (tempfile::TempDir, std::sync::Arc<prism_engine::Session>) {
    let tmp = tempfile::tempdir().unwrap();
    let wh = common::tiny_with(tmp.path(), &[]).await;
    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    (tmp, ctx)
}

#[tokio::test]
async fn a_users_expressions_are_computed_as_written() {
    let model = Model::extended("mine.yaml", USER_MODEL).unwrap();
    check_model(&model).unwrap();
    let (_tmp, ctx) = tiny().await;
    let engine = Engine::new(model);
    let expected = [
        ("mid_revenue", "1200.00"),
        ("quarter_end_revenue", "-49.75"),
        ("cost_or_zero", "2270.00"),
        ("big_lines", "1"),
        ("partner_lines", "3"),
        ("late_lines", "2"),
        ("half_units", "2.5"),
        ("second_lines", "1"),
    ];
    let q = Query {
        metrics: expected.iter().map(|(m, _)| m.to_string()).collect(),
        ..Query::default()
    };
    let r = engine.run(&ctx, &q, &Audience::everyone()).await.unwrap();
    let row = &r.formatted_rows()[0];
    for (i, (metric, value)) in expected.iter().enumerate() {
        assert_eq!(r.columns[i].name, *metric);
        assert_eq!(row[i], *value, "{metric}");
    }

    // Cut by a dimension, the fact's `partner_id` must not be confused with the partner
    // table's: P-1 has two lines, P-2 one, P-3 none (no row), direct sales none of P-1's or
    // P-2's.
    let q = Query {
        metrics: vec!["partner_lines".into(), "mid_revenue".into()],
        by: vec!["partner.partner_id".into()],
        ..Query::default()
    };
    let r = engine.run(&ctx, &q, &Audience::everyone()).await.unwrap();
    let rows: Vec<Vec<String>> = r.formatted_rows();
    // The one line between 1000 and 2000 is the direct sale: no partner's figure has it.
    assert_eq!(
        rows,
        vec![
            vec!["(direct)", "0", "1200.00"],
            vec!["P-1", "2", ""],
            vec!["P-2", "1", ""]
        ]
    );
}

#[test]
fn an_expression_that_cannot_be_parsed_is_refused_with_its_line() {
    let text = "metrics:\n  fine: { fact: orders, sum: revenue }\n  broken: { fact: orders, sum: \"revenue +\" }\n  worse: { fact: orders, count: \"*\", where: \"stage IN ('a'\" }\n";
    let e = Model::extended("mine.yaml", text).unwrap_err().to_string();
    assert!(
        e.contains("mine.yaml:3: metric `broken`: `sum`: `revenue +` is not an expression"),
        "{e}"
    );
    assert!(e.contains("mine.yaml:4: metric `worse`: `where`"), "{e}");
}

#[test]
fn an_expression_over_the_wrong_columns_or_types_is_refused_with_its_line() {
    let text = "metrics:\n  a: { fact: orders, sum: revenu }\n  b: { fact: orders, sum: partner_id }\n  c: { fact: orders, count: \"*\", where: \"quantity + 1\" }\n  d: { fact: orders, sum: \"revenue * 2\", where: \"cost > 0\" }\n";
    let model = Model::extended("mine.yaml", text).unwrap();
    let e = check_model(&model).unwrap_err().to_string();
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 3, "{e}");
    assert!(
        lines[0].starts_with("mine.yaml:2: metric `a`: `revenu` is not a column of the table")
            && lines[0].contains("did you mean `revenue`"),
        "{e}"
    );
    assert!(
        lines[1].starts_with("mine.yaml:3: metric `b`: `sum: partner_id` is Utf8, not a number"),
        "{e}"
    );
    assert!(
        lines[2].starts_with(
            "mine.yaml:4: metric `c`: `where: quantity + 1` is Int64, not a condition"
        ),
        "{e}"
    );
}

#[test]
fn the_shipped_model_fits_the_warehouse_tables() {
    check_model(&Model::shipped()).unwrap();
}

/// Answers are read by column name, typed: money in exact cents, counts as counts, and direct
/// sales as the direct channel — for a brand-owner user; a partner user's answer has no such row.
#[tokio::test]
async fn answers_are_typed_and_direct_sales_are_a_value_of_their_own() {
    use prism_engine::{Money, Value};
    let (_tmp, ctx) = tiny().await;
    let engine = Engine::new(Model::shipped());
    let q = Query {
        metrics: vec!["closed_revenue".into(), "units_sold".into()],
        by: vec!["partner.partner_id".into(), "partner.partner_name".into()],
        ..Query::default()
    };
    let r = engine.run(&ctx, &q, &Audience::everyone()).await.unwrap();
    let mut rows: Vec<(Value, Value, Option<Money>, Option<i64>)> = r
        .rows()
        .iter()
        .map(|row| {
            (
                row.get("partner.partner_id").clone(),
                row.get("partner.partner_name").clone(),
                row.money("closed_revenue"),
                row.count("units_sold"),
            )
        })
        .collect();
    rows.sort_by_key(|r| r.0.exact());
    // By hand from the four lines: direct 1200.00 (1 unit), P-1 2400.00 + 99.50 (3 units),
    // P-2 -49.75 (1 unit, a credit).
    assert_eq!(
        rows,
        [
            (Value::Direct, Value::Direct, Some(Money(120000)), Some(1)),
            (
                Value::Text("P-1".into()),
                Value::Text("Acme, \"Best\" Partners".into()),
                Some(Money(249950)),
                Some(3)
            ),
            (
                Value::Text("P-2".into()),
                Value::Text("Müller & Söhne".into()),
                Some(Money(-4975)),
                Some(1)
            ),
        ]
    );
    let r = engine
        .run(&ctx, &q, &Audience::partner("P-2").unwrap())
        .await
        .unwrap();
    let ids: Vec<Value> = r
        .rows()
        .iter()
        .map(|row| row.get("partner.partner_id").clone())
        .collect();
    assert_eq!(ids, [Value::Text("P-2".into())]);
}

/// A user's model adds attributes to the shipped dimensions without restating them, and a
/// filter compares an attribute as the type it is: a price as a number (as text, `99.5` would
/// sort above `100`), a day as a day, a flag as true or false. The members people name by a
/// label — direct sales, an opportunity no campaign sourced — are filtered by that label.
///
/// Hand figures from the fixture: PR-1 lists at 1200.00 and sold 2400.00 (P-1) + 1200.00
/// (direct), PR-2 lists at 99.50 and sold 99.50 (P-1) − 49.75 (P-2); P-1 joined on 2020-01-15,
/// P-2 has no date. Opportunities: OP-1 (CA-1, an Event, registered), OP-2 (CA-2, the brand
/// owner's Webinar, no flag), OP-3 (no campaign, not registered).
#[tokio::test]
async fn filters_compare_an_attributes_own_type() {
    let mine = r#"dimensions:
  product:
    attributes:
      list_price: { description: "The list price." }
  partner:
    attributes:
      joined_on: { description: "The day it joined the program." }
"#;
    let model = Model::extended("mine.yaml", mine).unwrap();
    check_model(&model).unwrap();
    // The shipped attributes are still there.
    assert!(model.dimensions["partner"].attributes.contains_key("tier"));
    let (_tmp, ctx) = tiny().await;
    let engine = Engine::new(model);
    let total = |metric: &'static str, filter: &'static str| {
        let (engine, ctx) = (&engine, &ctx);
        async move {
            let q = Query {
                metrics: vec![metric.into()],
                filters: vec![Filter::parse(filter).unwrap()],
                ..Query::default()
            };
            let r = engine.run(ctx, &q, &Audience::everyone()).await;
            r.map(|r| r.formatted_rows()[0][0].clone())
        }
    };
    let revenue = |f| total("closed_revenue", f);
    assert_eq!(revenue("product.list_price>=100").await.unwrap(), "3600.00");
    assert_eq!(revenue("product.list_price<=100").await.unwrap(), "49.75");
    assert_eq!(revenue("product.list_price=99.50").await.unwrap(), "49.75");
    assert_eq!(
        revenue("product.list_price=90..1000").await.unwrap(),
        "49.75"
    );
    assert_eq!(
        revenue("partner.joined_on=2020-01-01..2020-06-30")
            .await
            .unwrap(),
        "2499.50"
    );
    // Direct sales by their label, kept by an exclusion that does not name them.
    assert_eq!(
        revenue("partner.partner_id=(direct)|P-2").await.unwrap(),
        "1150.25"
    );
    assert_eq!(revenue("partner.tier!=Gold").await.unwrap(), "1150.25");
    assert_eq!(
        revenue("partner.tier!=Gold|(direct)").await.unwrap(),
        "-49.75"
    );
    let count = |f| total("opportunity_count", f);
    assert_eq!(count("campaign.channel=(none)").await.unwrap(), "1");
    assert_eq!(count("campaign.channel!=Event").await.unwrap(), "2");
    assert_eq!(count("campaign.channel!=Event|(none)").await.unwrap(), "1");
    assert_eq!(count("campaign.owner=(brand owner)").await.unwrap(), "1");
    assert_eq!(
        count("opportunity.deal_registered=true").await.unwrap(),
        "1"
    );
    assert_eq!(count("opportunity.deal_registered=no").await.unwrap(), "1");

    // A value not of the attribute's type is refused, naming the filter.
    for (metric, filter, says) in [
        (
            "closed_revenue",
            "product.list_price=abc",
            "filter product.list_price: `abc` is not a number",
        ),
        (
            "closed_revenue",
            "partner.joined_on>=2020-13-01",
            "filter partner.joined_on: `2020-13-01` is not a day",
        ),
        (
            "opportunity_count",
            "opportunity.deal_registered=maybe",
            "filter opportunity.deal_registered: `maybe` is not true or false",
        ),
    ] {
        let e = total(metric, filter).await.unwrap_err().to_string();
        assert!(e.contains(says), "{filter}: {e}");
    }
}
