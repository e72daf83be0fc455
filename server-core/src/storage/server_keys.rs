//! Other servers' signing keys and the key responses they came in.

use rusqlite::{OptionalExtension, params};

use super::{Store, now_ms};
use crate::error::Result;

/// One signing key of another server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerKey {
    /// `ed25519:<version>`.
    pub key_id: String,
    /// The public key, unpadded base64.
    pub public_key: String,
    /// Until when it may verify requests and new events (ms), capped at seven days after
    /// the fetch.
    pub valid_until_ts: i64,
    /// When the server said it stopped using the key (`old_verify_keys`), if it did.
    pub expired_ts: Option<i64>,
}

/// A server's key response, as it came.
#[derive(Debug, Clone)]
pub struct KeyResponse {
    /// The JSON the server served, with its signatures.
    pub response: String,
    /// Its `valid_until_ts` as the server gave it.
    pub valid_until_ts: i64,
}

/// Other servers' keys.
pub struct ServerKeysStore<'a> {
    pub(super) store: &'a Store,
}

impl ServerKeysStore<'_> {
    /// Every key known for `server`, current and old.
    pub async fn keys_of(&self, server: &str) -> Result<Vec<ServerKey>> {
        let server = server.to_owned();
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT key_id, public_key, valid_until_ts, expired_ts
                     FROM server_signing_keys WHERE server_name = ?1",
                )?;
                let rows = stmt.query_map([server], |row| {
                    Ok(ServerKey {
                        key_id: row.get(0)?,
                        public_key: row.get(1)?,
                        valid_until_ts: row.get(2)?,
                        expired_ts: row.get(3)?,
                    })
                })?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
    }

    /// Records a verified key response and the keys in it, in one transaction. A key seen
    /// before keeps the later of its two validity times.
    pub async fn record(
        &self,
        server: &str,
        response: KeyResponse,
        keys: Vec<ServerKey>,
    ) -> Result<()> {
        let server = server.to_owned();
        self.store
            .write(move |txn| {
                for key in &keys {
                    txn.execute(
                        "INSERT INTO server_signing_keys
                             (server_name, key_id, public_key, valid_until_ts, expired_ts)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (server_name, key_id) DO UPDATE SET
                             public_key = excluded.public_key,
                             valid_until_ts = MAX(valid_until_ts, excluded.valid_until_ts),
                             expired_ts = COALESCE(excluded.expired_ts, expired_ts)",
                        params![
                            server,
                            key.key_id,
                            key.public_key,
                            key.valid_until_ts,
                            key.expired_ts
                        ],
                    )?;
                }
                txn.execute(
                    "INSERT INTO server_key_responses (server_name, response, valid_until_ts, fetched_ts)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (server_name) DO UPDATE SET response = excluded.response,
                         valid_until_ts = excluded.valid_until_ts, fetched_ts = excluded.fetched_ts",
                    params![server, response.response, response.valid_until_ts, now_ms()],
                )?;
                Ok(())
            })
            .await
    }

    /// The newest key response recorded for `server`.
    pub async fn response_of(&self, server: &str) -> Result<Option<KeyResponse>> {
        let server = server.to_owned();
        self.store
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT response, valid_until_ts FROM server_key_responses WHERE server_name = ?1",
                        [server],
                        |row| {
                            Ok(KeyResponse {
                                response: row.get(0)?,
                                valid_until_ts: row.get(1)?,
                            })
                        },
                    )
                    .optional()?)
            })
            .await
    }
}
