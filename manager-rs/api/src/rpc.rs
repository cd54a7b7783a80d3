//! The RPC traits of the Venus API, with the full wire name of every method (manager-spec §2.3
//! and §2.6; the misspelt `Venus.AllocateSanpUpSector` is the real name). Params are
//! positional, as Go sends them.
//!
//! With the feature `server` jsonrpsee generates `SealerApiServer` (and
//! `WorkerWdPoStApiServer`), which the manager implements; with `client` it generates
//! `SealerApiClient`, which the worker and the CLI call.
//!
//! Under each trait a table ([`SEALER_METHODS`], [`WDPOST_METHODS`], [`CLI_METHODS`]) gives every
//! method its number of params and the permission a caller's token must hold to call it.

pub use damocles_auth::{Method, Perm};

/// The HTTP status of a call the server refused without a JSON-RPC answer (401, 403, 413, …):
/// jsonrpsee's HTTP client keeps only the status of a non-2xx answer, not its body.
#[cfg(feature = "client")]
pub fn refused_status(e: &jsonrpsee::core::ClientError) -> Option<u16> {
    use jsonrpsee::http_client::transport::Error as Transport;
    match e {
        jsonrpsee::core::ClientError::Transport(t) => match t.downcast_ref::<Transport>() {
            Some(Transport::Rejected { status_code }) => Some(*status_code),
            _ => None,
        },
        _ => None,
    }
}
use jsonrpsee::core::RpcResult;
use jsonrpsee::proc_macros::rpc;

use crate::json::Cid;
use crate::types::*;

/// The methods sealing workers call.
#[cfg_attr(all(feature = "server", feature = "client"), rpc(server, client))]
#[cfg_attr(all(feature = "server", not(feature = "client")), rpc(server))]
#[cfg_attr(all(feature = "client", not(feature = "server")), rpc(client))]
pub trait SealerApi {
    /// Allocates a new sector number for a miner the thread can seal for.
    #[method(name = "Venus.AllocateSector")]
    async fn allocate_sector(&self, spec: AllocateSectorSpec)
        -> RpcResult<Option<AllocatedSector>>;

    /// Fills a sector with queued deals (`null` or `[]`: a CC sector).
    #[method(name = "Venus.AcquireDeals")]
    async fn acquire_deals(
        &self,
        sid: SectorId,
        spec: AcquireDealsSpec,
    ) -> RpcResult<Option<Vec<SectorPieceV2>>>;

    /// Draws (and stores) the sealing ticket.
    #[method(name = "Venus.AssignTicket")]
    async fn assign_ticket(&self, sid: SectorId) -> RpcResult<Ticket>;

    /// Submits the PreCommit of a sector.
    #[method(name = "Venus.SubmitPreCommit")]
    async fn submit_pre_commit(
        &self,
        sector: AllocatedSector,
        info: PreCommitOnChainInfo,
        hard_reset: bool,
    ) -> RpcResult<SubmitPreCommitResp>;

    /// State of the PreCommit message.
    #[method(name = "Venus.PollPreCommitState")]
    async fn poll_pre_commit_state(&self, sid: SectorId) -> RpcResult<PollPreCommitStateResp>;

    /// Legacy form of [`Self::submit_persisted_ex`] (not an upgrade).
    #[method(name = "Venus.SubmitPersisted")]
    async fn submit_persisted(&self, sid: SectorId, instance: String) -> RpcResult<bool>;

    /// The sector's files are in store `instance`: check them and index them.
    #[method(name = "Venus.SubmitPersistedEx")]
    async fn submit_persisted_ex(
        &self,
        sid: SectorId,
        instance: String,
        is_upgrade: bool,
    ) -> RpcResult<bool>;

    /// The interactive seed, or how long to wait for it.
    #[method(name = "Venus.WaitSeed")]
    async fn wait_seed(&self, sid: SectorId, proof_type: SealProofType) -> RpcResult<WaitSeedResp>;

    /// Submits the PoRep proof of a sector.
    #[method(name = "Venus.SubmitProof")]
    async fn submit_proof(
        &self,
        sid: SectorId,
        info: ProofOnChainInfo,
        hard_reset: bool,
    ) -> RpcResult<SubmitProofResp>;

    /// State of the ProveCommit message.
    #[method(name = "Venus.PollProofState")]
    async fn poll_proof_state(&self, sid: SectorId) -> RpcResult<PollProofStateResp>;

    /// Records a worker's state change; answers what the worker must know of the sector.
    #[method(name = "Venus.ReportState")]
    async fn report_state(&self, sid: SectorId, req: ReportStateReq) -> RpcResult<SectorStateResp>;

    /// The worker finished the sector.
    #[method(name = "Venus.ReportFinalized")]
    async fn report_finalized(&self, sid: SectorId) -> RpcResult<()>;

    /// The worker gave the sector up.
    #[method(name = "Venus.ReportAborted")]
    async fn report_aborted(&self, sid: SectorId, reason: String) -> RpcResult<()>;

    /// Allocates a CC sector to upgrade with deals (the method name is misspelt on the wire).
    #[method(name = "Venus.AllocateSanpUpSector")]
    async fn allocate_snap_up_sector(
        &self,
        spec: AllocateSnapUpSpec,
    ) -> RpcResult<Option<AllocatedSnapUpSector>>;

    /// Submits the update proof of a snapped-up sector.
    #[method(name = "Venus.SubmitSnapUpProof")]
    async fn submit_snap_up_proof(
        &self,
        sid: SectorId,
        info: SnapUpOnChainInfo,
    ) -> RpcResult<SubmitSnapUpProofResp>;

    /// Allocates a sector whose files must be rebuilt.
    #[method(name = "Venus.AllocateRebuildSector")]
    async fn allocate_rebuild_sector(
        &self,
        spec: AllocateSectorSpec,
    ) -> RpcResult<Option<SectorRebuildInfo>>;

    /// A worker says it is alive.
    #[method(name = "Venus.WorkerPing", with_extensions)]
    async fn worker_ping(&self, info: WorkerInfo) -> RpcResult<()>;

    /// Reserves space for a sector's files in one of `candidates` (the worker's stores).
    #[method(name = "Venus.StoreReserveSpace")]
    async fn store_reserve_space(
        &self,
        sid: SectorId,
        size: u64,
        candidates: Vec<String>,
    ) -> RpcResult<Option<StoreBasicInfo>>;

    /// A persist store by instance name.
    #[method(name = "Venus.StoreBasicInfo")]
    async fn store_basic_info(&self, instance: String) -> RpcResult<Option<StoreBasicInfo>>;

    /// Allocates a piece to unseal.
    #[method(name = "Venus.AllocateUnsealSector")]
    async fn allocate_unseal_sector(
        &self,
        spec: AllocateSectorSpec,
    ) -> RpcResult<Option<SectorUnsealInfo>>;

    /// An unseal ended (`err` empty: finished).
    #[method(name = "Venus.AchieveUnsealSector")]
    async fn achieve_unseal_sector(&self, sid: SectorId, piece: Cid, err: String) -> RpcResult<()>;

    /// Where to send an unsealed piece.
    #[method(name = "Venus.AcquireUnsealDest")]
    async fn acquire_unseal_dest(&self, sid: SectorId, piece: Cid) -> RpcResult<Vec<String>>;
}

/// The `SealerApi` methods: worker-facing sealing calls, all `write` (the credentials in a
/// store's `Meta` go out only through `Venus.StoreBasicInfo`).
pub const SEALER_METHODS: &[Method] = &[
    Method::new("Venus.AllocateSector", 1, Perm::Write),
    Method::new("Venus.AcquireDeals", 2, Perm::Write),
    Method::new("Venus.AssignTicket", 1, Perm::Write),
    Method::new("Venus.SubmitPreCommit", 3, Perm::Write),
    Method::new("Venus.PollPreCommitState", 1, Perm::Write),
    Method::new("Venus.SubmitPersisted", 2, Perm::Write),
    Method::new("Venus.SubmitPersistedEx", 3, Perm::Write),
    Method::new("Venus.WaitSeed", 2, Perm::Write),
    Method::new("Venus.SubmitProof", 3, Perm::Write),
    Method::new("Venus.PollProofState", 1, Perm::Write),
    Method::new("Venus.ReportState", 2, Perm::Write),
    Method::new("Venus.ReportFinalized", 1, Perm::Write),
    Method::new("Venus.ReportAborted", 2, Perm::Write),
    Method::new("Venus.AllocateSanpUpSector", 1, Perm::Write),
    Method::new("Venus.SubmitSnapUpProof", 2, Perm::Write),
    Method::new("Venus.AllocateRebuildSector", 1, Perm::Write),
    Method::new("Venus.WorkerPing", 1, Perm::Write),
    Method::new("Venus.StoreReserveSpace", 3, Perm::Write),
    Method::new("Venus.StoreBasicInfo", 1, Perm::Write),
    Method::new("Venus.AllocateUnsealSector", 1, Perm::Write),
    Method::new("Venus.AchieveUnsealSector", 3, Perm::Write),
    Method::new("Venus.AcquireUnsealDest", 2, Perm::Write),
];

/// The methods wdpost threads call (served when worker-provers are enabled).
#[cfg_attr(all(feature = "server", feature = "client"), rpc(server, client))]
#[cfg_attr(all(feature = "server", not(feature = "client")), rpc(server))]
#[cfg_attr(all(feature = "client", not(feature = "server")), rpc(client))]
pub trait WorkerWdPoStApi {
    /// Takes up to `num` jobs.
    #[method(name = "Venus.WdPoStAllocateJobs")]
    async fn wdpost_allocate_jobs(
        &self,
        spec: AllocateWdPoStJobSpec,
        num: u32,
        worker_name: String,
    ) -> RpcResult<Vec<WdPoStAllocatedJob>>;

    /// Keeps jobs alive.
    #[method(name = "Venus.WdPoStHeartbeatJobs")]
    async fn wdpost_heartbeat_jobs(
        &self,
        job_ids: Vec<String>,
        worker_name: String,
    ) -> RpcResult<()>;

    /// Ends a job with its output or an error.
    #[method(name = "Venus.WdPoStFinishJob")]
    async fn wdpost_finish_job(
        &self,
        job_id: String,
        output: Option<WindowPoStOutput>,
        error_reason: String,
    ) -> RpcResult<()>;

    /// Puts a job back to `ready2run` with no attempt counted (CLI).
    #[method(name = "Venus.WdPoStResetJob")]
    async fn wdpost_reset_job(&self, job_id: String) -> RpcResult<()>;

    /// Deletes a job; a poster still waiting for it creates it again (CLI).
    #[method(name = "Venus.WdPoStRemoveJob")]
    async fn wdpost_remove_job(&self, job_id: String) -> RpcResult<()>;

    /// Every job, newest first, inputs blanked (CLI).
    #[method(name = "Venus.WdPoStAllJobs")]
    async fn wdpost_all_jobs(&self) -> RpcResult<WdPoStJobList>;
}

/// The `WorkerWdPoStApi` methods: a wdpost thread's calls need `write`, the CLI's reset and
/// removal `admin`.
pub const WDPOST_METHODS: &[Method] = &[
    Method::new("Venus.WdPoStAllocateJobs", 3, Perm::Write),
    Method::new("Venus.WdPoStHeartbeatJobs", 2, Perm::Write),
    Method::new("Venus.WdPoStFinishJob", 3, Perm::Write),
    Method::new("Venus.WdPoStResetJob", 1, Perm::Admin),
    Method::new("Venus.WdPoStRemoveJob", 1, Perm::Admin),
    Method::new("Venus.WdPoStAllJobs", 0, Perm::Read),
];

/// The administration methods the manager's CLI calls (manager-spec §2.5, the subset served).
#[cfg_attr(all(feature = "server", feature = "client"), rpc(server, client))]
#[cfg_attr(all(feature = "server", not(feature = "client")), rpc(server))]
#[cfg_attr(all(feature = "client", not(feature = "server")), rpc(client))]
pub trait SealerCliApi {
    /// Sectors in the online or offline store, filtered by job.
    #[method(name = "Venus.ListSectors")]
    async fn list_sectors(
        &self,
        state: SectorWorkerState,
        job: SectorJob,
    ) -> RpcResult<Vec<SectorState>>;

    /// One sector from the online or offline store.
    #[method(name = "Venus.FindSector")]
    async fn find_sector(&self, state: SectorWorkerState, sid: SectorId) -> RpcResult<SectorState>;

    /// One sector, online first, then offline.
    #[method(name = "Venus.FindSectorInAllStates")]
    async fn find_sector_in_all_states(&self, sid: SectorId) -> RpcResult<SectorState>;

    /// Sectors holding a deal.
    #[method(name = "Venus.FindSectorsWithDeal")]
    async fn find_sectors_with_deal(
        &self,
        state: SectorWorkerState,
        deal_id: DealId,
    ) -> RpcResult<Vec<SectorState>>;

    /// The sector holding a piece.
    #[method(name = "Venus.FindSectorWithPiece")]
    async fn find_sector_with_piece(
        &self,
        state: SectorWorkerState,
        piece: Cid,
    ) -> RpcResult<Option<SectorState>>;

    /// Stores a sector state (`false` if it exists and `override_existing` is not set).
    #[method(name = "Venus.ImportSector")]
    async fn import_sector(
        &self,
        state: SectorWorkerState,
        sector: SectorState,
        override_existing: bool,
    ) -> RpcResult<bool>;

    /// Moves an offline sector back online.
    #[method(name = "Venus.RestoreSector")]
    async fn restore_sector(&self, sid: SectorId, forced: bool) -> RpcResult<()>;

    /// Moves a sector that is on chain offline and releases its reservation.
    #[method(name = "Venus.FinalizeSector")]
    async fn finalize_sector(&self, sid: SectorId) -> RpcResult<()>;

    /// What one worker last said.
    #[method(name = "Venus.WorkerGetPingInfo")]
    async fn worker_get_ping_info(&self, name: String) -> RpcResult<Option<WorkerPingInfo>>;

    /// What every worker last said.
    #[method(name = "Venus.WorkerPingInfoList")]
    async fn worker_ping_info_list(&self) -> RpcResult<Vec<WorkerPingInfo>>;

    /// Forgets a worker.
    #[method(name = "Venus.WorkerPingInfoRemove")]
    async fn worker_ping_info_remove(&self, name: String) -> RpcResult<()>;

    /// Where a sector's files are indexed.
    #[method(name = "Venus.SectorIndexerFind")]
    async fn sector_indexer_find(
        &self,
        index: SectorIndexType,
        sid: SectorId,
    ) -> RpcResult<SectorIndexerFindResp>;

    /// Releases a sector's store reservation.
    #[method(name = "Venus.StoreReleaseReserved")]
    async fn store_release_reserved(&self, sid: SectorId) -> RpcResult<bool>;

    /// Every persist store with capacity and reservations.
    #[method(name = "Venus.StoreList")]
    async fn store_list(&self) -> RpcResult<Vec<StoreDetailedInfo>>;

    /// The manager's version.
    #[method(name = "Venus.Version")]
    async fn version(&self) -> RpcResult<String>;

    /// Sealing randomness at an epoch (`[]` tipset key: the head).
    #[method(name = "Venus.GetTicket")]
    async fn get_ticket(
        &self,
        tsk: Vec<Cid>,
        epoch: ChainEpoch,
        miner: ActorId,
    ) -> RpcResult<Ticket>;

    /// Interactive seed at an epoch.
    #[method(name = "Venus.GetSeed")]
    async fn get_seed(&self, tsk: Vec<Cid>, epoch: ChainEpoch, miner: ActorId) -> RpcResult<Seed>;

    /// WindowPoSt challenge randomness (the method name is misspelt on the wire).
    #[method(name = "Venus.GetWindowPoStChanlleengeRand")]
    async fn get_window_post_challenge_rand(
        &self,
        tsk: Vec<Cid>,
        epoch: ChainEpoch,
        miner: ActorId,
    ) -> RpcResult<WindowPoStRandomness>;

    /// WindowPoSt commit randomness.
    #[method(name = "Venus.GetWindowPoStCommitRand")]
    async fn get_window_post_commit_rand(
        &self,
        tsk: Vec<Cid>,
        epoch: ChainEpoch,
    ) -> RpcResult<WindowPoStRandomness>;

    /// A miner as the manager sees it.
    #[method(name = "Venus.GetInfo")]
    async fn get_info(&self, miner: ActorId) -> RpcResult<MinerInfo>;

    /// A miner's `[[Miners]]` section as JSON.
    #[method(name = "Venus.GetMinerConfig")]
    async fn get_miner_config(&self, miner: ActorId) -> RpcResult<serde_json::Value>;
}

/// The `SealerCliApi` methods: views need `read`; state surgery (import, restore, finalize,
/// releasing a reservation, forgetting a worker) needs `admin`.
pub const CLI_METHODS: &[Method] = &[
    Method::new("Venus.ListSectors", 2, Perm::Read),
    Method::new("Venus.FindSector", 2, Perm::Read),
    Method::new("Venus.FindSectorInAllStates", 1, Perm::Read),
    Method::new("Venus.FindSectorsWithDeal", 2, Perm::Read),
    Method::new("Venus.FindSectorWithPiece", 2, Perm::Read),
    Method::new("Venus.ImportSector", 3, Perm::Admin),
    Method::new("Venus.RestoreSector", 2, Perm::Admin),
    Method::new("Venus.FinalizeSector", 1, Perm::Admin),
    Method::new("Venus.WorkerGetPingInfo", 1, Perm::Read),
    Method::new("Venus.WorkerPingInfoList", 0, Perm::Read),
    Method::new("Venus.WorkerPingInfoRemove", 1, Perm::Admin),
    Method::new("Venus.SectorIndexerFind", 2, Perm::Read),
    Method::new("Venus.StoreReleaseReserved", 1, Perm::Admin),
    Method::new("Venus.StoreList", 0, Perm::Read),
    Method::new("Venus.Version", 0, Perm::Read),
    Method::new("Venus.GetTicket", 3, Perm::Read),
    Method::new("Venus.GetSeed", 3, Perm::Read),
    Method::new("Venus.GetWindowPoStChanlleengeRand", 3, Perm::Read),
    Method::new("Venus.GetWindowPoStCommitRand", 2, Perm::Read),
    Method::new("Venus.GetInfo", 1, Perm::Read),
    Method::new("Venus.GetMinerConfig", 1, Perm::Read),
];
