//! The SQLite statements of the user directory that the column lists do not cover: password
//! checks (counters updated atomically in SQL), the bulk revocation of a user's sessions, and
//! the user list. Each function runs on a connection it is given, inside the caller's
//! transaction; none opens one.

use rusqlite::{Connection, OptionalExtension, params};

use super::open::classify;
use super::statements::{all_rows, count};
use crate::domain::{SessionId, User, UserId};
use crate::store::columns::users;
use crate::store::rows::{failures, json, refusal, user_from_row};
use crate::store::{PasswordCheck, Revocation, StoreError};

/// Starts a password check (see `Store::begin_password_check`). Only the checks-in-progress
/// counters change, which are no column of `User`: the version stays.
pub fn begin_check(
    conn: &Connection,
    id: &str,
    max_failures: u32,
    now: i64,
    stale_before: i64,
) -> Result<PasswordCheck, StoreError> {
    let granted: Option<i64> = conn
        .prepare_cached(
            "UPDATE users SET \
             password_checks_pending = CASE WHEN password_checks_pending_since < ?1 \
                 THEN 1 ELSE password_checks_pending + 1 END, \
             password_checks_pending_since = ?2 \
             WHERE id = ?3 AND state = 'active' AND (?4 = 0 OR \
                 failed_password_attempts + CASE WHEN password_checks_pending_since \
                 < ?1 THEN 0 ELSE password_checks_pending END < ?4) \
             RETURNING failed_password_attempts",
        )
        .and_then(|mut st| {
            st.query_row(params![stale_before, now, id, max_failures], |row| {
                row.get(0)
            })
            .optional()
        })
        .map_err(classify)?;
    if let Some(count) = granted {
        return Ok(PasswordCheck::Granted {
            failures: failures(count),
        });
    }
    let current = conn
        .prepare_cached("SELECT failed_password_attempts, state FROM users WHERE id = ?")
        .and_then(|mut st| {
            st.query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(classify)?;
    Ok(refusal(current, max_failures))
}

/// Ends a password check; `outcome` is its `outcome_name`. Bumps the version when the failure
/// count changes, so a whole-row update read before it cannot write the old count back. An
/// unregistered outcome (a passkey's) leaves the checks in progress as they are, and its pass
/// with no failures to clear changes nothing, so it writes nothing (answering 0).
pub fn end_check(conn: &Connection, id: &str, outcome: &str) -> Result<u32, StoreError> {
    let count: Option<i64> = conn
        .prepare_cached(
            "UPDATE users SET password_checks_pending = CASE WHEN ?1 LIKE '%-unregistered' \
                 THEN password_checks_pending ELSE MAX(password_checks_pending - 1, 0) END, \
             version = version + CASE WHEN ?1 LIKE 'failed%' \
                 OR (?1 LIKE 'passed%' AND failed_password_attempts <> 0) THEN 1 ELSE 0 END, \
             failed_password_attempts = CASE WHEN ?1 LIKE 'passed%' THEN 0 \
                 WHEN ?1 LIKE 'failed%' THEN failed_password_attempts + 1 \
                 ELSE failed_password_attempts END \
             WHERE id = ?2 AND NOT (?1 = 'passed-unregistered' AND failed_password_attempts = 0) \
             RETURNING failed_password_attempts",
        )
        .and_then(|mut st| {
            st.query_row(params![outcome, id], |row| row.get(0))
                .optional()
        })
        .map_err(classify)?;
    Ok(count.map_or(0, failures))
}

/// Users, optionally only the one with this folded login name, ordered by login name, and
/// the number of all matches; one read transaction (one snapshot).
pub fn list(
    conn: &Connection,
    folded: Option<String>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<User>, u64), StoreError> {
    static PAGE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "{} WHERE ?1 IS NULL OR login_name_folded = ?1 \
             ORDER BY login_name_folded LIMIT ?2 OFFSET ?3",
            *users::SELECT
        )
    });
    let tx = conn.unchecked_transaction().map_err(classify)?;
    let total = count(
        &tx,
        "SELECT COUNT(*) FROM users WHERE ?1 IS NULL OR login_name_folded = ?1",
        [&folded],
    )?;
    let page = all_rows(&tx, &PAGE, params![folded, limit, offset], |row| {
        user_from_row(row)
    })?;
    tx.commit().map_err(classify)?;
    Ok((page, total))
}

/// A bulk revocation, owned so it can travel to the writer.
pub struct RevocationRow {
    user: String,
    except: String,
    payload: String,
    at: i64,
    editor: String,
}

impl RevocationRow {
    pub fn new(
        user: &UserId,
        except: Option<&SessionId>,
        revocation: &Revocation,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            user: user.as_str().to_owned(),
            except: except.map(|id| id.as_str().to_owned()).unwrap_or_default(),
            payload: json(&serde_json::json!({ "reason": revocation.reason }))?,
            at: revocation.at.unix_micros(),
            editor: revocation.editor.clone(),
        })
    }

    /// Terminates the user's live sessions (but `except`): one event per session, sequence
    /// + 1, then the rows themselves.
    pub fn apply(&self, conn: &Connection) -> Result<u64, StoreError> {
        conn.prepare_cached(
            "INSERT INTO session_events (session_id, sequence, event_type, payload, created_at, \
             editor, user_id, resource_owner) SELECT id, sequence + 1, 'session.terminated', ?, \
             ?, ?, user_id, resource_owner FROM sessions \
             WHERE user_id = ? AND id <> ? AND terminated_at IS NULL",
        )
        .and_then(|mut st| {
            st.execute(params![
                self.payload,
                self.at,
                self.editor,
                self.user,
                self.except
            ])
        })
        .map_err(classify)?;
        let done = conn
            .prepare_cached(
                "UPDATE sessions SET terminated_at = ?, change_date = ?, sequence = sequence + 1 \
                 WHERE user_id = ? AND id <> ? AND terminated_at IS NULL",
            )
            .and_then(|mut st| st.execute(params![self.at, self.at, self.user, self.except]))
            .map_err(classify)?;
        Ok(done as u64)
    }
}
