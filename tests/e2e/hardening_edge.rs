//! The client edge, attacked (issue 10, items 6, 8 and 10): slow heads and
//! connection floods, requests Pingora refuses before vigile's filters,
//! pipelined requests, and credentials in the logs. Each test plays the
//! attack against the real binary on loopback, with a short
//! `server.header_timeout` and a small `server.max_connections`; deadlines are
//! checked with generous bounds only.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::config::{Auth, LogFormat, Route, Upstream};
use crate::common::{self, Gateway, Options};
use serde_json::Value;

/// A gateway with a route without authentication to the `stocks` echo
/// upstream, and one to an upstream nobody listens on.
fn edge_gateway(options: Options) -> Gateway {
    let dead: SocketAddr = ([127, 0, 0, 1], common::free_port()).into();
    Gateway::start_with(
        options
            .route(Route::new("open", "/api/open/", "stocks").auth(Auth::None))
            .route(Route::new("dead", "/api/dead/", "dead").auth(Auth::None))
            .upstream(
                "dead",
                Upstream::new([dead]).connect_timeout(Duration::from_secs(1)),
            ),
    )
}

fn metric(gw: &Gateway, series: &str) -> f64 {
    gw.metric(series)
}

/// Polls `check` until it holds or `within` has passed; returns the last result.
fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn open_connections(gw: &Gateway) -> f64 {
    metric(gw, "vigile_client_connections")
}

/// An HTTP/1.1 answer as read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Lower-case names.
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// vigile's error shape: JSON `{"error","code"}`, its exact length, and
    /// the connection closed after it.
    fn assert_json_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        assert_eq!(
            self.header("content-length"),
            Some(self.body.len().to_string().as_str()),
            "{self:?}"
        );
        assert_eq!(self.header("connection"), Some("close"), "{self:?}");
        let json = self.json();
        assert_eq!(json["code"], code, "{self:?}");
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{self:?}"
        );
    }
}

/// A raw client connection that reads answers one by one (pipelined answers
/// may arrive in one read).
struct Client {
    conn: TcpStream,
    buf: Vec<u8>,
    closed: bool,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let conn = TcpStream::connect(addr).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Client {
            conn,
            buf: Vec::new(),
            closed: false,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.conn.write_all(bytes).expect("write");
    }

    /// Reads more bytes; false at the end of the stream (or a reset).
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.conn.read(&mut chunk) {
            Ok(0) | Err(_) => {
                self.closed = true;
                false
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next answer; `head_only` for the answer to a HEAD request.
    fn answer_to(&mut self, head_only: bool) -> Option<Answer> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let mut lines = head.split("\r\n");
                let status = lines
                    .next()?
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())?;
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                let length: usize = if head_only {
                    0
                } else {
                    headers
                        .iter()
                        .find(|(n, _)| n == "content-length")
                        .and_then(|(_, v)| v.parse().ok())
                        .expect("answers here carry a Content-Length")
                };
                while self.buf.len() < end + 4 + length {
                    if !self.fill() {
                        return None;
                    }
                }
                let body = String::from_utf8_lossy(&self.buf[end + 4..end + 4 + length]).into();
                self.buf.drain(..end + 4 + length);
                return Some(Answer {
                    status,
                    headers,
                    body,
                });
            }
            if !self.fill() {
                return None;
            }
        }
    }

    fn answer(&mut self) -> Option<Answer> {
        self.answer_to(false)
    }

    /// Whether the gateway closes the connection (end of stream or reset)
    /// within `within`, with nothing more to read.
    fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        self.conn
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        while Instant::now() < deadline {
            let mut chunk = [0u8; 1024];
            match self.conn.read(&mut chunk) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// Sends `request` on a new connection and reads the one answer.
fn one_answer(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut client = Client::connect(addr);
    client.send(request);
    client.answer().expect("an answer")
}

/// The path the echo upstream saw.
fn echoed_path(answer: &Answer) -> String {
    answer.json()["path"].as_str().unwrap_or("").to_string()
}

#[test]
fn slow_heads_are_cut_off_while_other_clients_get_through() {
    let gw = edge_gateway(Options::default().server(|s| {
        s.header_timeout(Duration::from_secs(1))
            .max_connections(500)
    }));
    assert!(
        gw.log().contains("open-file limit"),
        "the open-file limit is logged at start:\n{}",
        gw.log()
    );
    const SLOW: usize = 150;
    let started = Instant::now();
    // Slow-loris clients: each starts a head, then sends a byte of a header
    // line that never ends every 200 ms.
    let mut slow: Vec<(TcpStream, Option<Duration>, Vec<u8>)> = (0..SLOW)
        .map(|_| {
            let conn = TcpStream::connect(gw.addr).expect("connect");
            let mut c = &conn;
            c.write_all(b"GET /api/open/slow HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .expect("write");
            conn.set_nonblocking(true).expect("nonblocking");
            (conn, None, Vec::new())
        })
        .collect();
    let mut served = 0;
    let mut last_request = started
        .checked_sub(Duration::from_secs(1))
        .unwrap_or(started);
    while slow.iter().any(|(_, closed, _)| closed.is_none())
        && started.elapsed() < Duration::from_secs(10)
    {
        for (conn, closed, received) in slow.iter_mut().filter(|(_, c, _)| c.is_none()) {
            let mut c = &*conn;
            let _ = c.write(b"a");
            let mut chunk = [0u8; 1024];
            loop {
                match c.read(&mut chunk) {
                    Ok(0) => {
                        *closed = Some(started.elapsed());
                        break;
                    }
                    Ok(n) => received.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        *closed = Some(started.elapsed());
                        break;
                    }
                }
            }
        }
        // A legitimate client meanwhile, on fresh connections.
        if last_request.elapsed() > Duration::from_millis(300) {
            let answer = one_answer(
                gw.addr,
                b"GET /api/open/legit HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            assert_eq!(answer.status, 200, "{answer:?}");
            assert_eq!(echoed_path(&answer), "/api/open/legit");
            served += 1;
            last_request = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(served >= 2, "legitimate requests went through meanwhile");
    let mut timeouts = 0;
    for (_, closed, received) in &slow {
        let closed = closed.expect("every slow connection is closed by the gateway");
        assert!(
            closed < Duration::from_secs(6),
            "closed after {closed:?} with header_timeout 1s"
        );
        let text = String::from_utf8_lossy(received);
        if !text.is_empty() {
            assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
            assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
            assert!(text.contains("Connection: close"), "{text}");
            timeouts += 1;
        }
    }
    assert!(
        timeouts > 0,
        "the slow clients are told 408 before the close"
    );
    assert!(
        metric(&gw, "vigile_header_timeouts_total{listener=\"proxy\"}") >= SLOW as f64,
        "each cut connection is counted"
    );
    drop(slow);
    assert!(
        eventually(Duration::from_secs(5), || open_connections(&gw) == 0.0),
        "the gauge comes back to 0: {}",
        open_connections(&gw)
    );
}

#[test]
fn a_slow_body_is_not_cut_by_the_head_deadline_and_the_admin_listener_has_one() {
    let gw = edge_gateway(Options::default().server(|s| s.header_timeout(Duration::from_secs(1))));
    // Head on time, body a byte every 400 ms (2.4 s in all).
    let mut client = Client::connect(gw.addr);
    client.send(b"POST /api/open/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n");
    for byte in b"abcdef" {
        std::thread::sleep(Duration::from_millis(400));
        client.send(&[*byte]);
    }
    let answer = client.answer().expect("the answer");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["body_bytes"], 6);

    // The admin listener: a head that never ends is cut too.
    let mut admin = Client::connect(gw.admin);
    admin.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
    assert!(admin.closed_within(Duration::from_secs(6)));
    let text = String::from_utf8_lossy(&admin.buf).into_owned();
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(metric(&gw, "vigile_header_timeouts_total{listener=\"admin\"}") >= 1.0);
    // An idle keep-alive connection is closed as well, without an answer.
    let mut idle = Client::connect(gw.addr);
    idle.send(b"GET /api/open/a HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(idle.answer().expect("answer").status, 200);
    assert!(idle.closed_within(Duration::from_secs(6)));
    assert!(
        idle.buf.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&idle.buf)
    );
}

#[test]
fn a_flood_past_max_connections_is_refused_without_disturbing_the_others() {
    let gw = edge_gateway(
        Options::default().server(|s| s.header_timeout(Duration::from_secs(6)).max_connections(20)),
    );
    // An established keep-alive client.
    let mut kept = Client::connect(gw.addr);
    kept.send(b"GET /api/open/kept HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(kept.answer().expect("answer").status, 200);
    // Only it holds a place: the start-up probes' connections have been
    // seen to close (on a loaded machine that can lag behind).
    assert!(eventually(Duration::from_secs(5), || {
        open_connections(&gw) == 1.0
    }));

    // The flood: idle connections, far past the cap.
    let flood: Vec<TcpStream> = (0..60)
        .map(|_| TcpStream::connect(gw.addr).expect("the kernel accepts"))
        .collect();
    // The refused ones are answered and closed at once; the others wait
    // for a head.
    let received = common::scripted::fates(&flood, Duration::from_secs(3), |fates| {
        fates.iter().filter(|(_, closed)| *closed).count() >= 60 - 19
    });
    let refusals: Vec<String> = received
        .iter()
        .filter(|(bytes, _)| !bytes.is_empty())
        .map(|(bytes, _)| String::from_utf8_lossy(bytes).into_owned())
        .collect();
    assert!(
        refusals.len() >= 60 - 19,
        "{} of 60 refused with 19 places left",
        refusals.len()
    );
    for text in &refusals {
        assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(text.contains("\"code\":\"too_many_connections\""), "{text}");
    }
    assert_eq!(open_connections(&gw), 20.0, "every place is taken");
    assert_eq!(
        metric(
            &gw,
            "vigile_connections_refused_total{reason=\"max_connections\"}"
        ),
        refusals.len() as f64
    );

    // The established client goes on as if nothing happened.
    kept.send(b"GET /api/open/still HTTP/1.1\r\nHost: x\r\n\r\n");
    let answer = kept
        .answer()
        .expect("the established connection still works");
    assert_eq!(answer.status, 200);
    assert_eq!(echoed_path(&answer), "/api/open/still");

    // A newcomer is refused cleanly, in JSON...
    let refused = one_answer(gw.addr, b"GET /api/open/new HTTP/1.1\r\nHost: x\r\n\r\n");
    refused.assert_json_error(503, "too_many_connections");

    // ...until the idle flood is cut by the head deadline.
    assert!(
        eventually(Duration::from_secs(15), || open_connections(&gw) == 0.0),
        "idle connections are closed: {}",
        open_connections(&gw)
    );
    let answer = one_answer(
        gw.addr,
        b"GET /api/open/after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    drop(flood);
}

#[test]
fn the_connection_count_comes_back_down_on_every_close_path() {
    let gw = edge_gateway(
        Options::default().server(|s| s.header_timeout(Duration::from_secs(2)).max_connections(50)),
    );
    let back_to_zero = |what: &str| {
        assert!(
            eventually(Duration::from_secs(8), || open_connections(&gw) == 0.0),
            "{what}: {} still counted",
            open_connections(&gw)
        );
    };
    // Counted while open.
    let idle: Vec<Client> = (0..5).map(|_| Client::connect(gw.addr)).collect();
    assert!(eventually(Duration::from_secs(5), || open_connections(&gw) == 5.0));
    drop(idle);
    back_to_zero("closed by the client before any request");

    // Keep-alive requests, then the client closes.
    let mut c = Client::connect(gw.addr);
    for _ in 0..3 {
        c.send(b"GET /api/open/k HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(c.answer().expect("answer").status, 200);
    }
    drop(c);
    back_to_zero("keep-alive ended by the client");

    // `Connection: close`, a malformed head, an unreachable upstream, an
    // account endpoint, a body on Pingora's path.
    for request in [
        &b"GET /api/open/c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
        b"GET /api/open/c HTTP/1.1\r\nHost: x\r\nBad\x01Name: 1\r\n\r\n",
        b"GET /api/dead/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"POST /api/accounts/login/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        b"PUT /api/open/p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    ] {
        let mut c = Client::connect(gw.addr);
        c.send(request);
        assert!(c.answer().is_some());
        assert!(c.closed_within(Duration::from_secs(5)));
    }
    back_to_zero("closed by the gateway after an answer");

    // A head cut halfway by the client; a request dropped while the upstream
    // is still answering; a head that times out.
    let mut c = Client::connect(gw.addr);
    c.send(b"GET /api/open/half HTTP/1.1\r\nHo");
    drop(c);
    let mut c = Client::connect(gw.addr);
    c.send(b"GET /api/open/slow?delay_ms=1500 HTTP/1.1\r\nHost: x\r\n\r\n");
    std::thread::sleep(Duration::from_millis(300));
    drop(c);
    let mut c = Client::connect(gw.addr);
    c.send(b"DELETE /api/open/slow?delay_ms=1500 HTTP/1.1\r\nHost: x\r\n\r\n");
    std::thread::sleep(Duration::from_millis(300));
    drop(c);
    let mut c = Client::connect(gw.addr);
    c.send(b"GET /api/open/t HTTP/1.1\r\n");
    assert!(c.closed_within(Duration::from_secs(6)));
    back_to_zero("client gone mid-head, mid-answer, or too slow");
}

#[test]
fn requests_pingora_refuses_get_the_json_error_shape_on_both_listeners() {
    let gw = edge_gateway(Options::default().server(|s| s.header_timeout(Duration::from_secs(5))));
    let cases: [(&[u8], u16, &str); 8] = [
        (
            b"GET /api/open/a HTTP/1.1\r\nHost: x\r\nBad\x01Name: 1\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            b"GET /api/open/a HTTP/1.1\r\nHost: x\r\nX-Value: a\x00b\r\n\r\n",
            400,
            "bad_request",
        ),
        (b"GE\x7fT /api/open/a HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
        // A TLS ClientHello on the plain-text port.
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03abcdefgh\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            b"POST /api/open/a HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            b"POST /api/open/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            400,
            "bad_request",
        ),
        (
            b"POST /api/open/a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
            405,
            "method_not_allowed",
        ),
    ];
    for (request, status, code) in cases {
        let mut client = Client::connect(gw.addr);
        client.send(request);
        let answer = client
            .answer()
            .unwrap_or_else(|| panic!("an answer to {:?}", String::from_utf8_lossy(request)));
        answer.assert_json_error(status, code);
        assert!(client.closed_within(Duration::from_secs(5)));
    }
    // The admin listener answers the same way.
    for request in [
        &b"GET /metrics HTTP/1.1\r\nHost: x\r\nBad\x01Name: 1\r\n\r\n"[..],
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03abcdefgh\r\n\r\n",
    ] {
        let mut client = Client::connect(gw.admin);
        client.send(request);
        client
            .answer()
            .expect("an answer")
            .assert_json_error(400, "bad_request");
        assert!(client.closed_within(Duration::from_secs(5)));
    }
    // And still serves.
    assert_eq!(gw.admin_get("/healthz").status, 200);
}

#[test]
fn pipelined_requests_are_answered_in_order_on_every_path() {
    let gw = edge_gateway(Options::default().server(|s| s.header_timeout(Duration::from_secs(5))));
    // The direct path (GET, HEAD).
    let mut c = Client::connect(gw.addr);
    c.send(
        b"GET /api/open/one HTTP/1.1\r\nHost: x\r\n\r\n\
          HEAD /api/open/two HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /api/open/three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let one = c.answer().expect("first answer");
    assert_eq!(
        (one.status, echoed_path(&one).as_str()),
        (200, "/api/open/one")
    );
    assert_ne!(one.header("connection"), Some("close"));
    let two = c.answer_to(true).expect("second answer (HEAD)");
    assert_eq!(two.status, 200);
    let three = c.answer().expect("third answer");
    assert_eq!(echoed_path(&three), "/api/open/three");
    assert!(c.closed_within(Duration::from_secs(5)));

    // An account endpoint, then a proxied read, then an account read.
    let mut c = Client::connect(gw.addr);
    c.send(
        b"POST /api/accounts/login/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 45\r\n\r\n\
          {\"email\":\"no@example.com\",\"password\":\"wrong\"}\
          GET /api/open/after-login HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /api/accounts/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let login = c.answer().expect("login answer");
    assert_eq!(login.status, 401, "{login:?}");
    assert_eq!(login.json()["code"], "invalid_credentials");
    let read = c.answer().expect("proxied answer");
    assert_eq!(echoed_path(&read), "/api/open/after-login");
    let me = c.answer().expect("account answer");
    assert_eq!(me.json()["code"], "not_authenticated");
    assert!(c.closed_within(Duration::from_secs(5)));

    // Pingora's path (a body, other methods), mixed with the direct path.
    let mut c = Client::connect(gw.addr);
    c.send(
        b"POST /api/open/p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
          DELETE /api/open/d HTTP/1.1\r\nHost: x\r\n\r\n\
          PUT /api/open/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
          GET /api/open/g HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let post = c.answer().expect("POST answer");
    assert_eq!(post.json()["method"], "POST", "{post:?}");
    assert_eq!(post.json()["body_bytes"], 5);
    let delete = c.answer().expect("DELETE answer");
    assert_eq!(delete.json()["method"], "DELETE", "{delete:?}");
    let put = c.answer().expect("PUT answer");
    assert_eq!(put.json()["method"], "PUT", "{put:?}");
    assert_eq!(put.json()["body_bytes"], 3);
    let get = c.answer().expect("GET answer");
    assert_eq!(echoed_path(&get), "/api/open/g");
    assert!(c.closed_within(Duration::from_secs(5)));

    // Bytes of the next request sent while the previous one is answered.
    let mut c = Client::connect(gw.addr);
    c.send(b"DELETE /api/open/slow?delay_ms=500 HTTP/1.1\r\nHost: x\r\n\r\nGET /api/op");
    std::thread::sleep(Duration::from_millis(100));
    c.send(b"en/next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(c.answer().expect("first").json()["method"], "DELETE");
    assert_eq!(echoed_path(&c.answer().expect("second")), "/api/open/next");
}

/// Every credential the attack sends, and the log they must not reach.
fn play_secret_attacks(gw: &Gateway) -> Vec<String> {
    let login = gw.register_and_login("secret@example.com", "motdepasse-tres-secret-42");
    let access = login["access"].as_str().expect("access").to_string();
    let refresh = login["refresh"].as_str().expect("refresh").to_string();
    let operator = std::fs::read_to_string(gw.dir.path().join("data/admin.token"))
        .expect("the operator token")
        .trim()
        .to_string();
    let password = "motdepasse-tres-secret-42";
    let bearer = format!("Bearer {access}");

    // The admin listener: malformed heads carrying the operator token.
    for request in [
        format!(
            "POST /admin/v1/command HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {operator}\r\nBad\x01: 1\r\nContent-Length: 2\r\n\r\n{{}}"
        ),
        format!("GET /metrics HTTP/1.1\r\nX-Admin-Token: {operator}\r\nContent-Length: x\r\n\r\n"),
        format!("POST /admin/v1/command HTTP/1.1\r\nAuthorization: Bearer {operator}\r\nHost: x\r\n"),
    ] {
        let mut c = Client::connect(gw.admin);
        c.send(request.as_bytes());
        let _ = c.closed_within(Duration::from_secs(5));
    }
    // A valid operator command, with a password in it.
    let operator_password = "mot-de-passe-operateur-77";
    let answer = common::send(
        &common::agent(),
        "POST",
        &format!("http://{}/admin/v1/command", gw.admin),
        &[
            ("Authorization", &format!("Bearer {operator}")),
            ("Content-Type", "application/json"),
        ],
        Some(
            &serde_json::json!({"command": "create_user", "email": "op@example.com",
                "first_name": "Op", "last_name": "Erateur", "password": operator_password})
            .to_string(),
        ),
    );
    assert_eq!(answer.status, 200, "{answer:?}");

    // The proxy listener: malformed heads with a token, a password, an
    // admin token; a head cut off by its deadline.
    for request in [
        format!("GET /api/stocks/x HTTP/1.1\r\nHost: x\r\nAuthorization: {bearer}\r\nBad\x01: 1\r\n\r\n"),
        format!(
            "POST /api/accounts/login/ HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n{{\"email\":\"secret@example.com\",\"password\":\"{password}\"}}"
        ),
        format!(
            "POST /api/accounts/refresh-token/ HTTP/1.1\r\nX-Admin-Token: {operator}\r\nX\x7f: y\r\n\r\n{{\"refresh\":\"{refresh}\"}}"
        ),
        format!("GET /api/stocks/x?access_token={access} HTTP/1.1\r\nAuthorization: {bearer}\r\nHost: x"),
    ] {
        let mut c = Client::connect(gw.addr);
        c.send(request.as_bytes());
        let _ = c.closed_within(Duration::from_secs(5));
    }
    // And well-formed requests through every path.
    assert_eq!(gw.get("/api/stocks/x", Some(&access)).status, 200);
    let r = gw.request(
        "POST",
        "/api/stocks/x",
        &[
            ("Authorization", &bearer),
            ("Cookie", "sessionid=cookie-secret-value"),
        ],
        Some(&format!("{{\"password\":\"{password}\"}}")),
    );
    assert_eq!(r.status, 200);
    let r = gw.post(
        "/api/accounts/refresh-token/",
        &serde_json::json!({ "refresh": refresh }),
        None,
    );
    assert_eq!(r.status, 200);
    let r = gw.post(
        "/api/accounts/login/",
        &serde_json::json!({"email": "secret@example.com", "password": password}),
        None,
    );
    assert_eq!(r.status, 200);
    vec![
        access,
        refresh,
        operator,
        password.to_string(),
        operator_password.to_string(),
        "cookie-secret-value".to_string(),
    ]
}

fn assert_no_secret_in_log(gw: &Gateway, secrets: &[String]) {
    // Let the last lines reach the file.
    std::thread::sleep(Duration::from_millis(300));
    let log = gw.log();
    assert!(
        log.contains("TRACE"),
        "the most verbose level is on, Pingora's lines included"
    );
    assert!(
        log.contains("pingora"),
        "Pingora's own lines are in the log"
    );
    assert!(
        log.contains("<redacted>"),
        "Pingora's dumps of requests are in the log, redacted"
    );
    for secret in secrets {
        // The secret, and any long piece of it (a token cut in a line).
        let piece = &secret[..secret.len().min(24)];
        let tail = &secret[secret.len().saturating_sub(24)..];
        for needle in [secret.as_str(), piece, tail] {
            if let Some(at) = log.find(needle) {
                let line_start = log[..at].rfind('\n').map_or(0, |i| i + 1);
                let line_end = log[at..].find('\n').map_or(log.len(), |i| at + i);
                panic!("a secret reached the log:\n{}", &log[line_start..line_end]);
            }
        }
    }
}

#[test]
fn no_credential_reaches_the_log_even_at_trace_level() {
    let gw = edge_gateway(
        Options::default()
            .server(|s| s.header_timeout(Duration::from_secs(1)))
            .rust_log("trace"),
    );
    let secrets = play_secret_attacks(&gw);
    assert_no_secret_in_log(&gw, &secrets);
}

#[test]
fn no_credential_reaches_the_json_log_either() {
    let gw = edge_gateway(
        Options::default()
            .server(|s| {
                s.header_timeout(Duration::from_secs(1))
                    .log_format(LogFormat::Json)
            })
            .rust_log("trace"),
    );
    let secrets = play_secret_attacks(&gw);
    assert_no_secret_in_log(&gw, &secrets);
}
