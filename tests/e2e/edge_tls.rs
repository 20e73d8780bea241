//! The TLS listener (`server.tls`): ALPN h2 and http/1.1, the same answers
//! over HTTP/2 as over HTTP/1.1 (account API, proxy path, CORS, errors,
//! identity headers), bodies over HTTP/2, the certificate swapped by a
//! reload while a connection stays open, h2c on the plain listener, and
//! the PROXY protocol before TLS.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::common::config::ServerTls;
use crate::common::tls::{self, h1_send, h2_open, h2_send, session_of, Answer, Authority, Client};
use crate::common::{self, Gateway, Options};

const PASSWORD: &str = "motdepasse-solide-42";
const H2: &[u8] = b"h2";
const H1: &[u8] = b"http/1.1";

/// A gateway with a TLS listener presenting `server` of `ca`.
fn tls_gateway(ca: &Authority, options: Options) -> (Gateway, SocketAddr) {
    let (cert_file, key_file) = ca.issue("server", false);
    let tls_addr: SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .expect("addr");
    let gw = Gateway::start_with(options.server(|s| {
        s.tls(ServerTls {
            listen: tls_addr,
            cert_file,
            key_file,
        })
    }));
    (gw, tls_addr)
}

fn authority(dir: &tempfile::TempDir) -> Authority {
    Authority::new(&dir.path().join("pki"))
}

type Req = (&'static str, String, Vec<(&'static str, String)>, Vec<u8>);

fn get(path: &str, headers: &[(&'static str, &str)]) -> Req {
    let headers = headers.iter().map(|(n, v)| (*n, v.to_string())).collect();
    ("GET", path.to_string(), headers, Vec::new())
}

fn post(path: &str, body: &Value, headers: &[(&'static str, &str)]) -> Req {
    let mut headers: Vec<_> = headers.iter().map(|(n, v)| (*n, v.to_string())).collect();
    headers.push(("content-type", "application/json".into()));
    (
        "POST",
        path.to_string(),
        headers,
        body.to_string().into_bytes(),
    )
}

/// `requests` one after the other on one HTTP/2 connection over TLS.
fn over_h2(client: &Client, addr: SocketAddr, requests: Vec<Req>) -> Vec<Result<Answer, String>> {
    client
        .connect(addr, b"", async |tls| {
            assert_eq!(session_of(&tls).0.as_deref(), Some(H2), "ALPN chose h2");
            let mut send = h2_open(tls).await;
            let mut out = Vec::new();
            for (method, path, headers, body) in &requests {
                let request = (*method, path.as_str(), headers.clone(), body.clone());
                out.push(h2_send(&mut send, "localhost", request).await);
            }
            out
        })
        .expect("TLS connection")
}

/// One request over HTTP/1.1 on TLS.
fn over_h1(client: &Client, addr: SocketAddr, request: Req) -> Answer {
    client
        .connect(addr, b"", async |tls| {
            let (method, path, headers, body) = request;
            h1_send(tls, "localhost", (method, path.as_str(), headers, body)).await
        })
        .expect("TLS connection")
}

/// What must be the same over both protocols: status, JSON, and the
/// headers but for those that differ by nature.
fn comparable(a: &Answer) -> (u16, Value, Vec<(String, String)>) {
    let mut headers: Vec<(String, String)> = a
        .headers
        .iter()
        .filter(|(n, _)| {
            !["date", "x-request-id", "connection", "content-length"].contains(&n.as_str())
        })
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_string()))
        .collect();
    headers.sort();
    (a.status, without_ids(a.json()), headers)
}

/// The JSON without what changes from one request to the next.
fn without_ids(mut v: Value) -> Value {
    if let Some(map) = v.as_object_mut() {
        for volatile in ["access", "refresh", "peer", "jti"] {
            map.remove(volatile);
        }
        if let Some(headers) = map.get_mut("headers").and_then(Value::as_object_mut) {
            headers.remove("x-request-id");
        }
    }
    v
}

#[test]
fn alpn_chooses_h2_or_http1_as_the_client_asks_on_tls_1_2_and_1_3() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = authority(&dir);
    let (_gw, addr) = tls_gateway(&ca, Options::default());
    for tls12_only in [false, true] {
        for (alpn, expected) in [
            (&[H2, H1][..], Some(H2)),
            (&[H1, H2][..], Some(H2)),
            (&[H1][..], Some(H1)),
            (&[][..], None),
        ] {
            let client = Client::new(&ca.ca(), alpn, tls12_only);
            let (chosen, answer) = client
                .connect(addr, b"", async |tls| {
                    let (chosen, _) = session_of(&tls);
                    let answer = if chosen.as_deref() == Some(H2) {
                        let mut send = h2_open(tls).await;
                        h2_send(
                            &mut send,
                            "localhost",
                            ("GET", "/.well-known/jwks.json", vec![], vec![]),
                        )
                        .await
                        .expect("h2 answer")
                    } else {
                        h1_send(
                            tls,
                            "localhost",
                            ("GET", "/api/accounts/nope/", vec![], vec![]),
                        )
                        .await
                    };
                    (chosen, answer)
                })
                .expect("TLS");
            assert_eq!(
                chosen.as_deref(),
                expected,
                "{alpn:?} tls12_only={tls12_only}"
            );
            assert!(
                [200, 404].contains(&answer.status),
                "{alpn:?}: {}",
                answer.status
            );
        }
    }
    // A client that trusts another authority gets no connection.
    let other = Authority::new(&dir.path().join("other"));
    let stranger = Client::new(&other.ca(), &[H2], false);
    assert!(stranger.connect(addr, b"", async |_| ()).is_err());
}

#[test]
fn the_account_api_proxy_path_cors_and_errors_answer_the_same_over_http2() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = authority(&dir);
    let (gw, addr) = tls_gateway(&ca, Options::default());
    let client_h2 = Client::new(&ca.ca(), &[H2], false);
    let client_h1 = Client::new(&ca.ca(), &[H1], false);
    // The seeds' flow over HTTP/2, on one connection.
    let register = json!({"email": "h2@example.com", "password": PASSWORD,
        "first_name": "Jean", "last_name": "Dupont", "gender": "H"});
    let login = json!({"email": "h2@example.com", "password": PASSWORD});
    let flow = over_h2(
        &client_h2,
        addr,
        vec![
            post("/api/accounts/register/", &register, &[]),
            post("/api/accounts/login/", &login, &[]),
        ],
    );
    let answers: Vec<Answer> = flow.into_iter().map(|a| a.expect("answer")).collect();
    assert_eq!(answers[0].status, 201, "{:?}", answers[0].json());
    assert_eq!(answers[1].status, 200, "{:?}", answers[1].json());
    let tokens = answers[1].json();
    let access = tokens["access"].as_str().expect("access").to_string();
    let refresh = tokens["refresh"].as_str().expect("refresh").to_string();
    let bearer = format!("Bearer {access}");
    let after = over_h2(
        &client_h2,
        addr,
        vec![
            get("/api/accounts/", &[("authorization", &bearer)]),
            get("/api/stocks/items", &[("authorization", &bearer)]),
            post("/api/accounts/refresh/", &json!({"refresh": refresh}), &[]),
        ],
    );
    let after: Vec<Answer> = after.into_iter().map(|a| a.expect("answer")).collect();
    assert_eq!(after[0].json()["email"], "h2@example.com");
    assert_eq!(after[1].status, 200);
    assert_eq!(after[1].json()["service"], "stocks");
    assert_eq!(after[2].status, 200, "{:?}", after[2].json());

    // The same request over both protocols: the same answer.
    let origin = "http://localhost:3000";
    let cases: Vec<Req> = vec![
        get("/api/stocks/items", &[]),
        get(
            "/api/stocks/items",
            &[("authorization", "Bearer not.a.token")],
        ),
        get(
            "/api/stocks/items",
            &[("authorization", &bearer), ("origin", origin)],
        ),
        get("/api/jobs/x", &[("authorization", &bearer)]),
        get("/api/accounts/nope/", &[]),
        get("/api/accounts/login/", &[]),
        get("/api/nowhere/", &[]),
        get("/api/stocks/%2e%2e/%2e%2e/etc", &[]),
        post(
            "/api/accounts/login/",
            &json!({"email": "h2@example.com"}),
            &[],
        ),
        post(
            "/api/accounts/login/",
            &json!({"email": "h2@example.com", "password": "x"}),
            &[],
        ),
        (
            "OPTIONS",
            "/api/stocks/items".into(),
            vec![
                ("origin", origin.into()),
                ("access-control-request-method", "GET".into()),
                ("access-control-request-headers", "authorization".into()),
            ],
            Vec::new(),
        ),
        get("/.well-known/jwks.json", &[]),
    ];
    let h2_answers = over_h2(&client_h2, addr, cases.clone());
    for (case, h2_answer) in cases.into_iter().zip(h2_answers) {
        let what = format!("{} {}", case.0, case.1);
        let h2_answer = h2_answer.unwrap_or_else(|e| panic!("{what}: {e}"));
        let h1_answer = over_h1(&client_h1, addr, case);
        assert_eq!(comparable(&h2_answer), comparable(&h1_answer), "{what}");
        assert!(h2_answer.header("x-request-id").is_some(), "{what}");
    }
    // A body and a long answer over HTTP/2 go by Pingora's path.
    let big = vec![b'x'; 3 * 1024 * 1024];
    let upload = over_h2(
        &client_h2,
        addr,
        vec![(
            "POST",
            "/api/stocks/upload".into(),
            vec![("authorization", bearer.clone())],
            big.clone(),
        )],
    );
    let upload = upload.into_iter().next().expect("one").expect("answer");
    assert_eq!(upload.status, 200);
    assert_eq!(upload.json()["body_bytes"], big.len());
    drop(gw);
}

#[test]
fn spoofed_identity_headers_over_http2_never_reach_the_upstream() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = authority(&dir);
    let (gw, addr) = tls_gateway(&ca, Options::default());
    let login = gw.register_and_login("spoof@example.com", PASSWORD);
    let bearer = format!("Bearer {}", login["access"].as_str().expect("access"));
    let account_id = login["account"]["id"].to_string();
    let spoofed: Vec<(&'static str, String)> = vec![
        ("x-user-id", "1".into()),
        ("x-user-id", "2".into()),
        ("x-user-email", "boss@example.com".into()),
        ("x-user-role", "Admin".into()),
        ("x-user-role", "Admin, Root".into()),
        ("x-session-id", "s".into()),
        ("x_user_id", "3".into()),
        ("x-real-ip", "6.6.6.6".into()),
        ("forwarded", "for=6.6.6.6".into()),
    ];
    let mut with_token = spoofed.clone();
    with_token.push(("authorization", bearer));
    let answers = over_h2(
        &Client::new(&ca.ca(), &[H2], false),
        addr,
        vec![
            ("GET", "/api/stocks/a".into(), with_token, Vec::new()),
            ("GET", "/api/stocks/b".into(), spoofed, Vec::new()),
        ],
    );
    let seen = answers[0].as_ref().expect("answer").json();
    let headers = &seen["headers"];
    assert_eq!(headers["x-user-id"], json!([account_id.trim_matches('"')]));
    assert_eq!(headers["x-user-email"], json!(["spoof@example.com"]));
    assert!(headers["x-user-role"]
        .as_array()
        .is_some_and(|r| r.len() == 1));
    assert!(headers.get("x_user_id").is_none(), "{headers}");
    assert!(headers.get("forwarded").is_none(), "{headers}");
    assert_eq!(headers["x-real-ip"], json!(["127.0.0.1"]));
    assert_eq!(headers["x-forwarded-proto"], json!(["https"]));
    // Without a token: 401, nothing upstream.
    let refused = answers[1].as_ref().expect("answer");
    assert_eq!(refused.status, 401);
}

#[test]
fn the_certificate_is_swapped_on_reload_while_a_connection_stays_open() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = authority(&dir);
    let (gw, addr) = tls_gateway(&ca, Options::default());
    let client = Client::new(&ca.ca(), &[H2], false);
    let served_cert = || {
        client
            .connect(addr, b"", async |tls| session_of(&tls).1)
            .expect("TLS")
    };
    let (cert_file, key_file) = (ca.dir.join("server.pem"), ca.dir.join("server.key"));
    let first = served_cert();
    let (next_cert, next_key) = ca.issue("next", false);
    let reload = || gw.cli(&["reload"], None);
    let outcome = client
        .connect(addr, b"", async |tls| {
            let mut send = h2_open(tls).await;
            let before = h2_send(
                &mut send,
                "localhost",
                ("GET", "/.well-known/jwks.json", vec![], vec![]),
            )
            .await;
            std::fs::copy(&next_cert, &cert_file).expect("copy");
            std::fs::copy(&next_key, &key_file).expect("copy");
            // (Blocks this test's one-thread runtime: the server does not care.)
            let out = reload();
            let after = h2_send(
                &mut send,
                "localhost",
                ("GET", "/.well-known/jwks.json", vec![], vec![]),
            )
            .await;
            (before, out, after)
        })
        .expect("TLS");
    let (before, out, after) = outcome;
    assert_eq!(before.expect("before").status, 200);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(after.expect("the open connection goes on").status, 200);
    let second = served_cert();
    assert_ne!(first, second, "new connections get the new certificate");

    // A bad pair is refused by name; the pair in force stays.
    let bad_pairs: [(&str, PathBuf, &str); 3] = [
        (
            "not a certificate",
            cert_file.clone(),
            "server.tls.cert_file",
        ),
        ("", cert_file.clone(), "server.tls.cert_file"),
        ("not a key", key_file.clone(), "server.tls.key_file"),
    ];
    for (content, path, key) in bad_pairs {
        let saved = std::fs::read(&path).expect("read");
        std::fs::write(&path, content).expect("write");
        let out = reload();
        assert!(!out.status.success());
        let said = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(said.contains(key), "{said}");
        assert_eq!(served_cert(), second);
        std::fs::write(&path, saved).expect("restore");
    }
    // A key of another pair.
    let (_, stray_key) = ca.issue("stray", false);
    std::fs::copy(&stray_key, &key_file).expect("copy");
    let out = reload();
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success() && said.contains("server.tls.key_file"),
        "{said}"
    );
    assert_eq!(served_cert(), second);
    let check = gw.cli(&["check-config"], None);
    assert!(!check.status.success());
    assert!(String::from_utf8_lossy(&check.stderr).contains("server.tls.key_file"));
}

#[test]
fn h2c_with_prior_knowledge_on_the_plain_listener_when_enabled() {
    let gw = Gateway::start_with(Options::default().server(|s| s.h2c(true)));
    let addr = gw.addr;
    let mut answers = tls::h2c(
        addr,
        "gw",
        vec![
            ("GET", "/api/stocks/x", vec![], vec![]),
            ("GET", "/api/accounts/nope/", vec![], vec![]),
        ],
    );
    assert_eq!(answers.remove(0).expect("h2c").status, 401);
    assert_eq!(answers.remove(0).expect("h2c").json()["code"], "not_found");
    // HTTP/1.1 still served there.
    assert_eq!(gw.get("/api/accounts/nope/", None).status, 404);
}

#[test]
fn without_h2c_a_prior_knowledge_client_gets_no_http2() {
    let gw = Gateway::start();
    let addr = gw.addr;
    let outcome = tls::runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (send, connection) = h2::client::handshake(tcp).await.expect("handshake");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut send = send;
        h2_send(
            &mut send,
            "gw",
            ("GET", "/.well-known/jwks.json", vec![], vec![]),
        )
        .await
    });
    assert!(outcome.is_err(), "{outcome:?}");
}

#[test]
fn the_proxy_protocol_comes_before_tls() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = authority(&dir);
    let (gw, addr) = tls_gateway(&ca, Options::default().server(|s| s.proxy_protocol(true)));
    let client = Client::new(&ca.ca(), &[H2], false);
    let line = format!(
        "PROXY TCP4 198.51.100.8 127.0.0.1 40000 {}\r\n",
        addr.port()
    );
    let answer = client
        .connect(addr, line.as_bytes(), async |tls| {
            let mut send = h2_open(tls).await;
            h2_send(
                &mut send,
                "localhost",
                ("GET", "/api/stocks/x", vec![], vec![]),
            )
            .await
        })
        .expect("TLS after the PROXY header");
    assert_eq!(answer.expect("answer").status, 401);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !gw.log().contains("client=198.51.100.8") {
        assert!(std::time::Instant::now() < deadline, "{}", gw.log());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Without the header, no handshake.
    assert!(client.connect(addr, b"", async |_| ()).is_err());
}

#[test]
fn a_silent_or_plain_text_client_on_the_tls_listener_is_dropped_within_the_head_deadline() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("dir");
    let ca = authority(&dir);
    let (gw, addr) = tls_gateway(
        &ca,
        Options::default().server(|s| s.header_timeout(std::time::Duration::from_secs(1))),
    );
    for sent in [
        &b""[..],
        b"\x16\x03\x01\x02",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let mut conn = std::net::TcpStream::connect(addr).expect("connect");
        conn.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .expect("timeout");
        conn.write_all(sent).expect("write");
        let started = std::time::Instant::now();
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{sent:?}: {rest:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{sent:?}: closed after {:?}",
            started.elapsed()
        );
    }
    let metrics = gw.admin_get("/metrics").text;
    assert!(
        metrics.contains("vigile_edge_refusals_total{reason=\"tls_client_hello\"} 3"),
        "{metrics}"
    );
    // A real client still gets through.
    let client = Client::new(&ca.ca(), &[H2], false);
    assert!(client.connect(addr, b"", async |_| ()).is_ok());
}

#[test]
fn the_handshake_and_the_first_head_share_one_deadline() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("dir");
    let ca = authority(&dir);
    let (_gw, addr) = tls_gateway(
        &ca,
        Options::default().server(|s| s.header_timeout(Duration::from_secs(4))),
    );
    // A client that spends most of the head deadline before its
    // ClientHello, then trickles a head: it is not given a fresh
    // `header_timeout` for each step (that would be 2.5 + 4 s here).
    let client = Client::new(&ca.ca(), &[b"http/1.1"], false);
    let started = Instant::now();
    let answer = client
        .connect_late(addr, b"", Duration::from_millis(2500), async |mut tls| {
            tls.write_all(b"GET /api/stocks/ HTTP/1.1\r\nHost: gw\r\n")
                .await
                .expect("write");
            let mut answer = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut answer)).await;
            answer
        })
        .expect("handshake within the deadline");
    let elapsed = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(
        elapsed >= Duration::from_millis(3500) && elapsed < Duration::from_millis(6000),
        "closed after {elapsed:?}"
    );
}

/// Polls `check` every 50 ms for up to `within`.
fn eventually(within: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    check()
}

#[test]
fn handshakes_hold_their_place_in_max_connections_and_fail_quietly() {
    use std::io::{Read, Write};
    use std::time::Duration;
    let dir = tempfile::tempdir().expect("dir");
    let ca = authority(&dir);
    let (gw, addr) = tls_gateway(
        &ca,
        Options::default().server(|s| s.header_timeout(Duration::from_secs(4)).max_connections(3)),
    );
    let open = |gw: &Gateway| gw.metric("vigile_client_connections");
    assert!(eventually(Duration::from_secs(5), || open(&gw) == 0.0));
    let client = Client::new(&ca.ca(), &[H2], false);
    // Three clients stalled in their ClientHello take the three places.
    let stalled: Vec<std::net::TcpStream> = (0..3)
        .map(|_| {
            let mut conn = std::net::TcpStream::connect(addr).expect("connect");
            conn.write_all(b"\x16\x03\x01").expect("write");
            conn
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(3), || open(&gw) == 3.0),
        "{}",
        open(&gw)
    );
    // The next one is closed before any handshake, and counted.
    assert!(client.connect(addr, b"", async |_| ()).is_err());
    assert_eq!(
        gw.metric("vigile_connections_refused_total{reason=\"max_connections\"}"),
        1.0
    );
    drop(stalled);
    assert!(
        eventually(Duration::from_secs(5), || open(&gw) == 0.0),
        "{}",
        open(&gw)
    );
    assert!(client.connect(addr, b"", async |_| ()).is_ok());

    // A ClientHello that is no ClientHello, and one cut short after its
    // first record's header: both closed, counted, and no error logged.
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    conn.write_all(b"\x16\x03\x01\x00\x05hello").expect("write");
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    // At most a TLS alert record, never HTTP.
    assert!(rest.is_empty() || rest[0] == 0x15, "{rest:?}");
    assert!(eventually(Duration::from_secs(3), || {
        gw.metric("vigile_edge_refusals_total{reason=\"tls_handshake\"}") == 1.0
    }));
    // A real ClientHello, then silence: the handshake is cut at the head
    // deadline, not at Pingora's 60 s.
    let config = tokio_rustls::rustls::ClientConfig::builder()
        .with_root_certificates(tokio_rustls::rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = "localhost".try_into().expect("name");
    let mut hello = Vec::new();
    tokio_rustls::rustls::ClientConnection::new(std::sync::Arc::new(config), name)
        .expect("client")
        .write_tls(&mut hello)
        .expect("ClientHello");
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    conn.write_all(&hello).expect("write");
    let started = std::time::Instant::now();
    let _ = conn.read_to_end(&mut Vec::new());
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    assert!(eventually(Duration::from_secs(3), || {
        gw.metric("vigile_edge_refusals_total{reason=\"tls_handshake\"}") == 2.0
    }));
    let log = gw.log();
    assert!(
        !log.lines()
            .any(|l| l.contains("ERROR") && l.to_lowercase().contains("handshake")),
        "{log}"
    );
}

#[test]
fn a_tls_wildcard_on_ipv4_leaves_a_plain_ipv6_listener_on_its_port_plain() {
    // `0.0.0.0:P` takes no IPv6 connection, so `check-config` lets `[::1]:P`
    // beside it; the connections that come to `[::1]:P` are plain ones.
    let dir = tempfile::tempdir().expect("dir");
    let ca = authority(&dir);
    let (cert_file, key_file) = ca.issue("server", false);
    let port = common::free_port();
    let plain: SocketAddr = format!("[::1]:{port}").parse().expect("addr");
    // Free on IPv6 loopback too (the port was picked on 127.0.0.1).
    drop(std::net::TcpListener::bind(plain).expect("IPv6 loopback ([::1]) with this port free"));
    let tls_listen: SocketAddr = format!("0.0.0.0:{port}").parse().expect("addr");
    let _gw = Gateway::start_with(Options::default().server(|s| {
        s.listen(plain).tls(ServerTls {
            listen: tls_listen,
            cert_file,
            key_file,
        })
    }));
    let (answer, _) = crate::common::scripted::raw_exchange(
        plain,
        b"GET /api/stocks/ HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(answer.status, 401, "{}", answer.text());
    let ipv4: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let client = Client::new(&ca.ca(), &[H1], false);
    assert!(client.connect(ipv4, b"", async |_| ()).is_ok());
}
