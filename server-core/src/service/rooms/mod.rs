//! Rooms: creation, membership, the timeline, state, aliases and the public directory.
//!
//! Every local event goes through [`Rooms::send`] (timeline.rs): it is built against the
//! room's current state, signed, checked with ruma's auth rules for the room version, and
//! stored in one transaction. A per-room lock makes build-check-store atomic for each room,
//! so two concurrent sends never pick the same `prev_events` or race a membership change.
//! Message events waiting for the lock are stored together, one transaction for all of
//! them (batch.rs).

mod batch;
mod create;
mod directory;
mod hierarchy;
mod history;
mod inbound;
mod invites;
mod join_remote;
mod joins;
mod membership;
mod push;
mod read;
mod restricted;
mod timeline;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use ruma::{OwnedRoomId, RoomId, RoomVersionId, UserId, room_version_rules::RoomVersionRules};

pub use self::{
    create::CreateRoom,
    directory::DirectoryFilter,
    inbound::{Incoming, Outcome},
    join_remote::SUPPORTED_VERSIONS as FEDERATED_ROOM_VERSIONS,
    read::{Direction, EventFilter, Page},
    timeline::EventDraft,
};
use super::{ServerIdentity, account::Account, federation::Federation, notifier::Notifier};
use crate::{
    config::Config,
    error::{Error, Result},
    pdu::Pdu,
    storage::{Membership, Store, StoredEvent},
};

/// The rooms service. Cheap to clone.
#[derive(Clone)]
pub struct Rooms {
    config: Arc<Config>,
    identity: Arc<ServerIdentity>,
    store: Store,
    notifier: Notifier,
    /// Push rules, to decide whom each new event notifies.
    account: Account,
    /// Other servers in the room: events go out through its outbox, and come in checked
    /// with its keys.
    federation: Federation,
    locks: Arc<Mutex<HashMap<OwnedRoomId, Arc<tokio::sync::Mutex<()>>>>>,
    /// Message events waiting for their room's lock (batch.rs).
    queues: Arc<batch::SendQueues>,
    /// Current state events that new events were checked against (timeline.rs).
    state_cache: Arc<timeline::StateCache>,
    /// Each room's newest batch of messages that may still be committing (batch.rs).
    tails: Arc<batch::Tails>,
}

impl Rooms {
    /// Builds the service.
    pub fn new(
        config: Arc<Config>,
        identity: Arc<ServerIdentity>,
        store: Store,
        notifier: Notifier,
        account: Account,
        federation: Federation,
    ) -> Self {
        Self {
            config,
            identity,
            store,
            notifier,
            account,
            federation,
            locks: Arc::default(),
            queues: Arc::default(),
            state_cache: Arc::default(),
            tails: Arc::default(),
        }
    }

    /// The room's lock, for a write that reads the room from the database: once it is
    /// held, the room's batches of messages in flight have committed (or failed).
    async fn lock(&self, room_id: &RoomId) -> tokio::sync::OwnedMutexGuard<()> {
        let guard = self.lock_queue(room_id).await;
        self.tail_committed(room_id).await;
        guard
    }

    /// The room's lock alone, for the batch that builds on the room's tail (batch.rs).
    async fn lock_queue(&self, room_id: &RoomId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(room_id.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// The room's version and its rules; `M_NOT_FOUND` for an unknown room.
    pub async fn version(&self, room_id: &RoomId) -> Result<(RoomVersionId, RoomVersionRules)> {
        let version = self
            .store
            .rooms()
            .version(room_id.as_str())
            .await?
            .ok_or_else(unknown_room)?;
        version_rules(&version)
    }

    /// Counts rooms known to the server.
    pub async fn count(&self) -> Result<u64> {
        self.store.rooms().count().await
    }

    /// The user's membership in the room (`None` if they never had one).
    pub async fn membership(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Option<Membership>> {
        self.store
            .events()
            .membership(room_id.as_str(), user_id.as_str())
            .await
    }

    /// `M_FORBIDDEN` unless the user is joined to the room.
    pub async fn ensure_joined(&self, user_id: &UserId, room_id: &RoomId) -> Result<()> {
        match self.membership(room_id, user_id).await? {
            Some(m) if m.membership == "join" => Ok(()),
            _ => Err(Error::forbidden("You are not in this room.")),
        }
    }

    /// The user's rooms with their current membership (forgotten rooms left out).
    pub async fn memberships_of(&self, user_id: &UserId) -> Result<Vec<Membership>> {
        self.store
            .events()
            .memberships_of_user(user_id.as_str())
            .await
    }

    /// The room's membership rows.
    pub async fn members(&self, room_id: &RoomId) -> Result<Vec<Membership>> {
        self.store.events().members(room_id.as_str()).await
    }

    /// The rooms the user is joined to.
    pub async fn joined_rooms(&self, user_id: &UserId) -> Result<Vec<OwnedRoomId>> {
        Ok(self
            .memberships_of(user_id)
            .await?
            .into_iter()
            .filter(|m| m.membership == "join")
            .filter_map(|m| RoomId::parse(m.room_id).ok())
            .collect())
    }

    /// Parses a stored event into a PDU.
    pub(crate) fn parse(&self, stored: &StoredEvent) -> Result<Pdu> {
        let event_id = ruma::EventId::parse(&stored.event_id).map_err(Error::internal)?;
        let room_id = RoomId::parse(&stored.room_id).map_err(Error::internal)?;
        Pdu::from_stored(event_id, &room_id, &stored.json).map_err(Error::internal)
    }

    /// Loads and parses events of the room graph by ID, from the timeline or the outliers
    /// (unknown ones skipped).
    pub(crate) async fn pdus(&self, event_ids: Vec<String>) -> Result<Vec<Pdu>> {
        self.store
            .events()
            .graph_events(event_ids)
            .await?
            .into_iter()
            .map(|(id, room, json)| {
                let id = ruma::EventId::parse(id).map_err(Error::internal)?;
                let room = RoomId::parse(room).map_err(Error::internal)?;
                Pdu::from_stored(id, &room, &json).map_err(Error::internal)
            })
            .collect()
    }

    /// The current state event for (type, state_key), if set.
    pub async fn state_event(
        &self,
        room_id: &RoomId,
        event_type: &str,
        state_key: &str,
    ) -> Result<Option<Pdu>> {
        let Some(event_id) = self
            .store
            .events()
            .state_event_id(room_id.as_str(), event_type, state_key)
            .await?
        else {
            return Ok(None);
        };
        Ok(self.pdus(vec![event_id]).await?.pop())
    }

    /// The whole current state of the room.
    pub async fn current_state(&self, room_id: &RoomId) -> Result<Vec<Pdu>> {
        let ids = self
            .store
            .events()
            .current_state(room_id.as_str())
            .await?
            .into_iter()
            .map(|(_, _, id, _)| id)
            .collect();
        self.pdus(ids).await
    }
}

/// `M_NOT_FOUND` for a room this server has never had.
fn unknown_room() -> Error {
    Error::not_found("This server does not know that room.")
}

/// A stored room version and its rules.
fn version_rules(version: &str) -> Result<(RoomVersionId, RoomVersionRules)> {
    let version = RoomVersionId::try_from(version).map_err(Error::internal)?;
    let rules = version
        .rules()
        .ok_or_else(|| Error::internal(format!("no rules for room version {version}")))?;
    Ok((version, rules))
}
