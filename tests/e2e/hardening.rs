//! What a hostile client or a misbehaving upstream tries, played against the
//! real binary on both forwarding paths (GET without a body takes vigile's
//! direct path, unless `VIGILE_TEST_DIRECT_PATH=false` turns it off; a POST
//! with a body takes Pingora's): path confusion,
//! poisoned pooled connections, underscore twins of identity headers,
//! upgrade tunnels, two credentials, trickling or 1xx-flooding upstreams,
//! hop-by-hop headers, HTTP/1.0 clients, hostless requests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::config::{Auth, Route, UnderscoreHeaders};
use crate::common::scripted::{self, has_header, path_of, raw, raw_exchange, request, Scripted};
use crate::common::{self, Gateway, Options};
use serde_json::Value;

const PASSWORD: &str = "Str0ng-passphrase!";

/// Routes of the path-confusion scenario: a public route and an Admin-only
/// one beside `stocks` (any signed-in account).
fn path_routes() -> Options {
    Options::default()
        .route(Route::new("public", "/api/public/", "jobs").auth(Auth::None))
        .route(Route::new("admin", "/api/stocks/admin/", "stocks").roles(["Admin"]))
}

/// What the echo upstream says it received.
fn echoed(answer: &common::scripted::RawAnswer) -> Value {
    answer.json()
}

#[test]
fn paths_are_routed_and_forwarded_normalized() {
    let gw = Gateway::start_with(path_routes());
    let visitor = gw.register_and_login("visitor@example.com", PASSWORD)["access"]
        .as_str()
        .expect("access")
        .to_string();
    let bearer = format!("Bearer {visitor}");

    for method in ["GET", "POST"] {
        // Anonymous, through the public route, to the Admin page.
        for target in [
            "/api/public/../stocks/admin/x",
            "/api/public/%2e%2e/stocks/admin/x",
            "/api/public/%2E%2E/stocks/admin/x",
            "/api/public/./../stocks/admin/x",
        ] {
            let r = raw(gw.addr, method, target, &[]);
            assert_eq!(r.status, 401, "{method} {target}: {}", r.text());
            assert_eq!(r.code(), "not_authenticated", "{method} {target}");
        }
        // A Visiteur, around the Admin prefix.
        for target in [
            "/api/stocks//admin/x",
            "/api/stocks/x/../admin/x",
            "/api/stocks/%2e/admin/x",
            "/api/stocks/./admin/x",
            "/api//stocks///admin/x",
            "/api/stocks/%61dmin/x",
        ] {
            let r = raw(gw.addr, method, target, &[("Authorization", &bearer)]);
            assert_eq!(r.status, 403, "{method} {target}: {}", r.text());
            assert_eq!(r.code(), "forbidden", "{method} {target}");
        }
        // What stays ambiguous is refused, on routes and account endpoints.
        for target in [
            "/api/public/..%2fstocks/admin/x",
            "/api/public/..%2Fstocks/admin/x",
            "/api/public/..%5cstocks/admin/x",
            "/api/public/..\\stocks/admin/x",
            "/api/public/..;/stocks/admin/x",
            "/api/public/%00/x",
            "/api/../../etc/passwd",
            "/api/public/%zz",
            "/api/accounts/..%2flogin/",
        ] {
            let r = raw(gw.addr, method, target, &[("Authorization", &bearer)]);
            assert_eq!(r.status, 400, "{method} {target}: {}", r.text());
            assert_eq!(r.code(), "invalid_path", "{method} {target}");
            assert!(r.header("content-type").is_some_and(|v| v.contains("json")));
        }
        // An allowed request reaches the upstream by its normalized path,
        // the query as sent.
        let r = raw(
            gw.addr,
            method,
            "/api/public/a/..//%62/./c?q=..%2F&r=%2e",
            &[],
        );
        assert_eq!(r.status, 200, "{method}: {}", r.text());
        let seen = echoed(&r);
        assert_eq!(seen["path"], "/api/public/b/c", "{method}: {seen}");
        assert_eq!(seen["query"], "q=..%2F&r=%2e", "{method}: {seen}");
        assert_eq!(seen["service"], "jobs");
        // An absolute-form target is routed by its path like any other.
        let r = raw(gw.addr, method, "http://gw/api/stocks/admin/x", &[]);
        assert_eq!(r.status, 401, "{method} absolute form: {}", r.text());
    }

    // The account endpoints see the normalized path too.
    let (login, _) = raw_exchange(
        gw.addr,
        format!(
            "POST /api/accounts/x/../login/ HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            login_body().len(),
            login_body()
        )
        .as_bytes(),
    );
    assert_eq!(login.status, 200, "{}", login.text());
    assert!(login.json()["access"].is_string());
}

fn login_body() -> String {
    serde_json::json!({"email": "visitor@example.com", "password": PASSWORD}).to_string()
}

/// A gateway with the route `/api/raw/` (no auth) to `upstream`.
fn gateway_before(upstream: &Scripted, options: Options) -> Gateway {
    scripted::gateway_before(upstream, Duration::from_secs(2), options)
}

#[test]
fn an_unsolicited_answer_never_reaches_the_next_request() {
    // The upstream answers each request with its own path, and after some
    // answers sends more: a whole forged answer, or a body after a HEAD
    // answer. A connection put back in the pool with that waiting would hand
    // it to the next request (another user's).
    let upstream = Scripted::start(|head, conn| {
        let path = path_of(head).to_string();
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}",
            path.len()
        );
        let extra: &[u8] = if path.ends_with("/extra") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON"
        } else if path.ends_with("/head") && head.starts_with("HEAD ") {
            b"POISON"
        } else {
            b""
        };
        if path.ends_with("/late") {
            // Answers after the gateway's read_timeout (2 s).
            std::thread::sleep(Duration::from_millis(2600));
        }
        let mut bytes = answer.into_bytes();
        if head.starts_with("HEAD ") {
            bytes.truncate(bytes.len() - path.len());
        }
        bytes.extend_from_slice(extra);
        conn.write_all(&bytes).is_ok()
    });
    let gw = gateway_before(&upstream, Options::default());
    for (poison, method) in [
        ("/api/raw/extra", "GET"),
        ("/api/raw/head", "HEAD"),
        ("/api/raw/late", "GET"),
        ("/api/raw/extra", "POST"),
        ("/api/raw/late", "POST"),
    ] {
        let first = raw(gw.addr, method, poison, &[]);
        if poison.ends_with("/late") {
            assert_eq!(first.status, 504, "{method} {poison}: {}", first.text());
            std::thread::sleep(Duration::from_millis(1000));
        } else {
            assert_eq!(first.status, 200, "{method} {poison}");
        }
        std::thread::sleep(Duration::from_millis(100));
        for i in 0..3 {
            let next = format!("/api/raw/next{i}");
            let r = if method == "POST" {
                post(gw.addr, &next)
            } else {
                gw.get(&next, None).into_raw()
            };
            assert_eq!(r.0, 200, "after {method} {poison}");
            assert_eq!(r.1, next, "after {method} {poison}: another answer");
        }
    }
}

trait IntoRaw {
    fn into_raw(self) -> (u16, String);
}

impl IntoRaw for common::Resp {
    fn into_raw(self) -> (u16, String) {
        (self.status, self.text)
    }
}

impl IntoRaw for common::scripted::RawAnswer {
    fn into_raw(self) -> (u16, String) {
        (self.status, self.text())
    }
}

fn post(addr: SocketAddr, path: &str) -> (u16, String) {
    raw(addr, "POST", path, &[]).into_raw()
}

#[test]
fn underscore_twins_of_identity_headers_never_reach_the_upstream() {
    let gw = Gateway::start_with(path_routes());
    let access = gw.register_and_login("twin@example.com", PASSWORD)["access"]
        .as_str()
        .expect("access")
        .to_string();
    let forged = [
        ("X_User_Id", "1"),
        ("X_User_Role", "Admin"),
        ("X_User_Email", "admin@example.com"),
        ("X_Session_Id", "s"),
        ("x_user-role", "Admin"),
        ("X_Custom", "c"),
    ];
    for method in ["GET", "POST"] {
        // Anonymous on a public route.
        let r = raw(gw.addr, method, "/api/public/x", &forged);
        assert_eq!(r.status, 200, "{}", r.text());
        let headers = &echoed(&r)["headers"];
        for (name, _) in &forged {
            assert!(
                headers.get(name.to_ascii_lowercase()).is_none(),
                "{method}: {name} passed: {headers}"
            );
        }
        assert!(headers.get("x-user-id").is_none(), "{headers}");
        // A Visiteur on a route that needs a role.
        let bearer = format!("Bearer {access}");
        let mut with_token = forged.to_vec();
        with_token.push(("Authorization", &bearer));
        let r = raw(gw.addr, method, "/api/jobs/x", &with_token);
        assert_eq!(r.status, 200, "{}", r.text());
        let headers = &echoed(&r)["headers"];
        assert_eq!(headers["x-user-role"], serde_json::json!(["Visiteur"]));
        assert!(headers.get("x_user_role").is_none(), "{headers}");
    }
    drop(gw);

    // `underscore_headers: keep` forwards other names, never the twins.
    let gw = Gateway::start_with(
        path_routes().server(|s| s.underscore_headers(UnderscoreHeaders::Keep)),
    );
    let r = raw(gw.addr, "GET", "/api/public/x", &forged);
    let headers = &echoed(&r)["headers"];
    assert_eq!(headers["x_custom"], serde_json::json!(["c"]), "{headers}");
    assert!(headers.get("x_user_id").is_none(), "{headers}");
    assert!(headers.get("x_user_role").is_none(), "{headers}");
}

#[test]
fn two_credentials_are_refused_and_only_the_checked_one_is_forwarded() {
    let gw = Gateway::start_with(
        Options::default().route(Route::new("maybe", "/api/maybe/", "jobs").auth(Auth::Optional)),
    );
    let access = gw.register_and_login("cred@example.com", PASSWORD)["access"]
        .as_str()
        .expect("access")
        .to_string();
    let forged = common::sign(&serde_json::json!({"sub": "1", "role": "Admin"}));
    let (real, fake) = (format!("Bearer {access}"), format!("Bearer {forged}"));
    let unsigned = "Bearer eyJhbGciOiJub25lIn0.eyJyb2xlIjoiQWRtaW4ifQ.";
    for method in ["GET", "POST"] {
        for target in ["/api/stocks/x", "/api/maybe/x", "/api/accounts/"] {
            for pair in [
                [real.as_str(), fake.as_str()],
                [real.as_str(), unsigned],
                ["Basic eDp5", fake.as_str()],
            ] {
                let r = raw(
                    gw.addr,
                    method,
                    target,
                    &[("Authorization", pair[0]), ("Authorization", pair[1])],
                );
                assert_eq!(r.status, 400, "{method} {target}: {}", r.text());
                assert_eq!(r.code(), "invalid_authorization");
            }
        }
        // Another scheme on an optional route: anonymous, and not forwarded.
        let r = raw(
            gw.addr,
            method,
            "/api/maybe/x",
            &[("Authorization", "Basic eDp5")],
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let headers = &echoed(&r)["headers"];
        assert!(headers.get("authorization").is_none(), "{headers}");
        assert!(headers.get("x-user-id").is_none(), "{headers}");
        // The checked token is forwarded.
        let r = raw(gw.addr, method, "/api/maybe/x", &[("Authorization", &real)]);
        let headers = &echoed(&r)["headers"];
        assert_eq!(headers["authorization"], serde_json::json!([real]));
    }
}

/// An upstream that switches protocols to anything, then echoes what the
/// tunnel carries.
fn switching_upstream() -> Scripted {
    Scripted::start(|head, conn| {
        let upgrade = has_header(head, "upgrade");
        let _ = conn.write_all(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                 X-Saw-Upgrade: {upgrade}\r\n\r\n"
            )
            .as_bytes(),
        );
        let mut buf = [0u8; 1024];
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        while let Ok(n) = conn.read(&mut buf) {
            if n == 0 || conn.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        false
    })
}

#[test]
fn upgrades_pass_only_on_websocket_routes_that_asked() {
    let upstream = switching_upstream();
    let gw = gateway_before(
        &upstream,
        Options::default().route(
            Route::new("ws", "/api/ws/", "raw")
                .auth(Auth::None)
                .websocket(true),
        ),
    );
    let upgrade = [("Connection", "Upgrade"), ("Upgrade", "websocket")];
    // Not a websocket route: no tunnel, whether the client asked or not.
    for (method, headers) in [
        ("GET", &upgrade[..]),
        ("GET", &[][..]),
        ("POST", &upgrade[..]),
        ("POST", &[][..]),
    ] {
        let before = upstream.requests().len();
        let (r, after) = raw_exchange(gw.addr, request(method, "/api/raw/x", headers).as_bytes());
        assert_eq!(r.status, 502, "{method} {headers:?}: {}", r.head);
        assert_eq!(r.code(), "upstream_unavailable");
        assert!(after.is_empty(), "bytes after the 502: {after:?}");
        for head in &upstream.requests()[before..] {
            assert!(
                !has_header(head, "upgrade"),
                "Upgrade went upstream: {head}"
            );
        }
    }
    // A websocket route that asked: the tunnel works.
    let mut conn = TcpStream::connect(gw.addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    conn.write_all(request("GET", "/api/ws/chat", &upgrade).as_bytes())
        .expect("write");
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).expect("101");
        assert!(n > 0);
        seen.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&seen).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    conn.write_all(b"ping through the tunnel").expect("write");
    let mut echoed = Vec::new();
    while echoed.len() < 23 {
        let n = conn.read(&mut buf).expect("echo");
        assert!(n > 0);
        echoed.extend_from_slice(&buf[..n]);
    }
    assert_eq!(echoed, b"ping through the tunnel");
}

#[test]
fn a_trickling_or_chatty_upstream_is_cut_off() {
    let upstream = Scripted::start(|head, conn| {
        let path = path_of(head).to_string();
        if path.ends_with("/trickle") {
            // The head a byte every 200 ms: 8 s, well past read_timeout.
            for b in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" {
                if conn.write_all(&[*b]).is_err() {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            return false;
        }
        let mut answer = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(200);
        answer.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        let _ = conn.write_all(&answer);
        false
    });
    let gw = gateway_before(&upstream, Options::default());
    // The same on Pingora's path: for a request with a body, and for a GET
    // when the direct path is off.
    let pingora_only = gateway_before(
        &upstream,
        Options::default().server(|s| s.direct_path(false)),
    );
    let post = "POST /api/raw/trickle HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    let get = "GET /api/raw/trickle HTTP/1.1\r\nHost: x\r\n\r\n";
    for (addr, request) in [(gw.addr, get), (gw.addr, post), (pingora_only.addr, get)] {
        let started = Instant::now();
        let (r, _) = raw_exchange(addr, request.as_bytes());
        assert_eq!(r.status, 504, "{request}: {}", r.text());
        assert_eq!(r.code(), "upstream_timeout");
        // read_timeout is 2 s; the whole head would take 8 s.
        assert!(
            started.elapsed() < Duration::from_secs(7),
            "{request}: {:?}",
            started.elapsed()
        );
    }
    for method in ["GET", "POST"] {
        let r = raw(gw.addr, method, "/api/raw/chatty", &[]);
        assert_eq!(r.status, 502, "{method}: {}", r.text());
        assert_eq!(r.code(), "upstream_unavailable");
    }
}

#[test]
fn answers_are_clean_of_hop_by_hop_headers_and_fit_the_client() {
    let upstream = Scripted::start(|head, conn| {
        let path = path_of(head).to_string();
        if path.ends_with("/close-delimited") {
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end");
            return false;
        }
        if path.ends_with("/chunked") {
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            );
            return true;
        }
        conn.write_all(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret-Hop\r\nX-Secret-Hop: 1\r\n\
              Keep-Alive: timeout=30\r\nProxy-Connection: keep-alive\r\nX-Kept: 1\r\n\
              Content-Length: 2\r\n\r\nok",
        )
        .is_ok()
    });
    let gw = gateway_before(&upstream, Options::default());
    for method in ["GET", "POST"] {
        let r = raw(gw.addr, method, "/api/raw/x", &[]);
        assert_eq!(r.status, 200, "{method}");
        for gone in ["x-secret-hop", "keep-alive", "proxy-connection"] {
            assert!(
                r.header(gone).is_none(),
                "{method}: {gone} reached the client: {}",
                r.head
            );
        }
        assert_eq!(r.header("x-kept"), Some("1"));

        // HTTP/1.0 clients never get chunks.
        for path in ["/api/raw/close-delimited", "/api/raw/chunked"] {
            let body = if method == "POST" {
                "Content-Length: 2\r\n\r\n{}"
            } else {
                "\r\n"
            };
            let (r, _) = raw_exchange(
                gw.addr,
                format!("{method} {path} HTTP/1.0\r\nHost: gw\r\n{body}").as_bytes(),
            );
            assert_eq!(r.status, 200, "{method} {path}: {}", r.head);
            assert!(
                r.header("transfer-encoding").is_none(),
                "{method} {path}: {}",
                r.head
            );
            let want = if path.ends_with("chunked") {
                "abc"
            } else {
                "until the end"
            };
            assert_eq!(r.text(), want, "{method} {path}");
        }
    }
}

#[test]
fn malformed_requests_get_json_errors_and_client_claims_are_replaced() {
    let gw = Gateway::start_with(path_routes());
    for method in ["GET", "POST"] {
        // HTTP/1.1 without Host, with two, with a bad one.
        let body = if method == "POST" {
            "Content-Length: 2\r\n\r\n{}"
        } else {
            "\r\n"
        };
        for hosts in [
            "",
            "Host: a\r\nHost: b\r\n",
            "Host: a b\r\n",
            "Host: u@gw\r\n",
        ] {
            let (r, _) = raw_exchange(
                gw.addr,
                format!("{method} /api/public/x HTTP/1.1\r\n{hosts}Connection: close\r\n{body}")
                    .as_bytes(),
            );
            assert_eq!(r.status, 400, "{method} {hosts:?}: {}", r.head);
            // Two `Host` lines, or user information, are refused by
            // Pingora's parser already (the JSON shape is vigile's).
            assert!(
                r.header("content-type").is_some_and(|v| v.contains("json")),
                "{method} {hosts:?}: {}",
                r.head
            );
            if !hosts.contains("Host: b") && !hosts.contains('@') {
                assert_eq!(r.code(), "invalid_host", "{method} {hosts:?}");
            }
        }
        // `Connection: Host` would send the upstream a request without one.
        let r = raw(
            gw.addr,
            method,
            "/api/public/x",
            &[("Connection", "close, Host")],
        );
        assert_eq!(r.status, 400, "{method}: {}", r.text());
        assert!(r.header("content-type").is_some_and(|v| v.contains("json")));
        // What clients claim about the proxy chain is not passed on.
        let r = raw(
            gw.addr,
            method,
            "/api/public/x",
            &[
                ("X-Real-IP", "203.0.113.9"),
                ("Forwarded", "for=203.0.113.9"),
            ],
        );
        let headers = &echoed(&r)["headers"];
        assert_eq!(
            headers["x-real-ip"],
            serde_json::json!(["127.0.0.1"]),
            "{headers}"
        );
        assert!(headers.get("forwarded").is_none(), "{headers}");
    }
    // HTTP/1.0 may come without Host: the upstream still gets one.
    let (r, _) = raw_exchange(gw.addr, b"GET /api/public/x HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(echoed(&r)["headers"]["host"].is_array());
}

#[test]
fn a_malformed_answer_is_not_taken_for_a_dead_connection() {
    let upstream = Scripted::start(|head, conn| {
        let answer: &[u8] = if path_of(head).ends_with("/bad") {
            b"NOT HTTP AT ALL\r\n\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        };
        conn.write_all(answer).is_ok() && !path_of(head).ends_with("/bad")
    });
    let gw = gateway_before(&upstream, Options::default());
    // A first answer leaves a connection in the pool; the malformed one
    // comes on it.
    assert_eq!(gw.get("/api/raw/ok", None).status, 200);
    let r = gw.get("/api/raw/bad", None);
    assert_eq!(r.status, 502, "{}", r.text);
    let bad = upstream.requests_to("/bad");
    assert_eq!(bad, 1, "the GET was sent {bad} times");
    assert_eq!(post(gw.addr, "/api/raw/ok").0, 200);
}

/// An upstream that answers every request with its raw head as the body.
fn echo_head() -> Scripted {
    Scripted::start(|head, conn| {
        let body = head.to_string();
        conn.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
                body.len(),
                body
            )
            .as_bytes(),
        )
        .is_ok()
    })
}

/// A `Connection` naming a header the gateway sets for the upstream (so
/// that the upstream would get the client's word, or nothing) is refused
/// the same way on both forwarding paths, and nothing reaches the upstream.
#[test]
fn a_connection_naming_a_forwarding_header_is_refused_on_both_paths() {
    let upstream = echo_head();
    let gw = gateway_before(&upstream, Options::default());
    for name in [
        "Host",
        "X-Forwarded-For",
        "X-Forwarded-Host",
        "X-Forwarded-Proto",
        "X-Real-IP",
        "x-real-ip",
        "Forwarded",
    ] {
        // A GET takes the direct path (unless it is off), a POST Pingora's.
        for method in ["GET", "POST"] {
            let r = raw(
                gw.addr,
                method,
                "/api/raw/nominated",
                &[("Connection", &format!("close, {name}")), (name, "6.6.6.6")],
            );
            assert_eq!(r.status, 400, "{method} Connection: {name}: {}", r.text());
            assert_eq!(r.code(), "bad_request", "{method} Connection: {name}");
        }
    }
    assert_eq!(upstream.requests_to("/nominated"), 0);
}

/// A servlet container (Tomcat, Jetty, Spring) drops `;x` from a segment
/// and serves `/api/stocks/admin;x/x` as `/api/stocks/admin/x`: routes are
/// matched the same way.
#[test]
fn path_parameters_do_not_cross_a_route_boundary() {
    let gw = Gateway::start_with(path_routes());
    let visitor = gw.register_and_login("v@example.com", PASSWORD)["access"]
        .as_str()
        .expect("access")
        .to_string();
    let bearer = format!("Bearer {visitor}");
    let mut leaks = Vec::new();
    for method in ["GET", "POST"] {
        // The control: the Admin page is refused.
        let r = raw(
            gw.addr,
            method,
            "/api/stocks/admin/x",
            &[("Authorization", &bearer)],
        );
        assert_eq!(r.status, 403, "{method}: {}", r.text());
        for target in [
            "/api/stocks/admin;x/x",
            "/api/stocks/admin;/x",
            "/api/stocks/admin;jsessionid=1",
        ] {
            let r = raw(gw.addr, method, target, &[("Authorization", &bearer)]);
            if !target.contains("%3B") && r.status != 403 {
                leaks.push(format!(
                    "{method} {target} -> 200, upstream path {}",
                    r.json()["path"]
                ));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "a Visiteur reached the Admin prefix:\n{}",
        leaks.join("\n")
    );
}

/// A route whose prefix has no final `/` matches whole segments only: what
/// `strip_prefix` leaves can never start with a dot segment.
#[test]
fn a_stripped_prefix_leaves_no_dot_segment() {
    let upstream = echo_head();
    let gw = gateway_before(
        &upstream,
        Options::default().route(
            Route::new("sp", "/api/sp", "raw")
                .auth(Auth::None)
                .strip_prefix(true),
        ),
    );
    let mut bad = Vec::new();
    for method in ["GET", "POST"] {
        for target in ["/api/sp../x", "/api/sp..", "/api/sp.%2e/x", "/api/sp./x"] {
            let r = raw(gw.addr, method, target, &[]);
            let line = r.text().lines().next().unwrap_or("").to_string();
            let sent = line.split(' ').nth(1).unwrap_or("").to_string();
            if sent.split('/').any(|s| s == "." || s == "..") {
                bad.push(format!("{method} {target} -> upstream got {sent}"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "dot segments reached the upstream:\n{}",
        bad.join("\n")
    );
}

const FORGED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON";

/// An upstream that answers each request with its path, misbehaving on
/// the paths that say so.
fn hostile() -> Scripted {
    Scripted::start(|head, conn| {
        let path = path_of(head).to_string();
        let is_head = head.starts_with("HEAD ") || head.contains("\nHEAD ");
        let ok = |conn: &mut TcpStream| {
            let body = if is_head { String::new() } else { path.clone() };
            conn.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    path.len()
                )
                .as_bytes(),
            )
            .is_ok()
        };
        let name = path.rsplit('/').next().unwrap_or("").to_string();
        match name.as_str() {
            "trailers-extra" => {
                let mut a = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n{:x}\r\n{path}\r\n0\r\nX-T: 1\r\n\r\n", path.len()).into_bytes();
                a.extend_from_slice(FORGED);
                conn.write_all(&a).is_ok()
            }
            "trailers-late" => {
                let a = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{path}\r\n0\r\nX-T: 1\r\n", path.len());
                let _ = conn.write_all(a.as_bytes());
                std::thread::sleep(Duration::from_millis(100));
                let mut b = b"\r\n".to_vec();
                b.extend_from_slice(FORGED);
                conn.write_all(&b).is_ok()
            }
            "info-extra" => {
                let mut a = b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n".to_vec();
                a.extend_from_slice(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}",
                        path.len()
                    )
                    .as_bytes(),
                );
                a.extend_from_slice(FORGED);
                conn.write_all(&a).is_ok()
            }
            "late-extra" => {
                let r = ok(conn);
                std::thread::sleep(Duration::from_millis(150));
                r && conn.write_all(FORGED).is_ok()
            }
            "head-chunked" if is_head => {
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
                std::thread::sleep(Duration::from_millis(100));
                conn.write_all(b"6\r\nPOISON\r\n0\r\n\r\n").is_ok()
            }
            "304-body" => {
                let _ = conn.write_all(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 44\r\n\r\n");
                std::thread::sleep(Duration::from_millis(100));
                conn.write_all(FORGED).is_ok()
            }
            "close-after" => {
                let _ = ok(conn);
                std::thread::sleep(Duration::from_millis(100));
                false
            }
            "http10-extra" => {
                let mut a = format!(
                    "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: {}\r\n\r\n{path}",
                    path.len()
                )
                .into_bytes();
                a.extend_from_slice(FORGED);
                conn.write_all(&a).is_ok()
            }
            "big" => {
                let n = 4 << 20;
                let _ = conn.write_all(
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n").as_bytes(),
                );
                let chunk = vec![b'x'; 64 << 10];
                let mut sent = 0;
                while sent < n {
                    if conn.write_all(&chunk).is_err() {
                        return false;
                    }
                    sent += chunk.len();
                    std::thread::sleep(Duration::from_millis(5));
                }
                true
            }
            _ => ok(conn),
        }
    })
}

fn follow_ups(gw: &Gateway, method: &str, after: &str, bad: &mut Vec<String>) {
    std::thread::sleep(Duration::from_millis(400));
    for i in 0..3 {
        let next = format!("/api/raw/next{i}");
        let (status, text) = if method == "POST" {
            let r = raw(gw.addr, "POST", &next, &[]);
            (r.status, r.text())
        } else {
            let r = gw.get(&next, None);
            (r.status, r.text)
        };
        if status != 200 || text != next {
            bad.push(format!(
                "after {method} {after}: {next} got {status} {text:?}"
            ));
        }
    }
}

/// Poisoned pooled connections, both paths, every way an upstream can leave
/// bytes behind an answer: every follow-up gets its own answer.
#[test]
fn no_leftover_of_an_answer_reaches_the_next_request() {
    let upstream = hostile();
    let gw = gateway_before(&upstream, Options::default());
    let mut bad = Vec::new();
    for method in ["GET", "POST"] {
        for p in [
            "trailers-extra",
            "trailers-late",
            "info-extra",
            "late-extra",
            "304-body",
            "close-after",
            "http10-extra",
        ] {
            let target = format!("/api/raw/{p}");
            let r = raw(gw.addr, method, &target, &[]);
            assert!(r.status > 0, "{method} {p}: no answer");
            follow_ups(&gw, method, p, &mut bad);
        }
    }
    // HEAD answered with a body, on the direct path.
    let r = raw(gw.addr, "HEAD", "/api/raw/head-chunked", &[]);
    assert!(r.status > 0, "HEAD head-chunked: no answer");
    follow_ups(&gw, "GET", "HEAD head-chunked", &mut bad);
    // A client that goes away mid-body.
    for method in ["GET", "POST"] {
        let mut conn = TcpStream::connect(gw.addr).expect("connect");
        conn.write_all(request(method, "/api/raw/big", &[]).as_bytes())
            .expect("write");
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf);
        drop(conn);
        std::thread::sleep(Duration::from_millis(300));
        follow_ups(&gw, method, "client gone mid-body", &mut bad);
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// An upstream that answers a pooled GET with `100 Continue` and then
/// closes has answered something: the GET is not sent again.
#[test]
fn a_get_is_not_retried_after_an_informational_answer() {
    let upstream = Scripted::start(|head, conn| {
        let path = path_of(head).to_string();
        if path.ends_with("/info-close") {
            let _ = conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
            return false;
        }
        conn.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}",
                path.len()
            )
            .as_bytes(),
        )
        .is_ok()
    });
    let gw = gateway_before(&upstream, Options::default());
    // The first answer leaves a pooled upstream connection. A GET takes the
    // direct path (unless it is off), a bodiless DELETE Pingora's: neither
    // is sent again once a 1xx came back. (A new client connection each
    // time: the gateway closes the client's after a 502.)
    let close = [("connection", "close")];
    for (method, before) in [("GET", 0), ("DELETE", 1)] {
        let ok = gw.request(method, "/api/raw/ok", &close, None);
        assert_eq!(ok.status, 200, "{method}");
        let r = gw.request(method, "/api/raw/info-close", &close, None);
        assert_eq!(r.status, 502, "{method}: {}", r.text);
        let sent = upstream.requests_to("/info-close") - before;
        assert_eq!(
            sent, 1,
            "the {method} was sent {sent} times after the upstream had answered 100"
        );
    }
}
