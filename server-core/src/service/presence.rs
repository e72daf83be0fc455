//! Presence (spec: client-server-api/modules/presence.md; server-server-api.md, "EDUs",
//! `m.presence`).
//!
//! Walkthrough. Each user has one stored row: `online`, `unavailable` or `offline`, a status
//! message, when they were last active, and the stream position of the last change, so
//! `/sync` sends the changes since its token (for users who share a room with the syncer).
//! - A local user's row changes when they `PUT .../presence/{userId}/status`, when a sync
//!   asks for a different state (`set_presence`, `online` by default), and when they send
//!   an event after a minute or more without one (`active`, which keeps `last_active_ago`
//!   true without a write per message).
//! - Idle timeout: an `online` user last active more than five minutes ago is shown as
//!   `unavailable` when their presence is read (spec: "Idle timeout").
//! - Other servers' users: `m.presence` EDUs are always taken in, for users of the sending
//!   server who share a room with a local user. Ours go out only when
//!   `federation.send_presence` is on (off by default: presence tells others when you are
//!   at your computer).
//!
//! Not done: a user whose clients all stop syncing is not turned `offline` by a timer; they
//! stay as they were until idle.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ruma::{ServerName, UserId};
use serde_json::{Value, json};

use super::{ServerIdentity, federation::Federation, notifier::Notifier};
use crate::{
    config::Config,
    error::{Error, Result},
    storage::{PresenceRow, Store, now_ms},
};

/// Online users last active longer ago than this are shown as `unavailable`.
const IDLE_AFTER: Duration = Duration::from_secs(5 * 60);
/// The longest status message kept, in bytes (the spec sets none; this keeps a stranger's
/// server from filling rows).
pub const MAX_STATUS_BYTES: usize = 1024;
/// Activity is written down at most this often per user.
const ACTIVE_GRANULARITY: Duration = Duration::from_secs(60);

/// A presence state, as the spec's enum has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceState {
    /// At a client.
    Online,
    /// Idle, or away.
    Unavailable,
    /// Not connected, or hiding.
    Offline,
}

impl PresenceState {
    /// Parses `online`, `unavailable` or `offline`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "online" => Some(Self::Online),
            "unavailable" => Some(Self::Unavailable),
            "offline" => Some(Self::Offline),
            _ => None,
        }
    }

    /// The spec's name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Unavailable => "unavailable",
            Self::Offline => "offline",
        }
    }
}

/// The presence service. Cheap to clone.
#[derive(Clone)]
pub struct Presence {
    config: Arc<Config>,
    identity: Arc<ServerIdentity>,
    store: Store,
    notifier: Notifier,
    federation: Federation,
    /// Each local user's state and when it was last written, as this process wrote it.
    local: Arc<Mutex<HashMap<String, (PresenceState, Instant)>>>,
}

impl Presence {
    /// Builds the service.
    pub fn new(
        config: Arc<Config>,
        identity: Arc<ServerIdentity>,
        store: Store,
        notifier: Notifier,
        federation: Federation,
    ) -> Self {
        Self {
            config,
            identity,
            store,
            notifier,
            federation,
            local: Arc::default(),
        }
    }

    /// Sets a local user's presence and status message (`PUT .../presence/{userId}/status`);
    /// setting it counts as activity.
    pub async fn set(
        &self,
        user_id: &UserId,
        state: PresenceState,
        status_msg: Option<String>,
    ) -> Result<()> {
        if status_msg
            .as_ref()
            .is_some_and(|m| m.len() > MAX_STATUS_BYTES)
        {
            return Err(Error::invalid_param(format!(
                "The status message is longer than {MAX_STATUS_BYTES} bytes."
            )));
        }
        self.write_local(user_id, state, status_msg).await
    }

    /// A sync of a local user that asks to be shown as `state` (`set_presence`). Writes
    /// only a change; `offline` means "do not change my presence" here.
    pub async fn syncing(&self, user_id: &UserId, state: PresenceState) -> Result<()> {
        if state == PresenceState::Offline || self.local_state(user_id) == Some(state) {
            return Ok(());
        }
        let stored = self.store.presence().get(user_id.as_str()).await?;
        if stored
            .as_ref()
            .is_some_and(|row| row.presence == state.as_str())
        {
            return Ok(());
        }
        let status_msg = stored.and_then(|row| row.status_msg);
        self.write_local(user_id, state, status_msg).await
    }

    /// A local user did something (sent an event): their last active time moves on, at most
    /// once a minute, and an idle or unavailable user is online again (spec: "Idle timeout").
    pub async fn active(&self, user_id: &UserId) -> Result<()> {
        {
            let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            match local.get_mut(user_id.as_str()) {
                Some((_, at)) if now.duration_since(*at) < ACTIVE_GRANULARITY => return Ok(()),
                // Not again for a minute, even if the write below fails.
                Some((_, at)) => *at = now,
                None => {}
            }
        }
        let stored = self.store.presence().get(user_id.as_str()).await?;
        // Someone who chose to be offline stays hidden.
        if stored.as_ref().is_some_and(|row| row.presence == "offline") {
            return Ok(());
        }
        let status_msg = stored.and_then(|row| row.status_msg);
        self.write_local(user_id, PresenceState::Online, status_msg)
            .await
    }

    async fn write_local(
        &self,
        user_id: &UserId,
        state: PresenceState,
        status_msg: Option<String>,
    ) -> Result<()> {
        let row = PresenceRow {
            user_id: user_id.to_string(),
            presence: state.as_str().to_owned(),
            status_msg,
            last_active_ts: now_ms(),
            currently_active: state == PresenceState::Online,
            stream_pos: 0,
        };
        self.store.presence().set(row.clone()).await?;
        self.local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user_id.to_string(), (state, Instant::now()));
        self.notifier.notify();
        self.share(&row).await
    }

    fn local_state(&self, user_id: &UserId) -> Option<PresenceState> {
        self.local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(user_id.as_str())
            .map(|(state, _)| *state)
    }

    /// Sends a local user's new presence to the servers that share a room with them, when
    /// the config allows it.
    async fn share(&self, row: &PresenceRow) -> Result<()> {
        if !self.config.federation.send_presence {
            return Ok(());
        }
        let update = federation_update(row, now_ms());
        let ours = self.identity.server_name.as_str();
        for server in self
            .store
            .events()
            .servers_sharing_rooms(&row.user_id)
            .await?
        {
            if server == ours {
                continue;
            }
            let Ok(server) = ServerName::parse(&server) else {
                continue;
            };
            self.federation
                .queue_edu(&server, "m.presence", json!({ "push": [update.clone()] }))
                .await?;
        }
        Ok(())
    }

    /// A user's presence as `requester` may see it (`GET .../presence/{userId}/status`):
    /// their own, or that of someone they share a room with (else `M_FORBIDDEN`). A local
    /// user who never set any is `offline`; an unknown one is `M_NOT_FOUND`.
    pub async fn get(&self, requester: &UserId, user_id: &UserId) -> Result<Value> {
        if requester != user_id
            && !self
                .store
                .events()
                .share_a_room(requester.as_str(), user_id.as_str())
                .await?
        {
            return Err(Error::forbidden(
                "You can only see the presence of people you share a room with.",
            ));
        }
        match self.store.presence().get(user_id.as_str()).await? {
            Some(row) => Ok(content(&row, now_ms())),
            None if user_id.server_name() == self.identity.server_name
                && self.store.users().get(user_id.as_str()).await?.is_some() =>
            {
                Ok(json!({ "presence": "offline" }))
            }
            None => Err(Error::not_found("No presence is known for this user.")),
        }
    }

    /// The `m.presence` events for a sync of `user_id`: changes in `(since, until]` of them
    /// and of everyone who shares a room with them.
    pub async fn changes_for(
        &self,
        user_id: &UserId,
        since: i64,
        until: i64,
    ) -> Result<Vec<Value>> {
        let now = now_ms();
        Ok(self
            .store
            .presence()
            .changed_for(user_id.as_str(), since, until)
            .await?
            .iter()
            .map(|row| {
                json!({ "type": "m.presence", "sender": row.user_id, "content": content(row, now) })
            })
            .collect())
    }

    /// An `m.presence` EDU from `origin`: updates about its users who share a room with a
    /// local user. Anything malformed or about another server's users is skipped.
    pub async fn receive(&self, origin: &ServerName, edu: &Value) -> Result<()> {
        let Some(updates) = edu["push"].as_array() else {
            return Ok(());
        };
        let now = now_ms();
        let mut changed = false;
        for update in updates {
            let Some(user_id) = update["user_id"]
                .as_str()
                .and_then(|u| UserId::parse(u).ok())
                .filter(|u| u.server_name() == origin)
            else {
                continue;
            };
            let (Some(state), Some(ago)) = (
                update["presence"].as_str().and_then(PresenceState::parse),
                update["last_active_ago"].as_i64().filter(|ago| *ago >= 0),
            ) else {
                continue;
            };
            if !self
                .store
                .events()
                .shares_room_with_server(user_id.as_str(), self.identity.server_name.as_str())
                .await?
            {
                continue;
            }
            let status_msg = update["status_msg"].as_str();
            if status_msg.is_some_and(|m| m.len() > MAX_STATUS_BYTES) {
                continue;
            }
            let row = PresenceRow {
                user_id: user_id.to_string(),
                presence: state.as_str().to_owned(),
                status_msg: status_msg.map(str::to_owned),
                last_active_ts: now.saturating_sub(ago),
                currently_active: update["currently_active"].as_bool().unwrap_or(false),
                stream_pos: 0,
            };
            // Servers repeat unchanged presence; only news moves the stream.
            let stored = self.store.presence().get(row.user_id.as_str()).await?;
            if stored.is_some_and(|old| same_news(&old, &row)) {
                continue;
            }
            self.store.presence().set(row).await?;
            changed = true;
        }
        if changed {
            self.notifier.notify();
        }
        Ok(())
    }
}

/// Whether a new row says nothing a client would not already know from the old one: the
/// same state, message and activity flag, and a last active time within a minute.
fn same_news(old: &PresenceRow, new: &PresenceRow) -> bool {
    let granularity = i64::try_from(ACTIVE_GRANULARITY.as_millis()).unwrap_or(i64::MAX);
    old.presence == new.presence
        && old.status_msg == new.status_msg
        && old.currently_active == new.currently_active
        && (old.last_active_ts - new.last_active_ts).abs() < granularity
}

/// The state shown for a row at `now`: `online` past the idle timeout shows `unavailable`.
fn shown_state(row: &PresenceRow, now: i64) -> (&str, bool) {
    let idle = i64::try_from(IDLE_AFTER.as_millis()).unwrap_or(i64::MAX);
    if row.presence == "online" && now - row.last_active_ts > idle {
        ("unavailable", false)
    } else {
        (row.presence.as_str(), row.currently_active)
    }
}

/// The content of an `m.presence` event, and of `GET .../status`.
fn content(row: &PresenceRow, now: i64) -> Value {
    let (presence, currently_active) = shown_state(row, now);
    let mut content = json!({
        "presence": presence,
        "last_active_ago": (now - row.last_active_ts).max(0),
        "currently_active": currently_active,
    });
    if let Some(status) = &row.status_msg {
        content["status_msg"] = json!(status);
    }
    content
}

/// One entry of an `m.presence` EDU's `push` (spec: server-server-api.md, `m.presence`).
fn federation_update(row: &PresenceRow, now: i64) -> Value {
    let mut update = content(row, now);
    update["user_id"] = json!(row.user_id);
    update
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(presence: &str, last_active_ts: i64) -> PresenceRow {
        PresenceRow {
            user_id: "@a:x".into(),
            presence: presence.into(),
            status_msg: Some("Making cupcakes".into()),
            last_active_ts,
            currently_active: presence == "online",
            stream_pos: 1,
        }
    }

    #[test]
    fn online_users_idle_for_five_minutes_show_as_unavailable() {
        let now = 10_000_000;
        let fresh = content(&row("online", now - 1_000), now);
        assert_eq!(fresh["presence"], "online");
        assert_eq!(fresh["currently_active"], true);
        assert_eq!(fresh["last_active_ago"], 1_000);
        assert_eq!(fresh["status_msg"], "Making cupcakes");
        let idle = content(&row("online", now - 6 * 60 * 1000), now);
        assert_eq!(idle["presence"], "unavailable");
        assert_eq!(idle["currently_active"], false);
        assert_eq!(content(&row("offline", 0), now)["presence"], "offline");
    }

    #[test]
    fn repeated_presence_is_not_news_but_a_new_state_or_message_is() {
        let old = row("online", 1_000_000);
        let mut new = row("online", 1_030_000);
        assert!(same_news(&old, &new));
        new.status_msg = None;
        assert!(!same_news(&old, &new));
        assert!(!same_news(&old, &row("unavailable", 1_000_000)));
        assert!(!same_news(&old, &row("online", 1_100_000)));
    }

    #[test]
    fn federation_updates_carry_the_user_and_the_spec_fields() {
        let update = federation_update(&row("online", 5_000), 7_000);
        assert_eq!(update["user_id"], "@a:x");
        assert_eq!(update["presence"], "online");
        assert_eq!(update["last_active_ago"], 2_000);
        assert_eq!(PresenceState::parse("busy"), None);
        assert_eq!(
            PresenceState::parse("unavailable").map(PresenceState::as_str),
            Some("unavailable")
        );
    }
}
