//! The embedded devnet: a simulated chain in the manager's process that verifies real proofs.
//!
//! One block per `BlockDelaySecs`. Messages pushed wait in a pool and execute in the next
//! block; a block's effects (actors, deals, receipts, head) are written in one synced RocksDB
//! batch, so a restarted manager continues the same chain. Randomness is deterministic from
//! the configured seed. PreCommits skip deposits; ProveCommits are verified with
//! `verify_seal`; sectors are assigned to deadlines and partitions; a WindowPoSt is verified
//! with `verify_window_post`, and a deadline that closes without a valid proof marks its
//! unproven sectors faulty.
//!
//! The code is split by concern: `state.rs` holds the chain state kept in RocksDB,
//! `miner.rs` the execution of messages on the miner actors (PreCommit, ProveCommit,
//! deadline assignment, recoveries, the closing of deadlines), `post.rs` the verification of
//! WindowPoSt, `election.rs` leader election and the WinningPoSt of submitted blocks,
//! `market.rs` deal publishing, and `chain_impl.rs` the `Chain` implementation the manager
//! talks to. This file holds the [`Devnet`] itself: opening it, producing blocks, randomness.

mod chain_impl;
mod election;
mod market;
mod miner;
mod post;
mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use damocles_manager_api::json::Commitment;
use damocles_manager_api::types::{ActorId, ChainEpoch, SealProofType};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use self::election::{elect, ElectionSettings};
use self::miner::{close_deadlines, execute};
use self::state::{msg_key, MessageRecord, MinerActor, State, STATE_KEY, STATE_VERSION};
use crate::chain::{
    ChainError, ChainMinerInfo, ChainResult, DomainSeparationTag, Head, MessageStatus,
    NetworkParams,
};
use crate::config::DevnetConfig;
use crate::kv::{cf, Kv, Op};
use crate::proofs::{window_post_chain_type, window_post_partition_sectors};

/// The network version the devnet reports.
pub const DEVNET_NETWORK_VERSION: u32 = 23;
/// Exit code of an invalid argument.
pub const EXIT_ILLEGAL_ARGUMENT: i64 = 16;
/// Exit code of a message to an actor that does not exist.
pub const EXIT_NOT_FOUND: i64 = 17;

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

/// The time now, in seconds since the Unix epoch.
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

/// Fails a message with [`EXIT_ILLEGAL_ARGUMENT`] and `msg`.
fn fail<T>(msg: impl Into<String>) -> Result<T, Failure> {
    Err(Failure(EXIT_ILLEGAL_ARGUMENT, msg.into()))
}

/// The refusal of a call about a miner the devnet does not have.
fn no_miner(miner: ActorId) -> ChainError {
    ChainError::rejected(format!("miner {miner} does not exist on the devnet"))
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
