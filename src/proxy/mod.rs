//! The Pingora adapter. It turns a session into typed inputs, calls the core
//! (account handlers, `auth`, the route table) and writes back what the core
//! returns. The request pipeline on a proxied route has three stages:
//! authenticate (who is this?), authorize (may they?), mutate (what does the
//! upstream get?, in `mutate.rs`).

mod forward;
mod mutate;
mod request;
mod respond;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::ErrorType;

use crate::accounts::{self, AccountRequest, Endpoint, Reply};
use crate::auth::{self, AuthFailure};
use crate::config::AuthMode;
use crate::cors::{CorsPolicy, Preflight};
use crate::error::ApiError;
use crate::gateway::{Gateway, UpstreamPool};
use crate::metrics::{method_label, RouteMeter};
use crate::routes::{Route, RouteTable};
use crate::shutdown::{InFlight, InFlightGuard};
use crate::token_cache::{TokenCache, Verified};

pub use forward::{ConnectionEvents, IdleConnections};
pub use mutate::IdentityHeaderNames;

/// Largest body the account endpoints read.
pub const MAX_BODY: usize = 64 * 1024;
/// How long a client may take to send that body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Route label for requests that matched no route.
const UNMATCHED: &str = "unmatched";
/// Route label for CORS preflights.
const CORS_PREFLIGHT: &str = "cors.preflight";

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

/// A request header as text, if present and readable.
fn header_str<'a>(session: &'a Session, name: &str) -> Option<&'a str> {
    session
        .req_header()
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
}

pub struct Proxy {
    gateway: Arc<Gateway>,
    routes: RouteTable,
    pools: Arc<Vec<UpstreamPool>>,
    identity_headers: IdentityHeaderNames,
    cors: CorsPolicy,
    in_flight: InFlight,
    /// Shared by the proxy services of every worker thread.
    verified: Arc<TokenCache>,
    /// Metric handles of each route, by route index.
    meters: Vec<RouteMeter>,
}

impl Proxy {
    pub fn new(
        gateway: Arc<Gateway>,
        pools: Arc<Vec<UpstreamPool>>,
        in_flight: InFlight,
        verified: Arc<TokenCache>,
    ) -> Proxy {
        let routes = RouteTable::new(&gateway.config.routes);
        let identity_headers = IdentityHeaderNames::new(
            &gateway.config.identity_headers,
            gateway.config.server.underscore_headers,
        );
        let cors = CorsPolicy::new(&gateway.config.cors);
        let meters = (0..)
            .map_while(|i| routes.get(i))
            .map(|route| RouteMeter::new(&gateway.metrics, &route.name))
            .collect();
        Proxy {
            gateway,
            routes,
            pools,
            identity_headers,
            cors,
            in_flight,
            verified,
            meters,
        }
    }
}

/// What one request has learned on its way through the filters.
pub struct RequestCtx {
    started: Instant,
    /// Route name (or endpoint name) for metrics and logs.
    label: RouteLabel,
    identity: Option<Arc<Verified>>,
    request_id: http::HeaderValue,
    /// The target the upstream gets instead of the client's (normalized).
    upstream_target: Option<bytes::Bytes>,
    target: Option<std::net::SocketAddr>,
    /// Informational (1xx) answers seen from the upstream (Pingora's path).
    informational: usize,
    /// CORS headers for the response (empty without an allowed `Origin`).
    cors: Vec<(&'static str, String)>,
    /// Counts this request as in flight until the context is dropped.
    _in_flight: InFlightGuard,
}

enum RouteLabel {
    Route(usize),
    Fixed(&'static str),
}

impl Proxy {
    fn label<'a>(&'a self, ctx: &RequestCtx) -> &'a str {
        match ctx.label {
            RouteLabel::Route(i) => self.routes.get(i).map_or(UNMATCHED, |r| r.name.as_str()),
            RouteLabel::Fixed(name) => name,
        }
    }

    /// Reads the body of a request the gateway answers itself, up to `MAX_BODY`.
    async fn read_body(session: &mut Session) -> Result<Vec<u8>, ApiError> {
        let declared = session
            .req_header()
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            return Err(ApiError::body_too_large());
        }
        let mut body = Vec::with_capacity(declared.unwrap_or(0) as usize);
        let read = async {
            while let Some(chunk) = session
                .read_request_body()
                .await
                .map_err(|_| ApiError::invalid_json())?
            {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(ApiError::body_too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(())
        };
        match tokio::time::timeout(BODY_TIMEOUT, read).await {
            Ok(result) => result.map(|_| body),
            Err(_) => Err(ApiError::new(
                408,
                "request_timeout",
                "Le corps de la requête est arrivé trop lentement",
            )),
        }
    }

    /// Runs one account endpoint on the blocking pool.
    async fn answer_account(
        &self,
        session: &mut Session,
        endpoint: Endpoint,
    ) -> Result<Reply, ApiError> {
        let body = Self::read_body(session).await?;
        let authorization = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes().to_vec());
        let client_ip = client_ip(session);
        let accounts = self.gateway.accounts.clone();
        let job = move || {
            accounts.handle(&AccountRequest {
                endpoint,
                authorization: authorization.as_deref(),
                body: &body,
                client_ip,
            })
        };
        if endpoint.hashes() {
            self.gateway.hash_pool.run(job).await?
        } else {
            tokio::task::spawn_blocking(job)
                .await
                .map_err(|_| ApiError::internal())?
        }
    }

    fn count_account_result(&self, endpoint: Endpoint, result: &Result<Reply, ApiError>) {
        let m = &self.gateway.metrics;
        let outcome = match result {
            Ok(_) => "success",
            Err(e) => e.code,
        };
        match endpoint {
            Endpoint::Login => m.logins.with_label_values(&[outcome]).inc(),
            Endpoint::Register => m.registrations.with_label_values(&[outcome]).inc(),
            Endpoint::Refresh => m.refreshes.with_label_values(&[outcome]).inc(),
            _ => {}
        }
        if let Err(e) = result {
            if e.bearer_challenge {
                m.auth_failures.with_label_values(&[e.code]).inc();
            }
        }
    }

    /// Authenticate and authorize a request on a proxied route.
    fn check_access(
        &self,
        session: &Session,
        route_index: usize,
    ) -> Result<Option<Arc<Verified>>, ApiError> {
        let Some(route) = self.routes.get(route_index) else {
            return Err(ApiError::not_found());
        };
        let req = session.req_header();
        if !route.allows(&req.method) {
            return Err(ApiError::method_not_allowed(route.allow()));
        }
        if route.auth == AuthMode::None {
            return Ok(None);
        }
        let accounts = &self.gateway.accounts;
        let authorization = req
            .headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        let verdict = auth::authenticate_cached(
            authorization,
            &accounts.tokens,
            &self.verified,
            &accounts.revocations,
        );
        let identity = match verdict {
            Ok(None) if route.auth == AuthMode::Required => return Err(AuthFailure::Missing.into()),
            Ok(identity) => identity,
            Err(failure) => return Err(failure.into()),
        };
        if let Some(who) = &identity {
            auth::authorize(&who.identity, &route.roles)?;
        }
        Ok(identity)
    }
}

impl Proxy {
    /// The route a request matched, if any.
    fn route_of(&self, ctx: &RequestCtx) -> Option<&Route> {
        match ctx.label {
            RouteLabel::Route(i) => self.routes.get(i),
            RouteLabel::Fixed(_) => None,
        }
    }

    /// The upstream pool of the route a request matched.
    fn pool_of(&self, ctx: &RequestCtx) -> Option<&UpstreamPool> {
        self.route_of(ctx)
            .and_then(|r| self.pools.get(r.upstream.index))
    }

    /// Whether the route a request matched lets protocol upgrades through.
    fn allows_upgrade(&self, ctx: &RequestCtx) -> bool {
        self.route_of(ctx).is_some_and(|r| r.websocket)
    }

    /// Forwards a plain read on route `index` by the direct path (`forward.rs`).
    async fn forward_direct(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        index: usize,
    ) -> Result<()> {
        let no_upstream =
            || Error::explain(ErrorType::HTTPStatus(502), "no upstream for this request");
        let route = self.routes.get(index).ok_or_else(no_upstream)?;
        let pool = self.pool_of(ctx).ok_or_else(no_upstream)?;
        let (addr, idle) = pool
            .pick_index()
            .and_then(|i| pool.target(i))
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(502), "no healthy target"))?;
        ctx.target = Some(addr);
        let target = forward::Target {
            addr,
            idle,
            events: &pool.connection_events,
            connect_timeout: pool.connect_timeout,
            read_timeout: pool.read_timeout,
        };
        let ctx = &*ctx;
        let build = |session: &Session| {
            let forwarding = mutate::Forwarding {
                route,
                names: &self.identity_headers,
                identity: ctx.identity.as_deref(),
                request_id: &ctx.request_id,
                client_ip: client_ip(session),
                target: ctx.upstream_target.as_deref(),
                upstream: Some(addr),
            };
            forwarding
                .build(session.req_header())
                .map_err(|e| e.into_down())
        };
        let answer =
            |upstream: &ResponseHeader| mutate::answer_from(upstream, &ctx.request_id, &ctx.cors);
        forward::forward(session, &target, build, answer).await
    }
}

fn client_ip(session: &Session) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
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
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        crate::connections::head_received(session.as_downstream());
        Ok(())
    }

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            label: RouteLabel::Fixed(UNMATCHED),
            identity: None,
            request_id: http::HeaderValue::from_static(""),
            upstream_target: None,
            target: None,
            informational: 0,
            cors: Vec::new(),
            _in_flight: self.in_flight.enter(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.request_id = mutate::request_id(session.req_header());
        // One credential, a valid Host, a path that normalizes: what the
        // rest decides on is the normalized path.
        let checked = match request::check(session.req_header()) {
            Ok(checked) => checked,
            Err(e) => {
                respond::error(session, &e, ctx).await?;
                return Ok(true);
            }
        };
        ctx.upstream_target = checked.upstream_target;
        let method = session.req_header().method.as_str();

        // CORS: preflights are answered here, before any authentication.
        if let Some(origin) = header_str(session, "origin") {
            let preflight = self.cors.preflight(
                method,
                Some(origin),
                header_str(session, "access-control-request-method"),
                header_str(session, "access-control-request-headers"),
            );
            match preflight {
                Preflight::No => ctx.cors = self.cors.response_headers(origin),
                Preflight::Allowed(headers) => {
                    ctx.label = RouteLabel::Fixed(CORS_PREFLIGHT);
                    ctx.cors = headers;
                    respond::no_content(session, ctx).await?;
                    return Ok(true);
                }
                Preflight::Refused => {
                    ctx.label = RouteLabel::Fixed(CORS_PREFLIGHT);
                    let e = ApiError::new(
                        403,
                        "cors_forbidden",
                        "Origine, méthode ou en-tête non autorisé (CORS)",
                    );
                    respond::error(session, &e, ctx).await?;
                    return Ok(true);
                }
            }
        }

        // The gateway's own endpoints.
        let path = checked
            .path
            .as_deref()
            .unwrap_or(session.req_header().uri.path());
        let path = request::route_path(path);
        let resolved = accounts::resolve(method, &path);
        let route = self.routes.find_index(&path);
        if let Some(resolved) = resolved {
            let result = match resolved {
                Ok(endpoint) => {
                    ctx.label = RouteLabel::Fixed(endpoint.name());
                    let result = self.answer_account(session, endpoint).await;
                    self.count_account_result(endpoint, &result);
                    result
                }
                Err(e) => {
                    ctx.label = RouteLabel::Fixed(accounts::UNKNOWN_ACCOUNT_PATH);
                    Err(e)
                }
            };
            match result {
                Ok(reply) => {
                    respond::json(session, reply.status, &reply.body, ctx).await?;
                    if let Some(after) = reply.after {
                        after();
                    }
                }
                Err(e) => respond::error(session, &e, ctx).await?,
            }
            return Ok(true);
        }

        // Proxied routes: authenticate, authorize; mutation comes in upstream_request_filter.
        let Some(index) = route else {
            respond::error(session, &ApiError::not_found(), ctx).await?;
            return Ok(true);
        };
        ctx.label = RouteLabel::Route(index);
        match self.check_access(session, index) {
            Ok(identity) => {
                ctx.identity = identity;
                if forward::eligible(session) {
                    self.forward_direct(session, ctx, index).await?;
                    return Ok(true);
                }
                // Pingora's path: the upstream's 1xx answers stay here (as
                // on the direct path), but a `100` the client asked for.
                if let ServerSession::H1(client) = session.downstream_session.as_mut() {
                    client.set_ignore_info_resp(true);
                }
                Ok(false)
            }
            Err(e) => {
                if e.bearer_challenge {
                    self.gateway
                        .metrics
                        .auth_failures
                        .with_label_values(&[e.code])
                        .inc();
                }
                respond::error(session, &e, ctx).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let Some(pool) = self.pool_of(ctx) else {
            return Err(Error::explain(
                ErrorType::HTTPStatus(502),
                "no upstream for this request",
            ));
        };
        let Some(addr) = pool.pick() else {
            return Err(Error::explain(
                ErrorType::HTTPStatus(502),
                "no healthy target",
            ));
        };
        ctx.target = Some(addr);
        let mut peer = HttpPeer::new(addr, false, String::new());
        // Upgrades pass only on the routes that allow them.
        peer.options.http_upstream_request_policy = if self.allows_upgrade(ctx) {
            pingora::upstreams::peer::HttpUpstreamRequestPolicy::standard()
        } else {
            pingora::upstreams::peer::HttpUpstreamRequestPolicy::deny_upgrades()
        };
        peer.options.connection_timeout = Some(pool.connect_timeout);
        peer.options.read_timeout = Some(pool.read_timeout);
        peer.options.write_timeout = Some(pool.read_timeout);
        // No idle timeout: it would arm a timer on every release to the pool.
        // An idle connection the upstream closes leaves the pool at once.
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let RouteLabel::Route(index) = ctx.label else {
            return Ok(());
        };
        let Some(route) = self.routes.get(index) else {
            return Ok(());
        };
        let forwarding = mutate::Forwarding {
            route,
            names: &self.identity_headers,
            identity: ctx.identity.as_deref(),
            request_id: &ctx.request_id,
            client_ip: client_ip(session),
            target: ctx.upstream_target.as_deref(),
            upstream: ctx.target,
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
        if status == http::StatusCode::SWITCHING_PROTOCOLS {
            // A tunnel only where the route allows one and the client asked.
            if !(self.allows_upgrade(ctx) && session.is_upgrade_req()) {
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

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        mutate::for_downstream(upstream_response, &ctx.request_id, &ctx.cors);
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

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let upstream = self.pool_of(ctx).map_or("none", |p| p.name.as_str());
        let (api, kind) = match e.etype() {
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                (Some(ApiError::upstream_timeout()), "timeout")
            }
            ErrorType::HTTPStatus(502) => {
                (Some(ApiError::upstream_unavailable()), "no_healthy_target")
            }
            ErrorType::InvalidHTTPHeader | ErrorType::H1Error
                if e.esource() == &pingora::ErrorSource::Upstream =>
            {
                (Some(ApiError::upstream_unavailable()), "invalid_response")
            }
            _ => match e.esource() {
                pingora::ErrorSource::Upstream => {
                    (Some(ApiError::upstream_unavailable()), "connect")
                }
                pingora::ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                        (None, "downstream")
                    }
                    _ => (Some(ApiError::bad_request(400)), "downstream"),
                },
                _ => (Some(ApiError::internal()), "internal"),
            },
        };
        if kind != "downstream" {
            self.gateway
                .metrics
                .upstream_errors
                .with_label_values(&[upstream, kind])
                .inc();
        }
        let code = match api {
            Some(api) if session.response_written().is_none() => {
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

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let method = method_label(session.req_header().method.as_str());
        let route = self.label(ctx);
        let elapsed = ctx.started.elapsed();
        let m = &self.gateway.metrics;
        let meter = match ctx.label {
            RouteLabel::Route(i) => self.meters.get(i),
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
