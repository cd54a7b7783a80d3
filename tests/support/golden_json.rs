//! Golden JSON checks shared by the test crates (included with `#[path]`): a fixture is a
//! pretty-printed file whose compact form, in file order, is the exact wire form.

#![allow(dead_code)]

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The compact wire form of `<dir>/<name>.json`.
pub(crate) fn golden(dir: &Path, name: &str) -> String {
    let path = dir.join(format!("{name}.json"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str::<serde_json::Value>(&text).expect("golden is JSON");
    minify(&text)
}

/// Drops the whitespace outside strings, keeping key order.
pub(crate) fn minify(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

/// Parses the fixture as `V`, re-serialises it and compares byte for byte.
pub(crate) fn round_trip<V: Serialize + DeserializeOwned>(dir: &Path, name: &str) -> V {
    let wire = golden(dir, name);
    let value: V = serde_json::from_str(&wire).unwrap_or_else(|e| panic!("{name}: {e}"));
    let back = serde_json::to_string(&value).expect("serialise");
    assert_eq!(back, wire, "{name} does not round-trip exactly");
    value
}
