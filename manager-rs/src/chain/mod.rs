//! What the manager needs of a chain, as one trait; the embedded devnet ([`devnet`]) is its
//! first implementation.

use std::collections::BTreeMap;

use anyhow::Result;
use damocles_manager_api::json::{Bytes, Cid, Commitment};
use damocles_manager_api::types::{ActorId, ChainEpoch, DealId, SealProofType, SectorNumber};
use jsonrpsee::core::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub mod devnet;
pub mod outbox;
pub mod randomness;
pub mod views;

/// Domain separation tags of chain randomness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(i64)]
pub enum DomainSeparationTag {
    /// Block tickets.
    TicketProduction = 1,
    /// Leader election.
    ElectionProofProduction = 2,
    /// WinningPoSt challenges.
    WinningPoStChallengeSeed = 3,
    /// WindowPoSt challenges.
    WindowedPoStChallengeSeed = 4,
    /// Sealing tickets.
    SealRandomness = 5,
    /// Interactive PoRep seeds.
    InteractiveSealChallengeSeed = 6,
    /// Deadline assignment.
    WindowedPoStDeadlineAssignment = 7,
    /// Market cron.
    MarketDealCronSeed = 8,
    /// WindowPoSt commit randomness.
    PoStChainCommit = 9,
}

/// Epochs of chain finality (`SealRandomnessLookback`).
pub const CHAIN_FINALITY: ChainEpoch = 900;
/// Epochs after the seed epoch before a seed is handed out.
pub const INTERACTIVE_POREP_CONFIDENCE: ChainEpoch = 6;
/// Oldest ticket a PreCommit may use: `head - (MAX_PRE_COMMIT_RANDOMNESS_LOOKBACK)`.
pub const MAX_PRE_COMMIT_RANDOMNESS_LOOKBACK: ChainEpoch = 2880 + CHAIN_FINALITY;
/// Epochs per day at 30-second blocks (the unit of sector lifetimes).
pub const EPOCHS_PER_DAY: ChainEpoch = 2880;
/// Shortest sector lifetime.
pub const MIN_SECTOR_EXPIRATION: ChainEpoch = 180 * EPOCHS_PER_DAY;
/// Longest sector lifetime from activation.
pub const MAX_SECTOR_EXPIRATION_EXTENSION: ChainEpoch = 1278 * EPOCHS_PER_DAY;

/// The CBOR encoding of a miner's ID address, the entropy of miner randomness.
pub fn miner_entropy(miner: ActorId) -> Vec<u8> {
    let mut addr = vec![0u8]; // protocol 0: ID
    let mut v = miner;
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            addr.push(b);
            break;
        }
        addr.push(b | 0x80);
    }
    let mut out = vec![0x40 | addr.len() as u8]; // CBOR byte string, short length
    out.extend(addr);
    out
}

/// A fresh message id: a CIDv1 (raw, sha2-256) of the message and a random nonce.
pub fn new_message_id(msg: &Message) -> Result<Cid> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(msg)?);
    h.update(rand::random::<[u8; 16]>());
    let digest: [u8; 32] = h.finalize().into();
    let mh = cid::multihash::Multihash::<64>::wrap(0x12, &digest)?;
    Ok(Cid(cid::Cid::new_v1(0x55, mh).to_string()))
}

/// The chain's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Head {
    /// Height.
    pub epoch: ChainEpoch,
    /// Unix seconds the head was made.
    pub timestamp: i64,
}

/// Network constants the manager needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkParams {
    /// Network name.
    pub network_name: String,
    /// Seconds per epoch.
    pub block_delay_secs: u64,
    /// Epochs between PreCommit and the seed.
    pub pre_commit_challenge_delay: ChainEpoch,
    /// Network version.
    pub network_version: u32,
    /// Deadlines per proving period.
    #[serde(rename = "WPoStPeriodDeadlines")]
    pub wpost_period_deadlines: u64,
    /// Epochs per deadline.
    #[serde(rename = "WPoStChallengeWindow")]
    pub wpost_challenge_window: ChainEpoch,
    /// Epochs between the challenge and the deadline's open.
    #[serde(rename = "WPoStChallengeLookback")]
    pub wpost_challenge_lookback: ChainEpoch,
    /// Epochs before a deadline's open after which faults cannot be declared for it.
    pub fault_declaration_cutoff: ChainEpoch,
    /// Epochs a PreCommit waits for its proof at most.
    pub max_prove_commit_duration: ChainEpoch,
}

impl NetworkParams {
    /// Epochs per proving period.
    pub fn wpost_proving_period(&self) -> ChainEpoch {
        self.wpost_challenge_window * self.wpost_period_deadlines as ChainEpoch
    }
}

/// A miner actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChainMinerInfo {
    /// Actor id.
    pub id: ActorId,
    /// Sector size.
    pub sector_size: u64,
    /// Seal proof of new sectors.
    pub seal_proof_type: SealProofType,
    /// WindowPoSt proof (chain integer).
    pub window_post_proof_type: i64,
    /// Sectors per partition.
    pub window_post_partition_sectors: u64,
    /// Start of the current proving period's offset.
    pub proving_period_offset: ChainEpoch,
}

/// One sector of a PreCommitSectorBatch2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PreCommitParams {
    /// Seal proof.
    pub seal_proof: SealProofType,
    /// Number.
    pub sector_number: SectorNumber,
    /// CommR as a CID.
    #[serde(rename = "SealedCID")]
    pub sealed_cid: Cid,
    /// Ticket epoch.
    pub seal_rand_epoch: ChainEpoch,
    /// Deals in the sector.
    #[serde(rename = "DealIDs")]
    pub deal_ids: Vec<DealId>,
    /// Expiration.
    pub expiration: ChainEpoch,
    /// CommD as a CID (absent for CC sectors).
    pub unsealed_cid: Option<Cid>,
}

/// One sector of a ProveCommitSectors3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorActivation {
    /// Number.
    pub sector_number: SectorNumber,
    /// Deals activated with it.
    #[serde(rename = "DealIDs")]
    pub deal_ids: Vec<DealId>,
    /// Its PoRep proof.
    pub proof: Bytes,
}

/// What a message does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MethodCall {
    /// PreCommits.
    PreCommitSectorBatch2 {
        /// Sectors.
        sectors: Vec<PreCommitParams>,
    },
    /// ProveCommits.
    ProveCommitSectors3 {
        /// Sectors.
        activations: Vec<SectorActivation>,
        /// Fail the message if any sector fails.
        require_activation_success: bool,
    },
    /// A WindowPoSt.
    SubmitWindowedPoSt {
        /// Deadline index.
        deadline: u64,
        /// Partitions proven, with the sectors skipped in each.
        partitions: Vec<PoStPartition>,
        /// The proofs.
        proofs: Vec<Bytes>,
        /// Commit epoch.
        chain_commit_epoch: ChainEpoch,
        /// Commit randomness.
        chain_commit_rand: Bytes,
    },
    /// Recoveries.
    DeclareFaultsRecovered {
        /// Per deadline and partition.
        recoveries: Vec<RecoveryDeclaration>,
    },
}

impl MethodCall {
    /// The actor method's name.
    pub fn name(&self) -> &'static str {
        match self {
            MethodCall::PreCommitSectorBatch2 { .. } => "PreCommitSectorBatch2",
            MethodCall::ProveCommitSectors3 { .. } => "ProveCommitSectors3",
            MethodCall::SubmitWindowedPoSt { .. } => "SubmitWindowedPoSt",
            MethodCall::DeclareFaultsRecovered { .. } => "DeclareFaultsRecovered",
        }
    }
}

/// A partition in a WindowPoSt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PoStPartition {
    /// Partition index.
    pub index: u64,
    /// Sectors not proven.
    pub skipped: Vec<SectorNumber>,
}

/// Sectors declared recovered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RecoveryDeclaration {
    /// Deadline.
    pub deadline: u64,
    /// Partition.
    pub partition: u64,
    /// Sectors.
    pub sectors: Vec<SectorNumber>,
}

/// A message to a miner actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Message {
    /// Sender address.
    pub from: String,
    /// Miner actor.
    pub to: ActorId,
    /// Attached value (attoFIL).
    pub value: u128,
    /// What it does.
    pub call: MethodCall,
}

/// Where a message is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageStatus {
    /// Waiting for a block.
    Pending,
    /// Executed in a block.
    Executed {
        /// The block's epoch.
        epoch: ChainEpoch,
        /// Exit code (0: success).
        exit_code: i64,
        /// What went wrong, for a failure.
        error: Option<String>,
    },
}

/// A PreCommit on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PreCommitOnChain {
    /// The params as sent.
    pub info: PreCommitParams,
    /// Epoch it landed.
    pub pre_commit_epoch: ChainEpoch,
}

/// An active sector on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorOnChainInfo {
    /// Number.
    pub sector_number: SectorNumber,
    /// Seal proof.
    pub seal_proof: SealProofType,
    /// CommR.
    #[serde(rename = "SealedCID")]
    pub sealed_cid: Cid,
    /// Deals.
    #[serde(rename = "DealIDs")]
    pub deal_ids: Vec<DealId>,
    /// Activation epoch.
    pub activation: ChainEpoch,
    /// Expiration epoch.
    pub expiration: ChainEpoch,
    /// Deadline it is proven in.
    pub deadline: u64,
    /// Partition in that deadline.
    pub partition: u64,
    /// The proof verified when it was activated.
    pub proof_verified: bool,
}

/// A partition of a deadline.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Partition {
    /// All sectors.
    pub all_sectors: Vec<SectorNumber>,
    /// Faulty sectors.
    pub faulty_sectors: Vec<SectorNumber>,
    /// Faulty sectors declared recovered.
    pub recovering_sectors: Vec<SectorNumber>,
    /// Sectors proven in the current proving period.
    pub proven_sectors: Vec<SectorNumber>,
}

/// A miner's current deadline (`dline.Info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeadlineInfo {
    /// Height asked at.
    pub current_epoch: ChainEpoch,
    /// Start of the proving period.
    pub period_start: ChainEpoch,
    /// Deadline index.
    pub index: u64,
    /// First epoch of the deadline.
    pub open: ChainEpoch,
    /// First epoch after it.
    pub close: ChainEpoch,
    /// Challenge epoch.
    pub challenge: ChainEpoch,
    /// Last epoch to declare faults.
    pub fault_cutoff: ChainEpoch,
}

impl DeadlineInfo {
    /// Deadline `index` of the period starting at `period_start`, seen at `current_epoch`.
    pub fn new(
        params: &NetworkParams,
        current_epoch: ChainEpoch,
        period_start: ChainEpoch,
        index: u64,
    ) -> Self {
        let open = period_start + index as ChainEpoch * params.wpost_challenge_window;
        DeadlineInfo {
            current_epoch,
            period_start,
            index,
            open,
            close: open + params.wpost_challenge_window,
            challenge: open - params.wpost_challenge_lookback,
            fault_cutoff: open - params.fault_declaration_cutoff,
        }
    }
}

/// A deal proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DealProposal {
    /// Piece CID.
    #[serde(rename = "PieceCID")]
    pub piece_cid: Cid,
    /// Padded piece size.
    pub piece_size: u64,
    /// Verified deal.
    pub verified_deal: bool,
    /// Client address.
    pub client: String,
    /// Provider (miner actor).
    pub provider: ActorId,
    /// Free text.
    pub label: String,
    /// Must be activated before.
    pub start_epoch: ChainEpoch,
    /// Ends.
    pub end_epoch: ChainEpoch,
}

/// A deal on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MarketDeal {
    /// Deal id.
    #[serde(rename = "DealID")]
    pub deal_id: DealId,
    /// The proposal.
    pub proposal: DealProposal,
    /// Publishing message.
    pub publish_cid: Cid,
    /// Sector it was activated in (-1: not yet).
    pub sector_start_epoch: ChainEpoch,
    /// Sector holding it.
    pub sector_number: Option<SectorNumber>,
}

/// Miner power.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MinerPower {
    /// Active sectors.
    pub active_sectors: u64,
    /// Faulty sectors.
    pub faulty_sectors: u64,
    /// Raw bytes of active, non-faulty sectors.
    pub raw_byte_power: u64,
}

/// A miner elected to make the block of an epoch: it must answer with a WinningPoSt of the
/// challenged sectors among `sectors` before `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Election {
    /// The block's epoch.
    pub epoch: ChainEpoch,
    /// The WinningPoSt challenge randomness.
    pub randomness: Commitment,
    /// The miner's sectors eligible at the election (active, not faulty), by number.
    pub sectors: Vec<SectorOnChainInfo>,
    /// Unix seconds after which the block is missed.
    pub expires_at: i64,
}

/// How a submitted block proof ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockOutcome {
    /// The proof verified: the block is the miner's.
    Won,
    /// The proof did not verify.
    Rejected,
    /// Too late, or no such election.
    Missed,
}

/// Why a chain call failed, by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The chain could not be reached or could not answer (a node down, a timeout, a store
    /// error): the same call may succeed later.
    #[error("chain unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    /// The chain answered and refused the request (an unknown miner, an invalid message): the
    /// same call will fail again.
    #[error("{0}")]
    Rejected(String),
}

impl ChainError {
    /// A refusal, with what was wrong.
    pub fn rejected(why: impl Into<String>) -> ChainError {
        ChainError::Rejected(why.into())
    }

    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ChainError::Unavailable(_))
    }
}

/// Errors of the chain's own machinery (its store, its transport) are unavailability.
impl From<anyhow::Error> for ChainError {
    fn from(e: anyhow::Error) -> Self {
        ChainError::Unavailable(e)
    }
}

/// A chain call's result.
pub type ChainResult<T> = std::result::Result<T, ChainError>;

/// What the manager needs of a chain. Everything in the manager goes through it.
#[async_trait]
pub trait Chain: Send + Sync + 'static {
    /// The head.
    async fn head(&self) -> ChainResult<Head>;

    /// Head changes: the receiver always holds the latest head.
    fn subscribe(&self) -> watch::Receiver<Head>;

    /// Network constants.
    async fn network_params(&self) -> ChainResult<NetworkParams>;

    /// A miner actor; `None` if it does not exist.
    async fn miner_info(&self, miner: ActorId) -> ChainResult<Option<ChainMinerInfo>>;

    /// Ticket randomness (`StateGetRandomnessFromTickets`).
    async fn randomness_from_tickets(
        &self,
        tag: DomainSeparationTag,
        epoch: ChainEpoch,
        entropy: &[u8],
    ) -> ChainResult<Commitment>;

    /// Beacon randomness (`StateGetRandomnessFromBeacon`).
    async fn randomness_from_beacon(
        &self,
        tag: DomainSeparationTag,
        epoch: ChainEpoch,
        entropy: &[u8],
    ) -> ChainResult<Commitment>;

    /// Which of `numbers` the miner has allocated (`StateMinerAllocated`).
    async fn allocated(
        &self,
        miner: ActorId,
        numbers: &[SectorNumber],
    ) -> ChainResult<Vec<SectorNumber>>;

    /// A PreCommit on chain.
    async fn pre_commit_info(
        &self,
        miner: ActorId,
        number: SectorNumber,
    ) -> ChainResult<Option<PreCommitOnChain>>;

    /// An active sector.
    async fn sector_info(
        &self,
        miner: ActorId,
        number: SectorNumber,
    ) -> ChainResult<Option<SectorOnChainInfo>>;

    /// Every active sector of a miner.
    async fn miner_sectors(&self, miner: ActorId) -> ChainResult<Vec<SectorOnChainInfo>>;

    /// The miner's current deadline.
    async fn proving_deadline(&self, miner: ActorId) -> ChainResult<DeadlineInfo>;

    /// The partitions of a deadline.
    async fn partitions(&self, miner: ActorId, deadline: u64) -> ChainResult<Vec<Partition>>;

    /// Power of a miner.
    async fn miner_power(&self, miner: ActorId) -> ChainResult<MinerPower>;

    /// A deal.
    async fn market_deal(&self, deal: DealId) -> ChainResult<Option<MarketDeal>>;

    /// Publishes a deal (the market's part; on the devnet it lands at once).
    async fn publish_deal(&self, proposal: DealProposal) -> ChainResult<MarketDeal>;

    /// Pushes a message under an id the caller chose (see [`new_message_id`]) and recorded
    /// first. Idempotent: pushing the same id and message again changes nothing; the same id
    /// with another message is an error.
    async fn push_message(&self, id: &Cid, msg: Message) -> ChainResult<()>;

    /// Where a message is; `None` if the chain does not know it.
    async fn message_status(&self, id: &Cid) -> ChainResult<Option<MessageStatus>>;

    /// Counts of what the chain holds, for views.
    async fn summary(&self) -> ChainResult<BTreeMap<String, u64>>;

    /// The elections of a miner still waiting for its WinningPoSt.
    async fn pending_elections(&self, miner: ActorId) -> ChainResult<Vec<Election>>;

    /// Submits the WinningPoSt of an election; the chain verifies it.
    async fn submit_block(
        &self,
        miner: ActorId,
        epoch: ChainEpoch,
        proofs: Vec<Bytes>,
    ) -> ChainResult<BlockOutcome>;
}
