-- Room state over the event graph, for federation (spec: server-server-api.md, "Checks
-- performed on receipt of a PDU": auth against the state before each event).
--
-- A state group is one room state: either a full snapshot (prev_group NULL) or the entries
-- that differ from prev_group. chain_len counts the deltas down to the snapshot, so reading
-- a group stays bounded (storage/state.rs starts a new snapshot past a limit).
CREATE TABLE state_groups (
    id         INTEGER PRIMARY KEY,
    room_id    TEXT NOT NULL,
    prev_group INTEGER REFERENCES state_groups(id),
    chain_len  INTEGER NOT NULL
);
CREATE TABLE state_group_entries (
    group_id   INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    state_key  TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    PRIMARY KEY (group_id, event_type, state_key)
) WITHOUT ROWID;

-- The state after each event in the room graph. Events from before this migration have
-- none: their rooms had a linear graph, and the state log below answers for them.
CREATE TABLE event_state (
    event_id TEXT PRIMARY KEY,
    group_id INTEGER NOT NULL
) WITHOUT ROWID;

-- Each room's current state as a group (NULL until the room's first event after this
-- migration, which snapshots room_state).
ALTER TABLE rooms ADD COLUMN state_group INTEGER;

-- Every change of a room's current state, at the stream position it happened: what clients
-- saw as the state at each point of the timeline. event_id NULL means the key was removed
-- (state resolution can drop one). Before federation each state event changed the state
-- when it was stored, so the log starts as exactly those events.
CREATE TABLE state_log (
    room_id    TEXT NOT NULL,
    stream_pos INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    state_key  TEXT NOT NULL,
    event_id   TEXT
);
CREATE INDEX state_log_room ON state_log(room_id, stream_pos);
INSERT INTO state_log (room_id, stream_pos, event_type, state_key, event_id)
    SELECT room_id, stream_pos, event_type, state_key, event_id FROM events WHERE state_key IS NOT NULL;

-- Events of the room graph that are not in the timeline: soft-failed events from other
-- servers (spec: "Soft failure"), kept because later events may cite them.
CREATE TABLE outliers (
    event_id    TEXT PRIMARY KEY,
    room_id     TEXT NOT NULL,
    json        TEXT NOT NULL,
    soft_failed INTEGER NOT NULL,
    received_ts INTEGER NOT NULL
) WITHOUT ROWID;

-- Events from other servers that failed their checks. They never change state; the row
-- stops the same event being fetched and checked again.
CREATE TABLE rejected_events (
    event_id    TEXT PRIMARY KEY,
    room_id     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    received_ts INTEGER NOT NULL
) WITHOUT ROWID;

-- Invites and knocks of local users in rooms this server is not in (spec:
-- server-server-api.md, "Inviting to a room", "Knocking upon a room"), with the stripped
-- room state the other server sent, which /sync shows with them. The events themselves
-- are outliers.
CREATE TABLE remote_memberships (
    room_id      TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    membership   TEXT NOT NULL CHECK (membership IN ('invite', 'knock')),
    event_id     TEXT NOT NULL,
    room_version TEXT NOT NULL,
    room_state   TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;
