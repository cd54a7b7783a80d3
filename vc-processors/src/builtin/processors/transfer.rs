//! transfer: copy or link files and directories, route by route (vc-processors-spec §5.1).
//!
//! Routes run in order and the first failure stops the task. Each route:
//! - `src` and `dest` must be absolute; `src` must exist (symlinks followed);
//! - an existing `dest` must be of the same kind (file or directory) as `src`;
//! - with `opt.allow_link` and links allowed, `dest` becomes a symlink to `src`;
//! - otherwise `src` is copied.
//!
//! Unlike damocles: a file copy goes to a temporary name beside `dest`, is fsynced and then
//! renamed over `dest`, so `dest` is never seen half-written; a directory is copied beside
//! `dest` and swapped in, recreating empty directories too; an existing `dest` that is a
//! symlink is replaced as a link and its target is never touched; copying a path onto itself,
//! a directory into itself, or over a directory that contains the source is refused, and so is
//! a symlink loop inside a copied tree.
//!
//! Our addition: a route end whose store carries an objstore `plugin` is an object path in
//! that store, read or written through the plugin (see [`open_plugin_store`]).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

use super::super::fsutil::{
    copy_file_atomic, create_dir_all_durable, create_locked_dir, lock_existing, rename_into_place,
    sync_dir, temp_path_beside,
};
use super::super::tasks::{Transfer, TransferRoute};

mod objects;

pub use objects::open_plugin_store;

/// Runs a transfer task. `allow_links` is false under `--disable-link` / `DISABLE_LINK`.
pub fn transfer(task: &Transfer, allow_links: bool) -> Result<bool> {
    let mut stores = objects::OpenStores::default();
    for (index, route) in task.routes.iter().enumerate() {
        (|| {
            let src_store = stores.store_of(task, &route.src)?;
            let dest_store = stores.store_of(task, &route.dest)?;
            if src_store.is_none() && dest_store.is_none() {
                transfer_route(route, allow_links)
            } else {
                objects::transfer_route(route, src_store, dest_store)
            }
        })()
        .with_context(|| {
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
            // Replacing dest would delete src with it.
            ensure!(
                !src_real.starts_with(&dest_real),
                "src {} is inside dest {}, which would be replaced",
                src.display(),
                dest.display()
            );
        }
    }
    if src_is_dir {
        let dest_abs = resolve_parent(dest)?;
        ensure!(
            !dest_abs.starts_with(&src_real),
            "cannot copy directory {} into itself ({})",
            src.display(),
            dest.display()
        );
    }

    if let Some(parent) = dest.parent() {
        create_dir_all_durable(parent)?;
    }
    let link = allow_links && route.opt.map(|o| o.allow_link).unwrap_or(false);
    if link {
        replace_with_symlink(&src_real, dest, dest_existing.as_ref())
    } else if src_is_dir {
        replace_with_dir_copy(src, dest, dest_existing.as_ref())
    } else {
        copy_file_atomic(src, dest)
    }
}

/// `dest` with its existing ancestors resolved (dest itself may not exist yet).
fn resolve_parent(dest: &Path) -> Result<PathBuf> {
    let (Some(parent), Some(name)) = (dest.parent(), dest.file_name()) else {
        bail!("dest {} has no parent directory", dest.display());
    };
    let mut existing = parent.to_path_buf();
    let mut missing = Vec::new();
    while !existing.exists() {
        match (existing.file_name(), existing.parent()) {
            (Some(n), Some(p)) => {
                missing.push(n.to_owned());
                existing = p.to_path_buf();
            }
            _ => break,
        }
    }
    let mut out = fs::canonicalize(&existing).unwrap_or(existing);
    out.extend(missing.into_iter().rev());
    out.push(name);
    Ok(out)
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

/// Makes `dest` a symlink to `src`, replacing a file or link atomically, or a directory.
fn replace_with_symlink(src: &Path, dest: &Path, existing: Option<&fs::Metadata>) -> Result<()> {
    if let Some(meta) = existing {
        if meta.is_dir() {
            remove_entry(dest, meta)?;
        }
    }
    let tmp = temp_path_beside(dest);
    std::os::unix::fs::symlink(src, &tmp)
        .with_context(|| format!("create symlink {} -> {}", tmp.display(), src.display()))?;
    rename_into_place(&tmp, dest)
}

/// Copies the tree `src` beside `dest`, then swaps it in: until the last rename the old
/// `dest` is intact, and a failed copy leaves it untouched.
fn replace_with_dir_copy(src: &Path, dest: &Path, existing: Option<&fs::Metadata>) -> Result<()> {
    let tmp = temp_path_beside(dest);
    // Locked while the copy runs, so a sweep of another process leaves it alone.
    let _lock = create_locked_dir(&tmp)?;
    let mut _old_lock = None;
    let mut ancestors = Vec::new();
    if let Err(e) = copy_dir(src, &tmp, &mut ancestors) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let old = match existing {
        Some(meta) if meta.is_dir() => {
            let old = temp_path_beside(dest);
            // Locked before it gets a temporary name: a sweep leaves it alone until it is
            // removed (or put back if the swap fails).
            _old_lock = Some(lock_existing(dest)?);
            fs::rename(dest, &old)
                .with_context(|| format!("move aside {} to {}", dest.display(), old.display()))?;
            Some(old)
        }
        Some(meta) => {
            remove_entry(dest, meta)?;
            None
        }
        None => None,
    };
    if let Err(e) = fs::rename(&tmp, dest) {
        if let Some(old) = &old {
            let _ = fs::rename(old, dest);
        }
        let _ = fs::remove_dir_all(&tmp);
        return Err(e).with_context(|| format!("rename {} to {}", tmp.display(), dest.display()));
    }
    if let Some(parent) = dest.parent() {
        sync_dir(parent)?;
    }
    if let Some(old) = old {
        fs::remove_dir_all(&old).with_context(|| format!("remove old copy {}", old.display()))?;
    }
    Ok(())
}

/// Copies a directory tree, following symlinks; a link back to a directory being copied is
/// refused instead of recursing forever.
fn copy_dir(src: &Path, dest: &Path, ancestors: &mut Vec<(u64, u64)>) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(src).with_context(|| format!("stat {}", src.display()))?;
    let key = (meta.dev(), meta.ino());
    ensure!(
        !ancestors.contains(&key),
        "symlink loop: {} leads back to a directory being copied",
        src.display()
    );
    ancestors.push(key);
    fs::create_dir_all(dest).with_context(|| format!("create {}", dest.display()))?;
    for entry in fs::read_dir(src).with_context(|| format!("read {}", src.display()))? {
        let entry = entry.with_context(|| format!("read {}", src.display()))?;
        let from = entry.path();
        let to = dest.join(entry.file_name());
        let meta = fs::metadata(&from).with_context(|| format!("stat {}", from.display()))?;
        if meta.is_dir() {
            copy_dir(&from, &to, ancestors)?;
        } else {
            copy_file_atomic(&from, &to)?;
        }
    }
    ancestors.pop();
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
        fs::create_dir_all(dir.join("sub")).expect("mkdir");
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
            (route(&dir.join("sub"), &dir, false), "is inside dest"),
        ];
        for (r, want) in cases {
            let e = transfer(&task(vec![r]), true).expect_err(want);
            assert!(
                format!("{e:#}").contains(want),
                "{e:#} should mention {want}"
            );
        }
        assert_eq!(fs::read(&file).expect("untouched"), b"f");
        assert!(dir.join("sub").is_dir(), "the source inside dest survived");
    }

    #[test]
    fn symlink_loops_are_refused_and_the_old_dest_survives() {
        let d = tempfile::tempdir().expect("tmp");
        let src = d.path().join("src");
        fs::create_dir_all(src.join("a")).expect("mkdir");
        std::os::unix::fs::symlink(&src, src.join("a/back")).expect("loop");
        let dest = d.path().join("dest");
        fs::create_dir_all(&dest).expect("mkdir");
        fs::write(dest.join("old"), b"old").expect("write");
        let e = transfer(&task(vec![route(&src, &dest, false)]), true).expect_err("loop");
        assert!(format!("{e:#}").contains("symlink loop"), "{e:#}");
        assert_eq!(fs::read(dest.join("old")).expect("old dest intact"), b"old");
        let names: Vec<_> = fs::read_dir(d.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n.ends_with(".tmp")),
            "temporary copy removed: {names:?}"
        );
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
