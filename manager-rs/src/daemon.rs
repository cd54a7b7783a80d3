//! The daemon: opens the state, the chain, the stores and the managers, then serves the API
//! until it is told to stop.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use damocles_auth::rpc::Authenticator;
use jsonrpsee::server::ServerHandle;
use tokio_util::sync::CancellationToken;

use crate::chain::devnet::Devnet;
use crate::chain::outbox::Outbox;
use crate::chain::views::ChainViews;
use crate::chain::Chain;
use crate::commit::Commitments;
use crate::config::ManagerConfig;
use crate::deals::DealManager;
use crate::kv::Kv;
use crate::lifecycle::{LifecycleParts, SectorLifecycle};
use crate::post::jobs::JobQueue;
use crate::rpc;
use crate::sectors::{NumberAllocator, SectorStates};
use crate::services::Services;
use crate::stores::{scan_persist_stores, PieceStores, SectorIndex, StoreManager, StoreOpener};
use crate::supervisor::Supervisor;
use crate::workers::WorkerRegistry;

/// How to run.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The home, holding the API secret and the local admin token ([`damocles_auth::open_home`]).
    pub home: PathBuf,
    /// A store name that is not configured is a file store at that path (mock mode).
    pub auto_fs_stores: bool,
    /// Run the WindowPoSt scheduler (`--poster`) for the miners with `PoSt.Enabled`.
    pub poster: bool,
    /// `--ext-prover`: prove with the children of this `ext-prover.cfg`.
    pub ext_prover: Option<PathBuf>,
    /// `--worker-prover`: WindowPoSt jobs for the wdpost threads of workers, and the
    /// `WdPoSt*` methods they call.
    pub worker_prover: bool,
    /// `--miner`: answer the chain's elections of the miners with `[Miners.Proof] Enabled`
    /// with WinningPoSt proofs.
    pub miner: bool,
}

/// A running daemon.
pub struct Daemon {
    /// The services the API is served by (the background tasks among them).
    pub services: Arc<Services>,
    /// The address served.
    pub addr: SocketAddr,
    handle: ServerHandle,
    stop: CancellationToken,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Parses a listen address the Go way: `:1789` is every interface, port 1789.
pub fn parse_listen(s: &str) -> Result<SocketAddr> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.to_socket_addrs()
        .with_context(|| format!("invalid listen address {s:?} (expected host:port or :port)"))?
        .next()
        .with_context(|| format!("listen address {s:?} resolves to nothing"))
}

/// The address a client on this machine uses to reach a daemon listening on `s`.
pub fn client_addr(s: &str) -> Result<SocketAddr> {
    let mut addr = parse_listen(s)?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Ok(addr)
}

/// The API's credentials: the secret of `home` (made with the local admin token on the first
/// start, with a message saying how to give workers theirs), the deprecated static token and
/// the networks whose callers need no token for `write`.
fn api_authenticator(home: &Path, auth: &crate::config::AuthConfig) -> Result<Authenticator> {
    let legacy_token = auth.token.as_str();
    let open = damocles_auth::rpc::parse_networks(
        "[Common.Auth] UnauthenticatedWriteFrom",
        &auth.unauthenticated_write_from,
    )
    .map_err(anyhow::Error::msg)?;
    if !open.is_empty() {
        let listed: Vec<String> = open.iter().map(ToString::to_string).collect();
        tracing::warn!(
            networks = %listed.join(", "),
            "callers without a token from these networks may make every `write` call \
             ([Common.Auth] UnauthenticatedWriteFrom); `admin` still needs a token"
        );
    }
    let keys = damocles_auth::open_home(home).context("opening the API secret")?;
    if keys.created {
        tracing::warn!(
            secret = %keys.secret_path.display(),
            admin_token = %keys.token_path.display(),
            "API authentication is on: every call needs a token. The local `util` commands use \
             the admin token; give each worker a `write` token (`damocles-manager util auth \
             api-info --perm write`, in its sector_manager.rpc_client.token, or \
             DAMOCLES_MANAGER_API_INFO)"
        );
    }
    if !legacy_token.is_empty() {
        tracing::warn!(
            "[Common.Auth] Token is deprecated: it grants `write` only; give each client a token \
             of `damocles-manager util auth create-token --perm <read|write|admin>`"
        );
    }
    Ok(Authenticator::new(
        keys.secret,
        Some(legacy_token.to_string()),
        rpc::CREATE_TOKEN_COMMAND,
    )
    .with_open_networks(open))
}

fn install_metrics() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // The margins as a histogram with fixed buckets: one sample per deadline a day
            // would leave a rolling summary empty most of the time.
            let builder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(
                        crate::post::margin::MARGIN_HISTOGRAM.to_string(),
                    ),
                    &crate::post::margin::MARGIN_BUCKETS,
                );
            let installed = builder.and_then(|b| b.install_recorder());
            match installed {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

impl Daemon {
    /// Starts everything; the database lives in `db_dir`.
    pub async fn start(cfg: ManagerConfig, db_dir: &Path, opts: DaemonOptions) -> Result<Daemon> {
        let cfg = Arc::new(cfg);
        let stop = CancellationToken::new();
        let supervisor = Supervisor::new(stop.clone());
        tracing::info!(db = %db_dir.display(), "opening the state database");
        let kv = Kv::open(db_dir)?;
        let Some(devnet_cfg) = &cfg.devnet else {
            bail!("no chain: only the embedded devnet is supported ([Common.API] Chain = \"devnet\" and a [Devnet] section)");
        };
        tracing::info!("starting the devnet chain");
        let devnet = Devnet::open(kv.clone(), devnet_cfg)?;
        let blocks = devnet.clone();
        supervisor.every("chain", true, devnet.block_delay(), move || {
            blocks.clone().next_block()
        });
        let chain: Arc<dyn Chain> = devnet;
        let head = chain.head().await?;
        tracing::info!(epoch = head.epoch, "devnet head");

        tracing::info!("opening the stores");
        let opener = StoreOpener::new(StoreOpener::default_plugin_dir(
            cfg.common.plugins.dir.as_deref(),
        ));
        let mut persist = cfg.common.persist_stores.clone();
        persist.extend(scan_persist_stores(&cfg.common.scan_persist_stores)?);
        let stores = Arc::new(StoreManager::open(
            persist,
            kv.clone(),
            opener.clone(),
            opts.auto_fs_stores,
        )?);
        let pieces = Arc::new(PieceStores::open(&cfg.common.piece_stores, &opener)?);
        // Temporary files of writers killed mid-write, in the stores of local directories.
        vc_processors::builtin::spawn_temp_sweep(
            stores
                .all()
                .into_iter()
                .filter(|s| s.kind == "fs" && !s.config.read_only)
                .map(|s| PathBuf::from(&s.config.path))
                .chain(
                    cfg.common
                        .piece_stores
                        .iter()
                        .filter(|p| {
                            !p.read_only
                                && p.plugin_name
                                    .as_deref()
                                    .or(p.plugin.as_deref())
                                    .unwrap_or("")
                                    .is_empty()
                        })
                        .map(|p| PathBuf::from(&p.path)),
                )
                .collect(),
        );

        let states = Arc::new(SectorStates::new(kv.clone()));
        let outbox = Outbox::new(kv.clone(), chain.clone());
        outbox.start(&supervisor);
        let commitments = Commitments::new(
            chain.clone(),
            states.clone(),
            cfg.clone(),
            outbox.clone(),
            supervisor.clone(),
        );
        let index = SectorIndex::new(kv.clone());
        let import_dirs = devnet_cfg
            .deal_import_dirs
            .iter()
            .map(PathBuf::from)
            .collect();
        let deals = Arc::new(DealManager::new(
            kv.clone(),
            chain.clone(),
            pieces.clone(),
            import_dirs,
        ));
        let lifecycle = Arc::new(SectorLifecycle::new(LifecycleParts {
            cfg: cfg.clone(),
            chain: chain.clone(),
            numbers: NumberAllocator::new(kv.clone()),
            states: states.clone(),
            stores: stores.clone(),
            index: index.clone(),
            deals: deals.clone(),
            commitments: commitments.clone(),
        }));
        lifecycle.release_stale_reservations()?;
        commitments.start()?;
        let jobs = if opts.worker_prover {
            let jobs = Arc::new(JobQueue::new(
                kv.clone(),
                cfg.common.proving.worker_prover.clone(),
            ));
            // One round at once (heartbeats that expired while the manager was down), then
            // every interval.
            if let Err(e) = jobs.clone().maintenance_round().await {
                tracing::warn!(error = %format!("{e:#}"), "WindowPoSt job maintenance failed");
            }
            let queue = jobs.clone();
            supervisor.every(
                "wdpost-jobs",
                false,
                jobs.maintenance_interval(),
                move || queue.clone().maintenance_round(),
            );
            tracing::info!("worker-prover enabled: serving WindowPoSt jobs to wdpost threads");
            Some(jobs)
        } else {
            None
        };
        if opts.poster || opts.miner {
            let root = scratch_root(&cfg, &opts.home);
            crate::post::remote::private_scratch_root(&root)?;
            let removed = crate::post::remote::remove_stale_scratch(&root);
            if removed > 0 {
                tracing::info!(removed, root = %root.display(), "removed PoSt scratch directories left by a killed manager");
            }
        }
        if opts.poster {
            let backend = match (&opts.ext_prover, &jobs) {
                (Some(path), _) => ProverBackend::Ext(path.clone()),
                (None, Some(jobs)) => ProverBackend::Workers(jobs.clone()),
                (None, None) => ProverBackend::Builtin,
            };
            start_poster(
                &cfg,
                &chain,
                locator(&cfg, &opts.home, &index, &stores),
                backend,
                &outbox,
                &supervisor,
            )
            .await?;
        }

        if opts.miner {
            start_winning_poster(
                &cfg,
                &chain,
                locator(&cfg, &opts.home, &index, &stores),
                opts.ext_prover.as_deref(),
                &supervisor,
            )
            .await?;
        }

        let services = Arc::new(Services {
            lifecycle,
            workers: WorkerRegistry::new(kv.clone()),
            chain: ChainViews::new(chain.clone(), states.clone()),
            deals,
            stores,
            index,
            cfg: cfg.clone(),
            supervisor: supervisor.clone(),
        });
        let module = rpc::module(services.clone(), jobs)?;
        let metrics = install_metrics();
        if let Some(h) = metrics.clone() {
            supervisor.every("metrics-upkeep", false, Duration::from_secs(5), move || {
                h.run_upkeep();
                async { anyhow::Ok(()) }
            });
        }
        let auth = api_authenticator(&opts.home, &cfg.common.auth)?;
        let routes = rpc::http::Routes::new(auth, metrics, Some(pieces));
        let (handle, addr) = rpc::serve(opts.listen, module, routes).await?;
        metrics::gauge!("damocles_manager_info").set(1.0);
        tracing::info!(%addr, "serving the API at /rpc/v0 (every call needs a token)");
        Ok(Daemon {
            services,
            addr,
            handle,
            stop,
        })
    }

    /// Stops serving, stops the background jobs and closes the database.
    pub async fn shutdown(self) {
        tracing::info!("stopping the RPC server");
        let _ = self.handle.stop();
        self.handle.stopped().await;
        tracing::info!("stopping background tasks");
        self.stop.cancel();
        self.services.supervisor.join(Duration::from_secs(10)).await;
        tracing::info!("stopped");
    }

    /// Runs until SIGINT or SIGTERM, then shuts down; a critical background task that cannot
    /// run stops the daemon with an error naming it.
    pub async fn run_until_signalled(self) -> Result<()> {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        let supervisor = self.services.supervisor.clone();
        let fatal = supervisor.fatal().clone();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = fatal.cancelled() => {}
        }
        let reason = supervisor.fatal_reason();
        self.shutdown().await;
        match reason {
            Some(reason) => bail!("{reason}"),
            None => Ok(()),
        }
    }
}

/// Where WindowPoSt proofs are computed.
#[derive(Debug)]
enum ProverBackend {
    /// In this process.
    Builtin,
    /// By the `[[WdPost]]` children of this `ext-prover.cfg` (the builtin when it has none).
    Ext(PathBuf),
    /// By the wdpost threads of workers, through this queue.
    Workers(Arc<JobQueue>),
}

/// Starts the WindowPoSt scheduler with its prover.
async fn start_poster(
    cfg: &ManagerConfig,
    chain: &Arc<dyn Chain>,
    locator: crate::post::SectorLocator,
    backend: ProverBackend,
    outbox: &Arc<Outbox>,
    supervisor: &Arc<Supervisor>,
) -> Result<()> {
    use crate::post::check::CheckLimits;
    use crate::post::ext::{ExtProverConfig, ExtWindowProver};
    use crate::post::prover::{BuiltinProver, WindowProver, WorkerProver};
    let prover: Arc<dyn WindowProver> = match backend {
        ProverBackend::Builtin => Arc::new(BuiltinProver::default()),
        ProverBackend::Workers(jobs) => Arc::new(WorkerProver::new(jobs)),
        ProverBackend::Ext(path) => {
            let path = path.as_path();
            let ext = ExtProverConfig::load(path)?;
            if ext.wd_post.is_empty() && ext.win_post.is_empty() {
                bail!(
                    "--ext-prover: {} has no [[WdPost]] or [[WinPost]] block: no ext prover constructed",
                    path.display()
                );
            }
            if ext.wd_post.is_empty() {
                tracing::info!(
                    "ext-prover.cfg has no [[WdPost]]: WindowPoSt uses the builtin prover"
                );
                Arc::new(BuiltinProver::default())
            } else {
                let blocks = ext.wd_post.clone();
                Arc::new(
                    tokio::task::spawn_blocking(move || ExtWindowProver::start(&blocks))
                        .await
                        .context("starting the ext-prover children")??,
                )
            }
        }
    };
    use crate::post::scheduler::{PoStMiner, Poster};
    let miners: Vec<PoStMiner> = cfg
        .miners
        .iter()
        .map(|m| PoStMiner {
            actor: m.actor,
            cfg: m.post.clone(),
        })
        .collect();
    let proving = &cfg.common.proving;
    let poster = Poster::new(
        chain.clone(),
        outbox.clone(),
        locator,
        prover,
        miners,
        CheckLimits {
            parallel: proving.parallel_check_limit as usize,
            single_timeout: proving.single_check_timeout.0,
            total_timeout: proving.partition_check_timeout.0,
        },
    );
    supervisor.spawn("poster", true, move |ctx| poster.clone().run(ctx));
    Ok(())
}

/// Where PoSt sectors of object stores are fetched: `[Common.Proving] ScratchDir`, else
/// `post-scratch` in the home (private to the manager's user, not the shared `/tmp`).
fn scratch_root(cfg: &ManagerConfig, home: &Path) -> PathBuf {
    cfg.common
        .proving
        .scratch_dir
        .clone()
        .unwrap_or_else(|| home.join("post-scratch"))
}

/// How PoSt provers find sectors: the index and the persist stores, fetching into the scratch
/// root.
fn locator(
    cfg: &ManagerConfig,
    home: &Path,
    index: &SectorIndex,
    stores: &Arc<StoreManager>,
) -> crate::post::SectorLocator {
    crate::post::SectorLocator {
        index: index.clone(),
        stores: stores.clone(),
        scratch_root: scratch_root(cfg, home),
    }
}

/// Starts the WinningPoSt miner module with the builtin prover, or the `[[WinPost]]` children
/// of `ext_prover` when it has some.
async fn start_winning_poster(
    cfg: &ManagerConfig,
    chain: &Arc<dyn Chain>,
    locator: crate::post::SectorLocator,
    ext_prover: Option<&Path>,
    supervisor: &Arc<Supervisor>,
) -> Result<()> {
    use crate::post::ext::{ExtProverConfig, ExtWinningProver};
    use crate::post::winning::{BuiltinWinningProver, WinningPoster, WinningProver};
    let miners: Vec<u64> = cfg
        .miners
        .iter()
        .filter(|m| m.proof.enabled)
        .map(|m| m.actor)
        .collect();
    if miners.is_empty() {
        tracing::warn!(
            "--miner: no miner has [Miners.Proof] Enabled = true; no WinningPoSt is computed"
        );
        return Ok(());
    }
    let blocks = match ext_prover {
        Some(path) => ExtProverConfig::load(path)?.win_post,
        None => Vec::new(),
    };
    let prover: Arc<dyn WinningProver> = if blocks.is_empty() {
        Arc::new(BuiltinWinningProver::default())
    } else {
        Arc::new(
            tokio::task::spawn_blocking(move || ExtWinningProver::start(&blocks))
                .await
                .context("starting the [[WinPost]] children")??,
        )
    };
    let poster = Arc::new(WinningPoster::new(chain.clone(), locator, prover, miners));
    supervisor.spawn("miner", false, move |ctx| poster.clone().run(ctx));
    Ok(())
}
