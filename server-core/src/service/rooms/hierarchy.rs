//! Spaces: the room hierarchy (spec: client-server-api, "GET /hierarchy";
//! server-server-api.md, "Spaces"). A space lists its children with `m.space.child` state
//! events whose content has a `via`. Rooms this server holds are described from their
//! state; others are asked of the servers a `via` names, over federation.

use std::collections::{HashMap, HashSet, VecDeque};

use ruma::{OwnedRoomId, OwnedServerName, RoomId, ServerName, UserId};
use serde_json::{Value, json};

use super::Rooms;
use crate::error::{Error, Result};

/// Who asks for a room's summary.
#[derive(Clone, Copy)]
enum Requester<'a> {
    /// A local user.
    User(&'a UserId),
    /// Another server (for its users).
    Server(&'a ServerName),
}

/// A child of a space: its room, the servers to reach it through, whether it is suggested.
struct Child {
    room_id: OwnedRoomId,
    via: Vec<OwnedServerName>,
    suggested: bool,
}

/// The deepest a hierarchy walk goes, and the most rooms one walk looks at.
const MAX_DEPTH: usize = 10;
const MAX_ROOMS: usize = 500;

impl Rooms {
    /// The room's `m.space.child` events with a `via`, as (stripped event, child).
    async fn space_children(&self, room_id: &RoomId) -> Result<Vec<(Value, Child)>> {
        let mut children = Vec::new();
        for pdu in self.current_state(room_id).await? {
            if pdu.kind.to_string() != "m.space.child" {
                continue;
            }
            let Some(child) = pdu.state_key.as_deref().and_then(|k| RoomId::parse(k).ok()) else {
                continue;
            };
            let content = pdu.content_value();
            let via: Vec<OwnedServerName> = content["via"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter_map(|s| ServerName::parse(s).ok())
                .collect();
            if via.is_empty() {
                // spec: a child without `via` is not a child.
                continue;
            }
            let suggested = content["suggested"].as_bool().unwrap_or(false);
            let stripped = json!({
                "type": "m.space.child",
                "state_key": child,
                "content": content,
                "sender": pdu.sender,
                "origin_server_ts": pdu.origin_server_ts,
            });
            children.push((
                stripped,
                Child {
                    room_id: child,
                    via,
                    suggested,
                },
            ));
        }
        Ok(children)
    }

    /// Whether `who` may see the room's summary: it is public, knockable or world
    /// readable, or the user (or a user of the server) is in it or invited.
    async fn may_preview(&self, room_id: &RoomId, who: Requester<'_>) -> Result<bool> {
        let summary = self.public_summary(room_id).await?;
        let open = matches!(
            summary["join_rule"].as_str(),
            Some("public" | "knock" | "knock_restricted")
        ) || summary["world_readable"] == true;
        if open {
            return Ok(true);
        }
        Ok(match who {
            Requester::User(user) => self
                .membership(room_id, user)
                .await?
                .is_some_and(|m| matches!(m.membership.as_str(), "join" | "invite")),
            Requester::Server(server) => self
                .store
                .events()
                .joined_servers(room_id.as_str())
                .await?
                .iter()
                .any(|s| s == server.as_str()),
        })
    }

    /// Whether this server holds the room's state (a local user is or was in it).
    async fn holds(&self, room_id: &RoomId) -> Result<bool> {
        Ok(self.version(room_id).await.is_ok() && !self.current_state(room_id).await?.is_empty())
    }

    /// `GET /_matrix/federation/v1/hierarchy/{roomId}`: the space and its children this
    /// server holds, for a server that may see them.
    pub async fn hierarchy_for_server(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        suggested_only: bool,
    ) -> Result<Value> {
        if !self.holds(room_id).await?
            || !self.may_preview(room_id, Requester::Server(server)).await?
        {
            return Err(Error::not_found("That room is not known here."));
        }
        self.ensure_server_allowed(room_id, server).await?;
        let mut room = self.public_summary(room_id).await?;
        let children = self.space_children(room_id).await?;
        room["children_state"] = json!(children.iter().map(|(s, _)| s).collect::<Vec<_>>());
        let mut known = Vec::new();
        let mut inaccessible = Vec::new();
        for (_, child) in children
            .iter()
            .filter(|(_, c)| !suggested_only || c.suggested)
        {
            if !self.holds(&child.room_id).await? {
                continue;
            }
            if self
                .may_preview(&child.room_id, Requester::Server(server))
                .await?
            {
                known.push(self.public_summary(&child.room_id).await?);
            } else {
                inaccessible.push(child.room_id.clone());
            }
        }
        Ok(json!({ "room": room, "children": known, "inaccessible_children": inaccessible }))
    }

    /// `GET /_matrix/client/v1/rooms/{roomId}/hierarchy`: a breadth-first walk of the space,
    /// rooms this server holds described from their state, the others asked of their `via`
    /// servers. `from` is the number of rooms earlier pages had.
    pub async fn hierarchy(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        suggested_only: bool,
        max_depth: Option<usize>,
        limit: usize,
        from: usize,
    ) -> Result<Value> {
        let max_depth = max_depth.unwrap_or(MAX_DEPTH).min(MAX_DEPTH);
        let mut rooms = Vec::new();
        let mut seen: HashSet<OwnedRoomId> = HashSet::new();
        // Summaries that a remote answer carried for its children.
        let mut learned: HashMap<OwnedRoomId, Value> = HashMap::new();
        let mut queue: VecDeque<(OwnedRoomId, Vec<OwnedServerName>, usize)> =
            VecDeque::from([(room_id.to_owned(), Vec::new(), 0)]);
        while let Some((room, via, depth)) = queue.pop_front() {
            if !seen.insert(room.clone()) || seen.len() > MAX_ROOMS {
                continue;
            }
            let (chunk, children) = if self.holds(&room).await? {
                if !self.may_preview(&room, Requester::User(user_id)).await? {
                    if room == room_id {
                        return Err(Error::forbidden("You may not see this space."));
                    }
                    continue;
                }
                let children = self.space_children(&room).await?;
                let mut chunk = self.public_summary(&room).await?;
                chunk["children_state"] =
                    json!(children.iter().map(|(s, _)| s).collect::<Vec<_>>());
                (chunk, children.into_iter().map(|(_, c)| c).collect())
            } else {
                match self
                    .remote_hierarchy(&room, &via, suggested_only, &mut learned)
                    .await
                {
                    Some(found) => found,
                    None if room == room_id => {
                        return Err(Error::not_found(
                            "That space is not known here or to the servers asked.",
                        ));
                    }
                    None => continue,
                }
            };
            rooms.push(chunk);
            if depth < max_depth {
                for child in children {
                    if !suggested_only || child.suggested {
                        queue.push_back((child.room_id, child.via, depth + 1));
                    }
                }
            }
        }
        let page: Vec<Value> = rooms.iter().skip(from).take(limit).cloned().collect();
        let mut answer = json!({ "rooms": page });
        if from + limit < rooms.len() {
            answer["next_batch"] = json!(format!("h{}", from + limit));
        }
        Ok(answer)
    }

    /// A space or room on other servers: its chunk and children, from the first `via`
    /// server that answers (children summaries it sends are kept in `learned` for later).
    async fn remote_hierarchy(
        &self,
        room_id: &RoomId,
        via: &[OwnedServerName],
        suggested_only: bool,
        learned: &mut HashMap<OwnedRoomId, Value>,
    ) -> Option<(Value, Vec<Child>)> {
        for server in via.iter().filter(|s| **s != self.identity.server_name) {
            match self
                .federation
                .hierarchy(server, room_id, suggested_only)
                .await
            {
                Ok(answer) => {
                    for child in answer["children"].as_array().into_iter().flatten() {
                        if let Some(id) = child["room_id"]
                            .as_str()
                            .and_then(|r| RoomId::parse(r).ok())
                        {
                            learned.insert(id, child.clone());
                        }
                    }
                    let room = answer["room"].clone();
                    let children = room["children_state"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|event| {
                            let room_id = RoomId::parse(event["state_key"].as_str()?).ok()?;
                            let via = event["content"]["via"]
                                .as_array()?
                                .iter()
                                .filter_map(Value::as_str)
                                .filter_map(|s| ServerName::parse(s).ok())
                                .collect::<Vec<_>>();
                            (!via.is_empty()).then(|| Child {
                                room_id,
                                via,
                                suggested: event["content"]["suggested"].as_bool().unwrap_or(false),
                            })
                        })
                        .collect();
                    return Some((room, children));
                }
                Err(e) => tracing::info!(%server, %room_id, error = %e, "hierarchy request failed"),
            }
        }
        // A child another server described, though we could not ask about it ourselves.
        learned.remove(room_id).map(|chunk| (chunk, Vec::new()))
    }
}
