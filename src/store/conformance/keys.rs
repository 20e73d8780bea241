//! Signing keys (`vigile keys`): listed, changed in one serialized
//! transaction, versioned, kept.

use super::{open, reopen, Harness};
use crate::tokens::{KeyState, StoredKey};

fn key(kid: &str, state: KeyState) -> StoredKey {
    StoredKey {
        kid: kid.into(),
        algorithm: "HS256".into(),
        state,
        created_at: Some(10),
        deactivated_at: None,
        retired_at: None,
        material: Some(format!("plain:{kid}")),
    }
}

/// What `vigile keys rotate` does to the rows: the active key steps down,
/// `kid` becomes the active one.
fn rotate(keys: &mut Vec<StoredKey>, kid: &str, now: u64) {
    for k in keys.iter_mut().filter(|k| k.state == KeyState::Active) {
        k.state = KeyState::VerifyOnly;
        k.deactivated_at = Some(now);
    }
    keys.push(key(kid, KeyState::Active));
}

pub(crate) fn signing_keys_are_changed_listed_versioned_and_kept(harness: &dyn Harness) {
    let store = open(harness);
    assert!(store.signing_keys().expect("list").is_empty());
    let v0 = store.signing_keys_version().expect("version");
    let (after, n) = store
        .update_signing_keys(|keys| {
            rotate(keys, "b", 100);
            rotate(keys, "a", 200);
            keys.len()
        })
        .expect("update");
    assert_eq!(n, 2);
    let mut b = key("b", KeyState::VerifyOnly);
    b.deactivated_at = Some(200);
    let a = key("a", KeyState::Active);
    assert_eq!(after, vec![a.clone(), b.clone()], "by kid");
    assert_eq!(store.signing_keys().expect("list"), after);
    let v1 = store.signing_keys_version().expect("version");
    assert!(v1 > v0);
    // A change that changes nothing writes nothing.
    store.update_signing_keys(|_| ()).expect("no change");
    assert_eq!(store.signing_keys_version().expect("version"), v1);
    // Retired, its private part erased; a row left out of the list stays.
    let (after, _) = store
        .update_signing_keys(|keys| {
            keys.retain(|k| k.kid == "b");
            keys[0].state = KeyState::Retired;
            keys[0].retired_at = Some(300);
            keys[0].material = None;
        })
        .expect("retire");
    let mut retired = b.clone();
    retired.state = KeyState::Retired;
    retired.retired_at = Some(300);
    retired.material = None;
    assert_eq!(after, vec![a.clone(), retired.clone()]);
    let v2 = store.signing_keys_version().expect("version");
    assert!(v2 > v1);
    let store = reopen(harness, store);
    assert_eq!(store.signing_keys().expect("list"), vec![a, retired]);
    assert_eq!(store.signing_keys_version().expect("version"), v2);
}

pub(crate) fn concurrent_rotations_leave_one_active_key(harness: &dyn Harness) {
    let store = open(harness);
    std::thread::scope(|s| {
        for i in 0..4 {
            let store = store.clone();
            s.spawn(move || {
                store
                    .update_signing_keys(|keys| rotate(keys, &format!("k{i}"), i))
                    .expect("rotate");
            });
        }
    });
    let keys = store.signing_keys().expect("list");
    assert_eq!(keys.len(), 4);
    let active = keys.iter().filter(|k| k.state == KeyState::Active).count();
    assert_eq!(active, 1, "{keys:?}");
}
