//! To-device messages (spec: client-server-api/modules/send_to_device.md): queued per
//! device, delivered by `/sync`, deleted once the next sync's `since` shows they arrived.

use std::collections::BTreeMap;

use ruma::UserId;
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
    /// no-op. Remote users cannot be reached until Kith federates; their messages are dropped
    /// with a warning in the log.
    pub async fn send_to_device(
        &self,
        sender: &UserId,
        sender_device: &str,
        txn_id: &str,
        event_type: &str,
        messages: BTreeMap<String, BTreeMap<String, Value>>,
    ) -> Result<()> {
        let mut queue = Vec::new();
        for (user, devices) in messages {
            let user_id = UserId::parse(&user)
                .map_err(|_| Error::invalid_param(format!("{user} is not a valid user ID.")))?;
            if !self.is_local(&user_id) {
                tracing::warn!(recipient = %user_id, "to-device message for a remote user dropped: no federation yet");
                continue;
            }
            for (device_id, content) in devices {
                if !content.is_object() {
                    return Err(Error::bad_json("Each message must be a JSON object."));
                }
                queue.push(ToDeviceMessage {
                    user_id: user.clone(),
                    device_id,
                    event_type: event_type.to_owned(),
                    content: serde_json::to_string(&content)?,
                });
            }
        }
        let queued = self
            .store
            .to_device()
            .send(sender.as_str(), sender_device, txn_id, queue)
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
