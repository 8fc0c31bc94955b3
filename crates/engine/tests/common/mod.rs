//! What several engine tests start from: a generated export, loaded into a fresh warehouse.

use std::path::PathBuf;

use prism_engine::Engine;
use prism_model::Model;
use prism_warehouse::{LoadMode, LoadOptions, NoProgress, Warehouse};

/// An export generated at `scale` with `seed` (its folder, kept with the temporary folder) and a
/// warehouse that loaded it, with the shipped model's rollups or none.
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
