//! `cargo bench -p prism-cli --bench dashboard [-- --scale N --runs N --dir DIR]`: the dashboard
//! benchmark of `prism bench` (Prism against DuckDB over the same data, in the same run), run
//! through the binary cargo just built with the bench profile, so that there is one benchmark
//! and one set of figures, whichever way it is started.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    // Cargo passes `--bench` (and a filter, when one is given) to every bench target; the rest
    // are `prism bench`'s own options.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let has = |flag: &str| {
        args.iter()
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
    };
    let mut command = Command::new(env!("CARGO_BIN_EXE_prism"));
    command.arg("bench").args(&args);
    if !has("--dir") {
        // Kept between runs (the export and its load are reused), out of the source tree.
        command
            .arg("--dir")
            .arg(std::env::temp_dir().join("prism-bench"));
    }
    match command.status() {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("prism bench failed: {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("could not start {}: {e}", env!("CARGO_BIN_EXE_prism"));
            ExitCode::FAILURE
        }
    }
}
