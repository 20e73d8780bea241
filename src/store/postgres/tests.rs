//! The conformance suite on a real PostgreSQL server (`testing.rs`), and
//! what only this backend has: migrations, several replicas on one
//! database, the server going away.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use super::testing::{self, TestServer};
use super::*;
use crate::store::conformance::{account, conformance_tests, Harness};
use crate::store::Store;

/// A fresh database of the test server.
struct PgDatabase {
    url: DatabaseUrl,
}

impl PgDatabase {
    fn new() -> PgDatabase {
        PgDatabase {
            url: DatabaseUrl::new(testing::database()),
        }
    }

    fn open_store(&self, access_window: u64) -> StoreResult<PgStore> {
        let options = PgOptions {
            url: &self.url,
            pool_size: 4,
            ca_file: None,
        };
        PgStore::open(&options, access_window)
    }

    fn name(&self) -> String {
        self.url
            .settings()
            .ok()
            .and_then(|s| s.get_dbname().map(str::to_string))
            .unwrap_or_default()
    }
}

impl Harness for PgDatabase {
    fn open(&self, access_window: u64) -> Arc<Store> {
        Arc::new(self.open_store(access_window).expect("open"))
    }
}

mod conformance {
    use super::PgDatabase;
    super::conformance_tests!(PgDatabase::new());
}

fn server() -> &'static TestServer {
    testing::server()
}

#[test]
fn migrations_run_once_even_for_replicas_starting_together() {
    let db = Arc::new(PgDatabase::new());
    let start = Arc::new(Barrier::new(4));
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let (db, start) = (db.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                db.open_store(300).map(|_| ())
            })
        })
        .collect();
    for replica in opened {
        replica.join().expect("thread").expect("open");
    }
    let versions = server()
        .sql(
            &db.name(),
            "SELECT string_agg(version || ' ' || name, ',' ORDER BY version) FROM schema_version",
        )
        .expect("psql");
    assert_eq!(
        versions,
        "1 initial,2 attempts,3 signing_keys,4 legacy_tokens"
    );
    db.open_store(300).expect("open again");
    let tables = server()
        .sql(
            &db.name(),
            "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables \
             WHERE schemaname = 'public'",
        )
        .expect("psql");
    assert_eq!(
        tables,
        "accounts,attempts,imported_accounts,legacy_tokens,reset_tokens,revocations,roles,schema_version,sessions,\
         signing_keys"
    );
}

#[test]
fn a_schema_newer_than_the_binary_is_refused() {
    let db = PgDatabase::new();
    db.open_store(300).expect("open");
    server()
        .sql(
            &db.name(),
            "INSERT INTO schema_version (version, name) VALUES (99, 'future')",
        )
        .expect("psql");
    match db.open_store(300) {
        Err(StoreError::Db(message)) => assert!(message.contains("version 99"), "{message}"),
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("opened a newer schema"),
    }
}

#[test]
fn two_replicas_registering_one_email_make_one_account() {
    let db = PgDatabase::new();
    let replicas: Vec<Arc<Store>> = (0..2).map(|_| db.open(300)).collect();
    for round in 0..5 {
        let start = Arc::new(Barrier::new(2));
        let threads: Vec<_> = replicas
            .iter()
            .enumerate()
            .map(|(i, store)| {
                let (store, start) = (store.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let email = if i == 0 {
                        "same@example.com"
                    } else {
                        " SAME@example.com"
                    };
                    store.create_account(account(email))
                })
            })
            .collect();
        let outcomes: Vec<_> = threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        let won = outcomes.iter().filter(|o| o.is_ok()).count();
        let taken = outcomes
            .iter()
            .filter(|o| matches!(o, Err(CreateAccountError::EmailTaken)))
            .count();
        assert_eq!((won, taken), (1, 1), "round {round}: {outcomes:?}");
        let winner = outcomes
            .into_iter()
            .find_map(Result::ok)
            .expect("one account");
        assert_eq!(
            replicas[1]
                .account_by_email("same@example.com")
                .expect("read")
                .map(|a| a.id),
            Some(winner.id),
            "the other replica sees it"
        );
        replicas[0].delete_account(winner.id, 10).expect("delete");
    }
}

#[test]
fn revocations_get_growing_sequence_numbers() {
    let db = PgDatabase::new();
    let store = db.open(300);
    store
        .insert_revocations(&[(SessionId(1), 500), (SessionId(2), 600)])
        .expect("insert");
    store
        .insert_revocations(&[(SessionId(1), 700), (SessionId(1), 800)])
        .expect("again, twice in one batch");
    let seqs = server()
        .sql(
            &db.name(),
            "SELECT string_agg(encode(session_id, 'hex') || '=' || until, ',' ORDER BY seq) \
             FROM revocations",
        )
        .expect("psql");
    assert_eq!(
        seqs,
        format!("{}=600,{}=800", SessionId(2), SessionId(1)),
        "written again: the newest time, and a sequence number after the others"
    );
    assert_eq!(
        store.revocations(0).expect("load"),
        vec![(SessionId(2), 600), (SessionId(1), 800)]
    );
}

#[test]
fn an_unreachable_server_is_unavailable_not_a_hang() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let url = DatabaseUrl::new(format!("postgres://vigile:pw@127.0.0.1:{port}/nowhere"));
    let options = PgOptions {
        url: &url,
        pool_size: 2,
        ca_file: None,
    };
    let started = Instant::now();
    match PgStore::open(&options, 300) {
        Err(StoreError::Unavailable(message)) => {
            assert!(!message.contains("pw@"), "{message}");
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("opened a store on a closed port"),
    }
    assert!(started.elapsed() < Duration::from_secs(6));
}

/// Whether the store's connections are encrypted.
fn encrypted(store: &PgStore) -> bool {
    store
        .read(async |c| {
            let row = c
                .query_one(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
                .await?;
            Ok(row.try_get::<_, bool>(0)?)
        })
        .expect("pg_stat_ssl")
}

#[test]
fn sslmode_require_connects_through_tls_to_a_verified_server() {
    let url = |query: &str| {
        DatabaseUrl::new(format!(
            "postgres://postgres@localhost:{}/postgres{query}",
            server().port()
        ))
    };
    let ca = server().ca_file();
    let open = |url: &DatabaseUrl, ca_file: Option<&std::path::Path>| {
        let options = PgOptions {
            url,
            pool_size: 1,
            ca_file,
        };
        PgStore::open(&options, 300)
    };
    let tls = open(&url("?sslmode=require"), Some(&ca)).expect("TLS with the test authority");
    assert!(encrypted(&tls));
    assert!(
        open(&url("?sslmode=require"), None).is_err(),
        "a certificate of an unknown authority is refused"
    );
    let wrong_name = DatabaseUrl::new(format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=require",
        server().port()
    ));
    assert!(
        open(&wrong_name, Some(&ca)).is_err(),
        "a certificate for another name is refused"
    );
    let plain = open(&url(""), Some(&ca)).expect("plain");
    assert!(!encrypted(&plain), "without sslmode=require: plain TCP");
}

#[test]
fn a_store_dropped_on_an_async_task_does_not_panic() {
    let db = PgDatabase::new();
    let store = db.open(300);
    store
        .create_account(account("a@example.com"))
        .expect("create");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async move { drop(store) });
}
