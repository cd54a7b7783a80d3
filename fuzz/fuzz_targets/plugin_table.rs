//! What a plugin library hands the host: its function table (ABI version, size, name, entry
//! points) and its error reports. A table with a wrong version or size, a NULL entry or a name
//! that is not UTF-8 is refused with a reason; a report with any code, length or bytes becomes
//! an error with a message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use objstore::abi::{self, ObjstoreError, ObjstorePluginV1, ObjstoreStr, ERROR_MESSAGE_CAP};
use objstore::plugin::PluginLibrary;

/// The fs backend's real table; each run copies it and changes what the input says.
const REAL: ObjstorePluginV1 = abi::plugin_table::<objstore_fs::FsStore>();

/// The table and name the host reads, kept for the whole run (the host may keep pointers
/// into them while the library value lives, which is only within one iteration).
static mut TABLE: ObjstorePluginV1 = REAL;
static mut NAME: [u8; 64] = [0; 64];

fuzz_target!(|data: &[u8]| {
    if data.len() < 12 {
        return;
    }
    let version = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let size_delta = i32::from(i8::from_le_bytes([data[4]]));
    let nulls = u32::from_le_bytes([data[5], data[6], data[7], data[8]]);
    let name_len = usize::from(data[9]) % 65;
    let rest = &data[10..];
    let code = i32::from_le_bytes([data[10], data[11], 0, 0]) - 1000;

    // SAFETY: one fuzzing thread; the statics are rewritten before the host reads them and
    // the library value is dropped before the next run.
    unsafe {
        let name = &mut *std::ptr::addr_of_mut!(NAME);
        let n = name_len.min(rest.len());
        name[..n].copy_from_slice(&rest[..n]);
        let mut t = REAL;
        t.abi_version = if version % 4 == 0 {
            version
        } else {
            abi::ABI_VERSION
        };
        t.struct_size = (std::mem::size_of::<ObjstorePluginV1>() as i64 + i64::from(size_delta))
            .clamp(0, i64::from(u32::MAX)) as u32;
        t.name = ObjstoreStr {
            ptr: name.as_ptr(),
            len: n,
        };
        macro_rules! maybe_null {
            ($($bit:literal => $field:ident),*) => {
                $(if nulls & (1 << $bit) != 0 { t.$field = None; })*
            };
        }
        maybe_null!(0 => open, 1 => close, 2 => info, 3 => stat, 4 => read_at, 5 => read_ranges,
            6 => reader_open, 7 => reader_read, 8 => reader_close, 9 => writer_open,
            10 => writer_write, 11 => writer_commit, 12 => writer_abort, 13 => remove,
            14 => list, 15 => local_path, 16 => full_path);
        std::ptr::addr_of_mut!(TABLE).write(t);
        let table: &'static ObjstorePluginV1 = &*std::ptr::addr_of!(TABLE);
        let expect_ok = t.abi_version == abi::ABI_VERSION
            && t.struct_size as usize >= std::mem::size_of::<ObjstorePluginV1>()
            && nulls & 0x1_ffff == 0
            && std::str::from_utf8(&name[..n]).is_ok();
        match PluginLibrary::from_static(table) {
            Ok(lib) => {
                assert!(expect_ok, "a bad table was accepted");
                assert_eq!(lib.name().as_bytes(), &name[..n]);
            }
            Err(e) => {
                assert!(!expect_ok, "a good table was refused: {e}");
                assert!(!e.to_string().is_empty());
            }
        }
    }

    // An error report as a plugin fills it: any length, any bytes.
    let mut report = ObjstoreError {
        code,
        message_len: usize::from(data[4]) * 8 + rest.len(),
        message: [0; ERROR_MESSAGE_CAP],
    };
    let n = rest.len().min(ERROR_MESSAGE_CAP);
    report.message[..n].copy_from_slice(&rest[..n]);
    let message = report.message();
    assert!(
        message.len() <= ERROR_MESSAGE_CAP * 3,
        "a lossy message stays bounded"
    );
    let err = abi::error_from_code(code, message, "fuzz", "stat", "sealed/s-t01000-1");
    assert!(!err.to_string().is_empty());
});
