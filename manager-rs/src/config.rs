//! `sector-manager.cfg`: the keys and defaults of damocles (manager-spec §7), plus our
//! additions (`[Common.Auth]`, `[Devnet]`).
//!
//! Keys are matched exactly as damocles documents them (PascalCase); an unknown key is an error
//! that names it, where damocles silently ignores typos.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use damocles_config::load::no_hint;
use serde::{Deserialize, Serialize};

pub use damocles_config::units::{FilAmount, GoDuration, SectorSize};

/// The config file name in the home (or conf) directory.
pub const CONFIG_FILE: &str = "sector-manager.cfg";
/// The ext-prover config file name.
pub const EXT_PROVER_FILE: &str = "ext-prover.cfg";

fn dur(secs: u64) -> GoDuration {
    GoDuration(Duration::from_secs(secs))
}

/// The whole `sector-manager.cfg`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ManagerConfig {
    /// Settings shared by all miners.
    pub common: CommonConfig,
    /// One entry per miner actor.
    pub miners: Vec<MinerConfig>,
    /// The embedded devnet chain (our addition), used when `Common.API.Chain = "devnet"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devnet: Option<DevnetConfig>,
}

/// `[Common]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CommonConfig {
    /// Globs of directories holding a `sectorstore.json`.
    pub scan_persist_stores: Vec<String>,
    /// Endpoints.
    #[serde(rename = "API")]
    pub api: ApiConfig,
    /// Go plugins (not loadable here; objstore plugins are named by `PluginName`).
    pub plugins: PluginsConfig,
    /// Read-only copies of deal pieces.
    pub piece_stores: Vec<PieceStoreConfig>,
    /// Where sealed sectors are kept.
    pub persist_stores: Vec<PersistStoreConfig>,
    /// Deprecated; accepted and ignored.
    #[serde(rename = "MongoKVStore", skip_serializing_if = "Option::is_none")]
    pub mongo_kv_store: Option<toml::Value>,
    /// The state database.
    #[serde(rename = "DB")]
    pub db: DbConfig,
    /// Sector checks for PoSt.
    pub proving: ProvingConfig,
    /// Authentication of the RPC server (our addition).
    pub auth: AuthConfig,
}

/// `[Common.API]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ApiConfig {
    /// The chain: `"devnet"` for the embedded devnet; a Lotus/Venus endpoint is not supported yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    /// sophon-messager endpoint (unused with the devnet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messager: Option<String>,
    /// droplet endpoint (unused with the devnet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub market: Option<String>,
    /// sophon-gateway endpoints.
    pub gateway: Vec<String>,
    /// Common token of the endpoints.
    pub token: String,
    /// Head polling interval of the event bus.
    pub chain_event_interval: GoDuration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            chain: None,
            messager: None,
            market: None,
            gateway: Vec::new(),
            token: String::new(),
            chain_event_interval: dur(60),
        }
    }
}

/// `[Common.Plugins]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PluginsConfig {
    /// Directory searched for objstore plugins named by `PluginName`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
}

/// `[[Common.PieceStores]]`. `Debug` hides the credentials of `Meta`.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PieceStoreConfig {
    /// Instance name (default: the path).
    pub name: String,
    /// Location.
    pub path: String,
    /// Backend settings.
    pub meta: BTreeMap<String, String>,
    /// Refuses writes.
    pub read_only: bool,
    /// Deprecated spelling of `PluginName`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// objstore plugin (default: the file-system backend).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_name: Option<String>,
}

impl std::fmt::Debug for PieceStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PieceStoreConfig")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("meta", &vc_processors::layout::redact_meta(&self.meta))
            .field("read_only", &self.read_only)
            .field("plugin", &self.plugin)
            .field("plugin_name", &self.plugin_name)
            .finish()
    }
}

/// `[[Common.PersistStores]]`: the same settings as a `sectorstore.json`.
pub use vc_processors::layout::PersistStore as PersistStoreConfig;

/// `[Common.DB]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DbConfig {
    /// `badger` (damocles' default) and `rocksdb` both mean the embedded RocksDB here.
    pub driver: String,
    /// Embedded database location.
    pub badger: BadgerConfig,
    /// Not supported; accepted so damocles configs parse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mongo: Option<toml::Value>,
    /// Not supported; accepted so damocles configs parse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<toml::Value>,
}

impl Default for DbConfig {
    fn default() -> Self {
        DbConfig {
            driver: "badger".into(),
            badger: BadgerConfig::default(),
            mongo: None,
            plugin: None,
        }
    }
}

/// `[Common.DB.Badger]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BadgerConfig {
    /// Directory of the database (`""`: the home directory).
    pub base_dir: String,
}

/// `[Common.Proving]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ProvingConfig {
    /// Sectors checked at once (0: unlimited).
    pub parallel_check_limit: u64,
    /// Bound on one sector's check.
    pub single_check_timeout: GoDuration,
    /// Bound on one partition's checks.
    pub partition_check_timeout: GoDuration,
    /// The worker-prover job queue.
    pub worker_prover: WorkerProverConfig,
    /// Where sectors of stores without local paths (S3) are fetched for a proof (our
    /// addition; default: `post-scratch` in the manager's home). Made mode 0700.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scratch_dir: Option<std::path::PathBuf>,
}

impl Default for ProvingConfig {
    fn default() -> Self {
        ProvingConfig {
            parallel_check_limit: 128,
            single_check_timeout: dur(600),
            partition_check_timeout: dur(1200),
            worker_prover: WorkerProverConfig::default(),
            scratch_dir: None,
        }
    }
}

/// `[Common.Proving.WorkerProver]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct WorkerProverConfig {
    /// Attempts per job.
    pub job_max_try: u32,
    /// A running job without heartbeat for this long fails.
    pub heartbeat_timeout: GoDuration,
    /// Finished jobs are deleted after this.
    pub job_lifetime: GoDuration,
}

impl Default for WorkerProverConfig {
    fn default() -> Self {
        WorkerProverConfig {
            job_max_try: 2,
            heartbeat_timeout: dur(15),
            job_lifetime: dur(25 * 3600),
        }
    }
}

/// `[Common.Auth]` (our addition). Every call needs a token signed by the home's secret
/// (`docs/security.md`); this section only keeps the deprecated static token. `Debug` hides it.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AuthConfig {
    /// Deprecated: when not empty, `Authorization: Bearer <Token>` is also accepted, granting
    /// `write` only.
    pub token: String,
    /// Networks (`10.0.0.0/8`, or single addresses) whose callers without a token get `write`:
    /// for unmodified damocles workers, which send none. Empty (the default): none.
    pub unauthenticated_write_from: Vec<String>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("token", &(!self.token.is_empty()).then_some("<redacted>"))
            .field(
                "unauthenticated_write_from",
                &self.unauthenticated_write_from,
            )
            .finish()
    }
}

/// `[[Miners]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MinerConfig {
    /// Miner actor id.
    pub actor: u64,
    /// Sector allocation.
    pub sector: MinerSectorConfig,
    /// Snap-up.
    pub snap_up: SnapUpConfig,
    /// PreCommit, ProveCommit and Terminate messages.
    pub commitment: CommitmentConfig,
    /// WindowPoSt.
    #[serde(rename = "PoSt", alias = "Post")]
    pub post: PoStConfig,
    /// WinningPoSt.
    pub proof: ProofConfig,
    /// Sealing rules.
    pub sealing: MinerSealingConfig,
    /// Deprecated; accepted and ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deal: Option<toml::Value>,
}

/// `[Miners.Sector]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MinerSectorConfig {
    /// Deprecated lower bound.
    pub init_number: u64,
    /// Numbers allocated are above this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_number: Option<u64>,
    /// Numbers allocated are at most this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_number: Option<u64>,
    /// Sectors are allocated for this miner.
    pub enabled: bool,
    /// Deals go into its sectors.
    pub enable_deals: bool,
    /// CC sector lifetime.
    pub lifetime_days: u64,
    /// Log more.
    pub verbose: bool,
}

impl Default for MinerSectorConfig {
    fn default() -> Self {
        MinerSectorConfig {
            init_number: 0,
            min_number: None,
            max_number: None,
            enabled: true,
            enable_deals: false,
            lifetime_days: 540,
            verbose: false,
        }
    }
}

/// `[Miners.SnapUp]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SnapUpConfig {
    /// Snap-up allocation.
    pub enabled: bool,
    /// Deprecated single sender.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Senders.
    pub senders: Vec<String>,
    /// Attach collateral.
    pub send_fund: bool,
    /// Gas estimate multiplier.
    pub gas_over_estimation: f64,
    /// Premium multiplier.
    pub gas_over_premium: f64,
    /// Fee cap.
    pub gas_fee_cap: FilAmount,
    /// Deprecated fee cap.
    pub max_fee_cap: FilAmount,
    /// Delete the CC files after the upgrade.
    #[serde(rename = "CleanupCCData")]
    pub cleanup_cc_data: bool,
    /// Confidence of the update message.
    pub message_confidence: i64,
    /// Confidence before the old files go.
    pub release_confidence: i64,
    /// Deprecated spelling of `MessageConfidence`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_confidential: Option<i64>,
    /// Deprecated spelling of `ReleaseConfidence`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_condidential: Option<i64>,
    /// Retries.
    pub retry: SnapUpRetryConfig,
}

impl Default for SnapUpConfig {
    fn default() -> Self {
        SnapUpConfig {
            enabled: false,
            sender: None,
            senders: Vec::new(),
            send_fund: true,
            gas_over_estimation: 1.2,
            gas_over_premium: 0.0,
            gas_fee_cap: FilAmount(Some(5_000_000_000)),
            max_fee_cap: FilAmount(None),
            cleanup_cc_data: true,
            message_confidence: 15,
            release_confidence: 30,
            message_confidential: None,
            release_condidential: None,
            retry: SnapUpRetryConfig::default(),
        }
    }
}

/// `[Miners.SnapUp.Retry]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SnapUpRetryConfig {
    /// Attempts (unset: unlimited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u64>,
    /// Poll interval.
    pub poll_interval: GoDuration,
    /// Wait after an API failure.
    #[serde(rename = "APIFailureWait")]
    pub api_failure_wait: GoDuration,
    /// Wait after a local failure.
    pub local_failure_wait: GoDuration,
}

impl Default for SnapUpRetryConfig {
    fn default() -> Self {
        SnapUpRetryConfig {
            max_attempts: None,
            poll_interval: dur(180),
            api_failure_wait: dur(180),
            local_failure_wait: dur(180),
        }
    }
}

/// `[Miners.Commitment]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CommitmentConfig {
    /// Epochs after inclusion before a message counts as landed.
    pub confidence: i64,
    /// PreCommit messages.
    pub pre: CommitmentPolicy,
    /// ProveCommit messages.
    pub prove: CommitmentPolicy,
    /// Terminate messages.
    pub terminate: CommitmentPolicy,
}

impl Default for CommitmentConfig {
    fn default() -> Self {
        CommitmentConfig {
            confidence: 10,
            pre: CommitmentPolicy::with_threshold(2),
            prove: CommitmentPolicy::with_threshold(4),
            terminate: CommitmentPolicy::with_threshold(2),
        }
    }
}

/// `[Miners.Commitment.Pre|Prove|Terminate]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CommitmentPolicy {
    /// Deprecated single sender.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Senders.
    pub senders: Vec<String>,
    /// Attach deposit / collateral.
    pub send_fund: bool,
    /// Gas estimate multiplier.
    pub gas_over_estimation: f64,
    /// Premium multiplier.
    pub gas_over_premium: f64,
    /// Fee cap.
    pub gas_fee_cap: FilAmount,
    /// Deprecated fee cap.
    pub max_fee_cap: FilAmount,
    /// Batching.
    pub batch: BatchConfig,
}

impl Default for CommitmentPolicy {
    fn default() -> Self {
        CommitmentPolicy::with_threshold(2)
    }
}

impl CommitmentPolicy {
    fn with_threshold(threshold: usize) -> Self {
        CommitmentPolicy {
            sender: None,
            senders: Vec::new(),
            send_fund: true,
            gas_over_estimation: 1.2,
            gas_over_premium: 0.0,
            gas_fee_cap: FilAmount(Some(5_000_000_000)),
            max_fee_cap: FilAmount(None),
            batch: BatchConfig {
                threshold,
                ..BatchConfig::default()
            },
        }
    }
}

/// `[Miners.Commitment.<X>.Batch]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BatchConfig {
    /// Send as soon as this many sectors wait.
    pub threshold: usize,
    /// Send a sector that has waited this long (counted in epochs of the chain's block time
    /// since its ticket or seed).
    pub max_wait: GoDuration,
    /// How often waiting sectors are looked at.
    pub check_interval: GoDuration,
    /// Gas estimate multiplier.
    pub gas_over_estimation: f64,
    /// Premium multiplier.
    pub gas_over_premium: f64,
    /// Fee cap.
    pub gas_fee_cap: FilAmount,
    /// Deprecated fee cap.
    pub max_fee_cap: FilAmount,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            threshold: 2,
            max_wait: dur(3600),
            check_interval: dur(60),
            gas_over_estimation: 1.2,
            gas_over_premium: 0.0,
            gas_fee_cap: FilAmount(Some(5_000_000_000)),
            max_fee_cap: FilAmount(None),
        }
    }
}

/// `[Miners.PoSt]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PoStConfig {
    /// Deprecated single sender.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Senders.
    pub senders: Vec<String>,
    /// WindowPoSt for this miner.
    pub enabled: bool,
    /// Real vanilla proof of one challenge per sector before proving.
    pub strict_check: bool,
    /// Batches of partitions proven at once.
    pub parallel: bool,
    /// Gas estimate multiplier.
    pub gas_over_estimation: f64,
    /// Premium multiplier.
    pub gas_over_premium: f64,
    /// Fee cap.
    pub gas_fee_cap: FilAmount,
    /// Deprecated fee cap.
    pub max_fee_cap: FilAmount,
    /// Confidence of waits.
    pub confidence: i64,
    /// Epochs after the deadline opens before submitting (0: 4).
    pub submit_confidence: i64,
    /// Epochs after the challenge before starting (0: 10).
    pub challenge_confidence: i64,
    /// Most sectors declared recovered (0: unlimited).
    pub max_recover_sector_limit: u64,
    /// Most partitions per SubmitWindowedPoSt (0: the protocol maximum).
    pub max_partitions_per_po_st_message: u64,
    /// Most partitions per recovery message (0: unlimited).
    pub max_partitions_per_recovery_message: u64,
    /// Ours: warn when a WindowPoSt is submitted with less than this part of its challenge
    /// window left (0.0..=1.0; default 0.5; 0 never warns), naming what was running.
    pub margin_warn_ratio: f64,
}

impl Default for PoStConfig {
    fn default() -> Self {
        PoStConfig {
            sender: None,
            senders: Vec::new(),
            enabled: true,
            strict_check: true,
            parallel: false,
            gas_over_estimation: 1.2,
            gas_over_premium: 0.0,
            gas_fee_cap: FilAmount(Some(5_000_000_000)),
            max_fee_cap: FilAmount(None),
            confidence: 10,
            submit_confidence: 0,
            challenge_confidence: 0,
            max_recover_sector_limit: 0,
            max_partitions_per_po_st_message: 0,
            max_partitions_per_recovery_message: 0,
            margin_warn_ratio: 0.5,
        }
    }
}

/// `[Miners.Proof]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ProofConfig {
    /// WinningPoSt for this miner.
    pub enabled: bool,
}

/// `[Miners.Sealing]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MinerSealingConfig {
    /// Deals must start after `head + SealingEpochDuration`.
    pub sealing_epoch_duration: i64,
    /// ProveCommitSectors3 flag.
    pub require_activation_success: bool,
    /// ProveReplicaUpdates3 flag.
    pub require_activation_success_update: bool,
    /// ProveCommitSectors3 flag.
    pub require_notification_success: bool,
    /// ProveReplicaUpdates3 flag.
    pub require_notification_success_update: bool,
    /// Allocate synthetic-PoRep seal proof types.
    pub use_synthetic_po_rep: bool,
    /// NI-PoRep proving deadline offset.
    pub sealing_sector_deadline_delay_ni: u64,
}

impl Default for MinerSealingConfig {
    fn default() -> Self {
        MinerSealingConfig {
            sealing_epoch_duration: 0,
            require_activation_success: false,
            require_activation_success_update: false,
            require_notification_success: false,
            require_notification_success_update: false,
            use_synthetic_po_rep: false,
            sealing_sector_deadline_delay_ni: 6,
        }
    }
}

/// `[Devnet]` (our addition): the embedded chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DevnetConfig {
    /// Seconds per epoch.
    pub block_delay_secs: u64,
    /// Seed of the chain's randomness.
    pub seed: String,
    /// Epochs between PreCommit and the interactive seed.
    pub pre_commit_challenge_delay: i64,
    /// Deadlines per proving period (48 on Filecoin networks; fewer make short periods for
    /// tests). Fixed when the chain is created.
    #[serde(rename = "WPoStPeriodDeadlines")]
    pub wpost_period_deadlines: u64,
    /// Epochs of one WindowPoSt deadline.
    #[serde(rename = "WPoStChallengeWindow")]
    pub wpost_challenge_window: i64,
    /// Epochs before a deadline opens that its challenge is drawn.
    #[serde(rename = "WPoStChallengeLookback")]
    pub wpost_challenge_lookback: i64,
    /// Epochs before a deadline opens after which faults can no longer be declared for it.
    pub fault_declaration_cutoff: i64,
    /// Epochs a PreCommit stays valid before its ProveCommit.
    pub max_prove_commit_duration: i64,
    /// Chance, each epoch, that a miner with power is elected to make a block and must answer
    /// with a WinningPoSt (0 disables elections).
    #[serde(rename = "WinningPoStProbability")]
    pub winning_post_probability: f64,
    /// Seconds an elected miner has to submit its WinningPoSt before the block is missed.
    #[serde(rename = "WinningPoStBudgetSecs")]
    pub winning_post_budget_secs: u64,
    /// Directories whose files `util deals import` (`Damocles.DealsImport`) may read; a path
    /// elsewhere, or leading out through `..` or a symlink, is refused. Empty: no import.
    pub deal_import_dirs: Vec<String>,
    /// Miner actors created at genesis.
    pub miners: Vec<DevnetMinerConfig>,
}

impl Default for DevnetConfig {
    fn default() -> Self {
        DevnetConfig {
            block_delay_secs: 1,
            seed: "damocles-devnet".into(),
            pre_commit_challenge_delay: 10,
            wpost_period_deadlines: 48,
            wpost_challenge_window: 20,
            wpost_challenge_lookback: 5,
            fault_declaration_cutoff: 7,
            max_prove_commit_duration: 30 * 2880,
            winning_post_probability: 0.1,
            winning_post_budget_secs: 25,
            deal_import_dirs: Vec::new(),
            miners: Vec::new(),
        }
    }
}

/// `[[Devnet.Miners]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DevnetMinerConfig {
    /// Actor id.
    pub actor: u64,
    /// Sector size (`2KiB`, `8MiB`, …).
    pub sector_size: SectorSize,
}

/// Parses a TOML text into `T`; `origin` names it in errors. Unknown keys are errors naming
/// each key by its dotted path (PascalCase, as damocles documents them).
pub fn parse_strict<T: serde::de::DeserializeOwned>(text: &str, origin: &str) -> Result<T> {
    damocles_config::load::parse_strict(
        text,
        origin,
        no_hint,
        Some("keys are PascalCase, as damocles documents them"),
    )
}

impl ManagerConfig {
    /// Parses a config text; `origin` names it in errors. Unknown keys are errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let cfg: ManagerConfig = parse_strict(text, origin)?;
        cfg.validate().with_context(|| origin.to_string())?;
        Ok(cfg)
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the config {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Checks what serde cannot: duplicate miners, devnet settings.
    pub fn validate(&self) -> Result<()> {
        let mut seen = std::collections::BTreeSet::new();
        for m in &self.miners {
            if m.actor == 0 {
                bail!("[[Miners]]: `Actor` is required (a miner actor id)");
            }
            if !seen.insert(m.actor) {
                bail!("[[Miners]]: miner {} appears twice", m.actor);
            }
            if !(0.0..=1.0).contains(&m.post.margin_warn_ratio) {
                bail!(
                    "[[Miners]] {}: `PoSt.MarginWarnRatio` must be between 0 and 1, got {}",
                    m.actor,
                    m.post.margin_warn_ratio
                );
            }
            if let (Some(min), Some(max)) = (m.sector.min_number, m.sector.max_number) {
                if max <= min {
                    bail!("[[Miners]] {}: `Sector.MaxNumber` ({max}) must be above `Sector.MinNumber` ({min})", m.actor);
                }
            }
            for (what, p) in [
                ("Pre", &m.commitment.pre),
                ("Prove", &m.commitment.prove),
                ("Terminate", &m.commitment.terminate),
            ] {
                if p.batch.threshold == 0 {
                    bail!(
                        "[[Miners]] {}: `Commitment.{what}.Batch.Threshold` must be at least 1",
                        m.actor
                    );
                }
                if p.batch.check_interval.0.is_zero() {
                    bail!(
                        "[[Miners]] {}: `Commitment.{what}.Batch.CheckInterval` must not be 0",
                        m.actor
                    );
                }
            }
        }
        match self.common.db.driver.to_ascii_lowercase().as_str() {
            "badger" | "rocksdb" => {}
            other => bail!("[Common.DB] Driver {other:?} is not supported: this manager keeps its state in RocksDB (use \"badger\" or \"rocksdb\")"),
        }
        if let Some(chain) = &self.common.api.chain {
            if chain != "devnet" {
                bail!("[Common.API] Chain = {chain:?}: only the embedded devnet (\"devnet\") is supported so far");
            }
            let Some(dev) = &self.devnet else {
                bail!("[Common.API] Chain = \"devnet\" needs a [Devnet] section");
            };
            if dev.block_delay_secs == 0 {
                bail!("[Devnet] BlockDelaySecs must be at least 1");
            }
            if !(0.0..=1.0).contains(&dev.winning_post_probability) {
                bail!(
                    "[Devnet] WinningPoStProbability must be between 0 and 1, got {}",
                    dev.winning_post_probability
                );
            }
            if dev.winning_post_budget_secs == 0 {
                bail!("[Devnet] WinningPoStBudgetSecs must be at least 1");
            }
            if !(3..=48).contains(&dev.wpost_period_deadlines) {
                bail!("[Devnet] WPoStPeriodDeadlines must be between 3 and 48 (recoveries are declared two deadlines ahead)");
            }
            if dev.wpost_challenge_window
                <= dev
                    .wpost_challenge_lookback
                    .max(dev.fault_declaration_cutoff)
            {
                bail!("[Devnet] WPoStChallengeWindow must exceed WPoStChallengeLookback and FaultDeclarationCutoff");
            }
            for m in &self.miners {
                if !dev.miners.iter().any(|d| d.actor == m.actor) {
                    bail!("[[Miners]] {} has no actor on the devnet: add a [[Devnet.Miners]] entry with its SectorSize", m.actor);
                }
            }
        } else {
            bail!("[Common.API] Chain is not set: set it to \"devnet\" for the embedded devnet");
        }
        Ok(())
    }

    /// The miner's section.
    pub fn miner(&self, actor: u64) -> Option<&MinerConfig> {
        self.miners.iter().find(|m| m.actor == actor)
    }

    /// The config `daemon init --devnet` writes: one miner on the embedded devnet with a
    /// persist store under `home`.
    pub fn devnet_default(home: &Path, miner: u64, sector_size: u64) -> Self {
        let store = home.join("persist");
        let pieces = home.join("pieces");
        let mut cfg = ManagerConfig::default();
        cfg.common.api.chain = Some("devnet".into());
        cfg.common.persist_stores.push(PersistStoreConfig {
            name: "persist".into(),
            path: store.display().to_string(),
            ..PersistStoreConfig::default()
        });
        cfg.common.piece_stores.push(PieceStoreConfig {
            name: "pieces".into(),
            path: pieces.display().to_string(),
            ..PieceStoreConfig::default()
        });
        let mut m = MinerConfig {
            actor: miner,
            ..MinerConfig::default()
        };
        m.sector.enable_deals = true;
        // The devnet elects miners with power: they answer with WinningPoSts under `--miner`.
        m.proof.enabled = true;
        // Devnet epochs are short: send commitments quickly.
        for p in [
            &mut m.commitment.pre,
            &mut m.commitment.prove,
            &mut m.commitment.terminate,
        ] {
            p.batch.threshold = 1;
            p.batch.check_interval = dur(1);
            p.batch.max_wait = dur(30);
        }
        m.commitment.confidence = 1;
        cfg.miners.push(m);
        cfg.devnet = Some(DevnetConfig {
            miners: vec![DevnetMinerConfig {
                actor: miner,
                sector_size: SectorSize(sector_size),
            }],
            deal_import_dirs: vec![home.join("import").display().to_string()],
            ..DevnetConfig::default()
        });
        cfg
    }

    /// The config as TOML.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).context("serialising the config")
    }
}

/// Where the config and state live.
#[derive(Debug, Clone)]
pub struct HomeDir {
    /// The home directory.
    pub home: PathBuf,
    /// The directory holding `sector-manager.cfg` (the home unless `--conf-dir`).
    pub conf_dir: PathBuf,
}

impl HomeDir {
    /// The config file path.
    pub fn config_file(&self) -> PathBuf {
        self.conf_dir.join(CONFIG_FILE)
    }

    /// The database directory for a config.
    pub fn db_dir(&self, cfg: &ManagerConfig) -> PathBuf {
        let base = if cfg.common.db.badger.base_dir.is_empty() {
            self.home.clone()
        } else {
            PathBuf::from(&cfg.common.db.badger.base_dir)
        };
        base.join("rocksdb")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devnet_text(extra: &str) -> String {
        format!(
            "[Common.API]\nChain = \"devnet\"\n[[Miners]]\nActor = 1000\n{extra}\n[Devnet]\n[[Devnet.Miners]]\nActor = 1000\nSectorSize = \"2KiB\"\n"
        )
    }

    #[test]
    fn defaults_apply_under_partial_sections() {
        let cfg = ManagerConfig::parse(
            &devnet_text("[Miners.Commitment.Pre.Batch]\nThreshold = 8\n"),
            "t.cfg",
        )
        .expect("parse");
        let m = cfg.miner(1000).expect("miner");
        assert_eq!(m.commitment.pre.batch.threshold, 8);
        assert_eq!(m.commitment.prove.batch.threshold, 4);
        assert_eq!(m.commitment.pre.batch.max_wait.to_string(), "1h0m0s");
        assert!(m.sector.enabled);
        assert_eq!(m.sector.lifetime_days, 540);
        assert_eq!(cfg.common.proving.parallel_check_limit, 128);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = ManagerConfig::parse(&devnet_text("[Miners.Sector]\nMinNumbr = 3\n"), "t.cfg")
            .expect_err("typo");
        let msg = format!("{e:#}");
        assert!(msg.contains("Miners.0.Sector.MinNumbr"), "{msg}");
        assert!(msg.contains("t.cfg"), "{msg}");
    }

    #[test]
    fn bad_values_name_the_problem() {
        let e = ManagerConfig::parse(
            &devnet_text("[Miners.Commitment.Pre.Batch]\nMaxWait = \"later\"\n"),
            "t.cfg",
        )
        .expect_err("bad duration");
        assert!(format!("{e:#}").contains("later"), "{e:#}");
        let e = ManagerConfig::parse("[Common.API]\nChain = \"/ip4/1.2.3.4/tcp/1234\"\n", "t.cfg")
            .expect_err("no lotus yet");
        assert!(format!("{e:#}").contains("devnet"), "{e:#}");
    }

    #[test]
    fn the_post_spelling_of_the_docs_is_accepted() {
        let cfg = ManagerConfig::parse(&devnet_text("[Miners.Post]\nEnabled = false\n"), "t.cfg")
            .expect("Post");
        assert!(!cfg.miners[0].post.enabled);
    }

    #[test]
    fn devnet_default_round_trips() {
        let cfg = ManagerConfig::devnet_default(Path::new("/tmp/home"), 10000, 2048);
        let text = cfg.to_toml().expect("toml");
        let back = ManagerConfig::parse(&text, "init").expect("parse back");
        assert_eq!(back, cfg);
    }
}
