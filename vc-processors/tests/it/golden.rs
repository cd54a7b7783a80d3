//! Golden JSON: every builtin task and output parses from the reference's shape and
//! serialises back to exactly the same compact JSON (field order included).

use std::path::PathBuf;

use crate::golden_json;

use serde::de::DeserializeOwned;
use serde::Serialize;
use vc_processors::builtin::tasks::*;
use vc_processors::protocol::{Request, Response, Task};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn golden(name: &str) -> String {
    golden_json::golden(&fixtures(), name)
}

fn round_trip<V: Serialize + DeserializeOwned>(name: &str) -> V {
    golden_json::round_trip(&fixtures(), name)
}

fn task_and_output<T: Task>(name: &str) -> (T, T::Output) {
    let task: T = round_trip(&format!("{name}.task"));
    let output: T::Output = round_trip(&format!("{name}.output"));
    assert_eq!(T::STAGE, name);
    // And inside the envelopes.
    let req = serde_json::to_string(&Request { id: 9, task }).expect("request");
    assert!(req.starts_with(r#"{"id":9,"task":{"#) || req.starts_with(r#"{"id":9,"task":"#));
    let task = serde_json::from_str::<Request<T>>(&req)
        .expect("request back")
        .task;
    let resp = serde_json::to_string(&Response::ok(9, output)).expect("response");
    assert!(
        resp.starts_with(r#"{"id":9,"err_msg":null,"output":"#),
        "{resp}"
    );
    let output = serde_json::from_str::<Response<T::Output>>(&resp)
        .expect("response back")
        .output
        .expect("output");
    (task, output)
}

#[test]
fn add_pieces() {
    let (task, out) = task_and_output::<AddPieces>("add_pieces");
    assert!(matches!(task.pieces[0].piece_file, PieceFile::Url(_)));
    assert_eq!(task.pieces[1].piece_file, PieceFile::Pledge);
    assert!(matches!(task.pieces[2].piece_file, PieceFile::Local(_)));
    assert_eq!(u64::from(out[0].size), 1_065_353_216);
    // The unit variant is a bare string on output, but `{"pledge":null}` is accepted on input.
    let p: PieceFile = serde_json::from_str(r#"{"pledge":null}"#).expect("tagged pledge");
    assert_eq!(p, PieceFile::Pledge);
}

#[test]
fn tree_d() {
    let (_, out) = task_and_output::<TreeD>("tree_d");
    assert!(out);
}

#[test]
fn pc1() {
    let (task, out) = task_and_output::<PC1>("pc1");
    assert_eq!(u64::from(task.sector_id), 5);
    assert_eq!(&task.prover_id[..2], &[232, 7]);
    assert_eq!(out.comm_d[..4], [252, 126, 146, 130]);
}

#[test]
fn pc2() {
    let (task, out) = task_and_output::<PC2>("pc2");
    assert_eq!(
        task.pc1out.registered_proof,
        RegisteredSealProof::StackedDrg2KiBV1_1
    );
    assert_eq!(out.comm_d, task.pc1out.comm_d);
}

#[test]
fn c2_output_is_a_plain_byte_array() {
    let out: <C2 as Task>::Output = round_trip("c2.output");
    assert_eq!(out.proof.len(), 192);
}

#[test]
fn snap_encode_and_prove() {
    let (task, _) = task_and_output::<SnapEncode>("snap_encode");
    assert_eq!(
        task.registered_proof,
        RegisteredUpdateProof::StackedDrg32GiBV1
    );
    let (task, out) = task_and_output::<SnapProve>("snap_prove");
    assert_eq!(task.vannilla_proofs, vec![vec![1, 2, 3], vec![4, 5, 6]]);
    assert_eq!(out, vec![171, 3, 0, 255]);
}

#[test]
fn transfer() {
    let (task, out) = task_and_output::<Transfer>("transfer");
    assert!(out);
    assert_eq!(
        task.routes[1].opt,
        Some(TransferOption {
            is_dir: true,
            allow_link: true
        })
    );
    assert_eq!(
        task.stores["ps1"]
            .meta
            .as_ref()
            .and_then(|m| m.get("Bucket"))
            .map(String::as_str),
        Some("sectors")
    );
}

#[test]
fn window_post_proofs_are_base64_and_faults_numbers() {
    let (task, out) = task_and_output::<WindowPoSt>("window_post");
    assert_eq!(
        task.proof_type,
        RegisteredPoStProof::StackedDrgWindow32GiBV1_2
    );
    assert_eq!(&*out.proofs[0], &[0xa1, 0xb2, 0xc3]);
    let faults: WindowPoStOutput = round_trip("window_post.faults");
    assert_eq!(faults.faults, vec![3, 7]);
}

#[test]
fn winning_post() {
    let (task, out) = task_and_output::<WinningPoSt>("winning_post");
    assert_eq!(
        task.proof_type,
        RegisteredPoStProof::StackedDrgWinning2KiBV1
    );
    assert_eq!(&*out.proofs[0], &[0, 1, 2, 3]);
}

#[test]
fn unseal() {
    let (task, out) = task_and_output::<Unseal>("unseal");
    assert_eq!(u64::from(task.num_bytes), 2032);
    assert_eq!(u64::from(out), 2032);
}

#[test]
fn unit_daemon_task() {
    assert_eq!(<() as Task>::STAGE, "EMPTY");
    assert_eq!(
        serde_json::to_string(&Request { id: 1, task: () }).expect("req"),
        r#"{"id":1,"task":null}"#
    );
    assert_eq!(
        serde_json::to_string(&Response::ok(1, ())).expect("resp"),
        r#"{"id":1,"err_msg":null,"output":null}"#
    );
}

#[test]
fn commitments_are_arrays_not_strings() {
    let wire = golden("pc2.output");
    assert!(wire.contains(r#""comm_r":["#));
    // A base64 commitment is refused with an error, not accepted.
    let bad = wire.replace(
        &wire[wire.find(r#""comm_r":"#).expect("comm_r")
            ..wire.find(r#","comm_d""#).expect("comm_d")],
        r#""comm_r":"AAAA""#,
    );
    assert!(serde_json::from_str::<<PC2 as Task>::Output>(&bad).is_err());
}
