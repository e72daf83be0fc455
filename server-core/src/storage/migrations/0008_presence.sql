-- Presence (spec: client-server-api/modules/presence.md): the last known state of each
-- local user, and of remote users as their servers told us (m.presence EDUs). Each change
-- takes a stream position, so /sync sends what changed since its token.
CREATE TABLE presence (
    user_id          TEXT PRIMARY KEY,
    presence         TEXT NOT NULL,
    status_msg       TEXT,
    last_active_ts   INTEGER NOT NULL,
    currently_active INTEGER NOT NULL DEFAULT 0,
    stream_pos       INTEGER NOT NULL
);
CREATE INDEX presence_by_pos ON presence (stream_pos);
