//! What every request must be before anything is decided on it: one
//! credential at most, a valid `Host` (RFC 9112, 3.2), and a path that
//! normalizes (`crate::path`). The normalized path is what the account
//! endpoints and the route table see, and what the upstream receives.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{AUTHORIZATION, HOST};
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

/// HTTP/1.1 needs exactly one `Host`, a valid authority without user
/// information; HTTP/1.0 may go without (but not with two).
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

fn valid_host(value: &[u8]) -> bool {
    !value.is_empty()
        && !value.contains(&b'@')
        && std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse::<http::uri::Authority>().ok())
            .is_some_and(|a| {
                // `Authority` takes `gw:port`; a port must be a number.
                let port = a.as_str().strip_prefix(a.host()).unwrap_or("");
                !a.host().is_empty()
                    && (port.is_empty()
                        || port
                            .strip_prefix(':')
                            .is_some_and(|p| p.is_empty() || p.parse::<u16>().is_ok()))
            })
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
        check(req).map_or_else(|e| e.code, |_| "ok")
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
        for bad in ["", "a b", "user@gw", "gw:port", "/x"] {
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
    fn http_1_0_may_omit_the_host() {
        let mut req = request("/api/stocks/", &[]);
        req.set_version(Version::HTTP_10);
        assert_eq!(code(&req), "ok");
    }
}
