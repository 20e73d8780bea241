//! `accounts:`, the account API: default role, password policy, throttles,
//! reset links, password-hash workers.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::Deserialize;

use super::values::RoleName;
use super::{duration, err, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    pub default_role: RoleName,
    pub password_min_length: usize,
    pub login_throttle: ThrottleConfig,
    pub reset_throttle: ResetThrottleConfig,
    /// How long a password-reset link works.
    #[serde(deserialize_with = "duration::deserialize")]
    pub reset_ttl: Duration,
    /// How many password hashes may run at once (0 in the YAML: the core count).
    pub hash_workers: usize,
    /// How many may wait for a worker; past that, 503 `overloaded`.
    pub hash_queue: usize,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig {
            default_role: RoleName::new("Visiteur").expect("a valid role name"),
            password_min_length: 8,
            login_throttle: ThrottleConfig::default(),
            reset_throttle: ResetThrottleConfig::default(),
            reset_ttl: Duration::from_secs(3600),
            hash_workers: 0,
            hash_queue: 64,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    /// Failures on one account from one client address.
    pub max_failures: u32,
    #[serde(deserialize_with = "duration::deserialize")]
    pub window: Duration,
    /// Failures from one client address, whatever the accounts
    /// (absent from the YAML: 4 x `max_failures`).
    #[serde(deserialize_with = "at_least_one")]
    pub max_failures_per_ip: u32,
    /// Failures on one account, whatever the addresses
    /// (absent from the YAML: 10 x `max_failures`).
    #[serde(deserialize_with = "at_least_one")]
    pub max_failures_per_account: u32,
}

/// 0 stands for "not given" until `AccountsConfig::check` derives the value.
impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            max_failures: 5,
            window: Duration::from_secs(900),
            max_failures_per_ip: 0,
            max_failures_per_account: 0,
        }
    }
}

/// A limit that may be left out but, when written, is not 0 (refused
/// inside the deserializer's call, so that the message names the key).
fn at_least_one<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    struct AtLeastOne;
    impl Visitor<'_> for AtLeastOne {
        type Value = u32;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("u32")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
            match u32::try_from(v) {
                Ok(0) => Err(E::custom("must be at least 1")),
                Ok(n) => Ok(n),
                Err(_) => Err(E::invalid_value(Unexpected::Unsigned(v), &self)),
            }
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::invalid_type(Unexpected::Signed(v), &self)),
            }
        }
        /// `null`: left out.
        fn visit_unit<E: de::Error>(self) -> Result<u32, E> {
            Ok(0)
        }
    }
    deserializer.deserialize_any(AtLeastOne)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResetThrottleConfig {
    /// Reset requests for one email.
    pub max_requests: u32,
    /// Reset requests from one client address.
    pub max_requests_per_ip: u32,
    #[serde(deserialize_with = "duration::deserialize")]
    pub window: Duration,
}

impl Default for ResetThrottleConfig {
    fn default() -> Self {
        ResetThrottleConfig {
            max_requests: 3,
            max_requests_per_ip: 10,
            window: Duration::from_secs(900),
        }
    }
}

impl AccountsConfig {
    /// Checks the values and derives those left out (throttles, workers).
    pub(super) fn check(&mut self) -> Result<(), ConfigError> {
        if !(1..=1024).contains(&self.password_min_length) {
            return err("accounts.password_min_length", "must be between 1 and 1024");
        }
        let login = &mut self.login_throttle;
        if login.max_failures == 0 {
            return err("accounts.login_throttle.max_failures", "must be at least 1");
        }
        if login.max_failures_per_ip == 0 {
            login.max_failures_per_ip = login.max_failures.saturating_mul(4);
        }
        if login.max_failures_per_account == 0 {
            login.max_failures_per_account = login.max_failures.saturating_mul(10);
        }
        let reset = &self.reset_throttle;
        if reset.max_requests == 0 || reset.max_requests_per_ip == 0 {
            return err(
                "accounts.reset_throttle",
                "max_requests and max_requests_per_ip must be at least 1",
            );
        }
        if reset.window.is_zero() {
            return err("accounts.reset_throttle.window", "must be longer than 0");
        }
        if self.reset_ttl < Duration::from_secs(1) {
            return err("accounts.reset_ttl", "must be at least 1s");
        }
        if self.login_throttle.window.is_zero() {
            return err("accounts.login_throttle.window", "must be longer than 0");
        }
        self.hash_workers = match self.hash_workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n if n > 256 => return err("accounts.hash_workers", "must be at most 256"),
            n => n,
        };
        Ok(())
    }
}
