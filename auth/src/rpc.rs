//! Tokens on a jsonrpsee server (feature `rpc`), for both daemons:
//!
//! - [`Authenticator`]: the [`Caller`] of a request's `Authorization: Bearer <token>`;
//! - [`RpcAuthLayer`]: the HTTP layer of a server that serves JSON-RPC on every path (the
//!   worker's control server); the manager's own layer uses the same pieces
//!   ([`prepare_rpc_request`], [`apply_refusal`]);
//! - [`Guard`]: the checks every call passes before its handler runs, for single calls, each
//!   call of a batch and notifications:
//!   1. the caller's permission must reach the method's (its row in [`MethodTable`]); a refusal
//!      names both and marks the response with [`Refused`], which the HTTP layer turns into 401
//!      (no credential) or 403;
//!   2. positional params must come in exactly the number the method takes, as damocles'
//!      servers require (-32602 otherwise); jsonrpsee alone ignores extra params.
//!
//! Calls of `admin` methods are logged with the caller's name.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use std::pin::Pin;
use std::task::{Context, Poll};

use http::{header, StatusCode};
use jsonrpsee::core::middleware::{Batch, BatchEntry, BatchEntryErr, Notification, RpcServiceT};
use jsonrpsee::core::BoxError;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse, MethodResponse};
use jsonrpsee::types::{ErrorObject, ErrorObjectOwned, Request};
use tower::{Layer, Service};

use crate::{legacy_token_eq, verify, Caller, Method, Perm, Secret};

/// JSON-RPC code of a call without a valid credential (HTTP 401).
pub const CODE_UNAUTHENTICATED: i32 = -32001;
/// JSON-RPC code of a call whose token's permission is too low (HTTP 403).
pub const CODE_FORBIDDEN: i32 = -32003;

/// Marks a response refused for a permission; the HTTP layer answers with this status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub StatusCode);

/// The rows of the methods a server serves, by name, and the command that makes tokens (named
/// in refusals).
#[derive(Debug)]
pub struct MethodTable {
    rows: HashMap<&'static str, Method>,
    create_token: &'static str,
}

impl MethodTable {
    /// The rows of `served`, looked up in `tables`. A served method without a row is an error,
    /// so no method can be registered without a permission. `create_token` is the command an
    /// operator runs for a token (`damocles-manager util auth create-token`).
    pub fn for_served<'a>(
        tables: &[&'static [Method]],
        served: impl IntoIterator<Item = &'a str>,
        create_token: &'static str,
    ) -> Result<MethodTable, String> {
        let known: HashMap<&'static str, Method> = tables
            .iter()
            .flat_map(|t| t.iter())
            .map(|m| (m.name, *m))
            .collect();
        let mut rows = HashMap::new();
        let mut missing = Vec::new();
        for name in served {
            match known.get(name) {
                Some(m) => {
                    rows.insert(m.name, *m);
                }
                None => missing.push(name.to_string()),
            }
        }
        if !missing.is_empty() {
            missing.sort();
            return Err(format!(
                "methods served without a row in a method table (no permission declared): {}",
                missing.join(", ")
            ));
        }
        Ok(MethodTable { rows, create_token })
    }

    /// The row of a served method.
    pub fn get(&self, name: &str) -> Option<&Method> {
        self.rows.get(name)
    }

    /// The least permission a call of `name` needs. A name no table lists is not served: any
    /// authenticated caller may learn that (-32601).
    pub fn need(&self, name: &str) -> Perm {
        self.get(name).map_or(Perm::Read, |m| m.perm)
    }
}

/// The middleware.
#[derive(Clone, Debug)]
pub struct Guard<S> {
    inner: S,
    table: Arc<MethodTable>,
}

impl<S> Guard<S> {
    /// Wraps the RPC service with the checks of `table`.
    pub fn new(inner: S, table: Arc<MethodTable>) -> Self {
        Guard { inner, table }
    }
}

/// A caller-chosen name as a log shows it: escaped, and cut at 128 characters.
fn loggable(name: &str) -> String {
    let mut shown: String = name
        .chars()
        .take(128)
        .flat_map(char::escape_debug)
        .collect();
    if name.chars().count() > 128 {
        shown.push('…');
    }
    shown
}

/// Who a caller is, for logs.
pub fn who(caller: Option<&Caller>) -> String {
    match caller {
        None => "anonymous".into(),
        Some(c) => format!(
            "{} ({})",
            c.name.as_deref().unwrap_or("unnamed token"),
            c.level
        ),
    }
}

/// Why `caller` may not call `method`, if it may not: the error and the HTTP status.
fn refusal(
    table: &MethodTable,
    caller: Option<&Caller>,
    method: &str,
) -> Option<(ErrorObjectOwned, StatusCode)> {
    let need = table.need(method);
    match caller {
        Some(c) if c.level >= need => None,
        Some(c) => Some((
            ErrorObject::owned(
                CODE_FORBIDDEN,
                format!(
                    "missing permission to invoke '{method}' (need '{need}'; the token grants '{}')",
                    c.level
                ),
                None::<()>,
            ),
            StatusCode::FORBIDDEN,
        )),
        None => Some((
            ErrorObject::owned(
                CODE_UNAUTHENTICATED,
                format!(
                    "missing permission to invoke '{method}' (need '{need}'): no token; send \
                     `Authorization: Bearer <token>` with a token made by `{} --perm {need}`",
                    table.create_token
                ),
                None::<()>,
            ),
            StatusCode::UNAUTHORIZED,
        )),
    }
}

/// Why the params of a call do not fit its method, if they do not.
fn wrong_arity(
    table: &MethodTable,
    method: &str,
    params: Option<&str>,
) -> Option<ErrorObjectOwned> {
    let want = table.get(method)?.params;
    let got = match params {
        None => 0,
        Some(raw) => serde_json::from_str::<Vec<&serde_json::value::RawValue>>(raw)
            .ok()?
            .len(),
    };
    (want != got).then(|| {
        ErrorObject::owned(
            -32602,
            format!("wrong param count (method '{method}'): {got} != {want}"),
            None::<()>,
        )
    })
}

fn log_admin_call(table: &MethodTable, caller: Option<&Caller>, method: &str) {
    if table.need(method) == Perm::Admin {
        tracing::info!(method, who = %who(caller), "admin call");
    }
}

impl<S> RpcServiceT for Guard<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Send
        + Sync
        + Clone
        + 'static,
{
    type MethodResponse = S::MethodResponse;
    type NotificationResponse = S::NotificationResponse;
    type BatchResponse = S::BatchResponse;

    fn call<'a>(&self, req: Request<'a>) -> impl Future<Output = Self::MethodResponse> + Send + 'a {
        let inner = self.inner.clone();
        let table = self.table.clone();
        async move {
            let method = req.method_name();
            let caller = req.extensions().get::<Caller>();
            if let Some((err, status)) = refusal(&table, caller, method) {
                tracing::debug!(method = %loggable(method), who = %who(caller), "call refused");
                let mut resp = MethodResponse::error(req.id(), err);
                resp.extensions_mut().insert(Refused(status));
                return resp;
            }
            if let Some(err) = wrong_arity(&table, method, req.params().as_str()) {
                return MethodResponse::error(req.id(), err);
            }
            log_admin_call(&table, caller, method);
            inner.call(req).await
        }
    }

    fn batch<'a>(
        &self,
        mut requests: Batch<'a>,
    ) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        let inner = self.inner.clone();
        let table = self.table.clone();
        async move {
            let mut status = None;
            for entry in requests.iter_mut() {
                let Ok(BatchEntry::Call(req)) = entry else {
                    continue;
                };
                let method = req.method_name();
                let caller = req.extensions().get::<Caller>();
                let refused = match refusal(&table, caller, method) {
                    Some((err, s)) => {
                        // The strongest refusal of the batch sets its status.
                        status = status.max(Some(s));
                        Some(err)
                    }
                    None => wrong_arity(&table, method, req.params().as_str()),
                };
                match refused {
                    Some(err) => *entry = Err(BatchEntryErr::new(req.id().into_owned(), err)),
                    None => log_admin_call(&table, caller, method),
                }
            }
            // A notification is never answered: one the caller may not send is dropped.
            let mut dropped = false;
            let kept: Vec<_> = requests
                .into_iter()
                .filter(|entry| match entry {
                    Ok(BatchEntry::Notification(n)) => {
                        let allowed =
                            refusal(&table, n.extensions().get::<Caller>(), n.method_name())
                                .is_none();
                        dropped |= !allowed;
                        allowed
                    }
                    _ => true,
                })
                .collect();
            if kept.is_empty() && dropped {
                // Nothing left to run, and nothing to answer.
                return MethodResponse::notification();
            }
            let mut resp = inner.batch(Batch::from(kept)).await;
            if let Some(s) = status {
                resp.extensions_mut().insert(Refused(s));
            }
            resp
        }
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = Self::NotificationResponse> + Send + 'a {
        let inner = self.inner.clone();
        let table = self.table.clone();
        async move {
            if refusal(&table, n.extensions().get::<Caller>(), n.method_name()).is_some() {
                // Never answered, never run.
                return MethodResponse::notification();
            }
            inner.notification(n).await
        }
    }
}

/// The address of the peer of a request's connection, put in the request by the server's
/// accept loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// Who a request's credential names.
pub struct Authenticator {
    secret: Secret,
    legacy_token: Option<String>,
    create_token: &'static str,
    open_networks: Vec<ipnet::IpNet>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("legacy_token", &self.legacy_token.is_some())
            .field("open_networks", &self.open_networks)
            .finish_non_exhaustive()
    }
}

/// The name a caller of a static (legacy) token carries.
pub const LEGACY_TOKEN_NAME: &str = "legacy static token";

impl Authenticator {
    /// Tokens signed by `secret`, and the static `legacy_token` (granting `write`) when set;
    /// `create_token` is the command that makes a new token (named when one is refused).
    pub fn new(secret: Secret, legacy_token: Option<String>, create_token: &'static str) -> Self {
        Authenticator {
            secret,
            legacy_token: legacy_token.filter(|t| !t.is_empty()),
            create_token,
            open_networks: Vec::new(),
        }
    }

    /// Callers without a token from these networks get `write` (for clients that cannot send
    /// one, such as unmodified damocles workers); `admin` still needs a token.
    pub fn with_open_networks(mut self, networks: Vec<ipnet::IpNet>) -> Self {
        self.open_networks = networks;
        self
    }

    /// The caller of `headers`' `Authorization: Bearer <token>`: without the header, a `write`
    /// caller when `peer` is in an open network, else none; an error for a header that is not
    /// a valid token of this daemon.
    pub fn caller(
        &self,
        headers: &http::HeaderMap,
        peer: Option<std::net::SocketAddr>,
    ) -> Result<Option<Caller>, String> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(peer.and_then(|p| self.open_caller(p)));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or("the Authorization header is not `Bearer <token>`")?;
        if let Some(legacy) = &self.legacy_token {
            if legacy_token_eq(token, legacy) {
                return Ok(Some(Caller {
                    level: Perm::Write,
                    name: Some(LEGACY_TOKEN_NAME.into()),
                    signed: false,
                }));
            }
        }
        verify(&self.secret, token)
            .map(Some)
            .map_err(|e| format!("{e}; make a new one with `{}`", self.create_token))
    }
}

impl Authenticator {
    fn open_caller(&self, peer: std::net::SocketAddr) -> Option<Caller> {
        let ip = match peer.ip() {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
            v4 => v4,
        };
        self.open_networks
            .iter()
            .any(|n| n.contains(&ip))
            .then(|| Caller {
                level: Perm::Write,
                name: Some(format!("unauthenticated {ip}")),
                signed: false,
            })
    }
}

/// Parses the CIDRs of a config key (`10.0.0.0/8`, `fd00::/8`; a bare address is one host),
/// naming the key and the entry that is wrong.
pub fn parse_networks(key: &str, entries: &[String]) -> Result<Vec<ipnet::IpNet>, String> {
    entries
        .iter()
        .map(|e| {
            let e = e.trim();
            e.parse::<ipnet::IpNet>()
                .or_else(|_| e.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    format!("{key}: {e:?} is not a network (e.g. 10.0.0.0/8) nor an address")
                })
        })
        .collect()
}

/// A JSON-RPC error answered by the HTTP layer, outside the RPC service.
pub fn rpc_error_response(status: StatusCode, code: i32, message: &str) -> HttpResponse {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}});
    let mut r = HttpResponse::new(HttpBody::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// Readies a JSON-RPC request: the caller of its token goes into its extensions (for the
/// [`Guard`]). A bad token, or a websocket upgrade without one (each call over it is checked,
/// but one that could make none is not opened), is answered here: the answer is returned.
pub fn prepare_rpc_request<B>(
    auth: &Authenticator,
    req: &mut HttpRequest<B>,
) -> Option<HttpResponse> {
    let peer = req.extensions().get::<PeerAddr>().map(|p| p.0);
    match auth.caller(req.headers(), peer) {
        Err(why) => Some(rpc_error_response(
            StatusCode::UNAUTHORIZED,
            CODE_UNAUTHENTICATED,
            &why,
        )),
        Ok(Some(caller)) => {
            req.extensions_mut().insert(caller);
            None
        }
        Ok(None) if req.headers().contains_key(header::UPGRADE) => Some(rpc_error_response(
            StatusCode::UNAUTHORIZED,
            CODE_UNAUTHENTICATED,
            "a websocket needs a token: send `Authorization: Bearer <token>`",
        )),
        // Calls without a token are refused one by one, naming what each needs.
        Ok(None) => None,
    }
}

/// Gives a response the HTTP status of the [`Guard`]'s refusal, when it holds one.
pub fn apply_refusal(resp: &mut HttpResponse) {
    if let Some(Refused(status)) = resp.extensions().get::<Refused>().copied() {
        *resp.status_mut() = status;
    }
}

/// The HTTP layer of a server that serves JSON-RPC on every path.
#[derive(Debug, Clone)]
pub struct RpcAuthLayer {
    auth: Arc<Authenticator>,
}

impl RpcAuthLayer {
    /// Checks tokens with `auth`.
    pub fn new(auth: Authenticator) -> Self {
        RpcAuthLayer {
            auth: Arc::new(auth),
        }
    }
}

impl<S> Layer<S> for RpcAuthLayer {
    type Service = RpcAuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcAuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The service [`RpcAuthLayer`] makes.
#[derive(Debug, Clone)]
pub struct RpcAuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

type BoxFut = Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send + 'static>>;

impl<S, B> Service<HttpRequest<B>> for RpcAuthService<S>
where
    S: Service<HttpRequest<B>, Response = HttpResponse> + Send + 'static,
    S::Error: Into<BoxError> + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = BoxFut;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: HttpRequest<B>) -> Self::Future {
        if let Some(refusal) = prepare_rpc_request(&self.auth, &mut req) {
            return Box::pin(async move { Ok(refusal) });
        }
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await.map_err(Into::into)?;
            apply_refusal(&mut resp);
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[Method] = &[
        Method::new("Venus.Version", 0, Perm::Read),
        Method::new("Venus.WorkerPing", 1, Perm::Write),
        Method::new("Venus.ImportSector", 3, Perm::Admin),
        Method::new("Venus.WdPoStResetJob", 1, Perm::Admin),
        Method::new("Venus.ListSectors", 2, Perm::Read),
    ];

    fn served(served: &[&str]) -> Result<MethodTable, String> {
        MethodTable::for_served(&[TABLE], served.iter().copied(), "make-token")
    }

    fn caller(level: Perm) -> Caller {
        Caller {
            level,
            name: Some("t".into()),
            signed: true,
        }
    }

    #[test]
    fn only_the_served_methods_are_in_the_table_and_each_needs_a_row() {
        let table = served(&["Venus.Version", "Venus.WdPoStResetJob"]).expect("table");
        assert_eq!(table.get("Venus.Version").map(|m| m.params), Some(0));
        assert_eq!(table.need("Venus.WdPoStResetJob"), Perm::Admin);
        assert!(table.get("Venus.ListSectors").is_none());
        let err = served(&["Venus.Version", "Venus.Other", "Plugin.Call"]).expect_err("unlisted");
        assert_eq!(
            err,
            "methods served without a row in a method table (no permission declared): Plugin.Call, Venus.Other"
        );
    }

    #[test]
    fn a_caller_needs_the_methods_permission_and_a_refusal_names_it() {
        let table =
            served(&["Venus.Version", "Venus.ImportSector", "Venus.WorkerPing"]).expect("table");
        assert!(refusal(&table, Some(&caller(Perm::Read)), "Venus.Version").is_none());
        assert!(refusal(&table, Some(&caller(Perm::Write)), "Venus.WorkerPing").is_none());
        assert!(refusal(&table, Some(&caller(Perm::Admin)), "Venus.ImportSector").is_none());

        let (err, status) =
            refusal(&table, Some(&caller(Perm::Write)), "Venus.ImportSector").expect("refused");
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(err.code(), CODE_FORBIDDEN);
        assert!(
            err.message()
                .starts_with("missing permission to invoke 'Venus.ImportSector' (need 'admin'"),
            "{}",
            err.message()
        );
        let (err, status) = refusal(&table, None, "Venus.Version").expect("refused");
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(err.code(), CODE_UNAUTHENTICATED);
        assert!(
            err.message().contains("(need 'read'): no token"),
            "{}",
            err.message()
        );
        // Not served: any token may hear so; no token may not.
        assert!(refusal(&table, Some(&caller(Perm::Read)), "Venus.Nothing").is_none());
        assert!(refusal(&table, None, "Venus.Nothing").is_some());
    }

    #[test]
    fn callers_without_a_token_get_write_only_from_the_open_networks() {
        let nets = parse_networks("k", &["10.0.0.0/8".into(), "192.168.1.7".into()]).expect("nets");
        let auth = Authenticator::new(Secret::generate(), None, "x").with_open_networks(nets);
        let none = http::HeaderMap::new();
        let peer = |s: &str| Some(s.parse::<std::net::SocketAddr>().expect("addr"));
        let c = auth
            .caller(&none, peer("10.1.2.3:5000"))
            .expect("ok")
            .expect("open");
        assert_eq!(c.level, Perm::Write);
        assert_eq!(c.name.as_deref(), Some("unauthenticated 10.1.2.3"));
        assert!(auth
            .caller(&none, peer("192.168.1.7:1"))
            .expect("ok")
            .is_some());
        assert!(auth
            .caller(&none, peer("[::ffff:10.0.0.1]:1"))
            .expect("ok")
            .is_some());
        assert!(auth
            .caller(&none, peer("192.168.1.8:1"))
            .expect("ok")
            .is_none());
        assert!(auth.caller(&none, None).expect("ok").is_none());
        // A bad token is refused even from an open network.
        let mut bad = http::HeaderMap::new();
        bad.insert(
            header::AUTHORIZATION,
            "Bearer nope".parse().expect("header"),
        );
        assert!(auth.caller(&bad, peer("10.1.2.3:5000")).is_err());
        let err = parse_networks(
            "[Common.Auth] UnauthenticatedWriteFrom",
            &["10.0.0/8".into()],
        )
        .expect_err("bad");
        assert!(
            err.contains("UnauthenticatedWriteFrom") && err.contains("10.0.0/8"),
            "{err}"
        );
    }

    #[test]
    fn params_must_come_in_the_methods_number() {
        let table = served(&["Venus.WorkerPing"]).expect("table");
        assert!(wrong_arity(&table, "Venus.WorkerPing", Some("[{}]")).is_none());
        let err = wrong_arity(&table, "Venus.WorkerPing", Some("[{}, 1]")).expect("two");
        assert_eq!(err.code(), -32602);
        assert_eq!(
            err.message(),
            "wrong param count (method 'Venus.WorkerPing'): 2 != 1"
        );
        assert!(wrong_arity(&table, "Venus.WorkerPing", None).is_some());
        assert!(wrong_arity(&table, "Venus.Unknown", Some("[1]")).is_none());
    }
}
