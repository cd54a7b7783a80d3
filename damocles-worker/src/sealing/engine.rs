//! The engine that drives one sector through a planner (worker-spec §1.6): plan the next state
//! from an event, write it to the sector record, run the state's handler, report to the
//! manager, and react to failures by level.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use damocles_manager_api::types::{
    ReportStateReq, SectorFailure, SectorId, SectorStateChange, WorkerIdentifier,
};

use crate::config::SealingConfig;
use crate::limits::LimitPool;
use crate::port::{ManagerError, ManagerPort};
use crate::processors::Processors;
use crate::sealing::control::ThreadControl;
use crate::sealing::failure::{Failure, Level, StepResult, WithLevel};
use crate::sealing::state::{display_stage, Event, Sector, State};
use crate::sealing::store::SealingStore;

/// A persist store the worker can write to (`[[attached]]` or scanned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedStore {
    /// Instance name, shared with the manager.
    pub name: String,
    /// Root directory (for file stores).
    pub location: PathBuf,
    /// Never a persist candidate.
    pub readonly: bool,
    /// objstore plugin serving the store (our addition), with its meta.
    pub plugin: Option<String>,
    /// The plugin's library file, found in `worker.plugin_dir`.
    pub library: Option<PathBuf>,
    /// Plugin settings; they override the manager's `Meta` of the store key by key.
    pub meta: BTreeMap<String, String>,
}

impl AttachedStore {
    /// How a transfer reaches this store: the manager's `Meta` with this worker's `meta` on
    /// top and, for a plugin store, the plugin to open it with.
    pub fn transfer_info(
        &self,
        manager_meta: Option<&BTreeMap<String, String>>,
    ) -> vc_processors::builtin::tasks::TransferStoreInfo {
        let mut meta: std::collections::HashMap<String, String> = manager_meta
            .map(|m| m.clone().into_iter().collect())
            .unwrap_or_default();
        // Keys are case-insensitive to the plugins: a worker key replaces the manager's key
        // of any case.
        meta.retain(|k, _| !self.meta.keys().any(|w| w.eq_ignore_ascii_case(k)));
        meta.extend(self.meta.clone());
        vc_processors::builtin::tasks::TransferStoreInfo {
            name: self.name.clone(),
            meta: Some(meta),
            plugin: self.library.as_ref().map(|library| {
                vc_processors::builtin::tasks::TransferPlugin {
                    library: library.clone(),
                    path: self.location.display().to_string(),
                }
            }),
        }
    }
}

/// What every sealing thread shares.
pub struct SealingEnv {
    /// The manager.
    pub manager: Arc<dyn ManagerPort>,
    /// Processors of every stage.
    pub processors: Arc<Processors>,
    /// Stage limits.
    pub limits: Arc<LimitPool>,
    /// The worker's instance name (`ReportState.Worker.Instance`).
    pub instance: String,
    /// Persist stores.
    pub attached: Vec<AttachedStore>,
    /// Local directories holding deal pieces (`<dir>/<cid>`, `<dir>/<cid>.car`).
    pub local_piece_dirs: Vec<PathBuf>,
    /// `<manager origin>/piecestore`.
    pub remote_piece_base: String,
    /// Pieces may be fetched (global `[sealing] enable_deals`).
    pub deals_enabled: bool,
    /// Static tree-d files by sector size.
    pub static_tree_d: BTreeMap<u64, PathBuf>,
    /// The attached stores served by an objstore plugin, opened at start-up, by name.
    pub object_stores: BTreeMap<String, Arc<dyn objstore::ObjectStore>>,
    /// Where wdpost threads fetch sectors of object stores for a proof.
    pub post_scratch: PathBuf,
}

impl std::fmt::Debug for SealingEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealingEnv")
            .field("instance", &self.instance)
            .field("attached", &self.attached)
            .finish_non_exhaustive()
    }
}

/// What a planner's handler works with.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The thread's sealing store.
    pub store: &'a SealingStore,
    /// The sector record (saved by the engine after every applied event).
    pub sector: Sector,
    /// The thread's effective sealing settings.
    pub sealing: &'a SealingConfig,
    /// The thread's control block.
    pub ctrl: &'a ThreadControl,
    /// Shared services.
    pub env: &'a SealingEnv,
}

impl Ctx<'_> {
    /// The allocated sector's id; Abort if the record has none.
    pub fn sector_id(&self) -> StepResult<SectorId> {
        self.sector
            .sector_id()
            .ok_or_else(|| Failure::new(Level::Abort, anyhow!("base is required")))
    }

    /// Persists the sector record.
    pub fn save(&self) -> StepResult<()> {
        self.store.save_sector(&self.sector).crit()
    }
}

/// A planner: the transition table and the handlers of its states.
pub trait Planner {
    /// Its name, as stored in the sector record.
    fn name(&self) -> &'static str;
    /// The state after `event` in `state`, if the table has that edge.
    fn plan(&self, event: &Event, state: State) -> Option<State>;
    /// Runs the handler of the sector's current state: the next event, or `None` when the
    /// sector is finished.
    fn exec(&mut self, ctx: &mut Ctx<'_>) -> StepResult<Option<Event>>;
}

/// How a sealing round ended well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The sector is done (finished, or no task after the idle retries).
    Done,
    /// The sector record belongs to another planner.
    SwitchPlanner(String),
}

/// Drives the sector of `ctx` with `planner` until it is done, a planner switch is needed, or
/// a failure stops it (Permanent, Critical, Abort, or an interrupt).
pub fn seal(
    planner: &mut dyn Planner,
    ctx: &mut Ctx<'_>,
    resume_state: Option<String>,
) -> Result<Outcome, Failure> {
    let mut event = resume_state.and_then(|s| match s.parse::<State>() {
        Ok(state) => Some(Event::SetState(state)),
        Err(e) => {
            tracing::error!(error = %e, "resume state ignored");
            None
        }
    });
    if let Some(reason) = ctx.sector.abort_pending.clone() {
        // An abort the manager did not take before a restart or a pause: finish it first.
        let f = Failure::new(Level::Abort, anyhow!(reason));
        abort(ctx, planner.name(), &f)?;
        return Err(f);
    }
    let mut idle_count = 0u32;
    loop {
        let prev = ctx.sector.state;
        if ctx.sector.plan() != planner.name() {
            return Ok(Outcome::SwitchPlanner(ctx.sector.plan().to_string()));
        }
        let event_name = event.as_ref().map(|e| e.name());
        let handled = handle(planner, ctx, event.take());
        let sid = ctx.sector.sector_id();
        ctx.ctrl.set_job(
            sid.map(|s| s.to_string()),
            ctx.sector.state.as_str(),
            Some(display_stage(ctx.sector.state, ctx.sector.plan())),
        );
        if let Some(sid) = sid {
            report(ctx, sid, prev, event_name, handled.as_ref().err())?;
        }
        match handled {
            Ok(Some(Event::Idle)) => {
                idle_count += 1;
                if idle_count > ctx.sealing.request_task_max_retries {
                    return Ok(Outcome::Done);
                }
                event = Some(Event::Idle);
            }
            Ok(Some(e)) => event = Some(e),
            Ok(None) => {
                let Some(sid) = sid else {
                    return Err(Failure::new(
                        Level::Critical,
                        anyhow!("state {} ended without a sector", ctx.sector.state),
                    ));
                };
                match ctx.env.manager.report_finalized(sid) {
                    Ok(()) => {
                        ctx.store.finalize().crit()?;
                        ctx.sector = Sector::new(planner.name());
                        tracing::info!(sector = %sid, "sector finished");
                        return Ok(Outcome::Done);
                    }
                    Err(e) => retry(ctx, e.into())?,
                }
            }
            Err(f) if f.is_interrupt() => return Err(f),
            Err(f) if f.level == Level::Abort => {
                abort(ctx, planner.name(), &f)?;
                return Err(f);
            }
            Err(f) if f.level == Level::Temporary => retry(ctx, f)?,
            Err(f) => return Err(f),
        }
    }
}

/// Applies `event` (if any), then honours a pause or stop request, then runs the handler of
/// the resulting state. The event is written first so that a pause never throws away finished
/// work (damocles drops the pending event, so a pause right after PC1 runs PC1 again).
fn handle(
    planner: &mut dyn Planner,
    ctx: &mut Ctx<'_>,
    event: Option<Event>,
) -> StepResult<Option<Event>> {
    let mut idle = false;
    match event {
        None => {}
        Some(Event::Idle | Event::Retry) => idle = true,
        Some(e) => {
            let state = ctx.sector.state;
            let next = match &e {
                Event::SetState(s) => *s,
                other => planner.plan(other, state).ok_or_else(|| {
                    Failure::new(
                        Level::Critical,
                        anyhow!("unexpected event {} for state {state}", other.name()),
                    )
                })?,
            };
            let name = e.name();
            ctx.sector.apply(e, next).crit()?;
            ctx.save()?;
            tracing::debug!(event = name, from = %state, to = %next, "sector state changed");
        }
    }
    ctx.ctrl.check_interrupt()?;
    if idle {
        ctx.ctrl.sleep(ctx.sealing.recover_interval.0)?;
    }
    ctx.ctrl.set_job(
        ctx.sector.sector_id().map(|s| s.to_string()),
        ctx.sector.state.as_str(),
        Some(display_stage(ctx.sector.state, ctx.sector.plan())),
    );
    let started = std::time::Instant::now();
    let state = ctx.sector.state;
    let out = planner.exec(ctx);
    let secs = started.elapsed().as_secs_f64();
    metrics::histogram!("damocles_worker_step_seconds", "state" => state.as_str()).record(secs);
    if let Some(sid) = ctx.sector.sector_id() {
        tracing::info!(
            sector = %sid,
            state = state.as_str(),
            ms = (secs * 1e3) as u64,
            ok = out.is_ok(),
            "step"
        );
    }
    out
}

/// `Venus.ReportState` after a step; a manager that answers `Finalized` has dropped the
/// sector, which is then wiped here too (an Abort).
fn report(
    ctx: &mut Ctx<'_>,
    sid: SectorId,
    prev: State,
    event: Option<&'static str>,
    failure: Option<&Failure>,
) -> StepResult<()> {
    // A pause is not a failure: only the transition made before it is reported.
    let interrupted = failure.is_some_and(Failure::is_interrupt);
    let failure = failure.filter(|f| !f.is_interrupt());
    if interrupted && prev == ctx.sector.state {
        return Ok(());
    }
    let req = ReportStateReq {
        worker: WorkerIdentifier {
            instance: ctx.env.instance.clone(),
            location: ctx.store.location().display().to_string(),
        },
        state_change: SectorStateChange {
            prev: prev.as_str().to_string(),
            next: ctx.sector.state.as_str().to_string(),
            // damocles always sends "None" here (its event was moved out before formatting).
            event: event.unwrap_or("None").to_string(),
        },
        failure: failure.map(|f| SectorFailure {
            level: f.level.wire_name().to_string(),
            desc: f.desc(),
        }),
    };
    let resp = match ctx.env.manager.report_state(sid, req) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(sector = %sid, error = %e, "reporting the state failed");
            return Ok(());
        }
    };
    if resp.finalized {
        tracing::warn!(sector = %sid, reason = %resp.abort_reason, "cleanup aborted sector");
        ctx.store.finalize().crit()?;
        ctx.sector = Sector::new(ctx.sector.plan().to_string());
        let reason = if resp.abort_reason.is_empty() {
            "task aborted".to_string()
        } else {
            resp.abort_reason
        };
        return Err(Failure::new(Level::Abort, anyhow!(reason)));
    }
    Ok(())
}

/// The retry rule: up to `max_retries` (counted per sector, persisted), then Permanent.
fn retry(ctx: &mut Ctx<'_>, failure: Failure) -> StepResult<()> {
    if ctx.sector.retry >= ctx.sealing.max_retries {
        ctx.sector.retry = 0;
        ctx.save()?;
        return Err(Failure::new(Level::Permanent, failure.error));
    }
    ctx.sector.retry += 1;
    ctx.save()?;
    tracing::warn!(
        retry = ctx.sector.retry,
        max = ctx.sealing.max_retries,
        error = %format!("{:#}", failure.error),
        "temporary failure; retrying"
    );
    ctx.ctrl.sleep(ctx.sealing.recover_interval.0)?;
    Ok(())
}

/// The Abort path: tell the manager, wipe the sector locally.
///
/// The abort is recorded first and `ReportAborted` sent until the manager takes it (or says
/// it does not know the sector): wiping before that would leave the manager holding the
/// sector's deals and reservation for a sector that no longer exists. A pause or a stop in
/// between keeps the record, and the abort is sent again when the thread runs again.
fn abort(ctx: &mut Ctx<'_>, plan: &str, failure: &Failure) -> StepResult<()> {
    if let Some(sid) = ctx.sector.sector_id() {
        let reason = failure.desc();
        if ctx.sector.abort_pending.as_deref() != Some(reason.as_str()) {
            ctx.sector.abort_pending = Some(reason.clone());
            ctx.save()?;
        }
        let mut tries = 0u64;
        loop {
            match ctx.env.manager.report_aborted(sid, reason.clone()) {
                Ok(()) => break,
                Err(ManagerError::SectorStateNotFound { .. }) => {
                    tracing::warn!(sector = %sid, "the manager does not know the aborted sector");
                    break;
                }
                Err(e) => {
                    tries += 1;
                    metrics::counter!("damocles_worker_abort_report_failures_total").increment(1);
                    tracing::warn!(sector = %sid, tries, error = %e, "reporting the abort failed; the sector's files are kept and the report sent again");
                    ctx.ctrl.sleep(ctx.sealing.recover_interval.0)?;
                }
            }
        }
        tracing::warn!(sector = %sid, error = %failure, "sector aborted");
    }
    if let Err(e) = ctx.store.finalize() {
        tracing::error!(error = %format!("{e:#}"), "wiping the aborted sector failed");
    }
    ctx.sector = Sector::new(plan);
    Ok(())
}

/// Sleeps between polls; the pause between two sectors (`seal_interval`) only ends early at
/// shutdown.
pub fn poll_interval(ctx: &Ctx<'_>) -> Duration {
    ctx.sealing.rpc_polling_interval.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::{memory::MemoryManager, ManagerResult, Method};
    use damocles_manager_api::types::{AllocatedSector, SealProofType};

    fn env(manager: Arc<MemoryManager>) -> SealingEnv {
        let limits = Arc::new(LimitPool::unlimited());
        let processors = Processors::start(
            &crate::config::ProcessorsConfig::default(),
            limits.clone(),
            None,
            std::path::Path::new("/nonexistent/damocles-worker"),
        )
        .expect("in-process processors");
        SealingEnv {
            manager,
            processors: Arc::new(processors),
            limits,
            instance: "w1".into(),
            attached: Vec::new(),
            local_piece_dirs: Vec::new(),
            remote_piece_base: String::new(),
            deals_enabled: false,
            static_tree_d: BTreeMap::new(),
            object_stores: BTreeMap::new(),
            post_scratch: std::env::temp_dir(),
        }
    }

    /// A planner that is never reached: the pending abort is handled before any step.
    struct Unreached;

    impl Planner for Unreached {
        fn name(&self) -> &'static str {
            "sealer"
        }
        fn plan(&self, _: &Event, _: State) -> Option<State> {
            None
        }
        fn exec(&mut self, _: &mut Ctx<'_>) -> StepResult<Option<Event>> {
            panic!("a step ran before the pending abort was reported")
        }
    }

    fn unavailable() -> ManagerResult<()> {
        Err(ManagerError::Unavailable {
            method: Method::ReportAborted,
            cause: Arc::new(std::io::Error::other("connection refused")),
        })
    }

    #[test]
    fn an_abort_the_manager_did_not_take_keeps_the_files_and_is_sent_again_before_anything() {
        let dir = tempfile::tempdir().expect("tmp");
        let location = dir.path().join("t0");
        let manager = Arc::new(MemoryManager::default());
        let env = env(manager.clone());
        let short = crate::config::HumanDuration(Duration::from_millis(10));
        let sealing = SealingConfig {
            recover_interval: short,
            ..SealingConfig::default()
        };
        let ctrl = ThreadControl::new(0, None, "sealer");
        let sid = SectorId {
            miner: 1000,
            number: 7,
        };
        let staged = {
            let store = SealingStore::init(&location, true).expect("init");
            let mut sector = Sector::new("sealer");
            sector
                .apply(
                    Event::Allocate(AllocatedSector {
                        id: sid,
                        proof_type: SealProofType(5),
                    }),
                    State::Allocated,
                )
                .expect("allocate");
            let staged = store.data_dir().join("staged-file");
            std::fs::write(&staged, b"days of work").expect("staged");
            let mut ctx = Ctx {
                store: &store,
                sector,
                sealing: &sealing,
                ctrl: &ctrl,
                env: &env,
            };
            // The manager is down; a pause comes while the worker waits to send it again.
            manager.answer(Method::ReportAborted, unavailable());
            manager.answer(Method::ReportAborted, unavailable());
            let pauser = {
                let ctrl = ctrl.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(15));
                    ctrl.request_pause();
                })
            };
            let failure = Failure::new(Level::Abort, anyhow!("test: ticket expired"));
            let out = abort(&mut ctx, "sealer", &failure);
            pauser.join().expect("pauser");
            assert!(
                out.is_err_and(|f| f.is_interrupt()),
                "the pause ends the wait"
            );
            assert!(
                staged.exists(),
                "nothing is wiped before the manager took the abort"
            );
            let saved = store.load_sector().expect("load").expect("record");
            assert_eq!(saved.abort_pending.as_deref(), Some("test: ticket expired"));
            assert_eq!(saved.sector_id(), Some(sid));
            staged
        };

        // The thread runs again (a resume, or a restart of the worker): the abort goes first.
        let store = SealingStore::open(&location).expect("reopen");
        let sector = store.load_sector().expect("load").expect("record");
        let mut ctx = Ctx {
            store: &store,
            sector,
            sealing: &sealing,
            ctrl: &ctrl,
            env: &env,
        };
        manager.answer(Method::ReportAborted, Ok(()));
        let out = seal(&mut Unreached, &mut ctx, None);
        assert!(
            out.is_err_and(|f| f.level == Level::Abort),
            "the round ends as an abort"
        );
        assert!(!staged.exists(), "wiped once the manager took it");
        assert_eq!(ctx.sector.sector_id(), None, "a fresh record");
        assert_eq!(
            store
                .load_sector()
                .expect("load")
                .and_then(|s| s.abort_pending),
            None,
            "no abort left to send"
        );
        let calls = manager.calls_of(Method::ReportAborted);
        assert!(calls.len() >= 2, "{calls:?}");
        for call in &calls {
            assert_eq!(call[1], "test: ticket expired", "{calls:?}");
        }
    }
}
