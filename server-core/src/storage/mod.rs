//! Storage: SQLite through rusqlite, in WAL mode, with numbered migrations.
//!
//! What belongs here: one [`Store`] handing out typed sub-stores (`store.users()`,
//! `store.events()`, ...), each in its own file. Each method is one query or one transaction
//! and returns domain types. What does not: anything that decides (auth, policy) — that is the
//! service layer's — and any call back into a service.
//!
//! Database work never blocks the async runtime: every call runs on a blocking thread.
//! There is one writer connection (SQLite allows one writer at a time anyway) and a few
//! reader connections that WAL lets run beside it. Writes commit with `synchronous=FULL`,
//! so a write is durable before the caller acknowledges it.
//!
//! Every write that clients must learn about through `/sync` takes a position from one
//! stream sequence in the same transaction (`next_stream_pos`), so positions grow in commit
//! order and a sync token is a single number.

mod account_data;
mod backup;
mod dashboard;
mod events;
mod federation_queue;
mod keys;
mod media;
mod migrations;
mod presence;
mod rooms;
mod server_keys;
mod state;
mod to_device;
mod users;

use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use rusqlite::{Connection, OpenFlags, Transaction};

pub use self::{
    account_data::{AccountDataStore, Receipt},
    backup::{BackupStore, BackupVersion, ReplaceRule, RoomKey},
    dashboard::{AccountRow, DashboardStore, MemberRow, RoomRow, TokenRow},
    events::{
        EventsStore, Membership, NewCurrent, NewEvent, RemoteMembership, RoomHead, StateBefore,
        StoredEvent,
    },
    federation_queue::{DestinationHealth, FederationQueueStore, OutboxItem, OutboxKind},
    keys::{
        CrossSigningKey, DeviceKeys, KeySignature, KeyUpload, KeysStore, MembershipChange,
        OneTimeKey,
    },
    media::{MediaRecord, MediaStore, Recorded, StoredThumbnail, UploadedFile},
    presence::{PresenceRow, PresenceStore},
    rooms::{PublicRoom, RoomsStore},
    server_keys::{KeyResponse, ServerKey, ServerKeysStore},
    state::{StateIds, StateStore},
    to_device::{PendingToDevice, ToDeviceMessage, ToDeviceStore},
    users::{Device, TokenInfo, User, UsersStore},
};
use crate::error::{Error, Result};

const READERS: usize = 4;

/// The database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Connection>,
    /// Reader connections, each opened the first time it is needed: a quiet server uses
    /// one, and each costs memory (its own schema and page cache).
    readers: Vec<Mutex<Option<Connection>>>,
    path: std::path::PathBuf,
    next_reader: AtomicUsize,
    tokens: Mutex<TokenCache>,
}

/// Who holds each access token (by hash), as read lately: the read every authenticated
/// request would otherwise make. Every write that ends tokens or changes what they stand
/// for goes through [`Store::write_sessions`], which empties it once committed; the
/// generation keeps a read that raced such a write from putting back what it ended.
#[derive(Default)]
struct TokenCache {
    generation: u64,
    owners: std::collections::HashMap<String, TokenInfo>,
}

/// Tokens cached at most; past it the cache starts again empty.
const TOKEN_CACHE: usize = 10_000;

impl Store {
    /// Opens (creating if needed) the database at `path` and runs pending migrations.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut writer = Connection::open(path)?;
        configure(&writer)?;
        migrations::run(&mut writer)?;
        let readers = (0..READERS).map(|_| Mutex::new(None)).collect();
        Ok(Self {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                readers,
                path: path.to_owned(),
                next_reader: AtomicUsize::new(0),
                tokens: Mutex::default(),
            }),
        })
    }

    /// Runs `f` on a reader connection, on a blocking thread.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            // The first reader nobody holds; when all are busy, wait for one in turn.
            let mut reader = inner.readers.iter().find_map(|r| r.try_lock().ok());
            if reader.is_none() {
                let index = inner.next_reader.fetch_add(1, Ordering::Relaxed) % inner.readers.len();
                reader = Some(
                    inner.readers[index]
                        .lock()
                        .map_err(|_| Error::internal("reader lock poisoned"))?,
                );
            }
            let Some(mut reader) = reader else {
                return Err(Error::internal("no reader connection"));
            };
            if reader.is_none() {
                let conn = Connection::open_with_flags(
                    &inner.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                configure(&conn)?;
                *reader = Some(conn);
            }
            match reader.as_ref() {
                Some(conn) => f(conn),
                None => Err(Error::internal("no reader connection")),
            }
        })
        .await
        .map_err(|e| Error::internal(format!("database task: {e}")))?
    }

    /// Runs `f` in one write transaction, on a blocking thread; commits if `f` succeeds.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || write_in(&inner, f))
            .await
            .map_err(|e| Error::internal(format!("database task: {e}")))?
    }

    /// Like [`Self::write`], for a write that ends access tokens or changes their owners:
    /// once it is over, no cached token outlives it. The cache is emptied on the blocking
    /// thread right after the commit, so a request dropped meanwhile (the client went away)
    /// cannot leave an ended token cached.
    pub(crate) async fn write_sessions<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let result = write_in(&inner, f);
            let mut cache = inner.tokens.lock().unwrap_or_else(|e| e.into_inner());
            cache.generation += 1;
            cache.owners.clear();
            result
        })
        .await
        .map_err(|e| Error::internal(format!("database task: {e}")))?
    }

    fn token_cache(&self) -> std::sync::MutexGuard<'_, TokenCache> {
        self.inner.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes a consistent copy of the whole database to `dest` (SQLite's `VACUUM INTO`,
    /// one read transaction; writers go on meanwhile), on the calling thread.
    pub fn snapshot_to(&self, dest: &Path) -> Result<()> {
        let connection = Connection::open_with_flags(
            &self.inner.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        configure(&connection)?;
        let dest = dest
            .to_str()
            .ok_or_else(|| Error::internal("the backup path is not UTF-8"))?;
        connection.execute("VACUUM INTO ?1", [dest])?;
        Ok(())
    }

    /// Users, devices and tokens.
    pub fn users(&self) -> UsersStore<'_> {
        UsersStore { store: self }
    }
    /// Rooms, aliases and the public directory.
    pub fn rooms(&self) -> RoomsStore<'_> {
        RoomsStore { store: self }
    }
    /// Events, room state, memberships and transaction ids.
    pub fn events(&self) -> EventsStore<'_> {
        EventsStore { store: self }
    }
    /// Account data, receipts and filters.
    pub fn account_data(&self) -> AccountDataStore<'_> {
        AccountDataStore { store: self }
    }
    /// Media metadata, thumbnails and cached URL previews.
    pub fn media(&self) -> MediaStore<'_> {
        MediaStore { store: self }
    }

    /// Encryption keys and device lists.
    pub fn keys(&self) -> KeysStore<'_> {
        KeysStore { store: self }
    }
    /// To-device inboxes.
    pub fn to_device(&self) -> ToDeviceStore<'_> {
        ToDeviceStore { store: self }
    }
    /// The federation outbox and destination health.
    pub fn federation_queue(&self) -> FederationQueueStore<'_> {
        FederationQueueStore { store: self }
    }

    /// Users' presence.
    pub fn presence(&self) -> PresenceStore<'_> {
        PresenceStore { store: self }
    }

    /// Room states by event (state groups).
    pub fn state(&self) -> StateStore<'_> {
        StateStore { store: self }
    }

    /// Other servers' signing keys.
    pub fn server_keys(&self) -> ServerKeysStore<'_> {
        ServerKeysStore { store: self }
    }
    /// The dashboard's lists and figures.
    pub fn dashboard(&self) -> DashboardStore<'_> {
        DashboardStore { store: self }
    }
    /// Server-side key backups.
    pub fn backup(&self) -> BackupStore<'_> {
        BackupStore { store: self }
    }

    /// The newest stream position (0 for a new database).
    pub async fn current_stream_pos(&self) -> Result<i64> {
        self.read(|conn| {
            Ok(
                conn.query_row("SELECT pos FROM stream_seq WHERE id = 1", [], |row| {
                    row.get(0)
                })?,
            )
        })
        .await
    }
}

/// Runs `f` in one write transaction on the writer connection; commits if `f` succeeds.
fn write_in<T>(inner: &Inner, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
    let mut conn = inner
        .writer
        .lock()
        .map_err(|_| Error::internal("writer lock poisoned"))?;
    let txn = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let value = f(&txn)?;
    txn.commit()?;
    Ok(value)
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Hot statements are prepared once per connection (`prepare_cached`); the default
    // cache of 16 is smaller than the set one send or sync uses.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 256;

/// Runs one statement through the connection's statement cache.
pub(crate) fn exec<P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// Takes the next stream position inside a write transaction.
pub(crate) fn next_stream_pos(txn: &Transaction<'_>) -> Result<i64> {
    Ok(txn
        .prepare_cached("UPDATE stream_seq SET pos = pos + 1 WHERE id = 1 RETURNING pos")?
        .query_row([], |row| row.get(0))?)
}

/// Milliseconds since the Unix epoch, for timestamps stored in rows.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
