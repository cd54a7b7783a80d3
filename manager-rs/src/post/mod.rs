//! WindowPoSt: the scheduler that proves every deadline of the enabled miners, the sector
//! checks before a proof, and the provers that compute it (manager-spec §3).
//!
//! - [`scheduler`]: one runner per (miner, deadline), started `ChallengeConfidence` epochs
//!   after the challenge, submitting `SubmitConfidence` epochs after the open, aborted when the
//!   deadline closes; recoveries are declared for the deadline after next;
//! - [`check`]: which sectors can be proven (files present and, with `StrictCheck`, a real
//!   vanilla proof of one challenge), bounded by `[Common.Proving]`;
//! - [`prover`]: the `window_post` task run by a [`prover::WindowProver`]: builtin in this
//!   process, or [`ext`] children from `ext-prover.cfg`; faults a prover reports are skipped
//!   and the proof retried.

pub mod check;
pub mod ext;
pub mod prover;
pub mod scheduler;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use damocles_manager_api::types::{SectorId, SectorIndexType};
use vc_processors::builtin::tasks::PoStReplicaInfo;

use crate::chain::SectorOnChainInfo;
use crate::sealer::Sealer;
use crate::stores::{cache_path, sealed_path};

/// Finds a sector's files in the persist stores through the sector index.
#[derive(Debug, Clone)]
pub struct SectorLocator {
    /// The manager's sector index and persist stores.
    pub sealer: Arc<Sealer>,
}

impl SectorLocator {
    /// The replica of an active sector as a prover sees it: its commitment and the local paths
    /// of its sealed file and cache directory (file stores only, for now).
    pub fn replica(&self, miner: u64, sector: &SectorOnChainInfo) -> Result<PoStReplicaInfo> {
        let sid = SectorId {
            miner,
            number: sector.sector_number,
        };
        let access = self
            .sealer
            .index
            .find(SectorIndexType::Normal, sid)?
            .ok_or_else(|| anyhow!("sector {sid} is in no persist store"))?;
        let local = |instance: &str, path: String| -> Result<PathBuf> {
            let store = self
                .sealer
                .stores
                .get(instance)
                .ok_or_else(|| anyhow!("sector {sid}: store {instance:?} is not configured"))?;
            store
                .store
                .local_path(&path)
                .with_context(|| format!("sector {sid}: {}", store.store.full_path(&path)))?
                .ok_or_else(|| {
                    anyhow!(
                        "sector {sid}: store {instance:?} has no local paths; proving from it is not supported yet"
                    )
                })
        };
        let comm_r = damocles_manager_api::json::replica_commitment_of(&sector.sealed_cid)
            .map_err(|e| anyhow!("sector {sid}: {e}"))?;
        // A directory is not an object: the cache directory is where its p_aux is.
        let p_aux = local(
            &access.cache_dir,
            format!("{}/p_aux", cache_path(sid, false)),
        )?;
        let cache_dir = p_aux
            .parent()
            .ok_or_else(|| anyhow!("sector {sid}: {} has no parent", p_aux.display()))?
            .to_path_buf();
        Ok(PoStReplicaInfo {
            sector_id: sector.sector_number,
            comm_r,
            cache_dir,
            sealed_file: local(&access.sealed_file, sealed_path(sid, false))?,
        })
    }
}
