//! What a reload may change on a running gateway, and what needs a restart.
//!
//! Live: routes, upstreams, CORS, identity headers, `server.log_level`,
//! `server.log_format`, `server.underscore_headers`, `server.direct_path`,
//! `server.trusted_proxies`, the certificate pair of `server.tls` (re-read
//! by every reload),
//! the account policy and throttles, the mailer, token lifetimes and the
//! verification keys, `audit.file` (opened again at every reload). Everything else is bound at start (listeners, worker
//! threads, connection limits and timeouts of the edge, the store, the
//! hashing pool, the token algorithm and cache): a reload that changes it
//! is refused, naming the key, and the running configuration stays.

use super::Config;

/// The keys bound at start, each with how to read it.
type Key = (&'static str, fn(&Config) -> String);

const RESTART_KEYS: &[Key] = &[
    ("server.listen", |c| format!("{:?}", c.server.listen)),
    ("server.threads", |c| format!("{:?}", c.server.threads)),
    ("server.work_stealing", |c| {
        format!("{:?}", c.server.work_stealing)
    }),
    ("server.grace_period", |c| {
        format!("{:?}", c.server.grace_period)
    }),
    ("server.header_timeout", |c| {
        format!("{:?}", c.server.header_timeout)
    }),
    ("server.write_timeout", |c| {
        format!("{:?}", c.server.write_timeout)
    }),
    ("server.max_connections", |c| {
        format!("{:?}", c.server.max_connections)
    }),
    ("server.tls.listen", |c| {
        format!("{:?}", c.server.tls.as_ref().map(|t| t.listen))
    }),
    ("server.h2c", |c| format!("{:?}", c.server.h2c)),
    ("server.proxy_protocol", |c| {
        format!("{:?}", c.server.proxy_protocol)
    }),
    ("admin.listen", |c| format!("{:?}", c.admin.listen)),
    ("store.kind", |c| format!("{:?}", c.store.kind)),
    ("store.path", |c| format!("{:?}", c.store.path)),
    ("store.purge_interval", |c| {
        format!("{:?}", c.store.purge_interval)
    }),
    ("store.url_env", |c| c.store.url_env.clone()),
    ("store.url", |c| {
        c.store
            .database_url
            .as_ref()
            .map_or_else(String::new, |u| u.fingerprint())
    }),
    ("store.pool_size", |c| format!("{:?}", c.store.pool_size)),
    ("store.ca_file", |c| format!("{:?}", c.store.ca_file)),
    ("store.sync_interval", |c| {
        format!("{:?}", c.store.sync_interval)
    }),
    ("store.max_staleness", |c| {
        format!("{:?}", c.store.max_staleness)
    }),
    ("tokens.algorithm", |c| format!("{:?}", c.tokens.algorithm)),
    // The cut-over's settings, without the key (only whether it changed).
    ("migration.simplejwt", |c| {
        c.migration
            .simplejwt
            .as_ref()
            .map_or_else(String::new, |j| {
                use sha2::{Digest, Sha256};
                format!(
                    "{:?} {} {} {} {:x}",
                    j.algorithm,
                    j.user_id_claim,
                    j.until_unix,
                    j.accept_access,
                    Sha256::digest(&j.key)
                )
            })
    }),
    ("tokens.verified_cache", |c| {
        format!("{:?}", c.tokens.verified_cache)
    }),
    ("accounts.hash_workers", |c| {
        format!("{:?}", c.accounts.hash_workers)
    }),
    ("accounts.hash_queue", |c| {
        format!("{:?}", c.accounts.hash_queue)
    }),
];

impl Config {
    /// The first key whose value in `new` differs from this (running)
    /// configuration's and that only a restart can change.
    pub fn restart_needed(&self, new: &Config) -> Option<&'static str> {
        if let Some((key, _)) = RESTART_KEYS
            .iter()
            .find(|(_, read)| read(self) != read(new))
        {
            return Some(key);
        }
        // A section key that this list does not know yet (added later)
        // counts as bound at start: the section is named.
        let mut server = new.server.clone();
        server.log_format = self.server.log_format;
        server.log_level.clone_from(&self.server.log_level);
        server.underscore_headers = self.server.underscore_headers;
        server.direct_path = self.server.direct_path;
        server
            .trusted_proxies
            .clone_from(&self.server.trusted_proxies);
        if format!("{server:?}") != format!("{:?}", self.server) {
            return Some("server");
        }
        if format!("{:?}", new.admin) != format!("{:?}", self.admin) {
            return Some("admin");
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Config {
        let env = |name: &str| (name == "DB").then(|| "postgres://a@b/c".to_string());
        Config::from_yaml(yaml, &env).expect("valid")
    }

    #[test]
    fn keys_bound_at_start_are_named_and_live_ones_pass() {
        let base = load("server: {listen: '127.0.0.1:8080'}\n");
        for (yaml, key) in [
            ("server: {listen: '127.0.0.1:8081'}\n", Some("server.listen")),
            ("server: {listen: '127.0.0.1:8080', threads: 3}\n", Some("server.threads")),
            ("server: {listen: '127.0.0.1:8080'}\nadmin: {listen: '127.0.0.1:9999'}\n", Some("admin.listen")),
            ("server: {listen: '127.0.0.1:8080'}\nstore: {path: other/v.redb}\n", Some("store.path")),
            ("server: {listen: '127.0.0.1:8080'}\nstore: {kind: postgres, url_env: DB}\n", Some("store.kind")),
            ("server: {listen: '127.0.0.1:8080', log_level: debug, log_format: json, direct_path: false}\n", None),
            ("server: {listen: '127.0.0.1:8080', trusted_proxies: ['10.0.0.0/8']}\n", None),
            ("server: {listen: '127.0.0.1:8080', proxy_protocol: true}\n", Some("server.proxy_protocol")),
            ("server: {listen: '127.0.0.1:8080'}\ncors: {allowed_origins: ['https://a.example']}\n", None),
            ("server: {listen: '127.0.0.1:8080'}\ntokens: {access_ttl: 1m}\n", None),
            ("server: {listen: '127.0.0.1:8080'}\ntokens: {algorithm: EdDSA}\n", Some("tokens.algorithm")),
        ] {
            assert_eq!(base.restart_needed(&load(yaml)), key, "{yaml}");
        }
    }

    #[test]
    fn a_changed_database_url_needs_a_restart() {
        let env_a = |name: &str| (name == "DB").then(|| "postgres://a@b/c".to_string());
        let env_b = |name: &str| (name == "DB").then(|| "postgres://a@b/d".to_string());
        let yaml = "store: {kind: postgres, url_env: DB}\n";
        let a = Config::from_yaml(yaml, &env_a).expect("a");
        let b = Config::from_yaml(yaml, &env_b).expect("b");
        assert_eq!(a.restart_needed(&a.clone()), None);
        assert_eq!(a.restart_needed(&b), Some("store.url"));
    }
}
