//! `vigile_store_errors_total{op}`: every store call that fails, counted by
//! the name of its `StoreBackend` method, whatever the backend. `Metered`
//! wraps the gateway's store and passes each call through unchanged; an
//! expected refusal (`CreateAccountError::EmailTaken`) is no failure.

use std::sync::Arc;

use prometheus::IntCounterVec;

use super::{
    AccountChange, AccountRecord, CopyReport, CreateAccountError, Follow, ImportBatch, ImportError,
    ImportReport, ImportedAccount, KeysChange, LegacyToken, LegacyUse, PasswordUpgrade,
    ResetRecord, Revocation, SequencedRevocation, SessionChange, SessionRecord, Store,
    StoreBackend, StoreContents, StoreCounts, StoreResult,
};
use crate::tokens::{SessionId, StoredKey};

/// A store whose failed calls are counted.
pub struct Metered {
    inner: Arc<Store>,
    /// `vigile_store_errors_total`, by `op`.
    errors: IntCounterVec,
}

impl Metered {
    pub fn wrap(inner: Arc<Store>, errors: IntCounterVec) -> Arc<Store> {
        Arc::new(Metered { inner, errors })
    }

    /// Counts `out` under `op` if it failed; gives it back.
    fn count<T, E: Failure>(&self, op: &str, out: Result<T, E>) -> Result<T, E> {
        if let Err(e) = &out {
            if e.is_failure() {
                self.errors.with_label_values(&[op]).inc();
            }
        }
        out
    }
}

/// Whether an error is a failure of the store (not an expected refusal).
trait Failure {
    fn is_failure(&self) -> bool;
}

impl Failure for super::StoreError {
    fn is_failure(&self) -> bool {
        true
    }
}

impl Failure for ImportError {
    fn is_failure(&self) -> bool {
        matches!(self, ImportError::Store(_))
    }
}

impl Failure for CreateAccountError {
    fn is_failure(&self) -> bool {
        matches!(self, CreateAccountError::Store(_))
    }
}

impl StoreBackend for Metered {
    fn create_account(&self, account: AccountRecord) -> Result<AccountRecord, CreateAccountError> {
        self.count("create_account", self.inner.create_account(account))
    }

    fn insert_accounts(&self, accounts: Vec<AccountRecord>) -> Result<u64, CreateAccountError> {
        self.count("insert_accounts", self.inner.insert_accounts(accounts))
    }

    fn account(&self, id: u64) -> StoreResult<Option<AccountRecord>> {
        self.count("account", self.inner.account(id))
    }

    fn account_by_email(&self, email: &str) -> StoreResult<Option<AccountRecord>> {
        self.count("account_by_email", self.inner.account_by_email(email))
    }

    fn accounts(&self) -> StoreResult<Vec<AccountRecord>> {
        self.count("accounts", self.inner.accounts())
    }

    fn account_count(&self) -> StoreResult<u64> {
        self.count("account_count", self.inner.account_count())
    }

    fn update_account_dyn(
        &self,
        id: u64,
        now: u64,
        change: AccountChange<'_>,
    ) -> StoreResult<Option<(AccountRecord, Vec<Revocation>)>> {
        let out = self.inner.update_account_dyn(id, now, change);
        self.count("update_account", out)
    }

    fn set_password(
        &self,
        id: u64,
        password_hash: String,
        now: u64,
        keep: Option<SessionId>,
    ) -> StoreResult<Option<Vec<Revocation>>> {
        let out = self.inner.set_password(id, password_hash, now, keep);
        self.count("set_password", out)
    }

    fn delete_account(&self, id: u64, now: u64) -> StoreResult<Option<Vec<Revocation>>> {
        self.count("delete_account", self.inner.delete_account(id, now))
    }

    fn create_role(&self, name: &str, now: u64) -> StoreResult<bool> {
        self.count("create_role", self.inner.create_role(name, now))
    }

    fn roles(&self) -> StoreResult<Vec<String>> {
        self.count("roles", self.inner.roles())
    }

    fn role_exists(&self, name: &str) -> StoreResult<bool> {
        self.count("role_exists", self.inner.role_exists(name))
    }

    fn create_session_upgrading(
        &self,
        session: SessionId,
        record: &SessionRecord,
        upgrade: Option<PasswordUpgrade<'_>>,
    ) -> StoreResult<Option<bool>> {
        let out = self
            .inner
            .create_session_upgrading(session, record, upgrade);
        self.count("create_session", out)
    }

    fn session(&self, session: SessionId) -> StoreResult<Option<SessionRecord>> {
        self.count("session", self.inner.session(session))
    }

    fn update_session_dyn(
        &self,
        session: SessionId,
        change: SessionChange<'_>,
    ) -> StoreResult<Option<Option<Revocation>>> {
        let out = self.inner.update_session_dyn(session, change);
        self.count("update_session", out)
    }

    fn revoke_account_sessions(
        &self,
        account_id: u64,
        now: u64,
        except: Option<SessionId>,
    ) -> StoreResult<Vec<Revocation>> {
        let out = self.inner.revoke_account_sessions(account_id, now, except);
        self.count("revoke_account_sessions", out)
    }

    fn insert_revocations(&self, revocations: &[Revocation]) -> StoreResult<()> {
        let out = self.inner.insert_revocations(revocations);
        self.count("insert_revocations", out)
    }

    fn revocations(&self, now: u64) -> StoreResult<Vec<Revocation>> {
        self.count("revocations", self.inner.revocations(now))
    }

    fn revocation_seq(&self) -> StoreResult<u64> {
        self.count("revocation_seq", self.inner.revocation_seq())
    }

    fn revocations_since(&self, seq: u64, limit: usize) -> StoreResult<Vec<SequencedRevocation>> {
        let out = self.inner.revocations_since(seq, limit);
        self.count("revocations_since", out)
    }

    fn follow(&self, follow: Follow) -> StoreResult<()> {
        self.count("follow", self.inner.follow(follow))
    }

    fn shares_attempts(&self) -> bool {
        self.inner.shares_attempts()
    }

    fn take_attempt(
        &self,
        scope: &str,
        key: &str,
        limit: u32,
        window: std::time::Duration,
    ) -> StoreResult<Option<u64>> {
        self.count(
            "take_attempt",
            self.inner.take_attempt(scope, key, limit, window),
        )
    }

    fn give_back_attempt(&self, scope: &str, key: &str) -> StoreResult<()> {
        self.count(
            "give_back_attempt",
            self.inner.give_back_attempt(scope, key),
        )
    }

    fn create_reset_token(&self, token_hash: &[u8], record: &ResetRecord) -> StoreResult<()> {
        let out = self.inner.create_reset_token(token_hash, record);
        self.count("create_reset_token", out)
    }

    fn reset_record(&self, token_hash: &[u8]) -> StoreResult<Option<ResetRecord>> {
        self.count("reset_record", self.inner.reset_record(token_hash))
    }

    fn use_reset_token(
        &self,
        token_hash: &[u8],
        now: u64,
        password_hash: String,
    ) -> StoreResult<Option<(AccountRecord, Vec<Revocation>)>> {
        let out = self.inner.use_reset_token(token_hash, now, password_hash);
        self.count("use_reset_token", out)
    }

    fn signing_keys(&self) -> StoreResult<Vec<StoredKey>> {
        self.count("signing_keys", self.inner.signing_keys())
    }

    fn signing_keys_version(&self) -> StoreResult<u64> {
        self.count("signing_keys_version", self.inner.signing_keys_version())
    }

    fn update_signing_keys_dyn(&self, change: KeysChange<'_>) -> StoreResult<Vec<StoredKey>> {
        let out = self.inner.update_signing_keys_dyn(change);
        self.count("update_signing_keys", out)
    }

    fn contents(&self) -> StoreResult<StoreContents> {
        self.count("contents", self.inner.contents())
    }

    fn copy_in(&self, contents: &StoreContents) -> StoreResult<CopyReport> {
        self.count("copy_in", self.inner.copy_in(contents))
    }

    fn import_accounts(
        &self,
        batch: &ImportBatch,
        now: u64,
        dry_run: bool,
    ) -> Result<ImportReport, ImportError> {
        let out = self.inner.import_accounts(batch, now, dry_run);
        self.count("import_accounts", out)
    }

    fn imported_account(&self, id: u64) -> StoreResult<Option<ImportedAccount>> {
        self.count("imported_account", self.inner.imported_account(id))
    }

    fn use_legacy_token(
        &self,
        token: &LegacyToken,
        session: Option<SessionId>,
    ) -> StoreResult<LegacyUse> {
        let out = self.inner.use_legacy_token(token, session);
        self.count("use_legacy_token", out)
    }

    fn counts(&self) -> StoreResult<StoreCounts> {
        self.count("counts", self.inner.counts())
    }

    fn purge_expired(&self, now: u64) -> StoreResult<(usize, usize, usize)> {
        self.count("purge_expired", self.inner.purge_expired(now))
    }

    fn close(&self) {
        self.inner.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::account;
    use crate::store::redb::RedbStore;

    fn errors() -> IntCounterVec {
        IntCounterVec::new(
            prometheus::Opts::new("vigile_store_errors_total", "test"),
            &["op"],
        )
        .expect("counter")
    }

    #[test]
    fn failed_calls_are_counted_by_method_and_refusals_are_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let redb: Arc<Store> =
            Arc::new(RedbStore::open(&dir.path().join("s.redb"), 60).expect("open"));
        let errors = errors();
        let store = Metered::wrap(redb, errors.clone());
        store
            .create_account(account("a@example.com"))
            .expect("create");
        assert!(matches!(
            store.create_account(account("a@example.com")),
            Err(CreateAccountError::EmailTaken)
        ));
        assert!(store
            .account_by_email("a@example.com")
            .expect("read")
            .is_some());
        assert_eq!(errors.with_label_values(&["create_account"]).get(), 0);
        assert_eq!(errors.with_label_values(&["account_by_email"]).get(), 0);

        store.close();
        assert!(store.account_by_email("a@example.com").is_err());
        assert!(store
            .update_account(1, 5, |a| a.first_name = "P".into())
            .is_err());
        assert!(store.create_account(account("b@example.com")).is_err());
        assert_eq!(errors.with_label_values(&["account_by_email"]).get(), 1);
        assert_eq!(errors.with_label_values(&["update_account"]).get(), 1);
        assert_eq!(errors.with_label_values(&["create_account"]).get(), 1);
    }
}
