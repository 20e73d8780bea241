//! An attacker's view of the edge: forwarded-for tricks behind a trusted
//! balancer, addresses a client may rotate, and what a client may claim
//! about itself in headers the upstream could believe.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};

use serde_json::{json, Value};

use crate::common::scripted::{split_answer, RawAnswer};
use crate::common::{self, Gateway, Options};

const PASSWORD: &str = "motdepasse-solide-42";
/// The load balancer in front (trusted).
const BALANCER: &str = "127.0.0.2";

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}

/// `request` on a connection from `local`; the answer.
fn send_from(local: &str, to: SocketAddr, request: &str) -> RawAnswer {
    let mut conn = common::connect_from(ip(local), to);
    conn.write_all(request.as_bytes()).expect("write");
    let mut bytes = Vec::new();
    let _ = conn.read_to_end(&mut bytes);
    split_answer(&bytes).0
}

/// A JSON POST with `headers`, as written.
fn post(path: &str, body: &Value, headers: &[(&str, &str)]) -> String {
    let body = body.to_string();
    let mut text = format!("POST {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    text
}

/// One IPv6 host owns a whole /64 (SLAAC, privacy addresses): a new
/// address for each guess must not buy new guesses. The throttles count an
/// IPv6 client by its /64.
#[test]
fn an_ipv6_client_rotating_addresses_in_its_64_is_throttled_as_one() {
    let gw = Gateway::start_with(
        Options::default()
            .server(|s| s.trusted_proxies([BALANCER]))
            .accounts(|a| {
                a.max_failures(3).hash_workers(2).reset_throttle(
                    common::config::ResetThrottle::default()
                        .max_requests(100)
                        .max_requests_per_ip(2),
                )
            }),
    );
    gw.register_and_login("victim@example.com", PASSWORD);
    let login_as = |client: &str, password: &str| {
        let body = json!({"email": "victim@example.com", "password": password});
        let request = post(
            "/api/accounts/login/",
            &body,
            &[("X-Forwarded-For", client)],
        );
        send_from(BALANCER, gw.addr, &request).status
    };
    for i in 1..=3 {
        assert_eq!(login_as(&format!("2001:db8:1:2::{i}"), "devine"), 401);
    }
    // A fourth address of the same /64 (another spelling too): the same client.
    assert_eq!(login_as("2001:db8:1:2:ffff:ffff:ffff:fffe", "devine"), 429);
    assert_eq!(login_as("[2001:0db8:0001:0002::9]:443", "devine"), 429);
    // Another /64 is another client: the victim there is not locked out.
    assert_eq!(login_as("2001:db8:1:3::1", PASSWORD), 200);

    let forgotten = |client: &str, n: usize| {
        let body = json!({"email": format!("nobody{n}@example.com")});
        let request = post(
            "/api/accounts/password-forgotten/",
            &body,
            &[("X-Forwarded-For", client)],
        );
        send_from(BALANCER, gw.addr, &request).status
    };
    assert_eq!(forgotten("2001:db8:5:6::1", 0), 202);
    assert_eq!(forgotten("2001:db8:5:6::2", 1), 202);
    assert_eq!(forgotten("2001:db8:5:6::3", 2), 429);
    assert_eq!(forgotten("2001:db8:5:7::1", 3), 202);
}
