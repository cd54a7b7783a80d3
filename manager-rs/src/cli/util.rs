//! `damocles-manager util …`: parameter tooling, and commands that call a running daemon.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use damocles_manager_api::rpc::SealerApiClient;
use damocles_manager_api::rpc::SealerCliApiClient;
use damocles_manager_api::types::{
    SectorId, SectorIndexType, SectorJob, SectorState, SectorWorkerState,
};
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use vc_processors::builtin::params::{self, ParamKind};
use vc_processors::layout::{self, PersistStore, SECTOR_STORE_JSON};

use super::parse_sector_size;
use crate::config::{GoDuration, SectorSize};
use crate::rpc::DamoclesApiClient;

/// `util [--listen ADDR] [--token T] <command>`.
#[derive(Debug, Args)]
pub struct UtilArgs {
    /// The daemon's RPC address.
    #[arg(long, default_value = ":1789", global = true)]
    pub listen: String,
    /// API token (default: the token of `DAMOCLES_MANAGER_API_INFO`, else the home's local
    /// admin token `<home>/token`).
    #[arg(
        long,
        env = "DAMOCLES_API_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Directory holding `sector-manager.cfg` (accepted for compatibility).
    #[arg(long = "conf-dir", global = true, value_name = "DIR")]
    pub conf_dir: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: UtilCommand,
}

/// Utility commands.
#[derive(Debug, Subcommand)]
pub enum UtilCommand {
    /// Groth16 parameters of the proof system.
    #[command(subcommand)]
    Params(ParamsCommand),
    /// Sectors.
    #[command(subcommand)]
    Sealer(SealerCommand),
    /// Persist stores and the sector index.
    #[command(subcommand)]
    Storage(StorageCommand),
    /// Workers that ping the manager.
    #[command(subcommand)]
    Worker(WorkerCommand),
    /// Deals (devnet market).
    #[command(subcommand)]
    Deals(DealsCommand),
    /// The chain.
    #[command(subcommand)]
    Chain(ChainCommand),
    /// The daemon's background tasks: state, restarts, last error, last progress.
    Tasks(TasksArgs),
    /// API tokens, made from the home's secret (no daemon needed).
    #[command(subcommand)]
    Auth(AuthCommand),
}

/// `util auth …`.
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Prints a new token.
    CreateToken(TokenArgs),
    /// Prints `DAMOCLES_MANAGER_API_INFO=<token>:<multiaddr>` for a client of the daemon at
    /// `--listen` (a worker: `--perm write`).
    ApiInfo(TokenArgs),
}

/// What a new token grants.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Permission: `read` (views), `write` (a worker's calls), `sign` or `admin`; each
    /// includes the ones before it.
    #[arg(long)]
    pub perm: damocles_auth::Perm,
    /// A name for the holder, shown in the daemon's logs of what it did.
    #[arg(long)]
    pub name: Option<String>,
    /// Valid for this long (`720h`, `30m`); never expires when not given.
    #[arg(long)]
    pub expire: Option<GoDuration>,
}

impl TokenArgs {
    fn token(&self, home: &std::path::Path) -> Result<String> {
        damocles_auth::token_of_home(
            home,
            self.perm,
            self.name.as_deref(),
            self.expire.map(|d| d.0),
        )
    }
}

impl AuthCommand {
    fn run(self, home: &std::path::Path, listen: &str) -> Result<()> {
        match self {
            AuthCommand::CreateToken(args) => println!("{}", args.token(home)?),
            AuthCommand::ApiInfo(args) => {
                let addr = crate::daemon::client_addr(listen)?;
                let info = damocles_auth::ApiInfo::for_socket(args.token(home)?, addr);
                println!("DAMOCLES_MANAGER_API_INFO={info}");
            }
        }
        Ok(())
    }
}

/// The token `util` sends: `--token` (or `DAMOCLES_API_TOKEN`), else the one of
/// `DAMOCLES_MANAGER_API_INFO`, else the home's local admin token, which goes only to a daemon
/// on this machine (`listen` a loopback address).
fn client_token(given: Option<String>, home: &std::path::Path, listen: &str) -> Option<String> {
    given
        .filter(|t| !t.is_empty())
        .or_else(|| {
            std::env::var(API_INFO_ENV)
                .ok()
                .map(|v| damocles_auth::ApiInfo::parse(&v).token)
                .filter(|t| !t.is_empty())
        })
        .or_else(|| {
            let local = crate::daemon::client_addr(listen).is_ok_and(|a| a.ip().is_loopback());
            if !local {
                tracing::warn!(
                    listen,
                    "not sending the home's admin token to another machine: pass --token or set \
                     DAMOCLES_MANAGER_API_INFO"
                );
                return None;
            }
            damocles_auth::read_local_token(home)
        })
}

/// The variable giving a client of the manager its token and address.
pub const API_INFO_ENV: &str = "DAMOCLES_MANAGER_API_INFO";

impl UtilArgs {
    /// Runs the command.
    pub fn run(self, home: PathBuf) -> Result<()> {
        match self.command {
            UtilCommand::Params(cmd) => cmd.run(),
            UtilCommand::Storage(StorageCommand::GenSectorstoreJson(args)) => args.run(),
            UtilCommand::Auth(cmd) => cmd.run(&home, &self.listen),
            cmd => {
                let token = client_token(self.token, &home, &self.listen);
                let client = client(&self.listen, token.as_deref())?;
                let rt = super::runtime()?;
                rt.block_on(async move {
                    match cmd {
                        UtilCommand::Sealer(SealerCommand::Sectors(c)) => c.run(&client).await,
                        UtilCommand::Storage(c) => c.run(&client).await,
                        UtilCommand::Worker(c) => c.run(&client).await,
                        UtilCommand::Deals(c) => c.run(&client).await,
                        UtilCommand::Chain(c) => c.run(&client).await,
                        UtilCommand::Tasks(c) => c.run(&client).await,
                        UtilCommand::Params(_) | UtilCommand::Auth(_) => Ok(()),
                    }
                })
            }
        }
    }
}

/// An HTTP client of the daemon at `listen` (`:1789` means this machine).
pub fn client(listen: &str, token: Option<&str>) -> Result<HttpClient> {
    let addr = crate::daemon::client_addr(listen)?;
    let mut headers = http::HeaderMap::new();
    if let Some(t) = token.filter(|t| !t.is_empty()) {
        let mut v = http::HeaderValue::from_str(&format!("Bearer {t}"))
            .context("the token is not a valid header value")?;
        v.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, v);
    }
    HttpClientBuilder::default()
        .set_headers(headers)
        .request_timeout(Duration::from_secs(600))
        .build(format!("http://{addr}{}", damocles_manager_api::RPC_PATH))
        .context("building the RPC client")
}

fn rpc_err(e: jsonrpsee::core::ClientError) -> anyhow::Error {
    anyhow::anyhow!("{}", client_error_text(&e))
}

/// A client error as an operator reads it: a refusal for a permission says what to do (the
/// HTTP client keeps only the status of a refused call, not the server's message).
pub fn client_error_text(e: &jsonrpsee::core::ClientError) -> String {
    match damocles_manager_api::rpc::refused_status(e) {
        Some(401) => "the manager refused the call (HTTP 401): no valid token was sent; pass \
                      --token, set DAMOCLES_MANAGER_API_INFO, or run on the manager's machine \
                      with its home (the local admin token is <home>/token)"
            .into(),
        Some(403) => "the manager refused the call (HTTP 403): the token's permission is too \
                      low for it; make one with the permission it needs (`damocles-manager util \
                      auth create-token --perm read|write|admin`; docs/security.md lists each \
                      method's)"
            .into(),
        _ => e.to_string(),
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// `util sealer …`.
#[derive(Debug, Subcommand)]
pub enum SealerCommand {
    /// Sector states.
    #[command(subcommand)]
    Sectors(SectorsCommand),
}

/// A sector on the command line.
#[derive(Debug, Clone, Args)]
pub struct SectorArg {
    /// Miner actor id.
    pub miner: u64,
    /// Sector number.
    pub number: u64,
}

impl SectorArg {
    fn id(&self) -> SectorId {
        SectorId {
            miner: self.miner,
            number: self.number,
        }
    }
}

/// `util sealer sectors …`.
#[derive(Debug, Subcommand)]
pub enum SectorsCommand {
    /// List sector states.
    List {
        /// Finalized and aborted sectors instead of those in progress.
        #[arg(long)]
        offline: bool,
        /// Only sealing sectors (the default).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        sealing: bool,
        /// Only snap-up sectors.
        #[arg(long)]
        snapup: bool,
        /// Only sectors being rebuilt.
        #[arg(long)]
        rebuild: bool,
        /// Only this miner's.
        #[arg(long)]
        miner: Option<u64>,
    },
    /// Show a sector's full state.
    State {
        /// The sector.
        #[command(flatten)]
        sector: SectorArg,
        /// Look in the offline store only.
        #[arg(long)]
        offline: bool,
    },
    /// Abort a sector: the worker sealing it stops at its next report.
    Abort {
        /// The sector.
        #[command(flatten)]
        sector: SectorArg,
    },
    /// Move an aborted sector back online.
    Restore {
        /// The sector.
        #[command(flatten)]
        sector: SectorArg,
        /// Also a sector with deals or without an abort reason.
        #[arg(long)]
        force: bool,
    },
    /// Move a sector that is on chain offline and release its reservation.
    Finalize {
        /// The sector.
        #[command(flatten)]
        sector: SectorArg,
    },
}

fn sector_line(st: &SectorState) -> String {
    let latest = st
        .latest_state
        .as_ref()
        .map(|l| format!("{} ({})", l.state_change.next, l.worker.instance))
        .unwrap_or_else(|| "-".into());
    let deals = st
        .pieces
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|p| !p.is_filler())
        .count();
    let msgs = format!(
        "pre={} prove={}",
        st.message_info
            .pre_commit_cid
            .as_ref()
            .map_or("-", |_| "sent"),
        st.message_info.commit_cid.as_ref().map_or("-", |_| "sent")
    );
    format!(
        "{:<20} {:<6} {:<5} {:<24} {:<20} {}",
        st.id.to_string(),
        st.sector_type.0,
        deals,
        latest,
        msgs,
        if st.abort_reason.is_empty() {
            String::new()
        } else {
            format!("aborted: {}", st.abort_reason)
        }
    )
}

impl SectorsCommand {
    async fn run(self, c: &HttpClient) -> Result<()> {
        match self {
            SectorsCommand::List {
                offline,
                sealing,
                snapup,
                rebuild,
                miner,
            } => {
                let ws = if offline {
                    SectorWorkerState::Offline
                } else {
                    SectorWorkerState::Online
                };
                let job = if snapup {
                    SectorJob::SnapUp
                } else if rebuild {
                    SectorJob::Rebuild
                } else if sealing {
                    SectorJob::Sealing
                } else {
                    SectorJob::All
                };
                let list = SealerCliApiClient::list_sectors(c, ws, job)
                    .await
                    .map_err(rpc_err)?;
                println!(
                    "{:<20} {:<6} {:<5} {:<24} {:<20} NOTE",
                    "SECTOR", "PROOF", "DEALS", "LATEST", "MESSAGES"
                );
                for st in list
                    .iter()
                    .filter(|s| miner.is_none_or(|m| s.id.miner == m))
                {
                    println!("{}", sector_line(st));
                }
                Ok(())
            }
            SectorsCommand::State { sector, offline } => {
                let st = if offline {
                    SealerCliApiClient::find_sector(c, SectorWorkerState::Offline, sector.id())
                        .await
                } else {
                    SealerCliApiClient::find_sector_in_all_states(c, sector.id()).await
                }
                .map_err(rpc_err)?;
                print_json(&st)
            }
            SectorsCommand::Abort { sector } => {
                SealerApiClient::report_aborted(c, sector.id(), "aborted via CLI".into())
                    .await
                    .map_err(rpc_err)?;
                println!("{} aborted", sector.id());
                Ok(())
            }
            SectorsCommand::Restore { sector, force } => {
                SealerCliApiClient::restore_sector(c, sector.id(), force)
                    .await
                    .map_err(rpc_err)?;
                println!("{} restored", sector.id());
                Ok(())
            }
            SectorsCommand::Finalize { sector } => {
                SealerCliApiClient::finalize_sector(c, sector.id())
                    .await
                    .map_err(rpc_err)?;
                println!("{} finalized", sector.id());
                Ok(())
            }
        }
    }
}

/// `util storage …`.
#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    /// Persist stores with capacity and reservations.
    List,
    /// Where a sector's files are indexed.
    Find {
        /// The sector.
        #[command(flatten)]
        sector: SectorArg,
        /// The snap-upgraded replica.
        #[arg(long)]
        upgrade: bool,
    },
    /// Release a sector's space reservation.
    ReleaseReserved {
        /// The sector.
        #[command(flatten)]
        sector: SectorArg,
    },
    /// Write a `sectorstore.json` into a directory (found by `ScanPersistStores`).
    GenSectorstoreJson(GenSectorStoreJsonArgs),
    /// Index the sectors of a directory that already holds sealed sectors (`sealed/`,
    /// `cache/`, `update/`, `update-cache/`) and print its `[[Common.PersistStores]]` block.
    /// The manager reads the directory, so give a path on the manager's machine; works while
    /// the manager runs.
    Attach(AttachArgs),
}

/// `util storage attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The store directory.
    pub path: PathBuf,
    /// Store name for the index and the config block (default: the directory).
    #[arg(long)]
    pub name: Option<String>,
    /// `Strict` in the printed block.
    #[arg(long)]
    pub strict: bool,
    /// `ReadOnly` in the printed block.
    #[arg(long = "read-only", alias = "readonly")]
    pub read_only: bool,
    /// Sealed files and cache directories live in different stores: index each half found.
    #[arg(long = "allow-splitted")]
    pub allow_splitted: bool,
    /// Glob over sector names.
    #[arg(long, default_value = layout::SECTOR_NAME_GLOB)]
    pub pattern: String,
    /// List every sector indexed.
    #[arg(long)]
    pub verbose: bool,
}

impl AttachArgs {
    async fn run(self, c: &HttpClient) -> Result<()> {
        let path = std::path::absolute(&self.path)
            .with_context(|| format!("resolving {}", self.path.display()))?;
        let opts = crate::attach::AttachOptions {
            name: self.name.unwrap_or_default(),
            strict: self.strict,
            read_only: self.read_only,
            allow_splitted: self.allow_splitted,
            pattern: self.pattern,
        };
        let report = DamoclesApiClient::storage_attach(c, path.display().to_string(), opts)
            .await
            .map_err(rpc_err)?;
        for s in &report.skipped {
            eprintln!("skipped {}: {}", s.path, s.reason);
        }
        if self.verbose {
            for s in &report.sectors {
                let what = match (s.sealed, s.cache) {
                    (true, true) => "sealed file and cache",
                    (true, false) => "sealed file",
                    _ => "cache",
                };
                let kind = if s.upgrade { " (upgrade)" } else { "" };
                println!("{}{kind}: {what}", s.id);
            }
        }
        println!(
            "{} sectors of {} indexed as store {:?} ({} skipped). Add this to sector-manager.cfg:\n",
            report.sectors.len(),
            report.path,
            report.name,
            report.skipped.len()
        );
        print!("{}", report.config);
        Ok(())
    }
}

/// `util tasks`.
#[derive(Debug, Args)]
pub struct TasksArgs {
    /// Print the statuses as JSON.
    #[arg(long)]
    pub json: bool,
}

impl TasksArgs {
    async fn run(self, c: &HttpClient) -> Result<()> {
        let tasks = DamoclesApiClient::tasks(c).await.map_err(rpc_err)?;
        if self.json {
            return print_json(&tasks);
        }
        let now = crate::util::unix_now();
        let ago = |t: Option<i64>| match t {
            Some(t) => format!("{}s ago", now.saturating_sub(t)),
            None => "-".to_string(),
        };
        println!(
            "{:<24} {:<10} {:>8} {:<8} {:<14} LAST ERROR",
            "TASK", "STATE", "RESTARTS", "CRITICAL", "LAST PROGRESS"
        );
        for t in tasks {
            println!(
                "{:<24} {:<10} {:>8} {:<8} {:<14} {}",
                t.name,
                format!("{:?}", t.state),
                t.restarts,
                if t.critical { "yes" } else { "no" },
                ago(t.last_progress_at),
                t.last_error.as_deref().unwrap_or("-")
            );
        }
        Ok(())
    }
}

/// `util storage gen-sectorstore-json`.
#[derive(Debug, Args)]
pub struct GenSectorStoreJsonArgs {
    /// The store directory.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Instance name (default: the directory).
    #[arg(long)]
    pub name: Option<String>,
    /// Only regular files are objects.
    #[arg(long)]
    pub strict: bool,
    /// Never chosen for new sectors.
    #[arg(long)]
    pub readonly: bool,
    /// Choice weight.
    #[arg(long, default_value_t = 1)]
    pub weight: u64,
    /// objstore plugin.
    #[arg(long = "plugin-name")]
    pub plugin_name: Option<String>,
    /// Miners allowed.
    #[arg(long = "allow-miners", value_delimiter = ',')]
    pub allow_miners: Vec<u64>,
    /// Miners refused.
    #[arg(long = "deny-miners", value_delimiter = ',')]
    pub deny_miners: Vec<u64>,
}

impl GenSectorStoreJsonArgs {
    fn run(self) -> Result<()> {
        if !self.path.is_dir() {
            bail!("{} is not a directory", self.path.display());
        }
        let file = self.path.join(SECTOR_STORE_JSON);
        if file.exists() {
            bail!("{} exists", file.display());
        }
        let j = PersistStore {
            name: self.name.unwrap_or_default(),
            strict: self.strict,
            read_only: self.readonly,
            weight: self.weight,
            allow_miners: self.allow_miners,
            deny_miners: self.deny_miners,
            plugin_name: self.plugin_name,
            ..PersistStore::default()
        };
        std::fs::write(&file, serde_json::to_string_pretty(&j)? + "\n")
            .with_context(|| format!("writing {}", file.display()))?;
        println!("wrote {}", file.display());
        Ok(())
    }
}

impl StorageCommand {
    async fn run(self, c: &HttpClient) -> Result<()> {
        match self {
            StorageCommand::List => {
                let list = SealerCliApiClient::store_list(c).await.map_err(rpc_err)?;
                println!(
                    "{:<16} {:<14} {:>14} {:>14} {:>7} {:>14} {:>5} PATH",
                    "NAME", "TYPE", "TOTAL", "FREE", "USED%", "RESERVED", "RES#"
                );
                for s in list {
                    println!(
                        "{:<16} {:<14} {:>14} {:>14} {:>6.1}% {:>14} {:>5} {}{}",
                        s.basic.name,
                        s.kind,
                        s.total,
                        s.free,
                        s.used_percent,
                        s.reserved,
                        s.reserved_by.len(),
                        s.basic.path,
                        if s.basic.read_only {
                            " (read-only)"
                        } else {
                            ""
                        }
                    );
                }
                Ok(())
            }
            StorageCommand::Find { sector, upgrade } => {
                let index = if upgrade {
                    SectorIndexType::Upgrade
                } else {
                    SectorIndexType::Normal
                };
                let r = SealerCliApiClient::sector_indexer_find(c, index, sector.id())
                    .await
                    .map_err(rpc_err)?;
                if !r.found {
                    bail!("{} is not indexed", sector.id());
                }
                println!(
                    "sealed file: {}\ncache dir:   {}",
                    r.instance.sealed_file, r.instance.cache_dir
                );
                Ok(())
            }
            StorageCommand::ReleaseReserved { sector } => {
                let released = SealerCliApiClient::store_release_reserved(c, sector.id())
                    .await
                    .map_err(rpc_err)?;
                println!(
                    "{}",
                    if released {
                        "released"
                    } else {
                        "no reservation"
                    }
                );
                Ok(())
            }
            StorageCommand::GenSectorstoreJson(args) => args.run(),
            StorageCommand::Attach(args) => args.run(c).await,
        }
    }
}

/// `util worker …`.
#[derive(Debug, Subcommand)]
pub enum WorkerCommand {
    /// Workers with the age of their last ping.
    List {
        /// Mark workers silent for longer than this.
        #[arg(long, default_value = "10m")]
        expiration: GoDuration,
    },
    /// Forget a worker.
    Remove {
        /// Worker name.
        name: String,
    },
    /// The worker-prover's WindowPoSt jobs (`daemon run --worker-prover`).
    #[command(subcommand)]
    Wdpost(WdpostCommand),
}

/// `util worker wdpost …`.
#[derive(Debug, Subcommand)]
pub enum WdpostCommand {
    /// Jobs not finished or failed, newest first.
    List {
        /// Succeeded jobs too.
        #[arg(long)]
        all: bool,
        /// Every field, as JSON.
        #[arg(long)]
        detail: bool,
    },
    /// Put jobs back in the queue with no attempt counted.
    Reset {
        /// Job ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Delete jobs (a poster still waiting for one queues it again).
    Remove {
        /// Job ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Delete every job.
    RemoveAll {
        /// Confirms the deletion.
        #[arg(long)]
        really_do_it: bool,
    },
}

impl WdpostCommand {
    async fn run(self, c: &HttpClient) -> Result<()> {
        use damocles_manager_api::rpc::WorkerWdPoStApiClient;
        let wdpost_err = |e: jsonrpsee::core::ClientError| match &e {
            jsonrpsee::core::ClientError::Call(obj)
                if obj.code() == jsonrpsee::types::error::METHOD_NOT_FOUND_CODE =>
            {
                anyhow::anyhow!("the manager does not run the worker-prover (start it with `daemon run --worker-prover`): {e}")
            }
            _ => rpc_err(e),
        };
        match self {
            WdpostCommand::List { all, detail } => {
                let list = WorkerWdPoStApiClient::wdpost_all_jobs(c)
                    .await
                    .map_err(wdpost_err)?;
                let shown: Vec<_> = list
                    .jobs
                    .into_iter()
                    .filter(|j| all || !j.job.succeeded())
                    .collect();
                if detail {
                    return print_json(&shown);
                }
                println!(
                    "{:<14} {:>7} {:>4} {:<10} {:>7} {:>6} {:>5} {:<16} {:<20} ERROR",
                    "ID", "MINER", "DL", "STATE", "SECTORS", "FAULTS", "TRIES", "WORKER", "CREATED"
                );
                for j in shown {
                    println!(
                        "{:<14} {:>7} {:>4} {:<10} {:>7} {:>6} {:>5} {:<16} {:<20} {}",
                        j.job.id,
                        j.job.input.miner_id,
                        j.job.deadline_idx,
                        j.job.state.as_str(),
                        j.sectors,
                        j.faults,
                        format!("{}/{}", j.job.try_num, list.max_try),
                        if j.job.worker_name.is_empty() {
                            "-"
                        } else {
                            &j.job.worker_name
                        },
                        humantime::format_rfc3339_seconds(
                            std::time::UNIX_EPOCH + Duration::from_secs(j.job.created_at)
                        ),
                        j.job.error_reason
                    );
                }
                Ok(())
            }
            WdpostCommand::Reset { ids } => {
                for id in ids {
                    WorkerWdPoStApiClient::wdpost_reset_job(c, id.clone())
                        .await
                        .map_err(wdpost_err)
                        .with_context(|| format!("resetting job {id}"))?;
                    println!("job {id} reset");
                }
                Ok(())
            }
            WdpostCommand::Remove { ids } => {
                for id in ids {
                    WorkerWdPoStApiClient::wdpost_remove_job(c, id.clone())
                        .await
                        .map_err(wdpost_err)
                        .with_context(|| format!("removing job {id}"))?;
                    println!("job {id} removed");
                }
                Ok(())
            }
            WdpostCommand::RemoveAll { really_do_it } => {
                if !really_do_it {
                    anyhow::bail!("remove-all deletes every WindowPoSt job: add --really-do-it");
                }
                let list = WorkerWdPoStApiClient::wdpost_all_jobs(c)
                    .await
                    .map_err(wdpost_err)?;
                let n = list.jobs.len();
                for j in list.jobs {
                    WorkerWdPoStApiClient::wdpost_remove_job(c, j.job.id.clone())
                        .await
                        .map_err(wdpost_err)
                        .with_context(|| format!("removing job {}", j.job.id))?;
                }
                println!("{n} jobs removed");
                Ok(())
            }
        }
    }
}

impl WorkerCommand {
    async fn run(self, c: &HttpClient) -> Result<()> {
        match self {
            WorkerCommand::List { expiration } => {
                let now = crate::util::unix_now();
                let list = SealerCliApiClient::worker_ping_info_list(c)
                    .await
                    .map_err(rpc_err)?;
                println!(
                    "{:<20} {:<22} {:<10} {:>7} {:>7} {:>7} {:>7} {:>10} STATUS",
                    "NAME", "DEST", "VERSION", "THREADS", "EMPTY", "PAUSED", "ERRORS", "LAST PING"
                );
                for w in list {
                    let age = now - w.last_ping;
                    let status = if age as u64 > expiration.0.as_secs() {
                        "expired"
                    } else {
                        "ok"
                    };
                    let s = &w.info.summary;
                    println!(
                        "{:<20} {:<22} {:<10} {:>7} {:>7} {:>7} {:>7} {:>9}s {}",
                        w.info.name,
                        w.info.dest,
                        w.info.version,
                        s.threads,
                        s.empty,
                        s.paused,
                        s.errors,
                        age,
                        status
                    );
                }
                Ok(())
            }
            WorkerCommand::Remove { name } => {
                SealerCliApiClient::worker_ping_info_remove(c, name.clone())
                    .await
                    .map_err(rpc_err)?;
                println!("removed {name}");
                Ok(())
            }
            WorkerCommand::Wdpost(cmd) => cmd.run(c).await,
        }
    }
}

/// `util deals …`.
#[derive(Debug, Subcommand)]
pub enum DealsCommand {
    /// Import a file as a deal: piece commitment, piece store, published on the devnet, queued.
    Import {
        /// The miner.
        #[arg(long)]
        miner: u64,
        /// Epochs from now by which the deal must be sealed.
        #[arg(long = "start-in")]
        start_in: Option<i64>,
        /// The file (a path on the daemon's machine).
        file: PathBuf,
    },
    /// Deals the manager holds.
    List,
}

impl DealsCommand {
    async fn run(self, c: &HttpClient) -> Result<()> {
        match self {
            DealsCommand::Import {
                miner,
                start_in,
                file,
            } => {
                let abs = std::path::absolute(&file)
                    .with_context(|| format!("resolving {}", file.display()))?;
                let rec =
                    DamoclesApiClient::deals_import(c, miner, abs.display().to_string(), start_in)
                        .await
                        .map_err(rpc_err)?;
                println!(
                    "deal {} queued for miner {miner}: piece {} ({} bytes padded, {} bytes of data), start epoch {}",
                    rec.deal.deal_id, rec.deal.proposal.piece_cid, rec.deal.proposal.piece_size, rec.payload_size, rec.deal.proposal.start_epoch
                );
                Ok(())
            }
            DealsCommand::List => {
                let list = DamoclesApiClient::deals_list(c).await.map_err(rpc_err)?;
                println!(
                    "{:<6} {:<8} {:>9} {:<66} STATE",
                    "DEAL", "MINER", "SIZE", "PIECE"
                );
                for r in list {
                    let state = match r.state {
                        crate::deals::DealState::Queued => "queued".to_string(),
                        crate::deals::DealState::Assigned { sector } => format!("in {sector}"),
                    };
                    println!(
                        "{:<6} {:<8} {:>9} {:<66} {state}",
                        r.deal.deal_id,
                        r.deal.proposal.provider,
                        r.deal.proposal.piece_size,
                        r.deal.proposal.piece_cid.to_string()
                    );
                }
                Ok(())
            }
        }
    }
}

/// `util chain …`.
#[derive(Debug, Subcommand)]
pub enum ChainCommand {
    /// Head, constants and counts.
    Head,
    /// A miner: sector size, power, current deadline.
    Miner {
        /// Actor id.
        miner: u64,
    },
    /// A miner's sectors with their on-chain state.
    Sectors {
        /// Actor id.
        miner: u64,
    },
    /// A miner's deadlines and partitions.
    Deadlines {
        /// Actor id.
        miner: u64,
    },
}

impl ChainCommand {
    async fn run(self, c: &HttpClient) -> Result<()> {
        match self {
            ChainCommand::Head => {
                print_json(&DamoclesApiClient::chain_head(c).await.map_err(rpc_err)?)
            }
            ChainCommand::Miner { miner } => print_json(
                &DamoclesApiClient::chain_miner(c, miner)
                    .await
                    .map_err(rpc_err)?,
            ),
            ChainCommand::Sectors { miner } => {
                let v = DamoclesApiClient::chain_sectors(c, miner)
                    .await
                    .map_err(rpc_err)?;
                println!(
                    "{:<8} {:<10} {:<10} {:<8} {:<9} {:<8} {:<8} DEALS",
                    "SECTOR", "STATE", "ACTIVATED", "EXPIRES", "DEADLINE", "PART", "PROOF"
                );
                for s in &v.active {
                    let state = if v.faulty.contains(&s.sector_number) {
                        "faulty"
                    } else {
                        "active"
                    };
                    println!(
                        "{:<8} {:<10} {:<10} {:<8} {:<9} {:<8} {:<8} {:?}",
                        s.sector_number,
                        state,
                        s.activation,
                        s.expiration,
                        s.deadline,
                        s.partition,
                        if s.proof_verified { "verified" } else { "-" },
                        s.deal_ids
                    );
                }
                for p in &v.pre_committed {
                    println!(
                        "{:<8} {:<10} {:<10} {:<8} {:<9} {:<8} {:<8} {:?}",
                        p.info.sector_number,
                        "precommit",
                        p.pre_commit_epoch,
                        p.info.expiration,
                        "-",
                        "-",
                        "-",
                        p.info.deal_ids
                    );
                }
                Ok(())
            }
            ChainCommand::Deadlines { miner } => {
                let dls = DamoclesApiClient::chain_deadlines(c, miner)
                    .await
                    .map_err(rpc_err)?;
                println!(
                    "{:<9} {:<11} {:<8} {:<8} {:<11}",
                    "DEADLINE", "PARTITIONS", "SECTORS", "FAULTY", "RECOVERING"
                );
                for (i, parts) in dls.iter().enumerate() {
                    let sectors: usize = parts.iter().map(|p| p.all_sectors.len()).sum();
                    if sectors == 0 {
                        continue;
                    }
                    let faulty: usize = parts.iter().map(|p| p.faulty_sectors.len()).sum();
                    let rec: usize = parts.iter().map(|p| p.recovering_sectors.len()).sum();
                    println!(
                        "{i:<9} {:<11} {sectors:<8} {faulty:<8} {rec:<11}",
                        parts.len()
                    );
                }
                Ok(())
            }
        }
    }
}

/// Which parameters.
#[derive(Debug, Clone, Args)]
pub struct ParamsSelection {
    /// Sector size: 2KiB, 8MiB or 512MiB (check also accepts 32GiB and 64GiB).
    #[arg(long = "sector-size", value_parser = parse_sector_size)]
    pub sector_size: u64,
    /// Circuits, comma separated: porep, window-post, winning-post, snap-deals (default: all).
    #[arg(long = "kind", value_delimiter = ',')]
    pub kinds: Vec<ParamKind>,
}

impl ParamsSelection {
    fn kinds(&self) -> Vec<ParamKind> {
        if self.kinds.is_empty() {
            ParamKind::ALL.to_vec()
        } else {
            self.kinds.clone()
        }
    }
}

/// `util params generate|check`.
///
/// Parameters live in `FIL_PROOFS_PARAMETER_CACHE` (default
/// `/var/tmp/filecoin-proof-parameters`). Generated parameters are random: proofs made with
/// them verify only against the same cache.
#[derive(Debug, Subcommand)]
pub enum ParamsCommand {
    /// Generate the missing parameters, cheapest first, with progress on stderr.
    Generate(ParamsSelection),
    /// Report which parameters are present; exits non-zero if any is missing.
    Check(ParamsSelection),
}

impl ParamsCommand {
    /// Runs the command.
    pub fn run(self) -> Result<()> {
        match self {
            ParamsCommand::Generate(sel) => {
                let outcomes = params::generate(
                    sel.sector_size,
                    &sel.kinds(),
                    Duration::from_secs(30),
                    &params::print_progress,
                )?;
                for o in outcomes {
                    let what = match o.generated_in {
                        Some(t) => format!("generated in {:.1}s", t.as_secs_f64()),
                        None => "already present".to_string(),
                    };
                    // A String, so that the width pads it.
                    let size = SectorSize(o.entry.sector_size).to_string();
                    println!(
                        "{:<8} {:<13} {:<16} {}",
                        size,
                        o.entry.kind,
                        what,
                        o.entry.params.display()
                    );
                }
                Ok(())
            }
            ParamsCommand::Check(sel) => {
                let statuses = params::check(sel.sector_size, &sel.kinds())?;
                let mut missing = Vec::new();
                for s in &statuses {
                    let state = if s.is_complete() {
                        "present".to_string()
                    } else {
                        missing.push(s.entry.kind);
                        format!("MISSING {}", s.problems().join(" "))
                    };
                    let size = s
                        .params_bytes
                        .map(|b| format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64))
                        .unwrap_or_else(|| "-".to_string());
                    // A String, so that the width pads it.
                    let sector_size = SectorSize(s.entry.sector_size).to_string();
                    println!(
                        "{:<8} {:<13} {:<24} {:>11}  {}",
                        sector_size,
                        s.entry.kind,
                        state,
                        size,
                        s.entry.params.display()
                    );
                }
                if !missing.is_empty() {
                    let kinds: Vec<String> = missing.iter().map(ToString::to_string).collect();
                    bail!(
                        "missing parameters for {}: {}; run `damocles-manager util params generate --sector-size {} --kind {}`",
                        SectorSize(sel.sector_size),
                        kinds.join(", "),
                        SectorSize(sel.sector_size),
                        kinds.join(",")
                    );
                }
                Ok(())
            }
        }
    }
}
