//! The HTTP layer around the JSON-RPC service: `/healthcheck` (open to all), `/metrics` (a
//! `read` token), `GET /piecestore/<cid>` (a `write` token) and `/rpc/v0`, where the caller of
//! the request's token goes into the request for the [`damocles_auth::rpc::Guard`] to check
//! each call, and a call it refused is answered with HTTP 401 or 403.

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

use damocles_auth::rpc::{
    apply_refusal, prepare_rpc_request, rpc_error_response, Authenticator, PeerAddr,
    CODE_UNAUTHENTICATED,
};
use damocles_auth::{Caller, Perm};

use crate::stores::PieceStores;

/// What the layer needs.
#[derive(Clone)]
pub struct Routes {
    auth: Arc<Authenticator>,
    metrics: Option<PrometheusHandle>,
    pieces: Option<Arc<PieceStores>>,
    piece_slots: Arc<tokio::sync::Semaphore>,
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
            piece_slots: Arc::new(tokio::sync::Semaphore::new(MAX_PIECE_DOWNLOADS)),
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
        let peer = req.extensions().get::<PeerAddr>().map(|p| p.0);
        let caller = match self.routes.auth.caller(req.headers(), peer) {
            Ok(c) => c,
            Err(why) if is_rpc => {
                return ready(rpc_error_response(
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
            let slots = self.routes.piece_slots.clone();
            return Box::pin(async move { Ok(serve_piece(pieces, slots, cid, head_only).await) });
        }
        if !is_rpc {
            return ready(text(
                StatusCode::NOT_FOUND,
                format!("no route {path}; the JSON-RPC API is at {RPC_PATH}\n"),
            ));
        }
        if let Some(refusal) = prepare_rpc_request(&self.routes.auth, &mut req) {
            return ready(refusal);
        }
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await.map_err(Into::into)?;
            apply_refusal(&mut resp);
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

/// Sends the chunks of piece `name` of `store` to `tx` until the end, an error, a client gone
/// or one that took no chunk for [`PIECE_WRITE_TIMEOUT`].
async fn stream_piece(
    store: Arc<dyn objstore::ObjectStore>,
    name: String,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, BoxError>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let send = |item: Result<Bytes, BoxError>| {
        let tx = tx.clone();
        async move {
            matches!(
                tokio::time::timeout(PIECE_WRITE_TIMEOUT, tx.send(item)).await,
                Ok(Ok(()))
            )
        }
    };
    let opened = tokio::task::spawn_blocking(move || store.get(&name)).await;
    let mut reader = match opened {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            send(Err(Box::new(e))).await;
            return;
        }
        Err(e) => {
            send(Err(Box::new(e))).await;
            return;
        }
    };
    loop {
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; PIECE_CHUNK];
            let n = reader.read(&mut buf);
            (reader, buf, n)
        })
        .await;
        let (back, mut buf, n) = match read {
            Ok(r) => r,
            Err(e) => {
                send(Err(Box::new(e))).await;
                return;
            }
        };
        reader = back;
        match n {
            Ok(0) => return,
            Ok(n) => {
                buf.truncate(n);
                if !send(Ok(Bytes::from(buf))).await {
                    tracing::debug!("a piece download was dropped: its client stopped reading");
                    return;
                }
            }
            Err(e) => {
                send(Err(Box::new(e))).await;
                return;
            }
        }
    }
}

/// Piece downloads served at once; one more is answered 503.
pub const MAX_PIECE_DOWNLOADS: usize = 64;
/// How long a download waits for its client to take the next chunk before it is dropped.
pub const PIECE_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Bytes read from the store at a time.
const PIECE_CHUNK: usize = 1 << 20;

/// Streams a piece from the piece stores, [`PIECE_CHUNK`] at a time. A blocking thread is held
/// only while a chunk is read: a client that does not read holds a permit of `slots` and at
/// most two chunks, and is dropped after [`PIECE_WRITE_TIMEOUT`].
async fn serve_piece(
    pieces: Arc<PieceStores>,
    slots: Arc<tokio::sync::Semaphore>,
    cid: String,
    head_only: bool,
) -> HttpResponse {
    let Ok(permit) = slots.try_acquire_owned() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_PIECE_DOWNLOADS} piece downloads are running; retry later\n"),
        );
    };
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
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, BoxError>>(2);
        tokio::spawn(stream_piece(store, name, tx, permit));
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
