-- A user row's version: bumped by every write of its columns, so an update applies only at the
-- version it read (optimistic concurrency, as `sessions.sequence` does for sessions).
ALTER TABLE users ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
