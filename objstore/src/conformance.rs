//! The conformance suite: what every backend must do, the same way.
//!
//! A backend's tests provide a [`Harness`] that opens stores over one fresh namespace (a temp
//! directory, a bucket prefix, …) and call [`conformance_tests!`](crate::conformance_tests),
//! which makes one `#[test]` per case. Each case panics with a description on failure.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::Error;
use crate::plugin::PluginLibrary;
use crate::store::{ByteRange, ObjectMeta, ObjectStore};

/// Loads the plugin `name` built with the running test or benchmark: it sits in `deps/` of the
/// profile directory (and `cargo build` copies it to the profile directory itself, where an
/// older copy may linger, so `deps/` is tried first).
pub fn built_plugin(name: &str) -> Arc<PluginLibrary> {
    let exe = std::env::current_exe().expect("the test executable");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the build profile directory")
        .to_path_buf();
    let dirs = [profile.join("deps"), profile.clone()];
    for dir in &dirs {
        if let Ok(lib) = PluginLibrary::load_by_name(dir, name) {
            return lib;
        }
    }
    panic!(
        "plugin {name:?} is not built in {} nor its deps/",
        profile.display()
    );
}

/// The directory [`built_plugin`] found plugin `name` in.
pub fn built_plugin_dir(name: &str) -> PathBuf {
    built_plugin(name)
        .path()
        .parent()
        .expect("a plugin file has a directory")
        .to_path_buf()
}

/// Environment variable marking the nested run of [`check_under_valgrind`].
pub const UNDER_VALGRIND: &str = "OBJSTORE_UNDER_VALGRIND";

/// Runs the tests of the running test binary whose names contain `filter` under valgrind and
/// fails unless valgrind reports no definite leak and no invalid access, and `expected` tests
/// passed. In the nested run itself (marked by [`UNDER_VALGRIND`]) it does nothing.
pub fn check_under_valgrind(filter: &str, expected: usize) {
    if std::env::var_os(UNDER_VALGRIND).is_some() {
        return;
    }
    let exe = std::env::current_exe().expect("the test executable");
    let out = std::process::Command::new("valgrind")
        .args([
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--error-exitcode=99",
            "--quiet",
        ])
        .arg(&exe)
        .args([filter, "--test-threads=1"])
        .env(UNDER_VALGRIND, "1")
        .output()
        .expect("run valgrind (the test set-up requires it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "valgrind found problems (status {}):\n{stderr}\n{stdout}",
        out.status
    );
    assert!(
        stdout.contains(&format!("test result: ok. {expected} passed")),
        "{expected} tests ran under valgrind:\n{stdout}"
    );
}

/// The number of cases [`conformance_tests!`](crate::conformance_tests) generates.
pub const CASES: usize = 13;

/// What a backend provides to the suite.
pub trait Harness {
    /// Opens a store over this harness's namespace; every call sees the same objects.
    fn open(&self, read_only: bool) -> Arc<dyn ObjectStore>;

    /// Whether objects are plain local files (`local_path` returns a path).
    fn has_local_paths(&self) -> bool;
}

/// Deterministic pseudo-random bytes (xorshift), so large objects need not sit in memory.
pub struct PatternReader {
    state: u64,
    left: u64,
}

impl PatternReader {
    /// `len` bytes derived from `seed`.
    pub fn new(seed: u64, len: u64) -> Self {
        PatternReader {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            left: len,
        }
    }

    fn next_byte(&mut self) -> u8 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state >> 24) as u8
    }
}

impl Read for PatternReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        for b in &mut buf[..n] {
            *b = self.next_byte();
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// `len` bytes of the pattern for `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut r = PatternReader::new(seed, len as u64);
    let _ = r.read(&mut out);
    out
}

/// A reader that fails after `ok_bytes` bytes.
struct FailingReader {
    ok_bytes: usize,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.ok_bytes == 0 {
            return Err(std::io::Error::other("the source broke"));
        }
        let n = buf.len().min(self.ok_bytes);
        buf[..n].fill(7);
        self.ok_bytes -= n;
        Ok(n)
    }
}

fn put(store: &dyn ObjectStore, path: &str, data: &[u8]) {
    let n = store
        .put(path, &mut &data[..])
        .unwrap_or_else(|e| panic!("put {path}: {e}"));
    assert_eq!(n, data.len() as u64, "put {path} reports its size");
}

fn get_all(store: &dyn ObjectStore, path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    store
        .get(path)
        .unwrap_or_else(|e| panic!("get {path}: {e}"))
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("read {path}: {e}"));
    out
}

fn expect_not_found<T: std::fmt::Debug>(what: &str, r: crate::Result<T>) {
    match r {
        Err(Error::NotFound { .. }) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

/// put, stat, get, overwrite.
pub fn round_trip(h: &dyn Harness) {
    let s = h.open(false);
    let data = pattern(1, 1000);
    put(&*s, "rt/object", &data);
    assert_eq!(s.stat("rt/object").expect("stat").size, 1000);
    assert_eq!(get_all(&*s, "rt/object"), data);
    let other = pattern(2, 333);
    put(&*s, "rt/object", &other);
    assert_eq!(
        s.stat("rt/object").expect("stat").size,
        333,
        "overwrite replaces the size"
    );
    assert_eq!(
        get_all(&*s, "rt/object"),
        other,
        "overwrite replaces the content"
    );
    let listed = s.list("rt").expect("list");
    assert_eq!(
        listed,
        vec![ObjectMeta {
            path: "rt/object".into(),
            size: 333
        }]
    );
}

/// An empty object exists, has size 0 and reads as nothing.
pub fn empty_object(h: &dyn Harness) {
    let s = h.open(false);
    put(&*s, "empty/zero", &[]);
    assert_eq!(s.stat("empty/zero").expect("stat").size, 0);
    assert!(get_all(&*s, "empty/zero").is_empty());
    assert!(s
        .get_range("empty/zero", ByteRange::new(0, 10))
        .expect("range")
        .is_empty());
    assert_eq!(s.list("empty").expect("list").len(), 1);
}

/// Single and multiple ranges, zero-length, past the end, beyond the end.
pub fn ranges(h: &dyn Harness) {
    let s = h.open(false);
    let data = pattern(3, 100_000);
    put(&*s, "ranges/obj", &data);
    let get = |o: u64, l: u64| {
        s.get_range("ranges/obj", ByteRange::new(o, l))
            .expect("get_range")
    };
    assert!(get(0, 0).is_empty(), "zero-length range");
    assert!(get(5000, 0).is_empty(), "zero-length range inside");
    assert_eq!(get(10, 100), &data[10..110]);
    assert_eq!(get(0, 100_000), data, "the whole object");
    assert_eq!(get(99_990, 100), &data[99_990..], "past the end is clamped");
    assert!(
        get(100_000, 5).is_empty(),
        "starting at the end reads nothing"
    );
    assert!(
        get(200_000, 5).is_empty(),
        "starting beyond the end reads nothing"
    );
    assert_eq!(
        get(99_999, u64::MAX),
        &data[99_999..],
        "a huge length is clamped"
    );

    let mut want = Vec::new();
    let mut rs = Vec::new();
    for i in 0..200u64 {
        let off = (i * 7919) % 100_000;
        let len = 1 + (i * 31) % 600;
        rs.push(ByteRange::new(off, len));
        let end = (off + len).min(100_000) as usize;
        want.push(data[off as usize..end].to_vec());
    }
    rs.push(ByteRange::new(50, 0));
    want.push(Vec::new());
    rs.push(ByteRange::new(500_000, 10));
    want.push(Vec::new());
    rs.push(ByteRange::new(10, 100));
    want.push(data[10..110].to_vec());
    let got = s.get_ranges("ranges/obj", &rs).expect("get_ranges");
    assert_eq!(got.len(), rs.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "range {i} {:?}", rs[i]);
    }
    assert!(s
        .get_ranges("ranges/obj", &[])
        .expect("no ranges")
        .is_empty());
}

/// Nested paths and directory-like listing.
pub fn nested_paths_and_list(h: &dyn Harness) {
    let s = h.open(false);
    for (p, n) in [
        ("x/1", 1usize),
        ("x/y/2", 2),
        ("x/y/z/3", 3),
        ("xy/4", 4),
        ("x/y/z/deep/deeper/5", 5),
    ] {
        put(&*s, p, &pattern(n as u64, n));
    }
    let names = |prefix: &str| -> Vec<String> {
        s.list(prefix)
            .unwrap_or_else(|e| panic!("list {prefix:?}: {e}"))
            .into_iter()
            .map(|m| m.path)
            .collect()
    };
    assert_eq!(
        names("x"),
        ["x/1", "x/y/2", "x/y/z/3", "x/y/z/deep/deeper/5"]
    );
    assert_eq!(names("x/y"), ["x/y/2", "x/y/z/3", "x/y/z/deep/deeper/5"]);
    assert_eq!(names("xy"), ["xy/4"]);
    assert!(names("x/1").is_empty(), "an object is not a directory");
    assert!(names("nothing/here").is_empty());
    let all = names("");
    for p in ["x/1", "x/y/2", "x/y/z/3", "xy/4", "x/y/z/deep/deeper/5"] {
        assert!(all.iter().any(|a| a == p), "{p} in {all:?}");
    }
    let sizes: BTreeMap<String, u64> = s
        .list("x/y")
        .expect("list")
        .into_iter()
        .map(|m| (m.path, m.size))
        .collect();
    assert_eq!(sizes["x/y/z/3"], 3);
    assert_eq!(get_all(&*s, "x/y/z/deep/deeper/5"), pattern(5, 5));
}

/// Concurrent puts to different keys from many threads.
pub fn concurrent_puts(h: &dyn Harness) {
    let s = h.open(false);
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            let s = s.clone();
            scope.spawn(move || {
                for k in 0..4u64 {
                    let data = pattern(100 + t * 10 + k, 256 * 1024 + (t * 4 + k) as usize);
                    put(&*s, &format!("conc/t{t}/k{k}"), &data);
                }
            });
        }
    });
    assert_eq!(s.list("conc").expect("list").len(), 32);
    for t in 0..8u64 {
        for k in 0..4u64 {
            let want = pattern(100 + t * 10 + k, 256 * 1024 + (t * 4 + k) as usize);
            assert_eq!(get_all(&*s, &format!("conc/t{t}/k{k}")), want, "t{t}/k{k}");
        }
    }
}

/// Concurrent puts to the same key: the object ends up as exactly one of the versions, whole.
pub fn concurrent_puts_same_key(h: &dyn Harness) {
    let s = h.open(false);
    let versions: Vec<Vec<u8>> = (0..4u64).map(|v| pattern(500 + v, 3 << 20)).collect();
    std::thread::scope(|scope| {
        for v in &versions {
            let s = s.clone();
            scope.spawn(move || put(&*s, "same/key", v));
        }
    });
    let got = get_all(&*s, "same/key");
    assert!(
        versions.contains(&got),
        "the object is one whole version, not a mix ({} bytes)",
        got.len()
    );
    assert_eq!(s.list("same").expect("list").len(), 1);
}

/// A 64 MiB object streamed in and out, never whole in memory on our side.
pub fn large_streamed_object(h: &dyn Harness) {
    const SIZE: u64 = 64 << 20;
    let s = h.open(false);
    let n = s
        .put("large/64MiB", &mut PatternReader::new(42, SIZE))
        .expect("put 64 MiB");
    assert_eq!(n, SIZE);
    assert_eq!(s.stat("large/64MiB").expect("stat").size, SIZE);
    let mut reader = s.get("large/64MiB").expect("get");
    let mut expect = PatternReader::new(42, SIZE);
    let mut got = vec![0u8; 1 << 20];
    let mut want = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut got).expect("read");
        if n == 0 {
            break;
        }
        expect.read_exact(&mut want[..n]).expect("pattern");
        assert!(got[..n] == want[..n], "bytes differ near offset {total}");
        total += n as u64;
    }
    assert_eq!(total, SIZE, "streamed the whole object");
    let full = pattern(42, (SIZE / 64) as usize + 100);
    let r = s
        .get_range("large/64MiB", ByteRange::new(SIZE / 64 - 50, 100))
        .expect("range");
    assert_eq!(
        r,
        &full[(SIZE / 64 - 50) as usize..(SIZE / 64 + 50) as usize]
    );
}

/// A read-only store reads but refuses puts and deletes.
pub fn read_only(h: &dyn Harness) {
    let rw = h.open(false);
    put(&*rw, "ro/obj", b"kept");
    let ro = h.open(true);
    assert!(ro.config().read_only);
    assert_eq!(get_all(&*ro, "ro/obj"), b"kept");
    assert_eq!(ro.stat("ro/obj").expect("stat").size, 4);
    assert!(matches!(
        ro.put("ro/obj", &mut &b"new"[..]),
        Err(Error::ReadOnly { .. })
    ));
    assert!(matches!(
        ro.put("ro/other", &mut &b"new"[..]),
        Err(Error::ReadOnly { .. })
    ));
    assert!(matches!(ro.writer("ro/other"), Err(Error::ReadOnly { .. })));
    assert!(matches!(ro.delete("ro/obj"), Err(Error::ReadOnly { .. })));
    assert_eq!(get_all(&*rw, "ro/obj"), b"kept", "nothing changed");
    expect_not_found("stat ro/other", rw.stat("ro/other"));
}

/// Invalid paths are refused by every operation.
pub fn invalid_paths(h: &dyn Harness) {
    let s = h.open(false);
    for bad in [
        "/abs",
        "../escape",
        "a/../../b",
        "a//b",
        "",
        "a/",
        "./a",
        "a\0b",
    ] {
        let is_invalid = |what: &str, e: Option<Error>| match e {
            Some(Error::InvalidPath { .. }) => {}
            other => panic!("{what} {bad:?}: expected InvalidPath, got {other:?}"),
        };
        is_invalid("stat", s.stat(bad).err());
        is_invalid("get", s.get(bad).err());
        is_invalid("get_range", s.get_range(bad, ByteRange::new(0, 1)).err());
        is_invalid(
            "get_ranges",
            s.get_ranges(bad, &[ByteRange::new(0, 1)]).err(),
        );
        is_invalid("put", s.put(bad, &mut &b"x"[..]).err());
        is_invalid("delete", s.delete(bad).err());
        is_invalid("local_path", s.local_path(bad).err());
        if !bad.is_empty() {
            is_invalid("list", s.list(bad).err());
        }
    }
}

/// Missing objects are NotFound for every operation; listing a missing prefix is empty.
pub fn not_found(h: &dyn Harness) {
    let s = h.open(false);
    expect_not_found("stat", s.stat("missing/obj"));
    expect_not_found("get", s.get("missing/obj").map(|_| ()));
    expect_not_found(
        "get_range",
        s.get_range("missing/obj", ByteRange::new(0, 10)),
    );
    expect_not_found(
        "get_ranges",
        s.get_ranges("missing/obj", &[ByteRange::new(0, 10)]),
    );
    expect_not_found("delete", s.delete("missing/obj"));
    assert!(s.list("missing").expect("list").is_empty());
    // A "directory" is not an object.
    put(&*s, "dir/child", b"c");
    expect_not_found("stat of a prefix", s.stat("dir"));
    expect_not_found("get of a prefix", s.get("dir").map(|_| ()));
}

/// Delete removes the object; deleting it again is NotFound.
pub fn delete(h: &dyn Harness) {
    let s = h.open(false);
    put(&*s, "del/obj", b"bye");
    s.delete("del/obj").expect("delete");
    expect_not_found("stat after delete", s.stat("del/obj"));
    expect_not_found("second delete", s.delete("del/obj"));
    assert!(s.list("del").expect("list").is_empty());
}

/// A put whose source fails, or a writer dropped before commit, leaves nothing behind and does
/// not touch an existing object.
pub fn failed_puts_leave_nothing(h: &dyn Harness) {
    let s = h.open(false);
    assert!(s
        .put("fail/new", &mut FailingReader { ok_bytes: 3 << 20 })
        .is_err());
    expect_not_found("object of a failed put", s.stat("fail/new"));
    put(&*s, "fail/old", b"original");
    assert!(s
        .put("fail/old", &mut FailingReader { ok_bytes: 1000 })
        .is_err());
    assert_eq!(
        get_all(&*s, "fail/old"),
        b"original",
        "a failed overwrite keeps the old object"
    );
    let mut w = s.writer("fail/dropped").expect("writer");
    w.write(b"partial").expect("write");
    drop(w);
    expect_not_found("object of a dropped writer", s.stat("fail/dropped"));
    let mut w = s.writer("fail/aborted").expect("writer");
    w.write(b"partial").expect("write");
    w.abort();
    expect_not_found("object of an aborted writer", s.stat("fail/aborted"));
    let names: Vec<String> = s
        .list("fail")
        .expect("list")
        .into_iter()
        .map(|m| m.path)
        .collect();
    assert_eq!(names, ["fail/old"], "no leftovers are listed");
}

/// The info of a store names it; local paths exist exactly where the harness says.
pub fn info_and_local_paths(h: &dyn Harness) {
    let s = h.open(false);
    let info = s.info().expect("info");
    assert_eq!(info.config.instance(), s.instance());
    assert!(!info.kind.is_empty(), "a kind is reported");
    if let (Some(total), Some(free)) = (info.total, info.free) {
        assert!(free <= total, "free {free} <= total {total}");
    }
    put(&*s, "lp/obj", b"local");
    let local = s.local_path("lp/obj").expect("local_path");
    if h.has_local_paths() {
        let local = local.expect("a local path");
        assert_eq!(
            std::fs::read(&local).expect("read the local file"),
            b"local"
        );
    } else {
        assert!(local.is_none(), "no local path: {local:?}");
    }
    assert!(
        s.full_path("lp/obj").ends_with("lp/obj"),
        "{}",
        s.full_path("lp/obj")
    );
}

/// Generates one `#[test]` per conformance case for the harness built by `$harness`.
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@cases $harness;
            round_trip, empty_object, ranges, nested_paths_and_list, concurrent_puts,
            concurrent_puts_same_key,
            large_streamed_object, read_only, invalid_paths, not_found, delete,
            failed_puts_leave_nothing, info_and_local_paths);
    };
    (@cases $harness:expr; $($case:ident),*) => {
        $(
            #[test]
            fn $case() {
                let harness = $harness;
                $crate::conformance::$case(&harness);
            }
        )*
    };
}
