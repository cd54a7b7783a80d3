//! Helpers around the proof library that both the builtin processors and the worker use:
//! prover ids, sector file names, tree-d, zero commitments, and the in-process steps (C1,
//! synthetic proofs, verification) that have no processor of their own.
//!
//! Every call into the proof library goes through [`guard`], which turns a panic into an error
//! without touching the process-wide panic hook (damocles swaps the hook on every call, which
//! races between threads).

use std::fs::{self, File};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, ensure, Context, Result};
use filecoin_proofs::{DefaultPieceHasher, StoreConfig};
use filecoin_proofs_api::seal::{SealCommitPhase1Output, SealPreCommitPhase2Output};
use filecoin_proofs_api::{
    ApiFeature, Commitment, PieceInfo, ProverId, RegisteredPoStProof, RegisteredSealProof,
    RegisteredUpdateProof, SectorId, Ticket,
};
use sha2::{Digest, Sha256};
use storage_proofs_core::cache_key::CacheKey;
use storage_proofs_core::merkle::{create_base_merkle_tree, BinaryMerkleTree};

pub use filecoin_proofs_api as api;

use crate::layout;

/// Runs `f`, turning a panic into an error that names `what`.
pub fn guard<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(res) => res,
        Err(panic) => Err(anyhow!(
            "{what}: panic in the proof library: {}",
            crate::protocol::panic_message(&*panic)
        )),
    }
}

/// The prover id of a miner: the payload of its ID address (the unsigned LEB128 of the actor
/// id), left-aligned and zero-padded to 32 bytes.
pub fn to_prover_id(miner_id: u64) -> ProverId {
    let mut prover_id = [0u8; 32];
    let mut value = miner_id;
    let mut i = 0;
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            prover_id[i] = byte;
            break;
        }
        prover_id[i] = byte | 0x80;
        i += 1;
    }
    prover_id
}

/// `<dir>/sc-02-data-tree-d.dat`.
pub fn tree_d_path_in_dir(dir: &Path) -> PathBuf {
    dir.join(layout::TREE_D_FILE)
}

/// The files of a sector's cache directory that must be kept after sealing (and that PoSt
/// reads), for its proof type: [`layout::post_cache_files`].
pub fn cached_filenames_for_sector(proof: RegisteredSealProof) -> Vec<String> {
    layout::post_cache_files(u64::from(proof.sector_size()))
}

fn size_index(sector_size: u64) -> Result<usize> {
    layout::sector_size_index(sector_size)
        .ok_or_else(|| anyhow!("unsupported sector size {sector_size}"))
}

/// The proof type of the chain's integer code (0–4 V1, 5–9 V1_1, 10–14 synthetic PoRep, 15–19
/// non-interactive PoRep; sizes 2 KiB, 8 MiB, 512 MiB, 32 GiB, 64 GiB in each group).
pub fn seal_proof_from_chain(code: i64) -> Result<RegisteredSealProof> {
    use RegisteredSealProof::*;
    const ALL: [RegisteredSealProof; 20] = [
        StackedDrg2KiBV1,
        StackedDrg8MiBV1,
        StackedDrg512MiBV1,
        StackedDrg32GiBV1,
        StackedDrg64GiBV1,
        StackedDrg2KiBV1_1,
        StackedDrg8MiBV1_1,
        StackedDrg512MiBV1_1,
        StackedDrg32GiBV1_1,
        StackedDrg64GiBV1_1,
        StackedDrg2KiBV1_1_Feat_SyntheticPoRep,
        StackedDrg8MiBV1_1_Feat_SyntheticPoRep,
        StackedDrg512MiBV1_1_Feat_SyntheticPoRep,
        StackedDrg32GiBV1_1_Feat_SyntheticPoRep,
        StackedDrg64GiBV1_1_Feat_SyntheticPoRep,
        StackedDrg2KiBV1_2_Feat_NonInteractivePoRep,
        StackedDrg8MiBV1_2_Feat_NonInteractivePoRep,
        StackedDrg512MiBV1_2_Feat_NonInteractivePoRep,
        StackedDrg32GiBV1_2_Feat_NonInteractivePoRep,
        StackedDrg64GiBV1_2_Feat_NonInteractivePoRep,
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| ALL.get(i).copied())
        .ok_or_else(|| anyhow!("unknown seal proof type {code}"))
}

/// The current (`V1_1`) seal proof for a sector size.
pub fn seal_proof_for_size(sector_size: u64) -> Result<RegisteredSealProof> {
    use RegisteredSealProof::*;
    Ok([
        StackedDrg2KiBV1_1,
        StackedDrg8MiBV1_1,
        StackedDrg512MiBV1_1,
        StackedDrg32GiBV1_1,
        StackedDrg64GiBV1_1,
    ][size_index(sector_size)?])
}

/// The current WindowPoSt proof (`V1_2`, the chain's `V1_1`) for a sector size.
pub fn window_post_proof_for_size(sector_size: u64) -> Result<RegisteredPoStProof> {
    use RegisteredPoStProof::*;
    Ok([
        StackedDrgWindow2KiBV1_2,
        StackedDrgWindow8MiBV1_2,
        StackedDrgWindow512MiBV1_2,
        StackedDrgWindow32GiBV1_2,
        StackedDrgWindow64GiBV1_2,
    ][size_index(sector_size)?])
}

/// The WinningPoSt proof for a sector size.
pub fn winning_post_proof_for_size(sector_size: u64) -> Result<RegisteredPoStProof> {
    use RegisteredPoStProof::*;
    Ok([
        StackedDrgWinning2KiBV1,
        StackedDrgWinning8MiBV1,
        StackedDrgWinning512MiBV1,
        StackedDrgWinning32GiBV1,
        StackedDrgWinning64GiBV1,
    ][size_index(sector_size)?])
}

/// The SnapDeals update proof for a sector size.
pub fn update_proof_for_size(sector_size: u64) -> Result<RegisteredUpdateProof> {
    use RegisteredUpdateProof::*;
    Ok([
        StackedDrg2KiBV1,
        StackedDrg8MiBV1,
        StackedDrg512MiBV1,
        StackedDrg32GiBV1,
        StackedDrg64GiBV1,
    ][size_index(sector_size)?])
}

/// The SnapDeals update proof that goes with a seal proof.
pub fn update_proof_for(seal: RegisteredSealProof) -> Result<RegisteredUpdateProof> {
    update_proof_for_size(u64::from(seal.sector_size()))
}

/// Hash of two nodes as used by the data tree: SHA-256 truncated to 254 bits.
fn hash_pair(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(left);
    h.update(right);
    let mut out: [u8; 32] = h.finalize().into();
    out[31] &= 0b0011_1111;
    out
}

/// The piece commitment of `padded_size` zero bytes (a power of two, at least 128).
///
/// fr32 padding of zeros is zeros, so this is the root of a binary tree of zero leaves,
/// computed level by level in microseconds for any sector size.
pub fn zero_piece_commitment(padded_size: u64) -> Result<Commitment> {
    ensure!(
        padded_size >= 128 && padded_size.is_power_of_two(),
        "a zero piece must be a power of two of at least 128 bytes, got {padded_size}"
    );
    let levels = (padded_size / 32).trailing_zeros();
    let mut node = [0u8; 32];
    for _ in 0..levels {
        node = hash_pair(&node, &node);
    }
    Ok(node)
}

/// Builds the data tree of a full staged file into `cache_dir/sc-02-data-tree-d.dat` and
/// returns its root (CommD). An existing file or symlink at that path is replaced, never
/// written through.
pub fn create_tree_d(
    proof: RegisteredSealProof,
    staged_file: &Path,
    cache_dir: &Path,
) -> Result<Commitment> {
    let sector_size = u64::from(proof.sector_size());
    let file = File::open(staged_file)
        .with_context(|| format!("open staged file {}", staged_file.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("stat staged file {}", staged_file.display()))?
        .len();
    ensure!(
        len == sector_size,
        "staged file {} is {len} bytes, a full sector of {sector_size} bytes is required",
        staged_file.display()
    );
    fs::create_dir_all(cache_dir)
        .with_context(|| format!("create cache dir {}", cache_dir.display()))?;
    let tree_path = tree_d_path_in_dir(cache_dir);
    match fs::remove_file(&tree_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("remove old {}", tree_path.display())),
    }
    // SAFETY: the staged file is only read; the worker does not change it while tree-d runs.
    let data = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("mmap staged file {}", staged_file.display()))?;
    let leafs = (sector_size / 32) as usize;
    // rows_to_discard 0: the same layout PC1 writes for its own tree-d.
    let config = StoreConfig::new(cache_dir, CacheKey::CommDTree.to_string(), 0);
    let tree = guard("tree_d", || {
        create_base_merkle_tree::<BinaryMerkleTree<DefaultPieceHasher>>(Some(config), leafs, &data)
    })
    .with_context(|| format!("build tree-d of {}", staged_file.display()))?;
    let root: blstrs::Scalar = tree.root().into();
    Ok(filecoin_proofs::commitment_from_fr(root))
}

/// Commit phase 1 (the vanilla PoRep proofs), in-process.
#[allow(clippy::too_many_arguments)]
pub fn seal_commit_phase1(
    cache_path: &Path,
    replica_path: &Path,
    prover_id: ProverId,
    sector_id: SectorId,
    ticket: Ticket,
    seed: Ticket,
    pre_commit: SealPreCommitPhase2Output,
    piece_infos: &[PieceInfo],
) -> Result<SealCommitPhase1Output> {
    guard("c1", || {
        api::seal::seal_commit_phase1(
            cache_path,
            replica_path,
            prover_id,
            sector_id,
            ticket,
            seed,
            pre_commit,
            piece_infos,
        )
    })
    .with_context(|| format!("c1 of sector {sector_id:?}"))
}

/// Whether sealing with `proof` needs the synthetic-proof step after PC2.
pub fn needs_synthetic_proofs(proof: RegisteredSealProof) -> bool {
    proof.feature_enabled(ApiFeature::SyntheticPoRep)
}

/// Generates and stores the synthetic PoRep proofs after PC2, in-process.
pub fn generate_synth_proofs(
    cache_path: &Path,
    replica_path: &Path,
    prover_id: ProverId,
    sector_id: SectorId,
    ticket: Ticket,
    pre_commit: SealPreCommitPhase2Output,
    piece_infos: &[PieceInfo],
) -> Result<()> {
    guard("synth_proof", || {
        api::seal::generate_synth_proofs(
            cache_path,
            replica_path,
            prover_id,
            sector_id,
            ticket,
            pre_commit,
            piece_infos,
        )
    })
    .with_context(|| format!("synthetic proofs of sector {sector_id:?}"))
}

/// Removes the SDR layer files of a cache directory (after synthetic proofs, C1 no longer
/// needs them). Returns how many were removed.
pub fn clear_layer_data(cache_dir: &Path) -> Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(cache_dir).with_context(|| format!("read {}", cache_dir.display()))? {
        let entry = entry.with_context(|| format!("read {}", cache_dir.display()))?;
        let name = entry.file_name();
        if layout::is_sdr_layer(&name.to_string_lossy()) {
            fs::remove_file(entry.path())
                .with_context(|| format!("remove {}", entry.path().display()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Verifies a PoRep proof.
#[allow(clippy::too_many_arguments)]
pub fn verify_seal(
    proof_type: RegisteredSealProof,
    comm_r: Commitment,
    comm_d: Commitment,
    prover_id: ProverId,
    sector_id: SectorId,
    ticket: Ticket,
    seed: Ticket,
    proof: &[u8],
) -> Result<bool> {
    guard("verify_seal", || {
        api::seal::verify_seal(
            proof_type, comm_r, comm_d, prover_id, sector_id, ticket, seed, proof,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prover_id_is_the_leb128_of_the_actor_id() {
        assert_eq!(&to_prover_id(1000)[..3], &[0xe8, 0x07, 0x00]);
        assert_eq!(&to_prover_id(0)[..2], &[0, 0]);
        assert_eq!(&to_prover_id(127)[..2], &[127, 0]);
        assert_eq!(&to_prover_id(128)[..3], &[0x80, 0x01, 0]);
        assert_eq!(
            &to_prover_id(u64::MAX)[..11],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0]
        );
    }

    #[test]
    fn zero_commitments_match_the_proof_library() {
        for proof in [
            RegisteredSealProof::StackedDrg2KiBV1_1,
            RegisteredSealProof::StackedDrg8MiBV1_1,
        ] {
            let size = u64::from(proof.sector_size());
            let ours = zero_piece_commitment(size).expect("power of two");
            let theirs = api::seal::compute_comm_d(proof, &[]).expect("comm_d");
            assert_eq!(ours, theirs, "{size}");
        }
        // The 2 KiB CC CommD quoted by the reference.
        let comm = zero_piece_commitment(2048).expect("2KiB");
        assert_eq!(&comm[..4], &[252, 126, 146, 130]);
        assert!(zero_piece_commitment(100).is_err());
    }

    #[test]
    fn cached_file_names_follow_the_proof_types_sector_size() {
        for (proof, size) in [
            (RegisteredSealProof::StackedDrg2KiBV1_1, 2 << 10),
            (RegisteredSealProof::StackedDrg32GiBV1_1, 32 << 30),
            (RegisteredSealProof::StackedDrg64GiBV1_1, 64 << 30),
        ] {
            assert_eq!(
                cached_filenames_for_sector(proof),
                layout::post_cache_files(size)
            );
        }
    }

    #[test]
    fn proof_tables_agree_with_the_library() {
        for size in layout::SECTOR_SIZES {
            assert_eq!(
                u64::from(seal_proof_for_size(size).expect("seal").sector_size()),
                size
            );
            let window = window_post_proof_for_size(size).expect("window");
            assert_eq!(u64::from(window.sector_size()), size);
            assert_eq!(window.typ(), api::PoStType::Window);
            let winning = winning_post_proof_for_size(size).expect("winning");
            assert_eq!(u64::from(winning.sector_size()), size);
            assert_eq!(winning.typ(), api::PoStType::Winning);
            assert_eq!(
                u64::from(update_proof_for_size(size).expect("update").sector_size()),
                size
            );
        }
        assert!(seal_proof_for_size(4096).is_err());
    }

    #[test]
    fn guard_turns_panics_into_errors() {
        let err = guard::<()>("pc1", || panic!("boom")).expect_err("panicked");
        assert!(err
            .to_string()
            .contains("pc1: panic in the proof library: boom"));
    }
}
