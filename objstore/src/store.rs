//! The `ObjectStore` trait and the types it speaks.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// One store instance's configuration: the keys of damocles' `[[Common.PersistStores]]` (and of
/// the worker's `[[attached]]`, plus `PluginName` and `Meta`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// Instance name: the identifier used everywhere (sector index, worker `[[attached]]`).
    /// Empty means the path.
    #[serde(rename = "Name", alias = "name")]
    pub name: String,
    /// Backend location: a directory for file stores; informational for object stores.
    #[serde(rename = "Path", alias = "path", alias = "location")]
    pub path: String,
    /// Backend-specific settings (e.g. the bucket and endpoint of an S3 store).
    #[serde(rename = "Meta", alias = "meta")]
    pub meta: BTreeMap<String, String>,
    /// Only regular files are objects (file stores refuse symlinks).
    #[serde(rename = "Strict", alias = "strict")]
    pub strict: bool,
    /// Refuse puts and deletes.
    #[serde(rename = "ReadOnly", alias = "readonly", alias = "read_only")]
    pub read_only: bool,
    /// Relative weight when choosing among stores (default 1).
    #[serde(rename = "Weight", alias = "weight")]
    pub weight: u32,
    /// The plugin that implements this store; none means the builtin file store.
    #[serde(
        rename = "PluginName",
        alias = "plugin_name",
        alias = "Plugin",
        alias = "plugin"
    )]
    pub plugin_name: Option<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            name: String::new(),
            path: String::new(),
            meta: BTreeMap::new(),
            strict: false,
            read_only: false,
            weight: 1,
            plugin_name: None,
        }
    }
}

impl StoreConfig {
    /// A config for `name` at `path`, with the defaults.
    pub fn new(name: impl Into<String>, path: impl Into<String>) -> Self {
        StoreConfig {
            name: name.into(),
            path: path.into(),
            ..Default::default()
        }
    }

    /// The instance name: `name`, or `path` when the name is empty.
    pub fn instance(&self) -> &str {
        if self.name.is_empty() {
            &self.path
        } else {
            &self.name
        }
    }

    /// [`crate::Error::ReadOnly`] for `op` on `path` if the store is read-only.
    pub fn ensure_writable(&self, op: &'static str, path: &str) -> Result<()> {
        if self.read_only {
            return Err(crate::Error::ReadOnly {
                instance: self.instance().to_string(),
                op,
                path: path.to_string(),
            });
        }
        Ok(())
    }
}

/// Capacity and usage of a store, where the backend knows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// The effective config.
    pub config: StoreConfig,
    /// Backend kind and, for file stores, the file system type (`fs/ext4`, `s3`, …).
    pub kind: String,
    /// Total bytes.
    pub total: Option<u64>,
    /// Free bytes.
    pub free: Option<u64>,
    /// Used bytes.
    pub used: Option<u64>,
}

impl InstanceInfo {
    /// `used / total` in percent, when both are known.
    pub fn used_percent(&self) -> Option<f64> {
        match (self.used, self.total) {
            (Some(u), Some(t)) if t > 0 => Some(u as f64 * 100.0 / t as f64),
            _ => None,
        }
    }
}

/// What `stat` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectStat {
    /// Size in bytes.
    pub size: u64,
}

/// One entry of `list`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// Path relative to the store root.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// A byte range: `len` bytes from `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ByteRange {
    /// First byte.
    pub offset: u64,
    /// Number of bytes.
    pub len: u64,
}

impl ByteRange {
    /// `len` bytes from `offset`.
    pub fn new(offset: u64, len: u64) -> Self {
        ByteRange { offset, len }
    }

    /// The part of this range inside an object of `size` bytes, as `start..end`.
    pub fn clamp(&self, size: u64) -> std::ops::Range<u64> {
        let start = self.offset.min(size);
        let end = self.offset.saturating_add(self.len).min(size);
        start..end
    }
}

/// A streaming reader over one object.
pub type ObjectReader = Box<dyn Read + Send>;

/// A streaming write of one object: chunks go in with `write`, and the object appears, whole,
/// at `commit`. Dropping a writer without committing discards what was written.
pub trait ObjectWriter: Send {
    /// Appends bytes.
    fn write(&mut self, data: &[u8]) -> Result<()>;

    /// Makes the object visible; returns its size.
    fn commit(self: Box<Self>) -> Result<u64>;

    /// Discards the object (the same as dropping the writer).
    fn abort(self: Box<Self>) {}
}

/// Size of the chunks [`ObjectStore::put`] reads from its source.
pub const PUT_CHUNK: usize = 1 << 20;

/// Persistent storage of sector files, by store-relative path (`sealed/s-t01000-1`).
///
/// Paths follow [`crate::path`]; an invalid one fails with [`crate::Error::InvalidPath`]
/// before anything else happens. A missing object is [`crate::Error::NotFound`] for every
/// operation, a directory is not an object, and a read-only store refuses `put` and `delete`
/// with [`crate::Error::ReadOnly`].
///
/// Ranges are clamped to the object: the part past the end is left out, and a range that
/// starts at or after the end reads nothing.
///
/// All methods block the calling thread and may be called from many threads at once. Async
/// code uses `AsyncStore` (feature `tokio`), which runs them on the blocking pool.
pub trait ObjectStore: Send + Sync {
    /// The effective configuration.
    fn config(&self) -> &StoreConfig;

    /// The instance name.
    fn instance(&self) -> &str {
        self.config().instance()
    }

    /// Capacity and usage, where known.
    fn info(&self) -> Result<InstanceInfo>;

    /// The size of an object.
    fn stat(&self, path: &str) -> Result<ObjectStat>;

    /// The whole object as a stream.
    fn get(&self, path: &str) -> Result<ObjectReader>;

    /// One byte range of an object.
    fn get_range(&self, path: &str, range: ByteRange) -> Result<Vec<u8>>;

    /// Many byte ranges of one object, in one call (PoSt challenge reads); the result has one
    /// buffer per range, in order.
    fn get_ranges(&self, path: &str, ranges: &[ByteRange]) -> Result<Vec<Vec<u8>>> {
        ranges.iter().map(|r| self.get_range(path, *r)).collect()
    }

    /// Starts writing an object, replacing any object at that path once committed.
    fn writer(&self, path: &str) -> Result<Box<dyn ObjectWriter>>;

    /// Writes an object from a stream of any size (in bounded memory), replacing any object at
    /// that path. Returns the number of bytes written. The object appears only once complete;
    /// if the source fails, nothing is written.
    fn put(&self, path: &str, data: &mut dyn Read) -> Result<u64> {
        let mut writer = self.writer(path)?;
        let mut buf = vec![0u8; PUT_CHUNK];
        loop {
            let n = match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    writer.abort();
                    return Err(crate::Error::backend_msg(
                        self.instance(),
                        "put",
                        path,
                        format!("reading the data to store failed: {e}"),
                    ));
                }
            };
            writer.write(&buf[..n])?;
        }
        writer.commit()
    }

    /// Deletes an object.
    fn delete(&self, path: &str) -> Result<()>;

    /// Every object below `prefix`, which works like a directory (empty for all), sorted by
    /// path. A prefix with nothing below it gives an empty list.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;

    /// The local file behind an object, for backends whose objects are plain files.
    fn local_path(&self, path: &str) -> Result<Option<PathBuf>>;

    /// A human-readable absolute location of an object (`/mnt/ps1/sealed/…`,
    /// `s3://bucket/prefix/sealed/…`).
    fn full_path(&self, path: &str) -> String;
}
