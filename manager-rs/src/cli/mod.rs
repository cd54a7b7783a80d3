//! The `damocles-manager` command line.

use std::ffi::OsString;

use clap::{Parser, Subcommand};

pub mod util;

/// damocles-manager: manager of a damocles sealing cluster.
#[derive(Debug, Parser)]
#[command(name = "damocles-manager", version)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Utilities.
    #[command(subcommand)]
    Util(util::UtilCommand),
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
    let result = match cli.command {
        Command::Util(cmd) => cmd.run(),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,storage_proofs_core=warn,storage_proofs_porep=warn,storage_proofs_post=warn,storage_proofs_update=warn,filecoin_proofs=warn,bellperson=warn",
        )
    });
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .try_init();
}
