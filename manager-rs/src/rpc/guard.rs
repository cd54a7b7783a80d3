//! The checks every call passes before its handler runs, for single calls and for each call of
//! a batch:
//!
//! 1. the caller's permission ([`Caller`], put in the request by the HTTP layer) must reach the
//!    method's (its row in [`MethodTable`]); a refusal names both and marks the response with
//!    [`Refused`], which the HTTP layer turns into 401 (no credential) or 403;
//! 2. positional params must come in exactly the number the method takes, as damocles' server
//!    requires (-32602 otherwise); jsonrpsee alone ignores extra params.
//!
//! Calls of `admin` methods are logged with the caller's name.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use anyhow::{bail, Result};
use damocles_auth::{Caller, Perm};
use damocles_manager_api::rpc::{Method, CLI_METHODS, SEALER_METHODS, WDPOST_METHODS};
use jsonrpsee::core::middleware::{Batch, BatchEntry, BatchEntryErr, Notification, RpcServiceT};
use jsonrpsee::server::MethodResponse;
use jsonrpsee::types::{ErrorObject, ErrorObjectOwned, Request};

/// JSON-RPC code of a call without a valid credential (HTTP 401).
pub const CODE_UNAUTHENTICATED: i32 = -32001;
/// JSON-RPC code of a call whose token's permission is too low (HTTP 403).
pub const CODE_FORBIDDEN: i32 = -32003;

/// Marks a response refused for a permission; the HTTP layer answers with this status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub http::StatusCode);

/// The rows of the methods a server serves, by name.
#[derive(Debug, Default)]
pub struct MethodTable(HashMap<&'static str, Method>);

impl MethodTable {
    /// The rows of `served`, looked up in every table of the Venus API and in `extra` (the
    /// server's own namespaces). A served method without a row is an error, so no method can
    /// be registered without a permission.
    pub fn for_served<'a>(
        served: impl IntoIterator<Item = &'a str>,
        extra: &[&'static [Method]],
    ) -> Result<MethodTable> {
        let rows: HashMap<&'static str, Method> = [SEALER_METHODS, WDPOST_METHODS, CLI_METHODS]
            .iter()
            .chain(extra)
            .flat_map(|t| t.iter())
            .map(|m| (m.name, *m))
            .collect();
        let mut table = HashMap::new();
        let mut missing = Vec::new();
        for name in served {
            match rows.get(name) {
                Some(m) => {
                    table.insert(m.name, *m);
                }
                None => missing.push(name.to_string()),
            }
        }
        if !missing.is_empty() {
            missing.sort();
            bail!(
                "methods served without a row in a method table (no permission declared): {}",
                missing.join(", ")
            );
        }
        Ok(MethodTable(table))
    }

    /// The row of a served method.
    pub fn get(&self, name: &str) -> Option<&Method> {
        self.0.get(name)
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
) -> Option<(ErrorObjectOwned, http::StatusCode)> {
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
            http::StatusCode::FORBIDDEN,
        )),
        None => Some((
            ErrorObject::owned(
                CODE_UNAUTHENTICATED,
                format!(
                    "missing permission to invoke '{method}' (need '{need}'): no token; send \
                     `Authorization: Bearer <token>` with a token made by \
                     `damocles-manager util auth create-token --perm {need}`"
                ),
                None::<()>,
            ),
            http::StatusCode::UNAUTHORIZED,
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
                tracing::debug!(method, who = %who(caller), "call refused");
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
            let kept: Vec<_> = requests
                .into_iter()
                .filter(|entry| match entry {
                    Ok(BatchEntry::Notification(n)) => {
                        refusal(&table, n.extensions().get::<Caller>(), n.method_name()).is_none()
                    }
                    _ => true,
                })
                .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(level: Perm) -> Caller {
        Caller {
            level,
            name: Some("t".into()),
        }
    }

    #[test]
    fn only_the_served_methods_are_in_the_table_and_each_needs_a_row() {
        let table =
            MethodTable::for_served(["Venus.Version", "Venus.WdPoStResetJob"], &[]).expect("table");
        assert_eq!(table.get("Venus.Version").map(|m| m.params), Some(0));
        assert_eq!(table.need("Venus.WdPoStResetJob"), Perm::Admin);
        assert!(table.get("Venus.ListSectors").is_none());
        let err = MethodTable::for_served(["Venus.Version", "Venus.Other", "Plugin.Call"], &[])
            .expect_err("unlisted");
        assert_eq!(
            err.to_string(),
            "methods served without a row in a method table (no permission declared): Plugin.Call, Venus.Other"
        );
    }

    #[test]
    fn a_caller_needs_the_methods_permission_and_a_refusal_names_it() {
        let table = MethodTable::for_served(
            ["Venus.Version", "Venus.ImportSector", "Venus.WorkerPing"],
            &[],
        )
        .expect("table");
        assert!(refusal(&table, Some(&caller(Perm::Read)), "Venus.Version").is_none());
        assert!(refusal(&table, Some(&caller(Perm::Write)), "Venus.WorkerPing").is_none());
        assert!(refusal(&table, Some(&caller(Perm::Admin)), "Venus.ImportSector").is_none());

        let (err, status) =
            refusal(&table, Some(&caller(Perm::Write)), "Venus.ImportSector").expect("refused");
        assert_eq!(status, http::StatusCode::FORBIDDEN);
        assert_eq!(err.code(), CODE_FORBIDDEN);
        assert!(
            err.message()
                .starts_with("missing permission to invoke 'Venus.ImportSector' (need 'admin'"),
            "{}",
            err.message()
        );
        let (err, status) = refusal(&table, None, "Venus.Version").expect("refused");
        assert_eq!(status, http::StatusCode::UNAUTHORIZED);
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
    fn params_must_come_in_the_methods_number() {
        let table = MethodTable::for_served(["Venus.WorkerPing"], &[]).expect("table");
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
