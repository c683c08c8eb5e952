-- A connection's inbound rate-limit bucket and its last activity live on the connection row: the write that admits a
-- frame also records when it came, and both go when the connection does. Both are ms since the epoch; NULL until the
-- connection's first admitted frame.
ALTER TABLE connections ADD COLUMN inbound_tat INTEGER;
ALTER TABLE connections ADD COLUMN last_activity INTEGER;
