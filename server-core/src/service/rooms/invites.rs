//! Invites across servers (spec: server-server-api.md, "Inviting to a room", "Rejecting
//! invites"): inviting another server's user (`/invite` v2 before the event is stored),
//! being asked to hold an invite for a local user, and rejecting such an invite through
//! `make_leave`/`send_leave` on the inviting server.

use ruma::{
    CanonicalJsonValue, EventId, OwnedServerName, RoomId, RoomVersionId, ServerName, UserId,
    events::TimelineEventType,
    signatures::{reference_hash, sign_event},
};
use serde_json::{Value, json};

use super::{Rooms, join_remote::SUPPORTED_VERSIONS, timeline::Built, timeline::EventDraft};
use crate::{
    error::{Error, ErrorKind, Result},
    pdu::{Reference, stripped_state},
    storage::RemoteMembership,
};

/// The state events an invite shows of its room (spec: client-server-api, "Stripped
/// state"), besides the invite itself.
pub(crate) const INVITE_STATE_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
];

impl Rooms {
    /// The stripped state kept with a local user's invite or knock in a room this server
    /// is not in, if that is what the user has.
    pub async fn remote_room_state(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Option<Vec<Value>>> {
        Ok(self
            .store
            .events()
            .remote_membership(room_id.as_str(), user_id.as_str())
            .await?
            .map(|remote| stored_room_state(&remote)))
    }

    /// Every other server with a member joined to the room.
    async fn other_servers(&self, room_id: &RoomId) -> Result<Vec<OwnedServerName>> {
        let ours = self.identity.server_name.as_str();
        Ok(self
            .store
            .events()
            .joined_servers(room_id.as_str())
            .await?
            .into_iter()
            .filter(|server| server != ours)
            .filter_map(|server| ServerName::parse(&server).ok())
            .collect())
    }

    /// Sends an EDU about the room (a receipt) to every other server with a member joined.
    pub async fn share_edu(&self, room_id: &RoomId, edu_type: &str, content: Value) -> Result<()> {
        for server in self.other_servers(room_id).await? {
            self.federation
                .queue_edu(&server, edu_type, content.clone())
                .await?;
        }
        Ok(())
    }

    /// Shares a typing notice with the other servers in the room, in memory only: it is
    /// stale in seconds, so it is neither stored nor retried (see the federation sender).
    pub async fn share_typing(&self, room_id: &RoomId, user_id: &str, typing: bool) -> Result<()> {
        let content = json!({ "room_id": room_id, "user_id": user_id, "typing": typing });
        for server in self.other_servers(room_id).await? {
            self.federation.queue_ephemeral_edu(
                &server,
                "m.typing",
                content.clone(),
                format!("{room_id} {user_id}"),
            );
        }
        Ok(())
    }

    /// The stripped state an invite to the room shows.
    pub async fn invite_state(&self, room_id: &RoomId) -> Result<Vec<Value>> {
        let mut events = Vec::new();
        for event_type in INVITE_STATE_TYPES {
            if let Some(pdu) = self.state_event(room_id, event_type, "").await? {
                events.push(stripped_state(&pdu));
            }
        }
        Ok(events)
    }

    /// Invites another server's user: the event is built and checked here, then sent to
    /// the user's server, which signs it too; only then is it stored and sent to the room.
    pub(super) async fn invite_remote(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        target: &UserId,
        reason: Option<&str>,
        is_direct: bool,
    ) -> Result<()> {
        let (version, rules) = self.version(room_id).await?;
        let mut content = json!({ "membership": "invite" });
        if let Some(reason) = reason {
            content["reason"] = json!(reason);
        }
        if is_direct {
            content["is_direct"] = json!(true);
        }
        let _guard = self.lock(room_id).await;
        let (built, _) = self
            .prepare_locked(
                room_id,
                sender,
                EventDraft::state("m.room.member", target.as_str(), content),
            )
            .await?;
        let event: Value = serde_json::from_str(&built.json)?;
        let body = json!({
            "event": event,
            "room_version": version,
            "invite_room_state": self.invite_state(room_id).await?,
        });
        let signed = self
            .federation
            .invite(target.server_name(), room_id, &built.pdu.event_id, &body)
            .await?;
        // The same event back, with the invitee's server's signature added.
        let signed = match CanonicalJsonValue::try_from(signed) {
            Ok(CanonicalJsonValue::Object(object))
                if reference_hash(&object, &rules).ok().as_deref()
                    == Some(&built.pdu.event_id.as_str()[1..]) =>
            {
                object
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::BadGateway,
                    format!(
                        "{} answered the invite with another event.",
                        target.server_name()
                    ),
                ));
            }
        };
        // spec: "Inviting to a room": the invitee's server signs the event; check that it
        // did, with its key, over the redacted event as all event signatures are (ours is
        // checked with it).
        let invitee_server = target.server_name();
        let signers: Vec<(String, Vec<String>)> = match signed.get("signatures") {
            Some(CanonicalJsonValue::Object(all)) => all
                .iter()
                .map(|(server, by_key)| {
                    let key_ids = match by_key {
                        CanonicalJsonValue::Object(by_key) => by_key
                            .keys()
                            .filter(|k| k.starts_with("ed25519:"))
                            .cloned()
                            .collect(),
                        _ => Vec::new(),
                    };
                    (server.clone(), key_ids)
                })
                .collect(),
            _ => Vec::new(),
        };
        if !signers
            .iter()
            .any(|(server, _)| server == invitee_server.as_str())
        {
            return Err(Error::new(
                ErrorKind::BadGateway,
                format!("{invitee_server} did not sign the invite."),
            ));
        }
        let mut public_keys = ruma::signatures::PublicKeyMap::new();
        for (server, key_ids) in signers {
            let Ok(server_name) = ServerName::parse(&server) else {
                continue;
            };
            let mut keys = std::collections::BTreeMap::new();
            for key_id in key_ids {
                if let Ok(key) = self
                    .federation
                    .verify_key(&server_name, &key_id, crate::storage::now_ms())
                    .await
                {
                    keys.insert(key_id, key);
                }
            }
            public_keys.insert(server, keys);
        }
        let redacted = ruma::canonical_json::redact(signed.clone(), &rules.redaction, None)
            .map_err(Error::internal)?;
        if let Err(e) = ruma::signatures::verify_json(&public_keys, &redacted) {
            return Err(Error::new(
                ErrorKind::BadGateway,
                format!(
                    "The signatures on the invite {invitee_server} returned do not verify: {e}."
                ),
            ));
        }
        let built = Built {
            pdu: built.pdu,
            json: serde_json::to_string(&signed)?,
        };
        self.store_event(built, Some(sender), None, None).await?;
        Ok(())
    }

    /// `PUT /invite` (v2): another server invites a local user. The invite is checked,
    /// signed by us and, for a room this server is not in, kept with its stripped state
    /// so the user sees it. For a room we are in, the event comes again as a PDU.
    pub async fn receive_invite(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        body: &Value,
    ) -> Result<Value> {
        let version = body
            .get("room_version")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::bad_json("room_version is required."))?;
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(Error::new(
                ErrorKind::IncompatibleRoomVersion {
                    room_version: version.to_owned(),
                },
                format!("Kith does not support room version {version} yet."),
            ));
        }
        let version = RoomVersionId::try_from(version).map_err(Error::internal)?;
        let rules = version
            .rules()
            .ok_or_else(|| Error::internal(format!("no rules for room version {version}")))?;
        let object = match body.get("event").cloned().map(CanonicalJsonValue::try_from) {
            Some(Ok(CanonicalJsonValue::Object(object))) => object,
            _ => return Err(Error::bad_json("event must be a PDU object.")),
        };
        let reference = match Reference::of(&object, &rules) {
            Ok(reference) if reference.event_id == event_id => reference,
            _ => {
                return Err(Error::invalid_param(
                    "The event is not the one in the path.",
                ));
            }
        };
        let (pdu, _) = self
            .verified(&reference, room_id, &rules, object.clone())
            .await?
            .map_err(|reason| Error::forbidden(format!("The invite is not valid: {reason}.")))?;
        let target = pdu
            .state_key
            .as_deref()
            .and_then(|k| UserId::parse(k).ok())
            .filter(|_| {
                pdu.kind == TimelineEventType::RoomMember
                    && pdu.content_value()["membership"] == "invite"
            })
            .ok_or_else(|| Error::invalid_param("The event is not an invite."))?;
        if pdu.sender.server_name() != origin {
            return Err(Error::forbidden(format!(
                "{origin} cannot invite on behalf of {}.",
                pdu.sender
            )));
        }
        if target.server_name() != self.identity.server_name {
            return Err(Error::invalid_param(format!(
                "{target} is not a user of this server."
            )));
        }
        if self
            .store
            .users()
            .get(target.as_str())
            .await?
            .is_none_or(|u| u.deactivated)
        {
            return Err(Error::not_found(format!("{target} is not known here.")));
        }
        let mut signed = object;
        sign_event(
            self.identity.server_name.as_str(),
            &self.identity.signing_key,
            &mut signed,
            &rules.redaction,
        )
        .map_err(Error::internal)?;
        let resident = self.is_resident(room_id).await?;
        if resident {
            self.ensure_server_allowed(room_id, origin).await?;
        } else {
            let invite_state = body
                .get("invite_room_state")
                .filter(|s| s.is_array())
                .cloned()
                .unwrap_or_else(|| json!([]));
            self.store
                .events()
                .store_remote_membership(
                    RemoteMembership {
                        room_id: room_id.to_string(),
                        user_id: target.to_string(),
                        membership: "invite".to_owned(),
                        event_id: event_id.to_string(),
                        room_version: version.to_string(),
                        room_state: serde_json::to_string(&invite_state)?,
                    },
                    serde_json::to_string(&signed)?,
                )
                .await?;
            self.notifier.notify();
        }
        Ok(json!({ "event": signed }))
    }

    /// The servers that can help with a local user's invite or knock in a room this server
    /// is not in: the sender's of the invite (or the one knocked through), then the room
    /// ID's (before v12). Empty without such a membership.
    pub(super) async fn remote_membership_servers(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Vec<OwnedServerName>> {
        let Some(invite) = self
            .store
            .events()
            .remote_membership(room_id.as_str(), user_id.as_str())
            .await?
        else {
            return Ok(Vec::new());
        };
        let mut servers = Vec::new();
        if let Some(event) = self.pdus(vec![invite.event_id]).await?.pop() {
            servers.push(event.sender.server_name().to_owned());
        }
        if let Some(server) = room_id.server_name() {
            servers.push(server.to_owned());
        }
        servers.dedup();
        Ok(servers)
    }

    /// Rejects a local user's invite (or withdraws their knock) in a room this server is
    /// not in, through the inviting (or knocked) server (`make_leave`, `send_leave`). If
    /// no server takes it, it is still done here, as Synapse does: the user is no longer
    /// bothered by it.
    pub(super) async fn leave_remote_membership(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        reason: Option<&str>,
    ) -> Result<()> {
        let Some(invite) = self
            .store
            .events()
            .remote_membership(room_id.as_str(), user_id.as_str())
            .await?
        else {
            return Err(Error::forbidden("You are not in this room."));
        };
        let mut leave = None;
        for server in self.remote_membership_servers(room_id, user_id).await? {
            match self.leave_through(&server, room_id, user_id, reason).await {
                Ok(event) => {
                    leave = Some(event);
                    break;
                }
                Err(e) => {
                    tracing::info!(%server, %room_id, error = %e, "remote invite rejection failed")
                }
            }
        }
        let leave = match leave {
            Some(leave) => leave,
            None => {
                // Locally only: the membership points at the invite it ends.
                let json = self
                    .store
                    .events()
                    .graph_events(vec![invite.event_id.clone()])
                    .await?
                    .pop()
                    .map(|(_, _, json)| json)
                    .unwrap_or_default();
                (invite.event_id, json)
            }
        };
        self.store
            .events()
            .end_remote_membership(room_id.as_str(), user_id.as_str(), Some(leave))
            .await?;
        self.notifier.notify();
        Ok(())
    }

    /// Knocks on a room this server is not in, through the first of `via` that takes it
    /// (`make_knock`, `send_knock`), and keeps the knock with the stripped state the
    /// server answers with.
    pub(super) async fn knock_remote(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        via: &[OwnedServerName],
        reason: Option<&str>,
    ) -> Result<()> {
        let mut last_error =
            Error::not_found("No server that could take a knock on this room is known.");
        for server in via.iter().filter(|s| **s != self.identity.server_name) {
            let attempt = async {
                let (version, template) = self
                    .federation
                    .make_knock(server, room_id, user_id, SUPPORTED_VERSIONS)
                    .await?;
                let content = self.member_content(user_id, "knock", reason).await?;
                let (_, event_id, event) = self
                    .sign_template(server, room_id, user_id, &version, template, content)
                    .await?;
                let answer = self
                    .federation
                    .send_knock(server, room_id, &event_id, &serde_json::to_value(&event)?)
                    .await?;
                let state = answer
                    .get("knock_room_state")
                    .filter(|s| s.is_array())
                    .cloned()
                    .unwrap_or_else(|| json!([]));
                self.store
                    .events()
                    .store_remote_membership(
                        RemoteMembership {
                            room_id: room_id.to_string(),
                            user_id: user_id.to_string(),
                            membership: "knock".to_owned(),
                            event_id: event_id.to_string(),
                            room_version: version,
                            room_state: serde_json::to_string(&state)?,
                        },
                        serde_json::to_string(&event)?,
                    )
                    .await?;
                self.notifier.notify();
                Ok::<(), Error>(())
            };
            match attempt.await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::info!(%server, %room_id, error = %e, "remote knock failed");
                    last_error = e;
                }
            }
        }
        Err(last_error)
    }

    /// One `make_leave` + `send_leave` round; returns the leave event (ID, JSON).
    async fn leave_through(
        &self,
        server: &OwnedServerName,
        room_id: &RoomId,
        user_id: &UserId,
        reason: Option<&str>,
    ) -> Result<(String, String)> {
        let (version, template) = self.federation.make_leave(server, room_id, user_id).await?;
        let mut content = json!({ "membership": "leave" });
        if let Some(reason) = reason {
            content["reason"] = json!(reason);
        }
        let (_, event_id, event) = self
            .sign_template(server, room_id, user_id, &version, template, content)
            .await?;
        let value = serde_json::to_value(&event)?;
        self.federation
            .send_leave(server, room_id, &event_id, &value)
            .await?;
        Ok((event_id.to_string(), serde_json::to_string(&event)?))
    }
}

/// The stripped state kept with a remote invite or knock, as a client sees it.
fn stored_room_state(remote: &RemoteMembership) -> Vec<Value> {
    serde_json::from_str::<Vec<Value>>(&remote.room_state)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.get("type").is_some_and(Value::is_string))
        .map(|e| {
            json!({
                "type": e["type"],
                "state_key": e.get("state_key").cloned().unwrap_or(json!("")),
                "content": e.get("content").cloned().unwrap_or(json!({})),
                "sender": e.get("sender").cloned().unwrap_or(Value::Null),
            })
        })
        .collect()
}
