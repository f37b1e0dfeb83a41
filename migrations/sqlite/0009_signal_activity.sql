-- Signals: what the stream inactivity timeout, the verification interval and the delivery
-- latency metric need. Times are Unix microseconds.
-- last_activity: the receiver's last stream management call or poll.
ALTER TABLE signal_targets ADD COLUMN last_activity INTEGER NOT NULL DEFAULT 0;
-- verified_at: the receiver's last verification request (0: none).
ALTER TABLE signal_targets ADD COLUMN verified_at INTEGER NOT NULL DEFAULT 0;
-- inactivity_notice: jti of the stream-updated event that announced a pause for inactivity,
-- sent at inactivity_notice_at; the pause takes effect once the receiver took it.
ALTER TABLE signal_targets ADD COLUMN inactivity_notice TEXT;
ALTER TABLE signal_targets ADD COLUMN inactivity_notice_at INTEGER NOT NULL DEFAULT 0;
UPDATE signal_targets SET last_activity = updated_at;
-- occurred_at: when the event a token signals happened (NULL for stream control events).
ALTER TABLE signal_outbox ADD COLUMN occurred_at INTEGER;
