-- Which local users an event notifies, decided by their push rules when it is stored
-- (spec: client-server-api/modules/push.md, "Push Rules"). Only notifying events get a row;
-- unread counts are the rows after the user's read receipt.
CREATE TABLE event_push_actions (
    room_id    TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    stream_pos INTEGER NOT NULL,
    highlight  INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id, stream_pos)
) WITHOUT ROWID;

-- A user's newest own event in a room is an implicit read receipt for the unread counts
-- (spec: modules/push.md, "Receiving notifications").
CREATE INDEX events_room_sender ON events(room_id, sender, stream_pos);
