//! objstore-fs: the conformance suite directly and through the C ABI, plus what is special to
//! file stores.

use std::sync::Arc;

use objstore::conformance::Harness;
use objstore::{Error, ObjectStore, PluginLibrary, StoreConfig};
use objstore_fs::FsStore;

/// The fs plugin library built with this test.
fn fs_plugin() -> Arc<PluginLibrary> {
    objstore::conformance::built_plugin("fs")
}

struct Direct {
    dir: tempfile::TempDir,
}

impl Harness for Direct {
    fn open(&self, read_only: bool) -> Arc<dyn ObjectStore> {
        let mut cfg = StoreConfig::new("fs-direct", self.dir.path().to_string_lossy());
        cfg.read_only = read_only;
        Arc::new(FsStore::open(cfg).expect("open"))
    }
    fn has_local_paths(&self) -> bool {
        true
    }
}

fn direct() -> Direct {
    Direct {
        dir: tempfile::tempdir().expect("tmp"),
    }
}

struct ThroughPlugin {
    dir: tempfile::TempDir,
    lib: Arc<PluginLibrary>,
}

impl Harness for ThroughPlugin {
    fn open(&self, read_only: bool) -> Arc<dyn ObjectStore> {
        let mut cfg = StoreConfig::new("fs-plugin", self.dir.path().to_string_lossy());
        cfg.read_only = read_only;
        cfg.plugin_name = Some("fs".into());
        Arc::new(self.lib.open(cfg).expect("open through the plugin"))
    }
    fn has_local_paths(&self) -> bool {
        true
    }
}

fn through_plugin() -> ThroughPlugin {
    ThroughPlugin {
        dir: tempfile::tempdir().expect("tmp"),
        lib: fs_plugin(),
    }
}

mod direct {
    objstore::conformance_tests!(super::direct());
}

mod plugin {
    objstore::conformance_tests!(super::through_plugin());
}

#[test]
fn the_plugin_reports_its_name_and_loads_by_name() {
    let lib = fs_plugin();
    assert_eq!(lib.name(), "fs");
    let dir = objstore::conformance::built_plugin_dir("fs");
    let by_name = PluginLibrary::load_by_name(&dir, "fs").expect("by name");
    assert_eq!(by_name.name(), "fs");
}

#[test]
fn open_refuses_a_bad_root_with_a_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    let missing = dir.path().join("missing");
    let err =
        FsStore::open(StoreConfig::new("s", missing.to_string_lossy())).expect_err("missing root");
    assert!(matches!(err, Error::InvalidConfig { .. }), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").expect("write");
    let err = FsStore::open(StoreConfig::new("s", file.to_string_lossy())).expect_err("not a dir");
    assert!(err.to_string().contains("not a directory"), "{err}");
    let err = FsStore::open(StoreConfig::new("s", "")).expect_err("empty path");
    assert!(err.to_string().contains("Path is empty"), "{err}");
    // Through the plugin the same refusal is an InvalidConfig error.
    let err = fs_plugin()
        .open(StoreConfig::new("s", missing.to_string_lossy()))
        .expect_err("missing root");
    assert!(matches!(err, Error::InvalidConfig { .. }), "{err}");
}

#[test]
fn an_empty_name_becomes_the_root_path() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = FsStore::open(StoreConfig::new("", dir.path().to_string_lossy())).expect("open");
    let root = std::fs::canonicalize(dir.path()).expect("canon");
    assert_eq!(store.instance(), root.to_string_lossy());
}

#[test]
fn strict_stores_refuse_symlinks_and_lax_ones_follow_them() {
    let dir = tempfile::tempdir().expect("tmp");
    let outside = tempfile::tempdir().expect("outside");
    std::fs::write(outside.path().join("secret"), b"secret").expect("write");
    std::fs::create_dir_all(dir.path().join("cache")).expect("mkdir");
    std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("cache/link"))
        .expect("link");
    std::os::unix::fs::symlink(outside.path(), dir.path().join("linkdir")).expect("link");

    let mut cfg = StoreConfig::new("strict", dir.path().to_string_lossy());
    cfg.strict = true;
    let strict = FsStore::open(cfg.clone()).expect("open");
    assert!(matches!(
        strict.stat("cache/link"),
        Err(Error::NotRegularFile { .. })
    ));
    assert!(matches!(
        strict.get("linkdir/secret"),
        Err(Error::NotRegularFile { .. })
    ));
    assert!(matches!(
        strict.put("linkdir/new", &mut &b"x"[..]),
        Err(Error::NotRegularFile { .. })
    ));
    assert!(
        strict.list("").expect("list").is_empty(),
        "symlinks are not objects"
    );
    assert!(
        strict.list("linkdir").expect("list").is_empty(),
        "nothing is listed through a link"
    );

    cfg.strict = false;
    let lax = FsStore::open(cfg).expect("open");
    assert_eq!(lax.stat("cache/link").expect("stat").size, 6);
    let listed: Vec<String> = lax
        .list("")
        .expect("list")
        .into_iter()
        .map(|m| m.path)
        .collect();
    assert_eq!(
        listed,
        ["cache/link"],
        "links to files are listed, links to dirs not followed"
    );
}

#[test]
fn a_path_through_a_file_is_not_found() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = FsStore::open(StoreConfig::new("s", dir.path().to_string_lossy())).expect("open");
    store.put("x/1", &mut &b"file"[..]).expect("put");
    assert!(matches!(store.stat("x/1/foo"), Err(Error::NotFound { .. })));
    assert!(matches!(
        store.delete("x/1/foo"),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.get("x/1/foo").map(|_| ()),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn temporary_files_are_invisible_and_local_paths_are_the_files() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = FsStore::open(StoreConfig::new("s", dir.path().to_string_lossy())).expect("open");
    let mut w = store.writer("sealed/s-t01000-1").expect("writer");
    w.write(b"half").expect("write");
    // While writing, the object does not exist and its temporary file is not listed.
    assert!(matches!(
        store.stat("sealed/s-t01000-1"),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.local_path("sealed/s-t01000-1"),
        Err(Error::NotFound { .. })
    ));
    assert!(store.list("").expect("list").is_empty());
    assert_eq!(w.commit().expect("commit"), 4);
    let local = store
        .local_path("sealed/s-t01000-1")
        .expect("local")
        .expect("some");
    assert_eq!(local, store.root().join("sealed/s-t01000-1"));
    assert_eq!(std::fs::read(local).expect("read"), b"half");
    let info = store.info().expect("info");
    assert!(info.kind.starts_with("fs/"), "{}", info.kind);
    assert!(info.total.expect("total") > 0);
}

/// The plugin's conformance run under valgrind: no definite leak and no invalid access on
/// either side of the C boundary.
#[test]
fn conformance_through_the_plugin_is_clean_under_valgrind() {
    objstore::conformance::check_under_valgrind("plugin::", objstore::conformance::CASES);
}
