//! The `damocles-worker` command line.

use std::ffi::OsString;

use clap::{Parser, Subcommand};
use vc_processors::builtin::cli::ProcessorCommand;

/// damocles-worker: sealing worker of a damocles cluster.
#[derive(Debug, Parser)]
#[command(name = "damocles-worker", version)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve one builtin stage as an external processor on stdin/stdout.
    #[command(subcommand)]
    Processor(ProcessorCommand),
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
        Command::Processor(cmd) => {
            let stage = cmd.stage();
            let span = tracing::info_span!("sub", name = stage, pid = std::process::id());
            let _enter = span.enter();
            vc_processors::builtin::cli::run(cmd)
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    }
}

/// Logs go to stderr (stdout belongs to the processor protocol). The filter comes from
/// `RUST_LOG`, else `DAMOCLES_WORKER_LOG`, else `info` with the proof library at `warn`.
fn init_logging() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| std::env::var("DAMOCLES_WORKER_LOG").ok())
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| {
            tracing_subscriber::EnvFilter::new(
                "info,storage_proofs_core=warn,storage_proofs_porep=warn,storage_proofs_post=warn,storage_proofs_update=warn,filecoin_proofs=warn,bellperson=warn",
            )
        });
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init();
}
