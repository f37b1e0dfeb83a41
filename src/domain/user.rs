//! Users: the people sessions are for. Login names are unique without regard to case.

use std::fmt;

use super::error_ids;
use super::ids::check_length;
use super::{Error, Time, UserId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserState {
    Active,
    Locked,
    Inactive,
}

impl UserState {
    pub fn as_str(self) -> &'static str {
        match self {
            UserState::Active => "active",
            UserState::Locked => "locked",
            UserState::Inactive => "inactive",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "active" => Some(UserState::Active),
            "locked" => Some(UserState::Locked),
            "inactive" => Some(UserState::Inactive),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: UserId,
    pub login_name: LoginName,
    pub display_name: String,
    pub organization_id: String,
    pub state: UserState,
    /// argon2id PHC string; never leaves the process.
    pub password_hash: Option<String>,
    pub failed_password_attempts: u32,
    pub created_at: Time,
    pub updated_at: Time,
    /// Bumped by every write of the row's columns (an admin change, or a password check
    /// that changes the failure count); an update applies only at the version it read.
    pub version: u64,
}

/// Whether `failures` confirmed failed checks lock a user out under `limit` (0: no limit).
/// The one rule behind every refusal for too many failures, in the core and the stores.
pub fn locked_out(failures: u32, limit: u32) -> bool {
    limit > 0 && failures >= limit
}

/// A login name: 1..200 characters, no control characters, no surrounding whitespace.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LoginName(String);

impl LoginName {
    pub fn parse(value: impl Into<String>) -> Result<Self, Error> {
        let value = value.into();
        check_length(&value, "login name", error_ids::LOGIN_NAME_INVALID)?;
        if value.chars().any(char::is_control) || value.trim() != value {
            return Err(Error::invalid_argument(
                error_ids::LOGIN_NAME_INVALID,
                "login name: must not contain control characters or surrounding whitespace",
            ));
        }
        Ok(Self(value))
    }

    pub fn from_trusted(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-folded form uniqueness and lookups use.
    pub fn folded(&self) -> String {
        self.0.to_lowercase()
    }
}

impl fmt::Debug for LoginName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LoginName({})", self.0)
    }
}

/// A password in clear; `Debug` never prints it.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Checks a password presented for verification: 1..200 characters.
    pub fn parse(value: impl Into<String>) -> Result<Self, Error> {
        let value = value.into();
        check_length(&value, "password", error_ids::PASSWORD_LENGTH)?;
        Ok(Self(value))
    }

    /// Checks a new password against the policy: 8..200 characters, not all the same.
    pub fn parse_new(value: impl Into<String>) -> Result<Self, Error> {
        let value = value.into();
        let len = value.chars().count();
        if !(MIN_NEW_PASSWORD_CHARS..=200).contains(&len) {
            return Err(Error::invalid_argument(
                error_ids::PASSWORD_WEAK,
                format!("password: must be between {MIN_NEW_PASSWORD_CHARS} and 200 characters"),
            ));
        }
        let mut chars = value.chars();
        let first = chars.next();
        if chars.all(|c| Some(c) == first) {
            return Err(Error::invalid_argument(
                error_ids::PASSWORD_WEAK,
                "password: must not repeat a single character",
            ));
        }
        Ok(Self(value))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Shortest password a new user or a password change may set.
pub const MIN_NEW_PASSWORD_CHARS: usize = 8;

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_names_fold_case_and_reject_junk() {
        let name = LoginName::parse("Alice@Example.com");
        assert_eq!(
            name.as_ref().map(LoginName::folded).ok(),
            Some("alice@example.com".to_string())
        );
        assert!(LoginName::parse("").is_err());
        assert!(LoginName::parse(" alice").is_err());
        assert!(LoginName::parse("a\nb").is_err());
        assert!(LoginName::parse("x".repeat(201)).is_err());
    }

    #[test]
    fn new_passwords_follow_the_policy() {
        assert!(Password::parse_new("").is_err());
        assert!(Password::parse_new("short").is_err());
        assert!(Password::parse_new("aaaaaaaaaa").is_err());
        assert!(Password::parse_new("long enough").is_ok());
    }

    #[test]
    fn password_debug_is_redacted() {
        let p = Password::parse("hunter2").ok();
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
