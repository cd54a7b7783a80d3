//! `damocles-manager util params generate|check` against a private parameter cache.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn params(cache: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(damocles_tests::bins::manager());
    cmd.args(["util", "params"])
        .args(args)
        .env("FIL_PROOFS_PARAMETER_CACHE", cache)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn generate_is_idempotent_safe_in_parallel_and_check_reports_what_is_missing() {
    let dir = tempfile::tempdir().expect("tmp");
    let cache = dir.path().join("params");

    let out = params(
        &cache,
        &["check", "--sector-size", "2KiB", "--kind", "window-post"],
    )
    .output()
    .expect("run check");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("MISSING .params .vk .meta"),
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("util params generate --sector-size 2KiB --kind window-post"),
        "{}",
        text(&out)
    );

    // Two generators at once: one makes the files, the other waits for it and finds them.
    let a = params(
        &cache,
        &["generate", "--sector-size", "2KiB", "--kind", "window-post"],
    )
    .spawn()
    .expect("spawn a");
    let b = params(
        &cache,
        &["generate", "--sector-size", "2KiB", "--kind", "window-post"],
    )
    .spawn()
    .expect("spawn b");
    let (a, b) = (
        a.wait_with_output().expect("a"),
        b.wait_with_output().expect("b"),
    );
    assert!(a.status.success(), "{}", text(&a));
    assert!(b.status.success(), "{}", text(&b));
    let (sa, sb) = (
        String::from_utf8_lossy(&a.stdout),
        String::from_utf8_lossy(&b.stdout),
    );
    let generated = [&sa, &sb]
        .iter()
        .filter(|s| s.contains("generated in"))
        .count();
    let present = [&sa, &sb]
        .iter()
        .filter(|s| s.contains("already present"))
        .count();
    assert_eq!(
        (generated, present),
        (1, 1),
        "exactly one process generated:\n{sa}\n{sb}"
    );

    let files: Vec<String> = std::fs::read_dir(&cache)
        .expect("cache dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    for ext in [".params", ".vk", ".meta"] {
        assert!(files.iter().any(|f| f.ends_with(ext)), "{ext} in {files:?}");
    }
    assert!(
        !files.iter().any(|f| f.contains(".tmp")),
        "no temporary files left: {files:?}"
    );

    let out = params(
        &cache,
        &["check", "--sector-size", "2KiB", "--kind", "window-post"],
    )
    .output()
    .expect("run check");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("present"),
        "{}",
        text(&out)
    );

    // Again: nothing to do.
    let out = params(
        &cache,
        &["generate", "--sector-size", "2KiB", "--kind", "window-post"],
    )
    .output()
    .expect("run generate");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already present"),
        "{}",
        text(&out)
    );
}

#[test]
fn bad_arguments_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = params(dir.path(), &["generate", "--sector-size", "3KiB"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unsupported sector size \"3KiB\""),
        "{}",
        text(&out)
    );

    let out = params(
        dir.path(),
        &["generate", "--sector-size", "2KiB", "--kind", "pc2"],
    )
    .output()
    .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown parameter kind \"pc2\""),
        "{}",
        text(&out)
    );

    let out = params(
        dir.path(),
        &[
            "generate",
            "--sector-size",
            "32GiB",
            "--kind",
            "window-post",
        ],
    )
    .output()
    .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("too large to generate here"),
        "{}",
        text(&out)
    );
}
