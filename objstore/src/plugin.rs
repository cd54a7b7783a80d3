//! The host side of plugins: load a shared library, check its ABI, open stores through it.
//!
//! [`PluginLibrary::load`] loads by path and [`PluginLibrary::load_by_name`] finds
//! `libobjstore_<name>.so` (or `lib<name>.so`, `<name>.so`) in a plugin directory. The entry
//! symbol is called once; its table's `abi_version` is read before anything else. A store
//! opened through the library ([`PluginStore`]) is an ordinary [`ObjectStore`]: paths are
//! validated and read-only is enforced on this side too, so every plugin behaves alike.

use std::ffi::c_void;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::abi::{
    self, ObjstoreConfig, ObjstoreError, ObjstoreInfo, ObjstoreKv, ObjstorePluginV1, ObjstoreRange,
    ObjstoreStr,
};
use crate::error::{Error, Result};
use crate::path;
use crate::store::{
    ByteRange, InstanceInfo, ObjectMeta, ObjectReader, ObjectStat, ObjectStore, ObjectWriter,
    StoreConfig,
};

/// Why a plugin library could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No file at that path.
    #[error("objstore plugin {path}: no such file")]
    NotFound {
        /// The path tried.
        path: PathBuf,
    },
    /// No plugin of that name in the directory.
    #[error("objstore plugin {name:?}: not found in {dir} (tried {tried})")]
    NoSuchPlugin {
        /// Plugin name.
        name: String,
        /// Plugin directory.
        dir: PathBuf,
        /// The file names tried, comma separated.
        tried: String,
    },
    /// The dynamic loader refused the file.
    #[error("objstore plugin {path}: cannot load: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The loader's error.
        #[source]
        source: libloading::Error,
    },
    /// The file does not export the entry symbol.
    #[error("objstore plugin {path}: missing symbol objstore_plugin_entry: {source}")]
    MissingSymbol {
        /// The file.
        path: PathBuf,
        /// The loader's error.
        #[source]
        source: libloading::Error,
    },
    /// The entry symbol returned no table.
    #[error("objstore plugin {path}: objstore_plugin_entry returned a null table")]
    NullTable {
        /// The file.
        path: PathBuf,
    },
    /// The plugin speaks another ABI version.
    #[error(
        "objstore plugin {path}: ABI version {found}, but this host speaks version {expected}"
    )]
    AbiMismatch {
        /// The file.
        path: PathBuf,
        /// The plugin's version.
        found: u32,
        /// Ours.
        expected: u32,
    },
    /// The table is malformed.
    #[error("objstore plugin {path}: bad function table: {reason}")]
    BadTable {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The function table of a loaded plugin, every function checked non-null.
#[derive(Clone, Copy)]
struct HostTable {
    open: abi::OpenFn,
    close: abi::ReleaseFn,
    info: abi::InfoFn,
    stat: abi::StatFn,
    read_at: abi::ReadAtFn,
    read_ranges: abi::ReadRangesFn,
    reader_open: abi::HandleOpenFn,
    reader_read: abi::ReaderReadFn,
    reader_close: abi::ReleaseFn,
    writer_open: abi::HandleOpenFn,
    writer_write: abi::WriterWriteFn,
    writer_commit: abi::WriterCommitFn,
    writer_abort: abi::ReleaseFn,
    remove: abi::RemoveFn,
    list: abi::ListCallFn,
    local_path: abi::StrCallFn,
    full_path: abi::StrCallFn,
}

impl HostTable {
    /// The table with every function present, or the names of those left NULL.
    fn check(t: &ObjstorePluginV1) -> Result<Self, String> {
        macro_rules! build {
            ($($field:ident),*) => {{
                let missing: Vec<&str> = [$((stringify!($field), t.$field.is_none())),*]
                    .into_iter()
                    .filter(|(_, none)| *none)
                    .map(|(name, _)| name)
                    .collect();
                match ($(t.$field,)*) {
                    ($(Some($field),)*) => Ok(HostTable { $($field),* }),
                    _ => Err(format!("function {} is NULL", missing.join(", "))),
                }
            }};
        }
        build!(
            open,
            close,
            info,
            stat,
            read_at,
            read_ranges,
            reader_open,
            reader_read,
            reader_close,
            writer_open,
            writer_write,
            writer_commit,
            writer_abort,
            remove,
            list,
            local_path,
            full_path
        )
    }
}

/// A loaded plugin library.
pub struct PluginLibrary {
    path: PathBuf,
    name: String,
    table: HostTable,
    // Dropped last: the table points into it. None for a plugin linked into this program.
    _lib: Option<libloading::Library>,
}

// SAFETY: the table is immutable and the ABI requires store functions to be thread-safe.
unsafe impl Send for PluginLibrary {}
// SAFETY: as above.
unsafe impl Sync for PluginLibrary {}

impl fmt::Debug for PluginLibrary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginLibrary")
            .field("path", &self.path)
            .field("name", &self.name)
            .finish()
    }
}

/// File names tried for plugin `name` in a directory.
pub fn plugin_file_names(name: &str) -> Vec<String> {
    let underscored = name.replace('-', "_");
    let mut names: Vec<String> = Vec::new();
    for candidate in [
        format!("libobjstore_{underscored}.so"),
        format!("lib{underscored}.so"),
        format!("{name}.so"),
        format!("lib{name}.so"),
    ] {
        if !names.contains(&candidate) {
            names.push(candidate);
        }
    }
    names
}

impl PluginLibrary {
    /// Loads the plugin at `path` and checks its ABI.
    pub fn load(path: &Path) -> Result<Arc<Self>, LoadError> {
        if !path.is_file() {
            return Err(LoadError::NotFound {
                path: path.to_path_buf(),
            });
        }
        // An absolute path, so the dynamic loader does not search its own directories instead.
        let path = &std::path::absolute(path).map_err(|_| LoadError::NotFound {
            path: path.to_path_buf(),
        })?;
        // SAFETY: loading a library runs its initialisers; plugins are trusted code chosen by
        // the operator's config.
        let lib = unsafe { libloading::Library::new(path) }.map_err(|source| LoadError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let table = {
            // SAFETY: the symbol's type is fixed by the ABI.
            let entry: libloading::Symbol<'_, unsafe extern "C" fn() -> *const ObjstorePluginV1> =
                unsafe { lib.get(abi::ENTRY_SYMBOL) }.map_err(|source| {
                    LoadError::MissingSymbol {
                        path: path.to_path_buf(),
                        source,
                    }
                })?;
            // SAFETY: calling the entry point is what the ABI prescribes.
            unsafe { entry() }
        };
        // SAFETY: the table comes from the library, which is kept alive with it.
        unsafe { Self::check_table(path, table, Some(lib)) }
    }

    /// A plugin linked into this program (its table is static), e.g. a Rust store exported
    /// with [`export_plugin!`](crate::export_plugin) and used without a shared library.
    pub fn from_static(table: &'static ObjstorePluginV1) -> Result<Arc<Self>, LoadError> {
        // SAFETY: a static table lives for the whole program.
        unsafe { Self::check_table(Path::new("<linked in>"), table, None) }
    }

    /// # Safety
    /// `table` must be null or point to a table that lives as long as `lib` (or forever).
    unsafe fn check_table(
        path: &Path,
        table: *const ObjstorePluginV1,
        lib: Option<libloading::Library>,
    ) -> Result<Arc<Self>, LoadError> {
        if table.is_null() {
            return Err(LoadError::NullTable {
                path: path.to_path_buf(),
            });
        }
        // SAFETY: `abi_version` is the first field of every ABI version's table; it is read
        // before anything else.
        let found = unsafe { std::ptr::addr_of!((*table).abi_version).read() };
        if found != abi::ABI_VERSION {
            return Err(LoadError::AbiMismatch {
                path: path.to_path_buf(),
                found,
                expected: abi::ABI_VERSION,
            });
        }
        // SAFETY: the version matches: the table starts with the v1 header fields.
        let struct_size = unsafe { std::ptr::addr_of!((*table).struct_size).read() };
        let want = std::mem::size_of::<ObjstorePluginV1>();
        if (struct_size as usize) < want {
            return Err(LoadError::BadTable {
                path: path.to_path_buf(),
                reason: format!("struct_size {struct_size} is smaller than {want}"),
            });
        }
        // SAFETY: the table is at least a whole v1 table; its function pointers are Options,
        // so NULL entries are valid values (refused just below).
        let copy: ObjstorePluginV1 = unsafe { std::ptr::read(table) };
        let host = HostTable::check(&copy).map_err(|reason| LoadError::BadTable {
            path: path.to_path_buf(),
            reason,
        })?;
        // SAFETY: the name is static data of the plugin.
        let name = unsafe { copy.name.as_str("plugin name") }
            .map_err(|e| LoadError::BadTable {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?
            .to_string();
        Ok(Arc::new(PluginLibrary {
            path: path.to_path_buf(),
            name,
            table: host,
            _lib: lib,
        }))
    }

    /// Loads plugin `name` from `dir` (see [`plugin_file_names`]).
    pub fn load_by_name(dir: &Path, name: &str) -> Result<Arc<Self>, LoadError> {
        let names = plugin_file_names(name);
        for file in &names {
            let candidate = dir.join(file);
            if candidate.is_file() {
                return Self::load(&candidate);
            }
        }
        Err(LoadError::NoSuchPlugin {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            tried: names.join(", "),
        })
    }

    /// The name the plugin reports.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The library file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn table(&self) -> &HostTable {
        &self.table
    }

    /// Opens a store with `config`; a config the plugin refuses is
    /// [`Error::InvalidConfig`].
    pub fn open(self: &Arc<Self>, config: StoreConfig) -> Result<PluginStore> {
        let instance = config.instance().to_string();
        let meta: Vec<ObjstoreKv> = config
            .meta
            .iter()
            .map(|(k, v)| ObjstoreKv {
                key: ObjstoreStr::borrow(k),
                value: ObjstoreStr::borrow(v),
            })
            .collect();
        let plugin_name = config.plugin_name.clone().unwrap_or_default();
        let c_config = ObjstoreConfig {
            name: ObjstoreStr::borrow(&instance),
            path: ObjstoreStr::borrow(&config.path),
            meta: meta.as_ptr(),
            meta_len: meta.len(),
            strict: config.strict as u8,
            read_only: config.read_only as u8,
            weight: config.weight,
            plugin_name: ObjstoreStr::borrow(&plugin_name),
        };
        let mut handle: *mut c_void = std::ptr::null_mut();
        let mut err = ObjstoreError::default();
        // SAFETY: every pointer in `c_config` borrows locals that outlive the call.
        let code = unsafe { (self.table().open)(&c_config, &mut handle, &mut err) };
        if code != abi::OK {
            return Err(abi::error_from_code(
                code,
                err.message(),
                &instance,
                "open",
                "",
            ));
        }
        if handle.is_null() {
            return Err(Error::backend_msg(
                &instance,
                "open",
                "",
                "the plugin returned no store handle",
            ));
        }
        Ok(PluginStore {
            inner: Arc::new(StoreHandle {
                lib: self.clone(),
                handle,
                config,
                instance,
            }),
        })
    }
}

struct StoreHandle {
    lib: Arc<PluginLibrary>,
    handle: *mut c_void,
    config: StoreConfig,
    instance: String,
}

// SAFETY: the ABI requires store handles to be usable from many threads.
unsafe impl Send for StoreHandle {}
// SAFETY: as above.
unsafe impl Sync for StoreHandle {}

impl Drop for StoreHandle {
    fn drop(&mut self) {
        // SAFETY: the handle came from `open` and is released exactly once, after every reader
        // and writer (they hold this handle alive).
        unsafe { (self.lib.table().close)(self.handle) };
    }
}

impl StoreHandle {
    fn table(&self) -> &HostTable {
        self.lib.table()
    }

    fn check(&self, code: i32, err: &ObjstoreError, op: &'static str, path: &str) -> Result<()> {
        if code == abi::OK {
            Ok(())
        } else {
            Err(abi::error_from_code(
                code,
                err.message(),
                &self.instance,
                op,
                path,
            ))
        }
    }
}

/// A store opened through a plugin.
#[derive(Clone)]
pub struct PluginStore {
    inner: Arc<StoreHandle>,
}

impl fmt::Debug for PluginStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginStore")
            .field("instance", &self.inner.instance)
            .field("plugin", &self.inner.lib.name)
            .finish()
    }
}

/// Above this many bytes a read is first clamped to the object size, so a huge range does not
/// allocate a huge buffer.
const CLAMP_ABOVE: u64 = 16 << 20;

unsafe extern "C" fn collect_list(ctx: *mut c_void, path: ObjstoreStr, size: u64) {
    // SAFETY: `ctx` is the Vec passed by `list`; `path` lives during the call.
    let out = unsafe { &mut *(ctx as *mut Vec<(Vec<u8>, u64)>) };
    out.push((unsafe { path.to_vec() }, size));
}

unsafe extern "C" fn collect_str(ctx: *mut c_void, value: ObjstoreStr) {
    // SAFETY: `ctx` is the Option<Vec<u8>> passed by the caller; `value` lives during the call.
    let out = unsafe { &mut *(ctx as *mut Option<Vec<u8>>) };
    *out = Some(unsafe { value.to_vec() });
}

impl PluginStore {
    /// The plugin library this store comes from.
    pub fn library(&self) -> &Arc<PluginLibrary> {
        &self.inner.lib
    }

    fn clamp(&self, path: &str, ranges: &[ByteRange]) -> Result<Vec<ByteRange>> {
        let total: u64 = ranges.iter().map(|r| r.len).fold(0, u64::saturating_add);
        if total <= CLAMP_ABOVE {
            return Ok(ranges.to_vec());
        }
        let size = self.stat(path)?.size;
        Ok(ranges
            .iter()
            .map(|r| {
                let c = r.clamp(size);
                ByteRange::new(c.start, c.end - c.start)
            })
            .collect())
    }

    fn string_out(
        &self,
        op: &'static str,
        path: &str,
        f: unsafe extern "C" fn(
            *mut c_void,
            ObjstoreStr,
            *mut c_void,
            abi::StrFn,
            *mut ObjstoreError,
        ) -> i32,
    ) -> Result<Option<String>> {
        let mut out: Option<Vec<u8>> = None;
        let mut err = ObjstoreError::default();
        // SAFETY: live handle; `out` outlives the call; the path is borrowed for it.
        let code = unsafe {
            f(
                self.inner.handle,
                ObjstoreStr::borrow(path),
                &mut out as *mut Option<Vec<u8>> as *mut c_void,
                collect_str,
                &mut err,
            )
        };
        if code == abi::UNSUPPORTED {
            return Ok(None);
        }
        self.inner.check(code, &err, op, path)?;
        out.map(|b| {
            String::from_utf8(b).map_err(|_| {
                Error::backend_msg(
                    &self.inner.instance,
                    op,
                    path,
                    "the plugin returned a non-UTF-8 string",
                )
            })
        })
        .transpose()
    }
}

impl ObjectStore for PluginStore {
    fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    fn instance(&self) -> &str {
        &self.inner.instance
    }

    fn info(&self) -> Result<InstanceInfo> {
        let mut info = ObjstoreInfo {
            known: 0,
            total: 0,
            free: 0,
            used: 0,
            kind: [0; abi::KIND_CAP],
        };
        let mut err = ObjstoreError::default();
        // SAFETY: live handle; `info` is our output struct.
        let code = unsafe { (self.inner.table().info)(self.inner.handle, &mut info, &mut err) };
        self.inner.check(code, &err, "info", "")?;
        let end = info
            .kind
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(abi::KIND_CAP);
        Ok(InstanceInfo {
            config: self.inner.config.clone(),
            kind: String::from_utf8_lossy(&info.kind[..end]).into_owned(),
            total: (info.known & abi::INFO_TOTAL != 0).then_some(info.total),
            free: (info.known & abi::INFO_FREE != 0).then_some(info.free),
            used: (info.known & abi::INFO_USED != 0).then_some(info.used),
        })
    }

    fn stat(&self, path: &str) -> Result<ObjectStat> {
        path::validate(path)?;
        let mut size = 0u64;
        let mut err = ObjstoreError::default();
        // SAFETY: live handle; borrowed path; our output.
        let code = unsafe {
            (self.inner.table().stat)(
                self.inner.handle,
                ObjstoreStr::borrow(path),
                &mut size,
                &mut err,
            )
        };
        self.inner.check(code, &err, "stat", path)?;
        Ok(ObjectStat { size })
    }

    fn get(&self, path: &str) -> Result<ObjectReader> {
        path::validate(path)?;
        let mut reader: *mut c_void = std::ptr::null_mut();
        let mut err = ObjstoreError::default();
        // SAFETY: live handle; borrowed path; our output.
        let code = unsafe {
            (self.inner.table().reader_open)(
                self.inner.handle,
                ObjstoreStr::borrow(path),
                &mut reader,
                &mut err,
            )
        };
        self.inner.check(code, &err, "get", path)?;
        if reader.is_null() {
            return Err(Error::backend_msg(
                &self.inner.instance,
                "get",
                path,
                "the plugin returned no reader",
            ));
        }
        Ok(Box::new(PluginReader {
            store: self.inner.clone(),
            reader,
            path: path.to_string(),
        }))
    }

    fn get_range(&self, path: &str, range: ByteRange) -> Result<Vec<u8>> {
        path::validate(path)?;
        let range = self.clamp(path, &[range])?[0];
        let len = usize::try_from(range.len).map_err(|_| {
            Error::backend_msg(
                &self.inner.instance,
                "get_range",
                path,
                "range too large for this machine",
            )
        })?;
        let mut buf = vec![0u8; len];
        let mut read = 0usize;
        let mut err = ObjstoreError::default();
        // SAFETY: live handle; `buf` holds `len` bytes; our outputs.
        let code = unsafe {
            (self.inner.table().read_at)(
                self.inner.handle,
                ObjstoreStr::borrow(path),
                range.offset,
                buf.as_mut_ptr(),
                len,
                &mut read,
                &mut err,
            )
        };
        self.inner.check(code, &err, "get_range", path)?;
        buf.truncate(read.min(len));
        Ok(buf)
    }

    fn get_ranges(&self, path: &str, ranges: &[ByteRange]) -> Result<Vec<Vec<u8>>> {
        path::validate(path)?;
        if ranges.is_empty() {
            // Nothing to read, but a missing object is still NotFound.
            self.stat(path)?;
            return Ok(Vec::new());
        }
        let ranges = self.clamp(path, ranges)?;
        let total = ranges
            .iter()
            .try_fold(0u64, |acc, r| acc.checked_add(r.len))
            .and_then(|t| usize::try_from(t).ok());
        let total = total.ok_or_else(|| {
            Error::backend_msg(
                &self.inner.instance,
                "get_ranges",
                path,
                "ranges too large for this machine",
            )
        })?;
        let c_ranges: Vec<ObjstoreRange> = ranges
            .iter()
            .map(|r| ObjstoreRange {
                offset: r.offset,
                len: r.len,
            })
            .collect();
        let mut buf = vec![0u8; total];
        let mut read = vec![0u64; ranges.len()];
        let mut err = ObjstoreError::default();
        // SAFETY: live handle; `ranges.len()` ranges and read slots; `total` buffer bytes.
        let code = unsafe {
            (self.inner.table().read_ranges)(
                self.inner.handle,
                ObjstoreStr::borrow(path),
                c_ranges.as_ptr(),
                c_ranges.len(),
                buf.as_mut_ptr(),
                total,
                read.as_mut_ptr(),
                &mut err,
            )
        };
        self.inner.check(code, &err, "get_ranges", path)?;
        let mut out = Vec::with_capacity(ranges.len());
        let mut at = 0usize;
        for (range, got) in ranges.iter().zip(&read) {
            let want = range.len as usize;
            let got = (*got as usize).min(want);
            out.push(buf[at..at + got].to_vec());
            at += want;
        }
        Ok(out)
    }

    fn writer(&self, path: &str) -> Result<Box<dyn ObjectWriter>> {
        path::validate(path)?;
        self.inner.config.ensure_writable("put", path)?;
        let mut writer: *mut c_void = std::ptr::null_mut();
        let mut err = ObjstoreError::default();
        // SAFETY: live handle; borrowed path; our output.
        let code = unsafe {
            (self.inner.table().writer_open)(
                self.inner.handle,
                ObjstoreStr::borrow(path),
                &mut writer,
                &mut err,
            )
        };
        self.inner.check(code, &err, "put", path)?;
        if writer.is_null() {
            return Err(Error::backend_msg(
                &self.inner.instance,
                "put",
                path,
                "the plugin returned no writer",
            ));
        }
        Ok(Box::new(PluginWriter {
            store: self.inner.clone(),
            writer,
            path: path.to_string(),
        }))
    }

    fn delete(&self, path: &str) -> Result<()> {
        path::validate(path)?;
        self.inner.config.ensure_writable("delete", path)?;
        let mut err = ObjstoreError::default();
        // SAFETY: live handle; borrowed path.
        let code = unsafe {
            (self.inner.table().remove)(self.inner.handle, ObjstoreStr::borrow(path), &mut err)
        };
        self.inner.check(code, &err, "delete", path)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        path::validate_prefix(prefix)?;
        let mut raw: Vec<(Vec<u8>, u64)> = Vec::new();
        let mut err = ObjstoreError::default();
        // SAFETY: live handle; `raw` outlives the call and is only touched by the callback.
        let code = unsafe {
            (self.inner.table().list)(
                self.inner.handle,
                ObjstoreStr::borrow(prefix),
                &mut raw as *mut Vec<(Vec<u8>, u64)> as *mut c_void,
                collect_list,
                &mut err,
            )
        };
        self.inner.check(code, &err, "list", prefix)?;
        let mut out = Vec::with_capacity(raw.len());
        for (bytes, size) in raw {
            let p = String::from_utf8(bytes).map_err(|_| {
                Error::backend_msg(
                    &self.inner.instance,
                    "list",
                    prefix,
                    "the plugin listed a non-UTF-8 path",
                )
            })?;
            if path::validate(&p).is_err() || !path::is_under(&p, prefix) {
                return Err(Error::backend_msg(
                    &self.inner.instance,
                    "list",
                    prefix,
                    format!(
                        "the plugin listed {p:?}, which is not an object path under the prefix"
                    ),
                ));
            }
            out.push(ObjectMeta { path: p, size });
        }
        out.sort();
        Ok(out)
    }

    fn local_path(&self, path: &str) -> Result<Option<PathBuf>> {
        path::validate(path)?;
        Ok(self
            .string_out("local_path", path, self.inner.table().local_path)?
            .map(PathBuf::from))
    }

    fn full_path(&self, path: &str) -> String {
        match self.string_out("full_path", path, self.inner.table().full_path) {
            Ok(Some(full)) => full,
            _ => format!("{}:{}", self.inner.instance, path),
        }
    }
}

struct PluginReader {
    store: Arc<StoreHandle>,
    reader: *mut c_void,
    path: String,
}

// SAFETY: a reader is used by one thread at a time (it is not Sync), as the ABI requires.
unsafe impl Send for PluginReader {}

impl Read for PluginReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0usize;
        let mut err = ObjstoreError::default();
        // SAFETY: live reader; `buf` is writable for its length.
        let code = unsafe {
            (self.store.table().reader_read)(
                self.reader,
                buf.as_mut_ptr(),
                buf.len(),
                &mut n,
                &mut err,
            )
        };
        match self.store.check(code, &err, "get", &self.path) {
            Ok(()) => Ok(n.min(buf.len())),
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

impl Drop for PluginReader {
    fn drop(&mut self) {
        // SAFETY: released exactly once.
        unsafe { (self.store.table().reader_close)(self.reader) };
    }
}

struct PluginWriter {
    store: Arc<StoreHandle>,
    writer: *mut c_void,
    path: String,
}

// SAFETY: a writer is used by one thread at a time, as the ABI requires.
unsafe impl Send for PluginWriter {}

impl ObjectWriter for PluginWriter {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        let mut err = ObjstoreError::default();
        // SAFETY: live writer; `data` is readable for its length.
        let code = unsafe {
            (self.store.table().writer_write)(self.writer, data.as_ptr(), data.len(), &mut err)
        };
        self.store.check(code, &err, "put", &self.path)
    }

    fn commit(mut self: Box<Self>) -> Result<u64> {
        let mut size = 0u64;
        let mut err = ObjstoreError::default();
        // Commit consumes the plugin's writer whatever happens: our Drop must not abort it.
        let writer = std::mem::replace(&mut self.writer, std::ptr::null_mut());
        // SAFETY: live writer, consumed here.
        let code = unsafe { (self.store.table().writer_commit)(writer, &mut size, &mut err) };
        self.store.check(code, &err, "put", &self.path)?;
        Ok(size)
    }
}

impl Drop for PluginWriter {
    fn drop(&mut self) {
        if !self.writer.is_null() {
            // SAFETY: not committed: abort consumes it, exactly once.
            unsafe { (self.store.table().writer_abort)(self.writer) };
        }
    }
}
