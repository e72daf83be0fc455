//! Server-side key backup (spec: end_to_end_encryption.md, "Server-side key backups").
//! The keys are encrypted by the client; the server keeps them, their metadata, a count
//! and an `etag` that changes whenever the keys do.

use ruma::UserId;
use serde_json::{Map, Value, json};

use super::E2ee;
use crate::{
    error::{Error, ErrorKind, Result},
    storage::{BackupVersion, RoomKey},
};

/// One room key as uploaded.
#[derive(Debug, Clone)]
pub struct RoomKeyUpload {
    /// The room.
    pub room_id: String,
    /// The Megolm session.
    pub session_id: String,
    /// The `KeyBackupData` object.
    pub key: Value,
}

/// Which of two keys for a session the backup keeps (spec: "Server-side key backups"):
/// the verified one; else the one with the lower first message index; else the one
/// forwarded fewer times. Equal keys keep the stored one.
fn replaces(existing: &RoomKey, new: &RoomKey) -> bool {
    if existing.is_verified != new.is_verified {
        return new.is_verified;
    }
    if existing.first_message_index != new.first_message_index {
        return new.first_message_index < existing.first_message_index;
    }
    new.forwarded_count < existing.forwarded_count
}

/// Parses a version from a path or query; an unparseable one is simply unknown.
pub(crate) fn parse_version(version: &str) -> Result<i64> {
    version
        .parse()
        .map_err(|_| Error::not_found("Unknown backup version."))
}

fn version_json(v: &BackupVersion) -> Result<Value> {
    let auth_data: Value = serde_json::from_str(&v.auth_data)
        .map_err(|e| Error::internal(format!("stored auth_data: {e}")))?;
    Ok(json!({
        "algorithm": v.algorithm,
        "auth_data": auth_data,
        "count": v.count,
        "etag": v.etag.to_string(),
        "version": v.version.to_string(),
    }))
}

fn key_json(key: &RoomKey) -> Result<Value> {
    let session_data: Value = serde_json::from_str(&key.session_data)
        .map_err(|e| Error::internal(format!("stored session_data: {e}")))?;
    Ok(json!({
        "first_message_index": key.first_message_index,
        "forwarded_count": key.forwarded_count,
        "is_verified": key.is_verified,
        "session_data": session_data,
    }))
}

impl E2ee {
    /// Creates a backup version, which becomes the current one.
    pub async fn create_backup(
        &self,
        user_id: &UserId,
        algorithm: &str,
        auth_data: &Value,
    ) -> Result<String> {
        if !auth_data.is_object() {
            return Err(Error::bad_json("auth_data must be an object."));
        }
        let version = self
            .store
            .backup()
            .create(
                user_id.as_str(),
                algorithm.to_owned(),
                serde_json::to_string(auth_data)?,
            )
            .await?;
        Ok(version.to_string())
    }

    /// A backup version's info (the current one when `version` is `None`).
    pub async fn backup_info(&self, user_id: &UserId, version: Option<&str>) -> Result<Value> {
        let version = version.map(parse_version).transpose()?;
        match self.store.backup().get(user_id.as_str(), version).await? {
            Some(v) => version_json(&v),
            None => Err(Error::not_found("No backup found.")),
        }
    }

    /// Replaces a version's `auth_data`. The algorithm cannot change, and a `version` in
    /// the body must match the path.
    pub async fn update_backup(
        &self,
        user_id: &UserId,
        version: &str,
        algorithm: &str,
        auth_data: &Value,
        body_version: Option<&str>,
    ) -> Result<()> {
        if body_version.is_some_and(|v| v != version) {
            return Err(Error::invalid_param(
                "The version in the body does not match the path.",
            ));
        }
        let number = parse_version(version)?;
        let current = self
            .store
            .backup()
            .get(user_id.as_str(), Some(number))
            .await?
            .ok_or_else(|| Error::not_found("Unknown backup version."))?;
        if current.algorithm != algorithm {
            return Err(Error::invalid_param(
                "A backup's algorithm cannot be changed.",
            ));
        }
        if !auth_data.is_object() {
            return Err(Error::bad_json("auth_data must be an object."));
        }
        self.store
            .backup()
            .update(user_id.as_str(), number, serde_json::to_string(auth_data)?)
            .await?;
        Ok(())
    }

    /// Deletes a version and all its keys.
    pub async fn delete_backup(&self, user_id: &UserId, version: &str) -> Result<()> {
        if self
            .store
            .backup()
            .delete(user_id.as_str(), parse_version(version)?)
            .await?
        {
            Ok(())
        } else {
            Err(Error::not_found("Unknown backup version."))
        }
    }

    /// Stores keys in the current version. Returns `{etag, count}`.
    pub async fn put_room_keys(
        &self,
        user_id: &UserId,
        version: &str,
        keys: Vec<RoomKeyUpload>,
    ) -> Result<Value> {
        let mut parsed = Vec::with_capacity(keys.len());
        for upload in keys {
            let field = |name: &str| upload.key.get(name).cloned();
            let bad = || {
                Error::bad_json(
                    "Each key needs first_message_index, forwarded_count, is_verified and session_data.",
                )
            };
            let session_data = field("session_data")
                .filter(Value::is_object)
                .ok_or_else(bad)?;
            parsed.push(RoomKey {
                room_id: upload.room_id,
                session_id: upload.session_id,
                first_message_index: field("first_message_index")
                    .and_then(|v| v.as_i64())
                    .ok_or_else(bad)?,
                forwarded_count: field("forwarded_count")
                    .and_then(|v| v.as_i64())
                    .ok_or_else(bad)?,
                is_verified: field("is_verified")
                    .and_then(|v| v.as_bool())
                    .ok_or_else(bad)?,
                session_data: serde_json::to_string(&session_data)?,
            });
        }
        let number = match parse_version(version) {
            Ok(n) => n,
            Err(_) => {
                // Not a version at all: answer as for any version that is not current.
                let current = self.store.backup().get(user_id.as_str(), None).await?;
                return Err(Error::new(
                    ErrorKind::WrongRoomKeysVersion {
                        current_version: current.map(|v| v.version.to_string()),
                    },
                    "That backup version is not the current one.",
                ));
            }
        };
        let (etag, count) = self
            .store
            .backup()
            .put_keys(user_id.as_str(), number, parsed, replaces)
            .await?;
        Ok(json!({ "etag": etag.to_string(), "count": count }))
    }

    /// Keys of a version as the spec nests them: all (`{rooms: {room: {sessions: ...}}}`),
    /// one room's (`{sessions: ...}`), or one session (the key itself, or 404).
    pub async fn get_room_keys(
        &self,
        user_id: &UserId,
        version: &str,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<Value> {
        let keys = self
            .store
            .backup()
            .keys(
                user_id.as_str(),
                parse_version(version)?,
                room_id.map(str::to_owned),
                session_id.map(str::to_owned),
            )
            .await?;
        if session_id.is_some() {
            return match keys.first() {
                Some(key) => key_json(key),
                None => Err(Error::not_found("No key for that session.")),
            };
        }
        let mut rooms = Map::new();
        for key in &keys {
            rooms
                .entry(key.room_id.clone())
                .or_insert_with(|| json!({ "sessions": {} }))["sessions"][&key.session_id] =
                key_json(key)?;
        }
        Ok(match room_id {
            Some(room) => rooms
                .remove(room)
                .unwrap_or_else(|| json!({ "sessions": {} })),
            None => json!({ "rooms": rooms }),
        })
    }

    /// Deletes keys from a version (all, a room's, or one session). Returns `{etag, count}`.
    pub async fn delete_room_keys(
        &self,
        user_id: &UserId,
        version: &str,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<Value> {
        let (etag, count) = self
            .store
            .backup()
            .delete_keys(
                user_id.as_str(),
                parse_version(version)?,
                room_id.map(str::to_owned),
                session_id.map(str::to_owned),
            )
            .await?;
        Ok(json!({ "etag": etag.to_string(), "count": count }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(verified: bool, index: i64, forwarded: i64) -> RoomKey {
        RoomKey {
            room_id: "!r:x".into(),
            session_id: "s".into(),
            first_message_index: index,
            forwarded_count: forwarded,
            is_verified: verified,
            session_data: "{}".into(),
        }
    }

    #[test]
    fn backup_keeps_the_better_key_as_the_spec_orders() {
        // Verified beats everything.
        assert!(replaces(&key(false, 0, 0), &key(true, 9, 9)));
        assert!(!replaces(&key(true, 9, 9), &key(false, 0, 0)));
        // Then the lower first message index.
        assert!(replaces(&key(true, 5, 0), &key(true, 2, 9)));
        assert!(!replaces(&key(true, 2, 0), &key(true, 5, 0)));
        // Then the lower forwarded count; a tie keeps the stored key.
        assert!(replaces(&key(false, 1, 3), &key(false, 1, 1)));
        assert!(!replaces(&key(false, 1, 1), &key(false, 1, 1)));
    }
}
