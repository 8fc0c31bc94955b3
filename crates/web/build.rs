//! Embeds the front-end bundle (`web/dist/app.js`, built by `scripts/build-web`). Without it the
//! binary still builds and serves every page; charts are then not drawn, and their figures are
//! in the tables beside them.

use std::path::Path;

fn main() {
    // Read when the script runs, not when it was compiled: a build folder shared by clones at
    // other paths reuses the compiled script.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let bundle = Path::new(&manifest_dir).join("../../web/dist/app.js");
    println!("cargo:rerun-if-changed={}", bundle.display());
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("app.js");
    let text = std::fs::read_to_string(&bundle)
        .unwrap_or_else(|_| "console.warn('Prism: the chart bundle was not built (scripts/build-web); figures are in the tables');".to_string());
    std::fs::write(out, text).expect("writing the bundle");
}
