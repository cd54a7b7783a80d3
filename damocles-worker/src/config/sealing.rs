//! Sealing settings and the per-thread merge (§1.4, §6.4, §6.5): the planner ([`Plan`]),
//! `[sealing]` ([`SealingConfig`]), the overrides of a thread or a hot config
//! ([`SealingOverlay`]), `[[sealing_thread]]` ([`SealingThreadConfig`]), what a thread runs with
//! after the merge ([`EffectiveThread`]) and the hot config `<location>/config.toml`
//! ([`HotConfig`], §1.5).

use std::fmt;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use damocles_config::load::parse_strict;
use serde::{Deserialize, Serialize};
use vc_processors::layout;

use super::{problems_error, ByteSize, HumanDuration, SectorSize};

/// The planner of a sealing thread (`plan`, §1.3). `niporep` is not accepted: damocles compiles
/// it but never runs it (P-14), so it is refused when the config is read rather than pausing
/// the thread later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    /// Regular PoRep sealing (the default).
    #[default]
    Sealer,
    /// SnapDeal upgrade of a CC sector.
    Snapup,
    /// Re-create lost sealed/cache or update files.
    Rebuild,
    /// Recover a piece from a sealed sector.
    Unseal,
    /// Compute WindowPoSt jobs for the manager (needs no `location`).
    Wdpost,
}

impl Plan {
    /// The config and wire spelling (also the `plan` of a sector record).
    pub const fn as_str(self) -> &'static str {
        match self {
            Plan::Sealer => "sealer",
            Plan::Snapup => "snapup",
            Plan::Rebuild => "rebuild",
            Plan::Unseal => "unseal",
            Plan::Wdpost => "wdpost",
        }
    }

    /// Whether the plan needs a sealing store (`location`); only `wdpost` does not.
    pub fn needs_location(self) -> bool {
        self != Plan::Wdpost
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Sealing settings (§6.4): `[sealing]` over the built-in defaults, and the effective settings
/// of a thread after [`SealingThreadConfig::effective`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SealingConfig {
    /// Miners to seal for (`AllowedMiners`); empty: any.
    pub allowed_miners: Vec<u64>,
    /// Sector sizes to seal (expanded by [`SealingConfig::allowed_proof_types`]); empty: any.
    pub allowed_sizes: Vec<SectorSize>,
    /// Ask the manager for deals in the sealer's `Allocated` state. Default false. Unlike
    /// damocles (P-3), this does not decide whether deal pieces can be fetched: a snapup
    /// thread, or a thread that enables deals here or in its hot config, always can.
    pub enable_deals: bool,
    /// With deals enabled, wait for deals instead of sealing a CC sector. Default false.
    pub disable_cc: bool,
    /// Most deals per sector (`AcquireDealsSpec.MaxDeals`); unset: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_deals: Option<usize>,
    /// Least deal space per sector (`AcquireDealsSpec.MinUsedSpace`); unset: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_deal_space: Option<ByteSize>,
    /// Temporary failures tolerated per sector (and per wdpost job). Default 5.
    pub max_retries: u32,
    /// Pause between sectors and between idle rounds. Default 30s.
    pub seal_interval: HumanDuration,
    /// Wait before retrying a temporary failure, and between idle polls. Default 60s (the
    /// damocles docs say 30s; the code uses 60s).
    pub recover_interval: HumanDuration,
    /// Polling period of `PollPreCommitState`, `PollProofState` and `StoreReserveSpace`.
    /// Default 180s.
    pub rpc_polling_interval: HumanDuration,
    /// Skip `PollProofState` after `SubmitProof`. Default false.
    pub ignore_proof_check: bool,
    /// Idle answers tolerated before a round ends (§1.6). Default 3.
    pub request_task_max_retries: u32,
    /// Run C1 with a zero seed after PC2 as a check (sealer). Default false.
    pub verify_after_pc2: bool,
}

impl Default for SealingConfig {
    fn default() -> Self {
        SealingConfig {
            allowed_miners: Vec::new(),
            allowed_sizes: Vec::new(),
            enable_deals: false,
            disable_cc: false,
            max_deals: None,
            min_deal_space: None,
            max_retries: 5,
            seal_interval: HumanDuration::from_secs(30),
            recover_interval: HumanDuration::from_secs(60),
            rpc_polling_interval: HumanDuration::from_secs(180),
            ignore_proof_check: false,
            request_task_max_retries: 3,
            verify_after_pc2: false,
        }
    }
}

impl SealingConfig {
    /// These settings with every key set in `o` replaced (§1.4: field by field).
    pub fn overlay(&self, o: &SealingOverlay) -> SealingConfig {
        SealingConfig {
            allowed_miners: o
                .allowed_miners
                .as_ref()
                .unwrap_or(&self.allowed_miners)
                .clone(),
            allowed_sizes: o
                .allowed_sizes
                .as_ref()
                .unwrap_or(&self.allowed_sizes)
                .clone(),
            enable_deals: o.enable_deals.unwrap_or(self.enable_deals),
            disable_cc: o.disable_cc.unwrap_or(self.disable_cc),
            max_deals: o.max_deals.or(self.max_deals),
            min_deal_space: o.min_deal_space.or(self.min_deal_space),
            max_retries: o.max_retries.unwrap_or(self.max_retries),
            seal_interval: o.seal_interval.unwrap_or(self.seal_interval),
            recover_interval: o.recover_interval.unwrap_or(self.recover_interval),
            rpc_polling_interval: o.rpc_polling_interval.unwrap_or(self.rpc_polling_interval),
            ignore_proof_check: o.ignore_proof_check.unwrap_or(self.ignore_proof_check),
            request_task_max_retries: o
                .request_task_max_retries
                .unwrap_or(self.request_task_max_retries),
            verify_after_pc2: o.verify_after_pc2.unwrap_or(self.verify_after_pc2),
        }
    }

    /// `AllowedProofTypes` (`abi.RegisteredSealProof` integers): each allowed size gives its
    /// V1_1, V1_1 synthetic-PoRep and V1_2 NI-PoRep types, in that order (§1.4). Empty: any.
    pub fn allowed_proof_types(&self) -> Vec<i64> {
        self.allowed_sizes
            .iter()
            .filter_map(|s| layout::sector_size_index(s.0))
            .flat_map(|i| {
                let i = i as i64;
                [5 + i, 10 + i, 15 + i]
            })
            .collect()
    }

    pub(super) fn check(&self, prefix: &str, out: &mut Vec<String>) {
        check_intervals(
            prefix,
            Some(self.recover_interval),
            Some(self.rpc_polling_interval),
            out,
        );
    }
}

/// Sealing keys that override the ones below them: `[[sealing_thread]].sealing` and the hot
/// config's `sealing`. Same keys and meanings as [`SealingConfig`]; unset keys inherit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SealingOverlay {
    /// See [`SealingConfig::allowed_miners`]; `[]` lifts an inherited restriction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_miners: Option<Vec<u64>>,
    /// See [`SealingConfig::allowed_sizes`]; `[]` lifts an inherited restriction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_sizes: Option<Vec<SectorSize>>,
    /// See [`SealingConfig::enable_deals`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_deals: Option<bool>,
    /// See [`SealingConfig::disable_cc`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_cc: Option<bool>,
    /// See [`SealingConfig::max_deals`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_deals: Option<usize>,
    /// See [`SealingConfig::min_deal_space`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_deal_space: Option<ByteSize>,
    /// See [`SealingConfig::max_retries`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// See [`SealingConfig::seal_interval`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seal_interval: Option<HumanDuration>,
    /// See [`SealingConfig::recover_interval`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recover_interval: Option<HumanDuration>,
    /// See [`SealingConfig::rpc_polling_interval`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpc_polling_interval: Option<HumanDuration>,
    /// See [`SealingConfig::ignore_proof_check`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignore_proof_check: Option<bool>,
    /// See [`SealingConfig::request_task_max_retries`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_task_max_retries: Option<u32>,
    /// See [`SealingConfig::verify_after_pc2`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_after_pc2: Option<bool>,
}

impl SealingOverlay {
    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        *self == SealingOverlay::default()
    }

    pub(super) fn check(&self, prefix: &str, out: &mut Vec<String>) {
        check_intervals(
            prefix,
            self.recover_interval,
            self.rpc_polling_interval,
            out,
        );
    }
}

fn check_intervals(
    prefix: &str,
    recover: Option<HumanDuration>,
    polling: Option<HumanDuration>,
    out: &mut Vec<String>,
) {
    for (name, value) in [
        ("recover_interval", recover),
        ("rpc_polling_interval", polling),
    ] {
        if value.is_some_and(|d| d.0.is_zero()) {
            out.push(format!(
                "`{prefix}.{name}` must not be 0: the thread would poll the manager in a busy loop"
            ));
        }
    }
}

/// `[[sealing_thread]]` (§6.5): one sealing thread.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SealingThreadConfig {
    /// The sealing store directory; required by every plan but `wdpost`. Created at start-up
    /// if missing (its parent must exist). Holds the hot config `config.toml`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<PathBuf>,
    /// The planner; unset: `sealer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// Overrides of `[sealing]` for this thread.
    #[serde(skip_serializing_if = "SealingOverlay::is_empty")]
    pub sealing: SealingOverlay,
}

impl SealingThreadConfig {
    /// The thread's effective settings (§1.4, §1.5): `global` (`[sealing]` over the defaults),
    /// overlaid by this thread's `sealing`, overlaid by the hot config's `sealing` when there is
    /// one; the plan is the hot config's, else the thread's, else `sealer`.
    pub fn effective(&self, global: &SealingConfig, hot: Option<&HotConfig>) -> EffectiveThread {
        let mut sealing = global.overlay(&self.sealing);
        let mut plan = self.plan.unwrap_or_default();
        if let Some(hot) = hot {
            sealing = sealing.overlay(&hot.sealing);
            plan = hot.plan.unwrap_or(plan);
        }
        EffectiveThread {
            location: self.location.clone(),
            plan,
            sealing,
        }
    }
}

/// What a sealing thread runs with after the merge.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveThread {
    /// The sealing store (never changed by the hot config).
    pub location: Option<PathBuf>,
    /// The planner.
    pub plan: Plan,
    /// The merged sealing settings.
    pub sealing: SealingConfig,
}

impl EffectiveThread {
    /// Refuses merged settings damocles would run into a wall with: a plan that needs a store
    /// without one (P-18), and `disable_cc` without `enable_deals` on a sealer, which allocates
    /// a sector and then waits for deals forever (P-8). Use it after applying a hot config.
    pub fn check(&self) -> Result<()> {
        if self.plan.needs_location() && self.location.is_none() {
            bail!(
                "plan `{}` needs a `location` (only `wdpost` threads run without a sealing store)",
                self.plan
            );
        }
        if self.plan == Plan::Sealer && self.sealing.disable_cc && !self.sealing.enable_deals {
            bail!(
                "`disable_cc = true` without `enable_deals = true`: the sealer would allocate a \
                 sector and wait for deals forever"
            );
        }
        Ok(())
    }
}

/// The hot config `<location>/config.toml` (§1.5): `[[sealing_thread]]` without `location`.
/// Re-read between sectors; a plan change applies to the next sector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HotConfig {
    /// Replaces the thread's plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// Overrides over the thread's settings.
    #[serde(skip_serializing_if = "SealingOverlay::is_empty")]
    pub sealing: SealingOverlay,
}

impl HotConfig {
    /// Parses and checks a hot config text; `origin` names it in errors. Unknown keys
    /// (including `location`) are errors.
    pub fn from_str_named(text: &str, origin: &str) -> Result<HotConfig> {
        let hot: HotConfig = parse_strict(text, origin, hot_hint, None)?;
        let mut out = Vec::new();
        hot.sealing.check("sealing", &mut out);
        if !out.is_empty() {
            return Err(problems_error(&out))
                .with_context(|| format!("{origin}: invalid hot config"));
        }
        Ok(hot)
    }
}

fn hot_hint(key: &str) -> Option<&'static str> {
    if key == "location" {
        Some("a hot config cannot move its sealing store; it holds only `plan` and `sealing`")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_sizes_give_their_proof_types() {
        let cfg = SealingConfig {
            allowed_sizes: vec![SectorSize(2048), SectorSize(32 << 30)],
            ..SealingConfig::default()
        };
        assert_eq!(cfg.allowed_proof_types(), [5, 10, 15, 8, 13, 18]);
    }
}
