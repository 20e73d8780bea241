//! The hardening, attacked again (the follow-up review): secrets spread in
//! the log one character at a time, the open-file budget, retries and the
//! answer-head deadline on both forwarding paths, clients that stop reading,
//! quoted email local parts, 1xx answers before an error, slow uploads and
//! the admin listener's connections. Each test plays the attack against the
//! real binary on loopback; times are checked with generous bounds only.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use common::scripted::{self, Scripted};
use common::{Gateway, Options};
use serde_json::json;

/// A route without authentication to the upstream `name` at `addr` (YAML
/// route and upstream entries, for `Options`).
fn open_route(name: &str, addr: SocketAddr, upstream_extra: &str) -> (String, String) {
    (
        format!(
            "  - name: {name}\n    prefix: /api/{name}/\n    upstream: {name}\n    auth: none\n"
        ),
        format!("  {name}:\n    targets: [\"{addr}\"]\n{upstream_extra}"),
    )
}

/// `secret` as the log would spread it: its characters quoted one by one,
/// the way `Debug` writes a list of characters (`'a', 'b', ...`).
fn spread(secret: &str) -> String {
    secret
        .chars()
        .take(12)
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes `request` on a new connection and returns the first answer.
fn exchange(addr: SocketAddr, request: &[u8]) -> scripted::RawAnswer {
    scripted::raw_exchange(addr, request).0
}

/// A body sent in chunks of `size` bytes.
fn chunked(body: &str, size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for part in body.as_bytes().chunks(size) {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

// ---------------------------------------------------------------------------
// 1. Secrets in the log, one character at a time.

/// An upstream that answers every request with its own head, chunked (so
/// that the `Authorization` the gateway forwards comes back through
/// Pingora's chunk parser).
fn echo_chunked() -> Scripted {
    Scripted::start(|head, conn| {
        let answer = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{head}\r\n0\r\n\r\n",
            head.len()
        );
        conn.write_all(answer.as_bytes()).is_ok()
    })
}

fn play_chunked_secrets(rust_log: &'static str, log_format: &'static str) {
    let echo = echo_chunked();
    let (extra_routes, extra_upstreams) = open_route("echo", echo.addr, "");
    // The echo route checks tokens (so the access token is forwarded).
    let extra_routes = extra_routes.replace("    auth: none\n", "");
    let gw = Gateway::start_with(Options {
        rust_log,
        log_format,
        extra_routes,
        extra_upstreams,
        ..Options::default()
    });
    let password = "Hunter2Secret!pw";
    let login = gw.register_and_login("victim@example.com", password);
    let access = login["access"].as_str().expect("access").to_string();
    let refresh = login["refresh"].as_str().expect("refresh").to_string();
    let reset_token = "RsT0k3n_q8dR3mZk1xYv-Tn0pLs9cWfHjU2aBeK4oQ7";

    // The upstream echoes the forwarded `Authorization` in a chunked answer,
    // on both forwarding paths.
    for method in ["GET", "POST"] {
        let request = scripted::request(
            method,
            "/api/echo/debug",
            &[("Authorization", &format!("Bearer {access}"))],
        );
        let answer = exchange(gw.addr, request.as_bytes());
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(answer.text().contains(&access), "the upstream echoed it");
    }
    // A reset token in a query string (Pingora's request-head lines).
    let request = scripted::request(
        "GET",
        &format!("/api/echo/reset-password?t={reset_token}"),
        &[("Authorization", &format!("Bearer {access}"))],
    );
    assert_eq!(exchange(gw.addr, request.as_bytes()).status, 200);
    // Refreshing rotates the token: what follows may be a reuse (401).
    let login_body = json!({"email": "victim@example.com", "password": password}).to_string();
    let refresh_body = json!({"refresh": refresh}).to_string();
    for (path, body) in [
        ("/api/accounts/login/", &login_body),
        ("/api/accounts/refresh-token/", &refresh_body),
    ] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        // Well formed, in small chunks and in one...
        for size in [7, body.len()] {
            let mut request = head.clone().into_bytes();
            request.extend_from_slice(&chunked(body, size));
            let answer = exchange(gw.addr, &request);
            assert!(answer.status == 200 || answer.status == 401, "{answer:?}");
        }
        // ...and with a malformed chunk size (Pingora's DEBUG line).
        let mut request = head.into_bytes();
        request.extend_from_slice(format!("zz\r\n{body}\r\n0\r\n\r\n").as_bytes());
        assert_eq!(exchange(gw.addr, &request).status, 400);
    }
    std::thread::sleep(Duration::from_millis(300));

    let log = gw.log();
    assert!(
        log.lines().count() > 50,
        "{rust_log}/{log_format}: Pingora's lines are there: {log}"
    );
    for secret in [password, access.as_str(), refresh.as_str(), reset_token] {
        for form in [secret.to_string(), spread(secret)] {
            if let Some(at) = log.find(&form) {
                let line = log[..at].rsplit('\n').next().unwrap_or("");
                panic!("{rust_log}/{log_format}: {form:?} in the log, after: {line}");
            }
        }
    }
    assert!(
        log.contains("[body redacted]"),
        "{rust_log}/{log_format}: the dumps were met and redacted"
    );
    // No chunk of body in any of its character-iterator forms.
    for form in ["EscapeDefault", "Chars(["] {
        assert!(
            !log.contains(form),
            "{rust_log}/{log_format}: {form} in the log"
        );
    }
}

#[test]
fn chunked_bodies_and_query_strings_stay_out_of_the_text_log() {
    play_chunked_secrets("trace", "text");
    play_chunked_secrets("debug", "text");
}

#[test]
fn chunked_bodies_and_query_strings_stay_out_of_the_json_log() {
    play_chunked_secrets("trace", "json");
    play_chunked_secrets("debug", "json");
}
