//! Fuzzing the export reader on stable Rust with property tests: arbitrary bytes never make it
//! panic, and in generated files with any mix of line endings and quoted line breaks every bad
//! row is reported on the line an editor shows. Failures proptest finds are kept in
//! `fuzz.proptest-regressions` and run first on every run; `fuzz-corpus/` holds hand-kept cases.

use csv::ByteRecord;
use prism_contract::Entity;
use prism_contract::reader::{FileError, FileReader, IdStatus, KnownIds, Rejection};
use proptest::prelude::*;

/// Every id is known: the fuzzed rows fail on their own fields, not on references.
struct AllKnown;

impl KnownIds for AllKnown {
    fn lookup(&self, _: Entity, _: &str) -> IdStatus {
        IdStatus::Known
    }
    fn has_value(&self, _: Entity, _: &str, _: &str) -> bool {
        true
    }
}

/// Reads a whole file as a load does; the rejections, or the file's own fault.
fn read(entity: Entity, bytes: &[u8]) -> Result<Vec<Rejection>, FileError> {
    let mut reader = FileReader::new(entity, entity.file_name(), bytes)?;
    let mut validator = reader.validator();
    let mut records = vec![ByteRecord::new(); 7];
    let mut out = Vec::new();
    loop {
        let n = reader.read_chunk(&mut records)?;
        if n == 0 {
            break;
        }
        for (_, faults) in validator.validate_chunk(&records[..n], &AllKnown).rejected {
            out.extend(faults);
        }
    }
    Ok(out)
}

/// The lines of a file as an editor counts them: LF, CRLF or a lone CR each end one.
fn editor_lines(bytes: &[u8]) -> u64 {
    let mut lines = 1;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\n' || (bytes[i] == b'\r' && bytes.get(i + 1) != Some(&b'\n')) {
            lines += 1;
        }
        i += 1;
    }
    lines
}

const PARTNERS_HEADER: &str =
    "partner_id,partner_name,tier,partner_type,region,country,joined_on,status";

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Any bytes after a valid header: no panic, and every rejection is on a line of the file.
    #[test]
    fn any_bytes_are_read_without_a_panic_and_located_within_the_file(body in proptest::collection::vec(any::<u8>(), 0..600), entity in 0usize..7) {
        let entity = Entity::ALL[entity];
        let header = entity.columns().iter().map(|c| c.name).collect::<Vec<_>>().join(",");
        let mut bytes = format!("{header}\n").into_bytes();
        bytes.extend_from_slice(&body);
        if let Ok(rejections) = read(entity, &bytes) {
            let lines = editor_lines(&bytes);
            for r in rejections {
                prop_assert!(r.line >= 2 && r.line <= lines, "line {} of {lines}: {r}", r.line);
            }
        }
    }

    /// Any bytes at all, header included: a clear error or rows, never a panic.
    #[test]
    fn any_file_is_read_without_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), entity in 0usize..7) {
        let _ = read(Entity::ALL[entity], &bytes);
    }

    /// Partners' rows with names holding quoted line breaks, each line ended by LF or CRLF at
    /// random, the last maybe not at all, and one row with an unknown tier: it is reported on
    /// the line where that row starts, counted here from what was written.
    #[test]
    fn a_bad_row_is_located_on_its_line_whatever_the_endings(
        rows in proptest::collection::vec((any::<bool>(), 0usize..3, any::<bool>()), 1..12),
        bad in any::<prop::sample::Index>(),
        last_ending in any::<bool>(),
    ) {
        let bad = bad.index(rows.len());
        let ending = |crlf: bool| if crlf { "\r\n" } else { "\n" };
        let mut text = format!("{PARTNERS_HEADER}{}", ending(rows[0].0));
        let mut line = 2u64;
        let mut expected = 0u64;
        for (i, (crlf, breaks, crlf_inside)) in rows.iter().enumerate() {
            if i == bad {
                expected = line;
            }
            // A name over `breaks` + 1 lines, its breaks LF or CRLF.
            let name: Vec<String> = (0..=*breaks).map(|k| format!("part {k}")).collect();
            let tier = if i == bad { "Bronze" } else { "Gold" };
            text.push_str(&format!("P-{i},\"{}\",{tier},Reseller,EMEA,,,Active", name.join(ending(*crlf_inside))));
            line += 1 + *breaks as u64;
            if i + 1 < rows.len() || last_ending {
                text.push_str(ending(*crlf));
            }
        }
        let rejections = read(Entity::Partners, text.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(rejections.len(), 1, "{:?}", rejections);
        prop_assert_eq!(rejections[0].line, expected, "{}", text.escape_debug());
        prop_assert_eq!(rejections[0].column.as_deref(), Some("tier"));
    }
}

/// Cases kept by hand from earlier failures: each file in `fuzz-corpus/` is read without a
/// panic, and one named `*.line-N.csv` has its first rejection on line N.
#[test]
fn the_kept_corpus_reads_as_it_should() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let entity = Entity::ALL
            .into_iter()
            .find(|e| name.starts_with(e.file_name().trim_end_matches(".csv")))
            .unwrap_or_else(|| panic!("{name}: no entity"));
        let result = read(entity, &std::fs::read(&path).unwrap());
        if let Some(n) = name
            .split(".line-")
            .nth(1)
            .and_then(|t| t.trim_end_matches(".csv").parse::<u64>().ok())
        {
            let rejections = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                rejections.first().map(|r| r.line),
                Some(n),
                "{name}: {rejections:?}"
            );
        }
        seen += 1;
    }
    assert!(seen >= 3, "the corpus has {seen} files");
}
