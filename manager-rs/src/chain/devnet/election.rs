//! Leader election and WinningPoSt: at each block, the elections left unanswered past their
//! budget are counted missed and each miner with power is elected with the configured
//! probability; a miner's block for an election is won when its WinningPoSt verifies with
//! `verify_winning_post` over the challenged sectors, and rejected otherwise.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, Result};
use damocles_manager_api::json::Bytes;
use damocles_manager_api::types::{ActorId, ChainEpoch, SectorNumber};
use vc_processors::builtin::proofs::{self as vp, api};

use super::state::{MinerActor, State, STATE_KEY};
use super::{draw, no_miner, unix_now, Devnet};
use crate::chain::{
    miner_entropy, BlockOutcome, ChainResult, DomainSeparationTag, Election, SectorOnChainInfo,
};
use crate::kv::cf;
use crate::proofs::seal_proof;

/// Leader election (taken from the config at each start, not kept in the chain).
#[derive(Debug, Clone, Copy)]
pub(super) struct ElectionSettings {
    pub(super) probability: f64,
    pub(super) budget_secs: u64,
}

/// A miner's sectors that count for power: active and not faulty (or faulty and recovering
/// are not counted either), by number.
fn eligible_sectors(actor: &MinerActor) -> Vec<SectorOnChainInfo> {
    let faulty: BTreeSet<SectorNumber> = actor
        .deadlines
        .iter()
        .flatten()
        .flat_map(|p| p.faulty_sectors.iter().copied())
        .collect();
    actor
        .sectors
        .values()
        .filter(|s| !faulty.contains(&s.sector_number))
        .cloned()
        .collect()
}

/// Expires the elections past their budget, then draws this epoch's: each miner with power
/// is elected with the configured probability.
pub(super) fn elect(state: &mut State, epoch: ChainEpoch, settings: ElectionSettings) {
    let now = unix_now();
    let seed = state.seed.clone();
    for (id, actor) in state.miners.iter_mut() {
        let before = actor.elections.len();
        actor.elections.retain(|e| e.expires_at >= now);
        let missed = (before - actor.elections.len()) as u64;
        if missed > 0 {
            actor.blocks_missed += missed;
            tracing::warn!(
                miner = id,
                missed,
                "devnet: elected miner missed its block (no WinningPoSt in time)"
            );
        }
        if settings.probability <= 0.0 {
            continue;
        }
        let sectors = eligible_sectors(actor);
        if sectors.is_empty() {
            continue;
        }
        let entropy = miner_entropy(*id);
        let ticket = draw(
            &seed,
            "beacon",
            DomainSeparationTag::ElectionProofProduction,
            epoch,
            &entropy,
        );
        let mut first = [0u8; 8];
        first.copy_from_slice(&ticket[..8]);
        let x = u64::from_be_bytes(first) as f64 / u64::MAX as f64;
        if x >= settings.probability {
            continue;
        }
        let randomness = draw(
            &seed,
            "beacon",
            DomainSeparationTag::WinningPoStChallengeSeed,
            epoch,
            &entropy,
        );
        tracing::info!(
            miner = id,
            epoch,
            sectors = sectors.len(),
            "devnet: miner elected; waiting for its WinningPoSt"
        );
        actor.elections.push(Election {
            epoch,
            randomness,
            sectors,
            expires_at: now + settings.budget_secs as i64,
        });
    }
}

/// Verifies a WinningPoSt of `election`.
fn verify_block(miner: ActorId, election: &Election, proofs: &[Bytes]) -> Result<bool> {
    let first = election
        .sectors
        .first()
        .ok_or_else(|| anyhow!("the election has no sector"))?;
    let seal = seal_proof(first.seal_proof)?;
    let post_proof = vp::winning_post_proof_for_size(u64::from(seal.sector_size()))?;
    let mut rand = election.randomness;
    rand[31] &= 0x3f;
    let numbers: Vec<SectorNumber> = election.sectors.iter().map(|s| s.sector_number).collect();
    let challenged = crate::proofs::winning_post_challenged(post_proof, &rand, miner, &numbers)?;
    let mut public = BTreeMap::new();
    for n in challenged {
        let s = election
            .sectors
            .iter()
            .find(|s| s.sector_number == n)
            .ok_or_else(|| anyhow!("challenged sector {n} is not eligible"))?;
        let comm_r = damocles_manager_api::json::replica_commitment_of(&s.sealed_cid)
            .map_err(|e| anyhow!("sector {n}: {e}"))?;
        public.insert(
            api::SectorId::from(n),
            api::PublicReplicaInfo::new(post_proof, comm_r),
        );
    }
    let Some(proof) = proofs.first() else {
        return Ok(false);
    };
    vp::guard("verify_winning_post", || {
        api::post::verify_winning_post(&rand, &proof.0, &public, vp::to_prover_id(miner))
    })
}

impl Devnet {
    /// Judges the block of `miner` for its election at `epoch`: missed when there is no such
    /// election in time, won when `proofs` hold a WinningPoSt that verifies, else rejected.
    pub(super) async fn accept_block(
        &self,
        miner: ActorId,
        epoch: ChainEpoch,
        proofs: Vec<Bytes>,
    ) -> ChainResult<BlockOutcome> {
        let election = {
            let st = self.lock();
            let Some(actor) = st.miners.get(&miner) else {
                return Err(no_miner(miner));
            };
            match actor.elections.iter().find(|e| e.epoch == epoch) {
                Some(e) if e.expires_at >= unix_now() => e.clone(),
                _ => return Ok(BlockOutcome::Missed),
            }
        };
        // Verified outside the lock: blocks go on meanwhile.
        let valid = tokio::task::spawn_blocking(move || verify_block(miner, &election, &proofs))
            .await
            .map_err(|e| anyhow!("verification task: {e}"))??;
        let mut guard = self.lock();
        let mut state = guard.clone();
        let Some(actor) = state.miners.get_mut(&miner) else {
            return Err(no_miner(miner));
        };
        // Still in time once verified.
        let Some(pos) = actor
            .elections
            .iter()
            .position(|e| e.epoch == epoch && e.expires_at >= unix_now())
        else {
            return Ok(BlockOutcome::Missed);
        };
        actor.elections.remove(pos);
        let outcome = if valid {
            actor.blocks_won += 1;
            tracing::info!(miner, epoch, "devnet: block won; WinningPoSt verified");
            BlockOutcome::Won
        } else {
            actor.blocks_rejected += 1;
            tracing::warn!(
                miner,
                epoch,
                "devnet: WinningPoSt does not verify; block rejected"
            );
            BlockOutcome::Rejected
        };
        self.kv.put_json(cf::CHAIN, STATE_KEY, &state)?;
        *guard = state;
        Ok(outcome)
    }
}
