//! The query cases of `tests/cases/*.case`, run against `fixtures/tiny`: a query, then the table
//! expected, computed by hand. One test runs them all and reports every difference.

#[path = "common/target.rs"]
mod target;

use std::collections::BTreeSet;
use std::path::Path;

use prism_engine::{Audience, Engine, EngineError, Filter, Order, Period, Query};
use prism_model::Model;
use prism_warehouse::{LoadOptions, NoProgress};

struct Case {
    name: String,
    query: Vec<(String, String)>,
    expected: Vec<String>,
}

fn parse_cases(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for block in text.split("\n=== ").skip(1) {
        let mut lines = block.lines();
        let name = lines.next().unwrap().to_string();
        let mut query = Vec::new();
        let mut expected = Vec::new();
        let mut in_expected = false;
        for l in lines {
            if l.starts_with('#') {
                continue;
            }
            if l == "----" {
                in_expected = true;
            } else if in_expected {
                if !l.is_empty() {
                    expected.push(l.to_string());
                }
            } else if let Some((k, v)) = l.split_once(": ") {
                query.push((k.to_string(), v.to_string()));
            }
        }
        cases.push(Case {
            name,
            query,
            expected,
        });
    }
    cases
}

/// `None` as the scope: a channel benchmark.
fn build(case: &Case) -> Result<(Query, Option<Audience>), EngineError> {
    let mut q = Query::default();
    let mut scope = Some(Audience::everyone());
    for (k, v) in &case.query {
        match k.as_str() {
            "metrics" => q.metrics = v.split(',').map(str::to_string).collect(),
            "by" => q.by = v.split(',').map(str::to_string).collect(),
            "filter" => q.filters.push(Filter::parse(v)?),
            "period" => q.period = Some(Period::parse(v)?),
            "order" => q.order.push(Order::parse(v)?),
            "limit" => q.limit = Some(v.parse().unwrap()),
            "scope" => {
                scope = match v.split_once(' ') {
                    Some(("partner", id)) => Some(Audience::partner(id.to_string()).unwrap()),
                    Some(("partners", ids)) => Some(Audience::partners(
                        ids.split(',').map(str::to_string).collect::<BTreeSet<_>>(),
                    )),
                    None if v == "benchmark" => None,
                    _ => panic!("{}: scope {v:?}", case.name),
                }
            }
            other => panic!("{}: unknown key {other}", case.name),
        }
    }
    Ok((q, scope))
}

/// Two cells agree when equal as text, or as numbers within 1e-9 relative (floating ratios).
fn same(a: &str, b: &str) -> bool {
    a == b
        || matches!((a.parse::<f64>(), b.parse::<f64>()), (Ok(x), Ok(y)) if (x - y).abs() <= 1e-9 * x.abs().max(y.abs()))
}

/// One case's answer as lines of text (header first), or its error.
async fn answer(engine: &Engine, ctx: &prism_engine::Session, case: &Case) -> Vec<String> {
    match build(case) {
        Err(e) => vec![format!("error: {e}")],
        Ok((q, scope)) => match match &scope {
            Some(scope) => engine.run(ctx, &q, scope).await,
            None => engine.run_benchmark(ctx, &q).await,
        } {
            Err(e) => vec![format!("error: {e}")],
            Ok(r) => {
                let mut lines = vec![
                    r.columns
                        .iter()
                        .map(|c| c.name.clone())
                        .collect::<Vec<_>>()
                        .join(","),
                ];
                lines.extend(r.formatted_rows().iter().map(|cells| cells.join(",")));
                lines
            }
        },
    }
}

/// Every case is answered twice — from the rollups the load built, and from the base tables
/// only — and both answers must be the expected one, to the last character.
#[tokio::test]
async fn query_cases() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = target::warehouse(&tmp.path().join("data"));
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny");
    wh.load(
        &LoadOptions::upsert(
            fixture,
            prism_engine::Engine::new(prism_model::Model::shipped()).rollup_builds(),
        ),
        &NoProgress,
    )
    .await
    .unwrap();
    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    let with_rollups = Engine::new(Model::shipped());
    let base_only = Engine::new(Model::shipped()).without_rollups();

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut failures = Vec::new();
    let mut count = 0;
    let (mut from_rollups, mut from_base) = (0, 0);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for case in parse_cases(&text) {
            count += 1;
            let rolled = answer(&with_rollups, &ctx, &case).await;
            let based = answer(&base_only, &ctx, &case).await;
            if let Ok((q, Some(scope))) = build(&case)
                && let Ok(c) = with_rollups.compile_in(&ctx, &q, &scope)
            {
                from_rollups += c.rollups.iter().filter(|r| r.rollup.is_some()).count();
                from_base += c.rollups.iter().filter(|r| r.rollup.is_none()).count();
            }
            if rolled != based {
                failures.push(format!(
                    "{} / {}: rollups and base tables differ:\n  rollups:\n    {}\n  base:\n    {}",
                    path.file_name().unwrap().to_string_lossy(),
                    case.name,
                    rolled.join("\n    "),
                    based.join("\n    ")
                ));
            }
            let got = rolled;
            let agree = got.len() == case.expected.len()
                && got.iter().zip(&case.expected).all(|(g, e)| {
                    let (gs, es): (Vec<&str>, Vec<&str>) =
                        (g.split(',').collect(), e.split(',').collect());
                    gs.len() == es.len() && gs.iter().zip(&es).all(|(a, b)| same(a, b))
                });
            if !agree {
                failures.push(format!(
                    "{} / {}:\n  expected:\n    {}\n  got:\n    {}",
                    path.file_name().unwrap().to_string_lossy(),
                    case.name,
                    case.expected.join("\n    "),
                    got.join("\n    ")
                ));
            }
        }
    }
    assert!(count >= 20, "only {count} cases found");
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The comparison means something only if rollups answered much of the suite, and the base
    // tables the rest.
    assert!(
        from_rollups >= 25 && from_base >= 3,
        "rollups answered {from_rollups} fact aggregations, the base tables {from_base}"
    );
}
