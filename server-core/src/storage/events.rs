//! Events, the current state of rooms, memberships, forward extremities and transaction ids.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{
    OutboxKind, Store, exec,
    federation_queue::queue_in,
    next_stream_pos,
    state::{self, StateIds},
};
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
    /// The events it follows; they stop being forward extremities.
    pub prev_events: Vec<String>,
    /// The room state before the event.
    pub state_before: StateBefore,
    /// What the room's current state becomes.
    pub new_current: NewCurrent,
    /// The servers to send it to, queued in the same transaction.
    pub destinations: Vec<String>,
    /// For a local event, this server's name: the event also goes to every other server
    /// with a member joined, as read in the same transaction.
    pub share_with_room: Option<String>,
}

/// An invite or knock of a local user in a room this server is not in.
#[derive(Debug, Clone)]
pub struct RemoteMembership {
    /// The room.
    pub room_id: String,
    /// The local user.
    pub user_id: String,
    /// `invite` or `knock`.
    pub membership: String,
    /// The invite or knock event.
    pub event_id: String,
    /// The room's version.
    pub room_version: String,
    /// The stripped state events the other server sent, as a JSON array.
    pub room_state: String,
}

/// A room as a new local event sees it ([`EventsStore::head`]).
#[derive(Debug, Clone)]
pub struct RoomHead {
    /// The room version.
    pub version: String,
    /// The current state: (type, state_key) to event ID.
    pub state: StateIds,
    /// The forward extremities.
    pub extremities: Vec<String>,
    /// The greatest depth among them.
    pub depth: i64,
    /// The joined members' user IDs.
    pub joined: Vec<String>,
    /// For each transaction asked about, the event earlier sent with it.
    pub earlier: Vec<Option<String>>,
}

/// The room state before a new event.
#[derive(Debug, Clone)]
pub enum StateBefore {
    /// The room's current state: a local event, which follows every forward extremity.
    Current,
    /// A stored state group (the state after its one prev event).
    Group(i64),
    /// A state computed by state resolution over several prev events.
    Ids(StateIds),
}

/// What the room's current state becomes once an event is appended.
#[derive(Debug, Clone)]
pub enum NewCurrent {
    /// The state after the event: the state before it was the current state.
    AfterEvent,
    /// A state resolved from the forward extremities, replacing the current one.
    Resolved(StateIds),
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
    /// Appends an event to the room's timeline in one transaction: the event row, the state
    /// after it, the room's current state (and its log), the membership table, the forward
    /// extremities, the redacted target, the transaction id, the push actions, and the
    /// outbox rows that carry it to `destinations` (and the room's servers, see
    /// `share_with_room`). Returns the event's stream position and where it was queued.
    pub async fn append(&self, event: NewEvent) -> Result<(i64, Vec<String>)> {
        self.append_many(vec![event])
            .await?
            .pop()
            .ok_or_else(|| crate::error::Error::internal("no event appended"))
    }

    /// Appends events to their rooms in order, in one transaction (one disk flush for all),
    /// each as [`Self::append`] would. Returns each one's position and destinations.
    pub async fn append_many(&self, events: Vec<NewEvent>) -> Result<Vec<(i64, Vec<String>)>> {
        self.store
            .write(move |txn| {
                events
                    .into_iter()
                    .map(|event| append_in(txn, event))
                    .collect()
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
        let key = (
            user_id.to_owned(),
            device_id.to_owned(),
            scope.to_owned(),
            txn_id.to_owned(),
        );
        Ok(self.txn_results(vec![key]).await?.pop().flatten())
    }

    /// For each (user, device, scope, txn id), the event ID earlier sent with it, or `None`;
    /// one read for all.
    pub async fn txn_results(
        &self,
        keys: Vec<(String, String, String, String)>,
    ) -> Result<Vec<Option<String>>> {
        self.store
            .read(move |conn| Ok(txn_results_in(conn, &keys)?))
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

    /// What building new local events in the room needs, in one read: the room's version
    /// (`None` for an unknown room), its current state, its forward extremities with the
    /// greatest depth among them, its joined members, and the event earlier sent with each
    /// of `txns` (user, device, scope, txn id), if any.
    pub async fn head(
        &self,
        room_id: &str,
        txns: Vec<(String, String, String, String)>,
    ) -> Result<Option<RoomHead>> {
        let room_id = room_id.to_owned();
        self.store
            .read(move |conn| {
                let version: Option<String> = conn
                    .prepare_cached("SELECT version FROM rooms WHERE room_id = ?1")?
                    .query_row([&room_id], |row| row.get(0))
                    .optional()?;
                let Some(version) = version else {
                    return Ok(None);
                };
                let state = current_state_ids(conn, &room_id)?;
                let (extremities, depth) = extremities_in(conn, &room_id)?;
                let mut stmt = conn.prepare_cached(
                    "SELECT user_id FROM memberships WHERE room_id = ?1 AND membership = 'join'",
                )?;
                let joined = stmt
                    .query_map([&room_id], |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let earlier = txn_results_in(conn, &txns)?;
                Ok(Some(RoomHead {
                    version,
                    state,
                    extremities,
                    depth,
                    joined,
                    earlier,
                }))
            })
            .await
    }

    /// The room's forward extremities and the greatest depth among them.
    pub async fn extremities(&self, room_id: &str) -> Result<(Vec<String>, i64)> {
        let room_id = room_id.to_owned();
        self.store
            .read(move |conn| Ok(extremities_in(conn, &room_id)?))
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

    /// The servers (this one too) with a user joined to a room that `user_id` is joined to.
    pub async fn servers_sharing_rooms(&self, user_id: &str) -> Result<Vec<String>> {
        let user_id = user_id.to_owned();
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT DISTINCT substr(b.user_id, instr(b.user_id, ':') + 1) FROM memberships a \
                     JOIN memberships b ON a.room_id = b.room_id WHERE a.user_id = ?1 \
                     AND a.membership = 'join' AND b.membership = 'join'",
                )?;
                let rows = stmt.query_map([user_id], |row| row.get(0))?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// Whether `user_id` is joined to a room where a user of `server` is joined too.
    pub async fn shares_room_with_server(&self, user_id: &str, server: &str) -> Result<bool> {
        let args = [user_id.to_owned(), server.to_owned()];
        self.store
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT 1 FROM memberships a JOIN memberships b ON a.room_id = b.room_id \
                         WHERE a.user_id = ?1 AND a.membership = 'join' AND b.membership = 'join' \
                         AND substr(b.user_id, instr(b.user_id, ':') + 1) = ?2 LIMIT 1",
                    )?
                    .query_row(args, |_| Ok(()))
                    .optional()?
                    .is_some())
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

    /// The room's state as clients saw it right after position `pos`, from the log of
    /// current-state changes. Each event's `stream_pos` is where it entered the state.
    /// State events known only as outliers (a room joined over federation) are included.
    pub async fn state_at(&self, room_id: &str, pos: i64) -> Result<Vec<StoredEvent>> {
        let room_id = room_id.to_owned();
        self.store
            .read(move |conn| {
                // SQLite returns the other columns of the row holding MAX() (a documented
                // "bare column" behaviour), which is what picks the newest change per key.
                let mut stmt = conn.prepare_cached(
                    "SELECT event_id, MAX(stream_pos) FROM state_log WHERE room_id = ?1 AND stream_pos <= ?2 \
                     GROUP BY event_type, state_key",
                )?;
                let entries: Vec<(Option<String>, i64)> = stmt
                    .query_map(params![room_id, pos], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                let mut in_timeline = conn.prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ?1"
                ))?;
                let mut outlier = conn.prepare_cached(
                    "SELECT event_id, room_id, json FROM outliers WHERE event_id = ?1",
                )?;
                let mut events = Vec::with_capacity(entries.len());
                for (event_id, at) in entries {
                    let Some(event_id) = event_id else { continue };
                    let found = match in_timeline.query_row([&event_id], event_from_row).optional()? {
                        Some(event) => Some(event),
                        None => outlier
                            .query_row([&event_id], |row| {
                                Ok(StoredEvent {
                                    stream_pos: 0,
                                    event_id: row.get(0)?,
                                    room_id: row.get(1)?,
                                    json: row.get(2)?,
                                    redacted_by: None,
                                    txn: None,
                                })
                            })
                            .optional()?,
                    };
                    if let Some(mut event) = found {
                        event.stream_pos = at;
                        events.push(event);
                    }
                }
                Ok(events)
            })
            .await
    }

    /// Events of the room graph by ID, from the timeline or the outliers, as (event ID,
    /// room ID, JSON); unknown IDs are skipped.
    pub async fn graph_events(
        &self,
        event_ids: Vec<String>,
    ) -> Result<Vec<(String, String, String)>> {
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT event_id, room_id, json FROM events WHERE event_id = ?1 \
                     UNION ALL SELECT event_id, room_id, json FROM outliers WHERE event_id = ?1 LIMIT 1",
                )?;
                let mut events = Vec::with_capacity(event_ids.len());
                for event_id in event_ids {
                    if let Some(row) = stmt
                        .query_row([event_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                        .optional()?
                    {
                        events.push(row);
                    }
                }
                Ok(events)
            })
            .await
    }

    /// Whether the event is known here at all: in the timeline, an outlier, or rejected.
    pub async fn seen(&self, event_id: &str) -> Result<bool> {
        let event_id = event_id.to_owned();
        self.store
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT 1 FROM events WHERE event_id = ?1 UNION ALL SELECT 1 FROM outliers WHERE event_id = ?1 \
                         UNION ALL SELECT 1 FROM rejected_events WHERE event_id = ?1 LIMIT 1",
                        [event_id],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some())
            })
            .await
    }

    /// The room's oldest timeline event and its prev events that are not in the timeline
    /// (where backfill would continue), if the room has events.
    pub async fn backward_extremity(&self, room_id: &str) -> Result<Option<(String, Vec<String>)>> {
        let room_id = room_id.to_owned();
        self.store
            .read(move |conn| {
                let oldest: Option<(String, String)> = conn
                    .query_row(
                        "SELECT event_id, json FROM events WHERE room_id = ?1 ORDER BY stream_pos ASC LIMIT 1",
                        [&room_id],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .optional()?;
                let Some((event_id, json)) = oldest else {
                    return Ok(None);
                };
                let prev: Vec<String> = serde_json::from_str::<serde_json::Value>(&json)
                    .ok()
                    .and_then(|v| v.get("prev_events").cloned())
                    .and_then(|v| serde_json::from_value(v).ok())
                    .unwrap_or_default();
                let mut known = conn.prepare_cached("SELECT 1 FROM events WHERE event_id = ?1")?;
                let mut missing = Vec::new();
                for id in prev {
                    if !known.exists([&id])? {
                        missing.push(id);
                    }
                }
                Ok(Some((event_id, missing)))
            })
            .await
    }

    /// Puts an event fetched by backfill into the timeline, before everything else: at a
    /// position below every other (negative), so pages back reach it last. It changes no
    /// state and no extremity, and notifies no one. Returns false if it was there already.
    pub async fn backfilled(&self, event: NewEvent) -> Result<bool> {
        self.store
            .write(move |txn| {
                let exists: bool = txn
                    .prepare_cached("SELECT 1 FROM events WHERE event_id = ?1")?
                    .exists([&event.event_id])?;
                if exists {
                    return Ok(false);
                }
                let lowest: i64 = txn.query_row(
                    "SELECT COALESCE(MIN(stream_pos), 0) FROM events",
                    [],
                    |row| row.get(0),
                )?;
                insert_event_row(txn, &event, lowest.min(0) - 1)?;
                Ok(true)
            })
            .await
    }

    /// Why an event was rejected, if it was.
    pub async fn rejection(&self, event_id: &str) -> Result<Option<String>> {
        let event_id = event_id.to_owned();
        self.store
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT reason FROM rejected_events WHERE event_id = ?1",
                        [event_id],
                        |row| row.get(0),
                    )
                    .optional()?)
            })
            .await
    }

    /// Keeps an event of the room graph outside the timeline (a soft-failed one).
    pub async fn store_outlier(
        &self,
        event_id: &str,
        room_id: &str,
        json: String,
        soft_failed: bool,
    ) -> Result<()> {
        self.store_outliers(room_id, vec![(event_id.to_owned(), json)], soft_failed)
            .await
    }

    /// Keeps events of the room graph outside the timeline, in one transaction (the state
    /// and auth chain of a room joined over federation can be thousands).
    pub async fn store_outliers(
        &self,
        room_id: &str,
        mut events: Vec<(String, String)>,
        soft_failed: bool,
    ) -> Result<()> {
        let room_id = room_id.to_owned();
        // By event ID, the table's key: a join's thousands of events fill its B-tree in
        // order rather than splitting pages all over it.
        events.sort_unstable();
        self.store
            .write(move |txn| {
                let now = super::now_ms();
                let mut stmt = txn.prepare_cached(
                    "INSERT OR IGNORE INTO outliers (event_id, room_id, json, soft_failed, received_ts) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for (event_id, json) in &events {
                    stmt.execute(params![event_id, room_id, json, soft_failed, now])?;
                }
                Ok(())
            })
            .await
    }

    /// Records an invite or knock of a local user in a room this server is not in: the
    /// event as an outlier, the membership (at a new stream position, so /sync shows it),
    /// and the stripped state that came with it.
    pub async fn store_remote_membership(
        &self,
        remote: RemoteMembership,
        json: String,
    ) -> Result<i64> {
        self.store
            .write(move |txn| {
                let now = super::now_ms();
                txn.execute(
                    "INSERT OR IGNORE INTO outliers (event_id, room_id, json, soft_failed, received_ts) VALUES (?1, ?2, ?3, 0, ?4)",
                    params![remote.event_id, remote.room_id, json, now],
                )?;
                txn.execute(
                    "INSERT OR REPLACE INTO remote_memberships (room_id, user_id, membership, event_id, room_version, room_state) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![remote.room_id, remote.user_id, remote.membership, remote.event_id, remote.room_version, remote.room_state],
                )?;
                let pos = next_stream_pos(txn)?;
                txn.execute(
                    "INSERT INTO memberships (room_id, user_id, membership, event_id, stream_pos) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, \
                     event_id = excluded.event_id, stream_pos = excluded.stream_pos, forgotten = 0",
                    params![remote.room_id, remote.user_id, remote.membership, remote.event_id, pos],
                )?;
                Ok(pos)
            })
            .await
    }

    /// A local user's invite or knock in a room this server is not in, if there is one.
    pub async fn remote_membership(
        &self,
        room_id: &str,
        user_id: &str,
    ) -> Result<Option<RemoteMembership>> {
        let args = [room_id.to_owned(), user_id.to_owned()];
        self.store
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT room_id, user_id, membership, event_id, room_version, room_state FROM remote_memberships \
                         WHERE room_id = ?1 AND user_id = ?2",
                        args,
                        |row| {
                            Ok(RemoteMembership {
                                room_id: row.get(0)?,
                                user_id: row.get(1)?,
                                membership: row.get(2)?,
                                event_id: row.get(3)?,
                                room_version: row.get(4)?,
                                room_state: row.get(5)?,
                            })
                        },
                    )
                    .optional()?)
            })
            .await
    }

    /// Ends a local user's invite or knock in a room this server is not in (rejected,
    /// withdrawn, or turned into a join): the leave event, if any, becomes an outlier and
    /// the membership moves to it.
    pub async fn end_remote_membership(
        &self,
        room_id: &str,
        user_id: &str,
        leave: Option<(String, String)>,
    ) -> Result<()> {
        let (room_id, user_id) = (room_id.to_owned(), user_id.to_owned());
        self.store
            .write(move |txn| {
                txn.execute(
                    "DELETE FROM remote_memberships WHERE room_id = ?1 AND user_id = ?2",
                    params![room_id, user_id],
                )?;
                if let Some((event_id, json)) = leave {
                    txn.execute(
                        "INSERT OR IGNORE INTO outliers (event_id, room_id, json, soft_failed, received_ts) VALUES (?1, ?2, ?3, 0, ?4)",
                        params![event_id, room_id, json, super::now_ms()],
                    )?;
                    let pos = next_stream_pos(txn)?;
                    txn.execute(
                        "UPDATE memberships SET membership = 'leave', event_id = ?3, stream_pos = ?4 \
                         WHERE room_id = ?1 AND user_id = ?2",
                        params![room_id, user_id, event_id, pos],
                    )?;
                }
                Ok(())
            })
            .await
    }

    /// Records that an event failed its checks, so it is never checked again.
    pub async fn reject(&self, event_id: &str, room_id: &str, reason: &str) -> Result<()> {
        let args = (event_id.to_owned(), room_id.to_owned(), reason.to_owned());
        self.store
            .write(move |txn| {
                txn.execute(
                    "INSERT OR IGNORE INTO rejected_events (event_id, room_id, reason, received_ts) VALUES (?1, ?2, ?3, ?4)",
                    params![args.0, args.1, args.2, super::now_ms()],
                )?;
                Ok(())
            })
            .await
    }

    /// The servers with a joined member in the room.
    pub async fn joined_servers(&self, room_id: &str) -> Result<Vec<String>> {
        let room_id = room_id.to_owned();
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT DISTINCT substr(user_id, instr(user_id, ':') + 1) FROM memberships \
                     WHERE room_id = ?1 AND membership = 'join'",
                )?;
                let rows = stmt.query_map([room_id], |row| row.get(0))?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// The stream position of the last join, in the room's timeline, of any user of
    /// `server`; `None` if none of them ever joined here.
    pub async fn last_join_of_server(&self, room_id: &str, server: &str) -> Result<Option<i64>> {
        let args = [room_id.to_owned(), server.to_owned()];
        self.store
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT MAX(stream_pos) FROM events WHERE room_id = ?1 \
                         AND event_type = 'm.room.member' \
                         AND substr(state_key, instr(state_key, ':') + 1) = ?2 \
                         AND json_extract(json, '$.content.membership') = 'join'",
                    )?
                    .query_row(args, |row| row.get(0))?)
            })
            .await
    }
}

/// One event of [`EventsStore::append_many`], inside its transaction.
fn append_in(txn: &Transaction<'_>, mut event: NewEvent) -> Result<(i64, Vec<String>)> {
    if let Some(ours) = &event.share_with_room {
        // Every server with a member joined before this event.
        let mut stmt = txn.prepare_cached(
            "SELECT DISTINCT substr(user_id, instr(user_id, ':') + 1) FROM memberships \
                 WHERE room_id = ?1 AND membership = 'join'",
        )?;
        let servers = stmt
            .query_map([&event.room_id], |row| row.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        event.destinations.extend(servers);
        event.destinations.retain(|d| d != ours);
        event.destinations.sort();
        event.destinations.dedup();
    }
    // A resolved state takes effect just before the event, at a position of
    // its own, so the state before the event's place in the timeline is it.
    let state_pos = match event.new_current {
        NewCurrent::Resolved(_) => Some(next_stream_pos(txn)?),
        NewCurrent::AfterEvent => None,
    };
    let pos = next_stream_pos(txn)?;
    insert_event_row(txn, &event, pos)?;
    record_state(txn, &event, state_pos.unwrap_or(pos), pos)?;
    // The new event replaces the extremities it cites (spec:
    // server-server-api.md, "Forward extremities").
    {
        let mut stmt = txn.prepare_cached(
            "DELETE FROM forward_extremities WHERE room_id = ?1 AND event_id = ?2",
        )?;
        for prev in &event.prev_events {
            stmt.execute(params![event.room_id, prev])?;
        }
    }
    exec(
        txn,
        "INSERT OR IGNORE INTO forward_extremities (room_id, event_id) VALUES (?1, ?2)",
        params![event.room_id, event.event_id],
    )?;
    if let Some((target, redacted_json)) = &event.redaction {
        exec(
            txn,
            "UPDATE events SET json = ?2, redacted_by = ?3 WHERE event_id = ?1",
            params![target, redacted_json, event.event_id],
        )?;
    }
    for (user, highlight) in &event.notifies {
        exec(
            txn,
            "INSERT OR IGNORE INTO event_push_actions (room_id, user_id, stream_pos, highlight) VALUES (?1, ?2, ?3, ?4)",
            params![event.room_id, user, pos, highlight],
        )?;
    }
    if let Some((user, device, scope, txn_id)) = &event.txn {
        exec(
            txn,
            "INSERT INTO transaction_ids (user_id, device_id, scope, txn_id, result, created_ts) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![user, device, scope, txn_id, event.event_id, super::now_ms()],
        )?;
    }
    let now = super::now_ms();
    for destination in &event.destinations {
        queue_in(txn, destination, OutboxKind::Pdu, &event.json, now)?;
    }
    Ok((pos, event.destinations))
}

fn insert_event_row(txn: &Transaction<'_>, event: &NewEvent, pos: i64) -> Result<()> {
    let (rel_target, rel_type) = event.relation.clone().unzip();
    let (txn_id, txn_device) = match &event.txn {
        Some((_, device, _, id)) => (Some(id.clone()), Some(device.clone())),
        None => (None, None),
    };
    exec(
        txn,
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
    Ok(())
}

/// The room's current state group, snapshotting `room_state` for a room from before
/// migration 0007 (whose graph was a line, so its current state is exact).
fn current_group(txn: &Transaction<'_>, room_id: &str) -> Result<Option<i64>> {
    let group: Option<i64> = txn
        .prepare_cached("SELECT state_group FROM rooms WHERE room_id = ?1")?
        .query_row([room_id], |row| row.get(0))
        .optional()?
        .flatten();
    if group.is_some() {
        return Ok(group);
    }
    let current = current_state_ids(txn, room_id)?;
    if current.is_empty() {
        return Ok(None);
    }
    Ok(Some(state::snapshot(txn, room_id, &current)?))
}

/// For each (user, device, scope, txn id), the event ID earlier sent with it, or `None`.
fn txn_results_in(
    conn: &Connection,
    keys: &[(String, String, String, String)],
) -> rusqlite::Result<Vec<Option<String>>> {
    let mut stmt = conn.prepare_cached(
        "SELECT result FROM transaction_ids WHERE user_id = ?1 AND device_id = ?2 AND scope = ?3 AND txn_id = ?4",
    )?;
    keys.iter()
        .map(|(user, device, scope, txn_id)| {
            stmt.query_row(params![user, device, scope, txn_id], |row| row.get(0))
                .optional()
        })
        .collect()
}

/// The room's forward extremities and the greatest depth among them.
fn extremities_in(conn: &Connection, room_id: &str) -> rusqlite::Result<(Vec<String>, i64)> {
    let mut stmt = conn.prepare_cached(
        "SELECT f.event_id, e.depth FROM forward_extremities f JOIN events e ON e.event_id = f.event_id WHERE f.room_id = ?1",
    )?;
    let rows = stmt.query_map([room_id], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
    })?;
    let mut ids = Vec::new();
    let mut depth = 0;
    for row in rows {
        let (id, d) = row?;
        ids.push(id);
        depth = depth.max(d);
    }
    Ok((ids, depth))
}

fn current_state_ids(conn: &Connection, room_id: &str) -> rusqlite::Result<StateIds> {
    let mut stmt = conn.prepare_cached(
        "SELECT event_type, state_key, event_id FROM room_state WHERE room_id = ?1",
    )?;
    let rows = stmt.query_map([room_id], |row| {
        Ok(((row.get(0)?, row.get(1)?), row.get(2)?))
    })?;
    rows.collect()
}

/// Records the state after the event and moves the room's current state.
fn record_state(txn: &Transaction<'_>, event: &NewEvent, state_pos: i64, pos: i64) -> Result<()> {
    let before = match &event.state_before {
        StateBefore::Current => current_group(txn, &event.room_id)?,
        StateBefore::Group(group) => Some(*group),
        StateBefore::Ids(ids) => Some(state::snapshot(txn, &event.room_id, ids)?),
    };
    let after = match &event.state_key {
        Some(state_key) => Some(state::group_with(
            txn,
            &event.room_id,
            before,
            (&event.event_type, state_key, &event.event_id),
        )?),
        None => before,
    };
    if let Some(after) = after {
        exec(
            txn,
            "INSERT OR REPLACE INTO event_state (event_id, group_id) VALUES (?1, ?2)",
            params![event.event_id, after],
        )?;
    }
    match &event.new_current {
        NewCurrent::AfterEvent => {
            if let Some(state_key) = &event.state_key {
                set_current(
                    txn,
                    &event.room_id,
                    (&event.event_type, state_key),
                    Some(&event.event_id),
                    event.membership.as_deref(),
                    pos,
                )?;
            }
            exec(
                txn,
                "UPDATE rooms SET state_group = ?2 WHERE room_id = ?1",
                params![event.room_id, after],
            )?;
        }
        NewCurrent::Resolved(resolved) => {
            let old = current_state_ids(txn, &event.room_id)?;
            // In key order, as the current state's table is (see state::snapshot).
            let mut entries: Vec<_> = resolved.iter().collect();
            entries.sort_unstable();
            for ((event_type, state_key), event_id) in entries {
                if old.get(&(event_type.clone(), state_key.clone())) != Some(event_id) {
                    let (membership, at) = if *event_id == event.event_id {
                        (event.membership.clone(), pos)
                    } else if event_type == "m.room.member" {
                        (membership_of(txn, event_id)?, state_pos)
                    } else {
                        (None, state_pos)
                    };
                    set_current(
                        txn,
                        &event.room_id,
                        (event_type, state_key),
                        Some(event_id),
                        membership.as_deref(),
                        at,
                    )?;
                }
            }
            for (event_type, state_key) in old.keys() {
                if !resolved.contains_key(&(event_type.clone(), state_key.clone())) {
                    set_current(
                        txn,
                        &event.room_id,
                        (event_type, state_key),
                        None,
                        None,
                        state_pos,
                    )?;
                }
            }
            let group = match after {
                Some(after) if state::load_group(txn, after)? == *resolved => after,
                _ => state::snapshot(txn, &event.room_id, resolved)?,
            };
            exec(
                txn,
                "UPDATE rooms SET state_group = ?2 WHERE room_id = ?1",
                params![event.room_id, group],
            )?;
        }
    }
    Ok(())
}

/// The `membership` of a stored member event.
fn membership_of(conn: &Connection, event_id: &str) -> rusqlite::Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT json_extract(json, '$.content.membership') FROM events WHERE event_id = ?1 \
             AND event_type = 'm.room.member' \
             UNION ALL SELECT json_extract(json, '$.content.membership') FROM outliers \
             WHERE event_id = ?1 AND json_extract(json, '$.type') = 'm.room.member' LIMIT 1",
        )?
        .query_row([event_id], |row| row.get::<_, Option<String>>(0))
        .optional()?
        .flatten())
}

/// Sets (or with `None`, removes) one entry of the room's current state, logs the change at
/// `pos`, and keeps the membership table in step for member events.
fn set_current(
    txn: &Transaction<'_>,
    room_id: &str,
    (event_type, state_key): (&str, &str),
    event_id: Option<&str>,
    membership: Option<&str>,
    pos: i64,
) -> Result<()> {
    match event_id {
        Some(event_id) => {
            exec(
                txn,
                "INSERT INTO room_state (room_id, event_type, state_key, event_id, stream_pos) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (room_id, event_type, state_key) DO UPDATE SET event_id = excluded.event_id, stream_pos = excluded.stream_pos",
                params![room_id, event_type, state_key, event_id, pos],
            )?;
        }
        None => {
            exec(
                txn,
                "DELETE FROM room_state WHERE room_id = ?1 AND event_type = ?2 AND state_key = ?3",
                params![room_id, event_type, state_key],
            )?;
        }
    }
    exec(
        txn,
        "INSERT INTO state_log (room_id, stream_pos, event_type, state_key, event_id) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![room_id, pos, event_type, state_key, event_id],
    )?;
    if event_type == "m.room.member" {
        match (event_id, membership) {
            (Some(event_id), Some(membership)) => {
                exec(
                    txn,
                    "INSERT INTO memberships (room_id, user_id, membership, event_id, stream_pos) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, \
                     event_id = excluded.event_id, stream_pos = excluded.stream_pos, forgotten = 0",
                    params![room_id, state_key, membership, event_id, pos],
                )?;
            }
            _ => {
                exec(
                    txn,
                    "DELETE FROM memberships WHERE room_id = ?1 AND user_id = ?2",
                    params![room_id, state_key],
                )?;
            }
        }
    }
    Ok(())
}
