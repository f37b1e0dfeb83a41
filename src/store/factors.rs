//! What the store keeps of a user's second factors. Secrets arrive here already sealed (TOTP
//! seeds) or hashed (recovery codes): the store never sees them in clear, and the core alone
//! knows how to open or compare them.

use crate::domain::{EnrolledFactor, FactorKind, FactorState, Time, UserId};

/// One enrollment as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredFactor {
    pub user_id: UserId,
    pub kind: FactorKind,
    pub state: FactorState,
    /// The sealed seed (TOTP); `None` for kinds without one.
    pub secret: Option<Vec<u8>>,
    /// The last TOTP time step a check accepted.
    pub last_step: Option<i64>,
    pub created_at: Time,
    pub verified_at: Option<Time>,
    /// Recovery codes not used yet (read only; 0 for other kinds).
    pub remaining_codes: u32,
}

impl StoredFactor {
    /// The enrollment without its secret.
    pub fn shown(&self) -> EnrolledFactor {
        EnrolledFactor {
            user_id: self.user_id.clone(),
            kind: self.kind,
            state: self.state,
            created_at: self.created_at,
            verified_at: self.verified_at,
            remaining_codes: self.remaining_codes,
        }
    }
}

impl std::fmt::Debug for StoredFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredFactor")
            .field("user_id", &self.user_id)
            .field("kind", &self.kind)
            .field("state", &self.state)
            .field("last_step", &self.last_step)
            .finish_non_exhaustive()
    }
}

/// Sessions a factor change ends: all of the user's live sessions but `except`.
#[derive(Clone, Debug)]
pub struct FactorRevocation {
    pub except: Option<crate::domain::SessionId>,
    pub revocation: super::Revocation,
}

/// The columns of a factor query, in this order: `user_id, kind, state, secret, last_step,
/// created_at, verified_at, remaining codes`. Both backends select them so.
pub const FACTOR_COLUMNS: &str = "f.user_id, f.kind, f.state, f.secret, f.last_step, \
     f.created_at, f.verified_at, (SELECT COUNT(*) FROM recovery_codes r \
     WHERE r.user_id = f.user_id AND r.used_at IS NULL)";

/// A row of [`FACTOR_COLUMNS`].
pub fn factor_from_row(row: &impl super::rows::Columns) -> Result<StoredFactor, super::StoreError> {
    let unknown = |what: &str| super::StoreError::Internal(format!("unknown factor {what}").into());
    let kind = row.required_text(1)?;
    let state = row.required_text(2)?;
    Ok(StoredFactor {
        user_id: UserId::from_trusted(row.required_text(0)?),
        kind: FactorKind::parse(&kind).map_err(|_| unknown("kind"))?,
        state: FactorState::parse(&state).ok_or_else(|| unknown("state"))?,
        secret: row.blob(3)?,
        last_step: row.int(4)?,
        created_at: Time::from_unix_micros(row.required_int(5)?),
        verified_at: row.time(6)?,
        remaining_codes: u32::try_from(row.int(7)?.unwrap_or_default()).unwrap_or(u32::MAX),
    })
}

/// A contact address of a user, for one-time codes: kind `email` or `phone`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    pub user_id: UserId,
    pub kind: ContactKind,
    pub address: String,
    /// When the address was verified; codes go only to verified addresses.
    pub verified_at: Option<Time>,
}

/// The kinds of contact address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContactKind {
    Email,
    Phone,
}

impl ContactKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ContactKind::Email => "email",
            ContactKind::Phone => "phone",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "email" => Some(ContactKind::Email),
            "phone" => Some(ContactKind::Phone),
            _ => None,
        }
    }
}

/// The pending one-time-code challenge of a session: the code only as a keyed hash.
#[derive(Clone, PartialEq, Eq)]
pub struct OtpChallenge {
    pub session_id: crate::domain::SessionId,
    /// [`FactorKind::OtpSms`] or [`FactorKind::OtpEmail`].
    pub kind: FactorKind,
    pub user_id: UserId,
    pub code_hash: Vec<u8>,
    pub expires_at: Time,
}

impl std::fmt::Debug for OtpChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtpChallenge")
            .field("session_id", &self.session_id)
            .field("kind", &self.kind)
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A row of `SELECT user_id, kind, address, verified_at FROM user_contacts`.
pub fn contact_from_row(row: &impl super::rows::Columns) -> Result<Contact, super::StoreError> {
    let kind = row.required_text(1)?;
    Ok(Contact {
        user_id: UserId::from_trusted(row.required_text(0)?),
        kind: ContactKind::parse(&kind)
            .ok_or_else(|| super::StoreError::Internal("unknown contact kind".into()))?,
        address: row.required_text(2)?,
        verified_at: row.time(3)?,
    })
}

/// A row of `SELECT session_id, kind, user_id, code_hash, expires_at FROM otp_challenges`.
pub fn challenge_from_row(
    row: &impl super::rows::Columns,
) -> Result<OtpChallenge, super::StoreError> {
    let kind = row.required_text(1)?;
    Ok(OtpChallenge {
        session_id: crate::domain::SessionId::from_trusted(row.required_text(0)?),
        kind: FactorKind::parse(&kind)
            .map_err(|_| super::StoreError::Internal("unknown challenge kind".into()))?,
        user_id: UserId::from_trusted(row.required_text(2)?),
        code_hash: row.blob(3)?.unwrap_or_default(),
        expires_at: Time::from_unix_micros(row.required_int(4)?),
    })
}
