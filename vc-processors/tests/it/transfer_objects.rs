//! The builtin transfer with a store behind an objstore plugin: the file-system plugin library
//! built beside this test's binaries (`libobjstore_fs.so`), loaded as the worker loads S3.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use vc_processors::builtin::processors::transfer::transfer;
use vc_processors::builtin::tasks::{
    Transfer, TransferItem, TransferOption, TransferPlugin, TransferRoute, TransferStoreInfo,
};

fn fs_plugin() -> PathBuf {
    let lib = Path::new(env!("CARGO_BIN_EXE_vc-processors-fixture"))
        .parent()
        .expect("target dir")
        .join("libobjstore_fs.so");
    assert!(
        lib.is_file(),
        "{} is missing: build the workspace (`cargo build --workspace`) first",
        lib.display()
    );
    lib
}

fn item(store: Option<&str>, uri: impl Into<PathBuf>) -> TransferItem {
    TransferItem {
        store_name: store.map(str::to_string),
        uri: uri.into(),
    }
}

fn route(src: TransferItem, dest: TransferItem) -> TransferRoute {
    TransferRoute {
        src,
        dest,
        opt: Some(TransferOption {
            is_dir: false,
            allow_link: true,
        }),
    }
}

fn task(root: &Path, library: PathBuf, routes: Vec<TransferRoute>) -> Transfer {
    let stores = HashMap::from([(
        "objects".to_string(),
        TransferStoreInfo {
            name: "objects".into(),
            meta: Some(HashMap::new()),
            plugin: Some(TransferPlugin {
                library,
                path: root.display().to_string(),
            }),
        },
    )]);
    Transfer { stores, routes }
}

#[test]
fn files_and_trees_go_into_a_plugin_store_and_come_back() {
    let d = tempfile::tempdir().expect("tmp");
    let sealed: Vec<u8> = (0..(1u32 << 20) + 3).map(|i| (i % 251) as u8).collect();
    fs::write(d.path().join("sealed"), &sealed).expect("write");
    let cache = d.path().join("cache");
    fs::create_dir_all(cache.join("sub/empty")).expect("mkdir");
    fs::write(cache.join("p_aux"), b"paux").expect("write");
    fs::write(cache.join("sub/t_aux"), b"taux").expect("write");
    let root = d.path().join("store");
    fs::create_dir_all(&root).expect("root");

    let up = task(
        &root,
        fs_plugin(),
        vec![
            route(
                item(None, d.path().join("sealed")),
                item(Some("objects"), "sealed/s-t01000-1"),
            ),
            route(
                item(None, &cache),
                item(Some("objects"), "cache/s-t01000-1"),
            ),
        ],
    );
    assert!(transfer(&up, true).expect("upload"));
    // Objects, not links, even though links were allowed.
    let stored = root.join("sealed/s-t01000-1");
    assert!(!fs::symlink_metadata(&stored)
        .expect("stored")
        .file_type()
        .is_symlink());
    assert_eq!(fs::read(&stored).expect("read"), sealed);
    assert_eq!(
        fs::read(root.join("cache/s-t01000-1/sub/t_aux")).expect("read"),
        b"taux"
    );

    let back = d.path().join("back");
    let down = task(
        &root,
        fs_plugin(),
        vec![
            route(
                item(Some("objects"), "sealed/s-t01000-1"),
                item(None, back.join("sealed")),
            ),
            route(
                item(Some("objects"), "cache/s-t01000-1"),
                item(None, back.join("cache")),
            ),
        ],
    );
    assert!(transfer(&down, true).expect("download"));
    assert_eq!(fs::read(back.join("sealed")).expect("read"), sealed);
    assert_eq!(fs::read(back.join("cache/p_aux")).expect("read"), b"paux");
    assert_eq!(
        fs::read(back.join("cache/sub/t_aux")).expect("read"),
        b"taux"
    );
}

#[test]
fn bad_object_routes_are_refused_with_reasons() {
    let d = tempfile::tempdir().expect("tmp");
    let root = d.path().join("store");
    fs::create_dir_all(&root).expect("root");
    let local = d.path().join("sealed");
    fs::write(&local, b"bytes").expect("write");
    let err = |t: Transfer| format!("{:#}", transfer(&t, true).expect_err("refused"));

    let e = err(task(
        &root,
        fs_plugin(),
        vec![route(
            item(None, &local),
            item(Some("objects"), "/abs/sealed"),
        )],
    ));
    assert!(
        e.contains("route 0") && e.contains("not an object path"),
        "{e}"
    );

    let e = err(task(
        &root,
        fs_plugin(),
        vec![route(
            item(Some("objects"), "sealed/missing"),
            item(None, d.path().join("out")),
        )],
    ));
    assert!(e.contains("src path not exists"), "{e}");

    let e = err(task(
        &root,
        fs_plugin(),
        vec![route(
            item(Some("objects"), "sealed/a"),
            item(Some("objects"), "sealed/b"),
        )],
    ));
    assert!(e.contains("between two object stores"), "{e}");

    let e = err(task(
        &root,
        d.path().join("libnothing.so"),
        vec![route(item(None, &local), item(Some("objects"), "sealed/x"))],
    ));
    assert!(
        e.contains("loading the objstore plugin") && e.contains("libnothing.so"),
        "{e}"
    );
    // Nothing was written by the refused routes.
    assert!(fs::read_dir(&root).expect("root").next().is_none());
}
