//! An attacker's view of the edge: forwarded-for tricks behind a trusted
//! balancer, addresses a client may rotate, and what a client may claim
//! about itself in headers the upstream could believe.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::json;

use crate::common::config::UnderscoreHeaders;
use crate::common::scripted::{self, gateway_before, header_of, split_answer, RawAnswer, Scripted};
use crate::common::tls::h2c;
use crate::common::{self, Gateway, Options};
use crate::edge_h2::{block as h2_block, frame as h2_frame, PREFACE};

const PASSWORD: &str = "motdepasse-solide-42";
/// The load balancer in front (trusted), and a client around it.
const BALANCER: &str = "127.0.0.2";
const AROUND: &str = "127.0.0.3";

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}

/// `request` on a connection from `local`; the answer.
fn send_from(local: &str, to: SocketAddr, request: &str) -> RawAnswer {
    let mut conn = common::connect_from(ip(local), to);
    conn.write_all(request.as_bytes()).expect("write");
    let mut bytes = Vec::new();
    let _ = conn.read_to_end(&mut bytes);
    split_answer(&bytes).0
}

/// One IPv6 host owns a whole /64 (SLAAC, privacy addresses): a new
/// address for each guess must not buy new guesses. The throttles count an
/// IPv6 client by its /64.
#[test]
fn an_ipv6_client_rotating_addresses_in_its_64_is_throttled_as_one() {
    let gw = Gateway::start_with(
        Options::default()
            .server(|s| s.trusted_proxies([BALANCER]))
            .accounts(|a| {
                a.max_failures(3).hash_workers(2).reset_throttle(
                    common::config::ResetThrottle::default()
                        .max_requests(100)
                        .max_requests_per_ip(2),
                )
            }),
    );
    gw.register_and_login("victim@example.com", PASSWORD);
    let login_as = |client: &str, password: &str| {
        let body = json!({"email": "victim@example.com", "password": password});
        let request = scripted::json_post(
            "/api/accounts/login/",
            &body,
            &[("X-Forwarded-For", client)],
        );
        send_from(BALANCER, gw.addr, &request).status
    };
    for i in 1..=3 {
        assert_eq!(login_as(&format!("2001:db8:1:2::{i}"), "devine"), 401);
    }
    // A fourth address of the same /64 (another spelling too): the same client.
    assert_eq!(login_as("2001:db8:1:2:ffff:ffff:ffff:fffe", "devine"), 429);
    assert_eq!(login_as("[2001:0db8:0001:0002::9]:443", "devine"), 429);
    // Another /64 is another client: the victim there is not locked out.
    assert_eq!(login_as("2001:db8:1:3::1", PASSWORD), 200);

    let forgotten = |client: &str, n: usize| {
        let body = json!({"email": format!("nobody{n}@example.com")});
        let request = scripted::json_post(
            "/api/accounts/password-forgotten/",
            &body,
            &[("X-Forwarded-For", client)],
        );
        send_from(BALANCER, gw.addr, &request).status
    };
    assert_eq!(forgotten("2001:db8:5:6::1", 0), 202);
    assert_eq!(forgotten("2001:db8:5:6::2", 1), 202);
    assert_eq!(forgotten("2001:db8:5:6::3", 2), 429);
    assert_eq!(forgotten("2001:db8:5:7::1", 3), 202);
}

/// What a client may claim about its address or scheme in headers that
/// CDNs, WSGI servers, Rack or Spring read in place of the connection's:
/// each as sent, and as its underscore twin (`X_Forwarded_For` is
/// `HTTP_X_FORWARDED_FOR` to a WSGI/CGI backend, beside or instead of the
/// gateway's own `X-Forwarded-For`).
const CLAIMS: [(&str, &str); 24] = [
    ("True-Client-IP", "6.6.6.1"),
    ("CF-Connecting-IP", "6.6.6.2"),
    ("Fastly-Client-IP", "6.6.6.3"),
    ("X-Client-IP", "6.6.6.4"),
    ("X-Cluster-Client-IP", "6.6.6.5"),
    ("Client-IP", "6.6.6.6"),
    ("X-Originating-IP", "6.6.6.7"),
    ("X-Forwarded", "for=6.6.6.8"),
    ("Forwarded-For", "6.6.6.9"),
    ("X-Remote-IP", "6.6.6.10"),
    ("X-Remote-Addr", "6.6.6.11"),
    ("X-Forwarded-Ssl", "on"),
    ("X-Forwarded-Scheme", "https"),
    ("X-Url-Scheme", "https"),
    ("Front-End-Https", "on"),
    ("X_Forwarded_For", "6.6.6.12"),
    ("x_real_ip", "6.6.6.13"),
    ("X_Real-IP", "6.6.6.14"),
    ("X_Forwarded_Proto", "https"),
    ("X_Forwarded_Host", "admin.internal"),
    ("X_Request_Id", "forged"),
    ("True_Client_IP", "6.6.6.15"),
    ("CF_Connecting_IP", "6.6.6.16"),
    ("X_Forwarded_Prefix", "/admin"),
];

/// The claims of `CLAIMS` found in an upstream's request head.
fn claims_in(head: &str) -> Vec<String> {
    let lower = head.to_ascii_lowercase();
    CLAIMS
        .iter()
        .filter(|(name, value)| {
            let line = format!(
                "\n{}: {}",
                name.to_ascii_lowercase(),
                value.to_ascii_lowercase()
            );
            lower.contains(&line)
        })
        .map(|(name, _)| name.to_string())
        .collect()
}

#[test]
fn client_address_and_scheme_claims_never_reach_the_upstream_over_either_protocol() {
    let upstream = Scripted::ok();
    // `keep`: header names with `_` pass, but not twins of the gateway's.
    let gw = gateway_before(
        &upstream,
        Duration::from_secs(5),
        Options::default().server(|s| {
            s.trusted_proxies([BALANCER])
                .underscore_headers(UnderscoreHeaders::Keep)
                .h2c(true)
        }),
    );
    let mut headers: Vec<(&str, &str)> = CLAIMS.to_vec();
    headers.push(("X_Custom", "kept"));
    // HTTP/1.1 around the balancer (the direct path), and a POST (Pingora's).
    for method in ["GET", "POST"] {
        let answer = send_from(
            AROUND,
            gw.addr,
            &scripted::request(method, "/api/raw/x", &headers),
        );
        assert_eq!(answer.status, 200, "{}", answer.head);
        let head = upstream.requests().last().cloned().expect("a request");
        assert_eq!(claims_in(&head), Vec::<String>::new(), "{method}: {head}");
        assert_eq!(header_of(&head, "x-real-ip"), Some(AROUND), "{head}");
        assert_eq!(header_of(&head, "x-forwarded-for"), Some(AROUND), "{head}");
        assert_eq!(
            header_of(&head, "x-forwarded-proto"),
            Some("http"),
            "{head}"
        );
        assert_eq!(header_of(&head, "x_custom"), Some("kept"), "{head}");
    }
    // Through the balancer: the claims go the same way.
    let mut through = headers.clone();
    through.push(("X-Forwarded-For", "198.51.100.1"));
    let answer = send_from(
        BALANCER,
        gw.addr,
        &scripted::request("GET", "/api/raw/x", &through),
    );
    assert_eq!(answer.status, 200, "{}", answer.head);
    let head = upstream.requests().last().cloned().expect("a request");
    assert_eq!(claims_in(&head), Vec::<String>::new(), "{head}");
    assert_eq!(
        header_of(&head, "x-real-ip"),
        Some("198.51.100.1"),
        "{head}"
    );
    // HTTP/2 with prior knowledge (Pingora's path), names in lower case.
    let addr = gw.addr;
    let lower: Vec<(String, String)> = CLAIMS
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
        .collect();
    let request_headers: Vec<(&str, String)> =
        lower.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
    let answer = h2c(
        addr,
        "gw",
        vec![("GET", "/api/raw/h2", request_headers, vec![])],
    );
    assert_eq!(answer[0].as_ref().expect("an answer").status, 200);
    let head = upstream.requests().last().cloned().expect("a request");
    assert!(head.contains("/api/raw/h2"), "{head}");
    assert_eq!(claims_in(&head), Vec::<String>::new(), "{head}");
    assert_eq!(header_of(&head, "x-real-ip"), Some("127.0.0.1"), "{head}");
}

/// A client around the balancer may send several `X-Forwarded-For`
/// headers: none is believed, and the upstream gets all of what it sent,
/// in order, then its address (as one header), on both forwarding paths
/// and over HTTP/2.
#[test]
fn every_forwarded_for_header_of_an_untrusted_client_is_appended_to() {
    let upstream = Scripted::ok();
    let gw = gateway_before(
        &upstream,
        Duration::from_secs(5),
        Options::default().server(|s| s.trusted_proxies([BALANCER]).h2c(true)),
    );
    let sent = [
        ("X-Forwarded-For", "6.6.6.6"),
        ("x-forwarded-for", " "),
        ("X-FORWARDED-FOR", "7.7.7.7, 127.0.0.2"),
    ];
    let expected = format!("6.6.6.6, 7.7.7.7, 127.0.0.2, {AROUND}");
    for method in ["GET", "POST"] {
        let answer = send_from(
            AROUND,
            gw.addr,
            &scripted::request(method, "/api/raw/x", &sent),
        );
        assert_eq!(answer.status, 200, "{}", answer.head);
        let head = upstream.requests().last().cloned().expect("a request");
        assert_eq!(
            header_of(&head, "x-forwarded-for"),
            Some(expected.as_str()),
            "{method}: {head}"
        );
        assert_eq!(
            head.to_ascii_lowercase()
                .matches("x-forwarded-for:")
                .count(),
            1
        );
        assert_eq!(header_of(&head, "x-real-ip"), Some(AROUND), "{head}");
    }
    let addr = gw.addr;
    let headers = sent
        .iter()
        .map(|(_, v)| ("x-forwarded-for", v.to_string()))
        .collect();
    let answer = h2c(addr, "gw", vec![("GET", "/api/raw/h2", headers, vec![])]);
    assert_eq!(answer[0].as_ref().expect("an answer").status, 200);
    let head = upstream.requests().last().cloned().expect("a request");
    assert_eq!(
        header_of(&head, "x-forwarded-for"),
        Some("6.6.6.6, 7.7.7.7, 127.0.0.2, 127.0.0.1"),
        "{head}"
    );
}

/// A PROXY v2 header (`command`, `family` byte) with IPv4 addresses, the
/// source `198.51.100.N`.
fn proxy_v2_raw(command: u8, family: u8, n: u8) -> Vec<u8> {
    let mut body = vec![198, 51, 100, n, 127, 0, 0, 1];
    body.extend_from_slice(&40000u16.to_be_bytes());
    body.extend_from_slice(&443u16.to_be_bytes());
    scripted::proxy_v2_header(command, family, &body)
}

/// PROXY protocol v2 lists the family and transport pairs a header may
/// name (UNSPEC, TCP or UDP over IPv4, IPv6, UNIX); any other value "must
/// be rejected as invalid by receivers". A PROXY command naming one (an
/// IPv4 address with no transport, no family with a transport) is refused
/// like any invalid header, and never names the client; LOCAL ignores the
/// family, as the protocol says.
#[test]
fn a_proxy_v2_header_with_an_unlisted_family_or_transport_is_refused() {
    let upstream = Scripted::ok();
    let gw = gateway_before(
        &upstream,
        Duration::from_secs(5),
        Options::default().server(|s| {
            s.proxy_protocol(true)
                .header_timeout(Duration::from_secs(2))
        }),
    );
    let request = scripted::request("GET", "/api/raw/x", &[]);
    let through = |header: Vec<u8>| {
        let mut conn = common::connect_from(ip(BALANCER), gw.addr);
        conn.write_all(&[header, request.as_bytes().to_vec()].concat())
            .expect("write");
        let mut bytes = Vec::new();
        let _ = conn.read_to_end(&mut bytes);
        split_answer(&bytes).0
    };
    // Listed: TCP over IPv4 names the client.
    let answer = through(proxy_v2_raw(1, 0x11, 1));
    assert_eq!(answer.status, 200, "{}", answer.head);
    let head = upstream.requests().last().cloned().expect("a request");
    assert_eq!(header_of(&head, "x-real-ip"), Some("198.51.100.1"));
    let before = upstream.requests().len();
    for family in [0x10, 0x01, 0x13, 0x20, 0x30, 0x02] {
        let answer = through(proxy_v2_raw(1, family, 2));
        assert_eq!(answer.status, 0, "family {family:#04x}: {}", answer.head);
    }
    assert_eq!(upstream.requests().len(), before, "a refused header passed");
    // LOCAL with any family: the balancer's own connection.
    let answer = through(proxy_v2_raw(0, 0x10, 3));
    assert_eq!(answer.status, 200, "{}", answer.head);
    let head = upstream.requests().last().cloned().expect("a request");
    assert_eq!(header_of(&head, "x-real-ip"), Some(BALANCER));
    assert!(gw.metric("vigile_edge_refusals_total{reason=\"proxy_protocol\"}") >= 6.0);
}

/// `CONNECT` (a tunnel through the gateway) is refused with the same JSON
/// 405 and `Allow` over HTTP/2 as over HTTP/1.1, and reaches no upstream.
#[test]
fn connect_is_refused_with_the_same_json_405_over_http2_as_over_http1() {
    let upstream = Scripted::ok();
    let gw = gateway_before(
        &upstream,
        Duration::from_secs(5),
        Options::default().server(|s| s.h2c(true)),
    );
    let target = upstream.addr.to_string();
    let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\nGET /api/raw/x HTTP/1.1\r\nHost: gw\r\n\r\n");
    let (h1, rest) = scripted::raw_exchange(gw.addr, request.as_bytes());
    assert_eq!(h1.status, 405, "{}", h1.head);
    assert_eq!(h1.code(), "method_not_allowed");
    assert!(rest.is_empty(), "a second answer on the refused connection");
    let addr = gw.addr;
    let mut h2 = h2c(addr, &target, vec![("CONNECT", "", vec![], vec![])]);
    let h2 = h2.remove(0).expect("an answer");
    assert_eq!(h2.status, 405);
    assert_eq!(h2.json()["code"], "method_not_allowed", "{:?}", h2.body);
    assert_eq!(h2.header("content-type"), Some("application/json"));
    assert_eq!(h2.header("allow"), h1.header("allow"));
    assert!(h2.header("server").is_none(), "{:?}", h2.headers);
    assert_eq!(upstream.requests().len(), 0, "{:?}", upstream.requests());
}

/// The header blocks (HEADERS frames) and the DATA the server sent on
/// stream 1 of `conn`, until it goes quiet.
fn h2_stream_1(conn: &mut std::net::TcpStream) -> (Vec<u8>, Vec<u8>) {
    conn.set_read_timeout(Some(Duration::from_millis(700)))
        .expect("timeout");
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16384];
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
    }
    let (mut headers, mut data) = (Vec::new(), Vec::new());
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = usize::from(bytes[at]) << 16
            | usize::from(bytes[at + 1]) << 8
            | usize::from(bytes[at + 2]);
        let id = u32::from_be_bytes([bytes[at + 5], bytes[at + 6], bytes[at + 7], bytes[at + 8]])
            & 0x7fff_ffff;
        let payload = bytes.get(at + 9..at + 9 + len).unwrap_or(&[]);
        match (bytes[at + 3], id) {
            (0, 1) => data.extend_from_slice(payload),
            (1, 1) => headers.extend_from_slice(payload),
            _ => {}
        }
        at += 9 + len;
    }
    (headers, data)
}

/// A bad `Host` over HTTP/2 (one that differs from `:authority`, two of
/// them, user information, a space) is refused with a 400 and reaches no
/// upstream, as over HTTP/1.1. Known difference: over HTTP/2 the 400 is
/// bare (no JSON body): Pingora's HTTP/2 accept loop writes it before any
/// filter of vigile's runs, and that loop is not public (README, "The
/// edge").
#[test]
fn a_bad_host_over_http2_is_refused_with_400_and_reaches_no_upstream() {
    let upstream = Scripted::ok();
    let gw = gateway_before(
        &upstream,
        Duration::from_secs(5),
        Options::default().server(|s| s.h2c(true)),
    );
    let base = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/api/raw/x"),
    ];
    let tricks: [&[(&str, &str)]; 4] = [
        &[(":authority", "gw"), ("host", "other")],
        &[(":authority", "gw"), ("host", "gw"), ("host", "gw2")],
        &[(":authority", "user@gw")],
        &[(":authority", "gw"), ("host", "a b")],
    ];
    for trick in tricks {
        let mut conn = std::net::TcpStream::connect(gw.addr).expect("connect");
        let mut headers = base.to_vec();
        headers.extend(trick.iter().copied());
        let mut bytes = PREFACE.to_vec();
        bytes.extend(h2_frame(4, 0, 0, &[]));
        bytes.extend(h2_frame(1, 0x5, 1, &h2_block(&headers)));
        conn.write_all(&bytes).expect("write");
        let (headers, data) = h2_stream_1(&mut conn);
        // `:status: 400` is entry 12 of HPACK's static table: 0x80 | 12.
        assert_eq!(
            headers.first(),
            Some(&0x8c),
            "{trick:?}: {headers:?} {}",
            String::from_utf8_lossy(&data)
        );
    }
    assert_eq!(upstream.requests().len(), 0);
}

/// An upstream's connection-specific answer headers (which HTTP/2 forbids:
/// a client would drop the whole answer as malformed) and the headers its
/// `Connection` names stay with the gateway; the HTTP/2 client gets a
/// well-formed answer.
#[test]
fn connection_headers_of_an_upstream_answer_never_reach_an_http2_client() {
    let upstream = Scripted::start(|_, conn| {
        let _ = conn.write_all(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\n\
              X-Hop: secret\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nTE: trailers\r\n\
              X-Kept: 1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        );
        true
    });
    let gw = gateway_before(
        &upstream,
        Duration::from_secs(5),
        Options::default().server(|s| s.h2c(true)),
    );
    let addr = gw.addr;
    let answers = h2c(
        addr,
        "gw",
        ["GET", "POST"]
            .map(|method| (method, "/api/raw/x", vec![], b"{}".to_vec()))
            .into(),
    );
    for answer in answers {
        let answer = answer.expect("a well-formed answer");
        assert_eq!((answer.status, answer.body.as_slice()), (200, &b"ok"[..]));
        for gone in [
            "connection",
            "keep-alive",
            "x-hop",
            "proxy-connection",
            "upgrade",
            "te",
            "transfer-encoding",
        ] {
            assert!(
                answer.header(gone).is_none(),
                "{gone}: {:?}",
                answer.headers
            );
        }
        assert_eq!(answer.header("x-kept"), Some("1"));
    }
}

/// An HTTP/2 client that opens streams and never opens its flow-control
/// window reads nothing of their answers: as a client that stops reading
/// over HTTP/1.1, it is given `server.write_timeout`, then its streams are
/// given up and the upstream connections they held are released (they
/// were held as long as the client kept the connection: up to 100 upstream
/// connections pinned by one client connection).
#[test]
fn an_http2_client_that_never_opens_its_window_releases_the_upstream_at_the_write_timeout() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    const SIZE: usize = 32 * 1024 * 1024;
    let given_up = Arc::new(AtomicUsize::new(0));
    let seen = given_up.clone();
    let upstream = Scripted::start(move |_, conn| {
        if !scripted::write_long_answer(conn, SIZE) {
            seen.fetch_add(1, Ordering::SeqCst);
        }
        false
    });
    let gw = gateway_before(
        &upstream,
        Duration::from_secs(5),
        Options::default().server(|s| s.h2c(true).write_timeout(Duration::from_secs(1))),
    );
    let mut conn = windowless_h2(gw.addr, &[1, 3, 5]);
    // The client keeps its connection open (and reads, so that its own
    // socket never fills) while the gateway decides.
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 16384];
    while given_up.load(Ordering::SeqCst) < 3 && std::time::Instant::now() < deadline {
        match conn.read(&mut buf) {
            Ok(0) => break,
            _ => continue,
        }
    }
    assert_eq!(
        given_up.load(Ordering::SeqCst),
        3,
        "upstream connections still held by a client that reads nothing"
    );
    // The client's fault, not the upstream's.
    let metrics = gw.admin_get("/metrics").text;
    let upstream_errors: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("vigile_upstream_errors_total{"))
        .collect();
    assert!(upstream_errors.is_empty(), "{upstream_errors:?}");
}

/// Each HTTP/2 stream holds what an HTTP/1.1 connection does (an upstream
/// connection, its descriptor, an idle one after it), so it takes a place
/// in `server.max_connections` too: one client connection with 100 streams
/// to a slow route held 100 upstream connections whatever the cap (the
/// open-file budget is sized by it). Past the cap a stream gets the same
/// JSON 503 `too_many_connections` a connection gets, and the places come
/// back when the streams end.
#[test]
fn http2_streams_count_in_max_connections() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    const CAP: usize = 10;
    const STREAMS: usize = 30;
    let active = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (now, peak) = (active.clone(), most.clone());
    let upstream = Scripted::start(move |_, conn| {
        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(n, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(1500));
        now.fetch_sub(1, Ordering::SeqCst);
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        true
    });
    let gw = gateway_before(
        &upstream,
        Duration::from_secs(10),
        Options::default().server(|s| s.h2c(true).max_connections(CAP)),
    );
    let addr = gw.addr;
    let answers = crate::common::tls::runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let send = crate::common::tls::h2_open(tcp).await;
        let mut tasks = Vec::new();
        for i in 0..STREAMS {
            let mut send = send.clone();
            tasks.push(tokio::spawn(async move {
                let path = format!("/api/raw/slow{i}");
                crate::common::tls::h2_send(&mut send, "gw", ("GET", &path, vec![], vec![])).await
            }));
        }
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await.expect("task"));
        }
        out
    });
    let mut served = 0;
    let mut refused = 0;
    for answer in answers {
        let answer = answer.expect("an answer");
        match answer.status {
            200 => served += 1,
            503 => {
                assert_eq!(answer.json()["code"], "too_many_connections");
                assert_eq!(answer.header("retry-after"), Some("1"));
                refused += 1;
            }
            other => panic!("{other}: {:?}", answer.body),
        }
    }
    assert!(
        most.load(Ordering::SeqCst) <= CAP,
        "{} upstream requests at once past max_connections {CAP}",
        most.load(Ordering::SeqCst)
    );
    assert!(
        served >= 1 && refused >= 1,
        "{served} served, {refused} refused"
    );
    // The places came back: a new connection's streams are served.
    let again = h2c(addr, "gw", vec![("GET", "/api/raw/again", vec![], vec![])]);
    assert_eq!(again[0].as_ref().expect("an answer").status, 200);
    assert!(gw.metric("vigile_connections_refused_total{reason=\"max_connections\"}") >= 1.0);
    // Every place came back once the connections closed (bounded wait).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while gw.metric("vigile_client_connections") > 0.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(gw.metric("vigile_client_connections"), 0.0);
}

/// What a client does to its own request (it goes away in the middle of
/// its answer, or reads none of it) is not the gateway's error: no ERROR
/// line per such request (any client could fill the log and page the
/// operator with them); the access log still has the request.
#[test]
fn a_client_that_drops_or_stalls_its_answer_logs_no_error() {
    const SIZE: usize = 16 * 1024 * 1024;
    let upstream = Scripted::start(move |_, conn| {
        scripted::write_long_answer(conn, SIZE);
        false
    });
    let gw = gateway_before(
        &upstream,
        Duration::from_secs(5),
        Options::default().server(|s| s.h2c(true).write_timeout(Duration::from_secs(1))),
    );
    // HTTP/1.1 on Pingora's path (a body): reads a little, then goes away.
    for _ in 0..3 {
        let mut conn = std::net::TcpStream::connect(gw.addr).expect("connect");
        conn.write_all(scripted::request("POST", "/api/raw/big", &[]).as_bytes())
            .expect("write");
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf);
        drop(conn);
    }
    // HTTP/2: a stream without window, given up at the write timeout.
    let mut conn = windowless_h2(gw.addr, &[1]);
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    // Until the access log has all four requests (bounded).
    let logged = |log: &str| {
        log.lines()
            .filter(|l| l.contains("vigile::access") && l.contains("route=\"raw\""))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 16384];
    while logged(&gw.log()) < 4 && std::time::Instant::now() < deadline {
        let _ = conn.read(&mut buf);
    }
    let log = gw.log();
    assert_eq!(logged(&log), 4, "{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

/// An h2c connection whose client opens no flow-control window
/// (`SETTINGS_INITIAL_WINDOW_SIZE = 0`: no answer byte may be sent), with a
/// GET of `/api/raw/big` on each of `streams`.
fn windowless_h2(addr: SocketAddr, streams: &[u32]) -> std::net::TcpStream {
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    let mut bytes = PREFACE.to_vec();
    bytes.extend(h2_frame(4, 0, 0, &[0, 4, 0, 0, 0, 0]));
    let headers = [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "gw"),
        (":path", "/api/raw/big"),
    ];
    for &stream in streams {
        bytes.extend(h2_frame(1, 0x5, stream, &h2_block(&headers)));
    }
    conn.write_all(&bytes).expect("write");
    conn
}

/// A client that resets its HTTP/2 streams (`RST_STREAM`) while the
/// upstream takes its time gives their places in `server.max_connections`
/// back at once, and the gateway gives up the upstream connections: h2 no
/// longer counts a reset stream against the connection's own limit, so
/// keeping them would let one connection take every place.
#[test]
fn reset_http2_streams_give_their_places_back_at_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let closed = Arc::new(AtomicUsize::new(0));
    let seen = closed.clone();
    let upstream = Scripted::start(move |_, conn| {
        // Answers only after 8 s, unless the gateway closes first.
        let _ = conn.set_read_timeout(Some(Duration::from_secs(8)));
        let mut byte = [0u8; 1];
        if let Ok(0) = conn.read(&mut byte) {
            seen.fetch_add(1, Ordering::SeqCst);
        }
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        false
    });
    let gw = gateway_before(
        &upstream,
        Duration::from_secs(10),
        Options::default().server(|s| s.h2c(true)),
    );
    let open = |gw: &Gateway| gw.metric("vigile_client_connections");
    let mut conn = std::net::TcpStream::connect(gw.addr).expect("connect");
    let mut bytes = PREFACE.to_vec();
    bytes.extend(h2_frame(4, 0, 0, &[]));
    let headers = [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "gw"),
        (":path", "/api/raw/slow"),
    ];
    let streams = [1u32, 3, 5, 7];
    for &stream in &streams {
        bytes.extend(h2_frame(1, 0x5, stream, &h2_block(&headers)));
    }
    conn.write_all(&bytes).expect("write");
    // The connection and its four streams hold five places.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while open(&gw) < 5.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(open(&gw), 5.0);
    assert!(eventually(Duration::from_secs(5), || upstream
        .requests()
        .len()
        == 4));
    // RST_STREAM(CANCEL) on each: the places come back long before 8 s.
    let started = std::time::Instant::now();
    let mut resets = Vec::new();
    for &stream in &streams {
        resets.extend(h2_frame(3, 0, stream, &8u32.to_be_bytes()));
    }
    conn.write_all(&resets).expect("write");
    assert!(
        eventually(Duration::from_secs(3), || open(&gw) == 1.0),
        "{}",
        open(&gw)
    );
    assert!(eventually(Duration::from_secs(3), || closed
        .load(Ordering::SeqCst)
        == 4));
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    drop(conn);
}

/// Polls `check` every 20 ms for up to `within`.
fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}
