//! Persist and piece stores, space reservations and the sector index (manager-spec §1.7, §5).
//!
//! Every store is an objstore instance: the file-system backend unless `PluginName` names an
//! objstore plugin. Store names are the contract with the workers' `[[attached]]` names.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use damocles_manager_api::types::{
    ReservedItem, SealProofType, SectorAccessStores, SectorId, SectorIndexType, StoreBasicInfo,
    StoreDetailedInfo,
};
use objstore::{ObjectStore, PluginLibrary, StoreConfig};
use rand::Rng;
use serde::{Deserialize, Serialize};
use vc_processors::layout;

use crate::config::{PersistStoreConfig, PieceStoreConfig};
use crate::kv::{cf, Kv};

/// Opens objstore instances: the fs backend, or a plugin from `plugin_dir`.
#[derive(Debug, Clone)]
pub struct StoreOpener {
    plugin_dir: PathBuf,
    libraries: Arc<Mutex<BTreeMap<String, Arc<PluginLibrary>>>>,
}

impl StoreOpener {
    /// Plugins are looked up in `plugin_dir`.
    pub fn new(plugin_dir: PathBuf) -> Self {
        StoreOpener {
            plugin_dir,
            libraries: Arc::default(),
        }
    }

    /// The default plugin directory: `[Common.Plugins] Dir`, else the executable's directory.
    pub fn default_plugin_dir(configured: Option<&str>) -> PathBuf {
        match configured.filter(|d| !d.is_empty()) {
            Some(d) => PathBuf::from(d),
            None => std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .unwrap_or_else(|| PathBuf::from(".")),
        }
    }

    /// Opens one instance; returns it with its backend kind.
    pub fn open(&self, config: StoreConfig) -> Result<(Arc<dyn ObjectStore>, String)> {
        let instance = config.instance().to_string();
        match config.plugin_name.clone().filter(|p| !p.is_empty()) {
            None => {
                let store = objstore_fs::FsStore::open(config)
                    .with_context(|| format!("opening the file store {instance}"))?;
                Ok((Arc::new(store), "fs".to_string()))
            }
            Some(plugin) => {
                let lib = {
                    let mut libs = self.libraries.lock().unwrap_or_else(|p| p.into_inner());
                    match libs.get(&plugin) {
                        Some(l) => l.clone(),
                        None => {
                            let l = PluginLibrary::load_by_name(&self.plugin_dir, &plugin)
                                .with_context(|| {
                                    format!("store {instance}: loading objstore plugin {plugin:?}")
                                })?;
                            libs.insert(plugin.clone(), l.clone());
                            l
                        }
                    }
                };
                let store = lib.open(config).with_context(|| {
                    format!("store {instance}: opening it with plugin {plugin:?}")
                })?;
                Ok((Arc::new(store), format!("plugin-{plugin}")))
            }
        }
    }
}

/// One persist store.
#[derive(Clone)]
pub struct PersistStore {
    /// Its configuration (name resolved).
    pub config: PersistStoreConfig,
    /// The objstore instance.
    pub store: Arc<dyn ObjectStore>,
    /// Backend kind for display.
    pub kind: String,
}

impl std::fmt::Debug for PersistStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistStore")
            .field("name", &self.config.name)
            .field("kind", &self.kind)
            .finish()
    }
}

impl PersistStore {
    /// What `StoreBasicInfo` answers.
    pub fn basic_info(&self) -> StoreBasicInfo {
        StoreBasicInfo {
            name: self.config.name.clone(),
            path: self.config.path.clone(),
            strict: self.config.strict,
            read_only: self.config.read_only,
            weight: self.config.weight,
            meta: Some(self.config.meta.clone()),
        }
    }

    fn allows(&self, miner: u64) -> bool {
        if self.config.deny_miners.contains(&miner) {
            return false;
        }
        self.config.allow_miners.is_empty() || self.config.allow_miners.contains(&miner)
    }
}

/// The reservation summary blob (`common/objstore/StoreReserveSummary`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReserveSummary {
    stats: BTreeMap<String, ReserveStats>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReserveStats {
    reserved_size: u64,
    reserved: BTreeMap<String, ReservedItem>,
}

const RESERVE_KEY: &[u8] = b"objstore/StoreReserveSummary";

/// Why a persisted-files check failed.
#[derive(Debug, thiserror::Error)]
pub enum PersistCheckError {
    /// No such store.
    #[error("no persist store named {0:?}")]
    NoSuchStore(String),
    /// The store could not be read.
    #[error("checking {path} in store {instance}: {source}")]
    Io {
        /// Store.
        instance: String,
        /// Object.
        path: String,
        /// Cause.
        #[source]
        source: Box<objstore::Error>,
    },
}

/// The persist stores, their reservations and the sector index.
pub struct StoreManager {
    stores: BTreeMap<String, PersistStore>,
    kv: Kv,
    reserve_lock: Mutex<()>,
    opener: StoreOpener,
    /// Mock mode: a store name that is not configured is a file store at that path.
    auto_fs: bool,
    auto: Mutex<BTreeMap<String, PersistStore>>,
}

impl std::fmt::Debug for StoreManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreManager")
            .field("stores", &self.stores.keys())
            .finish()
    }
}

fn sector_key(sid: SectorId) -> String {
    format!("m-{}-n-{}", sid.miner, sid.number)
}

/// Expands `ScanPersistStores` globs into store configs from their `sectorstore.json`.
pub fn scan_persist_stores(patterns: &[String]) -> Result<Vec<PersistStoreConfig>> {
    let mut out = Vec::new();
    for pattern in patterns {
        let paths = glob::glob(pattern)
            .with_context(|| format!("ScanPersistStores: bad pattern {pattern:?}"))?;
        for entry in paths {
            let dir = entry.with_context(|| format!("ScanPersistStores: reading {pattern:?}"))?;
            if !dir.is_dir() {
                continue;
            }
            let Some(mut store) = layout::PersistStore::read_in(&dir)? else {
                continue;
            };
            store.path = dir.display().to_string();
            store.name = store.name_or(store.path.clone());
            out.push(store);
        }
    }
    Ok(out)
}

/// The objstore settings of a persist store.
pub fn store_config(c: &PersistStoreConfig) -> StoreConfig {
    StoreConfig {
        name: c.name.clone(),
        path: c.path.clone(),
        meta: c.meta.clone(),
        strict: c.strict,
        read_only: c.read_only,
        weight: u32::try_from(c.weight).unwrap_or(u32::MAX),
        plugin_name: c.plugin_name().map(str::to_string),
    }
}

impl StoreManager {
    /// Opens every configured store; duplicate names are an error.
    pub fn open(
        configs: Vec<PersistStoreConfig>,
        kv: Kv,
        opener: StoreOpener,
        auto_fs: bool,
    ) -> Result<Self> {
        let mut stores = BTreeMap::new();
        for mut c in configs {
            if c.name.is_empty() {
                let path = std::path::absolute(&c.path)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| c.path.clone());
                c.name = c.name_or(path);
            }
            if stores.contains_key(&c.name) {
                bail!(
                    "two persist stores are named {:?}; names must be unique",
                    c.name
                );
            }
            let (store, kind) = opener.open(store_config(&c))?;
            stores.insert(
                c.name.clone(),
                PersistStore {
                    config: c,
                    store,
                    kind,
                },
            );
        }
        Ok(StoreManager {
            stores,
            kv,
            reserve_lock: Mutex::new(()),
            opener,
            auto_fs,
            auto: Mutex::new(BTreeMap::new()),
        })
    }

    /// A store by name.
    pub fn get(&self, name: &str) -> Option<PersistStore> {
        if let Some(s) = self.stores.get(name) {
            return Some(s.clone());
        }
        if !self.auto_fs {
            return None;
        }
        let mut auto = self.auto.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = auto.get(name) {
            return Some(s.clone());
        }
        let config = PersistStoreConfig {
            name: name.to_string(),
            path: name.to_string(),
            ..PersistStoreConfig::default()
        };
        let (store, kind) = self.opener.open(store_config(&config)).ok()?;
        let s = PersistStore {
            config,
            store,
            kind,
        };
        auto.insert(name.to_string(), s.clone());
        Some(s)
    }

    /// Every configured store.
    pub fn all(&self) -> Vec<PersistStore> {
        self.stores.values().cloned().collect()
    }

    fn summary(&self) -> Result<ReserveSummary> {
        Ok(self
            .kv
            .get_json(cf::COMMON, RESERVE_KEY)?
            .unwrap_or_default())
    }

    /// Reserves `size` bytes for a sector in one of `candidates` (all stores if empty):
    /// idempotent per sector; skips read-only stores, stores the miner may not use and stores
    /// without room; chooses by weight. `None` if no store fits.
    pub fn reserve_space(
        &self,
        sid: SectorId,
        size: u64,
        candidates: &[String],
    ) -> Result<Option<StoreBasicInfo>> {
        let _g = self.reserve_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut summary = self.summary()?;
        let by = sid.to_string();
        let wanted: HashSet<&str> = candidates.iter().map(String::as_str).collect();
        let mut eligible: Vec<PersistStore> = if wanted.is_empty() {
            self.all()
        } else {
            candidates.iter().filter_map(|c| self.get(c)).collect()
        };
        eligible.retain(|s| s.allows(sid.miner));
        for s in &eligible {
            if let Some(item) = summary
                .stats
                .get(&s.config.name)
                .and_then(|st| st.reserved.get(&by))
            {
                if item.size == size {
                    return Ok(Some(s.basic_info()));
                }
            }
        }
        let mut fits = Vec::new();
        for s in eligible {
            if s.config.read_only {
                continue;
            }
            let reserved = summary
                .stats
                .get(&s.config.name)
                .map_or(0, |st| st.reserved_size);
            let info = match s.store.info() {
                Ok(i) => i,
                Err(e) => {
                    tracing::warn!(store = %s.config.name, error = %e, "store unavailable, not chosen");
                    continue;
                }
            };
            // An object store that does not know its free space is never full.
            if let Some(free) = info.free {
                if free < reserved.saturating_add(size) {
                    continue;
                }
            }
            fits.push(s);
        }
        if fits.is_empty() {
            return Ok(None);
        }
        let weight = |s: &PersistStore| s.config.weight.clamp(1, u64::from(u32::MAX));
        let total: u64 = fits.iter().map(weight).sum();
        let mut pick = rand::thread_rng().gen_range(0..total);
        let mut chosen = fits.len() - 1;
        for (i, s) in fits.iter().enumerate() {
            let w = weight(s);
            if pick < w {
                chosen = i;
                break;
            }
            pick -= w;
        }
        let s = &fits[chosen];
        // A sector holds one reservation: drop any other (a different size or store).
        for st in summary.stats.values_mut() {
            if let Some(old) = st.reserved.remove(&by) {
                st.reserved_size = st.reserved_size.saturating_sub(old.size);
            }
        }
        let st = summary.stats.entry(s.config.name.clone()).or_default();
        st.reserved_size = st.reserved_size.saturating_add(size);
        st.reserved.insert(
            by.clone(),
            ReservedItem {
                by,
                size,
                at: crate::util::unix_now(),
            },
        );
        self.kv.put_json(cf::COMMON, RESERVE_KEY, &summary)?;
        Ok(Some(s.basic_info()))
    }

    /// Releases a sector's reservations; `true` if there was one.
    pub fn release_reserved(&self, sid: SectorId) -> Result<bool> {
        let _g = self.reserve_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut summary = self.summary()?;
        let by = sid.to_string();
        let mut found = false;
        for st in summary.stats.values_mut() {
            if let Some(old) = st.reserved.remove(&by) {
                st.reserved_size = st.reserved_size.saturating_sub(old.size);
                found = true;
            }
        }
        if found {
            self.kv.put_json(cf::COMMON, RESERVE_KEY, &summary)?;
        }
        Ok(found)
    }

    /// Every reservation, as `(store, item)`.
    pub fn reservations(&self) -> Result<Vec<(String, ReservedItem)>> {
        Ok(self
            .summary()?
            .stats
            .into_iter()
            .flat_map(|(name, st)| st.reserved.into_values().map(move |i| (name.clone(), i)))
            .collect())
    }

    /// `StoreList`: every store with its capacity and reservations.
    pub fn list(&self) -> Result<Vec<StoreDetailedInfo>> {
        let summary = self.summary()?;
        let mut out = Vec::new();
        for s in self.stores.values() {
            let stats = summary
                .stats
                .get(&s.config.name)
                .cloned()
                .unwrap_or_default();
            let (kind, total, free, used, pct) = match s.store.info() {
                Ok(i) => {
                    let pct = i.used_percent().unwrap_or(0.0);
                    (
                        i.kind,
                        i.total.unwrap_or(0),
                        i.free.unwrap_or(0),
                        i.used.unwrap_or(0),
                        pct,
                    )
                }
                Err(e) => (format!("{} (unavailable: {e})", s.kind), 0, 0, 0, 0.0),
            };
            out.push(StoreDetailedInfo {
                basic: s.basic_info(),
                kind,
                total,
                free,
                used,
                used_percent: pct,
                reserved: stats.reserved_size,
                reserved_by: stats.reserved.into_values().collect(),
            });
        }
        Ok(out)
    }

    /// Whether a sector's files are complete in a store (existence of the sealed file and of
    /// the cache files PoSt reads). A missing file answers `false`; a failing store is an error.
    pub fn check_persisted(
        &self,
        sid: SectorId,
        instance: &str,
        upgrade: bool,
        proof: SealProofType,
    ) -> Result<bool, PersistCheckError> {
        let store = self
            .get(instance)
            .ok_or_else(|| PersistCheckError::NoSuchStore(instance.to_string()))?;
        let size = proof.sector_size().unwrap_or(0);
        let mut paths = vec![layout::sealed_rel(sid, upgrade)];
        let cache = layout::cache_rel(sid, upgrade);
        paths.extend(
            layout::post_cache_files(size)
                .into_iter()
                .map(|f| format!("{cache}/{f}")),
        );
        for path in paths {
            match store.store.stat(&path) {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {
                    tracing::warn!(sector = %sid, store = instance, path, "persisted file missing");
                    return Ok(false);
                }
                Err(source) => {
                    return Err(PersistCheckError::Io {
                        instance: instance.to_string(),
                        path,
                        source: Box::new(source),
                    })
                }
            }
        }
        Ok(true)
    }
}

/// The sector index: which store holds a sector's sealed file and cache directory.
#[derive(Debug, Clone)]
pub struct SectorIndex {
    kv: Kv,
}

fn index_keys(index: SectorIndexType, sid: SectorId) -> (Vec<u8>, Vec<u8>) {
    let base = match index {
        SectorIndexType::Normal => String::new(),
        SectorIndexType::Upgrade => "sector-upgrade/".to_string(),
    };
    let k = sector_key(sid);
    (
        format!("{base}{k}").into_bytes(),
        format!("{base}cache/{k}").into_bytes(),
    )
}

impl SectorIndex {
    /// Over the state database.
    pub fn new(kv: Kv) -> Self {
        SectorIndex { kv }
    }

    /// Where a sector is; the cache store defaults to the sealed file's.
    pub fn find(
        &self,
        index: SectorIndexType,
        sid: SectorId,
    ) -> Result<Option<SectorAccessStores>> {
        let (sk, ck) = index_keys(index, sid);
        let Some(sealed) = self.kv.get(cf::SECTOR_INDEX, &sk)? else {
            return Ok(None);
        };
        let sealed =
            String::from_utf8(sealed).map_err(|_| anyhow!("index entry of {sid} is not UTF-8"))?;
        let cache = match self.kv.get(cf::SECTOR_INDEX, &ck)? {
            Some(c) => String::from_utf8(c)
                .map_err(|_| anyhow!("cache index entry of {sid} is not UTF-8"))?,
            None => sealed.clone(),
        };
        Ok(Some(SectorAccessStores {
            sealed_file: sealed,
            cache_dir: cache,
        }))
    }

    /// Records where a sector is (empty names are left as they are).
    pub fn update(
        &self,
        index: SectorIndexType,
        sid: SectorId,
        access: &SectorAccessStores,
    ) -> Result<()> {
        let (sk, ck) = index_keys(index, sid);
        let mut ops = Vec::new();
        if !access.sealed_file.is_empty() {
            ops.push(crate::kv::Op::Put(
                cf::SECTOR_INDEX,
                sk,
                access.sealed_file.clone().into_bytes(),
            ));
        }
        if !access.cache_dir.is_empty() {
            ops.push(crate::kv::Op::Put(
                cf::SECTOR_INDEX,
                ck,
                access.cache_dir.clone().into_bytes(),
            ));
        }
        self.kv.write(ops)
    }
}

/// A piece found in a piece store: the store, the object name and its size.
pub type FoundPiece = (Arc<dyn ObjectStore>, String, u64);

/// Read-only copies of deal pieces, named by piece CID.
pub struct PieceStores {
    stores: Vec<(PieceStoreConfig, Arc<dyn ObjectStore>)>,
}

impl std::fmt::Debug for PieceStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.stores.iter().map(|(c, _)| &c.name))
            .finish()
    }
}

impl PieceStores {
    /// Opens every configured piece store.
    pub fn open(configs: &[PieceStoreConfig], opener: &StoreOpener) -> Result<Self> {
        let mut stores = Vec::new();
        for c in configs {
            let sc = StoreConfig {
                name: if c.name.is_empty() {
                    c.path.clone()
                } else {
                    c.name.clone()
                },
                path: c.path.clone(),
                meta: c.meta.clone(),
                read_only: c.read_only,
                plugin_name: c
                    .plugin_name
                    .clone()
                    .or_else(|| c.plugin.clone())
                    .filter(|p| !p.is_empty()),
                ..StoreConfig::default()
            };
            let (store, _) = opener.open(sc)?;
            stores.push((c.clone(), store));
        }
        Ok(PieceStores { stores })
    }

    /// The store and object name of a piece (`<cid>` or `<cid>.car`).
    pub fn find(&self, piece_cid: &str) -> Result<Option<FoundPiece>> {
        for (_, store) in &self.stores {
            for name in [piece_cid.to_string(), format!("{piece_cid}.car")] {
                match store.stat(&name) {
                    Ok(st) => return Ok(Some((store.clone(), name, st.size))),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e).context("looking up a piece"),
                }
            }
        }
        Ok(None)
    }

    /// The first writable piece store.
    pub fn writable(&self) -> Option<Arc<dyn ObjectStore>> {
        self.stores
            .iter()
            .find(|(c, _)| !c.read_only)
            .map(|(_, s)| s.clone())
    }
}
