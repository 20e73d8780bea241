//! The PROXY protocol (`server.proxy_protocol: true`): a load balancer opens
//! each connection with a header naming the client (v1, text, or v2,
//! binary; HAProxy's `proxy-protocol.txt`). It is read before anything else
//! (before the TLS handshake on a TLS listener), by the connection's
//! deadline (`server.header_timeout` from its acceptance) and within a
//! bounded size; a connection without a valid
//! one is closed. The client's address then stands as the connection's peer
//! address for everything above (throttles, access log, `X-Forwarded-For`).
//! A `LOCAL` header (the balancer's own health check) or an `UNKNOWN` /
//! unspecified family keeps the real peer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::io::AsRawFd;
use tokio::time::Instant;

use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest};
use tokio::io::AsyncReadExt;

/// The v2 signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 line is at most 107 bytes, `\r\n` included.
const V1_MAX: usize = 107;
/// Most bytes of a v2 header vigile accepts (addresses and TLVs); the
/// format allows 64 KiB, balancers send a few hundred bytes at most.
const V2_MAX: usize = 4096;

/// A header parsed from the start of a connection.
#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    /// Its length in bytes (what follows is the client's).
    pub len: usize,
    /// The client's address; `None`: keep the connection's own peer.
    pub source: Option<SocketAddr>,
}

/// What the bytes read so far make.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Complete(Header),
    Incomplete,
    Invalid(&'static str),
}

/// Parses the header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    const V1: &[u8] = b"PROXY ";
    let n = buf.len().min(V1.len());
    if buf[..n] == V1[..n] {
        return if n < V1.len() {
            Parsed::Incomplete
        } else {
            parse_v1(buf)
        };
    }
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return if n < V2_SIGNATURE.len() {
            Parsed::Incomplete
        } else {
            parse_v2(buf)
        };
    }
    Parsed::Invalid("no PROXY protocol header")
}

fn parse_v1(buf: &[u8]) -> Parsed {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Parsed::Invalid("v1 line too long")
        } else {
            Parsed::Incomplete
        };
    };
    let Ok(line) = std::str::from_utf8(&buf[6..end]) else {
        return Parsed::Invalid("v1 line not ASCII");
    };
    let fields: Vec<&str> = line.split(' ').collect();
    let source = match fields.as_slice() {
        ["UNKNOWN", ..] => None,
        ["TCP4", src, dst, sport, dport] => match v1_source::<Ipv4Addr>(src, dst, sport, dport) {
            Some(source) => Some(source),
            None => return Parsed::Invalid("v1 TCP4 fields"),
        },
        ["TCP6", src, dst, sport, dport] => match v1_source::<Ipv6Addr>(src, dst, sport, dport) {
            Some(source) => Some(source),
            None => return Parsed::Invalid("v1 TCP6 fields"),
        },
        _ => return Parsed::Invalid("v1 protocol or field count"),
    };
    Parsed::Complete(Header {
        len: end + 2,
        source,
    })
}

/// The source of a v1 line's fields, both addresses of family `T`.
fn v1_source<T>(src: &str, dst: &str, sport: &str, dport: &str) -> Option<SocketAddr>
where
    T: std::str::FromStr + Into<IpAddr>,
{
    let (Ok(src), Ok(_), Some(sport), Some(_)) =
        (src.parse::<T>(), dst.parse::<T>(), port(sport), port(dport))
    else {
        return None;
    };
    Some(SocketAddr::new(src.into(), sport))
}

/// A decimal port, 0 to 65535, without sign or leading zero.
fn port(text: &str) -> Option<u16> {
    let digits = !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    if !digits || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    text.parse().ok()
}

fn parse_v2(buf: &[u8]) -> Parsed {
    if buf.len() < 16 {
        return Parsed::Incomplete;
    }
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0f);
    if version != 2 {
        return Parsed::Invalid("v2 version");
    }
    let (family, transport) = (buf[13] >> 4, buf[13] & 0x0f);
    let len = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if len > V2_MAX {
        return Parsed::Invalid("v2 header too long");
    }
    if command > 1 || transport > 2 || family > 3 {
        return Parsed::Invalid("v2 command, family or transport");
    }
    // A PROXY command names one of the listed pairs: UNSPEC, or a family
    // with a transport (TCP or UDP); others "must be rejected as invalid".
    // LOCAL ignores the family.
    if command == 1 && (family == 0) != (transport == 0) {
        return Parsed::Invalid("v2 family and transport not a listed pair");
    }
    if buf.len() < len {
        return Parsed::Incomplete;
    }
    let body = &buf[16..len];
    let source = match (command, family) {
        // LOCAL: the balancer's own connection; an unspecified or UNIX
        // family: no IP client to name.
        (0, _) | (1, 0) | (1, 3) => None,
        (1, 1) => {
            let Some(a) = body.get(..12) else {
                return Parsed::Invalid("v2 IPv4 addresses truncated");
            };
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Some(SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]])))
        }
        _ => {
            let Some(a) = body.get(..36) else {
                return Parsed::Invalid("v2 IPv6 addresses truncated");
            };
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            let ip = Ipv6Addr::from(octets).to_canonical();
            Some(SocketAddr::new(ip, u16::from_be_bytes([a[32], a[33]])))
        }
    };
    if family == 3 && command == 1 && body.len() < 216 {
        return Parsed::Invalid("v2 UNIX addresses truncated");
    }
    Parsed::Complete(Header { len, source })
}

/// Reads the header at the start of `stream` by `deadline`, leaves what
/// follows it to be read next, and makes its source the stream's peer
/// address. An error: the connection is to be closed.
pub async fn accept(stream: &mut L4Stream, deadline: Instant) -> Result<(), String> {
    let read = async {
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 512];
        loop {
            match parse(&buf) {
                Parsed::Complete(header) => return Ok((header, buf)),
                Parsed::Invalid(why) => return Err(why.to_string()),
                Parsed::Incomplete => {}
            }
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("reading the PROXY header: {e}"))?;
            if n == 0 {
                return Err("connection closed within the PROXY header".into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let (header, buf) = tokio::time::timeout_at(deadline, read)
        .await
        .map_err(|_| {
            "no PROXY header within server.header_timeout of the connection's start".to_string()
        })??;
    stream.rewind(&buf[header.len..]);
    if let Some(source) = header.source {
        let digest = SocketDigest::from_raw_fd(stream.as_raw_fd());
        let _ = digest.peer_addr.set(Some(source.into()));
        if let Some(local) = stream
            .get_socket_digest()
            .and_then(|d| d.local_addr().cloned())
        {
            let _ = digest.local_addr.set(Some(local));
        }
        stream.set_socket_digest(digest);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(buf: &[u8]) -> Parsed {
        parse(buf)
    }

    fn complete(len: usize, source: Option<&str>) -> Parsed {
        Parsed::Complete(Header {
            len,
            source: source.map(|s| s.parse().expect("addr")),
        })
    }

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&u16::try_from(body.len()).expect("len").to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn v1_lines_name_the_client() {
        let line = b"PROXY TCP4 198.51.100.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(source(line), complete(44, Some("198.51.100.7:51234")));
        let line = b"PROXY TCP6 2001:db8::7 2001:db8::1 1 443\r\n";
        assert_eq!(source(line), complete(line.len(), Some("[2001:db8::7]:1")));
        let line = b"PROXY UNKNOWN whatever\r\n";
        assert_eq!(source(line), complete(line.len(), None));
        assert_eq!(source(b"PROXY UNKNOWN\r\n"), complete(15, None));
        for partial in [&b""[..], b"PRO", b"PROXY TCP4 1.2.3.4", b"\r\n\r\n\0"] {
            assert_eq!(source(partial), Parsed::Incomplete, "{partial:?}");
        }
    }

    #[test]
    fn v1_refuses_bad_fields() {
        for bad in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \xff\r\n",
            b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        ] {
            assert!(matches!(source(bad), Parsed::Invalid(_)), "{bad:?}");
        }
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 200]].concat();
        assert!(matches!(source(&long), Parsed::Invalid(_)));
    }

    #[test]
    fn v2_headers_name_the_client() {
        let mut body = vec![198, 51, 100, 7, 10, 0, 0, 1];
        body.extend_from_slice(&51234u16.to_be_bytes());
        body.extend_from_slice(&443u16.to_be_bytes());
        let header = v2(1, 0x11, &body);
        assert_eq!(source(&header), complete(28, Some("198.51.100.7:51234")));
        // TLVs after the addresses are skipped with the header.
        let mut with_tlv = body.clone();
        with_tlv.extend_from_slice(&[0x04, 0x00, 0x02, b'a', b'b']);
        let header = [v2(1, 0x11, &with_tlv), b"GET".to_vec()].concat();
        assert_eq!(source(&header), complete(33, Some("198.51.100.7:51234")));
        let mut six = [0u8; 36];
        six[..16].copy_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().expect("v6").octets());
        six[32..34].copy_from_slice(&8443u16.to_be_bytes());
        assert_eq!(
            source(&v2(1, 0x21, &six)),
            complete(52, Some("[2001:db8::7]:8443"))
        );
        // LOCAL (a health check), even with addresses: the real peer.
        assert_eq!(source(&v2(0, 0x11, &body)), complete(28, None));
        assert_eq!(source(&v2(0, 0x00, &[])), complete(16, None));
        assert_eq!(source(&v2(1, 0x00, &[])), complete(16, None));
        assert_eq!(source(&v2(0, 0x10, &body)), complete(28, None));
        // The announced length not yet all there.
        let header = v2(1, 0x11, &body);
        assert_eq!(source(&header[..20]), Parsed::Incomplete);
    }

    #[test]
    fn v2_refuses_lies_and_unknown_values() {
        let mut wrong_version = v2(1, 0x11, &[0; 12]);
        wrong_version[12] = 0x11;
        let mut too_long = v2(1, 0x11, &[0; 12]);
        too_long[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        for bad in [
            wrong_version,
            too_long,
            v2(2, 0x11, &[0; 12]),
            v2(1, 0x41, &[0; 12]),
            v2(1, 0x13, &[0; 12]),
            v2(1, 0x11, &[0; 11]),
            v2(1, 0x21, &[0; 12]),
            v2(1, 0x31, &[0; 12]),
            v2(1, 0x10, &[0; 12]),
            v2(1, 0x20, &[0; 36]),
            v2(1, 0x01, &[0; 12]),
            v2(1, 0x02, &[]),
        ] {
            assert!(matches!(source(&bad), Parsed::Invalid(_)), "{bad:?}");
        }
    }
}
