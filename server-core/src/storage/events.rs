//! Events, the current state of rooms, memberships, forward extremities and transaction ids.

use rusqlite::{OptionalExtension, params};

use super::{Store, next_stream_pos};
use crate::error::Result;

/// An event as stored, with its stream position.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Where the event sits in the stream (the sync position).
    pub stream_pos: i64,
    /// The event ID.
    pub event_id: String,
    /// The room it belongs to.
    pub room_id: String,
    /// The full PDU JSON (redacted if it was redacted).
    pub json: String,
    /// The redaction event that redacted it, if any.
    pub redacted_by: Option<String>,
    /// The transaction ID it was sent with, and the device, for `unsigned.transaction_id`.
    pub txn: Option<(String, String)>,
}

/// A membership row.
#[derive(Debug, Clone)]
pub struct Membership {
    /// The room.
    pub room_id: String,
    /// The member.
    pub user_id: String,
    /// `join`, `invite`, `leave`, `ban` or `knock`.
    pub membership: String,
    /// The `m.room.member` event.
    pub event_id: String,
    /// The stream position of that event.
    pub stream_pos: i64,
}

/// An event ready to be appended to a room.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The event ID (the reference hash).
    pub event_id: String,
    /// The room.
    pub room_id: String,
    /// The sender.
    pub sender: String,
    /// The type.
    pub event_type: String,
    /// Present for state events.
    pub state_key: Option<String>,
    /// Graph depth.
    pub depth: i64,
    /// Origin timestamp.
    pub origin_server_ts: i64,
    /// `m.relates_to.event_id` and `rel_type`, for `/relations`.
    pub relation: Option<(String, String)>,
    /// For membership events: the new membership of `state_key`.
    pub membership: Option<String>,
    /// For redactions: the target and its redacted JSON, replacing the stored one.
    pub redaction: Option<(String, String)>,
    /// The client transaction: (user, device, scope, txn id).
    pub txn: Option<(String, String, String, String)>,
    /// The signed PDU JSON.
    pub json: String,
    /// The local users this event notifies, with whether it highlights for them.
    pub notifies: Vec<(String, bool)>,
}

/// Events and room state.
pub struct EventsStore<'a> {
    pub(super) store: &'a Store,
}

const EVENT_COLUMNS: &str = "stream_pos, event_id, room_id, json, redacted_by, txn_id, txn_device";

fn event_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    let txn_id: Option<String> = row.get(5)?;
    let txn_device: Option<String> = row.get(6)?;
    Ok(StoredEvent {
        stream_pos: row.get(0)?,
        event_id: row.get(1)?,
        room_id: row.get(2)?,
        json: row.get(3)?,
        redacted_by: row.get(4)?,
        txn: txn_id.zip(txn_device),
    })
}

fn membership_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Membership> {
    Ok(Membership {
        room_id: row.get(0)?,
        user_id: row.get(1)?,
        membership: row.get(2)?,
        event_id: row.get(3)?,
        stream_pos: row.get(4)?,
    })
}

impl EventsStore<'_> {
    /// Appends an event in one transaction: the event row, the room's current state, the
    /// membership table, the forward extremity, the redacted target and the transaction id.
    /// Returns the event's stream position.
    pub async fn append(&self, event: NewEvent) -> Result<i64> {
        self.store
            .write(move |txn| {
                let pos = next_stream_pos(txn)?;
                let (rel_target, rel_type) = event.relation.clone().unzip();
                let (txn_id, txn_device) = match &event.txn {
                    Some((_, device, _, id)) => (Some(id.clone()), Some(device.clone())),
                    None => (None, None),
                };
                txn.execute(
                    "INSERT INTO events (stream_pos, event_id, room_id, sender, event_type, state_key, depth, \
                     origin_server_ts, rel_target, rel_type, txn_id, txn_device, json) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    params![
                        pos,
                        event.event_id,
                        event.room_id,
                        event.sender,
                        event.event_type,
                        event.state_key,
                        event.depth,
                        event.origin_server_ts,
                        rel_target,
                        rel_type,
                        txn_id,
                        txn_device,
                        event.json
                    ],
                )?;
                if let Some(state_key) = &event.state_key {
                    txn.execute(
                        "INSERT INTO room_state (room_id, event_type, state_key, event_id, stream_pos) VALUES (?1, ?2, ?3, ?4, ?5) \
                         ON CONFLICT (room_id, event_type, state_key) DO UPDATE SET event_id = excluded.event_id, stream_pos = excluded.stream_pos",
                        params![event.room_id, event.event_type, state_key, event.event_id, pos],
                    )?;
                    if let Some(membership) = &event.membership {
                        txn.execute(
                            "INSERT INTO memberships (room_id, user_id, membership, event_id, stream_pos) VALUES (?1, ?2, ?3, ?4, ?5) \
                             ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, \
                             event_id = excluded.event_id, stream_pos = excluded.stream_pos, forgotten = 0",
                            params![event.room_id, state_key, membership, event.event_id, pos],
                        )?;
                    }
                }
                // Local events extend the single newest event of the room's graph.
                txn.execute("DELETE FROM forward_extremities WHERE room_id = ?1", [&event.room_id])?;
                txn.execute(
                    "INSERT INTO forward_extremities (room_id, event_id) VALUES (?1, ?2)",
                    params![event.room_id, event.event_id],
                )?;
                if let Some((target, redacted_json)) = &event.redaction {
                    txn.execute(
                        "UPDATE events SET json = ?2, redacted_by = ?3 WHERE event_id = ?1",
                        params![target, redacted_json, event.event_id],
                    )?;
                }
                for (user, highlight) in &event.notifies {
                    txn.execute(
                        "INSERT OR IGNORE INTO event_push_actions (room_id, user_id, stream_pos, highlight) VALUES (?1, ?2, ?3, ?4)",
                        params![event.room_id, user, pos, highlight],
                    )?;
                }
                if let Some((user, device, scope, txn_id)) = &event.txn {
                    txn.execute(
                        "INSERT INTO transaction_ids (user_id, device_id, scope, txn_id, result) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![user, device, scope, txn_id, event.event_id],
                    )?;
                }
                Ok(pos)
            })
            .await
    }

    /// The event ID earlier sent with this transaction id, or `None`.
    pub async fn txn_result(
        &self,
        user_id: &str,
        device_id: &str,
        scope: &str,
        txn_id: &str,
    ) -> Result<Option<String>> {
        let args = [
            user_id.to_owned(),
            device_id.to_owned(),
            scope.to_owned(),
            txn_id.to_owned(),
        ];
        self.store
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT result FROM transaction_ids WHERE user_id = ?1 AND device_id = ?2 AND scope = ?3 AND txn_id = ?4",
                        args,
                        |row| row.get(0),
                    )
                    .optional()?)
            })
            .await
    }

    /// One event by ID, or `None` if it is not stored.
    pub async fn get(&self, event_id: &str) -> Result<Option<StoredEvent>> {
        let event_id = event_id.to_owned();
        self.store
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        &format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ?1"),
                        [event_id],
                        event_from_row,
                    )
                    .optional()?)
            })
            .await
    }

    /// Several events by ID, in no particular order; unknown IDs are skipped.
    pub async fn get_many(&self, event_ids: Vec<String>) -> Result<Vec<StoredEvent>> {
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ?1"
                ))?;
                let mut events = Vec::with_capacity(event_ids.len());
                for event_id in event_ids {
                    if let Some(event) = stmt.query_row([event_id], event_from_row).optional()? {
                        events.push(event);
                    }
                }
                Ok(events)
            })
            .await
    }

    /// The room's events with positions in `(after, up_to]`, newest first, at most `limit`.
    pub async fn room_events_backwards(
        &self,
        room_id: &str,
        after: i64,
        up_to: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let room_id = room_id.to_owned();
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE room_id = ?1 AND stream_pos > ?2 AND stream_pos <= ?3 \
                     ORDER BY stream_pos DESC LIMIT ?4"
                ))?;
                let rows = stmt.query_map(params![room_id, after, up_to, limit], event_from_row)?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// The room's events with positions in `[from, before)`, oldest first, at most `limit`.
    pub async fn room_events_forwards(
        &self,
        room_id: &str,
        from: i64,
        before: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let room_id = room_id.to_owned();
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE room_id = ?1 AND stream_pos >= ?2 AND stream_pos < ?3 \
                     ORDER BY stream_pos ASC LIMIT ?4"
                ))?;
                let rows = stmt.query_map(params![room_id, from, before, limit], event_from_row)?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// The events relating to `target`, newest first, optionally of one `rel_type`, with
    /// positions below `before`.
    pub async fn relations(
        &self,
        target: &str,
        rel_type: Option<String>,
        before: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let target = target.to_owned();
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE rel_target = ?1 AND (?2 IS NULL OR rel_type = ?2) \
                     AND stream_pos < ?3 ORDER BY stream_pos DESC LIMIT ?4"
                ))?;
                let rows = stmt.query_map(params![target, rel_type, before, limit], event_from_row)?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// The room's current state as (type, state_key, event_id, stream_pos) rows.
    pub async fn current_state(&self, room_id: &str) -> Result<Vec<(String, String, String, i64)>> {
        let room_id = room_id.to_owned();
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT event_type, state_key, event_id, stream_pos FROM room_state WHERE room_id = ?1",
                )?;
                let rows = stmt.query_map([room_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// The current state event ID for (type, state_key), or `None` if unset.
    pub async fn state_event_id(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
    ) -> Result<Option<String>> {
        let args = [
            room_id.to_owned(),
            event_type.to_owned(),
            state_key.to_owned(),
        ];
        self.store
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT event_id FROM room_state WHERE room_id = ?1 AND event_type = ?2 AND state_key = ?3",
                        args,
                        |row| row.get(0),
                    )
                    .optional()?)
            })
            .await
    }

    /// The room's forward extremities and the greatest depth among them.
    pub async fn extremities(&self, room_id: &str) -> Result<(Vec<String>, i64)> {
        let room_id = room_id.to_owned();
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT f.event_id, e.depth FROM forward_extremities f JOIN events e ON e.event_id = f.event_id WHERE f.room_id = ?1",
                )?;
                let rows = stmt.query_map([room_id], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))?;
                let mut ids = Vec::new();
                let mut depth = 0;
                for row in rows {
                    let (id, d) = row?;
                    ids.push(id);
                    depth = depth.max(d);
                }
                Ok((ids, depth))
            })
            .await
    }

    /// A user's membership in a room, or `None` if they never had one.
    pub async fn membership(&self, room_id: &str, user_id: &str) -> Result<Option<Membership>> {
        let args = [room_id.to_owned(), user_id.to_owned()];
        self.store
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT room_id, user_id, membership, event_id, stream_pos FROM memberships WHERE room_id = ?1 AND user_id = ?2",
                        args,
                        membership_from_row,
                    )
                    .optional()?)
            })
            .await
    }

    /// The user's memberships in rooms they have not forgotten.
    pub async fn memberships_of_user(&self, user_id: &str) -> Result<Vec<Membership>> {
        let user_id = user_id.to_owned();
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT room_id, user_id, membership, event_id, stream_pos FROM memberships WHERE user_id = ?1 AND forgotten = 0",
                )?;
                let rows = stmt.query_map([user_id], membership_from_row)?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// Every membership row of a room.
    pub async fn members(&self, room_id: &str) -> Result<Vec<Membership>> {
        let room_id = room_id.to_owned();
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT room_id, user_id, membership, event_id, stream_pos FROM memberships WHERE room_id = ?1",
                )?;
                let rows = stmt.query_map([room_id], membership_from_row)?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// Hides a room the user has left from their sync (`/forget`). Returns false if the
    /// user is still joined, invited or knocking, or never was a member.
    pub async fn forget(&self, room_id: &str, user_id: &str) -> Result<bool> {
        let args = [room_id.to_owned(), user_id.to_owned()];
        self.store
            .write(move |txn| {
                Ok(txn.execute(
                    "UPDATE memberships SET forgotten = 1 WHERE room_id = ?1 AND user_id = ?2 AND membership IN ('leave', 'ban')",
                    args,
                )? == 1)
            })
            .await
    }

    /// Whether two users share a room where both are joined.
    pub async fn share_a_room(&self, a: &str, b: &str) -> Result<bool> {
        let args = [a.to_owned(), b.to_owned()];
        self.store
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT 1 FROM memberships m1 JOIN memberships m2 ON m1.room_id = m2.room_id \
                         WHERE m1.user_id = ?1 AND m2.user_id = ?2 AND m1.membership = 'join' AND m2.membership = 'join' LIMIT 1",
                        args,
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some())
            })
            .await
    }

    /// Unread counts for the user in the room up to position `up_to`: the events their push
    /// rules said notify, and of those the ones that highlight, after the later of their read
    /// receipt (`read_up_to`) and their own newest event there, since sending an event marks
    /// what came before as read (spec: modules/push.md, "Receiving notifications"). Redacted
    /// events no longer count.
    pub async fn unread_counts(
        &self,
        room_id: &str,
        user_id: &str,
        read_up_to: i64,
        up_to: i64,
    ) -> Result<(u64, u64)> {
        let (room_id, user_id) = (room_id.to_owned(), user_id.to_owned());
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT COUNT(*), COALESCE(SUM(a.highlight), 0) FROM event_push_actions a \
                     JOIN events e ON e.stream_pos = a.stream_pos \
                     WHERE a.room_id = ?1 AND a.user_id = ?2 AND a.stream_pos <= ?4 AND e.redacted_by IS NULL \
                     AND a.stream_pos > MAX(?3, COALESCE((SELECT MAX(o.stream_pos) FROM events o \
                         WHERE o.room_id = ?1 AND o.sender = ?2 AND o.stream_pos <= ?4), 0))",
                )?;
                let (count, highlights): (i64, i64) = stmt.query_row(
                    params![room_id, user_id, read_up_to, up_to],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )?;
                Ok((count.max(0) as u64, highlights.max(0) as u64))
            })
            .await
    }

    /// The room's state as it was right after position `pos`: for each (type, state_key),
    /// the newest state event at or before `pos`. Exact for rooms whose graph is a line,
    /// which every room without federation is.
    pub async fn state_at(&self, room_id: &str, pos: i64) -> Result<Vec<StoredEvent>> {
        let room_id = room_id.to_owned();
        self.store
            .read(move |conn| {
                // SQLite returns the other columns of the row holding MAX() (a documented
                // "bare column" behaviour), which is what picks the newest event per key.
                let mut stmt = conn.prepare_cached(
                    "SELECT stream_pos, event_id, room_id, json, redacted_by, txn_id, txn_device, MAX(stream_pos) FROM events \
                     WHERE room_id = ?1 AND state_key IS NOT NULL AND stream_pos <= ?2 GROUP BY event_type, state_key",
                )?;
                let rows = stmt.query_map(params![room_id, pos], event_from_row)?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }
}
