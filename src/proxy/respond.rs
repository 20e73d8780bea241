//! Writing the gateway's own answers: JSON with a Content-Length (so that
//! keep-alive clients never wait for a close), the request id, and the
//! headers an error calls for (`Allow`, `Retry-After`, `WWW-Authenticate`).

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

use super::mutate::REQUEST_ID;
use crate::error::ApiError;

async fn write(
    session: &mut Session,
    status: u16,
    body: Vec<u8>,
    request_id: &str,
    extra: &[(&'static str, &str)],
) -> Result<()> {
    let mut header = ResponseHeader::build(status, Some(4 + extra.len()))?;
    header.insert_header("Content-Type", "application/json")?;
    header.insert_header("Content-Length", body.len().to_string())?;
    header.insert_header("Cache-Control", "no-store")?;
    header.insert_header(REQUEST_ID, request_id)?;
    for (name, value) in extra {
        header.insert_header(*name, *value)?;
    }
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session
        .write_response_body(Some(Bytes::from(body)), true)
        .await
}

pub async fn json(
    session: &mut Session,
    status: u16,
    body: &serde_json::Value,
    request_id: &str,
) -> Result<()> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    write(session, status, bytes, request_id, &[]).await
}

pub async fn error(session: &mut Session, e: &ApiError, request_id: &str) -> Result<()> {
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
    write(session, e.status, e.body(), request_id, &extra).await
}
