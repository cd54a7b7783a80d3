//! What the API shows of the chain: the randomness the sealing API hands out, and the views of
//! the manager's own CLI (`util chain …`). Handlers translate these to wire types and nothing
//! else.

use std::collections::BTreeMap;
use std::sync::Arc;

use damocles_manager_api::json::Bytes;
use damocles_manager_api::types::{
    ActorId, ChainEpoch, SectorJob, SectorWorkerState, Seed, Ticket, WindowPoStRandomness,
};
use serde::{Deserialize, Serialize};

use super::randomness;
use super::{
    Chain, ChainError, ChainMinerInfo, ChainResult, DeadlineInfo, Head, MinerPower, NetworkParams,
    Partition, PreCommitOnChain, SectorOnChainInfo,
};
use crate::sectors::SectorStates;

/// The chain's view for `util chain head`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChainHeadView {
    /// Head.
    pub head: Head,
    /// Network constants.
    pub params: NetworkParams,
    /// Counts.
    pub summary: BTreeMap<String, u64>,
}

/// A miner's view for `util chain miner`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChainMinerView {
    /// Actor.
    pub info: ChainMinerInfo,
    /// Power.
    pub power: MinerPower,
    /// Current deadline.
    pub deadline: DeadlineInfo,
}

/// A sector's on-chain state for `util chain sectors`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChainSectorView {
    /// Active sectors.
    pub active: Vec<SectorOnChainInfo>,
    /// PreCommits waiting for their proof.
    pub pre_committed: Vec<PreCommitOnChain>,
    /// Faulty sector numbers.
    pub faulty: Vec<u64>,
}

/// Read-only answers about the chain, joined with the manager's sectors where a view needs
/// them.
#[derive(Clone)]
pub struct ChainViews {
    chain: Arc<dyn Chain>,
    states: Arc<SectorStates>,
}

impl std::fmt::Debug for ChainViews {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainViews").finish_non_exhaustive()
    }
}

impl ChainViews {
    /// Views of `chain`; `states` tells which sector numbers to look up PreCommits for.
    pub fn new(chain: Arc<dyn Chain>, states: Arc<SectorStates>) -> Self {
        ChainViews { chain, states }
    }

    /// `GetTicket`: the seal ticket of `miner` at `epoch`.
    pub async fn ticket(&self, miner: ActorId, epoch: ChainEpoch) -> ChainResult<Ticket> {
        let rand = randomness::seal_ticket(self.chain.as_ref(), miner, epoch).await?;
        Ok(Ticket {
            ticket: Bytes(rand.to_vec()),
            epoch,
        })
    }

    /// `GetSeed`: the interactive PoRep seed of `miner` at `epoch`.
    pub async fn seed(&self, miner: ActorId, epoch: ChainEpoch) -> ChainResult<Seed> {
        let rand = randomness::seal_seed(self.chain.as_ref(), miner, epoch).await?;
        Ok(Seed {
            seed: Bytes(rand.to_vec()),
            epoch,
        })
    }

    /// `GetWindowPoStChanlleengeRand`: the WindowPoSt challenge of `miner` at `epoch`.
    pub async fn window_post_challenge(
        &self,
        miner: ActorId,
        epoch: ChainEpoch,
    ) -> ChainResult<WindowPoStRandomness> {
        let rand = randomness::window_post_challenge(self.chain.as_ref(), miner, epoch).await?;
        Ok(WindowPoStRandomness {
            epoch,
            rand: Bytes(rand.to_vec()),
        })
    }

    /// `GetWindowPoStCommitRand`: the chain commitment at `epoch`.
    pub async fn window_post_commit(&self, epoch: ChainEpoch) -> ChainResult<WindowPoStRandomness> {
        let rand = randomness::window_post_commit(self.chain.as_ref(), epoch).await?;
        Ok(WindowPoStRandomness {
            epoch,
            rand: Bytes(rand.to_vec()),
        })
    }

    /// The head, the network constants and the chain's counts.
    pub async fn head(&self) -> ChainResult<ChainHeadView> {
        Ok(ChainHeadView {
            head: self.chain.head().await?,
            params: self.chain.network_params().await?,
            summary: self.chain.summary().await?,
        })
    }

    /// A miner's actor, power and current deadline.
    pub async fn miner(&self, miner: ActorId) -> ChainResult<ChainMinerView> {
        let info = self
            .chain
            .miner_info(miner)
            .await?
            .ok_or_else(|| ChainError::rejected(format!("miner {miner} not found on chain")))?;
        Ok(ChainMinerView {
            info,
            power: self.chain.miner_power(miner).await?,
            deadline: self.chain.proving_deadline(miner).await?,
        })
    }

    /// A miner's active sectors, the PreCommits of the sectors being sealed here, and its
    /// faulty sectors.
    pub async fn sectors(&self, miner: ActorId) -> ChainResult<ChainSectorView> {
        let active = self.chain.miner_sectors(miner).await?;
        let sealing: Vec<u64> = self
            .states
            .all(SectorWorkerState::Online, SectorJob::All)?
            .into_iter()
            .filter(|s| s.id.miner == miner)
            .map(|s| s.id.number)
            .collect();
        let mut pre_committed = Vec::new();
        for n in sealing {
            if let Some(pc) = self.chain.pre_commit_info(miner, n).await? {
                pre_committed.push(pc);
            }
        }
        let mut faulty: Vec<u64> = self
            .deadlines(miner)
            .await?
            .into_iter()
            .flatten()
            .flat_map(|p| p.faulty_sectors)
            .collect();
        faulty.sort_unstable();
        Ok(ChainSectorView {
            active,
            pre_committed,
            faulty,
        })
    }

    /// A miner's deadlines, each with its partitions.
    pub async fn deadlines(&self, miner: ActorId) -> ChainResult<Vec<Vec<Partition>>> {
        let deadlines = self.chain.network_params().await?.wpost_period_deadlines;
        let mut out = Vec::with_capacity(deadlines as usize);
        for d in 0..deadlines {
            out.push(self.chain.partitions(miner, d).await?);
        }
        Ok(out)
    }
}
