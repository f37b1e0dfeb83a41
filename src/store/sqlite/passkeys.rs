//! The SQLite statements of passkeys: credentials, pending registrations, session
//! challenges. Each function runs on a connection it is given, inside the caller's
//! transaction (the writer's savepoint: an error rolls the whole function back).

use std::sync::LazyLock;

use rusqlite::{Connection, OptionalExtension, params};

use super::open::classify;
use super::statements::{all_rows, first_row};
use super::users::RevocationRow;
use crate::store::StoreError;
use crate::store::passkeys::{
    PASSKEY_CHECK_COLUMNS, PASSKEY_COLUMNS, PasskeyChallenge, PasskeyCheck, PasskeyUse,
    PendingPasskey, StoredPasskey, check_from_row, passkey_from_row, pending_from_row,
};

static PASSKEYS_OF_USER: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE user_id = ?1 ORDER BY created_at, id")
});

pub fn of_user(conn: &Connection, user: &str) -> Result<Vec<StoredPasskey>, StoreError> {
    all_rows(conn, &PASSKEYS_OF_USER, [user], |row| passkey_from_row(row))
}

/// Replaces the user's pending registration.
pub fn begin_registration(conn: &Connection, p: &PendingPasskey) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM passkey_registrations WHERE user_id = ?1")
        .and_then(|mut st| st.execute([p.user_id.as_str()]))
        .map_err(classify)?;
    conn.prepare_cached(
        "INSERT INTO passkey_registrations (id, user_id, state, rp_id, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut st| {
        st.execute(params![
            p.id,
            p.user_id.as_str(),
            p.state,
            p.rp_id,
            p.created_at.unix_micros()
        ])
    })
    .map_err(classify)?;
    Ok(())
}

pub fn registration(
    conn: &Connection,
    user: &str,
    id: &str,
) -> Result<Option<PendingPasskey>, StoreError> {
    first_row(
        conn,
        "SELECT id, user_id, state, rp_id, created_at FROM passkey_registrations \
         WHERE user_id = ?1 AND id = ?2",
        [user, id],
        |row| pending_from_row(row),
    )
}

/// Stores a verified passkey in place of its pending registration; `None` when the
/// registration was no longer pending (another request completed it).
pub fn complete_registration(
    conn: &Connection,
    p: &StoredPasskey,
    revocation: Option<&RevocationRow>,
) -> Result<Option<u64>, StoreError> {
    let pending = conn
        .prepare_cached("DELETE FROM passkey_registrations WHERE id = ?1 AND user_id = ?2")
        .and_then(|mut st| st.execute([p.id.as_str(), p.user_id.as_str()]))
        .map_err(classify)?;
    if pending == 0 {
        return Ok(None);
    }
    conn.prepare_cached(
        "INSERT INTO passkeys (id, user_id, credential_id, credential, public_key, sign_count, \
         aaguid, name, user_verified, rp_id, created_at, last_used_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )
    .and_then(|mut st| {
        st.execute(params![
            p.id,
            p.user_id.as_str(),
            p.credential_id,
            p.credential,
            p.public_key,
            p.sign_count,
            p.aaguid,
            p.name,
            i64::from(p.user_verified),
            p.rp_id,
            p.created_at.unix_micros(),
            p.last_used_at.map(|t| t.unix_micros()),
        ])
    })
    .map_err(classify)?;
    revocation.map_or(Ok(0), |r| r.apply(conn)).map(Some)
}

/// Deletes one passkey; `None` when the user has none of that id.
pub fn remove(
    conn: &Connection,
    user: &str,
    id: &str,
    revocation: Option<&RevocationRow>,
) -> Result<Option<u64>, StoreError> {
    let deleted = conn
        .prepare_cached("DELETE FROM passkeys WHERE user_id = ?1 AND id = ?2")
        .and_then(|mut st| st.execute([user, id]))
        .map_err(classify)?;
    if deleted == 0 {
        return Ok(None);
    }
    revocation.map_or(Ok(0), |r| r.apply(conn)).map(Some)
}

/// Gives a session a challenge, replacing its earlier one.
pub fn set_challenge(conn: &Connection, c: &PasskeyChallenge) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO passkey_challenges (session_id, user_id, state, rp_id, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (session_id) DO UPDATE SET \
         user_id = excluded.user_id, state = excluded.state, rp_id = excluded.rp_id, \
         created_at = excluded.created_at",
    )
    .and_then(|mut st| {
        st.execute(params![
            c.session_id.as_str(),
            c.user_id.as_str(),
            c.state,
            c.rp_id,
            c.created_at.unix_micros()
        ])
    })
    .map_err(classify)?;
    Ok(())
}

static CHECK: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM passkey_challenges c LEFT JOIN passkeys p ON p.credential_id = ?2 \
         WHERE c.session_id = ?1",
        *PASSKEY_CHECK_COLUMNS
    )
});

/// A session's challenge and the passkey of a credential id (see `Store::passkey_check`).
pub fn check(
    conn: &Connection,
    session: &str,
    credential_id: &[u8],
) -> Result<Option<PasskeyCheck>, StoreError> {
    conn.prepare_cached(&CHECK)
        .and_then(|mut st| {
            st.query_row(params![session, credential_id], |row| {
                Ok(check_from_row(row))
            })
            .optional()
        })
        .map_err(classify)?
        .transpose()
}

/// Whether the challenge a passed assertion answered is still the session's, and the
/// passkey's counter still the one the check read.
pub fn use_is_current(conn: &Connection, u: &PasskeyUse) -> Result<bool, StoreError> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM passkey_challenges WHERE session_id = ?1 \
         AND created_at = ?2) AND EXISTS (SELECT 1 FROM passkeys WHERE id = ?3 \
         AND sign_count = ?4)",
    )
    .and_then(|mut st| {
        st.query_row(
            params![
                u.session_id.as_str(),
                u.challenge_created_at.unix_micros(),
                u.passkey_id,
                u.expected_sign_count
            ],
            |row| row.get(0),
        )
    })
    .map_err(classify)
}

/// Consumes the challenge and moves the counter, both or neither: `Conflict` (rolled back)
/// when the challenge was replaced or used, or the counter moved, since it was read.
pub fn use_passkey(conn: &Connection, u: &PasskeyUse) -> Result<(), StoreError> {
    let consumed = conn
        .prepare_cached("DELETE FROM passkey_challenges WHERE session_id = ?1 AND created_at = ?2")
        .and_then(|mut st| {
            st.execute(params![
                u.session_id.as_str(),
                u.challenge_created_at.unix_micros()
            ])
        })
        .map_err(classify)?;
    let counted = conn
        .prepare_cached(
            "UPDATE passkeys SET sign_count = ?1, last_used_at = ?2 \
             WHERE id = ?3 AND sign_count = ?4",
        )
        .and_then(|mut st| {
            st.execute(params![
                u.sign_count,
                u.at.unix_micros(),
                u.passkey_id,
                u.expected_sign_count
            ])
        })
        .map_err(classify)?;
    if consumed == 1 && counted == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict)
    }
}
