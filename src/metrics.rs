//! Prometheus metrics, on a registry of the gateway's own (two gateways in one
//! process do not collide). Labels are route names, upstream names, results
//! and reasons: bounded sets, never raw paths.

use parking_lot::RwLock;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub upstream_healthy: IntGaugeVec,
    pub upstream_connections: IntCounterVec,
    pub logins: IntCounterVec,
    pub registrations: IntCounterVec,
    pub refreshes: IntCounterVec,
    pub auth_failures: IntCounterVec,
    pub revoked_sessions: IntGauge,
    pub password_hash_seconds: Histogram,
    /// `vigile_password_rehash_total{from}`: Django hashes upgraded to
    /// argon2id at a login, by Django algorithm.
    pub password_rehashes: IntCounterVec,
    pub reset_mails: IntCounterVec,
    pub store_rows: IntGaugeVec,
    pub client_connections: IntGauge,
    pub connections_refused: IntCounterVec,
    pub header_timeouts: IntCounterVec,
    /// Connections dropped before HTTP (`connections/preface.rs`), by reason.
    pub edge_refusals: IntCounterVec,
    pub revocation_lag_seconds: Histogram,
    pub store_up: IntGauge,
    /// `vigile_config_reloads_total{result}`: reloads by outcome.
    pub config_reloads: IntCounterVec,
    /// `vigile_config_info{sha256}`: 1 for the file in force.
    pub config_info: IntGaugeVec,
    pub store_errors: IntCounterVec,
    /// `vigile_audit_events_total{event}`: audit lines written (`audit.rs`).
    pub audit_events: IntCounterVec,
}

fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = counter(
            &registry,
            "vigile_requests_total",
            "Requests by route name, method and status",
            &["route", "method", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "vigile_request_duration_seconds",
                "Request latency by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["route"],
        )?;
        registry.register(Box::new(latency.clone()))?;
        let upstream_errors = counter(
            &registry,
            "vigile_upstream_errors_total",
            "Upstream failures by upstream and kind",
            &["upstream", "kind"],
        )?;
        let upstream_connections = counter(
            &registry,
            "vigile_upstream_connections_total",
            "Upstream connections of the direct path by upstream and event: opened, \
             reused (a pooled one answered), stale (a pooled one was found closed)",
            &["upstream", "event"],
        )?;
        let upstream_healthy = IntGaugeVec::new(
            Opts::new(
                "vigile_upstream_healthy_targets",
                "Healthy targets by upstream",
            ),
            &["upstream"],
        )?;
        registry.register(Box::new(upstream_healthy.clone()))?;
        let logins = counter(
            &registry,
            "vigile_logins_total",
            "Logins by result",
            &["result"],
        )?;
        let registrations = counter(
            &registry,
            "vigile_registrations_total",
            "Registrations by result",
            &["result"],
        )?;
        let refreshes = counter(
            &registry,
            "vigile_refreshes_total",
            "Token refreshes by result",
            &["result"],
        )?;
        let auth_failures = counter(
            &registry,
            "vigile_auth_failures_total",
            "Refused Bearer tokens by reason",
            &["reason"],
        )?;
        let revoked_sessions =
            IntGauge::new("vigile_revoked_sessions", "Revoked sessions held in memory")?;
        registry.register(Box::new(revoked_sessions.clone()))?;
        let password_hash_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "vigile_password_hash_seconds",
                "Time of one password hash or verification (argon2, or a Django hash)",
            )
            .buckets(vec![0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0]),
        )?;
        registry.register(Box::new(password_hash_seconds.clone()))?;
        let password_rehashes = counter(
            &registry,
            "vigile_password_rehash_total",
            "Django password hashes upgraded to argon2id at a login, by Django algorithm",
            &["from"],
        )?;
        for from in crate::passwords::django::ALGORITHMS {
            password_rehashes.with_label_values(&[from]);
        }
        let reset_mails = counter(
            &registry,
            "vigile_password_reset_mails_total",
            "Password-reset requests handled by the worker, by result (sent, no_account, failed, dropped)",
            &["result"],
        )?;
        let store_rows = IntGaugeVec::new(
            Opts::new(
                "vigile_store_rows",
                "Rows in the store by table, as of the last housekeeping run",
            ),
            &["table"],
        )?;
        registry.register(Box::new(store_rows.clone()))?;
        let client_connections = IntGauge::new(
            "vigile_client_connections",
            "Client connections open on the proxy listener and running HTTP/2 streams (server.max_connections caps them)",
        )?;
        registry.register(Box::new(client_connections.clone()))?;
        let connections_refused = counter(
            &registry,
            "vigile_connections_refused_total",
            "Client connections refused at once, by reason (max_connections)",
            &["reason"],
        )?;
        let header_timeouts = counter(
            &registry,
            "vigile_header_timeouts_total",
            "Connections closed because a request head was not complete within \
             server.header_timeout, by listener (proxy, admin)",
            &["listener"],
        )?;
        let edge_refusals = counter(
            &registry,
            "vigile_edge_refusals_total",
            "Connections dropped before HTTP, by reason: proxy_protocol (no valid PROXY \
             header), tls_client_hello (no TLS ClientHello within server.header_timeout), \
             tls_handshake (a TLS handshake that failed or did not finish within \
             server.header_timeout)",
            &["reason"],
        )?;
        let revocation_lag_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "vigile_revocation_lag_seconds",
                "Time from a revocation's write on the replica that wrote it (its row's time on \
                 the database's clock, just before the commit) to its application here, for \
                 revocations another replica wrote",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0,
            ]),
        )?;
        registry.register(Box::new(revocation_lag_seconds.clone()))?;
        let store_up = IntGauge::new(
            "vigile_store_up",
            "1 while the store answers (postgres: the last sync with the database succeeded)",
        )?;
        store_up.set(1);
        registry.register(Box::new(store_up.clone()))?;
        let store_errors = counter(
            &registry,
            "vigile_store_errors_total",
            "Store calls that failed, by operation (the store method: account_by_email, \
             create_session, ...)",
            &["op"],
        )?;
        let config_reloads = counter(
            &registry,
            "vigile_config_reloads_total",
            "Configuration reloads (SIGHUP, vigile reload), by result: ok or error",
            &["result"],
        )?;
        for result in ["ok", "error"] {
            config_reloads.with_label_values(&[result]);
        }
        let config_info = IntGaugeVec::new(
            Opts::new(
                "vigile_config_info",
                "1, labelled with the SHA-256 of the configuration file in force",
            ),
            &["sha256"],
        )?;
        registry.register(Box::new(config_info.clone()))?;
        let audit_events = counter(
            &registry,
            "vigile_audit_events_total",
            "Audit log lines (target vigile::audit), by event",
            &["event"],
        )?;
        for event in crate::audit::AuditEvent::ALL {
            audit_events.with_label_values(&[event.as_str()]);
        }
        Ok(Metrics {
            registry,
            requests,
            latency,
            upstream_errors,
            upstream_healthy,
            upstream_connections,
            logins,
            registrations,
            refreshes,
            auth_failures,
            revoked_sessions,
            password_hash_seconds,
            password_rehashes,
            reset_mails,
            store_rows,
            client_connections,
            connections_refused,
            header_timeouts,
            edge_refusals,
            revocation_lag_seconds,
            store_up,
            store_errors,
            config_reloads,
            config_info,
            audit_events,
        })
    }

    /// What the account service counts of password hashing.
    pub fn passwords(&self) -> PasswordMetrics {
        PasswordMetrics {
            hash_seconds: self.password_hash_seconds.clone(),
            rehashes: self.password_rehashes.clone(),
        }
    }

    /// `vigile_config_info{sha256}`: this file is in force (and no other).
    pub fn config_in_force(&self, sha256: &str) {
        self.config_info.reset();
        self.config_info.with_label_values(&[sha256]).set(1);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// `vigile_password_hash_seconds` and `vigile_password_rehash_total`.
#[derive(Clone)]
pub struct PasswordMetrics {
    pub hash_seconds: Histogram,
    pub rehashes: IntCounterVec,
}

/// Largest number of (method, status) counters one route keeps at hand.
const ROUTE_COUNTERS: usize = 64;

/// The request counters and latency histogram of one route, resolved once:
/// `with_label_values` hashes every label on every call.
pub struct RouteMeter {
    route: String,
    latency: Histogram,
    counters: RwLock<Vec<(&'static str, u16, IntCounter)>>,
}

impl RouteMeter {
    pub fn new(metrics: &Metrics, route: &str) -> RouteMeter {
        RouteMeter {
            route: route.to_string(),
            latency: metrics.latency.with_label_values(&[route]),
            counters: RwLock::new(Vec::new()),
        }
    }

    /// Counts one request and observes its latency, as
    /// `vigile_requests_total{route,method,status}` and
    /// `vigile_request_duration_seconds{route}`.
    pub fn record(&self, metrics: &Metrics, method: &'static str, status: u16, seconds: f64) {
        self.latency.observe(seconds);
        if let Some((_, _, counter)) = self
            .counters
            .read()
            .iter()
            .find(|(m, s, _)| *s == status && *m == method)
        {
            counter.inc();
            return;
        }
        let mut buf = itoa::Buffer::new();
        let counter =
            metrics
                .requests
                .with_label_values(&[&self.route, method, buf.format(status)]);
        counter.inc();
        let mut counters = self.counters.write();
        if counters.len() < ROUTE_COUNTERS {
            counters.push((method, status, counter));
        }
    }
}

/// Methods outside the standard set share one label value.
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}
