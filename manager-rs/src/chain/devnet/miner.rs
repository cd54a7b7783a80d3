//! Messages executed on the miner actors: dispatching a message to its method; PreCommit
//! (checks of the ticket, expiration and deals, with the CommD of the deals); ProveCommit (the
//! PoRep verified with `verify_seal`); the assignment of new sectors to deadlines and
//! partitions; fault recovery declarations; and the close of each deadline, which marks the
//! sectors that were due and not proven faulty. WindowPoSt itself is in `post.rs`.

use std::collections::{BTreeMap, BTreeSet};

use damocles_manager_api::json::{data_commitment_of, replica_commitment_of};
use damocles_manager_api::types::{ActorId, ChainEpoch, SectorNumber};
use vc_processors::builtin::proofs::{self as vp, api};

use super::post::submit_window_post;
use super::state::{MinerActor, State};
use super::{draw, fail, Failure, EXIT_ILLEGAL_ARGUMENT, EXIT_NOT_FOUND};
use crate::chain::{
    miner_entropy, DomainSeparationTag, Message, MethodCall, Partition, PreCommitOnChain,
    PreCommitParams, RecoveryDeclaration, SectorActivation, SectorOnChainInfo,
    MAX_PRE_COMMIT_RANDOMNESS_LOOKBACK, MIN_SECTOR_EXPIRATION,
};
use crate::proofs::seal_proof;

/// Executes `msg` at `epoch` on its miner actor.
pub(super) fn execute(state: &mut State, epoch: ChainEpoch, msg: &Message) -> Result<(), Failure> {
    if !state.miners.contains_key(&msg.to) {
        return Err(Failure(
            EXIT_NOT_FOUND,
            format!("actor {} not found", msg.to),
        ));
    }
    match &msg.call {
        MethodCall::PreCommitSectorBatch2 { sectors } => pre_commit(state, epoch, msg.to, sectors),
        MethodCall::ProveCommitSectors3 {
            activations,
            require_activation_success,
        } => prove_commit(
            state,
            epoch,
            msg.to,
            activations,
            *require_activation_success,
        ),
        MethodCall::SubmitWindowedPoSt {
            deadline,
            partitions,
            proofs,
            chain_commit_epoch,
            chain_commit_rand,
        } => submit_window_post(
            state,
            epoch,
            msg.to,
            *deadline,
            partitions,
            proofs,
            *chain_commit_epoch,
            chain_commit_rand,
        ),
        MethodCall::DeclareFaultsRecovered { recoveries } => {
            declare_recovered(state, msg.to, recoveries)
        }
    }
}

fn pre_commit(
    state: &mut State,
    epoch: ChainEpoch,
    miner: ActorId,
    sectors: &[PreCommitParams],
) -> Result<(), Failure> {
    if sectors.is_empty() {
        return fail("no sectors");
    }
    let params = state.params.clone();
    let deals = state.deals.clone();
    let actor = state
        .miners
        .get_mut(&miner)
        .ok_or_else(|| Failure(EXIT_NOT_FOUND, "miner".into()))?;
    let mut batch = BTreeSet::new();
    for s in sectors {
        let n = s.sector_number;
        if !batch.insert(n) {
            return fail(format!("sector {n} twice in the batch"));
        }
        if actor.allocated.contains(&n) {
            return fail(format!("sector {n} is already allocated"));
        }
        if s.seal_proof != actor.info.seal_proof_type
            && seal_proof(s.seal_proof)
                .map(|p| u64::from(p.sector_size()))
                .ok()
                != Some(actor.info.sector_size)
        {
            return fail(format!(
                "sector {n}: seal proof {} does not match the miner",
                s.seal_proof.0
            ));
        }
        if s.seal_rand_epoch >= epoch
            || s.seal_rand_epoch < epoch - MAX_PRE_COMMIT_RANDOMNESS_LOOKBACK
        {
            return fail(format!(
                "sector {n}: ticket epoch {} out of range at {epoch}",
                s.seal_rand_epoch
            ));
        }
        replica_commitment_of(&s.sealed_cid)
            .map_err(|e| Failure(EXIT_ILLEGAL_ARGUMENT, format!("sector {n}: {e}")))?;
        if s.expiration <= epoch + params.max_prove_commit_duration.min(MIN_SECTOR_EXPIRATION) {
            return fail(format!("sector {n}: expiration {} too early", s.expiration));
        }
        // The unsealed CID must be the data commitment of the deals (zeros elsewhere).
        let mut pieces = Vec::new();
        for d in &s.deal_ids {
            let Some(deal) = deals.get(d) else {
                return fail(format!("sector {n}: deal {d} not found"));
            };
            if deal.proposal.provider != miner {
                return fail(format!(
                    "sector {n}: deal {d} belongs to miner {}",
                    deal.proposal.provider
                ));
            }
            if deal.sector_start_epoch >= 0 {
                return fail(format!("sector {n}: deal {d} is already active"));
            }
            if epoch >= deal.proposal.start_epoch {
                return fail(format!(
                    "sector {n}: deal {d} started at {}",
                    deal.proposal.start_epoch
                ));
            }
            if s.expiration < deal.proposal.end_epoch {
                return fail(format!("sector {n}: expires before deal {d} ends"));
            }
            let comm = data_commitment_of(&deal.proposal.piece_cid)
                .map_err(|e| Failure(EXIT_ILLEGAL_ARGUMENT, e))?;
            pieces.push(api::PieceInfo {
                commitment: comm,
                size: api::UnpaddedBytesAmount::from(api::PaddedBytesAmount(
                    deal.proposal.piece_size,
                )),
            });
        }
        let proof =
            seal_proof(s.seal_proof).map_err(|e| Failure(EXIT_ILLEGAL_ARGUMENT, e.to_string()))?;
        if !pieces.is_empty() {
            // The deals, then zero pieces up to the sector size.
            let end = crate::piece_layout::layout_end(
                pieces
                    .iter()
                    .map(|p| u64::from(api::PaddedBytesAmount::from(p.size))),
            );
            for size in crate::piece_layout::filler_sizes(end, actor.info.sector_size) {
                pieces.push(api::PieceInfo {
                    commitment: vp::zero_piece_commitment(size)
                        .map_err(|e| Failure(EXIT_ILLEGAL_ARGUMENT, e.to_string()))?,
                    size: api::UnpaddedBytesAmount::from(api::PaddedBytesAmount(size)),
                });
            }
            let comm_d = vp::guard("compute_comm_d", || {
                api::seal::compute_comm_d(proof, &pieces)
            })
            .map_err(|e| {
                Failure(
                    EXIT_ILLEGAL_ARGUMENT,
                    format!("sector {n}: computing CommD: {e}"),
                )
            })?;
            let Some(unsealed) = &s.unsealed_cid else {
                return fail(format!("sector {n} has deals but no unsealed CID"));
            };
            let got =
                data_commitment_of(unsealed).map_err(|e| Failure(EXIT_ILLEGAL_ARGUMENT, e))?;
            if got != comm_d {
                return fail(format!("sector {n}: unsealed CID does not match its deals"));
            }
        }
    }
    for s in sectors {
        actor.allocated.insert(s.sector_number);
        actor.pre_commits.insert(
            s.sector_number,
            PreCommitOnChain {
                info: s.clone(),
                pre_commit_epoch: epoch,
            },
        );
    }
    Ok(())
}

fn prove_commit(
    state: &mut State,
    epoch: ChainEpoch,
    miner: ActorId,
    activations: &[SectorActivation],
    require_all: bool,
) -> Result<(), Failure> {
    if activations.is_empty() {
        return fail("no sectors");
    }
    let seed = state.seed.clone();
    let params = state.params.clone();
    let entropy = miner_entropy(miner);
    let mut activated = Vec::new();
    let mut errors = Vec::new();
    {
        let actor = state
            .miners
            .get(&miner)
            .ok_or_else(|| Failure(EXIT_NOT_FOUND, "miner".into()))?;
        for a in activations {
            let n = a.sector_number;
            let check = || -> Result<(), String> {
                let pc = actor
                    .pre_commits
                    .get(&n)
                    .ok_or_else(|| format!("sector {n}: no PreCommit"))?;
                let seed_epoch = pc.pre_commit_epoch + params.pre_commit_challenge_delay;
                if epoch <= seed_epoch {
                    return Err(format!(
                        "sector {n}: proof before its seed epoch {seed_epoch}"
                    ));
                }
                if epoch > pc.pre_commit_epoch + params.max_prove_commit_duration {
                    return Err(format!("sector {n}: PreCommit expired"));
                }
                if a.deal_ids != pc.info.deal_ids {
                    return Err(format!(
                        "sector {n}: activation deals differ from the PreCommit's"
                    ));
                }
                let ticket = draw(
                    &seed,
                    "tickets",
                    DomainSeparationTag::SealRandomness,
                    pc.info.seal_rand_epoch.max(0),
                    &entropy,
                );
                let s = draw(
                    &seed,
                    "beacon",
                    DomainSeparationTag::InteractiveSealChallengeSeed,
                    seed_epoch,
                    &entropy,
                );
                let comm_r = replica_commitment_of(&pc.info.sealed_cid)?;
                let proof = seal_proof(pc.info.seal_proof).map_err(|e| e.to_string())?;
                let comm_d = match &pc.info.unsealed_cid {
                    Some(c) => data_commitment_of(c)?,
                    None => api::seal::compute_comm_d(proof, &[]).map_err(|e| e.to_string())?,
                };
                let ok = vp::verify_seal(
                    proof,
                    comm_r,
                    comm_d,
                    vp::to_prover_id(miner),
                    api::SectorId::from(n),
                    ticket,
                    s,
                    &a.proof.0,
                )
                .map_err(|e| format!("sector {n}: verifying the proof: {e:#}"))?;
                if !ok {
                    return Err(format!("sector {n}: invalid PoRep proof"));
                }
                Ok(())
            };
            match check() {
                Ok(()) => activated.push(a.clone()),
                Err(e) => errors.push(e),
            }
        }
    }
    if activated.is_empty() || (require_all && !errors.is_empty()) {
        return fail(errors.join("; "));
    }
    let busy = {
        let actor = state
            .miners
            .get(&miner)
            .ok_or_else(|| Failure(EXIT_NOT_FOUND, "miner".into()))?;
        state.deadline_info(actor, epoch).index
    };
    let actor = state
        .miners
        .get_mut(&miner)
        .ok_or_else(|| Failure(EXIT_NOT_FOUND, "miner".into()))?;
    for a in &activated {
        let n = a.sector_number;
        let Some(pc) = actor.pre_commits.remove(&n) else {
            continue;
        };
        let (deadline, partition) = assign_deadline(actor, n, busy);
        actor.sectors.insert(
            n,
            SectorOnChainInfo {
                sector_number: n,
                seal_proof: pc.info.seal_proof,
                sealed_cid: pc.info.sealed_cid.clone(),
                deal_ids: pc.info.deal_ids.clone(),
                activation: epoch,
                expiration: pc.info.expiration,
                deadline,
                partition,
                proof_verified: true,
            },
        );
        for d in &pc.info.deal_ids {
            if let Some(deal) = state.deals.get_mut(d) {
                deal.sector_start_epoch = epoch;
                deal.sector_number = Some(n);
            }
        }
    }
    if !errors.is_empty() {
        tracing::warn!(miner, errors = %errors.join("; "), "devnet: some sectors were not activated");
    }
    Ok(())
}

/// Puts a new sector in the deadline with the fewest sectors, in its last partition with room.
/// Puts a new sector in the least-filled deadline, never the current one (`busy`) or the one
/// after it, whose proofs may be in the making (as the miner actor does).
pub(super) fn assign_deadline(actor: &mut MinerActor, n: SectorNumber, busy: u64) -> (u64, u64) {
    let per = actor.info.window_post_partition_sectors as usize;
    let count = actor.deadlines.len() as u64;
    let excluded = [busy % count.max(1), (busy + 1) % count.max(1)];
    let (idx, _) = actor
        .deadlines
        .iter()
        .enumerate()
        .filter(|(i, _)| count < 3 || !excluded.contains(&(*i as u64)))
        .map(|(i, parts)| (i, parts.iter().map(|p| p.all_sectors.len()).sum::<usize>()))
        .min_by_key(|&(i, count)| (count, i))
        .unwrap_or((0, 0));
    let parts = &mut actor.deadlines[idx];
    if parts.last().is_none_or(|p| p.all_sectors.len() >= per) {
        parts.push(Partition::default());
    }
    let pidx = parts.len() - 1;
    parts[pidx].all_sectors.push(n);
    (idx as u64, pidx as u64)
}

fn declare_recovered(
    state: &mut State,
    miner: ActorId,
    recoveries: &[RecoveryDeclaration],
) -> Result<(), Failure> {
    let actor = state
        .miners
        .get_mut(&miner)
        .ok_or_else(|| Failure(EXIT_NOT_FOUND, "miner".into()))?;
    for r in recoveries {
        let Some(part) = actor
            .deadlines
            .get_mut(r.deadline as usize)
            .and_then(|d| d.get_mut(r.partition as usize))
        else {
            return fail(format!(
                "deadline {} partition {} does not exist",
                r.deadline, r.partition
            ));
        };
        for n in &r.sectors {
            if !part.faulty_sectors.contains(n) {
                return fail(format!("sector {n} is not faulty"));
            }
            if !part.recovering_sectors.contains(n) {
                part.recovering_sectors.push(*n);
            }
        }
    }
    Ok(())
}

/// At the close of each miner's deadline: unproven sectors that were due become faulty.
pub(super) fn close_deadlines(state: &mut State, epoch: ChainEpoch) {
    let params = state.params.clone();
    let miners: Vec<ActorId> = state.miners.keys().copied().collect();
    for id in miners {
        let dl = {
            let actor = &state.miners[&id];
            state.deadline_info(actor, epoch)
        };
        // `epoch` opens deadline `dl.index`: the previous one just closed.
        if epoch != dl.open {
            continue;
        }
        let closed = (dl.index + params.wpost_period_deadlines - 1) % params.wpost_period_deadlines;
        let closed_open = dl.open - params.wpost_challenge_window;
        let Some(actor) = state.miners.get_mut(&id) else {
            continue;
        };
        let activations: BTreeMap<SectorNumber, ChainEpoch> = actor
            .sectors
            .values()
            .map(|s| (s.sector_number, s.activation))
            .collect();
        for part in actor.deadlines[closed as usize].iter_mut() {
            for n in part.all_sectors.clone() {
                let due = activations
                    .get(&n)
                    .is_some_and(|a| *a < closed_open - params.wpost_challenge_lookback);
                if due && !part.proven_sectors.contains(&n) && !part.faulty_sectors.contains(&n) {
                    tracing::warn!(
                        miner = id,
                        sector = n,
                        deadline = closed,
                        "devnet: WindowPoSt missed, sector faulty"
                    );
                    part.faulty_sectors.push(n);
                }
                if due && !part.proven_sectors.contains(&n) {
                    part.recovering_sectors.retain(|x| *x != n);
                }
            }
            part.proven_sectors.clear();
        }
    }
}
