-- Passkeys (WebAuthn credentials), many per user. `id` is the passkey id clients name;
-- `credential_id` the authenticator's raw credential id. `credential` holds what verifies an
-- assertion (the COSE public key and the flags the relying party library keeps), as JSON;
-- `sign_count` is the authoritative signature counter, moved only forward, atomically.
CREATE TABLE passkeys (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    credential_id BLOB NOT NULL UNIQUE,
    credential    TEXT NOT NULL,
    public_key    TEXT NOT NULL,
    sign_count    INTEGER NOT NULL,
    aaguid        BLOB NOT NULL,
    name          TEXT NOT NULL,
    user_verified INTEGER NOT NULL,
    rp_id         TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER
);
CREATE INDEX passkeys_user ON passkeys (user_id);

-- A registration begun with RegisterPasskey, waiting for VerifyPasskeyRegistration: the
-- relying party library's state (the challenge), at most one per user.
CREATE TABLE passkey_registrations (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL UNIQUE REFERENCES users(id) ON DELETE CASCADE,
    state      TEXT NOT NULL,
    rp_id      TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- The WebAuthn challenge a session was last given, answered by a later check; a new one
-- replaces it, a passed check consumes it.
CREATE TABLE passkey_challenges (
    session_id TEXT PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL,
    state      TEXT NOT NULL,
    rp_id      TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- When a session last passed a WebAuthn check, and whether the authenticator verified the user.
ALTER TABLE sessions ADD COLUMN webauthn_verified_at INTEGER;
ALTER TABLE sessions ADD COLUMN webauthn_user_verified INTEGER;
