//! Credentials → [`Principal`]. A bearer credential is either one of our session tokens
//! (recognised by its prefix; the caller becomes that session's user) or a JWT verified
//! against the configured keys (the caller is its subject, with the permissions it grants).
//! The stored session decides whether a session token is still good: a revoked or expired
//! session authenticates nobody, whatever the client holds.

mod jwt;
mod keys;

use std::sync::Arc;

use crate::core::Core;
use crate::domain::{Error, Principal, SessionToken};

use crate::domain::error_ids;
pub use jwt::{Claims, JwtSettings, JwtVerifier, mint};
pub use keys::{EMBEDDED_KEY_FILE, EmbeddedKey, KeySource, VerifyKey, load_keys};

/// Turns request credentials into a principal.
#[derive(Clone)]
pub struct Authenticator {
    jwt: Arc<JwtVerifier>,
    core: Core,
}

impl Authenticator {
    pub fn new(jwt: JwtVerifier, core: Core) -> Self {
        Self {
            jwt: Arc::new(jwt),
            core,
        }
    }

    /// Authenticates an `Authorization` header value (`Bearer <JWT or session token>`).
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, Error> {
        let header = authorization
            .filter(|h| !h.trim().is_empty())
            .ok_or_else(|| {
                Error::unauthenticated(error_ids::AUTH_HEADER_MISSING, "auth header missing")
            })?;
        let credential = bearer(header).ok_or_else(|| {
            Error::unauthenticated(
                error_ids::AUTH_NOT_BEARER,
                "auth header must use the Bearer scheme",
            )
        })?;
        if SessionToken::looks_like_session_token(credential) {
            self.core
                .authenticate_session_token(&SessionToken::from_client(credential))
                .await
        } else {
            self.jwt.verify(credential, self.core.now())
        }
    }

    pub fn core(&self) -> &Core {
        &self.core
    }
}

/// The credential of a `Bearer` authorization header (scheme compared without case).
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, credential) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credential.trim())
        .filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer "), None);
    }
}
