//! A deliberately misbehaving processor for the protocol tests (stage `fixture`).
//!
//! Start-up flags: `--ready-delay-ms N` (slow start), `--no-ready` (never ready),
//! `--wrong-ready` (prints a different first line), `--exit-before-ready CODE`,
//! `--fail-start-if-exists PATH` (exits with 9 before the ready line while PATH exists),
//! `--max-concurrent N`.
//!
//! Each task is `{"op": …, "n": …}`; see [`run_op`] for the operations.

use std::io::Write;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use vc_processors::{ConsumerOptions, Processor, Task};

#[derive(Debug, Serialize, Deserialize)]
struct FixtureTask {
    op: String,
    #[serde(default)]
    n: u64,
    #[serde(default)]
    arg: String,
}

impl Task for FixtureTask {
    const STAGE: &'static str = "fixture";
    type Output = Value;
}

struct Fixture;

fn raw_stdout(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

fn hang() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// - `sqr`: n², after `arg` milliseconds if given;
/// - `sleep`: sleeps n ms, returns n;
/// - `hang`: never answers;
/// - `exit`: the process exits with code n;
/// - `garble`: writes a cut-short response for request id n, then never answers;
/// - `garble-noid`: writes a line with no id, then answers n;
/// - `non-utf8`: writes a response for request id n with invalid UTF-8, then never answers;
/// - `close-stdout`: closes stdout and stays alive;
/// - `wrong-type`: answers a string where the caller expects a number (the caller decides);
/// - `panic` / `err`: panics / fails;
/// - `env`: the value of the environment variable `arg`, or null;
/// - `cpus`: the `Cpus_allowed_list` of this process;
/// - `flood`: starts a response for request id n, then writes `arg` bytes (a number) without a
///   newline, then never answers.
fn run_op(task: FixtureTask) -> anyhow::Result<Value> {
    match task.op.as_str() {
        "sqr" => {
            if let Ok(ms) = task.arg.parse::<u64>() {
                std::thread::sleep(Duration::from_millis(ms));
            }
            Ok(Value::from(task.n * task.n))
        }
        "sleep" => {
            std::thread::sleep(Duration::from_millis(task.n));
            Ok(Value::from(task.n))
        }
        "hang" => hang(),
        "exit" => std::process::exit(task.n as i32),
        "garble" => {
            raw_stdout(format!("{{\"id\":{},\"err_msg\":nul\n", task.n).as_bytes());
            hang()
        }
        "garble-noid" => {
            raw_stdout(b"this line is not json\n");
            Ok(Value::from(task.n))
        }
        "non-utf8" => {
            let mut line = format!("{{\"id\":{},\"err_msg\":\"", task.n).into_bytes();
            line.extend_from_slice(b"\xff\xfe\",\"output\":null}\n");
            raw_stdout(&line);
            hang()
        }
        "close-stdout" => {
            // SAFETY: closing our own stdout descriptor; nothing else uses it afterwards.
            unsafe { libc::close(1) };
            hang()
        }
        "flood" => {
            let total: u64 = task.arg.parse().unwrap_or(0);
            raw_stdout(format!("{{\"id\":{},\"output\":\"", task.n).as_bytes());
            let chunk = vec![b'x'; 1 << 20];
            let mut out = std::io::stdout().lock();
            let mut left = total;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                if out.write_all(&chunk[..n]).is_err() {
                    // The parent closed the pipe: it stopped reading, as it should.
                    std::process::exit(3);
                }
                left -= n as u64;
            }
            let _ = out.flush();
            hang()
        }
        "wrong-type" => Ok(Value::from("not a number")),
        "panic" => panic!("fixture panic {}", task.n),
        "err" => anyhow::bail!("fixture error {}", task.n),
        "env" => Ok(std::env::var(&task.arg)
            .map(Value::from)
            .unwrap_or(Value::Null)),
        "cpus" => {
            let status = std::fs::read_to_string("/proc/self/status")?;
            let line = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .unwrap_or("")
                .trim()
                .to_string();
            Ok(Value::from(line))
        }
        other => anyhow::bail!("unknown op {other:?}"),
    }
}

impl Processor<FixtureTask> for Fixture {
    fn name(&self) -> String {
        "fixture".to_string()
    }

    fn process(&self, task: FixtureTask) -> anyhow::Result<Value> {
        run_op(task)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = ConsumerOptions::default();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--ready-delay-ms" => {
                std::thread::sleep(Duration::from_millis(value.parse().unwrap_or(0)));
                i += 1;
            }
            "--no-ready" => hang(),
            "--wrong-ready" => {
                raw_stdout(b"fixture processor not ready\n");
                hang();
            }
            "--exit-before-ready" => std::process::exit(value.parse().unwrap_or(1)),
            "--fail-start-if-exists" => {
                if std::path::Path::new(&value).exists() {
                    std::process::exit(9);
                }
                i += 1;
            }
            "--max-concurrent" => {
                opts.max_concurrent = value.parse().unwrap_or(1);
                i += 1;
            }
            other => {
                eprintln!("vc-processors-fixture: unknown argument {other:?}");
                std::process::exit(2);
            }
        }
        i += 1;
    }
    if let Err(e) = vc_processors::run_consumer::<FixtureTask, _>(Fixture, opts) {
        eprintln!("vc-processors-fixture: {e}");
        std::process::exit(1);
    }
}
