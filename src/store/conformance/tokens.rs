//! Revocations, reset tokens, the purge, reopening and closing.

use super::{account, create, open, reopen, session, with_sessions, Harness, WINDOW};
use crate::store::{CreateAccountError, ResetRecord, StoreError};
use crate::tokens::SessionId;

fn reset(account_id: u64, expires_at: u64) -> ResetRecord {
    ResetRecord {
        account_id,
        created_at: 0,
        expires_at,
    }
}

pub(crate) fn revocations_are_inserted_listed_and_kept(harness: &dyn Harness) {
    let store = open(harness);
    let (s1, s2, s3) = (SessionId(1), SessionId(u128::MAX), SessionId(3));
    store
        .insert_revocations(&[(s1, 500), (s2, 1_500), (s3, 1_000)])
        .expect("insert");
    let in_force = |store: &std::sync::Arc<crate::store::Store>, now| {
        let mut list = store.revocations(now).expect("load");
        list.sort();
        list
    };
    assert_eq!(
        in_force(&store, 500),
        vec![(s1, 500), (s3, 1_000), (s2, 1_500)]
    );
    assert_eq!(
        in_force(&store, 1_000),
        vec![(s3, 1_000), (s2, 1_500)],
        "in force up to its time included"
    );
    assert_eq!(store.counts().expect("counts").revocations, 3);
    let store = reopen(harness, store);
    assert_eq!(in_force(&store, 1_001), vec![(s2, 1_500)]);
    assert_eq!(in_force(&store, 0).len(), 3);
}

pub(crate) fn a_reset_token_works_once_and_ends_every_session(harness: &dyn Harness) {
    let (store, a) = with_sessions(harness, &[5]);
    let record = reset(a.id, 1_000);
    store
        .create_reset_token(&[1u8; 32], &record)
        .expect("token");
    store
        .create_reset_token(&[2u8; 32], &record)
        .expect("older token");
    assert_eq!(
        store.reset_record(&[1u8; 32]).expect("read"),
        Some(record.clone())
    );
    assert_eq!(store.reset_record(&[9u8; 32]).expect("read"), None);
    let (updated, revoked) = store
        .use_reset_token(&[1u8; 32], 500, "new-hash".into())
        .expect("use")
        .expect("valid");
    assert_eq!(updated.password_hash, "new-hash");
    assert_eq!(updated.id, a.id);
    assert_eq!(
        store.account(a.id).expect("read").expect("a").password_hash,
        "new-hash"
    );
    assert_eq!(revoked, vec![(SessionId(5), 500 + WINDOW)]);
    assert_eq!(store.reset_record(&[1u8; 32]).expect("read"), None);
    assert!(
        store
            .use_reset_token(&[1u8; 32], 500, "x".into())
            .expect("use")
            .is_none(),
        "once"
    );
    assert!(
        store
            .use_reset_token(&[2u8; 32], 500, "x".into())
            .expect("use")
            .is_none(),
        "older die"
    );
    store
        .create_reset_token(&[3u8; 32], &record)
        .expect("token");
    assert!(
        store
            .use_reset_token(&[3u8; 32], 1_001, "x".into())
            .expect("use")
            .is_none(),
        "expired"
    );
    let (at_expiry, _) = store
        .use_reset_token(&[3u8; 32], 1_000, "last-second".into())
        .expect("use")
        .expect("valid up to its expiry included");
    assert_eq!(at_expiry.password_hash, "last-second");
}

pub(crate) fn a_reset_token_of_an_inactive_account_is_spent_for_nothing(harness: &dyn Harness) {
    let store = open(harness);
    let a = create(&store, "a@example.com");
    store
        .update_account(a.id, 10, |x| x.is_active = false)
        .expect("deactivate");
    store
        .create_reset_token(&[1u8; 32], &reset(a.id, 1_000))
        .expect("token");
    assert!(store
        .use_reset_token(&[1u8; 32], 500, "new-hash".into())
        .expect("use")
        .is_none());
    assert_eq!(
        store.account(a.id).expect("read").expect("a").password_hash,
        "x"
    );
    assert_eq!(
        store.reset_record(&[1u8; 32]).expect("read"),
        None,
        "the token is spent"
    );
}

pub(crate) fn purging_drops_what_has_expired(harness: &dyn Harness) {
    let store = open(harness);
    let a = create(&store, "a@example.com");
    store
        .create_session(SessionId(1), &session(a.id, 100))
        .expect("session");
    store
        .create_session(SessionId(2), &session(a.id, 10_000))
        .expect("session");
    let revoked = store
        .revoke_account_sessions(a.id, 50, Some(SessionId(2)))
        .expect("revoke");
    assert_eq!(revoked, vec![(SessionId(1), 350)]);
    store
        .create_reset_token(&[7u8; 32], &reset(a.id, 300))
        .expect("token");
    assert_eq!(store.purge_expired(200).expect("purge"), (1, 0, 0));
    assert!(store.session(SessionId(1)).expect("read").is_none());
    assert_eq!(store.purge_expired(400).expect("purge"), (0, 1, 1));
    let counts = store.counts().expect("counts");
    assert_eq!(
        (counts.sessions, counts.revocations, counts.reset_tokens),
        (1, 0, 0)
    );
    assert!(store.session(SessionId(2)).expect("read").is_some());
    assert!(
        store
            .revoke_account_sessions(a.id, 500, None)
            .expect("revoke")
            .len()
            == 1,
        "a purged session is no longer the account's"
    );
}

pub(crate) fn everything_survives_a_reopen(harness: &dyn Harness) {
    let store = open(harness);
    let a = create(&store, "a@example.com");
    store
        .insert_accounts(vec![account("bulk@example.com")])
        .expect("bulk");
    store.create_role("Admin", 3).expect("role");
    let mut live = session(a.id, 5_000);
    live.previous_jti = Some(u128::MAX - 1);
    live.rotated_at_ms = Some(10_500);
    store.create_session(SessionId(1), &live).expect("session");
    store
        .create_session(SessionId(2), &session(a.id, 5_000))
        .expect("session");
    store
        .update_session(SessionId(2), |r| r.revoked_at = Some(20))
        .expect("revoke");
    store
        .create_reset_token(&[1u8; 32], &reset(a.id, 1_000))
        .expect("token");
    let accounts = store.accounts().expect("list");
    let counts = store.counts().expect("counts");
    let revocations = store.revocations(0).expect("load");
    let sessions = [1, 2].map(|s| store.session(SessionId(s)).expect("read"));

    let store = reopen(harness, store);
    assert_eq!(store.accounts().expect("list"), accounts);
    assert_eq!(accounts[0].last_login, Some(10));
    assert_eq!(store.counts().expect("counts"), counts);
    assert_eq!(
        (
            counts.accounts,
            counts.sessions,
            counts.revocations,
            counts.reset_tokens
        ),
        (2, 2, 1, 1)
    );
    assert_eq!(store.revocations(0).expect("load"), revocations);
    assert_eq!(revocations, vec![(SessionId(2), 20 + WINDOW)]);
    assert_eq!(
        [1, 2].map(|s| store.session(SessionId(s)).expect("read")),
        sessions
    );
    assert_eq!(sessions[0], Some(live));
    assert_eq!(store.roles().expect("roles"), vec!["Admin", "Visiteur"]);
    assert_eq!(
        store.reset_record(&[1u8; 32]).expect("read"),
        Some(reset(a.id, 1_000))
    );
    assert_eq!(
        store
            .account_by_email("BULK@example.com")
            .expect("read")
            .map(|b| b.id),
        Some(2)
    );
    assert!(matches!(
        store.create_account(account("A@example.com")),
        Err(CreateAccountError::EmailTaken)
    ));
    assert_eq!(create(&store, "c@example.com").id, 3, "ids go on");
}

pub(crate) fn a_closed_store_refuses_calls(harness: &dyn Harness) {
    let store = open(harness);
    let a = create(&store, "a@example.com");
    store.close();
    assert!(matches!(store.account(a.id), Err(StoreError::Closed)));
    assert!(matches!(store.account_count(), Err(StoreError::Closed)));
    assert!(matches!(
        store.create_account(account("b@example.com")),
        Err(CreateAccountError::Store(StoreError::Closed))
    ));
    assert!(matches!(
        store.update_session(SessionId(1), |_| ()),
        Err(StoreError::Closed)
    ));
    store.close();
    drop(store);
    let store = open(harness);
    assert_eq!(store.account(a.id).expect("read"), Some(a));
    assert_eq!(
        store.account_count().expect("count"),
        1,
        "nothing else written"
    );
}
