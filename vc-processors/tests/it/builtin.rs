//! Real 2 KiB sealing and proving through the builtin processors, in this process.

use vc_processors::builtin::params::{ensure_test_params, ParamKind};

use crate::sealing::*;

fn params(kinds: &[ParamKind]) {
    ensure_test_params(kinds).expect("test parameters");
}

#[test]
fn deal_sector_seals_and_its_proof_verifies() {
    params(&[ParamKind::PoRep]);
    let dir = tempfile::tempdir().expect("tmp");
    let stages = Stages::builtin();
    let sector = seal_through_pc2(&stages, dir.path(), 1, true);
    commit_and_verify(&stages, &sector);
    unseal_returns_the_piece(&stages, &sector);
}

#[test]
fn window_and_winning_post_verify_and_corruption_is_a_fault() {
    params(&[ParamKind::WindowPoSt, ParamKind::WinningPoSt]);
    let dir = tempfile::tempdir().expect("tmp");
    let stages = Stages::builtin();
    let a = seal_through_pc2(&stages, dir.path(), 11, false);
    let b = seal_through_pc2(&stages, dir.path(), 12, true);
    let store = dir.path().join("store");
    let replicas = vec![
        persist_copy(&stages, &a, &store),
        persist_copy(&stages, &b, &store),
    ];
    window_post_verifies(&stages, &replicas);
    winning_post_verifies(&stages, &replicas[1]);
    corrupted_replica_is_a_fault(&stages, &replicas, 12);
}

#[test]
fn snap_deals_encode_and_prove_verify() {
    params(&[ParamKind::SnapDeals]);
    let dir = tempfile::tempdir().expect("tmp");
    let stages = Stages::builtin();
    let cc = seal_through_pc2(&stages, dir.path(), 21, false);
    snap_up_verifies(&stages, dir.path(), &cc);
}
