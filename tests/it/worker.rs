//! A damocles-worker daemon started as the real binary against a [`TestManager`].
//!
//! The worker binary is the one built beside the manager binary ([`damocles_tests::bins`]);
//! `DAMOCLES_WORKER_BIN` overrides it.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::TestManager;

/// The worker binary ([`damocles_tests::bins::worker`]).
pub fn worker_bin() -> PathBuf {
    damocles_tests::bins::worker().to_path_buf()
}

/// A worker daemon in a directory of its own; killed when dropped.
pub struct TestWorker {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub child: Option<Child>,
    pub addr: Option<SocketAddr>,
    /// Extra environment of the daemon (e.g. a power-cut preload).
    pub env: Vec<(String, String)>,
    starts: usize,
}

impl TestWorker {
    /// A worker of manager `m` with `threads` sealing threads in `dir`, persisting into the
    /// manager's `persist` store; `extra` is appended to the config.
    pub fn new(m: &TestManager, dir: &Path, threads: usize, extra: &str) -> Self {
        Self::new_via(m, m.addr.expect("manager started"), dir, threads, extra)
    }

    /// The same, reaching the manager at `manager` (a proxy in front of it).
    pub fn new_via(
        m: &TestManager,
        manager: SocketAddr,
        dir: &Path,
        threads: usize,
        extra: &str,
    ) -> Self {
        let attached = format!(
            "[[attached]]\nname = \"persist\"\nlocation = \"{}\"\n",
            m.home.join("persist").display()
        );
        Self::with_attached(
            manager,
            &m.token(damocles_auth::Perm::Write),
            dir,
            threads,
            &attached,
            extra,
        )
    }

    /// A worker of the manager at `manager` whose persist stores are the `attached` TOML; it
    /// calls with `token` ([`TestManager::token`]), given in its config.
    pub fn with_attached(
        manager: SocketAddr,
        token: &str,
        dir: &Path,
        threads: usize,
        attached: &str,
        extra: &str,
    ) -> Self {
        std::fs::create_dir_all(dir).expect("worker dir");
        let mut cfg = format!(
            r#"[worker]
name = "test-worker"
ping_interval = "2s"
rpc_server.host = "127.0.0.1"
rpc_server.port = 0
rpc_server.home = "{home}"

[sector_manager]
rpc_client.addr = "http://{manager}"
rpc_client.token = "{token}"
piece_token = "{token}"

[sealing]
allowed_miners = [{miner}]
allowed_sizes = ["2KiB"]
enable_deals = true
max_retries = 3
seal_interval = "1s"
recover_interval = "1s"
rpc_polling_interval = "1s"

{attached}"#,
            miner = crate::common::MINER,
            home = dir.join("home").display(),
        );
        for i in 0..threads {
            cfg.push_str(&format!(
                "\n[[sealing_thread]]\nlocation = \"{}\"\n",
                dir.join(format!("t{i}")).display()
            ));
        }
        cfg.push_str(extra);
        let config = dir.join("worker.toml");
        std::fs::write(&config, cfg).expect("worker config");
        TestWorker {
            dir: dir.to_path_buf(),
            config,
            child: None,
            addr: None,
            env: Vec::new(),
            starts: 0,
        }
    }

    /// The local admin token of the worker's control server (made at its first start).
    pub fn admin_token(&self) -> String {
        damocles_auth::read_local_token(&self.dir.join("home")).expect("worker admin token")
    }

    /// Starts the daemon; answers its control address.
    pub fn start(&mut self) -> SocketAddr {
        assert!(self.child.is_none(), "already running");
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("worker-{}.log", self.starts)))
            .expect("log");
        let mut child = Command::new(worker_bin())
            .args(["daemon", "-c"])
            .arg(&self.config)
            .env("RUST_LOG", "info,jsonrpsee=warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn the worker");
        let addr = crate::common::wait_listening(&mut child, "damocles-worker", || self.logs());
        self.child = Some(child);
        self.addr = Some(addr);
        addr
    }

    /// Everything the daemon logged so far.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for i in 1..=self.starts {
            let p = self.dir.join(format!("worker-{i}.log"));
            out.push_str(&format!(
                "--- worker start {i}\n{}",
                std::fs::read_to_string(p).unwrap_or_default()
            ));
        }
        out
    }

    /// Runs `damocles-worker worker …` against the daemon.
    pub fn control(&self, args: &[&str]) -> std::process::Output {
        Command::new(worker_bin())
            .arg("worker")
            .args(["--host", &self.addr.expect("started").to_string()])
            .args(["--token", &self.admin_token()])
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run worker control")
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        self.kill();
    }
}
