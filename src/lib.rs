//! vigile: a reverse-proxy authentication gateway on Pingora.
//!
//! Where a request goes:
//! - `proxy/` is the Pingora adapter: it turns a session into typed inputs and
//!   writes back what the core returns.
//! - `accounts/` answers `/api/accounts/...` (one file per endpoint).
//! - `auth` authenticates and authorizes requests on the proxy path;
//!   `routes` picks the route; `proxy/mutate` shapes what the upstream gets.
//! - `tokens` issues and checks JWTs; `revocation` is the in-memory list the
//!   request path consults; `store` is the durable copy behind both.
//! - `config` turns the YAML into checked structs; `cli` is the command line;
//!   `admin` serves metrics, health and the operator channel.
//! - `state` is what every part of a running gateway shares; `server`
//!   assembles the Pingora services around it and runs them; `upstream`
//!   holds each upstream's targets, health and idle connections.
//! - `connections` is the client side below HTTP: the connection cap, the
//!   request-head deadline, JSON answers to what Pingora refuses;
//!   `redact` keeps credentials out of the libraries' log lines; `audit`
//!   writes the audit log (one JSON line per security event).

#[macro_use]
mod names;

pub mod accounts;
pub mod admin;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod connections;
pub mod cors;
pub mod error;
pub mod forwarded;
pub mod fsutil;
pub mod import;
pub mod logging;
pub mod mailer;
pub mod metrics;
pub mod passwords;
pub mod path;
pub mod proxy;
pub mod redact;
pub mod reload;
pub mod revocation;
pub mod routes;
pub mod server;
pub mod state;
pub mod store;
pub mod tls;
pub mod tokens;
pub mod upstream;

use std::time::{SystemTime, UNIX_EPOCH};

/// Lowers the calling thread's scheduling priority to the lowest nice level
/// (19 on Linux), for the background work that must not take CPU from
/// requests being answered: password hashing, the reset worker. A request's
/// thread that wakes up then preempts it almost at once, and it still gets
/// its (small) share of a busy CPU, unlike `SCHED_IDLE`, which a busy
/// neighbour process could starve. Best effort: an error is ignored.
pub fn lower_thread_priority() {
    // Crossplatform 0 of 99 maps to nice 19 for normal scheduling policies.
    if let Ok(p) = 0u8.try_into() {
        let _ = thread_priority::set_current_thread_priority(
            thread_priority::ThreadPriority::Crossplatform(p),
        );
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch.
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `2026-11-21T13:07:41Z` for a Unix time in seconds.
pub fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}
