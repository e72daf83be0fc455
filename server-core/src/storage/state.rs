//! Room states as state groups: the state after each event of a room's graph.
//!
//! A group is a full snapshot or a delta over a previous group (migration 0007). A delta
//! only adds or replaces entries, so any state that drops a key is stored as a snapshot.
//! After [`MAX_CHAIN`] deltas the next group is a snapshot, which keeps reading one bounded.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::Store;
use crate::error::Result;

/// A room state: (event type, state key) → event ID.
pub type StateIds = HashMap<(String, String), String>;

/// Deltas allowed before a group is stored whole again.
const MAX_CHAIN: i64 = 64;

/// Reads a whole group: its snapshot, then each delta above it in order.
pub(super) fn load_group(conn: &Connection, group: i64) -> rusqlite::Result<StateIds> {
    let mut stmt = conn.prepare_cached(
        "WITH RECURSIVE chain(id, n) AS (SELECT ?1, 0 UNION ALL \
           SELECT g.prev_group, chain.n + 1 FROM state_groups g JOIN chain ON g.id = chain.id \
           WHERE g.prev_group IS NOT NULL) \
         SELECT e.event_type, e.state_key, e.event_id FROM chain \
         JOIN state_group_entries e ON e.group_id = chain.id ORDER BY chain.n DESC",
    )?;
    let rows = stmt.query_map([group], |row| Ok(((row.get(0)?, row.get(1)?), row.get(2)?)))?;
    let mut state = StateIds::new();
    for row in rows {
        let (key, id) = row?;
        state.insert(key, id);
    }
    Ok(state)
}

/// Stores `state` whole as a new group of the room.
pub(super) fn snapshot(txn: &Transaction<'_>, room_id: &str, state: &StateIds) -> Result<i64> {
    txn.execute(
        "INSERT INTO state_groups (room_id, prev_group, chain_len) VALUES (?1, NULL, 0)",
        [room_id],
    )?;
    let group = txn.last_insert_rowid();
    let mut stmt = txn.prepare_cached(
        "INSERT INTO state_group_entries (group_id, event_type, state_key, event_id) VALUES (?1, ?2, ?3, ?4)",
    )?;
    // In key order, each row goes at the end of the B-tree: a big room's state (thousands
    // of entries when a server joins it) is written page after page, not scattered.
    let mut entries: Vec<_> = state.iter().collect();
    entries.sort_unstable();
    for ((event_type, state_key), event_id) in entries {
        stmt.execute(params![group, event_type, state_key, event_id])?;
    }
    Ok(group)
}

/// The group for `before` with one state event set: a delta, or a snapshot once the chain
/// is long. `before` is `None` for the first event of a room.
pub(super) fn group_with(
    txn: &Transaction<'_>,
    room_id: &str,
    before: Option<i64>,
    entry: (&str, &str, &str),
) -> Result<i64> {
    let (event_type, state_key, event_id) = entry;
    let chain_len: Option<i64> = match before {
        Some(group) => txn
            .query_row(
                "SELECT chain_len FROM state_groups WHERE id = ?1",
                [group],
                |row| row.get(0),
            )
            .optional()?,
        None => None,
    };
    match (before, chain_len) {
        (Some(prev), Some(len)) if len < MAX_CHAIN => {
            txn.execute(
                "INSERT INTO state_groups (room_id, prev_group, chain_len) VALUES (?1, ?2, ?3)",
                params![room_id, prev, len + 1],
            )?;
            let group = txn.last_insert_rowid();
            txn.execute(
                "INSERT INTO state_group_entries (group_id, event_type, state_key, event_id) VALUES (?1, ?2, ?3, ?4)",
                params![group, event_type, state_key, event_id],
            )?;
            Ok(group)
        }
        _ => {
            let mut state = match before {
                Some(prev) => load_group(txn, prev)?,
                None => StateIds::new(),
            };
            state.insert(
                (event_type.to_owned(), state_key.to_owned()),
                event_id.to_owned(),
            );
            snapshot(txn, room_id, &state)
        }
    }
}

/// The group of the state after an event, if the event has one.
pub(super) fn group_of_event(conn: &Connection, event_id: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT group_id FROM event_state WHERE event_id = ?1",
        [event_id],
        |row| row.get(0),
    )
    .optional()
}

/// Reads of room states by event.
pub struct StateStore<'a> {
    pub(super) store: &'a Store,
}

impl StateStore<'_> {
    /// The room state after each of `event_ids`, in order; `None` for an event whose state
    /// is not known here.
    pub async fn after_events(&self, event_ids: Vec<String>) -> Result<Vec<Option<StateIds>>> {
        self.store
            .read(move |conn| {
                let mut states = Vec::with_capacity(event_ids.len());
                for event_id in &event_ids {
                    states.push(match group_of_event(conn, event_id)? {
                        Some(group) => Some(load_group(conn, group)?),
                        None => None,
                    });
                }
                Ok(states)
            })
            .await
    }

    /// The room's current state group, if it has one yet.
    pub async fn current_group(&self, room_id: &str) -> Result<Option<i64>> {
        let room_id = room_id.to_owned();
        self.store
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT state_group FROM rooms WHERE room_id = ?1",
                        [room_id],
                        |row| row.get(0),
                    )
                    .optional()?
                    .flatten())
            })
            .await
    }

    /// Records the state after an event known without its history (across a gap).
    pub async fn set_after(&self, event_id: &str, room_id: &str, state: StateIds) -> Result<()> {
        let (event_id, room_id) = (event_id.to_owned(), room_id.to_owned());
        self.store
            .write(move |txn| {
                let group = snapshot(txn, &room_id, &state)?;
                txn.execute(
                    "INSERT OR REPLACE INTO event_state (event_id, group_id) VALUES (?1, ?2)",
                    params![event_id, group],
                )?;
                Ok(())
            })
            .await
    }

    /// Some entries of a group: each of `keys` that the state has, without reading the
    /// rest (a big room's state has thousands of entries; the auth rules need a handful).
    pub async fn keys_of_group(&self, group: i64, keys: Vec<(String, String)>) -> Result<StateIds> {
        self.store
            .read(move |conn| {
                // The newest entry for the key along the group's delta chain.
                let mut stmt = conn.prepare_cached(
                    "WITH RECURSIVE chain(id, n) AS (SELECT ?1, 0 UNION ALL \
                       SELECT g.prev_group, chain.n + 1 FROM state_groups g JOIN chain ON g.id = chain.id \
                       WHERE g.prev_group IS NOT NULL) \
                     SELECT e.event_id FROM chain JOIN state_group_entries e \
                       ON e.group_id = chain.id AND e.event_type = ?2 AND e.state_key = ?3 \
                     ORDER BY chain.n ASC LIMIT 1",
                )?;
                let mut state = StateIds::new();
                for (event_type, state_key) in keys {
                    let id: Option<String> = stmt
                        .query_row(params![group, event_type, state_key], |row| row.get(0))
                        .optional()?;
                    if let Some(id) = id {
                        state.insert((event_type, state_key), id);
                    }
                }
                Ok(state)
            })
            .await
    }

    /// The group of the state after an event.
    pub async fn group_of(&self, event_id: &str) -> Result<Option<i64>> {
        let event_id = event_id.to_owned();
        self.store
            .read(move |conn| Ok(group_of_event(conn, &event_id)?))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(t: &str, k: &str) -> (String, String) {
        (t.to_owned(), k.to_owned())
    }

    #[test]
    fn deltas_read_back_as_the_whole_state_and_chains_stay_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("kith.db")).expect("open");
        let inner = store.inner.clone();
        let mut conn = inner.writer.lock().expect("lock");
        let txn = conn.transaction().expect("txn");
        let mut group = group_with(&txn, "!r:x", None, ("m.room.create", "", "$c")).expect("g");
        for i in 0..(MAX_CHAIN * 2 + 5) {
            group = group_with(
                &txn,
                "!r:x",
                Some(group),
                (
                    "m.room.member",
                    &format!("@u{}:x", i % 10),
                    &format!("$m{i}"),
                ),
            )
            .expect("g");
        }
        let state = load_group(&txn, group).expect("load");
        assert_eq!(state.len(), 11);
        assert_eq!(state[&key("m.room.create", "")], "$c");
        // The last write of each member wins.
        let last = MAX_CHAIN * 2 + 4;
        assert_eq!(
            state[&key("m.room.member", &format!("@u{}:x", last % 10))],
            format!("$m{last}")
        );
        let chain: i64 = txn
            .query_row(
                "SELECT chain_len FROM state_groups WHERE id = ?1",
                [group],
                |r| r.get(0),
            )
            .expect("chain");
        assert!(chain <= MAX_CHAIN);
    }

    #[tokio::test]
    async fn some_keys_of_a_group_read_as_the_whole_state_has_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("kith.db")).expect("open");
        let (group, whole) = {
            let inner = store.inner.clone();
            let mut conn = inner.writer.lock().expect("lock");
            let txn = conn.transaction().expect("txn");
            let mut group = group_with(&txn, "!r:x", None, ("m.room.create", "", "$c")).expect("g");
            for i in 0..(MAX_CHAIN * 3) {
                let member = format!("@u{}:x", i % 7);
                let event = format!("$m{i}");
                group = group_with(
                    &txn,
                    "!r:x",
                    Some(group),
                    ("m.room.member", &member, &event),
                )
                .expect("g");
            }
            let whole = load_group(&txn, group).expect("load");
            txn.commit().expect("commit");
            (group, whole)
        };
        let keys = vec![
            key("m.room.create", ""),
            key("m.room.member", "@u3:x"),
            key("m.room.member", "@u6:x"),
            key("m.room.power_levels", ""),
        ];
        let some = store
            .state()
            .keys_of_group(group, keys.clone())
            .await
            .expect("keys");
        let expected: StateIds = keys
            .into_iter()
            .filter_map(|k| whole.get(&k).map(|id| (k, id.clone())))
            .collect();
        assert_eq!(some, expected);
        assert_eq!(some.len(), 3);
    }
}
