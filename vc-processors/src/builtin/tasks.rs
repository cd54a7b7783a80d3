//! Every builtin task and its output, with exactly damocles' JSON (vc-processors-spec §2).
//!
//! Field names are the snake_case names used on the wire. Commitments, tickets, prover ids and
//! plain byte vectors are JSON arrays of integers; only PoSt proofs ([`SnarkProof`]) are base64.
//! `PieceFile` is the one camelCase enum, and `vannilla_proofs` keeps damocles' spelling.

use std::collections::HashMap;
use std::path::PathBuf;

use filecoin_proofs_api::seal::{
    SealCommitPhase1Output, SealCommitPhase2Output, SealPreCommitPhase1Output,
    SealPreCommitPhase2Output,
};
pub use filecoin_proofs_api::{
    ChallengeSeed, Commitment, PieceInfo, ProverId, RegisteredPoStProof, RegisteredSealProof,
    RegisteredUpdateProof, SectorId, Ticket, UnpaddedByteIndex, UnpaddedBytesAmount,
};
use serde::{Deserialize, Serialize};

use crate::b64serde::BytesVec;
use crate::protocol::Task;

/// Stage name of [`AddPieces`].
pub const STAGE_NAME_ADD_PIECES: &str = "add_pieces";
/// Stage name of [`TreeD`].
pub const STAGE_NAME_TREED: &str = "tree_d";
/// Stage name of [`PC1`].
pub const STAGE_NAME_PC1: &str = "pc1";
/// Stage name of [`PC2`].
pub const STAGE_NAME_PC2: &str = "pc2";
/// Stage name of C1; C1 runs in-process and has no task type (only a limitation key).
pub const STAGE_NAME_C1: &str = "c1";
/// Stage name of [`C2`].
pub const STAGE_NAME_C2: &str = "c2";
/// Stage name of [`SnapEncode`].
pub const STAGE_NAME_SNAP_ENCODE: &str = "snap_encode";
/// Stage name of [`SnapProve`].
pub const STAGE_NAME_SNAP_PROVE: &str = "snap_prove";
/// Stage name of [`Transfer`].
pub const STAGE_NAME_TRANSFER: &str = "transfer";
/// Stage name of [`WindowPoSt`].
pub const STAGE_NAME_WINDOW_POST: &str = "window_post";
/// Stage name of [`WinningPoSt`].
pub const STAGE_NAME_WINNING_POST: &str = "winning_post";
/// Stage name of [`Unseal`].
pub const STAGE_NAME_UNSEAL: &str = "unseal";
/// Stage name of synthetic proofs; they run in-process (only a limitation key).
pub const STAGE_NAME_SYNTHETIC_PROOF: &str = "synth_proof";

/// Where the bytes of one piece come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PieceFile {
    /// Fetched over HTTP(S).
    Url(String),
    /// A local file.
    Local(PathBuf),
    /// Zeros: a filler piece.
    Pledge,
}

/// One piece to put into a sector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    /// Its source.
    pub piece_file: PieceFile,
    /// Bytes of real data at the start of the source; the rest up to `piece_size` is zeros.
    pub payload_size: u64,
    /// Unpadded piece size.
    pub piece_size: UnpaddedBytesAmount,
}

/// Writes the pieces, fr32-padded, into the staged (unsealed) file and returns their
/// commitments. No pieces means a CC sector: a zero sector with its zero commitment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddPieces {
    /// Seal proof type of the sector.
    pub seal_proof_type: RegisteredSealProof,
    /// The pieces, in order; they must already be aligned (filler pieces included).
    pub pieces: Vec<Piece>,
    /// The staged file to (re)write.
    pub staged_filepath: PathBuf,
}

impl Task for AddPieces {
    const STAGE: &'static str = STAGE_NAME_ADD_PIECES;
    type Output = Vec<PieceInfo>;
}

/// Builds the data tree (tree-d) of a staged file into `cache_dir/sc-02-data-tree-d.dat`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TreeD {
    /// Seal proof type of the sector.
    pub registered_proof: RegisteredSealProof,
    /// The full, fr32-padded staged file.
    pub staged_file: PathBuf,
    /// Where the tree goes.
    pub cache_dir: PathBuf,
}

impl Task for TreeD {
    const STAGE: &'static str = STAGE_NAME_TREED;
    type Output = bool;
}

/// PreCommit phase 1 (SDR labelling).
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PC1 {
    /// Seal proof type.
    pub registered_proof: RegisteredSealProof,
    /// Cache directory of the sector.
    pub cache_path: PathBuf,
    /// The staged file.
    pub in_path: PathBuf,
    /// The sealed file to write.
    pub out_path: PathBuf,
    /// Prover id of the miner.
    pub prover_id: ProverId,
    /// Sector number.
    pub sector_id: SectorId,
    /// Chain ticket.
    pub ticket: Ticket,
    /// Pieces of the sector (the add_pieces output).
    pub piece_infos: Vec<PieceInfo>,
}

impl Task for PC1 {
    const STAGE: &'static str = STAGE_NAME_PC1;
    type Output = SealPreCommitPhase1Output;
}

/// PreCommit phase 2 (tree-c, tree-r-last, CommR).
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PC2 {
    /// The PC1 output.
    pub pc1out: SealPreCommitPhase1Output,
    /// Cache directory of the sector.
    pub cache_dir: PathBuf,
    /// The sealed file.
    pub sealed_file: PathBuf,
}

impl Task for PC2 {
    const STAGE: &'static str = STAGE_NAME_PC2;
    type Output = SealPreCommitPhase2Output;
}

/// Commit phase 2: the Groth16 SNARK of the PoRep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct C2 {
    /// The C1 output.
    pub c1out: SealCommitPhase1Output,
    /// Prover id of the miner.
    pub prover_id: ProverId,
    /// Sector number.
    pub sector_id: SectorId,
    /// Miner actor id; unused by the builtin, there for remote C2 services.
    pub miner_id: u64,
}

impl Task for C2 {
    const STAGE: &'static str = STAGE_NAME_C2;
    type Output = SealCommitPhase2Output;
}

/// SnapDeals: encode new data into an existing CC sector.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapEncode {
    /// Update proof type.
    pub registered_proof: RegisteredUpdateProof,
    /// The new replica (update file).
    pub new_replica_path: PathBuf,
    /// The update cache directory.
    pub new_cache_path: PathBuf,
    /// The existing sealed file (sector key).
    pub sector_path: PathBuf,
    /// The existing cache directory.
    pub sector_cache_path: PathBuf,
    /// The staged new data.
    pub staged_data_path: PathBuf,
    /// Pieces of the new data.
    pub piece_infos: Vec<PieceInfo>,
}

/// The commitments of an encoded update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapEncodeOutput {
    /// New replica commitment.
    pub comm_r_new: Commitment,
    /// New tree-r-last root.
    pub comm_r_last_new: Commitment,
    /// New data commitment.
    pub comm_d_new: Commitment,
}

impl Task for SnapEncode {
    const STAGE: &'static str = STAGE_NAME_SNAP_ENCODE;
    type Output = SnapEncodeOutput;
}

/// SnapDeals: the SNARK over the partition (vanilla) proofs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapProve {
    /// Update proof type.
    pub registered_proof: RegisteredUpdateProof,
    /// The partition proofs (the field name is misspelt on the wire, and kept).
    pub vannilla_proofs: Vec<Vec<u8>>,
    /// Old replica commitment.
    pub comm_r_old: Commitment,
    /// New replica commitment.
    pub comm_r_new: Commitment,
    /// New data commitment.
    pub comm_d_new: Commitment,
}

/// The update proof bytes.
pub type SnapProveOutput = Vec<u8>;

impl Task for SnapProve {
    const STAGE: &'static str = STAGE_NAME_SNAP_PROVE;
    type Output = SnapProveOutput;
}

/// A persist store named by a transfer, with the `Meta` the manager configured for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferStoreInfo {
    /// Store instance name.
    pub name: String,
    /// Its `Meta` key-values.
    pub meta: Option<HashMap<String, String>>,
    /// Our addition: the objstore plugin that implements the store. With it, route ends
    /// naming this store are object paths (`sealed/s-t01000-1`) that the builtin reads and
    /// writes through the plugin, opened with `meta`. Absent on the wire when unset, so
    /// file-store transfers keep damocles' JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<TransferPlugin>,
}

/// How to open a store through an objstore plugin (our addition to [`TransferStoreInfo`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferPlugin {
    /// The plugin library file (absolute path).
    pub library: PathBuf,
    /// The store's `Path` as the plugin understands it (a directory for file stores,
    /// informational for S3).
    pub path: String,
}

/// One end of a transfer route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferItem {
    /// The store the path belongs to; `None` for a local path.
    pub store_name: Option<String>,
    /// The path.
    pub uri: PathBuf,
}

/// How a route is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferOption {
    /// Informational: whether the source is a directory (the builtin looks at the file system).
    pub is_dir: bool,
    /// Make a symlink instead of copying, where links are allowed.
    pub allow_link: bool,
}

/// One copy (or link) from `src` to `dest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRoute {
    /// Source.
    pub src: TransferItem,
    /// Destination.
    pub dest: TransferItem,
    /// Options; `None` means copy.
    pub opt: Option<TransferOption>,
}

/// Copies or links files and directories, route by route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// Stores named by the routes.
    pub stores: HashMap<String, TransferStoreInfo>,
    /// The routes, done in order.
    pub routes: Vec<TransferRoute>,
}

impl Task for Transfer {
    const STAGE: &'static str = STAGE_NAME_TRANSFER;
    type Output = bool;
}

/// One sector to prove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoStReplicaInfo {
    /// Sector number.
    pub sector_id: u64,
    /// Its replica commitment.
    pub comm_r: Commitment,
    /// Its cache directory (tree-r-last, p_aux, t_aux).
    pub cache_dir: PathBuf,
    /// Its sealed (or update) file.
    pub sealed_file: PathBuf,
}

/// Base64 PoSt proof bytes.
pub type SnarkProof = BytesVec;

/// WindowPoSt over a set of sectors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowPoSt {
    /// Miner actor id; the prover id is derived from it.
    pub miner_id: u64,
    /// PoSt proof type (`StackedDrgWindow…V1_2` for the chain's `…V1_1`).
    pub proof_type: RegisteredPoStProof,
    /// The sectors.
    pub replicas: Vec<PoStReplicaInfo>,
    /// The challenge randomness.
    pub seed: ChallengeSeed,
}

/// The proof, or the sectors that could not be proven.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowPoStOutput {
    /// One proof (all partitions concatenated), or none when there are faults.
    pub proofs: Vec<SnarkProof>,
    /// Sectors whose files failed the proof.
    pub faults: Vec<u64>,
}

impl Task for WindowPoSt {
    const STAGE: &'static str = STAGE_NAME_WINDOW_POST;
    type Output = WindowPoStOutput;
}

/// WinningPoSt: the same fields as [`WindowPoSt`], with a winning proof type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WinningPoSt {
    /// Miner actor id.
    pub miner_id: u64,
    /// PoSt proof type (`StackedDrgWinning…V1`).
    pub proof_type: RegisteredPoStProof,
    /// The challenged sectors.
    pub replicas: Vec<PoStReplicaInfo>,
    /// The challenge randomness.
    pub seed: ChallengeSeed,
}

/// The winning proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WinningPoStOutput {
    /// The proofs (one).
    pub proofs: Vec<SnarkProof>,
}

impl Task for WinningPoSt {
    const STAGE: &'static str = STAGE_NAME_WINNING_POST;
    type Output = WinningPoStOutput;
}

/// Recovers a range of a sector's original data from its sealed file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unseal {
    /// Seal proof type.
    pub registered_proof: RegisteredSealProof,
    /// Prover id of the miner.
    pub prover_id: ProverId,
    /// Sector number.
    pub sector_id: SectorId,
    /// Data commitment of the sector.
    pub comm_d: Commitment,
    /// The sector's ticket.
    pub ticket: Ticket,
    /// Cache directory (p_aux, tree-r-last).
    pub cache_dir: PathBuf,
    /// The sealed file.
    pub sealed_file: PathBuf,
    /// Where the unsealed bytes go (created or truncated).
    pub unsealed_output: PathBuf,
    /// Unpadded offset into the sector.
    pub offset: UnpaddedByteIndex,
    /// Unpadded length.
    pub num_bytes: UnpaddedBytesAmount,
}

impl Task for Unseal {
    const STAGE: &'static str = STAGE_NAME_UNSEAL;
    type Output = UnpaddedBytesAmount;
}
