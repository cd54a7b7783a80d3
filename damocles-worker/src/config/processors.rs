//! `[processors]` (§1.10, §6.7): the processor kinds and limit names, the stage limits
//! (`limit`, `[processors.limitation]`), the ext locks, the static tree-d files, the external
//! processor blocks `[[processors.<kind>]]` with their cgroups, and `[processors.priority]`
//! (ours: sealing yields the CPU to WindowPoSt).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};

use super::{ByteSize, HumanDuration, SectorSize};

/// Load capacity of an external processor without `concurrent` (§1.10).
pub const DEFAULT_EXT_CAPACITY: usize = 64;
/// Processor kinds: the `<kind>` of `[[processors.<kind>]]` (§1.10, §6.7).
pub const PROCESSOR_KINDS: [&str; 11] = [
    "add_pieces",
    "tree_d",
    "pc1",
    "pc2",
    "c2",
    "snap_encode",
    "snap_prove",
    "transfer",
    "unseal",
    "window_post",
    "sealing_daemons",
];
/// Stage names of the limit pool: keys of `processors.limitation.concurrent`,
/// `processors.limitation.staggered` and the legacy `processors.limit` (§1.10).
pub const LIMIT_NAMES: [&str; 12] = [
    "add_pieces",
    "tree_d",
    "pc1",
    "pc2",
    "c1",
    "synth_proof",
    "c2",
    "snap_encode",
    "snap_prove",
    "unseal",
    "transfer",
    "window_post",
];

/// `[processors]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessorsConfig {
    /// Legacy per-stage concurrency (`processors.limit.<stage>`), used only when
    /// `limitation.concurrent` is absent; setting both is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<BTreeMap<String, usize>>,
    /// Per-stage limits.
    pub limitation: LimitationConfig,
    /// Named counting locks (`ext_locks.<name> = <count>`) that external processors hold
    /// through their `locks`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ext_locks: BTreeMap<String, usize>,
    /// Pre-built tree-d files for CC sectors, keyed by sector size
    /// (`32GiB = "/path/sc-02-data-tree-d.dat"`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub static_tree_d: BTreeMap<String, PathBuf>,
    /// `[[processors.add_pieces]]`; absent: in-process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub add_pieces: Option<Vec<ExtProcessorConfig>>,
    /// `[[processors.tree_d]]`; absent: in-process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree_d: Option<Vec<ExtProcessorConfig>>,
    /// `[[processors.pc1]]`; absent: in-process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pc1: Option<Vec<ExtProcessorConfig>>,
    /// `[[processors.pc2]]`; absent: in-process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pc2: Option<Vec<ExtProcessorConfig>>,
    /// `[[processors.c2]]`; absent: in-process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub c2: Option<Vec<ExtProcessorConfig>>,
    /// `[[processors.snap_encode]]`; absent: in-process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snap_encode: Option<Vec<ExtProcessorConfig>>,
    /// `[[processors.snap_prove]]`; absent: in-process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snap_prove: Option<Vec<ExtProcessorConfig>>,
    /// `[[processors.transfer]]`; absent: in-process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer: Option<Vec<ExtProcessorConfig>>,
    /// `[[processors.unseal]]`; absent: in-process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unseal: Option<Vec<ExtProcessorConfig>>,
    /// `[[processors.window_post]]`; absent: in-process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_post: Option<Vec<ExtProcessorConfig>>,
    /// `[[processors.sealing_daemons]]`: children that are only kept running (they get no
    /// task, and must print `EMPTY processor ready`); `bin` is required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealing_daemons: Option<Vec<ExtProcessorConfig>>,
    /// `[processors.priority]` (ours): CPU priority of sealing work against WindowPoSt.
    pub priority: PriorityConfig,
}

/// The processor kinds whose work is WindowPoSt; every other kind is sealing work.
pub const POST_KINDS: [&str; 1] = ["window_post"];

/// Stages held back while this worker proves a WindowPoSt job
/// (`processors.priority.hold_sealing_during_post`): the ones that keep every core busy.
pub const HEAVY_STAGES: [&str; 5] = ["pc1", "pc2", "c2", "snap_encode", "snap_prove"];

/// `[processors.priority]` (ours; damocles has none): a missed WindowPoSt costs a fault fee and
/// the sector's power, a sealing stage that runs a little slower costs nothing, so sealing
/// yields the CPU to PoSt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PriorityConfig {
    /// Nice value (0..=19) of sealing work: the sealing threads, the proof libraries' thread
    /// pools of this process and every processor child of a sealing kind. Default 5: a nice-0
    /// process (PoSt) competing for a core gets three times the CPU of sealing (weights 1024
    /// and 335), while sealing still gets a quarter of a core another nice-0 program keeps
    /// busy (at 10 that fell to a tenth: a 2 KiB C2 took 13 minutes beside two busy loops).
    /// 0 turns it off.
    pub sealing_nice: i32,
    /// Nice value (-20..=19) of `window_post` processor children. Default 0; below 0 needs
    /// `CAP_SYS_NICE`.
    pub post_nice: i32,
    /// While a `wdpost` thread of this worker holds a job, new pc1, pc2, c2, snap_encode and
    /// snap_prove tasks wait (the ones already running go on). Default true.
    pub hold_sealing_during_post: bool,
}

impl Default for PriorityConfig {
    fn default() -> Self {
        PriorityConfig {
            sealing_nice: 5,
            post_nice: 0,
            hold_sealing_during_post: true,
        }
    }
}

impl PriorityConfig {
    /// The nice of a processor child of `kind` configured as `ext` (its own `nice` wins);
    /// `None`, the nice it inherits, when the priority is off (`sealing_nice` = 0).
    pub fn nice_for(&self, kind: &str, ext: &ExtProcessorConfig) -> Option<i32> {
        if let Some(n) = ext.nice {
            return Some(n);
        }
        if self.sealing_nice == 0 {
            None
        } else if POST_KINDS.contains(&kind) {
            Some(self.post_nice)
        } else {
            Some(self.sealing_nice)
        }
    }

    fn check(&self, out: &mut Vec<String>) {
        if !(0..=19).contains(&self.sealing_nice) {
            out.push(format!(
                "`processors.priority.sealing_nice` = {} must be within 0..=19 (0: off)",
                self.sealing_nice
            ));
        }
        if !(-20..=19).contains(&self.post_nice) {
            out.push(format!(
                "`processors.priority.post_nice` = {} must be within -20..=19",
                self.post_nice
            ));
        } else if self.sealing_nice != 0 && self.post_nice >= self.sealing_nice {
            out.push(format!(
                "`processors.priority.post_nice` = {} would give WindowPoSt no priority over \
                 sealing (`sealing_nice` = {}): make it lower",
                self.post_nice, self.sealing_nice
            ));
        }
    }
}

impl ProcessorsConfig {
    /// The external processors of `kind` (one of [`PROCESSOR_KINDS`]); `None`: in-process (or
    /// not a kind).
    pub fn ext(&self, kind: &str) -> Option<&[ExtProcessorConfig]> {
        let list = match kind {
            "add_pieces" => &self.add_pieces,
            "tree_d" => &self.tree_d,
            "pc1" => &self.pc1,
            "pc2" => &self.pc2,
            "c2" => &self.c2,
            "snap_encode" => &self.snap_encode,
            "snap_prove" => &self.snap_prove,
            "transfer" => &self.transfer,
            "unseal" => &self.unseal,
            "window_post" => &self.window_post,
            "sealing_daemons" => &self.sealing_daemons,
            _ => return None,
        };
        list.as_deref()
    }

    /// Mutable access to the external processors of `kind` (e.g. to add `PIECE_FETCHER_TOKEN`
    /// to the `add_pieces` children, §1.2 step 2).
    pub fn ext_mut(&mut self, kind: &str) -> Option<&mut Vec<ExtProcessorConfig>> {
        let list = match kind {
            "add_pieces" => &mut self.add_pieces,
            "tree_d" => &mut self.tree_d,
            "pc1" => &mut self.pc1,
            "pc2" => &mut self.pc2,
            "c2" => &mut self.c2,
            "snap_encode" => &mut self.snap_encode,
            "snap_prove" => &mut self.snap_prove,
            "transfer" => &mut self.transfer,
            "unseal" => &mut self.unseal,
            "window_post" => &mut self.window_post,
            "sealing_daemons" => &mut self.sealing_daemons,
            _ => return None,
        };
        list.as_mut()
    }

    /// Per-stage concurrency: `limitation.concurrent`, else the legacy `limit`, else none.
    pub fn concurrent_limits(&self) -> BTreeMap<String, usize> {
        self.limitation
            .concurrent
            .as_ref()
            .or(self.limit.as_ref())
            .cloned()
            .unwrap_or_default()
    }

    /// `static_tree_d` keyed by sector size in bytes.
    pub fn static_tree_d(&self) -> Result<BTreeMap<u64, PathBuf>> {
        self.static_tree_d
            .iter()
            .map(|(key, path)| {
                let size: SectorSize = key
                    .parse()
                    .map_err(|e| anyhow!("`processors.static_tree_d.{key}`: {e}"))?;
                Ok((size.0, path.clone()))
            })
            .collect()
    }

    pub(super) fn check(&self, out: &mut Vec<String>) {
        if self.limit.is_some() && self.limitation.concurrent.is_some() {
            out.push(
                "`processors.limit` (legacy) is ignored when `processors.limitation.concurrent` \
                 is set: move its entries there"
                    .into(),
            );
        }
        let concurrent = [
            ("processors.limit", self.limit.as_ref()),
            (
                "processors.limitation.concurrent",
                self.limitation.concurrent.as_ref(),
            ),
        ];
        for (table, map) in concurrent {
            for (name, n) in map.into_iter().flatten() {
                check_limit_name(table, name, out);
                if *n == 0 {
                    out.push(format!(
                        "`{table}.{name}` = 0 would block the stage forever (remove it for no limit)"
                    ));
                }
            }
        }
        for (name, interval) in &self.limitation.staggered {
            let table = "processors.limitation.staggered";
            check_limit_name(table, name, out);
            if interval.0 < Duration::from_secs(1) {
                out.push(format!(
                    "`{table}.{name}` = \"{interval}\" must be at least 1s"
                ));
            }
        }
        for (name, n) in &self.ext_locks {
            if *n == 0 {
                out.push(format!(
                    "`processors.ext_locks.{name}` = 0 would block its holders forever"
                ));
            }
        }
        let mut sizes = BTreeMap::new();
        for (key, path) in &self.static_tree_d {
            match key.parse::<SectorSize>() {
                Err(e) => out.push(format!("`processors.static_tree_d.{key}`: {e}")),
                Ok(size) => {
                    if let Some(other) = sizes.insert(size, key) {
                        out.push(format!(
                            "`processors.static_tree_d.{key}`: the same size as `{other}`"
                        ));
                    }
                }
            }
            if path.as_os_str().is_empty() {
                out.push(format!("`processors.static_tree_d.{key}` is empty"));
            }
        }
        self.priority.check(out);
        for kind in PROCESSOR_KINDS {
            let Some(list) = self.ext(kind) else {
                continue;
            };
            if list.is_empty() {
                out.push(format!(
                    "`processors.{kind}` is an empty list: remove it to run {kind} inside the \
                     worker, or add `[[processors.{kind}]]` blocks"
                ));
            }
            for (i, ext) in list.iter().enumerate() {
                ext.check(
                    kind,
                    &format!("processors.{kind}.{i}"),
                    &self.ext_locks,
                    out,
                );
            }
        }
    }
}

fn check_limit_name(table: &str, name: &str, out: &mut Vec<String>) {
    if !LIMIT_NAMES.contains(&name) {
        out.push(format!(
            "`{table}.{name}`: unknown stage {name:?} (stages: {})",
            LIMIT_NAMES.join(", ")
        ));
    }
}

/// `[processors.limitation]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitationConfig {
    /// Most tasks of a stage at once (`<stage> = <count>`, stages of [`LIMIT_NAMES`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrent: Option<BTreeMap<String, usize>>,
    /// Least spacing between task starts of a stage (`<stage> = "<duration>"`, at least 1s; a
    /// finished task frees its slot at once).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub staggered: BTreeMap<String, HumanDuration>,
}

/// One `[[processors.<kind>]]` block: an external processor child (§1.10).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExtProcessorConfig {
    /// Program to start. Unset: the worker's own executable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bin: Option<PathBuf>,
    /// Its arguments. Unset: `["processor", "<kind>"]`, even when `bin` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Extra environment variables (they win over inherited and placement variables).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub envs: BTreeMap<String, String>,
    /// Start from the worker's environment (else from an empty one). Default true.
    pub inherit_envs: bool,
    /// Longest wait for the child's ready line. Default 5s.
    pub stable_wait: HumanDuration,
    /// cgroup placement of the child; applied only when `cgroup.cpuset` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<CgroupConfig>,
    /// Preferred NUMA node of the child (`VENUS_WORKER_NUMA_PREFERRED`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numa_preferred: Option<i32>,
    /// Most tasks in flight on this child. Unset: unbounded (load capacity 64).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrent: Option<usize>,
    /// Names of `[processors.ext_locks]` held while a task runs here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locks: Vec<String>,
    /// Restart the child when it exits. Default true.
    pub auto_restart: bool,
    /// Nice value of the child (ours). Unset: `processors.priority.post_nice` for
    /// `window_post`, `processors.priority.sealing_nice` for the other kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nice: Option<i32>,
    /// Longest output line of the child (ours, e.g. `"512MiB"`). A longer one fails the tasks in
    /// flight with an error naming the child, which is restarted. Unset: 256 MiB, far above
    /// the largest real answer (a C1 output).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_line: Option<ByteSize>,
}

impl Default for ExtProcessorConfig {
    fn default() -> Self {
        ExtProcessorConfig {
            bin: None,
            args: None,
            envs: BTreeMap::new(),
            inherit_envs: true,
            stable_wait: HumanDuration::from_secs(5),
            cgroup: None,
            numa_preferred: None,
            concurrent: None,
            locks: Vec::new(),
            auto_restart: true,
            nice: None,
            max_line: None,
        }
    }
}

impl ExtProcessorConfig {
    /// The child's arguments for processor kind `kind`.
    pub fn args_for(&self, kind: &str) -> Vec<String> {
        match &self.args {
            Some(args) => args.clone(),
            None => vec!["processor".to_string(), kind.to_string()],
        }
    }

    /// Load capacity used to choose among children: `concurrent`, else 64.
    pub fn capacity(&self) -> usize {
        self.concurrent.unwrap_or(DEFAULT_EXT_CAPACITY)
    }

    fn check(
        &self,
        kind: &str,
        key: &str,
        ext_locks: &BTreeMap<String, usize>,
        out: &mut Vec<String>,
    ) {
        match &self.bin {
            Some(bin) if bin.as_os_str().is_empty() => out.push(format!("`{key}.bin` is empty")),
            None if kind == "sealing_daemons" => out.push(format!(
                "`{key}.bin` is required: damocles-worker has no `processor sealing_daemons` command"
            )),
            _ => {}
        }
        if self.concurrent == Some(0) {
            out.push(format!(
                "`{key}.concurrent` = 0 would never run a task (remove it for no limit)"
            ));
        }
        if self.stable_wait.0.is_zero() {
            out.push(format!("`{key}.stable_wait` must not be 0"));
        }
        if self.max_line.is_some_and(|m| m.0 < 4096) {
            out.push(format!(
                "`{key}.max_line` must be at least 4KiB (a processor's answers would not fit)"
            ));
        }
        if self.numa_preferred.is_some_and(|n| n < 0) {
            out.push(format!(
                "`{key}.numa_preferred` must be a NUMA node index (0, 1, …)"
            ));
        }
        if let Some(cg) = &self.cgroup {
            if cg.group_name.trim().is_empty() {
                out.push(format!("`{key}.cgroup.group_name` is empty"));
            }
            if cg.cpuset.as_deref().is_some_and(|c| c.trim().is_empty()) {
                out.push(format!(
                    "`{key}.cgroup.cpuset` is empty (remove it for no cgroup)"
                ));
            }
        }
        if let Some(n) = self.nice.filter(|n| !(-20..=19).contains(n)) {
            out.push(format!("`{key}.nice` = {n} must be within -20..=19"));
        }
        for (i, lock) in self.locks.iter().enumerate() {
            if !ext_locks.contains_key(lock) {
                out.push(format!(
                    "`{key}.locks.{i}`: lock {lock:?} is not declared in `[processors.ext_locks]`"
                ));
            }
        }
        for name in self.envs.keys() {
            if name.is_empty() || name.contains(['=', '\0']) {
                out.push(format!("`{key}.envs`: invalid variable name {name:?}"));
            }
        }
    }
}

/// `[processors.<kind>.cgroup]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CgroupConfig {
    /// Parent cgroup of the child's cgroup. Default `vc-worker`.
    pub group_name: String,
    /// CPU list (`"0-7,16"`); the cgroup is applied only when this is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuset: Option<String>,
}

impl Default for CgroupConfig {
    fn default() -> Self {
        CgroupConfig {
            group_name: "vc-worker".to_string(),
            cpuset: None,
        }
    }
}
