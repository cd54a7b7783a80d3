//! The strict TOML loader of both daemons' config files: unknown keys are errors naming each
//! dotted key path (with optional per-key hints), and TOML or type errors name the file, the
//! dotted key at the error's position and toml's own text (which gives the line and column and
//! quotes the line).

use std::ops::Range;

use anyhow::{anyhow, Result};
use serde::de::DeserializeOwned;

/// Parses TOML into `T`, refusing unknown keys; `origin` (a file name) prefixes every error.
///
/// Unknown keys are reported together by dotted path (`sealing_thread.0.sealing.max_retryes`),
/// each followed by `hint(key)` in parentheses when it gives one, and the list by `note` in
/// parentheses when set, e.g. ``w.toml: unknown keys `a.b` (a hint), `c` (the note)``.
pub fn parse_strict<T: DeserializeOwned>(
    text: &str,
    origin: &str,
    hint: fn(&str) -> Option<&'static str>,
    note: Option<&str>,
) -> Result<T> {
    let de = toml::Deserializer::parse(text).map_err(|e| de_error(&e, text, origin))?;
    let mut unknown: Vec<String> = Vec::new();
    let value: T = serde_ignored::deserialize(de, |path| {
        let path = path.to_string().replace(".?", "");
        unknown.push(path.strip_prefix("?.").unwrap_or(&path).to_string());
    })
    .map_err(|e| de_error(&e, text, origin))?;
    if unknown.is_empty() {
        return Ok(value);
    }
    let list = unknown
        .iter()
        .map(|key| match hint(key) {
            Some(h) => format!("`{key}` ({h})"),
            None => format!("`{key}`"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let note = note.map(|n| format!(" ({n})")).unwrap_or_default();
    Err(anyhow!(
        "{origin}: unknown key{} {list}{note}",
        if unknown.len() == 1 { "" } else { "s" }
    ))
}

/// The `hint` of [`parse_strict`] for files without per-key hints.
pub fn no_hint(_key: &str) -> Option<&'static str> {
    None
}

/// A TOML error with the file, the dotted key it concerns (when found) and toml's own text,
/// which gives the line and column and quotes the line.
fn de_error(e: &toml::de::Error, text: &str, origin: &str) -> anyhow::Error {
    let detail = e.to_string();
    let detail = detail.trim_end();
    match e.span().and_then(|span| key_path_at(text, span.start)) {
        Some(key) => anyhow!("{origin}: `{key}`: {detail}"),
        None => anyhow!("{origin}: {detail}"),
    }
}

/// The dotted path of the smallest key or value of `text` whose span holds `offset`.
fn key_path_at(text: &str, offset: usize) -> Option<String> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut best: Option<(usize, String)> = None;
    let mut path: Vec<String> = Vec::new();
    walk_table(root.get_ref(), offset, &mut path, &mut best);
    best.map(|(_, p)| p).filter(|p| !p.is_empty())
}

fn walk_table(
    table: &toml::de::DeTable<'_>,
    offset: usize,
    path: &mut Vec<String>,
    best: &mut Option<(usize, String)>,
) {
    for (key, value) in table.iter() {
        path.push(key.get_ref().to_string());
        consider(key.span(), offset, path, best);
        walk_value(value, offset, path, best);
        path.pop();
    }
}

fn walk_value(
    value: &toml::Spanned<toml::de::DeValue<'_>>,
    offset: usize,
    path: &mut Vec<String>,
    best: &mut Option<(usize, String)>,
) {
    consider(value.span(), offset, path, best);
    match value.get_ref() {
        toml::de::DeValue::Table(table) => walk_table(table, offset, path, best),
        toml::de::DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                walk_value(item, offset, path, best);
                path.pop();
            }
        }
        _ => {}
    }
}

fn consider(
    span: Range<usize>,
    offset: usize,
    path: &[String],
    best: &mut Option<(usize, String)>,
) {
    if span.contains(&offset) && best.as_ref().is_none_or(|(len, _)| span.len() <= *len) {
        *best = Some((span.len(), path.join(".")));
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Inner {
        count: u32,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Outer {
        inner: Vec<Inner>,
    }

    fn hint(key: &str) -> Option<&'static str> {
        (key == "inner.0.cuont").then_some("did you mean `count`?")
    }

    #[test]
    fn known_keys_parse() {
        let outer: Outer =
            parse_strict("[[inner]]\ncount = 2\n", "t.toml", no_hint, None).expect("parse");
        assert_eq!(outer.inner.len(), 1);
        assert_eq!(outer.inner[0].count, 2);
    }

    #[test]
    fn unknown_keys_get_their_hint_and_the_note() {
        let err = parse_strict::<Outer>(
            "other = 1\n[[inner]]\ncuont = 2\n",
            "t.toml",
            hint,
            Some("a note"),
        )
        .expect_err("unknown keys");
        let msg = format!("{err:#}");
        assert!(msg.starts_with("t.toml: unknown keys "), "{msg}");
        assert!(msg.contains("`other`"), "{msg}");
        assert!(
            msg.contains("`inner.0.cuont` (did you mean `count`?)"),
            "{msg}"
        );
        assert!(msg.ends_with(" (a note)"), "{msg}");
    }

    #[test]
    fn type_errors_name_the_key() {
        let err = parse_strict::<Outer>("[[inner]]\ncount = \"x\"\n", "t.toml", no_hint, None)
            .expect_err("a string count");
        let msg = format!("{err:#}");
        assert!(msg.starts_with("t.toml: `inner.0.count`: "), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }
}
