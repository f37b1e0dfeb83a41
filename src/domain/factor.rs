//! Second factors a user enrolls: their kinds and states, and the codes a client presents,
//! parsed once at the boundary. The secrets behind them (sealed TOTP seeds, hashed recovery
//! codes) never appear here: the core keeps them between the store and the check.

use super::{Error, Time, UserId, error_ids};

/// One kind of second factor. A user has at most one enrollment of each kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FactorKind {
    /// Time-based one-time passwords (RFC 6238) from an authenticator app.
    Totp,
    /// A set of single-use recovery codes.
    RecoveryCodes,
    /// One-time codes sent by SMS to the user's verified phone.
    OtpSms,
    /// One-time codes sent by email to the user's verified email address.
    OtpEmail,
}

impl FactorKind {
    pub const ALL: [FactorKind; 4] = [
        FactorKind::Totp,
        FactorKind::RecoveryCodes,
        FactorKind::OtpSms,
        FactorKind::OtpEmail,
    ];

    /// The name stored and shown by the admin face and the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            FactorKind::Totp => "totp",
            FactorKind::RecoveryCodes => "recovery_codes",
            FactorKind::OtpSms => "otp_sms",
            FactorKind::OtpEmail => "otp_email",
        }
    }

    pub fn parse(name: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .ok_or_else(|| {
                Error::invalid_argument(
                    error_ids::FACTOR_KIND_UNKNOWN,
                    "factor kind must be one of totp, recovery_codes, otp_sms, otp_email",
                )
            })
    }
}

/// Whether an enrollment can be used yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FactorState {
    /// Registered, waiting for its first code (TOTP before VerifyTOTPRegistration).
    Pending,
    /// Usable in session checks.
    Ready,
}

impl FactorState {
    pub fn as_str(self) -> &'static str {
        match self {
            FactorState::Pending => "pending",
            FactorState::Ready => "ready",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "pending" => Some(FactorState::Pending),
            "ready" => Some(FactorState::Ready),
            _ => None,
        }
    }
}

/// An enrollment as it may be shown: no secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrolledFactor {
    pub user_id: UserId,
    pub kind: FactorKind,
    pub state: FactorState,
    pub created_at: Time,
    pub verified_at: Option<Time>,
    /// Recovery codes not used yet (0 for other kinds).
    pub remaining_codes: u32,
}

/// A TOTP code as typed: exactly six ASCII digits.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpCode(String);

impl TotpCode {
    pub fn parse(code: String) -> Result<Self, Error> {
        if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(code))
        } else {
            Err(Error::invalid_argument(
                error_ids::TOTP_CODE_FORMAT,
                "code: a TOTP code is exactly 6 digits",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for TotpCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpCode(***)")
    }
}

/// A recovery code as typed: 1 to 200 characters, no control characters. Letter case and
/// dashes are not significant ([`RecoveryCode::normalized`]).
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode(String);

impl RecoveryCode {
    pub fn parse(code: String) -> Result<Self, Error> {
        let len = code.chars().count();
        if len == 0 || len > 200 || code.chars().any(char::is_control) {
            return Err(Error::invalid_argument(
                error_ids::RECOVERY_CODE_FORMAT,
                "code: a recovery code has 1 to 200 characters and no control characters",
            ));
        }
        Ok(Self(code))
    }

    /// The code without dashes or spaces, in upper case: what is hashed.
    pub fn normalized(&self) -> String {
        self.0
            .chars()
            .filter(|c| *c != '-' && !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect()
    }
}

impl std::fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryCode(***)")
    }
}

/// A one-time code (SMS or email) as typed: 1 to 200 characters, no control characters.
#[derive(Clone, PartialEq, Eq)]
pub struct OtpCode(String);

impl OtpCode {
    pub fn parse(code: String) -> Result<Self, Error> {
        let len = code.chars().count();
        if len == 0 || len > 200 || code.chars().any(char::is_control) {
            return Err(Error::invalid_argument(
                error_ids::OTP_CODE_FORMAT,
                "code: a one-time code has 1 to 200 characters and no control characters",
            ));
        }
        Ok(Self(code))
    }

    /// The code without surrounding whitespace: what is hashed.
    pub fn as_str(&self) -> &str {
        self.0.trim()
    }
}

impl std::fmt::Debug for OtpCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OtpCode(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_codes_are_six_digits() {
        assert!(TotpCode::parse("123456".into()).is_ok());
        for bad in ["", "12345", "1234567", "12345a", "١٢٣٤٥٦", "12 456"] {
            assert!(TotpCode::parse(bad.into()).is_err(), "{bad}");
        }
    }

    #[test]
    fn recovery_codes_ignore_case_and_dashes() {
        let code = RecoveryCode::parse("abcd-ef12 34".into()).map(|c| c.normalized());
        assert_eq!(code.ok().as_deref(), Some("ABCDEF1234"));
        assert!(RecoveryCode::parse(String::new()).is_err());
        assert!(RecoveryCode::parse("a\u{0}b".into()).is_err());
        assert!(RecoveryCode::parse("x".repeat(201)).is_err());
    }

    #[test]
    fn otp_codes_are_short_printable_text() {
        assert_eq!(
            OtpCode::parse(" 12345678 ".into())
                .ok()
                .map(|c| c.as_str().to_owned())
                .as_deref(),
            Some("12345678")
        );
        assert!(OtpCode::parse(String::new()).is_err());
        assert!(OtpCode::parse("1\n2".into()).is_err());
        assert!(OtpCode::parse("9".repeat(201)).is_err());
    }

    #[test]
    fn kinds_round_trip_their_names() {
        for kind in FactorKind::ALL {
            assert_eq!(FactorKind::parse(kind.as_str()).ok(), Some(kind));
        }
        assert!(FactorKind::parse("sms").is_err());
    }
}
