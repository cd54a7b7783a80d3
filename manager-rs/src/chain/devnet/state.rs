//! The devnet's chain state: the miner actors (sectors, PreCommits, deadlines and partitions,
//! elections and block counts), the deals, the message pool and the head, kept as one JSON
//! value under `STATE_KEY`; and the record of each pushed message, kept under its own key
//! (`msg_key`) with its status.

use std::collections::{BTreeMap, BTreeSet};

use damocles_manager_api::json::Cid;
use damocles_manager_api::types::{ActorId, ChainEpoch, DealId, SectorNumber};
use serde::{Deserialize, Serialize};

use crate::chain::{
    ChainMinerInfo, DeadlineInfo, Election, Head, MarketDeal, Message, MessageStatus,
    NetworkParams, Partition, PreCommitOnChain, SectorOnChainInfo,
};

/// The key of the whole state in the `CHAIN` column family.
pub(super) const STATE_KEY: &[u8] = b"state";
/// The version of the state's layout; another one is refused.
pub(super) const STATE_VERSION: u32 = 1;

/// A miner actor: its info, sectors, PreCommits, deadlines, elections and block counts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct MinerActor {
    pub(super) info: ChainMinerInfo,
    pub(super) allocated: BTreeSet<SectorNumber>,
    pub(super) pre_commits: BTreeMap<SectorNumber, PreCommitOnChain>,
    pub(super) sectors: BTreeMap<SectorNumber, SectorOnChainInfo>,
    pub(super) deadlines: Vec<Vec<Partition>>,
    /// Deadlines proven in the current period.
    pub(super) posts_accepted: u64,
    /// Elections waiting for the miner's WinningPoSt.
    #[serde(default)]
    pub(super) elections: Vec<Election>,
    /// Blocks won with a WinningPoSt that verified.
    #[serde(default)]
    pub(super) blocks_won: u64,
    /// Elections whose WinningPoSt did not verify.
    #[serde(default)]
    pub(super) blocks_rejected: u64,
    /// Elections left unanswered within the budget.
    #[serde(default)]
    pub(super) blocks_missed: u64,
}

/// The whole chain state, kept under `STATE_KEY`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct State {
    pub(super) version: u32,
    pub(super) seed: String,
    pub(super) head: Head,
    pub(super) params: NetworkParams,
    pub(super) miners: BTreeMap<ActorId, MinerActor>,
    pub(super) deals: BTreeMap<DealId, MarketDeal>,
    pub(super) next_deal_id: DealId,
    pub(super) mpool: Vec<Cid>,
}

/// A pushed message and its status, kept under `msg_key` of its id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct MessageRecord {
    pub(super) message: Message,
    pub(super) status: MessageStatus,
}

/// The key of a pushed message's record.
pub(super) fn msg_key(id: &Cid) -> Vec<u8> {
    format!("msg/{id}").into_bytes()
}

impl State {
    /// The deadline of `miner` at epoch `at`.
    pub(super) fn deadline_info(&self, miner: &MinerActor, at: ChainEpoch) -> DeadlineInfo {
        let p = &self.params;
        let pp = p.wpost_proving_period();
        let offset = miner.info.proving_period_offset;
        let period_start = offset + (at - offset).div_euclid(pp) * pp;
        let index = ((at - period_start) / p.wpost_challenge_window) as u64;
        DeadlineInfo::new(p, at, period_start, index)
    }
}
