//! Configuration errors that name the file, line and key, and say what to
//! write instead; the "did you mean" for unknown keys.

use super::raw::KNOWN_KEYS;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A configuration error, printed as `FILE:LINE: KEY: PROBLEM` and a fix.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// The dotted key, e.g. `timeouts.hub_idle`; empty for whole-file problems.
    pub key: String,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": `{}`", self.key)?;
        }
        write!(f, ": {}\n  fix: {}", self.problem, self.fix)
    }
}

/// The file being validated, for errors that point into it.
pub(super) struct Ctx<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl Ctx<'_> {
    pub fn err(&self, span: Range<usize>, key: &str, problem: String, fix: &str) -> ConfigError {
        let line = if span.is_empty() && span.start == 0 {
            line_of_key(self.text, key)
        } else {
            Some(line_of(self.text, span.start))
        };
        ConfigError {
            file: self.path.to_path_buf(),
            line,
            key: key.to_string(),
            problem,
            fix: fix.to_string(),
        }
    }
}

pub(super) fn from_toml_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let span = e.span();
    let line = span.as_ref().map(|s| line_of(text, s.start));
    let (mut table, mut key) = span.as_ref().map(|s| key_at(text, s.start)).unwrap_or_default();
    let message = e.message().trim().to_string();
    let join = |table: &str, key: &str| {
        if table.is_empty() || key.is_empty() {
            format!("{table}{key}")
        } else {
            format!("{table}.{key}")
        }
    };
    if let Some(unknown) = unknown_field(&message) {
        // In an inline table (`dns = { … }`) the span is the table's: the
        // unknown key is one of its own, not of the table around it.
        let inner = join(&table, &key);
        if KNOWN_KEYS.iter().any(|(t, _)| *t == inner) {
            (table, key) = (inner, unknown);
        }
    }
    let dotted = join(&table, &key);
    let (problem, fix) = if let Some(unknown) = unknown_field(&message) {
        (format!("unknown key `{unknown}`"), suggest_key(&table, &unknown))
    } else if let Some(field) = missing_field(&message) {
        (
            format!("`{field}` is missing"),
            format!("add {field} = … to this table (see README's configuration reference)"),
        )
    } else if message.starts_with("invalid type") {
        (
            message.clone(),
            "durations, sizes, addresses and paths are strings in quotes, e.g. hub_idle = \"10m\"".into(),
        )
    } else {
        (message.clone(), "check the TOML syntax on that line: key = \"value\", tables as [name]".into())
    };
    ConfigError { file: path.to_path_buf(), line, key: dotted, problem, fix }
}

/// Extracts the name from serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

/// Extracts the name from serde's "missing field `x`" message.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

/// The "did you mean" part of an unknown-key error.
fn suggest_key(table: &str, unknown: &str) -> String {
    let here: Vec<&str> = KNOWN_KEYS.iter().filter(|(t, _)| *t == table).map(|(_, k)| *k).collect();
    let best = here.iter().map(|k| (edit_distance(&unknown.to_ascii_lowercase(), k), *k)).min();
    if let Some((d, k)) = best {
        if d <= 2.max(unknown.len() / 3) {
            return format!("did you mean `{k}`?");
        }
    }
    if let Some((t, k)) = KNOWN_KEYS.iter().find(|(t, k)| *k == unknown && *t != table) {
        return if t.is_empty() {
            format!("`{k}` belongs at the top of the file, before any [table]")
        } else {
            format!("`{k}` belongs in the [{t}] table")
        };
    }
    let place = if table.is_empty() { "at the top level".to_string() } else { format!("in [{table}]") };
    format!("remove it; the keys {place} are: {}", here.join(", "))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    // Counting bytes is safe at any offset.
    text.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The line on which a dotted key (e.g. `timeouts.hub_idle`) is written, if any.
fn line_of_key(text: &str, dotted: &str) -> Option<usize> {
    let (table, key) = dotted.rsplit_once('.').unwrap_or(("", dotted));
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.starts_with('[') {
            current = table_name(l);
        } else if current == table && l.split('=').next().map(str::trim) == Some(key) {
            return Some(i + 1);
        }
    }
    None
}

/// The table and key written at a byte offset: the enclosing `[table]` header
/// and the text before `=` on that line.
fn key_at(text: &str, offset: usize) -> (String, String) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = &text[line_start..line_end];
    if line.trim_start().starts_with('[') {
        // The span is a whole table (e.g. a field missing from it).
        return (table_name(line), String::new());
    }
    let key = line.split_once('=').map(|(k, _)| k.trim().trim_matches('"').to_string()).unwrap_or_default();
    let table = before[..line_start]
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('['))
        .map(table_name)
        .unwrap_or_default();
    (table, key)
}

/// `[tls]` → `tls`, `[[access]]` → `access`.
fn table_name(header: &str) -> String {
    header.trim().trim_start_matches('[').split(']').next().unwrap_or("").trim().to_string()
}
