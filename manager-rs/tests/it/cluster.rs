//! The manager on the devnet with a real damocles-worker daemon sealing sectors end to end.

use std::time::{Duration, Instant};

use damocles_manager::rpc::DamoclesApiClient;
use damocles_manager_api::rpc::SealerCliApiClient;
use damocles_manager_api::types::{SectorJob, SectorWorkerState};

use crate::common::{ok_text, TestManager, MINER};
use crate::worker::TestWorker;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn a_worker_with_two_threads_seals_two_cc_sectors_and_a_deal_sector() {
    vc_processors::builtin::params::ensure_test_params(
        &vc_processors::builtin::params::ParamKind::ALL,
    )
    .expect("params");
    // Three sector numbers in all, so the worker stops asking after three sectors.
    let mut m = TestManager::with_config(|c| c.miners[0].sector.max_number = Some(3));
    m.start();
    let data: Vec<u8> = (0..900u32).map(|i| (i * 7 % 253) as u8).collect();
    let file = m.dir.path().join("deal.bin");
    std::fs::write(&file, &data).expect("deal file");
    let out = ok_text(&m.util(&[
        "deals",
        "import",
        "--miner",
        &MINER.to_string(),
        file.to_str().expect("utf8"),
    ]));
    assert!(out.contains("deal 1 queued"), "{out}");

    let mut w = TestWorker::new(&m, &m.dir.path().join("worker"), 2, "");
    w.start();
    let c = m.client();
    let started = Instant::now();
    let finished = loop {
        let offline = block_on(SealerCliApiClient::list_sectors(
            &c,
            SectorWorkerState::Offline,
            SectorJob::All,
        ))
        .expect("offline sectors");
        if offline.len() >= 3 {
            break offline;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "three sectors were not finished in 15 minutes; {} were\n{}\n{}",
            offline.len(),
            w.logs(),
            m.logs()
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    let elapsed = started.elapsed();
    eprintln!("three sectors sealed in {:.1} s", elapsed.as_secs_f64());
    for st in &finished {
        assert!(st.finalized, "{} is not finalized", st.id);
        assert!(st.abort_reason.is_empty(), "{}: {}", st.id, st.abort_reason);
    }

    let list = ok_text(&w.control(&["list"]));
    assert_eq!(list.lines().count(), 3, "a header and two threads:\n{list}");

    let chain = block_on(DamoclesApiClient::chain_sectors(&c, MINER)).expect("chain");
    assert_eq!(chain.active.len(), 3, "{:?}", chain.active);
    assert!(chain.active.iter().all(|s| s.proof_verified));
    let with_deal: Vec<u64> = chain
        .active
        .iter()
        .filter(|s| s.deal_ids == vec![1])
        .map(|s| s.sector_number)
        .collect();
    assert_eq!(with_deal.len(), 1, "one sector holds the deal");
    let deals = block_on(DamoclesApiClient::deals_list(&c)).expect("deals");
    assert_eq!(deals[0].deal.sector_number, Some(with_deal[0]));

    // The files are in the persist store, and the index says so.
    let persist = m.home.join("persist");
    for s in &chain.active {
        let name = format!("s-t0{MINER}-{}", s.sector_number);
        let sealed = persist.join("sealed").join(&name);
        assert_eq!(
            std::fs::metadata(&sealed).expect("sealed file").len(),
            2048,
            "{}",
            sealed.display()
        );
        for f in ["p_aux", "t_aux", "sc-02-data-tree-r-last.dat"] {
            assert!(
                persist.join("cache").join(&name).join(f).is_file(),
                "{name}/{f}"
            );
        }
        let found = ok_text(&m.util(&[
            "storage",
            "find",
            &MINER.to_string(),
            &s.sector_number.to_string(),
        ]));
        assert!(found.contains("sealed file: persist"), "{found}");
    }
    // The worker's sealing stores are empty again.
    for t in ["t0", "t1"] {
        let data = w.dir.join(t).join("data");
        let left: Vec<_> = std::fs::read_dir(&data)
            .expect("data dir")
            .map(|e| e.expect("entry").path())
            .collect();
        assert!(left.is_empty(), "{}: {left:?}", data.display());
    }
    // The manager knows the worker.
    let workers = block_on(SealerCliApiClient::worker_ping_info_list(&c)).expect("workers");
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].info.name, "test-worker");
    assert_eq!(workers[0].info.summary.threads, 2);
}
