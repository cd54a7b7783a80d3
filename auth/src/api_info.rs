//! `<token>:<address>`: how `*_API_INFO` variables give a daemon's address with a token.

use std::fmt;

/// An address with the token to call it with (`DAMOCLES_MANAGER_API_INFO`).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiInfo {
    /// The token; empty when the value holds only an address.
    pub token: String,
    /// A multiaddr (`/ip4/127.0.0.1/tcp/1789/http`) or a URL; `host:port` only when there is
    /// no token (`<token>:<host>:<port>` cannot be told from an address).
    pub addr: String,
}

impl ApiInfo {
    /// `token` for the HTTP server at `addr`, as a multiaddr (`/ip4/10.0.0.1/tcp/1789/http`).
    pub fn for_socket(token: String, addr: std::net::SocketAddr) -> ApiInfo {
        let ip = match addr.ip() {
            std::net::IpAddr::V4(ip) => format!("/ip4/{ip}"),
            std::net::IpAddr::V6(ip) => format!("/ip6/{ip}"),
        };
        ApiInfo {
            token,
            addr: format!("{ip}/tcp/{}/http", addr.port()),
        }
    }

    /// Splits `<token>:<address>` at the first `:`; a value that is an address alone (a
    /// multiaddr, a URL, `host:port`) has no token.
    pub fn parse(value: &str) -> ApiInfo {
        let value = value.trim();
        if is_address(value) {
            return ApiInfo {
                token: String::new(),
                addr: value.to_string(),
            };
        }
        match value.split_once(':') {
            Some((token, addr)) if is_address(addr) => ApiInfo {
                token: token.to_string(),
                addr: addr.to_string(),
            },
            _ => ApiInfo {
                token: String::new(),
                addr: value.to_string(),
            },
        }
    }
}

/// A multiaddr (`/ip4/…`) or a URL (`http://…`).
fn is_address(s: &str) -> bool {
    s.starts_with('/')
        || s.split_once("://")
            .is_some_and(|(scheme, _)| scheme.chars().all(|c| c.is_ascii_alphanumeric()))
}

impl fmt::Display for ApiInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.token.is_empty() {
            f.write_str(&self.addr)
        } else {
            write!(f, "{}:{}", self.token, self.addr)
        }
    }
}

/// The token is a secret: only its length is shown.
impl fmt::Debug for ApiInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiInfo")
            .field("token", &format_args!("<{} bytes>", self.token.len()))
            .field("addr", &self.addr)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_and_address_split_at_the_first_colon() {
        let i = ApiInfo::parse("eyJ.a.b:/ip4/10.0.0.1/tcp/1789/http");
        assert_eq!(i.token, "eyJ.a.b");
        assert_eq!(i.addr, "/ip4/10.0.0.1/tcp/1789/http");
        assert_eq!(i.to_string(), "eyJ.a.b:/ip4/10.0.0.1/tcp/1789/http");
        let u = ApiInfo::parse("tok:http://10.0.0.1:1789/rpc/v0");
        assert_eq!(
            (u.token.as_str(), u.addr.as_str()),
            ("tok", "http://10.0.0.1:1789/rpc/v0")
        );
        for bare in [
            "/ip4/127.0.0.1/tcp/1789",
            "http://127.0.0.1:1789",
            "127.0.0.1:1789",
        ] {
            let i = ApiInfo::parse(bare);
            assert_eq!((i.token.as_str(), i.addr.as_str()), ("", bare), "{bare}");
        }
        assert!(
            !format!("{i:?}").contains("eyJ"),
            "the token is not printed"
        );
    }
}
