//! Object paths: relative, `/`-separated, with no way out of the store.
//!
//! A valid path is non-empty, at most 1024 bytes, relative (no leading `/`), made of
//! components separated by single `/` (no empty component, so no `//` and no trailing `/`),
//! none of which is `.` or `..`, and holds no NUL or other control character. Sector files use
//! paths such as `sealed/s-t01000-1` and `cache/s-t01000-1/p_aux`.
//!
//! A list prefix follows the same rules but may be empty (the whole store). It works like a
//! directory: `cache/s-t01000-1` lists `cache/s-t01000-1/p_aux` but neither an object named
//! `cache/s-t01000-1` itself nor `cache/s-t01000-10/p_aux`.

use crate::error::{Error, Result};

/// Longest accepted path, in bytes.
pub const MAX_PATH_LEN: usize = 1024;

fn invalid(path: &str, reason: &str) -> Error {
    Error::InvalidPath {
        path: path.to_string(),
        reason: reason.to_string(),
    }
}

/// Checks an object path.
pub fn validate(path: &str) -> Result<&str> {
    if path.is_empty() {
        return Err(invalid(path, "empty path"));
    }
    validate_prefix(path)
}

/// Checks a list prefix (an object path, or empty for the whole store).
pub fn validate_prefix(path: &str) -> Result<&str> {
    if path.is_empty() {
        return Ok(path);
    }
    if path.len() > MAX_PATH_LEN {
        return Err(invalid(path, "longer than 1024 bytes"));
    }
    if path.starts_with('/') {
        return Err(invalid(path, "absolute paths are not object paths"));
    }
    if path.chars().any(char::is_control) {
        return Err(invalid(path, "control characters are not allowed"));
    }
    for component in path.split('/') {
        match component {
            "" => return Err(invalid(path, "empty path component")),
            "." | ".." => return Err(invalid(path, "`.` and `..` components are not allowed")),
            _ => {}
        }
    }
    Ok(path)
}

/// Whether `path` is below `prefix` (component-wise; everything is below the empty prefix).
pub fn is_under(path: &str, prefix: &str) -> bool {
    prefix.is_empty()
        || (path.len() > prefix.len()
            && path.starts_with(prefix)
            && path.as_bytes()[prefix.len()] == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_paths() {
        for ok in [
            "sealed/s-t01000-1",
            "cache/s-t01000-1/p_aux",
            "a",
            "a.b/..c/d..",
            "é/ü",
        ] {
            assert_eq!(validate(ok).expect(ok), ok);
        }
        for bad in [
            "",
            "/abs",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "a\0b",
            "a\nb",
            ".",
        ] {
            let e = validate(bad).expect_err(bad);
            assert!(matches!(e, Error::InvalidPath { .. }), "{bad}: {e}");
        }
        assert!(validate(&"a".repeat(2000)).is_err());
        assert_eq!(validate_prefix("").expect("empty prefix"), "");
    }

    #[test]
    fn prefixes_match_whole_components() {
        assert!(is_under("cache/s-t01000-1/p_aux", "cache/s-t01000-1"));
        assert!(!is_under("cache/s-t01000-1", "cache/s-t01000-1"));
        assert!(!is_under("cache/s-t01000-10/p_aux", "cache/s-t01000-1"));
        assert!(is_under("anything", ""));
    }
}
