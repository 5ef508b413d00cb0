//! `docs/writing-an-app.md` walks through this crate. Its code blocks are not copies that
//! can drift: each block marked `<!-- file: PATH -->` is a piece of PATH (relative to this
//! crate), and the pieces of one file, in order and joined by one blank line, must make
//! the whole file. The file is compiled and tested here, so the tutorial's code is too.

use std::collections::BTreeMap;
use std::path::Path;

const MARKER: &str = "<!-- file: ";

/// Each file as the doc shows it: its pieces, in document order, joined by a blank line.
fn pieces(doc: &str) -> BTreeMap<String, String> {
    let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim().strip_prefix(MARKER) else {
            continue;
        };
        let path = rest.trim_end_matches("-->").trim().to_owned();
        let fence = lines.next().unwrap_or_default();
        assert!(
            fence.starts_with("```"),
            "{MARKER}{path} --> must be followed by a code block, found {fence:?}"
        );
        let mut body = String::new();
        for line in lines.by_ref() {
            if line.starts_with("```") {
                break;
            }
            body.push_str(line);
            body.push('\n');
        }
        files.entry(path).or_default().push(body);
    }
    files
        .into_iter()
        .map(|(path, pieces)| (path, pieces.join("\n")))
        .collect()
}

#[test]
fn the_tutorial_shows_exactly_the_code_of_this_crate() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc_path = crate_dir.join("../../docs/writing-an-app.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let files = pieces(&doc);
    for expected in ["Cargo.toml", "src/lib.rs", "src/main.rs"] {
        assert!(
            files.contains_key(expected),
            "the tutorial shows no part of {expected}"
        );
    }
    for (path, shown) in &files {
        let actual = std::fs::read_to_string(crate_dir.join(path)).unwrap();
        if *shown != actual {
            let line = shown
                .lines()
                .zip(actual.lines())
                .position(|(a, b)| a != b)
                .map_or_else(
                    || shown.lines().count().min(actual.lines().count()) + 1,
                    |i| i + 1,
                );
            panic!(
                "docs/writing-an-app.md shows {path} differently from the file, from line {line} of the file on; \
                 copy the file's text into the doc's `{MARKER}{path} -->` blocks"
            );
        }
    }
}

#[test]
fn main_stays_under_100_lines() {
    let main = include_str!("../../src/main.rs");
    assert!(
        main.lines().count() < 100,
        "the worked example grew too big"
    );
}
