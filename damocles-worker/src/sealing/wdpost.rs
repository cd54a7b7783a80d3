//! The `wdpost` planner (worker-spec §2.5): a thread that takes WindowPoSt jobs from the
//! manager's worker-prover, proves them with the `window_post` processor and answers them.
//!
//! Nothing is persisted: a job lives in the manager, which hands it to another thread when
//! this one stops sending heartbeats (every 3 s while the job is held).
//!
//! ```text
//! Empty --Allocated--> Allocated --Generate--> Generated --Finish--> Finished
//! ```

use std::collections::BTreeMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use damocles_manager_api::json::Bytes;
use damocles_manager_api::types::{
    AllocateWdPoStJobSpec, SectorId, WdPoStAllocatedJob, WindowPoStOutput,
};
use objstore::ObjectStore;
use vc_processors::builtin::post_fetch::{fetch_all, RemoteReplica, Scratch};
use vc_processors::builtin::proofs::{api, seal_proof_for_size};
use vc_processors::builtin::tasks::{PoStReplicaInfo, WindowPoSt};
use vc_processors::layout;

use crate::config::SealingConfig;
use crate::port::{ManagerError, ManagerPort};
use crate::sealing::control::{Interrupted, ThreadControl};
use crate::sealing::engine::{AttachedStore, SealingEnv};

/// How often a held job's heartbeat is sent.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);

/// The PoSt proof type names a thread allowed `sizes` (bytes) may prove; `None`: any.
pub fn allowed_post_proof_types(sizes: &[u64]) -> Option<Vec<String>> {
    if sizes.is_empty() {
        return None;
    }
    Some(
        sizes
            .iter()
            .filter_map(|&s| layout::sector_size_index(s))
            .flat_map(|i| {
                let n = layout::SECTOR_SIZE_NAMES[i];
                [
                    format!("StackedDrgWinning{n}V1"),
                    format!("StackedDrgWindow{n}V1"),
                    format!("StackedDrgWindow{n}V1_2"),
                ]
            })
            .collect(),
    )
}

/// Sends `Venus.WdPoStHeartbeatJobs` for one job every [`HEARTBEAT_INTERVAL`] until dropped.
#[derive(Debug)]
struct Heartbeat {
    stop: Option<mpsc::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    fn start(manager: Arc<dyn ManagerPort>, job: String, worker: String) -> Result<Self> {
        let (tx, rx) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name(format!("wdpost-heartbeat-{job}"))
            .spawn(move || loop {
                match rx.recv_timeout(HEARTBEAT_INTERVAL) {
                    Err(RecvTimeoutError::Timeout) => {
                        let ids = vec![job.clone()];
                        if let Err(e) = manager.wdpost_heartbeat_jobs(ids, worker.clone()) {
                            tracing::warn!(job = %job, error = %e, "WindowPoSt job heartbeat failed");
                        }
                    }
                    _ => return,
                }
            })
            .context("starting the heartbeat thread")?;
        Ok(Heartbeat {
            stop: Some(tx),
            handle: Some(handle),
        })
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// How a job ended for the thread.
enum JobEnd {
    /// No job was available.
    Idle,
    /// The job was answered.
    Finished,
}

/// A `wdpost` thread.
#[derive(Debug)]
pub struct WdPostThread {
    sealing: SealingConfig,
    ctrl: ThreadControl,
    env: Arc<SealingEnv>,
}

impl WdPostThread {
    /// A thread with the merged sealing settings `sealing`.
    pub fn new(sealing: SealingConfig, ctrl: ThreadControl, env: Arc<SealingEnv>) -> Self {
        ctrl.set_plan("wdpost");
        WdPostThread { sealing, ctrl, env }
    }

    /// Runs until the daemon stops: polls for a job every `recover_interval` while idle and
    /// waits `seal_interval` after each job.
    pub fn run(self) {
        loop {
            if self.ctrl.is_stopped() {
                return;
            }
            let pause = match self.one_job() {
                Ok(JobEnd::Idle) => self.sealing.recover_interval.0,
                Ok(JobEnd::Finished) => self.sealing.seal_interval.0,
                Err(Interrupted::Stop) => return,
                Err(Interrupted::Pause) => match self.paused() {
                    Ok(()) => continue,
                    Err(_) => return,
                },
            };
            self.ctrl.set_job(None, "", None);
            self.ctrl.set_idle();
            match self.ctrl.sleep(pause) {
                Ok(()) => {}
                Err(Interrupted::Stop) => return,
                Err(Interrupted::Pause) => {
                    if self.paused().is_err() {
                        return;
                    }
                }
            }
        }
    }

    fn paused(&self) -> Result<(), Interrupted> {
        tracing::info!(thread = self.ctrl.index(), "paused");
        self.ctrl.wait_for_resume(None).map(|_| {
            tracing::info!(thread = self.ctrl.index(), "resumed");
        })
    }

    fn allocate(&self) -> Option<WdPoStAllocatedJob> {
        let spec = AllocateWdPoStJobSpec {
            allowed_miners: if self.sealing.allowed_miners.is_empty() {
                None
            } else {
                Some(self.sealing.allowed_miners.clone())
            },
            allowed_proof_types: allowed_post_proof_types(
                &self
                    .sealing
                    .allowed_sizes
                    .iter()
                    .map(|s| s.0)
                    .collect::<Vec<_>>(),
            ),
        };
        let worker = self.env.instance.clone();
        match self.env.manager.wdpost_allocate_jobs(spec, 1, worker) {
            Ok(jobs) => jobs.into_iter().next(),
            Err(ManagerError::MethodNotFound { .. }) => {
                tracing::debug!("worker-prover module not enabled in the manager");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "no WindowPoSt job allocated");
                None
            }
        }
    }

    /// One round: take a job, prove it, answer it.
    fn one_job(&self) -> Result<JobEnd, Interrupted> {
        self.ctrl.check_interrupt()?;
        self.ctrl.set_job(None, "Empty", None);
        let Some(job) = self.allocate() else {
            return Ok(JobEnd::Idle);
        };
        let id = job.id.clone();
        tracing::info!(job = %id, miner = job.input.miner_id, sectors = job.input.sectors.len(), "WindowPoSt job allocated");
        let heartbeat = match Heartbeat::start(
            self.env.manager.clone(),
            id.clone(),
            self.env.instance.clone(),
        ) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(job = %id, error = %format!("{e:#}"), "WindowPoSt job abandoned");
                return Ok(JobEnd::Finished);
            }
        };
        self.ctrl
            .set_job(Some(id.clone()), "Allocated", Some("Generate"));
        // New heavy sealing stages of this worker wait until the proof is made.
        let hold = self.env.limits.hold_for_post();
        let result = self.generate(&job);
        drop(hold);
        self.ctrl
            .set_job(Some(id.clone()), "Generated", Some("SubmitProof"));
        let (output, error_reason) = match result {
            Ok(out) => (Some(out), String::new()),
            Err(e) => {
                let text = format!("{e:#}");
                tracing::warn!(job = %id, error = %text, "WindowPoSt job failed");
                (None, text.escape_debug().to_string())
            }
        };
        let mut tries = 0u32;
        loop {
            let answer = (id.clone(), output.clone(), error_reason.clone());
            match self
                .env
                .manager
                .wdpost_finish_job(answer.0, answer.1, answer.2)
            {
                Ok(()) => break,
                Err(e) => {
                    tries += 1;
                    if tries > self.sealing.max_retries {
                        tracing::error!(job = %id, error = %e, "WindowPoSt job abandoned: its answer cannot be sent");
                        return Ok(JobEnd::Finished);
                    }
                    tracing::warn!(job = %id, error = %e, tries, "sending the WindowPoSt job's answer failed; retrying");
                    // A pause waits for the answer to be sent: the proof is not thrown away.
                    self.ctrl
                        .sleep_until_stop(self.sealing.recover_interval.0)?;
                }
            }
        }
        drop(heartbeat);
        self.ctrl.set_job(Some(id.clone()), "Finished", None);
        tracing::info!(job = %id, ok = error_reason.is_empty(), "WindowPoSt job finished");
        Ok(JobEnd::Finished)
    }

    /// Allocated: the `window_post` processor over the job's replicas, those of object
    /// stores fetched first (what the challenges read only). Sectors that cannot be fetched
    /// are answered as faults, which the manager skips.
    fn generate(&self, job: &WdPoStAllocatedJob) -> Result<WindowPoStOutput> {
        let (mut task, remotes) =
            window_post_task(job, &self.env.attached, &self.env.object_stores)?;
        let _scratch = if remotes.is_empty() {
            None
        } else {
            let scratch = Scratch::new(&self.env.post_scratch)?;
            let all: Vec<u64> = task.replicas.iter().map(|r| r.sector_id).collect();
            let (fetched, failed) = fetch_all(
                &remotes,
                &all,
                task.proof_type,
                &task.seed,
                task.miner_id,
                &scratch,
            )?;
            if !failed.is_empty() {
                for (n, why) in &failed {
                    tracing::warn!(job = %job.id, sector = n, reason = %why, "sector not fetched; reported faulty");
                }
                return Ok(WindowPoStOutput {
                    proofs: Vec::new(),
                    faults: failed.into_keys().collect(),
                });
            }
            let mut bytes = 0;
            for (replica, stats) in fetched {
                bytes += stats.total();
                if let Some(r) = task
                    .replicas
                    .iter_mut()
                    .find(|r| r.sector_id == replica.sector_id)
                {
                    *r = replica;
                }
            }
            metrics::counter!("damocles_worker_wdpost_fetched_bytes_total").increment(bytes);
            tracing::info!(job = %job.id, sectors = remotes.len(), bytes, "fetched what the proof reads of the sectors in object stores");
            Some(scratch)
        };
        let _token = self
            .env
            .limits
            .acquire_stage("window_post", Some(&self.ctrl));
        let out = self
            .env
            .processors
            .run(task, Some(&self.ctrl))
            .map_err(|e| anyhow!("{e:#}"))?;
        Ok(WindowPoStOutput {
            proofs: out.proofs.into_iter().map(|p| Bytes(p.0)).collect(),
            faults: out.faults,
        })
    }
}

/// The processor task of a job: each sector's files in this worker's attached stores of the
/// same names as the manager's. Sectors in objstore plugin stores come back apart, to be
/// fetched before the task runs (their replicas in the task have no paths yet).
pub fn window_post_task(
    job: &WdPoStAllocatedJob,
    attached: &[AttachedStore],
    object_stores: &BTreeMap<String, Arc<dyn ObjectStore>>,
) -> Result<(WindowPoSt, Vec<RemoteReplica>)> {
    let input = &job.input;
    let store = |name: &str| -> Result<&AttachedStore> {
        attached.iter().find(|s| s.name == name).ok_or_else(|| {
            anyhow!(
                "job {}: store {name:?} is not attached to this worker",
                job.id
            )
        })
    };
    let proof_type: api::RegisteredPoStProof = serde_json::from_value(serde_json::Value::String(
        input.proof_type.clone(),
    ))
    .map_err(|_| {
        anyhow!(
            "job {}: unknown PoSt proof type {:?}",
            job.id,
            input.proof_type
        )
    })?;
    let seal_proof = seal_proof_for_size(u64::from(proof_type.sector_size()))?;
    let mut replicas = Vec::with_capacity(input.sectors.len());
    let mut remotes = Vec::new();
    for s in &input.sectors {
        let sid = SectorId {
            miner: input.miner_id,
            number: s.sector_id,
        };
        let sealed_rel = layout::sealed_rel(sid, s.upgrade);
        let cache_rel = layout::cache_rel(sid, s.upgrade);
        let sealed_store = store(&s.accesses.sealed_file)?;
        let cache_store = store(&s.accesses.cache_dir)?;
        match (
            object_stores.get(&sealed_store.name),
            object_stores.get(&cache_store.name),
        ) {
            (None, None) => replicas.push(PoStReplicaInfo {
                sector_id: s.sector_id,
                comm_r: s.comm_r,
                cache_dir: cache_store.location.join(&cache_rel),
                sealed_file: sealed_store.location.join(&sealed_rel),
            }),
            (Some(sealed), Some(cache)) => {
                replicas.push(PoStReplicaInfo {
                    sector_id: s.sector_id,
                    comm_r: s.comm_r,
                    cache_dir: Default::default(),
                    sealed_file: Default::default(),
                });
                remotes.push(RemoteReplica {
                    sector_id: s.sector_id,
                    comm_r: s.comm_r,
                    seal_proof,
                    sealed: (sealed.clone(), sealed_rel),
                    cache: (cache.clone(), cache_rel),
                });
            }
            _ => bail!(
                "job {}: sector {} has its sealed file and cache in a file store and an object store; wdpost threads need both in one kind",
                job.id,
                s.sector_id
            ),
        }
    }
    Ok((
        WindowPoSt {
            miner_id: input.miner_id,
            proof_type,
            replicas,
            seed: input.seed,
        },
        remotes,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use damocles_manager_api::types::{PoStSectorAccesses, WdPoStInput, WdPoStSectorInput};
    use std::path::PathBuf;

    fn store(name: &str, plugin: Option<&str>) -> AttachedStore {
        AttachedStore {
            name: name.into(),
            location: PathBuf::from(format!("/stores/{name}")),
            readonly: false,
            plugin: plugin.map(str::to_string),
            library: None,
            meta: Default::default(),
        }
    }

    fn job(sealed: &str, cache: &str, upgrade: bool, proof_type: &str) -> WdPoStAllocatedJob {
        WdPoStAllocatedJob {
            id: "job1".into(),
            input: WdPoStInput {
                sectors: vec![WdPoStSectorInput {
                    sector_id: 7,
                    comm_r: [3; 32],
                    upgrade,
                    accesses: PoStSectorAccesses {
                        sealed_file: sealed.into(),
                        cache_dir: cache.into(),
                    },
                }],
                miner_id: 1000,
                proof_type: proof_type.into(),
                seed: [9; 32],
            },
        }
    }

    fn no_objects() -> BTreeMap<String, Arc<dyn ObjectStore>> {
        BTreeMap::new()
    }

    #[test]
    fn replicas_are_found_in_the_attached_stores_of_the_same_names() {
        let stores = [store("a", None), store("b", None)];
        let (t, remotes) = window_post_task(
            &job("a", "b", false, "StackedDrgWindow2KiBV1_2"),
            &stores,
            &no_objects(),
        )
        .expect("task");
        assert!(remotes.is_empty());
        assert_eq!(
            t.replicas[0].sealed_file,
            PathBuf::from("/stores/a/sealed/s-t01000-7")
        );
        assert_eq!(
            t.replicas[0].cache_dir,
            PathBuf::from("/stores/b/cache/s-t01000-7")
        );
        assert_eq!(
            (t.miner_id, t.seed, t.replicas[0].comm_r),
            (1000, [9; 32], [3; 32])
        );
        let (u, _) = window_post_task(
            &job("a", "a", true, "StackedDrgWindow2KiBV1_2"),
            &stores,
            &no_objects(),
        )
        .expect("task");
        assert_eq!(
            u.replicas[0].sealed_file,
            PathBuf::from("/stores/a/update/s-t01000-7")
        );
        assert_eq!(
            u.replicas[0].cache_dir,
            PathBuf::from("/stores/a/update-cache/s-t01000-7")
        );
    }

    #[test]
    fn unknown_stores_and_proof_types_are_refused_by_name() {
        let stores = [store("a", None)];
        let e = window_post_task(
            &job("x", "a", false, "StackedDrgWindow2KiBV1_2"),
            &stores,
            &no_objects(),
        )
        .expect_err("unknown store");
        assert!(format!("{e}").contains("\"x\" is not attached"), "{e}");
        let e = window_post_task(
            &job("a", "a", false, "StackedDrgWindow3KiB"),
            &stores,
            &no_objects(),
        )
        .expect_err("bad type");
        assert!(format!("{e}").contains("StackedDrgWindow3KiB"), "{e}");
    }

    #[test]
    fn proof_type_names_follow_the_allowed_sizes() {
        assert_eq!(allowed_post_proof_types(&[]), None);
        assert_eq!(
            allowed_post_proof_types(&[2048]),
            Some(vec![
                "StackedDrgWinning2KiBV1".to_string(),
                "StackedDrgWindow2KiBV1".to_string(),
                "StackedDrgWindow2KiBV1_2".to_string(),
            ])
        );
    }

    /// A wdpost thread over an in-memory manager, with 10 ms pauses and one retry.
    fn thread_over(manager: Arc<crate::port::memory::MemoryManager>) -> WdPostThread {
        let limits = Arc::new(crate::limits::LimitPool::unlimited());
        let processors = crate::processors::Processors::start(
            &crate::config::ProcessorsConfig::default(),
            limits.clone(),
            None,
            std::path::Path::new("/nonexistent/damocles-worker"),
        )
        .expect("in-process processors");
        let env = SealingEnv {
            manager,
            processors: Arc::new(processors),
            limits,
            instance: "w1".into(),
            attached: vec![store("ps", None)],
            local_piece_dirs: Vec::new(),
            remote_piece_base: String::new(),
            deals_enabled: false,
            static_tree_d: BTreeMap::new(),
            object_stores: no_objects(),
            post_scratch: std::env::temp_dir(),
        };
        let short = crate::config::HumanDuration(Duration::from_millis(10));
        let sealing = SealingConfig {
            max_retries: 1,
            recover_interval: short,
            seal_interval: short,
            ..SealingConfig::default()
        };
        WdPostThread::new(
            sealing,
            ThreadControl::new(0, None, "wdpost"),
            Arc::new(env),
        )
    }

    #[test]
    fn a_job_that_cannot_be_proven_is_answered_with_its_reason_through_a_failed_send() {
        use crate::port::{memory::MemoryManager, Method};
        let manager = Arc::new(MemoryManager::default());
        manager.answer(
            Method::WdPoStAllocateJobs,
            Ok(vec![job("ps", "ps", false, "StackedDrgWindow3KiB")]),
        );
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        manager.answer::<()>(
            Method::WdPoStFinishJob,
            Err(ManagerError::Unavailable {
                method: Method::WdPoStFinishJob,
                cause: Arc::new(refused),
            }),
        );
        manager.answer(Method::WdPoStFinishJob, Ok(()));
        let thread = thread_over(manager.clone());
        assert!(matches!(thread.one_job(), Ok(JobEnd::Finished)));
        let asked = manager.calls_of(Method::WdPoStAllocateJobs);
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0][1], 1, "one job at a time");
        assert_eq!(asked[0][2], "w1");
        let answers = manager.calls_of(Method::WdPoStFinishJob);
        assert_eq!(answers.len(), 2, "sent again after the failed send");
        assert_eq!(answers[0], answers[1]);
        assert_eq!(answers[1][0], "job1");
        assert!(answers[1][1].is_null(), "no output");
        let reason = answers[1][2].as_str().expect("reason");
        assert!(reason.contains("StackedDrgWindow3KiB"), "{reason}");
    }

    #[test]
    fn a_manager_without_the_worker_prover_leaves_the_thread_idle() {
        use crate::port::{memory::MemoryManager, Method};
        let manager = Arc::new(MemoryManager::default());
        let thread = thread_over(manager.clone());
        assert!(matches!(thread.one_job(), Ok(JobEnd::Idle)));
        assert!(matches!(thread.one_job(), Ok(JobEnd::Idle)));
        assert_eq!(manager.calls_of(Method::WdPoStAllocateJobs).len(), 2);
        assert!(manager.calls_of(Method::WdPoStFinishJob).is_empty());
    }
}
