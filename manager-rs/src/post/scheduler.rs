//! The WindowPoSt scheduler (manager-spec §3.2–§3.3).
//!
//! On every head change, each enabled miner has runners for its current deadline and, when it
//! is already active (its challenge drawn), the next one. A runner
//! - **starts** once the head reaches `Challenge + ChallengeConfidence`: it declares the
//!   recoveries of the deadline after next and computes the proofs, partition batch by batch;
//! - **submits** what is ready once the head reaches `Open + SubmitConfidence` (and again for
//!   batches that finish later);
//! - is **aborted** when the head reaches the deadline's close.
//!
//! A batch is retried (5 s apart) until it is proven or the deadline closes. Sectors that fail
//! the check, or that the prover reports as faults, are skipped and the rest proven. Before a
//! proof is kept, the challenge randomness is read again (a changed value means a reorg:
//! prove again) and the proof is verified.
//!
//! The confidences default (0) to damocles' values, capped for short devnet deadlines:
//! `ChallengeConfidence` = min(10, lookback / 2), `SubmitConfidence` = min(4, window / 15).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use damocles_manager_api::json::Bytes;
use damocles_manager_api::types::{ActorId, ChainEpoch, PoStSectorAccesses, SectorNumber};
use tokio_util::sync::CancellationToken;
use vc_processors::builtin::proofs::{api, to_prover_id};
use vc_processors::builtin::tasks::{PoStReplicaInfo, WindowPoSt, WindowPoStOutput};

use super::check::{check_sectors, refuted_faults, CheckItem, CheckLimits};
use super::prover::{prove, ProofRequest, WindowProver};
use super::remote::{fetch_all, RemoteReplica, Scratch};
use super::Located;
use super::SectorLocator;
use crate::chain::outbox::{MessageKind, Outbox, OutboxRecord, Pushed};
use crate::chain::{
    randomness, Chain, DeadlineInfo, Message, MessageStatus, MethodCall, NetworkParams,
    PoStPartition, RecoveryDeclaration,
};
use crate::config::PoStConfig;
use crate::proofs::seal_proof;
use crate::supervisor::{JobHandle, TaskContext};

/// Pause between two attempts of a batch (at most; one epoch when epochs are shorter, so a
/// failed attempt does not cost a short deadline).
const RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// How many times the runner of one deadline is started again after a panic.
const MAX_RUNNER_RESTARTS: u32 = 3;

/// A miner the scheduler proves for.
#[derive(Debug, Clone)]
pub struct PoStMiner {
    /// Actor id.
    pub actor: ActorId,
    /// Its `[Miners.PoSt]`.
    pub cfg: PoStConfig,
}

impl PoStMiner {
    /// The sender of its messages (`Senders`, else `Sender`, else the miner's own address on
    /// the devnet).
    pub fn sender(&self) -> String {
        self.cfg
            .senders
            .first()
            .cloned()
            .or_else(|| self.cfg.sender.clone())
            .unwrap_or_else(|| format!("t0{}", self.actor))
    }
}

/// Effective confidences for a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confidences {
    /// Epochs after the challenge before a runner starts.
    pub challenge: ChainEpoch,
    /// Epochs after the open before proofs are submitted.
    pub submit: ChainEpoch,
}

impl Confidences {
    /// `ChallengeConfidence` and `SubmitConfidence` of `cfg`, with the defaults for 0.
    pub fn new(cfg: &PoStConfig, params: &NetworkParams) -> Self {
        let challenge = if cfg.challenge_confidence > 0 {
            cfg.challenge_confidence
        } else {
            10.min(params.wpost_challenge_lookback / 2)
        };
        let submit = if cfg.submit_confidence > 0 {
            cfg.submit_confidence
        } else {
            4.min(params.wpost_challenge_window / 15)
        };
        Confidences { challenge, submit }
    }
}

/// The deadline after `dl`.
pub fn next_deadline(dl: &DeadlineInfo, params: &NetworkParams) -> DeadlineInfo {
    let index = (dl.index + 1) % params.wpost_period_deadlines.max(1);
    let period_start = if index == 0 {
        dl.period_start + params.wpost_proving_period()
    } else {
        dl.period_start
    };
    DeadlineInfo::new(params, dl.current_epoch, period_start, index)
}

/// What a runner should do at a height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The deadline closed: cancel and forget the runner.
    Abort,
    /// Start computing (once).
    Start,
    /// Submit what is ready (and start if not yet started).
    Submit,
    /// Nothing yet.
    Wait,
}

/// The rule of §3.2 for deadline `dl` at height `h`.
pub fn action(dl: &DeadlineInfo, h: ChainEpoch, conf: Confidences) -> Action {
    if h >= dl.close {
        Action::Abort
    } else if h < dl.challenge {
        Action::Wait
    } else if h >= dl.open + conf.submit {
        Action::Submit
    } else if h >= dl.challenge + conf.challenge {
        Action::Start
    } else {
        Action::Wait
    }
}

/// The challenge seed of the checks of sectors in object stores (a valid field element).
const REMOTE_CHECK_SEED: [u8; 32] = [1; 32];

/// A proven batch, ready to be submitted.
#[derive(Debug, Clone)]
struct ReadyProof {
    partitions: Vec<PoStPartition>,
    proof: Vec<u8>,
    submitted: bool,
    /// From the sector check to the verified proof.
    proved_in: Duration,
}

/// What every step of an attempt at a batch reads: whose deadline, which partitions, the
/// challenge, the metric labels and the deadline's cancellation.
struct BatchCtx<'a> {
    miner: &'a PoStMiner,
    dl: &'a DeadlineInfo,
    batch: &'a [(u64, crate::chain::Partition)],
    /// Cancelled when the deadline closes.
    cancel: &'a CancellationToken,
    /// The challenge randomness, its last byte masked as the proofs take it.
    rand: [u8; 32],
    /// `miner` and `deadline`, for the metrics.
    labels: [(&'static str, String); 2],
}

/// What one attempt at a batch proves, once its sectors are checked.
struct Selection {
    /// The PoSt proof type of the sectors.
    post_proof: api::RegisteredPoStProof,
    /// The sectors skipped, with the reason.
    bad: BTreeMap<SectorNumber, String>,
    /// The sectors to prove that are in object stores.
    remotes: Vec<RemoteReplica>,
    /// The replicas to prove.
    replicas: Vec<PoStReplicaInfo>,
    /// The stores of their files, in the order of `replicas`.
    accesses: Vec<PoStSectorAccesses>,
    /// The partitions of the message, with their skipped sectors.
    partitions: Vec<PoStPartition>,
    /// The numbers of `replicas`.
    proven: Vec<SectorNumber>,
}

/// What fetching the sectors of an attempt that are in object stores gave.
enum Fetched {
    /// Every sector, into this directory (kept until the proof is made).
    Done(Scratch),
    /// These sectors failed, with the reason: the attempt is made again without them.
    Failed(BTreeMap<SectorNumber, String>),
}

/// One (miner, deadline).
struct Runner {
    dl: DeadlineInfo,
    started: bool,
    /// The job proving the deadline, once started.
    job: Option<JobHandle>,
    /// Starts after a panic of the job.
    restarts: u32,
    cancel: CancellationToken,
    ready: Arc<Mutex<Vec<ReadyProof>>>,
    /// Batches being proven (not yet ready nor given up).
    proving: Arc<std::sync::atomic::AtomicUsize>,
}

/// Proves the deadlines of the enabled miners.
pub struct Poster {
    chain: Arc<dyn Chain>,
    outbox: Arc<Outbox>,
    locator: SectorLocator,
    prover: Arc<dyn WindowProver>,
    miners: Vec<PoStMiner>,
    limits: CheckLimits,
}

impl std::fmt::Debug for Poster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poster")
            .field("prover", &self.prover.name())
            .field("miners", &self.miners)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sleeps `d` unless cancelled first; false when cancelled.
async fn pause(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

impl Poster {
    /// A scheduler for `miners` (those with `PoSt.Enabled`) proving with `prover`.
    pub fn new(
        chain: Arc<dyn Chain>,
        outbox: Arc<Outbox>,
        locator: SectorLocator,
        prover: Arc<dyn WindowProver>,
        miners: Vec<PoStMiner>,
        limits: CheckLimits,
    ) -> Arc<Self> {
        Arc::new(Poster {
            chain,
            outbox,
            locator,
            prover,
            miners: miners.into_iter().filter(|m| m.cfg.enabled).collect(),
            limits,
        })
    }

    /// Follows the head until the run is stopped; each head handled is the task's progress.
    /// The runners of deadlines are cancelled with the run, and a new run starts with the
    /// deadlines where they are on chain (sectors already proven are not proven again).
    pub async fn run(self: Arc<Self>, ctx: TaskContext) -> Result<()> {
        tracing::info!(prover = %self.prover.name(), miners = ?self.miners.iter().map(|m| m.actor).collect::<Vec<_>>(), "WindowPoSt scheduler running");
        let stop = ctx.stop().clone();
        let mut heads = self.chain.subscribe();
        let mut runners: BTreeMap<(ActorId, ChainEpoch), Runner> = BTreeMap::new();
        loop {
            let epoch = heads.borrow_and_update().epoch;
            match self.on_head(epoch, &mut runners, &ctx).await {
                Ok(()) => ctx.progress(),
                Err(e) => {
                    tracing::warn!(epoch, error = %format!("{e:#}"), "WindowPoSt scheduling failed at this head")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                changed = heads.changed() => if changed.is_err() { break },
            }
        }
        for r in runners.values() {
            r.cancel.cancel();
        }
        Ok(())
    }

    async fn on_head(
        self: &Arc<Self>,
        h: ChainEpoch,
        runners: &mut BTreeMap<(ActorId, ChainEpoch), Runner>,
        ctx: &TaskContext,
    ) -> Result<()> {
        let stop = ctx.stop();
        let params = self.chain.network_params().await?;
        for miner in &self.miners {
            let conf = Confidences::new(&miner.cfg, &params);
            // A miner whose deadline cannot be read gets no new runner at this head; its
            // existing runners still submit and end below, and other miners go on.
            match tokio::time::timeout(
                Duration::from_secs(10),
                self.chain.proving_deadline(miner.actor),
            )
            .await
            {
                Ok(Ok(current)) => {
                    let next = next_deadline(&current, &params);
                    for dl in [current, next] {
                        if dl.challenge <= h && h < dl.close {
                            runners
                                .entry((miner.actor, dl.open))
                                .or_insert_with(|| Runner {
                                    dl,
                                    started: false,
                                    job: None,
                                    restarts: 0,
                                    cancel: stop.child_token(),
                                    ready: Arc::default(),
                                    proving: Arc::default(),
                                });
                        }
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(miner = miner.actor, error = %format!("{e:#}"), "reading the proving deadline failed")
                }
                Err(_) => {
                    tracing::warn!(
                        miner = miner.actor,
                        "reading the proving deadline timed out"
                    )
                }
            }
            let keys: Vec<_> = runners
                .keys()
                .filter(|(m, _)| *m == miner.actor)
                .copied()
                .collect();
            for key in keys {
                let Some(r) = runners.get_mut(&key) else {
                    continue;
                };
                match action(&r.dl, h, conf) {
                    Action::Abort => {
                        // Read before the cancel lets the batches end.
                        let proving = r.proving.load(std::sync::atomic::Ordering::SeqCst);
                        r.cancel.cancel();
                        let left = lock(&r.ready).iter().filter(|p| !p.submitted).count();
                        if left > 0 || proving > 0 || !r.started {
                            tracing::warn!(
                                miner = miner.actor,
                                deadline = r.dl.index,
                                open = r.dl.open,
                                unsubmitted = left,
                                still_proving = proving,
                                started = r.started,
                                "deadline closed before its proofs were submitted"
                            );
                            super::margin::record(miner.actor, &r.dl, 0.0);
                            if miner.cfg.margin_warn_ratio > 0.0 {
                                warn_thin_margin(miner.actor, &r.dl, 0.0, None);
                            }
                        }
                        runners.remove(&key);
                    }
                    Action::Wait => {}
                    Action::Start | Action::Submit => {
                        if r.job.as_ref().is_some_and(JobHandle::panicked) {
                            r.job = None;
                            if r.restarts < MAX_RUNNER_RESTARTS {
                                // Batches with a proof ready are not proven again.
                                r.restarts += 1;
                                r.started = false;
                                tracing::warn!(
                                    miner = miner.actor,
                                    deadline = r.dl.index,
                                    restart = r.restarts,
                                    "the deadline's runner panicked; starting it again"
                                );
                            } else {
                                tracing::error!(
                                    miner = miner.actor,
                                    deadline = r.dl.index,
                                    "the deadline's runner panicked {MAX_RUNNER_RESTARTS} times after its first start; no more attempts at this deadline"
                                );
                            }
                        }
                        if !r.started {
                            r.started = true;
                            let this = self.clone();
                            let (m, dl, cancel, ready, proving) = (
                                miner.clone(),
                                r.dl.clone(),
                                r.cancel.clone(),
                                r.ready.clone(),
                                r.proving.clone(),
                            );
                            let label = format!("deadline {} of miner {}", dl.index, m.actor);
                            // Recoveries are declared by the first start only.
                            let declare = r.restarts == 0;
                            r.job = Some(ctx.spawn_job(label, async move {
                                this.start(m, dl, cancel, ready, proving, declare).await;
                            }));
                        }
                        if action(&r.dl, h, conf) == Action::Submit {
                            self.submit(miner, &r.dl, &r.ready, ctx).await;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Recoveries for the deadline after next (when `declare`), and the proofs of `dl`,
    /// concurrently.
    async fn start(
        self: Arc<Self>,
        miner: PoStMiner,
        dl: DeadlineInfo,
        cancel: CancellationToken,
        ready: Arc<Mutex<Vec<ReadyProof>>>,
        proving: Arc<std::sync::atomic::AtomicUsize>,
        declare: bool,
    ) {
        tracing::info!(
            miner = miner.actor,
            deadline = dl.index,
            open = dl.open,
            "WindowPoSt runner started"
        );
        let recover = async {
            if !declare {
                return;
            }
            if let Err(e) = self.declare_recoveries(&miner, &dl).await {
                tracing::warn!(miner = miner.actor, deadline = dl.index, error = %format!("{e:#}"), "declaring recoveries failed");
            }
        };
        let proofs = self.generate(&miner, &dl, &cancel, &ready, &proving);
        tokio::join!(recover, proofs);
    }

    async fn declare_recoveries(&self, miner: &PoStMiner, dl: &DeadlineInfo) -> Result<()> {
        let params = self.chain.network_params().await?;
        let decl_index = (dl.index + 2) % params.wpost_period_deadlines.max(1);
        let partitions = self.chain.partitions(miner.actor, decl_index).await?;
        let mut declarations = Vec::new();
        let mut budget = if miner.cfg.max_recover_sector_limit > 0 {
            miner.cfg.max_recover_sector_limit as usize
        } else {
            usize::MAX
        };
        for (idx, p) in partitions.iter().enumerate() {
            let unrecovered: Vec<SectorNumber> = p
                .faulty_sectors
                .iter()
                .filter(|n| !p.recovering_sectors.contains(n))
                .copied()
                .collect();
            if unrecovered.is_empty() || budget == 0 {
                continue;
            }
            let (items, unlocatable) = self.check_items(miner.actor, &unrecovered).await?;
            let (remote, local): (Vec<CheckItem>, Vec<CheckItem>) =
                items.into_iter().partition(|i| i.remote.is_some());
            let mut bad =
                check_sectors(miner.actor, local, miner.cfg.strict_check, &self.limits).await;
            bad.extend(self.check_remote(miner.actor, remote).await);
            let mut good: Vec<SectorNumber> = unrecovered
                .iter()
                .filter(|n| !bad.contains_key(n) && !unlocatable.contains_key(n))
                .copied()
                .collect();
            for (n, why) in bad.iter().chain(unlocatable.iter()) {
                tracing::info!(miner = miner.actor, sector = n, reason = %why, "faulty sector still not provable");
            }
            good.truncate(budget);
            budget -= good.len();
            if !good.is_empty() {
                declarations.push(RecoveryDeclaration {
                    deadline: decl_index,
                    partition: idx as u64,
                    sectors: good,
                });
            }
        }
        if declarations.is_empty() {
            return Ok(());
        }
        let per_message = if miner.cfg.max_partitions_per_recovery_message > 0 {
            miner.cfg.max_partitions_per_recovery_message as usize
        } else {
            declarations.len()
        };
        for chunk in declarations.chunks(per_message) {
            let msg = Message {
                from: miner.sender(),
                to: miner.actor,
                value: 0,
                call: MethodCall::DeclareFaultsRecovered {
                    recoveries: chunk.to_vec(),
                },
            };
            let record = OutboxRecord::new(MessageKind::DeclareRecoveries, msg);
            let (id, pushed) = self.outbox.send(record).await?;
            if let Pushed::Refused(why) = pushed {
                anyhow::bail!("the recovery declaration {id} was refused: {why}");
            }
            tracing::info!(miner = miner.actor, deadline = decl_index, message = %id, recoveries = ?chunk, "declared recoveries");
            metrics::counter!("damocles_manager_post_recoveries_declared_total", "miner" => miner.actor.to_string())
                .increment(chunk.iter().map(|d| d.sectors.len() as u64).sum());
        }
        Ok(())
    }

    /// Replicas to check for `numbers`, and the sectors that cannot even be located.
    async fn check_items(
        &self,
        miner: ActorId,
        numbers: &[SectorNumber],
    ) -> Result<(Vec<CheckItem>, BTreeMap<SectorNumber, String>)> {
        let on_chain: BTreeMap<SectorNumber, _> = self
            .chain
            .miner_sectors(miner)
            .await?
            .into_iter()
            .map(|s| (s.sector_number, s))
            .collect();
        let mut items = Vec::new();
        let mut unlocatable = BTreeMap::new();
        for n in numbers {
            let Some(info) = on_chain.get(n) else {
                unlocatable.insert(*n, "not on chain".to_string());
                continue;
            };
            let item = (|| -> Result<CheckItem> {
                let seal = seal_proof(info.seal_proof)?;
                let post = window_post_proof_for(seal)?;
                let (located, accesses) = self.locator.replica(miner, info)?;
                let (replica, remote) = match located {
                    Located::Local(r) => (r, None),
                    Located::Remote(r) => (
                        PoStReplicaInfo {
                            sector_id: r.sector_id,
                            comm_r: r.comm_r,
                            cache_dir: Default::default(),
                            sealed_file: Default::default(),
                        },
                        Some(r),
                    ),
                };
                Ok(CheckItem {
                    replica,
                    accesses,
                    remote,
                    seal_proof: seal,
                    post_proof: post,
                })
            })();
            match item {
                Ok(i) => items.push(i),
                Err(e) => {
                    unlocatable.insert(*n, format!("{e:#}"));
                }
            }
        }
        Ok((items, unlocatable))
    }

    async fn generate(
        &self,
        miner: &PoStMiner,
        dl: &DeadlineInfo,
        cancel: &CancellationToken,
        ready: &Arc<Mutex<Vec<ReadyProof>>>,
        proving: &std::sync::atomic::AtomicUsize,
    ) {
        // The partitions and the partition size, read again until they come or the deadline
        // closes.
        let (partitions, partition_sectors) = loop {
            let read = async {
                let partitions = self.chain.partitions(miner.actor, dl.index).await?;
                let info = self
                    .chain
                    .miner_info(miner.actor)
                    .await?
                    .ok_or_else(|| anyhow!("miner {} is not on chain", miner.actor))?;
                anyhow::Ok((partitions, info.window_post_partition_sectors))
            };
            match read.await {
                Ok(r) => break r,
                Err(e) => {
                    tracing::warn!(miner = miner.actor, deadline = dl.index, error = %format!("{e:#}"), "reading the partitions failed; retrying");
                    if !pause(cancel, self.retry_pause().await).await {
                        return;
                    }
                }
            }
        };
        if partitions.iter().all(|p| p.all_sectors.is_empty()) {
            tracing::debug!(
                miner = miner.actor,
                deadline = dl.index,
                "no sectors in this deadline"
            );
            return;
        }
        let per_batch = if miner.cfg.max_partitions_per_po_st_message > 0 {
            miner.cfg.max_partitions_per_po_st_message as usize
        } else {
            max_post_partitions(partition_sectors)
        };
        let indexed: Vec<(u64, crate::chain::Partition)> = partitions
            .into_iter()
            .enumerate()
            .map(|(i, p)| (i as u64, p))
            .collect();
        // A runner started again after a panic does not prove again what it has ready.
        let batches = batches_to_prove(&indexed, per_batch, &lock(ready));
        // Counted until each batch is proven or given up, so a deadline that closes while
        // they are still being proven is reported as missed; a panic gives the rest back.
        let pending = PendingBatches::new(proving, batches.len());
        if miner.cfg.parallel {
            // `[Miners.PoSt] Parallel`: every batch of the deadline at once.
            futures::future::join_all(batches.into_iter().map(|batch| async {
                self.prove_until_done(miner, dl, batch, cancel, ready).await;
                pending.finish_one();
            }))
            .await;
        } else {
            for batch in batches {
                self.prove_until_done(miner, dl, batch, cancel, ready).await;
                pending.finish_one();
            }
        }
    }

    /// The pause before another attempt: [`RETRY_INTERVAL`], or one epoch when epochs are
    /// shorter.
    async fn retry_pause(&self) -> Duration {
        match self.chain.network_params().await {
            Ok(p) => RETRY_INTERVAL.min(Duration::from_secs(p.block_delay_secs.max(1))),
            Err(_) => RETRY_INTERVAL,
        }
    }

    /// Proves one batch, retrying until it is proven, has nothing to prove, or the deadline
    /// closes.
    async fn prove_until_done(
        &self,
        miner: &PoStMiner,
        dl: &DeadlineInfo,
        batch: &[(u64, crate::chain::Partition)],
        cancel: &CancellationToken,
        ready: &Arc<Mutex<Vec<ReadyProof>>>,
    ) {
        let mut skipped_by_prover = BTreeSet::new();
        loop {
            if cancel.is_cancelled() {
                return;
            }
            match self
                .prove_batch(miner, dl, batch, &mut skipped_by_prover, cancel)
                .await
            {
                Ok(Some(p)) => {
                    lock(ready).push(p);
                    return;
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(miner = miner.actor, deadline = dl.index, error = %format!("{e:#}"), "WindowPoSt batch failed; retrying");
                    if !pause(cancel, self.retry_pause().await).await {
                        return;
                    }
                }
            }
        }
    }

    /// One attempt at a batch: `Ok(None)` when nothing in it can be proven. Sectors the
    /// prover reports as faults are added to `skipped_by_prover` and the attempt repeated.
    async fn prove_batch(
        &self,
        miner: &PoStMiner,
        dl: &DeadlineInfo,
        batch: &[(u64, crate::chain::Partition)],
        skipped_by_prover: &mut BTreeSet<SectorNumber>,
        cancel: &CancellationToken,
    ) -> Result<Option<ReadyProof>> {
        let labels = [
            ("miner", miner.actor.to_string()),
            ("deadline", dl.index.to_string()),
        ];
        let mut rand = self.challenge_rand(miner.actor, dl).await?;
        rand[31] &= 0x3f;
        let b = BatchCtx {
            miner,
            dl,
            batch,
            cancel,
            rand,
            labels,
        };
        let mut fetch_failures: BTreeMap<SectorNumber, String> = BTreeMap::new();
        loop {
            let to_prove = sectors_to_prove(batch);
            if to_prove.is_empty() {
                tracing::info!(
                    miner = miner.actor,
                    deadline = dl.index,
                    "every sector of the batch is faulty or already proven; nothing to prove"
                );
                return Ok(None);
            }
            let checked_at = Instant::now();
            let Some(Selection {
                post_proof,
                bad,
                remotes,
                mut replicas,
                accesses,
                partitions,
                proven,
            }) = self
                .select_replicas(
                    &b,
                    &to_prove,
                    checked_at,
                    skipped_by_prover,
                    &fetch_failures,
                )
                .await?
            else {
                return Ok(None);
            };
            // Kept until the proof is made; the fetched files go with it.
            // A prover that reads the stores itself fetches what it needs.
            let _scratch = if remotes.is_empty() || !self.prover.reads_local_files() {
                None
            } else {
                match self
                    .fetch_remotes(&b, post_proof, &remotes, &proven, &mut replicas)
                    .await?
                {
                    Fetched::Done(scratch) => Some(scratch),
                    Fetched::Failed(failed) => {
                        fetch_failures.extend(failed);
                        continue;
                    }
                }
            };
            let req = proof_request(&b, post_proof, &replicas, &partitions, accesses);
            let proved_at = Instant::now();
            let sent = req.clone();
            let (out, _running) = self.run_prover(&b, req, proven.len()).await?;
            metrics::histogram!("damocles_manager_post_proof_seconds", &b.labels)
                .record(proved_at.elapsed().as_secs_f64());
            if !out.faults.is_empty() {
                let claimed: BTreeSet<SectorNumber> = out
                    .faults
                    .iter()
                    .filter(|n| proven.contains(n))
                    .copied()
                    .collect();
                let refuted = self
                    .refute_faults(&b, post_proof, &claimed, &replicas, &remotes)
                    .await?;
                if !refuted.is_empty() {
                    metrics::counter!("damocles_manager_post_refuted_faults_total", &b.labels)
                        .increment(refuted.len() as u64);
                    self.prover.proof_rejected(&sent);
                    bail!(
                        "the prover {} reported sectors {refuted:?} faulty, but the manager made \
                         their vanilla proofs itself; the answer is not trusted and the batch \
                         is proven again",
                        self.prover.name()
                    );
                }
                tracing::warn!(miner = miner.actor, deadline = dl.index, faults = ?out.faults, "the prover reported faulty sectors and the manager's check agrees; proving without them");
                let before = skipped_by_prover.len();
                // Only sectors of this task count; anything else is the prover's mistake.
                skipped_by_prover.extend(out.faults.iter().filter(|n| proven.contains(n)));
                if skipped_by_prover.len() == before {
                    bail!("the prover reports the same faults again: {:?}", out.faults);
                }
                continue;
            }
            let Some(proof) = out.proofs.into_iter().next() else {
                self.prover.proof_rejected(&sent);
                bail!("the prover returned no proof");
            };
            let proof_bytes = proof.0;
            self.verify_proof(&b, post_proof, &replicas, &proof_bytes, &sent)
                .await?;
            record_proven(&b, &proven, &bad, proved_at);
            return Ok(Some(ReadyProof {
                partitions,
                proof: proof_bytes,
                submitted: false,
                proved_in: checked_at.elapsed(),
            }));
        }
    }

    /// Of the sectors the prover reported faulty (`claimed`), those the manager proves
    /// itself for this attempt's challenges; sectors in object stores that the prover read
    /// itself are fetched for the check, and a sector whose fetch fails stays faulty.
    async fn refute_faults(
        &self,
        b: &BatchCtx<'_>,
        post_proof: api::RegisteredPoStProof,
        claimed: &BTreeSet<SectorNumber>,
        replicas: &[PoStReplicaInfo],
        remotes: &[RemoteReplica],
    ) -> Result<Vec<SectorNumber>> {
        let mut checked: Vec<PoStReplicaInfo> = replicas
            .iter()
            .filter(|r| claimed.contains(&r.sector_id))
            .cloned()
            .collect();
        let without_paths = |checked: &[PoStReplicaInfo], n: SectorNumber| {
            checked
                .iter()
                .any(|r| r.sector_id == n && r.sealed_file.as_os_str().is_empty())
        };
        let mut to_fetch: Vec<RemoteReplica> = remotes
            .iter()
            .filter(|r| claimed.contains(&r.sector_id) && without_paths(&checked, r.sector_id))
            .cloned()
            .collect();
        // Kept until the check is done: the fetched files go with it.
        let mut _scratch = None;
        while !to_fetch.is_empty() {
            let numbers: Vec<SectorNumber> = to_fetch.iter().map(|r| r.sector_id).collect();
            match self
                .fetch_remotes(b, post_proof, &to_fetch, &numbers, &mut checked)
                .await?
            {
                Fetched::Done(scratch) => {
                    _scratch = Some(scratch);
                    break;
                }
                Fetched::Failed(failed) => to_fetch.retain(|r| !failed.contains_key(&r.sector_id)),
            }
        }
        checked.retain(|r| !r.sealed_file.as_os_str().is_empty());
        Ok(refuted_faults(b.miner.actor, post_proof, checked, b.rand, &self.limits).await)
    }

    /// Checks the sectors of `to_prove` and picks what the attempt proves: the sectors less
    /// those that fail the check, that the prover reported or whose fetch failed (each logged);
    /// `None` when nothing is left.
    async fn select_replicas(
        &self,
        b: &BatchCtx<'_>,
        to_prove: &[SectorNumber],
        checked_at: Instant,
        skipped_by_prover: &BTreeSet<SectorNumber>,
        fetch_failures: &BTreeMap<SectorNumber, String>,
    ) -> Result<Option<Selection>> {
        let (miner, dl) = (b.miner, b.dl);
        let (items, mut bad) = self.check_items(miner.actor, to_prove).await?;
        let post_proof = match items.first() {
            Some(i) => i.post_proof,
            None => {
                tracing::warn!(miner = miner.actor, deadline = dl.index, unlocatable = ?bad, "no sector of the batch can be located");
                return Ok(None);
            }
        };
        // Sectors in object stores are checked by fetching what the proof reads.
        let local: Vec<CheckItem> = items
            .iter()
            .filter(|i| i.remote.is_none())
            .cloned()
            .collect();
        let checked = check_sectors(miner.actor, local, miner.cfg.strict_check, &self.limits).await;
        metrics::histogram!("damocles_manager_post_check_seconds", &b.labels)
            .record(checked_at.elapsed().as_secs_f64());
        bad.extend(checked);
        for n in skipped_by_prover.iter() {
            bad.entry(*n)
                .or_insert_with(|| "reported faulty by the prover".into());
        }
        for (n, why) in fetch_failures {
            bad.entry(*n).or_insert_with(|| why.clone());
        }
        for (n, why) in &bad {
            tracing::warn!(miner = miner.actor, deadline = dl.index, sector = n, reason = %why, "sector skipped in this WindowPoSt");
        }
        let remotes: Vec<RemoteReplica> = items
            .iter()
            .filter(|i| !bad.contains_key(&i.replica.sector_id))
            .filter_map(|i| i.remote.clone())
            .collect();
        let (replicas, accesses): (Vec<_>, Vec<_>) = items
            .into_iter()
            .filter(|i| !bad.contains_key(&i.replica.sector_id))
            .map(|i| (i.replica, i.accesses))
            .unzip();
        if replicas.is_empty() {
            tracing::warn!(
                miner = miner.actor,
                deadline = dl.index,
                "nothing to prove in this batch"
            );
            metrics::counter!("damocles_manager_post_sectors_skipped_total", &b.labels)
                .increment(bad.len() as u64);
            return Ok(None);
        }
        let partitions: Vec<PoStPartition> = b
            .batch
            .iter()
            .filter(|(_, p)| {
                p.all_sectors
                    .iter()
                    .any(|n| replicas.iter().any(|r| r.sector_id == *n))
            })
            .map(|(idx, p)| PoStPartition {
                index: *idx,
                skipped: p
                    .all_sectors
                    .iter()
                    .filter(|n| bad.contains_key(n))
                    .copied()
                    .collect(),
            })
            .collect();
        let proven: Vec<SectorNumber> = replicas.iter().map(|r| r.sector_id).collect();
        Ok(Some(Selection {
            post_proof,
            bad,
            remotes,
            replicas,
            accesses,
            partitions,
            proven,
        }))
    }

    /// Fetches what the proof reads of the sectors in object stores into a new scratch
    /// directory and puts the fetched replicas in `replicas`; or answers the sectors whose
    /// fetch failed.
    async fn fetch_remotes(
        &self,
        b: &BatchCtx<'_>,
        post_proof: api::RegisteredPoStProof,
        remotes: &[RemoteReplica],
        proven: &[SectorNumber],
        replicas: &mut [PoStReplicaInfo],
    ) -> Result<Fetched> {
        let (miner, dl, rand) = (b.miner, b.dl, b.rand);
        let fetched_at = Instant::now();
        let scratch = Scratch::new(&self.locator.scratch_root)?;
        let fetch = {
            let (remotes, all, root) = (remotes.to_vec(), proven.to_vec(), scratch);
            let miner_id = miner.actor;
            tokio::task::spawn_blocking(move || {
                fetch_all(&remotes, &all, post_proof, &rand, miner_id, &root).map(|r| (r, root))
            })
        };
        let ((fetched, failed), scratch) = tokio::select! {
            r = fetch => r.map_err(|e| anyhow!("fetch task: {e}"))??,
            _ = b.cancel.cancelled() => bail!("the deadline closed while fetching"),
        };
        if !failed.is_empty() {
            return Ok(Fetched::Failed(failed));
        }
        let mut bytes = 0;
        for (fetched, stats) in fetched {
            metrics::histogram!("damocles_manager_post_fetched_bytes_per_sector", &b.labels)
                .record(stats.total() as f64);
            bytes += stats.total();
            if let Some(r) = replicas
                .iter_mut()
                .find(|r| r.sector_id == fetched.sector_id)
            {
                *r = fetched;
            }
        }
        metrics::counter!("damocles_manager_post_fetched_bytes_total", &b.labels).increment(bytes);
        tracing::info!(
            miner = miner.actor,
            deadline = dl.index,
            sectors = remotes.len(),
            bytes,
            ms = fetched_at.elapsed().as_millis() as u64,
            "fetched what the proof reads of the sectors in object stores"
        );
        Ok(Fetched::Done(scratch))
    }

    /// Runs the prover on `req` (of `sectors` sectors), listed as running for margin warnings
    /// until the returned activity is dropped; fails when the deadline closes first.
    async fn run_prover(
        &self,
        b: &BatchCtx<'_>,
        req: ProofRequest,
        sectors: usize,
    ) -> Result<(WindowPoStOutput, super::margin::Activity)> {
        let running = super::margin::begin(format!(
            "WindowPoSt of miner {} deadline {}, {} sectors",
            b.miner.actor, b.dl.index, sectors
        ));
        let out = tokio::select! {
            out = prove(self.prover.clone(), req) => {
                out.with_context(|| format!("prover {}", self.prover.name()))?
            }
            _ = b.cancel.cancelled() => bail!("the deadline closed while proving"),
        };
        Ok((out, running))
    }

    /// Checks a proof before it is kept: the deadline still open, the challenge randomness
    /// unchanged (else a reorg: prove again) and the proof verifying (else the prover is told).
    async fn verify_proof(
        &self,
        b: &BatchCtx<'_>,
        post_proof: api::RegisteredPoStProof,
        replicas: &[PoStReplicaInfo],
        proof_bytes: &[u8],
        sent: &ProofRequest,
    ) -> Result<()> {
        let (miner, dl, rand) = (b.miner, b.dl, b.rand);
        if b.cancel.is_cancelled() {
            bail!("the deadline closed while proving");
        }
        let mut again = self.challenge_rand(miner.actor, dl).await?;
        again[31] &= 0x3f;
        if again != rand {
            bail!("the challenge randomness changed (reorg); proving again");
        }
        let public = crate::proofs::public_replicas(post_proof, replicas);
        let valid = {
            let proof_bytes = proof_bytes.to_vec();
            let miner_id = miner.actor;
            tokio::task::spawn_blocking(move || {
                vc_processors::builtin::proofs::guard("verify_window_post", || {
                    api::post::verify_window_post(
                        &rand,
                        &[(post_proof, &proof_bytes)],
                        &public,
                        to_prover_id(miner_id),
                    )
                })
            })
            .await
            .map_err(|e| anyhow!("verification task: {e}"))?
            .unwrap_or_else(|e| {
                tracing::warn!(miner = miner.actor, deadline = dl.index, error = %format!("{e:#}"), "the proof cannot be verified");
                false
            })
        };
        if !valid {
            self.prover.proof_rejected(sent);
            bail!("the proof does not verify");
        }
        Ok(())
    }

    /// Checks sectors of object stores by fetching what a proof with a fixed seed reads;
    /// answers those that fail, with the reason.
    async fn check_remote(
        &self,
        miner: ActorId,
        items: Vec<CheckItem>,
    ) -> BTreeMap<SectorNumber, String> {
        let Some(post_proof) = items.first().map(|i| i.post_proof) else {
            return BTreeMap::new();
        };
        let remotes: Vec<RemoteReplica> = items.iter().filter_map(|i| i.remote.clone()).collect();
        let numbers: Vec<SectorNumber> = remotes.iter().map(|r| r.sector_id).collect();
        let root = self.locator.scratch_root.clone();
        let checked = tokio::time::timeout(
            self.limits.total_timeout,
            tokio::task::spawn_blocking(move || {
                let scratch = Scratch::new(&root)?;
                fetch_all(
                    &remotes,
                    &numbers,
                    post_proof,
                    &REMOTE_CHECK_SEED,
                    miner,
                    &scratch,
                )
                .map(|(_, failed)| failed)
            }),
        )
        .await;
        let why = match checked {
            Ok(Ok(Ok(failed))) => return failed,
            Ok(Ok(Err(e))) => format!("checking the sectors in object stores: {e:#}"),
            Ok(Err(e)) => format!("the check task failed: {e}"),
            Err(_) => format!(
                "the check of the sectors in object stores took more than {:?}",
                self.limits.total_timeout
            ),
        };
        items
            .iter()
            .map(|i| (i.replica.sector_id, why.clone()))
            .collect()
    }

    async fn challenge_rand(&self, miner: ActorId, dl: &DeadlineInfo) -> Result<[u8; 32]> {
        Ok(randomness::window_post_challenge(self.chain.as_ref(), miner, dl.challenge).await?)
    }

    /// Sends every ready proof of `dl` not sent yet.
    async fn submit(
        &self,
        miner: &PoStMiner,
        dl: &DeadlineInfo,
        ready: &Mutex<Vec<ReadyProof>>,
        ctx: &TaskContext,
    ) {
        let todo: Vec<(usize, ReadyProof)> = lock(ready)
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.submitted)
            .map(|(i, p)| (i, p.clone()))
            .collect();
        for (i, p) in todo {
            match self.submit_one(miner, dl, &p).await {
                Ok((id, Pushed::Refused(why))) => {
                    // The same proof would be refused again: it is given up.
                    if let Some(entry) = lock(ready).get_mut(i) {
                        entry.submitted = true;
                    }
                    metrics::counter!("damocles_manager_post_submits_total", "miner" => miner.actor.to_string(), "deadline" => dl.index.to_string(), "result" => "refused").increment(1);
                    tracing::error!(miner = miner.actor, deadline = dl.index, message = %id, partitions = ?p.partitions, reason = %why, "WindowPoSt refused by the chain");
                }
                Ok((id, _)) => {
                    if let Some(entry) = lock(ready).get_mut(i) {
                        entry.submitted = true;
                    }
                    let head = self.chain.head().await.map(|h| h.epoch).ok();
                    let after_open = head.map_or(-1, |h| h - dl.open);
                    metrics::histogram!("damocles_manager_post_submit_after_open_epochs", "miner" => miner.actor.to_string(), "deadline" => dl.index.to_string())
                        .record(after_open as f64);
                    let margin = head.map(|h| super::margin::submit_margin(dl, h));
                    if let Some(margin) = margin {
                        super::margin::record(miner.actor, dl, margin);
                    }
                    tracing::info!(miner = miner.actor, deadline = dl.index, message = %id, partitions = ?p.partitions, epochs_after_open = after_open, margin = ?margin, "WindowPoSt submitted");
                    if let Some(margin) = margin.filter(|m| *m < miner.cfg.margin_warn_ratio) {
                        warn_thin_margin(miner.actor, dl, margin, Some(p.proved_in));
                    }
                    let chain = self.chain.clone();
                    let actor = miner.actor;
                    let deadline = dl.index;
                    ctx.spawn_lasting_job(
                        format!("result of WindowPoSt {id}"),
                        watch_result(chain, actor, deadline, id),
                    );
                }
                Err(e) => {
                    tracing::warn!(miner = miner.actor, deadline = dl.index, error = %format!("{e:#}"), "recording the WindowPoSt failed; retrying at the next head");
                }
            }
        }
    }

    async fn submit_one(
        &self,
        miner: &PoStMiner,
        dl: &DeadlineInfo,
        p: &ReadyProof,
    ) -> Result<(damocles_manager_api::json::Cid, Pushed)> {
        let commit_epoch = dl.challenge;
        let commit_rand = randomness::window_post_commit(self.chain.as_ref(), commit_epoch).await?;
        let msg = Message {
            from: miner.sender(),
            to: miner.actor,
            value: 0,
            call: MethodCall::SubmitWindowedPoSt {
                deadline: dl.index,
                partitions: p.partitions.clone(),
                proofs: vec![Bytes(p.proof.clone())],
                chain_commit_epoch: commit_epoch,
                chain_commit_rand: Bytes(commit_rand.to_vec()),
            },
        };
        // Of no use once the deadline has closed: the resender drops it then.
        let record = OutboxRecord {
            expires: Some(dl.close - 1),
            ..OutboxRecord::new(MessageKind::WindowPoSt, msg)
        };
        self.outbox.send(record).await
    }
}

/// The sectors of `batch` to prove: neither faulty (unless recovering) nor already proven in
/// this deadline.
/// The batches of `per_batch` partitions of a deadline that have no proof in `ready` yet.
fn batches_to_prove<'a>(
    indexed: &'a [(u64, crate::chain::Partition)],
    per_batch: usize,
    ready: &[ReadyProof],
) -> Vec<&'a [(u64, crate::chain::Partition)]> {
    indexed
        .chunks(per_batch.max(1))
        .filter(|batch| {
            !ready.iter().any(|p| {
                p.partitions
                    .iter()
                    .any(|pp| batch.iter().any(|(i, _)| *i == pp.index))
            })
        })
        .collect()
}

/// Batches of a runner counted in its `proving` count until each is proven or given up; what
/// is left is taken back when the runner ends, a panic included.
struct PendingBatches<'a> {
    proving: &'a std::sync::atomic::AtomicUsize,
    left: std::sync::atomic::AtomicUsize,
}

impl<'a> PendingBatches<'a> {
    fn new(proving: &'a std::sync::atomic::AtomicUsize, count: usize) -> Self {
        proving.fetch_add(count, std::sync::atomic::Ordering::SeqCst);
        PendingBatches {
            proving,
            left: std::sync::atomic::AtomicUsize::new(count),
        }
    }

    /// One batch is proven or given up.
    fn finish_one(&self) {
        let taken = self
            .left
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok();
        if taken {
            self.proving
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

impl Drop for PendingBatches<'_> {
    fn drop(&mut self) {
        let left = self.left.swap(0, std::sync::atomic::Ordering::SeqCst);
        self.proving
            .fetch_sub(left, std::sync::atomic::Ordering::SeqCst);
    }
}

fn sectors_to_prove(batch: &[(u64, crate::chain::Partition)]) -> Vec<SectorNumber> {
    let mut to_prove = Vec::new();
    for (_, p) in batch {
        for n in &p.all_sectors {
            let faulty = p.faulty_sectors.contains(n) && !p.recovering_sectors.contains(n);
            // Already proven in this deadline (a proof sent before a restart).
            if !faulty && !p.proven_sectors.contains(n) {
                to_prove.push(*n);
            }
        }
    }
    to_prove
}

/// The prover's request for `replicas`, proving `partitions` of the attempt's deadline.
fn proof_request(
    b: &BatchCtx<'_>,
    post_proof: api::RegisteredPoStProof,
    replicas: &[PoStReplicaInfo],
    partitions: &[PoStPartition],
    accesses: Vec<PoStSectorAccesses>,
) -> ProofRequest {
    let task = WindowPoSt {
        miner_id: b.miner.actor,
        proof_type: post_proof,
        replicas: replicas.to_vec(),
        seed: b.rand,
    };
    ProofRequest {
        task,
        deadline: b.dl.index,
        partitions: partitions.iter().map(|p| p.index).collect(),
        accesses,
        cancel: b.cancel.clone(),
    }
}

/// Counts the sectors a verified proof of the batch proved and skipped, and logs it.
fn record_proven(
    b: &BatchCtx<'_>,
    proven: &[SectorNumber],
    bad: &BTreeMap<SectorNumber, String>,
    proved_at: Instant,
) {
    metrics::counter!("damocles_manager_post_sectors_proven_total", &b.labels)
        .increment(proven.len() as u64);
    metrics::counter!("damocles_manager_post_sectors_skipped_total", &b.labels)
        .increment(bad.len() as u64);
    tracing::info!(miner = b.miner.actor, deadline = b.dl.index, sectors = ?proven, skipped = ?bad.keys().collect::<Vec<_>>(), ms = proved_at.elapsed().as_millis() as u64, "WindowPoSt proven and verified");
}

/// Warns (off the runtime: it samples the busiest processes) that `dl` was submitted with only
/// `margin` of its window left, or missed (`proved_in` unknown), naming what was running.
fn warn_thin_margin(miner: ActorId, dl: &DeadlineInfo, margin: f64, proved_in: Option<Duration>) {
    let (index, open, close) = (dl.index, dl.open, dl.close);
    tokio::task::spawn_blocking(move || {
        let running = super::margin::describe_running();
        match proved_in {
            Some(took) => tracing::warn!(
                miner,
                deadline = index,
                open,
                close,
                margin = format!("{margin:.2}"),
                proof_secs = format!("{:.1}", took.as_secs_f64()),
                running = %running,
                "WindowPoSt margin under MarginWarnRatio: the proof came close to the end of its deadline"
            ),
            None => tracing::warn!(
                miner,
                deadline = index,
                open,
                close,
                running = %running,
                "WindowPoSt margin under MarginWarnRatio: the deadline closed without its proof"
            ),
        }
    });
}

/// Logs (and counts) how a submitted WindowPoSt ended; gives up after 30 minutes.
async fn watch_result(
    chain: Arc<dyn Chain>,
    miner: ActorId,
    deadline: u64,
    id: damocles_manager_api::json::Cid,
) {
    let until = Instant::now() + Duration::from_secs(30 * 60);
    let mut heads = chain.subscribe();
    while Instant::now() < until {
        match chain.message_status(&id).await {
            Ok(Some(MessageStatus::Executed {
                exit_code, error, ..
            })) => {
                let result = if exit_code == 0 { "ok" } else { "failed" };
                metrics::counter!("damocles_manager_post_submits_total", "miner" => miner.to_string(), "deadline" => deadline.to_string(), "result" => result).increment(1);
                if exit_code == 0 {
                    tracing::info!(miner, deadline, message = %id, "WindowPoSt landed");
                } else {
                    tracing::error!(miner, deadline, message = %id, exit_code, error = ?error, "WindowPoSt failed on chain");
                }
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(message = %id, error = %format!("{e:#}"), "message status")
            }
        }
        if tokio::time::timeout(Duration::from_secs(60), heads.changed())
            .await
            .is_ok_and(|r| r.is_err())
        {
            return;
        }
    }
    tracing::warn!(miner, deadline, message = %id, "no result for the WindowPoSt after 30 minutes");
}

/// Partitions one WindowPoSt message may prove: the network's addressed-sectors limit
/// (25 000) over the partition size, and at most 3 000 declarations.
pub fn max_post_partitions(partition_sectors: u64) -> usize {
    (25_000 / partition_sectors.max(1)).clamp(1, 3_000) as usize
}

/// The WindowPoSt proof of a seal proof (the `…V1_2` API types for the chain's `…V1_1`).
fn window_post_proof_for(seal: api::RegisteredSealProof) -> Result<api::RegisteredPoStProof> {
    vc_processors::builtin::proofs::window_post_proof_for_size(u64::from(seal.sector_size()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> NetworkParams {
        NetworkParams {
            network_name: "t".into(),
            block_delay_secs: 1,
            pre_commit_challenge_delay: 10,
            network_version: 23,
            wpost_period_deadlines: 4,
            wpost_challenge_window: 8,
            wpost_challenge_lookback: 5,
            fault_declaration_cutoff: 6,
            max_prove_commit_duration: 100,
        }
    }

    fn dl(index: u64, open: ChainEpoch) -> DeadlineInfo {
        DeadlineInfo {
            current_epoch: open,
            period_start: open - index as ChainEpoch * 8,
            index,
            open,
            close: open + 8,
            challenge: open - 5,
            fault_cutoff: open - 6,
        }
    }

    #[test]
    fn confidences_default_to_damocles_values_capped_by_the_network() {
        let mut mainnet = params();
        mainnet.wpost_challenge_window = 60;
        mainnet.wpost_challenge_lookback = 20;
        let c = Confidences::new(&PoStConfig::default(), &mainnet);
        assert_eq!((c.challenge, c.submit), (10, 4));
        let c = Confidences::new(&PoStConfig::default(), &params());
        assert_eq!((c.challenge, c.submit), (2, 0));
        let cfg = PoStConfig {
            challenge_confidence: 1,
            submit_confidence: 3,
            ..PoStConfig::default()
        };
        let c = Confidences::new(&cfg, &params());
        assert_eq!((c.challenge, c.submit), (1, 3));
    }

    #[test]
    fn runners_start_after_the_challenge_submit_after_the_open_and_end_at_the_close() {
        let conf = Confidences {
            challenge: 2,
            submit: 1,
        };
        let d = dl(1, 108);
        assert_eq!(action(&d, 102, conf), Action::Wait, "before the challenge");
        assert_eq!(action(&d, 104, conf), Action::Wait, "challenge + 1");
        assert_eq!(action(&d, 105, conf), Action::Start);
        assert_eq!(action(&d, 108, conf), Action::Start, "open, submit waits");
        assert_eq!(action(&d, 109, conf), Action::Submit);
        assert_eq!(action(&d, 115, conf), Action::Submit);
        assert_eq!(action(&d, 116, conf), Action::Abort);
    }

    #[test]
    fn the_next_deadline_wraps_into_the_next_period() {
        let p = params();
        let last = dl(3, 124);
        let next = next_deadline(&last, &p);
        assert_eq!(next.index, 0);
        assert_eq!(next.open, 132);
        assert_eq!(next.period_start, last.period_start + 32);
        assert_eq!((next.challenge, next.close), (127, 140));
        let n1 = next_deadline(&dl(0, 100), &p);
        assert_eq!((n1.index, n1.open, n1.period_start), (1, 108, 100));
    }

    #[test]
    fn a_restarted_runner_proves_only_the_batches_without_a_ready_proof() {
        let indexed: Vec<(u64, crate::chain::Partition)> = (0..5)
            .map(|i| {
                let p = crate::chain::Partition {
                    all_sectors: vec![i],
                    faulty_sectors: vec![],
                    recovering_sectors: vec![],
                    proven_sectors: vec![],
                };
                (i, p)
            })
            .collect();
        let index = |b: &[(u64, crate::chain::Partition)]| -> Vec<u64> {
            b.iter().map(|(i, _)| *i).collect()
        };
        let all = batches_to_prove(&indexed, 2, &[]);
        let all: Vec<Vec<u64>> = all.into_iter().map(index).collect();
        assert_eq!(all, vec![vec![0, 1], vec![2, 3], vec![4]]);
        // The proof of the second batch skipped partition 2 but covers the batch.
        let ready = [ReadyProof {
            partitions: vec![PoStPartition {
                index: 3,
                skipped: vec![],
            }],
            proof: vec![1],
            submitted: false,
            proved_in: Duration::ZERO,
        }];
        let left: Vec<Vec<u64>> = batches_to_prove(&indexed, 2, &ready)
            .into_iter()
            .map(index)
            .collect();
        assert_eq!(left, vec![vec![0, 1], vec![4]]);
    }

    #[test]
    fn pending_batches_are_given_back_when_a_runner_ends_early() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let proving = AtomicUsize::new(1);
        {
            let pending = PendingBatches::new(&proving, 3);
            assert_eq!(proving.load(Ordering::SeqCst), 4);
            pending.finish_one();
            assert_eq!(proving.load(Ordering::SeqCst), 3);
            // Dropped with two batches left, as by a panic.
        }
        assert_eq!(proving.load(Ordering::SeqCst), 1);
        {
            let pending = PendingBatches::new(&proving, 1);
            pending.finish_one();
            pending.finish_one();
        }
        assert_eq!(
            proving.load(Ordering::SeqCst),
            1,
            "never below what others count"
        );
    }

    #[test]
    fn a_message_proves_at_most_the_protocol_maximum_of_partitions() {
        // 32 GiB: 2349 sectors per partition.
        assert_eq!(max_post_partitions(2349), 10);
        // 2 KiB: 2 sectors per partition, capped by the declarations limit.
        assert_eq!(max_post_partitions(2), 3000);
        assert_eq!(max_post_partitions(0), 3000);
    }
}
