//! The binaries and plugins a process-level test starts, found in the build directory of the
//! test itself and built there on first use.
//!
//! A test binary lives in `<target>/<profile>/deps/`; the daemons and the objstore plugins it
//! starts are in `<target>/<profile>/`. Unless `DAMOCLES_TESTS_PREBUILT` is set (the README's
//! test command sets it after its build phase), the first call in a test process runs the
//! workspace build, so `cargo test -p damocles-tests` on a fresh checkout starts binaries that
//! match the sources. In the test profile that build is the one of `scripts/build.sh` (tests
//! included), so cargo's feature resolution is the same and nothing is built twice; when
//! everything is fresh it costs about a second. A bench builds the daemons in its own profile.
//! That build knows nothing of the outer command's `--features`, `--target` or `--config`: a run
//! with any of them builds the daemons itself, the same way, and sets `DAMOCLES_TESTS_PREBUILT`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Set (to anything) when the daemons were built before the tests ran.
pub const PREBUILT_ENV: &str = "DAMOCLES_TESTS_PREBUILT";

/// `damocles-manager`, built if needed.
pub fn manager() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| binary("damocles-manager"))
}

/// `damocles-worker`, built if needed; `DAMOCLES_WORKER_BIN` names another one.
pub fn worker() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("DAMOCLES_WORKER_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => binary("damocles-worker"),
    })
}

/// The directory of the daemons, which is also where the objstore plugins
/// (`libobjstore_fs.so`, `libobjstore_s3.so`) are built.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = profile_dir();
        if std::env::var_os(PREBUILT_ENV).is_none() {
            build(&dir);
        }
        dir
    })
}

fn binary(name: &str) -> PathBuf {
    let bin = bin_dir().join(name);
    assert!(
        bin.is_file(),
        "{} is missing after the build: run `bash scripts/build.sh`",
        bin.display()
    );
    bin
}

/// `<target>/<profile>`: two levels above the running test binary.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not under <target>/<profile>/deps", exe.display()))
        .to_path_buf()
}

/// Builds the workspace's libraries, plugins, binaries and tests in the profile of `dir`.
fn build(dir: &Path) {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let target = dir.parent().expect("the target directory");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(workspace)
        .args(["build", "--workspace", "--lib", "--bins"])
        .env("CARGO_TARGET_DIR", target);
    match dir.file_name().and_then(|n| n.to_str()) {
        // The test build: the targets of `scripts/build.sh`, tests included.
        Some("debug") => {
            cmd.arg("--tests");
        }
        // A bench: the daemons and plugins in the bench's profile.
        Some("release") => {
            cmd.arg("--release");
        }
        Some(profile) => {
            cmd.args(["--profile", profile]);
        }
        None => panic!("{} names no cargo profile", dir.display()),
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}
