//! The parent side of the protocol: run a processor child and send it tasks.
//!
//! A [`Producer`] owns one long-lived child process for one stage. Any number of threads may call
//! [`Producer::process`] at once; each call gets its own request id, and the responses, which may
//! come back in any order, are matched by id.
//!
//! Threads per producer: a *supervisor* that starts the child, waits for its ready line, reads
//! its responses and restarts it when it dies; a *writer* per child that feeds its stdin (so
//! no caller ever blocks on a full pipe while holding a lock); and, with [`StderrMode::Log`], a
//! reader for its stderr.
//!
//! Unlike damocles, no request can wait forever (see `docs/compatibility.md`):
//! - a per-task timeout is available (off by default, as in damocles);
//! - a response line that does not parse fails its request when its id can be read, and is
//!   logged and counted otherwise;
//! - when the child exits or its stdout breaks, every in-flight request fails at once with an
//!   error naming the stage, the pid and the exit status;
//! - the child is restarted with bounded exponential backoff, for as long as the producer lives;
//!   while it is down, calls fail at once with the reason. The in-flight table and the child
//!   state share one lock, so a request is either registered with a live child (and failed if
//!   that child dies) or refused: none is ever orphaned.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufReader, Write};
use std::marker::PhantomData;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, RecvTimeoutError, Sender};
use serde::Deserialize;
use serde_json::value::RawValue;
use tracing::{debug, error, info, warn};

use crate::protocol::{
    excerpt, looks_like_object, read_line_limited, ready_message, salvage_id, skip_rest_of_line,
    trim_line_end, LineRead, Processor, Request, Task,
};
use crate::sys::{ENV_CGROUP_CPUSET, ENV_CGROUP_NAME, ENV_NUMA_PREFERRED};

/// Everything that can go wrong between a producer and its child.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// The child could not be started.
    #[error("{stage}: cannot start processor {bin}: {source}")]
    Spawn {
        /// Stage served.
        stage: String,
        /// Program that was run.
        bin: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The child printed nothing within the ready timeout; it was killed.
    #[error(
        "{stage}: processor (pid {pid}) did not print its ready line within {after:?}; killed it"
    )]
    ReadyTimeout {
        /// Stage served.
        stage: String,
        /// Child pid.
        pid: u32,
        /// The timeout.
        after: Duration,
    },
    /// The child's first line was not the ready line; it was killed.
    #[error("{stage}: processor (pid {pid}) printed {line:?} instead of {expected:?}; killed it")]
    UnexpectedReadyLine {
        /// Stage served.
        stage: String,
        /// Child pid.
        pid: u32,
        /// What it printed (possibly shortened).
        line: String,
        /// What was expected.
        expected: String,
    },
    /// The child ended before printing its ready line.
    #[error("{stage}: processor (pid {pid}) exited before it was ready ({status})")]
    ExitedBeforeReady {
        /// Stage served.
        stage: String,
        /// Child pid.
        pid: u32,
        /// How it ended.
        status: String,
    },
    /// The processor is down (crashed and not yet restarted, or shut down).
    #[error("{stage}: processor unavailable: {reason}")]
    Unavailable {
        /// Stage served.
        stage: String,
        /// Why, e.g. the exit status and when the next restart is due.
        reason: String,
    },
    /// The child exited or broke its stdout while the request was in flight.
    #[error("{stage}: processor (pid {pid}) {how} while request {id} was in flight")]
    ChildExited {
        /// Stage served.
        stage: String,
        /// Child pid.
        pid: u32,
        /// Request id.
        id: u64,
        /// "exited with exit status: 1", "was killed by signal: 9 (SIGKILL)", ….
        how: String,
    },
    /// No response within the task timeout.
    #[error("{stage}: processor (pid {pid}) gave no answer to request {id} within {after:?}")]
    Timeout {
        /// Stage served.
        stage: String,
        /// Child pid.
        pid: u32,
        /// Request id.
        id: u64,
        /// The timeout.
        after: Duration,
    },
    /// The response line for this request did not parse.
    #[error("{stage}: processor (pid {pid}) sent an invalid response to request {id}: {reason}")]
    MalformedResponse {
        /// Stage served.
        stage: String,
        /// Child pid.
        pid: u32,
        /// Request id.
        id: u64,
        /// Parser error and an excerpt of the line.
        reason: String,
    },
    /// The response's output does not have the task's output type.
    #[error("{stage}: processor (pid {pid}) returned an output for request {id} that is not a valid {stage} output: {source}")]
    InvalidOutput {
        /// Stage served.
        stage: String,
        /// Child pid.
        pid: u32,
        /// Request id.
        id: u64,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// The processor reported a failure (`err_msg`).
    #[error("{stage}: processor (pid {pid}) failed request {id}: {message}")]
    Failed {
        /// Stage served.
        stage: String,
        /// Child pid.
        pid: u32,
        /// Request id.
        id: u64,
        /// The `err_msg` text.
        message: String,
    },
    /// The task could not be serialised.
    #[error("{stage}: cannot serialise the task: {source}")]
    Marshal {
        /// Stage served.
        stage: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
}

/// Where the child's stderr goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StderrMode {
    /// Shared with this process (damocles' behaviour).
    #[default]
    Inherit,
    /// Read line by line and logged through `tracing`, prefixed with stage and pid.
    Log,
}

/// Restart delays: `initial`, doubled after each failed start, never above `max`. The delay
/// goes back to `initial` once a child has stayed up for `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

/// cgroup placement for the child: it joins `<group_name>/sub-<stage>-<our pid>-<index>` with
/// `cpuset` (vc-processors-spec §1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupPlacement {
    /// Parent cgroup path, damocles' default `vc-worker`.
    pub group_name: String,
    /// cpu list, e.g. `0-7,16`.
    pub cpuset: String,
    /// Position of this processor's block in its `[[processors.<stage>]]` list.
    pub index: usize,
}

/// How to start and run a processor child.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Stage name; the ready line must be `<stage> processor ready`.
    pub stage: String,
    /// Program to run.
    pub bin: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Extra environment, applied last: it overrides inherited and placement variables.
    pub envs: Vec<(OsString, OsString)>,
    /// Start from this process's environment (true) or an empty one (false).
    pub inherit_envs: bool,
    /// Sets `VENUS_WORKER_NUMA_PREFERRED`.
    pub numa_preferred: Option<i32>,
    /// Sets `VC_CG_NAME` and `VC_CG_CPUSET`.
    pub cgroup: Option<CgroupPlacement>,
    /// Nice value of the child (and so of every thread it starts), set before `exec`; `None`
    /// keeps the nice of the thread that starts it. A value below that one needs
    /// `CAP_SYS_NICE`: without it the child keeps the inherited nice and a warning says so.
    pub nice: Option<i32>,
    /// Longest wait for the ready line, at start and at each restart.
    pub ready_timeout: Duration,
    /// Longest wait for a response; `None` waits as long as the child lives (damocles).
    pub task_timeout: Option<Duration>,
    /// Restart the child when it dies.
    pub auto_restart: bool,
    /// Restart delays.
    pub backoff: Backoff,
    /// Where the child's stderr goes.
    pub stderr: StderrMode,
    /// Restart the child when a request times out (the abandoned request may still be running
    /// in it and holding its resources). Off by default: other requests in flight would fail.
    pub restart_on_timeout: bool,
    /// On shutdown, how long the child gets to exit after its stdin is closed before it is
    /// killed.
    pub stop_grace: Duration,
    /// Longest line the child may write on stdout ([`crate::protocol::DEFAULT_MAX_LINE`]). A
    /// longer one fails the requests in flight with an error naming the child, which is
    /// restarted.
    pub max_line: usize,
}

impl ProducerConfig {
    /// A config with the defaults: inherit the environment, 5 s ready timeout, no task
    /// timeout, auto-restart on, stderr inherited.
    pub fn new(stage: impl Into<String>, bin: impl Into<PathBuf>) -> Self {
        ProducerConfig {
            stage: stage.into(),
            bin: bin.into(),
            args: Vec::new(),
            envs: Vec::new(),
            inherit_envs: true,
            numa_preferred: None,
            cgroup: None,
            nice: None,
            ready_timeout: Duration::from_secs(5),
            task_timeout: None,
            auto_restart: true,
            backoff: Backoff::default(),
            stderr: StderrMode::Inherit,
            restart_on_timeout: false,
            stop_grace: Duration::from_secs(5),
            max_line: crate::protocol::DEFAULT_MAX_LINE,
        }
    }

    /// The cgroup the child is told to join (`VC_CG_NAME`), if any.
    pub fn cgroup_name(&self) -> Option<String> {
        self.cgroup.as_ref().map(|cg| {
            format!(
                "{}/sub-{}-{}-{}",
                cg.group_name.trim_end_matches('/'),
                self.stage,
                std::process::id(),
                cg.index
            )
        })
    }

    /// The environment the child gets, in the order it is applied.
    pub fn child_env(&self) -> Vec<(OsString, OsString)> {
        let mut env: Vec<(OsString, OsString)> = Vec::new();
        if self.inherit_envs {
            env.extend(std::env::vars_os());
            // What an operator set on the running daemon (`WorkerSetEnv`) is part of it.
            crate::daemon_env::apply(&mut env);
        }
        let mut set = |k: OsString, v: OsString| {
            env.retain(|(key, _)| key != &k);
            env.push((k, v));
        };
        if let Some(node) = self.numa_preferred {
            set(ENV_NUMA_PREFERRED.into(), node.to_string().into());
        }
        if let (Some(cg), Some(name)) = (&self.cgroup, self.cgroup_name()) {
            set(ENV_CGROUP_NAME.into(), name.into());
            set(ENV_CGROUP_CPUSET.into(), cg.cpuset.clone().into());
        }
        for (k, v) in &self.envs {
            set(k.clone(), v.clone());
        }
        env
    }
}

/// One completed request as the supervisor delivers it to the waiting caller.
type Completion = Result<RawResponse, ProducerError>;

/// A response line of a child, its output kept as raw JSON until the waiting caller decodes
/// it as its task's output type.
#[derive(Debug, Deserialize)]
pub struct RawResponse {
    /// The request answered.
    pub id: u64,
    /// Set on failure, whatever `output` holds.
    #[serde(default)]
    pub err_msg: Option<String>,
    /// The output, on success.
    #[serde(default)]
    pub output: Option<Box<RawValue>>,
}

/// What one line a child wrote on stdout is.
#[derive(Debug)]
pub enum StdoutLine {
    /// Empty or whitespace: skipped.
    Blank,
    /// A response.
    Response(RawResponse),
    /// Not a response; `id` is the request it still names ([`salvage_id`]), if any.
    Malformed {
        /// The request the line names.
        id: Option<u64>,
        /// Why it does not parse, with an excerpt of the line.
        reason: String,
    },
}

/// Reads one stdout line of a child (without its line end).
pub fn parse_stdout_line(body: &[u8]) -> StdoutLine {
    if body.iter().all(u8::is_ascii_whitespace) {
        return StdoutLine::Blank;
    }
    if !looks_like_object(body) {
        return StdoutLine::Malformed {
            id: None,
            reason: format!("a response is a JSON object; line: {}", excerpt(body, 200)),
        };
    }
    match serde_json::from_slice::<RawResponse>(body) {
        Ok(resp) => StdoutLine::Response(resp),
        Err(e) => StdoutLine::Malformed {
            id: salvage_id(body),
            reason: format!("{e}; line: {}", excerpt(body, 200)),
        },
    }
}

enum ChildState {
    /// Spawning or waiting for the ready line; `previous` says why it is being restarted.
    Starting { previous: Option<String> },
    /// Ready: requests go to `writer`.
    Up {
        pid: u32,
        writer: Sender<Vec<u8>>,
        child: Arc<Mutex<Child>>,
    },
    /// Dead, with the reason calls are refused.
    Down { reason: String },
}

struct State {
    child: ChildState,
    inflight: HashMap<u64, (u32, Sender<Completion>)>,
    shutdown: bool,
}

struct Shared {
    config: ProducerConfig,
    next_id: AtomicU64,
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stage(&self) -> &str {
        &self.config.stage
    }

    /// Marks the child down and fails everything in flight on it.
    fn child_gone(&self, pid: u32, how: &str, reason: String) {
        let mut st = self.lock();
        if !st.shutdown {
            st.child = ChildState::Down { reason };
        }
        let ids: Vec<u64> = st
            .inflight
            .iter()
            .filter(|(_, (p, _))| *p == pid)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some((_, tx)) = st.inflight.remove(&id) {
                let _ = tx.send(Err(ProducerError::ChildExited {
                    stage: self.config.stage.clone(),
                    pid,
                    id,
                    how: how.to_string(),
                }));
                metrics::counter!("vc_processors_requests_failed_total", "stage" => self.config.stage.clone(), "reason" => "child_exited").increment(1);
            }
        }
        self.changed.notify_all();
    }
}

/// Builds a [`Producer`]; the names follow damocles' `ProducerBuilder`.
#[derive(Debug, Clone)]
pub struct ProducerBuilder {
    config: ProducerConfig,
}

impl ProducerBuilder {
    /// Runs `bin` with `args`; the stage is taken from the task type at [`Self::spawn`].
    pub fn new(
        bin: impl Into<PathBuf>,
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Self {
        let mut config = ProducerConfig::new(String::new(), bin);
        config.args = args.into_iter().map(Into::into).collect();
        ProducerBuilder { config }
    }

    /// Starts from a full config (its `stage` is replaced by the task's at spawn).
    pub fn from_config(config: ProducerConfig) -> Self {
        ProducerBuilder { config }
    }

    /// Adds one environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.config.envs.push((key.into(), value.into()));
        self
    }

    /// Start from this process's environment or an empty one.
    pub fn inherit_envs(mut self, inherit: bool) -> Self {
        self.config.inherit_envs = inherit;
        self
    }

    /// Ready-line timeout (damocles' `stable_wait`).
    pub fn stable_timeout(mut self, timeout: Duration) -> Self {
        self.config.ready_timeout = timeout;
        self
    }

    /// Per-request timeout.
    pub fn task_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.task_timeout = timeout;
        self
    }

    /// Longest line the child may write on stdout.
    pub fn max_line(mut self, bytes: usize) -> Self {
        self.config.max_line = bytes;
        self
    }

    /// Restart the child when it dies.
    pub fn auto_restart(mut self, restart: bool) -> Self {
        self.config.auto_restart = restart;
        self
    }

    /// Restart delays.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// Preferred NUMA node of the child.
    pub fn numa_preferred(mut self, node: i32) -> Self {
        self.config.numa_preferred = Some(node);
        self
    }

    /// cgroup placement of the child.
    pub fn cpuset(mut self, placement: CgroupPlacement) -> Self {
        self.config.cgroup = Some(placement);
        self
    }

    /// Where the child's stderr goes.
    pub fn stderr(mut self, mode: StderrMode) -> Self {
        self.config.stderr = mode;
        self
    }

    /// Starts the child and waits for its ready line.
    pub fn spawn<T: Task>(mut self) -> Result<Producer<T>, ProducerError> {
        self.config.stage = T::STAGE.to_string();
        Producer::start(self.config)
    }
}

/// A running processor child for tasks of type `T`. Cheap to clone; the child is stopped when
/// the last clone is dropped.
pub struct Producer<T: Task> {
    handle: Arc<Handle>,
    _task: PhantomData<fn(T) -> T::Output>,
}

impl<T: Task> Clone for Producer<T> {
    fn clone(&self) -> Self {
        Producer {
            handle: self.handle.clone(),
            _task: PhantomData,
        }
    }
}

struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.shutdown = true;
        st.child = ChildState::Down {
            reason: "the producer was shut down".to_string(),
        };
        self.shared.changed.notify_all();
        // The supervisor kills the child when it sees `shutdown`.
    }
}

impl<T: Task> Producer<T> {
    /// Starts the child described by `config` (whose stage must be `T::STAGE`) and waits for
    /// its ready line.
    pub fn start(mut config: ProducerConfig) -> Result<Self, ProducerError> {
        config.stage = T::STAGE.to_string();
        let shared = Arc::new(Shared {
            config,
            next_id: AtomicU64::new(1),
            state: Mutex::new(State {
                child: ChildState::Starting { previous: None },
                inflight: HashMap::new(),
                shutdown: false,
            }),
            changed: Condvar::new(),
        });
        let (first_tx, first_rx) = bounded::<Result<(), ProducerError>>(1);
        let sup = shared.clone();
        std::thread::Builder::new()
            .name(format!("{}-supervisor", T::STAGE))
            .spawn(move || supervise(sup, first_tx))
            .map_err(|source| ProducerError::Spawn {
                stage: T::STAGE.to_string(),
                bin: shared.config.bin.clone(),
                source,
            })?;
        let handle = Arc::new(Handle { shared });
        match first_rx.recv() {
            Ok(Ok(())) => Ok(Producer {
                handle,
                _task: PhantomData,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ProducerError::Unavailable {
                stage: T::STAGE.to_string(),
                reason: "the supervisor thread ended before the first start".to_string(),
            }),
        }
    }

    /// The pid of the current child, if it is up.
    pub fn child_pid(&self) -> Option<u32> {
        match self.handle.shared.lock().child {
            ChildState::Up { pid, .. } => Some(pid),
            _ => None,
        }
    }

    /// The id the next request will get.
    pub fn next_id(&self) -> u64 {
        self.handle.shared.next_id.load(Ordering::Relaxed)
    }

    /// Number of requests written and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.handle.shared.lock().inflight.len()
    }

    /// Waits until the child is up (after a restart), at most `timeout`. Returns its pid.
    pub fn wait_up(&self, timeout: Duration) -> Option<u32> {
        let deadline = Instant::now() + timeout;
        let shared = &self.handle.shared;
        let mut st = shared.lock();
        loop {
            if let ChildState::Up { pid, .. } = st.child {
                return Some(pid);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            st = shared
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Sends one task and waits for its output.
    pub fn call(&self, task: T) -> Result<T::Output, ProducerError> {
        let shared = &self.handle.shared;
        let stage = shared.stage().to_string();
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let mut line =
            serde_json::to_vec(&Request { id, task }).map_err(|source| ProducerError::Marshal {
                stage: stage.clone(),
                source,
            })?;
        line.push(b'\n');

        let (tx, rx) = bounded::<Completion>(1);
        let pid = {
            let mut st = shared.lock();
            match &st.child {
                ChildState::Up { pid, writer, .. } => {
                    let pid = *pid;
                    if writer.send(line).is_err() {
                        return Err(ProducerError::Unavailable {
                            stage,
                            reason: format!("processor (pid {pid}) stopped taking requests"),
                        });
                    }
                    st.inflight.insert(id, (pid, tx));
                    pid
                }
                ChildState::Starting { previous } => {
                    return Err(ProducerError::Unavailable {
                        stage,
                        reason: match previous {
                            Some(previous) => {
                                format!("the processor is restarting after: {previous}")
                            }
                            None => "the processor is starting".to_string(),
                        },
                    })
                }
                ChildState::Down { reason } => {
                    return Err(ProducerError::Unavailable {
                        stage,
                        reason: reason.clone(),
                    })
                }
            }
        };
        metrics::counter!("vc_processors_requests_total", "stage" => stage.clone()).increment(1);

        let completion = match shared.config.task_timeout {
            None => rx.recv().unwrap_or_else(|_| {
                Err(ProducerError::Unavailable {
                    stage: stage.clone(),
                    reason: "the producer was shut down".to_string(),
                })
            }),
            Some(after) => match rx.recv_timeout(after) {
                Ok(c) => c,
                Err(RecvTimeoutError::Timeout) => {
                    let mut st = shared.lock();
                    let removed = st.inflight.remove(&id).is_some();
                    if removed {
                        metrics::counter!("vc_processors_requests_failed_total", "stage" => stage.clone(), "reason" => "timeout").increment(1);
                        match &st.child {
                            ChildState::Up { pid: up, child, .. }
                                if *up == pid && shared.config.restart_on_timeout =>
                            {
                                warn!(stage, pid, id, "request timed out after {after:?}; restarting the processor");
                                kill_group(child);
                            }
                            _ => warn!(
                                stage,
                                pid,
                                id,
                                "request timed out after {after:?}; the processor may still be running it"
                            ),
                        }
                        drop(st);
                        return Err(ProducerError::Timeout {
                            stage,
                            pid,
                            id,
                            after,
                        });
                    }
                    drop(st);
                    // Completed between the timeout and the removal.
                    rx.recv().unwrap_or_else(|_| {
                        Err(ProducerError::Timeout {
                            stage: stage.clone(),
                            pid,
                            id,
                            after,
                        })
                    })
                }
                Err(RecvTimeoutError::Disconnected) => Err(ProducerError::Unavailable {
                    stage: stage.clone(),
                    reason: "the producer was shut down".to_string(),
                }),
            },
        };

        let raw = completion?;
        if let Some(message) = raw.err_msg {
            return Err(ProducerError::Failed {
                stage,
                pid,
                id,
                message,
            });
        }
        let output = raw.output.as_deref().map(RawValue::get).unwrap_or("null");
        serde_json::from_str(output).map_err(|source| ProducerError::InvalidOutput {
            stage,
            pid,
            id,
            source,
        })
    }
}

impl<T: Task> Processor<T> for Producer<T> {
    fn name(&self) -> String {
        match self.child_pid() {
            Some(pid) => format!("ext({}, pid: {pid})", T::STAGE),
            None => format!("ext({}, down)", T::STAGE),
        }
    }

    fn process(&self, task: T) -> anyhow::Result<T::Output> {
        Ok(self.call(task)?)
    }
}

/// A started child that printed its ready line.
struct Running {
    child: Arc<Mutex<Child>>,
    pid: u32,
    stdout: BufReader<ChildStdout>,
    writer: Sender<Vec<u8>>,
}

fn describe_exit(status: &ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exited with exit status {code}"),
        None => format!("was killed ({status})"),
    }
}

/// Kills the child and everything it started: the child leads its own process group.
fn kill_group(child: &Mutex<Child>) {
    let mut child = child.lock().unwrap_or_else(|p| p.into_inner());
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) has no memory effects; a negative pid names the process group that
        // the child leads (it was started with `process_group(0)`).
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    let _ = child.kill();
}

fn kill_and_reap(child: &Mutex<Child>) -> String {
    kill_group(child);
    let mut child = child.lock().unwrap_or_else(|p| p.into_inner());
    match child.wait() {
        Ok(status) => describe_exit(&status),
        Err(e) => format!("ended (status unknown: {e})"),
    }
}

/// The exit status of the child if it has ended (it is reaped; the status is kept).
fn exited(child: &Mutex<Child>) -> Option<Result<ExitStatus, std::io::Error>> {
    let mut c = child.lock().unwrap_or_else(|p| p.into_inner());
    match c.try_wait() {
        Ok(Some(status)) => Some(Ok(status)),
        Ok(None) => None,
        Err(e) => Some(Err(e)),
    }
}

/// Waits up to `grace` for the child to exit by itself, then kills it; returns how it ended.
fn reap(child: &Mutex<Child>, grace: Duration) -> String {
    let deadline = Instant::now() + grace;
    loop {
        match exited(child) {
            Some(Ok(status)) => {
                // Anything the child started goes with it.
                kill_group(child);
                return describe_exit(&status);
            }
            Some(Err(e)) => return format!("ended (status unknown: {e})"),
            None => {}
        }
        if Instant::now() >= deadline {
            let how = kill_and_reap(child);
            return format!("closed its stdout and was killed ({how})");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Watches a running child until the supervisor has dealt with its end:
/// - on shutdown (stdin is already closed), gives it `stop_grace` to exit, then kills it;
/// - when it exits while something it started still holds its stdout open, kills that too,
///   so the supervisor's read ends.
fn watch(shared: &Shared, child: &Mutex<Child>, pid: u32) {
    const POLL: Duration = Duration::from_millis(200);
    let mut st = shared.lock();
    loop {
        if st.shutdown {
            drop(st);
            let deadline = Instant::now() + shared.config.stop_grace;
            while exited(child).is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            kill_group(child);
            return;
        }
        if !matches!(&st.child, ChildState::Up { pid: p, .. } if *p == pid) {
            return;
        }
        drop(st);
        if exited(child).is_some() {
            kill_group(child);
            return;
        }
        st = shared.lock();
        st = shared
            .changed
            .wait_timeout(st, POLL)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

/// Removes the child's cgroup once it has ended (the child removes it itself on a clean exit).
fn remove_cgroup(config: &ProducerConfig) {
    let Some(name) = config.cgroup_name() else {
        return;
    };
    for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/cpuset"] {
        let dir = std::path::Path::new(root).join(&name);
        if dir.is_dir() {
            if let Err(e) = std::fs::remove_dir(&dir) {
                debug!(cgroup = %dir.display(), "cgroup left in place: {e}");
            }
        }
    }
}

fn start_child(shared: &Arc<Shared>) -> Result<Running, ProducerError> {
    let cfg = &shared.config;
    let stage = cfg.stage.clone();
    let mut cmd = Command::new(&cfg.bin);
    cmd.args(&cfg.args)
        .env_clear()
        .envs(cfg.child_env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(match cfg.stderr {
            StderrMode::Inherit => Stdio::inherit(),
            StderrMode::Log => Stdio::piped(),
        });
    {
        use std::os::unix::process::CommandExt;
        // Its own process group, so killing it also ends whatever it started.
        cmd.process_group(0);
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; the closure touches nothing else. The child
        // is killed if this (supervisor) thread dies, so no child outlives its producer.
        let nice = cfg.nice;
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Best effort (async-signal-safe): the parent checks the result below.
                if let Some(nice) = nice {
                    libc::setpriority(libc::PRIO_PROCESS, 0, nice);
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().map_err(|source| ProducerError::Spawn {
        stage: stage.clone(),
        bin: cfg.bin.clone(),
        source,
    })?;
    let pid = child.id();
    if let Some(want) = cfg.nice {
        match crate::sys::nice_of(pid) {
            Ok(got) if got != want => warn!(
                stage = %stage,
                pid,
                nice = got,
                wanted = want,
                "the processor child runs at another nice than configured: a lower nice than \
                 the worker's own needs CAP_SYS_NICE"
            ),
            Ok(_) => debug!(stage = %stage, pid, nice = want, "processor child priority set"),
            Err(e) => debug!(stage = %stage, pid, "reading the child's nice: {e}"),
        }
    }
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let child = Arc::new(Mutex::new(child));
    let (Some(mut stdin), Some(stdout)) = (stdin, stdout) else {
        kill_and_reap(&child);
        return Err(ProducerError::Spawn {
            stage,
            bin: cfg.bin.clone(),
            source: std::io::Error::other("child pipes missing"),
        });
    };
    if let Some(stderr) = stderr {
        let stage = stage.clone();
        let _ = std::thread::Builder::new()
            .name(format!("{stage}-stderr-{pid}"))
            .spawn(move || {
                let mut reader = BufReader::new(stderr);
                let mut line = Vec::new();
                loop {
                    match read_line_limited(&mut reader, &mut line, MAX_STDERR_LINE) {
                        Ok(LineRead::Eof) | Err(_) => break,
                        Ok(LineRead::Line) => {
                            let text = String::from_utf8_lossy(trim_line_end(&line));
                            info!(target: "vc_processors::child", stage = %stage, pid, "{text}");
                        }
                        Ok(LineRead::TooLong) => {
                            let text = String::from_utf8_lossy(&line);
                            info!(target: "vc_processors::child", stage = %stage, pid, "{text}… (line cut at {MAX_STDERR_LINE} bytes)");
                            if skip_rest_of_line(&mut reader).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
    }

    // The ready line, read on a helper thread so the wait can time out. The reader comes
    // back with it, so nothing the child writes after the ready line is lost.
    let (ready_tx, ready_rx) = bounded(1);
    let helper = std::thread::Builder::new()
        .name(format!("{stage}-ready-{pid}"))
        .spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            // A ready line is a few words: more is not one (and is cut there).
            let res = read_line_limited(&mut reader, &mut line, MAX_READY_LINE).map(|_| line);
            let _ = ready_tx.send((res, reader));
        });
    if let Err(source) = helper {
        kill_and_reap(&child);
        return Err(ProducerError::Spawn {
            stage,
            bin: cfg.bin.clone(),
            source,
        });
    }
    let expected = ready_message(&stage);
    let reader = match ready_rx.recv_timeout(cfg.ready_timeout) {
        Err(_) => {
            kill_and_reap(&child);
            return Err(ProducerError::ReadyTimeout {
                stage,
                pid,
                after: cfg.ready_timeout,
            });
        }
        Ok((Ok(line), reader)) if line.is_empty() => {
            drop(reader);
            let status = reap(&child, Duration::from_secs(1));
            return Err(ProducerError::ExitedBeforeReady { stage, pid, status });
        }
        Ok((Ok(line), reader)) => {
            let got = trim_line_end(&line);
            // Whitespace around the line is forgiven, as damocles' Rust producer does.
            if std::str::from_utf8(got).map(str::trim) != Ok(expected.as_str()) {
                kill_and_reap(&child);
                return Err(ProducerError::UnexpectedReadyLine {
                    stage,
                    pid,
                    line: excerpt(got, 200),
                    expected,
                });
            }
            reader
        }
        Ok((Err(e), _)) => {
            kill_and_reap(&child);
            return Err(ProducerError::UnexpectedReadyLine {
                stage,
                pid,
                line: format!("<unreadable: {e}>"),
                expected,
            });
        }
    };

    // The writer: requests are queued here by callers and written in order.
    let (writer, queue) = unbounded::<Vec<u8>>();
    let killer = child.clone();
    let wstage = stage.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("{stage}-writer-{pid}"))
        .spawn(move || {
            for line in queue {
                if let Err(e) = stdin.write_all(&line).and_then(|_| stdin.flush()) {
                    // A child that cannot take requests is broken: end it, so the supervisor
                    // fails what is in flight and restarts it.
                    warn!(stage = %wstage, pid, "cannot write to the processor's stdin: {e}; killing it");
                    kill_group(&killer);
                    break;
                }
            }
        });
    if let Err(source) = spawned {
        kill_and_reap(&child);
        return Err(ProducerError::Spawn {
            stage,
            bin: cfg.bin.clone(),
            source,
        });
    }
    Ok(Running {
        child,
        pid,
        stdout: reader,
        writer,
    })
}

/// Longest stderr line logged whole; the rest of a longer one is dropped.
const MAX_STDERR_LINE: usize = 64 << 10;
/// Longest ready line read.
const MAX_READY_LINE: usize = 4 << 10;

/// Reads responses until the child's stdout ends; returns why it ended.
fn read_responses(
    shared: &Shared,
    pid: u32,
    stdout: &mut BufReader<ChildStdout>,
) -> Option<String> {
    let stage = shared.stage();
    let max = shared.config.max_line;
    let mut line = Vec::with_capacity(4096);
    loop {
        match read_line_limited(stdout, &mut line, max) {
            Ok(LineRead::Eof) => return None,
            Ok(LineRead::Line) => {}
            Ok(LineRead::TooLong) => {
                metrics::counter!("vc_processors_requests_failed_total", "stage" => stage.to_string(), "reason" => "line_too_long").increment(1);
                return Some(format!(
                    "wrote a line longer than {max} bytes on stdout (max_line), starting {}",
                    excerpt(&line, 80)
                ));
            }
            Err(e) => return Some(format!("reading its stdout failed: {e}")),
        }
        let body = trim_line_end(&line);
        match parse_stdout_line(body) {
            StdoutLine::Blank => {}
            StdoutLine::Response(resp) => {
                let waiter = shared.lock().inflight.remove(&resp.id);
                match waiter {
                    Some((_, tx)) => {
                        let _ = tx.send(Ok(resp));
                    }
                    None => {
                        metrics::counter!("vc_processors_unmatched_responses_total", "stage" => stage.to_string()).increment(1);
                        warn!(
                            stage,
                            pid,
                            id = resp.id,
                            "response for an unknown or finished request ignored"
                        );
                    }
                }
            }
            StdoutLine::Malformed { id, reason } => {
                dump_bad_line(pid, body);
                match id.and_then(|id| shared.lock().inflight.remove(&id).map(|w| (id, w))) {
                    Some((id, (_, tx))) => {
                        warn!(stage, pid, id, "invalid response: {reason}");
                        metrics::counter!("vc_processors_requests_failed_total", "stage" => stage.to_string(), "reason" => "malformed_response").increment(1);
                        let _ = tx.send(Err(ProducerError::MalformedResponse {
                            stage: stage.to_string(),
                            pid,
                            id,
                            reason,
                        }));
                    }
                    None => {
                        metrics::counter!("vc_processors_unparsable_lines_total", "stage" => stage.to_string()).increment(1);
                        warn!(
                            stage,
                            pid,
                            "ignoring an output line that names no request in flight: {reason}"
                        );
                    }
                }
            }
        }
    }
}

/// Writes a line that did not parse to `$DUMP_ERR_RESP_<pid>/ext-processor-err-resp-<pid>-<n>.json`
/// when that variable is set in this process (damocles' `worker enable-dump`).
fn dump_bad_line(pid: u32, body: &[u8]) {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let Some(dir) = crate::daemon_env::var_os(format!("DUMP_ERR_RESP_{pid}")) else {
        return;
    };
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = PathBuf::from(dir).join(format!("ext-processor-err-resp-{pid}-{n}.json"));
    if let Err(e) = std::fs::write(&path, body) {
        warn!(
            pid,
            "cannot dump an invalid response to {}: {e}",
            path.display()
        );
    }
}

fn supervise(shared: Arc<Shared>, first: Sender<Result<(), ProducerError>>) {
    let stage = shared.stage().to_string();
    let mut first = Some(first);
    let mut delay = shared.config.backoff.initial;
    let mut attempt: u64 = 0;
    loop {
        if shared.lock().shutdown {
            return;
        }
        attempt += 1;
        let started = match start_child(&shared) {
            Ok(running) => running,
            Err(e) => {
                if let Some(first) = first.take() {
                    let _ = first.send(Err(e));
                    return;
                }
                error!(stage, attempt, "restart failed: {e}");
                let reason =
                    format!("restart attempt {attempt} failed: {e}; restarting in {delay:?}");
                if !wait_before_restart(&shared, &mut delay, reason) {
                    return;
                }
                continue;
            }
        };
        let Running {
            child,
            pid,
            mut stdout,
            writer,
        } = started;
        {
            let mut st = shared.lock();
            if st.shutdown {
                drop(st);
                kill_and_reap(&child);
                return;
            }
            st.child = ChildState::Up {
                pid,
                writer,
                child: child.clone(),
            };
            shared.changed.notify_all();
        }
        if attempt > 1 {
            metrics::counter!("vc_processors_child_restarts_total", "stage" => stage.clone())
                .increment(1);
            info!(stage, pid, attempt, "processor restarted");
        } else {
            debug!(stage, pid, "processor ready");
        }
        if let Some(first) = first.take() {
            let _ = first.send(Ok(()));
        }
        let up_since = Instant::now();

        let watcher = {
            let shared = shared.clone();
            let child = child.clone();
            std::thread::Builder::new()
                .name(format!("{stage}-watch-{pid}"))
                .spawn(move || watch(&shared, &child, pid))
        };

        let read_error = read_responses(&shared, pid, &mut stdout);
        drop(stdout);
        let mut how = reap(&child, Duration::from_secs(2));
        remove_cgroup(&shared.config);
        if let Some(err) = read_error {
            how = format!("{err} and it {how}");
        }
        let shutting_down = shared.lock().shutdown;
        if !shutting_down {
            warn!(stage, pid, "processor {how}");
        }
        if up_since.elapsed() >= shared.config.backoff.max {
            delay = shared.config.backoff.initial;
        }
        let mut reason = format!("processor (pid {pid}) {how}");
        if shared.config.auto_restart {
            reason.push_str(&format!("; restarting in {delay:?}"));
        } else {
            reason.push_str("; auto_restart is off");
        }
        shared.child_gone(pid, &how, reason.clone());
        if let Ok(w) = watcher {
            let _ = w.join();
        }
        if shutting_down || !shared.config.auto_restart {
            return;
        }
        if !wait_before_restart(&shared, &mut delay, reason) {
            return;
        }
    }
}

/// Sleeps the current backoff delay (interrupted by shutdown) and doubles it; callers are
/// refused with `reason` meanwhile. Returns false on shutdown.
fn wait_before_restart(shared: &Shared, delay: &mut Duration, reason: String) -> bool {
    let wait = *delay;
    *delay = (*delay * 2).min(shared.config.backoff.max);
    let deadline = Instant::now() + wait;
    let mut st = shared.lock();
    if st.shutdown {
        return false;
    }
    st.child = ChildState::Down { reason };
    shared.changed.notify_all();
    loop {
        if st.shutdown {
            return false;
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            let previous = match &st.child {
                ChildState::Down { reason } => Some(reason.clone()),
                _ => None,
            };
            st.child = ChildState::Starting { previous };
            shared.changed.notify_all();
            return true;
        };
        st = shared
            .changed
            .wait_timeout(st, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}
