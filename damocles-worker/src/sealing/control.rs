//! A sealing thread's control state (worker-spec §1.3, §5.1): what `worker list` shows, the
//! pause and resume requests, and the interruptible waits that observe them.
//!
//! The sealing thread is a plain OS thread. Its waits (recover interval, polling, WaitSeed delays,
//! reservation waits) go through [`ThreadControl::sleep`], which returns early when a pause is
//! requested or the daemon stops; running processor work is never interrupted.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

/// What the thread is doing, as `VenusWorker.WorkerList` reports it (internally tagged by
/// `state`, elapsed seconds since it entered the state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state")]
pub enum ThreadStateView {
    /// Between steps.
    Idle,
    /// Stopped after a failure or a pause request, waiting for `resume`.
    Paused {
        /// Seconds since it paused.
        elapsed: u64,
    },
    /// Running a processor or a stage.
    Running {
        /// Seconds since it started.
        elapsed: u64,
        /// The processor, e.g. `builtin pc1` or `ext(pid: 1234)`.
        proc: Option<String>,
    },
    /// Waiting for a stage token or a processor.
    Waiting {
        /// Seconds since it started waiting.
        elapsed: u64,
    },
}

/// One thread in `VenusWorker.WorkerList` (snake_case, §5.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerThreadInfo {
    /// The sealing store, `-` for a thread without one.
    pub location: String,
    /// The thread's plan.
    pub plan: String,
    /// The sector in work, `s-t0<miner>-<number>`.
    pub job_id: Option<String>,
    /// Position of the thread.
    pub index: usize,
    /// Control state.
    pub thread_state: ThreadStateView,
    /// The sector's state name, empty when there is none.
    pub job_state: String,
    /// The display stage (worker-spec §2.0.2).
    pub job_stage: Option<String>,
    /// `<level>: <error>` of the failure that paused the thread, or the panic it was
    /// restarted after.
    pub last_error: Option<String>,
    /// Times the thread was started again after a panic (ours; absent from damocles).
    #[serde(default)]
    pub restarts: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Activity {
    Idle,
    Paused(Instant),
    Running(Instant, Option<String>),
    Waiting(Instant),
}

#[derive(Debug)]
struct Inner {
    activity: Activity,
    plan: String,
    job_id: Option<String>,
    job_state: String,
    job_stage: Option<String>,
    last_error: Option<String>,
    restarts: u64,
    /// A pause request not yet observed (capacity one, §5.1).
    pause_pending: bool,
    /// The thread waits in [`ThreadControl::wait_for_resume`].
    waiting_for_resume: bool,
    /// A resume handed to the waiting thread: `Some(state)` or `Some(None)`.
    resume: Option<Option<String>>,
    stopped: bool,
    started: SystemTime,
}

/// Why an interruptible wait ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupted {
    /// A pause was requested.
    Pause,
    /// The daemon is stopping.
    Stop,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Interrupted::Pause => "interrupt: pause requested",
            Interrupted::Stop => "interrupt: the daemon is stopping",
        })
    }
}

impl std::error::Error for Interrupted {}

/// The shared control block of one sealing thread: the thread updates it, the control server
/// and the ping module read it and send requests.
#[derive(Debug, Clone)]
pub struct ThreadControl {
    index: usize,
    location: Option<String>,
    inner: Arc<(Mutex<Inner>, Condvar)>,
}

impl ThreadControl {
    /// The control block of thread `index` working in `location` with `plan`.
    pub fn new(index: usize, location: Option<String>, plan: &str) -> Self {
        ThreadControl {
            index,
            location,
            inner: Arc::new((
                Mutex::new(Inner {
                    activity: Activity::Idle,
                    plan: plan.to_string(),
                    job_id: None,
                    job_state: String::new(),
                    job_stage: None,
                    last_error: None,
                    restarts: 0,
                    pause_pending: false,
                    waiting_for_resume: false,
                    resume: None,
                    stopped: false,
                    started: SystemTime::now(),
                }),
                Condvar::new(),
            )),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The thread's position.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The snapshot `worker list` shows.
    pub fn info(&self) -> WorkerThreadInfo {
        let g = self.lock();
        let secs = |t: &Instant| t.elapsed().as_secs();
        WorkerThreadInfo {
            location: self.location.clone().unwrap_or_else(|| "-".into()),
            plan: g.plan.clone(),
            job_id: g.job_id.clone(),
            index: self.index,
            thread_state: match &g.activity {
                Activity::Idle => ThreadStateView::Idle,
                Activity::Paused(t) => ThreadStateView::Paused { elapsed: secs(t) },
                Activity::Running(t, p) => ThreadStateView::Running {
                    elapsed: secs(t),
                    proc: p.clone(),
                },
                Activity::Waiting(t) => ThreadStateView::Waiting { elapsed: secs(t) },
            },
            job_state: g.job_state.clone(),
            job_stage: g.job_stage.clone(),
            last_error: g.last_error.clone(),
            restarts: g.restarts,
        }
    }

    /// The thread is started again after `why` (a panic): counted, shown as its last error.
    pub fn record_restart(&self, why: String) {
        let mut g = self.lock();
        g.restarts += 1;
        g.last_error = Some(why);
        g.activity = Activity::Idle;
    }

    /// Records the plan in use.
    pub fn set_plan(&self, plan: &str) {
        self.lock().plan = plan.to_string();
    }

    /// Records the sector in work and its state (None clears them).
    pub fn set_job(&self, id: Option<String>, state: &str, stage: Option<&str>) {
        let mut g = self.lock();
        g.job_id = id;
        g.job_state = state.to_string();
        g.job_stage = stage.map(str::to_string);
    }

    /// The thread is between steps.
    pub fn set_idle(&self) {
        self.lock().activity = Activity::Idle;
    }

    /// The thread waits for a stage token or a processor.
    pub fn set_waiting(&self) {
        self.lock().activity = Activity::Waiting(Instant::now());
    }

    /// The thread runs `proc` (None: a stage without a named processor).
    pub fn set_running(&self, proc: Option<String>) {
        self.lock().activity = Activity::Running(Instant::now(), proc);
    }

    /// Requests a pause; `false` if one is already pending or the thread is paused already
    /// (damocles queues that one and pauses again right after the next resume).
    pub fn request_pause(&self) -> bool {
        let mut g = self.lock();
        if g.pause_pending || g.waiting_for_resume {
            return false;
        }
        g.pause_pending = true;
        self.inner.1.notify_all();
        true
    }

    /// Resumes a paused thread, optionally in `state`; `false` unless it waits for a resume.
    pub fn request_resume(&self, state: Option<String>) -> bool {
        let mut g = self.lock();
        if !g.waiting_for_resume || g.resume.is_some() {
            return false;
        }
        g.resume = Some(state);
        self.inner.1.notify_all();
        true
    }

    /// Tells the thread the daemon stops: every wait returns.
    pub fn stop(&self) {
        self.lock().stopped = true;
        self.inner.1.notify_all();
    }

    /// Whether the daemon stops.
    pub fn is_stopped(&self) -> bool {
        self.lock().stopped
    }

    /// Consumes a pending pause request, or reports a stop; the engine calls it at the top of
    /// every step.
    pub fn check_interrupt(&self) -> Result<(), Interrupted> {
        let mut g = self.lock();
        if g.stopped {
            return Err(Interrupted::Stop);
        }
        if g.pause_pending {
            g.pause_pending = false;
            return Err(Interrupted::Pause);
        }
        Ok(())
    }

    /// Sleeps `d`, unless a pause is requested or the daemon stops first.
    pub fn sleep(&self, d: Duration) -> Result<(), Interrupted> {
        self.wait(d, true)
    }

    /// Sleeps `d`, returning early only when the daemon stops (the pause between two sectors
    /// is not interrupted by a pause request, §1.3).
    pub fn sleep_until_stop(&self, d: Duration) -> Result<(), Interrupted> {
        self.wait(d, false)
    }

    /// Waits `d`; a stop ends it early, and so does a pause request if `pausable`.
    fn wait(&self, d: Duration, pausable: bool) -> Result<(), Interrupted> {
        let deadline = Instant::now() + d;
        let mut g = self.lock();
        loop {
            if g.stopped {
                return Err(Interrupted::Stop);
            }
            if pausable && g.pause_pending {
                g.pause_pending = false;
                return Err(Interrupted::Pause);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            g = self
                .inner
                .1
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Pauses the thread with `last_error` (None for a requested pause) and waits for a
    /// resume. Answers the state to resume in, or `Err(Stop)`.
    pub fn wait_for_resume(
        &self,
        last_error: Option<String>,
    ) -> Result<Option<String>, Interrupted> {
        let mut g = self.lock();
        g.activity = Activity::Paused(Instant::now());
        if last_error.is_some() {
            g.last_error = last_error;
        }
        g.waiting_for_resume = true;
        loop {
            if g.stopped {
                g.waiting_for_resume = false;
                return Err(Interrupted::Stop);
            }
            if let Some(state) = g.resume.take() {
                g.waiting_for_resume = false;
                g.pause_pending = false;
                g.activity = Activity::Idle;
                g.last_error = None;
                return Ok(state);
            }
            g = self
                .inner
                .1
                .wait_timeout(g, Duration::from_secs(60))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// When the control block was created (the thread's start).
    pub fn started(&self) -> SystemTime {
        self.lock().started
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_interrupts_a_sleep_once_and_a_second_request_is_refused_while_pending() {
        let c = ThreadControl::new(0, Some("/s".into()), "sealer");
        assert!(c.request_pause());
        assert!(!c.request_pause(), "capacity one");
        let t = Instant::now();
        assert_eq!(c.sleep(Duration::from_secs(30)), Err(Interrupted::Pause));
        assert!(t.elapsed() < Duration::from_secs(1));
        assert_eq!(c.sleep(Duration::from_millis(20)), Ok(()), "consumed");
        assert!(c.request_pause());
        assert_eq!(c.check_interrupt(), Err(Interrupted::Pause));
        assert_eq!(c.check_interrupt(), Ok(()));
    }

    #[test]
    fn a_pause_does_not_cut_the_pause_between_sectors_but_a_stop_does() {
        let c = ThreadControl::new(0, None, "sealer");
        assert!(c.request_pause());
        assert_eq!(c.sleep_until_stop(Duration::from_millis(30)), Ok(()));
        let c2 = c.clone();
        let h = std::thread::spawn(move || c2.sleep_until_stop(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(50));
        c.stop();
        assert_eq!(h.join().expect("join"), Err(Interrupted::Stop));
    }

    #[test]
    fn resume_reaches_only_a_waiting_thread_and_clears_the_error() {
        let c = ThreadControl::new(2, Some("/s".into()), "sealer");
        assert!(!c.request_resume(None), "not paused");
        let c2 = c.clone();
        let h = std::thread::spawn(move || c2.wait_for_resume(Some("permanent: boom".into())));
        let t = Instant::now();
        while !matches!(c.info().thread_state, ThreadStateView::Paused { .. }) {
            assert!(t.elapsed() < Duration::from_secs(5), "never paused");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(c.info().last_error.as_deref(), Some("permanent: boom"));
        assert!(!c.request_pause(), "already paused");
        // Wait until the thread is really waiting.
        while !c.request_resume(Some("Aborted".into())) {
            assert!(t.elapsed() < Duration::from_secs(5), "never waiting");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(h.join().expect("join"), Ok(Some("Aborted".into())));
        assert_eq!(c.check_interrupt(), Ok(()), "no pause left over");
        let info = c.info();
        assert_eq!(info.thread_state, ThreadStateView::Idle);
        assert_eq!(info.last_error, None);
        assert_eq!(info.index, 2);
    }

    #[test]
    fn the_list_entry_has_the_wire_shape() {
        let c = ThreadControl::new(1, None, "sealer");
        c.set_job(Some("s-t01000-3".into()), "PC1Done", Some("PC2"));
        c.set_running(Some("builtin pc2".into()));
        let v = serde_json::to_value(c.info()).expect("json");
        assert_eq!(v["location"], "-");
        assert_eq!(v["job_id"], "s-t01000-3");
        assert_eq!(v["job_state"], "PC1Done");
        assert_eq!(v["job_stage"], "PC2");
        assert_eq!(v["thread_state"]["state"], "Running");
        assert_eq!(v["thread_state"]["proc"], "builtin pc2");
        assert!(v["thread_state"]["elapsed"].is_u64());
        c.set_idle();
        let v = serde_json::to_value(c.info()).expect("json");
        assert_eq!(v["thread_state"], serde_json::json!({"state": "Idle"}));
    }
}
