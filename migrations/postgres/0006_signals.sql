-- Signals: Shared Signals streams and back-channel logout clients ("targets"), each with its
-- own cursor into the session event log and an outbox of signed tokens waiting for delivery.
-- Times are Unix microseconds.
CREATE TABLE signal_targets (
    kind TEXT NOT NULL,                  -- 'stream' or 'logout'
    id TEXT NOT NULL,
    config TEXT NOT NULL,                -- JSON, no secret in it
    auth BYTEA,                           -- the receiver's Authorization header, sealed
    status TEXT NOT NULL,                -- enabled, paused, disabled
    reason TEXT,
    cursor TEXT NOT NULL,                -- events up to this feed position are in the outbox
    next_seq BIGINT NOT NULL DEFAULT 1,
    lease_owner TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);

CREATE TABLE signal_outbox (
    kind TEXT NOT NULL,
    target_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    jti TEXT NOT NULL UNIQUE,
    token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, target_id, seq)
);

-- Subjects a receiver removed from its stream (every subject is in a stream unless removed).
CREATE TABLE signal_removed_subjects (
    target_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    PRIMARY KEY (target_id, subject)
);
