//! WindowPoSt benchmarks.
//!
//! 1. One partition (two 8 MiB sectors) proven from a file store and from the S3 plugin store
//!    (the S3 test server on loopback): for each, the time and the bytes read, and their
//!    ratios; for S3 the time is split into the fetch of the challenged ranges and the proof.
//! 2. On the devnet (blocks of 1 s, 4 deadlines of 8 epochs), a worker seals two 2 KiB
//!    sectors and the manager's scheduler proves them for one proving period: how long after
//!    each deadline's open its WindowPoSt was submitted.
//!
//! `cargo bench -p damocles-manager --bench post` (`POST_BENCH_ROUNDS`, default 3;
//! `POST_BENCH_DEVNET=0` skips part 2).

use std::time::{Duration, Instant};

use damocles_manager::post::remote::{fetch_all, Scratch};
use vc_processors::builtin::tasks::PoStReplicaInfo;

#[path = "../../tests/it/common.rs"]
mod common;
#[allow(dead_code)]
#[path = "../../tests/it/post_s3.rs"]
mod post_s3;
#[allow(dead_code)]
#[path = "../../objstore/s3/tests/it/server.rs"]
mod s3server;
#[path = "../../tests/it/worker.rs"]
mod worker;

use common::MINER;
use post_s3::*;

/// Bytes this process read through system calls so far (`rchar` of /proc/self/io).
fn bytes_read() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("rchar: ").map(|v| v.trim().parse().ok()))
                .flatten()
        })
        .unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    partition_from_file_and_s3();
    if std::env::var("POST_BENCH_DEVNET").as_deref() != Ok("0") {
        deadline_open_to_submit_on_the_devnet();
    }
}

fn partition_from_file_and_s3() {
    let rounds: usize = std::env::var("POST_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    ensure_8mib_window_post_params();
    let work = tempfile::tempdir().expect("tmp");
    let root = work.path().join("sealing");
    let sectors: Vec<(u64, [u8; 32])> = (1..=2).map(|n| (n, seal_8mib(&root, n))).collect();
    let server = s3server::S3Server::start();
    let store = open_s3_store(&server);
    for (n, _) in &sectors {
        persist(store.as_ref(), &root, *n);
    }
    let local: Vec<PoStReplicaInfo> = sectors
        .iter()
        .map(|(n, comm_r)| {
            let dir = root.join(format!("s-t0{MINER}-{n}"));
            PoStReplicaInfo {
                sector_id: *n,
                comm_r: *comm_r,
                cache_dir: dir.join("cache"),
                sealed_file: dir.join("sealed"),
            }
        })
        .collect();
    let remotes: Vec<_> = sectors
        .iter()
        .map(|(n, c)| remote_replica(&store, *n, *c))
        .collect();
    let numbers: Vec<u64> = sectors.iter().map(|(n, _)| *n).collect();
    let post_proof =
        vc_processors::builtin::proofs::api::RegisteredPoStProof::StackedDrgWindow8MiBV1_2;

    // A first proof loads the parameters; it is not counted.
    prove_and_verify(&local, [1; 32]);

    let (mut file_secs, mut file_bytes) = (Vec::new(), Vec::new());
    let (mut s3_secs, mut s3_fetch_secs, mut s3_bytes, mut fetched_bytes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let mut rand = [round as u8 + 2; 32];
        rand[31] &= 0x3f;

        let before = bytes_read();
        let t = Instant::now();
        prove_and_verify(&local, rand);
        file_secs.push(t.elapsed().as_secs_f64());
        file_bytes.push((bytes_read() - before) as f64);

        let before = bytes_read();
        let t = Instant::now();
        let scratch = Scratch::new(&work.path().join("scratch")).expect("scratch");
        let (fetched, failed) =
            fetch_all(&remotes, &numbers, post_proof, &rand, MINER, &scratch).expect("fetch");
        assert!(failed.is_empty(), "{failed:?}");
        s3_fetch_secs.push(t.elapsed().as_secs_f64());
        fetched_bytes.push(fetched.iter().map(|(_, s)| s.total()).sum::<u64>() as f64);
        let replicas: Vec<_> = fetched.into_iter().map(|(r, _)| r).collect();
        prove_and_verify(&replicas, rand);
        drop(scratch);
        s3_secs.push(t.elapsed().as_secs_f64());
        s3_bytes.push((bytes_read() - before) as f64);
    }
    let (fs, fb) = (median(file_secs), median(file_bytes));
    let (ss, sf, sb, fetched) = (
        median(s3_secs),
        median(s3_fetch_secs),
        median(s3_bytes),
        median(fetched_bytes),
    );
    let partition = 2.0 * SECTOR_SIZE as f64;
    println!("WindowPoSt of one partition (2 sectors of 8 MiB), median of {rounds} rounds, proof verified each time");
    println!(
        "  file store: {fs:.3} s, {:.0} KiB read by the process",
        fb / 1024.0
    );
    println!(
        "  S3 store:   {ss:.3} s ({sf:.3} s fetching, {:.3} s proving), {:.0} KiB fetched from S3, {:.0} KiB read by the process",
        ss - sf,
        fetched / 1024.0,
        sb / 1024.0
    );
    println!("  time S3 / file store:            {:.2}", ss / fs);
    println!("  bytes read S3 / file store:      {:.2}", sb / fb.max(1.0));
    println!(
        "  bytes fetched / partition size:  {:.4} ({:.0} KiB per sector of 8192 KiB)",
        fetched / partition,
        fetched / 2.0 / 1024.0
    );
}

fn deadline_open_to_submit_on_the_devnet() {
    use damocles_manager::rpc::DamoclesApiClient;
    use damocles_manager_api::rpc::SealerCliApiClient;
    use damocles_manager_api::types::{SectorJob, SectorWorkerState};

    vc_processors::builtin::params::ensure_test_params(
        &vc_processors::builtin::params::ParamKind::ALL,
    )
    .expect("params");
    let mut m = common::TestManager::with_config(|c| {
        c.miners[0].sector.max_number = Some(2);
        let dev = c.devnet.as_mut().expect("devnet");
        dev.wpost_period_deadlines = 4;
        dev.wpost_challenge_window = 8;
        dev.wpost_challenge_lookback = 5;
        dev.fault_declaration_cutoff = 6;
    });
    m.run_args = vec!["--poster".into()];
    m.start();
    let mut w = worker::TestWorker::new(&m, &m.dir.path().join("worker"), 2, "");
    w.start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let c = m.client();
    let started = Instant::now();
    loop {
        let done = rt
            .block_on(SealerCliApiClient::list_sectors(
                &c,
                SectorWorkerState::Offline,
                SectorJob::All,
            ))
            .expect("sectors");
        if done.len() >= 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "sealing took too long\n{}",
            m.logs()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let head = rt
        .block_on(DamoclesApiClient::chain_head(&c))
        .expect("head");
    let period = head.params.wpost_proving_period();
    let logs_before = m.logs().len();
    let until = head.head.epoch + 2 * period;
    while rt
        .block_on(DamoclesApiClient::chain_head(&c))
        .expect("head")
        .head
        .epoch
        < until
    {
        std::thread::sleep(Duration::from_secs(1));
    }
    w.kill();
    let logs = m.logs();
    let mut epochs: Vec<f64> = logs[logs_before..]
        .lines()
        .filter(|l| l.contains("WindowPoSt submitted"))
        .filter_map(|l| l.split("epochs_after_open=").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .filter_map(|v| v.parse().ok())
        .collect();
    assert!(!epochs.is_empty(), "no WindowPoSt submitted\n{logs}");
    epochs.sort_by(|a, b| a.total_cmp(b));
    let block_secs = 1.0;
    println!(
        "Devnet (1 s blocks, deadlines of 8 epochs), {} WindowPoSts over two proving periods:",
        epochs.len()
    );
    println!(
        "  deadline open to submit: min {:.0} s, median {:.0} s, max {:.0} s ({:.0}% of the deadline at the median)",
        epochs[0] * block_secs,
        median(epochs.clone()) * block_secs,
        epochs[epochs.len() - 1] * block_secs,
        median(epochs.clone()) / 8.0 * 100.0
    );
}
