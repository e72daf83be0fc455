-- Kith schema, migration 1.

-- The one stream sequence: every change a client learns about through /sync takes the next
-- position from here, inside its write transaction.
CREATE TABLE stream_seq (id INTEGER PRIMARY KEY CHECK (id = 1), pos INTEGER NOT NULL);
INSERT INTO stream_seq (id, pos) VALUES (1, 0);

CREATE TABLE users (
    user_id       TEXT PRIMARY KEY,
    localpart     TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    admin         INTEGER NOT NULL DEFAULT 0,
    deactivated   INTEGER NOT NULL DEFAULT 0,
    displayname   TEXT,
    avatar_url    TEXT,
    created_ts    INTEGER NOT NULL
);

CREATE TABLE devices (
    user_id      TEXT NOT NULL REFERENCES users(user_id),
    device_id    TEXT NOT NULL,
    display_name TEXT,
    last_seen_ts INTEGER,
    last_seen_ip TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- Tokens are stored as SHA-256 hashes, never in the clear.
CREATE TABLE access_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    expires_ts INTEGER,
    created_ts INTEGER NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX access_tokens_device ON access_tokens(user_id, device_id);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices(user_id, device_id) ON DELETE CASCADE
);

CREATE TABLE registration_tokens (
    token         TEXT PRIMARY KEY,
    uses_allowed  INTEGER,
    completed     INTEGER NOT NULL DEFAULT 0,
    expiry_ts     INTEGER
);

CREATE TABLE rooms (
    room_id    TEXT PRIMARY KEY,
    version    TEXT NOT NULL,
    creator    TEXT NOT NULL,
    published  INTEGER NOT NULL DEFAULT 0,
    created_ts INTEGER NOT NULL
);

-- Every event, in stream order. `json` is the full signed PDU.
CREATE TABLE events (
    stream_pos       INTEGER PRIMARY KEY,
    event_id         TEXT NOT NULL UNIQUE,
    room_id          TEXT NOT NULL,
    sender           TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    state_key        TEXT,
    depth            INTEGER NOT NULL,
    origin_server_ts INTEGER NOT NULL,
    rel_target       TEXT,
    rel_type         TEXT,
    txn_id           TEXT,
    txn_device       TEXT,
    redacted_by      TEXT,
    json             TEXT NOT NULL
);
CREATE INDEX events_room ON events(room_id, stream_pos);
CREATE INDEX events_relations ON events(rel_target, rel_type);

-- Transaction ids for idempotent sends, scoped to the device and the endpoint
-- (spec: client-server-api/_index.md, "Transaction identifiers").
CREATE TABLE transaction_ids (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    scope     TEXT NOT NULL,
    txn_id    TEXT NOT NULL,
    result    TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, scope, txn_id)
);

-- The current state of each room.
CREATE TABLE room_state (
    room_id    TEXT NOT NULL,
    event_type TEXT NOT NULL,
    state_key  TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    stream_pos INTEGER NOT NULL,
    PRIMARY KEY (room_id, event_type, state_key)
);

-- Each user's current membership in each room, with the position it changed at.
CREATE TABLE memberships (
    room_id    TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    membership TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    stream_pos INTEGER NOT NULL,
    forgotten  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX memberships_user ON memberships(user_id, membership);

-- The newest events of each room's graph: the prev_events of the next event.
CREATE TABLE forward_extremities (
    room_id  TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

CREATE TABLE room_aliases (
    alias      TEXT PRIMARY KEY,
    room_id    TEXT NOT NULL,
    creator    TEXT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases(room_id);

-- Global account data has room_id ''.
CREATE TABLE account_data (
    user_id    TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    data_type  TEXT NOT NULL,
    content    TEXT NOT NULL,
    stream_pos INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id, data_type)
);
CREATE INDEX account_data_stream ON account_data(user_id, stream_pos);

CREATE TABLE receipts (
    room_id      TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    thread_id    TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    ts           INTEGER NOT NULL,
    stream_pos   INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id, receipt_type, thread_id)
);
CREATE INDEX receipts_stream ON receipts(room_id, stream_pos);

CREATE TABLE filters (
    user_id   TEXT NOT NULL,
    filter_id INTEGER NOT NULL,
    json      TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);
