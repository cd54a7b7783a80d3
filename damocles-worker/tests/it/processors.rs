//! Every builtin stage as a child process: `damocles-worker processor <stage>`, driven by the
//! vc-processors producer, runs the same real 2 KiB pipeline as the in-process tests.

use std::sync::Arc;
use std::time::Duration;

use vc_processors::builtin::params::{ensure_test_params, ParamKind};
use vc_processors::producer::StderrMode;
use vc_processors::{Producer, ProducerConfig, Task};

use crate::sealing::*;

const WORKER: &str = env!("CARGO_BIN_EXE_damocles-worker");

fn child<T: Task>() -> Arc<Producer<T>> {
    let mut cfg = ProducerConfig::new(T::STAGE, WORKER);
    cfg.args = vec!["processor".into(), T::STAGE.into()];
    cfg.ready_timeout = Duration::from_secs(30);
    cfg.stderr = StderrMode::Log;
    Arc::new(Producer::<T>::start(cfg).unwrap_or_else(|e| panic!("start {}: {e}", T::STAGE)))
}

fn children() -> Stages {
    Stages {
        add_pieces: child(),
        tree_d: child(),
        pc1: child(),
        pc2: child(),
        c2: child(),
        snap_encode: child(),
        snap_prove: child(),
        transfer: child(),
        window_post: child(),
        winning_post: child(),
        unseal: child(),
    }
}

#[test]
fn deal_sector_seals_through_child_processes_and_verifies() {
    ensure_test_params(&[ParamKind::PoRep]).expect("params");
    let dir = tempfile::tempdir().expect("tmp");
    let stages = children();
    let sector = seal_through_pc2(&stages, dir.path(), 31, true);
    commit_and_verify(&stages, &sector);
    unseal_returns_the_piece(&stages, &sector);
}

#[test]
fn post_through_child_processes_verifies_and_reports_faults() {
    ensure_test_params(&[ParamKind::WindowPoSt, ParamKind::WinningPoSt]).expect("params");
    let dir = tempfile::tempdir().expect("tmp");
    let stages = children();
    let a = seal_through_pc2(&stages, dir.path(), 41, false);
    let b = seal_through_pc2(&stages, dir.path(), 42, false);
    let store = dir.path().join("store");
    let replicas = vec![
        persist_copy(&stages, &a, &store),
        persist_copy(&stages, &b, &store),
    ];
    window_post_verifies(&stages, &replicas);
    winning_post_verifies(&stages, &replicas[0]);
    corrupted_replica_is_a_fault(&stages, &replicas, 41);
}

#[test]
fn snap_deals_through_child_processes_verify() {
    ensure_test_params(&[ParamKind::SnapDeals]).expect("params");
    let dir = tempfile::tempdir().expect("tmp");
    let stages = children();
    let cc = seal_through_pc2(&stages, dir.path(), 51, false);
    snap_up_verifies(&stages, dir.path(), &cc);
}

#[test]
fn transfer_child_links_unless_links_are_disabled() {
    use std::collections::HashMap;
    use vc_processors::builtin::tasks::{Transfer, TransferItem, TransferOption, TransferRoute};

    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("sealed");
    std::fs::write(&src, b"replica").expect("write");
    let task = |dest: &std::path::Path| Transfer {
        stores: HashMap::new(),
        routes: vec![TransferRoute {
            src: TransferItem {
                store_name: Some("ps".into()),
                uri: src.clone(),
            },
            dest: TransferItem {
                store_name: None,
                uri: dest.to_path_buf(),
            },
            opt: Some(TransferOption {
                is_dir: false,
                allow_link: true,
            }),
        }],
    };
    let is_link = |p: &std::path::Path| {
        std::fs::symlink_metadata(p)
            .expect("dest exists")
            .file_type()
            .is_symlink()
    };

    let linked = dir.path().join("local/linked");
    assert!(child::<Transfer>().call(task(&linked)).expect("transfer"));
    assert!(is_link(&linked), "links are allowed by default");

    let by_flag = dir.path().join("local/by-flag");
    let mut cfg = ProducerConfig::new("transfer", WORKER);
    cfg.args = vec![
        "processor".into(),
        "transfer".into(),
        "--disable-link".into(),
    ];
    let p = Producer::<Transfer>::start(cfg).expect("start");
    assert!(p.call(task(&by_flag)).expect("transfer"));
    assert!(!is_link(&by_flag), "--disable-link copies");

    let by_env = dir.path().join("local/by-env");
    let mut cfg = ProducerConfig::new("transfer", WORKER);
    cfg.args = vec!["processor".into(), "transfer".into()];
    cfg.envs = vec![("DISABLE_LINK".into(), "true".into())];
    let p = Producer::<Transfer>::start(cfg).expect("start");
    assert!(p.call(task(&by_env)).expect("transfer"));
    assert!(!is_link(&by_env), "DISABLE_LINK=true copies");
    assert_eq!(std::fs::read(&by_env).expect("read"), b"replica");
}

#[test]
fn unknown_stage_fails_with_a_usage_error() {
    let out = std::process::Command::new(WORKER)
        .args(["processor", "c1"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand 'c1'"));
}
