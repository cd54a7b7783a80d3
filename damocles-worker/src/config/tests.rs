//! The tests of whole config files: defaults, the per-thread merge, unknown keys, type errors,
//! validation, the hot config, secrets in `Debug`, deprecated tables and the example file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::*;

const MINIMAL: &str = r#"
[sector_manager]
rpc_client.addr = "/ip4/127.0.0.1/tcp/1789"

[[sealing_thread]]
location = "/data/local-1"
"#;

fn err_text(r: Result<impl fmt::Debug>) -> String {
    format!("{:#}", r.expect_err("should fail"))
}

#[test]
fn minimal_config_has_the_spec_defaults() {
    let cfg = from_str_named(MINIMAL, "w.toml").expect("minimal config");
    // §6.1
    assert_eq!(cfg.worker.name, None);
    assert_eq!(cfg.worker.rpc_server.port, 17890);
    assert_eq!(
        cfg.worker.rpc_server.listen_addr().expect("listen"),
        "127.0.0.1:17890".parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(
        cfg.worker.rpc_server.connect_addr().expect("connect"),
        "127.0.0.1:17890".parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(cfg.worker.ping_interval.get(), Duration::from_secs(30));
    assert!(cfg.worker.local_pieces_dirs().is_empty());
    assert!(cfg.worker.scan_persist_stores.is_empty());
    // §6.2
    assert!(!cfg.metrics.enable);
    assert_eq!(cfg.metrics.listen().to_string(), "0.0.0.0:9000");
    // §6.3
    let sm = cfg.manager().expect("manager");
    assert_eq!(sm.piece_token, None);
    assert_eq!(
        sm.rpc_client.endpoint().expect("endpoint"),
        "http://127.0.0.1:1789/rpc/v0"
    );
    // §6.4
    let s = &cfg.sealing;
    assert!(s.allowed_miners.is_empty() && s.allowed_sizes.is_empty());
    assert!(!s.enable_deals && !s.disable_cc);
    assert_eq!((s.max_deals, s.min_deal_space), (None, None));
    assert_eq!(s.max_retries, 5);
    assert_eq!(s.seal_interval.get(), Duration::from_secs(30));
    assert_eq!(s.recover_interval.get(), Duration::from_secs(60));
    assert_eq!(s.rpc_polling_interval.get(), Duration::from_secs(180));
    assert!(!s.ignore_proof_check && !s.verify_after_pc2);
    assert_eq!(s.request_task_max_retries, 3);
    // §6.5
    let t = cfg.effective_thread(0, None).expect("thread 0");
    assert_eq!(t.plan, Plan::Sealer);
    assert_eq!(t.location.as_deref(), Some(Path::new("/data/local-1")));
    assert_eq!(t.sealing, SealingConfig::default());
    // §6.6, §6.7
    assert!(cfg.attached.is_empty());
    assert!(cfg.processors.concurrent_limits().is_empty());
    assert!(PROCESSOR_KINDS
        .iter()
        .all(|k| cfg.processors.ext(k).is_none()));
    assert!(cfg.deprecated_tables().is_empty());
}

#[test]
fn ext_processor_defaults() {
    let text =
        format!("{MINIMAL}\n[[processors.pc1]]\n[processors.pc1.cgroup]\ncpuset = \"0-3\"\n");
    let cfg = from_str_named(&text, "w.toml").expect("pc1 block");
    let pc1 = &cfg.processors.ext("pc1").expect("pc1")[0];
    assert_eq!(pc1.bin, None);
    assert_eq!(pc1.args_for("pc1"), ["processor", "pc1"]);
    assert_eq!(pc1.stable_wait.get(), Duration::from_secs(5));
    assert!(pc1.auto_restart && pc1.inherit_envs);
    assert_eq!(pc1.capacity(), 64);
    assert!(pc1.locks.is_empty() && pc1.envs.is_empty());
    let cg = pc1.cgroup.as_ref().expect("cgroup");
    assert_eq!(cg.group_name, "vc-worker");
    assert_eq!(cg.cpuset.as_deref(), Some("0-3"));
}

#[test]
fn sealing_yields_to_window_post_by_default_and_bad_priorities_are_named() {
    let cfg = from_str_named(
        &format!("{MINIMAL}\n[[processors.pc1]]\n[[processors.window_post]]\n[[processors.c2]]\nnice = 3\n"),
        "w.toml",
    )
    .expect("config");
    let p = &cfg.processors.priority;
    assert_eq!((p.sealing_nice, p.post_nice), (5, 0));
    assert!(p.hold_sealing_during_post);
    let ext = |k: &str| cfg.processors.ext(k).expect("block")[0].clone();
    assert_eq!(p.nice_for("pc1", &ext("pc1")), Some(5));
    assert_eq!(p.nice_for("window_post", &ext("window_post")), Some(0));
    assert_eq!(
        p.nice_for("c2", &ext("c2")),
        Some(3),
        "a block's own nice wins"
    );
    let off = PriorityConfig {
        sealing_nice: 0,
        ..PriorityConfig::default()
    };
    assert_eq!(off.nice_for("pc1", &ext("pc1")), None);
    assert_eq!(
        off.nice_for("window_post", &ext("window_post")),
        None,
        "off: children inherit the worker's nice"
    );
    assert_eq!(off.nice_for("c2", &ext("c2")), Some(3));

    for (bad, named) in [
        (
            "sealing_nice = 20",
            "`processors.priority.sealing_nice` = 20",
        ),
        (
            "sealing_nice = -1",
            "`processors.priority.sealing_nice` = -1",
        ),
        ("post_nice = -21", "`processors.priority.post_nice` = -21"),
        ("post_nice = 12", "would give WindowPoSt no priority"),
    ] {
        let text = format!("{MINIMAL}\n[processors.priority]\n{bad}\n");
        let err = err_text(from_str_named(&text, "w.toml"));
        assert!(err.contains(named), "{bad}: {err}");
    }
    let err = err_text(from_str_named(
        &format!("{MINIMAL}\n[[processors.pc2]]\nnice = 40\n"),
        "w.toml",
    ));
    assert!(err.contains("`processors.pc2.0.nice` = 40"), "{err}");
}

#[test]
fn durations_parse_in_the_file() {
    let text = format!("{MINIMAL}\n[sealing_thread.sealing]\nseal_interval = \"1m30s\"\n");
    let cfg = from_str_named(&text, "w.toml").expect("duration in file");
    let t = cfg.effective_thread(0, None).expect("thread");
    assert_eq!(t.sealing.seal_interval.get(), Duration::from_secs(90));
}

#[test]
fn unknown_keys_are_named_by_dotted_path() {
    let text = format!(
        "{MINIMAL}\n[sealing_thread.sealing]\nmax_retryes = 3\n\n[[processors.pc1]]\nconcurrnet = 2\n\n[worker]\nnmae = \"x\"\n"
    );
    let msg = err_text(from_str_named(&text, "w.toml"));
    assert!(msg.starts_with("w.toml: unknown keys"), "{msg}");
    for key in [
        "`sealing_thread.0.sealing.max_retryes`",
        "`processors.pc1.0.concurrnet`",
        "`worker.nmae`",
    ] {
        assert!(msg.contains(key), "{key} in {msg}");
    }
    let msg = err_text(from_str_named(
        &format!("{MINIMAL}\n[[processors.synth_proof]]\n"),
        "w.toml",
    ));
    assert!(
        msg.contains("`processors.synth_proof` (synthetic proofs"),
        "{msg}"
    );
}

#[test]
fn type_errors_name_the_key_the_file_and_the_line() {
    let text = format!(
        "{MINIMAL}\n[[sealing_thread]]\nlocation = \"/data/local-2\"\n[sealing_thread.sealing]\nmax_retries = \"five\"\n"
    );
    let msg = err_text(from_str_named(&text, "w.toml"));
    assert!(
        msg.starts_with("w.toml: `sealing_thread.1.sealing.max_retries`"),
        "{msg}"
    );
    assert!(msg.contains("line 11"), "{msg}");
    assert!(msg.contains("five"), "{msg}");

    let msg = err_text(from_str_named(
        &format!("{MINIMAL}plan = \"niporep\"\n"),
        "w.toml",
    ));
    assert!(msg.contains("`sealing_thread.0.plan`"), "{msg}");
    assert!(msg.contains("niporep"), "{msg}");

    let msg = err_text(from_str_named(
        &format!("{MINIMAL}\n[sealing]\nallowed_sizes = [\"32GB\"]\nrecover_interval = \"1m\"\n"),
        "w.toml",
    ));
    assert!(msg.starts_with("w.toml: `sealing.allowed_sizes`"), "{msg}");
    assert!(msg.contains("invalid sector size"), "{msg}");

    let msg = err_text(from_str_named("[sealing\n", "broken.toml"));
    assert!(msg.starts_with("broken.toml: "), "{msg}");
    assert!(msg.contains("line 1"), "{msg}");
}

#[test]
fn sealing_merges_over_three_levels() {
    let text = r#"
[sector_manager]
rpc_client.addr = "http://10.0.0.1:1789/ignored/path"

[sealing]
allowed_miners = [1000]
enable_deals = true
max_retries = 7
seal_interval = "10s"

[[sealing_thread]]
location = "/a"
[sealing_thread.sealing]
allowed_miners = []
max_retries = 9

[[sealing_thread]]
location = "/b"
plan = "snapup"
"#;
    let cfg = from_str_named(text, "w.toml").expect("parse");
    let hot = HotConfig::from_str_named(
        "plan = \"rebuild\"\n[sealing]\nseal_interval = \"1m30s\"\nenable_deals = false\n",
        "hot.toml",
    )
    .expect("hot");

    let t0 = cfg.effective_thread(0, None).expect("thread 0");
    assert_eq!(t0.plan, Plan::Sealer);
    assert!(
        t0.sealing.allowed_miners.is_empty(),
        "thread lifts the miner restriction"
    );
    assert_eq!(t0.sealing.max_retries, 9);
    assert_eq!(t0.sealing.seal_interval.get(), Duration::from_secs(10));
    assert!(t0.sealing.enable_deals);
    assert_eq!(t0.sealing.recover_interval.get(), Duration::from_secs(60));

    let t0 = cfg.effective_thread(0, Some(&hot)).expect("thread 0 hot");
    assert_eq!(t0.plan, Plan::Rebuild);
    assert_eq!(t0.sealing.seal_interval.get(), Duration::from_secs(90));
    assert!(!t0.sealing.enable_deals);
    assert_eq!(
        t0.sealing.max_retries, 9,
        "thread value kept under the hot config"
    );
    assert_eq!(t0.location.as_deref(), Some(Path::new("/a")));
    t0.check().expect("usable");

    let t1 = cfg.effective_thread(1, None).expect("thread 1");
    assert_eq!(t1.plan, Plan::Snapup);
    assert_eq!(t1.sealing.allowed_miners, [1000]);
    assert_eq!(t1.sealing.max_retries, 7);
    assert!(cfg.effective_thread(2, None).is_none());

    assert_eq!(
        cfg.manager()
            .expect("sm")
            .rpc_client
            .endpoint()
            .expect("url"),
        "http://10.0.0.1:1789/rpc/v0"
    );
}

#[test]
fn validation_names_every_bad_key() {
    let text = format!(
        r#"{MINIMAL}
[[sealing_thread]]
location = "/data/local-1/"

[[sealing_thread]]
plan = "unseal"

[[attached]]
name = "p"
location = "/a"

[[attached]]
name = "p"
location = "/b"

[[attached]]
location = "/c"
[attached.meta]
Bucket = "b"

[processors.limitation.concurrent]
pc3 = 1
pc1 = 0

[processors.limitation.staggered]
pc2 = "500ms"

[[processors.c2]]
locks = ["gpu"]

[[processors.sealing_daemons]]
"#
    );
    let msg = err_text(from_str_named(&text, "w.toml"));
    assert!(msg.starts_with("w.toml: invalid configuration: "), "{msg}");
    for key in [
        "`sealing_thread.1.location`",
        "`sealing_thread.2.location` is required for plan `unseal`",
        "`attached.1.name`: duplicate store name \"p\"",
        "`attached.2.meta`",
        "`processors.limitation.concurrent.pc3`: unknown stage",
        "`processors.limitation.concurrent.pc1` = 0",
        "`processors.limitation.staggered.pc2`",
        "`processors.c2.0.locks.0`",
        "`processors.sealing_daemons.0.bin` is required",
    ] {
        assert!(msg.contains(key), "{key} in {msg}");
    }

    let msg = err_text(from_str_named("sealing_thread = []\n", "w.toml"));
    assert!(msg.contains("`[sector_manager]` is required"), "{msg}");
    let msg = err_text(from_str_named(
        "[sector_manager]\nrpc_client.addr = \"localhost:1789\"\n",
        "w.toml",
    ));
    assert!(msg.contains("`sealing_thread` is missing"), "{msg}");
    assert!(msg.contains("`sector_manager.rpc_client.addr`"), "{msg}");

    // P-8: CC disabled with deals off never seals anything.
    let msg = err_text(from_str_named(
        &format!("{MINIMAL}\n[sealing]\ndisable_cc = true\n"),
        "w.toml",
    ));
    assert!(
        msg.contains("`sealing.disable_cc` = true without `enable_deals`"),
        "{msg}"
    );
    from_str_named(
        &format!("{MINIMAL}\n[sealing_thread.sealing]\ndisable_cc = true\nenable_deals = true\n"),
        "w.toml",
    )
    .expect("disable_cc with deals is fine");
}

#[test]
fn legacy_limit_applies_only_without_limitation() {
    let cfg = from_str_named(
        &format!("{MINIMAL}\n[processors.limit]\npc1 = 2\n"),
        "w.toml",
    )
    .expect("legacy");
    assert_eq!(cfg.processors.concurrent_limits().get("pc1"), Some(&2));
    let msg = err_text(from_str_named(
        &format!(
            "{MINIMAL}\n[processors.limit]\npc1 = 2\n[processors.limitation.concurrent]\npc2 = 1\n"
        ),
        "w.toml",
    ));
    assert!(
        msg.contains("`processors.limit` (legacy) is ignored"),
        "{msg}"
    );
}

#[test]
fn hot_config_is_strict_and_optional() {
    let msg = err_text(HotConfig::from_str_named(
        "location = \"/elsewhere\"\nplan = \"snapup\"\n",
        "hot.toml",
    ));
    assert!(msg.contains("hot.toml: unknown key `location`"), "{msg}");
    let msg = err_text(HotConfig::from_str_named(
        "[sealing]\nmax_retrys = 1\n",
        "hot.toml",
    ));
    assert!(msg.contains("`sealing.max_retrys`"), "{msg}");

    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(load_hot(dir.path()).expect("no file"), None);
    std::fs::write(
        hot_config_path(dir.path()),
        "plan = \"wdpost\"\n[sealing]\nrecover_interval = \"5s\"\n",
    )
    .expect("write");
    let hot = load_hot(dir.path()).expect("read").expect("present");
    assert_eq!(hot.plan, Some(Plan::Wdpost));
    assert_eq!(
        hot.sealing.recover_interval,
        Some(HumanDuration::from_secs(5))
    );
    std::fs::write(
        hot_config_path(dir.path()),
        "[sealing]\nrecover_interval = \"0s\"\n",
    )
    .expect("write");
    let msg = err_text(load_hot(dir.path()));
    assert!(
        msg.contains("`sealing.recover_interval` must not be 0"),
        "{msg}"
    );
    assert!(msg.contains("config.toml"), "{msg}");
}

#[test]
fn secrets_stay_out_of_debug() {
    let text = r#"
[sector_manager]
piece_token = "tok-secret"
[sector_manager.rpc_client]
addr = "/ip4/127.0.0.1/tcp/1789"
[sector_manager.rpc_client.headers]
Authorization = "Bearer hunter2"

[[sealing_thread]]
location = "/a"
"#;
    let mut cfg = from_str_named(text, "w.toml").expect("parse");
    cfg.attached.push(AttachedConfig {
        name: Some("s3".into()),
        location: "s3://b".into(),
        plugin: Some("s3".into()),
        meta: BTreeMap::from([
            ("SecretKey".to_string(), "sk-secret".to_string()),
            ("Bucket".to_string(), "b".to_string()),
        ]),
        ..AttachedConfig::default()
    });
    let dump = format!("{cfg:?}");
    for secret in ["hunter2", "tok-secret", "sk-secret"] {
        assert!(!dump.contains(secret), "{secret} in {dump}");
    }
    assert!(
        dump.contains("Authorization") && dump.contains("Bucket"),
        "{dump}"
    );
}

#[test]
fn deprecated_tables_are_accepted() {
    let text = format!(
        "{MINIMAL}\n[remote_store]\nname = \"x\"\nlocation = \"/x\"\n[attached_selection]\nenable_space_weighted = true\n"
    );
    let cfg = from_str_named(&text, "w.toml").expect("deprecated tables");
    assert_eq!(
        cfg.deprecated_tables(),
        ["remote_store", "attached_selection"]
    );
}

#[test]
fn the_example_file_parses_validates_and_round_trips() {
    let text = include_str!("../../../docs/examples/damocles-worker.toml");
    let cfg = from_str_named(text, "docs/examples/damocles-worker.toml").expect("example");
    assert!(cfg.threads().len() >= 3);
    assert!(cfg.threads().iter().any(|t| t.plan == Some(Plan::Wdpost)));
    let plugin_store = cfg
        .attached
        .iter()
        .find(|a| a.plugin.is_some())
        .expect("an objstore-plugin store");
    assert!(plugin_store.name.is_some() && !plugin_store.meta.is_empty());
    assert!(cfg
        .processors
        .static_tree_d()
        .expect("sizes")
        .contains_key(&(32u64 << 30)));
    for kind in ["pc1", "pc2", "c2", "transfer"] {
        assert!(
            cfg.processors.ext(kind).is_some(),
            "example shows [[processors.{kind}]]"
        );
    }
    assert_eq!(
        cfg.processors.ext("tree_d"),
        None,
        "tree_d stays in-process"
    );

    let again = from_str_named(&cfg.to_toml().expect("to toml"), "round trip")
        .expect("serialised config parses");
    assert_eq!(again, cfg);
}

#[test]
fn a_default_sealing_round_trips() {
    let mut cfg = from_str_named(MINIMAL, "w.toml").expect("minimal");
    cfg.sealing = SealingConfig::default();
    let text = cfg.to_toml().expect("toml");
    assert_eq!(from_str_named(&text, "again").expect("parse"), cfg);
}
