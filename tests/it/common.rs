//! A damocles-manager daemon in a temporary home, started as the real binary.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use damocles_manager::config::ManagerConfig;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};

use crate::s3server::{S3Server, BUCKET};

pub use damocles_tests::bins::manager as manager_bin;
pub const MINER: u64 = 10000;

/// A daemon with its home; killed when dropped.
pub struct TestManager {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    pub child: Option<Child>,
    pub addr: Option<SocketAddr>,
    pub cfg: ManagerConfig,
    /// Extra arguments of `daemon run` (`--poster`).
    pub run_args: Vec<String>,
    /// Extra environment of the daemon.
    pub run_env: Vec<(String, String)>,
    starts: usize,
}

/// The devnet config tests start from: one 2 KiB miner, a persist store and a piece store
/// under the home, quick commitments.
pub fn devnet_config(home: &Path) -> ManagerConfig {
    std::fs::create_dir_all(home.join("persist")).expect("persist dir");
    std::fs::create_dir_all(home.join("pieces")).expect("pieces dir");
    ManagerConfig::devnet_default(home, MINER, 2048)
}

/// A persist store `name` on the S3 plugin in the test server at `endpoint`, under the
/// `sectors` prefix of its bucket (objects are files under `<root>/<bucket>/sectors/`).
pub fn s3_persist_store(
    name: &str,
    endpoint: &str,
) -> damocles_manager::config::PersistStoreConfig {
    use crate::s3server::{ACCESS_KEY, SECRET_KEY};
    let mut s3 = damocles_manager::config::PersistStoreConfig {
        name: name.into(),
        path: format!("s3://{BUCKET}/sectors"),
        plugin_name: Some("s3".into()),
        ..Default::default()
    };
    for (k, v) in [
        ("Endpoint", endpoint),
        ("Bucket", BUCKET),
        ("Prefix", "sectors"),
        ("AccessKey", ACCESS_KEY),
        ("SecretKey", SECRET_KEY),
        ("MaxRetries", "0"),
        ("ReadTimeoutSecs", "5"),
    ] {
        s3.meta.insert(k.into(), v.into());
    }
    s3
}

/// The worker's `[[attached]]` block for the manager's S3 store `name`: the plugin, and no
/// meta of its own (the manager's `Meta` reaches the transfer).
pub fn s3_attached(name: &str) -> String {
    format!(
        "[[attached]]\nname = \"{name}\"\nlocation = \"s3://{BUCKET}/sectors\"\nplugin = \"s3\"\n"
    )
}

/// The objects of sector `number` in the S3 test server (files under `<root>/<bucket>/`),
/// relative to the store's `sectors` prefix.
pub fn sector_objects(server: &S3Server, number: u64) -> Vec<String> {
    let root = server.root.join(BUCKET).join("sectors");
    let name = format!("s-t0{MINER}-{number}");
    let mut out = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let rel = path
                    .strip_prefix(&root)
                    .expect("under root")
                    .display()
                    .to_string();
                if rel.split('/').any(|c| c == name) {
                    out.push(rel);
                }
            }
        }
    }
    out.sort();
    out
}

/// A manager (not started) that allocates one sector and has the persist store `s3` in
/// `server`; `edit` changes the rest of its config.
pub fn one_sector_manager_with_s3_store(
    server: &S3Server,
    edit: impl FnOnce(&mut ManagerConfig),
) -> TestManager {
    let endpoint = server.endpoint.clone();
    TestManager::with_config(move |c| {
        c.miners[0].sector.max_number = Some(1);
        c.common
            .persist_stores
            .push(s3_persist_store("s3", &endpoint));
        edit(c);
    })
}

/// Devnet proving periods of 32 s: 4 deadlines of 8 one-second epochs, challenges drawn 5
/// epochs before a deadline opens.
///
/// Why these numbers: a runner starts proving 2 epochs after the challenge (the capped
/// `ChallengeConfidence`), so a proof has 3 s before the deadline opens and 11 s before it
/// closes. Measured on the 2-core test machine while the same test's worker runs two C2s (the
/// heaviest load a cluster test makes; `cluster::window_post_is_proven_in_time_…` prints it),
/// a WindowPoSt of one 2 KiB partition takes 1.4–1.5 s from the check to the verified proof with
/// the sealing priority on (sealing at nice 5; 1.2–1.3 s at nice 10), 2.1–2.6 s with it off: ready before the open either way, with 8 s of
/// the window left over for a retried batch (a retry comes one epoch later). Cluster tests run
/// one at a time (`.config/nextest.toml`), so no other test's C2 adds to that load.
pub fn short_proving_periods(c: &mut ManagerConfig) {
    let dev = c.devnet.as_mut().expect("devnet");
    dev.wpost_period_deadlines = 4;
    dev.wpost_challenge_window = 8;
    dev.wpost_challenge_lookback = 5;
    dev.fault_declaration_cutoff = 6;
}

impl TestManager {
    /// A home with the default test config, not started.
    pub fn new() -> Self {
        Self::with_config(|_| {})
    }

    /// A home whose config `edit` changes.
    pub fn with_config(edit: impl FnOnce(&mut ManagerConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let home = dir.path().join("home");
        let mut cfg = devnet_config(&home);
        // Tests write the files they import as deals beside the home.
        if let Some(dev) = cfg.devnet.as_mut() {
            dev.deal_import_dirs = vec![dir.path().display().to_string()];
        }
        // Plugins are next to the binary under test.
        cfg.common.plugins.dir = Some(damocles_tests::bins::bin_dir().display().to_string());
        edit(&mut cfg);
        std::fs::write(
            home.join("sector-manager.cfg"),
            cfg.to_toml().expect("toml"),
        )
        .expect("write cfg");
        // The API secret and the local admin token, as `daemon init` makes them.
        damocles_auth::open_home(&home).expect("API secret");
        TestManager {
            dir,
            home,
            child: None,
            addr: None,
            cfg,
            run_args: Vec::new(),
            run_env: Vec::new(),
            starts: 0,
        }
    }

    /// Changes the config for the next start.
    pub fn reconfigure(&mut self, edit: impl FnOnce(&mut ManagerConfig)) {
        assert!(self.child.is_none(), "stop the manager first");
        edit(&mut self.cfg);
        std::fs::write(
            self.home.join("sector-manager.cfg"),
            self.cfg.to_toml().expect("toml"),
        )
        .expect("write cfg");
    }

    /// Starts the daemon (on the same port as before after a restart).
    pub fn start(&mut self) -> SocketAddr {
        assert!(self.child.is_none(), "already running");
        let listen = self
            .addr
            .map_or("127.0.0.1:0".to_string(), |a| a.to_string());
        self.starts += 1;
        let log =
            std::fs::File::create(self.dir.path().join(format!("manager-{}.log", self.starts)))
                .expect("log");
        let mut child = Command::new(manager_bin())
            .args(["--home"])
            .arg(&self.home)
            .args(["daemon", "run", "--listen", &listen])
            .args(&self.run_args)
            .env("RUST_LOG", "info,jsonrpsee=warn")
            .envs(self.run_env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn the manager");
        let addr = wait_listening(&mut child, "damocles-manager", || self.logs());
        self.child = Some(child);
        self.addr = Some(addr);
        addr
    }

    /// Everything the daemon logged so far.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for i in 1..=self.starts {
            let p = self.dir.path().join(format!("manager-{i}.log"));
            out.push_str(&format!(
                "--- start {i}\n{}",
                std::fs::read_to_string(p).unwrap_or_default()
            ));
        }
        out
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: sending a signal to our own child process.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let status = c.wait().expect("wait");
            assert!(
                status.success(),
                "the manager did not stop cleanly: {status}\n{}",
                self.logs()
            );
        }
    }

    /// The JSON-RPC URL.
    pub fn url(&self) -> String {
        format!("http://{}/rpc/v0", self.addr.expect("started"))
    }

    /// A new token of the daemon's secret granting `perm`.
    pub fn token(&self, perm: damocles_auth::Perm) -> String {
        let secret = damocles_auth::Secret::load(&self.home.join(damocles_auth::SECRET_FILE))
            .expect("API secret");
        damocles_auth::create_token(&secret, perm, Some("test"), None).expect("token")
    }

    /// The local admin token of the home.
    pub fn admin_token(&self) -> String {
        damocles_auth::read_local_token(&self.home).expect("admin token")
    }

    /// A typed client with the admin token.
    pub fn client(&self) -> HttpClient {
        self.client_with(Some(&self.admin_token()))
    }

    /// A typed client sending `token`.
    pub fn client_with(&self, token: Option<&str>) -> HttpClient {
        let mut headers = http::HeaderMap::new();
        if let Some(t) = token {
            headers.insert(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_str(&format!("Bearer {t}")).expect("header"),
            );
        }
        HttpClientBuilder::default()
            .set_headers(headers)
            .request_timeout(Duration::from_secs(120))
            .build(self.url())
            .expect("client")
    }

    /// A raw JSON-RPC call with the admin token: the whole response object.
    pub fn raw(&self, method: &str, params: serde_json::Value) -> serde_json::Value {
        raw_call(&self.url(), Some(&self.admin_token()), method, params).1
    }

    /// Runs `damocles-manager util …` against the daemon.
    pub fn util(&self, args: &[&str]) -> std::process::Output {
        Command::new(manager_bin())
            .args(["--home"])
            .arg(&self.home)
            .args(["util", "--listen", &self.addr.expect("started").to_string()])
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("DAMOCLES_API_TOKEN")
            .env_remove("DAMOCLES_MANAGER_API_INFO")
            .output()
            .expect("run util")
    }
}

impl Drop for TestManager {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits (60 s at most) for `<name> listening on ADDR` on a child's stdout, then keeps
/// draining it so the child never blocks; panics with `logs()` if the child stops first.
pub fn wait_listening(child: &mut Child, name: &str, logs: impl Fn() -> String) -> SocketAddr {
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let prefix = format!("{name} listening on ");
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = loop {
        assert!(
            Instant::now() < deadline,
            "{name} did not start:\n{}",
            logs()
        );
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(a) = line.trim().strip_prefix(&prefix) {
                    break a.parse::<SocketAddr>().expect("address");
                }
            }
            _ => {
                let status = child.wait().expect("wait");
                panic!("{name} exited ({status}) before listening:\n{}", logs());
            }
        }
    };
    std::thread::spawn(move || for _ in lines {});
    addr
}

/// POSTs one JSON-RPC request; returns the HTTP status and the body as JSON.
pub fn raw_call(
    url: &str,
    token: Option<&str>,
    method: &str,
    params: serde_json::Value,
) -> (u16, serde_json::Value) {
    let body = serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 7});
    let mut req = reqwest::blocking::Client::new().post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().expect("POST");
    let status = resp.status().as_u16();
    let text = resp.text().expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method}: not JSON ({e}): {text}")),
    )
}

/// A util command's output as text, failing the test if it failed.
pub fn ok_text(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
