//! `util storage attach`: imports a directory that already holds sealed sectors (manager-spec
//! §5.3) into the sector index, so PoSt and the CLI find them, and prints the persist-store
//! block to add to the config.
//!
//! The manager does the scan (the directory is one of its stores) and writes the index through
//! its open database, so attaching works while the daemon runs.

use std::path::Path;

use anyhow::{bail, Context, Result};
use damocles_manager_api::types::{SectorAccessStores, SectorId, SectorIndexType};
use serde::{Deserialize, Serialize};

use vc_processors::layout;

use crate::config::PersistStoreConfig;
use crate::error::{ApiError, ApiResult};
use crate::stores::SectorIndex;

/// Options of an attach.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AttachOptions {
    /// Store name written into the index (default: the directory path).
    pub name: String,
    /// The store's `Strict` setting, for the printed config block.
    pub strict: bool,
    /// The store's `ReadOnly` setting, for the printed config block.
    pub read_only: bool,
    /// Sealed files and cache directories may be in different stores: each found half is
    /// indexed on its own, and a sealed file without its cache directory is not skipped.
    pub allow_splitted: bool,
    /// Glob over sector names under `sealed/` and `update/` (default `s-t0*`).
    pub pattern: String,
}

/// One sector found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttachedSector {
    /// The sector.
    #[serde(rename = "ID")]
    pub id: SectorId,
    /// Found under `update/` / `update-cache/` (the snap-upgraded replica).
    pub upgrade: bool,
    /// Its sealed (or update) file is in this store.
    pub sealed: bool,
    /// Its cache directory is in this store.
    pub cache: bool,
}

/// An entry that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SkippedEntry {
    /// Path relative to the store.
    pub path: String,
    /// What was wrong.
    pub reason: String,
}

/// What an attach found and indexed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttachReport {
    /// The store name used in the index.
    pub name: String,
    /// The directory.
    pub path: String,
    /// Sectors indexed.
    pub sectors: Vec<AttachedSector>,
    /// Entries left out.
    pub skipped: Vec<SkippedEntry>,
    /// The `[[Common.PersistStores]]` block for this directory.
    pub config: String,
}

/// Scans `dir` for sectors (nothing is written).
pub fn scan(dir: &Path, opts: &AttachOptions) -> Result<AttachReport> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    let path = dir.display().to_string();
    let name = if opts.name.is_empty() {
        path.clone()
    } else {
        opts.name.clone()
    };
    let pattern = if opts.pattern.is_empty() {
        layout::SECTOR_NAME_GLOB
    } else {
        opts.pattern.as_str()
    };
    let matcher = glob::Pattern::new(pattern)
        .with_context(|| format!("--pattern {pattern:?} is not a valid glob"))?;
    let mut sectors = Vec::new();
    let mut skipped = Vec::new();
    for upgrade in [false, true] {
        let (sealed_dir, cache_dir) = layout::replica_dirs(upgrade);
        let mut found = std::collections::BTreeMap::<SectorId, AttachedSector>::new();
        for (rel, entry_name, is_file) in list(&dir, sealed_dir, &matcher)? {
            let id = match entry_name.parse::<SectorId>() {
                Ok(id) => id,
                Err(e) => {
                    skipped.push(skip(&rel, &e.to_string()));
                    continue;
                }
            };
            if !is_file {
                skipped.push(skip(&rel, "not a regular file"));
                continue;
            }
            let size = std::fs::metadata(dir.join(&rel))
                .with_context(|| format!("reading {}", dir.join(&rel).display()))?
                .len();
            if layout::sector_size_index(size).is_none() {
                skipped.push(skip(&rel, &format!("{size} bytes is not a sector size")));
                continue;
            }
            let cache_rel = format!("{cache_dir}/{entry_name}");
            let missing = missing_cache_files(&dir.join(&cache_rel), Some(size));
            let cache = missing.is_empty();
            if !cache && !opts.allow_splitted {
                skipped.push(skip(
                    &rel,
                    &format!("{cache_rel} lacks {}", missing.join(", ")),
                ));
                continue;
            }
            found.insert(
                id,
                AttachedSector {
                    id,
                    upgrade,
                    sealed: true,
                    cache,
                },
            );
        }
        if opts.allow_splitted {
            // Cache directories whose sealed file is elsewhere.
            for (rel, entry_name, is_file) in list(&dir, cache_dir, &matcher)? {
                let id = match entry_name.parse::<SectorId>() {
                    Ok(id) => id,
                    Err(e) => {
                        skipped.push(skip(&rel, &e.to_string()));
                        continue;
                    }
                };
                if found.contains_key(&id) {
                    continue;
                }
                if is_file {
                    skipped.push(skip(&rel, "not a directory"));
                    continue;
                }
                let missing = missing_cache_files(&dir.join(&rel), None);
                if !missing.is_empty() {
                    skipped.push(skip(&rel, &format!("lacks {}", missing.join(", "))));
                    continue;
                }
                found.insert(
                    id,
                    AttachedSector {
                        id,
                        upgrade,
                        sealed: false,
                        cache: true,
                    },
                );
            }
        }
        sectors.extend(found.into_values());
    }
    let config = persist_store_block(&PersistStoreConfig {
        name: name.clone(),
        path: path.clone(),
        strict: opts.strict,
        read_only: opts.read_only,
        weight: 1,
        ..PersistStoreConfig::default()
    })?;
    Ok(AttachReport {
        name,
        path,
        sectors,
        skipped,
        config,
    })
}

/// `Damocles.StorageAttach`: scans `dir` and indexes what it found. A directory that cannot be
/// scanned is the request's fault; an index that cannot be written is the manager's.
pub fn attach(
    dir: &Path,
    opts: &AttachOptions,
    sector_index: &SectorIndex,
) -> ApiResult<AttachReport> {
    let report = scan(dir, opts).map_err(|e| ApiError::bad(format!("{e:#}")))?;
    index(&report, sector_index)?;
    tracing::info!(store = %report.name, sectors = report.sectors.len(), skipped = report.skipped.len(), "store attached");
    Ok(report)
}

/// Writes the index entries of a scan.
pub fn index(report: &AttachReport, sector_index: &SectorIndex) -> Result<()> {
    for s in &report.sectors {
        let kind = if s.upgrade {
            SectorIndexType::Upgrade
        } else {
            SectorIndexType::Normal
        };
        let pick = |yes: bool| {
            if yes {
                report.name.clone()
            } else {
                String::new()
            }
        };
        sector_index
            .update(
                kind,
                s.id,
                &SectorAccessStores {
                    sealed_file: pick(s.sealed),
                    cache_dir: pick(s.cache),
                },
            )
            .with_context(|| format!("indexing {}", s.id))?;
    }
    Ok(())
}

/// The TOML block that configures a persist store.
pub fn persist_store_block(store: &PersistStoreConfig) -> Result<String> {
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Common<'a> {
        persist_stores: [&'a PersistStoreConfig; 1],
    }
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Root<'a> {
        common: Common<'a>,
    }
    toml::to_string(&Root {
        common: Common {
            persist_stores: [store],
        },
    })
    .context("writing the store's config block")
}

fn skip(rel: &str, reason: &str) -> SkippedEntry {
    SkippedEntry {
        path: rel.to_string(),
        reason: reason.to_string(),
    }
}

/// The entries of `dir/sub` whose names match: (relative path, name, is a regular file).
/// A missing `sub` has no entries.
fn list(dir: &Path, sub: &str, matcher: &glob::Pattern) -> Result<Vec<(String, String, bool)>> {
    let base = dir.join(sub);
    let entries = match std::fs::read_dir(&base) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", base.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", base.display()))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !matcher.matches(&name) {
            continue;
        }
        // Symlinks are followed: stores are often assembled from links.
        let is_file = std::fs::metadata(entry.path())
            .with_context(|| format!("reading {}", entry.path().display()))?
            .is_file();
        out.push((format!("{sub}/{name}"), name, is_file));
    }
    out.sort();
    Ok(out)
}

/// The PoSt cache files missing from a cache directory. Without a known sector size, any one
/// of the tree-r-last layouts will do.
fn missing_cache_files(cache: &Path, sector_size: Option<u64>) -> Vec<String> {
    let present = |n: &str| cache.join(n).is_file();
    match sector_size {
        Some(size) => layout::post_cache_files(size)
            .into_iter()
            .filter(|n| !present(n))
            .collect(),
        None => {
            let mut missing: Vec<String> = [layout::P_AUX_FILE, layout::T_AUX_FILE]
                .into_iter()
                .filter(|n| !present(n))
                .map(str::to_string)
                .collect();
            let any_tree = layout::SECTOR_SIZES
                .iter()
                .any(|&s| layout::tree_r_last_files(s).iter().all(|n| present(n)));
            if !any_tree {
                missing.push(layout::TREE_R_LAST_PATTERN.into());
            }
            missing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::Kv;

    fn sector(dir: &Path, name: &str, sealed_size: Option<u64>, cache: &[&str]) {
        if let Some(size) = sealed_size {
            std::fs::create_dir_all(dir.join("sealed")).expect("mkdir");
            let f = std::fs::File::create(dir.join("sealed").join(name)).expect("create");
            f.set_len(size).expect("size");
        }
        if !cache.is_empty() {
            let c = dir.join("cache").join(name);
            std::fs::create_dir_all(&c).expect("mkdir");
            for n in cache {
                std::fs::write(c.join(n), b"x").expect("write");
            }
        }
    }

    const FULL: [&str; 3] = ["sc-02-data-tree-r-last.dat", "p_aux", "t_aux"];

    #[test]
    fn complete_sectors_are_indexed_and_broken_ones_reported() {
        let store = tempfile::tempdir().expect("tempdir");
        let d = store.path();
        sector(d, "s-t01000-1", Some(2048), &FULL);
        sector(d, "s-t01000-2", Some(2048), &["p_aux"]);
        sector(d, "s-t01000-3", Some(1000), &FULL);
        sector(d, "s-t01001-4", None, &FULL);
        std::fs::write(d.join("sealed").join("notes.txt"), b"x").expect("write");
        std::fs::create_dir_all(d.join("update")).expect("mkdir");
        std::fs::File::create(d.join("update").join("s-t01000-1"))
            .expect("create")
            .set_len(2048)
            .expect("size");
        let uc = d.join("update-cache").join("s-t01000-1");
        std::fs::create_dir_all(&uc).expect("mkdir");
        for n in FULL {
            std::fs::write(uc.join(n), b"x").expect("write");
        }

        let opts = AttachOptions {
            name: "old-store".into(),
            read_only: true,
            ..AttachOptions::default()
        };
        let report = scan(d, &opts).expect("scan");
        let ids: Vec<(u64, bool)> = report
            .sectors
            .iter()
            .map(|s| (s.id.number, s.upgrade))
            .collect();
        assert_eq!(ids, vec![(1, false), (1, true)]);
        let reasons: Vec<&str> = report.skipped.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(reasons, vec!["sealed/s-t01000-2", "sealed/s-t01000-3"]);
        assert!(
            report.skipped[0].reason.contains("t_aux")
                && report.skipped[0].reason.contains("tree-r-last"),
            "{:?}",
            report.skipped[0]
        );
        assert!(report.skipped[1].reason.contains("1000 bytes"));
        assert!(report.config.contains("[[Common.PersistStores]]"));
        assert!(report.config.contains("Name = \"old-store\""));
        assert!(report.config.contains("ReadOnly = true"));
        let parsed: toml::Value = toml::from_str(&report.config).expect("valid TOML");
        assert!(parsed["Common"]["PersistStores"][0]["Path"].is_str());

        let kvdir = tempfile::tempdir().expect("tempdir");
        let idx = SectorIndex::new(Kv::open(kvdir.path()).expect("kv"));
        index(&report, &idx).expect("index");
        let sid = SectorId {
            miner: 1000,
            number: 1,
        };
        for kind in [SectorIndexType::Normal, SectorIndexType::Upgrade] {
            let found = idx.find(kind, sid).expect("find").expect("indexed");
            assert_eq!(found.sealed_file, "old-store");
            assert_eq!(found.cache_dir, "old-store");
        }
        let two = SectorId {
            miner: 1000,
            number: 2,
        };
        assert_eq!(idx.find(SectorIndexType::Normal, two).expect("find"), None);
    }

    #[test]
    fn splitted_stores_index_each_half_where_it_is() {
        let sealed_store = tempfile::tempdir().expect("tempdir");
        let cache_store = tempfile::tempdir().expect("tempdir");
        sector(sealed_store.path(), "s-t01000-5", Some(2048), &[]);
        sector(cache_store.path(), "s-t01000-5", None, &FULL);
        sector(cache_store.path(), "s-t01000-6", None, &["p_aux"]);

        let strict = scan(sealed_store.path(), &AttachOptions::default()).expect("scan");
        assert!(strict.sectors.is_empty(), "no cache: skipped");
        assert_eq!(strict.skipped.len(), 1);

        let split = AttachOptions {
            allow_splitted: true,
            ..AttachOptions::default()
        };
        let a = scan(
            sealed_store.path(),
            &AttachOptions {
                name: "sealed-store".into(),
                ..split.clone()
            },
        )
        .expect("scan sealed");
        let b = scan(
            cache_store.path(),
            &AttachOptions {
                name: "cache-store".into(),
                ..split
            },
        )
        .expect("scan cache");
        assert_eq!(a.sectors.len(), 1);
        assert!(a.sectors[0].sealed && !a.sectors[0].cache);
        assert_eq!(b.sectors.len(), 1, "{:?}", b.skipped);
        assert!(!b.sectors[0].sealed && b.sectors[0].cache);
        assert_eq!(b.skipped.len(), 1, "sector 6 lacks files");

        let kvdir = tempfile::tempdir().expect("tempdir");
        let idx = SectorIndex::new(Kv::open(kvdir.path()).expect("kv"));
        index(&a, &idx).expect("index a");
        index(&b, &idx).expect("index b");
        let found = idx
            .find(
                SectorIndexType::Normal,
                SectorId {
                    miner: 1000,
                    number: 5,
                },
            )
            .expect("find")
            .expect("indexed");
        assert_eq!(found.sealed_file, "sealed-store");
        assert_eq!(found.cache_dir, "cache-store");
    }

    #[test]
    fn a_bad_pattern_or_path_is_a_clear_error() {
        let d = tempfile::tempdir().expect("tempdir");
        let e = scan(
            d.path(),
            &AttachOptions {
                pattern: "[".into(),
                ..AttachOptions::default()
            },
        )
        .expect_err("bad glob");
        assert!(format!("{e:#}").contains("--pattern"), "{e:#}");
        let e = scan(&d.path().join("nope"), &AttachOptions::default()).expect_err("missing");
        assert!(format!("{e:#}").contains("not a directory"), "{e:#}");
    }
}
