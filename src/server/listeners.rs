//! The proxy's listening sockets.

use std::net::SocketAddr;

use crate::config::Config;

/// One listening socket of the proxy (and its TLS twin, with `server.tls`)
/// and the threads that serve it.
pub struct ProxyListener {
    pub addr: String,
    pub tls_addr: Option<String>,
    pub threads: usize,
    pub reuse_port: bool,
}

/// The proxy's listening sockets. Pingora 0.9 accepts a socket's
/// connections on one runtime and hands each to a runtime drawn at random
/// (one per thread without work stealing), while the connection stays
/// registered with the accepting runtime's I/O driver: each of its events
/// then wakes that other thread first. So with several threads and no work
/// stealing, each thread gets a single-threaded service with its own
/// `SO_REUSEPORT` socket on the listen address, and the kernel spreads the
/// connections. Pingora keeps one socket per address string: the address is
/// written with `i` leading zeros on the port (`127.0.0.1:08080` is
/// `127.0.0.1:8080`) to make the strings distinct.
pub fn proxy_listeners(cfg: &Config) -> Vec<ProxyListener> {
    let threads = cfg.server.threads.max(1);
    let tls = cfg.server.tls.as_ref().map(|t| t.listen);
    if threads == 1 || cfg.server.work_stealing {
        return vec![ProxyListener {
            addr: cfg.server.listen.to_string(),
            tls_addr: tls.map(|a| a.to_string()),
            threads,
            reuse_port: false,
        }];
    }
    let mut tls_aliases = tls.map(|a| listen_aliases(a, threads).into_iter());
    listen_aliases(cfg.server.listen, threads)
        .into_iter()
        .map(|addr| ProxyListener {
            addr,
            tls_addr: tls_aliases.as_mut().and_then(Iterator::next),
            threads: 1,
            reuse_port: true,
        })
        .collect()
}

/// `n` distinct spellings of `addr`: the port with 0 to `n - 1` leading zeros.
fn listen_aliases(addr: SocketAddr, n: usize) -> Vec<String> {
    let text = addr.to_string();
    let (host, port) = text.rsplit_once(':').unwrap_or((text.as_str(), ""));
    (0..n)
        .map(|i| format!("{host}:{}{port}", "0".repeat(i)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_aliases_are_distinct_spellings_of_one_address() {
        for addr in ["127.0.0.1:8080", "[::1]:443", "0.0.0.0:65535"] {
            let addr: SocketAddr = addr.parse().expect("addr");
            let aliases = listen_aliases(addr, 4);
            assert_eq!(aliases.len(), 4);
            assert_eq!(aliases[0], addr.to_string());
            let distinct: std::collections::BTreeSet<_> = aliases.iter().collect();
            assert_eq!(distinct.len(), 4);
            for alias in &aliases {
                let parsed: Vec<SocketAddr> =
                    std::net::ToSocketAddrs::to_socket_addrs(alias.as_str())
                        .expect("resolves")
                        .collect();
                assert_eq!(parsed, [addr], "{alias}");
            }
        }
    }
}
