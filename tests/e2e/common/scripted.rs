//! Upstreams that speak HTTP/1.1 from a script over loopback (so that each
//! answer's framing and each connection's fate are what a test says, down
//! to the misbehaving ones), and a client that writes requests byte for
//! byte (so that no client library tidies a hostile request up).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::config::{Auth, Route, Upstream};
use super::{Gateway, Options};

/// What the scripted upstream does with one request: writes an answer on
/// the connection and says whether to keep the connection open.
pub type Script = dyn Fn(&str, &mut TcpStream) -> bool + Send + Sync;

/// An HTTP/1.1 upstream in this process, answering by `script`.
pub struct Scripted {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    /// An upstream that answers every request `200` with the body `ok`
    /// (and keeps each request head).
    pub fn ok() -> Scripted {
        Scripted::start(|_, conn| {
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            true
        })
    }

    pub fn start(
        script: impl Fn(&str, &mut TcpStream) -> bool + Send + Sync + 'static,
    ) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let (count, seen) = (connections.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                let (script, seen) = (script.clone(), seen.clone());
                std::thread::spawn(move || serve(stream, &*script, &seen));
            }
        });
        Scripted {
            addr,
            connections,
            requests,
        }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// How many requests came for a path ending in `suffix`.
    pub fn requests_to(&self, suffix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|h| path_of(h).ends_with(suffix))
            .count()
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// A gateway with the route `/api/raw/` (no auth) to `upstream`, which may
/// take `read_timeout` to answer, before the routes `options` adds.
pub fn gateway_before(
    upstream: &Scripted,
    read_timeout: Duration,
    mut options: Options,
) -> Gateway {
    options
        .routes
        .insert(0, Route::new("raw", "/api/raw/", "raw").auth(Auth::None));
    Gateway::start_with(options.upstream(
        "raw",
        Upstream::new([upstream.addr]).read_timeout(read_timeout),
    ))
}

fn serve(mut stream: TcpStream, script: &Script, seen: &Mutex<Vec<String>>) {
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reader);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        if let Ok(mut seen) = seen.lock() {
            seen.push(head.clone());
        }
        if !script(&head, &mut stream) {
            return;
        }
    }
}

/// The target of a request head (`GET /x HTTP/1.1` gives `/x`).
pub fn path_of(head: &str) -> &str {
    head.split(' ').nth(1).unwrap_or("")
}

/// Whether a request head holds the header `name` (any case).
pub fn has_header(head: &str, name: &str) -> bool {
    header_of(head, name).is_some()
}

/// The value of header `name` in a request head, if present.
pub fn header_of<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// An answer read off a raw connection.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    /// The head, lines as sent.
    pub head: String,
    pub body: Vec<u8>,
}

impl RawAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.head, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or("").to_string()
    }
}

/// Sends `request` as written on a new connection and reads what comes
/// back until the connection closes (or 10 s pass); returns the first
/// answer and whatever bytes followed it.
pub fn raw_exchange(addr: SocketAddr, request: &[u8]) -> (RawAnswer, Vec<u8>) {
    let mut conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    conn.write_all(request).expect("write");
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
    }
    split_answer(&bytes)
}

/// A request as written: `Host: gw`, `Connection: close` unless `headers`
/// name a `Connection`, a small JSON body for POST.
pub fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> String {
    let mut text = format!("{method} {target} HTTP/1.1\r\nHost: gw\r\n");
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("connection"))
    {
        text.push_str("Connection: close\r\n");
    }
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if method == "POST" {
        text.push_str("Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
    } else {
        text.push_str("\r\n");
    }
    text
}

/// A PROXY protocol v2 header: `command` (0 LOCAL, 1 PROXY), the
/// family/transport byte, and the address block `body`.
pub fn proxy_v2_header(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.push(0x20 | command);
    out.push(family);
    out.extend_from_slice(&u16::try_from(body.len()).expect("len").to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Writes an answer of `size` bytes of body to `conn`, by 256 KiB pieces;
/// `false` when the gateway stopped taking it.
pub fn write_long_answer(conn: &mut TcpStream, size: usize) -> bool {
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n");
    let chunk = vec![b'z'; 256 * 1024];
    let mut sent = conn.write_all(head.as_bytes());
    for _ in 0..size / chunk.len() {
        if sent.is_err() {
            break;
        }
        sent = conn.write_all(&chunk);
    }
    sent.is_ok()
}

/// A JSON POST with `headers`, as written (`Host: gw`, `Connection: close`).
pub fn json_post(path: &str, body: &serde_json::Value, headers: &[(&str, &str)]) -> String {
    let body = body.to_string();
    let mut text = format!("POST {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    text
}

/// One request (`request`) on a new connection; its answer.
pub fn raw(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> RawAnswer {
    raw_exchange(addr, request(method, target, headers).as_bytes()).0
}

/// The first answer in `bytes` (by Content-Length, chunks, or to the end)
/// and the bytes after it.
pub fn split_answer(bytes: &[u8]) -> (RawAnswer, Vec<u8>) {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(bytes.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let rest = &bytes[end..];
    let length = header_of(&head, "content-length").and_then(|v| v.parse::<usize>().ok());
    let chunked =
        header_of(&head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let (body, after) = if let Some(n) = length {
        let n = n.min(rest.len());
        (rest[..n].to_vec(), rest[n..].to_vec())
    } else if chunked {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let Some(line_end) = rest[at..].windows(2).position(|w| w == b"\r\n") else {
                break (body, Vec::new());
            };
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&rest[at..at + line_end]).trim(), 16)
                    .unwrap_or(0);
            at += line_end + 2;
            if size == 0 {
                let after = rest.get(at + 2..).unwrap_or_default().to_vec();
                break (body, after);
            }
            let chunk_end = (at + size).min(rest.len());
            body.extend_from_slice(&rest[at..chunk_end]);
            at = (chunk_end + 2).min(rest.len());
        }
    } else {
        (rest.to_vec(), Vec::new())
    };
    (RawAnswer { status, head, body }, after)
}

/// What each connection got, and whether it was closed, read without
/// blocking until `enough` says so or `wait` has passed.
pub fn fates(
    conns: &[TcpStream],
    wait: Duration,
    enough: impl Fn(&[(Vec<u8>, bool)]) -> bool,
) -> Vec<(Vec<u8>, bool)> {
    let mut fates = vec![(Vec::new(), false); conns.len()];
    let deadline = std::time::Instant::now() + wait;
    while std::time::Instant::now() < deadline && !enough(&fates) {
        for (mut conn, (bytes, closed)) in conns.iter().zip(fates.iter_mut()) {
            conn.set_nonblocking(true).expect("nonblocking");
            let mut chunk = [0u8; 4096];
            while !*closed {
                match conn.read(&mut chunk) {
                    Ok(0) => *closed = true,
                    Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => *closed = true,
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    fates
}
