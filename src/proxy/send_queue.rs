//! What the kernel holds for an upstream connection: its send queue (bytes
//! written that the upstream has not acknowledged yet, sent or not) and its
//! receive queue (bytes the upstream sent that the gateway has not read
//! yet), the `tx_queue` and `rx_queue` columns of `/proc/self/net/tcp`
//! (`tcp6` for IPv6), found by the connection's local and peer addresses.
//! Read only when a deadline of `deadline.rs` passes, never on a request's
//! way.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, Ipv6Addr};

use nix::sys::socket::SockaddrStorage;

/// The two queues of a connection, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queues {
    /// Written, not acknowledged by the peer.
    pub unsent: u64,
    /// Received, not read.
    pub unread: u64,
}

/// The queues of the connection from `local` to `peer`, or `None` if they
/// cannot be told (no such socket, `/proc` unreadable).
pub fn queues(local: &SockaddrStorage, peer: &SockaddrStorage) -> Option<Queues> {
    let (file, local, peer) =
        if let (Some(l), Some(p)) = (local.as_sockaddr_in(), peer.as_sockaddr_in()) {
            (
                "/proc/self/net/tcp",
                v4(l.ip(), l.port()),
                v4(p.ip(), p.port()),
            )
        } else {
            let (l, p) = (local.as_sockaddr_in6()?, peer.as_sockaddr_in6()?);
            (
                "/proc/self/net/tcp6",
                v6(l.ip(), l.port()),
                v6(p.ip(), p.port()),
            )
        };
    let reader = BufReader::new(std::fs::File::open(file).ok()?);
    reader
        .lines()
        .skip(1)
        .map_while(Result::ok)
        .find_map(|line| {
            let mut fields = line.split_whitespace().skip(1);
            let (l, p) = (fields.next()?, fields.next()?);
            if !(l.eq_ignore_ascii_case(&local) && p.eq_ignore_ascii_case(&peer)) {
                return None;
            }
            let (tx, rx) = fields.nth(1)?.split_once(':')?;
            Some(Queues {
                unsent: u64::from_str_radix(tx, 16).ok()?,
                unread: u64::from_str_radix(rx, 16).ok()?,
            })
        })
}

/// An IPv4 socket address as `/proc/net/tcp` writes it: the address's four
/// bytes read as one number of this machine's byte order, then the port.
fn v4(ip: Ipv4Addr, port: u16) -> String {
    format!("{:08X}:{port:04X}", u32::from_ne_bytes(ip.octets()))
}

/// An IPv6 socket address as `/proc/net/tcp6` writes it: four numbers of
/// this machine's byte order, then the port.
fn v6(ip: Ipv6Addr, port: u16) -> String {
    let o = ip.octets();
    let mut text = String::with_capacity(37);
    for word in o.chunks_exact(4) {
        let word = [word[0], word[1], word[2], word[3]];
        text.push_str(&format!("{:08X}", u32::from_ne_bytes(word)));
    }
    text.push_str(&format!(":{port:04X}"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{getpeername, getsockname};
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::io::AsRawFd;
    use std::time::{Duration, Instant};

    fn queues_of(stream: &TcpStream) -> Option<Queues> {
        let fd = stream.as_raw_fd();
        let local: SockaddrStorage = getsockname(fd).ok()?;
        let peer: SockaddrStorage = getpeername(fd).ok()?;
        queues(&local, &peer)
    }

    fn queue_of(stream: &TcpStream) -> Option<u64> {
        queues_of(stream).map(|q| q.unsent)
    }

    #[test]
    fn the_queues_hold_what_the_peer_has_not_read() {
        for bind in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(listener) = TcpListener::bind(bind) else {
                continue; // no IPv6 here
            };
            let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
            let (mut server, _) = listener.accept().expect("accept");
            assert_eq!(queue_of(&client), Some(0), "{bind}: nothing written");
            // More than the peer's receive buffer takes: the rest waits.
            client.set_nonblocking(true).expect("nonblocking");
            let chunk = vec![b'x'; 1 << 16];
            let mut written = 0;
            while written < 64 << 20 {
                match (&client).write(&chunk) {
                    Ok(n) => written += n,
                    Err(_) => break,
                }
            }
            let waiting = queue_of(&client).expect("found");
            assert!(waiting > 0, "{bind}: {waiting} of {written} waiting");
            let unread = queues_of(&server).expect("found").unread;
            assert!(unread > 0, "{bind}: the server has {unread} bytes to read");
            // Once the peer has read everything, nothing waits.
            let mut sink = vec![0u8; 1 << 20];
            let mut read = 0;
            let deadline = Instant::now() + Duration::from_secs(10);
            while read < written && Instant::now() < deadline {
                read += server.read(&mut sink).expect("read");
            }
            let drained = Instant::now() + Duration::from_secs(2);
            while queue_of(&client) != Some(0) && Instant::now() < drained {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(queue_of(&client), Some(0), "{bind}");
        }
    }
}
