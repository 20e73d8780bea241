//! `deploy/grafana/vigile.json`: a real Prometheus (Debian's package) scrapes
//! two real gateways sharing a PostgreSQL database (the revocation lag only
//! exists between replicas) under a little traffic that makes every panel's
//! series exist; then every panel query runs through Prometheus's HTTP API
//! (`/api/v1/query`) and must parse and return at least one series with a
//! number.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::config::{Route, Upstream};
use crate::common::{agent, free_port, pg, Gateway, Options};
use crate::tools::{read, tool};

/// A Prometheus server on a loopback port, stopped on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes the admin listeners `targets` every second as job `vigile`.
    fn start(targets: &[SocketAddr]) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: vigile\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        prometheus.wait_until("ready", Duration::from_secs(30), || {
            agent()
                .get(format!("http://{addr}/-/ready"))
                .call()
                .is_ok_and(|r| r.status() == 200)
        });
        prometheus
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    fn wait_until(&self, what: &str, limit: Duration, done: impl Fn() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < limit,
                "prometheus: not {what} within {limit:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn build_version(&self) -> String {
        agent()
            .get(format!("http://{}/api/v1/status/buildinfo", self.addr))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
            .map(|v| v["data"]["version"].to_string())
            .unwrap_or_default()
    }

    /// An instant query: Prometheus's whole answer.
    fn query(&self, expr: &str) -> Value {
        let mut response = agent()
            .get(format!("http://{}/api/v1/query", self.addr))
            .query("query", expr)
            .call()
            .expect("prometheus answers");
        let text = response.body_mut().read_to_string().unwrap_or_default();
        serde_json::from_str(&text).unwrap_or_else(|_| json!({"status": "error", "error": text}))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A panel query as Grafana sends it with job `vigile`, every instance and
/// a rate window that covers the traffic.
fn as_sent(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$job", "vigile")
        .replace("$instance", ".*")
}

/// Every (panel title, query) of the dashboard, rows' nested panels too.
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .collect();
    while let Some(panel) = stack.pop() {
        stack.extend(panel["panels"].as_array().into_iter().flatten());
        for target in panel["targets"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or_default().to_string();
            let expr = target["expr"]
                .as_str()
                .expect("a PromQL target")
                .to_string();
            out.push((title, expr));
        }
    }
    out
}

/// One round of traffic that touches every panel's series: accounts,
/// logins good, bad and throttled, proxied requests with and without a
/// valid token, an upstream that refuses connections, refreshes, a reset
/// mail, a logout (revoked on the other replica) and a burst of logins
/// that overflows `a`'s one hashing thread.
fn traffic(a: &Gateway, b: &Gateway, round: usize) {
    let password = "Correct-Horse-42";
    let email = format!("user{round}@example.com");
    let tokens = a.register_and_login(&email, password);
    let access = tokens["access"].as_str().expect("access");
    for gw in [a, b] {
        assert_eq!(gw.get("/api/stocks/x", Some(access)).status, 200);
        assert_eq!(gw.get("/api/stocks/y", Some(access)).status, 200);
        assert_eq!(gw.get("/api/stocks/x", None).status, 401);
        assert_eq!(gw.get("/api/stocks/x", Some("not.a.token")).status, 401);
        assert!(gw.get("/api/down/x", Some(access)).status >= 500);
    }
    let refresh = a.post(
        "/api/accounts/refresh/",
        &json!({"refresh": tokens["refresh"]}),
        None,
    );
    assert_eq!(refresh.status, 200, "{}", refresh.text);
    let bad = a.post("/api/accounts/refresh/", &json!({"refresh": "nope"}), None);
    assert_eq!(bad.status, 401, "{}", bad.text);
    let forgotten = json!({ "email": email });
    assert_eq!(
        a.post("/api/accounts/password-forgotten/", &forgotten, None)
            .status,
        202
    );
    // Wrong passwords on b until its login throttle answers 429.
    let victim = format!("victim{round}@example.com");
    b.register_and_login(&victim, password);
    let wrong = json!({"email": victim, "password": "Wrong-Horse-42"});
    let statuses: Vec<u16> = (0..6)
        .map(|_| b.post("/api/accounts/login/", &wrong, None).status)
        .collect();
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // A logout on a: b learns of it through the database.
    let logout = a.post("/api/accounts/logout/", &json!({}), Some(access));
    assert!(logout.status < 300, "logout: {}", logout.text);
    let start = Instant::now();
    while b.get("/api/stocks/x", Some(access)).status != 401 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "b never saw the logout"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Six logins and six registrations at once on a, whose hashing pool is
    // one thread and one queued job: the rest answer 503 overloaded.
    let login = json!({"email": email, "password": password});
    for attempt in 0..5 {
        let barrier = Arc::new(Barrier::new(12));
        let statuses: Vec<(bool, u16)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..12)
                .map(|i| {
                    let barrier = Arc::clone(&barrier);
                    let login = &login;
                    s.spawn(move || {
                        let register = json!({"email": format!("burst{round}-{attempt}-{i}@example.com"),
                            "password": password, "first_name": "Jean", "last_name": "Dupont",
                            "gender": "H"});
                        barrier.wait();
                        if i % 2 == 0 {
                            (true, a.post("/api/accounts/login/", login, None).status)
                        } else {
                            (false, a.post("/api/accounts/register/", &register, None).status)
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("burst thread"))
                .collect()
        });
        let overloaded = |login: bool| statuses.contains(&(login, 503));
        if overloaded(true) && overloaded(false) {
            return;
        }
    }
    panic!("the hashing pool never refused both a login and a registration");
}

#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let dashboard: Value =
        serde_json::from_str(&read("deploy/grafana/vigile.json")).expect("the dashboard is JSON");
    let queries = panel_queries(&dashboard);
    assert!(queries.len() >= 20, "{} queries", queries.len());

    let url = pg::database();
    // An upstream whose one target refuses connections.
    let down: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let replica = |hash_workers: usize| {
        Gateway::start_with(
            Options::default()
                .store(|s| {
                    s.postgres(&url)
                        .sync_interval(Duration::from_millis(200))
                        .purge_interval(Duration::from_secs(1))
                })
                .accounts(|a| a.hash_workers(hash_workers).hash_queue(1))
                .route(Route::new("down", "/api/down/", "down"))
                .upstream("down", Upstream::new([down])),
        )
    };
    let (a, b) = (replica(1), replica(2));
    let prometheus = Prometheus::start(&[a.admin, b.admin]);
    eprintln!("prometheus {}", prometheus.build_version());
    prometheus.wait_until("scraping both gateways", Duration::from_secs(20), || {
        prometheus.query("up{job=\"vigile\"} == 1")["data"]["result"]
            .as_array()
            .is_some_and(|r| r.len() == 2)
    });
    // Three rounds a few scrapes apart, so that every counter moves between
    // scrapes and every rate is a number.
    for round in 0..3 {
        traffic(&a, &b, round);
        std::thread::sleep(Duration::from_millis(1500));
    }
    a.wait_for_mails(3);
    std::thread::sleep(Duration::from_secs(3));

    let mut failures = Vec::new();
    for (title, expr) in &queries {
        let sent = as_sent(expr);
        let answer = prometheus.query(&sent);
        let result = &answer["data"]["result"];
        let numbers = result.as_array().map_or(0, |series| {
            series
                .iter()
                .filter(|s| {
                    s["value"][1]
                        .as_str()
                        .and_then(|v| v.parse::<f64>().ok())
                        .is_some_and(f64::is_finite)
                })
                .count()
        });
        if answer["status"] != "success" || numbers == 0 {
            failures.push(format!("{title}: {sent}\n  -> {answer}"));
        }
    }
    // The variables' queries (label_values of vigile_config_info) find the
    // job and both instances.
    let info = prometheus.query("vigile_config_info{job=\"vigile\"}");
    let instances = info["data"]["result"].as_array().map_or(0, Vec::len);
    if instances != 2 {
        failures.push(format!("vigile_config_info: {info}"));
    }
    assert!(
        failures.is_empty(),
        "{} of {} panel queries returned no data:\n{}",
        failures.len(),
        queries.len(),
        failures.join("\n")
    );
    eprintln!("{} panel queries returned data", queries.len());
}
