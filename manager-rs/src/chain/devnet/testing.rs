//! Devnets for the manager's unit tests: one 2 KiB miner ([`TEST_MINER`]) and the messages
//! tests send it.

use std::sync::Arc;

use damocles_manager_api::json::replica_commitment_cid;
use damocles_manager_api::types::{ChainEpoch, SealProofType, SectorNumber};

use super::Devnet;
use crate::chain::{Message, MethodCall, PreCommitParams};
use crate::config::{DevnetConfig, DevnetMinerConfig, SectorSize};
use crate::kv::Kv;

/// The miner of the test devnets.
pub(crate) const TEST_MINER: u64 = 1000;

/// A devnet in `kv` with [`TEST_MINER`] (2 KiB sectors), after `edit` changed its config; no
/// block produced yet.
pub(crate) fn open_devnet(kv: Kv, edit: impl FnOnce(&mut DevnetConfig)) -> Arc<Devnet> {
    let mut cfg = DevnetConfig {
        miners: vec![DevnetMinerConfig {
            actor: TEST_MINER,
            sector_size: SectorSize(2048),
        }],
        ..DevnetConfig::default()
    };
    edit(&mut cfg);
    Devnet::open(kv, &cfg).expect("devnet")
}

/// A PreCommitSectorBatch2 of one 2 KiB sector of [`TEST_MINER`] with the CommR `comm_r`.
pub(crate) fn pre_commit_message(
    number: SectorNumber,
    comm_r: [u8; 32],
    seal_rand_epoch: ChainEpoch,
) -> Message {
    Message {
        from: format!("t0{TEST_MINER}"),
        to: TEST_MINER,
        value: 0,
        call: MethodCall::PreCommitSectorBatch2 {
            sectors: vec![PreCommitParams {
                seal_proof: SealProofType(5),
                sector_number: number,
                sealed_cid: replica_commitment_cid(&comm_r),
                seal_rand_epoch,
                deal_ids: vec![],
                expiration: 10_000_000,
                unsealed_cid: None,
            }],
        },
    }
}
