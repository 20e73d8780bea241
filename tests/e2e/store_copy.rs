//! `vigile store copy --from PATH`: a redb store moved into PostgreSQL,
//! where a gateway goes on with it (the old password logs in, the old
//! session's refresh token still refreshes); a second copy duplicates
//! nothing; a redb target is refused.

use serde_json::json;

use crate::common::{pg, Gateway, Options};

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_copied_store_serves_its_accounts_and_sessions_on_postgres() {
    // The source is a redb store, whatever VIGILE_TEST_STORE says.
    let mut old = Gateway::start_with(Options::default().store(|s| s.redb()));
    let tokens = old.register_and_login("moved@example.com", "Correct-Horse-42");
    let refresh = tokens["refresh"].as_str().expect("refresh").to_string();
    // A rotated signing key moves too: tokens it signed keep working.
    let rotate = old.cli(&["keys", "rotate"], None);
    assert!(rotate.status.success(), "{}", text(&rotate));
    let rotated = old.login("moved@example.com", "Correct-Horse-42");
    let rotated_access = rotated["access"].as_str().expect("access").to_string();
    let redb = old.dir.path().join("data/vigile.redb");
    let from = redb.to_str().expect("utf-8 path");

    let refused = old.cli(&["store", "copy", "--from", from], None);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("store.kind: postgres"),
        "{}",
        text(&refused)
    );
    let (status, _) = old.terminate();
    assert!(status.success());

    let url = pg::database();
    let new = Gateway::start_with(Options::default().store(|s| s.postgres(&url)));
    let first = new.cli(&["store", "copy", "--from", from], None);
    assert!(first.status.success(), "{}", text(&first));
    assert!(
        text(&first).contains("accounts      1 added, 0 updated, 0 unchanged"),
        "{}",
        text(&first)
    );
    let again = new.cli(&["store", "copy", "--from", from], None);
    assert!(again.status.success(), "{}", text(&again));
    for table in [
        "accounts",
        "sessions",
        "revocations",
        "reset_tokens",
        "roles",
        "signing_keys",
    ] {
        let line = text(&again)
            .lines()
            .find(|l| l.starts_with(table))
            .map(str::to_string)
            .unwrap_or_default();
        assert!(
            line.contains(" 0 added, 0 updated"),
            "{table}: {}",
            text(&again)
        );
    }

    assert!(
        text(&first).contains("signing_keys  2 added"),
        "the configuration's key (verify_only) and the rotated one: {}",
        text(&first)
    );
    // The running gateway picks the copied keys up (it follows their
    // version), and verifies the rotated key's tokens.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while new.get("/api/stocks/x", Some(&rotated_access)).status != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the rotated key's token passes"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let login = new.login("moved@example.com", "Correct-Horse-42");
    assert!(login["access"].is_string());
    let r = new.post("/api/accounts/refresh/", &json!({"refresh": refresh}), None);
    assert_eq!(r.status, 200, "the copied session refreshes: {}", r.text);
    let access = r.json["access"].as_str().expect("access");
    assert_eq!(new.get("/api/stocks/x", Some(access)).status, 200);
    let created = new.post(
        "/api/accounts/register/",
        &json!({"email": "after@example.com", "password": "Correct-Horse-42",
            "first_name": "Jean", "last_name": "Dupont"}),
        None,
    );
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(
        created.json["id"], 2,
        "ids go on after the copied ones: {}",
        created.text
    );
}
