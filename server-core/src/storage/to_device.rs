//! To-device messages: stored per recipient device until its next sync acknowledges them
//! (spec: client-server-api/modules/send_to_device.md).

use rusqlite::{OptionalExtension, params};

use super::{
    Store,
    federation_queue::{OutboxKind, queue_in},
    next_stream_pos,
};
use crate::error::Result;

/// One message for one device.
#[derive(Debug, Clone)]
pub struct ToDeviceMessage {
    /// The recipient.
    pub user_id: String,
    /// The recipient's device, or `*` for all of the user's devices.
    pub device_id: String,
    /// The event type.
    pub event_type: String,
    /// The content, as JSON text.
    pub content: String,
}

/// A message waiting in a device's inbox.
#[derive(Debug, Clone)]
pub struct PendingToDevice {
    /// Its stream position.
    pub stream_pos: i64,
    /// Who sent it.
    pub sender: String,
    /// The event type.
    pub event_type: String,
    /// The content, as JSON text.
    pub content: String,
}

/// To-device inboxes.
pub struct ToDeviceStore<'a> {
    pub(super) store: &'a Store,
}

/// The scope of a sendToDevice transaction ID in `transaction_ids`.
const TXN_SCOPE: &str = "sendToDevice";

impl ToDeviceStore<'_> {
    /// Queues messages from `sender` (device `sender_device`, transaction `txn_id`) in one
    /// transaction, all at one new stream position, and puts `remote` (destination, EDU
    /// JSON) in the federation outbox in the same transaction. A transaction ID seen before
    /// is a no-op (spec: "Transaction identifiers"). Messages for unknown devices are
    /// dropped, as the spec leaves them undeliverable. Returns whether anything was queued
    /// locally, and the destinations given EDUs.
    pub async fn send(
        &self,
        sender: &str,
        sender_device: &str,
        txn_id: &str,
        messages: Vec<ToDeviceMessage>,
        remote: Vec<(String, String)>,
    ) -> Result<(bool, Vec<String>)> {
        let (sender, sender_device, txn_id) = (
            sender.to_owned(),
            sender_device.to_owned(),
            txn_id.to_owned(),
        );
        self.store
            .write(move |txn| {
                let seen: Option<String> = txn
                    .query_row(
                        "SELECT result FROM transaction_ids WHERE user_id = ?1 AND device_id = ?2 AND scope = ?3 AND txn_id = ?4",
                        params![sender, sender_device, TXN_SCOPE, txn_id],
                        |row| row.get(0),
                    )
                    .optional()?;
                if seen.is_some() {
                    return Ok((false, Vec::new()));
                }
                txn.execute(
                    "INSERT INTO transaction_ids (user_id, device_id, scope, txn_id, result, created_ts) VALUES (?1, ?2, ?3, ?4, '', ?5)",
                    params![sender, sender_device, TXN_SCOPE, txn_id, super::now_ms()],
                )?;
                let now = super::now_ms();
                let mut destinations = Vec::new();
                for (destination, edu) in &remote {
                    queue_in(txn, destination, OutboxKind::Edu, edu, now)?;
                    destinations.push(destination.clone());
                }
                if messages.is_empty() {
                    return Ok((false, destinations));
                }
                let pos = next_stream_pos(txn)?;
                let mut queued = false;
                // A device gets one message per transaction. When a request names a device
                // and also `*` for the same user, the named device's own message wins: named
                // messages go in first and `*` only fills the devices left.
                let mut messages = messages;
                messages.sort_by_key(|m| m.device_id == "*");
                for m in &messages {
                    let inserted = if m.device_id == "*" {
                        txn.execute(
                            "INSERT OR IGNORE INTO to_device_inbox (user_id, device_id, stream_pos, sender, event_type, content) \
                             SELECT user_id, device_id, ?2, ?3, ?4, ?5 FROM devices WHERE user_id = ?1",
                            params![m.user_id, pos, sender, m.event_type, m.content],
                        )?
                    } else {
                        txn.execute(
                            "INSERT OR REPLACE INTO to_device_inbox (user_id, device_id, stream_pos, sender, event_type, content) \
                             SELECT user_id, device_id, ?3, ?4, ?5, ?6 FROM devices WHERE user_id = ?1 AND device_id = ?2",
                            params![m.user_id, m.device_id, pos, sender, m.event_type, m.content],
                        )?
                    };
                    queued |= inserted > 0;
                }
                Ok((queued, destinations))
            })
            .await
    }

    /// Up to `limit` messages waiting for a device, at positions up to `up_to`, oldest first.
    pub async fn pending(
        &self,
        user_id: &str,
        device_id: &str,
        up_to: i64,
        limit: u32,
    ) -> Result<Vec<PendingToDevice>> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT stream_pos, sender, event_type, content FROM to_device_inbox \
                     WHERE user_id = ?1 AND device_id = ?2 AND stream_pos <= ?3 ORDER BY stream_pos LIMIT ?4",
                )?;
                let rows = stmt.query_map(params![user_id, device_id, up_to, limit], |row| {
                    Ok(PendingToDevice {
                        stream_pos: row.get(0)?,
                        sender: row.get(1)?,
                        event_type: row.get(2)?,
                        content: row.get(3)?,
                    })
                })?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// Deletes the device's messages up to `up_to` (the client has them). Only takes the
    /// write lock when there is something to delete.
    pub async fn acknowledge(&self, user_id: &str, device_id: &str, up_to: i64) -> Result<()> {
        let args = (user_id.to_owned(), device_id.to_owned());
        let (user, device) = args.clone();
        let any: bool = self
            .store
            .read(move |conn| {
                Ok(conn.query_row(
                    "SELECT EXISTS (SELECT 1 FROM to_device_inbox WHERE user_id = ?1 AND device_id = ?2 AND stream_pos <= ?3)",
                    params![user, device, up_to],
                    |row| row.get(0),
                )?)
            })
            .await?;
        if !any {
            return Ok(());
        }
        let (user, device) = args;
        self.store
            .write(move |txn| {
                txn.execute(
                    "DELETE FROM to_device_inbox WHERE user_id = ?1 AND device_id = ?2 AND stream_pos <= ?3",
                    params![user, device, up_to],
                )?;
                Ok(())
            })
            .await
    }
}
