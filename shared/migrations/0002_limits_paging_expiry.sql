-- Token expiry on live connections, rate-limit buckets, and idempotent appends without a sender.

-- The `exp` of the token the connection authenticated with (or refreshed to), in ms; NULL for tokens without `exp`.
ALTER TABLE connections ADD COLUMN token_expires_at INTEGER;

-- GCRA buckets: the theoretical arrival time in ms. A row whose `tat` is in the past is a full bucket, so rows
-- older than now carry no information and are deleted by the next admit of any key.
CREATE TABLE rate_limits (
    key TEXT PRIMARY KEY NOT NULL,
    tat INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX rate_limits_by_tat ON rate_limits (tat);

-- Platform emits (no sender) are idempotent per (room, client_msg_id) too: a retried emit stores once per room.
DROP INDEX room_events_by_client_msg_id;
CREATE UNIQUE INDEX room_events_by_client_msg_id ON room_events (room, COALESCE(sender, ''), client_msg_id)
    WHERE client_msg_id IS NOT NULL;

-- The append computes the next seq from the largest stored one in the same statement (events are never deleted), so
-- the separate counter is no longer read or written.
DROP TABLE room_counters;
