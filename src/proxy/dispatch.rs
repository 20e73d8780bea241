//! Which forwarding path a request the plan let through takes: the direct
//! path (`forward.rs`: a plain read, from an HTTP/1 client or an HTTP/2
//! stream that can carry no body, to a plain-HTTP upstream) or Pingora's.

use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};

use super::{answer, forward, forwarding, select, Proxy, RequestCtx};

impl Proxy {
    /// Forwards a request the plan let through: by the direct path (then
    /// answered: `true`), or by Pingora's (`false`).
    pub(super) async fn forward(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        direct: bool,
    ) -> Result<bool> {
        // The direct path speaks plain HTTP/1 to the upstream.
        if direct && ctx.pool().is_some_and(|p| p.tls.is_none()) {
            self.forward_direct(session, ctx).await?;
            return Ok(true);
        }
        // Pingora's path: the upstream's 1xx answers stay here (as on the
        // direct path), but a `100` the client asked for.
        if let ServerSession::H1(client) = session.downstream_session.as_mut() {
            client.set_ignore_info_resp(true);
        }
        Ok(false)
    }

    async fn forward_direct(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        let live = ctx.live.clone();
        let (pool, picked) = select(&live, ctx)?;
        let addr = picked.addr;
        let target = forward::Target {
            addr,
            idle: picked.idle,
            events: &pool.connection_events,
            connect_timeout: pool.connect_timeout,
            read_timeout: pool.read_timeout,
        };
        let ctx = &*ctx;
        let build = |session: &Session| match forwarding(ctx) {
            Some(forwarding) => forwarding
                .build(session.req_header())
                .map_err(|e| e.into_down()),
            None => Err(Error::explain(ErrorType::HTTPStatus(502), "no route")),
        };
        let answer =
            |upstream: &ResponseHeader| answer::answer_from(upstream, &ctx.request_id, &ctx.cors);
        forward::forward(session, &target, build, answer).await
    }
}
