//! An ext-processor written in Python: `docs/examples/transfer_s3.py`, a `transfer` processor
//! that persists sector files into S3 with nothing but the standard library.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vc_processors::builtin::tasks::{Transfer, TransferItem, TransferRoute, TransferStoreInfo};
use vc_processors::producer::ProducerBuilder;

use crate::common::{one_sector_manager_with_s3_store, s3_attached, sector_objects, MINER};
use crate::s3server::{S3Server, ACCESS_KEY, BUCKET, SECRET_KEY};
use crate::worker::TestWorker;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/examples/transfer_s3.py")
        .canonicalize()
        .expect("docs/examples/transfer_s3.py")
}

fn route(src: &Path, store: &str, key: &str) -> TransferRoute {
    TransferRoute {
        src: TransferItem {
            store_name: None,
            uri: src.to_path_buf(),
        },
        dest: TransferItem {
            store_name: Some(store.into()),
            uri: key.into(),
        },
        opt: None,
    }
}

fn store(meta: &[(&str, &str)]) -> HashMap<String, TransferStoreInfo> {
    HashMap::from([(
        "s3".to_string(),
        TransferStoreInfo {
            name: "s3".into(),
            meta: Some(
                meta.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            plugin: None,
        },
    )])
}

#[test]
fn the_python_transfer_processor_uploads_in_parts_and_reports_bad_routes() {
    let server = S3Server::start();
    let d = tempfile::tempdir().expect("tmp");
    // Larger than two 5 MiB parts: a multipart upload.
    let sealed: Vec<u8> = (0..(11u32 << 20) + 5).map(|i| (i % 253) as u8).collect();
    std::fs::write(d.path().join("sealed"), &sealed).expect("sealed");
    let cache = d.path().join("cache");
    std::fs::create_dir_all(cache.join("sub")).expect("cache");
    std::fs::write(cache.join("p_aux"), b"paux").expect("p_aux");
    std::fs::write(cache.join("sub/t_aux"), b"taux").expect("t_aux");
    let good = [
        ("Endpoint", server.endpoint.as_str()),
        ("bucket", BUCKET),
        ("Prefix", "sectors"),
        ("AccessKey", ACCESS_KEY),
        ("SecretKey", SECRET_KEY),
        ("PartSize", "5242880"),
    ];
    let producer = ProducerBuilder::new("python3", [script()])
        .stable_timeout(Duration::from_secs(10))
        .spawn::<Transfer>()
        .expect("the Python processor starts and prints its ready line");

    let upload = Transfer {
        stores: store(&good),
        routes: vec![
            route(&d.path().join("sealed"), "s3", "sealed/s-t01000-1"),
            route(&cache, "s3", "cache/s-t01000-1"),
        ],
    };
    assert!(producer.call(upload).expect("upload"));
    let root = server.root.join(BUCKET).join("sectors");
    assert_eq!(
        std::fs::read(root.join("sealed/s-t01000-1")).expect("sealed object"),
        sealed
    );
    assert_eq!(
        std::fs::read(root.join("cache/s-t01000-1/sub/t_aux")).expect("t_aux object"),
        b"taux"
    );

    // Every failure is an answer naming the route and the cause; the processor keeps serving.
    let fail = |stores, routes| {
        producer
            .call(Transfer { stores, routes })
            .expect_err("refused")
            .to_string()
    };
    let mut wrong_secret = good;
    wrong_secret[4] = ("SecretKey", "not-the-secret");
    let e = fail(
        store(&wrong_secret),
        vec![route(&cache.join("p_aux"), "s3", "cache/x/p_aux")],
    );
    assert!(e.contains("route 0") && e.contains("HTTP 403"), "{e}");
    let e = fail(
        store(&good),
        vec![route(&cache.join("p_aux"), "s3", "../escape")],
    );
    assert!(e.contains("not an object path"), "{e}");
    let e = fail(
        store(&good),
        vec![route(&d.path().join("missing"), "s3", "sealed/x")],
    );
    assert!(e.contains("src path not exists"), "{e}");
    let e = fail(
        store(&good[1..]),
        vec![route(&cache.join("p_aux"), "s3", "cache/y/p_aux")],
    );
    assert!(e.contains("Meta.Endpoint is required"), "{e}");
    assert!(!root.join("cache/x").exists() && !root.join("cache/y").exists());

    assert!(producer
        .call(Transfer {
            stores: store(&good),
            routes: vec![route(&cache.join("p_aux"), "s3", "cache/z/p_aux")],
        })
        .expect("still serving"));
    assert_eq!(
        std::fs::read(root.join("cache/z/p_aux")).expect("p_aux"),
        b"paux"
    );
}

#[test]
fn a_worker_persists_a_sector_into_s3_through_the_python_processor() {
    vc_processors::builtin::params::ensure_test_params(
        &vc_processors::builtin::params::ParamKind::ALL,
    )
    .expect("params");
    let server = S3Server::start();
    let mut m = one_sector_manager_with_s3_store(&server, |_| {});
    m.start();
    let extra = format!(
        "\n[[processors.transfer]]\nbin = \"python3\"\nargs = [\"{}\"]\n",
        script().display()
    );
    let worker_token = m.token(damocles_auth::Perm::Write);
    let mut w = TestWorker::with_attached(
        m.addr.expect("manager"),
        &worker_token,
        &m.dir.path().join("worker"),
        1,
        &s3_attached("s3"),
        &extra,
    );
    w.start();
    // The manager accepts SubmitPersistedEx only once it finds every file in the bucket;
    // the sector then waits for its seed. No need to go on to C2.
    let started = Instant::now();
    loop {
        let out = w.control(&["list"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if ["PersistanceSubmitted", "SeedAssigned", "C1Done"]
            .iter()
            .any(|s| text.contains(s))
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "not persisted in 3 minutes: {text}\n{}",
            w.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    w.kill();
    let objects = sector_objects(&server, 1);
    assert!(
        objects.contains(&format!("sealed/s-t0{MINER}-1"))
            && objects.contains(&format!("cache/s-t0{MINER}-1/p_aux"))
            && objects.contains(&format!("cache/s-t0{MINER}-1/t_aux")),
        "{objects:?}"
    );
    let logs = w.logs();
    assert!(
        logs.contains("transfer_s3: route 0 done") && logs.contains("kind=\"transfer\""),
        "the Python child ran the transfer:\n{logs}"
    );
}
