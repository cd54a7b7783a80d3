//! The `damocles-manager` command line.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use damocles_config::units::ByteSize;

use crate::config::{HomeDir, SectorSize};

pub mod daemon;
pub mod devnet;
pub mod util;

/// damocles-manager: manager of a damocles sealing cluster.
#[derive(Debug, Parser)]
#[command(name = "damocles-manager", version)]
pub struct Cli {
    /// Home directory: config, database, stores of the devnet.
    #[arg(long, global = true, env = "DAMOCLES_PATH", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Deprecated and ignored (the network comes from the chain).
    #[arg(long, global = true, hide = true)]
    pub net: Option<String>,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the config, or run the daemon.
    #[command(subcommand)]
    Daemon(daemon::DaemonCommand),
    /// Run a manager on a fresh embedded devnet with one miner and no config files.
    Mock(daemon::MockArgs),
    /// The whole stack on one machine: this manager on the devnet and a damocles-worker,
    /// sealing sectors with a live view and a summary from the chain.
    Devnet(devnet::DevnetArgs),
    /// Utilities; most talk to a running daemon.
    Util(util::UtilArgs),
}

impl Cli {
    /// The home directory: `--home`, `$DAMOCLES_PATH`, `$VENUS_SECTOR_MANAGER_PATH`, `$VSM_PATH`,
    /// else `~/.damocles-manager` (or the legacy `~/.venus-sector-manager` if only it exists).
    pub fn home_dir(&self) -> Result<PathBuf> {
        if let Some(h) = &self.home {
            return Ok(h.clone());
        }
        for var in ["VENUS_SECTOR_MANAGER_PATH", "VSM_PATH"] {
            if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
                return Ok(PathBuf::from(v));
            }
        }
        let user = std::env::var_os("HOME").context("HOME is not set; pass --home")?;
        let home = PathBuf::from(user);
        let dir = home.join(".damocles-manager");
        let legacy = home.join(".venus-sector-manager");
        if !dir.exists() && legacy.exists() {
            return Ok(legacy);
        }
        Ok(dir)
    }
}

/// Resolves the home and conf directories (`--conf-dir`, `$DAMOCLES_CONF_DIR`, …).
pub fn home(cli_home: PathBuf, conf_dir: Option<PathBuf>) -> HomeDir {
    let conf = conf_dir
        .or_else(|| {
            [
                "DAMOCLES_CONF_DIR",
                "VENUS_SECTOR_MANAGER_CONF_DIR",
                "VSM_CONF_DIR",
            ]
            .iter()
            .find_map(|v| {
                std::env::var_os(v)
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
            })
        })
        .unwrap_or_else(|| cli_home.clone());
    HomeDir {
        home: cli_home,
        conf_dir: conf,
    }
}

/// Parses a `--sector-size` value, a [`SectorSize`] (`2KiB`, `32GiB`, a byte count), to bytes.
pub(crate) fn parse_sector_size(s: &str) -> Result<u64, String> {
    match s.parse::<SectorSize>() {
        Ok(size) => Ok(size.0),
        // A byte amount, but not the size of a sector.
        Err(_) if s.parse::<ByteSize>().is_ok() => Err(format!(
            "unsupported sector size {s:?}; use 2KiB, 8MiB, 512MiB, 32GiB or 64GiB"
        )),
        Err(e) => Err(e),
    }
}

/// Parses `args` and runs the command; returns the process exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    init_logging();
    if cli.net.is_some() {
        tracing::warn!("--net is deprecated and ignored");
    }
    let result = run(cli);
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let home_dir = cli.home_dir()?;
    match cli.command {
        Command::Daemon(cmd) => cmd.run(home_dir),
        Command::Mock(args) => args.run(),
        Command::Devnet(args) => args.run(),
        Command::Util(args) => args.run(home_dir),
    }
}

/// A multi-threaded runtime for commands that need one.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("manager")
        .build()
        .context("starting the async runtime")
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,storage_proofs_core=warn,storage_proofs_porep=warn,storage_proofs_post=warn,storage_proofs_update=warn,filecoin_proofs=warn,bellperson=warn,jsonrpsee=warn",
        )
    });
    // Colours only on a terminal: log files stay plain text.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sector_sizes_parse() {
        assert_eq!(parse_sector_size("2KiB"), Ok(2048));
        assert_eq!(parse_sector_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_sector_size(" 32GiB "), Ok(32 << 30));
        assert_eq!(parse_sector_size("2048"), Ok(2048));
        assert!(parse_sector_size("3KiB")
            .expect_err("3KiB")
            .starts_with("unsupported sector size"));
        assert!(parse_sector_size("lots").is_err());
    }
}
