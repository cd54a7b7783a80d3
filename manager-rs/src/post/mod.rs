//! WindowPoSt: the scheduler that proves every deadline of the enabled miners, the sector
//! checks before a proof, and the provers that compute it (manager-spec §3).
//!
//! - [`scheduler`]: one runner per (miner, deadline), started `ChallengeConfidence` epochs
//!   after the challenge, submitting `SubmitConfidence` epochs after the open, aborted when the
//!   deadline closes; recoveries are declared for the deadline after next;
//! - [`remote`]: sectors in stores without local paths (S3): the challenged ranges of the
//!   replica and the small cache files fetched into a scratch directory for each proof;
//! - [`winning`]: WinningPoSt of the elected miners (`--miner`);
//! - [`margin`]: the part of each deadline's window left when its proof was submitted, and
//!   what was running when that fell under `MarginWarnRatio`;
//! - [`check`]: which sectors can be proven (files present and, with `StrictCheck`, a real
//!   vanilla proof of one challenge), bounded by `[Common.Proving]`;
//! - [`prover`]: the `window_post` task run by a [`prover::WindowProver`]: builtin in this
//!   process, [`ext`] children from `ext-prover.cfg`, or the `wdpost` threads of workers
//!   through the [`jobs`] queue; faults a prover reports are skipped and the proof retried.

pub mod check;
pub mod ext;
pub mod jobs;
pub mod margin;
pub mod prover;
pub mod remote;
pub mod scheduler;
pub mod winning;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use damocles_manager_api::types::{PoStSectorAccesses, SectorId, SectorIndexType};
use vc_processors::builtin::tasks::PoStReplicaInfo;
use vc_processors::layout;

use crate::chain::SectorOnChainInfo;
use crate::stores::{SectorIndex, StoreManager};

/// Finds a sector's files in the persist stores through the sector index.
#[derive(Debug, Clone)]
pub struct SectorLocator {
    /// Which store holds each sector's files.
    pub index: SectorIndex,
    /// The persist stores.
    pub stores: Arc<StoreManager>,
    /// Where sectors of stores without local paths are fetched for a proof.
    pub scratch_root: PathBuf,
}

/// Where a prover reads a sector from.
#[derive(Debug, Clone)]
pub enum Located {
    /// Files on this machine (file stores).
    Local(PoStReplicaInfo),
    /// Objects of a store without local paths, fetched for each proof.
    Remote(remote::RemoteReplica),
}

impl SectorLocator {
    /// An active sector as a prover reaches it: the local paths of its sealed file and cache
    /// directory when both stores have them, else the objects to fetch; with the names of
    /// the stores holding them.
    pub fn replica(
        &self,
        miner: u64,
        sector: &SectorOnChainInfo,
    ) -> Result<(Located, PoStSectorAccesses)> {
        let sid = SectorId {
            miner,
            number: sector.sector_number,
        };
        let access = self
            .index
            .find(SectorIndexType::Normal, sid)?
            .ok_or_else(|| anyhow!("sector {sid} is in no persist store"))?;
        let store = |instance: &str| {
            self.stores
                .get(instance)
                .ok_or_else(|| anyhow!("sector {sid}: store {instance:?} is not configured"))
        };
        let comm_r = damocles_manager_api::json::replica_commitment_of(&sector.sealed_cid)
            .map_err(|e| anyhow!("sector {sid}: {e}"))?;
        let accesses = PoStSectorAccesses {
            sealed_file: access.sealed_file.clone(),
            cache_dir: access.cache_dir.clone(),
        };
        let sealed_store = store(&access.sealed_file)?;
        let cache_store = store(&access.cache_dir)?;
        let sealed = layout::sealed_rel(sid, false);
        let cache = layout::cache_rel(sid, false);
        // A directory is not an object: the cache directory is where its p_aux is.
        let p_aux = format!("{cache}/{}", layout::P_AUX_FILE);
        let local = |s: &crate::stores::PersistStore, path: &str| -> Result<Option<PathBuf>> {
            s.store
                .local_path(path)
                .with_context(|| format!("sector {sid}: {}", s.store.full_path(path)))
        };
        match (local(&sealed_store, &sealed)?, local(&cache_store, &p_aux)?) {
            (Some(sealed_file), Some(p_aux)) => {
                let cache_dir = p_aux
                    .parent()
                    .ok_or_else(|| anyhow!("sector {sid}: {} has no parent", p_aux.display()))?
                    .to_path_buf();
                Ok((
                    Located::Local(PoStReplicaInfo {
                        sector_id: sector.sector_number,
                        comm_r,
                        cache_dir,
                        sealed_file,
                    }),
                    accesses,
                ))
            }
            _ => Ok((
                Located::Remote(remote::RemoteReplica {
                    sector_id: sector.sector_number,
                    comm_r,
                    seal_proof: crate::proofs::seal_proof(sector.seal_proof)
                        .with_context(|| format!("sector {sid}"))?,
                    sealed: (sealed_store.store.clone(), sealed),
                    cache: (cache_store.store.clone(), cache),
                }),
                accesses,
            )),
        }
    }
}
