//! The third stage of the proxy path: what the upstream gets. Client-sent
//! identity headers are removed on every route (whatever their case, however
//! often repeated) before the gateway sets its own; the request id and
//! `X-Forwarded-For` are set; `Authorization` is dropped when the route says so.

use std::cell::RefCell;
use std::io::Write as _;
use std::net::IpAddr;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{AUTHORIZATION, CONNECTION, HOST};
use http::request::Parts;
use http::response;
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::{Error, ErrorType, Result};

use crate::config::IdentityHeaders;
use crate::routes::Route;
use crate::token_cache::Verified;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// The headers the gateway adds to a request at most (four identity headers,
/// request id, three `X-Forwarded-*`).
const ADDED: usize = 8;

/// The configured identity header names, parsed once.
pub struct IdentityHeaderNames {
    user_id: HeaderName,
    email: HeaderName,
    role: HeaderName,
    session_id: HeaderName,
}

impl IdentityHeaderNames {
    pub fn new(cfg: &IdentityHeaders) -> IdentityHeaderNames {
        // Names were checked at config load; a fallback keeps this total.
        let header = |name: &str, fallback: &'static str| {
            HeaderName::from_bytes(name.as_bytes())
                .unwrap_or_else(|_| HeaderName::from_static(fallback))
        };
        IdentityHeaderNames {
            user_id: header(&cfg.user_id, "x-user-id"),
            email: header(&cfg.email, "x-user-email"),
            role: header(&cfg.role, "x-user-role"),
            session_id: header(&cfg.session_id, "x-session-id"),
        }
    }

    fn all(&self) -> [&HeaderName; 4] {
        [&self.user_id, &self.email, &self.role, &self.session_id]
    }
}

/// The client's request id when it is a sane token (1 to 128 characters of
/// `[A-Za-z0-9._:-]`), else a fresh random one.
pub fn request_id(req: &RequestHeader) -> HeaderValue {
    if let Some(value) = req.headers.get(REQUEST_ID) {
        let bytes = value.as_bytes();
        if (1..=128).contains(&bytes.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(b))
        {
            return value.clone();
        }
    }
    let mut hex = [0u8; 32];
    crate::tokens::hex128_into(rand::random(), &mut hex);
    // One allocation, and clones (upstream request, response) share it.
    HeaderValue::from_maybe_shared(Bytes::from_owner(hex)).unwrap_or(HeaderValue::from_static("-"))
}

/// The request id as text, for logs.
pub fn request_id_str(value: &HeaderValue) -> &str {
    value.to_str().unwrap_or("-")
}

/// `X-Forwarded-For`: the client's address after what earlier proxies wrote.
fn forwarded_for(earlier: Option<&HeaderValue>, ip: IpAddr) -> Result<HeaderValue> {
    let earlier = earlier
        .map(|v| v.as_bytes().trim_ascii())
        .filter(|e| !e.is_empty());
    let Some(earlier) = earlier else {
        return Ok(address_value(ip));
    };
    let mut text = [0u8; 48];
    let ip = address_text(ip, &mut text);
    let mut buffer = BytesMut::with_capacity(earlier.len() + 2 + ip.len());
    buffer.put_slice(earlier);
    buffer.put_slice(b", ");
    buffer.put_slice(ip);
    HeaderValue::from_maybe_shared(buffer.freeze())
        .map_err(|_| Error::explain(ErrorType::InternalError, "bad X-Forwarded-For"))
}

fn address_text(ip: IpAddr, text: &mut [u8; 48]) -> &[u8] {
    let mut cursor = std::io::Cursor::new(&mut text[..]);
    // An address always fits in 48 bytes.
    let _ = write!(cursor, "{ip}");
    let len = cursor.position() as usize;
    &text[..len]
}

/// An address as a header value. Requests come in runs from the same
/// addresses (keep-alive connections, a load balancer in front): each
/// thread keeps the last one it formatted.
fn address_value(ip: IpAddr) -> HeaderValue {
    thread_local! {
        static LAST: RefCell<Option<(IpAddr, HeaderValue)>> = const { RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((known, value)) if *known == ip => value.clone(),
        _ => {
            let mut text = [0u8; 48];
            let len = address_text(ip, &mut text).len();
            let value = HeaderValue::from_maybe_shared(Bytes::from_owner(text).slice(..len))
                .unwrap_or(HeaderValue::from_static("unknown"));
            *last = Some((ip, value.clone()));
            value
        }
    })
}

/// Standard hop-by-hop headers: they describe one connection, not the request.
const HOP_BY_HOP: [HeaderName; 10] = [
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
    HeaderName::from_static("http2-settings"),
    CONNECTION,
];
/// Most headers a client may name in `Connection`.
const MAX_NOMINATED: usize = 16;

/// Removes the hop-by-hop headers and those the client named in
/// `Connection`. Pingora does this on its own path (before the filters,
/// since an upgrade needs them); the direct path, which never upgrades,
/// does it here.
fn strip_hop_by_hop(headers: &mut HeaderMap) -> Result<()> {
    let mut nominated: [Option<HeaderName>; MAX_NOMINATED] = Default::default();
    let tokens = headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty());
    for (count, token) in tokens.enumerate() {
        let Some(slot) = nominated.get_mut(count) else {
            return Err(Error::explain(
                ErrorType::InvalidHTTPHeader,
                "too many Connection nominations",
            ));
        };
        // A token that is no header name names nothing to remove.
        *slot = HeaderName::from_bytes(token).ok();
    }
    for name in nominated.iter().flatten() {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    Ok(())
}

/// Whether an upstream request is for a connection the gateway owns (the
/// direct path): then the hop-by-hop headers go here.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Hops {
    Strip,
    /// Pingora's path has stripped them already.
    Stripped,
}

pub fn for_upstream(
    req: &mut RequestHeader,
    route: &Route,
    names: &IdentityHeaderNames,
    identity: Option<&Verified>,
    request_id: &HeaderValue,
    client_ip: Option<IpAddr>,
    hops: Hops,
) -> Result<()> {
    // Pingora's own insert re-parses the name and updates a second map that
    // keeps the header case, about 2,500 instructions and three allocations a
    // header. The headers are edited as plain `http` parts instead (names
    // parsed once, room reserved once); header names then go upstream in
    // lower case, or title case for the standard ones.
    let target = match req.uri.path_and_query() {
        Some(pq) if pq.as_str().as_bytes() == req.raw_path() => None,
        _ => Some(req.raw_path().to_vec()),
    };
    let end_stream = req.send_end_stream();
    let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts: Parts = std::mem::replace(req, placeholder).into();
    let headers = &mut parts.headers;
    if hops == Hops::Strip {
        strip_hop_by_hop(headers)?;
    }
    headers.reserve(ADDED);

    for name in names.all() {
        headers.remove(name);
    }
    if let Some(who) = identity {
        for (name, value) in names.all().into_iter().zip(&who.header_values) {
            headers.insert(name.clone(), value.clone());
        }
    }
    if let Some(ip) = client_ip {
        let value = forwarded_for(headers.get(&FORWARDED_FOR), ip)?;
        headers.insert(FORWARDED_FOR, value);
    }
    headers.insert(REQUEST_ID, request_id.clone());
    // The gateway is the edge: what clients claim here is replaced.
    headers.insert(FORWARDED_PROTO, HeaderValue::from_static("http"));
    match headers.get(HOST).cloned() {
        Some(host) => {
            headers.insert(FORWARDED_HOST, host);
        }
        None => {
            headers.remove(FORWARDED_HOST);
        }
    }
    if !route.forward_authorization {
        headers.remove(AUTHORIZATION);
    }

    *req = RequestHeader::from(parts);
    if let Some(end_stream) = end_stream {
        req.set_send_end_stream(end_stream);
    }
    if let Some(target) = target {
        req.set_raw_path(&target)?;
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

/// What the client gets on a proxied answer: the upstream's headers, the
/// request id and the CORS headers. Edited as plain `http` parts, as in
/// `for_upstream` (the response keeps its status; the reason phrase becomes
/// the standard one and header names lose their original case).
pub fn for_downstream(
    resp: &mut ResponseHeader,
    request_id: &HeaderValue,
    cors: &[(&'static str, String)],
) {
    let placeholder = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let mut parts: response::Parts = std::mem::replace(resp, placeholder).into();
    let headers = &mut parts.headers;
    headers.reserve(1 + cors.len());
    headers.insert(REQUEST_ID, request_id.clone());
    for (name, value) in cors {
        let name = HeaderName::from_bytes(name.as_bytes());
        let value = HeaderValue::from_str(value);
        if let (Ok(name), Ok(value)) = (name, value) {
            headers.insert(name, value);
        }
    }
    *resp = ResponseHeader::from(parts);
}
