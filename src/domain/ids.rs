//! Identifiers. Ids are decimal numbers drawn from a CSPRNG (the shape ZITADEL clients know),
//! parsed once at the boundary: non-empty, at most 200 characters, no control characters.

use std::fmt;

use rand::Rng;

use super::Error;

const MAX_ID_LEN: usize = 200;

/// A fresh random id: a 63-bit number with 18 or 19 decimal digits.
pub fn new_numeric_id() -> String {
    let n: u64 = rand::thread_rng().gen_range(100_000_000_000_000_000..=i64::MAX as u64);
    n.to_string()
}

fn check_id(value: &str, what: &'static str, error_id: &'static str) -> Result<(), Error> {
    let chars = value.chars().count();
    if chars == 0 || chars > MAX_ID_LEN {
        return Err(Error::invalid_argument(
            error_id,
            format!("{what}: value length must be between 1 and {MAX_ID_LEN} runes, inclusive"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid_argument(
            error_id,
            format!("{what}: must not contain control characters"),
        ));
    }
    Ok(())
}

macro_rules! id_type {
    ($name:ident, $what:literal, $error_id:literal) => {
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

id_type!(SessionId, "session id", "SESSIOND-ID-INVALID");
id_type!(UserId, "user id", "SESSIOND-USERID-INVALID");

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
    fn generated_ids_are_decimal_and_distinct() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_ne!(a, b);
        assert!(a.as_str().chars().all(|c| c.is_ascii_digit()));
        assert!(a.as_str().len() >= 18);
    }
}
