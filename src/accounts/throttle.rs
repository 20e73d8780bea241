//! Counting failed logins per key (an account's email, a client address)
//! over a fixed window. Past the limit the key is refused, without running
//! argon2, until its window ends.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub struct Throttle {
    max_failures: u32,
    window: Duration,
    entries: Mutex<HashMap<String, (Instant, u32)>>,
}

/// Beyond this many tracked keys, expired ones are swept on insert.
const SWEEP_AT: usize = 10_000;

impl Throttle {
    pub fn new(max_failures: u32, window: Duration) -> Throttle {
        Throttle {
            max_failures,
            window,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(seconds)` to wait when `key` is over the limit.
    pub fn check(&self, key: &str) -> Option<u64> {
        let entries = self.entries.lock();
        let (start, count) = entries.get(key)?;
        let elapsed = start.elapsed();
        if *count >= self.max_failures && elapsed < self.window {
            Some((self.window - elapsed).as_secs().max(1))
        } else {
            None
        }
    }

    pub fn failure(&self, key: &str) {
        let mut entries = self.entries.lock();
        if entries.len() >= SWEEP_AT {
            let window = self.window;
            entries.retain(|_, (start, _)| start.elapsed() < window);
        }
        let now = Instant::now();
        let entry = entries.entry(key.to_string()).or_insert((now, 0));
        if entry.0.elapsed() >= self.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }

    pub fn success(&self, key: &str) {
        self.entries.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_after_the_limit_until_the_window_ends() {
        let t = Throttle::new(2, Duration::from_millis(200));
        t.failure("a");
        assert_eq!(t.check("a"), None);
        t.failure("a");
        assert!(t.check("a").is_some());
        assert_eq!(t.check("b"), None);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(t.check("a"), None);
        t.failure("a");
        t.failure("a");
        t.success("a");
        assert_eq!(t.check("a"), None);
    }
}
