//! Who sent a request: the client's address (`forwarded.rs`: the peer, or
//! what a trusted proxy says) and the scheme it used.

use pingora::proxy::Session;

use crate::forwarded::{Client, TrustedProxies};

/// Who the client of `session` is (`forwarded.rs`): `X-Forwarded-For` is
/// read only when the peer is a trusted proxy.
pub(super) fn client_of(session: &Session, trusted: &TrustedProxies) -> Option<Client> {
    let peer = session.client_addr()?.as_inet()?.ip();
    Some(trusted.client(peer, || {
        session
            .req_header()
            .headers
            .get_all(http::header::HeaderName::from_static("x-forwarded-for"))
            .iter()
            .map(|v| v.as_bytes())
            .collect()
    }))
}

/// The scheme a trusted proxy says its client used (`true`: https): the one
/// `X-Forwarded-Proto` it sent, `http` or `https` (a TLS-terminating
/// balancer's). From any other peer, or anything else (two headers, a
/// list, another word), `None`: the gateway's own listener tells.
pub(super) fn forwarded_proto(session: &Session, trusted: &TrustedProxies) -> Option<bool> {
    if trusted.is_empty() {
        return None;
    }
    let peer = session.client_addr()?.as_inet()?.ip().to_canonical();
    if !trusted.contains(peer) {
        return None;
    }
    let mut values = session
        .req_header()
        .headers
        .get_all(http::header::HeaderName::from_static("x-forwarded-proto"))
        .iter();
    let value = values.next()?.as_bytes().trim_ascii();
    if values.next().is_some() {
        return None;
    }
    if value.eq_ignore_ascii_case(b"https") {
        Some(true)
    } else if value.eq_ignore_ascii_case(b"http") {
        Some(false)
    } else {
        None
    }
}
