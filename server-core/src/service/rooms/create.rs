//! Room creation (spec: client-server-api/_index.md, "POST /createRoom", "Creation").

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UserId};
use serde_json::{Map, Value, json};

use super::{Rooms, timeline::EventDraft};
use crate::{
    config::SUPPORTED_ROOM_VERSIONS,
    crypto,
    error::{Error, ErrorKind, Result},
};

/// What `/createRoom` asks for, already parsed.
#[derive(Debug, Clone, Default)]
pub struct CreateRoom {
    /// `private_chat`, `trusted_private_chat` or `public_chat`; `None` picks by visibility.
    pub preset: Option<String>,
    /// Whether to publish the room in the directory.
    pub public: bool,
    /// The room version; `None` for the server default.
    pub room_version: Option<String>,
    /// Extra keys for the `m.room.create` content.
    pub creation_content: Option<Map<String, Value>>,
    /// State events sent after the preset's.
    pub initial_state: Vec<(String, String, Value)>,
    /// Keys that replace those of the default power levels.
    pub power_level_content_override: Option<Map<String, Value>>,
    /// Users to invite.
    pub invite: Vec<OwnedUserId>,
    /// `m.room.name`.
    pub name: Option<String>,
    /// `m.room.topic`.
    pub topic: Option<String>,
    /// The local part of an alias to create.
    pub room_alias_name: Option<String>,
    /// Marks invites as direct chats.
    pub is_direct: bool,
}

impl Rooms {
    /// Creates a room with `creator` joined, following the spec's order of events.
    pub async fn create(&self, creator: &UserId, request: CreateRoom) -> Result<OwnedRoomId> {
        let version_str = request
            .room_version
            .clone()
            .unwrap_or_else(|| self.config.rooms.default_version.clone());
        if !SUPPORTED_ROOM_VERSIONS.contains(&version_str.as_str()) {
            return Err(Error::new(
                ErrorKind::UnsupportedRoomVersion,
                format!("Room version {version_str} is not supported here; use 10, 11 or 12."),
            ));
        }
        let version = RoomVersionId::try_from(version_str.as_str()).map_err(Error::internal)?;
        let rules = version
            .rules()
            .ok_or_else(|| Error::internal("no rules for a supported version"))?;
        let preset = request.preset.clone().unwrap_or_else(|| {
            if request.public {
                "public_chat"
            } else {
                "private_chat"
            }
            .to_owned()
        });
        if !matches!(
            preset.as_str(),
            "private_chat" | "trusted_private_chat" | "public_chat"
        ) {
            return Err(Error::invalid_param(format!("Unknown preset {preset}.")));
        }
        let alias = match &request.room_alias_name {
            Some(local) => {
                let alias = self.alias_from_localpart(local)?;
                if self.store.rooms().alias(alias.as_str()).await?.is_some() {
                    return Err(Error::new(
                        ErrorKind::RoomInUse,
                        "That room alias is already taken.",
                    ));
                }
                Some(alias)
            }
            None => None,
        };

        // 1. The create event.
        let mut create_content = request.creation_content.clone().unwrap_or_default();
        create_content.insert("room_version".into(), json!(version_str));
        if !rules.authorization.use_room_create_sender {
            create_content.insert("creator".into(), json!(creator));
        }
        let privileged_creators = rules.authorization.explicitly_privilege_room_creators;
        if privileged_creators && preset == "trusted_private_chat" && !request.invite.is_empty() {
            // spec: rooms/v12.md — invitees of a trusted private chat become additional creators.
            create_content.insert("additional_creators".into(), json!(request.invite));
        }
        let create_draft = EventDraft::state("m.room.create", "", Value::Object(create_content));
        let (room_id, create) = if rules.authorization.room_create_event_id_as_room_id {
            let built = self.build(None, &rules, creator, &create_draft, &[], &[], 1)?;
            (built.pdu.in_room.clone(), built)
        } else {
            let room_id = RoomId::parse(format!(
                "!{}:{}",
                crypto::random_string(18),
                self.identity.server_name
            ))
            .map_err(Error::internal)?;
            let built = self.build(Some(&room_id), &rules, creator, &create_draft, &[], &[], 1)?;
            (room_id, built)
        };
        if !self
            .store
            .rooms()
            .create(room_id.as_str(), version.as_str(), creator.as_str())
            .await?
        {
            return Err(Error::internal("room ID collision"));
        }
        let _guard = self.lock(&room_id).await;
        self.store_event(create, None, None, None).await?;

        // 2. The creator joins.
        let member = self.member_content(creator, "join", None).await?;
        self.send_locked(
            &room_id,
            creator,
            EventDraft::state("m.room.member", creator.as_str(), member),
            None,
        )
        .await?;

        // 3. Power levels, with the request's override on top.
        let mut users = Map::new();
        if !privileged_creators {
            users.insert(creator.to_string(), json!(100));
            if preset == "trusted_private_chat" {
                for invitee in &request.invite {
                    users.insert(invitee.to_string(), json!(100));
                }
            }
        }
        let mut power = json!({
            "users": users,
            "users_default": 0,
            "events": {
                "m.room.name": 50,
                "m.room.power_levels": 100,
                "m.room.history_visibility": 100,
                "m.room.canonical_alias": 50,
                "m.room.avatar": 50,
                "m.room.tombstone": 100,
                "m.room.server_acl": 100,
                "m.room.encryption": 100,
            },
            "events_default": 0,
            "state_default": 50,
            "ban": 50,
            "kick": 50,
            "redact": 50,
            "invite": 0,
            "notifications": { "room": 50 },
        });
        if let (Some(overrides), Some(map)) =
            (&request.power_level_content_override, power.as_object_mut())
        {
            for (key, value) in overrides {
                map.insert(key.clone(), value.clone());
            }
        }
        self.send_initial(
            &room_id,
            creator,
            EventDraft::state("m.room.power_levels", "", power),
        )
        .await?;

        // 4. The canonical alias.
        if let Some(alias) = &alias {
            self.send_initial(
                &room_id,
                creator,
                EventDraft::state("m.room.canonical_alias", "", json!({ "alias": alias })),
            )
            .await?;
        }

        // 5. The preset's events.
        let (join_rule, guest_access) = match preset.as_str() {
            "public_chat" => ("public", "forbidden"),
            _ => ("invite", "can_join"),
        };
        let preset_events = [
            EventDraft::state("m.room.join_rules", "", json!({ "join_rule": join_rule })),
            EventDraft::state(
                "m.room.history_visibility",
                "",
                json!({ "history_visibility": "shared" }),
            ),
            EventDraft::state(
                "m.room.guest_access",
                "",
                json!({ "guest_access": guest_access }),
            ),
        ];
        for draft in preset_events {
            let overridden = request
                .initial_state
                .iter()
                .any(|(t, k, _)| *t == draft.event_type && k.is_empty());
            if !overridden {
                self.send_initial(&room_id, creator, draft).await?;
            }
        }

        // 6. initial_state, then 7. name and topic.
        for (event_type, state_key, content) in &request.initial_state {
            if event_type == "m.room.create"
                || event_type == "m.room.member"
                || event_type == "m.room.power_levels"
            {
                return Err(Error::new(
                    ErrorKind::InvalidRoomState,
                    format!("{event_type} cannot be set through initial_state."),
                ));
            }
            self.send_initial(
                &room_id,
                creator,
                EventDraft::state(event_type, state_key, content.clone()),
            )
            .await?;
        }
        if let Some(name) = &request.name {
            self.send_initial(
                &room_id,
                creator,
                EventDraft::state("m.room.name", "", json!({ "name": name })),
            )
            .await?;
        }
        if let Some(topic) = &request.topic {
            let content =
                json!({ "topic": topic, "m.topic": [{ "mimetype": "text/plain", "body": topic }] });
            self.send_initial(
                &room_id,
                creator,
                EventDraft::state("m.room.topic", "", content),
            )
            .await?;
        }

        // 8. Invites: local ones here, other servers' users below, without the lock (each
        // goes to the user's server before it is stored).
        let ours = &self.identity.server_name;
        for invitee in request.invite.iter().filter(|i| i.server_name() == ours) {
            let mut content = self.member_content(invitee, "invite", None).await?;
            if request.is_direct
                && let Some(map) = content.as_object_mut()
            {
                map.insert("is_direct".into(), json!(true));
            }
            self.send_locked(
                &room_id,
                creator,
                EventDraft::state("m.room.member", invitee.as_str(), content),
                None,
            )
            .await?;
        }
        drop(_guard);
        for invitee in request.invite.iter().filter(|i| i.server_name() != ours) {
            self.invite_remote(creator, &room_id, invitee, None, request.is_direct)
                .await?;
        }

        if let Some(alias) = alias {
            self.store
                .rooms()
                .create_alias(alias.as_str(), room_id.as_str(), creator.as_str())
                .await?;
        }
        if request.public {
            self.store
                .rooms()
                .set_published(room_id.as_str(), true)
                .await?;
        }
        Ok(room_id)
    }

    /// Sends an event of the creation sequence; errors become `M_INVALID_ROOM_STATE`-style
    /// messages that say which event was refused.
    async fn send_initial(
        &self,
        room_id: &RoomId,
        creator: &UserId,
        draft: EventDraft,
    ) -> Result<OwnedEventId> {
        let label = draft.event_type.clone();
        self.send_locked(room_id, creator, draft, None)
            .await
            .map_err(|e| match e {
                Error::Matrix {
                    kind: ErrorKind::Forbidden,
                    message,
                }
                | Error::Matrix {
                    kind: ErrorKind::BadJson,
                    message,
                } => Error::new(
                    ErrorKind::InvalidRoomState,
                    format!("The initial {label} event is invalid: {message}"),
                ),
                other => other,
            })
    }
}
