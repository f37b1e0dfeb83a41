//! The checks of a CreateSession or SetSession: which user, whether the password matches,
//! whether a second factor (passkey, TOTP, recovery code, one-time code: see `factors`)
//! passes, and what the verified factors do to a session. Checks run in ZITADEL's order
//! (user, password, webAuthN, totp, recoveryCode, otpSms, otpEmail) and the first failure
//! stops the request. Every other rule of a session's life is in `sessions`.
//!
//! Lockout: every check that can fail counts toward one limit per user, in the store. How a
//! check is held to it depends on what the check costs:
//! - a password is registered in the store as a check in progress before it is hashed:
//!   argon2 is slow enough for many guesses to be in flight at once, and registering first
//!   bounds them (and the hashing they cost) by the limit;
//! - a code (TOTP, recovery code, one-time code) is cheap to verify, so it is verified first,
//!   as far as it can be without the store, and then recorded in one store write
//!   ([`Core::record_code_check`]) that refuses a locked user, spends what a pass uses up and
//!   counts the outcome. The store runs the records of one user one after the other, so no
//!   more guesses than the limit are ever evaluated, and a code costs one write besides the
//!   session's;
//! - a passkey assertion, which no guess passes, is refused for a user locked as read for the
//!   request and counted when it fails; its pass is written with the session.

use super::{Core, retry_on_conflict, user_not_found};
use crate::domain::{
    Error, FactorKind, Factors, LoginName, OtpCode, Password, Principal, RecoveryCode, SessionId,
    Time, TotpCode, User, UserFactor, UserId, UserState, error_ids,
};
use crate::store::{CheckOutcome, FactorAttempt, FactorCheckOutcome, PasswordCheck};

/// How the client names the user to check.
#[derive(Clone, Debug)]
pub enum UserLookup {
    Id(UserId),
    LoginName(LoginName),
}

/// Factors to verify in a Create or Set.
#[derive(Clone, Debug, Default)]
pub struct Checks {
    pub user: Option<UserLookup>,
    pub password: Option<Password>,
    pub totp: Option<TotpCode>,
    pub recovery_code: Option<RecoveryCode>,
    /// A WebAuthn assertion answering the session's challenge.
    pub web_auth_n: Option<super::PasskeyAssertion>,
    pub otp_sms: Option<OtpCode>,
    pub otp_email: Option<OtpCode>,
    /// Names of requested checks this server does not support (e.g. "webAuthN").
    pub unsupported: Vec<&'static str>,
}

pub(super) fn reject_unsupported(checks: &Checks) -> Result<(), Error> {
    if let Some(name) = checks.unsupported.first() {
        return Err(Error::invalid_argument(
            error_ids::CHECK_UNSUPPORTED,
            format!("the {name} check is not supported by this server"),
        ));
    }
    Ok(())
}

/// The verified outcome of the checks of one request, applied to a session afterwards.
pub(super) struct VerifiedChecks {
    pub(super) user: Option<User>,
    pub(super) password_verified: bool,
    pub(super) totp_verified: bool,
    pub(super) recovery_code_verified: bool,
    /// A passed WebAuthn check, still to be written with the session (which clears the
    /// user's failures with it).
    pub(super) passkey: Option<super::factors::PasskeyPass>,
    pub(super) otp_sms_verified: bool,
    pub(super) otp_email_verified: bool,
}

impl VerifiedChecks {
    pub(super) fn names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.user.is_some() {
            names.push("user");
        }
        if self.password_verified {
            names.push("password");
        }
        if self.passkey.is_some() {
            names.push("webAuthN");
        }
        if self.totp_verified {
            names.push("totp");
        }
        if self.recovery_code_verified {
            names.push("recoveryCode");
        }
        if self.otp_sms_verified {
            names.push("otpSms");
        }
        if self.otp_email_verified {
            names.push("otpEmail");
        }
        names
    }

    /// Writes the verified factors into `factors`. Fails if the user would change.
    pub(super) fn apply(&self, factors: &mut Factors, now: Time) -> Result<bool, Error> {
        let mut changed = false;
        if let Some(user) = &self.user {
            if let Some(existing) = &factors.user
                && existing.id != user.id
            {
                return Err(Error::invalid_argument(
                    error_ids::USER_CHANGE,
                    "user change not possible",
                ));
            }
            factors.user = Some(UserFactor {
                id: user.id.clone(),
                verified_at: now,
                login_name: user.login_name.as_str().to_owned(),
                display_name: user.display_name.clone(),
                organization_id: user.organization_id.clone(),
            });
            changed = true;
        }
        if self.password_verified {
            factors.password_verified_at = Some(now);
            changed = true;
        }
        if let Some(pass) = &self.passkey {
            factors.web_auth_n = Some(crate::domain::WebAuthNFactor {
                verified_at: now,
                user_verified: pass.user_verified,
            });
            changed = true;
        }
        if self.totp_verified {
            factors.totp_verified_at = Some(now);
            changed = true;
        }
        if self.recovery_code_verified {
            factors.recovery_code_verified_at = Some(now);
            changed = true;
        }
        if self.otp_sms_verified {
            factors.otp_sms_verified_at = Some(now);
            changed = true;
        }
        if self.otp_email_verified {
            factors.otp_email_verified_at = Some(now);
            changed = true;
        }
        Ok(changed)
    }
}

impl Core {
    /// Looks up the user of a check and verifies the password and second factors, if any, in
    /// that order. `session_user` is the user already checked on the session (for checks
    /// without a user check in the same request); `session` the session a SetSession
    /// changes (its WebAuthN and one-time-code challenges are the ones answered).
    pub(super) async fn verify_checks(
        &self,
        checks: &Checks,
        session_user: Option<&UserId>,
        session: Option<&SessionId>,
    ) -> Result<VerifiedChecks, Error> {
        let user = match &checks.user {
            Some(lookup) => Some(self.active_user(lookup).await?),
            None => None,
        };
        let mut verified = VerifiedChecks {
            user,
            password_verified: false,
            totp_verified: false,
            recovery_code_verified: false,
            passkey: None,
            otp_sms_verified: false,
            otp_email_verified: false,
        };
        if checks.password.is_none()
            && checks.totp.is_none()
            && checks.recovery_code.is_none()
            && checks.web_auth_n.is_none()
            && checks.otp_sms.is_none()
            && checks.otp_email.is_none()
        {
            return Ok(verified);
        }
        let checked_user = match (&verified.user, session_user) {
            (Some(user), _) => Some(user.clone()),
            (None, Some(id)) => Some(self.active_user(&UserLookup::Id(id.clone())).await?),
            (None, None) => None,
        };
        if let Some(password) = &checks.password {
            let user = checked_user.as_ref().ok_or_else(|| {
                Error::failed_precondition(
                    error_ids::USER_CHECK_FIRST,
                    "a user must be checked before the password",
                )
            })?;
            self.check_password(user, password).await?;
            verified.password_verified = true;
        }
        if let Some(assertion) = &checks.web_auth_n {
            let user = checked_user.as_ref().ok_or_else(|| {
                Error::failed_precondition(
                    error_ids::PASSKEY_NO_CHALLENGE,
                    "a user must be checked and a WebAuthN challenge requested before the check",
                )
            })?;
            verified.passkey = Some(self.check_passkey(user, session, assertion).await?);
        }
        // A passed passkey whose request fails after it counts neither way: it was never
        // registered as in progress, and its pass is recorded only with the session.
        self.verify_codes(checks, checked_user.as_ref(), session, &mut verified)
            .await?;
        Ok(verified)
    }

    /// The checks of codes (TOTP, recovery code, one-time codes by SMS and email), in that
    /// order, after the password and the passkey.
    async fn verify_codes(
        &self,
        checks: &Checks,
        checked_user: Option<&User>,
        session: Option<&SessionId>,
        verified: &mut VerifiedChecks,
    ) -> Result<(), Error> {
        if let Some(code) = &checks.totp {
            let user = checked_user.ok_or_else(|| {
                Error::invalid_argument(
                    error_ids::TOTP_NO_USER,
                    "a user must be checked before the TOTP code",
                )
            })?;
            self.check_totp(user, code).await?;
            verified.totp_verified = true;
        }
        if let Some(code) = &checks.recovery_code {
            let user = checked_user.ok_or_else(|| {
                Error::invalid_argument(
                    error_ids::RECOVERY_NO_USER,
                    "a user must be checked before the recovery code",
                )
            })?;
            self.check_recovery_code(user, code).await?;
            verified.recovery_code_verified = true;
        }
        for (code, kind) in [
            (&checks.otp_sms, FactorKind::OtpSms),
            (&checks.otp_email, FactorKind::OtpEmail),
        ] {
            let Some(code) = code else { continue };
            let user = checked_user.ok_or_else(|| {
                Error::invalid_argument(
                    error_ids::OTP_NO_USER,
                    "a user must be checked before the one-time code",
                )
            })?;
            self.check_otp(user, session, kind, code).await?;
            match kind {
                FactorKind::OtpSms => verified.otp_sms_verified = true,
                _ => verified.otp_email_verified = true,
            }
        }
        Ok(())
    }

    pub(super) async fn active_user(&self, lookup: &UserLookup) -> Result<User, Error> {
        let user = match lookup {
            UserLookup::Id(id) => self.store.user(id).await?,
            UserLookup::LoginName(name) => self.store.user_by_login_name(name).await?,
        };
        let user = user.ok_or_else(user_not_found)?;
        match inactive_user(user.state) {
            None => Ok(user),
            Some(error) => Err(error),
        }
    }

    /// A login checks the user (and its password) before it writes the session, so a lock,
    /// deactivation or new password committed in between ends the user's sessions but misses
    /// this one. Looking again once the session is written closes the gap: the change either
    /// saw this session (and ended it) or shows in `now_stored`, the user as the store read it
    /// with the write (`Store::insert_session`), and then the login ends it and fails as its
    /// checks would have.
    pub(super) async fn recheck_user(
        &self,
        principal: &Principal,
        session: &SessionId,
        checked: &User,
        now_stored: Option<User>,
        password_checked: bool,
    ) -> Result<(), Error> {
        let user = now_stored.ok_or_else(user_not_found)?;
        if let Some(error) = inactive_user(user.state) {
            let reason = if user.state == UserState::Locked {
                "user_locked"
            } else {
                "user_deactivated"
            };
            self.end_sessions(&user.id, None, &principal.user_id, reason)
                .await?;
            return Err(error);
        }
        if password_checked && user.password_hash != checked.password_hash {
            retry_on_conflict(|| {
                self.end_session_if(session, &principal.user_id, "password_changed", |_| true)
            })
            .await?;
            return Err(Error::failed_precondition(
                error_ids::PASSWORD_CHANGED,
                "The password changed while it was being checked",
            ));
        }
        Ok(())
    }

    /// Verifies a password. The check is registered before hashing, so parallel guesses can
    /// never exceed the lockout limit; a pass clears the failures, a failure adds one.
    pub(super) async fn check_password(
        &self,
        user: &User,
        password: &Password,
    ) -> Result<(), Error> {
        let mut failures = 0;
        let passed = self
            .registered_check(user, &mut failures, || async {
                match user.password_hash.as_deref() {
                    None => Err(Error::failed_precondition(
                        error_ids::PASSWORD_NOT_SET,
                        "User has no password set",
                    )),
                    Some(hash) => self.passwords.verify(password, hash).await,
                }
            })
            .await?;
        self.stats.password_check(passed);
        if passed {
            Ok(())
        } else {
            Err(
                Error::invalid_argument(error_ids::PASSWORD_INVALID, "Password is invalid")
                    .with_failed_attempts(failures),
            )
        }
    }

    /// Runs `verify` as one counted password check of `user`: registered in the store first
    /// (refused if the user is locked, or has too many checks in progress), so parallel
    /// guesses never get past the lockout limit; a pass clears the failures, a failure adds
    /// one, an error counts as neither. `failures` receives the confirmed failures after the
    /// check.
    async fn registered_check<F, Fut>(
        &self,
        user: &User,
        failures: &mut u32,
        verify: F,
    ) -> Result<bool, Error>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<bool, Error>>,
    {
        let ids = CheckIds::PASSWORD;
        let now = self.clock.now();
        match self
            .store
            .begin_password_check(
                &user.id,
                self.settings.max_password_attempts,
                now,
                stale_before(now),
            )
            .await?
        {
            PasswordCheck::Granted { .. } => {}
            PasswordCheck::Locked => return Err(ids.locked_error()),
            PasswordCheck::Busy => return Err(ids.busy_error()),
        }
        let verified = verify().await;
        let outcome = match &verified {
            Ok(true) => CheckOutcome::Passed,
            Ok(false) => CheckOutcome::Failed,
            Err(_) => CheckOutcome::Aborted,
        };
        *failures = self.store.end_password_check(&user.id, outcome).await?;
        verified
    }

    /// Records the check of a code (TOTP, recovery code, one-time code), verified as far as it
    /// can be without the store, in one store write: a locked user is refused (`ids`) whatever
    /// the code; a candidate pass spends what it names and clears the failures; a failure, or
    /// a pass whose spend the store refuses (a step or code used already), adds one and is
    /// answered with `failed`, carrying the count.
    pub(super) async fn record_code_check(
        &self,
        user: &User,
        attempt: &FactorAttempt,
        ids: CheckIds,
        failed: impl FnOnce() -> Error,
    ) -> Result<(), Error> {
        let now = self.clock.now();
        match self
            .store
            .record_factor_check(
                &user.id,
                attempt,
                self.settings.max_password_attempts,
                now,
                stale_before(now),
            )
            .await?
        {
            FactorCheckOutcome::Passed => Ok(()),
            FactorCheckOutcome::Failed { failures } => Err(failed().with_failed_attempts(failures)),
            FactorCheckOutcome::Locked => Err(ids.locked_error()),
            FactorCheckOutcome::Busy => Err(ids.busy_error()),
        }
    }

    /// Refuses a check of a locked user (as its user was read for this request), for checks
    /// that the store does not refuse itself.
    pub(super) fn refuse_locked(&self, user: &User, ids: CheckIds) -> Result<(), Error> {
        if crate::domain::locked_out(
            user.failed_password_attempts,
            self.settings.max_password_attempts,
        ) {
            return Err(ids.locked_error());
        }
        Ok(())
    }
}

/// Checks in progress older than this were left by a process that died mid-check: they no
/// longer count toward the limit.
fn stale_before(now: Time) -> Time {
    Time::from_unix_micros(now.unix_micros().saturating_sub(60_000_000))
}

/// The error ids a counted check answers with when the user is locked or busy.
#[derive(Clone, Copy)]
pub(super) struct CheckIds {
    pub(super) locked: &'static str,
    pub(super) busy: &'static str,
}

impl CheckIds {
    fn locked_error(self) -> Error {
        Error::failed_precondition(self.locked, "User is locked: too many failed checks")
    }

    fn busy_error(self) -> Error {
        Error::new(
            crate::domain::ErrorKind::ResourceExhausted,
            self.busy,
            "too many checks for this user at once, retry shortly",
        )
    }

    pub(super) const PASSWORD: Self = Self {
        locked: error_ids::PASSWORD_LOCKED,
        busy: error_ids::PASSWORD_BUSY,
    };
    pub(super) const FACTOR: Self = Self {
        locked: error_ids::FACTOR_LOCKED,
        busy: error_ids::FACTOR_BUSY,
    };
    pub(super) const OTP: Self = Self {
        locked: error_ids::OTP_LOCKED,
        busy: error_ids::FACTOR_BUSY,
    };
}

/// Why a user in this state cannot pass `checks.user`, if it cannot.
fn inactive_user(state: UserState) -> Option<Error> {
    match state {
        UserState::Active => None,
        UserState::Locked => Some(Error::failed_precondition(
            error_ids::USER_LOCKED,
            "User is locked",
        )),
        UserState::Inactive => Some(Error::failed_precondition(
            error_ids::USER_INACTIVE,
            "User is not active",
        )),
    }
}
