//! XLSX order attachments: the first sheet, read like a CSV attachment (a header row naming
//! `sku` and `qty`/`quantity`, then one line item per row).
//!
//! calamine reads the workbook; two bounds are ours. A spreadsheet is a zip archive, and a
//! few kilobytes of one can inflate to gigabytes, so every member is inflated once into a
//! counter first and a workbook over [`MAX_XLSX_INFLATED_BYTES`] is refused before calamine
//! holds any of it. Cells are then streamed, and reading stops at the line limit. A damaged
//! workbook is read as far as it goes: the rows before the damage count, and the damage is
//! reported so an order with no lines can say why.

use std::borrow::Cow;
use std::io::{Cursor, Read};

use calamine::{DataRef, Reader, Xlsx};

use super::lines::{LineItem, header_columns, table_row};

/// Most bytes the members of one workbook may inflate to, together.
pub const MAX_XLSX_INFLATED_BYTES: u64 = 32 << 20;

/// Most members in one workbook (a real order sheet has about ten).
const MAX_XLSX_MEMBERS: usize = 1_000;

/// What one XLSX attachment gave.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct XlsxRead {
    /// Its line items, at most `limit`; `None` when the first sheet has no header row
    /// naming `sku` and `qty` (it is not an order sheet), or nothing could be read.
    pub lines: Option<Vec<LineItem>>,
    /// The workbook is damaged (not a zip, a broken member, too big inflated); `lines`
    /// holds what was read before the damage.
    pub damaged: bool,
}

/// Reads the order lines of the first sheet of an XLSX workbook, at most `limit`.
pub fn parse_xlsx_order(bytes: &[u8], limit: usize) -> XlsxRead {
    if !inflates_within(bytes, MAX_XLSX_INFLATED_BYTES) {
        return XlsxRead {
            lines: None,
            damaged: true,
        };
    }
    let Ok(mut workbook) = Xlsx::new(Cursor::new(bytes)) else {
        return XlsxRead {
            lines: None,
            damaged: true,
        };
    };
    let Some(first) = workbook.sheet_names().into_iter().next() else {
        return XlsxRead {
            lines: None,
            damaged: true,
        };
    };
    let Ok(mut cells) = workbook.worksheet_cells_reader(&first) else {
        return XlsxRead {
            lines: None,
            damaged: true,
        };
    };

    let mut rows = RowReader::default();
    let mut damaged = false;
    loop {
        match cells.next_cell() {
            Ok(Some(cell)) => {
                let (row, column) = cell.get_position();
                if rows.push(row, column as usize, cell.get_value(), limit) {
                    break;
                }
            }
            Ok(None) => break,
            Err(_) => {
                damaged = true;
                break;
            }
        }
    }
    rows.finish(limit);
    XlsxRead {
        lines: rows.columns.map(|_| rows.items),
        damaged,
    }
}

/// Gathers cells into rows: the first row with a cell is the header, each later row one
/// line item.
#[derive(Default)]
struct RowReader {
    /// The header row's cells, until the header is read.
    header: Vec<(usize, String)>,
    /// `(sku, qty)` columns once the header named both.
    columns: Option<(usize, usize)>,
    /// True once the header row is over (found or not).
    header_done: bool,
    row: Option<u32>,
    sku: String,
    qty: String,
    items: Vec<LineItem>,
}

impl RowReader {
    /// Takes one cell; true when reading can stop (no order header, or `limit` items).
    fn push(&mut self, row: u32, column: usize, value: &DataRef<'_>, limit: usize) -> bool {
        let text = cell_text(value);
        if text.trim().is_empty() {
            return false;
        }
        if self.row != Some(row) {
            if self.end_row(limit) {
                return true;
            }
            self.row = Some(row);
        }
        if !self.header_done {
            self.header.push((column, text.into_owned()));
        } else if let Some((sku_col, qty_col)) = self.columns {
            if column == sku_col {
                self.sku = text.into_owned();
            } else if column == qty_col {
                self.qty = text.into_owned();
            }
        }
        false
    }

    /// Ends the current row; true when reading can stop.
    fn end_row(&mut self, limit: usize) -> bool {
        if self.row.is_none() {
            return false;
        }
        if !self.header_done {
            self.header_done = true;
            let cells = self.header.iter().map(|(at, h)| (*at, h.as_bytes()));
            self.columns = header_columns(cells);
            self.header = Vec::new();
            return self.columns.is_none();
        }
        let (sku, qty) = (std::mem::take(&mut self.sku), std::mem::take(&mut self.qty));
        if let Some(item) = table_row(&sku, &qty) {
            self.items.push(item);
        }
        self.items.len() >= limit
    }

    fn finish(&mut self, limit: usize) {
        self.end_row(limit);
        self.items.truncate(limit);
    }
}

/// A cell as text: numbers as written (a whole float without its `.0`), strings as they
/// are; dates, booleans and errors are never a SKU or a quantity.
fn cell_text<'v>(value: &'v DataRef<'_>) -> Cow<'v, str> {
    match value {
        DataRef::String(s) | DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => Cow::Borrowed(s),
        DataRef::SharedString(s) => Cow::Borrowed(s),
        DataRef::Int(i) => Cow::Owned(i.to_string()),
        DataRef::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => {
            Cow::Owned(format!("{}", *f as i64))
        }
        DataRef::Float(f) => Cow::Owned(f.to_string()),
        _ => Cow::Borrowed(""),
    }
}

/// True when `bytes` is a zip archive whose members inflate to at most `cap` bytes in all.
/// Each member is inflated into a counter that stops one byte past the budget, so the
/// check costs at most `cap` bytes of inflation whatever the archive claims.
fn inflates_within(bytes: &[u8], cap: u64) -> bool {
    let Ok(mut archive) = zip::ZipArchive::new(Cursor::new(bytes)) else {
        return false;
    };
    if archive.len() > MAX_XLSX_MEMBERS {
        return false;
    }
    let mut total: u64 = 0;
    for at in 0..archive.len() {
        let Ok(member) = archive.by_index(at) else {
            return false;
        };
        let budget = cap - total;
        match std::io::copy(&mut member.take(budget + 1), &mut std::io::sink()) {
            Ok(n) if n <= budget => total += n,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write as _;

    use super::*;

    const MAIN: &str = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
    const RELS: &str = "http://schemas.openxmlformats.org/package/2006/relationships";
    const DOC: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";

    /// A workbook whose first sheet is `sheet_xml` (the `<sheetData>` content), plus any
    /// extra members (deflated, or stored when `stored`: deflating in a debug build is slow).
    fn workbook_with(sheet_data: &str, extra: &[(&str, &[u8])], stored: bool) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let deflated = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        let mut put = |name: &str, body: &[u8], options| {
            zip.start_file(name, options).unwrap();
            zip.write_all(body).unwrap();
        };
        let put_xml = |put: &mut dyn FnMut(&str, &[u8], zip::write::SimpleFileOptions),
                       name: &str,
                       body: &str| put(name, body.as_bytes(), deflated);
        put_xml(
            &mut put,
            "[Content_Types].xml",
            r#"<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/></Types>"#,
        );
        put_xml(
            &mut put,
            "_rels/.rels",
            &format!(
                r#"<Relationships xmlns="{RELS}"><Relationship Id="rId1" Type="{DOC}/officeDocument" Target="xl/workbook.xml"/></Relationships>"#
            ),
        );
        put_xml(
            &mut put,
            "xl/workbook.xml",
            &format!(
                r#"<workbook xmlns="{MAIN}" xmlns:r="{DOC}"><sheets><sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>"#
            ),
        );
        put_xml(
            &mut put,
            "xl/_rels/workbook.xml.rels",
            &format!(
                r#"<Relationships xmlns="{RELS}"><Relationship Id="rId1" Type="{DOC}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#
            ),
        );
        put_xml(
            &mut put,
            "xl/worksheets/sheet1.xml",
            &format!(r#"<worksheet xmlns="{MAIN}"><sheetData>{sheet_data}"#),
        );
        let extra_options = if stored {
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
        } else {
            deflated
        };
        for (name, body) in extra {
            put(name, body, extra_options);
        }
        zip.finish().unwrap().into_inner()
    }

    fn workbook(sheet_data: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
        workbook_with(sheet_data, extra, false)
    }

    fn text(cell: &str, s: &str) -> String {
        format!(r#"<c r="{cell}" t="inlineStr"><is><t>{s}</t></is></c>"#)
    }

    fn number(cell: &str, n: &str) -> String {
        format!(r#"<c r="{cell}"><v>{n}</v></c>"#)
    }

    /// Rows of `(sku, qty)` under a `SKU`/`Qty` header in columns B and D.
    fn order_rows(rows: &[(&str, &str)]) -> String {
        let mut xml = format!(
            r#"<row r="1">{}{}{}</row>"#,
            text("A1", "Line"),
            text("B1", "SKU"),
            text("D1", "Qty")
        );
        for (i, (sku, qty)) in rows.iter().enumerate() {
            let r = i + 2;
            xml.push_str(&format!(
                r#"<row r="{r}">{}{}{}</row>"#,
                number(&format!("A{r}"), &r.to_string()),
                text(&format!("B{r}"), sku),
                number(&format!("D{r}"), qty)
            ));
        }
        xml
    }

    fn complete(rows: &[(&str, &str)]) -> Vec<u8> {
        workbook(
            &format!("{}</sheetData></worksheet>", order_rows(rows)),
            &[],
        )
    }

    fn skus(read: &XlsxRead) -> Vec<(String, Option<u64>)> {
        read.lines
            .iter()
            .flatten()
            .map(|i| (i.sku.clone(), i.quantity))
            .collect()
    }

    #[test]
    fn the_first_sheet_is_read_like_a_csv_attachment() {
        let read = parse_xlsx_order(
            &complete(&[("ab-1", "3"), ("CD-2", "2.5"), ("", "1"), ("Total", "6")]),
            usize::MAX,
        );
        assert!(!read.damaged);
        assert_eq!(
            skus(&read),
            [("AB-1".to_owned(), Some(3)), ("CD-2".to_owned(), None)]
        );
        // Whole numbers stored as floats (`3.0`) are whole quantities.
        let read = parse_xlsx_order(&complete(&[("AB-1", "3.0")]), usize::MAX);
        assert_eq!(skus(&read), [("AB-1".to_owned(), Some(3))]);
    }

    #[test]
    fn a_sheet_without_an_order_header_is_not_an_order() {
        let sheet = format!(
            r#"<row r="1">{}{}</row><row r="2">{}{}</row></sheetData></worksheet>"#,
            text("A1", "name"),
            text("B1", "price"),
            text("A2", "AB-1"),
            number("B2", "3")
        );
        let read = parse_xlsx_order(&workbook(&sheet, &[]), usize::MAX);
        assert_eq!(read, XlsxRead::default());
    }

    #[test]
    fn reading_stops_at_the_limit() {
        let rows: Vec<(String, &str)> = (0..50).map(|i| (format!("SKU-{i}"), "1")).collect();
        let rows: Vec<(&str, &str)> = rows.iter().map(|(s, q)| (s.as_str(), *q)).collect();
        let read = parse_xlsx_order(&complete(&rows), 4);
        assert_eq!(read.lines.map(|l| l.len()), Some(4));
    }

    #[test]
    fn a_damaged_workbook_is_read_as_far_as_it_goes() {
        // The sheet's XML breaks off inside the third row: the rows before it count.
        let broken = format!(
            r#"{}<row r="4"><c r="B4" t="inlineStr"><is><t>EF"#,
            order_rows(&[("AB-1", "1"), ("CD-2", "2")])
        );
        let read = parse_xlsx_order(&workbook(&broken, &[]), usize::MAX);
        assert_eq!(
            skus(&read),
            [("AB-1".to_owned(), Some(1)), ("CD-2".to_owned(), Some(2))]
        );
        // Half an archive, garbage, nothing: damaged, no lines, no panic.
        let whole = complete(&[("AB-1", "1")]);
        for bytes in [
            &whole[..whole.len() / 2],
            b"PK\x03\x04garbage",
            b"",
            &whole[..30],
        ] {
            let read = parse_xlsx_order(bytes, usize::MAX);
            assert!(read.damaged, "{} bytes", bytes.len());
            assert_eq!(read.lines, None);
        }
    }

    #[test]
    fn a_zip_bomb_is_refused_before_it_is_inflated() {
        // 40 MiB of zeros deflate to about 40 KB: over the inflated bound, refused after
        // inflating no more than the bound into a counter.
        let zeros = vec![0u8; 40 << 20];
        let bomb = workbook("</sheetData></worksheet>", &[("xl/media/pad.bin", &zeros)]);
        assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
        let read = parse_xlsx_order(&bomb, usize::MAX);
        assert!(read.damaged);
        assert_eq!(read.lines, None);
        // Just under the bound is fine.
        let pad = vec![0u8; (MAX_XLSX_INFLATED_BYTES / 2) as usize];
        let big = workbook_with(
            &format!("{}</sheetData></worksheet>", order_rows(&[("AB-1", "1")])),
            &[("xl/media/pad.bin", &pad)],
            true,
        );
        assert_eq!(skus(&parse_xlsx_order(&big, usize::MAX)).len(), 1);
    }
}
