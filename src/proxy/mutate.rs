//! The third stage of the proxy path: what the upstream gets. Client-sent
//! identity headers are removed on every route (whatever their case, however
//! often repeated) before the gateway sets its own; the request id and
//! `X-Forwarded-For` are set; `Authorization` is dropped when the route says so.

use std::net::IpAddr;

use bytes::Bytes;
use http::HeaderName;
use pingora::http::RequestHeader;
use pingora::Result;

use crate::config::IdentityHeaders;
use crate::routes::Route;
use crate::tokens::Identity;

pub const REQUEST_ID: &str = "X-Request-Id";

/// One configured identity header: its name for lookups, and the same name
/// as written in the config (Pingora sends it with that case, and takes it
/// as `Bytes` without copying).
struct IdentityHeader {
    name: HeaderName,
    written: Bytes,
}

/// The configured identity header names, parsed once.
pub struct IdentityHeaderNames {
    user_id: IdentityHeader,
    email: IdentityHeader,
    role: IdentityHeader,
    session_id: IdentityHeader,
}

impl IdentityHeaderNames {
    pub fn new(cfg: &IdentityHeaders) -> IdentityHeaderNames {
        // Names were checked at config load; a fallback keeps this total.
        let header =
            |name: &str, fallback: &'static str| match HeaderName::from_bytes(name.as_bytes()) {
                Ok(parsed) => IdentityHeader {
                    name: parsed,
                    written: Bytes::copy_from_slice(name.as_bytes()),
                },
                Err(_) => IdentityHeader {
                    name: HeaderName::from_static(fallback),
                    written: Bytes::from_static(fallback.as_bytes()),
                },
            };
        IdentityHeaderNames {
            user_id: header(&cfg.user_id, "x-user-id"),
            email: header(&cfg.email, "x-user-email"),
            role: header(&cfg.role, "x-user-role"),
            session_id: header(&cfg.session_id, "x-session-id"),
        }
    }
}

/// The client's request id when it is a sane token (1 to 128 characters of
/// `[A-Za-z0-9._:-]`), else a fresh random one.
pub fn request_id(req: &RequestHeader) -> String {
    if let Some(value) = req.headers.get(REQUEST_ID) {
        let bytes = value.as_bytes();
        if (1..=128).contains(&bytes.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(b))
        {
            if let Ok(text) = std::str::from_utf8(bytes) {
                return text.to_string();
            }
        }
    }
    crate::tokens::hex128(rand::random())
}

pub fn for_upstream(
    req: &mut RequestHeader,
    route: &Route,
    names: &IdentityHeaderNames,
    identity: Option<&Identity>,
    request_id: &str,
    client_ip: Option<IpAddr>,
) -> Result<()> {
    for header in [&names.user_id, &names.email, &names.role, &names.session_id] {
        if req.headers.contains_key(&header.name) {
            req.remove_header(&header.name);
        }
    }
    if let Some(who) = identity {
        req.insert_header(names.user_id.written.clone(), who.account_id.as_str())?;
        req.insert_header(names.email.written.clone(), who.email.as_str())?;
        req.insert_header(names.role.written.clone(), who.role.as_str())?;
        req.insert_header(names.session_id.written.clone(), who.session.to_string())?;
    }
    req.insert_header(REQUEST_ID, request_id)?;
    // The gateway is the edge: what clients claim here is replaced.
    req.insert_header("X-Forwarded-Proto", "http")?;
    let host = req.headers.get(http::header::HOST).cloned();
    match host {
        Some(host) => req.insert_header("X-Forwarded-Host", host)?,
        None => {
            req.remove_header("x-forwarded-host");
        }
    }
    if let Some(ip) = client_ip {
        let forwarded = match req
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(earlier) if !earlier.trim().is_empty() => format!("{}, {ip}", earlier.trim()),
            _ => ip.to_string(),
        };
        req.insert_header("X-Forwarded-For", forwarded)?;
    }
    if !route.forward_authorization {
        req.remove_header(&http::header::AUTHORIZATION);
    }
    if route.strip_prefix {
        let path_and_query = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let stripped = route.upstream_path(path_and_query);
        if let Ok(uri) = stripped.parse() {
            req.set_uri(uri);
        }
    }
    Ok(())
}
