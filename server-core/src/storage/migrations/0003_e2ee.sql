-- End-to-end encryption: device keys, one-time and fallback keys, cross-signing keys and
-- their signatures, device list changes, to-device messages, and server-side key backup
-- (spec: client-server-api/modules/end_to_end_encryption.md, send_to_device.md).
-- Per-device rows go when their device goes (ON DELETE CASCADE).

CREATE TABLE device_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    json      TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
);

-- `key_id` is `<algorithm>:<id>`. Claimed keys stay (claimed = 1) so that a retried upload
-- of the same key cannot make it claimable twice; they go with their device. Claims take
-- the oldest key by rowid, i.e. in upload order.
CREATE TABLE one_time_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    json      TEXT NOT NULL,
    claimed   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, key_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX one_time_keys_algorithm ON one_time_keys(user_id, device_id, algorithm, claimed);

-- One fallback key per algorithm; `used` once a claim has handed it out.
CREATE TABLE fallback_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    json      TEXT NOT NULL,
    used      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, algorithm),
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
);

-- `key_type` is master, self_signing or user_signing; `public_key` its unpadded base64 key.
CREATE TABLE cross_signing_keys (
    user_id    TEXT NOT NULL,
    key_type   TEXT NOT NULL,
    public_key TEXT NOT NULL,
    json       TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures uploaded after the keys they sign (keys/signatures/upload). `target_key` is a
-- device ID or a cross-signing public key.
CREATE TABLE key_signatures (
    target_user TEXT NOT NULL,
    target_key  TEXT NOT NULL,
    signer_user TEXT NOT NULL,
    signer_key  TEXT NOT NULL,
    signature   TEXT NOT NULL,
    PRIMARY KEY (target_user, target_key, signer_user, signer_key)
);

-- Signatures by or of a device go with the device, and signatures of a device's keys go
-- when those keys change (a device ID reused by a new login must not inherit them).
CREATE TRIGGER devices_signatures_gone AFTER DELETE ON devices BEGIN
    DELETE FROM key_signatures
     WHERE (target_user = OLD.user_id AND target_key = OLD.device_id)
        OR (signer_user = OLD.user_id AND signer_key = 'ed25519:' || OLD.device_id);
END;
CREATE TRIGGER device_keys_signatures_stale AFTER UPDATE OF json ON device_keys
WHEN OLD.json != NEW.json BEGIN
    DELETE FROM key_signatures WHERE target_user = OLD.user_id AND target_key = OLD.device_id;
END;

-- A user's devices or cross-signing keys changed at this stream position. `visible_to` set:
-- only that user is told (a signature they made with their user-signing key).
CREATE TABLE device_list_changes (
    stream_pos INTEGER PRIMARY KEY,
    user_id    TEXT NOT NULL,
    visible_to TEXT
);
CREATE INDEX device_list_changes_user ON device_list_changes(user_id, stream_pos);

-- To-device messages wait here until the recipient's next sync acknowledges them.
CREATE TABLE to_device_inbox (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    stream_pos INTEGER NOT NULL,
    sender     TEXT NOT NULL,
    event_type TEXT NOT NULL,
    content    TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, stream_pos),
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
) WITHOUT ROWID;

CREATE TABLE room_key_backups (
    user_id   TEXT NOT NULL,
    version   INTEGER NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    etag      INTEGER NOT NULL DEFAULT 0,
    deleted   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, version)
);

CREATE TABLE room_keys (
    user_id              TEXT NOT NULL,
    version              INTEGER NOT NULL,
    room_id              TEXT NOT NULL,
    session_id           TEXT NOT NULL,
    first_message_index  INTEGER NOT NULL,
    forwarded_count      INTEGER NOT NULL,
    is_verified          INTEGER NOT NULL,
    session_data         TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);
