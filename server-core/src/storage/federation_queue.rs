//! The federation outbox, each destination's sending health, and the inbound transactions
//! already answered.

use rusqlite::{OptionalExtension, Transaction, params};

use super::Store;
use crate::error::Result;

/// How long an inbound transaction's answer is kept.
const INBOUND_TXN_KEEP_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// What an outbox row carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxKind {
    /// A persistent data unit (a room event).
    Pdu,
    /// An ephemeral data unit (typing, receipts, to-device, ...).
    Edu,
}

impl OutboxKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pdu => "pdu",
            Self::Edu => "edu",
        }
    }
}

/// One queued PDU or EDU.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    /// Its row id: items go out in this order.
    pub id: i64,
    /// PDU or EDU.
    pub kind: OutboxKind,
    /// The JSON to send.
    pub body: String,
}

/// How sending to one destination goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationHealth {
    /// The server name.
    pub destination: String,
    /// When a transaction was last accepted (ms).
    pub last_success_ts: Option<i64>,
    /// When one last failed (ms).
    pub last_failure_ts: Option<i64>,
    /// Why it last failed.
    pub last_error: Option<String>,
    /// Failures since the last success.
    pub failures: u32,
    /// Not before this time (ms) is the next attempt made.
    pub retry_at_ts: i64,
    /// PDUs and EDUs waiting.
    pub queued: u64,
}

/// Queues `body` for `destination` inside a write transaction that also does other work
/// (a to-device send, an event), so both commit together.
pub(crate) fn queue_in(
    txn: &Transaction<'_>,
    destination: &str,
    kind: OutboxKind,
    body: &str,
    now: i64,
) -> rusqlite::Result<()> {
    super::exec(
        txn,
        "INSERT INTO federation_outbox (destination, kind, body, queued_ts) VALUES (?1, ?2, ?3, ?4)",
        params![destination, kind.as_str(), body, now],
    )?;
    Ok(())
}

/// The outbox and destinations.
pub struct FederationQueueStore<'a> {
    pub(super) store: &'a Store,
}

impl FederationQueueStore<'_> {
    /// Queues one PDU or EDU for `destination`.
    pub async fn queue(&self, destination: &str, kind: OutboxKind, body: String) -> Result<()> {
        let destination = destination.to_owned();
        self.store
            .write(move |txn| {
                queue_in(txn, &destination, kind, &body, super::now_ms())?;
                Ok(())
            })
            .await
    }

    /// For a destination that has not taken its PDUs since before `before_ms`: drops those
    /// old PDUs except the newest one of each room. When it is back, that PDU makes it ask
    /// for the ones before (`get_missing_events`, then the state at the gap), as Synapse's
    /// catch-up does, so a server that is gone for good does not grow the outbox forever.
    /// EDUs (to-device messages among them) are all kept. Returns how many went.
    pub async fn collapse_old_pdus(&self, before_ms: i64) -> Result<usize> {
        self.store
            .write(move |txn| {
                Ok(txn.execute(
                    "DELETE FROM federation_outbox WHERE kind = 'pdu' AND queued_ts < ?1 \
                     AND id NOT IN (SELECT MAX(id) FROM federation_outbox WHERE kind = 'pdu' \
                      GROUP BY destination, json_extract(body, '$.room_id'))",
                    [before_ms],
                )?)
            })
            .await
    }

    /// When the next attempt for `destination` may be made (ms; 0 for now).
    pub async fn retry_at(&self, destination: &str) -> Result<i64> {
        let destination = destination.to_owned();
        self.store
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT retry_at_ts FROM federation_destinations WHERE destination = ?1",
                        [destination],
                        |row| row.get(0),
                    )
                    .optional()?
                    .unwrap_or(0))
            })
            .await
    }

    /// The oldest items for `destination`, in order, up to `max_pdus` PDUs and `max_edus`
    /// EDUs (a transaction's limits): the batch stops at the first item that would pass one.
    pub async fn batch(
        &self,
        destination: &str,
        max_pdus: usize,
        max_edus: usize,
    ) -> Result<Vec<OutboxItem>> {
        let destination = destination.to_owned();
        let limit = i64::try_from(max_pdus + max_edus).unwrap_or(i64::MAX);
        self.store
            .read(move |conn| {
                let mut statement = conn.prepare(
                    "SELECT id, kind, body FROM federation_outbox WHERE destination = ?1 ORDER BY id LIMIT ?2",
                )?;
                let rows = statement.query_map(params![destination, limit], |row| {
                    let kind: String = row.get(1)?;
                    Ok(OutboxItem {
                        id: row.get(0)?,
                        kind: if kind == "pdu" {
                            OutboxKind::Pdu
                        } else {
                            OutboxKind::Edu
                        },
                        body: row.get(2)?,
                    })
                })?;
                let (mut pdus, mut edus) = (0, 0);
                let mut batch = Vec::new();
                for item in rows {
                    let item = item?;
                    let count = match item.kind {
                        OutboxKind::Pdu => &mut pdus,
                        OutboxKind::Edu => &mut edus,
                    };
                    let max = match item.kind {
                        OutboxKind::Pdu => max_pdus,
                        OutboxKind::Edu => max_edus,
                    };
                    if *count == max {
                        break;
                    }
                    *count += 1;
                    batch.push(item);
                }
                Ok(batch)
            })
            .await
    }

    /// Removes the items a destination accepted and records the success.
    pub async fn sent(&self, destination: &str, ids: Vec<i64>, now: i64) -> Result<()> {
        let destination = destination.to_owned();
        self.store
            .write(move |txn| {
                for id in ids {
                    txn.execute("DELETE FROM federation_outbox WHERE id = ?1", [id])?;
                }
                txn.execute(
                    "INSERT INTO federation_destinations (destination, last_success_ts, failures, retry_at_ts) \
                     VALUES (?1, ?2, 0, 0) \
                     ON CONFLICT (destination) DO UPDATE SET last_success_ts = ?2, failures = 0, retry_at_ts = 0",
                    params![destination, now],
                )?;
                Ok(())
            })
            .await
    }

    /// Records a failed attempt; `backoff(failures)` says how long to wait before the next
    /// one. Returns the number of failures in a row.
    pub async fn failed(
        &self,
        destination: &str,
        error: &str,
        now: i64,
        backoff: fn(u32) -> i64,
    ) -> Result<u32> {
        let (destination, error) = (destination.to_owned(), error.to_owned());
        self.store
            .write(move |txn| {
                let failures: u32 = txn
                    .query_row(
                        "SELECT failures FROM federation_destinations WHERE destination = ?1",
                        [&destination],
                        |row| row.get(0),
                    )
                    .optional()?
                    .unwrap_or(0);
                let failures = failures.saturating_add(1);
                let retry_at = now.saturating_add(backoff(failures));
                txn.execute(
                    "INSERT INTO federation_destinations (destination, last_failure_ts, last_error, failures, retry_at_ts) \
                     VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (destination) DO UPDATE SET last_failure_ts = ?2, last_error = ?3, failures = ?4, retry_at_ts = ?5",
                    params![destination, now, error, failures, retry_at],
                )?;
                Ok(failures)
            })
            .await
    }

    /// Ends a destination's backoff (it has just shown it is up).
    pub async fn reset_backoff(&self, destination: &str) -> Result<()> {
        let destination = destination.to_owned();
        self.store
            .write(move |txn| {
                txn.execute(
                    "UPDATE federation_destinations SET retry_at_ts = 0 WHERE destination = ?1",
                    [destination],
                )?;
                Ok(())
            })
            .await
    }

    /// Every destination with items waiting.
    pub async fn waiting_destinations(&self) -> Result<Vec<String>> {
        self.store
            .read(|conn| {
                let mut statement =
                    conn.prepare("SELECT DISTINCT destination FROM federation_outbox")?;
                let rows = statement.query_map([], |row| row.get(0))?;
                Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
            })
            .await
    }

    /// The health of every destination Kith has sent to or has items for.
    pub async fn health(&self) -> Result<Vec<DestinationHealth>> {
        self.store
            .read(|conn| {
                let mut statement = conn.prepare(
                    "SELECT names.destination, d.last_success_ts, d.last_failure_ts, d.last_error, \
                            COALESCE(d.failures, 0), COALESCE(d.retry_at_ts, 0), \
                            (SELECT COUNT(*) FROM federation_outbox o WHERE o.destination = names.destination) \
                     FROM (SELECT destination FROM federation_destinations \
                           UNION SELECT destination FROM federation_outbox) AS names \
                     LEFT JOIN federation_destinations d ON d.destination = names.destination \
                     ORDER BY names.destination",
                )?;
                let rows = statement.query_map([], |row| {
                    Ok(DestinationHealth {
                        destination: row.get(0)?,
                        last_success_ts: row.get(1)?,
                        last_failure_ts: row.get(2)?,
                        last_error: row.get(3)?,
                        failures: row.get(4)?,
                        retry_at_ts: row.get(5)?,
                        queued: u64::try_from(row.get::<_, i64>(6)?).unwrap_or(0),
                    })
                })?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
    }

    /// The answer already given to transaction `txn_id` of `origin`, if any.
    pub async fn inbound_answer(&self, origin: &str, txn_id: &str) -> Result<Option<String>> {
        let (origin, txn_id) = (origin.to_owned(), txn_id.to_owned());
        self.store
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT response FROM federation_inbound_txns WHERE origin = ?1 AND txn_id = ?2",
                        params![origin, txn_id],
                        |row| row.get(0),
                    )
                    .optional()?)
            })
            .await
    }

    /// Records the answer to an inbound transaction, and forgets those older than a week
    /// (a sender retries for hours at most).
    pub async fn record_inbound(
        &self,
        origin: &str,
        txn_id: &str,
        response: &str,
        now: i64,
    ) -> Result<()> {
        let (origin, txn_id, response) =
            (origin.to_owned(), txn_id.to_owned(), response.to_owned());
        self.store
            .write(move |txn| {
                txn.execute(
                    "INSERT OR REPLACE INTO federation_inbound_txns (origin, txn_id, response, received_ts) VALUES (?1, ?2, ?3, ?4)",
                    params![origin, txn_id, response, now],
                )?;
                txn.execute(
                    "DELETE FROM federation_inbound_txns WHERE received_ts < ?1",
                    [now.saturating_sub(INBOUND_TXN_KEEP_MS)],
                )?;
                Ok(())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn old_pdus_collapse_to_the_newest_per_room_and_destination_and_edus_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("kith.db")).expect("open");
        let pdu = |room: &str, n: u32| json_body(room, n);
        store
            .write(move |txn| {
                for (destination, kind, body, queued_ts) in [
                    ("gone.test", OutboxKind::Pdu, pdu("!a", 1), 1_000),
                    (
                        "gone.test",
                        OutboxKind::Edu,
                        "{\"edu_type\":\"m.direct_to_device\"}".to_owned(),
                        1_000,
                    ),
                    ("gone.test", OutboxKind::Pdu, pdu("!a", 2), 1_000),
                    ("gone.test", OutboxKind::Pdu, pdu("!b", 3), 1_000),
                    ("gone.test", OutboxKind::Pdu, pdu("!a", 4), 1_000),
                    ("other.test", OutboxKind::Pdu, pdu("!a", 5), 1_000),
                    ("gone.test", OutboxKind::Pdu, pdu("!c", 6), 1_000),
                    ("gone.test", OutboxKind::Pdu, pdu("!c", 7), 9_000),
                ] {
                    queue_in(txn, destination, kind, &body, queued_ts)?;
                }
                Ok(())
            })
            .await
            .expect("queued");
        let queue = store.federation_queue();
        assert_eq!(queue.collapse_old_pdus(5_000).await.expect("collapsed"), 3);
        let left: Vec<String> = queue
            .batch("gone.test", 50, 100)
            .await
            .expect("batch")
            .into_iter()
            .map(|item| item.body)
            .collect();
        assert_eq!(
            left,
            [
                "{\"edu_type\":\"m.direct_to_device\"}".to_owned(),
                pdu("!b", 3),
                pdu("!a", 4),
                pdu("!c", 7),
            ]
        );
        assert_eq!(
            queue
                .batch("other.test", 50, 100)
                .await
                .expect("batch")
                .len(),
            1
        );
    }

    fn json_body(room: &str, n: u32) -> String {
        format!("{{\"room_id\":\"{room}\",\"depth\":{n}}}")
    }
}
