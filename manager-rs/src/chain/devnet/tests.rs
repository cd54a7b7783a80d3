//! Tests of the devnet: PreCommit and a ProveCommit with a wrong proof, a chain reopened,
//! leader election with a real WinningPoSt, and WindowPoSt with a missed deadline, a recovery
//! and a corrupted proof. The test-only `Devnet` helpers are here too.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use damocles_manager_api::json::{replica_commitment_cid, Bytes, Cid};
use damocles_manager_api::types::{ActorId, ChainEpoch, SectorNumber};
use vc_processors::builtin::proofs::{self as vp, api};

use super::miner::assign_deadline;
use super::testing::{open_devnet, pre_commit_message};
use super::{Devnet, EXIT_ILLEGAL_ARGUMENT};
use crate::chain::{
    miner_entropy, new_message_id, BlockOutcome, Chain, DeadlineInfo, DomainSeparationTag,
    Election, Message, MessageStatus, MethodCall, PoStPartition, RecoveryDeclaration,
    SectorActivation, SectorOnChainInfo,
};
use crate::kv::Kv;
use crate::util::block_on as run;

impl Devnet {
    /// A miner's deadline at any epoch.
    fn deadline_info_at(&self, miner: ActorId, at: ChainEpoch) -> DeadlineInfo {
        let st = self.lock();
        st.deadline_info(&st.miners[&miner], at)
    }

    /// Makes a sector active without a PreCommit or PoRep (tests of PoSt, which needs neither).
    /// Answers its deadline and partition.
    fn activate_for_test(&self, miner: ActorId, n: SectorNumber, sealed_cid: Cid) -> (u64, u64) {
        let mut st = self.lock();
        let epoch = st.head.epoch;
        let busy = st.deadline_info(&st.miners[&miner], epoch).index;
        let actor = st.miners.get_mut(&miner).expect("miner on the devnet");
        actor.allocated.insert(n);
        let (deadline, partition) = assign_deadline(actor, n, busy);
        let seal_proof = actor.info.seal_proof_type;
        actor.sectors.insert(
            n,
            SectorOnChainInfo {
                sector_number: n,
                seal_proof,
                sealed_cid,
                deal_ids: vec![],
                activation: epoch,
                expiration: epoch + 10_000_000,
                deadline,
                partition,
                proof_verified: false,
            },
        );
        (deadline, partition)
    }
}

fn devnet(dir: &std::path::Path) -> Arc<Devnet> {
    open_devnet(Kv::open(dir).expect("kv"), |_| {})
}

fn pre_commit(n: u64) -> Message {
    pre_commit_message(n, [3u8; 32], 0)
}

fn status(d: &Devnet, id: &Cid) -> MessageStatus {
    run(d.message_status(id)).expect("status").expect("known")
}

#[test]
fn a_wrong_proof_fails_the_prove_commit_and_the_sector_stays_inactive() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = devnet(dir.path());
    d.produce_block().expect("block 1");
    let msg = pre_commit(7);
    let id = new_message_id(&msg).expect("id");
    run(d.push_message(&id, msg.clone())).expect("push");
    run(d.push_message(&id, msg)).expect("pushing the same message again is a no-op");
    d.produce_block().expect("block");
    assert!(matches!(
        status(&d, &id),
        MessageStatus::Executed { exit_code: 0, .. }
    ));
    assert!(run(d.pre_commit_info(1000, 7)).expect("pc").is_some());
    // A second PreCommit of the same number fails.
    let again = pre_commit(7);
    let id2 = new_message_id(&again).expect("id");
    run(d.push_message(&id2, again)).expect("push");
    d.produce_block().expect("block");
    assert!(matches!(
        status(&d, &id2),
        MessageStatus::Executed {
            exit_code: EXIT_ILLEGAL_ARGUMENT,
            ..
        }
    ));
    for _ in 0..12 {
        d.produce_block().expect("block");
    }
    let prove = Message {
        from: "t01000".into(),
        to: 1000,
        value: 0,
        call: MethodCall::ProveCommitSectors3 {
            activations: vec![SectorActivation {
                sector_number: 7,
                deal_ids: vec![],
                proof: Bytes(vec![0xab; 192]),
            }],
            require_activation_success: false,
        },
    };
    let pid = new_message_id(&prove).expect("id");
    run(d.push_message(&pid, prove)).expect("push");
    d.produce_block().expect("block");
    match status(&d, &pid) {
        MessageStatus::Executed {
            exit_code, error, ..
        } => {
            assert_eq!(exit_code, EXIT_ILLEGAL_ARGUMENT);
            assert!(error.unwrap_or_default().contains("sector 7"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        run(d.sector_info(1000, 7)).expect("info").is_none(),
        "not activated"
    );
}

#[test]
fn the_chain_continues_after_reopening() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let d = devnet(dir.path());
        for _ in 0..5 {
            d.produce_block().expect("block");
        }
        let msg = pre_commit(9);
        let id = new_message_id(&msg).expect("id");
        run(d.push_message(&id, msg)).expect("push");
    }
    let d = devnet(dir.path());
    assert_eq!(run(d.head()).expect("head").epoch, 5);
    d.produce_block().expect("block");
    assert!(
        run(d.pre_commit_info(1000, 9)).expect("pc").is_some(),
        "the pooled message survived"
    );
    let a = run(d.randomness_from_tickets(
        DomainSeparationTag::SealRandomness,
        3,
        &miner_entropy(1000),
    ))
    .expect("rand");
    let b = run(d.randomness_from_tickets(
        DomainSeparationTag::SealRandomness,
        3,
        &miner_entropy(1000),
    ))
    .expect("rand");
    let c =
        run(d.randomness_from_beacon(DomainSeparationTag::SealRandomness, 3, &miner_entropy(1000)))
            .expect("rand");
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(
        run(d.randomness_from_tickets(DomainSeparationTag::SealRandomness, 100, &[])).is_err(),
        "future"
    );
    let dl = run(d.proving_deadline(1000)).expect("deadline");
    assert_eq!(dl.close - dl.open, 20);
    assert_eq!(dl.current_epoch, 6);
    assert!(dl.open <= 6 && 6 < dl.close, "{dl:?}");
    assert_eq!(dl.challenge, dl.open - 5);
}

/// Seals a 2 KiB CC sector through PC2 in `dir`; answers (CommR, cache dir, sealed file).
fn seal_cc(
    dir: &std::path::Path,
    number: u64,
) -> ([u8; 32], std::path::PathBuf, std::path::PathBuf) {
    use vc_processors::builtin::tasks::{self as t, Piece, PieceFile, UnpaddedBytesAmount};
    use vc_processors::builtin::BuiltinProcessor;
    use vc_processors::Processor;
    let seal = api::RegisteredSealProof::StackedDrg2KiBV1_1;
    let p = BuiltinProcessor::default();
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).expect("cache dir");
    let staged = dir.join("staged");
    let sealed = dir.join("sealed");
    let infos = p
        .process(t::AddPieces {
            seal_proof_type: seal,
            pieces: vec![Piece {
                piece_file: PieceFile::Pledge,
                payload_size: 2032,
                piece_size: UnpaddedBytesAmount(2032),
            }],
            staged_filepath: staged.clone(),
        })
        .expect("add pieces");
    std::fs::write(&sealed, b"").expect("sealed file");
    let pc1 = p
        .process(t::PC1 {
            registered_proof: seal,
            cache_path: cache.clone(),
            in_path: staged,
            out_path: sealed.clone(),
            prover_id: vp::to_prover_id(1000),
            sector_id: api::SectorId::from(number),
            ticket: [7; 32],
            piece_infos: infos,
        })
        .expect("pc1");
    let pc2 = p
        .process(t::PC2 {
            pc1out: pc1,
            cache_dir: cache.clone(),
            sealed_file: sealed.clone(),
        })
        .expect("pc2");
    (pc2.comm_r, cache, sealed)
}

#[test]
fn an_elected_miner_wins_with_a_verified_winning_post_and_loses_without() {
    vc_processors::builtin::params::ensure_test_params(&[
        vc_processors::builtin::params::ParamKind::WinningPoSt,
    ])
    .expect("params");
    let dir = tempfile::tempdir().expect("tempdir");
    let (comm_r, cache, sealed) = seal_cc(&dir.path().join("sector"), 1);
    let d = open_devnet(Kv::open(&dir.path().join("kv")).expect("kv"), |cfg| {
        cfg.winning_post_probability = 1.0;
        cfg.winning_post_budget_secs = 60;
    });
    d.produce_block().expect("block");
    assert!(
        run(d.pending_elections(1000))
            .expect("elections")
            .is_empty(),
        "no power, no election"
    );
    d.activate_for_test(1000, 1, replica_commitment_cid(&comm_r));
    d.produce_block().expect("block");
    d.produce_block().expect("block");
    let elections = run(d.pending_elections(1000)).expect("elections");
    assert_eq!(
        elections.len(),
        2,
        "elected at every epoch with probability 1"
    );
    let post_proof = vp::winning_post_proof_for_size(2048).expect("post proof");
    let prove = |e: &Election| -> Vec<Bytes> {
        let mut rand = e.randomness;
        rand[31] &= 0x3f;
        let challenged =
            crate::proofs::winning_post_challenged(post_proof, &rand, 1000, &[1]).expect("ch");
        assert_eq!(challenged, vec![1]);
        let replicas = BTreeMap::from([(
            api::SectorId::from(1),
            api::PrivateReplicaInfo::new(post_proof, comm_r, cache.clone(), sealed.clone()),
        )]);
        api::post::generate_winning_post(&rand, &replicas, vp::to_prover_id(1000))
            .expect("winning post")
            .into_iter()
            .map(|(_, p)| Bytes(p))
            .collect()
    };
    let good = prove(&elections[0]);
    assert_eq!(
        run(d.submit_block(1000, elections[0].epoch, good.clone())).expect("submit"),
        BlockOutcome::Won
    );
    // The proof of another epoch's randomness does not verify.
    assert_eq!(
        run(d.submit_block(1000, elections[1].epoch, good)).expect("submit"),
        BlockOutcome::Rejected
    );
    assert_eq!(
        run(d.submit_block(1000, elections[1].epoch, Vec::new())).expect("submit"),
        BlockOutcome::Missed,
        "an election answered once is gone"
    );
    let summary = run(d.summary()).expect("summary");
    assert_eq!((summary["blocks_won"], summary["blocks_rejected"]), (1, 1));
    // Survives a restart; with a budget of one second, unanswered elections are missed.
    drop(d);
    let d = open_devnet(Kv::open(&dir.path().join("kv")).expect("kv"), |cfg| {
        cfg.winning_post_probability = 1.0;
        cfg.winning_post_budget_secs = 1;
    });
    assert_eq!(run(d.summary()).expect("summary")["blocks_won"], 1);
    d.produce_block().expect("block");
    std::thread::sleep(Duration::from_millis(2100));
    d.produce_block().expect("block");
    assert!(run(d.summary()).expect("summary")["blocks_missed"] >= 1);
}

fn advance_to(d: &Devnet, epoch: ChainEpoch) {
    while run(d.head()).expect("head").epoch < epoch {
        d.produce_block().expect("block");
    }
}

fn send(d: &Devnet, call: MethodCall) -> MessageStatus {
    let msg = Message {
        from: "t01000".into(),
        to: 1000,
        value: 0,
        call,
    };
    let id = crate::chain::new_message_id(&msg).expect("id");
    run(d.push_message(&id, msg)).expect("push");
    d.produce_block().expect("block");
    status(d, &id)
}

fn exit_code(s: &MessageStatus) -> (i64, String) {
    match s {
        MessageStatus::Executed {
            exit_code, error, ..
        } => (*exit_code, error.clone().unwrap_or_default()),
        MessageStatus::Pending => panic!("not executed"),
    }
}

#[test]
fn window_post_is_verified_a_missed_deadline_faults_and_a_recovery_heals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (comm_r, cache, sealed) = seal_cc(&dir.path().join("sector"), 1);
    let d = open_devnet(Kv::open(&dir.path().join("kv")).expect("kv"), |cfg| {
        cfg.wpost_challenge_window = 4;
        cfg.wpost_challenge_lookback = 2;
        cfg.fault_declaration_cutoff = 3;
    });
    d.produce_block().expect("block");
    let (deadline, partition) = d.activate_for_test(1000, 1, replica_commitment_cid(&comm_r));
    let activation = run(d.head()).expect("head").epoch;
    let period = 48 * 4;

    // The first opening of the sector's deadline at which it is due.
    let first_due = {
        let mut e = activation + 1;
        loop {
            let dl = d.deadline_info_at(1000, e);
            if dl.index == deadline && dl.open == e && dl.challenge > activation {
                break e;
            }
            e += 1;
        }
    };
    let post_proof = vp::window_post_proof_for_size(2048).expect("post proof");
    let replicas = std::collections::BTreeMap::from([(
        api::SectorId::from(1),
        api::PrivateReplicaInfo::new(post_proof, comm_r, cache.clone(), sealed.clone()),
    )]);
    // Submits a WindowPoSt for the deadline opening at `open` (the head is at `open`).
    let prove = |open: ChainEpoch, corrupt: bool| -> MessageStatus {
        let dl = run(d.proving_deadline(1000)).expect("deadline");
        assert_eq!((dl.index, dl.open), (deadline, open));
        let mut rand = run(d.randomness_from_beacon(
            DomainSeparationTag::WindowedPoStChallengeSeed,
            dl.challenge,
            &miner_entropy(1000),
        ))
        .expect("rand");
        rand[31] &= 0x3f;
        let mut proofs = api::post::generate_window_post(&rand, &replicas, vp::to_prover_id(1000))
            .expect("window post");
        assert_eq!(proofs.len(), 1);
        if corrupt {
            proofs[0].1[0] ^= 0xff;
        }
        let commit_epoch = open - 1;
        let commit_rand =
            run(d.randomness_from_tickets(DomainSeparationTag::PoStChainCommit, commit_epoch, &[]))
                .expect("commit rand");
        send(
            &d,
            MethodCall::SubmitWindowedPoSt {
                deadline,
                partitions: vec![PoStPartition {
                    index: partition,
                    skipped: vec![],
                }],
                proofs: vec![Bytes(proofs[0].1.clone())],
                chain_commit_epoch: commit_epoch,
                chain_commit_rand: Bytes(commit_rand.to_vec()),
            },
        )
    };
    let part =
        || run(d.partitions(1000, deadline)).expect("partitions")[partition as usize].clone();
    let power = || run(d.miner_power(1000)).expect("power");

    // Period 1: proven, so still healthy after the deadline closes.
    advance_to(&d, first_due);
    assert_eq!(exit_code(&prove(first_due, false)), (0, String::new()));
    advance_to(&d, first_due + 4);
    assert!(part().faulty_sectors.is_empty(), "{:?}", part());
    assert_eq!(power().raw_byte_power, 2048);

    // Period 2: missed, so faulty when the deadline closes.
    let second = first_due + period;
    advance_to(&d, second + 4);
    assert_eq!(part().faulty_sectors, vec![1]);
    assert_eq!(power().faulty_sectors, 1);
    assert_eq!(power().raw_byte_power, 0);

    // A recovery for a sector that is not faulty is refused; for sector 1 it is recorded.
    let (code, err) = exit_code(&send(
        &d,
        MethodCall::DeclareFaultsRecovered {
            recoveries: vec![RecoveryDeclaration {
                deadline,
                partition,
                sectors: vec![2],
            }],
        },
    ));
    assert_ne!(code, 0);
    assert!(err.contains("sector 2 is not faulty"), "{err}");
    let declared = send(
        &d,
        MethodCall::DeclareFaultsRecovered {
            recoveries: vec![RecoveryDeclaration {
                deadline,
                partition,
                sectors: vec![1],
            }],
        },
    );
    assert_eq!(exit_code(&declared).0, 0);
    assert_eq!(part().recovering_sectors, vec![1]);

    // Period 3: a corrupted proof is refused; the real one heals the sector.
    let third = second + period;
    advance_to(&d, third);
    let (code, err) = exit_code(&prove(third, true));
    assert_ne!(code, 0, "a corrupted proof must fail");
    assert!(err.contains("WindowPoSt"), "{err}");
    assert_eq!(part().faulty_sectors, vec![1], "still faulty");
    let dl_now = run(d.proving_deadline(1000)).expect("deadline");
    assert_eq!(dl_now.open, third, "still inside the deadline");
    assert_eq!(exit_code(&prove(third, false)), (0, String::new()));
    assert!(part().faulty_sectors.is_empty(), "{:?}", part());
    assert!(part().recovering_sectors.is_empty());
    advance_to(&d, third + 4);
    assert!(part().faulty_sectors.is_empty(), "{:?}", part());
    assert_eq!(power().raw_byte_power, 2048);

    // Proving outside the sector's deadline is refused.
    let (code, err) = exit_code(&prove_outside(&d, deadline, partition));
    assert_ne!(code, 0);
    assert!(err.contains("is not open"), "{err}");
}

fn prove_outside(d: &Devnet, deadline: u64, partition: u64) -> MessageStatus {
    let head = run(d.head()).expect("head").epoch;
    send(
        d,
        MethodCall::SubmitWindowedPoSt {
            deadline,
            partitions: vec![PoStPartition {
                index: partition,
                skipped: vec![],
            }],
            proofs: vec![Bytes(vec![0; 192])],
            chain_commit_epoch: head - 1,
            chain_commit_rand: Bytes(vec![0; 32]),
        },
    )
}
