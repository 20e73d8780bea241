//! The real client address behind a load balancer (`server.trusted_proxies`).
//!
//! From a TCP peer (or PROXY protocol source) that is not a trusted proxy,
//! the client is that peer, whatever `X-Forwarded-For` says. From a trusted
//! one, the client is the rightmost `X-Forwarded-For` address that is not
//! itself trusted: each trusted hop vouches only for the address on its left,
//! which it saw; everything further left is what the client claimed. No
//! other header (`X-Real-IP`, `Forwarded`) is read.
//!
//! Nothing here knows Pingora: the proxy passes the peer and the header
//! values, and gets the address and what the upstream's `X-Forwarded-For`
//! should say.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Most `X-Forwarded-For` entries looked at from the right: a longer chain
/// of trusted hops stops at the last one seen.
const MAX_HOPS: usize = 32;

/// A network, `10.0.0.0/8` or `2001:db8::/32` (a bare address is a /32 or
/// a /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in this network (IPv4-mapped IPv6 addresses count as
    /// their IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask_v4(u32::from(ip), self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask_v6(u128::from(ip), self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask_v4(bits: u32, prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        bits & (u32::MAX << (32 - u32::from(prefix)))
    }
}

fn mask_v6(bits: u128, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        bits & (u128::MAX << (128 - u32::from(prefix)))
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// Host bits set (`10.0.0.1/8`) are refused: they usually mean a typo.
    fn from_str(text: &str) -> Result<Cidr, String> {
        let bad = || format!("`{text}` is not a network such as 10.0.0.0/8 or 2001:db8::/32");
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| bad())?;
        let network = network.to_canonical();
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 3 => {
                p.parse::<u8>().map_err(|_| bad())?
            }
            Some(_) => return Err(bad()),
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        let masked = match network {
            IpAddr::V4(ip) => IpAddr::V4(Ipv4Addr::from(mask_v4(u32::from(ip), prefix))),
            IpAddr::V6(ip) => IpAddr::V6(Ipv6Addr::from(mask_v6(u128::from(ip), prefix))),
        };
        if masked != network {
            return Err(format!(
                "`{text}` has host bits set: write {masked}/{prefix}"
            ));
        }
        Ok(Cidr { network, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// `server.trusted_proxies`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<Cidr>);

/// Where the client address came from, and so what the upstream's
/// `X-Forwarded-For` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub ip: IpAddr,
    /// From a trusted proxy: the `X-Forwarded-For` the upstream gets, the
    /// received entries up to the client's (the trusted hops to its right
    /// are the edge's own). `None`: the peer is the client, and its address
    /// is appended to what the client sent.
    pub forwarded_for: Option<Vec<u8>>,
}

impl TrustedProxies {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client of a request from `peer` carrying the `X-Forwarded-For`
    /// values `headers` gives (in the order received). The header is read
    /// only when `peer` is trusted.
    pub fn client<'a>(&self, peer: IpAddr, headers: impl FnOnce() -> Vec<&'a [u8]>) -> Client {
        let peer = peer.to_canonical();
        if self.is_empty() || !self.contains(peer) {
            return Client {
                ip: peer,
                forwarded_for: None,
            };
        }
        let headers = headers();
        // From the right: the last address a trusted hop vouched for.
        let mut client = peer;
        // Where the client's entry ends: (header index from the right, end).
        let mut cut: Option<(usize, usize)> = None;
        let mut hops = 0;
        'scan: for (from_right, value) in headers.iter().rev().enumerate() {
            let mut end = value.len();
            loop {
                let start = value[..end]
                    .iter()
                    .rposition(|&b| b == b',')
                    .map_or(0, |i| i + 1);
                let entry = value[start..end].trim_ascii();
                if !entry.is_empty() {
                    hops += 1;
                    let Some(ip) = parse_entry(entry) else {
                        // A trusted hop wrote no address: trust stops there.
                        break 'scan;
                    };
                    client = ip;
                    cut = Some((from_right, end));
                    if !self.contains(ip) || hops >= MAX_HOPS {
                        break 'scan;
                    }
                }
                if start == 0 {
                    break;
                }
                end = start - 1;
            }
        }
        let forwarded_for = cut.map(|(from_right, end)| {
            let keep = headers.len() - from_right;
            let mut text = Vec::new();
            for (i, value) in headers[..keep].iter().enumerate() {
                let part = if i + 1 == keep { &value[..end] } else { value };
                let part = part.trim_ascii();
                if part.is_empty() {
                    continue;
                }
                if !text.is_empty() {
                    text.extend_from_slice(b", ");
                }
                text.extend_from_slice(part);
            }
            text
        });
        Client {
            ip: client,
            forwarded_for,
        }
    }
}

/// The key the throttles count a client by: an IPv4 address, or the /64
/// of an IPv6 one (one host holds a whole /64 and may take a new address
/// from it for each request; an IPv4-mapped address counts as its IPv4).
pub fn throttle_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let network = Ipv6Addr::from(mask_v6(u128::from(v6), 64));
            format!("{network}/64")
        }
    }
}

/// One `X-Forwarded-For` entry: `192.0.2.1`, `192.0.2.1:443`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:443`; anything else (`unknown`,
/// obfuscated names) is not an address.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?;
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return inside
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| IpAddr::V6(ip).to_canonical());
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let (addr, port) = text.split_once(':')?;
    if !is_port(port) {
        return None;
    }
    addr.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(text: &str) -> bool {
    (1..=5).contains(&text.len()) && text.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies(list.iter().map(|c| c.parse().expect("cidr")).collect())
    }

    fn client(t: &TrustedProxies, peer: &str, headers: &[&str]) -> (String, Option<String>) {
        let values: Vec<&[u8]> = headers.iter().map(|h| h.as_bytes()).collect();
        let c = t.client(peer.parse().expect("peer"), || values);
        let xff = c
            .forwarded_for
            .map(|v| String::from_utf8(v).expect("utf-8"));
        (c.ip.to_string(), xff)
    }

    #[test]
    fn networks_parse_and_match() {
        let net: Cidr = "10.0.0.0/8".parse().expect("v4");
        assert!(net.contains("10.1.2.3".parse().expect("ip")));
        assert!(net.contains("::ffff:10.1.2.3".parse().expect("mapped")));
        assert!(!net.contains("11.0.0.1".parse().expect("ip")));
        assert!(!net.contains("::1".parse().expect("ip")));
        let all: Cidr = "0.0.0.0/0".parse().expect("all");
        assert!(all.contains("203.0.113.9".parse().expect("ip")));
        let v6: Cidr = "2001:db8::/32".parse().expect("v6");
        assert!(v6.contains("2001:db8:1::1".parse().expect("ip")));
        assert!(!v6.contains("2001:db9::1".parse().expect("ip")));
        let one: Cidr = "127.0.0.2".parse().expect("host");
        assert!(one.contains("127.0.0.2".parse().expect("ip")));
        assert!(!one.contains("127.0.0.3".parse().expect("ip")));
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.1/8",
            "::/129",
            "10.0.0.0/+8",
            "x/8",
            "10.0.0.0/08x",
            "10.0.0.0/8/8",
            " 10.0.0.0/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let t = trusted(&["10.0.0.0/8"]);
        assert_eq!(
            client(&t, "192.0.2.7", &["1.2.3.4"]),
            ("192.0.2.7".into(), None)
        );
        let none = TrustedProxies::default();
        assert_eq!(
            client(&none, "10.0.0.1", &["1.2.3.4"]),
            ("10.0.0.1".into(), None)
        );
    }

    #[test]
    fn a_trusted_peer_names_the_rightmost_untrusted_address() {
        let t = trusted(&["10.0.0.0/8", "2001:db8::/32"]);
        let cases: &[(&[&str], &str, &str)] = &[
            (&["198.51.100.1"], "198.51.100.1", "198.51.100.1"),
            (
                &["6.6.6.6, 198.51.100.1"],
                "198.51.100.1",
                "6.6.6.6, 198.51.100.1",
            ),
            (
                &["6.6.6.6, 198.51.100.1, 10.0.0.9"],
                "198.51.100.1",
                "6.6.6.6, 198.51.100.1",
            ),
            (
                &["6.6.6.6", "198.51.100.1", "10.0.0.9"],
                "198.51.100.1",
                "6.6.6.6, 198.51.100.1",
            ),
            (
                &[" 6.6.6.6 ,198.51.100.1 ,  "],
                "198.51.100.1",
                "6.6.6.6 ,198.51.100.1",
            ),
            (
                &["[2001:db9::1]:443, 2001:db8::5"],
                "2001:db9::1",
                "[2001:db9::1]:443",
            ),
            (&["198.51.100.1:8080"], "198.51.100.1", "198.51.100.1:8080"),
            (
                &["::ffff:198.51.100.1"],
                "198.51.100.1",
                "::ffff:198.51.100.1",
            ),
            // A trusted hop wrote no address: its right neighbour is the client.
            (
                &["6.6.6.6, unknown, 10.0.0.9"],
                "10.0.0.9",
                "6.6.6.6, unknown, 10.0.0.9",
            ),
            // Only trusted hops: the farthest.
            (&["10.0.0.7, 10.0.0.8"], "10.0.0.7", "10.0.0.7"),
        ];
        for (headers, ip, xff) in cases {
            assert_eq!(
                client(&t, "10.0.0.1", headers),
                (ip.to_string(), Some(xff.to_string())),
                "{headers:?}"
            );
        }
        // No address from the header: the peer is the client.
        for headers in [&["garbage"][..], &[], &[""], &[" , "]] {
            assert_eq!(client(&t, "10.0.0.1", headers), ("10.0.0.1".into(), None));
        }
    }

    #[test]
    fn a_long_trusted_chain_stops_at_the_bound() {
        let t = trusted(&["10.0.0.0/8"]);
        let chain = vec!["10.0.0.2"; 100].join(", ");
        let header = format!("6.6.6.6, {chain}");
        let (ip, _) = client(&t, "10.0.0.1", &[&header]);
        assert_eq!(ip, "10.0.0.2");
    }

    #[test]
    fn throttles_count_an_ipv6_client_by_its_64() {
        for (ip, key) in [
            ("198.51.100.7", "198.51.100.7"),
            ("::ffff:198.51.100.7", "198.51.100.7"),
            ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
            ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
            ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
            ("::1", "::/64"),
        ] {
            assert_eq!(throttle_key(ip.parse().expect("ip")), key, "{ip}");
        }
    }

    #[test]
    fn entries_parse_strictly() {
        for (entry, ip) in [
            ("1.2.3.4", Some("1.2.3.4")),
            ("1.2.3.4:80", Some("1.2.3.4")),
            ("[::1]", Some("::1")),
            ("[::1]:80", Some("::1")),
            ("::1", Some("::1")),
            ("1.2.3.4:", None),
            ("1.2.3.4:99999", None),
            ("[::1", None),
            ("[::1]x", None),
            ("[1.2.3.4]", None),
            ("unknown", None),
            ("_hidden", None),
            ("1.2.3.4 5.6.7.8", None),
        ] {
            assert_eq!(
                parse_entry(entry.as_bytes()).map(|i| i.to_string()),
                ip.map(str::to_string),
                "{entry}"
            );
        }
    }
}
