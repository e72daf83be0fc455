//! Typing notices: in memory only, as the spec allows (they are ephemeral).
//!
//! Each room keeps who is typing until when, and the typing version at which it last
//! changed. The version is the second half of a sync token, so a sync sends a room's typing
//! list exactly when it changed since the client's token. An expiry is a change too: a timer
//! task clears the user and wakes syncs (spec: client-server-api/modules/typing_notifications.md).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

// Tokio's clock, so that the expiry timer and the deadlines it checks agree (and tests can
// pause time).
use tokio::time::Instant;

use super::notifier::Notifier;

/// Longest typing timeout honoured, whatever the client asks.
const MAX_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Default)]
struct RoomTyping {
    until: HashMap<String, Instant>,
    changed_at: u64,
}

#[derive(Default)]
struct State {
    version: u64,
    rooms: HashMap<String, RoomTyping>,
}

/// Typing notices. Cheap to clone.
#[derive(Clone)]
pub struct Typing {
    state: Arc<Mutex<State>>,
    notifier: Notifier,
}

impl Typing {
    /// An empty typing table.
    pub fn new(notifier: Notifier) -> Self {
        Self {
            state: Arc::default(),
            notifier,
        }
    }

    /// Marks `user_id` typing in `room_id` for `timeout`, or not typing when `None`.
    pub fn set(&self, room_id: &str, user_id: &str, timeout: Option<Duration>) {
        let deadline = timeout.map(|t| Instant::now() + t.min(MAX_TIMEOUT));
        let changed = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let version = state.version + 1;
            let room = state.rooms.entry(room_id.to_owned()).or_default();
            let changed = match deadline {
                Some(deadline) => room.until.insert(user_id.to_owned(), deadline).is_none(),
                None => room.until.remove(user_id).is_some(),
            };
            if changed {
                room.changed_at = version;
                state.version = version;
            }
            changed
        };
        if changed {
            self.notifier.notify();
        }
        if let Some(deadline) = deadline {
            let this = self.clone();
            let (room_id, user_id) = (room_id.to_owned(), user_id.to_owned());
            tokio::spawn(async move {
                // Sleep again in the unlikely case the timer woke early.
                while !this.expire(&room_id, &user_id, deadline) {
                    tokio::time::sleep_until(deadline).await;
                }
            });
        }
    }

    /// Clears the user's notice if it is still the one that ends at `deadline` and that time
    /// has come. Returns false when the timer must wait longer.
    fn expire(&self, room_id: &str, user_id: &str, deadline: Instant) -> bool {
        let now = Instant::now();
        if now < deadline {
            return false;
        }
        let expired = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let version = state.version + 1;
            let Some(room) = state.rooms.get_mut(room_id) else {
                return true;
            };
            // A notice renewed or cleared since has another deadline (and its own timer).
            let expired = room.until.get(user_id) == Some(&deadline);
            if expired {
                room.until.remove(user_id);
                room.changed_at = version;
                state.version = version;
            }
            expired
        };
        if expired {
            self.notifier.notify();
        }
        true
    }

    /// The current typing version (the second part of sync tokens).
    pub fn version(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).version
    }

    /// Who is typing in the room, if that changed after version `since`.
    pub fn changed_since(&self, room_id: &str, since: u64) -> Option<Vec<String>> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let room = state.rooms.get(room_id)?;
        if room.changed_at <= since {
            return None;
        }
        let now = Instant::now();
        let mut users: Vec<String> = room
            .until
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(u, _)| u.clone())
            .collect();
        users.sort();
        Some(users)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn typing_shows_until_cleared_and_only_when_changed() {
        let typing = Typing::new(Notifier::new());
        let start = typing.version();
        typing.set("!r", "@a:x", Some(Duration::from_secs(30)));
        assert_eq!(
            typing.changed_since("!r", start),
            Some(vec!["@a:x".to_owned()])
        );
        let after = typing.version();
        assert_eq!(typing.changed_since("!r", after), None);
        typing.set("!r", "@a:x", None);
        assert_eq!(typing.changed_since("!r", after), Some(vec![]));
    }

    #[tokio::test]
    async fn typing_expires_by_itself() {
        let notifier = Notifier::new();
        let typing = Typing::new(notifier.clone());
        typing.set("!r", "@a:x", Some(Duration::from_millis(20)));
        let v = typing.version();
        // The expiry wakes syncs after it has cleared the user, so waiting for that wake-up
        // (not for a fixed time) makes the check independent of machine load.
        let mut woken = notifier.subscribe();
        assert!(
            woken.wait(Duration::from_secs(10)).await,
            "no expiry wake-up"
        );
        assert_eq!(typing.changed_since("!r", v), Some(vec![]));
    }
}
