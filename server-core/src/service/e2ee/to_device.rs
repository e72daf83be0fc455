//! To-device messages (spec: client-server-api/modules/send_to_device.md): queued per
//! device, delivered by `/sync`, deleted once the next sync's `since` shows they arrived.

use std::collections::BTreeMap;

use ruma::{ServerName, UserId};
use serde_json::{Value, json};

use super::E2ee;
use crate::{
    error::{Error, Result},
    storage::ToDeviceMessage,
};

/// How many to-device messages one sync carries at most; the rest come with the next.
const PER_SYNC: u32 = 100;

impl E2ee {
    /// `PUT /sendToDevice/{eventType}/{txnId}`: queues one message per (user, device), where
    /// a device of `*` means all of the user's devices. Repeating a transaction ID is a
    /// no-op. Messages for other servers' users go out as one `m.direct_to_device` EDU per
    /// server (spec: server-server-api.md, "Send-to-device messaging"), queued durably with
    /// the local ones.
    pub async fn send_to_device(
        &self,
        sender: &UserId,
        sender_device: &str,
        txn_id: &str,
        event_type: &str,
        messages: BTreeMap<String, BTreeMap<String, Value>>,
    ) -> Result<()> {
        let mut queue = Vec::new();
        let mut remote: BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>> =
            BTreeMap::new();
        for (user, devices) in messages {
            let user_id = UserId::parse(&user)
                .map_err(|_| Error::invalid_param(format!("{user} is not a valid user ID.")))?;
            if devices.values().any(|content| !content.is_object()) {
                return Err(Error::bad_json("Each message must be a JSON object."));
            }
            if !self.is_local(&user_id) {
                remote
                    .entry(user_id.server_name().to_string())
                    .or_default()
                    .insert(user, devices);
                continue;
            }
            for (device_id, content) in devices {
                queue.push(ToDeviceMessage {
                    user_id: user.clone(),
                    device_id,
                    event_type: event_type.to_owned(),
                    content: serde_json::to_string(&content)?,
                });
            }
        }
        // The same request always gives the same message ID, so a receiver that saw it
        // already can tell (Synapse deduplicates by it).
        let message_id: String =
            crate::crypto::hash_token(&format!("{sender}|{sender_device}|{txn_id}"))
                .chars()
                .take(32)
                .collect();
        let mut edus = Vec::new();
        for (server, messages) in remote {
            let edu = json!({
                "edu_type": "m.direct_to_device",
                "content": {
                    "sender": sender,
                    "type": event_type,
                    "message_id": message_id,
                    "messages": messages,
                },
            });
            edus.push((server, serde_json::to_string(&edu)?));
        }
        let (queued, destinations) = self
            .store
            .to_device()
            .send(sender.as_str(), sender_device, txn_id, queue, edus)
            .await?;
        if queued {
            self.notifier.notify();
        }
        for destination in destinations {
            self.federation.wake(&destination);
        }
        Ok(())
    }

    /// An `m.direct_to_device` EDU from `origin` (spec: server-server-api.md, "Send-to-device
    /// messaging"): its messages for our users go to their inboxes. The sender must be a
    /// user of `origin`; a `message_id` seen before from that sender is not delivered again.
    /// Malformed EDUs are dropped with a log line: an EDU has no answer to give.
    pub async fn receive_to_device(&self, origin: &ServerName, content: &Value) -> Result<()> {
        let (Some(sender), Some(event_type), Some(message_id), Some(messages)) = (
            content.get("sender").and_then(Value::as_str),
            content.get("type").and_then(Value::as_str),
            content.get("message_id").and_then(Value::as_str),
            content.get("messages").and_then(Value::as_object),
        ) else {
            tracing::info!(%origin, "malformed m.direct_to_device EDU dropped");
            return Ok(());
        };
        match UserId::parse(sender) {
            Ok(sender) if sender.server_name() == origin => {}
            _ => {
                tracing::info!(%origin, sender, "m.direct_to_device EDU from another server's user dropped");
                return Ok(());
            }
        }
        let mut queue = Vec::new();
        for (user, devices) in messages {
            let Ok(user_id) = UserId::parse(user) else {
                continue;
            };
            let Some(devices) = devices.as_object() else {
                continue;
            };
            if !self.is_local(&user_id) {
                continue;
            }
            for (device_id, message) in devices {
                if message.is_object() {
                    queue.push(ToDeviceMessage {
                        user_id: user.clone(),
                        device_id: device_id.clone(),
                        event_type: event_type.to_owned(),
                        content: serde_json::to_string(message)?,
                    });
                }
            }
        }
        // The sender's server stands in for the sender's device in the deduplication key.
        let (queued, _) = self
            .store
            .to_device()
            .send(sender, origin.as_str(), message_id, queue, Vec::new())
            .await?;
        if queued {
            self.notifier.notify();
        }
        Ok(())
    }

    /// The to-device part of a sync for one device. `acknowledged` is the position the
    /// client's `since` token says it has (those messages are deleted); messages up to `now`
    /// are sent, at most [`PER_SYNC`]. Returns the events and the position they go up to
    /// (below `now` when more wait).
    pub async fn to_device_for_sync(
        &self,
        user_id: &UserId,
        device_id: &str,
        acknowledged: Option<i64>,
        now: i64,
    ) -> Result<(Vec<Value>, i64)> {
        let inbox = self.store.to_device();
        if let Some(up_to) = acknowledged {
            inbox
                .acknowledge(user_id.as_str(), device_id, up_to)
                .await?;
        }
        let pending = inbox
            .pending(user_id.as_str(), device_id, now, PER_SYNC)
            .await?;
        let up_to = if pending.len() == PER_SYNC as usize {
            pending.last().map_or(now, |m| m.stream_pos)
        } else {
            now
        };
        let events = pending
            .into_iter()
            .map(|m| {
                let content: Value = serde_json::from_str(&m.content)
                    .map_err(|e| Error::internal(format!("stored to-device content: {e}")))?;
                Ok(json!({ "sender": m.sender, "type": m.event_type, "content": content }))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((events, up_to))
    }
}
