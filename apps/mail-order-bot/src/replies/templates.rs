//! Reply texts: a built-in plain-text confirmation and rejection, each overridable by a
//! file in `replies.templates_dir` (`accepted.txt`, `rejected.txt`), rendered by minijinja.
//!
//! Templates are checked when they are loaded (`check-config`, start-up): each is compiled
//! and rendered once against a sample reply in strict mode, so a typo in a variable name
//! is a config error naming the file, not a reply that fails at 3 a.m.
//!
//! Variables: `customer`, `po`, `subject`, `lines` (each `sku`, `name`, `quantity`,
//! `unit_price`, `total`), `total`, `reason` (the stored word, `unknown_sku:ZZ-9`) and
//! `reason_text` (the same in words a customer understands).

use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use super::ReplyKind;

const BUILTIN_ACCEPTED: &str = include_str!("builtin/accepted.txt");
const BUILTIN_REJECTED: &str = include_str!("builtin/rejected.txt");

/// Largest template file read (a reply text, not a book).
const MAX_TEMPLATE_BYTES: u64 = 64 * 1024;

/// A template that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The file could not be read.
    #[error("replies.templates_dir: cannot read {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The template does not compile or does not render the sample reply.
    #[error("replies.templates_dir: {name}: {message}")]
    Invalid {
        /// `accepted.txt` or `rejected.txt` (or `built-in ...`).
        name: String,
        /// minijinja's description, with the line.
        message: String,
    },
}

/// One order line as a template sees it.
#[derive(Clone, PartialEq, Debug, Serialize)]
pub struct LineView {
    /// The SKU.
    pub sku: String,
    /// The catalog name, empty when unknown.
    pub name: String,
    /// The quantity.
    pub quantity: u32,
    /// Unit price, formatted (`12.50`).
    pub unit_price: String,
    /// Quantity times unit price, formatted.
    pub total: String,
}

/// What a template renders.
#[derive(Clone, PartialEq, Debug, Serialize)]
pub struct ReplyView {
    /// The customer's address.
    pub customer: String,
    /// The purchase-order reference, empty when none.
    pub po: String,
    /// The subject of the customer's message, empty when none.
    pub subject: String,
    /// The order lines (empty for a rejection).
    pub lines: Vec<LineView>,
    /// The order total, formatted.
    pub total: String,
    /// The stored reason word, empty for a confirmation.
    pub reason: String,
    /// The reason in words.
    pub reason_text: String,
}

impl ReplyView {
    /// The reply every template is checked against.
    fn sample() -> ReplyView {
        ReplyView {
            customer: "buyer@example.com".into(),
            po: "4711".into(),
            subject: "Order PO: 4711".into(),
            lines: vec![LineView {
                sku: "WIDGET-1".into(),
                name: "Widget".into(),
                quantity: 3,
                unit_price: "12.50".into(),
                total: "37.50".into(),
            }],
            total: "37.50".into(),
            reason: "unknown_sku:ZZ-9".into(),
            reason_text: "we do not know the product code ZZ-9.".into(),
        }
    }
}

/// The two reply templates, compiled and checked.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// The built-in texts.
    pub fn builtin() -> Templates {
        // The built-ins are tested; should one ever fail to compile, this still yields a
        // usable environment and `render` reports the error per reply.
        let mut env = strict_env();
        let _ = env.add_template_owned(ReplyKind::Accepted.file(), BUILTIN_ACCEPTED.to_owned());
        let _ = env.add_template_owned(ReplyKind::Rejected.file(), BUILTIN_REJECTED.to_owned());
        Templates { env }
    }

    /// The built-ins, each replaced by its file in `dir` when that file exists. An empty
    /// `dir` means the built-ins. Every template is checked against a sample reply.
    pub fn load(dir: Option<&Path>) -> Result<Templates, TemplateError> {
        let mut env = strict_env();
        for (kind, builtin) in [
            (ReplyKind::Accepted, BUILTIN_ACCEPTED),
            (ReplyKind::Rejected, BUILTIN_REJECTED),
        ] {
            let file = kind.file();
            let text = match dir.map(|d| d.join(file)) {
                Some(path) if path.exists() => read_template(&path)?,
                _ => builtin.to_owned(),
            };
            env.add_template_owned(file, text)
                .map_err(|e| invalid(file, &e))?;
        }
        let templates = Templates { env };
        for kind in [ReplyKind::Accepted, ReplyKind::Rejected] {
            templates.render(kind, &ReplyView::sample())?;
        }
        Ok(templates)
    }

    /// The text of one reply.
    pub fn render(&self, kind: ReplyKind, view: &ReplyView) -> Result<String, TemplateError> {
        let file = kind.file();
        let template = self.env.get_template(file).map_err(|e| invalid(file, &e))?;
        template
            .render(minijinja::value::Serde(view))
            .map_err(|e| invalid(file, &e))
    }
}

fn strict_env() -> Environment<'static> {
    let mut env = Environment::new();
    // A misspelt variable is an error at check time, not an empty gap in a customer's mail.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // `{% ... %}` lines leave no blank line behind; a file's last newline stays.
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env
}

fn read_template(path: &Path) -> Result<String, TemplateError> {
    let read_error = |message: String| TemplateError::Read {
        path: path.to_owned(),
        message,
    };
    let size = std::fs::metadata(path)
        .map_err(|e| read_error(e.to_string()))?
        .len();
    if size > MAX_TEMPLATE_BYTES {
        return Err(read_error(format!(
            "{size} bytes, more than the {MAX_TEMPLATE_BYTES} a template may have"
        )));
    }
    std::fs::read_to_string(path).map_err(|e| read_error(e.to_string()))
}

fn invalid(name: &str, error: &minijinja::Error) -> TemplateError {
    let line = error
        .line()
        .map(|l| format!(" (line {l})"))
        .unwrap_or_default();
    TemplateError::Invalid {
        name: name.to_owned(),
        message: format!(
            "{}{line}",
            error.detail().unwrap_or(&error.kind().to_string())
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_builtins_render_the_sample() {
        let templates = Templates::load(None).unwrap();
        let accepted = templates
            .render(ReplyKind::Accepted, &ReplyView::sample())
            .unwrap();
        assert!(accepted.contains("order 4711"), "{accepted}");
        assert!(
            accepted.contains("3 x WIDGET-1 (Widget) at 12.50: 37.50"),
            "{accepted}"
        );
        assert!(accepted.contains("Total: 37.50"), "{accepted}");
        let rejected = templates
            .render(ReplyKind::Rejected, &ReplyView::sample())
            .unwrap();
        assert!(rejected.contains("product code ZZ-9"), "{rejected}");
        assert_eq!(
            Templates::builtin()
                .render(ReplyKind::Accepted, &ReplyView::sample())
                .unwrap(),
            accepted
        );
    }

    #[test]
    fn a_template_file_overrides_its_builtin_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("accepted.txt"),
            "Thanks {{ customer }}: {{ total }}\n",
        )
        .unwrap();
        let templates = Templates::load(Some(dir.path())).unwrap();
        let text = templates
            .render(ReplyKind::Accepted, &ReplyView::sample())
            .unwrap();
        assert_eq!(text, "Thanks buyer@example.com: 37.50\n");
        // The rejection stays the built-in.
        assert!(
            templates
                .render(ReplyKind::Rejected, &ReplyView::sample())
                .unwrap()
                .contains("could not accept")
        );

        // A misspelt variable and a syntax error each name the file.
        std::fs::write(dir.path().join("accepted.txt"), "Thanks {{ custmer }}\n").unwrap();
        let error = Templates::load(Some(dir.path())).unwrap_err().to_string();
        assert!(error.contains("accepted.txt"), "{error}");
        std::fs::write(dir.path().join("rejected.txt"), "{% if %}\n").unwrap();
        std::fs::write(dir.path().join("accepted.txt"), "ok\n").unwrap();
        let error = Templates::load(Some(dir.path())).unwrap_err().to_string();
        assert!(error.contains("rejected.txt"), "{error}");
        assert!(error.contains("line 1"), "{error}");
        // A huge file is refused before it is read.
        std::fs::write(dir.path().join("rejected.txt"), vec![b'x'; 100_000]).unwrap();
        let error = Templates::load(Some(dir.path())).unwrap_err().to_string();
        assert!(error.contains("more than"), "{error}");
    }
}
