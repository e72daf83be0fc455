//! Events from other servers (spec: server-server-api.md, "Checks performed on receipt of
//! a PDU").
//!
//! The walk for each PDU, under the room's lock so a room's PDUs are handled in order:
//! 1. Format for the room version, and the event ID from the reference hash.
//! 2. The signatures of the servers the spec names (the sender's, and for restricted joins
//!    the authorising one's), with keys valid at the event's `origin_server_ts`. A content
//!    hash that does not match means the event is kept redacted.
//! 3. Auth against its own auth events (ruma's state-independent and state-dependent rules).
//! 4. Auth against the state before it: the state after its prev event, or the state
//!    resolution of the states after each of them.
//! 5. Auth against the room's current state; failing only this is a soft failure: the event
//!    is kept out of the timeline (an outlier) but may be cited later.
//! 6. Append it; if it does not follow every forward extremity, the room's current state is
//!    the resolution of the states after each extremity.
//!
//! A PDU failing 2–4 is rejected: it never changes state and is remembered as rejected.
//! Auth events unknown here are fetched from the sending server (`/event`), with their own
//! unknown auth events in turn, and each is checked like a PDU up to step 3 (signatures,
//! hashes, auth against its own auth events), auth events first: one that passes is kept
//! as an outlier, one that fails is rejected, and so is anything citing it. Unknown
//! prev events are filled in with `/get_missing_events`, and where that leaves a gap, with
//! the state before the gap from `/state_ids` (`fill_gap`).

use std::collections::{BTreeMap, HashMap, HashSet};

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId, RoomId, ServerName,
    events::StateEventType,
    room_version_rules::RoomVersionRules,
    signatures::{PublicKeyMap, Verified, required_server_signatures_to_verify_event},
    state_res::{
        StateMap, auth_types_for_event, check_pdu_format, check_state_dependent_auth_rules,
        check_state_independent_auth_rules, utils::event_id_set::EventIdSet,
    },
};
use serde_json::Value;

use super::{
    Rooms,
    timeline::{Placement, auth_keys, timeline_row},
};

/// How many events one `get_missing_events` asks for.
const MISSING_EVENTS_LIMIT: u32 = 20;

/// How many events a gap may need fetched one by one before we give up on it.
const MAX_FETCHED_EVENTS: usize = 2_000;
use crate::{
    error::{Error, ErrorKind, Result},
    pdu::{self, Pdu, Reference},
    storage::{NewCurrent, StateBefore, StateIds},
};

/// What auth against an event's own auth events found (step 3).
enum OwnAuth {
    /// The rules allow it.
    Passed,
    /// The rules refuse it, or one of its auth events was rejected: the reason.
    Failed(String),
    /// This auth event is neither known nor rejected here.
    Unknown(OwnedEventId),
}

/// A PDU from another server, parsed far enough to know its room and ID.
pub struct Incoming {
    /// Its event ID (from its reference hash) and the bytes its signatures cover.
    reference: Reference,
    room_id: ruma::OwnedRoomId,
    rules: RoomVersionRules,
    object: CanonicalJsonObject,
}

/// What became of an incoming PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Appended to the timeline (or already known).
    Accepted,
    /// Kept out of the timeline: allowed by the state before it but not by the current state.
    SoftFailed,
    /// It failed its checks, for this reason.
    Rejected(String),
}

impl Incoming {
    /// Its event ID, from its reference hash.
    pub fn event_id(&self) -> &EventId {
        &self.reference.event_id
    }

    /// The room it is for.
    pub fn room_id(&self) -> &RoomId {
        &self.room_id
    }

    /// A top-level view of the PDU as JSON, for checks of its shape.
    pub fn peek(&self) -> Value {
        serde_json::to_value(&self.object).unwrap_or(Value::Null)
    }
}

impl Rooms {
    /// Parses a PDU of a room this server is in: its format for the room version and its
    /// event ID. `M_NOT_FOUND` for a room unknown here; `M_BAD_JSON` for a malformed PDU.
    pub async fn incoming(&self, pdu: Value) -> Result<Incoming> {
        let room_id = pdu
            .get("room_id")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::bad_json("The PDU has no room_id."))?;
        let room_id = RoomId::parse(room_id)
            .map_err(|_| Error::bad_json(format!("{room_id} is not a room ID.")))?;
        let (_, rules) = self.version(&room_id).await?;
        let object = match CanonicalJsonValue::try_from(pdu) {
            Ok(CanonicalJsonValue::Object(object)) => object,
            _ => return Err(Error::bad_json("The PDU is not canonical JSON.")),
        };
        check_pdu_format(&object, &rules.event_format)
            .map_err(|e| Error::bad_json(format!("The PDU is malformed: {e}.")))?;
        let reference = Reference::of(&object, &rules)
            .map_err(|e| Error::bad_json(format!("The PDU cannot be hashed: {e}.")))?;
        Ok(Incoming {
            reference,
            room_id,
            rules,
            object,
        })
    }

    /// Checks and stores a PDU from another server (the module's walk). Errors are ours
    /// (storage) or a missing piece of the graph; a PDU that fails its checks is
    /// `Ok(Outcome::Rejected)`.
    ///
    /// Missing auth and prev events are asked of `origin`, the server that sent the PDU.
    pub async fn receive(&self, origin: &ServerName, incoming: Incoming) -> Result<Outcome> {
        self.ensure_server_allowed(&incoming.room_id, origin)
            .await?;
        let _guard = self.lock(&incoming.room_id).await;
        self.receive_locked(incoming, Vec::new(), Some(origin))
            .await
    }

    /// [`Rooms::receive`] with the room lock held; `destinations` are servers to pass the
    /// event on to (for a join this server was asked to sign in). Without `origin`, no
    /// missing event is fetched (the events a gap is filled with).
    pub(super) async fn receive_locked(
        &self,
        incoming: Incoming,
        destinations: Vec<String>,
        origin: Option<&ServerName>,
    ) -> Result<Outcome> {
        let Incoming {
            reference,
            room_id,
            rules,
            object,
        } = incoming;
        let event_id = reference.event_id.clone();
        let events = self.store.events();
        if let Some(reason) = events.rejection(event_id.as_str()).await? {
            return Ok(Outcome::Rejected(reason));
        }
        if events.seen(event_id.as_str()).await? {
            return Ok(Outcome::Accepted);
        }
        let (pdu, json) = match self.verified(&reference, &room_id, &rules, object).await? {
            Ok(verified) => verified,
            Err(reason) => return self.rejected(&event_id, &room_id, reason).await,
        };

        // 3. Auth against its own auth events, fetching those unknown here.
        let mut own = self.own_auth(&room_id, &rules, &pdu).await?;
        if matches!(own, OwnAuth::Unknown(_))
            && let Some(origin) = origin
        {
            let known = self.graph_pdus(&pdu.auth_events).await?;
            let missing: Vec<OwnedEventId> = pdu
                .auth_events
                .iter()
                .filter(|id| !known.iter().any(|a| a.event_id == **id))
                .cloned()
                .collect();
            self.fetch_outliers(origin, &room_id, &rules, &missing)
                .await?;
            own = self.own_auth(&room_id, &rules, &pdu).await?;
        }
        match own {
            OwnAuth::Passed => {}
            OwnAuth::Failed(reason) => return self.rejected(&event_id, &room_id, reason).await,
            OwnAuth::Unknown(missing) => {
                return Err(Error::forbidden(format!(
                    "The auth event {missing} of {event_id} is unknown here and could not be fetched."
                )));
            }
        }

        let prev: Vec<String> = pdu.prev_events.iter().map(ToString::to_string).collect();

        // The common case, a room whose graph is a line: the PDU follows the one forward
        // extremity, whose state is the current state. Then the state before it is the
        // current state, so checks 4 and 5 are one; and only the entries the auth rules need
        // are read (a big room's state has thousands, and this runs for every PDU).
        if let Some(group) = self.follows_current(&room_id, &prev).await? {
            let keys = match pdu_auth_keys(&rules, &pdu) {
                Ok(keys) => keys,
                Err(reason) => return self.rejected(&event_id, &room_id, reason).await,
            };
            let before = self.store.state().keys_of_group(group, keys).await?;
            if let Err(reason) = self.auth_against(&rules, &pdu, &before).await? {
                return self.rejected(&event_id, &room_id, reason).await;
            }
            let redaction = self.remote_redaction(&pdu, &rules).await?;
            let placement = Placement {
                state_before: StateBefore::Group(group),
                new_current: NewCurrent::AfterEvent,
                destinations,
            };
            self.append(pdu, json, redaction, None, placement, false)
                .await?;
            return Ok(Outcome::Accepted);
        }

        // 4. Auth against the state before it.
        let mut prev_states = self.store.state().after_events(prev.clone()).await?;
        if prev_states.iter().any(Option::is_none)
            && let Some(origin) = origin
        {
            self.fill_gap(origin, &room_id, &rules, &pdu).await?;
            prev_states = self.store.state().after_events(prev.clone()).await?;
        }
        if prev_states.iter().any(Option::is_none) {
            return Err(Error::forbidden(format!(
                "The state before {event_id} cannot be worked out: some of its prev events are unknown here."
            )));
        }
        let prev_states: Vec<StateIds> = prev_states.into_iter().flatten().collect();
        let before = self.resolve(&rules, prev_states).await?;
        if let Err(reason) = self.auth_against(&rules, &pdu, &before).await? {
            return self.rejected(&event_id, &room_id, reason).await;
        }

        // The common case, a room whose graph is a line: the PDU follows the one forward
        // extremity, whose state is the current state. Then the state before it is the
        // current state, and neither needs reading twice.
        let (extremities, _) = events.extremities(room_id.as_str()).await?;
        let others: Vec<String> = extremities
            .into_iter()
            .filter(|e| !prev.contains(e))
            .collect();
        let prev_group = match prev.as_slice() {
            [single] => self.store.state().group_of(single).await?,
            _ => None,
        };
        let current_group = self.store.state().current_group(room_id.as_str()).await?;
        let follows_current =
            others.is_empty() && prev_group.is_some() && prev_group == current_group;

        // 5. Soft failure against the current state.
        let current: StateIds = if follows_current {
            before.clone()
        } else {
            events
                .current_state(room_id.as_str())
                .await?
                .into_iter()
                .map(|(t, k, id, _)| ((t, k), id))
                .collect()
        };
        if let Err(reason) = self.auth_against(&rules, &pdu, &current).await? {
            tracing::info!(%event_id, %reason, "PDU soft-failed");
            events
                .store_outlier(event_id.as_str(), room_id.as_str(), json, true)
                .await?;
            return Ok(Outcome::SoftFailed);
        }

        // 6. Append, and move the current state.
        let state_before = match prev_group {
            Some(group) => StateBefore::Group(group),
            None => StateBefore::Ids(before.clone()),
        };
        let new_current = if follows_current || (others.is_empty() && before == current) {
            NewCurrent::AfterEvent
        } else {
            let mut after = before;
            if let Some(state_key) = &pdu.state_key {
                after.insert(
                    (pdu.kind.to_string(), state_key.clone()),
                    event_id.to_string(),
                );
            }
            if others.is_empty() {
                NewCurrent::Resolved(after)
            } else {
                let mut states: Vec<StateIds> = self
                    .store
                    .state()
                    .after_events(others)
                    .await?
                    .into_iter()
                    .flatten()
                    .collect();
                states.push(after);
                NewCurrent::Resolved(self.resolve_with(&rules, states, Some(&pdu)).await?)
            }
        };
        let redaction = self.remote_redaction(&pdu, &rules).await?;
        let placement = Placement {
            state_before,
            new_current,
            destinations,
        };
        self.append(pdu, json, redaction, None, placement, false)
            .await?;
        Ok(Outcome::Accepted)
    }

    /// Fills the gap before `pdu` (spec: server-server-api.md, "Retrieving missing events"):
    /// first the events between our forward extremities and it, from `get_missing_events`,
    /// each checked like any PDU; then, for a prev event still unknown, the state before it
    /// from `/state_ids`, so the state after it is known without its history.
    async fn fill_gap(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        pdu: &Pdu,
    ) -> Result<()> {
        let (extremities, _) = self.store.events().extremities(room_id.as_str()).await?;
        match self
            .federation
            .get_missing_events(
                origin,
                room_id,
                &extremities,
                &[pdu.event_id.to_string()],
                MISSING_EVENTS_LIMIT,
            )
            .await
        {
            Ok(mut missing) => {
                missing.sort_by_key(|e| e.get("depth").and_then(Value::as_u64).unwrap_or(0));
                for event in missing {
                    let incoming = match self.incoming(event).await {
                        Ok(incoming) if incoming.room_id == room_id => incoming,
                        Ok(_) => continue,
                        Err(e) => {
                            tracing::info!(%origin, error = %e, "missing event unusable");
                            continue;
                        }
                    };
                    let id = incoming.event_id().to_owned();
                    // No further fetching from here: a gap is filled one level deep.
                    let outcome = Box::pin(self.receive_locked(incoming, Vec::new(), None)).await;
                    if let Err(e) = outcome {
                        tracing::info!(%origin, event_id = %id, error = %e, "missing event not added");
                    }
                }
            }
            Err(e) => tracing::info!(%origin, %room_id, error = %e, "get_missing_events failed"),
        }
        let prev = pdu.prev_events.clone();
        let states = self
            .store
            .state()
            .after_events(prev.iter().map(ToString::to_string).collect())
            .await?;
        for (prev_id, state) in prev.iter().zip(states) {
            if state.is_none() {
                self.state_across_gap(origin, room_id, rules, prev_id)
                    .await?;
            }
        }
        Ok(())
    }

    /// Learns the state after `event_id` from `origin` without its history: `/state_ids`
    /// for the state before it, the events of that state and their auth chains fetched and
    /// checked as outliers, and the event itself.
    async fn state_across_gap(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        event_id: &EventId,
    ) -> Result<()> {
        let (state_ids, auth_ids) = self.federation.state_ids(origin, room_id, event_id).await?;
        let mut wanted: Vec<OwnedEventId> = state_ids
            .iter()
            .chain(&auth_ids)
            .filter_map(|id| EventId::parse(id).ok())
            .collect();
        wanted.push(event_id.to_owned());
        self.fetch_outliers(origin, room_id, rules, &wanted).await?;
        let state_pdus = self
            .graph_pdus(
                &state_ids
                    .iter()
                    .filter_map(|id| EventId::parse(id).ok())
                    .collect::<Vec<_>>(),
            )
            .await?;
        let mut state: StateIds = state_pdus
            .iter()
            .filter(|p| p.state_key.is_some())
            .map(|p| (state_key_of(p), p.event_id.to_string()))
            .collect();
        let Some(event) = self.graph_pdus(&[event_id.to_owned()]).await?.pop() else {
            return Err(Error::new(
                ErrorKind::BadGateway,
                format!("{origin} did not give the event {event_id}."),
            ));
        };
        if event.state_key.is_some() {
            state.insert(state_key_of(&event), event_id.to_string());
        }
        self.store
            .state()
            .set_after(event_id.as_str(), room_id.as_str(), state)
            .await
    }

    /// Step 3 for `pdu`: auth against its own auth events (ruma's state-independent and
    /// state-dependent rules), which must all be in the room graph (timeline or outliers).
    async fn own_auth(
        &self,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        pdu: &Pdu,
    ) -> Result<OwnAuth> {
        let mut auth_events = self.graph_pdus(&pdu.auth_events).await?;
        if let Some(missing) = pdu
            .auth_events
            .iter()
            .find(|id| !auth_events.iter().any(|a| a.event_id == **id))
        {
            // An auth event that was itself rejected makes the event rejected (auth rules,
            // rooms/v12.md "Authorization rules" 2.3); one that is unknown leaves it unknown.
            return Ok(
                match self.store.events().rejection(missing.as_str()).await? {
                    Some(reason) => {
                        OwnAuth::Failed(format!("its auth event {missing} was rejected ({reason})"))
                    }
                    None => OwnAuth::Unknown(missing.clone()),
                },
            );
        }
        // From v12 the create event is not among the auth events: its ID is the room ID's
        // (spec: rooms/v12.md, "Event format").
        if rules.authorization.room_create_event_id_as_room_id
            && let Ok(create) = EventId::parse(format!("${}", &room_id.as_str()[1..]))
        {
            auth_events.extend(self.graph_pdus(&[create]).await?);
        }
        let by_id: HashMap<&EventId, &Pdu> = auth_events
            .iter()
            .map(|p| (p.event_id.as_ref(), p))
            .collect();
        if let Err(reason) =
            check_state_independent_auth_rules(&rules.authorization, pdu, |id: &EventId| {
                by_id.get(id).copied()
            })
        {
            return Ok(OwnAuth::Failed(reason));
        }
        let by_key: HashMap<(String, String), &Pdu> =
            auth_events.iter().map(|p| (state_key_of(p), p)).collect();
        if let Err(reason) = check_state_dependent_auth_rules(
            &rules.authorization,
            pdu,
            |t: &StateEventType, k: &str| by_key.get(&(t.to_string(), k.to_owned())).copied(),
        ) {
            return Ok(OwnAuth::Failed(reason));
        }
        Ok(OwnAuth::Passed)
    }

    /// Fetches events unknown here from `origin` one by one, with the unknown auth events
    /// of those in turn (at most [`MAX_FETCHED_EVENTS`] in all). Each must be the event asked
    /// for, with good signatures and hashes; then, auth events before the events citing
    /// them, each is checked against its own auth events: kept as an outlier if it passes,
    /// rejected if it fails. Events that cannot be had or checked are skipped.
    async fn fetch_outliers(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        ids: &[OwnedEventId],
    ) -> Result<()> {
        if ids.len() > MAX_FETCHED_EVENTS {
            return Err(Error::new(
                ErrorKind::BadGateway,
                format!(
                    "{origin} would need {} events fetched one by one; at most {MAX_FETCHED_EVENTS} are.",
                    ids.len()
                ),
            ));
        }
        let events = self.store.events();
        let mut fetched: HashMap<OwnedEventId, (Pdu, String)> = HashMap::new();
        let mut queue: std::collections::VecDeque<OwnedEventId> = ids.iter().cloned().collect();
        let mut asked: HashSet<OwnedEventId> = HashSet::new();
        while let Some(id) = queue.pop_front() {
            if !asked.insert(id.clone()) || events.seen(id.as_str()).await? {
                continue;
            }
            if asked.len() > MAX_FETCHED_EVENTS {
                tracing::info!(%origin, "stopped fetching auth events at {MAX_FETCHED_EVENTS}");
                break;
            }
            let object = match self.federation.event(origin, &id).await {
                Ok(value) => match CanonicalJsonValue::try_from(value) {
                    Ok(CanonicalJsonValue::Object(object)) => object,
                    _ => continue,
                },
                Err(e) => {
                    tracing::info!(%origin, event_id = %id, error = %e, "event fetch failed");
                    continue;
                }
            };
            // The event must be the one asked for.
            let reference = match Reference::of(&object, rules) {
                Ok(reference) if reference.event_id == id => reference,
                _ => {
                    tracing::info!(%origin, event_id = %id, "fetched event has another ID");
                    continue;
                }
            };
            match self.verified(&reference, room_id, rules, object).await? {
                Ok((pdu, json)) => {
                    queue.extend(pdu.auth_events.iter().cloned());
                    fetched.insert(id, (pdu, json));
                }
                Err(reason) => {
                    tracing::info!(%origin, event_id = %id, %reason, "fetched event dropped");
                }
            }
        }
        // Auth events first: an event is checked once none of its auth events waits.
        while !fetched.is_empty() {
            let ready: Vec<OwnedEventId> = fetched
                .iter()
                .filter(|(_, (pdu, _))| !pdu.auth_events.iter().any(|a| fetched.contains_key(a)))
                .map(|(id, _)| id.clone())
                .collect();
            if ready.is_empty() {
                // A cycle of auth events cannot be a real room's.
                tracing::info!(%origin, left = fetched.len(), "fetched events cite each other");
                break;
            }
            for id in ready {
                let Some((pdu, json)) = fetched.remove(&id) else {
                    continue;
                };
                match self.own_auth(room_id, rules, &pdu).await? {
                    OwnAuth::Passed => {
                        events
                            .store_outlier(id.as_str(), room_id.as_str(), json, false)
                            .await?;
                    }
                    OwnAuth::Failed(reason) => {
                        tracing::info!(%origin, event_id = %id, %reason, "fetched event rejected");
                        events
                            .reject(id.as_str(), room_id.as_str(), &reason)
                            .await?;
                    }
                    OwnAuth::Unknown(missing) => {
                        tracing::info!(%origin, event_id = %id, %missing, "fetched event skipped: an auth event is missing");
                    }
                }
            }
        }
        Ok(())
    }

    /// Fetches up to `limit` events from before the room's oldest timeline event from a
    /// server in the room (spec: "Backfilling"), checks each (signatures, hashes, auth
    /// against its own auth events, fetched if missing) and puts it in the timeline below
    /// everything else. Returns how many were added. Their state is not worked out: they
    /// are history to read, not a base for new events.
    pub(super) async fn backfill(&self, room_id: &RoomId, limit: u32) -> Result<usize> {
        let Some((_, missing)) = self
            .store
            .events()
            .backward_extremity(room_id.as_str())
            .await?
        else {
            return Ok(0);
        };
        if missing.is_empty() {
            return Ok(0);
        }
        let (_, rules) = self.version(room_id).await?;
        let ours = self.identity.server_name.as_str();
        let servers = self.store.events().joined_servers(room_id.as_str()).await?;
        for server in servers.iter().filter(|s| *s != ours) {
            let Ok(server) = ServerName::parse(server) else {
                continue;
            };
            let mut pdus = match self
                .federation
                .backfill(&server, room_id, &missing, limit.min(100))
                .await
            {
                Ok(pdus) => pdus,
                Err(e) => {
                    tracing::info!(%server, %room_id, error = %e, "backfill failed");
                    continue;
                }
            };
            // Newest first, so each takes the next lower position.
            pdus.sort_by_key(|p| {
                std::cmp::Reverse(p.get("depth").and_then(Value::as_u64).unwrap_or(0))
            });
            let mut added = 0;
            for pdu in pdus {
                match self.backfill_one(&server, room_id, &rules, pdu).await {
                    Ok(true) => added += 1,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::info!(%server, %room_id, error = %e, "backfilled event dropped")
                    }
                }
            }
            return Ok(added);
        }
        Ok(0)
    }

    async fn backfill_one(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        pdu: Value,
    ) -> Result<bool> {
        let incoming = self.incoming(pdu).await?;
        if incoming.room_id != room_id {
            return Ok(false);
        }
        let (pdu, json) = match self
            .verified(&incoming.reference, room_id, rules, incoming.object)
            .await?
        {
            Ok(verified) => verified,
            Err(reason) => return Err(Error::forbidden(reason)),
        };
        let missing: Vec<OwnedEventId> = {
            let known: HashSet<OwnedEventId> = self
                .graph_pdus(&pdu.auth_events)
                .await?
                .into_iter()
                .map(|p| p.event_id)
                .collect();
            pdu.auth_events
                .iter()
                .filter(|id| !known.contains(*id))
                .cloned()
                .collect()
        };
        if !missing.is_empty() {
            self.fetch_outliers(server, room_id, rules, &missing)
                .await?;
        }
        match self.own_auth(room_id, rules, &pdu).await? {
            OwnAuth::Passed => {}
            OwnAuth::Failed(reason) => {
                return Err(Error::forbidden(format!(
                    "it breaks the auth rules: {reason}"
                )));
            }
            OwnAuth::Unknown(missing) => {
                return Err(Error::forbidden(format!(
                    "its auth event {missing} is unknown here and could not be fetched"
                )));
            }
        }
        // Only the event's own fields count for a backfilled row; it has no place in the
        // state or the graph's extremities.
        let placement = Placement {
            state_before: StateBefore::Current,
            new_current: NewCurrent::AfterEvent,
            destinations: Vec::new(),
        };
        let event = timeline_row(&pdu, json, Vec::new(), None, None, placement);
        self.store.events().backfilled(event).await
    }

    async fn rejected(
        &self,
        event_id: &EventId,
        room_id: &RoomId,
        reason: String,
    ) -> Result<Outcome> {
        tracing::info!(%event_id, %reason, "PDU rejected");
        self.store
            .events()
            .reject(event_id.as_str(), room_id.as_str(), &reason)
            .await?;
        Ok(Outcome::Rejected(reason))
    }

    /// Step 2: the signatures, and the content hash (a mismatch keeps the event redacted).
    /// The inner error is a rejection reason.
    pub(super) async fn verified(
        &self,
        reference: &Reference,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        object: CanonicalJsonObject,
    ) -> Result<Result<(Pdu, String), String>> {
        let event_id = &reference.event_id;
        let servers = match required_server_signatures_to_verify_event(&object, &rules.signatures) {
            Ok(servers) => servers,
            Err(e) => return Ok(Err(format!("its signatures cannot be checked: {e}"))),
        };
        let ts = match object.get("origin_server_ts") {
            Some(CanonicalJsonValue::Integer(ts)) => i64::from(*ts),
            _ => 0,
        };
        let mut keys = PublicKeyMap::new();
        for server in &servers {
            let key_ids: Vec<String> = match object.get("signatures") {
                Some(CanonicalJsonValue::Object(signatures)) => {
                    match signatures.get(server.as_str()) {
                        Some(CanonicalJsonValue::Object(by_key)) => by_key
                            .keys()
                            .filter(|k| k.starts_with("ed25519:"))
                            .cloned()
                            .collect(),
                        _ => Vec::new(),
                    }
                }
                _ => Vec::new(),
            };
            let mut server_keys = BTreeMap::new();
            for key_id in key_ids {
                match self.federation.verify_key(server, &key_id, ts).await {
                    Ok(key) => {
                        server_keys.insert(key_id, key);
                    }
                    Err(e) => {
                        tracing::debug!(%server, %key_id, error = %e, "event key unavailable")
                    }
                }
            }
            keys.insert(server.to_string(), server_keys);
        }
        let object = match pdu::verify(&object, reference, &servers, &keys) {
            Ok(Verified::All) => object,
            Ok(Verified::Signatures) => {
                tracing::info!(%event_id, "content hash mismatch: keeping the event redacted");
                match ruma::canonical_json::redact(object, &rules.redaction, None) {
                    Ok(redacted) => redacted,
                    Err(e) => return Ok(Err(format!("it cannot be redacted: {e}"))),
                }
            }
            Err(reason) => return Ok(Err(reason)),
        };
        let json = serde_json::to_string(&object)?;
        let pdu = match Pdu::from_stored(event_id.clone(), room_id, &json) {
            Ok(pdu) => pdu,
            Err(e) => return Ok(Err(format!("it is not a valid event: {e}"))),
        };
        // A v12 create event has no room_id: its ID is the room's (spec: rooms/v12.md).
        let v12_create = pdu.room_id.is_none()
            && rules.authorization.room_create_event_id_as_room_id
            && pdu.kind == ruma::events::TimelineEventType::RoomCreate
            && event_id.as_str()[1..] == room_id.as_str()[1..];
        if pdu.room_id.as_deref() != Some(room_id) && !v12_create {
            return Ok(Err("its room_id is not the room's".to_owned()));
        }
        Ok(Ok((pdu, json)))
    }

    /// Events of the room graph (timeline or outliers) by ID; unknown ones are skipped.
    pub(super) async fn graph_pdus(&self, ids: &[OwnedEventId]) -> Result<Vec<Pdu>> {
        self.pdus(ids.iter().map(ToString::to_string).collect())
            .await
    }

    /// When `prev` is the room's one forward extremity and its state is the current state:
    /// the current state group.
    async fn follows_current(&self, room_id: &RoomId, prev: &[String]) -> Result<Option<i64>> {
        let [single] = prev else {
            return Ok(None);
        };
        let (extremities, _) = self.store.events().extremities(room_id.as_str()).await?;
        if extremities.iter().any(|e| e != single) {
            return Ok(None);
        }
        let state = self.store.state();
        let Some(group) = state.group_of(single).await? else {
            return Ok(None);
        };
        Ok((state.current_group(room_id.as_str()).await? == Some(group)).then_some(group))
    }

    /// ruma's state-dependent auth rules for `pdu` against `state` (which needs at least
    /// the entries at [`pdu_auth_keys`]). The inner error is the reason it is not allowed.
    pub(super) async fn auth_against(
        &self,
        rules: &RoomVersionRules,
        pdu: &Pdu,
        state: &StateIds,
    ) -> Result<Result<(), String>> {
        let keys = match pdu_auth_keys(rules, pdu) {
            Ok(keys) => keys,
            Err(reason) => return Ok(Err(reason)),
        };
        let wanted: Vec<OwnedEventId> = keys
            .iter()
            .filter_map(|key| state.get(key))
            .filter_map(|id| EventId::parse(id).ok())
            .collect();
        let pdus = self.graph_pdus(&wanted).await?;
        let by_key: HashMap<(String, String), &Pdu> =
            pdus.iter().map(|p| (state_key_of(p), p)).collect();
        Ok(check_state_dependent_auth_rules(
            &rules.authorization,
            pdu,
            |t: &StateEventType, k: &str| by_key.get(&(t.to_string(), k.to_owned())).copied(),
        ))
    }

    /// The redacted copy of a redaction's target, when the redaction may take effect: the
    /// target is in the room and its sender is of the redaction's server, or the redaction's
    /// sender may redact others (spec: rooms/v11.md, "Authorization rules", redactions).
    async fn remote_redaction(
        &self,
        pdu: &Pdu,
        rules: &RoomVersionRules,
    ) -> Result<Option<(String, String)>> {
        let Some(target) = pdu.redacted_event() else {
            return Ok(None);
        };
        let Some(stored) = self.store.events().get(target.as_str()).await? else {
            return Ok(None);
        };
        if stored.room_id != pdu.in_room.as_str() {
            return Ok(None);
        }
        let target_pdu = self.parse(&stored)?;
        if target_pdu.sender.server_name() != pdu.sender.server_name()
            && !self.may_redact_others(&pdu.in_room, &pdu.sender).await?
        {
            return Ok(None);
        }
        let object: CanonicalJsonObject = serde_json::from_str(&stored.json)?;
        let redacted = ruma::canonical_json::redact(object, &rules.redaction, None)
            .map_err(Error::internal)?;
        Ok(Some((stored.event_id, serde_json::to_string(&redacted)?)))
    }

    /// State resolution (spec: rooms/v2.md, "State resolution"; v12's conflicted state
    /// subgraph) over `states`. Equal states need none.
    pub(super) async fn resolve(
        &self,
        rules: &RoomVersionRules,
        states: Vec<StateIds>,
    ) -> Result<StateIds> {
        self.resolve_with(rules, states, None).await
    }

    /// [`Rooms::resolve`] where one of the states holds `pending`, an event being checked
    /// that is not stored yet.
    pub(super) async fn resolve_with(
        &self,
        rules: &RoomVersionRules,
        states: Vec<StateIds>,
        pending: Option<&Pdu>,
    ) -> Result<StateIds> {
        let Some(first) = states.first() else {
            return Ok(StateIds::new());
        };
        if states.iter().all(|s| s == first) {
            return Ok(first.clone());
        }
        // Every event of every state, and their auth chains.
        let ids: Vec<OwnedEventId> = states
            .iter()
            .flat_map(|s| s.values())
            .filter_map(|id| EventId::parse(id).ok())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut events = self.with_auth_chains(&ids).await?;
        if let Some(pending) = pending {
            let missing: Vec<OwnedEventId> = pending
                .auth_events
                .iter()
                .filter(|id| !events.contains_key(*id))
                .cloned()
                .collect();
            events.extend(self.with_auth_chains(&missing).await?);
            events.insert(pending.event_id.clone(), pending.clone());
        }
        let rules = rules.clone();
        tokio::task::spawn_blocking(move || resolve_states(&rules, &states, &events))
            .await
            .map_err(Error::internal)?
    }
}

/// State resolution of `states` by the room version's algorithm (v2, or v2.1 from room
/// version 12) over `events`, which hold every event of the states and of their auth
/// chains. Blocking: run it off the async runtime.
fn resolve_states(
    rules: &RoomVersionRules,
    states: &[StateIds],
    events: &HashMap<OwnedEventId, Pdu>,
) -> Result<StateIds> {
    let maps: Vec<StateMap<OwnedEventId>> = states
        .iter()
        .map(|state| {
            state
                .iter()
                .filter_map(|((t, k), id)| {
                    Some((
                        (StateEventType::from(t.as_str()), k.clone()),
                        EventId::parse(id).ok()?,
                    ))
                })
                .collect()
        })
        .collect();
    let auth_chains: Vec<EventIdSet<OwnedEventId>> = maps
        .iter()
        .map(|map| auth_chain(map.values(), events))
        .collect();
    let resolved = ruma::state_res::resolve(
        &rules.authorization,
        rules
            .state_res
            .v2_rules()
            .ok_or_else(|| Error::internal("room version without state resolution v2"))?,
        &maps,
        auth_chains,
        |id: &EventId| events.get(id).cloned(),
        |conflicted: &StateMap<Vec<OwnedEventId>>| Some(conflicted_subgraph(conflicted, events)),
    )
    .map_err(|e| Error::internal(format!("state resolution failed: {e}")))?;
    Ok(resolved
        .into_iter()
        .map(|((t, k), id)| ((t.to_string(), k), id.to_string()))
        .collect())
}

/// The state entries the auth rules read for `pdu` (timeline.rs's [`auth_keys`] of its
/// auth types). The error is why its content makes that impossible to say.
fn pdu_auth_keys(
    rules: &RoomVersionRules,
    pdu: &Pdu,
) -> std::result::Result<Vec<(String, String)>, String> {
    let types = auth_types_for_event(
        &pdu.kind,
        &pdu.sender,
        pdu.state_key.as_deref(),
        &pdu.content,
        &rules.authorization,
    )
    .map_err(|e| format!("its content is invalid: {e}"))?;
    Ok(auth_keys(&types).collect())
}

/// The (type, state_key) key of a state event.
fn state_key_of(pdu: &Pdu) -> (String, String) {
    (
        pdu.kind.to_string(),
        pdu.state_key.clone().unwrap_or_default(),
    )
}

/// The union of the auth chains of `ids` (not including them), over the loaded events.
fn auth_chain<'a>(
    ids: impl Iterator<Item = &'a OwnedEventId>,
    events: &HashMap<OwnedEventId, Pdu>,
) -> EventIdSet<OwnedEventId> {
    let mut chain = EventIdSet::new();
    let mut stack: Vec<&OwnedEventId> = ids
        .filter_map(|id| events.get(id))
        .flat_map(|p| p.auth_events.iter())
        .collect();
    while let Some(id) = stack.pop() {
        if chain.insert(id.clone())
            && let Some(pdu) = events.get(id)
        {
            stack.extend(pdu.auth_events.iter());
        }
    }
    chain
}

/// The conflicted state subgraph (spec: rooms/v12.md, "Conflicted state subgraph"): the
/// events on `auth_events` paths from one conflicted event to another, endpoints included.
fn conflicted_subgraph(
    conflicted: &StateMap<Vec<OwnedEventId>>,
    events: &HashMap<OwnedEventId, Pdu>,
) -> EventIdSet<OwnedEventId> {
    let conflicted: HashSet<&OwnedEventId> = conflicted.values().flatten().collect();
    // Whether each event reaches a conflicted event through auth_events (memoised walk).
    fn reaches(
        id: &OwnedEventId,
        conflicted: &HashSet<&OwnedEventId>,
        events: &HashMap<OwnedEventId, Pdu>,
        memo: &mut HashMap<OwnedEventId, bool>,
    ) -> bool {
        if let Some(known) = memo.get(id) {
            return *known;
        }
        memo.insert(id.clone(), false);
        let found = events.get(id).is_some_and(|pdu| {
            pdu.auth_events
                .iter()
                .any(|a| conflicted.contains(a) || reaches(a, conflicted, events, memo))
        });
        memo.insert(id.clone(), found);
        found
    }
    let mut memo = HashMap::new();
    let mut subgraph = EventIdSet::new();
    // Events reachable from a conflicted event that reach another one.
    for start in &conflicted {
        if reaches(start, &conflicted, events, &mut memo) {
            subgraph.insert((*start).clone());
        }
        for id in auth_chain(std::iter::once(*start), events).iter() {
            if conflicted.contains(id) || reaches(id, &conflicted, events, &mut memo) {
                subgraph.insert(id.clone());
            }
        }
    }
    subgraph
}

#[cfg(test)]
mod tests {
    //! Kith's state resolution (its auth chains and conflicted subgraph, around ruma's
    //! algorithm) against the fixtures and expected results that ruma-state-res ships:
    //! the two problems of MSC4297, which state resolution v2.1 (room version 12) fixes.

    use std::path::PathBuf;

    use super::*;

    /// The fixtures of the ruma-state-res version in Cargo.lock, from cargo's registry.
    fn ruma_fixtures() -> PathBuf {
        let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"))
            .expect("Cargo.lock");
        let version = lock
            .split("[[package]]")
            .find(|p| p.contains("name = \"ruma-state-res\""))
            .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
            .map(|v| v.trim_matches('"').to_owned())
            .expect("ruma-state-res in Cargo.lock");
        let cargo_home = std::env::var_os("CARGO_HOME").map_or_else(
            || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo"),
            PathBuf::from,
        );
        std::fs::read_dir(cargo_home.join("registry/src"))
            .expect("cargo's registry sources")
            .filter_map(|entry| entry.ok())
            .map(|entry| {
                entry
                    .path()
                    .join(format!("ruma-state-res-{version}/tests/it/resolve"))
            })
            .find(|dir| dir.is_dir())
            .unwrap_or_else(|| {
                panic!("ruma-state-res {version}'s sources are not in {cargo_home:?}")
            })
    }

    fn json(path: PathBuf) -> Value {
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        // Snapshots open with a `---` header; the JSON follows it.
        let body = match text.strip_prefix("---") {
            Some(rest) => rest.split_once("\n---").map_or(rest, |(_, body)| body),
            None => &text,
        };
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{path:?}: {e}"))
    }

    /// Resolves the named state maps over the fixture's PDUs and compares with ruma's
    /// expected state.
    fn check(problem: &str, states: [&str; 2], pdus: &str, snapshot: &str) {
        let dir = ruma_fixtures();
        let room = ruma::owned_room_id!("!room:example.com");
        let mut events = HashMap::new();
        let mut version = None;
        for mut pdu in json(dir.join("fixtures").join(problem).join(pdus))
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            if pdu["type"] == "m.room.create" {
                version = pdu["content"]["room_version"].as_str().map(str::to_owned);
            }
            if let Some(object) = pdu.as_object_mut() {
                object.remove("test-comments");
            }
            let mut pdu: Pdu = serde_json::from_value(pdu).expect("a fixture PDU");
            pdu.in_room = room.clone();
            events.insert(pdu.event_id.clone(), pdu);
        }
        let rules = ruma::RoomVersionId::try_from(version.expect("a create event").as_str())
            .ok()
            .and_then(|v| v.rules())
            .expect("a known room version");
        let states: Vec<StateIds> = states
            .iter()
            .map(|file| {
                json(dir.join("fixtures").join(problem).join(file))
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(|id| {
                        let pdu = events
                            .get(&EventId::parse(id).expect("an event ID"))
                            .expect("the state's events are in the fixture");
                        (state_key_of(pdu), id.to_owned())
                    })
                    .collect()
            })
            .collect();
        let resolved = resolve_states(&rules, &states, &events).expect("resolution succeeds");
        let expected: StateIds = json(dir.join("snapshots").join(snapshot))
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    (
                        e["type"].as_str().unwrap_or_default().to_owned(),
                        e["state_key"].as_str().unwrap_or_default().to_owned(),
                    ),
                    e["event_id"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        assert!(!expected.is_empty(), "{snapshot} holds the expected state");
        assert_eq!(resolved, expected, "{problem} with {pdus}");
    }

    #[test]
    fn msc4297_problem_a_resolves_as_ruma_expects_in_v11_and_v12() {
        let states = ["state-bob.json", "state-charlie.json"];
        check(
            "MSC4297-problem-A",
            states,
            "pdus-v11.json",
            "msc4297_problem_a_state_res_v2_0@resolved_state.snap",
        );
        check(
            "MSC4297-problem-A",
            states,
            "pdus-v12.json",
            "msc4297_problem_a_state_res_v2_1@resolved_state.snap",
        );
    }

    #[test]
    fn msc4297_problem_b_uses_the_conflicted_subgraph_in_v12_only() {
        let states = ["state-eve.json", "state-zara.json"];
        check(
            "MSC4297-problem-B",
            states,
            "pdus-v11.json",
            "msc4297_problem_b_state_res_v2_0@resolved_state.snap",
        );
        check(
            "MSC4297-problem-B",
            states,
            "pdus-v12.json",
            "msc4297_problem_b_state_res_v2_1@resolved_state.snap",
        );
    }
}
