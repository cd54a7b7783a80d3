//! The processor protocol through real child processes (the `vc-processors-fixture` binary).
//! Every failure path ends in bounded time.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use vc_processors::producer::{Backoff, CgroupPlacement, ProducerConfig, StderrMode};
use vc_processors::{Producer, ProducerBuilder, ProducerError, Task};

const FIXTURE: &str = env!("CARGO_BIN_EXE_vc-processors-fixture");

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Op {
    op: String,
    n: u64,
    arg: String,
}

impl Task for Op {
    const STAGE: &'static str = "fixture";
    type Output = Value;
}

/// Same stage, but the caller insists on a number.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct NumOp {
    op: String,
    n: u64,
}

impl Task for NumOp {
    const STAGE: &'static str = "fixture";
    type Output = u64;
}

fn op(op: &str, n: u64) -> Op {
    Op {
        op: op.to_string(),
        n,
        arg: String::new(),
    }
}

fn op_arg(op: &str, n: u64, arg: &str) -> Op {
    Op {
        op: op.to_string(),
        n,
        arg: arg.to_string(),
    }
}

fn config(args: &[&str]) -> ProducerConfig {
    let mut cfg = ProducerConfig::new("fixture", FIXTURE);
    cfg.args = args.iter().map(Into::into).collect();
    cfg.ready_timeout = Duration::from_secs(10);
    cfg.backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(400),
    };
    cfg
}

fn start(args: &[&str]) -> Producer<Op> {
    Producer::start(config(args)).expect("fixture starts")
}

/// Polls `cond` until it holds, failing the test after `limit`.
fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn pid_alive(pid: u32) -> bool {
    // A reaped child has no /proc entry; a zombie would still show "Z".
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.contains(") Z "),
        Err(_) => false,
    }
}

#[test]
fn round_trip_with_responses_out_of_order() {
    let p = start(&[]);
    assert_eq!(p.call(op("sqr", 12)).expect("sqr"), json!(144));
    let slow = {
        let p = p.clone();
        std::thread::spawn(move || p.call(op("sleep", 3000)).expect("slow"))
    };
    wait_for("the slow request", Duration::from_secs(10), || {
        p.in_flight() == 1
    });
    assert_eq!(p.call(op("sleep", 10)).expect("fast"), json!(10));
    assert_eq!(
        p.in_flight(),
        1,
        "the fast answer came back while the slow one was pending"
    );
    assert_eq!(slow.join().expect("join"), json!(3000));
    assert!(p.next_id() >= 4, "ids increase per request");
}

#[test]
fn a_hundred_requests_in_flight_on_one_child() {
    let p = start(&[]);
    let pid = p.child_pid().expect("up");
    let t = Instant::now();
    let handles: Vec<_> = (0..100u64)
        .map(|i| {
            let p = p.clone();
            std::thread::spawn(move || p.call(op_arg("sqr", i, "2000")).expect("sqr"))
        })
        .collect();
    // Each request sleeps 2 s in the child: sample until all 100 are in flight together.
    let mut peak = 0;
    while peak < 100 && !handles.iter().all(|h| h.is_finished()) {
        peak = peak.max(p.in_flight());
        std::thread::sleep(Duration::from_millis(2));
    }
    let outs: Vec<Value> = handles
        .into_iter()
        .map(|h| h.join().expect("join"))
        .collect();
    for (i, out) in outs.iter().enumerate() {
        assert_eq!(*out, json!((i * i) as u64));
    }
    assert_eq!(peak, 100, "all 100 requests were in flight together");
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "processed concurrently (one at a time would take 200 s), took {:?}",
        t.elapsed()
    );
    assert_eq!(p.child_pid(), Some(pid), "one child served them all");
}

#[test]
fn child_exit_mid_task_fails_every_in_flight_request_at_once_then_restarts() {
    let p = start(&[]);
    let pid = p.child_pid().expect("up");
    let hung: Vec<_> = (0..5)
        .map(|_| {
            let p = p.clone();
            std::thread::spawn(move || p.call(op("hang", 0)))
        })
        .collect();
    wait_for("5 hung requests", Duration::from_secs(10), || {
        p.in_flight() == 5
    });
    let t = Instant::now();
    let err = p.call(op("exit", 7)).expect_err("the child exits");
    for h in hung {
        let e = h
            .join()
            .expect("join")
            .expect_err("in-flight request fails");
        assert!(matches!(e, ProducerError::ChildExited { .. }), "{e}");
    }
    assert!(t.elapsed() < Duration::from_secs(5));
    let msg = err.to_string();
    assert!(
        msg.contains("fixture")
            && msg.contains(&format!("pid {pid}"))
            && msg.contains("exit status 7"),
        "{msg}"
    );
    assert_eq!(p.in_flight(), 0);

    let new_pid = p.wait_up(Duration::from_secs(10)).expect("restarted");
    assert_ne!(new_pid, pid);
    assert!(!pid_alive(pid), "the old child was reaped");
    assert_eq!(p.call(op("sqr", 3)).expect("works after restart"), json!(9));
}

#[test]
fn hung_task_times_out_and_the_child_stays_usable() {
    let mut cfg = config(&[]);
    cfg.task_timeout = Some(Duration::from_millis(300));
    let p: Producer<Op> = Producer::start(cfg).expect("start");
    let t = Instant::now();
    let err = p.call(op("hang", 0)).expect_err("times out");
    assert!(matches!(err, ProducerError::Timeout { .. }), "{err}");
    assert!(t.elapsed() >= Duration::from_millis(300) && t.elapsed() < Duration::from_secs(10));
    assert!(err.to_string().contains("within 300ms"), "{err}");
    assert_eq!(p.in_flight(), 0);
    assert_eq!(p.call(op("sqr", 4)).expect("still usable"), json!(16));
}

#[test]
fn garbled_response_with_a_readable_id_fails_that_request() {
    let p = start(&[]);
    let id = p.next_id();
    let t = Instant::now();
    let err = p.call(op("garble", id)).expect_err("garbled");
    assert!(
        matches!(err, ProducerError::MalformedResponse { id: got, .. } if got == id),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(p.call(op("sqr", 5)).expect("next request works"), json!(25));
}

/// This process's resident memory, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

#[test]
fn a_child_writing_2_gib_without_a_newline_costs_the_parent_one_line_and_is_restarted() {
    let mut cfg = config(&[]);
    cfg.max_line = 1 << 20;
    let p = Producer::<Op>::start(cfg).expect("fixture starts");
    let pid = p.child_pid().expect("a child");
    let before = rss();
    let id = p.next_id();
    let t = Instant::now();
    let err = p
        .call(op_arg("flood", id, &(2u64 << 30).to_string()))
        .expect_err("a line over the limit");
    let grew = rss().saturating_sub(before);
    let msg = err.to_string();
    assert!(
        msg.contains("longer than 1048576 bytes") && msg.contains(&pid.to_string()),
        "the error names the limit and the child: {msg}"
    );
    assert!(
        grew < 64 << 20,
        "the parent grew by {grew} bytes reading a 2 GiB line"
    );
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    wait_for("a new child", Duration::from_secs(10), || {
        p.child_pid().is_some_and(|new| new != pid)
    });
    assert_eq!(
        p.call(op("sqr", 7)).expect("the new child works"),
        json!(49)
    );
}

#[test]
fn garbled_line_without_an_id_is_skipped() {
    let p = start(&[]);
    assert_eq!(p.call(op("garble-noid", 11)).expect("answered"), json!(11));
}

#[test]
fn non_utf8_output_fails_its_request_without_killing_the_child() {
    let p = start(&[]);
    let pid = p.child_pid();
    let id = p.next_id();
    let err = p.call(op("non-utf8", id)).expect_err("invalid utf-8");
    assert!(
        matches!(err, ProducerError::MalformedResponse { id: got, .. } if got == id),
        "{err}"
    );
    assert_eq!(p.child_pid(), pid);
    assert_eq!(p.call(op("sqr", 6)).expect("still works"), json!(36));
}

#[test]
fn output_of_the_wrong_type_is_an_error_not_a_hang() {
    let p: Producer<NumOp> = ProducerBuilder::new(FIXTURE, Vec::<String>::new())
        .spawn()
        .expect("start");
    let err = p
        .call(NumOp {
            op: "wrong-type".into(),
            n: 0,
        })
        .expect_err("wrong type");
    assert!(matches!(err, ProducerError::InvalidOutput { .. }), "{err}");
}

#[test]
fn processor_errors_and_panics_come_back_as_failures() {
    let p = start(&[]);
    let err = p.call(op("err", 3)).expect_err("fails");
    assert!(
        matches!(&err, ProducerError::Failed { message, .. } if message.contains("fixture error 3")),
        "{err}"
    );
    let err = p.call(op("panic", 4)).expect_err("panics");
    assert!(
        matches!(&err, ProducerError::Failed { message, .. } if message.contains("panic: fixture panic 4")),
        "{err}"
    );
    assert_eq!(p.call(op("sqr", 2)).expect("child survived"), json!(4));
}

#[test]
fn wrong_ready_line_fails_start_and_kills_the_child() {
    let err = Producer::<Op>::start(config(&["--wrong-ready"]))
        .err()
        .expect("refused");
    match err {
        ProducerError::UnexpectedReadyLine { pid, line, .. } => {
            assert_eq!(line, "fixture processor not ready");
            assert!(!pid_alive(pid), "child {pid} was killed");
        }
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn ready_timeout_kills_the_child() {
    let mut cfg = config(&["--no-ready"]);
    cfg.ready_timeout = Duration::from_millis(300);
    let t = Instant::now();
    let err = Producer::<Op>::start(cfg).err().expect("times out");
    assert!(t.elapsed() < Duration::from_secs(10));
    match err {
        ProducerError::ReadyTimeout { pid, after, .. } => {
            assert_eq!(after, Duration::from_millis(300));
            assert!(!pid_alive(pid), "child {pid} was killed");
        }
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn exit_before_ready_reports_the_status() {
    let err = Producer::<Op>::start(config(&["--exit-before-ready", "4"]))
        .err()
        .expect("fails");
    assert!(
        matches!(&err, ProducerError::ExitedBeforeReady { status, .. } if status.contains("exit status 4")),
        "{err}"
    );
}

#[test]
fn slow_start_within_the_timeout_is_fine() {
    let mut cfg = config(&["--ready-delay-ms", "700"]);
    cfg.ready_timeout = Duration::from_secs(20);
    let t = Instant::now();
    let p: Producer<Op> = Producer::start(cfg).expect("slow start");
    assert!(t.elapsed() >= Duration::from_millis(700));
    assert_eq!(p.call(op("sqr", 7)).expect("works"), json!(49));
}

#[test]
fn restarts_retry_with_backoff_until_the_child_comes_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flag = dir.path().join("fail-start");
    let flag_s = flag.to_str().expect("utf-8 path");
    let p = start(&["--fail-start-if-exists", flag_s]);
    let first = p.child_pid().expect("up");

    // Make every restart fail, then kill the child: the producer keeps trying.
    std::fs::write(&flag, b"").expect("flag");
    let _ = p.call(op("exit", 1));
    let attempts = |msg: &str| -> u64 {
        msg.split("restart attempt ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let mut last = String::new();
    wait_for(
        "three failed restart attempts",
        Duration::from_secs(20),
        || match p.call(op("sqr", 1)) {
            Err(e @ ProducerError::Unavailable { .. }) => {
                last = e.to_string();
                attempts(&last) >= 3
            }
            other => panic!("expected the processor to be down, got {other:?}"),
        },
    );
    assert!(last.contains("exit status 9"), "{last}");

    std::fs::remove_file(&flag).expect("unflag");
    let second = p.wait_up(Duration::from_secs(10)).expect("comes back");
    assert_ne!(second, first);
    assert_eq!(p.call(op("sqr", 8)).expect("works"), json!(64));
}

#[test]
fn calls_fail_fast_with_the_reason_while_the_child_is_down() {
    let mut cfg = config(&[]);
    cfg.backoff = Backoff {
        initial: Duration::from_secs(3),
        max: Duration::from_secs(3),
    };
    let p: Producer<Op> = Producer::start(cfg).expect("start");
    let pid = p.child_pid().expect("up");
    let _ = p.call(op("exit", 5));
    let t = Instant::now();
    let err = p.call(op("sqr", 1)).expect_err("down");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "failed fast, without waiting for the restart"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("pid {pid}"))
            && msg.contains("exit status 5")
            && msg.contains("restarting in"),
        "{msg}"
    );
}

#[test]
fn no_restart_when_auto_restart_is_off() {
    let mut cfg = config(&[]);
    cfg.auto_restart = false;
    let p: Producer<Op> = Producer::start(cfg).expect("start");
    let _ = p.call(op("exit", 2));
    std::thread::sleep(Duration::from_millis(300));
    let err = p.call(op("sqr", 1)).expect_err("stays down");
    assert!(err.to_string().contains("auto_restart is off"), "{err}");
}

#[test]
fn a_child_that_closes_stdout_is_killed_and_its_requests_fail() {
    let p = start(&[]);
    let pid = p.child_pid().expect("up");
    let t = Instant::now();
    let err = p.call(op("close-stdout", 0)).expect_err("stdout closed");
    assert!(matches!(err, ProducerError::ChildExited { .. }), "{err}");
    assert!(
        err.to_string().contains("closed its stdout and was killed"),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(15));
    assert!(!pid_alive(pid));
    p.wait_up(Duration::from_secs(10)).expect("restarted");
    assert_eq!(p.call(op("sqr", 9)).expect("works"), json!(81));
}

#[test]
fn dropping_the_producer_stops_the_child() {
    let p = start(&[]);
    let pid = p.child_pid().expect("up");
    drop(p);
    let t = Instant::now();
    while pid_alive(pid) && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!pid_alive(pid), "child stopped with its producer");
}

#[test]
fn child_environment_follows_the_contract() {
    std::env::set_var("VC_TEST_INHERITED", "from-parent");
    std::env::set_var("VC_TEST_OVERRIDDEN", "from-parent");
    let mut cfg = config(&[]);
    cfg.envs = vec![
        ("VC_TEST_OVERRIDDEN".into(), "from-config".into()),
        ("VC_CG_CPUSET".into(), "0".into()),
    ];
    cfg.numa_preferred = Some(0);
    cfg.cgroup = Some(CgroupPlacement {
        group_name: "vc-test".into(),
        cpuset: "0-1".into(),
        index: 3,
    });
    let p: Producer<Op> = Producer::start(cfg.clone()).expect("start");
    let env = |k: &str| p.call(op_arg("env", 0, k)).expect("env");
    assert_eq!(env("VC_TEST_INHERITED"), json!("from-parent"));
    assert_eq!(
        env("VC_TEST_OVERRIDDEN"),
        json!("from-config"),
        "configured envs win"
    );
    assert_eq!(env("VENUS_WORKER_NUMA_PREFERRED"), json!("0"));
    assert_eq!(
        env("VC_CG_NAME"),
        json!(format!("vc-test/sub-fixture-{}-3", std::process::id()))
    );
    assert_eq!(
        env("VC_CG_CPUSET"),
        json!("0"),
        "configured envs override placement variables"
    );

    cfg.inherit_envs = false;
    cfg.numa_preferred = None;
    cfg.cgroup = None;
    let p: Producer<Op> = Producer::start(cfg).expect("start");
    assert_eq!(
        p.call(op_arg("env", 0, "VC_TEST_INHERITED")).expect("env"),
        Value::Null
    );
    assert_eq!(
        p.call(op_arg("env", 0, "VC_TEST_OVERRIDDEN")).expect("env"),
        json!("from-config")
    );
}

/// The first CPU this process may run on.
fn first_allowed_cpu() -> String {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list")
        .trim()
        .to_string();
    list.split([',', '-']).next().expect("a cpu").to_string()
}

#[test]
fn cpuset_placement_restricts_the_child_even_without_cgroup_rights() {
    let cpu = first_allowed_cpu();
    let mut cfg = config(&[]);
    cfg.cgroup = Some(CgroupPlacement {
        group_name: "vc-test".into(),
        cpuset: cpu.clone(),
        index: 0,
    });
    cfg.numa_preferred = Some(999);
    cfg.stderr = StderrMode::Log;
    let p: Producer<Op> = Producer::start(cfg).expect("starts despite an impossible NUMA node");
    assert_eq!(p.call(op("cpus", 0)).expect("cpus"), json!(cpu));
    // The cgroup made for the child is removed once it is gone.
    let name = format!("vc-test/sub-fixture-{}-0", std::process::id());
    drop(p);
    wait_for(
        "the child's cgroup to be removed",
        Duration::from_secs(15),
        || {
            !std::path::Path::new("/sys/fs/cgroup").join(&name).exists()
                && !std::path::Path::new("/sys/fs/cgroup/cpuset")
                    .join(&name)
                    .exists()
        },
    );
}

/// The nice value of every thread of process `pid`.
fn thread_nices(pid: u32) -> Vec<i64> {
    vc_processors::sys::thread_nices(pid)
        .into_iter()
        .map(|(_, n)| i64::from(n))
        .collect()
}

#[test]
fn a_child_runs_at_its_configured_nice_with_every_thread() {
    let own = vc_processors::sys::thread_nice().expect("nice");
    let want = (own + 7).min(19);
    let mut cfg = config(&[]);
    cfg.nice = Some(want);
    let p: Producer<Op> = Producer::start(cfg).expect("starts");
    // A call makes the consumer's worker threads exist.
    assert_eq!(p.call(op("sqr", 3)).expect("sqr"), json!(9));
    let pid = p.child_pid().expect("pid");
    let nices = thread_nices(pid);
    assert!(!nices.is_empty());
    assert!(
        nices.iter().all(|&n| n == i64::from(want)),
        "every thread of the child at nice {want}: {nices:?}"
    );
    // This process is untouched.
    assert_eq!(vc_processors::sys::thread_nice().expect("nice"), own);
    // Without a setting the child keeps the nice of the thread that started it.
    let plain = start(&[]);
    let pid = plain.child_pid().expect("pid");
    assert!(thread_nices(pid).iter().all(|&n| n == i64::from(own)));
}

/// Drives the fixture by hand, byte for byte, the way damocles' Go producer does: the ready
/// line must be exactly `<stage> processor ready\n` and responses compact single lines.
#[test]
fn consumer_bytes_match_what_damocles_producers_expect() {
    let mut child = Command::new(FIXTURE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("ready");
    assert_eq!(line, "fixture processor ready\n");

    stdin
        .write_all(b"{\"id\":1,\"task\":{\"op\":\"sqr\",\"n\":2}}\n")
        .expect("write");
    stdin
        .write_all(b"{\"id\":2,\"task\":{\"op\":17}}\n")
        .expect("write");
    stdin.write_all(b"\xff\xfe not even json\n").expect("write");
    stdin
        .write_all(b"{\"id\":3,\"task\":{\"op\":\"sleep\",\"n\":200}}\n")
        .expect("write");
    drop(stdin); // EOF: the child must still answer request 3, then exit 0.

    let mut lines = Vec::new();
    for l in stdout.lines() {
        lines.push(l.expect("line"));
    }
    lines.sort();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0], r#"{"id":1,"err_msg":null,"output":4}"#);
    assert!(
        lines[1].starts_with(r#"{"id":2,"err_msg":"invalid fixture request: "#),
        "{}",
        lines[1]
    );
    assert!(lines[1].ends_with(r#","output":null}"#));
    assert_eq!(lines[2], r#"{"id":3,"err_msg":null,"output":200}"#);
    let status = child.wait().expect("wait");
    assert!(status.success(), "clean exit on EOF: {status}");
}

#[test]
fn consumer_concurrency_bound_is_respected() {
    let p: Producer<Op> = Producer::start(config(&["--max-concurrent", "2"])).expect("start");
    let t = Instant::now();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let p = p.clone();
            std::thread::spawn(move || p.call(op("sleep", 300)).expect("sleep"))
        })
        .collect();
    for h in handles {
        h.join().expect("join");
    }
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(600),
        "two at a time: {took:?}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn many_producers_share_nothing() {
    let a = Arc::new(start(&[]));
    let b = Arc::new(start(&[]));
    assert_ne!(a.child_pid(), b.child_pid());
    let _ = a.call(op("exit", 1));
    assert_eq!(b.call(op("sqr", 10)).expect("b unaffected"), json!(100));
}
