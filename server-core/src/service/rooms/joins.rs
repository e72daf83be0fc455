//! Other servers' users joining rooms here (spec: server-server-api.md, "Joining Rooms"):
//! `make_join` hands out a join event template, `send_join` checks the signed join like any
//! PDU, appends it, passes it on to the room's other servers, and answers with the room's
//! state before it and that state's auth chain.

use std::collections::{HashMap, HashSet};

use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, RoomId, RoomVersionId, ServerName, UserId,
    room_version_rules::RoomVersionRules,
};
use serde_json::{Value, json};

use super::{Outcome, Rooms};
use crate::{
    error::{Error, ErrorKind, Result},
    pdu::Pdu,
    storage::StateIds,
};

impl Rooms {
    /// `GET /make_join`: a join event for `user_id` to sign, built on the room's current
    /// state and forward extremities. `supported` are the room versions the asking server
    /// supports; the room's must be one of them.
    pub async fn make_join(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
        supported: &[String],
    ) -> Result<(RoomVersionId, Value)> {
        self.make_membership(origin, room_id, user_id, "join", Some(supported))
            .await
    }

    /// `GET /make_knock`: a knock event template.
    pub async fn make_knock(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
        supported: &[String],
    ) -> Result<(RoomVersionId, Value)> {
        self.make_membership(origin, room_id, user_id, "knock", Some(supported))
            .await
    }

    /// `PUT /send_knock`: checks and appends a remote user's signed knock; answers with
    /// the room's stripped state, for the knocker's client.
    pub async fn send_knock(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        pdu: Value,
    ) -> Result<Value> {
        self.accept_membership(origin, room_id, event_id, pdu, "knock")
            .await?;
        Ok(json!({ "knock_room_state": self.invite_state(room_id).await? }))
    }

    /// `GET /make_leave`: a leave event template (to reject an invite from here).
    pub async fn make_leave(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<(RoomVersionId, Value)> {
        self.make_membership(origin, room_id, user_id, "leave", None)
            .await
    }

    async fn make_membership(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
        membership: &str,
        supported: Option<&[String]>,
    ) -> Result<(RoomVersionId, Value)> {
        if user_id.server_name() != origin {
            return Err(Error::forbidden(format!(
                "{origin} cannot ask for a {membership} of {user_id}, who is not one of its users."
            )));
        }
        let (version, rules) = self.version(room_id).await?;
        self.ensure_resident(room_id).await?;
        self.ensure_server_allowed(room_id, origin).await?;
        if let Some(supported) = supported
            && !supported.iter().any(|v| v == version.as_str())
        {
            return Err(Error::new(
                ErrorKind::IncompatibleRoomVersion {
                    room_version: version.to_string(),
                },
                format!("The room is of version {version}, which {origin} does not support."),
            ));
        }
        let (prev_events, depth) = self.store.events().extremities(room_id.as_str()).await?;
        let current: StateIds = self
            .store
            .events()
            .current_state(room_id.as_str())
            .await?
            .into_iter()
            .map(|(t, k, id, _)| ((t, k), id))
            .collect();
        let mut content = json!({ "membership": membership });
        // A restricted room: the join is made on the authority of one of our users.
        if membership == "join"
            && let Some(authoriser) = self.join_authoriser(room_id, user_id).await?
        {
            content["join_authorised_via_users_server"] = json!(authoriser);
        }
        let raw_content = serde_json::value::to_raw_value(&content)?;
        let auth_types = ruma::state_res::auth_types_for_event(
            &ruma::events::TimelineEventType::RoomMember,
            user_id,
            Some(user_id.as_str()),
            &raw_content,
            &rules.authorization,
        )
        .map_err(Error::internal)?;
        let mut auth_events: Vec<&String> = auth_types
            .iter()
            .filter_map(|(t, k)| current.get(&(t.to_string(), k.clone())))
            .collect();
        if !rules.authorization.room_create_event_id_as_room_id
            && let Some(create) = current.get(&("m.room.create".to_owned(), String::new()))
            && !auth_events.contains(&create)
        {
            auth_events.push(create);
        }
        let template = json!({
            "type": "m.room.member",
            "room_id": room_id,
            "sender": user_id,
            "state_key": user_id,
            // spec: joins-v1.yaml: the resident server's name.
            "origin": self.identity.server_name,
            "origin_server_ts": MilliSecondsSinceUnixEpoch::now(),
            "content": content,
            "prev_events": prev_events,
            "auth_events": auth_events,
            "depth": depth + 1,
        });
        // Refuse here what the room would refuse, with the reason, before the server signs.
        let mut probe = template.clone();
        probe["event_id"] = json!("$make_join_probe");
        let probe: Pdu = serde_json::from_value(probe).map_err(Error::internal)?;
        let probe = Pdu {
            in_room: room_id.to_owned(),
            ..probe
        };
        if let Err(reason) = self.auth_against(&rules, &probe, &current).await? {
            return Err(Error::forbidden(format!(
                "{user_id} may not {membership} this room: {reason}."
            )));
        }
        Ok((version, template))
    }

    /// `PUT /send_join` (v2): checks and appends a remote user's signed join, sends it to the
    /// room's other servers, and answers with the state before it and its auth chain.
    pub async fn send_join(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        pdu: Value,
    ) -> Result<Value> {
        let pdu = self.countersign_join(room_id, pdu).await?;
        let (rules, prev) = self
            .accept_membership(origin, room_id, event_id, pdu, "join")
            .await?;
        // The state before the join: the resolved state after its prev events.
        let states = self.store.state().after_events(prev).await?;
        let state = self
            .resolve(&rules, states.into_iter().flatten().collect())
            .await?;
        let state_ids: Vec<OwnedEventId> = state
            .values()
            .filter_map(|id| EventId::parse(id).ok())
            .collect();
        let loaded = self.with_auth_chains(&state_ids).await?;
        let state_set: HashSet<&OwnedEventId> = state_ids.iter().collect();
        let mut chain: HashSet<&OwnedEventId> = HashSet::new();
        let mut stack: Vec<&OwnedEventId> = state_ids
            .iter()
            .filter_map(|id| loaded.get(id))
            .flat_map(|p| p.auth_events.iter())
            .collect();
        while let Some(id) = stack.pop() {
            if chain.insert(id)
                && let Some(pdu) = loaded.get(id)
            {
                stack.extend(pdu.auth_events.iter());
            }
        }
        let json_of = |ids: Vec<String>| async move {
            let rows = self.store.events().graph_events(ids).await?;
            Ok::<Vec<Value>, Error>(
                rows.into_iter()
                    .filter_map(|(_, _, json)| serde_json::from_str(&json).ok())
                    .collect(),
            )
        };
        let state_json = json_of(state_set.iter().map(ToString::to_string).collect()).await?;
        let chain_json = json_of(chain.iter().map(ToString::to_string).collect()).await?;
        let event = self
            .store
            .events()
            .graph_events(vec![event_id.to_string()])
            .await?
            .pop()
            .and_then(|(_, _, json)| serde_json::from_str::<Value>(&json).ok())
            .unwrap_or(Value::Null);
        let servers = self.store.events().joined_servers(room_id.as_str()).await?;
        Ok(json!({
            "origin": self.identity.server_name,
            "state": state_json,
            "auth_chain": chain_json,
            "event": event,
            "members_omitted": false,
            "servers_in_room": servers,
        }))
    }

    /// `PUT /send_leave` (v2): checks and appends a remote user's signed leave.
    pub async fn send_leave(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        pdu: Value,
    ) -> Result<()> {
        self.accept_membership(origin, room_id, event_id, pdu, "leave")
            .await?;
        Ok(())
    }

    /// The checks of `send_join` and `send_leave` (spec: joins-v2.yaml: `M_INVALID_PARAM`
    /// for the wrong shape), then the PDU checks, then the append and the sending on to the
    /// room's other servers. Returns the room's rules and the event's prev events.
    async fn accept_membership(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        pdu: Value,
        membership: &str,
    ) -> Result<(RoomVersionRules, Vec<String>)> {
        self.ensure_resident(room_id).await?;
        self.ensure_server_allowed(room_id, origin).await?;
        let incoming = self.incoming(pdu).await?;
        if incoming.event_id() != event_id || incoming.room_id() != room_id {
            return Err(Error::invalid_param(
                "The event's ID or room is not the one in the path.",
            ));
        }
        let event = incoming.peek();
        let sender = event.get("sender").and_then(Value::as_str).unwrap_or("");
        let shaped = event.get("type").and_then(Value::as_str) == Some("m.room.member")
            && event.get("state_key").and_then(Value::as_str) == Some(sender)
            && event.pointer("/content/membership").and_then(Value::as_str) == Some(membership);
        if !shaped {
            return Err(Error::invalid_param(format!(
                "This endpoint takes a {membership} event of its sender."
            )));
        }
        if UserId::parse(sender)
            .map(|u| u.server_name() != origin)
            .unwrap_or(true)
        {
            return Err(Error::invalid_param(format!(
                "{origin} cannot send a {membership} for {sender}."
            )));
        }
        let prev: Vec<String> = event
            .get("prev_events")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let (_, rules) = self.version(room_id).await?;
        let mut destinations = self.store.events().joined_servers(room_id.as_str()).await?;
        destinations.retain(|d| d != origin.as_str());
        let outcome = {
            let _guard = self.lock(room_id).await;
            self.receive_locked(incoming, destinations, Some(origin))
                .await?
        };
        match outcome {
            Outcome::Accepted => Ok((rules, prev)),
            Outcome::SoftFailed => Err(Error::forbidden(format!(
                "The {membership} is not allowed by the room's current state."
            ))),
            Outcome::Rejected(reason) => Err(Error::forbidden(format!(
                "The {membership} is not allowed: {reason}."
            ))),
        }
    }

    /// `M_NOT_FOUND` unless a local user is joined to the room, so this server holds its
    /// current state and may speak for it.
    async fn ensure_resident(&self, room_id: &RoomId) -> Result<()> {
        if self.is_resident(room_id).await? {
            Ok(())
        } else {
            Err(Error::not_found("This server is not in that room."))
        }
    }

    /// Whether a local user is joined to the room, so this server holds its current state.
    pub(super) async fn is_resident(&self, room_id: &RoomId) -> Result<bool> {
        let ours = self.identity.server_name.as_str();
        Ok(self
            .store
            .events()
            .joined_servers(room_id.as_str())
            .await?
            .iter()
            .any(|s| s == ours))
    }

    /// The events `ids` and every event of their auth chains, as far as they are stored.
    pub(super) async fn with_auth_chains(
        &self,
        ids: &[OwnedEventId],
    ) -> Result<HashMap<OwnedEventId, Pdu>> {
        let mut events: HashMap<OwnedEventId, Pdu> = HashMap::new();
        let mut frontier: Vec<OwnedEventId> = ids.to_vec();
        while !frontier.is_empty() {
            let loaded = self.graph_pdus(&frontier).await?;
            frontier = Vec::new();
            for pdu in loaded {
                frontier.extend(
                    pdu.auth_events
                        .iter()
                        .filter(|a| !events.contains_key(*a))
                        .cloned(),
                );
                events.insert(pdu.event_id.clone(), pdu);
            }
            frontier.retain(|id| !events.contains_key(id));
            frontier.sort();
            frontier.dedup();
        }
        Ok(events)
    }
}

impl Rooms {
    /// One event of the room graph as its PDU JSON, for a server that may see it (spec:
    /// server-server-api.md, "Retrieving events"; "Server behaviour" of history visibility):
    /// the server had a member joined in the state after the event, or the room's history
    /// was `world_readable` there, or `invited` and the server had a member invited, or
    /// `shared` and a member of the server joined after the event (now joined, or joined
    /// later in the timeline). Anything else is `M_NOT_FOUND`, as for an unknown event.
    pub async fn event_for_server(&self, server: &ServerName, event_id: &EventId) -> Result<Value> {
        let not_found = || Error::not_found("That event is not known here.");
        let (_, room_id, json) = self
            .store
            .events()
            .graph_events(vec![event_id.to_string()])
            .await?
            .pop()
            .ok_or_else(not_found)?;
        let room_id = RoomId::parse(room_id).map_err(Error::internal)?;
        if !self.server_may_see(server, &room_id, event_id).await? {
            return Err(not_found());
        }
        serde_json::from_str(&json).map_err(Error::internal)
    }

    /// Whether `server` may see `event_id` (see [`Rooms::event_for_server`]).
    pub(super) async fn server_may_see(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<bool> {
        let Some(state) = self
            .store
            .state()
            .after_events(vec![event_id.to_string()])
            .await?
            .pop()
            .flatten()
        else {
            return Ok(false);
        };
        let members: Vec<OwnedEventId> = state
            .iter()
            .filter(|((t, k), _)| {
                t == "m.room.member"
                    && UserId::parse(k.as_str()).is_ok_and(|u| u.server_name() == server)
            })
            .filter_map(|(_, id)| EventId::parse(id).ok())
            .collect();
        let memberships: Vec<String> = self
            .graph_pdus(&members)
            .await?
            .iter()
            .filter_map(|m| m.content_value()["membership"].as_str().map(str::to_owned))
            .collect();
        if memberships.iter().any(|m| m == "join") {
            return Ok(true);
        }
        let visibility = match state.get(&("m.room.history_visibility".to_owned(), String::new())) {
            Some(id) => {
                let id = EventId::parse(id).map_err(Error::internal)?;
                self.graph_pdus(&[id])
                    .await?
                    .pop()
                    .and_then(|p| {
                        p.content_value()["history_visibility"]
                            .as_str()
                            .map(str::to_owned)
                    })
                    .unwrap_or_else(|| "shared".to_owned())
            }
            None => "shared".to_owned(),
        };
        Ok(match visibility.as_str() {
            "world_readable" => true,
            // Spec: client-server-api/modules/history_visibility.md, "Server behaviour",
            // rule 4, for any of the server's users.
            "invited" => memberships.iter().any(|m| m == "invite"),
            // Rule 3: a user of the server joined at any point after the event. One joined
            // now did (had they been joined at the event, rule 1 would have let it in
            // above); so did one whose join came later in the timeline, even if they have
            // left since. An event with no place in the timeline (an outlier) counts as
            // before any such join.
            "shared" => {
                let events = self.store.events();
                if events
                    .joined_servers(room_id.as_str())
                    .await?
                    .iter()
                    .any(|s| s == server.as_str())
                {
                    true
                } else if let Some(last_join) = events
                    .last_join_of_server(room_id.as_str(), server.as_str())
                    .await?
                {
                    match events.get(event_id.as_str()).await? {
                        Some(stored) => stored.stream_pos <= last_join,
                        None => true,
                    }
                } else {
                    false
                }
            }
            _ => false,
        })
    }
}
