//! Session tokens: 256 random bits from the OS CSPRNG, base64url, behind a recognisable
//! prefix. The plaintext goes to the client once; only its SHA-256 is ever stored, and
//! lookups go by that hash. `Debug` never prints the secret.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix of every session token, so leaked tokens are easy to recognise and scan for.
pub const TOKEN_PREFIX: &str = "sdst_";

/// A session token in clear. Exists only between issuing it and writing the response, or
/// between reading a request header and hashing it.
#[derive(Clone)]
pub struct SessionToken(String);

impl SessionToken {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Wraps a token presented by a client. Any string is accepted: an unknown token simply
    /// matches no stored hash.
    pub fn from_client(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Whether a bearer credential looks like one of our session tokens rather than a JWT.
    pub fn looks_like_session_token(value: &str) -> bool {
        value.starts_with(TOKEN_PREFIX)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn into_exposed(self) -> String {
        self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// SHA-256 of a session token: what the store keeps.
#[derive(Clone, Copy, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq for TokenHash {
    /// Constant time, so comparing a presented token with the stored one leaks no prefix.
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_long_and_distinct() {
        let a = SessionToken::generate();
        let b = SessionToken::generate();
        assert!(a.expose().starts_with(TOKEN_PREFIX));
        assert_eq!(a.expose().len(), TOKEN_PREFIX.len() + 43);
        assert_ne!(a.expose(), b.expose());
        assert!(a.hash() != b.hash());
        assert!(a.hash() == SessionToken::from_client(a.expose()).hash());
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let t = SessionToken::generate();
        assert!(!format!("{t:?}").contains(t.expose()));
    }
}
