//! `damocles-manager daemon init|run` and `damocles-manager mock`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use super::parse_sector_size;
use crate::config::{ManagerConfig, CONFIG_FILE, EXT_PROVER_FILE};
use crate::daemon::{parse_listen, Daemon, DaemonOptions};

/// `daemon …`.
#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Write `sector-manager.cfg` and `ext-prover.cfg` into the home directory.
    Init(InitArgs),
    /// Run the daemon.
    Run(RunArgs),
}

/// `daemon init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Write a config that runs the embedded devnet (one miner, stores under the home).
    #[arg(long)]
    pub devnet: bool,
    /// The devnet miner's actor id.
    #[arg(long, default_value_t = 10000)]
    pub miner: u64,
    /// The devnet miner's sector size.
    #[arg(long = "sector-size", default_value = "2KiB", value_parser = parse_sector_size)]
    pub sector_size: u64,
}

/// `daemon run` (damocles' flags; the PoSt ones take effect with the PoSt scheduler).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// RPC listen address.
    #[arg(long, default_value = ":1789")]
    pub listen: String,
    /// Directory holding `sector-manager.cfg` instead of the home.
    #[arg(long = "conf-dir", value_name = "DIR")]
    pub conf_dir: Option<PathBuf>,
    /// Run the WindowPoSt scheduler for the miners with `[Miners.PoSt] Enabled`.
    #[arg(long)]
    pub poster: bool,
    /// Answer the chain's elections of the miners with `[Miners.Proof] Enabled` with WinningPoSts.
    #[arg(long)]
    pub miner: bool,
    /// Warm up the WinningPoSt prover at start.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub warmup: bool,
    /// Prove with the processes of `ext-prover.cfg`.
    #[arg(long = "ext-prover")]
    pub ext_prover: bool,
    /// Prove through WindowPoSt jobs pulled by workers.
    #[arg(long = "worker-prover")]
    pub worker_prover: bool,
    /// Another manager whose sector index this one reads (not supported yet).
    #[arg(long)]
    pub proxy: Option<String>,
    /// Keep the local sector indexer in proxy mode.
    #[arg(long = "proxy-sector-indexer-off")]
    pub proxy_sector_indexer_off: bool,
}

/// `mock`.
#[derive(Debug, Args)]
pub struct MockArgs {
    /// The miner's actor id.
    #[arg(long)]
    pub miner: u64,
    /// The miner's sector size.
    #[arg(long = "sector-size", value_parser = parse_sector_size)]
    pub sector_size: u64,
    /// RPC listen address.
    #[arg(long, default_value = ":1789")]
    pub listen: String,
    /// Keep the devnet's state in this directory instead of a temporary one.
    #[arg(long = "state-dir", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Comments out every line but table headers, as damocles writes its example config.
fn commented(toml: &str) -> String {
    toml.lines()
        .map(|l| {
            let t = l.trim_start();
            if t.is_empty() || t.starts_with('[') {
                l.to_string()
            } else {
                format!("# {l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

const EXT_PROVER_EXAMPLE: &str = "\
# ext-prover.cfg: external WindowPoSt / WinningPoSt provers (read with `daemon run --ext-prover`).
#
# [[WdPost]]
# Bin = \"/path/to/prover\"          # default: damocles-worker next to damocles-manager
# Args = [\"processor\", \"window_post\"]
# Concurrent = 1
# Weight = 1
# ReadyTimeoutSecs = 5
# [WdPost.Envs]
# CUDA_VISIBLE_DEVICES = \"0\"
#
# [[WinPost]]
# Args = [\"processor\", \"winning_post\"]
";

impl DaemonCommand {
    /// Runs the command.
    pub fn run(self, home: PathBuf) -> Result<()> {
        match self {
            DaemonCommand::Init(args) => init(&home, args),
            DaemonCommand::Run(args) => run(home, args),
        }
    }
}

fn init(home: &std::path::Path, args: InitArgs) -> Result<()> {
    std::fs::create_dir_all(home).with_context(|| format!("creating {}", home.display()))?;
    let cfg_path = home.join(CONFIG_FILE);
    if cfg_path.exists() {
        bail!(
            "{} exists; remove it to write a new one",
            cfg_path.display()
        );
    }
    let home_abs = std::path::absolute(home).unwrap_or_else(|_| home.to_path_buf());
    let cfg = ManagerConfig::devnet_default(&home_abs, args.miner, args.sector_size);
    let text = if args.devnet {
        for dir in ["persist", "pieces", "import"] {
            std::fs::create_dir_all(home_abs.join(dir))?;
        }
        format!(
            "# sector-manager.cfg: damocles-manager on the embedded devnet (miner {}).\n\n{}",
            args.miner,
            cfg.to_toml()?
        )
    } else {
        format!(
            "# sector-manager.cfg: every key with an example value; uncomment and edit.\n# Only the embedded devnet chain is supported so far: `daemon init --devnet` writes a working config.\n\n{}",
            commented(&cfg.to_toml()?)
        )
    };
    std::fs::write(&cfg_path, text).with_context(|| format!("writing {}", cfg_path.display()))?;
    let ext = home.join(EXT_PROVER_FILE);
    if !ext.exists() {
        std::fs::write(&ext, EXT_PROVER_EXAMPLE)
            .with_context(|| format!("writing {}", ext.display()))?;
    }
    println!("wrote {}", cfg_path.display());
    let keys = damocles_auth::open_home(home).context("making the API secret")?;
    println!(
        "API secret: {} (local admin token: {}); give workers `damocles-manager util auth api-info --perm write`",
        keys.secret_path.display(),
        keys.token_path.display()
    );
    Ok(())
}

fn run(home: PathBuf, args: RunArgs) -> Result<()> {
    if args.ext_prover && args.worker_prover {
        bail!("--ext-prover and --worker-prover cannot be used together");
    }
    if args.proxy.is_some() {
        bail!("--proxy is not supported yet");
    }
    if args.worker_prover && !args.poster {
        tracing::warn!("--worker-prover without --poster: jobs are served but none is created");
    }
    let dirs = super::home(home, args.conf_dir);
    std::fs::create_dir_all(&dirs.home)
        .with_context(|| format!("creating {}", dirs.home.display()))?;
    let cfg_path = dirs.config_file();
    if !cfg_path.exists() {
        bail!(
            "{} does not exist: run `damocles-manager daemon init --devnet` first",
            cfg_path.display()
        );
    }
    let cfg = ManagerConfig::load(&cfg_path)?;
    let db = dirs.db_dir(&cfg);
    let listen = parse_listen(&args.listen)?;
    let ext_prover = if args.ext_prover {
        let p = cfg_path.with_file_name(EXT_PROVER_FILE);
        if !args.poster && !args.miner {
            tracing::warn!("--ext-prover without --poster or --miner: no PoSt is scheduled, so the ext-prover is not started");
        }
        Some(p)
    } else {
        None
    };
    let rt = super::runtime()?;
    let out = rt.block_on(async move {
        let daemon = Daemon::start(
            cfg,
            &db,
            DaemonOptions {
                listen,
                home: dirs.home.clone(),
                auto_fs_stores: false,
                poster: args.poster,
                ext_prover,
                worker_prover: args.worker_prover,
                miner: args.miner,
            },
        )
        .await?;
        println!("damocles-manager listening on {}", daemon.addr);
        daemon.run_until_signalled().await
    });
    // Blocking work still running (a proof, a hung prover child) does not hold the exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(10));
    out
}

impl MockArgs {
    /// Runs the mock manager until SIGINT / SIGTERM.
    pub fn run(self) -> Result<()> {
        let (dir, _temp) = match &self.state_dir {
            Some(d) => (d.clone(), None),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("damocles-mock-")
                    .tempdir()
                    .context("creating a temporary directory")?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        std::fs::create_dir_all(dir.join("pieces"))?;
        let mut cfg = ManagerConfig::devnet_default(&dir, self.miner, self.sector_size);
        // No persist stores: a worker's store names are file stores at those paths.
        cfg.common.persist_stores.clear();
        let listen = parse_listen(&self.listen)?;
        let rt = super::runtime()?;
        rt.block_on(async move {
            let daemon = Daemon::start(
                cfg,
                &dir.join("rocksdb"),
                DaemonOptions {
                    listen,
                    home: dir.clone(),
                    auto_fs_stores: true,
                    poster: false,
                    ext_prover: None,
                    worker_prover: false,
                    miner: false,
                },
            )
            .await?;
            println!("damocles-manager listening on {}", daemon.addr);
            let keys = damocles_auth::open_home(&dir)?;
            let info = damocles_auth::ApiInfo {
                token: damocles_auth::create_token(
                    &keys.secret,
                    damocles_auth::Perm::Write,
                    Some("mock-worker"),
                    None,
                )?,
                addr: format!("/ip4/127.0.0.1/tcp/{}/http", daemon.addr.port()),
            };
            println!(
                "workers: {}={info}; util: --token $(cat {})",
                super::util::API_INFO_ENV,
                keys.token_path.display()
            );
            daemon.run_until_signalled().await
        })
    }
}
