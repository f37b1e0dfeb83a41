//! The PostgreSQL statements of passkeys: credentials, pending registrations, session
//! challenges. Writes that touch two rows run in one transaction.

use std::sync::LazyLock;

use sqlx::{PgPool, Postgres, Transaction};

use super::{classify, users};
use crate::domain::{SessionId, Time, UserId};
use crate::store::StoreError;
use crate::store::factors::FactorRevocation;
use crate::store::passkeys::{
    PASSKEY_CHECK_COLUMNS, PASSKEY_COLUMNS, PasskeyChallenge, PasskeyCheck, PasskeyUse,
    PendingPasskey, StoredPasskey, check_from_row, passkey_from_row, pending_from_row,
};

static PASSKEYS_OF_USER: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE user_id = $1 ORDER BY created_at, id")
});

pub async fn of_user(pool: &PgPool, user: &UserId) -> Result<Vec<StoredPasskey>, StoreError> {
    let rows = sqlx::query(&PASSKEYS_OF_USER)
        .bind(user.as_str())
        .fetch_all(pool)
        .await
        .map_err(classify)?;
    rows.iter().map(passkey_from_row).collect()
}

pub async fn begin_registration(
    tx: &mut Transaction<'_, Postgres>,
    p: &PendingPasskey,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM passkey_registrations WHERE user_id = $1")
        .bind(p.user_id.as_str())
        .execute(&mut **tx)
        .await
        .map_err(classify)?;
    sqlx::query(
        "INSERT INTO passkey_registrations (id, user_id, state, rp_id, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&p.id)
    .bind(p.user_id.as_str())
    .bind(&p.state)
    .bind(&p.rp_id)
    .bind(p.created_at.unix_micros())
    .execute(&mut **tx)
    .await
    .map_err(classify)?;
    Ok(())
}

pub async fn registration(
    pool: &PgPool,
    user: &UserId,
    id: &str,
) -> Result<Option<PendingPasskey>, StoreError> {
    let row = sqlx::query(
        "SELECT id, user_id, state, rp_id, created_at FROM passkey_registrations \
         WHERE user_id = $1 AND id = $2",
    )
    .bind(user.as_str())
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(classify)?;
    row.as_ref().map(pending_from_row).transpose()
}

/// Stores a verified passkey in place of its pending registration; `None` (nothing
/// written) when the registration was no longer pending.
pub async fn complete_registration(
    tx: &mut Transaction<'_, Postgres>,
    p: &StoredPasskey,
    revoke: Option<&FactorRevocation>,
) -> Result<Option<u64>, StoreError> {
    let pending = sqlx::query("DELETE FROM passkey_registrations WHERE id = $1 AND user_id = $2")
        .bind(&p.id)
        .bind(p.user_id.as_str())
        .execute(&mut **tx)
        .await
        .map_err(classify)?;
    if pending.rows_affected() == 0 {
        return Ok(None);
    }
    sqlx::query(
        "INSERT INTO passkeys (id, user_id, credential_id, credential, public_key, sign_count, \
         aaguid, name, user_verified, rp_id, created_at, last_used_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&p.id)
    .bind(p.user_id.as_str())
    .bind(&p.credential_id)
    .bind(&p.credential)
    .bind(&p.public_key)
    .bind(p.sign_count)
    .bind(&p.aaguid)
    .bind(&p.name)
    .bind(i64::from(p.user_verified))
    .bind(&p.rp_id)
    .bind(p.created_at.unix_micros())
    .bind(p.last_used_at.map(Time::unix_micros))
    .execute(&mut **tx)
    .await
    .map_err(classify)?;
    revoke_in(tx, &p.user_id, revoke).await.map(Some)
}

pub async fn remove(
    tx: &mut Transaction<'_, Postgres>,
    user: &UserId,
    id: &str,
    revoke: Option<&FactorRevocation>,
) -> Result<Option<u64>, StoreError> {
    let deleted = sqlx::query("DELETE FROM passkeys WHERE user_id = $1 AND id = $2")
        .bind(user.as_str())
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(classify)?;
    if deleted.rows_affected() == 0 {
        return Ok(None);
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

pub async fn set_challenge(pool: &PgPool, c: &PasskeyChallenge) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO passkey_challenges (session_id, user_id, state, rp_id, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (session_id) DO UPDATE SET \
         user_id = excluded.user_id, state = excluded.state, rp_id = excluded.rp_id, \
         created_at = excluded.created_at",
    )
    .bind(c.session_id.as_str())
    .bind(c.user_id.as_str())
    .bind(&c.state)
    .bind(&c.rp_id)
    .bind(c.created_at.unix_micros())
    .execute(pool)
    .await
    .map_err(classify)?;
    Ok(())
}

static CHECK: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM passkey_challenges c LEFT JOIN passkeys p ON p.credential_id = $2 \
         WHERE c.session_id = $1",
        *PASSKEY_CHECK_COLUMNS
    )
});

/// A session's challenge and the passkey of a credential id (see `Store::passkey_check`).
pub async fn check(
    pool: &PgPool,
    session: &SessionId,
    credential_id: &[u8],
) -> Result<Option<PasskeyCheck>, StoreError> {
    let row = sqlx::query(&CHECK)
        .bind(session.as_str())
        .bind(credential_id)
        .fetch_optional(pool)
        .await
        .map_err(classify)?;
    row.as_ref().map(check_from_row).transpose()
}

/// Consumes the challenge and moves the counter, both or neither; false when the challenge
/// was replaced or used, or the counter moved, since they were read.
pub async fn use_passkey(
    tx: &mut Transaction<'_, Postgres>,
    u: &PasskeyUse,
) -> Result<bool, StoreError> {
    let consumed =
        sqlx::query("DELETE FROM passkey_challenges WHERE session_id = $1 AND created_at = $2")
            .bind(u.session_id.as_str())
            .bind(u.challenge_created_at.unix_micros())
            .execute(&mut **tx)
            .await
            .map_err(classify)?;
    if consumed.rows_affected() != 1 {
        return Ok(false);
    }
    let counted = sqlx::query(
        "UPDATE passkeys SET sign_count = $1, last_used_at = $2 WHERE id = $3 AND sign_count = $4",
    )
    .bind(u.sign_count)
    .bind(u.at.unix_micros())
    .bind(&u.passkey_id)
    .bind(u.expected_sign_count)
    .execute(&mut **tx)
    .await
    .map_err(classify)?;
    Ok(counted.rows_affected() == 1)
}
