//! An S3-compatible server on loopback for the tests: `damocles-s3-test-server` (s3s-fs from
//! crates.io, with S3's 404 for directory keys; `tools/s3-test-server`), installed by the test
//! set-up (`scripts/test.sh`) into `/var/tmp/damocles-tools/bin`, or named by
//! `DAMOCLES_S3_TEST_SERVER`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub(crate) const BUCKET: &str = "damocles";
pub(crate) const ACCESS_KEY: &str = "damocles-test";
pub(crate) const SECRET_KEY: &str = "damocles-test-secret";

/// A running server with its own data directory; stopped when dropped.
pub(crate) struct S3Server {
    child: Child,
    pub(crate) endpoint: String,
    pub(crate) root: PathBuf,
    _dir: tempfile::TempDir,
}

pub(crate) fn server_binary() -> PathBuf {
    let bin = std::env::var_os("DAMOCLES_S3_TEST_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/damocles-tools/bin/damocles-s3-test-server"));
    assert!(
        bin.is_file(),
        "the S3 test server {} is missing: scripts/test.sh installs it (cargo install --locked --path tools/s3-test-server --root /var/tmp/damocles-tools)",
        bin.display()
    );
    bin
}

impl S3Server {
    /// Starts a server on a free loopback port with an empty bucket [`BUCKET`].
    pub(crate) fn start() -> S3Server {
        let bin = server_binary();
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().join("data");
        std::fs::create_dir_all(root.join(BUCKET)).expect("bucket dir");
        let mut child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&root)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the address");
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            panic!("the S3 test server did not start: {line:?}");
        };
        S3Server {
            endpoint: format!("http://{addr}"),
            child,
            root,
            _dir: dir,
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
