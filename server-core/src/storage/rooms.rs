//! Rooms, room aliases and the public room directory.

use rusqlite::{OptionalExtension, params};

use super::{Store, now_ms};
use crate::error::Result;

/// A room listed in the public directory.
#[derive(Debug, Clone)]
pub struct PublicRoom {
    /// The room.
    pub room_id: String,
    /// Its position in the listing, for pagination tokens.
    pub rowid: i64,
}

/// Rooms and aliases.
pub struct RoomsStore<'a> {
    pub(super) store: &'a Store,
}

impl RoomsStore<'_> {
    /// Records a new room. Returns false if the ID already exists.
    pub async fn create(&self, room_id: &str, version: &str, creator: &str) -> Result<bool> {
        let (room_id, version, creator) =
            (room_id.to_owned(), version.to_owned(), creator.to_owned());
        self.store
            .write(move |txn| {
                Ok(txn.execute(
                    "INSERT OR IGNORE INTO rooms (room_id, version, creator, created_ts) VALUES (?1, ?2, ?3, ?4)",
                    params![room_id, version, creator, now_ms()],
                )? == 1)
            })
            .await
    }

    /// The room's version, or `None` for an unknown room.
    pub async fn version(&self, room_id: &str) -> Result<Option<String>> {
        let room_id = room_id.to_owned();
        self.store
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT version FROM rooms WHERE room_id = ?1",
                        [room_id],
                        |row| row.get(0),
                    )
                    .optional()?)
            })
            .await
    }

    /// Counts rooms known to the server.
    pub async fn count(&self) -> Result<u64> {
        let count: i64 = self
            .store
            .read(|conn| Ok(conn.query_row("SELECT COUNT(*) FROM rooms", [], |row| row.get(0))?))
            .await?;
        Ok(count.max(0) as u64)
    }

    /// Publishes or unpublishes a room in the directory. False for an unknown room.
    pub async fn set_published(&self, room_id: &str, published: bool) -> Result<bool> {
        let room_id = room_id.to_owned();
        self.store
            .write(move |txn| {
                Ok(txn.execute(
                    "UPDATE rooms SET published = ?2 WHERE room_id = ?1",
                    params![room_id, published],
                )? == 1)
            })
            .await
    }

    /// Whether a room is published; `None` for an unknown room.
    pub async fn is_published(&self, room_id: &str) -> Result<Option<bool>> {
        let room_id = room_id.to_owned();
        self.store
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT published FROM rooms WHERE room_id = ?1",
                        [room_id],
                        |row| row.get(0),
                    )
                    .optional()?)
            })
            .await
    }

    /// Published rooms after position `after`, in listing order.
    pub async fn published(&self, after: i64, limit: u32) -> Result<Vec<PublicRoom>> {
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT room_id, rowid FROM rooms WHERE published = 1 AND rowid > ?1 ORDER BY rowid LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![after, limit], |row| Ok(PublicRoom { room_id: row.get(0)?, rowid: row.get(1)? }))?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    /// Creates an alias. Returns false when the alias is taken.
    pub async fn create_alias(&self, alias: &str, room_id: &str, creator: &str) -> Result<bool> {
        let args = [alias.to_owned(), room_id.to_owned(), creator.to_owned()];
        self.store
            .write(move |txn| {
                Ok(txn.execute("INSERT OR IGNORE INTO room_aliases (alias, room_id, creator) VALUES (?1, ?2, ?3)", args)? == 1)
            })
            .await
    }

    /// The room and creator of an alias, or `None` if the alias is unknown.
    pub async fn alias(&self, alias: &str) -> Result<Option<(String, String)>> {
        let alias = alias.to_owned();
        self.store
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT room_id, creator FROM room_aliases WHERE alias = ?1",
                        [alias],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .optional()?)
            })
            .await
    }

    /// Deletes an alias. Returns false if it did not exist.
    pub async fn delete_alias(&self, alias: &str) -> Result<bool> {
        let alias = alias.to_owned();
        self.store
            .write(move |txn| {
                Ok(txn.execute("DELETE FROM room_aliases WHERE alias = ?1", [alias])? == 1)
            })
            .await
    }

    /// The aliases that point at a room.
    pub async fn aliases_of(&self, room_id: &str) -> Result<Vec<String>> {
        let room_id = room_id.to_owned();
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT alias FROM room_aliases WHERE room_id = ?1 ORDER BY alias",
                )?;
                let rows = stmt.query_map([room_id], |row| row.get(0))?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }
}
