-- Bellhop's SQLite schema: the same logical model as the DynamoDB single-table design, one table per item kind.
--
-- Timestamps are integer milliseconds since the Unix epoch, so they round-trip exactly at millisecond precision and
-- compare as numbers. Sequence numbers and counters are INTEGER (SQLite's 64-bit signed integer).
--
-- A membership cannot outlive its connection: joining with an unknown connection is `NotFound` in both adapters. The
-- adapter checks that itself (to answer `NotFound` rather than a constraint error) and deletes memberships explicitly
-- to learn which rooms were left; the foreign key is the safety net under both.

-- One open WebSocket connection.
CREATE TABLE connections (
    connection_id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    role TEXT,
    name TEXT,
    email TEXT,
    connected_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX connections_by_user ON connections (user_id);

-- A connection in a room: listed by room for fan-out, by connection for cleanup.
CREATE TABLE memberships (
    room TEXT NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections (connection_id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    PRIMARY KEY (room, connection_id)
) WITHOUT ROWID;

CREATE INDEX memberships_by_connection ON memberships (connection_id);

-- Users allowed into granted rooms (`booking:{id}`…).
CREATE TABLE grants (
    room TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (room, user_id)
) WITHOUT ROWID;

CREATE INDEX grants_by_user ON grants (user_id);

-- Rooms a user takes part in: their conversations.
CREATE TABLE participation (
    user_id TEXT NOT NULL,
    room TEXT NOT NULL,
    PRIMARY KEY (user_id, room)
) WITHOUT ROWID;

-- The last sequence number allocated in each room.
CREATE TABLE room_counters (
    room TEXT PRIMARY KEY NOT NULL,
    last_seq INTEGER NOT NULL
) WITHOUT ROWID;

-- Durable room history.
CREATE TABLE room_events (
    room TEXT NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    event TEXT NOT NULL,
    data TEXT NOT NULL,
    sender TEXT,
    client_msg_id TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;

-- Makes client retries idempotent: one event per (room, sender, client message id).
CREATE UNIQUE INDEX room_events_by_client_msg_id ON room_events (room, sender, client_msg_id)
    WHERE sender IS NOT NULL AND client_msg_id IS NOT NULL;

CREATE INDEX room_events_by_id ON room_events (room, id);

-- How far each user has read in each room.
CREATE TABLE read_watermarks (
    user_id TEXT NOT NULL,
    room TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (user_id, room)
) WITHOUT ROWID;

-- Idempotency keys: a NULL result means the work is still in flight.
CREATE TABLE idempotency (
    key TEXT PRIMARY KEY NOT NULL,
    result TEXT,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Monotonic counters behind `/health`.
CREATE TABLE stats (
    name TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO stats (name, value) VALUES ('total_connections', 0), ('total_messages', 0);

-- The status each user chose.
CREATE TABLE presence (
    user_id TEXT PRIMARY KEY NOT NULL,
    status TEXT NOT NULL,
    custom_status TEXT,
    last_seen INTEGER NOT NULL
) WITHOUT ROWID;

-- Notifications, listed newest first by id (UUID v7 ids sort by time).
CREATE TABLE notifications (
    user_id TEXT NOT NULL,
    id TEXT NOT NULL,
    title TEXT NOT NULL,
    message TEXT NOT NULL,
    kind TEXT,
    data TEXT NOT NULL,
    read INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, id)
) WITHOUT ROWID;

CREATE INDEX notifications_unread ON notifications (user_id, id) WHERE read = 0;

-- Calls and their state machine.
CREATE TABLE calls (
    call_id TEXT PRIMARY KEY NOT NULL,
    caller TEXT NOT NULL,
    recipient TEXT NOT NULL,
    call_type TEXT NOT NULL,
    visit_id TEXT,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    answered_at INTEGER,
    ended_at INTEGER
) WITHOUT ROWID;
