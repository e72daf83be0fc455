//! Account data (global and per room), read receipts, and stored filters.

use rusqlite::{OptionalExtension, params};

use super::{Store, next_stream_pos};
use crate::error::Result;

/// A read receipt.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// The room.
    pub room_id: String,
    /// Who read.
    pub user_id: String,
    /// `m.read` or `m.read.private`.
    pub receipt_type: String,
    /// The thread, or `""` for an unthreaded receipt.
    pub thread_id: String,
    /// Up to which event.
    pub event_id: String,
    /// When, in ms since the epoch.
    pub ts: i64,
}

/// Account data, receipts and filters.
pub struct AccountDataStore<'a> {
    pub(super) store: &'a Store,
}

impl AccountDataStore<'_> {
    /// Sets (or replaces) one account data entry; `room_id` is `""` for global data.
    /// Returns its stream position.
    pub async fn set(
        &self,
        user_id: &str,
        room_id: &str,
        data_type: &str,
        content: String,
    ) -> Result<i64> {
        let (user_id, room_id, data_type) =
            (user_id.to_owned(), room_id.to_owned(), data_type.to_owned());
        self.store
            .write(move |txn| {
                let pos = next_stream_pos(txn)?;
                txn.execute(
                    "INSERT INTO account_data (user_id, room_id, data_type, content, stream_pos) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (user_id, room_id, data_type) DO UPDATE SET content = excluded.content, stream_pos = excluded.stream_pos",
                    params![user_id, room_id, data_type, content, pos],
                )?;
                Ok(pos)
            })
            .await
    }

    /// One entry's content, or `None` if unset.
    pub async fn get(
        &self,
        user_id: &str,
        room_id: &str,
        data_type: &str,
    ) -> Result<Option<String>> {
        let args = [user_id.to_owned(), room_id.to_owned(), data_type.to_owned()];
        self.store
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT content FROM account_data WHERE user_id = ?1 AND room_id = ?2 AND data_type = ?3",
                        args,
                        |row| row.get(0),
                    )
                    .optional()?)
            })
            .await
    }

    /// Entries changed after `since`, as (room_id, type, content).
    pub async fn changed_since(
        &self,
        user_id: &str,
        since: i64,
    ) -> Result<Vec<(String, String, String)>> {
        let user_id = user_id.to_owned();
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT room_id, data_type, content FROM account_data WHERE user_id = ?1 AND stream_pos > ?2",
                )?;
                let rows = stmt.query_map(params![user_id, since], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// Sets a user's receipt of one type (and thread) in a room. Returns its stream position.
    pub async fn set_receipt(&self, receipt: Receipt) -> Result<i64> {
        self.store
            .write(move |txn| {
                let pos = next_stream_pos(txn)?;
                txn.execute(
                    "INSERT INTO receipts (room_id, user_id, receipt_type, thread_id, event_id, ts, stream_pos) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (room_id, user_id, receipt_type, thread_id) \
                     DO UPDATE SET event_id = excluded.event_id, ts = excluded.ts, stream_pos = excluded.stream_pos",
                    params![
                        receipt.room_id,
                        receipt.user_id,
                        receipt.receipt_type,
                        receipt.thread_id,
                        receipt.event_id,
                        receipt.ts,
                        pos
                    ],
                )?;
                Ok(pos)
            })
            .await
    }

    /// Receipts in a room changed after `since` (all of them when `since` is 0).
    pub async fn receipts_since(&self, room_id: &str, since: i64) -> Result<Vec<Receipt>> {
        let room_id = room_id.to_owned();
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT room_id, user_id, receipt_type, thread_id, event_id, ts FROM receipts WHERE room_id = ?1 AND stream_pos > ?2",
                )?;
                let rows = stmt.query_map(params![room_id, since], |row| {
                    Ok(Receipt {
                        room_id: row.get(0)?,
                        user_id: row.get(1)?,
                        receipt_type: row.get(2)?,
                        thread_id: row.get(3)?,
                        event_id: row.get(4)?,
                        ts: row.get(5)?,
                    })
                })?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// The stream position of the user's newest read receipt (public or private) in a room, or 0.
    pub async fn read_up_to(&self, room_id: &str, user_id: &str) -> Result<i64> {
        let args = [room_id.to_owned(), user_id.to_owned()];
        self.store
            .read(move |conn| {
                Ok(conn.query_row(
                    "SELECT COALESCE(MAX(e.stream_pos), 0) FROM receipts r JOIN events e ON e.event_id = r.event_id \
                     WHERE r.room_id = ?1 AND r.user_id = ?2 AND r.receipt_type IN ('m.read', 'm.read.private')",
                    args,
                    |row| row.get(0),
                )?)
            })
            .await
    }

    /// Stores a filter and returns its new ID.
    pub async fn create_filter(&self, user_id: &str, json: String) -> Result<i64> {
        let user_id = user_id.to_owned();
        self.store
            .write(move |txn| {
                let id: i64 = txn.query_row(
                    "SELECT COALESCE(MAX(filter_id), -1) + 1 FROM filters WHERE user_id = ?1",
                    [&user_id],
                    |row| row.get(0),
                )?;
                txn.execute(
                    "INSERT INTO filters (user_id, filter_id, json) VALUES (?1, ?2, ?3)",
                    params![user_id, id, json],
                )?;
                Ok(id)
            })
            .await
    }

    /// A stored filter's JSON, or `None` if unknown.
    pub async fn filter(&self, user_id: &str, filter_id: i64) -> Result<Option<String>> {
        let user_id = user_id.to_owned();
        self.store
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT json FROM filters WHERE user_id = ?1 AND filter_id = ?2",
                        params![user_id, filter_id],
                        |row| row.get(0),
                    )
                    .optional()?)
            })
            .await
    }
}
