//! What comes before HTTP. On a plain connection: the PROXY protocol header
//! (`server.proxy_protocol`), then, with `server.h2c`, the HTTP/2 preface
//! of a client with prior knowledge. On a TLS connection, before the
//! handshake (Pingora's pre-TLS hook): the PROXY header, then the client's
//! first handshake record (its ClientHello), so that a client that connects
//! and says nothing is dropped at `server.header_timeout` rather than at
//! the end of Pingora's 60 s handshake timeout. Each is read within
//! `server.header_timeout`; the bytes read are put back for the next layer.

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
            if let Some(refusals) = &edge.proxy_protocol_refusals {
                refusals.inc();
            }
            return None;
        }
    }
    let h2 = edge.h2c && is_h2c(&mut l4, edge.header_timeout).await?;
    Some((l4, h2))
}

/// The largest TLS record a ClientHello comes in (2^14 bytes of content,
/// plus room for padding the protocol allows).
const MAX_RECORD: usize = 16384 + 2048;

/// What a TLS listener's connections must send before the handshake.
pub struct BeforeTls {
    pub within: Duration,
    pub proxy_protocol: bool,
    /// `vigile_edge_refusals_total` (by reason).
    pub refusals: prometheus::IntCounterVec,
}

#[async_trait::async_trait]
impl pingora::listeners::PreTlsProcess for BeforeTls {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        let refused = |why: String| {
            tracing::debug!(target: "vigile::edge", why, "TLS connection refused");
            pingora::Error::explain(pingora::ErrorType::HandshakeError, why)
        };
        let count = |reason: &str| self.refusals.with_label_values(&[reason]).inc();
        if self.proxy_protocol {
            if let Err(why) = proxy_protocol::accept(stream, self.within).await {
                count("proxy_protocol");
                return Err(refused(format!("PROXY protocol: {why}")));
            }
        }
        first_record(stream, self.within).await.map_err(|why| {
            count("tls_client_hello");
            refused(why)
        })
    }
}

/// Waits for the first TLS record (a handshake record: the ClientHello),
/// whole, within `within`, and puts it back.
async fn first_record(l4: &mut L4Stream, within: Duration) -> Result<(), String> {
    let mut seen = Vec::with_capacity(512);
    let read = async {
        let mut buf = [0u8; 2048];
        loop {
            if let Some(&kind) = seen.first() {
                if kind != 0x16 {
                    return Err("not a TLS handshake".to_string());
                }
            }
            if seen.len() >= 5 {
                let len = 5 + usize::from(u16::from_be_bytes([seen[3], seen[4]]));
                if len > MAX_RECORD {
                    return Err("TLS record too long".to_string());
                }
                if seen.len() >= len {
                    return Ok(());
                }
            }
            let n = l4.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed before its ClientHello".to_string());
            }
            seen.extend_from_slice(&buf[..n]);
        }
    };
    let read = tokio::time::timeout(within, read).await;
    l4.rewind(&seen);
    read.map_err(|_| "no ClientHello within server.header_timeout".to_string())?
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
