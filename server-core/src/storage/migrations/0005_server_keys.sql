-- Other servers' signing keys (spec: server-server-api.md, "Retrieving server keys").
-- A key stays after it expires (valid_until_ts in the past, or expired_ts set from
-- old_verify_keys): events signed while it was valid must stay verifiable.
-- valid_until_ts is capped at seven days after the fetch (spec: room versions 5 and later).
CREATE TABLE server_signing_keys (
    server_name    TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    public_key     TEXT NOT NULL,
    valid_until_ts INTEGER NOT NULL,
    expired_ts     INTEGER,
    PRIMARY KEY (server_name, key_id)
) WITHOUT ROWID;

-- The newest key response each server published, exactly as it came (with its own
-- signatures), so that the notary endpoints (/_matrix/key/v2/query) can pass it on.
CREATE TABLE server_key_responses (
    server_name    TEXT PRIMARY KEY,
    response       TEXT NOT NULL,
    valid_until_ts INTEGER NOT NULL,
    fetched_ts     INTEGER NOT NULL
) WITHOUT ROWID;
