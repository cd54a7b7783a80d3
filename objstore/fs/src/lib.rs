//! objstore-fs: the file-system backend of objstore.
//!
//! A store is a root directory (`Path`); an object is a file below it. Usable as a plain Rust
//! library ([`FsStore`]) and as the plugin `fs` (`libobjstore_fs.so`).
//!
//! - Paths are validated ([`objstore::path`]); with `Strict`, symlinks anywhere in an object's
//!   path are refused, so only regular files inside the root are objects.
//! - `ReadOnly` refuses puts and deletes.
//! - Puts go to a temporary file beside the object, are fsynced, renamed into place and the
//!   directory fsynced: an object is never seen half-written. Temporary files are hidden from
//!   `list`.
//! - Ranges are read with positioned reads (`pread`), many on one open file.
//! - `local_path` is the file itself, so provers can read it directly.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use objstore::abi::Plugin;
use objstore::{
    path as objpath, ByteRange, Error, InstanceInfo, ObjectMeta, ObjectReader, ObjectStat,
    ObjectStore, ObjectWriter, Result, StoreConfig,
};

/// A file-system object store.
#[derive(Debug)]
pub struct FsStore {
    config: StoreConfig,
    root: PathBuf,
}

const TEMP_MARK: &str = ".objstore-tmp-";

impl FsStore {
    /// Opens the store rooted at `config.path`, which must be an existing directory. An empty
    /// name becomes the absolute root path.
    pub fn open(mut config: StoreConfig) -> Result<Self> {
        let instance = config.instance().to_string();
        let invalid = |reason: String| Error::InvalidConfig {
            instance: instance.clone(),
            reason,
        };
        if config.path.is_empty() {
            return Err(invalid(
                "Path is empty; a file store needs a root directory".to_string(),
            ));
        }
        let root = fs::canonicalize(&config.path)
            .map_err(|e| invalid(format!("root directory {}: {e}", config.path)))?;
        if !root.is_dir() {
            return Err(invalid(format!(
                "root {} is not a directory",
                root.display()
            )));
        }
        if config.name.is_empty() {
            config.name = root.to_string_lossy().into_owned();
        }
        Ok(FsStore { config, root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn not_found(&self, path: &str) -> Error {
        Error::NotFound {
            instance: self.instance().to_string(),
            path: path.to_string(),
        }
    }

    /// A missing file, or a path through a file (`a/b/c` where `a/b` is a file), is NotFound.
    fn io_error(&self, op: &'static str, path: &str, e: io::Error) -> Error {
        match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => self.not_found(path),
            _ => Error::backend(self.instance(), op, path, e),
        }
    }

    /// Creates `dir` and its missing parents below the root, fsyncing each parent so the new
    /// directories survive a crash along with the object put in them.
    fn create_dirs(&self, dir: &Path, path: &str) -> Result<()> {
        let rel = dir.strip_prefix(&self.root).unwrap_or(Path::new(""));
        let mut at = self.root.clone();
        for component in rel.components() {
            let parent = at.clone();
            at.push(component);
            match fs::create_dir(&at) {
                Ok(()) => File::open(&parent)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| Error::backend(self.instance(), "put", path, e))?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && at.is_dir() => {}
                Err(e) => return Err(Error::backend(self.instance(), "put", path, e)),
            }
        }
        Ok(())
    }

    /// The file of an object, after checking the path (and, when strict, that no component is
    /// a symlink).
    fn resolve(&self, path: &str) -> Result<PathBuf> {
        objpath::validate(path)?;
        let full = self.root.join(path);
        if self.config.strict {
            let mut at = self.root.clone();
            for component in path.split('/') {
                at.push(component);
                match fs::symlink_metadata(&at) {
                    Ok(m) if m.file_type().is_symlink() => {
                        return Err(Error::NotRegularFile {
                            instance: self.instance().to_string(),
                            path: path.to_string(),
                        })
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        Ok(full)
    }

    /// Opens an existing object for reading: a regular file (or, unless strict, a symlink to
    /// one).
    fn open_object(&self, op: &'static str, path: &str) -> Result<(File, u64)> {
        let full = self.resolve(path)?;
        let meta = fs::metadata(&full).map_err(|e| self.io_error(op, path, e))?;
        if meta.is_dir() {
            return Err(self.not_found(path));
        }
        if !meta.is_file() {
            return Err(Error::NotRegularFile {
                instance: self.instance().to_string(),
                path: path.to_string(),
            });
        }
        let file = File::open(&full).map_err(|e| self.io_error(op, path, e))?;
        Ok((file, meta.len()))
    }

    fn read_range(&self, file: &File, size: u64, path: &str, range: ByteRange) -> Result<Vec<u8>> {
        let r = range.clamp(size);
        let len = usize::try_from(r.end - r.start).map_err(|_| {
            Error::backend_msg(self.instance(), "get_range", path, "range too large")
        })?;
        let mut buf = vec![0u8; len];
        let mut done = 0usize;
        while done < len {
            match file.read_at(&mut buf[done..], r.start + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::backend(self.instance(), "get_range", path, e)),
            }
        }
        buf.truncate(done);
        Ok(buf)
    }

    fn is_temp(name: &str) -> bool {
        name.starts_with('.') && name.contains(TEMP_MARK) && name.ends_with(".tmp")
    }

    fn walk(&self, dir: &Path, rel: &str, out: &mut Vec<ObjectMeta>) -> Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::backend(self.instance(), "list", rel, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::backend(self.instance(), "list", rel, e))?;
            let Ok(name) = entry.file_name().into_string() else {
                tracing::warn!(dir = %dir.display(), "skipping a file name that is not UTF-8");
                continue;
            };
            if Self::is_temp(&name) {
                continue;
            }
            let child_rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let file_type = entry
                .file_type()
                .map_err(|e| Error::backend(self.instance(), "list", &child_rel, e))?;
            if file_type.is_dir() {
                self.walk(&entry.path(), &child_rel, out)?;
            } else if file_type.is_file() {
                let meta = entry
                    .metadata()
                    .map_err(|e| Error::backend(self.instance(), "list", &child_rel, e))?;
                out.push(ObjectMeta {
                    path: child_rel,
                    size: meta.len(),
                });
            } else if file_type.is_symlink() && !self.config.strict {
                // A link to a file is an object; links to directories are not followed.
                if let Ok(meta) = fs::metadata(entry.path()) {
                    if meta.is_file() {
                        out.push(ObjectMeta {
                            path: child_rel,
                            size: meta.len(),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

/// The file-system type of a statfs magic number.
fn fs_type_name(magic: i64) -> String {
    match magic {
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x794C_7630 => "overlay".into(),
        0x6969 => "nfs".into(),
        0x6573_5546 => "fuse".into(),
        0x2FC1_2FC1 => "zfs".into(),
        0xFF53_4D42 => "cifs".into(),
        0x0000_9fa0 => "proc".into(),
        other => format!("{other:#x}"),
    }
}

/// Capacity of the file system holding `dir`: (kind, total, free, used).
fn disk_usage(dir: &Path) -> io::Result<(String, u64, u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    // SAFETY: statfs is plain data; zeroed is a valid initial value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a valid C string and `st` a valid output struct.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let block = st.f_bsize as u64;
    let total = st.f_blocks as u64 * block;
    let free = st.f_bavail as u64 * block;
    let used = (st.f_blocks as u64).saturating_sub(st.f_bfree as u64) * block;
    #[allow(clippy::unnecessary_cast)]
    Ok((fs_type_name(st.f_type as i64), total, free, used))
}

impl ObjectStore for FsStore {
    fn config(&self) -> &StoreConfig {
        &self.config
    }

    fn info(&self) -> Result<InstanceInfo> {
        let (fs_type, total, free, used) =
            disk_usage(&self.root).map_err(|e| Error::backend(self.instance(), "info", "", e))?;
        Ok(InstanceInfo {
            config: self.config.clone(),
            kind: format!("fs/{fs_type}"),
            total: Some(total),
            free: Some(free),
            used: Some(used),
        })
    }

    fn stat(&self, path: &str) -> Result<ObjectStat> {
        let (_, size) = self.open_object("stat", path)?;
        Ok(ObjectStat { size })
    }

    fn get(&self, path: &str) -> Result<ObjectReader> {
        let (file, _) = self.open_object("get", path)?;
        Ok(Box::new(io::BufReader::with_capacity(1 << 20, file)))
    }

    fn get_range(&self, path: &str, range: ByteRange) -> Result<Vec<u8>> {
        let (file, size) = self.open_object("get_range", path)?;
        self.read_range(&file, size, path, range)
    }

    fn get_ranges(&self, path: &str, ranges: &[ByteRange]) -> Result<Vec<Vec<u8>>> {
        let (file, size) = self.open_object("get_ranges", path)?;
        ranges
            .iter()
            .map(|r| self.read_range(&file, size, path, *r))
            .collect()
    }

    fn writer(&self, path: &str) -> Result<Box<dyn ObjectWriter>> {
        let dest = self.resolve(path)?;
        self.config.ensure_writable("put", path)?;
        if fs::metadata(&dest).map(|m| m.is_dir()).unwrap_or(false) {
            return Err(Error::backend_msg(
                self.instance(),
                "put",
                path,
                "a directory is in the way of the object",
            ));
        }
        let dir = dest
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.root.clone());
        self.create_dirs(&dir, path)?;
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(
            ".{name}{TEMP_MARK}{}-{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file =
            File::create(&tmp).map_err(|e| Error::backend(self.instance(), "put", path, e))?;
        // Held until the writer is done: a sweep sees by the lock that the writer is alive.
        file.try_lock().map_err(|e| {
            let e = match e {
                fs::TryLockError::Error(e) => e,
                fs::TryLockError::WouldBlock => io::Error::other("locked by another writer"),
            };
            Error::backend(self.instance(), "put", path, e)
        })?;
        Ok(Box::new(FsWriter {
            file: Some(io::BufWriter::with_capacity(1 << 20, file)),
            tmp,
            dest,
            dir,
            written: 0,
            instance: self.instance().to_string(),
            path: path.to_string(),
        }))
    }

    fn delete(&self, path: &str) -> Result<()> {
        let full = self.resolve(path)?;
        self.config.ensure_writable("delete", path)?;
        match fs::symlink_metadata(&full) {
            Ok(m) if m.is_dir() => return Err(self.not_found(path)),
            Ok(_) => {}
            Err(e) => return Err(self.io_error("delete", path, e)),
        }
        fs::remove_file(&full).map_err(|e| self.io_error("delete", path, e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        objpath::validate_prefix(prefix)?;
        let mut out = Vec::new();
        let dir = if prefix.is_empty() {
            self.root.clone()
        } else {
            match self.resolve(prefix) {
                Ok(dir) => dir,
                // A strict store does not look through symlinks: nothing is below one.
                Err(Error::NotRegularFile { .. }) => return Ok(out),
                Err(e) => return Err(e),
            }
        };
        if dir.is_dir() {
            self.walk(&dir, prefix, &mut out)?;
        }
        out.sort();
        Ok(out)
    }

    fn local_path(&self, path: &str) -> Result<Option<PathBuf>> {
        // The object must exist (and be a regular file, or a link to one unless strict).
        self.open_object("local_path", path)?;
        Ok(Some(self.resolve(path)?))
    }

    fn full_path(&self, path: &str) -> String {
        self.root.join(path).to_string_lossy().into_owned()
    }
}

/// A put in progress: a temporary file renamed over the object at commit.
struct FsWriter {
    file: Option<io::BufWriter<File>>,
    tmp: PathBuf,
    dest: PathBuf,
    dir: PathBuf,
    written: u64,
    instance: String,
    path: String,
}

impl FsWriter {
    fn fail(&self, e: io::Error) -> Error {
        Error::backend(&self.instance, "put", &self.path, e)
    }
}

impl ObjectWriter for FsWriter {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        let result = match self.file.as_mut() {
            Some(f) => f.write_all(data),
            None => Err(io::Error::other("the writer is closed")),
        };
        result.map_err(|e| self.fail(e))?;
        self.written += data.len() as u64;
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<u64> {
        let Some(buffered) = self.file.take() else {
            return Err(self.fail(io::Error::other("the writer is closed")));
        };
        let file = buffered
            .into_inner()
            .map_err(|e| self.fail(e.into_error()))?;
        file.sync_all().map_err(|e| self.fail(e))?;
        drop(file);
        fs::rename(&self.tmp, &self.dest).map_err(|e| self.fail(e))?;
        // Renamed: nothing left to clean up.
        self.tmp = PathBuf::new();
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.fail(e))?;
        Ok(self.written)
    }
}

impl Drop for FsWriter {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            self.file.take();
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Plugin for FsStore {
    const NAME: &'static str = "fs";

    fn open(config: StoreConfig) -> Result<Self> {
        FsStore::open(config)
    }
}

#[cfg(feature = "plugin")]
objstore::export_plugin!(FsStore);
