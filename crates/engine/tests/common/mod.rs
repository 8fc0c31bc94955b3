//! What several engine tests start from: a generated export, loaded into a fresh warehouse.

use std::path::PathBuf;

use prism_engine::Engine;
use prism_model::Model;
use prism_warehouse::{LoadMode, LoadOptions, NoProgress, Warehouse};

/// An export generated at `scale` with `seed` (its folder, kept with the temporary folder) and a
/// warehouse that loaded it, with the shipped model's rollups or none.
#[allow(dead_code)] // a helper of the test files over generated data, unused by the others
pub async fn generated(
    scale: f64,
    seed: u64,
    rollups: bool,
) -> (tempfile::TempDir, PathBuf, Warehouse) {
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join("export");
    prism_generator::generate(&prism_generator::GenerateConfig {
        out: export.clone(),
        scale,
        seed,
        partners: None,
        customers: None,
    })
    .unwrap();
    let wh = Warehouse::open(tmp.path().join("data")).unwrap();
    let rollups = if rollups {
        Engine::new(Model::shipped()).rollup_builds()
    } else {
        Vec::new()
    };
    wh.load(
        &LoadOptions {
            export_dir: export.clone(),
            mode: LoadMode::Upsert,
            quarantine: false,
            rollups,
        },
        &NoProgress,
    )
    .await
    .unwrap();
    (tmp, export, wh)
}

/// fixtures/tiny (the hand-computed export) loaded into a fresh warehouse, without rollups,
/// and a session over it.
#[allow(dead_code)] // a helper of the test files that load the fixture, unused by the others
pub async fn tiny() -> (tempfile::TempDir, std::sync::Arc<prism_engine::Session>) {
    let tmp = tempfile::tempdir().unwrap();
    let wh = Warehouse::open(tmp.path().join("data")).unwrap();
    wh.load(
        &LoadOptions::upsert(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny"),
            Vec::new(),
        ),
        &NoProgress,
    )
    .await
    .unwrap();
    let ctx = wh.snapshot(None).unwrap().session().await.unwrap();
    (tmp, ctx)
}

/// fixtures/tiny with some of its files written anew (`files`: name and text), loaded with the
/// shipped model's rollups into a warehouse in `dir`.
#[allow(dead_code)] // a helper of the test files that change the fixture, unused by the others
pub async fn tiny_with(dir: &std::path::Path, files: &[(&str, &str)]) -> Warehouse {
    let export = dir.join("export");
    std::fs::create_dir_all(&export).unwrap();
    let tiny = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny");
    for f in std::fs::read_dir(&tiny).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "csv") {
            std::fs::copy(&f, export.join(f.file_name().unwrap())).unwrap();
        }
    }
    for (name, text) in files {
        std::fs::write(export.join(name), text).unwrap();
    }
    let wh = Warehouse::open(dir.join("data")).unwrap();
    wh.load(
        &LoadOptions::upsert(export, Engine::new(Model::shipped()).rollup_builds()),
        &NoProgress,
    )
    .await
    .unwrap();
    wh
}

/// The text of a file of fixtures/tiny with `line` added at its end.
#[allow(dead_code)] // a helper of the test files that change the fixture, unused by the others
pub fn tiny_file_and(name: &str, line: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/tiny")
        .join(name);
    let mut text = std::fs::read_to_string(path).unwrap();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    text
}
