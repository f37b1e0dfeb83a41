//! Identifiers. Ids are decimal numbers (the shape ZITADEL clients know), parsed once at the
//! boundary: non-empty, at most 200 characters, no control characters.
//!
//! A *well-formed* session id ([`SessionId::parse_well_formed`]) is, beyond that, made of
//! ASCII letters, digits, `-` and `_` only: every id sessiond issues (19 decimal digits) and
//! every id ZITADEL issues (decimal) is one. The self-service face holds session ids to it, so
//! an id that cannot name a session is a bad request there rather than a quiet no-op. The
//! SessionService keeps the wider rule, as ZITADEL does (an id of another shape is simply not
//! found), so what its clients see does not change.
//!
//! New session ids grow with time (milliseconds in the high bits, random low bits, always 19
//! digits), like ZITADEL's own time-based ids: a new session's row, id index entry and
//! events then land at the end of their B-trees instead of at random pages, which is what
//! keeps inserts cheap at millions of sessions. Ids are names, not secrets: the session token
//! is the credential.

use std::fmt;

use rand::Rng;

use super::Error;
use super::error_ids;

const MAX_ID_LEN: usize = 200;

/// A fresh random id: a 63-bit number with 18 or 19 decimal digits.
pub fn new_numeric_id() -> String {
    let n: u64 = rand::thread_rng().gen_range(100_000_000_000_000_000..=i64::MAX as u64);
    n.to_string()
}

/// Milliseconds since 2025-01-01T00:00:00Z, in the high bits of a time-ordered id.
const ORDERED_EPOCH_MS: i64 = 1_735_689_600_000;
/// Random low bits of a time-ordered id: 8.4 million values per millisecond, so a collision
/// (which the store reports and the caller retries with a fresh id) stays rare at any rate
/// one server reaches.
const ORDERED_RANDOM_BITS: u32 = 23;
/// Keeps every time-ordered id at 19 digits (so text order is time order) for 31 years.
const ORDERED_BASE: u64 = 1_000_000_000_000_000_000;

/// A fresh id that sorts after the ids made before `now_unix_ms` (milliseconds since the
/// epoch).
pub fn new_ordered_id(now_unix_ms: i64) -> String {
    ordered_id_from(&mut rand::thread_rng(), now_unix_ms)
}

/// [`new_ordered_id`] with the random low bits drawn from `rng` (e.g. a seeded one).
pub fn ordered_id_from(rng: &mut impl Rng, now_unix_ms: i64) -> String {
    let ms = u64::try_from(now_unix_ms - ORDERED_EPOCH_MS).unwrap_or(0) & ((1 << 39) - 1);
    let random: u64 = rng.gen_range(0..1 << ORDERED_RANDOM_BITS);
    (ORDERED_BASE + (ms << ORDERED_RANDOM_BITS) + random).to_string()
}

/// Fails unless `value` has 1 to 200 characters, the length rule of every id, login name and
/// password.
pub(super) fn check_length(value: &str, what: &str, error_id: &'static str) -> Result<(), Error> {
    let chars = value.chars().count();
    if chars == 0 || chars > MAX_ID_LEN {
        return Err(Error::invalid_argument(
            error_id,
            format!("{what}: value length must be between 1 and {MAX_ID_LEN} runes, inclusive"),
        ));
    }
    Ok(())
}

fn check_id(value: &str, what: &'static str, error_id: &'static str) -> Result<(), Error> {
    check_length(value, what, error_id)?;
    if value.chars().any(char::is_control) {
        return Err(Error::invalid_argument(
            error_id,
            format!("{what}: must not contain control characters"),
        ));
    }
    Ok(())
}

macro_rules! id_type {
    ($name:ident, $what:literal, $error_id:expr) => {
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Checks an id received from a client.
            pub fn parse(value: impl Into<String>) -> Result<Self, Error> {
                let value = value.into();
                check_id(&value, $what, $error_id)?;
                Ok(Self(value))
            }

            pub fn generate() -> Self {
                Self(new_numeric_id())
            }

            /// A fresh id ordered by creation time (see the module header).
            pub fn generate_at(now: super::Time) -> Self {
                Self(new_ordered_id(now.unix_micros().div_euclid(1000)))
            }

            /// Wraps an id read back from the store, where it was checked on the way in.
            pub fn from_trusted(value: String) -> Self {
                Self(value)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

id_type!(SessionId, "session id", error_ids::SESSION_ID_INVALID);

/// Whether a character may stand in a well-formed id.
fn well_formed_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

impl SessionId {
    /// Checks a session id as [`SessionId::parse`] does, and that it is well-formed (see the
    /// module header).
    pub fn parse_well_formed(value: impl Into<String>) -> Result<Self, Error> {
        let id = Self::parse(value)?;
        if !id.0.chars().all(well_formed_char) {
            return Err(Error::invalid_argument(
                error_ids::SESSION_ID_INVALID,
                "session id: only ASCII letters, digits, '-' and '_' are allowed",
            ));
        }
        Ok(id)
    }
}
id_type!(UserId, "user id", error_ids::USER_ID_INVALID);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_between_one_and_two_hundred_runes() {
        assert!(SessionId::parse("").is_err());
        assert!(SessionId::parse("x".repeat(201)).is_err());
        assert!(SessionId::parse("é".repeat(200)).is_ok());
        assert!(SessionId::parse("a\0b").is_err());
        assert!(SessionId::parse("123").is_ok());
    }

    #[test]
    fn well_formed_ids_are_ascii_letters_digits_dashes_and_underscores() {
        for good in ["1234567890123456789", "abc-DEF_9", "x"] {
            assert!(SessionId::parse_well_formed(good).is_ok(), "{good}");
        }
        for bad in ["a/b", "%zz", "a b", "ü", "' OR '1'='1", "", "a\0b"] {
            assert!(SessionId::parse_well_formed(bad).is_err(), "{bad:?}");
        }
        assert!(SessionId::parse_well_formed("9".repeat(201)).is_err());
        let generated = SessionId::generate_at(super::super::Time::from_unix_micros(0));
        assert!(SessionId::parse_well_formed(generated.into_string()).is_ok());
    }

    #[test]
    fn generated_ids_are_decimal_and_distinct() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_ne!(a, b);
        assert!(a.as_str().chars().all(|c| c.is_ascii_digit()));
        assert!(a.as_str().len() >= 18);
    }

    #[test]
    fn ordered_ids_have_nineteen_digits_and_sort_by_time_as_text() {
        let start = super::super::Time::from_unix_micros(1_763_700_000_000_000);
        let mut previous = SessionId::generate_at(start);
        for step in 1..200i64 {
            let at = super::super::Time::from_unix_micros(start.unix_micros() + step * 1000);
            let id = SessionId::generate_at(at);
            assert_eq!(id.as_str().len(), 19);
            assert!(
                id.as_str().parse::<i64>().is_ok(),
                "fits a signed 64-bit integer"
            );
            assert!(id > previous, "{id} after {previous}");
            previous = id;
        }
        // Thirty years on, still 19 digits and still a signed 64-bit number.
        let late =
            super::super::Time::from_unix_micros(start.unix_micros() + 30 * 31_557_600_000_000);
        let id = SessionId::generate_at(late);
        assert_eq!(id.as_str().len(), 19);
        assert!(id.as_str().parse::<i64>().is_ok());
    }
}
