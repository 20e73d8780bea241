//! The client side of the listeners, below HTTP: how many connections may be
//! open, how long a request's head may take to arrive, and what a client gets
//! when Pingora refuses a request before vigile's filters see it.
//!
//! Each listening service runs an [`EdgeApp`] around its HTTP application
//! (Pingora's proxy, or the admin app) in place of Pingora's own connection
//! loop (`ServerApp for HttpServerApp`) for HTTP/1. For each accepted
//! connection it:
//! - counts it against `server.max_connections` (one count shared by the
//!   proxy's per-thread services; one atomic increment and decrement per
//!   connection) and refuses the excess at once with a short 503 (closes
//!   it, on the TLS listener, where the client cannot read one yet);
//! - reads what precedes HTTP (`preface.rs`: a PROXY protocol header, the
//!   TLS handshake, the h2c preface); an HTTP/2 connection (ALPN `h2`, or
//!   h2c) then goes to
//!   Pingora's own HTTP/2 loop, over an [`EdgeStream`] that bounds the wait
//!   for its first bytes and its writes; HTTP/1 goes on below;
//! - wraps its stream in an [`EdgeStream`], which bounds the time from the
//!   connection's start, or from the end of the previous request, to the end
//!   of each request's head (`server.header_timeout`), whatever trickles in,
//!   bounds how long a write to the client may wait without progress
//!   (`server.write_timeout`: every write, of either forwarding path, of a
//!   head, a body or a flush), and turns Pingora's own bare refusals (a
//!   malformed head: 400; `CONNECT`: 405) into vigile's JSON errors;
//! - serves the connection's requests one after the other, pipelined ones
//!   included, in order (Pingora's HTTP/1 pipelining, opted in per session).
//!
//! The application says when a head is complete with [`head_received`]: the
//! proxy in `early_request_filter`, the admin app once it has read the head.
//! From then until the end of the request the stream is a plain pass-through
//! (a slow body is the body timeouts' business, not this deadline's).

mod answers;
mod limit;
mod preface;
mod proxy_protocol;

pub use preface::TlsEdge;
mod stream;

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use prometheus::IntCounter;

pub use answers::error_response;
pub use limit::{raise_open_file_limit, ConnectionLimit, ADMIN_MAX_CONNECTIONS};
use stream::EdgeStream;

/// Keep-alive time Pingora gives a new connection (its own default); the
/// head deadline is usually the shorter bound.
const KEEPALIVE_SECONDS: u64 = 60;

/// Phases of an [`EdgeStream`], shared with the connection loop.
const HEAD: u8 = 0;
const BODY: u8 = 1;
const EXPIRED: u8 = 2;

/// What the connections of one listener share (for the process's lifetime).
pub struct Edge {
    header_timeout: Duration,
    write_timeout: Duration,
    limit: Option<&'static ConnectionLimit>,
    /// `vigile_header_timeouts_total` of this listener.
    header_timeouts: IntCounter,
    /// Each connection opens with a PROXY protocol header (`proxy_protocol.rs`).
    proxy_protocol: bool,
    /// HTTP/2 with prior knowledge is served beside HTTP/1 (`preface.rs`).
    h2c: bool,
    /// `vigile_edge_refusals_total{reason="proxy_protocol"}`.
    proxy_protocol_refusals: Option<IntCounter>,
    /// The TLS listener among this edge's listeners (`preface.rs`).
    tls: Option<&'static TlsEdge>,
}

impl Edge {
    pub fn leak(
        header_timeout: Duration,
        write_timeout: Duration,
        limit: Option<&'static ConnectionLimit>,
        header_timeouts: IntCounter,
    ) -> &'static Edge {
        Box::leak(Box::new(Edge {
            header_timeout,
            write_timeout,
            limit,
            header_timeouts,
            proxy_protocol: false,
            h2c: false,
            proxy_protocol_refusals: None,
            tls: None,
        }))
    }

    /// The same edge, whose connections on `tls.addr` speak TLS.
    pub fn with_tls(&'static self, tls: TlsEdge) -> &'static Edge {
        Box::leak(Box::new(Edge {
            header_timeouts: self.header_timeouts.clone(),
            proxy_protocol_refusals: self.proxy_protocol_refusals.clone(),
            tls: Some(Box::leak(Box::new(tls))),
            ..*self
        }))
    }

    /// The same edge, whose plain connections open with a PROXY protocol
    /// header (`proxy_protocol`: the refusals counted in `refusals`) or may
    /// speak HTTP/2 with prior knowledge (`h2c`).
    pub fn with_prefaces(
        &'static self,
        proxy_protocol: Option<IntCounter>,
        h2c: bool,
    ) -> &'static Edge {
        if proxy_protocol.is_none() && !h2c {
            return self;
        }
        Box::leak(Box::new(Edge {
            header_timeouts: self.header_timeouts.clone(),
            proxy_protocol: proxy_protocol.is_some(),
            proxy_protocol_refusals: proxy_protocol,
            h2c,
            ..*self
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
        // One deadline from the acceptance to the end of the first request's
        // head (or an HTTP/2 client's first bytes), however the time is
        // split between a PROXY header, a TLS handshake and the head.
        let deadline = tokio::time::Instant::now() + self.edge.header_timeout;
        let tls = self.edge.tls.filter(|tls| tls.serves(&stream));
        // Counted from the first byte, TLS handshakes included.
        let guard = match self.edge.limit {
            Some(limit) => match limit.try_enter() {
                Some(guard) => Some(guard),
                // Before its handshake, a TLS client cannot read an answer.
                None if tls.is_some() => {
                    limit.refuse_silently();
                    return None;
                }
                None => {
                    limit.refuse(stream).await;
                    return None;
                }
            },
            None => None,
        };
        // What precedes HTTP: on TLS, the handshake (ALPN chooses the
        // protocol); on plain connections, a PROXY header or the h2c preface.
        let (stream, h2) = if let Some(tls) = tls {
            preface::tls(stream, self.edge, tls, deadline).await?
        } else if self.edge.proxy_protocol || self.edge.h2c {
            preface::plain(stream, self.edge, deadline).await?
        } else {
            (stream, false)
        };
        if h2 {
            return self.serve_h2(stream, guard, deadline, shutdown).await;
        }
        let phase = Arc::new(AtomicU8::new(HEAD));
        let stream = Box::new(EdgeStream::new(
            stream,
            self.edge,
            phase.clone(),
            guard,
            deadline,
        ));
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

impl<A> EdgeApp<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    /// An HTTP/2 connection: served by Pingora's own HTTP/2 loop (streams,
    /// flow control, graceful shutdown, idle timeout), over an
    /// [`EdgeStream`] that bounds the time to the client's first bytes by
    /// `deadline` and each write by `server.write_timeout`,
    /// and holds the connection's place in the cap.
    async fn serve_h2(
        &self,
        stream: Stream,
        guard: Option<limit::ConnectionGuard>,
        deadline: tokio::time::Instant,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let phase = Arc::new(AtomicU8::new(HEAD));
        let mut edge = EdgeStream::new(stream, self.edge, phase.clone(), guard, deadline);
        edge.until_first_bytes();
        let mut serving = <A as ServerApp>::process_new(&self.app, Box::new(edge), shutdown);
        std::future::poll_fn(|cx| match serving.as_mut().poll(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending if phase.load(Ordering::Relaxed) == EXPIRED => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        })
        .await
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
        edge.head_received();
    }
}

/// Whether a write to the client of `session` waits now (a client slow to
/// read its answer), as a flag that follows the connection.
pub fn client_writing(session: &ServerSession) -> Option<Arc<AtomicBool>> {
    session
        .stream()
        .and_then(|s| (**s).as_any().downcast_ref::<EdgeStream>())
        .map(EdgeStream::writing)
}
