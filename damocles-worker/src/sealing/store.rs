//! The local sealing store of a sealing thread (worker-spec §1.8): one directory per thread,
//! holding one sector at a time.
//!
//! ```text
//! <location>/
//!   .holder        empty marker: this directory is an initialised sealing store
//!   config.toml    optional hot config (§1.5; read elsewhere)
//!   meta/          RocksDB: the sector record under `meta/info` (§1.7)
//!   data/          the sector's files, laid out as in a persist store ([`layout`])
//! ```
//!
//! A sector's files are addressed by their path relative to `data/` ([`layout::sealed_rel`], …);
//! a persist store uses the same relative layout under its root (§1.9).
//!
//! [`SealingStore::finalize`] wipes `data/` **without following symlinks** (P-17: for snapup and
//! unseal sectors, `data/sealed/…` and `data/cache/…` are symlinks into persist stores) and
//! deletes the record.
//!
//! Not here: persist stores, the hot config, the engine.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use damocles_manager_api::json::Cid;
use damocles_manager_api::types::SectorId;
use rocksdb::{Options, WriteOptions, DB};
use vc_processors::layout;

use super::state::Sector;

/// The marker file of an initialised store.
pub const HOLDER_FILE: &str = ".holder";
/// The directory of the sector's files.
pub const DATA_DIR: &str = "data";
/// The RocksDB directory.
pub const META_DIR: &str = "meta";
/// The hot config file.
pub const HOT_CONFIG_FILE: &str = "config.toml";
/// The metadb key of the sector record (prefix `meta`, name `info`).
pub const SECTOR_KEY: &str = "meta/info";
fn synced() -> WriteOptions {
    let mut o = WriteOptions::default();
    o.set_sync(true);
    o
}

/// An open sealing store: its location, its metadb and its `.holder` (held open, read-only).
///
/// RocksDB's lock makes a second open of the same location fail while this one lives; drop it
/// to release the location.
pub struct SealingStore {
    location: PathBuf,
    db: DB,
    _holder: File,
}

impl std::fmt::Debug for SealingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealingStore")
            .field("location", &self.location)
            .finish()
    }
}

impl SealingStore {
    /// Initialises a sealing store at `location` and opens it: creates `location` (with its
    /// parents if `create_parents`, as `store sealing-init` does; the daemon initialises a
    /// missing location without parents), then `.holder` (refused if it already exists: the
    /// store is initialised), `data/`, and the RocksDB at `meta/`.
    pub fn init(location: &Path, create_parents: bool) -> Result<SealingStore> {
        let loc = location.display();
        let made = if create_parents {
            fs::create_dir_all(location)
        } else {
            match fs::create_dir(location) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && location.is_dir() => Ok(()),
                other => other,
            }
        };
        made.with_context(|| format!("initialising sealing store {loc}: creating the directory"))?;

        let holder = location.join(HOLDER_FILE);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&holder)
        {
            Ok(f) => f.sync_all().with_context(|| {
                format!(
                    "initialising sealing store {loc}: syncing {}",
                    holder.display()
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => bail!(
                "initialising sealing store {loc}: {} already exists: the store is already \
                 initialised",
                holder.display()
            ),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "initialising sealing store {loc}: creating {}",
                        holder.display()
                    )
                })
            }
        }

        let data = location.join(DATA_DIR);
        fs::create_dir_all(&data).with_context(|| {
            format!(
                "initialising sealing store {loc}: creating {}",
                data.display()
            )
        })?;
        // The new directories and the holder survive a power cut once the store says it is
        // initialised.
        vc_processors::builtin::sync_paths(&[location])
            .with_context(|| format!("initialising sealing store {loc}"))?;
        SealingStore::open(location).with_context(|| format!("initialising sealing store {loc}"))
    }

    /// Opens an initialised store: `data/` must be a real directory (not a symlink), `.holder`
    /// must exist (it is opened read-only and kept open), and the RocksDB at `meta/` is opened
    /// (created if missing, as damocles does).
    pub fn open(location: &Path) -> Result<SealingStore> {
        let loc = location.display();
        let data = location.join(DATA_DIR);
        let md = fs::symlink_metadata(&data)
            .with_context(|| format!("sealing store {loc}: data directory {}", data.display()))?;
        if md.file_type().is_symlink() {
            bail!(
                "sealing store {loc}: {} is a symlink; the data directory must be a real directory",
                data.display()
            );
        }
        if !md.is_dir() {
            bail!("sealing store {loc}: {} is not a directory", data.display());
        }

        let holder_path = location.join(HOLDER_FILE);
        let holder = File::open(&holder_path).with_context(|| {
            format!(
                "sealing store {loc}: opening {} (not an initialised sealing store? see `store \
                 sealing-init`)",
                holder_path.display()
            )
        })?;

        let meta = location.join(META_DIR);
        let mut opts = Options::default();
        opts.create_if_missing(true);
        let db = DB::open(&opts, &meta).with_context(|| {
            format!(
                "sealing store {loc}: opening the metadb {} (is the location used by another \
                 sealing thread or worker?)",
                meta.display()
            )
        })?;
        Ok(SealingStore {
            location: location.to_path_buf(),
            db,
            _holder: holder,
        })
    }

    /// The store's directory.
    pub fn location(&self) -> &Path {
        &self.location
    }

    /// `<location>/data`.
    pub fn data_dir(&self) -> PathBuf {
        self.location.join(DATA_DIR)
    }

    /// `<location>/meta`.
    pub fn meta_dir(&self) -> PathBuf {
        self.location.join(META_DIR)
    }

    /// `<location>/config.toml`.
    pub fn hot_config_file(&self) -> PathBuf {
        self.location.join(HOT_CONFIG_FILE)
    }

    /// `data/unsealed/s-t0M-N`.
    pub fn staged_file(&self, id: SectorId) -> PathBuf {
        self.data_dir().join(layout::staged_rel(id))
    }

    /// `data/unsealed/<piece_cid>`.
    pub fn unsealed_piece_file(&self, piece_cid: &Cid) -> PathBuf {
        self.data_dir()
            .join(layout::unsealed_piece_rel(piece_cid.as_str()))
    }

    /// `data/prepared/s-t0M-N`.
    pub fn prepared_dir(&self, id: SectorId) -> PathBuf {
        self.data_dir().join(layout::prepared_rel(id))
    }

    /// `data/prepared/s-t0M-N/sc-02-data-tree-d.dat` (a file, or a symlink to a static tree-d).
    pub fn prepared_tree_d(&self, id: SectorId) -> PathBuf {
        self.prepared_dir(id).join(layout::TREE_D_FILE)
    }

    /// `data/cache/s-t0M-N`.
    pub fn cache_dir(&self, id: SectorId) -> PathBuf {
        self.data_dir().join(layout::cache_rel(id, false))
    }

    /// `data/cache/s-t0M-N/sc-02-data-tree-d.dat` (a symlink to the prepared tree-d).
    pub fn cache_tree_d(&self, id: SectorId) -> PathBuf {
        self.cache_dir(id).join(layout::TREE_D_FILE)
    }

    /// `data/cache/s-t0M-N/.pc2_running`.
    pub fn pc2_running_marker(&self, id: SectorId) -> PathBuf {
        self.cache_dir(id).join(layout::PC2_RUNNING_FILE)
    }

    /// `data/sealed/s-t0M-N`.
    pub fn sealed_file(&self, id: SectorId) -> PathBuf {
        self.data_dir().join(layout::sealed_rel(id, false))
    }

    /// `data/update/s-t0M-N`.
    pub fn update_file(&self, id: SectorId) -> PathBuf {
        self.data_dir().join(layout::sealed_rel(id, true))
    }

    /// `data/update-cache/s-t0M-N`.
    pub fn update_cache_dir(&self, id: SectorId) -> PathBuf {
        self.data_dir().join(layout::cache_rel(id, true))
    }

    /// `data/update-cache/s-t0M-N/sc-02-data-tree-d.dat` (a symlink to the prepared tree-d).
    pub fn update_cache_tree_d(&self, id: SectorId) -> PathBuf {
        self.update_cache_dir(id).join(layout::TREE_D_FILE)
    }

    /// The sector record, if there is one. A record that does not decode is an error naming
    /// the store and the key.
    pub fn load_sector(&self) -> Result<Option<Sector>> {
        let raw = self.db.get(SECTOR_KEY).with_context(|| {
            format!(
                "sealing store {}: reading {SECTOR_KEY}",
                self.location.display()
            )
        })?;
        raw.map(|bytes| {
            serde_json::from_slice::<Sector>(&bytes).with_context(|| {
                format!(
                    "sealing store {}: corrupt sector record at key {SECTOR_KEY}",
                    self.location.display()
                )
            })
        })
        .transpose()
    }

    /// Writes the sector record, synced.
    pub fn save_sector(&self, sector: &Sector) -> Result<()> {
        let value = serde_json::to_vec(sector).with_context(|| {
            format!(
                "sealing store {}: encoding the sector record",
                self.location.display()
            )
        })?;
        self.db
            .put_opt(SECTOR_KEY, value, &synced())
            .with_context(|| {
                format!(
                    "sealing store {}: writing {SECTOR_KEY}",
                    self.location.display()
                )
            })
    }

    /// Deletes the sector record, synced.
    pub fn delete_sector(&self) -> Result<()> {
        self.db.delete_opt(SECTOR_KEY, &synced()).with_context(|| {
            format!(
                "sealing store {}: deleting {SECTOR_KEY}",
                self.location.display()
            )
        })
    }

    /// Wipes the sector: empties `data/` without following symlinks (a symlink is removed as a
    /// link; what it points to is untouched), leaves `data/` in place and empty, then deletes
    /// the record. damocles deletes and recreates `data/`; emptying it in place ends the same.
    pub fn finalize(&self) -> Result<()> {
        let data = self.data_dir();
        let loc = self.location.display();
        match fs::symlink_metadata(&data) {
            Ok(md) if md.file_type().is_symlink() => bail!(
                "finalizing sealing store {loc}: {} is a symlink; refusing to wipe it",
                data.display()
            ),
            Ok(md) if !md.is_dir() => bail!(
                "finalizing sealing store {loc}: {} is not a directory",
                data.display()
            ),
            Ok(_) => clear_dir_no_follow(&data)
                .with_context(|| format!("finalizing sealing store {loc}"))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("finalizing sealing store {loc}: {}", data.display()))
            }
        }
        fs::create_dir_all(&data).with_context(|| {
            format!(
                "finalizing sealing store {loc}: creating {}",
                data.display()
            )
        })?;
        self.delete_sector()
    }
}

/// Removes everything inside `dir` (not `dir` itself), never following symlinks.
///
/// Each entry's type comes from the directory entry itself (`lstat`), so a symlink, even one
/// to a directory, is removed with `remove_file`, which unlinks the link. A real directory goes
/// through `std::fs::remove_dir_all`, which is documented not to follow symlinks ("does not
/// follow symbolic links and it will simply remove the symbolic link itself") and, since Rust
/// 1.58.1 (CVE-2022-21658), does so without racing a directory swapped for a symlink.
pub fn clear_dir_no_follow(dir: &Path) -> Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .with_context(|| format!("reading the type of {}", path.display()))?;
        let removed = if kind.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::symlink;

    use damocles_manager_api::types::{AllocatedSector, SealProofType};
    use vc_processors::builtin::tasks::{PieceInfo, UnpaddedBytesAmount};

    use super::super::state::{Event, State};
    use crate::config::Plan;

    fn sid() -> SectorId {
        SectorId {
            miner: 1000,
            number: 5,
        }
    }

    fn sector() -> Sector {
        let mut s = Sector::new(Plan::Sealer.as_str());
        s.apply(
            Event::Allocate(AllocatedSector {
                id: sid(),
                proof_type: SealProofType(5),
            }),
            State::Allocated,
        )
        .expect("allocate");
        s.apply(Event::AcquireDealsV2(None), State::DealsAcquired)
            .expect("deals");
        s.apply(
            Event::AddPiece(vec![PieceInfo {
                commitment: [1; 32],
                size: UnpaddedBytesAmount(2032),
            }]),
            State::PieceAdded,
        )
        .expect("pieces");
        s.retry = 3;
        s
    }

    fn json(s: &Sector) -> serde_json::Value {
        serde_json::to_value(s).expect("json")
    }

    fn err_text<T: std::fmt::Debug>(r: Result<T>) -> String {
        format!("{:#}", r.expect_err("must fail"))
    }

    #[test]
    fn init_creates_the_skeleton_and_the_record_survives_reopening() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let loc = tmp.path().join("a/b/store");
        let s = sector();
        {
            let store = SealingStore::init(&loc, true).expect("init with parents");
            assert!(loc.join(".holder").is_file());
            assert!(loc.join("data").is_dir());
            assert!(loc.join("meta").is_dir());
            assert!(store.load_sector().expect("load").is_none());
            store.save_sector(&s).expect("save");
            assert!(
                SealingStore::open(&loc).is_err(),
                "a second open of a live store fails"
            );
        }
        let store = SealingStore::open(&loc).expect("reopen");
        let back = store.load_sector().expect("load").expect("a record");
        assert_eq!(json(&back), json(&s));
        assert_eq!(back.state, State::PieceAdded);
        assert_eq!(back.retry, 3);
        store.delete_sector().expect("delete");
        assert!(store.load_sector().expect("load").is_none());
    }

    #[test]
    fn init_without_parents_needs_the_parent_and_init_twice_fails() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let nested = tmp.path().join("missing/store");
        let text = err_text(SealingStore::init(&nested, false));
        assert!(text.contains(&nested.display().to_string()), "{text}");
        assert!(!nested.exists());

        let loc = tmp.path().join("store");
        drop(SealingStore::init(&loc, false).expect("init without parents"));
        for parents in [false, true] {
            let text = err_text(SealingStore::init(&loc, parents));
            assert!(text.contains(".holder"), "{text}");
            assert!(text.contains("already initialised"), "{text}");
        }
        // The failed inits left the store usable.
        SealingStore::open(&loc).expect("open");
    }

    #[test]
    fn open_refuses_a_symlinked_or_missing_data_dir_and_a_missing_holder() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let loc = tmp.path().join("store");
        drop(SealingStore::init(&loc, true).expect("init"));

        let elsewhere = tmp.path().join("elsewhere");
        fs::create_dir(&elsewhere).expect("mkdir");
        fs::remove_dir(loc.join("data")).expect("rmdir data");
        let text = err_text(SealingStore::open(&loc));
        assert!(text.contains("data directory"), "{text}");

        symlink(&elsewhere, loc.join("data")).expect("symlink data");
        let text = err_text(SealingStore::open(&loc));
        assert!(text.contains("is a symlink"), "{text}");
        assert!(
            text.contains(&loc.join("data").display().to_string()),
            "{text}"
        );

        fs::remove_file(loc.join("data")).expect("unlink data");
        fs::write(loc.join("data"), b"").expect("data as a file");
        let text = err_text(SealingStore::open(&loc));
        assert!(text.contains("is not a directory"), "{text}");

        fs::remove_file(loc.join("data")).expect("rm data file");
        fs::create_dir(loc.join("data")).expect("mkdir data");
        fs::remove_file(loc.join(".holder")).expect("rm holder");
        let text = err_text(SealingStore::open(&loc));
        assert!(text.contains(".holder"), "{text}");
        assert!(text.contains("sealing-init"), "{text}");
    }

    #[test]
    fn a_corrupt_record_is_an_error_naming_the_key() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = SealingStore::init(tmp.path(), false).expect("init existing dir");
        store
            .db
            .put(SECTOR_KEY, b"{\"version\": 1, \"state\": ")
            .expect("raw put");
        let text = err_text(store.load_sector());
        assert!(
            text.contains("corrupt sector record at key meta/info"),
            "{text}"
        );
        assert!(text.contains(&tmp.path().display().to_string()), "{text}");

        store
            .db
            .put(SECTOR_KEY, br#"{"version": 1, "state": "NoSuchState"}"#)
            .expect("raw put");
        let text = err_text(store.load_sector());
        assert!(text.contains("meta/info"), "{text}");
        assert!(text.contains("NoSuchState"), "{text}");

        // A damocles record with an integer state loads.
        store
            .db
            .put(
                SECTOR_KEY,
                br#"{"version": 1, "plan": null, "state": 13, "prev_state": 12}"#,
            )
            .expect("raw put");
        let s = store.load_sector().expect("load").expect("record");
        assert_eq!(s.state, State::SeedAssigned);
        assert_eq!(s.prev_state, Some(State::PersistanceSubmitted));
        assert_eq!(s.plan(), "sealer");
    }

    #[test]
    fn finalize_wipes_data_without_following_symlinks_and_deletes_the_record() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let loc = tmp.path().join("store");
        let store = SealingStore::init(&loc, true).expect("init");
        store.save_sector(&sector()).expect("save");

        // A persist store outside the sealing store.
        let persist = tmp.path().join("persist");
        let persist_cache = persist.join("cache").join(sid().to_string());
        fs::create_dir_all(&persist_cache).expect("mkdir persist cache");
        fs::write(persist_cache.join("p_aux"), b"paux").expect("p_aux");
        let persist_sealed = persist.join("sealed").join(sid().to_string());
        fs::create_dir_all(persist.join("sealed")).expect("mkdir persist sealed");
        fs::write(&persist_sealed, b"sealed").expect("sealed");

        // Real files and directories.
        fs::create_dir_all(store.prepared_dir(sid())).expect("prepared");
        fs::write(store.prepared_tree_d(sid()), b"tree").expect("tree-d");
        fs::create_dir_all(store.staged_file(sid()).parent().expect("parent")).expect("mkdir");
        fs::write(store.staged_file(sid()), b"staged").expect("staged");
        fs::create_dir_all(store.update_cache_dir(sid())).expect("update cache");
        // A symlink to a directory inside a real directory (snapup's cache files link into
        // the persist store), and one directly at a sector path.
        symlink(&persist_cache, store.update_cache_dir(sid()).join("linked")).expect("link");
        fs::create_dir_all(store.data_dir().join("cache")).expect("mkdir cache");
        symlink(&persist_cache, store.cache_dir(sid())).expect("link cache dir");
        fs::create_dir_all(store.data_dir().join("sealed")).expect("mkdir sealed");
        symlink(&persist_sealed, store.sealed_file(sid())).expect("link sealed");
        // A symlink to a directory directly inside data/.
        symlink(&persist, store.data_dir().join("top-link")).expect("top link");
        // A dangling symlink.
        symlink(tmp.path().join("gone"), store.data_dir().join("dangling")).expect("dangling");

        store.finalize().expect("finalize");

        let data = store.data_dir();
        assert!(data.is_dir());
        assert_eq!(
            fs::read_dir(&data).expect("read data").count(),
            0,
            "data/ is empty"
        );
        assert!(
            store.load_sector().expect("load").is_none(),
            "record deleted"
        );
        assert_eq!(
            fs::read(persist_cache.join("p_aux")).expect("p_aux kept"),
            b"paux"
        );
        assert_eq!(fs::read(&persist_sealed).expect("sealed kept"), b"sealed");

        // Finalizing an empty store (no record, empty data/) is fine.
        store.finalize().expect("finalize again");
        assert!(data.is_dir());
    }

    #[test]
    fn path_helpers_follow_the_layout() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let loc = tmp.path().to_path_buf();
        let store = SealingStore::init(&loc, false).expect("init");
        let d = loc.join("data");
        let id = sid();
        assert_eq!(store.location(), loc.as_path());
        assert_eq!(store.meta_dir(), loc.join("meta"));
        assert_eq!(store.hot_config_file(), loc.join("config.toml"));
        assert_eq!(store.staged_file(id), d.join("unsealed/s-t01000-5"));
        assert_eq!(
            store.prepared_tree_d(id),
            d.join("prepared/s-t01000-5/sc-02-data-tree-d.dat")
        );
        assert_eq!(store.cache_dir(id), d.join("cache/s-t01000-5"));
        assert_eq!(
            store.cache_tree_d(id),
            d.join("cache/s-t01000-5/sc-02-data-tree-d.dat")
        );
        assert_eq!(
            store.pc2_running_marker(id),
            d.join("cache/s-t01000-5/.pc2_running")
        );
        assert_eq!(store.sealed_file(id), d.join("sealed/s-t01000-5"));
        assert_eq!(store.update_file(id), d.join("update/s-t01000-5"));
        assert_eq!(
            store.update_cache_dir(id),
            d.join("update-cache/s-t01000-5")
        );
        assert_eq!(
            store.update_cache_tree_d(id),
            d.join("update-cache/s-t01000-5/sc-02-data-tree-d.dat")
        );
        let cid = damocles_manager_api::json::data_commitment_cid(&[1; 32]);
        assert_eq!(
            store.unsealed_piece_file(&cid),
            d.join("unsealed").join(cid.as_str())
        );
    }
}
