-- Users that sessions can be created for.
CREATE TABLE users (
    id                       TEXT PRIMARY KEY NOT NULL,
    login_name               TEXT NOT NULL,
    login_name_folded        TEXT NOT NULL UNIQUE,
    display_name             TEXT NOT NULL,
    organization_id          TEXT NOT NULL,
    state                    TEXT NOT NULL,
    password_hash            TEXT,
    failed_password_attempts INTEGER NOT NULL DEFAULT 0,
    created_at               INTEGER NOT NULL,
    updated_at               INTEGER NOT NULL
);

-- Current state of every session. Times are microseconds since the Unix epoch (UTC).
-- Terminated sessions keep their row; pruning them is a separate, explicit step.
CREATE TABLE sessions (
    id                   TEXT PRIMARY KEY NOT NULL,
    user_id              TEXT,
    user_verified_at     INTEGER,
    password_verified_at INTEGER,
    metadata             TEXT NOT NULL,
    user_agent           TEXT NOT NULL,
    fingerprint_id       TEXT,
    expiration           INTEGER,
    creator              TEXT NOT NULL,
    resource_owner       TEXT NOT NULL,
    creation_date        INTEGER NOT NULL,
    change_date          INTEGER NOT NULL,
    sequence             INTEGER NOT NULL,
    token_hash           BLOB NOT NULL UNIQUE,
    terminated_at        INTEGER
);

CREATE INDEX sessions_live_by_creation ON sessions (creation_date, id) WHERE terminated_at IS NULL;
CREATE INDEX sessions_by_user ON sessions (user_id, creation_date, id);
CREATE INDEX sessions_live_by_creator ON sessions (creator, creation_date) WHERE terminated_at IS NULL;

-- Append-only log: one row per change. The primary key serialises concurrent writers.
CREATE TABLE session_events (
    session_id TEXT NOT NULL,
    sequence   INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    editor     TEXT NOT NULL,
    PRIMARY KEY (session_id, sequence)
) WITHOUT ROWID;

-- Secrets every replica shares (e.g. the key that authenticates page tokens).
CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
);
