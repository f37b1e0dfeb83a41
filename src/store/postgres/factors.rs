//! The PostgreSQL statements of second factors: enrollments, recovery-code hashes, one-time
//! code challenges, and the record of a code's check in one statement (the lockout gate, the
//! TOTP replay guard, a code spent, the failure count). Writes that end sessions run in one
//! transaction with the revocation.
//!
//! Lock order: a transaction that locks a user's row and rows of its factors takes the user's
//! row first (the record of a check, and a factor change that ends sessions), so two of them
//! wait for each other instead of deadlocking.

use std::sync::LazyLock;

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row, Transaction};

use super::{PgQuery, classify, users};
use crate::domain::{FactorKind, Time, UserId};
use crate::store::factors::{FACTOR_COLUMNS, FactorRevocation, StoredFactor, factor_from_row};
use crate::store::rows::{factor_refusal, failures};
use crate::store::{FactorAttempt, FactorCheckOutcome, StoreError};

static FACTORS_OF_USER: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {FACTOR_COLUMNS} FROM user_factors f WHERE f.user_id = $1 ORDER BY f.kind")
});

pub async fn of_user(pool: &PgPool, user: &UserId) -> Result<Vec<StoredFactor>, StoreError> {
    let rows = sqlx::query(&FACTORS_OF_USER)
        .bind(user.as_str())
        .fetch_all(pool)
        .await
        .map_err(classify)?;
    rows.iter().map(factor_from_row).collect()
}

pub async fn save(
    tx: &mut Transaction<'_, Postgres>,
    f: &StoredFactor,
    codes: Option<&[Vec<u8>]>,
    revoke: Option<&FactorRevocation>,
) -> Result<u64, StoreError> {
    lock_for_revocation(tx, &f.user_id, revoke).await?;
    sqlx::query(
        "INSERT INTO user_factors (user_id, kind, state, secret, last_step, created_at, \
         verified_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (user_id, kind) DO \
         UPDATE SET state = excluded.state, secret = excluded.secret, \
         last_step = excluded.last_step, created_at = excluded.created_at, \
         verified_at = excluded.verified_at",
    )
    .bind(f.user_id.as_str())
    .bind(f.kind.as_str())
    .bind(f.state.as_str())
    .bind(f.secret.as_deref())
    .bind(f.last_step)
    .bind(f.created_at.unix_micros())
    .bind(f.verified_at.map(Time::unix_micros))
    .execute(&mut **tx)
    .await
    .map_err(classify)?;
    if let Some(codes) = codes {
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(f.user_id.as_str())
            .execute(&mut **tx)
            .await
            .map_err(classify)?;
        for hash in codes {
            sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                .bind(f.user_id.as_str())
                .bind(hash.as_slice())
                .execute(&mut **tx)
                .await
                .map_err(classify)?;
        }
    }
    revoke_in(tx, &f.user_id, revoke).await
}

pub async fn remove(
    tx: &mut Transaction<'_, Postgres>,
    user: &UserId,
    kind: FactorKind,
    revoke: Option<&FactorRevocation>,
) -> Result<Option<u64>, StoreError> {
    lock_for_revocation(tx, user, revoke).await?;
    let deleted = sqlx::query("DELETE FROM user_factors WHERE user_id = $1 AND kind = $2")
        .bind(user.as_str())
        .bind(kind.as_str())
        .execute(&mut **tx)
        .await
        .map_err(classify)?;
    if deleted.rows_affected() == 0 {
        return Ok(None);
    }
    if kind == FactorKind::RecoveryCodes {
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user.as_str())
            .execute(&mut **tx)
            .await
            .map_err(classify)?;
    }
    revoke_in(tx, user, revoke).await.map(Some)
}

/// Locks the user's row before the factor's rows when the write ends sessions, which locks
/// it anyway (see the lock order in the module header).
async fn lock_for_revocation(
    tx: &mut Transaction<'_, Postgres>,
    user: &UserId,
    revoke: Option<&FactorRevocation>,
) -> Result<(), StoreError> {
    match revoke {
        Some(_) => users::lock(tx, user, "FOR UPDATE").await,
        None => Ok(()),
    }
}

async fn revoke_in(
    tx: &mut Transaction<'_, Postgres>,
    user: &UserId,
    revoke: Option<&FactorRevocation>,
) -> Result<u64, StoreError> {
    match revoke {
        Some(r) => users::terminate_sessions(tx, user, r.except.as_ref(), &r.revocation).await,
        None => Ok(0),
    }
}

/// The record of a code's check (see `Store::record_factor_check`) as one statement: one round
/// trip, one implicit transaction. `gate` locks the user's row, so parallel checks of one user
/// run one after the other, and under READ COMMITTED it reads the row as the check before it
/// left it. Every spend finds its row through `admitted`, so it runs after the gate (the lock
/// order of the module header) and only when the gate let the check through; at most one of
/// the three applies, by the attempt's kind. `counted` clears or adds to the failures.
///
/// Parameters: user, limit, stale-before, attempt kind (`totp`, `recovery`, `otp`, `failed`),
/// TOTP step, code hash, challenge session, challenge kind, now. Answers the user's failures
/// and state as the gate read them, and, when the check was let through, the failures after
/// it and whether it passed; no row when there is no such user.
const RECORD_CHECK: &str = "\
    WITH gate AS ( \
        SELECT id, state, failed_password_attempts, state = 'active' AND ($2 = 0 OR \
            failed_password_attempts + CASE WHEN password_checks_pending_since < $3 THEN 0 \
            ELSE password_checks_pending END < $2) AS open \
        FROM users WHERE id = $1 FOR NO KEY UPDATE), \
    admitted AS (SELECT id FROM gate WHERE open), \
    step AS ( \
        UPDATE user_factors SET last_step = $5 \
        WHERE $4 = 'totp' AND user_id = (SELECT id FROM admitted) AND kind = 'totp' \
            AND state = 'ready' AND (last_step IS NULL OR last_step < $5) \
        RETURNING 1), \
    code AS ( \
        UPDATE recovery_codes SET used_at = $9 \
        WHERE $4 = 'recovery' AND user_id = (SELECT id FROM admitted) AND code_hash = $6 \
            AND used_at IS NULL \
        RETURNING 1), \
    challenge AS ( \
        DELETE FROM otp_challenges \
        WHERE $4 = 'otp' AND session_id = $7 AND kind = $8 \
            AND user_id = (SELECT id FROM admitted) AND code_hash = $6 \
        RETURNING 1), \
    spent AS ( \
        SELECT EXISTS (SELECT 1 FROM step UNION ALL SELECT 1 FROM code \
            UNION ALL SELECT 1 FROM challenge) AS passed), \
    counted AS ( \
        UPDATE users u SET \
            version = u.version + CASE WHEN spent.passed AND u.failed_password_attempts = 0 \
                THEN 0 ELSE 1 END, \
            failed_password_attempts = CASE WHEN spent.passed THEN 0 \
                ELSE u.failed_password_attempts + 1 END \
        FROM spent WHERE u.id = (SELECT id FROM admitted) \
        RETURNING u.failed_password_attempts, spent.passed) \
    SELECT g.failed_password_attempts, g.state, c.failed_password_attempts, c.passed \
    FROM gate g LEFT JOIN counted c ON true";

/// The statement recording a check of a code, bound (see `RECORD_CHECK`).
pub fn record_check<'q>(
    user: &'q UserId,
    attempt: &'q FactorAttempt,
    max_failures: u32,
    now: Time,
    stale_before: Time,
) -> PgQuery<'q> {
    let (kind, step, hash, session, challenge_kind) = match attempt {
        FactorAttempt::TotpStep(step) => ("totp", Some(*step), None, None, None),
        FactorAttempt::RecoveryCode(hash) => ("recovery", None, Some(hash.as_slice()), None, None),
        FactorAttempt::OtpCode {
            session,
            kind,
            hash,
        } => (
            "otp",
            None,
            Some(hash.as_slice()),
            Some(session.as_str()),
            Some(kind.as_str()),
        ),
        FactorAttempt::Failed => ("failed", None, None, None, None),
    };
    sqlx::query(RECORD_CHECK)
        .bind(user.as_str())
        .bind(i64::from(max_failures))
        .bind(stale_before.unix_micros())
        .bind(kind)
        .bind(step)
        .bind(hash)
        .bind(session)
        .bind(challenge_kind)
        .bind(now.unix_micros())
}

/// The outcome a row of `RECORD_CHECK` tells.
pub fn recorded(row: &PgRow, max_failures: u32) -> Result<FactorCheckOutcome, StoreError> {
    let after: Option<i64> = row.try_get(2).map_err(classify)?;
    let passed: Option<bool> = row.try_get(3).map_err(classify)?;
    Ok(match (after, passed) {
        (_, Some(true)) => FactorCheckOutcome::Passed,
        (Some(count), _) => FactorCheckOutcome::Failed {
            failures: failures(count),
        },
        (None, _) => factor_refusal(
            Some((
                row.try_get(0).map_err(classify)?,
                row.try_get(1).map_err(classify)?,
            )),
            max_failures,
        ),
    })
}

pub async fn contacts(
    pool: &PgPool,
    user: &UserId,
) -> Result<Vec<crate::store::Contact>, StoreError> {
    let rows = sqlx::query(
        "SELECT user_id, kind, address, verified_at FROM user_contacts WHERE user_id = $1 \
         ORDER BY kind",
    )
    .bind(user.as_str())
    .fetch_all(pool)
    .await
    .map_err(classify)?;
    rows.iter()
        .map(crate::store::factors::contact_from_row)
        .collect()
}

pub async fn save_contact(
    tx: &mut Transaction<'_, Postgres>,
    c: &crate::store::Contact,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO user_contacts (user_id, kind, address, verified_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id, kind) DO UPDATE SET address = excluded.address, \
         verified_at = excluded.verified_at",
    )
    .bind(c.user_id.as_str())
    .bind(c.kind.as_str())
    .bind(c.address.as_str())
    .bind(c.verified_at.map(Time::unix_micros))
    .execute(&mut **tx)
    .await
    .map_err(classify)?;
    Ok(())
}

pub async fn save_challenge(
    pool: &PgPool,
    c: &crate::store::OtpChallenge,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO otp_challenges (session_id, kind, user_id, code_hash, expires_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (session_id, kind) DO UPDATE SET \
         user_id = excluded.user_id, code_hash = excluded.code_hash, \
         expires_at = excluded.expires_at",
    )
    .bind(c.session_id.as_str())
    .bind(c.kind.as_str())
    .bind(c.user_id.as_str())
    .bind(c.code_hash.as_slice())
    .bind(c.expires_at.unix_micros())
    .execute(pool)
    .await
    .map_err(classify)?;
    Ok(())
}

pub async fn challenge(
    pool: &PgPool,
    session: &crate::domain::SessionId,
    kind: FactorKind,
) -> Result<Option<crate::store::OtpChallenge>, StoreError> {
    let row = sqlx::query(
        "SELECT session_id, kind, user_id, code_hash, expires_at FROM otp_challenges \
         WHERE session_id = $1 AND kind = $2",
    )
    .bind(session.as_str())
    .bind(kind.as_str())
    .fetch_optional(pool)
    .await
    .map_err(classify)?;
    row.as_ref()
        .map(crate::store::factors::challenge_from_row)
        .transpose()
}
