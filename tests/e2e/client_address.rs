//! The real client address behind a load balancer: `X-Forwarded-For` from a
//! trusted proxy (`server.trusted_proxies`), ignored from anyone else, and
//! the PROXY protocol (`server.proxy_protocol`); that address is what the
//! throttles count, the access log shows and the upstream learns.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::scripted::{self, gateway_before, header_of, split_answer, RawAnswer, Scripted};
use crate::common::{self, Gateway, Options};

const PASSWORD: &str = "motdepasse-solide-42";
/// The load balancer in front (trusted), and a client reaching the gateway
/// around it (not trusted).
const BALANCER: &str = "127.0.0.2";
const AROUND: &str = "127.0.0.3";

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}

/// `prefix` then `request` on a connection from `local`; the answer (or an
/// empty one, status 0, if the gateway closed without one).
fn send_from(local: &str, to: SocketAddr, prefix: &[u8], request: &str) -> RawAnswer {
    let mut conn = common::connect_from(ip(local), to);
    conn.write_all(&[prefix, request.as_bytes()].concat())
        .expect("write");
    let mut bytes = Vec::new();
    let _ = conn.read_to_end(&mut bytes);
    split_answer(&bytes).0
}

fn login(password: &str) -> Value {
    json!({"email": "victim@example.com", "password": password})
}

/// The last request head the upstream got.
fn last_head(upstream: &Scripted) -> String {
    upstream
        .requests()
        .last()
        .cloned()
        .expect("a request upstream")
}

#[test]
fn throttles_count_the_client_a_trusted_proxy_names_and_ignore_the_header_from_others() {
    let gw = Gateway::start_with(
        Options::default()
            .server(|s| s.trusted_proxies([&format!("{BALANCER}/32"), "10.0.0.0/8"]))
            .accounts(|a| a.max_failures(3).hash_workers(2)),
    );
    gw.register_and_login("victim@example.com", PASSWORD);
    let login_via = |peer: &str, password: &str, xff: &str| {
        let request = scripted::json_post(
            "/api/accounts/login/",
            &login(password),
            &[("X-Forwarded-For", xff)],
        );
        send_from(peer, gw.addr, b"", &request).status
    };
    // An attacker behind the balancer (another hop of the edge, 10.0.0.5,
    // between them) is stopped after three failures...
    for _ in 0..3 {
        assert_eq!(login_via(BALANCER, "devine", "198.51.100.1, 10.0.0.5"), 401);
    }
    assert_eq!(login_via(BALANCER, "devine", "198.51.100.1, 10.0.0.5"), 429);
    // ... whatever it claims further left (what the balancer appended wins).
    assert_eq!(
        login_via(BALANCER, "devine", "203.0.113.7, 198.51.100.1"),
        429
    );
    // The user behind the same balancer is not locked out with it.
    assert_eq!(login_via(BALANCER, PASSWORD, "198.51.100.2"), 200);
    // Around the balancer, the header names nobody: a new address in each
    // request does not escape the count of the connection's own address.
    for i in 0..3 {
        assert_eq!(
            login_via(AROUND, "devine", &format!("198.51.100.{}", 10 + i)),
            401
        );
    }
    assert_eq!(login_via(AROUND, "devine", "198.51.100.99"), 429);
    // Spoofing the locked-out attacker's address from there changes nothing
    // for it either way, and the user behind the balancer still gets in.
    assert_eq!(login_via(BALANCER, PASSWORD, "198.51.100.2"), 200);
}

#[test]
fn the_reset_throttle_counts_the_client_a_trusted_proxy_names() {
    let gw = Gateway::start_with(
        Options::default()
            .server(|s| s.trusted_proxies([BALANCER]))
            .accounts(|a| {
                a.reset_throttle(
                    common::config::ResetThrottle::default()
                        .max_requests(100)
                        .max_requests_per_ip(2),
                )
            }),
    );
    let forgotten = |xff: &str, n: usize| {
        let body = json!({"email": format!("nobody{n}@example.com")});
        let request = scripted::json_post(
            "/api/accounts/password-forgotten/",
            &body,
            &[("X-Forwarded-For", xff)],
        );
        send_from(BALANCER, gw.addr, b"", &request).status
    };
    assert_eq!(forgotten("198.51.100.1", 0), 202);
    assert_eq!(forgotten("198.51.100.1", 1), 202);
    assert_eq!(forgotten("198.51.100.1", 2), 429);
    assert_eq!(forgotten("198.51.100.2", 3), 202);
}

#[test]
fn the_upstream_and_the_access_log_learn_the_client_address() {
    let upstream = Scripted::ok();
    let gw = gateway_before(
        &upstream,
        Duration::from_secs(5),
        Options::default().server(|s| s.trusted_proxies([BALANCER, "2001:db8::/32"])),
    );
    let get = |peer: &str, headers: &[(&str, &str)]| {
        let answer = send_from(
            peer,
            gw.addr,
            b"",
            &scripted::request("GET", "/api/raw/x", headers),
        );
        assert_eq!(answer.status, 200, "{}", answer.head);
        last_head(&upstream)
    };
    // Through the balancer: the chain up to the client, the client in X-Real-IP.
    let head = get(
        BALANCER,
        &[
            ("X-Forwarded-For", "6.6.6.6, 198.51.100.1"),
            ("x-forwarded-for", "2001:db8::9"),
            ("X-Real-IP", "7.7.7.7"),
            ("Forwarded", "for=7.7.7.7"),
        ],
    );
    assert_eq!(
        header_of(&head, "x-forwarded-for"),
        Some("6.6.6.6, 198.51.100.1")
    );
    assert_eq!(header_of(&head, "x-real-ip"), Some("198.51.100.1"));
    assert!(header_of(&head, "forwarded").is_none(), "{head}");
    assert_eq!(
        head.matches("x-forwarded-for").count() + head.matches("X-Forwarded-For").count(),
        1
    );
    // An IPv6 client with its port, written by the balancer.
    let head = get(BALANCER, &[("X-Forwarded-For", "[2001:db9::1]:4711")]);
    assert_eq!(header_of(&head, "x-real-ip"), Some("2001:db9::1"));
    // Garbage where the balancer's hop should be: the balancer is the client.
    let head = get(BALANCER, &[("X-Forwarded-For", "unknown")]);
    assert_eq!(header_of(&head, "x-real-ip"), Some(BALANCER));
    // Around the balancer: the header is appended to, never believed.
    let head = get(
        AROUND,
        &[
            ("X-Forwarded-For", "198.51.100.1"),
            ("X-Real-IP", "198.51.100.1"),
        ],
    );
    assert_eq!(
        header_of(&head, "x-forwarded-for"),
        Some(format!("198.51.100.1, {AROUND}").as_str())
    );
    assert_eq!(header_of(&head, "x-real-ip"), Some(AROUND));
    // The access log names the client.
    let answer = send_from(
        BALANCER,
        gw.addr,
        b"",
        &scripted::request(
            "GET",
            "/api/raw/logged",
            &[
                ("X-Forwarded-For", "198.51.100.77"),
                ("X-Request-Id", "xff-log"),
            ],
        ),
    );
    assert_eq!(answer.status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let log = gw.log();
        if let Some(line) = log.lines().find(|l| l.contains("xff-log")) {
            break line.to_string();
        }
        assert!(Instant::now() < deadline, "no access line:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(line.contains("client=198.51.100.77"), "{line}");
}

/// A PROXY protocol v2 header for a TCP client `source` to `dest`.
fn proxy_v2(command: u8, source: SocketAddr, dest: SocketAddr) -> Vec<u8> {
    let mut body = Vec::new();
    let family = match (source, dest) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            body.extend_from_slice(&s.ip().octets());
            body.extend_from_slice(&d.ip().octets());
            0x11
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            body.extend_from_slice(&s.ip().octets());
            body.extend_from_slice(&d.ip().octets());
            0x21
        }
        _ => panic!("one family"),
    };
    body.extend_from_slice(&source.port().to_be_bytes());
    body.extend_from_slice(&dest.port().to_be_bytes());
    // A TLV (an AWS endpoint id, say), skipped.
    body.extend_from_slice(&[0xEA, 0x00, 0x03, b'v', b'p', b'c']);
    scripted::proxy_v2_header(command, family, &body)
}

#[test]
fn the_proxy_protocol_names_the_client_and_is_required() {
    let upstream = Scripted::ok();
    let gw = gateway_before(
        &upstream,
        Duration::from_secs(5),
        Options::default()
            .server(|s| {
                s.proxy_protocol(true)
                    .header_timeout(Duration::from_secs(1))
            })
            .accounts(|a| a.max_failures(2).hash_workers(2)),
    );
    let request = scripted::request("GET", "/api/raw/x", &[("X-Forwarded-For", "6.6.6.6")]);
    let port = gw.addr.port();
    // v1, then v2 over IPv4 and IPv6.
    let v1 = format!("PROXY TCP4 198.51.100.4 127.0.0.1 40000 {port}\r\n");
    let answer = send_from(BALANCER, gw.addr, v1.as_bytes(), &request);
    assert_eq!(answer.status, 200, "{}", answer.head);
    let head = last_head(&upstream);
    assert_eq!(header_of(&head, "x-real-ip"), Some("198.51.100.4"));
    assert_eq!(
        header_of(&head, "x-forwarded-for"),
        Some("6.6.6.6, 198.51.100.4")
    );
    let dest = gw.addr;
    let v2 = proxy_v2(1, "198.51.100.5:40001".parse().expect("src"), dest);
    assert_eq!(send_from(BALANCER, gw.addr, &v2, &request).status, 200);
    assert_eq!(
        header_of(&last_head(&upstream), "x-real-ip"),
        Some("198.51.100.5")
    );
    let v6 = proxy_v2(
        1,
        "[2001:db8::5]:40002".parse().expect("src"),
        "[2001:db8::1]:443".parse().expect("dst"),
    );
    assert_eq!(send_from(BALANCER, gw.addr, &v6, &request).status, 200);
    assert_eq!(
        header_of(&last_head(&upstream), "x-real-ip"),
        Some("2001:db8::5")
    );
    // LOCAL (the balancer's health check): the balancer itself.
    let local = proxy_v2(0, "198.51.100.6:1".parse().expect("src"), dest);
    assert_eq!(send_from(BALANCER, gw.addr, &local, &request).status, 200);
    assert_eq!(
        header_of(&last_head(&upstream), "x-real-ip"),
        Some(BALANCER)
    );

    // Without a valid header, the connection is closed unanswered, the
    // upstream untouched.
    let before = upstream.requests().len();
    let mut lying = proxy_v2(1, "198.51.100.7:1".parse().expect("src"), dest);
    lying[14..16].copy_from_slice(&200u16.to_be_bytes());
    for prefix in [
        &b""[..],
        b"PROXY TCP4 198.51.100.7 127.0.0.1 1\r\n",
        b"PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n",
        b"PROXY TCP6 198.51.100.7 127.0.0.1 1 2\r\n",
        &lying,
    ] {
        let started = Instant::now();
        let answer = send_from(BALANCER, gw.addr, prefix, &request);
        assert_eq!(answer.status, 0, "{prefix:?}: {}", answer.head);
        assert!(started.elapsed() < Duration::from_secs(5), "{prefix:?}");
    }
    // A header that never ends is dropped within server.header_timeout.
    let mut conn = common::connect_from(ip(BALANCER), gw.addr);
    conn.write_all(b"PROXY TCP4 198.51.100.7").expect("write");
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    assert!(rest.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(upstream.requests().len(), before);
    let metrics = gw.admin_get("/metrics").text;
    let refusals = metrics
        .lines()
        .find(|l| l.starts_with("vigile_edge_refusals_total{reason=\"proxy_protocol\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok());
    assert!(refusals >= Some(6), "{metrics}");

    // The login throttle counts the named clients apart.
    let login_as = |source: &str, password: &str| {
        let line = format!("PROXY TCP4 {source} 127.0.0.1 40000 {port}\r\n");
        let body = json!({"email": "victim@example.com", "password": password});
        send_from(
            BALANCER,
            gw.addr,
            line.as_bytes(),
            &scripted::json_post("/api/accounts/login/", &body, &[]),
        )
        .status
    };
    let register = json!({"email": "victim@example.com", "password": PASSWORD,
        "first_name": "Jean", "last_name": "Dupont", "gender": "H"});
    let line = format!("PROXY TCP4 198.51.100.20 127.0.0.1 40000 {port}\r\n");
    let status = send_from(
        BALANCER,
        gw.addr,
        line.as_bytes(),
        &scripted::json_post("/api/accounts/register/", &register, &[]),
    )
    .status;
    assert_eq!(status, 201);
    assert_eq!(login_as("198.51.100.21", "devine"), 401);
    assert_eq!(login_as("198.51.100.21", "devine"), 401);
    assert_eq!(login_as("198.51.100.21", "devine"), 429);
    assert_eq!(login_as("198.51.100.22", PASSWORD), 200);
}

#[test]
fn trusted_proxies_change_on_reload_and_proxy_protocol_needs_a_restart() {
    let upstream = Scripted::ok();
    let gw = gateway_before(&upstream, Duration::from_secs(5), Options::default());
    let real_ip = || {
        let request =
            scripted::request("GET", "/api/raw/x", &[("X-Forwarded-For", "198.51.100.3")]);
        assert_eq!(send_from(BALANCER, gw.addr, b"", &request).status, 200);
        header_of(&last_head(&upstream), "x-real-ip").map(str::to_string)
    };
    assert_eq!(real_ip().as_deref(), Some(BALANCER));
    let edit = |change: &dyn Fn(&mut serde_yaml::Mapping)| {
        let text = std::fs::read_to_string(gw.config_path()).expect("config");
        let mut value: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
        let server = value
            .get_mut("server")
            .and_then(serde_yaml::Value::as_mapping_mut)
            .expect("server");
        change(server);
        std::fs::write(
            gw.config_path(),
            serde_yaml::to_string(&value).expect("yaml"),
        )
        .expect("write");
        gw.cli(&["reload"], None)
    };
    let out = edit(&|server| {
        server.insert("trusted_proxies".into(), vec![BALANCER].into());
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(real_ip().as_deref(), Some("198.51.100.3"));
    let out = edit(&|server| {
        server.insert("proxy_protocol".into(), true.into());
    });
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.proxy_protocol"));
    assert_eq!(
        real_ip().as_deref(),
        Some("198.51.100.3"),
        "the running configuration stays"
    );
}

/// `X-Forwarded-Proto` is the scheme of the gateway's own listener on both
/// forwarding paths, whatever the peer sent, a trusted balancer included:
/// a balancer may pass its client's own header on (nginx and HAProxy do by
/// default), and backends decide on it (Django's `SECURE_PROXY_SSL_HEADER`).
#[test]
fn x_forwarded_proto_is_the_listeners_own_whoever_sends_one() {
    let upstream = Scripted::ok();
    let gw = gateway_before(
        &upstream,
        Duration::from_secs(5),
        Options::default().server(|s| s.trusted_proxies([BALANCER])),
    );
    let proto_seen = |peer: &str, headers: &[(&str, &str)], with_body: bool| {
        let request = if with_body {
            scripted::json_post("/api/raw/x", &json!({}), headers)
        } else {
            scripted::request("GET", "/api/raw/x", headers)
        };
        let answer = send_from(peer, gw.addr, b"", &request);
        assert_eq!(answer.status, 200, "{}", answer.head);
        let head = last_head(&upstream);
        assert_eq!(
            head.to_ascii_lowercase()
                .matches("x-forwarded-proto")
                .count(),
            1,
            "{head}"
        );
        header_of(&head, "x-forwarded-proto").map(str::to_string)
    };
    for with_body in [false, true] {
        let http = Some("http".to_string());
        for peer in [BALANCER, AROUND] {
            for sent in [
                &[("X-Forwarded-Proto", "https")][..],
                &[("x-forwarded-proto", "HTTPS")],
                &[("X-Forwarded-Proto", "http")],
                &[],
                &[("X-Forwarded-Proto", "https, http")],
                &[
                    ("X-Forwarded-Proto", "https"),
                    ("X-Forwarded-Proto", "https"),
                ],
            ] {
                assert_eq!(proto_seen(peer, sent, with_body), http, "{peer} {sent:?}");
            }
        }
    }
}
