//! Computing a WindowPoSt: the `window_post` task of the processor protocol, run by a prover:
//! builtin in this process, ext-prover children ([`super::ext`]), or the wdpost threads of
//! damocles-workers through the job queue ([`WorkerProver`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use damocles_manager_api::types::{PoStSectorAccesses, WdPoStInput, WdPoStSectorInput};
use tokio_util::sync::CancellationToken;
use vc_processors::builtin::processors::BuiltinProcessor;
use vc_processors::builtin::tasks::{WindowPoSt, WindowPoStOutput};
use vc_processors::Processor;

use super::jobs::JobQueue;

/// One proof to compute: the task, and what a prover that hands it on needs besides.
#[derive(Debug, Clone)]
pub struct ProofRequest {
    /// The processor task (replicas with local paths).
    pub task: WindowPoSt,
    /// The deadline proven.
    pub deadline: u64,
    /// The partitions proven.
    pub partitions: Vec<u64>,
    /// The stores of each replica's files, in the order of `task.replicas`.
    pub accesses: Vec<PoStSectorAccesses>,
    /// Cancelled when the deadline closes: a waiting prover gives up.
    pub cancel: CancellationToken,
}

/// Computes WindowPoSt proofs. A prover answers the proof, or the sectors it could not prove
/// (`faults`), which the runner skips before trying again.
pub trait WindowProver: Send + Sync {
    /// The back-end's name, for logs.
    fn name(&self) -> String;

    /// Runs one request; blocks.
    fn prove(&self, req: ProofRequest) -> Result<WindowPoStOutput>;

    /// The proof answered for `req` did not verify: a prover that keeps answers forgets it.
    fn proof_rejected(&self, _req: &ProofRequest) {}

    /// Whether the prover reads the replicas' local paths (else it reads the stores itself
    /// and sectors of object stores are not fetched for it).
    fn reads_local_files(&self) -> bool {
        true
    }
}

/// The proof library in this process.
#[derive(Debug, Default)]
pub struct BuiltinProver {
    inner: BuiltinProcessor,
}

impl WindowProver for BuiltinProver {
    fn name(&self) -> String {
        "builtin".into()
    }

    fn prove(&self, req: ProofRequest) -> Result<WindowPoStOutput> {
        Processor::<WindowPoSt>::process(&self.inner, req.task)
    }
}

/// Runs a prover off the async runtime.
pub async fn prove(prover: Arc<dyn WindowProver>, req: ProofRequest) -> Result<WindowPoStOutput> {
    tokio::task::spawn_blocking(move || prover.prove(req))
        .await
        .map_err(|e| anyhow!("the prover task panicked or was cancelled: {e}"))?
}

/// How often a waiting worker-prover reads its job when nothing wakes it (a deadline's end).
const JOB_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The worker-prover: each request becomes a job in the queue, which a `wdpost` thread of a
/// damocles-worker takes, proves with its `window_post` processor and finishes.
#[derive(Debug)]
pub struct WorkerProver {
    jobs: Arc<JobQueue>,
    poll: Duration,
}

impl WorkerProver {
    /// A prover over `jobs`.
    pub fn new(jobs: Arc<JobQueue>) -> Self {
        WorkerProver {
            jobs,
            poll: JOB_POLL_INTERVAL,
        }
    }

    /// The job input of a request: store names instead of local paths.
    pub fn job_input(req: &ProofRequest) -> Result<WdPoStInput> {
        if req.accesses.len() != req.task.replicas.len() {
            bail!(
                "{} replicas but {} store accesses",
                req.task.replicas.len(),
                req.accesses.len()
            );
        }
        let proof_type = match serde_json::to_value(req.task.proof_type)
            .context("naming the PoSt proof type")?
        {
            serde_json::Value::String(s) => s,
            other => bail!("the PoSt proof type encodes as {other}, not a name"),
        };
        Ok(WdPoStInput {
            sectors: req
                .task
                .replicas
                .iter()
                .zip(&req.accesses)
                .map(|(r, a)| WdPoStSectorInput {
                    sector_id: r.sector_id,
                    comm_r: r.comm_r,
                    upgrade: false,
                    accesses: a.clone(),
                })
                .collect(),
            miner_id: req.task.miner_id,
            proof_type,
            seed: req.task.seed,
        })
    }
}

impl WindowProver for WorkerProver {
    fn name(&self) -> String {
        "worker-prover".into()
    }

    fn reads_local_files(&self) -> bool {
        false
    }

    fn proof_rejected(&self, req: &ProofRequest) {
        // The same input finds the same job: put it back in the queue to be proven again.
        let reset = Self::job_input(req)
            .and_then(|input| super::jobs::job_id(&input))
            .and_then(|id| self.jobs.reset(&id).map_err(|e| anyhow!("{e}")).map(|_| id));
        match reset {
            Ok(id) => {
                tracing::warn!(job = %id, "the worker's proof did not verify; job queued again")
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "the worker's rejected proof could not be queued again")
            }
        }
    }

    fn prove(&self, req: ProofRequest) -> Result<WindowPoStOutput> {
        let input = Self::job_input(&req)?;
        let max_try = self.jobs.config().job_max_try;
        'create: loop {
            let job = self
                .jobs
                .create(req.deadline, req.partitions.clone(), input.clone())?;
            loop {
                // Read before the job, so a change in between is not missed.
                let seen = self.jobs.version();
                let Some(j) = self.jobs.get(&job.id)? else {
                    tracing::warn!(job = %job.id, "WindowPoSt job removed while waiting for it; queuing it again");
                    continue 'create;
                };
                if j.succeeded() {
                    let out = j
                        .output
                        .ok_or_else(|| anyhow!("job {} finished without output", j.id))?;
                    return Ok(WindowPoStOutput {
                        proofs: out.proofs.into_iter().map(|p| p.0.into()).collect(),
                        faults: out.faults,
                    });
                }
                if j.state == damocles_manager_api::types::WdPoStJobState::Finished
                    && j.try_num >= max_try
                {
                    bail!(
                        "error from worker: job {} failed {} times; last: {}",
                        j.id,
                        j.try_num,
                        j.error_reason
                    );
                }
                if req.cancel.is_cancelled() {
                    // Nobody will use it: keep workers on the deadlines still open.
                    if let Err(e) = self.jobs.give_up(&j.id, "the deadline closed") {
                        tracing::warn!(job = %j.id, error = %format!("{e:#}"), "giving up the job failed");
                    }
                    bail!("the deadline closed while job {} was waiting", j.id);
                }
                self.jobs.wait_change(seen, self.poll);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WorkerProverConfig;
    use crate::kv::Kv;
    use damocles_manager_api::types::{AllocateWdPoStJobSpec, WdPoStJobState};
    use vc_processors::builtin::proofs::api::RegisteredPoStProof;
    use vc_processors::builtin::tasks::PoStReplicaInfo;

    fn request(cancel: CancellationToken) -> ProofRequest {
        ProofRequest {
            task: WindowPoSt {
                miner_id: 1000,
                proof_type: RegisteredPoStProof::StackedDrgWindow2KiBV1_2,
                replicas: vec![PoStReplicaInfo {
                    sector_id: 3,
                    comm_r: [5; 32],
                    cache_dir: "/nowhere/cache".into(),
                    sealed_file: "/nowhere/sealed".into(),
                }],
                seed: [9; 32],
            },
            deadline: 2,
            partitions: vec![0],
            accesses: vec![PoStSectorAccesses {
                sealed_file: "persist".into(),
                cache_dir: "persist".into(),
            }],
            cancel,
        }
    }

    /// Takes the next job as worker `w` and answers it with `answer`.
    fn work(jobs: &JobQueue, w: &str, answer: Option<Vec<u8>>) -> String {
        loop {
            let got = jobs
                .allocate(&AllocateWdPoStJobSpec::default(), 1, w)
                .expect("allocate");
            if let Some(j) = got.into_iter().next() {
                let (out, err) = match answer {
                    Some(p) => (
                        Some(damocles_manager_api::types::WindowPoStOutput {
                            proofs: vec![damocles_manager_api::json::Bytes(p)],
                            faults: vec![],
                        }),
                        "",
                    ),
                    None => (None, "disk on fire"),
                };
                jobs.finish(&j.id, out, err).expect("finish");
                return j.id;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_request_becomes_a_job_whose_answer_is_the_proof_and_a_rejected_proof_requeues_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let jobs = Arc::new(JobQueue::new(
            Kv::open(dir.path()).expect("kv"),
            WorkerProverConfig::default(),
        ));
        let prover = WorkerProver::new(jobs.clone());
        let req = request(CancellationToken::new());
        let input = WorkerProver::job_input(&req).expect("input");
        assert_eq!(input.proof_type, "StackedDrgWindow2KiBV1_2");
        assert_eq!(input.sectors[0].accesses.sealed_file, "persist");
        let worker = {
            let jobs = jobs.clone();
            std::thread::spawn(move || work(&jobs, "w1", Some(vec![1, 2, 3])))
        };
        let out = prover.prove(req.clone()).expect("prove");
        let id = worker.join().expect("worker");
        assert_eq!(out.proofs[0].0, vec![1, 2, 3]);
        prover.proof_rejected(&req);
        let job = jobs.get(&id).expect("get").expect("job");
        assert_eq!((job.state, job.try_num), (WdPoStJobState::ReadyToRun, 0));
    }

    #[test]
    fn a_job_failed_max_try_times_is_an_error_and_a_closed_deadline_stops_the_wait() {
        let dir = tempfile::tempdir().expect("tempdir");
        let jobs = Arc::new(JobQueue::new(
            Kv::open(dir.path()).expect("kv"),
            WorkerProverConfig::default(),
        ));
        let prover = WorkerProver::new(jobs.clone());
        let worker = {
            let jobs = jobs.clone();
            std::thread::spawn(move || {
                work(&jobs, "w1", None);
                jobs.requeue_failed().expect("requeue");
                work(&jobs, "w2", None);
            })
        };
        let e = prover
            .prove(request(CancellationToken::new()))
            .expect_err("failed twice");
        worker.join().expect("worker");
        assert!(
            e.to_string().contains("error from worker") && e.to_string().contains("disk on fire"),
            "{e}"
        );
        // Nobody takes the job of another request: the deadline's end stops the wait.
        let cancel = CancellationToken::new();
        let mut req = request(cancel.clone());
        req.task.seed = [10; 32];
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            cancel.cancel();
        });
        let e = prover.prove(req.clone()).expect_err("cancelled");
        canceller.join().expect("canceller");
        assert!(e.to_string().contains("deadline closed"), "{e}");
        let id =
            super::super::jobs::job_id(&WorkerProver::job_input(&req).expect("input")).expect("id");
        let job = jobs.get(&id).expect("get").expect("job");
        assert_eq!(job.error_reason, "the deadline closed");
        assert!(jobs
            .allocate(&AllocateWdPoStJobSpec::default(), 1, "w3")
            .expect("alloc")
            .is_empty());
    }
}
