//! The payload types of the Venus API, with exactly the Go JSON of manager-spec §2.2 and
//! worker-spec §4.2: PascalCase field names as Go spells them (`ID`, `CommR`, `PieceCID`), the
//! few tagged fields (`Id`, `SectorId`, `MinerId`, `Deals`), `null` for Go nil slices and
//! pointers.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use vc_processors::layout::{sector_size_index, SECTOR_SIZES};

use crate::json::{go_string, BigInt, Bytes, Cid, Commitment};

/// `abi.ActorID`.
pub type ActorId = u64;
/// `abi.SectorNumber`.
pub type SectorNumber = u64;
/// `abi.ChainEpoch`.
pub type ChainEpoch = i64;
/// `abi.DealID`.
pub type DealId = u64;

/// `abi.SectorID`: `{"Miner": u64, "Number": u64}`; its text `s-t0<miner>-<number>` is the
/// sector's file name ([`vc_processors::layout`]).
pub use vc_processors::layout::SectorId;

/// `abi.RegisteredSealProof`: an integer (0–4 V1, 5–9 V1_1, 10–14 V1_1 synthetic PoRep, 15–19
/// V1_2 non-interactive PoRep; sizes 2 KiB, 8 MiB, 512 MiB, 32 GiB, 64 GiB in each group).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealProofType(pub i64);

impl SealProofType {
    /// The sector size, for a known type.
    pub fn sector_size(self) -> Option<u64> {
        (0..20)
            .contains(&self.0)
            .then(|| SECTOR_SIZES[(self.0 % 5) as usize])
    }

    /// The `V1_1` type for a sector size.
    pub fn v1_1_for_size(size: u64) -> Option<Self> {
        sector_size_index(size).map(|i| SealProofType(5 + i as i64))
    }
}

/// Defines a Go integer enum with `Unknown` for values this version does not know.
macro_rules! go_int_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:expr,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
            /// A value this version does not know.
            Unknown(u64),
        }

        impl $name {
            /// The wire number.
            pub fn code(self) -> u64 {
                match self {
                    $($name::$variant => $value,)*
                    $name::Unknown(v) => v,
                }
            }

            /// From the wire number.
            pub fn from_code(code: u64) -> Self {
                match code {
                    $($value => $name::$variant,)*
                    other => $name::Unknown(other),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_u64(self.code())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok($name::from_code(u64::deserialize(d)?))
            }
        }
    };
}

go_int_enum!(
    /// The outcome of a submission (`Res`).
    SubmitResult {
        /// Taken.
        Accepted = 1,
        /// The same submission was already taken.
        DuplicateSubmit = 2,
        /// A different submission for this sector was already taken.
        MismatchedSubmission = 3,
        /// Refused; `Desc` says why.
        Rejected = 4,
        /// The sector's files are not where they must be.
        FilesMissed = 5,
    }
);

go_int_enum!(
    /// The state of a submitted message (`State`).
    OnChainState {
        /// Waiting to be sent.
        Pending = 1,
        /// Sent, waiting to land.
        Packed = 2,
        /// Landed.
        Landed = 3,
        /// No such submission.
        NotFound = 4,
        /// Failed; may be submitted again.
        Failed = 5,
        /// Failed for good.
        PermFailed = 6,
        /// The sector must be aborted.
        ShouldAbort = 7,
    }
);

/// What a sealing thread can take: `null` or `[]` means any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AllocateSectorSpec {
    /// Miners the thread seals for.
    pub allowed_miners: Option<Vec<ActorId>>,
    /// Seal proof types the thread supports.
    pub allowed_proof_types: Option<Vec<SealProofType>>,
}

/// A newly allocated sector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocatedSector {
    /// The sector.
    #[serde(rename = "ID")]
    pub id: SectorId,
    /// Its seal proof type.
    #[serde(rename = "ProofType")]
    pub proof_type: SealProofType,
}

/// How many deals a sector wants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AcquireDealsSpec {
    /// Most deals.
    pub max_deals: Option<u64>,
    /// Least bytes of deal data worth a deal sector.
    pub min_used_space: Option<u64>,
}

/// A piece: padded size and piece CID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceInfo {
    /// Padded size.
    #[serde(rename = "Size")]
    pub size: u64,
    /// Piece CID (CommP).
    #[serde(rename = "PieceCID")]
    pub piece_cid: Cid,
}

/// Deal information of a v2 piece (filler pieces have `DealID == 0` and `AllocationID == 0`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealInfoV2 {
    /// Builtin-market deal id.
    #[serde(rename = "DealID")]
    pub deal_id: DealId,
    /// Publishing message.
    #[serde(rename = "PublishCid")]
    pub publish_cid: Option<Cid>,
    /// Verified-registry allocation id (direct data onboarding).
    #[serde(rename = "AllocationID")]
    pub allocation_id: u64,
    /// Piece CID.
    #[serde(rename = "PieceCID")]
    pub piece_cid: Cid,
    /// Padded piece size.
    #[serde(rename = "PieceSize")]
    pub piece_size: u64,
    /// Client address.
    #[serde(rename = "Client")]
    pub client: String,
    /// Provider address.
    #[serde(rename = "Provider")]
    pub provider: String,
    /// Offset of the piece in the sector (padded).
    #[serde(rename = "Offset")]
    pub offset: u64,
    /// Length of the piece (padded).
    #[serde(rename = "Length")]
    pub length: u64,
    /// Bytes of real data in the piece.
    #[serde(rename = "PayloadSize")]
    pub payload_size: u64,
    /// Deal start.
    #[serde(rename = "StartEpoch")]
    pub start_epoch: ChainEpoch,
    /// Deal end.
    #[serde(rename = "EndEpoch")]
    pub end_epoch: ChainEpoch,
    /// A builtin-market deal (else direct data onboarding).
    #[serde(rename = "IsBuiltinMarket")]
    pub is_builtin_market: bool,
    /// Sealed with a proof type the deal accepts.
    #[serde(rename = "IsCompatible")]
    pub is_compatible: bool,
}

/// A piece of a sector with its deal (`SectorPieceV2`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorPieceV2 {
    /// The piece.
    pub piece: PieceInfo,
    /// Its deal (always an object: the worker cannot read `null`).
    pub deal_info: DealInfoV2,
}

impl SectorPieceV2 {
    /// Whether this is a filler piece: no deal and no allocation.
    pub fn is_filler(&self) -> bool {
        if self.deal_info.is_builtin_market {
            self.deal_info.deal_id == 0
        } else {
            self.deal_info.allocation_id == 0
        }
    }
}

/// A v1 piece position (`{"Size","Offset","Cid"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LegacyPieceInfo {
    /// Padded size.
    pub size: u64,
    /// Padded offset in the sector.
    pub offset: u64,
    /// Piece CID.
    pub cid: Cid,
}

/// A v1 deal of a sector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LegacyDealInfo {
    /// Deal id (0 for a filler).
    #[serde(rename = "ID")]
    pub id: DealId,
    /// Bytes of real data.
    pub payload_size: u64,
    /// The piece.
    pub piece: LegacyPieceInfo,
    /// The deal proposal, carried as it is.
    pub proposal: Option<serde_json::Value>,
    /// Sealed with a proof type the deal accepts.
    pub is_compatible: bool,
}

/// Chain randomness used as a sealing ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ticket {
    /// 32 bytes, base64.
    pub ticket: Bytes,
    /// Epoch it was drawn at.
    pub epoch: ChainEpoch,
}

/// Chain randomness used as the interactive PoRep seed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Seed {
    /// 32 bytes, base64.
    pub seed: Bytes,
    /// Epoch it was drawn at.
    pub epoch: ChainEpoch,
}

/// What a worker submits after PC2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PreCommitOnChainInfo {
    /// Replica commitment.
    pub comm_r: Commitment,
    /// Data commitment.
    pub comm_d: Commitment,
    /// The ticket PC1 used.
    pub ticket: Ticket,
}

/// What a worker submits after C2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProofOnChainInfo {
    /// The proof, base64.
    pub proof: Bytes,
}

/// The answer to a submission (`SubmitPreCommitResp`, `SubmitProofResp`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubmitResp {
    /// Outcome.
    pub res: SubmitResult,
    /// Why, for a refusal.
    pub desc: Option<String>,
}

/// Answer of `SubmitPreCommit`.
pub type SubmitPreCommitResp = SubmitResp;
/// Answer of `SubmitProof`.
pub type SubmitProofResp = SubmitResp;
/// Answer of `SubmitSnapUpProof`.
pub type SubmitSnapUpProofResp = SubmitResp;
/// Answer of `TerminateSector`.
pub type SubmitTerminateResp = SubmitResp;

/// The answer to a poll (`PollPreCommitStateResp`, `PollProofStateResp`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PollStateResp {
    /// State of the message.
    pub state: OnChainState,
    /// Detail.
    pub desc: Option<String>,
}

/// Answer of `PollPreCommitState`.
pub type PollPreCommitStateResp = PollStateResp;
/// Answer of `PollProofState`.
pub type PollProofStateResp = PollStateResp;

/// Answer of `WaitSeed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WaitSeedResp {
    /// Not yet: ask again after `Delay` seconds.
    pub should_wait: bool,
    /// Seconds to wait.
    pub delay: i64,
    /// The seed, once available.
    pub seed: Option<Seed>,
}

/// The worker instance reporting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WorkerIdentifier {
    /// Worker instance name.
    pub instance: String,
    /// Sealing thread location.
    pub location: String,
}

/// A state transition of a sealing thread.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorStateChange {
    /// State before.
    pub prev: String,
    /// State after.
    pub next: String,
    /// The event that caused it.
    pub event: String,
}

/// A failure of a sealing step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorFailure {
    /// `temporary`, `permanent`, `critical`, `abort` (as the worker names them).
    pub level: String,
    /// What happened.
    pub desc: String,
}

/// What a worker reports at each step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReportStateReq {
    /// Who.
    pub worker: WorkerIdentifier,
    /// The transition.
    pub state_change: SectorStateChange,
    /// The failure, if the step failed.
    pub failure: Option<SectorFailure>,
}

/// The manager's answer to `ReportState`: what the worker must know of the sector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectorStateResp {
    /// The sector (tagged `Id`, not `ID`).
    #[serde(rename = "Id")]
    pub id: SectorId,
    /// Finalized (or aborted) elsewhere: the worker stops.
    #[serde(rename = "Finalized")]
    pub finalized: bool,
    /// Why it was aborted, `""` if it was not.
    #[serde(rename = "AbortReason", with = "go_string")]
    pub abort_reason: String,
}

/// What a snap-up thread can take.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AllocateSnapUpSpec {
    /// Sector constraints.
    pub sector: AllocateSectorSpec,
    /// Deal constraints.
    pub deals: AcquireDealsSpec,
}

/// On-chain facts of a sector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectorPublicInfo {
    /// Replica commitment.
    #[serde(rename = "CommR")]
    pub comm_r: Commitment,
    /// Sealed CID.
    #[serde(rename = "SealedCID")]
    pub sealed_cid: Cid,
    /// Activation epoch.
    #[serde(rename = "Activation")]
    pub activation: ChainEpoch,
    /// Expiration epoch.
    #[serde(rename = "Expiration")]
    pub expiration: ChainEpoch,
}

/// Where a sector's files are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorPrivateInfo {
    /// Persist store instance name.
    pub access_instance: String,
}

/// A CC sector to upgrade with deals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AllocatedSnapUpSector {
    /// The sector.
    pub sector: AllocatedSector,
    /// The new pieces.
    pub pieces: Vec<SectorPieceV2>,
    /// On-chain facts.
    pub public: SectorPublicInfo,
    /// Where its files are.
    pub private: SectorPrivateInfo,
}

/// What a worker submits after snap-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnapUpOnChainInfo {
    /// New replica commitment.
    pub comm_r: Commitment,
    /// New data commitment.
    pub comm_d: Commitment,
    /// Store holding the update files.
    pub access_instance: String,
    /// The pieces encoded.
    pub pieces: Vec<Cid>,
    /// The update proof, base64.
    pub proof: Bytes,
}

/// A sector whose files must be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorRebuildInfo {
    /// The sector.
    pub sector: AllocatedSector,
    /// Its ticket.
    pub ticket: Ticket,
    /// v1 pieces.
    pub pieces: Option<Vec<LegacyDealInfo>>,
    /// v2 pieces.
    #[serde(rename = "PiecesV2")]
    pub pieces_v2: Option<Vec<SectorPieceV2>>,
    /// The sector was upgraded.
    pub is_snap_up: bool,
    /// Its upgraded on-chain facts.
    pub upgrade_public: Option<SectorPublicInfo>,
}

/// A piece to unseal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorUnsealInfo {
    /// The sector.
    pub sector: AllocatedSector,
    /// The piece.
    pub piece_cid: Cid,
    /// Unpadded offset.
    pub offset: u64,
    /// Unpadded size.
    pub size: u64,
    /// Where the sector's files are.
    pub private_info: SectorPrivateInfo,
    /// The sector's ticket.
    pub ticket: Ticket,
    /// Data commitment.
    pub comm_d: Commitment,
    /// Where to send the piece.
    pub dest: Vec<String>,
    /// `set_up`, `unsealing`, `uploading`, `finished` or `failed`.
    pub state: String,
    /// Error text of a failed unseal.
    pub error_info: String,
}

/// Thread counts of a worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WorkerInfoSummary {
    /// Sealing threads.
    pub threads: u64,
    /// Threads without a job.
    pub empty: u64,
    /// Paused threads.
    pub paused: u64,
    /// Running threads.
    pub running: u64,
    /// Waiting threads.
    pub waiting: u64,
    /// Threads whose last step failed.
    pub errors: u64,
}

/// What a worker says at each ping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WorkerInfo {
    /// Worker instance name.
    pub name: String,
    /// `host:port` of the worker's own RPC server.
    pub dest: String,
    /// Worker version.
    pub version: String,
    /// Thread counts.
    pub summary: WorkerInfoSummary,
}

/// A persist store as the worker needs it. `Debug` hides the credentials of `Meta`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StoreBasicInfo {
    /// Instance name.
    pub name: String,
    /// Location on the manager.
    pub path: String,
    /// Only regular files.
    pub strict: bool,
    /// Refuses writes.
    pub read_only: bool,
    /// Choice weight.
    pub weight: u64,
    /// Backend settings.
    pub meta: Option<BTreeMap<String, String>>,
}

impl std::fmt::Debug for StoreBasicInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreBasicInfo")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("strict", &self.strict)
            .field("read_only", &self.read_only)
            .field("weight", &self.weight)
            .field(
                "meta",
                &self.meta.as_ref().map(vc_processors::layout::redact_meta),
            )
            .finish()
    }
}

/// One reservation of store space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReservedItem {
    /// The sector holding it (`s-t0<miner>-<number>`).
    pub by: String,
    /// Bytes.
    pub size: u64,
    /// Unix seconds.
    pub at: i64,
}

/// A persist store with capacity and reservations (`StoreList`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StoreDetailedInfo {
    /// The basic fields.
    #[serde(flatten)]
    pub basic: StoreBasicInfo,
    /// Backend type.
    #[serde(rename = "Type")]
    pub kind: String,
    /// Total bytes.
    pub total: u64,
    /// Free bytes.
    pub free: u64,
    /// Used bytes.
    pub used: u64,
    /// Used percent.
    pub used_percent: f64,
    /// Reserved bytes.
    pub reserved: u64,
    /// The reservations.
    pub reserved_by: Vec<ReservedItem>,
}

/// What a wdpost thread can take.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AllocateWdPoStJobSpec {
    /// Miners.
    pub allowed_miners: Option<Vec<ActorId>>,
    /// PoSt proof type names (`StackedDrgWindow32GiBV1_2`).
    pub allowed_proof_types: Option<Vec<String>>,
}

/// Where a sector's PoSt files are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PoStSectorAccesses {
    /// Store of the sealed (or update) file.
    pub sealed_file: String,
    /// Store of the cache directory.
    pub cache_dir: String,
}

/// One sector of a WindowPoSt job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WdPoStSectorInput {
    /// Sector number (tagged `SectorId`).
    #[serde(rename = "SectorId")]
    pub sector_id: SectorNumber,
    /// Replica commitment.
    #[serde(rename = "CommR")]
    pub comm_r: Commitment,
    /// Upgraded (prove the update file).
    #[serde(rename = "Upgrade")]
    pub upgrade: bool,
    /// Where its files are.
    #[serde(rename = "Accesses")]
    pub accesses: PoStSectorAccesses,
}

/// The input of a WindowPoSt job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WdPoStInput {
    /// The sectors.
    #[serde(rename = "Sectors")]
    pub sectors: Vec<WdPoStSectorInput>,
    /// Miner (tagged `MinerId`).
    #[serde(rename = "MinerId")]
    pub miner_id: ActorId,
    /// PoSt proof type name.
    #[serde(rename = "ProofType")]
    pub proof_type: String,
    /// Challenge seed.
    #[serde(rename = "Seed")]
    pub seed: Commitment,
}

/// A job handed to a wdpost thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WdPoStAllocatedJob {
    /// Job id (tagged `Id`).
    #[serde(rename = "Id")]
    pub id: String,
    /// Its input.
    #[serde(rename = "Input")]
    pub input: WdPoStInput,
}

/// The result of a WindowPoSt (the processor's lower-case shape).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowPoStOutput {
    /// The proofs, base64.
    pub proofs: Vec<Bytes>,
    /// Sectors that could not be proven.
    pub faults: Vec<SectorNumber>,
}

/// Where a worker-prover job is (manager-spec §2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum WdPoStJobState {
    /// Waiting for a wdpost thread.
    #[serde(rename = "ready2run")]
    ReadyToRun,
    /// Taken by a wdpost thread that sends heartbeats.
    #[serde(rename = "running")]
    Running,
    /// Ended, with an output or an error.
    #[serde(rename = "finished")]
    Finished,
}

impl WdPoStJobState {
    /// Every state, in the order a job goes through them.
    pub const ALL: [WdPoStJobState; 3] = [
        WdPoStJobState::ReadyToRun,
        WdPoStJobState::Running,
        WdPoStJobState::Finished,
    ];

    /// The wire name (`ready2run`, `running`, `finished`).
    pub fn as_str(self) -> &'static str {
        match self {
            WdPoStJobState::ReadyToRun => "ready2run",
            WdPoStJobState::Running => "running",
            WdPoStJobState::Finished => "finished",
        }
    }
}

impl std::fmt::Display for WdPoStJobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A WindowPoSt job of the worker-prover, as the manager stores it (timestamps in unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WdPoStJob {
    /// Job id: base58 of the xxhash64 of the input's JSON (tagged `Id`).
    #[serde(rename = "Id")]
    pub id: String,
    /// Where it is.
    #[serde(rename = "State")]
    pub state: WdPoStJobState,
    /// The deadline it proves.
    #[serde(rename = "DeadlineIdx")]
    pub deadline_idx: u64,
    /// The partitions it proves.
    #[serde(rename = "Partitions")]
    pub partitions: Vec<u64>,
    /// What to prove.
    #[serde(rename = "Input")]
    pub input: WdPoStInput,
    /// The proof, once finished without error.
    #[serde(rename = "Output")]
    pub output: Option<WindowPoStOutput>,
    /// Attempts so far.
    #[serde(rename = "TryNum")]
    pub try_num: u32,
    /// Why the last attempt failed (empty when it did not).
    #[serde(rename = "ErrorReason")]
    pub error_reason: String,
    /// The wdpost thread's worker that holds or held it.
    #[serde(rename = "WorkerName")]
    pub worker_name: String,
    /// When the current attempt started.
    #[serde(rename = "StartedAt")]
    pub started_at: u64,
    /// The last heartbeat.
    #[serde(rename = "HeartbeatAt")]
    pub heartbeat_at: u64,
    /// When it finished.
    #[serde(rename = "FinishedAt")]
    pub finished_at: u64,
    /// When it was created (or reset).
    #[serde(rename = "CreatedAt")]
    pub created_at: u64,
    /// The last change.
    #[serde(rename = "UpdatedAt")]
    pub updated_at: u64,
}

impl WdPoStJob {
    /// Finished with a proof.
    pub fn succeeded(&self) -> bool {
        self.state == WdPoStJobState::Finished && self.error_reason.is_empty()
    }
}

/// One job of `Venus.WdPoStAllJobs`: the job with its input blanked to the miner, plus counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WdPoStJobBrief {
    /// The job.
    #[serde(flatten)]
    pub job: WdPoStJob,
    /// Sectors in its input.
    #[serde(rename = "Sectors")]
    pub sectors: u32,
    /// Sectors its output reports faulty.
    #[serde(rename = "Faults")]
    pub faults: u32,
}

/// The answer of `Venus.WdPoStAllJobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WdPoStJobList {
    /// Newest first.
    pub jobs: Vec<WdPoStJobBrief>,
    /// The manager's `JobMaxTry`.
    pub max_try: u32,
}

/// A token amount (attoFIL) as a decimal string.
pub type TokenAmount = BigInt;

/// The PreCommit of a sector as the manager keeps it (`Pre`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PreCommitInfo {
    /// Sealed CID.
    pub comm_r: Cid,
    /// Unsealed CID.
    pub comm_d: Cid,
    /// The ticket sealed with.
    pub ticket: Ticket,
}

/// The proof of a sector as the manager keeps it (`Proof`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProofInfo {
    /// The PoRep proof, base64.
    pub proof: Bytes,
}

/// The sector's chain messages (`MessageInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MessageInfo {
    /// The PreCommit message, once sent.
    pub pre_commit_cid: Option<Cid>,
    /// The ProveCommit message, once sent.
    pub commit_cid: Option<Cid>,
    /// A submission waits to be sent.
    pub need_send: bool,
}

/// Termination bookkeeping (`TerminateInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TerminateInfo {
    /// The TerminateSectors message.
    pub terminate_cid: Option<Cid>,
    /// Epoch the termination landed.
    pub terminated_at: ChainEpoch,
    /// Epoch the termination was asked for.
    pub added_height: ChainEpoch,
}

/// The files of a snapped-up sector (`UpgradedInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectorUpgradedInfo {
    /// Store holding the update files.
    #[serde(rename = "AccessInstance")]
    pub access_instance: String,
    /// New sealed CID.
    #[serde(rename = "SealedCID")]
    pub sealed_cid: Cid,
    /// New unsealed CID.
    #[serde(rename = "UnsealedCID")]
    pub unsealed_cid: Cid,
    /// Update proof, base64.
    #[serde(rename = "Proof")]
    pub proof: Bytes,
}

/// Everything the manager knows of a sector (manager-spec §1.4), in damocles' key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectorState {
    /// The sector.
    #[serde(rename = "ID")]
    pub id: SectorId,
    /// Its seal proof type.
    #[serde(rename = "SectorType")]
    pub sector_type: SealProofType,
    /// Sealing ticket.
    #[serde(rename = "Ticket", default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<Ticket>,
    /// Interactive seed.
    #[serde(rename = "Seed", default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<Seed>,
    /// v1 pieces (the Go field `LegacyPieces`, tagged `Deals`).
    #[serde(rename = "Deals", default)]
    pub legacy_pieces: Option<Vec<LegacyDealInfo>>,
    /// v2 pieces.
    #[serde(rename = "Pieces", default)]
    pub pieces: Option<Vec<SectorPieceV2>>,
    /// The accepted PreCommit.
    #[serde(rename = "Pre", default, skip_serializing_if = "Option::is_none")]
    pub pre: Option<PreCommitInfo>,
    /// The accepted proof.
    #[serde(rename = "Proof", default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<ProofInfo>,
    /// Chain messages.
    #[serde(rename = "MessageInfo", default)]
    pub message_info: MessageInfo,
    /// Termination.
    #[serde(rename = "TerminateInfo", default)]
    pub terminate_info: TerminateInfo,
    /// The last state a worker reported.
    #[serde(
        rename = "LatestState",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub latest_state: Option<ReportStateReq>,
    /// Done: finalized or aborted.
    #[serde(rename = "Finalized", default)]
    pub finalized: bool,
    /// Its files were removed.
    #[serde(rename = "Removed", default)]
    pub removed: bool,
    /// Why it was aborted (`""` if it was not).
    #[serde(rename = "AbortReason", default, with = "go_string")]
    pub abort_reason: String,
    /// Being (or was) snapped up.
    #[serde(rename = "Upgraded", default)]
    pub upgraded: bool,
    /// On-chain facts before the upgrade.
    #[serde(rename = "UpgradePublic", default)]
    pub upgrade_public: Option<SectorPublicInfo>,
    /// The upgrade's files and proof.
    #[serde(rename = "UpgradedInfo", default)]
    pub upgraded_info: Option<SectorUpgradedInfo>,
    /// The upgrade message.
    #[serde(rename = "UpgradeMessageID", default)]
    pub upgrade_message_id: Option<String>,
    /// Epoch the upgrade landed.
    #[serde(rename = "UpgradeLandedEpoch", default)]
    pub upgrade_landed_epoch: Option<ChainEpoch>,
    /// Imported from another system.
    #[serde(rename = "Imported", default)]
    pub imported: bool,
    /// Its files must be rebuilt.
    #[serde(rename = "NeedRebuild", default)]
    pub need_rebuild: bool,
    /// A piece of it is being unsealed.
    #[serde(rename = "Unsealing", default)]
    pub unsealing: bool,
}

impl SectorState {
    /// A new sector with nothing but its id and type.
    pub fn new(id: SectorId, sector_type: SealProofType) -> Self {
        SectorState {
            id,
            sector_type,
            ticket: None,
            seed: None,
            legacy_pieces: None,
            pieces: None,
            pre: None,
            proof: None,
            message_info: MessageInfo::default(),
            terminate_info: TerminateInfo::default(),
            latest_state: None,
            finalized: false,
            removed: false,
            abort_reason: String::new(),
            upgraded: false,
            upgrade_public: None,
            upgraded_info: None,
            upgrade_message_id: None,
            upgrade_landed_epoch: None,
            imported: false,
            need_rebuild: false,
            unsealing: false,
        }
    }

    /// Whether the sector carries deal data (any piece that is not a filler).
    pub fn has_deal_data(&self) -> bool {
        self.pieces
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|p| !p.is_filler())
            || self
                .legacy_pieces
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|p| p.id != 0)
    }

    /// Whether the sector matches a job filter of `ListSectors` (manager-spec §1.4).
    pub fn matches_job(&self, job: SectorJob) -> bool {
        match job {
            SectorJob::All => true,
            SectorJob::Sealing => !self.upgraded && !self.need_rebuild && !self.unsealing,
            SectorJob::SnapUp => self.upgraded && !self.need_rebuild && !self.unsealing,
            SectorJob::Rebuild => self.need_rebuild,
            SectorJob::Unseal => self.unsealing,
            SectorJob::Unknown(_) => false,
        }
    }
}

go_int_enum!(
    /// Job filter of `ListSectors`.
    SectorJob {
        /// Every sector.
        All = 0,
        /// Sealing sectors.
        Sealing = 1,
        /// Snap-up sectors.
        SnapUp = 2,
        /// Sectors being rebuilt.
        Rebuild = 3,
        /// Sectors being unsealed.
        Unseal = 4,
    }
);

/// Online (being worked on) or offline (finalized, aborted, imported) sector states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SectorWorkerState {
    /// In progress.
    Online,
    /// Finalized, aborted or imported.
    Offline,
}

/// What the manager remembers of a worker (`WorkerPingInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WorkerPingInfo {
    /// What the worker said.
    pub info: WorkerInfo,
    /// Unix seconds of the last ping.
    pub last_ping: i64,
}

/// Where a sector's files are indexed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorAccessStores {
    /// Store of the sealed (or update) file.
    pub sealed_file: String,
    /// Store of the cache directory.
    pub cache_dir: String,
}

/// Answer of `SectorIndexerFind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorIndexerFindResp {
    /// The sector is indexed.
    pub found: bool,
    /// Its stores.
    pub instance: SectorAccessStores,
}

/// Which sector index: `normal` or `upgrade`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SectorIndexType {
    /// Sealed replicas.
    Normal,
    /// Snap-upgraded replicas.
    Upgrade,
}

/// Answer of `GetInfo`: a miner as the manager sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinerInfo {
    /// Actor id.
    #[serde(rename = "ID")]
    pub id: ActorId,
    /// Actor address (`t0…`).
    #[serde(rename = "Addr")]
    pub addr: String,
    /// Sector size in bytes.
    #[serde(rename = "SectorSize")]
    pub sector_size: u64,
    /// WindowPoSt proof type (chain integer).
    #[serde(rename = "WindowPoStProofType")]
    pub window_post_proof_type: i64,
    /// Seal proof type new sectors use.
    #[serde(rename = "SealProofType")]
    pub seal_proof_type: SealProofType,
}

/// Chain randomness for WindowPoSt (`GetWindowPoStChanlleengeRand`, `GetWindowPoStCommitRand`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WindowPoStRandomness {
    /// Epoch drawn at.
    pub epoch: ChainEpoch,
    /// 32 bytes, base64.
    pub rand: Bytes,
}

/// `SectorSetForRebuild` options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RebuildOptions {
    /// The pieces can be fetched again.
    pub pieces_available: bool,
}
