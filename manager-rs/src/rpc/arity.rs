//! Positional params must come in exactly the number the method takes, as damocles' server
//! requires (-32602 otherwise); jsonrpsee alone ignores extra params.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use jsonrpsee::core::middleware::{Batch, Notification, RpcServiceT};
use jsonrpsee::server::MethodResponse;
use jsonrpsee::types::{ErrorObject, Request};

/// Every method served by every manager, with its number of params.
pub const METHOD_ARITY: &[(&str, usize)] = &[
    ("Venus.AllocateSector", 1),
    ("Venus.AcquireDeals", 2),
    ("Venus.AssignTicket", 1),
    ("Venus.SubmitPreCommit", 3),
    ("Venus.PollPreCommitState", 1),
    ("Venus.SubmitPersisted", 2),
    ("Venus.SubmitPersistedEx", 3),
    ("Venus.WaitSeed", 2),
    ("Venus.SubmitProof", 3),
    ("Venus.PollProofState", 1),
    ("Venus.ReportState", 2),
    ("Venus.ReportFinalized", 1),
    ("Venus.ReportAborted", 2),
    ("Venus.AllocateSanpUpSector", 1),
    ("Venus.SubmitSnapUpProof", 2),
    ("Venus.AllocateRebuildSector", 1),
    ("Venus.WorkerPing", 1),
    ("Venus.StoreReserveSpace", 3),
    ("Venus.StoreBasicInfo", 1),
    ("Venus.AllocateUnsealSector", 1),
    ("Venus.AchieveUnsealSector", 3),
    ("Venus.AcquireUnsealDest", 2),
    ("Venus.ListSectors", 2),
    ("Venus.FindSector", 2),
    ("Venus.FindSectorInAllStates", 1),
    ("Venus.FindSectorsWithDeal", 2),
    ("Venus.FindSectorWithPiece", 2),
    ("Venus.ImportSector", 3),
    ("Venus.RestoreSector", 2),
    ("Venus.FinalizeSector", 1),
    ("Venus.WorkerGetPingInfo", 1),
    ("Venus.WorkerPingInfoList", 0),
    ("Venus.WorkerPingInfoRemove", 1),
    ("Venus.SectorIndexerFind", 2),
    ("Venus.StoreReleaseReserved", 1),
    ("Venus.StoreList", 0),
    ("Venus.Version", 0),
    ("Venus.GetTicket", 3),
    ("Venus.GetSeed", 3),
    ("Venus.GetWindowPoStChanlleengeRand", 3),
    ("Venus.GetWindowPoStCommitRand", 2),
    ("Venus.GetInfo", 1),
    ("Venus.GetMinerConfig", 1),
    ("Damocles.ChainHead", 0),
    ("Damocles.ChainMiner", 1),
    ("Damocles.ChainSectors", 1),
    ("Damocles.ChainDeadlines", 1),
    ("Damocles.DealsImport", 3),
    ("Damocles.DealsList", 0),
    ("Damocles.StorageAttach", 2),
    ("Damocles.Tasks", 0),
];

/// The methods of the worker-prover (served with `--worker-prover` only), with their number of
/// params. Counts are checked only for the methods a server serves, so a manager without them
/// answers "method not found" whatever the params.
pub const WDPOST_METHOD_ARITY: &[(&str, usize)] = &[
    ("Venus.WdPoStAllocateJobs", 3),
    ("Venus.WdPoStHeartbeatJobs", 2),
    ("Venus.WdPoStFinishJob", 3),
    ("Venus.WdPoStResetJob", 1),
    ("Venus.WdPoStRemoveJob", 1),
    ("Venus.WdPoStAllJobs", 0),
];

/// The middleware.
#[derive(Clone, Debug)]
pub struct Arity<S> {
    inner: S,
    counts: Arc<HashMap<&'static str, usize>>,
}

/// The param counts of the `served` methods.
pub fn counts_of<'a>(
    served: impl IntoIterator<Item = &'a str>,
) -> Arc<HashMap<&'static str, usize>> {
    let served: std::collections::HashSet<&str> = served.into_iter().collect();
    Arc::new(
        METHOD_ARITY
            .iter()
            .chain(WDPOST_METHOD_ARITY)
            .filter(|(name, _)| served.contains(name))
            .copied()
            .collect(),
    )
}

impl<S> Arity<S> {
    /// Wraps the RPC service, checking the methods of `counts` ([`counts_of`]).
    pub fn new(inner: S, counts: Arc<HashMap<&'static str, usize>>) -> Self {
        Arity { inner, counts }
    }
}

fn given(req: &Request<'_>) -> Option<usize> {
    let params = req.params();
    match params.as_str() {
        None => Some(0),
        Some(raw) => serde_json::from_str::<Vec<&serde_json::value::RawValue>>(raw)
            .ok()
            .map(|v| v.len()),
    }
}

impl<S> RpcServiceT for Arity<S>
where
    S: RpcServiceT<MethodResponse = MethodResponse> + Send + Sync + Clone + 'static,
{
    type MethodResponse = S::MethodResponse;
    type NotificationResponse = S::NotificationResponse;
    type BatchResponse = S::BatchResponse;

    fn call<'a>(&self, req: Request<'a>) -> impl Future<Output = Self::MethodResponse> + Send + 'a {
        let inner = self.inner.clone();
        let expected = self.counts.get(req.method_name()).copied();
        async move {
            if let (Some(want), Some(got)) = (expected, given(&req)) {
                if want != got {
                    let msg = format!(
                        "wrong param count (method '{}'): {got} != {want}",
                        req.method_name()
                    );
                    return MethodResponse::error(
                        req.id(),
                        ErrorObject::owned(-32602, msg, None::<()>),
                    );
                }
            }
            inner.call(req).await
        }
    }

    fn batch<'a>(
        &self,
        requests: Batch<'a>,
    ) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        self.inner.batch(requests)
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = Self::NotificationResponse> + Send + 'a {
        self.inner.notification(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_served_methods_are_counted() {
        let counts = counts_of(["Venus.Version", "Venus.WdPoStResetJob", "Venus.Other"]);
        assert_eq!(counts.len(), 2);
        assert_eq!(counts.get("Venus.Version"), Some(&0));
        assert_eq!(counts.get("Venus.WdPoStResetJob"), Some(&1));
        assert!(counts_of(METHOD_ARITY.iter().map(|(m, _)| *m))
            .keys()
            .all(|m| !m.starts_with("Venus.WdPoSt")));
    }
}
