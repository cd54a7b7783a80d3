//! Durable file replacement: write or copy to a temporary name beside the destination, fsync,
//! rename into place, fsync the directory. A reader never sees a half-written destination, and
//! a crash leaves either the old file or the new one.

use std::fs::{self, File};
use std::io::{self, BufWriter};
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

/// Creates the temporary file `tmp` and locks it (an exclusive `flock`) for as long as the
/// handle is open: the lock, not a pid, tells a sweep that its writer is alive.
pub(crate) fn create_locked(tmp: &Path) -> Result<File> {
    let file = File::create(tmp).with_context(|| format!("create {}", tmp.display()))?;
    lock_held(&file, tmp)?;
    Ok(file)
}

/// Creates the temporary directory `tmp` and answers a handle holding its lock.
pub(crate) fn create_locked_dir(tmp: &Path) -> Result<File> {
    fs::create_dir(tmp).with_context(|| format!("create {}", tmp.display()))?;
    let dir = File::open(tmp).with_context(|| format!("open {}", tmp.display()))?;
    lock_held(&dir, tmp)?;
    Ok(dir)
}

/// Locks the existing file or directory `path` (see [`create_locked`]) before it is renamed
/// to a temporary name.
pub(crate) fn lock_existing(path: &Path) -> Result<File> {
    let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    lock_held(&file, path)?;
    Ok(file)
}

fn lock_held(file: &File, path: &Path) -> Result<()> {
    file.try_lock()
        .map_err(|e| match e {
            fs::TryLockError::Error(e) => e,
            fs::TryLockError::WouldBlock => io::Error::other("locked by another writer"),
        })
        .with_context(|| format!("lock {}", path.display()))
}

/// Whether `name` is a temporary name of a writer of this crate (`.<dest>.<pid>-<n>.tmp`) or
/// of the fs objstore (`.<dest>.objstore-tmp-<pid>-<n>.tmp`).
pub fn is_temp_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.').and_then(|r| r.strip_suffix(".tmp")) else {
        return false;
    };
    let Some((_, tail)) = rest.rsplit_once('.') else {
        return false;
    };
    let tail = tail.strip_prefix("objstore-tmp-").unwrap_or(tail);
    let Some((pid, n)) = tail.split_once('-') else {
        // `.<dest>.objstore-tmp-<pid>-<n>.tmp` splits at the dot before `objstore`.
        return false;
    };
    !pid.is_empty()
        && !n.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
        && n.bytes().all(|b| b.is_ascii_digit())
}

/// What a sweep of temporary files found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// Left by dead writers, removed.
    pub removed: Vec<PathBuf>,
    /// Held by a live writer (locked) or too young to judge, kept.
    pub kept: usize,
}

/// A temporary entry younger than this is kept even when unlocked: its writer may be between
/// creating and locking it.
pub const SWEEP_MIN_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes, below `root` (down to 8 directory levels, not following symlinks), the
/// temporary files and directories of writers that are gone: an entry with a temporary name
/// ([`is_temp_name`]) that nobody holds locked and that is older than `min_age`. Symbolic
/// links (renamed into place right after they are made) go by age alone.
pub fn sweep_temp_files(root: &Path, min_age: std::time::Duration) -> Result<Swept> {
    let mut swept = Swept::default();
    sweep_dir(root, min_age, 0, &mut swept)?;
    Ok(swept)
}

fn sweep_dir(
    dir: &Path,
    min_age: std::time::Duration,
    depth: usize,
    swept: &mut Swept,
) -> Result<()> {
    if depth > MAX_SYNC_DEPTH {
        return Ok(());
    }
    let entries = fs::read_dir(dir).with_context(|| format!("sweep: listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("sweep: listing {}", dir.display()))?;
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let name = entry.file_name();
        if !is_temp_name(&name.to_string_lossy()) {
            if meta.is_dir() {
                sweep_dir(&path, min_age, depth + 1, swept)?;
            }
            continue;
        }
        let old = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age >= min_age);
        let unlocked = meta.file_type().is_symlink()
            || File::open(&path)
                .map(|f| f.try_lock().is_ok())
                .unwrap_or(false);
        if !(old && unlocked) {
            swept.kept += 1;
            continue;
        }
        let removed = if meta.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match removed {
            Ok(()) => swept.removed.push(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("sweep: removing {}", path.display())),
        }
    }
    Ok(())
}

/// Sweeps each of `roots` ([`sweep_temp_files`] with [`SWEEP_MIN_AGE`]) on a thread of its
/// own, so a daemon's start-up does not wait for the walk of a large store; logs what it
/// removed. Only entries nobody holds locked go, so the writers of other processes sharing a
/// store are left alone.
pub fn spawn_temp_sweep(roots: Vec<PathBuf>) {
    let spawned = std::thread::Builder::new()
        .name("temp-sweep".into())
        .spawn(move || {
            for root in roots {
                match sweep_temp_files(&root, SWEEP_MIN_AGE) {
                    Ok(swept) if !swept.removed.is_empty() => tracing::info!(
                        root = %root.display(),
                        removed = swept.removed.len(),
                        kept = swept.kept,
                        "removed temporary files of writers that are gone"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(root = %root.display(), error = %format!("{e:#}"), "sweeping temporary files failed"),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "starting the temporary file sweep failed");
    }
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

/// Makes what a step wrote durable before the state that relies on it is recorded: each
/// path that is a file is fsynced with its directory; each directory has every file below it
/// fsynced, then itself and its parent. Symbolic links are synced as entries of their
/// directory, not followed (what they point to is another step's output, synced by it).
pub fn sync_paths(paths: &[&Path]) -> Result<()> {
    for path in paths {
        let md = fs::symlink_metadata(path).with_context(|| format!("sync {}", path.display()))?;
        if md.is_dir() {
            sync_tree(path, 0)?;
        } else if md.is_file() {
            File::open(path)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("sync {}", path.display()))?;
        }
        sync_parent(path)?;
    }
    Ok(())
}

/// Creates `dir` and its missing ancestors, fsyncing the parent of each one made, so the new
/// directories survive a power cut (`create_dir_all` leaves their entries in the page cache).
pub fn create_dir_all_durable(dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.as_os_str().is_empty() || d.is_dir() {
            break;
        }
        missing.push(d);
        cur = d.parent();
    }
    for d in missing.into_iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => sync_parent(d)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(e).with_context(|| format!("create {}", d.display())),
        }
    }
    Ok(())
}

/// Directories nested deeper than this below a synced path are refused (a loop, or not a
/// sealing output).
const MAX_SYNC_DEPTH: usize = 8;

fn sync_tree(dir: &Path, depth: usize) -> Result<()> {
    anyhow::ensure!(
        depth <= MAX_SYNC_DEPTH,
        "sync {}: nested more than {MAX_SYNC_DEPTH} directories deep",
        dir.display()
    );
    let entries = fs::read_dir(dir).with_context(|| format!("sync: listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("sync: listing {}", dir.display()))?;
        let kind = entry
            .file_type()
            .with_context(|| format!("sync {}", entry.path().display()))?;
        if kind.is_dir() {
            sync_tree(&entry.path(), depth + 1)?;
        } else if kind.is_file() {
            File::open(entry.path())
                .and_then(|f| f.sync_all())
                .with_context(|| format!("sync {}", entry.path().display()))?;
        }
    }
    sync_dir(dir)
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
        let file = create_locked(&tmp)?;
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
        let mut from = File::open(src).with_context(|| format!("open {}", src.display()))?;
        let mut to = create_locked(&tmp)?;
        io::copy(&mut from, &mut to)
            .with_context(|| format!("copy {} to {}", src.display(), tmp.display()))?;
        let perms = from
            .metadata()
            .with_context(|| format!("stat {}", src.display()))?
            .permissions();
        to.set_permissions(perms)
            .with_context(|| format!("chmod {}", tmp.display()))?;
        to.sync_all()
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
    fn missing_directories_are_made_and_an_existing_one_is_fine() {
        let dir = tempfile::tempdir().expect("tmp");
        let deep = dir.path().join("a/b/c");
        create_dir_all_durable(&deep).expect("made");
        assert!(deep.is_dir());
        create_dir_all_durable(&deep).expect("again");
        fs::write(dir.path().join("file"), b"x").expect("file");
        assert!(create_dir_all_durable(&dir.path().join("file/sub")).is_err());
    }

    #[test]
    fn temporary_names_are_recognised_and_others_are_not() {
        for name in [
            ".s-t01000-1.4242-0.tmp",
            ".p_aux.1-17.tmp",
            ".sealed.objstore-tmp-4242-3.tmp",
        ] {
            assert!(is_temp_name(name), "{name}");
        }
        for name in [
            "s-t01000-1.4242-0.tmp",
            ".s-t01000-1.tmp",
            ".x.42.tmp",
            ".x.a-1.tmp",
            ".x.1-.tmp",
            ".x.objstore-tmp-.tmp",
            "p_aux",
            ".tmp",
        ] {
            assert!(!is_temp_name(name), "{name}");
        }
    }

    #[test]
    fn a_sweep_removes_what_dead_writers_left_and_keeps_what_live_ones_hold() {
        let dir = tempfile::tempdir().expect("tmp");
        let cache = dir.path().join("cache").join("s-t01000-1");
        fs::create_dir_all(&cache).expect("dirs");
        let dead_file = cache.join(".p_aux.999999-0.tmp");
        fs::write(&dead_file, b"half").expect("dead");
        let dead_dir = dir.path().join(".cache.999999-1.tmp");
        fs::create_dir_all(dead_dir.join("inner")).expect("dead dir");
        let live_path = cache.join(".t_aux.1-2.tmp");
        let _live = create_locked(&live_path).expect("live");
        let live_dir_path = dir.path().join(".sealed.objstore-tmp-1-3.tmp");
        let _live_dir = create_locked_dir(&live_dir_path).expect("live dir");
        let real = cache.join("p_aux");
        fs::write(&real, b"aux").expect("real");
        std::os::unix::fs::symlink("/nonexistent", cache.join(".tree-d.1-4.tmp")).expect("link");

        let young = sweep_temp_files(dir.path(), SWEEP_MIN_AGE).expect("sweep");
        assert!(
            young.removed.is_empty(),
            "nothing is older than a minute: {young:?}"
        );
        let swept = sweep_temp_files(dir.path(), std::time::Duration::ZERO).expect("sweep");
        let mut removed = swept.removed.clone();
        removed.sort();
        let mut expected = vec![
            dead_dir.clone(),
            dead_file.clone(),
            cache.join(".tree-d.1-4.tmp"),
        ];
        expected.sort();
        assert_eq!(removed, expected);
        assert_eq!(swept.kept, 2, "the two locked ones");
        assert!(live_path.exists() && live_dir_path.exists() && real.exists());
        drop(_live);
        let after = sweep_temp_files(dir.path(), std::time::Duration::ZERO).expect("sweep");
        assert_eq!(
            after.removed,
            vec![live_path],
            "its writer closed it without renaming"
        );
    }

    #[test]
    fn outputs_are_synced_files_dirs_and_links_alike_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().expect("tmp");
        let cache = dir.path().join("cache");
        fs::create_dir_all(cache.join("sub")).expect("dirs");
        fs::write(cache.join("p_aux"), b"aux").expect("file");
        fs::write(cache.join("sub").join("layer"), b"layer").expect("file");
        std::os::unix::fs::symlink("/nonexistent/target", cache.join("tree-d")).expect("link");
        let sealed = dir.path().join("sealed");
        fs::write(&sealed, b"sealed").expect("sealed");
        sync_paths(&[&cache, &sealed]).expect("synced");
        let missing = dir.path().join("missing");
        let err = sync_paths(&[&missing]).expect_err("missing");
        assert!(format!("{err:#}").contains("missing"), "{err:#}");
    }

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
