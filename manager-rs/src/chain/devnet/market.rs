//! The devnet's storage market: publishing a deal checks its provider, piece and epochs and
//! keeps it under the next deal id. A deal is activated by the ProveCommit of the sector
//! holding it (`prove_commit` in `miner.rs`).

use damocles_manager_api::json::data_commitment_of;

use super::state::STATE_KEY;
use super::Devnet;
use crate::chain::{
    new_message_id, ChainError, ChainResult, DealProposal, MarketDeal, Message, MethodCall,
};
use crate::kv::cf;

impl Devnet {
    /// Publishes the deal of `proposal` (what `Chain::publish_deal` does on the devnet).
    pub(super) fn publish(&self, proposal: DealProposal) -> ChainResult<MarketDeal> {
        let mut guard = self.lock();
        let refuse = |why: String| Err(ChainError::Rejected(why));
        if !guard.miners.contains_key(&proposal.provider) {
            return refuse(format!(
                "provider {} does not exist on the devnet",
                proposal.provider
            ));
        }
        if !(proposal.piece_size.is_power_of_two() && proposal.piece_size >= 128) {
            return refuse(format!(
                "piece size {} is not a power of two of at least 128",
                proposal.piece_size
            ));
        }
        if let Err(e) = data_commitment_of(&proposal.piece_cid) {
            return refuse(e.to_string());
        }
        if proposal.start_epoch <= guard.head.epoch {
            return refuse("deal starts in the past".into());
        }
        if proposal.end_epoch <= proposal.start_epoch {
            return refuse("deal ends before it starts".into());
        }
        let mut state = guard.clone();
        let id = state.next_deal_id;
        state.next_deal_id += 1;
        let publish = new_message_id(&Message {
            from: proposal.client.clone(),
            to: proposal.provider,
            value: 0,
            call: MethodCall::DeclareFaultsRecovered { recoveries: vec![] },
        })?;
        let deal = MarketDeal {
            deal_id: id,
            proposal,
            publish_cid: publish,
            sector_start_epoch: -1,
            sector_number: None,
        };
        state.deals.insert(id, deal.clone());
        self.kv.put_json(cf::CHAIN, STATE_KEY, &state)?;
        *guard = state;
        Ok(deal)
    }
}
