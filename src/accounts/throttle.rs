//! Counting failed password checks per key (an account, a client address,
//! the pair) over a fixed window. Past the limit the key is refused, without
//! running argon2, until its window ends.
//!
//! An attempt is counted *before* its hash runs: `reserve` takes a slot (or
//! refuses), and the outcome settles it (`failure` keeps it as a failure,
//! `success` gives it back). Reservations still in flight count against the
//! limit, so concurrent guesses can never run more password checks than the
//! limit, however many arrive at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub struct Throttle {
    /// The limits, changed by a reload (`set`) without losing the counts.
    max_failures: AtomicU32,
    /// The window, in milliseconds.
    window_ms: AtomicU64,
    entries: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    /// Start of the current window.
    start: Instant,
    /// Failures counted in the current window.
    failures: u32,
    /// Attempts reserved and not settled yet (their hash is running).
    in_flight: u32,
}

/// Beyond this many tracked keys, expired and idle ones are swept on insert.
const SWEEP_AT: usize = 10_000;

/// A reserved attempt. Settle it with `success` or `release`; dropped
/// without either (a failed check, but also an early return on an error),
/// it counts as a failure, so no path can leave it in flight for good.
pub struct Attempt<'a> {
    throttle: &'a Throttle,
    key: String,
    settled: bool,
}

impl Throttle {
    pub fn new(max_failures: u32, window: Duration) -> Throttle {
        Throttle {
            max_failures: AtomicU32::new(max_failures),
            window_ms: AtomicU64::new(millis(window)),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// New limits (a reload): the counts so far are kept.
    pub fn set(&self, max_failures: u32, window: Duration) {
        self.max_failures.store(max_failures, Ordering::Relaxed);
        self.window_ms.store(millis(window), Ordering::Relaxed);
    }

    fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms.load(Ordering::Relaxed))
    }

    /// Reserves an attempt for `key`, or `Err(seconds)` to wait when its
    /// failures and the attempts in flight already reach the limit.
    pub fn reserve(&self, key: &str) -> Result<Attempt<'_>, u64> {
        let mut entries = self.entries.lock();
        let now = Instant::now();
        let (window, max_failures) = (self.window(), self.max_failures.load(Ordering::Relaxed));
        if entries.len() >= SWEEP_AT && !entries.contains_key(key) {
            entries.retain(|_, e| e.in_flight > 0 || now.duration_since(e.start) < window);
        }
        let entry = entries.entry(key.to_string()).or_insert(Entry {
            start: now,
            failures: 0,
            in_flight: 0,
        });
        if now.duration_since(entry.start) >= window {
            entry.start = now;
            entry.failures = 0;
        }
        if entry.failures.saturating_add(entry.in_flight) >= max_failures {
            let wait = if entry.failures >= max_failures {
                window.saturating_sub(now.duration_since(entry.start))
            } else {
                // Only checks still running fill the limit: they end soon.
                Duration::from_secs(1)
            };
            return Err(wait.as_secs().max(1));
        }
        entry.in_flight += 1;
        Ok(Attempt {
            throttle: self,
            key: key.to_string(),
            settled: false,
        })
    }

    fn settle(&self, key: &str, failed: bool, clear: bool) {
        let mut entries = self.entries.lock();
        let now = Instant::now();
        let Some(entry) = entries.get_mut(key) else {
            return;
        };
        entry.in_flight = entry.in_flight.saturating_sub(1);
        if failed {
            if now.duration_since(entry.start) >= self.window() {
                entry.start = now;
                entry.failures = 0;
            }
            entry.failures = entry.failures.saturating_add(1);
        } else if clear {
            entry.failures = 0;
        }
        if entry.in_flight == 0 && entry.failures == 0 {
            entries.remove(key);
        }
    }
}

impl Attempt<'_> {
    /// The check failed: the attempt stays counted (same as dropping it).
    pub fn failure(self) {}

    /// The check passed: the attempt is given back; with `clear`, the
    /// failures counted so far are forgotten too (attempts in flight stay).
    pub fn success(mut self, clear: bool) {
        self.settled = true;
        self.throttle.settle(&self.key, false, clear);
    }

    /// No check ran after all (another key refused it): given back.
    pub fn release(self) {
        self.success(false);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.throttle.settle(&self.key, true, false);
        }
    }
}

fn millis(window: Duration) -> u64 {
    u64::try_from(window.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn refuses_after_the_limit_until_the_window_ends() {
        let t = Throttle::new(2, Duration::from_millis(200));
        t.reserve("a").expect("first").failure();
        t.reserve("a").expect("second").failure();
        let wait = t.reserve("a").err().expect("over the limit");
        assert!(wait >= 1);
        assert!(t.reserve("b").is_ok());
        std::thread::sleep(Duration::from_millis(250));
        t.reserve("a").expect("a new window").failure();
        t.reserve("a").expect("one left").success(true);
        t.reserve("a").expect("cleared").failure();
        t.reserve("a").expect("one left again").failure();
        assert!(t.reserve("a").is_err());
    }

    #[test]
    fn attempts_in_flight_count_against_the_limit() {
        let t = Throttle::new(3, Duration::from_secs(60));
        let held: Vec<Attempt> = (0..3).map(|_| t.reserve("k").expect("slot")).collect();
        assert_eq!(t.reserve("k").err(), Some(1), "three checks are running");
        let mut held = held.into_iter();
        held.next().expect("one").release();
        // A success clears the failures, not the other checks still running.
        t.reserve("k").expect("a slot was given back").success(true);
        held.for_each(Attempt::failure);
        t.reserve("k").expect("one left").failure();
        assert!(t.reserve("k").is_err());
    }

    #[test]
    fn many_threads_never_run_more_checks_than_the_limit() {
        let t = Arc::new(Throttle::new(5, Duration::from_secs(60)));
        let checks = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..40)
            .map(|_| {
                let (t, checks) = (t.clone(), checks.clone());
                std::thread::spawn(move || {
                    if let Ok(attempt) = t.reserve("victim") {
                        checks.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(5));
                        attempt.failure();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("thread");
        }
        assert_eq!(checks.load(Ordering::SeqCst), 5);
    }
}
