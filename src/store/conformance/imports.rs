//! Imports from another system (`vigile import django`): ids kept, a second
//! run changing nothing, hashes upgraded here kept, conflicts refused whole,
//! dry runs writing nothing, and legacy refresh tokens exchanged once.

use std::sync::Arc;

use super::{account, create, open, reopen, session, Harness};
use crate::store::{
    AccountRecord, ImportBatch, ImportError, ImportReport, LegacyToken, LegacyUse, Store,
};
use crate::tokens::SessionId;

fn imported(id: u64, email: &str) -> AccountRecord {
    AccountRecord {
        id,
        password_hash: "pbkdf2_sha256$1000000$salt$hash".into(),
        date_joined: 1_600_000_000 + id,
        ..account(email)
    }
}

fn batch(accounts: Vec<AccountRecord>) -> ImportBatch {
    ImportBatch {
        accounts,
        roles: vec!["Admin".into()],
        blacklisted: vec![LegacyToken {
            jti: "0123abcd".into(),
            expires_at: 9_000,
        }],
    }
}

fn import(store: &Arc<Store>, batch: &ImportBatch, dry_run: bool) -> ImportReport {
    store.import_accounts(batch, 100, dry_run).expect("import")
}

pub(crate) fn imports_keep_ids_and_a_second_run_changes_nothing(harness: &dyn Harness) {
    let store = open(harness);
    let mut gerant = imported(42, "gerant@example.com");
    gerant.role = "Gérant".into();
    let first = batch(vec![imported(7, "jean@example.com"), gerant]);

    let dry = import(&store, &first, true);
    assert_eq!((dry.accounts_added, dry.roles_added), (2, 3));
    assert_eq!(
        store.account_count().expect("count"),
        0,
        "a dry run writes nothing"
    );
    assert!(!store.role_exists("Admin").expect("role"));

    let done = import(&store, &first, false);
    assert_eq!(
        (
            done.accounts_added,
            done.blacklisted_added,
            done.roles_added
        ),
        (2, 1, 3)
    );
    let jean = store.account(7).expect("read").expect("kept id");
    assert_eq!(jean.email, "jean@example.com");
    assert_eq!(jean.password_hash, "pbkdf2_sha256$1000000$salt$hash");
    assert!(store.role_exists("Gérant").expect("role"));
    // New accounts come after the highest imported id.
    assert_eq!(create(&store, "new@example.com").id, 43);

    let again = import(&store, &first, false);
    assert_eq!(
        (
            again.accounts_added,
            again.accounts_updated,
            again.accounts_unchanged
        ),
        (0, 0, 2)
    );
    assert_eq!((again.roles_added, again.blacklisted_added), (0, 0));

    // A login here upgraded jean's hash: a later import keeps it, and
    // takes the rest of the other system's changes.
    let own = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_string();
    store
        .update_account(7, 100, |a| a.password_hash = own.clone())
        .expect("update");
    let mut renamed = imported(7, "Jean.Dupont@example.com");
    renamed.last_name = "Durand".into();
    let report = import(&store, &batch(vec![renamed]), false);
    assert_eq!(report.accounts_updated, 1);
    let jean = store.account(7).expect("read").expect("kept");
    assert_eq!(
        (jean.last_name.as_str(), jean.password_hash.as_str()),
        ("Durand", own.as_str())
    );
    assert_eq!(
        store
            .account_by_email("jean.dupont@EXAMPLE.com")
            .expect("read")
            .map(|a| a.id),
        Some(7)
    );
    assert!(store
        .account_by_email("jean@example.com")
        .expect("read")
        .is_none());
    // Only what the import wrote may be named by the other system's tokens.
    assert_eq!(
        store
            .imported_account(7)
            .expect("read")
            .map(|a| a.account.id),
        Some(7)
    );
    assert!(store.imported_account(43).expect("read").is_none());
    assert!(store.imported_account(99).expect("read").is_none());
    let store = reopen(harness, store);
    assert_eq!(store.account_count().expect("count"), 3);
    assert!(store.imported_account(42).expect("read").is_some());
}

pub(crate) fn an_import_that_conflicts_writes_nothing(harness: &dyn Harness) {
    let store = open(harness);
    let native = create(&store, "native@example.com");
    // Another account under an id this store gave.
    let clash = batch(vec![
        imported(50, "fine@example.com"),
        imported(native.id, "other@example.com"),
    ]);
    assert!(matches!(
        store.import_accounts(&clash, 100, false),
        Err(ImportError::IdTaken { .. })
    ));
    // Even joined in the same second: an account made here is not merged.
    let mut same_second = imported(native.id, "other@example.com");
    same_second.date_joined = native.date_joined;
    assert!(matches!(
        store.import_accounts(&batch(vec![same_second]), 100, false),
        Err(ImportError::IdTaken { .. })
    ));
    // An email another id holds.
    let taken = batch(vec![
        imported(50, "fine@example.com"),
        imported(51, "NATIVE@example.com"),
    ]);
    match store.import_accounts(&taken, 100, false) {
        Err(ImportError::EmailTaken { id: 51, other, .. }) => assert_eq!(other, native.id),
        other => panic!("expected EmailTaken, got {other:?}"),
    }
    assert_eq!(store.account_count().expect("count"), 1);
    assert!(store.account(50).expect("read").is_none());
}

pub(crate) fn an_import_that_deactivates_revokes_the_sessions(harness: &dyn Harness) {
    let store = open(harness);
    import(&store, &batch(vec![imported(3, "a@example.com")]), false);
    store
        .create_session(SessionId(77), &session(3, 5_000))
        .expect("session");
    let mut inactive = imported(3, "a@example.com");
    inactive.is_active = false;
    let report = import(&store, &batch(vec![inactive]), false);
    assert_eq!(report.revoked, [(SessionId(77), 100 + super::WINDOW)]);
    let session = store.session(SessionId(77)).expect("read").expect("kept");
    assert_eq!(session.revoked_at, Some(100));
}

pub(crate) fn a_legacy_refresh_token_is_exchanged_once(harness: &dyn Harness) {
    let store = open(harness);
    import(&store, &batch(vec![imported(3, "a@example.com")]), false);
    let token = |jti: &str| LegacyToken {
        jti: jti.into(),
        expires_at: 9_000,
    };
    assert_eq!(
        store
            .use_legacy_token(&token("0123abcd"), Some(SessionId(1)))
            .expect("use"),
        LegacyUse::Blacklisted
    );
    let outcomes: Vec<LegacyUse> = std::thread::scope(|s| {
        let racers: Vec<_> = (1..=4u128)
            .map(|n| {
                let store = &store;
                let token = &token;
                s.spawn(move || {
                    store
                        .use_legacy_token(&token("fresh"), Some(SessionId(n)))
                        .expect("use")
                })
            })
            .collect();
        racers
            .into_iter()
            .map(|r| r.join().expect("thread"))
            .collect()
    });
    assert_eq!(
        outcomes.iter().filter(|u| **u == LegacyUse::Fresh).count(),
        1,
        "{outcomes:?}"
    );
    // The others learn the session the winner exchanged it for.
    let winner = (1..=4u128)
        .zip(&outcomes)
        .find(|(_, u)| **u == LegacyUse::Fresh)
        .map(|(n, _)| SessionId(n));
    assert!(outcomes
        .iter()
        .all(|u| *u == LegacyUse::Fresh || *u == LegacyUse::Used(winner)));
    // Spent by a logout: used, for no session.
    assert_eq!(
        store.use_legacy_token(&token("logout"), None).expect("use"),
        LegacyUse::Fresh
    );
    assert_eq!(
        store
            .use_legacy_token(&token("logout"), Some(SessionId(9)))
            .expect("use"),
        LegacyUse::Used(None)
    );
    // Expired rows go with the purge; the token is refused anyway by then.
    store.purge_expired(9_001).expect("purge");
    let store = reopen(harness, store);
    assert_eq!(
        store.use_legacy_token(&token("fresh"), None).expect("use"),
        LegacyUse::Fresh
    );
}

pub(crate) fn revoking_every_session_cuts_off_the_imported_accounts_tokens(harness: &dyn Harness) {
    let store = open(harness);
    import(&store, &batch(vec![imported(3, "a@example.com")]), false);
    let cut_off = |store: &Arc<Store>| store.imported_account(3).expect("read").map(|a| a.cut_off);
    assert_eq!(cut_off(&store), Some(0));
    store
        .revoke_account_sessions(3, 500, None)
        .expect("logout all");
    assert_eq!(cut_off(&store), Some(500));
    store
        .set_password(3, "$argon2id$new".into(), 700, Some(SessionId(1)))
        .expect("change");
    assert_eq!(cut_off(&store), Some(700));
    // A later import keeps it.
    import(&store, &batch(vec![imported(3, "a@example.com")]), false);
    let store = reopen(harness, store);
    assert_eq!(cut_off(&store), Some(700));
}
