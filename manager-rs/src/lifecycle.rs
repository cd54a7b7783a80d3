//! A sector's life in the manager, from `AllocateSector` to `ReportFinalized` (manager-spec
//! §2.3, §2.5): numbers, deals, tickets and seeds, the PreCommit and ProveCommit checks,
//! persisting, states. The RPC handlers only convert and call these methods.

use std::sync::Arc;

use anyhow::{anyhow, Context};
use damocles_manager_api::json::{
    data_commitment_cid, data_commitment_of, replica_commitment_cid, replica_commitment_of, Bytes,
    Cid,
};
use damocles_manager_api::types::*;
use rand::seq::SliceRandom;
use vc_processors::builtin::proofs as vp;

use crate::chain::{randomness, Chain, CHAIN_FINALITY, INTERACTIVE_POREP_CONFIDENCE};
use crate::commit::{pre_commit_ticket_expired, sector_number_taken, CommitKind, Commitments};
use crate::config::ManagerConfig;
use crate::deals::DealManager;
use crate::error::{off_runtime, ApiError, ApiResult};
use crate::proofs::seal_proof;
use crate::sectors::{NumberAllocator, SectorStates};
use crate::stores::{PersistCheckError, SectorIndex, StoreManager};

/// The sealing API's logic over the sector states, with the services it draws on.
pub struct SectorLifecycle {
    cfg: Arc<ManagerConfig>,
    chain: Arc<dyn Chain>,
    numbers: NumberAllocator,
    states: Arc<SectorStates>,
    stores: Arc<StoreManager>,
    index: SectorIndex,
    deals: Arc<DealManager>,
    commitments: Arc<Commitments>,
}

/// What a [`SectorLifecycle`] is built from.
pub struct LifecycleParts {
    /// The manager's config (miners' sector and sealing settings).
    pub cfg: Arc<ManagerConfig>,
    /// Where tickets, seeds and on-chain sector state come from.
    pub chain: Arc<dyn Chain>,
    /// The sector number allocator.
    pub numbers: NumberAllocator,
    /// The sector states.
    pub states: Arc<SectorStates>,
    /// The persist stores sectors are reserved in and checked against.
    pub stores: Arc<StoreManager>,
    /// Which store holds each persisted sector.
    pub index: SectorIndex,
    /// Deals laid into sectors.
    pub deals: Arc<DealManager>,
    /// The PreCommit and ProveCommit batching.
    pub commitments: Arc<Commitments>,
}

impl std::fmt::Debug for SectorLifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SectorLifecycle").finish_non_exhaustive()
    }
}

fn submit(res: SubmitResult, desc: Option<String>) -> SubmitResp {
    SubmitResp { res, desc }
}

impl SectorLifecycle {
    /// A lifecycle over `parts`.
    pub fn new(parts: LifecycleParts) -> Self {
        let LifecycleParts {
            cfg,
            chain,
            numbers,
            states,
            stores,
            index,
            deals,
            commitments,
        } = parts;
        SectorLifecycle {
            cfg,
            chain,
            numbers,
            states,
            stores,
            index,
            deals,
            commitments,
        }
    }

    fn online(&self, sid: SectorId) -> ApiResult<SectorState> {
        self.states
            .load(sid, SectorWorkerState::Online)?
            .ok_or(ApiError::SectorStateNotFound(sid))
    }

    fn update_online<T>(
        &self,
        sid: SectorId,
        f: impl FnOnce(&mut SectorState) -> anyhow::Result<T>,
    ) -> ApiResult<T> {
        self.states
            .update(sid, SectorWorkerState::Online, f)?
            .ok_or(ApiError::SectorStateNotFound(sid))
    }

    /// The seal proof new sectors of a miner get.
    async fn miner_seal_proof(
        &self,
        miner: ActorId,
    ) -> anyhow::Result<Option<(u64, SealProofType)>> {
        let Some(info) = self.chain.miner_info(miner).await? else {
            return Ok(None);
        };
        let mut proof = info.seal_proof_type;
        if self
            .cfg
            .miner(miner)
            .is_some_and(|m| m.sealing.use_synthetic_po_rep)
            && (5..10).contains(&proof.0)
        {
            proof = SealProofType(proof.0 + 5);
        }
        Ok(Some((info.sector_size, proof)))
    }

    /// `AllocateSector`.
    pub async fn allocate_sector(
        &self,
        spec: AllocateSectorSpec,
    ) -> ApiResult<Option<AllocatedSector>> {
        let allowed_miners = spec.allowed_miners.unwrap_or_default();
        let allowed_types = spec.allowed_proof_types.unwrap_or_default();
        let mut candidates = Vec::new();
        for m in self.cfg.miners.iter().filter(|m| m.sector.enabled) {
            if !allowed_miners.is_empty() && !allowed_miners.contains(&m.actor) {
                continue;
            }
            let proof = match self.miner_seal_proof(m.actor).await {
                Ok(Some((_, p))) => p,
                Ok(None) => {
                    tracing::warn!(
                        miner = m.actor,
                        "miner not found on chain; no sectors for it"
                    );
                    continue;
                }
                Err(e) => {
                    tracing::warn!(miner = m.actor, error = %format!("{e:#}"), "miner info unavailable");
                    continue;
                }
            };
            if !allowed_types.is_empty() && !allowed_types.contains(&proof) {
                continue;
            }
            candidates.push((m.clone(), proof));
        }
        candidates.shuffle(&mut rand::thread_rng());
        for (m, proof) in candidates {
            let min = m.sector.min_number.unwrap_or(m.sector.init_number);
            let Some(number) = self.numbers.next_n(m.actor, 1, min, m.sector.max_number)? else {
                tracing::warn!(miner = m.actor, max = ?m.sector.max_number, "sector numbers exhausted");
                continue;
            };
            let sid = SectorId {
                miner: m.actor,
                number,
            };
            let on_chain = self.chain.allocated(m.actor, &[number]).await?;
            if !on_chain.is_empty() {
                return Err(ApiError::Internal(anyhow!(
                    "sector allocated. miner: {}, sectors: ({number})",
                    m.actor
                )));
            }
            self.states.init(&[SectorState::new(sid, proof)])?;
            metrics::counter!("damocles_manager_new_sector", "miner" => m.actor.to_string())
                .increment(1);
            tracing::info!(sector = %sid, proof = proof.0, "sector allocated");
            return Ok(Some(AllocatedSector {
                id: sid,
                proof_type: proof,
            }));
        }
        Ok(None)
    }

    /// `AcquireDeals`.
    pub async fn acquire_deals(
        &self,
        sid: SectorId,
        spec: AcquireDealsSpec,
    ) -> ApiResult<Option<Vec<SectorPieceV2>>> {
        let st = self.online(sid)?;
        if let Some(p) = st.pieces.as_ref().filter(|p| !p.is_empty()) {
            return Ok(Some(p.clone()));
        }
        if !self
            .cfg
            .miner(sid.miner)
            .is_some_and(|m| m.sector.enable_deals)
        {
            return Ok(None);
        }
        let size = st
            .sector_type
            .sector_size()
            .ok_or_else(|| anyhow!("sector {sid}: unknown proof type"))?;
        let Some(pieces) = self.deals.acquire(sid, size, spec).await? else {
            return Ok(None);
        };
        let stored = pieces.clone();
        if let Err(e) = self.update_online(sid, move |st| {
            st.pieces = Some(stored);
            Ok(())
        }) {
            self.deals.release(sid, &pieces)?;
            return Err(e);
        }
        tracing::info!(sector = %sid, deals = pieces.iter().filter(|p| !p.is_filler()).count(), "deals assigned");
        Ok(Some(pieces))
    }

    /// `AssignTicket`.
    pub async fn assign_ticket(&self, sid: SectorId) -> ApiResult<Ticket> {
        self.online(sid)?;
        let head = self.chain.head().await?.epoch;
        let epoch = (head - CHAIN_FINALITY).max(0);
        let rand = randomness::seal_ticket(self.chain.as_ref(), sid.miner, epoch).await?;
        let ticket = Ticket {
            ticket: Bytes(rand.to_vec()),
            epoch,
        };
        let t = ticket.clone();
        self.update_online(sid, move |st| {
            st.ticket = Some(t);
            Ok(())
        })?;
        Ok(ticket)
    }

    /// `SubmitPreCommit`.
    pub async fn submit_pre_commit(
        self: &Arc<Self>,
        sector: AllocatedSector,
        info: PreCommitOnChainInfo,
        hard_reset: bool,
    ) -> ApiResult<SubmitResp> {
        let sid = sector.id;
        let st = self.online(sid)?;
        let pre = PreCommitInfo {
            comm_r: replica_commitment_cid(&info.comm_r),
            comm_d: data_commitment_cid(&info.comm_d),
            ticket: info.ticket.clone(),
        };
        if let Some(existing) = &st.pre {
            if !hard_reset {
                return Ok(if *existing == pre {
                    submit(SubmitResult::Accepted, None)
                } else {
                    submit(
                        SubmitResult::MismatchedSubmission,
                        Some("a different PreCommit was already submitted".into()),
                    )
                });
            }
        }
        if sector.proof_type != st.sector_type {
            return Ok(submit(
                SubmitResult::Rejected,
                Some(format!(
                    "proof type {} differs from the sector's {}",
                    sector.proof_type.0, st.sector_type.0
                )),
            ));
        }
        // CommD: the pieces' (zeros for a CC sector).
        let pieces = st.pieces.clone().unwrap_or_default();
        let expected = match self.deals.check_pieces(sid, st.sector_type, &pieces).await {
            Ok(c) => c,
            Err(desc) => return Ok(submit(SubmitResult::Rejected, Some(desc))),
        };
        if expected != info.comm_d {
            return Ok(submit(
                SubmitResult::MismatchedSubmission,
                Some("CommD does not match the sector's pieces".into()),
            ));
        }
        let head = self.chain.head().await?.epoch;
        if let Some(why) = pre_commit_ticket_expired(info.ticket.epoch, head) {
            return Ok(submit(SubmitResult::Rejected, Some(why)));
        }
        let chain_ticket =
            randomness::seal_ticket(self.chain.as_ref(), sid.miner, info.ticket.epoch)
                .await
                .map_err(|e| {
                    ApiError::Internal(anyhow::Error::from(e).context("drawing the ticket"))
                })?;
        if info.ticket.ticket.0 != chain_ticket {
            return Ok(submit(
                SubmitResult::Rejected,
                Some(format!(
                    "ticket does not match the chain's randomness at epoch {}",
                    info.ticket.epoch
                )),
            ));
        }
        if let Some(pc) = self.chain.pre_commit_info(sid.miner, sid.number).await? {
            if pc.info.seal_rand_epoch == info.ticket.epoch && pc.info.sealed_cid == pre.comm_r {
                let p = pre.clone();
                self.update_online(sid, move |st| {
                    st.pre = Some(p);
                    Ok(())
                })?;
                return Ok(submit(SubmitResult::Accepted, None));
            }
        }
        if let Some(why) = sector_number_taken(self.chain.as_ref(), sid).await? {
            return Ok(submit(SubmitResult::Rejected, Some(why)));
        }
        let queued = self.update_online(sid, move |st| {
            // A concurrent identical submission already queued or sent it.
            if st.pre.as_ref() == Some(&pre)
                && (st.message_info.need_send || st.message_info.pre_commit_cid.is_some())
            {
                return Ok(false);
            }
            st.pre = Some(pre);
            st.message_info.pre_commit_cid = None;
            st.message_info.need_send = true;
            Ok(true)
        })?;
        if queued {
            self.commitments.enqueue(sid, CommitKind::Pre);
        }
        metrics::counter!("damocles_manager_sector_pre_commit", "miner" => sid.miner.to_string())
            .increment(1);
        Ok(submit(SubmitResult::Accepted, None))
    }

    /// `PollPreCommitState`.
    pub async fn poll_pre_commit_state(&self, sid: SectorId) -> ApiResult<PollStateResp> {
        let st = self.online(sid)?;
        Ok(self.commitments.poll(&st, CommitKind::Pre).await?)
    }

    /// `SubmitPersistedEx`.
    pub fn submit_persisted_ex(
        &self,
        sid: SectorId,
        instance: &str,
        upgrade: bool,
    ) -> ApiResult<bool> {
        let st = self.online(sid)?;
        match self
            .stores
            .check_persisted(sid, instance, upgrade, st.sector_type)
        {
            Ok(true) => {
                let index = if upgrade {
                    SectorIndexType::Upgrade
                } else {
                    SectorIndexType::Normal
                };
                self.index.update(
                    index,
                    sid,
                    &SectorAccessStores {
                        sealed_file: instance.to_string(),
                        cache_dir: instance.to_string(),
                    },
                )?;
                tracing::info!(sector = %sid, store = instance, upgrade, "sector persisted");
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(e @ PersistCheckError::NoSuchStore(_)) => Err(ApiError::bad(e.to_string())),
            Err(e) => Err(ApiError::Internal(anyhow::Error::new(e))),
        }
    }

    /// `WaitSeed`.
    pub async fn wait_seed(&self, sid: SectorId, _proof: SealProofType) -> ApiResult<WaitSeedResp> {
        let st = self.online(sid)?;
        let Some(pc) = self.chain.pre_commit_info(sid.miner, sid.number).await? else {
            if let (Some(seed), Some(_)) = (
                &st.seed,
                self.chain.sector_info(sid.miner, sid.number).await?,
            ) {
                return Ok(WaitSeedResp {
                    should_wait: false,
                    delay: 0,
                    seed: Some(seed.clone()),
                });
            }
            return Err(ApiError::Internal(anyhow!(
                "sector {sid}: pre-commit info not found on chain"
            )));
        };
        let params = self.chain.network_params().await?;
        let head = self.chain.head().await?.epoch;
        let seed_epoch = pc.pre_commit_epoch + params.pre_commit_challenge_delay;
        if head < seed_epoch + INTERACTIVE_POREP_CONFIDENCE {
            return Ok(WaitSeedResp {
                should_wait: true,
                delay: (seed_epoch + INTERACTIVE_POREP_CONFIDENCE - head)
                    * params.block_delay_secs as i64,
                seed: None,
            });
        }
        let rand = randomness::seal_seed(self.chain.as_ref(), sid.miner, seed_epoch).await?;
        let seed = Seed {
            seed: Bytes(rand.to_vec()),
            epoch: seed_epoch,
        };
        let s = seed.clone();
        self.update_online(sid, move |st| {
            st.seed = Some(s);
            Ok(())
        })?;
        Ok(WaitSeedResp {
            should_wait: false,
            delay: 0,
            seed: Some(seed),
        })
    }

    /// `SubmitProof`.
    pub async fn submit_proof(
        self: &Arc<Self>,
        sid: SectorId,
        info: ProofOnChainInfo,
        hard_reset: bool,
    ) -> ApiResult<SubmitResp> {
        let st = self.online(sid)?;
        let Some(pre) = st.pre.clone() else {
            return Ok(submit(
                SubmitResult::Rejected,
                Some("the sector has no PreCommit".into()),
            ));
        };
        if let Some(existing) = &st.proof {
            if !hard_reset {
                return Ok(if existing.proof == info.proof {
                    submit(SubmitResult::Accepted, None)
                } else {
                    submit(
                        SubmitResult::MismatchedSubmission,
                        Some("a different proof was already submitted".into()),
                    )
                });
            }
        }
        if info.proof.0.is_empty() {
            return Ok(submit(SubmitResult::Rejected, Some("empty proof".into())));
        }
        let Some(seed) = st.seed.clone() else {
            return Ok(submit(
                SubmitResult::Rejected,
                Some("no seed was assigned to the sector".into()),
            ));
        };
        let Some(pc) = self.chain.pre_commit_info(sid.miner, sid.number).await? else {
            return Ok(submit(
                SubmitResult::Rejected,
                Some("pre-commit info not found on chain".into()),
            ));
        };
        if pc.info.sealed_cid != pre.comm_r || pc.info.seal_rand_epoch != pre.ticket.epoch {
            return Ok(submit(
                SubmitResult::Rejected,
                Some(
                    "the PreCommit on chain differs from the one submitted for this sector".into(),
                ),
            ));
        }
        let params = self.chain.network_params().await?;
        if seed.epoch != pc.pre_commit_epoch + params.pre_commit_challenge_delay {
            return Ok(submit(
                SubmitResult::Rejected,
                Some(format!(
                    "seed epoch {} is not the PreCommit's challenge epoch",
                    seed.epoch
                )),
            ));
        }
        let chain_seed = randomness::seal_seed(self.chain.as_ref(), sid.miner, seed.epoch).await?;
        if chain_seed.as_slice() != seed.seed.0.as_slice() {
            return Ok(submit(
                SubmitResult::Rejected,
                Some("seed changed on chain".into()),
            ));
        }
        let pieces = st.pieces.clone().unwrap_or_default();
        if let Err(desc) = self.deals.check_pieces(sid, st.sector_type, &pieces).await {
            return Ok(submit(SubmitResult::Rejected, Some(desc)));
        }
        let comm_r = replica_commitment_of(&pre.comm_r).map_err(|e| anyhow!(e))?;
        let comm_d = data_commitment_of(&pre.comm_d).map_err(|e| anyhow!(e))?;
        let ticket: [u8; 32] = pre
            .ticket
            .ticket
            .0
            .as_slice()
            .try_into()
            .map_err(|_| anyhow!("stored ticket is not 32 bytes"))?;
        let seed_bytes: [u8; 32] = chain_seed;
        let proof_type = seal_proof(st.sector_type)?;
        let proof = info.proof.0.clone();
        let valid = tokio::task::spawn_blocking(move || {
            vp::verify_seal(
                proof_type,
                comm_r,
                comm_d,
                vp::to_prover_id(sid.miner),
                vp::api::SectorId::from(sid.number),
                ticket,
                seed_bytes,
                &proof,
            )
        })
        .await
        .context("verify_seal task")?;
        match valid {
            Ok(true) => {}
            Ok(false) => {
                return Ok(submit(
                    SubmitResult::Rejected,
                    Some("invalid proof: verify_seal failed".into()),
                ))
            }
            Err(e) => {
                return Ok(submit(
                    SubmitResult::Rejected,
                    Some(format!("invalid proof: {e:#}")),
                ))
            }
        }
        let proof_info = ProofInfo { proof: info.proof };
        self.update_online(sid, move |st| {
            st.proof = Some(proof_info);
            st.message_info.commit_cid = None;
            st.message_info.need_send = true;
            Ok(())
        })?;
        self.commitments.enqueue(sid, CommitKind::Prove);
        metrics::counter!("damocles_manager_sector_commit", "miner" => sid.miner.to_string())
            .increment(1);
        Ok(submit(SubmitResult::Accepted, None))
    }

    /// `PollProofState`.
    pub async fn poll_proof_state(&self, sid: SectorId) -> ApiResult<PollStateResp> {
        let st = self.online(sid)?;
        Ok(self.commitments.poll(&st, CommitKind::Prove).await?)
    }

    /// `ReportState`.
    pub fn report_state(&self, sid: SectorId, req: ReportStateReq) -> ApiResult<SectorStateResp> {
        let mut fields = vec![
            ("Worker.Instance", req.worker.instance.as_str()),
            ("Worker.Location", req.worker.location.as_str()),
            ("StateChange.Prev", req.state_change.prev.as_str()),
            ("StateChange.Next", req.state_change.next.as_str()),
            ("StateChange.Event", req.state_change.event.as_str()),
        ];
        if let Some(f) = &req.failure {
            fields.push(("Failure.Level", f.level.as_str()));
            fields.push(("Failure.Desc", f.desc.as_str()));
        }
        for (name, value) in fields {
            check_len("ReportState", name, value)?;
        }
        let updated = self
            .states
            .update(sid, SectorWorkerState::Online, move |st| {
                st.latest_state = Some(req);
                Ok(SectorStateResp {
                    id: sid,
                    finalized: st.finalized,
                    abort_reason: st.abort_reason.clone(),
                })
            })?;
        if let Some(resp) = updated {
            return Ok(resp);
        }
        match self.states.load(sid, SectorWorkerState::Offline)? {
            Some(st) => Ok(SectorStateResp {
                id: sid,
                finalized: st.finalized,
                abort_reason: st.abort_reason,
            }),
            None => Err(ApiError::SectorStateNotFound(sid)),
        }
    }

    /// `ReportFinalized`: accepted only for a sector the chain holds (its proof landed), so
    /// a worker cannot wipe a sector that is still being sealed by reporting it done.
    pub async fn report_finalized(self: &Arc<Self>, sid: SectorId) -> ApiResult<()> {
        let this = self.clone();
        let online =
            off_runtime(move || Ok(this.states.load(sid, SectorWorkerState::Online)?)).await?;
        if online.is_some()
            && self
                .chain
                .sector_info(sid.miner, sid.number)
                .await?
                .is_none()
        {
            return Err(ApiError::bad(format!(
                "sector {sid} is not on chain: it is finalized only once its proof has landed"
            )));
        }
        let this = self.clone();
        off_runtime(move || this.finalize_reported(sid)).await
    }

    /// The state change of `ReportFinalized`, once the chain check passed.
    fn finalize_reported(&self, sid: SectorId) -> ApiResult<()> {
        let moved = self.states.finalize(sid, |st| {
            if st.unsealing {
                st.unsealing = false;
                return Ok(true);
            }
            if st.need_rebuild {
                st.need_rebuild = false;
                return Ok(true);
            }
            // Snapped-up sectors are finalized once their update lands.
            Ok(!st.upgraded)
        })?;
        match moved {
            Some(_) => {}
            None if self.states.load(sid, SectorWorkerState::Offline)?.is_some() => {}
            None => return Err(ApiError::SectorStateNotFound(sid)),
        }
        self.stores.release_reserved(sid)?;
        tracing::info!(sector = %sid, "sector finalized");
        Ok(())
    }

    /// `ReportAborted`.
    pub fn report_aborted(&self, sid: SectorId, reason: &str) -> ApiResult<()> {
        check_len("ReportAborted", "reason", reason)?;
        let mut pieces = Vec::new();
        let moved = self.states.finalize(sid, |st| {
            pieces = st.pieces.clone().unwrap_or_default();
            st.abort_reason = if reason.is_empty() {
                "aborted".into()
            } else {
                reason.to_string()
            };
            st.upgraded = false;
            st.upgrade_public = None;
            st.upgraded_info = None;
            st.upgrade_message_id = None;
            st.upgrade_landed_epoch = None;
            Ok(true)
        })?;
        match moved {
            Some(_) => self.deals.release(sid, &pieces)?,
            // Already offline (a retry, maybe after a crash between the two writes): the
            // release is idempotent, do it again.
            None => match self.states.load(sid, SectorWorkerState::Offline)? {
                Some(st) if !st.abort_reason.is_empty() => self
                    .deals
                    .release(sid, st.pieces.as_deref().unwrap_or_default())?,
                Some(_) => {}
                None => return Err(ApiError::SectorStateNotFound(sid)),
            },
        }
        self.stores.release_reserved(sid)?;
        tracing::warn!(sector = %sid, reason, "sector aborted");
        Ok(())
    }

    /// `StoreReserveSpace`.
    pub fn store_reserve_space(
        &self,
        sid: SectorId,
        size: u64,
        candidates: &[String],
    ) -> ApiResult<Option<StoreBasicInfo>> {
        self.online(sid)?;
        Ok(self.stores.reserve_space(sid, size, candidates)?)
    }

    /// `StoreBasicInfo`.
    pub fn store_basic_info(&self, instance: &str) -> Option<StoreBasicInfo> {
        self.stores.get(instance).map(|s| s.basic_info())
    }

    /// `ListSectors`.
    pub fn list_sectors(
        &self,
        ws: SectorWorkerState,
        job: SectorJob,
    ) -> ApiResult<Vec<SectorState>> {
        Ok(self.states.all(ws, job)?)
    }

    /// `FindSector`.
    pub fn find_sector(&self, ws: SectorWorkerState, sid: SectorId) -> ApiResult<SectorState> {
        self.states
            .load(sid, ws)?
            .ok_or(ApiError::SectorStateNotFound(sid))
    }

    /// `FindSectorInAllStates`.
    pub fn find_sector_in_all_states(&self, sid: SectorId) -> ApiResult<SectorState> {
        self.states
            .load_any(sid)?
            .map(|(_, st)| st)
            .ok_or(ApiError::SectorStateNotFound(sid))
    }

    /// `FindSectorsWithDeal`.
    pub fn find_sectors_with_deal(
        &self,
        ws: SectorWorkerState,
        deal: DealId,
    ) -> ApiResult<Vec<SectorState>> {
        if deal == 0 {
            return Err(ApiError::bad("deal id 0 is not a deal"));
        }
        Ok(self
            .states
            .all(ws, SectorJob::All)?
            .into_iter()
            .filter(|st| {
                st.pieces
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .any(|p| !p.is_filler() && p.deal_info.deal_id == deal)
            })
            .collect())
    }

    /// `FindSectorWithPiece`.
    pub fn find_sector_with_piece(
        &self,
        ws: SectorWorkerState,
        piece: &Cid,
    ) -> ApiResult<Option<SectorState>> {
        Ok(self.states.all(ws, SectorJob::All)?.into_iter().find(|st| {
            st.pieces
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|p| !p.is_filler() && p.piece.piece_cid == *piece)
        }))
    }

    /// `ImportSector`: writes a sector state made elsewhere; `false` when one exists and
    /// `override_existing` is not set.
    pub fn import_sector(
        &self,
        ws: SectorWorkerState,
        sector: &SectorState,
        override_existing: bool,
    ) -> ApiResult<bool> {
        Ok(self.states.import(ws, sector, override_existing)?)
    }

    /// Releases the store reservations of sectors that are no longer online: leftovers of a
    /// crash between the two writes of a finalize or an abort.
    pub fn release_stale_reservations(&self) -> anyhow::Result<()> {
        for (store, item) in self.stores.reservations()? {
            let Ok(sid) = item.by.parse::<SectorId>() else {
                continue;
            };
            if self.states.load(sid, SectorWorkerState::Online)?.is_none() {
                self.stores.release_reserved(sid)?;
                tracing::info!(sector = %sid, store, "released the reservation of a sector that is no longer being sealed");
            }
        }
        Ok(())
    }

    /// `RestoreSector`.
    pub fn restore_sector(&self, sid: SectorId, forced: bool) -> ApiResult<()> {
        let mut refusal = None;
        let restored = self.states.restore(sid, |st| {
            if !forced {
                if st.has_deal_data() {
                    refusal = Some("the sector has deals; use --force".to_string());
                    anyhow::bail!("refused");
                }
                if st.abort_reason.is_empty() {
                    refusal = Some("the sector was not aborted; use --force".to_string());
                    anyhow::bail!("refused");
                }
                st.abort_reason.clear();
            }
            Ok(())
        });
        match (restored, refusal) {
            (_, Some(why)) => Err(ApiError::bad(format!("cannot restore {sid}: {why}"))),
            (Ok(true), None) => Ok(()),
            (Ok(false), None) => Err(ApiError::SectorStateNotFound(sid)),
            (Err(e), None) => Err(e.into()),
        }
    }

    /// `FinalizeSector`: only for a sector that is on chain.
    pub async fn finalize_sector(&self, sid: SectorId) -> ApiResult<()> {
        if self
            .chain
            .sector_info(sid.miner, sid.number)
            .await?
            .is_none()
        {
            return Err(ApiError::bad(format!("sector {sid} is not on chain")));
        }
        match self.states.finalize(sid, |_| Ok(true))? {
            Some(_) => {}
            None => return Err(ApiError::SectorStateNotFound(sid)),
        }
        self.stores.release_reserved(sid)?;
        Ok(())
    }

    /// `GetInfo`.
    pub async fn miner_info(&self, miner: ActorId) -> ApiResult<MinerInfo> {
        let info = self
            .chain
            .miner_info(miner)
            .await?
            .ok_or_else(|| ApiError::bad(format!("miner {miner} not found on chain")))?;
        let (_, proof) = self
            .miner_seal_proof(miner)
            .await?
            .unwrap_or((info.sector_size, info.seal_proof_type));
        Ok(MinerInfo {
            id: miner,
            addr: format!("t0{miner}"),
            sector_size: info.sector_size,
            window_post_proof_type: info.window_post_proof_type,
            seal_proof_type: proof,
        })
    }
}

/// Longest string a worker may have stored in a sector record or the worker registry.
pub const MAX_STORED_STRING: usize = 4096;

/// Refuses a `field` of `method` longer than [`MAX_STORED_STRING`], naming both.
pub(crate) fn check_len(method: &str, field: &str, value: &str) -> ApiResult<()> {
    if value.len() > MAX_STORED_STRING {
        return Err(ApiError::bad(format!(
            "{method}: {field} is {} bytes, more than the {MAX_STORED_STRING} kept",
            value.len()
        )));
    }
    Ok(())
}
