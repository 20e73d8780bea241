//! What every request must be before anything is decided on it: one
//! credential at most, a valid `Host` (RFC 9112, 3.2), and a path that
//! normalizes (`crate::path`). The normalized path is what the account
//! endpoints and the route table see, and what the upstream receives.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderName, AUTHORIZATION, CONNECTION, HOST};
use http::Version;
use pingora::http::RequestHeader;

use crate::error::ApiError;
use crate::path;

/// A request that passed the checks.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// The normalized path, when it differs from the path as sent.
    pub path: Option<String>,
    /// The target to send upstream (normalized path and the query as
    /// sent), when it differs from the client's.
    pub upstream_target: Option<Bytes>,
}

/// Refuses what no route may see; says which path and target to use.
pub fn check(req: &RequestHeader) -> Result<Checked, ApiError> {
    let mut authorizations = req.headers.get_all(AUTHORIZATION).iter();
    if authorizations.next().is_some() && authorizations.next().is_some() {
        return Err(ApiError::multiple_authorization());
    }
    check_host(req)?;
    check_connection(req)?;
    if !req.raw_path_is_utf8() {
        return Err(ApiError::invalid_path());
    }
    let sent = req.uri.path();
    let normalized = path::normalize(sent).map_err(|_| ApiError::invalid_path())?;
    let origin_form = req.raw_path().first() == Some(&b'/');
    if origin_form && normalized == sent {
        return Ok(Checked::default());
    }
    let query = req.uri.query();
    let mut target = BytesMut::with_capacity(normalized.len() + query.map_or(0, |q| q.len() + 1));
    target.put_slice(normalized.as_bytes());
    if let Some(query) = query {
        target.put_u8(b'?');
        target.put_slice(query.as_bytes());
    }
    Ok(Checked {
        path: (normalized != sent).then(|| normalized.into_owned()),
        upstream_target: Some(target.freeze()),
    })
}

/// The path routes are matched on: servlet containers (Tomcat, Jetty,
/// Spring) drop each segment's `;parameters` before routing, so
/// `/api/stocks/admin;x/x` is matched as `/api/stocks/admin/x`. The
/// upstream still receives the path with its parameters: a backend that
/// keeps them sees a resource at least as protected as the one decided on.
pub fn route_path(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains(';') {
        return path.into();
    }
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(segment.split(';').next().unwrap_or(segment));
    }
    out.into()
}

/// HTTP/1.1 needs exactly one `Host`, a valid authority without user
/// information; HTTP/1.0 may go without (but not with two).
/// A `Connection` may not name a header the gateway sets for the upstream:
/// the upstream would get the client's word for it, or none. Checked here,
/// for both forwarding paths (Pingora's removes nominated headers before
/// vigile's filters see them).
fn check_connection(req: &RequestHeader) -> Result<(), ApiError> {
    let protected = req
        .headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
        .any(|name| super::mutate::PROTECTED.contains(&name));
    if protected {
        return Err(ApiError::bad_request(400));
    }
    Ok(())
}

fn check_host(req: &RequestHeader) -> Result<(), ApiError> {
    let mut hosts = req.headers.get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if req.version <= Version::HTTP_10 => Ok(()),
        // HTTP/2 carries `:authority`; Pingora fills the URI from it.
        (None, _) if req.version >= Version::HTTP_2 => Ok(()),
        (Some(host), None) if valid_host(host.as_bytes()) => Ok(()),
        _ => Err(ApiError::invalid_host()),
    }
}

/// `host[:port]` (RFC 9110, 7.2): a registered name (unreserved,
/// sub-delimiters, escapes), an IPv4 address, or an IP literal in brackets;
/// a port of digits. No user information.
fn valid_host(value: &[u8]) -> bool {
    let (host, port) = match value.first() {
        Some(b'[') => match value.iter().position(|&b| b == b']') {
            Some(end) => (&value[..=end], &value[end + 1..]),
            None => return false,
        },
        _ => match value.iter().position(|&b| b == b':') {
            Some(colon) => value.split_at(colon),
            None => (value, &[][..]),
        },
    };
    let host_ok = match host {
        [b'[', inner @ .., b']'] => {
            !inner.is_empty()
                && inner
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b":.".contains(&b))
        }
        _ => {
            !host.is_empty()
                && host
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b))
        }
    };
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(target: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", target.as_bytes(), None).expect("request");
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).expect("header");
        }
        req
    }

    fn code(req: &RequestHeader) -> &'static str {
        check(req).map_or_else(|e| e.code.as_str(), |_| "ok")
    }

    #[test]
    fn a_plain_request_keeps_its_target() {
        let req = request("/api/stocks/1?q=%2e%2e", &[("Host", "gw:8080")]);
        assert_eq!(check(&req), Ok(Checked::default()));
    }

    #[test]
    fn a_path_that_normalizes_differently_is_sent_normalized_with_its_query() {
        let req = request("/api/public/%2e%2e/stocks//x?a=..&b=%2F", &[("Host", "gw")]);
        let checked = check(&req).expect("accepted");
        assert_eq!(checked.path.as_deref(), Some("/api/stocks/x"));
        assert_eq!(
            checked.upstream_target.as_deref(),
            Some(&b"/api/stocks/x?a=..&b=%2F"[..])
        );
    }

    #[test]
    fn an_absolute_form_target_is_routed_and_sent_by_its_path() {
        let req = request("http://gw/api/stocks/x?a=1", &[("Host", "gw")]);
        let checked = check(&req).expect("accepted");
        assert_eq!(checked.path, None);
        assert_eq!(
            checked.upstream_target.as_deref(),
            Some(&b"/api/stocks/x?a=1"[..])
        );
    }

    #[test]
    fn bad_paths_hosts_and_credentials_are_refused() {
        assert_eq!(
            code(&request("/api/public/..%2f/x", &[("Host", "gw")])),
            "invalid_path"
        );
        assert_eq!(code(&request("/../x", &[("Host", "gw")])), "invalid_path");
        assert_eq!(code(&request("/api/stocks/", &[])), "invalid_host");
        assert_eq!(
            code(&request("/api/stocks/", &[("Host", "a"), ("Host", "b")])),
            "invalid_host"
        );
        for good in [
            "gw",
            "gw:8080",
            "gw:",
            "127.0.0.1:80",
            "[::1]:8443",
            "a-b.example.com",
        ] {
            assert_eq!(
                code(&request("/api/stocks/", &[("Host", good)])),
                "ok",
                "{good:?}"
            );
        }
        for bad in [
            "",
            "a b",
            "user@gw",
            "gw:port",
            "/x",
            "gw:1:2",
            "[::1",
            "gw:123456",
            "[]",
        ] {
            assert_eq!(
                code(&request("/api/stocks/", &[("Host", bad)])),
                "invalid_host",
                "{bad:?}"
            );
        }
        assert_eq!(
            code(&request(
                "/api/stocks/",
                &[
                    ("Host", "gw"),
                    ("Authorization", "Basic eDp5"),
                    ("Authorization", "Bearer forged")
                ]
            )),
            "invalid_authorization"
        );
    }

    #[test]
    fn routes_are_matched_without_path_parameters() {
        assert_eq!(route_path("/api/stocks/admin;x/x"), "/api/stocks/admin/x");
        assert_eq!(
            route_path("/api/stocks/admin;/x;a=1"),
            "/api/stocks/admin/x"
        );
        assert_eq!(route_path("/api/stocks/%3Bx"), "/api/stocks/%3Bx");
        assert!(matches!(
            route_path("/api/x"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn http_1_0_may_omit_the_host() {
        let mut req = request("/api/stocks/", &[]);
        req.set_version(Version::HTTP_10);
        assert_eq!(code(&req), "ok");
    }
}
