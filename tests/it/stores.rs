//! Persist stores: the fs backend and the S3 plugin, reservations, `SubmitPersistedEx`, and
//! stores found by `ScanPersistStores`.

use serde_json::{json, Value};

use crate::common::{manager_bin, ok_text, TestManager, MINER};
use crate::s3server::{S3Server, BUCKET};

fn files(sid_name: &str) -> Vec<String> {
    let mut out = vec![format!("sealed/{sid_name}")];
    for f in ["p_aux", "t_aux", "sc-02-data-tree-r-last.dat"] {
        out.push(format!("cache/{sid_name}/{f}"));
    }
    out
}

#[test]
fn an_s3_plugin_store_and_a_scanned_store_hold_sectors() {
    let server = S3Server::start();
    let scanned = tempfile::tempdir().expect("scanned");
    let store_dir = scanned.path().join("store-a");
    std::fs::create_dir_all(&store_dir).expect("dir");
    let out = std::process::Command::new(manager_bin())
        .args([
            "util",
            "storage",
            "gen-sectorstore-json",
            "--name",
            "scanned-a",
            "--weight",
            "3",
        ])
        .arg(&store_dir)
        .output()
        .expect("gen");
    ok_text(&out);
    let pattern = format!("{}/store-*", scanned.path().display());
    let endpoint = server.endpoint.clone();
    let mut m = TestManager::with_config(move |c| {
        let s3 = crate::common::s3_persist_store("s3", &endpoint);
        c.common.persist_stores.push(s3);
        c.common.scan_persist_stores = vec![pattern];
    });
    m.start();

    let list = m.raw("Venus.StoreList", json!([]));
    let names: Vec<&str> = list["result"]
        .as_array()
        .expect("list")
        .iter()
        .map(|s| s["Name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, vec!["persist", "s3", "scanned-a"], "{list}");
    let s3 = &list["result"][1];
    assert!(
        s3["Type"].as_str().unwrap_or_default().contains("s3"),
        "{s3}"
    );
    assert_eq!(list["result"][2]["Weight"], json!(3));

    // Credentials never leave in a listing (a `read` call), the CLI's or the logs; a worker's
    // `write` token gets them for its transfer.
    {
        use crate::s3server::SECRET_KEY;
        assert_eq!(s3["Meta"]["SecretKey"], json!("<redacted>"), "{s3}");
        assert_eq!(s3["Meta"]["AccessKey"], json!("<redacted>"), "{s3}");
        assert_eq!(s3["Meta"]["Bucket"], json!(BUCKET), "{s3}");
        let listed = ok_text(&m.util(&["storage", "list"]));
        let (_, basic) = crate::common::raw_call(
            &m.url(),
            Some(&m.token(damocles_auth::Perm::Write)),
            "Venus.StoreBasicInfo",
            json!(["s3"]),
        );
        assert_eq!(
            basic["result"]["Meta"]["SecretKey"],
            json!(SECRET_KEY),
            "{basic}"
        );
        let logs = m.logs();
        assert!(!list.to_string().contains(SECRET_KEY), "StoreList: {list}");
        assert!(!listed.contains(SECRET_KEY), "util storage list: {listed}");
        assert!(
            !logs.contains(SECRET_KEY),
            "the manager's logs hold a credential"
        );
    }

    let sector = m.raw(
        "Venus.AllocateSector",
        json!([{"AllowedMiners": null, "AllowedProofTypes": null}]),
    );
    let n = sector["result"]["ID"]["Number"].as_u64().expect("n");
    let sid = json!({"Miner": MINER, "Number": n});
    let chosen = m.raw("Venus.StoreReserveSpace", json!([sid, 4096, ["s3"]]));
    assert_eq!(chosen["result"]["Name"], json!("s3"), "{chosen}");
    assert_eq!(chosen["result"]["Meta"]["Bucket"], json!(BUCKET));

    let missing = m.raw("Venus.SubmitPersistedEx", json!([sid, "s3", false]));
    assert_eq!(
        missing["result"],
        json!(false),
        "nothing uploaded yet: {missing}"
    );
    // The server keeps objects as files under <root>/<bucket>/<key>.
    let name = format!("s-t0{MINER}-{n}");
    for key in files(&name) {
        let path = server.root.join(BUCKET).join("sectors").join(&key);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
        std::fs::write(&path, vec![7u8; 64]).expect("object");
    }
    let ok = m.raw("Venus.SubmitPersistedEx", json!([sid, "s3", false]));
    assert_eq!(ok["result"], json!(true), "{ok}");
    let found = m.raw("Venus.SectorIndexerFind", json!(["normal", sid]));
    assert_eq!(found["result"]["Instance"]["SealedFile"], json!("s3"));

    // A file store found by its sectorstore.json.
    let n2 = m.raw(
        "Venus.AllocateSector",
        json!([{"AllowedMiners": null, "AllowedProofTypes": null}]),
    )["result"]["ID"]["Number"]
        .as_u64()
        .expect("n2");
    let sid2 = json!({"Miner": MINER, "Number": n2});
    let chosen = m.raw(
        "Venus.StoreReserveSpace",
        json!([sid2, 4096, ["scanned-a"]]),
    );
    assert_eq!(chosen["result"]["Name"], json!("scanned-a"));
    let name2 = format!("s-t0{MINER}-{n2}");
    for rel in files(&name2) {
        let path = store_dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
        std::fs::write(&path, b"x").expect("file");
    }
    assert_eq!(
        m.raw("Venus.SubmitPersistedEx", json!([sid2, "scanned-a", false]))["result"],
        json!(true)
    );

    // A store that fails is an error, not "missing files": the worker retries.
    drop(server);
    let down: Value = m.raw("Venus.SubmitPersistedEx", json!([sid, "s3", false]));
    assert_eq!(down["error"]["code"], json!(1), "{down}");
    assert!(
        down["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("s3"),
        "{down}"
    );
}

#[test]
fn reservations_follow_policy_weight_and_free_space() {
    let mut m = TestManager::with_config(|c| {
        let home = c.common.persist_stores[0].path.clone();
        let base = std::path::Path::new(&home)
            .parent()
            .expect("home")
            .to_path_buf();
        for (name, ro, deny) in [("ro", true, vec![]), ("denied", false, vec![MINER])] {
            let p = base.join(name);
            std::fs::create_dir_all(&p).expect("dir");
            c.common
                .persist_stores
                .push(damocles_manager::config::PersistStoreConfig {
                    name: name.into(),
                    path: p.display().to_string(),
                    read_only: ro,
                    deny_miners: deny,
                    ..Default::default()
                });
        }
    });
    m.start();
    let n = m.raw(
        "Venus.AllocateSector",
        json!([{"AllowedMiners": null, "AllowedProofTypes": null}]),
    )["result"]["ID"]["Number"]
        .as_u64()
        .expect("n");
    let sid = json!({"Miner": MINER, "Number": n});
    assert_eq!(
        m.raw("Venus.StoreReserveSpace", json!([sid, 4096, ["ro"]]))["result"],
        Value::Null,
        "read-only"
    );
    assert_eq!(
        m.raw("Venus.StoreReserveSpace", json!([sid, 4096, ["denied"]]))["result"],
        Value::Null,
        "miner denied"
    );
    assert_eq!(
        m.raw(
            "Venus.StoreReserveSpace",
            json!([sid, u64::MAX / 2, ["persist"]])
        )["result"],
        Value::Null,
        "too big"
    );
    let any = m.raw("Venus.StoreReserveSpace", json!([sid, 4096, []]));
    assert_eq!(
        any["result"]["Name"],
        json!("persist"),
        "the only store that fits: {any}"
    );
    let out = ok_text(&m.util(&[
        "storage",
        "release-reserved",
        &MINER.to_string(),
        &n.to_string(),
    ]));
    assert!(out.contains("released"), "{out}");
}

#[test]
fn attach_indexes_an_existing_store_while_the_daemon_runs() {
    let mut m = TestManager::new();
    m.start();
    let old = tempfile::tempdir().expect("tempdir");
    let sealed = old.path().join("sealed");
    std::fs::create_dir_all(&sealed).expect("mkdir");
    for n in [41u64, 42] {
        let name = format!("s-t0{MINER}-{n}");
        std::fs::File::create(sealed.join(&name))
            .expect("create")
            .set_len(2048)
            .expect("size");
        let cache = old.path().join("cache").join(&name);
        std::fs::create_dir_all(&cache).expect("mkdir");
        // Sector 42 lacks its tree.
        let names: &[&str] = if n == 41 {
            &["sc-02-data-tree-r-last.dat", "p_aux", "t_aux"]
        } else {
            &["p_aux", "t_aux"]
        };
        for f in names {
            std::fs::write(cache.join(f), b"x").expect("write");
        }
    }
    let out = m.util(&[
        "storage",
        "attach",
        "--name",
        "old-store",
        "--read-only",
        "--verbose",
        &old.path().display().to_string(),
    ]);
    let text = ok_text(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains(&format!("s-t0{MINER}-41: sealed file and cache")),
        "{text}"
    );
    assert!(text.contains("1 sectors of"), "{text}");
    assert!(
        text.contains("[[Common.PersistStores]]") && text.contains("Name = \"old-store\""),
        "{text}"
    );
    assert!(
        stderr.contains(&format!("skipped sealed/s-t0{MINER}-42"))
            && stderr.contains("sc-02-data-tree-r-last.dat"),
        "{stderr}"
    );
    let found = ok_text(&m.util(&["storage", "find", &MINER.to_string(), "41"]));
    assert!(found.contains("sealed file: old-store"), "{found}");
    let missing = m.util(&["storage", "find", &MINER.to_string(), "42"]);
    assert!(!missing.status.success(), "42 was not indexed");

    // A path that is not a directory is refused by name.
    let bad = m.util(&["storage", "attach", "/nonexistent/store"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("/nonexistent/store is not a directory"),
        "{err}"
    );
}

#[test]
fn a_worker_refuses_to_start_with_an_s3_store_it_cannot_open() {
    let server = S3Server::start();
    let endpoint = server.endpoint.clone();
    let mut m = TestManager::with_config(move |c| {
        c.common
            .persist_stores
            .push(crate::common::s3_persist_store("s3", &endpoint));
    });
    m.start();
    // The worker's meta is laid over the manager's: a part size S3 refuses.
    let attached = format!(
        "{}meta = {{ PartSize = \"1024\" }}\n",
        crate::common::s3_attached("s3")
    );
    let worker_token = m.token(damocles_auth::Perm::Write);
    let w = crate::worker::TestWorker::with_attached(
        m.addr.expect("manager"),
        &worker_token,
        &m.dir.path().join("worker"),
        1,
        &attached,
        "",
    );
    let log = m.dir.path().join("refused-worker.log");
    let mut child = std::process::Command::new(crate::worker::worker_bin())
        .args(["daemon", "-c"])
        .arg(&w.config)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("run the worker");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the worker did not refuse to start within 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let err = std::fs::read_to_string(&log).expect("log");
    assert!(!status.success());
    assert!(
        err.contains("attached store s3") && err.contains("Meta.PartSize"),
        "{err}"
    );
}
