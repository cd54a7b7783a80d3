//! The supervisor of the daemon's long-lived background tasks (chain, commitments, outbox,
//! WindowPoSt, WinningPoSt, job maintenance, metrics upkeep).
//!
//! Each task has a name. A run that returns an error or panics is logged with that name and
//! started again after a backoff (1 s doubling to 60 s; back to 1 s after a run that lasted a
//! minute). A *critical* task that fails [`CRITICAL_FAILURES`] times in a row without such a
//! stable run stops the daemon with a message naming it, so WindowPoSt never ends silently.
//! Every task's status (state, restarts, last error, last progress) is served to
//! `util tasks` and exported as metrics.
//!
//! A run gets its own cancellation token, a child of the daemon's: it is cancelled when the
//! run ends, so whatever the run spawned with a child of it ends too before the next run.
//! Short-lived work a task starts beside its run is a *job*: a deadline's proofs end with the
//! run ([`TaskContext::spawn_job`]); a message to watch or an election to answer outlives it
//! and ends with the daemon ([`TaskContext::spawn_lasting_job`]). A panic in a job is logged
//! with the task's name and the job's, counted and kept as the task's last error, and told to
//! the task through the job's handle, so nothing ends silently.
//!
//! For tests, `DAMOCLES_MANAGER_INJECT_PANIC=<task>@<n>` makes the named task panic at its
//! n-th progress report (once).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::util::unix_now;

/// A critical task that fails this many times in a row stops the daemon.
pub const CRITICAL_FAILURES: u32 = 5;
/// The first pause before a restart.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest pause before a restart.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A run this long resets the backoff and the count of failures in a row.
const STABLE_RUN: Duration = Duration::from_secs(60);
/// The environment variable of the panic injection (tests).
pub const INJECT_PANIC_ENV: &str = "DAMOCLES_MANAGER_INJECT_PANIC";

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskState {
    /// A run is going on.
    Running,
    /// The last run failed; the next starts after a backoff.
    Restarting,
    /// The task ended on its own (it had nothing to do), or the daemon is stopping.
    Finished,
    /// A critical task that kept failing: the daemon stops.
    Failed,
}

/// A task's status, as `util tasks` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskStatus {
    /// The task's name.
    pub name: String,
    /// Its failure stops the daemon.
    pub critical: bool,
    /// Where it is.
    pub state: TaskState,
    /// Runs started after a failure.
    pub restarts: u64,
    /// The last failure (an error or a panic message).
    pub last_error: Option<String>,
    /// When it failed last (unix seconds).
    pub last_error_at: Option<i64>,
    /// When it last reported progress (unix seconds).
    pub last_progress_at: Option<i64>,
    /// When the current (or last) run started (unix seconds).
    pub started_at: i64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A panic to inject: the task and the progress report at which it panics.
#[derive(Debug)]
struct InjectedPanic {
    task: String,
    at: u64,
    fired: AtomicBool,
}

impl InjectedPanic {
    /// `<task>@<n>`; anything else is ignored with a warning.
    fn parse(spec: &str) -> Option<InjectedPanic> {
        let parsed = spec
            .split_once('@')
            .and_then(|(task, n)| Some((task, n.parse::<u64>().ok()?)))
            .filter(|(task, n)| !task.is_empty() && *n > 0);
        match parsed {
            Some((task, at)) => Some(InjectedPanic {
                task: task.to_string(),
                at,
                fired: AtomicBool::new(false),
            }),
            None => {
                tracing::warn!(
                    value = spec,
                    "{INJECT_PANIC_ENV} is not <task>@<n>; ignored"
                );
                None
            }
        }
    }
}

/// What a run of a task works with.
#[derive(Debug, Clone)]
pub struct TaskContext {
    stop: CancellationToken,
    daemon_stop: CancellationToken,
    status: Arc<Mutex<TaskStatus>>,
    progress: Arc<AtomicU64>,
    inject: Option<Arc<InjectedPanic>>,
}

impl TaskContext {
    /// Cancelled when the daemon stops or this run ends.
    pub fn stop(&self) -> &CancellationToken {
        &self.stop
    }

    /// Records that the task did a round of its work (shown as its last progress).
    pub fn progress(&self) {
        let reports = self.progress.fetch_add(1, Ordering::Relaxed) + 1;
        let (name, now) = {
            let mut status = lock(&self.status);
            status.last_progress_at = Some(unix_now());
            (status.name.clone(), status.last_progress_at)
        };
        if let Some(at) = now {
            metrics::gauge!("damocles_manager_task_last_progress_seconds", "task" => name.clone())
                .set(at as f64);
        }
        if let Some(inject) = &self.inject {
            if inject.task == name
                && reports >= inject.at
                && !inject.fired.swap(true, Ordering::SeqCst)
            {
                panic!("injected panic ({INJECT_PANIC_ENV}) in task {name}");
            }
        }
    }
}

/// How a job ended, as its [`JobHandle`] tells.
const JOB_RUNNING: u8 = 0;
const JOB_ENDED: u8 = 1;
const JOB_PANICKED: u8 = 2;

/// A job started with [`TaskContext::spawn_job`].
#[derive(Debug, Clone, Default)]
pub struct JobHandle {
    outcome: Arc<AtomicU8>,
}

impl JobHandle {
    /// The job has not ended yet.
    pub fn is_running(&self) -> bool {
        self.outcome.load(Ordering::SeqCst) == JOB_RUNNING
    }

    /// The job ended with a panic.
    pub fn panicked(&self) -> bool {
        self.outcome.load(Ordering::SeqCst) == JOB_PANICKED
    }
}

impl TaskContext {
    /// Runs `job` beside this run of the task; it is dropped when the run's stop token is
    /// cancelled. A panic ends only the job: it is logged with the task's name and `label`,
    /// counted in `damocles_manager_task_job_panics_total` and kept as the task's last error,
    /// and the handle says so, for the task to start the work again when it must.
    pub fn spawn_job(
        &self,
        label: impl Into<String>,
        job: impl Future<Output = ()> + Send + 'static,
    ) -> JobHandle {
        self.spawn_job_until(label.into(), self.stop.clone(), job)
    }

    /// The same as [`TaskContext::spawn_job`] for work whose end is wanted even when the task
    /// restarts meanwhile (an election being answered, a sent message being watched): it is
    /// dropped only when the daemon stops.
    pub fn spawn_lasting_job(
        &self,
        label: impl Into<String>,
        job: impl Future<Output = ()> + Send + 'static,
    ) -> JobHandle {
        self.spawn_job_until(label.into(), self.daemon_stop.clone(), job)
    }

    fn spawn_job_until(
        &self,
        label: String,
        stop: CancellationToken,
        job: impl Future<Output = ()> + Send + 'static,
    ) -> JobHandle {
        let handle = JobHandle::default();
        let outcome = handle.outcome.clone();
        let status = self.status.clone();
        let inner = tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = job => {}
            }
        });
        tokio::spawn(async move {
            let ended = match inner.await {
                Err(join) if join.is_panic() => {
                    let message = format!(
                        "job {label} panicked: {}",
                        vc_processors::protocol::panic_message(&*join.into_panic())
                    );
                    let name = {
                        let mut s = lock(&status);
                        s.last_error = Some(message.clone());
                        s.last_error_at = Some(unix_now());
                        s.name.clone()
                    };
                    metrics::counter!("damocles_manager_task_job_panics_total", "task" => name.clone())
                        .increment(1);
                    tracing::error!(task = %name, job = %label, error = %message, "a job of a background task panicked");
                    JOB_PANICKED
                }
                _ => JOB_ENDED,
            };
            outcome.store(ended, Ordering::SeqCst);
        });
        handle
    }
}

/// Runs and restarts the daemon's background tasks.
#[derive(Debug)]
pub struct Supervisor {
    stop: CancellationToken,
    first_backoff: Duration,
    fatal: CancellationToken,
    fatal_reason: Mutex<Option<String>>,
    tasks: Mutex<BTreeMap<String, Arc<Mutex<TaskStatus>>>>,
    handles: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    inject: Option<Arc<InjectedPanic>>,
}

impl Supervisor {
    /// A supervisor whose tasks end when `stop` is cancelled; reads the panic injection from
    /// the environment.
    pub fn new(stop: CancellationToken) -> Arc<Supervisor> {
        Supervisor::with_first_backoff(stop, FIRST_BACKOFF)
    }

    /// The same, with the first pause before a restart `first_backoff` (tests).
    fn with_first_backoff(stop: CancellationToken, first_backoff: Duration) -> Arc<Supervisor> {
        let inject = std::env::var(INJECT_PANIC_ENV)
            .ok()
            .and_then(|v| InjectedPanic::parse(&v))
            .map(Arc::new);
        if let Some(i) = &inject {
            tracing::warn!(task = %i.task, at = i.at, "a panic will be injected (tests only)");
        }
        Arc::new(Supervisor {
            stop,
            first_backoff,
            fatal: CancellationToken::new(),
            fatal_reason: Mutex::new(None),
            tasks: Mutex::default(),
            handles: Mutex::default(),
            inject,
        })
    }

    /// Cancelled when a critical task cannot run; [`Supervisor::fatal_reason`] says why.
    pub fn fatal(&self) -> &CancellationToken {
        &self.fatal
    }

    /// Why the daemon must stop, once [`Supervisor::fatal`] is cancelled.
    pub fn fatal_reason(&self) -> Option<String> {
        lock(&self.fatal_reason).clone()
    }

    /// The status of every task, by name.
    pub fn statuses(&self) -> Vec<TaskStatus> {
        lock(&self.tasks)
            .values()
            .map(|s| lock(s).clone())
            .collect()
    }

    /// Starts a task: `run` is called for each run; its future ends with `Ok(())` when the
    /// task has nothing more to do or its stop token is cancelled, and with an error (or a
    /// panic) to be restarted. A second task of the same name is refused with a warning.
    pub fn spawn<F, Fut>(self: &Arc<Self>, name: impl Into<String>, critical: bool, run: F)
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let name = name.into();
        let status = Arc::new(Mutex::new(TaskStatus {
            name: name.clone(),
            critical,
            state: TaskState::Running,
            restarts: 0,
            last_error: None,
            last_error_at: None,
            last_progress_at: None,
            started_at: unix_now(),
        }));
        {
            let mut tasks = lock(&self.tasks);
            if tasks.contains_key(&name) {
                tracing::warn!(task = %name, "a task of this name is already supervised");
                return;
            }
            tasks.insert(name.clone(), status.clone());
        }
        let me = self.clone();
        let run = Arc::new(run);
        let handle = tokio::spawn(async move { me.supervise(status, run).await });
        let mut handles = lock(&self.handles);
        handles.retain(|h| !h.is_finished());
        handles.push(handle);
    }

    /// Starts a task that does `round` every `interval` (the first one interval after the
    /// start). A failed
    /// round is logged and recorded, and the next comes at its time; a panicking round
    /// restarts the task.
    pub fn every<F, Fut>(
        self: &Arc<Self>,
        name: impl Into<String>,
        critical: bool,
        interval: Duration,
        round: F,
    ) where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let round = Arc::new(round);
        self.spawn(name, critical, move |ctx| {
            let round = round.clone();
            async move {
                let interval = interval.max(Duration::from_millis(10));
                let mut tick =
                    tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = ctx.stop().cancelled() => return Ok(()),
                        _ = tick.tick() => {}
                    }
                    match round().await {
                        Ok(()) => ctx.progress(),
                        Err(e) => ctx.round_failed(&e),
                    }
                }
            }
        });
    }

    async fn supervise<F, Fut>(self: Arc<Self>, status: Arc<Mutex<TaskStatus>>, run: Arc<F>)
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let (name, critical) = {
            let s = lock(&status);
            (s.name.clone(), s.critical)
        };
        let mut failures_in_a_row = 0u32;
        let mut backoff = self.first_backoff;
        loop {
            let run_stop = self.stop.child_token();
            let ctx = TaskContext {
                stop: run_stop.clone(),
                daemon_stop: self.stop.clone(),
                status: status.clone(),
                progress: Arc::default(),
                inject: self.inject.clone(),
            };
            {
                let mut s = lock(&status);
                s.state = TaskState::Running;
                s.started_at = unix_now();
            }
            metrics::gauge!("damocles_manager_task_up", "task" => name.clone()).set(1.0);
            let started = Instant::now();
            // Its own tokio task, so that a panic (even in `run` itself) ends only this run.
            let this_run = run.clone();
            let outcome = tokio::spawn(async move { this_run(ctx).await }).await;
            // Whatever the run spawned under its token ends with it.
            run_stop.cancel();
            metrics::gauge!("damocles_manager_task_up", "task" => name.clone()).set(0.0);
            let failure = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(format!("{e:#}")),
                Err(join) if join.is_panic() => Some(format!(
                    "panicked: {}",
                    vc_processors::protocol::panic_message(&*join.into_panic())
                )),
                Err(join) => Some(format!("was cancelled: {join}")),
            };
            let Some(failure) = failure else {
                lock(&status).state = TaskState::Finished;
                if !self.stop.is_cancelled() {
                    tracing::info!(task = %name, "background task finished");
                }
                return;
            };
            if self.stop.is_cancelled() {
                lock(&status).state = TaskState::Finished;
                return;
            }
            if started.elapsed() >= STABLE_RUN {
                failures_in_a_row = 0;
                backoff = self.first_backoff;
            }
            failures_in_a_row += 1;
            metrics::counter!("damocles_manager_task_restarts_total", "task" => name.clone())
                .increment(1);
            {
                let mut s = lock(&status);
                s.last_error = Some(failure.clone());
                s.last_error_at = Some(unix_now());
            }
            if critical && failures_in_a_row >= CRITICAL_FAILURES {
                let reason = format!(
                    "critical background task {name} failed {failures_in_a_row} times in a row; last: {failure}"
                );
                tracing::error!(task = %name, error = %failure, "{reason}; stopping the daemon");
                lock(&status).state = TaskState::Failed;
                *lock(&self.fatal_reason) = Some(reason);
                self.fatal.cancel();
                return;
            }
            tracing::error!(task = %name, error = %failure, retry_in = ?backoff, failures_in_a_row, "background task failed; restarting it");
            {
                let mut s = lock(&status);
                s.state = TaskState::Restarting;
                s.restarts += 1;
            }
            tokio::select! {
                _ = self.stop.cancelled() => {
                    lock(&status).state = TaskState::Finished;
                    return;
                }
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Waits (up to `limit`) for every task to end after the stop token was cancelled.
    pub async fn join(&self, limit: Duration) {
        let handles: Vec<_> = std::mem::take(&mut *lock(&self.handles));
        let all = futures::future::join_all(handles);
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!(?limit, "background tasks still running at shutdown");
        }
    }
}

impl TaskContext {
    /// A round of an [`Supervisor::every`] task failed: logged and kept as the last error,
    /// without a restart.
    fn round_failed(&self, e: &anyhow::Error) {
        let text = format!("{e:#}");
        let name = {
            let mut s = lock(&self.status);
            s.last_error = Some(text.clone());
            s.last_error_at = Some(unix_now());
            s.name.clone()
        };
        metrics::counter!("damocles_manager_task_round_errors_total", "task" => name.clone())
            .increment(1);
        tracing::warn!(task = %name, error = %text, "background task round failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn status(sup: &Supervisor, name: &str) -> TaskStatus {
        sup.statuses()
            .into_iter()
            .find(|s| s.name == name)
            .expect("task listed")
    }

    #[tokio::test]
    async fn a_panicking_job_is_told_to_its_task_which_keeps_running() {
        let stop = CancellationToken::new();
        let sup = Supervisor::with_first_backoff(stop.clone(), Duration::from_millis(10));
        let handles: Arc<Mutex<Vec<JobHandle>>> = Arc::default();
        let h = handles.clone();
        sup.spawn("poster", true, move |ctx| {
            let h = h.clone();
            async move {
                let failing = ctx.spawn_job("deadline 3", async { panic!("prover bug") });
                let fine = ctx.spawn_job("watch", async {});
                let endless = ctx.spawn_job("endless", std::future::pending());
                lock(&h).extend([failing, fine, endless]);
                ctx.stop().cancelled().await;
                Ok(())
            }
        });
        wait_until("the jobs to end", || {
            let h = lock(&handles);
            h.len() == 3 && !h[0].is_running() && !h[1].is_running()
        })
        .await;
        let (failing, fine, endless) = {
            let h = lock(&handles);
            (h[0].clone(), h[1].clone(), h[2].clone())
        };
        assert!(failing.panicked());
        assert!(!fine.panicked());
        assert!(endless.is_running());
        let st = status(&sup, "poster");
        assert_eq!(st.state, TaskState::Running);
        assert_eq!(st.restarts, 0);
        let error = st
            .last_error
            .expect("the job's panic is the task's last error");
        assert!(
            error.contains("job deadline 3 panicked: prover bug"),
            "{error}"
        );
        // The run's end ends its jobs.
        stop.cancel();
        wait_until("the endless job to end", || !endless.is_running()).await;
        assert!(!endless.panicked());
    }

    #[tokio::test]
    async fn a_run_job_ends_with_its_run_and_a_lasting_job_with_the_daemon() {
        let stop = CancellationToken::new();
        let sup = Supervisor::with_first_backoff(stop.clone(), Duration::from_millis(10));
        let handles: Arc<Mutex<Vec<JobHandle>>> = Arc::default();
        let runs = Arc::new(AtomicU32::new(0));
        let (h, r) = (handles.clone(), runs.clone());
        sup.spawn("miner", false, move |ctx| {
            let (h, r) = (h.clone(), r.clone());
            async move {
                if r.fetch_add(1, Ordering::SeqCst) == 0 {
                    let run_job = ctx.spawn_job("proof", std::future::pending());
                    let lasting = ctx.spawn_lasting_job("answer", std::future::pending());
                    lock(&h).extend([run_job, lasting]);
                    anyhow::bail!("the first run fails");
                }
                ctx.stop().cancelled().await;
                Ok(())
            }
        });
        wait_until("the restart", || runs.load(Ordering::SeqCst) >= 2).await;
        let (run_job, lasting) = {
            let h = lock(&handles);
            (h[0].clone(), h[1].clone())
        };
        wait_until("the run's job to end", || !run_job.is_running()).await;
        assert!(!run_job.panicked());
        assert!(lasting.is_running(), "a lasting job outlives the run");
        stop.cancel();
        wait_until("the lasting job to end", || !lasting.is_running()).await;
    }

    #[tokio::test]
    async fn a_panicking_task_is_restarted_and_its_status_says_so() {
        let stop = CancellationToken::new();
        let sup = Supervisor::with_first_backoff(stop.clone(), Duration::from_millis(10));
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        sup.spawn("poster", true, move |ctx| {
            let n = r.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    panic!("boom in the first run");
                }
                ctx.progress();
                ctx.stop().cancelled().await;
                Ok(())
            }
        });
        wait_until("the second run", || runs.load(Ordering::SeqCst) == 2).await;
        wait_until("its progress", || {
            status(&sup, "poster").last_progress_at.is_some()
        })
        .await;
        let s = status(&sup, "poster");
        assert_eq!(s.state, TaskState::Running);
        assert_eq!(s.restarts, 1);
        let error = s.last_error.expect("last error");
        assert!(error.contains("boom in the first run"), "{error}");
        assert!(!sup.fatal().is_cancelled());
        stop.cancel();
        sup.join(Duration::from_secs(5)).await;
        assert_eq!(status(&sup, "poster").state, TaskState::Finished);
    }

    #[tokio::test]
    async fn a_critical_task_that_keeps_failing_stops_the_daemon_with_its_name() {
        let stop = CancellationToken::new();
        let sup = Supervisor::with_first_backoff(stop.clone(), Duration::from_millis(10));
        sup.spawn("chain", true, |_| async {
            Err::<(), _>(anyhow::anyhow!("no chain endpoint"))
        });
        tokio::time::timeout(Duration::from_secs(10), sup.fatal().cancelled())
            .await
            .expect("the daemon is told to stop");
        let reason = sup.fatal_reason().expect("reason");
        assert!(reason.contains("chain"), "{reason}");
        assert!(reason.contains("no chain endpoint"), "{reason}");
        let s = status(&sup, "chain");
        assert_eq!(s.state, TaskState::Failed);
        assert_eq!(s.restarts, u64::from(CRITICAL_FAILURES - 1));
    }

    #[tokio::test]
    async fn a_failing_round_is_recorded_and_the_next_round_still_runs() {
        let stop = CancellationToken::new();
        let sup = Supervisor::with_first_backoff(stop.clone(), Duration::from_millis(10));
        let rounds = Arc::new(AtomicU32::new(0));
        let r = rounds.clone();
        sup.every("outbox", false, Duration::from_millis(20), move || {
            let n = r.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    anyhow::bail!("chain unreachable");
                }
                Ok(())
            }
        });
        wait_until("three rounds", || rounds.load(Ordering::SeqCst) >= 3).await;
        let s = status(&sup, "outbox");
        assert_eq!(s.restarts, 0, "a failed round is not a restart");
        assert!(s.last_error.expect("error").contains("chain unreachable"));
        assert!(s.last_progress_at.is_some());
        stop.cancel();
        sup.join(Duration::from_secs(5)).await;
    }

    #[test]
    fn the_injection_spec_is_task_at_count() {
        let i = InjectedPanic::parse("poster@3").expect("parsed");
        assert_eq!((i.task.as_str(), i.at), ("poster", 3));
        for bad in ["poster", "@3", "poster@0", "poster@x"] {
            assert!(InjectedPanic::parse(bad).is_none(), "{bad}");
        }
    }
}
