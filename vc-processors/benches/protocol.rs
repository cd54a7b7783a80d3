//! Overhead of the processor protocol: a trivial task (`sqr`) through a child process
//! (`vc-processors-fixture`, driven by the producer) against a direct in-process call.
//!
//! Prints latency percentiles (sequential calls) and throughput (concurrent callers), with the
//! ratios child / direct. Run with `cargo bench -p vc-processors`; `VC_BENCH_REQUESTS` sets the
//! number of sequential requests (default 20000).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use vc_processors::{Processor, Producer, ProducerConfig, Task};

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

/// The same work as the fixture's `sqr`, in this process.
struct Direct;

impl Processor<Op> for Direct {
    fn name(&self) -> String {
        "direct".into()
    }
    fn process(&self, task: Op) -> anyhow::Result<Value> {
        Ok(Value::from(task.n * task.n))
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

struct Latency {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn latency(p: &dyn Processor<Op>, n: usize) -> Latency {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let task = Op {
            op: "sqr".into(),
            n: i,
            arg: String::new(),
        };
        let t = Instant::now();
        let out = p.process(task).expect("sqr");
        samples.push(t.elapsed());
        assert_eq!(out, Value::from(i * i));
    }
    let total: Duration = samples.iter().sum();
    samples.sort();
    Latency {
        p50: percentile(&samples, 0.50),
        p99: percentile(&samples, 0.99),
        mean: total / n as u32,
    }
}

fn throughput(p: Arc<dyn Processor<Op>>, callers: usize, window: Duration) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + window;
    let start = Instant::now();
    let handles: Vec<_> = (0..callers)
        .map(|_| {
            let p = p.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let out = p
                        .process(Op {
                            op: "sqr".into(),
                            n: i,
                            arg: String::new(),
                        })
                        .expect("sqr");
                    assert_eq!(out, Value::from(i * i));
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("caller");
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn us(d: Duration) -> String {
    if d < Duration::from_micros(10) {
        format!("{} ns", d.as_nanos())
    } else {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: keep it short then.
    let benching = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("VC_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 20_000 } else { 200 });
    let window = if benching {
        Duration::from_secs(3)
    } else {
        Duration::from_millis(200)
    };

    let mut cfg = ProducerConfig::new("fixture", env!("CARGO_BIN_EXE_vc-processors-fixture"));
    cfg.envs.push(("RUST_LOG".into(), "warn".into()));
    let child: Arc<dyn Processor<Op>> =
        Arc::new(Producer::<Op>::start(cfg).expect("start the fixture child"));
    let direct: Arc<dyn Processor<Op>> = Arc::new(Direct);

    // Warm up both paths.
    latency(&*direct, 100.min(n));
    latency(&*child, 100.min(n));

    let d = latency(&*direct, n);
    let c = latency(&*child, n);
    println!("processor protocol overhead: trivial task, {n} sequential requests");
    println!("{:<28} {:>12} {:>12} {:>12}", "", "p50", "p99", "mean");
    println!(
        "{:<28} {:>12} {:>12} {:>12}",
        "direct in-process call",
        us(d.p50),
        us(d.p99),
        us(d.mean)
    );
    println!(
        "{:<28} {:>12} {:>12} {:>12}",
        "child process (producer)",
        us(c.p50),
        us(c.p99),
        us(c.mean)
    );
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-12);
    println!(
        "{:<28} {:>11.0}x {:>11.0}x {:>11.0}x",
        "ratio child / direct",
        ratio(c.p50, d.p50),
        ratio(c.p99, d.p99),
        ratio(c.mean, d.mean)
    );

    println!();
    println!("throughput over {window:?} per case (requests/s)");
    println!(
        "{:<10} {:>16} {:>16} {:>12}",
        "callers", "direct", "child", "child/direct"
    );
    for callers in [1, 4, 16, 64] {
        let td = throughput(direct.clone(), callers, window);
        let tc = throughput(child.clone(), callers, window);
        println!(
            "{:<10} {:>16.0} {:>16.0} {:>12.5}",
            callers,
            td,
            tc,
            tc / td
        );
    }
}
