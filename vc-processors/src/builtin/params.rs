//! Groth16 parameters for test sector sizes: generate what is missing, check what is there.
//!
//! The proving API never generates parameters; it looks them up in the parameter cache
//! (`FIL_PROOFS_PARAMETER_CACHE`, default `/var/tmp/filecoin-proof-parameters`) under
//! `v28-<circuit>-<hash>.{params,vk,meta}`. For the small sizes (2 KiB, 8 MiB, 512 MiB) this
//! module builds them from the blank circuit of each compound proof with fresh randomness, the
//! way the proof library's own tooling does. Such parameters are random: proofs made with them
//! verify only against the same cache (never mix them with published files).
//!
//! Generation is:
//! - idempotent: a kind whose three files exist is left alone;
//! - safe across processes: each kind is generated under an exclusive lock on
//!   `<cache>/v28-<id>.lock`, and whoever waited finds the files present;
//! - crash-safe: every file is written to a temporary name, fsynced and renamed into place,
//!   so a killed run never leaves a truncated `.params` that the proof library would trip on;
//! - reported: [`Progress`] events tell when each kind starts, is still running (every
//!   `heartbeat`), and ends.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::fsutil::write_atomic;
use super::proofs::{seal_proof_for_size, window_post_proof_for_size, winning_post_proof_for_size};
use anyhow::{bail, Context, Result};
use bellperson::groth16;
use blstrs::Bls12;
use filecoin_proofs::parameters::{
    public_params, window_post_public_params, winning_post_public_params,
};
use filecoin_proofs::{with_shape, DefaultPieceHasher, MerkleTreeTrait};
use fs2::FileExt;
use rand::rngs::OsRng;
use storage_proofs_core::compound_proof::CompoundProof;
use storage_proofs_core::parameter_cache::{
    parameter_cache_dir, parameter_cache_metadata_path, parameter_cache_params_path,
    parameter_cache_verifying_key_path, CacheableParameters, VERSION,
};
use storage_proofs_porep::stacked::{StackedCircuit, StackedCompound, StackedDrg};
use storage_proofs_post::fallback::{FallbackPoSt, FallbackPoStCircuit, FallbackPoStCompound};
use storage_proofs_update::circuit::EmptySectorUpdateCircuit;
use storage_proofs_update::compound::EmptySectorUpdateCompound;
use storage_proofs_update::constants::TreeRHasher;
use storage_proofs_update::EmptySectorUpdate;

/// Sector sizes whose parameters can be generated here in reasonable time and memory.
pub const GENERATABLE_SECTOR_SIZES: [u64; 3] = [2 << 10, 8 << 20, 512 << 20];

/// A circuit that needs Groth16 parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ParamKind {
    /// Proof of replication (C2, `verify_seal`).
    PoRep,
    /// WindowPoSt.
    WindowPoSt,
    /// WinningPoSt.
    WinningPoSt,
    /// SnapDeals sector update.
    SnapDeals,
}

impl ParamKind {
    /// All kinds, cheapest first.
    pub const ALL: [ParamKind; 4] = [
        ParamKind::WindowPoSt,
        ParamKind::WinningPoSt,
        ParamKind::SnapDeals,
        ParamKind::PoRep,
    ];

    /// Name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamKind::PoRep => "porep",
            ParamKind::WindowPoSt => "window-post",
            ParamKind::WinningPoSt => "winning-post",
            ParamKind::SnapDeals => "snap-deals",
        }
    }
}

impl fmt::Display for ParamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for ParamKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ParamKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown parameter kind {s:?}; expected one of porep, window-post, winning-post, snap-deals"
                )
            })
    }
}

/// The cache entry of one circuit: its identifier and files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamEntry {
    /// Circuit kind.
    pub kind: ParamKind,
    /// Sector size in bytes.
    pub sector_size: u64,
    /// `<circuit prefix>-<hash>`, as the proof library names it.
    pub id: String,
    /// The `.params` file.
    pub params: PathBuf,
    /// The `.vk` file.
    pub vk: PathBuf,
    /// The `.meta` file.
    pub meta: PathBuf,
}

impl ParamEntry {
    /// The lock file serialising generation of this entry across processes.
    pub fn lock_path(&self) -> PathBuf {
        parameter_cache_dir().join(format!("v{VERSION}-{}.lock", self.id))
    }

    /// What is on disk for this entry.
    pub fn status(&self) -> ParamStatus {
        let params_bytes = fs::metadata(&self.params)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        let vk_valid = File::open(&self.vk)
            .ok()
            .and_then(|f| groth16::VerifyingKey::<Bls12>::read(std::io::BufReader::new(f)).ok())
            .is_some();
        let meta_present = fs::metadata(&self.meta)
            .map(|m| m.is_file() && m.len() > 0)
            .unwrap_or(false);
        ParamStatus {
            entry: self.clone(),
            params_bytes,
            vk_valid,
            meta_present,
        }
    }

    /// Whether everything the proof library needs is there (the same test as `check`).
    pub fn is_present(&self) -> bool {
        self.status().is_complete()
    }
}

/// What [`check`] found for one kind.
#[derive(Debug, Clone)]
pub struct ParamStatus {
    /// The entry.
    pub entry: ParamEntry,
    /// Size of `.params`, if the file exists.
    pub params_bytes: Option<u64>,
    /// Whether `.vk` is present and reads as a verifying key.
    pub vk_valid: bool,
    /// Whether `.meta` is present.
    pub meta_present: bool,
}

impl ParamStatus {
    /// Everything the proof library needs is there.
    pub fn is_complete(&self) -> bool {
        self.params_bytes.is_some_and(|n| n > 0) && self.vk_valid && self.meta_present
    }

    /// The files that are missing or unusable, e.g. `[".params (empty)", ".vk"]`.
    pub fn problems(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        match self.params_bytes {
            None => out.push(".params"),
            Some(0) => out.push(".params (empty)"),
            Some(_) => {}
        }
        if !self.vk_valid {
            out.push(".vk");
        }
        if !self.meta_present {
            out.push(".meta");
        }
        out
    }
}

/// Computes the entry of a PoRep circuit and, with `build`, generates and writes its files.
fn porep<Tree: 'static + MerkleTreeTrait>(sector_size: u64, build: bool) -> Result<ParamEntry> {
    let config = seal_proof_for_size(sector_size)?.as_v1_config();
    let pp = public_params::<Tree>(&config)?;
    type Compound<Tree> = StackedCompound<Tree, DefaultPieceHasher>;
    type Circuit<Tree> = StackedCircuit<Tree, DefaultPieceHasher>;
    let id = <Compound<Tree> as CacheableParameters<Circuit<Tree>, _>>::cache_identifier(&pp);
    let entry = entry(ParamKind::PoRep, sector_size, id);
    if build {
        let circuit = <Compound<Tree> as CompoundProof<
            StackedDrg<'_, Tree, DefaultPieceHasher>,
            Circuit<Tree>,
        >>::blank_circuit(&pp);
        let meta = <Compound<Tree> as CacheableParameters<Circuit<Tree>, _>>::cache_meta(&pp);
        setup_and_write(&entry, circuit, meta.sector_size)?;
    }
    Ok(entry)
}

/// Computes the entry of a WindowPoSt or WinningPoSt circuit and, with `build`, generates it.
fn post<Tree: 'static + MerkleTreeTrait>(
    kind: ParamKind,
    sector_size: u64,
    build: bool,
) -> Result<ParamEntry> {
    let pp = if kind == ParamKind::WindowPoSt {
        window_post_public_params::<Tree>(&window_post_proof_for_size(sector_size)?.as_v1_config())?
    } else {
        winning_post_public_params::<Tree>(
            &winning_post_proof_for_size(sector_size)?.as_v1_config(),
        )?
    };
    type Compound<Tree> = FallbackPoStCompound<Tree>;
    let id =
        <Compound<Tree> as CacheableParameters<FallbackPoStCircuit<Tree>, _>>::cache_identifier(
            &pp,
        );
    let entry = entry(kind, sector_size, id);
    if build {
        let circuit = <Compound<Tree> as CompoundProof<
            FallbackPoSt<'_, Tree>,
            FallbackPoStCircuit<Tree>,
        >>::blank_circuit(&pp);
        let meta =
            <Compound<Tree> as CacheableParameters<FallbackPoStCircuit<Tree>, _>>::cache_meta(&pp);
        setup_and_write(&entry, circuit, meta.sector_size)?;
    }
    Ok(entry)
}

/// Computes the entry of the SnapDeals circuit and, with `build`, generates it.
fn snap<Tree: 'static + MerkleTreeTrait<Hasher = TreeRHasher>>(
    sector_size: u64,
    build: bool,
) -> Result<ParamEntry> {
    let pp = storage_proofs_update::PublicParams::from_sector_size(sector_size);
    type Compound<Tree> = EmptySectorUpdateCompound<Tree>;
    type Circuit<Tree> = EmptySectorUpdateCircuit<Tree>;
    let id = <Compound<Tree> as CacheableParameters<Circuit<Tree>, _>>::cache_identifier(&pp);
    let entry = entry(ParamKind::SnapDeals, sector_size, id);
    if build {
        let circuit = <Compound<Tree> as CompoundProof<EmptySectorUpdate<Tree>, Circuit<Tree>>>::blank_circuit(&pp);
        let meta = <Compound<Tree> as CacheableParameters<Circuit<Tree>, _>>::cache_meta(&pp);
        setup_and_write(&entry, circuit, meta.sector_size)?;
    }
    Ok(entry)
}

fn entry(kind: ParamKind, sector_size: u64, id: String) -> ParamEntry {
    ParamEntry {
        kind,
        sector_size,
        params: parameter_cache_params_path(&id),
        vk: parameter_cache_verifying_key_path(&id),
        meta: parameter_cache_metadata_path(&id),
        id,
    }
}

fn entry_or_build(kind: ParamKind, sector_size: u64, build: bool) -> Result<ParamEntry> {
    match kind {
        ParamKind::PoRep => with_shape!(sector_size, porep, sector_size, build),
        ParamKind::WindowPoSt | ParamKind::WinningPoSt => {
            with_shape!(sector_size, post, kind, sector_size, build)
        }
        ParamKind::SnapDeals => with_shape!(sector_size, snap, sector_size, build),
    }
}

/// The cache entry of `kind` for `sector_size`.
pub fn param_entry(kind: ParamKind, sector_size: u64) -> Result<ParamEntry> {
    entry_or_build(kind, sector_size, false)
}

/// Reports what is present for each kind.
pub fn check(sector_size: u64, kinds: &[ParamKind]) -> Result<Vec<ParamStatus>> {
    kinds
        .iter()
        .map(|&kind| Ok(param_entry(kind, sector_size)?.status()))
        .collect()
}

/// A progress report from [`generate`].
#[derive(Debug, Clone)]
pub enum Progress {
    /// The files were already there.
    Present {
        /// The entry.
        entry: ParamEntry,
    },
    /// Another process holds the lock (it is generating); waiting for it.
    WaitingForLock {
        /// The entry.
        entry: ParamEntry,
    },
    /// Generation started.
    Started {
        /// The entry.
        entry: ParamEntry,
    },
    /// Still generating.
    Running {
        /// The entry.
        entry: ParamEntry,
        /// Time since start.
        elapsed: Duration,
    },
    /// Generation finished and the files are in place.
    Generated {
        /// The entry.
        entry: ParamEntry,
        /// How long it took.
        took: Duration,
    },
}

/// What [`generate`] did for one kind.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The entry.
    pub entry: ParamEntry,
    /// `Some(time)` if this call generated it, `None` if it was already there (or another
    /// process made it while we waited).
    pub generated_in: Option<Duration>,
}

/// Generates the missing parameters of `kinds` for `sector_size`, one kind after the other,
/// cheapest first (the Groth16 setup already uses every core, so running kinds side by side
/// only delays the small ones). `progress` receives the events; `heartbeat` is the interval of
/// [`Progress::Running`] events.
pub fn generate(
    sector_size: u64,
    kinds: &[ParamKind],
    heartbeat: Duration,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Vec<Outcome>> {
    if !GENERATABLE_SECTOR_SIZES.contains(&sector_size) {
        bail!(
            "parameters for {} sectors are too large to generate here; only 2KiB, 8MiB and 512MiB are supported",
            crate::layout::sector_size_name(sector_size)
        );
    }
    let mut kinds = kinds.to_vec();
    kinds.sort_by_key(|k| ParamKind::ALL.iter().position(|a| a == k));
    kinds.dedup();
    kinds
        .into_iter()
        .map(|kind| generate_one(kind, sector_size, heartbeat, progress))
        .collect()
}

fn generate_one(
    kind: ParamKind,
    sector_size: u64,
    heartbeat: Duration,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Outcome> {
    let entry = param_entry(kind, sector_size)?;
    if entry.is_present() {
        progress(Progress::Present {
            entry: entry.clone(),
        });
        return Ok(Outcome {
            entry,
            generated_in: None,
        });
    }
    let dir = parameter_cache_dir();
    fs::create_dir_all(&dir)
        .with_context(|| format!("create parameter cache {}", dir.display()))?;
    let lock_path = entry.lock_path();
    let lock = OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(&lock_path)
        .with_context(|| format!("open lock file {}", lock_path.display()))?;
    if lock.try_lock_exclusive().is_err() {
        progress(Progress::WaitingForLock {
            entry: entry.clone(),
        });
        lock.lock_exclusive()
            .with_context(|| format!("lock {}", lock_path.display()))?;
    }
    // Whoever held the lock may have made them.
    if entry.is_present() {
        progress(Progress::Present {
            entry: entry.clone(),
        });
        return Ok(Outcome {
            entry,
            generated_in: None,
        });
    }

    progress(Progress::Started {
        entry: entry.clone(),
    });
    let start = Instant::now();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let generated = std::thread::scope(|scope| {
        let ticker_entry = entry.clone();
        scope.spawn(move || loop {
            match done_rx.recv_timeout(heartbeat) {
                Err(mpsc::RecvTimeoutError::Timeout) => progress(Progress::Running {
                    entry: ticker_entry.clone(),
                    elapsed: start.elapsed(),
                }),
                _ => return,
            }
        });
        let res = entry_or_build(kind, sector_size, true).map(|_| ());
        let _ = done_tx.send(());
        res
    });
    generated.with_context(|| {
        format!(
            "generate {} parameters for {}",
            kind,
            crate::layout::sector_size_name(sector_size)
        )
    })?;
    let took = start.elapsed();
    progress(Progress::Generated {
        entry: entry.clone(),
        took,
    });
    // The lock is released when `lock` is dropped.
    drop(lock);
    Ok(Outcome {
        entry,
        generated_in: Some(took),
    })
}

/// Runs the Groth16 setup of `circuit` and writes the entry's files: `.params`, `.vk`, and
/// `.meta` last, each atomically, so an entry looks present only once it is complete.
fn setup_and_write<C: bellperson::Circuit<blstrs::Scalar>>(
    entry: &ParamEntry,
    circuit: C,
    sector_size: u64,
) -> Result<()> {
    let params = groth16::generate_random_parameters::<Bls12, _, _>(circuit, &mut OsRng)
        .context("Groth16 setup")?;
    write_atomic(&entry.params, |w| params.write(w).map_err(Into::into))?;
    write_atomic(&entry.vk, |w| params.vk.write(w).map_err(Into::into))?;
    let meta = serde_json::json!({ "sector_size": sector_size });
    write_atomic(&entry.meta, |w| {
        serde_json::to_writer(w, &meta).map_err(Into::into)
    })
}

/// Prints progress events to stderr, one line each.
pub fn print_progress(event: Progress) {
    let label = |e: &ParamEntry| {
        format!(
            "{} {}",
            crate::layout::sector_size_name(e.sector_size),
            e.kind
        )
    };
    let line = match &event {
        Progress::Present { entry } => format!("params: {} present ({})", label(entry), entry.id),
        Progress::WaitingForLock { entry } => format!(
            "params: {} is being generated by another process; waiting for it",
            label(entry)
        ),
        Progress::Started { entry } => format!(
            "params: generating {}{} …",
            label(entry),
            match entry.kind {
                ParamKind::PoRep if entry.sector_size == 2048 =>
                    " (about 15–20 minutes on 2 cores)",
                ParamKind::WinningPoSt if entry.sector_size == 2048 => " (about a minute)",
                _ => "",
            }
        ),
        Progress::Running { entry, elapsed } => format!(
            "params: still generating {} ({} elapsed)",
            label(entry),
            humantime::format_duration(Duration::from_secs(elapsed.as_secs()))
        ),
        Progress::Generated { entry, took } => format!(
            "params: generated {} in {} -> {}",
            label(entry),
            humantime::format_duration(Duration::from_secs(took.as_secs())),
            entry.params.display()
        ),
    };
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// The one helper tests use to get parameters: generates whatever of `kinds` is missing for
/// 2 KiB sectors (printing progress to stderr) and returns once all are present.
pub fn ensure_test_params(kinds: &[ParamKind]) -> Result<()> {
    generate(2048, kinds, Duration::from_secs(60), &print_progress)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_print() {
        for k in ParamKind::ALL {
            assert_eq!(k.as_str().parse::<ParamKind>(), Ok(k));
        }
        assert!("pc2".parse::<ParamKind>().is_err());
    }

    #[test]
    fn entries_have_the_library_names() {
        let e = param_entry(ParamKind::PoRep, 2048).expect("entry");
        let name = e
            .params
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with("v28-stacked-proof-of-replication-"),
            "{name}"
        );
        assert!(name.ends_with(".params"));
        let w = param_entry(ParamKind::WindowPoSt, 2048).expect("entry");
        let n = param_entry(ParamKind::WinningPoSt, 2048).expect("entry");
        assert!(w.id.starts_with("proof-of-spacetime-fallback-"));
        assert_ne!(w.id, n.id, "window and winning circuits differ");
        let s = param_entry(ParamKind::SnapDeals, 2048).expect("entry");
        assert!(s.id.starts_with("empty-sector-update"), "{}", s.id);
    }

    #[test]
    fn synthetic_porep_shares_the_interactive_circuit() {
        use filecoin_proofs::SectorShape2KiB;
        use filecoin_proofs_api::RegisteredSealProof;
        let synthetic = RegisteredSealProof::StackedDrg2KiBV1_1_Feat_SyntheticPoRep
            .as_v1_config()
            .get_cache_identifier::<SectorShape2KiB>()
            .expect("id");
        assert_eq!(
            synthetic,
            param_entry(ParamKind::PoRep, 2048).expect("entry").id
        );
    }

    #[test]
    fn large_sizes_are_refused() {
        let e = generate(
            32 << 30,
            &[ParamKind::WindowPoSt],
            Duration::from_secs(1),
            &|_| {},
        )
        .expect_err("too big");
        assert!(e.to_string().contains("32GiB"), "{e}");
    }
}
