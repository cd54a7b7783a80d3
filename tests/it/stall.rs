//! A JSON-RPC proxy between a worker and the manager that holds back chosen requests, so a
//! test can act (kill the worker) at an exact point of the worker's flow.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// What the proxy does with a request the matcher picked.
#[derive(Debug, Clone)]
pub enum Action {
    /// Never answer.
    Stall,
    /// Answer with this `result` instead of the manager.
    Reply(serde_json::Value),
}

type Matcher = Box<dyn Fn(&serde_json::Value) -> Option<(String, Action)> + Send + Sync>;

/// The proxy: a request for which the matcher answers `Some((tag, action))` gets the action
/// (once per tag), and its tag is sent on the channel; everything else goes to the manager.
pub struct StallProxy {
    pub addr: SocketAddr,
    pub stalled: std::sync::mpsc::Receiver<String>,
}

impl StallProxy {
    /// Forwards to `upstream` (`http://host:port/rpc/v0`).
    pub fn start(
        upstream: String,
        matcher: impl Fn(&serde_json::Value) -> Option<(String, Action)> + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = std::sync::mpsc::channel();
        let matcher: Arc<Matcher> = Arc::new(Box::new(matcher));
        let used = Arc::new(Mutex::new(Vec::<String>::new()));
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (m, u, t, up) = (matcher.clone(), used.clone(), tx.clone(), upstream.clone());
                std::thread::spawn(move || serve(conn, &up, &m, &u, &t));
            }
        });
        StallProxy { addr, stalled: rx }
    }
}

fn serve(
    conn: TcpStream,
    upstream: &str,
    matcher: &Matcher,
    used: &Mutex<Vec<String>>,
    tx: &std::sync::mpsc::Sender<String>,
) {
    let client = reqwest::blocking::Client::new();
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut writer = conn;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut len = 0usize;
        let mut authorization = None;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if k.eq_ignore_ascii_case("authorization") {
                    authorization = Some(v.trim().to_string());
                }
            }
        }
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let path = request_line.split(' ').nth(1).unwrap_or("/").to_string();
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
            if let Some((tag, action)) = matcher(&v) {
                let first = {
                    let mut u = used.lock().expect("lock");
                    let first = !u.contains(&tag);
                    if first {
                        u.push(tag.clone());
                    }
                    first
                };
                if first {
                    let _ = tx.send(tag);
                    match action {
                        Action::Stall => {
                            // Never answer: wait until the worker goes away.
                            let mut sink = Vec::new();
                            let _ = reader.read_to_end(&mut sink);
                            return;
                        }
                        Action::Reply(result) => {
                            let body = serde_json::json!({"jsonrpc": "2.0", "id": v["id"], "result": result})
                                .to_string();
                            let head = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                                body.len()
                            );
                            if writer.write_all(head.as_bytes()).is_err()
                                || writer.write_all(body.as_bytes()).is_err()
                            {
                                return;
                            }
                            continue;
                        }
                    }
                }
            }
        }
        let base = upstream.trim_end_matches("/rpc/v0");
        let mut req = client
            .post(format!("{base}{path}"))
            .header("content-type", "application/json");
        if let Some(a) = &authorization {
            req = req.header("authorization", a);
        }
        let resp = match req.body(body).send() {
            Ok(r) => r,
            Err(_) => return,
        };
        let status = resp.status().as_u16();
        let bytes = resp.bytes().unwrap_or_default();
        let head = format!(
            "HTTP/1.1 {status} OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            bytes.len()
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(&bytes).is_err() {
            return;
        }
    }
}
