//! Per-key async locks: one task at a time per key (one fetch of a server's keys, one
//! fetch of a remote media item).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

/// A lock per key. Entries nobody holds are dropped as new ones are made, so keys that
/// come from other servers' input cannot grow the map without bound.
#[derive(Default)]
pub struct KeyedLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    /// The lock for `key`, to `lock().await`.
    pub fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        match self.locks.lock() {
            Ok(mut locks) => {
                locks.retain(|_, lock| Arc::strong_count(lock) > 1);
                locks.entry(key.to_owned()).or_default().clone()
            }
            // A poisoned map: a lock of its own, so the caller still goes on.
            Err(_) => Arc::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_per_key_and_idle_keys_are_dropped() {
        let locks = KeyedLocks::default();
        let a = locks.lock_for("a");
        let held = a.lock().await;
        assert!(locks.lock_for("a").try_lock().is_err());
        assert!(locks.lock_for("b").try_lock().is_ok());
        drop(held);
        drop(a);
        for i in 0..100 {
            let _ = locks.lock_for(&i.to_string());
        }
        assert!(locks.locks.lock().map(|l| l.len()).unwrap_or(0) <= 1);
    }
}
