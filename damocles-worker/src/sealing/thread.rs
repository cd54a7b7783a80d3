//! One sealing thread (worker-spec §1.3): sector after sector, pausing on Permanent and
//! Critical failures until `worker resume`, re-reading its hot config between sectors.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{anyhow, Context};

use crate::config::{
    load_hot, EffectiveThread, HotConfig, Plan, SealingConfig, SealingThreadConfig,
};
use crate::sealing::control::ThreadControl;
use crate::sealing::engine::{seal, Ctx, Outcome, Planner, SealingEnv};
use crate::sealing::failure::{Failure, Level, StepResult, WithLevel};
use crate::sealing::sealer::SealerPlanner;
use crate::sealing::state::{Sector, State};
use crate::sealing::store::SealingStore;

/// The hot config file as last seen: its modification time, `None` when absent.
#[derive(Debug, Default)]
struct HotWatch {
    seen: Option<Option<SystemTime>>,
    current: Option<HotConfig>,
}

impl HotWatch {
    fn mtime(location: &Path) -> Option<SystemTime> {
        std::fs::metadata(crate::config::hot_config_path(location))
            .and_then(|m| m.modified())
            .ok()
    }

    /// Re-reads the file when it appeared, changed or disappeared; answers whether it did.
    fn refresh(&mut self, location: &Path) -> anyhow::Result<bool> {
        let now = Self::mtime(location);
        if self.seen == Some(now) {
            return Ok(false);
        }
        self.current = load_hot(location)?;
        self.seen = Some(now);
        Ok(true)
    }
}

/// A sealing thread.
#[derive(Debug)]
pub struct SealingThread {
    cfg: SealingThreadConfig,
    global: SealingConfig,
    ctrl: ThreadControl,
    env: Arc<SealingEnv>,
    location: PathBuf,
    hot: HotWatch,
}

impl SealingThread {
    /// A thread over the store at `location` (already initialised); reads its hot config
    /// once, so a broken one stops the start-up.
    pub fn new(
        cfg: SealingThreadConfig,
        global: SealingConfig,
        ctrl: ThreadControl,
        env: Arc<SealingEnv>,
        location: PathBuf,
    ) -> anyhow::Result<Self> {
        let mut hot = HotWatch::default();
        hot.refresh(&location)?;
        let t = SealingThread {
            cfg,
            global,
            ctrl,
            env,
            location,
            hot,
        };
        let eff = t.effective();
        eff.check()
            .with_context(|| format!("sealing thread at {}", t.location.display()))?;
        t.ctrl.set_plan(eff.plan.as_str());
        Ok(t)
    }

    fn effective(&self) -> EffectiveThread {
        self.cfg.effective(&self.global, self.hot.current.as_ref())
    }

    /// Runs until the daemon stops.
    pub fn run(mut self) {
        let mut resume: Option<String> = None;
        loop {
            if self.ctrl.is_stopped() {
                return;
            }
            match self.seal_one(resume.take()) {
                Ok(()) => {}
                Err(f) if f.level == Level::Abort => {
                    tracing::warn!(thread = self.ctrl.index(), error = %f, "sector aborted; taking the next one");
                }
                Err(f) => {
                    if self.ctrl.is_stopped() {
                        return;
                    }
                    let last_error = if f.is_interrupt() {
                        tracing::info!(thread = self.ctrl.index(), "paused");
                        None
                    } else {
                        tracing::error!(thread = self.ctrl.index(), error = %f, "sealing failed; the thread pauses until `worker resume`");
                        Some(f.to_string())
                    };
                    match self.ctrl.wait_for_resume(last_error) {
                        Ok(state) => {
                            tracing::info!(thread = self.ctrl.index(), state = ?state, "resumed");
                            resume = state;
                            continue;
                        }
                        Err(_) => return,
                    }
                }
            }
            self.ctrl.set_job(None, "", None);
            self.ctrl.set_idle();
            let pause = self.effective().sealing.seal_interval.0;
            if self.ctrl.sleep_until_stop(pause).is_err() {
                return;
            }
        }
    }

    /// One sector (§1.3 `seal_one`).
    fn seal_one(&mut self, resume: Option<String>) -> StepResult<()> {
        if self
            .hot
            .refresh(&self.location)
            .with_context(|| format!("sealing thread at {}", self.location.display()))
            .crit()?
        {
            tracing::info!(location = %self.location.display(), "hot config applied");
        }
        let eff = self.effective();
        eff.check().crit()?;
        let mut plan = eff.plan.as_str().to_string();
        loop {
            self.ctrl.set_plan(&plan);
            let mut planner: Box<dyn Planner> = match plan.as_str() {
                p if p == Plan::Sealer.as_str() => Box::new(SealerPlanner),
                other => {
                    return Err(Failure::new(
                        Level::Critical,
                        anyhow!("unknown planner: {other} (this worker runs `sealer` threads)"),
                    ))
                }
            };
            let store = SealingStore::open(&self.location).crit()?;
            let mut sector = match store.load_sector().crit()? {
                Some(s) => s,
                None => {
                    let s = Sector::new(plan.as_str());
                    store.save_sector(&s).crit()?;
                    s
                }
            };
            // Nothing allocated yet: the record follows the thread's current plan.
            if sector.state == State::Empty && sector.base.is_none() && sector.plan() != plan {
                sector.plan = Some(plan.clone());
                store.save_sector(&sector).crit()?;
            }
            let mut ctx = Ctx {
                store: &store,
                sector,
                sealing: &eff.sealing,
                ctrl: &self.ctrl,
                env: &self.env,
            };
            match seal(planner.as_mut(), &mut ctx, resume.clone())? {
                Outcome::Done => return Ok(()),
                Outcome::SwitchPlanner(p) => {
                    tracing::info!(from = %plan, to = %p, "the sector belongs to another planner");
                    plan = p;
                }
            }
        }
    }
}
