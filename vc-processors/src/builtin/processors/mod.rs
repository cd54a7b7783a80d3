//! The builtin processors: every task run on `filecoin-proofs-api` in this process.
//!
//! [`BuiltinProcessor`] implements [`Processor`] for every task of [`super::tasks`], so it runs
//! in-process in the worker or, through [`crate::consumer`], as `damocles-worker processor
//! <stage>`. Proof-library panics become errors ([`super::proofs::guard`]).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::BufWriter;

use anyhow::{Context, Result};
use filecoin_proofs_api::seal::{
    SealCommitPhase2Output, SealPreCommitPhase1Output, SealPreCommitPhase2Output,
};
use filecoin_proofs_api::{
    PartitionProofBytes, PrivateReplicaInfo, SectorId, StorageProofsError, UnpaddedBytesAmount,
};

use super::proofs::{create_tree_d, guard, to_prover_id};
use super::tasks::*;
use crate::b64serde::BytesVec;
use crate::protocol::Processor;

pub mod piece;
pub mod transfer;

/// Runs every builtin task in this process.
#[derive(Debug, Clone)]
pub struct BuiltinProcessor {
    /// Whether transfer may make symlinks (`opt.allow_link`); true unless `--disable-link`.
    pub allow_links: bool,
    /// Bearer token for piece downloads (`PIECE_FETCHER_TOKEN`).
    pub piece_token: Option<String>,
}

impl Default for BuiltinProcessor {
    /// Links allowed, no piece token.
    fn default() -> Self {
        BuiltinProcessor {
            allow_links: true,
            piece_token: None,
        }
    }
}

impl BuiltinProcessor {
    /// Links allowed, and the piece token from `PIECE_FETCHER_TOKEN` (how the worker passes it
    /// to add_pieces, in-process or in a child).
    pub fn from_env() -> Self {
        BuiltinProcessor {
            allow_links: true,
            piece_token: std::env::var(piece::ENV_PIECE_FETCHER_TOKEN)
                .ok()
                .filter(|t| !t.is_empty()),
        }
    }
}

macro_rules! builtin {
    ($task:ty, $name:literal, |$self_:ident, $t:ident| $body:expr) => {
        impl Processor<$task> for BuiltinProcessor {
            fn name(&self) -> String {
                concat!("builtin ", $name).to_string()
            }

            #[allow(unused_variables)]
            fn process(&self, $t: $task) -> Result<<$task as crate::protocol::Task>::Output> {
                let $self_ = self;
                $body
            }
        }
    };
}

builtin!(AddPieces, "add_pieces", |this, task| piece::add_pieces(
    &task,
    this.piece_token.as_deref()
));

builtin!(TreeD, "tree_d", |this, task| {
    create_tree_d(task.registered_proof, &task.staged_file, &task.cache_dir)?;
    Ok(true)
});

builtin!(PC1, "pc1", |this, task| pc1(task));
builtin!(PC2, "pc2", |this, task| pc2(task));
builtin!(C2, "c2", |this, task| c2(task));
builtin!(SnapEncode, "snap_encode", |this, task| snap_encode(task));
builtin!(SnapProve, "snap_prove", |this, task| snap_prove(task));
builtin!(Transfer, "transfer", |this, task| transfer::transfer(
    &task,
    this.allow_links
));
builtin!(WindowPoSt, "window_post", |this, task| window_post(task));
builtin!(WinningPoSt, "winning_post", |this, task| winning_post(task));
builtin!(Unseal, "unseal", |this, task| unseal(task));

fn pc1(task: PC1) -> Result<SealPreCommitPhase1Output> {
    let sector = task.sector_id;
    guard("pc1", || {
        filecoin_proofs_api::seal::seal_pre_commit_phase1(
            task.registered_proof,
            &task.cache_path,
            &task.in_path,
            &task.out_path,
            task.prover_id,
            task.sector_id,
            task.ticket,
            &task.piece_infos,
        )
    })
    .with_context(|| format!("pc1 of sector {sector:?}"))
}

fn pc2(task: PC2) -> Result<SealPreCommitPhase2Output> {
    guard("pc2", || {
        filecoin_proofs_api::seal::seal_pre_commit_phase2(
            task.pc1out,
            &task.cache_dir,
            &task.sealed_file,
        )
    })
    .with_context(|| format!("pc2 of {}", task.sealed_file.display()))
}

fn c2(task: C2) -> Result<SealCommitPhase2Output> {
    let sector = task.sector_id;
    guard("c2", || {
        filecoin_proofs_api::seal::seal_commit_phase2(task.c1out, task.prover_id, task.sector_id)
    })
    .with_context(|| format!("c2 of sector {sector:?}"))
}

fn snap_encode(task: SnapEncode) -> Result<SnapEncodeOutput> {
    let encoded = guard("snap_encode", || {
        filecoin_proofs_api::update::empty_sector_update_encode_into(
            task.registered_proof,
            &task.new_replica_path,
            &task.new_cache_path,
            &task.sector_path,
            &task.sector_cache_path,
            &task.staged_data_path,
            &task.piece_infos,
        )
    })
    .with_context(|| format!("snap_encode into {}", task.new_replica_path.display()))?;
    Ok(SnapEncodeOutput {
        comm_r_new: encoded.comm_r_new,
        comm_r_last_new: encoded.comm_r_last_new,
        comm_d_new: encoded.comm_d_new,
    })
}

fn snap_prove(task: SnapProve) -> Result<SnapProveOutput> {
    let vanilla = task
        .vannilla_proofs
        .into_iter()
        .map(PartitionProofBytes)
        .collect();
    let proof = guard("snap_prove", || {
        filecoin_proofs_api::update::generate_empty_sector_update_proof_with_vanilla(
            task.registered_proof,
            vanilla,
            task.comm_r_old,
            task.comm_r_new,
            task.comm_d_new,
        )
    })
    .context("snap_prove")?;
    Ok(proof.0)
}

/// Sectors whose sealed file or cache directory does not exist: they cannot be proven. Any
/// other error reaching them (EIO, a stale mount) is returned: it may pass, and declaring a
/// fault on chain for it would be wrong.
fn missing_files(replicas: &[PoStReplicaInfo]) -> Result<Vec<u64>> {
    let mut missing = Vec::new();
    for r in replicas {
        for (path, want_dir) in [(&r.sealed_file, false), (&r.cache_dir, true)] {
            match std::fs::metadata(path) {
                Ok(m) if m.is_dir() == want_dir => {}
                Ok(_) => {
                    missing.push(r.sector_id);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    missing.push(r.sector_id);
                    break;
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("sector {}: stat {}", r.sector_id, path.display())
                    })
                }
            }
        }
    }
    Ok(missing)
}

/// Whether an error is an I/O failure that may pass (as opposed to missing or bad data).
fn is_transient_io(err: &anyhow::Error) -> bool {
    use std::io::ErrorKind::*;
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| !matches!(e.kind(), NotFound | UnexpectedEof | InvalidData))
    })
}

fn replica_map(
    proof_type: RegisteredPoStProof,
    replicas: &[PoStReplicaInfo],
) -> BTreeMap<SectorId, PrivateReplicaInfo> {
    replicas
        .iter()
        .map(|r| {
            (
                SectorId::from(r.sector_id),
                PrivateReplicaInfo::new(
                    proof_type,
                    r.comm_r,
                    r.cache_dir.clone(),
                    r.sealed_file.clone(),
                ),
            )
        })
        .collect()
}

/// The sectors a proof-library error blames, if it is a faulty-sectors error.
fn faulty_sectors(err: &anyhow::Error) -> Option<Vec<u64>> {
    err.chain()
        .find_map(|cause| match cause.downcast_ref::<StorageProofsError>() {
            Some(StorageProofsError::FaultySectors(sectors)) => {
                Some(sectors.iter().map(|s| u64::from(*s)).collect())
            }
            _ => None,
        })
}

fn window_post(task: WindowPoSt) -> Result<WindowPoStOutput> {
    anyhow::ensure!(!task.replicas.is_empty(), "window_post: no replicas");
    let missing = missing_files(&task.replicas)?;
    if !missing.is_empty() {
        return Ok(WindowPoStOutput {
            proofs: Vec::new(),
            faults: missing,
        });
    }
    let replicas = replica_map(task.proof_type, &task.replicas);
    let prover_id = to_prover_id(task.miner_id);
    let err = match guard("window_post", || {
        filecoin_proofs_api::post::generate_window_post(&task.seed, &replicas, prover_id)
    }) {
        Ok(proofs) => {
            return Ok(WindowPoStOutput {
                proofs: proofs.into_iter().map(|(_, p)| BytesVec(p)).collect(),
                faults: Vec::new(),
            })
        }
        Err(e) => e,
    };
    if let Some(faults) = faulty_sectors(&err) {
        return Ok(WindowPoStOutput {
            proofs: Vec::new(),
            faults,
        });
    }
    // Some damage (a replica byte that is not a field element, an unreadable tree) makes the
    // library fail without naming the sector: find it by proving each sector on its own.
    let faults = check_each_sector(&task, &replicas, prover_id)
        .with_context(|| format!("window_post for miner {}: {err:#}", task.miner_id))?;
    if faults.is_empty() {
        return Err(err).context(format!("window_post for miner {}", task.miner_id));
    }
    tracing::warn!(
        miner = task.miner_id,
        ?faults,
        "window_post failed ({err:#}); the sectors that fail on their own are reported as faults"
    );
    Ok(WindowPoStOutput {
        proofs: Vec::new(),
        faults,
    })
}

/// The sectors whose own vanilla proof (for this seed's challenges) cannot be made.
fn check_each_sector(
    task: &WindowPoSt,
    replicas: &BTreeMap<SectorId, PrivateReplicaInfo>,
    prover_id: filecoin_proofs_api::ProverId,
) -> Result<Vec<u64>> {
    let ids: Vec<SectorId> = replicas.keys().copied().collect();
    let challenges = guard("window_post challenges", || {
        filecoin_proofs_api::post::generate_fallback_sector_challenges(
            task.proof_type,
            &task.seed,
            &ids,
            prover_id,
        )
    })?;
    let mut faults = Vec::new();
    for (id, replica) in replicas {
        let Some(sector_challenges) = challenges.get(id) else {
            continue;
        };
        let proved = guard("window_post vanilla proof", || {
            filecoin_proofs_api::post::generate_single_vanilla_proof(
                task.proof_type,
                *id,
                replica,
                sector_challenges,
            )
        });
        if let Err(e) = proved {
            if is_transient_io(&e) {
                return Err(e).context(format!("sector {}", u64::from(*id)));
            }
            tracing::warn!(sector = u64::from(*id), "sector cannot be proven: {e:#}");
            faults.push(u64::from(*id));
        }
    }
    Ok(faults)
}

fn winning_post(task: WinningPoSt) -> Result<WinningPoStOutput> {
    anyhow::ensure!(!task.replicas.is_empty(), "winning_post: no replicas");
    let missing = missing_files(&task.replicas)?;
    anyhow::ensure!(
        missing.is_empty(),
        "winning_post for miner {}: files of sectors {missing:?} are missing",
        task.miner_id
    );
    let replicas = replica_map(task.proof_type, &task.replicas);
    let prover_id = to_prover_id(task.miner_id);
    let proofs = guard("winning_post", || {
        filecoin_proofs_api::post::generate_winning_post(&task.seed, &replicas, prover_id)
    })
    .with_context(|| format!("winning_post for miner {}", task.miner_id))?;
    Ok(WinningPoStOutput {
        proofs: proofs.into_iter().map(|(_, p)| BytesVec(p)).collect(),
    })
}

fn unseal(task: Unseal) -> Result<UnpaddedBytesAmount> {
    if let Some(parent) = task.unsealed_output.parent() {
        super::fsutil::create_dir_all_durable(parent)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&task.unsealed_output)
        .with_context(|| format!("open {}", task.unsealed_output.display()))?;
    let mut out = BufWriter::new(file);
    let written = guard("unseal", || {
        filecoin_proofs_api::seal::get_unsealed_range_mapped(
            task.registered_proof,
            &task.cache_dir,
            &task.sealed_file,
            &mut out,
            task.prover_id,
            task.sector_id,
            task.comm_d,
            task.ticket,
            task.offset,
            task.num_bytes,
        )
    })
    .with_context(|| format!("unseal sector {:?}", task.sector_id))?;
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("write {}", task.unsealed_output.display()))?;
    file.sync_all()
        .with_context(|| format!("sync {}", task.unsealed_output.display()))?;
    Ok(written)
}
