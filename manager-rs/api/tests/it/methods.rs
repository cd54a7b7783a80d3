//! The server registers exactly the wire names of manager-spec §2.3 and §2.6.

use damocles_manager_api::json::Cid;
use damocles_manager_api::rpc::{
    Method, Perm, SealerApiServer, WorkerWdPoStApiServer, CLI_METHODS, SEALER_METHODS,
    WDPOST_METHODS,
};
use damocles_manager_api::types::*;
use jsonrpsee::core::{async_trait, RpcResult};
use jsonrpsee::types::ErrorObjectOwned;

/// Registers the methods only; every call is refused (this test never calls them).
struct NamesOnly;

fn refused<T>() -> RpcResult<T> {
    Err(ErrorObjectOwned::owned(
        1,
        "not served by this test",
        None::<()>,
    ))
}

#[async_trait]
impl SealerApiServer for NamesOnly {
    async fn allocate_sector(&self, _: AllocateSectorSpec) -> RpcResult<Option<AllocatedSector>> {
        refused()
    }
    async fn acquire_deals(
        &self,
        _: SectorId,
        _: AcquireDealsSpec,
    ) -> RpcResult<Option<Vec<SectorPieceV2>>> {
        refused()
    }
    async fn assign_ticket(&self, _: SectorId) -> RpcResult<Ticket> {
        refused()
    }
    async fn submit_pre_commit(
        &self,
        _: AllocatedSector,
        _: PreCommitOnChainInfo,
        _: bool,
    ) -> RpcResult<SubmitResp> {
        refused()
    }
    async fn poll_pre_commit_state(&self, _: SectorId) -> RpcResult<PollStateResp> {
        refused()
    }
    async fn submit_persisted(&self, _: SectorId, _: String) -> RpcResult<bool> {
        refused()
    }
    async fn submit_persisted_ex(&self, _: SectorId, _: String, _: bool) -> RpcResult<bool> {
        refused()
    }
    async fn wait_seed(&self, _: SectorId, _: SealProofType) -> RpcResult<WaitSeedResp> {
        refused()
    }
    async fn submit_proof(
        &self,
        _: SectorId,
        _: ProofOnChainInfo,
        _: bool,
    ) -> RpcResult<SubmitResp> {
        refused()
    }
    async fn poll_proof_state(&self, _: SectorId) -> RpcResult<PollStateResp> {
        refused()
    }
    async fn report_state(&self, _: SectorId, _: ReportStateReq) -> RpcResult<SectorStateResp> {
        refused()
    }
    async fn report_finalized(&self, _: SectorId) -> RpcResult<()> {
        refused()
    }
    async fn report_aborted(&self, _: SectorId, _: String) -> RpcResult<()> {
        refused()
    }
    async fn allocate_snap_up_sector(
        &self,
        _: AllocateSnapUpSpec,
    ) -> RpcResult<Option<AllocatedSnapUpSector>> {
        refused()
    }
    async fn submit_snap_up_proof(
        &self,
        _: SectorId,
        _: SnapUpOnChainInfo,
    ) -> RpcResult<SubmitResp> {
        refused()
    }
    async fn allocate_rebuild_sector(
        &self,
        _: AllocateSectorSpec,
    ) -> RpcResult<Option<SectorRebuildInfo>> {
        refused()
    }
    async fn worker_ping(&self, _: &jsonrpsee::Extensions, _: WorkerInfo) -> RpcResult<()> {
        refused()
    }
    async fn store_reserve_space(
        &self,
        _: SectorId,
        _: u64,
        _: Vec<String>,
    ) -> RpcResult<Option<StoreBasicInfo>> {
        refused()
    }
    async fn store_basic_info(&self, _: String) -> RpcResult<Option<StoreBasicInfo>> {
        refused()
    }
    async fn allocate_unseal_sector(
        &self,
        _: AllocateSectorSpec,
    ) -> RpcResult<Option<SectorUnsealInfo>> {
        refused()
    }
    async fn achieve_unseal_sector(&self, _: SectorId, _: Cid, _: String) -> RpcResult<()> {
        refused()
    }
    async fn acquire_unseal_dest(&self, _: SectorId, _: Cid) -> RpcResult<Vec<String>> {
        refused()
    }
}

#[async_trait]
impl WorkerWdPoStApiServer for NamesOnly {
    async fn wdpost_allocate_jobs(
        &self,
        _: AllocateWdPoStJobSpec,
        _: u32,
        _: String,
    ) -> RpcResult<Vec<WdPoStAllocatedJob>> {
        refused()
    }
    async fn wdpost_heartbeat_jobs(&self, _: Vec<String>, _: String) -> RpcResult<()> {
        refused()
    }
    async fn wdpost_finish_job(
        &self,
        _: String,
        _: Option<WindowPoStOutput>,
        _: String,
    ) -> RpcResult<()> {
        refused()
    }
    async fn wdpost_reset_job(&self, _: String) -> RpcResult<()> {
        refused()
    }
    async fn wdpost_remove_job(&self, _: String) -> RpcResult<()> {
        refused()
    }
    async fn wdpost_all_jobs(&self) -> RpcResult<WdPoStJobList> {
        refused()
    }
}

#[test]
fn the_registered_method_names_are_the_spec_names() {
    let mut names: Vec<&str> = SealerApiServer::into_rpc(NamesOnly)
        .method_names()
        .collect();
    names.sort_unstable();
    let mut spec = vec![
        "Venus.AllocateSector",
        "Venus.AcquireDeals",
        "Venus.AssignTicket",
        "Venus.SubmitPreCommit",
        "Venus.PollPreCommitState",
        "Venus.SubmitPersisted",
        "Venus.SubmitPersistedEx",
        "Venus.WaitSeed",
        "Venus.SubmitProof",
        "Venus.PollProofState",
        "Venus.ReportState",
        "Venus.ReportFinalized",
        "Venus.ReportAborted",
        "Venus.AllocateSanpUpSector",
        "Venus.SubmitSnapUpProof",
        "Venus.AllocateRebuildSector",
        "Venus.WorkerPing",
        "Venus.StoreReserveSpace",
        "Venus.StoreBasicInfo",
        "Venus.AllocateUnsealSector",
        "Venus.AchieveUnsealSector",
        "Venus.AcquireUnsealDest",
    ];
    spec.sort_unstable();
    assert_eq!(names, spec);

    let mut wdpost: Vec<&str> = WorkerWdPoStApiServer::into_rpc(NamesOnly)
        .method_names()
        .collect();
    wdpost.sort_unstable();
    assert_eq!(
        wdpost,
        [
            "Venus.WdPoStAllJobs",
            "Venus.WdPoStAllocateJobs",
            "Venus.WdPoStFinishJob",
            "Venus.WdPoStHeartbeatJobs",
            "Venus.WdPoStRemoveJob",
            "Venus.WdPoStResetJob"
        ]
    );
}

fn table_names(table: &[Method]) -> Vec<&'static str> {
    let mut names: Vec<&str> = table.iter().map(|m| m.name).collect();
    names.sort_unstable();
    names
}

#[test]
fn every_registered_method_has_one_row_in_its_table() {
    let mut sealer: Vec<&str> = SealerApiServer::into_rpc(NamesOnly)
        .method_names()
        .collect();
    sealer.sort_unstable();
    assert_eq!(sealer, table_names(SEALER_METHODS));
    let mut wdpost: Vec<&str> = WorkerWdPoStApiServer::into_rpc(NamesOnly)
        .method_names()
        .collect();
    wdpost.sort_unstable();
    assert_eq!(wdpost, table_names(WDPOST_METHODS));
    // No name twice across the tables (the manager serves them in one module).
    let mut all: Vec<&str> = [SEALER_METHODS, WDPOST_METHODS, CLI_METHODS]
        .concat()
        .iter()
        .map(|m| m.name)
        .collect();
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "a method is listed twice");
}

#[test]
fn worker_calls_need_write_and_state_surgery_needs_admin() {
    assert!(SEALER_METHODS.iter().all(|m| m.perm == Perm::Write));
    let perm = |name: &str| {
        [SEALER_METHODS, WDPOST_METHODS, CLI_METHODS]
            .concat()
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.perm)
    };
    for admin in [
        "Venus.ImportSector",
        "Venus.RestoreSector",
        "Venus.FinalizeSector",
        "Venus.WorkerPingInfoRemove",
        "Venus.StoreReleaseReserved",
        "Venus.WdPoStResetJob",
        "Venus.WdPoStRemoveJob",
    ] {
        assert_eq!(perm(admin), Some(Perm::Admin), "{admin}");
    }
    for read in ["Venus.StoreList", "Venus.Version", "Venus.WdPoStAllJobs"] {
        assert_eq!(perm(read), Some(Perm::Read), "{read}");
    }
    assert_eq!(perm("Venus.WdPoStFinishJob"), Some(Perm::Write));
}
