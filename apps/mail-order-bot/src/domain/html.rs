//! HTML to text, as much as order lines need: block elements end a line, tags go, entities
//! are decoded (by `htmlize`, with the whole WHATWG table), and text inside `<blockquote>`
//! comes out as `> ` quoted lines so that a quoted earlier order in an HTML reply is
//! ignored like a quoted plain-text one.
//!
//! Written here rather than taken from `mail-parser`, whose converter breaks lines only at
//! `br` and `p` (the spec also needs `div`, `li` and `tr`).

/// Elements that end a line (at their start and at their end).
const BLOCK: &[&str] = &[
    "p",
    "div",
    "li",
    "br",
    "tr",
    "ul",
    "ol",
    "table",
    "tbody",
    "thead",
    "tfoot",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "pre",
    "hr",
    "section",
    "article",
    "header",
    "footer",
    "dl",
    "dt",
    "dd",
    "address",
    "center",
    "form",
    "fieldset",
    "main",
    "nav",
    "aside",
    "figure",
    "caption",
];

/// Elements whose content is not text.
const SKIP: &[&str] = &["head", "style", "script", "template", "title", "noscript"];

/// Converts an HTML document or fragment to text, one line per block.
pub fn html_to_text(html: &str) -> String {
    let mut out = Out::default();
    let mut skip_depth: Vec<String> = Vec::new();
    let mut quote_depth: usize = 0;
    let mut pre_depth: usize = 0;
    let mut rest = html;

    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |end| &after[end + 3..]);
            continue;
        }
        if rest.starts_with('<')
            && let Some((tag, after)) = read_tag(rest)
        {
            rest = after;
            let Tag { name, closing } = tag;
            if let Some(skipping) = skip_depth.last() {
                if closing && *skipping == name {
                    skip_depth.pop();
                }
                continue;
            }
            if SKIP.contains(&name.as_str()) {
                if !closing {
                    skip_depth.push(name);
                }
                continue;
            }
            if BLOCK.contains(&name.as_str()) {
                out.end_line();
                match (name.as_str(), closing) {
                    ("blockquote", false) => quote_depth += 1,
                    ("blockquote", true) => quote_depth = quote_depth.saturating_sub(1),
                    ("pre", false) => pre_depth += 1,
                    ("pre", true) => pre_depth = pre_depth.saturating_sub(1),
                    _ => {}
                }
                out.quoted = quote_depth > 0;
            } else if matches!(name.as_str(), "td" | "th") && !closing {
                out.space();
            }
            continue;
        }
        // Text up to the next tag.
        let first = rest.chars().next().map_or(1, char::len_utf8);
        let (text, after) = match rest[first..].find('<') {
            Some(i) => rest.split_at(i + first),
            None => (rest, ""),
        };
        rest = after;
        if !skip_depth.is_empty() {
            continue;
        }
        let decoded = htmlize::unescape(text);
        for ch in decoded.chars() {
            match ch {
                '\n' if pre_depth > 0 => out.end_line(),
                c if c.is_whitespace() => out.space(),
                c => out.push(c),
            }
        }
    }
    out.end_line();
    out.text
}

#[derive(Default)]
struct Out {
    text: String,
    line: String,
    pending_space: bool,
    quoted: bool,
}

impl Out {
    fn push(&mut self, c: char) {
        if self.pending_space && !self.line.is_empty() {
            self.line.push(' ');
        }
        self.pending_space = false;
        self.line.push(c);
    }

    fn space(&mut self) {
        self.pending_space = true;
    }

    fn end_line(&mut self) {
        self.pending_space = false;
        if self.line.is_empty() {
            return;
        }
        if self.quoted {
            self.text.push_str("> ");
        }
        self.text.push_str(&self.line);
        self.text.push('\n');
        self.line.clear();
    }
}

struct Tag {
    name: String,
    closing: bool,
}

/// Reads `<name ...>` or `</name>` at the start of `s`; `None` when it is not a tag (a
/// stray `<` in text).
fn read_tag(s: &str) -> Option<(Tag, &str)> {
    let inner = s.strip_prefix('<')?;
    let (closing, inner) = match inner.strip_prefix('/') {
        Some(rest) => (true, rest),
        None => (false, inner),
    };
    let name_len = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == ':' || c == '!'))
        .unwrap_or(inner.len());
    if name_len == 0 {
        return None;
    }
    let name = inner[..name_len].to_ascii_lowercase();
    // Find the closing '>' outside quoted attribute values.
    let mut quote: Option<char> = None;
    for (i, c) in inner[name_len..].char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => {
                let rest = &inner[name_len + i + 1..];
                return Some((Tag { name, closing }, rest));
            }
            _ => {}
        }
    }
    // An unterminated tag swallows the rest, as browsers do.
    Some((Tag { name, closing }, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_end_lines_and_tags_go() {
        let html = "<html><head><title>x</title><style>p{}</style></head><body>\
            <p>Hello&nbsp;there,</p><div>WIDGET-1 &times; 3</div><ul><li>GADGET-2: 4</li>\
            <li>5 x BOLT-7</li></ul>line<br>next<table><tr><td>a</td><td>b</td></tr></table>\
            <!-- <p>NOPE x 1</p> --></body></html>";
        assert_eq!(
            html_to_text(html),
            "Hello there,\nWIDGET-1 × 3\nGADGET-2: 4\n5 x BOLT-7\nline\nnext\na b\n"
        );
    }

    #[test]
    fn blockquote_is_quoted() {
        let html = "<div>NEW-1 x 1</div><blockquote><div>OLD-1 x 9</div></blockquote><p>bye</p>";
        assert_eq!(html_to_text(html), "NEW-1 x 1\n> OLD-1 x 9\nbye\n");
    }

    #[test]
    fn entities_and_stray_brackets() {
        assert_eq!(
            htmlize::unescape("a &amp; b &#215; &#x2022; &bogus; &"),
            "a & b × • &bogus; &"
        );
        assert_eq!(html_to_text("1 < 2 and 3 > 2"), "1 < 2 and 3 > 2\n");
        assert_eq!(html_to_text("<p>Grüße</p>äöü<b>x</b>"), "Grüße\näöüx\n");
        assert_eq!(html_to_text("<a href='x>y'>link</a> text"), "link text\n");
    }

    #[test]
    fn named_entities_beyond_the_common_ones() {
        assert_eq!(
            html_to_text("<p>&Eacute;clair &frac12; &oacute;&rarr;&Omega;</p>"),
            "Éclair ½ ó→Ω\n"
        );
    }
}
