//! How close each WindowPoSt came to its deadline, and what was running when it came close.
//!
//! The **margin** of a deadline is the part of its challenge window still left when its proof
//! was submitted: `(close − head) / (close − open)`, 1.0 for a proof sent as the window opens,
//! 0.0 for one that missed it. It is exported per deadline as the gauge
//! `damocles_manager_post_submit_margin_ratio{miner, deadline}` and the histogram
//! [`MARGIN_HISTOGRAM`]`{miner, deadline}` with the buckets [`MARGIN_BUCKETS`]. Under
//! `[Miners.PoSt] MarginWarnRatio` a warning names the deadline, the proof time and what was
//! running: the manager's own proofs in flight ([`begin`]), the load average and the busiest
//! processes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use damocles_manager_api::types::ChainEpoch;

use crate::chain::DeadlineInfo;

/// The histogram of every deadline's margins.
pub const MARGIN_HISTOGRAM: &str = "damocles_manager_post_submit_margin";
/// Its bucket bounds: a count in `le="0.5"` is a deadline submitted with half its window or
/// less left.
pub const MARGIN_BUCKETS: [f64; 7] = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0];

static NEXT: AtomicU64 = AtomicU64::new(0);
static ACTIVE: Mutex<BTreeMap<u64, (String, Instant)>> = Mutex::new(BTreeMap::new());

fn active() -> std::sync::MutexGuard<'static, BTreeMap<u64, (String, Instant)>> {
    ACTIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// A proof this manager is computing; listed in margin warnings until dropped.
#[derive(Debug)]
pub struct Activity(u64);

impl Drop for Activity {
    fn drop(&mut self) {
        active().remove(&self.0);
    }
}

/// Records `what` (for example "WindowPoSt of miner 1000 deadline 3, 2 sectors") as running.
pub fn begin(what: String) -> Activity {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    active().insert(id, (what, Instant::now()));
    Activity(id)
}

/// The margin of `dl` for a proof submitted at `head`, within 0.0..=1.0.
pub fn submit_margin(dl: &DeadlineInfo, head: ChainEpoch) -> f64 {
    let window = (dl.close - dl.open).max(1) as f64;
    ((dl.close - head) as f64 / window).clamp(0.0, 1.0)
}

/// Publishes the margin of `dl` for `miner`.
pub fn record(miner: u64, dl: &DeadlineInfo, margin: f64) {
    let labels = [
        ("miner", miner.to_string()),
        ("deadline", dl.index.to_string()),
    ];
    metrics::gauge!("damocles_manager_post_submit_margin_ratio", &labels).set(margin);
    metrics::histogram!(MARGIN_HISTOGRAM, &labels).record(margin);
}

/// What was running, in one line: this manager's proofs in flight with their age, the load
/// average, and the three processes that used the most CPU over a quarter of a second (Linux
/// `/proc`). Blocks for that quarter second: call it off the async runtime.
pub fn describe_running() -> String {
    let now = Instant::now();
    let own: Vec<String> = active()
        .values()
        .map(|(what, since)| format!("{what} for {:.1}s", (now - *since).as_secs_f64()))
        .collect();
    let own = if own.is_empty() {
        "no other proof of this manager".to_string()
    } else {
        own.join(", ")
    };
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into());
    let busiest = busiest_processes(Duration::from_millis(250), 3);
    let busiest = if busiest.is_empty() {
        "unknown".to_string()
    } else {
        busiest
            .iter()
            .map(|p| format!("{} (pid {}) {:.0}% cpu", p.name, p.pid, p.cpu_percent))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("running: {own}; load average {load}; busiest processes: {busiest}")
}

/// A process and its CPU use over a sample.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessCpu {
    /// Process id.
    pub pid: u32,
    /// Its command name (`comm`).
    pub name: String,
    /// CPU time used over the sample as a percentage of one core.
    pub cpu_percent: f64,
}

/// The `top` processes by CPU time used over `sample`.
pub fn busiest_processes(sample: Duration, top: usize) -> Vec<ProcessCpu> {
    let before = cpu_times();
    let started = Instant::now();
    std::thread::sleep(sample);
    let after = cpu_times();
    let elapsed = started.elapsed().as_secs_f64().max(1e-3);
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut used: Vec<ProcessCpu> = after
        .into_iter()
        .filter_map(|(pid, (name, t))| {
            let t0 = before.get(&pid).map_or(0, |(_, t0)| *t0);
            let delta = t.checked_sub(t0)?;
            (delta > 0).then(|| ProcessCpu {
                pid,
                name,
                cpu_percent: delta as f64 / ticks / elapsed * 100.0,
            })
        })
        .collect();
    used.sort_by(|a, b| b.cpu_percent.total_cmp(&a.cpu_percent));
    used.truncate(top);
    used
}

/// utime + stime (clock ticks) of every process, with its name.
fn cpu_times() -> BTreeMap<u32, (String, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(parsed) = parse_stat(&stat) {
            out.insert(pid, parsed);
        }
    }
    out
}

/// The name and utime + stime of a `/proc/<pid>/stat` line.
fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let (name, rest) = stat[open + 1..].rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 0, utime field 11, stime field 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name.to_string(), utime + stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dl(open: ChainEpoch, close: ChainEpoch) -> DeadlineInfo {
        DeadlineInfo {
            current_epoch: open,
            period_start: open,
            index: 3,
            open,
            close,
            challenge: open - 20,
            fault_cutoff: open - 70,
        }
    }

    #[test]
    fn the_margin_is_the_part_of_the_window_left_at_submission() {
        let d = dl(100, 160);
        assert_eq!(submit_margin(&d, 100), 1.0);
        assert_eq!(submit_margin(&d, 130), 0.5);
        assert_eq!(submit_margin(&d, 157), 0.05);
        assert_eq!(submit_margin(&d, 160), 0.0);
        assert_eq!(submit_margin(&d, 170), 0.0, "a late proof has none");
        assert_eq!(submit_margin(&d, 90), 1.0, "never above the whole window");
    }

    #[test]
    fn running_proofs_and_a_busy_process_are_named() {
        let a = begin("WindowPoSt of miner 1000 deadline 2, 3 sectors".into());
        let b = begin("WinningPoSt of miner 1000 at epoch 7".into());
        drop(b);
        // A child that burns CPU during the sample.
        let mut busy = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .expect("busy loop");
        std::thread::sleep(Duration::from_millis(100));
        let text = describe_running();
        // Other tests may load the machine too: look further down the list for the loop.
        let busiest = busiest_processes(Duration::from_millis(250), 64);
        let _ = busy.kill();
        let _ = busy.wait();
        assert!(
            text.contains("running: WindowPoSt of miner 1000 deadline 2, 3 sectors for "),
            "{text}"
        );
        assert!(
            !text.contains("WinningPoSt"),
            "a finished proof is gone: {text}"
        );
        assert!(text.contains("; load average "), "{text}");
        assert!(text.contains("% cpu"), "{text}");
        let found = busiest
            .iter()
            .find(|p| p.pid == busy.id())
            .unwrap_or_else(|| panic!("the busy loop is listed: {busiest:?}"));
        assert_eq!(found.name, "sh");
        assert!(found.cpu_percent > 20.0, "{found:?}");
        drop(a);
        assert!(!describe_running().contains("deadline 2, 3 sectors"));
    }

    #[test]
    fn stat_lines_with_spaces_and_parentheses_in_the_name_parse() {
        let line = "42 (a (b) c) R 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 1 0";
        assert_eq!(parse_stat(line), Some(("a (b) c".to_string(), 175)));
        assert_eq!(parse_stat("garbage"), None);
    }
}
