//! Every method over a real HTTP connection: exact JSON, error codes, bad params.

use std::collections::BTreeSet;

use damocles_manager::rpc::DAMOCLES_METHODS;
use damocles_manager_api::rpc::{
    Method, SealerApiClient, CLI_METHODS, SEALER_METHODS, WDPOST_METHODS,
};
use damocles_manager_api::types::AllocateSectorSpec;
use serde_json::{json, Value};

use crate::common::{ok_text, TestManager, MINER};

fn code(resp: &Value) -> Option<i64> {
    resp.get("error")
        .and_then(|e| e.get("code"))
        .and_then(Value::as_i64)
}

fn result(resp: &Value) -> &Value {
    assert!(resp.get("error").is_none(), "unexpected error: {resp}");
    resp.get("result")
        .unwrap_or_else(|| panic!("no result member: {resp}"))
}

fn sid(n: u64) -> Value {
    json!({"Miner": MINER, "Number": n})
}

/// Every method of `methods` is served by `m` and refuses a wrong count or wrong types of
/// params with -32602, naming the method.
fn assert_served_with_param_checks(m: &TestManager, methods: &[Method]) {
    for Method {
        name: method,
        params: arity,
        ..
    } in methods
    {
        // One param too many.
        let too_many: Vec<Value> = (0..=*arity).map(|_| Value::Null).collect();
        let resp = m.raw(method, Value::Array(too_many));
        assert_eq!(
            code(&resp),
            Some(-32602),
            "{method} with {} params: {resp}",
            arity + 1
        );
        let msg = resp["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(method),
            "{method}: the message names the method: {msg}"
        );
        if *arity > 0 {
            // The right count of the wrong types.
            // No method takes only booleans: `true` everywhere is wrong for each of them.
            let wrong: Vec<Value> = (0..*arity).map(|_| Value::Bool(true)).collect();
            let resp = m.raw(method, Value::Array(wrong));
            assert_eq!(
                code(&resp),
                Some(-32602),
                "{method} with wrongly typed params: {resp}"
            );
        }
    }
}

#[test]
fn every_method_is_served_and_refuses_bad_params_with_32602() {
    let mut m = TestManager::new();
    m.start();
    let always = [SEALER_METHODS, CLI_METHODS, DAMOCLES_METHODS].concat();
    assert_served_with_param_checks(&m, &always);
    let resp = m.raw("Venus.NoSuchMethod", json!([]));
    assert_eq!(code(&resp), Some(-32601), "{resp}");
    let resp = m.raw("Venus.Version", json!([]));
    assert!(
        result(&resp).as_str().unwrap_or_default().starts_with('v'),
        "{resp}"
    );
    // Without --worker-prover the WdPoSt methods are not served, whatever the params.
    for Method {
        name: method,
        params: arity,
        ..
    } in WDPOST_METHODS
    {
        for count in [*arity, arity + 1] {
            let params: Vec<Value> = (0..count).map(|_| Value::Null).collect();
            let resp = m.raw(method, Value::Array(params));
            assert_eq!(code(&resp), Some(-32601), "{method} with {count}: {resp}");
        }
    }
    // With it, they are, with the same checks; the rest stays served.
    let mut prover = TestManager::new();
    prover.run_args = vec!["--worker-prover".into()];
    prover.start();
    assert_served_with_param_checks(&prover, WDPOST_METHODS);
    assert_served_with_param_checks(&prover, &always);
}

#[test]
fn the_sealing_methods_answer_with_damocles_json() {
    let mut m = TestManager::new();
    m.start();

    // Allocation creates the online state.
    let alloc = m.raw(
        "Venus.AllocateSector",
        json!([{"AllowedMiners": null, "AllowedProofTypes": null}]),
    );
    let sector = result(&alloc).clone();
    assert_eq!(sector["ID"]["Miner"], json!(MINER));
    assert_eq!(sector["ProofType"], json!(5), "2 KiB V1_1");
    let n = sector["ID"]["Number"].as_u64().expect("number");
    assert_eq!(n, 1, "the first number of a fresh miner is MinNumber + 1");
    let other_miner = m.raw(
        "Venus.AllocateSector",
        json!([{"AllowedMiners": [1], "AllowedProofTypes": null}]),
    );
    assert_eq!(
        result(&other_miner),
        &Value::Null,
        "no eligible miner: null, not an error"
    );
    let other_type = m.raw(
        "Venus.AllocateSector",
        json!([{"AllowedMiners": null, "AllowedProofTypes": [8]}]),
    );
    assert_eq!(result(&other_type), &Value::Null);

    // No deals queued: a CC sector.
    let deals = m.raw(
        "Venus.AcquireDeals",
        json!([sid(n), {"MaxDeals": null, "MinUsedSpace": null}]),
    );
    assert_eq!(result(&deals), &Value::Null);

    let ticket = m.raw("Venus.AssignTicket", json!([sid(n)]));
    let t = result(&ticket);
    assert_eq!(t["Epoch"], json!(0), "head - 900 clamps at genesis");
    assert_eq!(
        t["Ticket"].as_str().expect("base64").len(),
        44,
        "32 bytes in base64"
    );

    // Unknown sectors: 11001.
    for (method, params) in [
        ("Venus.AssignTicket", json!([sid(999)])),
        (
            "Venus.ReportState",
            json!([sid(999), {"Worker": {"Instance": "w", "Location": "l"}, "StateChange": {"Prev": "a", "Next": "b", "Event": "e"}, "Failure": null}]),
        ),
        ("Venus.PollPreCommitState", json!([sid(999)])),
        (
            "Venus.StoreReserveSpace",
            json!([sid(999), 4096, ["persist"]]),
        ),
        (
            "Venus.SubmitPersistedEx",
            json!([sid(999), "persist", false]),
        ),
        ("Venus.ReportFinalized", json!([sid(999)])),
    ] {
        let resp = m.raw(method, params);
        assert_eq!(code(&resp), Some(11001), "{method}: {resp}");
        assert!(
            resp["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("sector state not found"),
            "{resp}"
        );
    }

    let report = json!({"Worker": {"Instance": "w1", "Location": "/l"}, "StateChange": {"Prev": "Empty", "Next": "Allocated", "Event": "SectorAllocated"}, "Failure": null});
    let state = m.raw("Venus.ReportState", json!([sid(n), report]));
    assert_eq!(
        result(&state),
        &json!({"Id": sid(n), "Finalized": false, "AbortReason": ""})
    );

    // Before a PreCommit: polls fail, proofs are rejected, the seed is an error.
    let poll = m.raw("Venus.PollPreCommitState", json!([sid(n)]));
    assert_eq!(result(&poll)["State"], json!(5));
    let proof = m.raw(
        "Venus.SubmitProof",
        json!([sid(n), {"Proof": "AAEC"}, false]),
    );
    assert_eq!(result(&proof)["Res"], json!(4));
    assert!(result(&proof)["Desc"].as_str().is_some());
    let seed = m.raw("Venus.WaitSeed", json!([sid(n), 5]));
    assert_eq!(code(&seed), Some(1), "{seed}");
    let bad_pre = m.raw(
        "Venus.SubmitPreCommit",
        json!([sector, {"CommR": vec![1u8; 32], "CommD": vec![2u8; 32], "Ticket": t}, false]),
    );
    assert_eq!(
        result(&bad_pre)["Res"],
        json!(3),
        "a CommD that is not the CC sector's: {bad_pre}"
    );

    // Stores.
    let info = m.raw("Venus.StoreBasicInfo", json!(["persist"]));
    assert_eq!(result(&info)["Name"], json!("persist"));
    assert_eq!(
        result(&m.raw("Venus.StoreBasicInfo", json!(["nope"]))),
        &Value::Null
    );
    let reserved = m.raw(
        "Venus.StoreReserveSpace",
        json!([sid(n), 4096, ["persist", "unknown"]]),
    );
    assert_eq!(result(&reserved)["Name"], json!("persist"));
    let again = m.raw("Venus.StoreReserveSpace", json!([sid(n), 4096, []]));
    assert_eq!(
        result(&again)["Name"],
        json!("persist"),
        "idempotent per sector"
    );
    let none_fit = m.raw(
        "Venus.StoreReserveSpace",
        json!([sid(n), 4096, ["unknown"]]),
    );
    assert_eq!(result(&none_fit), &Value::Null);
    let missing = m.raw("Venus.SubmitPersistedEx", json!([sid(n), "persist", false]));
    assert_eq!(
        result(&missing),
        &json!(false),
        "no files yet: false, not an error"
    );
    let no_store = m.raw("Venus.SubmitPersistedEx", json!([sid(n), "nope", false]));
    assert_eq!(code(&no_store), Some(1));
    let persist = m.home.join("persist");
    let name = format!("s-t0{MINER}-{n}");
    std::fs::create_dir_all(persist.join("sealed")).expect("sealed dir");
    std::fs::create_dir_all(persist.join("cache").join(&name)).expect("cache dir");
    std::fs::write(persist.join("sealed").join(&name), vec![0u8; 2048]).expect("sealed");
    for f in ["p_aux", "t_aux", "sc-02-data-tree-r-last.dat"] {
        std::fs::write(persist.join("cache").join(&name).join(f), b"x").expect("cache file");
    }
    let persisted = m.raw("Venus.SubmitPersisted", json!([sid(n), "persist"]));
    assert_eq!(result(&persisted), &json!(true));
    let found = m.raw("Venus.SectorIndexerFind", json!(["normal", sid(n)]));
    assert_eq!(
        result(&found),
        &json!({"Found": true, "Instance": {"SealedFile": "persist", "CacheDir": "persist"}})
    );
    let list = m.raw("Venus.StoreList", json!([]));
    let stores = result(&list).as_array().expect("array");
    assert_eq!(stores.len(), 1);
    assert_eq!(stores[0]["Reserved"], json!(4096));
    assert_eq!(stores[0]["ReservedBy"][0]["By"], json!(name));

    // Workers.
    let ping = m.raw("Venus.WorkerPing", json!([{"Name": "w1", "Dest": "127.0.0.1:17890", "Version": "x", "Summary": {"Threads": 2, "Empty": 1, "Paused": 0, "Running": 1, "Waiting": 0, "Errors": 0}}]));
    assert_eq!(
        ping.get("result"),
        Some(&Value::Null),
        "methods without a value answer result: null: {ping}"
    );
    let bad_ping = m.raw("Venus.WorkerPing", json!([{"Name": "", "Dest": "", "Version": "", "Summary": {"Threads": 0, "Empty": 0, "Paused": 0, "Running": 0, "Waiting": 0, "Errors": 0}}]));
    assert!(
        bad_ping["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Name"),
        "{bad_ping}"
    );
    let workers = m.raw("Venus.WorkerPingInfoList", json!([]));
    assert_eq!(result(&workers)[0]["Info"]["Name"], json!("w1"));
    let text = ok_text(&m.util(&["worker", "list"]));
    assert!(
        text.contains("w1") && text.contains("127.0.0.1:17890"),
        "{text}"
    );
    assert_eq!(
        result(&m.raw("Venus.WorkerPingInfoRemove", json!(["w1"]))),
        &Value::Null
    );
    assert_eq!(
        result(&m.raw("Venus.WorkerGetPingInfo", json!(["w1"]))),
        &Value::Null
    );

    // A sector whose proof has not landed cannot be reported finalized: its state and its
    // reservation stay (the e2e test finalizes a proven one).
    let early = m.raw("Venus.ReportFinalized", json!([sid(n)]));
    assert_eq!(code(&early), Some(1), "{early}");
    assert!(
        early["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("sector s-t0{MINER}-{n} is not on chain")),
        "{early}"
    );
    let online = m.raw("Venus.FindSector", json!(["online", sid(n)]));
    assert_eq!(result(&online)["Finalized"], json!(false), "{online}");
    let list = m.raw("Venus.StoreList", json!([]));
    assert_eq!(result(&list)[0]["Reserved"], json!(4096));

    // Abort: the worker learns of it at its next report; restore brings it back.
    let n2 = result(&m.raw(
        "Venus.AllocateSector",
        json!([{"AllowedMiners": null, "AllowedProofTypes": null}]),
    ))["ID"]["Number"]
        .as_u64()
        .expect("second");
    assert_eq!(n2, n + 1);
    let out = ok_text(&m.util(&[
        "sealer",
        "sectors",
        "abort",
        &MINER.to_string(),
        &n2.to_string(),
    ]));
    assert!(out.contains("aborted"), "{out}");
    let state = m.raw("Venus.ReportState", json!([sid(n2), report]));
    assert_eq!(
        result(&state),
        &json!({"Id": sid(n2), "Finalized": true, "AbortReason": "aborted via CLI"})
    );
    assert_eq!(
        result(&m.raw("Venus.RestoreSector", json!([sid(n2), false]))),
        &Value::Null
    );
    let back = m.raw("Venus.FindSector", json!(["online", sid(n2)]));
    assert_eq!(result(&back)["AbortReason"], json!(""));
    let finalize = m.raw("Venus.FinalizeSector", json!([sid(n2)]));
    assert_eq!(code(&finalize), Some(1), "not on chain: {finalize}");

    // Lookups.
    assert_eq!(
        code(&m.raw("Venus.FindSectorsWithDeal", json!(["online", 0]))),
        Some(1)
    );
    let piece = json!({"/": "baga6ea4seaqao7s73y24kcutaosvacpdjgfe5pw76ooefnyqw4ynr3d2y6x2mpq"});
    assert_eq!(
        result(&m.raw("Venus.FindSectorWithPiece", json!(["online", piece]))),
        &Value::Null
    );
    let all = m.raw("Venus.FindSectorInAllStates", json!([sid(n)]));
    assert_eq!(result(&all)["ID"], sid(n));
    assert_eq!(result(&all)["Finalized"], json!(false));
    // A finalized sector made elsewhere comes in with ImportSector.
    let mut imported = result(&all).clone();
    imported["ID"]["Number"] = json!(500);
    imported["Imported"] = json!(true);
    imported["Finalized"] = json!(true);
    assert_eq!(
        result(&m.raw("Venus.ImportSector", json!(["offline", imported, false]))),
        &json!(true)
    );
    assert_eq!(
        result(&m.raw("Venus.ImportSector", json!(["offline", imported, false]))),
        &json!(false)
    );
    let all = m.raw("Venus.FindSectorInAllStates", json!([sid(500)]));
    assert_eq!(result(&all)["Finalized"], json!(true));
    let state = m.raw("Venus.ReportState", json!([sid(500), report]));
    assert_eq!(
        result(&state)["Finalized"],
        json!(true),
        "a finalized sector is reported so"
    );
    assert_eq!(
        m.raw("Venus.ReportFinalized", json!([sid(500)]))
            .get("result"),
        Some(&Value::Null),
        "reporting a finalized sector again is answered as done"
    );
    let restore_done = m.raw("Venus.RestoreSector", json!([sid(500), false]));
    assert_eq!(
        code(&restore_done),
        Some(1),
        "a finalized, not aborted sector needs --force: {restore_done}"
    );

    // Chain and miner.
    let info = m.raw("Venus.GetInfo", json!([MINER]));
    assert_eq!(
        result(&info),
        &json!({"ID": MINER, "Addr": format!("t0{MINER}"), "SectorSize": 2048, "WindowPoStProofType": 10, "SealProofType": 5})
    );
    let cfg = m.raw("Venus.GetMinerConfig", json!([MINER]));
    assert_eq!(result(&cfg)["Actor"], json!(MINER));
    let a = result(&m.raw("Venus.GetTicket", json!([[], 0, MINER]))).clone();
    assert_eq!(
        a,
        json!({"Ticket": t["Ticket"], "Epoch": 0}),
        "the ticket AssignTicket handed out is the chain's"
    );
    let s = m.raw("Venus.GetSeed", json!([[], 0, MINER]));
    assert_ne!(
        result(&s)["Seed"],
        t["Ticket"],
        "another domain, another value"
    );
    let w = m.raw("Venus.GetWindowPoStChanlleengeRand", json!([[], 0, MINER]));
    assert_eq!(result(&w)["Epoch"], json!(0));
    let c = m.raw("Venus.GetWindowPoStCommitRand", json!([[], 0]));
    assert!(result(&c)["Rand"].is_string());
    let future = m.raw("Venus.GetTicket", json!([[], 1_000_000, MINER]));
    assert_eq!(
        code(&future),
        Some(1),
        "randomness from the future: {future}"
    );

    // Allocators of later issues answer null; their submissions are refused clearly.
    for method in [
        "Venus.AllocateSanpUpSector",
        "Venus.AllocateRebuildSector",
        "Venus.AllocateUnsealSector",
    ] {
        let params = if method == "Venus.AllocateSanpUpSector" {
            json!([{"Sector": {"AllowedMiners": null, "AllowedProofTypes": null}, "Deals": {"MaxDeals": null, "MinUsedSpace": null}}])
        } else {
            json!([{"AllowedMiners": null, "AllowedProofTypes": null}])
        };
        assert_eq!(result(&m.raw(method, params)), &Value::Null, "{method}");
    }
    let snap = m.raw("Venus.SubmitSnapUpProof", json!([sid(n), {"CommR": vec![0u8; 32], "CommD": vec![0u8; 32], "AccessInstance": "persist", "Pieces": [], "Proof": ""}]));
    assert_eq!(result(&snap)["Res"], json!(4));
    assert_eq!(
        code(&m.raw("Venus.AchieveUnsealSector", json!([sid(n), piece, ""]))),
        Some(1)
    );
    assert_eq!(
        code(&m.raw("Venus.AcquireUnsealDest", json!([sid(n), piece]))),
        Some(1)
    );

    // Our additions.
    let head = m.raw("Damocles.ChainHead", json!([]));
    assert_eq!(result(&head)["Params"]["WPoStPeriodDeadlines"], json!(48));
    let miner = m.raw("Damocles.ChainMiner", json!([MINER]));
    assert_eq!(result(&miner)["Info"]["SectorSize"], json!(2048));
    assert_eq!(code(&m.raw("Damocles.ChainMiner", json!([1]))), Some(1));
    let text = ok_text(&m.util(&["chain", "head"]));
    assert!(text.contains("\"Epoch\""), "{text}");
    let text = ok_text(&m.util(&["storage", "list"]));
    assert!(text.contains("persist"), "{text}");
    let text = ok_text(&m.util(&["sealer", "sectors", "list", "--offline"]));
    assert!(text.contains(&format!("s-t0{MINER}-500")), "{text}");
}

#[test]
fn thirty_two_concurrent_clients_never_get_the_same_number() {
    let mut m = TestManager::new();
    m.start();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let numbers: Vec<u64> = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let c = m.client();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..8 {
                    let s = SealerApiClient::allocate_sector(&c, AllocateSectorSpec::default())
                        .await
                        .expect("allocate")
                        .expect("a sector");
                    got.push(s.id.number);
                }
                got
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("task"));
        }
        all
    });
    let unique: BTreeSet<u64> = numbers.iter().copied().collect();
    assert_eq!(unique.len(), numbers.len(), "a number was handed out twice");
    assert_eq!(
        unique.iter().copied().collect::<Vec<_>>(),
        (1..=256).collect::<Vec<_>>(),
        "no gaps, none reused"
    );
}

#[test]
fn healthcheck_metrics_and_unknown_routes() {
    let mut m = TestManager::new();
    let addr = m.start();
    let token = m.token(damocles_auth::Perm::Write);
    let get = |path: &str| {
        reqwest::blocking::Client::new()
            .get(format!("http://{addr}{path}"))
            .bearer_auth(&token)
            .send()
            .expect("GET")
    };
    let r = get("/healthcheck");
    assert_eq!(r.status().as_u16(), 200);
    m.raw(
        "Venus.AllocateSector",
        json!([{"AllowedMiners": null, "AllowedProofTypes": null}]),
    );
    let metrics = get("/metrics").text().expect("metrics");
    assert!(metrics.contains("damocles_manager_new_sector"), "{metrics}");
    assert!(
        metrics.contains("damocles_manager_api_request_duration_ms"),
        "{metrics}"
    );
    assert_eq!(get("/nope").status().as_u16(), 404);
    assert_eq!(
        get("/piecestore/baga6ea4seaqao7s73y24kcutaosvacpdjgfe5pw76ooefnyqw4ynr3d2y6x2mpq")
            .status()
            .as_u16(),
        404
    );
}

#[test]
fn a_broken_config_is_refused_with_the_key_named() {
    let m = TestManager::new();
    let cfg = m.home.join("sector-manager.cfg");
    let text = std::fs::read_to_string(&cfg).expect("cfg");
    std::fs::write(
        &cfg,
        text.replace("[Miners.Sector]", "[Miners.Sector]\nMaxNumbr = 5"),
    )
    .expect("write");
    let out = std::process::Command::new(crate::common::manager_bin())
        .arg("--home")
        .arg(&m.home)
        .args(["daemon", "run", "--listen", "127.0.0.1:0"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Miners.0.Sector.MaxNumbr") && err.contains("sector-manager.cfg"),
        "{err}"
    );
}

#[test]
fn deals_fill_sectors_with_aligned_fillers_and_come_back_when_a_sector_aborts() {
    let mut m = TestManager::new();
    m.start();
    for (name, len) in [("a.bin", 600usize), ("b.bin", 300)] {
        let file = m.dir.path().join(name);
        std::fs::write(&file, vec![1u8; len]).expect("file");
        ok_text(&m.util(&[
            "deals",
            "import",
            "--miner",
            &MINER.to_string(),
            file.to_str().expect("utf8"),
        ]));
    }
    let alloc = |m: &TestManager| {
        result(&m.raw(
            "Venus.AllocateSector",
            json!([{"AllowedMiners": null, "AllowedProofTypes": null}]),
        ))["ID"]["Number"]
            .as_u64()
            .expect("n")
    };
    let n = alloc(&m);
    let pieces = m.raw(
        "Venus.AcquireDeals",
        json!([sid(n), {"MaxDeals": null, "MinUsedSpace": null}]),
    );
    let pieces = result(&pieces).as_array().expect("pieces").clone();
    let layout: Vec<(u64, u64, u64)> = pieces
        .iter()
        .map(|p| {
            (
                p["DealInfo"]["DealID"].as_u64().expect("deal"),
                p["DealInfo"]["Offset"].as_u64().expect("offset"),
                p["Piece"]["Size"].as_u64().expect("size"),
            )
        })
        .collect();
    assert_eq!(
        layout,
        vec![(1, 0, 1024), (2, 1024, 512), (0, 1536, 512)],
        "largest first, then a filler"
    );
    assert_eq!(pieces[0]["DealInfo"]["PayloadSize"], json!(600));
    assert!(
        pieces[2]["DealInfo"].is_object(),
        "fillers carry a DealInfo object"
    );
    let again = m.raw(
        "Venus.AcquireDeals",
        json!([sid(n), {"MaxDeals": null, "MinUsedSpace": null}]),
    );
    assert_eq!(
        result(&again).as_array().map(Vec::len),
        Some(3),
        "idempotent"
    );
    let list = ok_text(&m.util(&["deals", "list"]));
    assert_eq!(
        list.matches(&format!("in s-t0{MINER}-{n}")).count(),
        2,
        "{list}"
    );

    // Nothing left for a second sector; after an abort the deals come back.
    let n2 = alloc(&m);
    assert_eq!(
        result(&m.raw(
            "Venus.AcquireDeals",
            json!([sid(n2), {"MaxDeals": null, "MinUsedSpace": null}])
        )),
        &Value::Null
    );
    assert_eq!(
        result(&m.raw("Venus.ReportAborted", json!([sid(n), "test"]))),
        &Value::Null
    );
    let list = ok_text(&m.util(&["deals", "list"]));
    assert_eq!(list.matches("queued").count(), 2, "{list}");
    let n3 = alloc(&m);
    let one = m.raw(
        "Venus.AcquireDeals",
        json!([sid(n3), {"MaxDeals": 1, "MinUsedSpace": null}]),
    );
    let one = result(&one).as_array().expect("pieces").clone();
    assert_eq!(
        one.iter()
            .filter(|p| p["DealInfo"]["DealID"] != json!(0))
            .count(),
        1,
        "MaxDeals"
    );
    let n4 = alloc(&m);
    let picky = m.raw(
        "Venus.AcquireDeals",
        json!([sid(n4), {"MaxDeals": null, "MinUsedSpace": 2048}]),
    );
    assert_eq!(
        result(&picky),
        &Value::Null,
        "not enough data for MinUsedSpace"
    );
}

#[test]
fn the_api_is_also_served_over_websocket() {
    use damocles_manager_api::rpc::SealerCliApiClient;
    let mut m = TestManager::new();
    let addr = m.start();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(&format!("Bearer {}", m.admin_token())).expect("header"),
        );
        let ws = jsonrpsee::ws_client::WsClientBuilder::default()
            .set_headers(headers)
            .build(format!("ws://{addr}/rpc/v0"))
            .await
            .expect("websocket connection");
        let version = SealerCliApiClient::version(&ws)
            .await
            .expect("version over websocket");
        assert!(version.starts_with('v'), "{version}");
        let sector = SealerApiClient::allocate_sector(&ws, AllocateSectorSpec::default())
            .await
            .expect("allocate over websocket")
            .expect("a sector");
        assert_eq!(sector.id.miner, MINER);
    });
}
