//! A small in-memory rate limiter for failed logins.
//!
//! Keys (user IDs) get a window of one minute; after `limit` failures inside it the caller
//! must wait until the oldest failure leaves the window.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

const WINDOW: Duration = Duration::from_secs(60);

/// Counts failures per key. Cheap to clone.
#[derive(Clone)]
pub struct FailureLimiter {
    limit: usize,
    failures: Arc<Mutex<HashMap<String, VecDeque<Instant>>>>,
}

impl FailureLimiter {
    /// A limiter allowing `limit` failures per key per minute.
    pub fn new(limit: u32) -> Self {
        Self {
            limit: limit.max(1) as usize,
            failures: Arc::default(),
        }
    }

    /// `Some(wait)` if the key is over its limit now.
    pub fn check(&self, key: &str) -> Option<Duration> {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let entry = failures.get_mut(key)?;
        while entry
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            entry.pop_front();
        }
        if entry.len() >= self.limit {
            entry
                .front()
                .map(|oldest| WINDOW.saturating_sub(now.duration_since(*oldest)))
        } else {
            None
        }
    }

    /// Records one failure for the key.
    pub fn record_failure(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures
            .entry(key.to_owned())
            .or_default()
            .push_back(Instant::now());
    }

    /// Forgets the key's failures (after a success).
    pub fn reset(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_limited_after_the_allowed_failures_and_others_are_not() {
        let limiter = FailureLimiter::new(2);
        assert!(limiter.check("a").is_none());
        limiter.record_failure("a");
        assert!(limiter.check("a").is_none());
        limiter.record_failure("a");
        let wait = limiter.check("a").expect("limited");
        assert!(wait <= WINDOW && wait > Duration::from_secs(55));
        assert!(limiter.check("b").is_none());
        limiter.reset("a");
        assert!(limiter.check("a").is_none());
    }
}
