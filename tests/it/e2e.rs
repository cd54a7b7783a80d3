//! A test client drives the RPCs itself, computing every proof with the vc-processors
//! builtins, and seals a 2 KiB CC sector and a 2 KiB deal sector to the end on the devnet.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use damocles_manager::rpc::DamoclesApiClient;
use damocles_manager_api::json::Bytes;
use damocles_manager_api::rpc::{SealerApiClient, SealerCliApiClient};
use damocles_manager_api::types::*;
use jsonrpsee::http_client::HttpClient;
use vc_processors::builtin::proofs::{self, api};
use vc_processors::builtin::tasks::{self as t, Piece, PieceFile, UnpaddedBytesAmount};
use vc_processors::builtin::BuiltinProcessor;
use vc_processors::Processor;

use crate::common::{ok_text, TestManager, MINER};

const SEAL: api::RegisteredSealProof = api::RegisteredSealProof::StackedDrg2KiBV1_1;

struct Sealed {
    sector: AllocatedSector,
    dir: PathBuf,
    pieces: Vec<api::PieceInfo>,
    pc2: api::seal::SealPreCommitPhase2Output,
    ticket: Ticket,
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn report(c: &HttpClient, sid: SectorId, next: &str) -> SectorStateResp {
    let req = ReportStateReq {
        worker: WorkerIdentifier {
            instance: "e2e".into(),
            location: "test".into(),
        },
        state_change: SectorStateChange {
            prev: String::new(),
            next: next.into(),
            event: next.into(),
        },
        failure: None,
    };
    block_on(SealerApiClient::report_state(c, sid, req)).expect("report state")
}

/// Allocation through PC2 and the PreCommit submission.
fn seal_and_pre_commit(m: &TestManager, root: &Path, want_deals: bool) -> Sealed {
    let c = m.client();
    let p = BuiltinProcessor {
        piece_token: Some(m.token(damocles_auth::Perm::Write)),
        ..BuiltinProcessor::default()
    };
    let sector = block_on(SealerApiClient::allocate_sector(
        &c,
        AllocateSectorSpec::default(),
    ))
    .expect("allocate")
    .expect("a sector");
    let sid = sector.id;
    let deals = block_on(SealerApiClient::acquire_deals(
        &c,
        sid,
        AcquireDealsSpec::default(),
    ))
    .expect("deals");
    assert_eq!(deals.is_some(), want_deals, "deals of {sid}: {deals:?}");
    let ticket = block_on(SealerApiClient::assign_ticket(&c, sid)).expect("ticket");
    report(&c, sid, "TicketAssigned");

    let dir = root.join(sid.to_string());
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).expect("cache dir");
    let staged = dir.join("staged");
    let sealed = dir.join("sealed");
    let pieces: Vec<Piece> = deals
        .unwrap_or_default()
        .iter()
        .map(|sp| {
            let unpadded = sp.piece.size / 128 * 127;
            if sp.is_filler() {
                Piece {
                    piece_file: PieceFile::Pledge,
                    payload_size: unpadded,
                    piece_size: UnpaddedBytesAmount(unpadded),
                }
            } else {
                Piece {
                    piece_file: PieceFile::Url(format!(
                        "http://{}/piecestore/{}",
                        m.addr.expect("addr"),
                        sp.piece.piece_cid
                    )),
                    payload_size: sp.deal_info.payload_size,
                    piece_size: UnpaddedBytesAmount(unpadded),
                }
            }
        })
        .collect();
    let infos = p
        .process(t::AddPieces {
            seal_proof_type: SEAL,
            pieces,
            staged_filepath: staged.clone(),
        })
        .expect("add pieces");
    std::fs::write(&sealed, b"").expect("sealed file");
    let ticket_bytes: [u8; 32] = ticket.ticket.0.as_slice().try_into().expect("32 bytes");
    let pc1 = p
        .process(t::PC1 {
            registered_proof: SEAL,
            cache_path: cache.clone(),
            in_path: staged.clone(),
            out_path: sealed.clone(),
            prover_id: proofs::to_prover_id(MINER),
            sector_id: api::SectorId::from(sid.number),
            ticket: ticket_bytes,
            piece_infos: infos.clone(),
        })
        .expect("pc1");
    let pc2 = p
        .process(t::PC2 {
            pc1out: pc1,
            cache_dir: cache,
            sealed_file: sealed,
        })
        .expect("pc2");
    report(&c, sid, "PC2Done");
    let resp = block_on(SealerApiClient::submit_pre_commit(
        &c,
        sector,
        PreCommitOnChainInfo {
            comm_r: pc2.comm_r,
            comm_d: pc2.comm_d,
            ticket: ticket.clone(),
        },
        false,
    ))
    .expect("submit pre-commit");
    assert_eq!(resp.res, SubmitResult::Accepted, "{resp:?}");
    // The same submission again is accepted; a different one is not.
    let again = block_on(SealerApiClient::submit_pre_commit(
        &c,
        sector,
        PreCommitOnChainInfo {
            comm_r: pc2.comm_r,
            comm_d: pc2.comm_d,
            ticket: ticket.clone(),
        },
        false,
    ))
    .expect("again");
    assert_eq!(again.res, SubmitResult::Accepted);
    let mut other = pc2.comm_r;
    other[0] ^= 1;
    let mismatch = block_on(SealerApiClient::submit_pre_commit(
        &c,
        sector,
        PreCommitOnChainInfo {
            comm_r: other,
            comm_d: pc2.comm_d,
            ticket: ticket.clone(),
        },
        false,
    ))
    .expect("mismatch");
    assert_eq!(mismatch.res, SubmitResult::MismatchedSubmission);
    Sealed {
        sector,
        dir,
        pieces: infos,
        pc2,
        ticket,
    }
}

fn wait_landed(m: &TestManager, sid: SectorId, proof: bool) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let c = m.client();
        let r = if proof {
            block_on(SealerApiClient::poll_proof_state(&c, sid))
        } else {
            block_on(SealerApiClient::poll_pre_commit_state(&c, sid))
        }
        .expect("poll");
        match r.state {
            OnChainState::Landed => return,
            OnChainState::Pending | OnChainState::Packed => {}
            other => panic!("{sid}: {other:?} {:?}\n{}", r.desc, m.logs()),
        }
        assert!(
            Instant::now() < deadline,
            "{sid} did not land\n{}",
            m.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn prove_and_finish(m: &TestManager, s: &Sealed) -> Vec<u8> {
    let c = m.client();
    let sid = s.sector.id;
    let seed = loop {
        let r =
            block_on(SealerApiClient::wait_seed(&c, sid, s.sector.proof_type)).expect("wait seed");
        if let Some(seed) = r.seed {
            break seed;
        }
        assert!(r.should_wait && r.delay > 0, "{r:?}");
        std::thread::sleep(Duration::from_secs(r.delay.min(5) as u64));
    };
    report(&c, sid, "SeedAssigned");
    let seed_bytes: [u8; 32] = seed.seed.0.as_slice().try_into().expect("32 bytes");
    let ticket: [u8; 32] = s.ticket.ticket.0.as_slice().try_into().expect("32 bytes");
    let c1 = proofs::seal_commit_phase1(
        &s.dir.join("cache"),
        &s.dir.join("sealed"),
        proofs::to_prover_id(MINER),
        api::SectorId::from(sid.number),
        ticket,
        seed_bytes,
        s.pc2.clone(),
        &s.pieces,
    )
    .expect("c1");
    let c2 = BuiltinProcessor::default()
        .process(t::C2 {
            c1out: c1,
            prover_id: proofs::to_prover_id(MINER),
            sector_id: api::SectorId::from(sid.number),
            miner_id: MINER,
        })
        .expect("c2");

    // A tampered proof is refused before it reaches the chain.
    let mut bad = c2.proof.clone();
    bad[7] ^= 0xff;
    let r = block_on(SealerApiClient::submit_proof(
        &c,
        sid,
        ProofOnChainInfo { proof: Bytes(bad) },
        false,
    ))
    .expect("bad proof");
    assert_eq!(r.res, SubmitResult::Rejected, "{r:?}");
    assert!(r.desc.unwrap_or_default().contains("invalid proof"));
    let early = block_on(SealerApiClient::report_finalized(&c, sid)).expect_err("not proven");
    assert!(
        early.to_string().contains("is not on chain"),
        "a sector is finalized only once its proof landed: {early}"
    );

    let r = block_on(SealerApiClient::submit_proof(
        &c,
        sid,
        ProofOnChainInfo {
            proof: Bytes(c2.proof.clone()),
        },
        false,
    ))
    .expect("submit proof");
    assert_eq!(r.res, SubmitResult::Accepted, "{r:?}");
    wait_landed(m, sid, true);
    report(&c, sid, "ProofLanded");

    // Persist into the store the manager chooses.
    let store = block_on(SealerApiClient::store_reserve_space(
        &c,
        sid,
        4096,
        vec!["persist".into()],
    ))
    .expect("reserve")
    .expect("a store");
    assert_eq!(store.name, "persist");
    let root = m.home.join("persist");
    let name = sid.to_string();
    std::fs::create_dir_all(root.join("sealed")).expect("sealed dir");
    std::fs::create_dir_all(root.join("cache").join(&name)).expect("cache dir");
    std::fs::copy(s.dir.join("sealed"), root.join("sealed").join(&name)).expect("copy sealed");
    for f in ["p_aux", "t_aux", "sc-02-data-tree-r-last.dat"] {
        std::fs::copy(
            s.dir.join("cache").join(f),
            root.join("cache").join(&name).join(f),
        )
        .expect("copy cache file");
    }
    let ok = block_on(SealerApiClient::submit_persisted_ex(
        &c,
        sid,
        "persist".into(),
        false,
    ))
    .expect("persisted");
    assert!(ok);
    let reserved_by = |m: &TestManager| -> Vec<serde_json::Value> {
        let list = m.raw("Venus.StoreList", serde_json::json!([]));
        list["result"][0]["ReservedBy"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        reserved_by(m).iter().any(|r| r["By"] == name.as_str()),
        "{:?}",
        reserved_by(m)
    );
    block_on(SealerApiClient::report_finalized(&c, sid)).expect("finalized");
    assert!(
        !reserved_by(m).iter().any(|r| r["By"] == name.as_str()),
        "finalizing releases the reservation: {:?}",
        reserved_by(m)
    );
    let r = report(&c, sid, "Finished");
    assert!(r.finalized);
    block_on(SealerApiClient::report_finalized(&c, sid)).expect("a repeated report is done");
    let restore = m.raw("Venus.RestoreSector", serde_json::json!([sid, false]));
    assert!(
        restore["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("use --force"),
        "a finalized, not aborted sector needs --force: {restore}"
    );
    c2.proof
}

#[test]
fn a_cc_and_a_deal_sector_are_sealed_to_the_end_on_the_devnet() {
    vc_processors::builtin::params::ensure_test_params(
        &vc_processors::builtin::params::ParamKind::ALL,
    )
    .expect("params");
    let mut m = TestManager::new();
    m.start();
    let work = m.dir.path().join("work");

    // A deal: 600 bytes of data for the miner.
    let data: Vec<u8> = (0..600u32).map(|i| (i * 13 % 251) as u8).collect();
    let file = m.dir.path().join("deal.bin");
    std::fs::write(&file, &data).expect("deal file");
    let out = ok_text(&m.util(&[
        "deals",
        "import",
        "--miner",
        &MINER.to_string(),
        file.to_str().expect("utf8"),
    ]));
    assert!(out.contains("deal 1 queued"), "{out}");
    let piece_url = {
        let c = m.client();
        let deals = block_on(DamoclesApiClient::deals_list(&c)).expect("deals");
        assert_eq!(deals.len(), 1);
        format!(
            "http://{}/piecestore/{}",
            m.addr.expect("addr"),
            deals[0].deal.proposal.piece_cid
        )
    };
    let served = reqwest::blocking::Client::new()
        .get(&piece_url)
        .bearer_auth(m.token(damocles_auth::Perm::Write))
        .send()
        .expect("piece")
        .bytes()
        .expect("body");
    assert_eq!(
        served.as_ref(),
        data.as_slice(),
        "the piece store serves the imported bytes"
    );

    let deal_sector = seal_and_pre_commit(&m, &work, true);
    // Kill the manager right after the PreCommit was accepted: it is queued again on restart.
    m.kill();
    m.start();
    wait_landed(&m, deal_sector.sector.id, false);
    let cc_sector = seal_and_pre_commit(&m, &work, false);
    wait_landed(&m, cc_sector.sector.id, false);

    prove_and_finish(&m, &deal_sector);
    prove_and_finish(&m, &cc_sector);

    let c = m.client();
    let chain = block_on(DamoclesApiClient::chain_sectors(&c, MINER)).expect("chain sectors");
    let active: Vec<u64> = chain.active.iter().map(|s| s.sector_number).collect();
    for s in [&deal_sector, &cc_sector] {
        let on_chain = chain
            .active
            .iter()
            .find(|a| a.sector_number == s.sector.id.number)
            .unwrap_or_else(|| panic!("{} not active on chain: {active:?}", s.sector.id));
        assert!(on_chain.proof_verified);
        assert_eq!(
            on_chain.sealed_cid,
            damocles_manager_api::json::replica_commitment_cid(&s.pc2.comm_r)
        );
    }
    let deal_on_chain = chain
        .active
        .iter()
        .find(|a| a.sector_number == deal_sector.sector.id.number)
        .expect("deal sector");
    assert_eq!(deal_on_chain.deal_ids, vec![1]);
    let deals = block_on(DamoclesApiClient::deals_list(&c)).expect("deals");
    assert_eq!(
        deals[0].deal.sector_number,
        Some(deal_sector.sector.id.number),
        "the deal is activated in its sector"
    );
    assert!(deals[0].deal.sector_start_epoch > 0);
    let offline = block_on(SealerCliApiClient::list_sectors(
        &c,
        SectorWorkerState::Offline,
        SectorJob::All,
    ))
    .expect("offline");
    assert_eq!(offline.len(), 2, "both sectors are finalized");
    let text = ok_text(&m.util(&["chain", "sectors", &MINER.to_string()]));
    assert_eq!(text.matches("verified").count(), 2, "{text}");
    let text = ok_text(&m.util(&[
        "storage",
        "find",
        &MINER.to_string(),
        &deal_sector.sector.id.number.to_string(),
    ]));
    assert!(text.contains("persist"), "{text}");
}
