//! The HTTP layer around the JSON-RPC service: `/healthcheck` (open to all), `/metrics` (a
//! `read` token), `GET /piecestore/<cid>` (a `write` token) and `/rpc/v0`, where the caller of
//! the request's token goes into the request for the [`super::guard`] to check each call, and
//! a call it refused is answered with HTTP 401 or 403.

use std::future::Future;
use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use damocles_manager_api::RPC_PATH;
use futures::StreamExt as _;
use http::{header, Method, StatusCode};
use http_body::Frame;
use jsonrpsee::core::BoxError;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use metrics_exporter_prometheus::PrometheusHandle;
use tower::{Layer, Service};

use damocles_auth::{Caller, Perm, Secret};

use super::guard::{Refused, CODE_UNAUTHENTICATED};
use crate::stores::PieceStores;

/// Who a request's credential names.
pub struct Authenticator {
    secret: Secret,
    legacy_token: Option<String>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("legacy_token", &self.legacy_token.is_some())
            .finish_non_exhaustive()
    }
}

/// The name a caller of the static `[Common.Auth] Token` carries.
pub const LEGACY_TOKEN_NAME: &str = "legacy [Common.Auth] Token";

impl Authenticator {
    /// Tokens signed by `secret`, and the static `legacy_token` (granting `write`) when set.
    pub fn new(secret: Secret, legacy_token: Option<String>) -> Self {
        Authenticator {
            secret,
            legacy_token: legacy_token.filter(|t| !t.is_empty()),
        }
    }

    /// The caller of `headers`' `Authorization: Bearer <token>`: none without the header, an
    /// error for a header that is not a valid token of this daemon.
    pub fn caller(&self, headers: &http::HeaderMap) -> Result<Option<Caller>, String> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(None);
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or("the Authorization header is not `Bearer <token>`")?;
        if let Some(legacy) = &self.legacy_token {
            if damocles_auth::legacy_token_eq(token, legacy) {
                return Ok(Some(Caller {
                    level: Perm::Write,
                    name: Some(LEGACY_TOKEN_NAME.into()),
                }));
            }
        }
        damocles_auth::verify(&self.secret, token)
            .map(Some)
            .map_err(|e| {
                format!("{e}; make a new one with `damocles-manager util auth create-token`")
            })
    }
}

/// What the layer needs.
#[derive(Clone)]
pub struct Routes {
    auth: Arc<Authenticator>,
    metrics: Option<PrometheusHandle>,
    pieces: Option<Arc<PieceStores>>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Routes {
    /// Routes checking credentials with `auth`, with an optional metrics handle and piece
    /// stores.
    pub fn new(
        auth: Authenticator,
        metrics: Option<PrometheusHandle>,
        pieces: Option<Arc<PieceStores>>,
    ) -> Self {
        Routes {
            auth: Arc::new(auth),
            metrics,
            pieces,
        }
    }
}

impl<S> Layer<S> for Routes {
    type Service = RoutesService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RoutesService {
            inner,
            routes: self.clone(),
        }
    }
}

/// The service [`Routes`] makes.
#[derive(Clone, Debug)]
pub struct RoutesService<S> {
    inner: S,
    routes: Routes,
}

fn text(status: StatusCode, body: impl Into<String>) -> HttpResponse {
    let mut r = HttpResponse::new(HttpBody::from(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A JSON-RPC error response outside the RPC service (authentication).
fn rpc_error(status: StatusCode, code: i32, message: &str) -> HttpResponse {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}});
    let mut r = HttpResponse::new(HttpBody::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

type BoxFut = Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send + 'static>>;

impl<S, B> Service<HttpRequest<B>> for RoutesService<S>
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
        let path = req.uri().path().to_string();
        let ready = |r: HttpResponse| -> BoxFut { Box::pin(async move { Ok(r) }) };
        if path == "/healthcheck" {
            return ready(text(StatusCode::OK, "ok\n"));
        }
        let is_rpc = path == RPC_PATH || path == format!("{RPC_PATH}/");
        let caller = match self.routes.auth.caller(req.headers()) {
            Ok(c) => c,
            Err(why) if is_rpc => {
                return ready(rpc_error(
                    StatusCode::UNAUTHORIZED,
                    CODE_UNAUTHENTICATED,
                    &why,
                ))
            }
            Err(why) => return ready(text(StatusCode::UNAUTHORIZED, format!("{why}\n"))),
        };
        if path == "/metrics" {
            if let Some(r) = refused(caller.as_ref(), Perm::Read, "/metrics") {
                return ready(r);
            }
            return ready(match &self.routes.metrics {
                Some(h) => text(StatusCode::OK, h.render()),
                None => text(StatusCode::NOT_FOUND, "metrics are off\n"),
            });
        }
        if let Some(cid) = path.strip_prefix("/piecestore/") {
            if let Some(r) = refused(caller.as_ref(), Perm::Write, "/piecestore") {
                return ready(r);
            }
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return ready(text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n"));
            }
            let Some(pieces) = self.routes.pieces.clone() else {
                return ready(text(StatusCode::NOT_FOUND, "no piece stores configured\n"));
            };
            let cid = cid.trim_end_matches(".car").to_string();
            let head_only = req.method() == Method::HEAD;
            return Box::pin(async move { Ok(serve_piece(pieces, cid, head_only).await) });
        }
        if !is_rpc {
            return ready(text(
                StatusCode::NOT_FOUND,
                format!("no route {path}; the JSON-RPC API is at {RPC_PATH}\n"),
            ));
        }
        match caller {
            Some(c) => {
                req.extensions_mut().insert(c);
            }
            // Each call over a websocket is checked, but one that could make none is not opened.
            None if req.headers().contains_key(header::UPGRADE) => {
                return ready(rpc_error(
                    StatusCode::UNAUTHORIZED,
                    CODE_UNAUTHENTICATED,
                    "a websocket needs a token: send `Authorization: Bearer <token>`",
                ))
            }
            // Calls without a token are refused one by one, naming what each needs.
            None => {}
        }
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await.map_err(Into::into)?;
            if let Some(Refused(status)) = resp.extensions().get::<Refused>().copied() {
                *resp.status_mut() = status;
            }
            Ok(resp)
        })
    }
}

/// `None` when `caller` may use `route`, which needs `need`; else the refusal.
fn refused(caller: Option<&Caller>, need: Perm, route: &str) -> Option<HttpResponse> {
    match caller {
        Some(c) if c.level >= need => None,
        Some(c) => Some(text(
            StatusCode::FORBIDDEN,
            format!(
                "{route} needs a '{need}' token; this one grants '{}'\n",
                c.level
            ),
        )),
        None => Some(text(
            StatusCode::UNAUTHORIZED,
            format!("{route} needs a '{need}' token: send `Authorization: Bearer <token>`\n"),
        )),
    }
}

/// Streams a piece from the piece stores, 1 MiB at a time.
async fn serve_piece(pieces: Arc<PieceStores>, cid: String, head_only: bool) -> HttpResponse {
    let lookup = {
        let pieces = pieces.clone();
        let cid = cid.clone();
        tokio::task::spawn_blocking(move || pieces.find(&cid)).await
    };
    let (store, name, size) = match lookup {
        Ok(Ok(Some(found))) => found,
        Ok(Ok(None)) => return text(StatusCode::NOT_FOUND, format!("piece {cid} not found\n")),
        Ok(Err(e)) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("piece {cid}: {e:#}\n"),
            )
        }
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("piece {cid}: {e}\n"),
            )
        }
    };
    let mut resp = if head_only {
        HttpResponse::new(HttpBody::from(Vec::new()))
    } else {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, BoxError>>(4);
        tokio::task::spawn_blocking(move || {
            let mut reader = match store.get(&name) {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.blocking_send(Err(Box::new(e)));
                    return;
                }
            };
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        if tx
                            .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(Box::new(e)));
                        return;
                    }
                }
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .map(|r| r.map(Frame::data));
        HttpResponse::new(HttpBody::new(http_body_util::StreamBody::new(stream)))
    };
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = http::HeaderValue::from_str(&size.to_string()) {
        resp.headers_mut().insert(header::CONTENT_LENGTH, v);
    }
    resp
}
