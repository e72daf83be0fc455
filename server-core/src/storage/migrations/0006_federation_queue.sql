-- Outbound federation (spec: server-server-api.md, "Transactions"): each PDU or EDU waits
-- here for its destination until a transaction carrying it is accepted, so nothing is lost
-- to an outage or a restart. Rows are sent in id order.
CREATE TABLE federation_outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('pdu', 'edu')),
    body        TEXT NOT NULL,
    queued_ts   INTEGER NOT NULL
);
CREATE INDEX federation_outbox_destination ON federation_outbox(destination, id);

-- How sending to each destination goes, for backoff and for the dashboard.
CREATE TABLE federation_destinations (
    destination     TEXT PRIMARY KEY,
    last_success_ts INTEGER,
    last_failure_ts INTEGER,
    last_error      TEXT,
    failures        INTEGER NOT NULL DEFAULT 0,
    retry_at_ts     INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Transactions received, with the answer given, so that a retried one is answered the same
-- way and not processed twice (spec: PUT /send/{txnId}). Kept for a week.
CREATE TABLE federation_inbound_txns (
    origin      TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    response    TEXT NOT NULL,
    received_ts INTEGER NOT NULL,
    PRIMARY KEY (origin, txn_id)
) WITHOUT ROWID;
CREATE INDEX federation_inbound_txns_received ON federation_inbound_txns(received_ts);
