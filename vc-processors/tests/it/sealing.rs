//! Real 2 KiB sealing and proving through any set of processors.
//!
//! Shared by the in-process tests of vc-processors and the child-process tests of
//! damocles-worker (which include this file by path), so both run the very same pipeline.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vc_processors::builtin::proofs::{self, api, to_prover_id};
use vc_processors::builtin::tasks::*;
use vc_processors::builtin::BuiltinProcessor;
use vc_processors::Processor;

/// The seal proof every test uses.
pub const SEAL_PROOF: RegisteredSealProof = RegisteredSealProof::StackedDrg2KiBV1_1;
/// Its WindowPoSt proof.
pub const WINDOW_PROOF: RegisteredPoStProof = RegisteredPoStProof::StackedDrgWindow2KiBV1_2;
/// Its WinningPoSt proof.
pub const WINNING_PROOF: RegisteredPoStProof = RegisteredPoStProof::StackedDrgWinning2KiBV1;
/// The miner every test seals for.
pub const MINER: u64 = 1000;

/// One processor per stage.
pub struct Stages {
    pub add_pieces: Arc<dyn Processor<AddPieces>>,
    pub tree_d: Arc<dyn Processor<TreeD>>,
    pub pc1: Arc<dyn Processor<PC1>>,
    pub pc2: Arc<dyn Processor<PC2>>,
    pub c2: Arc<dyn Processor<C2>>,
    pub snap_encode: Arc<dyn Processor<SnapEncode>>,
    pub snap_prove: Arc<dyn Processor<SnapProve>>,
    pub transfer: Arc<dyn Processor<Transfer>>,
    pub window_post: Arc<dyn Processor<WindowPoSt>>,
    pub winning_post: Arc<dyn Processor<WinningPoSt>>,
    pub unseal: Arc<dyn Processor<Unseal>>,
}

impl Stages {
    /// Every stage in this process.
    pub fn builtin() -> Self {
        let b = Arc::new(BuiltinProcessor::default());
        Stages {
            add_pieces: b.clone(),
            tree_d: b.clone(),
            pc1: b.clone(),
            pc2: b.clone(),
            c2: b.clone(),
            snap_encode: b.clone(),
            snap_prove: b.clone(),
            transfer: b.clone(),
            window_post: b.clone(),
            winning_post: b.clone(),
            unseal: b,
        }
    }
}

/// A sector sealed through PC2.
pub struct Sector {
    pub proof: RegisteredSealProof,
    pub number: u64,
    pub dir: PathBuf,
    pub staged: PathBuf,
    pub cache: PathBuf,
    pub sealed: PathBuf,
    pub ticket: Ticket,
    pub pieces: Vec<PieceInfo>,
    pub pc2: api::seal::SealPreCommitPhase2Output,
    /// The deal data, unpadded, as a client would read it back (payload then zeros).
    pub deal_bytes: Option<Vec<u8>>,
}

pub fn prover_id() -> ProverId {
    to_prover_id(MINER)
}

fn random32(seed: u64) -> [u8; 32] {
    // Deterministic but distinct per use; the high bits stay clear (valid field elements).
    let mut out = [0u8; 32];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    for b in out.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    out[31] &= 0x3f;
    out
}

/// Seals a sector through PC2. With `deal`, the sector holds a 1016-byte deal piece (600 bytes
/// of payload from a local file) plus a pledge filler; otherwise it is a CC sector.
pub fn seal_through_pc2(stages: &Stages, root: &Path, number: u64, deal: bool) -> Sector {
    seal_through_pc2_with(stages, root, number, deal, SEAL_PROOF)
}

/// [`seal_through_pc2`] with another seal proof type (e.g. synthetic PoRep).
pub fn seal_through_pc2_with(
    stages: &Stages,
    root: &Path,
    number: u64,
    deal: bool,
    proof: RegisteredSealProof,
) -> Sector {
    let dir = root.join(format!("s-t0{MINER}-{number}"));
    let staged = dir.join("unsealed");
    let cache = dir.join("cache");
    let prepared = dir.join("prepared");
    let sealed = dir.join("sealed");
    fs::create_dir_all(&cache).expect("cache dir");
    fs::create_dir_all(&prepared).expect("prepared dir");

    let (pieces, deal_bytes) = if deal {
        let payload: Vec<u8> = (0..600u32).map(|i| (i * 7 + number as u32) as u8).collect();
        let piece_path = dir.join("deal.car");
        fs::write(&piece_path, &payload).expect("piece file");
        let mut expect = payload.clone();
        expect.resize(1016, 0);
        (
            vec![
                Piece {
                    piece_file: PieceFile::Local(piece_path),
                    payload_size: 600,
                    piece_size: UnpaddedBytesAmount(1016),
                },
                Piece {
                    piece_file: PieceFile::Pledge,
                    payload_size: 1016,
                    piece_size: UnpaddedBytesAmount(1016),
                },
            ],
            Some(expect),
        )
    } else {
        (Vec::new(), None)
    };

    let infos = stages
        .add_pieces
        .process(AddPieces {
            seal_proof_type: proof,
            pieces,
            staged_filepath: staged.clone(),
        })
        .expect("add_pieces");
    assert_eq!(infos.len(), if deal { 2 } else { 1 });
    let comm_d = api::seal::compute_comm_d(proof, &infos).expect("comm_d");

    let built = stages
        .tree_d
        .process(TreeD {
            registered_proof: proof,
            staged_file: staged.clone(),
            cache_dir: prepared.clone(),
        })
        .expect("tree_d");
    assert!(built);
    assert!(proofs::tree_d_path_in_dir(&prepared).is_file());

    fs::write(&sealed, b"").expect("sealed file");
    let ticket = random32(number);
    let pc1out = stages
        .pc1
        .process(PC1 {
            registered_proof: proof,
            cache_path: cache.clone(),
            in_path: staged.clone(),
            out_path: sealed.clone(),
            prover_id: prover_id(),
            sector_id: SectorId::from(number),
            ticket,
            piece_infos: infos.clone(),
        })
        .expect("pc1");
    assert_eq!(pc1out.comm_d, comm_d, "PC1's CommD matches the pieces");
    // PC1 builds its own tree-d from the same data: the tree_d stage's file is identical.
    let from_stage = fs::read(proofs::tree_d_path_in_dir(&prepared)).expect("stage tree-d");
    let from_pc1 = fs::read(proofs::tree_d_path_in_dir(&cache)).expect("pc1 tree-d");
    assert_eq!(
        from_stage, from_pc1,
        "the tree_d stage wrote the sector's data tree"
    );

    let pc2 = stages
        .pc2
        .process(PC2 {
            pc1out,
            cache_dir: cache.clone(),
            sealed_file: sealed.clone(),
        })
        .expect("pc2");
    assert_eq!(pc2.comm_d, comm_d);
    assert_ne!(pc2.comm_r, [0u8; 32]);
    Sector {
        proof,
        number,
        dir,
        staged,
        cache,
        sealed,
        ticket,
        pieces: infos,
        pc2,
        deal_bytes,
    }
}

/// C1 in-process, C2 through the stage, then `verify_seal`.
pub fn commit_and_verify(stages: &Stages, sector: &Sector) {
    let seed = random32(sector.number + 1000);
    let c1 = proofs::seal_commit_phase1(
        &sector.cache,
        &sector.sealed,
        prover_id(),
        SectorId::from(sector.number),
        sector.ticket,
        seed,
        sector.pc2.clone(),
        &sector.pieces,
    )
    .expect("c1");
    // The C1 output travels as JSON to C2 processors: it must survive the trip.
    let json = serde_json::to_string(&c1).expect("c1 json");
    let c1: api::seal::SealCommitPhase1Output = serde_json::from_str(&json).expect("c1 json back");
    let out = stages
        .c2
        .process(C2 {
            c1out: c1,
            prover_id: prover_id(),
            sector_id: SectorId::from(sector.number),
            miner_id: MINER,
        })
        .expect("c2");
    assert_eq!(out.proof.len(), 192, "one partition proof of 192 bytes");
    let ok = proofs::verify_seal(
        sector.proof,
        sector.pc2.comm_r,
        sector.pc2.comm_d,
        prover_id(),
        SectorId::from(sector.number),
        sector.ticket,
        seed,
        &out.proof,
    )
    .expect("verify_seal");
    assert!(ok, "verify_seal accepts the proof");
    let mut bad = out.proof.clone();
    bad[0] ^= 0xff;
    let rejected = proofs::verify_seal(
        sector.proof,
        sector.pc2.comm_r,
        sector.pc2.comm_d,
        prover_id(),
        SectorId::from(sector.number),
        sector.ticket,
        seed,
        &bad,
    );
    assert!(
        !rejected.unwrap_or(false),
        "a tampered proof does not verify"
    );
}

/// Copies a sealed sector's PoSt files (sealed file and cache) to `to`, through the transfer
/// stage, and returns the replica info of the copy.
pub fn persist_copy(stages: &Stages, sector: &Sector, to: &Path) -> PoStReplicaInfo {
    let name = format!("s-t0{MINER}-{}", sector.number);
    let sealed = to.join("sealed").join(&name);
    let cache = to.join("cache").join(&name);
    let mut routes = vec![TransferRoute {
        src: TransferItem {
            store_name: None,
            uri: sector.sealed.clone(),
        },
        dest: TransferItem {
            store_name: Some("store".into()),
            uri: sealed.clone(),
        },
        opt: None,
    }];
    for f in proofs::cached_filenames_for_sector(SEAL_PROOF) {
        routes.push(TransferRoute {
            src: TransferItem {
                store_name: None,
                uri: sector.cache.join(&f),
            },
            dest: TransferItem {
                store_name: Some("store".into()),
                uri: cache.join(&f),
            },
            opt: None,
        });
    }
    let mut stores = HashMap::new();
    stores.insert(
        "store".to_string(),
        TransferStoreInfo {
            name: "store".into(),
            meta: None,
            plugin: None,
        },
    );
    assert!(stages
        .transfer
        .process(Transfer { stores, routes })
        .expect("transfer"));
    PoStReplicaInfo {
        sector_id: sector.number,
        comm_r: sector.pc2.comm_r,
        cache_dir: cache,
        sealed_file: sealed,
    }
}

fn public_replicas(
    proof: RegisteredPoStProof,
    replicas: &[PoStReplicaInfo],
) -> BTreeMap<SectorId, api::PublicReplicaInfo> {
    replicas
        .iter()
        .map(|r| {
            (
                SectorId::from(r.sector_id),
                api::PublicReplicaInfo::new(proof, r.comm_r),
            )
        })
        .collect()
}

fn window_post_task(replicas: &[PoStReplicaInfo], seed: ChallengeSeed) -> WindowPoSt {
    WindowPoSt {
        miner_id: MINER,
        proof_type: WINDOW_PROOF,
        replicas: replicas.to_vec(),
        seed,
    }
}

/// WindowPoSt over `replicas` through the stage; the proof must verify.
pub fn window_post_verifies(stages: &Stages, replicas: &[PoStReplicaInfo]) {
    let seed = random32(77);
    let out = stages
        .window_post
        .process(window_post_task(replicas, seed))
        .expect("window_post");
    assert!(out.faults.is_empty(), "no faults: {:?}", out.faults);
    assert_eq!(out.proofs.len(), 1);
    let proof: &[u8] = &out.proofs[0];
    let ok = api::post::verify_window_post(
        &seed,
        &[(WINDOW_PROOF, proof)],
        &public_replicas(WINDOW_PROOF, replicas),
        prover_id(),
    )
    .expect("verify_window_post");
    assert!(ok, "the WindowPoSt proof verifies");
}

/// WindowPoSt with one corrupted replica reports exactly that sector as faulty, whether the
/// damage keeps the bytes valid field elements or not.
pub fn corrupted_replica_is_a_fault(stages: &Stages, replicas: &[PoStReplicaInfo], corrupt: u64) {
    let victim = replicas
        .iter()
        .find(|r| r.sector_id == corrupt)
        .expect("victim");
    let original = fs::read(&victim.sealed_file).expect("read");
    // 1: flip the lowest bit of every 32-byte node (still valid field elements).
    let mut flipped = original.clone();
    for node in flipped.chunks_mut(32) {
        node[0] ^= 1;
    }
    // 2: bytes that are not field elements at all.
    let garbage = vec![0xA5u8; original.len()];
    for (what, bytes) in [("flipped bits", flipped), ("garbage", garbage)] {
        fs::write(&victim.sealed_file, &bytes).expect("corrupt");
        let out = stages
            .window_post
            .process(window_post_task(replicas, random32(78)))
            .unwrap_or_else(|e| panic!("{what}: faults are not an error: {e:#}"));
        assert_eq!(out.faults, vec![corrupt], "{what}");
        assert!(out.proofs.is_empty(), "{what}");
    }
    // Restored, the sector proves again.
    fs::write(&victim.sealed_file, &original).expect("restore");
    window_post_verifies(stages, replicas);

    // A missing cache directory is a fault too, not an error.
    let mut missing = replicas.to_vec();
    missing[0].cache_dir = missing[0].cache_dir.join("gone");
    let out = stages
        .window_post
        .process(window_post_task(&missing, random32(79)))
        .expect("faults are not an error");
    assert_eq!(out.faults, vec![missing[0].sector_id]);
}

/// WinningPoSt over one replica through the stage; the proof must verify.
pub fn winning_post_verifies(stages: &Stages, replica: &PoStReplicaInfo) {
    let seed = random32(88);
    let challenged =
        api::post::generate_winning_post_sector_challenge(WINNING_PROOF, &seed, 1, prover_id())
            .expect("challenge");
    assert_eq!(challenged, vec![0], "one sector, index 0");
    let out = stages
        .winning_post
        .process(WinningPoSt {
            miner_id: MINER,
            proof_type: WINNING_PROOF,
            replicas: vec![replica.clone()],
            seed,
        })
        .expect("winning_post");
    assert_eq!(out.proofs.len(), 1);
    let ok = api::post::verify_winning_post(
        &seed,
        &out.proofs[0],
        &public_replicas(WINNING_PROOF, std::slice::from_ref(replica)),
        prover_id(),
    )
    .expect("verify_winning_post");
    assert!(ok, "the WinningPoSt proof verifies");
}

/// SnapDeals on a CC sector: encode new data, prove, verify.
pub fn snap_up_verifies(stages: &Stages, root: &Path, cc: &Sector) {
    let update_proof = proofs::update_proof_for(SEAL_PROOF).expect("update proof");
    let dir = root.join("snap");
    fs::create_dir_all(&dir).expect("dir");
    let data: Vec<u8> = (0..2032u32).map(|i| (i % 251) as u8).collect();
    let data_path = dir.join("new-data");
    fs::write(&data_path, &data).expect("data");
    let staged = dir.join("staged");
    let infos = stages
        .add_pieces
        .process(AddPieces {
            seal_proof_type: SEAL_PROOF,
            pieces: vec![Piece {
                piece_file: PieceFile::Local(data_path),
                payload_size: 2032,
                piece_size: UnpaddedBytesAmount(2032),
            }],
            staged_filepath: staged.clone(),
        })
        .expect("add_pieces");
    let update = dir.join("update");
    let update_cache = dir.join("update-cache");
    fs::create_dir_all(&update_cache).expect("dir");
    fs::write(&update, vec![0u8; 2048]).expect("update file");
    let enc = stages
        .snap_encode
        .process(SnapEncode {
            registered_proof: update_proof,
            new_replica_path: update.clone(),
            new_cache_path: update_cache.clone(),
            sector_path: cc.sealed.clone(),
            sector_cache_path: cc.cache.clone(),
            staged_data_path: staged,
            piece_infos: infos.clone(),
        })
        .expect("snap_encode");
    assert_eq!(
        enc.comm_d_new,
        api::seal::compute_comm_d(SEAL_PROOF, &infos).expect("comm_d")
    );

    let vanilla = api::update::generate_partition_proofs(
        update_proof,
        cc.pc2.comm_r,
        enc.comm_r_new,
        enc.comm_d_new,
        &cc.sealed,
        &cc.cache,
        &update,
        &update_cache,
    )
    .expect("partition proofs");
    let proof = stages
        .snap_prove
        .process(SnapProve {
            registered_proof: update_proof,
            vannilla_proofs: vanilla.into_iter().map(|p| p.0).collect(),
            comm_r_old: cc.pc2.comm_r,
            comm_r_new: enc.comm_r_new,
            comm_d_new: enc.comm_d_new,
        })
        .expect("snap_prove");
    let ok = api::update::verify_empty_sector_update_proof(
        update_proof,
        &proof,
        cc.pc2.comm_r,
        enc.comm_r_new,
        enc.comm_d_new,
    )
    .expect("verify");
    assert!(ok, "the update proof verifies");
}

/// Unseals the deal sector's first piece and compares it with the original bytes.
pub fn unseal_returns_the_piece(stages: &Stages, sector: &Sector) {
    let expect = sector.deal_bytes.as_ref().expect("a deal sector");
    let out = sector.dir.join("unsealed-piece");
    let written = stages
        .unseal
        .process(Unseal {
            registered_proof: SEAL_PROOF,
            prover_id: prover_id(),
            sector_id: SectorId::from(sector.number),
            comm_d: sector.pc2.comm_d,
            ticket: sector.ticket,
            cache_dir: sector.cache.clone(),
            sealed_file: sector.sealed.clone(),
            unsealed_output: out.clone(),
            offset: UnpaddedByteIndex(0),
            num_bytes: UnpaddedBytesAmount(1016),
        })
        .expect("unseal");
    assert_eq!(u64::from(written), 1016);
    assert_eq!(
        &fs::read(&out).expect("read"),
        expect,
        "exactly the original piece bytes"
    );
}
