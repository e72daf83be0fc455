//! Reading rooms: single events, `/messages` pagination, state and members, with the
//! history-visibility rules applied (spec: client-server-api/_index.md, "History visibility").
//!
//! Visibility is simplified to stream ranges: a member sees the whole history when it is
//! `shared` or `world_readable`, otherwise from their latest membership event on; someone
//! who left sees up to the event that removed them.

use ruma::{RoomId, UserId};
use serde_json::{Value, json};

use super::Rooms;
use crate::{
    error::{Error, Result},
    pdu::{Pdu, client_event},
    storage::StoredEvent,
};

/// Pagination direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Towards older events.
    Backward,
    /// Towards newer events.
    Forward,
}

/// The parts of a `RoomEventFilter` Kith applies.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only these types (`None`: all).
    pub types: Option<Vec<String>>,
    /// Never these types.
    pub not_types: Vec<String>,
    /// Only these senders.
    pub senders: Option<Vec<String>>,
    /// Never these senders.
    pub not_senders: Vec<String>,
    /// Send only the member events of the senders in the chunk.
    pub lazy_load_members: bool,
}

impl EventFilter {
    /// Whether an event passes the filter.
    pub fn matches(&self, pdu: &Pdu) -> bool {
        self.allows(&pdu.kind.to_string(), pdu.sender.as_str())
    }

    /// Whether an event of this type from this sender passes the filter (a type pattern
    /// may end in `*`).
    pub fn allows(&self, kind: &str, sender: &str) -> bool {
        let type_ok = |pattern: &String| {
            pattern == kind
                || pattern
                    .strip_suffix('*')
                    .is_some_and(|p| kind.starts_with(p))
        };
        self.types
            .as_ref()
            .is_none_or(|types| types.iter().any(type_ok))
            && !self.not_types.iter().any(type_ok)
            && self
                .senders
                .as_ref()
                .is_none_or(|s| s.iter().any(|x| x == sender))
            && !self.not_senders.iter().any(|x| x == sender)
    }
}

/// A page of `/messages`.
#[derive(Debug, Clone)]
pub struct Page {
    /// Events in client format, in the requested direction.
    pub chunk: Vec<Value>,
    /// The token the page started at.
    pub start: String,
    /// The token to continue from; `None` when there is nothing more.
    pub end: Option<String>,
    /// Member events for the chunk's senders, when lazy loading.
    pub state: Vec<Value>,
}

/// Parses a pagination or sync token to its stream position.
pub fn token_pos(token: &str) -> Result<i64> {
    let digits = token.trim_start_matches(['s', 't']);
    let digits = digits.split('_').next().unwrap_or_default();
    digits
        .parse()
        .map_err(|_| Error::invalid_param("Invalid pagination token."))
}

impl Rooms {
    /// The stream range `(after, up_to]` of the room that the user may see.
    pub async fn visible_range(&self, user_id: &UserId, room_id: &RoomId) -> Result<(i64, i64)> {
        self.version(room_id).await?;
        let visibility = self
            .state_event(room_id, "m.room.history_visibility", "")
            .await?
            .and_then(|p| {
                p.content_value()
                    .get("history_visibility")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "shared".to_owned());
        let full_history = matches!(visibility.as_str(), "shared" | "world_readable");
        // The whole history starts below 0: events fetched by backfill take negative
        // positions, older ones lower (storage::events::backfilled).
        let start = i64::MIN;
        match self.membership(room_id, user_id).await? {
            Some(m) if m.membership == "join" => Ok((
                if full_history {
                    start
                } else {
                    m.stream_pos - 1
                },
                i64::MAX,
            )),
            Some(m) if matches!(m.membership.as_str(), "leave" | "ban") => {
                Ok((start, m.stream_pos))
            }
            Some(m) if m.membership == "invite" && visibility != "joined" => {
                Ok((start, m.stream_pos))
            }
            _ if visibility == "world_readable" => Ok((start, i64::MAX)),
            _ => Err(Error::forbidden("You are not in this room.")),
        }
    }

    /// Renders a stored event for a viewer: client format plus `unsigned` (age, the
    /// viewer's own transaction id, `redacted_because`).
    pub async fn render(
        &self,
        stored: &StoredEvent,
        viewer_device: Option<(&UserId, &str)>,
        with_room_id: bool,
    ) -> Result<Value> {
        let pdu = self.parse(stored)?;
        let now = i64::try_from(u64::from(ruma::MilliSecondsSinceUnixEpoch::now().get()))
            .unwrap_or(i64::MAX);
        let ts = i64::try_from(u64::from(pdu.origin_server_ts.get())).unwrap_or(i64::MAX);
        let mut unsigned = json!({ "age": now.saturating_sub(ts) });
        if let (Some((user, device)), Some((txn_id, txn_device))) = (viewer_device, &stored.txn)
            && pdu.sender == *user
            && txn_device == device
        {
            unsigned["transaction_id"] = json!(txn_id);
        }
        if let Some(redaction_id) = &stored.redacted_by
            && let Some(redaction) = self.store.events().get(redaction_id).await?
        {
            unsigned["redacted_because"] =
                client_event(&self.parse(&redaction)?, json!({}), with_room_id);
        }
        Ok(client_event(&pdu, unsigned, with_room_id))
    }

    /// The stored event if the user may see it, with the user's visible range
    /// (`M_NOT_FOUND` otherwise, so as not to reveal that it exists).
    async fn visible_event(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        event_id: &str,
    ) -> Result<(StoredEvent, i64, i64)> {
        let (after, up_to) = self.visible_range(user_id, room_id).await?;
        let stored = self
            .store
            .events()
            .get(event_id)
            .await?
            .filter(|e| {
                e.room_id == room_id.as_str() && e.stream_pos > after && e.stream_pos <= up_to
            })
            .ok_or_else(|| Error::not_found("Event not found."))?;
        Ok((stored, after, up_to))
    }

    /// One event, if the user may see it (`M_NOT_FOUND` otherwise, so as not to reveal it).
    pub async fn event(&self, user_id: &UserId, room_id: &RoomId, event_id: &str) -> Result<Value> {
        let (stored, _, _) = self.visible_event(user_id, room_id, event_id).await?;
        self.render(&stored, None, true).await
    }

    /// A page of `/messages`.
    #[allow(clippy::too_many_arguments)]
    pub async fn messages(
        &self,
        user_id: &UserId,
        device_id: &str,
        room_id: &RoomId,
        from: Option<&str>,
        dir: Direction,
        limit: u32,
        filter: &EventFilter,
    ) -> Result<Page> {
        let (after, up_to) = self.visible_range(user_id, room_id).await?;
        let current = self.store.current_stream_pos().await?;
        let from_pos = match from {
            Some(token) => token_pos(token)?,
            None if dir == Direction::Backward => current,
            None => i64::MIN,
        };
        let limit = limit.clamp(1, 1000);
        let mut chunk = Vec::new();
        let mut cursor = from_pos;
        let mut exhausted = false;
        let mut backfilled = false;
        let mut pdus = Vec::new();
        while chunk.len() < limit as usize {
            let batch = match dir {
                Direction::Backward => {
                    let top = cursor.min(up_to);
                    self.store
                        .events()
                        .room_events_backwards(room_id.as_str(), after, top, limit)
                        .await?
                }
                Direction::Forward => {
                    let start = cursor.max(after) + 1;
                    let end = up_to.saturating_add(1).min(current + 1);
                    self.store
                        .events()
                        .room_events_forwards(room_id.as_str(), start, end, limit)
                        .await?
                }
            };
            // Paging back past the oldest event held here: ask the room's other servers
            // for what came before (spec: server-server-api.md, "Backfilling"), once.
            if dir == Direction::Backward
                && batch.len() < limit as usize
                && !backfilled
                && after == i64::MIN
            {
                backfilled = true;
                if self.backfill(room_id, limit).await? > 0 {
                    continue;
                }
            }
            let Some(last) = batch.last() else {
                exhausted = true;
                break;
            };
            cursor = match dir {
                Direction::Backward => last.stream_pos - 1,
                Direction::Forward => last.stream_pos,
            };
            for stored in &batch {
                let pdu = self.parse(stored)?;
                if filter.matches(&pdu) && chunk.len() < limit as usize {
                    chunk.push(
                        self.render(stored, Some((user_id, device_id)), true)
                            .await?,
                    );
                    pdus.push(pdu);
                    cursor = match dir {
                        Direction::Backward => stored.stream_pos - 1,
                        Direction::Forward => stored.stream_pos,
                    };
                }
            }
            if batch.len() < limit as usize {
                exhausted = true;
                break;
            }
        }
        let state = if filter.lazy_load_members {
            self.member_events_for(room_id, &pdus).await?
        } else {
            Vec::new()
        };
        Ok(Page {
            chunk,
            start: format!("t{from_pos}"),
            end: (!exhausted || cursor != from_pos)
                .then(|| format!("t{cursor}"))
                .filter(|_| !exhausted),
            state,
        })
    }

    /// Events around one event (spec: "GET /rooms/{roomId}/context/{eventId}"): up to
    /// `limit` events split before and after it, the state at it, and pagination tokens.
    #[allow(clippy::too_many_arguments)]
    pub async fn context(
        &self,
        user_id: &UserId,
        device_id: &str,
        room_id: &RoomId,
        event_id: &str,
        limit: u32,
        filter: &EventFilter,
    ) -> Result<Value> {
        let (stored, after, up_to) = self.visible_event(user_id, room_id, event_id).await?;
        let pos = stored.stream_pos;
        let limit = limit.min(100);
        let (before_limit, after_limit) = (limit / 2, limit - limit / 2);
        let current = self.store.current_stream_pos().await?;
        let before = self
            .store
            .events()
            .room_events_backwards(room_id.as_str(), after, pos - 1, before_limit)
            .await?;
        let later = self
            .store
            .events()
            .room_events_forwards(
                room_id.as_str(),
                pos + 1,
                up_to.min(current).saturating_add(1),
                after_limit,
            )
            .await?;
        let mut pdus = Vec::new();
        let mut render_all = async |events: &[StoredEvent]| -> Result<Vec<Value>> {
            let mut out = Vec::new();
            for e in events {
                let pdu = self.parse(e)?;
                if filter.matches(&pdu) {
                    out.push(self.render(e, Some((user_id, device_id)), true).await?);
                    pdus.push(pdu);
                }
            }
            Ok(out)
        };
        let events_before = render_all(&before).await?;
        let events_after = render_all(&later).await?;
        let start = before.last().map_or(pos - 1, |e| e.stream_pos - 1);
        let end = later.last().map_or(pos, |e| e.stream_pos);
        pdus.push(self.parse(&stored)?);
        let state: Vec<Value> = if filter.lazy_load_members {
            self.member_events_for(room_id, &pdus).await?
        } else {
            self.store
                .events()
                .state_at(room_id.as_str(), pos)
                .await?
                .iter()
                .map(|e| self.parse(e).map(|p| client_event(&p, json!({}), true)))
                .collect::<Result<_>>()?
        };
        Ok(json!({
            "event": self.render(&stored, Some((user_id, device_id)), true).await?,
            "events_before": events_before,
            "events_after": events_after,
            "start": format!("t{start}"),
            "end": format!("t{end}"),
            "state": state,
        }))
    }

    /// Events that relate to `event_id`, newest first (spec: "GET /relations"), optionally
    /// of one relation type and event type.
    #[allow(clippy::too_many_arguments)]
    pub async fn relations(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        event_id: &str,
        rel_type: Option<String>,
        event_type: Option<String>,
        from: Option<&str>,
        limit: u32,
    ) -> Result<Value> {
        let (after, up_to) = self.visible_range(user_id, room_id).await?;
        let before = match from {
            Some(token) => token_pos(token)?,
            None => i64::MAX,
        }
        .min(up_to.saturating_add(1));
        let limit = limit.clamp(1, 100);
        let related = self
            .store
            .events()
            .relations(event_id, rel_type, before, limit + 1)
            .await?;
        let more = related.len() > limit as usize;
        let mut chunk = Vec::new();
        let mut last = None;
        for stored in related.iter().take(limit as usize) {
            last = Some(stored.stream_pos);
            if stored.room_id != room_id.as_str() || stored.stream_pos <= after {
                continue;
            }
            let pdu = self.parse(stored)?;
            if event_type
                .as_deref()
                .is_some_and(|t| t != pdu.kind.to_string())
            {
                continue;
            }
            chunk.push(self.render(stored, None, true).await?);
        }
        let mut body = json!({ "chunk": chunk });
        if more && let Some(last) = last {
            body["next_batch"] = json!(format!("t{last}"));
        }
        Ok(body)
    }

    /// The current member events of the senders of `pdus` (for lazy-loading members).
    pub(crate) async fn member_events_for(
        &self,
        room_id: &RoomId,
        pdus: &[Pdu],
    ) -> Result<Vec<Value>> {
        let mut senders: Vec<&UserId> = pdus.iter().map(|p| &*p.sender).collect();
        senders.sort();
        senders.dedup();
        let mut events = Vec::new();
        for sender in senders {
            if let Some(member) = self
                .state_event(room_id, "m.room.member", sender.as_str())
                .await?
            {
                events.push(client_event(&member, json!({}), true));
            }
        }
        Ok(events)
    }

    /// The room state the user may see: current state while joined, the state when they
    /// left otherwise.
    pub async fn state_for(&self, user_id: &UserId, room_id: &RoomId) -> Result<Vec<Pdu>> {
        let (_, up_to) = self.visible_range(user_id, room_id).await?;
        if up_to == i64::MAX {
            return self.current_state(room_id).await;
        }
        self.store
            .events()
            .state_at(room_id.as_str(), up_to)
            .await?
            .iter()
            .map(|e| self.parse(e))
            .collect()
    }

    /// One state event the user may see; `M_NOT_FOUND` if unset.
    pub async fn state_event_for(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        event_type: &str,
        state_key: &str,
    ) -> Result<Pdu> {
        self.state_for(user_id, room_id)
            .await?
            .into_iter()
            .find(|p| p.kind.to_string() == event_type && p.state_key.as_deref() == Some(state_key))
            .ok_or_else(|| Error::not_found("The room has no such state event."))
    }

    /// Whether the user has the power to send state events of `event_type`.
    pub async fn may_send_state(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        event_type: &str,
    ) -> Result<bool> {
        self.has_power(room_id, user_id, Some(event_type)).await
    }

    /// Whether the user has the power to redact other users' events.
    pub(super) async fn may_redact_others(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<bool> {
        self.has_power(room_id, user_id, None).await
    }

    /// Compares the user's power level with the level for sending state of `event_type`
    /// (or, for `None`, the `redact` level), as `m.room.power_levels` sets them
    /// (spec: client-server-api/_index.md, "m.room.power_levels"; v12 creators outrank all).
    async fn has_power(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        event_type: Option<&str>,
    ) -> Result<bool> {
        let (_, rules) = self.version(room_id).await?;
        let create = self.state_event(room_id, "m.room.create", "").await?;
        if rules.authorization.explicitly_privilege_room_creators
            && let Some(create) = &create
            && create.room_creators().iter().any(|c| c == user_id)
        {
            return Ok(true);
        }
        let Some(power) = self.state_event(room_id, "m.room.power_levels", "").await? else {
            return Ok(create.is_some_and(|c| c.sender == *user_id));
        };
        let content = power.content_value();
        let level = |v: Option<&Value>| {
            v.and_then(|v| {
                v.as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
        };
        let user_level = level(content.pointer(&format!(
            "/users/{}",
            user_id.as_str().replace('~', "~0").replace('/', "~1")
        )))
        .or_else(|| level(content.get("users_default")))
        .unwrap_or(0);
        let needed = match event_type {
            Some(event_type) => level(content.get("events").and_then(|e| e.get(event_type)))
                .or_else(|| level(content.get("state_default")))
                .unwrap_or(50),
            None => level(content.get("redact")).unwrap_or(50),
        };
        Ok(user_level >= needed)
    }
}
