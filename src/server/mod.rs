//! Assembling a running gateway: the shared state (`state.rs`), the
//! upstreams and their health checks, the proxy services on their listeners,
//! the admin listener, housekeeping, then running them until a signal.

mod housekeeping;
mod listeners;
mod shutdown;

use std::path::PathBuf;
use std::sync::Arc;

use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::TcpSocketOptions;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::admin;
use crate::config::Config;
use crate::connections::{Edge, EdgeApp, TlsEdge};
use crate::proxy::Proxy;
use crate::reload::{Hangups, Reloader};
use crate::state::{Gateway, InFlight, OpenError};
use crate::tls::ServerCert;
use crate::tokens::TokenCache;
use crate::upstream::{health_checks, UpstreamError};

use housekeeping::Housekeeping;
use listeners::proxy_listeners;

/// Why the gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{key}: cannot listen on {addr}: {source}")]
    Listen {
        key: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Tls(String),
}

/// How long an HTTP/2 connection may stay without a stream (as HTTP/1's
/// keep-alive).
const H2_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The TLS listener's settings: TLS 1.2 and 1.3 (rustls, ring), ALPN `h2`
/// then `http/1.1`, the certificate in force at each handshake.
fn tls_settings(cert: Arc<ServerCert>) -> Result<TlsSettings, ServeError> {
    let mut settings = TlsSettings::intermediate("", "")
        .map_err(|e| ServeError::Tls(format!("server.tls: {e}")))?;
    settings.set_cert_resolver(cert);
    settings.enable_h2();
    Ok(settings)
}

/// Installs the process's SIGHUP handler (its default action ends the
/// process); `Hangups` receives the signals once the server runs.
fn watch_hangups_now() {
    use tokio::signal::unix::{signal, SignalKind};
    match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(runtime) => {
            if let Err(e) = runtime.block_on(async { signal(SignalKind::hangup()).map(drop) }) {
                tracing::warn!(error = %e, "cannot watch SIGHUP");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot watch SIGHUP"),
    }
}

/// How the idle upstream connections the open-file budget allows are shared
/// between Pingora's pools (one per proxy service, of
/// `upstream_keepalive_pool_size` per thread) and the direct path's.
#[derive(Debug, PartialEq)]
struct IdleShare {
    pingora_per_thread: usize,
    direct: usize,
}

impl IdleShare {
    /// Pingora's own default per pool and thread.
    const PINGORA_DEFAULT: usize = 128;

    /// `total` idle connections for `services` proxy services of Pingora,
    /// each with a pool of `threads` times its size: at most half of them
    /// to Pingora's pools (at least one place each), the rest to the direct
    /// path.
    fn of(total: usize, services: usize, threads: usize) -> IdleShare {
        let places = services.max(1) * threads.max(1);
        let pingora_per_thread = (total / 2 / places).clamp(1, Self::PINGORA_DEFAULT);
        IdleShare {
            pingora_per_thread,
            direct: total.saturating_sub(pingora_per_thread * places),
        }
    }
}

/// Runs the gateway until SIGTERM (graceful, within `server.grace_period`) or
/// SIGINT (at once); SIGHUP reloads the configuration from `config_path`.
pub fn serve(config_path: PathBuf) -> Result<(), ServeError> {
    let (mut config, sha256) = Config::load_with_digest(&config_path)?;
    // SIGHUP would end the process until the reload service watches it:
    // take it over now (tokio's handler stays for the process's life).
    watch_hangups_now();
    // Pingora would retry a taken address forever: refuse it now, by name.
    let tls_listen = config
        .server
        .tls
        .as_ref()
        .map(|t| ("server.tls.listen", t.listen));
    for (key, addr) in [
        ("server.listen", config.server.listen),
        ("admin.listen", config.admin.listen),
    ]
    .into_iter()
    .chain(tls_listen)
    {
        std::net::TcpListener::bind(addr).map_err(|source| ServeError::Listen {
            key,
            addr,
            source,
        })?;
    }
    // What reloads compare with: the file as read (before the adjustments).
    let loaded = config.clone();
    // A flood of connections must meet server.max_connections, not the
    // open-file limit (past which Pingora stops accepting for everyone).
    config.server.max_connections =
        crate::connections::raise_open_file_limit(config.server.max_connections);
    let gateway = Arc::new(Gateway::open(config)?);
    let cfg = &gateway.config;
    let data_dir = cfg.store.data_dir();
    let grace = cfg.server.grace_period.as_secs();
    // The open-file budget counts one idle upstream connection per client
    // connection: the pools of both paths together keep no more.
    let idle = IdleShare::of(
        cfg.server.max_connections,
        proxy_listeners(cfg).len(),
        cfg.server.threads,
    );
    crate::upstream::set_idle_limit(idle.direct);
    let conf = ServerConf {
        threads: cfg.server.threads,
        upstream_keepalive_pool_size: idle.pingora_per_thread,
        // One retry at most, as on the direct path (`Proxy::error_while_proxy`
        // decides when): Pingora's default is 16 attempts.
        max_retries: 2,
        work_stealing: cfg.server.work_stealing,
        grace_period_seconds: Some(grace),
        graceful_shutdown_timeout_seconds: Some(grace.max(1)),
        pid_file: data_dir.join("vigile.pid").to_string_lossy().into_owned(),
        upgrade_sock: data_dir
            .join("vigile-upgrade.sock")
            .to_string_lossy()
            .into_owned(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();

    // The TLS listener's certificate, swapped by reloads.
    let server_cert = match &cfg.server.tls {
        Some(tls) => Some(Arc::new(ServerCert::new(
            tls.load().map_err(|e| ServeError::Tls(e.to_string()))?,
        ))),
        None => None,
    };
    let in_flight = InFlight::default();
    let verified = Arc::new(TokenCache::new(cfg.tokens.verified_cache));
    // Health checks start and stop with their upstream (`upstream/health.rs`).
    let (health_checks, health) = health_checks();
    server.add_service(background_service("health checks", health_checks));
    let reloader = Arc::new(Reloader::start(
        gateway.clone(),
        loaded,
        config_path,
        sha256,
        verified,
        health,
        server_cert.clone(),
    )?);
    server.add_service(background_service(
        "reload on SIGHUP",
        Hangups(reloader.clone()),
    ));
    // Every proxy service counts its connections in the one shared limit.
    let header_timeouts = &gateway.metrics.header_timeouts;
    let proxy_edge = Edge::leak(
        cfg.server.header_timeout,
        cfg.server.write_timeout,
        Some(gateway.connections),
        header_timeouts.with_label_values(&["proxy"]),
    );
    let refusals = &gateway.metrics.edge_refusals;
    let proxy_edge = proxy_edge.with_prefaces(
        cfg.server
            .proxy_protocol
            .then(|| refusals.with_label_values(&["proxy_protocol"])),
        cfg.server.h2c,
    );
    for (i, listener) in proxy_listeners(cfg).into_iter().enumerate() {
        let proxy = Proxy::new(gateway.clone(), reloader.lives().clone(), in_flight.clone());
        let mut app = pingora::proxy::http_proxy(&server.configuration, proxy);
        // HTTP/2 connections go to Pingora's own loop (`connections/mod.rs`).
        let mut options = HttpServerOptions::default();
        options.h2c = cfg.server.h2c;
        options.h2_idle_timeout = Some(H2_IDLE_TIMEOUT);
        // `CONNECT` reaches vigile's filters, which refuse it with the JSON
        // 405 (Pingora's own refusal is bare, and over HTTP/2 nothing below
        // can replace it).
        options.allow_connect_method_proxying = true;
        app.server_options = Some(options);
        let tls_listen = cfg.server.tls.as_ref().map(|t| t.listen);
        let edge = match (tls_listen, &server_cert) {
            (Some(addr), Some(cert)) => proxy_edge.with_tls(TlsEdge {
                addr,
                acceptor: tls_settings(cert.clone())?.build(),
                client_hello_refusals: refusals.with_label_values(&["tls_client_hello"]),
                handshake_refusals: refusals.with_label_values(&["tls_handshake"]),
            }),
            _ => proxy_edge,
        };
        let mut service = Service::new(format!("proxy {i}"), EdgeApp::new(app, edge));
        service.threads = Some(listener.threads);
        let options = listener.reuse_port.then(|| {
            let mut options = TcpSocketOptions::default();
            options.so_reuseport = Some(true);
            options
        });
        let mut add = |addr: &str| match options.clone() {
            Some(options) => service.add_tcp_with_settings(addr, options),
            None => service.add_tcp(addr),
        };
        add(&listener.addr);
        // The TLS listener is a TCP one to Pingora: the edge does the
        // handshake (`connections/preface.rs`).
        if let (Some(addr), Some(_)) = (&listener.tls_addr, &server_cert) {
            add(addr);
        }
        server.add_service(service);
    }

    let admin_edge = Edge::leak(
        cfg.server.header_timeout,
        cfg.server.write_timeout,
        Some(gateway.admin_connections),
        header_timeouts.with_label_values(&["admin"]),
    );
    let mut admin_service = admin::service(gateway.clone(), reloader.clone(), admin_edge);
    admin_service.add_tcp(&cfg.admin.listen.to_string());
    server.add_service(admin_service);

    let housekeeping = Housekeeping {
        gateway: gateway.clone(),
        lives: reloader.lives().clone(),
        every: cfg.store.purge_interval,
    };
    gateway.refresh_gauges(&reloader.lives().load().pools);
    server.add_service(background_service("housekeeping", housekeeping));

    tracing::info!(
        listen = %cfg.server.listen,
        admin = %cfg.admin.listen,
        store = %cfg.store.describe(),
        revoked_sessions = gateway.accounts.revocations.len(),
        "vigile started"
    );
    let signals = shutdown::Signals {
        in_flight,
        grace: cfg.server.grace_period,
        store: gateway.accounts.store.clone(),
    };
    server.run(RunArgs {
        shutdown_signal: Box::new(signals),
    });
    gateway.accounts.store.close();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::IdleShare;

    #[test]
    fn idle_connections_share_the_budget() {
        // The default: Pingora keeps its own default, the direct path the rest.
        assert_eq!(
            IdleShare::of(10_000, 2, 2),
            IdleShare {
                pingora_per_thread: 128,
                direct: 10_000 - 512
            }
        );
        // A small budget: together, never more than the total (but for
        // Pingora's one place per pool).
        for (total, services, threads) in [(40, 2, 2), (149, 2, 2), (1, 1, 1), (500, 8, 8)] {
            let share = IdleShare::of(total, services, threads);
            let pingora = share.pingora_per_thread * services * threads;
            assert!(share.pingora_per_thread >= 1);
            assert!(
                pingora + share.direct <= total.max(services * threads),
                "{total} {services} {threads}: {share:?}"
            );
        }
    }
}
