//! Sending PDUs and EDUs to other servers (spec: server-server-api.md, "Transactions").
//!
//! Everything to send is first a row in the durable outbox (`storage::federation_queue`),
//! written in the same database transaction as whatever caused it, so nothing is lost to
//! an outage or a restart. One task per destination with rows sends them in order, in
//! transactions of at most 50 PDUs and 100 EDUs, and deletes them once the destination
//! answers 200. A failure makes that destination wait, 5 s doubling up to an hour, unless
//! the destination shows it is up again by sending us a request (the catch-up).
//!
//! PDUs that wait a day for a destination (one that may be gone for good) collapse to the
//! newest of each room (housekeeping); when the destination is back, it fetches what it
//! missed from there, as Synapse's catch-up has it do.
//!
//! Typing notices are the exception: they matter for seconds, so they are kept in memory
//! only (the newest per room and user, for at most [`EPHEMERAL_TTL_MS`]) and ride along in
//! the next transaction. A restart or a failed send drops them; the durable rows of a
//! failed transaction are retried as before.

use std::{collections::HashMap, sync::Arc, time::Duration};

use ruma::ServerName;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use super::Federation;
use crate::{
    error::Result,
    storage::{DestinationHealth, OutboxItem, OutboxKind, now_ms},
};

/// A transaction's limits (spec: "Transactions").
const MAX_PDUS: usize = 50;
const MAX_EDUS: usize = 100;
/// The most PDU and EDU bytes one transaction carries, well under the 1 MiB request limit
/// servers commonly set (Kith's `limits.max_request_bytes` default among them).
const MAX_TRANSACTION_BYTES: usize = 512 * 1024;
/// The first wait after a failure, doubled with each further failure up to [`MAX_BACKOFF_MS`].
const FIRST_BACKOFF_MS: i64 = 5_000;
const MAX_BACKOFF_MS: i64 = 60 * 60 * 1000;
/// How long a PDU waits for its destination before only the newest of its room is kept.
pub const STALE_PDU: Duration = Duration::from_secs(24 * 60 * 60);
/// How long an ephemeral EDU waits to be sent before it is stale: a typing notice's
/// default timeout (spec: client-server-api, "Typing Notifications").
const EPHEMERAL_TTL_MS: i64 = 30_000;

/// EDUs that are not worth keeping across a restart (typing), waiting for a destination.
#[derive(Default)]
struct Ephemeral {
    /// (what it replaces, the EDU, when it was queued (ms)), oldest first.
    waiting: Vec<(String, Value, i64)>,
}

impl Ephemeral {
    /// Queues `edu`; an EDU waiting with the same `key` is replaced by it. At most
    /// [`MAX_EDUS`] wait: the oldest go first.
    fn push(&mut self, key: String, edu: Value, now: i64) {
        self.waiting.retain(|(k, _, _)| *k != key);
        self.waiting.push((key, edu, now));
        let excess = self.waiting.len().saturating_sub(MAX_EDUS);
        self.waiting.drain(..excess);
    }

    /// Takes at most `max` EDUs that are not stale, oldest first; the stale ones go.
    fn take(&mut self, max: usize, now: i64) -> Vec<Value> {
        self.waiting
            .retain(|(_, _, queued)| now.saturating_sub(*queued) <= EPHEMERAL_TTL_MS);
        let count = self.waiting.len().min(max);
        self.waiting.drain(..count).map(|(_, edu, _)| edu).collect()
    }
}

/// How long to wait after the `failures`th failure in a row.
fn backoff(failures: u32) -> i64 {
    let doublings = failures.saturating_sub(1).min(20);
    FIRST_BACKOFF_MS
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF_MS)
}

/// The sending tasks: one per destination with rows, and the signal that stops them.
pub(super) struct Senders {
    workers: std::sync::Mutex<HashMap<String, Worker>>,
    stop: watch::Sender<bool>,
    /// Ephemeral EDUs by destination.
    ephemeral: std::sync::Mutex<HashMap<String, Ephemeral>>,
    /// Makes the IDs of transactions that carry only ephemeral EDUs unique.
    ephemeral_transactions: std::sync::atomic::AtomicU64,
}

struct Worker {
    /// Set when rows were queued while the task was running, so it looks again.
    more: bool,
    /// Ends a backoff wait early.
    nudge: Arc<Notify>,
    /// Whether the task is waiting out a backoff (kept here so that every signed request
    /// from the destination can check it without a database read).
    backing_off: bool,
}

impl Default for Senders {
    fn default() -> Self {
        Self {
            workers: std::sync::Mutex::new(HashMap::new()),
            stop: watch::channel(false).0,
            ephemeral: std::sync::Mutex::new(HashMap::new()),
            ephemeral_transactions: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Federation {
    /// Starts sending what the outbox holds (after a restart: the catch-up), also after
    /// [`Federation::stop_sending`].
    pub async fn start_sending(&self) -> Result<()> {
        self.inner.senders.stop.send_replace(false);
        for destination in self
            .inner
            .store
            .federation_queue()
            .waiting_destinations()
            .await?
        {
            self.wake(&destination);
        }
        Ok(())
    }

    /// Stops every sending task; what they had not sent stays queued.
    pub fn stop_sending(&self) {
        // `send_replace` stores the value even while no task listens.
        self.inner.senders.stop.send_replace(true);
        // The tasks end at their next step; forget them, so a later start makes new ones.
        if let Ok(mut workers) = self.inner.senders.workers.lock() {
            workers.clear();
        }
    }

    /// Queues an EDU for `destination`, durably, and wakes its sender.
    pub async fn queue_edu(
        &self,
        destination: &ServerName,
        edu_type: &str,
        content: Value,
    ) -> Result<()> {
        let body = serde_json::to_string(&json!({ "edu_type": edu_type, "content": content }))?;
        self.inner
            .store
            .federation_queue()
            .queue(destination.as_str(), OutboxKind::Edu, body)
            .await?;
        self.wake(destination.as_str());
        Ok(())
    }

    /// Collapses what waits for destinations that have not taken their PDUs for
    /// `older_than` ([`STALE_PDU`] in housekeeping): the newest PDU of each room stays, the
    /// catch-up fetches the rest (see `collapse_old_pdus`). Returns how many PDUs went.
    pub async fn collapse_stale_outbox(&self, older_than: Duration) -> Result<usize> {
        let older_than = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
        self.inner
            .store
            .federation_queue()
            .collapse_old_pdus(now_ms().saturating_sub(older_than))
            .await
    }

    /// Queues an EDU for `destination` in memory only, replacing one queued with the same
    /// `key`, and wakes its sender: for typing notices, which are stale in seconds.
    pub fn queue_ephemeral_edu(
        &self,
        destination: &ServerName,
        edu_type: &str,
        content: Value,
        key: String,
    ) {
        if let Ok(mut ephemeral) = self.inner.senders.ephemeral.lock() {
            ephemeral
                .entry(destination.as_str().to_owned())
                .or_default()
                .push(
                    key,
                    json!({ "edu_type": edu_type, "content": content }),
                    now_ms(),
                );
        }
        self.wake(destination.as_str());
    }

    /// Takes what ephemeral EDUs `destination` has waiting, at most `max`.
    fn take_ephemeral(&self, destination: &str, max: usize) -> Vec<Value> {
        let Ok(mut ephemeral) = self.inner.senders.ephemeral.lock() else {
            return Vec::new();
        };
        let Some(waiting) = ephemeral.get_mut(destination) else {
            return Vec::new();
        };
        let taken = waiting.take(max, now_ms());
        if waiting.waiting.is_empty() {
            ephemeral.remove(destination);
        }
        taken
    }

    /// Makes sure a task sends `destination`'s rows (after they were queued).
    pub fn wake(&self, destination: &str) {
        if *self.inner.senders.stop.borrow() || destination == self.server_name().as_str() {
            return;
        }
        let Ok(mut workers) = self.inner.senders.workers.lock() else {
            return;
        };
        if let Some(worker) = workers.get_mut(destination) {
            worker.more = true;
            worker.nudge.notify_one();
            return;
        }
        let nudge = Arc::new(Notify::new());
        workers.insert(
            destination.to_owned(),
            Worker {
                more: false,
                nudge: nudge.clone(),
                backing_off: false,
            },
        );
        let federation = self.clone();
        let destination = destination.to_owned();
        tokio::spawn(async move { federation.send_loop(destination, nudge).await });
    }

    /// `origin` just sent us a request, so it is up: retry now what waits for it.
    pub async fn heard_from(&self, origin: &ServerName) {
        let backing_off = self
            .inner
            .senders
            .workers
            .lock()
            .ok()
            .and_then(|w| w.get(origin.as_str()).map(|worker| worker.backing_off))
            .unwrap_or(false);
        if backing_off {
            let queue = self.inner.store.federation_queue();
            if let Err(e) = queue.reset_backoff(origin.as_str()).await {
                tracing::warn!(%origin, error = %e, "cannot end a destination's backoff");
            }
            self.wake(origin.as_str());
        }
    }

    /// The answer already given to `origin`'s transaction `txn_id`, if it came before.
    pub async fn answered(&self, origin: &ServerName, txn_id: &str) -> Result<Option<Value>> {
        let answer = self
            .inner
            .store
            .federation_queue()
            .inbound_answer(origin.as_str(), txn_id)
            .await?;
        Ok(answer.and_then(|a| serde_json::from_str(&a).ok()))
    }

    /// Remembers the answer to `origin`'s transaction `txn_id`.
    pub async fn record_answer(
        &self,
        origin: &ServerName,
        txn_id: &str,
        answer: &Value,
    ) -> Result<()> {
        self.inner
            .store
            .federation_queue()
            .record_inbound(origin.as_str(), txn_id, &answer.to_string(), now_ms())
            .await
    }

    /// How sending goes to every destination (for the dashboard's federation health).
    pub async fn destination_health(&self) -> Result<Vec<DestinationHealth>> {
        self.inner.store.federation_queue().health().await
    }

    /// Sends `destination`'s rows until none are left or Kith stops.
    async fn send_loop(&self, destination: String, nudge: Arc<Notify>) {
        let mut stop = self.inner.senders.stop.subscribe();
        let queue = self.inner.store.federation_queue();
        // The batch being sent: retried as it is, under the same transaction ID, until it
        // is accepted (spec: "Transactions": a sender waits for a 200 before sending a
        // transaction with another ID).
        let mut in_flight: Option<Vec<OutboxItem>> = None;
        // After a refusal of a whole batch, one item at a time to find the one refused.
        let mut one_at_a_time = false;
        loop {
            if *stop.borrow() {
                break;
            }
            // Wait out a backoff, unless nudged (the destination showed it is up) or stopped.
            let retry_at = match queue.retry_at(&destination).await {
                Ok(retry_at) => retry_at,
                Err(e) => {
                    tracing::warn!(%destination, error = %e, "federation outbox unreadable");
                    now_ms().saturating_add(FIRST_BACKOFF_MS)
                }
            };
            let wait = retry_at.saturating_sub(now_ms());
            if wait > 0 {
                let wait = Duration::from_millis(u64::try_from(wait).unwrap_or(0));
                self.set_backing_off(&destination, true);
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = nudge.notified() => {}
                    _ = stop.changed() => break,
                }
                self.set_backing_off(&destination, false);
                continue;
            }
            let retrying = in_flight.is_some();
            let batch = match in_flight.take() {
                Some(batch) => batch,
                None => {
                    let (max_pdus, max_edus) = if one_at_a_time {
                        (1, 1)
                    } else {
                        (MAX_PDUS, MAX_EDUS)
                    };
                    match queue.batch(&destination, max_pdus, max_edus).await {
                        Ok(batch) => fit(batch, if one_at_a_time { 1 } else { usize::MAX }),
                        Err(e) => {
                            tracing::warn!(%destination, error = %e, "federation outbox unreadable");
                            tokio::select! {
                                () = tokio::time::sleep(Duration::from_millis(FIRST_BACKOFF_MS.unsigned_abs())) => {}
                                _ = stop.changed() => break,
                            }
                            continue;
                        }
                    }
                }
            };
            // A retried transaction goes out as it was; ephemeral EDUs wait for a new one.
            let ephemeral = if one_at_a_time || retrying {
                Vec::new()
            } else {
                let edus = batch.iter().filter(|i| i.kind == OutboxKind::Edu).count();
                self.take_ephemeral(&destination, MAX_EDUS.saturating_sub(edus))
            };
            if batch.is_empty() && ephemeral.is_empty() {
                // Done, unless rows came in meanwhile (then `more` is set).
                let Ok(mut workers) = self.inner.senders.workers.lock() else {
                    break;
                };
                match workers.get_mut(&destination) {
                    Some(worker) if worker.more => {
                        worker.more = false;
                        continue;
                    }
                    _ => {
                        workers.remove(&destination);
                        break;
                    }
                }
            }
            let ids: Vec<i64> = batch.iter().map(|item| item.id).collect();
            let (mut pdus, mut edus) = (Vec::new(), Vec::new());
            for item in &batch {
                match serde_json::from_str::<Value>(&item.body) {
                    Ok(body) if item.kind == OutboxKind::Pdu => pdus.push(body),
                    Ok(body) => edus.push(body),
                    Err(e) => {
                        tracing::warn!(%destination, error = %e, "unreadable outbox row dropped")
                    }
                }
            }
            let ephemeral_count = ephemeral.len();
            edus.extend(ephemeral);
            // A retry of the durable rows keeps their ID (the ephemeral EDUs are not
            // retried, and a destination that saw the first try answers from its record).
            let txn_id = match (ids.first(), ids.last()) {
                (Some(first), Some(last)) => format!("{first}-{last}"),
                _ => format!(
                    "e{}-{}",
                    now_ms(),
                    self.inner
                        .senders
                        .ephemeral_transactions
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                ),
            };
            let body = json!({
                "origin": self.server_name().as_str(),
                "origin_server_ts": now_ms(),
                "pdus": pdus,
                "edus": edus,
            });
            let outcome = match ServerName::parse(&destination) {
                Ok(server) => {
                    let path = format!("/_matrix/federation/v1/send/{txn_id}");
                    tokio::select! {
                        outcome = self.send_transaction(&server, &path, &body) => outcome,
                        _ = stop.changed() => break,
                    }
                }
                Err(_) => Outcome::Refused("not a server name".to_owned()),
            };
            let recorded = match outcome {
                Outcome::Accepted => {
                    one_at_a_time = false;
                    queue.sent(&destination, ids, now_ms()).await
                }
                // A single item the destination will never take: dropped, so that what
                // follows it is not held up forever.
                Outcome::Refused(why) if batch.len() + ephemeral_count <= 1 => {
                    tracing::warn!(%destination, %why, "a PDU or EDU the destination refuses was dropped");
                    queue.sent(&destination, ids, now_ms()).await
                }
                Outcome::Refused(why) => {
                    tracing::info!(%destination, %why, "transaction refused; sending its items one by one");
                    one_at_a_time = true;
                    Ok(())
                }
                Outcome::Failed(why) => {
                    tracing::info!(%destination, %why, "federation transaction failed; will retry");
                    in_flight = (!batch.is_empty()).then_some(batch);
                    queue
                        .failed(&destination, &why, now_ms(), backoff)
                        .await
                        .map(|_| ())
                }
            };
            if let Err(e) = recorded {
                tracing::warn!(%destination, error = %e, "cannot record a federation send");
                tokio::time::sleep(Duration::from_millis(FIRST_BACKOFF_MS.unsigned_abs())).await;
            }
        }
    }

    fn set_backing_off(&self, destination: &str, backing_off: bool) {
        if let Ok(mut workers) = self.inner.senders.workers.lock()
            && let Some(worker) = workers.get_mut(destination)
        {
            worker.backing_off = backing_off;
        }
    }

    /// Sends one transaction and says how it went.
    async fn send_transaction(&self, server: &ServerName, path: &str, body: &Value) -> Outcome {
        match self
            .request(server, reqwest::Method::PUT, path, &[], Some(body), true)
            .await
        {
            Ok(_) => Outcome::Accepted,
            Err(e) => {
                let why = e.to_string();
                // A 400 or 413 says the transaction itself is wrong: sending it again
                // cannot help. Anything else (unreachable, 5xx, 401 while keys are
                // fetched, 429) may pass later.
                if why.contains("with HTTP 400") || why.contains("with HTTP 413") {
                    Outcome::Refused(why)
                } else {
                    Outcome::Failed(why)
                }
            }
        }
    }
}

/// How sending a transaction went.
enum Outcome {
    Accepted,
    /// Refused as malformed or too large (400, 413).
    Refused(String),
    /// Not delivered, for a reason that may pass.
    Failed(String),
}

/// The first items of `batch` whose bodies fit in [`MAX_TRANSACTION_BYTES`] (always at
/// least one), and at most `max_items`.
fn fit(batch: Vec<OutboxItem>, max_items: usize) -> Vec<OutboxItem> {
    let mut size = 0;
    let mut fitted = Vec::new();
    for item in batch {
        size += item.body.len();
        if !fitted.is_empty() && (size > MAX_TRANSACTION_BYTES || fitted.len() == max_items) {
            break;
        }
        fitted.push(item);
    }
    fitted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: i64, bytes: usize) -> OutboxItem {
        OutboxItem {
            id,
            kind: OutboxKind::Edu,
            body: "x".repeat(bytes),
        }
    }

    #[test]
    fn batches_stay_under_the_byte_budget_but_always_carry_one_item() {
        let ids = |batch: Vec<OutboxItem>| batch.iter().map(|i| i.id).collect::<Vec<_>>();
        let small = vec![item(1, 100), item(2, 100), item(3, 100)];
        assert_eq!(ids(fit(small.clone(), usize::MAX)), [1, 2, 3]);
        assert_eq!(ids(fit(small, 1)), [1]);
        let big = vec![item(1, 300 * 1024), item(2, 300 * 1024), item(3, 10)];
        assert_eq!(ids(fit(big, usize::MAX)), [1]);
        let huge = vec![item(1, 2 * 1024 * 1024), item(2, 10)];
        assert_eq!(ids(fit(huge, usize::MAX)), [1]);
        assert!(fit(Vec::new(), usize::MAX).is_empty());
    }

    #[test]
    fn ephemeral_edus_keep_the_newest_per_key_and_go_stale() {
        let mut waiting = Ephemeral::default();
        waiting.push("a".to_owned(), json!(1), 0);
        waiting.push("b".to_owned(), json!(2), 0);
        waiting.push("a".to_owned(), json!(3), 1_000);
        assert_eq!(waiting.take(1, 1_000), [json!(2)]);
        assert_eq!(waiting.take(10, 1_000), [json!(3)]);
        assert!(waiting.take(10, 1_000).is_empty());
        waiting.push("old".to_owned(), json!(4), 0);
        waiting.push("new".to_owned(), json!(5), 20_000);
        assert_eq!(waiting.take(10, EPHEMERAL_TTL_MS + 1), [json!(5)]);
        for i in 0..(MAX_EDUS + 5) {
            waiting.push(i.to_string(), json!(i), 0);
        }
        let kept = waiting.take(usize::MAX, 0);
        assert_eq!(kept.len(), MAX_EDUS);
        assert_eq!(kept[0], json!(5), "the oldest went first");
    }

    #[test]
    fn backoff_doubles_from_five_seconds_to_an_hour() {
        let waits: Vec<i64> = [1, 2, 3, 4, 10, 11, 50, u32::MAX]
            .into_iter()
            .map(backoff)
            .collect();
        assert_eq!(
            waits,
            [
                5_000, 10_000, 20_000, 40_000, 2_560_000, 3_600_000, 3_600_000, 3_600_000
            ]
        );
    }
}
