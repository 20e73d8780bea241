//! Replicas following each other's revocations on a real PostgreSQL server:
//! the notification, the numbers in commit order, the database going away
//! and coming back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::testing;
use super::*;
use crate::store::{Follow, SyncStatus};

fn open(url: &DatabaseUrl) -> PgStore {
    let options = PgOptions {
        url,
        pool_size: 2,
        ca_file: None,
    };
    PgStore::open(&options, 300).expect("open")
}

/// `store` follows from now on: what it applied, and its status.
fn follow(
    store: &PgStore,
    max_staleness: Duration,
) -> (Arc<Mutex<Vec<SequencedRevocation>>>, Arc<SyncStatus>) {
    let applied = Arc::new(Mutex::new(Vec::new()));
    let status = Arc::new(SyncStatus::new(max_staleness));
    let sink = applied.clone();
    store
        .follow(Follow {
            from_seq: store.revocation_seq().expect("seq"),
            sync_interval: Duration::from_millis(100),
            apply: Box::new(move |batch| sink.lock().extend_from_slice(batch)),
            status: status.clone(),
        })
        .expect("follow");
    (applied, status)
}

fn wait_for(what: &str, within: Duration, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_revocation_written_by_one_replica_reaches_the_other_at_once() {
    let url = DatabaseUrl::new(testing::database());
    let (a, b) = (open(&url), open(&url));
    a.insert_revocations(&[(SessionId(1), 500)])
        .expect("before");
    let (applied, status) = follow(&b, Duration::from_secs(30));
    a.insert_revocations(&[(SessionId(2), 600), (SessionId(3), 700)])
        .expect("revoke");
    // Notified, not polled: well within the 100 ms poll.
    wait_for("the notification", Duration::from_secs(1), || {
        applied.lock().len() == 2
    });
    let got = applied.lock().clone();
    assert_eq!(
        got.iter().map(|r| r.revocation).collect::<Vec<_>>(),
        vec![(SessionId(2), 600), (SessionId(3), 700)],
        "only what came after the number it started from"
    );
    assert!(got[0].seq < got[1].seq);
    let now_us = crate::unix_now() * 1_000_000;
    assert!(got[0].recorded_at_us.abs_diff(now_us) < 5_000_000);
    assert!(status.is_up() && !status.is_stale());
    assert_eq!(
        b.revocations_since(got[0].seq, 10).expect("since"),
        got[1..]
    );
    b.close();
}

#[test]
fn sequence_numbers_become_visible_in_commit_order() {
    let url = DatabaseUrl::new(testing::database());
    let (a, b) = (Arc::new(open(&url)), open(&url));
    // A takes its number, then holds its transaction open a while.
    let slow = {
        let a = a.clone();
        std::thread::spawn(move || {
            a.write(async |txn| {
                revocations::insert(txn, &[(SessionId(1), 500)]).await?;
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok::<_, StoreError>(Instant::now())
            })
            .expect("slow write")
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    b.insert_revocations(&[(SessionId(2), 600)])
        .expect("fast write");
    let fast_done = Instant::now();
    let slow_done = slow.join().expect("thread");
    assert!(
        fast_done >= slow_done,
        "the second writer waits for the first to commit"
    );
    let all = b.revocations_since(0, 10).expect("since");
    assert_eq!(
        all.iter().map(|r| r.revocation.0).collect::<Vec<_>>(),
        vec![SessionId(1), SessionId(2)],
        "numbered in the order they committed"
    );
}

#[test]
fn a_follower_goes_stale_without_the_database_and_catches_up_when_it_returns() {
    let url = DatabaseUrl::new(testing::database());
    let name = url
        .settings()
        .ok()
        .and_then(|s| s.get_dbname().map(str::to_string))
        .expect("name");
    let (a, b) = (open(&url), open(&url));
    let (applied, status) = follow(&b, Duration::from_millis(400));
    let server = testing::server();
    let cut = format!(
        "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
         SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{name}'"
    );
    server.sql("postgres", &cut).expect("cut");
    wait_for("down", Duration::from_secs(2), || !status.is_up());
    wait_for("stale", Duration::from_secs(2), || status.is_stale());
    assert!(status.last_error().is_some());
    server
        .sql(
            "postgres",
            &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"),
        )
        .expect("restore");
    // Written once the database is back (A's pooled connection may be one
    // the cut closed: the first call may fail).
    a.insert_revocations(&[(SessionId(9), 900)])
        .or_else(|_| {
            std::thread::sleep(Duration::from_millis(200));
            a.insert_revocations(&[(SessionId(9), 900)])
        })
        .expect("revoke after");
    wait_for("caught up", Duration::from_secs(3), || {
        applied
            .lock()
            .iter()
            .any(|r| r.revocation.0 == SessionId(9))
    });
    assert!(status.is_up() && !status.is_stale());
    b.close();
}

#[test]
fn two_replicas_taking_attempts_at_once_never_pass_the_limit() {
    let url = DatabaseUrl::new(testing::database());
    let replicas = [Arc::new(open(&url)), Arc::new(open(&url))];
    let window = Duration::from_secs(60);
    let start = Arc::new(std::sync::Barrier::new(16));
    let takers: Vec<_> = (0..16)
        .map(|i| {
            let (store, start) = (replicas[i % 2].clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                store.take_attempt("login_account", "victim@example.com", 5, window)
            })
        })
        .collect();
    let outcomes: Vec<Option<u64>> = takers
        .into_iter()
        .map(|t| t.join().expect("thread").expect("take"))
        .collect();
    assert_eq!(outcomes.iter().filter(|o| o.is_none()).count(), 5);
    for wait in outcomes.iter().flatten() {
        assert!((1..=60).contains(wait), "{wait}");
    }
    // Scopes and keys count apart.
    let other = |i: usize, scope, key| replicas[i].take_attempt(scope, key, 5, window);
    assert_eq!(
        other(0, "reset_email", "victim@example.com").expect("take"),
        None
    );
    assert_eq!(
        other(1, "login_account", "other@example.com").expect("take"),
        None
    );
    // One given back on B: one more taken on A, then full again.
    replicas[1]
        .give_back_attempt("login_account", "victim@example.com")
        .expect("give back");
    let take = |i: usize| {
        replicas[i]
            .take_attempt("login_account", "victim@example.com", 5, window)
            .expect("take")
    };
    assert_eq!(take(0), None);
    assert!(take(1).is_some());
}

#[test]
fn an_attempt_window_ends_on_the_database_clock() {
    let url = DatabaseUrl::new(testing::database());
    let (a, b) = (open(&url), open(&url));
    let window = Duration::from_millis(300);
    assert_eq!(
        a.take_attempt("login_account", "k", 1, window)
            .expect("take"),
        None
    );
    assert_eq!(
        b.take_attempt("login_account", "k", 1, window)
            .expect("take"),
        Some(1)
    );
    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(
        b.take_attempt("login_account", "k", 1, window)
            .expect("take"),
        None
    );
    // Ended windows are purged with the rest.
    std::thread::sleep(Duration::from_millis(350));
    a.purge_expired(crate::unix_now()).expect("purge");
    let rows = a
        .read(async |c| housekeeping::rows(c, "attempts").await)
        .expect("rows");
    assert_eq!(rows, 0);
}

#[test]
fn two_reset_tokens_of_one_account_used_at_once_on_two_replicas_do_not_deadlock() {
    let url = DatabaseUrl::new(testing::database());
    let (a, b, holder) = (open(&url), open(&url), open(&url));
    let account = a
        .create_account(crate::store::conformance::account("reset@example.com"))
        .expect("account");
    let now = crate::unix_now();
    let record = ResetRecord {
        account_id: account.id,
        created_at: now,
        expires_at: now + 3_600,
    };
    for hash in [[1u8; 32], [2u8; 32]] {
        a.create_reset_token(&hash, &record).expect("token");
    }
    let waiting = "SELECT count(*) FROM pg_stat_activity \
                   WHERE datname = current_database() AND wait_event_type = 'Lock'";
    let (locked, is_locked) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        // A third connection holds the account until both replicas wait:
        // then each has done what it does before it needs the account.
        let held = scope.spawn(|| {
            holder.write(async |txn| {
                let id = int(account.id)?;
                execute(
                    txn,
                    "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE",
                    &[&id],
                )
                .await?;
                let _ = locked.send(());
                while query(txn, waiting, &[]).await?[0].try_get::<_, i64>(0)? < 2 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok::<_, StoreError>(())
            })
        });
        is_locked.recv().expect("locked");
        let first = scope.spawn(|| a.use_reset_token(&[1; 32], now, "h1".into()));
        let second = scope.spawn(|| b.use_reset_token(&[2; 32], now, "h2".into()));
        held.join().expect("thread").expect("held");
        let outcomes = [first, second].map(|t| t.join().expect("thread"));
        let used = outcomes
            .iter()
            .map(|o| match o {
                Ok(used) => used.is_some(),
                Err(e) => panic!("a replica failed: {e}"),
            })
            .filter(|used| *used)
            .count();
        assert_eq!(
            used, 1,
            "one token sets the password, the other died with it"
        );
    });
}
