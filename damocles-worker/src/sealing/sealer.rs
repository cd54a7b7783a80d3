//! The `sealer` planner (worker-spec §2.1, with the shared steps of §2.0.4): a new sector from
//! allocation to its proof on chain.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context};
use damocles_manager_api::json::Bytes;
use damocles_manager_api::types::{
    AcquireDealsSpec, AllocateSectorSpec, OnChainState, PollStateResp, PreCommitOnChainInfo,
    ProofOnChainInfo, SealProofType, SubmitResp, SubmitResult,
};
use vc_processors::builtin::proofs::{self as vp, api};
use vc_processors::builtin::tasks::{
    self as t, Piece, PieceFile, TransferItem, TransferRoute, UnpaddedBytesAmount,
};
use vc_processors::layout;
use vc_processors::ProducerError;

use crate::config::Plan;
use crate::sealing::engine::{poll_interval, Ctx, Planner};
use crate::sealing::failure::{required, Failure, Level, StepResult, WithLevel};
use crate::sealing::state::{Event, State};

/// The level of a processor's failure: a child that died, is restarting or did not answer in
/// time may well succeed on a retry (Temporary); a task the processor itself failed needs an
/// operator (Permanent). damocles makes every processor failure Permanent, so a child killed
/// by the OOM killer pauses the thread.
trait Processed<T> {
    fn processed(self) -> StepResult<T>;
}

impl<T> Processed<T> for anyhow::Result<T> {
    fn processed(self) -> StepResult<T> {
        self.map_err(|e| {
            let transient = e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<ProducerError>(),
                    Some(
                        ProducerError::ChildExited { .. }
                            | ProducerError::Unavailable { .. }
                            | ProducerError::Timeout { .. }
                    )
                )
            });
            let level = if transient {
                Level::Temporary
            } else {
                Level::Permanent
            };
            Failure::new(level, e)
        })
    }
}

/// A failed on-chain message is resubmitted after this pause (§2.1).
const RESUBMIT_DELAY: Duration = Duration::from_secs(30);

/// The sealer planner.
#[derive(Debug, Default)]
pub struct SealerPlanner;

impl Planner for SealerPlanner {
    fn name(&self) -> &'static str {
        Plan::Sealer.as_str()
    }

    fn plan(&self, event: &Event, state: State) -> Option<State> {
        sealer_plan(event, state)
    }

    fn exec(&mut self, ctx: &mut Ctx<'_>) -> StepResult<Option<Event>> {
        match ctx.sector.state {
            State::Empty => allocate(ctx),
            State::Allocated => acquire_deals(ctx),
            State::DealsAcquired => add_pieces(ctx).map(|p| Some(Event::AddPiece(p))),
            State::PieceAdded => build_tree_d(ctx, true).map(|()| Some(Event::BuildTreeD)),
            State::TreeDBuilt => Ok(Some(Event::AssignTicket(None))),
            State::TicketAssigned => pre_commit1(ctx),
            State::PC1Done => pre_commit2(ctx),
            State::SyntheticPoRepNeeded => {
                synthetic_proof(ctx).map(|()| Some(Event::SyntheticPoRep))
            }
            State::PC2Done => submit_pre_commit(ctx),
            State::PCSubmitted => poll_pre_commit(ctx),
            State::PCLanded => persist(ctx).map(|name| Some(Event::Persist(name))),
            State::Persisted => submit_persisted(ctx).map(|()| Some(Event::SubmitPersistance)),
            State::PersistanceSubmitted => wait_seed(ctx),
            State::SeedAssigned => commit1(ctx).map(|out| Some(Event::C1(out))),
            State::C1Done => commit2(ctx),
            State::C2Done => submit_proof(ctx),
            State::ProofSubmitted => poll_proof(ctx),
            State::Finished => Ok(None),
            State::Aborted => Err(Failure::new(Level::Abort, anyhow!("task aborted"))),
            other => Err(Failure::new(
                Level::Abort,
                anyhow!("unexpected state {other} in sealer planner"),
            )),
        }
    }
}

/// The `sealer` planner's transitions (worker-spec §2.1): the next state for `event` in
/// `state`, or `None` when the event is not expected there. `SetState(s)` goes to `s` from any
/// state.
pub fn sealer_plan(event: &Event, state: State) -> Option<State> {
    use Event as E;
    use State as S;
    let next = match (state, event) {
        (_, E::SetState(s)) => *s,
        (S::Empty, E::Allocate(_)) => S::Allocated,
        (S::Allocated, E::AcquireDeals(_) | E::AcquireDealsV2(_)) => S::DealsAcquired,
        (S::DealsAcquired, E::AddPiece(_)) => S::PieceAdded,
        (S::PieceAdded, E::BuildTreeD) => S::TreeDBuilt,
        (S::TreeDBuilt, E::AssignTicket(_)) => S::TicketAssigned,
        (S::TicketAssigned, E::PC1(_, _)) => S::PC1Done,
        (S::PC1Done, E::PC2(_)) => S::PC2Done,
        (S::PC1Done, E::PC2NeedSyntheticProof(_)) => S::SyntheticPoRepNeeded,
        (S::SyntheticPoRepNeeded, E::SyntheticPoRep) => S::PC2Done,
        (S::PC2Done, E::SubmitPC) => S::PCSubmitted,
        (S::PCSubmitted, E::ReSubmitPC) => S::PC2Done,
        (S::PCSubmitted, E::CheckPC) => S::PCLanded,
        (S::PCLanded, E::Persist(_)) => S::Persisted,
        (S::Persisted, E::SubmitPersistance) => S::PersistanceSubmitted,
        (S::PersistanceSubmitted, E::AssignSeed(_)) => S::SeedAssigned,
        (S::SeedAssigned, E::C1(_)) => S::C1Done,
        (S::C1Done, E::C2(_)) => S::C2Done,
        (S::C2Done, E::SubmitProof) => S::ProofSubmitted,
        (S::ProofSubmitted, E::ReSubmitProof) => S::C2Done,
        (S::ProofSubmitted, E::Finish) => S::Finished,
        _ => return None,
    };
    Some(next)
}

fn seal_proof(ctx: &Ctx<'_>) -> StepResult<api::RegisteredSealProof> {
    let base = required(ctx.sector.base.as_ref(), "base")?;
    vp::seal_proof_from_chain(base.allocated.proof_type.0).abort()
}

fn sector_size(proof: api::RegisteredSealProof) -> u64 {
    u64::from(proof.sector_size())
}

/// Empty: ask the manager for a sector.
fn allocate(ctx: &mut Ctx<'_>) -> StepResult<Option<Event>> {
    let spec = AllocateSectorSpec {
        allowed_miners: Some(ctx.sealing.allowed_miners.clone()),
        allowed_proof_types: Some(
            ctx.sealing
                .allowed_proof_types()
                .into_iter()
                .map(SealProofType)
                .collect(),
        ),
    };
    let sector = match ctx.env.manager.allocate_sector(spec) {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(Some(Event::Idle)),
        Err(e) => {
            tracing::warn!(error = %e, "sectors are not allocated yet");
            return Ok(Some(Event::Idle));
        }
    };
    let id = sector.id;
    for dir in [
        ctx.store.cache_dir(id),
        parent(&ctx.store.staged_file(id))?,
        parent(&ctx.store.sealed_file(id))?,
    ] {
        vc_processors::builtin::create_dir_all_durable(&dir)
            .with_context(|| format!("creating {}", dir.display()))
            .crit()?;
    }
    tracing::info!(sector = %id, "sector allocated");
    Ok(Some(Event::Allocate(sector)))
}

fn parent(p: &Path) -> StepResult<PathBuf> {
    p.parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| Failure::new(Level::Critical, anyhow!("{} has no parent", p.display())))
}

/// Allocated: deals for the sector (or a CC sector).
fn acquire_deals(ctx: &mut Ctx<'_>) -> StepResult<Option<Event>> {
    if !ctx.sealing.enable_deals {
        return Ok(Some(if ctx.sealing.disable_cc {
            Event::Idle
        } else {
            Event::AcquireDealsV2(None)
        }));
    }
    let sid = ctx.sector_id()?;
    let spec = AcquireDealsSpec {
        max_deals: ctx.sealing.max_deals.map(|n| n as u64),
        min_used_space: ctx.sealing.min_deal_space.map(|b| b.0),
    };
    let deals = ctx.env.manager.acquire_deals(sid, spec)?;
    let count = deals.as_ref().map_or(0, Vec::len);
    if !ctx.sealing.disable_cc || count > 0 {
        Ok(Some(Event::AcquireDealsV2(deals)))
    } else {
        Ok(Some(Event::Idle))
    }
}

/// ADD_PIECES: the staged file from the sector's pieces.
fn add_pieces(ctx: &mut Ctx<'_>) -> StepResult<Vec<api::PieceInfo>> {
    let sid = ctx.sector_id()?;
    let proof = seal_proof(ctx)?;
    let _token = ctx.env.limits.acquire_stage("add_pieces", Some(ctx.ctrl));
    let staged = ctx.store.staged_file(sid);
    if staged.exists() {
        std::fs::remove_file(&staged)
            .with_context(|| format!("removing {}", staged.display()))
            .perm()?;
    } else {
        vc_processors::builtin::create_dir_all_durable(&parent(&staged)?)
            .with_context(|| format!("creating the parent of {}", staged.display()))
            .perm()?;
    }
    let mut pieces = Vec::new();
    if let Some(deals) = &ctx.sector.deals {
        for d in deals {
            let size = d.piece.size;
            pieces.push(Piece {
                piece_file: if d.id == 0 {
                    PieceFile::Pledge
                } else {
                    piece_file(ctx, &d.piece.cid.0)?
                },
                payload_size: d.payload_size,
                piece_size: UnpaddedBytesAmount(size / 128 * 127),
            });
        }
    } else if let Some(deals) = &ctx.sector.deals_v2 {
        for p in deals {
            let size = p.piece.size;
            pieces.push(Piece {
                piece_file: if p.is_filler() {
                    PieceFile::Pledge
                } else {
                    piece_file(ctx, &p.piece.piece_cid.0)?
                },
                payload_size: if p.is_filler() {
                    size / 128 * 127
                } else {
                    p.deal_info.payload_size
                },
                piece_size: UnpaddedBytesAmount(size / 128 * 127),
            });
        }
    }
    let infos = ctx
        .env
        .processors
        .run(
            t::AddPieces {
                seal_proof_type: proof,
                pieces,
                staged_filepath: staged.clone(),
            },
            Some(ctx.ctrl),
        )
        .processed()?;
    durable(&[&staged])?;
    Ok(infos)
}

/// fsyncs what a step wrote (files, directories and their parents) before the engine
/// records the event that relies on it: after a power cut, a recorded step's files are there.
fn durable(paths: &[&Path]) -> StepResult<()> {
    vc_processors::builtin::sync_paths(paths)
        .context("making the step's outputs durable")
        .crit()
}

/// Where a deal piece comes from: a local pieces directory, else the manager's piece store.
fn piece_file(ctx: &Ctx<'_>, cid: &str) -> StepResult<PieceFile> {
    if !ctx.env.deals_enabled {
        return Err(Failure::new(Level::Permanent, anyhow!("get piece: {cid}")));
    }
    for dir in &ctx.env.local_piece_dirs {
        for name in [cid.to_string(), format!("{cid}.car")] {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(PieceFile::Local(p));
            }
        }
    }
    Ok(PieceFile::Url(format!(
        "{}/{cid}",
        ctx.env.remote_piece_base
    )))
}

/// BUILD_TREE_D: the data tree in `prepared/` (a link to the static tree-d of a CC sector).
fn build_tree_d(ctx: &mut Ctx<'_>, allow_static: bool) -> StepResult<()> {
    let sid = ctx.sector_id()?;
    let proof = seal_proof(ctx)?;
    let _token = ctx.env.limits.acquire_stage("tree_d", Some(ctx.ctrl));
    let dir = ctx.store.prepared_dir(sid);
    vc_processors::builtin::create_dir_all_durable(&dir)
        .with_context(|| format!("creating {}", dir.display()))
        .perm()?;
    let tree_d = ctx.store.prepared_tree_d(sid);
    remove_if_present(&tree_d).crit()?;
    let has_deals = ctx.sector.deals.as_ref().is_some_and(|d| !d.is_empty())
        || ctx
            .sector
            .deals_v2
            .as_ref()
            .is_some_and(|d| d.iter().any(|p| !p.is_filler()));
    if allow_static && !has_deals {
        if let Some(file) = ctx.env.static_tree_d.get(&sector_size(proof)) {
            std::os::unix::fs::symlink(file, &tree_d)
                .with_context(|| format!("linking {} to {}", tree_d.display(), file.display()))
                .crit()?;
            return durable(&[&dir]);
        }
    }
    let built = ctx
        .env
        .processors
        .run(
            t::TreeD {
                registered_proof: proof,
                staged_file: ctx.store.staged_file(sid),
                cache_dir: dir.clone(),
            },
            Some(ctx.ctrl),
        )
        .processed()?;
    if !built {
        return Err(Failure::new(
            Level::Permanent,
            anyhow!("tree_d answered false for {sid}"),
        ));
    }
    durable(&[&dir])
}

fn remove_if_present(p: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
    }
    .with_context(|| format!("removing {}", p.display()))
}

/// PRE_COMMIT1, with the ticket drawn as late as possible (after the pc1 token).
fn pre_commit1(ctx: &mut Ctx<'_>) -> StepResult<Option<Event>> {
    let sid = ctx.sector_id()?;
    let proof = seal_proof(ctx)?;
    let _token = ctx.env.limits.acquire_stage("pc1", Some(ctx.ctrl));
    let ticket = match ctx.sector.phases.ticket.clone() {
        Some(t) => t,
        None => ctx.env.manager.assign_ticket(sid)?,
    };
    let pieces = required(ctx.sector.phases.pieces.clone(), "pieces")?;
    let ticket_bytes: [u8; 32] = ticket
        .ticket
        .0
        .as_slice()
        .try_into()
        .map_err(|_| anyhow!("the ticket is {} bytes, not 32", ticket.ticket.0.len()))
        .abort()?;
    let cache = ctx.store.cache_dir(sid);
    remove_if_present(&cache).crit()?;
    vc_processors::builtin::create_dir_all_durable(&cache)
        .with_context(|| format!("creating {}", cache.display()))
        .crit()?;
    let sealed = ctx.store.sealed_file(sid);
    std::fs::File::create(&sealed)
        .with_context(|| format!("creating {}", sealed.display()))
        .crit()?;
    std::os::unix::fs::symlink(ctx.store.prepared_tree_d(sid), ctx.store.cache_tree_d(sid))
        .context("linking the tree-d into the cache")
        .crit()?;
    let base = required(ctx.sector.base.as_ref(), "base")?;
    let out = ctx
        .env
        .processors
        .run(
            t::PC1 {
                registered_proof: proof,
                cache_path: cache.clone(),
                in_path: ctx.store.staged_file(sid),
                out_path: sealed.clone(),
                prover_id: base.prove_input.0,
                sector_id: base.prove_input.1,
                ticket: ticket_bytes,
                piece_infos: pieces,
            },
            Some(ctx.ctrl),
        )
        .processed()?;
    durable(&[&cache, &sealed])?;
    Ok(Some(Event::PC1(ticket, out)))
}

/// PRE_COMMIT2, with the restart guard.
fn pre_commit2(ctx: &mut Ctx<'_>) -> StepResult<Option<Event>> {
    let sid = ctx.sector_id()?;
    let pc1out = required(ctx.sector.phases.pc1out.clone(), "pc1out")?;
    let _token = ctx.env.limits.acquire_stage("pc2", Some(ctx.ctrl));
    let cache = ctx.store.cache_dir(sid);
    let entries = std::fs::read_dir(&cache)
        .with_context(|| format!("listing {}", cache.display()))
        .crit()?;
    for entry in entries {
        let entry = entry.context("listing the cache").crit()?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if layout::is_pc2_output(&name) {
            remove_if_present(&entry.path()).crit()?;
        }
    }
    // PC1 copies the staged data into the sealed file and PC2 encodes that file in place
    // (filecoin-proofs 19, `seal_pre_commit_phase1`: "sealed in place"). A PC2 that ran before
    // (interrupted, or finished but not yet recorded) has encoded some or all of it, so a
    // second run starts from a fresh copy of the staged file.
    let marker = ctx.store.pc2_running_marker(sid);
    let sealed = ctx.store.sealed_file(sid);
    if marker.exists() {
        tracing::warn!(sector = %sid, "PC2 ran before; restoring the sealed file from the staged data");
        remove_if_present(&sealed).crit()?;
        std::fs::copy(ctx.store.staged_file(sid), &sealed)
            .with_context(|| format!("copying the staged data to {}", sealed.display()))
            .crit()?;
    } else {
        std::fs::File::create(&marker)
            .with_context(|| format!("creating {}", marker.display()))
            .crit()?;
        // Durable before PC2 touches the sealed file: after a power cut the marker says the
        // file may be encoded already.
        durable(&[&marker])?;
    }
    let out = ctx
        .env
        .processors
        .run(
            t::PC2 {
                pc1out,
                cache_dir: cache.clone(),
                sealed_file: sealed.clone(),
            },
            Some(ctx.ctrl),
        )
        .processed()?;
    durable(&[&cache, &sealed])?;
    if ctx.sealing.verify_after_pc2 {
        run_commit1(ctx, [0; 32], out.clone())?;
    }
    // The marker stays: the PC2 event is written after this handler returns, so a crash before
    // that runs PC2 again, over a sealed file that is already encoded. (damocles removes it
    // here and then encodes the replica twice.) PC1 and finalization remove the cache dir.
    Ok(Some(if vp::needs_synthetic_proofs(out.registered_proof) {
        Event::PC2NeedSyntheticProof(out)
    } else {
        Event::PC2(out)
    }))
}

/// SYNTHETIC_PROOF: the synthetic challenges' proofs, checked, then the layers removed.
fn synthetic_proof(ctx: &mut Ctx<'_>) -> StepResult<()> {
    let sid = ctx.sector_id()?;
    let pc2out = required(ctx.sector.phases.pc2out.clone(), "pc2out")?;
    let base = required(ctx.sector.base.as_ref(), "base")?;
    let ticket = ticket_bytes(ctx)?;
    let pieces = required(ctx.sector.phases.pieces.clone(), "pieces")?;
    let _token = ctx.env.limits.acquire_stage("synth_proof", Some(ctx.ctrl));
    ctx.ctrl.set_running(Some("builtin synth_proof".into()));
    let started = std::time::Instant::now();
    vp::generate_synth_proofs(
        &ctx.store.cache_dir(sid),
        &ctx.store.sealed_file(sid),
        base.prove_input.0,
        base.prove_input.1,
        ticket,
        pc2out.clone(),
        &pieces,
    )
    .temp()?;
    for _ in 0..3 {
        let seed: [u8; 32] = rand_seed();
        run_commit1(ctx, seed, pc2out.clone()).map_err(|f| match f.level {
            Level::Permanent => Failure::new(Level::Temporary, f.error),
            _ => f,
        })?;
    }
    tracing::info!(
        stage = "synth_proof",
        ms = started.elapsed().as_millis() as u64,
        ok = true,
        "processor task"
    );
    vp::clear_layer_data(&ctx.store.cache_dir(sid)).crit()?;
    durable(&[&ctx.store.cache_dir(sid)])?;
    ctx.ctrl.set_idle();
    Ok(())
}

fn rand_seed() -> [u8; 32] {
    rand::random()
}

fn ticket_bytes(ctx: &Ctx<'_>) -> StepResult<[u8; 32]> {
    let ticket = required(ctx.sector.phases.ticket.as_ref(), "ticket")?;
    ticket
        .ticket
        .0
        .as_slice()
        .try_into()
        .map_err(|_| Failure::new(Level::Abort, anyhow!("the ticket is not 32 bytes")))
}

/// COMMIT1 in-process with `seed`.
fn run_commit1(
    ctx: &Ctx<'_>,
    seed: [u8; 32],
    pc2out: api::seal::SealPreCommitPhase2Output,
) -> StepResult<api::seal::SealCommitPhase1Output> {
    let sid = ctx.sector_id()?;
    let base = required(ctx.sector.base.as_ref(), "base")?;
    let pieces = required(ctx.sector.phases.pieces.as_ref(), "pieces")?;
    let ticket = ticket_bytes(ctx)?;
    let started = std::time::Instant::now();
    let out = vp::seal_commit_phase1(
        &ctx.store.cache_dir(sid),
        &ctx.store.sealed_file(sid),
        base.prove_input.0,
        base.prove_input.1,
        ticket,
        seed,
        pc2out,
        pieces,
    );
    let secs = started.elapsed().as_secs_f64();
    metrics::histogram!("damocles_worker_processor_task_seconds", "stage" => "c1").record(secs);
    tracing::info!(
        stage = "c1",
        ms = (secs * 1e3) as u64,
        ok = out.is_ok(),
        "processor task"
    );
    out.perm()
}

/// PC2Done: submit the PreCommit.
fn submit_pre_commit(ctx: &mut Ctx<'_>) -> StepResult<Option<Event>> {
    let base = required(ctx.sector.base.clone(), "base")?;
    let pc2out = required(ctx.sector.phases.pc2out.as_ref(), "pc2out")?;
    let ticket = required(ctx.sector.phases.ticket.clone(), "ticket")?;
    let info = PreCommitOnChainInfo {
        comm_r: pc2out.comm_r,
        comm_d: pc2out.comm_d,
        ticket,
    };
    let reset = ctx.sector.phases.pc2_re_submit;
    let sector = base.allocated;
    let resp = ctx.env.manager.submit_pre_commit(sector, info, reset)?;
    submitted(resp, "pre-commit").map(|()| Some(Event::SubmitPC))
}

fn submitted(resp: SubmitResp, what: &str) -> StepResult<()> {
    let desc = resp.desc.unwrap_or_default();
    match resp.res {
        SubmitResult::Accepted | SubmitResult::DuplicateSubmit => Ok(()),
        SubmitResult::MismatchedSubmission => Err(Failure::new(
            Level::Permanent,
            anyhow!("{what} mismatched: {desc}"),
        )),
        SubmitResult::Rejected => Err(Failure::new(
            Level::Abort,
            anyhow!("{what} rejected: {desc}"),
        )),
        other => Err(Failure::new(
            Level::Permanent,
            anyhow!("{what}: unexpected answer {other:?}: {desc}"),
        )),
    }
}

/// Polls a message until it lands: `Ok(true)` landed, `Ok(false)` failed and to be sent again.
fn poll_until_landed(
    ctx: &Ctx<'_>,
    what: &str,
    mut poll: impl FnMut() -> StepResult<PollStateResp>,
) -> StepResult<bool> {
    loop {
        let resp = poll()?;
        let desc = resp.desc.unwrap_or_default();
        match resp.state {
            OnChainState::Landed => return Ok(true),
            OnChainState::NotFound => {
                return Err(Failure::new(
                    Level::Permanent,
                    anyhow!("{what} message not found: {desc}"),
                ))
            }
            OnChainState::Failed => {
                tracing::warn!(what, desc, "message failed; submitting again");
                ctx.ctrl.sleep(RESUBMIT_DELAY)?;
                return Ok(false);
            }
            OnChainState::PermFailed => {
                return Err(Failure::new(
                    Level::Permanent,
                    anyhow!("{what} message failed permanently: {desc}"),
                ))
            }
            OnChainState::ShouldAbort => {
                return Err(Failure::new(
                    Level::Abort,
                    anyhow!("{what}: the manager says abort: {desc}"),
                ))
            }
            _ => ctx.ctrl.sleep(poll_interval(ctx))?,
        }
    }
}

/// PCSubmitted: wait for the PreCommit to land.
fn poll_pre_commit(ctx: &mut Ctx<'_>) -> StepResult<Option<Event>> {
    let sid = ctx.sector_id()?;
    let manager = ctx.env.manager.clone();
    let landed = poll_until_landed(
        ctx,
        "pre-commit",
        || Ok(manager.poll_pre_commit_state(sid)?),
    )?;
    Ok(Some(if landed {
        Event::CheckPC
    } else {
        Event::ReSubmitPC
    }))
}

/// PERSIST: reserve a store, move the sealed file and the PoSt cache files there.
fn persist(ctx: &mut Ctx<'_>) -> StepResult<String> {
    let sid = ctx.sector_id()?;
    let size = sector_size(seal_proof(ctx)?);
    let required_size = if size < 32 << 30 {
        2 * size
    } else {
        size + size / 50
    };
    let candidates: Vec<String> = ctx
        .env
        .attached
        .iter()
        .filter(|s| !s.readonly)
        .map(|s| s.name.clone())
        .collect();
    if candidates.is_empty() {
        return Err(Failure::new(
            Level::Permanent,
            anyhow!("no writable attached store"),
        ));
    }
    let chosen = loop {
        let cands = candidates.clone();
        let answer = ctx
            .env
            .manager
            .store_reserve_space(sid, required_size, cands)?;
        match answer {
            Some(info) => break info,
            None => {
                tracing::info!(sector = %sid, "no persist store has room; waiting");
                ctx.ctrl.sleep(poll_interval(ctx))?;
            }
        }
    };
    let store = ctx
        .env
        .attached
        .iter()
        .find(|s| s.name == chosen.name)
        .ok_or_else(|| {
            Failure::new(
                Level::Permanent,
                anyhow!(
                    "the manager chose store {:?}, which is not attached here",
                    chosen.name
                ),
            )
        })?;
    // File stores take absolute paths under their mount; plugin stores take object paths.
    let dest = |rel: PathBuf| {
        if store.library.is_some() {
            rel
        } else {
            store.location.join(rel)
        }
    };
    let cache_dir = ctx.store.cache_dir(sid);
    let mut routes = vec![route(
        ctx.store.sealed_file(sid),
        &store.name,
        dest(PathBuf::from(layout::sealed_rel(sid, false))),
    )];
    for name in vp::cached_filenames_for_sector(seal_proof(ctx)?) {
        routes.push(route(
            cache_dir.join(&name),
            &store.name,
            dest(PathBuf::from(layout::cache_rel(sid, false)).join(&name)),
        ));
    }
    let stores = HashMap::from([(
        store.name.clone(),
        store.transfer_info(chosen.meta.as_ref()),
    )]);
    ctx.env
        .processors
        .run(t::Transfer { stores, routes }, Some(ctx.ctrl))
        .processed()?;
    tracing::info!(sector = %sid, store = %store.name, "sector files persisted");
    Ok(store.name.clone())
}

fn route(src: PathBuf, store: &str, dest: PathBuf) -> TransferRoute {
    TransferRoute {
        src: TransferItem {
            store_name: None,
            uri: src,
        },
        dest: TransferItem {
            store_name: Some(store.to_string()),
            uri: dest,
        },
        opt: None,
    }
}

/// SUBMIT_PERSISTED.
fn submit_persisted(ctx: &mut Ctx<'_>) -> StepResult<()> {
    let sid = ctx.sector_id()?;
    let instance = required(
        ctx.sector.phases.persist_instance.clone(),
        "persist_instance",
    )?;
    let ok = ctx.env.manager.submit_persisted_ex(sid, instance, false)?;
    if !ok {
        return Err(Failure::new(
            Level::Permanent,
            anyhow!("sector files are persisted but unavailable for sealer"),
        ));
    }
    Ok(())
}

/// PersistanceSubmitted: wait for the interactive seed.
fn wait_seed(ctx: &mut Ctx<'_>) -> StepResult<Option<Event>> {
    let sid = ctx.sector_id()?;
    let proof_type = required(ctx.sector.base.as_ref(), "base")?
        .allocated
        .proof_type;
    loop {
        let resp = ctx.env.manager.wait_seed(sid, proof_type)?;
        if let Some(seed) = resp.seed {
            return Ok(Some(Event::AssignSeed(seed)));
        }
        if !resp.should_wait || resp.delay <= 0 {
            return Err(Failure::new(
                Level::Temporary,
                anyhow!("invalid empty wait_seed response"),
            ));
        }
        let delay = Duration::from_secs(resp.delay.unsigned_abs());
        tracing::debug!(sector = %sid, ?delay, "waiting for the seed");
        ctx.ctrl.sleep(delay)?;
    }
}

/// COMMIT1 with the seed.
fn commit1(ctx: &mut Ctx<'_>) -> StepResult<api::seal::SealCommitPhase1Output> {
    let seed = required(ctx.sector.phases.seed.as_ref(), "seed")?;
    let seed: [u8; 32] = seed
        .seed
        .0
        .as_slice()
        .try_into()
        .map_err(|_| Failure::new(Level::Abort, anyhow!("the seed is not 32 bytes")))?;
    let pc2out = required(ctx.sector.phases.pc2out.clone(), "pc2out")?;
    let _token = ctx.env.limits.acquire_stage("c1", Some(ctx.ctrl));
    ctx.ctrl.set_running(Some("builtin c1".into()));
    let out = run_commit1(ctx, seed, pc2out);
    ctx.ctrl.set_idle();
    out
}

/// C1Done: the SNARK.
fn commit2(ctx: &mut Ctx<'_>) -> StepResult<Option<Event>> {
    let c1out = required(ctx.sector.phases.c1out.clone(), "c1out")?;
    let base = required(ctx.sector.base.as_ref(), "base")?;
    let task = t::C2 {
        c1out,
        prover_id: base.prove_input.0,
        sector_id: base.prove_input.1,
        miner_id: base.allocated.id.miner,
    };
    let _token = ctx.env.limits.acquire_stage("c2", Some(ctx.ctrl));
    let out = ctx.env.processors.run(task, Some(ctx.ctrl)).processed()?;
    Ok(Some(Event::C2(out)))
}

/// C2Done: submit the proof.
fn submit_proof(ctx: &mut Ctx<'_>) -> StepResult<Option<Event>> {
    let sid = ctx.sector_id()?;
    let proof = required(ctx.sector.phases.c2out.as_ref(), "c2out")?
        .proof
        .clone();
    let reset = ctx.sector.phases.c2_re_submit;
    let info = ProofOnChainInfo {
        proof: Bytes(proof),
    };
    let resp = ctx.env.manager.submit_proof(sid, info, reset)?;
    submitted(resp, "proof").map(|()| Some(Event::SubmitProof))
}

/// ProofSubmitted: wait for the proof to land, then free the large cache files early.
fn poll_proof(ctx: &mut Ctx<'_>) -> StepResult<Option<Event>> {
    let sid = ctx.sector_id()?;
    if !ctx.sealing.ignore_proof_check {
        let manager = ctx.env.manager.clone();
        let landed = poll_until_landed(ctx, "proof", || Ok(manager.poll_proof_state(sid)?))?;
        if !landed {
            return Ok(Some(Event::ReSubmitProof));
        }
    }
    let cache = ctx.store.cache_dir(sid);
    vp::guard("clear_cache", || api::seal::clear_cache(&cache)).temp()?;
    Ok(Some(Event::Finish))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sealing::state::tests::{allocated, every_event, snap_encode_out};

    #[test]
    fn sealer_transitions_are_exactly_the_table() {
        // (from, event name, to), worker-spec §2.1.
        let edges = [
            (State::Empty, "Allocate", State::Allocated),
            (State::Allocated, "AcquireDeals", State::DealsAcquired),
            (State::DealsAcquired, "AddPiece", State::PieceAdded),
            (State::PieceAdded, "BuildTreeD", State::TreeDBuilt),
            (State::TreeDBuilt, "AssignTicket", State::TicketAssigned),
            (State::TicketAssigned, "PC1", State::PC1Done),
            (State::PC1Done, "PC2", State::PC2Done),
            (
                State::PC1Done,
                "PC2NeedSyntheticProof",
                State::SyntheticPoRepNeeded,
            ),
            (
                State::SyntheticPoRepNeeded,
                "SyntheticPoRep",
                State::PC2Done,
            ),
            (State::PC2Done, "SubmitPC", State::PCSubmitted),
            (State::PCSubmitted, "ReSubmitPC", State::PC2Done),
            (State::PCSubmitted, "CheckPC", State::PCLanded),
            (State::PCLanded, "Persist", State::Persisted),
            (
                State::Persisted,
                "SubmitPersistance",
                State::PersistanceSubmitted,
            ),
            (
                State::PersistanceSubmitted,
                "AssignSeed",
                State::SeedAssigned,
            ),
            (State::SeedAssigned, "C1", State::C1Done),
            (State::C1Done, "C2", State::C2Done),
            (State::C2Done, "SubmitProof", State::ProofSubmitted),
            (State::ProofSubmitted, "ReSubmitProof", State::C2Done),
            (State::ProofSubmitted, "Finish", State::Finished),
        ];
        let events = every_event();
        let mut allowed = 0;
        for state in State::ALL {
            for event in &events {
                let want = edges
                    .iter()
                    .find(|(from, name, _)| *from == state && *name == event.name())
                    .map(|(_, _, to)| *to);
                assert_eq!(
                    sealer_plan(event, state),
                    want,
                    "{} in {state}",
                    event.name()
                );
                allowed += usize::from(want.is_some());
            }
            for target in State::ALL {
                assert_eq!(sealer_plan(&Event::SetState(target), state), Some(target));
            }
        }
        // 20 edges, AcquireDeals counted for both variants.
        assert_eq!(allowed, 21);
        // A few refusals spelled out.
        assert_eq!(
            sealer_plan(&Event::Allocate(allocated(1)), State::Allocated),
            None
        );
        assert_eq!(sealer_plan(&Event::Finish, State::C2Done), None);
        assert_eq!(
            sealer_plan(&Event::SnapEncode(snap_encode_out()), State::TreeDBuilt),
            None
        );
        assert_eq!(sealer_plan(&Event::Idle, State::Empty), None);
    }
}
