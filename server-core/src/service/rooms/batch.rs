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
//!
//! Batches are pipelined: a batch's transaction commits (most of it is the disk flush) while
//! the next batch is built on top of it. The newest batch not yet known to be committed is
//! the room's [`Tail`]; the next one takes its `prev_events`, depth and transaction IDs from
//! it rather than from the database. At most one batch is in flight behind the one being
//! built, transactions commit in order, and a batch whose predecessor failed is not stored
//! (its events would follow events that do not exist). Everything else that writes to a
//! room waits for its tail to be committed ([`Rooms::lock`]).

use std::{
    collections::HashMap,
    sync::atomic::{AtomicU64, Ordering},
};

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use tokio::sync::{oneshot, watch};

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
    /// Tells the sends apart.
    id: u64,
    sender: OwnedUserId,
    draft: EventDraft,
    txn: Option<Txn>,
    reply: oneshot::Sender<Result<OwnedEventId>>,
}

/// Message events waiting, by room.
pub(super) type SendQueues = std::sync::Mutex<HashMap<OwnedRoomId, Vec<PendingSend>>>;

/// A stored client transaction: (user, device, scope, txn id).
type TxnKey = (String, String, String, String);

/// Whether a batch's transaction committed: `None` until it is known.
type Committed = watch::Receiver<Option<Result<()>>>;

/// A room's newest batch whose transaction may not be committed yet.
#[derive(Clone)]
pub(super) struct Tail {
    /// Tells this batch from a later one.
    seq: u64,
    /// Its last event and that event's depth: the next event's `prev_events` and depth.
    last_event: OwnedEventId,
    depth: i64,
    /// The client transactions it stores, with their events.
    txns: HashMap<TxnKey, String>,
    committed: Committed,
}

/// Each room's tail, while it has one.
pub(super) type Tails = std::sync::Mutex<HashMap<OwnedRoomId, Tail>>;

/// Waits until a batch's transaction has committed or failed.
async fn outcome(mut committed: Committed) -> Result<()> {
    match committed.wait_for(Option::is_some).await {
        Ok(done) => done.clone().unwrap_or(Ok(())),
        Err(_) => Err(Error::internal("a batch ended before it was stored")),
    }
}

/// A built batch: each sender's result so far, and the rows to store.
struct Prepared {
    results: Vec<Result<OwnedEventId>>,
    rows: Vec<NewEvent>,
    /// Where the batch ends, and the transactions it stores.
    last: Option<(OwnedEventId, i64)>,
    txns: HashMap<TxnKey, String>,
}

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
        let id = NEXT_SEQ.fetch_add(1, Ordering::Relaxed);
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(room_id.clone())
            .or_default()
            .push(PendingSend {
                id,
                sender,
                draft,
                txn,
                reply,
            });
        // Until our send is taken: whoever holds the lock takes the queue (at most
        // MAX_BATCH at a time), ours included unless an earlier holder took it. Then its
        // answer comes once its batch has committed.
        loop {
            tokio::select! {
                biased;
                done = &mut answer => return done.map_err(|_| dropped())?,
                guard = self.lock_queue(&room_id) => {
                    let batch = self.take_batch(&room_id);
                    let ours = batch.is_empty() || batch.iter().any(|p| p.id == id);
                    if !batch.is_empty() {
                        self.store_batch(&room_id, batch, guard).await;
                    }
                    if ours {
                        break;
                    }
                }
            }
        }
        answer.await.map_err(|_| dropped())?
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

    /// Builds and checks a batch with the room lock held (`guard`), then commits it in a
    /// task of its own, which answers each sender. The lock is given up once the batch
    /// before this one has committed, so the next batch is built while this one commits.
    async fn store_batch(
        &self,
        room_id: &RoomId,
        batch: Vec<PendingSend>,
        guard: tokio::sync::OwnedMutexGuard<()>,
    ) {
        let (requests, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|p| ((p.sender, p.draft, p.txn), p.reply))
            .unzip();
        let tail = self.tail(room_id);
        let previous = tail.as_ref().map(|t| t.committed.clone());
        let prepared = match self.send_many(room_id, requests, tail.as_ref()).await {
            Ok(prepared) => prepared,
            Err(e) => {
                drop(guard);
                let results = replies.iter().map(|_| Err(e.clone())).collect();
                return answer(replies, results);
            }
        };
        let Some((last_event, depth)) = prepared.last else {
            // Nothing new to store. An earlier transaction found in the tail is answered
            // once the tail is durable.
            drop(guard);
            let before = match previous {
                Some(previous) => outcome(previous).await,
                None => Ok(()),
            };
            return answer(replies, failed_with(prepared.results, before));
        };

        let (committed, receiver) = watch::channel(None);
        let seq = NEXT_SEQ.fetch_add(1, Ordering::Relaxed);
        self.tails.lock().unwrap_or_else(|e| e.into_inner()).insert(
            room_id.to_owned(),
            Tail {
                seq,
                last_event,
                depth,
                txns: prepared.txns,
                committed: receiver,
            },
        );
        let (rooms, room) = (self.clone(), room_id.to_owned());
        let (results, rows, before) = (prepared.results, prepared.rows, previous.clone());
        tokio::spawn(async move {
            // In order: only after the batch this one follows.
            let stored = match before {
                Some(before) => outcome(before).await,
                None => Ok(()),
            };
            let stored = match stored {
                Ok(()) => rooms.commit_rows(rows).await,
                Err(e) => Err(e),
            };
            {
                let mut tails = rooms.tails.lock().unwrap_or_else(|e| e.into_inner());
                if tails.get(&room).is_some_and(|t| t.seq == seq) {
                    tails.remove(&room);
                }
            }
            let _ = committed.send(Some(stored.clone()));
            answer(replies, failed_with(results, stored));
        });
        if let Some(previous) = previous {
            let _ = outcome(previous).await;
        }
        drop(guard);
    }

    /// Waits until the room's batches in flight have committed or failed (a failed batch
    /// stored nothing, so the database is as it was before it).
    pub(super) async fn tail_committed(&self, room_id: &RoomId) {
        if let Some(tail) = self.tail(room_id) {
            let _ = outcome(tail.committed).await;
        }
    }

    /// The room's tail, if a batch of it may not be committed yet.
    fn tail(&self, room_id: &RoomId) -> Option<Tail> {
        let mut tails = self.tails.lock().unwrap_or_else(|e| e.into_inner());
        let tail = tails.get(room_id)?;
        if tail.committed.borrow().is_none() && tail.committed.has_changed().is_err() {
            // Its task ended without a word (a panic): nothing of it was stored.
            tails.remove(room_id);
            return None;
        }
        Some(tail.clone())
    }

    /// Stores a batch's events in one transaction, then wakes syncs and the outbox.
    async fn commit_rows(&self, rows: Vec<NewEvent>) -> Result<()> {
        let stored = self.store.events().append_many(rows).await?;
        self.notifier.notify();
        let mut destinations: Vec<String> = stored.into_iter().flat_map(|(_, d)| d).collect();
        destinations.sort();
        destinations.dedup();
        for destination in &destinations {
            self.federation.wake(destination);
        }
        Ok(())
    }

    /// Builds and checks the events of a batch, in order, on the room's head, or on `tail`
    /// when a batch may still be committing. An `Err` of the whole is a failure that
    /// built none of them.
    async fn send_many(
        &self,
        room_id: &RoomId,
        requests: Vec<(OwnedUserId, EventDraft, Option<Txn>)>,
        tail: Option<&Tail>,
    ) -> Result<Prepared> {
        // A retried transaction id may have been stored, may be in the tail, or may appear
        // twice in the batch.
        let keys: Vec<_> = requests
            .iter()
            .filter_map(|(sender, _, txn)| txn_key(sender, txn.as_ref()))
            .collect();
        let (mut head, found) = self.head_and_txns(room_id, keys.clone()).await?;
        let mut earlier: HashMap<_, String> = keys
            .into_iter()
            .zip(found)
            .filter_map(|(key, found)| {
                let found = found.or_else(|| tail.and_then(|t| t.txns.get(&key).cloned()));
                Some((key, found?))
            })
            .collect();
        if let Some(tail) = tail {
            head.prev_events = vec![tail.last_event.clone()];
            head.depth = tail.depth;
        }
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

        let mut prepared = Prepared {
            results: Vec::with_capacity(requests.len()),
            rows: Vec::new(),
            last: None,
            txns: HashMap::new(),
        };
        for ((sender, draft, txn), types) in requests.into_iter().zip(types) {
            let key = txn_key(&sender, txn.as_ref());
            // A stored transaction, or one stored earlier in this batch: its event again.
            if let Some(found) = key.as_ref().and_then(|k| earlier.get(k)) {
                prepared
                    .results
                    .push(ruma::EventId::parse(found.as_str()).map_err(Error::internal));
                continue;
            }
            let built = types.and_then(|types| {
                self.build_checked(room_id, &head, &sender, &draft, &types, &auth_state)
            });
            let built = match built {
                Ok(built) => built,
                Err(e) => {
                    prepared.results.push(Err(e));
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
                earlier.insert(key.clone(), event_id.to_string());
                prepared.txns.insert(key, event_id.to_string());
            }
            prepared.last = Some((event_id.clone(), head.depth));
            prepared.results.push(Ok(event_id));
            let txn = txn.map(|(device, scope, id)| (sender.to_string(), device, scope, id));
            let placement = Placement {
                state_before: StateBefore::Current,
                new_current: NewCurrent::AfterEvent,
                destinations: Vec::new(),
            };
            let mut row = timeline_row(&built.pdu, built.json, notifies, None, txn, placement);
            row.share_with_room = Some(self.identity.server_name.to_string());
            prepared.rows.push(row);
        }
        Ok(prepared)
    }
}

/// Tells each sender its result.
fn answer(replies: Vec<oneshot::Sender<Result<OwnedEventId>>>, results: Vec<Result<OwnedEventId>>) {
    for (reply, result) in replies.into_iter().zip(results) {
        // A sender that went away no longer needs its answer.
        let _ = reply.send(result);
    }
}

/// The results of a batch whose transaction ended with `stored`: when it failed, the
/// events it would have stored (or followed) are not stored either.
fn failed_with(
    results: Vec<Result<OwnedEventId>>,
    stored: Result<()>,
) -> Vec<Result<OwnedEventId>> {
    match stored {
        Ok(()) => results,
        Err(e) => results.into_iter().map(|r| r.and(Err(e.clone()))).collect(),
    }
}

/// Numbers the sends and the batches; a finished batch clears its room's tail only if no
/// later batch has taken its place.
static NEXT_SEQ: AtomicU64 = AtomicU64::new(0);

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
