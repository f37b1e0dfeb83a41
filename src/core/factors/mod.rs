//! Second factors: enrolling them for a user, and checking them in a session.
//!
//! One submodule per kind of factor (`totp`, `recovery`, `otp` for codes by email or SMS,
//! with `otp_users` for the addresses they go to), each with its enrollment commands and its
//! session check; this module holds what they share: who may change a user's factors, the
//! sessions a change ends, the listing, and the secrets of the server (the key that seals
//! TOTP seeds, the key recovery codes are hashed with). A new kind is one more submodule and
//! one more [`FactorKind`]; passkeys, of which a user has many, bring a table of their own
//! behind the same module shape.
//!
//! Every failed check of a factor counts toward the same lockout limit as a failed password,
//! in the store's check counters (see `checks`: a code's check is recorded with
//! [`Core::record_code_check`]).

mod otp;
mod otp_users;
mod passkey;
mod recovery;
mod seal;
mod totp;

use super::{Core, require, user_not_found};
use crate::domain::{
    Details, EnrolledFactor, Error, FactorKind, FactorState, Permission, Principal, User, UserId,
    error_ids,
};
use crate::store::{FactorRevocation, Revocation, StoredFactor};

pub use otp::{EmailDelivery, OtpChallenges, ReturnedCodes};
pub(super) use otp::{PreparedChallenges, otp_key};
pub use otp_users::NewContact;
pub use passkey::{
    CEREMONY_TIMEOUT, PasskeyAssertion, PasskeyAttestation, PasskeyChallengeRequest, PasskeyInfo,
    PasskeyRegistrationStart, PasskeySettings, UserVerification,
};
pub(super) use passkey::{ChallengeDraft, PasskeyPass, no_challenge, relying_party};
pub use recovery::{DEFAULT_RECOVERY_CODES, MAX_RECOVERY_CODES};
pub use seal::{FACTOR_KEY_FILE, SeedSealer, factor_key_fingerprint, load_or_create_factor_key};
pub use totp::{ImportedSeed, TotpEnrollment};

/// The kinds of authentication a user has set up, as `ListAuthenticationMethodTypes` names
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    Password,
    Passkey,
    Totp,
    RecoveryCode,
    OtpSms,
    OtpEmail,
}

/// What a change of a user's factors answers: the user's details after it.
#[derive(Clone, Debug)]
pub struct FactorChange {
    pub details: Details,
    /// Sessions the change ended.
    pub revoked: u64,
}

impl Core {
    /// The user whose factors `principal` wants to change: the user itself, or a caller with
    /// `permission` (`user.write` to change, `user.read` to read).
    pub(super) async fn factor_owner(
        &self,
        principal: &Principal,
        user: &UserId,
        permission: Permission,
    ) -> Result<User, Error> {
        if principal.user_id != user.as_str() {
            require(principal, permission)?;
        }
        self.store.user(user).await?.ok_or_else(user_not_found)
    }

    /// The sessions a factor change by `principal` ends: all of the user's but the caller's.
    fn factor_revocation(&self, principal: &Principal, revoke: bool) -> Option<FactorRevocation> {
        revoke.then(|| FactorRevocation {
            except: principal.session_id().cloned(),
            revocation: Revocation {
                at: self.clock.now(),
                editor: principal.user_id.clone(),
                reason: crate::domain::TerminationReason::FactorsChanged.as_str(),
            },
        })
    }

    fn factor_details(&self, user: &User, revoked: u64) -> FactorChange {
        FactorChange {
            details: Details {
                sequence: user.version,
                change_date: Some(self.clock.now()),
                resource_owner: user.organization_id.clone(),
                creation_date: Some(user.created_at),
            },
            revoked,
        }
    }

    /// The user's enrollment of one kind, if any.
    async fn enrollment(
        &self,
        user: &UserId,
        kind: FactorKind,
    ) -> Result<Option<StoredFactor>, Error> {
        Ok(self
            .store
            .user_factors(user)
            .await?
            .into_iter()
            .find(|f| f.kind == kind))
    }

    /// A user's factor enrollments, without secrets (`user.read`, or the user itself).
    pub async fn user_factors(
        &self,
        principal: &Principal,
        user: &UserId,
    ) -> Result<Vec<EnrolledFactor>, Error> {
        self.factor_owner(principal, user, Permission::UserRead)
            .await?;
        Ok(self
            .store
            .user_factors(user)
            .await?
            .iter()
            .map(StoredFactor::shown)
            .collect())
    }

    /// Removes a user's enrollment of one kind (`user.write`, or the user itself); with
    /// `revoke`, ends the user's other sessions.
    pub async fn remove_factor(
        &self,
        principal: &Principal,
        user: &UserId,
        kind: FactorKind,
        revoke: bool,
    ) -> Result<FactorChange, Error> {
        let owner = self
            .factor_owner(principal, user, Permission::UserWrite)
            .await?;
        let revocation = self.factor_revocation(principal, revoke);
        match self
            .store
            .remove_factor(user, kind, revocation.as_ref())
            .await?
        {
            Some(revoked) => Ok(self.factor_details(&owner, revoked)),
            None => Err(match kind {
                FactorKind::Totp => {
                    Error::not_found(error_ids::TOTP_NOT_FOUND, "TOTP is not set up for the user")
                }
                FactorKind::RecoveryCodes => Error::not_found(
                    error_ids::RECOVERY_NOT_SET,
                    "the user has no recovery codes",
                ),
                FactorKind::OtpSms => Error::not_found(
                    error_ids::OTP_SMS_NOT_FOUND,
                    "OTP SMS is not set up for the user",
                ),
                FactorKind::OtpEmail => Error::not_found(
                    error_ids::OTP_EMAIL_NOT_FOUND,
                    "OTP email is not set up for the user",
                ),
            }),
        }
    }

    /// The kinds of authentication the user can use: ready factors, then the password. An
    /// unknown user has none (`user.read`, or the user itself).
    pub async fn auth_methods(
        &self,
        principal: &Principal,
        user: &UserId,
    ) -> Result<Vec<AuthMethod>, Error> {
        if principal.user_id != user.as_str() {
            require(principal, Permission::UserRead)?;
        }
        let Some(found) = self.store.user(user).await? else {
            return Ok(Vec::new());
        };
        let mut methods: Vec<AuthMethod> = self
            .store
            .user_factors(user)
            .await?
            .iter()
            .filter(|f| f.state == FactorState::Ready)
            .map(|f| match f.kind {
                FactorKind::Totp => AuthMethod::Totp,
                FactorKind::RecoveryCodes => AuthMethod::RecoveryCode,
                FactorKind::OtpSms => AuthMethod::OtpSms,
                FactorKind::OtpEmail => AuthMethod::OtpEmail,
            })
            .collect();
        if !self.store.passkeys(user).await?.is_empty() {
            methods.push(AuthMethod::Passkey);
        }
        if found.password_hash.is_some() {
            methods.push(AuthMethod::Password);
        }
        Ok(methods)
    }
}
