//! What the dashboard lists: accounts, registration tokens, rooms and their members, and
//! the figures its charts draw. Reads across tables; the writes are the admin's own.

use rusqlite::{OptionalExtension, params};

use super::Store;
use crate::error::Result;

/// An account, as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    /// `@alice:example.org`.
    pub user_id: String,
    /// The display name, if set.
    pub displayname: Option<String>,
    /// Whether the account is a server admin.
    pub admin: bool,
    /// Whether the account is deactivated.
    pub deactivated: bool,
    /// When it was created (ms).
    pub created_ts: i64,
    /// Devices logged in.
    pub devices: u64,
}

/// A registration token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    /// The token itself.
    pub token: String,
    /// How many registrations it allows; `None`: any number.
    pub uses_allowed: Option<u32>,
    /// How many it has been used for.
    pub completed: u32,
    /// When it stops working (ms); `None`: never.
    pub expiry_ts: Option<i64>,
}

/// A room, as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRow {
    /// The room ID.
    pub room_id: String,
    /// Its name (`m.room.name`), if it has one.
    pub name: Option<String>,
    /// Its canonical alias, if it has one.
    pub canonical_alias: Option<String>,
    /// The room version.
    pub version: String,
    /// Who created it.
    pub creator: String,
    /// Joined members, here and elsewhere.
    pub joined_members: u64,
    /// Joined members of this server.
    pub local_members: u64,
    /// Events this server holds for it.
    pub events: u64,
}

/// A member of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    /// The user ID.
    pub user_id: String,
    /// join, invite, knock, leave or ban.
    pub membership: String,
    /// The display name in the room, if the member event has one.
    pub displayname: Option<String>,
}

/// The dashboard's queries.
pub struct DashboardStore<'a> {
    pub(super) store: &'a Store,
}

impl DashboardStore<'_> {
    /// Every account of this server, oldest first.
    pub async fn accounts(&self) -> Result<Vec<AccountRow>> {
        self.store
            .read(|conn| {
                let mut statement = conn.prepare(
                    "SELECT u.user_id, u.displayname, u.admin, u.deactivated, u.created_ts, \
                     (SELECT COUNT(*) FROM devices d WHERE d.user_id = u.user_id) \
                     FROM users u ORDER BY u.created_ts, u.user_id",
                )?;
                let rows = statement.query_map([], |row| {
                    Ok(AccountRow {
                        user_id: row.get(0)?,
                        displayname: row.get(1)?,
                        admin: row.get(2)?,
                        deactivated: row.get(3)?,
                        created_ts: row.get(4)?,
                        devices: row.get::<_, i64>(5)?.max(0) as u64,
                    })
                })?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// Whether any active account is an admin.
    pub async fn has_admin(&self) -> Result<bool> {
        self.store
            .read(|conn| {
                Ok(conn
                    .query_row(
                        "SELECT 1 FROM users WHERE admin = 1 AND deactivated = 0 LIMIT 1",
                        [],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some())
            })
            .await
    }

    /// Makes an account an admin or not. False for an unknown account. Tokens carry the
    /// admin flag, so their cache is emptied.
    pub async fn set_admin(&self, user_id: &str, admin: bool) -> Result<bool> {
        let user_id = user_id.to_owned();
        self.store
            .write_sessions(move |txn| {
                Ok(txn.execute(
                    "UPDATE users SET admin = ?2 WHERE user_id = ?1",
                    params![user_id, admin],
                )? == 1)
            })
            .await
    }

    /// Every registration token, newest expiry last.
    pub async fn tokens(&self) -> Result<Vec<TokenRow>> {
        self.store
            .read(|conn| {
                let mut statement = conn.prepare(
                    "SELECT token, uses_allowed, completed, expiry_ts FROM registration_tokens \
                     ORDER BY token",
                )?;
                let rows = statement.query_map([], |row| {
                    Ok(TokenRow {
                        token: row.get(0)?,
                        uses_allowed: row.get(1)?,
                        completed: row.get(2)?,
                        expiry_ts: row.get(3)?,
                    })
                })?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// Deletes a registration token. False when there is none.
    pub async fn delete_token(&self, token: &str) -> Result<bool> {
        let token = token.to_owned();
        self.store
            .write(move |txn| {
                Ok(txn.execute("DELETE FROM registration_tokens WHERE token = ?1", [token])? == 1)
            })
            .await
    }

    /// Every room the server knows, with its size; `local_suffix` is `:server_name`.
    pub async fn rooms(&self, local_suffix: &str) -> Result<Vec<RoomRow>> {
        let pattern = format!("%{}", like_escaped(local_suffix));
        self.store
            .read(move |conn| {
                let mut statement = conn.prepare(
                    "SELECT r.room_id, \
                     (SELECT json_extract(e.json, '$.content.name') FROM room_state s \
                      JOIN events e ON e.event_id = s.event_id \
                      WHERE s.room_id = r.room_id AND s.event_type = 'm.room.name' AND s.state_key = ''), \
                     (SELECT json_extract(e.json, '$.content.alias') FROM room_state s \
                      JOIN events e ON e.event_id = s.event_id \
                      WHERE s.room_id = r.room_id AND s.event_type = 'm.room.canonical_alias' AND s.state_key = ''), \
                     r.version, r.creator, \
                     (SELECT COUNT(*) FROM memberships m WHERE m.room_id = r.room_id AND m.membership = 'join'), \
                     (SELECT COUNT(*) FROM memberships m WHERE m.room_id = r.room_id AND m.membership = 'join' \
                      AND m.user_id LIKE ?1 ESCAPE '\\'), \
                     (SELECT COUNT(*) FROM events e WHERE e.room_id = r.room_id) \
                     FROM rooms r ORDER BY r.created_ts, r.room_id",
                )?;
                let rows = statement.query_map([pattern], |row| {
                    Ok(RoomRow {
                        room_id: row.get(0)?,
                        name: row.get::<_, Option<String>>(1).unwrap_or(None),
                        canonical_alias: row.get::<_, Option<String>>(2).unwrap_or(None),
                        version: row.get(3)?,
                        creator: row.get(4)?,
                        joined_members: row.get::<_, i64>(5)?.max(0) as u64,
                        local_members: row.get::<_, i64>(6)?.max(0) as u64,
                        events: row.get::<_, i64>(7)?.max(0) as u64,
                    })
                })?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// A room's members and their memberships, joined first. `None` for an unknown room.
    pub async fn members(&self, room_id: &str) -> Result<Option<Vec<MemberRow>>> {
        let room_id = room_id.to_owned();
        self.store
            .read(move |conn| {
                if !room_known(conn, &room_id)? {
                    return Ok(None);
                }
                let mut statement = conn.prepare(
                    "SELECT m.user_id, m.membership, json_extract(e.json, '$.content.displayname') \
                     FROM memberships m LEFT JOIN events e ON e.event_id = m.event_id \
                     WHERE m.room_id = ?1 \
                     ORDER BY m.membership <> 'join', m.user_id",
                )?;
                let rows = statement.query_map([&room_id], |row| {
                    Ok(MemberRow {
                        user_id: row.get(0)?,
                        membership: row.get(1)?,
                        displayname: row.get::<_, Option<String>>(2).unwrap_or(None),
                    })
                })?;
                Ok(Some(rows.collect::<rusqlite::Result<_>>()?))
            })
            .await
    }

    /// Events stored after stream position `after`, and the newest position.
    pub async fn events_since(&self, after: i64) -> Result<(u64, i64)> {
        self.store
            .read(move |conn| {
                let (count, newest): (i64, Option<i64>) = conn.query_row(
                    "SELECT COUNT(*), MAX(stream_pos) FROM events WHERE stream_pos > ?1",
                    [after],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )?;
                Ok((count.max(0) as u64, newest.unwrap_or(after)))
            })
            .await
    }

    /// The newest event's stream position (0 when there is none).
    pub async fn newest_event(&self) -> Result<i64> {
        self.store
            .read(|conn| {
                Ok(conn
                    .query_row("SELECT MAX(stream_pos) FROM events", [], |row| {
                        row.get::<_, Option<i64>>(0)
                    })?
                    .unwrap_or(0))
            })
            .await
    }

    /// Removes a room from this server: its events (timeline, outliers and rejected ones),
    /// state, memberships, aliases, receipts, notifications and the room account data of
    /// its members, in one transaction. Only this server's users' leaves (and bans) stay,
    /// each with its event, so that their devices still sync that they left. Returns how
    /// many events went; `None` for an unknown room. Federation PDUs already queued keep
    /// their own copy, so those leaves still reach the other servers. `local_suffix` is
    /// `:server_name`.
    pub async fn purge_room(&self, room_id: &str, local_suffix: &str) -> Result<Option<u64>> {
        let room_id = room_id.to_owned();
        let pattern = format!("%{}", like_escaped(local_suffix));
        self.store
            .write(move |txn| {
                if !room_known(txn, &room_id)? {
                    return Ok(None);
                }
                txn.execute(
                    "DELETE FROM memberships WHERE room_id = ?1 AND NOT \
                     (membership IN ('leave', 'ban') AND user_id LIKE ?2 ESCAPE '\\')",
                    params![room_id, pattern],
                )?;
                let events = txn.execute(
                    "DELETE FROM events WHERE room_id = ?1 AND event_id NOT IN \
                     (SELECT event_id FROM memberships WHERE room_id = ?1)",
                    [&room_id],
                )?;
                // The state groups' rows first, then the groups.
                txn.execute(
                    "DELETE FROM event_state WHERE group_id IN \
                     (SELECT id FROM state_groups WHERE room_id = ?1)",
                    [&room_id],
                )?;
                txn.execute(
                    "DELETE FROM state_group_entries WHERE group_id IN \
                     (SELECT id FROM state_groups WHERE room_id = ?1)",
                    [&room_id],
                )?;
                txn.execute(
                    "UPDATE rooms SET state_group = NULL WHERE room_id = ?1",
                    [&room_id],
                )?;
                // One statement: foreign keys are checked at its end, when no group of the
                // room is left to point at another.
                txn.execute("DELETE FROM state_groups WHERE room_id = ?1", [&room_id])?;
                for table in [
                    "room_state",
                    "state_log",
                    "remote_memberships",
                    "forward_extremities",
                    "room_aliases",
                    "receipts",
                    "event_push_actions",
                    "account_data",
                    "outliers",
                    "rejected_events",
                    "rooms",
                ] {
                    txn.execute(
                        &format!("DELETE FROM {table} WHERE room_id = ?1"),
                        [&room_id],
                    )?;
                }
                Ok(Some(events as u64))
            })
            .await
    }

    /// Bytes of other servers' media kept here (local media IDs have no `/`).
    pub async fn remote_media_bytes(&self) -> Result<u64> {
        self.store
            .read(|conn| {
                let bytes: i64 = conn.query_row(
                    "SELECT COALESCE(SUM(size), 0) FROM media WHERE instr(media_id, '/') > 0",
                    [],
                    |row| row.get(0),
                )?;
                Ok(bytes.max(0) as u64)
            })
            .await
    }
}

/// Whether the server knows the room.
fn room_known(conn: &rusqlite::Connection, room_id: &str) -> Result<bool> {
    Ok(conn
        .query_row("SELECT 1 FROM rooms WHERE room_id = ?1", [room_id], |_| {
            Ok(())
        })
        .optional()?
        .is_some())
}

/// `text` with LIKE's wildcards escaped by `\`.
fn like_escaped(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
