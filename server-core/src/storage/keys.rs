//! End-to-end encryption keys: device keys, one-time and fallback keys, cross-signing keys,
//! signatures, and the device list change stream. Keys are stored as the JSON the client
//! signed; nothing here decides whether a key or signature is acceptable (the service does).

use rusqlite::{OptionalExtension, Transaction, params};

use super::{Store, next_stream_pos};
use crate::error::{Error, Result};

/// A one-time or fallback key as uploaded: `<algorithm>:<id>` and its signed JSON.
#[derive(Debug, Clone)]
pub struct OneTimeKey {
    /// The algorithm (the part of the key ID before the colon).
    pub algorithm: String,
    /// The whole key ID, `<algorithm>:<id>`.
    pub key_id: String,
    /// The key object (or, for old clients, the bare key string) as JSON text.
    pub json: String,
}

/// What `keys/upload` stores, for one device.
#[derive(Debug, Clone, Default)]
pub struct KeyUpload {
    /// The device's identity keys, as JSON text.
    pub device_keys: Option<String>,
    /// New one-time keys.
    pub one_time_keys: Vec<OneTimeKey>,
    /// New fallback keys (one per algorithm; each replaces the previous one).
    pub fallback_keys: Vec<OneTimeKey>,
}

/// A device's identity keys with the device's display name.
#[derive(Debug, Clone)]
pub struct DeviceKeys {
    /// The device.
    pub device_id: String,
    /// The keys as the client uploaded them.
    pub json: String,
    /// The device's display name, if set.
    pub display_name: Option<String>,
}

/// A cross-signing key.
#[derive(Debug, Clone)]
pub struct CrossSigningKey {
    /// `master`, `self_signing` or `user_signing`.
    pub key_type: String,
    /// The unpadded base64 public key.
    pub public_key: String,
    /// The key object as uploaded.
    pub json: String,
}

/// A signature added with `keys/signatures/upload`.
#[derive(Debug, Clone)]
pub struct KeySignature {
    /// Whose key is signed.
    pub target_user: String,
    /// The device ID or cross-signing public key that is signed.
    pub target_key: String,
    /// Who signed.
    pub signer_user: String,
    /// The signing key's ID (`ed25519:<device or public key>`).
    pub signer_key: String,
    /// The signature, unpadded base64.
    pub signature: String,
}

/// A membership change that device list tracking looks at.
#[derive(Debug, Clone)]
pub struct MembershipChange {
    /// The room.
    pub room_id: String,
    /// Whose membership.
    pub user_id: String,
    /// `join`, `leave`, `ban`, `invite` or `knock`.
    pub membership: String,
    /// When it last changed.
    pub stream_pos: i64,
    /// The asking user's own current membership of the room.
    pub my_membership: String,
    /// When that last changed.
    pub my_stream_pos: i64,
}

/// Encryption keys and device lists.
pub struct KeysStore<'a> {
    pub(super) store: &'a Store,
}

/// Records that `user_id`'s device list or cross-signing keys changed, at a new position.
pub(crate) fn record_device_list_change(txn: &Transaction<'_>, user_id: &str) -> Result<i64> {
    let pos = next_stream_pos(txn)?;
    txn.execute(
        "INSERT INTO device_list_changes (stream_pos, user_id) VALUES (?1, ?2)",
        params![pos, user_id],
    )?;
    Ok(pos)
}

impl KeysStore<'_> {
    /// Stores a device's upload in one transaction. A one-time key ID that is already
    /// stored with different content fails the whole upload (the client has lost track of
    /// its keys); the same key again is ignored. Changed device keys are a device list
    /// change. Returns whether the device keys changed.
    pub async fn upload(&self, user_id: &str, device_id: &str, upload: KeyUpload) -> Result<bool> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        self.store
            .write(move |txn| {
                let mut changed = false;
                if let Some(json) = &upload.device_keys {
                    let old: Option<String> = txn
                        .query_row(
                            "SELECT json FROM device_keys WHERE user_id = ?1 AND device_id = ?2",
                            params![user_id, device_id],
                            |row| row.get(0),
                        )
                        .optional()?;
                    if old.as_deref() != Some(json.as_str()) {
                        txn.execute(
                            "INSERT INTO device_keys (user_id, device_id, json) VALUES (?1, ?2, ?3) \
                             ON CONFLICT (user_id, device_id) DO UPDATE SET json = excluded.json",
                            params![user_id, device_id, json],
                        )?;
                        record_device_list_change(txn, &user_id)?;
                        changed = true;
                    }
                }
                for key in &upload.one_time_keys {
                    let old: Option<String> = txn
                        .query_row(
                            "SELECT json FROM one_time_keys WHERE user_id = ?1 AND device_id = ?2 AND key_id = ?3",
                            params![user_id, device_id, key.key_id],
                            |row| row.get(0),
                        )
                        .optional()?;
                    match old {
                        Some(old) if old == key.json => {}
                        Some(_) => {
                            return Err(Error::invalid_param(format!(
                                "One-time key {} already exists with different content.",
                                key.key_id
                            )));
                        }
                        None => {
                            txn.execute(
                                "INSERT INTO one_time_keys (user_id, device_id, algorithm, key_id, json) VALUES (?1, ?2, ?3, ?4, ?5)",
                                params![user_id, device_id, key.algorithm, key.key_id, key.json],
                            )?;
                        }
                    }
                }
                for key in &upload.fallback_keys {
                    // The same key uploaded again keeps its `used` flag; a new key is unused.
                    txn.execute(
                        "INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, json, used) VALUES (?1, ?2, ?3, ?4, ?5, 0) \
                         ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET key_id = excluded.key_id, json = excluded.json, used = 0 \
                         WHERE fallback_keys.key_id != excluded.key_id OR fallback_keys.json != excluded.json",
                        params![user_id, device_id, key.algorithm, key.key_id, key.json],
                    )?;
                }
                Ok(changed)
            })
            .await
    }

    /// How many unclaimed one-time keys the device has, per algorithm.
    pub async fn one_time_key_counts(
        &self,
        user_id: &str,
        device_id: &str,
    ) -> Result<Vec<(String, u64)>> {
        let args = [user_id.to_owned(), device_id.to_owned()];
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT algorithm, COUNT(*) FROM one_time_keys WHERE user_id = ?1 AND device_id = ?2 AND claimed = 0 GROUP BY algorithm",
                )?;
                let rows = stmt.query_map(args, |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })?;
                let counts: Vec<(String, i64)> = rows.collect::<rusqlite::Result<_>>()?;
                Ok(counts
                    .into_iter()
                    .map(|(algorithm, n)| (algorithm, u64::try_from(n).unwrap_or(0)))
                    .collect())
            })
            .await
    }

    /// The algorithms of the device's fallback keys that no claim has used yet.
    pub async fn unused_fallback_key_types(
        &self,
        user_id: &str,
        device_id: &str,
    ) -> Result<Vec<String>> {
        let args = [user_id.to_owned(), device_id.to_owned()];
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT algorithm FROM fallback_keys WHERE user_id = ?1 AND device_id = ?2 AND used = 0 ORDER BY algorithm",
                )?;
                let rows = stmt.query_map(args, |row| row.get(0))?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// The identity keys of a user's devices (of the given devices, or all when empty).
    pub async fn device_keys(
        &self,
        user_id: &str,
        devices: Vec<String>,
    ) -> Result<Vec<DeviceKeys>> {
        let user_id = user_id.to_owned();
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT k.device_id, k.json, d.display_name FROM device_keys k \
                     JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id \
                     WHERE k.user_id = ?1 ORDER BY k.device_id",
                )?;
                let rows = stmt.query_map([&user_id], |row| {
                    Ok(DeviceKeys {
                        device_id: row.get(0)?,
                        json: row.get(1)?,
                        display_name: row.get(2)?,
                    })
                })?;
                let all: Vec<DeviceKeys> = rows.collect::<rusqlite::Result<_>>()?;
                Ok(if devices.is_empty() {
                    all
                } else {
                    all.into_iter()
                        .filter(|k| devices.contains(&k.device_id))
                        .collect()
                })
            })
            .await
    }

    /// A user's cross-signing keys.
    pub async fn cross_signing_keys(&self, user_id: &str) -> Result<Vec<CrossSigningKey>> {
        let user_id = user_id.to_owned();
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT key_type, public_key, json FROM cross_signing_keys WHERE user_id = ?1",
                )?;
                let rows = stmt.query_map([&user_id], |row| {
                    Ok(CrossSigningKey {
                        key_type: row.get(0)?,
                        public_key: row.get(1)?,
                        json: row.get(2)?,
                    })
                })?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// Replaces some of a user's cross-signing keys, as one device list change.
    pub async fn set_cross_signing_keys(
        &self,
        user_id: &str,
        keys: Vec<CrossSigningKey>,
        replace: bool,
    ) -> Result<bool> {
        let user_id = user_id.to_owned();
        self.store
            .write(move |txn| {
                if !replace {
                    // Checked again here, in the write transaction, so that two first uploads
                    // racing cannot both skip authentication.
                    for key in &keys {
                        let stored: Option<String> = txn
                            .query_row(
                                "SELECT json FROM cross_signing_keys WHERE user_id = ?1 AND key_type = ?2",
                                params![user_id, key.key_type],
                                |row| row.get(0),
                            )
                            .optional()?;
                        if stored.is_some_and(|json| json != key.json) {
                            return Ok(false);
                        }
                    }
                }
                for key in &keys {
                    txn.execute(
                        "INSERT INTO cross_signing_keys (user_id, key_type, public_key, json) VALUES (?1, ?2, ?3, ?4) \
                         ON CONFLICT (user_id, key_type) DO UPDATE SET public_key = excluded.public_key, json = excluded.json",
                        params![user_id, key.key_type, key.public_key, key.json],
                    )?;
                }
                record_device_list_change(txn, &user_id)?;
                Ok(true)
            })
            .await
    }

    /// Signatures stored for a user's keys.
    pub async fn signatures_for(&self, target_user: &str) -> Result<Vec<KeySignature>> {
        let target_user = target_user.to_owned();
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT target_user, target_key, signer_user, signer_key, signature FROM key_signatures WHERE target_user = ?1",
                )?;
                let rows = stmt.query_map([&target_user], |row| {
                    Ok(KeySignature {
                        target_user: row.get(0)?,
                        target_key: row.get(1)?,
                        signer_user: row.get(2)?,
                        signer_key: row.get(3)?,
                        signature: row.get(4)?,
                    })
                })?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// Stores verified signatures. Each user in `changed` gets a device list change; each
    /// (user, viewer) in `changed_for` one that only the viewer is told of.
    pub async fn add_signatures(
        &self,
        signatures: Vec<KeySignature>,
        changed: Vec<String>,
        changed_for: Vec<(String, String)>,
    ) -> Result<()> {
        self.store
            .write(move |txn| {
                for s in &signatures {
                    txn.execute(
                        "INSERT INTO key_signatures (target_user, target_key, signer_user, signer_key, signature) VALUES (?1, ?2, ?3, ?4, ?5) \
                         ON CONFLICT DO UPDATE SET signature = excluded.signature",
                        params![s.target_user, s.target_key, s.signer_user, s.signer_key, s.signature],
                    )?;
                }
                for user in &changed {
                    record_device_list_change(txn, user)?;
                }
                for (user, viewer) in &changed_for {
                    let pos = next_stream_pos(txn)?;
                    txn.execute(
                        "INSERT INTO device_list_changes (stream_pos, user_id, visible_to) VALUES (?1, ?2, ?3)",
                        params![pos, user, viewer],
                    )?;
                }
                Ok(())
            })
            .await
    }

    /// Claims one key per (user, device, algorithm), in one transaction: an unclaimed
    /// one-time key if there is one (it is then deleted), else the fallback key (then marked
    /// used). Returns (user, device, key ID, key JSON) for each claim that found a key.
    pub async fn claim(
        &self,
        requests: Vec<(String, String, String)>,
    ) -> Result<Vec<(String, String, String, String)>> {
        self.store
            .write(move |txn| {
                let mut claimed = Vec::new();
                for (user, device, algorithm) in requests {
                    let one_time: Option<(String, String)> = txn
                        .query_row(
                            // Oldest first: "given out in the order that they were uploaded"
                            // (spec: keys.yaml, POST /keys/claim).
                            "UPDATE one_time_keys SET claimed = 1 WHERE rowid = (SELECT rowid FROM one_time_keys \
                             WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3 AND claimed = 0 ORDER BY rowid LIMIT 1) \
                             RETURNING key_id, json",
                            params![user, device, algorithm],
                            |row| Ok((row.get(0)?, row.get(1)?)),
                        )
                        .optional()?;
                    let key = match one_time {
                        Some(key) => Some(key),
                        None => txn
                            .query_row(
                                "UPDATE fallback_keys SET used = 1 WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3 \
                                 RETURNING key_id, json",
                                params![user, device, algorithm],
                                |row| Ok((row.get(0)?, row.get(1)?)),
                            )
                            .optional()?,
                    };
                    if let Some((key_id, json)) = key {
                        claimed.push((user, device, key_id, json));
                    }
                }
                Ok(claimed)
            })
            .await
    }

    /// The positions of a user's last device list change seen by everyone, and of the one
    /// before it (the stream and prev IDs of `m.device_list_update`).
    pub async fn last_two_changes(&self, user_id: &str) -> Result<(i64, Option<i64>)> {
        let user_id = user_id.to_owned();
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT stream_pos FROM device_list_changes WHERE user_id = ?1 AND visible_to IS NULL \
                     ORDER BY stream_pos DESC LIMIT 2",
                )?;
                let positions: Vec<i64> = stmt
                    .query_map([user_id], |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                Ok((positions.first().copied().unwrap_or(0), positions.get(1).copied()))
            })
            .await
    }

    /// The user's device list change just before `pos`, if any.
    pub async fn change_before(&self, user_id: &str, pos: i64) -> Result<Option<i64>> {
        let user_id = user_id.to_owned();
        self.store
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT MAX(stream_pos) FROM device_list_changes WHERE user_id = ?1 \
                         AND visible_to IS NULL AND stream_pos < ?2",
                    )?
                    .query_row(params![user_id, pos], |row| row.get(0))?)
            })
            .await
    }

    /// Records that another server's user's device list changed.
    pub async fn remote_device_list_changed(&self, user_id: &str) -> Result<()> {
        let user_id = user_id.to_owned();
        self.store
            .write(move |txn| {
                record_device_list_change(txn, &user_id)?;
                Ok(())
            })
            .await
    }

    /// Users whose device lists changed in `(after, up_to]`, as seen by `viewer`: each with
    /// whether the change was addressed to the viewer alone.
    pub async fn device_list_changes(
        &self,
        viewer: &str,
        after: i64,
        up_to: i64,
    ) -> Result<Vec<(String, bool)>> {
        let viewer = viewer.to_owned();
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT DISTINCT user_id, visible_to IS NOT NULL FROM device_list_changes \
                     WHERE stream_pos > ?1 AND stream_pos <= ?2 AND (visible_to IS NULL OR visible_to = ?3)",
                )?;
                let rows = stmt.query_map(params![after, up_to, viewer], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// Everyone who is joined to a room that `user_id` is joined to (the user included,
    /// if joined anywhere).
    pub async fn users_sharing_a_room(&self, user_id: &str) -> Result<Vec<String>> {
        let user_id = user_id.to_owned();
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT DISTINCT other.user_id FROM memberships mine \
                     JOIN memberships other ON other.room_id = mine.room_id \
                     WHERE mine.user_id = ?1 AND mine.membership = 'join' AND other.membership = 'join'",
                )?;
                let rows = stmt.query_map([&user_id], |row| row.get(0))?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// Membership changes after `after` (up to `up_to`) in rooms where `user_id` has any
    /// membership, plus, for each room whose membership of `user_id` itself changed then,
    /// every current member of that room (their rows carry the room's current membership).
    pub async fn membership_changes_around(
        &self,
        user_id: &str,
        after: i64,
        up_to: i64,
    ) -> Result<Vec<MembershipChange>> {
        let user_id = user_id.to_owned();
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT other.room_id, other.user_id, other.membership, other.stream_pos, \
                     mine.membership, mine.stream_pos FROM memberships mine \
                     JOIN memberships other ON other.room_id = mine.room_id \
                     WHERE mine.user_id = ?1 AND ( \
                        (other.stream_pos > ?2 AND other.stream_pos <= ?3) \
                        OR (mine.stream_pos > ?2 AND mine.stream_pos <= ?3))",
                )?;
                let rows = stmt.query_map(params![user_id, after, up_to], |row| {
                    Ok(MembershipChange {
                        room_id: row.get(0)?,
                        user_id: row.get(1)?,
                        membership: row.get(2)?,
                        stream_pos: row.get(3)?,
                        my_membership: row.get(4)?,
                        my_stream_pos: row.get(5)?,
                    })
                })?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }
}
