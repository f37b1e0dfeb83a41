-- The revocation feed: every event gets a global position, strictly increasing in the order
-- events become visible (SQLite has one writer, so the order of insertion is that order), and
-- carries its session's user and resource owner so the feed filters by user without a join.
-- The table is rebuilt (SQLite cannot add a primary key); existing events are numbered in the
-- order they were written.
CREATE TABLE session_events_new (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id     TEXT NOT NULL,
    sequence       INTEGER NOT NULL,
    event_type     TEXT NOT NULL,
    payload        TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    editor         TEXT NOT NULL,
    user_id        TEXT,
    resource_owner TEXT NOT NULL DEFAULT '',
    UNIQUE (session_id, sequence)
);

INSERT INTO session_events_new
    (session_id, sequence, event_type, payload, created_at, editor, user_id, resource_owner)
SELECT e.session_id, e.sequence, e.event_type,
       -- "Revoke my other sessions" used to record the reason of a single revocation; the
       -- events it wrote come in groups (one user, one instant, one editor, several sessions).
       CASE WHEN e.event_type = 'session.terminated'
                 AND e.payload = '{"reason":"revoked_by_user"}'
                 AND (SELECT COUNT(*) FROM session_events o JOIN sessions os ON os.id = o.session_id
                      WHERE o.created_at = e.created_at AND o.editor = e.editor
                        AND o.payload = e.payload AND os.user_id = s.user_id) > 1
            THEN '{"reason":"revoke_others"}'
            ELSE e.payload END,
       e.created_at, e.editor, s.user_id, COALESCE(s.resource_owner, '')
FROM session_events e LEFT JOIN sessions s ON s.id = e.session_id
ORDER BY e.created_at, e.session_id, e.sequence;

DROP TABLE session_events;
ALTER TABLE session_events_new RENAME TO session_events;

CREATE INDEX session_events_by_user ON session_events (user_id, position);

-- Retention: the highest position a prune deleted. A cursor below it may have missed a
-- deleted event, so it is refused as expired instead of silently skipping.
CREATE TABLE feed_horizon (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position INTEGER NOT NULL
);
INSERT INTO feed_horizon (id, position) VALUES (1, 0);
