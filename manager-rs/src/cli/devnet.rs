//! `damocles-manager devnet`: the whole stack on one machine. Starts this manager on the
//! embedded devnet and a damocles-worker with default configs in one directory, seals N
//! sectors to Finished with a live view, and ends with a summary read from the chain.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use damocles_manager_api::rpc::SealerCliApiClient;
use damocles_manager_api::types::{SectorJob, SectorState, SectorWorkerState};
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};

use crate::config::{ManagerConfig, CONFIG_FILE};
use crate::rpc::DamoclesApiClient;

/// The devnet's miner.
const MINER: u64 = 10000;

/// `devnet`.
#[derive(Debug, Args)]
pub struct DevnetArgs {
    /// Directory of the run: `manager/` (home), `worker/` (config and sealing stores), logs.
    /// An existing one is reused: the chain and the sectors go on.
    #[arg(long, default_value = "./devnet-home")]
    pub dir: PathBuf,
    /// Sectors to seal to Finished in this run.
    #[arg(long, default_value_t = 2)]
    pub sectors: usize,
    /// Sealing threads of the worker.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Start from an empty directory (removes `--dir` first).
    #[arg(long)]
    pub fresh: bool,
    /// The manager's API address.
    #[arg(long, default_value = "127.0.0.1:1789")]
    pub listen: SocketAddr,
    /// The worker binary (default: `damocles-worker` beside this executable).
    #[arg(long)]
    pub worker_bin: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 1800)]
    pub timeout_secs: u64,
}

struct Proc {
    name: &'static str,
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM, then SIGKILL after a grace period.
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        tracing::warn!(process = self.name, "did not stop in 10 s; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd`, logging to `log`, and waits for its `<prefix> ADDR` line on stdout.
fn spawn(name: &'static str, mut cmd: Command, log: &Path, prefix: &str) -> Result<Proc> {
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(file)
        .spawn()
        .with_context(|| format!("starting the {name}"))?;
    let stdout = child.stdout.take().context("the child's stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let proc = Proc { name, child };
    loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with(prefix) => break,
            Some(Ok(_)) => continue,
            _ => bail!(
                "the {name} stopped before it was ready; see {}",
                log.display()
            ),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Ok(proc)
}

fn worker_config(manager: SocketAddr, persist: &Path, worker_dir: &Path, threads: usize) -> String {
    let mut cfg = format!(
        r#"# damocles-worker config written by `damocles-manager devnet`.
[worker]
name = "devnet-worker"
rpc_server.host = "127.0.0.1"
rpc_server.port = 17890

[sector_manager]
rpc_client.addr = "http://{manager}"

[sealing]
allowed_miners = [{MINER}]
allowed_sizes = ["2KiB"]
enable_deals = true
seal_interval = "1s"
recover_interval = "5s"
rpc_polling_interval = "2s"

[[attached]]
name = "persist"
location = "{persist}"
"#,
        persist = persist.display()
    );
    for i in 0..threads {
        cfg.push_str(&format!(
            "\n[[sealing_thread]]\nlocation = \"{}\"\n",
            worker_dir.join(format!("sealing-{i}")).display()
        ));
    }
    cfg
}

fn state_name(st: &SectorState) -> String {
    st.latest_state
        .as_ref()
        .map(|r| r.state_change.next.clone())
        .unwrap_or_else(|| "Allocated".into())
}

impl DevnetArgs {
    /// Runs the stack until `sectors` sectors are finished.
    pub fn run(self) -> Result<()> {
        if self.fresh && self.dir.exists() {
            std::fs::remove_dir_all(&self.dir)
                .with_context(|| format!("removing {}", self.dir.display()))?;
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let dir = self
            .dir
            .canonicalize()
            .with_context(|| format!("resolving {}", self.dir.display()))?;
        let home = dir.join("manager");
        let self_exe = std::env::current_exe().context("finding this executable")?;
        if !home.join(CONFIG_FILE).exists() {
            std::fs::create_dir_all(&home)?;
            for d in ["persist", "pieces"] {
                std::fs::create_dir_all(home.join(d))?;
            }
            let cfg = ManagerConfig::devnet_default(&home, MINER, 2048);
            std::fs::write(home.join(CONFIG_FILE), cfg.to_toml()?)
                .with_context(|| format!("writing {}", home.join(CONFIG_FILE).display()))?;
            println!("devnet: new chain in {}", dir.display());
        } else {
            println!("devnet: continuing the chain in {}", dir.display());
        }
        let worker_bin = self.worker_bin.clone().unwrap_or_else(|| {
            self_exe
                .parent()
                .map(|p| p.join("damocles-worker"))
                .unwrap_or_else(|| PathBuf::from("damocles-worker"))
        });
        if !worker_bin.is_file() {
            bail!(
                "{} not found: build it (cargo build -p damocles-worker) or pass --worker-bin",
                worker_bin.display()
            );
        }

        let mut manager_cmd = Command::new(&self_exe);
        manager_cmd.arg("--home").arg(&home).args([
            "daemon",
            "run",
            "--poster",
            "--miner",
            "--listen",
            &self.listen.to_string(),
        ]);
        let _manager = spawn(
            "manager",
            manager_cmd,
            &dir.join("manager.log"),
            "damocles-manager listening on",
        )?;
        println!(
            "devnet: manager on {} (log {})",
            self.listen,
            dir.join("manager.log").display()
        );

        let worker_dir = dir.join("worker");
        std::fs::create_dir_all(&worker_dir)?;
        let worker_cfg = worker_dir.join("worker.toml");
        std::fs::write(
            &worker_cfg,
            worker_config(
                self.listen,
                &home.join("persist"),
                &worker_dir,
                self.threads,
            ),
        )?;
        let mut worker_cmd = Command::new(&worker_bin);
        worker_cmd.args(["daemon", "-c"]).arg(&worker_cfg);
        let _worker = spawn(
            "worker",
            worker_cmd,
            &dir.join("worker.log"),
            "damocles-worker listening on",
        )?;
        println!(
            "devnet: worker with {} sealing threads (log {})",
            self.threads,
            dir.join("worker.log").display()
        );

        let rt = super::runtime()?;
        let client = HttpClientBuilder::default()
            .build(format!("http://{}/rpc/v0", self.listen))
            .context("the manager client")?;
        let done_before = rt
            .block_on(SealerCliApiClient::list_sectors(
                &client,
                SectorWorkerState::Offline,
                SectorJob::All,
            ))
            .map_err(|e| anyhow::anyhow!("listing sectors: {e}"))?
            .iter()
            .filter(|s| s.finalized && s.abort_reason.is_empty())
            .count();
        let started = Instant::now();
        let mut first_seen: BTreeMap<String, Instant> = BTreeMap::new();
        let mut last_view = String::new();
        let tty = std::io::stdout().is_terminal();
        let finished = loop {
            let view = self.view(&rt, &client, &mut first_seen)?;
            let done = view.0 - done_before;
            if view.1 != last_view {
                if tty {
                    print!("\x1b[2J\x1b[H");
                }
                print!("{}", view.1);
                println!(
                    "finished this run: {done}/{}   elapsed {:.0}s",
                    self.sectors,
                    started.elapsed().as_secs_f64()
                );
                std::io::stdout().flush()?;
                last_view = view.1;
            }
            if done >= self.sectors {
                break done;
            }
            if started.elapsed() > Duration::from_secs(self.timeout_secs) {
                bail!(
                    "only {done} of {} sectors finished in {} s; see the logs in {}",
                    self.sectors,
                    self.timeout_secs,
                    dir.display()
                );
            }
            std::thread::sleep(Duration::from_secs(1));
        };
        self.summary(&rt, &client, finished, started.elapsed())
    }

    /// Finished sectors in all, and the table of the sectors in work.
    fn view(
        &self,
        rt: &tokio::runtime::Runtime,
        client: &HttpClient,
        first_seen: &mut BTreeMap<String, Instant>,
    ) -> Result<(usize, String)> {
        let online = rt
            .block_on(SealerCliApiClient::list_sectors(
                client,
                SectorWorkerState::Online,
                SectorJob::All,
            ))
            .map_err(|e| anyhow::anyhow!("listing sectors: {e}"))?;
        let offline = rt
            .block_on(SealerCliApiClient::list_sectors(
                client,
                SectorWorkerState::Offline,
                SectorJob::All,
            ))
            .map_err(|e| anyhow::anyhow!("listing sectors: {e}"))?;
        let mut out = format!("{:<16} {:<22} {:>8}\n", "SECTOR", "STATE", "ELAPSED");
        for st in &online {
            let id = st.id.to_string();
            let since = *first_seen.entry(id.clone()).or_insert_with(Instant::now);
            out.push_str(&format!(
                "{:<16} {:<22} {:>7}s\n",
                id,
                state_name(st),
                since.elapsed().as_secs()
            ));
        }
        let finished = offline
            .iter()
            .filter(|s| s.finalized && s.abort_reason.is_empty())
            .count();
        Ok((finished, out))
    }

    fn summary(
        &self,
        rt: &tokio::runtime::Runtime,
        client: &HttpClient,
        finished: usize,
        elapsed: Duration,
    ) -> Result<()> {
        let chain = rt
            .block_on(DamoclesApiClient::chain_sectors(client, MINER))
            .map_err(|e| anyhow::anyhow!("reading the chain: {e}"))?;
        let head = rt
            .block_on(DamoclesApiClient::chain_head(client))
            .map_err(|e| anyhow::anyhow!("reading the chain: {e}"))?;
        let verified = chain.active.iter().filter(|s| s.proof_verified).count();
        println!();
        println!(
            "devnet: {finished} sectors finished in {:.0}s; chain head {}",
            elapsed.as_secs_f64(),
            head.head.epoch
        );
        println!(
            "devnet: miner t0{MINER}: {} sectors active ({verified} with verified proofs), {} pre-committed, {} faulty",
            chain.active.len(),
            chain.pre_committed.len(),
            chain.faulty.len()
        );
        println!(
            "devnet: {} WindowPoSts accepted so far (the manager runs with --poster)",
            head.summary
                .get("window_posts_accepted")
                .copied()
                .unwrap_or_default()
        );
        let count = |k: &str| head.summary.get(k).copied().unwrap_or_default();
        println!(
            "devnet: {} blocks won with verified WinningPoSts, {} rejected, {} missed (the manager runs with --miner)",
            count("blocks_won"),
            count("blocks_rejected"),
            count("blocks_missed")
        );
        println!("devnet: stopping the worker and the manager; run again to continue this chain");
        Ok(())
    }
}
