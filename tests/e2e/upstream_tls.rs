//! TLS to upstreams (`upstreams.NAME.tls`): the name sent and verified
//! against the authority given, a wrong authority or name answered 502
//! `upstream_unavailable` and counted as `kind="tls"`, a client
//! certificate for an upstream that requires one (mTLS), health checks
//! over TLS; and `check-config` naming what is wrong.

use std::time::Duration;

use crate::common::config::{Auth, HealthCheck, Route, Upstream, UpstreamTls};
use crate::common::tls::Authority;
use crate::common::{DemoUpstream, Gateway, Options};

/// A gateway with the public route `/api/secure/` to `upstream` as configured.
fn gateway(upstream: Upstream) -> Gateway {
    Gateway::start_with(
        Options::default()
            .route(
                Route::new("secure", "/api/secure/", "secure")
                    .auth(crate::common::config::Auth::None),
            )
            .upstream("secure", upstream),
    )
}

fn tls(ca: &Authority, sni: &str) -> UpstreamTls {
    UpstreamTls {
        sni: Some(sni.into()),
        ca_file: Some(ca.ca()),
        ..UpstreamTls::default()
    }
}

/// The route answers 502 `upstream_unavailable`.
fn assert_unavailable(gw: &Gateway) {
    let r = gw.get("/api/secure/x", None);
    assert_eq!(
        (r.status, r.code()),
        (502, "upstream_unavailable"),
        "{}",
        r.text
    );
}

fn tls_errors(gw: &Gateway) -> String {
    let metrics = gw.admin_get("/metrics").text;
    metrics
        .lines()
        .filter(|l| l.starts_with("vigile_upstream_errors_total") && l.contains("kind=\"tls\""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn an_upstream_over_tls_is_verified_by_name_and_authority() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = Authority::new(&dir.path().join("pki"));
    let other = Authority::new(&dir.path().join("other"));
    let (cert, key) = ca.issue("backend", false);
    let backend = DemoUpstream::start_tls("secure", &cert, &key, None);
    // One gateway, one route per way of reaching the same backend.
    let ways = [
        ("good", Some(tls(&ca, "localhost"))),
        ("other_ca", Some(tls(&other, "localhost"))),
        ("other_name", Some(tls(&ca, "elsewhere.example"))),
        (
            "lax",
            Some(UpstreamTls {
                verify: Some(false),
                ..UpstreamTls::default()
            }),
        ),
        ("plain", None),
    ];
    let mut options = Options::default();
    for (name, tls) in ways {
        let mut upstream = Upstream::new([backend.addr]).read_timeout(Duration::from_secs(2));
        upstream.tls = tls;
        options = options
            .route(Route::new(name, &format!("/api/{name}/"), name).auth(Auth::None))
            .upstream(name, upstream);
    }
    // Without `sni`, the name the targets are written with is the one sent
    // and verified (an address has no name to default to: `cli.rs` checks
    // that check-config then asks for `sni`).
    let mut by_name = Upstream::new([]).read_timeout(Duration::from_secs(2));
    by_name.targets = vec![format!("LocalHost:{}", backend.addr.port())];
    by_name.tls = Some(UpstreamTls {
        ca_file: Some(ca.ca()),
        ..UpstreamTls::default()
    });
    options = options
        .route(Route::new("by_name", "/api/by_name/", "by_name").auth(Auth::None))
        .upstream("by_name", by_name);
    let gw = Gateway::start_with(options);
    let r = gw.get("/api/by_name/x", None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["tls"]["version"], "TLSv1_3", "{}", r.text);
    for _ in 0..3 {
        let r = gw.get("/api/good/x", None);
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json["tls"]["version"], "TLSv1_3", "{}", r.text);
        assert_eq!(r.json["headers"]["host"][0], gw.addr.to_string());
    }
    // Another authority, or a name the certificate does not hold: 502,
    // counted as kind="tls".
    for name in ["other_ca", "other_name"] {
        let r = gw.get(&format!("/api/{name}/x"), None);
        assert_eq!(
            (r.status, r.code()),
            (502, "upstream_unavailable"),
            "{}",
            r.text
        );
        assert!(
            tls_errors(&gw).contains(&format!("upstream=\"{name}\"")),
            "{}",
            tls_errors(&gw)
        );
    }
    assert!(!tls_errors(&gw).contains("upstream=\"good\""));
    // verify: false takes any certificate.
    assert_eq!(gw.get("/api/lax/x", None).status, 200);
    // Plain HTTP to a TLS upstream is no answer either.
    assert_eq!(gw.get("/api/plain/x", None).status, 502);
}

#[test]
fn a_client_certificate_goes_to_an_upstream_that_requires_one() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = Authority::new(&dir.path().join("pki"));
    let (cert, key) = ca.issue("backend", false);
    let (client_cert, client_key) = ca.issue("gateway", true);
    let backend = DemoUpstream::start_tls("secure", &cert, &key, Some(&ca.ca()));

    let with = gateway(
        Upstream::new([backend.addr])
            .tls(UpstreamTls {
                client_cert_file: Some(client_cert),
                client_key_file: Some(client_key),
                ..tls(&ca, "localhost")
            })
            .health_check(HealthCheck {
                path: Some("/health".into()),
                interval: Some(Duration::from_millis(200)),
            }),
    );
    let r = with.get("/api/secure/x", None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json["tls"]["client_serial"].is_string(), "{}", r.text);
    // The health check speaks TLS with the certificate too: the target is healthy.
    std::thread::sleep(Duration::from_millis(600));
    let metrics = with.admin_get("/metrics").text;
    assert!(
        metrics.contains("vigile_upstream_healthy_targets{upstream=\"secure\"} 1"),
        "{metrics}"
    );

    let without = gateway(Upstream::new([backend.addr]).tls(tls(&ca, "localhost")));
    assert_unavailable(&without);
}

#[test]
fn a_health_check_over_tls_marks_a_target_with_a_bad_certificate_down() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = Authority::new(&dir.path().join("pki"));
    let other = Authority::new(&dir.path().join("other"));
    let (cert, key) = ca.issue("backend", false);
    let backend = DemoUpstream::start_tls("secure", &cert, &key, None);
    let gw = gateway(
        Upstream::new([backend.addr])
            .tls(tls(&other, "localhost"))
            .health_check(HealthCheck {
                path: None,
                interval: Some(Duration::from_millis(200)),
            }),
    );
    std::thread::sleep(Duration::from_millis(800));
    let metrics = gw.admin_get("/metrics").text;
    assert!(
        metrics.contains("vigile_upstream_healthy_targets{upstream=\"secure\"} 0"),
        "{metrics}"
    );
    assert_unavailable(&gw);
}
