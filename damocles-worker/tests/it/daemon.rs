//! `damocles-worker daemon` refuses what it cannot run, before contacting anyone, and names
//! the file, the key and the problem.

use std::process::Command;

const WORKER: &str = env!("CARGO_BIN_EXE_damocles-worker");

fn daemon(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("worker.toml");
    std::fs::write(&path, config).expect("write");
    let out = Command::new(WORKER)
        .args(["daemon", "-c"])
        .arg(&path)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the worker");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const BASE: &str = r#"
[sector_manager]
rpc_client.addr = "/ip4/127.0.0.1/tcp/1"

[[sealing_thread]]
location = "/nonexistent/store"

[[attached]]
name = "persist"
location = "/nonexistent/persist"
"#;

#[test]
fn a_broken_config_is_refused_with_the_key_named() {
    let (ok, err) = daemon(&format!("{BASE}\n[sealing]\nmax_retryes = 3\n"));
    assert!(!ok);
    assert!(err.contains("worker.toml"), "{err}");
    assert!(err.contains("sealing.max_retryes"), "{err}");

    let (ok, err) = daemon(&format!("{BASE}\n[sealing]\nrecover_interval = \"soon\"\n"));
    assert!(!ok);
    assert!(err.contains("sealing.recover_interval"), "{err}");

    let (ok, err) = daemon(&BASE.replace(
        "[[sealing_thread]]\nlocation = \"/nonexistent/store\"\n",
        "[[sealing_thread]]\nplan = \"sealer\"\n",
    ));
    assert!(!ok);
    assert!(err.contains("location"), "{err}");

    let (ok, err) = daemon("[worker]\nname = \"w\"\n");
    assert!(!ok);
    assert!(err.contains("sector_manager"), "{err}");
}

#[test]
fn a_missing_persist_store_or_manager_stops_the_start_up() {
    let (ok, err) = daemon(BASE);
    assert!(!ok);
    assert!(
        err.contains("attached.0.location") && err.contains("/nonexistent/persist"),
        "{err}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = BASE.replace("/nonexistent/persist", &dir.path().display().to_string());
    let (ok, err) = daemon(&cfg);
    assert!(!ok);
    assert!(
        err.contains("Venus.StoreBasicInfo"),
        "the manager is unreachable: {err}"
    );
}

#[test]
fn an_unknown_objstore_plugin_stops_the_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = BASE.replace(
        "[[attached]]\nname = \"persist\"\nlocation = \"/nonexistent/persist\"\n",
        &format!(
            "[worker]\nplugin_dir = \"{}\"\n\n[[attached]]\nname = \"s3\"\nlocation = \"s3://bucket/sectors\"\nplugin = \"nope\"\n",
            dir.path().display()
        ),
    );
    let (ok, err) = daemon(&cfg);
    assert!(!ok);
    assert!(
        err.contains("attached.0.plugin")
            && err.contains("\"nope\"")
            && err.contains("libobjstore_nope.so"),
        "{err}"
    );
}
