//! `[worker]` (§6.1): this worker instance: its name, RPC server, ping period, local piece
//! directories, scanned persist stores and plugin directory.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};

use super::{HumanDuration, RpcServerConfig};

/// `[worker]` (§6.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerInstanceConfig {
    /// Instance name (ping `Name`, wdpost worker name, `ReportState` instance, metrics label).
    /// Unset: the local IP address on the route to the manager.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The worker RPC server.
    pub rpc_server: RpcServerConfig,
    /// Period of `Venus.WorkerPing` (the first ping is one period after start). Default 30s.
    pub ping_interval: HumanDuration,
    /// Legacy single local piece directory; set this or `local_pieces_dirs`, not both.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_pieces_dir: Option<PathBuf>,
    /// Directories searched for deal pieces (`<dir>/<cid>`, then `<dir>/<cid>.car`) before the
    /// manager's piece store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_pieces_dirs: Option<Vec<PathBuf>>,
    /// Glob patterns of persist store directories holding a `sectorstore.json`; each match is an
    /// attached store. Alias `ScanPersistStores`.
    #[serde(alias = "ScanPersistStores", skip_serializing_if = "Vec::is_empty")]
    pub scan_persist_stores: Vec<String>,
    /// Directory searched for the objstore plugins named by `[[attached]].plugin` (our
    /// addition, like the manager's `[Common.Plugins] Dir`). Unset: the directory of the
    /// worker executable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_dir: Option<PathBuf>,
}

impl Default for WorkerInstanceConfig {
    fn default() -> Self {
        WorkerInstanceConfig {
            name: None,
            rpc_server: RpcServerConfig::default(),
            ping_interval: HumanDuration::from_secs(30),
            local_pieces_dir: None,
            local_pieces_dirs: None,
            scan_persist_stores: Vec::new(),
            plugin_dir: None,
        }
    }
}

impl WorkerInstanceConfig {
    /// The local piece directories: `local_pieces_dirs`, else the legacy `local_pieces_dir`.
    pub fn local_pieces_dirs(&self) -> Vec<PathBuf> {
        match (&self.local_pieces_dirs, &self.local_pieces_dir) {
            (Some(dirs), _) => dirs.clone(),
            (None, Some(dir)) => vec![dir.clone()],
            (None, None) => Vec::new(),
        }
    }

    /// Where objstore plugins are loaded from: `plugin_dir`, else the executable's directory.
    pub fn plugin_dir(&self) -> Result<PathBuf> {
        if let Some(dir) = &self.plugin_dir {
            return Ok(dir.clone());
        }
        let exe = std::env::current_exe()
            .context("locating the worker executable (set `worker.plugin_dir`)")?;
        exe.parent().map(Path::to_path_buf).ok_or_else(|| {
            anyhow!(
                "{} has no parent directory (set `worker.plugin_dir`)",
                exe.display()
            )
        })
    }

    pub(super) fn check(&self, out: &mut Vec<String>) {
        if self.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            out.push("`worker.name` is empty (remove it to use the local IP address)".into());
        }
        if let Some(host) = &self.rpc_server.host {
            if host.trim().parse::<IpAddr>().is_err() {
                out.push(format!(
                    "`worker.rpc_server.host`: {host:?} is not an IP address"
                ));
            }
        }
        if self.ping_interval.0.is_zero() {
            out.push("`worker.ping_interval` must not be 0".into());
        }
        if self.local_pieces_dir.is_some() && self.local_pieces_dirs.is_some() {
            out.push(
                "`worker.local_pieces_dir` is ignored when `worker.local_pieces_dirs` is set: \
                 keep only `local_pieces_dirs`"
                    .into(),
            );
        }
        for (i, dir) in self.local_pieces_dirs.iter().flatten().enumerate() {
            if dir.as_os_str().is_empty() {
                out.push(format!("`worker.local_pieces_dirs.{i}` is empty"));
            }
        }
        for (i, pattern) in self.scan_persist_stores.iter().enumerate() {
            if pattern.trim().is_empty() {
                out.push(format!("`worker.scan_persist_stores.{i}` is empty"));
            }
        }
        if self
            .plugin_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            out.push("`worker.plugin_dir` is empty".into());
        }
    }
}
