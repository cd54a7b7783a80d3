//! The `damocles-worker` command line (worker-spec §5.2): `daemon`, `processor <stage>`,
//! `store …`, `worker …` (the control client of a running daemon) and `generator tree-d`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use vc_processors::builtin::cli::ProcessorCommand;

pub mod generator;
pub mod store;
pub mod worker;

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
    /// Run the sealing daemon.
    Daemon {
        /// The config file.
        #[arg(short = 'c', long = "config", env = "DAMOCLES_WORKER_CONFIG")]
        config: PathBuf,
    },
    /// Serve one builtin stage as an external processor on stdin/stdout.
    #[command(subcommand)]
    Processor(ProcessorCommand),
    /// Prepare sealing and persist store directories.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Control a running daemon: list, pause and resume sealing threads, response dumps.
    Worker(worker::WorkerArgs),
    /// Tokens of the daemon's control server.
    Auth(worker::AuthArgs),
    /// Generate static files (the zero sector's tree-d).
    #[command(subcommand)]
    Generator(generator::GeneratorCommand),
}

/// Parses `args` and runs the command; returns the process exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    // `--version` prints `v<version>-<commit>` (§5.2).
    let version: &'static str = Box::leak(crate::server::version().into_boxed_str());
    let parsed = Cli::command()
        .version(version)
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    init_logging();
    let result = match cli.command {
        Command::Daemon { config } => crate::daemon::run(&config),
        Command::Processor(cmd) => {
            let stage = cmd.stage();
            let span = tracing::info_span!("sub", name = stage, pid = std::process::id());
            let _enter = span.enter();
            vc_processors::builtin::cli::run(cmd)
        }
        Command::Store(cmd) => cmd.run(),
        Command::Worker(args) => args.run(),
        Command::Auth(args) => args.run(),
        Command::Generator(cmd) => cmd.run(),
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
