//! The embedded devnet: a simulated chain in the manager's process that verifies real proofs.
//!
//! One block per `BlockDelaySecs`. Messages pushed wait in a pool and execute in the next
//! block; a block's effects (actors, deals, receipts, head) are written in one synced RocksDB
//! batch, so a restarted manager continues the same chain. Randomness is deterministic from
//! the configured seed. PreCommits skip deposits; ProveCommits are verified with
//! `verify_seal`; sectors are assigned to deadlines and partitions; a WindowPoSt is verified
//! with `verify_window_post`, and a deadline that closes without a valid proof marks its
//! unproven sectors faulty.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use damocles_manager_api::json::{data_commitment_of, replica_commitment_of, Cid, Commitment};
use damocles_manager_api::types::{ActorId, ChainEpoch, DealId, SealProofType, SectorNumber};
use jsonrpsee::core::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use vc_processors::builtin::proofs::{self as vp, api};

use super::*;
use crate::config::DevnetConfig;
use crate::kv::{cf, Kv, Op};
use crate::proofs::{
    seal_proof, window_post_chain_type, window_post_partition_sectors, window_post_proof,
};

/// The network version the devnet reports.
pub const DEVNET_NETWORK_VERSION: u32 = 23;
const STATE_KEY: &[u8] = b"state";
const STATE_VERSION: u32 = 1;
/// Exit code of an invalid argument.
pub const EXIT_ILLEGAL_ARGUMENT: i64 = 16;
/// Exit code of a message to an actor that does not exist.
pub const EXIT_NOT_FOUND: i64 = 17;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct MinerActor {
    info: ChainMinerInfo,
    allocated: BTreeSet<SectorNumber>,
    pre_commits: BTreeMap<SectorNumber, PreCommitOnChain>,
    sectors: BTreeMap<SectorNumber, SectorOnChainInfo>,
    deadlines: Vec<Vec<Partition>>,
    /// Deadlines proven in the current period.
    posts_accepted: u64,
    /// Elections waiting for the miner's WinningPoSt.
    #[serde(default)]
    elections: Vec<Election>,
    /// Blocks won with a WinningPoSt that verified.
    #[serde(default)]
    blocks_won: u64,
    /// Elections whose WinningPoSt did not verify.
    #[serde(default)]
    blocks_rejected: u64,
    /// Elections left unanswered within the budget.
    #[serde(default)]
    blocks_missed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    version: u32,
    seed: String,
    head: Head,
    params: NetworkParams,
    miners: BTreeMap<ActorId, MinerActor>,
    deals: BTreeMap<DealId, MarketDeal>,
    next_deal_id: DealId,
    mpool: Vec<Cid>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct MessageRecord {
    message: Message,
    status: MessageStatus,
}

/// Leader election (taken from the config at each start, not kept in the chain).
#[derive(Debug, Clone, Copy)]
struct ElectionSettings {
    probability: f64,
    budget_secs: u64,
}

/// The devnet chain.
pub struct Devnet {
    kv: Kv,
    state: Mutex<State>,
    head_tx: watch::Sender<Head>,
    election: ElectionSettings,
}

impl std::fmt::Debug for Devnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devnet").finish_non_exhaustive()
    }
}

fn msg_key(id: &Cid) -> Vec<u8> {
    format!("msg/{id}").into_bytes()
}

fn unix_now() -> i64 {
    crate::util::unix_now()
}

/// The `[u8; 32]` of a randomness draw.
fn draw(
    seed: &str,
    source: &str,
    tag: DomainSeparationTag,
    epoch: ChainEpoch,
    entropy: &[u8],
) -> Commitment {
    let mut h = Sha256::new();
    h.update(seed.as_bytes());
    h.update(source.as_bytes());
    h.update((tag as i64).to_be_bytes());
    h.update(epoch.to_be_bytes());
    h.update(entropy);
    h.finalize().into()
}

#[cfg(test)]
impl Devnet {
    /// A miner's deadline at any epoch.
    fn deadline_info_at(&self, miner: ActorId, at: ChainEpoch) -> DeadlineInfo {
        let st = self.lock();
        st.deadline_info(&st.miners[&miner], at)
    }
}

impl State {
    fn deadline_info(&self, miner: &MinerActor, at: ChainEpoch) -> DeadlineInfo {
        let p = &self.params;
        let pp = p.wpost_proving_period();
        let offset = miner.info.proving_period_offset;
        let period_start = offset + (at - offset).div_euclid(pp) * pp;
        let index = ((at - period_start) / p.wpost_challenge_window) as u64;
        DeadlineInfo::new(p, at, period_start, index)
    }
}

impl Devnet {
    /// Opens the devnet kept in `kv`, creating its genesis from `cfg` the first time. Miners
    /// of `cfg` that the chain does not have yet are created.
    pub fn open(kv: Kv, cfg: &DevnetConfig) -> Result<Arc<Devnet>> {
        let mut state: State = match kv.get_json::<State>(cf::CHAIN, STATE_KEY)? {
            Some(s) => {
                ensure!(
                    s.version == STATE_VERSION,
                    "devnet state version {} is not supported",
                    s.version
                );
                if s.seed != cfg.seed {
                    bail!(
                        "[Devnet] Seed {:?} differs from the seed {:?} this chain was created with; restore it or start a new home",
                        cfg.seed,
                        s.seed
                    );
                }
                s
            }
            None => State {
                version: STATE_VERSION,
                seed: cfg.seed.clone(),
                head: Head {
                    epoch: 0,
                    timestamp: unix_now(),
                },
                params: NetworkParams {
                    network_name: "devnet".into(),
                    block_delay_secs: cfg.block_delay_secs,
                    pre_commit_challenge_delay: cfg.pre_commit_challenge_delay,
                    network_version: DEVNET_NETWORK_VERSION,
                    wpost_period_deadlines: cfg.wpost_period_deadlines,
                    wpost_challenge_window: cfg.wpost_challenge_window,
                    wpost_challenge_lookback: cfg.wpost_challenge_lookback,
                    fault_declaration_cutoff: cfg.fault_declaration_cutoff,
                    max_prove_commit_duration: cfg.max_prove_commit_duration,
                },
                miners: BTreeMap::new(),
                deals: BTreeMap::new(),
                next_deal_id: 1,
                mpool: Vec::new(),
            },
        };
        // Timing settings may change between runs; the chain's history stays.
        state.params.block_delay_secs = cfg.block_delay_secs;
        for m in &cfg.miners {
            if let Some(existing) = state.miners.get(&m.actor) {
                ensure!(
                    existing.info.sector_size == m.sector_size.0,
                    "devnet miner {} has sector size {} on chain, the config says {}",
                    m.actor,
                    existing.info.sector_size,
                    m.sector_size.0
                );
                continue;
            }
            let size = m.sector_size.0;
            let seal = SealProofType::v1_1_for_size(size).ok_or_else(|| {
                anyhow!("devnet miner {}: unsupported sector size {size}", m.actor)
            })?;
            let pp = state.params.wpost_proving_period();
            let offset = i64::from_be_bytes(
                draw(
                    &state.seed,
                    "offset",
                    DomainSeparationTag::WindowedPoStDeadlineAssignment,
                    m.actor as i64,
                    &[],
                )[..8]
                    .try_into()
                    .unwrap_or([0; 8]),
            )
            .rem_euclid(pp);
            state.miners.insert(
                m.actor,
                MinerActor {
                    info: ChainMinerInfo {
                        id: m.actor,
                        sector_size: size,
                        seal_proof_type: seal,
                        window_post_proof_type: window_post_chain_type(size)?,
                        window_post_partition_sectors: window_post_partition_sectors(size),
                        proving_period_offset: offset,
                    },
                    allocated: BTreeSet::new(),
                    pre_commits: BTreeMap::new(),
                    sectors: BTreeMap::new(),
                    deadlines: vec![Vec::new(); state.params.wpost_period_deadlines as usize],
                    posts_accepted: 0,
                    elections: Vec::new(),
                    blocks_won: 0,
                    blocks_rejected: 0,
                    blocks_missed: 0,
                },
            );
        }
        kv.put_json(cf::CHAIN, STATE_KEY, &state)?;
        let (head_tx, _) = watch::channel(state.head.clone());
        Ok(Arc::new(Devnet {
            kv,
            state: Mutex::new(state),
            head_tx,
            election: ElectionSettings {
                probability: cfg.winning_post_probability,
                budget_secs: cfg.winning_post_budget_secs.max(1),
            },
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The time between two blocks (`[Devnet] BlockDelaySecs`, at least 1 s).
    pub fn block_delay(&self) -> Duration {
        Duration::from_secs(self.lock().params.block_delay_secs.max(1))
    }

    /// Produces one block off the async runtime; the daemon calls it every
    /// [`Devnet::block_delay`].
    pub async fn next_block(self: Arc<Self>) -> Result<()> {
        tokio::task::spawn_blocking(move || self.produce_block())
            .await
            .map_err(|e| anyhow!("block production panicked: {e}"))?
            .context("block production")
    }

    /// Makes one block: executes the pooled messages, closes ended deadlines, advances the
    /// head; all of it in one synced write.
    pub fn produce_block(&self) -> Result<()> {
        let mut guard = self.lock();
        let mut state = guard.clone();
        let epoch = state.head.epoch + 1;
        let mut ops = Vec::new();
        for id in std::mem::take(&mut state.mpool) {
            let Some(mut rec) = self
                .kv
                .get_json::<MessageRecord>(cf::CHAIN, &msg_key(&id))?
            else {
                tracing::warn!(%id, "devnet: pooled message without record, dropped");
                continue;
            };
            let (exit_code, error) = match execute(&mut state, epoch, &rec.message) {
                Ok(()) => (0, None),
                Err(Failure(code, e)) => {
                    tracing::warn!(%id, method = rec.message.call.name(), exit_code = code, error = %e, "devnet: message failed");
                    (code, Some(e))
                }
            };
            tracing::info!(%id, epoch, method = rec.message.call.name(), miner = rec.message.to, exit_code, "devnet: message executed");
            rec.status = MessageStatus::Executed {
                epoch,
                exit_code,
                error,
            };
            ops.push(Op::put_json(cf::CHAIN, msg_key(&id), &rec)?);
        }
        close_deadlines(&mut state, epoch);
        elect(&mut state, epoch, self.election);
        state.head = Head {
            epoch,
            timestamp: unix_now(),
        };
        ops.push(Op::put_json(cf::CHAIN, STATE_KEY.to_vec(), &state)?);
        self.kv.write(ops)?;
        *guard = state;
        let head = guard.head.clone();
        drop(guard);
        self.head_tx.send_replace(head);
        Ok(())
    }

    fn randomness(
        &self,
        source: &str,
        tag: DomainSeparationTag,
        epoch: ChainEpoch,
        entropy: &[u8],
    ) -> ChainResult<Commitment> {
        let st = self.lock();
        if epoch > st.head.epoch {
            return Err(ChainError::rejected(format!(
                "randomness of epoch {epoch} is in the future (head {})",
                st.head.epoch
            )));
        }
        Ok(draw(&st.seed, source, tag, epoch.max(0), entropy))
    }
}

/// A failed message: exit code and reason.
struct Failure(i64, String);

fn fail<T>(msg: impl Into<String>) -> Result<T, Failure> {
    Err(Failure(EXIT_ILLEGAL_ARGUMENT, msg.into()))
}

fn execute(state: &mut State, epoch: ChainEpoch, msg: &Message) -> Result<(), Failure> {
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
fn assign_deadline(actor: &mut MinerActor, n: SectorNumber, busy: u64) -> (u64, u64) {
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

#[allow(clippy::too_many_arguments)]
fn submit_window_post(
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
fn close_deadlines(state: &mut State, epoch: ChainEpoch) {
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
fn elect(state: &mut State, epoch: ChainEpoch, settings: ElectionSettings) {
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

/// The refusal of a call about a miner the devnet does not have.
fn no_miner(miner: ActorId) -> ChainError {
    ChainError::rejected(format!("miner {miner} does not exist on the devnet"))
}

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

#[cfg(test)]
impl Devnet {
    /// Makes a sector active without a PreCommit or PoRep (tests of PoSt, which needs neither).
    /// Answers its deadline and partition.
    fn activate_for_test(&self, miner: ActorId, n: SectorNumber, sealed_cid: Cid) -> (u64, u64) {
        let mut st = self.lock();
        let epoch = st.head.epoch;
        let busy = st.deadline_info(&st.miners[&miner], epoch).index;
        let actor = st.miners.get_mut(&miner).expect("miner on the devnet");
        actor.allocated.insert(n);
        let (deadline, partition) = assign_deadline(actor, n, busy);
        let seal_proof = actor.info.seal_proof_type;
        actor.sectors.insert(
            n,
            SectorOnChainInfo {
                sector_number: n,
                seal_proof,
                sealed_cid,
                deal_ids: vec![],
                activation: epoch,
                expiration: epoch + 10_000_000,
                deadline,
                partition,
                proof_verified: false,
            },
        );
        (deadline, partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DevnetMinerConfig, SectorSize};
    use damocles_manager_api::json::{replica_commitment_cid, Bytes};

    fn devnet(dir: &std::path::Path) -> Arc<Devnet> {
        let cfg = DevnetConfig {
            miners: vec![DevnetMinerConfig {
                actor: 1000,
                sector_size: SectorSize(2048),
            }],
            ..DevnetConfig::default()
        };
        Devnet::open(Kv::open(dir).expect("kv"), &cfg).expect("devnet")
    }

    use crate::util::block_on as run;

    fn pre_commit(n: u64) -> Message {
        Message {
            from: "t01000".into(),
            to: 1000,
            value: 0,
            call: MethodCall::PreCommitSectorBatch2 {
                sectors: vec![PreCommitParams {
                    seal_proof: SealProofType(5),
                    sector_number: n,
                    sealed_cid: replica_commitment_cid(&[3u8; 32]),
                    seal_rand_epoch: 0,
                    deal_ids: vec![],
                    expiration: 10_000_000,
                    unsealed_cid: None,
                }],
            },
        }
    }

    fn status(d: &Devnet, id: &Cid) -> MessageStatus {
        run(d.message_status(id)).expect("status").expect("known")
    }

    #[test]
    fn a_wrong_proof_fails_the_prove_commit_and_the_sector_stays_inactive() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = devnet(dir.path());
        d.produce_block().expect("block 1");
        let msg = pre_commit(7);
        let id = new_message_id(&msg).expect("id");
        run(d.push_message(&id, msg.clone())).expect("push");
        run(d.push_message(&id, msg)).expect("pushing the same message again is a no-op");
        d.produce_block().expect("block");
        assert!(matches!(
            status(&d, &id),
            MessageStatus::Executed { exit_code: 0, .. }
        ));
        assert!(run(d.pre_commit_info(1000, 7)).expect("pc").is_some());
        // A second PreCommit of the same number fails.
        let again = pre_commit(7);
        let id2 = new_message_id(&again).expect("id");
        run(d.push_message(&id2, again)).expect("push");
        d.produce_block().expect("block");
        assert!(matches!(
            status(&d, &id2),
            MessageStatus::Executed {
                exit_code: EXIT_ILLEGAL_ARGUMENT,
                ..
            }
        ));
        for _ in 0..12 {
            d.produce_block().expect("block");
        }
        let prove = Message {
            from: "t01000".into(),
            to: 1000,
            value: 0,
            call: MethodCall::ProveCommitSectors3 {
                activations: vec![SectorActivation {
                    sector_number: 7,
                    deal_ids: vec![],
                    proof: Bytes(vec![0xab; 192]),
                }],
                require_activation_success: false,
            },
        };
        let pid = new_message_id(&prove).expect("id");
        run(d.push_message(&pid, prove)).expect("push");
        d.produce_block().expect("block");
        match status(&d, &pid) {
            MessageStatus::Executed {
                exit_code, error, ..
            } => {
                assert_eq!(exit_code, EXIT_ILLEGAL_ARGUMENT);
                assert!(error.unwrap_or_default().contains("sector 7"));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            run(d.sector_info(1000, 7)).expect("info").is_none(),
            "not activated"
        );
    }

    #[test]
    fn the_chain_continues_after_reopening() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let d = devnet(dir.path());
            for _ in 0..5 {
                d.produce_block().expect("block");
            }
            let msg = pre_commit(9);
            let id = new_message_id(&msg).expect("id");
            run(d.push_message(&id, msg)).expect("push");
        }
        let d = devnet(dir.path());
        assert_eq!(run(d.head()).expect("head").epoch, 5);
        d.produce_block().expect("block");
        assert!(
            run(d.pre_commit_info(1000, 9)).expect("pc").is_some(),
            "the pooled message survived"
        );
        let a = run(d.randomness_from_tickets(
            DomainSeparationTag::SealRandomness,
            3,
            &miner_entropy(1000),
        ))
        .expect("rand");
        let b = run(d.randomness_from_tickets(
            DomainSeparationTag::SealRandomness,
            3,
            &miner_entropy(1000),
        ))
        .expect("rand");
        let c = run(d.randomness_from_beacon(
            DomainSeparationTag::SealRandomness,
            3,
            &miner_entropy(1000),
        ))
        .expect("rand");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(
            run(d.randomness_from_tickets(DomainSeparationTag::SealRandomness, 100, &[])).is_err(),
            "future"
        );
        let dl = run(d.proving_deadline(1000)).expect("deadline");
        assert_eq!(dl.close - dl.open, 20);
        assert_eq!(dl.current_epoch, 6);
        assert!(dl.open <= 6 && 6 < dl.close, "{dl:?}");
        assert_eq!(dl.challenge, dl.open - 5);
    }

    /// Seals a 2 KiB CC sector through PC2 in `dir`; answers (CommR, cache dir, sealed file).
    fn seal_cc(
        dir: &std::path::Path,
        number: u64,
    ) -> ([u8; 32], std::path::PathBuf, std::path::PathBuf) {
        use vc_processors::builtin::tasks::{self as t, Piece, PieceFile, UnpaddedBytesAmount};
        use vc_processors::builtin::BuiltinProcessor;
        use vc_processors::Processor;
        let seal = api::RegisteredSealProof::StackedDrg2KiBV1_1;
        let p = BuiltinProcessor::default();
        let cache = dir.join("cache");
        std::fs::create_dir_all(&cache).expect("cache dir");
        let staged = dir.join("staged");
        let sealed = dir.join("sealed");
        let infos = p
            .process(t::AddPieces {
                seal_proof_type: seal,
                pieces: vec![Piece {
                    piece_file: PieceFile::Pledge,
                    payload_size: 2032,
                    piece_size: UnpaddedBytesAmount(2032),
                }],
                staged_filepath: staged.clone(),
            })
            .expect("add pieces");
        std::fs::write(&sealed, b"").expect("sealed file");
        let pc1 = p
            .process(t::PC1 {
                registered_proof: seal,
                cache_path: cache.clone(),
                in_path: staged,
                out_path: sealed.clone(),
                prover_id: vp::to_prover_id(1000),
                sector_id: api::SectorId::from(number),
                ticket: [7; 32],
                piece_infos: infos,
            })
            .expect("pc1");
        let pc2 = p
            .process(t::PC2 {
                pc1out: pc1,
                cache_dir: cache.clone(),
                sealed_file: sealed.clone(),
            })
            .expect("pc2");
        (pc2.comm_r, cache, sealed)
    }

    #[test]
    fn an_elected_miner_wins_with_a_verified_winning_post_and_loses_without() {
        vc_processors::builtin::params::ensure_test_params(&[
            vc_processors::builtin::params::ParamKind::WinningPoSt,
        ])
        .expect("params");
        let dir = tempfile::tempdir().expect("tempdir");
        let (comm_r, cache, sealed) = seal_cc(&dir.path().join("sector"), 1);
        let cfg = DevnetConfig {
            winning_post_probability: 1.0,
            winning_post_budget_secs: 60,
            miners: vec![DevnetMinerConfig {
                actor: 1000,
                sector_size: SectorSize(2048),
            }],
            ..DevnetConfig::default()
        };
        let d = Devnet::open(Kv::open(&dir.path().join("kv")).expect("kv"), &cfg).expect("devnet");
        d.produce_block().expect("block");
        assert!(
            run(d.pending_elections(1000))
                .expect("elections")
                .is_empty(),
            "no power, no election"
        );
        d.activate_for_test(1000, 1, replica_commitment_cid(&comm_r));
        d.produce_block().expect("block");
        d.produce_block().expect("block");
        let elections = run(d.pending_elections(1000)).expect("elections");
        assert_eq!(
            elections.len(),
            2,
            "elected at every epoch with probability 1"
        );
        let post_proof = vp::winning_post_proof_for_size(2048).expect("post proof");
        let prove = |e: &Election| -> Vec<Bytes> {
            let mut rand = e.randomness;
            rand[31] &= 0x3f;
            let challenged =
                crate::proofs::winning_post_challenged(post_proof, &rand, 1000, &[1]).expect("ch");
            assert_eq!(challenged, vec![1]);
            let replicas = BTreeMap::from([(
                api::SectorId::from(1),
                api::PrivateReplicaInfo::new(post_proof, comm_r, cache.clone(), sealed.clone()),
            )]);
            api::post::generate_winning_post(&rand, &replicas, vp::to_prover_id(1000))
                .expect("winning post")
                .into_iter()
                .map(|(_, p)| Bytes(p))
                .collect()
        };
        let good = prove(&elections[0]);
        assert_eq!(
            run(d.submit_block(1000, elections[0].epoch, good.clone())).expect("submit"),
            BlockOutcome::Won
        );
        // The proof of another epoch's randomness does not verify.
        assert_eq!(
            run(d.submit_block(1000, elections[1].epoch, good)).expect("submit"),
            BlockOutcome::Rejected
        );
        assert_eq!(
            run(d.submit_block(1000, elections[1].epoch, Vec::new())).expect("submit"),
            BlockOutcome::Missed,
            "an election answered once is gone"
        );
        let summary = run(d.summary()).expect("summary");
        assert_eq!((summary["blocks_won"], summary["blocks_rejected"]), (1, 1));
        // Survives a restart; with a budget of one second, unanswered elections are missed.
        drop(d);
        let cfg = DevnetConfig {
            winning_post_budget_secs: 1,
            ..cfg
        };
        let d = Devnet::open(Kv::open(&dir.path().join("kv")).expect("kv"), &cfg).expect("devnet");
        assert_eq!(run(d.summary()).expect("summary")["blocks_won"], 1);
        d.produce_block().expect("block");
        std::thread::sleep(Duration::from_millis(2100));
        d.produce_block().expect("block");
        assert!(run(d.summary()).expect("summary")["blocks_missed"] >= 1);
    }

    fn advance_to(d: &Devnet, epoch: ChainEpoch) {
        while run(d.head()).expect("head").epoch < epoch {
            d.produce_block().expect("block");
        }
    }

    fn send(d: &Devnet, call: MethodCall) -> MessageStatus {
        let msg = Message {
            from: "t01000".into(),
            to: 1000,
            value: 0,
            call,
        };
        let id = crate::chain::new_message_id(&msg).expect("id");
        run(d.push_message(&id, msg)).expect("push");
        d.produce_block().expect("block");
        status(d, &id)
    }

    fn exit_code(s: &MessageStatus) -> (i64, String) {
        match s {
            MessageStatus::Executed {
                exit_code, error, ..
            } => (*exit_code, error.clone().unwrap_or_default()),
            MessageStatus::Pending => panic!("not executed"),
        }
    }

    #[test]
    fn window_post_is_verified_a_missed_deadline_faults_and_a_recovery_heals() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (comm_r, cache, sealed) = seal_cc(&dir.path().join("sector"), 1);
        let cfg = DevnetConfig {
            wpost_challenge_window: 4,
            wpost_challenge_lookback: 2,
            fault_declaration_cutoff: 3,
            miners: vec![DevnetMinerConfig {
                actor: 1000,
                sector_size: SectorSize(2048),
            }],
            ..DevnetConfig::default()
        };
        let d = Devnet::open(Kv::open(&dir.path().join("kv")).expect("kv"), &cfg).expect("devnet");
        d.produce_block().expect("block");
        let (deadline, partition) = d.activate_for_test(1000, 1, replica_commitment_cid(&comm_r));
        let activation = run(d.head()).expect("head").epoch;
        let period = 48 * 4;

        // The first opening of the sector's deadline at which it is due.
        let first_due = {
            let mut e = activation + 1;
            loop {
                let dl = d.deadline_info_at(1000, e);
                if dl.index == deadline && dl.open == e && dl.challenge > activation {
                    break e;
                }
                e += 1;
            }
        };
        let post_proof = vp::window_post_proof_for_size(2048).expect("post proof");
        let replicas = std::collections::BTreeMap::from([(
            api::SectorId::from(1),
            api::PrivateReplicaInfo::new(post_proof, comm_r, cache.clone(), sealed.clone()),
        )]);
        // Submits a WindowPoSt for the deadline opening at `open` (the head is at `open`).
        let prove = |open: ChainEpoch, corrupt: bool| -> MessageStatus {
            let dl = run(d.proving_deadline(1000)).expect("deadline");
            assert_eq!((dl.index, dl.open), (deadline, open));
            let mut rand = run(d.randomness_from_beacon(
                DomainSeparationTag::WindowedPoStChallengeSeed,
                dl.challenge,
                &miner_entropy(1000),
            ))
            .expect("rand");
            rand[31] &= 0x3f;
            let mut proofs =
                api::post::generate_window_post(&rand, &replicas, vp::to_prover_id(1000))
                    .expect("window post");
            assert_eq!(proofs.len(), 1);
            if corrupt {
                proofs[0].1[0] ^= 0xff;
            }
            let commit_epoch = open - 1;
            let commit_rand = run(d.randomness_from_tickets(
                DomainSeparationTag::PoStChainCommit,
                commit_epoch,
                &[],
            ))
            .expect("commit rand");
            send(
                &d,
                MethodCall::SubmitWindowedPoSt {
                    deadline,
                    partitions: vec![PoStPartition {
                        index: partition,
                        skipped: vec![],
                    }],
                    proofs: vec![Bytes(proofs[0].1.clone())],
                    chain_commit_epoch: commit_epoch,
                    chain_commit_rand: Bytes(commit_rand.to_vec()),
                },
            )
        };
        let part =
            || run(d.partitions(1000, deadline)).expect("partitions")[partition as usize].clone();
        let power = || run(d.miner_power(1000)).expect("power");

        // Period 1: proven, so still healthy after the deadline closes.
        advance_to(&d, first_due);
        assert_eq!(exit_code(&prove(first_due, false)), (0, String::new()));
        advance_to(&d, first_due + 4);
        assert!(part().faulty_sectors.is_empty(), "{:?}", part());
        assert_eq!(power().raw_byte_power, 2048);

        // Period 2: missed, so faulty when the deadline closes.
        let second = first_due + period;
        advance_to(&d, second + 4);
        assert_eq!(part().faulty_sectors, vec![1]);
        assert_eq!(power().faulty_sectors, 1);
        assert_eq!(power().raw_byte_power, 0);

        // A recovery for a sector that is not faulty is refused; for sector 1 it is recorded.
        let (code, err) = exit_code(&send(
            &d,
            MethodCall::DeclareFaultsRecovered {
                recoveries: vec![RecoveryDeclaration {
                    deadline,
                    partition,
                    sectors: vec![2],
                }],
            },
        ));
        assert_ne!(code, 0);
        assert!(err.contains("sector 2 is not faulty"), "{err}");
        let declared = send(
            &d,
            MethodCall::DeclareFaultsRecovered {
                recoveries: vec![RecoveryDeclaration {
                    deadline,
                    partition,
                    sectors: vec![1],
                }],
            },
        );
        assert_eq!(exit_code(&declared).0, 0);
        assert_eq!(part().recovering_sectors, vec![1]);

        // Period 3: a corrupted proof is refused; the real one heals the sector.
        let third = second + period;
        advance_to(&d, third);
        let (code, err) = exit_code(&prove(third, true));
        assert_ne!(code, 0, "a corrupted proof must fail");
        assert!(err.contains("WindowPoSt"), "{err}");
        assert_eq!(part().faulty_sectors, vec![1], "still faulty");
        let dl_now = run(d.proving_deadline(1000)).expect("deadline");
        assert_eq!(dl_now.open, third, "still inside the deadline");
        assert_eq!(exit_code(&prove(third, false)), (0, String::new()));
        assert!(part().faulty_sectors.is_empty(), "{:?}", part());
        assert!(part().recovering_sectors.is_empty());
        advance_to(&d, third + 4);
        assert!(part().faulty_sectors.is_empty(), "{:?}", part());
        assert_eq!(power().raw_byte_power, 2048);

        // Proving outside the sector's deadline is refused.
        let (code, err) = exit_code(&prove_outside(&d, deadline, partition));
        assert_ne!(code, 0);
        assert!(err.contains("is not open"), "{err}");
    }

    fn prove_outside(d: &Devnet, deadline: u64, partition: u64) -> MessageStatus {
        let head = run(d.head()).expect("head").epoch;
        send(
            d,
            MethodCall::SubmitWindowedPoSt {
                deadline,
                partitions: vec![PoStPartition {
                    index: partition,
                    skipped: vec![],
                }],
                proofs: vec![Bytes(vec![0; 192])],
                chain_commit_epoch: head - 1,
                chain_commit_rand: Bytes(vec![0; 32]),
            },
        )
    }
}
