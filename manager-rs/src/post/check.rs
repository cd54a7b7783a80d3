//! Which sectors of a partition can be proven (manager-spec §3.4).
//!
//! A sector is provable when its sealed file and the cache files a PoSt reads are present
//! and, with `StrictCheck`, when a vanilla proof of one of its real challenges (for a fixed
//! check seed) can be made from them, which reads the challenged replica nodes and the
//! Merkle tree. Each check is bounded by `SingleCheckTimeout`, a whole call by
//! `PartitionCheckTimeout`, and at most `ParallelCheckLimit` sectors are checked at once. A
//! sector whose check times out counts as bad.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use tokio::sync::Semaphore;
use vc_processors::builtin::proofs::{api, cached_filenames_for_sector, to_prover_id};
use vc_processors::builtin::tasks::PoStReplicaInfo;

/// Limits of the checks (`[Common.Proving]`).
#[derive(Debug, Clone)]
pub struct CheckLimits {
    /// Sectors checked at once (0: unlimited).
    pub parallel: usize,
    /// Bound on one sector.
    pub single_timeout: Duration,
    /// Bound on the whole call.
    pub total_timeout: Duration,
}

/// One sector to check.
#[derive(Debug, Clone)]
pub struct CheckItem {
    /// Its replica, as the prover will read it.
    pub replica: PoStReplicaInfo,
    /// The stores of its files, for provers that read them elsewhere.
    pub accesses: damocles_manager_api::types::PoStSectorAccesses,
    /// Its seal proof.
    pub seal_proof: api::RegisteredSealProof,
    /// Its PoSt proof.
    pub post_proof: api::RegisteredPoStProof,
    /// Set when its files are objects of a store without local paths: `replica` then has no
    /// paths until the challenged ranges are fetched, and the fetch is its check.
    pub remote: Option<super::remote::RemoteReplica>,
}

/// The sectors that failed, with the reason.
pub type BadSectors = BTreeMap<u64, String>;

/// Checks every item; answers the bad ones. `strict` adds the vanilla proof.
pub async fn check_sectors(
    miner: u64,
    items: Vec<CheckItem>,
    strict: bool,
    limits: &CheckLimits,
) -> BadSectors {
    let items = items
        .into_iter()
        .map(|i| WithNumber(i.replica.sector_id, i))
        .collect();
    run_checks(miner, items, limits, move |item| {
        check_one(miner, item, strict)
    })
    .await
}

/// Something to check, with the number of its sector.
struct WithNumber<T>(u64, T);

/// Of the sectors a prover reported faulty, those the manager proves itself: a vanilla proof
/// of every challenge `seed` draws for them, made from `items` (replicas with local paths,
/// fetched ones included). A prover's faults are skipped only when this finds none, so a
/// worker cannot have healthy sectors left out of a WindowPoSt by claiming they are faulty.
pub async fn refuted_faults(
    miner: u64,
    post_proof: api::RegisteredPoStProof,
    replicas: Vec<PoStReplicaInfo>,
    seed: [u8; 32],
    limits: &CheckLimits,
) -> Vec<u64> {
    let numbers: Vec<u64> = replicas.iter().map(|r| r.sector_id).collect();
    let replicas = replicas
        .into_iter()
        .map(|r| WithNumber(r.sector_id, r))
        .collect();
    let failed = run_checks(miner, replicas, limits, move |replica| {
        vanilla_proof_of_challenges(miner, post_proof, replica, &seed, None)
    })
    .await;
    numbers
        .into_iter()
        .filter(|n| !failed.contains_key(n))
        .collect()
}

/// Runs `check` on every item in parallel within `limits`; answers the ones that failed.
async fn run_checks<T: Send + 'static>(
    miner: u64,
    items: Vec<WithNumber<T>>,
    limits: &CheckLimits,
    check: impl Fn(&T) -> Result<()> + Send + Sync + 'static,
) -> BadSectors {
    let check = Arc::new(check);
    let permits = Arc::new(Semaphore::new(if limits.parallel == 0 {
        Semaphore::MAX_PERMITS
    } else {
        limits.parallel.min(Semaphore::MAX_PERMITS)
    }));
    let mut tasks = tokio::task::JoinSet::new();
    let numbers: Vec<u64> = items.iter().map(|i| i.0).collect();
    for WithNumber(number, item) in items {
        let permits = permits.clone();
        let check = check.clone();
        let single = limits.single_timeout;
        tasks.spawn(async move {
            let Ok(permit) = permits.acquire_owned().await else {
                return (number, Err("the check was cancelled".to_string()));
            };
            // The permit lives as long as the check itself, even past its timeout, so a hung
            // disk cannot make more than the limit of checks pile up.
            let work = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                check(&item)
            });
            let res = match tokio::time::timeout(single, work).await {
                Err(_) => Err(format!("check timed out after {single:?}")),
                Ok(Err(e)) => Err(format!("check panicked: {e}")),
                Ok(Ok(Err(e))) => Err(format!("{e:#}")),
                Ok(Ok(Ok(()))) => Ok(()),
            };
            (number, res)
        });
    }
    let mut bad = BadSectors::new();
    let mut done = std::collections::BTreeSet::new();
    let collect = async {
        while let Some(joined) = tasks.join_next().await {
            if let Ok((n, res)) = joined {
                done.insert(n);
                if let Err(reason) = res {
                    bad.insert(n, reason);
                }
            }
        }
    };
    if tokio::time::timeout(limits.total_timeout, collect)
        .await
        .is_err()
    {
        tracing::warn!(miner, timeout = ?limits.total_timeout, "sector checks timed out");
    }
    for n in numbers {
        if !done.contains(&n) && !bad.contains_key(&n) {
            bad.insert(n, "not checked in time".into());
        }
    }
    bad
}

fn check_one(miner: u64, item: &CheckItem, strict: bool) -> Result<()> {
    let r = &item.replica;
    let sealed = std::fs::metadata(&r.sealed_file)
        .with_context(|| format!("sealed file {}", r.sealed_file.display()))?;
    let size = u64::from(item.seal_proof.sector_size());
    ensure!(
        sealed.len() == size,
        "sealed file {} has {} bytes, expected {size}",
        r.sealed_file.display(),
        sealed.len()
    );
    for name in cached_filenames_for_sector(item.seal_proof) {
        let p = r.cache_dir.join(&name);
        ensure!(p.is_file(), "cache file {} is missing", p.display());
    }
    if !strict {
        return Ok(());
    }
    vanilla_proof_of_challenges(miner, item.post_proof, r, &check_seed(r.sector_id), Some(1))
        .context("vanilla proof of one challenge")
}

/// Makes the vanilla proof of the first `limit` challenges (all when `None`) that `seed`
/// draws for the sector of `r`, reading its replica nodes and Merkle tree.
fn vanilla_proof_of_challenges(
    miner: u64,
    post_proof: api::RegisteredPoStProof,
    r: &PoStReplicaInfo,
    seed: &[u8; 32],
    limit: Option<usize>,
) -> Result<()> {
    let sector = api::SectorId::from(r.sector_id);
    let challenges = vc_processors::builtin::proofs::guard("check challenges", || {
        api::post::generate_fallback_sector_challenges(
            post_proof,
            seed,
            &[sector],
            to_prover_id(miner),
        )
    })?;
    let mut drawn = challenges.get(&sector).cloned().unwrap_or_default();
    if let Some(limit) = limit {
        drawn.truncate(limit);
    }
    ensure!(!drawn.is_empty(), "no challenge for sector {}", r.sector_id);
    let replica = api::PrivateReplicaInfo::new(
        post_proof,
        r.comm_r,
        r.cache_dir.clone(),
        r.sealed_file.clone(),
    );
    vc_processors::builtin::proofs::guard("vanilla proof", || {
        api::post::generate_single_vanilla_proof(post_proof, sector, &replica, &drawn)
    })?;
    Ok(())
}

/// A fixed seed per sector: checks read real challenge positions without chain randomness.
fn check_seed(sector: u64) -> [u8; 32] {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&sector.to_le_bytes());
    seed[8..16].copy_from_slice(b"dmcheck!");
    seed
}
