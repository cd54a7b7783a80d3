//! What planners and the daemon ask of the manager: one trait, [`ManagerPort`], with a typed
//! failure, [`ManagerError`]. The JSON-RPC client ([`crate::client::ManagerClient`]) is its
//! implementation; a planner never sees the transport, so it can be driven by an in-memory
//! manager in a unit test, and new planners (snap-up, rebuild, unseal) plug into the same port.
//!
//! Every method's wire name and metric label is in [`Method`].

use std::sync::Arc;

use damocles_manager_api::types::{
    AcquireDealsSpec, AllocateSectorSpec, AllocateWdPoStJobSpec, AllocatedSector,
    PollPreCommitStateResp, PollProofStateResp, PreCommitOnChainInfo, ProofOnChainInfo,
    ReportStateReq, SealProofType, SectorId, SectorPieceV2, SectorStateResp, StoreBasicInfo,
    SubmitPreCommitResp, SubmitProofResp, Ticket, WaitSeedResp, WdPoStAllocatedJob,
    WindowPoStOutput,
};

/// Declares [`Method`] with the wire name and the metric label of each variant.
macro_rules! methods {
    ($($variant:ident => $wire:literal, $label:literal;)*) => {
        /// A manager method the worker calls.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Method {
            $(
                #[doc = concat!("`", $wire, "`")]
                $variant,
            )*
        }

        impl Method {
            /// Every method, in declaration order.
            pub const ALL: &'static [Method] = &[$(Method::$variant,)*];

            /// The JSON-RPC method name.
            pub fn wire_name(self) -> &'static str {
                match self {
                    $(Method::$variant => $wire,)*
                }
            }

            /// The `method` label of the RPC metrics: damocles' client method name
            /// (worker-spec §7).
            pub fn metric_label(self) -> &'static str {
                match self {
                    $(Method::$variant => $label,)*
                }
            }
        }
    };
}

methods! {
    AllocateSector => "Venus.AllocateSector", "allocate_sector";
    AcquireDeals => "Venus.AcquireDeals", "acquire_deals";
    AssignTicket => "Venus.AssignTicket", "assign_ticket";
    SubmitPreCommit => "Venus.SubmitPreCommit", "submit_pre_commit";
    PollPreCommitState => "Venus.PollPreCommitState", "poll_pre_commit_state";
    SubmitPersistedEx => "Venus.SubmitPersistedEx", "submit_persisted_ex";
    WaitSeed => "Venus.WaitSeed", "wait_seed";
    SubmitProof => "Venus.SubmitProof", "submit_proof";
    PollProofState => "Venus.PollProofState", "poll_proof_state";
    ReportState => "Venus.ReportState", "report_state";
    ReportFinalized => "Venus.ReportFinalized", "report_finalized";
    ReportAborted => "Venus.ReportAborted", "report_aborted";
    StoreReserveSpace => "Venus.StoreReserveSpace", "store_reserve_space";
    StoreBasicInfo => "Venus.StoreBasicInfo", "store_basic_info";
    WorkerPing => "Venus.WorkerPing", "worker_ping";
    WdPoStAllocateJobs => "Venus.WdPoStAllocateJobs", "allocate_wdpost_job";
    WdPoStHeartbeatJobs => "Venus.WdPoStHeartbeatJobs", "wdpost_heartbeat";
    WdPoStFinishJob => "Venus.WdPoStFinishJob", "wdpost_finish";
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.wire_name())
    }
}

/// The manager's error code for "sector state not found" (worker-spec §3.3).
pub use damocles_manager_api::ERR_SECTOR_STATE_NOT_FOUND as SECTOR_STATE_NOT_FOUND;
/// JSON-RPC's code for a method the server does not serve.
pub const METHOD_NOT_FOUND: i32 = -32601;

/// A failed manager call, by what the caller can do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ManagerError {
    /// The manager does not know the sector (code 11001): the sector must be dropped.
    #[error("{method}: from error code: sector state not found, with msg: {message}")]
    SectorStateNotFound {
        /// Method called.
        method: Method,
        /// The manager's message.
        message: String,
    },
    /// The manager does not serve the method (code -32601): a module it was not started with,
    /// such as the worker-prover.
    #[error("{method}: rpc error: the manager does not serve this method: {message}")]
    MethodNotFound {
        /// Method called.
        method: Method,
        /// The manager's message.
        message: String,
    },
    /// The manager answered the call with another error.
    #[error("{method}: rpc error: {message} (code {code})")]
    Rejected {
        /// Method called.
        method: Method,
        /// JSON-RPC error code.
        code: i32,
        /// The manager's message.
        message: String,
    },
    /// No usable answer: the manager cannot be reached, timed out, or sent what does not
    /// decode. Worth a retry.
    #[error("{method}: rpc error: {cause}")]
    Unavailable {
        /// Method called.
        method: Method,
        /// The transport's error (in the message, so not also a `source()`).
        cause: Arc<dyn std::error::Error + Send + Sync>,
    },
}

impl ManagerError {
    /// The method that failed.
    pub fn method(&self) -> Method {
        match self {
            ManagerError::SectorStateNotFound { method, .. }
            | ManagerError::MethodNotFound { method, .. }
            | ManagerError::Rejected { method, .. }
            | ManagerError::Unavailable { method, .. } => *method,
        }
    }

    /// The error a JSON-RPC error object of `code` and `message` means.
    pub fn from_code(method: Method, code: i32, message: String) -> ManagerError {
        match code {
            SECTOR_STATE_NOT_FOUND => ManagerError::SectorStateNotFound { method, message },
            METHOD_NOT_FOUND => ManagerError::MethodNotFound { method, message },
            code => ManagerError::Rejected {
                method,
                code,
                message,
            },
        }
    }
}

/// A manager call's result.
pub type ManagerResult<T> = Result<T, ManagerError>;

/// Calls `$then!` with every method of [`ManagerPort`]: its docs, its name (the JSON-RPC client
/// method of the API crate has the same name), its params, what it answers, and its [`Method`].
/// The trait and its implementations are all generated from this one list.
macro_rules! for_each_port_method {
    ($then:ident) => {
        $then! {
            /// A new sector for a thread, or `None` when there is none to seal now.
            allocate_sector(spec: AllocateSectorSpec) -> Option<AllocatedSector>, AllocateSector;
            /// Deals for a sector (`None` or empty: a CC sector).
            acquire_deals(sid: SectorId, spec: AcquireDealsSpec) -> Option<Vec<SectorPieceV2>>, AcquireDeals;
            /// The sealing ticket.
            assign_ticket(sid: SectorId) -> Ticket, AssignTicket;
            /// Sends the PreCommit.
            submit_pre_commit(sector: AllocatedSector, info: PreCommitOnChainInfo, hard_reset: bool) -> SubmitPreCommitResp, SubmitPreCommit;
            /// Where the PreCommit message is.
            poll_pre_commit_state(sid: SectorId) -> PollPreCommitStateResp, PollPreCommitState;
            /// Reserves room for a sector's files in one of `candidates`; `None`: none has room now.
            store_reserve_space(sid: SectorId, size: u64, candidates: Vec<String>) -> Option<StoreBasicInfo>, StoreReserveSpace;
            /// A persist store by instance name.
            store_basic_info(instance: String) -> Option<StoreBasicInfo>, StoreBasicInfo;
            /// The sector's files are in store `instance`.
            submit_persisted_ex(sid: SectorId, instance: String, is_upgrade: bool) -> bool, SubmitPersistedEx;
            /// The interactive seed, or how long to wait for it.
            wait_seed(sid: SectorId, proof_type: SealProofType) -> WaitSeedResp, WaitSeed;
            /// Sends the PoRep proof.
            submit_proof(sid: SectorId, info: ProofOnChainInfo, hard_reset: bool) -> SubmitProofResp, SubmitProof;
            /// Where the ProveCommit message is.
            poll_proof_state(sid: SectorId) -> PollProofStateResp, PollProofState;
            /// A state change of a sector; the answer says whether the manager dropped it.
            report_state(sid: SectorId, req: ReportStateReq) -> SectorStateResp, ReportState;
            /// The sector is done.
            report_finalized(sid: SectorId) -> (), ReportFinalized;
            /// The sector was given up.
            report_aborted(sid: SectorId, reason: String) -> (), ReportAborted;
            /// Up to `num` WindowPoSt jobs for a wdpost thread.
            wdpost_allocate_jobs(spec: AllocateWdPoStJobSpec, num: u32, worker_name: String) -> Vec<WdPoStAllocatedJob>, WdPoStAllocateJobs;
            /// Keeps held jobs alive.
            wdpost_heartbeat_jobs(job_ids: Vec<String>, worker_name: String) -> (), WdPoStHeartbeatJobs;
            /// Ends a job with its output, or with an error reason.
            wdpost_finish_job(job_id: String, output: Option<WindowPoStOutput>, error_reason: String) -> (), WdPoStFinishJob;
        }
    };
}

pub(crate) use for_each_port_method;

/// Declares [`ManagerPort`] from the list of [`for_each_port_method`].
macro_rules! declare_port {
    ($($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty, $method:ident;)*) => {
        /// What the worker asks of the manager (worker-spec §4), one method a wire method.
        /// Calls block the calling thread (sealing runs on plain OS threads).
        pub trait ManagerPort: Send + Sync {
            $(
                $(#[$doc])*
                fn $name(&self, $($arg: $ty),*) -> ManagerResult<$ret>;
            )*
        }
    };
}

for_each_port_method!(declare_port);

/// An in-memory manager for planner tests: each call is recorded with its arguments as JSON,
/// and answered from what the test queued for its method; a method with nothing queued answers
/// [`ManagerError::MethodNotFound`], as a manager without that module does.
#[cfg(test)]
pub mod memory {
    use std::any::Any;
    use std::collections::{HashMap, VecDeque};
    use std::sync::Mutex;

    use super::*;

    /// See the module.
    #[derive(Default)]
    pub struct MemoryManager {
        calls: Mutex<Vec<(Method, serde_json::Value)>>,
        answers: Mutex<HashMap<Method, VecDeque<Box<dyn Any + Send>>>>,
    }

    impl MemoryManager {
        /// Queues the next answer of `method`.
        pub fn answer<T: Send + 'static>(&self, method: Method, answer: ManagerResult<T>) {
            self.answers
                .lock()
                .expect("answers")
                .entry(method)
                .or_default()
                .push_back(Box::new(answer));
        }

        /// The arguments of every call of `method` so far, in order.
        pub fn calls_of(&self, method: Method) -> Vec<serde_json::Value> {
            let calls = self.calls.lock().expect("calls");
            calls
                .iter()
                .filter(|(m, _)| *m == method)
                .map(|(_, args)| args.clone())
                .collect()
        }

        fn next<T: 'static>(
            &self,
            method: Method,
            args: impl serde::Serialize,
        ) -> ManagerResult<T> {
            let args = serde_json::to_value(args).expect("arguments encode");
            self.calls.lock().expect("calls").push((method, args));
            let queued = self
                .answers
                .lock()
                .expect("answers")
                .get_mut(&method)
                .and_then(VecDeque::pop_front);
            match queued {
                Some(answer) => *answer
                    .downcast::<ManagerResult<T>>()
                    .expect("the queued answer has the method's type"),
                None => Err(ManagerError::MethodNotFound {
                    method,
                    message: "Method not found".into(),
                }),
            }
        }
    }

    /// Every method records its arguments and answers what was queued for it.
    macro_rules! memory_port {
        ($($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty, $method:ident;)*) => {
            impl ManagerPort for MemoryManager {
                $(
                    fn $name(&self, $($arg: $ty),*) -> ManagerResult<$ret> {
                        self.next(Method::$method, ($($arg,)*))
                    }
                )*
            }
        };
    }

    for_each_port_method!(memory_port);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_have_distinct_wire_names_and_labels() {
        let wires: std::collections::BTreeSet<_> =
            Method::ALL.iter().map(|m| m.wire_name()).collect();
        let labels: std::collections::BTreeSet<_> =
            Method::ALL.iter().map(|m| m.metric_label()).collect();
        assert_eq!(wires.len(), Method::ALL.len());
        assert_eq!(labels.len(), Method::ALL.len());
        assert!(wires.iter().all(|w| w.starts_with("Venus.")));
        assert_eq!(
            Method::WdPoStAllocateJobs.metric_label(),
            "allocate_wdpost_job"
        );
    }

    #[test]
    fn error_codes_become_what_the_caller_can_do() {
        let m = Method::AssignTicket;
        assert!(matches!(
            ManagerError::from_code(m, 11001, "gone".into()),
            ManagerError::SectorStateNotFound { .. }
        ));
        assert!(matches!(
            ManagerError::from_code(m, -32601, "Method not found".into()),
            ManagerError::MethodNotFound { .. }
        ));
        let e = ManagerError::from_code(m, 1, "no miner".into());
        assert!(matches!(e, ManagerError::Rejected { code: 1, .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "Venus.AssignTicket: rpc error: no miner (code 1)"
        );
        assert_eq!(e.method(), m);
    }
}
