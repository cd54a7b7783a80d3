//! `damocles-worker worker …`: control a running daemon through its `VenusWorker.*` server
//! (worker-spec §5.2).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use tracing::{info, warn};

use crate::config::{self, DEFAULT_RPC_CONNECT_HOST, DEFAULT_RPC_SERVER_PORT};
use crate::sealing::control::{ThreadStateView, WorkerThreadInfo};
use crate::server::WorkerControlApiClient;

/// `worker [-H ADDR | -c FILE] <command>`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The daemon's control address, `<host>:<port>` (default 127.0.0.1:17890).
    #[arg(
        short = 'H',
        long,
        env = "DAMOCLES_WORKER_HOST",
        global = true,
        value_name = "IP:PORT",
        value_parser = parse_host
    )]
    pub host: Option<String>,
    /// The daemon's config file: the address comes from `worker.rpc_server` (host or
    /// 127.0.0.1, port or 17890) and `--host` is ignored.
    #[arg(
        short = 'c',
        long,
        env = "DAMOCLES_WORKER_CONFIG",
        global = true,
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// API token of the daemon (default: the token of `DAMOCLES_WORKER_API_INFO`, else the
    /// local admin token in the worker's home, `worker.rpc_server.home` of `--config`).
    #[arg(
        long,
        env = "DAMOCLES_WORKER_API_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// The command.
    #[command(subcommand)]
    pub command: WorkerCommand,
}

/// The variable giving a client of the worker its token (`<token>:<multiaddr>`).
pub const WORKER_API_INFO_ENV: &str = "DAMOCLES_WORKER_API_INFO";

/// Control commands.
#[derive(Debug, Subcommand)]
pub enum WorkerCommand {
    /// Show every sealing thread.
    List,
    /// Ask a sealing thread to pause at its next interruption point; prints whether the
    /// request was queued.
    Pause {
        /// The thread's `#` in `worker list`.
        #[arg(short, long)]
        index: usize,
    },
    /// Resume a paused sealing thread; prints whether it was waiting for a resume.
    Resume {
        /// The thread's `#` in `worker list`.
        #[arg(short, long)]
        index: usize,
        /// Continue in this state (exact name, e.g. `TreeDBuilt` to fetch a new ticket).
        #[arg(short, long)]
        state: Option<String>,
    },
    /// Make the daemon dump failed processor responses of one child into a directory.
    #[command(alias = "enable_dump")]
    EnableDump {
        /// Pid of the processor child.
        #[arg(long, alias = "child_pid")]
        child_pid: u32,
        /// An existing directory for the dumps.
        #[arg(long, alias = "dump_dir", value_name = "DIR")]
        dump_dir: PathBuf,
    },
    /// Stop dumping the responses of one child.
    #[command(alias = "disable_dump")]
    DisableDump {
        /// Pid of the processor child.
        #[arg(long, alias = "child_pid")]
        child_pid: u32,
    },
}

/// `auth [-c FILE] create-token|api-info --perm P`: tokens of the worker's control server, made
/// from the secret in its home (no daemon needed).
#[derive(Debug, Args)]
pub struct AuthArgs {
    /// The daemon's config file (its `worker.rpc_server` home and address).
    #[arg(
        short = 'c',
        long,
        env = "DAMOCLES_WORKER_CONFIG",
        global = true,
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: AuthCommand,
}

/// Token commands.
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Prints a new token.
    CreateToken(TokenArgs),
    /// Prints `DAMOCLES_WORKER_API_INFO=<token>:<multiaddr>` for a client of the daemon.
    ApiInfo(TokenArgs),
}

/// What a new token grants.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Permission: `read` (list), `write` (pause, resume), `admin` (resume in a state, the
    /// daemon's variables); each includes the ones before it.
    #[arg(long)]
    pub perm: damocles_auth::Perm,
    /// A name for the holder, shown in the daemon's logs.
    #[arg(long)]
    pub name: Option<String>,
    /// Valid for this long (`30d`, `12h`); never expires when not given.
    #[arg(long)]
    pub expire: Option<config::HumanDuration>,
}

impl AuthArgs {
    /// Runs the command.
    pub fn run(self) -> Result<()> {
        let server = WorkerArgs {
            host: None,
            config: self.config.clone(),
            token: None,
            command: WorkerCommand::List,
        }
        .rpc_server()?;
        let args = match &self.command {
            AuthCommand::CreateToken(a) | AuthCommand::ApiInfo(a) => a,
        };
        let token = damocles_auth::token_of_home(
            &server.home_dir()?,
            args.perm,
            args.name.as_deref(),
            args.expire.map(|d| d.0),
        )?;
        match self.command {
            AuthCommand::CreateToken(_) => println!("{token}"),
            AuthCommand::ApiInfo(_) => {
                let info = damocles_auth::ApiInfo::for_socket(token, server.connect_addr()?);
                println!("{WORKER_API_INFO_ENV}={info}");
            }
        }
        Ok(())
    }
}

/// `<host>:<port>` with a numeric port (a hostname is accepted, as damocles does).
fn parse_host(s: &str) -> Result<String, String> {
    let s = s.trim();
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(s.to_string()),
        _ => Err(format!("{s:?} is not <host>:<port>, e.g. 127.0.0.1:17890")),
    }
}

/// The environment variable that makes the daemon dump the responses of child `pid`.
fn dump_env_name(pid: u32) -> String {
    format!("DUMP_ERR_RESP_{pid}")
}

impl WorkerArgs {
    /// The address to connect to: from `--config` if given, else `--host`, else the default.
    pub fn address(&self) -> Result<String> {
        if let Some(path) = &self.config {
            if let Some(host) = &self.host {
                warn!(%host, config = %path.display(), "--host is ignored when --config is given");
            }
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the config {}", path.display()))?;
            let cfg = config::parse_named(&text, &path.display().to_string())?;
            let addr = cfg
                .worker
                .rpc_server
                .connect_addr()
                .with_context(|| format!("{}: the control address", path.display()))?;
            return Ok(addr.to_string());
        }
        Ok(self.host.clone().unwrap_or_else(|| {
            std::net::SocketAddr::new(DEFAULT_RPC_CONNECT_HOST, DEFAULT_RPC_SERVER_PORT).to_string()
        }))
    }

    /// The config's (or the default) `worker.rpc_server`.
    fn rpc_server(&self) -> Result<config::RpcServerConfig> {
        match &self.config {
            None => Ok(config::RpcServerConfig::default()),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the config {}", path.display()))?;
                Ok(config::parse_named(&text, &path.display().to_string())?
                    .worker
                    .rpc_server)
            }
        }
    }

    /// The token sent: `--token`, else the one of `DAMOCLES_WORKER_API_INFO`, else the local
    /// admin token of the worker's home, which goes only to a daemon on this machine.
    fn token(&self, addr: &str) -> Result<Option<String>> {
        if let Some(t) = self.token.clone().filter(|t| !t.is_empty()) {
            return Ok(Some(t));
        }
        if let Some(t) = std::env::var(WORKER_API_INFO_ENV)
            .ok()
            .map(|v| damocles_auth::ApiInfo::parse(&v).token)
            .filter(|t| !t.is_empty())
        {
            return Ok(Some(t));
        }
        let local = addr
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback())
            || addr.starts_with("localhost:");
        if !local {
            warn!(
                addr,
                "not sending the worker home's admin token to another machine: pass --token or \
                 set DAMOCLES_WORKER_API_INFO"
            );
            return Ok(None);
        }
        Ok(damocles_auth::read_local_token(
            &self.rpc_server()?.home_dir()?,
        ))
    }

    /// Runs the command against the daemon.
    pub fn run(self) -> Result<()> {
        let addr = self.address()?;
        let mut headers = http::HeaderMap::new();
        if let Some(t) = self.token(&addr)? {
            let mut v = http::HeaderValue::from_str(&format!("Bearer {t}"))
                .context("the token is not a valid header value")?;
            v.set_sensitive(true);
            headers.insert(http::header::AUTHORIZATION, v);
        }
        let client = HttpClientBuilder::default()
            .set_headers(headers)
            .request_timeout(Duration::from_secs(60))
            .build(format!("http://{addr}/"))
            .with_context(|| format!("building the client of http://{addr}/"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        rt.block_on(self.command.run(&client))
            .with_context(|| format!("worker at {addr}"))
    }
}

/// The daemon's refusal as its message (jsonrpsee displays the whole error object).
fn rpc_err(method: &str, e: jsonrpsee::core::ClientError) -> anyhow::Error {
    match e {
        jsonrpsee::core::ClientError::Call(obj) => {
            anyhow!(
                "VenusWorker.{method}: {} (code {})",
                obj.message(),
                obj.code()
            )
        }
        other => anyhow!("VenusWorker.{method}: {other}"),
    }
}

impl WorkerCommand {
    async fn run(self, c: &HttpClient) -> Result<()> {
        match self {
            WorkerCommand::List => {
                let threads = c
                    .worker_list()
                    .await
                    .map_err(|e| rpc_err("WorkerList", e))?;
                print!("{}", render_list(&threads));
            }
            WorkerCommand::Pause { index } => {
                let queued = c
                    .worker_pause(index)
                    .await
                    .map_err(|e| rpc_err("WorkerPause", e))?;
                if !queued {
                    info!(
                        index,
                        "not queued: a pause is already pending or the thread is paused"
                    );
                }
                println!("{queued}");
            }
            WorkerCommand::Resume { index, state } => {
                let resumed = c
                    .worker_resume(index, state)
                    .await
                    .map_err(|e| rpc_err("WorkerResume", e))?;
                if !resumed {
                    info!(index, "not resumed: the thread is not waiting for a resume");
                }
                println!("{resumed}");
            }
            WorkerCommand::EnableDump {
                child_pid,
                dump_dir,
            } => {
                let dir = std::fs::canonicalize(&dump_dir)
                    .with_context(|| format!("dump directory {}", dump_dir.display()))?;
                if !dir.is_dir() {
                    bail!("dump directory {} is not a directory", dir.display());
                }
                let dir = dir
                    .to_str()
                    .ok_or_else(|| anyhow!("dump directory {} is not UTF-8", dir.display()))?
                    .to_string();
                let name = dump_env_name(child_pid);
                c.worker_set_env(name.clone(), dir.clone())
                    .await
                    .map_err(|e| rpc_err("WorkerSetEnv", e))?;
                info!(%name, %dir, "dumps enabled");
            }
            WorkerCommand::DisableDump { child_pid } => {
                let name = dump_env_name(child_pid);
                c.worker_remove_env(name.clone())
                    .await
                    .map_err(|e| rpc_err("WorkerRemoveEnv", e))?;
                info!(%name, "dumps disabled");
            }
        }
        Ok(())
    }
}

/// `Idle`, `Paused(1m 3s)`, `Running(2h 5s) builtin pc1`, `Waiting(4s)`.
pub fn render_thread_state(s: &ThreadStateView) -> String {
    let d = |secs: u64| humantime::format_duration(Duration::from_secs(secs));
    match s {
        ThreadStateView::Idle => "Idle".to_string(),
        ThreadStateView::Paused { elapsed } => format!("Paused({})", d(*elapsed)),
        ThreadStateView::Running {
            elapsed,
            proc: Some(p),
        } => format!("Running({}) {p}", d(*elapsed)),
        ThreadStateView::Running {
            elapsed,
            proc: None,
        } => format!("Running({})", d(*elapsed)),
        ThreadStateView::Waiting { elapsed } => format!("Waiting({})", d(*elapsed)),
    }
}

/// `s` with its control characters escaped (`\n`, `\t`, `\u{1b}`), so it stays on one line.
fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// The `worker list` table: a header and one line per thread, columns aligned with at least
/// two spaces between them; a missing or empty value is `-`, the last error is escaped onto
/// one line.
pub fn render_list(threads: &[WorkerThreadInfo]) -> String {
    let or_dash = |s: Option<&str>| match s {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => "-".to_string(),
    };
    let mut rows: Vec<[String; 8]> = vec![[
        "#",
        "location",
        "Plan",
        "JobID",
        "JobState",
        "JobStage",
        "ThreadState",
        "LastErr",
    ]
    .map(String::from)];
    for t in threads {
        rows.push([
            t.index.to_string(),
            or_dash(Some(t.location.as_str())),
            or_dash(Some(t.plan.as_str())),
            or_dash(t.job_id.as_deref()),
            or_dash(Some(t.job_state.as_str())),
            or_dash(t.job_stage.as_deref()),
            render_thread_state(&t.thread_state),
            or_dash(t.last_error.as_deref().map(escape_controls).as_deref()),
        ]);
    }
    let mut widths = [0usize; 8];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    /// Parses `damocles-worker worker <args>` through the real command line.
    fn parse(args: &[&str]) -> Result<WorkerArgs, clap::Error> {
        let argv = ["damocles-worker", "worker"]
            .into_iter()
            .chain(args.iter().copied());
        match Cli::try_parse_from(argv)?.command {
            Command::Worker(w) => Ok(w),
            other => panic!("parsed as {other:?}"),
        }
    }

    fn info(index: usize, state: ThreadStateView) -> WorkerThreadInfo {
        WorkerThreadInfo {
            location: "-".into(),
            plan: "sealer".into(),
            job_id: None,
            index,
            thread_state: state,
            job_state: String::new(),
            job_stage: None,
            last_error: None,
            restarts: 0,
        }
    }

    #[test]
    fn thread_states_render_with_humantime() {
        assert_eq!(render_thread_state(&ThreadStateView::Idle), "Idle");
        assert_eq!(
            render_thread_state(&ThreadStateView::Paused { elapsed: 63 }),
            "Paused(1m 3s)"
        );
        assert_eq!(
            render_thread_state(&ThreadStateView::Running {
                elapsed: 7205,
                proc: Some("builtin pc1".into())
            }),
            "Running(2h 5s) builtin pc1"
        );
        assert_eq!(
            render_thread_state(&ThreadStateView::Running {
                elapsed: 0,
                proc: None
            }),
            "Running(0s)"
        );
        assert_eq!(
            render_thread_state(&ThreadStateView::Waiting { elapsed: 4 }),
            "Waiting(4s)"
        );
    }

    #[test]
    fn the_list_is_an_aligned_table() {
        let mut a = info(0, ThreadStateView::Paused { elapsed: 3 });
        a.location = "/stores/a".into();
        a.job_id = Some("s-t01000-3".into());
        a.job_state = "PC1Done".into();
        a.job_stage = Some("PC2".into());
        a.last_error = Some("permanent: \"pc2\" failed\n\tat line 1".into());
        let b = info(12, ThreadStateView::Idle);
        let out = render_list(&[a, b]);
        let expected = "\
#   location   Plan    JobID       JobState  JobStage  ThreadState  LastErr
0   /stores/a  sealer  s-t01000-3  PC1Done   PC2       Paused(3s)   permanent: \"pc2\" failed\\n\\tat line 1
12  -          sealer  -           -         -         Idle         -
";
        assert_eq!(out, expected);
        assert_eq!(
            render_list(&[]),
            "#  location  Plan  JobID  JobState  JobStage  ThreadState  LastErr\n"
        );
    }

    #[test]
    fn the_address_comes_from_the_config_then_the_host_then_the_default() {
        let a = parse(&["list"]).expect("parse");
        if std::env::var_os("DAMOCLES_WORKER_HOST").is_none()
            && std::env::var_os("DAMOCLES_WORKER_CONFIG").is_none()
        {
            assert_eq!(a.address().expect("addr"), "127.0.0.1:17890");
        }
        let a = parse(&["-H", "10.0.0.2:1234", "pause", "-i", "3"]).expect("parse");
        assert_eq!(a.address().expect("addr"), "10.0.0.2:1234");
        assert!(matches!(a.command, WorkerCommand::Pause { index: 3 }));
        let a = parse(&[
            "resume",
            "--host",
            "w1:17890",
            "-i",
            "1",
            "-s",
            "TreeDBuilt",
        ])
        .expect("global flag after the subcommand");
        assert_eq!(a.address().expect("addr"), "w1:17890");
        assert!(matches!(
            a.command,
            WorkerCommand::Resume { index: 1, state: Some(ref s) } if s == "TreeDBuilt"
        ));
        assert!(parse(&["-H", "10.0.0.2", "list"]).is_err(), "no port");

        let tmp = tempfile::tempdir().expect("tempdir");
        let cfg = tmp.path().join("worker.toml");
        std::fs::write(&cfg, "[worker.rpc_server]\nport = 18000\n").expect("write");
        let cfg_arg = cfg.display().to_string();
        let a = parse(&["-c", &cfg_arg, "-H", "10.0.0.2:1234", "list"]).expect("parse");
        assert_eq!(a.address().expect("addr"), "127.0.0.1:18000");
        std::fs::write(&cfg, "[worker.rpc_server]\nhost = \"10.1.2.3\"\n").expect("write");
        assert_eq!(a.address().expect("addr"), "10.1.2.3:17890");
        std::fs::write(&cfg, "[worker.rpc_srever]\nport = 1\n").expect("write");
        let msg = format!("{:#}", a.address().expect_err("unknown key"));
        assert!(msg.contains("rpc_srever"), "{msg}");
    }

    #[tokio::test]
    async fn commands_run_against_a_server() {
        use crate::sealing::control::ThreadControl;
        let threads = vec![ThreadControl::new(0, Some("/s".into()), "sealer")];
        let secret = damocles_auth::Secret::generate();
        let auth = damocles_auth::rpc::Authenticator::new(
            secret.clone(),
            None,
            crate::server::CREATE_TOKEN_COMMAND,
        );
        let (handle, addr) =
            crate::server::serve("127.0.0.1:0".parse().expect("addr"), threads, auth)
                .await
                .expect("serve");
        let token = damocles_auth::create_token(&secret, damocles_auth::Perm::Admin, None, None)
            .expect("token");
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
        let c = HttpClientBuilder::default()
            .set_headers(headers)
            .build(format!("http://{addr}/"))
            .expect("client");
        WorkerCommand::List.run(&c).await.expect("list");
        WorkerCommand::Pause { index: 0 }
            .run(&c)
            .await
            .expect("pause");
        let err = WorkerCommand::Resume {
            index: 0,
            state: Some("Nope".into()),
        }
        .run(&c)
        .await
        .expect_err("unknown state");
        let msg = format!("{err:#}");
        assert!(
            msg.starts_with("VenusWorker.WorkerResume: resume: unknown state \"Nope\""),
            "{msg}"
        );
        assert!(msg.ends_with("(code -32602)"), "{msg}");

        let tmp = tempfile::tempdir().expect("tempdir");
        let pid = 4_000_000_000u32 - std::process::id();
        WorkerCommand::EnableDump {
            child_pid: pid,
            dump_dir: tmp.path().join("."),
        }
        .run(&c)
        .await
        .expect("enable");
        let canonical = std::fs::canonicalize(tmp.path()).expect("canonical");
        assert_eq!(
            vc_processors::daemon_env::var_os(dump_env_name(pid)).map(PathBuf::from),
            Some(canonical)
        );
        WorkerCommand::DisableDump { child_pid: pid }
            .run(&c)
            .await
            .expect("disable");
        assert_eq!(vc_processors::daemon_env::var_os(dump_env_name(pid)), None);
        assert!(WorkerCommand::EnableDump {
            child_pid: pid,
            dump_dir: tmp.path().join("missing"),
        }
        .run(&c)
        .await
        .is_err());
        handle.stop().expect("stop");
    }

    #[test]
    fn dump_commands_accept_damocles_spellings() {
        let a = parse(&["enable_dump", "--child_pid", "42", "--dump_dir", "/tmp"]).expect("parse");
        assert!(matches!(
            a.command,
            WorkerCommand::EnableDump { child_pid: 42, .. }
        ));
        let a = parse(&["disable-dump", "--child-pid", "42"]).expect("parse");
        assert!(matches!(
            a.command,
            WorkerCommand::DisableDump { child_pid: 42 }
        ));
        assert_eq!(dump_env_name(42), "DUMP_ERR_RESP_42");
    }
}
