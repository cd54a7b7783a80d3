//! RPC throughput of the manager on loopback: `AllocateSector` and `ReportState` with 1 and 64
//! concurrent clients against the real daemon (RocksDB writes synced). Prints requests per
//! second and latency percentiles.
//!
//! `cargo bench -p damocles-manager --bench rpc` (set `RPC_BENCH_SECS` to change the duration
//! of each run, default 5).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use damocles_manager::config::ManagerConfig;
use damocles_manager_api::rpc::SealerApiClient;
use damocles_manager_api::types::*;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};

const MANAGER: &str = env!("CARGO_BIN_EXE_damocles-manager");
const MINER: u64 = 10000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

/// A client sending a `write` token, as a worker does (each call's token is checked).
fn client(url: &str, token: &str) -> HttpClient {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    HttpClientBuilder::default()
        .set_headers(headers)
        .build(url)
        .expect("client")
}

async fn run(
    url: &str,
    token: &str,
    method: &'static str,
    clients: usize,
    secs: u64,
) -> (f64, Vec<Duration>) {
    // Sectors to report on.
    let setup = client(url, token);
    let mut sectors = Vec::new();
    if method == "ReportState" {
        for _ in 0..clients {
            let s = SealerApiClient::allocate_sector(&setup, AllocateSectorSpec::default())
                .await
                .expect("allocate")
                .expect("sector");
            sectors.push(s.id);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..clients {
        let c = client(url, token);
        let sid = sectors.get(i).copied();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut step = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                match sid {
                    None => {
                        SealerApiClient::allocate_sector(&c, AllocateSectorSpec::default())
                            .await
                            .expect("allocate");
                    }
                    Some(sid) => {
                        step += 1;
                        let req = ReportStateReq {
                            worker: WorkerIdentifier {
                                instance: "bench".into(),
                                location: format!("t{i}"),
                            },
                            state_change: SectorStateChange {
                                prev: String::new(),
                                next: format!("S{step}"),
                                event: "e".into(),
                            },
                            failure: None,
                        };
                        SealerApiClient::report_state(&c, sid, req)
                            .await
                            .expect("report");
                    }
                }
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort();
    (rate, all)
}

fn main() {
    // `cargo bench` passes `--bench`; a plain `cargo test` of benches passes nothing to run.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs: u64 = std::env::var("RPC_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().expect("tmp");
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join("persist")).expect("persist");
    std::fs::create_dir_all(home.join("pieces")).expect("pieces");
    let cfg = ManagerConfig::devnet_default(&home, MINER, 2048);
    std::fs::write(
        home.join("sector-manager.cfg"),
        cfg.to_toml().expect("toml"),
    )
    .expect("cfg");
    let keys = damocles_auth::open_home(&home).expect("API secret");
    let token = damocles_auth::create_token(&keys.secret, damocles_auth::Perm::Write, None, None)
        .expect("token");
    let mut child = Command::new(MANAGER)
        .arg("--home")
        .arg(&home)
        .args(["daemon", "run", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn manager");
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    while !line.contains("listening on") {
        line.clear();
        if out.read_line(&mut line).expect("read") == 0 {
            panic!("the manager exited before listening");
        }
    }
    let addr = line.trim().rsplit(' ').next().expect("addr").to_string();
    let url = format!("http://{addr}/rpc/v0");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    println!("manager RPC on loopback, {secs} s per run, synced RocksDB writes");
    println!(
        "{:<16} {:>8} {:>12} {:>10} {:>10} {:>10}",
        "method", "clients", "req/s", "p50 ms", "p99 ms", "max ms"
    );
    for method in ["AllocateSector", "ReportState"] {
        for clients in [1usize, 64] {
            let (rate, lat) = rt.block_on(run(&url, &token, method, clients, secs));
            println!(
                "{:<16} {:>8} {:>12.0} {:>10.2} {:>10.2} {:>10.2}",
                method,
                clients,
                rate,
                percentile(&lat, 0.5).as_secs_f64() * 1e3,
                percentile(&lat, 0.99).as_secs_f64() * 1e3,
                lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
            );
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
