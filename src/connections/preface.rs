//! What comes before HTTP. On a plain connection: the PROXY protocol header
//! (`server.proxy_protocol`), then, with `server.h2c`, the HTTP/2 preface
//! of a client with prior knowledge. On a TLS connection: the PROXY header,
//! then the client's first handshake record (its ClientHello), then the
//! handshake itself, done here rather than by Pingora's listener: the
//! connection holds its place in `server.max_connections` from its first
//! byte, a client that stalls before HTTP is dropped at the connection's
//! deadline rather than at Pingora's 60 s, and a failed handshake is counted
//! (`vigile_edge_refusals_total`) instead of logged as an error. Every step
//! works to one deadline, `server.header_timeout` from the acceptance, which
//! the first request's head shares (`EdgeStream`); the bytes read are put
//! back for the next layer.

use std::net::SocketAddr;
use tokio::time::Instant;

use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{Stream, ALPN};
use prometheus::IntCounter;
use tokio::io::AsyncReadExt;

use super::{proxy_protocol, Edge};

/// The client preface of HTTP/2 (RFC 9113, 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The plain connection `stream`, past what precedes HTTP, and whether it
/// speaks HTTP/2 (h2c); `None`: it is to be closed.
pub(super) async fn plain(
    stream: Stream,
    edge: &Edge,
    deadline: Instant,
) -> Option<(Stream, bool)> {
    let mut l4 = proxy_header(stream, edge, deadline, false).await?;
    let h2 = edge.h2c && is_h2c(&mut l4, deadline).await?;
    Some((l4, h2))
}

/// The connection's TCP stream, past its PROXY header when the listener
/// requires one; `None`: it is to be closed (the refusal counted, and
/// logged at debug level).
async fn proxy_header(
    stream: Stream,
    edge: &Edge,
    deadline: Instant,
    tls: bool,
) -> Option<Box<L4Stream>> {
    let mut l4 = stream.into_any().downcast::<L4Stream>().ok()?;
    if edge.proxy_protocol {
        if let Err(why) = proxy_protocol::accept(&mut l4, deadline).await {
            tracing::debug!(target: "vigile::edge", why, tls, "connection refused: PROXY protocol");
            if let Some(refusals) = &edge.proxy_protocol_refusals {
                refusals.inc();
            }
            return None;
        }
    }
    Some(l4)
}

/// The largest TLS record a ClientHello comes in (2^14 bytes of content,
/// plus room for padding the protocol allows).
const MAX_RECORD: usize = 16384 + 2048;

/// What the TLS listener adds to its [`Edge`]: its address (the proxy's
/// services take both listeners' connections: the local address tells
/// them apart), the acceptor, and the refusals counted before HTTP.
pub struct TlsEdge {
    pub addr: SocketAddr,
    pub acceptor: Acceptor,
    /// `vigile_edge_refusals_total{reason="tls_client_hello"}`.
    pub client_hello_refusals: IntCounter,
    /// `vigile_edge_refusals_total{reason="tls_handshake"}`.
    pub handshake_refusals: IntCounter,
}

impl TlsEdge {
    /// Whether `stream` came in on this listener: the address it came to is
    /// the listener's, or one its wildcard covers (as `check-config` judges
    /// listeners that would share a port).
    pub(super) fn serves(&self, stream: &Stream) -> bool {
        let local = stream
            .get_socket_digest()
            .and_then(|d| d.local_addr().and_then(|a| a.as_inet()).copied());
        local.is_some_and(|local| crate::config::overlap(self.addr, local))
    }
}

/// A connection of the TLS listener, past the PROXY header (when
/// required), its ClientHello and the handshake, all by `deadline`, and
/// whether ALPN chose HTTP/2; `None`: it is to
/// be closed (the refusal counted, and logged at debug level only: what a
/// scanner or a broken client sends is not the operator's error).
pub(super) async fn tls(
    stream: Stream,
    edge: &Edge,
    tls: &TlsEdge,
    deadline: Instant,
) -> Option<(Stream, bool)> {
    let mut l4 = proxy_header(stream, edge, deadline, true).await?;
    if let Err(why) = first_record(&mut l4, deadline).await {
        tracing::debug!(target: "vigile::edge", why, "TLS connection refused");
        tls.client_hello_refusals.inc();
        return None;
    }
    let handshake = tokio::time::timeout_at(deadline, tls.acceptor.tls_handshake(*l4));
    match handshake.await {
        Ok(Ok(stream)) => {
            let stream: Stream = Box::new(stream);
            let h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
            Some((stream, h2))
        }
        failed => {
            let why = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => "not done within server.header_timeout of the connection's start".into(),
            };
            tracing::debug!(target: "vigile::edge", why, "TLS handshake failed");
            tls.handshake_refusals.inc();
            None
        }
    }
}

/// Waits for the first TLS record (a handshake record: the ClientHello),
/// whole, within `within`, and puts it back.
async fn first_record(l4: &mut L4Stream, deadline: Instant) -> Result<(), String> {
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
    let read = tokio::time::timeout_at(deadline, read).await;
    l4.rewind(&seen);
    read.map_err(|_| {
        "no ClientHello within server.header_timeout of the connection's start".to_string()
    })?
}

/// Whether the connection opens with the HTTP/2 preface: reads until its
/// bytes differ from it (then HTTP/1) or are all there, and puts them back.
async fn is_h2c(l4: &mut L4Stream, deadline: Instant) -> Option<bool> {
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
    let read = tokio::time::timeout_at(deadline, read).await;
    l4.rewind(&seen);
    match read {
        Ok(Some(())) => Some(seen == H2_PREFACE),
        // A client silent past the deadline, or gone.
        _ => None,
    }
}
