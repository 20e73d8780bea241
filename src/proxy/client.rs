//! Who sent a request: the client's address (`forwarded.rs`: the peer, or
//! what a trusted proxy says).

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
