//! The feed's reads on SQLite. One connection writes, so events become visible in the order
//! they are inserted, and `position` (`INTEGER PRIMARY KEY AUTOINCREMENT`, never reused) is
//! that order: a reader after position N can never miss an event committed later, which
//! always has a higher number. Positions of a rolled-back write are simply never used. A
//! position is `FeedPosition { major: 0, minor: position }`, shown as `"N"`.
//!
//! Each read runs in one read transaction, so the events, the head and the horizon it
//! returns come from one snapshot.

use std::sync::LazyLock;

use rusqlite::{Connection, params};

use super::open::classify;
use super::statements::all_rows;
use crate::domain::FeedPosition;
use crate::store::columns::{events, to_i64};
use crate::store::rows::feed_row_from;
use crate::store::{FeedBounds, FeedPage, FeedQuery, StoreError};

/// Events after `?1`, up to the head `?2`, of the types `?3`..`?5`, at most `?6`.
static ALL_AFTER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} WHERE position > ?1 AND position <= ?2 AND event_type IN (?3, ?4, ?5) \
         ORDER BY position LIMIT ?6",
        events::TABLE.select_with("0, position")
    )
});

/// The same, of one user `?7` (by the index on `(user_id, position)`).
static USER_AFTER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} WHERE user_id = ?7 AND position > ?1 AND position <= ?2 \
         AND event_type IN (?3, ?4, ?5) ORDER BY position LIMIT ?6",
        events::TABLE.select_with("0, position")
    )
});

fn position(n: i64) -> FeedPosition {
    FeedPosition::new(0, u64::try_from(n).unwrap_or_default())
}

fn bounds_in(conn: &Connection) -> Result<FeedBounds, StoreError> {
    let (head, horizon): (i64, i64) = conn
        .prepare_cached(
            "SELECT (SELECT COALESCE(MAX(position), 0) FROM session_events), \
             (SELECT position FROM feed_horizon WHERE id = 1)",
        )
        .and_then(|mut st| st.query_row([], |row| Ok((row.get(0)?, row.get(1)?))))
        .map_err(classify)?;
    Ok(FeedBounds {
        horizon: position(horizon),
        head: position(head),
    })
}

/// The horizon and head.
pub fn bounds(conn: &Connection) -> Result<FeedBounds, StoreError> {
    let tx = conn.unchecked_transaction().map_err(classify)?;
    let bounds = bounds_in(&tx)?;
    tx.commit().map_err(classify)?;
    Ok(bounds)
}

/// One page of the feed (see `Store::feed_events`).
pub fn page(conn: &Connection, query: &FeedQuery) -> Result<FeedPage, StoreError> {
    let tx = conn.unchecked_transaction().map_err(classify)?;
    let bounds = bounds_in(&tx)?;
    let [added, updated, terminated] = query.type_names();
    let after = to_i64(query.after.minor);
    let head = to_i64(bounds.head.minor);
    let limit = i64::from(query.limit);
    let rows = match &query.user_id {
        None => all_rows(
            &tx,
            &ALL_AFTER,
            params![after, head, added, updated, terminated, limit],
            |row| feed_row_from(row),
        )?,
        Some(user) => all_rows(
            &tx,
            &USER_AFTER,
            params![after, head, added, updated, terminated, limit, user],
            |row| feed_row_from(row),
        )?,
    };
    tx.commit().map_err(classify)?;
    let full = rows.len() >= usize::try_from(query.limit).unwrap_or(usize::MAX);
    let scanned_to = match rows.last() {
        Some(last) if full => last.position,
        _ => bounds.head.max(query.after),
    };
    Ok(FeedPage {
        rows,
        scanned_to,
        horizon: bounds.horizon,
        head: bounds.head,
        // One writer: everything committed is readable.
        held_back: false,
    })
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    /// The schema before the feed, some history in it, then the feed's migration.
    #[test]
    fn the_migration_numbers_old_events_and_tells_bulk_revocations_apart() {
        super::super::page_cache::install();
        let conn = Connection::open_in_memory().unwrap();
        for sql in [
            include_str!("../../../migrations/sqlite/0001_init.sql"),
            include_str!("../../../migrations/sqlite/0002_password_checks_pending.sql"),
            include_str!("../../../migrations/sqlite/0003_user_version.sql"),
        ] {
            conn.execute_batch(sql).unwrap();
        }
        for (id, user) in [("s1", "u1"), ("s2", "u1"), ("s3", "u1"), ("s4", "u2")] {
            conn.execute(
                "INSERT INTO sessions (id, user_id, metadata, user_agent, creator, resource_owner, \
                 creation_date, change_date, sequence, token_hash) \
                 VALUES (?1, ?2, '{}', '{}', 'c', 'inst', 1, 1, 2, ?1)",
                [id, user],
            )
            .unwrap();
        }
        let reason = |r: &str| format!("{{\"reason\":\"{r}\"}}");
        let rows = [
            ("s1", 1, "session.added", "{}".to_owned(), 10),
            ("s2", 1, "session.added", "{}".to_owned(), 11),
            ("s3", 1, "session.added", "{}".to_owned(), 12),
            ("s4", 1, "session.added", "{}".to_owned(), 13),
            // One revoke of one other session, then "revoke my other sessions" of two.
            ("s1", 2, "session.terminated", reason("revoked_by_user"), 20),
            ("s2", 2, "session.terminated", reason("revoked_by_user"), 30),
            ("s3", 2, "session.terminated", reason("revoked_by_user"), 30),
            ("s4", 2, "session.terminated", reason("deleted"), 30),
        ];
        for (id, seq, kind, payload, at) in rows {
            conn.execute(
                "INSERT INTO session_events VALUES (?, ?, ?, ?, ?, 'u')",
                rusqlite::params![id, seq, kind, payload, at],
            )
            .unwrap();
        }
        conn.execute_batch(include_str!("../../../migrations/sqlite/0004_feed.sql"))
            .unwrap();
        let got: Vec<(i64, String, i64, String, Option<String>, String)> = conn
            .prepare(
                "SELECT position, session_id, sequence, payload, user_id, resource_owner \
                 FROM session_events ORDER BY position",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let positions: Vec<i64> = got.iter().map(|r| r.0).collect();
        assert_eq!(positions, (1..=8).collect::<Vec<_>>());
        let payloads: Vec<(&str, &str)> = got[4..]
            .iter()
            .map(|r| (r.1.as_str(), r.3.as_str()))
            .collect();
        assert_eq!(
            payloads,
            [
                ("s1", reason("revoked_by_user").as_str()),
                ("s2", reason("revoke_others").as_str()),
                ("s3", reason("revoke_others").as_str()),
                ("s4", reason("deleted").as_str()),
            ]
        );
        assert!(got.iter().all(|r| r.5 == "inst" && r.4.is_some()));
        // New events continue the numbering; (session, sequence) stays unique.
        conn.execute(
            "INSERT INTO session_events (session_id, sequence, event_type, payload, created_at, \
             editor) VALUES ('s4', 3, 'session.updated', '{}', 40, 'u')",
            [],
        )
        .unwrap();
        let last: i64 = conn
            .query_row("SELECT MAX(position) FROM session_events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(last, 9);
        assert!(
            conn.execute(
                "INSERT INTO session_events (session_id, sequence, event_type, payload, \
                 created_at, editor) VALUES ('s4', 3, 'session.updated', '{}', 40, 'u')",
                [],
            )
            .is_err()
        );
    }
}
