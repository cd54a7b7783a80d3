//! Routes with one end in an objstore plugin store (our addition to the transfer task).
//!
//! A route end is an object when its `store_name` names an entry of `Transfer.stores` that
//! carries a `plugin` library; its `uri` is then an object path (`sealed/s-t01000-1`,
//! `cache/s-t01000-1`). The store is opened through the plugin with the entry's `meta`.
//!
//! - local file → object: the file is streamed into the object, which appears whole only at
//!   commit; then its size is read back and compared with the file's;
//! - local directory → objects: every file below it becomes `<uri>/<relative path>` (empty
//!   directories have no object form and are skipped);
//! - object → local file: streamed into a temporary file beside `dest`, fsynced and renamed;
//! - objects below a prefix → local directory: the same for each object.
//!
//! Links are never made to or from an object store (`opt.allow_link` is ignored there), and a
//! route between two object stores is refused. Plugin libraries stay loaded for the life of
//! the process: a plugin may own threads (the S3 plugin's runtime), which must not outlive
//! its code.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{bail, ensure, Context, Result};
use objstore::{ObjectStore, PluginLibrary, StoreConfig};

use super::super::super::fsutil::{
    create_dir_all_durable, create_locked, rename_into_place, temp_path_beside,
};
use super::super::super::tasks::{Transfer, TransferItem, TransferRoute, TransferStoreInfo};

/// Stores opened for one transfer task, by store name.
#[derive(Default)]
pub(super) struct OpenStores {
    stores: HashMap<String, Arc<dyn ObjectStore>>,
}

/// Loaded plugin libraries, by path; never unloaded.
fn library(path: &Path) -> Result<Arc<PluginLibrary>> {
    static LIBRARIES: OnceLock<Mutex<HashMap<PathBuf, Arc<PluginLibrary>>>> = OnceLock::new();
    let mut libs = LIBRARIES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(lib) = libs.get(path) {
        return Ok(lib.clone());
    }
    let lib = PluginLibrary::load(path)
        .with_context(|| format!("loading the objstore plugin {}", path.display()))?;
    libs.insert(path.to_path_buf(), lib.clone());
    Ok(lib)
}

/// Opens the store `info` describes through its plugin; `None` for a file store.
///
/// The library is loaded once per process and never unloaded. The worker also calls this at
/// start-up, so a bad plugin or `meta` is reported before any sector depends on it.
pub fn open_plugin_store(info: &TransferStoreInfo) -> Result<Option<Arc<dyn ObjectStore>>> {
    let Some(plugin) = &info.plugin else {
        return Ok(None);
    };
    let lib = library(&plugin.library)?;
    let mut config = StoreConfig::new(info.name.clone(), plugin.path.clone());
    config.plugin_name = Some(lib.name().to_string());
    config.meta = info.meta.clone().unwrap_or_default().into_iter().collect();
    let store = lib.open(config).with_context(|| {
        format!(
            "opening store {:?} with {}",
            info.name,
            plugin.library.display()
        )
    })?;
    Ok(Some(Arc::new(store)))
}

impl OpenStores {
    /// The object store a route end names, or `None` for a local path.
    pub(super) fn store_of(
        &mut self,
        task: &Transfer,
        item: &TransferItem,
    ) -> Result<Option<Arc<dyn ObjectStore>>> {
        let Some(name) = &item.store_name else {
            return Ok(None);
        };
        // damocles' builtin ignores store names: a store without an entry, or without a
        // plugin, is a local path.
        let Some(info) = task.stores.get(name) else {
            return Ok(None);
        };
        if info.plugin.is_none() {
            return Ok(None);
        }
        if let Some(store) = self.stores.get(name) {
            return Ok(Some(store.clone()));
        }
        let store = open_plugin_store(info)?;
        if let Some(store) = &store {
            self.stores.insert(name.clone(), store.clone());
        }
        Ok(store)
    }
}

/// The object path a route end names.
fn object_path<'a>(store: &dyn ObjectStore, item: &'a TransferItem) -> Result<&'a str> {
    let path = item.uri.to_str().with_context(|| {
        format!(
            "{} is not UTF-8, so not an object path of store {:?}",
            item.uri.display(),
            store.instance()
        )
    })?;
    objstore::path::validate(path).with_context(|| {
        format!(
            "{path:?} is not an object path of store {:?}",
            store.instance()
        )
    })?;
    Ok(path)
}

/// Carries out a route with at least one end in an object store.
pub(super) fn transfer_route(
    route: &TransferRoute,
    src_store: Option<Arc<dyn ObjectStore>>,
    dest_store: Option<Arc<dyn ObjectStore>>,
) -> Result<()> {
    match (src_store, dest_store) {
        (Some(_), Some(_)) => bail!("routes between two object stores are not supported"),
        (None, Some(dest)) => {
            let key = object_path(dest.as_ref(), &route.dest)?;
            upload(&route.src.uri, dest.as_ref(), key)
        }
        (Some(src), None) => {
            let key = object_path(src.as_ref(), &route.src)?;
            download(src.as_ref(), key, &route.dest.uri)
        }
        (None, None) => bail!("neither end of the route is in an object store"),
    }
}

fn upload(src: &Path, store: &dyn ObjectStore, key: &str) -> Result<()> {
    ensure!(src.is_absolute(), "src path is relative: {}", src.display());
    let meta = match fs::metadata(src) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!("src path not exists: {}", src.display())
        }
        Err(e) => return Err(e).with_context(|| format!("stat {}", src.display())),
    };
    if meta.is_dir() {
        let mut files = Vec::new();
        collect_files(src, "", &mut files, &mut Vec::new())?;
        for (relative, file) in files {
            upload_file(&file, store, &format!("{key}/{relative}"))?;
        }
        Ok(())
    } else {
        upload_file(src, store, key)
    }
}

fn upload_file(src: &Path, store: &dyn ObjectStore, key: &str) -> Result<()> {
    let mut file = File::open(src).with_context(|| format!("open {}", src.display()))?;
    let expected = file
        .metadata()
        .with_context(|| format!("stat {}", src.display()))?
        .len();
    let written = store
        .put(key, &mut file)
        .with_context(|| format!("upload {} to {}", src.display(), store.full_path(key)))?;
    let stored = store
        .stat(key)
        .with_context(|| format!("check {}", store.full_path(key)))?
        .size;
    ensure!(
        written == expected && stored == expected,
        "{} holds {stored} bytes after writing {written}, but {} has {expected}",
        store.full_path(key),
        src.display()
    );
    Ok(())
}

/// Regular files below `dir` (symlinks followed), with their `/`-joined relative paths.
fn collect_files(
    dir: &Path,
    prefix: &str,
    out: &mut Vec<(String, PathBuf)>,
    ancestors: &mut Vec<(u64, u64)>,
) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(dir).with_context(|| format!("stat {}", dir.display()))?;
    let id = (meta.dev(), meta.ino());
    ensure!(
        !ancestors.contains(&id),
        "symlink loop: {} leads back to a directory being copied",
        dir.display()
    );
    ancestors.push(id);
    let mut entries = fs::read_dir(dir)
        .with_context(|| format!("read {}", dir.display()))?
        .collect::<io::Result<Vec<_>>>()
        .with_context(|| format!("read {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        let name = name
            .to_str()
            .with_context(|| format!("{} is not UTF-8", path.display()))?;
        let relative = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        let meta = fs::metadata(&path).with_context(|| format!("stat {}", path.display()))?;
        if meta.is_dir() {
            collect_files(&path, &relative, out, ancestors)?;
        } else {
            out.push((relative, path));
        }
    }
    ancestors.pop();
    Ok(())
}

fn download(store: &dyn ObjectStore, key: &str, dest: &Path) -> Result<()> {
    ensure!(
        dest.is_absolute(),
        "dest path is relative: {}",
        dest.display()
    );
    match store.stat(key) {
        Ok(_) => download_file(store, key, dest),
        Err(objstore::Error::NotFound { .. }) => {
            let objects = store
                .list(key)
                .with_context(|| format!("list {}", store.full_path(key)))?;
            ensure!(
                !objects.is_empty(),
                "src path not exists: {}",
                store.full_path(key)
            );
            for object in objects {
                let relative = object
                    .path
                    .strip_prefix(key)
                    .map(|r| r.trim_start_matches('/'))
                    .with_context(|| format!("{} is not below {key}", object.path))?;
                download_file(store, &object.path, &dest.join(relative))?;
            }
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("stat {}", store.full_path(key))),
    }
}

fn download_file(store: &dyn ObjectStore, key: &str, dest: &Path) -> Result<()> {
    if let Some(parent) = dest.parent() {
        create_dir_all_durable(parent)?;
    }
    let tmp = temp_path_beside(dest);
    let copied = (|| -> Result<()> {
        let mut reader = store
            .get(key)
            .with_context(|| format!("read {}", store.full_path(key)))?;
        let expected = store
            .stat(key)
            .with_context(|| format!("stat {}", store.full_path(key)))?
            .size;
        let mut file = io::BufWriter::with_capacity(1 << 20, create_locked(&tmp)?);
        let copied = io::copy(&mut reader, &mut file)
            .with_context(|| format!("copy {} to {}", store.full_path(key), tmp.display()))?;
        ensure!(
            copied == expected,
            "{} has {expected} bytes but {copied} were read",
            store.full_path(key)
        );
        let mut file = file
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("write {}", tmp.display()))?;
        file.flush()
            .and_then(|()| file.sync_all())
            .with_context(|| format!("sync {}", tmp.display()))
    })();
    if let Err(e) = copied {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    rename_into_place(&tmp, dest)
}
