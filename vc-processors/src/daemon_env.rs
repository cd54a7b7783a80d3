//! Environment variables an operator sets on a running daemon (`VenusWorker.WorkerSetEnv`),
//! kept in a map of this process instead of its environment: `std::env::set_var` in a
//! multi-threaded process races with every `getenv` of the other threads. The daemon's own
//! reads of such a name go through [`var_os`]; children started afterwards with the daemon's
//! environment get the map applied on top of it ([`apply`]).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::sync::RwLock;

/// Name → value, or `None` for a variable removed.
static OVERRIDES: RwLock<BTreeMap<OsString, Option<OsString>>> = RwLock::new(BTreeMap::new());

fn write(name: &OsStr, value: Option<OsString>) {
    // A poisoned lock only means a panic elsewhere while holding it; the map is still whole.
    let mut map = OVERRIDES.write().unwrap_or_else(|e| e.into_inner());
    map.insert(name.to_os_string(), value);
}

/// Sets `name` to `value` for this daemon's reads and its next children.
pub fn set(name: impl AsRef<OsStr>, value: impl Into<OsString>) {
    write(name.as_ref(), Some(value.into()));
}

/// Removes `name` for this daemon's reads and its next children, even when the process
/// environment has it.
pub fn remove(name: impl AsRef<OsStr>) {
    write(name.as_ref(), None);
}

/// The value of `name`: the operator's, else the process environment's.
pub fn var_os(name: impl AsRef<OsStr>) -> Option<OsString> {
    let map = OVERRIDES.read().unwrap_or_else(|e| e.into_inner());
    match map.get(name.as_ref()) {
        Some(v) => v.clone(),
        None => std::env::var_os(name),
    }
}

/// Applies the operator's variables to `env` (a child's inherited environment, in order).
pub fn apply(env: &mut Vec<(OsString, OsString)>) {
    let map = OVERRIDES.read().unwrap_or_else(|e| e.into_inner());
    for (name, value) in map.iter() {
        env.retain(|(k, _)| k != name);
        if let Some(v) = value {
            env.push((name.clone(), v.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_and_removed_variables_shadow_the_process_environment() {
        let name = format!("VC_DAEMON_ENV_TEST_{}", std::process::id());
        assert_eq!(var_os(&name), None);
        set(&name, "a");
        assert_eq!(var_os(&name), Some("a".into()));
        assert_eq!(
            std::env::var_os(&name),
            None,
            "the process environment is untouched"
        );
        let mut env = vec![(OsString::from("HOME"), OsString::from("/h"))];
        apply(&mut env);
        assert!(env.contains(&(OsString::from(&name), OsString::from("a"))));
        // Removing shadows even a variable of the process environment.
        remove("HOME");
        assert_eq!(var_os("HOME"), None);
        let mut env = vec![(OsString::from("HOME"), OsString::from("/h"))];
        apply(&mut env);
        assert!(!env.iter().any(|(k, _)| k == "HOME"), "{env:?}");
        set("HOME", "/h");
        remove(&name);
        assert_eq!(var_os(&name), None);
    }
}
