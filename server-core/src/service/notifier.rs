//! Wakes long-polling `/sync` requests when something new is stored or a typing notice changes.
//!
//! One `watch` channel carries a counter that every change bumps. A waiting sync re-checks
//! its user's rooms when woken; for a home server with a few dozen users this is cheaper and
//! simpler than per-user channels, and it never misses a wake-up: `watch` remembers the last
//! value, so a change between the sync's check and its wait still wakes it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::sync::watch;

/// The wake-up channel. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    sender: watch::Sender<u64>,
    /// Set when the server stops: long polls answer at once instead of holding up shutdown.
    closing: Arc<AtomicBool>,
}

impl Notifier {
    /// A new notifier.
    pub fn new() -> Self {
        Self {
            sender: watch::Sender::new(0),
            closing: Arc::default(),
        }
    }

    /// Ends every wait now and makes later waits return at once (for a graceful stop).
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.notify();
    }

    /// Tells every waiting sync that something changed.
    pub fn notify(&self) {
        self.sender.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A subscription; take it before checking for news, then [`Subscription::wait`].
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            receiver: self.sender.subscribe(),
            closing: self.closing.clone(),
        }
    }
}

impl Default for Notifier {
    fn default() -> Self {
        Self::new()
    }
}

/// One waiter's view of the channel.
pub struct Subscription {
    receiver: watch::Receiver<u64>,
    closing: Arc<AtomicBool>,
}

impl Subscription {
    /// Waits until something changed since the subscription (or the last wait), or `timeout`
    /// passed. Returns false on timeout, and at once when the server is stopping.
    pub async fn wait(&mut self, timeout: Duration) -> bool {
        if self.closing.load(Ordering::SeqCst) {
            return false;
        }
        let changed = matches!(
            tokio::time::timeout(timeout, self.receiver.changed()).await,
            Ok(Ok(()))
        );
        changed && !self.closing.load(Ordering::SeqCst)
    }
}
