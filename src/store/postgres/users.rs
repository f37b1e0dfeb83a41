//! The PostgreSQL statements of the user directory that the column lists do not cover:
//! password checks (counters updated atomically in SQL), row locks on a user, the bulk
//! revocation of a user's sessions, and the user list. Transactions are the caller's.

use std::sync::LazyLock;

use sqlx::{PgPool, Postgres, Transaction};

use super::classify;
use crate::domain::{SessionId, Time, User, UserId};
use crate::store::columns::users;
use crate::store::rows::{failures, json, refusal, to_i64, user_from_row};
use crate::store::{PasswordCheck, Revocation, StoreError, UserListQuery};

/// Locks the user's row (`FOR SHARE` or `FOR UPDATE`) until the transaction ends.
pub async fn lock(
    tx: &mut Transaction<'_, Postgres>,
    user: &UserId,
    mode: &'static str,
) -> Result<(), StoreError> {
    let sql = if mode == "FOR SHARE" {
        "SELECT 1 FROM users WHERE id = $1 FOR SHARE"
    } else {
        "SELECT 1 FROM users WHERE id = $1 FOR UPDATE"
    };
    sqlx::query(sql)
        .bind(user.as_str())
        .execute(&mut **tx)
        .await
        .map_err(classify)?;
    Ok(())
}

/// Starts a password check (see `Store::begin_password_check`). Only the checks-in-progress
/// counters change, which are no column of `User`: the version stays.
pub async fn begin_check(
    pool: &PgPool,
    id: &UserId,
    max_failures: u32,
    now: Time,
    stale_before: Time,
) -> Result<PasswordCheck, StoreError> {
    let granted: Option<i64> = sqlx::query_scalar(
        "UPDATE users SET \
         password_checks_pending = CASE WHEN password_checks_pending_since < $1 THEN 1 \
             ELSE password_checks_pending + 1 END, \
         password_checks_pending_since = $2 \
         WHERE id = $3 AND state = 'active' AND ($4 = 0 OR failed_password_attempts + \
             CASE WHEN password_checks_pending_since < $1 THEN 0 ELSE password_checks_pending END < $4) \
         RETURNING failed_password_attempts",
    )
    .bind(stale_before.unix_micros())
    .bind(now.unix_micros())
    .bind(id.as_str())
    .bind(i64::from(max_failures))
    .fetch_optional(pool)
    .await
    .map_err(classify)?;
    if let Some(count) = granted {
        return Ok(PasswordCheck::Granted {
            failures: failures(count),
        });
    }
    let current: Option<(i64, String)> =
        sqlx::query_as("SELECT failed_password_attempts, state FROM users WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(pool)
            .await
            .map_err(classify)?;
    Ok(refusal(current, max_failures))
}

/// Ends a password check; `outcome` is its `outcome_name`. Bumps the version when the failure
/// count changes, so a whole-row update read before it cannot write the old count back. An
/// unregistered outcome (a passkey's) leaves the checks in progress as they are, and its pass
/// with no failures to clear changes nothing, so it writes nothing (answering 0).
pub async fn end_check<'e>(
    db: impl sqlx::PgExecutor<'e>,
    id: &UserId,
    outcome: &str,
) -> Result<u32, StoreError> {
    let count: Option<i64> = sqlx::query_scalar(
        "UPDATE users SET password_checks_pending = CASE WHEN $1 LIKE '%-unregistered' \
             THEN password_checks_pending ELSE GREATEST(password_checks_pending - 1, 0) END, \
         version = version + CASE WHEN $1 LIKE 'failed%' \
             OR ($1 LIKE 'passed%' AND failed_password_attempts <> 0) THEN 1 ELSE 0 END, \
         failed_password_attempts = CASE WHEN $1 LIKE 'passed%' THEN 0 \
             WHEN $1 LIKE 'failed%' THEN failed_password_attempts + 1 \
             ELSE failed_password_attempts END \
         WHERE id = $2 AND NOT ($1 = 'passed-unregistered' AND failed_password_attempts = 0) \
         RETURNING failed_password_attempts",
    )
    .bind(outcome)
    .bind(id.as_str())
    .fetch_optional(db)
    .await
    .map_err(classify)?;
    Ok(count.map_or(0, failures))
}

/// Terminates the live sessions of a user (but `except`) inside a transaction that holds the
/// user row exclusively: one event per session, sequence + 1, then the rows themselves.
pub async fn terminate_sessions(
    tx: &mut Transaction<'_, Postgres>,
    user: &UserId,
    except: Option<&SessionId>,
    revocation: &Revocation,
) -> Result<u64, StoreError> {
    lock(tx, user, "FOR UPDATE").await?;
    let except = except.map(|id| id.as_str().to_owned()).unwrap_or_default();
    let payload = json(&serde_json::json!({ "reason": revocation.reason }))?;
    sqlx::query(
        "INSERT INTO session_events (session_id, sequence, event_type, payload, created_at, editor, \
         user_id, resource_owner) \
         SELECT id, sequence + 1, 'session.terminated', $1, $2, $3, user_id, resource_owner \
         FROM sessions \
         WHERE user_id = $4 AND id <> $5 AND terminated_at IS NULL",
    )
    .bind(&payload)
    .bind(revocation.at.unix_micros())
    .bind(&revocation.editor)
    .bind(user.as_str())
    .bind(&except)
    .execute(&mut **tx)
    .await
    .map_err(classify)?;
    let done = sqlx::query(
        "UPDATE sessions SET terminated_at = $1, change_date = $1, sequence = sequence + 1 \
         WHERE user_id = $2 AND id <> $3 AND terminated_at IS NULL",
    )
    .bind(revocation.at.unix_micros())
    .bind(user.as_str())
    .bind(&except)
    .execute(&mut **tx)
    .await
    .map_err(classify)?;
    Ok(done.rows_affected())
}

/// Users, optionally only the one with this login name, ordered by login name, and the number
/// of all matches.
pub async fn list(
    tx: &mut Transaction<'_, Postgres>,
    query: &UserListQuery,
) -> Result<(Vec<User>, u64), StoreError> {
    static PAGE: LazyLock<String> = LazyLock::new(|| {
        format!(
            "{} WHERE $1::TEXT IS NULL OR login_name_folded = $1 \
             ORDER BY login_name_folded LIMIT $2 OFFSET $3",
            *users::SELECT
        )
    });
    let folded = query.login_name.as_ref().map(|name| name.folded());
    let total: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM users WHERE $1::TEXT IS NULL OR login_name_folded = $1",
    )
    .bind(folded.clone())
    .fetch_one(&mut **tx)
    .await
    .map_err(classify)?;
    let rows = sqlx::query(&PAGE)
        .bind(folded)
        .bind(i64::from(query.limit))
        .bind(to_i64(query.offset))
        .fetch_all(&mut **tx)
        .await
        .map_err(classify)?;
    let page = rows
        .iter()
        .map(user_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((page, u64::try_from(total).unwrap_or_default()))
}
