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
fn synthetic_porep_sector_seals_without_its_layers_and_verifies() {
    use vc_processors::builtin::proofs;
    use vc_processors::builtin::tasks::{RegisteredSealProof, SectorId};

    params(&[ParamKind::PoRep]);
    let dir = tempfile::tempdir().expect("tmp");
    let stages = Stages::builtin();
    let proof = RegisteredSealProof::StackedDrg2KiBV1_1_Feat_SyntheticPoRep;
    assert!(proofs::needs_synthetic_proofs(proof));
    assert!(!proofs::needs_synthetic_proofs(SEAL_PROOF));
    let sector = seal_through_pc2_with(&stages, dir.path(), 2, false, proof);
    proofs::generate_synth_proofs(
        &sector.cache,
        &sector.sealed,
        prover_id(),
        SectorId::from(sector.number),
        sector.ticket,
        sector.pc2.clone(),
        &sector.pieces,
    )
    .expect("synthetic proofs");
    let removed = proofs::clear_layer_data(&sector.cache).expect("clear layers");
    assert_eq!(removed, 2, "a 2 KiB sector has two layers");
    commit_and_verify(&stages, &sector);
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

/// A tiny HTTP server: `/piecestore/<name>` redirects to `/market/<name>`, which serves the
/// piece only with the bearer token and the market namespace header; anything else is 404.
fn piece_server(
    payload: Vec<u8>,
    token: &'static str,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                headers.push(h.trim().to_ascii_lowercase());
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string();
            let authorized = headers
                .iter()
                .any(|h| h == &format!("authorization: bearer {token}"));
            let namespaced = headers
                .iter()
                .any(|h| h == "x-venus-api-namespace: v1.imarket");
            seen.lock()
                .expect("log")
                .push(format!("{path} auth={authorized} ns={namespaced}"));
            let response: Vec<u8> = if let Some(name) = path.strip_prefix("/piecestore/") {
                format!("HTTP/1.1 302 Found\r\nLocation: /market/{name}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes()
            } else if path.starts_with("/market/") && authorized && namespaced {
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    payload.len()
                )
                .into_bytes();
                r.extend_from_slice(&payload);
                r
            } else if path.starts_with("/market/") {
                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec()
            } else {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
            };
            let _ = stream.write_all(&response);
        }
    });
    (format!("http://{addr}"), log)
}

#[test]
fn add_pieces_fetches_http_pieces_through_the_redirect_with_the_token() {
    use vc_processors::builtin::tasks::{AddPieces, Piece, PieceFile, UnpaddedBytesAmount};
    use vc_processors::Processor;

    let payload: Vec<u8> = (0..700u32).map(|i| (i % 253) as u8).collect();
    let (base, log) = piece_server(payload.clone(), "s3cret");
    let dir = tempfile::tempdir().expect("tmp");
    let local = dir.path().join("piece");
    std::fs::write(&local, &payload).expect("write");
    let builtin = vc_processors::builtin::BuiltinProcessor {
        piece_token: Some("s3cret".to_string()),
        ..Default::default()
    };
    let task = |file: PieceFile, staged: &str| AddPieces {
        seal_proof_type: SEAL_PROOF,
        pieces: vec![Piece {
            piece_file: file,
            payload_size: 700,
            piece_size: UnpaddedBytesAmount(1016),
        }],
        staged_filepath: dir.path().join(staged),
    };
    let from_http = builtin
        .process(task(
            PieceFile::Url(format!("{base}/piecestore/baga-test")),
            "a",
        ))
        .expect("http piece");
    let from_file = builtin
        .process(task(PieceFile::Local(local), "b"))
        .expect("local piece");
    assert_eq!(from_http, from_file, "same commitment either way");
    assert_eq!(
        std::fs::read(dir.path().join("a")).expect("a"),
        std::fs::read(dir.path().join("b")).expect("b")
    );
    let log = log.lock().expect("log").clone();
    assert_eq!(
        log,
        vec![
            "/piecestore/baga-test auth=true ns=false".to_string(),
            "/market/baga-test auth=true ns=true".to_string()
        ]
    );

    let err = builtin
        .process(task(PieceFile::Url(format!("{base}/nothing")), "c"))
        .expect_err("404");
    assert!(format!("{err:#}").contains("404"), "{err:#}");
    // A source shorter than its payload is an error, not a wrong commitment.
    let short = dir.path().join("short");
    std::fs::write(&short, &payload[..100]).expect("write");
    let err = builtin
        .process(task(PieceFile::Local(short), "d"))
        .expect_err("short");
    assert!(
        format!("{err:#}").contains("after 100 of its 700 payload bytes"),
        "{err:#}"
    );
}
