//! Self-service sign-in with a login name and a password, for clients that hold no bearer
//! JWT (a browser on the account page, a Kratos SDK's native login).
//!
//! A login flow is stateless: its id is the time it was issued, a random nonce and an
//! HMAC-SHA256 tag over both (the store's page-token key, under a scope of its own), so any
//! replica accepts it until it expires and nothing is written for it. A login opens the
//! session through the same path as CreateSession's user and password checks
//! ([`Core::open_session`]): the same lookup, the same lockout, the same re-check after the
//! write; the checked user is the session's creator.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;

use super::checks::{Checks, UserLookup};
use super::sessions::{CreateSession, SessionChange};
use super::{Core, TAG_LEN};
use crate::domain::{Error, LoginName, Password, Time, UserAgent, error_ids};

/// How long a login flow may be submitted after it was issued.
pub const LOGIN_FLOW_LIFESPAN: Duration = Duration::from_secs(3600);
/// The lifetime of a session opened by a login.
pub const LOGIN_SESSION_LIFESPAN: Duration = Duration::from_secs(24 * 3600);

const FLOW_SCOPE: &str = "login-flow";
const NONCE_LEN: usize = 8;

/// A login flow: its id and when it was issued and expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginFlow {
    pub id: String,
    pub issued_at: Time,
    pub expires_at: Time,
}

fn unknown_flow() -> Error {
    Error::not_found(
        error_ids::LOGIN_FLOW_UNKNOWN,
        "The login flow does not exist",
    )
}

impl Core {
    /// A new login flow, valid for [`LOGIN_FLOW_LIFESPAN`].
    pub async fn new_login_flow(&self) -> Result<LoginFlow, Error> {
        let issued_at = self.clock.now();
        let mut payload = issued_at.unix_micros().to_be_bytes().to_vec();
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        payload.extend_from_slice(&nonce);
        let tag = Self::tag(&self.page_key().await?, FLOW_SCOPE, &payload)?;
        payload.extend_from_slice(&tag);
        Ok(LoginFlow {
            id: URL_SAFE_NO_PAD.encode(payload),
            issued_at,
            expires_at: issued_at.saturating_add(LOGIN_FLOW_LIFESPAN),
        })
    }

    /// The login flow of `id`: NotFound (`LOGIN_FLOW_UNKNOWN`) unless this server issued it,
    /// FailedPrecondition (`LOGIN_FLOW_EXPIRED`) once it has expired.
    pub async fn login_flow(&self, id: &str) -> Result<LoginFlow, Error> {
        if id.len() > 64 {
            return Err(unknown_flow());
        }
        let bytes = URL_SAFE_NO_PAD.decode(id).map_err(|_| unknown_flow())?;
        if bytes.len() != 8 + NONCE_LEN + TAG_LEN {
            return Err(unknown_flow());
        }
        let (payload, tag) = bytes.split_at(8 + NONCE_LEN);
        let expected = Self::tag(&self.page_key().await?, FLOW_SCOPE, payload)?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_slice(), tag)) {
            return Err(unknown_flow());
        }
        let micros = payload
            .first_chunk::<8>()
            .map(|b| i64::from_be_bytes(*b))
            .ok_or_else(unknown_flow)?;
        let issued_at = Time::from_unix_micros(micros);
        let flow = LoginFlow {
            id: id.to_owned(),
            issued_at,
            expires_at: issued_at.saturating_add(LOGIN_FLOW_LIFESPAN),
        };
        if self.clock.now() >= flow.expires_at {
            return Err(Error::failed_precondition(
                error_ids::LOGIN_FLOW_EXPIRED,
                "The login flow expired, start a new one",
            ));
        }
        Ok(flow)
    }

    /// Opens a session for the user with `login_name` if `password` is theirs, with the
    /// rules of CreateSession's user and password checks (lockout included), for
    /// [`LOGIN_SESSION_LIFESPAN`].
    pub async fn login_with_password(
        &self,
        login_name: String,
        password: String,
        user_agent: UserAgent,
    ) -> Result<SessionChange, Error> {
        let password = Password::parse(password)?;
        let checks = Checks {
            user: Some(UserLookup::LoginName(LoginName::parse(login_name)?)),
            password: Some(password.clone()),
            ..Checks::default()
        };
        let request = CreateSession {
            checks,
            user_agent,
            lifetime: Some(LOGIN_SESSION_LIFESPAN),
            ..CreateSession::default()
        };
        match self.open_session(None, request).await {
            Err(e) if e.id() == error_ids::USER_NOT_FOUND => {
                // Both answers are the same; an unknown name also costs the one argon2id
                // computation a wrong password costs, so the answer's timing does not tell
                // which login names exist.
                let _ = self.passwords.hash(&password).await;
                Err(e)
            }
            result => result,
        }
    }
}
