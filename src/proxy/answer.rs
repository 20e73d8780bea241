//! What the client gets of an upstream's answer: its hop-by-hop headers
//! removed, the request id and the CORS headers added; for both forwarding
//! paths.

use http::header::CONNECTION;
use http::response;
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::http::ResponseHeader;

use super::mutate::REQUEST_ID;

/// Hop-by-hop headers of an answer. Framing (`Transfer-Encoding`,
/// `Content-Length`) stays: Pingora's writer frames the client's answer by
/// it, and re-encodes.
const ANSWER_HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::TE,
    http::header::TRAILER,
    http::header::UPGRADE,
    HeaderName::from_static("http2-settings"),
];

/// Removes an answer's hop-by-hop headers and those its `Connection`
/// names (except the framing), unless it is the `101` of an upgrade the
/// route allows, whose `Connection` and `Upgrade` the client needs.
fn strip_answer_hop_by_hop(status: http::StatusCode, headers: &mut HeaderMap) {
    if status == http::StatusCode::SWITCHING_PROTOCOLS {
        return;
    }
    // Most answers hold only `Connection: keep-alive` (or `close`), which
    // Pingora's writer replaces with its own: nothing to do then.
    let only_connection = headers
        .keys()
        .all(|k| k == CONNECTION || !ANSWER_HOP_BY_HOP.contains(k));
    if only_connection
        && headers.get_all(CONNECTION).iter().all(|v| {
            v.as_bytes().eq_ignore_ascii_case(b"keep-alive")
                || v.as_bytes().eq_ignore_ascii_case(b"close")
        })
    {
        return;
    }
    let nominated: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
        .filter(|n| *n != http::header::CONTENT_LENGTH && *n != http::header::TRANSFER_ENCODING)
        .collect();
    for name in nominated.iter().chain(&ANSWER_HOP_BY_HOP) {
        headers.remove(name);
    }
}

/// Adds the request id and the CORS headers to an answer's headers.
fn add_answer_headers(
    headers: &mut HeaderMap,
    request_id: &HeaderValue,
    cors: &[(&'static str, String)],
) {
    headers.reserve(1 + cors.len());
    headers.insert(REQUEST_ID, request_id.clone());
    for (name, value) in cors {
        let name = HeaderName::from_bytes(name.as_bytes());
        let value = HeaderValue::from_str(value);
        if let (Ok(name), Ok(value)) = (name, value) {
            headers.insert(name, value);
        }
    }
}

/// What the client gets on a proxied answer: the upstream's headers, the
/// request id and the CORS headers. Edited as plain `http` parts, as in
/// `Forwarding` (the response keeps its status; the reason phrase becomes
/// the standard one and header names lose their original case).
pub fn for_downstream(
    resp: &mut ResponseHeader,
    request_id: &HeaderValue,
    cors: &[(&'static str, String)],
) {
    let placeholder = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let mut parts: response::Parts = std::mem::replace(resp, placeholder).into();
    strip_answer_hop_by_hop(parts.status, &mut parts.headers);
    add_answer_headers(&mut parts.headers, request_id, cors);
    *resp = ResponseHeader::from(parts);
}

/// `for_downstream` for the direct path: the client's answer made from the
/// upstream's, which stays with the upstream session.
pub fn answer_from(
    upstream: &ResponseHeader,
    request_id: &HeaderValue,
    cors: &[(&'static str, String)],
) -> Box<ResponseHeader> {
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = upstream.status;
    parts.version = upstream.version;
    parts.headers = upstream.headers.clone();
    strip_answer_hop_by_hop(parts.status, &mut parts.headers);
    add_answer_headers(&mut parts.headers, request_id, cors);
    Box::new(ResponseHeader::from(parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_of_answers_stay_with_the_gateway() {
        let mut resp = ResponseHeader::build(200, None).expect("response");
        for (name, value) in [
            ("Connection", "keep-alive, X-Hop, Content-Length"),
            ("Keep-Alive", "timeout=5"),
            ("X-Hop", "secret"),
            ("Content-Length", "2"),
            ("Trailer", "X-T"),
            ("Upgrade", "h2c"),
            ("X-Kept", "1"),
        ] {
            resp.append_header(name, value).expect("header");
        }
        let out = answer_from(&resp, &HeaderValue::from_static("id"), &[]);
        for gone in ["connection", "keep-alive", "x-hop", "trailer", "upgrade"] {
            assert!(out.headers.get(gone).is_none(), "{gone} reached the client");
        }
        assert_eq!(
            out.headers.get("content-length").map(|v| v.as_bytes()),
            Some(&b"2"[..])
        );
        assert!(out.headers.get("x-kept").is_some());
        assert!(out.headers.get("x-request-id").is_some());
    }
}
