//! SQLite housekeeping: the shared secrets, pruning old sessions (raising the feed's horizon
//! past the events it deletes), the live-session count and the health checks (ping, schema).
//! No session or user is changed here, only deleted.

use rusqlite::{Connection, params};

use super::open::{MIGRATOR, classify};
use super::statements::count;
use crate::store::rows::secret_bytes;
use crate::store::{PruneBatch, StoreError};

/// The secret `name`, stored as `fresh` unless one is stored already.
pub fn secret(conn: &Connection, name: &str, fresh: [u8; 32]) -> Result<[u8; 32], StoreError> {
    conn.execute(
        "INSERT INTO server_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        params![name, fresh.as_slice()],
    )
    .map_err(classify)?;
    let value: Vec<u8> = conn
        .query_row(
            "SELECT value FROM server_secrets WHERE name = ?",
            [name],
            |row| row.get(0),
        )
        .map_err(classify)?;
    secret_bytes(&value)
}

/// Deletes up to `batch` sessions terminated before `terminated_before` or expired before
/// `expired_before` (microseconds), with their events.
pub fn prune(
    conn: &Connection,
    terminated_before: i64,
    expired_before: i64,
    batch: u32,
) -> Result<PruneBatch, StoreError> {
    let ids: Vec<String> = conn
        .prepare_cached(
            "SELECT id FROM sessions WHERE (terminated_at IS NOT NULL AND terminated_at < ?) \
             OR (expiration IS NOT NULL AND expiration < ?) LIMIT ?",
        )
        .and_then(|mut st| {
            st.query_map(
                params![terminated_before, expired_before, i64::from(batch)],
                |row| row.get(0),
            )?
            .collect()
        })
        .map_err(classify)?;
    let mut deleted = PruneBatch::default();
    let mut horizon = conn
        .prepare_cached(
            "UPDATE feed_horizon SET position = MAX(position, \
             (SELECT COALESCE(MAX(position), 0) FROM session_events WHERE session_id = ?))",
        )
        .map_err(classify)?;
    let mut events = conn
        .prepare_cached("DELETE FROM session_events WHERE session_id = ?")
        .map_err(classify)?;
    let mut sessions = conn
        .prepare_cached("DELETE FROM sessions WHERE id = ?")
        .map_err(classify)?;
    for id in &ids {
        horizon.execute([id]).map_err(classify)?;
        deleted.events += events.execute([id]).map_err(classify)? as u64;
        deleted.sessions += sessions.execute([id]).map_err(classify)? as u64;
    }
    Ok(deleted)
}

/// Sessions neither terminated nor expired at `now` (microseconds).
pub fn count_live_sessions(conn: &Connection, now: i64) -> Result<u64, StoreError> {
    count(
        conn,
        "SELECT COUNT(*) FROM sessions WHERE terminated_at IS NULL \
         AND (expiration IS NULL OR expiration > ?)",
        [now],
    )
}

/// Whether every migration this binary knows has been applied.
pub fn schema_ready(conn: &Connection) -> Result<bool, StoreError> {
    let applied: Vec<i64> = match conn
        .prepare("SELECT version FROM _sqlx_migrations WHERE success")
        .and_then(|mut st| st.query_map([], |row| row.get(0))?.collect())
    {
        Ok(versions) => versions,
        Err(e) => {
            return match classify(e) {
                StoreError::Internal(_) => Ok(false),
                other => Err(other),
            };
        }
    };
    Ok(crate::store::migrations_applied(&MIGRATOR, &applied))
}

pub fn ping(conn: &Connection) -> Result<(), StoreError> {
    conn.query_row("SELECT 1", [], |_| Ok(())).map_err(classify)
}
