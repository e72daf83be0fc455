//! Typing notices: in memory only, as the spec allows (they are ephemeral).
//!
//! Each room keeps who is typing until when, and the typing version at which it last
//! changed. The version is the second half of a sync token, so a sync sends a room's typing
//! list exactly when it changed since the client's token. An expiry is a change too: a timer
//! task clears the user and wakes syncs (spec: client-server-api/modules/typing_notifications.md).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

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
        let changed = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let version = state.version + 1;
            let room = state.rooms.entry(room_id.to_owned()).or_default();
            let changed = match timeout {
                Some(timeout) => {
                    let new = room
                        .until
                        .insert(
                            user_id.to_owned(),
                            Instant::now() + timeout.min(MAX_TIMEOUT),
                        )
                        .is_none();
                    new
                }
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
        if let Some(timeout) = timeout {
            let this = self.clone();
            let (room_id, user_id) = (room_id.to_owned(), user_id.to_owned());
            tokio::spawn(async move {
                tokio::time::sleep(timeout.min(MAX_TIMEOUT)).await;
                this.expire(&room_id, &user_id);
            });
        }
    }

    fn expire(&self, room_id: &str, user_id: &str) {
        let expired = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let version = state.version + 1;
            let Some(room) = state.rooms.get_mut(room_id) else {
                return;
            };
            // The timer may fire a hair before the deadline (it counts whole milliseconds);
            // a notice renewed since then has a deadline far beyond this slack.
            let slack = Duration::from_millis(10);
            let expired = room
                .until
                .get(user_id)
                .is_some_and(|until| *until <= Instant::now() + slack);
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
        let typing = Typing::new(Notifier::new());
        typing.set("!r", "@a:x", Some(Duration::from_millis(20)));
        let v = typing.version();
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(typing.changed_since("!r", v), Some(vec![]));
    }
}
