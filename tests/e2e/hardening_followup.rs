//! The hardening, attacked again (the follow-up review): secrets spread in
//! the log one character at a time, the open-file budget, retries and the
//! answer-head deadline on both forwarding paths, clients that stop reading,
//! quoted email local parts, 1xx answers before an error, slow uploads and
//! the admin listener's connections. Each test plays the attack against the
//! real binary on loopback; times are checked with generous bounds only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::config::{Auth, LogFormat, Route, Upstream};
use crate::common::scripted::{self, Scripted};
use crate::common::{Gateway, Options};
use serde_json::json;

/// `options` with a route without authentication under `/api/{name}/` to
/// the upstream `name` at `addr`, with its `read_timeout` if given.
fn open_route(
    options: Options,
    name: &str,
    addr: SocketAddr,
    read_timeout: Option<Duration>,
) -> Options {
    let mut upstream = Upstream::new([addr]);
    if let Some(timeout) = read_timeout {
        upstream = upstream.read_timeout(timeout);
    }
    options
        .route(Route::new(name, &format!("/api/{name}/"), name).auth(Auth::None))
        .upstream(name, upstream)
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
    let format = match log_format {
        "json" => LogFormat::Json,
        _ => LogFormat::Text,
    };
    // The echo route checks tokens (so the access token is forwarded).
    let gw = Gateway::start_with(
        Options::default()
            .rust_log(rust_log)
            .server(|s| s.log_format(format))
            .route(Route::new("echo", "/api/echo/", "echo"))
            .upstream("echo", Upstream::new([echo.addr])),
    );
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

// ---------------------------------------------------------------------------
// 2 and 8. The open-file budget, and the admin listener's own cap.

/// Raises this test process's soft open-file limit to its hard limit (the
/// tests below hold hundreds of sockets) and returns it.
fn raise_own_file_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

/// A gateway process started on `gw`'s config under a hard and soft
/// `RLIMIT_NOFILE` of `files` (through `prlimit` from util-linux, else the
/// shell's `ulimit -n`); killed on drop.
struct Limited {
    child: std::process::Child,
    gw: Gateway,
}

impl Limited {
    fn start(mut gw: Gateway, files: u64) -> Limited {
        gw.kill();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(gw.log_path())
            .expect("log");
        let vigile = env!("CARGO_BIN_EXE_vigile");
        let config = gw.config_path();
        let prlimit = std::process::Command::new("prlimit")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        let mut command = if prlimit {
            let mut c = std::process::Command::new("prlimit");
            c.arg(format!("--nofile={files}:{files}"))
                .arg(vigile)
                .args(["serve", "--config"])
                .arg(&config);
            c
        } else {
            let mut c = std::process::Command::new("sh");
            c.arg("-c")
                .arg(format!(
                    "ulimit -n {files} && exec \"$0\" serve --config \"$1\""
                ))
                .arg(vigile)
                .arg(&config);
            c
        };
        let child = command
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start vigile under a file limit");
        let limited = Limited { child, gw };
        for addr in [limited.gw.admin, limited.gw.addr] {
            assert!(
                eventually(Duration::from_secs(20), || TcpStream::connect(addr).is_ok()),
                "vigile listens on {addr}: {}",
                limited.gw.log()
            );
        }
        limited
    }

    /// Descriptors the gateway holds now.
    fn files_open(&mut self) -> usize {
        let pid = self.child.id();
        std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
    }

    /// The cap the gateway settled on (its start-up warning).
    fn cap(&self) -> usize {
        let log = self.gw.log();
        let (_, after) = log
            .rsplit_once("connections are capped at ")
            .unwrap_or_else(|| panic!("a lowered cap in the log: {log}"));
        after
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .expect("the cap")
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it holds or `within` has passed.
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

/// One series of a gateway's metrics, read on its admin listener.
fn metric(admin: SocketAddr, series: &str) -> f64 {
    let answer = scripted::raw(admin, "GET", "/metrics", &[]);
    let text = answer.text();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

/// Every connection was closed.
fn all_closed(fates: &[(Vec<u8>, bool)]) -> bool {
    fates.iter().all(|(_, closed)| *closed)
}

/// A refusal of the connection cap, as the client reads it.
fn assert_refusal(bytes: &[u8]) {
    let (answer, _) = scripted::split_answer(bytes);
    assert_eq!(answer.status, 503, "{}", String::from_utf8_lossy(bytes));
    assert_eq!(answer.code(), "too_many_connections");
    assert_eq!(answer.header("connection"), Some("close"));
}

/// An upstream that holds requests to `/hold...` until `release` is set,
/// and answers the others at once.
fn holding_upstream(release: Arc<Mutex<bool>>) -> Scripted {
    Scripted::start(move |head, conn| {
        if scripted::path_of(head).contains("/hold") {
            while !*release.lock().expect("lock") {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .is_ok()
    })
}

#[test]
fn under_a_low_file_limit_the_cap_is_met_before_the_descriptors_run_out() {
    const FILES: u64 = 700;
    raise_own_file_limit();
    let release = Arc::new(Mutex::new(false));
    let upstream = holding_upstream(release.clone());
    let gw = Gateway::start_with(open_route(
        Options::default().server(|s| s.header_timeout(Duration::from_secs(30))),
        "up",
        upstream.addr,
        Some(Duration::from_secs(30)),
    ));
    let limited = Limited::start(gw, FILES);
    let cap = limited.cap();
    // Three descriptors a connection, 256 lingering refusals, 64 admin
    // connections, 256 for the rest.
    assert_eq!(
        cap,
        (FILES as usize - 256 - 64 - 256) / 3,
        "{}",
        limited.gw.log()
    );
    let addr = limited.gw.addr;
    let admin = limited.gw.admin;

    // An established keep-alive client.
    let mut kept = TcpStream::connect(addr).expect("connect");
    kept.write_all(b"GET /api/up/kept HTTP/1.1\r\nHost: gw\r\n\r\n")
        .expect("write");
    let (first, _) = scripted::split_answer(&read_answer(&mut kept));
    assert_eq!(first.status, 200);

    // Every other place taken by a request held by the upstream, on both
    // forwarding paths (GETs by the direct path, PUTs with a body by
    // Pingora's): each holds a client and an upstream connection.
    let held: Vec<TcpStream> = (0..cap - 1)
        .map(|i| {
            let mut conn = TcpStream::connect(addr).expect("connect");
            let request = if i % 2 == 0 {
                format!("GET /api/up/hold{i} HTTP/1.1\r\nHost: gw\r\n\r\n")
            } else {
                format!("PUT /api/up/hold{i} HTTP/1.1\r\nHost: gw\r\nContent-Length: 1\r\n\r\nx")
            };
            conn.write_all(request.as_bytes()).expect("write");
            conn
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(20), || upstream.requests_to("") >= cap),
        "the upstream holds {} of {} requests",
        upstream.requests_to(""),
        cap - 1
    );

    // A flood past the cap, kept open by its clients: refused, in JSON, or
    // closed at once once 256 refusals linger; never a descriptor short.
    let flood: Vec<TcpStream> = (0..400)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    let healthz = scripted::raw(admin, "GET", "/healthz", &[]);
    assert_eq!(
        healthz.status, 200,
        "the admin listener answers: {healthz:?}"
    );
    // The established client's next request needs a new upstream connection.
    kept.write_all(b"GET /api/up/kept-again HTTP/1.1\r\nHost: gw\r\n\r\n")
        .expect("write");
    let (again, _) = scripted::split_answer(&read_answer(&mut kept));
    assert_eq!(again.status, 200, "{again:?}");

    let fates = scripted::fates(&flood, Duration::from_secs(3), all_closed);
    assert!(
        fates.iter().all(|(_, closed)| *closed),
        "every connection past the cap is closed"
    );
    let refusals = fates.iter().filter(|(bytes, _)| !bytes.is_empty()).count();
    for (bytes, _) in fates.iter().filter(|(bytes, _)| !bytes.is_empty()) {
        assert_refusal(bytes);
    }
    assert!(
        refusals >= 100,
        "{refusals} of {} refused in JSON",
        flood.len()
    );
    drop(flood);

    // The held requests are answered, none lost for want of a descriptor.
    *release.lock().expect("lock") = true;
    for mut conn in held {
        let (answer, _) = scripted::split_answer(&read_answer(&mut conn));
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let log = limited.gw.log();
    for sign in ["Too many open files", "os error 24"] {
        assert!(!log.contains(sign), "{sign} in the log: {log}");
    }
    assert!(
        metric(
            admin,
            "vigile_connections_refused_total{reason=\"max_connections\"}"
        ) >= 1.0
    );
}

/// Reads one answer (by its framing) off a keep-alive connection.
fn read_answer(conn: &mut TcpStream) -> Vec<u8> {
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let (answer, _) = scripted::split_answer(&bytes);
            let length = answer
                .header("content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if bytes.len() >= end + 4 + length {
                return bytes;
            }
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return bytes,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
    }
}

#[test]
fn the_admin_listener_has_its_own_cap_counted_in_the_budget() {
    const FILES: u64 = 700;
    raise_own_file_limit();
    let gw = Gateway::start_with(
        Options::default().server(|s| s.header_timeout(Duration::from_secs(30))),
    );
    let mut limited = Limited::start(gw, FILES);
    let (addr, admin) = (limited.gw.addr, limited.gw.admin);
    // A local process opens idle admin connections by the hundred: 64 are
    // served (they wait for a head), the others refused at once.
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(admin).expect("the kernel accepts"))
        .collect();
    let fates = scripted::fates(&idle, Duration::from_secs(3), all_closed);
    let served = fates.iter().filter(|(_, closed)| !closed).count();
    assert_eq!(served, 64, "connections served at once");
    for (bytes, _) in fates.iter().filter(|(_, closed)| *closed) {
        assert_refusal(bytes);
    }
    let files = limited.files_open();
    assert!(files < 200, "{files} descriptors");
    // The proxy goes on.
    let answer = scripted::raw(addr, "GET", "/api/accounts/", &[]);
    assert_eq!(answer.status, 401, "{answer:?}");
    // A few places again: the admin listener answers. More than one is
    // freed because a closed connection's place comes back only once the
    // gateway has seen it close, and the metrics below take two more.
    let mut open: Vec<TcpStream> = idle
        .into_iter()
        .zip(&fates)
        .filter(|(_, (_, closed))| !closed)
        .map(|(conn, _)| conn)
        .collect();
    open.truncate(open.len() - 8);
    assert!(eventually(Duration::from_secs(5), || {
        scripted::raw(admin, "GET", "/healthz", &[]).status == 200
    }));
    let refused_total = metric(
        admin,
        "vigile_connections_refused_total{reason=\"admin_max_connections\"}",
    );
    assert!(refused_total >= 236.0, "{refused_total}");
    assert_eq!(
        metric(
            admin,
            "vigile_connections_refused_total{reason=\"max_connections\"}"
        ),
        0.0
    );
}

// ---------------------------------------------------------------------------
// 3. One retry at most, within the request's one answer-head deadline.

/// An upstream that answers `/warm` at once and keeps the connection; on a
/// connection it already answered (a pooled one) it holds the request
/// `hold` then closes without a byte; on a fresh one it trickles its head
/// a byte every 200 ms.
fn closing_when_reused(hold: Duration) -> Scripted {
    let seen = Arc::new(Mutex::new(
        std::collections::HashMap::<SocketAddr, usize>::new(),
    ));
    Scripted::start(move |head, conn| {
        let peer = conn.peer_addr().expect("peer");
        let n = {
            let mut seen = seen.lock().expect("lock");
            let n = seen.entry(peer).or_default();
            *n += 1;
            *n
        };
        if scripted::path_of(head).contains("/warm") {
            return conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_ok();
        }
        if n >= 2 {
            std::thread::sleep(hold);
            return false;
        }
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" {
            if conn.write_all(&[*byte]).is_err() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        true
    })
}

#[test]
fn a_request_is_retried_once_at_most_within_its_one_deadline() {
    let hold = Duration::from_millis(1800);
    let upstream = closing_when_reused(hold);
    for direct_path in [true, false] {
        let gw = Gateway::start_with(open_route(
            Options::default().server(|s| s.direct_path(direct_path)),
            "up",
            upstream.addr,
            Some(Duration::from_secs(2)),
        ));
        for (i, (method, retried)) in [
            ("GET", true),
            ("PUT", true),
            ("DELETE", true),
            ("POST", false),
        ]
        .into_iter()
        .enumerate()
        {
            // A pooled connection of the path this method takes, on this
            // client connection's thread.
            let body = if method == "GET" || method == "DELETE" {
                "\r\n"
            } else {
                "Content-Length: 1\r\n\r\nx"
            };
            let mut conn = TcpStream::connect(gw.addr).expect("connect");
            let warm = format!("{method} /api/up/warm HTTP/1.1\r\nHost: gw\r\n{body}");
            conn.write_all(warm.as_bytes()).expect("write");
            let (warm, _) = scripted::split_answer(&read_answer(&mut conn));
            assert_eq!(warm.status, 200);
            let id = format!("/api/up/x{i}-{direct_path}");
            let request =
                format!("{method} {id} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n{body}");
            let started = Instant::now();
            conn.write_all(request.as_bytes()).expect("write");
            let (answer, _) = scripted::split_answer(&read_answer(&mut conn));
            let took = started.elapsed();
            std::thread::sleep(Duration::from_millis(100));
            let sent = upstream.requests_to(&id);
            let case = format!("direct_path: {direct_path}, {method}: {took:?}, sent {sent} times");
            if retried {
                // Sent once more on another connection, where the head
                // trickles: cut at the request's deadline, not a new one.
                assert_eq!(sent, 2, "{case}");
                assert_eq!(answer.status, 504, "{case}: {answer:?}");
                assert_eq!(answer.code(), "upstream_timeout");
                assert!(took >= Duration::from_millis(1900), "{case}");
                assert!(took < Duration::from_millis(3000), "{case}");
            } else {
                // Not idempotent: never sent again.
                assert_eq!(sent, 1, "{case}");
                assert_eq!(answer.status, 502, "{case}: {answer:?}");
                assert!(took < Duration::from_millis(3000), "{case}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 4. A client that does not read its answer.

/// How one upstream connection ended: when its writing failed, if it did,
/// and how many body bytes it wrote.
#[derive(Default, Debug)]
struct Sent {
    failed_at: Option<Instant>,
    bytes: usize,
}

/// How each answer of `big_answers` ended, by request path.
type Ends = Arc<Mutex<std::collections::HashMap<String, Sent>>>;

/// An upstream that answers `size` bytes to every request (a quarter of it
/// to paths holding `slow`), in 64 KiB writes, and records how each answer
/// ended.
fn big_answers(size: usize) -> (Scripted, Ends) {
    let ends = Ends::default();
    let record = ends.clone();
    let upstream = Scripted::start(move |head, conn| {
        let path = scripted::path_of(head).to_string();
        let size = if path.contains("slow") {
            size / 4
        } else {
            size
        };
        let mut sent = Sent::default();
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n");
        let chunk = vec![b'x'; 64 * 1024];
        let mut ok = conn.write_all(head.as_bytes()).is_ok();
        while ok && sent.bytes < size {
            let n = chunk.len().min(size - sent.bytes);
            ok = conn.write_all(&chunk[..n]).is_ok();
            if ok {
                sent.bytes += n;
            }
        }
        if !ok {
            sent.failed_at = Some(Instant::now());
        }
        record.lock().expect("lock").insert(path, sent);
        ok
    });
    (upstream, ends)
}

/// Reads `conn` to its end slowly but steadily (at most 512 KiB every
/// 100 ms, about 5 MB/s in bursts); how much came and how long it took.
fn read_slowly(conn: &mut TcpStream) -> (usize, Duration) {
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let started = Instant::now();
    let mut total = 0;
    let mut chunk = vec![0u8; 512 * 1024];
    while let Ok(n) = conn.read(&mut chunk) {
        if n == 0 {
            break;
        }
        total += n;
        std::thread::sleep(Duration::from_millis(100));
    }
    (total, started.elapsed())
}

#[test]
fn a_client_that_stops_reading_is_cut_off_and_a_slow_reader_is_not() {
    const BIG: usize = 64 * 1024 * 1024;
    let (upstream, ends) = big_answers(BIG);
    let gw = Gateway::start_with(open_route(
        Options::default().server(|s| s.write_timeout(Duration::from_secs(1))),
        "big",
        upstream.addr,
        None,
    ));
    // Clients that ask for 64 MiB and read nothing, on both forwarding paths.
    let requests = [
        "GET /api/big/direct HTTP/1.1\r\nHost: gw\r\n\r\n",
        "POST /api/big/pingora HTTP/1.1\r\nHost: gw\r\nContent-Length: 1\r\n\r\nx",
    ];
    let started = Instant::now();
    let mut idle: Vec<TcpStream> = requests
        .iter()
        .map(|request| {
            let mut conn = TcpStream::connect(gw.addr).expect("connect");
            conn.write_all(request.as_bytes()).expect("write");
            conn
        })
        .collect();
    // Both upstream connections are closed by the gateway, soon after the
    // buffers between them and the clients are full.
    assert!(
        eventually(Duration::from_secs(15), || {
            let ends = ends.lock().expect("lock");
            ["/api/big/direct", "/api/big/pingora"]
                .iter()
                .all(|p| ends.get(*p).is_some_and(|s| s.failed_at.is_some()))
        }),
        "the upstream sees its connections closed: {:?}",
        ends.lock().expect("lock")
    );
    for (path, sent) in ends.lock().expect("lock").iter() {
        let took = sent.failed_at.map(|t| t - started);
        assert!(sent.bytes < BIG, "{path}: {sent:?}");
        assert!(
            took.is_some_and(|t| t < Duration::from_secs(12)),
            "{path}: {took:?}"
        );
    }
    assert!(
        eventually(Duration::from_secs(5), || metric(
            gw.admin,
            "vigile_client_connections"
        ) == 0.0),
        "the client connections are closed"
    );
    // What the clients can still read ends early: the connection was closed.
    for conn in &mut idle {
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut total = 0;
        let mut chunk = vec![0u8; 1 << 20];
        while let Ok(n) = conn.read(&mut chunk) {
            if n == 0 {
                break;
            }
            total += n;
        }
        assert!(total < BIG, "{total} bytes");
    }

    // A slow but steady reader gets its whole answer, however long it takes.
    let readers: Vec<_> = [
        "GET /api/big/slow-direct HTTP/1.1",
        "POST /api/big/slow-pingora HTTP/1.1",
    ]
    .into_iter()
    .map(|line| {
        let addr = gw.addr;
        std::thread::spawn(move || {
            let mut conn = TcpStream::connect(addr).expect("connect");
            let body = if line.starts_with("POST") {
                "Content-Length: 1\r\n\r\nx"
            } else {
                "\r\n"
            };
            conn.write_all(format!("{line}\r\nHost: gw\r\nConnection: close\r\n{body}").as_bytes())
                .expect("write");
            read_slowly(&mut conn)
        })
    })
    .collect();
    for reader in readers {
        let (total, took) = reader.join().expect("reader");
        assert!(
            total > BIG / 4,
            "the whole answer and its head: {total} bytes in {took:?}"
        );
        assert!(
            took > Duration::from_secs(2),
            "slower than the timeout: {took:?}"
        );
    }
}

#[test]
fn check_config_refuses_a_write_timeout_under_a_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.yaml");
    for (value, accepted) in [("500ms", false), ("0s", false), ("1s", true), ("2m", true)] {
        std::fs::write(&path, format!("server:\n  write_timeout: {value}\n")).expect("write");
        let out = crate::common::cli(&path, &["check-config"], None);
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.success(), accepted, "{value}: {text}");
        if !accepted {
            assert!(text.contains("server.write_timeout"), "{text}");
        }
    }
}

// ---------------------------------------------------------------------------
// 5. Quoted local parts and comments: the same mailbox, another account.

#[test]
fn addresses_naming_a_taken_mailbox_in_another_form_are_refused() {
    let gw = Gateway::start();
    let password = "Zq7!vLp2#rT9xW";
    gw.register_and_login("kevin@example.com", password);
    let register = |email: &str| {
        gw.post(
            "/api/accounts/register/",
            &json!({"email": email, "password": "Att4cker!Pass#1", "first_name": "A",
                "last_name": "B"}),
            None,
        )
    };
    for email in [
        r#""kevin"@example.com"#,
        r#""k\evin"@example.com"#,
        "kevin(x)@example.com",
        r#""KEVIN"@example.com"#,
        "kevin@(x)example.com",
        "kevin@[127.0.0.1]",
        "ke..vin@example.com",
    ] {
        let r = register(email);
        assert_eq!(r.status, 400, "{email}: {}", r.text);
        assert_eq!(r.code(), "validation_error");
        assert_eq!(
            r.json["fields"]["email"],
            json!(["Saisissez une adresse e-mail valide."]),
            "{email}"
        );
        // Nor through the operator's command.
        let out = gw.cli(
            &[
                "user",
                "create",
                "--email",
                email,
                "--first-name",
                "A",
                "--last-name",
                "B",
                "--password-stdin",
            ],
            Some("Att4cker!Pass#1\n"),
        );
        assert!(!out.status.success(), "{email}: user create refused");
    }
    // Plain addresses, atext included, still register; Kevin still logs in.
    for email in ["o'brien+tag@example.ie", "a.b-c_d@mail.example.fr"] {
        let r = register(email);
        assert_eq!(r.status, 201, "{email}: {}", r.text);
    }
    gw.login("kevin@example.com", password);
}

// ---------------------------------------------------------------------------
// 6. The final JSON error after forwarded `100 Continue` answers.

/// The informational answers at the start of `bytes`, and the answer after.
fn after_informational(bytes: &[u8]) -> (usize, scripted::RawAnswer) {
    let mut rest = bytes;
    let mut informational = 0;
    while rest.starts_with(b"HTTP/1.1 1") && !rest.starts_with(b"HTTP/1.1 101") {
        let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
            break;
        };
        rest = &rest[end + 4..];
        informational += 1;
    }
    (informational, scripted::split_answer(rest).0)
}

#[test]
fn after_forwarded_continues_the_client_still_gets_the_json_error() {
    let upstream = Scripted::start(|head, conn| {
        let path = scripted::path_of(head);
        if path.contains("/endless") {
            // 100 after 100, never a final answer.
            for _ in 0..40 {
                if conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        } else if path.contains("/many") {
            // More than 8 at once.
            let _ = conn.write_all(&b"HTTP/1.1 100 Continue\r\n\r\n".repeat(12));
            std::thread::sleep(Duration::from_secs(3));
        }
        false
    });
    let gw = Gateway::start_with(open_route(
        Options::default(),
        "up",
        upstream.addr,
        Some(Duration::from_secs(2)),
    ));
    for (path, status, code) in [
        ("/api/up/endless", 504, "upstream_timeout"),
        ("/api/up/many", 502, "upstream_unavailable"),
    ] {
        for method in ["POST", "PUT"] {
            let request = format!(
                "{method} {path} HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\n\
                 Content-Length: 5\r\nConnection: close\r\n\r\nhello"
            );
            let started = Instant::now();
            let (first, rest) = scripted::raw_exchange(gw.addr, request.as_bytes());
            let took = started.elapsed();
            let mut bytes = first.head.into_bytes();
            bytes.extend_from_slice(&first.body);
            bytes.extend_from_slice(&rest);
            let (informational, answer) = after_informational(&bytes);
            let case = format!("{method} {path}: {informational} 1xx then {answer:?} in {took:?}");
            assert!(informational >= 1, "{case}");
            assert_eq!(answer.status, status, "{case}");
            assert_eq!(answer.code(), code, "{case}");
            assert_eq!(
                answer.header("content-type"),
                Some("application/json"),
                "{case}"
            );
            assert!(took < Duration::from_secs(5), "{case}");
        }
    }
}

// ---------------------------------------------------------------------------
// 7. On Pingora's path, the head's deadline runs from when the upstream has
// the whole request.

/// An upstream that takes request bodies at about `rate` bytes a second
/// (its socket's receive buffer is small) and answers at once when it has
/// one whole; a path holding `/stall` gets its head read and nothing more;
/// `/dribble` gets a head and 2 of 10 body bytes, then nothing. Returns the
/// address and the paths whose whole body the upstream had.
fn slow_reader_upstream(rate: usize) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(64 * 1024).expect("rcvbuf");
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    socket.listen(64).expect("listen");
    let listener: std::net::TcpListener = socket.into();
    let addr = listener.local_addr().expect("addr");
    let done = Arc::new(Mutex::new(Vec::new()));
    let record = done.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let record = record.clone();
            std::thread::spawn(move || serve_slowly(conn, rate, &record));
        }
    });
    (addr, done)
}

fn serve_slowly(mut conn: TcpStream, rate: usize, record: &Mutex<Vec<String>>) {
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let end = loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let path = scripted::path_of(&head).to_string();
    if path.contains("/stall") {
        std::thread::sleep(Duration::from_secs(15));
        return;
    }
    if path.contains("/dribble") {
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab");
        std::thread::sleep(Duration::from_secs(15));
        return;
    }
    let length: usize = scripted::header_of(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut got = bytes.len() - end;
    let pause = Duration::from_secs_f64(chunk.len() as f64 / rate as f64);
    while got < length {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => got += n,
        }
        std::thread::sleep(pause);
    }
    record.lock().expect("lock").push(path);
    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
}

#[test]
fn a_slow_upload_is_answered_and_a_stalled_upstream_still_cut() {
    const MIB: usize = 1024 * 1024;
    let (addr, done) = slow_reader_upstream(MIB);
    let (big, _ends) = big_answers(64 * MIB);
    let second = Some(Duration::from_secs(1));
    let options = open_route(Options::default(), "up", addr, second);
    let gw = Gateway::start_with(open_route(options, "big", big.addr, second));
    let post = |path: &str, size: usize| {
        let mut conn = TcpStream::connect(gw.addr).expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
        );
        let started = Instant::now();
        conn.write_all(head.as_bytes()).expect("write");
        let body = vec![b'x'; size];
        // The gateway may answer (and close) before taking it all.
        let _ = conn.write_all(&body);
        let sent = started.elapsed();
        let bytes = read_answer(&mut conn);
        (scripted::split_answer(&bytes).0, sent, started.elapsed())
    };

    // 3 MiB to an upstream that reads 1 MiB a second: it answers as soon as
    // it has it all, some 2 s after the gateway has the body from the
    // client (read_timeout: 1 s).
    let (answer, sent, took) = post("/api/up/upload", 3 * MIB);
    let had_it = done
        .lock()
        .expect("lock")
        .iter()
        .any(|p| p == "/api/up/upload");
    assert_eq!(
        answer.status, 200,
        "{answer:?} after {took:?} (sent in {sent:?})"
    );
    assert!(had_it);
    assert!(took > Duration::from_millis(2000), "really slow: {took:?}");

    // An upstream that reads nothing of a body too big for the buffers is
    // cut all the same: 504, within a few read_timeouts.
    let (answer, _, took) = post("/api/up/stall", 8 * MIB);
    assert_eq!(answer.status, 504, "{answer:?} after {took:?}");
    assert_eq!(answer.code(), "upstream_timeout");
    assert!(took < Duration::from_secs(6), "{took:?}");
    // A small body it takes whole and never answers: 504 at read_timeout.
    let (answer, _, took) = post("/api/up/stall-small", 1000);
    assert_eq!(answer.status, 504, "{answer:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");

    // A client that withholds its body for a `100` the upstream never sends
    // is not left waiting either.
    let mut conn = TcpStream::connect(gw.addr).expect("connect");
    let started = Instant::now();
    conn.write_all(
        b"POST /api/up/stall-expect HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\n\
          Content-Length: 5\r\nConnection: close\r\n\r\n",
    )
    .expect("write");
    let (answer, _) = scripted::split_answer(&read_answer(&mut conn));
    assert_eq!(answer.status, 504, "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // After the head, each wait for answer bytes is still bounded (Pingora's
    // own per-read timeout is off for a request with a body)...
    let (answer, _, took) = post("/api/up/dribble", 10);
    assert_eq!(answer.status, 200);
    assert!(answer.body.len() < 10, "{answer:?}");
    assert!(
        took < Duration::from_secs(4),
        "cut after about read_timeout: {took:?}"
    );
    // ...but a client slow to read a large answer is not taken for a slow
    // upstream.
    let mut conn = TcpStream::connect(gw.addr).expect("connect");
    conn.write_all(
        b"POST /api/big/slow HTTP/1.1\r\nHost: gw\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
    )
    .expect("write");
    let (total, took) = read_slowly(&mut conn);
    assert!(
        total > 16 * MIB,
        "the whole answer: {total} bytes in {took:?}"
    );
}
