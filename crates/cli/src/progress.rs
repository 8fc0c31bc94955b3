//! Load progress: bars on a terminal, plain lines otherwise (logs, CI, pipes).

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use prism_warehouse::LoadProgress;

pub struct Reporter {
    terminal: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Reporter {
    pub fn new() -> Reporter {
        Reporter {
            terminal: std::io::stderr().is_terminal(),
            bar: Mutex::new(None),
        }
    }

    pub fn clear(&self) {
        if let Some(bar) = self.bar.lock().expect("progress lock").take() {
            bar.finish_and_clear();
        }
    }
}

impl LoadProgress for Reporter {
    fn file_started(&self, file: &str, bytes: u64) {
        if self.terminal {
            let bar = ProgressBar::new(bytes).with_message(file.to_string());
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:<26} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
                )
                .expect("template")
                .progress_chars("=> "),
            );
            if let Some(old) = self.bar.lock().expect("progress lock").replace(bar) {
                old.finish_and_clear();
            }
        } else {
            eprintln!("reading {file} ({:.1} MB)", bytes as f64 / 1e6);
        }
    }

    fn file_advanced(&self, _file: &str, bytes_done: u64) {
        if let Some(bar) = self.bar.lock().expect("progress lock").as_ref() {
            bar.set_position(bytes_done);
        }
    }

    fn file_finished(&self, file: &str, rows: u64, rejected: u64) {
        self.clear();
        eprintln!("{file}: {rows} rows read, {rejected} rejected");
    }

    fn step(&self, message: &str) {
        self.clear();
        eprintln!("{message}");
    }
}
