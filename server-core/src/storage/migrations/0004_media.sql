-- The media repository (spec: client-server-api/modules/content_repo.md).
-- A media item's bytes live on disk under <data_dir>/media/, addressed by their SHA-256, so
-- identical uploads share one file; these rows say which media IDs point at which file.
-- A row with uploaded = 0 is an `mxc://` URI reserved by POST /_matrix/media/v1/create whose
-- bytes have not arrived yet; it may be filled until unused_expires_at.
CREATE TABLE media (
    media_id          TEXT PRIMARY KEY,
    uploader          TEXT NOT NULL,
    content_type      TEXT,
    filename          TEXT,
    size              INTEGER NOT NULL DEFAULT 0,
    sha256            TEXT,
    created_ts        INTEGER NOT NULL,
    uploaded          INTEGER NOT NULL DEFAULT 0,
    unused_expires_at INTEGER
) WITHOUT ROWID;

CREATE INDEX media_uploader ON media(uploader, uploaded);
CREATE INDEX media_sha256 ON media(sha256);

-- Thumbnails, made once per requested (width, height, method) and kept. The file is
-- content-addressed like media; it may be the original's file when the original is already
-- small enough (spec: "Thumbnails": never upscale).
CREATE TABLE media_thumbnails (
    media_id     TEXT NOT NULL REFERENCES media(media_id) ON DELETE CASCADE,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    method       TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    PRIMARY KEY (media_id, width, height, method)
) WITHOUT ROWID;

-- URL previews (GET /_matrix/client/v1/media/preview_url), cached until expires_ts.
CREATE TABLE url_previews (
    url        TEXT PRIMARY KEY,
    og_json    TEXT NOT NULL,
    expires_ts INTEGER NOT NULL
) WITHOUT ROWID;
