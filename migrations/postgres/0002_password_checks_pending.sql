-- Password checks in progress, counted apart from confirmed failures: parallel guesses are
-- bounded by both together, while a burst of correct logins never reads as a lockout.
-- A count older than a minute is from a process that died mid-check and is ignored.
ALTER TABLE users ADD COLUMN password_checks_pending BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN password_checks_pending_since BIGINT NOT NULL DEFAULT 0;
