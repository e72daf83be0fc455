-- When each client transaction ID was first seen, so that old ones can be forgotten
-- (spec: client-server-api, "Transaction identifiers"; the spec sets no lifetime). The IDs
-- stored before this migration count from now.
ALTER TABLE transaction_ids ADD COLUMN created_ts INTEGER NOT NULL DEFAULT 0;
UPDATE transaction_ids SET created_ts = CAST(strftime('%s', 'now') AS INTEGER) * 1000;
CREATE INDEX transaction_ids_created ON transaction_ids(created_ts);
