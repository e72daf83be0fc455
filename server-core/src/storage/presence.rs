//! Presence rows: one per user, local or remote, with the stream position of its last change.

use rusqlite::{OptionalExtension, params};

use super::{Store, exec, next_stream_pos};
use crate::error::Result;

/// A user's stored presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceRow {
    /// The user.
    pub user_id: String,
    /// `online`, `unavailable` or `offline`.
    pub presence: String,
    /// The status message, if any.
    pub status_msg: Option<String>,
    /// When the user last did something, in ms since the epoch.
    pub last_active_ts: i64,
    /// Whether the user's server said they are at their client right now.
    pub currently_active: bool,
    /// The stream position of the last change.
    pub stream_pos: i64,
}

const COLUMNS: &str = "user_id, presence, status_msg, last_active_ts, currently_active, stream_pos";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<PresenceRow> {
    Ok(PresenceRow {
        user_id: row.get(0)?,
        presence: row.get(1)?,
        status_msg: row.get(2)?,
        last_active_ts: row.get(3)?,
        currently_active: row.get(4)?,
        stream_pos: row.get(5)?,
    })
}

/// Presence of users.
pub struct PresenceStore<'a> {
    pub(super) store: &'a Store,
}

impl PresenceStore<'_> {
    /// Stores a user's presence (`stream_pos` is ignored: the change takes the next
    /// position). Returns that position.
    pub async fn set(&self, row: PresenceRow) -> Result<i64> {
        self.store
            .write(move |txn| {
                let pos = next_stream_pos(txn)?;
                exec(
                    txn,
                    "INSERT INTO presence (user_id, presence, status_msg, last_active_ts, currently_active, stream_pos) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (user_id) DO UPDATE SET \
                     presence = excluded.presence, status_msg = excluded.status_msg, \
                     last_active_ts = excluded.last_active_ts, \
                     currently_active = excluded.currently_active, stream_pos = excluded.stream_pos",
                    params![
                        row.user_id,
                        row.presence,
                        row.status_msg,
                        row.last_active_ts,
                        row.currently_active,
                        pos
                    ],
                )?;
                Ok(pos)
            })
            .await
    }

    /// A user's stored presence, or `None`.
    pub async fn get(&self, user_id: &str) -> Result<Option<PresenceRow>> {
        let user_id = user_id.to_owned();
        self.store
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM presence WHERE user_id = ?1"
                    ))?
                    .query_row([user_id], from_row)
                    .optional()?)
            })
            .await
    }

    /// The presence that changed in `(since, until]` of `user_id` and of every user who
    /// shares a joined room with them.
    pub async fn changed_for(
        &self,
        user_id: &str,
        since: i64,
        until: i64,
    ) -> Result<Vec<PresenceRow>> {
        let user_id = user_id.to_owned();
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM presence p WHERE p.stream_pos > ?2 AND p.stream_pos <= ?3 \
                     AND (p.user_id = ?1 OR EXISTS (SELECT 1 FROM memberships a JOIN memberships b \
                     ON a.room_id = b.room_id WHERE a.user_id = ?1 AND a.membership = 'join' \
                     AND b.user_id = p.user_id AND b.membership = 'join')) ORDER BY p.stream_pos"
                ))?;
                let rows = stmt.query_map(params![user_id, since, until], from_row)?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }
}
