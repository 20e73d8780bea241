//! What an operator relies on in front of real backends: load balancing and
//! health checks, timeouts, header hygiene, CORS, metrics, access log, drain.

use std::time::Duration;

use crate::common::config::{Auth, HealthCheck, LogFormat, Route, Upstream};
use crate::common::{self, DemoUpstream, Gateway, Options};
use serde_json::{json, Value};

fn pool_options(a: &DemoUpstream, b: &DemoUpstream, health: Option<HealthCheck>) -> Options {
    let pool = Upstream::new([a.addr, b.addr]).read_timeout(Duration::from_millis(500));
    Options::default()
        .route(Route::new("pool", "/api/pool/", "pool").auth(Auth::None))
        .upstream(
            "pool",
            match health {
                Some(health) => pool.health_check(health),
                None => pool,
            },
        )
}

fn served_by(gw: &Gateway, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let r = gw.get("/api/pool/x", None);
            assert_eq!(r.status, 200, "{}", r.text);
            r.json["service"].as_str().unwrap_or("").to_string()
        })
        .collect()
}

#[test]
fn requests_are_spread_round_robin_over_targets() {
    let (a, b) = (DemoUpstream::start("a"), DemoUpstream::start("b"));
    let gw = Gateway::start_with(pool_options(&a, &b, None));
    let served = served_by(&gw, 10);
    let on_a = served.iter().filter(|s| *s == "a").count();
    assert_eq!((on_a, 10 - on_a), (5, 5), "{served:?}");
}

#[test]
fn a_dead_target_leaves_the_pool_and_comes_back() {
    let a = DemoUpstream::start("a");
    let b = DemoUpstream::start("b");
    let b_port = b.addr.port();
    let gw = Gateway::start_with(pool_options(
        &a,
        &b,
        Some(HealthCheck {
            path: Some("/health".into()),
            interval: Some(Duration::from_millis(200)),
        }),
    ));
    assert!(served_by(&gw, 4).iter().any(|s| s == "b"));
    drop(b);
    std::thread::sleep(Duration::from_millis(700));
    let served = served_by(&gw, 6);
    assert!(served.iter().all(|s| s == "a"), "{served:?}");
    let metrics = gw.admin_get("/metrics").text;
    assert!(
        metrics.contains(r#"vigile_upstream_healthy_targets{upstream="pool"} 1"#)
            || metrics.contains("pool")
    );

    let _b = DemoUpstream::start_on("b", b_port);
    std::thread::sleep(Duration::from_millis(700));
    assert!(served_by(&gw, 6).iter().any(|s| s == "b"), "b is back");
}

#[test]
fn readyz_says_when_an_upstream_has_no_healthy_target() {
    let a = DemoUpstream::start("a");
    let b = DemoUpstream::start("b");
    let gw = Gateway::start_with(pool_options(
        &a,
        &b,
        Some(HealthCheck {
            path: None,
            interval: Some(Duration::from_millis(200)),
        }),
    ));
    assert_eq!(gw.admin_get("/readyz").status, 200);
    assert_eq!(gw.admin_get("/healthz").json, json!({"status": "ok"}));
    drop(a);
    drop(b);
    std::thread::sleep(Duration::from_millis(700));
    let r = gw.admin_get("/readyz");
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.json["upstreams_without_healthy_target"], json!(["pool"]));
    let r = gw.get("/api/pool/x", None);
    assert_eq!(
        (r.status, r.code()),
        (502, "upstream_unavailable"),
        "{}",
        r.text
    );
}

#[test]
fn a_slow_upstream_answers_504_json() {
    let (a, b) = (DemoUpstream::start("a"), DemoUpstream::start("b"));
    let gw = Gateway::start_with(pool_options(&a, &b, None));
    // The upstream would answer after 3 s; the route's read timeout is 500 ms.
    let r = gw.get("/api/pool/x?delay_ms=3000", None);
    assert_eq!(
        (r.status, r.code()),
        (504, "upstream_timeout"),
        "{}",
        r.text
    );
    let metrics = gw.admin_get("/metrics").text;
    assert!(
        metrics.contains(r#"vigile_upstream_errors_total{kind="timeout",upstream="pool"} 1"#),
        "{metrics}"
    );
}

#[test]
fn hop_by_hop_and_forwarding_headers_are_handled() {
    let gw = Gateway::start();
    let login = gw.register_and_login("dev@example.com", "motdepasse123");
    let bearer = format!("Bearer {}", login["access"].as_str().expect("access"));
    let r = gw.request(
        "GET",
        "/api/stocks/",
        &[
            ("Authorization", &bearer),
            ("Connection", "keep-alive, X-Private-Hop"),
            ("X-Private-Hop", "secret"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-For", "203.0.113.9"),
        ],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let h = &r.json["headers"];
    for gone in ["x-private-hop", "keep-alive", "proxy-authorization"] {
        assert!(h.get(gone).is_none(), "{gone} reached the upstream: {h}");
    }
    assert_eq!(h["x-forwarded-proto"], json!(["http"]));
    assert_eq!(h["x-forwarded-host"], json!([format!("{}", gw.addr)]));
    assert_eq!(h["x-forwarded-for"], json!(["203.0.113.9, 127.0.0.1"]));
    let id = h["x-request-id"][0].as_str().expect("request id");
    assert_eq!(
        r.header("x-request-id"),
        Some(id),
        "the client sees the id the upstream saw"
    );
}

#[test]
fn cors_preflights_and_responses() {
    let gw = Gateway::start();
    let origin = "http://localhost:3000";
    for path in ["/api/stocks/", "/api/accounts/login/"] {
        let r = gw.request(
            "OPTIONS",
            path,
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "content-type, authorization",
                ),
            ],
            None,
        );
        assert_eq!(r.status, 204, "{path}: {}", r.text);
        assert_eq!(r.header("access-control-allow-origin"), Some(origin));
        assert!(r
            .header("access-control-allow-methods")
            .is_some_and(|m| m.contains("POST")));
        assert!(r
            .header("access-control-allow-headers")
            .is_some_and(|h| h.to_lowercase().contains("authorization")));
        assert!(r.header("access-control-max-age").is_some());
    }
    let r = gw.request(
        "OPTIONS",
        "/api/stocks/",
        &[
            ("Origin", "http://evil.example"),
            ("Access-Control-Request-Method", "GET"),
        ],
        None,
    );
    assert_eq!((r.status, r.code()), (403, "cors_forbidden"));
    assert!(r.header("access-control-allow-origin").is_none());

    // A browser's actual login from the allowed origin, as the seed's fetch does.
    let r = gw.request(
        "POST",
        "/api/accounts/register/",
        &[("Origin", origin), ("Content-Type", "application/json")],
        Some(r#"{"email":"a@example.com","password":"motdepasse123","first_name":"A","last_name":"B"}"#),
    );
    assert_eq!(r.status, 201);
    assert_eq!(r.header("access-control-allow-origin"), Some(origin));
    let r = gw.request(
        "POST",
        "/api/accounts/login/",
        &[("Origin", origin), ("Content-Type", "application/json")],
        Some(r#"{"email":"a@example.com","password":"motdepasse123"}"#),
    );
    assert_eq!(r.header("access-control-allow-origin"), Some(origin));
    let bearer = format!("Bearer {}", r.json["access"].as_str().expect("access"));
    let r = gw.request(
        "GET",
        "/api/stocks/",
        &[("Origin", origin), ("Authorization", &bearer)],
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some(origin));
    assert!(r.header("access-control-expose-headers").is_some());
    // Another origin gets its answer, but no CORS header: the browser withholds it.
    let r = gw.request(
        "GET",
        "/api/stocks/",
        &[
            ("Origin", "http://evil.example"),
            ("Authorization", &bearer),
        ],
        None,
    );
    assert!(r.header("access-control-allow-origin").is_none());
}

#[test]
fn metrics_count_a_known_sequence_exactly() {
    let gw = Gateway::start();
    let login = gw.register_and_login("dev@example.com", "motdepasse123");
    let access = login["access"].as_str().expect("access");
    gw.get("/api/stocks/", Some(access));
    gw.get("/api/stocks/a", Some(access));
    gw.get("/api/stocks/", None);
    gw.post(
        "/api/accounts/login/",
        &json!({"email": "dev@example.com", "password": "bad"}),
        None,
    );
    gw.get("/api/unknown/x", None);
    // A request is counted by its last hook, which may run just after the
    // client has its answer: scrape until the last one shows (bounded).
    let last = r#"vigile_requests_total{method="GET",route="unmatched",status="404"} 1"#;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut metrics = gw.admin_get("/metrics").text;
    while !metrics.lines().any(|l| l == last) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        metrics = gw.admin_get("/metrics").text;
    }
    for line in [
        r#"vigile_requests_total{method="GET",route="stocks",status="200"} 2"#,
        r#"vigile_requests_total{method="GET",route="stocks",status="401"} 1"#,
        r#"vigile_requests_total{method="POST",route="accounts.login",status="200"} 1"#,
        r#"vigile_requests_total{method="POST",route="accounts.login",status="401"} 1"#,
        r#"vigile_requests_total{method="POST",route="accounts.register",status="201"} 1"#,
        r#"vigile_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        r#"vigile_logins_total{result="success"} 1"#,
        r#"vigile_logins_total{result="invalid_credentials"} 1"#,
        r#"vigile_registrations_total{result="success"} 1"#,
        r#"vigile_auth_failures_total{reason="not_authenticated"} 1"#,
        r#"vigile_request_duration_seconds_count{route="stocks"} 3"#,
        "vigile_revoked_sessions 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing `{line}` in:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("vigile_password_hash_seconds_count 3"),
        "{metrics}"
    );
    assert!(!metrics.contains("/api/"), "no raw path in labels");
}

#[test]
fn the_json_access_log_has_one_line_per_request_and_no_secret() {
    let gw = Gateway::start_with(Options::default().server(|s| s.log_format(LogFormat::Json)));
    let login = gw.register_and_login("dev@example.com", "motdepasse123");
    let access = login["access"].as_str().expect("access");
    gw.request(
        "GET",
        "/api/stocks/",
        &[
            ("Authorization", &format!("Bearer {access}")),
            ("X-Request-Id", "req-1"),
        ],
        None,
    );
    std::thread::sleep(Duration::from_millis(200));
    let log = gw.log();
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "vigile::access")
        .collect();
    assert_eq!(lines.len(), 3, "register, login, stocks:\n{log}");
    let stocks = lines
        .iter()
        .find(|v| v["request_id"] == "req-1")
        .expect("the stocks line");
    assert_eq!(stocks["route"], "stocks");
    assert_eq!(stocks["status"], 200);
    assert_eq!(stocks["account"], login["account"]["id"].to_string());
    assert!(stocks["upstream"]
        .as_str()
        .is_some_and(|u| u.starts_with("127.0.0.1:")));
    assert!(stocks["latency_ms"].is_number());
    assert!(!log.contains(access) && !log.contains("motdepasse123"));
}

#[test]
fn sigterm_drains_a_slow_request_then_exits_0() {
    let (a, b) = (DemoUpstream::start("a"), DemoUpstream::start("b"));
    let mut gw = Gateway::start_with(
        pool_options(&a, &b, None).server(|s| s.grace_period(Duration::from_secs(60))),
    );
    let url = gw.url("/api/pool/x?delay_ms=400");
    let slow =
        std::thread::spawn(move || common::send(&common::agent(), "GET", &url, &[], None).status);
    // The request is in (its connection counted), even on a loaded machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !gw
        .admin_get("/metrics")
        .text
        .lines()
        .any(|l| l == "vigile_client_connections 1")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow request never connected"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    let (status, took) = gw.terminate();
    assert!(status.success(), "exit status {status}");
    assert!(
        took < Duration::from_secs(30),
        "drained in {took:?}, not the whole grace period (60 s)"
    );
    assert_eq!(
        slow.join().expect("thread"),
        200,
        "the in-flight request finished"
    );
    assert!(
        std::net::TcpStream::connect(gw.addr).is_err(),
        "no longer listening"
    );
}

#[test]
fn sigint_stops_at_once() {
    let mut gw =
        Gateway::start_with(Options::default().server(|s| s.grace_period(Duration::from_secs(60))));
    let sent = std::process::Command::new("kill")
        .args(["-INT", &gw.pid().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let (status, took) = gw.wait();
    assert!(
        took < Duration::from_secs(30),
        "stopped in {took:?}, not after the grace period (60 s)"
    );
    assert!(status.success(), "{status}");
}

#[test]
fn public_account_endpoints_ignore_a_bad_authorization_header() {
    let gw = Gateway::start();
    gw.register_and_login("dev@example.com", "motdepasse123");
    let r = gw.request(
        "POST",
        "/api/accounts/login/",
        &[
            ("Authorization", "Bearer not-a-token"),
            ("Content-Type", "application/json"),
        ],
        Some(r#"{"email":"dev@example.com","password":"motdepasse123"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // A request id that is not a sane token is replaced.
    let r = gw.request(
        "GET",
        "/api/stocks/",
        &[("X-Request-Id", "has spaces and \"quotes\"")],
        None,
    );
    let id = r.header("x-request-id").expect("request id");
    assert_eq!(id.len(), 32, "{id}");
}

#[test]
fn upstream_connections_are_kept_alive_and_reused() {
    let (a, b) = (DemoUpstream::start("a"), DemoUpstream::start("b"));
    let gw = Gateway::start_with(pool_options(&a, &b, None));
    let mut peers = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let peer = gw.get("/api/pool/x", None).json["peer"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(!peer.is_empty());
        peers.insert(peer);
        // Time for the connection to go back to the pool.
        std::thread::sleep(Duration::from_millis(30));
    }
    // 12 requests over two targets: without reuse, 12 connections.
    // (The pool may race with a request now and then: allow some new ones.)
    assert!(peers.len() <= 8, "{peers:?}");
}
