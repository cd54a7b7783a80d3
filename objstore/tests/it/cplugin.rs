//! The C example plugin (`examples/c/memstore.c`), built here with the machine's C compiler.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use objstore::conformance::Harness;
use objstore::{Error, LoadError, ObjectStore, PluginLibrary, StoreConfig};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds a variant of the C plugin (with extra `-D` flags) into a directory kept for the
/// whole test process; returns the library path. Tests running at once share one build per
/// variant, and the file appears only once complete.
pub(crate) fn build_c_plugin(variant: &str, defines: &[&str]) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static BUILDING: Mutex<()> = Mutex::new(());
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("tmp"));
    let out = dir.path().join(variant).join("libobjstore_cmem.so");
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
    if out.is_file() {
        return out;
    }
    std::fs::create_dir_all(out.parent().expect("parent")).expect("mkdir");
    let partial = out.with_extension("so.partial");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let status = Command::new(&cc)
        .args([
            "-shared", "-fPIC", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-pthread",
        ])
        .arg("-I")
        .arg(manifest_dir().join("include"))
        .args(defines)
        .arg(manifest_dir().join("examples/c/memstore.c"))
        .arg("-o")
        .arg(&partial)
        .status()
        .unwrap_or_else(|e| panic!("run the C compiler {cc}: {e}"));
    assert!(
        status.success(),
        "{cc} failed to build the C plugin ({variant})"
    );
    std::fs::rename(&partial, &out).expect("rename the built plugin");
    out
}

fn c_plugin() -> Arc<PluginLibrary> {
    PluginLibrary::load(&build_c_plugin("ok", &[])).unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) struct CHarness {
    lib: Arc<PluginLibrary>,
    namespace: String,
}

impl Harness for CHarness {
    fn open(&self, read_only: bool) -> Arc<dyn ObjectStore> {
        let mut cfg = StoreConfig::new("cmem-test", self.namespace.clone());
        cfg.read_only = read_only;
        Arc::new(self.lib.open(cfg).unwrap_or_else(|e| panic!("open: {e}")))
    }
    fn has_local_paths(&self) -> bool {
        false
    }
}

pub(crate) fn harness() -> CHarness {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    CHarness {
        lib: c_plugin(),
        namespace: format!(
            "ns-{}",
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ),
    }
}

mod conformance {
    objstore::conformance_tests!(super::harness());
}

#[test]
fn loads_by_name_and_reports_its_name() {
    let path = build_c_plugin("ok", &[]);
    let lib = PluginLibrary::load_by_name(path.parent().expect("dir"), "cmem").expect("by name");
    assert_eq!(lib.name(), "cmem");
    let err =
        PluginLibrary::load_by_name(path.parent().expect("dir"), "nope").expect_err("unknown");
    match err {
        LoadError::NoSuchPlugin { tried, .. } => {
            assert!(tried.contains("libobjstore_nope.so"), "{tried}")
        }
        other => panic!("{other}"),
    }
}

#[test]
fn a_missing_file_is_named() {
    let err = PluginLibrary::load(Path::new("/nonexistent/libobjstore_x.so")).expect_err("missing");
    assert!(matches!(err, LoadError::NotFound { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("/nonexistent/libobjstore_x.so: no such file"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_a_library_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let fake = dir.path().join("libobjstore_fake.so");
    std::fs::write(&fake, b"not an ELF file").expect("write");
    let err = PluginLibrary::load(&fake).expect_err("not a library");
    assert!(matches!(err, LoadError::Open { .. }), "{err}");
    assert!(err.to_string().contains("cannot load"), "{err}");
}

#[test]
fn a_library_without_the_entry_symbol_is_refused() {
    let lib = build_c_plugin("no-entry", &["-DMEMSTORE_NO_ENTRY"]);
    let err = PluginLibrary::load(&lib).expect_err("no entry");
    assert!(matches!(err, LoadError::MissingSymbol { .. }), "{err}");
    assert!(err.to_string().contains("objstore_plugin_entry"), "{err}");
}

#[test]
fn a_table_with_a_null_function_is_refused() {
    let lib = build_c_plugin("null-list", &["-DMEMSTORE_NULL_LIST"]);
    let err = PluginLibrary::load(&lib).expect_err("null function");
    assert!(matches!(err, LoadError::BadTable { .. }), "{err}");
    assert!(err.to_string().contains("function list is NULL"), "{err}");
}

#[test]
fn another_abi_version_is_refused() {
    let lib = build_c_plugin("abi-99", &["-DMEMSTORE_ABI_VERSION=99"]);
    let err = PluginLibrary::load(&lib).expect_err("abi");
    match err {
        LoadError::AbiMismatch {
            found, expected, ..
        } => assert_eq!((found, expected), (99, 1)),
        other => panic!("{other}"),
    }
}

#[test]
fn a_rejected_config_is_an_invalid_config_error_with_the_plugins_reason() {
    let lib = c_plugin();
    let err = lib
        .open(StoreConfig::new("named", ""))
        .expect_err("empty path");
    match &err {
        Error::InvalidConfig { instance, reason } => {
            assert_eq!(instance, "named");
            assert!(reason.contains("must not be empty"), "{reason}");
        }
        other => panic!("{other}"),
    }
    let mut cfg = StoreConfig::new("named", "ns-reject");
    cfg.meta.insert("reject".into(), "yes".into());
    let err = lib.open(cfg).expect_err("rejected");
    assert!(err.to_string().contains("Meta.reject"), "{err}");
}

/// The plugin's conformance run under valgrind: no definite leak and no invalid access on
/// either side of the C boundary.
#[test]
fn conformance_through_the_c_plugin_is_clean_under_valgrind() {
    objstore::conformance::check_under_valgrind(
        "cplugin::conformance::",
        objstore::conformance::CASES,
    );
}
