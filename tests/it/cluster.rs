//! The manager on the devnet with a real damocles-worker daemon sealing sectors end to end.

use std::time::{Duration, Instant};

use damocles_manager::rpc::DamoclesApiClient;
use damocles_manager_api::rpc::SealerCliApiClient;
use damocles_manager_api::types::{SectorJob, SectorWorkerState};

use crate::common::{ok_text, TestManager, MINER};
use crate::common::{
    one_sector_manager_with_s3_store, s3_attached, sector_objects, short_proving_periods,
};
use crate::s3server::{S3Server, BUCKET};
use crate::stall::{Action, StallProxy};
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
    // Three sector numbers in all, so the worker stops asking after three sectors. Short
    // proving periods (4 deadlines of 8 epochs) and the WindowPoSt scheduler: the sectors
    // are proven from the persist store as soon as they are active.
    let mut m = TestManager::with_config(|c| {
        c.miners[0].sector.max_number = Some(3);
        c.miners[0].proof.enabled = true;
        short_proving_periods(c);
        // A WinningPoSt takes seconds of both cores: few elections, so deadlines stay met.
        c.devnet.as_mut().expect("devnet").winning_post_probability = 0.03;
        // Heartbeats come every 3 s: a lost wdpost worker is noticed 6 s after its last one.
        c.common.proving.worker_prover.heartbeat_timeout =
            damocles_manager::config::GoDuration(Duration::from_secs(6));
    });
    m.run_args = vec!["--poster".into()];
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

    // WindowPoSt: two whole proving periods after the last activation, every deadline holding
    // a sector was proven each time, and nothing is faulty.
    let period = block_on(DamoclesApiClient::chain_head(&c))
        .expect("head")
        .params
        .wpost_proving_period();
    // ... while 300 clients ask for the deal's piece and never read the answer.
    let deals = block_on(DamoclesApiClient::deals_list(&c)).expect("deals");
    let piece = deals[0].deal.proposal.piece_cid.to_string();
    let slow_readers = slow_piece_readers(&m, &piece, 300);
    proven_for_two_periods(&m, "builtin prover", &String::new, &mut |_| {});
    drop(slow_readers);
    let served = reqwest::blocking::Client::new()
        .get(format!(
            "http://{}/piecestore/{piece}",
            m.addr.expect("addr")
        ))
        .bearer_auth(m.token(damocles_auth::Perm::Write))
        .send()
        .expect("piece");
    assert_eq!(
        served.status().as_u16(),
        200,
        "the piece store still serves"
    );
    let miner = block_on(DamoclesApiClient::chain_miner(&c, MINER)).expect("miner");
    assert_eq!(miner.power.raw_byte_power, 3 * 2048, "{:?}", miner.power);
    assert_eq!(miner.power.faulty_sectors, 0);
    assert!(m.logs().contains("WindowPoSt proven and verified"));

    // A damaged sector is skipped and only it turns faulty; repaired, it is declared
    // recovered and proven again. First the sealed file, then a cache file.
    let sector_file =
        |n: u64, rel: &str| persist.join(rel.replace("{}", &format!("s-t0{MINER}-{n}")));
    for (n, rel) in [(1, "sealed/{}"), (2, "cache/{}/sc-02-data-tree-r-last.dat")] {
        let path = sector_file(n, rel);
        let original = std::fs::read(&path).expect("sector file");
        let logs_before = m.logs().len();
        if rel.starts_with("sealed") {
            std::fs::write(&path, vec![0xa5u8; original.len()]).expect("corrupt");
        } else {
            std::fs::remove_file(&path).expect("delete");
        }
        let faulty = wait_faults(&m, |f| !f.is_empty(), 3 * period);
        assert_eq!(faulty, vec![n], "only the damaged sector is faulty");
        std::fs::write(&path, &original).expect("repair");
        wait_faults(&m, |f| f.is_empty(), 4 * period);
        let all = m.logs();
        let logs = &all[logs_before..];
        assert!(
            logs.contains("declared recoveries")
                && logs.contains("sector skipped in this WindowPoSt"),
            "{logs}"
        );
    }

    // The same sectors proven by an ext-prover child (`damocles-worker processor window_post`
    // beside the manager), which is killed once and restarted; no deadline is missed.
    m.stop();
    // The miner's elections are answered by a `[[WinPost]]` child (`damocles-worker processor
    // winning_post`) meanwhile.
    std::fs::write(
        m.home.join("ext-prover.cfg"),
        "[[WdPost]]\nConcurrent = 1\n\n[[WinPost]]\n",
    )
    .expect("cfg");
    m.run_args = vec!["--poster".into(), "--ext-prover".into(), "--miner".into()];
    m.start();
    let before = block_on(DamoclesApiClient::chain_head(&m.client()))
        .expect("head")
        .summary;
    let logs = m.logs();
    let pid: i32 = logs
        .lines()
        .rev()
        .find(|l| l.contains("ext-prover child ready") && l.contains("WdPost"))
        .and_then(|l| l.split("pid=Some(").nth(1))
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the ext-prover child started:\n{logs}"));
    // Killed mid-proof: once half a period has passed, as soon as the child uses CPU (it is
    // idle between proofs). A kill that lands after the proof ended shows no request in flight:
    // then the restarted child is killed the same way.
    let mut pid = pid;
    let mut killed = false;
    let mut mid_proof = false;
    proven_for_two_periods(&m, "ext-prover", &String::new, &mut |elapsed| {
        if mid_proof || elapsed < period / 2 {
            return;
        }
        if killed {
            let logs = m.logs();
            if logs.contains("ext-prover WdPost.0") && logs.contains("in flight") {
                mid_proof = true;
            } else if let Some(new) = logs
                .lines()
                .rev()
                .find(|l| l.contains("processor restarted") && l.contains("window_post"))
                .and_then(|l| l.split("pid=").nth(1))
                .and_then(|r| r.split_whitespace().next())
                .and_then(|p| p.parse::<i32>().ok())
                .filter(|p| *p != pid)
            {
                pid = new;
                killed = false;
            }
            return;
        }
        let start = cpu_ticks(pid);
        for _ in 0..18 {
            std::thread::sleep(Duration::from_millis(50));
            if cpu_ticks(pid) > start {
                // SAFETY: signalling the child of the manager this test started.
                assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
                killed = true;
                return;
            }
        }
    });
    assert!(
        mid_proof,
        "the ext-prover child was killed with a proof in flight\n{}",
        m.logs()
    );
    let logs = m.logs();
    assert!(logs.contains("processor restarted"), "{logs}");
    assert!(logs.contains("prover=ext-prover (1 children)"), "{logs}");
    assert!(
        logs.contains("prover=ext-prover (1 WinPost children)"),
        "{logs}"
    );
    assert_blocks_won(&m, &before);

    worker_provers_prove_and_a_lost_job_is_finished_by_another_worker(&mut m, &mut w);
}

/// The sectors of `m` proven by the wdpost threads of workers (`--worker-prover`) for two
/// proving periods without a fault; then a worker whose `window_post` processor never answers
/// takes a job and is killed: the job's heartbeat times out and another worker proves it.
fn worker_provers_prove_and_a_lost_job_is_finished_by_another_worker(
    m: &mut TestManager,
    sealing_worker: &mut TestWorker,
) {
    sealing_worker.kill();
    m.stop();
    m.run_args = vec!["--poster".into(), "--worker-prover".into()];
    // The poster panics at the 20th head it handles (in the first of the two periods below):
    // its supervisor restarts it, and no deadline is missed.
    m.run_env = vec![(
        damocles_manager::supervisor::INJECT_PANIC_ENV.into(),
        "poster@20".into(),
    )];
    let manager = m.start();
    m.run_env.clear();
    let attached = format!(
        "[[attached]]\nname = \"persist\"\nlocation = \"{}\"\n",
        m.home.join("persist").display()
    );
    let root = m.dir.path().to_path_buf();
    let worker_token = m.token(damocles_auth::Perm::Write);
    let wdpost_worker = |name: &str, extra: &str| {
        let w = TestWorker::with_attached(
            manager,
            &worker_token,
            &root.join(name),
            0,
            &attached,
            &format!("\n[[sealing_thread]]\nplan = \"wdpost\"\n{extra}"),
        );
        let cfg = std::fs::read_to_string(&w.config).expect("cfg");
        std::fs::write(
            &w.config,
            cfg.replace("name = \"test-worker\"", &format!("name = \"{name}\"")),
        )
        .expect("cfg");
        w
    };
    let mut prover = wdpost_worker("wdpost-worker", "");
    prover.start();
    proven_for_two_periods(m, "worker-prover", &|| prover.logs(), &mut |_| {});
    the_poster_was_restarted_once_after_its_injected_panic(m);
    let period = block_on(DamoclesApiClient::chain_head(&m.client()))
        .expect("head")
        .params
        .wpost_proving_period();
    assert!(m.logs().contains("prover=worker-prover"), "{}", m.logs());
    assert!(
        prover.logs().contains("WindowPoSt job finished"),
        "{}",
        prover.logs()
    );
    let listed = ok_text(&m.util(&["worker", "wdpost", "list", "--all"]));
    assert!(
        listed.contains("wdpost-worker") && listed.contains("finished"),
        "{listed}"
    );

    // A worker whose window_post processor takes tasks and never answers. Blocks of 3 s from
    // here give the job time to change hands within its deadline (now 24 s); the jobs of the
    // previous run are removed, so the first job the hung worker takes is a fresh one.
    prover.kill();
    m.stop();
    m.reconfigure(|c| c.devnet.as_mut().expect("devnet").block_delay_secs = 3);
    m.start();
    ok_text(&m.util(&["worker", "wdpost", "remove-all", "--really-do-it"]));
    let script = m.dir.path().join("hung_window_post.py");
    std::fs::write(
        &script,
        "import sys\nsys.stdout.write('window_post processor ready\\n')\nsys.stdout.flush()\nfor line in sys.stdin:\n    pass\n",
    )
    .expect("script");
    let mut hung = wdpost_worker(
        "hung-worker",
        &format!(
            "\n[[processors.window_post]]\nbin = \"python3\"\nargs = [\"{}\"]\n",
            script.display()
        ),
    );
    let logs_before = m.logs().len();
    hung.start();
    let started = Instant::now();
    let job = loop {
        let logs = m.logs();
        let held = logs[logs_before..]
            .lines()
            .find(|l| l.contains("WindowPoSt job allocated") && l.contains("hung-worker"))
            .and_then(|l| l.split("job=").nth(1))
            .and_then(|r| r.split_whitespace().next())
            .map(str::to_string);
        if let Some(id) = held {
            break id;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3 * 4 * period as u64),
            "the hung worker got no job\n{logs}\n{}",
            hung.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // The other worker waits for work; the hung one dies holding the job.
    prover.start();
    hung.kill();
    let started = Instant::now();
    let finished = loop {
        let out = ok_text(&m.util(&["worker", "wdpost", "list", "--all", "--detail"]));
        let jobs: serde_json::Value = serde_json::from_str(&out).expect("json");
        let j = jobs
            .as_array()
            .expect("array")
            .iter()
            .find(|j| j["Id"] == job.as_str())
            .cloned();
        if let Some(j) = j.filter(|j| j["State"] == "finished" && j["ErrorReason"] == "") {
            break j;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "job {job} was not finished by another worker: {out}\n{}\n{}",
            m.logs(),
            prover.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(finished["WorkerName"], "wdpost-worker", "{finished}");
    assert_eq!(finished["TryNum"], 2, "one attempt each: {finished}");
    let logs = m.logs();
    let after = &logs[logs_before..];
    assert!(after.contains("heartbeat timeout"), "{after}");
    assert!(
        after.contains("WindowPoSt proven and verified"),
        "the other worker's proof was verified and used:\n{after}"
    );

    // A worker that answers every job with all its sectors as faults: the manager makes their
    // vanilla proofs itself, does not believe it, and an honest worker proves them all.
    prover.kill();
    let script = m.dir.path().join("lying_window_post.py");
    std::fs::write(
        &script,
        r#"import json, sys
sys.stdout.write('window_post processor ready\n')
sys.stdout.flush()
for line in sys.stdin:
    req = json.loads(line)
    faults = [r['sector_id'] for r in req['task']['replicas']]
    out = {'proofs': [], 'faults': faults}
    sys.stdout.write(json.dumps({'id': req['id'], 'err_msg': None, 'output': out}) + '\n')
    sys.stdout.flush()
"#,
    )
    .expect("script");
    let mut liar = wdpost_worker(
        "lying-worker",
        &format!(
            "\n[[processors.window_post]]\nbin = \"python3\"\nargs = [\"{}\"]\n",
            script.display()
        ),
    );
    let logs_before = m.logs().len();
    liar.start();
    let started = Instant::now();
    while !m.logs()[logs_before..].contains("but the manager made their vanilla proofs itself") {
        assert!(
            started.elapsed() < Duration::from_secs(3 * 4 * period as u64),
            "the lying worker's faults were not refuted\n{}\n{}",
            m.logs(),
            liar.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    liar.kill();
    let refuted_at = m.logs().len();
    prover.start();
    let started = Instant::now();
    while !m.logs()[refuted_at..].contains("WindowPoSt proven and verified") {
        assert!(
            started.elapsed() < Duration::from_secs(3 * 4 * period as u64),
            "the honest worker did not prove after the lie\n{}\n{}",
            m.logs(),
            prover.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = &m.logs()[logs_before..];
    assert!(
        !after.contains("reported faulty by the prover"),
        "no sector was skipped on the liar's word:\n{after}"
    );
    let text = scrape(m.addr.expect("addr"), Some(&m.admin_token()));
    assert!(
        series(&text, "damocles_manager_post_refuted_faults_total", &[]).is_some_and(|v| v >= 1.0),
        "{text}"
    );
}

/// The supervisor logged the poster's injected panic with the task's name and restarted it
/// once, and `util tasks` shows that.
fn the_poster_was_restarted_once_after_its_injected_panic(m: &TestManager) {
    let logs = m.logs();
    let failure = logs
        .lines()
        .find(|l| l.contains("background task failed; restarting it"))
        .unwrap_or_else(|| panic!("the supervisor logged no restart:\n{logs}"));
    assert!(
        failure.contains("task=poster") && failure.contains("injected panic"),
        "{failure}"
    );
    let out = ok_text(&m.util(&["tasks", "--json"]));
    let tasks: serde_json::Value = serde_json::from_str(&out).expect("json");
    let poster = tasks
        .as_array()
        .expect("array")
        .iter()
        .find(|t| t["Name"] == "poster")
        .unwrap_or_else(|| panic!("no poster task: {out}"))
        .clone();
    assert_eq!(poster["Restarts"], 1, "{poster}");
    assert_eq!(poster["State"], "Running", "{poster}");
    assert_eq!(poster["Critical"], true, "{poster}");
    assert!(
        poster["LastError"]
            .as_str()
            .is_some_and(|e| e.contains("injected panic")),
        "{poster}"
    );
    let table = ok_text(&m.util(&["tasks"]));
    let row = table
        .lines()
        .find(|l| l.starts_with("poster "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("Running"), "{row}");
}

/// Watches two whole proving periods from now: no sector of `m`'s miner turns faulty and every
/// deadline holding a sector is proven each time. `each_poll` runs about once a second with
/// the epochs elapsed; `other_logs` adds to the failure messages.
/// `n` connections that each ask for `piece` and never read the answer.
fn slow_piece_readers(m: &TestManager, piece: &str, n: usize) -> Vec<std::net::TcpStream> {
    use std::io::Write;
    let addr = m.addr.expect("addr");
    let token = m.token(damocles_auth::Perm::Write);
    (0..n)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(addr).expect("connect");
            // A connection over the server's limits is closed at once: the write may fail.
            let _ = write!(
                s,
                "GET /piecestore/{piece} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
            );
            s
        })
        .collect()
}

fn proven_for_two_periods(
    m: &TestManager,
    prover: &str,
    other_logs: &dyn Fn() -> String,
    each_poll: &mut dyn FnMut(i64),
) {
    let c = m.client();
    let logs_before = m.logs().len();
    let head = block_on(DamoclesApiClient::chain_head(&c)).expect("head");
    let accepted_before = head.summary["window_posts_accepted"];
    let until = head.head.epoch
        + 2 * head.params.wpost_proving_period()
        + head.params.wpost_challenge_window;
    let deadlines_used = block_on(DamoclesApiClient::chain_deadlines(&c, MINER))
        .expect("deadlines")
        .iter()
        .filter(|d| d.iter().any(|p| !p.all_sectors.is_empty()))
        .count() as u64;
    assert!(deadlines_used > 0, "no sector to prove");
    loop {
        let now = block_on(DamoclesApiClient::chain_head(&c)).expect("head");
        let faulty = block_on(DamoclesApiClient::chain_sectors(&c, MINER))
            .expect("chain")
            .faulty;
        assert!(
            faulty.is_empty(),
            "{prover}: faulty sectors {faulty:?} at epoch {}\n{}\n{}",
            now.head.epoch,
            m.logs(),
            other_logs()
        );
        each_poll(now.head.epoch - head.head.epoch);
        if now.head.epoch >= until {
            let mut ms = proof_millis(&m.logs()[logs_before..]);
            ms.sort_unstable();
            eprintln!(
                "{prover}: WindowPoSt proof times in ms (check to verified proof), min/median/max: {:?}/{:?}/{:?}",
                ms.first(),
                ms.get(ms.len() / 2),
                ms.last()
            );
            let proven = now.summary["window_posts_accepted"] - accepted_before;
            assert!(
                proven >= 2 * deadlines_used,
                "{prover}: {proven} WindowPoSts accepted in two periods for {deadlines_used} deadlines\n{}\n{}",
                m.logs(),
                other_logs()
            );
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The `ms` of every `WindowPoSt proven and verified` line in `logs`.
fn proof_millis(logs: &str) -> Vec<u64> {
    logs.lines()
        .filter(|l| l.contains("WindowPoSt proven and verified"))
        .filter_map(|l| {
            l.split(" ms=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// CPU time (user + system clock ticks) a process used so far; 0 when it is gone.
fn cpu_ticks(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let fields: Vec<u64> = s
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|f| f.parse().ok())
                .collect();
            Some(fields.iter().sum())
        })
        .unwrap_or(0)
}

/// Since the chain summary `before`, the devnet recorded (waiting up to 300 more epochs) a
/// block won by `m`'s miner with a WinningPoSt that verified, and none rejected.
fn assert_blocks_won(m: &TestManager, before: &std::collections::BTreeMap<String, u64>) {
    let c = m.client();
    let start = block_on(DamoclesApiClient::chain_head(&c))
        .expect("head")
        .head
        .epoch;
    loop {
        let now = block_on(DamoclesApiClient::chain_head(&c)).expect("head");
        let delta = |k: &str| now.summary[k] - before.get(k).copied().unwrap_or(0);
        assert_eq!(delta("blocks_rejected"), 0, "{}", m.logs());
        if delta("blocks_won") >= 1 {
            break;
        }
        assert!(
            now.head.epoch < start + 300,
            "no block won; {} missed\n{}",
            delta("blocks_missed"),
            m.logs()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(m.logs().contains("WinningPoSt submitted"), "{}", m.logs());
}

/// Waits (at most `epochs` epochs) until the miner's faulty sectors satisfy `done`, checking
/// each time that the sectors not faulty keep their power; answers the faulty sectors.
fn wait_faults(m: &TestManager, done: impl Fn(&[u64]) -> bool, epochs: i64) -> Vec<u64> {
    let c = m.client();
    let start = block_on(DamoclesApiClient::chain_head(&c))
        .expect("head")
        .head
        .epoch;
    loop {
        let before = block_on(DamoclesApiClient::chain_miner(&c, MINER)).expect("miner");
        let chain = block_on(DamoclesApiClient::chain_sectors(&c, MINER)).expect("chain");
        let miner = block_on(DamoclesApiClient::chain_miner(&c, MINER)).expect("miner");
        // Compared only when no block came between the reads.
        if before.deadline.current_epoch == miner.deadline.current_epoch {
            assert_eq!(
                miner.power.raw_byte_power,
                2048 * (chain.active.len() - chain.faulty.len()) as u64,
                "healthy sectors keep their power: {:?}",
                miner.power
            );
        }
        if done(&chain.faulty) {
            return chain.faulty;
        }
        assert!(
            miner.deadline.current_epoch < start + epochs,
            "faulty sectors {:?} after {epochs} epochs\n{}",
            chain.faulty,
            m.logs()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Calls the worker's control server.
fn control(w: &TestWorker, method: &str, params: serde_json::Value) -> serde_json::Value {
    let url = format!("http://{}/", w.addr.expect("worker started"));
    let (status, body) = crate::common::raw_call(&url, Some(&w.admin_token()), method, params);
    assert_eq!(status, 200, "{method}: {body}");
    body["result"].clone()
}

#[test]
fn a_power_cut_of_the_worker_in_each_state_and_a_killed_processor_child_lose_no_sector() {
    vc_processors::builtin::params::ensure_test_params(
        &vc_processors::builtin::params::ParamKind::ALL,
    )
    .expect("params");
    let mut m = TestManager::with_config(|c| c.miners[0].sector.max_number = Some(1));
    m.start();
    // The worker reports each state after running its handler, with the next event only in
    // memory: holding back the report of state S and cutting the worker's power then leaves
    // the record in S, with only what was made durable of the files of the steps before it;
    // the restarted worker must run S's handler again, on those files.
    const REPORTED: [&str; 9] = [
        "PieceAdded",
        "TreeDBuilt",
        "TicketAssigned",
        "PC1Done",
        "PC2Done",
        "PCSubmitted",
        "PCLanded",
        "Persisted",
        "SeedAssigned",
    ];
    let proxy = StallProxy::start(format!("http://{}/rpc/v0", m.addr.expect("manager")), |v| {
        if v["method"] != "Venus.ReportState" {
            return None;
        }
        let next = v["params"][1]["StateChange"]["Next"].as_str()?;
        REPORTED
            .contains(&next)
            .then(|| (next.to_string(), Action::Stall))
    });
    // C2 runs in an external `damocles-worker processor c2` child.
    let mut w = TestWorker::new_via(
        &m,
        proxy.addr,
        &m.dir.path().join("worker"),
        1,
        "\n[[processors.c2]]\nauto_restart = true\n",
    );
    // The sealing store's files and the persist store; the store's RocksDB (`meta/`) keeps
    // its own guarantees with the synced writes of every record.
    let power = crate::powercut::PowerCut::new(
        &m.dir.path().join("powercut"),
        vec![w.dir.join("t0").join("data"), m.home.join("persist")],
    );
    w.env = power.env();
    w.start();
    let mut undone_in: Vec<(String, crate::powercut::Undone)> = Vec::new();
    let mut cut = |w: &mut TestWorker, state: &str| {
        w.kill();
        undone_in.push((state.to_string(), power.cut()));
        w.start();
    };
    let mut killed_in: Vec<String> = Vec::new();
    let mut child_killed = None;
    let c = m.client();
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the sector did not finish; killed in {killed_in:?}\n{}\n{}",
            w.logs(),
            m.logs()
        );
        if let Ok(state) = proxy.stalled.recv_timeout(Duration::from_millis(50)) {
            cut(&mut w, &state);
            killed_in.push(state);
            continue;
        }
        let finished = block_on(SealerCliApiClient::list_sectors(
            &c,
            SectorWorkerState::Offline,
            SectorJob::All,
        ))
        .expect("offline");
        if !finished.is_empty() {
            assert!(finished[0].finalized && finished[0].abort_reason.is_empty());
            break;
        }
        if killed_in.iter().any(|s| s == "C1Done") {
            continue;
        }
        // C1Done: its handler runs C2 in the child. Kill the child mid-task, then the worker.
        let t = control(&w, "VenusWorker.WorkerList", serde_json::json!([]))[0].clone();
        let proc = t["thread_state"]["proc"].as_str().unwrap_or_default();
        if t["job_state"] != "C1Done" || !proc.starts_with("ext(pid: ") {
            continue;
        }
        let pid: i32 = proc
            .trim_start_matches("ext(pid: ")
            .trim_end_matches(')')
            .parse()
            .expect("pid");
        match child_killed {
            None => {
                std::thread::sleep(Duration::from_secs(1));
                // SAFETY: signalling a process this test's worker started.
                assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
                child_killed = Some(pid);
                // The task fails (a temporary failure) before anything else happens here.
                let deadline = Instant::now() + Duration::from_secs(60);
                while !w.logs().contains("in flight") {
                    assert!(
                        Instant::now() < deadline,
                        "the killed child's task did not fail\n{}",
                        w.logs()
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
            // Still the killed child in the thread's view.
            Some(killed) if killed == pid => continue,
            Some(_) => {}
        }
        // The retried C2 runs in the restarted child: now cut the worker's power.
        cut(&mut w, "C1Done");
        killed_in.push("C1Done".into());
    }
    let mut want: Vec<String> = REPORTED.map(String::from).to_vec();
    want.push("C1Done".into());
    assert_eq!(killed_in, want, "a power cut in every state");
    // What the cuts took: never a file a recorded step produced (else a step would have run
    // on missing data and the sector would not have finished with a verified proof).
    let undone: Vec<String> = undone_in
        .iter()
        .map(|(s, u)| format!("{s}: removed {:?}, emptied {:?}", u.removed, u.emptied))
        .collect();
    eprintln!("power cuts:\n{}", undone.join("\n"));
    let pid = child_killed.expect("the c2 child was killed");
    let logs = w.logs();
    assert!(
        logs.contains(&format!("c2: processor (pid {pid})")) && logs.contains("in flight"),
        "the killed child's task fails with a clear error:\n{logs}"
    );
    let chain = block_on(DamoclesApiClient::chain_sectors(&c, MINER)).expect("chain");
    assert_eq!(chain.active.len(), 1);
    assert!(chain.active[0].proof_verified);
}

#[test]
fn a_permanent_failure_pauses_until_resume_and_a_rejected_sector_is_aborted_for_the_next() {
    let mut m = TestManager::with_config(|c| c.miners[0].sector.max_number = Some(2));
    m.start();
    // The first PreCommit of sector 1 is answered "mismatched" (Permanent: the thread pauses),
    // the second "rejected" (Abort: the sector is dropped and the thread takes sector 2).
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let proxy = StallProxy::start(
        format!("http://{}/rpc/v0", m.addr.expect("manager")),
        move |v| {
            if v["method"] != "Venus.SubmitPreCommit" || v["params"][0]["ID"]["Number"] != 1 {
                return None;
            }
            match calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 => Some((
                    "mismatched".into(),
                    Action::Reply(serde_json::json!({"Res": 3, "Desc": "test: mismatched"})),
                )),
                1 => Some((
                    "rejected".into(),
                    Action::Reply(serde_json::json!({"Res": 4, "Desc": "test: rejected"})),
                )),
                _ => None,
            }
        },
    );
    let mut w = TestWorker::new_via(&m, proxy.addr, &m.dir.path().join("worker"), 1, "");
    w.start();
    assert_eq!(
        proxy
            .stalled
            .recv_timeout(Duration::from_secs(120))
            .expect("the PreCommit was submitted"),
        "mismatched"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let paused = loop {
        let t = control(&w, "VenusWorker.WorkerList", serde_json::json!([]))[0].clone();
        if t["thread_state"]["state"] == "Paused" {
            break t;
        }
        assert!(Instant::now() < deadline, "never paused: {t}\n{}", w.logs());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(paused["job_state"], "PC2Done");
    let last = paused["last_error"].as_str().expect("last error");
    assert!(
        last.starts_with("permanent:") && last.contains("test: mismatched"),
        "{last}"
    );
    let listed = ok_text(&w.control(&["list"]));
    assert!(
        listed.contains("Paused(") && listed.contains("test: mismatched"),
        "{listed}"
    );

    // Resume: the PreCommit goes again and is rejected; the sector is aborted and the thread
    // goes on with sector 2.
    let out = ok_text(&w.control(&["resume", "--index", "0"]));
    assert!(out.contains("true"), "{out}");
    assert_eq!(
        proxy
            .stalled
            .recv_timeout(Duration::from_secs(60))
            .expect("submitted again"),
        "rejected"
    );
    let c = m.client();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let t = control(&w, "VenusWorker.WorkerList", serde_json::json!([]))[0].clone();
        if t["job_id"] == format!("s-t0{MINER}-2") && t["job_state"] != "Allocated" {
            assert_eq!(t["last_error"], serde_json::Value::Null, "{t}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sector 2 never started: {t}\n{}",
            w.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let offline = block_on(SealerCliApiClient::list_sectors(
        &c,
        SectorWorkerState::Offline,
        SectorJob::All,
    ))
    .expect("offline");
    assert_eq!(offline.len(), 1, "{offline:?}");
    assert_eq!(offline[0].id.number, 1);
    assert!(
        offline[0].abort_reason.contains("test: rejected"),
        "the manager records why: {:?}",
        offline[0]
    );
    assert!(
        !w.dir
            .join("t0")
            .join("data")
            .join("sealed")
            .join(format!("s-t0{MINER}-1"))
            .exists(),
        "sector 1's files are wiped"
    );
}

#[test]
fn every_stage_in_an_external_child_seals_a_sector_into_the_s3_plugin_store() {
    vc_processors::builtin::params::ensure_test_params(
        &vc_processors::builtin::params::ParamKind::ALL,
    )
    .expect("params");
    let server = S3Server::start();
    let mut m = one_sector_manager_with_s3_store(&server, short_proving_periods);
    m.start();
    let mut extra = String::new();
    for stage in ["add_pieces", "tree_d", "pc1", "pc2", "c2", "transfer"] {
        extra.push_str(&format!("\n[[processors.{stage}]]\nconcurrent = 1\n"));
    }
    let worker_token = m.token(damocles_auth::Perm::Write);
    let mut w = TestWorker::with_attached(
        m.addr.expect("manager"),
        &worker_token,
        &m.dir.path().join("worker"),
        1,
        &s3_attached("s3"),
        &extra,
    );
    w.start();
    let c = m.client();
    let started = Instant::now();
    let mut procs = std::collections::BTreeSet::new();
    loop {
        let t = control(&w, "VenusWorker.WorkerList", serde_json::json!([]))[0].clone();
        if let Some(p) = t["thread_state"]["proc"].as_str() {
            procs.insert(format!(
                "{} {}",
                t["job_state"].as_str().unwrap_or_default(),
                p
            ));
        }
        let offline = block_on(SealerCliApiClient::list_sectors(
            &c,
            SectorWorkerState::Offline,
            SectorJob::All,
        ))
        .expect("offline");
        if !offline.is_empty() {
            assert!(offline[0].finalized && offline[0].abort_reason.is_empty());
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "not sealed in 10 minutes\n{}",
            w.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // C1 always runs in-process (worker-spec §1.1); every configured stage ran in a child.
    assert!(
        procs
            .iter()
            .all(|p| !p.contains("builtin") || p.ends_with("builtin c1")),
        "no configured stage ran in-process: {procs:?}"
    );
    assert!(
        procs.iter().any(|p| p.starts_with("C1Done ext(pid: ")),
        "C2 ran in a child: {procs:?}"
    );
    let logs = w.logs();
    for stage in ["add_pieces", "tree_d", "pc1", "pc2", "c2", "transfer"] {
        assert!(
            logs.contains(&format!("kind=\"{stage}\"")),
            "{stage} child started:\n{logs}"
        );
    }
    let chain = block_on(DamoclesApiClient::chain_sectors(&c, MINER)).expect("chain");
    assert_eq!(chain.active.len(), 1);
    assert!(chain.active[0].proof_verified);
    // The files went into the bucket through the plugin, nowhere else.
    let objects = sector_objects(&server, 1);
    let mut expected = vec![format!("sealed/s-t0{MINER}-1")];
    for f in vc_processors::builtin::proofs::cached_filenames_for_sector(
        vc_processors::builtin::proofs::api::RegisteredSealProof::StackedDrg2KiBV1_1,
    ) {
        expected.push(format!("cache/s-t0{MINER}-1/{f}"));
    }
    expected.sort();
    assert_eq!(objects, expected);
    let sealed = std::fs::metadata(
        server
            .root
            .join(BUCKET)
            .join(format!("sectors/sealed/s-t0{MINER}-1")),
    )
    .expect("sealed object");
    assert_eq!(sealed.len(), 2048);
    assert!(!m
        .home
        .join(format!("persist/sealed/s-t0{MINER}-1"))
        .exists());
    let find = ok_text(&m.util(&["storage", "find", &MINER.to_string(), "1"]));
    assert!(find.contains("sealed file: s3"), "{find}");

    // WindowPoSt of the sector in S3: the manager's own prover fetches what the challenges
    // read into a scratch directory, for two proving periods; then the wdpost thread of a
    // worker with the same S3 store does it (`--worker-prover`).
    w.kill();
    m.stop();
    m.run_args = vec!["--poster".into()];
    let manager = m.start();
    proven_for_two_periods(&m, "builtin prover from S3", &String::new, &mut |_| {});
    let logs = m.logs();
    assert!(
        logs.contains("fetched what the proof reads of the sectors in object stores"),
        "{logs}"
    );
    m.stop();
    m.run_args = vec!["--poster".into(), "--worker-prover".into()];
    m.start();
    let worker_token = m.token(damocles_auth::Perm::Write);
    let mut prover = TestWorker::with_attached(
        manager,
        &worker_token,
        &m.dir.path().join("wdpost-worker"),
        0,
        &s3_attached("s3"),
        "\n[[sealing_thread]]\nplan = \"wdpost\"\n",
    );
    prover.start();
    proven_for_two_periods(&m, "worker-prover from S3", &|| prover.logs(), &mut |_| {});
    let logs = prover.logs();
    assert!(
        logs.contains("fetched what the proof reads of the sectors in object stores")
            && logs.contains("WindowPoSt job finished"),
        "{logs}"
    );
}

/// One scrape of a Prometheus text endpoint.
fn scrape(addr: std::net::SocketAddr, token: Option<&str>) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the exporter");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(s, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n{auth}\r\n").expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    out
}

/// The value of the first series of `name` whose labels contain every `labels` pair.
fn series(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|p| l.contains(p)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn a_worker_publishes_its_manager_calls_and_limits_to_prometheus() {
    let mut m = TestManager::with_config(|c| c.miners[0].sector.max_number = Some(1));
    m.start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let extra = format!(
        "\n[metrics]\nenable = true\nhttp_listen = \"{metrics}\"\n\n[processors.limitation.concurrent]\npc1 = 1\n"
    );
    let mut w = TestWorker::new(&m, &m.dir.path().join("worker"), 1, &extra);
    w.start();
    let started = Instant::now();
    let text = loop {
        let text = scrape(metrics, None);
        if series(&text, "rpc_call", &["method=\"assign_ticket\""]).is_some() {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no ticket was assigned:\n{text}\n{}",
            w.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let worker = "worker_name=\"test-worker\"";
    // damocles' series (worker-spec §7): Rust method names, the worker's global labels.
    assert_eq!(
        series(&text, "rpc_call", &["method=\"allocate_sector\"", worker]),
        Some(1.0),
        "{text}"
    );
    assert!(
        series(
            &text,
            "rpc_timing",
            &["method=\"report_state\"", "quantile=\"0.5\""]
        )
        .is_some_and(|s| s > 0.0 && s < 5.0),
        "{text}"
    );
    assert!(text.contains("worker_ip=\"127.0.0.1\""), "{text}");
    assert_eq!(
        series(&text, "rpc_error", &["method=\"allocate_sector\""]),
        None
    );
    // Our additions: the limits, with their size.
    assert_eq!(
        series(
            &text,
            "damocles_worker_limit_capacity",
            &["limit=\"stage-pc1\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        series(
            &text,
            "damocles_worker_limit_in_use",
            &["limit=\"stage-pc1\""]
        )
        .is_some(),
        "{text}"
    );
}

/// The nice values of the threads of process `pid` whose name starts with `prefix`.
fn thread_nices(pid: u32, prefix: &str) -> Vec<i32> {
    vc_processors::sys::thread_nices(pid)
        .into_iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(_, n)| n)
        .collect()
}

/// How many of the worker's threads are running C2 now (state `C1Done` with a processor).
fn threads_in_c2(w: &TestWorker) -> usize {
    control(w, "VenusWorker.WorkerList", serde_json::json!([]))
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter(|t| t["job_state"] == "C1Done" && t["thread_state"]["proc"].is_string())
                .count()
        })
        .unwrap_or(0)
}

/// PoSt wins over sealing: a worker with two threads seals while the manager proves the
/// sectors it sealed first, in 8-epoch (8 s) deadlines. On this 2-core machine a C2 of 2 KiB
/// takes about a minute of both cores and a WindowPoSt of one partition about a second of
/// them, so two C2s at once leave a proof at the default priority a fraction of the CPU; with
/// `[processors.priority]` (sealing at nice 5, the default) the proof gets three quarters
/// of it and is made well within the 8 s. Every deadline of two proving periods, watched
/// while both threads are in C2, must be proven, and the margin metric must show each one
/// submitted with more than half its window left (the default `MarginWarnRatio`).
#[test]
fn window_post_is_proven_in_time_while_two_c2s_keep_both_cores_busy() {
    vc_processors::builtin::params::ensure_test_params(
        &vc_processors::builtin::params::ParamKind::ALL,
    )
    .expect("params");
    // Two sectors to prove, then six more whose C2s run, two at a time, while they are (the
    // test ends after the watch, whatever is left to seal).
    let mut m = TestManager::with_config(|c| {
        c.miners[0].sector.max_number = Some(8);
        // No elections: the load under test is sealing, not WinningPoSt.
        c.miners[0].proof.enabled = false;
        short_proving_periods(c);
    });
    m.run_args = vec!["--poster".into()];
    m.start();
    let mut w = TestWorker::new(&m, &m.dir.path().join("worker"), 2, "");
    w.start();
    let c = m.client();
    let started = Instant::now();
    while block_on(DamoclesApiClient::chain_sectors(&c, MINER))
        .expect("chain")
        .active
        .len()
        < 2
    {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "two sectors were not active in 10 minutes\n{}\n{}",
            w.logs(),
            m.logs()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // The next two sectors reach C2 on both threads.
    let started = Instant::now();
    while threads_in_c2(&w) < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the two threads never ran C2 together\n{}",
            w.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let worker_pid = w.child.as_ref().expect("worker").id();
    let nices = thread_nices(worker_pid, "rayon-");
    assert!(
        !nices.is_empty() && nices.iter().all(|&n| n == 5),
        "the worker's proof pool runs at the sealing nice: {nices:?}"
    );
    assert!(
        w.logs()
            .contains("in-process proofs run at the sealing priority"),
        "{}",
        w.logs()
    );

    let watched: Vec<usize> = block_on(DamoclesApiClient::chain_deadlines(&c, MINER))
        .expect("deadlines")
        .iter()
        .enumerate()
        .filter(|(_, d)| d.iter().any(|p| !p.all_sectors.is_empty()))
        .map(|(i, _)| i)
        .collect();
    let logs_before = m.logs().len();
    let (mut polls, mut both_in_c2) = (0u32, 0u32);
    proven_for_two_periods(
        &m,
        "builtin prover beside two C2s",
        &|| w.logs(),
        &mut |_| {
            polls += 1;
            if threads_in_c2(&w) == 2 {
                both_in_c2 += 1;
            }
        },
    );
    eprintln!("both threads were in C2 in {both_in_c2} of {polls} polls");
    assert!(
        both_in_c2 * 2 >= polls,
        "two C2s ran for most of the two periods: {both_in_c2} of {polls} polls"
    );
    let all = m.logs();
    let logs = &all[logs_before..];
    assert!(
        !logs.contains("deadline closed before its proofs were submitted")
            && !logs.contains("margin under MarginWarnRatio"),
        "{logs}"
    );

    // The margins of the deadlines that held sectors when the watch began: each was submitted
    // in both periods (at least two samples), none with half its window or less left (the
    // `le="0.5"` bucket is empty), and the last one is above that too.
    // The manager's /metrics needs a `read` token.
    let metrics = scrape(
        m.addr.expect("manager"),
        Some(&m.token(damocles_auth::Perm::Read)),
    );
    for i in &watched {
        let deadline = format!("deadline=\"{i}\"");
        let count = series(
            &metrics,
            "damocles_manager_post_submit_margin_count",
            &[&deadline],
        )
        .unwrap_or_else(|| panic!("no margin for deadline {i}:\n{metrics}"));
        let thin = series(
            &metrics,
            "damocles_manager_post_submit_margin_bucket",
            &[&deadline, "le=\"0.5\""],
        )
        .expect("bucket");
        let last = series(
            &metrics,
            "damocles_manager_post_submit_margin_ratio",
            &[&deadline],
        )
        .expect("gauge");
        eprintln!(
            "deadline {i}: {count} submits, {thin} with a margin of 0.5 or less, last {last:.2}"
        );
        assert!(count >= 2.0, "deadline {i}: {count} submits\n{metrics}");
        assert_eq!(thin, 0.0, "deadline {i}: thin margins\n{metrics}");
        assert!(last > 0.5, "deadline {i}: last margin {last}\n{metrics}");
    }
}
