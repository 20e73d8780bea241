//! The gateway's configuration file, typed: the harness and the tests name
//! each key by a field and `serde_yaml` writes the file, so that no test
//! assembles YAML text. A field left `None` is not written at all: vigile's
//! own default applies, as when an operator leaves the key out.
//!
//! ```ignore
//! Options::default()
//!     .server(|s| s.header_timeout(Duration::from_secs(1)))
//!     .route(Route::new("raw", "/api/raw/", "raw").auth(Auth::None))
//!     .upstream("raw", Upstream::new([addr]).read_timeout(Duration::from_secs(5)))
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Serialize, Serializer};

/// The whole file (`vigile.yaml`).
#[derive(Debug, Default, Serialize)]
pub struct Config {
    pub server: Option<Server>,
    pub admin: Option<Admin>,
    pub store: Option<Store>,
    pub tokens: Option<Tokens>,
    pub accounts: Option<Accounts>,
    pub mailer: Option<Mailer>,
    pub cors: Option<Cors>,
    pub migration: Option<Migration>,
    pub audit: Option<Audit>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub upstreams: BTreeMap<String, Upstream>,
}

impl Config {
    /// The YAML text, without the keys left `None`.
    pub fn to_yaml(&self) -> String {
        let mut value = serde_yaml::to_value(self).expect("a config as YAML");
        drop_unset(&mut value);
        serde_yaml::to_string(&value).expect("a config as YAML")
    }

    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.to_yaml()).expect("write the config");
    }
}

/// Removes the keys whose value is null, at every depth.
fn drop_unset(value: &mut serde_yaml::Value) {
    match value {
        serde_yaml::Value::Mapping(map) => {
            map.retain(|_, v| !v.is_null());
            map.iter_mut().for_each(|(_, v)| drop_unset(v));
        }
        serde_yaml::Value::Sequence(items) => items.iter_mut().for_each(drop_unset),
        _ => {}
    }
}

/// A duration as vigile reads one: whole seconds (`2s`) or milliseconds.
fn duration<S: Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        None => serializer.serialize_none(),
        Some(d) if d.as_millis() % 1000 == 0 => {
            serializer.collect_str(&format_args!("{}s", d.as_secs()))
        }
        Some(d) => serializer.collect_str(&format_args!("{}ms", d.as_millis())),
    }
}

/// Setters that chain, each writing its key (`Some(value)`).
macro_rules! setters {
    ($section:ty { $($key:ident: $ty:ty),* $(,)? }) => {
        impl $section {
            $(
                pub fn $key(mut self, value: $ty) -> Self {
                    self.$key = Some(value);
                    self
                }
            )*
        }
    };
}

/// `server:`.
#[derive(Debug, Default, Serialize)]
pub struct Server {
    pub listen: Option<SocketAddr>,
    pub threads: Option<usize>,
    #[serde(serialize_with = "duration")]
    pub grace_period: Option<Duration>,
    pub log_format: Option<LogFormat>,
    pub underscore_headers: Option<UnderscoreHeaders>,
    #[serde(serialize_with = "duration")]
    pub header_timeout: Option<Duration>,
    pub max_connections: Option<usize>,
    pub direct_path: Option<bool>,
    #[serde(serialize_with = "duration")]
    pub write_timeout: Option<Duration>,
    pub trusted_proxies: Option<Vec<String>>,
    pub proxy_protocol: Option<bool>,
    pub tls: Option<ServerTls>,
    pub h2c: Option<bool>,
}

/// `server.tls`.
#[derive(Debug, Clone, Serialize)]
pub struct ServerTls {
    pub listen: SocketAddr,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

setters!(Server {
    listen: SocketAddr,
    grace_period: Duration,
    log_format: LogFormat,
    underscore_headers: UnderscoreHeaders,
    header_timeout: Duration,
    max_connections: usize,
    direct_path: bool,
    write_timeout: Duration,
    proxy_protocol: bool,
    tls: ServerTls,
    h2c: bool,
});

impl Server {
    /// `server.trusted_proxies`.
    pub fn trusted_proxies<const N: usize>(mut self, networks: [&str; N]) -> Self {
        self.trusted_proxies = Some(networks.iter().map(|n| n.to_string()).collect());
        self
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// `server.underscore_headers` other than the default (`drop`).
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnderscoreHeaders {
    Keep,
}

/// `admin:`.
#[derive(Debug, Serialize)]
pub struct Admin {
    pub listen: SocketAddr,
}

/// `store:`.
#[derive(Debug, Default, Serialize)]
pub struct Store {
    pub kind: Option<StoreKind>,
    pub path: Option<PathBuf>,
    /// postgres: the connection string (tests use `url:`, not a variable).
    pub url: Option<String>,
    #[serde(serialize_with = "duration")]
    pub purge_interval: Option<Duration>,
    #[serde(serialize_with = "duration")]
    pub sync_interval: Option<Duration>,
    #[serde(serialize_with = "duration")]
    pub max_staleness: Option<Duration>,
}

setters!(Store {
    purge_interval: Duration,
    sync_interval: Duration,
    max_staleness: Duration,
});

impl Store {
    /// `kind: postgres` on the database `url` names.
    pub fn postgres(mut self, url: &str) -> Self {
        self.kind = Some(StoreKind::Postgres);
        self.url = Some(url.to_string());
        self
    }

    /// `kind: redb`, whatever `VIGILE_TEST_STORE` says: for a test of the
    /// redb file itself (`Gateway::start_with` gives a store without a kind
    /// the one `VIGILE_TEST_STORE` names).
    pub fn redb(mut self) -> Self {
        self.kind = Some(StoreKind::Redb);
        self
    }
}

/// `store.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Redb,
    Postgres,
}

/// `audit:`.
#[derive(Debug, Default, Serialize)]
pub struct Audit {
    pub file: Option<PathBuf>,
}

/// `migration:`.
#[derive(Debug, Default, Serialize)]
pub struct Migration {
    pub simplejwt: Option<SimpleJwt>,
}

/// `migration.simplejwt` (the key from a file: tests set no variables).
#[derive(Debug, Default, Serialize)]
pub struct SimpleJwt {
    pub signing_key_file: Option<PathBuf>,
    pub until: String,
    pub accept_access: Option<bool>,
}

/// `tokens:`.
#[derive(Debug, Default, Serialize)]
pub struct Tokens {
    pub algorithm: Option<Algorithm>,
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
    #[serde(serialize_with = "duration")]
    pub access_ttl: Option<Duration>,
    #[serde(serialize_with = "duration")]
    pub refresh_ttl: Option<Duration>,
    #[serde(serialize_with = "duration")]
    pub reuse_grace: Option<Duration>,
    #[serde(serialize_with = "duration")]
    pub leeway: Option<Duration>,
}

setters!(Tokens {
    access_ttl: Duration,
    refresh_ttl: Duration,
    reuse_grace: Duration,
    leeway: Duration,
});

/// `tokens.algorithm`: HS256 is the one the tests sign with
/// (`common::sign`); EdDSA with the key the gateway generates in its data
/// directory (no `secret_file` then).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Algorithm {
    HS256,
    EdDSA,
}

/// `accounts:`.
#[derive(Debug, Default, Serialize)]
pub struct Accounts {
    pub login_throttle: Option<Throttle>,
    pub reset_throttle: Option<ResetThrottle>,
    #[serde(serialize_with = "duration")]
    pub reset_ttl: Option<Duration>,
    pub hash_workers: Option<usize>,
    pub hash_queue: Option<usize>,
}

setters!(Accounts {
    login_throttle: Throttle,
    reset_throttle: ResetThrottle,
    reset_ttl: Duration,
    hash_workers: usize,
    hash_queue: usize,
});

impl Accounts {
    /// `login_throttle.max_failures`, the other throttle keys as they were.
    pub fn max_failures(mut self, max_failures: u32) -> Self {
        let throttle = self.login_throttle.take().unwrap_or_default();
        self.login_throttle = Some(Throttle {
            max_failures: Some(max_failures),
            ..throttle
        });
        self
    }
}

/// `accounts.login_throttle`.
#[derive(Debug, Default, Serialize)]
pub struct Throttle {
    pub max_failures: Option<u32>,
    #[serde(serialize_with = "duration")]
    pub window: Option<Duration>,
    pub max_failures_per_ip: Option<u32>,
    pub max_failures_per_account: Option<u32>,
}

setters!(Throttle {
    max_failures: u32,
    window: Duration,
    max_failures_per_ip: u32,
    max_failures_per_account: u32,
});

/// `accounts.reset_throttle`.
#[derive(Debug, Default, Serialize)]
pub struct ResetThrottle {
    pub max_requests: Option<u32>,
    pub max_requests_per_ip: Option<u32>,
    #[serde(serialize_with = "duration")]
    pub window: Option<Duration>,
}

setters!(ResetThrottle {
    max_requests: u32,
    max_requests_per_ip: u32,
});

/// `mailer:`.
#[derive(Debug, Default, Serialize)]
pub struct Mailer {
    pub kind: Option<MailerKind>,
    pub dir: Option<PathBuf>,
    pub from: Option<String>,
    pub reset_url: Option<String>,
    pub smtp: Option<Smtp>,
}

impl Mailer {
    /// One `.eml` file per message in `dir`.
    pub fn outbox(dir: PathBuf) -> Mailer {
        Mailer {
            kind: Some(MailerKind::File),
            dir: Some(dir),
            ..Mailer::default()
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MailerKind {
    File,
    Smtp,
}

/// `mailer.smtp`.
#[derive(Debug, Serialize)]
pub struct Smtp {
    pub host: String,
    pub port: Option<u16>,
    pub tls: Option<SmtpTls>,
    #[serde(serialize_with = "duration")]
    pub timeout: Option<Duration>,
}

/// `mailer.smtp.tls` other than the default (`starttls`).
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    None,
}

/// `cors:`.
#[derive(Debug, Serialize)]
pub struct Cors {
    pub allowed_origins: Vec<String>,
}

/// One item of `routes:`.
#[derive(Debug, Serialize)]
pub struct Route {
    pub name: String,
    pub prefix: String,
    pub upstream: String,
    pub auth: Option<Auth>,
    pub roles: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
    pub strip_prefix: Option<bool>,
    pub forward_authorization: Option<bool>,
    pub websocket: Option<bool>,
}

impl Route {
    /// Requests under `prefix` to the upstream named `upstream`, with a valid
    /// access token (vigile's default `auth`).
    pub fn new(name: &str, prefix: &str, upstream: &str) -> Route {
        Route {
            name: name.into(),
            prefix: prefix.into(),
            upstream: upstream.into(),
            auth: None,
            roles: None,
            methods: None,
            strip_prefix: None,
            forward_authorization: None,
            websocket: None,
        }
    }

    pub fn roles<const N: usize>(mut self, roles: [&str; N]) -> Self {
        self.roles = Some(roles.iter().map(|r| r.to_string()).collect());
        self
    }
}

setters!(Route {
    auth: Auth,
    strip_prefix: bool,
    forward_authorization: bool,
    websocket: bool,
});

/// A route's `auth` other than the default (`required`).
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Auth {
    Optional,
    None,
}

/// One entry of `upstreams:` (its name is the key in `Config::upstreams`).
#[derive(Debug, Serialize)]
pub struct Upstream {
    /// `host:port` each.
    pub targets: Vec<String>,
    #[serde(serialize_with = "duration")]
    pub read_timeout: Option<Duration>,
    #[serde(serialize_with = "duration")]
    pub connect_timeout: Option<Duration>,
    pub health_check: Option<HealthCheck>,
    pub tls: Option<UpstreamTls>,
}

impl Upstream {
    pub fn new(targets: impl IntoIterator<Item = SocketAddr>) -> Upstream {
        Upstream {
            targets: targets.into_iter().map(|a| a.to_string()).collect(),
            read_timeout: None,
            connect_timeout: None,
            health_check: None,
            tls: None,
        }
    }
}

setters!(Upstream {
    read_timeout: Duration,
    connect_timeout: Duration,
    health_check: HealthCheck,
    tls: UpstreamTls,
});

/// `upstreams.NAME.tls`.
#[derive(Debug, Default, Serialize)]
pub struct UpstreamTls {
    pub sni: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub verify: Option<bool>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

/// An upstream's `health_check`: an HTTP GET of `path`, or a TCP connect
/// without one.
#[derive(Debug, Serialize)]
pub struct HealthCheck {
    pub path: Option<String>,
    #[serde(serialize_with = "duration")]
    pub interval: Option<Duration>,
}
