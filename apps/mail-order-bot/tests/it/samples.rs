//! The shipped sample emails give the outcomes `samples/README.md` promises.

use std::path::Path;

use mail_order_bot::domain::{Catalog, DEFAULT_MAX_MESSAGE_BYTES, process_message};

#[test]
fn samples_give_the_documented_outcomes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    let catalog = Catalog::from_csv_file(&dir.join("catalog.csv")).unwrap();
    let expect = [
        ("01-accepted-plain.eml", None),
        ("02-accepted-html.eml", None),
        ("03-accepted-csv-attachment.eml", None),
        ("04-accepted-utf8.eml", None),
        (
            "05-rejected-unknown-sku.eml",
            Some("unknown_sku:SPROCKET-9"),
        ),
        (
            "06-rejected-bad-quantity.eml",
            Some("invalid_quantity:GADGET-7"),
        ),
        ("07-rejected-no-order-lines.eml", Some("no_order_lines")),
    ];
    let mut ids = std::collections::HashSet::new();
    for (file, reason) in expect {
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
        expect.len(),
        "every sample is listed here and in the README"
    );
}
