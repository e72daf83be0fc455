//! The media repository (spec: client-server-api/modules/content_repo.md): uploads (direct,
//! and asynchronous through `/create`), downloads, thumbnails and URL previews.
//!
//! Bytes live in a content-addressed file store ([`files`]), metadata in SQLite
//! (`storage::media`). An upload's file is durable before its row commits, so an
//! acknowledged `mxc://` URI always has its bytes. Only local media exists for now: media
//! of other servers answers `M_NOT_FOUND` until federation fetches it (a later issue).

pub mod files;
mod html;
mod preview;
pub mod thumbnail;

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use ruma::{OwnedServerName, ServerName, UserId};
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

use self::{
    files::Files,
    preview::{Fetched, Previewer},
    thumbnail::Outcome,
};
pub use self::{files::IncomingFile, thumbnail::Method};
use super::{ServerIdentity, federation::Federation, locks::KeyedLocks};
use crate::{
    config::Config,
    crypto::random_string,
    error::{Error, ErrorKind, Result},
    storage::{MediaRecord, Recorded, Store, StoredThumbnail, UploadedFile, now_ms},
};

/// How long an ID from `/create` waits for its upload (spec: `POST /_matrix/media/v1/create`,
/// "The recommended default expiration is 24 hours").
const UNUSED_EXPIRY_MS: i64 = 24 * 60 * 60 * 1000;
/// Unexpired `/create` IDs a user may hold at once (spec: the server "should limit the number
/// of concurrent pending media uploads"); more is `429 M_LIMIT_EXCEEDED`.
const MAX_PENDING_PER_USER: u32 = 16;
/// The default and the longest wait for media not yet uploaded (spec: `timeout_ms`, default
/// 20000; "The content repository SHOULD impose a maximum value").
const DEFAULT_WAIT_MS: u64 = 20_000;
const MAX_WAIT_MS: u64 = 60_000;
/// Thumbnails kept per media item; beyond this, new sizes are made for the request and not
/// kept, so one user cannot fill the disk by asking for every size.
const MAX_STORED_THUMBNAILS: u64 = 64;
/// Thumbnails decoded at once: decoding is the memory-hungry step.
const THUMBNAIL_WORKERS: usize = 2;
/// URL previews fetched at once; each may hold up to about 11 MiB while it runs.
const PREVIEW_WORKERS: usize = 4;
/// Other servers' media fetched at once (each up to `media.max_upload_bytes` in memory).
const REMOTE_FETCHES: usize = 4;
/// How much of an HTML page a preview reads, and how large an image it keeps.
const PREVIEW_MAX_HTML_BYTES: usize = 1024 * 1024;
const PREVIEW_MAX_IMAGE_BYTES: usize = 10 * 1024 * 1024;
/// The whole preview, all fetches included, must finish within this.
const PREVIEW_DEADLINE: Duration = Duration::from_secs(20);
/// How long a preview is cached.
const PREVIEW_CACHE_MS: i64 = 60 * 60 * 1000;

/// Which download endpoints a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `/_matrix/client/v1/media/*`, with an access token.
    Authenticated,
    /// The deprecated `/_matrix/media/v3/download` and `/thumbnail`, without one: only media
    /// from before the freeze (config `media.unauthenticated_frozen_since_ms`).
    Unauthenticated,
}

/// What the uploader said about a file.
#[derive(Debug, Clone, Default)]
pub struct UploadMeta {
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The `filename` query parameter.
    pub filename: Option<String>,
}

/// Bytes to serve: an open file and what to call it.
pub struct Content {
    /// The file, at its start.
    pub file: tokio::fs::File,
    /// Its size in bytes.
    pub size: u64,
    /// The content type to serve it with.
    pub content_type: String,
    /// The file name, if known.
    pub filename: Option<String>,
}

/// A thumbnail request.
#[derive(Debug, Clone, Copy)]
pub struct ThumbnailRequest {
    /// Desired (minimum) width.
    pub width: u32,
    /// Desired (minimum) height.
    pub height: u32,
    /// Crop or scale.
    pub method: Method,
    /// Whether the client accepts an animated thumbnail (`animated=true`).
    pub animated: bool,
}

/// The media service. Cheap to clone.
#[derive(Clone)]
pub struct Media {
    config: Arc<Config>,
    identity: Arc<ServerIdentity>,
    store: Store,
    files: Files,
    /// Woken whenever an upload completes, so downloads waiting for it look again.
    uploaded: Arc<Notify>,
    thumbnail_workers: Arc<Semaphore>,
    preview_workers: Arc<Semaphore>,
    previewer: Option<Previewer>,
    federation: Federation,
    /// Other servers' media being fetched at once, each held in memory whole.
    remote_fetches: Arc<Semaphore>,
    /// One fetch per remote media item: a second request waits and finds it stored.
    remote_locks: Arc<KeyedLocks>,
}

/// Where a media item lives, from its `mxc://` server name.
enum Origin<'a> {
    Local(&'a str),
    Remote(OwnedServerName, &'a str),
}

impl Media {
    /// Builds the service over the file store at `root` (`<data_dir>/media`).
    pub fn new(
        config: Arc<Config>,
        identity: Arc<ServerIdentity>,
        store: Store,
        root: std::path::PathBuf,
        federation: Federation,
    ) -> Result<Self> {
        let files = Files::open(root)?;
        let previewer = if config.media.url_preview_enabled {
            if config.media.url_preview_allow_private {
                tracing::warn!(
                    "media.url_preview_allow_private is on: URL previews can reach private and \
                     loopback addresses. Use it only for tests and closed networks."
                );
            }
            Some(Previewer::new(config.media.url_preview_allow_private)?)
        } else {
            None
        };
        Ok(Self {
            config,
            identity,
            store,
            files,
            uploaded: Arc::new(Notify::new()),
            thumbnail_workers: Arc::new(Semaphore::new(THUMBNAIL_WORKERS)),
            preview_workers: Arc::new(Semaphore::new(PREVIEW_WORKERS)),
            previewer,
            federation,
            remote_fetches: Arc::new(Semaphore::new(REMOTE_FETCHES)),
            remote_locks: Arc::default(),
        })
    }

    /// The largest upload accepted, in bytes (`m.upload.size`).
    pub fn max_upload_bytes(&self) -> u64 {
        self.config.media.max_upload_bytes
    }

    fn mxc(&self, media_id: &str) -> String {
        format!("mxc://{}/{media_id}", self.identity.server_name)
    }

    /// Whose media `mxc://{server_name}/{media_id}` is. IDs with characters outside the
    /// spec's set, and server names that are not valid, name no media.
    fn origin<'a>(&self, server_name: &str, media_id: &'a str) -> Result<Origin<'a>> {
        // spec: content_repo.md, "Security considerations": only A-Za-z0-9, `_` and `-`.
        if media_id.is_empty()
            || !media_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(Error::not_found("There is no such media."));
        }
        if server_name == self.identity.server_name.as_str() {
            return Ok(Origin::Local(media_id));
        }
        let origin = ServerName::parse(server_name)
            .map_err(|_| Error::not_found("There is no such media."))?;
        Ok(Origin::Remote(origin, media_id))
    }

    /// A media ID of this server (uploads go only to those).
    fn local_media_id<'a>(&self, server_name: &str, media_id: &'a str) -> Result<&'a str> {
        match self.origin(server_name, media_id)? {
            Origin::Local(media_id) => Ok(media_id),
            Origin::Remote(..) => Err(Error::not_found(
                "There is no such media ID on this server.",
            )),
        }
    }

    /// Another server's media item: from the cache, or fetched over federation and kept
    /// (spec: server-server-api.md, "Content Repository"). It is kept as a `media` row
    /// under the key `{origin}/{media_id}`, which no local ID can equal (they have no
    /// `/`), so its thumbnails are made and kept like those of local media.
    async fn remote_record(
        &self,
        origin: &ServerName,
        media_id: &str,
        timeout_ms: Option<u64>,
        access: Access,
    ) -> Result<MediaRecord> {
        let key = format!("{origin}/{media_id}");
        let media = self.store.media();
        let record = match media.get(&key).await? {
            Some(record) if record.uploaded => record,
            _ => {
                // spec: content_repo.md, the freeze: the deprecated endpoints fetch nothing
                // new from other servers.
                if access == Access::Unauthenticated {
                    return Err(frozen());
                }
                let lock = self.remote_locks.lock_for(&key);
                let _fetching = lock.lock().await;
                // Another request may have fetched it while this one waited.
                match media.get(&key).await? {
                    Some(record) if record.uploaded => record,
                    _ => {
                        self.fetch_remote(origin, media_id, &key, timeout_ms)
                            .await?
                    }
                }
            }
        };
        if access == Access::Unauthenticated
            && record.created_ts >= self.config.media.unauthenticated_frozen_since_ms
        {
            return Err(frozen());
        }
        Ok(record)
    }

    /// Fetches another server's media item over federation and stores it under `key`.
    async fn fetch_remote(
        &self,
        origin: &ServerName,
        media_id: &str,
        key: &str,
        timeout_ms: Option<u64>,
    ) -> Result<MediaRecord> {
        let media = self.store.media();
        let wait = timeout_ms.unwrap_or(DEFAULT_WAIT_MS).min(MAX_WAIT_MS);
        let _permit = self
            .remote_fetches
            .acquire()
            .await
            .map_err(|_| Error::internal("remote media fetches closed"))?;
        let fetched = self
            .federation
            .media_download(origin, media_id, wait, self.max_upload_bytes())
            .await?;
        let stored = self.files.store_bytes(&fetched.bytes).await?;
        let file = UploadedFile {
            content_type: fetched
                .content_type
                .as_deref()
                .and_then(normalise_content_type),
            filename: fetched.filename.map(|n| n.chars().take(255).collect()),
            size: stored.size,
            sha256: stored.sha256,
        };
        media
            .insert_remote(key, origin.as_str(), file, now_ms())
            .await?;
        media
            .get(key)
            .await?
            .ok_or_else(|| Error::internal("a remote media row vanished"))
    }

    /// Refuses an upload that the quota cannot take (spec: content_repo.md, "Security
    /// considerations": limit "the number and total size of media", `403 M_FORBIDDEN`).
    /// An early check, before the bytes are read; the row is only written after the same
    /// check inside its transaction, so concurrent uploads cannot pass the quota together.
    async fn check_quota(&self, user: &UserId, more: u64) -> Result<()> {
        let quota = self.quota();
        if quota == 0 {
            return Ok(());
        }
        let used = self.store.media().uploaded_bytes(user.as_str()).await?;
        if used.saturating_add(more) > quota {
            return Err(over_quota());
        }
        Ok(())
    }

    /// The per-user quota in bytes (0: none).
    fn quota(&self) -> u64 {
        self.config.media.max_bytes_per_user
    }

    /// Starts receiving an upload from `user`; `declared_len` (the `Content-Length`) lets an
    /// oversized upload be refused before its bytes are read.
    pub async fn begin_upload(
        &self,
        user: &UserId,
        declared_len: Option<u64>,
    ) -> Result<IncomingFile> {
        let limit = self.max_upload_bytes();
        if declared_len.is_some_and(|len| len > limit) {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("Uploads may be at most {limit} bytes."),
            ));
        }
        self.check_quota(user, declared_len.unwrap_or(0)).await?;
        self.files.begin(limit).await
    }

    /// Finishes a direct upload (`POST /_matrix/media/v3/upload`) and returns its `mxc://` URI.
    pub async fn upload(
        &self,
        user: &UserId,
        incoming: IncomingFile,
        meta: UploadMeta,
    ) -> Result<String> {
        self.check_quota(user, incoming.size()).await?;
        let stored = self.files.commit(incoming).await?;
        let media_id = random_string(24);
        let file = uploaded_file(meta, stored);
        let recorded = self
            .store
            .media()
            .insert_uploaded(&media_id, user.as_str(), file, now_ms(), self.quota())
            .await?;
        if recorded == Recorded::OverQuota {
            return Err(over_quota());
        }
        self.uploaded.notify_waiters();
        Ok(self.mxc(&media_id))
    }

    /// Reserves an `mxc://` URI for a later upload (`POST /_matrix/media/v1/create`).
    /// Returns it and when it expires unused.
    pub async fn create(&self, user: &UserId) -> Result<(String, i64)> {
        let media_id = random_string(24);
        let now = now_ms();
        let expires_at = now + UNUSED_EXPIRY_MS;
        let created = self
            .store
            .media()
            .insert_pending(
                &media_id,
                user.as_str(),
                now,
                expires_at,
                MAX_PENDING_PER_USER,
            )
            .await?;
        if !created {
            return Err(Error::limit_exceeded(Duration::from_secs(60)));
        }
        Ok((self.mxc(&media_id), expires_at))
    }

    /// Checks that `user` may upload to a reserved ID, before its bytes are read.
    /// spec: content-repo.yaml, `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}`: 403 if
    /// another user created it, 404 if unknown or expired, 409 if it has its bytes already.
    pub async fn check_upload_to(
        &self,
        user: &UserId,
        server_name: &str,
        media_id: &str,
    ) -> Result<()> {
        let media_id = self.local_media_id(server_name, media_id)?;
        let record = self
            .store
            .media()
            .get(media_id)
            .await?
            .ok_or_else(|| Error::not_found("There is no such media ID."))?;
        if record.uploader != user.as_str() {
            return Err(Error::forbidden(
                "Only the creator of this media ID may upload to it.",
            ));
        }
        if record.uploaded {
            return Err(Error::new(
                ErrorKind::CannotOverwriteMedia,
                "This media has already been uploaded.",
            ));
        }
        if is_expired(&record) {
            return Err(Error::not_found("This media ID has expired."));
        }
        Ok(())
    }

    /// Finishes an upload to a reserved ID (`PUT /_matrix/media/v3/upload/{serverName}/{mediaId}`).
    pub async fn upload_to(
        &self,
        user: &UserId,
        server_name: &str,
        media_id: &str,
        incoming: IncomingFile,
        meta: UploadMeta,
    ) -> Result<()> {
        self.check_upload_to(user, server_name, media_id).await?;
        self.check_quota(user, incoming.size()).await?;
        let stored = self.files.commit(incoming).await?;
        let recorded = self
            .store
            .media()
            .fill_pending(
                media_id,
                user.as_str(),
                uploaded_file(meta, stored),
                now_ms(),
                self.quota(),
            )
            .await?;
        if recorded == Recorded::OverQuota {
            return Err(over_quota());
        }
        if recorded == Recorded::NotPending {
            // Another upload to the same ID committed first (or it expired meanwhile).
            self.check_upload_to(user, server_name, media_id).await?;
            return Err(Error::not_found("There is no such media ID."));
        }
        self.uploaded.notify_waiters();
        Ok(())
    }

    /// The record of an uploaded media item, waiting up to `timeout_ms` for one reserved
    /// through `/create` (spec: `timeout_ms`; then `504 M_NOT_YET_UPLOADED`).
    async fn uploaded_record(
        &self,
        server_name: &str,
        media_id: &str,
        timeout_ms: Option<u64>,
        access: Access,
    ) -> Result<MediaRecord> {
        let media_id = match self.origin(server_name, media_id)? {
            Origin::Local(media_id) => media_id,
            Origin::Remote(origin, media_id) => {
                return self
                    .remote_record(&origin, media_id, timeout_ms, access)
                    .await;
            }
        };
        let wait = Duration::from_millis(timeout_ms.unwrap_or(DEFAULT_WAIT_MS).min(MAX_WAIT_MS));
        let deadline = Instant::now() + wait;
        let record = loop {
            // Registered before looking, so an upload finishing in between still wakes us.
            let notified = self.uploaded.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.store.media().get(media_id).await? {
                Some(record) if record.uploaded => break record,
                Some(record) if !is_expired(&record) => {}
                _ => return Err(Error::not_found("There is no such media.")),
            }
            if tokio::time::timeout_at(deadline.into(), notified)
                .await
                .is_err()
            {
                return Err(Error::new(
                    ErrorKind::NotYetUploaded,
                    "The media has not been uploaded yet.",
                ));
            }
        };
        // spec: content_repo.md, "Client behaviour", the freeze: media uploaded at or after
        // the freeze is only served through the authenticated endpoints.
        if access == Access::Unauthenticated
            && record.created_ts >= self.config.media.unauthenticated_frozen_since_ms
        {
            return Err(frozen());
        }
        Ok(record)
    }

    /// A media item's bytes (`GET .../download/{serverName}/{mediaId}`).
    pub async fn download(
        &self,
        server_name: &str,
        media_id: &str,
        timeout_ms: Option<u64>,
        access: Access,
    ) -> Result<Content> {
        let record = self
            .uploaded_record(server_name, media_id, timeout_ms, access)
            .await?;
        let sha256 = record
            .sha256
            .ok_or_else(|| Error::internal("uploaded media without a hash"))?;
        Ok(Content {
            file: self.files.open_file(&sha256).await?,
            size: record.size,
            content_type: record
                .content_type
                .unwrap_or_else(|| "application/octet-stream".to_owned()),
            filename: record.filename,
        })
    }

    /// A thumbnail of a media item (`GET .../thumbnail/{serverName}/{mediaId}`), made on
    /// the first request for that size and method and kept.
    pub async fn thumbnail(
        &self,
        server_name: &str,
        media_id: &str,
        request: ThumbnailRequest,
        timeout_ms: Option<u64>,
        access: Access,
    ) -> Result<Content> {
        if request.width == 0 || request.height == 0 {
            return Err(Error::invalid_param(
                "Thumbnail width and height must be positive.",
            ));
        }
        let Some((w, h)) = thumbnail::standard((request.width, request.height), request.method)
        else {
            // Larger than any thumbnail we make: the original is the answer.
            return self
                .download(server_name, media_id, timeout_ms, access)
                .await;
        };
        let request = ThumbnailRequest {
            width: w,
            height: h,
            ..request
        };
        let record = self
            .uploaded_record(server_name, media_id, timeout_ms, access)
            .await?;
        // The stored key: the method, and whether an animated original may be the answer.
        let method = if request.animated {
            format!("{}+animated", request.method.as_str())
        } else {
            request.method.as_str().to_owned()
        };
        let method = method.as_str();
        let media = self.store.media();
        let thumbnail = match media.thumbnail(&record.media_id, w, h, method).await? {
            Some(thumbnail) => thumbnail,
            None => {
                let thumbnail = self.make_thumbnail(&record, request).await?;
                if media.thumbnail_count(&record.media_id).await? < MAX_STORED_THUMBNAILS {
                    media
                        .insert_thumbnail(&record.media_id, w, h, method, thumbnail.clone())
                        .await?;
                }
                thumbnail
            }
        };
        let extension = thumbnail
            .content_type
            .strip_prefix("image/")
            .unwrap_or("bin")
            .replace("jpeg", "jpg");
        Ok(Content {
            file: self.files.open_file(&thumbnail.sha256).await?,
            size: thumbnail.size,
            content_type: thumbnail.content_type,
            filename: Some(format!("thumbnail.{extension}")),
        })
    }

    /// Decodes and resizes on a blocking thread, a few at a time, and stores the result.
    async fn make_thumbnail(
        &self,
        record: &MediaRecord,
        request: ThumbnailRequest,
    ) -> Result<StoredThumbnail> {
        let sha256 = record
            .sha256
            .clone()
            .ok_or_else(|| Error::internal("uploaded media without a hash"))?;
        let _permit = self
            .thumbnail_workers
            .acquire()
            .await
            .map_err(|_| Error::internal("thumbnail workers closed"))?;
        let bytes = self.files.read_all(&sha256).await?;
        let size = (request.width, request.height);
        let outcome = tokio::task::spawn_blocking(move || {
            thumbnail::make(&bytes, size, request.method, request.animated)
        })
        .await
        .map_err(|e| Error::internal(format!("thumbnail task: {e}")))??;
        Ok(match outcome {
            // Already small enough: the original, typed by what its bytes are.
            Outcome::Original { content_type } => StoredThumbnail {
                content_type: content_type.to_owned(),
                size: record.size,
                sha256,
            },
            Outcome::Thumbnail {
                bytes,
                content_type,
            } => {
                let stored = self.files.store_bytes(&bytes).await?;
                StoredThumbnail {
                    content_type: content_type.to_owned(),
                    size: stored.size,
                    sha256: stored.sha256,
                }
            }
        })
    }

    /// The OpenGraph data of a URL (`GET /_matrix/client/v1/media/preview_url`), fetched
    /// on behalf of `user` and cached for an hour. When previews are off, the endpoint does
    /// not exist: `404 M_UNRECOGNIZED`, as Synapse answers with previews disabled.
    pub async fn preview_url(&self, user: &UserId, url: &str) -> Result<Value> {
        let Some(previewer) = &self.previewer else {
            return Err(Error::unrecognized(
                "URL previews are not enabled on this server.",
            ));
        };
        if let Some(cached) = self.store.media().preview(url, now_ms()).await? {
            return Ok(serde_json::from_str(&cached)?);
        }
        let _permit = self
            .preview_workers
            .acquire()
            .await
            .map_err(|_| Error::internal("preview workers closed"))?;
        let og = tokio::time::timeout(PREVIEW_DEADLINE, self.build_preview(previewer, user, url))
            .await
            .map_err(|_| Error::new(ErrorKind::BadGateway, "The URL took too long to fetch."))??;
        let og = Value::Object(og.into_iter().collect());
        self.store
            .media()
            .put_preview(url, og.to_string(), now_ms() + PREVIEW_CACHE_MS)
            .await?;
        Ok(og)
    }

    async fn build_preview(
        &self,
        previewer: &Previewer,
        user: &UserId,
        url: &str,
    ) -> Result<BTreeMap<String, Value>> {
        let (final_url, fetched) = previewer
            .fetch(url, PREVIEW_MAX_HTML_BYTES, PREVIEW_MAX_IMAGE_BYTES)
            .await?;
        let mut og: BTreeMap<String, Value> = BTreeMap::new();
        match fetched {
            Fetched::Html(text) => {
                let tags = html::opengraph(&text);
                let image_url = tags.get("og:image").cloned();
                og.extend(tags.into_iter().map(|(k, v)| (k, Value::String(v))));
                // spec: `og:image` is an mxc:// URI, so the image is fetched and stored
                // here; if that fails the preview simply has no image.
                og.remove("og:image");
                og.remove("og:image:url");
                og.remove("og:image:secure_url");
                if let Some(image_url) = image_url.and_then(|u| final_url.join(&u).ok()) {
                    match previewer
                        .fetch(image_url.as_str(), 0, PREVIEW_MAX_IMAGE_BYTES)
                        .await
                    {
                        Ok((
                            _,
                            Fetched::Image {
                                bytes,
                                content_type,
                            },
                        )) => self.add_image(&mut og, user, bytes, content_type).await?,
                        Ok(_) => {}
                        Err(e) => tracing::debug!(%image_url, error = %e, "og:image not fetched"),
                    }
                }
            }
            Fetched::Image {
                bytes,
                content_type,
            } => {
                // An image URL is its own preview, as Synapse does.
                self.add_image(&mut og, user, bytes, content_type).await?;
            }
            Fetched::Other => {}
        }
        Ok(og)
    }

    /// Stores a previewed image as media of `user` and describes it in `og`.
    async fn add_image(
        &self,
        og: &mut BTreeMap<String, Value>,
        user: &UserId,
        bytes: Vec<u8>,
        content_type: String,
    ) -> Result<()> {
        let probed = thumbnail::probe(&bytes);
        let stored = self.files.store_bytes(&bytes).await?;
        let media_id = random_string(24);
        let size = stored.size;
        let content_type = probed.map_or(content_type, |(_, mime)| mime.to_owned());
        let file = uploaded_file(
            UploadMeta {
                content_type: Some(content_type.clone()),
                filename: None,
            },
            stored,
        );
        // The image counts against the quota of the user who asked for the preview; over
        // it, the preview goes without its image.
        let recorded = self
            .store
            .media()
            .insert_uploaded(&media_id, user.as_str(), file, now_ms(), self.quota())
            .await?;
        if recorded == Recorded::OverQuota {
            return Ok(());
        }
        og.insert("og:image".to_owned(), json!(self.mxc(&media_id)));
        og.insert("og:image:type".to_owned(), json!(content_type));
        og.insert("matrix:image:size".to_owned(), json!(size));
        if let Some(((width, height), _)) = probed {
            og.insert("og:image:width".to_owned(), json!(width));
            og.insert("og:image:height".to_owned(), json!(height));
        }
        Ok(())
    }
}

/// `type/subtype`, lower-cased, plus a `charset` parameter if the client gave a plain one;
/// `None` for anything that is not a single well-formed media type. Everything else is
/// dropped: a browser reads `image/png;x=,text/html` as `text/html` (it splits on commas),
/// so a type is never stored as the client spelled it.
fn frozen() -> Error {
    Error::not_found("This media is only available through the authenticated media endpoints.")
}

pub(crate) fn normalise_content_type(raw: &str) -> Option<String> {
    // RFC 9110 token characters.
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let mut parts = raw.split(';');
    let essence = parts.next()?.trim().to_ascii_lowercase();
    let (kind, subtype) = essence.split_once('/')?;
    if !token(kind) || !token(subtype) {
        return None;
    }
    let mut normalised = essence.clone();
    for parameter in parts {
        let (name, value) = parameter.split_once('=')?;
        let value = value.trim().trim_matches('"');
        if name.trim().eq_ignore_ascii_case("charset") && token(value) {
            normalised.push_str("; charset=");
            normalised.push_str(&value.to_ascii_lowercase());
            break;
        }
    }
    Some(normalised)
}

fn over_quota() -> Error {
    Error::forbidden("This upload would exceed your storage quota on this server.")
}

fn is_expired(record: &MediaRecord) -> bool {
    !record.uploaded && record.unused_expires_at.is_none_or(|at| at <= now_ms())
}

/// The metadata row for stored bytes. The content type and file name come from the client
/// and end up in response headers: the file name is kept if printable, the content type
/// only as [`normalise_content_type`] rebuilds it.
fn uploaded_file(meta: UploadMeta, stored: files::StoredFile) -> UploadedFile {
    let content_type = meta
        .content_type
        .as_deref()
        .and_then(normalise_content_type);
    let filename = meta
        .filename
        .map(|name| {
            name.chars()
                .filter(|c| !c.is_control())
                .take(255)
                .collect::<String>()
        })
        .filter(|name| !name.is_empty());
    UploadedFile {
        content_type,
        filename,
        size: stored.size,
        sha256: stored.sha256,
    }
}

#[cfg(test)]
mod tests {
    use super::normalise_content_type as normalise;

    #[test]
    fn content_types_are_rebuilt_not_copied() {
        assert_eq!(normalise("image/PNG").as_deref(), Some("image/png"));
        assert_eq!(
            normalise("text/plain; Charset=\"UTF-8\"; x=y").as_deref(),
            Some("text/plain; charset=utf-8")
        );
        // A browser would take the last type after a comma: never stored as given.
        assert_eq!(
            normalise("image/png;x=,text/html").as_deref(),
            Some("image/png")
        );
        assert_eq!(normalise("image/png,text/html"), None);
        assert_eq!(normalise("image"), None);
        assert_eq!(normalise("image/png; broken"), None);
        assert_eq!(normalise("text/html\r\nX-Evil: 1"), None);
    }
}
