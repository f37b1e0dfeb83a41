//! What the store keeps of passkeys: the registered credentials, the registrations waiting
//! for their answer, and the challenge each session was last given. The relying-party state
//! arrives serialised by the core; the store neither reads nor judges it.

use crate::domain::{SessionId, Time, UserId};

/// A registered passkey.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredPasskey {
    /// The id clients name (`passkeyId`).
    pub id: String,
    pub user_id: UserId,
    /// The authenticator's raw credential id.
    pub credential_id: Vec<u8>,
    /// What verifies an assertion, serialised by the core (public key, flags).
    pub credential: String,
    /// The COSE public key alone, serialised.
    pub public_key: String,
    /// The last signature counter an assertion carried.
    pub sign_count: i64,
    pub aaguid: Vec<u8>,
    pub name: String,
    /// Whether the authenticator verified the user at registration.
    pub user_verified: bool,
    pub rp_id: String,
    pub created_at: Time,
    pub last_used_at: Option<Time>,
}

impl std::fmt::Debug for StoredPasskey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredPasskey")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("sign_count", &self.sign_count)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A registration begun and not yet answered (one per user; a new one replaces it).
#[derive(Clone, PartialEq, Eq)]
pub struct PendingPasskey {
    pub id: String,
    pub user_id: UserId,
    /// The relying party's registration state (holds the challenge), serialised.
    pub state: String,
    pub rp_id: String,
    pub created_at: Time,
}

impl std::fmt::Debug for PendingPasskey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingPasskey")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// The WebAuthn challenge a session was given (one per session; a new one replaces it).
#[derive(Clone, PartialEq, Eq)]
pub struct PasskeyChallenge {
    pub session_id: SessionId,
    pub user_id: UserId,
    /// The relying party's authentication state (holds the challenge), serialised.
    pub state: String,
    pub rp_id: String,
    pub created_at: Time,
}

impl std::fmt::Debug for PasskeyChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasskeyChallenge")
            .field("session_id", &self.session_id)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// A passed assertion, written with the session that records it, all at once or not at all:
/// the user's counted check ends as passed, the session's challenge is consumed (only if it
/// is still the one answered) and the passkey's counter moves from `expected` to `sign_count`
/// (only if no other check moved it first).
#[derive(Clone, Debug)]
pub struct PasskeyUse {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub challenge_created_at: Time,
    pub passkey_id: String,
    pub expected_sign_count: i64,
    pub sign_count: i64,
    pub at: Time,
}

/// The columns of a passkey query, in this order. Both backends select them so.
pub const PASSKEY_COLUMNS: &str = "id, user_id, credential_id, credential, public_key, \
     sign_count, aaguid, name, user_verified, rp_id, created_at, last_used_at";

/// A row of [`PASSKEY_COLUMNS`].
pub fn passkey_from_row(
    row: &impl super::rows::Columns,
) -> Result<StoredPasskey, super::StoreError> {
    Ok(StoredPasskey {
        id: row.required_text(0)?,
        user_id: UserId::from_trusted(row.required_text(1)?),
        credential_id: row.blob(2)?.unwrap_or_default(),
        credential: row.required_text(3)?,
        public_key: row.required_text(4)?,
        sign_count: row.required_int(5)?,
        aaguid: row.blob(6)?.unwrap_or_default(),
        name: row.required_text(7)?,
        user_verified: row.required_int(8)? != 0,
        rp_id: row.required_text(9)?,
        created_at: Time::from_unix_micros(row.required_int(10)?),
        last_used_at: row.time(11)?,
    })
}

/// What a passkey check reads, in one query: the session's challenge and the passkey of the
/// presented credential id, if one is registered (to anyone: the core judges whose it is).
pub type PasskeyCheck = (PasskeyChallenge, Option<StoredPasskey>);

/// The columns of [`PasskeyCheck`]'s query, in this order: [`PASSKEY_COLUMNS`] of `p` (null
/// when no passkey has the credential id), then the challenge's of `c`. Both backends select
/// them so, from `passkey_challenges c LEFT JOIN passkeys p`.
pub static PASSKEY_CHECK_COLUMNS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let passkey: Vec<String> = PASSKEY_COLUMNS
        .split(", ")
        .map(|c| format!("p.{c}"))
        .collect();
    format!(
        "{}, c.session_id, c.user_id, c.state, c.rp_id, c.created_at",
        passkey.join(", ")
    )
});

/// A row of [`PASSKEY_CHECK_COLUMNS`].
pub fn check_from_row(row: &impl super::rows::Columns) -> Result<PasskeyCheck, super::StoreError> {
    let passkey = match row.text(0)? {
        Some(_) => Some(passkey_from_row(row)?),
        None => None,
    };
    Ok((challenge_from_row(&Shifted(row, 12))?, passkey))
}

/// The columns of a row from the `n`th on.
struct Shifted<'a, R>(&'a R, usize);

impl<R: super::rows::Columns> super::rows::Columns for Shifted<'_, R> {
    fn text(&self, i: usize) -> Result<Option<String>, super::StoreError> {
        self.0.text(i + self.1)
    }

    fn int(&self, i: usize) -> Result<Option<i64>, super::StoreError> {
        self.0.int(i + self.1)
    }

    fn blob(&self, i: usize) -> Result<Option<Vec<u8>>, super::StoreError> {
        self.0.blob(i + self.1)
    }
}

/// The columns of a pending registration or challenge: `id (or session id), user_id, state,
/// rp_id, created_at`.
pub fn pending_from_row(
    row: &impl super::rows::Columns,
) -> Result<PendingPasskey, super::StoreError> {
    Ok(PendingPasskey {
        id: row.required_text(0)?,
        user_id: UserId::from_trusted(row.required_text(1)?),
        state: row.required_text(2)?,
        rp_id: row.required_text(3)?,
        created_at: Time::from_unix_micros(row.required_int(4)?),
    })
}

/// A challenge row (same columns as [`pending_from_row`]).
pub fn challenge_from_row(
    row: &impl super::rows::Columns,
) -> Result<PasskeyChallenge, super::StoreError> {
    let pending = pending_from_row(row)?;
    Ok(PasskeyChallenge {
        session_id: SessionId::from_trusted(pending.id),
        user_id: pending.user_id,
        state: pending.state,
        rp_id: pending.rp_id,
        created_at: pending.created_at,
    })
}
