//! The worker's processors (worker-spec §1.10, §1.2 steps 2 and 13; vc-processors-spec §4).
//!
//! Each processor kind (`[[processors.<kind>]]`) is a [`Pool`]: the in-process
//! [`BuiltinProcessor`] when the kind has no block, else one external child per block, in config
//! order. [`Processors`] holds one typed pool per kind; [`StageTask`] maps a task type to its
//! pool, so `processors.run(pc1_task, ctrl)` can only reach the pc1 processors.
//!
//! An external entry has its own concurrency gate (`concurrent`, unbounded if unset), its ext
//! locks (`locks`, from the [`LimitPool`]) and a load counter of capacity `concurrent` or 64.
//! A task goes to an entry chosen as damocles does (vc-processors-spec §4.6): try every entry
//! without waiting; among those acquired, the largest `capacity − load` wins, ties going to the
//! last one in the list; if none is free, wait on the first entry (pitfall P-26), whichever
//! frees first.
//!
//! Stage limits are not taken here: planners hold the stage token ([`LimitPool::acquire_stage`])
//! around the whole stage. `sealing_daemons` children are started and kept running, never called.

use std::ffi::OsString;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{bail, Context, Result};
use tracing::{debug, info};
use vc_processors::builtin::processors::piece::ENV_PIECE_FETCHER_TOKEN;
use vc_processors::builtin::tasks::{
    AddPieces, SnapEncode, SnapProve, Transfer, TreeD, Unseal, WindowPoSt, C2, PC1, PC2,
};
use vc_processors::builtin::BuiltinProcessor;
use vc_processors::producer::{CgroupPlacement, StderrMode};
use vc_processors::{Processor, Producer, ProducerConfig, Task};

use crate::config::{ExtProcessorConfig, ProcessorsConfig};
use crate::limits::{ExtLocks, LimitPool, Permit, Semaphore};
use crate::sealing::control::ThreadControl;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A processor kind: the `<kind>` of `[[processors.<kind>]]` (worker-spec §1.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `add_pieces`.
    AddPieces,
    /// `tree_d`.
    TreeD,
    /// `pc1`.
    Pc1,
    /// `pc2`.
    Pc2,
    /// `c2`.
    C2,
    /// `snap_encode`.
    SnapEncode,
    /// `snap_prove`.
    SnapProve,
    /// `transfer`.
    Transfer,
    /// `unseal`.
    Unseal,
    /// `window_post`.
    WindowPost,
    /// `sealing_daemons`: children only kept running.
    SealingDaemons,
}

impl Kind {
    /// Every kind, in [`crate::config::PROCESSOR_KINDS`] order.
    pub const ALL: [Kind; 11] = [
        Kind::AddPieces,
        Kind::TreeD,
        Kind::Pc1,
        Kind::Pc2,
        Kind::C2,
        Kind::SnapEncode,
        Kind::SnapProve,
        Kind::Transfer,
        Kind::Unseal,
        Kind::WindowPost,
        Kind::SealingDaemons,
    ];

    /// The config key, which is also the default `processor <stage>` argument.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::AddPieces => "add_pieces",
            Kind::TreeD => "tree_d",
            Kind::Pc1 => "pc1",
            Kind::Pc2 => "pc2",
            Kind::C2 => "c2",
            Kind::SnapEncode => "snap_encode",
            Kind::SnapProve => "snap_prove",
            Kind::Transfer => "transfer",
            Kind::Unseal => "unseal",
            Kind::WindowPost => "window_post",
            Kind::SealingDaemons => "sealing_daemons",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A task type that one processor kind runs; picks that kind's pool in [`Processors`].
pub trait StageTask: Task {
    /// The kind whose processors run it.
    const KIND: Kind;

    /// Its pool.
    fn pool(processors: &Processors) -> &Pool<Self>;
}

macro_rules! stage_tasks {
    ($($task:ty => $kind:ident, $field:ident;)*) => {
        $(
            impl StageTask for $task {
                const KIND: Kind = Kind::$kind;

                fn pool(processors: &Processors) -> &Pool<Self> {
                    &processors.$field
                }
            }
        )*
    };
}

stage_tasks! {
    AddPieces => AddPieces, add_pieces;
    TreeD => TreeD, tree_d;
    PC1 => Pc1, pc1;
    PC2 => Pc2, pc2;
    C2 => C2, c2;
    SnapEncode => SnapEncode, snap_encode;
    SnapProve => SnapProve, snap_prove;
    Transfer => Transfer, transfer;
    Unseal => Unseal, unseal;
    WindowPoSt => WindowPost, window_post;
}

/// The processors of one kind, for tasks of type `T`: in-process or external children.
pub struct Pool<T: Task> {
    inner: PoolInner<T>,
}

enum PoolInner<T: Task> {
    InProcess(Arc<dyn Processor<T>>),
    External {
        entries: Vec<ExtEntry<T>>,
        limits: Arc<LimitPool>,
    },
}

/// One `[[processors.<kind>]]` block: its child and its selection slot.
struct ExtEntry<T: Task> {
    index: usize,
    slot: Slot,
    /// `None` after [`Processors::shutdown`].
    producer: Mutex<Option<Producer<T>>>,
}

impl<T: Task> ExtEntry<T> {
    fn producer(&self) -> Option<Producer<T>> {
        lock(&self.producer).clone()
    }

    fn describe(&self) -> String {
        let pid = self.producer().and_then(|p| p.child_pid());
        describe_ext(
            self.index,
            pid,
            self.slot.gate.as_ref().map(|g| g.capacity()),
            &self.slot.locks,
        )
    }
}

fn describe_ext(
    index: usize,
    pid: Option<u32>,
    concurrent: Option<usize>,
    locks: &[String],
) -> String {
    let mut s = match pid {
        Some(pid) => format!("ext[{index}] pid {pid}"),
        None => format!("ext[{index}] down"),
    };
    if let Some(n) = concurrent {
        s.push_str(&format!(", concurrent {n}"));
    }
    if !locks.is_empty() {
        s.push_str(&format!(", locks [{}]", locks.join(", ")));
    }
    s
}

impl<T: Task> Pool<T> {
    /// A pool that runs every task on `processor` in the calling thread.
    pub fn in_process(processor: Arc<dyn Processor<T>>) -> Self {
        Pool {
            inner: PoolInner::InProcess(processor),
        }
    }

    /// Whether the tasks go to external children.
    pub fn is_external(&self) -> bool {
        matches!(self.inner, PoolInner::External { .. })
    }

    /// `builtin` (in-process), or the external entries with their pids.
    pub fn describe(&self) -> String {
        match &self.inner {
            PoolInner::InProcess(_) => "builtin".to_string(),
            PoolInner::External { entries, .. } => entries
                .iter()
                .map(ExtEntry::describe)
                .collect::<Vec<_>>()
                .join("; "),
        }
    }

    /// Runs `task` on this kind's processors, blocking the calling thread until it is done.
    ///
    /// With `ctrl`, the thread is `Waiting` while a processor is chosen (and its gate and ext
    /// locks taken), `Running` with the processor's name (`builtin pc1`, `ext(pid: 1234)`)
    /// while it executes, and `Idle` afterwards, whatever the outcome. Errors name the stage
    /// and the processor (`pc2 (ext pid 1234): …`).
    pub fn run(&self, task: T, ctrl: Option<&ThreadControl>) -> Result<T::Output> {
        if let Some(ctrl) = ctrl {
            ctrl.set_waiting();
        }
        let started = std::time::Instant::now();
        let result = match &self.inner {
            PoolInner::InProcess(processor) => {
                let processor: &dyn Processor<T> = &**processor;
                let name = Processor::<T>::name(processor);
                if let Some(ctrl) = ctrl {
                    ctrl.set_running(Some(name.clone()));
                }
                Processor::<T>::process(processor, task)
                    .with_context(|| format!("{} ({name})", T::STAGE))
            }
            PoolInner::External { entries, limits } => run_external(entries, limits, task, ctrl),
        };
        if let Some(ctrl) = ctrl {
            ctrl.set_idle();
        }
        let secs = started.elapsed().as_secs_f64();
        metrics::histogram!("damocles_worker_processor_task_seconds", "stage" => T::STAGE)
            .record(secs);
        tracing::info!(
            stage = T::STAGE,
            ms = (secs * 1e3) as u64,
            ok = result.is_ok(),
            "processor task"
        );
        result
    }

    fn shutdown(&self) {
        if let PoolInner::External { entries, .. } = &self.inner {
            for entry in entries {
                // The child stops when the last clone goes: at once, or when a call in flight
                // returns.
                drop(lock(&entry.producer).take());
            }
        }
    }
}

fn run_external<T: Task>(
    entries: &[ExtEntry<T>],
    limits: &LimitPool,
    task: T,
    ctrl: Option<&ThreadControl>,
) -> Result<T::Output> {
    let stage = T::STAGE;
    let slots: Vec<&Slot> = entries.iter().map(|e| &e.slot).collect();
    let Some((i, guard)) = select(&slots, limits) else {
        bail!("{stage}: no external processor configured");
    };
    let Some(entry) = entries.get(i) else {
        bail!("{stage}: selected processor #{i} does not exist");
    };
    let Some(producer) = entry.producer() else {
        bail!(
            "{stage} (ext #{}): the processors were shut down",
            entry.index
        );
    };
    let pid = producer.child_pid();
    let (name, what) = match pid {
        Some(pid) => (
            format!("ext(pid: {pid})"),
            format!("{stage} (ext pid {pid})"),
        ),
        None => (
            format!("ext(#{}, down)", entry.index),
            format!("{stage} (ext #{}, down)", entry.index),
        ),
    };
    debug!(stage, processor = %name, load = entry.slot.load(), "task dispatched");
    if let Some(ctrl) = ctrl {
        ctrl.set_running(Some(name));
    }
    let result = producer.call(task).context(what);
    drop(guard);
    result
}

// ---------------------------------------------------------------------------------------------
// Selection (vc-processors-spec §4.6)

/// What selection needs of one external entry: its gate, ext lock names and load.
#[derive(Debug)]
struct Slot {
    /// `concurrent`; `None`: unbounded.
    gate: Option<Arc<Semaphore>>,
    locks: Vec<String>,
    /// `concurrent`, or 64.
    capacity: usize,
    /// Tasks holding this slot (including selection attempts in progress).
    load: AtomicUsize,
}

/// A held slot: one gate token, its ext locks and one unit of load.
struct SlotGuard<'a> {
    slot: &'a Slot,
    _gate: Option<Permit>,
    _locks: ExtLocks,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.slot.load.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Slot {
    fn new(concurrent: Option<usize>, capacity: usize, locks: Vec<String>) -> Self {
        Slot {
            gate: concurrent.map(|n| Arc::new(Semaphore::new(None, n))),
            locks,
            capacity,
            load: AtomicUsize::new(0),
        }
    }

    fn load(&self) -> usize {
        self.load.load(Ordering::Acquire)
    }

    fn try_lock(&self, limits: &LimitPool) -> Option<SlotGuard<'_>> {
        let gate = match &self.gate {
            Some(gate) => Some(gate.try_acquire()?),
            None => None,
        };
        let locks = limits.try_acquire_ext(&self.locks)?;
        Some(self.guard(gate, locks))
    }

    fn lock(&self, limits: &LimitPool) -> SlotGuard<'_> {
        let gate = self.gate.as_ref().map(|gate| gate.acquire());
        let locks = limits.acquire_ext(&self.locks);
        self.guard(gate, locks)
    }

    fn guard(&self, gate: Option<Permit>, locks: ExtLocks) -> SlotGuard<'_> {
        self.load.fetch_add(1, Ordering::AcqRel);
        SlotGuard {
            slot: self,
            _gate: gate,
            _locks: locks,
        }
    }
}

/// One entry as the choice sees it.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    /// Its gate and ext locks were taken without waiting.
    acquired: bool,
    capacity: usize,
    /// In-flight load, counting this attempt.
    load: usize,
}

/// The entry to use: among the acquired ones, the largest `capacity − load`; ties go to the
/// last one. `None` when none was acquired (the caller then waits on the first entry).
fn choose(candidates: &[Candidate]) -> Option<usize> {
    let mut best: Option<(usize, i128)> = None;
    for (i, c) in candidates.iter().enumerate().rev() {
        if !c.acquired {
            continue;
        }
        let free = c.capacity as i128 - c.load as i128;
        if best.is_none_or(|(_, f)| free > f) {
            best = Some((i, free));
        }
    }
    best.map(|(i, _)| i)
}

/// Takes a slot for one task: the index of the entry and its guard; `None` only without
/// entries. Blocks on the first entry when none is free.
fn select<'a>(slots: &[&'a Slot], limits: &LimitPool) -> Option<(usize, SlotGuard<'a>)> {
    let first: &'a Slot = slots.first().copied()?;
    let mut guards: Vec<Option<SlotGuard<'a>>> =
        slots.iter().map(|&slot| slot.try_lock(limits)).collect();
    let candidates: Vec<Candidate> = slots
        .iter()
        .zip(&guards)
        .map(|(slot, guard)| Candidate {
            acquired: guard.is_some(),
            capacity: slot.capacity,
            load: slot.load(),
        })
        .collect();
    let chosen =
        choose(&candidates).and_then(|i| guards.get_mut(i).and_then(Option::take).map(|g| (i, g)));
    // The others are released before the task runs.
    drop(guards);
    Some(chosen.unwrap_or_else(|| (0, first.lock(limits))))
}

// ---------------------------------------------------------------------------------------------
// The processors of the worker

/// Every processor kind of the worker, started from `[processors]`.
pub struct Processors {
    limits: Arc<LimitPool>,
    add_pieces: Pool<AddPieces>,
    tree_d: Pool<TreeD>,
    pc1: Pool<PC1>,
    pc2: Pool<PC2>,
    c2: Pool<C2>,
    snap_encode: Pool<SnapEncode>,
    snap_prove: Pool<SnapProve>,
    transfer: Pool<Transfer>,
    unseal: Pool<Unseal>,
    window_post: Pool<WindowPoSt>,
    /// `sealing_daemons` children: kept running, never sent a task.
    sealing_daemons: Mutex<Vec<(usize, Producer<()>)>>,
}

impl Processors {
    /// Starts the processors of `cfg` (worker-spec §1.2 steps 2 and 13): for each kind, every
    /// configured child in list order, each awaited until its ready line (any failure stops
    /// the start-up and the children already started), else the in-process builtin.
    ///
    /// A child runs `bin` (default `self_exe`, the worker's executable) with `args` (default
    /// `processor <kind>`), its `envs`, `inherit_envs`, `numa_preferred`, cgroup placement
    /// (index = its position in the list), `stable_wait` as ready timeout, `auto_restart`, and
    /// its stderr logged with stage and pid.
    ///
    /// `piece_token` (`sector_manager.piece_token`) goes into `PIECE_FETCHER_TOKEN` of every
    /// external add_pieces child when there are any (an explicit `envs` entry wins), else into
    /// this process's environment for the in-process fetcher: call this before other threads
    /// read the environment.
    pub fn start(
        cfg: &ProcessorsConfig,
        limits: Arc<LimitPool>,
        piece_token: Option<&str>,
        self_exe: &Path,
    ) -> Result<Processors> {
        let piece_token = piece_token.filter(|t| !t.is_empty());
        let mut add_pieces_env = Vec::new();
        if let Some(token) = piece_token {
            if cfg.add_pieces.is_some() {
                add_pieces_env.push((
                    OsString::from(ENV_PIECE_FETCHER_TOKEN),
                    OsString::from(token),
                ));
            } else {
                // worker-spec §1.2 step 2; edition 2021: `set_var` is safe. No child has been
                // started yet.
                std::env::set_var(ENV_PIECE_FETCHER_TOKEN, token);
            }
        }
        let builtin = Arc::new(BuiltinProcessor::from_env());
        let ctx = StartCtx {
            cfg,
            limits: &limits,
            self_exe,
        };
        let processors = Processors {
            add_pieces: ctx.pool::<AddPieces>(Kind::AddPieces, builtin.clone(), &add_pieces_env)?,
            tree_d: ctx.pool::<TreeD>(Kind::TreeD, builtin.clone(), &[])?,
            pc1: ctx.pool::<PC1>(Kind::Pc1, builtin.clone(), &[])?,
            pc2: ctx.pool::<PC2>(Kind::Pc2, builtin.clone(), &[])?,
            c2: ctx.pool::<C2>(Kind::C2, builtin.clone(), &[])?,
            snap_encode: ctx.pool::<SnapEncode>(Kind::SnapEncode, builtin.clone(), &[])?,
            snap_prove: ctx.pool::<SnapProve>(Kind::SnapProve, builtin.clone(), &[])?,
            transfer: ctx.pool::<Transfer>(Kind::Transfer, builtin.clone(), &[])?,
            unseal: ctx.pool::<Unseal>(Kind::Unseal, builtin.clone(), &[])?,
            window_post: ctx.pool::<WindowPoSt>(Kind::WindowPost, builtin, &[])?,
            sealing_daemons: Mutex::new(ctx.daemons()?),
            limits: limits.clone(),
        };
        Ok(processors)
    }

    /// The limit pool the external processors take their ext locks from.
    pub fn limits(&self) -> &Arc<LimitPool> {
        &self.limits
    }

    /// The pool of the kind that runs `T`.
    pub fn pool<T: StageTask>(&self) -> &Pool<T> {
        T::pool(self)
    }

    /// Runs `task` on the processors of its kind ([`Pool::run`]).
    pub fn run<T: StageTask>(&self, task: T, ctrl: Option<&ThreadControl>) -> Result<T::Output> {
        T::pool(self).run(task, ctrl)
    }

    /// One line per kind for start-up logs: `pc1: builtin` or
    /// `pc2: ext[0] pid 1234, concurrent 2, locks [gpu]; ext[1] pid 1235`.
    pub fn summary(&self) -> Vec<String> {
        Kind::ALL
            .iter()
            .map(|&kind| {
                let what = match kind {
                    Kind::AddPieces => self.add_pieces.describe(),
                    Kind::TreeD => self.tree_d.describe(),
                    Kind::Pc1 => self.pc1.describe(),
                    Kind::Pc2 => self.pc2.describe(),
                    Kind::C2 => self.c2.describe(),
                    Kind::SnapEncode => self.snap_encode.describe(),
                    Kind::SnapProve => self.snap_prove.describe(),
                    Kind::Transfer => self.transfer.describe(),
                    Kind::Unseal => self.unseal.describe(),
                    Kind::WindowPost => self.window_post.describe(),
                    Kind::SealingDaemons => {
                        let daemons = lock(&self.sealing_daemons);
                        if daemons.is_empty() {
                            "none".to_string()
                        } else {
                            daemons
                                .iter()
                                .map(|(i, p)| describe_ext(*i, p.child_pid(), None, &[]))
                                .collect::<Vec<_>>()
                                .join("; ")
                        }
                    }
                };
                format!("{kind}: {what}")
            })
            .collect()
    }

    /// Stops every child: later calls to external processors fail. A call in flight keeps its
    /// child until it returns.
    pub fn shutdown(&self) {
        self.add_pieces.shutdown();
        self.tree_d.shutdown();
        self.pc1.shutdown();
        self.pc2.shutdown();
        self.c2.shutdown();
        self.snap_encode.shutdown();
        self.snap_prove.shutdown();
        self.transfer.shutdown();
        self.unseal.shutdown();
        self.window_post.shutdown();
        lock(&self.sealing_daemons).clear();
        info!("processors shut down");
    }
}

/// What every pool needs at start-up.
struct StartCtx<'a> {
    cfg: &'a ProcessorsConfig,
    limits: &'a Arc<LimitPool>,
    self_exe: &'a Path,
}

impl StartCtx<'_> {
    fn list(&self, kind: Kind) -> Result<Option<&[ExtProcessorConfig]>> {
        match self.cfg.ext(kind.as_str()) {
            Some([]) => bail!(
                "`processors.{kind}` is an empty list (no subs section found): remove it to run \
                 {kind} inside the worker, or add `[[processors.{kind}]]` blocks"
            ),
            list => Ok(list),
        }
    }

    fn pool<T: Task>(
        &self,
        kind: Kind,
        builtin: Arc<dyn Processor<T>>,
        extra_env: &[(OsString, OsString)],
    ) -> Result<Pool<T>> {
        let Some(list) = self.list(kind)? else {
            return Ok(Pool::in_process(builtin));
        };
        let mut entries = Vec::with_capacity(list.len());
        for (index, ext) in list.iter().enumerate() {
            if ext.concurrent == Some(0) {
                bail!("`processors.{kind}.{index}.concurrent` = 0 would never run a task");
            }
            let producer = self.spawn::<T>(kind, index, ext, extra_env)?;
            entries.push(ExtEntry {
                index,
                slot: Slot::new(ext.concurrent, ext.capacity(), ext.locks.clone()),
                producer: Mutex::new(Some(producer)),
            });
        }
        Ok(Pool {
            inner: PoolInner::External {
                entries,
                limits: self.limits.clone(),
            },
        })
    }

    fn daemons(&self) -> Result<Vec<(usize, Producer<()>)>> {
        let Some(list) = self.list(Kind::SealingDaemons)? else {
            return Ok(Vec::new());
        };
        list.iter()
            .enumerate()
            .map(|(index, ext)| {
                let producer = self.spawn::<()>(Kind::SealingDaemons, index, ext, &[])?;
                Ok((index, producer))
            })
            .collect()
    }

    fn spawn<T: Task>(
        &self,
        kind: Kind,
        index: usize,
        ext: &ExtProcessorConfig,
        extra_env: &[(OsString, OsString)],
    ) -> Result<Producer<T>> {
        let bin = ext
            .bin
            .clone()
            .unwrap_or_else(|| self.self_exe.to_path_buf());
        let mut pc = ProducerConfig::new(T::STAGE, bin);
        pc.args = ext
            .args_for(kind.as_str())
            .into_iter()
            .map(OsString::from)
            .collect();
        // Later entries win: the configured `envs` override the piece token.
        pc.envs = extra_env.to_vec();
        pc.envs.extend(
            ext.envs
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        );
        pc.inherit_envs = ext.inherit_envs;
        pc.numa_preferred = ext.numa_preferred;
        pc.nice = self.cfg.priority.nice_for(kind.as_str(), ext);
        pc.cgroup = ext.cgroup.as_ref().and_then(|cg| {
            cg.cpuset.as_ref().map(|cpuset| CgroupPlacement {
                group_name: cg.group_name.clone(),
                cpuset: cpuset.clone(),
                index,
            })
        });
        pc.ready_timeout = ext.stable_wait.get();
        pc.auto_restart = ext.auto_restart;
        if let Some(max) = ext.max_line {
            pc.max_line = usize::try_from(max.0).unwrap_or(usize::MAX);
        }
        pc.stderr = StderrMode::Log;
        let bin = pc.bin.clone();
        let producer = Producer::<T>::start(pc)
            .with_context(|| format!("starting `processors.{kind}.{index}` ({})", bin.display()))?;
        info!(
            kind = kind.as_str(),
            index,
            pid = ?producer.child_pid(),
            bin = %bin.display(),
            "external processor ready"
        );
        Ok(producer)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use vc_processors::builtin::tasks::{PieceInfo, RegisteredSealProof};

    use super::*;
    use crate::config::PROCESSOR_KINDS;
    use crate::sealing::control::ThreadStateView;

    fn cand(acquired: bool, capacity: usize, load: usize) -> Candidate {
        Candidate {
            acquired,
            capacity,
            load,
        }
    }

    #[test]
    fn kinds_match_the_config_keys() {
        let names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, PROCESSOR_KINDS);
    }

    #[test]
    fn choice_takes_the_most_free_capacity_ties_go_last_and_none_means_wait() {
        assert_eq!(choose(&[cand(true, 4, 1), cand(true, 4, 3)]), Some(0));
        assert_eq!(choose(&[cand(true, 2, 1), cand(true, 8, 1)]), Some(1));
        assert_eq!(
            choose(&[cand(true, 4, 1), cand(true, 4, 1), cand(true, 2, 1)]),
            Some(1),
            "tie between 0 and 1 goes to the later one"
        );
        assert_eq!(
            choose(&[cand(true, 64, 1), cand(false, 64, 0), cand(true, 64, 1)]),
            Some(2)
        );
        assert_eq!(
            choose(&[cand(false, 64, 0), cand(true, 1, 1), cand(false, 64, 0)]),
            Some(1),
            "only acquired entries count"
        );
        assert_eq!(
            choose(&[cand(true, 64, 70), cand(true, 64, 66)]),
            Some(1),
            "an overloaded entry still compares by how far over it is"
        );
        assert_eq!(choose(&[cand(false, 64, 0), cand(false, 2, 0)]), None);
        assert_eq!(choose(&[]), None);
    }

    #[test]
    fn selection_uses_gates_and_waits_on_the_first_entry_when_all_are_busy() {
        let limits = LimitPool::unlimited();
        let a = Slot::new(Some(1), 1, Vec::new());
        let b = Slot::new(Some(2), 2, Vec::new());
        let slots = [&a, &b];
        let (i1, g1) = select(&slots, &limits).expect("entries");
        assert_eq!(i1, 1, "b has one free, a none");
        let (i2, g2) = select(&slots, &limits).expect("entries");
        assert_eq!(i2, 1, "both have none free: the later wins");
        assert_eq!(a.load(), 0, "a's attempt was released");
        let (i3, g3) = select(&slots, &limits).expect("entries");
        assert_eq!(i3, 0, "b is full");
        assert_eq!((a.load(), b.load()), (1, 2));
        std::thread::scope(|s| {
            let (tx, rx) = mpsc::channel();
            let (slots, limits) = (&slots, &limits);
            s.spawn(move || {
                let (i, _g) = select(slots, limits).expect("entries");
                tx.send(i).expect("send");
            });
            assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
            drop(g1);
            assert!(
                rx.recv_timeout(Duration::from_millis(100)).is_err(),
                "it waits on the first entry, not on the one that freed (P-26)"
            );
            drop(g3);
            let i = rx.recv_timeout(Duration::from_secs(5)).expect("selected");
            assert_eq!(i, 0);
        });
        drop(g2);
        assert_eq!((a.load(), b.load()), (0, 0));
    }

    #[test]
    fn an_entry_whose_ext_lock_is_held_is_not_available() {
        let mut cfg = ProcessorsConfig::default();
        cfg.ext_locks.insert("gpu".into(), 1);
        let limits = LimitPool::from_config(&cfg).expect("limits");
        let a = Slot::new(None, 64, vec!["gpu".into()]);
        let b = Slot::new(Some(2), 2, vec!["gpu".into()]);
        let slots = [&a, &b];
        let (i, held) = select(&slots, &limits).expect("entries");
        assert_eq!(i, 0, "b cannot take gpu while a holds it");
        assert!(limits.try_acquire_ext(&["gpu"]).is_none());
        assert!(a.try_lock(&limits).is_none() && b.try_lock(&limits).is_none());
        drop(held);
        assert!(b.try_lock(&limits).is_some());
    }

    /// The builtin, recording the thread state while it runs.
    struct Watching {
        inner: BuiltinProcessor,
        ctrl: ThreadControl,
        seen: Mutex<Vec<ThreadStateView>>,
    }

    impl Processor<AddPieces> for Watching {
        fn name(&self) -> String {
            Processor::<AddPieces>::name(&self.inner)
        }

        fn process(&self, task: AddPieces) -> anyhow::Result<Vec<PieceInfo>> {
            lock(&self.seen).push(self.ctrl.info().thread_state);
            Processor::<AddPieces>::process(&self.inner, task)
        }
    }

    fn cc_sector(dir: &Path) -> AddPieces {
        AddPieces {
            seal_proof_type: RegisteredSealProof::StackedDrg2KiBV1_1,
            pieces: Vec::new(),
            staged_filepath: dir.join("staged"),
        }
    }

    #[test]
    fn a_builtin_run_shows_running_then_idle() {
        let dir = tempfile::tempdir().expect("tmp");
        let ctrl = ThreadControl::new(0, None, "sealer");
        let watching = Arc::new(Watching {
            inner: BuiltinProcessor::default(),
            ctrl: ctrl.clone(),
            seen: Mutex::new(Vec::new()),
        });
        let pool = Pool::<AddPieces>::in_process(watching.clone());
        let infos = pool
            .run(cc_sector(dir.path()), Some(&ctrl))
            .expect("add_pieces");
        assert_eq!(infos.len(), 1);
        let seen = lock(&watching.seen).clone();
        assert!(
            matches!(&seen[..], [ThreadStateView::Running { proc: Some(p), .. }] if p == "builtin add_pieces"),
            "{seen:?}"
        );
        assert_eq!(ctrl.info().thread_state, ThreadStateView::Idle);
        assert_eq!(
            std::fs::metadata(dir.path().join("staged"))
                .expect("staged")
                .len(),
            2048
        );
    }

    #[test]
    fn processors_without_blocks_run_in_process() {
        let dir = tempfile::tempdir().expect("tmp");
        let processors = Processors::start(
            &ProcessorsConfig::default(),
            Arc::new(LimitPool::unlimited()),
            None,
            Path::new("/nonexistent/damocles-worker"),
        )
        .expect("start");
        let summary = processors.summary();
        assert_eq!(summary.len(), 11);
        assert_eq!(summary[0], "add_pieces: builtin");
        assert_eq!(summary[10], "sealing_daemons: none");
        assert!(!processors.pool::<PC1>().is_external());
        assert_eq!(<PC2 as StageTask>::KIND, Kind::Pc2);
        let ctrl = ThreadControl::new(0, None, "sealer");
        let infos = processors
            .run(cc_sector(dir.path()), Some(&ctrl))
            .expect("add_pieces");
        assert_eq!(infos.len(), 1);
        assert_eq!(ctrl.info().thread_state, ThreadStateView::Idle);
        processors.shutdown();
    }

    #[test]
    fn an_empty_block_list_is_refused() {
        let cfg = ProcessorsConfig {
            pc1: Some(Vec::new()),
            ..Default::default()
        };
        let started = Processors::start(
            &cfg,
            Arc::new(LimitPool::unlimited()),
            None,
            Path::new("/nonexistent"),
        );
        let Err(err) = started else {
            panic!("an empty list was accepted");
        };
        assert!(err.to_string().contains("processors.pc1"), "{err}");
    }
}
