//! The worker's control server (worker-spec §5.1): `VenusWorker.*` over JSON-RPC 2.0 on HTTP,
//! positional params. This crate's `damocles-worker worker …` commands call it through
//! [`WorkerControlApiClient`]. Every call needs a token of the worker's secret with the
//! permission [`CONTROL_METHODS`] gives the method (damocles has no authentication).
//!
//! Any request path is served (jsonrpsee's HTTP transport does not look at the path; the
//! manager posts to `http://<dest>/`). Content-Type must be `application/json`.
//!
//! Where we differ from damocles, on purpose:
//! - pause and resume find a thread by the `index` that `WorkerList` shows (the config
//!   position), not by its position among the created threads (quirk P-23);
//! - `WorkerResume` refuses an unknown state name with InvalidParams instead of letting the
//!   thread log and ignore it, and resuming in a state of the caller's choosing needs `admin`;
//! - `WorkerSetEnv` / `WorkerRemoveEnv` change the daemon's own variables
//!   ([`vc_processors::daemon_env`]), never the process environment, and need `admin`.

use std::net::SocketAddr;
use std::str::FromStr;

use anyhow::{Context, Result};
use damocles_auth::rpc::{Authenticator, Guard, MethodTable, RpcAuthLayer};
use damocles_auth::{Caller, Method, Perm};
use jsonrpsee::core::{async_trait, RpcResult};
use jsonrpsee::proc_macros::rpc;
use jsonrpsee::server::{Server, ServerHandle};
use jsonrpsee::types::error::INVALID_PARAMS_CODE;
use jsonrpsee::types::ErrorObjectOwned;
use tracing::info;

use crate::sealing::control::{ThreadControl, WorkerThreadInfo};
use crate::sealing::state::{ParseStateError, State};

/// The `VenusWorker` namespace, declared once for the server and the CLI's client.
#[rpc(server, client)]
pub trait WorkerControlApi {
    /// A snapshot of every sealing thread's control state.
    #[method(name = "VenusWorker.WorkerList")]
    async fn worker_list(&self) -> RpcResult<Vec<WorkerThreadInfo>>;

    /// Requests a pause of thread `index` (the `index` of `WorkerList`): `true` if queued,
    /// `false` if one is already pending or the thread is paused.
    #[method(name = "VenusWorker.WorkerPause")]
    async fn worker_pause(&self, index: usize) -> RpcResult<bool>;

    /// Resumes thread `index`, optionally in `state` (an exact [`State`] name, which needs
    /// `admin`): `true` only if the thread was waiting for a resume.
    #[method(name = "VenusWorker.WorkerResume", with_extensions)]
    async fn worker_resume(&self, index: usize, state: Option<String>) -> RpcResult<bool>;

    /// Sets a variable of the daemon, seen by its own reads (`DUMP_ERR_RESP_<pid>`) and by the
    /// processor children it starts afterwards.
    #[method(name = "VenusWorker.WorkerSetEnv")]
    async fn worker_set_env(&self, name: String, value: String) -> RpcResult<()>;

    /// Removes a variable of the daemon, for its own reads and its next children.
    #[method(name = "VenusWorker.WorkerRemoveEnv")]
    async fn worker_remove_env(&self, name: String) -> RpcResult<()>;

    /// `v<crate version>-<commit>`.
    #[method(name = "VenusWorker.WorkerVersion")]
    async fn worker_version(&self) -> RpcResult<String>;
}

/// The `VenusWorker` methods: views need `read`, pausing and resuming a thread `write`
/// (resuming it in a given state `admin`, checked by the handler), the daemon's variables
/// `admin`.
pub const CONTROL_METHODS: &[Method] = &[
    Method::new("VenusWorker.WorkerList", 0, Perm::Read),
    Method::new("VenusWorker.WorkerPause", 1, Perm::Write),
    Method::new("VenusWorker.WorkerResume", 2, Perm::Write),
    Method::new("VenusWorker.WorkerSetEnv", 2, Perm::Admin),
    Method::new("VenusWorker.WorkerRemoveEnv", 1, Perm::Admin),
    Method::new("VenusWorker.WorkerVersion", 0, Perm::Read),
];

/// The command that makes a token of the worker, named in refusals.
pub const CREATE_TOKEN_COMMAND: &str = "damocles-worker auth create-token";

/// `v<crate version>-<GIT_COMMIT at build time, or "unknown">`.
pub fn version() -> String {
    format!(
        "v{}-{}",
        env!("CARGO_PKG_VERSION"),
        option_env!("GIT_COMMIT").unwrap_or("unknown")
    )
}

/// A request the control server refuses; every one is InvalidParams (-32602) on the wire.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No thread has this index.
    #[error("worker #{index} not found")]
    NoSuchThread {
        /// The index asked for.
        index: usize,
    },
    /// `WorkerResume` named no state.
    #[error("resume: {0}")]
    UnknownState(#[from] ParseStateError),
    /// An environment variable name that cannot be set.
    #[error("invalid environment variable name {name:?}: {reason}")]
    EnvName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An environment variable value that cannot be set.
    #[error("invalid value for environment variable {name}: it contains a NUL byte")]
    EnvValue {
        /// The variable.
        name: String,
    },
}

impl From<ControlError> for ErrorObjectOwned {
    fn from(e: ControlError) -> Self {
        ErrorObjectOwned::owned(INVALID_PARAMS_CODE, e.to_string(), None::<()>)
    }
}

/// The handlers over the sealing threads' control blocks.
#[derive(Debug, Clone)]
pub struct WorkerControl {
    threads: Vec<ThreadControl>,
}

impl WorkerControl {
    /// Handlers over `threads` (in `WorkerList` order).
    pub fn new(threads: Vec<ThreadControl>) -> Self {
        WorkerControl { threads }
    }

    /// The thread whose [`ThreadControl::index`] is `index`, i.e. the `index` field of
    /// `WorkerList` (damocles indexes the created threads instead, quirk P-23).
    fn thread(&self, index: usize) -> Result<&ThreadControl, ControlError> {
        self.threads
            .iter()
            .find(|t| t.index() == index)
            .ok_or(ControlError::NoSuchThread { index })
    }
}

fn check_env_name(name: &str) -> Result<(), ControlError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.contains('=') {
        "it contains '='"
    } else if name.contains('\0') {
        "it contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(ControlError::EnvName {
        name: name.to_string(),
        reason,
    })
}

#[async_trait]
impl WorkerControlApiServer for WorkerControl {
    async fn worker_list(&self) -> RpcResult<Vec<WorkerThreadInfo>> {
        Ok(self.threads.iter().map(ThreadControl::info).collect())
    }

    async fn worker_pause(&self, index: usize) -> RpcResult<bool> {
        let queued = self.thread(index)?.request_pause();
        info!(index, queued, "pause requested");
        Ok(queued)
    }

    async fn worker_resume(
        &self,
        ext: &http::Extensions,
        index: usize,
        state: Option<String>,
    ) -> RpcResult<bool> {
        let caller = ext.get::<Caller>();
        if state.is_some() && caller.is_none_or(|c| c.level < Perm::Admin) {
            return Err(ErrorObjectOwned::owned(
                damocles_auth::rpc::CODE_FORBIDDEN,
                "missing permission to invoke 'VenusWorker.WorkerResume' with a state (need \
                 'admin'): it skips the planner's checks",
                None::<()>,
            ));
        }
        let who = damocles_auth::rpc::who(caller);
        let thread = self.thread(index)?;
        // damocles passes any string on and the thread ignores an unknown one; we refuse it.
        let state = state
            .map(|s| State::from_str(&s).map(|st| st.as_str().to_string()))
            .transpose()
            .map_err(ControlError::from)?;
        let resumed = thread.request_resume(state.clone());
        info!(index, state = ?state, resumed, %who, "resume requested");
        Ok(resumed)
    }

    async fn worker_set_env(&self, name: String, value: String) -> RpcResult<()> {
        check_env_name(&name)?;
        if value.contains('\0') {
            return Err(ControlError::EnvValue { name }.into());
        }
        // Not `set_var`: other threads read the environment all the time.
        vc_processors::daemon_env::set(&name, &value);
        info!(name, value_len = value.len(), "daemon variable set");
        Ok(())
    }

    async fn worker_remove_env(&self, name: String) -> RpcResult<()> {
        check_env_name(&name)?;
        vc_processors::daemon_env::remove(&name);
        info!(name, "daemon variable removed");
        Ok(())
    }

    async fn worker_version(&self) -> RpcResult<String> {
        Ok(version())
    }
}

/// Starts the control server on `listen` over `threads`, checking tokens with `auth`; returns
/// its handle and bound address.
pub async fn serve(
    listen: SocketAddr,
    threads: Vec<ThreadControl>,
    auth: Authenticator,
) -> Result<(ServerHandle, SocketAddr)> {
    let module = WorkerControl::new(threads).into_rpc();
    let table = std::sync::Arc::new(
        MethodTable::for_served(
            &[CONTROL_METHODS],
            module.method_names(),
            CREATE_TOKEN_COMMAND,
        )
        .map_err(anyhow::Error::msg)?,
    );
    let server = Server::builder()
        .set_http_middleware(tower::ServiceBuilder::new().layer(RpcAuthLayer::new(auth)))
        .set_rpc_middleware(
            jsonrpsee::server::middleware::rpc::RpcServiceBuilder::new()
                .layer_fn(move |inner| Guard::new(inner, table.clone())),
        )
        .build(listen)
        .await
        .with_context(|| format!("worker rpc server: listening on {listen}"))?;
    let addr = server
        .local_addr()
        .context("worker rpc server: reading the bound address")?;
    let handle = server.start(module);
    Ok((handle, addr))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use jsonrpsee::core::ClientError;
    use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};

    use super::*;
    use crate::sealing::control::ThreadStateView;

    /// The secret the test servers sign with.
    fn secret() -> damocles_auth::Secret {
        damocles_auth::Secret::from_bytes(vec![7; 32])
    }

    fn token(perm: Perm) -> String {
        damocles_auth::create_token(&secret(), perm, Some("test"), None).expect("token")
    }

    fn client_with(addr: SocketAddr, path: &str, token: Option<&str>) -> HttpClient {
        let mut headers = http::HeaderMap::new();
        if let Some(t) = token {
            headers.insert(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_str(&format!("Bearer {t}")).expect("header"),
            );
        }
        HttpClientBuilder::default()
            .set_headers(headers)
            .build(format!("http://{addr}{path}"))
            .expect("client")
    }

    /// A client with an admin token.
    fn client(addr: SocketAddr, path: &str) -> HttpClient {
        client_with(addr, path, Some(&token(Perm::Admin)))
    }

    /// Two threads whose indexes are 0 and 2 (config position 1 was a skipped duplicate).
    async fn start() -> (ServerHandle, SocketAddr, Vec<ThreadControl>) {
        let threads = vec![
            ThreadControl::new(0, Some("/stores/a".into()), "sealer"),
            ThreadControl::new(2, None, "wdpost"),
        ];
        let auth = Authenticator::new(secret(), None, CREATE_TOKEN_COMMAND);
        let (handle, addr) = serve("127.0.0.1:0".parse().expect("addr"), threads.clone(), auth)
            .await
            .expect("serve");
        (handle, addr, threads)
    }

    fn refusal(e: ClientError) -> String {
        e.to_string()
    }

    #[tokio::test]
    async fn every_call_needs_a_token_with_the_permission_of_its_row() {
        let (handle, addr, threads) = start().await;
        let status = |e: ClientError| damocles_manager_api::rpc::refused_status(&e);
        let none = client_with(addr, "/", None);
        let read = client_with(addr, "/", Some(&token(Perm::Read)));
        let write = client_with(addr, "/", Some(&token(Perm::Write)));
        let forged = client_with(
            addr,
            "/",
            Some(
                &damocles_auth::create_token(
                    &damocles_auth::Secret::generate(),
                    Perm::Admin,
                    None,
                    None,
                )
                .expect("token"),
            ),
        );
        // Without a (valid) token: nothing.
        assert_eq!(
            status(none.worker_list().await.expect_err("none")),
            Some(401)
        );
        assert_eq!(
            status(forged.worker_list().await.expect_err("forged")),
            Some(401)
        );
        assert_eq!(
            status(
                none.worker_set_env("LD_PRELOAD".into(), "/tmp/x.so".into())
                    .await
                    .expect_err("none")
            ),
            Some(401)
        );
        // read: views only.
        read.worker_list().await.expect("read lists");
        assert_eq!(
            status(read.worker_pause(0).await.expect_err("read")),
            Some(403)
        );
        // write: pause and a plain resume, not a resume in a chosen state nor the variables.
        assert!(write.worker_pause(0).await.expect("write pauses"));
        assert_eq!(
            threads[0].check_interrupt(),
            Err(crate::sealing::control::Interrupted::Pause)
        );
        write.worker_resume(0, None).await.expect("write resumes");
        let msg = refusal(
            write
                .worker_resume(0, Some("Finished".into()))
                .await
                .expect_err("a state needs admin"),
        );
        assert!(msg.contains("need 'admin'"), "{msg}");
        for e in [
            write
                .worker_set_env("LD_PRELOAD".into(), "/tmp/x.so".into())
                .await
                .expect_err("set env"),
            write
                .worker_remove_env("PATH".into())
                .await
                .expect_err("remove env"),
        ] {
            assert_eq!(status(e), Some(403));
        }
        assert_eq!(vc_processors::daemon_env::var_os("LD_PRELOAD"), None);
        handle.stop().expect("stop");
    }

    fn invalid_params(e: ClientError) -> String {
        match e {
            ClientError::Call(obj) => {
                assert_eq!(obj.code(), INVALID_PARAMS_CODE, "{obj:?}");
                obj.message().to_string()
            }
            other => panic!("expected a call error, got {other:?}"),
        }
    }

    #[test]
    fn the_server_registers_exactly_the_spec_methods() {
        let module = WorkerControl::new(Vec::new()).into_rpc();
        let mut names: Vec<_> = module.method_names().collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "VenusWorker.WorkerList",
                "VenusWorker.WorkerPause",
                "VenusWorker.WorkerRemoveEnv",
                "VenusWorker.WorkerResume",
                "VenusWorker.WorkerSetEnv",
                "VenusWorker.WorkerVersion",
            ]
        );
    }

    #[tokio::test]
    async fn list_pause_and_resume_go_by_the_listed_index() {
        let (handle, addr, threads) = start().await;
        let c = client(addr, "/");

        let list = c.worker_list().await.expect("list");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].index, 0);
        assert_eq!(list[0].location, "/stores/a");
        assert_eq!(list[0].plan, "sealer");
        assert_eq!(list[0].thread_state, ThreadStateView::Idle);
        assert_eq!(list[1].index, 2);
        assert_eq!(list[1].location, "-");
        assert_eq!(list[1].plan, "wdpost");

        assert!(c.worker_pause(2).await.expect("pause"));
        assert!(
            !c.worker_pause(2).await.expect("pause again"),
            "one pending"
        );
        assert_eq!(
            threads[1].check_interrupt(),
            Err(crate::sealing::control::Interrupted::Pause),
            "index 2 is the second thread, not list position 2"
        );
        assert_eq!(threads[0].check_interrupt(), Ok(()));

        let msg = invalid_params(c.worker_pause(1).await.expect_err("no thread #1"));
        assert_eq!(msg, "worker #1 not found");
        let msg = invalid_params(c.worker_resume(7, None).await.expect_err("no #7"));
        assert_eq!(msg, "worker #7 not found");

        assert!(
            !c.worker_resume(0, None).await.expect("resume"),
            "not paused"
        );

        let msg = invalid_params(
            c.worker_resume(0, Some("PC1done".into()))
                .await
                .expect_err("bad state"),
        );
        assert!(msg.contains("\"PC1done\""), "{msg}");
        assert!(msg.contains("TreeDBuilt"), "lists valid names: {msg}");

        let waiter = threads[0].clone();
        let paused = std::thread::spawn(move || waiter.wait_for_resume(None));
        let t = Instant::now();
        while !c
            .worker_resume(0, Some("TreeDBuilt".into()))
            .await
            .expect("resume")
        {
            assert!(t.elapsed() < Duration::from_secs(5), "never resumed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            paused.join().expect("join"),
            Ok(Some("TreeDBuilt".to_string()))
        );

        handle.stop().expect("stop");
    }

    #[tokio::test]
    async fn env_is_set_and_removed_with_validation() {
        let (handle, addr, _threads) = start().await;
        let c = client(addr, "/");
        let name = format!("DAMOCLES_WORKER_SERVER_TEST_{}", std::process::id());

        c.worker_set_env(name.clone(), "/tmp/dumps".into())
            .await
            .expect("set");
        assert_eq!(
            vc_processors::daemon_env::var_os(&name),
            Some("/tmp/dumps".into())
        );
        assert!(
            std::env::var_os(&name).is_none(),
            "the process environment is never changed"
        );
        c.worker_remove_env(name.clone()).await.expect("remove");
        assert_eq!(vc_processors::daemon_env::var_os(&name), None);

        for (bad, why) in [("", "empty"), ("A=B", "'='"), ("A\0B", "NUL")] {
            let msg = invalid_params(
                c.worker_set_env(bad.into(), "x".into())
                    .await
                    .expect_err("bad name"),
            );
            assert!(msg.contains(why), "{msg}");
            let msg = invalid_params(c.worker_remove_env(bad.into()).await.expect_err("bad"));
            assert!(msg.contains(why), "{msg}");
        }
        let msg = invalid_params(
            c.worker_set_env(name.clone(), "a\0b".into())
                .await
                .expect_err("bad value"),
        );
        assert!(msg.contains(&name) && msg.contains("NUL"), "{msg}");
        assert_eq!(vc_processors::daemon_env::var_os(&name), None);

        handle.stop().expect("stop");
    }

    #[tokio::test]
    async fn version_is_served_on_any_path() {
        let (handle, addr, _threads) = start().await;
        for path in ["/", "/rpc/v0", "/anything/else"] {
            let v = client(addr, path).worker_version().await.expect("version");
            assert!(
                v.starts_with(&format!("v{}-", env!("CARGO_PKG_VERSION"))),
                "{v}"
            );
        }
        handle.stop().expect("stop");
    }
}
