-- Second factors a user has enrolled, one row per kind for the kinds a user has at most one
-- of (totp, recovery_codes; one-time codes by SMS or email later). Passkeys and U2F tokens,
-- of which a user has many, each with its own credential data, belong in a table of their own.
-- `secret` holds a sealed seed (nonce and AEAD ciphertext), never the seed itself;
-- `last_step` is the last TOTP time step accepted, so a code is accepted once.
CREATE TABLE user_factors (
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL,
    secret      BLOB,
    last_step   INTEGER,
    created_at  INTEGER NOT NULL,
    verified_at INTEGER,
    PRIMARY KEY (user_id, kind)
);

-- Recovery codes, stored only as keyed hashes; a used code keeps its row with `used_at`.
CREATE TABLE recovery_codes (
    user_id   TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash BLOB NOT NULL,
    used_at   INTEGER,
    PRIMARY KEY (user_id, code_hash)
);

-- When a session last passed each second factor.
ALTER TABLE sessions ADD COLUMN totp_verified_at INTEGER;
ALTER TABLE sessions ADD COLUMN recovery_code_verified_at INTEGER;
