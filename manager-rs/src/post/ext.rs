//! ext-prover: WindowPoSt and WinningPoSt computed by child processes configured in
//! `ext-prover.cfg` (manager-spec §4).
//!
//! Each `[[WdPost]]` (`[[WinPost]]`) block is one long-lived child speaking the processor
//! protocol (by default `<dir of damocles-manager>/damocles-worker processor window_post`, or
//! `winning_post`). A request goes to a
//! child with a free slot (`Concurrent`), chosen at random by `Weight` among them; when every
//! child is busy, among all. A child that dies is restarted, and the request it was serving
//! fails, so the runner proves again. Unlike damocles, the weighted choice is fair (each child
//! is picked in proportion to its weight) and a dead child is restarted instead of hanging its
//! callers.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};
use vc_processors::builtin::tasks::{WindowPoSt, WindowPoStOutput, WinningPoSt, WinningPoStOutput};
use vc_processors::producer::StderrMode;
use vc_processors::{Producer, ProducerConfig, Task};

use super::prover::{ProofRequest, WindowProver};
use super::winning::WinningProver;

/// One `[[WdPost]]` or `[[WinPost]]` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExtProverBlock {
    /// Program; unset: `damocles-worker` next to `damocles-manager`.
    pub bin: Option<PathBuf>,
    /// Arguments, used with `Bin` (default `processor <stage>`).
    pub args: Vec<String>,
    /// Added to the manager's environment.
    pub envs: BTreeMap<String, String>,
    /// Requests in flight at once (0: 1).
    pub concurrent: usize,
    /// Choice weight (0: 1).
    pub weight: u32,
    /// Seconds allowed for the ready line (0: 5).
    pub ready_timeout_secs: u64,
}

/// `ext-prover.cfg`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExtProverConfig {
    /// WindowPoSt children.
    #[serde(rename = "WdPost")]
    pub wd_post: Vec<ExtProverBlock>,
    /// WinningPoSt children.
    #[serde(rename = "WinPost")]
    pub win_post: Vec<ExtProverBlock>,
}

impl ExtProverConfig {
    /// Parses the file; unknown keys are errors naming the key.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        crate::config::parse_strict(&text, &path.display().to_string())
    }
}

struct Child<T: Task> {
    producer: Producer<T>,
    weight: u32,
    concurrent: usize,
    in_flight: AtomicUsize,
}

/// The children of one kind of block: `[[WdPost]]` for [`WindowPoSt`], `[[WinPost]]` for
/// [`WinningPoSt`].
pub struct ExtProver<T: Task> {
    children: Vec<Child<T>>,
}

/// The `[[WdPost]]` children.
pub type ExtWindowProver = ExtProver<WindowPoSt>;
/// The `[[WinPost]]` children.
pub type ExtWinningProver = ExtProver<WinningPoSt>;

impl<T: Task> std::fmt::Debug for ExtProver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtProver")
            .field("stage", &T::STAGE)
            .field("children", &self.children.len())
            .finish()
    }
}

/// The config block name of a stage.
fn block_name(stage: &str) -> &'static str {
    if stage == "winning_post" {
        "WinPost"
    } else {
        "WdPost"
    }
}

/// `damocles-worker` beside this executable.
fn default_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the damocles-manager executable")?;
    Ok(exe
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", exe.display()))?
        .join("damocles-worker"))
}

impl<T: Task> ExtProver<T> {
    /// Starts one child per block and waits for their ready lines; any failure is an error
    /// naming the block.
    pub fn start(blocks: &[ExtProverBlock]) -> Result<Self> {
        let stage = T::STAGE;
        let block = block_name(stage);
        if blocks.is_empty() {
            bail!("ext-prover: no [[{block}]] block");
        }
        let mut children = Vec::new();
        for (i, b) in blocks.iter().enumerate() {
            let (bin, args): (PathBuf, Vec<OsString>) = match &b.bin {
                Some(bin) => (
                    bin.clone(),
                    if b.args.is_empty() {
                        vec!["processor".into(), stage.into()]
                    } else {
                        b.args.iter().map(OsString::from).collect()
                    },
                ),
                None => (default_bin()?, vec!["processor".into(), stage.into()]),
            };
            let mut cfg = ProducerConfig::new(stage, &bin);
            cfg.args = args;
            cfg.envs = b
                .envs
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .collect();
            cfg.ready_timeout = Duration::from_secs(if b.ready_timeout_secs == 0 {
                5
            } else {
                b.ready_timeout_secs
            });
            cfg.auto_restart = true;
            cfg.stderr = StderrMode::Log;
            let producer = Producer::<T>::start(cfg)
                .with_context(|| format!("ext-prover {block}.{i}: starting {}", bin.display()))?;
            tracing::info!(kind = block, block = i, bin = %bin.display(), pid = ?producer.child_pid(), "ext-prover child ready");
            children.push(Child {
                producer,
                weight: b.weight.max(1),
                concurrent: b.concurrent.max(1),
                in_flight: AtomicUsize::new(0),
            });
        }
        Ok(ExtProver { children })
    }

    /// The child pids (for tests and logs).
    pub fn pids(&self) -> Vec<Option<u32>> {
        self.children
            .iter()
            .map(|c| c.producer.child_pid())
            .collect()
    }

    fn choose(&self) -> usize {
        let free: Vec<usize> = (0..self.children.len())
            .filter(|&i| {
                let c = &self.children[i];
                c.in_flight.load(Ordering::Relaxed) < c.concurrent
            })
            .collect();
        let candidates = if free.is_empty() {
            (0..self.children.len()).collect()
        } else {
            free
        };
        let weights: Vec<u32> = candidates
            .iter()
            .map(|&i| self.children[i].weight)
            .collect();
        candidates[weighted_index(&weights, &mut rand::thread_rng())]
    }
}

/// Index of a weighted random choice: each entry is picked with probability weight / total.
pub fn weighted_index(weights: &[u32], rng: &mut impl Rng) -> usize {
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    if total == 0 {
        return 0;
    }
    let mut point = rng.gen_range(0..total);
    for (i, w) in weights.iter().enumerate() {
        let w = u64::from(*w);
        if point < w {
            return i;
        }
        point -= w;
    }
    weights.len() - 1
}

impl<T: Task> ExtProver<T> {
    /// Runs one task on a chosen child; blocks.
    fn call(&self, task: T) -> Result<T::Output> {
        let i = self.choose();
        let child = &self.children[i];
        /// Gives the slot back on every way out, panics included.
        struct Slot<'a>(&'a AtomicUsize);
        impl Drop for Slot<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        child.in_flight.fetch_add(1, Ordering::Relaxed);
        let _slot = Slot(&child.in_flight);
        child
            .producer
            .call(task)
            .with_context(|| format!("ext-prover {}.{i}", block_name(T::STAGE)))
    }
}

impl WindowProver for ExtWindowProver {
    fn name(&self) -> String {
        format!("ext-prover ({} children)", self.children.len())
    }

    fn prove(&self, req: ProofRequest) -> Result<WindowPoStOutput> {
        self.call(req.task)
    }
}

impl WinningProver for ExtWinningProver {
    fn name(&self) -> String {
        format!("ext-prover ({} WinPost children)", self.children.len())
    }

    fn prove(&self, task: WinningPoSt) -> Result<WinningPoStOutput> {
        self.call(task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_child_is_chosen_in_proportion_to_its_weight() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let weights = [1, 3, 1];
        let mut counts = [0u32; 3];
        for _ in 0..50_000 {
            counts[weighted_index(&weights, &mut rng)] += 1;
        }
        // Expected 10000, 30000, 10000: the last child is chosen too.
        for (got, want) in counts.iter().zip([10_000u32, 30_000, 10_000]) {
            assert!(got.abs_diff(want) < 1_000, "{counts:?}");
        }
        assert_eq!(weighted_index(&[5], &mut rng), 0);
    }

    #[test]
    fn the_config_file_is_read_with_defaults_and_unknown_keys_named() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("ext-prover.cfg");
        std::fs::write(
            &p,
            "[[WdPost]]\nBin = \"/bin/prover\"\nWeight = 2\n[WdPost.Envs]\nA = \"1\"\n\n[[WinPost]]\n",
        )
        .expect("write");
        let cfg = ExtProverConfig::load(&p).expect("load");
        assert_eq!(cfg.wd_post.len(), 1);
        assert_eq!(cfg.wd_post[0].weight, 2);
        assert_eq!(cfg.wd_post[0].envs["A"], "1");
        assert_eq!(cfg.wd_post[0].concurrent, 0, "0 means 1");
        assert_eq!(cfg.win_post.len(), 1);
        std::fs::write(&p, "[[WdPost]]\nConcurent = 2\n").expect("write");
        let e = format!("{:#}", ExtProverConfig::load(&p).expect_err("unknown"));
        assert!(
            e.contains("WdPost.0.Concurent") || e.contains("Concurent"),
            "{e}"
        );
    }

    #[test]
    fn a_child_that_cannot_start_is_an_error_naming_its_block() {
        let blocks = vec![ExtProverBlock {
            bin: Some("/nonexistent/prover".into()),
            ..Default::default()
        }];
        let e = format!(
            "{:#}",
            ExtWindowProver::start(&blocks).expect_err("no binary")
        );
        assert!(
            e.contains("WdPost.0") && e.contains("/nonexistent/prover"),
            "{e}"
        );
    }
}
