//! The persistent data unit (PDU): an event as servers store and exchange it.
//!
//! A leaf module. [`Pdu`] is deserialised lazily from the stored PDU JSON (spec:
//! server-server-api.md, "PDUs"; rooms/v12.md for the event format), implements
//! `ruma::state_res::Event` so ruma's auth rules can check it, and renders itself in the
//! client format (spec: client-server-api/_index.md, "Room Event Format").

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId,
    OwnedRoomId, OwnedUserId, RoomId, SigningKeyAlgorithm, UInt, UserId,
    canonical_json::redact,
    events::TimelineEventType,
    room_version_rules::RoomVersionRules,
    serde::{Base64, base64::UrlSafe},
    signatures::{PublicKeyMap, Verified, content_hash, verify_canonical_json_bytes},
};
use serde::Deserialize;
use serde_json::{Value, json, value::RawValue};
use sha2::{Digest, Sha256};

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

/// The largest PDU, in bytes of canonical JSON (spec: client-server-api/_index.md, "Size
/// limits"; server-server-api.md, "PDUs").
const MAX_PDU_BYTES: usize = 65_535;

/// A received event's ID and the bytes its signatures cover.
///
/// Both come from one canonical JSON: the event redacted, without `signatures` and
/// `unsigned` (spec: server-server-api.md, "Calculating the reference hash for an event";
/// appendices.md, "Signing Events"). ruma's `reference_hash` and `verify_event` each make
/// it again; checking the thousands of events of a big room's join makes it once.
#[derive(Debug, Clone)]
pub struct Reference {
    /// `$` and the URL-safe base64 of the SHA-256 (room versions 4 and later).
    pub event_id: OwnedEventId,
    signed: String,
}

impl Reference {
    /// The reference of an event in PDU format; the error says why there is none.
    pub fn of(object: &CanonicalJsonObject, rules: &RoomVersionRules) -> Result<Self, String> {
        let mut redacted =
            redact(object.clone(), &rules.redaction, None).map_err(|e| e.to_string())?;
        redacted.remove("signatures");
        redacted.remove("unsigned");
        let signed = serde_json::to_string(&redacted).map_err(|e| e.to_string())?;
        if signed.len() > MAX_PDU_BYTES {
            return Err("the event is larger than 65,535 bytes".to_owned());
        }
        let hash = Base64::<UrlSafe, _>::new(Sha256::digest(signed.as_bytes())).encode();
        let event_id = EventId::parse(format!("${hash}")).map_err(|e| e.to_string())?;
        Ok(Self { event_id, signed })
    }
}

/// Checks a received event's signatures and content hash, as ruma's `verify_event` does,
/// with the signed bytes of its [`Reference`] (spec: server-server-api.md, "Validating
/// hashes and signatures on received events"). Every server named must have signed it with
/// at least one key in `keys`, and every signature by a key in `keys` must hold.
/// `Verified::Signatures` means the content hash does not match: the event is to be kept
/// redacted. The error is a rejection reason.
pub fn verify(
    object: &CanonicalJsonObject,
    reference: &Reference,
    servers: impl IntoIterator<Item = impl AsRef<str>>,
    keys: &PublicKeyMap,
) -> Result<Verified, String> {
    let Some(CanonicalJsonValue::Object(signatures)) = object.get("signatures") else {
        return Err("it has no signatures".to_owned());
    };
    let Some(CanonicalJsonValue::String(hash)) = object.get("hashes").and_then(|h| match h {
        CanonicalJsonValue::Object(h) => h.get("sha256"),
        _ => None,
    }) else {
        return Err("it has no sha256 content hash".to_owned());
    };
    for server in servers {
        let server = server.as_ref();
        let Some(CanonicalJsonValue::Object(by_key)) = signatures.get(server) else {
            return Err(format!("it has no signature of {server}"));
        };
        let known = keys.get(server);
        let mut checked = false;
        for (key_id, signature) in by_key {
            let Some(key) = known.and_then(|k| k.get(key_id)) else {
                continue;
            };
            if !key_id.starts_with("ed25519:") {
                continue;
            }
            let CanonicalJsonValue::String(signature) = signature else {
                return Err(format!("its signature {server} {key_id} is not a string"));
            };
            let signature = Base64::<ruma::serde::base64::Standard>::parse(signature)
                .map_err(|_| format!("its signature {server} {key_id} is not base64"))?;
            verify_canonical_json_bytes(
                &SigningKeyAlgorithm::Ed25519,
                key.as_bytes(),
                signature.as_bytes(),
                reference.signed.as_bytes(),
            )
            .map_err(|e| format!("its signature {server} {key_id} does not verify: {e}"))?;
            checked = true;
        }
        if !checked {
            return Err(format!(
                "it has no signature of {server} by a key known here"
            ));
        }
    }
    let computed = content_hash(object).map_err(|e| e.to_string())?;
    Ok(match Base64::<ruma::serde::base64::Standard>::parse(hash) {
        Ok(given) if given.as_bytes() == computed.as_bytes() => Verified::All,
        _ => Verified::Signatures,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ruma::{
        RoomVersionId,
        signatures::{Ed25519KeyPair, hash_and_sign_event, reference_hash, verify_event},
    };

    use super::*;

    fn signed_event(
        rules: &RoomVersionRules,
        key: &Ed25519KeyPair,
        body: &str,
    ) -> CanonicalJsonObject {
        let value = json!({
            "auth_events": ["$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"],
            "content": {"body": body, "msgtype": "m.text", "ünïcode": "✓"},
            "depth": 12,
            "origin_server_ts": 1_700_000_000_000_u64,
            "prev_events": ["$bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"],
            "room_id": "!room:one.example",
            "sender": "@alice:one.example",
            "type": "m.room.message",
            "unsigned": {"age_ts": 1_700_000_000_000_u64},
        });
        let Ok(CanonicalJsonValue::Object(mut object)) = CanonicalJsonValue::try_from(value) else {
            panic!("an object");
        };
        hash_and_sign_event("one.example", key, &mut object, &rules.redaction).expect("signed");
        object
    }

    fn key_pair() -> Ed25519KeyPair {
        Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "k1".to_owned()).expect("a key")
    }

    fn keys_of(key: &Ed25519KeyPair) -> PublicKeyMap {
        let mut by_id = BTreeMap::new();
        by_id.insert(
            "ed25519:k1".to_owned(),
            Base64::new(key.public_key().to_vec()),
        );
        let mut keys = PublicKeyMap::new();
        keys.insert("one.example".to_owned(), by_id);
        keys
    }

    #[test]
    fn a_reference_is_rumas_reference_hash_and_the_checks_agree_with_verify_event() {
        let key = key_pair();
        let keys = keys_of(&key);
        for version in [RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12] {
            let rules = version.rules().expect("rules");
            let good = signed_event(&rules, &key, "hello");
            let reference = Reference::of(&good, &rules).expect("a reference");
            assert_eq!(
                reference.event_id.as_str()[1..],
                reference_hash(&good, &rules).expect("a hash")
            );
            let ours = verify(&good, &reference, ["one.example"], &keys);
            assert!(matches!(ours, Ok(Verified::All)), "{ours:?}");
            assert!(matches!(
                verify_event(&keys, &good, &rules),
                Ok(Verified::All)
            ));

            // Content changed after signing: the signatures (over the redacted event)
            // still hold, the content hash does not.
            let mut edited = good.clone();
            edited.insert(
                "content".to_owned(),
                CanonicalJsonValue::try_from(json!({"body": "changed"})).expect("json"),
            );
            let reference = Reference::of(&edited, &rules).expect("a reference");
            assert!(matches!(
                verify(&edited, &reference, ["one.example"], &keys),
                Ok(Verified::Signatures)
            ));
            assert!(matches!(
                verify_event(&keys, &edited, &rules),
                Ok(Verified::Signatures)
            ));

            // A field the signatures cover changed: both refuse.
            let mut forged = good.clone();
            forged.insert(
                "depth".to_owned(),
                CanonicalJsonValue::Integer(13_u32.into()),
            );
            let reference = Reference::of(&forged, &rules).expect("a reference");
            assert!(verify(&forged, &reference, ["one.example"], &keys).is_err());
            assert!(verify_event(&keys, &forged, &rules).is_err());

            // Signed by another key than the one known: both refuse.
            let other = keys_of(&key_pair());
            let reference = Reference::of(&good, &rules).expect("a reference");
            assert!(verify(&good, &reference, ["one.example"], &other).is_err());
            assert!(verify_event(&other, &good, &rules).is_err());

            // A server whose signature is required but absent.
            assert!(verify(&good, &reference, ["one.example", "two.example"], &keys).is_err());
        }
    }

    #[test]
    fn an_event_over_the_size_limit_is_refused() {
        let rules = RoomVersionId::V11.rules().expect("rules");
        let key = key_pair();
        let mut event = signed_event(&rules, &key, "hello");
        event.insert(
            "content".to_owned(),
            CanonicalJsonValue::try_from(json!({"body": "x".repeat(70_000)})).expect("json"),
        );
        // Redaction drops a message's content, so the reference is still made ...
        let reference = Reference::of(&event, &rules).expect("a reference");
        // ... but the event as a whole is too large.
        assert!(verify(&event, &reference, ["one.example"], &keys_of(&key)).is_err());
    }
}
