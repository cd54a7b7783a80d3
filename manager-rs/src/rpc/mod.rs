//! The JSON-RPC server: thin handlers over the [`Services`], served at `/rpc/v0` over HTTP and
//! websocket, next to `/healthcheck`, `/metrics` and `/piecestore/`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use damocles_auth::rpc::{Guard, MethodTable, PeerAddr};
use damocles_auth::{Caller, Perm};
use damocles_manager_api::json::Cid;
use damocles_manager_api::rpc::{
    Method, SealerApiServer, SealerCliApiServer, WorkerWdPoStApiServer, CLI_METHODS,
    SEALER_METHODS, WDPOST_METHODS,
};
use damocles_manager_api::types::*;
use jsonrpsee::core::{async_trait, RpcResult};
use jsonrpsee::proc_macros::rpc;
use jsonrpsee::server::{RpcModule, Server, ServerHandle};

use crate::attach::{AttachOptions, AttachReport};
pub use crate::chain::views::{ChainHeadView, ChainMinerView, ChainSectorView};
use crate::chain::Partition;
use crate::deals::{DealRecord, ImportOptions};
use crate::error::{off_runtime, ApiError};
use crate::post::jobs::JobQueue;
use crate::services::Services;
use crate::supervisor::TaskStatus;
use crate::VERSION;

pub mod conn;
pub mod http;

/// Our additions to the API (namespace `Damocles`), for the manager's own CLI.
#[rpc(server, client)]
pub trait DamoclesApi {
    /// The chain's head and constants.
    #[method(name = "Damocles.ChainHead")]
    async fn chain_head(&self) -> RpcResult<ChainHeadView>;

    /// A miner on chain.
    #[method(name = "Damocles.ChainMiner")]
    async fn chain_miner(&self, miner: ActorId) -> RpcResult<ChainMinerView>;

    /// A miner's sectors on chain.
    #[method(name = "Damocles.ChainSectors")]
    async fn chain_sectors(&self, miner: ActorId) -> RpcResult<ChainSectorView>;

    /// A miner's deadlines with their partitions.
    #[method(name = "Damocles.ChainDeadlines")]
    async fn chain_deadlines(&self, miner: ActorId) -> RpcResult<Vec<Vec<Partition>>>;

    /// Imports a file (on the manager's machine) as a deal for a miner.
    #[method(name = "Damocles.DealsImport")]
    async fn deals_import(
        &self,
        miner: ActorId,
        path: String,
        start_in: Option<i64>,
    ) -> RpcResult<DealRecord>;

    /// Every deal the manager holds.
    #[method(name = "Damocles.DealsList")]
    async fn deals_list(&self) -> RpcResult<Vec<DealRecord>>;

    /// Indexes the sectors of a directory (on the manager's machine) that already holds
    /// sealed sectors, and answers the config block for it.
    #[method(name = "Damocles.StorageAttach")]
    async fn storage_attach(&self, path: String, opts: AttachOptions) -> RpcResult<AttachReport>;

    /// The daemon's supervised background tasks with their status.
    #[method(name = "Damocles.Tasks")]
    async fn tasks(&self) -> RpcResult<Vec<TaskStatus>>;

    /// What the caller's token grants (a worker checks its token with it at start-up).
    #[method(name = "Damocles.AuthVerify", with_extensions)]
    async fn auth_verify(&self) -> RpcResult<AuthInfo>;
}

/// The `DamoclesApi` methods: the chain views, the deal list and the task list need `read`;
/// importing a file of the manager's machine as a deal and attaching a directory need `admin`.
pub const DAMOCLES_METHODS: &[Method] = &[
    Method::new("Damocles.ChainHead", 0, Perm::Read),
    Method::new("Damocles.ChainMiner", 1, Perm::Read),
    Method::new("Damocles.ChainSectors", 1, Perm::Read),
    Method::new("Damocles.ChainDeadlines", 1, Perm::Read),
    Method::new("Damocles.DealsImport", 3, Perm::Admin),
    Method::new("Damocles.DealsList", 0, Perm::Read),
    Method::new("Damocles.StorageAttach", 2, Perm::Admin),
    Method::new("Damocles.Tasks", 0, Perm::Read),
    Method::new("Damocles.AuthVerify", 0, Perm::Read),
];

/// What `Damocles.AuthVerify` answers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuthInfo {
    /// Every permission the token grants, Lotus' `Allow` list.
    pub allow: Vec<Perm>,
    /// The name the token carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The handlers.
#[derive(Debug, Clone)]
pub struct RpcImpl {
    services: Arc<Services>,
}

fn err(e: impl Into<ApiError>) -> jsonrpsee::types::ErrorObjectOwned {
    e.into().into()
}

fn internal(e: impl Into<anyhow::Error>) -> jsonrpsee::types::ErrorObjectOwned {
    ApiError::Internal(e.into()).into()
}

macro_rules! traced {
    ($name:literal, $body:expr) => {{
        let started = std::time::Instant::now();
        let out = $body;
        metrics::histogram!("damocles_manager_api_request_duration_ms", "method" => $name)
            .record(started.elapsed().as_secs_f64() * 1e3);
        if let Err(e) = &out {
            tracing::debug!(method = $name, error = %e.message(), "request failed");
        }
        out
    }};
}

#[async_trait]
impl SealerApiServer for RpcImpl {
    async fn allocate_sector(
        &self,
        spec: AllocateSectorSpec,
    ) -> RpcResult<Option<AllocatedSector>> {
        traced!(
            "Venus.AllocateSector",
            self.services
                .lifecycle
                .allocate_sector(spec)
                .await
                .map_err(err)
        )
    }

    async fn acquire_deals(
        &self,
        sid: SectorId,
        spec: AcquireDealsSpec,
    ) -> RpcResult<Option<Vec<SectorPieceV2>>> {
        traced!(
            "Venus.AcquireDeals",
            self.services
                .lifecycle
                .acquire_deals(sid, spec)
                .await
                .map_err(err)
        )
    }

    async fn assign_ticket(&self, sid: SectorId) -> RpcResult<Ticket> {
        traced!(
            "Venus.AssignTicket",
            self.services
                .lifecycle
                .assign_ticket(sid)
                .await
                .map_err(err)
        )
    }

    async fn submit_pre_commit(
        &self,
        sector: AllocatedSector,
        info: PreCommitOnChainInfo,
        hard_reset: bool,
    ) -> RpcResult<SubmitResp> {
        traced!(
            "Venus.SubmitPreCommit",
            self.services
                .lifecycle
                .submit_pre_commit(sector, info, hard_reset)
                .await
                .map_err(err)
        )
    }

    async fn poll_pre_commit_state(&self, sid: SectorId) -> RpcResult<PollStateResp> {
        traced!(
            "Venus.PollPreCommitState",
            self.services
                .lifecycle
                .poll_pre_commit_state(sid)
                .await
                .map_err(err)
        )
    }

    async fn submit_persisted(&self, sid: SectorId, instance: String) -> RpcResult<bool> {
        let s = self.services.lifecycle.clone();
        traced!(
            "Venus.SubmitPersisted",
            tokio::task::spawn_blocking(move || s.submit_persisted_ex(sid, &instance, false))
                .await
                .map_err(internal)?
                .map_err(err)
        )
    }

    async fn submit_persisted_ex(
        &self,
        sid: SectorId,
        instance: String,
        is_upgrade: bool,
    ) -> RpcResult<bool> {
        let s = self.services.lifecycle.clone();
        traced!(
            "Venus.SubmitPersistedEx",
            tokio::task::spawn_blocking(move || s.submit_persisted_ex(sid, &instance, is_upgrade))
                .await
                .map_err(internal)?
                .map_err(err)
        )
    }

    async fn wait_seed(&self, sid: SectorId, proof_type: SealProofType) -> RpcResult<WaitSeedResp> {
        traced!(
            "Venus.WaitSeed",
            self.services
                .lifecycle
                .wait_seed(sid, proof_type)
                .await
                .map_err(err)
        )
    }

    async fn submit_proof(
        &self,
        sid: SectorId,
        info: ProofOnChainInfo,
        hard_reset: bool,
    ) -> RpcResult<SubmitResp> {
        traced!(
            "Venus.SubmitProof",
            self.services
                .lifecycle
                .submit_proof(sid, info, hard_reset)
                .await
                .map_err(err)
        )
    }

    async fn poll_proof_state(&self, sid: SectorId) -> RpcResult<PollStateResp> {
        traced!(
            "Venus.PollProofState",
            self.services
                .lifecycle
                .poll_proof_state(sid)
                .await
                .map_err(err)
        )
    }

    async fn report_state(&self, sid: SectorId, req: ReportStateReq) -> RpcResult<SectorStateResp> {
        traced!("Venus.ReportState", {
            let lifecycle = self.services.lifecycle.clone();
            off_runtime(move || lifecycle.report_state(sid, req))
                .await
                .map_err(err)
        })
    }

    async fn report_finalized(&self, sid: SectorId) -> RpcResult<()> {
        traced!(
            "Venus.ReportFinalized",
            self.services
                .lifecycle
                .report_finalized(sid)
                .await
                .map_err(err)
        )
    }

    async fn report_aborted(&self, sid: SectorId, reason: String) -> RpcResult<()> {
        traced!("Venus.ReportAborted", {
            let lifecycle = self.services.lifecycle.clone();
            off_runtime(move || lifecycle.report_aborted(sid, &reason))
                .await
                .map_err(err)
        })
    }

    async fn allocate_snap_up_sector(
        &self,
        _spec: AllocateSnapUpSpec,
    ) -> RpcResult<Option<AllocatedSnapUpSector>> {
        // Snap-up allocation comes with its own issue: no candidates yet.
        Ok(None)
    }

    async fn submit_snap_up_proof(
        &self,
        _sid: SectorId,
        _info: SnapUpOnChainInfo,
    ) -> RpcResult<SubmitSnapUpProofResp> {
        Ok(SubmitResp {
            res: SubmitResult::Rejected,
            desc: Some("snap-up is not served by this manager yet".into()),
        })
    }

    async fn allocate_rebuild_sector(
        &self,
        _spec: AllocateSectorSpec,
    ) -> RpcResult<Option<SectorRebuildInfo>> {
        Ok(None)
    }

    async fn worker_ping(&self, ext: &jsonrpsee::Extensions, info: WorkerInfo) -> RpcResult<()> {
        let caller = ext.get::<Caller>().cloned();
        traced!("Venus.WorkerPing", {
            let workers = self.services.workers.clone();
            off_runtime(move || {
                let by = crate::workers::Pinger {
                    token_name: caller.as_ref().and_then(Caller::token_name),
                    admin: caller.as_ref().is_some_and(|c| c.level >= Perm::Admin),
                };
                workers.ping(info, by)
            })
            .await
            .map_err(err)
        })
    }

    async fn store_reserve_space(
        &self,
        sid: SectorId,
        size: u64,
        candidates: Vec<String>,
    ) -> RpcResult<Option<StoreBasicInfo>> {
        let s = self.services.lifecycle.clone();
        traced!(
            "Venus.StoreReserveSpace",
            tokio::task::spawn_blocking(move || s.store_reserve_space(sid, size, &candidates))
                .await
                .map_err(internal)?
                .map_err(err)
        )
    }

    async fn store_basic_info(&self, instance: String) -> RpcResult<Option<StoreBasicInfo>> {
        Ok(self.services.lifecycle.store_basic_info(&instance))
    }

    async fn allocate_unseal_sector(
        &self,
        _spec: AllocateSectorSpec,
    ) -> RpcResult<Option<SectorUnsealInfo>> {
        Ok(None)
    }

    async fn achieve_unseal_sector(
        &self,
        sid: SectorId,
        piece: Cid,
        _err: String,
    ) -> RpcResult<()> {
        Err(err(ApiError::bad(format!(
            "no unseal task for {sid} piece {piece}: unsealing is not served yet"
        ))))
    }

    async fn acquire_unseal_dest(&self, sid: SectorId, piece: Cid) -> RpcResult<Vec<String>> {
        Err(err(ApiError::bad(format!(
            "no unseal task for {sid} piece {piece}: unsealing is not served yet"
        ))))
    }
}

#[async_trait]
impl SealerCliApiServer for RpcImpl {
    async fn list_sectors(
        &self,
        state: SectorWorkerState,
        job: SectorJob,
    ) -> RpcResult<Vec<SectorState>> {
        self.services
            .lifecycle
            .list_sectors(state, job)
            .map_err(err)
    }

    async fn find_sector(&self, state: SectorWorkerState, sid: SectorId) -> RpcResult<SectorState> {
        self.services.lifecycle.find_sector(state, sid).map_err(err)
    }

    async fn find_sector_in_all_states(&self, sid: SectorId) -> RpcResult<SectorState> {
        self.services
            .lifecycle
            .find_sector_in_all_states(sid)
            .map_err(err)
    }

    async fn find_sectors_with_deal(
        &self,
        state: SectorWorkerState,
        deal_id: DealId,
    ) -> RpcResult<Vec<SectorState>> {
        self.services
            .lifecycle
            .find_sectors_with_deal(state, deal_id)
            .map_err(err)
    }

    async fn find_sector_with_piece(
        &self,
        state: SectorWorkerState,
        piece: Cid,
    ) -> RpcResult<Option<SectorState>> {
        self.services
            .lifecycle
            .find_sector_with_piece(state, &piece)
            .map_err(err)
    }

    async fn import_sector(
        &self,
        state: SectorWorkerState,
        sector: SectorState,
        override_existing: bool,
    ) -> RpcResult<bool> {
        let lifecycle = self.services.lifecycle.clone();
        off_runtime(move || lifecycle.import_sector(state, &sector, override_existing))
            .await
            .map_err(err)
    }

    async fn restore_sector(&self, sid: SectorId, forced: bool) -> RpcResult<()> {
        let lifecycle = self.services.lifecycle.clone();
        off_runtime(move || lifecycle.restore_sector(sid, forced))
            .await
            .map_err(err)
    }

    async fn finalize_sector(&self, sid: SectorId) -> RpcResult<()> {
        self.services
            .lifecycle
            .finalize_sector(sid)
            .await
            .map_err(err)
    }

    async fn worker_get_ping_info(&self, name: String) -> RpcResult<Option<WorkerPingInfo>> {
        self.services.workers.get(&name).map_err(err)
    }

    async fn worker_ping_info_list(&self) -> RpcResult<Vec<WorkerPingInfo>> {
        self.services.workers.list().map_err(err)
    }

    async fn worker_ping_info_remove(&self, name: String) -> RpcResult<()> {
        self.services.workers.remove(&name).map_err(err)
    }

    async fn sector_indexer_find(
        &self,
        index: SectorIndexType,
        sid: SectorId,
    ) -> RpcResult<SectorIndexerFindResp> {
        let found = self.services.index.find(index, sid).map_err(internal)?;
        Ok(SectorIndexerFindResp {
            found: found.is_some(),
            instance: found.unwrap_or_default(),
        })
    }

    async fn store_release_reserved(&self, sid: SectorId) -> RpcResult<bool> {
        let stores = self.services.stores.clone();
        off_runtime(move || Ok(stores.release_reserved(sid)?))
            .await
            .map_err(err)
    }

    async fn store_list(&self) -> RpcResult<Vec<StoreDetailedInfo>> {
        let stores = self.services.stores.clone();
        let mut list = tokio::task::spawn_blocking(move || stores.list())
            .await
            .map_err(internal)?
            .map_err(internal)?;
        // A `read` view: the credentials a worker's transfer needs go out only through
        // `StoreBasicInfo` and `StoreReserveSpace` (`write`).
        for store in &mut list {
            if let Some(meta) = &mut store.basic.meta {
                *meta = vc_processors::layout::redact_meta(meta);
            }
        }
        Ok(list)
    }

    async fn version(&self) -> RpcResult<String> {
        Ok(VERSION.to_string())
    }

    async fn get_ticket(
        &self,
        _tsk: Vec<Cid>,
        epoch: ChainEpoch,
        miner: ActorId,
    ) -> RpcResult<Ticket> {
        self.services
            .chain
            .ticket(miner, epoch)
            .await
            .map_err(internal)
    }

    async fn get_seed(&self, _tsk: Vec<Cid>, epoch: ChainEpoch, miner: ActorId) -> RpcResult<Seed> {
        self.services
            .chain
            .seed(miner, epoch)
            .await
            .map_err(internal)
    }

    async fn get_window_post_challenge_rand(
        &self,
        _tsk: Vec<Cid>,
        epoch: ChainEpoch,
        miner: ActorId,
    ) -> RpcResult<WindowPoStRandomness> {
        self.services
            .chain
            .window_post_challenge(miner, epoch)
            .await
            .map_err(internal)
    }

    async fn get_window_post_commit_rand(
        &self,
        _tsk: Vec<Cid>,
        epoch: ChainEpoch,
    ) -> RpcResult<WindowPoStRandomness> {
        self.services
            .chain
            .window_post_commit(epoch)
            .await
            .map_err(internal)
    }

    async fn get_info(&self, miner: ActorId) -> RpcResult<MinerInfo> {
        self.services.lifecycle.miner_info(miner).await.map_err(err)
    }

    async fn get_miner_config(&self, miner: ActorId) -> RpcResult<serde_json::Value> {
        let m = self
            .services
            .cfg
            .miner(miner)
            .ok_or_else(|| err(ApiError::bad(format!("miner {miner} is not in the config"))))?;
        serde_json::to_value(m).map_err(internal)
    }
}

#[async_trait]
impl DamoclesApiServer for RpcImpl {
    async fn chain_head(&self) -> RpcResult<ChainHeadView> {
        self.services.chain.head().await.map_err(internal)
    }

    async fn chain_miner(&self, miner: ActorId) -> RpcResult<ChainMinerView> {
        self.services.chain.miner(miner).await.map_err(internal)
    }

    async fn chain_sectors(&self, miner: ActorId) -> RpcResult<ChainSectorView> {
        self.services.chain.sectors(miner).await.map_err(internal)
    }

    async fn chain_deadlines(&self, miner: ActorId) -> RpcResult<Vec<Vec<Partition>>> {
        self.services.chain.deadlines(miner).await.map_err(internal)
    }

    async fn deals_import(
        &self,
        miner: ActorId,
        path: String,
        start_in: Option<i64>,
    ) -> RpcResult<DealRecord> {
        let mut opts = ImportOptions::default();
        if let Some(s) = start_in {
            opts.start_in = s;
        }
        self.services
            .deals
            .import(miner, &PathBuf::from(path), opts)
            .await
            .map_err(|e| err(ApiError::bad(format!("{e:#}"))))
    }

    async fn deals_list(&self) -> RpcResult<Vec<DealRecord>> {
        self.services
            .deals
            .list_as_on_chain()
            .await
            .map_err(internal)
    }

    async fn storage_attach(&self, path: String, opts: AttachOptions) -> RpcResult<AttachReport> {
        let index = self.services.index.clone();
        traced!(
            "Damocles.StorageAttach",
            tokio::task::spawn_blocking(move || {
                crate::attach::attach(std::path::Path::new(&path), &opts, &index)
            })
            .await
            .unwrap_or_else(|e| Err(ApiError::Internal(anyhow::anyhow!(
                "attach task failed: {e}"
            ))))
            .map_err(err)
        )
    }

    async fn tasks(&self) -> RpcResult<Vec<TaskStatus>> {
        Ok(self.services.supervisor.statuses())
    }

    async fn auth_verify(&self, ext: &jsonrpsee::Extensions) -> RpcResult<AuthInfo> {
        // The guard let the call in, so a caller is there; answer nothing granted otherwise.
        Ok(match ext.get::<Caller>() {
            Some(c) => AuthInfo {
                allow: c.level.allow_list(),
                name: c.name.clone(),
            },
            None => AuthInfo {
                allow: Vec::new(),
                name: None,
            },
        })
    }
}

/// The worker-prover's methods (served with `--worker-prover` only, so that a wdpost thread
/// asking another manager gets "method not found").
#[derive(Debug, Clone)]
pub struct WdPoStRpc {
    jobs: Arc<JobQueue>,
}

impl WdPoStRpc {
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&JobQueue) -> Result<T, ApiError> + Send + 'static,
    ) -> RpcResult<T> {
        let jobs = self.jobs.clone();
        tokio::task::spawn_blocking(move || f(&jobs))
            .await
            .map_err(|e| internal(anyhow::anyhow!("job queue task failed: {e}")))?
            .map_err(err)
    }
}

#[async_trait]
impl WorkerWdPoStApiServer for WdPoStRpc {
    async fn wdpost_allocate_jobs(
        &self,
        spec: AllocateWdPoStJobSpec,
        num: u32,
        worker_name: String,
    ) -> RpcResult<Vec<WdPoStAllocatedJob>> {
        traced!(
            "Venus.WdPoStAllocateJobs",
            self.blocking(move |q| Ok(q.allocate(&spec, num, &worker_name)?))
                .await
        )
    }

    async fn wdpost_heartbeat_jobs(
        &self,
        job_ids: Vec<String>,
        worker_name: String,
    ) -> RpcResult<()> {
        traced!(
            "Venus.WdPoStHeartbeatJobs",
            self.blocking(move |q| q.heartbeat(&job_ids, &worker_name))
                .await
        )
    }

    async fn wdpost_finish_job(
        &self,
        job_id: String,
        output: Option<WindowPoStOutput>,
        error_reason: String,
    ) -> RpcResult<()> {
        traced!(
            "Venus.WdPoStFinishJob",
            self.blocking(move |q| q.finish(&job_id, output, &error_reason))
                .await
        )
    }

    async fn wdpost_reset_job(&self, job_id: String) -> RpcResult<()> {
        traced!(
            "Venus.WdPoStResetJob",
            self.blocking(move |q| q.reset(&job_id)).await
        )
    }

    async fn wdpost_remove_job(&self, job_id: String) -> RpcResult<()> {
        traced!(
            "Venus.WdPoStRemoveJob",
            self.blocking(move |q| q.remove(&job_id)).await
        )
    }

    async fn wdpost_all_jobs(&self) -> RpcResult<WdPoStJobList> {
        traced!(
            "Venus.WdPoStAllJobs",
            self.blocking(|q| Ok(q.list()?)).await
        )
    }
}

/// Every method the server serves, in one module; the `WdPoSt*` methods only when `jobs` is
/// given (`--worker-prover`).
pub fn module(services: Arc<Services>, jobs: Option<Arc<JobQueue>>) -> Result<RpcModule<()>> {
    let imp = RpcImpl { services };
    let mut module = RpcModule::new(());
    module.merge(SealerApiServer::into_rpc(imp.clone()))?;
    module.merge(SealerCliApiServer::into_rpc(imp.clone()))?;
    module.merge(DamoclesApiServer::into_rpc(imp))?;
    if let Some(jobs) = jobs {
        module.merge(WorkerWdPoStApiServer::into_rpc(WdPoStRpc { jobs }))?;
    }
    Ok(module)
}

/// The largest request body: the biggest real request (an `ImportSector` of a sector with many
/// pieces, a `SubmitProof` of a 64 GiB sector) is well under 1 MiB.
pub const MAX_REQUEST_BODY: u32 = 8 << 20;
/// Calls in one batch (no client of ours sends batches).
pub const MAX_BATCH: u32 = 64;

/// The command that makes a token of the manager, named in refusals.
pub const CREATE_TOKEN_COMMAND: &str = "damocles-manager util auth create-token";

/// The rows of the `served` methods: the Venus tables and [`DAMOCLES_METHODS`]. A served method
/// without a row is an error (no method is served without a permission).
pub fn method_table<'a>(served: impl IntoIterator<Item = &'a str>) -> Result<MethodTable> {
    MethodTable::for_served(
        &[
            SEALER_METHODS,
            WDPOST_METHODS,
            CLI_METHODS,
            DAMOCLES_METHODS,
        ],
        served,
        CREATE_TOKEN_COMMAND,
    )
    .map_err(anyhow::Error::msg)
}

/// Starts the server on `listen`; returns its handle and bound address. The accept loop is
/// ours so that each request carries its peer's address ([`PeerAddr`], for
/// `[Common.Auth] UnauthenticatedWriteFrom`).
pub async fn serve(
    listen: SocketAddr,
    module: RpcModule<()>,
    routes: http::Routes,
) -> Result<(ServerHandle, SocketAddr)> {
    let table = Arc::new(method_table(module.method_names())?);
    let config = jsonrpsee::server::ServerConfig::builder()
        .max_request_body_size(MAX_REQUEST_BODY)
        .max_response_body_size(256 << 20)
        .max_connections(conn::MAX_CONNECTIONS as u32)
        .set_batch_request_config(jsonrpsee::server::BatchRequestConfig::Limit(MAX_BATCH))
        .build();
    let builder = Server::builder()
        .set_config(config)
        .set_http_middleware(tower::ServiceBuilder::new().layer(routes))
        .set_rpc_middleware(
            jsonrpsee::server::middleware::rpc::RpcServiceBuilder::new()
                .layer_fn(move |inner| Guard::new(inner, table.clone())),
        )
        .to_service_builder();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr().context("the server's address")?;
    let methods: jsonrpsee::server::Methods = module.into();
    let (stop, handle) = jsonrpsee::server::stop_channel();
    let limits = conn::ConnLimits::new(conn::MAX_CONNECTIONS, conn::MAX_CONNECTIONS_PER_PEER);
    tokio::spawn(async move {
        loop {
            let (sock, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of descriptors, most likely: wait instead of spinning.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = stop.clone().shutdown() => break,
            };
            let Some(permit) = limits.admit(peer.ip()) else {
                tracing::debug!(%peer, "connection refused: too many connections");
                drop(sock);
                continue;
            };
            let activity = Arc::new(conn::Activity::default());
            let svc = {
                let (builder, methods, stop) = (builder.clone(), methods.clone(), stop.clone());
                let activity = activity.clone();
                tower::service_fn(move |mut req: ::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(PeerAddr(peer));
                    let answering = activity.request();
                    let mut svc = builder.clone().build(methods.clone(), stop.clone());
                    async move {
                        let out = tower::Service::call(&mut svc, req).await;
                        drop(answering);
                        out
                    }
                })
            };
            // A connection's end, error or not, concerns only its peer.
            let task = tokio::spawn(jsonrpsee::server::serve_with_graceful_shutdown(
                conn::Watched::new(sock, activity.clone()),
                svc,
                stop.clone().shutdown(),
            ));
            tokio::spawn(conn::close_when_idle(
                task,
                activity,
                conn::IDLE_TIMEOUT,
                permit,
            ));
        }
    });
    Ok((handle, addr))
}
