//! Several replicas on one PostgreSQL database (`store.kind: postgres`):
//! revocations reach every replica, the operator CLI's too, one email makes
//! one account, and without the database a replica answers 503 and then
//! fails closed, and recovers by itself when the database returns.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::config::{Auth, ResetThrottle, Route, Throttle};
use crate::common::relay::Relay;
use crate::common::{pg, Gateway, Options};

/// A replica on the database `url` names.
pub(crate) fn replica(url: &str, change: impl FnOnce(Options) -> Options) -> Gateway {
    let options = Options::default()
        .store(|s| s.postgres(url).sync_interval(Duration::from_millis(200)))
        .route(Route::new("public", "/api/public/", "stocks").auth(Auth::None));
    Gateway::start_with(change(options))
}

/// Polls until `done`; how long it took.
pub(crate) fn within(what: &str, limit: Duration, done: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

#[test]
fn a_logout_on_one_replica_is_refused_on_the_other_within_a_second() {
    let url = pg::database();
    let (a, b) = (replica(&url, |o| o), replica(&url, |o| o));
    let tokens = a.register_and_login("two@example.com", "Correct-Horse-42");
    let access = tokens["access"].as_str().expect("access");
    assert_eq!(
        b.get("/api/stocks/x", Some(access)).status,
        200,
        "B accepts A's token"
    );
    let r = a.post("/api/accounts/logout/", &json!({}), Some(access));
    assert!(r.status < 300, "logout: {}", r.text);
    within("refused on B", Duration::from_secs(1), || {
        b.get("/api/stocks/x", Some(access)).status == 401
    });
    assert_eq!(b.get("/api/stocks/x", Some(access)).code(), "token_revoked");
    let metrics = b.admin_get("/metrics").text;
    assert!(
        metrics.contains("vigile_revocation_lag_seconds_count 1"),
        "{metrics}"
    );
    assert!(metrics.contains("vigile_store_up 1"));
}

#[test]
fn a_deactivate_by_the_cli_reaches_every_replica() {
    let url = pg::database();
    let (a, b) = (replica(&url, |o| o), replica(&url, |o| o));
    let tokens = b.register_and_login("gone@example.com", "Correct-Horse-42");
    let access = tokens["access"].as_str().expect("access");
    let out = a.cli(&["user", "deactivate", "gone@example.com"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for gw in [&a, &b] {
        within("refused", Duration::from_secs(1), || {
            gw.get("/api/stocks/x", Some(access)).status == 401
        });
    }
}

#[test]
fn one_email_registered_on_two_replicas_at_once_makes_one_account() {
    let url = pg::database();
    let replicas = Arc::new([replica(&url, |o| o), replica(&url, |o| o)]);
    for round in 0..3 {
        let start = Arc::new(Barrier::new(2));
        let racers: Vec<_> = (0..2)
            .map(|i| {
                let (replicas, start) = (replicas.clone(), start.clone());
                std::thread::spawn(move || {
                    let body = json!({"email": format!("race{round}@example.com"),
                        "password": "Correct-Horse-42", "first_name": "Jean",
                        "last_name": "Dupont"});
                    start.wait();
                    replicas[i]
                        .post("/api/accounts/register/", &body, None)
                        .status
                })
            })
            .collect();
        let mut statuses: Vec<u16> = racers
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        statuses.sort();
        assert_eq!(statuses[0], 201, "round {round}: {statuses:?}");
        assert_ne!(statuses[1], 201, "round {round}: {statuses:?}");
        assert!(statuses[1] < 500, "round {round}: {statuses:?}");
    }
}

#[test]
fn the_login_limit_per_account_and_the_reset_limit_per_email_hold_across_replicas() {
    let url = pg::database();
    // Only the limits per account and per email can bite here: the pair
    // and per-address limits are far above what the test sends.
    let limits = |o: Options| {
        o.accounts(|a| {
            a.login_throttle(
                Throttle::default()
                    .max_failures(50)
                    .max_failures_per_ip(50)
                    .max_failures_per_account(4),
            )
            .reset_throttle(
                ResetThrottle::default()
                    .max_requests(3)
                    .max_requests_per_ip(50),
            )
        })
    };
    let (a, b) = (replica(&url, limits), replica(&url, limits));
    a.register_and_login("target@example.com", "Correct-Horse-42");
    let wrong = json!({"email": "target@example.com", "password": "pas-le-bon"});
    for (i, gw) in [&a, &b, &a, &b].into_iter().enumerate() {
        let r = gw.post("/api/accounts/login/", &wrong, None);
        assert_eq!(r.code(), "invalid_credentials", "attempt {i}: {}", r.text);
    }
    // Four failures spread over two replicas: the account's limit is
    // reached on both, for the right password too.
    let right = json!({"email": "TARGET@example.com", "password": "Correct-Horse-42"});
    for gw in [&a, &b] {
        for body in [&wrong, &right] {
            let r = gw.post("/api/accounts/login/", body, None);
            assert_eq!(
                (r.status, r.code()),
                (429, "too_many_attempts"),
                "{}",
                r.text
            );
            let wait: u64 = r
                .header("retry-after")
                .and_then(|v| v.parse().ok())
                .expect("Retry-After in seconds");
            assert!((1..=900).contains(&wait), "{wait}");
        }
    }
    // Another account is not touched.
    a.register_and_login("other@example.com", "Correct-Horse-42");

    let forgotten = json!({"email": "target@example.com"});
    for gw in [&a, &b, &b] {
        let r = gw.post("/api/accounts/password-forgotten/", &forgotten, None);
        assert_eq!(r.status, 202, "{}", r.text);
    }
    let r = a.post("/api/accounts/password-forgotten/", &forgotten, None);
    assert_eq!((r.status, r.code()), (429, "too_many_attempts"));
    let r = b.post(
        "/api/accounts/password-forgotten/",
        &json!({"email": "other@example.com"}),
        None,
    );
    assert_eq!(r.status, 202, "another email is not touched");
}

#[test]
fn without_the_database_a_replica_answers_503_then_fails_closed_then_recovers() {
    let server = pg::server();
    let name = pg::database().rsplit('/').next().expect("name").to_string();
    let mut relay = Relay::start(([127, 0, 0, 1], server.port()).into());
    let url = format!("postgres://postgres@127.0.0.1:{}/{name}", relay.port);
    let gw = replica(&url, |o| {
        o.store(|s| s.max_staleness(Duration::from_secs(2)))
    });
    let tokens = gw.register_and_login("down@example.com", "Correct-Horse-42");
    let access = tokens["access"].as_str().expect("access");
    let register = || {
        gw.post(
            "/api/accounts/register/",
            &json!({"email": format!("n{}@example.com", pg_unique()), "password": "Correct-Horse-42",
                "first_name": "Jean", "last_name": "Dupont"}),
            None,
        )
    };

    relay.cut();
    let cut = Instant::now();
    let r = register();
    assert_eq!(
        (r.status, r.code()),
        (503, "store_unavailable"),
        "{}",
        r.text
    );
    assert!(r.header("retry-after").is_some());
    assert!(
        cut.elapsed() < Duration::from_secs(10),
        "no hang past the store timeout"
    );
    let metrics = gw.admin_get("/metrics").text;
    assert!(
        metrics.contains("vigile_store_errors_total{op=\"account_by_email\"} 1"),
        "the failed call is counted by its operation: {metrics}"
    );
    // From memory for a while, then fail closed.
    within("fail closed", Duration::from_secs(5), || {
        gw.get("/api/stocks/x", Some(access)).status == 503
    });
    assert!(
        cut.elapsed() >= Duration::from_millis(1500),
        "not before max_staleness"
    );
    let r = gw.get("/api/stocks/x", Some(access));
    assert_eq!(r.code(), "store_unavailable");
    assert!(r.header("retry-after").is_some());
    assert_eq!(
        gw.get("/api/public/x", None).status,
        200,
        "public routes still work"
    );
    let ready = gw.admin_get("/readyz");
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json["revocations_stale"], true, "{}", ready.text);

    relay.restore();
    within("recovered", Duration::from_secs(5), || {
        gw.get("/api/stocks/x", Some(access)).status == 200
    });
    within("writes again", Duration::from_secs(5), || {
        register().status == 201
    });
    assert_eq!(gw.admin_get("/readyz").status, 200);
}

fn pg_unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_nanos()
}
