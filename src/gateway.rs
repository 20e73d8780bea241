//! Assembling a running gateway: opening the store, loading the keys and the
//! revocation list, then wiring the Pingora services (proxy, admin listener,
//! upstream health checks, housekeeping) and running them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::lb::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, LoadBalancer};
use pingora::listeners::TcpSocketOptions;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};

use crate::accounts::password_reset::ResetWorker;
use crate::accounts::AccountService;
use crate::config::{Config, UpstreamConfig};
use crate::connections::{ConnectionLimit, Edge, EdgeApp};
use crate::error::ApiError;
use crate::mailer::Mailer;
use crate::metrics::Metrics;
use crate::proxy::{ConnectionEvents, IdleConnections};
use crate::revocation::RevocationList;
use crate::store::{Store, StoreError};
use crate::token_cache::TokenCache;
use crate::tokens::TokenKeys;

/// Name of the operator credential file in the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// The state every part of a running gateway shares.
pub struct Gateway {
    pub config: Config,
    pub accounts: Arc<AccountService>,
    pub metrics: Arc<Metrics>,
    pub hash_pool: HashPool,
    /// The operator channel's credential, also in `<data dir>/admin.token` (0600).
    pub admin_token: String,
    /// Client connections open on the proxy listener, and their cap.
    pub connections: &'static ConnectionLimit,
}

/// Opens the store of `config` and makes sure the default role exists.
/// Fails at once with `StoreError::Locked` when another process holds it.
pub fn try_open_store(config: &Config) -> Result<Store, StoreError> {
    let window = config.tokens.access_ttl.as_secs() + config.tokens.leeway.as_secs();
    let store = Store::open(&config.store.path, window)?;
    store.create_role(&config.accounts.default_role, crate::unix_now())?;
    Ok(store)
}

/// `try_open_store`, waiting a little if another process (an operator
/// command) holds the store just now.
pub fn open_store(config: &Config) -> Result<Store, StoreError> {
    let mut tries = 0;
    loop {
        match try_open_store(config) {
            Err(StoreError::Locked) if tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

impl Gateway {
    /// Everything but the network: store, keys, revocations, metrics.
    pub fn open(config: Config) -> Result<Gateway, String> {
        let data_dir = config.store.data_dir();
        let store =
            open_store(&config).map_err(|e| format!("{e} ({})", config.store.path.display()))?;
        let tokens = TokenKeys::from_config(&config.tokens, &data_dir)?;
        let revocations = RevocationList::new(
            store
                .revocations(crate::unix_now())
                .map_err(|e| e.to_string())?,
        );
        let metrics = Metrics::new().map_err(|e| format!("metrics: {e}"))?;
        let store = Arc::new(store);
        let reset_queue = ResetWorker {
            store: store.clone(),
            mailer: Mailer::from_config(&config.mailer)?,
            reset_url: config.mailer.reset_url.clone(),
            ttl: config.accounts.reset_ttl.as_secs(),
            outcomes: metrics.reset_mails.clone(),
        }
        .start();
        let accounts = AccountService::new(
            &config,
            store,
            Arc::new(tokens),
            Arc::new(revocations),
            metrics.password_hash_seconds.clone(),
            Some(reset_queue),
        );
        let admin_token = {
            use base64::Engine;
            let bytes: [u8; 32] = rand::random();
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        };
        let token_path = data_dir.join(ADMIN_TOKEN_FILE);
        crate::fsutil::write_private(&token_path, admin_token.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", token_path.display()))?;
        let hash_pool = HashPool::new(config.accounts.hash_workers, config.accounts.hash_queue);
        let connections = ConnectionLimit::leak(
            config.server.max_connections,
            metrics
                .connections_refused
                .with_label_values(&["max_connections"]),
        );
        Ok(Gateway {
            config,
            accounts: Arc::new(accounts),
            metrics: Arc::new(metrics),
            hash_pool,
            admin_token,
            connections,
        })
    }
}

/// The threads that hash passwords (argon2 is CPU-heavy): `workers` of them,
/// at a lower scheduling priority than the proxy's threads, so that a login
/// storm takes the CPU the proxy leaves idle rather than the proxy's share.
/// At most `queue` jobs wait; past that, callers get 503 `overloaded` at once
/// instead of waiting without end.
pub struct HashPool {
    jobs: SyncSender<HashJob>,
}

type HashJob = Box<dyn FnOnce() + Send>;

impl HashPool {
    pub fn new(workers: usize, queue: usize) -> HashPool {
        let (jobs, rx) = sync_channel::<HashJob>(queue);
        let rx = Arc::new(parking_lot::Mutex::new(rx));
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("vigile-hash-{i}"))
                .spawn(move || {
                    crate::lower_thread_priority();
                    loop {
                        let job = rx.lock().recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a hashing thread");
            }
        }
        HashPool { jobs }
    }

    /// Runs `f` on a hashing thread; 503 `overloaded` when the queue is full.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .try_send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|e| match e {
                TrySendError::Full(_) => ApiError::overloaded(),
                TrySendError::Disconnected(_) => ApiError::internal(),
            })?;
        rx.await.map_err(|_| ApiError::internal())
    }
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
}

fn build_balancer(name: &str, up: &UpstreamConfig) -> Result<LoadBalancer<RoundRobin>, String> {
    let targets: Vec<String> = up.targets.iter().map(|a| a.to_string()).collect();
    let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(targets)
        .map_err(|e| format!("upstreams.{name}.targets: {e}"))?;
    if let Some(hc) = &up.health_check {
        match &hc.path {
            Some(path) => {
                let mut check = HttpHealthCheck::new("localhost", false);
                check.req.set_uri(
                    path.parse()
                        .map_err(|_| format!("upstreams.{name}.health_check.path: not a path"))?,
                );
                check.peer_template.options.connection_timeout = Some(up.connect_timeout);
                check.peer_template.options.read_timeout =
                    Some(up.connect_timeout.max(Duration::from_secs(1)));
                lb.set_health_check(Box::new(check));
            }
            None => {
                let mut check = TcpHealthCheck::new();
                check.peer_template.options.connection_timeout = Some(up.connect_timeout);
                lb.set_health_check(check);
            }
        }
        lb.health_check_frequency = Some(hc.interval);
    }
    Ok(lb)
}

/// Periodic upkeep: drops revocations and sessions nothing can use any more,
/// and refreshes the gauges.
struct Housekeeping {
    gateway: Arc<Gateway>,
    pools: Arc<Vec<UpstreamPool>>,
    every: Duration,
}

impl Housekeeping {
    async fn tick(&self) {
        let now = crate::unix_now();
        let accounts = &self.gateway.accounts;
        accounts.revocations.purge(now);
        let store = accounts.store.clone();
        match tokio::task::spawn_blocking(move || store.purge_expired(now)).await {
            Ok(Ok((sessions, revocations, reset_tokens)))
                if sessions + revocations + reset_tokens > 0 =>
            {
                tracing::info!(
                    sessions,
                    revocations,
                    reset_tokens,
                    "housekeeping: expired entries purged"
                );
            }
            Ok(Err(e)) => tracing::error!(error = %e, "housekeeping failed"),
            _ => {}
        }
        let store = accounts.store.clone();
        if let Ok(Ok(counts)) = tokio::task::spawn_blocking(move || store.counts()).await {
            let rows = &self.gateway.metrics.store_rows;
            for (table, n) in [
                ("accounts", counts.accounts),
                ("sessions", counts.sessions),
                ("revocations", counts.revocations),
                ("reset_tokens", counts.reset_tokens),
            ] {
                rows.with_label_values(&[table]).set(n as i64);
            }
        }
        refresh_gauges(&self.gateway, &self.pools);
    }
}

/// Sets the gauges that are read from state: revocations held in memory,
/// healthy targets per upstream. Called at each scrape and by housekeeping.
pub fn refresh_gauges(gateway: &Gateway, pools: &[UpstreamPool]) {
    let m = &gateway.metrics;
    m.revoked_sessions
        .set(gateway.accounts.revocations.len() as i64);
    m.client_connections.set(gateway.connections.open() as i64);
    for pool in pools {
        m.upstream_healthy
            .with_label_values(&[&pool.name])
            .set(pool.healthy_targets() as i64);
    }
}

impl UpstreamPool {
    fn new(
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
        }
    }

    /// The next healthy target, round robin. Pingora's own selection builds
    /// a set per request to skip repeats; a counter over a fixed list needs
    /// no allocation, and health is consulted only when a check runs.
    pub fn pick(&self) -> Option<SocketAddr> {
        self.pick_index().map(|i| self.targets[i].1)
    }

    /// `pick`, as an index for `target`.
    pub fn pick_index(&self) -> Option<usize> {
        let n = self.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let backends = self.balancer.backends();
        (0..n)
            .map(|i| start.wrapping_add(i) % n)
            .find(|&i| !self.checked || backends.ready(&self.targets[i].0))
    }

    /// Target `i`: its address and its idle connections.
    pub fn target(&self, i: usize) -> Option<(SocketAddr, &IdleConnections)> {
        Some((self.targets.get(i)?.1, self.idle.get(i)?))
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

#[async_trait]
impl BackgroundService for Housekeeping {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut interval = tokio::time::interval(self.every);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = interval.tick() => self.tick().await,
            }
        }
    }
}

/// One listening socket of the proxy and the threads that serve it.
struct ProxyListener {
    addr: String,
    threads: usize,
    reuse_port: bool,
}

/// The proxy's listening sockets. Pingora 0.9 accepts a socket's
/// connections on one runtime and hands each to a runtime drawn at random
/// (one per thread without work stealing), while the connection stays
/// registered with the accepting runtime's I/O driver: each of its events
/// then wakes that other thread first. So with several threads and no work
/// stealing, each thread gets a single-threaded service with its own
/// `SO_REUSEPORT` socket on the listen address, and the kernel spreads the
/// connections. Pingora keeps one socket per address string: the address is
/// written with `i` leading zeros on the port (`127.0.0.1:08080` is
/// `127.0.0.1:8080`) to make the strings distinct.
fn proxy_listeners(cfg: &Config) -> Vec<ProxyListener> {
    let threads = cfg.server.threads.max(1);
    if threads == 1 || cfg.server.work_stealing {
        return vec![ProxyListener {
            addr: cfg.server.listen.to_string(),
            threads,
            reuse_port: false,
        }];
    }
    listen_aliases(cfg.server.listen, threads)
        .into_iter()
        .map(|addr| ProxyListener {
            addr,
            threads: 1,
            reuse_port: true,
        })
        .collect()
}

/// `n` distinct spellings of `addr`: the port with 0 to `n - 1` leading zeros.
fn listen_aliases(addr: SocketAddr, n: usize) -> Vec<String> {
    let text = addr.to_string();
    let (host, port) = text.rsplit_once(':').unwrap_or((text.as_str(), ""));
    (0..n)
        .map(|i| format!("{host}:{}{port}", "0".repeat(i)))
        .collect()
}

/// Runs the gateway until SIGTERM (graceful, within `server.grace_period`) or
/// SIGINT (at once).
pub fn serve(mut config: Config) -> Result<(), String> {
    // Pingora would retry a taken address forever: refuse it now, by name.
    for (key, addr) in [
        ("server.listen", config.server.listen),
        ("admin.listen", config.admin.listen),
    ] {
        std::net::TcpListener::bind(addr)
            .map_err(|e| format!("{key}: cannot listen on {addr}: {e}"))?;
    }
    // A flood of connections must meet server.max_connections, not the
    // open-file limit (past which Pingora stops accepting for everyone).
    config.server.max_connections =
        crate::connections::raise_open_file_limit(config.server.max_connections);
    let gateway = Arc::new(Gateway::open(config)?);
    let cfg = &gateway.config;
    let data_dir = cfg.store.data_dir();
    let grace = cfg.server.grace_period.as_secs();
    let conf = ServerConf {
        threads: cfg.server.threads,
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

    let mut pools = Vec::new();
    for up in &cfg.upstreams {
        let name = &up.name;
        let lb = build_balancer(name, up)?;
        let balancer = if up.health_check.is_some() {
            let service = background_service(&format!("health check {name}"), lb);
            let task = service.task();
            server.add_service(service);
            task
        } else {
            Arc::new(lb)
        };
        pools.push(UpstreamPool::new(name, balancer, up, &gateway.metrics));
    }
    let pools = Arc::new(pools);

    let in_flight = crate::shutdown::InFlight::default();
    let verified = Arc::new(TokenCache::new(cfg.tokens.verified_cache));
    // Every proxy service counts its connections in the one shared limit.
    let header_timeouts = &gateway.metrics.header_timeouts;
    let proxy_edge = Edge::leak(
        cfg.server.header_timeout,
        Some(gateway.connections),
        header_timeouts.with_label_values(&["proxy"]),
    );
    for (i, listener) in proxy_listeners(cfg).into_iter().enumerate() {
        let proxy = crate::proxy::Proxy::new(
            gateway.clone(),
            pools.clone(),
            in_flight.clone(),
            verified.clone(),
        );
        let app = pingora::proxy::http_proxy(&server.configuration, proxy);
        let mut service = Service::new(format!("proxy {i}"), EdgeApp::new(app, proxy_edge));
        service.threads = Some(listener.threads);
        if listener.reuse_port {
            let mut options = TcpSocketOptions::default();
            options.so_reuseport = Some(true);
            service.add_tcp_with_settings(&listener.addr, options);
        } else {
            service.add_tcp(&listener.addr);
        }
        server.add_service(service);
    }

    let admin_edge = Edge::leak(
        cfg.server.header_timeout,
        None,
        header_timeouts.with_label_values(&["admin"]),
    );
    let mut admin_service = crate::admin::service(gateway.clone(), pools.clone(), admin_edge);
    admin_service.add_tcp(&cfg.admin.listen.to_string());
    server.add_service(admin_service);

    let housekeeping = Housekeeping {
        gateway: gateway.clone(),
        pools,
        every: cfg.store.purge_interval,
    };
    refresh_gauges(&gateway, &housekeeping.pools);
    server.add_service(background_service("housekeeping", housekeeping));

    tracing::info!(
        listen = %cfg.server.listen,
        admin = %cfg.admin.listen,
        store = %cfg.store.path.display(),
        revoked_sessions = gateway.accounts.revocations.len(),
        "vigile started"
    );
    let signals = crate::shutdown::Signals {
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
    use super::*;

    #[test]
    fn listen_aliases_are_distinct_spellings_of_one_address() {
        for addr in ["127.0.0.1:8080", "[::1]:443", "0.0.0.0:65535"] {
            let addr: SocketAddr = addr.parse().expect("addr");
            let aliases = listen_aliases(addr, 4);
            assert_eq!(aliases.len(), 4);
            assert_eq!(aliases[0], addr.to_string());
            let distinct: std::collections::BTreeSet<_> = aliases.iter().collect();
            assert_eq!(distinct.len(), 4);
            for alias in &aliases {
                let parsed: Vec<SocketAddr> =
                    std::net::ToSocketAddrs::to_socket_addrs(alias.as_str())
                        .expect("resolves")
                        .collect();
                assert_eq!(parsed, [addr], "{alias}");
            }
        }
    }
}
