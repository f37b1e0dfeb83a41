-- Contact addresses of a user (kind 'email' or 'phone'); one-time codes by email or SMS go
-- only to an address that is verified (`verified_at` set).
CREATE TABLE user_contacts (
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    address     TEXT NOT NULL,
    verified_at INTEGER,
    PRIMARY KEY (user_id, kind)
);

-- The pending one-time-code challenge of a session, per kind ('otp_sms', 'otp_email'): only
-- a keyed hash of the code, bound to the session, the kind and the user. A new challenge
-- replaces the row; a successful check deletes it, so a code works once.
CREATE TABLE otp_challenges (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash  BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (session_id, kind)
);

-- When a session last passed a one-time code by SMS or email.
ALTER TABLE sessions ADD COLUMN otp_sms_verified_at INTEGER;
ALTER TABLE sessions ADD COLUMN otp_email_verified_at INTEGER;
