//! The shipped sample emails give the outcomes `samples/README.md` promises.

use mail_order_bot::domain::{Catalog, DEFAULT_MAX_MESSAGE_BYTES, process_message};

use crate::harness::{SAMPLES, samples_dir};

#[test]
fn samples_give_the_documented_outcomes() {
    let dir = samples_dir();
    let catalog = Catalog::from_csv_file(&dir.join("catalog.csv")).unwrap();
    let mut ids = std::collections::HashSet::new();
    for (file, reason) in SAMPLES {
        let raw = std::fs::read(dir.join(file)).unwrap();
        let order = process_message(&raw, &catalog, DEFAULT_MAX_MESSAGE_BYTES, None);
        assert_eq!(
            order.reason.map(|r| r.to_string()).as_deref(),
            reason,
            "{file}"
        );
        if reason.is_none() {
            assert!(!order.lines.is_empty() && order.total_cents > 0, "{file}");
        }
        assert!(
            ids.insert(order.message_id),
            "{file}: message ids must be unique"
        );
    }
    let count = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "eml")
        })
        .count();
    assert_eq!(
        count,
        SAMPLES.len(),
        "every sample is listed here and in the README"
    );
}
