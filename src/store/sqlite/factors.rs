//! The SQLite statements of second factors: enrollments, recovery-code hashes, one-time-code
//! challenges, and the record of a code's check (the lockout gate, the TOTP replay guard, a
//! code spent, the failure count). Each function runs on a connection it is given, inside the
//! caller's transaction; none opens one.

use std::sync::LazyLock;

use rusqlite::{Connection, OptionalExtension, params};

use super::open::classify;
use super::statements::{all_rows, first_row};
use super::users::{self, RevocationRow};
use crate::store::factors::{FACTOR_COLUMNS, StoredFactor, factor_from_row};
use crate::store::rows::{factor_refusal, outcome_name};
use crate::store::{CheckOutcome, FactorAttempt, FactorCheckOutcome, StoreError};

static FACTORS_OF_USER: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {FACTOR_COLUMNS} FROM user_factors f WHERE f.user_id = ?1 ORDER BY f.kind")
});

/// A user's enrollments.
pub fn of_user(conn: &Connection, user: &str) -> Result<Vec<StoredFactor>, StoreError> {
    all_rows(conn, &FACTORS_OF_USER, [user], |row| factor_from_row(row))
}

/// A factor write, owned so it can travel to the writer.
pub struct FactorWrite {
    pub factor: StoredFactor,
    pub codes: Option<Vec<Vec<u8>>>,
    pub revocation: Option<RevocationRow>,
}

impl FactorWrite {
    pub fn apply(&self, conn: &Connection) -> Result<u64, StoreError> {
        let f = &self.factor;
        conn.prepare_cached(
            "INSERT INTO user_factors (user_id, kind, state, secret, last_step, created_at, \
             verified_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (user_id, kind) DO \
             UPDATE SET state = excluded.state, secret = excluded.secret, \
             last_step = excluded.last_step, created_at = excluded.created_at, \
             verified_at = excluded.verified_at",
        )
        .and_then(|mut st| {
            st.execute(params![
                f.user_id.as_str(),
                f.kind.as_str(),
                f.state.as_str(),
                f.secret,
                f.last_step,
                f.created_at.unix_micros(),
                f.verified_at.map(|t| t.unix_micros()),
            ])
        })
        .map_err(classify)?;
        if let Some(codes) = &self.codes {
            conn.prepare_cached("DELETE FROM recovery_codes WHERE user_id = ?1")
                .and_then(|mut st| st.execute([f.user_id.as_str()]))
                .map_err(classify)?;
            let mut insert = conn
                .prepare_cached("INSERT INTO recovery_codes (user_id, code_hash) VALUES (?1, ?2)")
                .map_err(classify)?;
            for hash in codes {
                insert
                    .execute(params![f.user_id.as_str(), hash])
                    .map_err(classify)?;
            }
        }
        self.revocation.as_ref().map_or(Ok(0), |r| r.apply(conn))
    }
}

/// Deletes one enrollment and its codes; `None` when there was none.
pub fn remove(
    conn: &Connection,
    user: &str,
    kind: &str,
    revocation: Option<&RevocationRow>,
) -> Result<Option<u64>, StoreError> {
    let deleted = conn
        .prepare_cached("DELETE FROM user_factors WHERE user_id = ?1 AND kind = ?2")
        .and_then(|mut st| st.execute([user, kind]))
        .map_err(classify)?;
    if deleted == 0 {
        return Ok(None);
    }
    if kind == crate::domain::FactorKind::RecoveryCodes.as_str() {
        conn.prepare_cached("DELETE FROM recovery_codes WHERE user_id = ?1")
            .and_then(|mut st| st.execute([user]))
            .map_err(classify)?;
    }
    revocation.map_or(Ok(0), |r| r.apply(conn)).map(Some)
}

/// Records a check of a code (see `Store::record_factor_check`). The writer is the only
/// writer, so what the gate reads stays true until the count is written: parallel checks of
/// one user run one after the other, each seeing the count the one before it left.
pub fn record_check(
    conn: &Connection,
    user: &str,
    attempt: &FactorAttempt,
    max_failures: u32,
    now: i64,
    stale_before: i64,
) -> Result<FactorCheckOutcome, StoreError> {
    // The condition `users::begin_check` grants a password check under.
    let gate: Option<(i64, String, bool)> = conn
        .prepare_cached(
            "SELECT failed_password_attempts, state, state = 'active' AND (?2 = 0 OR \
                 failed_password_attempts + CASE WHEN password_checks_pending_since < ?3 \
                 THEN 0 ELSE password_checks_pending END < ?2) \
             FROM users WHERE id = ?1",
        )
        .and_then(|mut st| {
            st.query_row(params![user, max_failures, stale_before], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .optional()
        })
        .map_err(classify)?;
    match gate {
        Some((_, _, true)) => {}
        refused => {
            return Ok(factor_refusal(
                refused.map(|(failures, state, _)| (failures, state)),
                max_failures,
            ));
        }
    }
    let passed = match attempt {
        FactorAttempt::TotpStep(step) => accept_step(conn, user, *step)?,
        FactorAttempt::RecoveryCode(hash) => use_code(conn, user, hash, now)?,
        FactorAttempt::OtpCode {
            session,
            kind,
            hash,
        } => consume_challenge(conn, session.as_str(), kind.as_str(), user, hash)?,
        FactorAttempt::Failed => false,
    };
    // Never registered as in progress: the checks in progress stay as they are.
    let outcome = if passed {
        CheckOutcome::PassedUnregistered
    } else {
        CheckOutcome::FailedUnregistered
    };
    let failures = users::end_check(conn, user, outcome_name(outcome))?;
    Ok(if passed {
        FactorCheckOutcome::Passed
    } else {
        FactorCheckOutcome::Failed { failures }
    })
}

/// Moves the TOTP replay guard forward to `step`, if it is later and the TOTP is ready.
fn accept_step(conn: &Connection, user: &str, step: i64) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE user_factors SET last_step = ?1 WHERE user_id = ?2 AND kind = 'totp' \
             AND state = 'ready' AND (last_step IS NULL OR last_step < ?1)",
        )
        .and_then(|mut st| st.execute(params![step, user]))
        .map_err(classify)?;
    Ok(changed == 1)
}

/// Marks one code used if it still is unused.
fn use_code(conn: &Connection, user: &str, hash: &[u8], at: i64) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE recovery_codes SET used_at = ?1 WHERE user_id = ?2 AND code_hash = ?3 \
             AND used_at IS NULL",
        )
        .and_then(|mut st| st.execute(params![at, user, hash]))
        .map_err(classify)?;
    Ok(changed == 1)
}

/// Deletes the user's challenge if it still holds `hash`.
fn consume_challenge(
    conn: &Connection,
    session: &str,
    kind: &str,
    user: &str,
    hash: &[u8],
) -> Result<bool, StoreError> {
    let deleted = conn
        .prepare_cached(
            "DELETE FROM otp_challenges WHERE session_id = ?1 AND kind = ?2 AND user_id = ?3 \
             AND code_hash = ?4",
        )
        .and_then(|mut st| st.execute(params![session, kind, user, hash]))
        .map_err(classify)?;
    Ok(deleted == 1)
}

/// A user's contact addresses.
pub fn contacts(conn: &Connection, user: &str) -> Result<Vec<crate::store::Contact>, StoreError> {
    all_rows(
        conn,
        "SELECT user_id, kind, address, verified_at FROM user_contacts WHERE user_id = ?1 \
         ORDER BY kind",
        [user],
        |row| crate::store::factors::contact_from_row(row),
    )
}

/// Writes a contact address, replacing the user's one of its kind.
pub fn save_contact(conn: &Connection, c: &crate::store::Contact) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO user_contacts (user_id, kind, address, verified_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (user_id, kind) DO UPDATE SET address = excluded.address, \
         verified_at = excluded.verified_at",
    )
    .and_then(|mut st| {
        st.execute(params![
            c.user_id.as_str(),
            c.kind.as_str(),
            c.address,
            c.verified_at.map(|t| t.unix_micros()),
        ])
    })
    .map_err(classify)?;
    Ok(())
}

/// Writes a session's one-time-code challenge, replacing the earlier one of its kind.
pub fn save_challenge(conn: &Connection, c: &crate::store::OtpChallenge) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO otp_challenges (session_id, kind, user_id, code_hash, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (session_id, kind) DO UPDATE SET \
         user_id = excluded.user_id, code_hash = excluded.code_hash, \
         expires_at = excluded.expires_at",
    )
    .and_then(|mut st| {
        st.execute(params![
            c.session_id.as_str(),
            c.kind.as_str(),
            c.user_id.as_str(),
            c.code_hash,
            c.expires_at.unix_micros(),
        ])
    })
    .map_err(classify)?;
    Ok(())
}

/// A session's challenge of one kind.
pub fn challenge(
    conn: &Connection,
    session: &str,
    kind: &str,
) -> Result<Option<crate::store::OtpChallenge>, StoreError> {
    first_row(
        conn,
        "SELECT session_id, kind, user_id, code_hash, expires_at FROM otp_challenges \
         WHERE session_id = ?1 AND kind = ?2",
        [session, kind],
        |row| crate::store::factors::challenge_from_row(row),
    )
}
