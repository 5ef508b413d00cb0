//! A strict parser of the Prometheus text format (0.0.4), enough to hold `/metrics` to
//! it: HELP then TYPE before samples, contiguous families, valid names, escaped label
//! values, no duplicate series, counters named `_total`, consistent histograms.

use std::collections::{BTreeMap, BTreeSet};

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

#[derive(Debug, Clone)]
pub struct Family {
    pub kind: String,
    pub help: String,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Default)]
pub struct Scrape {
    pub families: BTreeMap<String, Family>,
}

impl Scrape {
    /// The value of the one sample named `name` whose labels include `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let hits: Vec<&Sample> = self
            .families
            .values()
            .flat_map(|f| &f.samples)
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert_eq!(hits.len(), 1, "{name}{labels:?}: {hits:?}");
        hits[0].value
    }
}

fn valid_metric_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

fn valid_label_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => v
            .parse::<f64>()
            .map_err(|e| format!("bad value {v:?}: {e}")),
    }
}

/// Parses `{a="b",c="d"}` at the start of `s`; returns the labels and the rest.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Labels::new();
    let mut rest = s.strip_prefix('{').ok_or("expected {")?;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("expected =")?;
        let name = &rest[..eq];
        if !valid_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..].strip_prefix('"').ok_or("expected \"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((_, '\n')) => return Err("raw newline in label value".into()),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &rest[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err("expected , or }".into());
        }
    }
}

fn series_key(name: &str, labels: &Labels) -> String {
    format!("{name}{labels:?}")
}

pub fn parse(text: &str) -> Result<Scrape, String> {
    if !text.ends_with('\n') {
        return Err("text must end with a newline".into());
    }
    let mut scrape = Scrape::default();
    let mut current: Option<String> = None;
    let mut closed: BTreeSet<String> = BTreeSet::new();
    let mut series: BTreeSet<String> = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let err = |m: String| format!("line {}: {m}: {line:?}", i + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').ok_or_else(|| err("help".into()))?;
            if !valid_metric_name(name) {
                return Err(err("bad name".into()));
            }
            if scrape.families.contains_key(name) {
                return Err(err("family declared twice".into()));
            }
            if let Some(c) = current.take() {
                closed.insert(c);
            }
            scrape.families.insert(
                name.to_owned(),
                Family {
                    kind: String::new(),
                    help: help.to_owned(),
                    samples: Vec::new(),
                },
            );
            current = Some(name.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| err("type".into()))?;
            if current.as_deref() != Some(name) {
                return Err(err("TYPE must follow the HELP of its family".into()));
            }
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(err(format!("unknown type {kind}")));
            }
            let fam = scrape
                .families
                .get_mut(name)
                .ok_or_else(|| err("no family".into()))?;
            if !fam.kind.is_empty() || !fam.samples.is_empty() {
                return Err(err("TYPE after samples or twice".into()));
            }
            if kind == "counter" && !name.ends_with("_total") {
                return Err(err("counter names end in _total".into()));
            }
            fam.kind = kind.to_owned();
            continue;
        }
        if line.starts_with('#') {
            return Err(err("unexpected comment".into()));
        }
        // A sample.
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| err("no value".into()))?;
        let name = &line[..name_end];
        if !valid_metric_name(name) {
            return Err(err("bad metric name".into()));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(err)?
        } else {
            (Labels::new(), &line[name_end..])
        };
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| err("expected space".into()))?;
        let mut parts = rest.split(' ');
        let value = parse_value(parts.next().unwrap_or_default()).map_err(err)?;
        if let Some(ts) = parts.next() {
            ts.parse::<i64>()
                .map_err(|e| err(format!("timestamp: {e}")))?;
        }
        if parts.next().is_some() {
            return Err(err("trailing fields".into()));
        }
        let fam_name = current
            .clone()
            .ok_or_else(|| err("sample before any HELP".into()))?;
        let fam = scrape
            .families
            .get_mut(&fam_name)
            .ok_or_else(|| err("family".into()))?;
        let belongs = if fam.kind == "histogram" {
            ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| name == format!("{fam_name}{s}"))
        } else {
            name == fam_name
        };
        if !belongs || closed.contains(name) {
            return Err(err(format!("sample outside its family {fam_name}")));
        }
        if fam.kind == "histogram" && name.ends_with("_bucket") != labels.contains_key("le") {
            return Err(err("le goes on buckets only".into()));
        }
        if !series.insert(series_key(name, &labels)) {
            return Err(err("duplicate series".into()));
        }
        fam.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    for (name, fam) in &scrape.families {
        if fam.kind.is_empty() {
            return Err(format!("{name}: no TYPE"));
        }
        if fam.kind == "histogram" {
            check_histogram(name, fam)?;
        }
    }
    Ok(scrape)
}

fn check_histogram(name: &str, fam: &Family) -> Result<(), String> {
    let mut by_series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    for s in &fam.samples {
        let mut base = s.labels.clone();
        let le = base.remove("le");
        let key = format!("{base:?}");
        match le {
            Some(le) => by_series
                .entry(key)
                .or_default()
                .push((parse_value(&le)?, s.value)),
            None if s.name.ends_with("_count") => {
                counts.insert(key, s.value);
            }
            None => {}
        }
    }
    for (key, buckets) in by_series {
        let mut last = (f64::NEG_INFINITY, 0.0);
        for &(le, v) in &buckets {
            if le <= last.0 || v < last.1 {
                return Err(format!("{name}{key}: buckets not ascending and cumulative"));
            }
            last = (le, v);
        }
        if last.0 != f64::INFINITY {
            return Err(format!("{name}{key}: no +Inf bucket"));
        }
        if counts.get(&key) != Some(&last.1) {
            return Err(format!("{name}{key}: +Inf bucket differs from _count"));
        }
    }
    Ok(())
}

#[test]
fn the_parser_is_strict() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"\\\\\\n\"} 1\n";
    let s = parse(ok).unwrap();
    assert_eq!(s.value("a_total", &[("x", "q\"\\\n")]), 1.0);
    for bad in [
        "a 1\n",                                         // no family
        "# HELP a A.\n# TYPE a counter\na 1\n",          // counter without _total
        "# HELP a A.\n# TYPE a gauge\na 1\na 2\n",       // duplicate series
        "# HELP a A.\n# TYPE a gauge\na{x=\"\\q\"} 1\n", // bad escape
        "# HELP a A.\n# TYPE a gauge\nb 1\n",            // outside family
        "# HELP a A.\n# TYPE a gauge\na one\n",          // bad value
        "# HELP a A.\n# TYPE a gauge\na 1",              // no final newline
        "# HELP h A.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
        "# HELP h A.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 1\n",
    ] {
        assert!(parse(bad).is_err(), "accepted: {bad:?}");
    }
}
