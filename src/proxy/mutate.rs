//! The third stage of the proxy path: what the upstream gets. Client-sent
//! identity headers are removed on every route (whatever their case, however
//! often repeated) before the gateway sets its own; the request id and
//! `X-Forwarded-For` are set; `Authorization` is dropped when the route says so.

use std::cell::RefCell;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{AUTHORIZATION, CONNECTION, HOST};
use http::request::Parts;

use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use pingora::{Error, ErrorType, Result};

use crate::config::{AuthMode, IdentityHeaders, UnderscoreHeaders};
use crate::forwarded::Client;
use crate::routes::Route;
use crate::tokens::Verified;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const FORWARDED: HeaderName = http::header::FORWARDED;
/// What clients may claim about the proxy chain, their address, their
/// scheme or the original request: never passed on (some backends take
/// `X-Original-URL` or `X-Forwarded-Prefix` for the path, CDN conventions
/// such as `True-Client-IP` or `CF-Connecting-IP` for the client, Rack's
/// `X-Forwarded-Ssl` for the scheme). Lower case, as header names are.
fn is_client_claim(name: &str) -> bool {
    matches!(
        name,
        "x-real-ip"
            | "forwarded"
            | "x-original-url"
            | "x-rewrite-url"
            | "x-forwarded-prefix"
            | "x-forwarded-port"
            | "x-forwarded-server"
            | "true-client-ip"
            | "cf-connecting-ip"
            | "fastly-client-ip"
            | "x-client-ip"
            | "x-cluster-client-ip"
            | "client-ip"
            | "x-originating-ip"
            | "x-forwarded"
            | "forwarded-for"
            | "x-remote-ip"
            | "x-remote-addr"
            | "x-forwarded-ssl"
            | "x-forwarded-scheme"
            | "x-url-scheme"
            | "front-end-https"
    )
}

/// Whether `name` is one the gateway sets itself (besides the identity
/// headers): a client's underscore twin of it never passes.
fn is_set_by_gateway(name: &str) -> bool {
    matches!(
        name,
        "x-forwarded-for" | "x-forwarded-host" | "x-forwarded-proto" | "x-request-id"
    )
}

/// The headers the gateway adds to a request at most (four identity headers,
/// request id, three `X-Forwarded-*`, `X-Real-IP`, `Host`).
const ADDED: usize = 10;

/// The configured identity header names, parsed once, and what becomes of
/// other client header names holding `_`.
pub struct IdentityHeaderNames {
    user_id: HeaderName,
    email: HeaderName,
    role: HeaderName,
    session_id: HeaderName,
    drop_underscore: bool,
}

impl IdentityHeaderNames {
    pub fn new(cfg: &IdentityHeaders, underscore: UnderscoreHeaders) -> IdentityHeaderNames {
        IdentityHeaderNames {
            user_id: cfg.user_id.clone(),
            email: cfg.email.clone(),
            role: cfg.role.clone(),
            session_id: cfg.session_id.clone(),
            drop_underscore: underscore == UnderscoreHeaders::Drop,
        }
    }

    fn all(&self) -> [&HeaderName; 4] {
        [&self.user_id, &self.email, &self.role, &self.session_id]
    }

    /// Whether a client header named `name` (which holds `_`) must not
    /// reach the upstream: a WSGI/CGI backend reads `X_User_Id` as
    /// `X-User-Id`, so the underscore twin of an identity header, of a
    /// header the gateway sets (`X_Forwarded_For`...) or of a client claim
    /// (`X_Real_IP`, `True_Client_IP`...) never passes; other names with
    /// `_` pass only when configured so.
    fn drops_underscored(&self, name: &HeaderName) -> bool {
        if self.drop_underscore {
            return true;
        }
        let twin = name.as_str().replace('_', "-");
        is_client_claim(&twin)
            || is_set_by_gateway(&twin)
            || self.all().iter().any(|identity| {
                let (a, b) = (name.as_str().as_bytes(), identity.as_str().as_bytes());
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|(x, y)| x == y || (*x == b'_' && *y == b'-'))
            })
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

/// `X-Forwarded-For`: the client's address after what earlier proxies (or
/// the client) wrote, every header of it in order, as one header.
fn forwarded_for<'v>(
    earlier: impl Iterator<Item = &'v HeaderValue>,
    ip: IpAddr,
) -> Result<HeaderValue> {
    let mut earlier = earlier
        .map(|v| v.as_bytes().trim_ascii())
        .filter(|e| !e.is_empty())
        .peekable();
    if earlier.peek().is_none() {
        return Ok(address_value(ip));
    }
    let mut text = [0u8; 48];
    let ip = address_text(ip, &mut text);
    let mut buffer = BytesMut::with_capacity(64);
    for value in earlier {
        buffer.put_slice(value);
        buffer.put_slice(b", ");
    }
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
/// Headers a client may not name in `Connection` (the request is refused,
/// as Pingora's own path does): removing them would send the upstream a
/// request without its `Host`, or hide the gateway's own headers.
pub(super) const PROTECTED: [HeaderName; 6] = [
    HOST,
    FORWARDED_FOR,
    FORWARDED_HOST,
    FORWARDED_PROTO,
    REAL_IP,
    FORWARDED,
];

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
        let name = HeaderName::from_bytes(token).ok();
        if name.as_ref().is_some_and(|n| PROTECTED.contains(n)) {
            return Err(Error::explain(
                ErrorType::InvalidHTTPHeader,
                "a protected header named in Connection",
            ));
        }
        *slot = name;
    }
    for name in nominated.iter().flatten() {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    Ok(())
}

/// Whether `headers` hold a hop-by-hop header (most requests hold none:
/// one pass over the names is cheaper than a hash probe per listed name).
fn has_hop_by_hop(headers: &HeaderMap) -> bool {
    headers.keys().any(|k| HOP_BY_HOP.contains(k))
}

/// What the gateway adds to a request on its way to the upstream: identity
/// headers (client-sent copies removed first), request id, `X-Forwarded-*`;
/// `Authorization` dropped when the route says so; the route's prefix
/// stripped.
///
/// Pingora's own insert re-parses the name and updates a second map that
/// keeps the header case (its cost: `benches/README.md`, "Instructions per
/// proxied request"). The headers are edited as plain `http` parts instead (names
/// parsed once, room reserved once); header names then go upstream in lower
/// case, or title case for the standard ones.
pub struct Forwarding<'a> {
    pub route: &'a Route,
    pub names: &'a IdentityHeaderNames,
    pub identity: Option<&'a Verified>,
    pub request_id: &'a HeaderValue,
    /// Who the client is (`forwarded.rs`): its address and what the
    /// upstream's `X-Forwarded-For` says.
    pub client: Option<&'a Client>,
    /// The client came over TLS (`X-Forwarded-Proto: https`).
    pub https: bool,
    /// The target to send instead of the client's (its path normalized).
    pub target: Option<&'a [u8]>,
    /// The upstream's address, the `Host` of a request that came without.
    pub upstream: Option<SocketAddr>,
}

impl Forwarding<'_> {
    /// Pingora's path: edits the request Pingora made from the client's
    /// (hop-by-hop headers already gone).
    pub fn apply(&self, req: &mut RequestHeader) -> Result<()> {
        let target = self.target_for(req);
        let end_stream = req.send_end_stream();
        let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
        let mut parts: Parts = std::mem::replace(req, placeholder).into();
        self.edit(&mut parts.headers)?;
        *req = self.finish(parts, target)?;
        if let Some(end_stream) = end_stream {
            req.set_send_end_stream(end_stream);
        }
        Ok(())
    }

    /// The direct path: the upstream request, HTTP/1.1, made from the
    /// client's without copying what is then removed, hop-by-hop headers
    /// (and those `Connection` names) removed.
    pub fn build(&self, req: &RequestHeader) -> Result<Box<RequestHeader>> {
        let mut parts = http::Request::new(()).into_parts().0;
        parts.method = req.method.clone();
        parts.uri = req.uri.clone();
        parts.version = http::Version::HTTP_11;
        parts.headers = req.headers.clone();
        if req.version == http::Version::HTTP_2 {
            // HTTP/2's `:authority` is HTTP/1.1's `Host` (Pingora refused
            // a `host` that differs), and the target is the origin form.
            if let Some(authority) = req.uri.authority() {
                if !parts.headers.contains_key(HOST) {
                    let host = HeaderValue::from_str(authority.as_str()).map_err(|_| {
                        Error::explain(ErrorType::InvalidHTTPHeader, "bad :authority")
                    })?;
                    parts.headers.insert(HOST, host);
                }
            }
            parts.uri = req
                .uri
                .path_and_query()
                .cloned()
                .map_or_else(|| http::Uri::from_static("/"), http::Uri::from);
        }
        if has_hop_by_hop(&parts.headers) {
            strip_hop_by_hop(&mut parts.headers)?;
        }
        self.edit(&mut parts.headers)?;
        Ok(Box::new(self.finish(parts, self.target_for(req))?))
    }

    /// The target to send when it is not what the parsed URI would write:
    /// the normalized one, else the client's as sent.
    fn target_for(&self, req: &RequestHeader) -> Option<Vec<u8>> {
        self.target.map(<[u8]>::to_vec).or_else(|| raw_target(req))
    }

    fn edit(&self, headers: &mut HeaderMap) -> Result<()> {
        headers.reserve(ADDED);
        let names = self.names.all();
        // One pass over the names finds what most requests do not hold.
        let (mut identity, mut underscored, mut proxy_claims) = (false, false, false);
        for key in headers.keys() {
            identity |= names.contains(&key);
            underscored |= key.as_str().contains('_');
            proxy_claims |= is_client_claim(key.as_str());
        }
        if identity {
            for name in names {
                headers.remove(name);
            }
        }
        if underscored {
            let dropped: Vec<HeaderName> = headers
                .keys()
                .filter(|k| k.as_str().contains('_') && self.names.drops_underscored(k))
                .cloned()
                .collect();
            for name in &dropped {
                headers.remove(name);
            }
        }
        if proxy_claims {
            // The gateway is the edge: what clients claim here is not passed on.
            let claims: Vec<HeaderName> = headers
                .keys()
                .filter(|k| is_client_claim(k.as_str()))
                .cloned()
                .collect();
            for name in &claims {
                headers.remove(name);
            }
        }
        if let Some(who) = self.identity {
            let values = names.into_iter().zip(&who.header_values);
            for (name, value) in values.filter(|(_, value)| !value.is_empty()) {
                headers.insert(name.clone(), value.clone());
            }
        }
        if let Some(client) = self.client {
            let value = match &client.forwarded_for {
                // From a trusted proxy: the chain up to the client.
                Some(chain) => HeaderValue::from_bytes(chain)
                    .map_err(|_| Error::explain(ErrorType::InternalError, "bad X-Forwarded-For"))?,
                None => forwarded_for(headers.get_all(&FORWARDED_FOR).iter(), client.ip)?,
            };
            headers.insert(FORWARDED_FOR, value);
            headers.insert(REAL_IP, address_value(client.ip));
        }
        headers.insert(REQUEST_ID, self.request_id.clone());
        // The gateway is the edge: what clients claim here is replaced.
        let proto = if self.https { "https" } else { "http" };
        headers.insert(FORWARDED_PROTO, HeaderValue::from_static(proto));
        match headers.get(HOST).cloned() {
            Some(host) => {
                headers.insert(FORWARDED_HOST, host);
            }
            None => {
                headers.remove(FORWARDED_HOST);
                // HTTP/1.0 may come without `Host`; the upstream's request
                // is HTTP/1.1, which needs one.
                // (Rare: the address is formatted then.)
                if let Some(addr) = self.upstream {
                    if let Ok(host) = HeaderValue::from_str(&addr.to_string()) {
                        headers.insert(HOST, host);
                    }
                }
            }
        }
        // Only the credential the gateway checked goes on: on a route that
        // checks tokens, a request without a verified one (anonymous on an
        // optional route, another scheme) carries none upstream.
        let checked = self.route.auth == AuthMode::None || self.identity.is_some();
        if !self.route.forward_authorization || !checked {
            headers.remove(AUTHORIZATION);
        }
        Ok(())
    }

    /// The request header from edited parts: the client's request target
    /// kept byte for byte (when the URI parser normalised it), the route's
    /// prefix stripped.
    fn finish(&self, parts: Parts, target: Option<Vec<u8>>) -> Result<RequestHeader> {
        let mut req = RequestHeader::from(parts);
        if let Some(target) = target {
            req.set_raw_path(&target)?;
        }
        if self.route.strip_prefix {
            let path_and_query = req.uri.path_and_query().map_or("/", |p| p.as_str());
            let stripped = self.route.upstream_path(path_and_query);
            if let Ok(uri) = stripped.parse() {
                req.set_uri(uri);
            }
        }
        Ok(req)
    }
}

/// The client's request target when it differs from what the parsed URI
/// would write.
fn raw_target(req: &RequestHeader) -> Option<Vec<u8>> {
    match req.uri.path_and_query() {
        Some(pq) if pq.as_str().as_bytes() == req.raw_path() => None,
        _ => Some(req.raw_path().to_vec()),
    }
}

#[cfg(test)]
mod tests;
