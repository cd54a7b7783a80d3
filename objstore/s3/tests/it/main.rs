//! objstore-s3 against a real S3-compatible server (s3s-fs) on loopback: the conformance suite
//! directly and through the C ABI, plus what is special to S3.

mod server;

use std::sync::Arc;

use objstore::conformance::Harness;
use objstore::{Error, ObjectStore, PluginLibrary, StoreConfig};
use objstore_s3::S3Store;
use server::S3Server;

fn s3_plugin() -> Arc<PluginLibrary> {
    objstore::conformance::built_plugin("s3")
}

/// A store config for `server`, with a 5 MiB part size so the 64 MiB case goes multipart.
fn config(server: &S3Server, prefix: &str, read_only: bool) -> StoreConfig {
    let mut cfg = StoreConfig::new("s3-test", "");
    cfg.read_only = read_only;
    cfg.plugin_name = Some("s3".into());
    for (k, v) in [
        ("Endpoint", server.endpoint.as_str()),
        ("Bucket", server::BUCKET),
        ("Prefix", prefix),
        ("AccessKey", server::ACCESS_KEY),
        ("SecretKey", server::SECRET_KEY),
        ("PartSize", "5242880"),
        ("PartsInFlight", "2"),
        ("RangesInFlight", "8"),
        ("MaxRetries", "2"),
        ("ReadTimeoutSecs", "60"),
    ] {
        cfg.meta.insert(k.to_string(), v.to_string());
    }
    cfg
}

struct Direct {
    server: S3Server,
}

impl Harness for Direct {
    fn open(&self, read_only: bool) -> Arc<dyn ObjectStore> {
        Arc::new(S3Store::open(config(&self.server, "direct", read_only)).expect("open"))
    }
    fn has_local_paths(&self) -> bool {
        false
    }
}

struct ThroughPlugin {
    server: S3Server,
    lib: Arc<PluginLibrary>,
}

impl Harness for ThroughPlugin {
    fn open(&self, read_only: bool) -> Arc<dyn ObjectStore> {
        Arc::new(
            self.lib
                .open(config(&self.server, "plugin/deeper", read_only))
                .expect("open through the plugin"),
        )
    }
    fn has_local_paths(&self) -> bool {
        false
    }
}

mod direct {
    objstore::conformance_tests!(super::Direct {
        server: super::S3Server::start()
    });
}

mod plugin {
    objstore::conformance_tests!(super::ThroughPlugin {
        server: super::S3Server::start(),
        lib: super::s3_plugin(),
    });
}

#[test]
fn prefixes_keep_stores_apart_and_full_paths_name_the_key() {
    let server = S3Server::start();
    let a = S3Store::open(config(&server, "a", false)).expect("open a");
    let b = S3Store::open(config(&server, "b/c", false)).expect("open b");
    a.put("sealed/s-t01000-1", &mut &b"aaa"[..]).expect("put a");
    b.put("sealed/s-t01000-1", &mut &b"bbbb"[..])
        .expect("put b");
    assert_eq!(a.stat("sealed/s-t01000-1").expect("stat").size, 3);
    assert_eq!(b.stat("sealed/s-t01000-1").expect("stat").size, 4);
    assert_eq!(a.list("").expect("list").len(), 1);
    assert_eq!(
        a.full_path("sealed/s-t01000-1"),
        "s3://damocles/a/sealed/s-t01000-1"
    );
    assert_eq!(b.full_path("x"), "s3://damocles/b/c/x");
    // The object really is the key <prefix>/<path> in the bucket.
    let on_disk = server
        .root
        .join(server::BUCKET)
        .join("b/c/sealed/s-t01000-1");
    assert_eq!(std::fs::read(on_disk).expect("the server's file"), b"bbbb");
}

#[test]
fn wrong_credentials_are_a_backend_error_not_not_found() {
    let server = S3Server::start();
    let mut cfg = config(&server, "creds", false);
    cfg.meta.insert("SecretKey".into(), "wrong".into());
    cfg.meta.insert("MaxRetries".into(), "0".into());
    let store = S3Store::open(cfg).expect("open (credentials are checked per request)");
    let err = store.stat("sealed/x").expect_err("refused");
    assert!(matches!(err, Error::Backend { .. }), "{err}");
}

#[test]
fn credentials_and_endpoint_can_come_from_the_environment() {
    let server = S3Server::start();
    let mut cfg = config(&server, "env", false);
    for key in ["AccessKey", "SecretKey", "Endpoint"] {
        cfg.meta.remove(key);
    }
    let env = |key: &str| match key {
        "AWS_ACCESS_KEY_ID" => Some(server::ACCESS_KEY.to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some(server::SECRET_KEY.to_string()),
        "AWS_ENDPOINT" => Some(server.endpoint.clone()),
        _ => None,
    };
    let store = S3Store::open_with_env(cfg, &env).expect("open");
    store
        .put("x", &mut &b"from env"[..])
        .expect("put with env credentials");
    assert_eq!(store.stat("x").expect("stat").size, 8);
}

#[test]
fn meta_credentials_are_not_mixed_with_an_environment_token() {
    let server = S3Server::start();
    let env =
        |key: &str| (key == "AWS_SESSION_TOKEN").then(|| "a-token-for-other-keys".to_string());
    let store = S3Store::open_with_env(config(&server, "mix", false), &env).expect("open");
    store
        .put("x", &mut &b"signed with Meta's keys only"[..])
        .expect("the environment's token is not added to Meta's keys");
}

#[test]
fn an_access_key_without_its_secret_is_refused() {
    let server = S3Server::start();
    let mut cfg = config(&server, "half", false);
    cfg.meta.remove("SecretKey");
    let err = S3Store::open_with_env(cfg, &|_| None).expect_err("half credentials");
    assert!(err.to_string().contains("needs its secret key"), "{err}");
}

#[test]
fn keys_are_used_as_they_are() {
    let server = S3Server::start();
    let store = S3Store::open(config(&server, "raw", false)).expect("open");
    let name = "odd/a~b[1]^c";
    store.put(name, &mut &b"odd"[..]).expect("put");
    let listed: Vec<String> = store
        .list("odd")
        .expect("list")
        .into_iter()
        .map(|m| m.path)
        .collect();
    assert_eq!(listed, [name], "list gives back the name it was given");
    assert_eq!(
        store
            .stat(&listed[0])
            .expect("stat of the listed name")
            .size,
        3
    );
    assert!(
        server
            .root
            .join(server::BUCKET)
            .join("raw")
            .join(name)
            .is_file(),
        "the key is not encoded"
    );
}

#[test]
fn an_unreachable_endpoint_fails_in_bounded_time() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let mut cfg = StoreConfig::new("dead", "");
    for (k, v) in [
        ("Endpoint", format!("http://{dead}")),
        ("Bucket", "b".to_string()),
        ("AccessKey", "k".to_string()),
        ("SecretKey", "s".to_string()),
        ("MaxRetries", "1".to_string()),
        ("RetryTimeoutSecs", "5".to_string()),
        ("ConnectTimeoutSecs", "2".to_string()),
    ] {
        cfg.meta.insert(k.into(), v);
    }
    let store = S3Store::open(cfg).expect("open");
    let t = std::time::Instant::now();
    let err = store.stat("x").expect_err("nobody listens");
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn the_plugin_loads_by_name() {
    let dir = objstore::conformance::built_plugin_dir("s3");
    let lib = PluginLibrary::load_by_name(&dir, "s3").expect("by name");
    assert_eq!(lib.name(), "s3");
}

/// The plugin's conformance run under valgrind: no definite leak and no invalid access on
/// either side of the C boundary.
#[test]
fn conformance_through_the_plugin_is_clean_under_valgrind() {
    objstore::conformance::check_under_valgrind("plugin::", objstore::conformance::CASES);
}
