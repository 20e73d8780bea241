//! The direct path: a GET or HEAD without a body, from an HTTP/1 client or
//! over HTTP/2 (a request that can have no body).
//! vigile writes the request to the upstream, reads the answer and streams it
//! back itself, one step after the other, over its own pool of idle upstream
//! connections.
//!
//! Pingora's general path (`proxy_to_upstream`) runs the two directions as
//! joined futures with a channel between them, clones the request header
//! once more, and on each reuse of a pooled connection checks it with a
//! syscall and arms a watcher when it goes back. That generality is needed
//! for request bodies and upgrades, which keep taking it; a plain read does
//! not need it. The framing (chunked, content length, HEAD, 204/304, keep
//! alive) is Pingora's own: the sessions used here are Pingora's HTTP/1
//! sessions (the client's, or its HTTP/2 stream, whose answer goes in DATA
//! frames; Pingora drops the connection-specific headers there). Over
//! HTTP/2 this also spares the `getpeername` Pingora's pool makes on every
//! reuse of a connection: a third of the system calls of such a request.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use http::{header, Method, Version};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::v1::client::HttpSession as UpstreamSession;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::Stream;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};

use crate::upstream::{idle_time, ConnectionEvents, IdleConnections, Pooled};

/// Most informational (1xx) answers taken before the final one.
pub const MAX_INFORMATIONAL: usize = 8;

/// Whether a request can take the direct path (its client speaking
/// HTTP/1, or HTTP/2 with no body to come): GET or HEAD,
/// no body, no upgrade, an origin-form target.
pub fn eligible(req: &RequestHeader) -> bool {
    (req.method == Method::GET || req.method == Method::HEAD)
        && matches!(
            req.version,
            Version::HTTP_11 | Version::HTTP_10 | Version::HTTP_2
        )
        && req.raw_path().first() == Some(&b'/')
        && !req.headers.contains_key(header::TRANSFER_ENCODING)
        && !req.headers.contains_key(header::UPGRADE)
        && !req.headers.contains_key(header::EXPECT)
        && req
            .headers
            .get(header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0")
}

/// Where and how to reach the upstream.
pub struct Target<'a> {
    pub addr: SocketAddr,
    pub idle: &'a IdleConnections,
    pub events: &'a ConnectionEvents,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

/// `future`, or `None` if it has not finished within `limit`; the timer is
/// made only if `future` has to wait (the usual read finds its bytes there
/// and costs no clock read, no timer).
async fn within<T>(limit: Duration, future: impl std::future::Future<Output = T>) -> Option<T> {
    use std::future::Future;
    use std::task::Poll;
    let mut future = std::pin::pin!(future);
    let mut timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(value) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(value));
        }
        let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        timer.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// A read of the answer's body, at most `read_timeout` from its start.
async fn read_body(
    upstream: &mut UpstreamSession,
    read_timeout: Duration,
) -> Result<Option<&[u8]>> {
    match within(read_timeout, upstream.read_body_ref()).await {
        Some(read) => read.map_err(|e| e.into_up()),
        None => Err(Error::explain(
            ErrorType::ReadTimedout,
            "reading the answer's body: nothing within read_timeout",
        )
        .into_up()),
    }
}

/// A piece of the answer to an HTTP/2 client, taken (flow-control window
/// given) within the session's write timeout (`server.write_timeout`, set
/// in `early_request_filter`). The timer is `within`'s, made only when the
/// write waits; the session's would read the clock twice and make two
/// timers for each piece, so it is off during the write (and on again for
/// whatever else is written on the stream).
async fn write_h2(
    client: &mut pingora::protocols::http::v2::server::HttpSession,
    chunk: bytes::Bytes,
    end: bool,
) -> Result<()> {
    let Some(limit) = client.get_write_timeout() else {
        return client
            .write_body(chunk, end)
            .await
            .map_err(|e| e.into_down());
    };
    // Not dropped between the two: no caller polls it in a `select!`, and
    // the session goes with the request's future otherwise.
    client.set_write_timeout(None);
    let written = within(limit, client.write_body(chunk, end)).await;
    client.set_write_timeout(Some(limit));
    match written {
        Some(written) => written.map_err(|e| e.into_down()),
        None => Err(Error::explain(
            ErrorType::WriteTimedout,
            "writing the answer: the HTTP/2 client gave no window within server.write_timeout",
        )
        .into_down()),
    }
}

/// Sends the request `build` makes to the target and streams the answer,
/// with the header `answer` makes of the upstream's, to the client. `build` runs again
/// if a pooled connection turns out to be closed before it answered (the
/// request is a GET or HEAD: sending it twice is safe).
///
/// Errors are Pingora's, marked as the upstream's or the client's, for
/// `fail_to_proxy` to answer.
pub async fn forward(
    session: &mut Session,
    target: &Target<'_>,
    build: impl Fn(&Session) -> Result<Box<RequestHeader>>,
    answer: impl FnOnce(&ResponseHeader) -> Box<ResponseHeader>,
) -> Result<()> {
    // HTTP/2: a client that resets its stream (or loses its connection)
    // ends the exchange at once, and with it the stream's place in
    // `server.max_connections` and the upstream connection (h2 no longer
    // counts a reset stream against the connection's limit). The request
    // is built first (once more, by a copy, for the one retry).
    let http2 = matches!(*session.downstream_session, ServerSession::H2(_));
    let exchanged = if http2 {
        let built = build(session)?;
        let ServerSession::H2(client) = session.downstream_session.as_mut() else {
            return Err(Error::explain(ErrorType::InternalError, "not HTTP/2"));
        };
        tokio::select! {
            biased;
            reset = client.idle() => return Err(client_gone(reset)),
            exchanged = exchange(target, || Ok(built.clone())) => exchanged,
        }
    } else {
        exchange(target, || build(session)).await
    };
    let (mut upstream, fd) = exchanged?;
    let head = session.req_header().method == Method::HEAD;
    let http10 = session.req_header().version == Version::HTTP_10;

    let mut resp = match upstream.resp_header() {
        Some(resp) => answer(resp),
        None => {
            return Err(Error::explain(ErrorType::InternalError, "no response header").into_up())
        }
    };
    // As on Pingora's path: an answer delimited by the close of the
    // connection goes to the client chunked, so the client's connection
    // can stay open. HTTP/1.0 knows no chunks: an answer without a length
    // goes to such a client delimited by the close of its connection.
    let no_body = head || matches!(resp.status.as_u16(), 204 | 304);
    if !http2 && !no_body && !resp.headers.contains_key(header::CONTENT_LENGTH) {
        if http10 {
            resp.remove_header(&header::TRANSFER_ENCODING);
            session.set_keepalive(None);
        } else if !resp.headers.contains_key(header::TRANSFER_ENCODING) {
            resp.set_version(Version::HTTP_11);
            resp.insert_header(header::TRANSFER_ENCODING, "chunked")?;
        }
    }
    // HTTP/2: the piece that completes the answer, kept to end the stream
    // with (one DATA frame with END_STREAM, not an empty one after it).
    let mut last = None;
    match session.downstream_session.as_mut() {
        ServerSession::H1(client) => {
            client
                .write_response_header(resp)
                .await
                .map_err(|e| e.into_down())?;
            while let Some(chunk) = read_body(&mut upstream, target.read_timeout).await? {
                client.write_body(chunk).await.map_err(|e| e.into_down())?;
            }
        }
        // HTTP/2: DATA frames delimit the answer (Pingora drops the
        // connection-specific headers); the stream ends with it.
        ServerSession::H2(client) => {
            client
                .write_response_header(resp, no_body)
                .map_err(|e| e.into_down())?;
            loop {
                let chunk = tokio::select! {
                    biased;
                    reset = client.idle() => return Err(client_gone(reset)),
                    chunk = read_body(&mut upstream, target.read_timeout) => chunk?,
                };
                // Without a body (HEAD, 204, 304) this read returns at once:
                // it is what lets the connection go back to the pool.
                let Some(chunk) = chunk.filter(|_| !no_body) else {
                    break;
                };
                let chunk = bytes::Bytes::copy_from_slice(chunk);
                let done = upstream.is_body_done();
                // A chunk head that came in pieces reads as nothing: no
                // empty DATA frame for it.
                if chunk.is_empty() && !done {
                    continue;
                }
                if done {
                    last = Some(chunk);
                    break;
                }
                write_h2(client, chunk, false).await?;
            }
        }
        _ => {
            return Err(Error::explain(
                ErrorType::InternalError,
                "direct path on a session neither HTTP/1 nor HTTP/2",
            ))
        }
    }

    // Back to the pool only when the answer was read to its end by its
    // framing (a close-delimited one never is), with no byte read past it;
    // `take` checks again that nothing arrived since.
    upstream.respect_keepalive();
    let expires = Instant::now() + idle_time(&upstream);
    if upstream.is_body_done() {
        if let Some(stream) = upstream.reuse().await {
            target.idle.put(Pooled {
                stream,
                fd,
                expires,
            });
        }
    }
    // HTTP/2: the stream ends once the connection is back in the pool, so
    // that the client's next request finds it there: with the answer's
    // last piece when its framing said it was the last (a Content-Length
    // reached), else with an empty DATA frame.
    if let (ServerSession::H2(client), false) = (session.downstream_session.as_mut(), no_body) {
        match last {
            Some(chunk) => write_h2(client, chunk, true).await?,
            None => client.finish().map_err(|e| e.into_down())?,
        }
    }
    Ok(())
}

/// The error of an HTTP/2 stream its client reset (or whose connection
/// went away) while the gateway was busy with it: the client's doing.
fn client_gone(reset: Result<impl std::fmt::Display>) -> Box<Error> {
    let why = match reset {
        Ok(reason) => format!("the client reset its HTTP/2 stream ({reason})"),
        Err(e) => format!("the client's HTTP/2 stream went away ({e})"),
    };
    Error::explain(ErrorType::ConnectionClosed, why).into_down()
}

/// Connects (or reuses a connection), writes the request and reads the
/// answer's header, all within `read_timeout` from the start (a retry gets
/// what is left). The upstream session has no timeouts of its own: `send`'s
/// deadline bounds the heads, `read_body` each read of the body (Pingora's
/// would read the clock for each read and write, and make a second timer
/// for a wait already bounded).
async fn exchange(
    target: &Target<'_>,
    build: impl Fn() -> Result<Box<RequestHeader>>,
) -> Result<(UpstreamSession, RawFd)> {
    let deadline = tokio::time::Instant::now() + target.read_timeout;
    if let Some(pooled) = target.idle.take(&target.events.stale) {
        let mut upstream = UpstreamSession::new(pooled.stream);
        let mut informational = 0;
        let sent = send(&mut upstream, build()?, deadline, &mut informational).await;
        match sent {
            Ok(()) => {
                target.events.reused.inc();
                return Ok((upstream, pooled.fd));
            }
            // Closed before it answered anything: the upstream restarted or
            // timed it out just now. The request (a GET or HEAD) goes once
            // more, on a new connection, within what is left of the time.
            Err(e) if informational == 0 && closed_before_answer(&e) => {
                target.events.stale.inc();
                target.idle.clear();
                if tokio::time::Instant::now() >= deadline {
                    return Err(head_timeout().into_up());
                }
            }
            Err(e) => return Err(e.into_up()),
        }
    }
    let (stream, fd) = connect(target).await?;
    target.events.opened.inc();
    let mut upstream = UpstreamSession::new(stream);
    send(&mut upstream, build()?, deadline, &mut 0)
        .await
        .map_err(|e| e.into_up())?;
    Ok((upstream, fd))
}

/// Whether a reused connection failed before any byte of an answer came:
/// the request could not be written, or the upstream closed (or reset) the
/// connection with nothing read. A malformed or partial answer, or a
/// timeout, is not that: the request may have been acted on. (Both paths'
/// one retry depends on it.)
pub fn closed_before_answer(e: &Error) -> bool {
    let nothing_read = || {
        e.context
            .as_ref()
            .is_some_and(|c| c.as_str().ends_with("bytes already read: 0"))
    };
    match e.etype() {
        ErrorType::WriteError => true,
        ErrorType::ConnectionClosed | ErrorType::ReadError => nothing_read(),
        _ => false,
    }
}

/// Writes the request and reads the final answer's head, all before
/// `deadline` (an upstream that trickles its head, or sends 1xx answers
/// without end, is cut off), taking at most `MAX_INFORMATIONAL` 1xx
/// (counted in `informational`).
async fn send(
    upstream: &mut UpstreamSession,
    req: Box<RequestHeader>,
    deadline: tokio::time::Instant,
    informational: &mut usize,
) -> Result<()> {
    let exchange = async {
        upstream.write_request_header(req).await?;
        for _ in 0..=MAX_INFORMATIONAL {
            upstream.read_response().await?;
            match upstream.get_status() {
                Some(status) if status == http::StatusCode::SWITCHING_PROTOCOLS => {
                    return Err(Error::explain(
                        ErrorType::InvalidHTTPHeader,
                        "101 to a request that asked no upgrade",
                    ));
                }
                // 100, 102, 103: the final answer comes after.
                Some(status) if status.is_informational() => *informational += 1,
                _ => return Ok(()),
            }
        }
        Err(Error::explain(
            ErrorType::InvalidHTTPHeader,
            "too many informational answers",
        ))
    };
    match tokio::time::timeout_at(deadline, exchange).await {
        Ok(result) => result,
        Err(_) => Err(head_timeout()),
    }
}

fn head_timeout() -> Box<Error> {
    Error::explain(
        ErrorType::ReadTimedout,
        "the answer's head took longer than read_timeout",
    )
}

/// A new connection to the target, and the number of its socket (to peek
/// at it while it is idle, and for the answer's deadline: the stream owns
/// the socket, no duplicate is made, so a connection costs one descriptor).
async fn connect(target: &Target<'_>) -> Result<(Stream, RawFd)> {
    let attempt = tokio::net::TcpStream::connect(target.addr);
    let tcp = match tokio::time::timeout(target.connect_timeout, attempt).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            let etype = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                ErrorType::ConnectRefused
            } else {
                ErrorType::ConnectError
            };
            return Err(Error::because(etype, "connecting to the upstream", e).into_up());
        }
        Err(_) => {
            return Err(
                Error::explain(ErrorType::ConnectTimedout, "connecting to the upstream").into_up(),
            )
        }
    };
    // Requests are written whole: no reason to wait for more.
    tcp.set_nodelay(true)
        .map_err(|e| Error::because(ErrorType::ConnectError, "TCP_NODELAY", e).into_up())?;
    let fd = tcp.as_raw_fd();
    Ok((Box::new(L4Stream::from(tcp)), fd))
}
