//! Group commit for message events: sends that wait for the same room are built, checked
//! and stored together.
//!
//! Each room's events are made one at a time under the room's lock, since each one follows
//! the one before. Most of the cost of a send is the room's reads and the disk flush of its
//! transaction, not the event itself. So a send of a message event joins the room's queue,
//! and whichever send holds the lock takes the whole queue: it reads the room once, builds
//! and checks each event in turn (each with the previous as its `prev_events`), decides whom
//! each notifies, and stores them all in one transaction. Every sender is answered once that
//! transaction is committed, so no send is acknowledged before it is durable, and each one
//! still gets its own answer: a refused event is refused alone.
//!
//! Only events that leave the state alone are batched (messages, not state events or
//! redactions), so the state read at the start holds for the whole batch. The rest go
//! through [`Rooms::send`]'s single path under the same lock.

use std::collections::HashMap;

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use tokio::sync::oneshot;

use super::{
    Rooms,
    push::{PushContext, push_keys},
    timeline::{EventDraft, Placement, Txn, auth_keys, auth_types, timeline_row},
};
use crate::{
    error::{Error, Result},
    storage::{NewCurrent, NewEvent, StateBefore},
};

/// The most events one transaction stores; the rest wait for the next turn of the lock.
const MAX_BATCH: usize = 64;

/// A message event waiting for its room's lock.
pub(super) struct PendingSend {
    sender: OwnedUserId,
    draft: EventDraft,
    txn: Option<Txn>,
    reply: oneshot::Sender<Result<OwnedEventId>>,
}

/// Message events waiting, by room.
pub(super) type SendQueues = std::sync::Mutex<HashMap<OwnedRoomId, Vec<PendingSend>>>;

impl Rooms {
    /// Whether a draft may share a transaction with others: it changes no state and
    /// rewrites no other event (a redaction does).
    pub(super) fn batchable(draft: &EventDraft) -> bool {
        draft.state_key.is_none() && draft.event_type != "m.room.redaction"
    }

    /// Sends a message event through the room's queue. Returns once it is stored, or with
    /// its own error.
    ///
    /// The work runs in a task of its own: once queued, a send is stored and answered
    /// even if the request is dropped (the client went away), so no queued send is left
    /// behind for a later one to store, and a batch is never cut short.
    pub(super) async fn send_batched(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        draft: EventDraft,
        txn: Option<Txn>,
    ) -> Result<OwnedEventId> {
        let rooms = self.clone();
        let (room_id, sender) = (room_id.to_owned(), sender.to_owned());
        tokio::spawn(async move { rooms.queue_and_send(room_id, sender, draft, txn).await })
            .await
            .map_err(|e| Error::internal(format!("send task: {e}")))?
    }

    async fn queue_and_send(
        &self,
        room_id: OwnedRoomId,
        sender: OwnedUserId,
        draft: EventDraft,
        txn: Option<Txn>,
    ) -> Result<OwnedEventId> {
        let (reply, mut answer) = oneshot::channel();
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(room_id.clone())
            .or_default()
            .push(PendingSend {
                sender,
                draft,
                txn,
                reply,
            });
        // Until our send is answered: whoever holds the lock stores the queue (at most
        // MAX_BATCH at a time), ours included unless an earlier holder took it.
        loop {
            tokio::select! {
                biased;
                done = &mut answer => return done.map_err(|_| dropped())?,
                _guard = self.lock(&room_id) => {
                    let batch = self.take_batch(&room_id);
                    if !batch.is_empty() {
                        self.store_batch(&room_id, batch).await;
                    }
                }
            }
        }
    }

    fn take_batch(&self, room_id: &RoomId) -> Vec<PendingSend> {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        let Some(queue) = queues.get_mut(room_id) else {
            return Vec::new();
        };
        let rest = queue.split_off(queue.len().min(MAX_BATCH));
        let batch = std::mem::replace(queue, rest);
        if queue.is_empty() {
            queues.remove(room_id);
        }
        batch
    }

    /// Builds, checks and stores a batch with the room lock held, and answers each sender.
    async fn store_batch(&self, room_id: &RoomId, batch: Vec<PendingSend>) {
        let (requests, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|p| ((p.sender, p.draft, p.txn), p.reply))
            .unzip();
        let results = match self.send_many(room_id, requests).await {
            Ok(results) => results,
            Err(e) => replies.iter().map(|_| Err(e.clone())).collect(),
        };
        for (reply, result) in replies.into_iter().zip(results) {
            // A sender that went away no longer needs its answer.
            let _ = reply.send(result);
        }
    }

    /// The events of a batch, in order: each sender's result. An `Err` of the whole is a
    /// failure that stored none of them.
    async fn send_many(
        &self,
        room_id: &RoomId,
        requests: Vec<(OwnedUserId, EventDraft, Option<Txn>)>,
    ) -> Result<Vec<Result<OwnedEventId>>> {
        // A retried transaction id may have been stored, or may appear twice in the batch.
        let keys: Vec<_> = requests
            .iter()
            .filter_map(|(sender, _, txn)| txn_key(sender, txn.as_ref()))
            .collect();
        let (mut head, found) = self.head_and_txns(room_id, keys.clone()).await?;
        let mut earlier: HashMap<_, String> = keys
            .into_iter()
            .zip(found)
            .filter_map(|(key, found)| Some((key, found?)))
            .collect();
        let types: Vec<_> = requests
            .iter()
            .map(|(sender, draft, _)| auth_types(&head.rules, sender, draft))
            .collect();
        // The state every event's auth rules and push evaluation need, in one read.
        let keys: Vec<_> = types
            .iter()
            .filter_map(|t| t.as_ref().ok())
            .flat_map(auth_keys)
            .chain(push_keys(&head, &self.identity.server_name, None))
            .collect();
        let auth_state = self.state_events(&head, keys).await?;
        // Best effort: a failed evaluation costs notifications, never the messages.
        let push = match self.push_context(&head, None, &auth_state).await {
            Ok(push) => push,
            Err(e) => {
                tracing::warn!(room_id = %room_id, error = %e, "push rules not read for a batch");
                PushContext::default()
            }
        };

        let mut results: Vec<Result<OwnedEventId>> = Vec::with_capacity(requests.len());
        let mut rows: Vec<NewEvent> = Vec::new();
        for ((sender, draft, txn), types) in requests.into_iter().zip(types) {
            let key = txn_key(&sender, txn.as_ref());
            // A stored transaction, or one stored earlier in this batch: its event again.
            if let Some(found) = key.as_ref().and_then(|k| earlier.get(k)) {
                results.push(ruma::EventId::parse(found.as_str()).map_err(Error::internal));
                continue;
            }
            let built = types.and_then(|types| {
                self.build_checked(room_id, &head, &sender, &draft, &types, &auth_state)
            });
            let built = match built {
                Ok(built) => built,
                Err(e) => {
                    results.push(Err(e));
                    continue;
                }
            };
            // Best effort: a failed evaluation costs a notification, never the message.
            let notifies = push
                .evaluate(&built.pdu, &built.json)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(event_id = %built.pdu.event_id, error = %e, "push rule evaluation failed");
                    Vec::new()
                });
            let event_id = built.pdu.event_id.clone();
            head.prev_events = vec![event_id.clone()];
            head.depth += 1;
            if let Some(key) = key {
                earlier.insert(key, event_id.to_string());
            }
            results.push(Ok(event_id));
            let txn = txn.map(|(device, scope, id)| (sender.to_string(), device, scope, id));
            let placement = Placement {
                state_before: StateBefore::Current,
                new_current: NewCurrent::AfterEvent,
                destinations: Vec::new(),
            };
            let mut row = timeline_row(&built.pdu, built.json, notifies, None, txn, placement);
            row.share_with_room = Some(self.identity.server_name.to_string());
            rows.push(row);
        }

        if !rows.is_empty() {
            let stored = self.store.events().append_many(rows).await?;
            self.notifier.notify();
            let mut destinations: Vec<String> = stored.into_iter().flat_map(|(_, d)| d).collect();
            destinations.sort();
            destinations.dedup();
            for destination in &destinations {
                self.federation.wake(destination);
            }
        }
        Ok(results)
    }
}

/// The stored key of a client transaction: (user, device, scope, txn id).
fn txn_key(sender: &UserId, txn: Option<&Txn>) -> Option<(String, String, String, String)> {
    txn.map(|(device, scope, id)| {
        (
            sender.to_string(),
            device.clone(),
            scope.clone(),
            id.clone(),
        )
    })
}

fn dropped() -> Error {
    Error::internal("the send was dropped before it was stored")
}
