//! Signals on SQLite: a small sqlx pool of its own on the store's file (WAL, so its reads
//! never block the session writer; its writes queue on the file's lock behind a busy timeout).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::domain::Time;
use crate::store::StoreError;
use crate::store::signals::{
    Enqueue, ITEM_COLUMNS, ItemTuple, OutboxItem, SignalStore, TARGET_COLUMNS, TargetKind,
    TargetRow, TargetTuple, classify, depths_from, item_from, target_from,
};

#[derive(Clone, Debug)]
pub struct SqliteSignalStore {
    pool: SqlitePool,
}

impl SqliteSignalStore {
    /// Connects to the (already migrated) database at `url` (`sqlite://PATH`).
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        super::page_cache::install();
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Internal(Box::new(e)))?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_lazy_with(options);
        Ok(Self { pool })
    }
}

#[async_trait]
impl SignalStore for SqliteSignalStore {
    async fn insert_target(&self, row: &TargetRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO signal_targets (kind, id, config, auth, status, reason, cursor, \
             created_at, updated_at, last_activity) VALUES (?1, ?2, ?3, ?4, ?5, ?6, \
             ?7, ?8, ?9, ?10)",
        )
        .bind(row.kind.as_str())
        .bind(&row.id)
        .bind(row.config.to_string())
        .bind(&row.auth)
        .bind(&row.status)
        .bind(&row.reason)
        .bind(&row.cursor)
        .bind(row.created_at.unix_micros())
        .bind(row.updated_at.unix_micros())
        .bind(row.last_activity.unix_micros())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn target(&self, kind: TargetKind, id: &str) -> Result<Option<TargetRow>, StoreError> {
        let sql =
            format!("SELECT {TARGET_COLUMNS} FROM signal_targets WHERE kind = ?1 AND id = ?2");
        let row: Option<TargetTuple> = sqlx::query_as(&sql)
            .bind(kind.as_str())
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.map(target_from).transpose()
    }

    async fn targets(&self, kind: Option<TargetKind>) -> Result<Vec<TargetRow>, StoreError> {
        let sql = format!(
            "SELECT {TARGET_COLUMNS} FROM signal_targets WHERE ?1 IS NULL OR kind = ?1 \
             ORDER BY created_at, id"
        );
        let rows: Vec<TargetTuple> = sqlx::query_as(&sql)
            .bind(kind.map(TargetKind::as_str))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.into_iter().map(target_from).collect()
    }

    async fn update_target(&self, row: &TargetRow) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE signal_targets SET config = ?3, auth = ?4, status = ?5, reason = ?6, \
             updated_at = ?7 WHERE kind = ?1 AND id = ?2",
        )
        .bind(row.kind.as_str())
        .bind(&row.id)
        .bind(row.config.to_string())
        .bind(&row.auth)
        .bind(&row.status)
        .bind(&row.reason)
        .bind(row.updated_at.unix_micros())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_target(&self, kind: TargetKind, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let done = sqlx::query("DELETE FROM signal_targets WHERE kind = ?1 AND id = ?2")
            .bind(kind.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        sqlx::query("DELETE FROM signal_outbox WHERE kind = ?1 AND target_id = ?2")
            .bind(kind.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        if kind == TargetKind::Stream {
            sqlx::query("DELETE FROM signal_removed_subjects WHERE target_id = ?1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }

    async fn lease(
        &self,
        kind: TargetKind,
        id: &str,
        owner: &str,
        now: Time,
        until: Time,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE signal_targets SET lease_owner = ?3, lease_until = ?5 WHERE kind = ?1 \
             AND id = ?2 AND (lease_owner IS NULL OR lease_owner = ?3 OR lease_until < ?4)",
        )
        .bind(kind.as_str())
        .bind(id)
        .bind(owner)
        .bind(now.unix_micros())
        .bind(until.unix_micros())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }

    async fn release(&self, kind: TargetKind, id: &str, owner: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE signal_targets SET lease_owner = NULL, lease_until = 0 WHERE kind = ?1 \
             AND id = ?2 AND lease_owner = ?3",
        )
        .bind(kind.as_str())
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn enqueue(
        &self,
        kind: TargetKind,
        id: &str,
        enqueue: &Enqueue,
        now: Time,
    ) -> Result<bool, StoreError> {
        let n = i64::try_from(enqueue.items.len()).unwrap_or(i64::MAX);
        let mut tx = self.pool.begin().await.map_err(classify)?;
        // The first write takes the file's write lock: the check below and the appends are
        // one step for every other writer.
        let next: Option<(i64,)> = sqlx::query_as(
            "UPDATE signal_targets SET next_seq = next_seq + ?3, \
             cursor = COALESCE(?5, cursor) WHERE kind = ?1 AND id = ?2 \
             AND (?4 IS NULL OR cursor = ?4) RETURNING next_seq - ?3",
        )
        .bind(kind.as_str())
        .bind(id)
        .bind(n)
        .bind(&enqueue.cursor_from)
        .bind(&enqueue.cursor_to)
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
        let Some((first,)) = next else {
            return Ok(false);
        };
        for (seq, item) in (first..).zip(&enqueue.items) {
            sqlx::query(
                "INSERT INTO signal_outbox (kind, target_id, seq, jti, token, created_at, \
                 occurred_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .bind(kind.as_str())
            .bind(id)
            .bind(seq)
            .bind(&item.jti)
            .bind(&item.token)
            .bind(now.unix_micros())
            .bind(item.occurred_at.map(Time::unix_micros))
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }
        if let Some(keep) = enqueue.keep_at_most {
            sqlx::query(
                "DELETE FROM signal_outbox WHERE kind = ?1 AND target_id = ?2 AND seq <= \
                 (SELECT MAX(seq) FROM signal_outbox WHERE kind = ?1 AND target_id = ?2) - ?3",
            )
            .bind(kind.as_str())
            .bind(id)
            .bind(i64::try_from(keep).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(true)
    }

    async fn pending(
        &self,
        kind: TargetKind,
        id: &str,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM signal_outbox WHERE kind = ?1 AND target_id = ?2 \
             ORDER BY seq LIMIT ?3"
        );
        let rows: Vec<ItemTuple> = sqlx::query_as(&sql)
            .bind(kind.as_str())
            .bind(id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        Ok(rows.into_iter().map(item_from).collect())
    }

    async fn pending_count(&self, kind: TargetKind, id: &str) -> Result<u64, StoreError> {
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM signal_outbox WHERE kind = ?1 AND target_id = ?2")
                .bind(kind.as_str())
                .bind(id)
                .fetch_one(&self.pool)
                .await
                .map_err(classify)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn remove_items(
        &self,
        kind: TargetKind,
        id: &str,
        jtis: &[String],
    ) -> Result<u64, StoreError> {
        if jtis.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let mut removed = 0;
        for jti in jtis {
            removed += sqlx::query(
                "DELETE FROM signal_outbox WHERE kind = ?1 AND target_id = ?2 AND jti = ?3",
            )
            .bind(kind.as_str())
            .bind(id)
            .bind(jti)
            .execute(&mut *tx)
            .await
            .map_err(classify)?
            .rows_affected();
        }
        tx.commit().await.map_err(classify)?;
        Ok(removed)
    }

    async fn record_attempt(
        &self,
        kind: TargetKind,
        id: &str,
        jti: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE signal_outbox SET attempts = attempts + 1 WHERE kind = ?1 AND \
             target_id = ?2 AND jti = ?3",
        )
        .bind(kind.as_str())
        .bind(id)
        .bind(jti)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn record_activity(
        &self,
        kind: TargetKind,
        id: &str,
        now: Time,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        // The update comes first: it takes the row's (or the file's) write lock, so the
        // notice read after it is the one it clears.
        let done =
            sqlx::query("UPDATE signal_targets SET last_activity = ?3 WHERE kind = ?1 AND id = ?2")
                .bind(kind.as_str())
                .bind(id)
                .bind(now.unix_micros())
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let (notice,): (Option<String>,) = sqlx::query_as(
            "SELECT inactivity_notice FROM signal_targets WHERE kind = ?1 AND id = ?2",
        )
        .bind(kind.as_str())
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
        if notice.is_some() {
            sqlx::query(
                "UPDATE signal_targets SET inactivity_notice = NULL, inactivity_notice_at = 0 \
                 WHERE kind = ?1 AND id = ?2",
            )
            .bind(kind.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(notice)
    }

    async fn claim_verification(
        &self,
        id: &str,
        now: Time,
        not_after: Time,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE signal_targets SET verified_at = ?2 WHERE kind = 'stream' AND id = ?1 \
             AND verified_at <= ?3",
        )
        .bind(id)
        .bind(now.unix_micros())
        .bind(not_after.unix_micros())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }

    async fn announce_inactivity(
        &self,
        id: &str,
        jti: &str,
        cutoff: Time,
        now: Time,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE signal_targets SET inactivity_notice = ?2, inactivity_notice_at = ?4 \
             WHERE kind = 'stream' AND id = ?1 AND status = 'enabled' \
             AND inactivity_notice IS NULL AND last_activity <= ?3",
        )
        .bind(id)
        .bind(jti)
        .bind(cutoff.unix_micros())
        .bind(now.unix_micros())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }

    async fn pause_inactive(
        &self,
        id: &str,
        jti: &str,
        reason: &str,
        now: Time,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE signal_targets SET status = 'paused', reason = ?3, updated_at = ?4, \
             inactivity_notice = NULL, inactivity_notice_at = 0 WHERE kind = 'stream' \
             AND id = ?1 AND status = 'enabled' AND inactivity_notice = ?2",
        )
        .bind(id)
        .bind(jti)
        .bind(reason)
        .bind(now.unix_micros())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }

    async fn holds(&self, kind: TargetKind, id: &str, jti: &str) -> Result<bool, StoreError> {
        let found: Option<(i64,)> = sqlx::query_as(
            "SELECT seq FROM signal_outbox WHERE kind = ?1 AND target_id = ?2 AND jti = ?3",
        )
        .bind(kind.as_str())
        .bind(id)
        .bind(jti)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        Ok(found.is_some())
    }

    async fn outbox_depths(&self) -> Result<Vec<(TargetKind, u64)>, StoreError> {
        // The outbox rows, and the terminations after each target's cursor that are not
        // signed yet (push targets sign them at delivery; a disabled target drops them).
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT kind, SUM(n) FROM (\
                 SELECT kind, COUNT(*) AS n FROM signal_outbox GROUP BY kind \
                 UNION ALL SELECT t.kind, (SELECT COUNT(*) FROM session_events e \
                 WHERE e.position > CAST(t.cursor AS INTEGER) \
                 AND e.event_type = 'session.terminated') \
                 FROM signal_targets t WHERE t.status <> 'disabled') GROUP BY kind",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        Ok(depths_from(rows))
    }

    async fn acknowledge(
        &self,
        kind: TargetKind,
        id: &str,
        jtis: &[String],
    ) -> Result<Vec<Option<Time>>, StoreError> {
        if jtis.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let mut removed = Vec::new();
        for jti in jtis {
            let row: Option<(Option<i64>,)> = sqlx::query_as(
                "DELETE FROM signal_outbox WHERE kind = ?1 AND target_id = ?2 AND jti = ?3 \
                 RETURNING occurred_at",
            )
            .bind(kind.as_str())
            .bind(id)
            .bind(jti)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
            if let Some((at,)) = row {
                removed.push(at.map(Time::from_unix_micros));
            }
        }
        tx.commit().await.map_err(classify)?;
        Ok(removed)
    }

    async fn removed_subjects(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT subject FROM signal_removed_subjects WHERE target_id = ?1")
                .bind(id)
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?;
        Ok(rows.into_iter().map(|(s,)| s).collect())
    }

    async fn remove_subject(&self, id: &str, subject: &str, max: u32) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        // The INSERT takes the database's write lock before its count reads anything, so the
        // count and the insert see the same rows: removals queue behind each other.
        let inserted = sqlx::query(
            "INSERT INTO signal_removed_subjects (target_id, subject) SELECT ?1, ?2 \
             WHERE (SELECT COUNT(*) FROM signal_removed_subjects WHERE target_id = ?1) < ?3 \
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(subject)
        .bind(i64::from(max))
        .execute(&mut *tx)
        .await
        .map_err(classify)?
        .rows_affected()
            == 1;
        let removed = inserted || {
            // Nothing inserted: already removed, or refused by the bound.
            let (held,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM signal_removed_subjects \
                 WHERE target_id = ?1 AND subject = ?2",
            )
            .bind(id)
            .bind(subject)
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
            held > 0
        };
        tx.commit().await.map_err(classify)?;
        Ok(removed)
    }

    async fn add_subject(&self, id: &str, subject: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM signal_removed_subjects WHERE target_id = ?1 AND subject = ?2")
            .bind(id)
            .bind(subject)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }
}
