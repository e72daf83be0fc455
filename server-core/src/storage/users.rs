//! Users, their devices, access and refresh tokens, and registration tokens.

use rusqlite::{OptionalExtension, params};

use super::{Store, keys::record_device_list_change, now_ms};
use crate::error::Result;

/// A local account.
#[derive(Debug, Clone)]
pub struct User {
    /// The full user ID, `@alice:example.org`.
    pub user_id: String,
    /// The argon2 hash; `None` for accounts that cannot log in with a password.
    pub password_hash: Option<String>,
    /// Whether the user may use the admin API.
    pub admin: bool,
    /// Whether the account has been deactivated.
    pub deactivated: bool,
    /// The global display name.
    pub displayname: Option<String>,
    /// The global avatar.
    pub avatar_url: Option<String>,
}

/// A device (one login session).
#[derive(Debug, Clone)]
pub struct Device {
    /// The device ID.
    pub device_id: String,
    /// The name the user gave it.
    pub display_name: Option<String>,
    /// When it was last used, in ms since the epoch.
    pub last_seen_ts: Option<i64>,
    /// The address it was last used from.
    pub last_seen_ip: Option<String>,
}

/// Who an access token belongs to.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    /// The owner.
    pub user_id: String,
    /// The device the token was issued to.
    pub device_id: String,
    /// When it expires, for tokens issued with a refresh token.
    pub expires_ts: Option<i64>,
    /// Whether the owner is a server admin.
    pub admin: bool,
}

/// Users, devices and tokens.
pub struct UsersStore<'a> {
    pub(super) store: &'a Store,
}

fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        user_id: row.get(0)?,
        password_hash: row.get(1)?,
        admin: row.get(2)?,
        deactivated: row.get(3)?,
        displayname: row.get(4)?,
        avatar_url: row.get(5)?,
    })
}

const USER_COLUMNS: &str = "user_id, password_hash, admin, deactivated, displayname, avatar_url";

impl UsersStore<'_> {
    /// Forgets the client transaction IDs first seen before `before_ms`, and those of
    /// devices that no longer exist. Returns how many went.
    pub async fn prune_transaction_ids(&self, before_ms: i64) -> Result<usize> {
        self.store
            .write(move |txn| {
                Ok(txn.execute(
                    "DELETE FROM transaction_ids WHERE created_ts < ?1 OR NOT EXISTS \
                     (SELECT 1 FROM devices d WHERE d.user_id = transaction_ids.user_id \
                      AND d.device_id = transaction_ids.device_id)",
                    [before_ms],
                )?)
            })
            .await
    }

    /// Creates a user. Returns false when the localpart is already taken.
    pub async fn create(
        &self,
        user_id: &str,
        localpart: &str,
        password_hash: Option<String>,
        admin: bool,
    ) -> Result<bool> {
        let (user_id, localpart) = (user_id.to_owned(), localpart.to_owned());
        self.store
            .write(move |txn| {
                let inserted = txn.execute(
                    "INSERT OR IGNORE INTO users (user_id, localpart, password_hash, admin, created_ts) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![user_id, localpart, password_hash, admin, now_ms()],
                )?;
                Ok(inserted == 1)
            })
            .await
    }

    /// The user with this ID, or `None` if there is none.
    pub async fn get(&self, user_id: &str) -> Result<Option<User>> {
        let user_id = user_id.to_owned();
        self.store
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        &format!("SELECT {USER_COLUMNS} FROM users WHERE user_id = ?1"),
                        [user_id],
                        user_from_row,
                    )
                    .optional()?)
            })
            .await
    }

    /// Whether a localpart is taken (deactivated accounts keep theirs).
    pub async fn localpart_exists(&self, localpart: &str) -> Result<bool> {
        let localpart = localpart.to_owned();
        self.store
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT 1 FROM users WHERE localpart = ?1",
                        [localpart],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some())
            })
            .await
    }

    /// Counts accounts that are not deactivated.
    pub async fn count(&self) -> Result<u64> {
        let count: i64 = self
            .store
            .read(|conn| {
                Ok(conn.query_row(
                    "SELECT COUNT(*) FROM users WHERE deactivated = 0",
                    [],
                    |row| row.get(0),
                )?)
            })
            .await?;
        Ok(count.max(0) as u64)
    }

    /// Replaces the password hash. Nothing happens for an unknown user.
    pub async fn set_password_hash(&self, user_id: &str, hash: String) -> Result<()> {
        let user_id = user_id.to_owned();
        self.store
            .write(move |txn| {
                txn.execute(
                    "UPDATE users SET password_hash = ?2 WHERE user_id = ?1",
                    params![user_id, hash],
                )?;
                Ok(())
            })
            .await
    }

    /// Sets the global display name and avatar (either may be `None`).
    pub async fn set_profile(
        &self,
        user_id: &str,
        displayname: Option<String>,
        avatar_url: Option<String>,
    ) -> Result<()> {
        let user_id = user_id.to_owned();
        self.store
            .write(move |txn| {
                txn.execute(
                    "UPDATE users SET displayname = ?2, avatar_url = ?3 WHERE user_id = ?1",
                    params![user_id, displayname, avatar_url],
                )?;
                Ok(())
            })
            .await
    }

    /// Marks the account deactivated, clears its password and profile, and deletes every
    /// device and token, in one transaction. Returns the deleted devices, each with the
    /// device list change that records it.
    pub async fn deactivate(&self, user_id: &str) -> Result<Vec<(String, i64)>> {
        let user_id = user_id.to_owned();
        self.store
            .write_sessions(move |txn| {
                txn.execute(
                    "UPDATE users SET deactivated = 1, password_hash = NULL, displayname = NULL, avatar_url = NULL WHERE user_id = ?1",
                    [&user_id],
                )?;
                let removed = delete_devices_in(txn, &user_id, None)?;
                // Its encryption identity goes too; the others' clients learn it through the
                // device list (device keys go with the devices).
                txn.execute("DELETE FROM cross_signing_keys WHERE user_id = ?1", [&user_id])?;
                txn.execute("DELETE FROM key_signatures WHERE target_user = ?1", [&user_id])?;
                record_device_list_change(txn, &user_id)?;
                Ok(removed)
            })
            .await
    }

    /// Searches users by ID or display name (case-insensitive substring), for the user directory.
    pub async fn search(&self, term: &str, limit: u32) -> Result<Vec<User>> {
        let pattern = format!(
            "%{}%",
            term.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE deactivated = 0 AND \
                     (user_id LIKE ?1 ESCAPE '\\' OR displayname LIKE ?1 ESCAPE '\\') ORDER BY user_id LIMIT ?2"
                ))?;
                let rows = stmt.query_map(params![pattern, limit], user_from_row)?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// Creates a device (or keeps an existing one with that ID) and issues an access token
    /// for it, plus a refresh token when `refresh_hash` is given.
    pub async fn create_session(
        &self,
        user_id: &str,
        device_id: &str,
        display_name: Option<String>,
        token_hash: String,
        expires_ts: Option<i64>,
        refresh_hash: Option<String>,
    ) -> Result<()> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        self.store
            .write_sessions(move |txn| {
                // Logging in again with the same device ID replaces that device's tokens
                // (spec: client-server-api/_index.md, "POST /login", device_id).
                txn.execute(
                    "INSERT INTO devices (user_id, device_id, display_name, last_seen_ts) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (user_id, device_id) DO UPDATE SET display_name = COALESCE(excluded.display_name, display_name)",
                    params![user_id, device_id, display_name, now_ms()],
                )?;
                txn.execute("DELETE FROM access_tokens WHERE user_id = ?1 AND device_id = ?2", params![user_id, device_id])?;
                txn.execute("DELETE FROM refresh_tokens WHERE user_id = ?1 AND device_id = ?2", params![user_id, device_id])?;
                txn.execute(
                    "INSERT INTO access_tokens (token_hash, user_id, device_id, expires_ts, created_ts) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![token_hash, user_id, device_id, expires_ts, now_ms()],
                )?;
                if let Some(refresh_hash) = refresh_hash {
                    txn.execute(
                        "INSERT INTO refresh_tokens (token_hash, user_id, device_id) VALUES (?1, ?2, ?3)",
                        params![refresh_hash, user_id, device_id],
                    )?;
                }
                Ok(())
            })
            .await
    }

    /// Swaps a refresh token for new tokens on the same device. Returns the owner and the
    /// device, or `None` when the refresh token is unknown (already used, or logged out).
    pub async fn rotate_refresh_token(
        &self,
        old_refresh_hash: String,
        token_hash: String,
        expires_ts: i64,
        refresh_hash: String,
    ) -> Result<Option<(String, String)>> {
        self.store
            .write_sessions(move |txn| {
                let owner: Option<(String, String)> = txn
                    .query_row(
                        "DELETE FROM refresh_tokens WHERE token_hash = ?1 RETURNING user_id, device_id",
                        [&old_refresh_hash],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .optional()?;
                let Some((user_id, device_id)) = owner else { return Ok(None) };
                txn.execute("DELETE FROM access_tokens WHERE user_id = ?1 AND device_id = ?2", params![user_id, device_id])?;
                txn.execute(
                    "INSERT INTO access_tokens (token_hash, user_id, device_id, expires_ts, created_ts) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![token_hash, user_id, device_id, expires_ts, now_ms()],
                )?;
                txn.execute(
                    "INSERT INTO refresh_tokens (token_hash, user_id, device_id) VALUES (?1, ?2, ?3)",
                    params![refresh_hash, user_id, device_id],
                )?;
                Ok(Some((user_id, device_id)))
            })
            .await
    }

    /// Who holds the access token with this hash, or `None` if nobody does.
    pub async fn token_owner(&self, token_hash: &str) -> Result<Option<TokenInfo>> {
        let generation = {
            let cache = self.store.token_cache();
            if let Some(info) = cache.owners.get(token_hash) {
                return Ok(Some(info.clone()));
            }
            cache.generation
        };
        let hash = token_hash.to_owned();
        let info = self
            .store
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT t.user_id, t.device_id, t.expires_ts, u.admin FROM access_tokens t \
                         JOIN users u ON u.user_id = t.user_id WHERE t.token_hash = ?1",
                    )?
                    .query_row([hash], |row| {
                        Ok(TokenInfo {
                            user_id: row.get(0)?,
                            device_id: row.get(1)?,
                            expires_ts: row.get(2)?,
                            admin: row.get(3)?,
                        })
                    })
                    .optional()?)
            })
            .await?;
        if let Some(info) = &info {
            let mut cache = self.store.token_cache();
            // A write that ended tokens since the read began: the answer may be stale.
            if cache.generation == generation {
                if cache.owners.len() >= super::TOKEN_CACHE {
                    cache.owners.clear();
                }
                cache.owners.insert(token_hash.to_owned(), info.clone());
            }
        }
        Ok(info)
    }

    /// Deletes a device with its tokens. Returns the device list change that records it,
    /// or `None` when there was no such device.
    pub async fn delete_device(&self, user_id: &str, device_id: &str) -> Result<Option<i64>> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        self.store
            .write_sessions(move |txn| {
                let deleted = txn.execute(
                    "DELETE FROM devices WHERE user_id = ?1 AND device_id = ?2",
                    params![user_id, device_id],
                )? == 1;
                // Its keys went with it (ON DELETE CASCADE); other users must hear of it.
                Ok(if deleted {
                    Some(record_device_list_change(txn, &user_id)?)
                } else {
                    None
                })
            })
            .await
    }

    /// Deletes every device of a user except `keep` (if given), with their tokens. Returns
    /// the deleted devices, each with the device list change that records it.
    pub async fn delete_devices_except(
        &self,
        user_id: &str,
        keep: Option<String>,
    ) -> Result<Vec<(String, i64)>> {
        let user_id = user_id.to_owned();
        self.store
            .write_sessions(move |txn| delete_devices_in(txn, &user_id, keep.as_deref()))
            .await
    }

    /// The user's devices, oldest first.
    pub async fn devices(&self, user_id: &str) -> Result<Vec<Device>> {
        let user_id = user_id.to_owned();
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare(
                    "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices WHERE user_id = ?1 ORDER BY rowid",
                )?;
                let rows = stmt.query_map([user_id], |row| {
                    Ok(Device {
                        device_id: row.get(0)?,
                        display_name: row.get(1)?,
                        last_seen_ts: row.get(2)?,
                        last_seen_ip: row.get(3)?,
                    })
                })?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// Renames a device. Returns false when there is no such device.
    pub async fn rename_device(
        &self,
        user_id: &str,
        device_id: &str,
        name: Option<String>,
    ) -> Result<bool> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        self.store
            .write(move |txn| {
                let renamed = txn.execute(
                    "UPDATE devices SET display_name = ?3 WHERE user_id = ?1 AND device_id = ?2",
                    params![user_id, device_id, name],
                )? == 1;
                if renamed {
                    // The name is part of what keys/query shows others.
                    record_device_list_change(txn, &user_id)?;
                }
                Ok(renamed)
            })
            .await
    }

    /// Records that a device was just used from `ip`.
    pub async fn touch_device(
        &self,
        user_id: &str,
        device_id: &str,
        ip: Option<String>,
    ) -> Result<()> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        self.store
            .write(move |txn| {
                txn.execute(
                    "UPDATE devices SET last_seen_ts = ?3, last_seen_ip = COALESCE(?4, last_seen_ip) WHERE user_id = ?1 AND device_id = ?2",
                    params![user_id, device_id, now_ms(), ip],
                )?;
                Ok(())
            })
            .await
    }

    /// Creates a registration token.
    pub async fn create_registration_token(
        &self,
        token: &str,
        uses_allowed: Option<u32>,
        expiry_ts: Option<i64>,
    ) -> Result<()> {
        let token = token.to_owned();
        self.store
            .write(move |txn| {
                txn.execute(
                    "INSERT INTO registration_tokens (token, uses_allowed, expiry_ts) VALUES (?1, ?2, ?3)",
                    params![token, uses_allowed, expiry_ts],
                )?;
                Ok(())
            })
            .await
    }

    /// Whether a registration token exists, has uses left and has not expired.
    pub async fn registration_token_valid(&self, token: &str) -> Result<bool> {
        let token = token.to_owned();
        self.store
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT 1 FROM registration_tokens WHERE token = ?1 \
                         AND (uses_allowed IS NULL OR completed < uses_allowed) AND (expiry_ts IS NULL OR expiry_ts > ?2)",
                        params![token, now_ms()],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some())
            })
            .await
    }

    /// Counts one completed registration against a token.
    pub async fn use_registration_token(&self, token: &str) -> Result<()> {
        let token = token.to_owned();
        self.store
            .write(move |txn| {
                txn.execute(
                    "UPDATE registration_tokens SET completed = completed + 1 WHERE token = ?1",
                    [token],
                )?;
                Ok(())
            })
            .await
    }
}

/// Deletes a user's devices but `keep`, each with a device list change of its own, so that
/// other servers hear of each one (spec: server-server-api.md, "Device Management").
fn delete_devices_in(
    txn: &rusqlite::Transaction<'_>,
    user_id: &str,
    keep: Option<&str>,
) -> Result<Vec<(String, i64)>> {
    let devices: Vec<String> = txn
        .prepare(
            "SELECT device_id FROM devices WHERE user_id = ?1 AND (?2 IS NULL OR device_id != ?2)",
        )?
        .query_map(params![user_id, keep], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut removed = Vec::with_capacity(devices.len());
    for device_id in devices {
        txn.execute(
            "DELETE FROM devices WHERE user_id = ?1 AND device_id = ?2",
            params![user_id, device_id],
        )?;
        let pos = record_device_list_change(txn, user_id)?;
        removed.push((device_id, pos));
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn old_transaction_ids_and_those_of_deleted_devices_are_forgotten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("kith.db")).expect("open");
        store
            .users()
            .create("@a:x", "a", None, false)
            .await
            .expect("user");
        store
            .write(|txn| {
                txn.execute(
                    "INSERT INTO devices (user_id, device_id) VALUES ('@a:x', 'PHONE')",
                    [],
                )?;
                for (device, txn_id, created_ts) in [
                    ("PHONE", "old", 1_000),
                    ("PHONE", "new", 5_000),
                    ("GONE", "new", 5_000),
                ] {
                    txn.execute(
                        "INSERT INTO transaction_ids (user_id, device_id, scope, txn_id, result, created_ts) \
                         VALUES ('@a:x', ?1, 'send', ?2, '$e', ?3)",
                        params![device, txn_id, created_ts],
                    )?;
                }
                Ok(())
            })
            .await
            .expect("rows");
        let pruned = store
            .users()
            .prune_transaction_ids(2_000)
            .await
            .expect("pruned");
        assert_eq!(pruned, 2);
        let left: Vec<(String, String)> = store
            .read(|conn| {
                let mut statement =
                    conn.prepare("SELECT device_id, txn_id FROM transaction_ids")?;
                let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
            .expect("read");
        assert_eq!(left, [("PHONE".to_owned(), "new".to_owned())]);
    }
}
