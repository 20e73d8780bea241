//! Accounts, the email uniqueness, bulk inserts and roles.

use std::sync::{Arc, Barrier};

use super::{account, create, id_by_email, open, with_sessions, Harness, WINDOW};
use crate::store::{normalize_email, CreateAccountError, Store, StoreError};
use crate::tokens::SessionId;

pub(crate) fn accounts_are_created_read_updated_and_deleted(harness: &dyn Harness) {
    let store = open(harness);
    let mut new = account(" a@example.com ");
    new.phone = Some("0601020304".into());
    let a = store.create_account(new.clone()).expect("create");
    new.id = 1;
    new.email = "a@example.com".into();
    assert_eq!(a, new, "id assigned, email trimmed, the rest as given");
    assert_eq!(store.account(1).expect("read"), Some(new.clone()));
    assert_eq!(store.account(2).expect("read"), None);

    let (updated, revoked) = store
        .update_account(1, 50, |x| {
            x.first_name = "Paul".into();
            x.gender = None;
            x.role = "Editeur".into();
        })
        .expect("update")
        .expect("exists");
    assert!(revoked.is_empty());
    assert_eq!(
        (updated.first_name.as_str(), updated.gender.as_deref()),
        ("Paul", None)
    );
    assert_eq!(store.account(1).expect("read"), Some(updated.clone()));
    assert!(
        store.role_exists("Editeur").expect("roles"),
        "an update creates the role"
    );
    assert!(store
        .update_account(2, 50, |x| x.first_name = "Nobody".into())
        .expect("update")
        .is_none());

    assert!(matches!(
        store.update_account(1, 50, |x| {
            x.first_name = "Lost".into();
            x.id = 7;
        }),
        Err(StoreError::Db(_))
    ));
    assert_eq!(
        store.account(1).expect("read"),
        Some(updated),
        "a refused change saves nothing"
    );
    assert_eq!(store.account(7).expect("read"), None);

    assert_eq!(
        store.set_password(1, "h2".into(), 60, None).expect("set"),
        Some(vec![])
    );
    assert_eq!(
        store.account(1).expect("read").expect("a").password_hash,
        "h2"
    );
    assert_eq!(
        store.set_password(2, "h3".into(), 60, None).expect("set"),
        None
    );

    assert_eq!(store.delete_account(1, 70).expect("delete"), Some(vec![]));
    assert_eq!(store.account(1).expect("read"), None);
    assert_eq!(store.account_count().expect("count"), 0);
    assert_eq!(store.delete_account(1, 70).expect("delete"), None);
    assert_eq!(create(&store, "b@example.com").id, 2, "ids are not reused");
}

pub(crate) fn emails_are_unique_without_regard_to_case(harness: &dyn Harness) {
    let store = open(harness);
    let a = create(&store, "Dev@Example.com ");
    assert_eq!(a.id, 1);
    assert_eq!(a.email, "Dev@Example.com");
    for variant in ["dev@example.COM", " DEV@EXAMPLE.COM", "dev@example.com\t"] {
        assert!(
            matches!(
                store.create_account(account(variant)),
                Err(CreateAccountError::EmailTaken)
            ),
            "{variant:?}"
        );
    }
    assert_eq!(id_by_email(&store, " DEV@example.com"), Some(1));
    assert_eq!(id_by_email(&store, "dev@example.org"), None);
    // Text no account can hold (the account API refuses it at registration):
    // a lookup finds nothing, on every backend (PostgreSQL's text has no NUL).
    for odd in ["dev\0@example.com", "\0", "dev@example.com\0"] {
        assert_eq!(id_by_email(&store, odd), None, "{odd:?}");
        assert!(!store.role_exists(odd).expect("role lookup"), "{odd:?}");
    }
    assert_eq!(create(&store, "b@example.com").id, 2);
    assert_eq!(store.account_count().expect("count"), 2);
    assert!(store.role_exists("Visiteur").expect("roles"));
}

pub(crate) fn a_look_alike_address_does_not_name_an_ascii_account(harness: &dyn Harness) {
    let store = open(harness);
    let kevin = create(&store, "kevin@example.com");
    // The Kelvin sign lower-cases into `k`: same key, but not the same address.
    assert_eq!(
        normalize_email("\u{212A}evin@example.com"),
        "kevin@example.com"
    );
    assert_eq!(id_by_email(&store, "\u{212A}evin@example.com"), None);
    assert_eq!(id_by_email(&store, " KEVIN@example.com"), Some(kevin.id));
    assert!(matches!(
        store.create_account(account("\u{212A}evin@example.com")),
        Err(CreateAccountError::EmailTaken)
    ));
}

pub(crate) fn accounts_stored_with_non_ascii_addresses_are_still_found(harness: &dyn Harness) {
    // Written before the ASCII rule (the store itself never refused them).
    let store = open(harness);
    let jose = create(&store, "Jos\u{E9}@example.com");
    let kelvin = create(&store, "\u{212A}elvin@example.com");
    for (typed, id) in [
        ("jos\u{E9}@example.com", jose.id),
        ("JOS\u{C9}@EXAMPLE.COM ", jose.id),
        ("\u{212A}elvin@example.com", kelvin.id),
        ("kelvin@example.com", kelvin.id),
    ] {
        assert_eq!(id_by_email(&store, typed), Some(id), "{typed}");
    }
}

/// Runs `register(i)` on `n` threads released at the same instant.
fn at_once<T: Send + 'static>(
    store: &Arc<Store>,
    n: usize,
    register: impl Fn(&Arc<Store>, usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let start = Arc::new(Barrier::new(n));
    let register = Arc::new(register);
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let (store, start, register) = (store.clone(), start.clone(), register.clone());
            std::thread::spawn(move || {
                start.wait();
                register(&store, i)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect()
}

pub(crate) fn concurrent_registrations_of_one_email_make_one_account(harness: &dyn Harness) {
    const VARIANTS: [&str; 4] = [
        "race@example.com",
        "RACE@example.com",
        " race@EXAMPLE.com",
        "Race@Example.Com ",
    ];
    let store = open(harness);
    for round in 0..3 {
        let outcomes = at_once(&store, 8, move |store, i| {
            let mut new = account(VARIANTS[i % VARIANTS.len()]);
            new.first_name = format!("round {round} thread {i}");
            store.create_account(new)
        });
        let winners: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one account");
        let losers = outcomes
            .iter()
            .filter(|o| matches!(o, Err(CreateAccountError::EmailTaken)))
            .count();
        assert_eq!(losers, 7, "round {round}: every other call is refused");
        let winner = winners[0].clone();
        assert_eq!(store.account_count().expect("count"), 1);
        assert_eq!(
            store.account(winner.id).expect("read"),
            Some(winner.clone())
        );
        assert_eq!(id_by_email(&store, "race@example.com"), Some(winner.id));
        store.delete_account(winner.id, 100).expect("delete");
    }
}

pub(crate) fn concurrent_registrations_get_distinct_ids(harness: &dyn Harness) {
    let store = open(harness);
    let created = at_once(&store, 8, |store, i| {
        store
            .create_account(account(&format!("user{i}@example.com")))
            .expect("create")
    });
    let mut ids: Vec<u64> = created.iter().map(|a| a.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=8).collect::<Vec<u64>>());
    for a in &created {
        assert_eq!(id_by_email(&store, &a.email), Some(a.id));
    }
    assert_eq!(store.account_count().expect("count"), 8);
}

/// "id email" of every account, as listed.
fn listed(store: &Arc<Store>) -> Vec<String> {
    let accounts = store.accounts().expect("list");
    accounts
        .iter()
        .map(|a| format!("{} {}", a.id, a.email))
        .collect()
}

pub(crate) fn accounts_are_listed_by_id_and_counted(harness: &dyn Harness) {
    let store = open(harness);
    assert!(store.accounts().expect("list").is_empty());
    assert_eq!(store.account_count().expect("count"), 0);
    for email in ["c@example.com", "a@example.com", "b@example.com"] {
        create(&store, email);
    }
    assert_eq!(
        listed(&store),
        ["1 c@example.com", "2 a@example.com", "3 b@example.com"]
    );
    assert_eq!(store.account_count().expect("count"), 3);
    assert_eq!(store.counts().expect("counts").accounts, 3);
    store.delete_account(2, 10).expect("delete");
    assert_eq!(listed(&store), ["1 c@example.com", "3 b@example.com"]);
    assert_eq!(store.account_count().expect("count"), 2);
}

pub(crate) fn accounts_are_inserted_in_bulk(harness: &dyn Harness) {
    let store = open(harness);
    create(&store, "first@example.com");
    let batch: Vec<_> = (0..3)
        .map(|i| account(&format!("bulk{i}@example.com")))
        .collect();
    assert_eq!(store.insert_accounts(batch).expect("bulk"), 3);
    assert_eq!(
        listed(&store),
        [
            "1 first@example.com",
            "2 bulk0@example.com",
            "3 bulk1@example.com",
            "4 bulk2@example.com",
        ]
    );
    assert_eq!(id_by_email(&store, "BULK1@example.com"), Some(3));

    let taken = vec![account("new@example.com"), account("Bulk2@example.com")];
    assert!(matches!(
        store.insert_accounts(taken),
        Err(CreateAccountError::EmailTaken)
    ));
    let twice = vec![account("twice@example.com"), account("TWICE@example.com")];
    assert!(matches!(
        store.insert_accounts(twice),
        Err(CreateAccountError::EmailTaken)
    ));
    assert_eq!(
        store.account_count().expect("count"),
        4,
        "a failed batch inserts nothing"
    );
    assert_eq!(id_by_email(&store, "new@example.com"), None);
    assert_eq!(id_by_email(&store, "twice@example.com"), None);
    assert!(create(&store, "new@example.com").id > 4);
}

pub(crate) fn roles_are_created_once_and_listed(harness: &dyn Harness) {
    let store = open(harness);
    assert!(store.roles().expect("roles").is_empty());
    assert!(store.create_role("Admin", 5).expect("create"));
    assert!(!store.create_role("Admin", 6).expect("create"), "once");
    assert!(store.role_exists("Admin").expect("exists"));
    assert!(
        !store.role_exists("admin").expect("exists"),
        "names are exact"
    );
    assert!(!store.role_exists("Nobody").expect("exists"));
    create(&store, "a@example.com");
    let mut editor = account("b@example.com");
    editor.role = "Editeur".into();
    store.create_account(editor).expect("create");
    assert_eq!(
        store.roles().expect("roles"),
        vec!["Admin", "Editeur", "Visiteur"],
        "an account creates its role; listed in byte order"
    );
    assert!(!store.create_role("Visiteur", 7).expect("create"));
}

pub(crate) fn deactivation_revokes_every_session_durably(harness: &dyn Harness) {
    let (store, a) = with_sessions(harness, &[11, 22]);
    let (s1, s2) = (SessionId(11), SessionId(22));
    let (updated, revoked) = store
        .update_account(a.id, 1_000, |acc| acc.is_active = false)
        .expect("update")
        .expect("exists");
    assert!(!updated.is_active);
    assert_eq!(updated.last_login, Some(10));
    let mut revoked = revoked;
    revoked.sort();
    assert_eq!(revoked, vec![(s1, 1_000 + WINDOW), (s2, 1_000 + WINDOW)]);
    for s in [s1, s2] {
        let record = store.session(s).expect("read").expect("kept");
        assert_eq!(record.revoked_at, Some(1_000));
    }
    assert_eq!(store.revocations(1_000).expect("load").len(), 2);
    assert_eq!(
        store.revocations(1_301).expect("load").len(),
        0,
        "past the access window"
    );
    let (_, revoked) = store
        .update_account(a.id, 1_100, |acc| acc.is_active = true)
        .expect("update")
        .expect("exists");
    assert!(revoked.is_empty(), "activation revokes nothing");
}

pub(crate) fn a_password_change_ends_every_other_session(harness: &dyn Harness) {
    let (store, a) = with_sessions(harness, &[1, 2, 3]);
    let mut revoked = store
        .set_password(a.id, "new-hash".into(), 100, Some(SessionId(2)))
        .expect("set")
        .expect("exists");
    revoked.sort();
    assert_eq!(revoked, vec![(SessionId(1), 400), (SessionId(3), 400)]);
    assert_eq!(
        store.account(a.id).expect("read").expect("a").password_hash,
        "new-hash"
    );
    let kept = store.session(SessionId(2)).expect("read").expect("kept");
    assert_eq!(kept.revoked_at, None);
}

pub(crate) fn deleting_an_account_frees_its_email_and_revokes_its_sessions(harness: &dyn Harness) {
    let (store, a) = with_sessions(harness, &[9]);
    let record = crate::store::ResetRecord {
        account_id: a.id,
        created_at: 0,
        expires_at: 5_000,
    };
    store
        .create_reset_token(&[4u8; 32], &record)
        .expect("token");
    let revoked = store
        .delete_account(a.id, 100)
        .expect("delete")
        .expect("existed");
    assert_eq!(revoked, vec![(SessionId(9), 400)]);
    assert_eq!(store.revocations(100).expect("load"), revoked);
    assert!(store.account(a.id).expect("read").is_none());
    assert_eq!(id_by_email(&store, "a@example.com"), None);
    assert_eq!(
        store.reset_record(&[4u8; 32]).expect("read"),
        None,
        "its reset tokens go too"
    );
    assert!(store.delete_account(a.id, 100).expect("delete").is_none());
    let again = store
        .create_account(account("a@example.com"))
        .expect("the email is free again");
    assert_ne!(again.id, a.id);
}
