//! The manager client (worker-spec §4): JSON-RPC over HTTP with the API crate's `Venus.*`
//! definitions, callable from the plain OS threads that run sealing.
//!
//! Unlike damocles, the configured headers are sent (a bearer token when the manager's
//! `[Common.Auth]` is on) and every request has a timeout.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use http::HeaderName;
use jsonrpsee::core::ClientError;
use jsonrpsee::http_client::{HeaderMap, HeaderValue, HttpClient, HttpClientBuilder};

/// The manager's error code for "sector state not found" (§3.3).
pub const SECTOR_STATE_NOT_FOUND: i32 = 11001;

/// A failed manager call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcFailure {
    /// The manager does not know the sector (code 11001): the sector must be dropped.
    SectorStateNotFound {
        /// Method called.
        method: &'static str,
        /// The manager's message.
        message: String,
    },
    /// Anything else: transport, timeout, HTTP, decoding, or another JSON-RPC error.
    Other {
        /// Method called.
        method: &'static str,
        /// What went wrong.
        message: String,
    },
}

impl std::fmt::Display for RpcFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RpcFailure::SectorStateNotFound { method, message } => write!(
                f,
                "{method}: from error code: sector state not found, with msg: {message}"
            ),
            RpcFailure::Other { method, message } => write!(f, "{method}: rpc error: {message}"),
        }
    }
}

impl std::error::Error for RpcFailure {}

/// Classifies a client error (§3.3).
pub fn classify(method: &'static str, e: &ClientError) -> RpcFailure {
    match e {
        ClientError::Call(obj) if obj.code() == SECTOR_STATE_NOT_FOUND => {
            RpcFailure::SectorStateNotFound {
                method,
                message: obj.message().to_string(),
            }
        }
        other => RpcFailure::Other {
            method,
            message: other.to_string(),
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
            let value = HeaderValue::from_str(v).map_err(|_| {
                anyhow!(
                    "sector_manager.rpc_client.headers.{k}: the value is not a valid header value"
                )
            })?;
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

    /// The endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The underlying client, for async callers.
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// Runs one call from a plain thread, counting it in the metrics (§7):
    /// `client.call("Venus.AssignTicket", |c| async move { c.assign_ticket(sid).await })`.
    pub fn call<R, F, Fut>(&self, method: &'static str, f: F) -> Result<R, RpcFailure>
    where
        F: FnOnce(HttpClient) -> Fut,
        Fut: Future<Output = Result<R, ClientError>>,
    {
        let started = Instant::now();
        let out = self.rt.block_on(f(self.http.clone()));
        let secs = started.elapsed().as_secs_f64();
        let label = metric_method(method);
        metrics::counter!("rpc_call", "method" => label).increment(1);
        metrics::histogram!("rpc_timing", "method" => label).record(secs);
        out.map_err(|e| {
            metrics::counter!("rpc_error", "method" => label).increment(1);
            classify(method, &e)
        })
    }
}

/// The `method` label of the RPC metrics: damocles' client method name for a wire method
/// (worker-spec §7), or the wire name for a method damocles' client does not have.
pub fn metric_method(wire: &'static str) -> &'static str {
    match wire {
        "Venus.AllocateSector" => "allocate_sector",
        "Venus.AcquireDeals" => "acquire_deals",
        "Venus.AssignTicket" => "assign_ticket",
        "Venus.SubmitPreCommit" => "submit_pre_commit",
        "Venus.PollPreCommitState" => "poll_pre_commit_state",
        "Venus.SubmitPersistedEx" => "submit_persisted_ex",
        "Venus.WaitSeed" => "wait_seed",
        "Venus.SubmitProof" => "submit_proof",
        "Venus.PollProofState" => "poll_proof_state",
        "Venus.ReportState" => "report_state",
        "Venus.ReportFinalized" => "report_finalized",
        "Venus.ReportAborted" => "report_aborted",
        "Venus.AllocateSanpUpSector" => "allocate_snapup_sector",
        "Venus.SubmitSnapUpProof" => "submit_snapup_proof",
        "Venus.StoreReserveSpace" => "store_reserve_space",
        "Venus.StoreBasicInfo" => "store_basic_info",
        "Venus.AllocateRebuildSector" => "allocate_rebuild_sector",
        "Venus.AllocateUnsealSector" => "allocate_unseal_sector",
        "Venus.AchieveUnsealSector" => "achieve_unseal_sector",
        "Venus.AcquireUnsealDest" => "acquire_unseal_dest",
        "Venus.WdPoStAllocateJobs" => "allocate_wdpost_job",
        "Venus.WdPoStHeartbeatJobs" => "wdpost_heartbeat",
        "Venus.WdPoStFinishJob" => "wdpost_finish",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use damocles_manager_api::rpc::SealerApiClient;
    use damocles_manager_api::types::SectorId;
    use jsonrpsee::server::{RpcModule, Server};
    use jsonrpsee::types::ErrorObjectOwned;

    /// A manager stand-in answering AssignTicket with 11001, AllocateSector with another error
    /// and ReportFinalized after a delay; it records the Authorization header it saw.
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
        let e = client
            .call("Venus.AssignTicket", |c| async move {
                c.assign_ticket(sid).await
            })
            .expect_err("11001");
        assert!(matches!(e, RpcFailure::SectorStateNotFound { .. }), "{e:?}");
        assert!(e.to_string().contains("sector state not found"), "{e}");
        let e = client
            .call("Venus.AllocateSector", |c| async move {
                c.allocate_sector(Default::default()).await
            })
            .expect_err("other");
        assert!(matches!(e, RpcFailure::Other { .. }), "{e:?}");
        assert!(e.to_string().contains("no miner"), "{e}");
        let started = Instant::now();
        let e = client
            .call("Venus.ReportFinalized", |c| async move {
                c.report_finalized(sid).await
            })
            .expect_err("timeout");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "timed out early"
        );
        assert!(matches!(e, RpcFailure::Other { .. }), "{e:?}");
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
