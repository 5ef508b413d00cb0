//! The order-line grammar and the CSV reader.
//!
//! A body line is an order line when the whole line (after an optional `-`, `*` or `•`
//! bullet) is `SKU x QTY`, `QTY x SKU`, `SKU: QTY`, or the same with `X`, `×` or `*` as
//! separator. A SKU is 2 to 32 letters, digits and `-` (compared upper-case); a quantity is
//! a whole number. A number that is not whole (`2.5`, `-1`) still makes an order line, with
//! an invalid quantity, so the customer hears about it instead of the line vanishing.
//!
//! Reading stops at a signature line (`-- `, or `--` as many clients trim it) and at an
//! Outlook `-----Original Message-----` header; quoted lines (`>`) are skipped; a body line
//! `PO: <ref>` is a reference, not an order for SKU `PO`. A summary line (`Total: 5`,
//! `Subtotal 12`, `Items: 3`: its first word is one of [`SUMMARY_WORDS`]) is not an order
//! line either, in a body or as a CSV/XLSX row's SKU.
//!
//! When both sides are all digits (`10 x 20`), the line is read as `SKU x QTY` and keeps
//! the `QTY x SKU` reading as an alternative; the catalog decides later.

/// One requested line, before the catalog is consulted.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LineItem {
    /// The SKU, upper-case.
    pub sku: String,
    /// The quantity when it is a whole number (saturating), `None` when it is not.
    pub quantity: Option<u64>,
    /// The other reading of an ambiguous all-digit line.
    pub alternative: Option<(String, Option<u64>)>,
}

/// Extracts the order lines of a body text, at most `limit` of them: a caller that
/// allows n lines asks for n + 1 to learn that there are too many, without holding a
/// line item for every line of a huge body.
pub fn parse_order_lines(text: &str, limit: usize) -> Vec<LineItem> {
    let mut items = Vec::new();
    for raw_line in text.lines() {
        if items.len() >= limit {
            break;
        }
        let line = raw_line.trim_end();
        if line == "--" {
            break;
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with('>') {
            continue;
        }
        if trimmed.eq_ignore_ascii_case("-----original message-----") {
            break;
        }
        if let Some(item) = parse_line(trimmed) {
            items.push(item);
        }
    }
    items
}

/// First words that make a line a summary of the order, not an order line (any case).
pub const SUMMARY_WORDS: [&str; 5] = ["total", "subtotal", "sum", "items", "qty"];

/// True when the line's first word (its leading run of SKU characters) is a summary word.
fn is_summary_line(s: &str) -> bool {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or(s.len());
    let first = &s[..end];
    SUMMARY_WORDS.iter().any(|w| first.eq_ignore_ascii_case(w))
}

/// Parses one line; `None` when it is not an order line.
pub fn parse_line(line: &str) -> Option<LineItem> {
    let mut s = line.trim();
    if let Some(rest) = s.strip_prefix(['-', '*', '•']) {
        s = rest.trim_start();
    }
    if s.is_empty() || is_summary_line(s) {
        return None;
    }
    if let Some((left, right)) = s.split_once(':') {
        let (left, right) = (left.trim(), right.trim());
        if left.eq_ignore_ascii_case("po") || !is_sku(left) || !is_quantity_like(right) {
            return None;
        }
        return Some(LineItem {
            sku: left.to_ascii_uppercase(),
            quantity: whole(right),
            alternative: None,
        });
    }
    if s.contains('#') && s.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("po")) {
        return None;
    }
    let (left, right) = split_on_separator(s)?;
    resolve(left, right)
}

/// Finds the two sides of `A <sep> B`.
fn split_on_separator(s: &str) -> Option<(&str, &str)> {
    for sep in ['×', '*'] {
        if let Some((l, r)) = s.split_once(sep) {
            let (l, r) = (l.trim(), r.trim());
            if single_token(l) && single_token(r) {
                return Some((l, r));
            }
            return None;
        }
    }
    let tokens: Vec<&str> = s.split_whitespace().collect();
    match tokens.as_slice() {
        [l, x, r] if x.eq_ignore_ascii_case("x") => Some((l, r)),
        // "3x WIDGET"
        [l, r] if l.len() > 1 && l.ends_with(['x', 'X']) && is_digits(&l[..l.len() - 1]) => {
            Some((&l[..l.len() - 1], r))
        }
        // "WIDGET x3"
        [l, r] if r.len() > 1 && r.starts_with(['x', 'X']) && is_quantity_like(&r[1..]) => {
            Some((l, &r[1..]))
        }
        _ => None,
    }
}

fn resolve(left: &str, right: &str) -> Option<LineItem> {
    let sku_qty = is_sku(left) && is_quantity_like(right);
    let qty_sku = is_quantity_like(left) && is_sku(right);
    match (sku_qty, qty_sku) {
        (true, true) => {
            // Both readings fit: a SKU with a letter is the SKU; all digits stay ambiguous.
            if is_digits(left) && !is_digits(right) {
                return Some(item(right, left));
            }
            if !is_digits(left) && is_digits(right) {
                return Some(item(left, right));
            }
            let mut primary = item(left, right);
            primary.alternative = Some((right.to_ascii_uppercase(), whole(left)));
            Some(primary)
        }
        (true, false) => Some(item(left, right)),
        (false, true) => Some(item(right, left)),
        (false, false) => None,
    }
}

fn item(sku: &str, qty: &str) -> LineItem {
    LineItem {
        sku: sku.to_ascii_uppercase(),
        quantity: whole(qty),
        alternative: None,
    }
}

fn single_token(s: &str) -> bool {
    !s.is_empty() && !s.contains(char::is_whitespace)
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// 2 to 32 of ASCII letters, digits and `-`, with at least one letter or digit.
pub fn is_sku(s: &str) -> bool {
    (2..=32).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_alphanumeric())
}

/// A number: optional sign, digits, optional fraction (`.` or `,`).
fn is_quantity_like(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (int, frac) = match s.split_once(['.', ',']) {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    is_digits(int) && frac.is_none_or(is_digits)
}

/// The value of a whole, non-negative number (saturating), `None` otherwise.
fn whole(s: &str) -> Option<u64> {
    let s = s.strip_prefix('+').unwrap_or(s);
    if !is_digits(s) {
        return None;
    }
    Some(s.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add((b - b'0') as u64)
    }))
}

/// Reads the order lines of a CSV attachment: the first non-empty row is the header, which
/// must name a `sku` column and a `qty` or `quantity` column (any case; other columns are
/// ignored). The delimiter is `,`, `;` or tab, whichever the header uses. Rows without a
/// SKU are skipped. `None` when the header does not fit (the attachment is not an order).
///
/// RFC 4180 quoting (delimiters, newlines and `""` inside quotes) is the `csv` crate's.
/// Rows are read one at a time into one reused record and at most `limit` items are
/// kept (as for [`parse_order_lines`]), so the memory is bounded whatever the size of
/// the attachment: materialising every row as strings cost ~35 times the CSV.
pub fn parse_csv_order(text: &str, limit: usize) -> Option<Vec<LineItem>> {
    let text = text.trim_start_matches('\u{feff}');
    let header_line = text.lines().find(|l| !l.trim().is_empty())?;
    let delimiter = [b',', b';', b'\t']
        .into_iter()
        .fold((b',', 0), |best, d| {
            let n = header_line.bytes().filter(|&b| b == d).count();
            if n > best.1 { (d, n) } else { best }
        })
        .0;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    let mut record = csv::ByteRecord::new();
    if !next_row(&mut reader, &mut record) {
        return None;
    }
    let (sku_col, qty_col) = header_columns(record.iter().enumerate())?;
    let mut items = Vec::new();
    while items.len() < limit && next_row(&mut reader, &mut record) {
        let cell = |at: usize| {
            record
                .get(at)
                .and_then(|c| std::str::from_utf8(c.trim_ascii()).ok())
                .unwrap_or("")
        };
        items.extend(table_row(cell(sku_col), cell(qty_col)));
    }
    Some(items)
}

/// The line item of one spreadsheet row (CSV or XLSX), from its SKU and quantity cells:
/// `None` when the SKU cell holds no SKU (blank, a note) or a summary word (`Total`).
pub fn table_row(sku: &str, quantity: &str) -> Option<LineItem> {
    let (sku, quantity) = (sku.trim(), quantity.trim());
    if !is_sku(sku) || is_summary_line(sku) {
        return None;
    }
    Some(LineItem {
        sku: sku.to_ascii_uppercase(),
        quantity: whole(quantity),
        alternative: None,
    })
}

/// Finds the SKU and quantity columns in a header row of `(column, cell)` pairs (names in
/// any case): `(sku, qty)`.
pub fn header_columns<'h>(
    header: impl Iterator<Item = (usize, &'h [u8])> + Clone,
) -> Option<(usize, usize)> {
    let column = |names: &[&str]| {
        header.clone().find_map(|(at, h)| {
            let h = h.trim_ascii();
            names
                .iter()
                .any(|n| h.eq_ignore_ascii_case(n.as_bytes()))
                .then_some(at)
        })
    };
    Some((column(&["sku"])?, column(&["qty", "quantity"])?))
}

/// Reads the next row with a non-blank cell into `record`; false at the end. The reader
/// works on bytes and is flexible about the number of cells, so the only error left is
/// one it cannot get past: the rows end there, like a damaged part read as far as it goes.
fn next_row(reader: &mut csv::Reader<&[u8]>, record: &mut csv::ByteRecord) -> bool {
    loop {
        match reader.read_byte_record(record) {
            Ok(true) if record.iter().all(|c| c.trim_ascii().is_empty()) => continue,
            Ok(true) => return true,
            Ok(false) | Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Option<(String, Option<u64>)> {
        parse_line(line).map(|i| (i.sku, i.quantity))
    }

    #[test]
    fn line_forms() {
        let w = |q| Some(("WIDGET-1".to_owned(), Some(q)));
        assert_eq!(one("WIDGET-1 x 3"), w(3));
        assert_eq!(one("widget-1 X 3"), w(3));
        assert_eq!(one("WIDGET-1: 3"), w(3));
        assert_eq!(one("WIDGET-1:3"), w(3));
        assert_eq!(one("3 x widget-1"), w(3));
        assert_eq!(one("3 * WIDGET-1"), w(3));
        assert_eq!(one("3*WIDGET-1"), w(3));
        assert_eq!(one("WIDGET-1 × 3"), w(3));
        assert_eq!(one("- WIDGET-1 x 3"), w(3));
        assert_eq!(one("* 3 x WIDGET-1"), w(3));
        assert_eq!(one("• WIDGET-1: 3"), w(3));
        assert_eq!(one("3x WIDGET-1"), w(3));
        assert_eq!(one("WIDGET-1 x3"), w(3));
        assert_eq!(one("WIDGET-1 x 2.5"), Some(("WIDGET-1".into(), None)));
        assert_eq!(one("WIDGET-1: -2"), Some(("WIDGET-1".into(), None)));
        assert_eq!(
            one("WIDGET-1 x 99999999999999999999999"),
            Some(("WIDGET-1".into(), Some(u64::MAX)))
        );
    }

    #[test]
    fn not_order_lines() {
        for line in [
            "Hello team,",
            "Please send the following:",
            "Thanks, Bob",
            "Tel: +49 30 1234",
            "PO: 4711",
            "PO#4711",
            "A x 3",
            "WIDGET-1 x BOLT",
            "see you at 5 x",
            "x",
            "",
            "THIS-SKU-IS-FAR-TOO-LONG-TO-BE-A-SKU-AT-ALL x 3",
            "WIDGET 1 x 3",
        ] {
            assert_eq!(parse_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn ambiguous_digits_keep_both_readings() {
        let item = parse_line("10 x 20").unwrap_or_else(|| unreachable!());
        assert_eq!(item.sku, "10");
        assert_eq!(item.quantity, Some(20));
        assert_eq!(item.alternative, Some(("20".to_owned(), Some(10))));
        // One side too short to be a SKU: no ambiguity.
        let item = parse_line("5 x 1001").unwrap_or_else(|| unreachable!());
        assert_eq!((item.sku.as_str(), item.quantity), ("1001", Some(5)));
    }

    #[test]
    fn quotes_and_signature() {
        let text = "Hi\n> OLD-1 x 5\nNEW-1 x 1\n-- \nBob\nSIG-1 x 2\n";
        let items = parse_order_lines(text, usize::MAX);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].sku, "NEW-1");
        let text = "A-1 x 1\r\n-----Original Message-----\r\nB-1 x 2\r\n";
        assert_eq!(parse_order_lines(text, usize::MAX).len(), 1);
    }

    #[test]
    fn csv_with_header_and_quotes() {
        let csv = "\u{feff}Line;SKU;Description;Quantity\r\n1;ab-1;\"Bolt; 5mm\";10\r\n\r\n2;CD-2;\"multi\nline\";x\r\n3;;empty;4\r\n";
        let items = parse_csv_order(csv, usize::MAX).unwrap_or_default();
        assert_eq!(items.len(), 2);
        assert_eq!(
            (items[0].sku.as_str(), items[0].quantity),
            ("AB-1", Some(10))
        );
        assert_eq!((items[1].sku.as_str(), items[1].quantity), ("CD-2", None));
        assert_eq!(parse_csv_order("name,price\nx,1\n", usize::MAX), None);
    }

    #[test]
    fn summary_lines_are_not_order_lines() {
        for line in [
            "Total: 5",
            "TOTAL x 5",
            "total 5",
            "Subtotal 12",
            "subtotal: 12",
            "Sum: 7",
            "SUM * 7",
            "Items: 3",
            "items x 3",
            "Qty: 4",
            "QTY × 4",
            "- Total: 5",
            "* Items: 2",
            "Total:5",
        ] {
            assert_eq!(one(line), None, "{line:?}");
        }
        // A SKU that merely starts with a summary word is still a SKU.
        assert_eq!(one("TOTAL-1 x 2"), Some(("TOTAL-1".to_owned(), Some(2))));
        assert_eq!(one("ITEMS2: 2"), Some(("ITEMS2".to_owned(), Some(2))));
        assert_eq!(one("SUMO-9 x 1"), Some(("SUMO-9".to_owned(), Some(1))));
        let text = "A-1 x 2\nB-2 x 3\nTotal: 5\nItems: 2\n";
        let skus: Vec<String> = parse_order_lines(text, usize::MAX)
            .into_iter()
            .map(|i| i.sku)
            .collect();
        assert_eq!(skus, ["A-1", "B-2"]);
        let csv = "sku,qty\nA-1,2\nTotal,2\nsubtotal,2\n";
        let items = parse_csv_order(csv, usize::MAX).unwrap_or_default();
        assert_eq!(items.len(), 1);
    }
}
