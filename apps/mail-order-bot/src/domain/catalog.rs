//! The catalog: which SKUs exist and what they cost. Built from the inline config list
//! (`[[orders.catalog]]`) or from a CSV file `sku,name,price_cents`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::lines::is_sku;

/// One product.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct CatalogItem {
    /// The SKU (stored upper-case).
    pub sku: String,
    /// A human name.
    #[serde(default)]
    pub name: String,
    /// Unit price in cents.
    pub price_cents: i64,
}

/// Why a catalog could not be built. Messages name the file and line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The file could not be read.
    #[error("cannot read catalog file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A row or entry is wrong.
    #[error("{origin}: {message}")]
    Invalid {
        /// `file:line` or `orders.catalog[index]`.
        origin: String,
        /// What is wrong.
        message: String,
    },
}

/// The SKUs that exist, looked up upper-case.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct Catalog {
    items: Vec<CatalogItem>,
    index: HashMap<String, usize>,
}

impl Catalog {
    /// A catalog from inline items (`[[orders.catalog]]`). Errors name
    /// `orders.catalog[<index>]`.
    pub fn from_items(
        items: impl IntoIterator<Item = CatalogItem>,
    ) -> Result<Catalog, CatalogError> {
        let mut catalog = Catalog::default();
        for (i, item) in items.into_iter().enumerate() {
            catalog.add(item, || format!("orders.catalog[{i}]"))?;
        }
        Ok(catalog)
    }

    /// Reads a CSV catalog file.
    pub fn from_csv_file(path: &Path) -> Result<Catalog, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Io {
            path: path.to_owned(),
            source,
        })?;
        Catalog::from_csv_str(&text, &path.display().to_string())
    }

    /// Parses CSV text `sku,name,price_cents` with a header row; `origin` names the file
    /// in errors. Names may be quoted (RFC 4180, the `csv` crate's); blank lines and `#`
    /// comments are skipped.
    pub fn from_csv_str(text: &str, origin: &str) -> Result<Catalog, CatalogError> {
        let mut catalog = Catalog::default();
        let mut columns: Option<(usize, Option<usize>, usize)> = None;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .comment(Some(b'#'))
            .from_reader(text.trim_start_matches('\u{feff}').as_bytes());
        let mut cells = csv::StringRecord::new();
        loop {
            let row = reader.read_record(&mut cells);
            let line = |p: Option<&csv::Position>| p.map_or(0, csv::Position::line);
            let read = row.map_err(|e| CatalogError::Invalid {
                origin: format!("{origin}:{}", line(e.position())),
                message: format!("not CSV: {e}"),
            })?;
            if !read {
                break;
            }
            let at = || format!("{origin}:{}", line(cells.position()));
            if cells.iter().all(str::is_empty) {
                continue;
            }
            let Some((sku_col, name_col, price_col)) = columns else {
                let find = |name: &str| cells.iter().position(|c| c.eq_ignore_ascii_case(name));
                match (find("sku"), find("name"), find("price_cents")) {
                    (Some(s), name, Some(p)) => columns = Some((s, name, p)),
                    _ => {
                        return Err(CatalogError::Invalid {
                            origin: at(),
                            message: "expected a header row with columns sku, name, price_cents"
                                .into(),
                        });
                    }
                }
                continue;
            };
            let cell = |i: usize| cells.get(i).unwrap_or("");
            let price = cell(price_col);
            let price_cents = price.parse::<i64>().map_err(|_| CatalogError::Invalid {
                origin: at(),
                message: format!("price_cents {price:?} is not a whole number of cents"),
            })?;
            let item = CatalogItem {
                sku: cell(sku_col).to_owned(),
                name: name_col.map_or("", cell).to_owned(),
                price_cents,
            };
            catalog.add(item, at)?;
        }
        if columns.is_none() {
            return Err(CatalogError::Invalid {
                origin: origin.to_owned(),
                message: "the catalog is empty (expected a header row sku,name,price_cents)".into(),
            });
        }
        Ok(catalog)
    }

    fn add(
        &mut self,
        mut item: CatalogItem,
        origin: impl Fn() -> String,
    ) -> Result<(), CatalogError> {
        let invalid = |message: String| CatalogError::Invalid {
            origin: origin(),
            message,
        };
        item.sku = item.sku.trim().to_ascii_uppercase();
        if !is_sku(&item.sku) {
            return Err(invalid(format!(
                "sku {:?} must be 2 to 32 letters, digits or '-'",
                item.sku
            )));
        }
        if item.price_cents < 0 {
            return Err(invalid(format!(
                "price_cents {} is negative",
                item.price_cents
            )));
        }
        if self.index.contains_key(&item.sku) {
            return Err(invalid(format!("sku {} appears twice", item.sku)));
        }
        self.index.insert(item.sku.clone(), self.items.len());
        self.items.push(item);
        Ok(())
    }

    /// The item for `sku` (any case).
    pub fn get(&self, sku: &str) -> Option<&CatalogItem> {
        let i = match self.index.get(sku) {
            Some(i) => *i,
            None => *self.index.get(&sku.to_ascii_uppercase())?,
        };
        self.items.get(i)
    }

    /// True when `sku` exists.
    pub fn contains(&self, sku: &str) -> bool {
        self.get(sku).is_some()
    }

    /// All items, in the order given.
    pub fn items(&self) -> &[CatalogItem] {
        &self.items
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when there is no item.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_catalog() {
        let text =
            "sku,name,price_cents\n# comment\nwidget-1,\"Widget, blue\",1250\n\nBOLT-7,Bolt,15\n";
        let catalog = Catalog::from_csv_str(text, "catalog.csv").unwrap_or_default();
        assert_eq!(catalog.len(), 2);
        assert_eq!(catalog.get("Widget-1").map(|i| i.price_cents), Some(1250));
        assert_eq!(
            catalog.get("WIDGET-1").map(|i| i.name.as_str()),
            Some("Widget, blue")
        );
    }

    #[test]
    fn csv_errors_name_file_and_line() {
        let err = Catalog::from_csv_str("sku,name,price_cents\nA-1,x,12.5\n", "cat.csv")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("cat.csv:2: price_cents \"12.5\" is not a whole number of cents")
        );
        let err = Catalog::from_csv_str("sku,price\n", "cat.csv")
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.starts_with("cat.csv:1: expected a header")));
        let err = Catalog::from_csv_str("sku,name,price_cents\nA-1,a,1\na-1,b,2\n", "c.csv")
            .err()
            .map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("c.csv:3: sku A-1 appears twice"));
    }

    #[test]
    fn quoted_names_may_span_lines_and_errors_keep_the_file_line() {
        // The hand-written line splitter cut a quoted newline into two broken rows.
        let text = "sku,name,price_cents\nA-1,\"two\nlines\",5\nB-2,b,6\nC-3,c,x\n";
        let err = Catalog::from_csv_str(text, "m.csv")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("m.csv:5: price_cents \"x\" is not a whole number of cents")
        );
        let catalog = Catalog::from_csv_str(&text.replace(",x", ",7"), "m.csv").unwrap_or_default();
        assert_eq!(catalog.len(), 3);
        assert_eq!(
            catalog.get("A-1").map(|i| i.name.as_str()),
            Some("two\nlines")
        );
    }

    #[test]
    fn inline_errors_name_the_index() {
        let items = vec![
            CatalogItem {
                sku: "A-1".into(),
                name: "a".into(),
                price_cents: 1,
            },
            CatalogItem {
                sku: "x".into(),
                name: "b".into(),
                price_cents: 1,
            },
        ];
        let err = Catalog::from_items(items).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.starts_with("orders.catalog[1]: sku \"X\"")));
    }
}
