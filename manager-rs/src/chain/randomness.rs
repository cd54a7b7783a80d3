//! The randomness each protocol step draws, with the tag, source (tickets or beacon) and
//! entropy that step uses: the one place that pairs them.

use damocles_manager_api::json::Commitment;
use damocles_manager_api::types::{ActorId, ChainEpoch};

use super::{miner_entropy, Chain, ChainResult, DomainSeparationTag};

/// Where a draw comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// `StateGetRandomnessFromTickets`.
    Tickets,
    /// `StateGetRandomnessFromBeacon`.
    Beacon,
}

async fn draw(
    chain: &dyn Chain,
    source: Source,
    tag: DomainSeparationTag,
    epoch: ChainEpoch,
    entropy: &[u8],
) -> ChainResult<Commitment> {
    match source {
        Source::Tickets => chain.randomness_from_tickets(tag, epoch, entropy).await,
        Source::Beacon => chain.randomness_from_beacon(tag, epoch, entropy).await,
    }
}

/// The seal ticket of a miner's sector at `epoch` (PreCommit, `GetTicket`).
pub async fn seal_ticket(
    chain: &dyn Chain,
    miner: ActorId,
    epoch: ChainEpoch,
) -> ChainResult<Commitment> {
    let tag = DomainSeparationTag::SealRandomness;
    draw(chain, Source::Tickets, tag, epoch, &miner_entropy(miner)).await
}

/// The interactive PoRep seed of a miner's sector at `epoch` (ProveCommit, `GetSeed`).
pub async fn seal_seed(
    chain: &dyn Chain,
    miner: ActorId,
    epoch: ChainEpoch,
) -> ChainResult<Commitment> {
    let tag = DomainSeparationTag::InteractiveSealChallengeSeed;
    draw(chain, Source::Beacon, tag, epoch, &miner_entropy(miner)).await
}

/// The WindowPoSt challenge of a miner's deadline whose challenge epoch is `epoch`.
pub async fn window_post_challenge(
    chain: &dyn Chain,
    miner: ActorId,
    epoch: ChainEpoch,
) -> ChainResult<Commitment> {
    let tag = DomainSeparationTag::WindowedPoStChallengeSeed;
    draw(chain, Source::Beacon, tag, epoch, &miner_entropy(miner)).await
}

/// The chain commitment a `SubmitWindowedPoSt` carries for `epoch` (no entropy).
pub async fn window_post_commit(chain: &dyn Chain, epoch: ChainEpoch) -> ChainResult<Commitment> {
    let tag = DomainSeparationTag::PoStChainCommit;
    draw(chain, Source::Tickets, tag, epoch, &[]).await
}
