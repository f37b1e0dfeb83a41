//! The checks of a CreateSession or SetSession: which user, whether the password matches,
//! whether a second factor (passkey, TOTP, recovery code, one-time code: see `factors`)
//! passes, and what the verified factors do to a session. Checks run in ZITADEL's order
//! (user, password, webAuthN, totp, recoveryCode, otpSms, otpEmail) and the first failure
//! stops the request. Every counted check that can be guessed (password, codes) is registered
//! in the store before it runs, so parallel guesses never get past the lockout limit; a
//! passkey assertion, which no guess passes, is only refused for a locked user and counted
//! when it fails. Every other rule of a session's life is in `sessions`.

use super::{Attempt, Core, retry_on_conflict, user_not_found};
use crate::domain::{
    Error, FactorKind, Factors, LoginName, OtpCode, Password, Principal, RecoveryCode, SessionId,
    Time, TotpCode, User, UserFactor, UserId, UserState, error_ids,
};
use crate::store::{CheckOutcome, PasswordCheck};

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
    /// this one. Looking again after the write closes the gap: the change either saw this
    /// session (and ended it) or is seen here, and then the login ends it and fails as its
    /// checks would have.
    pub(super) async fn recheck_user(
        &self,
        principal: &Principal,
        session: &SessionId,
        checked: &User,
        password_checked: bool,
    ) -> Result<(), Error> {
        let user = self
            .store
            .user(&checked.id)
            .await?
            .ok_or_else(user_not_found)?;
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
            retry_on_conflict(|| async {
                match self.store.session(session).await? {
                    Some(live) if !live.is_terminated() => {
                        self.terminate(live, &principal.user_id, "password_changed")
                            .await?;
                        Ok::<_, Attempt>(())
                    }
                    _ => Ok(()),
                }
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
            .counted_check_with(user, CheckIds::PASSWORD, &mut failures, || async {
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

    /// Runs the check of a second factor under the lockout counters (see
    /// [`Core::counted_check_with`]); a locked user is refused before `verify` runs.
    /// `failures` receives the confirmed failures after the check.
    pub(super) async fn counted_check<F, Fut>(
        &self,
        user: &User,
        failures: &mut u32,
        verify: F,
    ) -> Result<bool, Error>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<bool, Error>>,
    {
        self.counted_check_with(user, CheckIds::FACTOR, failures, verify)
            .await
    }

    /// Runs `verify` as one counted check of `user`: registered in the store first, so
    /// parallel guesses of any kind (password, TOTP, recovery code) never get past the one
    /// lockout limit; a pass clears the failures, a failure adds one, an error counts as
    /// neither. `failures` receives the confirmed failures after the check.
    pub(super) async fn counted_check_with<F, Fut>(
        &self,
        user: &User,
        ids: CheckIds,
        failures: &mut u32,
        verify: F,
    ) -> Result<bool, Error>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<bool, Error>>,
    {
        self.begin_counted_check(user, ids).await?;
        let verified = verify().await;
        let outcome = match &verified {
            Ok(true) => CheckOutcome::Passed,
            Ok(false) => CheckOutcome::Failed,
            Err(_) => CheckOutcome::Aborted,
        };
        *failures = self.store.end_password_check(&user.id, outcome).await?;
        verified
    }

    /// Registers a counted check of `user` in the store, unless the user is locked (or has
    /// too many checks in progress). The caller ends it with `end_password_check`, or with
    /// the write that records its pass.
    pub(super) async fn begin_counted_check(
        &self,
        user: &User,
        ids: CheckIds,
    ) -> Result<(), Error> {
        let limit = self.settings.max_password_attempts;
        let now = self.clock.now();
        let stale = Time::from_unix_micros(now.unix_micros().saturating_sub(60_000_000));
        match self
            .store
            .begin_password_check(&user.id, limit, now, stale)
            .await?
        {
            PasswordCheck::Granted { .. } => Ok(()),
            PasswordCheck::Locked => Err(Error::failed_precondition(
                ids.locked,
                "User is locked: too many failed checks",
            )),
            PasswordCheck::Busy => Err(Error::new(
                crate::domain::ErrorKind::ResourceExhausted,
                ids.busy,
                "too many checks for this user at once, retry shortly",
            )),
        }
    }

    /// Refuses a check of a locked user (as its user was read for this request), for checks
    /// that are not registered before they run.
    pub(super) fn refuse_locked(&self, user: &User, ids: CheckIds) -> Result<(), Error> {
        if crate::domain::locked_out(
            user.failed_password_attempts,
            self.settings.max_password_attempts,
        ) {
            return Err(Error::failed_precondition(
                ids.locked,
                "User is locked: too many failed checks",
            ));
        }
        Ok(())
    }
}

/// The error ids a counted check answers with when the user is locked or busy.
#[derive(Clone, Copy)]
pub(super) struct CheckIds {
    pub(super) locked: &'static str,
    pub(super) busy: &'static str,
}

impl CheckIds {
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
