//! WinningPoSt (`daemon run --miner`, `[Miners.Proof] Enabled`): when the chain elects one of
//! the manager's miners to make a block, the manager proves the challenged sectors with the
//! builtin prover or the `[[WinPost]]` children of `ext-prover.cfg`, within the election's
//! budget, and submits the proof; the chain verifies it.
//!
//! damocles answers proof requests of sophon-miner through sophon-gateway; with the embedded
//! devnet the chain asks directly (manager-spec §3.7).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use damocles_manager_api::json::Bytes;
use damocles_manager_api::types::{ActorId, ChainEpoch};
use vc_processors::builtin::processors::BuiltinProcessor;
use vc_processors::builtin::proofs::winning_post_proof_for_size;
use vc_processors::builtin::tasks::{WinningPoSt, WinningPoStOutput};
use vc_processors::Processor;

use super::remote::{fetch_all, Scratch};
use super::{Located, SectorLocator};
use crate::chain::{BlockOutcome, Chain, Election};
use crate::proofs::{seal_proof, winning_post_challenged};
use crate::supervisor::TaskContext;

/// Epochs after which an answered election is forgotten.
const FORGET_AFTER_EPOCHS: ChainEpoch = 2880;

/// Computes WinningPoSt proofs.
pub trait WinningProver: Send + Sync {
    /// The back-end's name, for logs.
    fn name(&self) -> String;

    /// Runs one task; blocks.
    fn prove(&self, task: WinningPoSt) -> Result<WinningPoStOutput>;
}

/// The proof library in this process.
#[derive(Debug, Default)]
pub struct BuiltinWinningProver {
    inner: BuiltinProcessor,
}

impl WinningProver for BuiltinWinningProver {
    fn name(&self) -> String {
        "builtin".into()
    }

    fn prove(&self, task: WinningPoSt) -> Result<WinningPoStOutput> {
        Processor::<WinningPoSt>::process(&self.inner, task)
    }
}

/// Answers the elections of the miners with `[Miners.Proof] Enabled`.
pub struct WinningPoster {
    chain: Arc<dyn Chain>,
    locator: SectorLocator,
    prover: Arc<dyn WinningProver>,
    miners: Vec<ActorId>,
    /// Elections being answered or answered, so each is proven once.
    seen: Mutex<BTreeSet<(ActorId, ChainEpoch)>>,
    /// One proof at a time: a WinningPoSt is heavy, and WindowPoSt needs the machine too.
    proving: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for WinningPoster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WinningPoster")
            .field("prover", &self.prover.name())
            .field("miners", &self.miners)
            .finish()
    }
}

impl WinningPoster {
    /// A poster for `miners` proving with `prover`.
    pub fn new(
        chain: Arc<dyn Chain>,
        locator: SectorLocator,
        prover: Arc<dyn WinningProver>,
        miners: Vec<ActorId>,
    ) -> Self {
        WinningPoster {
            chain,
            locator,
            prover,
            miners,
            seen: Mutex::new(BTreeSet::new()),
            proving: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }

    /// Runs until the run is stopped: at each head, every new election is answered in its own
    /// task; each head handled is the task's progress.
    pub async fn run(self: Arc<Self>, ctx: TaskContext) -> Result<()> {
        let stop = ctx.stop().clone();
        tracing::info!(prover = %self.prover.name(), miners = ?self.miners, "WinningPoSt miner module running");
        let mut heads = self.chain.subscribe();
        loop {
            for &miner in &self.miners {
                let elections = match self.chain.pending_elections(miner).await {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(miner, error = %format!("{e:#}"), "reading elections failed");
                        continue;
                    }
                };
                for election in elections {
                    let fresh = self
                        .seen
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert((miner, election.epoch));
                    if fresh {
                        let this = self.clone();
                        let label = format!("election {} of miner {miner}", election.epoch);
                        // Answered even when the task restarts meanwhile: the election is
                        // already marked seen.
                        ctx.spawn_lasting_job(
                            label,
                            async move { this.answer(miner, election).await },
                        );
                    }
                }
            }
            // Elections expire long before this: forget them.
            let head = heads.borrow().epoch;
            self.seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|(_, epoch)| *epoch + FORGET_AFTER_EPOCHS >= head);
            ctx.progress();
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                changed = heads.changed() => if changed.is_err() { return Ok(()) },
            }
        }
    }

    async fn answer(self: Arc<Self>, miner: ActorId, election: Election) {
        let started = Instant::now();
        let budget = Duration::from_secs(
            u64::try_from(election.expires_at - crate::util::unix_now()).unwrap_or(0),
        );
        let epoch = election.epoch;
        if budget.is_zero() {
            tracing::warn!(miner, epoch, "election seen after its budget ran out");
            return;
        }
        let labels = [("miner", miner.to_string())];
        let deadline = tokio::time::Instant::now() + budget;
        let Ok(Ok(permit)) =
            tokio::time::timeout_at(deadline, self.proving.clone().acquire_owned()).await
        else {
            tracing::error!(
                miner,
                epoch,
                "WinningPoSt not started within the budget: another one is being proven"
            );
            metrics::counter!("damocles_manager_winning_post_total", "miner" => miner.to_string(), "result" => "late").increment(1);
            return;
        };
        let this = self.clone();
        // The permit goes with the proof: a proof that outlives its budget still holds it.
        let proving = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            this.prove(miner, &election)
        });
        let proofs = match tokio::time::timeout_at(deadline, proving).await {
            Ok(Ok(Ok(p))) => p,
            Ok(Ok(Err(e))) => {
                tracing::error!(miner, epoch, error = %format!("{e:#}"), "WinningPoSt failed");
                metrics::counter!("damocles_manager_winning_post_total", "miner" => miner.to_string(), "result" => "error").increment(1);
                return;
            }
            Ok(Err(e)) => {
                tracing::error!(miner, epoch, error = %e, "WinningPoSt task panicked");
                return;
            }
            Err(_) => {
                tracing::error!(
                    miner,
                    epoch,
                    budget_secs = budget.as_secs(),
                    "WinningPoSt not ready within the budget"
                );
                metrics::counter!("damocles_manager_winning_post_total", "miner" => miner.to_string(), "result" => "late").increment(1);
                return;
            }
        };
        metrics::histogram!("damocles_manager_winning_post_seconds", &labels)
            .record(started.elapsed().as_secs_f64());
        match self.chain.submit_block(miner, epoch, proofs).await {
            Ok(outcome) => {
                let result = match outcome {
                    BlockOutcome::Won => "won",
                    BlockOutcome::Rejected => "rejected",
                    BlockOutcome::Missed => "missed",
                };
                metrics::counter!("damocles_manager_winning_post_total", "miner" => miner.to_string(), "result" => result).increment(1);
                tracing::info!(miner, epoch, ?outcome, ms = started.elapsed().as_millis() as u64, prover = %self.prover.name(), "WinningPoSt submitted");
            }
            Err(e) => {
                tracing::error!(miner, epoch, error = %format!("{e:#}"), "submitting the WinningPoSt failed")
            }
        }
    }

    /// The proof of an election's challenged sectors; blocks.
    fn prove(&self, miner: ActorId, election: &Election) -> Result<Vec<Bytes>> {
        let first = election
            .sectors
            .first()
            .ok_or_else(|| anyhow!("the election has no sector"))?;
        let seal = seal_proof(first.seal_proof)?;
        let post_proof = winning_post_proof_for_size(u64::from(seal.sector_size()))?;
        let mut rand = election.randomness;
        rand[31] &= 0x3f;
        let numbers: Vec<u64> = election.sectors.iter().map(|s| s.sector_number).collect();
        let challenged = winning_post_challenged(post_proof, &rand, miner, &numbers)?;
        let mut replicas = Vec::new();
        let mut remotes = Vec::new();
        for n in &challenged {
            let sector = election
                .sectors
                .iter()
                .find(|s| s.sector_number == *n)
                .ok_or_else(|| anyhow!("challenged sector {n} is not eligible"))?;
            match self.locator.replica(miner, sector)?.0 {
                Located::Local(r) => replicas.push(r),
                Located::Remote(r) => remotes.push(r),
            }
        }
        let _scratch = if remotes.is_empty() {
            None
        } else {
            let scratch = Scratch::new(&self.locator.scratch_root)?;
            let (fetched, failed) =
                fetch_all(&remotes, &challenged, post_proof, &rand, miner, &scratch)?;
            if let Some((n, why)) = failed.into_iter().next() {
                bail!("sector {n}: {why}");
            }
            replicas.extend(fetched.into_iter().map(|(r, _)| r));
            Some(scratch)
        };
        replicas.sort_by_key(|r| r.sector_id);
        let _running = super::margin::begin(format!(
            "WinningPoSt of miner {miner} at epoch {}",
            election.epoch
        ));
        let out = self
            .prover
            .prove(WinningPoSt {
                miner_id: miner,
                proof_type: post_proof,
                replicas,
                seed: rand,
            })
            .with_context(|| format!("prover {}", self.prover.name()))?;
        if out.proofs.is_empty() {
            bail!("the prover returned no proof");
        }
        Ok(out.proofs.into_iter().map(|p| Bytes(p.0)).collect())
    }
}
