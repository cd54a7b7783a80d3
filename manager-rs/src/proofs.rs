//! Conversions between the chain's proof-type integers and the proof library's types.

use anyhow::{anyhow, bail, Result};
use damocles_manager_api::types::SealProofType;
use vc_processors::builtin::proofs::api::{RegisteredPoStProof, RegisteredSealProof};

/// The proof library's seal proof for a chain integer.
pub fn seal_proof(t: SealProofType) -> Result<RegisteredSealProof> {
    vc_processors::builtin::proofs::seal_proof_from_chain(t.0)
}

/// The chain integer of the `V1_1` WindowPoSt proof for a sector size (10 = 2 KiB … 14 = 64 GiB).
pub fn window_post_chain_type(sector_size: u64) -> Result<i64> {
    match vc_processors::layout::sector_size_index(sector_size) {
        Some(i) => Ok(10 + i as i64),
        None => bail!("unsupported sector size {sector_size}"),
    }
}

/// The proof library's WindowPoSt proof for a chain integer (5–9 V1, 10–14 V1_1; the
/// library calls the chain's `V1_1` `V1_2`).
pub fn window_post_proof(chain_type: i64) -> Result<RegisteredPoStProof> {
    use RegisteredPoStProof::*;
    const V1_2: [RegisteredPoStProof; 5] = [
        StackedDrgWindow2KiBV1_2,
        StackedDrgWindow8MiBV1_2,
        StackedDrgWindow512MiBV1_2,
        StackedDrgWindow32GiBV1_2,
        StackedDrgWindow64GiBV1_2,
    ];
    match chain_type {
        5..=14 => Ok(V1_2[((chain_type - 5) % 5) as usize]),
        other => bail!("unknown WindowPoSt proof type {other}"),
    }
}

/// Sectors per WindowPoSt partition for a sector size.
pub fn window_post_partition_sectors(sector_size: u64) -> u64 {
    match sector_size {
        s if s >= 64 << 30 => 2300,
        s if s >= 32 << 30 => 2349,
        _ => 2,
    }
}

/// The sectors a WinningPoSt challenges among a miner's eligible sectors (`eligible`, sorted
/// by number): the chain and the prover draw them alike.
pub fn winning_post_challenged(
    post_proof: RegisteredPoStProof,
    rand: &[u8; 32],
    miner: u64,
    eligible: &[u64],
) -> Result<Vec<u64>> {
    if eligible.is_empty() {
        bail!("no eligible sector");
    }
    let indexes =
        vc_processors::builtin::proofs::guard("generate_winning_post_sector_challenge", || {
            vc_processors::builtin::proofs::api::post::generate_winning_post_sector_challenge(
                post_proof,
                rand,
                eligible.len() as u64,
                vc_processors::builtin::proofs::to_prover_id(miner),
            )
        })?;
    let mut out: Vec<u64> = indexes
        .into_iter()
        .map(|i| {
            eligible
                .get(i as usize)
                .copied()
                .ok_or_else(|| anyhow!("challenge index {i} beyond {} sectors", eligible.len()))
        })
        .collect::<Result<_>>()?;
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The public side of replicas for verifying a PoSt of `post_proof` over them.
pub fn public_replicas(
    post_proof: RegisteredPoStProof,
    replicas: &[vc_processors::builtin::tasks::PoStReplicaInfo],
) -> std::collections::BTreeMap<
    vc_processors::builtin::proofs::api::SectorId,
    vc_processors::builtin::proofs::api::PublicReplicaInfo,
> {
    use vc_processors::builtin::proofs::api;
    replicas
        .iter()
        .map(|r| {
            (
                api::SectorId::from(r.sector_id),
                api::PublicReplicaInfo::new(post_proof, r.comm_r),
            )
        })
        .collect()
}
