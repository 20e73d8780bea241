//! What the handlers' unit tests share: an `AccountService` on a real store
//! (a redb file in a temporary directory), real keys and real argon2 (the
//! hashing parameters are fixed, not configurable; the dev profile builds
//! argon2 optimized, so a hash stays in the tens of milliseconds).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::password_reset::{MailSettings, ResetWorker};
use super::{AccountRequest, AccountService, Endpoint, Reply};
use crate::config::Config;
use crate::error::ApiError;
use crate::revocation::RevocationList;
use crate::store::{AccountRecord, SessionRecord};
use crate::tokens::{SessionId, TokenKeys};

pub const PASSWORD: &str = "motdepasse123";
pub const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

pub struct Fixture {
    pub service: AccountService,
    outbox: PathBuf,
    _dir: tempfile::TempDir,
}

/// The two tokens of a session.
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::build("", false)
    }

    /// With more configuration (`tokens:` and `accounts:` sections).
    pub fn with(yaml: &str) -> Fixture {
        Fixture::build(yaml, false)
    }

    /// With a reset worker that writes its mails to the outbox.
    pub fn with_reset_worker() -> Fixture {
        Fixture::build("", true)
    }

    fn build(yaml: &str, reset_worker: bool) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let outbox = dir.path().join("outbox");
        let yaml = format!(
            "store:\n  path: {}\nmailer:\n  kind: file\n  dir: {}\n  reset_url: \"http://front/reset?token={{token}}\"\n{yaml}",
            dir.path().join("vigile.redb").display(),
            outbox.display(),
        );
        let config = Config::from_yaml(&yaml, &|_| None).expect("config");
        let store = crate::store::open(&config.store, 300).expect("store");
        let tokens = TokenKeys::from_config(&config.tokens, dir.path()).expect("keys");
        let metrics = crate::metrics::Metrics::new().expect("metrics");
        let reset_queue = reset_worker.then(|| {
            ResetWorker {
                store: store.clone(),
                mail: MailSettings::of(&config).expect("mailer"),
                outcomes: metrics.reset_mails.clone(),
            }
            .start()
        });
        let service = AccountService::new(
            &config,
            store,
            Arc::new(tokens),
            Arc::new(RevocationList::default()),
            metrics.passwords(),
            reset_queue,
            Arc::new(crate::audit::Auditor::new(
                metrics.audit_events.clone(),
                Some(crate::audit::open_file(&dir.path().join("audit.log")).expect("audit")),
                false,
            )),
        );
        Fixture {
            service,
            outbox,
            _dir: dir,
        }
    }

    /// One request, the way the proxy hands it over: from `CLIENT`.
    pub fn call(
        &self,
        endpoint: Endpoint,
        bearer: Option<&str>,
        body: Value,
    ) -> Result<Reply, ApiError> {
        self.call_from(endpoint, bearer, body, CLIENT)
    }

    pub fn call_from(
        &self,
        endpoint: Endpoint,
        bearer: Option<&str>,
        body: Value,
        client: IpAddr,
    ) -> Result<Reply, ApiError> {
        let body = serde_json::to_vec(&body).expect("json");
        self.call_raw(endpoint, bearer, &body, client)
    }

    pub fn call_raw(
        &self,
        endpoint: Endpoint,
        bearer: Option<&str>,
        body: &[u8],
        client: IpAddr,
    ) -> Result<Reply, ApiError> {
        let authorization = bearer.map(|token| format!("Bearer {token}"));
        self.service.handle(&AccountRequest {
            endpoint,
            authorization: authorization.as_deref().map(str::as_bytes),
            body,
            client_ip: Some(client),
            request_id: "test-request",
        })
    }

    /// The audit lines written so far.
    pub fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self._dir.path().join("audit.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("an audit line"))
            .collect()
    }

    /// Registers Jean Dupont with `email`; returns the account id.
    pub fn register(&self, email: &str) -> u64 {
        let reply = self
            .call(
                Endpoint::Register,
                None,
                json!({"email": email, "password": PASSWORD, "first_name": "Jean",
                    "last_name": "Dupont"}),
            )
            .expect("registered");
        reply.body["id"].as_u64().expect("an id")
    }

    /// Registers Jean Dupont with `email`, then gives the account the Django
    /// hash of the vector `name` (`passwords::django::tests`), as an import
    /// would; returns the vector's password.
    pub fn imported(&self, email: &str, vector: &str) -> String {
        let (password, encoded) = crate::passwords::django::tests::vector(vector);
        let id = self.register(email);
        self.service
            .store
            .update_account(id, 0, |a| a.password_hash = encoded)
            .expect("store")
            .expect("account");
        password
    }

    /// Registers Jean Dupont with `email` and opens a session.
    pub fn signed_in(&self, email: &str) -> Tokens {
        self.register(email);
        self.login(email, PASSWORD)
    }

    pub fn login(&self, email: &str, password: &str) -> Tokens {
        let reply = self
            .call(
                Endpoint::Login,
                None,
                json!({"email": email, "password": password}),
            )
            .expect("logged in");
        Tokens {
            access: reply.body["access"].as_str().expect("access").to_string(),
            refresh: reply.body["refresh"].as_str().expect("refresh").to_string(),
        }
    }

    pub fn account(&self, email: &str) -> AccountRecord {
        self.service
            .store
            .account_by_email(email)
            .expect("store")
            .expect("an account")
    }

    /// The session of a refresh token, and its record in the store.
    pub fn session(&self, refresh: &str) -> (SessionId, SessionRecord) {
        let (_, session, _) = self.service.tokens.verify_refresh(refresh).expect("valid");
        let record = self.service.store.session(session).expect("store");
        (session, record.expect("a session"))
    }

    /// The caller's profile: `Ok` while the access token works.
    pub fn profile(&self, access: &str) -> Result<Reply, ApiError> {
        self.call(Endpoint::Profile, Some(access), Value::Null)
    }

    /// The mails the reset worker has written so far, waiting up to 5 s for
    /// `n` of them.
    pub fn wait_for_mails(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mails: Vec<String> = std::fs::read_dir(&self.outbox)
                .map(|dir| {
                    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                        .collect()
                })
                .unwrap_or_default();
            if mails.len() >= n || Instant::now() > deadline {
                return mails;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The keys of a JSON object, in order.
pub fn keys(body: &Value) -> Vec<&str> {
    body.as_object()
        .into_iter()
        .flat_map(|o| o.keys().map(String::as_str))
        .collect()
}

/// The fields a validation error names, in order.
pub fn fields(e: &ApiError) -> Vec<&str> {
    e.fields
        .iter()
        .flat_map(|f| f.keys().map(String::as_str))
        .collect()
}

/// The messages of one field of a validation error.
pub fn messages<'a>(e: &'a ApiError, field: &str) -> Vec<&'a str> {
    e.fields
        .iter()
        .flat_map(|f| f.get(field).into_iter().flatten().map(String::as_str))
        .collect()
}
