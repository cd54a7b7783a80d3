//! Object path validation: an accepted path never leads out of the store (no absolute path,
//! no `.`/`..` component, no empty component, no control character, at most 1024 bytes), and
//! `is_under` agrees with the components.
#![no_main]

use libfuzzer_sys::fuzz_target;
use objstore::path::{is_under, validate, validate_prefix, MAX_PATH_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (path, prefix) = text.split_once('\u{1}').unwrap_or((text, ""));
    for candidate in [path, prefix] {
        match validate_prefix(candidate) {
            Ok(p) => {
                assert_eq!(p, candidate);
                if !p.is_empty() {
                    assert!(p.len() <= MAX_PATH_LEN);
                    assert!(!p.starts_with('/'));
                    assert!(!p.chars().any(char::is_control));
                    assert!(p.split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
                }
                assert_eq!(validate(p).is_ok(), !p.is_empty());
            }
            Err(e) => {
                assert!(validate(candidate).is_err());
                assert!(!e.to_string().is_empty());
            }
        }
    }
    if validate(path).is_ok() && validate_prefix(prefix).is_ok() {
        let under = is_under(path, prefix);
        let path_parts: Vec<&str> = path.split('/').collect();
        let prefix_parts: Vec<&str> = if prefix.is_empty() {
            Vec::new()
        } else {
            prefix.split('/').collect()
        };
        let by_components = prefix_parts.len() < path_parts.len()
            && path_parts[..prefix_parts.len()] == prefix_parts[..];
        assert_eq!(
            under,
            by_components || prefix.is_empty(),
            "{path:?} under {prefix:?}"
        );
    }
});
