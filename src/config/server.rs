//! `server:` (the proxy listener and its workers, who the client is behind
//! a load balancer) and `admin:` (the admin listener).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

use super::tls::ServerTls;
use super::{duration, err, values, ConfigError};
use crate::forwarded::TrustedProxies;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// What becomes of client header names holding `_` (other than the
/// identity headers' twins, which are always removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UnderscoreHeaders {
    /// Removed before forwarding, as nginx does: WSGI/CGI backends read
    /// `X_Foo` and `X-Foo` as one variable.
    #[default]
    Drop,
    /// Forwarded.
    Keep,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    #[serde(deserialize_with = "values::listen")]
    pub listen: SocketAddr,
    pub threads: usize,
    pub work_stealing: bool,
    #[serde(deserialize_with = "duration::deserialize")]
    pub grace_period: Duration,
    pub log_format: LogFormat,
    /// What is logged: `tracing` filter directives (`info`, `warn,vigile=debug`).
    /// `RUST_LOG`, when set, wins over it.
    pub log_level: String,
    pub underscore_headers: UnderscoreHeaders,
    /// Longest a client may take to send a request's head (from the
    /// connection, or from the end of the previous request).
    #[serde(deserialize_with = "duration::deserialize")]
    pub header_timeout: Duration,
    /// Longest a write to a client may wait without progress (a client that
    /// does not read its answer); past it, the connection is closed.
    #[serde(deserialize_with = "duration::deserialize")]
    pub write_timeout: Duration,
    /// Most client connections open at once; past that, new ones are refused.
    pub max_connections: usize,
    /// Bodiless HTTP/1 requests go by vigile's own forwarder (`proxy/forward.rs`)
    /// rather than Pingora's proxy loop.
    pub direct_path: bool,
    /// Peers whose `X-Forwarded-For` names the client (`forwarded.rs`).
    #[serde(deserialize_with = "values::networks")]
    pub trusted_proxies: TrustedProxies,
    /// Every connection begins with a PROXY protocol header (v1 or v2)
    /// naming the client; one without is refused.
    pub proxy_protocol: bool,
    /// A TLS listener beside `listen` (`tls.rs`).
    pub tls: Option<ServerTls>,
    /// HTTP/2 with prior knowledge (h2c) on `listen`, beside HTTP/1.1.
    pub h2c: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            threads: 2,
            work_stealing: false,
            grace_period: Duration::from_secs(5),
            log_format: LogFormat::Text,
            log_level: "info".to_string(),
            underscore_headers: UnderscoreHeaders::Drop,
            header_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            direct_path: true,
            trusted_proxies: TrustedProxies::default(),
            proxy_protocol: false,
            tls: None,
            h2c: false,
        }
    }
}

impl ServerConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        match self.threads {
            0 => return err("server.threads", "must be at least 1"),
            n if n > 1024 => return err("server.threads", "must be at most 1024"),
            _ => {}
        }
        if self.header_timeout < Duration::from_millis(100) {
            return err("server.header_timeout", "must be at least 100ms");
        }
        if self.write_timeout < Duration::from_secs(1) {
            return err("server.write_timeout", "must be at least 1s");
        }
        if self.max_connections == 0 {
            return err("server.max_connections", "must be at least 1");
        }
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log_level) {
            return err("server.log_level", format!("not a log filter: {e}"));
        }
        if let Some(tls) = &self.tls {
            if tls.listen.port() == 0 {
                return err(
                    "server.tls.listen",
                    "needs a port of its own (not 0): its connections are told from the plain \
                     listener's by the address they came to",
                );
            }
            if overlap(tls.listen, self.listen) {
                return err(
                    "server.tls.listen",
                    "must not share its port with server.listen (the same address, or a wildcard \
                     one that covers it): a connection could reach the wrong listener",
                );
            }
            tls.check()?;
        }
        Ok(())
    }
}

/// Whether two listeners would take each other's connections: the same
/// port, on the same address (an IPv4-mapped IPv6 address is its IPv4
/// address) or where one is a wildcard that covers the other (`[::]` covers
/// every address on a dual-stack host, `0.0.0.0` every IPv4 one). The
/// proxy's sockets set `SO_REUSEPORT`, so the kernel may let both bind and
/// share the connections between them. Port 0 (a port the system picks)
/// never overlaps.
pub(crate) fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    let covers = |wide: IpAddr, other: IpAddr| match wide {
        IpAddr::V6(v6) if v6.is_unspecified() => true,
        IpAddr::V4(v4) if v4.is_unspecified() => other.is_ipv4(),
        _ => false,
    };
    let (x, y) = (a.ip().to_canonical(), b.ip().to_canonical());
    a.port() == b.port() && a.port() != 0 && (x == y || covers(x, y) || covers(y, x))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    #[serde(deserialize_with = "values::listen")]
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
        }
    }
}
