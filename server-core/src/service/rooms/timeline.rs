//! Building, signing, authorising and storing local events.
//!
//! The walk for every event a local user sends:
//! 1. Under the room's lock, read the current state entries the event's auth rules need
//!    (`auth_types_for_event`), the forward extremities and the depth.
//! 2. Build the PDU (spec: rooms/v12.md, "Event format"), add the content hash and our
//!    signature, and derive the event ID from the reference hash.
//! 3. Check it with ruma's state-independent and state-dependent auth rules against the
//!    current state. A failure is `M_FORBIDDEN` with ruma's reason.
//! 4. Decide whom it notifies by their push rules (push.rs), then store it in one
//!    transaction (event, state, membership, extremity, transaction id, push actions),
//!    then wake syncs.

use std::collections::HashMap;

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId,
    RoomId, UserId,
    events::TimelineEventType,
    room_version_rules::RoomVersionRules,
    signatures::{hash_and_sign_event, reference_hash},
    state_res::{
        auth_types_for_event, check_state_dependent_auth_rules, check_state_independent_auth_rules,
    },
};
use serde_json::{Value, json};

use super::Rooms;
use crate::{
    error::{Error, ErrorKind, Result},
    pdu::Pdu,
    storage::{NewCurrent, NewEvent, StateBefore},
};

/// The spec's limit on a PDU's size (spec: client-server-api/_index.md, "Size limits").
const MAX_PDU_BYTES: usize = 65_536;

/// What a client asks to send: the parts of an event a user chooses.
#[derive(Debug, Clone)]
pub struct EventDraft {
    /// The event type.
    pub event_type: String,
    /// `Some` for state events.
    pub state_key: Option<String>,
    /// The content.
    pub content: Value,
}

impl EventDraft {
    /// A state event draft.
    pub fn state(event_type: &str, state_key: &str, content: Value) -> Self {
        Self {
            event_type: event_type.to_owned(),
            state_key: Some(state_key.to_owned()),
            content,
        }
    }
    /// A message (non-state) event draft.
    pub fn message(event_type: &str, content: Value) -> Self {
        Self {
            event_type: event_type.to_owned(),
            state_key: None,
            content,
        }
    }
}

/// The client transaction an event was sent with: (device, scope, transaction id).
pub(crate) type Txn = (String, String, String);

/// The state keys an event's auth rules look at (`auth_types_for_event`).
pub(super) type AuthTypes = Vec<(ruma::events::StateEventType, String)>;

/// The room as a new local event is built on: its rules, current state (IDs), forward
/// extremities and their greatest depth, and who is joined.
pub(super) struct Head {
    pub(super) rules: RoomVersionRules,
    pub(super) state_ids: HashMap<(String, String), String>,
    pub(super) prev_events: Vec<OwnedEventId>,
    pub(super) depth: i64,
    /// The joined members' user IDs.
    pub(super) joined: Vec<String>,
}

/// The state an event's auth rules may consult: its auth types plus the create event.
pub(super) fn auth_keys(types: &AuthTypes) -> impl Iterator<Item = (String, String)> + '_ {
    std::iter::once(("m.room.create".to_owned(), String::new()))
        .chain(types.iter().map(|(t, k)| (t.to_string(), k.clone())))
}

/// The auth types of a draft; content the rules cannot read is `M_BAD_JSON`.
pub(super) fn auth_types(
    rules: &RoomVersionRules,
    sender: &UserId,
    draft: &EventDraft,
) -> Result<AuthTypes> {
    let kind = TimelineEventType::from(draft.event_type.as_str());
    let raw_content = serde_json::value::to_raw_value(&draft.content)?;
    auth_types_for_event(
        &kind,
        sender,
        draft.state_key.as_deref(),
        &raw_content,
        &rules.authorization,
    )
    .map_err(|e| Error::bad_json(format!("Invalid event content: {e}")))
}

/// Where a new event goes in the room's graph and who else gets it.
pub(super) struct Placement {
    pub(super) state_before: StateBefore,
    pub(super) new_current: NewCurrent,
    pub(super) destinations: Vec<String>,
}

/// A built, signed event before it is checked and stored.
pub(super) struct Built {
    pub(super) pdu: Pdu,
    pub(super) json: String,
}

/// The state events that new events were last checked against, by event ID: each message
/// is checked against its sender's membership, the power levels and the create event, and
/// these rarely change. Events are immutable but for redaction, which empties the cache.
#[derive(Default)]
pub(super) struct StateCache(std::sync::Mutex<HashMap<String, Pdu>>);

/// Events kept at most; when full, the cache starts again empty.
const STATE_CACHE_EVENTS: usize = 512;

impl StateCache {
    /// The cached events of `ids`, and the IDs that are not cached.
    fn get(&self, ids: Vec<String>) -> (Vec<Pdu>, Vec<String>) {
        let cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut missing = Vec::new();
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            match cache.get(&id) {
                Some(pdu) => found.push(pdu.clone()),
                None => missing.push(id),
            }
        }
        (found, missing)
    }

    fn insert(&self, pdus: &[Pdu]) {
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() + pdus.len() > STATE_CACHE_EVENTS {
            cache.clear();
        }
        for pdu in pdus {
            cache.insert(pdu.event_id.to_string(), pdu.clone());
        }
    }

    /// Forgets every event (after a redaction, which changes its target's content).
    pub(super) fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl Rooms {
    /// Sends an event as `sender`, idempotently per transaction id. Returns the event ID.
    pub async fn send(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        draft: EventDraft,
        txn: Option<Txn>,
    ) -> Result<OwnedEventId> {
        // A batch checks its transaction ids itself, in one read for all.
        if Self::batchable(&draft) {
            return self.send_batched(room_id, sender, draft, txn).await;
        }
        if let Some(id) = self.earlier_txn(sender, txn.as_ref()).await? {
            return Ok(id);
        }
        let _guard = self.lock(room_id).await;
        // A retry of the same transaction may have won the race for the lock.
        if let Some(id) = self.earlier_txn(sender, txn.as_ref()).await? {
            return Ok(id);
        }
        self.send_locked(room_id, sender, draft, txn).await
    }

    async fn earlier_txn(
        &self,
        sender: &UserId,
        txn: Option<&Txn>,
    ) -> Result<Option<OwnedEventId>> {
        let Some((device, scope, txn_id)) = txn else {
            return Ok(None);
        };
        let found = self
            .store
            .events()
            .txn_result(sender.as_str(), device, scope, txn_id)
            .await?;
        found
            .map(|id| EventId::parse(id).map_err(Error::internal))
            .transpose()
    }

    /// Sends with the room lock already held.
    pub(super) async fn send_locked(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        draft: EventDraft,
        txn: Option<Txn>,
    ) -> Result<OwnedEventId> {
        let (built, redaction) = self.prepare_locked(room_id, sender, draft).await?;
        self.store_event(built, Some(sender), redaction, txn).await
    }

    /// Builds, signs and checks an event against the room's current state, with the room
    /// lock held, without storing it; also the redacted copy of a redaction's target.
    pub(super) async fn prepare_locked(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        draft: EventDraft,
    ) -> Result<(Built, Option<(String, String)>)> {
        let head = self.head(room_id).await?;
        let auth_types = auth_types(&head.rules, sender, &draft)?;
        let auth_state = self.state_events(&head, auth_keys(&auth_types)).await?;
        let built = self.build_checked(room_id, &head, sender, &draft, &auth_types, &auth_state)?;
        let redaction = match built.pdu.redacted_event() {
            Some(target) => self.redacted_copy(&target, &head.rules).await?,
            None => None,
        };
        Ok((built, redaction))
    }

    /// The room as a new local event sees it: version rules, current state, forward
    /// extremities and depth.
    pub(super) async fn head(&self, room_id: &RoomId) -> Result<Head> {
        Ok(self.head_and_txns(room_id, Vec::new()).await?.0)
    }

    /// [`Self::head`], and in the same read the event earlier sent with each client
    /// transaction of `txns` (user, device, scope, txn id), if any.
    pub(super) async fn head_and_txns(
        &self,
        room_id: &RoomId,
        txns: Vec<(String, String, String, String)>,
    ) -> Result<(Head, Vec<Option<String>>)> {
        let stored = self
            .store
            .events()
            .head(room_id.as_str(), txns)
            .await?
            .ok_or_else(super::unknown_room)?;
        let (_, rules) = super::version_rules(&stored.version)?;
        let prev_events = stored
            .extremities
            .into_iter()
            .map(EventId::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(Error::internal)?;
        let head = Head {
            rules,
            state_ids: stored.state,
            prev_events,
            depth: stored.depth,
            joined: stored.joined,
        };
        Ok((head, stored.earlier))
    }

    /// The current state events at these (type, state_key) keys, in at most one read; keys
    /// with nothing set are left out.
    pub(super) async fn state_events(
        &self,
        head: &Head,
        keys: impl IntoIterator<Item = (String, String)>,
    ) -> Result<HashMap<(String, String), Pdu>> {
        let mut ids: Vec<String> = keys
            .into_iter()
            .filter_map(|key| head.state_ids.get(&key).cloned())
            .collect();
        ids.sort();
        ids.dedup();
        let (mut pdus, missing) = self.state_cache.get(ids);
        if !missing.is_empty() {
            let loaded = self.pdus(missing).await?;
            self.state_cache.insert(&loaded);
            pdus.extend(loaded);
        }
        Ok(pdus
            .into_iter()
            .map(|pdu| {
                (
                    (
                        pdu.kind.to_string(),
                        pdu.state_key.clone().unwrap_or_default(),
                    ),
                    pdu,
                )
            })
            .collect())
    }

    /// Builds an event on `head` and checks it with the room version's auth rules against
    /// `auth_state` (at least the state at [`auth_keys`]). A refusal is `M_FORBIDDEN` with
    /// the reason.
    pub(super) fn build_checked(
        &self,
        room_id: &RoomId,
        head: &Head,
        sender: &UserId,
        draft: &EventDraft,
        auth_types: &AuthTypes,
        auth_state: &HashMap<(String, String), Pdu>,
    ) -> Result<Built> {
        let auth_events: Vec<OwnedEventId> = auth_types
            .iter()
            .filter_map(|(t, k)| {
                auth_state
                    .get(&(t.to_string(), k.clone()))
                    .map(|p| p.event_id.clone())
            })
            .collect();
        let built = self.build(
            Some(room_id),
            &head.rules,
            sender,
            draft,
            &head.prev_events,
            &auth_events,
            head.depth + 1,
        )?;
        let by_id: HashMap<&EventId, &Pdu> =
            auth_state.values().map(|p| (&*p.event_id, p)).collect();
        check_state_independent_auth_rules(
            &head.rules.authorization,
            &built.pdu,
            |id: &EventId| by_id.get(id).copied(),
        )
        .map_err(|reason| Error::forbidden(format!("The event is not allowed: {reason}.")))?;
        check_state_dependent_auth_rules(
            &head.rules.authorization,
            &built.pdu,
            |t: &ruma::events::StateEventType, k: &str| {
                auth_state.get(&(t.to_string(), k.to_owned()))
            },
        )
        .map_err(|reason| Error::forbidden(forbidden_message(draft, &reason)))?;
        Ok(built)
    }

    /// Builds and signs a PDU. `room_id` is `None` only for a v12 create event.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn build(
        &self,
        room_id: Option<&RoomId>,
        rules: &RoomVersionRules,
        sender: &UserId,
        draft: &EventDraft,
        prev_events: &[OwnedEventId],
        auth_events: &[OwnedEventId],
        depth: i64,
    ) -> Result<Built> {
        let mut object = json!({
            "type": draft.event_type,
            "sender": sender,
            "content": draft.content,
            "origin_server_ts": MilliSecondsSinceUnixEpoch::now(),
            "prev_events": prev_events,
            "auth_events": auth_events,
            "depth": depth,
        });
        if let Some(map) = object.as_object_mut() {
            if let Some(room_id) = room_id {
                map.insert("room_id".into(), json!(room_id));
            }
            if let Some(state_key) = &draft.state_key {
                map.insert("state_key".into(), json!(state_key));
            }
            // Up to v10 `redacts` is a top-level key; from v11 it lives in the content
            // (spec: rooms/v11.md, "Moving the redacts key"). Keep the top-level copy too
            // for older clients, as Synapse does.
            if draft.event_type == "m.room.redaction"
                && let Some(redacts) = draft.content.get("redacts").cloned()
            {
                map.insert("redacts".into(), redacts);
            }
        }
        let mut canonical = match CanonicalJsonValue::try_from(object) {
            Ok(CanonicalJsonValue::Object(map)) => map,
            Ok(_) => return Err(Error::internal("event is not an object")),
            Err(e) => {
                return Err(Error::bad_json(format!(
                    "The event content is not canonical JSON: {e}"
                )));
            }
        };
        if draft.event_type == "m.room.redaction" && !rules.redaction.content_field_redacts {
            // v10 and older: keep only the top-level key, as the spec requires there.
            if let Some(CanonicalJsonValue::Object(content)) = canonical.get_mut("content") {
                content.remove("redacts");
            }
        }
        hash_and_sign_event(
            self.identity.server_name.as_str(),
            &self.identity.signing_key,
            &mut canonical,
            &rules.redaction,
        )
        .map_err(Error::internal)?;
        let event_id = EventId::parse(format!(
            "${}",
            reference_hash(&canonical, rules).map_err(Error::internal)?
        ))
        .map_err(Error::internal)?;
        let json = serde_json::to_string(&canonical)?;
        if json.len() > MAX_PDU_BYTES {
            return Err(Error::new(
                ErrorKind::TooLarge,
                "The event is larger than 64 KiB.",
            ));
        }
        let room_id = match room_id {
            Some(room_id) => room_id.to_owned(),
            // spec: rooms/v12.md: the room ID is the create event's ID with `!` for `$`.
            None => {
                RoomId::parse(format!("!{}", &event_id.as_str()[1..])).map_err(Error::internal)?
            }
        };
        let pdu = Pdu::from_stored(event_id, &room_id, &json)?;
        Ok(Built { pdu, json })
    }

    /// Stores a built local event, queues it for the other servers in the room, and wakes
    /// syncs. Returns the event ID.
    pub(super) async fn store_event(
        &self,
        built: Built,
        sender: Option<&UserId>,
        redaction: Option<(String, String)>,
        txn: Option<Txn>,
    ) -> Result<OwnedEventId> {
        // The server of a member whose membership this changes (a leave, kick or ban must
        // reach them); the room's other servers are added as the event is stored.
        let mut destinations = Vec::new();
        if built.pdu.kind == TimelineEventType::RoomMember
            && let Some(target) = built.pdu.state_key.as_deref()
            && let Ok(target) = UserId::parse(target)
        {
            destinations.push(target.server_name().to_string());
        }
        let txn = txn
            .zip(sender)
            .map(|((device, scope, id), sender)| (sender.to_string(), device, scope, id));
        let placement = Placement {
            state_before: StateBefore::Current,
            new_current: NewCurrent::AfterEvent,
            destinations,
        };
        self.append(built.pdu, built.json, redaction, txn, placement, true)
            .await
    }

    /// Appends a checked event to the timeline, then wakes syncs and the senders of the
    /// servers it goes to. `destinations` may name this server or repeat one; a `local`
    /// event also goes to every server in the room.
    pub(super) async fn append(
        &self,
        pdu: Pdu,
        json: String,
        redaction: Option<(String, String)>,
        txn: Option<(String, String, String, String)>,
        placement: Placement,
        local: bool,
    ) -> Result<OwnedEventId> {
        // Best effort: a failed evaluation costs a notification, never the message.
        let notifies = self.notified_users(&pdu, &json).await.unwrap_or_else(|e| {
            tracing::warn!(event_id = %pdu.event_id, error = %e, "push rule evaluation failed");
            Vec::new()
        });
        let ours = self.identity.server_name.as_str();
        let mut destinations: Vec<String> = placement
            .destinations
            .iter()
            .filter(|d| *d != ours)
            .cloned()
            .collect();
        destinations.sort();
        destinations.dedup();
        let placement = Placement {
            destinations: destinations.clone(),
            ..placement
        };
        let mut event = timeline_row(&pdu, json, notifies, redaction, txn, placement);
        event.share_with_room = local.then(|| ours.to_owned());
        let redacts = event.redaction.is_some();
        let (_, destinations) = self.store.events().append(event).await?;
        if redacts {
            self.state_cache.clear();
        }
        self.notifier.notify();
        for destination in &destinations {
            self.federation.wake(destination);
        }
        Ok(pdu.event_id)
    }

    /// Redacts an event. Users may redact their own events; others' need the `redact`
    /// power level (spec: client-server-api/_index.md, "Redactions": servers check this,
    /// as the auth rules alone allow any same-server redaction).
    pub async fn redact(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        target: &EventId,
        reason: Option<String>,
        txn: Option<Txn>,
    ) -> Result<OwnedEventId> {
        if let Some(stored) = self.store.events().get(target.as_str()).await?
            && stored.room_id == room_id.as_str()
            && self.parse(&stored)?.sender != *sender
            && !self.may_redact_others(room_id, sender).await?
        {
            return Err(Error::forbidden(
                "You can only redact your own messages here.",
            ));
        }
        let mut content = json!({ "redacts": target });
        if let Some(reason) = reason {
            content["reason"] = json!(reason);
        }
        self.send(
            room_id,
            sender,
            EventDraft::message("m.room.redaction", content),
            txn,
        )
        .await
    }

    /// The redacted form of `target`, to store once the redaction is accepted; `None` when
    /// the target is unknown or in another room (the redaction is still stored, as the spec
    /// allows redactions of events we have not seen).
    async fn redacted_copy(
        &self,
        target: &EventId,
        rules: &RoomVersionRules,
    ) -> Result<Option<(String, String)>> {
        let Some(stored) = self.store.events().get(target.as_str()).await? else {
            return Ok(None);
        };
        let object: CanonicalJsonObject = serde_json::from_str(&stored.json)?;
        let redacted = ruma::canonical_json::redact(object, &rules.redaction, None)
            .map_err(Error::internal)?;
        Ok(Some((stored.event_id, serde_json::to_string(&redacted)?)))
    }
}

/// A sentence for a refused event: plain words for the common cases, ruma's reason otherwise.
fn forbidden_message(draft: &EventDraft, reason: &str) -> String {
    let reason = reason.trim_end_matches('.');
    if reason.contains("not joined") || reason.contains("sender is not joined") {
        return "You are not in this room.".to_owned();
    }
    if reason.contains("power level") || reason.contains("power_level") {
        return format!(
            "You do not have enough power to send {} events here ({reason}).",
            draft.event_type
        );
    }
    format!("The event is not allowed: {reason}.")
}

/// The storage row of a checked event: what it relates to and, for member events, the
/// membership it sets, besides what the caller decided.
pub(super) fn timeline_row(
    pdu: &Pdu,
    json: String,
    notifies: Vec<(String, bool)>,
    redaction: Option<(String, String)>,
    txn: Option<(String, String, String, String)>,
    placement: Placement,
) -> NewEvent {
    let content = pdu.content_value();
    let relation = content.get("m.relates_to").and_then(|rel| {
        let target = rel.get("event_id").and_then(Value::as_str)?;
        let rel_type = rel.get("rel_type").and_then(Value::as_str)?;
        Some((target.to_owned(), rel_type.to_owned()))
    });
    let membership = (pdu.kind == TimelineEventType::RoomMember)
        .then(|| {
            content
                .get("membership")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .flatten();
    NewEvent {
        event_id: pdu.event_id.to_string(),
        room_id: pdu.in_room.to_string(),
        sender: pdu.sender.to_string(),
        event_type: pdu.kind.to_string(),
        state_key: pdu.state_key.clone(),
        depth: i64::try_from(u64::from(pdu.depth)).unwrap_or(i64::MAX),
        origin_server_ts: i64::try_from(u64::from(pdu.origin_server_ts.get())).unwrap_or(i64::MAX),
        relation,
        membership,
        redaction,
        txn,
        json,
        notifies,
        prev_events: pdu.prev_events.iter().map(ToString::to_string).collect(),
        state_before: placement.state_before,
        new_current: placement.new_current,
        destinations: placement.destinations,
        share_with_room: None,
    }
}
