//! The sector layout: the one place that spells a sector's name, the directories and files a
//! sector has in a store, the sector sizes, and `sectorstore.json` (manager-spec §5.3–5.4,
//! worker-spec §1.8–1.9). The manager, the worker and the builtin processors all take these
//! names from here.
//!
//! ```text
//! sealed/s-t0<M>-<N>                       sealed replica
//! cache/s-t0<M>-<N>/p_aux, t_aux, sc-02-data-tree-r-last[-i].dat
//! update/s-t0<M>-<N>, update-cache/s-t0<M>-<N>/…   the same for a snap-upgraded replica
//! unsealed/s-t0<M>-<N>                     staged sector file (sealing store only)
//! prepared/s-t0<M>-<N>/sc-02-data-tree-d.dat       tree-d (sealing store only)
//! ```
//!
//! Relative paths are `/`-separated strings: they are object keys in a store and relative paths
//! under a directory alike.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// `abi.SectorID`: `{"Miner": u64, "Number": u64}` on the wire; `s-t0<miner>-<number>` as text
/// ([`fmt::Display`] and [`FromStr`] are inverse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorId {
    /// Miner actor id.
    pub miner: u64,
    /// Sector number.
    pub number: u64,
}

/// The literal prefix of every sector name (`t0` even on mainnet).
const SECTOR_NAME_PREFIX: &str = "s-t0";

impl fmt::Display for SectorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SECTOR_NAME_PREFIX}{}-{}", self.miner, self.number)
    }
}

/// A glob that matches every sector name.
pub const SECTOR_NAME_GLOB: &str = "s-t0*";

/// A text that is not a sector name `s-t0<miner>-<number>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a sector name (s-t0<miner>-<number>)")]
pub struct NotASectorName(pub String);

impl FromStr for SectorId {
    type Err = NotASectorName;

    /// Accepts exactly what [`fmt::Display`] writes: decimal numbers without a sign or leading
    /// zeros, so a parsed name always names the same file.
    fn from_str(s: &str) -> Result<Self, NotASectorName> {
        let bad = || NotASectorName(s.to_string());
        let (miner, number) = s
            .strip_prefix(SECTOR_NAME_PREFIX)
            .and_then(|rest| rest.split_once('-'))
            .ok_or_else(bad)?;
        Ok(SectorId {
            miner: canonical_u64(miner).ok_or_else(bad)?,
            number: canonical_u64(number).ok_or_else(bad)?,
        })
    }
}

/// A decimal `u64` as `Display` writes it.
fn canonical_u64(s: &str) -> Option<u64> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let no_leading_zero = s == "0" || !s.starts_with('0');
    if digits && no_leading_zero {
        s.parse().ok()
    } else {
        None
    }
}

/// The sector sizes the proofs support, in bytes, in the order of every proof-type group.
pub const SECTOR_SIZES: [u64; 5] = [2 << 10, 8 << 20, 512 << 20, 32 << 30, 64 << 30];
/// The sizes as proof-type names spell them, in [`SECTOR_SIZES`] order.
pub const SECTOR_SIZE_NAMES: [&str; 5] = ["2KiB", "8MiB", "512MiB", "32GiB", "64GiB"];

/// The position of a sector size in [`SECTOR_SIZES`].
pub fn sector_size_index(sector_size: u64) -> Option<usize> {
    SECTOR_SIZES.iter().position(|&s| s == sector_size)
}

/// A sector size as [`SECTOR_SIZE_NAMES`] spells it; any other size in bytes (`3000B`).
pub fn sector_size_name(sector_size: u64) -> String {
    match sector_size_index(sector_size) {
        Some(i) => SECTOR_SIZE_NAMES[i].to_string(),
        None => format!("{sector_size}B"),
    }
}

/// Sealed replicas.
pub const SEALED_DIR: &str = "sealed";
/// Cache directories of sealed replicas.
pub const CACHE_DIR: &str = "cache";
/// Snap-upgraded replicas.
pub const UPDATE_DIR: &str = "update";
/// Cache directories of snap-upgraded replicas.
pub const UPDATE_CACHE_DIR: &str = "update-cache";
/// Staged sector files and unsealed pieces (sealing store).
pub const UNSEALED_DIR: &str = "unsealed";
/// Directories holding a sector's tree-d before PC1 (sealing store).
pub const PREPARED_DIR: &str = "prepared";

/// The directories of a replica and of its cache: `sealed`/`cache`, or `update`/`update-cache`
/// for a snap-upgraded one.
pub fn replica_dirs(upgrade: bool) -> (&'static str, &'static str) {
    if upgrade {
        (UPDATE_DIR, UPDATE_CACHE_DIR)
    } else {
        (SEALED_DIR, CACHE_DIR)
    }
}

/// `sealed/s-t0M-N`, or `update/s-t0M-N`.
pub fn sealed_rel(id: SectorId, upgrade: bool) -> String {
    format!("{}/{id}", replica_dirs(upgrade).0)
}

/// `cache/s-t0M-N`, or `update-cache/s-t0M-N`.
pub fn cache_rel(id: SectorId, upgrade: bool) -> String {
    format!("{}/{id}", replica_dirs(upgrade).1)
}

/// `unsealed/s-t0M-N`: the staged (unsealed, padded) sector file.
pub fn staged_rel(id: SectorId) -> String {
    format!("{UNSEALED_DIR}/{id}")
}

/// `unsealed/<piece_cid>`: the output of an unseal.
pub fn unsealed_piece_rel(piece_cid: &str) -> String {
    format!("{UNSEALED_DIR}/{piece_cid}")
}

/// `prepared/s-t0M-N`: the directory holding the sector's tree-d.
pub fn prepared_rel(id: SectorId) -> String {
    format!("{PREPARED_DIR}/{id}")
}

/// The data tree, in a prepared directory and linked into the cache directories.
pub const TREE_D_FILE: &str = "sc-02-data-tree-d.dat";
/// PoRep's persistent aux (tree-c and tree-r-last roots), in a cache directory.
pub const P_AUX_FILE: &str = "p_aux";
/// PoRep's temporary aux, in a cache directory.
pub const T_AUX_FILE: &str = "t_aux";
/// Marker in a sealing store's cache directory while PC2 runs.
pub const PC2_RUNNING_FILE: &str = ".pc2_running";
/// How every SDR layer file name begins.
const SDR_LAYER_PREFIX: &str = "sc-02-data-layer-";
/// How every tree-c file name begins.
const TREE_C_PREFIX: &str = "sc-02-data-tree-c";
/// How every tree-r-last file name begins.
const TREE_R_LAST_PREFIX: &str = "sc-02-data-tree-r-last";
/// Any layout of tree-r-last, for messages.
pub const TREE_R_LAST_PATTERN: &str = "sc-02-data-tree-r-last*.dat";

/// How many tree-r-last trees (and files) a sector of this size has: one below 32 GiB, 8 at
/// 32 GiB, 16 at 64 GiB.
pub fn tree_r_last_count(sector_size: u64) -> u64 {
    match sector_size {
        s if s >= 64 << 30 => 16,
        s if s >= 32 << 30 => 8,
        _ => 1,
    }
}

/// The tree-r-last files of a sector size: `sc-02-data-tree-r-last.dat` for a single tree,
/// else `sc-02-data-tree-r-last-<i>.dat` for each.
pub fn tree_r_last_files(sector_size: u64) -> Vec<String> {
    match tree_r_last_count(sector_size) {
        1 => vec![format!("{TREE_R_LAST_PREFIX}.dat")],
        count => (0..count)
            .map(|i| format!("{TREE_R_LAST_PREFIX}-{i}.dat"))
            .collect(),
    }
}

/// The cache files kept after sealing, which PoSt reads and persisting copies: the tree-r-last
/// file(s), `p_aux` and `t_aux`.
pub fn post_cache_files(sector_size: u64) -> Vec<String> {
    let mut names = tree_r_last_files(sector_size);
    names.push(P_AUX_FILE.to_string());
    names.push(T_AUX_FILE.to_string());
    names
}

/// Whether a cache file is written by PC2 (tree-c, tree-r-last, `p_aux`, `t_aux`), so a PC2
/// that starts again removes it first.
pub fn is_pc2_output(file_name: &str) -> bool {
    file_name == P_AUX_FILE
        || file_name == T_AUX_FILE
        || file_name.starts_with(TREE_C_PREFIX)
        || file_name.starts_with(TREE_R_LAST_PREFIX)
}

/// Whether a cache file is an SDR layer (PC1's output, which C1 no longer needs once synthetic
/// proofs are made).
pub fn is_sdr_layer(file_name: &str) -> bool {
    file_name.starts_with(SDR_LAYER_PREFIX)
}

/// The file that makes a scanned directory a persist store.
pub const SECTOR_STORE_JSON: &str = "sectorstore.json";

/// What listings and logs show instead of a credential.
pub const REDACTED: &str = "<redacted>";

/// Whether a store `Meta` key holds a credential (`AccessKey`, `SecretKey`, `SessionToken`, a
/// password): such values are never listed nor logged.
pub fn is_credential_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    ["secret", "token", "password", "key", "credential"]
        .iter()
        .any(|w| lower.contains(w))
}

/// `meta` with the value of each credential key ([`is_credential_key`]) replaced by
/// [`REDACTED`].
pub fn redact_meta(meta: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    meta.iter()
        .map(|(k, v)| {
            let v = if is_credential_key(k) {
                REDACTED.to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

/// A persist store's settings: a `[[Common.PersistStores]]` block of the manager's config, or
/// the `sectorstore.json` of a directory found by `ScanPersistStores` (manager) or
/// `scan_persist_stores` (worker), whose path is always the directory itself. `Debug` hides
/// the credentials of `Meta`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PersistStore {
    /// Lotus-compatible alias of `Name`.
    #[serde(rename = "ID", skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Instance name: the contract with the workers' `[[attached]]` names (default: `ID`, else
    /// the path).
    pub name: String,
    /// Location (a `sectorstore.json` leaves it out: it is the directory).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Backend settings.
    pub meta: BTreeMap<String, String>,
    /// Only regular files are objects.
    pub strict: bool,
    /// Never chosen, refuses writes.
    pub read_only: bool,
    /// Choice weight (0 counts as 1).
    pub weight: u64,
    /// Miners allowed (empty: all).
    pub allow_miners: Vec<u64>,
    /// Miners refused (wins over `AllowMiners`).
    pub deny_miners: Vec<u64>,
    /// Deprecated spelling of `PluginName`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// objstore plugin (default: the file-system backend).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_name: Option<String>,
}

impl std::fmt::Debug for PersistStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistStore")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("path", &self.path)
            .field("meta", &redact_meta(&self.meta))
            .field("strict", &self.strict)
            .field("read_only", &self.read_only)
            .field("weight", &self.weight)
            .field("allow_miners", &self.allow_miners)
            .field("deny_miners", &self.deny_miners)
            .field("plugin", &self.plugin)
            .field("plugin_name", &self.plugin_name)
            .finish()
    }
}

impl Default for PersistStore {
    fn default() -> Self {
        PersistStore {
            id: String::new(),
            name: String::new(),
            path: String::new(),
            meta: BTreeMap::new(),
            strict: false,
            read_only: false,
            weight: 1,
            allow_miners: Vec::new(),
            deny_miners: Vec::new(),
            plugin: None,
            plugin_name: None,
        }
    }
}

impl PersistStore {
    /// The `sectorstore.json` of `dir`; `None` when `dir` has no such regular file. A file that
    /// cannot be read or decoded is an error naming it.
    pub fn read_in(dir: &Path) -> Result<Option<PersistStore>> {
        let file = dir.join(SECTOR_STORE_JSON);
        if !file.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let json = serde_json::from_str(&text)
            .with_context(|| format!("{}: invalid {SECTOR_STORE_JSON}", file.display()))?;
        Ok(Some(json))
    }

    /// The store's name: `Name`, else `ID`, else `fallback` (its path).
    pub fn name_or(&self, fallback: String) -> String {
        [&self.name, &self.id]
            .into_iter()
            .find(|s| !s.is_empty())
            .cloned()
            .unwrap_or(fallback)
    }

    /// The plugin, under either spelling.
    pub fn plugin_name(&self) -> Option<&str> {
        self.plugin_name
            .as_deref()
            .or(self.plugin.as_deref())
            .filter(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_of_a_store_meta_are_redacted_in_listings_and_debug() {
        let meta: BTreeMap<String, String> = [
            ("AccessKey", "AKIAEXAMPLE"),
            ("SecretKey", "wJalrXUtnFEMI"),
            ("SessionToken", "FwoGZXIvYXdzE"),
            ("Endpoint", "http://s3.local:9000"),
            ("Bucket", "sectors"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let shown = redact_meta(&meta);
        assert_eq!(shown["Endpoint"], "http://s3.local:9000");
        assert_eq!(shown["Bucket"], "sectors");
        for k in ["AccessKey", "SecretKey", "SessionToken"] {
            assert_eq!(shown[k], REDACTED, "{k}");
        }
        let store = PersistStore {
            name: "s3".into(),
            meta,
            ..PersistStore::default()
        };
        let debug = format!("{store:?}");
        for secret in ["AKIAEXAMPLE", "wJalrXUtnFEMI", "FwoGZXIvYXdzE"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(debug.contains("s3.local"), "{debug}");
    }

    fn sid(miner: u64, number: u64) -> SectorId {
        SectorId { miner, number }
    }

    #[test]
    fn sector_names_parse_back_to_the_same_id_and_nothing_else_parses() {
        for id in [sid(0, 0), sid(1000, 5), sid(u64::MAX, u64::MAX)] {
            assert_eq!(id.to_string().parse::<SectorId>(), Ok(id));
        }
        assert_eq!(sid(1000, 5).to_string(), "s-t01000-5");
        for bad in [
            "",
            "s-t0",
            "s-t01000",
            "s-t01000-",
            "s-t0-5",
            "s-t1000-5",
            "s-t01000-5.dat",
            "s-t001000-5",
            "s-t01000-05",
            "s-t0+1000-5",
            "s-t01000--5",
            "s-t01000-5-6",
            "s-t018446744073709551616-1",
        ] {
            let err = bad.parse::<SectorId>().expect_err(bad);
            assert!(err.to_string().contains("not a sector name"), "{err}");
        }
    }

    #[test]
    fn sector_ids_keep_the_go_json_shape() {
        let json = serde_json::to_string(&sid(1000, 5)).expect("encode");
        assert_eq!(json, r#"{"Miner":1000,"Number":5}"#);
    }

    /// The store layout of manager-spec §5.3 and the sealing-store layout of worker-spec §1.8,
    /// path by path.
    #[test]
    fn the_layout_is_the_damocles_store_layout() {
        let id = sid(1000, 5);
        assert_eq!(sealed_rel(id, false), "sealed/s-t01000-5");
        assert_eq!(cache_rel(id, false), "cache/s-t01000-5");
        assert_eq!(sealed_rel(id, true), "update/s-t01000-5");
        assert_eq!(cache_rel(id, true), "update-cache/s-t01000-5");
        assert_eq!(staged_rel(id), "unsealed/s-t01000-5");
        assert_eq!(unsealed_piece_rel("baga6ea4sea"), "unsealed/baga6ea4sea");
        assert_eq!(
            format!("{}/{TREE_D_FILE}", prepared_rel(id)),
            "prepared/s-t01000-5/sc-02-data-tree-d.dat"
        );
        assert_eq!(PC2_RUNNING_FILE, ".pc2_running");
        for size in [2 << 10, 8 << 20, 512 << 20] {
            assert_eq!(
                post_cache_files(size),
                ["sc-02-data-tree-r-last.dat", "p_aux", "t_aux"]
            );
        }
        let big = post_cache_files(32 << 30);
        assert_eq!(big.len(), 10);
        assert_eq!(big[0], "sc-02-data-tree-r-last-0.dat");
        assert_eq!(big[7], "sc-02-data-tree-r-last-7.dat");
        let huge = tree_r_last_files(64 << 30);
        assert_eq!(huge.len(), 16);
        assert_eq!(huge[15], "sc-02-data-tree-r-last-15.dat");
        assert_eq!(SECTOR_STORE_JSON, "sectorstore.json");
    }

    #[test]
    fn pc2_outputs_are_the_trees_and_aux_files_and_layers_are_apart() {
        for name in [
            "p_aux",
            "t_aux",
            "sc-02-data-tree-c.dat",
            "sc-02-data-tree-c-3.dat",
            "sc-02-data-tree-r-last.dat",
            "sc-02-data-tree-r-last-7.dat",
        ] {
            assert!(is_pc2_output(name), "{name}");
        }
        for name in [
            TREE_D_FILE,
            PC2_RUNNING_FILE,
            "sc-02-data-layer-1.dat",
            "p_aux.bak",
        ] {
            assert!(!is_pc2_output(name), "{name}");
        }
        assert!(is_sdr_layer("sc-02-data-layer-11.dat"));
        assert!(!is_sdr_layer(TREE_D_FILE));
    }

    #[test]
    fn sector_sizes_and_their_names_line_up() {
        assert_eq!(sector_size_index(32 << 30), Some(3));
        assert_eq!(SECTOR_SIZE_NAMES[3], "32GiB");
        assert_eq!(sector_size_index(4096), None);
        assert_eq!(sector_size_name(512 << 20), "512MiB");
        assert_eq!(sector_size_name(3000), "3000B");
    }

    #[test]
    fn sectorstore_json_reads_the_go_keys_and_names_a_bad_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(PersistStore::read_in(dir.path()).expect("absent"), None);
        let file = dir.path().join(SECTOR_STORE_JSON);
        std::fs::write(
            &file,
            r#"{"ID":"lotus-id","ReadOnly":true,"Weight":3,"PluginName":"s3","Meta":{"bucket":"b"}}"#,
        )
        .expect("write");
        let json = PersistStore::read_in(dir.path())
            .expect("read")
            .expect("present");
        assert!(json.read_only);
        assert_eq!(json.weight, 3);
        assert_eq!(json.plugin_name.as_deref(), Some("s3"));
        assert_eq!(json.meta["bucket"], "b");
        assert_eq!(json.name_or("/path".into()), "lotus-id");
        assert_eq!(PersistStore::default().name_or("/path".into()), "/path");
        assert_eq!(
            PersistStore::default().weight,
            1,
            "an unweighted store counts once"
        );
        assert_eq!(json.plugin_name(), Some("s3"));
        std::fs::write(&file, r#"{"Weight":"heavy"}"#).expect("write");
        let err = PersistStore::read_in(dir.path()).expect_err("bad weight");
        assert!(
            format!("{err:#}").contains("sectorstore.json: invalid sectorstore.json"),
            "{err:#}"
        );
    }
}
