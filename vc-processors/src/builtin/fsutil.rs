//! Durable file replacement: write or copy to a temporary name beside the destination, fsync,
//! rename into place, fsync the directory. A reader never sees a half-written destination, and
//! a crash leaves either the old file or the new one.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};

/// A name beside `dest` that no other writer in any process uses.
pub(crate) fn temp_path_beside(dest: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.{}-{n}.tmp", std::process::id()))
}

/// fsyncs a directory, so the renames inside it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("sync directory {}", dir.display()))
}

fn sync_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => Ok(()),
    }
}

/// Renames `tmp` over `dest` and syncs the directory; removes `tmp` on failure.
pub(crate) fn rename_into_place(tmp: &Path, dest: &Path) -> Result<()> {
    if let Err(e) = fs::rename(tmp, dest) {
        let _ = fs::remove_file(tmp);
        return Err(e).with_context(|| format!("rename {} to {}", tmp.display(), dest.display()));
    }
    sync_parent(dest)
}

/// Writes `dest` through `write`, atomically and durably.
pub(crate) fn write_atomic(
    dest: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<()>,
) -> Result<()> {
    let tmp = temp_path_beside(dest);
    let written = (|| -> Result<()> {
        let file = File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
        let mut w = BufWriter::new(file);
        write(&mut w).with_context(|| format!("write {}", tmp.display()))?;
        let file = w
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("write {}", tmp.display()))?;
        file.sync_all()
            .with_context(|| format!("sync {}", tmp.display()))
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    rename_into_place(&tmp, dest)
}

/// Copies `src` to `dest`, atomically and durably (permissions are copied too).
pub(crate) fn copy_file_atomic(src: &Path, dest: &Path) -> Result<()> {
    let tmp = temp_path_beside(dest);
    let copied = (|| -> Result<()> {
        fs::copy(src, &tmp)
            .with_context(|| format!("copy {} to {}", src.display(), tmp.display()))?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("sync {}", tmp.display()))
    })();
    if let Err(e) = copied {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    rename_into_place(&tmp, dest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn atomic_writes_replace_and_leave_nothing_behind() {
        let d = tempfile::tempdir().expect("tmp");
        let dest = d.path().join("f");
        fs::write(&dest, b"old").expect("write");
        write_atomic(&dest, |w| Ok(w.write_all(b"new")?)).expect("write");
        assert_eq!(fs::read(&dest).expect("read"), b"new");
        let err = write_atomic(&dest, |_| anyhow::bail!("refused")).expect_err("fails");
        assert!(format!("{err:#}").contains("refused"));
        assert_eq!(
            fs::read(&dest).expect("read"),
            b"new",
            "a failed write keeps the old file"
        );
        let names: Vec<_> = fs::read_dir(d.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
