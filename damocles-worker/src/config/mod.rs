//! `damocles-worker.toml`: the worker's configuration (worker-spec §6), the per-thread merge of
//! the sealing settings (§1.4) and the hot config `<location>/config.toml` (§1.5).
//!
//! Keys, spellings and defaults are damocles'. Where we differ, it is on purpose:
//! - an unknown key is an error that names its dotted path (`sealing_thread.0.sealing.max_retryes`);
//!   damocles ignores typos. The deprecated tables `[remote_store]` and `[attached_selection]` are
//!   accepted and ignored ([`WorkerConfig::deprecated_tables`]);
//! - [`WorkerConfig::validate`] refuses settings that damocles accepts and then misbehaves on
//!   (pitfalls P-8, P-18, P-23, limits and locks of 0, undeclared lock names, unknown limit names,
//!   `staggered` intervals under 1 s, an empty `[[processors.<kind>]]` list), naming every key;
//! - `[[attached]]` may name an objstore `plugin` with its `meta` (our addition), and
//!   `worker.plugin_dir` says where plugins are found;
//! - `plan = "niporep"` does not parse: damocles compiles that planner but can never run it (P-14).
//!
//! Only [`load`] and [`load_hot`] touch the file system. Checks that need it (a store directory
//! exists, a static tree-d file exists, canonical locations differ) belong to start-up.
//!
//! One concern per submodule: `[worker]` (`instance`), the RPC server, metrics and manager
//! addresses (`addresses`), the sealing settings, per-thread merge and hot config (`sealing`),
//! `[[attached]]` (`attached`) and `[processors]` (`processors`); every item is re-exported
//! here. The unit types and the strict TOML loader are shared with the manager
//! (`damocles_config`).

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use damocles_config::load::parse_strict;
use serde::{Deserialize, Serialize};

mod addresses;
mod attached;
mod instance;
mod processors;
mod sealing;
#[cfg(test)]
mod tests;

pub use self::addresses::{
    MetricsConfig, RpcClientConfig, RpcServerConfig, SectorManagerConfig, DEFAULT_METRICS_LISTEN,
    DEFAULT_RPC_CONNECT_HOST, DEFAULT_RPC_LISTEN_HOST, DEFAULT_RPC_SERVER_PORT,
    DEFAULT_RPC_TIMEOUT, MANAGER_API_INFO_ENV, WORKER_HOME_ENV,
};
pub use self::attached::AttachedConfig;
pub use self::instance::WorkerInstanceConfig;
pub use self::processors::{
    CgroupConfig, ExtProcessorConfig, LimitationConfig, PriorityConfig, ProcessorsConfig,
    DEFAULT_EXT_CAPACITY, HEAVY_STAGES, LIMIT_NAMES, POST_KINDS, PROCESSOR_KINDS,
};
pub use self::sealing::{
    EffectiveThread, HotConfig, Plan, SealingConfig, SealingOverlay, SealingThreadConfig,
};
pub use damocles_config::units::{ByteSize, HumanDuration, SectorSize};

/// The hot config file inside a sealing store (§1.5).
pub const HOT_CONFIG_FILE: &str = "config.toml";

/// The whole `damocles-worker.toml` (§6).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerConfig {
    /// `[worker]`: this instance.
    pub worker: WorkerInstanceConfig,
    /// `[metrics]`: the Prometheus exporter.
    pub metrics: MetricsConfig,
    /// `[sector_manager]` (required): how to reach the manager.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sector_manager: Option<SectorManagerConfig>,
    /// `[sealing]`: sealing settings of every thread, over the built-in defaults.
    pub sealing: SealingConfig,
    /// `[[sealing_thread]]` (the key is required; `sealing_thread = []` runs no thread).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealing_thread: Option<Vec<SealingThreadConfig>>,
    /// `[[attached]]`: persist stores (more come from `worker.scan_persist_stores`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attached: Vec<AttachedConfig>,
    /// `[processors]`: limits and external processors.
    pub processors: ProcessorsConfig,
    /// Deprecated `[remote_store]`: accepted and ignored.
    #[serde(skip_serializing)]
    pub remote_store: Option<toml::Value>,
    /// Deprecated `[attached_selection]`: accepted and ignored.
    #[serde(skip_serializing)]
    pub attached_selection: Option<toml::Value>,
}

/// Reads, parses and validates a config file.
pub fn load(path: &Path) -> Result<WorkerConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the config {}", path.display()))?;
    from_str_named(&text, &path.display().to_string())
}

/// Parses and validates a config text; `name` (a file name) prefixes every error.
pub fn from_str_named(text: &str, name: &str) -> Result<WorkerConfig> {
    let cfg = parse_named(text, name)?;
    cfg.validate()
        .with_context(|| format!("{name}: invalid configuration"))?;
    Ok(cfg)
}

/// Parses a config text without [`WorkerConfig::validate`]. Unknown keys are errors.
pub fn parse_named(text: &str, name: &str) -> Result<WorkerConfig> {
    parse_strict(text, name, config_hint, None)
}

impl WorkerConfig {
    /// Every problem serde cannot see, each naming its key; empty when the config is usable.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.worker.check(&mut out);
        match &self.sector_manager {
            None => out.push(
                "`[sector_manager]` is required, with `rpc_client.addr` (the manager's address)"
                    .into(),
            ),
            Some(sm) => {
                if sm.rpc_client.addr.trim().is_empty() {
                    out.push(
                        "`sector_manager.rpc_client.addr` is required: the manager's address, \
                         e.g. \"/ip4/127.0.0.1/tcp/1789\""
                            .into(),
                    );
                } else if let Err(e) = sm.rpc_client.endpoint() {
                    out.push(format!("`sector_manager.rpc_client.addr`: {e}"));
                }
                if sm
                    .piece_token
                    .as_deref()
                    .is_some_and(|t| t.trim().is_empty())
                {
                    out.push("`sector_manager.piece_token` is empty".into());
                }
            }
        }
        self.sealing.check("sealing", &mut out);
        self.check_threads(&mut out);
        self.check_attached(&mut out);
        self.processors.check(&mut out);
        out
    }

    /// Checks what serde cannot; the error lists every problem with its key.
    pub fn validate(&self) -> Result<()> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems_error(&problems))
        }
    }

    fn check_threads(&self, out: &mut Vec<String>) {
        let Some(threads) = &self.sealing_thread else {
            out.push(
                "`sealing_thread` is missing: add `[[sealing_thread]]` blocks \
                 (`sealing_thread = []` runs no thread)"
                    .into(),
            );
            return;
        };
        let mut locations: BTreeMap<PathBuf, usize> = BTreeMap::new();
        for (i, thread) in threads.iter().enumerate() {
            let key = format!("sealing_thread.{i}");
            let plan = thread.plan.unwrap_or_default();
            match &thread.location {
                None if plan.needs_location() => out.push(format!(
                    "`{key}.location` is required for plan `{plan}` (only `wdpost` threads run \
                     without a sealing store)"
                )),
                None => {}
                Some(loc) if loc.as_os_str().is_empty() => {
                    out.push(format!("`{key}.location` is empty"));
                }
                // damocles skips a repeated location, which shifts thread indices (P-23).
                Some(loc) => match locations.entry(loc.components().collect()) {
                    Entry::Occupied(first) => out.push(format!(
                        "`{key}.location`: {} is already the store of `sealing_thread.{}`",
                        loc.display(),
                        first.get()
                    )),
                    Entry::Vacant(slot) => {
                        slot.insert(i);
                    }
                },
            }
            thread.sealing.check(&format!("{key}.sealing"), out);
            let effective = self.sealing.overlay(&thread.sealing);
            if plan == Plan::Sealer && effective.disable_cc && !effective.enable_deals {
                let at = if thread.sealing.disable_cc.is_some() {
                    format!("{key}.sealing.disable_cc")
                } else {
                    "sealing.disable_cc".to_string()
                };
                out.push(format!(
                    "`{at}` = true without `enable_deals` for `{key}`: the sealer would allocate \
                     a sector and wait for deals forever"
                ));
            }
        }
    }

    fn check_attached(&self, out: &mut Vec<String>) {
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        for (i, store) in self.attached.iter().enumerate() {
            let key = format!("attached.{i}");
            if store.location.as_os_str().is_empty() {
                out.push(format!("`{key}.location` is required"));
            }
            if store.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                out.push(format!(
                    "`{key}.name` is empty (remove it to use the location's path)"
                ));
            }
            match &store.plugin {
                Some(p) if p.trim().is_empty() => out.push(format!("`{key}.plugin` is empty")),
                Some(_) if store.name.is_none() => out.push(format!(
                    "`{key}.name` is required with `plugin`: the manager's name of this store"
                )),
                None if !store.meta.is_empty() => {
                    out.push(format!("`{key}.meta` is only used with `plugin`"))
                }
                _ => {}
            }
            // Unnamed stores are named by their canonical path at start-up; the literal path
            // catches the obvious repeats here.
            let instance = match &store.name {
                Some(name) => name.clone(),
                None => store
                    .location
                    .components()
                    .collect::<PathBuf>()
                    .display()
                    .to_string(),
            };
            match names.entry(instance) {
                Entry::Occupied(first) => out.push(format!(
                    "`{key}.name`: duplicate store name {:?} (also `attached.{}`)",
                    first.key(),
                    first.get()
                )),
                Entry::Vacant(slot) => {
                    slot.insert(i);
                }
            }
        }
    }

    /// The `[sector_manager]` table (an error if missing).
    pub fn manager(&self) -> Result<&SectorManagerConfig> {
        self.sector_manager
            .as_ref()
            .ok_or_else(|| anyhow!("`[sector_manager]` is required"))
    }

    /// The `[[sealing_thread]]` entries.
    pub fn threads(&self) -> &[SealingThreadConfig] {
        self.sealing_thread.as_deref().unwrap_or_default()
    }

    /// The effective settings of thread `index` (see [`SealingThreadConfig::effective`]).
    pub fn effective_thread(
        &self,
        index: usize,
        hot: Option<&HotConfig>,
    ) -> Option<EffectiveThread> {
        self.threads()
            .get(index)
            .map(|thread| thread.effective(&self.sealing, hot))
    }

    /// Deprecated tables present in the file (ignored; the daemon should warn once each).
    pub fn deprecated_tables(&self) -> Vec<&'static str> {
        let mut tables = Vec::new();
        if self.remote_store.is_some() {
            tables.push("remote_store");
        }
        if self.attached_selection.is_some() {
            tables.push("attached_selection");
        }
        tables
    }

    /// The config as TOML (deprecated tables are dropped).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).context("serialising the worker config")
    }
}

fn problems_error(problems: &[String]) -> anyhow::Error {
    let n = problems.len();
    anyhow!(
        "{n} problem{}:\n  - {}",
        if n == 1 { "" } else { "s" },
        problems.join("\n  - ")
    )
}

fn config_hint(key: &str) -> Option<&'static str> {
    if key == "processors.synth_proof" || key.starts_with("processors.synth_proof.") {
        Some("synthetic proofs always run inside the worker; `synth_proof` is only a limit name")
    } else if key.starts_with("processors.limitation.") {
        Some("`processors.limitation` holds `concurrent` and `staggered`")
    } else {
        None
    }
}

/// The hot config path of a sealing store.
pub fn hot_config_path(location: &Path) -> PathBuf {
    location.join(HOT_CONFIG_FILE)
}

/// Reads `<location>/config.toml`: `None` if there is no such file.
pub fn load_hot(location: &Path) -> Result<Option<HotConfig>> {
    let path = hot_config_path(location);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("reading the hot config {}", path.display()))
            )
        }
    };
    HotConfig::from_str_named(&text, &path.display().to_string()).map(Some)
}
