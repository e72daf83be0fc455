//! Media metadata: which media IDs exist, who made them, which content-addressed file holds
//! their bytes; the thumbnails made from them; and cached URL previews. The bytes themselves
//! are files, kept by the media service.

use rusqlite::{OptionalExtension, Row, params};

use super::Store;
use crate::error::Result;

/// One media ID and what is known of it.
#[derive(Debug, Clone)]
pub struct MediaRecord {
    /// The media ID (the last part of the `mxc://` URI).
    pub media_id: String,
    /// Who created or uploaded it.
    pub uploader: String,
    /// The `Content-Type` given at upload.
    pub content_type: Option<String>,
    /// The file name given at upload.
    pub filename: Option<String>,
    /// Size in bytes (0 until uploaded).
    pub size: u64,
    /// Hex SHA-256 of the bytes, which names the file (`None` until uploaded).
    pub sha256: Option<String>,
    /// When the ID was created, in ms since the epoch.
    pub created_ts: i64,
    /// Whether the bytes have arrived.
    pub uploaded: bool,
    /// For an ID from `/create` not yet uploaded: when it expires, in ms since the epoch.
    pub unused_expires_at: Option<i64>,
}

/// The bytes of an upload, stored already, to record under a media ID.
#[derive(Debug, Clone)]
pub struct UploadedFile {
    /// The `Content-Type` given at upload.
    pub content_type: Option<String>,
    /// The file name given at upload.
    pub filename: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
}

/// A stored thumbnail.
#[derive(Debug, Clone)]
pub struct StoredThumbnail {
    /// Its content type (`image/png`, `image/jpeg`, ...).
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
    /// Hex SHA-256 of its bytes, which names its file.
    pub sha256: String,
}

/// What became of an upload's metadata row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Stored.
    Done,
    /// The reserved ID is no longer waiting for this uploader's bytes.
    NotPending,
    /// The uploader's total would pass the quota (checked in the same transaction).
    OverQuota,
}

/// Whether `uploader` may add `more` bytes under `quota` (0: no quota), inside a transaction.
fn within_quota(
    txn: &rusqlite::Transaction<'_>,
    uploader: &str,
    more: u64,
    quota: u64,
) -> rusqlite::Result<bool> {
    if quota == 0 {
        return Ok(true);
    }
    let used: i64 = txn.query_row(
        "SELECT COALESCE(SUM(size), 0) FROM media WHERE uploader = ?1 AND uploaded = 1",
        [uploader],
        |row| row.get(0),
    )?;
    Ok(u64::try_from(used).unwrap_or(0).saturating_add(more) <= quota)
}

/// Media, thumbnails and URL previews.
pub struct MediaStore<'a> {
    pub(super) store: &'a Store,
}

fn record(row: &Row<'_>) -> rusqlite::Result<MediaRecord> {
    Ok(MediaRecord {
        media_id: row.get(0)?,
        uploader: row.get(1)?,
        content_type: row.get(2)?,
        filename: row.get(3)?,
        size: u64::try_from(row.get::<_, i64>(4)?).unwrap_or(0),
        sha256: row.get(5)?,
        created_ts: row.get(6)?,
        uploaded: row.get(7)?,
        unused_expires_at: row.get(8)?,
    })
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl MediaStore<'_> {
    /// Records an uploaded media item under a new ID, unless it would take the uploader over
    /// `quota` bytes (0: no quota).
    pub async fn insert_uploaded(
        &self,
        media_id: &str,
        uploader: &str,
        file: UploadedFile,
        created_ts: i64,
        quota: u64,
    ) -> Result<Recorded> {
        let (media_id, uploader) = (media_id.to_owned(), uploader.to_owned());
        self.store
            .write(move |txn| {
                if !within_quota(txn, &uploader, file.size, quota)? {
                    return Ok(Recorded::OverQuota);
                }
                txn.execute(
                    "INSERT INTO media (media_id, uploader, content_type, filename, size, sha256, created_ts, uploaded) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1)",
                    params![media_id, uploader, file.content_type, file.filename, to_i64(file.size), file.sha256, created_ts],
                )?;
                Ok(Recorded::Done)
            })
            .await
    }

    /// Records another server's media item, fetched and stored, under `key`
    /// (`{origin}/{media_id}`). A second fetch of the same item racing this one is a no-op.
    pub async fn insert_remote(
        &self,
        key: &str,
        origin: &str,
        file: UploadedFile,
        fetched_ts: i64,
    ) -> Result<()> {
        let (key, origin) = (key.to_owned(), origin.to_owned());
        self.store
            .write(move |txn| {
                txn.execute(
                    "INSERT OR IGNORE INTO media (media_id, uploader, content_type, filename, size, sha256, created_ts, uploaded) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1)",
                    params![key, origin, file.content_type, file.filename, to_i64(file.size), file.sha256, fetched_ts],
                )?;
                Ok(())
            })
            .await
    }

    /// Reserves a media ID for a later upload, unless `uploader` already has `max_pending`
    /// unexpired reservations at `now`. Returns whether it was reserved.
    pub async fn insert_pending(
        &self,
        media_id: &str,
        uploader: &str,
        now: i64,
        expires_at: i64,
        max_pending: u32,
    ) -> Result<bool> {
        let (media_id, uploader) = (media_id.to_owned(), uploader.to_owned());
        self.store
            .write(move |txn| {
                let pending: i64 = txn.query_row(
                    "SELECT COUNT(*) FROM media WHERE uploader = ?1 AND uploaded = 0 AND unused_expires_at > ?2",
                    params![uploader, now],
                    |row| row.get(0),
                )?;
                if pending >= i64::from(max_pending) {
                    return Ok(false);
                }
                txn.execute(
                    "INSERT INTO media (media_id, uploader, created_ts, uploaded, unused_expires_at) VALUES (?1, ?2, ?3, 0, ?4)",
                    params![media_id, uploader, now, expires_at],
                )?;
                Ok(true)
            })
            .await
    }

    /// Fills a reserved media ID with its bytes, if it is still reserved by `uploader`, not
    /// uploaded and not expired at `now`, and the bytes fit in `quota` (0: no quota).
    pub async fn fill_pending(
        &self,
        media_id: &str,
        uploader: &str,
        file: UploadedFile,
        now: i64,
        quota: u64,
    ) -> Result<Recorded> {
        let (media_id, uploader) = (media_id.to_owned(), uploader.to_owned());
        self.store
            .write(move |txn| {
                if !within_quota(txn, &uploader, file.size, quota)? {
                    return Ok(Recorded::OverQuota);
                }
                let changed = txn.execute(
                    "UPDATE media SET content_type = ?3, filename = ?4, size = ?5, sha256 = ?6, uploaded = 1, created_ts = ?7 \
                     WHERE media_id = ?1 AND uploader = ?2 AND uploaded = 0 AND unused_expires_at > ?7",
                    params![media_id, uploader, file.content_type, file.filename, to_i64(file.size), file.sha256, now],
                )?;
                Ok(if changed == 1 {
                    Recorded::Done
                } else {
                    Recorded::NotPending
                })
            })
            .await
    }

    /// A media ID's record, or `None` if it was never created.
    pub async fn get(&self, media_id: &str) -> Result<Option<MediaRecord>> {
        let media_id = media_id.to_owned();
        self.store
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT media_id, uploader, content_type, filename, size, sha256, created_ts, uploaded, unused_expires_at \
                         FROM media WHERE media_id = ?1",
                        [media_id],
                        record,
                    )
                    .optional()?)
            })
            .await
    }

    /// The total size of what `uploader` has uploaded, in bytes (0 for nothing).
    pub async fn uploaded_bytes(&self, uploader: &str) -> Result<u64> {
        let uploader = uploader.to_owned();
        self.store
            .read(move |conn| {
                let total: i64 = conn.query_row(
                    "SELECT COALESCE(SUM(size), 0) FROM media WHERE uploader = ?1 AND uploaded = 1",
                    [uploader],
                    |row| row.get(0),
                )?;
                Ok(u64::try_from(total).unwrap_or(0))
            })
            .await
    }

    /// The stored thumbnail of a media item for one request shape, or `None` if not made yet.
    pub async fn thumbnail(
        &self,
        media_id: &str,
        width: u32,
        height: u32,
        method: &str,
    ) -> Result<Option<StoredThumbnail>> {
        let (media_id, method) = (media_id.to_owned(), method.to_owned());
        self.store
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT content_type, size, sha256 FROM media_thumbnails \
                         WHERE media_id = ?1 AND width = ?2 AND height = ?3 AND method = ?4",
                        params![media_id, width, height, method],
                        |row| {
                            Ok(StoredThumbnail {
                                content_type: row.get(0)?,
                                size: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                                sha256: row.get(2)?,
                            })
                        },
                    )
                    .optional()?)
            })
            .await
    }

    /// How many thumbnails a media item has (0 for none).
    pub async fn thumbnail_count(&self, media_id: &str) -> Result<u64> {
        let media_id = media_id.to_owned();
        self.store
            .read(move |conn| {
                let n: i64 = conn.query_row(
                    "SELECT COUNT(*) FROM media_thumbnails WHERE media_id = ?1",
                    [media_id],
                    |row| row.get(0),
                )?;
                Ok(u64::try_from(n).unwrap_or(0))
            })
            .await
    }

    /// Records a thumbnail; a concurrent request that made the same one first wins.
    pub async fn insert_thumbnail(
        &self,
        media_id: &str,
        width: u32,
        height: u32,
        method: &str,
        thumbnail: StoredThumbnail,
    ) -> Result<()> {
        let (media_id, method) = (media_id.to_owned(), method.to_owned());
        self.store
            .write(move |txn| {
                txn.execute(
                    "INSERT INTO media_thumbnails (media_id, width, height, method, content_type, size, sha256) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
                    params![media_id, width, height, method, thumbnail.content_type, to_i64(thumbnail.size), thumbnail.sha256],
                )?;
                Ok(())
            })
            .await
    }

    /// A cached URL preview (its JSON) that has not expired at `now`, or `None`.
    pub async fn preview(&self, url: &str, now: i64) -> Result<Option<String>> {
        let url = url.to_owned();
        self.store
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT og_json FROM url_previews WHERE url = ?1 AND expires_ts > ?2",
                        params![url, now],
                        |row| row.get(0),
                    )
                    .optional()?)
            })
            .await
    }

    /// Caches a URL preview until `expires_ts`, replacing an older one.
    pub async fn put_preview(&self, url: &str, og_json: String, expires_ts: i64) -> Result<()> {
        let url = url.to_owned();
        self.store
            .write(move |txn| {
                txn.execute(
                    "INSERT INTO url_previews (url, og_json, expires_ts) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (url) DO UPDATE SET og_json = excluded.og_json, expires_ts = excluded.expires_ts",
                    params![url, og_json, expires_ts],
                )?;
                Ok(())
            })
            .await
    }
}
