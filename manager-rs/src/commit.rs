//! Commitments (manager-spec §1.6): PreCommit and ProveCommit submissions are checked, kept in
//! the sector state, batched per miner and sent to the chain; polls map message states.
//!
//! A message is recorded in the outbox ([`crate::chain::outbox`]) and its id in every sector
//! it carries, in one synced write, then it is pushed (pushing is idempotent by id); the
//! outbox's resender pushes it again while the chain does not know it, so a crash between the
//! two steps loses nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use damocles_manager_api::types::{
    ActorId, ChainEpoch, OnChainState, PollStateResp, PreCommitInfo, ProofInfo, SectorId,
    SectorState, SectorWorkerState,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::chain::outbox::{MessageKind, Outbox, OutboxRecord};
use crate::chain::{
    Chain, Message, MessageStatus, MethodCall, PreCommitParams, SectorActivation, CHAIN_FINALITY,
    EPOCHS_PER_DAY, MAX_PRE_COMMIT_RANDOMNESS_LOOKBACK, MAX_SECTOR_EXPIRATION_EXTENSION,
    MIN_SECTOR_EXPIRATION,
};
use crate::config::{CommitmentPolicy, ManagerConfig};
use crate::sectors::SectorStates;
use crate::supervisor::{Supervisor, TaskContext};

/// Which message kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CommitKind {
    /// PreCommitSectorBatch2.
    Pre,
    /// ProveCommitSectors3.
    Prove,
}

impl CommitKind {
    /// Its part of a batch task's name (`commit-pre-1000`).
    fn task_name(self) -> &'static str {
        match self {
            CommitKind::Pre => "pre",
            CommitKind::Prove => "prove",
        }
    }

    /// What its messages are, in the outbox.
    fn message_kind(self) -> MessageKind {
        match self {
            CommitKind::Pre => MessageKind::Pre,
            CommitKind::Prove => MessageKind::Prove,
        }
    }
}

/// Why a PreCommit whose ticket is of `ticket_epoch` cannot land after `head` (at `head + 1`
/// at the earliest): the chain no longer accepts the ticket. The one rule for the check at
/// submission and the check before sending.
pub fn pre_commit_ticket_expired(ticket_epoch: ChainEpoch, head: ChainEpoch) -> Option<String> {
    let lands = head.saturating_add(1);
    (ticket_epoch < lands.saturating_sub(MAX_PRE_COMMIT_RANDOMNESS_LOOKBACK))
        .then(|| format!("ticket of epoch {ticket_epoch} expired at {head}"))
}

/// Why sector `sid` cannot be pre-committed: its number is already allocated on chain.
pub async fn sector_number_taken(chain: &dyn Chain, sid: SectorId) -> Result<Option<String>> {
    let taken = !chain.allocated(sid.miner, &[sid.number]).await?.is_empty();
    Ok(taken.then(|| format!("sector number {} is already allocated on chain", sid.number)))
}

/// Exit codes after which a message may simply be sent again.
const RETRYABLE_EXIT_CODES: [i64; 3] = [6, 7, 18];

struct Queue {
    pending: Mutex<BTreeSet<u64>>,
    notify: Notify,
}

/// The commitment manager.
pub struct Commitments {
    chain: Arc<dyn Chain>,
    states: Arc<SectorStates>,
    cfg: Arc<ManagerConfig>,
    queues: Mutex<HashMap<(ActorId, CommitKind), Arc<Queue>>>,
    outbox: Arc<Outbox>,
    supervisor: Arc<Supervisor>,
}

impl std::fmt::Debug for Commitments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commitments").finish_non_exhaustive()
    }
}

fn policy(cfg: &ManagerConfig, miner: ActorId, kind: CommitKind) -> CommitmentPolicy {
    let m = cfg.miner(miner).cloned().unwrap_or_default();
    match kind {
        CommitKind::Pre => m.commitment.pre,
        CommitKind::Prove => m.commitment.prove,
    }
}

/// The sender address of a policy (`Senders`, else the deprecated `Sender`).
fn sender(p: &CommitmentPolicy, miner: ActorId) -> String {
    p.senders
        .first()
        .cloned()
        .or_else(|| p.sender.clone())
        .unwrap_or_else(|| format!("t0{miner}"))
}

impl Commitments {
    /// A manager over the chain and the sector states; call [`Commitments::start`] to run it.
    pub fn new(
        chain: Arc<dyn Chain>,
        states: Arc<SectorStates>,
        cfg: Arc<ManagerConfig>,
        outbox: Arc<Outbox>,
        supervisor: Arc<Supervisor>,
    ) -> Arc<Self> {
        Arc::new(Commitments {
            chain,
            states,
            cfg,
            queues: Mutex::new(HashMap::new()),
            outbox,
            supervisor,
        })
    }

    /// Re-queues what was waiting to be sent before a restart.
    pub fn start(self: &Arc<Self>) -> Result<()> {
        let mut requeued = 0;
        for st in self.states.all(
            SectorWorkerState::Online,
            damocles_manager_api::types::SectorJob::All,
        )? {
            if !st.message_info.need_send || st.upgraded || st.imported || st.need_rebuild {
                continue;
            }
            let kind = if st.message_info.pre_commit_cid.is_none() && st.proof.is_none() {
                CommitKind::Pre
            } else {
                CommitKind::Prove
            };
            self.enqueue(st.id, kind);
            requeued += 1;
        }
        if requeued > 0 {
            tracing::info!(
                sectors = requeued,
                "commitments waiting before the restart are queued again"
            );
        }
        Ok(())
    }

    /// Queues a sector for its next message.
    pub fn enqueue(self: &Arc<Self>, sid: SectorId, kind: CommitKind) {
        let queue = {
            let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
            match queues.get(&(sid.miner, kind)) {
                Some(q) => q.clone(),
                None => {
                    let q = Arc::new(Queue {
                        pending: Mutex::new(BTreeSet::new()),
                        notify: Notify::new(),
                    });
                    queues.insert((sid.miner, kind), q.clone());
                    let me = self.clone();
                    let q2 = q.clone();
                    let name = format!("commit-{}-{}", kind.task_name(), sid.miner);
                    self.supervisor.spawn(name, false, move |ctx| {
                        me.clone().batch_loop(sid.miner, kind, q2.clone(), ctx)
                    });
                    q
                }
            }
        };
        queue
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sid.number);
        queue.notify.notify_one();
    }

    /// Sends the queue's batches until the run is stopped; a failed round is logged and tried
    /// again at the next wake-up.
    async fn batch_loop(
        self: Arc<Self>,
        miner: ActorId,
        kind: CommitKind,
        queue: Arc<Queue>,
        ctx: TaskContext,
    ) -> Result<()> {
        let mut heads = self.chain.subscribe();
        loop {
            let interval = policy(&self.cfg, miner, kind)
                .batch
                .check_interval
                .0
                .max(Duration::from_millis(100));
            tokio::select! {
                _ = ctx.stop().cancelled() => return Ok(()),
                _ = queue.notify.notified() => {}
                _ = tokio::time::sleep(interval) => {}
                _ = heads.changed() => {}
            }
            match self.process(miner, kind, &queue).await {
                Ok(()) => ctx.progress(),
                Err(e) => {
                    tracing::error!(miner, ?kind, error = %format!("{e:#}"), "sending commitments failed; retrying")
                }
            }
        }
    }

    /// Sends what is due: everything once `Threshold` sectors wait, else the sectors that have
    /// waited `MaxWait` (counted in epochs since their ticket or seed).
    async fn process(
        self: &Arc<Self>,
        miner: ActorId,
        kind: CommitKind,
        queue: &Queue,
    ) -> Result<()> {
        let numbers: Vec<u64> = queue
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        if numbers.is_empty() {
            return Ok(());
        }
        let p = policy(&self.cfg, miner, kind);
        let params = self.chain.network_params().await?;
        let head = self.chain.head().await?.epoch;
        let max_wait_epochs =
            (p.batch.max_wait.0.as_secs() / params.block_delay_secs.max(1)) as i64;
        let mut due = Vec::new();
        let mut states = Vec::new();
        for n in &numbers {
            let sid = SectorId { miner, number: *n };
            match self.states.load(sid, SectorWorkerState::Online)? {
                Some(st) if st.message_info.need_send => states.push(st),
                _ => {
                    queue
                        .pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(n);
                }
            }
        }
        let all = states.len() >= p.batch.threshold;
        for st in states {
            let since = match kind {
                CommitKind::Pre => st.ticket.as_ref().map(|t| t.epoch),
                CommitKind::Prove => st.seed.as_ref().map(|s| s.epoch),
            }
            .unwrap_or(head);
            if all || head.saturating_sub(since) > max_wait_epochs {
                due.push(st);
            }
        }
        if due.is_empty() {
            return Ok(());
        }
        // manager-spec §1.6: every sector is checked again before it is sent, so one sector that
        // can no longer go (ticket expired, number taken, deal started, PreCommit gone) does not
        // fail the whole batch. It gets no message id: its poll answers Failed and the worker
        // submits again (and learns the reason from the submission's answer).
        let mut sendable = Vec::new();
        for st in due {
            match self.recheck(kind, &st, head, &params).await? {
                None => sendable.push(st),
                Some(reason) => self.drop_unsendable(kind, queue, &st, &reason)?,
            }
        }
        let due = sendable;
        if due.is_empty() {
            return Ok(());
        }
        let sids: Vec<SectorId> = due.iter().map(|s| s.id).collect();
        let call = match kind {
            CommitKind::Pre => {
                let mut sectors = Vec::new();
                for st in &due {
                    sectors.push(self.pre_commit_params(st, head, &params).await?);
                }
                MethodCall::PreCommitSectorBatch2 { sectors }
            }
            CommitKind::Prove => {
                let require = self
                    .cfg
                    .miner(miner)
                    .is_some_and(|m| m.sealing.require_activation_success);
                MethodCall::ProveCommitSectors3 {
                    activations: due
                        .iter()
                        .map(|st| SectorActivation {
                            sector_number: st.id.number,
                            deal_ids: deal_ids(st),
                            proof: st
                                .proof
                                .as_ref()
                                .map(|p| p.proof.clone())
                                .unwrap_or_default(),
                        })
                        .collect(),
                    require_activation_success: require,
                }
            }
        };
        let message = Message {
            from: sender(&p, miner),
            to: miner,
            value: 0,
            call,
        };
        let record = OutboxRecord {
            sectors: sids.clone(),
            ..OutboxRecord::new(kind.message_kind(), message.clone())
        };
        let (id, record_op) = Outbox::record_op(&record)?;
        // The message was built from states read before locking them: record it only if every
        // sector is still online and unchanged; otherwise nothing is written and the next round
        // builds the batch again from fresh states.
        let built: HashMap<u64, (Option<PreCommitInfo>, Option<ProofInfo>)> = due
            .iter()
            .map(|st| (st.id.number, (st.pre.clone(), st.proof.clone())))
            .collect();
        let id2 = id.clone();
        let changed = self
            .states
            .update_batch(&sids, vec![record_op], move |st| {
                let unchanged = built.get(&st.id.number).is_some_and(|(pre, proof)| {
                    st.message_info.need_send && st.pre == *pre && st.proof == *proof
                });
                if !unchanged {
                    anyhow::bail!(
                        "sector {} changed while its {kind:?} message was built",
                        st.id
                    );
                }
                match kind {
                    CommitKind::Pre => st.message_info.pre_commit_cid = Some(id2.clone()),
                    CommitKind::Prove => st.message_info.commit_cid = Some(id2.clone()),
                }
                st.message_info.need_send = false;
                Ok(true)
            })?;
        {
            let mut pending = queue.pending.lock().unwrap_or_else(|p| p.into_inner());
            for s in &sids {
                pending.remove(&s.number);
            }
        }
        tracing::info!(miner, ?kind, message = %id, sectors = ?changed.iter().map(|s| s.number).collect::<Vec<_>>(), "commitment message recorded");
        // A refusal is recorded and logged by the outbox; the sectors' polls answer it.
        self.outbox.push(&id, message).await?;
        Ok(())
    }

    /// Why a due sector cannot be sent now, if it cannot (checked against the chain for the
    /// next epoch, where the message lands at the earliest).
    async fn recheck(
        &self,
        kind: CommitKind,
        st: &SectorState,
        head: i64,
        params: &crate::chain::NetworkParams,
    ) -> Result<Option<String>> {
        let sid = st.id;
        let lands = head.saturating_add(1);
        match kind {
            CommitKind::Pre => {
                let Some(pre) = &st.pre else {
                    return Ok(Some("no PreCommit info".into()));
                };
                if let Some(why) = pre_commit_ticket_expired(pre.ticket.epoch, head) {
                    return Ok(Some(why));
                }
                if let Some(why) = sector_number_taken(self.chain.as_ref(), sid).await? {
                    return Ok(Some(why));
                }
                for deal_id in deal_ids(st) {
                    let Some(deal) = self.chain.market_deal(deal_id).await? else {
                        return Ok(Some(format!("deal {deal_id} is not on chain")));
                    };
                    if deal.proposal.provider != sid.miner {
                        return Ok(Some(format!(
                            "deal {deal_id} belongs to miner {}",
                            deal.proposal.provider
                        )));
                    }
                    if deal.sector_start_epoch >= 0 {
                        return Ok(Some(format!("deal {deal_id} is already active")));
                    }
                    if lands >= deal.proposal.start_epoch {
                        return Ok(Some(format!(
                            "deal {deal_id} starts at epoch {}, before the PreCommit can land",
                            deal.proposal.start_epoch
                        )));
                    }
                }
                Ok(None)
            }
            CommitKind::Prove => {
                if st.proof.is_none() {
                    return Ok(Some("no proof".into()));
                }
                let Some(pc) = self.chain.pre_commit_info(sid.miner, sid.number).await? else {
                    return Ok(Some("no PreCommit on chain".into()));
                };
                let deadline = pc
                    .pre_commit_epoch
                    .saturating_add(params.max_prove_commit_duration);
                if lands > deadline {
                    return Ok(Some(format!("the PreCommit expired at epoch {deadline}")));
                }
                Ok(None)
            }
        }
    }

    /// Takes a sector that cannot be sent out of its queue without a message id (its poll then
    /// answers Failed), unless it changed meanwhile.
    fn drop_unsendable(
        &self,
        kind: CommitKind,
        queue: &Queue,
        st: &SectorState,
        reason: &str,
    ) -> Result<()> {
        let (pre, proof) = (st.pre.clone(), st.proof.clone());
        let changed = self.states.update_batch(&[st.id], Vec::new(), move |cur| {
            if !cur.message_info.need_send || cur.pre != pre || cur.proof != proof {
                return Ok(false);
            }
            cur.message_info.need_send = false;
            match kind {
                CommitKind::Pre => cur.message_info.pre_commit_cid = None,
                CommitKind::Prove => cur.message_info.commit_cid = None,
            }
            Ok(true)
        });
        match changed {
            Ok(changed) if !changed.is_empty() => {
                queue
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&st.id.number);
                metrics::counter!("damocles_manager_commitment_dropped", "kind" => format!("{kind:?}"))
                    .increment(1);
                tracing::warn!(sector = %st.id, ?kind, reason, "sector taken out of its batch; the worker will submit again");
            }
            // Changed or gone meanwhile: the next round looks at it again.
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(sector = %st.id, error = %format!("{e:#}"), "sector left the queue meanwhile")
            }
        }
        Ok(())
    }

    async fn pre_commit_params(
        &self,
        st: &SectorState,
        head: i64,
        params: &crate::chain::NetworkParams,
    ) -> Result<PreCommitParams> {
        let pre = st
            .pre
            .as_ref()
            .with_context(|| format!("sector {} has no PreCommit info", st.id))?;
        let lifetime_days = self
            .cfg
            .miner(st.id.miner)
            .map_or(540, |m| m.sector.lifetime_days);
        let lifetime_days = i64::try_from(lifetime_days).unwrap_or(i64::MAX);
        let deal_end = st
            .pieces
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|p| !p.is_filler() && p.deal_info.end_epoch > head)
            .map(|p| p.deal_info.end_epoch)
            .max();
        // manager-spec §1.6, in saturating arithmetic (imported states may hold any epoch).
        let mut end = match deal_end {
            Some(e) => e,
            None => {
                let lifetime = lifetime_days.saturating_mul(EPOCHS_PER_DAY);
                let clamped =
                    lifetime.clamp(MIN_SECTOR_EXPIRATION, MAX_SECTOR_EXPIRATION_EXTENSION);
                let lifetime = if clamped == lifetime {
                    lifetime.saturating_sub(2 * params.wpost_proving_period())
                } else {
                    clamped
                };
                head.saturating_add(lifetime)
            }
        };
        end = end.max(head.saturating_add(MIN_SECTOR_EXPIRATION + EPOCHS_PER_DAY));
        end = end.max(
            pre.ticket
                .epoch
                .saturating_add(EPOCHS_PER_DAY + CHAIN_FINALITY)
                .saturating_add(params.max_prove_commit_duration)
                .saturating_add(MIN_SECTOR_EXPIRATION),
        );
        end = end.min(
            head.saturating_add(params.pre_commit_challenge_delay)
                .saturating_add(MAX_SECTOR_EXPIRATION_EXTENSION),
        );
        Ok(PreCommitParams {
            seal_proof: st.sector_type,
            sector_number: st.id.number,
            sealed_cid: pre.comm_r.clone(),
            seal_rand_epoch: pre.ticket.epoch,
            deal_ids: deal_ids(st),
            expiration: end,
            unsealed_cid: st
                .pieces
                .as_ref()
                .filter(|p| !p.is_empty())
                .map(|_| pre.comm_d.clone()),
        })
    }

    /// The poll answer for a sector's message (manager-spec §1.6 mapping).
    pub async fn poll(&self, st: &SectorState, kind: CommitKind) -> Result<PollStateResp> {
        let id = match kind {
            CommitKind::Pre => &st.message_info.pre_commit_cid,
            CommitKind::Prove => &st.message_info.commit_cid,
        };
        let resp = |state, desc: Option<String>| Ok(PollStateResp { state, desc });
        let Some(id) = id else {
            return if st.message_info.need_send {
                resp(OnChainState::Pending, None)
            } else {
                resp(
                    OnChainState::Failed,
                    Some("attempt to publish message but failed".into()),
                )
            };
        };
        let status = match self.chain.message_status(id).await? {
            Some(s) => s,
            None => {
                return match self.outbox.get(id)? {
                    Some(OutboxRecord {
                        refused: Some(why), ..
                    }) => resp(
                        OnChainState::PermFailed,
                        Some(format!("the chain refused message {id}: {why}")),
                    ),
                    Some(_) => resp(OnChainState::Pending, None),
                    None => resp(
                        OnChainState::NotFound,
                        Some(format!("message {id} not found")),
                    ),
                }
            }
        };
        match status {
            MessageStatus::Pending => resp(OnChainState::Pending, None),
            MessageStatus::Executed {
                epoch,
                exit_code,
                error,
            } => {
                let head = self.chain.head().await?.epoch;
                let confidence = self
                    .cfg
                    .miner(st.id.miner)
                    .map_or(10, |m| m.commitment.confidence);
                if head - epoch < confidence {
                    return resp(OnChainState::Packed, None);
                }
                if exit_code != 0 {
                    let desc = Some(format!(
                        "exit code {exit_code}: {}",
                        error.unwrap_or_default()
                    ));
                    return if RETRYABLE_EXIT_CODES.contains(&exit_code) {
                        resp(OnChainState::Failed, desc)
                    } else {
                        resp(OnChainState::PermFailed, desc)
                    };
                }
                match kind {
                    CommitKind::Pre => {
                        let on_chain = self
                            .chain
                            .pre_commit_info(st.id.miner, st.id.number)
                            .await?;
                        let active = self.chain.sector_info(st.id.miner, st.id.number).await?;
                        if on_chain.is_none() && active.is_none() {
                            return resp(
                                OnChainState::ShouldAbort,
                                Some("pre-commit info not found on chain".into()),
                            );
                        }
                    }
                    CommitKind::Prove => {
                        if self
                            .chain
                            .sector_info(st.id.miner, st.id.number)
                            .await?
                            .is_none()
                        {
                            return resp(
                                OnChainState::ShouldAbort,
                                Some("sector not found on chain after its proof landed".into()),
                            );
                        }
                    }
                }
                resp(OnChainState::Landed, None)
            }
        }
    }

    /// The sectors waiting in each queue, for views.
    pub fn queued(&self) -> BTreeMap<String, Vec<u64>> {
        let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues
            .iter()
            .map(|((m, k), q)| {
                (
                    format!("{m}/{k:?}"),
                    q.pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .iter()
                        .copied()
                        .collect(),
                )
            })
            .collect()
    }
}

fn deal_ids(st: &SectorState) -> Vec<u64> {
    st.pieces
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|p| !p.is_filler() && p.deal_info.is_builtin_market)
        .map(|p| p.deal_info.deal_id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::devnet::testing::{open_devnet, pre_commit_message};
    use crate::config::MinerConfig;
    use crate::kv::{cf, Kv, Op};
    use damocles_manager_api::json::{data_commitment_cid, replica_commitment_cid, Bytes};
    use damocles_manager_api::types::{SealProofType, Ticket};

    use crate::util::block_on as run;

    #[test]
    fn a_sector_that_cannot_go_is_taken_out_and_the_rest_of_the_batch_lands() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = Kv::open(dir.path()).expect("kv");
        let devnet = open_devnet(kv.clone(), |_| {});
        for _ in 0..3 {
            devnet.produce_block().expect("block");
        }
        let mut miner = MinerConfig {
            actor: 1000,
            ..MinerConfig::default()
        };
        miner.commitment.pre.batch.threshold = 2;
        let mut cfg = ManagerConfig::default();
        cfg.miners.push(miner);
        let states = Arc::new(SectorStates::new(kv.clone()));
        let commitments = Commitments::new(
            devnet.clone(),
            states.clone(),
            Arc::new(cfg),
            Outbox::new(kv.clone(), devnet.clone()),
            crate::supervisor::Supervisor::new(tokio_util::sync::CancellationToken::new()),
        );
        let ticket = Ticket {
            ticket: Bytes(vec![1; 32]),
            epoch: 1,
        };
        let sids = [1u64, 2].map(|number| SectorId {
            miner: 1000,
            number,
        });
        let mut all = Vec::new();
        for sid in sids {
            let mut st = SectorState::new(sid, SealProofType(5));
            st.ticket = Some(ticket.clone());
            st.pre = Some(PreCommitInfo {
                comm_r: replica_commitment_cid(&[sid.number as u8; 32]),
                comm_d: data_commitment_cid(&[0; 32]),
                ticket: ticket.clone(),
            });
            st.message_info.need_send = true;
            all.push(st);
        }
        states.init(&all).expect("init");

        // Sector 1's number is taken on chain by another message meanwhile.
        let taken = pre_commit_message(1, [9; 32], 1);
        let taken_id = crate::chain::new_message_id(&taken).expect("id");
        run(devnet.push_message(&taken_id, taken)).expect("push");
        devnet.produce_block().expect("block");

        let queue = Queue {
            pending: Mutex::new(BTreeSet::from([1, 2])),
            notify: Notify::new(),
        };
        run(commitments.process(1000, CommitKind::Pre, &queue)).expect("process");
        assert!(
            queue.pending.lock().expect("lock").is_empty(),
            "both leave the queue"
        );

        let one = states
            .load(sids[0], SectorWorkerState::Online)
            .expect("load")
            .expect("online");
        assert!(!one.message_info.need_send);
        assert_eq!(one.message_info.pre_commit_cid, None, "no message for it");
        let poll = run(commitments.poll(&one, CommitKind::Pre)).expect("poll");
        assert_eq!(poll.state, OnChainState::Failed, "the worker submits again");

        let two = states
            .load(sids[1], SectorWorkerState::Online)
            .expect("load")
            .expect("online");
        let id = two.message_info.pre_commit_cid.clone().expect("sent");
        devnet.produce_block().expect("block");
        match run(devnet.message_status(&id)).expect("status") {
            Some(MessageStatus::Executed { exit_code, .. }) => {
                assert_eq!(exit_code, 0, "the batch without sector 1 is valid")
            }
            other => panic!("message not executed: {other:?}"),
        }
        assert!(run(devnet.pre_commit_info(1000, 2))
            .expect("pre-commit")
            .is_some());
    }

    #[test]
    fn a_batch_is_not_recorded_when_one_of_its_sectors_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = Kv::open(dir.path()).expect("kv");
        let states = SectorStates::new(kv.clone());
        let a = SectorId {
            miner: 7,
            number: 1,
        };
        let b = SectorId {
            miner: 7,
            number: 2,
        };
        states
            .init(&[
                SectorState::new(a, SealProofType(5)),
                SectorState::new(b, SealProofType(5)),
            ])
            .expect("init");
        states.finalize(b, |_| Ok(true)).expect("finalize");
        let res = states.update_batch(
            &[a, b],
            vec![Op::Put(cf::COMMON, b"marker".to_vec(), b"1".to_vec())],
            |st| {
                st.message_info.need_send = true;
                Ok(true)
            },
        );
        assert!(res.is_err(), "sector {b} is offline");
        let a_now = states
            .load(a, SectorWorkerState::Online)
            .expect("load")
            .expect("online");
        assert!(!a_now.message_info.need_send, "nothing written");
        assert_eq!(kv.get(cf::COMMON, b"marker").expect("get"), None);
    }

    #[test]
    fn a_ticket_expires_for_the_epoch_the_pre_commit_lands_at() {
        let head = 10_000;
        let oldest = head + 1 - MAX_PRE_COMMIT_RANDOMNESS_LOOKBACK;
        assert_eq!(pre_commit_ticket_expired(oldest, head), None);
        let why = pre_commit_ticket_expired(oldest - 1, head).expect("expired");
        assert_eq!(
            why,
            format!("ticket of epoch {} expired at {head}", oldest - 1)
        );
    }
}
