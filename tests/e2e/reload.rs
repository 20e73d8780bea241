//! Reloading the configuration of a running gateway (`vigile reload`,
//! `SIGHUP`): what changes live, what a request in flight keeps, what an
//! invalid file or a key bound at start leaves untouched.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_yaml::Value;

use crate::common::config::{Auth, HealthCheck, Route, Upstream};
use crate::common::scripted::{path_of, Scripted};
use crate::common::{DemoUpstream, Gateway, Options};

/// The gateway's config file as YAML.
fn config(gw: &Gateway) -> Value {
    let text = std::fs::read_to_string(gw.config_path()).expect("config");
    serde_yaml::from_str(&text).expect("yaml")
}

fn write_config(gw: &Gateway, value: &Value) {
    let text = serde_yaml::to_string(value).expect("yaml");
    std::fs::write(gw.config_path(), text).expect("write config");
}

/// `vigile reload` against the gateway: (success, stdout, stderr).
fn reload(gw: &Gateway) -> (bool, String, String) {
    let out = gw.cli(&["reload"], None);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn metric(gw: &Gateway, line_start: &str) -> Option<String> {
    gw.admin_get("/metrics")
        .text
        .lines()
        .find(|l| l.starts_with(line_start))
        .map(str::to_string)
}

/// Adds `routes[]` entry `route` (a YAML mapping).
fn add_route(value: &mut Value, route: &str) {
    let route: Value = serde_yaml::from_str(route).expect("route");
    value["routes"]
        .as_sequence_mut()
        .expect("routes")
        .push(route);
}

fn remove_route(value: &mut Value, name: &str) {
    value["routes"]
        .as_sequence_mut()
        .expect("routes")
        .retain(|r| r["name"].as_str() != Some(name));
}

#[test]
fn a_reload_adds_and_removes_routes_while_a_slow_request_on_the_old_one_completes() {
    // The old route's upstream answers after 1.5 s.
    let slow = Scripted::start(|head, conn| {
        if path_of(head).contains("slow") {
            std::thread::sleep(Duration::from_millis(1500));
        }
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nold");
        true
    });
    let fresh = DemoUpstream::start("fresh");
    let gw = Gateway::start_with(
        Options::default()
            .route(Route::new("old", "/api/old/", "slowpoke").auth(Auth::None))
            .upstream("slowpoke", Upstream::new([slow.addr])),
    );
    assert_eq!(gw.get("/api/old/x", None).status, 200);
    assert_eq!(gw.get("/api/new/x", None).status, 404);

    let in_flight = {
        let url = gw.url("/api/old/slow");
        std::thread::spawn(move || {
            let r = crate::common::agent().get(&url).call().expect("answer");
            let status = r.status().as_u16();
            (status, r.into_body().read_to_string().unwrap_or_default())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let mut value = config(&gw);
    remove_route(&mut value, "old");
    value["upstreams"]
        .as_mapping_mut()
        .expect("upstreams")
        .remove("slowpoke");
    add_route(
        &mut value,
        "{name: new, prefix: /api/new/, upstream: fresh, auth: none}",
    );
    value["upstreams"]["fresh"] = serde_yaml::from_str(&format!(
        "{{targets: ['{}'], health_check: {{path: /health, interval: 1s}}}}",
        fresh.addr
    ))
    .expect("upstream");
    write_config(&gw, &value);
    let started = Instant::now();
    let (ok, out, err) = reload(&gw);
    assert!(ok, "reload: {out} {err}");
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "the reload does not wait for requests in flight"
    );
    // New requests see the new table at once.
    assert_eq!(gw.get("/api/old/x", None).code(), "not_found");
    let r = gw.get("/api/new/x", None);
    assert_eq!(r.status, 200, "{}", r.text);
    // The request in flight finished on the configuration it started with.
    let (status, body) = in_flight.join().expect("thread");
    assert_eq!((status, body.as_str()), (200, "old"));
    assert_eq!(
        metric(&gw, "vigile_config_reloads_total{result=\"ok\"}").as_deref(),
        Some("vigile_config_reloads_total{result=\"ok\"} 1")
    );
    // The removed upstream's gauge is gone, the new one's is there.
    let metrics = gw.admin_get("/metrics").text;
    assert!(
        !metrics.contains("vigile_upstream_healthy_targets{upstream=\"slowpoke\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("vigile_upstream_healthy_targets{upstream=\"fresh\"} 1"));
}

#[test]
fn an_invalid_file_or_a_key_bound_at_start_changes_nothing() {
    let gw = Gateway::start();
    let tokens = gw.register_and_login("stay@example.com", "Correct-Horse-42");
    let access = tokens["access"].as_str().expect("access");
    let before = metric(&gw, "vigile_config_info").expect("config info");
    let original = std::fs::read_to_string(gw.config_path()).expect("config");

    // A route naming an unknown upstream: refused with check-config's message.
    let mut value = config(&gw);
    add_route(
        &mut value,
        "{name: bad, prefix: /api/bad/, upstream: nowhere}",
    );
    write_config(&gw, &value);
    let check = gw.cli(&["check-config"], None);
    let check_err = String::from_utf8_lossy(&check.stderr).into_owned();
    assert!(!check.status.success());
    let (ok, _, err) = reload(&gw);
    assert!(!ok, "an invalid file is refused");
    assert!(err.contains("routes["), "{err}");
    let key = check_err
        .split(": ")
        .find(|part| part.starts_with("routes["))
        .expect("check-config names the key");
    assert!(
        err.contains(key),
        "same message as check-config: {err} / {check_err}"
    );
    assert!(gw.log().contains(key), "the gateway logs it too");

    // Not YAML at all.
    std::fs::write(gw.config_path(), "routes: [\n").expect("write");
    let (ok, _, err) = reload(&gw);
    assert!(!ok && err.contains("invalid configuration"), "{err}");

    // A key only a restart can change.
    let mut value: Value = serde_yaml::from_str(&original).expect("yaml");
    value["server"]["listen"] = Value::from("127.0.0.1:1");
    write_config(&gw, &value);
    let (ok, _, err) = reload(&gw);
    assert!(!ok, "a new listen address is refused");
    assert!(err.contains("server.listen"), "{err}");

    // Traffic is unchanged throughout, and so is the file in force.
    assert_eq!(gw.get("/api/stocks/x", Some(access)).status, 200);
    assert_eq!(metric(&gw, "vigile_config_info").expect("info"), before);
    assert_eq!(
        metric(&gw, "vigile_config_reloads_total{result=\"error\"}").as_deref(),
        Some("vigile_config_reloads_total{result=\"error\"} 2"),
        "the two files the CLI could send were refused by the gateway"
    );
}

#[test]
fn sighup_reloads_and_kept_alive_connections_stay_open() {
    let gw = Gateway::start();
    let mut conn = TcpStream::connect(gw.addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let ask = |conn: &mut TcpStream, path: &str| -> String {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n\r\n");
        conn.write_all(request.as_bytes()).expect("write");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            conn.read_exact(&mut byte)
                .expect("answer on the same connection");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        conn.read_exact(&mut body).expect("body");
        head
    };
    let first = ask(&mut conn, "/api/stocks/x");
    assert!(first.starts_with("HTTP/1.1 401"), "{first}");
    assert!(!first
        .to_ascii_lowercase()
        .contains("access-control-allow-origin: https://app.example"));
    let before = metric(&gw, "vigile_config_info").expect("info");

    let mut value = config(&gw);
    value["cors"]["allowed_origins"] =
        serde_yaml::from_str("['https://app.example']").expect("cors");
    write_config(&gw, &value);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&gw, "vigile_config_info").as_deref() == Some(before.as_str()) {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The same connection, the new CORS policy.
    let second = ask(&mut conn, "/api/stocks/x");
    assert!(
        second
            .to_ascii_lowercase()
            .contains("access-control-allow-origin: https://app.example"),
        "{second}"
    );
    let info = metric(&gw, "vigile_config_info").expect("info");
    let text = std::fs::read(gw.config_path()).expect("config");
    let digest: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&text)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert_eq!(info, format!("vigile_config_info{{sha256=\"{digest}\"}} 1"));
}

#[test]
fn throttle_limits_and_token_lifetimes_change_on_reload() {
    let gw = Gateway::start_with(Options::default().accounts(|a| a.max_failures(5)));
    gw.register_and_login("limit@example.com", "Correct-Horse-42");
    gw.register_and_login("lifetime@example.com", "Correct-Horse-42");
    let wrong = serde_json::json!({"email": "limit@example.com", "password": "pas-le-bon"});
    for _ in 0..2 {
        assert_eq!(gw.post("/api/accounts/login/", &wrong, None).status, 401);
    }
    let mut value = config(&gw);
    value["accounts"]["login_throttle"]["max_failures"] = Value::from(2);
    write_config(&gw, &value);
    let (ok, out, err) = reload(&gw);
    assert!(ok, "{out} {err}");
    // The two failures counted before the reload still count.
    let r = gw.post("/api/accounts/login/", &wrong, None);
    assert_eq!(
        (r.status, r.code()),
        (429, "too_many_attempts"),
        "{}",
        r.text
    );

    // Token lifetimes: a token issued before keeps its own; new ones get
    // the new lifetimes.
    let before = gw.login("lifetime@example.com", "Correct-Horse-42");
    let lifetime = |tokens: &serde_json::Value, which: &str| {
        let claims = crate::common::claims(tokens[which].as_str().expect("token"));
        claims["exp"].as_u64().expect("exp") - claims["iat"].as_u64().expect("iat")
    };
    let mut value = config(&gw);
    value["tokens"]["access_ttl"] = Value::from("90s");
    value["tokens"]["refresh_ttl"] = Value::from("2h");
    write_config(&gw, &value);
    let (ok, out, err) = reload(&gw);
    assert!(ok, "{out} {err}");
    let after = gw.login("lifetime@example.com", "Correct-Horse-42");
    assert_ne!(lifetime(&before, "access"), 90);
    assert_eq!(lifetime(&after, "access"), 90);
    assert_eq!(lifetime(&after, "refresh"), 7200);
    assert_eq!(
        gw.get("/api/stocks/x", before["access"].as_str()).status,
        200,
        "tokens issued before the reload still pass"
    );
}

#[test]
fn a_removed_upstream_loses_its_health_check_and_its_idle_connections() {
    let closed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen_closed = closed.clone();
    let gone = Scripted::start(move |head, conn| {
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        if path_of(head) == "/health" {
            return false;
        }
        // Wait for the gateway to close the kept-alive connection.
        let watcher = conn.try_clone().expect("clone");
        let closed = seen_closed.clone();
        std::thread::spawn(move || {
            let mut watcher = watcher;
            let mut byte = [0u8; 1];
            if matches!(watcher.read(&mut byte), Ok(0)) {
                closed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        false
    });
    let gw = Gateway::start_with(
        Options::default()
            .route(Route::new("gone", "/api/gone/", "gone").auth(Auth::None))
            .upstream(
                "gone",
                Upstream::new([gone.addr]).health_check(HealthCheck {
                    path: Some("/health".into()),
                    interval: Some(Duration::from_millis(200)),
                }),
            ),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while gone.requests_to("/health") < 2 {
        assert!(Instant::now() < deadline, "health checks run");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A GET on the direct path leaves a connection idle in the pool.
    assert_eq!(gw.get("/api/gone/x", None).status, 200);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        closed.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "kept while the upstream is configured"
    );

    let mut value = config(&gw);
    remove_route(&mut value, "gone");
    value["upstreams"]
        .as_mapping_mut()
        .expect("upstreams")
        .remove("gone");
    write_config(&gw, &value);
    let (ok, out, err) = reload(&gw);
    assert!(ok, "{out} {err}");
    std::thread::sleep(Duration::from_millis(500));
    let checks = gone.requests_to("/health");
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        gone.requests_to("/health"),
        checks,
        "no health check after removal"
    );
    if crate::common::direct_path() {
        assert!(
            closed.load(std::sync::atomic::Ordering::SeqCst) >= 1,
            "the idle connection to the removed upstream was closed"
        );
    }
}
