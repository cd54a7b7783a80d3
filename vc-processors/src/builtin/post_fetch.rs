//! Proving sectors kept in stores without local paths (object storage reached through an
//! objstore plugin such as S3), for the manager's provers and the workers' wdpost threads.
//!
//! A WindowPoSt reads little of a sector: for each challenged leaf, the aligned segment of the
//! sealed replica below the lowest cached row of tree-r-last (8^(rows_to_discard+1) leaves,
//! 16 KiB with the default two discarded rows), plus the cached tree files and `p_aux` /
//! `t_aux`. Before a proof, [`fetch_for_challenges`] writes exactly that into a scratch
//! directory: a sparse file as long as the replica holding only the challenged segments, and
//! the small cache files. The prover then reads the scratch copy like any local sector, and
//! the scratch directory is removed when its [`Scratch`] is dropped.

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, ensure, Context, Result};
use objstore::{ByteRange, ObjectStore};

use super::proofs::{api, cached_filenames_for_sector, to_prover_id};
use super::tasks::PoStReplicaInfo;

/// Bytes of one tree node.
const NODE_SIZE: u64 = 32;
/// Arity of tree-r-last.
const TREE_R_ARITY: usize = 8;

/// A sector whose files are objects of a store without local paths.
#[derive(Clone)]
pub struct RemoteReplica {
    /// Sector number.
    pub sector_id: u64,
    /// Replica commitment.
    pub comm_r: [u8; 32],
    /// Its seal proof (gives the sector size and the cache file names).
    pub seal_proof: api::RegisteredSealProof,
    /// The store of the sealed file and the object path in it.
    pub sealed: (Arc<dyn ObjectStore>, String),
    /// The store of the cache directory and the directory's path in it.
    pub cache: (Arc<dyn ObjectStore>, String),
}

impl std::fmt::Debug for RemoteReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteReplica")
            .field("sector_id", &self.sector_id)
            .field("sealed", &self.sealed.0.full_path(&self.sealed.1))
            .field("cache", &self.cache.0.full_path(&self.cache.1))
            .finish()
    }
}

/// A scratch directory, removed with everything in it when dropped. Its owner holds a lock
/// on it for its whole life, so a later process tells a stale one by the lock (a pid in the
/// name could belong to another process by then).
#[derive(Debug)]
pub struct Scratch {
    // Dropped first: the directory goes while it is still locked.
    dir: tempfile::TempDir,
    _lock: std::fs::File,
}

/// Creates `root` if missing and makes it private (mode 0700): what PoSt fetches of a sector
/// is not for other users of the machine. A root that is a symlink or not a directory is
/// refused.
pub fn private_scratch_root(root: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(root)
        .with_context(|| format!("creating the PoSt scratch root {}", root.display()))?;
    let md = std::fs::symlink_metadata(root)
        .with_context(|| format!("PoSt scratch root {}", root.display()))?;
    anyhow::ensure!(
        md.is_dir(),
        "PoSt scratch root {} is not a directory (a symlink is refused too)",
        root.display()
    );
    if md.permissions().mode() & 0o777 != 0o700 {
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making the PoSt scratch root {} private", root.display()))?;
    }
    Ok(())
}

impl Scratch {
    /// A new, locked directory under `root` (created private if missing).
    pub fn new(root: &Path) -> Result<Self> {
        private_scratch_root(root)?;
        let dir = tempfile::Builder::new()
            .prefix("post-")
            .tempdir_in(root)
            .with_context(|| format!("creating a PoSt scratch directory in {}", root.display()))?;
        let lock = std::fs::File::open(dir.path())
            .with_context(|| format!("opening {}", dir.path().display()))?;
        lock.try_lock()
            .map_err(|e| anyhow!("locking {}: {e}", dir.path().display()))?;
        Ok(Scratch { dir, _lock: lock })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// What a fetch read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchStats {
    /// Bytes of the sealed replica.
    pub replica_bytes: u64,
    /// Bytes of cache files.
    pub cache_bytes: u64,
    /// Ranges of the replica read.
    pub ranges: usize,
}

impl FetchStats {
    /// Every byte read.
    pub fn total(&self) -> u64 {
        self.replica_bytes + self.cache_bytes
    }
}

/// Leaves of one tree-r-last base tree, and how many such trees a sector has.
fn base_trees(sector_size: u64) -> (u64, u64) {
    let trees = crate::layout::tree_r_last_count(sector_size);
    (sector_size / NODE_SIZE / trees, trees)
}

/// The byte ranges of the replica that proving the challenged leaves reads: for each, its
/// aligned segment below the lowest cached tree row; sorted, without duplicates.
pub fn challenged_ranges(sector_size: u64, challenges: &[u64]) -> Result<Vec<ByteRange>> {
    let (leaves, trees) = base_trees(sector_size);
    ensure!(
        leaves.is_power_of_two(),
        "sector size {sector_size}: tree leaves are not a power of two"
    );
    let rows = storage_proofs_core::util::default_rows_to_discard(leaves as usize, TREE_R_ARITY);
    let segment = (TREE_R_ARITY as u64)
        .checked_pow(rows as u32 + 1)
        .unwrap_or(leaves)
        .min(leaves);
    let mut starts: Vec<u64> = challenges
        .iter()
        .map(|&c| {
            ensure!(
                c < leaves * trees,
                "challenge {c} beyond the sector's {} leaves",
                leaves * trees
            );
            Ok(c / segment * segment)
        })
        .collect::<Result<_>>()?;
    starts.sort_unstable();
    starts.dedup();
    Ok(starts
        .into_iter()
        .map(|s| ByteRange::new(s * NODE_SIZE, segment * NODE_SIZE))
        .collect())
}

/// The challenged leaves of each sector in a WindowPoSt over `sectors` (the prover sorts
/// them by number, and so does this).
pub fn window_post_challenges(
    post_proof: api::RegisteredPoStProof,
    rand: &[u8; 32],
    miner: u64,
    sectors: &[u64],
) -> Result<BTreeMap<u64, Vec<u64>>> {
    let mut ids: Vec<api::SectorId> = sectors.iter().map(|&n| api::SectorId::from(n)).collect();
    ids.sort();
    let out = super::proofs::guard("generate_fallback_sector_challenges", || {
        api::post::generate_fallback_sector_challenges(post_proof, rand, &ids, to_prover_id(miner))
    })?;
    Ok(out.into_iter().map(|(k, v)| (u64::from(k), v)).collect())
}

/// A failed fetch: the sector's objects (the sector cannot be proven), or this machine (the
/// scratch directory: nothing can be proven here until it is fixed).
#[derive(Debug)]
pub enum FetchError {
    /// An object is missing, of the wrong size, or cannot be read.
    Store(anyhow::Error),
    /// Writing the scratch copy failed.
    Local(anyhow::Error),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Store(e) | FetchError::Local(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for FetchError {}

fn store_err(e: anyhow::Error) -> FetchError {
    FetchError::Store(e)
}

fn local_err(e: anyhow::Error) -> FetchError {
    FetchError::Local(e)
}

/// Writes into `dir` what proving `challenges` of `remote` reads, and answers the replica
/// as a prover sees it. Objects missing or of the wrong size fail with the object named.
pub fn fetch_for_challenges(
    remote: &RemoteReplica,
    challenges: &[u64],
    dir: &Path,
) -> Result<(PoStReplicaInfo, FetchStats), FetchError> {
    let sector_size = u64::from(remote.seal_proof.sector_size());
    let mut stats = FetchStats::default();
    let (sealed_store, sealed_path) = &remote.sealed;
    let sealed_name = sealed_store.full_path(sealed_path);
    let size = sealed_store
        .stat(sealed_path)
        .with_context(|| format!("sealed file {sealed_name}"))
        .map_err(store_err)?
        .size;
    if size != sector_size {
        return Err(store_err(anyhow!(
            "sealed file {sealed_name} has {size} bytes, not the sector size {sector_size}"
        )));
    }
    let ranges = challenged_ranges(sector_size, challenges).map_err(local_err)?;
    let buffers = sealed_store
        .get_ranges(sealed_path, &ranges)
        .with_context(|| {
            format!(
                "reading {} challenged ranges of {sealed_name}",
                ranges.len()
            )
        })
        .map_err(store_err)?;
    if buffers.len() != ranges.len() {
        return Err(store_err(anyhow!(
            "{sealed_name}: {} ranges asked, {} answered",
            ranges.len(),
            buffers.len()
        )));
    }
    for (r, buf) in ranges.iter().zip(&buffers) {
        if buf.len() as u64 != r.len {
            return Err(store_err(anyhow!(
                "{sealed_name}: range at {} gave {} bytes, not {}",
                r.offset,
                buf.len(),
                r.len
            )));
        }
    }
    let sealed_file = dir.join("sealed");
    (|| -> Result<()> {
        let mut f = std::fs::File::create(&sealed_file)
            .with_context(|| format!("creating {}", sealed_file.display()))?;
        f.set_len(sector_size)
            .with_context(|| format!("sizing {}", sealed_file.display()))?;
        for (r, buf) in ranges.iter().zip(&buffers) {
            f.seek(SeekFrom::Start(r.offset))
                .and_then(|_| f.write_all(buf))
                .with_context(|| format!("writing {}", sealed_file.display()))?;
        }
        f.sync_all()
            .with_context(|| format!("writing {}", sealed_file.display()))
    })()
    .map_err(local_err)?;
    stats.replica_bytes = ranges.iter().map(|r| r.len).sum();
    stats.ranges = ranges.len();

    let (cache_store, cache_dir) = &remote.cache;
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache)
        .with_context(|| format!("creating {}", cache.display()))
        .map_err(local_err)?;
    for name in cached_filenames_for_sector(remote.seal_proof) {
        let object = format!("{cache_dir}/{name}");
        let full = cache_store.full_path(&object);
        let size = cache_store
            .stat(&object)
            .with_context(|| format!("cache file {full}"))
            .map_err(store_err)?
            .size;
        let bytes = if size == 0 {
            Vec::new()
        } else {
            cache_store
                .get_range(&object, ByteRange::new(0, size))
                .with_context(|| format!("reading {full}"))
                .map_err(store_err)?
        };
        if bytes.len() as u64 != size {
            return Err(store_err(anyhow!(
                "{full}: {} bytes read of {size}",
                bytes.len()
            )));
        }
        let target = cache.join(&name);
        std::fs::write(&target, &bytes)
            .with_context(|| format!("writing {}", target.display()))
            .map_err(local_err)?;
        stats.cache_bytes += size;
    }
    Ok((
        PoStReplicaInfo {
            sector_id: remote.sector_id,
            comm_r: remote.comm_r,
            cache_dir: cache,
            sealed_file: sealed_file.clone(),
        },
        stats,
    ))
}

/// Fetches every sector of `remotes` for a PoSt with `rand` over `all_sectors`, each into its
/// own directory of `scratch`; answers the replicas and stats of those fetched and the reason
/// of those whose objects failed. A failure of the scratch directory fails the whole call.
#[allow(clippy::type_complexity)]
pub fn fetch_all(
    remotes: &[RemoteReplica],
    all_sectors: &[u64],
    post_proof: api::RegisteredPoStProof,
    rand: &[u8; 32],
    miner: u64,
    scratch: &Scratch,
) -> Result<(Vec<(PoStReplicaInfo, FetchStats)>, BTreeMap<u64, String>)> {
    let challenges = window_post_challenges(post_proof, rand, miner, all_sectors)?;
    let mut fetched = Vec::new();
    let mut failed = BTreeMap::new();
    for remote in remotes {
        let dir = scratch.path().join(remote.sector_id.to_string());
        let c = challenges
            .get(&remote.sector_id)
            .ok_or_else(|| anyhow!("sector {}: no challenges drawn", remote.sector_id))?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        match fetch_for_challenges(remote, c, &dir) {
            Ok(r) => fetched.push(r),
            Err(FetchError::Store(e)) => {
                failed.insert(remote.sector_id, format!("{e:#}"));
            }
            Err(FetchError::Local(e)) => {
                return Err(e.context(format!("fetching sector {}", remote.sector_id)))
            }
        }
    }
    Ok((fetched, failed))
}

/// Removes the scratch directories under `root` that no live owner holds locked (their
/// process was killed before it could clean up); answers how many.
pub fn remove_stale_scratch(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !name.starts_with("post-") || !is_dir {
            continue;
        }
        let unlocked = std::fs::File::open(entry.path()).is_ok_and(|d| d.try_lock().is_ok());
        if unlocked && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_aligned_segments_of_512_leaves_merged_and_sorted() {
        let size = 8 << 20;
        let r = challenged_ranges(size, &[1000, 5, 700, 100_000]).expect("ranges");
        assert_eq!(
            r,
            vec![
                ByteRange::new(0, 16384),
                ByteRange::new(512 * 32, 16384),
                ByteRange::new(99_840 * 32, 16384),
            ]
        );
        // 2 KiB: the whole replica is one segment.
        let r = challenged_ranges(2048, &[3, 60]).expect("ranges");
        assert_eq!(r, vec![ByteRange::new(0, 2048)]);
        let e = challenged_ranges(2048, &[64]).expect_err("beyond");
        assert!(e.to_string().contains("beyond"), "{e}");
    }

    #[test]
    fn scratch_directories_nobody_holds_are_removed_and_held_ones_kept() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().expect("tmp");
        let root = base.path().join("scratch");
        let mine = Scratch::new(&root).expect("scratch");
        let mode = std::fs::metadata(&root).expect("root").permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "a private root");
        // Left by a killed process: nobody holds it, whatever pid its name might suggest.
        let dead = root.join(format!("post-{}-abc", std::process::id()));
        std::fs::create_dir_all(dead.join("1/cache")).expect("dead dir");
        let other = root.join("unrelated");
        std::fs::create_dir_all(&other).expect("other dir");
        assert_eq!(remove_stale_scratch(&root), 1);
        assert!(!dead.exists() && mine.path().exists() && other.exists());
        let path = mine.path().to_path_buf();
        drop(mine);
        assert!(!path.exists());
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&root, &link).expect("link");
        let err = Scratch::new(&link).expect_err("a symlinked root");
        assert!(format!("{err:#}").contains("not a directory"), "{err:#}");
    }
}
