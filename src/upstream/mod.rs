//! The upstreams of the route table: each one's targets, health, timeouts
//! and idle connections, and the one place a target is picked, for both
//! forwarding paths.

mod health;
mod idle;
mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pingora::lb::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, LoadBalancer};

use crate::config::UpstreamConfig;
use crate::metrics::Metrics;

pub use health::{health_checks, HealthChecks, HealthSender};
pub use idle::{
    idle_time, set_process_limit as set_idle_limit, ConnectionEvents, IdleConnections, Pooled,
};
pub use tls::PeerTls;

/// A target picked for one request: its address and, for the direct
/// path, its idle connections.
pub struct Picked<'a> {
    pub addr: SocketAddr,
    pub idle: &'a IdleConnections,
}

/// One named upstream: its balancer and timeouts.
pub struct UpstreamPool {
    pub name: String,
    /// Health state of the targets (kept up to date by the health check).
    pub balancer: Arc<LoadBalancer<RoundRobin>>,
    /// The targets, in a fixed order for round robin.
    targets: Vec<(Backend, SocketAddr)>,
    /// Idle connections of each target (same order), for the direct path.
    idle: Vec<IdleConnections>,
    pub connection_events: ConnectionEvents,
    /// Whether a health check runs: without one every target is used.
    checked: bool,
    next: AtomicUsize,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// TLS to the targets (Pingora's path only: the direct path speaks
    /// plain HTTP/1).
    pub tls: Option<PeerTls>,
}

/// An upstream whose balancer cannot be built; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstreams.{name}.targets: {source}")]
    Targets {
        name: String,
        source: std::io::Error,
    },
    #[error("upstreams.{name}.health_check.path: not a path")]
    HealthCheckPath { name: String },
}

pub fn build_balancer(
    name: &str,
    up: &UpstreamConfig,
) -> Result<LoadBalancer<RoundRobin>, UpstreamError> {
    let targets: Vec<String> = up.targets.iter().map(|a| a.to_string()).collect();
    let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(targets).map_err(|source| {
        UpstreamError::Targets {
            name: name.to_string(),
            source,
        }
    })?;
    if let Some(hc) = &up.health_check {
        let tls = up.tls.as_ref().map(PeerTls::new);
        match &hc.path {
            Some(path) => {
                let mut check = match &tls {
                    Some(tls) => tls.http_check(),
                    None => HttpHealthCheck::new("localhost", false),
                };
                check
                    .req
                    .set_uri(path.parse().map_err(|_| UpstreamError::HealthCheckPath {
                        name: name.to_string(),
                    })?);
                check.peer_template.options.connection_timeout = Some(up.connect_timeout);
                check.peer_template.options.read_timeout =
                    Some(up.connect_timeout.max(Duration::from_secs(1)));
                lb.set_health_check(Box::new(check));
            }
            None => {
                let mut check = match &tls {
                    Some(tls) => tls.tcp_check(),
                    None => TcpHealthCheck::new(),
                };
                check.peer_template.options.connection_timeout = Some(up.connect_timeout);
                lb.set_health_check(check);
            }
        }
        lb.health_check_frequency = Some(hc.interval);
    }
    Ok(lb)
}

impl UpstreamPool {
    pub fn new(
        name: &str,
        balancer: Arc<LoadBalancer<RoundRobin>>,
        up: &UpstreamConfig,
        metrics: &Metrics,
    ) -> UpstreamPool {
        let targets: Vec<_> = balancer
            .backends()
            .get_backend()
            .iter()
            .filter_map(|b| Some((b.clone(), *b.addr.as_inet()?)))
            .collect();
        UpstreamPool {
            name: name.to_string(),
            balancer,
            idle: targets.iter().map(|_| IdleConnections::default()).collect(),
            connection_events: ConnectionEvents::new(&metrics.upstream_connections, name),
            targets,
            checked: up.health_check.is_some(),
            next: AtomicUsize::new(0),
            connect_timeout: up.connect_timeout,
            read_timeout: up.read_timeout,
            tls: up.tls.as_ref().map(PeerTls::new),
        }
    }

    /// The next healthy target, round robin: the one selection of both
    /// forwarding paths. Pingora's own selection builds a set per request to
    /// skip repeats; a counter over a fixed list needs no allocation, and
    /// health is consulted only when a check runs.
    pub fn pick(&self) -> Option<Picked<'_>> {
        let n = self.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let backends = self.balancer.backends();
        let i = (0..n)
            .map(|i| start.wrapping_add(i) % n)
            .find(|&i| !self.checked || backends.ready(&self.targets[i].0))?;
        Some(Picked {
            addr: self.targets.get(i)?.1,
            idle: self.idle.get(i)?,
        })
    }

    pub fn healthy_targets(&self) -> usize {
        let backends = self.balancer.backends();
        backends
            .get_backend()
            .iter()
            .filter(|b| backends.ready(b))
            .count()
    }
}

/// Publishes the number of healthy targets of each upstream.
pub fn publish_health(pools: &[Arc<UpstreamPool>], metrics: &Metrics) {
    for pool in pools {
        metrics
            .upstream_healthy
            .with_label_values(&[&pool.name])
            .set(pool.healthy_targets() as i64);
    }
}
