//! TOTP (RFC 6238: HMAC-SHA1, 6 digits, 30 s steps, one step of skew either way): enrolling a
//! seed and checking codes in a session. Seeds are sealed before they reach the store and are
//! shown once, at registration. A code is accepted once: the store keeps the last accepted
//! time step per user and only moves it forward, atomically, on every replica, in the same
//! write that counts the check toward the lockout limit.

use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Secret, TOTP};

use super::super::Core;
use super::super::checks::CheckIds;
use super::{FactorChange, SeedSealer};
use crate::domain::{
    Error, FactorKind, FactorState, Permission, Principal, TotpCode, User, UserId, error_ids,
};
use crate::store::{FactorAttempt, StoredFactor};

const DIGITS: usize = 6;
const STEP_SECONDS: u64 = 30;
const SEED_BYTES: usize = 20;

/// A started enrollment: what RegisterTOTP answers, shown once.
pub struct TotpEnrollment {
    /// `otpauth://totp/…` for an authenticator app.
    pub uri: String,
    /// The seed, base32 without padding.
    pub secret: String,
    pub change: FactorChange,
}

impl std::fmt::Debug for TotpEnrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrollment(***)")
    }
}

/// A TOTP seed a client already holds, parsed from base32 (padding and case do not matter;
/// at least 80 bits).
pub struct ImportedSeed(Vec<u8>);

impl ImportedSeed {
    pub fn parse(secret: &str) -> Result<Self, Error> {
        Secret::Encoded(secret.trim_end_matches('=').to_ascii_uppercase())
            .to_bytes()
            .ok()
            .filter(|seed| seed.len() >= 10)
            .map(Self)
            .ok_or_else(|| {
                Error::invalid_argument(
                    error_ids::REQUEST_INVALID,
                    "totpSecret: base32 text of at least 80 bits",
                )
            })
    }
}

impl ImportedSeed {
    pub(super) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for ImportedSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ImportedSeed(***)")
    }
}

/// The code of `seed` for one time step.
fn code_at(seed: &[u8], step: u64) -> String {
    TOTP::new_unchecked(Algorithm::SHA1, DIGITS, 1, STEP_SECONDS, seed.to_vec())
        .generate(step.saturating_mul(STEP_SECONDS))
}

/// The time step (of the one before, this one and the next) whose code is `code`. Every
/// candidate is compared, in constant time, whatever matched.
fn matching_step(seed: &[u8], code: &TotpCode, now_seconds: u64) -> Option<u64> {
    let current = now_seconds / STEP_SECONDS;
    let mut found = None;
    for step in [
        current.saturating_sub(1),
        current,
        current.saturating_add(1),
    ] {
        let expected = code_at(seed, step);
        if bool::from(expected.as_bytes().ct_eq(code.as_str().as_bytes())) && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// `value` percent-encoded for an otpauth label or query value.
fn encoded(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn uri(issuer: &str, account: &str, secret: &str) -> String {
    let issuer = encoded(issuer);
    format!(
        "otpauth://totp/{issuer}:{}?algorithm=SHA1&digits={DIGITS}&issuer={issuer}&period={STEP_SECONDS}&secret={secret}",
        encoded(account)
    )
}

fn base32(seed: &[u8]) -> String {
    match Secret::Raw(seed.to_vec()).to_encoded() {
        Secret::Encoded(text) => text,
        Secret::Raw(_) => String::new(),
    }
}

impl Core {
    pub(super) fn sealer(&self) -> Result<&SeedSealer, Error> {
        self.sealer.as_ref().ok_or_else(|| {
            Error::internal(
                error_ids::FACTOR_KEY,
                std::io::Error::other("no factor key is configured"),
            )
        })
    }

    fn now_seconds(&self) -> u64 {
        u64::try_from(self.clock.now().unix_micros() / 1_000_000).unwrap_or_default()
    }

    /// Starts (or restarts, while not yet verified) a TOTP enrollment with a fresh seed.
    pub async fn register_totp(
        &self,
        principal: &Principal,
        user: &UserId,
    ) -> Result<TotpEnrollment, Error> {
        let owner = self
            .factor_owner(principal, user, Permission::UserWrite)
            .await?;
        if let Some(existing) = self.enrollment(user, FactorKind::Totp).await?
            && existing.state == FactorState::Ready
        {
            return Err(Error::new(
                crate::domain::ErrorKind::AlreadyExists,
                error_ids::TOTP_ALREADY_READY,
                "TOTP is already set up for the user",
            ));
        }
        let mut seed = [0u8; SEED_BYTES];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        let factor = StoredFactor {
            user_id: user.clone(),
            kind: FactorKind::Totp,
            state: FactorState::Pending,
            secret: Some(self.sealer()?.seal(user, &seed)?),
            last_step: None,
            created_at: self.clock.now(),
            verified_at: None,
            remaining_codes: 0,
        };
        self.store.save_factor(&factor, None, None).await?;
        let secret = base32(&seed);
        Ok(TotpEnrollment {
            uri: uri(
                &self.settings.totp_issuer,
                owner.login_name.as_str(),
                &secret,
            ),
            secret,
            change: self.factor_details(&owner, 0),
        })
    }

    /// Completes a TOTP enrollment with a code of the new seed; with `revoke`, ends the
    /// user's other sessions. A wrong code is refused and not counted.
    pub async fn verify_totp_registration(
        &self,
        principal: &Principal,
        user: &UserId,
        code: &TotpCode,
        revoke: bool,
    ) -> Result<FactorChange, Error> {
        let owner = self
            .factor_owner(principal, user, Permission::UserWrite)
            .await?;
        let Some(mut factor) = self.enrollment(user, FactorKind::Totp).await? else {
            return Err(Error::not_found(
                error_ids::TOTP_NOT_READY,
                "TOTP is not set up for the user",
            ));
        };
        if factor.state == FactorState::Ready {
            return Err(Error::failed_precondition(
                error_ids::TOTP_ALREADY_VERIFIED,
                "TOTP is already verified",
            ));
        }
        let seed = self.open_seed(&factor)?;
        let Some(step) = matching_step(&seed, code, self.now_seconds()) else {
            return Err(totp_invalid());
        };
        factor.state = FactorState::Ready;
        factor.verified_at = Some(self.clock.now());
        // The code that verified the enrollment is spent: it cannot also pass a check.
        factor.last_step = Some(i64::try_from(step).unwrap_or(i64::MAX));
        let revocation = self.factor_revocation(principal, revoke);
        let revoked = self
            .store
            .save_factor(&factor, None, revocation.as_ref())
            .await?;
        Ok(self.factor_details(&owner, revoked))
    }

    fn open_seed(&self, factor: &StoredFactor) -> Result<Vec<u8>, Error> {
        let sealed = factor.secret.as_deref().unwrap_or_default();
        self.sealer()?.open(&factor.user_id, sealed)
    }

    /// The session check: a code of the user's verified TOTP, not accepted before. The code
    /// is compared with those of the steps in the skew window first; the step it matched is
    /// spent in the same store write that counts the check. Every failure counts toward the
    /// lockout limit.
    pub(in crate::core) async fn check_totp(
        &self,
        user: &User,
        code: &TotpCode,
    ) -> Result<(), Error> {
        let factor = match self.enrollment(&user.id, FactorKind::Totp).await? {
            Some(f) if f.state == FactorState::Ready => f,
            _ => {
                return Err(Error::failed_precondition(
                    error_ids::TOTP_NOT_READY,
                    "TOTP is not set up for the user",
                ));
            }
        };
        let seed = self.open_seed(&factor)?;
        // Accepted only if no check took this step (or a later one) already.
        let attempt = match matching_step(&seed, code, self.now_seconds()) {
            Some(step) => FactorAttempt::TotpStep(i64::try_from(step).unwrap_or(i64::MAX)),
            None => FactorAttempt::Failed,
        };
        self.record_code_check(user, &attempt, CheckIds::FACTOR, totp_invalid)
            .await
    }
}

fn totp_invalid() -> Error {
    Error::invalid_argument(error_ids::TOTP_INVALID, "Invalid code")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238, appendix B: the SHA-1 seed "12345678901234567890", last six digits.
    #[test]
    fn codes_follow_the_rfc_test_vectors() {
        let seed = b"12345678901234567890";
        assert_eq!(code_at(seed, 59 / 30), "287082");
        assert_eq!(code_at(seed, 1_111_111_109 / 30), "081804");
        assert_eq!(code_at(seed, 1_234_567_890 / 30), "005924");
        assert_eq!(code_at(seed, 2_000_000_000 / 30), "279037");
    }

    #[test]
    fn one_step_of_skew_either_way_and_no_more() {
        let seed = b"12345678901234567890";
        let now: u64 = 1_111_111_109;
        let step = now / 30;
        for (offset, accepted) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
            let at = step.saturating_add_signed(offset);
            let code = TotpCode::parse(code_at(seed, at)).expect("six digits");
            assert_eq!(
                matching_step(seed, &code, now),
                accepted.then_some(at),
                "offset {offset}"
            );
        }
    }

    #[test]
    fn the_uri_names_issuer_account_and_parameters() {
        let uri = uri("sessiond", "ada lovelace", "ABC");
        assert_eq!(
            uri,
            "otpauth://totp/sessiond:ada%20lovelace?algorithm=SHA1&digits=6&issuer=sessiond&period=30&secret=ABC"
        );
        assert_eq!(base32(&[0u8; 20]).len(), 32);
    }
}
