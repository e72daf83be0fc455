//! Numbered schema migrations. Never edit one that has landed: add the next number.
//!
//! The schema version is SQLite's `user_version`; each migration runs in its own
//! transaction together with the bump of that number.

use rusqlite::Connection;

use crate::error::{Error, Result};

/// The migrations, in order. Index 0 is migration 1.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_push_actions.sql"),
    include_str!("migrations/0003_e2ee.sql"),
    include_str!("migrations/0004_media.sql"),
    include_str!("migrations/0005_server_keys.sql"),
    include_str!("migrations/0006_federation_queue.sql"),
    include_str!("migrations/0007_room_graph.sql"),
    include_str!("migrations/0008_presence.sql"),
    include_str!("migrations/0009_transaction_id_age.sql"),
    include_str!("migrations/0010_outliers_rowid.sql"),
];

/// Applies every migration newer than the database's `user_version`.
pub(super) fn run(conn: &mut Connection) -> Result<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let current = usize::try_from(current).unwrap_or(0);
    if current > MIGRATIONS.len() {
        return Err(Error::internal(format!(
            "the database is at schema version {current}, newer than this Kith ({}); update Kith",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let txn = conn.transaction()?;
        txn.execute_batch(sql)?;
        txn.pragma_update(
            None,
            "user_version",
            i64::try_from(index + 1).unwrap_or(i64::MAX),
        )?;
        txn.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_apply_to_a_new_database_and_are_idempotent() {
        let mut conn = rusqlite::Connection::open_in_memory().expect("open");
        super::run(&mut conn).expect("first run");
        super::run(&mut conn).expect("second run is a no-op");
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .expect("version");
        assert_eq!(version as usize, super::MIGRATIONS.len());
    }
}
