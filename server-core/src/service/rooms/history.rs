//! A room's graph as other servers ask for it (spec: server-server-api.md, "Retrieving
//! missing events", "Backfilling and retrieving missing events", "Retrieving events"):
//! `/get_missing_events`, `/backfill`, `/state_ids`, `/state` and `/event_auth`.
//!
//! Every answer is for a server that may see the room's history at that point
//! ([`Rooms::server_may_see`]); events it may not see are left out, and asking about an
//! event it may not see is `M_NOT_FOUND`, as for an event unknown here.

use std::collections::{HashSet, VecDeque};

use ruma::{
    EventId, OwnedEventId, RoomId, ServerName, events::room::server_acl::RoomServerAclEventContent,
};
use serde_json::Value;

use super::Rooms;
use crate::{
    error::{Error, Result},
    pdu::Pdu,
    storage::StateIds,
};

/// The most events one request is answered with.
const MAX_EVENTS: usize = 100;

impl Rooms {
    /// Whether the room's server ACL, if it has one, lets `server` take part (spec:
    /// server-server-api.md, "Server Access Control Lists (ACLs)"; ruma matches the globs
    /// against the host without its port). An ACL whose content does not parse denies no
    /// one.
    pub async fn server_allowed(&self, room_id: &RoomId, server: &ServerName) -> Result<bool> {
        let Some(acl) = self.state_event(room_id, "m.room.server_acl", "").await? else {
            return Ok(true);
        };
        Ok(
            match serde_json::from_str::<RoomServerAclEventContent>(acl.content.get()) {
                Ok(acl) => acl.is_allowed(server),
                Err(_) => true,
            },
        )
    }

    /// `M_FORBIDDEN` when the room's server ACL denies `server`.
    pub async fn ensure_server_allowed(&self, room_id: &RoomId, server: &ServerName) -> Result<()> {
        if self.server_allowed(room_id, server).await? {
            Ok(())
        } else {
            Err(Error::forbidden(format!(
                "{server} is denied by this room's server ACL."
            )))
        }
    }

    /// `POST /get_missing_events/{roomId}`: events before `latest` back to (not including)
    /// `earliest`, at most `limit` (10 by default), with depth at least `min_depth`, oldest
    /// first.
    pub async fn missing_events_for_server(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        earliest: &[OwnedEventId],
        latest: &[OwnedEventId],
        limit: usize,
        min_depth: u64,
    ) -> Result<Vec<Value>> {
        self.ensure_server_allowed(room_id, server).await?;
        let stop: HashSet<&OwnedEventId> = earliest.iter().collect();
        let mut seen: HashSet<OwnedEventId> = latest.iter().cloned().collect();
        let mut queue: VecDeque<OwnedEventId> = VecDeque::new();
        for pdu in self.graph_pdus(latest).await? {
            if pdu.in_room != room_id {
                continue;
            }
            queue.extend(pdu.prev_events.iter().cloned());
        }
        let mut found: Vec<Pdu> = Vec::new();
        while let Some(id) = queue.pop_front() {
            if found.len() >= limit.min(MAX_EVENTS) {
                break;
            }
            if stop.contains(&id) || !seen.insert(id.clone()) {
                continue;
            }
            let Some(pdu) = self.graph_pdus(&[id]).await?.pop() else {
                continue;
            };
            if pdu.in_room != room_id || u64::from(pdu.depth) < min_depth {
                continue;
            }
            queue.extend(pdu.prev_events.iter().cloned());
            found.push(pdu);
        }
        found.sort_by_key(|p| p.depth);
        self.visible_json(server, room_id, found).await
    }

    /// `GET /backfill/{roomId}?v=...&limit=`: the events `from` and those before them,
    /// newest first by depth, at most `limit`.
    pub async fn backfill_for_server(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        from: &[OwnedEventId],
        limit: usize,
    ) -> Result<Vec<Value>> {
        self.ensure_server_allowed(room_id, server).await?;
        let mut seen: HashSet<OwnedEventId> = HashSet::new();
        let mut queue: VecDeque<OwnedEventId> = from.iter().cloned().collect();
        let mut found: Vec<Pdu> = Vec::new();
        while let Some(id) = queue.pop_front() {
            if found.len() >= limit.min(MAX_EVENTS) {
                break;
            }
            if !seen.insert(id.clone()) {
                continue;
            }
            let Some(pdu) = self.graph_pdus(&[id]).await?.pop() else {
                continue;
            };
            if pdu.in_room != room_id {
                continue;
            }
            queue.extend(pdu.prev_events.iter().cloned());
            found.push(pdu);
        }
        found.sort_by_key(|p| std::cmp::Reverse(p.depth));
        self.visible_json(server, room_id, found).await
    }

    /// `GET /state_ids/{roomId}?event_id=` and `/state`: the room's state before the event
    /// (the resolved state after its prev events) and that state's auth chain, as IDs.
    pub async fn state_before_for_server(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<(Vec<OwnedEventId>, Vec<OwnedEventId>)> {
        let pdu = self.visible_pdu(server, room_id, event_id).await?;
        let (_, rules) = self.version(room_id).await?;
        let prev: Vec<String> = pdu.prev_events.iter().map(ToString::to_string).collect();
        let states = self.store.state().after_events(prev).await?;
        let state: StateIds = if !states.is_empty() && states.iter().all(Option::is_some) {
            self.resolve(&rules, states.into_iter().flatten().collect())
                .await?
        } else if pdu.state_key.is_none()
            && let Some(Some(after)) = self
                .store
                .state()
                .after_events(vec![event_id.to_string()])
                .await?
                .pop()
        {
            // Known without its prev events (the first event after a gap or a remote
            // join): a message event's state before is its state after.
            after
        } else {
            return Err(Error::not_found(
                "The state before that event is not known here.",
            ));
        };
        let state_ids: Vec<OwnedEventId> = state
            .values()
            .filter_map(|id| EventId::parse(id).ok())
            .collect();
        let chain = self.auth_chain_ids(&state_ids).await?;
        Ok((state_ids, chain))
    }

    /// `GET /event_auth/{roomId}/{eventId}`: the event's auth chain.
    pub async fn event_auth_for_server(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<Vec<Value>> {
        self.visible_pdu(server, room_id, event_id).await?;
        let chain = self.auth_chain_ids(&[event_id.to_owned()]).await?;
        self.pdu_json(&chain).await
    }

    /// The PDU JSON of events, as stored (unknown ones skipped).
    pub async fn pdu_json(&self, ids: &[OwnedEventId]) -> Result<Vec<Value>> {
        Ok(self
            .store
            .events()
            .graph_events(ids.iter().map(ToString::to_string).collect())
            .await?
            .into_iter()
            .filter_map(|(_, _, json)| serde_json::from_str(&json).ok())
            .collect())
    }

    /// The auth chains of `ids` (not including them), as far as they are stored.
    async fn auth_chain_ids(&self, ids: &[OwnedEventId]) -> Result<Vec<OwnedEventId>> {
        let events = self.with_auth_chains(ids).await?;
        let mut chain: HashSet<&OwnedEventId> = HashSet::new();
        let mut stack: Vec<&OwnedEventId> = ids
            .iter()
            .filter_map(|id| events.get(id))
            .flat_map(|p| p.auth_events.iter())
            .collect();
        while let Some(id) = stack.pop() {
            if chain.insert(id)
                && let Some(pdu) = events.get(id)
            {
                stack.extend(pdu.auth_events.iter());
            }
        }
        Ok(chain.into_iter().cloned().collect())
    }

    /// An event of the room that `server` may see; `M_NOT_FOUND` otherwise.
    async fn visible_pdu(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<Pdu> {
        self.ensure_server_allowed(room_id, server).await?;
        let not_found = || Error::not_found("That event is not known here.");
        let pdu = self
            .graph_pdus(&[event_id.to_owned()])
            .await?
            .pop()
            .ok_or_else(not_found)?;
        if pdu.in_room != room_id || !self.server_may_see(server, room_id, event_id).await? {
            return Err(not_found());
        }
        Ok(pdu)
    }

    /// The JSON of the events `server` may see, in the order given.
    async fn visible_json(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        pdus: Vec<Pdu>,
    ) -> Result<Vec<Value>> {
        let mut visible = Vec::with_capacity(pdus.len());
        for pdu in pdus {
            if self.server_may_see(server, room_id, &pdu.event_id).await? {
                visible.push(pdu.event_id);
            }
        }
        let mut json = Vec::with_capacity(visible.len());
        for id in visible {
            json.extend(self.pdu_json(&[id]).await?);
        }
        Ok(json)
    }
}
