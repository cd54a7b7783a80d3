//! The plugin C ABI, version 1: the `#[repr(C)]` mirror of `include/objstore.h`, the mapping
//! between [`Error`] and status codes, and the plugin side of Rust plugins
//! ([`export_plugin!`](crate::export_plugin)).
//!
//! `include/objstore.h` is the reference; its comment states the ownership and threading
//! rules. In short: nothing allocated on one side is freed on the other. Inputs are borrowed
//! for one call, output buffers belong to the host, variable-size outputs come through host
//! callbacks, error messages go into a fixed buffer, and the host releases each handle exactly
//! once.

use std::ffi::c_void;
use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::store::{ByteRange, ObjectReader, ObjectStore, ObjectWriter, StoreConfig};

/// The ABI version this crate speaks.
pub const ABI_VERSION: u32 = 1;
/// Capacity of [`ObjstoreError::message`].
pub const ERROR_MESSAGE_CAP: usize = 1024;
/// Capacity of [`ObjstoreInfo::kind`].
pub const KIND_CAP: usize = 64;
/// Name of the one exported symbol.
pub const ENTRY_SYMBOL: &[u8] = b"objstore_plugin_entry";

/// Success.
pub const OK: i32 = 0;
/// No such object.
pub const NOT_FOUND: i32 = 1;
/// Put or delete on a read-only store.
pub const READ_ONLY: i32 = 2;
/// Not a valid object path.
pub const INVALID_PATH: i32 = 3;
/// Not a regular file.
pub const NOT_REGULAR_FILE: i32 = 4;
/// The config was refused.
pub const INVALID_CONFIG: i32 = 5;
/// Operation not supported.
pub const UNSUPPORTED: i32 = 6;
/// Backend failure.
pub const BACKEND: i32 = 7;
/// The plugin caught an internal crash.
pub const PANIC: i32 = 8;

/// `known` bit: `total` is meaningful.
pub const INFO_TOTAL: u32 = 1;
/// `known` bit: `free` is meaningful.
pub const INFO_FREE: u32 = 2;
/// `known` bit: `used` is meaningful.
pub const INFO_USED: u32 = 4;

/// A borrowed UTF-8 string (not NUL-terminated).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ObjstoreStr {
    /// First byte.
    pub ptr: *const u8,
    /// Length in bytes.
    pub len: usize,
}

impl ObjstoreStr {
    /// Borrows `s` (the result must not outlive it).
    pub fn borrow(s: &str) -> Self {
        ObjstoreStr {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// A copy of the bytes.
    ///
    /// # Safety
    /// As for [`Self::as_str`].
    pub unsafe fn to_vec(self) -> Vec<u8> {
        if self.len == 0 || self.ptr.is_null() {
            return Vec::new();
        }
        // SAFETY: the caller guarantees ptr/len describe live memory.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }.to_vec()
    }

    /// The string, or an error naming `what` if it is not UTF-8.
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes that live as long as `'a` (or be null with
    /// `len == 0`).
    pub unsafe fn as_str<'a>(self, what: &str) -> Result<&'a str> {
        if self.len == 0 {
            return Ok("");
        }
        if self.ptr.is_null() {
            return Err(Error::InvalidPath {
                path: String::new(),
                reason: format!("{what}: null pointer"),
            });
        }
        // SAFETY: the caller guarantees ptr/len describe live memory.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr, self.len) };
        std::str::from_utf8(bytes).map_err(|e| Error::InvalidPath {
            path: String::from_utf8_lossy(bytes).into_owned(),
            reason: format!("{what} is not UTF-8: {e}"),
        })
    }
}

/// One `Meta` entry.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ObjstoreKv {
    /// Key.
    pub key: ObjstoreStr,
    /// Value.
    pub value: ObjstoreStr,
}

/// The store config as it crosses the boundary.
#[repr(C)]
#[derive(Debug)]
pub struct ObjstoreConfig {
    /// Instance name.
    pub name: ObjstoreStr,
    /// Backend location.
    pub path: ObjstoreStr,
    /// `Meta` entries.
    pub meta: *const ObjstoreKv,
    /// Number of `Meta` entries.
    pub meta_len: usize,
    /// Only regular files are objects.
    pub strict: u8,
    /// Refuse put and delete.
    pub read_only: u8,
    /// Weight.
    pub weight: u32,
    /// The plugin name the host used.
    pub plugin_name: ObjstoreStr,
}

/// An error report: a status code and a message in a fixed buffer.
#[repr(C)]
pub struct ObjstoreError {
    /// Status code.
    pub code: i32,
    /// Bytes used in `message`.
    pub message_len: usize,
    /// UTF-8 message (truncated at the capacity).
    pub message: [u8; ERROR_MESSAGE_CAP],
}

impl Default for ObjstoreError {
    fn default() -> Self {
        ObjstoreError {
            code: OK,
            message_len: 0,
            message: [0; ERROR_MESSAGE_CAP],
        }
    }
}

impl ObjstoreError {
    /// Records `code` and `message` (truncated on a character boundary).
    pub fn set(&mut self, code: i32, message: &str) {
        self.code = code;
        let mut end = message.len().min(ERROR_MESSAGE_CAP);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        self.message[..end].copy_from_slice(&message.as_bytes()[..end]);
        self.message_len = end;
    }

    /// The message.
    pub fn message(&self) -> String {
        let len = self.message_len.min(ERROR_MESSAGE_CAP);
        String::from_utf8_lossy(&self.message[..len]).into_owned()
    }
}

/// A byte range.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ObjstoreRange {
    /// First byte.
    pub offset: u64,
    /// Number of bytes.
    pub len: u64,
}

/// Capacity and usage.
#[repr(C)]
pub struct ObjstoreInfo {
    /// `INFO_*` bits.
    pub known: u32,
    /// Total bytes.
    pub total: u64,
    /// Free bytes.
    pub free: u64,
    /// Used bytes.
    pub used: u64,
    /// Backend kind, NUL-padded UTF-8.
    pub kind: [u8; KIND_CAP],
}

/// Receives one list entry.
pub type ListFn = unsafe extern "C" fn(ctx: *mut c_void, path: ObjstoreStr, size: u64);
/// Receives one string.
pub type StrFn = unsafe extern "C" fn(ctx: *mut c_void, value: ObjstoreStr);

/// `open(config, &store, err)`.
pub type OpenFn =
    unsafe extern "C" fn(*const ObjstoreConfig, *mut *mut c_void, *mut ObjstoreError) -> i32;
/// `close(store)`, `reader_close(reader)`, `writer_abort(writer)`.
pub type ReleaseFn = unsafe extern "C" fn(*mut c_void);
/// `info(store, &info, err)`.
pub type InfoFn = unsafe extern "C" fn(*mut c_void, *mut ObjstoreInfo, *mut ObjstoreError) -> i32;
/// `stat(store, path, &size, err)`.
pub type StatFn =
    unsafe extern "C" fn(*mut c_void, ObjstoreStr, *mut u64, *mut ObjstoreError) -> i32;
/// `read_at(store, path, offset, buf, len, &read, err)`.
pub type ReadAtFn = unsafe extern "C" fn(
    *mut c_void,
    ObjstoreStr,
    u64,
    *mut u8,
    usize,
    *mut usize,
    *mut ObjstoreError,
) -> i32;
/// `read_ranges(store, path, ranges, n, buf, buf_len, read, err)`.
pub type ReadRangesFn = unsafe extern "C" fn(
    *mut c_void,
    ObjstoreStr,
    *const ObjstoreRange,
    usize,
    *mut u8,
    usize,
    *mut u64,
    *mut ObjstoreError,
) -> i32;
/// `reader_open(store, path, &reader, err)`, `writer_open(store, path, &writer, err)`.
pub type HandleOpenFn =
    unsafe extern "C" fn(*mut c_void, ObjstoreStr, *mut *mut c_void, *mut ObjstoreError) -> i32;
/// `reader_read(reader, buf, cap, &n, err)`.
pub type ReaderReadFn =
    unsafe extern "C" fn(*mut c_void, *mut u8, usize, *mut usize, *mut ObjstoreError) -> i32;
/// `writer_write(writer, buf, len, err)`.
pub type WriterWriteFn =
    unsafe extern "C" fn(*mut c_void, *const u8, usize, *mut ObjstoreError) -> i32;
/// `writer_commit(writer, &size, err)`.
pub type WriterCommitFn = unsafe extern "C" fn(*mut c_void, *mut u64, *mut ObjstoreError) -> i32;
/// `remove(store, path, err)`.
pub type RemoveFn = unsafe extern "C" fn(*mut c_void, ObjstoreStr, *mut ObjstoreError) -> i32;
/// `list(store, prefix, ctx, emit, err)`.
pub type ListCallFn =
    unsafe extern "C" fn(*mut c_void, ObjstoreStr, *mut c_void, ListFn, *mut ObjstoreError) -> i32;
/// `local_path(store, path, ctx, emit, err)`, `full_path(…)`.
pub type StrCallFn =
    unsafe extern "C" fn(*mut c_void, ObjstoreStr, *mut c_void, StrFn, *mut ObjstoreError) -> i32;

/// The function table of ABI version 1 (`objstore_plugin_v1`). The function pointers are
/// `Option`s because a plugin written in C may leave one NULL; the host refuses such a table.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ObjstorePluginV1 {
    /// Must be [`ABI_VERSION`]; read before anything else.
    pub abi_version: u32,
    /// `size_of::<ObjstorePluginV1>()` as the plugin was built.
    pub struct_size: u32,
    /// Plugin name.
    pub name: ObjstoreStr,
    /// Opens a store.
    pub open: Option<OpenFn>,
    /// Closes a store.
    pub close: Option<ReleaseFn>,
    /// Capacity and usage.
    pub info: Option<InfoFn>,
    /// Size of an object.
    pub stat: Option<StatFn>,
    /// Reads one range into a host buffer.
    pub read_at: Option<ReadAtFn>,
    /// Reads many ranges into one host buffer.
    pub read_ranges: Option<ReadRangesFn>,
    /// Opens a streaming reader.
    pub reader_open: Option<HandleOpenFn>,
    /// Reads the next chunk.
    pub reader_read: Option<ReaderReadFn>,
    /// Closes a reader.
    pub reader_close: Option<ReleaseFn>,
    /// Opens a streaming writer.
    pub writer_open: Option<HandleOpenFn>,
    /// Writes a chunk.
    pub writer_write: Option<WriterWriteFn>,
    /// Commits (consumes the writer).
    pub writer_commit: Option<WriterCommitFn>,
    /// Aborts (consumes the writer).
    pub writer_abort: Option<ReleaseFn>,
    /// Deletes an object.
    pub remove: Option<RemoveFn>,
    /// Lists objects through a callback.
    pub list: Option<ListCallFn>,
    /// The local path of an object, through a callback.
    pub local_path: Option<StrCallFn>,
    /// The display location of an object, through a callback.
    pub full_path: Option<StrCallFn>,
}

// SAFETY: the table is immutable data (function pointers and a pointer to a static string).
unsafe impl Sync for ObjstorePluginV1 {}
// SAFETY: as above.
unsafe impl Send for ObjstorePluginV1 {}

/// The status code of an error.
pub fn code_of(err: &Error) -> i32 {
    match err {
        Error::NotFound { .. } => NOT_FOUND,
        Error::ReadOnly { .. } => READ_ONLY,
        Error::InvalidPath { .. } => INVALID_PATH,
        Error::NotRegularFile { .. } => NOT_REGULAR_FILE,
        Error::InvalidConfig { .. } => INVALID_CONFIG,
        Error::Unsupported { .. } => UNSUPPORTED,
        Error::Backend { .. } => BACKEND,
    }
}

/// The message an error carries across the boundary: its own detail, without the instance,
/// operation and path the host adds back.
pub fn message_of(err: &Error) -> String {
    match err {
        Error::InvalidPath { reason, .. } | Error::InvalidConfig { reason, .. } => reason.clone(),
        Error::Backend { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Rebuilds an [`Error`] from a status report, with the context known to the host.
pub fn error_from_code(
    code: i32,
    message: String,
    instance: &str,
    op: &'static str,
    path: &str,
) -> Error {
    match code {
        NOT_FOUND => Error::NotFound {
            instance: instance.to_string(),
            path: path.to_string(),
        },
        READ_ONLY => Error::ReadOnly {
            instance: instance.to_string(),
            op,
            path: path.to_string(),
        },
        INVALID_PATH => Error::InvalidPath {
            path: path.to_string(),
            reason: message,
        },
        NOT_REGULAR_FILE => Error::NotRegularFile {
            instance: instance.to_string(),
            path: path.to_string(),
        },
        INVALID_CONFIG => Error::InvalidConfig {
            instance: instance.to_string(),
            reason: message,
        },
        UNSUPPORTED => Error::Unsupported {
            instance: instance.to_string(),
            op,
        },
        PANIC => Error::backend_msg(
            instance,
            op,
            path,
            format!("the plugin panicked: {message}"),
        ),
        BACKEND => Error::backend_msg(instance, op, path, message),
        other => Error::backend_msg(
            instance,
            op,
            path,
            format!("unknown status code {other}: {message}"),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// The plugin side: trampolines that expose an `ObjectStore` through the table.

/// A store type that can be exported as a plugin with [`export_plugin!`](crate::export_plugin).
pub trait Plugin: ObjectStore + Sized + 'static {
    /// The plugin name (what `PluginName` refers to).
    const NAME: &'static str;

    /// Opens a store; a config it cannot use is [`Error::InvalidConfig`].
    fn open(config: StoreConfig) -> Result<Self>;
}

/// Runs `f`, turning an error or a panic into a status code and a message.
fn trampoline(err: *mut ObjstoreError, f: impl FnOnce() -> Result<()>) -> i32 {
    let (code, message) = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return OK,
        Ok(Err(e)) => (code_of(&e), message_of(&e)),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".to_string());
            (PANIC, msg)
        }
    };
    if !err.is_null() {
        // SAFETY: the host passes a valid, exclusive objstore_error for this call.
        unsafe { (*err).set(code, &message) };
    }
    code
}

/// Catches a panic in a function that cannot report errors (close, abort).
fn quietly(f: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(f));
}

/// # Safety
/// `cfg` must be a valid config for the duration of the call.
unsafe fn config_from_c(cfg: &ObjstoreConfig) -> Result<StoreConfig> {
    // SAFETY (all as_str calls): the host keeps the config alive during `open`.
    let mut config = StoreConfig {
        name: unsafe { cfg.name.as_str("config name") }?.to_string(),
        path: unsafe { cfg.path.as_str("config path") }?.to_string(),
        strict: cfg.strict != 0,
        read_only: cfg.read_only != 0,
        weight: cfg.weight,
        ..Default::default()
    };
    let plugin_name = unsafe { cfg.plugin_name.as_str("plugin name") }?;
    config.plugin_name = (!plugin_name.is_empty()).then(|| plugin_name.to_string());
    if cfg.meta_len > 0 && !cfg.meta.is_null() {
        // SAFETY: the host passes meta_len entries that live during `open`.
        let entries = unsafe { std::slice::from_raw_parts(cfg.meta, cfg.meta_len) };
        for kv in entries {
            let key = unsafe { kv.key.as_str("meta key") }?;
            let value = unsafe { kv.value.as_str("meta value") }?;
            config.meta.insert(key.to_string(), value.to_string());
        }
    }
    Ok(config)
}

/// # Safety
/// `store` must be a handle returned by `open_tramp::<S>` and not closed.
unsafe fn store_ref<'a, S>(store: *mut c_void) -> &'a Arc<S> {
    // SAFETY: the handle is a leaked Box<Arc<S>> (see `open_tramp`).
    unsafe { &*(store as *const Arc<S>) }
}

/// # Safety
/// Called through the table only, with the ABI's guarantees.
pub unsafe extern "C" fn open_tramp<S: Plugin>(
    cfg: *const ObjstoreConfig,
    out: *mut *mut c_void,
    err: *mut ObjstoreError,
) -> i32 {
    trampoline(err, || {
        if cfg.is_null() || out.is_null() {
            return Err(Error::InvalidConfig {
                instance: String::new(),
                reason: "null config or output pointer".to_string(),
            });
        }
        // SAFETY: checked non-null; valid for the call by the ABI.
        let config = unsafe { config_from_c(&*cfg) }?;
        let store = Arc::new(S::open(config)?);
        // SAFETY: `out` is a valid pointer to write the handle to.
        unsafe { *out = Box::into_raw(Box::new(store)) as *mut c_void };
        Ok(())
    })
}

/// # Safety
/// `store` must come from `open_tramp::<S>`; it is released here.
pub unsafe extern "C" fn close_tramp<S: Plugin>(store: *mut c_void) {
    if store.is_null() {
        return;
    }
    // SAFETY: the handle is a leaked Box<Arc<S>>, released exactly once by the host.
    quietly(|| drop(unsafe { Box::from_raw(store as *mut Arc<S>) }));
}

/// # Safety
/// ABI guarantees.
pub unsafe extern "C" fn info_tramp<S: Plugin>(
    store: *mut c_void,
    out: *mut ObjstoreInfo,
    err: *mut ObjstoreError,
) -> i32 {
    trampoline(err, || {
        // SAFETY: ABI guarantees a live store handle.
        let info = unsafe { store_ref::<S>(store) }.info()?;
        let mut kind = [0u8; KIND_CAP];
        let bytes = info.kind.as_bytes();
        let n = bytes.len().min(KIND_CAP - 1);
        kind[..n].copy_from_slice(&bytes[..n]);
        let mut known = 0;
        known |= if info.total.is_some() { INFO_TOTAL } else { 0 };
        known |= if info.free.is_some() { INFO_FREE } else { 0 };
        known |= if info.used.is_some() { INFO_USED } else { 0 };
        // SAFETY: `out` is the host's output struct.
        unsafe {
            *out = ObjstoreInfo {
                known,
                total: info.total.unwrap_or(0),
                free: info.free.unwrap_or(0),
                used: info.used.unwrap_or(0),
                kind,
            }
        };
        Ok(())
    })
}

/// # Safety
/// ABI guarantees.
pub unsafe extern "C" fn stat_tramp<S: Plugin>(
    store: *mut c_void,
    path: ObjstoreStr,
    size: *mut u64,
    err: *mut ObjstoreError,
) -> i32 {
    trampoline(err, || {
        // SAFETY: ABI guarantees (live handle, borrowed path, output pointer).
        let path = unsafe { path.as_str("path") }?;
        let stat = unsafe { store_ref::<S>(store) }.stat(path)?;
        unsafe { *size = stat.size };
        Ok(())
    })
}

/// # Safety
/// ABI guarantees.
pub unsafe extern "C" fn read_at_tramp<S: Plugin>(
    store: *mut c_void,
    path: ObjstoreStr,
    offset: u64,
    buf: *mut u8,
    len: usize,
    read: *mut usize,
    err: *mut ObjstoreError,
) -> i32 {
    trampoline(err, || {
        // SAFETY: ABI guarantees (live handle, borrowed path, host buffer of `len` bytes).
        let path = unsafe { path.as_str("path") }?;
        let data =
            unsafe { store_ref::<S>(store) }.get_range(path, ByteRange::new(offset, len as u64))?;
        let n = data.len().min(len);
        if n > 0 {
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), buf, n) };
        }
        unsafe { *read = n };
        Ok(())
    })
}

/// # Safety
/// ABI guarantees.
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn read_ranges_tramp<S: Plugin>(
    store: *mut c_void,
    path: ObjstoreStr,
    ranges: *const ObjstoreRange,
    n: usize,
    buf: *mut u8,
    buf_len: usize,
    read: *mut u64,
    err: *mut ObjstoreError,
) -> i32 {
    trampoline(err, || {
        // SAFETY: ABI guarantees (live handle; `n` ranges; `n` read slots; `buf_len` bytes).
        let path = unsafe { path.as_str("path") }?;
        let ranges: &[ObjstoreRange] = if n == 0 {
            &[]
        } else {
            unsafe { std::slice::from_raw_parts(ranges, n) }
        };
        let wanted = ranges
            .iter()
            .try_fold(0u64, |acc, r| acc.checked_add(r.len));
        let Some(wanted) = wanted.filter(|w| *w <= buf_len as u64) else {
            return Err(Error::backend_msg(
                "",
                "get_ranges",
                path,
                format!("the ranges ask for more than the {buf_len}-byte buffer holds"),
            ));
        };
        let _ = wanted;
        let ranges: Vec<ByteRange> = ranges
            .iter()
            .map(|r| ByteRange::new(r.offset, r.len))
            .collect();
        let parts = unsafe { store_ref::<S>(store) }.get_ranges(path, &ranges)?;
        let mut at = 0usize;
        for (i, (part, range)) in parts.iter().zip(&ranges).enumerate() {
            let n = part.len().min(range.len as usize);
            if n > 0 {
                unsafe { std::ptr::copy_nonoverlapping(part.as_ptr(), buf.add(at), n) };
            }
            unsafe { *read.add(i) = n as u64 };
            at += range.len as usize;
        }
        Ok(())
    })
}

/// # Safety
/// ABI guarantees.
pub unsafe extern "C" fn reader_open_tramp<S: Plugin>(
    store: *mut c_void,
    path: ObjstoreStr,
    out: *mut *mut c_void,
    err: *mut ObjstoreError,
) -> i32 {
    trampoline(err, || {
        // SAFETY: ABI guarantees.
        let path = unsafe { path.as_str("path") }?;
        let reader: ObjectReader = unsafe { store_ref::<S>(store) }.get(path)?;
        let boxed: Box<(ObjectReader, String)> = Box::new((reader, path.to_string()));
        unsafe { *out = Box::into_raw(boxed) as *mut c_void };
        Ok(())
    })
}

/// # Safety
/// ABI guarantees.
pub unsafe extern "C" fn reader_read_tramp(
    reader: *mut c_void,
    buf: *mut u8,
    cap: usize,
    n: *mut usize,
    err: *mut ObjstoreError,
) -> i32 {
    trampoline(err, || {
        // SAFETY: the reader is a live Box<(ObjectReader, String)>, used by one thread; `buf`
        // holds `cap` bytes.
        let (reader, path) = unsafe { &mut *(reader as *mut (ObjectReader, String)) };
        let slice = if cap == 0 {
            &mut [][..]
        } else {
            unsafe { std::slice::from_raw_parts_mut(buf, cap) }
        };
        let got = loop {
            match reader.read(slice) {
                Ok(got) => break got,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::backend("", "get", path, e)),
            }
        };
        unsafe { *n = got };
        Ok(())
    })
}

/// # Safety
/// `reader` comes from `reader_open_tramp`; released here.
pub unsafe extern "C" fn reader_close_tramp(reader: *mut c_void) {
    if reader.is_null() {
        return;
    }
    // SAFETY: a leaked Box<(ObjectReader, String)>, released exactly once.
    quietly(|| drop(unsafe { Box::from_raw(reader as *mut (ObjectReader, String)) }));
}

type BoxedWriter = Box<dyn ObjectWriter>;

/// # Safety
/// ABI guarantees.
pub unsafe extern "C" fn writer_open_tramp<S: Plugin>(
    store: *mut c_void,
    path: ObjstoreStr,
    out: *mut *mut c_void,
    err: *mut ObjstoreError,
) -> i32 {
    trampoline(err, || {
        // SAFETY: ABI guarantees.
        let path = unsafe { path.as_str("path") }?;
        let writer: BoxedWriter = unsafe { store_ref::<S>(store) }.writer(path)?;
        unsafe { *out = Box::into_raw(Box::new(writer)) as *mut c_void };
        Ok(())
    })
}

/// # Safety
/// ABI guarantees.
pub unsafe extern "C" fn writer_write_tramp(
    writer: *mut c_void,
    buf: *const u8,
    len: usize,
    err: *mut ObjstoreError,
) -> i32 {
    trampoline(err, || {
        // SAFETY: a live Box<BoxedWriter> used by one thread; `buf` holds `len` bytes.
        let writer = unsafe { &mut *(writer as *mut BoxedWriter) };
        let data = if len == 0 {
            &[][..]
        } else {
            unsafe { std::slice::from_raw_parts(buf, len) }
        };
        writer.write(data)
    })
}

/// # Safety
/// `writer` comes from `writer_open_tramp`; consumed here.
pub unsafe extern "C" fn writer_commit_tramp(
    writer: *mut c_void,
    size: *mut u64,
    err: *mut ObjstoreError,
) -> i32 {
    if writer.is_null() {
        return trampoline(err, || {
            Err(Error::backend_msg("", "put", "", "null writer"))
        });
    }
    // SAFETY: a leaked Box<BoxedWriter>, consumed exactly once.
    let writer = unsafe { Box::from_raw(writer as *mut BoxedWriter) };
    trampoline(err, move || {
        let n = writer.commit()?;
        // SAFETY: output pointer from the host.
        unsafe { *size = n };
        Ok(())
    })
}

/// # Safety
/// `writer` comes from `writer_open_tramp`; consumed here.
pub unsafe extern "C" fn writer_abort_tramp(writer: *mut c_void) {
    if writer.is_null() {
        return;
    }
    // SAFETY: a leaked Box<BoxedWriter>, consumed exactly once.
    let writer = unsafe { Box::from_raw(writer as *mut BoxedWriter) };
    quietly(move || writer.abort());
}

/// # Safety
/// ABI guarantees.
pub unsafe extern "C" fn remove_tramp<S: Plugin>(
    store: *mut c_void,
    path: ObjstoreStr,
    err: *mut ObjstoreError,
) -> i32 {
    trampoline(err, || {
        // SAFETY: ABI guarantees.
        let path = unsafe { path.as_str("path") }?;
        unsafe { store_ref::<S>(store) }.delete(path)
    })
}

/// # Safety
/// ABI guarantees.
pub unsafe extern "C" fn list_tramp<S: Plugin>(
    store: *mut c_void,
    prefix: ObjstoreStr,
    ctx: *mut c_void,
    emit: ListFn,
    err: *mut ObjstoreError,
) -> i32 {
    trampoline(err, || {
        // SAFETY: ABI guarantees; each path lives during its callback.
        let prefix = unsafe { prefix.as_str("prefix") }?;
        for meta in unsafe { store_ref::<S>(store) }.list(prefix)? {
            unsafe { emit(ctx, ObjstoreStr::borrow(&meta.path), meta.size) };
        }
        Ok(())
    })
}

/// # Safety
/// ABI guarantees.
pub unsafe extern "C" fn local_path_tramp<S: Plugin>(
    store: *mut c_void,
    path: ObjstoreStr,
    ctx: *mut c_void,
    emit: StrFn,
    err: *mut ObjstoreError,
) -> i32 {
    trampoline(err, || {
        // SAFETY: ABI guarantees.
        let path = unsafe { path.as_str("path") }?;
        let store = unsafe { store_ref::<S>(store) };
        match store.local_path(path)? {
            Some(local) => {
                let text = local.to_str().ok_or_else(|| {
                    Error::backend_msg(
                        store.instance(),
                        "local_path",
                        path,
                        "the local path is not UTF-8",
                    )
                })?;
                unsafe { emit(ctx, ObjstoreStr::borrow(text)) };
                Ok(())
            }
            None => Err(Error::Unsupported {
                instance: store.instance().to_string(),
                op: "local_path",
            }),
        }
    })
}

/// # Safety
/// ABI guarantees.
pub unsafe extern "C" fn full_path_tramp<S: Plugin>(
    store: *mut c_void,
    path: ObjstoreStr,
    ctx: *mut c_void,
    emit: StrFn,
    err: *mut ObjstoreError,
) -> i32 {
    trampoline(err, || {
        // SAFETY: ABI guarantees.
        let path = unsafe { path.as_str("path") }?;
        let full = unsafe { store_ref::<S>(store) }.full_path(path);
        unsafe { emit(ctx, ObjstoreStr::borrow(&full)) };
        Ok(())
    })
}

/// The table of a Rust plugin; [`export_plugin!`](crate::export_plugin) puts it in a static.
pub const fn plugin_table<S: Plugin>() -> ObjstorePluginV1 {
    ObjstorePluginV1 {
        abi_version: ABI_VERSION,
        struct_size: std::mem::size_of::<ObjstorePluginV1>() as u32,
        name: ObjstoreStr {
            ptr: S::NAME.as_ptr(),
            len: S::NAME.len(),
        },
        open: Some(open_tramp::<S>),
        close: Some(close_tramp::<S>),
        info: Some(info_tramp::<S>),
        stat: Some(stat_tramp::<S>),
        read_at: Some(read_at_tramp::<S>),
        read_ranges: Some(read_ranges_tramp::<S>),
        reader_open: Some(reader_open_tramp::<S>),
        reader_read: Some(reader_read_tramp),
        reader_close: Some(reader_close_tramp),
        writer_open: Some(writer_open_tramp::<S>),
        writer_write: Some(writer_write_tramp),
        writer_commit: Some(writer_commit_tramp),
        writer_abort: Some(writer_abort_tramp),
        remove: Some(remove_tramp::<S>),
        list: Some(list_tramp::<S>),
        local_path: Some(local_path_tramp::<S>),
        full_path: Some(full_path_tramp::<S>),
    }
}

/// Exports a [`Plugin`] type as an objstore plugin: defines the `objstore_plugin_entry`
/// symbol. Build the crate as a `cdylib`.
///
/// ```text
/// objstore::export_plugin!(MyStore);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($store:ty) => {
        /// The objstore plugin entry point (ABI version 1).
        #[no_mangle]
        pub extern "C" fn objstore_plugin_entry() -> *const $crate::abi::ObjstorePluginV1 {
            static TABLE: $crate::abi::ObjstorePluginV1 = $crate::abi::plugin_table::<$store>();
            &TABLE
        }
    };
}
