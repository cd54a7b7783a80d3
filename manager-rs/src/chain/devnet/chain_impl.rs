//! `impl Chain for Devnet`: what the manager sees of the devnet. Reads answer from the state
//! in memory; a pushed message is recorded and pooled for the next block; deals are published
//! by `market.rs` and submitted blocks judged by `election.rs`.

use std::collections::BTreeMap;

use damocles_manager_api::json::{Bytes, Cid, Commitment};
use damocles_manager_api::types::{ActorId, ChainEpoch, DealId, SectorNumber};
use jsonrpsee::core::async_trait;
use tokio::sync::watch;

use super::state::{msg_key, MessageRecord, STATE_KEY};
use super::{no_miner, Devnet};
use crate::chain::{
    BlockOutcome, Chain, ChainError, ChainMinerInfo, ChainResult, DeadlineInfo, DealProposal,
    DomainSeparationTag, Election, Head, MarketDeal, Message, MessageStatus, MinerPower,
    NetworkParams, Partition, PreCommitOnChain, SectorOnChainInfo,
};
use crate::kv::{cf, Op};

#[async_trait]
impl Chain for Devnet {
    async fn head(&self) -> ChainResult<Head> {
        Ok(self.lock().head.clone())
    }

    fn subscribe(&self) -> watch::Receiver<Head> {
        self.head_tx.subscribe()
    }

    async fn network_params(&self) -> ChainResult<NetworkParams> {
        Ok(self.lock().params.clone())
    }

    async fn miner_info(&self, miner: ActorId) -> ChainResult<Option<ChainMinerInfo>> {
        Ok(self.lock().miners.get(&miner).map(|m| m.info.clone()))
    }

    async fn randomness_from_tickets(
        &self,
        tag: DomainSeparationTag,
        epoch: ChainEpoch,
        entropy: &[u8],
    ) -> ChainResult<Commitment> {
        self.randomness("tickets", tag, epoch, entropy)
    }

    async fn randomness_from_beacon(
        &self,
        tag: DomainSeparationTag,
        epoch: ChainEpoch,
        entropy: &[u8],
    ) -> ChainResult<Commitment> {
        self.randomness("beacon", tag, epoch, entropy)
    }

    async fn allocated(
        &self,
        miner: ActorId,
        numbers: &[SectorNumber],
    ) -> ChainResult<Vec<SectorNumber>> {
        let st = self.lock();
        let Some(m) = st.miners.get(&miner) else {
            return Err(no_miner(miner));
        };
        Ok(numbers
            .iter()
            .copied()
            .filter(|n| m.allocated.contains(n))
            .collect())
    }

    async fn pre_commit_info(
        &self,
        miner: ActorId,
        number: SectorNumber,
    ) -> ChainResult<Option<PreCommitOnChain>> {
        Ok(self
            .lock()
            .miners
            .get(&miner)
            .and_then(|m| m.pre_commits.get(&number).cloned()))
    }

    async fn sector_info(
        &self,
        miner: ActorId,
        number: SectorNumber,
    ) -> ChainResult<Option<SectorOnChainInfo>> {
        Ok(self
            .lock()
            .miners
            .get(&miner)
            .and_then(|m| m.sectors.get(&number).cloned()))
    }

    async fn miner_sectors(&self, miner: ActorId) -> ChainResult<Vec<SectorOnChainInfo>> {
        Ok(self
            .lock()
            .miners
            .get(&miner)
            .map(|m| m.sectors.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn proving_deadline(&self, miner: ActorId) -> ChainResult<DeadlineInfo> {
        let st = self.lock();
        let m = st.miners.get(&miner).ok_or_else(|| no_miner(miner))?;
        Ok(st.deadline_info(m, st.head.epoch))
    }

    async fn partitions(&self, miner: ActorId, deadline: u64) -> ChainResult<Vec<Partition>> {
        let st = self.lock();
        let m = st.miners.get(&miner).ok_or_else(|| no_miner(miner))?;
        m.deadlines
            .get(deadline as usize)
            .cloned()
            .ok_or_else(|| ChainError::rejected(format!("deadline {deadline} out of range")))
    }

    async fn miner_power(&self, miner: ActorId) -> ChainResult<MinerPower> {
        let st = self.lock();
        let m = st.miners.get(&miner).ok_or_else(|| no_miner(miner))?;
        let faulty: u64 = m
            .deadlines
            .iter()
            .flatten()
            .map(|p| p.faulty_sectors.len() as u64)
            .sum();
        let active = m.sectors.len() as u64;
        Ok(MinerPower {
            active_sectors: active,
            faulty_sectors: faulty,
            raw_byte_power: active.saturating_sub(faulty) * m.info.sector_size,
        })
    }

    async fn market_deal(&self, deal: DealId) -> ChainResult<Option<MarketDeal>> {
        Ok(self.lock().deals.get(&deal).cloned())
    }

    async fn publish_deal(&self, proposal: DealProposal) -> ChainResult<MarketDeal> {
        self.publish(proposal)
    }

    async fn push_message(&self, id: &Cid, msg: Message) -> ChainResult<()> {
        let mut guard = self.lock();
        if let Some(rec) = self.kv.get_json::<MessageRecord>(cf::CHAIN, &msg_key(id))? {
            if rec.message != msg {
                return Err(ChainError::rejected(format!(
                    "message id {id} is already used by another message"
                )));
            }
            return Ok(());
        }
        let mut state = guard.clone();
        state.mpool.push(id.clone());
        let rec = MessageRecord {
            message: msg,
            status: MessageStatus::Pending,
        };
        self.kv.write(vec![
            Op::put_json(cf::CHAIN, msg_key(id), &rec)?,
            Op::put_json(cf::CHAIN, STATE_KEY.to_vec(), &state)?,
        ])?;
        *guard = state;
        Ok(())
    }

    async fn message_status(&self, id: &Cid) -> ChainResult<Option<MessageStatus>> {
        Ok(self
            .kv
            .get_json::<MessageRecord>(cf::CHAIN, &msg_key(id))?
            .map(|r| r.status))
    }

    async fn summary(&self) -> ChainResult<BTreeMap<String, u64>> {
        let st = self.lock();
        let mut out = BTreeMap::new();
        out.insert("epoch".into(), st.head.epoch.max(0) as u64);
        out.insert("miners".into(), st.miners.len() as u64);
        out.insert("deals".into(), st.deals.len() as u64);
        out.insert("pending_messages".into(), st.mpool.len() as u64);
        out.insert(
            "active_sectors".into(),
            st.miners.values().map(|m| m.sectors.len() as u64).sum(),
        );
        out.insert(
            "pre_commits".into(),
            st.miners.values().map(|m| m.pre_commits.len() as u64).sum(),
        );
        out.insert(
            "window_posts_accepted".into(),
            st.miners.values().map(|m| m.posts_accepted).sum(),
        );
        out.insert(
            "blocks_won".into(),
            st.miners.values().map(|m| m.blocks_won).sum(),
        );
        out.insert(
            "blocks_rejected".into(),
            st.miners.values().map(|m| m.blocks_rejected).sum(),
        );
        out.insert(
            "blocks_missed".into(),
            st.miners.values().map(|m| m.blocks_missed).sum(),
        );
        Ok(out)
    }

    async fn pending_elections(&self, miner: ActorId) -> ChainResult<Vec<Election>> {
        Ok(self
            .lock()
            .miners
            .get(&miner)
            .map(|m| m.elections.clone())
            .unwrap_or_default())
    }

    async fn submit_block(
        &self,
        miner: ActorId,
        epoch: ChainEpoch,
        proofs: Vec<Bytes>,
    ) -> ChainResult<BlockOutcome> {
        self.accept_block(miner, epoch, proofs).await
    }
}
