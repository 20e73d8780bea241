//! The command line: `check-config` refusals name the key; operator commands
//! work on the store file when no gateway runs. The configurations that
//! `check-config` must refuse are written as YAML text on purpose: how
//! vigile reads malformed text is what they test.

use std::path::Path;

use crate::common;
use crate::common::config::{Admin, Config, Server, Store};

fn check(dir: &Path, yaml: &str) -> (bool, String) {
    let path = dir.join("c.yaml");
    std::fs::write(&path, yaml).expect("write");
    let out = common::cli(&path, &["check-config"], None);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn check_config_accepts_the_sample_and_names_bad_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sample = std::fs::read_to_string("config/vigile.yaml").expect("sample config");
    // The sample's TLS pair, as the quick start makes it (here: signed by a
    // test authority).
    let ca = common::tls::Authority::new(&dir.path().join("certs"));
    let (cert, key) = ca.issue("vigile", false);
    let sample = sample
        .replace("certs/vigile.pem", &cert.display().to_string())
        .replace("certs/vigile.key", &key.display().to_string());
    assert!(sample.contains(&cert.display().to_string()));
    let (ok, text) = check(dir.path(), &sample);
    assert!(ok, "{text}");
    let tls = |cert: &str, key: &str| {
        format!("server:\n  tls: {{listen: '127.0.0.1:8443', cert_file: '{cert}', key_file: '{key}'}}\n")
    };
    let (stray_cert, _) = ca.issue("stray", false);
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let stray_cert = stray_cert.display().to_string();
    let ca_key = ca.dir.join("ca.key").display().to_string();
    let up = "upstreams:\n  b:\n    targets: ['127.0.0.1:1']\n    tls: ";
    for (yaml, key) in [
        (tls("/nonexistent/vigile.pem", &key), "server.tls.cert_file"),
        (tls(&key, &key), "server.tls.cert_file"),
        (tls(&cert, "/nonexistent/vigile.key"), "server.tls.key_file"),
        (tls(&cert, &cert), "server.tls.key_file"),
        (tls(&stray_cert, &key), "server.tls.key_file"),
        (tls(&cert, &ca_key), "server.tls.key_file"),
        ("server:\n  tls: {listen: '127.0.0.1:8443'}\n".to_string(), "cert_file"),
        (
            "server:\n  trusted_proxies: ['10.0.0.0/33']\n".to_string(),
            "server.trusted_proxies",
        ),
        (
            format!("{up}{{sni: localhost, ca_file: /nonexistent/ca.pem}}\n"),
            "upstreams.b.tls.ca_file",
        ),
        (format!("{up}{{sni: localhost, ca_file: '{key}'}}\n"), "upstreams.b.tls.ca_file"),
        (format!("{up}{{ca_file: '{cert}'}}\n"), "upstreams.b.tls.sni"),
        (format!("{up}{{sni: 'a b'}}\n"), "upstreams.b.tls.sni"),
        (
            format!("{up}{{sni: localhost, client_cert_file: '{cert}'}}\n"),
            "upstreams.b.tls.client_key_file",
        ),
        (
            format!("{up}{{sni: localhost, client_cert_file: '{stray_cert}', client_key_file: '{key}'}}\n"),
            "upstreams.b.tls.client_key_file",
        ),
        (format!("{up}{{sni: localhost, verify: maybe}}\n"), "verify"),
    ] {
        let (ok, text) = check(dir.path(), &yaml);
        assert!(!ok, "{yaml} should be refused");
        assert!(text.contains(key), "{yaml}: should name {key}: {text}");
    }

    let cases = [
        ("server:\n  listen: 0.0.0.0:8080\n  bogus_key: 1\n", "bogus_key"),
        ("server:\n  listen: not-an-address\n", "server.listen"),
        ("admin:\n  listen: 127.0.0.1\n", "admin.listen"),
        ("tokens:\n  access_ttl: 5 minutes\n", "access_ttl"),
        ("tokens:\n  reuse_grace: 10x\n", "reuse_grace"),
        ("tokens:\n  verified_cache: -1\n", "verified_cache"),
        ("tokens:\n  verified_cache: 99999999\n", "tokens.verified_cache"),
        ("tokens:\n  secret_file: /nonexistent/vigile-secret\n", "tokens.secret_file"),
        (
            "routes:\n  - {name: a, prefix: /api/a/, upstream: missing}\nupstreams:\n  b: {targets: ['127.0.0.1:1']}\n",
            "routes[0].upstream",
        ),
        ("upstreams:\n  b: {targets: ['nowhere']}\n", "upstreams.b.targets[0]"),
    ];
    for (yaml, key) in cases {
        let (ok, text) = check(dir.path(), yaml);
        assert!(!ok, "{yaml} should be refused");
        assert!(
            text.contains(key),
            "the message for {yaml:?} should name {key}: {text}"
        );
    }
}

#[test]
fn operator_commands_work_on_the_store_without_a_gateway() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.yaml");
    Config {
        store: Some(Store {
            path: Some(dir.path().join("data/vigile.redb")),
            ..Store::default()
        }),
        ..Config::default()
    }
    .write(&path);
    let out = common::cli(&path, &["role", "create", "Admin"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = common::cli(
        &path,
        &[
            "user",
            "create",
            "--email",
            "dev@example.com",
            "--first-name",
            "Jean",
            "--last-name",
            "Dupont",
            "--role",
            "Admin",
            "--password-stdin",
        ],
        Some("motdepasse123\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A weak password is refused with the policy's message.
    let out = common::cli(
        &path,
        &[
            "user",
            "create",
            "--email",
            "b@example.com",
            "--first-name",
            "B",
            "--last-name",
            "B",
            "--password-stdin",
        ],
        Some("123\n"),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password"));

    let out = common::cli(&path, &["user", "list"], None);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("dev@example.com") && listing.contains("Admin"),
        "{listing}"
    );
    let out = common::cli(&path, &["role", "list"], None);
    let roles = String::from_utf8_lossy(&out.stdout);
    assert!(
        roles.lines().any(|l| l == "Admin") && roles.lines().any(|l| l == "Visiteur"),
        "{roles}"
    );
    let out = common::cli(&path, &["user", "deactivate", "dev@example.com"], None);
    assert!(out.status.success());
    let out = common::cli(&path, &["user", "show", "dev@example.com"], None);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(shown["is_active"], false);
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(dir.path().join("data/vigile.redb"))
            .expect("store")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode, 0o600);
}

#[test]
fn serve_refuses_a_listen_address_in_use_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let path = dir.path().join("c.yaml");
    Config {
        server: Some(Server {
            listen: Some(([127, 0, 0, 1], port).into()),
            ..Server::default()
        }),
        admin: Some(Admin {
            listen: ([127, 0, 0, 1], common::free_port()).into(),
        }),
        store: Some(Store {
            path: Some(dir.path().join("data/v.redb")),
            ..Store::default()
        }),
        ..Config::default()
    }
    .write(&path);
    let out = common::cli(&path, &["serve"], None);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.listen"), "{stderr}");
}
