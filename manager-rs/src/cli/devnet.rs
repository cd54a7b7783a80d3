//! `damocles-manager devnet`: the whole stack on one machine. Starts this manager on the
//! embedded devnet and a damocles-worker with default configs in one directory, and follows
//! the whole life of N sectors with a live view: sealed by the worker, persisted into an
//! objstore plugin store (the `fs` plugin), proven by an accepted WindowPoSt, and a block won
//! with a verified WinningPoSt; then a summary read from the chain.
//!
//! A new chain has short proving periods ([`PROVING_DEADLINES`] deadlines of 20 one-second
//! epochs), so every sector is proven within a few minutes of its activation. On a terminal
//! the view is redrawn every second; elsewhere (a log, CI) one line is printed per change.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use damocles_manager_api::rpc::SealerCliApiClient;
use damocles_manager_api::types::{SectorId, SectorJob, SectorState, SectorWorkerState};
use jsonrpsee::http_client::HttpClient;

use crate::config::{ManagerConfig, CONFIG_FILE};
use crate::rpc::DamoclesApiClient;

/// The devnet's miner.
const MINER: u64 = 10000;

/// Deadlines per proving period on a chain this command creates: with 20-epoch deadlines of 1 s
/// epochs, a proving period of two minutes.
pub const PROVING_DEADLINES: u64 = 6;

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
    /// Stop once the sectors are sealed, without waiting for their WindowPoSt and a block.
    #[arg(long)]
    pub seal_only: bool,
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

fn worker_config(
    manager: SocketAddr,
    token: &str,
    persist: &Path,
    worker_dir: &Path,
    threads: usize,
) -> String {
    let mut cfg = format!(
        r#"# damocles-worker config written by `damocles-manager devnet`.
[worker]
name = "devnet-worker"
rpc_server.host = "127.0.0.1"
rpc_server.port = 17890

[sector_manager]
rpc_client.addr = "http://{manager}"
# A `write` token of the manager (`damocles-manager util auth api-info --perm write`).
rpc_client.token = "{token}"
piece_token = "{token}"

[sealing]
allowed_miners = [{MINER}]
allowed_sizes = ["2KiB"]
enable_deals = true
seal_interval = "1s"
recover_interval = "5s"
rpc_polling_interval = "2s"

# The manager's persist store, reached through the `fs` objstore plugin (beside this binary).
[[attached]]
name = "persist"
location = "{persist}"
plugin = "fs"
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

/// The manager config of a chain this command creates: [`ManagerConfig::devnet_default`] with
/// the persist store served by the `fs` objstore plugin and proving periods of
/// [`PROVING_DEADLINES`] deadlines.
fn devnet_command_config(home: &Path) -> ManagerConfig {
    let mut cfg = ManagerConfig::devnet_default(home, MINER, 2048);
    for store in &mut cfg.common.persist_stores {
        store.plugin_name = Some("fs".into());
    }
    if let Some(dev) = cfg.devnet.as_mut() {
        dev.wpost_period_deadlines = PROVING_DEADLINES;
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
            let cfg = devnet_command_config(&home);
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

        // The manager would make them at its first start; the worker's token needs them first.
        let keys = damocles_auth::open_home(&home).context("the manager's API secret")?;
        let worker_token = damocles_auth::create_token(
            &keys.secret,
            damocles_auth::Perm::Write,
            Some("devnet-worker"),
            None,
        )?;
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
        let text = worker_config(
            self.listen,
            &worker_token,
            &home.join("persist"),
            &worker_dir,
            self.threads,
        );
        // It holds the worker's token: readable by its owner only.
        let _ = std::fs::remove_file(&worker_cfg);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options
            .open(&worker_cfg)
            .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
            .with_context(|| format!("writing {}", worker_cfg.display()))?;
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
        let client = super::util::client(
            &self.listen.to_string(),
            damocles_auth::read_local_token(&home).as_deref(),
        )
        .context("the manager client")?;
        let monitor = Monitor {
            rt: &rt,
            client: &client,
        };
        let before = monitor.snapshot()?;
        let started = Instant::now();
        let mut view = LiveView::new(std::io::stdout().is_terminal(), before.clone());
        let mut first_seen: BTreeMap<String, Instant> = BTreeMap::new();
        // Sectors whose proof landed during this run: those that appear in a deadline's proven
        // set after the first snapshot (the set empties when the deadline closes).
        let mut proven_ever: BTreeSet<u64> = BTreeSet::new();
        let mut last = before.clone();
        // The sectors this run waits to see proven: those sealed when the count was reached
        // (the worker goes on sealing meanwhile).
        let mut target: Option<BTreeSet<u64>> = None;
        loop {
            let now = monitor.snapshot()?;
            proven_ever.extend(now.proven.difference(&last.proven).copied());
            for id in now.states.keys() {
                first_seen.entry(id.clone()).or_insert_with(Instant::now);
            }
            let sealed: BTreeSet<u64> =
                now.finished.difference(&before.finished).copied().collect();
            if target.is_none() && sealed.len() >= self.sectors {
                target = Some(sealed);
            }
            let progress = Progress::of(&before, &now, &proven_ever, target.as_ref(), self.sectors);
            view.show(&now, &progress, &first_seen, started.elapsed())?;
            if progress.done(self.seal_only) {
                return self.summary(&home, &now, &progress, started.elapsed());
            }
            if started.elapsed() > Duration::from_secs(self.timeout_secs) {
                bail!(
                    "not done in {} s ({}); see the logs in {}",
                    self.timeout_secs,
                    progress.line(self.sectors),
                    dir.display()
                );
            }
            last = now;
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    fn summary(
        &self,
        home: &Path,
        now: &Snapshot,
        progress: &Progress,
        elapsed: Duration,
    ) -> Result<()> {
        println!();
        println!(
            "devnet: {} sectors sealed in this run in {:.0}s; chain head {}",
            progress.finished,
            elapsed.as_secs_f64(),
            now.head
        );
        println!(
            "devnet: miner t0{MINER}: {} sectors active ({} with verified proofs), {} pre-committed, {} faulty",
            now.active.len(),
            now.verified,
            now.pre_committed,
            now.faulty.len()
        );
        let cfg = ManagerConfig::load(&home.join(CONFIG_FILE))?;
        for store in &cfg.common.persist_stores {
            match &store.plugin_name {
                Some(plugin) => println!(
                    "devnet: persist store `{}` served by the `{plugin}` objstore plugin",
                    store.name
                ),
                None => println!(
                    "devnet: persist store `{}` is a plain file store (a chain created before the plugin default; DEVNET_FRESH=1 starts one that uses it)",
                    store.name
                ),
            }
        }
        println!(
            "devnet: {} of the {} sectors sealed for this run proven by an accepted WindowPoSt ({} of {} active); {} WindowPoSts accepted in this run, {} on this chain",
            progress.proven_target,
            progress.target.unwrap_or_default(),
            progress.proven_active,
            now.active.len(),
            progress.window_posts,
            now.count("window_posts_accepted")
        );
        println!(
            "devnet: {} blocks won with verified WinningPoSts in this run ({} on this chain), {} rejected, {} missed",
            progress.blocks_won,
            now.count("blocks_won"),
            now.count("blocks_rejected"),
            now.count("blocks_missed")
        );
        println!("devnet: stopping the worker and the manager; run again to continue this chain");
        Ok(())
    }
}

/// Reads the manager and the chain.
struct Monitor<'a> {
    rt: &'a tokio::runtime::Runtime,
    client: &'a HttpClient,
}

/// What the chain and the manager show at one moment.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    head: i64,
    /// Sectors in work: their latest state.
    states: BTreeMap<String, String>,
    /// Numbers of the sectors sealed to the end without an abort.
    finished: BTreeSet<u64>,
    /// Active sector numbers on chain.
    active: BTreeSet<u64>,
    verified: usize,
    pre_committed: usize,
    faulty: BTreeSet<u64>,
    /// Sectors proven in their deadline's current window.
    proven: BTreeSet<u64>,
    /// The chain's counters (`window_posts_accepted`, `blocks_won`, …).
    summary: BTreeMap<String, u64>,
}

impl Snapshot {
    fn count(&self, key: &str) -> u64 {
        self.summary.get(key).copied().unwrap_or_default()
    }
}

impl Monitor<'_> {
    fn snapshot(&self) -> Result<Snapshot> {
        let rpc = |what: &str, e: jsonrpsee::core::client::Error| anyhow!("{what}: {e}");
        let list = |state| {
            self.rt
                .block_on(SealerCliApiClient::list_sectors(
                    self.client,
                    state,
                    SectorJob::All,
                ))
                .map_err(|e| rpc("listing sectors", e))
        };
        let online = list(SectorWorkerState::Online)?;
        let offline = list(SectorWorkerState::Offline)?;
        let chain = self
            .rt
            .block_on(DamoclesApiClient::chain_sectors(self.client, MINER))
            .map_err(|e| rpc("reading the chain's sectors", e))?;
        let head = self
            .rt
            .block_on(DamoclesApiClient::chain_head(self.client))
            .map_err(|e| rpc("reading the chain head", e))?;
        let deadlines = self
            .rt
            .block_on(DamoclesApiClient::chain_deadlines(self.client, MINER))
            .map_err(|e| rpc("reading the deadlines", e))?;
        Ok(Snapshot {
            head: head.head.epoch,
            states: online
                .iter()
                .map(|st| (st.id.to_string(), state_name(st)))
                .collect(),
            finished: offline
                .iter()
                .filter(|s| s.finalized && s.abort_reason.is_empty() && s.id.miner == MINER)
                .map(|s| s.id.number)
                .collect(),
            active: chain.active.iter().map(|s| s.sector_number).collect(),
            verified: chain.active.iter().filter(|s| s.proof_verified).count(),
            pre_committed: chain.pre_committed.len(),
            faulty: chain.faulty.iter().copied().collect(),
            proven: deadlines
                .iter()
                .flatten()
                .flat_map(|p| p.proven_sectors.iter().copied())
                .collect(),
            summary: head.summary,
        })
    }
}

/// This run so far, against the snapshot taken when it began.
#[derive(Debug, Clone, PartialEq)]
struct Progress {
    wanted: usize,
    /// Sectors sealed in this run.
    finished: usize,
    /// How many sectors are waited for (the first `wanted` sealed in this run), once they
    /// are sealed.
    target: Option<usize>,
    /// Of those, the ones proven by a WindowPoSt accepted in this run.
    proven_target: usize,
    /// Active sectors proven in this run.
    proven_active: usize,
    window_posts: u64,
    blocks_won: u64,
}

impl Progress {
    fn of(
        before: &Snapshot,
        now: &Snapshot,
        proven_ever: &BTreeSet<u64>,
        target: Option<&BTreeSet<u64>>,
        wanted: usize,
    ) -> Self {
        Progress {
            wanted,
            finished: now.finished.difference(&before.finished).count(),
            target: target.map(BTreeSet::len),
            proven_target: target.map_or(0, |t| t.intersection(proven_ever).count()),
            proven_active: now.active.intersection(proven_ever).count(),
            window_posts: now
                .count("window_posts_accepted")
                .saturating_sub(before.count("window_posts_accepted")),
            blocks_won: now
                .count("blocks_won")
                .saturating_sub(before.count("blocks_won")),
        }
    }

    /// Sealed all it was asked to, and (unless `seal_only`) each of those sectors proven and
    /// a block won.
    fn done(&self, seal_only: bool) -> bool {
        let Some(target) = self.target else {
            return false;
        };
        seal_only || (self.proven_target >= target && self.blocks_won >= 1)
    }

    fn line(&self, wanted: usize) -> String {
        format!(
            "sealed {}/{wanted}, proven {}/{}, blocks won {}",
            self.finished.min(wanted),
            self.proven_target,
            self.target.unwrap_or(wanted),
            self.blocks_won
        )
    }
}

/// The live view: redrawn on a terminal, one line per change elsewhere.
struct LiveView {
    tty: bool,
    last: Snapshot,
    last_progress: Option<Progress>,
}

impl LiveView {
    fn new(tty: bool, start: Snapshot) -> Self {
        LiveView {
            tty,
            last: start,
            last_progress: None,
        }
    }

    fn show(
        &mut self,
        now: &Snapshot,
        progress: &Progress,
        first_seen: &BTreeMap<String, Instant>,
        elapsed: Duration,
    ) -> Result<()> {
        let mut out = std::io::stdout().lock();
        if self.tty {
            write!(out, "\x1b[2J\x1b[H{}", table(now, first_seen))?;
            writeln!(
                out,
                "chain head {}   {}   elapsed {:.0}s",
                now.head,
                progress.line(progress.wanted),
                elapsed.as_secs_f64()
            )?;
        } else {
            for line in changes(&self.last, now) {
                writeln!(out, "[{:>5.0}s] {line}", elapsed.as_secs_f64())?;
            }
            if self.last_progress.as_ref() != Some(progress) {
                writeln!(
                    out,
                    "[{:>5.0}s] {} (chain head {})",
                    elapsed.as_secs_f64(),
                    progress.line(progress.wanted),
                    now.head
                )?;
            }
        }
        out.flush()?;
        self.last = now.clone();
        self.last_progress = Some(progress.clone());
        Ok(())
    }
}

/// The sectors in work, one row each.
fn table(now: &Snapshot, first_seen: &BTreeMap<String, Instant>) -> String {
    let mut out = format!("{:<16} {:<22} {:>8}\n", "SECTOR", "STATE", "ELAPSED");
    for (id, state) in &now.states {
        let secs = first_seen.get(id).map_or(0, |t| t.elapsed().as_secs());
        out.push_str(&format!("{id:<16} {state:<22} {secs:>7}s\n"));
    }
    out
}

/// What changed between two snapshots, one line per event.
fn changes(before: &Snapshot, now: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (id, state) in &now.states {
        if before.states.get(id) != Some(state) {
            out.push(format!("{id}: {state}"));
        }
    }
    for id in before.states.keys() {
        if !now.states.contains_key(id) {
            out.push(format!("{id}: left the worker (finished or aborted)"));
        }
    }
    let sector = |&number: &u64| SectorId {
        miner: MINER,
        number,
    };
    for n in now.active.difference(&before.active) {
        out.push(format!("{}: active on chain", sector(n)));
    }
    for n in now.proven.difference(&before.proven) {
        out.push(format!("{}: proven by an accepted WindowPoSt", sector(n)));
    }
    for n in now.faulty.difference(&before.faulty) {
        out.push(format!("{}: FAULTY", sector(n)));
    }
    for key in ["blocks_won", "blocks_rejected", "blocks_missed"] {
        let (a, b) = (before.count(key), now.count(key));
        if b > a {
            out.push(format!("{}: {b}", key.replace('_', " ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(states: &[(&str, &str)], active: &[u64], proven: &[u64], won: u64) -> Snapshot {
        Snapshot {
            head: 10,
            states: states
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            active: active.iter().copied().collect(),
            proven: proven.iter().copied().collect(),
            summary: [("blocks_won".to_string(), won)].into_iter().collect(),
            ..Snapshot::default()
        }
    }

    #[test]
    fn only_changes_are_printed_off_a_terminal() {
        let a = snap(&[("s-t010000-1", "PC1Done")], &[], &[], 0);
        assert!(
            changes(&a, &a).is_empty(),
            "nothing changed, nothing printed"
        );
        let b = snap(
            &[("s-t010000-1", "PC2Done"), ("s-t010000-2", "Allocated")],
            &[],
            &[],
            0,
        );
        assert_eq!(
            changes(&a, &b),
            ["s-t010000-1: PC2Done", "s-t010000-2: Allocated"]
        );
        let c = snap(&[("s-t010000-2", "Allocated")], &[1], &[1], 1);
        assert_eq!(
            changes(&b, &c),
            [
                "s-t010000-1: left the worker (finished or aborted)",
                "s-t010000-1: active on chain",
                "s-t010000-1: proven by an accepted WindowPoSt",
                "blocks won: 1"
            ]
        );
    }

    #[test]
    fn the_run_ends_when_its_sectors_were_proven_and_a_block_won() {
        let mut before = snap(&[], &[7], &[], 3);
        before.finished = [7].into_iter().collect();
        let mut now = snap(&[], &[1, 2, 3, 7], &[1], 3);
        now.finished = [1, 2, 7].into_iter().collect();
        let target: BTreeSet<u64> = [1, 2].into_iter().collect();
        let mut ever: BTreeSet<u64> = [1].into_iter().collect();
        assert!(
            !Progress::of(&before, &now, &ever, None, 2).done(true),
            "not sealed until the target is set"
        );
        let p = Progress::of(&before, &now, &ever, Some(&target), 2);
        assert!(p.done(true), "sealed: enough with --seal-only");
        assert!(!p.done(false), "sector 2 not proven, no block won");
        ever.insert(2);
        assert!(
            !Progress::of(&before, &now, &ever, Some(&target), 2).done(false),
            "no block won in this run"
        );
        now.summary.insert("blocks_won".into(), 4);
        let p = Progress::of(&before, &now, &ever, Some(&target), 2);
        assert!(
            p.done(false),
            "sector 3, sealed later and not proven yet, is not waited for"
        );
        assert_eq!(p.line(2), "sealed 2/2, proven 2/2, blocks won 1");
    }
}
