//! The YAML configuration: read once at start, turned into typed and checked
//! structs, so that the rest of the gateway never sees a raw string where an
//! address, a duration or a route belongs.
//!
//! Every refusal names the key at fault (`routes[1].upstream: ...`), because the
//! operator reading it has only the YAML in front of them.

mod duration;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use duration::{parse_duration, ConfigDuration};

/// A configuration that could not be used; the text names the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err<T>(key: &str, msg: impl std::fmt::Display) -> Result<T, ConfigError> {
    Err(ConfigError(format!("{key}: {msg}")))
}

// ---------------------------------------------------------------------------
// The YAML as written (serde), refusing unknown keys.
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    server: RawServer,
    admin: RawAdmin,
    store: RawStore,
    tokens: RawTokens,
    accounts: RawAccounts,
    mailer: RawMailer,
    cors: RawCors,
    identity_headers: RawIdentityHeaders,
    routes: Vec<RawRoute>,
    upstreams: BTreeMap<String, RawUpstream>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    listen: String,
    threads: usize,
    work_stealing: bool,
    grace_period: ConfigDuration,
    log_format: LogFormat,
    underscore_headers: UnderscoreHeaders,
    header_timeout: ConfigDuration,
    max_connections: usize,
    direct_path: bool,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "0.0.0.0:8080".into(),
            threads: 2,
            work_stealing: false,
            grace_period: ConfigDuration(Duration::from_secs(5)),
            log_format: LogFormat::Text,
            underscore_headers: UnderscoreHeaders::Drop,
            header_timeout: ConfigDuration(Duration::from_secs(10)),
            max_connections: 10_000,
            direct_path: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAdmin {
    listen: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            listen: "127.0.0.1:9090".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    path: PathBuf,
    purge_interval: ConfigDuration,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            path: PathBuf::from("data/vigile.redb"),
            purge_interval: ConfigDuration(Duration::from_secs(60)),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTokens {
    algorithm: Algorithm,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    private_key_file: Option<PathBuf>,
    issuer: String,
    audience: String,
    access_ttl: ConfigDuration,
    refresh_ttl: ConfigDuration,
    reuse_grace: ConfigDuration,
    leeway: ConfigDuration,
    verified_cache: usize,
}

impl Default for RawTokens {
    fn default() -> Self {
        RawTokens {
            algorithm: Algorithm::HS256,
            secret_env: Some("VIGILE_JWT_SECRET".into()),
            secret_file: None,
            private_key_file: None,
            issuer: "vigile".into(),
            audience: "api".into(),
            access_ttl: ConfigDuration(Duration::from_secs(300)),
            refresh_ttl: ConfigDuration(Duration::from_secs(86_400)),
            reuse_grace: ConfigDuration(Duration::from_secs(10)),
            leeway: ConfigDuration(Duration::ZERO),
            verified_cache: 16_384,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAccounts {
    default_role: String,
    password_min_length: usize,
    login_throttle: RawThrottle,
    reset_throttle: RawResetThrottle,
    reset_ttl: ConfigDuration,
    hash_workers: usize,
    hash_queue: usize,
}

impl Default for RawAccounts {
    fn default() -> Self {
        RawAccounts {
            default_role: "Visiteur".into(),
            password_min_length: 8,
            login_throttle: RawThrottle::default(),
            reset_throttle: RawResetThrottle::default(),
            reset_ttl: ConfigDuration(Duration::from_secs(3600)),
            hash_workers: 0,
            hash_queue: 64,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawThrottle {
    max_failures: u32,
    window: ConfigDuration,
    max_failures_per_ip: Option<u32>,
    max_failures_per_account: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawResetThrottle {
    max_requests: u32,
    max_requests_per_ip: u32,
    window: ConfigDuration,
}

impl Default for RawResetThrottle {
    fn default() -> Self {
        RawResetThrottle {
            max_requests: 3,
            max_requests_per_ip: 10,
            window: ConfigDuration(Duration::from_secs(900)),
        }
    }
}

impl Default for RawThrottle {
    fn default() -> Self {
        RawThrottle {
            max_failures: 5,
            window: ConfigDuration(Duration::from_secs(900)),
            max_failures_per_ip: None,
            max_failures_per_account: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMailer {
    kind: MailerKind,
    dir: PathBuf,
    reset_url: String,
    from: String,
    smtp: Option<RawSmtp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: String,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    tls: SmtpTls,
    #[serde(default)]
    username_env: Option<String>,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    timeout: Option<ConfigDuration>,
}

impl Default for RawMailer {
    fn default() -> Self {
        RawMailer {
            kind: MailerKind::File,
            dir: PathBuf::from("data/outbox"),
            reset_url: "http://localhost:3000/reset-password?token={token}".into(),
            from: "vigile <no-reply@localhost>".into(),
            smtp: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCors {
    allowed_origins: Vec<String>,
    allowed_methods: Vec<String>,
    allowed_headers: Vec<String>,
    exposed_headers: Vec<String>,
    allow_credentials: bool,
    max_age: ConfigDuration,
}

impl Default for RawCors {
    fn default() -> Self {
        RawCors {
            allowed_origins: Vec::new(),
            allowed_methods: ["GET", "POST", "PUT", "PATCH", "DELETE"]
                .map(String::from)
                .to_vec(),
            allowed_headers: ["Authorization", "Content-Type", "X-Request-Id"]
                .map(String::from)
                .to_vec(),
            exposed_headers: ["X-Request-Id", "Retry-After", "WWW-Authenticate"]
                .map(String::from)
                .to_vec(),
            allow_credentials: false,
            max_age: ConfigDuration(Duration::from_secs(600)),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawIdentityHeaders {
    user_id: String,
    email: String,
    role: String,
    session_id: String,
}

impl Default for RawIdentityHeaders {
    fn default() -> Self {
        RawIdentityHeaders {
            user_id: "X-User-Id".into(),
            email: "X-User-Email".into(),
            role: "X-User-Role".into(),
            session_id: "X-Session-Id".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: String,
    prefix: String,
    upstream: String,
    #[serde(default)]
    auth: AuthMode,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    strip_prefix: bool,
    #[serde(default = "yes")]
    forward_authorization: bool,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    websocket: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    targets: Vec<String>,
    #[serde(default)]
    health_check: Option<RawHealthCheck>,
    #[serde(default)]
    connect_timeout: Option<ConfigDuration>,
    #[serde(default)]
    read_timeout: Option<ConfigDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealthCheck {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    interval: Option<ConfigDuration>,
}

// ---------------------------------------------------------------------------
// The checked configuration the gateway runs on.
// ---------------------------------------------------------------------------

/// JWT signing algorithm, pinned for issuing and verifying alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Algorithm {
    HS256,
    EdDSA,
    RS256,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// A valid access token of a live session is needed (the default).
    #[default]
    Required,
    /// A token, if sent, must be valid; without one the request goes on anonymously.
    Optional,
    /// No check at all; identity headers are still stripped.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MailerKind {
    #[default]
    File,
    Smtp,
    Log,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub store: StoreConfig,
    pub tokens: TokenConfig,
    pub accounts: AccountsConfig,
    pub mailer: MailerConfig,
    pub cors: CorsConfig,
    pub identity_headers: IdentityHeaders,
    pub routes: Vec<RouteConfig>,
    pub upstreams: BTreeMap<String, UpstreamConfig>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub threads: usize,
    pub work_stealing: bool,
    pub grace_period: Duration,
    pub log_format: LogFormat,
    pub underscore_headers: UnderscoreHeaders,
    /// Longest a client may take to send a request's head (from the
    /// connection, or from the end of the previous request).
    pub header_timeout: Duration,
    /// Most client connections open at once; past that, new ones are refused.
    pub max_connections: usize,
    /// Bodiless HTTP/1 requests go by vigile's own forwarder (`proxy/forward.rs`)
    /// rather than Pingora's proxy loop.
    pub direct_path: bool,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
    /// How often expired sessions, revocations and reset tokens are dropped.
    pub purge_interval: Duration,
}

impl StoreConfig {
    /// The folder that holds the store and the files the gateway generates
    /// (signing secret, operator token).
    pub fn data_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }
}

/// Where the signing material comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// HS256 secret read from the environment or a file at load.
    Secret(Vec<u8>),
    /// HS256 secret generated on first start and kept in the data directory.
    GeneratedSecret,
    /// EdDSA/RS256 private key (PEM) read at load.
    PrivateKeyPem(Vec<u8>),
    /// EdDSA key generated on first start and kept in the data directory.
    GeneratedEd25519,
}

#[derive(Debug, Clone)]
pub struct TokenConfig {
    pub algorithm: Algorithm,
    pub key: KeySource,
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub reuse_grace: Duration,
    pub leeway: Duration,
    /// How many verified access tokens the proxy path remembers (0: none).
    pub verified_cache: usize,
}

#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// Failures on one account from one client address.
    pub max_failures: u32,
    pub window: Duration,
    /// Failures from one client address, whatever the accounts.
    pub max_failures_per_ip: u32,
    /// Failures on one account, whatever the addresses.
    pub max_failures_per_account: u32,
}

#[derive(Debug, Clone)]
pub struct ResetThrottleConfig {
    /// Reset requests for one email.
    pub max_requests: u32,
    /// Reset requests from one client address.
    pub max_requests_per_ip: u32,
    pub window: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (port 587), required.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: for a relay on the same host only.
    None,
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// Read from the environment at load.
    pub credentials: Option<(String, String)>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct AccountsConfig {
    pub default_role: String,
    pub password_min_length: usize,
    pub login_throttle: ThrottleConfig,
    pub reset_throttle: ResetThrottleConfig,
    /// How long a password-reset link works.
    pub reset_ttl: Duration,
    /// How many password hashes may run at once (defaults to the core count).
    pub hash_workers: usize,
    /// How many may wait for a worker; past that, 503 `overloaded`.
    pub hash_queue: usize,
}

#[derive(Debug, Clone)]
pub struct MailerConfig {
    pub kind: MailerKind,
    pub dir: PathBuf,
    pub reset_url: String,
    pub from: String,
    /// Present when `kind: smtp`.
    pub smtp: Option<SmtpConfig>,
}

#[derive(Debug, Clone)]
pub struct CorsConfig {
    /// `scheme://host[:port]` values, or `*`.
    pub allowed_origins: Vec<String>,
    /// Upper-case.
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub exposed_headers: Vec<String>,
    pub allow_credentials: bool,
    pub max_age: Duration,
}

#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub user_id: String,
    pub email: String,
    pub role: String,
    pub session_id: String,
}

impl IdentityHeaders {
    pub fn all(&self) -> [&str; 4] {
        [&self.user_id, &self.email, &self.role, &self.session_id]
    }
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    pub prefix: String,
    pub upstream: String,
    pub auth: AuthMode,
    pub roles: Vec<String>,
    pub strip_prefix: bool,
    pub forward_authorization: bool,
    /// Upper-case method names; empty means every method.
    pub methods: Vec<String>,
    /// Whether protocol upgrades (WebSocket) may pass.
    pub websocket: bool,
}

#[derive(Debug, Clone)]
pub struct HealthCheckConfig {
    /// HTTP GET on this path; TCP connect when `None`.
    pub path: Option<String>,
    pub interval: Duration,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub targets: Vec<SocketAddr>,
    pub health_check: Option<HealthCheckConfig>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

/// The file `serve` and the operator commands use when `--config` is not given.
pub fn default_config_path() -> PathBuf {
    std::env::var_os("VIGILE_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("config/vigile.yaml"))
}

impl Config {
    /// Reads, parses and checks the file; secrets are read too, so an
    /// unreadable one is refused here rather than at the first request.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
        Config::from_yaml(&text, &|name| std::env::var(name).ok())
    }

    /// Parses YAML text; `env` looks environment variables up (a parameter so
    /// that tests need not touch the process environment).
    pub fn from_yaml(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| ConfigError(describe_yaml_error(&e)))?
        };
        raw.check(env)
    }
}

/// serde_yaml says "server: unknown field `x`" with the path first; keep that,
/// and make sure the position is there too.
fn describe_yaml_error(e: &serde_yaml::Error) -> String {
    let text = e.to_string();
    if text.starts_with(|c: char| c.is_ascii_lowercase()) || text.contains(':') {
        text
    } else {
        format!("config: {text}")
    }
}

fn parse_listen(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse::<SocketAddr>().or_else(|_| {
        err(
            key,
            format!("`{value}` is not an address such as 0.0.0.0:8080 or 127.0.0.1:9090"),
        )
    })
}

fn read_secret_file(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    let bytes = std::fs::read(path)
        .or_else(|e| err(key, format!("cannot read {}: {e}", path.display())))?;
    Ok(bytes)
}

/// Trailing white space (a final newline) is not part of a secret.
fn trim_secret(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
        bytes.pop();
    }
    bytes
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl RawConfig {
    fn check(self, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let server = ServerConfig {
            listen: parse_listen("server.listen", &self.server.listen)?,
            threads: match self.server.threads {
                0 => return err("server.threads", "must be at least 1"),
                n if n > 1024 => return err("server.threads", "must be at most 1024"),
                n => n,
            },
            work_stealing: self.server.work_stealing,
            grace_period: self.server.grace_period.0,
            log_format: self.server.log_format,
            underscore_headers: self.server.underscore_headers,
            header_timeout: match self.server.header_timeout.0 {
                d if d < Duration::from_millis(100) => {
                    return err("server.header_timeout", "must be at least 100ms")
                }
                d => d,
            },
            max_connections: match self.server.max_connections {
                0 => return err("server.max_connections", "must be at least 1"),
                n => n,
            },
            direct_path: self.server.direct_path,
        };
        let admin = AdminConfig {
            listen: parse_listen("admin.listen", &self.admin.listen)?,
        };
        if admin.listen == server.listen {
            return err("admin.listen", "must differ from server.listen");
        }
        if self.store.path.as_os_str().is_empty() {
            return err("store.path", "must not be empty");
        }
        if self.store.purge_interval.0 < Duration::from_millis(100) {
            return err("store.purge_interval", "must be at least 100ms");
        }
        let store = StoreConfig {
            path: self.store.path,
            purge_interval: self.store.purge_interval.0,
        };
        let tokens = self.tokens.check(env)?;
        let accounts = self.accounts.check()?;
        let mailer = self.mailer.check(env)?;
        let identity_headers = self.identity_headers.check()?;
        let upstreams = check_upstreams(self.upstreams)?;
        let routes = check_routes(self.routes, &upstreams)?;
        let cors = self.cors.check()?;
        Ok(Config {
            server,
            admin,
            store,
            tokens,
            accounts,
            mailer,
            cors,
            identity_headers,
            routes,
            upstreams,
        })
    }
}

impl RawTokens {
    fn check(self, env: &dyn Fn(&str) -> Option<String>) -> Result<TokenConfig, ConfigError> {
        let key = match self.algorithm {
            Algorithm::HS256 => {
                if self.private_key_file.is_some() {
                    return err(
                        "tokens.private_key_file",
                        "is for EdDSA and RS256; HS256 uses secret_env or secret_file",
                    );
                }
                let from_env = self
                    .secret_env
                    .as_deref()
                    .and_then(|name| env(name).map(|v| (name.to_string(), v)));
                match (from_env, &self.secret_file) {
                    (Some((name, value)), _) => {
                        if value.trim().is_empty() {
                            return err(
                                "tokens.secret_env",
                                format!("the variable {name} is empty"),
                            );
                        }
                        KeySource::Secret(trim_secret(value.into_bytes()))
                    }
                    (None, Some(path)) => {
                        let secret = trim_secret(read_secret_file("tokens.secret_file", path)?);
                        if secret.is_empty() {
                            return err(
                                "tokens.secret_file",
                                format!("{} is empty", path.display()),
                            );
                        }
                        KeySource::Secret(secret)
                    }
                    (None, None) => KeySource::GeneratedSecret,
                }
            }
            Algorithm::EdDSA | Algorithm::RS256 => {
                if self.secret_file.is_some() {
                    return err(
                        "tokens.secret_file",
                        "is for HS256; EdDSA and RS256 use private_key_file",
                    );
                }
                match &self.private_key_file {
                    Some(path) => {
                        KeySource::PrivateKeyPem(read_secret_file("tokens.private_key_file", path)?)
                    }
                    None if self.algorithm == Algorithm::EdDSA => KeySource::GeneratedEd25519,
                    None => {
                        return err(
                            "tokens.private_key_file",
                            "RS256 needs a PEM private key file",
                        )
                    }
                }
            }
        };
        if self.issuer.is_empty() {
            return err("tokens.issuer", "must not be empty");
        }
        if self.audience.is_empty() {
            return err("tokens.audience", "must not be empty");
        }
        if self.access_ttl.0 < Duration::from_secs(1) {
            return err("tokens.access_ttl", "must be at least 1s");
        }
        if self.refresh_ttl.0 < self.access_ttl.0 {
            return err("tokens.refresh_ttl", "must be at least tokens.access_ttl");
        }
        if self.leeway.0 > Duration::from_secs(300) {
            return err("tokens.leeway", "must be at most 5m");
        }
        if self.verified_cache > 10_000_000 {
            return err("tokens.verified_cache", "must be at most 10000000");
        }
        Ok(TokenConfig {
            algorithm: self.algorithm,
            key,
            issuer: self.issuer,
            audience: self.audience,
            access_ttl: self.access_ttl.0,
            refresh_ttl: self.refresh_ttl.0,
            reuse_grace: self.reuse_grace.0,
            leeway: self.leeway.0,
            verified_cache: self.verified_cache,
        })
    }
}

impl RawAccounts {
    fn check(self) -> Result<AccountsConfig, ConfigError> {
        let default_role = self.default_role.trim().to_string();
        if default_role.is_empty() {
            return err("accounts.default_role", "must not be empty");
        }
        if !(1..=1024).contains(&self.password_min_length) {
            return err("accounts.password_min_length", "must be between 1 and 1024");
        }
        if self.login_throttle.max_failures == 0 {
            return err("accounts.login_throttle.max_failures", "must be at least 1");
        }
        if self.login_throttle.max_failures_per_ip == Some(0) {
            return err(
                "accounts.login_throttle.max_failures_per_ip",
                "must be at least 1",
            );
        }
        if self.login_throttle.max_failures_per_account == Some(0) {
            return err(
                "accounts.login_throttle.max_failures_per_account",
                "must be at least 1",
            );
        }
        if self.reset_throttle.max_requests == 0 || self.reset_throttle.max_requests_per_ip == 0 {
            return err(
                "accounts.reset_throttle",
                "max_requests and max_requests_per_ip must be at least 1",
            );
        }
        if self.reset_throttle.window.0.is_zero() {
            return err("accounts.reset_throttle.window", "must be longer than 0");
        }
        if self.reset_ttl.0 < Duration::from_secs(1) {
            return err("accounts.reset_ttl", "must be at least 1s");
        }
        if self.login_throttle.window.0.is_zero() {
            return err("accounts.login_throttle.window", "must be longer than 0");
        }
        let hash_workers = match self.hash_workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n if n > 256 => return err("accounts.hash_workers", "must be at most 256"),
            n => n,
        };
        Ok(AccountsConfig {
            default_role,
            password_min_length: self.password_min_length,
            login_throttle: ThrottleConfig {
                max_failures: self.login_throttle.max_failures,
                window: self.login_throttle.window.0,
                max_failures_per_ip: self
                    .login_throttle
                    .max_failures_per_ip
                    .unwrap_or(self.login_throttle.max_failures.saturating_mul(4)),
                max_failures_per_account: self
                    .login_throttle
                    .max_failures_per_account
                    .unwrap_or(self.login_throttle.max_failures.saturating_mul(10)),
            },
            reset_throttle: ResetThrottleConfig {
                max_requests: self.reset_throttle.max_requests,
                max_requests_per_ip: self.reset_throttle.max_requests_per_ip,
                window: self.reset_throttle.window.0,
            },
            reset_ttl: self.reset_ttl.0,
            hash_workers,
            hash_queue: self.hash_queue,
        })
    }
}

impl RawMailer {
    fn check(self, env: &dyn Fn(&str) -> Option<String>) -> Result<MailerConfig, ConfigError> {
        if !self.reset_url.contains("{token}") {
            return err("mailer.reset_url", "must contain {token}");
        }
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            return err(
                "mailer.from",
                format!(
                    "`{}` is not an address such as vigile <no-reply@example.com>",
                    self.from
                ),
            );
        }
        let smtp = match (self.kind, self.smtp) {
            (MailerKind::Smtp, None) => {
                return err("mailer.smtp", "is needed with kind: smtp (host, port, tls)")
            }
            (MailerKind::Smtp, Some(raw)) => Some(raw.check(env)?),
            (_, Some(_)) => return err("mailer.smtp", "is only read with kind: smtp"),
            (_, None) => None,
        };
        Ok(MailerConfig {
            kind: self.kind,
            dir: self.dir,
            reset_url: self.reset_url,
            from: self.from,
            smtp,
        })
    }
}

impl RawSmtp {
    fn check(self, env: &dyn Fn(&str) -> Option<String>) -> Result<SmtpConfig, ConfigError> {
        if self.host.trim().is_empty() {
            return err("mailer.smtp.host", "must not be empty");
        }
        let read = |key: &str, name: &Option<String>| -> Result<Option<String>, ConfigError> {
            match name {
                None => Ok(None),
                Some(var) => match env(var) {
                    Some(value) if !value.is_empty() => Ok(Some(value)),
                    _ => err(
                        &format!("mailer.smtp.{key}"),
                        format!("the variable {var} is not set"),
                    ),
                },
            }
        };
        let credentials = match (
            read("username_env", &self.username_env)?,
            read("password_env", &self.password_env)?,
        ) {
            (Some(user), Some(pass)) => Some((user, pass)),
            (None, None) => None,
            _ => return err("mailer.smtp", "username_env and password_env go together"),
        };
        let timeout = self.timeout.map_or(Duration::from_secs(10), |d| d.0);
        if timeout.is_zero() {
            return err("mailer.smtp.timeout", "must be longer than 0");
        }
        Ok(SmtpConfig {
            port: self.port.unwrap_or(match self.tls {
                SmtpTls::Starttls => 587,
                SmtpTls::Tls => 465,
                SmtpTls::None => 25,
            }),
            host: self.host,
            tls: self.tls,
            credentials,
            timeout,
        })
    }
}

impl RawCors {
    fn check(self) -> Result<CorsConfig, ConfigError> {
        for (i, origin) in self.allowed_origins.iter().enumerate() {
            let well_formed = origin == "*"
                || origin.split_once("://").is_some_and(|(scheme, rest)| {
                    (scheme == "http" || scheme == "https")
                        && !rest.is_empty()
                        && !rest.contains('/')
                });
            if !well_formed {
                return err(
                    &format!("cors.allowed_origins[{i}]"),
                    format!("`{origin}` is not an origin such as https://app.example.com (no path, no trailing /) or *"),
                );
            }
        }
        if self.allow_credentials && self.allowed_origins.iter().any(|o| o == "*") {
            return err(
                "cors.allow_credentials",
                "cannot be used with the origin *; list the origins",
            );
        }
        let mut methods = Vec::new();
        for m in &self.allowed_methods {
            let upper = m.to_ascii_uppercase();
            if !METHODS.contains(&upper.as_str()) {
                return err(
                    "cors.allowed_methods",
                    format!("`{m}` is not an HTTP method"),
                );
            }
            methods.push(upper);
        }
        for (key, list) in [
            ("allowed_headers", &self.allowed_headers),
            ("exposed_headers", &self.exposed_headers),
        ] {
            if let Some(bad) = list.iter().find(|h| !valid_header_name(h)) {
                return err(
                    &format!("cors.{key}"),
                    format!("`{bad}` is not a header name"),
                );
            }
        }
        Ok(CorsConfig {
            allowed_origins: self.allowed_origins,
            allowed_methods: methods,
            allowed_headers: self.allowed_headers,
            exposed_headers: self.exposed_headers,
            allow_credentials: self.allow_credentials,
            max_age: self.max_age.0,
        })
    }
}

impl RawIdentityHeaders {
    fn check(self) -> Result<IdentityHeaders, ConfigError> {
        let headers = IdentityHeaders {
            user_id: self.user_id,
            email: self.email,
            role: self.role,
            session_id: self.session_id,
        };
        let keys = ["user_id", "email", "role", "session_id"];
        let mut seen = BTreeSet::new();
        for (key, name) in keys.iter().zip(headers.all()) {
            if !valid_header_name(name) {
                return err(
                    &format!("identity_headers.{key}"),
                    format!("`{name}` is not a header name"),
                );
            }
            let lower = name.to_ascii_lowercase();
            if [
                "authorization",
                "host",
                "content-length",
                "transfer-encoding",
                "connection",
                "cookie",
                "x-request-id",
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-forwarded-host",
            ]
            .contains(&lower.as_str())
            {
                return err(
                    &format!("identity_headers.{key}"),
                    format!("`{name}` is a header the gateway forwards"),
                );
            }
            if !seen.insert(lower) {
                return err(
                    &format!("identity_headers.{key}"),
                    format!("`{name}` is used twice"),
                );
            }
        }
        Ok(headers)
    }
}

fn check_upstreams(
    raw: BTreeMap<String, RawUpstream>,
) -> Result<BTreeMap<String, UpstreamConfig>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, up) in raw {
        let key = format!("upstreams.{name}");
        if up.targets.is_empty() {
            return err(&format!("{key}.targets"), "needs at least one host:port");
        }
        let mut targets = Vec::with_capacity(up.targets.len());
        for (i, t) in up.targets.iter().enumerate() {
            let addr = t
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| {
                    ConfigError(format!("{key}.targets[{i}]: `{t}` is not a host:port"))
                })?;
            targets.push(addr);
        }
        let health_check = match up.health_check {
            None => None,
            Some(hc) => {
                if let Some(p) = &hc.path {
                    if !p.starts_with('/') {
                        return err(&format!("{key}.health_check.path"), "must start with /");
                    }
                }
                let interval = hc.interval.map_or(Duration::from_secs(5), |d| d.0);
                if interval < Duration::from_millis(100) {
                    return err(
                        &format!("{key}.health_check.interval"),
                        "must be at least 100ms",
                    );
                }
                Some(HealthCheckConfig {
                    path: hc.path,
                    interval,
                })
            }
        };
        let connect_timeout = up.connect_timeout.map_or(Duration::from_secs(2), |d| d.0);
        let read_timeout = up.read_timeout.map_or(Duration::from_secs(30), |d| d.0);
        if connect_timeout.is_zero() {
            return err(&format!("{key}.connect_timeout"), "must be longer than 0");
        }
        if read_timeout.is_zero() {
            return err(&format!("{key}.read_timeout"), "must be longer than 0");
        }
        out.insert(
            name,
            UpstreamConfig {
                targets,
                health_check,
                connect_timeout,
                read_timeout,
            },
        );
    }
    Ok(out)
}

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
];

fn check_routes(
    raw: Vec<RawRoute>,
    upstreams: &BTreeMap<String, UpstreamConfig>,
) -> Result<Vec<RouteConfig>, ConfigError> {
    let mut names = BTreeSet::new();
    let mut prefixes = BTreeSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let key = format!("routes[{i}]");
        if r.name.is_empty()
            || !r
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return err(
                &format!("{key}.name"),
                "must be letters, digits, '-', '_' or '.'",
            );
        }
        if !names.insert(r.name.clone()) {
            return err(
                &format!("{key}.name"),
                format!("`{}` is used by another route", r.name),
            );
        }
        if !r.prefix.starts_with('/') {
            return err(&format!("{key}.prefix"), "must start with /");
        }
        if r.prefix.contains(['?', '#', '%', '\\'])
            || r.prefix.contains("//")
            || r.prefix
                .split('/')
                .any(|segment| segment == "." || segment == "..")
        {
            return err(
                &format!("{key}.prefix"),
                format!(
                    "`{}` is not a normalized path (no `//`, `.` or `..` segment, `%`, `?`, `#` or `\\`): requests are matched after normalization",
                    r.prefix
                ),
            );
        }
        if r.prefix.starts_with("/api/accounts") {
            return err(
                &format!("{key}.prefix"),
                format!(
                    "`{}` is under /api/accounts/, which the gateway answers itself",
                    r.prefix
                ),
            );
        }
        if !prefixes.insert(r.prefix.clone()) {
            return err(
                &format!("{key}.prefix"),
                format!("`{}` is used by another route", r.prefix),
            );
        }
        if !upstreams.contains_key(&r.upstream) {
            let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
            return err(
                &format!("{key}.upstream"),
                format!(
                    "unknown upstream `{}` (known: {})",
                    r.upstream,
                    known.join(", ")
                ),
            );
        }
        if !r.roles.is_empty() && r.auth != AuthMode::Required {
            return err(&format!("{key}.roles"), "needs auth: required");
        }
        let mut methods = Vec::with_capacity(r.methods.len());
        for m in &r.methods {
            let upper = m.to_ascii_uppercase();
            if !METHODS.contains(&upper.as_str()) {
                return err(
                    &format!("{key}.methods"),
                    format!("`{m}` is not an HTTP method"),
                );
            }
            methods.push(upper);
        }
        out.push(RouteConfig {
            name: r.name,
            prefix: r.prefix,
            upstream: r.upstream,
            auth: r.auth,
            roles: r.roles,
            strip_prefix: r.strip_prefix,
            forward_authorization: r.forward_authorization,
            methods,
            websocket: r.websocket,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn load(yaml: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(yaml, &no_env)
    }

    const SAMPLE: &str = include_str!("../../config/vigile.yaml");

    #[test]
    fn the_sample_config_loads() {
        let cfg = load(SAMPLE).expect("sample config");
        assert_eq!(cfg.routes.len(), 2);
        assert!(cfg.upstreams.contains_key("stocks"));
        assert_eq!(cfg.tokens.access_ttl, Duration::from_secs(300));
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let cfg = load("").expect("defaults");
        assert_eq!(cfg.server.listen.port(), 8080);
        assert_eq!(cfg.accounts.default_role, "Visiteur");
        assert!(matches!(cfg.tokens.key, KeySource::GeneratedSecret));
    }

    fn refusal(yaml: &str) -> String {
        load(yaml).expect_err("should be refused").0
    }

    #[test]
    fn unknown_keys_are_named() {
        assert!(refusal("server:\n  lisen: 1.2.3.4:5\n").contains("lisen"));
        assert!(refusal("bogus: 1\n").contains("bogus"));
        let msg = refusal("tokens:\n  acess_ttl: 5m\n");
        assert!(msg.contains("tokens") && msg.contains("acess_ttl"), "{msg}");
    }

    #[test]
    fn bad_durations_are_named() {
        let msg = refusal("tokens:\n  access_ttl: 5 minutes\n");
        assert!(
            msg.contains("tokens.access_ttl") || msg.contains("access_ttl"),
            "{msg}"
        );
    }

    #[test]
    fn bad_listen_addresses_are_named() {
        assert!(refusal("server:\n  listen: localhost\n").starts_with("server.listen:"));
        assert!(refusal("admin:\n  listen: 300.1.1.1:80\n").starts_with("admin.listen:"));
    }

    #[test]
    fn unknown_upstreams_are_named() {
        let yaml = "routes:\n  - {name: a, prefix: /api/a/, upstream: nowhere}\nupstreams:\n  b: {targets: ['127.0.0.1:1']}\n";
        let msg = refusal(yaml);
        assert!(
            msg.starts_with("routes[0].upstream:") && msg.contains("nowhere"),
            "{msg}"
        );
    }

    #[test]
    fn unreadable_secrets_are_named() {
        let msg = refusal("tokens:\n  secret_env: NOPE\n  secret_file: /nonexistent/secret\n");
        assert!(msg.starts_with("tokens.secret_file:"), "{msg}");
        let msg = refusal("tokens:\n  algorithm: RS256\n");
        assert!(msg.starts_with("tokens.private_key_file:"), "{msg}");
    }

    #[test]
    fn secrets_come_from_the_environment() {
        let env = |name: &str| (name == "MY_SECRET").then(|| "s3cret\n".to_string());
        let cfg = Config::from_yaml("tokens:\n  secret_env: MY_SECRET\n", &env).expect("config");
        assert!(matches!(cfg.tokens.key, KeySource::Secret(ref s) if s == b"s3cret"));
    }

    #[test]
    fn cors_origins_are_checked() {
        assert!(
            refusal("cors:\n  allowed_origins: ['http://localhost:3000/']\n")
                .starts_with("cors.allowed_origins[0]:")
        );
        assert!(
            refusal("cors:\n  allowed_origins: ['*']\n  allow_credentials: true\n")
                .starts_with("cors.allow_credentials:")
        );
        let cfg =
            load("cors:\n  allowed_origins: ['https://app.example.com', '*']\n").expect("config");
        assert_eq!(cfg.cors.allowed_origins.len(), 2);
    }

    #[test]
    fn routes_may_not_cover_the_account_api() {
        let yaml = "routes:\n  - {name: a, prefix: /api/accounts/x/, upstream: b}\nupstreams:\n  b: {targets: ['127.0.0.1:1']}\n";
        assert!(refusal(yaml).starts_with("routes[0].prefix:"));
    }
}
