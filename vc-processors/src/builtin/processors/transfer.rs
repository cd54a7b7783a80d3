//! transfer: copy or link files and directories, route by route (vc-processors-spec §5.1).
//!
//! Routes run in order and the first failure stops the task. Each route:
//! - `src` and `dest` must be absolute; `src` must exist (symlinks followed);
//! - an existing `dest` must be of the same kind (file or directory) as `src`;
//! - with `opt.allow_link` and links allowed, `dest` becomes a symlink to `src`;
//! - otherwise `src` is copied.
//!
//! Unlike damocles: a file copy goes to a temporary name beside `dest`, is fsynced and then
//! renamed over `dest`, so `dest` is never seen half-written; a directory copy recreates empty
//! directories too; an existing `dest` that is a symlink is replaced as a link and its target
//! is never touched; copying a path onto itself or a directory into itself is refused.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, ensure, Context, Result};

use super::super::tasks::{Transfer, TransferRoute};

/// Runs a transfer task. `allow_links` is false under `--disable-link` / `DISABLE_LINK`.
pub fn transfer(task: &Transfer, allow_links: bool) -> Result<bool> {
    for (index, route) in task.routes.iter().enumerate() {
        transfer_route(route, allow_links).with_context(|| {
            format!(
                "route {index}: {} -> {}",
                route.src.uri.display(),
                route.dest.uri.display()
            )
        })?;
    }
    Ok(true)
}

fn transfer_route(route: &TransferRoute, allow_links: bool) -> Result<()> {
    let src = &route.src.uri;
    let dest = &route.dest.uri;
    ensure!(src.is_absolute(), "src path is relative: {}", src.display());
    ensure!(
        dest.is_absolute(),
        "dest path is relative: {}",
        dest.display()
    );
    let src_meta = match fs::metadata(src) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!("src path not exists: {}", src.display())
        }
        Err(e) => return Err(e).with_context(|| format!("stat {}", src.display())),
    };
    let src_is_dir = src_meta.is_dir();
    let src_real = fs::canonicalize(src).with_context(|| format!("resolve {}", src.display()))?;

    let dest_existing = fs::symlink_metadata(dest).ok();
    if let Some(meta) = &dest_existing {
        // The kind of what dest designates (through a link, if it is one that resolves).
        let dest_is_dir = if meta.file_type().is_symlink() {
            fs::metadata(dest).map(|m| m.is_dir()).ok()
        } else {
            Some(meta.is_dir())
        };
        if let Some(dest_is_dir) = dest_is_dir {
            ensure!(
                dest_is_dir == src_is_dir,
                "dest entry type is different with src, is_dir={src_is_dir}"
            );
        }
        if !meta.file_type().is_symlink() {
            let dest_real =
                fs::canonicalize(dest).with_context(|| format!("resolve {}", dest.display()))?;
            ensure!(dest_real != src_real, "src and dest are the same path");
        }
    }
    if src_is_dir {
        let dest_abs = absolute_parent_resolved(dest)?;
        ensure!(
            !dest_abs.starts_with(&src_real),
            "cannot copy directory {} into itself ({})",
            src.display(),
            dest.display()
        );
    }

    let link = allow_links && route.opt.map(|o| o.allow_link).unwrap_or(false);
    create_parent(dest)?;
    if link {
        return replace_with_symlink(&src_real, dest, dest_existing.as_ref());
    }
    if src_is_dir {
        if let Some(meta) = &dest_existing {
            remove_entry(dest, meta)?;
        }
        copy_dir(src, dest)
    } else {
        copy_file_atomic(src, dest)
    }
}

/// `dest` with its parent resolved (dest itself may not exist yet).
fn absolute_parent_resolved(dest: &Path) -> Result<PathBuf> {
    let (Some(parent), Some(name)) = (dest.parent(), dest.file_name()) else {
        bail!("dest {} has no parent directory", dest.display());
    };
    let mut resolved = parent.to_path_buf();
    // Resolve the longest existing prefix of the parent.
    let mut missing = Vec::new();
    while !resolved.exists() {
        match (resolved.file_name(), resolved.parent()) {
            (Some(n), Some(p)) => {
                missing.push(n.to_owned());
                resolved = p.to_path_buf();
            }
            _ => break,
        }
    }
    let mut out = fs::canonicalize(&resolved).unwrap_or(resolved);
    for n in missing.into_iter().rev() {
        out.push(n);
    }
    out.push(name);
    Ok(out)
}

fn create_parent(dest: &Path) -> Result<()> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    Ok(())
}

/// Removes a file, a symlink (never its target) or a whole directory.
fn remove_entry(path: &Path, meta: &fs::Metadata) -> Result<()> {
    let res = if meta.is_dir() {
        // std's remove_dir_all does not follow symlinks inside the tree.
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    res.with_context(|| format!("remove existing {}", path.display()))
}

fn temp_name(dest: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.transfer-{}-{n}.tmp", std::process::id()))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("sync directory {}", dir.display()))
}

/// Makes `dest` a symlink to `src`, replacing a file or link atomically, or a directory.
fn replace_with_symlink(src: &Path, dest: &Path, existing: Option<&fs::Metadata>) -> Result<()> {
    if let Some(meta) = existing {
        if meta.is_dir() {
            remove_entry(dest, meta)?;
        }
    }
    let tmp = temp_name(dest);
    std::os::unix::fs::symlink(src, &tmp)
        .with_context(|| format!("create symlink {} -> {}", tmp.display(), src.display()))?;
    if let Err(e) = fs::rename(&tmp, dest) {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("rename {} to {}", tmp.display(), dest.display()));
    }
    if let Some(parent) = dest.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Copies a file to a temporary name, fsyncs it and renames it over `dest`.
fn copy_file_atomic(src: &Path, dest: &Path) -> Result<()> {
    let tmp = temp_name(dest);
    let result = (|| -> Result<()> {
        fs::copy(src, &tmp)
            .with_context(|| format!("copy {} to {}", src.display(), tmp.display()))?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("sync {}", tmp.display()))?;
        fs::rename(&tmp, dest)
            .with_context(|| format!("rename {} to {}", tmp.display(), dest.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    if let Some(parent) = dest.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Copies a directory tree; files are copied atomically, symlinks are followed.
fn copy_dir(src: &Path, dest: &Path) -> Result<()> {
    fs::create_dir_all(dest).with_context(|| format!("create {}", dest.display()))?;
    for entry in fs::read_dir(src).with_context(|| format!("read {}", src.display()))? {
        let entry = entry.with_context(|| format!("read {}", src.display()))?;
        let from = entry.path();
        let to = dest.join(entry.file_name());
        let meta = fs::metadata(&from).with_context(|| format!("stat {}", from.display()))?;
        if meta.is_dir() {
            copy_dir(&from, &to)?;
        } else {
            copy_file_atomic(&from, &to)?;
        }
    }
    sync_dir(dest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::tasks::{TransferItem, TransferOption};
    use std::collections::HashMap;

    fn route(src: &Path, dest: &Path, link: bool) -> TransferRoute {
        TransferRoute {
            src: TransferItem {
                store_name: None,
                uri: src.to_path_buf(),
            },
            dest: TransferItem {
                store_name: Some("ps".into()),
                uri: dest.to_path_buf(),
            },
            opt: link.then_some(TransferOption {
                is_dir: false,
                allow_link: true,
            }),
        }
    }

    fn task(routes: Vec<TransferRoute>) -> Transfer {
        Transfer {
            stores: HashMap::new(),
            routes,
        }
    }

    #[test]
    fn copies_files_and_trees_including_empty_dirs() {
        let d = tempfile::tempdir().expect("tmp");
        let src = d.path().join("cache");
        fs::create_dir_all(src.join("sub/empty")).expect("mkdir");
        fs::write(src.join("p_aux"), b"paux").expect("write");
        fs::write(src.join("sub/t_aux"), b"taux").expect("write");
        let file = d.path().join("sealed");
        fs::write(&file, b"sealed-bytes").expect("write");
        let store = d.path().join("store");
        let out = transfer(
            &task(vec![
                route(&file, &store.join("sealed/s-t01000-1"), false),
                route(&src, &store.join("cache/s-t01000-1"), false),
            ]),
            true,
        )
        .expect("transfer");
        assert!(out);
        assert_eq!(
            fs::read(store.join("sealed/s-t01000-1")).expect("read"),
            b"sealed-bytes"
        );
        assert_eq!(
            fs::read(store.join("cache/s-t01000-1/p_aux")).expect("read"),
            b"paux"
        );
        assert_eq!(
            fs::read(store.join("cache/s-t01000-1/sub/t_aux")).expect("read"),
            b"taux"
        );
        assert!(store.join("cache/s-t01000-1/sub/empty").is_dir());
        assert!(!fs::symlink_metadata(store.join("sealed/s-t01000-1"))
            .expect("meta")
            .file_type()
            .is_symlink());
        // No temporary files left behind.
        let leftovers: Vec<_> = fs::read_dir(store.join("sealed"))
            .expect("read")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn links_when_allowed_and_copies_when_disabled() {
        let d = tempfile::tempdir().expect("tmp");
        let src = d.path().join("sealed");
        fs::write(&src, b"x").expect("write");
        let dest = d.path().join("local/sealed");
        transfer(&task(vec![route(&src, &dest, true)]), true).expect("link");
        assert_eq!(
            fs::read_link(&dest).expect("is a link"),
            fs::canonicalize(&src).expect("canon")
        );
        transfer(&task(vec![route(&src, &dest, true)]), false).expect("copy");
        assert!(!fs::symlink_metadata(&dest)
            .expect("meta")
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&dest).expect("read"), b"x");
    }

    #[test]
    fn replacing_a_symlinked_dest_never_touches_its_target() {
        let d = tempfile::tempdir().expect("tmp");
        let precious = d.path().join("precious");
        fs::create_dir_all(&precious).expect("mkdir");
        fs::write(precious.join("keep"), b"keep").expect("write");
        let src = d.path().join("src");
        fs::create_dir_all(&src).expect("mkdir");
        fs::write(src.join("new"), b"new").expect("write");
        let dest = d.path().join("dest");
        std::os::unix::fs::symlink(&precious, &dest).expect("link");
        transfer(&task(vec![route(&src, &dest, false)]), true).expect("copy over link");
        assert_eq!(
            fs::read(precious.join("keep")).expect("still there"),
            b"keep"
        );
        assert!(!precious.join("new").exists());
        assert_eq!(fs::read(dest.join("new")).expect("copied"), b"new");
        assert!(!fs::symlink_metadata(&dest)
            .expect("meta")
            .file_type()
            .is_symlink());
    }

    #[test]
    fn bad_routes_are_refused_with_reasons() {
        let d = tempfile::tempdir().expect("tmp");
        let file = d.path().join("f");
        fs::write(&file, b"f").expect("write");
        let dir = d.path().join("dir");
        fs::create_dir_all(&dir).expect("mkdir");
        let cases: Vec<(TransferRoute, &str)> = vec![
            (
                route(Path::new("rel/src"), &file, false),
                "src path is relative",
            ),
            (
                route(&file, Path::new("rel/dest"), false),
                "dest path is relative",
            ),
            (
                route(&d.path().join("missing"), &file, false),
                "src path not exists",
            ),
            (
                route(&file, &dir, false),
                "dest entry type is different with src, is_dir=false",
            ),
            (route(&file, &file, false), "same path"),
            (route(&dir, &dir.join("inside"), false), "into itself"),
        ];
        for (r, want) in cases {
            let e = transfer(&task(vec![r]), true).expect_err(want);
            assert!(
                format!("{e:#}").contains(want),
                "{e:#} should mention {want}"
            );
        }
        assert_eq!(fs::read(&file).expect("untouched"), b"f");
    }

    #[test]
    fn routes_stop_at_the_first_failure() {
        let d = tempfile::tempdir().expect("tmp");
        let a = d.path().join("a");
        fs::write(&a, b"a").expect("write");
        let out1 = d.path().join("out1");
        let out3 = d.path().join("out3");
        let e = transfer(
            &task(vec![
                route(&a, &out1, false),
                route(&d.path().join("missing"), &d.path().join("out2"), false),
                route(&a, &out3, false),
            ]),
            true,
        )
        .expect_err("second route fails");
        assert!(format!("{e:#}").starts_with("route 1:"), "{e:#}");
        assert!(out1.exists());
        assert!(!out3.exists());
    }
}
