//! Sector states, planner events and the persisted sector record (worker-spec §1.7, §2.0).
//!
//! Terms:
//! - a [`State`] is where a sector is; all planners share the same 26 states;
//! - an [`Event`] is what a handler returns; a planner maps `(event, state)` to the next state
//!   (the sealer's table is `sealing::sealer::sealer_plan`), then [`Sector::apply`] merges the
//!   event's payload into the record (§2.0.3) and moves it to that state;
//! - a [`Sector`] is the record the engine keeps under `meta/info` in the sealing store and
//!   writes after every applied event.
//!
//! Where we differ from damocles: the record stores states by **name**, not by enum index
//! (pitfall P-16: damocles renumbered every state after `PC2Done` when it inserted
//! `SyntheticPoRepNeeded` at index 8). A record holding an index of the current table (§2.0.1)
//! still loads. `finalized.public` keeps only `CommR`, the one field the planners read.
//!
//! Not here: handlers, the engine loop, and the planners' transition tables.

use std::fmt;
use std::str::FromStr;

use crate::config::Plan;
use damocles_manager_api::json::{Cid, Commitment};
use damocles_manager_api::types::{
    AllocatedSector, AllocatedSnapUpSector, LegacyDealInfo, SectorId, SectorPieceV2,
    SectorPrivateInfo, SectorPublicInfo, SectorRebuildInfo, SectorUnsealInfo, Seed, Ticket,
};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use vc_processors::builtin::proofs::api::seal::{
    SealCommitPhase1Output, SealCommitPhase2Output, SealPreCommitPhase1Output,
    SealPreCommitPhase2Output,
};
use vc_processors::builtin::tasks::{
    PieceInfo, ProverId, SectorId as ProofSectorId, SnapEncodeOutput, SnapProveOutput,
};

/// Where a sector is (worker-spec §2.0.1). The discriminant is damocles' persisted index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// No sector yet.
    Empty = 0,
    /// A sector was allocated (or, for snapup/rebuild/unseal, taken over).
    Allocated = 1,
    /// Deals were acquired (possibly none: a CC sector).
    DealsAcquired = 2,
    /// The staged file holds the pieces.
    PieceAdded = 3,
    /// The data tree was built (or linked to a static one).
    TreeDBuilt = 4,
    /// The stored ticket was cleared; PC1 fetches the real one.
    TicketAssigned = 5,
    /// PreCommit phase 1 done.
    PC1Done = 6,
    /// PreCommit phase 2 done.
    PC2Done = 7,
    /// PC2 done with a proof type that needs synthetic proofs.
    SyntheticPoRepNeeded = 8,
    /// The PreCommit was submitted to the manager.
    PCSubmitted = 9,
    /// The PreCommit landed on chain.
    PCLanded = 10,
    /// The sector files were persisted.
    Persisted = 11,
    /// The persisted files were reported to the manager (damocles' spelling).
    PersistanceSubmitted = 12,
    /// The interactive seed was obtained.
    SeedAssigned = 13,
    /// Commit phase 1 done.
    C1Done = 14,
    /// Commit phase 2 done.
    C2Done = 15,
    /// The proof was submitted to the manager.
    ProofSubmitted = 16,
    /// Done: terminal.
    Finished = 17,
    /// Aborted (reached through `resume --state Aborted`).
    Aborted = 18,
    /// The snap update was encoded.
    SnapEncoded = 19,
    /// The snap update proof was made.
    SnapProved = 20,
    /// Rebuild: the rebuilt sealed file passed a C1 check.
    SealedChecked = 21,
    /// Rebuild of an upgraded sector: the new pieces were added.
    SnapPieceAdded = 22,
    /// Rebuild of an upgraded sector: the new data tree was built.
    SnapTreeDBuilt = 23,
    /// Rebuild: the snap part is done (or skipped).
    SnapDone = 24,
    /// Unseal: the piece was unsealed.
    Unsealed = 25,
}

impl State {
    /// Every state, in index order (`State::ALL[i].index() == i`).
    pub const ALL: [State; 26] = [
        State::Empty,
        State::Allocated,
        State::DealsAcquired,
        State::PieceAdded,
        State::TreeDBuilt,
        State::TicketAssigned,
        State::PC1Done,
        State::PC2Done,
        State::SyntheticPoRepNeeded,
        State::PCSubmitted,
        State::PCLanded,
        State::Persisted,
        State::PersistanceSubmitted,
        State::SeedAssigned,
        State::C1Done,
        State::C2Done,
        State::ProofSubmitted,
        State::Finished,
        State::Aborted,
        State::SnapEncoded,
        State::SnapProved,
        State::SealedChecked,
        State::SnapPieceAdded,
        State::SnapTreeDBuilt,
        State::SnapDone,
        State::Unsealed,
    ];

    /// The exact name: what `resume --state` takes and `ReportState` sends.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::Allocated => "Allocated",
            State::DealsAcquired => "DealsAcquired",
            State::PieceAdded => "PieceAdded",
            State::TreeDBuilt => "TreeDBuilt",
            State::TicketAssigned => "TicketAssigned",
            State::PC1Done => "PC1Done",
            State::PC2Done => "PC2Done",
            State::SyntheticPoRepNeeded => "SyntheticPoRepNeeded",
            State::PCSubmitted => "PCSubmitted",
            State::PCLanded => "PCLanded",
            State::Persisted => "Persisted",
            State::PersistanceSubmitted => "PersistanceSubmitted",
            State::SeedAssigned => "SeedAssigned",
            State::C1Done => "C1Done",
            State::C2Done => "C2Done",
            State::ProofSubmitted => "ProofSubmitted",
            State::Finished => "Finished",
            State::Aborted => "Aborted",
            State::SnapEncoded => "SnapEncoded",
            State::SnapProved => "SnapProved",
            State::SealedChecked => "SealedChecked",
            State::SnapPieceAdded => "SnapPieceAdded",
            State::SnapTreeDBuilt => "SnapTreeDBuilt",
            State::SnapDone => "SnapDone",
            State::Unsealed => "Unsealed",
        }
    }

    /// damocles' persisted integer index (§2.0.1).
    pub fn index(self) -> u32 {
        self as u32
    }

    /// The state of a damocles index, if it is one of the table's.
    pub fn from_index(index: u32) -> Option<State> {
        usize::try_from(index)
            .ok()
            .and_then(|i| State::ALL.get(i).copied())
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no [`State`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseStateError {
    /// The string given.
    pub name: String,
}

impl fmt::Display for ParseStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown state {:?}; valid states: ", self.name)?;
        for (i, s) in State::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(s.as_str())?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseStateError {}

impl FromStr for State {
    type Err = ParseStateError;

    /// Exact, case-sensitive names only.
    fn from_str(name: &str) -> Result<State, ParseStateError> {
        State::ALL
            .iter()
            .copied()
            .find(|s| s.as_str() == name)
            .ok_or_else(|| ParseStateError {
                name: name.to_string(),
            })
    }
}

impl Serialize for State {
    /// By name (P-16).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for State {
    /// A name, or damocles' integer index.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct StateVisitor;

        impl Visitor<'_> for StateVisitor {
            type Value = State;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a state name or a damocles state index (0-25)")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<State, E> {
                v.parse().map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<State, E> {
                u32::try_from(v)
                    .ok()
                    .and_then(State::from_index)
                    .ok_or_else(|| E::custom(format!("unknown state index {v} (valid: 0-25)")))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<State, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("unknown state index {v} (valid: 0-25)"))),
                }
            }
        }

        d.deserialize_any(StateVisitor)
    }
}

/// What a handler returns (worker-spec §2.0.1), with the payload [`Sector::apply`] merges
/// (§2.0.3).
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone)]
pub enum Event {
    /// Jump to a state (resume); valid from any state.
    SetState(State),
    /// Nothing to do now: wait `recover_interval` and run the handler again.
    Idle,
    /// Run the handler again after `recover_interval` (never produced by damocles).
    Retry,
    /// A sector was allocated.
    Allocate(AllocatedSector),
    /// v1 deals (`None`: a CC sector).
    AcquireDeals(Option<Vec<LegacyDealInfo>>),
    /// v2 pieces (`None` or empty: a CC sector).
    AcquireDealsV2(Option<Vec<SectorPieceV2>>),
    /// The `add_pieces` output.
    AddPiece(Vec<PieceInfo>),
    /// The data tree is built.
    BuildTreeD,
    /// Sets the stored ticket; `None` clears it.
    AssignTicket(Option<Ticket>),
    /// PC1 done with this ticket.
    PC1(Ticket, SealPreCommitPhase1Output),
    /// PC2 done.
    PC2(SealPreCommitPhase2Output),
    /// PC2 done; the proof type needs synthetic proofs.
    PC2NeedSyntheticProof(SealPreCommitPhase2Output),
    /// Synthetic proofs done.
    SyntheticPoRep,
    /// The PreCommit was accepted.
    SubmitPC,
    /// The PreCommit landed.
    CheckPC,
    /// The PreCommit failed on chain: submit it again with `reset`.
    ReSubmitPC,
    /// The files were persisted to this store instance.
    Persist(String),
    /// The persisted files were reported.
    SubmitPersistance,
    /// The interactive seed.
    AssignSeed(Seed),
    /// C1 done.
    C1(SealCommitPhase1Output),
    /// C2 done.
    C2(SealCommitPhase2Output),
    /// The proof was accepted.
    SubmitProof,
    /// The proof failed on chain: submit it again with `reset`.
    ReSubmitProof,
    /// The sector is done.
    Finish,
    /// A CC sector to upgrade was allocated (its `Pieces` and `Private.AccessInstance` are
    /// checked non-empty by the handler).
    AllocatedSnapUpSector(AllocatedSnapUpSector),
    /// The snap update was encoded.
    SnapEncode(SnapEncodeOutput),
    /// The snap update proof.
    SnapProve(SnapProveOutput),
    /// The manager misses the persisted files: persist again.
    RePersist,
    /// A sector to rebuild was allocated.
    AllocatedRebuildSector(SectorRebuildInfo),
    /// The rebuilt sealed file passed the check.
    CheckSealed,
    /// Rebuild of a sector that was never upgraded: no snap part.
    SkipSnap,
    /// A piece to unseal was allocated.
    AllocatedUnsealSector(SectorUnsealInfo),
    /// The piece was unsealed; the number of bytes written (not recorded).
    UnsealDone(u64),
    /// The unsealed piece was uploaded.
    UploadPieceDone,
}

impl Event {
    /// The name damocles logs (its `Debug` names): both deal variants are `AcquireDeals`, and
    /// `UnsealDone` is `Unsealed`.
    pub fn name(&self) -> &'static str {
        match self {
            Event::SetState(_) => "SetState",
            Event::Idle => "Idle",
            Event::Retry => "Retry",
            Event::Allocate(_) => "Allocate",
            Event::AcquireDeals(_) | Event::AcquireDealsV2(_) => "AcquireDeals",
            Event::AddPiece(_) => "AddPiece",
            Event::BuildTreeD => "BuildTreeD",
            Event::AssignTicket(_) => "AssignTicket",
            Event::PC1(_, _) => "PC1",
            Event::PC2(_) => "PC2",
            Event::PC2NeedSyntheticProof(_) => "PC2NeedSyntheticProof",
            Event::SyntheticPoRep => "SyntheticPoRep",
            Event::SubmitPC => "SubmitPC",
            Event::CheckPC => "CheckPC",
            Event::ReSubmitPC => "ReSubmitPC",
            Event::Persist(_) => "Persist",
            Event::SubmitPersistance => "SubmitPersistance",
            Event::AssignSeed(_) => "AssignSeed",
            Event::C1(_) => "C1",
            Event::C2(_) => "C2",
            Event::SubmitProof => "SubmitProof",
            Event::ReSubmitProof => "ReSubmitProof",
            Event::Finish => "Finish",
            Event::AllocatedSnapUpSector(_) => "AllocatedSnapUpSector",
            Event::SnapEncode(_) => "SnapEncode",
            Event::SnapProve(_) => "SnapProve",
            Event::RePersist => "RePersist",
            Event::AllocatedRebuildSector(_) => "AllocatedRebuildSector",
            Event::CheckSealed => "CheckSealed",
            Event::SkipSnap => "SkipSnap",
            Event::AllocatedUnsealSector(_) => "AllocatedUnsealSector",
            Event::UnsealDone(_) => "Unsealed",
            Event::UploadPieceDone => "UploadPieceDone",
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A refused [`Sector::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyError {
    /// The next state is the current one (e.g. `resume --state` with the current state, P-5).
    StateUnchanged {
        /// The sector's state.
        state: State,
        /// The event's name.
        event: &'static str,
    },
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::StateUnchanged { state, event } => write!(
                f,
                "state unchanged, may enter an infinite loop: event {event} leaves the sector in \
                 {state}"
            ),
        }
    }
}

impl std::error::Error for ApplyError {}

/// The version written into new records.
pub const SECTOR_RECORD_VERSION: u32 = 1;

/// The sector's identity and proof inputs, set on allocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SectorBase {
    /// The sector as the manager allocated it.
    pub allocated: AllocatedSector,
    /// Prover id of the miner and the sector number, as the proofs take them.
    pub prove_input: (ProverId, ProofSectorId),
}

/// On-chain facts of a sector that the planners use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectorPublic {
    /// Replica commitment (for a snap upgrade: the old one).
    #[serde(rename = "CommR")]
    pub comm_r: Commitment,
}

impl From<&SectorPublicInfo> for SectorPublic {
    fn from(info: &SectorPublicInfo) -> Self {
        SectorPublic {
            comm_r: info.comm_r,
        }
    }
}

/// What the manager told about an existing sector (snapup, rebuild of an upgraded sector,
/// unseal).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectorFinalized {
    /// On-chain facts.
    pub public: SectorPublic,
    /// Where its files are.
    pub private: SectorPrivateInfo,
}

/// The piece an unseal sector recovers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsealInput {
    /// The piece.
    pub piece_cid: Cid,
    /// Data commitment of the sector.
    pub comm_d: Commitment,
    /// Unpadded offset of the piece in the sector.
    pub offset: u64,
    /// Unpadded size of the piece.
    pub size: u64,
}

/// The outputs of each step.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Phases {
    /// The `add_pieces` output.
    pub pieces: Option<Vec<PieceInfo>>,
    /// The sealing ticket.
    pub ticket: Option<Ticket>,
    /// The PC1 output.
    pub pc1out: Option<SealPreCommitPhase1Output>,
    /// The PC2 output.
    pub pc2out: Option<SealPreCommitPhase2Output>,
    /// Submit the PreCommit with `reset` (it failed on chain).
    pub pc2_re_submit: bool,
    /// The store instance holding the persisted files.
    pub persist_instance: Option<String>,
    /// The interactive seed.
    pub seed: Option<Seed>,
    /// The C1 output.
    pub c1out: Option<SealCommitPhase1Output>,
    /// The C2 output.
    pub c2out: Option<SealCommitPhase2Output>,
    /// Submit the proof with `reset` (it failed on chain).
    pub c2_re_submit: bool,
    /// The snap encode output.
    pub snap_encode_out: Option<SnapEncodeOutput>,
    /// The snap update proof.
    pub snap_prov_out: Option<SnapProveOutput>,
    /// The piece to unseal.
    pub unseal_in: Option<UnsealInput>,
}

/// The sector record of a sealing store (worker-spec §1.7), JSON with snake_case fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sector {
    /// Record format version ([`SECTOR_RECORD_VERSION`]).
    pub version: u32,
    /// The planner owning the sector; `None` means `sealer`.
    #[serde(default)]
    pub plan: Option<String>,
    /// The current state.
    pub state: State,
    /// The state before the last applied event.
    #[serde(default)]
    pub prev_state: Option<State>,
    /// Retries so far, cumulative over all states (P-2).
    #[serde(default)]
    pub retry: u32,
    /// Identity and proof inputs, once allocated.
    #[serde(default)]
    pub base: Option<SectorBase>,
    /// v1 deals.
    #[serde(default)]
    pub deals: Option<Vec<LegacyDealInfo>>,
    /// v2 pieces.
    #[serde(default)]
    pub deals_v2: Option<Vec<SectorPieceV2>>,
    /// What the manager told about an existing sector.
    #[serde(default)]
    pub finalized: Option<SectorFinalized>,
    /// Step outputs.
    #[serde(default)]
    pub phases: Phases,
    /// The reason of an abort the manager has not taken yet (`ReportAborted` failed): sent
    /// again, before anything else, until it is; the sector's files are kept until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_pending: Option<String>,
}

impl Sector {
    /// A new record in state `Empty`, owned by `plan`.
    pub fn new(plan: impl Into<String>) -> Sector {
        Sector {
            version: SECTOR_RECORD_VERSION,
            plan: Some(plan.into()),
            state: State::Empty,
            prev_state: None,
            retry: 0,
            base: None,
            deals: None,
            deals_v2: None,
            finalized: None,
            phases: Phases::default(),
            abort_pending: None,
        }
    }

    /// The owning planner (`sealer` when unset).
    pub fn plan(&self) -> &str {
        self.plan.as_deref().unwrap_or(Plan::Sealer.as_str())
    }

    /// The sector id, once allocated.
    pub fn sector_id(&self) -> Option<SectorId> {
        self.base.as_ref().map(|b| b.allocated.id)
    }

    /// Merges `event`'s payload into the record (§2.0.3) and moves it to `next`, remembering the
    /// current state as `prev_state`. Refuses (changing nothing) when `next` is the current
    /// state. The caller persists the record.
    pub fn apply(&mut self, event: Event, next: State) -> Result<(), ApplyError> {
        if next == self.state {
            return Err(ApplyError::StateUnchanged {
                state: next,
                event: event.name(),
            });
        }
        self.merge(event);
        self.prev_state = Some(self.state);
        self.state = next;
        Ok(())
    }

    fn allocate(&mut self, sector: AllocatedSector) {
        self.base = Some(SectorBase {
            allocated: sector,
            prove_input: (
                prover_id(sector.id.miner),
                ProofSectorId::from(sector.id.number),
            ),
        });
    }

    fn merge(&mut self, event: Event) {
        match event {
            Event::Allocate(sector) => self.allocate(sector),
            Event::AcquireDeals(deals) => self.deals = deals,
            Event::AcquireDealsV2(deals) => self.deals_v2 = deals,
            Event::AddPiece(pieces) => self.phases.pieces = Some(pieces),
            Event::AssignTicket(ticket) => self.phases.ticket = ticket,
            Event::PC1(ticket, out) => {
                self.phases.ticket = Some(ticket);
                self.phases.pc1out = Some(out);
            }
            Event::PC2(out) | Event::PC2NeedSyntheticProof(out) => self.phases.pc2out = Some(out),
            Event::SubmitPC => self.phases.pc2_re_submit = false,
            Event::ReSubmitPC => self.phases.pc2_re_submit = true,
            Event::SubmitProof => self.phases.c2_re_submit = false,
            Event::ReSubmitProof => self.phases.c2_re_submit = true,
            Event::Persist(instance) => self.phases.persist_instance = Some(instance),
            Event::AssignSeed(seed) => self.phases.seed = Some(seed),
            Event::C1(out) => self.phases.c1out = Some(out),
            Event::C2(out) => self.phases.c2out = Some(out),
            Event::AllocatedSnapUpSector(info) => {
                self.allocate(info.sector);
                self.deals_v2 = Some(info.pieces);
                self.finalized = Some(SectorFinalized {
                    public: SectorPublic::from(&info.public),
                    private: info.private,
                });
            }
            Event::SnapEncode(out) => self.phases.snap_encode_out = Some(out),
            Event::SnapProve(proof) => self.phases.snap_prov_out = Some(proof),
            Event::AllocatedRebuildSector(info) => {
                self.allocate(info.sector);
                if let Some(pieces) = info.pieces {
                    self.deals = Some(pieces);
                } else if let Some(pieces) = info.pieces_v2 {
                    self.deals_v2 = Some(pieces);
                }
                self.phases.ticket = Some(info.ticket);
                self.finalized = info.upgrade_public.as_ref().map(|public| SectorFinalized {
                    public: SectorPublic::from(public),
                    private: SectorPrivateInfo::default(),
                });
            }
            Event::AllocatedUnsealSector(info) => {
                self.allocate(info.sector);
                self.phases.ticket = Some(info.ticket);
                self.phases.unseal_in = Some(UnsealInput {
                    piece_cid: info.piece_cid,
                    comm_d: info.comm_d,
                    offset: info.offset,
                    size: info.size,
                });
                self.finalized = Some(SectorFinalized {
                    public: SectorPublic::default(),
                    private: info.private_info,
                });
            }
            Event::SetState(_)
            | Event::Idle
            | Event::Retry
            | Event::BuildTreeD
            | Event::SyntheticPoRep
            | Event::CheckPC
            | Event::SubmitPersistance
            | Event::Finish
            | Event::RePersist
            | Event::CheckSealed
            | Event::SkipSnap
            | Event::UnsealDone(_)
            | Event::UploadPieceDone => {}
        }
    }
}

/// The label `worker list` shows for a sector in `state` owned by planner `plan`
/// (worker-spec §2.0.2): the step that runs next.
pub fn display_stage(state: State, plan: &str) -> &'static str {
    let snapup = plan == Plan::Snapup.as_str();
    let rebuild = plan == Plan::Rebuild.as_str();
    match state {
        State::Empty | State::Finished | State::Aborted => "-",
        State::Allocated if snapup || rebuild => "AddPieces",
        State::Allocated if plan == Plan::Unseal.as_str() => "Unseal",
        State::Allocated => "AcquireDeals",
        State::DealsAcquired => "AddPieces",
        State::PieceAdded | State::SnapPieceAdded => "TreeD",
        State::TreeDBuilt if rebuild => "PC1",
        State::TreeDBuilt if snapup => "SnapEncode",
        State::TreeDBuilt => "AssignTicket",
        State::TicketAssigned => "PC1",
        State::PC1Done => "PC2",
        State::SyntheticPoRepNeeded => "SyntheticPoRep",
        State::PC2Done if rebuild => "C1",
        State::PC2Done => "SubmitPreCommit",
        State::PCSubmitted => "WaitPCLanded",
        State::PCLanded | State::SnapProved | State::SnapDone => "PersistFiles",
        State::Persisted if snapup => "SubmitSnapupProof",
        State::Persisted => "SubmitPersisted",
        State::PersistanceSubmitted => "WaitSeed",
        State::SeedAssigned => "C1",
        State::C1Done => "C2",
        State::C2Done => "SubmitProof",
        State::ProofSubmitted => "WaitProofLanded",
        State::SnapEncoded => "SnapProve",
        State::SealedChecked if rebuild => "PrepareForSnapup",
        State::SealedChecked => "-",
        State::SnapTreeDBuilt => "SnapEncode",
        State::Unsealed => "UploadPiece",
    }
}

/// The prover id of a miner (§1.7): the unsigned LEB128 of the actor id, zero padded to 32
/// bytes (the payload of its ID address).
pub fn prover_id(miner: u64) -> ProverId {
    vc_processors::builtin::proofs::to_prover_id(miner)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use damocles_manager_api::json::{data_commitment_cid, replica_commitment_cid, Bytes};
    use damocles_manager_api::types::{DealInfoV2, LegacyPieceInfo, SealProofType};
    use serde_json::json;
    use vc_processors::builtin::proofs::api::seal::VanillaSealProof;
    use vc_processors::builtin::tasks::{RegisteredSealProof, UnpaddedBytesAmount};

    pub(crate) fn allocated(number: u64) -> AllocatedSector {
        AllocatedSector {
            id: SectorId {
                miner: 1000,
                number,
            },
            proof_type: SealProofType(5),
        }
    }

    fn ticket(b: u8) -> Ticket {
        Ticket {
            ticket: Bytes(vec![b; 32]),
            epoch: 100 + i64::from(b),
        }
    }

    fn seed() -> Seed {
        Seed {
            seed: Bytes(vec![9; 32]),
            epoch: 200,
        }
    }

    fn pieces() -> Vec<PieceInfo> {
        vec![PieceInfo {
            commitment: [5; 32],
            size: UnpaddedBytesAmount(2032),
        }]
    }

    fn legacy_deals() -> Vec<LegacyDealInfo> {
        vec![LegacyDealInfo {
            id: 7,
            payload_size: 1000,
            piece: LegacyPieceInfo {
                size: 2048,
                offset: 0,
                cid: data_commitment_cid(&[5; 32]),
            },
            proposal: None,
            is_compatible: true,
        }]
    }

    fn pieces_v2() -> Vec<SectorPieceV2> {
        let cid = data_commitment_cid(&[6; 32]);
        vec![SectorPieceV2 {
            piece: damocles_manager_api::types::PieceInfo {
                size: 2048,
                piece_cid: cid.clone(),
            },
            deal_info: DealInfoV2 {
                deal_id: 8,
                publish_cid: None,
                allocation_id: 0,
                piece_cid: cid,
                piece_size: 2048,
                client: "t01001".to_string(),
                provider: "t01000".to_string(),
                offset: 0,
                length: 2048,
                payload_size: 1500,
                start_epoch: 10,
                end_epoch: 1000,
                is_builtin_market: true,
                is_compatible: true,
            },
        }]
    }

    fn public_info(b: u8) -> SectorPublicInfo {
        SectorPublicInfo {
            comm_r: [b; 32],
            sealed_cid: replica_commitment_cid(&[b; 32]),
            activation: 10,
            expiration: 10_000,
        }
    }

    fn private_info(name: &str) -> SectorPrivateInfo {
        SectorPrivateInfo {
            access_instance: name.to_string(),
        }
    }

    fn pc1out() -> SealPreCommitPhase1Output {
        serde_json::from_value(json!({
            "registered_proof": "StackedDrg2KiBV1_1",
            "labels": {"StackedDrg2KiBV1": {"labels": [
                {"path": "/c", "id": "layer-1", "size": 64, "rows_to_discard": 0}
            ], "_h": null}},
            "config": {"path": "/c", "id": "tree-d", "size": 127, "rows_to_discard": 0},
            "comm_d": vec![3u8; 32],
        }))
        .expect("pc1 output")
    }

    fn pc2out(b: u8) -> SealPreCommitPhase2Output {
        SealPreCommitPhase2Output {
            registered_proof: RegisteredSealProof::StackedDrg2KiBV1_1,
            comm_r: [b; 32],
            comm_d: [3; 32],
        }
    }

    fn c1out() -> SealCommitPhase1Output {
        SealCommitPhase1Output {
            registered_proof: RegisteredSealProof::StackedDrg2KiBV1_1,
            vanilla_proofs: VanillaSealProof::StackedDrg2KiBV1(Vec::new()),
            comm_r: [1; 32],
            comm_d: [3; 32],
            replica_id: Default::default(),
            seed: [9; 32],
            ticket: [1; 32],
        }
    }

    fn c2out() -> SealCommitPhase2Output {
        SealCommitPhase2Output {
            proof: vec![4; 192],
        }
    }

    pub(crate) fn snap_encode_out() -> SnapEncodeOutput {
        SnapEncodeOutput {
            comm_r_new: [11; 32],
            comm_r_last_new: [12; 32],
            comm_d_new: [13; 32],
        }
    }

    fn snapup_info() -> AllocatedSnapUpSector {
        AllocatedSnapUpSector {
            sector: allocated(6),
            pieces: pieces_v2(),
            public: public_info(21),
            private: private_info("store-a"),
        }
    }

    fn rebuild_info(
        pieces: Option<Vec<LegacyDealInfo>>,
        pieces_v2: Option<Vec<SectorPieceV2>>,
        upgraded: bool,
    ) -> SectorRebuildInfo {
        SectorRebuildInfo {
            sector: allocated(7),
            ticket: ticket(4),
            pieces,
            pieces_v2,
            is_snap_up: upgraded,
            upgrade_public: upgraded.then(|| public_info(22)),
        }
    }

    fn unseal_info() -> SectorUnsealInfo {
        SectorUnsealInfo {
            sector: allocated(8),
            piece_cid: data_commitment_cid(&[14; 32]),
            offset: 0,
            size: 1016,
            private_info: private_info("store-b"),
            ticket: ticket(5),
            comm_d: [15; 32],
            dest: vec!["file:///tmp/x".to_string()],
            state: "set_up".to_string(),
            error_info: String::new(),
        }
    }

    /// One event of every variant except `SetState`.
    pub(crate) fn every_event() -> Vec<Event> {
        vec![
            Event::Idle,
            Event::Retry,
            Event::Allocate(allocated(5)),
            Event::AcquireDeals(Some(legacy_deals())),
            Event::AcquireDealsV2(None),
            Event::AddPiece(pieces()),
            Event::BuildTreeD,
            Event::AssignTicket(None),
            Event::PC1(ticket(1), pc1out()),
            Event::PC2(pc2out(1)),
            Event::PC2NeedSyntheticProof(pc2out(1)),
            Event::SyntheticPoRep,
            Event::SubmitPC,
            Event::CheckPC,
            Event::ReSubmitPC,
            Event::Persist("store-a".to_string()),
            Event::SubmitPersistance,
            Event::AssignSeed(seed()),
            Event::C1(c1out()),
            Event::C2(c2out()),
            Event::SubmitProof,
            Event::ReSubmitProof,
            Event::Finish,
            Event::AllocatedSnapUpSector(snapup_info()),
            Event::SnapEncode(snap_encode_out()),
            Event::SnapProve(vec![1, 2, 3]),
            Event::RePersist,
            Event::AllocatedRebuildSector(rebuild_info(None, None, false)),
            Event::CheckSealed,
            Event::SkipSnap,
            Event::AllocatedUnsealSector(unseal_info()),
            Event::UnsealDone(1016),
            Event::UploadPieceDone,
        ]
    }

    fn json<T: Serialize>(v: &T) -> serde_json::Value {
        serde_json::to_value(v).expect("to json")
    }

    #[test]
    fn names_and_indices_round_trip_for_all_states() {
        assert_eq!(State::ALL.len(), 26);
        for (i, s) in State::ALL.iter().copied().enumerate() {
            let i = u32::try_from(i).expect("index");
            assert_eq!(s.index(), i);
            assert_eq!(State::from_index(i), Some(s));
            assert_eq!(s.as_str().parse::<State>(), Ok(s));
            assert_eq!(s.to_string(), s.as_str());
            // By name in JSON; the name and the legacy integer both read back.
            assert_eq!(json(&s), json!(s.as_str()));
            let by_name: State = serde_json::from_value(json!(s.as_str())).expect("by name");
            let by_index: State = serde_json::from_value(json!(i)).expect("by index");
            assert_eq!((by_name, by_index), (s, s));
        }
        assert_eq!(State::from_index(26), None);
        assert_eq!(State::PersistanceSubmitted.index(), 12);
        assert_eq!(State::SyntheticPoRepNeeded.index(), 8);
        assert_eq!(State::Unsealed.index(), 25);
    }

    #[test]
    fn bad_state_names_and_indices_are_refused_with_the_valid_names() {
        let err = "PersistenceSubmitted"
            .parse::<State>()
            .expect_err("misspelt");
        let text = err.to_string();
        assert!(text.contains("\"PersistenceSubmitted\""), "{text}");
        assert!(text.contains("Empty, Allocated,"), "{text}");
        assert!(text.contains("PersistanceSubmitted"), "{text}");
        assert!(text.ends_with("SnapDone, Unsealed"), "{text}");
        assert!(
            "pc1done".parse::<State>().is_err(),
            "names are case-sensitive"
        );

        for bad in [json!(26), json!(-1), json!("Nope"), json!(1.5), json!(null)] {
            assert!(
                serde_json::from_value::<State>(bad.clone()).is_err(),
                "{bad}"
            );
        }
        let err = serde_json::from_value::<State>(json!(26)).expect_err("index 26");
        assert!(err.to_string().contains("unknown state index 26"), "{err}");
    }

    #[test]
    fn a_record_with_legacy_integer_states_loads() {
        let mut v = json(&Sector::new(Plan::Sealer.as_str()));
        v["state"] = json!(6);
        v["prev_state"] = json!(5);
        let s: Sector = serde_json::from_value(v).expect("legacy record");
        assert_eq!(s.state, State::PC1Done);
        assert_eq!(s.prev_state, Some(State::TicketAssigned));
        // Written back by name.
        let v = json(&s);
        assert_eq!(v["state"], json!("PC1Done"));
        assert_eq!(v["prev_state"], json!("TicketAssigned"));
    }

    #[test]
    fn a_full_record_round_trips_through_json() {
        let mut s = Sector::new(Plan::Snapup.as_str());
        s.apply(
            Event::AllocatedSnapUpSector(snapup_info()),
            State::Allocated,
        )
        .expect("allocate");
        s.deals = Some(legacy_deals());
        s.retry = 2;
        s.phases = Phases {
            pieces: Some(pieces()),
            ticket: Some(ticket(1)),
            pc1out: Some(pc1out()),
            pc2out: Some(pc2out(1)),
            pc2_re_submit: true,
            persist_instance: Some("store-a".to_string()),
            seed: Some(seed()),
            c1out: Some(c1out()),
            c2out: Some(c2out()),
            c2_re_submit: true,
            snap_encode_out: Some(snap_encode_out()),
            snap_prov_out: Some(vec![1, 2]),
            unseal_in: Some(UnsealInput {
                piece_cid: data_commitment_cid(&[1; 32]),
                comm_d: [2; 32],
                offset: 3,
                size: 4,
            }),
        };
        let v = json(&s);
        let back: Sector = serde_json::from_value(v.clone()).expect("back");
        assert_eq!(json(&back), v);
        assert_eq!(v["version"], json!(1));
        assert_eq!(v["plan"], json!("snapup"));
        assert_eq!(v["state"], json!("Allocated"));
        assert_eq!(v["prev_state"], json!("Empty"));
        assert_eq!(v["finalized"]["public"]["CommR"], json!(vec![21u8; 32]));
        assert_eq!(
            v["finalized"]["private"]["AccessInstance"],
            json!("store-a")
        );
        assert_eq!(v["base"]["prove_input"][1], json!(6));
        assert_eq!(
            v["base"]["allocated"]["ID"],
            json!({"Miner": 1000, "Number": 6})
        );
    }

    #[test]
    fn a_new_record_defaults() {
        let s = Sector::new(Plan::Rebuild.as_str());
        assert_eq!((s.version, s.state, s.prev_state), (1, State::Empty, None));
        assert_eq!(s.plan(), "rebuild");
        assert_eq!(s.sector_id(), None);
        let mut unnamed = s.clone();
        unnamed.plan = None;
        assert_eq!(unnamed.plan(), "sealer");
        // A minimal record (missing optional parts) loads.
        let min: Sector =
            serde_json::from_value(json!({"version": 1, "state": "Empty"})).expect("min");
        assert_eq!(min.plan(), "sealer");
        assert!(min.phases.pieces.is_none());
    }

    #[test]
    fn prover_id_is_the_leb128_of_the_actor_id() {
        assert_eq!(prover_id(0), [0; 32]);
        let p = prover_id(1000);
        assert_eq!(&p[..2], &[232, 7]);
        assert!(p[2..].iter().all(|&b| b == 0));
        let p = prover_id(u64::MAX);
        assert_eq!(&p[..10], &[255, 255, 255, 255, 255, 255, 255, 255, 255, 1]);
        assert!(p[10..].iter().all(|&b| b == 0));
    }

    #[test]
    fn apply_merges_every_payload() {
        let mut s = Sector::new(Plan::Sealer.as_str());
        s.apply(Event::Allocate(allocated(5)), State::Allocated)
            .expect("allocate");
        let base = s.base.clone().expect("base");
        assert_eq!(base.allocated, allocated(5));
        assert_eq!(base.prove_input.0, prover_id(1000));
        assert_eq!(u64::from(base.prove_input.1), 5);
        assert_eq!(
            s.sector_id(),
            Some(SectorId {
                miner: 1000,
                number: 5
            })
        );
        assert_eq!(
            (s.prev_state, s.state),
            (Some(State::Empty), State::Allocated)
        );

        s.apply(
            Event::AcquireDeals(Some(legacy_deals())),
            State::DealsAcquired,
        )
        .expect("deals v1");
        assert_eq!(s.deals, Some(legacy_deals()));
        s.apply(Event::AcquireDealsV2(Some(pieces_v2())), State::Allocated)
            .expect("deals v2");
        assert_eq!(s.deals_v2, Some(pieces_v2()));
        s.apply(Event::AcquireDealsV2(None), State::DealsAcquired)
            .expect("cc");
        assert_eq!(s.deals_v2, None);

        s.apply(Event::AddPiece(pieces()), State::PieceAdded)
            .expect("pieces");
        assert_eq!(s.phases.pieces, Some(pieces()));

        s.apply(Event::AssignTicket(Some(ticket(1))), State::TicketAssigned)
            .expect("ticket");
        assert_eq!(s.phases.ticket, Some(ticket(1)));
        s.apply(Event::AssignTicket(None), State::TreeDBuilt)
            .expect("clear ticket");
        assert_eq!(
            s.phases.ticket, None,
            "AssignTicket(None) clears the ticket"
        );

        s.apply(Event::PC1(ticket(2), pc1out()), State::PC1Done)
            .expect("pc1");
        assert_eq!(s.phases.ticket, Some(ticket(2)));
        assert_eq!(s.phases.pc1out.as_ref().map(|o| o.comm_d), Some([3; 32]));

        s.apply(Event::PC2(pc2out(1)), State::PC2Done).expect("pc2");
        assert_eq!(s.phases.pc2out.as_ref().map(|o| o.comm_r), Some([1; 32]));
        s.apply(
            Event::PC2NeedSyntheticProof(pc2out(2)),
            State::SyntheticPoRepNeeded,
        )
        .expect("pc2 synth");
        assert_eq!(s.phases.pc2out.as_ref().map(|o| o.comm_r), Some([2; 32]));

        s.apply(Event::ReSubmitPC, State::PC2Done)
            .expect("resubmit");
        assert!(s.phases.pc2_re_submit);
        s.apply(Event::SubmitPC, State::PCSubmitted)
            .expect("submit");
        assert!(!s.phases.pc2_re_submit);

        s.apply(Event::Persist("store-a".to_string()), State::Persisted)
            .expect("persist");
        assert_eq!(s.phases.persist_instance.as_deref(), Some("store-a"));
        s.apply(Event::AssignSeed(seed()), State::SeedAssigned)
            .expect("seed");
        assert_eq!(s.phases.seed, Some(seed()));
        s.apply(Event::C1(c1out()), State::C1Done).expect("c1");
        assert_eq!(s.phases.c1out.as_ref().map(|o| o.seed), Some([9; 32]));
        s.apply(Event::C2(c2out()), State::C2Done).expect("c2");
        assert_eq!(s.phases.c2out.as_ref().map(|o| o.proof.len()), Some(192));

        s.apply(Event::ReSubmitProof, State::ProofSubmitted)
            .expect("resubmit proof");
        assert!(s.phases.c2_re_submit);
        s.apply(Event::SubmitProof, State::C2Done)
            .expect("submit proof");
        assert!(!s.phases.c2_re_submit);

        s.apply(Event::SnapEncode(snap_encode_out()), State::SnapEncoded)
            .expect("snap encode");
        assert_eq!(s.phases.snap_encode_out, Some(snap_encode_out()));
        s.apply(Event::SnapProve(vec![7, 8]), State::SnapProved)
            .expect("snap prove");
        assert_eq!(s.phases.snap_prov_out, Some(vec![7, 8]));

        // Payload-free events change only the state.
        let before = json(&s.phases);
        for e in [
            Event::SetState(State::Empty),
            Event::BuildTreeD,
            Event::SyntheticPoRep,
            Event::CheckPC,
            Event::SubmitPersistance,
            Event::Finish,
            Event::RePersist,
            Event::CheckSealed,
            Event::SkipSnap,
            Event::UnsealDone(5),
            Event::UploadPieceDone,
        ] {
            let next = if s.state == State::Finished {
                State::Aborted
            } else {
                State::Finished
            };
            s.apply(e, next).expect("no payload");
        }
        assert_eq!(json(&s.phases), before);
        assert_eq!(
            s.sector_id(),
            Some(SectorId {
                miner: 1000,
                number: 5
            })
        );
    }

    #[test]
    fn apply_allocations_of_existing_sectors() {
        let mut s = Sector::new(Plan::Snapup.as_str());
        s.apply(
            Event::AllocatedSnapUpSector(snapup_info()),
            State::Allocated,
        )
        .expect("snapup");
        assert_eq!(s.sector_id().map(|id| id.number), Some(6));
        assert_eq!(s.deals_v2, Some(pieces_v2()));
        assert_eq!(
            s.finalized,
            Some(SectorFinalized {
                public: SectorPublic { comm_r: [21; 32] },
                private: private_info("store-a"),
            })
        );

        // Rebuild: v1 pieces win over v2; the ticket is stored; no UpgradePublic, no finalized.
        let mut s = Sector::new(Plan::Rebuild.as_str());
        let info = rebuild_info(Some(legacy_deals()), Some(pieces_v2()), false);
        s.apply(Event::AllocatedRebuildSector(info), State::Allocated)
            .expect("rebuild");
        assert_eq!(s.sector_id().map(|id| id.number), Some(7));
        assert_eq!(s.deals, Some(legacy_deals()));
        assert_eq!(s.deals_v2, None);
        assert_eq!(s.phases.ticket, Some(ticket(4)));
        assert_eq!(s.finalized, None);

        // Rebuild of an upgraded sector: v2 pieces, finalized with the old CommR.
        let mut s = Sector::new(Plan::Rebuild.as_str());
        let info = rebuild_info(None, Some(pieces_v2()), true);
        s.apply(Event::AllocatedRebuildSector(info), State::Allocated)
            .expect("rebuild snap");
        assert_eq!(s.deals, None);
        assert_eq!(s.deals_v2, Some(pieces_v2()));
        assert_eq!(
            s.finalized,
            Some(SectorFinalized {
                public: SectorPublic { comm_r: [22; 32] },
                private: SectorPrivateInfo::default(),
            })
        );

        let mut s = Sector::new(Plan::Unseal.as_str());
        s.apply(
            Event::AllocatedUnsealSector(unseal_info()),
            State::Allocated,
        )
        .expect("unseal");
        assert_eq!(s.sector_id().map(|id| id.number), Some(8));
        assert_eq!(s.phases.ticket, Some(ticket(5)));
        assert_eq!(
            s.phases.unseal_in,
            Some(UnsealInput {
                piece_cid: data_commitment_cid(&[14; 32]),
                comm_d: [15; 32],
                offset: 0,
                size: 1016,
            })
        );
        assert_eq!(
            s.finalized,
            Some(SectorFinalized {
                public: SectorPublic::default(),
                private: private_info("store-b"),
            })
        );
    }

    #[test]
    fn apply_refuses_an_unchanged_state_and_changes_nothing() {
        let mut s = Sector::new(Plan::Sealer.as_str());
        let before = json(&s);
        let err = s
            .apply(Event::Allocate(allocated(5)), State::Empty)
            .expect_err("unchanged");
        assert_eq!(
            err,
            ApplyError::StateUnchanged {
                state: State::Empty,
                event: "Allocate"
            }
        );
        assert!(err
            .to_string()
            .starts_with("state unchanged, may enter an infinite loop"));
        assert_eq!(json(&s), before, "a refused apply changes nothing");

        let err = s
            .apply(Event::SetState(State::Empty), State::Empty)
            .expect_err("resume to the current state (P-5)");
        assert!(err.to_string().contains("SetState"), "{err}");
    }

    #[test]
    fn event_names() {
        let names: Vec<&str> = every_event().iter().map(Event::name).collect();
        assert_eq!(
            names,
            [
                "Idle",
                "Retry",
                "Allocate",
                "AcquireDeals",
                "AcquireDeals",
                "AddPiece",
                "BuildTreeD",
                "AssignTicket",
                "PC1",
                "PC2",
                "PC2NeedSyntheticProof",
                "SyntheticPoRep",
                "SubmitPC",
                "CheckPC",
                "ReSubmitPC",
                "Persist",
                "SubmitPersistance",
                "AssignSeed",
                "C1",
                "C2",
                "SubmitProof",
                "ReSubmitProof",
                "Finish",
                "AllocatedSnapUpSector",
                "SnapEncode",
                "SnapProve",
                "RePersist",
                "AllocatedRebuildSector",
                "CheckSealed",
                "SkipSnap",
                "AllocatedUnsealSector",
                "Unsealed",
                "UploadPieceDone",
            ]
        );
        assert_eq!(Event::SetState(State::Empty).to_string(), "SetState");
    }

    #[test]
    fn display_stages() {
        let cases = [
            (State::Empty, Plan::Sealer.as_str(), "-"),
            (State::Allocated, Plan::Sealer.as_str(), "AcquireDeals"),
            (State::Allocated, Plan::Snapup.as_str(), "AddPieces"),
            (State::Allocated, Plan::Rebuild.as_str(), "AddPieces"),
            (State::Allocated, Plan::Unseal.as_str(), "Unseal"),
            (State::TreeDBuilt, Plan::Sealer.as_str(), "AssignTicket"),
            (State::TreeDBuilt, Plan::Snapup.as_str(), "SnapEncode"),
            (State::TreeDBuilt, Plan::Rebuild.as_str(), "PC1"),
            (State::PC2Done, Plan::Sealer.as_str(), "SubmitPreCommit"),
            (State::PC2Done, Plan::Rebuild.as_str(), "C1"),
            (State::PC2Done, "niporep", "SubmitPreCommit"),
            (State::Persisted, Plan::Snapup.as_str(), "SubmitSnapupProof"),
            (State::Persisted, Plan::Rebuild.as_str(), "SubmitPersisted"),
            (State::SnapProved, Plan::Snapup.as_str(), "PersistFiles"),
            (
                State::SealedChecked,
                Plan::Rebuild.as_str(),
                "PrepareForSnapup",
            ),
            (State::SealedChecked, Plan::Sealer.as_str(), "-"),
            (
                State::PersistanceSubmitted,
                Plan::Sealer.as_str(),
                "WaitSeed",
            ),
            (
                State::ProofSubmitted,
                Plan::Sealer.as_str(),
                "WaitProofLanded",
            ),
            (State::Unsealed, Plan::Unseal.as_str(), "UploadPiece"),
            (State::Finished, Plan::Sealer.as_str(), "-"),
            (State::Aborted, Plan::Unseal.as_str(), "-"),
        ];
        for (state, plan, want) in cases {
            assert_eq!(display_stage(state, plan), want, "{state} in {plan}");
        }
    }
}
