//! End-to-end harness: starts the real `vigile` binary with a temporary
//! config, store and secret on free loopback ports, in front of real
//! `vigile-demo-upstream` processes, and talks HTTP to it.

pub mod config;
/// The test PostgreSQL server the store's own tests use.
#[path = "../../../src/store/postgres/testing.rs"]
pub mod pg;
pub mod relay;
pub mod scripted;
pub mod tls;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const SECRET: &str = "test-secret-test-secret-test-secret-0123456789";

pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct free ports: the listeners are held until all are chosen.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    let mut ports = [0u16; N];
    for (port, l) in ports.iter_mut().zip(&listeners) {
        *port = l.local_addr().expect("addr").port();
    }
    ports
}

/// Waits until `child` listens on `addr`; if it exits first, the panic
/// quotes its log (`log`), which says why.
fn wait_for_port(addr: SocketAddr, child: &mut Child, what: &str, log: Option<&Path>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let said = log
                .and_then(|l| std::fs::read_to_string(l).ok())
                .unwrap_or_default();
            panic!("{what} exited early: {status}\n{said}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on {addr}");
}

/// A running `vigile-demo-upstream` (it echoes what it receives as JSON);
/// killed on drop.
pub struct DemoUpstream {
    child: Child,
    pub addr: SocketAddr,
}

impl DemoUpstream {
    pub fn start(name: &str) -> DemoUpstream {
        DemoUpstream::start_on(name, free_port())
    }

    pub fn start_on(name: &str, port: u16) -> DemoUpstream {
        DemoUpstream::start_with(name, port, &[])
    }

    /// Over TLS with `cert` and `key`, requiring a client certificate of
    /// `client_ca` when given.
    pub fn start_tls(
        name: &str,
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
    ) -> DemoUpstream {
        let mut args = vec!["--tls-cert", path_str(cert), "--tls-key", path_str(key)];
        if let Some(ca) = client_ca {
            args.extend(["--client-ca", path_str(ca)]);
        }
        DemoUpstream::start_with(name, free_port(), &args)
    }

    fn start_with(name: &str, port: u16, extra: &[&str]) -> DemoUpstream {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigile-demo-upstream"))
            .args(["--listen", &addr.to_string(), "--name", name])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the demo upstream");
        wait_for_port(addr, &mut child, "the demo upstream", None);
        DemoUpstream { child, addr }
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

impl Drop for DemoUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the gateway forwards plain reads itself (`server.direct_path`):
/// `VIGILE_TEST_DIRECT_PATH=false` runs the suite with every request on
/// Pingora's proxy path; unset or `true`, vigile's default.
pub fn direct_path() -> bool {
    match std::env::var("VIGILE_TEST_DIRECT_PATH").as_deref() {
        Err(_) | Ok("true") => true,
        Ok("false") => false,
        Ok(other) => panic!("VIGILE_TEST_DIRECT_PATH={other}: true or false"),
    }
}

/// The store a gateway gets when its test names none: `VIGILE_TEST_STORE=
/// postgres` runs the suite on the test PostgreSQL server (`pg`), a fresh
/// database for each gateway; unset or `redb`, vigile's default.
pub fn test_store() -> config::StoreKind {
    match std::env::var("VIGILE_TEST_STORE").as_deref() {
        Err(_) | Ok("redb") => config::StoreKind::Redb,
        Ok("postgres") => config::StoreKind::Postgres,
        Ok(other) => panic!("VIGILE_TEST_STORE={other}: redb or postgres"),
    }
}

/// What a test may change in the gateway's configuration. The harness adds
/// the listeners, the store, the secret file, the `stocks` and `jobs`
/// routes and upstreams and, unless `mailer` says otherwise, the outbox.
pub struct Options {
    pub server: config::Server,
    pub store: config::Store,
    pub tokens: config::Tokens,
    pub accounts: config::Accounts,
    /// `None`: one `.eml` file per message in `Gateway::outbox`.
    pub mailer: Option<config::Mailer>,
    pub migration: Option<config::Migration>,
    /// `audit.file`: `audit.log` in the gateway's folder (`Gateway::audit_path`).
    pub audit_file: bool,
    /// Added after `stocks` and `jobs`.
    pub routes: Vec<config::Route>,
    /// Added beside `stocks` and `jobs`.
    pub upstreams: BTreeMap<String, config::Upstream>,
    /// `RUST_LOG` of the gateway process.
    pub rust_log: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            server: config::Server {
                threads: Some(2),
                grace_period: Some(Duration::from_secs(1)),
                log_format: Some(config::LogFormat::Text),
                direct_path: Some(direct_path()),
                ..config::Server::default()
            },
            store: config::Store::default(),
            tokens: config::Tokens {
                algorithm: Some(config::Algorithm::HS256),
                secret_env: Some("VIGILE_TEST_UNSET_SECRET".into()),
                ..config::Tokens::default()
            }
            .access_ttl(Duration::from_secs(300))
            .reuse_grace(Duration::from_secs(2)),
            accounts: config::Accounts {
                login_throttle: Some(
                    config::Throttle::default()
                        .max_failures(5)
                        .window(Duration::from_secs(15 * 60)),
                ),
                ..config::Accounts::default()
            },
            mailer: None,
            migration: None,
            audit_file: false,
            routes: Vec::new(),
            upstreams: BTreeMap::new(),
            rust_log: "info",
        }
    }
}

impl Options {
    pub fn server(mut self, change: impl FnOnce(config::Server) -> config::Server) -> Self {
        self.server = change(self.server);
        self
    }

    pub fn store(mut self, change: impl FnOnce(config::Store) -> config::Store) -> Self {
        self.store = change(self.store);
        self
    }

    pub fn tokens(mut self, change: impl FnOnce(config::Tokens) -> config::Tokens) -> Self {
        self.tokens = change(self.tokens);
        self
    }

    pub fn accounts(mut self, change: impl FnOnce(config::Accounts) -> config::Accounts) -> Self {
        self.accounts = change(self.accounts);
        self
    }

    pub fn mailer(mut self, mailer: config::Mailer) -> Self {
        self.mailer = Some(mailer);
        self
    }

    pub fn migration(mut self, migration: config::Migration) -> Self {
        self.migration = Some(migration);
        self
    }

    /// Writes the audit log to `Gateway::audit_path` too.
    pub fn audit_file(mut self) -> Self {
        self.audit_file = true;
        self
    }

    pub fn route(mut self, route: config::Route) -> Self {
        self.routes.push(route);
        self
    }

    pub fn upstream(mut self, name: &str, upstream: config::Upstream) -> Self {
        self.upstreams.insert(name.to_string(), upstream);
        self
    }

    pub fn rust_log(mut self, rust_log: &'static str) -> Self {
        self.rust_log = rust_log;
        self
    }
}

/// A running gateway; stopped on drop. Its folder holds config, store, log.
pub struct Gateway {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// `stocks` and `jobs`, stopped with the gateway.
    _upstreams: Vec<DemoUpstream>,
    agent: ureq::Agent,
    rust_log: &'static str,
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        // A kept-alive connection idle for longer is not used again: the
        // gateway closes one idle for `server.header_timeout` (1 s or
        // more in these tests), and a request sent just as it does gets
        // the 408 of a head cut short (a test that waits that long between
        // two requests raced it once).
        .max_idle_age(Duration::from_millis(500))
        .build()
        .into()
}

impl Gateway {
    pub fn start() -> Gateway {
        Gateway::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Gateway {
        let mut gw = Gateway::prepare(options);
        gw.launch();
        gw
    }

    /// `start_with`, once `seed` has written into the gateway's store (the
    /// one its configuration names, opened through the library), as an
    /// import before the first start would.
    pub fn start_seeded(options: Options, seed: impl FnOnce(&vigile::store::Store)) -> Gateway {
        let mut gw = Gateway::prepare(options);
        let config = vigile::config::Config::load(&gw.config_path()).expect("the config");
        let store = vigile::store::open(&config.store, 300).expect("the store");
        seed(store.as_ref());
        store.close();
        drop(store);
        gw.launch();
        gw
    }

    /// The gateway's folder, configuration and upstreams, not started yet.
    fn prepare(options: Options) -> Gateway {
        let stocks = DemoUpstream::start("stocks");
        let jobs = DemoUpstream::start("jobs");
        let dir = tempfile::tempdir().expect("tempdir");
        let [port, admin_port] = free_ports::<2>();
        // The proxy's listener: the test's own, or one on a free port.
        let addr: SocketAddr = options
            .server
            .listen
            .unwrap_or_else(|| format!("127.0.0.1:{port}").parse().expect("addr"));
        let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().expect("addr");
        std::fs::write(dir.path().join("jwt.secret"), SECRET).expect("secret");
        let mut routes = vec![
            config::Route::new("stocks", "/api/stocks/", "stocks"),
            config::Route::new("jobs", "/api/jobs/", "jobs").roles(["Visiteur", "Admin"]),
        ];
        routes.extend(options.routes);
        let mut upstreams = options.upstreams;
        upstreams.insert("stocks".into(), config::Upstream::new([stocks.addr]));
        upstreams.insert("jobs".into(), config::Upstream::new([jobs.addr]));
        config::Config {
            server: Some(config::Server {
                listen: Some(addr),
                ..options.server
            }),
            admin: Some(config::Admin { listen: admin }),
            store: Some(config::Store {
                path: Some(dir.path().join("data/vigile.redb")),
                ..match options.store.kind {
                    None if test_store() == config::StoreKind::Postgres => {
                        options.store.postgres(&pg::database())
                    }
                    _ => options.store,
                }
            }),
            tokens: Some(config::Tokens {
                secret_file: (options.tokens.algorithm != Some(config::Algorithm::EdDSA))
                    .then(|| dir.path().join("jwt.secret")),
                ..options.tokens
            }),
            accounts: Some(options.accounts),
            mailer: Some(
                options
                    .mailer
                    .unwrap_or_else(|| config::Mailer::outbox(dir.path().join("data/outbox"))),
            ),
            cors: Some(config::Cors {
                allowed_origins: vec!["http://localhost:3000".into()],
            }),
            migration: options.migration,
            audit: options.audit_file.then(|| config::Audit {
                file: Some(dir.path().join("audit.log")),
            }),
            routes,
            upstreams,
        }
        .write(&dir.path().join("vigile.yaml"));
        Gateway {
            child: None,
            dir,
            addr,
            admin,
            _upstreams: vec![stocks, jobs],
            agent: agent(),
            rust_log: options.rust_log,
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("vigile.yaml")
    }

    /// `audit.file` (with `Options::audit_file`).
    pub fn audit_path(&self) -> PathBuf {
        self.dir.path().join("audit.log")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("vigile.log")
    }

    pub fn outbox(&self) -> PathBuf {
        self.dir.path().join("data/outbox")
    }

    /// The `.eml` files in the outbox, oldest first.
    pub fn mails(&self) -> Vec<String> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.outbox())
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        paths.sort();
        paths
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .collect()
    }

    /// Waits until the outbox holds `n` mails (the worker sends off the request path).
    pub fn wait_for_mails(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mails = self.mails();
            if mails.len() >= n || Instant::now() > deadline {
                return mails;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigile"))
            .args(["serve", "--config"])
            .arg(self.config_path())
            .env("RUST_LOG", self.rust_log)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start vigile");
        let log = self.log_path();
        wait_for_port(self.admin, &mut child, "vigile", Some(&log));
        wait_for_port(self.addr, &mut child, "vigile", Some(&log));
        self.child = Some(child);
    }

    /// Kills the process without any chance to clean up (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("a running gateway").id()
    }

    /// Waits for the process to end; returns its status and how long it took.
    pub fn wait(&mut self) -> (std::process::ExitStatus, Duration) {
        let mut child = self.child.take().expect("a running gateway");
        let started = Instant::now();
        let status = child.wait().expect("wait");
        (status, started.elapsed())
    }

    /// SIGTERM; returns the exit status and how long the process took to go.
    pub fn terminate(&mut self) -> (std::process::ExitStatus, Duration) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        self.wait()
    }

    /// SIGKILL, then start again on the same config and store.
    pub fn restart_after_kill(&mut self) {
        self.kill();
        self.launch();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Runs the `vigile` command line against this gateway's config.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        cli(&self.config_path(), args, stdin)
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Resp {
        send(&self.agent, method, &self.url(path), headers, body)
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Resp {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        self.request("GET", path, &headers, None)
    }

    pub fn post(&self, path: &str, body: &Value, token: Option<&str>) -> Resp {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        self.request("POST", path, &headers, Some(&body.to_string()))
    }

    /// One series of the gateway's metrics (`name` or `name{labels}`);
    /// panics when it is not there.
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.admin_get("/metrics").text;
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
    }

    pub fn admin_get(&self, path: &str) -> Resp {
        send(
            &self.agent,
            "GET",
            &format!("http://{}{path}", self.admin),
            &[],
            None,
        )
    }

    /// Registers an account (seed fields) and logs in; returns the login body.
    pub fn register_and_login(&self, email: &str, password: &str) -> Value {
        let r = self.post(
            "/api/accounts/register/",
            &serde_json::json!({"email": email, "password": password, "first_name": "Jean",
                "last_name": "Dupont", "gender": "H"}),
            None,
        );
        assert_eq!(r.status, 201, "register: {}", r.text);
        self.login(email, password)
    }

    pub fn login(&self, email: &str, password: &str) -> Value {
        let r = self.post(
            "/api/accounts/login/",
            &serde_json::json!({"email": email, "password": password}),
            None,
        );
        assert_eq!(r.status, 200, "login: {}", r.text);
        r.json
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn cli(config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigile"))
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vigile");
    if let Some(mut input) = child.stdin.take() {
        if let Some(text) = stdin {
            let _ = input.write_all(text.as_bytes());
        }
    }
    child.wait_with_output().expect("vigile output")
}

/// A response: status, headers (lower-case names), body text and JSON.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
    pub json: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn code(&self) -> &str {
        self.json["code"].as_str().unwrap_or("")
    }
}

pub fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(body.unwrap_or("").to_string())
        .expect("request");
    let mut response = agent.run(request).expect("the gateway answers");
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        text,
        json,
    }
}

/// The reset token of a reset mail's link.
pub fn reset_token_of(mail: &str) -> String {
    let start = mail.find("token=").expect("a link in the mail") + "token=".len();
    mail[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// Signs arbitrary claims with the test secret (HS256), for forged tokens.
pub fn sign(claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

/// The claims of a token, without checking it.
pub fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64");
    serde_json::from_slice(&bytes).expect("json")
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A connection from a chosen loopback address (127.0.0.2, ...), reads
/// bounded by 20 s.
pub fn connect_from(local: std::net::IpAddr, to: SocketAddr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::new(local, 0).into())
        .expect("bind the client address");
    socket.connect(&to.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream
}

/// One HTTP/1.1 request from a chosen loopback address (127.0.0.2, ...), so
/// tests can play several clients. Returns the status and the JSON body.
pub fn post_from(
    local: std::net::IpAddr,
    gateway: SocketAddr,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    use std::io::Read;
    let mut stream = connect_from(local, gateway);
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {gateway}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let json = response
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
}
