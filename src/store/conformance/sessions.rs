//! Sessions: creation, updates, rotation and revocation.

use super::{create, open, session, with_sessions, Harness, WINDOW};
use crate::store::PasswordUpgrade;
use crate::tokens::SessionId;

pub(crate) fn sessions_are_created_read_and_updated(harness: &dyn Harness) {
    let store = open(harness);
    let a = create(&store, "a@example.com");
    let mut record = session(a.id, 5_000);
    record.created_at = 42;
    store.create_session(SessionId(1), &record).expect("create");
    assert_eq!(
        store.session(SessionId(1)).expect("read"),
        Some(record.clone())
    );
    assert_eq!(store.session(SessionId(2)).expect("read"), None);
    assert_eq!(
        store.account(a.id).expect("read").expect("a").last_login,
        Some(42),
        "a login sets last_login"
    );
    assert_eq!(store.counts().expect("counts").sessions, 1);

    let updated = store
        .update_session(SessionId(1), |r| {
            r.expires_at = 6_000;
            r.expires_at - 1
        })
        .expect("update");
    assert_eq!(
        updated,
        Some((5_999, None)),
        "what the change returned, no revocation"
    );
    record.expires_at = 6_000;
    assert_eq!(store.session(SessionId(1)).expect("read"), Some(record));
    assert!(store
        .update_session(SessionId(2), |r| r.expires_at = 1)
        .expect("update")
        .is_none());
    assert_eq!(store.session(SessionId(2)).expect("read"), None);
}

pub(crate) fn a_rotation_keeps_the_previous_refresh_for_the_reuse_grace(harness: &dyn Harness) {
    let s = SessionId(0xABCD_u128 << 64 | 7);
    let (store, _) = with_sessions(harness, &[s.0]);
    for (jti, at_ms) in [(2u128, 100_250u64), (3, 160_999)] {
        let rotated = store
            .update_session(s, |r| {
                let current = r.refresh_jti;
                r.previous_jti = Some(current);
                r.refresh_jti = jti;
                r.rotated_at = at_ms / 1000;
                r.rotated_at_ms = Some(at_ms);
                r.expires_at = at_ms / 1000 + 5_000;
                current
            })
            .expect("rotate")
            .expect("found");
        assert_eq!(
            rotated,
            (jti - 1, None),
            "the change sees the last rotation"
        );
        let record = store.session(s).expect("read").expect("found");
        assert_eq!(
            (record.refresh_jti, record.previous_jti),
            (jti, Some(jti - 1))
        );
        assert_eq!(record.rotated_at, at_ms / 1000);
        assert_eq!(record.rotated_at_millis(), at_ms);
        assert_eq!(record.expires_at, at_ms / 1000 + 5_000);
        assert_eq!(record.revoked_at, None);
    }
    assert!(store.revocations(0).expect("load").is_empty());
}

pub(crate) fn revoking_a_session_by_update_records_the_revocation_once(harness: &dyn Harness) {
    let (store, _) = with_sessions(harness, &[5]);
    let revoked = store
        .update_session(SessionId(5), |r| r.revoked_at = Some(1_000))
        .expect("update");
    assert_eq!(revoked, Some(((), Some((SessionId(5), 1_000 + WINDOW)))));
    assert_eq!(
        store
            .session(SessionId(5))
            .expect("read")
            .expect("kept")
            .revoked_at,
        Some(1_000)
    );
    assert_eq!(
        store.revocations(1_000).expect("load"),
        vec![(SessionId(5), 1_300)]
    );
    let again = store
        .update_session(SessionId(5), |r| {
            if r.revoked_at.is_none() {
                r.revoked_at = Some(2_000);
            }
        })
        .expect("update");
    assert_eq!(again, Some(((), None)), "already revoked");
    assert_eq!(
        store.revocations(1_000).expect("load"),
        vec![(SessionId(5), 1_300)]
    );
}

pub(crate) fn revoking_the_sessions_of_an_account_spares_the_rest(harness: &dyn Harness) {
    let store = open(harness);
    let a = create(&store, "a@example.com");
    let b = create(&store, "b@example.com");
    let live = |account| session(account, 5_000);
    store.create_session(SessionId(1), &live(a.id)).expect("s1");
    store.create_session(SessionId(2), &live(a.id)).expect("s2");
    store
        .create_session(SessionId(3), &session(a.id, 999))
        .expect("expired");
    let mut earlier = live(a.id);
    earlier.revoked_at = Some(900);
    store.create_session(SessionId(4), &earlier).expect("s4");
    store.create_session(SessionId(5), &live(b.id)).expect("s5");
    store.create_session(SessionId(6), &live(a.id)).expect("s6");

    let mut revoked = store
        .revoke_account_sessions(a.id, 1_000, Some(SessionId(2)))
        .expect("revoke");
    revoked.sort();
    assert_eq!(revoked, vec![(SessionId(1), 1_300), (SessionId(6), 1_300)]);
    let revoked_at = |s| {
        store
            .session(SessionId(s))
            .expect("read")
            .expect("kept")
            .revoked_at
    };
    assert_eq!(
        [1, 2, 3, 4, 5, 6].map(revoked_at),
        [Some(1_000), None, None, Some(900), None, Some(1_000)]
    );
    let mut in_force = store.revocations(1_000).expect("load");
    in_force.sort();
    assert_eq!(in_force, revoked);
    assert!(
        store
            .revoke_account_sessions(a.id, 1_000, Some(SessionId(2)))
            .expect("revoke")
            .is_empty(),
        "nothing left to revoke"
    );
    assert_eq!(
        store
            .revoke_account_sessions(b.id, 1_010, None)
            .expect("revoke"),
        vec![(SessionId(5), 1_310)]
    );
}

pub(crate) fn a_login_upgrades_the_hash_it_verified_and_no_other(harness: &dyn Harness) {
    let store = open(harness);
    let mut old = super::account("a@example.com");
    old.password_hash = "pbkdf2_sha256$1000000$salt$hash=".into();
    let a = store.create_account(old).expect("create");
    let upgrade = |verified| PasswordUpgrade {
        verified,
        new_hash: Some("$argon2id$new"),
    };
    let mut record = session(a.id, 5_000);
    record.created_at = 42;
    let upgraded = store
        .create_session_upgrading(SessionId(1), &record, Some(upgrade(&a.password_hash)))
        .expect("login");
    assert_eq!(upgraded, Some(true));
    let after = store.account(a.id).expect("read").expect("a");
    assert_eq!(
        (after.password_hash.as_str(), after.last_login),
        ("$argon2id$new", Some(42)),
        "the new hash and the login, in one write"
    );
    assert!(store.session(SessionId(1)).expect("read").is_some());

    // A login that verified a hash the account no longer holds (a password
    // changed or reset while it hashed) records nothing: no session, no
    // login time, the new password kept.
    store
        .set_password(a.id, "$argon2id$changed".into(), 50, None)
        .expect("change");
    record.created_at = 60;
    let upgraded = store
        .create_session_upgrading(SessionId(2), &record, Some(upgrade(&a.password_hash)))
        .expect("login");
    assert_eq!(upgraded, None);
    let after = store.account(a.id).expect("read").expect("a");
    assert_eq!(
        (after.password_hash.as_str(), after.last_login),
        ("$argon2id$changed", Some(42))
    );
    assert!(store.session(SessionId(2)).expect("read").is_none());
    // The hash it holds now logs in, without an upgrade.
    let current = PasswordUpgrade {
        verified: "$argon2id$changed",
        new_hash: None,
    };
    assert_eq!(
        store
            .create_session_upgrading(SessionId(3), &record, Some(current))
            .expect("login"),
        Some(false)
    );
    assert!(store.session(SessionId(3)).expect("read").is_some());
    // Deactivated while it hashed: nothing either.
    store
        .update_account(a.id, 70, |acc| acc.is_active = false)
        .expect("deactivate");
    assert_eq!(
        store
            .create_session_upgrading(SessionId(4), &record, Some(current))
            .expect("login"),
        None
    );
    assert!(store.session(SessionId(4)).expect("read").is_none());
    // Without a password checked (a token exchange), the session is recorded.
    assert_eq!(
        store
            .create_session_upgrading(SessionId(5), &session(a.id, 5_000), None)
            .expect("session"),
        Some(false)
    );
    assert_eq!(
        store.account(a.id).expect("read").expect("a").password_hash,
        "$argon2id$changed"
    );
}
