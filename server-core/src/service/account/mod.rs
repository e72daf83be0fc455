//! Per-user data: account data (global and per room), tags, push rules, read receipts and
//! read markers, and stored filters.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use ruma::{OwnedUserId, RoomId, UserId, push::Ruleset};
use serde_json::{Value, json};

mod push_rules;

pub use self::push_rules::PushRuleBody;
use super::notifier::Notifier;
use crate::{
    error::{Error, Result},
    storage::{Receipt, Store, now_ms},
};

/// Global account data type that holds the user's push rules (spec: modules/push.md).
pub const PUSH_RULES: &str = "m.push_rules";

/// The per-user data service. Cheap to clone.
#[derive(Clone)]
pub struct Account {
    store: Store,
    notifier: Notifier,
    /// Parsed push rules by user: every stored event consults its members' rules.
    rules_cache: Arc<Mutex<HashMap<OwnedUserId, Ruleset>>>,
    /// Serialises push rule edits (read, change, write) so none is lost.
    rules_edit: Arc<tokio::sync::Mutex<()>>,
}

impl Account {
    /// Builds the service.
    pub fn new(store: Store, notifier: Notifier) -> Self {
        Self {
            store,
            notifier,
            rules_cache: Arc::default(),
            rules_edit: Arc::default(),
        }
    }

    /// Sets an account data entry (`room_id` `None` for global). Push rules have their
    /// own API, so `m.push_rules` cannot be set here (spec: "PUT /user/{userId}/account_data/{type}").
    pub async fn set(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
        content: Value,
    ) -> Result<()> {
        if data_type == PUSH_RULES {
            return Err(Error::new(
                crate::error::ErrorKind::BadJson,
                "Push rules are changed through the /pushrules API.",
            ));
        }
        if !content.is_object() {
            return Err(Error::bad_json(
                "Account data content must be a JSON object.",
            ));
        }
        self.put(user_id, room_id, data_type, &content).await
    }

    async fn put(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
        content: &Value,
    ) -> Result<()> {
        let room = room_id.map(|r| r.as_str()).unwrap_or("");
        self.store
            .account_data()
            .set(user_id.as_str(), room, data_type, content.to_string())
            .await?;
        self.notifier.notify();
        Ok(())
    }

    /// One account data entry; `M_NOT_FOUND` if unset.
    pub async fn get(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
    ) -> Result<Value> {
        if data_type == PUSH_RULES && room_id.is_none() {
            return Ok(json!({ "global": self.push_rules(user_id).await? }));
        }
        let room = room_id.map(|r| r.as_str()).unwrap_or("");
        let content = self
            .store
            .account_data()
            .get(user_id.as_str(), room, data_type)
            .await?
            .ok_or_else(|| Error::not_found("No account data of that type."))?;
        Ok(serde_json::from_str(&content)?)
    }

    /// Account data changed after `since`, as (room_id or "", type, content).
    pub async fn changed_since(
        &self,
        user_id: &UserId,
        since: i64,
    ) -> Result<Vec<(String, String, Value)>> {
        let mut entries: Vec<(String, String, Value)> = self
            .store
            .account_data()
            .changed_since(user_id.as_str(), since)
            .await?
            .into_iter()
            .filter_map(|(room, t, c)| serde_json::from_str(&c).ok().map(|c| (room, t, c)))
            .collect();
        // The default push rules are account data that every new client must see.
        if since == 0
            && !entries
                .iter()
                .any(|(room, t, _)| room.is_empty() && t == PUSH_RULES)
        {
            entries.push((
                String::new(),
                PUSH_RULES.to_owned(),
                json!({ "global": self.push_rules(user_id).await? }),
            ));
        }
        Ok(entries)
    }

    /// The user's push ruleset: stored if edited, else the spec's defaults.
    pub async fn push_rules(&self, user_id: &UserId) -> Result<Ruleset> {
        if let Some(rules) = self
            .rules_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(user_id)
        {
            return Ok(rules.clone());
        }
        let rules = match self
            .store
            .account_data()
            .get(user_id.as_str(), "", PUSH_RULES)
            .await?
        {
            Some(stored) => {
                let value: Value = serde_json::from_str(&stored)?;
                serde_json::from_value(value.get("global").cloned().unwrap_or(Value::Null))?
            }
            None => Ruleset::server_default(user_id),
        };
        // Never overwrite: an edit that finished meanwhile has cached newer rules.
        Ok(self
            .rules_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(user_id.to_owned())
            .or_insert(rules)
            .clone())
    }

    /// Changes the user's push rules with `edit` and stores the result (spec:
    /// client-server-api/modules/push.md, "Push Rules: API"). Edits are serialised, and the
    /// change reaches the user's clients as `m.push_rules` account data.
    pub async fn edit_push_rules<T>(
        &self,
        user_id: &UserId,
        edit: impl FnOnce(&mut Ruleset) -> Result<T>,
    ) -> Result<T> {
        let _guard = self.rules_edit.lock().await;
        let mut rules = self.push_rules(user_id).await?;
        let result = edit(&mut rules)?;
        // Drop the cached copy first: if this request is cancelled after the write, the next
        // read loads the stored rules instead of keeping the old ones.
        self.rules_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(user_id);
        self.put(user_id, None, PUSH_RULES, &json!({ "global": rules }))
            .await?;
        self.rules_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user_id.to_owned(), rules);
        Ok(result)
    }

    /// The room's tags for the user (`{}` when none).
    pub async fn tags(&self, user_id: &UserId, room_id: &RoomId) -> Result<Value> {
        match self.get(user_id, Some(room_id), "m.tag").await {
            Ok(content) => Ok(content.get("tags").cloned().unwrap_or(json!({}))),
            Err(Error::Matrix {
                kind: crate::error::ErrorKind::NotFound,
                ..
            }) => Ok(json!({})),
            Err(e) => Err(e),
        }
    }

    /// Adds or replaces one tag (spec: modules/tags.md).
    pub async fn set_tag(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        tag: &str,
        info: Value,
    ) -> Result<()> {
        let mut tags = self.tags(user_id, room_id).await?;
        tags[tag] = info;
        self.put(user_id, Some(room_id), "m.tag", &json!({ "tags": tags }))
            .await
    }

    /// Removes one tag; removing an absent tag is fine.
    pub async fn delete_tag(&self, user_id: &UserId, room_id: &RoomId, tag: &str) -> Result<()> {
        let mut tags = self.tags(user_id, room_id).await?;
        if let Some(map) = tags.as_object_mut() {
            map.remove(tag);
        }
        self.put(user_id, Some(room_id), "m.tag", &json!({ "tags": tags }))
            .await
    }

    /// Records a read receipt (`m.read`, `m.read.private`) or read marker (`m.fully_read`,
    /// kept as room account data as the spec says).
    pub async fn receipt(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        receipt_type: &str,
        event_id: &str,
        thread_id: Option<&str>,
    ) -> Result<()> {
        match receipt_type {
            "m.fully_read" => {
                self.put(
                    user_id,
                    Some(room_id),
                    "m.fully_read",
                    &json!({ "event_id": event_id }),
                )
                .await
            }
            "m.read" | "m.read.private" => {
                self.store
                    .account_data()
                    .set_receipt(Receipt {
                        room_id: room_id.to_string(),
                        user_id: user_id.to_string(),
                        receipt_type: receipt_type.to_owned(),
                        thread_id: thread_id.unwrap_or("").to_owned(),
                        event_id: event_id.to_owned(),
                        ts: now_ms(),
                    })
                    .await?;
                self.notifier.notify();
                Ok(())
            }
            other => Err(Error::invalid_param(format!(
                "Unknown receipt type {other}."
            ))),
        }
    }

    /// Records another server's user's public read receipt, as that server sent it.
    pub async fn remote_receipt(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        event_id: &str,
        thread_id: Option<&str>,
        ts: i64,
    ) -> Result<()> {
        self.store
            .account_data()
            .set_receipt(Receipt {
                room_id: room_id.to_string(),
                user_id: user_id.to_string(),
                receipt_type: "m.read".to_owned(),
                thread_id: thread_id.unwrap_or("").to_owned(),
                event_id: event_id.to_owned(),
                ts,
            })
            .await?;
        self.notifier.notify();
        Ok(())
    }

    /// Stores a filter, returning its ID.
    pub async fn create_filter(&self, user_id: &UserId, filter: &Value) -> Result<String> {
        Ok(self
            .store
            .account_data()
            .create_filter(user_id.as_str(), filter.to_string())
            .await?
            .to_string())
    }

    /// A stored filter; `M_NOT_FOUND` if unknown.
    pub async fn filter(&self, user_id: &UserId, filter_id: &str) -> Result<Value> {
        let id: i64 = filter_id
            .parse()
            .map_err(|_| Error::not_found("No such filter."))?;
        let json = self
            .store
            .account_data()
            .filter(user_id.as_str(), id)
            .await?
            .ok_or_else(|| Error::not_found("No such filter."))?;
        Ok(serde_json::from_str(&json)?)
    }
}
