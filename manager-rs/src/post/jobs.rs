//! The worker-prover's job queue (manager-spec §2.6, §3.5): WindowPoSt tasks stored in the
//! `prover` collection under `wdpost-/<state>:<id>`, taken by the `wdpost` threads of
//! damocles-workers, kept alive by their heartbeats and finished with a proof or an error.
//!
//! A job's id is the base58 of the little-endian xxhash64 of its input's JSON, so the same
//! input asked twice is one job. A running job without heartbeat for `HeartbeatTimeout` fails
//! with "heartbeat timeout"; a failed job goes back to `ready2run` until it has been tried
//! `JobMaxTry` times; finished jobs older than `JobLifetime` are deleted.
//!
//! Unlike damocles, a late answer from a worker that no longer holds the job (its heartbeat
//! timed out and the job went to another worker) does not overwrite the job: only a proof is
//! taken from it, since a proof is checked before it is used.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use damocles_manager_api::types::{
    AllocateWdPoStJobSpec, WdPoStAllocatedJob, WdPoStInput, WdPoStJob, WdPoStJobBrief,
    WdPoStJobList, WdPoStJobState, WindowPoStOutput,
};

use crate::config::WorkerProverConfig;
use crate::error::{ApiError, ApiResult};
use crate::kv::{cf, Kv, Op};

/// The key prefix of every job.
pub const JOB_PREFIX: &str = "wdpost-/";

/// The error of a job that lost its worker.
pub const HEARTBEAT_TIMEOUT: &str = "heartbeat timeout";

/// How often running jobs are checked for heartbeats and failed jobs re-queued, at most (a
/// third of `HeartbeatTimeout` when shorter, so a lost worker is noticed in time).
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(10);
/// The shortest maintenance interval.
const MIN_MAINTENANCE_INTERVAL: Duration = Duration::from_millis(500);
/// How often old finished jobs are deleted.
const CLEANUP_INTERVAL: Duration = Duration::from_secs(30 * 60);
/// Jobs handled per maintenance round.
const MAINTENANCE_BATCH: usize = 128;

fn key(state: WdPoStJobState, id: &str) -> Vec<u8> {
    format!("{JOB_PREFIX}{state}:{id}").into_bytes()
}

fn now() -> u64 {
    u64::try_from(crate::util::unix_now()).unwrap_or(0)
}

/// The id of the job proving `input`.
pub fn job_id(input: &WdPoStInput) -> Result<String> {
    let json = serde_json::to_vec(input).context("encoding a WindowPoSt job input")?;
    let hash = xxhash_rust::xxh64::xxh64(&json, 0);
    Ok(bs58::encode(hash.to_le_bytes()).into_string())
}

/// The job queue. Every change is one synced batch under one lock, so a job is in exactly
/// one state at any time, also across a crash.
#[derive(Debug)]
pub struct JobQueue {
    kv: Kv,
    cfg: WorkerProverConfig,
    lock: Mutex<()>,
    /// Bumped whenever a job ends, leaves or comes back, for the provers waiting on jobs.
    changes: (Mutex<u64>, Condvar),
    /// When the last clean-up of old jobs ran.
    last_cleanup: Mutex<Option<std::time::Instant>>,
}

impl JobQueue {
    /// The queue over `kv`'s `prover` collection.
    pub fn new(kv: Kv, cfg: WorkerProverConfig) -> Self {
        JobQueue {
            kv,
            cfg,
            lock: Mutex::new(()),
            changes: (Mutex::new(0), Condvar::new()),
            last_cleanup: Mutex::new(None),
        }
    }

    /// The change counter; pass it to [`JobQueue::wait_change`].
    pub fn version(&self) -> u64 {
        *self.changes.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the change counter moves past `seen`, or `timeout`; answers the counter.
    pub fn wait_change(&self, seen: u64, timeout: Duration) -> u64 {
        let g = self.changes.0.lock().unwrap_or_else(|p| p.into_inner());
        let (g, _) = self
            .changes
            .1
            .wait_timeout_while(g, timeout, |v| *v == seen)
            .unwrap_or_else(|p| p.into_inner());
        *g
    }

    fn changed(&self) {
        *self.changes.0.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.changes.1.notify_all();
    }

    /// How often the background round runs.
    pub fn maintenance_interval(&self) -> Duration {
        (self.cfg.heartbeat_timeout.0 / 3).clamp(MIN_MAINTENANCE_INTERVAL, MAINTENANCE_INTERVAL)
    }

    /// The settings.
    pub fn config(&self) -> &WorkerProverConfig {
        &self.cfg
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn in_state(&self, state: WdPoStJobState) -> Result<Vec<WdPoStJob>> {
        let prefix = format!("{JOB_PREFIX}{state}:");
        Ok(self
            .kv
            .scan_json::<WdPoStJob>(cf::PROVER, prefix.as_bytes())?
            .into_iter()
            .map(|(_, j)| j)
            .collect())
    }

    fn find(&self, id: &str) -> Result<Option<WdPoStJob>> {
        for state in WdPoStJobState::ALL {
            if let Some(j) = self.kv.get_json(cf::PROVER, &key(state, id))? {
                return Ok(Some(j));
            }
        }
        Ok(None)
    }

    /// Stores `job` (whose state may have changed from `old`) in one batch.
    fn moved(old: WdPoStJobState, job: &WdPoStJob) -> Result<Vec<Op>> {
        let mut ops = Vec::new();
        if old != job.state {
            ops.push(Op::Del(cf::PROVER, key(old, &job.id)));
        }
        ops.push(Op::put_json(cf::PROVER, key(job.state, &job.id), job)?);
        Ok(ops)
    }

    /// A job by id, in any state.
    pub fn get(&self, id: &str) -> Result<Option<WdPoStJob>> {
        let _g = self.guard();
        self.find(id)
    }

    /// The job proving `input`: the existing one (in any state) or a new `ready2run` one.
    pub fn create(
        &self,
        deadline_idx: u64,
        partitions: Vec<u64>,
        input: WdPoStInput,
    ) -> Result<WdPoStJob> {
        let id = job_id(&input)?;
        let _g = self.guard();
        if let Some(j) = self.find(&id)? {
            return Ok(j);
        }
        let t = now();
        let job = WdPoStJob {
            id,
            state: WdPoStJobState::ReadyToRun,
            deadline_idx,
            partitions,
            input,
            output: None,
            try_num: 0,
            error_reason: String::new(),
            worker_name: String::new(),
            started_at: 0,
            heartbeat_at: 0,
            finished_at: 0,
            created_at: t,
            updated_at: t,
        };
        self.kv
            .put_json(cf::PROVER, &key(job.state, &job.id), &job)?;
        tracing::info!(job = %job.id, miner = job.input.miner_id, deadline = deadline_idx, partitions = ?job.partitions, sectors = job.input.sectors.len(), "WindowPoSt job queued for the worker-provers");
        Ok(job)
    }

    /// Takes up to `num` waiting jobs matching `spec` for `worker`, oldest first.
    pub fn allocate(
        &self,
        spec: &AllocateWdPoStJobSpec,
        num: u32,
        worker: &str,
    ) -> Result<Vec<WdPoStAllocatedJob>> {
        let _g = self.guard();
        let mut ready = self.in_state(WdPoStJobState::ReadyToRun)?;
        ready.sort_by_key(|j| j.created_at);
        let t = now();
        let mut ops = Vec::new();
        let mut out = Vec::new();
        for mut job in ready {
            if out.len() >= num as usize {
                break;
            }
            // An empty list, like a missing one, allows anything.
            let miner_ok = spec
                .allowed_miners
                .as_ref()
                .filter(|m| !m.is_empty())
                .is_none_or(|m| m.contains(&job.input.miner_id));
            let type_ok = spec
                .allowed_proof_types
                .as_ref()
                .filter(|t| !t.is_empty())
                .is_none_or(|t| t.contains(&job.input.proof_type));
            if !miner_ok || !type_ok {
                continue;
            }
            job.state = WdPoStJobState::Running;
            job.try_num += 1;
            job.started_at = t;
            job.heartbeat_at = t;
            job.updated_at = t;
            job.worker_name = worker.to_string();
            ops.extend(Self::moved(WdPoStJobState::ReadyToRun, &job)?);
            out.push(WdPoStAllocatedJob {
                id: job.id.clone(),
                input: job.input.clone(),
            });
        }
        if !ops.is_empty() {
            self.kv.write(ops)?;
        }
        for j in &out {
            tracing::info!(job = %j.id, worker, "WindowPoSt job allocated");
        }
        Ok(out)
    }

    /// Records a heartbeat of `worker` for each job it holds; an unknown id fails the whole
    /// call and changes nothing. A job the worker does not hold (finished, queued again after
    /// its heartbeat timed out, or taken by another worker) is left as it is.
    pub fn heartbeat(&self, ids: &[String], worker: &str) -> ApiResult<()> {
        let _g = self.guard();
        let t = now();
        let mut ops = Vec::new();
        for id in ids {
            let mut job = self
                .find(id)?
                .ok_or_else(|| ApiError::bad(format!("WindowPoSt job {id} not found")))?;
            if job.state != WdPoStJobState::Running || job.worker_name != worker {
                tracing::debug!(job = %id, worker, state = %job.state, holder = %job.worker_name, "heartbeat for a job the worker does not hold");
                continue;
            }
            job.heartbeat_at = t;
            job.updated_at = t;
            ops.push(Op::put_json(cf::PROVER, key(job.state, &job.id), &job)?);
        }
        if !ops.is_empty() {
            self.kv.write(ops)?;
        }
        Ok(())
    }

    /// Ends a job with `output` (success) or `error_reason` (failure).
    pub fn finish(
        &self,
        id: &str,
        output: Option<WindowPoStOutput>,
        error_reason: &str,
    ) -> ApiResult<()> {
        let _g = self.guard();
        let mut job = self
            .find(id)?
            .ok_or_else(|| ApiError::bad(format!("WindowPoSt job {id} not found")))?;
        // A success carries a proof or the faulty sectors; anything else is a failure.
        let success = error_reason.is_empty()
            && output
                .as_ref()
                .is_some_and(|o| !o.proofs.is_empty() || !o.faults.is_empty());
        if job.state != WdPoStJobState::Running && !success {
            // The job was given up on (heartbeat timeout) or already answered: a late failure
            // must not overwrite what happened since.
            tracing::warn!(job = id, state = %job.state, error = error_reason, "ignoring a late failure report of a WindowPoSt job");
            return Ok(());
        }
        if job.succeeded() {
            return Ok(());
        }
        let old = job.state;
        let t = now();
        job.state = WdPoStJobState::Finished;
        job.finished_at = t;
        job.updated_at = t;
        if success {
            job.output = output;
            job.error_reason.clear();
        } else {
            job.output = None;
            job.error_reason = if error_reason.is_empty() {
                "finished without a proof or faults".into()
            } else {
                error_reason.to_string()
            };
        }
        self.kv.write(Self::moved(old, &job)?)?;
        self.changed();
        tracing::info!(job = id, worker = %job.worker_name, try_num = job.try_num, error = %job.error_reason, "WindowPoSt job finished");
        Ok(())
    }

    /// Puts a job back to `ready2run` as if new: no attempt counted, no worker, no output.
    pub fn reset(&self, id: &str) -> ApiResult<()> {
        let _g = self.guard();
        let mut job = self
            .find(id)?
            .ok_or_else(|| ApiError::bad(format!("WindowPoSt job {id} not found")))?;
        let old = job.state;
        let t = now();
        job.state = WdPoStJobState::ReadyToRun;
        job.try_num = 0;
        job.output = None;
        job.error_reason.clear();
        job.worker_name.clear();
        job.started_at = 0;
        job.heartbeat_at = 0;
        job.finished_at = 0;
        job.created_at = t;
        job.updated_at = t;
        self.kv.write(Self::moved(old, &job)?)?;
        self.changed();
        Ok(())
    }

    /// Ends a job nobody waits for any more (its deadline closed): finished with `reason`,
    /// out of attempts so it is not queued again. A job already finished is left alone.
    pub fn give_up(&self, id: &str, reason: &str) -> Result<()> {
        let _g = self.guard();
        let Some(mut job) = self.find(id)? else {
            return Ok(());
        };
        if job.state == WdPoStJobState::Finished {
            return Ok(());
        }
        let old = job.state;
        let t = now();
        job.state = WdPoStJobState::Finished;
        job.error_reason = reason.to_string();
        job.output = None;
        job.try_num = job.try_num.max(self.cfg.job_max_try);
        job.finished_at = t;
        job.updated_at = t;
        self.kv.write(Self::moved(old, &job)?)?;
        self.changed();
        tracing::info!(job = id, reason, "WindowPoSt job given up");
        Ok(())
    }

    /// Deletes a job.
    pub fn remove(&self, id: &str) -> ApiResult<()> {
        let _g = self.guard();
        let job = self
            .find(id)?
            .ok_or_else(|| ApiError::bad(format!("WindowPoSt job {id} not found")))?;
        self.kv.delete(cf::PROVER, &key(job.state, id))?;
        self.changed();
        Ok(())
    }

    /// Every job, newest first, with the input blanked to its miner and the output dropped.
    pub fn list(&self) -> Result<WdPoStJobList> {
        let _g = self.guard();
        let mut jobs = Vec::new();
        for state in WdPoStJobState::ALL {
            for mut job in self.in_state(state)? {
                let sectors = job.input.sectors.len() as u32;
                let faults = job.output.as_ref().map_or(0, |o| o.faults.len() as u32);
                job.input = WdPoStInput {
                    sectors: Vec::new(),
                    miner_id: job.input.miner_id,
                    proof_type: String::new(),
                    seed: Default::default(),
                };
                job.output = None;
                jobs.push(WdPoStJobBrief {
                    job,
                    sectors,
                    faults,
                });
            }
        }
        jobs.sort_by_key(|j| std::cmp::Reverse(j.job.created_at));
        Ok(WdPoStJobList {
            jobs,
            max_try: self.cfg.job_max_try,
        })
    }

    /// Fails running jobs whose last heartbeat is older than `HeartbeatTimeout` at `now`.
    pub fn expire_heartbeats_at(&self, now: u64) -> Result<usize> {
        let _g = self.guard();
        let timeout = self.cfg.heartbeat_timeout.0.as_secs();
        let mut ops = Vec::new();
        let mut n = 0;
        for mut job in self.in_state(WdPoStJobState::Running)? {
            if n >= MAINTENANCE_BATCH {
                break;
            }
            if now.saturating_sub(job.heartbeat_at) <= timeout {
                continue;
            }
            tracing::warn!(job = %job.id, worker = %job.worker_name, last_heartbeat = job.heartbeat_at, "WindowPoSt job lost its worker: heartbeat timeout");
            job.state = WdPoStJobState::Finished;
            job.error_reason = HEARTBEAT_TIMEOUT.into();
            job.output = None;
            job.finished_at = now;
            job.updated_at = now;
            ops.extend(Self::moved(WdPoStJobState::Running, &job)?);
            n += 1;
        }
        if !ops.is_empty() {
            self.kv.write(ops)?;
            self.changed();
        }
        Ok(n)
    }

    /// Puts failed jobs that have attempts left back to `ready2run`.
    pub fn requeue_failed(&self) -> Result<usize> {
        let _g = self.guard();
        let t = now();
        let mut ops = Vec::new();
        let mut n = 0;
        for mut job in self.in_state(WdPoStJobState::Finished)? {
            if n >= MAINTENANCE_BATCH {
                break;
            }
            if job.error_reason.is_empty() || job.try_num >= self.cfg.job_max_try {
                continue;
            }
            tracing::info!(job = %job.id, try_num = job.try_num, error = %job.error_reason, "WindowPoSt job queued again");
            job.state = WdPoStJobState::ReadyToRun;
            job.output = None;
            job.error_reason.clear();
            job.started_at = 0;
            job.finished_at = 0;
            job.updated_at = t;
            ops.extend(Self::moved(WdPoStJobState::Finished, &job)?);
            n += 1;
        }
        if !ops.is_empty() {
            self.kv.write(ops)?;
        }
        Ok(n)
    }

    /// Deletes finished jobs created more than `JobLifetime` before `now`.
    pub fn clean_up_at(&self, now: u64) -> Result<usize> {
        let _g = self.guard();
        let lifetime = self.cfg.job_lifetime.0.as_secs();
        let mut ops = Vec::new();
        for job in self.in_state(WdPoStJobState::Finished)? {
            if ops.len() >= MAINTENANCE_BATCH {
                break;
            }
            if now.saturating_sub(job.created_at) > lifetime {
                ops.push(Op::Del(cf::PROVER, key(job.state, &job.id)));
            }
        }
        let n = ops.len();
        if n > 0 {
            self.kv.write(ops)?;
            self.changed();
            tracing::info!(jobs = n, "old WindowPoSt jobs deleted");
        }
        Ok(n)
    }

    /// One maintenance round, run every [`JobQueue::maintenance_interval`]: expired heartbeats
    /// fail their jobs, failed jobs with attempts left go back to the queue, and (every 30 min)
    /// old finished jobs are deleted; then the per-state gauges are set.
    pub async fn maintenance_round(self: Arc<Self>) -> Result<()> {
        let q = self.clone();
        let round = tokio::task::spawn_blocking(move || -> Result<()> {
            q.expire_heartbeats_at(now())?;
            q.requeue_failed()?;
            let mut last = q.last_cleanup.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_none_or(|t| t.elapsed() >= CLEANUP_INTERVAL) {
                q.clean_up_at(now())?;
                *last = Some(std::time::Instant::now());
            }
            Ok(())
        })
        .await
        .map_err(|e| anyhow::anyhow!("WindowPoSt job maintenance panicked: {e}"))?;
        if let Ok(list) = self.counts() {
            for (state, n) in list {
                metrics::gauge!("damocles_manager_wdpost_jobs", "state" => state.as_str())
                    .set(n as f64);
            }
        }
        round.context("WindowPoSt job maintenance")
    }

    /// Jobs per state.
    pub fn counts(&self) -> Result<Vec<(WdPoStJobState, usize)>> {
        WdPoStJobState::ALL
            .iter()
            .map(|s| {
                let prefix = format!("{JOB_PREFIX}{s}:");
                Ok((*s, self.kv.scan(cf::PROVER, prefix.as_bytes())?.len()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use damocles_manager_api::types::{PoStSectorAccesses, WdPoStSectorInput};

    fn input(miner: u64, sector: u64) -> WdPoStInput {
        WdPoStInput {
            sectors: vec![WdPoStSectorInput {
                sector_id: sector,
                comm_r: Default::default(),
                upgrade: false,
                accesses: PoStSectorAccesses {
                    sealed_file: "persist".into(),
                    cache_dir: "persist".into(),
                },
            }],
            miner_id: miner,
            proof_type: "StackedDrgWindow2KiBV1_2".into(),
            seed: Default::default(),
        }
    }

    fn queue(dir: &std::path::Path) -> JobQueue {
        JobQueue::new(Kv::open(dir).expect("open"), WorkerProverConfig::default())
    }

    fn output() -> WindowPoStOutput {
        WindowPoStOutput {
            proofs: vec![damocles_manager_api::json::Bytes(vec![1, 2, 3])],
            faults: vec![],
        }
    }

    #[test]
    fn the_same_input_is_one_job_and_ids_are_base58_of_eight_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = queue(dir.path());
        let a = q.create(3, vec![0], input(1000, 1)).expect("create");
        let b = q.create(3, vec![0], input(1000, 1)).expect("create again");
        let c = q.create(3, vec![0], input(1000, 2)).expect("create other");
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        let raw = bs58::decode(&a.id).into_vec().expect("base58");
        assert_eq!(raw.len(), 8);
        assert_eq!(q.list().expect("list").jobs.len(), 2);
    }

    #[test]
    fn allocation_filters_by_miner_and_proof_type_and_counts_attempts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = queue(dir.path());
        let job = q.create(0, vec![0], input(1000, 1)).expect("create");
        let other_type = AllocateWdPoStJobSpec {
            allowed_miners: None,
            allowed_proof_types: Some(vec!["StackedDrgWindow32GiBV1_2".into()]),
        };
        assert!(q.allocate(&other_type, 1, "w1").expect("alloc").is_empty());
        let other_miner = AllocateWdPoStJobSpec {
            allowed_miners: Some(vec![2000]),
            allowed_proof_types: None,
        };
        assert!(q.allocate(&other_miner, 1, "w1").expect("alloc").is_empty());
        let got = q
            .allocate(&AllocateWdPoStJobSpec::default(), 1, "w1")
            .expect("alloc");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, job.id);
        let stored = q.get(&job.id).expect("get").expect("exists");
        assert_eq!(stored.state, WdPoStJobState::Running);
        assert_eq!(stored.try_num, 1);
        assert_eq!(stored.worker_name, "w1");
        assert!(q
            .allocate(&AllocateWdPoStJobSpec::default(), 1, "w2")
            .expect("alloc")
            .is_empty());
    }

    #[test]
    fn a_lost_worker_times_out_and_the_job_is_retried_until_max_try() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = queue(dir.path());
        let job = q.create(0, vec![0], input(1000, 1)).expect("create");
        let any = AllocateWdPoStJobSpec::default();
        q.allocate(&any, 1, "w1").expect("alloc");
        let t = q.get(&job.id).expect("get").expect("job").heartbeat_at;
        assert_eq!(q.expire_heartbeats_at(t + 15).expect("expire"), 0);
        assert_eq!(q.expire_heartbeats_at(t + 16).expect("expire"), 1);
        let j = q.get(&job.id).expect("get").expect("job");
        assert_eq!(j.state, WdPoStJobState::Finished);
        assert_eq!(j.error_reason, HEARTBEAT_TIMEOUT);
        // The late failure of the lost worker changes nothing.
        q.finish(&job.id, None, "killed").expect("finish");
        assert_eq!(
            q.get(&job.id).expect("get").expect("job").error_reason,
            HEARTBEAT_TIMEOUT
        );
        assert_eq!(q.requeue_failed().expect("requeue"), 1);
        let again = q.allocate(&any, 1, "w2").expect("alloc");
        assert_eq!(again.len(), 1);
        let j = q.get(&job.id).expect("get").expect("job");
        assert_eq!((j.try_num, j.worker_name.as_str()), (2, "w2"));
        q.finish(&job.id, None, "disk error").expect("finish");
        // Two attempts made: the failure is final.
        assert_eq!(q.requeue_failed().expect("requeue"), 0);
        let j = q.get(&job.id).expect("get").expect("job");
        assert_eq!(j.state, WdPoStJobState::Finished);
        assert_eq!(j.error_reason, "disk error");
    }

    #[test]
    fn heartbeats_keep_a_job_and_an_unknown_id_fails_the_whole_call() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = queue(dir.path());
        let job = q.create(0, vec![0], input(1000, 1)).expect("create");
        q.allocate(&AllocateWdPoStJobSpec::default(), 1, "w1")
            .expect("alloc");
        let e = q
            .heartbeat(&[job.id.clone(), "nope".into()], "w1")
            .expect_err("unknown id");
        assert!(e.to_string().contains("nope"), "{e}");
        q.heartbeat(std::slice::from_ref(&job.id), "w1")
            .expect("heartbeat");
        let hb = q.get(&job.id).expect("get").expect("job").heartbeat_at;
        assert_eq!(q.expire_heartbeats_at(hb + 10).expect("expire"), 0);
        // Another worker's heartbeat does not take the job over.
        q.heartbeat(std::slice::from_ref(&job.id), "w2")
            .expect("heartbeat");
        assert_eq!(q.get(&job.id).expect("get").expect("job").worker_name, "w1");
        // An empty answer is no proof.
        q.finish(&job.id, Some(WindowPoStOutput::default()), "")
            .expect("finish");
        let j = q.get(&job.id).expect("get").expect("job");
        assert!(!j.succeeded());
        assert_eq!(j.error_reason, "finished without a proof or faults");
        assert_eq!(q.requeue_failed().expect("requeue"), 1);
        q.allocate(&AllocateWdPoStJobSpec::default(), 1, "w1")
            .expect("alloc");
        q.finish(&job.id, Some(output()), "").expect("finish");
        let j = q.get(&job.id).expect("get").expect("job");
        assert!(j.succeeded());
        assert_eq!(j.output, Some(output()));
        // A heartbeat after the end does not revive it.
        q.heartbeat(std::slice::from_ref(&job.id), "w1")
            .expect("heartbeat");
        assert!(q.get(&job.id).expect("get").expect("job").succeeded());
    }

    #[test]
    fn a_finished_job_wakes_its_waiter() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = Arc::new(queue(dir.path()));
        let job = q.create(0, vec![0], input(1000, 1)).expect("create");
        q.allocate(&AllocateWdPoStJobSpec::default(), 1, "w1")
            .expect("alloc");
        let seen = q.version();
        let q2 = q.clone();
        let id = job.id.clone();
        let finisher = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            q2.finish(&id, Some(output()), "").expect("finish");
        });
        let started = std::time::Instant::now();
        assert_ne!(q.wait_change(seen, Duration::from_secs(30)), seen);
        assert!(started.elapsed() < Duration::from_secs(10));
        finisher.join().expect("join");
        assert_eq!(q.maintenance_interval(), Duration::from_secs(5));
    }

    #[test]
    fn a_job_given_up_is_not_queued_again_but_keeps_a_late_proof() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = queue(dir.path());
        let job = q.create(0, vec![0], input(1000, 1)).expect("create");
        q.give_up(&job.id, "the deadline closed").expect("give up");
        assert_eq!(q.requeue_failed().expect("requeue"), 0);
        assert!(q
            .allocate(&AllocateWdPoStJobSpec::default(), 1, "w1")
            .expect("alloc")
            .is_empty());
        let j = q.get(&job.id).expect("get").expect("job");
        assert_eq!(
            (j.state, j.error_reason.as_str()),
            (WdPoStJobState::Finished, "the deadline closed")
        );
        // A proof that comes anyway is kept.
        q.finish(&job.id, Some(output()), "").expect("finish");
        assert!(q.get(&job.id).expect("get").expect("job").succeeded());
        q.give_up(&job.id, "again").expect("give up");
        assert!(q.get(&job.id).expect("get").expect("job").succeeded());
    }

    #[test]
    fn reset_remove_list_and_clean_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = queue(dir.path());
        let a = q.create(0, vec![0], input(1000, 1)).expect("create");
        let b = q.create(1, vec![0], input(1000, 2)).expect("create");
        q.allocate(&AllocateWdPoStJobSpec::default(), 2, "w1")
            .expect("alloc");
        q.finish(&a.id, Some(output()), "").expect("finish");
        q.reset(&a.id).expect("reset");
        let j = q.get(&a.id).expect("get").expect("job");
        assert_eq!(j.state, WdPoStJobState::ReadyToRun);
        assert_eq!((j.try_num, j.output.is_none()), (0, true));
        let list = q.list().expect("list");
        assert_eq!(list.max_try, 2);
        assert!(list.jobs.iter().all(|j| j.job.input.sectors.is_empty()));
        assert!(list.jobs.iter().all(|j| j.sectors == 1));
        q.remove(&b.id).expect("remove");
        assert!(q.get(&b.id).expect("get").is_none());
        assert!(q.remove(&b.id).is_err());
        q.allocate(&AllocateWdPoStJobSpec::default(), 1, "w1")
            .expect("alloc");
        q.finish(&a.id, Some(output()), "").expect("finish");
        let created = q.get(&a.id).expect("get").expect("job").created_at;
        assert_eq!(q.clean_up_at(created + 3600).expect("clean"), 0);
        assert_eq!(q.clean_up_at(created + 25 * 3600 + 1).expect("clean"), 1);
        assert!(q.get(&a.id).expect("get").is_none());
    }
}
