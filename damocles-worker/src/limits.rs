//! The named limit pool (worker-spec §1.10, §6.7): stage limits and ext locks.
//!
//! Terms:
//! - a **stage limit** `stage-<name>` bounds the tasks of one stage (`pc1`, `c2`, …, the names of
//!   [`crate::config::LIMIT_NAMES`]). It is a counting semaphore (`processors.limitation.concurrent`,
//!   or the legacy `processors.limit` when that table is absent) and/or a start spacing
//!   (`processors.limitation.staggered`, see [`Staggered`]). A planner takes the stage token with
//!   [`LimitPool::acquire_stage`] before it prepares the stage and holds it until the stage ends;
//! - an **ext lock** `ext-<name>` (`processors.ext_locks`) is a counting semaphore that external
//!   processors hold per task through their `locks = [...]` (see `crate::processors`).
//!
//! - the **post hold**: while a `wdpost` thread proves a job ([`LimitPool::hold_for_post`]),
//!   the heavy stages of [`HEAVY_STAGES`] wait before they start
//!   (`processors.priority.hold_sealing_during_post`).
//!
//! Every name is optional: a name without a limit is unlimited, silently. The API blocks the
//! calling OS thread (sealing threads are plain threads); tokens are released on drop. A blocked
//! acquire is not interrupted by a pause or stop request (as in damocles).
//!
//! Metrics: the gauge `damocles_worker_limit_in_use{limit="stage-pc1"}` counts the tokens held
//! per limit, and `damocles_worker_limit_capacity{limit}` its size.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::config::{ProcessorsConfig, HEAVY_STAGES};
use crate::sealing::control::ThreadControl;

/// Key prefix of stage limits in the pool.
pub const STAGE_PREFIX: &str = "stage-";
/// Key prefix of ext locks in the pool.
pub const EXT_PREFIX: &str = "ext-";

const IN_USE_GAUGE: &str = "damocles_worker_limit_in_use";
const CAPACITY_GAUGE: &str = "damocles_worker_limit_capacity";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A counting semaphore for OS threads. A capacity of 0 never lets anyone in.
#[derive(Debug)]
pub struct Semaphore {
    label: Option<String>,
    capacity: usize,
    used: Mutex<usize>,
    freed: Condvar,
}

impl Semaphore {
    /// A semaphore of `capacity` tokens; with a `label`, its use is published as the gauge
    /// `damocles_worker_limit_in_use{limit=<label>}`.
    pub fn new(label: Option<String>, capacity: usize) -> Self {
        if let Some(label) = &label {
            metrics::gauge!(CAPACITY_GAUGE, "limit" => label.clone()).set(capacity as f64);
            metrics::gauge!(IN_USE_GAUGE, "limit" => label.clone()).set(0.0);
        }
        Semaphore {
            label,
            capacity,
            used: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// Number of tokens.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of tokens held now.
    pub fn in_use(&self) -> usize {
        *lock(&self.used)
    }

    /// Takes a token if one is free.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut used = lock(&self.used);
        if *used >= self.capacity {
            return None;
        }
        *used += 1;
        self.report(*used);
        Some(Permit { sem: self.clone() })
    }

    /// Takes a token, waiting as long as it takes.
    pub fn acquire(self: &Arc<Self>) -> Permit {
        let mut used = lock(&self.used);
        while *used >= self.capacity {
            used = self.freed.wait(used).unwrap_or_else(|p| p.into_inner());
        }
        *used += 1;
        self.report(*used);
        Permit { sem: self.clone() }
    }

    fn release(&self) {
        let mut used = lock(&self.used);
        *used = used.saturating_sub(1);
        self.report(*used);
        drop(used);
        self.freed.notify_one();
    }

    fn report(&self, used: usize) {
        if let Some(label) = &self.label {
            metrics::gauge!(IN_USE_GAUGE, "limit" => label.clone()).set(used as f64);
        }
    }
}

/// One token of a [`Semaphore`]; given back on drop.
#[derive(Debug)]
pub struct Permit {
    sem: Arc<Semaphore>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.sem.release();
    }
}

/// Start spacing of one stage (`processors.limitation.staggered.<stage>`): **two starts of the
/// stage are at least `interval` apart**, however soon the first task ends. Waiting starts go
/// in arrival order, each one `interval` after the previous start.
///
/// This is the documented intent of damocles' setting ("the second task starts `interval` after
/// the first one started"). damocles' implementation (a one-token bucket refilled when the holder
/// finishes or on a free-running timer) lets a start through as soon as the previous task ends,
/// and otherwise at the next timer tick, so it only spaces starts by *up to* `interval`.
/// Nothing is held after the start: the spacing does not limit how many tasks run at once.
#[derive(Debug)]
pub struct Staggered {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl Staggered {
    /// Starts spaced by `interval`.
    pub fn new(interval: Duration) -> Self {
        Staggered {
            interval,
            next: Mutex::new(None),
        }
    }

    /// The spacing.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Waits for this caller's start slot (reserving it at once, so callers are served in
    /// arrival order) and returns at the start time.
    pub fn wait(&self) {
        let start = {
            let mut next = lock(&self.next);
            let now = Instant::now();
            let start = match *next {
                Some(at) if at > now => at,
                _ => now,
            };
            // An interval too large for `Instant` leaves the next start unconstrained rather
            // than panicking (config validation keeps intervals sane).
            *next = start.checked_add(self.interval);
            start
        };
        let now = Instant::now();
        if start > now {
            std::thread::sleep(start - now);
        }
    }
}

/// A held stage token ([`LimitPool::acquire_stage`]). Dropping it releases the concurrency slot
/// and sets the sealing thread `Idle`.
#[derive(Debug)]
pub struct StageToken {
    stage: String,
    _permit: Option<Permit>,
    ctrl: Option<ThreadControl>,
}

impl StageToken {
    /// The stage name it was taken for.
    pub fn stage(&self) -> &str {
        &self.stage
    }
}

impl Drop for StageToken {
    fn drop(&mut self) {
        if let Some(ctrl) = &self.ctrl {
            ctrl.set_idle();
        }
    }
}

/// Held ext locks ([`LimitPool::try_acquire_ext`], [`LimitPool::acquire_ext`]); released on
/// drop.
#[derive(Debug, Default)]
pub struct ExtLocks {
    permits: Vec<Permit>,
}

impl ExtLocks {
    /// Number of limited locks held (names without a limit hold nothing).
    pub fn len(&self) -> usize {
        self.permits.len()
    }

    /// Whether no limited lock is held.
    pub fn is_empty(&self) -> bool {
        self.permits.is_empty()
    }
}

/// The hold-back of heavy sealing stages while this worker proves WindowPoSt
/// (`processors.priority.hold_sealing_during_post`): the jobs holding, each by the number it
/// got when it began, and a wake-up for the stages waiting on them.
#[derive(Debug, Default)]
struct PostHold {
    state: Mutex<HoldState>,
    released: Condvar,
}

#[derive(Debug, Default)]
struct HoldState {
    next: u64,
    holding: std::collections::BTreeSet<u64>,
}

/// One WindowPoSt job holding heavy sealing stages back ([`LimitPool::hold_for_post`]);
/// dropping it lets them start again once the jobs that held them before have ended too.
#[derive(Debug)]
pub struct PostHoldGuard {
    hold: Arc<PostHold>,
    number: u64,
}

impl Drop for PostHoldGuard {
    fn drop(&mut self) {
        let mut state = lock(&self.hold.state);
        state.holding.remove(&self.number);
        metrics::gauge!(POST_HOLD_GAUGE).set(state.holding.len() as f64);
        drop(state);
        self.hold.released.notify_all();
    }
}

const POST_HOLD_GAUGE: &str = "damocles_worker_post_hold_jobs";

/// The longest a stage is held back: a WindowPoSt deadline's window is 30 minutes, so a job
/// still holding after that is stuck, and sealing goes on.
pub const MAX_POST_HOLD: Duration = Duration::from_secs(30 * 60);

/// All named limits of the worker: stage limits and ext locks (worker-spec §1.10), and the
/// hold-back of heavy stages during WindowPoSt.
#[derive(Debug, Default)]
pub struct LimitPool {
    /// Counting semaphores by key (`stage-<name>`, `ext-<name>`).
    counting: BTreeMap<String, Arc<Semaphore>>,
    /// Start spacings by key (`stage-<name>`).
    staggered: BTreeMap<String, Staggered>,
    /// Set when heavy stages wait for WindowPoSt jobs.
    post_hold: Option<Arc<PostHold>>,
}

impl LimitPool {
    /// A pool without any limit.
    pub fn unlimited() -> Self {
        LimitPool::default()
    }

    /// The pool of `[processors]`: `limitation.concurrent` (or the legacy `limit` when that
    /// table is absent; the two are not merged), `limitation.staggered` and `ext_locks`.
    ///
    /// Intervals are used as given (config validation refuses those under 1 s; a zero interval
    /// means no spacing). A count of 0 is refused: it would block its holders forever.
    pub fn from_config(cfg: &ProcessorsConfig) -> Result<LimitPool> {
        let table = if cfg.limitation.concurrent.is_some() {
            "processors.limitation.concurrent"
        } else {
            "processors.limit"
        };
        let mut pool = LimitPool::default();
        for (name, count) in cfg.concurrent_limits() {
            if count == 0 {
                bail!(
                    "`{table}.{name}` = 0 would block the stage forever (remove it for no limit)"
                );
            }
            let key = format!("{STAGE_PREFIX}{name}");
            pool.counting
                .insert(key.clone(), Arc::new(Semaphore::new(Some(key), count)));
        }
        for (name, interval) in &cfg.limitation.staggered {
            if interval.get().is_zero() {
                continue;
            }
            pool.staggered.insert(
                format!("{STAGE_PREFIX}{name}"),
                Staggered::new(interval.get()),
            );
        }
        for (name, count) in &cfg.ext_locks {
            if *count == 0 {
                bail!("`processors.ext_locks.{name}` = 0 would block its holders forever");
            }
            let key = format!("{EXT_PREFIX}{name}");
            pool.counting
                .insert(key.clone(), Arc::new(Semaphore::new(Some(key), *count)));
        }
        if cfg.priority.hold_sealing_during_post {
            pool.post_hold = Some(Arc::default());
            metrics::gauge!(POST_HOLD_GAUGE).set(0.0);
        }
        Ok(pool)
    }

    /// Holds the heavy sealing stages ([`HEAVY_STAGES`]) back until the guard is dropped:
    /// their new tasks wait in [`LimitPool::acquire_stage`], running ones go on. `None` when
    /// the hold-back is off.
    pub fn hold_for_post(&self) -> Option<PostHoldGuard> {
        let hold = self.post_hold.as_ref()?;
        let mut state = lock(&hold.state);
        let number = state.next;
        state.next += 1;
        state.holding.insert(number);
        metrics::gauge!(POST_HOLD_GAUGE).set(state.holding.len() as f64);
        Some(PostHoldGuard {
            hold: hold.clone(),
            number,
        })
    }

    /// The number the next WindowPoSt job will get.
    fn post_mark(&self) -> u64 {
        self.post_hold.as_ref().map_or(0, |h| lock(&h.state).next)
    }

    /// Whether a WindowPoSt job that began at or after `mark` holds `stage` back now.
    fn held_since(&self, stage: &str, mark: u64) -> bool {
        HEAVY_STAGES.contains(&stage)
            && self
                .post_hold
                .as_ref()
                .is_some_and(|h| lock(&h.state).holding.range(mark..).next().is_some())
    }

    /// Waits while WindowPoSt jobs hold `stage` back: until the jobs holding now have ended
    /// (jobs that begin meanwhile do not extend the wait, so overlapping jobs cannot starve
    /// sealing), at most [`MAX_POST_HOLD`].
    fn wait_for_post(&self, stage: &str) {
        let Some(hold) = self.post_hold.as_ref() else {
            return;
        };
        if !HEAVY_STAGES.contains(&stage) {
            return;
        }
        let mut state = lock(&hold.state);
        let Some(&last) = state.holding.iter().next_back() else {
            return;
        };
        let since = Instant::now();
        tracing::info!(
            stage,
            "stage held back while this worker proves a WindowPoSt job"
        );
        metrics::counter!("damocles_worker_stages_held_for_post_total", "stage" => stage.to_string())
            .increment(1);
        while state.holding.first().is_some_and(|&first| first <= last) {
            let left = MAX_POST_HOLD.saturating_sub(since.elapsed());
            if left.is_zero() {
                tracing::warn!(stage, held = ?since.elapsed(), "stage starts although a WindowPoSt job still holds it: the job is stuck");
                return;
            }
            state = hold
                .released
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        tracing::info!(stage, waited = ?since.elapsed(), "stage starts: the WindowPoSt job ended");
    }

    /// One line per limit, for start-up logs: `stage-pc1: 2 at once`, `stage-pc2: starts 5m
    /// apart`, `ext-gpu: 1 at once`.
    pub fn describe(&self) -> Vec<String> {
        let counting = self
            .counting
            .iter()
            .map(|(key, sem)| format!("{key}: {} at once", sem.capacity()));
        let staggered = self.staggered.iter().map(|(key, st)| {
            format!(
                "{key}: starts {} apart",
                humantime::format_duration(st.interval())
            )
        });
        counting.chain(staggered).collect()
    }

    /// Takes the token of stage `name`: its concurrency slot first, then its start slot
    /// ([`Staggered`]). A stage without limits passes at once.
    ///
    /// With `ctrl`, the thread is `Waiting` while this blocks, then `Running` without a
    /// processor name; dropping the token sets it `Idle` (worker-spec §1.10).
    pub fn acquire_stage(&self, name: &str, ctrl: Option<&ThreadControl>) -> StageToken {
        if let Some(ctrl) = ctrl {
            ctrl.set_waiting();
        }
        // Before the slot is taken, so a held-back stage keeps no slot from others; and again
        // once it is, since a job may have begun while the stage waited for its slot.
        let key = format!("{STAGE_PREFIX}{name}");
        let permit = loop {
            self.wait_for_post(name);
            let mark = self.post_mark();
            let permit = self.counting.get(&key).map(|sem| sem.acquire());
            if !self.held_since(name, mark) {
                break permit;
            }
        };
        if let Some(staggered) = self.staggered.get(&key) {
            staggered.wait();
        }
        if let Some(ctrl) = ctrl {
            ctrl.set_running(None);
        }
        StageToken {
            stage: name.to_string(),
            _permit: permit,
            ctrl: ctrl.cloned(),
        }
    }

    /// Takes every ext lock of `names` without waiting, or none of them. Names without a limit
    /// always succeed.
    pub fn try_acquire_ext<S: AsRef<str>>(&self, names: &[S]) -> Option<ExtLocks> {
        let mut permits = Vec::with_capacity(names.len());
        for name in names {
            if let Some(sem) = self.ext(name.as_ref()) {
                // On failure, the permits taken so far are dropped, hence released.
                permits.push(sem.try_acquire()?);
            }
        }
        Some(ExtLocks { permits })
    }

    /// Takes every ext lock of `names`, in order, waiting for each.
    pub fn acquire_ext<S: AsRef<str>>(&self, names: &[S]) -> ExtLocks {
        let permits = names
            .iter()
            .filter_map(|name| self.ext(name.as_ref()))
            .map(|sem| sem.acquire())
            .collect();
        ExtLocks { permits }
    }

    fn ext(&self, name: &str) -> Option<&Arc<Semaphore>> {
        self.counting.get(&format!("{EXT_PREFIX}{name}"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::config::HumanDuration;
    use crate::sealing::control::ThreadStateView;

    fn pool(f: impl FnOnce(&mut ProcessorsConfig)) -> LimitPool {
        let mut cfg = ProcessorsConfig::default();
        f(&mut cfg);
        LimitPool::from_config(&cfg).expect("pool")
    }

    #[test]
    fn a_concurrent_limit_of_two_lets_exactly_two_holders_in() {
        let pool = pool(|c| {
            c.limitation.concurrent = Some(BTreeMap::from([("pc1".to_string(), 2)]));
        });
        let a = pool.acquire_stage("pc1", None);
        let b = pool.acquire_stage("pc1", None);
        let ctrl = ThreadControl::new(0, None, "sealer");
        std::thread::scope(|s| {
            let (tx, rx) = mpsc::channel();
            let (pool, ctrl2) = (&pool, ctrl.clone());
            s.spawn(move || {
                let token = pool.acquire_stage("pc1", Some(&ctrl2));
                tx.send(token).expect("send");
            });
            assert!(
                rx.recv_timeout(Duration::from_millis(150)).is_err(),
                "a third holder got in"
            );
            assert!(matches!(
                ctrl.info().thread_state,
                ThreadStateView::Waiting { .. }
            ));
            drop(a);
            let c = rx
                .recv_timeout(Duration::from_secs(5))
                .expect("third holder");
            assert_eq!(c.stage(), "pc1");
            assert!(matches!(
                ctrl.info().thread_state,
                ThreadStateView::Running { proc: None, .. }
            ));
            drop(c);
            assert_eq!(ctrl.info().thread_state, ThreadStateView::Idle);
        });
        drop(b);
        assert_eq!(pool.counting["stage-pc1"].in_use(), 0);
    }

    #[test]
    fn the_legacy_limit_table_is_used_only_without_limitation_concurrent() {
        let legacy = pool(|c| c.limit = Some(BTreeMap::from([("c2".to_string(), 1)])));
        assert_eq!(legacy.counting["stage-c2"].capacity(), 1);
        let both = pool(|c| {
            c.limit = Some(BTreeMap::from([("c2".to_string(), 1)]));
            c.limitation.concurrent = Some(BTreeMap::new());
        });
        assert!(both.counting.is_empty(), "the tables are not merged");
    }

    #[test]
    fn staggered_starts_are_an_interval_apart_even_when_the_first_ends_at_once() {
        let pool = pool(|c| {
            c.limitation
                .staggered
                .insert("pc2".into(), HumanDuration(Duration::from_millis(300)));
        });
        let t0 = Instant::now();
        drop(pool.acquire_stage("pc2", None));
        let first = t0.elapsed();
        assert!(first < Duration::from_millis(100), "first start waited");
        drop(pool.acquire_stage("pc2", None));
        let second = t0.elapsed();
        assert!(
            second >= Duration::from_millis(300),
            "second start after {second:?}"
        );
    }

    #[test]
    fn unknown_names_are_unlimited() {
        let pool = pool(|c| {
            c.limitation.concurrent = Some(BTreeMap::from([("pc1".to_string(), 1)]));
            c.ext_locks.insert("gpu".into(), 1);
        });
        let held: Vec<StageToken> = (0..50).map(|_| pool.acquire_stage("c2", None)).collect();
        assert_eq!(held.len(), 50);
        let a = pool.acquire_ext(&["cpu", "other"]);
        let b = pool.try_acquire_ext(&["cpu", "other"]).expect("unlimited");
        assert!(a.is_empty() && b.is_empty());
    }

    #[test]
    fn ext_try_acquire_fails_while_held_and_releases_what_it_took() {
        let pool = pool(|c| {
            c.ext_locks.insert("gpu".into(), 1);
            c.ext_locks.insert("cpu".into(), 2);
        });
        let held = pool.try_acquire_ext(&["gpu"]).expect("free");
        assert_eq!(held.len(), 1);
        assert!(pool.try_acquire_ext(&["gpu"]).is_none());
        assert!(pool.try_acquire_ext(&["cpu", "gpu"]).is_none());
        assert_eq!(pool.counting["ext-cpu"].in_use(), 0, "cpu given back");
        drop(held);
        let both = pool.try_acquire_ext(&["cpu", "gpu"]).expect("free again");
        assert_eq!(both.len(), 2);
        assert_eq!(pool.counting["ext-gpu"].in_use(), 1);
        drop(both);
        assert_eq!(pool.counting["ext-gpu"].in_use(), 0);
        assert!(pool.counting.contains_key("ext-cpu") && !pool.counting.contains_key("stage-cpu"));
    }

    #[test]
    fn heavy_stages_wait_while_a_window_post_job_is_held_and_light_ones_do_not() {
        let limits = Arc::new(pool(|_| {}));
        let guard = limits.hold_for_post().expect("on by default");
        let second = limits.hold_for_post().expect("two jobs");
        // Light stages pass at once.
        drop(limits.acquire_stage("c1", None));
        drop(limits.acquire_stage("tree_d", None));
        let (tx, rx) = mpsc::channel();
        let p2 = limits.clone();
        let h = std::thread::spawn(move || {
            let token = p2.acquire_stage("c2", None);
            tx.send(token.stage().to_string()).expect("send");
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "c2 must wait while a job is held"
        );
        drop(guard);
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "one job still holds"
        );
        drop(second);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).expect("c2 starts"),
            "c2"
        );
        h.join().expect("join");

        // A job that begins while a stage waits does not extend its wait.
        let first = limits.hold_for_post().expect("hold");
        let (tx, rx) = mpsc::channel();
        let p2 = limits.clone();
        let h = std::thread::spawn(move || {
            let token = p2.acquire_stage("pc2", None);
            tx.send(token.stage().to_string()).expect("send");
        });
        std::thread::sleep(Duration::from_millis(100));
        let later = limits.hold_for_post().expect("hold");
        drop(first);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5))
                .expect("pc2 starts when the job it waited for ends"),
            "pc2"
        );
        h.join().expect("join");
        drop(later);

        let off = pool(|c| c.priority.hold_sealing_during_post = false);
        assert!(off.hold_for_post().is_none());
        drop(off.acquire_stage("pc1", None));
    }

    #[test]
    fn a_zero_count_is_refused() {
        let mut cfg = ProcessorsConfig::default();
        cfg.ext_locks.insert("gpu".into(), 0);
        let err = LimitPool::from_config(&cfg).expect_err("zero lock");
        assert!(
            err.to_string().contains("processors.ext_locks.gpu"),
            "{err}"
        );
        let cfg = ProcessorsConfig {
            limit: Some(BTreeMap::from([("pc1".to_string(), 0)])),
            ..ProcessorsConfig::default()
        };
        let err = LimitPool::from_config(&cfg).expect_err("zero limit");
        assert!(err.to_string().contains("processors.limit.pc1"), "{err}");
    }
}
