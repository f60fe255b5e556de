//! Authentication failures counted per device and per source address in a sliding
//! window: past the limit, a key's requests are refused before any credentials are
//! read, so passwords cannot be guessed at speed.
//!
//! The counts live in the process: each server node limits what it sees. A device
//! spreading guesses over N nodes gets at most N times the limit.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::Millis;

/// Keys tracked at most; the oldest entries are dropped past it (an attacker cycling
/// addresses cannot grow the table without bound).
const MAX_KEYS: usize = 100_000;

#[derive(Debug)]
pub struct RateLimiter {
    max: u32,
    window: Millis,
    failures: Mutex<HashMap<String, (u32, Millis)>>,
}

impl RateLimiter {
    /// Allows `max` failures per key within `window` milliseconds.
    pub fn new(max: u32, window: Millis) -> RateLimiter {
        RateLimiter {
            max: max.max(1),
            window: window.max(1),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` has used up its failures.
    pub fn blocked(&self, key: &str, now: Millis) -> bool {
        let Ok(map) = self.failures.lock() else {
            return false;
        };
        map.get(key)
            .is_some_and(|&(n, since)| n >= self.max && now - since < self.window)
    }

    /// Counts one failure of `key`.
    pub fn fail(&self, key: &str, now: Millis) {
        let Ok(mut map) = self.failures.lock() else {
            return;
        };
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            let window = self.window;
            map.retain(|_, (_, since)| now - *since < window);
            if map.len() >= MAX_KEYS {
                map.clear();
            }
        }
        let e = map.entry(key.to_owned()).or_insert((0, now));
        if now - e.1 >= self.window {
            *e = (0, now);
        }
        e.0 += 1;
    }

    /// Forgets `key`'s failures (after a success).
    pub fn clear(&self, key: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_blocked_after_its_failures_until_the_window_passes() {
        let r = RateLimiter::new(3, 1000);
        for _ in 0..2 {
            r.fail("dev:a", 0);
        }
        assert!(!r.blocked("dev:a", 10));
        r.fail("dev:a", 20);
        assert!(r.blocked("dev:a", 30));
        assert!(!r.blocked("dev:b", 30));
        assert!(!r.blocked("dev:a", 1001));
        r.fail("dev:a", 1001);
        assert!(!r.blocked("dev:a", 1002), "a new window starts from zero");
        r.fail("ip:1", 0);
        r.fail("ip:1", 0);
        r.fail("ip:1", 0);
        r.clear("ip:1");
        assert!(!r.blocked("ip:1", 1));
    }
}
