//! The workers that ping the manager (`WorkerPing`) and what the CLI asks of them.

use damocles_manager_api::types::{WorkerInfo, WorkerPingInfo};

use crate::error::{ApiError, ApiResult};
use crate::kv::{cf, Kv};

/// The last ping of every worker, by name.
#[derive(Clone)]
pub struct WorkerRegistry {
    kv: Kv,
}

impl std::fmt::Debug for WorkerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerRegistry").finish_non_exhaustive()
    }
}

impl WorkerRegistry {
    /// Pings kept in `kv`.
    pub fn new(kv: Kv) -> Self {
        WorkerRegistry { kv }
    }

    /// `WorkerPing`: records the worker's info with the time of the ping.
    pub fn ping(&self, info: WorkerInfo) -> ApiResult<()> {
        if info.name.is_empty() {
            return Err(ApiError::bad("WorkerPing: Name is empty"));
        }
        if info.dest.is_empty() {
            return Err(ApiError::bad("WorkerPing: Dest is empty"));
        }
        let rec = WorkerPingInfo {
            last_ping: crate::util::unix_now(),
            info,
        };
        self.kv
            .put_json(cf::WORKER, rec.info.name.as_bytes(), &rec)?;
        Ok(())
    }

    /// Every worker that pinged.
    pub fn list(&self) -> ApiResult<Vec<WorkerPingInfo>> {
        Ok(self
            .kv
            .scan_json::<WorkerPingInfo>(cf::WORKER, b"")?
            .into_iter()
            .map(|(_, w)| w)
            .collect())
    }

    /// One worker.
    pub fn get(&self, name: &str) -> ApiResult<Option<WorkerPingInfo>> {
        Ok(self.kv.get_json(cf::WORKER, name.as_bytes())?)
    }

    /// Forgets a worker.
    pub fn remove(&self, name: &str) -> ApiResult<()> {
        if self.get(name)?.is_none() {
            return Err(ApiError::bad(format!("no worker named {name:?}")));
        }
        Ok(self.kv.delete(cf::WORKER, name.as_bytes())?)
    }
}
