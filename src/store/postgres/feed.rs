//! The feed on PostgreSQL: positions that hold although transactions commit out of order,
//! and the wake-ups between replicas.
//!
//! Positions. Every event records the id of the transaction that wrote it (`xid`, a
//! `pg_current_xact_id()` default) and a `serial`. A transaction still running always has an
//! id at least `pg_snapshot_xmin(pg_current_snapshot())`, so a reader takes only events whose
//! `xid` is below that: they are all committed, and nothing can ever appear before them in
//! `(xid, serial)` order. A read is one statement, so one snapshot: it finds the head (the
//! highest such event), the events up to it, the retention horizon, and whether committed
//! events wait past the head. A prune either committed before that snapshot (its horizon is
//! seen and an older cursor refused) or after it (the events it deletes are still in the
//! page): never a silent gap. A long transaction holds the feed back until it ends; it never
//! makes the feed skip. A read says when committed events wait past the head (`held_back`),
//! so the hub looks again shortly instead of at its next poll. A position is
//! `"<xid>.<serial>"`.
//!
//! Wake-ups. A write that appended events wakes this process's hub at once and asks the
//! notifier to `NOTIFY` the channel [`CHANNEL`]; the notifier sends at most one notification
//! per millisecond, however many writes asked, on a connection of its own. The listener
//! `LISTEN`s on another connection of its own (a one-connection pool beside the requests'
//! pool) and wakes the hub on every notification, and also whenever its connection was lost and
//! remade (notifications may have been missed then). The table stays the truth: the hub also
//! polls, so a lost notification only delays it by the poll interval. Both tasks start when
//! the store is opened and stop when the store's last clone is dropped.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::Row as _;
use sqlx::postgres::{PgConnection, PgListener, PgPool};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::classify;
use crate::domain::FeedPosition;
use crate::store::columns::{events, to_i64};
use crate::store::rows::feed_row_from;
use crate::store::{FeedBounds, FeedPage, FeedQuery, FeedWake, StoreError};

/// The notification channel every replica listens on.
pub const CHANNEL: &str = "sessiond_feed";
/// Least time between two notifications of one replica.
const NOTIFY_GAP: Duration = Duration::from_millis(1);

// The position columns are selected as `xid::text::bigint`, an output column PostgreSQL also
// names `xid`; ORDER BY prefers output names, so it names the table's columns in full to
// order by the index `(xid, serial)` instead of sorting the whole table.

/// The highest readable event, and the horizon.
const BOUNDS: &str = "SELECT \
    (SELECT xid::text::bigint FROM session_events \
        WHERE xid < pg_snapshot_xmin(pg_current_snapshot()) \
        ORDER BY session_events.xid DESC, session_events.serial DESC LIMIT 1), \
    (SELECT serial FROM session_events \
        WHERE xid < pg_snapshot_xmin(pg_current_snapshot()) \
        ORDER BY session_events.xid DESC, session_events.serial DESC LIMIT 1), \
    (SELECT xid FROM feed_horizon WHERE id = 1), \
    (SELECT serial FROM feed_horizon WHERE id = 1)";

/// One page: the events after `($1, $2)` up to the head, of the types `$3`, at most `$4`
/// (and of the user `$5` where `{user}` says so), each row also carrying the head, the
/// horizon and whether committed events wait past the head; a single row of those alone
/// (the event columns NULL) when no event matches.
fn page_sql(user: &str) -> String {
    let columns = events::TABLE
        .columns
        .iter()
        .map(|c| format!("session_events.{}", c.name))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "WITH head AS (SELECT xid, serial FROM session_events \
            WHERE xid < pg_snapshot_xmin(pg_current_snapshot()) \
            ORDER BY session_events.xid DESC, session_events.serial DESC LIMIT 1), \
         meta AS (SELECT (SELECT xid::text::bigint FROM head) AS head_xid, \
            (SELECT serial FROM head) AS head_serial, \
            (SELECT xid FROM feed_horizon WHERE id = 1) AS horizon_xid, \
            (SELECT serial FROM feed_horizon WHERE id = 1) AS horizon_serial, \
            EXISTS (SELECT 1 FROM session_events WHERE (xid, serial) > \
                (COALESCE((SELECT xid FROM head), '0'::xid8), \
                 COALESCE((SELECT serial FROM head), 0))) AS held_back), \
         page AS (SELECT {columns}, session_events.xid::text::bigint AS at_xid, \
            session_events.serial AS at_serial FROM session_events, head \
            WHERE (session_events.xid, session_events.serial) > ($1::text::xid8, $2) \
            AND (session_events.xid, session_events.serial) <= (head.xid, head.serial) \
            AND session_events.event_type = ANY($3){user} \
            ORDER BY session_events.xid, session_events.serial LIMIT $4) \
         SELECT page.*, meta.* FROM meta LEFT JOIN page ON true \
         ORDER BY page.at_xid, page.at_serial"
    )
}

static ALL_AFTER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| page_sql(""));

static USER_AFTER: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| page_sql(" AND session_events.user_id = $5"));

fn position(major: Option<i64>, minor: Option<i64>) -> FeedPosition {
    let part = |n: Option<i64>| u64::try_from(n.unwrap_or_default()).unwrap_or_default();
    FeedPosition::new(part(major), part(minor))
}

type BoundsRow = (Option<i64>, Option<i64>, Option<i64>, Option<i64>);

/// The horizon and the head.
pub async fn bounds(pool: &PgPool) -> Result<FeedBounds, StoreError> {
    let (head_xid, head_serial, horizon_xid, horizon_serial): BoundsRow = sqlx::query_as(BOUNDS)
        .fetch_one(pool)
        .await
        .map_err(classify)?;
    Ok(FeedBounds {
        horizon: position(horizon_xid, horizon_serial),
        head: position(head_xid, head_serial),
    })
}

/// One page of the feed (see `Store::feed_events`), in one round trip.
pub async fn page(pool: &PgPool, query: &FeedQuery) -> Result<FeedPage, StoreError> {
    let sql = if query.user_id.is_some() {
        &*USER_AFTER
    } else {
        &*ALL_AFTER
    };
    let types: Vec<String> = query.type_names().map(str::to_owned).to_vec();
    let mut select = sqlx::query(sql)
        .bind(query.after.major.to_string())
        .bind(to_i64(query.after.minor))
        .bind(types)
        .bind(i64::from(query.limit));
    if let Some(user) = &query.user_id {
        select = select.bind(user.clone());
    }
    let found = select.fetch_all(pool).await.map_err(classify)?;
    // After the event columns and the position: head, horizon, held back.
    let meta = events::TABLE.columns.len() + 2;
    let (head, horizon, held_back) = match found.first() {
        Some(row) => {
            let int = |i: usize| row.try_get::<Option<i64>, _>(i).map_err(classify);
            (
                position(int(meta)?, int(meta + 1)?),
                position(int(meta + 2)?, int(meta + 3)?),
                row.try_get::<bool, _>(meta + 4).map_err(classify)?,
            )
        }
        None => (FeedPosition::START, FeedPosition::START, false),
    };
    let mut rows = Vec::with_capacity(found.len());
    for row in &found {
        // The one row of a page without events has no event in it.
        if row
            .try_get::<Option<String>, _>(events::SESSION_ID)
            .map_err(classify)?
            .is_some()
        {
            rows.push(feed_row_from(row)?);
        }
    }
    let full = rows.len() >= usize::try_from(query.limit).unwrap_or(usize::MAX);
    let scanned_to = match rows.last() {
        Some(last) if full => last.position,
        _ => head.max(query.after),
    };
    Ok(FeedPage {
        rows,
        scanned_to,
        horizon,
        head,
        held_back,
    })
}

/// Raises the horizon to the highest position among the events of `ids` (before they are
/// deleted, in the same transaction).
pub async fn raise_horizon(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    ids: &[String],
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE feed_horizon h SET xid = m.xid, serial = m.serial \
         FROM (SELECT xid::text::bigint AS xid, serial FROM session_events \
               WHERE session_id = ANY($1) ORDER BY xid DESC, serial DESC LIMIT 1) m \
         WHERE h.id = 1 AND (m.xid, m.serial) > (h.xid, h.serial)",
    )
    .bind(ids)
    .execute(&mut **tx)
    .await
    .map_err(classify)?;
    Ok(())
}

/// The store's wake-up, its notifier and its listener.
#[derive(Debug)]
pub struct PgFeed {
    wake: FeedWake,
    notify: watch::Sender<u64>,
    /// The listener's own connection (one), so it never takes one from requests.
    listen_pool: PgPool,
    tasks: OnceLock<Tasks>,
}

/// The notifier and listener, aborted when dropped.
#[derive(Debug)]
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl PgFeed {
    pub fn new(listen_pool: PgPool) -> Self {
        Self {
            wake: FeedWake::default(),
            notify: watch::Sender::new(0),
            listen_pool,
            tasks: OnceLock::new(),
        }
    }

    /// The wake-up, with the tasks started.
    pub fn wake(self: &Arc<Self>, pool: &PgPool) -> FeedWake {
        self.start(pool);
        self.wake.clone()
    }

    /// After a commit that appended events: wake this process now, the others soon.
    pub fn appended(self: &Arc<Self>, pool: &PgPool) {
        self.start(pool);
        self.wake.wake();
        self.notify.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Starts the notifier and the listener, once, on the current runtime (later, on first
    /// use, if there is none now).
    pub(super) fn start(&self, pool: &PgPool) {
        if self.tasks.get().is_some() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.tasks.get_or_init(|| {
            Tasks(vec![
                runtime.spawn(notify(pool.clone(), self.notify.subscribe())),
                runtime.spawn(listen(self.listen_pool.clone(), self.wake.clone())),
            ])
        });
    }

    /// Whether the notifier and the listener run.
    #[cfg(test)]
    fn started(&self) -> bool {
        self.tasks.get().is_some()
    }
}

/// Sends one notification per batch of local appends, at most one per [`NOTIFY_GAP`], on a
/// connection of its own (made with the pool's options, remade after a failure): a pooled
/// connection would cost two liveness round trips per notification besides the `NOTIFY`.
async fn notify(pool: PgPool, mut asked: watch::Receiver<u64>) {
    let options = pool.connect_options();
    let mut conn: Option<PgConnection> = None;
    while asked.changed().await.is_ok() {
        asked.mark_unchanged();
        if conn.is_none() {
            match PgConnection::connect_with(&options).await {
                Ok(c) => conn = Some(c),
                Err(e) => tracing::debug!(error = %e, "feed notifier cannot connect; retrying"),
            }
        }
        if let Some(c) = conn.as_mut()
            && let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
                .bind(CHANNEL)
                .execute(&mut *c)
                .await
        {
            tracing::debug!(error = %e, "feed notification not sent; other replicas will poll");
            conn = None;
        }
        tokio::time::sleep(NOTIFY_GAP).await;
    }
}

/// Wakes the hub on every notification and after every reconnection; reconnects on failure.
async fn listen(pool: PgPool, wake: FeedWake) {
    let mut delay = Duration::from_millis(100);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::debug!(error = %e, "feed listener cannot connect; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::debug!(error = %e, "feed listener cannot listen; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
            continue;
        }
        delay = Duration::from_millis(100);
        // Anything committed before the listener was in place is found by this wake-up.
        wake.wake();
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => wake.wake(),
                // The connection was lost and is remade on the next call.
                Ok(None) => wake.wake(),
                Err(e) => {
                    tracing::debug!(error = %e, "feed listener failed; reconnecting");
                    wake.wake();
                    tokio::time::sleep(delay).await;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{PgSettings, PostgresStore};

    /// Connecting is lazy, so this needs no server: the tasks exist from the store's opening.
    #[tokio::test]
    async fn the_notifier_and_listener_start_when_the_store_opens() {
        let store = PostgresStore::connect(
            "postgres://sessiond@127.0.0.1:1/nowhere",
            &PgSettings {
                max_connections: 1,
                acquire_timeout: std::time::Duration::from_secs(1),
                statement_timeout: std::time::Duration::from_secs(1),
            },
        );
        assert!(store.is_ok_and(|store| store.feed.started()));
    }
}
