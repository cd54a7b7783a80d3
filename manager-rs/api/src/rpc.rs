//! The RPC traits of the Venus API, with the full wire name of every method (manager-spec §2.3
//! and §2.6; the misspelt `Venus.AllocateSanpUpSector` is the real name). Params are
//! positional, as Go sends them.
//!
//! With the feature `server` jsonrpsee generates `SealerApiServer` (and
//! `WorkerWdPoStApiServer`), which the manager implements; with `client` it generates
//! `SealerApiClient`, which the worker and the CLI call.

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
    #[method(name = "Venus.WorkerPing")]
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
}
