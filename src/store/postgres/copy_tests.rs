//! `vigile store copy` (`store/copy.rs`): a redb store copied into a real
//! PostgreSQL database, twice, table by table.

use std::sync::Arc;

use super::testing;
use super::{PgOptions, PgStore};
use crate::config::DatabaseUrl;
use crate::store::conformance::account;
use crate::store::redb::RedbStore;
use crate::store::{copy, Copied, SessionRecord, Store, StoreBackend};
use crate::tokens::SessionId;

const WINDOW: u64 = 600;

fn postgres() -> Arc<Store> {
    let url = DatabaseUrl::new(testing::database());
    let options = PgOptions {
        url: &url,
        pool_size: 2,
        ca_file: None,
    };
    Arc::new(PgStore::open(&options, WINDOW).expect("open postgres"))
}

fn session(account_id: u64, refresh_jti: u128) -> SessionRecord {
    SessionRecord {
        account_id,
        created_at: 100,
        expires_at: 9_000_000_000,
        refresh_jti,
        previous_jti: Some(refresh_jti + 1),
        rotated_at: 150,
        revoked_at: None,
        rotated_at_ms: Some(150_250),
    }
}

/// A redb store with every kind of row: three accounts (the last deleted,
/// so the next id is 4), a role, live, revoked and deleted-with-their-
/// account sessions, an extra revocation, and a reset token.
fn source(dir: &tempfile::TempDir) -> RedbStore {
    let redb = RedbStore::open(&dir.path().join("vigile.redb"), WINDOW).expect("redb");
    for email in ["a@example.com", "b@example.com", "gone@example.com"] {
        let mut a = account(email);
        a.password_hash = format!("$argon2id$hash-of-{email}");
        redb.create_account(a).expect("create");
    }
    redb.create_role("Admin", 42).expect("role");
    redb.create_session(SessionId(0x11), &session(1, 0xA1))
        .expect("session");
    redb.create_session(SessionId(0x22), &session(2, 0xB1))
        .expect("session");
    redb.create_session(SessionId(0x33), &session(3, 0xC1))
        .expect("session");
    let store: &Store = &redb;
    store
        .update_session(SessionId(0x22), |s| s.revoked_at = Some(200))
        .expect("revoke");
    redb.delete_account(3, 300).expect("delete");
    redb.insert_revocations(&[(SessionId(0x44), 5)])
        .expect("old revocation");
    redb.create_reset_token(
        &[7; 32],
        &crate::store::ResetRecord {
            account_id: 1,
            created_at: 400,
            expires_at: 9_000_000_000,
        },
    )
    .expect("reset token");
    // An account imported from Django (id 10), a token Django blacklisted,
    // one exchanged here, and the account's cut-off.
    let django = crate::store::AccountRecord {
        id: 10,
        password_hash: "pbkdf2_sha256$1000000$salt$hash".into(),
        date_joined: 77,
        ..account("django@example.com")
    };
    let batch = crate::store::ImportBatch {
        accounts: vec![django],
        roles: Vec::new(),
        blacklisted: vec![crate::store::LegacyToken {
            jti: "blacklisted".into(),
            expires_at: 9_000_000_000,
        }],
    };
    redb.import_accounts(&batch, 500, false).expect("import");
    let exchanged = crate::store::LegacyToken {
        jti: "exchanged".into(),
        expires_at: 9_000_000_000,
    };
    redb.use_legacy_token(&exchanged, Some(SessionId(0x55)))
        .expect("exchange");
    redb.revoke_account_sessions(10, 600, None)
        .expect("cut-off");
    redb
}

#[test]
fn a_redb_store_is_copied_whole_and_a_second_copy_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redb = source(&dir);
    let pg = postgres();
    let expected = redb.contents().expect("redb contents");
    assert_eq!(expected.accounts.len(), 3);
    assert_eq!(expected.next_account_id, 11);
    assert_eq!(expected.imported_accounts, [(10, 77, 600)]);
    assert_eq!(expected.legacy_tokens.len(), 2);
    assert_eq!(expected.sessions.len(), 3);
    assert_eq!(expected.revocations.len(), 3);

    let first = copy(&redb, pg.as_ref()).expect("copy");
    assert_eq!(first.accounts, Copied::of(3, 3, 0));
    assert_eq!(first.imported_accounts, Copied::of(1, 1, 0));
    assert_eq!(first.legacy_tokens, Copied::of(2, 2, 0));
    assert_eq!(first.roles, Copied::of(2, 2, 0), "Visiteur and Admin");
    assert_eq!(first.sessions, Copied::of(3, 3, 0));
    assert_eq!(first.revocations, Copied::of(3, 3, 0));
    assert_eq!(first.reset_tokens, Copied::of(1, 1, 0));
    assert_eq!(pg.contents().expect("pg contents"), expected, "every table");
    let seq = pg.revocation_seq().expect("seq");
    assert!(seq > 0, "revocations are numbered for the replicas");

    let second = copy(&redb, pg.as_ref()).expect("copy again");
    for (table, c) in [
        ("accounts", second.accounts),
        ("roles", second.roles),
        ("sessions", second.sessions),
        ("revocations", second.revocations),
        ("reset_tokens", second.reset_tokens),
        ("imported", second.imported_accounts),
        ("legacy_tokens", second.legacy_tokens),
    ] {
        assert_eq!((c.added, c.updated), (0, 0), "{table}: {second}");
    }
    assert_eq!(second.accounts.unchanged, 3);
    // The exchange and the cut-off came along: Django's tokens are judged
    // on PostgreSQL as they were on redb.
    assert_eq!(
        pg.use_legacy_token(&exchanged(), None).expect("use"),
        crate::store::LegacyUse::Used(Some(SessionId(0x55)))
    );
    assert_eq!(
        pg.imported_account(10).expect("read").map(|a| a.cut_off),
        Some(600)
    );
    assert_eq!(pg.contents().expect("pg contents"), expected);
    assert_eq!(pg.revocation_seq().expect("seq"), seq, "nothing renumbered");

    // A change in the source is carried over as an update.
    (&redb as &Store)
        .update_account(2, 500, |a| a.first_name = "Paule".into())
        .expect("update");
    let third = copy(&redb, pg.as_ref()).expect("copy a change");
    assert_eq!(third.accounts, Copied::of(3, 0, 1));
    assert_eq!(
        pg.account(2).expect("read").expect("there").first_name,
        "Paule"
    );

    // Ids go on after every id the source gave (3 was deleted there).
    let next = pg
        .create_account(account("new@example.com"))
        .expect("create");
    assert_eq!(next.id, 11);
}

fn exchanged() -> crate::store::LegacyToken {
    crate::store::LegacyToken {
        jti: "exchanged".into(),
        expires_at: 9_000_000_000,
    }
}

#[test]
fn an_email_another_id_holds_in_the_target_fails_the_whole_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redb = source(&dir);
    let pg = postgres();
    let mut other = account("b@example.com");
    other.date_joined = 99;
    pg.create_account(other).expect("create");
    let before = pg.contents().expect("contents");
    let err = copy(&redb, pg.as_ref()).expect_err("another account under id 1");
    assert!(err.to_string().contains("another one"), "{err}");
    assert_eq!(pg.contents().expect("contents"), before, "nothing copied");

    // Under an id of its own, the address is still another account's.
    let dir = tempfile::tempdir().expect("tempdir");
    let pg = postgres();
    pg.create_account(account("x@example.com")).expect("create");
    pg.create_account(account("b@example.com")).expect("create");
    pg.delete_account(1, 5).expect("delete");
    let redb = RedbStore::open(&dir.path().join("b.redb"), WINDOW).expect("redb");
    redb.create_account(account("b@example.com"))
        .expect("create");
    let err = copy(&redb, pg.as_ref()).expect_err("email conflict");
    assert!(err.to_string().contains("b@example.com"), "{err}");
}

#[test]
fn a_redb_store_is_no_copy_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redb = source(&dir);
    let other = RedbStore::open(&dir.path().join("other.redb"), WINDOW).expect("redb");
    let err = copy(&redb, &other).expect_err("refused");
    assert!(err.to_string().contains("postgres"), "{err}");
}
