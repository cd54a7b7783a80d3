//! The manager client (worker-spec §4): the [`ManagerPort`] over JSON-RPC on HTTP, with the API
//! crate's `Venus.*` definitions, callable from the plain OS threads that run sealing.
//!
//! Unlike damocles, the configured headers are sent (a bearer token when the manager's
//! `[Common.Auth]` is on) and every request has a timeout.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use damocles_manager_api::rpc::{SealerApiClient, WorkerWdPoStApiClient};
use damocles_manager_api::types::{
    AcquireDealsSpec, AllocateSectorSpec, AllocateWdPoStJobSpec, AllocatedSector,
    PollPreCommitStateResp, PollProofStateResp, PreCommitOnChainInfo, ProofOnChainInfo,
    ReportStateReq, SealProofType, SectorId, SectorPieceV2, SectorStateResp, StoreBasicInfo,
    SubmitPreCommitResp, SubmitProofResp, Ticket, WaitSeedResp, WdPoStAllocatedJob,
    WindowPoStOutput, WorkerInfo,
};
use http::HeaderName;
use jsonrpsee::core::ClientError;
use jsonrpsee::http_client::{HeaderMap, HeaderValue, HttpClient, HttpClientBuilder};

use crate::port::{ManagerError, ManagerPort, ManagerResult, Method};

/// What a client error means to the caller (§3.3).
pub fn classify(method: Method, e: ClientError) -> ManagerError {
    match e {
        ClientError::Call(obj) => {
            ManagerError::from_code(method, obj.code(), obj.message().to_string())
        }
        other => ManagerError::Unavailable {
            method,
            cause: Arc::new(other),
        },
    }
}

/// One client shared by every thread of the daemon.
#[derive(Debug, Clone)]
pub struct ManagerClient {
    http: HttpClient,
    rt: tokio::runtime::Handle,
    endpoint: String,
}

impl ManagerClient {
    /// A client of `endpoint` sending `headers` with each request, on the runtime `rt`.
    pub fn new(
        endpoint: &str,
        headers: &BTreeMap<String, String>,
        timeout: Duration,
        rt: tokio::runtime::Handle,
    ) -> Result<Self> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes()).with_context(|| {
                format!("sector_manager.rpc_client.headers: {k:?} is not a header name")
            })?;
            let mut value = HeaderValue::from_str(v).map_err(|_| {
                anyhow!(
                    "sector_manager.rpc_client.headers.{k}: the value is not a valid header value"
                )
            })?;
            // Never printed by the client's `Debug` (a bearer token, most likely).
            value.set_sensitive(true);
            map.insert(name, value);
        }
        let http = HttpClientBuilder::default()
            .set_headers(map)
            .request_timeout(timeout)
            .build(endpoint)
            .with_context(|| format!("manager endpoint {endpoint}"))?;
        Ok(ManagerClient {
            http,
            rt,
            endpoint: endpoint.to_string(),
        })
    }

    /// Checks with `Damocles.AuthVerify` that the manager takes this worker's token and that
    /// it grants `write`; a manager without the method (damocles) is taken as it is, and one
    /// that cannot be reached is left to the calls that follow to report.
    pub fn check_token(&self, config: &std::path::Path) -> Result<()> {
        use jsonrpsee::core::client::ClientT;
        let fix = format!(
            "make one with `damocles-manager util auth api-info --perm write` on the manager's \
             machine and set sector_manager.rpc_client.token in {} (or export \
             DAMOCLES_MANAGER_API_INFO)",
            config.display()
        );
        let answer = self.rt.block_on(
            self.http
                .request::<serde_json::Value, _>("Damocles.AuthVerify", jsonrpsee::rpc_params![]),
        );
        match answer {
            Ok(info) => {
                let allow: Vec<&str> = info
                    .get("Allow")
                    .and_then(|a| a.as_array())
                    .map(|a| a.iter().filter_map(|p| p.as_str()).collect())
                    .unwrap_or_default();
                if !allow.contains(&"write") {
                    anyhow::bail!(
                        "the manager at {} takes this worker's token, but it grants only {allow:?} \
                         and a worker needs 'write': {fix}",
                        self.endpoint
                    );
                }
                Ok(())
            }
            Err(ClientError::Call(obj)) if obj.code() == -32601 => {
                tracing::warn!(
                    endpoint = %self.endpoint,
                    "the manager cannot check tokens (no Damocles.AuthVerify); going on"
                );
                Ok(())
            }
            Err(e) => {
                match damocles_manager_api::rpc::refused_status(&e) {
                    Some(401) => anyhow::bail!(
                        "the manager at {} refused this worker's token (HTTP 401: missing or \
                         invalid): {fix}",
                        self.endpoint
                    ),
                    Some(403) => anyhow::bail!(
                        "the manager at {} refused this worker's token (HTTP 403): {fix}",
                        self.endpoint
                    ),
                    // Unreachable, or another failure: the calls that follow report it.
                    _ => {
                        tracing::warn!(
                            endpoint = %self.endpoint,
                            error = %e,
                            "could not check the token with the manager"
                        );
                        Ok(())
                    }
                }
            }
        }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `Venus.WorkerPing`, from the daemon's async heartbeat task; not counted in the RPC
    /// metrics (as in damocles).
    pub async fn worker_ping(&self, info: WorkerInfo) -> ManagerResult<()> {
        self.http
            .worker_ping(info)
            .await
            .map_err(|e| classify(Method::WorkerPing, e))
    }

    /// Runs one call from a plain thread, counting it in the metrics (§7).
    fn call<R, F, Fut>(&self, method: Method, f: F) -> ManagerResult<R>
    where
        F: FnOnce(HttpClient) -> Fut,
        Fut: Future<Output = Result<R, ClientError>>,
    {
        let started = Instant::now();
        let out = self.rt.block_on(f(self.http.clone()));
        record(method, started, out)
    }
}

/// Counts a finished call in the RPC metrics and classifies its error.
fn record<R>(method: Method, started: Instant, out: Result<R, ClientError>) -> ManagerResult<R> {
    let label = method.metric_label();
    metrics::counter!("rpc_call", "method" => label).increment(1);
    metrics::histogram!("rpc_timing", "method" => label).record(started.elapsed().as_secs_f64());
    out.map_err(|e| {
        metrics::counter!("rpc_error", "method" => label).increment(1);
        classify(method, e)
    })
}

/// Every method is its JSON-RPC call of the same name, counted in the metrics as its [`Method`].
macro_rules! rpc_port {
    ($($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty, $method:ident;)*) => {
        impl ManagerPort for ManagerClient {
            $(
                fn $name(&self, $($arg: $ty),*) -> ManagerResult<$ret> {
                    self.call(Method::$method, |c| async move { c.$name($($arg),*).await })
                }
            )*
        }
    };
}

crate::port::for_each_port_method!(rpc_port);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::SECTOR_STATE_NOT_FOUND;
    use jsonrpsee::server::{RpcModule, Server};
    use jsonrpsee::types::ErrorObjectOwned;

    /// A manager stand-in answering AssignTicket with 11001, AllocateSector with another error
    /// and ReportFinalized after a delay; it serves nothing else.
    fn fake_manager(rt: &tokio::runtime::Runtime) -> std::net::SocketAddr {
        rt.block_on(async {
            let mut m = RpcModule::new(());
            m.register_method("Venus.AssignTicket", |_, _, _| {
                Err::<(), _>(ErrorObjectOwned::owned(
                    SECTOR_STATE_NOT_FOUND,
                    "sector state not found",
                    None::<()>,
                ))
            })
            .expect("register");
            m.register_method("Venus.AllocateSector", |_, _, _| {
                Err::<(), _>(ErrorObjectOwned::owned(1, "no miner", None::<()>))
            })
            .expect("register");
            m.register_async_method("Venus.ReportFinalized", |_, _, _| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                Ok::<(), ErrorObjectOwned>(())
            })
            .expect("register");
            let server = Server::builder().build("127.0.0.1:0").await.expect("bind");
            let addr = server.local_addr().expect("addr");
            let handle = server.start(m);
            std::mem::forget(handle);
            addr
        })
    }

    #[test]
    fn errors_are_classified_and_requests_time_out() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let addr = fake_manager(&rt);
        let client = ManagerClient::new(
            &format!("http://{addr}"),
            &BTreeMap::from([("Authorization".into(), "Bearer t".into())]),
            Duration::from_millis(500),
            rt.handle().clone(),
        )
        .expect("client");
        let sid = SectorId {
            miner: 1000,
            number: 1,
        };
        let e = client.assign_ticket(sid).expect_err("11001");
        assert!(
            matches!(e, ManagerError::SectorStateNotFound { .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("sector state not found"), "{e}");
        let e = client
            .allocate_sector(Default::default())
            .expect_err("other");
        assert!(matches!(e, ManagerError::Rejected { code: 1, .. }), "{e:?}");
        assert!(e.to_string().contains("no miner"), "{e}");
        let e = client
            .submit_persisted_ex(sid, "ps".into(), false)
            .expect_err("not served");
        assert!(matches!(e, ManagerError::MethodNotFound { .. }), "{e:?}");
        let started = Instant::now();
        let e = client.report_finalized(sid).expect_err("timeout");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "timed out early"
        );
        assert!(matches!(e, ManagerError::Unavailable { .. }), "{e:?}");
        assert_eq!(e.method(), Method::ReportFinalized);
    }

    #[test]
    fn a_bad_header_is_refused_by_name() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let e = ManagerClient::new(
            "http://127.0.0.1:1",
            &BTreeMap::from([("Bad Header".into(), "x".into())]),
            Duration::from_secs(1),
            rt.handle().clone(),
        )
        .expect_err("bad name");
        assert!(format!("{e:#}").contains("\"Bad Header\""), "{e:#}");
    }
}
