//! A local user joining a room that lives on other servers (spec: server-server-api.md,
//! "Joining Rooms"): `make_join` on a server in the room, sign the template, `send_join`,
//! then check the state and auth chain it answers with before taking any of it.
//!
//! What is checked: every event's signatures and hashes (as for any PDU), that the state
//! holds the room's create event of the advertised version, and that each state event is
//! allowed by its own auth events. Events that fail are dropped, as Synapse does. The
//! state and auth chain are kept as outliers; the join is appended to the timeline with
//! that state before it, so `/sync` shows the room with its state at once.

use std::{collections::HashMap, sync::Arc, time::Instant};

use ruma::{
    CanonicalJsonValue, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedServerName, RoomId,
    RoomVersionId, UserId,
    events::StateEventType,
    room_version_rules::RoomVersionRules,
    signatures::{hash_and_sign_event, reference_hash},
    state_res::{check_state_dependent_auth_rules, check_state_independent_auth_rules},
};
use serde_json::Value;

use super::{Rooms, timeline::Placement};
use crate::{
    error::{Error, ErrorKind, Result},
    pdu::{Pdu, Reference},
    storage::{NewCurrent, StateBefore, StateIds},
};

/// The room versions Kith joins over federation.
pub const SUPPORTED_VERSIONS: &[&str] = &["10", "11", "12"];

impl Rooms {
    /// Joins `user_id` to a room this server is not in, through the first of `via` that
    /// lets it. The last server's error is returned when none does.
    pub async fn join_remote(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        via: &[OwnedServerName],
        reason: Option<&str>,
    ) -> Result<()> {
        let ours = self.identity.server_name.clone();
        let mut last_error =
            Error::not_found("No server that could help to join this room is known.");
        for server in via.iter().filter(|s| **s != ours) {
            match self.join_through(server, user_id, room_id, reason).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::info!(%server, %room_id, error = %e, "remote join failed");
                    last_error = e;
                }
            }
        }
        Err(last_error)
    }

    async fn join_through(
        &self,
        server: &OwnedServerName,
        user_id: &UserId,
        room_id: &RoomId,
        reason: Option<&str>,
    ) -> Result<()> {
        let started = Instant::now();
        let (version, template) = self
            .federation
            .make_join(server, room_id, user_id, SUPPORTED_VERSIONS)
            .await?;
        let content = self.member_content(user_id, "join", reason).await?;
        let (rules, event_id, event) = self
            .sign_template(server, room_id, user_id, &version, template, content)
            .await?;
        let event_json = serde_json::to_value(&event)?;

        let asked = Instant::now();
        let mut answer = self
            .federation
            .send_join(server, room_id, &event_id, &event_json)
            .await?;
        let answered = Instant::now();

        // The resident server may have co-signed our join (restricted rooms): use its copy
        // when it is the same event.
        let join_object = match answer
            .get_mut("event")
            .map(Value::take)
            .map(CanonicalJsonValue::try_from)
        {
            Some(Ok(CanonicalJsonValue::Object(theirs)))
                if reference_hash(&theirs, &rules).ok().as_deref()
                    == Some(&event_id.as_str()[1..]) =>
            {
                theirs
            }
            _ => event,
        };

        let (received, state_ids) = self.checked_events(server, room_id, &rules, answer).await?;
        let checked = Instant::now();
        let state: StateIds = state_ids
            .into_iter()
            .filter_map(|id| {
                let pdu = received.get(id.as_str())?;
                Some(((pdu.0.kind.to_string(), pdu.0.state_key.clone()?), id))
            })
            .collect();
        let create_id = state
            .get(&("m.room.create".to_owned(), String::new()))
            .ok_or_else(|| bad_gateway(server, "a room state without its create event"))?;
        let create = &received
            .get(create_id.as_str())
            .ok_or_else(|| bad_gateway(server, "a room state without its create event"))?
            .0;
        let create_version = create.content_value()["room_version"]
            .as_str()
            .unwrap_or("1")
            .to_owned();
        if create_version != version.as_str() {
            return Err(bad_gateway(
                server,
                "a create event of another room version than it advertised",
            ));
        }

        // Keep the state and auth chain, then append our join with that state before it.
        self.store
            .events()
            .store_outliers(
                room_id.as_str(),
                received
                    .iter()
                    .map(|(id, (_, json))| (id.clone(), json.clone()))
                    .collect(),
                false,
            )
            .await?;
        let join_json = serde_json::to_string(&join_object)?;
        let join =
            Pdu::from_stored(event_id.clone(), room_id, &join_json).map_err(Error::internal)?;
        if let Err(reason) = self.auth_against(&rules, &join, &state).await? {
            return Err(Error::forbidden(format!(
                "The room's state does not allow this join: {reason}."
            )));
        }
        let _guard = self.lock(room_id).await;
        self.store
            .rooms()
            .create(room_id.as_str(), version.as_str(), create.sender.as_str())
            .await?;
        let mut after = state.clone();
        after.insert(
            ("m.room.member".to_owned(), user_id.to_string()),
            event_id.to_string(),
        );
        let placement = Placement {
            state_before: StateBefore::Ids(state),
            new_current: NewCurrent::Resolved(after),
            destinations: Vec::new(),
        };
        self.append(join, join_json, None, None, placement, false)
            .await?;
        // How long each part took: the resident server's answer is often most of it.
        let ms = |from: Instant, to: Instant| to.duration_since(from).as_millis();
        tracing::info!(
            %server, %room_id, events = received.len(),
            make_join_ms = ms(started, asked),
            send_join_ms = ms(asked, answered),
            check_ms = ms(answered, checked),
            store_ms = ms(checked, Instant::now()),
            "joined a room on another server"
        );
        Ok(())
    }

    /// Makes our event of a membership template from another server (`make_join`,
    /// `make_leave`, `make_knock`): checks that it is a member event of `user_id` in the
    /// room, of a version Kith supports, puts in our `content` (keeping a restricted join's
    /// `join_authorised_via_users_server`, spec: rooms/v8.md), our time and origin, then
    /// hashes and signs it. Returns the room's rules, the event ID and the event.
    pub(super) async fn sign_template(
        &self,
        server: &OwnedServerName,
        room_id: &RoomId,
        user_id: &UserId,
        version: &str,
        template: Value,
        mut content: Value,
    ) -> Result<(RoomVersionRules, OwnedEventId, ruma::CanonicalJsonObject)> {
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(Error::new(
                ErrorKind::UnsupportedRoomVersion,
                format!("The room is of version {version}, which Kith cannot take part in yet."),
            ));
        }
        let version = RoomVersionId::try_from(version).map_err(Error::internal)?;
        let rules = version
            .rules()
            .ok_or_else(|| Error::internal(format!("no rules for room version {version}")))?;
        let mut event = match CanonicalJsonValue::try_from(template) {
            Ok(CanonicalJsonValue::Object(object)) => object,
            _ => return Err(bad_gateway(server, "a template that is not canonical JSON")),
        };
        let is_ours = |key: &str| event.get(key).and_then(as_str) == Some(user_id.as_str());
        if !is_ours("sender")
            || !is_ours("state_key")
            || event.get("type").and_then(as_str) != Some("m.room.member")
            || event.get("room_id").and_then(as_str) != Some(room_id.as_str())
        {
            return Err(bad_gateway(server, "a template for another event"));
        }
        if let Some(via_user) = event
            .get("content")
            .and_then(|c| match c {
                CanonicalJsonValue::Object(c) => c.get("join_authorised_via_users_server"),
                _ => None,
            })
            .and_then(as_str)
        {
            content["join_authorised_via_users_server"] = Value::from(via_user);
        }
        event.insert(
            "content".to_owned(),
            CanonicalJsonValue::try_from(content).map_err(Error::internal)?,
        );
        event.insert(
            "origin_server_ts".to_owned(),
            CanonicalJsonValue::try_from(serde_json::to_value(MilliSecondsSinceUnixEpoch::now())?)
                .map_err(Error::internal)?,
        );
        event.insert(
            "origin".to_owned(),
            CanonicalJsonValue::String(self.identity.server_name.to_string()),
        );
        for key in ["event_id", "hashes", "signatures", "unsigned"] {
            event.remove(key);
        }
        hash_and_sign_event(
            self.identity.server_name.as_str(),
            &self.identity.signing_key,
            &mut event,
            &rules.redaction,
        )
        .map_err(Error::internal)?;
        let event_id = EventId::parse(format!(
            "${}",
            reference_hash(&event, &rules).map_err(Error::internal)?
        ))
        .map_err(Error::internal)?;
        Ok((rules, event_id, event))
    }

    /// The `state` and `auth_chain` of a send_join answer, each checked (signatures, hashes,
    /// auth against its own auth events); the ones that fail are dropped. Keyed by event ID,
    /// with the IDs of the answer's `state` (checked or not) in its order.
    async fn checked_events(
        &self,
        server: &OwnedServerName,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        mut answer: Value,
    ) -> Result<(HashMap<String, (Pdu, String)>, Vec<String>)> {
        let mut raw: Vec<(bool, Value)> = Vec::new();
        for key in ["auth_chain", "state"] {
            if let Some(Value::Array(events)) = answer.get_mut(key).map(Value::take) {
                raw.extend(events.into_iter().map(|e| (key == "state", e)));
            }
        }
        // Hashing and checking the signatures is most of a big room's join (thousands of
        // events): the work is spread over blocking threads, one part each. (Tasks spawned
        // on the runtime's workers mostly stayed on one of them.) An event in both lists
        // is checked twice: usually few are (the auth chain is mostly older events).
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
        let per_worker = raw.len().div_ceil(workers).max(1);
        let mut parts: Vec<Vec<(bool, Value)>> = Vec::new();
        let mut rest = raw.into_iter().peekable();
        while rest.peek().is_some() {
            parts.push(rest.by_ref().take(per_worker).collect());
        }
        let runtime = tokio::runtime::Handle::current();
        let tasks: Vec<_> = parts
            .into_iter()
            .map(|part| {
                let (rooms, server, room_id, rules, runtime) = (
                    self.clone(),
                    server.clone(),
                    room_id.to_owned(),
                    rules.clone(),
                    runtime.clone(),
                );
                tokio::task::spawn_blocking(move || {
                    runtime.block_on(async move {
                        let mut checked = Vec::with_capacity(part.len());
                        for (in_state, raw) in part {
                            let Ok(CanonicalJsonValue::Object(object)) =
                                CanonicalJsonValue::try_from(raw)
                            else {
                                continue;
                            };
                            let Ok(reference) = Reference::of(&object, &rules) else {
                                continue;
                            };
                            let event_id = reference.event_id.to_string();
                            match rooms.verified(&reference, &room_id, &rules, object).await? {
                                Ok(event) => checked.push((in_state, event_id, Some(event))),
                                Err(reason) => {
                                    tracing::info!(%server, %event_id, %reason, "send_join event dropped");
                                    checked.push((in_state, event_id, None));
                                }
                            }
                        }
                        Ok::<_, Error>(checked)
                    })
                })
            })
            .collect();
        let mut events: HashMap<String, (Pdu, String)> = HashMap::new();
        let mut state_ids = Vec::new();
        for task in tasks {
            let checked = task
                .await
                .map_err(|e| Error::internal(format!("verifying a join's events: {e}")))??;
            for (in_state, event_id, event) in checked {
                if let Some(event) = event {
                    events.entry(event_id.clone()).or_insert(event);
                }
                if in_state {
                    state_ids.push(event_id);
                }
            }
        }
        // Each event must be allowed by its own auth events, checked on all threads too.
        let create_id: Option<OwnedEventId> = rules
            .authorization
            .room_create_event_id_as_room_id
            .then(|| EventId::parse(format!("${}", &room_id.as_str()[1..])).ok())
            .flatten();
        let events = Arc::new(events);
        let ids: Arc<Vec<String>> = Arc::new(events.keys().cloned().collect());
        let per_worker = ids.len().div_ceil(workers).max(1);
        let tasks: Vec<_> = (0..ids.len())
            .step_by(per_worker)
            .map(|start| {
                let (events, ids, rules, create_id, server) = (
                    events.clone(),
                    ids.clone(),
                    rules.clone(),
                    create_id.clone(),
                    server.clone(),
                );
                tokio::task::spawn_blocking(move || {
                    let end = (start + per_worker).min(ids.len());
                    let mut refused = Vec::new();
                    for id in &ids[start..end] {
                        let Some((pdu, _)) = events.get(id) else {
                            continue;
                        };
                        if let Err(reason) =
                            allowed_by_own_auth_events(&rules, create_id.as_deref(), pdu, &events)
                        {
                            tracing::info!(%server, event_id = %pdu.event_id, %reason, "send_join event not allowed by its auth events");
                            refused.push(id.clone());
                        }
                    }
                    refused
                })
            })
            .collect();
        let mut refused = Vec::new();
        for task in tasks {
            refused.extend(
                task.await
                    .map_err(|e| Error::internal(format!("checking a join's events: {e}")))?,
            );
        }
        let mut events = Arc::try_unwrap(events)
            .map_err(|_| Error::internal("a join's events are still shared"))?;
        for id in refused {
            events.remove(&id);
        }
        Ok((events, state_ids))
    }
}

/// Whether ruma's auth rules allow `pdu` against its own auth events, as found among
/// `events` (with the create event, which v12 rooms do not list).
fn allowed_by_own_auth_events(
    rules: &RoomVersionRules,
    create_id: Option<&EventId>,
    pdu: &Pdu,
    events: &HashMap<String, (Pdu, String)>,
) -> std::result::Result<(), String> {
    let find = |id: &EventId| events.get(id.as_str()).map(|(pdu, _)| pdu);
    let mut auth: Vec<&Pdu> = pdu.auth_events.iter().filter_map(|id| find(id)).collect();
    if let Some(create) = create_id.and_then(find) {
        auth.push(create);
    }
    let auth_by_key: HashMap<(String, String), &Pdu> = auth
        .iter()
        .map(|p| {
            (
                (p.kind.to_string(), p.state_key.clone().unwrap_or_default()),
                *p,
            )
        })
        .collect();
    check_state_independent_auth_rules(&rules.authorization, pdu, |id: &EventId| {
        auth.iter().find(|p| p.event_id == id).copied()
    })
    .and_then(|()| {
        check_state_dependent_auth_rules(
            &rules.authorization,
            pdu,
            |t: &StateEventType, k: &str| auth_by_key.get(&(t.to_string(), k.to_owned())).copied(),
        )
    })
}

fn as_str(value: &CanonicalJsonValue) -> Option<&str> {
    match value {
        CanonicalJsonValue::String(s) => Some(s),
        _ => None,
    }
}

fn bad_gateway(server: &OwnedServerName, what: &str) -> Error {
    Error::new(
        ErrorKind::BadGateway,
        format!("{server} answered the join with {what}."),
    )
}
