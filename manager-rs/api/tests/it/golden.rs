//! Every wire type parses from the reference's shape (manager-spec §2.2, worker-spec §4.2) and
//! serialises back to exactly the same compact JSON, field order included.

use std::path::PathBuf;

use crate::golden_json;

use damocles_manager_api::json::{Bytes, Cid};
use damocles_manager_api::types::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn round_trip<V: Serialize + DeserializeOwned>(name: &str) -> V {
    golden_json::round_trip(&fixtures(), name)
}

#[test]
fn sector_ids_and_allocation() {
    let sid: SectorId = round_trip("SectorID");
    assert_eq!(sid.to_string(), "s-t01000-7");
    let spec: AllocateSectorSpec = round_trip("AllocateSectorSpec");
    assert_eq!(
        spec.allowed_proof_types,
        Some(vec![SealProofType(5), SealProofType(8)])
    );
    let any: AllocateSectorSpec = round_trip("AllocateSectorSpec.null");
    assert_eq!(any, AllocateSectorSpec::default());
    let allocated: AllocatedSector = round_trip("AllocatedSector");
    assert_eq!(allocated.proof_type.sector_size(), Some(2048));
    let deals: AcquireDealsSpec = round_trip("AcquireDealsSpec");
    assert_eq!(deals.max_deals, Some(3));
}

#[test]
fn pieces_and_deals() {
    let piece: SectorPieceV2 = round_trip("SectorPieceV2");
    assert!(!piece.is_filler());
    assert_eq!(piece.deal_info.deal_id, 12);
    let filler: SectorPieceV2 = round_trip("SectorPieceV2.filler");
    assert!(filler.is_filler());
    assert_eq!(filler.deal_info.publish_cid, None);
    let legacy: LegacyDealInfo = round_trip("LegacyDealInfo");
    assert_eq!(legacy.piece.cid, piece.piece.piece_cid);
}

#[test]
fn randomness_and_commitments() {
    let ticket: Ticket = round_trip("Ticket");
    assert_eq!(ticket.ticket.0.len(), 32, "base64 of 32 bytes");
    let seed: Seed = round_trip("Seed");
    assert_eq!(seed.epoch, 250);
    let pre: PreCommitOnChainInfo = round_trip("PreCommitOnChainInfo");
    assert_eq!(pre.ticket, ticket);
    let proof: ProofOnChainInfo = round_trip("ProofOnChainInfo");
    assert_eq!(proof.proof.0.len(), 192);
}

#[test]
fn submissions_and_polls() {
    let ok: SubmitResp = round_trip("SubmitResp");
    assert_eq!(ok.res, SubmitResult::Accepted);
    let rejected: SubmitResp = round_trip("SubmitResp.rejected");
    assert_eq!(rejected.res, SubmitResult::Rejected);
    assert_eq!(rejected.desc.as_deref(), Some("commD mismatch"));
    let landed: PollStateResp = round_trip("PollStateResp");
    assert_eq!(landed.state, OnChainState::Landed);
    let wait: WaitSeedResp = round_trip("WaitSeedResp.wait");
    assert!(wait.should_wait && wait.seed.is_none());
    let seed: WaitSeedResp = round_trip("WaitSeedResp.seed");
    assert!(seed.seed.is_some());
    // An unknown code is kept, not refused.
    let future: SubmitResp = serde_json::from_str(r#"{"Res":9,"Desc":null}"#).expect("parse");
    assert_eq!(future.res, SubmitResult::Unknown(9));
    assert_eq!(
        serde_json::to_string(&future).expect("ser"),
        r#"{"Res":9,"Desc":null}"#
    );
}

#[test]
fn state_reports() {
    let req: ReportStateReq = round_trip("ReportStateReq");
    assert_eq!(req.state_change.next, "PC2Done");
    let failed: ReportStateReq = round_trip("ReportStateReq.failure");
    assert_eq!(
        failed.failure.map(|f| f.level),
        Some("temporary".to_string())
    );
    let resp: SectorStateResp = round_trip("SectorStateResp");
    assert!(!resp.finalized);
    // Go may send `null` for an empty string; it is read as "".
    let null_reason: SectorStateResp = serde_json::from_str(
        r#"{"Id":{"Miner":1,"Number":2},"Finalized":true,"AbortReason":null}"#,
    )
    .expect("parse");
    assert_eq!(null_reason.abort_reason, "");
}

#[test]
fn snap_up_rebuild_and_unseal() {
    let _: AllocateSnapUpSpec = round_trip("AllocateSnapUpSpec");
    let snap: AllocatedSnapUpSector = round_trip("AllocatedSnapUpSector");
    assert_eq!(snap.private.access_instance, "ps1");
    let info: SnapUpOnChainInfo = round_trip("SnapUpOnChainInfo");
    assert_eq!(info.pieces.len(), 1);
    let rebuild: SectorRebuildInfo = round_trip("SectorRebuildInfo");
    assert!(rebuild.pieces_v2.is_none());
    let unseal: SectorUnsealInfo = round_trip("SectorUnsealInfo");
    assert_eq!(unseal.size, 1016);
}

#[test]
fn workers_and_stores() {
    let worker: WorkerInfo = round_trip("WorkerInfo");
    assert_eq!(worker.summary.running, 2);
    let store: StoreBasicInfo = round_trip("StoreBasicInfo");
    assert_eq!(
        store
            .meta
            .as_ref()
            .and_then(|m| m.get("Bucket"))
            .map(String::as_str),
        Some("sectors")
    );
    let detailed: StoreDetailedInfo = round_trip("StoreDetailedInfo");
    assert_eq!(detailed.basic.name, "ps1");
    assert_eq!(detailed.reserved_by[0].by, "s-t01000-7");
}

#[test]
fn window_post_jobs() {
    let spec: AllocateWdPoStJobSpec = round_trip("AllocateWdPoStJobSpec");
    assert_eq!(
        spec.allowed_proof_types.as_deref(),
        Some(&["StackedDrgWindow2KiBV1_2".to_string()][..])
    );
    let job: WdPoStAllocatedJob = round_trip("WdPoStAllocatedJob");
    assert_eq!(job.input.sectors[0].accesses.cache_dir, "ps1");
    let out: WindowPoStOutput = round_trip("WindowPoStOutput");
    assert_eq!(out.proofs[0].0.len(), 192);
}

#[test]
fn encodings_refuse_bad_values_with_reasons() {
    let e = serde_json::from_str::<Cid>(r#"{"/":"not-a-cid"}"#).expect_err("bad cid");
    assert!(e.to_string().contains("invalid CID"), "{e}");
    let e = serde_json::from_str::<Bytes>(r#""@@""#).expect_err("bad base64");
    assert!(e.to_string().contains("invalid base64"), "{e}");
    assert_eq!(
        serde_json::from_str::<Bytes>("null").expect("nil slice"),
        Bytes::default()
    );
    let e = serde_json::from_str::<PreCommitOnChainInfo>(
        r#"{"CommR":[1,2,3],"CommD":[],"Ticket":{"Ticket":"","Epoch":0}}"#,
    )
    .expect_err("short commitment");
    assert!(e.to_string().contains("32"), "{e}");
    assert_eq!(SealProofType(8).sector_size(), Some(32 << 30));
    assert_eq!(SealProofType(42).sector_size(), None);
    assert_eq!(SealProofType::v1_1_for_size(2048), Some(SealProofType(5)));
}

#[test]
fn sector_states_as_the_manager_keeps_them() {
    use damocles_manager_api::json::{
        data_commitment_cid, data_commitment_of, replica_commitment_cid, replica_commitment_of,
    };
    let st: SectorState = round_trip("SectorState");
    assert!(st.has_deal_data());
    assert!(st.matches_job(SectorJob::Sealing));
    assert!(!st.matches_job(SectorJob::SnapUp));
    let pre = st.pre.as_ref().expect("pre");
    // The CIDs of the commitments are the fil-commitment CIDs of their bytes.
    assert_eq!(replica_commitment_of(&pre.comm_r), Ok([3u8; 32]));
    assert_eq!(data_commitment_of(&pre.comm_d), Ok([4u8; 32]));
    assert_eq!(replica_commitment_cid(&[3u8; 32]), pre.comm_r);
    assert_eq!(data_commitment_cid(&[4u8; 32]), pre.comm_d);
    assert!(
        replica_commitment_of(&pre.comm_d).is_err(),
        "a data CID is not a replica CID"
    );
    let aborted: SectorState = round_trip("SectorState.aborted");
    assert!(
        aborted.ticket.is_none() && aborted.pre.is_none(),
        "absent optional parts are omitted"
    );
    assert_eq!(aborted.abort_reason, "aborted via CLI");
    let w: WorkerPingInfo = round_trip("WorkerPingInfo");
    assert_eq!(w.info.summary.running, 3);
    let found: SectorIndexerFindResp = round_trip("SectorIndexerFindResp");
    assert_eq!(found.instance.cache_dir, "store-b");
    let info: MinerInfo = round_trip("MinerInfo");
    assert_eq!(info.seal_proof_type.sector_size(), Some(info.sector_size));
    let rand: WindowPoStRandomness = round_trip("WindowPoStRandomness");
    assert_eq!(rand.rand.0.len(), 32);
}
