//! Recovery codes: a set of single-use codes, shown once when generated. Each code carries
//! 50 random bits (10 characters of a 32-letter alphabet, shown as `XXXXX-XXXXX`), so a fast
//! keyed hash is enough at rest: HMAC-SHA256 under a server secret shared by every replica.
//! A check hashes the code and marks the unused row with that hash used, in the one atomic
//! store write that also counts the check, so a code works once even under concurrent
//! checks. The lookup by keyed hash leaks nothing a guesser can use: without the key, no
//! timing tells how close a guess was.

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;

use super::super::Core;
use super::super::checks::CheckIds;
use super::FactorChange;
use crate::domain::{
    Error, FactorKind, FactorState, Permission, Principal, RecoveryCode, User, UserId, error_ids,
};
use crate::store::{FactorAttempt, StoredFactor};

/// Codes generated when the request names no count.
pub const DEFAULT_RECOVERY_CODES: u32 = 10;
/// The most codes one request may generate.
pub const MAX_RECOVERY_CODES: u32 = 50;

/// Digits 2 to 9 and the letters but I and O: no look-alikes of 0 and 1.
const ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
const CODE_LEN: usize = 10;

/// The secret recovery codes are hashed with, in the store's shared secrets.
const SECRET_NAME: &str = "recovery-codes";

fn new_code() -> String {
    let mut rng = rand::rngs::OsRng;
    let mut code = String::with_capacity(CODE_LEN + 1);
    for i in 0..CODE_LEN {
        if i == CODE_LEN / 2 {
            code.push('-');
        }
        code.push(char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]));
    }
    code
}

impl Core {
    async fn recovery_hash(&self, code: &str) -> Result<Vec<u8>, Error> {
        let key = self
            .recovery_key
            .get_or_try_init(|| self.store.secret(SECRET_NAME))
            .await?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(|e| {
            Error::internal(error_ids::FACTOR_KEY, std::io::Error::other(e.to_string()))
        })?;
        mac.update(code.as_bytes());
        Ok(mac.finalize().into_bytes().to_vec())
    }

    /// Replaces the user's recovery codes with `count` new ones (0: the default), returned
    /// this once; with `revoke`, ends the user's other sessions.
    pub async fn generate_recovery_codes(
        &self,
        principal: &Principal,
        user: &UserId,
        count: i64,
        revoke: bool,
    ) -> Result<(Vec<String>, FactorChange), Error> {
        let count = match count {
            0 => DEFAULT_RECOVERY_CODES,
            n if (1..=i64::from(MAX_RECOVERY_CODES)).contains(&n) => {
                u32::try_from(n).unwrap_or(DEFAULT_RECOVERY_CODES)
            }
            _ => {
                return Err(Error::invalid_argument(
                    error_ids::RECOVERY_COUNT_INVALID,
                    format!(
                        "count: between 1 and {MAX_RECOVERY_CODES} codes, or 0 for {DEFAULT_RECOVERY_CODES}"
                    ),
                ));
            }
        };
        let owner = self
            .factor_owner(principal, user, Permission::UserWrite)
            .await?;
        let codes: Vec<String> = (0..count).map(|_| new_code()).collect();
        let mut hashes = Vec::with_capacity(codes.len());
        for code in &codes {
            let normalized = RecoveryCode::parse(code.clone())?.normalized();
            hashes.push(self.recovery_hash(&normalized).await?);
        }
        let now = self.clock.now();
        let factor = StoredFactor {
            user_id: user.clone(),
            kind: FactorKind::RecoveryCodes,
            state: FactorState::Ready,
            secret: None,
            last_step: None,
            created_at: now,
            verified_at: Some(now),
            remaining_codes: count,
        };
        let revocation = self.factor_revocation(principal, revoke);
        let revoked = self
            .store
            .save_factor(&factor, Some(&hashes), revocation.as_ref())
            .await?;
        Ok((codes, self.factor_details(&owner, revoked)))
    }

    /// The session check: one of the user's unused recovery codes, which is then used up.
    /// Every failure counts toward the lockout limit.
    pub(in crate::core) async fn check_recovery_code(
        &self,
        user: &User,
        code: &RecoveryCode,
    ) -> Result<(), Error> {
        if self
            .enrollment(&user.id, FactorKind::RecoveryCodes)
            .await?
            .is_none()
        {
            return Err(Error::failed_precondition(
                error_ids::RECOVERY_NOT_SET,
                "the user has no recovery codes",
            ));
        }
        let hash = self.recovery_hash(&code.normalized()).await?;
        self.record_code_check(
            user,
            &FactorAttempt::RecoveryCode(hash),
            CheckIds::FACTOR,
            || Error::invalid_argument(error_ids::RECOVERY_INVALID, "Invalid recovery code"),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_ten_letters_of_the_alphabet_around_a_dash() {
        for _ in 0..100 {
            let code = new_code();
            assert_eq!(code.len(), CODE_LEN + 1);
            assert_eq!(code.as_bytes()[5], b'-');
            assert!(
                code.bytes()
                    .filter(|b| *b != b'-')
                    .all(|b| ALPHABET.contains(&b))
            );
        }
        assert_ne!(new_code(), new_code());
    }
}
