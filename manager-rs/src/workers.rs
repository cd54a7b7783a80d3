//! The workers that ping the manager (`WorkerPing`) and what the CLI asks of them.

use damocles_manager_api::types::{WorkerInfo, WorkerPingInfo};

use crate::error::{ApiError, ApiResult};
use crate::kv::{cf, Kv, Op};

/// Workers kept in the registry; a ping from one more new name is refused.
pub const MAX_WORKERS: usize = 4096;
/// Longest name, address or version of a worker.
pub const MAX_WORKER_FIELD: usize = 256;

/// Where the token name a worker name is bound to is kept (`cf::COMMON`).
const OWNER_PREFIX: &str = "worker-owner/";

fn owner_key(worker: &str) -> Vec<u8> {
    format!("{OWNER_PREFIX}{worker}").into_bytes()
}

/// Who sends a ping: the name of its token, if the token has one, and whether it is `admin`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pinger<'a> {
    /// The token's `name` claim.
    pub token_name: Option<&'a str>,
    /// An `admin` caller may ping as any worker.
    pub admin: bool,
}

/// The last ping of every worker, by name. A worker name first pinged with a named token is
/// bound to that token name: from then on only a token of the same name (or `admin`) may
/// ping as it, so one worker cannot overwrite another's address.
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
    pub fn ping(&self, info: WorkerInfo, by: Pinger<'_>) -> ApiResult<()> {
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
        let owner = self.owner(&info.name)?;
        if let Some(owner) = &owner {
            if !by.admin && by.token_name != Some(owner.as_str()) {
                return Err(ApiError::bad(format!(
                    "WorkerPing: worker {:?} is bound to the token named {owner:?}; ping with \
                     that token (or forget the worker with `util worker remove`)",
                    info.name
                )));
            }
        }
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
        let mut ops = vec![Op::put_json(cf::WORKER, rec.info.name.as_bytes(), &rec)?];
        if let (None, Some(name), false) = (&owner, by.token_name, by.admin) {
            ops.push(Op::Put(
                cf::COMMON,
                owner_key(&rec.info.name),
                name.as_bytes().to_vec(),
            ));
        }
        self.kv.write(ops)?;
        Ok(())
    }

    /// The token name `worker` is bound to, if any.
    pub fn owner(&self, worker: &str) -> ApiResult<Option<String>> {
        Ok(self
            .kv
            .get(cf::COMMON, &owner_key(worker))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
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

    /// Forgets a worker and the token name it was bound to.
    pub fn remove(&self, name: &str) -> ApiResult<()> {
        if self.get(name)?.is_none() {
            return Err(ApiError::bad(format!("no worker named {name:?}")));
        }
        Ok(self.kv.write(vec![
            Op::Del(cf::WORKER, name.as_bytes().to_vec()),
            Op::Del(cf::COMMON, owner_key(name)),
        ])?)
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
        reg.ping(info("a"), Pinger::default()).expect("a");
        reg.ping(info("b"), Pinger::default()).expect("b");
        reg.ping(info("a"), Pinger::default())
            .expect("a known worker pings again");
        let err = reg
            .ping(info("c"), Pinger::default())
            .expect_err("a third name");
        assert!(err.to_string().contains("util worker remove"), "{err}");
        reg.remove("b").expect("forget b");
        reg.ping(info("c"), Pinger::default()).expect("room again");
        let long = "x".repeat(MAX_WORKER_FIELD + 1);
        let err = reg
            .ping(info(&long), Pinger::default())
            .expect_err("long name");
        assert!(err.to_string().contains("Name is 257 bytes"), "{err}");
        assert_eq!(reg.list().expect("list").len(), 2);
    }

    #[test]
    fn a_worker_name_pinged_with_a_named_token_is_bound_to_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let reg = WorkerRegistry::new(Kv::open(&dir.path().join("db")).expect("kv"));
        let w1 = Pinger {
            token_name: Some("w1-token"),
            admin: false,
        };
        let w2 = Pinger {
            token_name: Some("w2-token"),
            admin: false,
        };
        let admin = Pinger {
            token_name: None,
            admin: true,
        };
        reg.ping(info("w1"), w1).expect("first ping binds");
        assert_eq!(reg.owner("w1").expect("owner").as_deref(), Some("w1-token"));
        let mut moved = info("w1");
        moved.dest = "10.9.9.9:1".into();
        for other in [w2, Pinger::default()] {
            let err = reg.ping(moved.clone(), other).expect_err("another token");
            assert!(
                err.to_string()
                    .contains("bound to the token named \"w1-token\""),
                "{err}"
            );
        }
        assert_eq!(
            reg.get("w1").expect("get").expect("w1").info.dest,
            "127.0.0.1:17890",
            "the address was not overwritten"
        );
        reg.ping(info("w1"), w1).expect("its own token again");
        reg.ping(moved.clone(), admin).expect("admin may");
        assert_eq!(
            reg.owner("w1").expect("owner").as_deref(),
            Some("w1-token"),
            "admin does not rebind"
        );
        // An unnamed token binds nothing; forgetting a worker frees its name.
        reg.ping(info("free"), Pinger::default()).expect("unnamed");
        assert_eq!(reg.owner("free").expect("owner"), None);
        reg.ping(info("free"), w2)
            .expect("anyone may claim an unbound name");
        reg.remove("w1").expect("remove");
        assert_eq!(reg.owner("w1").expect("owner"), None);
        reg.ping(moved, w2).expect("a forgotten name is free again");
    }
}
