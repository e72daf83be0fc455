//! Server-side key backup: backup versions and the encrypted room keys in them
//! (spec: client-server-api/modules/end_to_end_encryption.md, "Server-side key backups").
//! The server cannot read the keys; it keeps them and their cleartext metadata.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::Store;
use crate::error::{Error, ErrorKind, Result};

/// A backup version.
#[derive(Debug, Clone)]
pub struct BackupVersion {
    /// The version number.
    pub version: i64,
    /// The backup algorithm.
    pub algorithm: String,
    /// Algorithm-specific data, as JSON text.
    pub auth_data: String,
    /// Changes whenever the keys in the backup change.
    pub etag: i64,
    /// How many keys are in it.
    pub count: u64,
}

/// One backed-up room key (a Megolm session).
#[derive(Debug, Clone)]
pub struct RoomKey {
    /// The room.
    pub room_id: String,
    /// The session.
    pub session_id: String,
    /// The first message index the key can decrypt.
    pub first_message_index: i64,
    /// How many times the key was forwarded.
    pub forwarded_count: i64,
    /// Whether the uploading device had verified the key's sender.
    pub is_verified: bool,
    /// The encrypted session data, as JSON text.
    pub session_data: String,
}

/// Decides whether `new` replaces `existing` (the service's rule).
pub type ReplaceRule = fn(existing: &RoomKey, new: &RoomKey) -> bool;

/// Key backups.
pub struct BackupStore<'a> {
    pub(super) store: &'a Store,
}

fn current_version(conn: &Connection, user_id: &str) -> Result<Option<i64>> {
    Ok(conn
        .query_row(
            "SELECT MAX(version) FROM room_key_backups WHERE user_id = ?1 AND deleted = 0",
            [user_id],
            |row| row.get(0),
        )
        .optional()?
        .flatten())
}

/// Fails unless `version` is the user's current backup version (spec: only the current
/// backup takes keys; `M_WRONG_ROOM_KEYS_VERSION` names the current one).
fn require_current(txn: &Transaction<'_>, user_id: &str, version: i64) -> Result<()> {
    let current = current_version(txn, user_id)?;
    if current == Some(version) {
        return Ok(());
    }
    let exists: bool = txn.query_row(
        "SELECT EXISTS (SELECT 1 FROM room_key_backups WHERE user_id = ?1 AND version = ?2 AND deleted = 0)",
        params![user_id, version],
        |row| row.get(0),
    )?;
    if !exists && current.is_none() {
        return Err(Error::not_found("Unknown backup version."));
    }
    Err(Error::new(
        ErrorKind::WrongRoomKeysVersion {
            current_version: current.map(|v| v.to_string()),
        },
        "That backup version is not the current one.",
    ))
}

fn version_info(conn: &Connection, user_id: &str, version: i64) -> Result<Option<BackupVersion>> {
    let row: Option<(String, String, i64)> = conn
        .query_row(
            "SELECT algorithm, auth_data, etag FROM room_key_backups WHERE user_id = ?1 AND version = ?2 AND deleted = 0",
            params![user_id, version],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?;
    let Some((algorithm, auth_data, etag)) = row else {
        return Ok(None);
    };
    let count: i64 = conn.query_row(
        "SELECT COUNT(*) FROM room_keys WHERE user_id = ?1 AND version = ?2",
        params![user_id, version],
        |row| row.get(0),
    )?;
    let count = u64::try_from(count).unwrap_or(0);
    Ok(Some(BackupVersion {
        version,
        algorithm,
        auth_data,
        etag,
        count,
    }))
}

fn etag_and_count(txn: &Transaction<'_>, user_id: &str, version: i64) -> Result<(i64, u64)> {
    version_info(txn, user_id, version)?
        .map(|v| (v.etag, v.count))
        .ok_or_else(|| Error::not_found("Unknown backup version."))
}

impl BackupStore<'_> {
    /// Creates a new backup version (it becomes the current one). Returns its number.
    pub async fn create(&self, user_id: &str, algorithm: String, auth_data: String) -> Result<i64> {
        let user_id = user_id.to_owned();
        self.store
            .write(move |txn| {
                let version: i64 = txn.query_row(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM room_key_backups WHERE user_id = ?1",
                    [&user_id],
                    |row| row.get(0),
                )?;
                txn.execute(
                    "INSERT INTO room_key_backups (user_id, version, algorithm, auth_data) VALUES (?1, ?2, ?3, ?4)",
                    params![user_id, version, algorithm, auth_data],
                )?;
                Ok(version)
            })
            .await
    }

    /// A backup version (the current one when `version` is `None`), or `None`.
    pub async fn get(&self, user_id: &str, version: Option<i64>) -> Result<Option<BackupVersion>> {
        let user_id = user_id.to_owned();
        self.store
            .read(move |conn| {
                let version = match version {
                    Some(v) => v,
                    None => match current_version(conn, &user_id)? {
                        Some(v) => v,
                        None => return Ok(None),
                    },
                };
                version_info(conn, &user_id, version)
            })
            .await
    }

    /// Replaces a version's `auth_data`. Returns false for an unknown version.
    pub async fn update(&self, user_id: &str, version: i64, auth_data: String) -> Result<bool> {
        let user_id = user_id.to_owned();
        self.store
            .write(move |txn| {
                Ok(txn.execute(
                    "UPDATE room_key_backups SET auth_data = ?3 WHERE user_id = ?1 AND version = ?2 AND deleted = 0",
                    params![user_id, version, auth_data],
                )? == 1)
            })
            .await
    }

    /// Deletes a version and its keys. Returns false for a version never created; deleting
    /// one already deleted succeeds (spec: key_backup.yaml, DELETE: 200 also when "the
    /// specified backup was previously deleted").
    pub async fn delete(&self, user_id: &str, version: i64) -> Result<bool> {
        let user_id = user_id.to_owned();
        self.store
            .write(move |txn| {
                txn.execute(
                    "DELETE FROM room_keys WHERE user_id = ?1 AND version = ?2",
                    params![user_id, version],
                )?;
                // The row stays (marked deleted) so that its number is never reused.
                Ok(txn.execute(
                    "UPDATE room_key_backups SET deleted = 1 WHERE user_id = ?1 AND version = ?2",
                    params![user_id, version],
                )? == 1)
            })
            .await
    }

    /// Stores keys in the current backup version, each replacing the stored key for its
    /// session only when `replaces` says so. Returns the new (etag, count).
    pub async fn put_keys(
        &self,
        user_id: &str,
        version: i64,
        keys: Vec<RoomKey>,
        replaces: ReplaceRule,
    ) -> Result<(i64, u64)> {
        let user_id = user_id.to_owned();
        self.store
            .write(move |txn| {
                require_current(txn, &user_id, version)?;
                let mut changed = false;
                for key in &keys {
                    let existing = txn
                        .query_row(
                            "SELECT first_message_index, forwarded_count, is_verified, session_data FROM room_keys \
                             WHERE user_id = ?1 AND version = ?2 AND room_id = ?3 AND session_id = ?4",
                            params![user_id, version, key.room_id, key.session_id],
                            |row| {
                                Ok(RoomKey {
                                    room_id: key.room_id.clone(),
                                    session_id: key.session_id.clone(),
                                    first_message_index: row.get(0)?,
                                    forwarded_count: row.get(1)?,
                                    is_verified: row.get(2)?,
                                    session_data: row.get(3)?,
                                })
                            },
                        )
                        .optional()?;
                    if existing.as_ref().is_some_and(|old| !replaces(old, key)) {
                        continue;
                    }
                    txn.execute(
                        "INSERT OR REPLACE INTO room_keys (user_id, version, room_id, session_id, first_message_index, forwarded_count, is_verified, session_data) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        params![
                            user_id,
                            version,
                            key.room_id,
                            key.session_id,
                            key.first_message_index,
                            key.forwarded_count,
                            key.is_verified,
                            key.session_data
                        ],
                    )?;
                    changed = true;
                }
                if changed {
                    bump_etag(txn, &user_id, version)?;
                }
                etag_and_count(txn, &user_id, version)
            })
            .await
    }

    /// Keys in a version, optionally only one room's or one session's.
    pub async fn keys(
        &self,
        user_id: &str,
        version: i64,
        room_id: Option<String>,
        session_id: Option<String>,
    ) -> Result<Vec<RoomKey>> {
        let user_id = user_id.to_owned();
        self.store
            .read(move |conn| {
                if version_info(conn, &user_id, version)?.is_none() {
                    return Err(Error::not_found("Unknown backup version."));
                }
                let mut stmt = conn.prepare_cached(
                    "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data FROM room_keys \
                     WHERE user_id = ?1 AND version = ?2 AND (?3 IS NULL OR room_id = ?3) AND (?4 IS NULL OR session_id = ?4) \
                     ORDER BY room_id, session_id",
                )?;
                let rows = stmt.query_map(params![user_id, version, room_id, session_id], |row| {
                    Ok(RoomKey {
                        room_id: row.get(0)?,
                        session_id: row.get(1)?,
                        first_message_index: row.get(2)?,
                        forwarded_count: row.get(3)?,
                        is_verified: row.get(4)?,
                        session_data: row.get(5)?,
                    })
                })?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// Deletes keys from a version (all, one room's, or one session). Returns (etag, count).
    pub async fn delete_keys(
        &self,
        user_id: &str,
        version: i64,
        room_id: Option<String>,
        session_id: Option<String>,
    ) -> Result<(i64, u64)> {
        let user_id = user_id.to_owned();
        self.store
            .write(move |txn| {
                if version_info(txn, &user_id, version)?.is_none() {
                    return Err(Error::not_found("Unknown backup version."));
                }
                let deleted = txn.execute(
                    "DELETE FROM room_keys WHERE user_id = ?1 AND version = ?2 AND (?3 IS NULL OR room_id = ?3) AND (?4 IS NULL OR session_id = ?4)",
                    params![user_id, version, room_id, session_id],
                )?;
                if deleted > 0 {
                    bump_etag(txn, &user_id, version)?;
                }
                etag_and_count(txn, &user_id, version)
            })
            .await
    }
}

fn bump_etag(txn: &Transaction<'_>, user_id: &str, version: i64) -> Result<()> {
    txn.execute(
        "UPDATE room_key_backups SET etag = etag + 1 WHERE user_id = ?1 AND version = ?2",
        params![user_id, version],
    )?;
    Ok(())
}
