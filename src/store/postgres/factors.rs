//! The PostgreSQL statements of second factors: enrollments, recovery-code hashes, the TOTP
//! replay guard. Writes that end sessions run in one transaction with the revocation.

use std::sync::LazyLock;

use sqlx::{PgPool, Postgres, Transaction};

use super::{classify, users};
use crate::domain::{FactorKind, Time, UserId};
use crate::store::StoreError;
use crate::store::factors::{FACTOR_COLUMNS, FactorRevocation, StoredFactor, factor_from_row};

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

pub async fn accept_step(pool: &PgPool, user: &UserId, step: i64) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE user_factors SET last_step = $1 WHERE user_id = $2 AND kind = 'totp' \
         AND state = 'ready' AND (last_step IS NULL OR last_step < $1)",
    )
    .bind(step)
    .bind(user.as_str())
    .execute(pool)
    .await
    .map_err(classify)?;
    Ok(done.rows_affected() == 1)
}

pub async fn use_code(
    pool: &PgPool,
    user: &UserId,
    hash: &[u8],
    at: Time,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 \
         AND used_at IS NULL",
    )
    .bind(at.unix_micros())
    .bind(user.as_str())
    .bind(hash)
    .execute(pool)
    .await
    .map_err(classify)?;
    Ok(done.rows_affected() == 1)
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

pub async fn consume_challenge(
    pool: &PgPool,
    session: &crate::domain::SessionId,
    kind: FactorKind,
    hash: &[u8],
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "DELETE FROM otp_challenges WHERE session_id = $1 AND kind = $2 AND code_hash = $3",
    )
    .bind(session.as_str())
    .bind(kind.as_str())
    .bind(hash)
    .execute(pool)
    .await
    .map_err(classify)?;
    Ok(done.rows_affected() == 1)
}
