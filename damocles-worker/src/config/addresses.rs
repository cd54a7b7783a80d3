//! Where the worker listens and whom it calls: `[worker.rpc_server]`, `[metrics]`,
//! `[sector_manager]` with its `rpc_client` (§6.2, §6.3), their defaults, and the parsing of the
//! manager's address (a multiaddr or a URL) into its JSON-RPC endpoint.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};

use super::HumanDuration;

/// Port of the worker RPC server when `worker.rpc_server.port` is unset.
pub const DEFAULT_RPC_SERVER_PORT: u16 = 17890;
/// Address the worker RPC server listens on when `worker.rpc_server.host` is unset: this
/// machine only (damocles listens on every interface).
pub const DEFAULT_RPC_LISTEN_HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The variable naming the worker's home when `worker.rpc_server.home` is unset.
pub const WORKER_HOME_ENV: &str = "DAMOCLES_WORKER_PATH";
/// Address `damocles-worker worker …` connects to when `worker.rpc_server.host` is unset.
pub const DEFAULT_RPC_CONNECT_HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Scrape address of the metrics exporter when `metrics.http_listen` is unset.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 9000);

/// `[worker.rpc_server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RpcServerConfig {
    /// IP address to listen on (unset: `127.0.0.1`, this machine only; `0.0.0.0` for every
    /// interface); CLI commands connect to it (unset: `127.0.0.1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Port to listen on, also reported to the manager as this worker's address. Default 17890.
    pub port: u16,
    /// Directory of the control server's API secret and local admin token (our addition).
    /// Unset: `$DAMOCLES_WORKER_PATH`, else `~/.damocles-worker`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home: Option<std::path::PathBuf>,
}

impl Default for RpcServerConfig {
    fn default() -> Self {
        RpcServerConfig {
            host: None,
            port: DEFAULT_RPC_SERVER_PORT,
            home: None,
        }
    }
}

impl RpcServerConfig {
    /// The directory of the API secret and the local admin token.
    pub fn home_dir(&self) -> Result<std::path::PathBuf> {
        if let Some(h) = &self.home {
            return Ok(h.clone());
        }
        if let Some(h) = std::env::var_os(WORKER_HOME_ENV).filter(|v| !v.is_empty()) {
            return Ok(h.into());
        }
        let user = std::env::var_os("HOME").ok_or_else(|| {
            anyhow!("HOME is not set: set `worker.rpc_server.home` or {WORKER_HOME_ENV}")
        })?;
        Ok(std::path::PathBuf::from(user).join(".damocles-worker"))
    }

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
    /// The worker's API token (a `write` token of `damocles-manager util auth api-info --perm
    /// write`), sent as `Authorization: Bearer <token>` (our addition). The token of
    /// `DAMOCLES_MANAGER_API_INFO` wins over it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
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
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The variable giving the worker its token for the manager (`<token>:<multiaddr>`, as
/// `damocles-manager util auth api-info` prints it).
pub const MANAGER_API_INFO_ENV: &str = "DAMOCLES_MANAGER_API_INFO";

impl RpcClientConfig {
    /// The headers sent with each request: `headers`, with `Authorization: Bearer <token>`
    /// when a token is given, by `api_info` (the value of [`MANAGER_API_INFO_ENV`]) first, else
    /// by `token`.
    pub fn request_headers(&self, api_info: Option<&str>) -> BTreeMap<String, String> {
        let mut headers = self.headers.clone();
        let token = api_info
            .map(|v| damocles_auth::ApiInfo::parse(v).token)
            .filter(|t| !t.is_empty())
            .or_else(|| self.token.clone().filter(|t| !t.is_empty()));
        if let Some(token) = token {
            headers.retain(|k, _| !k.eq_ignore_ascii_case("authorization"));
            headers.insert("Authorization".into(), format!("Bearer {token}"));
        }
        headers
    }

    /// Whether requests carry a credential.
    pub fn sends_token(&self, api_info: Option<&str>) -> bool {
        self.request_headers(api_info)
            .keys()
            .any(|k| k.eq_ignore_ascii_case("authorization"))
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_of_the_api_info_wins_over_the_configured_one_and_the_header() {
        let mut cfg = RpcClientConfig {
            addr: "/ip4/127.0.0.1/tcp/1789".into(),
            ..RpcClientConfig::default()
        };
        assert!(!cfg.sends_token(None));
        cfg.headers
            .insert("authorization".into(), "Bearer from-header".into());
        cfg.headers.insert("X-Trace".into(), "1".into());
        assert_eq!(
            cfg.request_headers(None)
                .get("authorization")
                .map(String::as_str),
            Some("Bearer from-header")
        );
        cfg.token = Some("from-config".into());
        let h = cfg.request_headers(None);
        assert_eq!(
            h.get("Authorization").map(String::as_str),
            Some("Bearer from-config")
        );
        assert!(!h.contains_key("authorization"), "{h:?}");
        assert_eq!(h.get("X-Trace").map(String::as_str), Some("1"));
        let h = cfg.request_headers(Some("from-env:/ip4/10.0.0.1/tcp/1789/http"));
        assert_eq!(
            h.get("Authorization").map(String::as_str),
            Some("Bearer from-env")
        );
        // An API info without a token leaves the configured one.
        let h = cfg.request_headers(Some("/ip4/10.0.0.1/tcp/1789/http"));
        assert_eq!(
            h.get("Authorization").map(String::as_str),
            Some("Bearer from-config")
        );
        assert!(!format!("{cfg:?}").contains("from-config"), "{cfg:?}");
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
}
