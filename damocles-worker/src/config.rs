//! `damocles-worker.toml`: the worker's configuration (worker-spec §6), the per-thread merge of
//! the sealing settings (§1.4) and the hot config `<location>/config.toml` (§1.5).
//!
//! Keys, spellings and defaults are damocles'. Where we differ, it is on purpose:
//! - an unknown key is an error that names its dotted path (`sealing_thread.0.sealing.max_retryes`);
//!   damocles ignores typos. The deprecated tables `[remote_store]` and `[attached_selection]` are
//!   accepted and ignored ([`WorkerConfig::deprecated_tables`]);
//! - [`WorkerConfig::validate`] refuses settings that damocles accepts and then misbehaves on
//!   (pitfalls P-8, P-18, P-23, limits and locks of 0, undeclared lock names, unknown limit names,
//!   `staggered` intervals under 1 s, an empty `[[processors.<kind>]]` list), naming every key;
//! - `[[attached]]` may name an objstore `plugin` with its `meta` (our addition), and
//!   `worker.plugin_dir` says where plugins are found;
//! - `plan = "niporep"` does not parse: damocles compiles that planner but can never run it (P-14).
//!
//! Only [`load`] and [`load_hot`] touch the file system. Checks that need it (a store directory
//! exists, a static tree-d file exists, canonical locations differ) belong to start-up.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use vc_processors::layout;

/// The hot config file inside a sealing store (§1.5).
pub const HOT_CONFIG_FILE: &str = "config.toml";
/// Port of the worker RPC server when `worker.rpc_server.port` is unset.
pub const DEFAULT_RPC_SERVER_PORT: u16 = 17890;
/// Address the worker RPC server listens on when `worker.rpc_server.host` is unset.
pub const DEFAULT_RPC_LISTEN_HOST: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
/// Address `damocles-worker worker …` connects to when `worker.rpc_server.host` is unset.
pub const DEFAULT_RPC_CONNECT_HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Scrape address of the metrics exporter when `metrics.http_listen` is unset.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 9000);
/// Load capacity of an external processor without `concurrent` (§1.10).
pub const DEFAULT_EXT_CAPACITY: usize = 64;
/// Processor kinds: the `<kind>` of `[[processors.<kind>]]` (§1.10, §6.7).
pub const PROCESSOR_KINDS: [&str; 11] = [
    "add_pieces",
    "tree_d",
    "pc1",
    "pc2",
    "c2",
    "snap_encode",
    "snap_prove",
    "transfer",
    "unseal",
    "window_post",
    "sealing_daemons",
];
/// Stage names of the limit pool: keys of `processors.limitation.concurrent`,
/// `processors.limitation.staggered` and the legacy `processors.limit` (§1.10).
pub const LIMIT_NAMES: [&str; 12] = [
    "add_pieces",
    "tree_d",
    "pc1",
    "pc2",
    "c1",
    "synth_proof",
    "c2",
    "snap_encode",
    "snap_prove",
    "unseal",
    "transfer",
    "window_post",
];

// ---------------------------------------------------------------------------------------------
// Value types

/// A duration in humantime syntax: `"30s"`, `"1min"`, `"1m30s"`, `"2h 5m"`, `"500ms"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        HumanDuration(Duration::from_secs(secs))
    }

    /// The duration.
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Duration {
        d.0
    }
}

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s.trim())
            .map(HumanDuration)
            .map_err(|e| {
                format!("invalid duration {s:?} (expected e.g. \"30s\", \"1min\", \"1m30s\"): {e}")
            })
    }
}

impl fmt::Display for HumanDuration {
    /// humantime's form: `30s`, `1m 30s`, `3m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A byte amount in `byte_unit` syntax: `"8GiB"`, `"512 MiB"`, `"1.5KiB"`, `"32GB"` (decimal),
/// `"1024"`. Units are case-insensitive; `Ki`/`KiB`… are binary, `K`/`KB`… decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_bytes(s).map(ByteSize)
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the amount exactly (`32GiB`), else bytes (`1000B`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_bytes(self.0))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A sector size: a [`ByteSize`] that is one of [`layout::SECTOR_SIZES`] (`"32GiB"`; `"32GB"` is decimal
/// and refused, as in damocles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SectorSize(pub u64);

impl FromStr for SectorSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let n = parse_bytes(s)?;
        if layout::sector_size_index(n).is_some() {
            Ok(SectorSize(n))
        } else {
            Err(format!(
                "invalid sector size {s:?} ({n} bytes); use 2KiB, 8MiB, 512MiB, 32GiB or 64GiB \
                 (binary units: GB is decimal)"
            ))
        }
    }
}

impl fmt::Display for SectorSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_bytes(self.0))
    }
}

impl Serialize for SectorSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SectorSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = (t[..split].trim(), t[split..].trim());
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "ki" | "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mi" | "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gi" | "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "ti" | "tib" => 1 << 40,
        "p" | "pb" => 1_000_000_000_000_000,
        "pi" | "pib" => 1 << 50,
        _ => return Err(format!("invalid byte size {s:?}: unknown unit {unit:?}")),
    };
    let invalid = || format!("invalid byte size {s:?} (expected e.g. \"8GiB\", \"512MiB\")");
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return Err(invalid());
    }
    let whole: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| invalid())?
    };
    let mut total = whole.checked_mul(mult).ok_or_else(invalid)?;
    if !frac.is_empty() {
        // Fractions are truncated to whole bytes.
        let digits = &frac[..frac.len().min(18)];
        let numerator: u128 = digits.parse().map_err(|_| invalid())?;
        let denominator = 10u128.pow(digits.len() as u32);
        let extra =
            u64::try_from(numerator * u128::from(mult) / denominator).map_err(|_| invalid())?;
        total = total.checked_add(extra).ok_or_else(invalid)?;
    }
    Ok(total)
}

fn format_bytes(n: u64) -> String {
    let units: [(&str, u32); 5] = [
        ("PiB", 50),
        ("TiB", 40),
        ("GiB", 30),
        ("MiB", 20),
        ("KiB", 10),
    ];
    for (unit, shift) in units {
        let size: u64 = 1 << shift;
        if n >= size && n.is_multiple_of(size) {
            return format!("{}{unit}", n >> shift);
        }
    }
    format!("{n}B")
}

/// The planner of a sealing thread (`plan`, §1.3). `niporep` is not accepted: damocles compiles
/// it but never runs it (P-14), so it is refused when the config is read rather than pausing
/// the thread later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    /// Regular PoRep sealing (the default).
    #[default]
    Sealer,
    /// SnapDeal upgrade of a CC sector.
    Snapup,
    /// Re-create lost sealed/cache or update files.
    Rebuild,
    /// Recover a piece from a sealed sector.
    Unseal,
    /// Compute WindowPoSt jobs for the manager (needs no `location`).
    Wdpost,
}

impl Plan {
    /// The config and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Sealer => "sealer",
            Plan::Snapup => "snapup",
            Plan::Rebuild => "rebuild",
            Plan::Unseal => "unseal",
            Plan::Wdpost => "wdpost",
        }
    }

    /// Whether the plan needs a sealing store (`location`); only `wdpost` does not.
    pub fn needs_location(self) -> bool {
        self != Plan::Wdpost
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// The file

/// The whole `damocles-worker.toml` (§6).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerConfig {
    /// `[worker]`: this instance.
    pub worker: WorkerInstanceConfig,
    /// `[metrics]`: the Prometheus exporter.
    pub metrics: MetricsConfig,
    /// `[sector_manager]` (required): how to reach the manager.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sector_manager: Option<SectorManagerConfig>,
    /// `[sealing]`: sealing settings of every thread, over the built-in defaults.
    pub sealing: SealingConfig,
    /// `[[sealing_thread]]` (the key is required; `sealing_thread = []` runs no thread).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealing_thread: Option<Vec<SealingThreadConfig>>,
    /// `[[attached]]`: persist stores (more come from `worker.scan_persist_stores`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attached: Vec<AttachedConfig>,
    /// `[processors]`: limits and external processors.
    pub processors: ProcessorsConfig,
    /// Deprecated `[remote_store]`: accepted and ignored.
    #[serde(skip_serializing)]
    pub remote_store: Option<toml::Value>,
    /// Deprecated `[attached_selection]`: accepted and ignored.
    #[serde(skip_serializing)]
    pub attached_selection: Option<toml::Value>,
}

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

    fn check(&self, out: &mut Vec<String>) {
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

/// `[worker.rpc_server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RpcServerConfig {
    /// IP address to listen on (unset: `0.0.0.0`); CLI commands connect to it (unset:
    /// `127.0.0.1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Port to listen on, also reported to the manager as this worker's address. Default 17890.
    pub port: u16,
}

impl Default for RpcServerConfig {
    fn default() -> Self {
        RpcServerConfig {
            host: None,
            port: DEFAULT_RPC_SERVER_PORT,
        }
    }
}

impl RpcServerConfig {
    /// The address the server listens on.
    pub fn listen_addr(&self) -> Result<SocketAddr> {
        Ok(SocketAddr::new(
            self.host_or(DEFAULT_RPC_LISTEN_HOST)?,
            self.port,
        ))
    }

    /// The address CLI commands connect to.
    pub fn connect_addr(&self) -> Result<SocketAddr> {
        Ok(SocketAddr::new(
            self.host_or(DEFAULT_RPC_CONNECT_HOST)?,
            self.port,
        ))
    }

    fn host_or(&self, default: IpAddr) -> Result<IpAddr> {
        match &self.host {
            None => Ok(default),
            Some(h) => h
                .trim()
                .parse()
                .map_err(|_| anyhow!("`worker.rpc_server.host`: {h:?} is not an IP address")),
        }
    }
}

/// `[metrics]` (§6.2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    /// Install the Prometheus exporter. Default false.
    pub enable: bool,
    /// Scrape address (any path). Unset: `0.0.0.0:9000`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_listen: Option<SocketAddr>,
}

impl MetricsConfig {
    /// The scrape address.
    pub fn listen(&self) -> SocketAddr {
        self.http_listen.unwrap_or(DEFAULT_METRICS_LISTEN)
    }
}

/// `[sector_manager]` (§6.3). `Debug` hides the token.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SectorManagerConfig {
    /// The manager's RPC endpoint.
    pub rpc_client: RpcClientConfig,
    /// Bearer token for piece downloads (`PIECE_FETCHER_TOKEN`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub piece_token: Option<String>,
}

impl fmt::Debug for SectorManagerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SectorManagerConfig")
            .field("rpc_client", &self.rpc_client)
            .field(
                "piece_token",
                &self.piece_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// `[sector_manager.rpc_client]`. `Debug` hides header values.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RpcClientConfig {
    /// Manager address (required): a multiaddr (`/ip4/127.0.0.1/tcp/1789[/http|/https]`) or a
    /// URL (`http://127.0.0.1:1789`); see [`RpcClientConfig::endpoint`].
    pub addr: String,
    /// Extra HTTP headers for requests to the manager, e.g. `Authorization` when the manager's
    /// `[Common.Auth]` is on. damocles parses them but never sends them (P-20).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Longest wait for one answer of the manager (our addition; damocles waits forever, so a
    /// hung manager blocks the thread). Unset: [`DEFAULT_RPC_TIMEOUT`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
}

/// Default of `sector_manager.rpc_client.timeout`.
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(60);

impl fmt::Debug for RpcClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: BTreeMap<&str, &str> = self
            .headers
            .keys()
            .map(|k| (k.as_str(), "<redacted>"))
            .collect();
        f.debug_struct("RpcClientConfig")
            .field("addr", &self.addr)
            .field("headers", &headers)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RpcClientConfig {
    /// The JSON-RPC endpoint (§4.1): `<scheme>://<host>:<port>/rpc/v0`. A URL's path is dropped;
    /// an IPv6 multiaddr host is bracketed (damocles forgets to); `ws`/`wss` become
    /// `http`/`https`, since the client speaks HTTP.
    pub fn endpoint(&self) -> Result<String> {
        let addr = self.addr.trim();
        match (multiaddr_origin(addr), url_origin(addr)) {
            (Ok(origin), _) | (_, Ok(origin)) => Ok(format!("{origin}/rpc/v0")),
            (Err(m), Err(u)) => Err(anyhow!(
                "{addr:?} is neither a multiaddr ({m}) nor a URL ({u})"
            )),
        }
    }
}

fn multiaddr_origin(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.split('/').collect();
    if parts.first() != Some(&"") {
        return Err("it does not start with `/`".into());
    }
    let shape = "expected /ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>[/http|/https]";
    let (proto, host, tcp, port, scheme) = match &parts[1..] {
        [p, h, t, port] => (*p, *h, *t, *port, "http"),
        [p, h, t, port, scheme] => (*p, *h, *t, *port, *scheme),
        _ => return Err(shape.into()),
    };
    if tcp != "tcp" {
        return Err(shape.into());
    }
    let port: u16 = port.parse().map_err(|_| format!("invalid port {port:?}"))?;
    let host = match proto {
        "ip4" => host
            .parse::<Ipv4Addr>()
            .map_err(|_| format!("invalid IPv4 address {host:?}"))?
            .to_string(),
        "ip6" => format!(
            "[{}]",
            host.parse::<Ipv6Addr>()
                .map_err(|_| format!("invalid IPv6 address {host:?}"))?
        ),
        "dns" | "dns4" | "dns6" => {
            if host.is_empty() {
                return Err("empty host".into());
            }
            host.to_string()
        }
        _ => return Err(shape.into()),
    };
    let scheme = match scheme {
        "http" | "ws" => "http",
        "https" | "wss" => "https",
        other => return Err(format!("unsupported protocol {other:?}")),
    };
    Ok(format!("{scheme}://{host}:{port}"))
}

fn url_origin(s: &str) -> Result<String, String> {
    let (scheme, rest) = s
        .split_once("://")
        .ok_or("no scheme (expected e.g. http://127.0.0.1:1789)")?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => "http",
        "https" | "wss" => "https",
        _ => return Err(format!("unsupported scheme {scheme:?}")),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err("expected <scheme>://<host>[:<port>]".into());
    }
    if !authority.ends_with(']') {
        if let Some((_, port)) = authority.rsplit_once(':') {
            port.parse::<u16>()
                .map_err(|_| format!("invalid port {port:?}"))?;
        }
    }
    Ok(format!("{scheme}://{authority}"))
}

// ---------------------------------------------------------------------------------------------
// Sealing settings and the per-thread merge (§1.4, §6.4)

/// Sealing settings (§6.4): `[sealing]` over the built-in defaults, and the effective settings
/// of a thread after [`SealingThreadConfig::effective`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SealingConfig {
    /// Miners to seal for (`AllowedMiners`); empty: any.
    pub allowed_miners: Vec<u64>,
    /// Sector sizes to seal (expanded by [`SealingConfig::allowed_proof_types`]); empty: any.
    pub allowed_sizes: Vec<SectorSize>,
    /// Ask the manager for deals in the sealer's `Allocated` state. Default false. Unlike
    /// damocles (P-3), this does not decide whether deal pieces can be fetched: a snapup
    /// thread, or a thread that enables deals here or in its hot config, always can.
    pub enable_deals: bool,
    /// With deals enabled, wait for deals instead of sealing a CC sector. Default false.
    pub disable_cc: bool,
    /// Most deals per sector (`AcquireDealsSpec.MaxDeals`); unset: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_deals: Option<usize>,
    /// Least deal space per sector (`AcquireDealsSpec.MinUsedSpace`); unset: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_deal_space: Option<ByteSize>,
    /// Temporary failures tolerated per sector (and per wdpost job). Default 5.
    pub max_retries: u32,
    /// Pause between sectors and between idle rounds. Default 30s.
    pub seal_interval: HumanDuration,
    /// Wait before retrying a temporary failure, and between idle polls. Default 60s (the
    /// damocles docs say 30s; the code uses 60s).
    pub recover_interval: HumanDuration,
    /// Polling period of `PollPreCommitState`, `PollProofState` and `StoreReserveSpace`.
    /// Default 180s.
    pub rpc_polling_interval: HumanDuration,
    /// Skip `PollProofState` after `SubmitProof`. Default false.
    pub ignore_proof_check: bool,
    /// Idle answers tolerated before a round ends (§1.6). Default 3.
    pub request_task_max_retries: u32,
    /// Run C1 with a zero seed after PC2 as a check (sealer). Default false.
    pub verify_after_pc2: bool,
}

impl Default for SealingConfig {
    fn default() -> Self {
        SealingConfig {
            allowed_miners: Vec::new(),
            allowed_sizes: Vec::new(),
            enable_deals: false,
            disable_cc: false,
            max_deals: None,
            min_deal_space: None,
            max_retries: 5,
            seal_interval: HumanDuration::from_secs(30),
            recover_interval: HumanDuration::from_secs(60),
            rpc_polling_interval: HumanDuration::from_secs(180),
            ignore_proof_check: false,
            request_task_max_retries: 3,
            verify_after_pc2: false,
        }
    }
}

impl SealingConfig {
    /// These settings with every key set in `o` replaced (§1.4: field by field).
    pub fn overlay(&self, o: &SealingOverlay) -> SealingConfig {
        SealingConfig {
            allowed_miners: o
                .allowed_miners
                .as_ref()
                .unwrap_or(&self.allowed_miners)
                .clone(),
            allowed_sizes: o
                .allowed_sizes
                .as_ref()
                .unwrap_or(&self.allowed_sizes)
                .clone(),
            enable_deals: o.enable_deals.unwrap_or(self.enable_deals),
            disable_cc: o.disable_cc.unwrap_or(self.disable_cc),
            max_deals: o.max_deals.or(self.max_deals),
            min_deal_space: o.min_deal_space.or(self.min_deal_space),
            max_retries: o.max_retries.unwrap_or(self.max_retries),
            seal_interval: o.seal_interval.unwrap_or(self.seal_interval),
            recover_interval: o.recover_interval.unwrap_or(self.recover_interval),
            rpc_polling_interval: o.rpc_polling_interval.unwrap_or(self.rpc_polling_interval),
            ignore_proof_check: o.ignore_proof_check.unwrap_or(self.ignore_proof_check),
            request_task_max_retries: o
                .request_task_max_retries
                .unwrap_or(self.request_task_max_retries),
            verify_after_pc2: o.verify_after_pc2.unwrap_or(self.verify_after_pc2),
        }
    }

    /// `AllowedProofTypes` (`abi.RegisteredSealProof` integers): each allowed size gives its
    /// V1_1, V1_1 synthetic-PoRep and V1_2 NI-PoRep types, in that order (§1.4). Empty: any.
    pub fn allowed_proof_types(&self) -> Vec<i64> {
        self.allowed_sizes
            .iter()
            .filter_map(|s| layout::sector_size_index(s.0))
            .flat_map(|i| {
                let i = i as i64;
                [5 + i, 10 + i, 15 + i]
            })
            .collect()
    }

    fn check(&self, prefix: &str, out: &mut Vec<String>) {
        check_intervals(
            prefix,
            Some(self.recover_interval),
            Some(self.rpc_polling_interval),
            out,
        );
    }
}

/// Sealing keys that override the ones below them: `[[sealing_thread]].sealing` and the hot
/// config's `sealing`. Same keys and meanings as [`SealingConfig`]; unset keys inherit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SealingOverlay {
    /// See [`SealingConfig::allowed_miners`]; `[]` lifts an inherited restriction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_miners: Option<Vec<u64>>,
    /// See [`SealingConfig::allowed_sizes`]; `[]` lifts an inherited restriction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_sizes: Option<Vec<SectorSize>>,
    /// See [`SealingConfig::enable_deals`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_deals: Option<bool>,
    /// See [`SealingConfig::disable_cc`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_cc: Option<bool>,
    /// See [`SealingConfig::max_deals`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_deals: Option<usize>,
    /// See [`SealingConfig::min_deal_space`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_deal_space: Option<ByteSize>,
    /// See [`SealingConfig::max_retries`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// See [`SealingConfig::seal_interval`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seal_interval: Option<HumanDuration>,
    /// See [`SealingConfig::recover_interval`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recover_interval: Option<HumanDuration>,
    /// See [`SealingConfig::rpc_polling_interval`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpc_polling_interval: Option<HumanDuration>,
    /// See [`SealingConfig::ignore_proof_check`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignore_proof_check: Option<bool>,
    /// See [`SealingConfig::request_task_max_retries`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_task_max_retries: Option<u32>,
    /// See [`SealingConfig::verify_after_pc2`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_after_pc2: Option<bool>,
}

impl SealingOverlay {
    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        *self == SealingOverlay::default()
    }

    fn check(&self, prefix: &str, out: &mut Vec<String>) {
        check_intervals(
            prefix,
            self.recover_interval,
            self.rpc_polling_interval,
            out,
        );
    }
}

fn check_intervals(
    prefix: &str,
    recover: Option<HumanDuration>,
    polling: Option<HumanDuration>,
    out: &mut Vec<String>,
) {
    for (name, value) in [
        ("recover_interval", recover),
        ("rpc_polling_interval", polling),
    ] {
        if value.is_some_and(|d| d.0.is_zero()) {
            out.push(format!(
                "`{prefix}.{name}` must not be 0: the thread would poll the manager in a busy loop"
            ));
        }
    }
}

/// `[[sealing_thread]]` (§6.5): one sealing thread.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SealingThreadConfig {
    /// The sealing store directory; required by every plan but `wdpost`. Created at start-up
    /// if missing (its parent must exist). Holds the hot config `config.toml`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<PathBuf>,
    /// The planner; unset: `sealer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// Overrides of `[sealing]` for this thread.
    #[serde(skip_serializing_if = "SealingOverlay::is_empty")]
    pub sealing: SealingOverlay,
}

impl SealingThreadConfig {
    /// The thread's effective settings (§1.4, §1.5): `global` (`[sealing]` over the defaults),
    /// overlaid by this thread's `sealing`, overlaid by the hot config's `sealing` when there is
    /// one; the plan is the hot config's, else the thread's, else `sealer`.
    pub fn effective(&self, global: &SealingConfig, hot: Option<&HotConfig>) -> EffectiveThread {
        let mut sealing = global.overlay(&self.sealing);
        let mut plan = self.plan.unwrap_or_default();
        if let Some(hot) = hot {
            sealing = sealing.overlay(&hot.sealing);
            plan = hot.plan.unwrap_or(plan);
        }
        EffectiveThread {
            location: self.location.clone(),
            plan,
            sealing,
        }
    }
}

/// What a sealing thread runs with after the merge.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveThread {
    /// The sealing store (never changed by the hot config).
    pub location: Option<PathBuf>,
    /// The planner.
    pub plan: Plan,
    /// The merged sealing settings.
    pub sealing: SealingConfig,
}

impl EffectiveThread {
    /// Refuses merged settings damocles would run into a wall with: a plan that needs a store
    /// without one (P-18), and `disable_cc` without `enable_deals` on a sealer, which allocates
    /// a sector and then waits for deals forever (P-8). Use it after applying a hot config.
    pub fn check(&self) -> Result<()> {
        if self.plan.needs_location() && self.location.is_none() {
            bail!(
                "plan `{}` needs a `location` (only `wdpost` threads run without a sealing store)",
                self.plan
            );
        }
        if self.plan == Plan::Sealer && self.sealing.disable_cc && !self.sealing.enable_deals {
            bail!(
                "`disable_cc = true` without `enable_deals = true`: the sealer would allocate a \
                 sector and wait for deals forever"
            );
        }
        Ok(())
    }
}

/// The hot config `<location>/config.toml` (§1.5): `[[sealing_thread]]` without `location`.
/// Re-read between sectors; a plan change applies to the next sector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HotConfig {
    /// Replaces the thread's plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// Overrides over the thread's settings.
    #[serde(skip_serializing_if = "SealingOverlay::is_empty")]
    pub sealing: SealingOverlay,
}

impl HotConfig {
    /// Parses and checks a hot config text; `origin` names it in errors. Unknown keys
    /// (including `location`) are errors.
    pub fn from_str_named(text: &str, origin: &str) -> Result<HotConfig> {
        let hot: HotConfig = parse_toml(text, origin, hot_hint)?;
        let mut out = Vec::new();
        hot.sealing.check("sealing", &mut out);
        if !out.is_empty() {
            return Err(problems_error(&out))
                .with_context(|| format!("{origin}: invalid hot config"));
        }
        Ok(hot)
    }
}

/// The hot config path of a sealing store.
pub fn hot_config_path(location: &Path) -> PathBuf {
    location.join(HOT_CONFIG_FILE)
}

/// Reads `<location>/config.toml`: `None` if there is no such file.
pub fn load_hot(location: &Path) -> Result<Option<HotConfig>> {
    let path = hot_config_path(location);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("reading the hot config {}", path.display()))
            )
        }
    };
    HotConfig::from_str_named(&text, &path.display().to_string()).map(Some)
}

// ---------------------------------------------------------------------------------------------
// Stores

/// `[[attached]]` (§6.6): a persist store. `Debug` hides `meta` values that look like secrets.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AttachedConfig {
    /// Instance name; must equal the manager's name of the store. Unset: the canonical path of
    /// `location`. Required with `plugin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Required. Without `plugin`: an existing directory (this machine's mount of the store).
    /// With `plugin`: the store's path as the plugin understands it (informational for S3).
    pub location: PathBuf,
    /// Never offered as a persist candidate (still usable to read from). Default false.
    pub readonly: bool,
    /// Our addition: the objstore plugin implementing this store (`"s3"`, `"fs"`, …), loaded
    /// from `worker.plugin_dir`, so sector files are persisted straight into it. Unset: the
    /// directory at `location`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// Our addition: the plugin's settings (strings only), as in the manager's `Meta` of this
    /// store (for S3: `Bucket`, `Endpoint`, `Region`, `Prefix`, …). Only used with `plugin`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

impl fmt::Debug for AttachedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let meta: BTreeMap<&str, &str> = self
            .meta
            .iter()
            .map(|(k, v)| {
                let lower = k.to_ascii_lowercase();
                let secret = ["secret", "token", "password", "key"]
                    .iter()
                    .any(|w| lower.contains(w));
                (k.as_str(), if secret { "<redacted>" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("AttachedConfig")
            .field("name", &self.name)
            .field("location", &self.location)
            .field("readonly", &self.readonly)
            .field("plugin", &self.plugin)
            .field("meta", &meta)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Processors (§1.10, §6.7)

/// `[processors]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessorsConfig {
    /// Legacy per-stage concurrency (`processors.limit.<stage>`), used only when
    /// `limitation.concurrent` is absent; setting both is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<BTreeMap<String, usize>>,
    /// Per-stage limits.
    pub limitation: LimitationConfig,
    /// Named counting locks (`ext_locks.<name> = <count>`) that external processors hold
    /// through their `locks`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ext_locks: BTreeMap<String, usize>,
    /// Pre-built tree-d files for CC sectors, keyed by sector size
    /// (`32GiB = "/path/sc-02-data-tree-d.dat"`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub static_tree_d: BTreeMap<String, PathBuf>,
    /// `[[processors.add_pieces]]`; absent: in-process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub add_pieces: Option<Vec<ExtProcessorConfig>>,
    /// `[[processors.tree_d]]`; absent: in-process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree_d: Option<Vec<ExtProcessorConfig>>,
    /// `[[processors.pc1]]`; absent: in-process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pc1: Option<Vec<ExtProcessorConfig>>,
    /// `[[processors.pc2]]`; absent: in-process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pc2: Option<Vec<ExtProcessorConfig>>,
    /// `[[processors.c2]]`; absent: in-process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub c2: Option<Vec<ExtProcessorConfig>>,
    /// `[[processors.snap_encode]]`; absent: in-process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snap_encode: Option<Vec<ExtProcessorConfig>>,
    /// `[[processors.snap_prove]]`; absent: in-process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snap_prove: Option<Vec<ExtProcessorConfig>>,
    /// `[[processors.transfer]]`; absent: in-process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer: Option<Vec<ExtProcessorConfig>>,
    /// `[[processors.unseal]]`; absent: in-process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unseal: Option<Vec<ExtProcessorConfig>>,
    /// `[[processors.window_post]]`; absent: in-process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_post: Option<Vec<ExtProcessorConfig>>,
    /// `[[processors.sealing_daemons]]`: children that are only kept running (they get no
    /// task, and must print `EMPTY processor ready`); `bin` is required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealing_daemons: Option<Vec<ExtProcessorConfig>>,
    /// `[processors.priority]` (ours): CPU priority of sealing work against WindowPoSt.
    pub priority: PriorityConfig,
}

/// The processor kinds whose work is WindowPoSt; every other kind is sealing work.
pub const POST_KINDS: [&str; 1] = ["window_post"];

/// Stages held back while this worker proves a WindowPoSt job
/// (`processors.priority.hold_sealing_during_post`): the ones that keep every core busy.
pub const HEAVY_STAGES: [&str; 5] = ["pc1", "pc2", "c2", "snap_encode", "snap_prove"];

/// `[processors.priority]` (ours; damocles has none): a missed WindowPoSt costs a fault fee and
/// the sector's power, a sealing stage that runs a little slower costs nothing, so sealing
/// yields the CPU to PoSt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PriorityConfig {
    /// Nice value (0..=19) of sealing work: the sealing threads, the proof libraries' thread
    /// pools of this process and every processor child of a sealing kind. Default 5: a nice-0
    /// process (PoSt) competing for a core gets three times the CPU of sealing (weights 1024
    /// and 335), while sealing still gets a quarter of a core another nice-0 program keeps
    /// busy (at 10 that fell to a tenth: a 2 KiB C2 took 13 minutes beside two busy loops).
    /// 0 turns it off.
    pub sealing_nice: i32,
    /// Nice value (-20..=19) of `window_post` processor children. Default 0; below 0 needs
    /// `CAP_SYS_NICE`.
    pub post_nice: i32,
    /// While a `wdpost` thread of this worker holds a job, new pc1, pc2, c2, snap_encode and
    /// snap_prove tasks wait (the ones already running go on). Default true.
    pub hold_sealing_during_post: bool,
}

impl Default for PriorityConfig {
    fn default() -> Self {
        PriorityConfig {
            sealing_nice: 5,
            post_nice: 0,
            hold_sealing_during_post: true,
        }
    }
}

impl PriorityConfig {
    /// The nice of a processor child of `kind` configured as `ext` (its own `nice` wins);
    /// `None`, the nice it inherits, when the priority is off (`sealing_nice` = 0).
    pub fn nice_for(&self, kind: &str, ext: &ExtProcessorConfig) -> Option<i32> {
        if let Some(n) = ext.nice {
            return Some(n);
        }
        if self.sealing_nice == 0 {
            None
        } else if POST_KINDS.contains(&kind) {
            Some(self.post_nice)
        } else {
            Some(self.sealing_nice)
        }
    }

    fn check(&self, out: &mut Vec<String>) {
        if !(0..=19).contains(&self.sealing_nice) {
            out.push(format!(
                "`processors.priority.sealing_nice` = {} must be within 0..=19 (0: off)",
                self.sealing_nice
            ));
        }
        if !(-20..=19).contains(&self.post_nice) {
            out.push(format!(
                "`processors.priority.post_nice` = {} must be within -20..=19",
                self.post_nice
            ));
        } else if self.sealing_nice != 0 && self.post_nice >= self.sealing_nice {
            out.push(format!(
                "`processors.priority.post_nice` = {} would give WindowPoSt no priority over \
                 sealing (`sealing_nice` = {}): make it lower",
                self.post_nice, self.sealing_nice
            ));
        }
    }
}

impl ProcessorsConfig {
    /// The external processors of `kind` (one of [`PROCESSOR_KINDS`]); `None`: in-process (or
    /// not a kind).
    pub fn ext(&self, kind: &str) -> Option<&[ExtProcessorConfig]> {
        let list = match kind {
            "add_pieces" => &self.add_pieces,
            "tree_d" => &self.tree_d,
            "pc1" => &self.pc1,
            "pc2" => &self.pc2,
            "c2" => &self.c2,
            "snap_encode" => &self.snap_encode,
            "snap_prove" => &self.snap_prove,
            "transfer" => &self.transfer,
            "unseal" => &self.unseal,
            "window_post" => &self.window_post,
            "sealing_daemons" => &self.sealing_daemons,
            _ => return None,
        };
        list.as_deref()
    }

    /// Mutable access to the external processors of `kind` (e.g. to add `PIECE_FETCHER_TOKEN`
    /// to the `add_pieces` children, §1.2 step 2).
    pub fn ext_mut(&mut self, kind: &str) -> Option<&mut Vec<ExtProcessorConfig>> {
        let list = match kind {
            "add_pieces" => &mut self.add_pieces,
            "tree_d" => &mut self.tree_d,
            "pc1" => &mut self.pc1,
            "pc2" => &mut self.pc2,
            "c2" => &mut self.c2,
            "snap_encode" => &mut self.snap_encode,
            "snap_prove" => &mut self.snap_prove,
            "transfer" => &mut self.transfer,
            "unseal" => &mut self.unseal,
            "window_post" => &mut self.window_post,
            "sealing_daemons" => &mut self.sealing_daemons,
            _ => return None,
        };
        list.as_mut()
    }

    /// Per-stage concurrency: `limitation.concurrent`, else the legacy `limit`, else none.
    pub fn concurrent_limits(&self) -> BTreeMap<String, usize> {
        self.limitation
            .concurrent
            .as_ref()
            .or(self.limit.as_ref())
            .cloned()
            .unwrap_or_default()
    }

    /// `static_tree_d` keyed by sector size in bytes.
    pub fn static_tree_d(&self) -> Result<BTreeMap<u64, PathBuf>> {
        self.static_tree_d
            .iter()
            .map(|(key, path)| {
                let size: SectorSize = key
                    .parse()
                    .map_err(|e| anyhow!("`processors.static_tree_d.{key}`: {e}"))?;
                Ok((size.0, path.clone()))
            })
            .collect()
    }

    fn check(&self, out: &mut Vec<String>) {
        if self.limit.is_some() && self.limitation.concurrent.is_some() {
            out.push(
                "`processors.limit` (legacy) is ignored when `processors.limitation.concurrent` \
                 is set: move its entries there"
                    .into(),
            );
        }
        let concurrent = [
            ("processors.limit", self.limit.as_ref()),
            (
                "processors.limitation.concurrent",
                self.limitation.concurrent.as_ref(),
            ),
        ];
        for (table, map) in concurrent {
            for (name, n) in map.into_iter().flatten() {
                check_limit_name(table, name, out);
                if *n == 0 {
                    out.push(format!(
                        "`{table}.{name}` = 0 would block the stage forever (remove it for no limit)"
                    ));
                }
            }
        }
        for (name, interval) in &self.limitation.staggered {
            let table = "processors.limitation.staggered";
            check_limit_name(table, name, out);
            if interval.0 < Duration::from_secs(1) {
                out.push(format!(
                    "`{table}.{name}` = \"{interval}\" must be at least 1s"
                ));
            }
        }
        for (name, n) in &self.ext_locks {
            if *n == 0 {
                out.push(format!(
                    "`processors.ext_locks.{name}` = 0 would block its holders forever"
                ));
            }
        }
        let mut sizes = BTreeMap::new();
        for (key, path) in &self.static_tree_d {
            match key.parse::<SectorSize>() {
                Err(e) => out.push(format!("`processors.static_tree_d.{key}`: {e}")),
                Ok(size) => {
                    if let Some(other) = sizes.insert(size, key) {
                        out.push(format!(
                            "`processors.static_tree_d.{key}`: the same size as `{other}`"
                        ));
                    }
                }
            }
            if path.as_os_str().is_empty() {
                out.push(format!("`processors.static_tree_d.{key}` is empty"));
            }
        }
        self.priority.check(out);
        for kind in PROCESSOR_KINDS {
            let Some(list) = self.ext(kind) else {
                continue;
            };
            if list.is_empty() {
                out.push(format!(
                    "`processors.{kind}` is an empty list: remove it to run {kind} inside the \
                     worker, or add `[[processors.{kind}]]` blocks"
                ));
            }
            for (i, ext) in list.iter().enumerate() {
                ext.check(
                    kind,
                    &format!("processors.{kind}.{i}"),
                    &self.ext_locks,
                    out,
                );
            }
        }
    }
}

fn check_limit_name(table: &str, name: &str, out: &mut Vec<String>) {
    if !LIMIT_NAMES.contains(&name) {
        out.push(format!(
            "`{table}.{name}`: unknown stage {name:?} (stages: {})",
            LIMIT_NAMES.join(", ")
        ));
    }
}

/// `[processors.limitation]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitationConfig {
    /// Most tasks of a stage at once (`<stage> = <count>`, stages of [`LIMIT_NAMES`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrent: Option<BTreeMap<String, usize>>,
    /// Least spacing between task starts of a stage (`<stage> = "<duration>"`, at least 1s; a
    /// finished task frees its slot at once).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub staggered: BTreeMap<String, HumanDuration>,
}

/// One `[[processors.<kind>]]` block: an external processor child (§1.10).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExtProcessorConfig {
    /// Program to start. Unset: the worker's own executable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bin: Option<PathBuf>,
    /// Its arguments. Unset: `["processor", "<kind>"]`, even when `bin` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Extra environment variables (they win over inherited and placement variables).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub envs: BTreeMap<String, String>,
    /// Start from the worker's environment (else from an empty one). Default true.
    pub inherit_envs: bool,
    /// Longest wait for the child's ready line. Default 5s.
    pub stable_wait: HumanDuration,
    /// cgroup placement of the child; applied only when `cgroup.cpuset` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<CgroupConfig>,
    /// Preferred NUMA node of the child (`VENUS_WORKER_NUMA_PREFERRED`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numa_preferred: Option<i32>,
    /// Most tasks in flight on this child. Unset: unbounded (load capacity 64).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrent: Option<usize>,
    /// Names of `[processors.ext_locks]` held while a task runs here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locks: Vec<String>,
    /// Restart the child when it exits. Default true.
    pub auto_restart: bool,
    /// Nice value of the child (ours). Unset: `processors.priority.post_nice` for
    /// `window_post`, `processors.priority.sealing_nice` for the other kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nice: Option<i32>,
}

impl Default for ExtProcessorConfig {
    fn default() -> Self {
        ExtProcessorConfig {
            bin: None,
            args: None,
            envs: BTreeMap::new(),
            inherit_envs: true,
            stable_wait: HumanDuration::from_secs(5),
            cgroup: None,
            numa_preferred: None,
            concurrent: None,
            locks: Vec::new(),
            auto_restart: true,
            nice: None,
        }
    }
}

impl ExtProcessorConfig {
    /// The child's arguments for processor kind `kind`.
    pub fn args_for(&self, kind: &str) -> Vec<String> {
        match &self.args {
            Some(args) => args.clone(),
            None => vec!["processor".to_string(), kind.to_string()],
        }
    }

    /// Load capacity used to choose among children: `concurrent`, else 64.
    pub fn capacity(&self) -> usize {
        self.concurrent.unwrap_or(DEFAULT_EXT_CAPACITY)
    }

    fn check(
        &self,
        kind: &str,
        key: &str,
        ext_locks: &BTreeMap<String, usize>,
        out: &mut Vec<String>,
    ) {
        match &self.bin {
            Some(bin) if bin.as_os_str().is_empty() => out.push(format!("`{key}.bin` is empty")),
            None if kind == "sealing_daemons" => out.push(format!(
                "`{key}.bin` is required: damocles-worker has no `processor sealing_daemons` command"
            )),
            _ => {}
        }
        if self.concurrent == Some(0) {
            out.push(format!(
                "`{key}.concurrent` = 0 would never run a task (remove it for no limit)"
            ));
        }
        if self.stable_wait.0.is_zero() {
            out.push(format!("`{key}.stable_wait` must not be 0"));
        }
        if self.numa_preferred.is_some_and(|n| n < 0) {
            out.push(format!(
                "`{key}.numa_preferred` must be a NUMA node index (0, 1, …)"
            ));
        }
        if let Some(cg) = &self.cgroup {
            if cg.group_name.trim().is_empty() {
                out.push(format!("`{key}.cgroup.group_name` is empty"));
            }
            if cg.cpuset.as_deref().is_some_and(|c| c.trim().is_empty()) {
                out.push(format!(
                    "`{key}.cgroup.cpuset` is empty (remove it for no cgroup)"
                ));
            }
        }
        if let Some(n) = self.nice.filter(|n| !(-20..=19).contains(n)) {
            out.push(format!("`{key}.nice` = {n} must be within -20..=19"));
        }
        for (i, lock) in self.locks.iter().enumerate() {
            if !ext_locks.contains_key(lock) {
                out.push(format!(
                    "`{key}.locks.{i}`: lock {lock:?} is not declared in `[processors.ext_locks]`"
                ));
            }
        }
        for name in self.envs.keys() {
            if name.is_empty() || name.contains(['=', '\0']) {
                out.push(format!("`{key}.envs`: invalid variable name {name:?}"));
            }
        }
    }
}

/// `[processors.<kind>.cgroup]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CgroupConfig {
    /// Parent cgroup of the child's cgroup. Default `vc-worker`.
    pub group_name: String,
    /// CPU list (`"0-7,16"`); the cgroup is applied only when this is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuset: Option<String>,
}

impl Default for CgroupConfig {
    fn default() -> Self {
        CgroupConfig {
            group_name: "vc-worker".to_string(),
            cpuset: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Loading and validation

/// Reads, parses and validates a config file.
pub fn load(path: &Path) -> Result<WorkerConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the config {}", path.display()))?;
    from_str_named(&text, &path.display().to_string())
}

/// Parses and validates a config text; `name` (a file name) prefixes every error.
pub fn from_str_named(text: &str, name: &str) -> Result<WorkerConfig> {
    let cfg = parse_named(text, name)?;
    cfg.validate()
        .with_context(|| format!("{name}: invalid configuration"))?;
    Ok(cfg)
}

/// Parses a config text without [`WorkerConfig::validate`]. Unknown keys are errors.
pub fn parse_named(text: &str, name: &str) -> Result<WorkerConfig> {
    parse_toml(text, name, config_hint)
}

impl WorkerConfig {
    /// Every problem serde cannot see, each naming its key; empty when the config is usable.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.worker.check(&mut out);
        match &self.sector_manager {
            None => out.push(
                "`[sector_manager]` is required, with `rpc_client.addr` (the manager's address)"
                    .into(),
            ),
            Some(sm) => {
                if sm.rpc_client.addr.trim().is_empty() {
                    out.push(
                        "`sector_manager.rpc_client.addr` is required: the manager's address, \
                         e.g. \"/ip4/127.0.0.1/tcp/1789\""
                            .into(),
                    );
                } else if let Err(e) = sm.rpc_client.endpoint() {
                    out.push(format!("`sector_manager.rpc_client.addr`: {e}"));
                }
                if sm
                    .piece_token
                    .as_deref()
                    .is_some_and(|t| t.trim().is_empty())
                {
                    out.push("`sector_manager.piece_token` is empty".into());
                }
            }
        }
        self.sealing.check("sealing", &mut out);
        self.check_threads(&mut out);
        self.check_attached(&mut out);
        self.processors.check(&mut out);
        out
    }

    /// Checks what serde cannot; the error lists every problem with its key.
    pub fn validate(&self) -> Result<()> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems_error(&problems))
        }
    }

    fn check_threads(&self, out: &mut Vec<String>) {
        let Some(threads) = &self.sealing_thread else {
            out.push(
                "`sealing_thread` is missing: add `[[sealing_thread]]` blocks \
                 (`sealing_thread = []` runs no thread)"
                    .into(),
            );
            return;
        };
        let mut locations: BTreeMap<PathBuf, usize> = BTreeMap::new();
        for (i, thread) in threads.iter().enumerate() {
            let key = format!("sealing_thread.{i}");
            let plan = thread.plan.unwrap_or_default();
            match &thread.location {
                None if plan.needs_location() => out.push(format!(
                    "`{key}.location` is required for plan `{plan}` (only `wdpost` threads run \
                     without a sealing store)"
                )),
                None => {}
                Some(loc) if loc.as_os_str().is_empty() => {
                    out.push(format!("`{key}.location` is empty"));
                }
                // damocles skips a repeated location, which shifts thread indices (P-23).
                Some(loc) => match locations.entry(loc.components().collect()) {
                    Entry::Occupied(first) => out.push(format!(
                        "`{key}.location`: {} is already the store of `sealing_thread.{}`",
                        loc.display(),
                        first.get()
                    )),
                    Entry::Vacant(slot) => {
                        slot.insert(i);
                    }
                },
            }
            thread.sealing.check(&format!("{key}.sealing"), out);
            let effective = self.sealing.overlay(&thread.sealing);
            if plan == Plan::Sealer && effective.disable_cc && !effective.enable_deals {
                let at = if thread.sealing.disable_cc.is_some() {
                    format!("{key}.sealing.disable_cc")
                } else {
                    "sealing.disable_cc".to_string()
                };
                out.push(format!(
                    "`{at}` = true without `enable_deals` for `{key}`: the sealer would allocate \
                     a sector and wait for deals forever"
                ));
            }
        }
    }

    fn check_attached(&self, out: &mut Vec<String>) {
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        for (i, store) in self.attached.iter().enumerate() {
            let key = format!("attached.{i}");
            if store.location.as_os_str().is_empty() {
                out.push(format!("`{key}.location` is required"));
            }
            if store.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                out.push(format!(
                    "`{key}.name` is empty (remove it to use the location's path)"
                ));
            }
            match &store.plugin {
                Some(p) if p.trim().is_empty() => out.push(format!("`{key}.plugin` is empty")),
                Some(_) if store.name.is_none() => out.push(format!(
                    "`{key}.name` is required with `plugin`: the manager's name of this store"
                )),
                None if !store.meta.is_empty() => {
                    out.push(format!("`{key}.meta` is only used with `plugin`"))
                }
                _ => {}
            }
            // Unnamed stores are named by their canonical path at start-up; the literal path
            // catches the obvious repeats here.
            let instance = match &store.name {
                Some(name) => name.clone(),
                None => store
                    .location
                    .components()
                    .collect::<PathBuf>()
                    .display()
                    .to_string(),
            };
            match names.entry(instance) {
                Entry::Occupied(first) => out.push(format!(
                    "`{key}.name`: duplicate store name {:?} (also `attached.{}`)",
                    first.key(),
                    first.get()
                )),
                Entry::Vacant(slot) => {
                    slot.insert(i);
                }
            }
        }
    }

    /// The `[sector_manager]` table (an error if missing).
    pub fn manager(&self) -> Result<&SectorManagerConfig> {
        self.sector_manager
            .as_ref()
            .ok_or_else(|| anyhow!("`[sector_manager]` is required"))
    }

    /// The `[[sealing_thread]]` entries.
    pub fn threads(&self) -> &[SealingThreadConfig] {
        self.sealing_thread.as_deref().unwrap_or_default()
    }

    /// The effective settings of thread `index` (see [`SealingThreadConfig::effective`]).
    pub fn effective_thread(
        &self,
        index: usize,
        hot: Option<&HotConfig>,
    ) -> Option<EffectiveThread> {
        self.threads()
            .get(index)
            .map(|thread| thread.effective(&self.sealing, hot))
    }

    /// Deprecated tables present in the file (ignored; the daemon should warn once each).
    pub fn deprecated_tables(&self) -> Vec<&'static str> {
        let mut tables = Vec::new();
        if self.remote_store.is_some() {
            tables.push("remote_store");
        }
        if self.attached_selection.is_some() {
            tables.push("attached_selection");
        }
        tables
    }

    /// The config as TOML (deprecated tables are dropped).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).context("serialising the worker config")
    }
}

fn problems_error(problems: &[String]) -> anyhow::Error {
    let n = problems.len();
    anyhow!(
        "{n} problem{}:\n  - {}",
        if n == 1 { "" } else { "s" },
        problems.join("\n  - ")
    )
}

/// Parses TOML into `T`, refusing unknown keys (reported by dotted path, with `hint`s).
fn parse_toml<T: DeserializeOwned>(
    text: &str,
    origin: &str,
    hint: fn(&str) -> Option<&'static str>,
) -> Result<T> {
    let de = toml::Deserializer::parse(text).map_err(|e| de_error(&e, text, origin))?;
    let mut unknown: Vec<String> = Vec::new();
    let value: T = serde_ignored::deserialize(de, |path| {
        let path = path.to_string().replace(".?", "");
        unknown.push(path.strip_prefix("?.").unwrap_or(&path).to_string());
    })
    .map_err(|e| de_error(&e, text, origin))?;
    if unknown.is_empty() {
        return Ok(value);
    }
    let list = unknown
        .iter()
        .map(|key| match hint(key) {
            Some(h) => format!("`{key}` ({h})"),
            None => format!("`{key}`"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    Err(anyhow!(
        "{origin}: unknown key{} {list}",
        if unknown.len() == 1 { "" } else { "s" }
    ))
}

fn config_hint(key: &str) -> Option<&'static str> {
    if key == "processors.synth_proof" || key.starts_with("processors.synth_proof.") {
        Some("synthetic proofs always run inside the worker; `synth_proof` is only a limit name")
    } else if key.starts_with("processors.limitation.") {
        Some("`processors.limitation` holds `concurrent` and `staggered`")
    } else {
        None
    }
}

fn hot_hint(key: &str) -> Option<&'static str> {
    if key == "location" {
        Some("a hot config cannot move its sealing store; it holds only `plan` and `sealing`")
    } else {
        None
    }
}

/// A TOML error with the file, the dotted key it concerns (when found) and toml's own text,
/// which gives the line and column and quotes the line.
fn de_error(e: &toml::de::Error, text: &str, origin: &str) -> anyhow::Error {
    let detail = e.to_string();
    let detail = detail.trim_end();
    match e.span().and_then(|span| key_path_at(text, span.start)) {
        Some(key) => anyhow!("{origin}: `{key}`: {detail}"),
        None => anyhow!("{origin}: {detail}"),
    }
}

/// The dotted path of the smallest key or value of `text` whose span holds `offset`.
fn key_path_at(text: &str, offset: usize) -> Option<String> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut best: Option<(usize, String)> = None;
    let mut path: Vec<String> = Vec::new();
    walk_table(root.get_ref(), offset, &mut path, &mut best);
    best.map(|(_, p)| p).filter(|p| !p.is_empty())
}

fn walk_table(
    table: &toml::de::DeTable<'_>,
    offset: usize,
    path: &mut Vec<String>,
    best: &mut Option<(usize, String)>,
) {
    for (key, value) in table.iter() {
        path.push(key.get_ref().to_string());
        consider(key.span(), offset, path, best);
        walk_value(value, offset, path, best);
        path.pop();
    }
}

fn walk_value(
    value: &toml::Spanned<toml::de::DeValue<'_>>,
    offset: usize,
    path: &mut Vec<String>,
    best: &mut Option<(usize, String)>,
) {
    consider(value.span(), offset, path, best);
    match value.get_ref() {
        toml::de::DeValue::Table(table) => walk_table(table, offset, path, best),
        toml::de::DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                walk_value(item, offset, path, best);
                path.pop();
            }
        }
        _ => {}
    }
}

fn consider(
    span: Range<usize>,
    offset: usize,
    path: &[String],
    best: &mut Option<(usize, String)>,
) {
    if span.contains(&offset) && best.as_ref().is_none_or(|(len, _)| span.len() <= *len) {
        *best = Some((span.len(), path.join(".")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[sector_manager]
rpc_client.addr = "/ip4/127.0.0.1/tcp/1789"

[[sealing_thread]]
location = "/data/local-1"
"#;

    fn err_text(r: Result<impl fmt::Debug>) -> String {
        format!("{:#}", r.expect_err("should fail"))
    }

    #[test]
    fn minimal_config_has_the_spec_defaults() {
        let cfg = from_str_named(MINIMAL, "w.toml").expect("minimal config");
        // §6.1
        assert_eq!(cfg.worker.name, None);
        assert_eq!(cfg.worker.rpc_server.port, 17890);
        assert_eq!(
            cfg.worker.rpc_server.listen_addr().expect("listen"),
            "0.0.0.0:17890".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(
            cfg.worker.rpc_server.connect_addr().expect("connect"),
            "127.0.0.1:17890".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(cfg.worker.ping_interval.get(), Duration::from_secs(30));
        assert!(cfg.worker.local_pieces_dirs().is_empty());
        assert!(cfg.worker.scan_persist_stores.is_empty());
        // §6.2
        assert!(!cfg.metrics.enable);
        assert_eq!(cfg.metrics.listen().to_string(), "0.0.0.0:9000");
        // §6.3
        let sm = cfg.manager().expect("manager");
        assert_eq!(sm.piece_token, None);
        assert_eq!(
            sm.rpc_client.endpoint().expect("endpoint"),
            "http://127.0.0.1:1789/rpc/v0"
        );
        // §6.4
        let s = &cfg.sealing;
        assert!(s.allowed_miners.is_empty() && s.allowed_sizes.is_empty());
        assert!(!s.enable_deals && !s.disable_cc);
        assert_eq!((s.max_deals, s.min_deal_space), (None, None));
        assert_eq!(s.max_retries, 5);
        assert_eq!(s.seal_interval.get(), Duration::from_secs(30));
        assert_eq!(s.recover_interval.get(), Duration::from_secs(60));
        assert_eq!(s.rpc_polling_interval.get(), Duration::from_secs(180));
        assert!(!s.ignore_proof_check && !s.verify_after_pc2);
        assert_eq!(s.request_task_max_retries, 3);
        // §6.5
        let t = cfg.effective_thread(0, None).expect("thread 0");
        assert_eq!(t.plan, Plan::Sealer);
        assert_eq!(t.location.as_deref(), Some(Path::new("/data/local-1")));
        assert_eq!(t.sealing, SealingConfig::default());
        // §6.6, §6.7
        assert!(cfg.attached.is_empty());
        assert!(cfg.processors.concurrent_limits().is_empty());
        assert!(PROCESSOR_KINDS
            .iter()
            .all(|k| cfg.processors.ext(k).is_none()));
        assert!(cfg.deprecated_tables().is_empty());
    }

    #[test]
    fn ext_processor_defaults() {
        let text =
            format!("{MINIMAL}\n[[processors.pc1]]\n[processors.pc1.cgroup]\ncpuset = \"0-3\"\n");
        let cfg = from_str_named(&text, "w.toml").expect("pc1 block");
        let pc1 = &cfg.processors.ext("pc1").expect("pc1")[0];
        assert_eq!(pc1.bin, None);
        assert_eq!(pc1.args_for("pc1"), ["processor", "pc1"]);
        assert_eq!(pc1.stable_wait.get(), Duration::from_secs(5));
        assert!(pc1.auto_restart && pc1.inherit_envs);
        assert_eq!(pc1.capacity(), 64);
        assert!(pc1.locks.is_empty() && pc1.envs.is_empty());
        let cg = pc1.cgroup.as_ref().expect("cgroup");
        assert_eq!(cg.group_name, "vc-worker");
        assert_eq!(cg.cpuset.as_deref(), Some("0-3"));
    }

    #[test]
    fn sealing_yields_to_window_post_by_default_and_bad_priorities_are_named() {
        let cfg = from_str_named(
            &format!("{MINIMAL}\n[[processors.pc1]]\n[[processors.window_post]]\n[[processors.c2]]\nnice = 3\n"),
            "w.toml",
        )
        .expect("config");
        let p = &cfg.processors.priority;
        assert_eq!((p.sealing_nice, p.post_nice), (5, 0));
        assert!(p.hold_sealing_during_post);
        let ext = |k: &str| cfg.processors.ext(k).expect("block")[0].clone();
        assert_eq!(p.nice_for("pc1", &ext("pc1")), Some(5));
        assert_eq!(p.nice_for("window_post", &ext("window_post")), Some(0));
        assert_eq!(
            p.nice_for("c2", &ext("c2")),
            Some(3),
            "a block's own nice wins"
        );
        let off = PriorityConfig {
            sealing_nice: 0,
            ..PriorityConfig::default()
        };
        assert_eq!(off.nice_for("pc1", &ext("pc1")), None);
        assert_eq!(
            off.nice_for("window_post", &ext("window_post")),
            None,
            "off: children inherit the worker's nice"
        );
        assert_eq!(off.nice_for("c2", &ext("c2")), Some(3));

        for (bad, named) in [
            (
                "sealing_nice = 20",
                "`processors.priority.sealing_nice` = 20",
            ),
            (
                "sealing_nice = -1",
                "`processors.priority.sealing_nice` = -1",
            ),
            ("post_nice = -21", "`processors.priority.post_nice` = -21"),
            ("post_nice = 12", "would give WindowPoSt no priority"),
        ] {
            let text = format!("{MINIMAL}\n[processors.priority]\n{bad}\n");
            let err = err_text(from_str_named(&text, "w.toml"));
            assert!(err.contains(named), "{bad}: {err}");
        }
        let err = err_text(from_str_named(
            &format!("{MINIMAL}\n[[processors.pc2]]\nnice = 40\n"),
            "w.toml",
        ));
        assert!(err.contains("`processors.pc2.0.nice` = 40"), "{err}");
    }

    #[test]
    fn durations_parse_and_print() {
        for (text, secs) in [
            ("30s", 30),
            ("1m", 60),
            ("1min", 60),
            ("1m30s", 90),
            ("2h 5m", 7500),
        ] {
            let d: HumanDuration = text.parse().expect(text);
            assert_eq!(d.get(), Duration::from_secs(secs), "{text}");
        }
        assert_eq!(HumanDuration::from_secs(90).to_string(), "1m 30s");
        assert_eq!(
            "500ms".parse::<HumanDuration>().expect("ms").get(),
            Duration::from_millis(500)
        );
        assert!("soon".parse::<HumanDuration>().is_err());
        let text = format!("{MINIMAL}\n[sealing_thread.sealing]\nseal_interval = \"1m30s\"\n");
        let cfg = from_str_named(&text, "w.toml").expect("duration in file");
        let t = cfg.effective_thread(0, None).expect("thread");
        assert_eq!(t.sealing.seal_interval.get(), Duration::from_secs(90));
    }

    #[test]
    fn byte_and_sector_sizes() {
        assert_eq!(
            "32GiB".parse::<SectorSize>().expect("32GiB").0,
            34_359_738_368
        );
        assert_eq!("2KiB".parse::<SectorSize>().expect("2KiB").0, 2048);
        let e = "32GB".parse::<SectorSize>().expect_err("decimal");
        assert!(e.contains("32GB"), "{e}");
        assert_eq!(
            "32GB".parse::<ByteSize>().expect("decimal").0,
            32_000_000_000
        );
        assert_eq!("1.5KiB".parse::<ByteSize>().expect("fraction").0, 1536);
        assert_eq!("8 gib".parse::<ByteSize>().expect("spaced").0, 8 << 30);
        assert_eq!("1024".parse::<ByteSize>().expect("bytes").0, 1024);
        assert!("-1KiB".parse::<ByteSize>().is_err());
        assert!("1XB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(8 << 30).to_string(), "8GiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
        let cfg = SealingConfig {
            allowed_sizes: vec![SectorSize(2048), SectorSize(32 << 30)],
            ..SealingConfig::default()
        };
        assert_eq!(cfg.allowed_proof_types(), [5, 10, 15, 8, 13, 18]);
    }

    #[test]
    fn unknown_keys_are_named_by_dotted_path() {
        let text = format!(
            "{MINIMAL}\n[sealing_thread.sealing]\nmax_retryes = 3\n\n[[processors.pc1]]\nconcurrnet = 2\n\n[worker]\nnmae = \"x\"\n"
        );
        let msg = err_text(from_str_named(&text, "w.toml"));
        assert!(msg.starts_with("w.toml: unknown keys"), "{msg}");
        for key in [
            "`sealing_thread.0.sealing.max_retryes`",
            "`processors.pc1.0.concurrnet`",
            "`worker.nmae`",
        ] {
            assert!(msg.contains(key), "{key} in {msg}");
        }
        let msg = err_text(from_str_named(
            &format!("{MINIMAL}\n[[processors.synth_proof]]\n"),
            "w.toml",
        ));
        assert!(
            msg.contains("`processors.synth_proof` (synthetic proofs"),
            "{msg}"
        );
    }

    #[test]
    fn type_errors_name_the_key_the_file_and_the_line() {
        let text = format!(
            "{MINIMAL}\n[[sealing_thread]]\nlocation = \"/data/local-2\"\n[sealing_thread.sealing]\nmax_retries = \"five\"\n"
        );
        let msg = err_text(from_str_named(&text, "w.toml"));
        assert!(
            msg.starts_with("w.toml: `sealing_thread.1.sealing.max_retries`"),
            "{msg}"
        );
        assert!(msg.contains("line 11"), "{msg}");
        assert!(msg.contains("five"), "{msg}");

        let msg = err_text(from_str_named(
            &format!("{MINIMAL}plan = \"niporep\"\n"),
            "w.toml",
        ));
        assert!(msg.contains("`sealing_thread.0.plan`"), "{msg}");
        assert!(msg.contains("niporep"), "{msg}");

        let msg = err_text(from_str_named(
            &format!(
                "{MINIMAL}\n[sealing]\nallowed_sizes = [\"32GB\"]\nrecover_interval = \"1m\"\n"
            ),
            "w.toml",
        ));
        assert!(msg.starts_with("w.toml: `sealing.allowed_sizes`"), "{msg}");
        assert!(msg.contains("invalid sector size"), "{msg}");

        let msg = err_text(from_str_named("[sealing\n", "broken.toml"));
        assert!(msg.starts_with("broken.toml: "), "{msg}");
        assert!(msg.contains("line 1"), "{msg}");
    }

    #[test]
    fn sealing_merges_over_three_levels() {
        let text = r#"
[sector_manager]
rpc_client.addr = "http://10.0.0.1:1789/ignored/path"

[sealing]
allowed_miners = [1000]
enable_deals = true
max_retries = 7
seal_interval = "10s"

[[sealing_thread]]
location = "/a"
[sealing_thread.sealing]
allowed_miners = []
max_retries = 9

[[sealing_thread]]
location = "/b"
plan = "snapup"
"#;
        let cfg = from_str_named(text, "w.toml").expect("parse");
        let hot = HotConfig::from_str_named(
            "plan = \"rebuild\"\n[sealing]\nseal_interval = \"1m30s\"\nenable_deals = false\n",
            "hot.toml",
        )
        .expect("hot");

        let t0 = cfg.effective_thread(0, None).expect("thread 0");
        assert_eq!(t0.plan, Plan::Sealer);
        assert!(
            t0.sealing.allowed_miners.is_empty(),
            "thread lifts the miner restriction"
        );
        assert_eq!(t0.sealing.max_retries, 9);
        assert_eq!(t0.sealing.seal_interval.get(), Duration::from_secs(10));
        assert!(t0.sealing.enable_deals);
        assert_eq!(t0.sealing.recover_interval.get(), Duration::from_secs(60));

        let t0 = cfg.effective_thread(0, Some(&hot)).expect("thread 0 hot");
        assert_eq!(t0.plan, Plan::Rebuild);
        assert_eq!(t0.sealing.seal_interval.get(), Duration::from_secs(90));
        assert!(!t0.sealing.enable_deals);
        assert_eq!(
            t0.sealing.max_retries, 9,
            "thread value kept under the hot config"
        );
        assert_eq!(t0.location.as_deref(), Some(Path::new("/a")));
        t0.check().expect("usable");

        let t1 = cfg.effective_thread(1, None).expect("thread 1");
        assert_eq!(t1.plan, Plan::Snapup);
        assert_eq!(t1.sealing.allowed_miners, [1000]);
        assert_eq!(t1.sealing.max_retries, 7);
        assert!(cfg.effective_thread(2, None).is_none());

        assert_eq!(
            cfg.manager()
                .expect("sm")
                .rpc_client
                .endpoint()
                .expect("url"),
            "http://10.0.0.1:1789/rpc/v0"
        );
    }

    #[test]
    fn validation_names_every_bad_key() {
        let text = format!(
            r#"{MINIMAL}
[[sealing_thread]]
location = "/data/local-1/"

[[sealing_thread]]
plan = "unseal"

[[attached]]
name = "p"
location = "/a"

[[attached]]
name = "p"
location = "/b"

[[attached]]
location = "/c"
[attached.meta]
Bucket = "b"

[processors.limitation.concurrent]
pc3 = 1
pc1 = 0

[processors.limitation.staggered]
pc2 = "500ms"

[[processors.c2]]
locks = ["gpu"]

[[processors.sealing_daemons]]
"#
        );
        let msg = err_text(from_str_named(&text, "w.toml"));
        assert!(msg.starts_with("w.toml: invalid configuration: "), "{msg}");
        for key in [
            "`sealing_thread.1.location`",
            "`sealing_thread.2.location` is required for plan `unseal`",
            "`attached.1.name`: duplicate store name \"p\"",
            "`attached.2.meta`",
            "`processors.limitation.concurrent.pc3`: unknown stage",
            "`processors.limitation.concurrent.pc1` = 0",
            "`processors.limitation.staggered.pc2`",
            "`processors.c2.0.locks.0`",
            "`processors.sealing_daemons.0.bin` is required",
        ] {
            assert!(msg.contains(key), "{key} in {msg}");
        }

        let msg = err_text(from_str_named("sealing_thread = []\n", "w.toml"));
        assert!(msg.contains("`[sector_manager]` is required"), "{msg}");
        let msg = err_text(from_str_named(
            "[sector_manager]\nrpc_client.addr = \"localhost:1789\"\n",
            "w.toml",
        ));
        assert!(msg.contains("`sealing_thread` is missing"), "{msg}");
        assert!(msg.contains("`sector_manager.rpc_client.addr`"), "{msg}");

        // P-8: CC disabled with deals off never seals anything.
        let msg = err_text(from_str_named(
            &format!("{MINIMAL}\n[sealing]\ndisable_cc = true\n"),
            "w.toml",
        ));
        assert!(
            msg.contains("`sealing.disable_cc` = true without `enable_deals`"),
            "{msg}"
        );
        from_str_named(
            &format!(
                "{MINIMAL}\n[sealing_thread.sealing]\ndisable_cc = true\nenable_deals = true\n"
            ),
            "w.toml",
        )
        .expect("disable_cc with deals is fine");
    }

    #[test]
    fn legacy_limit_applies_only_without_limitation() {
        let cfg = from_str_named(
            &format!("{MINIMAL}\n[processors.limit]\npc1 = 2\n"),
            "w.toml",
        )
        .expect("legacy");
        assert_eq!(cfg.processors.concurrent_limits().get("pc1"), Some(&2));
        let msg = err_text(from_str_named(
            &format!("{MINIMAL}\n[processors.limit]\npc1 = 2\n[processors.limitation.concurrent]\npc2 = 1\n"),
            "w.toml",
        ));
        assert!(
            msg.contains("`processors.limit` (legacy) is ignored"),
            "{msg}"
        );
    }

    #[test]
    fn hot_config_is_strict_and_optional() {
        let msg = err_text(HotConfig::from_str_named(
            "location = \"/elsewhere\"\nplan = \"snapup\"\n",
            "hot.toml",
        ));
        assert!(msg.contains("hot.toml: unknown key `location`"), "{msg}");
        let msg = err_text(HotConfig::from_str_named(
            "[sealing]\nmax_retrys = 1\n",
            "hot.toml",
        ));
        assert!(msg.contains("`sealing.max_retrys`"), "{msg}");

        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load_hot(dir.path()).expect("no file"), None);
        std::fs::write(
            hot_config_path(dir.path()),
            "plan = \"wdpost\"\n[sealing]\nrecover_interval = \"5s\"\n",
        )
        .expect("write");
        let hot = load_hot(dir.path()).expect("read").expect("present");
        assert_eq!(hot.plan, Some(Plan::Wdpost));
        assert_eq!(
            hot.sealing.recover_interval,
            Some(HumanDuration::from_secs(5))
        );
        std::fs::write(
            hot_config_path(dir.path()),
            "[sealing]\nrecover_interval = \"0s\"\n",
        )
        .expect("write");
        let msg = err_text(load_hot(dir.path()));
        assert!(
            msg.contains("`sealing.recover_interval` must not be 0"),
            "{msg}"
        );
        assert!(msg.contains("config.toml"), "{msg}");
    }

    #[test]
    fn manager_endpoints() {
        let ep = |addr: &str| {
            RpcClientConfig {
                addr: addr.to_string(),
                ..RpcClientConfig::default()
            }
            .endpoint()
        };
        assert_eq!(
            ep("/ip4/10.0.0.1/tcp/1789").expect("ma"),
            "http://10.0.0.1:1789/rpc/v0"
        );
        assert_eq!(
            ep("/dns/mgr/tcp/443/https").expect("dns"),
            "https://mgr:443/rpc/v0"
        );
        assert_eq!(
            ep("/ip6/::1/tcp/1789").expect("ip6"),
            "http://[::1]:1789/rpc/v0"
        );
        assert_eq!(
            ep("ws://mgr:1789/rpc/v0").expect("ws"),
            "http://mgr:1789/rpc/v0"
        );
        assert_eq!(
            ep("https://[::1]:1789").expect("url6"),
            "https://[::1]:1789/rpc/v0"
        );
        let e = format!("{:#}", ep("mgr:1789").expect_err("neither"));
        assert!(e.contains("multiaddr") && e.contains("URL"), "{e}");
        assert!(ep("/ip4/10.0.0.1/udp/1789").is_err());
        assert!(ep("http://mgr:port").is_err());
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let text = r#"
[sector_manager]
piece_token = "tok-secret"
[sector_manager.rpc_client]
addr = "/ip4/127.0.0.1/tcp/1789"
[sector_manager.rpc_client.headers]
Authorization = "Bearer hunter2"

[[sealing_thread]]
location = "/a"
"#;
        let mut cfg = from_str_named(text, "w.toml").expect("parse");
        cfg.attached.push(AttachedConfig {
            name: Some("s3".into()),
            location: "s3://b".into(),
            plugin: Some("s3".into()),
            meta: BTreeMap::from([
                ("SecretKey".to_string(), "sk-secret".to_string()),
                ("Bucket".to_string(), "b".to_string()),
            ]),
            ..AttachedConfig::default()
        });
        let dump = format!("{cfg:?}");
        for secret in ["hunter2", "tok-secret", "sk-secret"] {
            assert!(!dump.contains(secret), "{secret} in {dump}");
        }
        assert!(
            dump.contains("Authorization") && dump.contains("Bucket"),
            "{dump}"
        );
    }

    #[test]
    fn deprecated_tables_are_accepted() {
        let text = format!(
            "{MINIMAL}\n[remote_store]\nname = \"x\"\nlocation = \"/x\"\n[attached_selection]\nenable_space_weighted = true\n"
        );
        let cfg = from_str_named(&text, "w.toml").expect("deprecated tables");
        assert_eq!(
            cfg.deprecated_tables(),
            ["remote_store", "attached_selection"]
        );
    }

    #[test]
    fn the_example_file_parses_validates_and_round_trips() {
        let text = include_str!("../../docs/examples/damocles-worker.toml");
        let cfg = from_str_named(text, "docs/examples/damocles-worker.toml").expect("example");
        assert!(cfg.threads().len() >= 3);
        assert!(cfg.threads().iter().any(|t| t.plan == Some(Plan::Wdpost)));
        let plugin_store = cfg
            .attached
            .iter()
            .find(|a| a.plugin.is_some())
            .expect("an objstore-plugin store");
        assert!(plugin_store.name.is_some() && !plugin_store.meta.is_empty());
        assert!(cfg
            .processors
            .static_tree_d()
            .expect("sizes")
            .contains_key(&(32u64 << 30)));
        for kind in ["pc1", "pc2", "c2", "transfer"] {
            assert!(
                cfg.processors.ext(kind).is_some(),
                "example shows [[processors.{kind}]]"
            );
        }
        assert_eq!(
            cfg.processors.ext("tree_d"),
            None,
            "tree_d stays in-process"
        );

        let again = from_str_named(&cfg.to_toml().expect("to toml"), "round trip")
            .expect("serialised config parses");
        assert_eq!(again, cfg);
    }

    #[test]
    fn a_default_sealing_round_trips() {
        let mut cfg = from_str_named(MINIMAL, "w.toml").expect("minimal");
        cfg.sealing = SealingConfig::default();
        let text = cfg.to_toml().expect("toml");
        assert_eq!(from_str_named(&text, "again").expect("parse"), cfg);
    }
}
