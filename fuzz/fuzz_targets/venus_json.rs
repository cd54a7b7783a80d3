//! The Venus JSON a worker or a damocles manager sends: every decoder either refuses with an
//! error or gives a value that encodes and decodes to itself; commitment CIDs give back the
//! commitment they were made from.
#![no_main]

use damocles_manager_api::json::{
    data_commitment_cid, data_commitment_of, replica_commitment_cid, replica_commitment_of, BigInt,
    Bytes, Cid,
};
use damocles_manager_api::types::*;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Decodes `data` as `T`; a value decoded encodes to JSON that decodes to the same encoding.
fn round_trip<T: Serialize + DeserializeOwned>(data: &[u8]) -> Option<T> {
    let value: T = serde_json::from_slice(data).ok()?;
    let encoded = serde_json::to_vec(&value).expect("a decoded value encodes");
    let again: T = serde_json::from_slice(&encoded).expect("what we encode decodes");
    assert_eq!(
        serde_json::to_vec(&again).expect("encodes"),
        encoded,
        "the encoding is stable"
    );
    Some(value)
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Bytes>(data);
    round_trip::<BigInt>(data);
    if let Some(cid) = round_trip::<Cid>(data) {
        if let Ok(comm) = data_commitment_of(&cid) {
            assert_eq!(data_commitment_of(&data_commitment_cid(&comm)), Ok(comm));
        }
        if let Ok(comm) = replica_commitment_of(&cid) {
            assert_eq!(
                replica_commitment_of(&replica_commitment_cid(&comm)),
                Ok(comm)
            );
        }
    }
    round_trip::<AllocateSectorSpec>(data);
    round_trip::<AllocatedSector>(data);
    round_trip::<SectorPieceV2>(data);
    round_trip::<Ticket>(data);
    round_trip::<Seed>(data);
    round_trip::<PreCommitOnChainInfo>(data);
    round_trip::<ProofOnChainInfo>(data);
    round_trip::<ReportStateReq>(data);
    round_trip::<SectorStateResp>(data);
    round_trip::<WorkerInfo>(data);
    round_trip::<StoreBasicInfo>(data);
    round_trip::<WdPoStAllocatedJob>(data);
    round_trip::<WindowPoStOutput>(data);
    round_trip::<SectorState>(data);
    round_trip::<SnapUpOnChainInfo>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cid) = Cid::parse(text) {
            assert_eq!(Cid::parse(&cid.0), Ok(cid.clone()));
        }
    }
});
