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
    })
}
