//! Every analysis under a partner's and a channel manager's audience, over a generated export:
//! no cell of any table names a partner outside the audience, and asking about such a partner
//! is refused. The same check over the brand owner's audience must find outsiders, so the
//! check itself can fail.

use std::collections::BTreeSet;
use std::path::Path;

use prism_analyses::scorecard::Weights;
use prism_analyses::{AnalysisError, Context, Table};
use prism_engine::{Audience, Engine, Session};
use prism_model::Model;
use prism_warehouse::{LoadOptions, NoProgress, Warehouse};

/// Column `i` of every record of an export's file.
fn column(export: &Path, file: &str, i: usize) -> Vec<String> {
    csv::Reader::from_path(export.join(file))
        .unwrap()
        .records()
        .map(|r| r.unwrap()[i].to_string())
        .collect()
}

/// Every cell of every table the analyses give an audience, its own partner's views included.
async fn every_cell(
    engine: &Engine,
    session: &Session,
    audience: &Audience,
    own: &str,
    product: &str,
) -> Vec<String> {
    let cx = Context {
        engine,
        session,
        audience: audience.clone(),
        period: None,
    };
    let mut tables: Vec<Box<dyn Table>> = vec![
        Box::new(prism_analyses::pareto::pareto(&cx, None).await.unwrap()),
        Box::new(
            prism_analyses::scorecard::scorecard(&cx, Weights::default())
                .await
                .unwrap(),
        ),
        Box::new(
            prism_analyses::underperformers::underperformers(&cx, Weights::default())
                .await
                .unwrap(),
        ),
        Box::new(prism_analyses::risk::risk(&cx).await.unwrap()),
        Box::new(prism_analyses::products::products(&cx, own).await.unwrap()),
        Box::new(
            prism_analyses::benchmarks::benchmarks(&cx, own)
                .await
                .unwrap(),
        ),
    ];
    let potential = prism_analyses::potential::potential(&cx, own, product)
        .await
        .unwrap();
    if let Some(s) = potential.segments.iter().find(|s| s.untapped_customers > 0) {
        let segment = format!("{}/{}", s.industry, s.size_band);
        tables.push(Box::new(potential.targets(&cx, &segment).await.unwrap()));
    }
    tables.push(Box::new(potential));
    tables
        .iter()
        .flat_map(|t| t.rows().into_iter().flatten().map(|v| v.exact()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_analysis_shows_a_partner_outside_the_audience() {
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join("export");
    prism_generator::generate(&prism_generator::GenerateConfig {
        out: export.clone(),
        scale: 0.01,
        seed: 5,
        partners: None,
        customers: None,
    })
    .unwrap();
    let wh = Warehouse::open(tmp.path().join("data")).unwrap();
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
    let engine = Engine::new(Model::shipped());
    let ids = column(&export, "partners.csv", 0);
    let names = column(&export, "partners.csv", 1);
    let product = column(&export, "products.csv", 0)[0].clone();
    assert!(ids.len() >= 10, "{} partners", ids.len());

    let audiences = [
        (Audience::partner(ids[0].clone()).unwrap(), vec![0]),
        (
            Audience::partners([ids[1].clone(), ids[2].clone()]),
            vec![1, 2],
        ),
    ];
    for (audience, inside) in &audiences {
        let outsiders: BTreeSet<&str> = (0..ids.len())
            .filter(|i| !inside.contains(i))
            .flat_map(|i| [ids[i].as_str(), names[i].as_str()])
            .collect();
        let own = &ids[inside[0]];
        let cells = every_cell(&engine, &session, audience, own, &product).await;
        assert!(cells.len() > 50, "{audience}: only {} cells", cells.len());
        let seen: Vec<&String> = cells
            .iter()
            .filter(|c| outsiders.contains(c.as_str()))
            .collect();
        assert!(seen.is_empty(), "{audience} sees {seen:?}");

        // Asking about an outsider by name is refused, not answered with nothing.
        let cx = Context {
            engine: &engine,
            session: &session,
            audience: audience.clone(),
            period: None,
        };
        let outsider = &ids[9];
        let refused = |r: Result<(), AnalysisError>| matches!(r, Err(AnalysisError::Forbidden(_)));
        assert!(refused(
            prism_analyses::products::products(&cx, outsider)
                .await
                .map(drop)
        ));
        assert!(refused(
            prism_analyses::benchmarks::benchmarks(&cx, outsider)
                .await
                .map(drop)
        ));
        assert!(refused(
            prism_analyses::potential::potential(&cx, outsider, &product)
                .await
                .map(drop)
        ));
    }

    // The check can fail: the brand owner's scorecard names partners beyond those two.
    let cells = every_cell(&engine, &session, &Audience::everyone(), &ids[0], &product).await;
    assert!(
        cells.iter().any(|c| *c == ids[9] || *c == names[9]),
        "the brand owner's tables never name {}",
        ids[9]
    );
}
