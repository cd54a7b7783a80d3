//! Sealing throughput of the whole stack: the manager on the devnet and a damocles-worker
//! daemon with two sealing threads seal K sectors of 2 KiB (builtin processors). Prints sectors
//! per hour, the ratio of wall time to the sum of the raw proof calls measured in the same run,
//! and the per-sector time outside proof calls, split into waits for the chain and the rest
//! (RPC, persistence, transfer, bookkeeping).
//!
//! `cargo bench -p damocles-manager --bench sealing` (`SEALING_BENCH_SECTORS`, default 8).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use damocles_manager_api::rpc::SealerCliApiClient;
use damocles_manager_api::types::{SectorJob, SectorWorkerState};

#[path = "../../tests/it/common.rs"]
mod common;
#[path = "../../tests/it/worker.rs"]
mod worker;
// The test helpers know the S3 test server; this benchmark does not start it.
#[allow(dead_code)]
#[path = "../../objstore/s3/tests/it/server.rs"]
mod s3server;

use common::TestManager;
use worker::TestWorker;

/// Proof calls: the raw proof library's work.
const PROOF_STAGES: [&str; 7] = [
    "add_pieces",
    "tree_d",
    "pc1",
    "pc2",
    "synth_proof",
    "c1",
    "c2",
];
/// Handlers that wait for the chain (message landing, the seed).
const CHAIN_WAITS: [&str; 3] = ["PCSubmitted", "PersistanceSubmitted", "ProofSubmitted"];

/// `key=value` fields of a log line.
fn fields(line: &str) -> BTreeMap<&str, &str> {
    line.split_whitespace()
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k, v.trim_matches('"')))
        .collect()
}

fn main() {
    let k: usize = std::env::var("SEALING_BENCH_SECTORS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let threads = 2;
    vc_processors::builtin::params::ensure_test_params(
        &vc_processors::builtin::params::ParamKind::ALL,
    )
    .expect("params");
    let mut m = TestManager::with_config(|c| c.miners[0].sector.max_number = Some(k as u64));
    m.start();
    let mut w = TestWorker::new(&m, &m.dir.path().join("worker"), threads, "");
    let started = Instant::now();
    w.start();
    let c = m.client();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    loop {
        let done = rt
            .block_on(SealerCliApiClient::list_sectors(
                &c,
                SectorWorkerState::Offline,
                SectorJob::All,
            ))
            .expect("offline sectors");
        if done.len() >= k {
            assert!(done
                .iter()
                .all(|s| s.finalized && s.abort_reason.is_empty()));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "not done in an hour\n{}",
            w.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let wall = started.elapsed().as_secs_f64();
    let logs = w.logs();
    let mut proof: BTreeMap<String, f64> = BTreeMap::new();
    let mut transfer = 0.0;
    let mut steps = 0.0;
    let mut chain = 0.0;
    for line in logs.lines() {
        let f = fields(line);
        let ms = |f: &BTreeMap<&str, &str>| {
            f.get("ms")
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1e3
        };
        if line.contains("processor task") {
            let stage = f.get("stage").copied().unwrap_or_default().to_string();
            if stage == "transfer" {
                transfer += ms(&f);
            } else if PROOF_STAGES.contains(&stage.as_str()) {
                *proof.entry(stage).or_default() += ms(&f);
            }
        } else if line.contains(" step ") || line.ends_with(" step") || line.contains(": step ") {
            let state = f.get("state").copied().unwrap_or_default();
            steps += ms(&f);
            if CHAIN_WAITS.contains(&state) {
                chain += ms(&f);
            }
        }
    }
    let proof_sum: f64 = proof.values().sum();
    let per_sector_other = (steps - proof_sum - chain) / k as f64;
    println!(
        "sealing benchmark: {k} sectors of 2 KiB, {threads} sealing threads, builtin processors"
    );
    println!("wall time                 {wall:>10.1} s");
    println!(
        "sectors per hour          {:>10.1}",
        k as f64 * 3600.0 / wall
    );
    println!("raw proof calls (sum)     {proof_sum:>10.1} s");
    for (stage, secs) in &proof {
        println!(
            "  {stage:<22}  {secs:>10.1} s   {:>8.0} ms/sector",
            secs * 1e3 / k as f64
        );
    }
    println!(
        "wall / proof-call sum     {:>10.3}   ({threads} threads: {:.3} would be proof calls only, in parallel)",
        wall / proof_sum,
        1.0 / threads as f64
    );
    println!(
        "per sector, outside proof calls: {:>8.0} ms waiting for the chain (PreCommit, seed, proof), {:>6.0} ms other (RPC, persistence, transfer {:.0} ms, bookkeeping)",
        chain * 1e3 / k as f64,
        per_sector_other * 1e3,
        transfer * 1e3 / k as f64
    );
}
