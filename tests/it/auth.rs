//! API tokens on the manager: every method refuses a caller without the permission its table
//! row names, on HTTP (401/403), in batches and over websockets; forged tokens are refused; the
//! routes beside the API have their own needs; the CLI and workers send tokens, and a worker
//! with a bad one stops at start-up saying what to do.

use std::time::{Duration, Instant};

use base64::Engine;
use damocles_auth::Perm;
use damocles_manager::rpc::DAMOCLES_METHODS;
use damocles_manager_api::rpc::{Method, CLI_METHODS, SEALER_METHODS, WDPOST_METHODS};
use serde_json::{json, Value};

use crate::common::{ok_text, raw_call, TestManager};
use crate::worker::{worker_bin, TestWorker};

fn all_methods() -> Vec<Method> {
    [
        SEALER_METHODS,
        WDPOST_METHODS,
        CLI_METHODS,
        DAMOCLES_METHODS,
    ]
    .concat()
}

/// `count` params that parse for no method (the permission is checked before them).
fn nulls(count: usize) -> Value {
    Value::Array((0..count).map(|_| Value::Null).collect())
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// POSTs a raw body with an optional token: the status and the body as JSON.
fn post(url: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = reqwest::blocking::Client::new().post(url).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().expect("POST");
    let status = resp.status().as_u16();
    (status, resp.json().expect("JSON body"))
}

fn get(url: &str, token: Option<&str>) -> u16 {
    let mut req = reqwest::blocking::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().expect("GET").status().as_u16()
}

#[test]
fn every_method_route_and_client_needs_a_token_with_the_permission_it_declares() {
    let mut m = TestManager::with_config(|c| c.common.auth.token = "legacy-s3cret".into());
    m.run_args = vec!["--worker-prover".into()];
    let addr = m.start();
    let url = m.url();
    let read = m.token(Perm::Read);
    let write = m.token(Perm::Write);
    let admin = m.token(Perm::Admin);

    // 1. Every method of every table: no token is 401 naming the method and its permission;
    //    a token one level too low is 403; the permission it needs lets the call through to
    //    its params (here all null, so -32602 or a handler's error, never a refusal).
    for method in all_methods() {
        let (status, body) = raw_call(&url, None, method.name, nulls(method.params));
        assert_eq!(status, 401, "{} without a token: {body}", method.name);
        assert_eq!(body["error"]["code"], json!(-32001), "{body}");
        let want = format!(
            "missing permission to invoke '{}' (need '{}')",
            method.name, method.perm
        );
        assert!(message(&body).starts_with(&want), "{}: {body}", method.name);
        assert!(
            message(&body).contains("util auth create-token"),
            "the refusal says how to get a token: {body}"
        );

        let below = match method.perm {
            Perm::Read => None,
            Perm::Write => Some(&read),
            Perm::Sign | Perm::Admin => Some(&write),
        };
        if let Some(token) = below {
            let (status, body) = raw_call(&url, Some(token), method.name, nulls(method.params));
            assert_eq!(status, 403, "{} with a lower token: {body}", method.name);
            assert_eq!(body["error"]["code"], json!(-32003), "{body}");
            assert!(
                message(&body).contains(&format!("'{}'", method.name))
                    && message(&body).contains(&format!("need '{}'", method.perm)),
                "{body}"
            );
        }
        let enough = match method.perm {
            Perm::Read => &read,
            Perm::Write => &write,
            Perm::Sign | Perm::Admin => &admin,
        };
        let (status, body) = raw_call(&url, Some(enough), method.name, nulls(method.params));
        assert_eq!(status, 200, "{} with its permission: {body}", method.name);
        assert_ne!(body["error"]["code"], json!(-32001), "{body}");
        assert_ne!(body["error"]["code"], json!(-32003), "{body}");
    }

    // The attacks of the issue, one by one, with a worker's (write) token.
    for (method, params) in [
        ("Damocles.DealsImport", json!([1000, "/etc/passwd", null])),
        ("Damocles.StorageAttach", json!(["/", {}])),
        ("Venus.ImportSector", json!([0, {}, true])),
        (
            "Venus.RestoreSector",
            json!([{"Miner": 1000, "Number": 1}, true]),
        ),
        (
            "Venus.FinalizeSector",
            json!([{"Miner": 1000, "Number": 1}]),
        ),
        ("Venus.WdPoStResetJob", json!(["job"])),
        ("Venus.WorkerPingInfoRemove", json!(["w"])),
    ] {
        let (status, body) = raw_call(&url, Some(&write), method, params);
        assert_eq!(status, 403, "{method} with a write token: {body}");
    }
    // ... and without any token, the worker-facing ones.
    for (method, params) in [
        ("Venus.StoreBasicInfo", json!(["persist"])),
        ("Venus.StoreList", json!([])),
        (
            "Venus.ReportAborted",
            json!([{"Miner": 1000, "Number": 1}, "x"]),
        ),
        (
            "Venus.WdPoStFinishJob",
            json!(["job", {"Proofs": [], "Faults": []}, ""]),
        ),
        ("Venus.WorkerPing", json!([{}])),
    ] {
        let (status, body) = raw_call(&url, None, method, params);
        assert_eq!(status, 401, "{method} without a token: {body}");
    }

    // Even an admin imports deals only from the configured directories (the test's root): no
    // other path, no `..` out of it, no symlink out of it.
    let root = m.dir.path();
    std::os::unix::fs::symlink("/etc/passwd", root.join("passwd-link")).expect("symlink");
    for path in [
        "/etc/passwd".to_string(),
        format!("{}/../../../etc/passwd", root.display()),
        root.join("passwd-link").display().to_string(),
    ] {
        let (status, body) = raw_call(
            &url,
            Some(&admin),
            "Damocles.DealsImport",
            json!([crate::common::MINER, path, null]),
        );
        assert_eq!(status, 200, "{body}");
        assert!(
            message(&body).contains("outside the deal import directories"),
            "{path}: {body}"
        );
    }

    // What a worker stores is bounded: long strings are refused with the field named.
    let (_, body) = raw_call(
        &url,
        Some(&write),
        "Venus.ReportAborted",
        json!([{"Miner": crate::common::MINER, "Number": 1}, "x".repeat(5000)]),
    );
    assert!(
        message(&body).contains("ReportAborted: reason is 5000 bytes"),
        "{body}"
    );
    let (_, body) = raw_call(
        &url,
        Some(&write),
        "Venus.WorkerPing",
        json!([{"Name": "w".repeat(300), "Dest": "127.0.0.1:1", "Version": "v", "Summary": {"Threads": 0, "Empty": 0, "Paused": 0, "Running": 0, "Waiting": 0, "Errors": 0}}]),
    );
    assert!(message(&body).contains("Name is 300 bytes"), "{body}");

    // 2. Tokens that are not this daemon's are refused before any method is looked at.
    let other =
        damocles_auth::create_token(&damocles_auth::Secret::generate(), Perm::Admin, None, None)
            .expect("token");
    let payload = |claims: &Value| b64url(claims.to_string().as_bytes());
    let alg_none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        payload(&json!({"Allow": ["read", "write", "sign", "admin"]}))
    );
    let read_parts: Vec<&str> = read.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        read_parts[0],
        payload(&json!({"Allow": ["read", "write", "sign", "admin"], "name": "test"})),
        read_parts[2]
    );
    let secret =
        damocles_auth::Secret::load(&m.home.join(damocles_auth::SECRET_FILE)).expect("secret");
    let expired =
        damocles_auth::create_token(&secret, Perm::Admin, None, Some(now() - 60)).expect("token");
    for (what, token) in [
        ("another daemon's", other.as_str()),
        ("alg none", alg_none.as_str()),
        ("tampered", tampered.as_str()),
        ("expired", expired.as_str()),
        ("garbage", "not-a-token"),
    ] {
        let (status, body) = raw_call(&url, Some(token), "Venus.Version", json!([]));
        assert_eq!(status, 401, "{what} token: {body}");
        assert!(message(&body).contains("invalid token"), "{what}: {body}");
    }
    let resp = reqwest::blocking::Client::new()
        .post(&url)
        .header("Authorization", format!("Basic {admin}"))
        .json(&json!({"jsonrpc": "2.0", "method": "Venus.Version", "params": [], "id": 1}))
        .send()
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 401, "not a bearer token");

    // 3. The static token of [Common.Auth] Token still works, for `write` only.
    let (status, body) = raw_call(
        &url,
        Some("legacy-s3cret"),
        "Venus.AllocateSector",
        json!([{"AllowedMiners": null, "AllowedProofTypes": null}]),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body["result"]["ID"]["Number"].is_u64(), "{body}");
    let (status, body) = raw_call(&url, Some("legacy-s3cret"), "Venus.ImportSector", nulls(3));
    assert_eq!(status, 403, "{body}");

    // 4. A batch is checked call by call: the allowed ones run, the refused ones say why.
    let batch = json!([
        {"jsonrpc": "2.0", "method": "Venus.Version", "params": [], "id": 1},
        {"jsonrpc": "2.0", "method": "Venus.ImportSector", "params": [0, {}, true], "id": 2},
        {"jsonrpc": "2.0", "method": "Venus.WorkerPing", "params": [{}]},
    ]);
    let (status, body) = post(&url, Some(&read), &batch);
    assert_eq!(status, 403, "{body}");
    let answers = body.as_array().expect("a batch answer");
    assert_eq!(answers.len(), 2, "the notification is not answered: {body}");
    let by_id = |id: i64| {
        answers
            .iter()
            .find(|a| a["id"] == json!(id))
            .unwrap_or_else(|| panic!("no answer {id}: {body}"))
    };
    assert!(
        by_id(1)["result"]
            .as_str()
            .is_some_and(|v| v.starts_with('v')),
        "{body}"
    );
    assert_eq!(by_id(2)["error"]["code"], json!(-32003), "{body}");
    let (status, body) = post(&url, None, &batch);
    assert_eq!(status, 401, "{body}");
    assert!(
        body.as_array()
            .expect("batch")
            .iter()
            .all(|a| a["error"]["code"] == json!(-32001)),
        "{body}"
    );
    // A notification without a token is dropped, not run: no worker is registered by it.
    let (status, _) = raw_post_notification(&url, "Venus.WorkerPing");
    assert!(status < 300, "a notification is acknowledged: {status}");

    // Bounds: a batch over the limit and a body over the limit are refused whole.
    let big_batch: Vec<Value> = (0..=damocles_manager::rpc::MAX_BATCH)
        .map(|i| json!({"jsonrpc": "2.0", "method": "Venus.Version", "params": [], "id": i}))
        .collect();
    let (status, body) = post(&url, Some(&read), &Value::Array(big_batch));
    assert_eq!(body["error"]["code"], json!(-32010), "{status}: {body}");
    {
        // Announced over the limit: refused before a byte of it is read.
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        write!(
            s,
            "POST /rpc/v0 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            damocles_manager::rpc::MAX_REQUEST_BODY as usize + 1
        )
        .expect("request");
        let mut head = [0u8; 12];
        s.read_exact(&mut head).expect("status line");
        assert_eq!(&head, b"HTTP/1.1 413", "a body over the limit");
    }

    // 5. Websockets: none is opened without a token; one with a read token is checked per call.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        use damocles_manager_api::rpc::{SealerApiClient, SealerCliApiClient};
        let refused = jsonrpsee::ws_client::WsClientBuilder::default()
            .build(format!("ws://{addr}/rpc/v0"))
            .await;
        assert!(refused.is_err(), "a websocket without a token was opened");
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(&format!("Bearer {read}")).expect("header"),
        );
        let ws = jsonrpsee::ws_client::WsClientBuilder::default()
            .set_headers(headers)
            .build(format!("ws://{addr}/rpc/v0"))
            .await
            .expect("websocket with a token");
        SealerCliApiClient::version(&ws).await.expect("read call");
        let err = SealerApiClient::allocate_sector(&ws, Default::default())
            .await
            .expect_err("a write call with a read token");
        assert!(
            err.to_string().contains("need 'write'"),
            "the refusal names the permission: {err}"
        );
    });

    // 6. The routes beside the API.
    let base = format!("http://{addr}");
    assert_eq!(get(&format!("{base}/healthcheck"), None), 200);
    assert_eq!(get(&format!("{base}/metrics"), None), 401);
    assert_eq!(get(&format!("{base}/metrics"), Some(&read)), 200);
    let piece = format!(
        "{base}/piecestore/baga6ea4seaqao7s73y24kcutaosvacpdjgfe5pw76ooefnyqw4ynr3d2y6x2mpq"
    );
    assert_eq!(get(&piece, None), 401);
    assert_eq!(get(&piece, Some(&read)), 403);
    assert_eq!(
        get(&piece, Some(&write)),
        404,
        "let in, and the piece is not there"
    );
    assert_eq!(get(&piece, Some("forged")), 401);

    // 7. The caller learns what its token grants.
    let (_, body) = raw_call(&url, Some(&write), "Damocles.AuthVerify", json!([]));
    assert_eq!(body["result"]["Allow"], json!(["read", "write"]), "{body}");
    let (_, body) = raw_call(
        &url,
        Some(&m.admin_token()),
        "Damocles.AuthVerify",
        json!([]),
    );
    assert_eq!(body["result"]["Name"], json!("local-admin"), "{body}");

    // 8. The CLI: the home's admin token by default; --token for another; tokens made offline.
    ok_text(&m.util(&["chain", "head"]));
    let out = m.util(&[
        "auth",
        "create-token",
        "--perm",
        "read",
        "--name",
        "dashboard",
    ]);
    let made = ok_text(&out).trim().to_string();
    let (status, body) = raw_call(&url, Some(&made), "Damocles.AuthVerify", json!([]));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"],
        json!({"Allow": ["read"], "Name": "dashboard"})
    );
    let out = m.util(&["--token", &made, "worker", "remove", "nobody"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HTTP 403"), "{stderr}");
    let out = m.util(&["--token", "forged", "chain", "head"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 401"));
    let info = ok_text(&m.util(&["auth", "api-info", "--perm", "write"]));
    let value = info
        .trim()
        .strip_prefix("DAMOCLES_MANAGER_API_INFO=")
        .unwrap_or_else(|| panic!("{info}"));
    let parsed = damocles_auth::ApiInfo::parse(value);
    assert_eq!(
        parsed.addr,
        format!("/ip4/127.0.0.1/tcp/{}/http", addr.port())
    );
    assert_eq!(
        damocles_auth::verify(&secret, &parsed.token)
            .expect("verify")
            .level,
        Perm::Write
    );

    // 9. A worker whose token the manager refuses stops at start-up and says what to do.
    for (what, token, says) in [
        ("a forged token", "forged".to_string(), "HTTP 401"),
        ("a read token", read.clone(), "grants only [\"read\"]"),
    ] {
        let dir = m
            .dir
            .path()
            .join(format!("worker-{}", what.replace(' ', "-")));
        let w = TestWorker::new(&m, &dir, 1, "");
        let cfg = std::fs::read_to_string(&w.config).expect("config");
        let cfg = cfg.replace(&write, &token);
        std::fs::write(&w.config, cfg).expect("config");
        let mut child = std::process::Command::new(worker_bin())
            .args(["daemon", "-c"])
            .arg(&w.config)
            .env("RUST_LOG", "warn")
            .env_remove("DAMOCLES_MANAGER_API_INFO")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn worker");
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "the worker with {what} did not stop"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
            .expect("stderr");
        assert!(
            !status.success(),
            "the worker with {what} exited with success"
        );
        assert!(
            stderr.contains("refused this worker's token") || stderr.contains("grants only"),
            "{what}: {stderr}"
        );
        assert!(stderr.contains(says), "{what}: {stderr}");
        assert!(
            stderr.contains("sector_manager.rpc_client.token")
                && stderr.contains("util auth api-info --perm write"),
            "{what}: the message says what to do: {stderr}"
        );
    }
}

/// POSTs a notification (no id) without a token: the HTTP status.
fn raw_post_notification(url: &str, method: &str) -> (u16, String) {
    let resp = reqwest::blocking::Client::new()
        .post(url)
        .json(&json!({"jsonrpc": "2.0", "method": method, "params": [{}]}))
        .send()
        .expect("POST");
    let status = resp.status().as_u16();
    (status, resp.text().unwrap_or_default())
}

#[test]
fn the_api_secret_is_private_and_a_readable_one_stops_the_start() {
    use std::os::unix::fs::PermissionsExt;
    let mut m = TestManager::new();
    let secret = m.home.join(damocles_auth::SECRET_FILE);
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&secret), 0o600);
    assert_eq!(mode(&m.home.join(damocles_auth::TOKEN_FILE)), 0o600);
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = std::process::Command::new(crate::common::manager_bin())
        .arg("--home")
        .arg(&m.home)
        .args(["daemon", "run", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lets others read the API secret") && stderr.contains("chmod 600"),
        "{stderr}"
    );
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    m.start();
    assert_eq!(
        raw_call(&m.url(), Some(&m.admin_token()), "Venus.Version", json!([])).0,
        200
    );
}

#[test]
fn callers_without_a_token_from_listed_networks_may_write_but_not_administer() {
    let mut m = TestManager::with_config(|c| {
        c.common.auth.unauthenticated_write_from = vec!["127.0.0.0/8".into()];
    });
    m.start();
    let url = m.url();
    let (status, body) = raw_call(
        &url,
        None,
        "Venus.AllocateSector",
        json!([{"AllowedMiners": null, "AllowedProofTypes": null}]),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body["result"]["ID"]["Number"].is_u64(), "{body}");
    let (status, body) = raw_call(&url, None, "Damocles.AuthVerify", json!([]));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"]["Name"],
        json!("unauthenticated 127.0.0.1"),
        "{body}"
    );
    let (status, body) = raw_call(&url, None, "Damocles.StorageAttach", json!(["/", {}]));
    assert_eq!(status, 403, "admin still needs a token: {body}");
    let (status, _) = raw_call(&url, Some("forged"), "Venus.Version", json!([]));
    assert_eq!(
        status, 401,
        "a bad token is refused even from a listed network"
    );
    let logs = m.logs();
    assert!(
        logs.contains("127.0.0.0/8") && logs.contains("UnauthenticatedWriteFrom"),
        "the start-up log names the networks: {logs}"
    );
}
