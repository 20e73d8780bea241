//! `src/accounts/openapi.json` against a live gateway: schemathesis (PyPI,
//! pinned by `deploy/lib.sh`) reads the description the gateway serves at
//! `/api/accounts/openapi.json` and sends every operation generated and
//! hostile input (examples, coverage and fuzzing phases, valid and invalid
//! bodies, missing or wrong tokens, methods a path does not take); every
//! answer must be a documented status, with the documented content type,
//! headers and body schema, and never a 5xx.
//!
//! The authenticated operations get a real access token (an account
//! registered and logged in first, with the email and password of the
//! document's own examples, so that its login example logs in). Logout
//! ends the session whose token it gets, so it runs alone, second, with a
//! token of its own: the first run keeps a live token throughout (checked
//! after it). The password change keeps the caller's session, so it runs
//! in the first run.
//!
//! The check `positive_data_acceptance` is left out: a body the schema
//! accepts can still be refused for what JSON Schema cannot say (an email
//! already taken, a common password, a wrong old password, an unknown
//! reset token), and the document says so in each 400. Everything else
//! runs (`--checks all`).
//!
//! The gateway's limits are set so that the run meets no 503: a deep hashing
//! queue (schemathesis sends one request at a time) and login and reset
//! throttles higher than the number of requests; a 429 would still conform.

use std::time::Duration;

use serde_json::json;

use crate::common::{Gateway, Options};
use crate::tools::{read, run, tool};

const EMAIL: &str = "john@example.com";
const PASSWORD: &str = "SecurePass123!";
/// Test cases per operation and phase: some two thousand requests in all.
const MAX_EXAMPLES: &str = "100";
/// A fixed seed, so that a failure can be run again as it was.
const SEED: &str = "20261207";

fn gateway() -> Gateway {
    Gateway::start_with(Options::default().accounts(|a| {
        a.hash_queue(4096)
            .login_throttle(
                crate::common::config::Throttle::default()
                    .max_failures(100_000)
                    .window(Duration::from_secs(900))
                    .max_failures_per_ip(100_000)
                    .max_failures_per_account(100_000),
            )
            .reset_throttle(
                crate::common::config::ResetThrottle::default()
                    .max_requests(100_000)
                    .max_requests_per_ip(100_000),
            )
    }))
}

/// `schemathesis run` against `gw` with `token`, on the operations `filter`
/// selects; panics with its report unless it found nothing.
fn schemathesis(gw: &Gateway, token: &str, filter: &[&str]) {
    // Its cache and reports go to a folder of their own, not the repository.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = std::process::Command::new(tool("schemathesis"));
    command
        .current_dir(dir.path())
        .arg("run")
        .arg(gw.url("/api/accounts/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(["--max-examples", MAX_EXAMPLES, "--seed", SEED])
        .args(["--workers", "1", "--request-timeout", "20"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(filter)
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false");
    let out = run(&mut command, Duration::from_secs(100));
    assert!(
        out.status.success(),
        "schemathesis {filter:?}: {}\n{}\n--- gateway log (tail)\n{}",
        out.status,
        out.output(),
        tail(&gw.log(), 60)
    );
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The counts of `vigile_requests_total` by (route, status).
fn answers(gw: &Gateway) -> Vec<(String, u16, u64)> {
    let text = gw.admin_get("/metrics").text;
    text.lines()
        .filter_map(|line| line.strip_prefix("vigile_requests_total{"))
        .filter_map(|rest| {
            let (labels, count) = rest.split_once("} ")?;
            let label = |name: &str| {
                let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
                let end = labels[start..].find('"')? + start;
                Some(labels[start..end].to_string())
            };
            Some((
                label("route")?,
                label("status")?.parse().ok()?,
                count.trim().parse().ok()?,
            ))
        })
        .collect()
}

fn login(gw: &Gateway) -> String {
    gw.login(EMAIL, PASSWORD)["access"]
        .as_str()
        .expect("an access token")
        .to_string()
}

#[test]
fn the_account_api_answers_as_its_openapi_description_says() {
    let gw = gateway();
    // The document is the repository's, byte for byte, public and cacheable.
    let doc = gw.get("/api/accounts/openapi.json", None);
    assert_eq!(doc.status, 200);
    assert_eq!(doc.text, read("src/accounts/openapi.json"));
    assert_eq!(doc.header("content-type"), Some("application/json"));
    assert_eq!(doc.header("cache-control"), Some("public, max-age=3600"));
    let bare = gw.get("/api/accounts/openapi.json/", None);
    assert_eq!((bare.status, bare.text.len()), (200, doc.text.len()));

    let r = gw.post(
        "/api/accounts/register/",
        &json!({"email": EMAIL, "password": PASSWORD, "first_name": "John", "last_name": "Doe"}),
        None,
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let first = login(&gw);
    schemathesis(&gw, &first, &["--exclude-operation-id", "logout"]);
    // The token stayed valid throughout: the authenticated operations were
    // exercised with it, not only refused.
    assert_eq!(gw.get("/api/accounts/", Some(&first)).status, 200);

    let second = login(&gw);
    schemathesis(&gw, &second, &["--include-operation-id", "logout"]);
    let after = gw.get("/api/accounts/", Some(&second));
    assert_eq!(
        (after.status, after.code()),
        (401, "token_revoked"),
        "a logout went through"
    );

    // Every operation was answered, successes included; no 5xx at all.
    let answers = answers(&gw);
    assert!(
        answers.iter().all(|(_, status, _)| *status < 500),
        "{answers:?}"
    );
    for (route, success) in [
        ("accounts.register", 201),
        ("accounts.login", 200),
        ("accounts.refresh", 200),
        ("accounts.logout", 200),
        ("accounts.profile", 200),
        ("accounts.password_change", 400),
        ("accounts.password_forgotten", 202),
        ("accounts.password_reset", 400),
        ("accounts.openapi", 200),
        ("jwks", 200),
    ] {
        let seen = answers
            .iter()
            .any(|(r, status, n)| r == route && *status == success && *n > 0);
        assert!(seen, "{route}: no {success} in {answers:?}");
    }
}
