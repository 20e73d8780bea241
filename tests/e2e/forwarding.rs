//! The forwarding of plain reads (GET and HEAD without a body), which vigile
//! does itself over its own pool of upstream connections (or Pingora's
//! proxy loop, with `server.direct_path: false`): against an upstream that
//! speaks HTTP/1.1 from a script over loopback, so that each answer's
//! framing (length, chunks, close, 1xx, HEAD) and each connection's fate are
//! what the test says.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use crate::common::scripted::{self, path_of, Scripted};
use crate::common::{Gateway, Options};

/// A gateway with the route `/api/raw/` (no auth) to `upstream`.
fn gateway_before(upstream: &Scripted, options: Options) -> Gateway {
    scripted::gateway_before(upstream, Duration::from_secs(5), options)
}

/// One request over a fresh connection, the answer read to its end (the
/// gateway closes after it: `Connection: close`).
fn raw_request(gw: &Gateway, request: &str) -> String {
    let mut conn = TcpStream::connect(gw.addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    conn.write_all(request.as_bytes()).expect("write");
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).expect("the whole answer");
    String::from_utf8_lossy(&answer).into_owned()
}

/// The direct path, whatever `VIGILE_TEST_DIRECT_PATH` says: for the tests
/// that read the counters of its own pool, which Pingora's path has not.
fn on_the_direct_path() -> Options {
    Options::default().server(|s| s.direct_path(true))
}

/// `vigile_upstream_connections_total` of the `raw` upstream for `event`.
fn connections(gw: &Gateway, event: &str) -> u64 {
    let text = gw.admin_get("/metrics").text;
    let labels = [format!("event=\"{event}\""), "upstream=\"raw\"".to_string()];
    text.lines()
        .filter(|l| l.starts_with("vigile_upstream_connections_total{"))
        .find(|l| labels.iter().all(|label| l.contains(label.as_str())))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_pooled_connection_the_upstream_closed_is_replaced() {
    // Every answer says keep-alive, then the upstream closes the connection,
    // as one does when its keep-alive timeout ends.
    let upstream = Scripted::start(|_, conn| {
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        false
    });
    let gw = gateway_before(&upstream, on_the_direct_path());
    for i in 0..5 {
        let r = gw.get(&format!("/api/raw/{i}"), None);
        assert_eq!(r.status, 200, "request {i}: {}", r.text);
        assert_eq!(r.text, "ok");
        // Time for the close to reach the gateway's idle connection.
        std::thread::sleep(Duration::from_millis(50));
    }
    // Each request reached the upstream once, each on a new connection.
    let paths: Vec<String> = upstream
        .requests()
        .iter()
        .map(|h| path_of(h).to_string())
        .collect();
    assert_eq!(
        paths,
        [
            "/api/raw/0",
            "/api/raw/1",
            "/api/raw/2",
            "/api/raw/3",
            "/api/raw/4"
        ]
    );
    assert_eq!(upstream.connections(), 5);
    assert_eq!(connections(&gw, "opened"), 5);
    assert_eq!(connections(&gw, "stale"), 4);
    assert_eq!(connections(&gw, "reused"), 0);
}

#[test]
fn connections_the_upstream_keeps_are_reused() {
    let upstream = Scripted::start(|_, conn| {
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .is_ok()
    });
    let gw = gateway_before(&upstream, on_the_direct_path());
    for i in 0..10 {
        let r = gw.get(&format!("/api/raw/{i}"), None);
        assert_eq!((r.status, r.text.as_str()), (200, "ok"));
    }
    assert_eq!(upstream.requests().len(), 10);
    // Sequential requests: one connection serves them all, give or take a
    // request that raced a connection on its way back to the pool.
    assert!(upstream.connections() <= 2, "{}", upstream.connections());
    let opened = connections(&gw, "opened");
    assert_eq!(opened, upstream.connections() as u64);
    assert_eq!(connections(&gw, "reused"), 10 - opened);
    assert_eq!(connections(&gw, "stale"), 0);
}

#[test]
fn a_chunked_answer_streams_through_as_it_comes() {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = Mutex::new(go_rx);
    let upstream = Scripted::start(move |_, conn| {
        let _ =
            conn.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n");
        let _ = conn.flush();
        // The rest only once the client has seen the first part.
        if let Ok(rx) = go_rx.lock() {
            let _ = rx.recv_timeout(Duration::from_secs(20));
        }
        let _ = conn.write_all(b"6\r\nsecond\r\n0\r\n\r\n");
        true
    });
    let gw = gateway_before(&upstream, Options::default());
    let mut conn = TcpStream::connect(gw.addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    conn.write_all(b"GET /api/raw/stream HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("first") {
        let n = conn.read(&mut buf).expect("the first part arrives alone");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(!String::from_utf8_lossy(&seen).contains("second"));
    go_tx.send(()).expect("go");
    while !String::from_utf8_lossy(&seen).ends_with("0\r\n\r\n") {
        let n = conn.read(&mut buf).expect("the rest arrives");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert!(text.contains("second"), "{text}");
}

#[test]
fn every_kind_of_answer_arrives_whole() {
    const BIG: usize = 3 * 1024 * 1024;
    let body: Vec<u8> = (0..BIG).map(|i| b'a' + (i % 26) as u8).collect();
    let big = body.clone();
    let upstream = Scripted::start(move |head, conn| {
        let path = path_of(head).to_string();
        let head_request = head.starts_with("HEAD ");
        let result = match path.as_str() {
            "/api/raw/big" => {
                let mut answer =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n").into_bytes();
                if !head_request {
                    answer.extend_from_slice(&big);
                }
                conn.write_all(&answer)
            }
            // HTTP/1.0 style: the body ends when the connection does.
            "/api/raw/until-close" => {
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
                let _ = conn.write_all(b"until the end");
                return false;
            }
            "/api/raw/hints" => conn.write_all(
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n\
                  HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
            ),
            "/api/raw/empty" => conn.write_all(b"HTTP/1.1 204 No Content\r\n\r\n"),
            _ => conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
        };
        result.is_ok()
    });
    let gw = gateway_before(&upstream, Options::default());

    let r = raw_request(
        &gw,
        "GET /api/raw/big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let (head, got) = r.split_once("\r\n\r\n").expect("head and body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(got.as_bytes() == body.as_slice(), "{} bytes", got.len());

    let r = raw_request(
        &gw,
        "HEAD /api/raw/big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let (head, got) = r.split_once("\r\n\r\n").expect("head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {BIG}")),
        "{head}"
    );
    assert_eq!(got, "", "no body to a HEAD");

    let r = gw.get("/api/raw/until-close", None);
    assert_eq!((r.status, r.text.as_str()), (200, "until the end"));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));

    let r = gw.get("/api/raw/hints", None);
    assert_eq!((r.status, r.text.as_str()), (200, "final"));

    let r = gw.get("/api/raw/empty", None);
    assert_eq!((r.status, r.text.as_str()), (204, ""));
    assert!(r.header("x-request-id").is_some());

    // And the connection the gateway kept after all that still works.
    let r = gw.get("/api/raw/big", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.text.len(), BIG);
}

#[test]
fn an_upstream_that_closes_without_answering_gets_502_json() {
    let upstream = Scripted::start(|_, _| false);
    let gw = gateway_before(&upstream, Options::default());
    let r = gw.get("/api/raw/x", None);
    assert_eq!(r.status, 502, "{}", r.text);
    assert_eq!(r.code(), "upstream_unavailable", "{}", r.text);
    // A fresh connection that closes is not tried again: one request only.
    assert_eq!(upstream.requests().len(), 1);
}

/// HTTP/2 reads (GET and HEAD, the request's stream ended with its
/// headers) take the direct path too: the upstream gets an HTTP/1.1
/// request in origin form with `Host` from `:authority`, over vigile's own
/// pool; the answers' framing becomes DATA frames (a chunked one, a HEAD's
/// empty one, a 204). A GET with a body goes by Pingora's path and its body
/// reaches the upstream.
#[test]
fn http2_reads_take_the_direct_path() {
    let upstream = Scripted::start(|head, conn| {
        let answer: &[u8] = match path_of(head) {
            _ if head.starts_with("HEAD ") => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
            // `ok` only once the body has come (chunked: `2`, `{}`, `0`).
            "/api/raw/with-body" => {
                let mut body = Vec::new();
                let mut byte = [0u8; 1];
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                while !body.ends_with(b"0\r\n\r\n") && body.len() < 64 {
                    match conn.read(&mut byte) {
                        Ok(1) => body.push(byte[0]),
                        _ => break,
                    }
                }
                if body.windows(2).any(|w| w == b"{}") {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                } else {
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
                }
            }
            "/api/raw/chunked" => {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nch\r\n3\r\nunk\r\n0\r\n\r\n"
            }
            "/api/raw/empty" => b"HTTP/1.1 204 No Content\r\n\r\n",
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        };
        conn.write_all(answer).is_ok()
    });
    let gw = gateway_before(&upstream, on_the_direct_path().server(|s| s.h2c(true)));
    let addr = gw.addr;
    let answers = crate::common::tls::runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut send = crate::common::tls::h2_open(tcp).await;
        let mut out = Vec::new();
        for (method, path, body) in [
            ("GET", "/api/raw/a?q=1", Vec::new()),
            ("GET", "/api/raw/b", Vec::new()),
            ("HEAD", "/api/raw/c", Vec::new()),
            ("GET", "/api/raw/chunked", Vec::new()),
            ("GET", "/api/raw/empty", Vec::new()),
            ("GET", "/api/raw/with-body", b"{}".to_vec()),
        ] {
            let request = (method, path, vec![], body);
            let answer = crate::common::tls::h2_send(&mut send, "gw.example:8443", request).await;
            let answer = answer.expect("an answer");
            if answer.body.is_empty() {
                // A bodiless answer's stream ends with its head: time for
                // the connection to go back to the pool.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            out.push(answer);
        }
        out
    });
    let seen: Vec<(u16, &[u8])> = answers
        .iter()
        .map(|a| (a.status, a.body.as_slice()))
        .collect();
    assert_eq!(
        seen,
        [
            (200, &b"ok"[..]),
            (200, b"ok"),
            (200, b""),
            (200, b"chunk"),
            (204, b""),
            (200, b"ok")
        ]
    );
    for answer in &answers {
        assert!(answer.headers.get("transfer-encoding").is_none());
        assert!(answer.headers.get("x-request-id").is_some());
    }
    let heads = upstream.requests();
    let paths: Vec<&str> = heads.iter().map(|h| path_of(h)).collect();
    assert_eq!(heads.len(), 6, "{paths:?}");
    for head in &heads {
        assert!(head.contains(" HTTP/1.1\r\n"), "{head}");
        assert_eq!(scripted::header_of(head, "host"), Some("gw.example:8443"));
        assert_eq!(
            scripted::header_of(head, "x-forwarded-host"),
            Some("gw.example:8443")
        );
    }
    assert!(
        heads[0].starts_with("GET /api/raw/a?q=1 HTTP/1.1\r\n"),
        "{}",
        heads[0]
    );
    assert!(
        heads[2].starts_with("HEAD /api/raw/c HTTP/1.1\r\n"),
        "{}",
        heads[2]
    );
    // The five reads went over vigile's own pool, on one connection (a HEAD
    // or 204 answer gives it back too); the GET with a body did not.
    assert_eq!(
        (connections(&gw, "opened"), connections(&gw, "reused")),
        (1, 4)
    );
    let announced = (
        scripted::header_of(&heads[5], "content-length"),
        scripted::header_of(&heads[5], "transfer-encoding"),
    );
    assert!(
        matches!(announced, (Some("2"), _) | (_, Some("chunked"))),
        "{}",
        heads[5]
    );
}

#[test]
fn an_http2_answer_of_known_length_ends_with_its_last_data_frame() {
    use crate::edge_h2::{block, frame, PREFACE};
    let upstream = Scripted::start(|head, conn| {
        let answer: &[u8] = match path_of(head) {
            "/api/raw/chunked" => {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nch\r\n3\r\nunk\r\n0\r\n\r\n"
            }
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        };
        conn.write_all(answer).is_ok()
    });
    let gw = gateway_before(&upstream, on_the_direct_path().server(|s| s.h2c(true)));
    let mut conn = TcpStream::connect(gw.addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(4, 0, 0, &[]));
    conn.write_all(&hello).expect("preface");
    let mut bytes = Vec::new();
    // The DATA frames (length, flags) of each stream, until it ends.
    let mut data_of = |conn: &mut TcpStream, stream: u32, path: &str| {
        let headers = block(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "gw"),
        ]);
        conn.write_all(&frame(1, 0x5, stream, &headers))
            .expect("request");
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            // Whole frames first, then more bytes.
            while bytes.len() >= 9 {
                let len = usize::from(bytes[0]) << 16
                    | usize::from(bytes[1]) << 8
                    | usize::from(bytes[2]);
                if bytes.len() < 9 + len {
                    break;
                }
                let (kind, flags) = (bytes[3], bytes[4]);
                let id = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff;
                bytes.drain(..9 + len);
                if id == stream && kind == 0 {
                    data.push((len, flags & 1 == 1));
                }
                if id == stream && flags & 1 == 1 && (kind == 0 || kind == 1) {
                    return data;
                }
                if kind == 3 || kind == 7 {
                    panic!("stream reset or connection closed: {data:?}");
                }
            }
            let n = conn.read(&mut buf).expect("read");
            assert!(n > 0, "closed: {data:?}");
            bytes.extend_from_slice(&buf[..n]);
        }
    };
    // A Content-Length answer: its one DATA frame ends the stream (no
    // empty DATA frame after it: one frame less per answer).
    assert_eq!(data_of(&mut conn, 1, "/api/raw/a"), [(5, true)]);
    assert_eq!(data_of(&mut conn, 3, "/api/raw/b"), [(5, true)]);
    // A chunked one ends when its last chunk is read: with an empty frame.
    let chunked = data_of(&mut conn, 5, "/api/raw/chunked");
    let body: usize = chunked.iter().map(|(len, _)| len).sum();
    assert_eq!(body, 5, "{chunked:?}");
    assert_eq!(
        chunked.last().map(|(_, end)| *end),
        Some(true),
        "{chunked:?}"
    );
    assert_eq!(
        (connections(&gw, "opened"), connections(&gw, "reused")),
        (1, 2)
    );
}

#[test]
fn an_upstream_that_stalls_its_body_is_cut_off_after_read_timeout() {
    // The head and half the body, then nothing for 8 s: past read_timeout
    // (2 s) between two reads, the answer is given up, over HTTP/1.1 (the
    // client's connection closed short of the length) and HTTP/2 (the
    // stream reset), on the direct path.
    let upstream = Scripted::start(|_, conn| {
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello");
        std::thread::sleep(Duration::from_secs(8));
        false
    });
    let gw = gateway_before(&upstream, on_the_direct_path().server(|s| s.h2c(true)));
    let started = std::time::Instant::now();
    let mut conn = TcpStream::connect(gw.addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    conn.write_all(b"GET /api/raw/stall HTTP/1.1\r\nHost: gw\r\n\r\n")
        .expect("write");
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nhello"), "{answer}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(6),
        "HTTP/1.1: closed after {elapsed:?}"
    );

    let started = std::time::Instant::now();
    let answers = crate::common::tls::h2c(
        gw.addr,
        "gw",
        vec![("GET", "/api/raw/stall", vec![], Vec::new())],
    );
    let elapsed = started.elapsed();
    let error = answers[0].as_ref().expect_err("a reset stream");
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(6),
        "HTTP/2: {error} after {elapsed:?}"
    );
}
