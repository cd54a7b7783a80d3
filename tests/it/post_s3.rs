//! WindowPoSt of sectors kept in the S3 plugin store: only the challenged ranges of each
//! sealed replica and the small cache files are fetched, and the proof verifies.

use std::path::Path;

use damocles_manager::post::prover::{BuiltinProver, ProofRequest, WindowProver};
use damocles_manager::post::remote::RemoteReplica;
use damocles_manager::stores::{store_config, StoreOpener};
use objstore::ObjectStore;
use vc_processors::builtin::processors::BuiltinProcessor;
use vc_processors::builtin::proofs::{api, cached_filenames_for_sector, to_prover_id};
use vc_processors::builtin::tasks::{AddPieces, WindowPoSt, PC1, PC2};
use vc_processors::Processor;

use crate::common::{s3_persist_store, MINER};
use crate::s3server::S3Server;

/// The sector size of these sectors.
pub(crate) const SECTOR_SIZE: u64 = 8 << 20;

/// Seals a CC sector of 8 MiB through PC2 in `root/s-t0<miner>-<number>/` (files `sealed` and
/// `cache/`); answers its CommR.
pub(crate) fn seal_8mib(root: &Path, number: u64) -> [u8; 32] {
    let p = BuiltinProcessor::default();
    let proof = api::RegisteredSealProof::StackedDrg8MiBV1_1;
    let dir = root.join(format!("s-t0{MINER}-{number}"));
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).expect("cache dir");
    let staged = dir.join("staged");
    let sealed = dir.join("sealed");
    let pieces = Processor::<AddPieces>::process(
        &p,
        AddPieces {
            seal_proof_type: proof,
            pieces: Vec::new(),
            staged_filepath: staged.clone(),
        },
    )
    .expect("add_pieces");
    std::fs::write(&sealed, b"").expect("sealed file");
    let pc1out = Processor::<PC1>::process(
        &p,
        PC1 {
            registered_proof: proof,
            cache_path: cache.clone(),
            in_path: staged,
            out_path: sealed.clone(),
            prover_id: to_prover_id(MINER),
            sector_id: api::SectorId::from(number),
            ticket: [number as u8; 32],
            piece_infos: pieces,
        },
    )
    .expect("pc1");
    let pc2 = Processor::<PC2>::process(
        &p,
        PC2 {
            pc1out,
            cache_dir: cache.clone(),
            sealed_file: sealed,
        },
    )
    .expect("pc2");
    pc2.comm_r
}

/// Persists a sealed sector into `store` as the worker's transfer does: `sealed/<name>` and
/// the PoSt cache files under `cache/<name>/`.
pub(crate) fn persist(store: &dyn ObjectStore, root: &Path, number: u64) {
    let name = format!("s-t0{MINER}-{number}");
    let dir = root.join(&name);
    let mut f = std::fs::File::open(dir.join("sealed")).expect("sealed");
    store
        .put(&format!("sealed/{name}"), &mut f)
        .expect("upload sealed");
    for file in cached_filenames_for_sector(api::RegisteredSealProof::StackedDrg8MiBV1_1) {
        let mut f = std::fs::File::open(dir.join("cache").join(&file)).expect("cache file");
        store
            .put(&format!("cache/{name}/{file}"), &mut f)
            .expect("upload cache file");
    }
}

/// 8 MiB WindowPoSt parameters, generated once per machine.
pub(crate) fn ensure_8mib_window_post_params() {
    vc_processors::builtin::params::generate(
        SECTOR_SIZE,
        &[vc_processors::builtin::params::ParamKind::WindowPoSt],
        std::time::Duration::from_secs(60),
        &|_| {},
    )
    .expect("8 MiB WindowPoSt parameters");
}

/// The S3 persist store `s3` of `server`, opened with the plugin beside the manager binary.
pub(crate) fn open_s3_store(server: &S3Server) -> std::sync::Arc<dyn ObjectStore> {
    let plugin_dir = damocles_tests::bins::bin_dir();
    StoreOpener::new(plugin_dir.to_path_buf())
        .open(store_config(&s3_persist_store("s3", &server.endpoint)))
        .expect("s3 store")
        .0
}

/// The replica of `number` in `store` as the manager's locator describes it.
pub(crate) fn remote_replica(
    store: &std::sync::Arc<dyn ObjectStore>,
    number: u64,
    comm_r: [u8; 32],
) -> RemoteReplica {
    RemoteReplica {
        sector_id: number,
        comm_r,
        seal_proof: api::RegisteredSealProof::StackedDrg8MiBV1_1,
        sealed: (store.clone(), format!("sealed/s-t0{MINER}-{number}")),
        cache: (store.clone(), format!("cache/s-t0{MINER}-{number}")),
    }
}

/// Proves `replicas` with the builtin prover and verifies the proof.
pub(crate) fn prove_and_verify(
    replicas: &[vc_processors::builtin::tasks::PoStReplicaInfo],
    rand: [u8; 32],
) {
    let post_proof = api::RegisteredPoStProof::StackedDrgWindow8MiBV1_2;
    let out = BuiltinProver::default()
        .prove(ProofRequest {
            task: WindowPoSt {
                miner_id: MINER,
                proof_type: post_proof,
                replicas: replicas.to_vec(),
                seed: rand,
            },
            deadline: 0,
            partitions: vec![0],
            accesses: Vec::new(),
            cancel: Default::default(),
        })
        .expect("prove");
    assert!(out.faults.is_empty(), "faults {:?}", out.faults);
    let public = damocles_manager::proofs::public_replicas(post_proof, replicas);
    assert!(
        api::post::verify_window_post(
            &rand,
            &[(post_proof, &out.proofs[0].0)],
            &public,
            to_prover_id(MINER)
        )
        .expect("verify"),
        "the proof verifies"
    );
}

#[test]
fn a_window_post_of_8mib_sectors_in_s3_fetches_only_what_it_reads_and_verifies() {
    use damocles_manager::post::remote::{fetch_all, Scratch};
    ensure_8mib_window_post_params();
    let server = S3Server::start();
    let work = tempfile::tempdir().expect("tmp");
    let sealed_root = work.path().join("sealing");
    let sectors: Vec<(u64, [u8; 32])> = (1..=2).map(|n| (n, seal_8mib(&sealed_root, n))).collect();

    let store = open_s3_store(&server);
    for (n, _) in &sectors {
        persist(store.as_ref(), &sealed_root, *n);
    }
    // The local copies go: the proof can only read what is fetched.
    std::fs::remove_dir_all(&sealed_root).expect("remove the local sectors");

    let post_proof = api::RegisteredPoStProof::StackedDrgWindow8MiBV1_2;
    let remotes: Vec<RemoteReplica> = sectors
        .iter()
        .map(|(n, comm_r)| remote_replica(&store, *n, *comm_r))
        .collect();
    let numbers: Vec<u64> = sectors.iter().map(|(n, _)| *n).collect();
    let mut rand = [7u8; 32];
    rand[31] &= 0x3f;
    let scratch_root = work.path().join("scratch");
    let scratch = Scratch::new(&scratch_root).expect("scratch");
    let (fetched, failed) =
        fetch_all(&remotes, &numbers, post_proof, &rand, MINER, &scratch).expect("fetch");
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(fetched.len(), 2);
    for (replica, stats) in &fetched {
        eprintln!(
            "sector {}: {} bytes fetched ({} ranges of the replica, {} bytes of cache files) for a {} byte sector",
            replica.sector_id,
            stats.total(),
            stats.ranges,
            stats.cache_bytes,
            SECTOR_SIZE
        );
        assert!(stats.ranges >= 1 && stats.ranges <= 10, "{stats:?}");
        assert!(
            stats.total() * 16 < SECTOR_SIZE,
            "{} bytes fetched for an 8 MiB sector",
            stats.total()
        );
        // The local replica is sparse: as long as the sector, with data only where fetched.
        let len = std::fs::metadata(&replica.sealed_file)
            .expect("scratch")
            .len();
        assert_eq!(len, SECTOR_SIZE);
    }

    let replicas: Vec<_> = fetched.iter().map(|(r, _)| r.clone()).collect();
    prove_and_verify(&replicas, rand);
    let scratch_dir = scratch.path().to_path_buf();
    drop(scratch);
    assert!(!scratch_dir.exists(), "the scratch directory is removed");

    // A corrupted object is found by the fetch (size) and named.
    let name = format!("sealed/s-t0{MINER}-1");
    store
        .put(&name, &mut std::io::Cursor::new(vec![0u8; 4096]))
        .expect("truncate");
    let scratch = Scratch::new(&scratch_root).expect("scratch");
    let (fetched, failed) =
        fetch_all(&remotes, &numbers, post_proof, &rand, MINER, &scratch).expect("fetch");
    assert_eq!(fetched.len(), 1);
    let why = failed.get(&1).expect("sector 1 failed");
    assert!(
        why.contains("4096 bytes") && why.contains("s-t010000-1"),
        "{why}"
    );
}
