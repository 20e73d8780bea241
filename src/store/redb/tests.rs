//! The conformance suite on a real redb file, and what only redb has: the
//! file itself, its lock and its on-disk format.

use std::sync::Arc;

use redb::{ReadableTable, TableDefinition};

use super::*;
use crate::store::conformance::{account, conformance_tests, Harness};
use crate::store::Store;

/// A redb file in a temporary folder of its own.
struct RedbFile(tempfile::TempDir);

impl RedbFile {
    fn new() -> RedbFile {
        RedbFile(tempfile::tempdir().expect("tempdir"))
    }
}

impl Harness for RedbFile {
    fn open(&self, access_window: u64) -> Arc<Store> {
        Arc::new(RedbStore::open(&self.0.path().join("s.redb"), access_window).expect("open"))
    }
}

mod conformance {
    use super::RedbFile;
    super::conformance_tests!(RedbFile::new());
}

#[test]
fn a_session_record_written_in_whole_seconds_still_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open(&dir.path().join("s.redb"), 300).expect("open");
    let old = br#"{"account_id":1,"created_at":10,"expires_at":5000,"refresh_jti":2,"previous_jti":1,"rotated_at":100,"revoked_at":null}"#;
    store
        .write(|txn| {
            txn.open_table(SESSIONS)?.insert(77u128, old.as_slice())?;
            StoreResult::Ok(())
        })
        .expect("insert");
    let store: Arc<Store> = Arc::new(store);
    let record = store.session(SessionId(77)).expect("read").expect("found");
    assert_eq!((record.rotated_at, record.rotated_at_ms), (100, None));
    assert_eq!(record.rotated_at_millis(), 100_000);
    let ((), _) = store
        .update_session(SessionId(77), |r| {
            r.rotated_at = 200;
            r.rotated_at_ms = Some(200_500);
        })
        .expect("update")
        .expect("found");
    let record = store.session(SessionId(77)).expect("read").expect("found");
    assert_eq!(record.rotated_at_millis(), 200_500);
    assert_eq!(record.rotated_at, 200, "seconds are still written");
}

#[test]
fn the_file_is_private_and_survives_reopening() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested/s.redb");
    {
        let store = RedbStore::open(&path, 300).expect("open");
        store
            .create_account(account("a@example.com"))
            .expect("create");
        assert!(matches!(
            RedbStore::open(&path, 300),
            Err(StoreError::Locked)
        ));
    }
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let store = RedbStore::open(&path, 300).expect("reopen");
    assert_eq!(store.account_count().expect("count"), 1);
}

/// Every row of a table, as (key, value) through `f`.
fn rows<K: redb::Key + 'static, V: redb::Value + 'static, T>(
    store: &RedbStore,
    table: TableDefinition<K, V>,
    f: impl Fn(K::SelfType<'_>, V::SelfType<'_>) -> T,
) -> Vec<T> {
    store
        .read(|txn| {
            let mut out = Vec::new();
            for row in txn.open_table(table)?.iter()? {
                let (k, v) = row?;
                out.push(f(k.value(), v.value()));
            }
            Ok(out)
        })
        .expect("rows")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

/// Files written by earlier versions must open: the table names, key types
/// and JSON records stay exactly these.
#[test]
fn the_on_disk_format_stays_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open(&dir.path().join("s.redb"), 300).expect("open");
    let mut new = account(" Dev@Example.com");
    new.phone = Some("0601".into());
    store.create_account(new).expect("create");
    let mut session = SessionRecord {
        account_id: 1,
        created_at: 10,
        expires_at: 5_000,
        refresh_jti: 2,
        previous_jti: Some(1),
        rotated_at: 100,
        revoked_at: None,
        rotated_at_ms: None,
    };
    store
        .create_session(SessionId(7), &session)
        .expect("session");
    session.rotated_at_ms = Some(100_500);
    store
        .create_session(SessionId(8), &session)
        .expect("session");
    store
        .revoke_account_sessions(1, 200, Some(SessionId(7)))
        .expect("revoke");
    let reset = ResetRecord {
        account_id: 1,
        created_at: 3,
        expires_at: 4,
    };
    store.create_reset_token(&[5u8; 4], &reset).expect("token");

    assert_eq!(
        rows(&store, ACCOUNTS, |k, v| (k, text(v))),
        vec![(
            1,
            r#"{"id":1,"email":"Dev@Example.com","password_hash":"x","first_name":"Jean","last_name":"Dupont","gender":"H","phone":"0601","role":"Visiteur","is_active":true,"date_joined":1,"last_login":10}"#
                .to_string()
        )]
    );
    assert_eq!(
        rows(&store, EMAILS, |k, v| (k.to_string(), v)),
        vec![("dev@example.com".to_string(), 1)]
    );
    assert_eq!(
        rows(&store, ROLES, |k, v| (k.to_string(), v)),
        vec![("Visiteur".to_string(), 1)]
    );
    assert_eq!(
        rows(&store, SESSIONS, |k, v| (k, text(v))),
        vec![
            (
                7,
                r#"{"account_id":1,"created_at":10,"expires_at":5000,"refresh_jti":2,"previous_jti":1,"rotated_at":100,"revoked_at":null}"#
                    .to_string()
            ),
            (
                8,
                r#"{"account_id":1,"created_at":10,"expires_at":5000,"refresh_jti":2,"previous_jti":1,"rotated_at":100,"revoked_at":200,"rotated_at_ms":100500}"#
                    .to_string()
            ),
        ]
    );
    assert_eq!(
        rows(&store, ACCOUNT_SESSIONS, |k, ()| k),
        vec![(1, 7), (1, 8)]
    );
    assert_eq!(rows(&store, REVOKED, |k, v| (k, v)), vec![(8, 500)]);
    assert_eq!(
        rows(&store, RESET_TOKENS, |k, v| (k.to_vec(), text(v))),
        vec![(
            vec![5u8; 4],
            r#"{"account_id":1,"created_at":3,"expires_at":4}"#.to_string()
        )]
    );
    assert_eq!(
        rows(&store, META, |k, v| (k.to_string(), v)),
        vec![("next_account_id".to_string(), 2)]
    );
}

#[test]
fn the_file_holding_the_signing_keys_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data/s.redb");
    let store = RedbStore::open(&path, 300).expect("open");
    store
        .update_signing_keys_dyn(Box::new(|keys| {
            keys.push(crate::tokens::StoredKey {
                kid: "k".into(),
                algorithm: "HS256".into(),
                state: crate::tokens::KeyState::Active,
                created_at: Some(1),
                deactivated_at: None,
                retired_at: None,
                material: Some("plain:c2VjcmV0".into()),
            })
        }))
        .expect("store a key");
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}
