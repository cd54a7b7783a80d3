//! Deals on the devnet: pieces imported by the operator, published on chain, queued per miner
//! and laid out into sectors by `AcquireDeals` (our stand-in for a market node).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, ensure, Context, Result};
use damocles_manager_api::json::{data_commitment_cid, data_commitment_of};
use damocles_manager_api::types::{
    AcquireDealsSpec, DealInfoV2, PieceInfo, SectorId, SectorPieceV2,
};
use serde::{Deserialize, Serialize};
use vc_processors::builtin::proofs::{self as vp, api};

use crate::chain::{Chain, DealProposal, MarketDeal, EPOCHS_PER_DAY};
use crate::kv::{cf, Kv};
use crate::piece_layout::filler_sizes;
use crate::proofs::seal_proof;
use crate::stores::PieceStores;

/// Where a deal is in this manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DealState {
    /// Waiting for a sector.
    Queued,
    /// In a sector being sealed.
    Assigned {
        /// The sector.
        sector: SectorId,
    },
}

/// A deal the manager holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DealRecord {
    /// The deal as published.
    pub deal: MarketDeal,
    /// Bytes of real data in the piece.
    pub payload_size: u64,
    /// Where it is.
    pub state: DealState,
}

fn deal_key(id: u64) -> Vec<u8> {
    format!("deal/{id:020}").into_bytes()
}

/// Options of an import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Epochs from now until the deal must be sealed.
    pub start_in: i64,
    /// Deal length in epochs.
    pub duration: i64,
    /// The client address recorded.
    pub client: String,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            start_in: 20_000,
            duration: 200 * EPOCHS_PER_DAY,
            client: "t0100".into(),
        }
    }
}

/// The deal queue.
pub struct DealManager {
    kv: Kv,
    chain: Arc<dyn Chain>,
    pieces: Arc<PieceStores>,
    import_dirs: Vec<PathBuf>,
    lock: Mutex<()>,
}

/// The file `path` names, resolved (no `..`, no symlink), when it is a regular file inside one
/// of `dirs`.
fn confined(path: &Path, dirs: &[PathBuf]) -> Result<PathBuf> {
    ensure!(
        !dirs.is_empty(),
        "no deal import directory: files are imported only from the directories of [Devnet] \
         DealImportDirs"
    );
    let real =
        std::fs::canonicalize(path).with_context(|| format!("reading {}", path.display()))?;
    ensure!(real.is_file(), "{} is not a regular file", path.display());
    for dir in dirs {
        if let Ok(dir) = std::fs::canonicalize(dir) {
            if real.starts_with(&dir) {
                return Ok(real);
            }
        }
    }
    let listed: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    anyhow::bail!(
        "{} is outside the deal import directories ([Devnet] DealImportDirs: {})",
        path.display(),
        listed.join(", ")
    )
}

impl std::fmt::Debug for DealManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DealManager").finish_non_exhaustive()
    }
}

/// The padded piece size holding `len` bytes of data (a power of two, at least 128).
pub fn padded_piece_size(len: u64) -> u64 {
    let padded = len.div_ceil(127) * 128;
    padded.next_power_of_two().max(128)
}

/// A zero filler piece of `size` padded bytes.
pub fn filler_piece(size: u64) -> Result<SectorPieceV2> {
    let cid = data_commitment_cid(&vp::zero_piece_commitment(size)?);
    Ok(SectorPieceV2 {
        piece: PieceInfo {
            size,
            piece_cid: cid.clone(),
        },
        deal_info: DealInfoV2 {
            deal_id: 0,
            publish_cid: None,
            allocation_id: 0,
            piece_cid: cid,
            piece_size: size,
            client: String::new(),
            provider: String::new(),
            offset: 0,
            length: size,
            payload_size: 0,
            start_epoch: 0,
            end_epoch: 0,
            is_builtin_market: true,
            is_compatible: true,
        },
    })
}

/// Fills `[from, to)` of a sector with aligned zero pieces.
fn fillers(from: u64, to: u64, out: &mut Vec<SectorPieceV2>) -> Result<()> {
    let mut offset = from;
    for size in filler_sizes(from, to) {
        let mut p = filler_piece(size)?;
        p.deal_info.offset = offset;
        out.push(p);
        offset += size;
    }
    Ok(())
}

impl DealManager {
    /// Over the state database, the chain and the piece stores.
    /// Deals kept in `kv`, checked against `chain`, pieces kept in `pieces`, files imported only
    /// from `import_dirs`.
    pub fn new(
        kv: Kv,
        chain: Arc<dyn Chain>,
        pieces: Arc<PieceStores>,
        import_dirs: Vec<PathBuf>,
    ) -> Self {
        DealManager {
            kv,
            chain,
            pieces,
            import_dirs,
            lock: Mutex::new(()),
        }
    }

    /// The piece stores.
    pub fn pieces(&self) -> &Arc<PieceStores> {
        &self.pieces
    }

    /// Imports a file as a deal for `miner`: computes its piece commitment, keeps the piece in
    /// the first writable piece store, publishes the deal and queues it.
    pub async fn import(&self, miner: u64, file: &Path, opts: ImportOptions) -> Result<DealRecord> {
        let file = &confined(file, &self.import_dirs)?;
        let info = self
            .chain
            .miner_info(miner)
            .await?
            .with_context(|| format!("miner {miner} does not exist on the chain"))?;
        let len = std::fs::metadata(file)
            .with_context(|| format!("reading {}", file.display()))?
            .len();
        ensure!(len > 0, "{} is empty", file.display());
        let padded = padded_piece_size(len);
        ensure!(
            padded <= info.sector_size,
            "{} needs a {padded}-byte piece, more than the {}-byte sector of miner {miner}",
            file.display(),
            info.sector_size
        );
        let proof = seal_proof(info.seal_proof_type)?;
        let path = file.to_path_buf();
        let comm = tokio::task::spawn_blocking(move || -> Result<[u8; 32]> {
            let f = std::fs::File::open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            let unpadded = padded / 128 * 127;
            let reader = f.take(len).chain(std::io::repeat(0).take(unpadded - len));
            let info = vp::guard("generate_piece_commitment", || {
                api::seal::generate_piece_commitment(
                    proof,
                    reader,
                    api::UnpaddedBytesAmount(unpadded),
                )
            })?;
            Ok(info.commitment)
        })
        .await
        .context("piece commitment task")??;
        let cid = data_commitment_cid(&comm);
        let store = self
            .pieces
            .writable()
            .context("no writable [[Common.PieceStores]] to keep the piece in")?;
        let mut src =
            std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        let name = cid.to_string();
        tokio::task::block_in_place(|| store.put(&name, &mut src))
            .with_context(|| format!("storing piece {cid}"))?;
        let head = self.chain.head().await?;
        let start = head
            .epoch
            .checked_add(opts.start_in)
            .filter(|_| opts.start_in > 0)
            .with_context(|| {
                format!(
                    "start_in {} is not a usable number of epochs",
                    opts.start_in
                )
            })?;
        let end = start
            .checked_add(opts.duration)
            .with_context(|| format!("duration {} overflows the epoch", opts.duration))?;
        let deal = self
            .chain
            .publish_deal(DealProposal {
                piece_cid: cid,
                piece_size: padded,
                verified_deal: false,
                client: opts.client,
                provider: miner,
                label: file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                start_epoch: start,
                end_epoch: end,
            })
            .await?;
        let rec = DealRecord {
            deal,
            payload_size: len,
            state: DealState::Queued,
        };
        self.kv
            .put_json(cf::DEALS, &deal_key(rec.deal.deal_id), &rec)?;
        tracing::info!(deal = rec.deal.deal_id, miner, piece = %rec.deal.proposal.piece_cid, "deal imported and queued");
        Ok(rec)
    }

    /// Every deal held.
    pub fn list(&self) -> Result<Vec<DealRecord>> {
        Ok(self
            .kv
            .scan_json::<DealRecord>(cf::DEALS, b"deal/")?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// Every deal held, each with the chain's view of it (its activation) where the chain has
    /// one, in place of the copy taken at publishing.
    pub async fn list_as_on_chain(&self) -> Result<Vec<DealRecord>> {
        let mut list = self.list()?;
        for rec in &mut list {
            if let Some(d) = self.chain.market_deal(rec.deal.deal_id).await? {
                rec.deal = d;
            }
        }
        Ok(list)
    }

    /// Lays queued deals of the sector's miner into it, largest first, and fills the rest with
    /// aligned zero pieces; `None` when no deal fits (a CC sector). The deals are marked
    /// assigned before this returns.
    pub async fn acquire(
        &self,
        sid: SectorId,
        sector_size: u64,
        spec: AcquireDealsSpec,
    ) -> Result<Option<Vec<SectorPieceV2>>> {
        let head = self.chain.head().await?.epoch;
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let all = self.list()?;
        // Deals already assigned to this sector (an earlier call whose answer was not kept,
        // or a concurrent one) are its deals again: nothing is assigned twice.
        let mine: Vec<DealRecord> = all
            .iter()
            .filter(|r| r.state == (DealState::Assigned { sector: sid }))
            .cloned()
            .collect();
        let mut queued: Vec<DealRecord> = all
            .into_iter()
            .filter(|r| r.state == DealState::Queued && r.deal.proposal.provider == sid.miner)
            .filter(|r| r.deal.proposal.start_epoch > head)
            .collect();
        queued.sort_by_key(|r| r.deal.deal_id);
        let max = spec.max_deals.unwrap_or(u64::MAX);
        let mut chosen = Vec::new();
        let mut used = 0u64;
        if !mine.is_empty() {
            used = mine.iter().map(|r| r.deal.proposal.piece_size).sum();
            chosen = mine;
            queued.clear();
        }
        for r in queued {
            if chosen.len() as u64 >= max {
                break;
            }
            if used + r.deal.proposal.piece_size <= sector_size {
                used += r.deal.proposal.piece_size;
                chosen.push(r);
            }
        }
        if chosen.is_empty() || spec.min_used_space.is_some_and(|m| used < m) {
            return Ok(None);
        }
        // Largest first keeps every piece aligned without inner padding.
        chosen.sort_by_key(|r| std::cmp::Reverse(r.deal.proposal.piece_size));
        let mut pieces = Vec::new();
        let mut offset = 0;
        for r in &chosen {
            let p = &r.deal.proposal;
            pieces.push(SectorPieceV2 {
                piece: PieceInfo {
                    size: p.piece_size,
                    piece_cid: p.piece_cid.clone(),
                },
                deal_info: DealInfoV2 {
                    deal_id: r.deal.deal_id,
                    publish_cid: Some(r.deal.publish_cid.clone()),
                    allocation_id: 0,
                    piece_cid: p.piece_cid.clone(),
                    piece_size: p.piece_size,
                    client: p.client.clone(),
                    provider: format!("t0{}", p.provider),
                    offset,
                    length: p.piece_size,
                    payload_size: r.payload_size,
                    start_epoch: p.start_epoch,
                    end_epoch: p.end_epoch,
                    is_builtin_market: true,
                    is_compatible: true,
                },
            });
            offset += p.piece_size;
        }
        fillers(offset, sector_size, &mut pieces)?;
        let mut ops = Vec::new();
        for mut r in chosen {
            r.state = DealState::Assigned { sector: sid };
            ops.push(crate::kv::Op::put_json(
                cf::DEALS,
                deal_key(r.deal.deal_id),
                &r,
            )?);
        }
        self.kv.write(ops)?;
        Ok(Some(pieces))
    }

    /// Puts a sector's deals back in the queue.
    pub fn release(&self, sid: SectorId, pieces: &[SectorPieceV2]) -> Result<()> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut ops = Vec::new();
        for p in pieces.iter().filter(|p| !p.is_filler()) {
            let key = deal_key(p.deal_info.deal_id);
            if let Some(mut r) = self.kv.get_json::<DealRecord>(cf::DEALS, &key)? {
                if r.state == (DealState::Assigned { sector: sid }) {
                    r.state = DealState::Queued;
                    ops.push(crate::kv::Op::put_json(cf::DEALS, key, &r)?);
                }
            }
        }
        if !ops.is_empty() {
            self.kv.write(ops)?;
            tracing::info!(sector = %sid, "deals released back to the queue");
        }
        Ok(())
    }

    /// Checks a sector's pieces against the chain: fillers are zero pieces, deals belong to
    /// the miner, match their proposal and have not started; returns the CommD they make.
    pub async fn check_pieces(
        &self,
        sid: SectorId,
        seal: damocles_manager_api::types::SealProofType,
        pieces: &[SectorPieceV2],
    ) -> Result<[u8; 32], String> {
        let head = self.chain.head().await.map_err(|e| format!("{e:#}"))?.epoch;
        let mut infos = Vec::new();
        let sector_size = seal
            .sector_size()
            .ok_or_else(|| format!("unknown seal proof type {}", seal.0))?;
        for p in pieces {
            if !p.piece.size.is_power_of_two() || p.piece.size < 128 || p.piece.size > sector_size {
                return Err(format!(
                    "piece {} has an invalid size {}",
                    p.piece.piece_cid, p.piece.size
                ));
            }
            let comm = data_commitment_of(&p.piece.piece_cid)?;
            if p.is_filler() {
                let zero = vp::zero_piece_commitment(p.piece.size).map_err(|e| format!("{e:#}"))?;
                if comm != zero {
                    return Err(format!(
                        "piece {} has no deal but is not a zero piece",
                        p.piece.piece_cid
                    ));
                }
            } else {
                let id = p.deal_info.deal_id;
                let deal = self
                    .chain
                    .market_deal(id)
                    .await
                    .map_err(|e| format!("{e:#}"))?
                    .ok_or_else(|| format!("deal {id} not found on chain"))?;
                if deal.proposal.provider != sid.miner {
                    return Err(format!(
                        "deal {id} belongs to miner {}",
                        deal.proposal.provider
                    ));
                }
                if deal.proposal.piece_cid != p.piece.piece_cid
                    || deal.proposal.piece_size != p.piece.size
                {
                    return Err(format!("deal {id}: piece differs from the proposal"));
                }
                if head >= deal.proposal.start_epoch {
                    return Err(format!(
                        "deal {id} should have started at {}",
                        deal.proposal.start_epoch
                    ));
                }
            }
            infos.push(api::PieceInfo {
                commitment: comm,
                size: api::UnpaddedBytesAmount::from(api::PaddedBytesAmount(p.piece.size)),
            });
        }
        let proof = seal_proof(seal).map_err(|e| e.to_string())?;
        vp::guard("compute_comm_d", || {
            api::seal::compute_comm_d(proof, &infos)
        })
        .map_err(|e| format!("computing CommD of the pieces: {e:#}"))
    }
}

/// Checks that a sector's layout is what the worker needs: pieces aligned and within it.
pub fn check_layout(pieces: &[SectorPieceV2], sector_size: u64) -> Result<()> {
    let mut offset = 0u64;
    for p in pieces {
        let size = p.piece.size;
        if !size.is_power_of_two() || size < 128 {
            bail!(
                "piece {} has size {size}, not a power of two of at least 128",
                p.piece.piece_cid
            );
        }
        if !offset.is_multiple_of(size) {
            bail!(
                "piece {} at offset {offset} is not aligned to its size",
                p.piece.piece_cid
            );
        }
        offset += size;
    }
    ensure!(
        offset <= sector_size,
        "pieces take {offset} bytes, more than the sector's {sector_size}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fillers_are_aligned_powers_of_two_that_complete_the_sector() {
        let mut out = Vec::new();
        fillers(512, 2048, &mut out).expect("fillers");
        let sizes: Vec<u64> = out.iter().map(|p| p.piece.size).collect();
        assert_eq!(sizes, vec![512, 1024]);
        let mut all = vec![filler_piece(512).expect("first")];
        all.extend(out);
        check_layout(&all, 2048).expect("aligned");
        assert!(all.iter().all(SectorPieceV2::is_filler));
    }

    #[test]
    fn padded_sizes() {
        assert_eq!(padded_piece_size(1), 128);
        assert_eq!(padded_piece_size(127), 128);
        assert_eq!(padded_piece_size(128), 256);
        assert_eq!(padded_piece_size(1016), 1024);
        assert_eq!(padded_piece_size(1017), 2048);
    }
}
