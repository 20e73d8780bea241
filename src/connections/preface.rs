//! What may come before HTTP/1 on a plain (non-TLS) connection: the PROXY
//! protocol header (`server.proxy_protocol`), then, with `server.h2c`, the
//! HTTP/2 connection preface of a client with prior knowledge. Both are
//! read within `server.header_timeout`; the bytes read past them are put
//! back for the HTTP parser.

use std::time::Duration;

use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::Stream;
use tokio::io::AsyncReadExt;

use super::{proxy_protocol, Edge};

/// The client preface of HTTP/2 (RFC 9113, 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The plain connection `stream`, past what precedes HTTP, and whether it
/// speaks HTTP/2 (h2c); `None`: it is to be closed.
pub(super) async fn plain(stream: Stream, edge: &Edge) -> Option<(Stream, bool)> {
    let mut l4 = stream.into_any().downcast::<L4Stream>().ok()?;
    if edge.proxy_protocol {
        if let Err(why) = proxy_protocol::accept(&mut l4, edge.header_timeout).await {
            tracing::debug!(target: "vigile::edge", why, "connection refused: PROXY protocol");
            return None;
        }
    }
    let h2 = edge.h2c && is_h2c(&mut l4, edge.header_timeout).await?;
    Some((l4, h2))
}

/// Whether the connection opens with the HTTP/2 preface: reads until its
/// bytes differ from it (then HTTP/1) or are all there, and puts them back.
async fn is_h2c(l4: &mut L4Stream, within: Duration) -> Option<bool> {
    let mut seen = Vec::with_capacity(H2_PREFACE.len());
    let read = async {
        let mut buf = [0u8; 24];
        while seen.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&seen) {
            let want = H2_PREFACE.len() - seen.len();
            let n = l4.read(&mut buf[..want]).await.ok()?;
            if n == 0 {
                return None;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        Some(())
    };
    let read = tokio::time::timeout(within, read).await;
    l4.rewind(&seen);
    match read {
        Ok(Some(())) => Some(seen == H2_PREFACE),
        // A client silent past the deadline, or gone.
        _ => None,
    }
}
