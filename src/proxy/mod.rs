//! The Pingora adapter. It turns a session into typed inputs, calls the core
//! (account handlers, `auth`, the route table) and writes back what the core
//! returns. The request pipeline on a proxied route has three stages:
//! authenticate (who is this?), authorize (may they?), mutate (what does the
//! upstream get?, in `mutate.rs`).

mod answer;
mod client;
mod deadline;
mod dispatch;
mod failure;
mod forward;
mod legacy;
mod live;
mod local;
mod mutate;
pub mod plan;
mod request;
mod respond;
mod send_queue;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::ErrorType;

use crate::accounts::Endpoint;
use crate::forwarded::Client;
use crate::metrics::method_label;
use crate::routes::Route;
use crate::state::{Gateway, InFlight, InFlightGuard};
use crate::tokens::Verified;
use crate::upstream::{Picked, UpstreamPool};
use plan::{Action, RouteLabel, UNMATCHED};

pub use live::{Fresh, Live, Lives};
pub use mutate::IdentityHeaderNames;

/// Shows the value, or `-` when there is none (formatted only if logged).
struct OrDash<T>(Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for OrDash<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

pub struct Proxy {
    gateway: Arc<Gateway>,
    /// The configuration in force (`live.rs`): each request takes the one
    /// current when it starts.
    lives: Arc<Lives>,
    in_flight: InFlight,
}

impl Proxy {
    pub fn new(gateway: Arc<Gateway>, lives: Arc<Lives>, in_flight: InFlight) -> Proxy {
        Proxy {
            gateway,
            lives,
            in_flight,
        }
    }
}

/// The place of an HTTP/2 stream in `server.max_connections`, given back
/// when the request ends.
struct StreamPlace(&'static crate::connections::ConnectionLimit);

impl Drop for StreamPlace {
    fn drop(&mut self) {
        self.0.leave_stream();
    }
}

/// What one request has learned on its way through the filters.
pub struct RequestCtx {
    started: Instant,
    /// The configuration this request runs on, from start to end.
    live: Arc<Live>,
    /// Route name (or endpoint name) for metrics and logs.
    label: RouteLabel,
    identity: Option<Arc<Verified>>,
    request_id: http::HeaderValue,
    /// The target the upstream gets instead of the client's (normalized).
    upstream_target: Option<bytes::Bytes>,
    target: Option<std::net::SocketAddr>,
    /// Informational (1xx) answers seen from the upstream (Pingora's path).
    informational: usize,
    /// The final answer head arrived from the upstream (Pingora's path).
    head_received: bool,
    /// Bounds the wait for that head (Pingora's path; `deadline.rs`).
    head_deadline: deadline::HeadDeadline,
    /// The request was sent once more (Pingora's path): never a second time.
    retried: bool,
    /// CORS headers for the response (empty without an allowed `Origin`).
    cors: Vec<(&'static str, String)>,
    /// Who the client is: the peer, or the address a trusted proxy names.
    client: Option<Client>,
    /// The client came over TLS.
    https: bool,
    /// Counts this request as in flight until the context is dropped.
    _in_flight: InFlightGuard,
    /// An HTTP/2 stream's place in `server.max_connections`.
    _stream_place: Option<StreamPlace>,
}

impl RequestCtx {
    fn label(&self) -> &str {
        match self.label {
            RouteLabel::Route(i) => self
                .live
                .planner
                .routes
                .get(i)
                .map_or(UNMATCHED, |r| r.name.as_str()),
            RouteLabel::Fixed(name) => name,
        }
    }

    /// The route the request matched, if any.
    fn route(&self) -> Option<&Route> {
        route_of(&self.live, self.label)
    }

    /// The upstream pool of the route the request matched.
    fn pool(&self) -> Option<&UpstreamPool> {
        pool_of(&self.live, self.label)
    }

    /// Whether the route the request matched lets protocol upgrades through.
    fn allows_upgrade(&self) -> bool {
        self.route().is_some_and(|r| r.websocket)
    }
}

fn route_of(live: &Live, label: RouteLabel) -> Option<&Route> {
    match label {
        RouteLabel::Route(i) => live.planner.routes.get(i),
        RouteLabel::Fixed(_) => None,
    }
}

fn pool_of(live: &Live, label: RouteLabel) -> Option<&UpstreamPool> {
    route_of(live, label)
        .and_then(|r| live.pools.get(r.upstream.index))
        .map(|p| &**p)
}

/// The one upstream selection of both forwarding paths: the route's
/// upstream in `live` (the request's own, cloned by the caller so that
/// `ctx` can note the target for the access log) and its next healthy
/// target.
fn select<'a>(live: &'a Live, ctx: &mut RequestCtx) -> Result<(&'a UpstreamPool, Picked<'a>)> {
    let pool = pool_of(live, ctx.label).ok_or_else(|| {
        Error::explain(ErrorType::HTTPStatus(502), "no upstream for this request")
    })?;
    let picked = pool
        .pick()
        .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(502), "no healthy target"))?;
    ctx.target = Some(picked.addr);
    Ok((pool, picked))
}

/// The one request builder of both forwarding paths: what the upstream
/// gets of this request (`mutate.rs`).
fn forwarding(ctx: &RequestCtx) -> Option<mutate::Forwarding<'_>> {
    Some(mutate::Forwarding {
        route: ctx.route()?,
        names: &ctx.live.identity_headers,
        identity: ctx.identity.as_deref(),
        request_id: &ctx.request_id,
        client: ctx.client.as_ref(),
        https: ctx.https,
        target: ctx.upstream_target.as_deref(),
        upstream: ctx.target,
    })
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = RequestCtx;

    /// No downstream modules: Pingora's default adds a (disabled) compression
    /// module whose context is built and consulted on every request.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    /// The head is read: `server.header_timeout` stops (`connections.rs`).
    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        crate::connections::head_received(session.as_downstream());
        // HTTP/2: a write of an answer waits for the client's flow-control
        // window, which the connection's write timeout (on the socket)
        // never sees. A client that opens no window gets as long as one
        // that stops reading over HTTP/1.1, then its stream is given up
        // with the upstream connection it holds.
        if let ServerSession::H2(h2) = session.downstream_session.as_mut() {
            h2.set_write_timeout(Some(ctx.live.config.server.write_timeout));
        }
        Ok(())
    }

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            live: self.lives.load_full(),
            label: RouteLabel::Fixed(UNMATCHED),
            identity: None,
            request_id: http::HeaderValue::from_static(""),
            upstream_target: None,
            target: None,
            informational: 0,
            head_received: false,
            head_deadline: deadline::HeadDeadline::default(),
            retried: false,
            cors: Vec::new(),
            client: None,
            https: false,
            _in_flight: self.in_flight.enter(),
            _stream_place: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.request_id = mutate::request_id(session.req_header());
        ctx.client = client::client_of(session, &ctx.live.config.server.trusted_proxies);
        // The scheme is always the gateway's own listener's: a trusted
        // proxy's `X-Forwarded-Proto` may be the client's, passed on
        // (nginx and HAProxy do so by default).
        ctx.https = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        let http1 = matches!(*session.downstream_session, ServerSession::H1(_));
        // An HTTP/2 stream holds what an HTTP/1.1 connection holds (an
        // upstream connection, its descriptors): it takes a place in the
        // cap the open-file budget is sized by, as its connection did.
        if !http1 {
            let limit = self.gateway.connections;
            if !limit.enter_stream() {
                let e = crate::error::ApiError::too_many_connections();
                respond::error(session, &e, ctx).await?;
                return Ok(true);
            }
            ctx._stream_place = Some(StreamPlace(limit));
        }
        // An HTTP/2 request without a body (its stream ended with its
        // headers, or `content-length: 0`, which h2 holds the client to)
        // may take the direct path too.
        let direct_capable = http1 || session.downstream_session.is_body_empty();
        let decision = ctx
            .live
            .planner
            .decide(session.req_header(), direct_capable);
        if decision.is_route_auth_failure() {
            if let Action::Reject(e) = &decision.action {
                self.gateway
                    .metrics
                    .auth_failures
                    .with_label_values(&[e.code.as_str()])
                    .inc();
            }
        }
        ctx.label = decision.label;
        ctx.upstream_target = decision.upstream_target;
        ctx.cors = decision.cors;
        match decision.action {
            Action::Preflight => respond::no_content(session, ctx).await?,
            Action::Reject(e) => {
                // After a refused tunnel, what follows its head is no request.
                if session.req_header().method == http::Method::CONNECT {
                    session.set_keepalive(None);
                }
                respond::error(session, &e, ctx).await?
            }
            Action::Account(Endpoint::OpenApi) => {
                use crate::accounts::openapi::{CACHE_CONTROL, DOCUMENT};
                respond::document(session, DOCUMENT, CACHE_CONTROL, ctx).await?;
            }
            Action::Account(endpoint) => {
                let request_id = mutate::request_id_str(&ctx.request_id);
                let client_ip = ctx.client.as_ref().map(|c| c.ip);
                let result = self
                    .answer_account(session, endpoint, request_id, client_ip)
                    .await;
                self.count_account_result(endpoint, &result);
                match result {
                    Ok(reply) => {
                        respond::json(session, reply.status, &reply.body, ctx).await?;
                        if let Some(after) = reply.after {
                            after();
                        }
                    }
                    Err(e) => respond::error(session, &e, ctx).await?,
                }
            }
            Action::Forward {
                identity, direct, ..
            } => {
                ctx.identity = identity;
                return self.forward(session, ctx, direct).await;
            }
            Action::ForwardLegacy {
                route,
                claims,
                direct,
            } => {
                let roles = ctx
                    .live
                    .planner
                    .routes
                    .get(route)
                    .map_or(&[][..], |r| r.roles.as_slice());
                let accounts = self.gateway.accounts.clone();
                match legacy::identity(accounts, claims, roles).await {
                    Ok(identity) => {
                        ctx.identity = Some(identity);
                        return self.forward(session, ctx, direct).await;
                    }
                    Err(e) => {
                        if e.bearer_challenge {
                            self.gateway
                                .metrics
                                .auth_failures
                                .with_label_values(&[e.code.as_str()])
                                .inc();
                        }
                        respond::error(session, &e, ctx).await?;
                    }
                }
            }
        }
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let live = ctx.live.clone();
        let (pool, picked) = select(&live, ctx)?;
        let addr = picked.addr;
        let mut peer = match &pool.tls {
            Some(tls) => tls.peer(addr),
            None => HttpPeer::new(addr, false, String::new()),
        };
        // Upgrades pass only on the routes that allow them.
        peer.options.http_upstream_request_policy = if ctx.allows_upgrade() {
            pingora::upstreams::peer::HttpUpstreamRequestPolicy::standard()
        } else {
            pingora::upstreams::peer::HttpUpstreamRequestPolicy::deny_upgrades()
        };
        peer.options.connection_timeout = Some(pool.connect_timeout);
        peer.options.write_timeout = Some(pool.read_timeout);
        // Pingora's per-read read_timeout of a request with a body runs from
        // its last write to the upstream, when the kernel took the last
        // bytes, not when the upstream had them: a slow upload would be cut
        // although the upstream answers as soon as it has it all. Such a
        // request's reads are bounded by its deadline instead (the head's
        // from when the upstream has the request, then each wait for answer
        // bytes): `deadline.rs`.
        let with_body = !session.downstream_session.is_body_empty() && !session.is_upgrade_req();
        if with_body {
            peer.options.read_timeout = None;
            ctx.head_deadline.watch_answer(
                pool.read_timeout,
                crate::connections::client_writing(session.as_downstream()),
            );
        } else {
            peer.options.read_timeout = Some(pool.read_timeout);
        }
        // No idle timeout: it would arm a timer on every release to the pool.
        // An idle connection the upstream closes leaves the pool at once.
        Ok(Box::new(peer))
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        fd: std::os::unix::io::RawFd,
        digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // The connection's addresses, which its digest keeps (asked once
        // per connection, not per request).
        let addresses = digest
            .and_then(|d| d.socket_digest.as_ref())
            .and_then(|s| Some((*s.local_addr()?.as_inet()?, *s.peer_addr()?.as_inet()?)));
        ctx.head_deadline.connected(fd, addresses);
        Ok(())
    }

    /// Once the request has gone out whole, its answer's head must arrive
    /// within the upstream's `read_timeout`, whatever trickles in meanwhile.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if body.as_ref().is_some_and(|b| !b.is_empty()) || end_of_stream {
            ctx.head_deadline.body_arrives();
        }
        if end_of_stream && !ctx.head_received {
            if let Some(limit) = ctx.pool().map(|p| p.read_timeout) {
                ctx.head_deadline.start(limit);
            }
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(forwarding) = forwarding(ctx) else {
            return Ok(());
        };
        forwarding.apply(upstream_request)
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = upstream_response.status;
        if !status.is_informational() || status == http::StatusCode::SWITCHING_PROTOCOLS {
            ctx.head_received = true;
            ctx.head_deadline.head_arrived();
        }
        if status == http::StatusCode::SWITCHING_PROTOCOLS {
            // A tunnel only where the route allows one and the client asked.
            if !(ctx.allows_upgrade() && session.is_upgrade_req()) {
                return Err(Error::explain(
                    ErrorType::InvalidHTTPHeader,
                    "101 where no upgrade is allowed",
                )
                .into_up());
            }
        } else if status.is_informational() {
            ctx.informational += 1;
            if ctx.informational > forward::MAX_INFORMATIONAL {
                return Err(Error::explain(
                    ErrorType::InvalidHTTPHeader,
                    "too many informational answers",
                )
                .into_up());
            }
        }
        Ok(())
    }

    /// Answer bytes from the upstream (Pingora's path): the answer watch
    /// of a request with a body counts from them (`deadline.rs`).
    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        ctx.head_deadline.answer_bytes(end_of_stream);
        Ok(None)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        answer::for_downstream(upstream_response, &ctx.request_id, &ctx.cors);
        // HTTP/1.0 knows no chunks (Pingora chunks an answer without a
        // length): such a client's answer is delimited by the close.
        if session.req_header().version == http::Version::HTTP_10
            && !upstream_response.status.is_informational()
            && !upstream_response
                .headers
                .contains_key(http::header::CONTENT_LENGTH)
            && upstream_response
                .headers
                .contains_key(http::header::TRANSFER_ENCODING)
        {
            upstream_response.remove_header(&http::header::TRANSFER_ENCODING);
            session.set_keepalive(None);
        }
        Ok(())
    }

    /// The one retry, as on the direct path: an idempotent request, whose
    /// body is still whole in the retry buffer, is sent once more, on another
    /// connection, only when a reused connection was closed by the upstream
    /// before any byte of an answer (the upstream restarted or timed it out
    /// just as the request went), and only if time is left of the request's
    /// answer-head deadline, which the retry does not renew. A timeout, a
    /// malformed or partial answer, an informational answer, a fresh
    /// connection or a second failure is never retried.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        ctx.head_deadline.disarm();
        let retry = client_reused
            && !ctx.retried
            && !ctx.head_received
            && ctx.informational == 0
            && !ctx.head_deadline.expired()
            && ctx.head_deadline.remaining() != Some(std::time::Duration::ZERO)
            && forward::closed_before_answer(&e)
            && session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated();
        let mut e = e.more_context(format!("Peer: {peer}"));
        e.set_retry(retry);
        ctx.retried |= retry;
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        ctx.head_deadline.disarm();
        let upstream = ctx.pool().map_or("none", |p| p.name.as_str());
        let (api, kind) = failure::classify(e, ctx.head_deadline.expired());
        if kind != "downstream" {
            self.gateway
                .metrics
                .upstream_errors
                .with_label_values(&[upstream, kind])
                .inc();
        }
        // Only informational answers (a `100 Continue` the client asked for)
        // may have gone out: the final answer is still the gateway's to write.
        let final_written = session
            .response_written()
            .is_some_and(|r| !r.status.is_informational() || r.status.as_u16() == 101);
        let code = match api {
            Some(api) if !final_written => {
                // The connection closes after this answer (below): the
                // answer says so, or a keep-alive client would send its
                // next request into the close.
                session.set_keepalive(None);
                if respond::error(session, &api, ctx).await.is_err() {
                    0
                } else {
                    api.status
                }
            }
            Some(api) => api.status,
            None => 0,
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// What the client did to its own request (it went away, read none of
    /// its answer, sent a broken body) is no error of the gateway's: no
    /// ERROR line for it (any client could fill the log with them); the
    /// access log has the request and its error, debug the details.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, e: &Error) -> bool {
        let clients = e.esource() == &pingora::ErrorSource::Downstream;
        if clients {
            tracing::debug!(target: "vigile::edge", error = %e, "request given up by its client");
        }
        clients
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let method = method_label(session.req_header().method.as_str());
        let route = ctx.label();
        let elapsed = ctx.started.elapsed();
        let m = &self.gateway.metrics;
        let meter = match ctx.label {
            RouteLabel::Route(i) => ctx.live.meters.get(i),
            RouteLabel::Fixed(_) => None,
        };
        match meter {
            Some(meter) => meter.record(m, method, status, elapsed.as_secs_f64()),
            None => {
                let mut buf = itoa::Buffer::new();
                m.requests
                    .with_label_values(&[route, method, buf.format(status)])
                    .inc();
                m.latency
                    .with_label_values(&[route])
                    .observe(elapsed.as_secs_f64());
            }
        }
        let account = ctx
            .identity
            .as_ref()
            .map_or("-", |v| v.identity.account_id.as_str());
        tracing::info!(
            target: "vigile::access",
            request_id = mutate::request_id_str(&ctx.request_id),
            client = tracing::field::display(OrDash(ctx.client.as_ref().map(|c| c.ip))),
            route,
            method,
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            upstream = tracing::field::display(OrDash(ctx.target)),
            account,
            error = e.map(|e| e.etype().as_str()).unwrap_or("-"),
        );
    }
}
