//! WindowPoSt on the devnet: a `SubmitWindowedPoSt` is accepted when its deadline is open,
//! its commit randomness is the chain's, and its one proof verifies with `verify_window_post`
//! over the partitions' sectors that are neither faulty (unless recovering) nor skipped; the
//! sectors are then marked proven, and recovered ones healthy. Sectors left unproven are
//! marked faulty when the deadline closes (`close_deadlines` in `miner.rs`).

use std::collections::BTreeMap;

use damocles_manager_api::json::replica_commitment_of;
use damocles_manager_api::types::{ActorId, ChainEpoch};
use vc_processors::builtin::proofs::{self as vp, api};

use super::state::State;
use super::{draw, fail, Failure, EXIT_ILLEGAL_ARGUMENT, EXIT_NOT_FOUND};
use crate::chain::{miner_entropy, DomainSeparationTag, PoStPartition};
use crate::proofs::window_post_proof;

/// Executes a `SubmitWindowedPoSt` of `miner` for `deadline` at `epoch`.
#[allow(clippy::too_many_arguments)]
pub(super) fn submit_window_post(
    state: &mut State,
    epoch: ChainEpoch,
    miner: ActorId,
    deadline: u64,
    partitions: &[PoStPartition],
    proofs: &[damocles_manager_api::json::Bytes],
    commit_epoch: ChainEpoch,
    commit_rand: &damocles_manager_api::json::Bytes,
) -> Result<(), Failure> {
    let seed = state.seed.clone();
    let actor = state
        .miners
        .get(&miner)
        .ok_or_else(|| Failure(EXIT_NOT_FOUND, "miner".into()))?;
    let dl = state.deadline_info(actor, epoch);
    if dl.index != deadline {
        return fail(format!(
            "deadline {deadline} is not open (current {} at {epoch})",
            dl.index
        ));
    }
    if commit_epoch >= epoch || commit_epoch < dl.challenge {
        return fail(format!("commit epoch {commit_epoch} out of range"));
    }
    let want_commit = draw(
        &seed,
        "tickets",
        DomainSeparationTag::PoStChainCommit,
        commit_epoch,
        &[],
    );
    if commit_rand.0 != want_commit {
        return fail("commit randomness does not match the chain");
    }
    if proofs.len() != 1 {
        return fail(format!("expected one proof, got {}", proofs.len()));
    }
    let entropy = miner_entropy(miner);
    let mut rand = draw(
        &seed,
        "beacon",
        DomainSeparationTag::WindowedPoStChallengeSeed,
        dl.challenge,
        &entropy,
    );
    rand[31] &= 0x3f;
    let post_proof = window_post_proof(actor.info.window_post_proof_type)
        .map_err(|e| Failure(EXIT_ILLEGAL_ARGUMENT, e.to_string()))?;
    let mut replicas = BTreeMap::new();
    let mut proven = Vec::new();
    for p in partitions {
        let Some(part) = actor.deadlines[deadline as usize].get(p.index as usize) else {
            return fail(format!("partition {} does not exist", p.index));
        };
        for n in &part.all_sectors {
            let faulty = part.faulty_sectors.contains(n) && !part.recovering_sectors.contains(n);
            if faulty || p.skipped.contains(n) {
                continue;
            }
            let Some(info) = actor.sectors.get(n) else {
                continue;
            };
            let comm_r = replica_commitment_of(&info.sealed_cid)
                .map_err(|e| Failure(EXIT_ILLEGAL_ARGUMENT, e))?;
            replicas.insert(
                api::SectorId::from(*n),
                api::PublicReplicaInfo::new(post_proof, comm_r),
            );
            proven.push((p.index, *n));
        }
    }
    if replicas.is_empty() {
        return fail("no sectors to prove");
    }
    let ok = vp::guard("verify_window_post", || {
        api::post::verify_window_post(
            &rand,
            &[(post_proof, &proofs[0].0)],
            &replicas,
            vp::to_prover_id(miner),
        )
    })
    .map_err(|e| {
        Failure(
            EXIT_ILLEGAL_ARGUMENT,
            format!("verifying the WindowPoSt: {e:#}"),
        )
    })?;
    if !ok {
        return fail("invalid WindowPoSt proof");
    }
    let actor = state
        .miners
        .get_mut(&miner)
        .ok_or_else(|| Failure(EXIT_NOT_FOUND, "miner".into()))?;
    for (pidx, n) in proven {
        let part = &mut actor.deadlines[deadline as usize][pidx as usize];
        if !part.proven_sectors.contains(&n) {
            part.proven_sectors.push(n);
        }
        // A recovered sector proven again is healthy.
        if part.recovering_sectors.contains(&n) {
            part.recovering_sectors.retain(|x| *x != n);
            part.faulty_sectors.retain(|x| *x != n);
        }
    }
    actor.posts_accepted += 1;
    Ok(())
}
