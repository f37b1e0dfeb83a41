//! Bearer JWT verification: signature with a key pinned to one algorithm (chosen by `kid`,
//! never by the token alone), then `exp`, `nbf`, `iss` and `aud` against our clock. `none`
//! and symmetric algorithms are never accepted. Keys and validation settings are built once
//! at start-up.

use std::collections::HashSet;

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use super::keys::{EmbeddedKey, VerifyKey};
use crate::domain::{Error, Permissions, Principal, PrincipalKind, Time};

/// Longest bearer JWT accepted, in bytes.
const MAX_JWT_LEN: usize = 8 * 1024;
/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: i64 = 30;

#[derive(Clone, Debug)]
pub struct JwtSettings {
    pub issuer: String,
    pub audience: String,
}

/// Claims we read (and `token mint` writes).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    #[serde(with = "audience")]
    pub aud: Vec<String>,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

mod audience {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }

    pub fn serialize<S: Serializer>(aud: &[String], s: S) -> Result<S::Ok, S::Error> {
        match aud {
            [one] => s.serialize_str(one),
            many => s.collect_seq(many),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        })
    }
}

struct PinnedKey {
    kid: Option<String>,
    key: jsonwebtoken::DecodingKey,
    validation: Validation,
}

/// Verifies bearer JWTs.
pub struct JwtVerifier {
    keys: Vec<PinnedKey>,
    settings: JwtSettings,
}

fn invalid() -> Error {
    Error::unauthenticated("AUTH-7fs1e", "Token is invalid or has expired")
}

impl JwtVerifier {
    pub fn new(keys: Vec<VerifyKey>, settings: JwtSettings) -> Self {
        let keys = keys
            .into_iter()
            .map(|k| {
                let mut validation = Validation::new(k.algorithm);
                // exp/nbf are checked below against the server's clock.
                validation.validate_exp = false;
                validation.validate_nbf = false;
                validation.required_spec_claims =
                    HashSet::from(["exp".to_owned(), "sub".to_owned()]);
                validation.set_issuer(&[settings.issuer.as_str()]);
                validation.set_audience(&[settings.audience.as_str()]);
                PinnedKey {
                    kid: k.kid,
                    key: k.key,
                    validation,
                }
            })
            .collect();
        Self { keys, settings }
    }

    pub fn settings(&self) -> &JwtSettings {
        &self.settings
    }

    pub fn verify(&self, token: &str, now: Time) -> Result<Principal, Error> {
        if token.len() > MAX_JWT_LEN {
            return Err(invalid());
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        let claims = self
            .keys
            .iter()
            .filter(|k| k.validation.algorithms.contains(&header.alg))
            .filter(|k| match (&header.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                (Some(_), None) | (None, _) => true,
            })
            .find_map(|k| jsonwebtoken::decode::<Claims>(token, &k.key, &k.validation).ok())
            .ok_or_else(invalid)?
            .claims;
        let now_secs = now.unix_micros().div_euclid(1_000_000);
        if claims.exp + LEEWAY_SECS <= now_secs {
            return Err(invalid());
        }
        if claims.nbf.is_some_and(|nbf| nbf - LEEWAY_SECS > now_secs) {
            return Err(invalid());
        }
        if claims.sub.is_empty() {
            return Err(invalid());
        }
        let scope = claims
            .scope
            .as_deref()
            .unwrap_or_default()
            .split_whitespace();
        let permissions =
            Permissions::from_names(claims.permissions.iter().map(String::as_str).chain(scope));
        Ok(Principal {
            user_id: claims.sub,
            permissions,
            kind: PrincipalKind::Jwt,
        })
    }
}

/// Signs a token with the embedded key (`sessiond token mint`).
pub fn mint(
    key: &EmbeddedKey,
    settings: &JwtSettings,
    subject: &str,
    permissions: &[String],
    ttl: std::time::Duration,
    now: Time,
) -> anyhow::Result<String> {
    let now_secs = now.unix_micros().div_euclid(1_000_000);
    let claims = Claims {
        sub: subject.to_owned(),
        iss: settings.issuer.clone(),
        aud: vec![settings.audience.clone()],
        exp: now_secs.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
        nbf: Some(now_secs),
        iat: Some(now_secs),
        permissions: permissions.to_vec(),
        scope: None,
    };
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(super::keys::EMBEDDED_KEY_ID.to_owned());
    Ok(jsonwebtoken::encode(
        &header,
        &claims,
        &key.encoding_key()?,
    )?)
}
