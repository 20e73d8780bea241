//! The store conformance suite: what every backend must do, written against
//! `Store` (the `StoreBackend` interface) only, so that each backend runs it
//! unchanged. A backend plugs in with a `Harness` (how to open its store,
//! fresh the first time and the same one again later) and one line in its
//! tests:
//!
//! ```ignore
//! crate::store::conformance::conformance_tests!(MyHarness::new());
//! ```
//!
//! which makes one `#[test]` per case below, each on a harness of its own.

mod accounts;
mod imports;
mod keys;
mod sessions;
mod tokens;

use std::sync::Arc;

pub(crate) use accounts::*;
pub(crate) use imports::*;
pub(crate) use keys::*;
pub(crate) use sessions::*;
pub(crate) use tokens::*;

use crate::store::{AccountRecord, SessionRecord, Store};
use crate::tokens::SessionId;

/// How the suite opens a backend's store.
pub(crate) trait Harness {
    /// The store under test: empty on the first call; on later calls the
    /// same store again (the suite closes and drops the previous handle
    /// first). Panics if it cannot be opened.
    fn open(&self, access_window: u64) -> Arc<Store>;
}

/// The access window every case opens its store with: a revocation at `t`
/// lasts until `t + WINDOW`.
pub(crate) const WINDOW: u64 = 300;

/// One `#[test]` per case, each running on `$harness` (an expression
/// evaluated anew for every test).
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::store::conformance::conformance_tests!(@cases $harness;
            accounts_are_created_read_updated_and_deleted,
            emails_are_unique_without_regard_to_case,
            a_look_alike_address_does_not_name_an_ascii_account,
            accounts_stored_with_non_ascii_addresses_are_still_found,
            concurrent_registrations_of_one_email_make_one_account,
            concurrent_registrations_get_distinct_ids,
            accounts_are_listed_by_id_and_counted,
            accounts_are_inserted_in_bulk,
            roles_are_created_once_and_listed,
            deactivation_revokes_every_session_durably,
            a_password_change_ends_every_other_session,
            deleting_an_account_frees_its_email_and_revokes_its_sessions,
            sessions_are_created_read_and_updated,
            a_login_upgrades_the_hash_it_verified_and_no_other,
            a_rotation_keeps_the_previous_refresh_for_the_reuse_grace,
            revoking_a_session_by_update_records_the_revocation_once,
            revoking_the_sessions_of_an_account_spares_the_rest,
            revocations_are_inserted_listed_and_kept,
            a_reset_token_works_once_and_ends_every_session,
            a_reset_token_of_an_inactive_account_is_spent_for_nothing,
            purging_drops_what_has_expired,
            everything_survives_a_reopen,
            a_closed_store_refuses_calls,
            signing_keys_are_changed_listed_versioned_and_kept,
            concurrent_rotations_leave_one_active_key,
            imports_keep_ids_and_a_second_run_changes_nothing,
            an_import_that_conflicts_writes_nothing,
            an_import_that_deactivates_revokes_the_sessions,
            a_legacy_refresh_token_is_exchanged_once,
            revoking_every_session_cuts_off_the_imported_accounts_tokens,
        );
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::store::conformance::$case(&$harness);
            }
        )*
    };
}
pub(crate) use conformance_tests;

fn open(harness: &dyn Harness) -> Arc<Store> {
    harness.open(WINDOW)
}

/// Closes `store` and opens it again.
fn reopen(harness: &dyn Harness, store: Arc<Store>) -> Arc<Store> {
    store.close();
    drop(store);
    harness.open(WINDOW)
}

/// A new account to create (`id` 0, role `Visiteur`, password hash `x`).
pub(crate) fn account(email: &str) -> AccountRecord {
    AccountRecord {
        id: 0,
        email: email.into(),
        password_hash: "x".into(),
        first_name: "Jean".into(),
        last_name: "Dupont".into(),
        gender: Some("H".into()),
        phone: None,
        role: "Visiteur".into(),
        is_active: true,
        date_joined: 1,
        last_login: None,
    }
}

fn session(account_id: u64, expires_at: u64) -> SessionRecord {
    SessionRecord {
        account_id,
        created_at: 10,
        expires_at,
        refresh_jti: 1,
        previous_jti: None,
        rotated_at: 10,
        revoked_at: None,
        rotated_at_ms: None,
    }
}

/// A store holding `a@example.com` with a live session (until 5 000) for
/// each of `sessions`.
fn with_sessions(harness: &dyn Harness, sessions: &[u128]) -> (Arc<Store>, AccountRecord) {
    let store = open(harness);
    let a = create(&store, "a@example.com");
    for s in sessions {
        store
            .create_session(SessionId(*s), &session(a.id, 5_000))
            .expect("session");
    }
    (store, a)
}

/// Creates an account, panicking on failure.
fn create(store: &Arc<Store>, email: &str) -> AccountRecord {
    store.create_account(account(email)).expect("create")
}

fn id_by_email(store: &Arc<Store>, email: &str) -> Option<u64> {
    store.account_by_email(email).expect("read").map(|a| a.id)
}
