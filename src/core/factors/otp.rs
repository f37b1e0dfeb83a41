//! One-time codes by SMS and email: enrolling them (a verified phone or email address is
//! needed; the enrollment is ready at once), challenging a session (a fresh 8-digit code,
//! sent or returned to the caller) and checking the code.
//!
//! A code is never stored: the store holds an HMAC-SHA256 of it under a key derived from the
//! server's factor key, bound to the kind and the user, in a row keyed by the session. A new
//! challenge replaces the row; a successful check deletes it (only the first of two parallel
//! checks does) in the store write that counts the check, so a code works once. Every failed
//! check counts toward the lockout limit.

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::super::Core;
use super::super::checks::CheckIds;
use super::FactorChange;
use crate::delivery::{OtpEmailMessage, OtpSmsMessage, render_template};
use crate::domain::{
    Error, ErrorKind, FactorKind, FactorState, OtpCode, Permission, Principal, SessionId, Time,
    User, UserId, error_ids,
};
use crate::store::{ContactKind, FactorAttempt, OtpChallenge, StoredFactor};

/// Digits of a generated code.
const CODE_DIGITS: usize = 8;

/// How an email challenge reaches the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmailDelivery {
    /// Sent by email; the link is rendered from the template (or the configured default).
    Send { url_template: Option<String> },
    /// Returned to the caller, which delivers it itself; nothing is sent.
    Return,
}

/// The one-time-code challenges a Create or Set asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OtpChallenges {
    /// `Some(return_code)`: an SMS challenge.
    pub sms: Option<bool>,
    pub email: Option<EmailDelivery>,
}

impl OtpChallenges {
    pub fn is_empty(&self) -> bool {
        self.sms.is_none() && self.email.is_none()
    }

    /// The challenge names, for the session event.
    pub(in crate::core) fn names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.sms.is_some() {
            names.push("otpSms");
        }
        if self.email.is_some() {
            names.push("otpEmail");
        }
        names
    }
}

/// Codes a challenge returns to the caller (`returnCode`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ReturnedCodes {
    /// Whether the request asked for any challenge.
    pub challenged: bool,
    pub otp_sms: Option<String>,
    pub otp_email: Option<String>,
}

impl std::fmt::Debug for ReturnedCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReturnedCodes(***)")
    }
}

/// Challenges made (and delivered) but not yet stored: they are written once the session is.
pub(in crate::core) struct PreparedChallenges {
    rows: Vec<(FactorKind, UserId, Vec<u8>, Time)>,
    pub(in crate::core) returned: ReturnedCodes,
}

impl PreparedChallenges {
    pub(in crate::core) fn none() -> Self {
        Self {
            rows: Vec::new(),
            returned: ReturnedCodes::default(),
        }
    }
}

fn new_code() -> String {
    let mut rng = rand::rngs::OsRng;
    (0..CODE_DIGITS)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

fn kind_label(kind: FactorKind) -> &'static str {
    match kind {
        FactorKind::OtpSms => "OTP SMS",
        _ => "OTP email",
    }
}

/// The key codes are hashed with, derived from the factor key (never the key itself).
pub(in crate::core) fn otp_key(factor_key: &[u8; 32]) -> [u8; 32] {
    let mut key = [0u8; 32];
    if let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(factor_key) {
        mac.update(b"sessiond one-time codes");
        key.copy_from_slice(&mac.finalize().into_bytes());
    }
    key
}

impl Core {
    /// The key codes are hashed with: derived from the factor key, so a copy of the database
    /// alone cannot test guesses.
    fn otp_mac(&self) -> Result<Hmac<Sha256>, Error> {
        let key = self.otp_key.as_ref().ok_or_else(|| {
            Error::internal(
                error_ids::FACTOR_KEY,
                std::io::Error::other("no factor key is configured"),
            )
        })?;
        <Hmac<Sha256> as Mac>::new_from_slice(key.as_slice()).map_err(|e| {
            Error::internal(error_ids::FACTOR_KEY, std::io::Error::other(e.to_string()))
        })
    }

    fn otp_hash(&self, kind: FactorKind, user: &UserId, code: &str) -> Result<Vec<u8>, Error> {
        let mut mac = self.otp_mac()?;
        for part in [kind.as_str(), user.as_str(), code] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        Ok(mac.finalize().into_bytes().to_vec())
    }

    /// Enrolls one-time codes by SMS ([`FactorKind::OtpSms`]) or email
    /// ([`FactorKind::OtpEmail`]) for a user with a verified phone or email address; with
    /// `revoke`, ends the user's other sessions.
    pub async fn add_otp(
        &self,
        principal: &Principal,
        user: &UserId,
        kind: FactorKind,
        revoke: bool,
    ) -> Result<FactorChange, Error> {
        let owner = self
            .factor_owner(principal, user, Permission::UserWrite)
            .await?;
        let (contact, missing, already) = match kind {
            FactorKind::OtpSms => (
                ContactKind::Phone,
                (
                    error_ids::OTP_SMS_NO_PHONE,
                    "the user has no verified phone",
                ),
                (
                    error_ids::OTP_SMS_ALREADY,
                    "OTP SMS is already set up for the user",
                ),
            ),
            _ => (
                ContactKind::Email,
                (
                    error_ids::OTP_EMAIL_NO_EMAIL,
                    "the user has no verified email",
                ),
                (
                    error_ids::OTP_EMAIL_ALREADY,
                    "OTP email is already set up for the user",
                ),
            ),
        };
        let verified = self
            .store
            .user_contacts(user)
            .await?
            .into_iter()
            .any(|c| c.kind == contact && c.verified_at.is_some());
        if !verified {
            return Err(Error::failed_precondition(missing.0, missing.1));
        }
        if self.enrollment(user, kind).await?.is_some() {
            return Err(Error::new(ErrorKind::AlreadyExists, already.0, already.1));
        }
        let now = self.clock.now();
        let factor = StoredFactor {
            user_id: user.clone(),
            kind,
            state: FactorState::Ready,
            secret: None,
            last_step: None,
            created_at: now,
            verified_at: Some(now),
            remaining_codes: 0,
        };
        let revocation = self.factor_revocation(principal, revoke);
        let revoked = self
            .store
            .save_factor(&factor, None, revocation.as_ref())
            .await?;
        Ok(self.factor_details(&owner, revoked))
    }

    /// Makes the requested challenges for `user` on session `session`: a fresh code each,
    /// delivered now unless returned. Nothing is stored yet ([`Core::save_otp_challenges`]),
    /// so a failed delivery leaves no challenge behind.
    pub(in crate::core) async fn prepare_otp_challenges(
        &self,
        requested: &OtpChallenges,
        user: Option<&User>,
        session: &SessionId,
    ) -> Result<PreparedChallenges, Error> {
        let mut prepared = PreparedChallenges::none();
        prepared.returned.challenged = !requested.is_empty();
        if let Some(return_code) = requested.sms {
            let user = self
                .otp_challenge_user(
                    user,
                    FactorKind::OtpSms,
                    error_ids::OTP_SMS_CHALLENGE_NO_USER,
                    error_ids::OTP_SMS_CHALLENGE_NOT_SET,
                )
                .await?;
            let code = new_code();
            if return_code {
                prepared.returned.otp_sms = Some(code.clone());
            } else {
                let phone = self.verified_contact(&user.id, ContactKind::Phone).await?;
                self.delivery
                    .send_sms(&OtpSmsMessage {
                        to: &phone,
                        code: &code,
                        user_id: user.id.as_str(),
                        session_id: session.as_str(),
                        sent_at_unix: self.clock.now().unix_micros() / 1_000_000,
                    })
                    .await
                    .map_err(delivery_error)?;
            }
            prepared
                .rows
                .push(self.challenge_row(FactorKind::OtpSms, &user.id, &code)?);
        }
        if let Some(delivery_type) = &requested.email {
            let user = self
                .otp_challenge_user(
                    user,
                    FactorKind::OtpEmail,
                    error_ids::OTP_EMAIL_CHALLENGE_NO_USER,
                    error_ids::OTP_EMAIL_CHALLENGE_NOT_SET,
                )
                .await?;
            let code = new_code();
            match delivery_type {
                EmailDelivery::Return => prepared.returned.otp_email = Some(code.clone()),
                EmailDelivery::Send { url_template } => {
                    let template = url_template
                        .as_deref()
                        .or(self.settings.otp_email_url_template.as_deref());
                    let link = template
                        .map(|t| email_link(t, &code, &user, session))
                        .transpose()?;
                    let email = self.verified_contact(&user.id, ContactKind::Email).await?;
                    self.delivery
                        .send_email(&OtpEmailMessage {
                            to: &email,
                            code: &code,
                            link: link.as_deref(),
                            login_name: user.login_name.as_str(),
                            display_name: &user.display_name,
                        })
                        .await
                        .map_err(delivery_error)?;
                }
            }
            prepared
                .rows
                .push(self.challenge_row(FactorKind::OtpEmail, &user.id, &code)?);
        }
        Ok(prepared)
    }

    fn challenge_row(
        &self,
        kind: FactorKind,
        user: &UserId,
        code: &str,
    ) -> Result<(FactorKind, UserId, Vec<u8>, Time), Error> {
        let expires = self
            .clock
            .now()
            .saturating_add(self.settings.otp_code_lifetime);
        Ok((
            kind,
            user.clone(),
            self.otp_hash(kind, user, code)?,
            expires,
        ))
    }

    /// Stores prepared challenges for `session`, each replacing the earlier one of its kind.
    pub(in crate::core) async fn save_otp_challenges(
        &self,
        session: &SessionId,
        prepared: &PreparedChallenges,
    ) -> Result<(), Error> {
        for (kind, user, hash, expires_at) in &prepared.rows {
            self.store
                .save_otp_challenge(&OtpChallenge {
                    session_id: session.clone(),
                    kind: *kind,
                    user_id: user.clone(),
                    code_hash: hash.clone(),
                    expires_at: *expires_at,
                })
                .await?;
        }
        Ok(())
    }

    async fn otp_challenge_user(
        &self,
        user: Option<&User>,
        kind: FactorKind,
        no_user: &'static str,
        not_set: &'static str,
    ) -> Result<User, Error> {
        let user = user.ok_or_else(|| {
            Error::failed_precondition(
                no_user,
                format!(
                    "a user must be checked before an {} challenge",
                    kind_label(kind)
                ),
            )
        })?;
        match self.enrollment(&user.id, kind).await? {
            Some(f) if f.state == FactorState::Ready => Ok(user.clone()),
            _ => Err(Error::failed_precondition(
                not_set,
                format!("{} is not set up for the user", kind_label(kind)),
            )),
        }
    }

    async fn verified_contact(&self, user: &UserId, kind: ContactKind) -> Result<String, Error> {
        self.store
            .user_contacts(user)
            .await?
            .into_iter()
            .find(|c| c.kind == kind && c.verified_at.is_some())
            .map(|c| c.address)
            .ok_or_else(|| {
                Error::failed_precondition(
                    match kind {
                        ContactKind::Phone => error_ids::OTP_SMS_NO_PHONE,
                        ContactKind::Email => error_ids::OTP_EMAIL_NO_EMAIL,
                    },
                    format!("the user has no verified {}", kind.as_str()),
                )
            })
    }

    /// The session check of a one-time code: the code of this session's challenge of `kind`
    /// for `user`, before it expires, once. Every wrong or expired code counts toward the
    /// lockout limit.
    pub(in crate::core) async fn check_otp(
        &self,
        user: &User,
        session: Option<&SessionId>,
        kind: FactorKind,
        code: &OtpCode,
    ) -> Result<(), Error> {
        match self.enrollment(&user.id, kind).await? {
            Some(f) if f.state == FactorState::Ready => {}
            _ => {
                return Err(Error::failed_precondition(
                    error_ids::OTP_NOT_SET,
                    format!("{} is not set up for the user", kind_label(kind)),
                ));
            }
        }
        let challenge = match session {
            Some(session) => self.store.otp_challenge(session, kind).await?,
            None => None,
        };
        let Some(challenge) = challenge.filter(|c| c.user_id == user.id) else {
            return Err(Error::failed_precondition(
                error_ids::OTP_NO_CHALLENGE,
                format!(
                    "no {} challenge was requested for this session",
                    kind_label(kind)
                ),
            ));
        };
        let hash = self.otp_hash(kind, &user.id, code.as_str())?;
        let expired = challenge.expires_at <= self.clock.now();
        // A code that matches is spent in the write that counts the check, if no other check
        // consumed the challenge first.
        let attempt = if !expired && bool::from(challenge.code_hash.as_slice().ct_eq(&hash)) {
            FactorAttempt::OtpCode {
                session: challenge.session_id,
                kind,
                hash,
            }
        } else {
            FactorAttempt::Failed
        };
        self.record_code_check(user, &attempt, CheckIds::OTP, || {
            if expired {
                Error::failed_precondition(error_ids::OTP_EXPIRED, "The code has expired")
            } else {
                Error::invalid_argument(error_ids::OTP_INVALID, "Invalid code")
            }
        })
        .await
    }
}

/// The link of an OTP email: the template with the code and the session's names filled in.
fn email_link(
    template: &str,
    code: &str,
    user: &User,
    session: &SessionId,
) -> Result<String, Error> {
    render_template(
        template,
        &[
            ("Code", code),
            ("UserID", user.id.as_str()),
            ("LoginName", user.login_name.as_str()),
            ("DisplayName", user.display_name.as_str()),
            ("PreferredLanguage", ""),
            ("SessionID", session.as_str()),
        ],
    )
    .map_err(|e| {
        Error::invalid_argument(
            error_ids::OTP_URL_TEMPLATE,
            format!("otpEmail.sendCode.urlTemplate: {e}"),
        )
    })
}

fn delivery_error(e: crate::delivery::DeliveryError) -> Error {
    match e {
        crate::delivery::DeliveryError::NotConfigured(what) => Error::failed_precondition(
            error_ids::OTP_DELIVERY_UNCONFIGURED,
            format!("this server does not send codes by {what}; request returnCode instead"),
        ),
        crate::delivery::DeliveryError::Failed(what) => {
            tracing::warn!(channel = what, "a one-time code could not be delivered");
            Error::new(
                ErrorKind::Unavailable,
                error_ids::OTP_DELIVERY,
                format!("the code could not be sent by {what}; retry later"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_eight_digits() {
        for _ in 0..100 {
            let code = new_code();
            assert_eq!(code.len(), CODE_DIGITS);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
        let nines = (0..2000).any(|_| new_code().contains('9'));
        assert!(nines, "every digit can appear");
    }
}
