//! The randomness each protocol step draws, with the tag and entropy that step uses: the one
//! place that pairs a [`DomainSeparationTag`] with its source (tickets or beacon) and entropy.

use damocles_manager_api::json::Commitment;
use damocles_manager_api::types::{ActorId, ChainEpoch};

use super::{miner_entropy, Chain, ChainResult, DomainSeparationTag};

/// The seal ticket of a miner's sector at `epoch` (PreCommit, `GetTicket`).
pub async fn seal_ticket(
    chain: &dyn Chain,
    miner: ActorId,
    epoch: ChainEpoch,
) -> ChainResult<Commitment> {
    chain
        .randomness_from_tickets(
            DomainSeparationTag::SealRandomness,
            epoch,
            &miner_entropy(miner),
        )
        .await
}

/// The interactive PoRep seed of a miner's sector at `epoch` (ProveCommit, `GetSeed`).
pub async fn seal_seed(
    chain: &dyn Chain,
    miner: ActorId,
    epoch: ChainEpoch,
) -> ChainResult<Commitment> {
    chain
        .randomness_from_beacon(
            DomainSeparationTag::InteractiveSealChallengeSeed,
            epoch,
            &miner_entropy(miner),
        )
        .await
}

/// The WindowPoSt challenge of a miner's deadline whose challenge epoch is `epoch`.
pub async fn window_post_challenge(
    chain: &dyn Chain,
    miner: ActorId,
    epoch: ChainEpoch,
) -> ChainResult<Commitment> {
    chain
        .randomness_from_beacon(
            DomainSeparationTag::WindowedPoStChallengeSeed,
            epoch,
            &miner_entropy(miner),
        )
        .await
}

/// The chain commitment a `SubmitWindowedPoSt` carries for `epoch` (no entropy).
pub async fn window_post_commit(chain: &dyn Chain, epoch: ChainEpoch) -> ChainResult<Commitment> {
    chain
        .randomness_from_tickets(DomainSeparationTag::PoStChainCommit, epoch, &[])
        .await
}
