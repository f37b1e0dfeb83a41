-- The revocation feed. Transactions commit out of order, so a plain sequence number is not a
-- safe cursor: a reader past number 10 could miss number 9 committing later. Each event
-- records the id of the transaction that wrote it (`xid`) and a serial; readers return only
-- events whose transaction is older than every transaction still running
-- (`xid < pg_snapshot_xmin(pg_current_snapshot())`), in `(xid, serial)` order, so nothing can
-- later appear before a position already handed out. The cursor is "<xid>.<serial>".
ALTER TABLE session_events ADD COLUMN user_id TEXT;
ALTER TABLE session_events ADD COLUMN resource_owner TEXT NOT NULL DEFAULT '';
ALTER TABLE session_events ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE session_events ADD COLUMN serial BIGSERIAL;

UPDATE session_events e SET user_id = s.user_id, resource_owner = s.resource_owner
FROM sessions s WHERE s.id = e.session_id;

-- "Revoke my other sessions" used to record the reason of a single revocation; the events it
-- wrote come in groups (one user, one instant, one editor, several sessions).
UPDATE session_events e SET payload = '{"reason":"revoke_others"}'
WHERE e.event_type = 'session.terminated' AND e.payload = '{"reason":"revoked_by_user"}'
  AND (SELECT COUNT(*) FROM session_events o
       WHERE o.created_at = e.created_at AND o.editor = e.editor
         AND o.payload = e.payload AND o.user_id IS NOT DISTINCT FROM e.user_id) > 1;

CREATE INDEX session_events_by_position ON session_events (xid, serial);
CREATE INDEX session_events_by_user ON session_events (user_id, xid, serial);

-- Retention: the highest position a prune deleted. A cursor below it may have missed a
-- deleted event, so it is refused as expired instead of silently skipping.
CREATE TABLE feed_horizon (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    xid    BIGINT NOT NULL,
    serial BIGINT NOT NULL
);
INSERT INTO feed_horizon (id, xid, serial) VALUES (1, 0, 0);
