//! The client side of the listeners, below HTTP: how many connections may be
//! open, how long a request's head may take to arrive, and what a client gets
//! when Pingora refuses a request before vigile's filters see it.
//!
//! Each listening service runs an [`EdgeApp`] around its HTTP application
//! (Pingora's proxy, or the admin app) in place of Pingora's own connection
//! loop (`ServerApp for HttpServerApp`, HTTP/1 only, which is all vigile
//! serves). For each accepted connection it:
//! - counts it against `server.max_connections` (one count shared by the
//!   proxy's per-thread services; one atomic increment and decrement per
//!   connection) and refuses the excess at once with a short 503;
//! - wraps its stream in an [`EdgeStream`], which bounds the time from the
//!   connection's start, or from the end of the previous request, to the end
//!   of each request's head (`server.header_timeout`), whatever trickles in,
//!   and turns Pingora's own bare refusals (a malformed head: 400; `CONNECT`:
//!   405) into vigile's JSON errors;
//! - serves the connection's requests one after the other, pipelined ones
//!   included, in order (Pingora's HTTP/1 pipelining, opted in per session).
//!
//! The application says when a head is complete with [`head_received`]: the
//! proxy in `early_request_filter`, the admin app once it has read the head.
//! From then until the end of the request the stream is a plain pass-through
//! (a slow body is the body timeouts' business, not this deadline's).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType, ALPN,
};
use pingora::server::ShutdownWatch;
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::error::{ApiError, ErrorCode};

/// Keep-alive time Pingora gives a new connection (its own default); the
/// head deadline is usually the shorter bound.
const KEEPALIVE_SECONDS: u64 = 60;
/// Largest request head Pingora reads (`MAX_HEADER_SIZE` in pingora-core);
/// a refusal past this many bytes is answered 431.
const PINGORA_MAX_HEAD: usize = 1_048_575;
/// How long a refused connection is kept to read (and drop) what its client
/// sent, so that the close is a FIN after the 503 rather than a reset that
/// could destroy it.
const REFUSAL_LINGER: Duration = Duration::from_millis(500);
/// At most this many refused connections linger at once; past that they are
/// closed at once without an answer.
const MAX_LINGERING: usize = 256;
/// Seconds between two warnings that connections are being refused.
const REFUSAL_WARNING_EVERY: u64 = 60;
/// Most file descriptors kept aside for what is not a client or upstream
/// connection (listeners, the store, logs...).
const RESERVED_FILES: u64 = 256;

/// Phases of an [`EdgeStream`], shared with the connection loop.
const HEAD: u8 = 0;
const BODY: u8 = 1;
const EXPIRED: u8 = 2;

/// The count of open client connections and its cap. It lives as long as
/// the process (`leak`), so a connection's guard costs no reference count.
pub struct ConnectionLimit {
    open: AtomicUsize,
    max: usize,
    lingering: AtomicUsize,
    refused: IntCounter,
    last_warning: AtomicU64,
}

impl ConnectionLimit {
    /// A limit of `max` connections; each refusal counts in `refused`.
    pub fn leak(max: usize, refused: IntCounter) -> &'static ConnectionLimit {
        Box::leak(Box::new(ConnectionLimit {
            open: AtomicUsize::new(0),
            max: max.max(1),
            lingering: AtomicUsize::new(0),
            refused,
            last_warning: AtomicU64::new(0),
        }))
    }

    /// Client connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    fn try_enter(&'static self) -> Option<ConnectionGuard> {
        let before = self.open.fetch_add(1, Ordering::Relaxed);
        if before < self.max {
            return Some(ConnectionGuard(self));
        }
        self.open.fetch_sub(1, Ordering::Relaxed);
        None
    }

    /// Answers 503 `too_many_connections` and closes, without disturbing
    /// the connections already served.
    async fn refuse(&self, mut stream: Stream) {
        self.refused.inc();
        self.warn_refusal();
        if self.lingering.fetch_add(1, Ordering::Relaxed) >= MAX_LINGERING {
            self.lingering.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let answer = async {
            stream.write_all(&too_many_connections()).await?;
            stream.flush().await?;
            AsyncWriteExt::shutdown(&mut stream).await?;
            let mut sink = [0u8; 2048];
            let mut drained = 0;
            while drained < 64 * 1024 {
                match stream.read(&mut sink).await? {
                    0 => break,
                    n => drained += n,
                }
            }
            Ok::<_, io::Error>(())
        };
        let _ = tokio::time::timeout(REFUSAL_LINGER, answer).await;
        self.lingering.fetch_sub(1, Ordering::Relaxed);
    }

    fn warn_refusal(&self) {
        let now = crate::unix_now();
        let last = self.last_warning.load(Ordering::Relaxed);
        if now >= last + REFUSAL_WARNING_EVERY
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                max_connections = self.max,
                "server.max_connections reached: new connections are refused \
                 (vigile_connections_refused_total counts them)"
            );
        }
    }
}

/// One open client connection, counted until dropped.
struct ConnectionGuard(&'static ConnectionLimit);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the connections of one listener share (for the process's lifetime).
pub struct Edge {
    header_timeout: Duration,
    limit: Option<&'static ConnectionLimit>,
    /// `vigile_header_timeouts_total` of this listener.
    header_timeouts: IntCounter,
}

impl Edge {
    pub fn leak(
        header_timeout: Duration,
        limit: Option<&'static ConnectionLimit>,
        header_timeouts: IntCounter,
    ) -> &'static Edge {
        Box::leak(Box::new(Edge {
            header_timeout,
            limit,
            header_timeouts,
        }))
    }
}

/// An HTTP application (`HttpServerApp`) served under the edge's rules.
pub struct EdgeApp<A> {
    app: Arc<A>,
    edge: &'static Edge,
}

impl<A> EdgeApp<A> {
    pub fn new(app: A, edge: &'static Edge) -> EdgeApp<A> {
        EdgeApp {
            app: Arc::new(app),
            edge,
        }
    }
}

#[async_trait]
impl<A> ServerApp for EdgeApp<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let guard = match self.edge.limit {
            Some(limit) => match limit.try_enter() {
                Some(guard) => Some(guard),
                None => {
                    limit.refuse(stream).await;
                    return None;
                }
            },
            None => None,
        };
        let phase = Arc::new(AtomicU8::new(HEAD));
        let stream = Box::new(EdgeStream::new(stream, self.edge, phase.clone(), guard));
        let mut session = ServerSession::new_http1(stream);
        session.set_keepalive((!*shutdown.borrow()).then_some(KEEPALIVE_SECONDS));
        session.set_keepalive_reuses_remaining(
            self.app
                .server_options()
                .and_then(|o| o.keepalive_request_limit),
        );
        // Requests sent before the previous answer (pipelined) are answered
        // in order instead of being dropped with the connection.
        session.set_pipelining_enabled(true);
        loop {
            let mut serving = self.app.process_new_http(session, shutdown);
            // The stream marks the phase expired when the head's deadline
            // passes; the request is then dropped, and the connection with it.
            let reused = std::future::poll_fn(|cx| match serving.as_mut().poll(cx) {
                Poll::Ready(reused) => Poll::Ready(reused),
                Poll::Pending if phase.load(Ordering::Relaxed) == EXPIRED => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            })
            .await?;
            drop(serving);
            let (stream, settings) = reused.consume();
            let mut edge = stream.into_any().downcast::<EdgeStream>().ok()?;
            edge.next_request();
            session = ServerSession::new_http1(edge);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
        }
    }

    async fn cleanup(&self) {
        self.app.http_cleanup().await;
    }
}

/// Tells the connection under `session` that its request's head is complete:
/// the head deadline stops, and what it writes from now on is an answer of
/// the application's.
pub fn head_received(session: &ServerSession) {
    if let Some(edge) = session
        .stream()
        .and_then(|s| (**s).as_any().downcast_ref::<EdgeStream>())
    {
        let _ = edge
            .phase
            .compare_exchange(HEAD, BODY, Ordering::Relaxed, Ordering::Relaxed);
        edge.first_done.store(true, Ordering::Relaxed);
    }
}

/// A client connection's stream, as Pingora's HTTP/1 session sees it.
pub struct EdgeStream {
    inner: Stream,
    edge: &'static Edge,
    phase: Arc<AtomicU8>,
    /// The timer of the heads' deadlines, made when a read of a head first
    /// waits; it never fires after the current head's deadline.
    deadline: Option<Pin<Box<Sleep>>>,
    /// The current head's deadline, set (`armed`) when a read of it first
    /// waits: about the end of the previous request, or the connection's start.
    deadline_at: Instant,
    armed: bool,
    /// Bytes read since the head phase began.
    head_bytes: usize,
    /// Whether a request of this connection got as far as its head's end.
    first_done: AtomicBool,
    /// vigile's answer in place of a refusal of Pingora's, and how much of it
    /// is written.
    refusal: Option<(Vec<u8>, usize)>,
    _guard: Option<ConnectionGuard>,
}

impl EdgeStream {
    fn new(
        inner: Stream,
        edge: &'static Edge,
        phase: Arc<AtomicU8>,
        guard: Option<ConnectionGuard>,
    ) -> EdgeStream {
        EdgeStream {
            inner,
            edge,
            phase,
            deadline: None,
            deadline_at: Instant::now(),
            armed: false,
            head_bytes: 0,
            first_done: AtomicBool::new(false),
            refusal: None,
            _guard: guard,
        }
    }

    /// The previous request is over: the next head's time starts now.
    fn next_request(&mut self) {
        self.phase.store(HEAD, Ordering::Relaxed);
        self.armed = false;
        self.head_bytes = 0;
    }

    /// A read of the head would wait: polls the deadline instead. The timer
    /// is not moved for each request: armed once, it is pushed back to the
    /// current head's deadline only when it fires early (at most once per
    /// `header_timeout` on a busy keep-alive connection), so a request costs
    /// a clock read, not a timer registration.
    fn wait_for_head(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.armed {
            self.armed = true;
            self.deadline_at = Instant::now() + self.edge.header_timeout;
            if self.deadline.is_none() {
                self.deadline = Some(Box::pin(tokio::time::sleep_until(self.deadline_at)));
            }
        }
        let deadline_at = self.deadline_at;
        loop {
            let Some(timer) = self.deadline.as_mut() else {
                return Poll::Pending;
            };
            match timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if Instant::now() < deadline_at => {
                    timer.as_mut().reset(deadline_at);
                }
                Poll::Ready(()) => {
                    self.expire(cx);
                    return Poll::Pending;
                }
            }
        }
    }

    /// The head did not arrive in time: 408 if the client had begun it, then
    /// the connection loop drops the request and closes. An idle keep-alive
    /// connection is simply closed.
    fn expire(&mut self, cx: &mut Context<'_>) {
        self.phase.store(EXPIRED, Ordering::Relaxed);
        let idle_keepalive = self.head_bytes == 0 && self.first_done.load(Ordering::Relaxed);
        if idle_keepalive {
            return;
        }
        self.edge.header_timeouts.inc();
        tracing::debug!(
            target: "vigile::edge",
            bytes = self.head_bytes,
            "request head not complete within server.header_timeout: connection closed"
        );
        if self.head_bytes > 0 {
            let answer = error_response(&head_timeout(), &[]);
            let inner = Pin::new(&mut self.inner);
            if let Poll::Ready(Ok(_)) = inner.poll_write(cx, &answer) {
                let _ = Pin::new(&mut self.inner).poll_flush(cx);
            }
        }
    }

    fn deadline_passed(&self) -> bool {
        self.armed
            && self.deadline.as_ref().is_some_and(|d| d.is_elapsed())
            && Instant::now() >= self.deadline_at
    }

    /// Writes vigile's answer in place of Pingora's refusal `buf`, then
    /// takes Pingora's bytes as written.
    fn poll_refusal(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let head_bytes = self.head_bytes;
        let (answer, written) = self
            .refusal
            .get_or_insert_with(|| (refusal_answer(buf, head_bytes), 0));
        while *written < answer.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &answer[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(buf.len()))
    }
}

impl AsyncRead for EdgeStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.phase.load(Ordering::Relaxed) {
            HEAD => {}
            EXPIRED => return Poll::Pending,
            _ => return Pin::new(&mut this.inner).poll_read(cx, buf),
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.head_bytes += buf.filled().len() - before;
                if this.deadline_passed() {
                    this.expire(cx);
                    return Poll::Pending;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.wait_for_head(cx),
        }
    }
}

impl AsyncWrite for EdgeStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        // Before the application has seen a head, only Pingora writes: its
        // bare refusal of a request it could not read.
        if this.refusal.is_some()
            || (this.phase.load(Ordering::Relaxed) == HEAD && buf.starts_with(b"HTTP/1."))
        {
            return this.poll_refusal(cx, buf);
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.refusal.is_some() || this.phase.load(Ordering::Relaxed) == HEAD {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &**b);
            return Pin::new(this).poll_write(cx, first);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for EdgeStream {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(&mut *self.inner).await
    }
}

impl UniqueID for EdgeStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for EdgeStream {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for EdgeStream {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for EdgeStream {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: pingora::protocols::raw_connect::ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for EdgeStream {
    fn get_socket_digest(&self) -> Option<Arc<pingora::protocols::SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: pingora::protocols::SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for EdgeStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

impl std::fmt::Debug for EdgeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeStream")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

// --- answers written below HTTP ---------------------------------------------

/// A complete HTTP/1.1 answer carrying `e`'s JSON body; the connection closes.
pub fn error_response(e: &ApiError, extra: &[(&str, &str)]) -> Vec<u8> {
    let body = e.body();
    let reason = http::StatusCode::from_u16(e.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n",
        e.status,
        body.len()
    );
    for (name, value) in extra {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&body);
    out
}

fn head_timeout() -> ApiError {
    ApiError::new(
        408,
        ErrorCode::RequestTimeout,
        "L'en-tête de la requête est arrivé trop lentement",
    )
}

fn too_many_connections() -> Vec<u8> {
    let e = ApiError::new(
        503,
        ErrorCode::TooManyConnections,
        "Trop de connexions ouvertes, réessayez plus tard",
    );
    error_response(&e, &[("Retry-After", "1")])
}

/// vigile's answer for the refusal Pingora was about to write (`pingora`,
/// its status line first), after `head_bytes` bytes of head.
fn refusal_answer(pingora: &[u8], head_bytes: usize) -> Vec<u8> {
    let status = pingora
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(400);
    match status {
        405 => error_response(
            &ApiError::method_not_allowed("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            &[("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")],
        ),
        400 if head_bytes >= PINGORA_MAX_HEAD => error_response(
            &ApiError::new(
                431,
                ErrorCode::RequestHeaderTooLarge,
                "Les en-têtes de la requête sont trop volumineux",
            ),
            &[],
        ),
        400..=499 => error_response(&ApiError::bad_request(400), &[]),
        other => error_response(&ApiError::bad_request(other), &[]),
    }
}

// --- open files ---------------------------------------------------------------

/// Raises the soft limit of open files to the hard limit, logs the result,
/// and returns how many client connections fit in it: `max_connections`, or
/// fewer (with a warning) when the limit cannot hold a client and an upstream
/// connection for each, plus a reserve. Without this, a flood of connections
/// exhausts the descriptors and Pingora stops accepting for everyone.
pub fn raise_open_file_limit(max_connections: usize) -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
    let limit = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            // An unlimited hard limit still caps at the kernel's nr_open.
            let target = if hard == RLIM_INFINITY {
                std::fs::read_to_string("/proc/sys/fs/nr_open")
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(1_048_576)
            } else {
                hard
            };
            if soft < target {
                match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
                    Ok(()) => target,
                    Err(e) => {
                        tracing::warn!(error = %e, soft, hard, "cannot raise the open-file limit");
                        soft
                    }
                }
            } else {
                soft
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit");
            return max_connections;
        }
    };
    let needed = (max_connections as u64)
        .saturating_mul(2)
        .saturating_add(RESERVED_FILES);
    if limit >= needed {
        tracing::info!(open_files = limit, max_connections, "open-file limit");
        return max_connections;
    }
    let fits = (limit.saturating_sub(RESERVED_FILES) / 2).max(1) as usize;
    tracing::warn!(
        open_files = limit,
        max_connections,
        needed,
        lowered_to = fits,
        "the open-file limit cannot hold server.max_connections (a client and an \
         upstream connection each, plus {RESERVED_FILES}): connections are capped at \
         {fits}; raise LimitNOFILE (systemd) or `ulimit -n`"
    );
    fits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(answer: &[u8]) -> serde_json::Value {
        let text = String::from_utf8_lossy(answer);
        let (_, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        serde_json::from_str(body).expect("JSON")
    }

    #[test]
    fn refusals_become_json_errors() {
        let pingora = b"HTTP/1.1 400 Bad Request\r\nServer: Pingora\r\nContent-Length: 0\r\n\r\n";
        let answer = refusal_answer(pingora, 300);
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
        assert!(
            text.contains("\r\nContent-Type: application/json\r\n"),
            "{text}"
        );
        let body = body_of(&answer);
        assert_eq!(body["code"], "bad_request");
        assert_eq!(body["error"], "Requête invalide");
        let length = text
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|n| n.parse::<usize>().ok())
            .expect("Content-Length");
        assert_eq!(length, serde_json::to_vec(&body).expect("json").len());

        let big = refusal_answer(pingora, PINGORA_MAX_HEAD + 1);
        assert!(big.starts_with(b"HTTP/1.1 431 "));
        assert_eq!(body_of(&big)["code"], "request_header_too_large");

        let connect = refusal_answer(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n", 40);
        assert!(connect.starts_with(b"HTTP/1.1 405 "));
        assert_eq!(body_of(&connect)["code"], "method_not_allowed");
        assert!(String::from_utf8_lossy(&connect).contains("\r\nAllow: "));
    }

    #[test]
    fn too_many_connections_is_a_short_json_503() {
        let answer = too_many_connections();
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nConnection: close\r\n"));
        assert!(text.contains("\r\nRetry-After: 1\r\n"));
        assert_eq!(body_of(&answer)["code"], "too_many_connections");
    }

    #[test]
    fn the_limit_counts_down_on_every_drop() {
        let refused = IntCounter::new("refused", "test").expect("counter");
        let limit = ConnectionLimit::leak(2, refused);
        let a = limit.try_enter().expect("first");
        let b = limit.try_enter().expect("second");
        assert!(limit.try_enter().is_none(), "a third is over the cap");
        assert_eq!(limit.open(), 2);
        drop(a);
        assert_eq!(limit.open(), 1);
        let c = limit.try_enter().expect("room again");
        drop(b);
        drop(c);
        assert_eq!(limit.open(), 0);
    }
}
