//! Room aliases and the public room directory (spec: client-server-api/_index.md,
//! "Room aliases", "Listing rooms").

use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedServerName, RoomAliasId, RoomId, UserId};
use serde_json::{Value, json};

use super::Rooms;
use crate::error::{Error, ErrorKind, Result};

/// One page of the public room directory.
#[derive(Debug, Clone)]
pub struct PublicRoomsPage {
    /// The rooms, as the spec's `PublishedRoomsChunk` objects.
    pub chunk: Vec<Value>,
    /// The token for the next page, if there are more rooms.
    pub next_batch: Option<String>,
    /// How many rooms are published in all.
    pub total: u64,
}

/// What a directory listing is narrowed to (spec: `POST /publicRooms`, `filter`).
#[derive(Debug, Clone, Default)]
pub struct DirectoryFilter {
    /// Words to find in the room's name, topic or canonical alias (case-insensitive).
    pub term: Option<String>,
    /// Only rooms of these types; `None` in the list stands for rooms without a type.
    /// `None` (no list): rooms of every type.
    pub room_types: Option<Vec<Option<String>>>,
}

impl Rooms {
    /// `#local:our.server`, or `M_INVALID_PARAM` when that is not a valid alias.
    pub(super) fn alias_from_localpart(&self, localpart: &str) -> Result<OwnedRoomAliasId> {
        RoomAliasId::parse(format!("#{localpart}:{}", self.identity.server_name))
            .map_err(|_| Error::invalid_param("That is not a valid room alias name."))
    }

    fn ensure_local_alias(&self, alias: &RoomAliasId) -> Result<()> {
        if alias.server_name() == self.identity.server_name {
            Ok(())
        } else {
            Err(Error::invalid_param(
                "Aliases can only be created on this server's domain.",
            ))
        }
    }

    /// Points a new alias at a room the user is in.
    pub async fn create_alias(
        &self,
        user_id: &UserId,
        alias: &RoomAliasId,
        room_id: &RoomId,
    ) -> Result<()> {
        self.ensure_local_alias(alias)?;
        self.version(room_id).await?;
        self.ensure_joined(user_id, room_id).await?;
        if !self
            .store
            .rooms()
            .create_alias(alias.as_str(), room_id.as_str(), user_id.as_str())
            .await?
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                "That room alias already exists.",
            ));
        }
        Ok(())
    }

    /// The room an alias points at and the servers to join it through.
    pub async fn resolve_alias(
        &self,
        alias: &RoomAliasId,
    ) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
        let (room_id, _) = self
            .store
            .rooms()
            .alias(alias.as_str())
            .await?
            .ok_or_else(|| Error::not_found(format!("Room alias {alias} not found.")))?;
        let room_id = RoomId::parse(room_id).map_err(Error::internal)?;
        Ok((room_id, vec![self.identity.server_name.clone()]))
    }

    /// Deletes an alias; only its creator, a server admin, or a room member with power to
    /// change the canonical alias may (spec: "DELETE /directory/room/{roomAlias}").
    pub async fn delete_alias(
        &self,
        user_id: &UserId,
        admin: bool,
        alias: &RoomAliasId,
    ) -> Result<()> {
        let (room_id, creator) = self
            .store
            .rooms()
            .alias(alias.as_str())
            .await?
            .ok_or_else(|| Error::not_found(format!("Room alias {alias} not found.")))?;
        let room_id = RoomId::parse(room_id).map_err(Error::internal)?;
        let allowed = admin
            || creator == user_id.as_str()
            || self
                .may_send_state(&room_id, user_id, "m.room.canonical_alias")
                .await?;
        if !allowed {
            return Err(Error::forbidden(
                "Only the alias's creator or a room moderator can delete it.",
            ));
        }
        self.store.rooms().delete_alias(alias.as_str()).await?;
        Ok(())
    }

    /// The local aliases of a room; the user must be in it.
    pub async fn aliases(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> Result<Vec<OwnedRoomAliasId>> {
        self.version(room_id).await?;
        self.ensure_joined(user_id, room_id).await?;
        Ok(self
            .store
            .rooms()
            .aliases_of(room_id.as_str())
            .await?
            .into_iter()
            .filter_map(|a| RoomAliasId::parse(a).ok())
            .collect())
    }

    /// Whether a room is published in the directory.
    pub async fn is_published(&self, room_id: &RoomId) -> Result<bool> {
        self.store
            .rooms()
            .is_published(room_id.as_str())
            .await?
            .ok_or_else(|| Error::not_found("Unknown room."))
    }

    /// Publishes or unpublishes a room; needs power to change the canonical alias.
    pub async fn set_published(
        &self,
        user_id: &UserId,
        admin: bool,
        room_id: &RoomId,
        published: bool,
    ) -> Result<()> {
        self.version(room_id).await?;
        if !admin
            && !self
                .may_send_state(room_id, user_id, "m.room.canonical_alias")
                .await?
        {
            return Err(Error::forbidden(
                "You need moderator power in the room to change its directory listing.",
            ));
        }
        self.store
            .rooms()
            .set_published(room_id.as_str(), published)
            .await?;
        Ok(())
    }

    /// A page of the public directory, filtered by a search term on name, topic and alias
    /// and by room type.
    pub async fn public_rooms(
        &self,
        limit: Option<u32>,
        since: Option<&str>,
        filter: &DirectoryFilter,
    ) -> Result<PublicRoomsPage> {
        let limit = limit.unwrap_or(100).clamp(1, 500);
        let mut after: i64 = match since {
            Some(token) => token
                .parse()
                .map_err(|_| Error::invalid_param("Invalid pagination token."))?,
            None => 0,
        };
        let term = filter
            .term
            .as_deref()
            .map(str::to_lowercase)
            .filter(|t| !t.is_empty());
        let mut chunk = Vec::new();
        let mut total = 0u64;
        let mut last_in_chunk = None;
        // Walk the published rooms in listing order; the filter runs on summaries.
        loop {
            let rooms = self.store.rooms().published(after, 200).await?;
            let Some(last) = rooms.last() else { break };
            after = last.rowid;
            for room in rooms {
                let Ok(room_id) = RoomId::parse(&room.room_id) else {
                    continue;
                };
                let summary = self.public_summary(&room_id).await?;
                if let Some(types) = &filter.room_types {
                    let room_type = summary.get("room_type").and_then(Value::as_str);
                    if !types.iter().any(|t| t.as_deref() == room_type) {
                        continue;
                    }
                }
                if let Some(term) = &term {
                    let haystack = ["name", "topic", "canonical_alias"]
                        .iter()
                        .filter_map(|k| summary.get(*k).and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join(" ")
                        .to_lowercase();
                    if !haystack.contains(term.as_str()) {
                        continue;
                    }
                }
                total += 1;
                if chunk.len() < limit as usize {
                    chunk.push(summary);
                    last_in_chunk = Some(room.rowid);
                }
            }
        }
        // More rooms matched than fit on this page: the next page starts after its last one.
        let next_batch = (total > chunk.len() as u64)
            .then(|| last_in_chunk.map(|r| r.to_string()))
            .flatten();
        Ok(PublicRoomsPage {
            chunk,
            next_batch,
            total,
        })
    }

    /// The directory entry for a room, from its current state.
    pub async fn public_summary(&self, room_id: &RoomId) -> Result<Value> {
        let state = self.current_state(room_id).await?;
        let get = |event_type: &str, key: &str| {
            state
                .iter()
                .find(|p| p.kind.to_string() == event_type && p.state_key.as_deref() == Some(""))
                .and_then(|p| p.content_value().get(key).cloned())
        };
        let joined = state
            .iter()
            .filter(|p| p.kind.to_string() == "m.room.member")
            .filter(|p| p.content_value().get("membership").and_then(Value::as_str) == Some("join"))
            .count();
        let mut summary = json!({
            "room_id": room_id,
            "num_joined_members": joined,
            "world_readable": get("m.room.history_visibility", "history_visibility").and_then(|v| v.as_str().map(|s| s == "world_readable")).unwrap_or(false),
            "guest_can_join": get("m.room.guest_access", "guest_access").and_then(|v| v.as_str().map(|s| s == "can_join")).unwrap_or(false),
            "join_rule": get("m.room.join_rules", "join_rule").unwrap_or(json!("invite")),
        });
        if let Some(map) = summary.as_object_mut() {
            for (event_type, key, field) in [
                ("m.room.name", "name", "name"),
                ("m.room.topic", "topic", "topic"),
                ("m.room.canonical_alias", "alias", "canonical_alias"),
                ("m.room.avatar", "url", "avatar_url"),
                ("m.room.create", "type", "room_type"),
            ] {
                if let Some(value) = get(event_type, key).filter(|v| !v.is_null()) {
                    map.insert(field.into(), value);
                }
            }
        }
        Ok(summary)
    }
}
