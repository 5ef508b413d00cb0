//! Data-driven parser tests: every `tests/corpus/*.eml` has a `*.expected.json` with the
//! order it must give (against `tests/corpus/catalog.csv`). An optional `"_input"` object
//! sets `max_message_bytes` or the source's `oversize` size.
//!
//! `UPDATE_CORPUS=1 cargo test -p mail-order-bot --test it corpus` writes the expected
//! files for new messages (review them before committing); it never runs in CI.

use std::path::{Path, PathBuf};

use mail_order_bot::domain::{Catalog, DEFAULT_MAX_MESSAGE_BYTES, process_message};
use serde_json::Value;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn catalog() -> Catalog {
    Catalog::from_csv_file(&corpus_dir().join("catalog.csv")).unwrap()
}

#[test]
fn corpus_messages_give_the_expected_orders() {
    let catalog = catalog();
    let bless = std::env::var_os("UPDATE_CORPUS").is_some();
    let mut emls: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    emls.sort();
    assert!(
        emls.len() >= 20,
        "corpus went missing: {} messages",
        emls.len()
    );

    let mut failures = Vec::new();
    for eml in &emls {
        let expected_path = eml.with_extension("expected.json");
        let raw = std::fs::read(eml).unwrap();
        let expected: Option<Value> = std::fs::read_to_string(&expected_path)
            .ok()
            .map(|t| serde_json::from_str(&t).unwrap());
        let input = expected.as_ref().and_then(|e| e.get("_input").cloned());
        let max = input
            .as_ref()
            .and_then(|i| i.get("max_message_bytes"))
            .and_then(Value::as_u64)
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        let oversize = input
            .as_ref()
            .and_then(|i| i.get("oversize"))
            .and_then(Value::as_u64);

        let order = process_message(&raw, &catalog, max, oversize);
        let mut actual = serde_json::to_value(&order).unwrap();
        match expected {
            Some(mut expected) => {
                if let Some(obj) = expected.as_object_mut() {
                    obj.remove("_input");
                }
                if actual != expected {
                    failures.push(format!(
                        "{}:\n  expected {expected}\n  actual   {actual}",
                        eml.display()
                    ));
                }
            }
            None if bless => {
                if let Some(i) = input {
                    actual["_input"] = i;
                }
                let text = serde_json::to_string_pretty(&actual).unwrap() + "\n";
                std::fs::write(&expected_path, text).unwrap();
            }
            None => failures.push(format!("{}: no expected file", eml.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_same_message_has_the_same_identity_with_lf_and_crlf() {
    let catalog = catalog();
    let read = |name: &str| std::fs::read(corpus_dir().join(name)).unwrap();
    let lf = process_message(&read("18-no-message-id.eml"), &catalog, u64::MAX, None);
    let crlf = process_message(&read("19-no-message-id-crlf.eml"), &catalog, u64::MAX, None);
    assert!(lf.message_id.starts_with("sha256:"), "{}", lf.message_id);
    assert_eq!(lf.message_id, crlf.message_id);
}

#[test]
fn an_oversized_message_keeps_its_identity_whether_sent_whole_or_as_header() {
    let catalog = catalog();
    let raw = std::fs::read(corpus_dir().join("18-no-message-id.eml")).unwrap();
    let header_end = raw.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
    let whole = process_message(&raw, &catalog, 10, None);
    let header_only = process_message(&raw[..header_end], &catalog, 10, Some(raw.len() as u64));
    assert_eq!(
        whole.reason.map(|r| r.to_string()).as_deref(),
        Some("too_large")
    );
    assert_eq!(
        header_only.reason.map(|r| r.to_string()).as_deref(),
        Some("too_large")
    );
    assert_eq!(whole.message_id, header_only.message_id);
    assert_eq!(whole.customer, "old.client@legacy-mail.example");
}

#[test]
fn hostile_input_never_panics() {
    let catalog = catalog();
    // Every prefix of every corpus message: truncated downloads, cut boundaries.
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "eml") {
            continue;
        }
        let raw = std::fs::read(&path).unwrap();
        for end in (0..raw.len()).step_by(7) {
            let _ = process_message(&raw[..end], &catalog, u64::MAX, None);
        }
    }
    for junk in [
        &b""[..],
        b"\n\n\n",
        b"From:\n\n",
        b"Content-Type: multipart/mixed; boundary=\"\"\n\n--\n--\n",
    ] {
        let order = process_message(junk, &catalog, u64::MAX, None);
        assert!(!order.is_accepted());
    }
}
