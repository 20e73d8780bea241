//! A client connection's stream under the edge's rules: the head deadline,
//! the write timeout, and vigile's answers in place of Pingora's refusals.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::answers::{error_response, head_timeout, refusal_answer};
use super::limit::ConnectionGuard;
use super::{Edge, BODY, EXPIRED, HEAD};

/// A client connection's stream, as Pingora's HTTP/1 session sees it.
pub struct EdgeStream {
    inner: Stream,
    edge: &'static Edge,
    phase: Arc<AtomicU8>,
    /// The timer of the heads' deadlines, made when a read of a head first
    /// waits; it never fires after the current head's deadline.
    deadline: Option<Pin<Box<Sleep>>>,
    /// The current head's deadline: for the first request, the
    /// connection's own (`server.header_timeout` from its acceptance, what
    /// came before HTTP, a PROXY header or a TLS handshake, included); for
    /// the next ones, set (`armed`) when a read of the head first waits,
    /// about the end of the previous request.
    deadline_at: Instant,
    armed: bool,
    /// Bytes read since the head phase began.
    head_bytes: usize,
    /// Whether a request of this connection got as far as its head's end.
    first_done: AtomicBool,
    /// vigile's answer in place of a refusal of Pingora's, and how much of it
    /// is written.
    refusal: Option<(Vec<u8>, usize)>,
    /// The timer of the write timeout, made when a write first waits; like
    /// the head's, it is pushed back only when it fires early.
    write_timer: Option<Pin<Box<Sleep>>>,
    /// When the write waiting now times out, if one waits.
    write_due: Option<Instant>,
    /// Whether a write waits now, for whoever must tell a slow client from
    /// a slow upstream (`proxy/deadline.rs`); set on each change only.
    writing: Arc<AtomicBool>,
    /// HTTP/2: the head deadline covers the client's first bytes only (its
    /// streams' heads are the HTTP/2 loop's business).
    until_first_bytes: bool,
    _guard: Option<ConnectionGuard>,
}

impl EdgeStream {
    /// The request's head is complete: the deadline stops.
    pub(super) fn head_received(&self) {
        let _ = self
            .phase
            .compare_exchange(HEAD, BODY, Ordering::Relaxed, Ordering::Relaxed);
        self.first_done.store(true, Ordering::Relaxed);
    }

    pub(super) fn new(
        inner: Stream,
        edge: &'static Edge,
        phase: Arc<AtomicU8>,
        guard: Option<ConnectionGuard>,
        first_deadline: Instant,
    ) -> EdgeStream {
        EdgeStream {
            inner,
            edge,
            phase,
            deadline: None,
            deadline_at: first_deadline,
            armed: true,
            head_bytes: 0,
            first_done: AtomicBool::new(false),
            refusal: None,
            write_timer: None,
            write_due: None,
            writing: Arc::new(AtomicBool::new(false)),
            until_first_bytes: false,
            _guard: guard,
        }
    }

    /// HTTP/2: the deadline stops at the client's first bytes.
    pub(super) fn until_first_bytes(&mut self) {
        self.until_first_bytes = true;
    }

    /// The flag of a waiting write to the client.
    pub(super) fn writing(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.writing)
    }

    /// The previous request is over: the next head's time starts now.
    pub(super) fn next_request(&mut self) {
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
        }
        if self.deadline.is_none() {
            self.deadline = Some(Box::pin(tokio::time::sleep_until(self.deadline_at)));
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

    /// What a write (or flush, or shutdown) of the client connection gives:
    /// made progress or failed, the write timeout starts again; waits, the
    /// write timeout runs from the first wait on (a client that does not
    /// read its answer). Past `server.write_timeout` without progress, the
    /// write fails (`TimedOut`): Pingora, or the direct path, gives the
    /// request up, the client connection is closed and the upstream
    /// connection is not pooled.
    fn bound_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            if self.write_due.take().is_some() {
                self.writing.store(false, Ordering::Relaxed);
            }
            return polled;
        }
        let due = *self.write_due.get_or_insert_with(|| {
            self.writing.store(true, Ordering::Relaxed);
            Instant::now() + self.edge.write_timeout
        });
        let timer = self
            .write_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        loop {
            match timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if Instant::now() < due => timer.as_mut().reset(due),
                Poll::Ready(()) => {
                    tracing::debug!(
                        target: "vigile::edge",
                        "the client read nothing of its answer within server.write_timeout: \
                         connection closed"
                    );
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client did not read its answer within server.write_timeout",
                    )));
                }
            }
        }
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
                if this.until_first_bytes && this.head_bytes > 0 {
                    this.phase.store(BODY, Ordering::Relaxed);
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
            let polled = this.poll_refusal(cx, buf);
            return this.bound_write(cx, polled);
        }
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.bound_write(cx, polled)
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
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.bound_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.bound_write(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.bound_write(cx, polled)
    }
}

#[async_trait]
impl Shutdown for EdgeStream {
    /// Flushes and shuts the write side down, within the write timeout (a
    /// client that does not read could hold a pending flush forever).
    async fn shutdown(&mut self) {
        if let Err(e) = tokio::io::AsyncWriteExt::shutdown(self).await {
            tracing::debug!(target: "vigile::edge", error = %e, "shutting a client connection down");
        }
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
