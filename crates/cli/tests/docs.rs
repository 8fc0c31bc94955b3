//! The documentation a user reads stands alone and agrees with the program: every link of the
//! README and of `docs/` points at a file of the repository, every command of `prism --help` is
//! in the README, and every flag of `prism serve --help` is in docs/operations.md.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The Markdown files a user reads.
fn documents() -> Vec<PathBuf> {
    let root = root();
    let mut files: Vec<PathBuf> = ["README.md", "ARCHITECTURE.md", "BENCHMARKS.md"]
        .iter()
        .map(|f| root.join(f))
        .collect();
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    files
}

/// The targets of a Markdown text's inline links, `[text](target)`, outside code.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_link_of_the_docs_points_at_a_file_of_the_repository() {
    let root = root();
    let mut broken = Vec::new();
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        for target in links(&text) {
            if target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with("mailto:")
                || target.starts_with('#')
            {
                continue;
            }
            let path = target.split('#').next().unwrap();
            let resolved = doc.parent().unwrap().join(path);
            match resolved.canonicalize() {
                Ok(p) if p.starts_with(&root) => {}
                Ok(_) => broken.push(format!(
                    "{}: {target} is outside the repository",
                    doc.display()
                )),
                Err(_) => broken.push(format!("{}: {target} does not exist", doc.display())),
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    // The test reads links at all: the README links to the docs.
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(links(&readme).iter().any(|l| l.starts_with("docs/")));
}

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_command_and_every_flag_of_serve_is_documented() {
    let root = root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let main = help(&["--help"]);
    let commands: Vec<&str> = main
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 15, "{commands:?}");
    for c in &commands {
        assert!(
            readme.contains(&format!("prism {c}")),
            "`prism {c}` is not in the README"
        );
    }
    let operations = std::fs::read_to_string(root.join("docs/operations.md")).unwrap();
    let serve = help(&["serve", "--help"]);
    let flags: Vec<&str> = serve
        .split_whitespace()
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.trim_end_matches([',', '.', ')', '`']))
        .map(|w| w.split(['=', '[', '<']).next().unwrap())
        .filter(|w| !["--help", "--version"].contains(w))
        .collect();
    assert!(flags.len() >= 15, "{flags:?}");
    for flag in flags {
        assert!(
            operations.contains(&format!("`{flag}")) || operations.contains(&format!("{flag} ")),
            "`{flag}` of `prism serve` is not in docs/operations.md"
        );
    }
}
