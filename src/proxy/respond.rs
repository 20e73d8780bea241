//! Writing the gateway's own answers: JSON with a Content-Length (so that
//! keep-alive clients never wait for a close), the request id, the CORS
//! headers of the request, and the headers an error calls for (`Allow`,
//! `Retry-After`, `WWW-Authenticate`).

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

use super::mutate::REQUEST_ID;
use super::RequestCtx;
use crate::error::ApiError;

async fn write(
    session: &mut Session,
    status: u16,
    body: Bytes,
    ctx: &RequestCtx,
    extra: &[(&'static str, &str)],
) -> Result<()> {
    let mut header = ResponseHeader::build(status, Some(4 + extra.len() + ctx.cors.len()))?;
    if !body.is_empty() {
        header.insert_header("Content-Type", "application/json")?;
    }
    header.insert_header("Content-Length", body.len().to_string())?;
    if !extra.iter().any(|(name, _)| *name == "Cache-Control") {
        header.insert_header("Cache-Control", "no-store")?;
    }
    header.insert_header(REQUEST_ID, ctx.request_id.clone())?;
    for (name, value) in extra {
        header.insert_header(*name, *value)?;
    }
    for (name, value) in &ctx.cors {
        header.insert_header(*name, value.as_str())?;
    }
    let end = body.is_empty();
    session.write_response_header(Box::new(header), end).await?;
    if end {
        return Ok(());
    }
    session.write_response_body(Some(body), true).await
}

pub async fn json(
    session: &mut Session,
    status: u16,
    body: &serde_json::Value,
    ctx: &RequestCtx,
) -> Result<()> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    write(session, status, bytes.into(), ctx, &[]).await
}

/// 200 with a JSON document of the binary's own, as it is, cacheable.
pub async fn document(
    session: &mut Session,
    document: &'static str,
    cache_control: &'static str,
    ctx: &RequestCtx,
) -> Result<()> {
    let body = Bytes::from_static(document.as_bytes());
    write(session, 200, body, ctx, &[("Cache-Control", cache_control)]).await
}

/// 204 to an allowed CORS preflight; its headers are in `ctx.cors`.
pub async fn no_content(session: &mut Session, ctx: &RequestCtx) -> Result<()> {
    write(session, 204, Bytes::new(), ctx, &[]).await
}

pub async fn error(session: &mut Session, e: &ApiError, ctx: &RequestCtx) -> Result<()> {
    let retry_after = e.retry_after.map(|s| s.to_string());
    let mut extra: Vec<(&'static str, &str)> = Vec::new();
    if let Some(allow) = &e.allow {
        extra.push(("Allow", allow));
    }
    if let Some(seconds) = &retry_after {
        extra.push(("Retry-After", seconds));
    }
    if e.bearer_challenge {
        extra.push((
            "WWW-Authenticate",
            r#"Bearer realm="api", error="invalid_token""#,
        ));
    }
    if e.status == 413 || e.status == 408 {
        // The rest of the body was not read: the connection cannot be reused.
        session.set_keepalive(None);
    }
    write(session, e.status, e.body().into(), ctx, &extra).await
}
