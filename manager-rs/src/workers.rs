//! The workers that ping the manager (`WorkerPing`) and what the CLI asks of them.

use damocles_manager_api::types::{WorkerInfo, WorkerPingInfo};

use crate::error::{ApiError, ApiResult};
use crate::kv::{cf, Kv};

/// Workers kept in the registry; a ping from one more new name is refused.
pub const MAX_WORKERS: usize = 4096;
/// Longest name, address or version of a worker.
pub const MAX_WORKER_FIELD: usize = 256;

/// The last ping of every worker, by name.
#[derive(Clone)]
pub struct WorkerRegistry {
    kv: Kv,
    max_workers: usize,
    /// Held from the count of the registry to the write of a new name.
    joining: std::sync::Arc<std::sync::Mutex<()>>,
}

impl std::fmt::Debug for WorkerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerRegistry").finish_non_exhaustive()
    }
}

impl WorkerRegistry {
    /// Pings kept in `kv`.
    pub fn new(kv: Kv) -> Self {
        WorkerRegistry {
            kv,
            max_workers: MAX_WORKERS,
            joining: Default::default(),
        }
    }

    /// `WorkerPing`: records the worker's info with the time of the ping.
    pub fn ping(&self, info: WorkerInfo) -> ApiResult<()> {
        if info.name.is_empty() {
            return Err(ApiError::bad("WorkerPing: Name is empty"));
        }
        if info.dest.is_empty() {
            return Err(ApiError::bad("WorkerPing: Dest is empty"));
        }
        for (field, value) in [
            ("Name", &info.name),
            ("Dest", &info.dest),
            ("Version", &info.version),
        ] {
            if value.len() > MAX_WORKER_FIELD {
                return Err(ApiError::bad(format!(
                    "WorkerPing: {field} is {} bytes, more than {MAX_WORKER_FIELD}",
                    value.len()
                )));
            }
        }
        let _joining = self.joining.lock().unwrap_or_else(|e| e.into_inner());
        if self.get(&info.name)?.is_none() {
            let known = self.kv.scan_json::<WorkerPingInfo>(cf::WORKER, b"")?.len();
            if known >= self.max_workers {
                return Err(ApiError::bad(format!(
                    "WorkerPing: {known} workers are registered, the most kept; forget stale ones \
                     with `util worker remove <name>` before a new one ({:?}) can join",
                    info.name
                )));
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use damocles_manager_api::types::WorkerInfoSummary;

    fn info(name: &str) -> WorkerInfo {
        WorkerInfo {
            name: name.into(),
            dest: "127.0.0.1:17890".into(),
            version: "v1".into(),
            summary: WorkerInfoSummary::default(),
        }
    }

    #[test]
    fn the_registry_is_bounded_and_its_strings_too() {
        let dir = tempfile::tempdir().expect("tmp");
        let kv = Kv::open(&dir.path().join("db")).expect("kv");
        let reg = WorkerRegistry {
            kv,
            max_workers: 2,
            joining: Default::default(),
        };
        reg.ping(info("a")).expect("a");
        reg.ping(info("b")).expect("b");
        reg.ping(info("a")).expect("a known worker pings again");
        let err = reg.ping(info("c")).expect_err("a third name");
        assert!(err.to_string().contains("util worker remove"), "{err}");
        reg.remove("b").expect("forget b");
        reg.ping(info("c")).expect("room again");
        let long = "x".repeat(MAX_WORKER_FIELD + 1);
        let err = reg.ping(info(&long)).expect_err("long name");
        assert!(err.to_string().contains("Name is 257 bytes"), "{err}");
        assert_eq!(reg.list().expect("list").len(), 2);
    }
}
