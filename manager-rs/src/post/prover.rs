//! Computing a WindowPoSt: the `window_post` task of the processor protocol, run by a prover.

use std::sync::Arc;

use anyhow::{anyhow, Result};
use vc_processors::builtin::processors::BuiltinProcessor;
use vc_processors::builtin::tasks::{WindowPoSt, WindowPoStOutput};
use vc_processors::Processor;

/// Computes WindowPoSt proofs. A prover answers the proof, or the sectors it could not prove
/// (`faults`), which the runner skips before trying again.
pub trait WindowProver: Send + Sync {
    /// The back-end's name, for logs.
    fn name(&self) -> String;

    /// Runs one task; blocks.
    fn prove(&self, task: WindowPoSt) -> Result<WindowPoStOutput>;
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

    fn prove(&self, task: WindowPoSt) -> Result<WindowPoStOutput> {
        Processor::<WindowPoSt>::process(&self.inner, task)
    }
}

/// Runs a prover off the async runtime.
pub async fn prove(prover: Arc<dyn WindowProver>, task: WindowPoSt) -> Result<WindowPoStOutput> {
    tokio::task::spawn_blocking(move || prover.prove(task))
        .await
        .map_err(|e| anyhow!("the prover task panicked or was cancelled: {e}"))?
}
