//! HTTP/2 header tricks, written frame by frame (no client library would
//! send them): upper-case names, connection-specific headers, `te` other
//! than `trailers`, misplaced, unknown or repeated pseudo-headers. Each is
//! a malformed request (RFC 9113, 8.2 and 8.3): the stream is reset and
//! nothing reaches the upstream, while a well-formed request on the same
//! connection is answered.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::scripted::{gateway_before, Scripted};
use crate::common::Options;

pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A frame: length, type, flags, stream, payload.
pub(crate) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("len").to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK literals without indexing, new names (any bytes, as sent).
pub(crate) fn block(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.push(0);
        for text in [name, value] {
            assert!(text.len() < 127);
            out.push(u8::try_from(text.len()).expect("short"));
            out.extend_from_slice(text.as_bytes());
        }
    }
    out
}

/// The frame types the server sent on `stream` (and GOAWAY's, 7).
fn answers_on(conn: &mut TcpStream, stream: u32) -> Vec<u8> {
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
    let mut kinds = Vec::new();
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = usize::from(bytes[at]) << 16
            | usize::from(bytes[at + 1]) << 8
            | usize::from(bytes[at + 2]);
        let kind = bytes[at + 3];
        let id = u32::from_be_bytes([bytes[at + 5], bytes[at + 6], bytes[at + 7], bytes[at + 8]])
            & 0x7fff_ffff;
        if id == stream || kind == 7 {
            kinds.push(kind);
        }
        at += 9 + len;
    }
    kinds
}

#[test]
fn malformed_http2_requests_are_reset_and_never_reach_the_upstream() {
    let upstream = Scripted::start(|_, conn| {
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        true
    });
    let gw = gateway_before(
        &upstream,
        Duration::from_secs(5),
        Options::default().server(|s| s.h2c(true)),
    );
    let base = [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "gw"),
        (":path", "/api/raw/x"),
    ];
    let tricks: Vec<Vec<(&str, &str)>> = vec![
        vec![("X-User-Id", "1")],
        vec![("x-user-id", "1"), ("X-USER-ID", "2")],
        vec![("connection", "keep-alive")],
        vec![("keep-alive", "timeout=5")],
        vec![("transfer-encoding", "chunked")],
        vec![("upgrade", "websocket")],
        vec![("te", "gzip")],
        vec![("x-a", "1"), (":path", "/api/raw/y")],
        vec![(":foo", "bar")],
        vec![(":path", "/api/raw/z")],
        vec![(":status", "200")],
        vec![("x-user-id", "a\r\nx-injected: 1")],
    ];
    for trick in tricks {
        let mut conn = TcpStream::connect(gw.addr).expect("connect");
        let mut headers = base.to_vec();
        headers.extend(trick.iter().copied());
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(4, 0, 0, &[]));
        bytes.extend(frame(1, 0x5, 1, &block(&headers)));
        // A well-formed request after it, on the same connection.
        bytes.extend(frame(1, 0x5, 3, &block(&base)));
        conn.write_all(&bytes).expect("write");
        let on_1 = answers_on(&mut conn, 1);
        assert!(
            on_1.contains(&3) || on_1.contains(&7),
            "{trick:?}: reset expected, got frame types {on_1:?}"
        );
        assert!(!on_1.contains(&1), "{trick:?}: answered: {on_1:?}");
    }
    // Only the well-formed requests reached the upstream, none with a trick.
    for head in upstream.requests() {
        let lower = head.to_ascii_lowercase();
        assert!(
            !lower.contains("x-user-id: 1") && !lower.contains("x-injected"),
            "{head}"
        );
        assert!(
            !lower.contains("/api/raw/y") && !lower.contains("/api/raw/z"),
            "{head}"
        );
        assert!(
            !lower.contains("te: gzip") && !lower.contains("upgrade"),
            "{head}"
        );
    }
    // The well-formed one (stream 3) is answered.
    let mut conn = TcpStream::connect(gw.addr).expect("connect");
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(4, 0, 0, &[]));
    bytes.extend(frame(1, 0x5, 1, &block(&base)));
    conn.write_all(&bytes).expect("write");
    assert!(answers_on(&mut conn, 1).contains(&1), "a HEADERS answer");
}

#[test]
fn a_long_answer_streams_over_http2() {
    const SIZE: usize = 8 * 1024 * 1024;
    let upstream = Scripted::start(|_, conn| {
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        let chunk = vec![b'z'; 64 * 1024];
        for _ in 0..SIZE / chunk.len() {
            let _ = conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes());
            let _ = conn.write_all(&chunk);
            let _ = conn.write_all(b"\r\n");
        }
        let _ = conn.write_all(b"0\r\n\r\n");
        true
    });
    let gw = gateway_before(
        &upstream,
        Duration::from_secs(5),
        Options::default().server(|s| s.h2c(true)),
    );
    let addr = gw.addr;
    let request = || ("GET", "/api/raw/stream", vec![], vec![]);
    let answers = crate::common::tls::h2c(addr, "gw", vec![request(), request()]);
    for answer in answers {
        let answer = answer.expect("an answer");
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body.len(), SIZE);
    }
}
