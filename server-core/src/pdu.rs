//! The persistent data unit (PDU): an event as servers store and exchange it.
//!
//! A leaf module. [`Pdu`] is deserialised lazily from the stored PDU JSON (spec:
//! server-server-api.md, "PDUs"; rooms/v12.md for the event format), implements
//! `ruma::state_res::Event` so ruma's auth rules can check it, and renders itself in the
//! client format (spec: client-server-api/_index.md, "Room Event Format").

use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UInt,
    UserId, events::TimelineEventType,
};
use serde::Deserialize;
use serde_json::{Value, json, value::RawValue};

/// A stored event, with the fields auth and the client format need.
#[derive(Debug, Clone, Deserialize)]
pub struct Pdu {
    /// Not part of the PDU JSON for room versions ≥ 3; filled in from the store.
    #[serde(default = "placeholder_event_id")]
    pub event_id: OwnedEventId,
    /// As in the JSON: absent only from the `m.room.create` event of room version 12
    /// (whose room ID is derived from its hash). Auth rules check exactly this.
    #[serde(default)]
    pub room_id: Option<OwnedRoomId>,
    /// The room the event belongs to, always known; filled in from the store.
    #[serde(skip, default = "placeholder_room_id")]
    pub in_room: OwnedRoomId,
    /// Who sent it.
    pub sender: OwnedUserId,
    /// When the origin server says it was sent.
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    /// The event type.
    #[serde(rename = "type")]
    pub kind: TimelineEventType,
    /// The content, kept raw so unknown fields survive.
    pub content: Box<RawValue>,
    /// Present exactly for state events.
    #[serde(default)]
    pub state_key: Option<String>,
    /// The events this one follows in the room's graph.
    #[serde(default)]
    pub prev_events: Vec<OwnedEventId>,
    /// The state events that authorise this one.
    #[serde(default)]
    pub auth_events: Vec<OwnedEventId>,
    /// The event a redaction redacts (top level up to v10, in `content` from v11).
    #[serde(default)]
    pub redacts: Option<OwnedEventId>,
    /// The event's depth in the graph.
    #[serde(default)]
    pub depth: UInt,
}

fn placeholder_event_id() -> OwnedEventId {
    // Replaced by `Pdu::from_stored` before use: the PDU JSON of room versions >= 3 has no ID.
    ruma::owned_event_id!("$placeholder")
}

fn placeholder_room_id() -> OwnedRoomId {
    ruma::owned_room_id!("!placeholder:localhost")
}

impl Pdu {
    /// Parses a stored PDU JSON and attaches its event ID and room.
    pub fn from_stored(
        event_id: OwnedEventId,
        room_id: &RoomId,
        json: &str,
    ) -> serde_json::Result<Self> {
        let mut pdu: Pdu = serde_json::from_str(json)?;
        pdu.event_id = event_id;
        pdu.in_room = room_id.to_owned();
        Ok(pdu)
    }

    /// The content as a JSON value.
    pub fn content_value(&self) -> Value {
        serde_json::from_str(self.content.get()).unwrap_or(Value::Null)
    }

    /// For an `m.room.create` event: the room's creators, its sender and any
    /// `additional_creators` (spec: rooms/v12.md; they outrank everyone in v12 rooms).
    pub fn room_creators(&self) -> Vec<OwnedUserId> {
        let mut creators = vec![self.sender.clone()];
        if let Some(additional) = self
            .content_value()
            .get("additional_creators")
            .and_then(Value::as_array)
        {
            creators.extend(
                additional
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(|u| UserId::parse(u).ok()),
            );
        }
        creators
    }

    /// The event this one redacts, wherever the room version puts it.
    pub fn redacted_event(&self) -> Option<OwnedEventId> {
        if self.redacts.is_some() {
            return self.redacts.clone();
        }
        if self.kind != TimelineEventType::RoomRedaction {
            return None;
        }
        self.content_value()
            .get("redacts")
            .and_then(Value::as_str)
            .and_then(|s| EventId::parse(s).ok())
    }
}

/// Renders a stored PDU in the client event format, with `unsigned` extras.
///
/// `room_id` is included for the formats that carry it (`/event`, `/messages`, `/context`);
/// sync timelines leave it out as the spec's "ClientEventWithoutRoomID" says.
pub fn client_event(pdu: &Pdu, unsigned: Value, with_room_id: bool) -> Value {
    let mut event = json!({
        "type": pdu.kind.to_string(),
        "content": pdu.content_value(),
        "event_id": pdu.event_id,
        "sender": pdu.sender,
        "origin_server_ts": pdu.origin_server_ts,
        "unsigned": unsigned,
    });
    if let Some(map) = event.as_object_mut() {
        if let Some(state_key) = &pdu.state_key {
            map.insert("state_key".into(), json!(state_key));
        }
        if let Some(redacts) = pdu.redacted_event() {
            map.insert("redacts".into(), json!(redacts));
        }
        if with_room_id {
            map.insert("room_id".into(), json!(pdu.in_room));
        }
    }
    event
}

/// A stripped state event, as in invites and knocks (spec: "Stripped state").
pub fn stripped_state(pdu: &Pdu) -> Value {
    json!({
        "type": pdu.kind.to_string(),
        "state_key": pdu.state_key.clone().unwrap_or_default(),
        "content": pdu.content_value(),
        "sender": pdu.sender,
    })
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }
    fn room_id(&self) -> Option<&RoomId> {
        self.room_id.as_deref()
    }
    fn sender(&self) -> &UserId {
        &self.sender
    }
    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }
    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }
    fn content(&self) -> &RawValue {
        &self.content
    }
    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }
    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev_events.iter())
    }
    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth_events.iter())
    }
    fn redacts(&self) -> Option<&Self::Id> {
        self.redacts.as_ref()
    }
    fn rejected(&self) -> bool {
        false
    }
}
