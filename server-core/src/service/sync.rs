//! The `/sync` engine (spec: client-server-api/_index.md, "Syncing").
//!
//! Walkthrough. A sync token is `s<stream>_<typing>_<to-device>`: the stream position every
//! stored change takes (events, receipts, account data, device list changes, to-device
//! messages), the typing version, and the position to-device messages were delivered up to
//! (the next sync deletes those). A sync:
//! 1. takes a wake-up subscription, then reads the current position,
//! 2. builds the response for `(since, current]`: for each of the user's rooms, by their
//!    membership, the timeline (newest `limit` events, `limited` and `prev_batch` when more
//!    exist), the state before the timeline (all of it on an initial sync, a new join or
//!    `full_state`; else only state that changed in a gap), typing, receipts, room account
//!    data and unread counts; invites with stripped state; rooms left since the token;
//!    to-device messages, device list changes and one-time key counts (`service/e2ee`);
//! 3. returns it if anything is in it (or on an initial or full-state sync); otherwise waits
//!    for a wake-up or the timeout and tries again. Because the subscription is taken
//!    before reading, a change that lands between the read and the wait still wakes it.

use std::time::{Duration, Instant};

use ruma::{RoomId, UserId};
use serde_json::{Map, Value, json};

use super::{
    account::Account,
    e2ee::{DeviceListUpdates, E2ee},
    notifier::Notifier,
    presence::Presence,
    rooms::Rooms,
    typing::Typing,
};
use crate::{
    error::{Error, Result},
    pdu::{Pdu, client_event, stripped_state},
    storage::{Membership, Store, StoredEvent},
};

/// The part of a sync filter Kith applies.
#[derive(Debug, Clone)]
pub struct SyncFilter {
    /// Timeline events per room.
    pub timeline_limit: u32,
    /// Timeline event filter.
    pub timeline: super::rooms::EventFilter,
    /// Send only the member events that the timeline's senders need.
    pub lazy_load_members: bool,
    /// Which `m.presence` events to send (types and senders).
    pub presence: super::rooms::EventFilter,
    /// The most presence events per sync.
    pub presence_limit: usize,
}

impl Default for SyncFilter {
    fn default() -> Self {
        Self {
            timeline_limit: 10,
            timeline: Default::default(),
            lazy_load_members: false,
            presence: Default::default(),
            presence_limit: usize::MAX,
        }
    }
}

/// A parsed sync token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncToken {
    /// The stream position.
    pub pos: i64,
    /// The typing version.
    pub typing: u64,
    /// The stream position up to which to-device messages were delivered; the next sync
    /// deletes them. Below `pos` when a sync carried only part of a long inbox.
    pub to_device: i64,
}

impl SyncToken {
    /// Parses `s<pos>_<typing>_<to-device>` (or the older `s<pos>_<typing>`).
    pub fn parse(token: &str) -> Result<Self> {
        let invalid = || Error::invalid_param("Invalid sync token.");
        let rest = token.strip_prefix('s').ok_or_else(invalid)?;
        let mut parts = rest.split('_');
        let mut number = || -> Result<i64> {
            parts
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(invalid)
        };
        let pos = number()?;
        let typing = u64::try_from(number()?).map_err(|_| invalid())?;
        let to_device = match number() {
            Ok(td) if td <= pos => td,
            Ok(_) => return Err(invalid()),
            Err(_) if rest.matches('_').count() == 1 => pos,
            Err(e) => return Err(e),
        };
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(Self {
            pos,
            typing,
            to_device,
        })
    }

    fn render(&self) -> String {
        format!("s{}_{}_{}", self.pos, self.typing, self.to_device)
    }
}

/// The sync service. Cheap to clone.
#[derive(Clone)]
pub struct Sync {
    store: Store,
    notifier: Notifier,
    typing: Typing,
    rooms: Rooms,
    account: Account,
    e2ee: E2ee,
    presence: Presence,
}

/// Everything one sync request asks for.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    /// The token from the previous sync.
    pub since: Option<String>,
    /// How long to wait for news.
    pub timeout: Duration,
    /// Send the full state of every room.
    pub full_state: bool,
    /// The filter.
    pub filter: SyncFilter,
}

impl Sync {
    /// Builds the service.
    pub fn new(
        store: Store,
        notifier: Notifier,
        typing: Typing,
        rooms: Rooms,
        account: Account,
        e2ee: E2ee,
        presence: Presence,
    ) -> Self {
        Self {
            store,
            notifier,
            typing,
            rooms,
            account,
            e2ee,
            presence,
        }
    }

    /// Runs one `/sync` for the user's device; returns the response body.
    pub async fn sync(
        &self,
        user_id: &UserId,
        device_id: &str,
        request: SyncRequest,
    ) -> Result<Value> {
        let since = request.since.as_deref().map(SyncToken::parse).transpose()?;
        let deadline = Instant::now() + request.timeout.min(Duration::from_secs(300));
        loop {
            let mut subscription = self.notifier.subscribe();
            let now = self.now().await?;
            let (body, has_news) = self.build(user_id, device_id, since, now, &request).await?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if has_news || since.is_none() || request.full_state || remaining.is_zero() {
                return Ok(body);
            }
            if !subscription.wait(remaining).await {
                // Timed out: one last look, then answer (empty or not).
                let now = self.now().await?;
                return Ok(self
                    .build(user_id, device_id, since, now, &request)
                    .await?
                    .0);
            }
        }
    }

    async fn now(&self) -> Result<SyncToken> {
        let pos = self.store.current_stream_pos().await?;
        Ok(SyncToken {
            pos,
            typing: self.typing.version(),
            to_device: pos,
        })
    }

    async fn build(
        &self,
        user_id: &UserId,
        device_id: &str,
        since: Option<SyncToken>,
        now: SyncToken,
        request: &SyncRequest,
    ) -> Result<(Value, bool)> {
        let since_pos = since.map_or(0, |s| s.pos);
        let mut join = Map::new();
        let mut invite = Map::new();
        let mut leave = Map::new();
        let mut knock = Map::new();
        for membership in self.rooms.memberships_of(user_id).await? {
            let Ok(room_id) = RoomId::parse(&membership.room_id) else {
                continue;
            };
            let changed = membership.stream_pos > since_pos;
            match membership.membership.as_str() {
                "join" => {
                    if let Some(room) = self
                        .joined_room(
                            user_id,
                            device_id,
                            &room_id,
                            &membership,
                            since,
                            now,
                            request,
                        )
                        .await?
                    {
                        join.insert(room_id.to_string(), room);
                    }
                }
                "invite" if changed => {
                    let state = self.stripped_state_with(&room_id, &membership).await?;
                    invite.insert(
                        room_id.to_string(),
                        json!({ "invite_state": { "events": state } }),
                    );
                }
                "knock" if changed => {
                    let state = self.stripped_state_with(&room_id, &membership).await?;
                    knock.insert(
                        room_id.to_string(),
                        json!({ "knock_state": { "events": state } }),
                    );
                }
                "leave" | "ban" if changed && since.is_some() => {
                    let room = self
                        .left_room(
                            user_id,
                            device_id,
                            &room_id,
                            &membership,
                            since_pos,
                            request,
                        )
                        .await?;
                    leave.insert(room_id.to_string(), room);
                }
                _ => {}
            }
        }
        let mut global_account_data = Vec::new();
        for (room, data_type, content) in self.account.changed_since(user_id, since_pos).await? {
            if room.is_empty() {
                global_account_data.push(json!({ "type": data_type, "content": content }));
            }
        }
        // spec: modules/end_to_end_encryption.md, "Extensions to /sync", and
        // modules/send_to_device.md, "Client behaviour".
        let (to_device, to_device_up_to) = self
            .e2ee
            .to_device_for_sync(user_id, device_id, since.map(|s| s.to_device), now.pos)
            .await?;
        let device_lists = match since {
            Some(since) => {
                self.e2ee
                    .device_list_updates(user_id, since.pos, now.pos)
                    .await?
            }
            None => DeviceListUpdates::default(),
        };
        // spec: modules/presence.md: the presence of everyone the user shares a room with.
        let mut presence: Vec<Value> = self
            .presence
            .changes_for(user_id, since_pos, now.pos)
            .await?
            .into_iter()
            .filter(|event| {
                let sender = event["sender"].as_str().unwrap_or_default();
                request.filter.presence.allows("m.presence", sender)
            })
            .collect();
        // The newest changes when there are more than the filter's limit.
        let skip = presence.len().saturating_sub(request.filter.presence_limit);
        presence.drain(..skip);
        let one_time_key_counts = self.e2ee.one_time_key_counts(user_id, device_id).await?;
        let unused_fallback = self
            .e2ee
            .unused_fallback_key_types(user_id, device_id)
            .await?;
        let has_news = !join.is_empty()
            || !invite.is_empty()
            || !leave.is_empty()
            || !knock.is_empty()
            || !global_account_data.is_empty()
            || !presence.is_empty()
            || !to_device.is_empty()
            || !device_lists.is_empty();
        let next = SyncToken {
            to_device: to_device_up_to,
            ..now
        };
        let body = json!({
            "next_batch": next.render(),
            "rooms": { "join": join, "invite": invite, "leave": leave, "knock": knock },
            "account_data": { "events": global_account_data },
            "presence": { "events": presence },
            "to_device": { "events": to_device },
            "device_lists": { "changed": device_lists.changed, "left": device_lists.left },
            "device_one_time_keys_count": one_time_key_counts,
            "device_unused_fallback_key_types": unused_fallback,
        });
        Ok((body, has_news))
    }

    #[allow(clippy::too_many_arguments)]
    async fn joined_room(
        &self,
        user_id: &UserId,
        device_id: &str,
        room_id: &RoomId,
        membership: &Membership,
        since: Option<SyncToken>,
        now: SyncToken,
        request: &SyncRequest,
    ) -> Result<Option<Value>> {
        let since_pos = since.map_or(0, |s| s.pos);
        let newly_joined = since.is_none() || membership.stream_pos > since_pos;
        let (visible_after, _) = self.rooms.visible_range(user_id, room_id).await?;
        let limit = request.filter.timeline_limit.clamp(1, 500);
        let (events, limited) = self
            .timeline(
                room_id,
                since_pos.max(visible_after),
                now.pos,
                limit,
                &request.filter,
            )
            .await?;
        let timeline_start = events
            .first()
            .map_or(now.pos, |(stored, _)| stored.stream_pos - 1);

        let state_events: Vec<Pdu> = if newly_joined || request.full_state || limited {
            let full = newly_joined || request.full_state;
            // Everything on a new join; otherwise only state that changed in the gap
            // between the token and the timeline.
            self.state_at(room_id, timeline_start)
                .await?
                .into_iter()
                .filter(|(pos, _)| full || *pos > since_pos)
                .map(|(_, p)| p)
                .collect()
        } else {
            Vec::new()
        };
        let state_events = if request.filter.lazy_load_members && !request.full_state {
            let timeline_senders: Vec<&UserId> = events.iter().map(|(_, p)| &*p.sender).collect();
            state_events
                .into_iter()
                .filter(|p| {
                    p.kind.to_string() != "m.room.member"
                        || p.state_key.as_deref().is_some_and(|k| {
                            k == user_id.as_str()
                                || timeline_senders.iter().any(|s| s.as_str() == k)
                        })
                })
                .collect()
        } else {
            state_events
        };

        let mut ephemeral = Vec::new();
        if let Some(typing) = self
            .typing
            .changed_since(room_id.as_str(), since.map_or(0, |s| s.typing))
        {
            ephemeral.push(json!({ "type": "m.typing", "content": { "user_ids": typing } }));
        }
        let receipts = self
            .store
            .account_data()
            .receipts_since(room_id.as_str(), since_pos)
            .await?;
        let mut receipt_content = Map::new();
        for r in receipts
            .into_iter()
            .filter(|r| r.receipt_type == "m.read" || r.user_id == user_id.as_str())
        {
            let mut info = json!({ "ts": r.ts });
            if !r.thread_id.is_empty() {
                info["thread_id"] = json!(r.thread_id);
            }
            let by_type = receipt_content
                .entry(r.event_id)
                .or_insert_with(|| json!({}));
            by_type[&r.receipt_type][&r.user_id] = info;
        }
        if !receipt_content.is_empty() {
            ephemeral.push(json!({ "type": "m.receipt", "content": receipt_content }));
        }
        let room_account_data: Vec<Value> = self
            .account
            .changed_since(user_id, since_pos)
            .await?
            .into_iter()
            .filter(|(room, _, _)| room == room_id.as_str())
            .map(|(_, t, c)| json!({ "type": t, "content": c }))
            .collect();

        let unchanged = events.is_empty()
            && state_events.is_empty()
            && ephemeral.is_empty()
            && room_account_data.is_empty();
        if unchanged && !newly_joined {
            return Ok(None);
        }
        let read_up_to = self
            .store
            .account_data()
            .read_up_to(room_id.as_str(), user_id.as_str())
            .await?;
        let (notification_count, highlight_count) = self
            .store
            .events()
            .unread_counts(room_id.as_str(), user_id.as_str(), read_up_to, now.pos)
            .await?;
        let mut timeline = Vec::with_capacity(events.len());
        for (stored, _) in &events {
            timeline.push(
                self.rooms
                    .render(stored, Some((user_id, device_id)), false)
                    .await?,
            );
        }
        let mut room = json!({
            "timeline": { "events": timeline, "limited": limited, "prev_batch": format!("t{timeline_start}") },
            "state": { "events": state_events.iter().map(|p| client_event(p, json!({}), false)).collect::<Vec<_>>() },
            "ephemeral": { "events": ephemeral },
            "account_data": { "events": room_account_data },
            "unread_notifications": { "notification_count": notification_count, "highlight_count": highlight_count },
        });
        if newly_joined {
            room["summary"] = self.summary(room_id, user_id).await?;
        }
        Ok(Some(room))
    }

    async fn left_room(
        &self,
        user_id: &UserId,
        device_id: &str,
        room_id: &RoomId,
        membership: &Membership,
        since_pos: i64,
        request: &SyncRequest,
    ) -> Result<Value> {
        let limit = request.filter.timeline_limit.clamp(1, 500);
        let (events, limited) = self
            .timeline(
                room_id,
                since_pos,
                membership.stream_pos,
                limit,
                &request.filter,
            )
            .await?;
        let timeline_start = events
            .first()
            .map_or(membership.stream_pos, |(stored, _)| stored.stream_pos - 1);
        let mut timeline = Vec::with_capacity(events.len());
        for (stored, _) in &events {
            timeline.push(
                self.rooms
                    .render(stored, Some((user_id, device_id)), false)
                    .await?,
            );
        }
        Ok(json!({
            "timeline": { "events": timeline, "limited": limited, "prev_batch": format!("t{timeline_start}") },
            "state": { "events": [] },
            "account_data": { "events": [] },
        }))
    }

    /// The newest `limit` matching events in `(after, up_to]`, oldest first, and whether
    /// older ones were left out.
    async fn timeline(
        &self,
        room_id: &RoomId,
        after: i64,
        up_to: i64,
        limit: u32,
        filter: &SyncFilter,
    ) -> Result<(Vec<(StoredEvent, Pdu)>, bool)> {
        let fetched = self
            .store
            .events()
            .room_events_backwards(room_id.as_str(), after, up_to, limit + 1)
            .await?;
        let limited = fetched.len() > limit as usize;
        let mut events = Vec::with_capacity(fetched.len());
        for stored in fetched.into_iter().take(limit as usize) {
            let pdu = self.rooms.parse(&stored)?;
            if filter.timeline.matches(&pdu) {
                events.push((stored, pdu));
            }
        }
        events.reverse();
        Ok((events, limited))
    }

    async fn state_at(&self, room_id: &RoomId, pos: i64) -> Result<Vec<(i64, Pdu)>> {
        self.store
            .events()
            .state_at(room_id.as_str(), pos)
            .await?
            .iter()
            .map(|stored| Ok((stored.stream_pos, self.rooms.parse(stored)?)))
            .collect()
    }

    async fn stripped_state_with(
        &self,
        room_id: &RoomId,
        membership: &Membership,
    ) -> Result<Vec<Value>> {
        // An invite or knock in a room this server is not in shows the state its server sent.
        let user_id = UserId::parse(membership.user_id.as_str()).map_err(Error::internal)?;
        let mut events = match self.rooms.remote_room_state(room_id, &user_id).await? {
            Some(state) => state,
            None => self.rooms.invite_state(room_id).await?,
        };
        if let Some(member) = self
            .rooms
            .pdus(vec![membership.event_id.clone()])
            .await?
            .pop()
        {
            events.push(stripped_state(&member));
        }
        Ok(events)
    }

    /// `m.heroes` and member counts (spec: "Calculating the display name for a room").
    async fn summary(&self, room_id: &RoomId, user_id: &UserId) -> Result<Value> {
        let members = self.rooms.members(room_id).await?;
        let joined = members.iter().filter(|m| m.membership == "join").count();
        let invited = members.iter().filter(|m| m.membership == "invite").count();
        let mut heroes: Vec<&str> = members
            .iter()
            .filter(|m| {
                m.user_id != user_id.as_str() && matches!(m.membership.as_str(), "join" | "invite")
            })
            .map(|m| m.user_id.as_str())
            .collect();
        heroes.sort();
        heroes.truncate(5);
        Ok(
            json!({ "m.heroes": heroes, "m.joined_member_count": joined, "m.invited_member_count": invited }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::SyncToken;

    #[test]
    fn sync_tokens_round_trip_and_garbage_is_rejected() {
        let token = SyncToken {
            pos: 42,
            typing: 7,
            to_device: 40,
        };
        assert_eq!(SyncToken::parse(&token.render()).expect("parses"), token);
        // Tokens from before to-device delivery mean "delivered up to pos".
        assert_eq!(
            SyncToken::parse("s42_7").expect("parses"),
            SyncToken {
                to_device: 42,
                ..token
            }
        );
        for bad in [
            "", "42", "s42", "sx_1", "t4_2", "s4_2_9", "s4_2_1_1", "s4_-1", "s4_2_",
        ] {
            assert!(SyncToken::parse(bad).is_err(), "{bad}");
        }
    }
}
