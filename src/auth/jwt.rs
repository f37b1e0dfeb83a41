//! Bearer JWT verification: signature with a key pinned to one algorithm (chosen by `kid`,
//! never by the token alone), then `exp`, `nbf`, `iss` and `aud` against our clock. `none`
//! and symmetric algorithms are never accepted. Keys and validation settings are built once
//! at start-up.
//!
//! A verified token is remembered (by its exact text) so a client that sends the same bearer
//! on every request pays for the Ed25519/RSA signature check once: the cache holds only
//! tokens whose signature, issuer and audience passed, and `exp`/`nbf` are still checked
//! against the clock on every use. It is bounded; when full it first drops expired entries,
//! then starts over, so a flood of distinct valid tokens costs verifies, never memory.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use super::keys::{EmbeddedKey, VerifyKey};
use crate::domain::error_ids;
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

/// Verified tokens remembered at most.
const CACHE_CAPACITY: usize = 4096;

/// What a verified token grants, and when.
#[derive(Clone)]
struct Verified {
    principal: Principal,
    exp: i64,
    nbf: Option<i64>,
}

/// Verifies bearer JWTs.
pub struct JwtVerifier {
    keys: Vec<PinnedKey>,
    settings: JwtSettings,
    cache: Mutex<HashMap<Box<str>, Verified>>,
}

fn invalid() -> Error {
    Error::unauthenticated(
        error_ids::AUTH_TOKEN_INVALID,
        "Token is invalid or has expired",
    )
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
        Self {
            keys,
            settings,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &JwtSettings {
        &self.settings
    }

    pub fn verify(&self, token: &str, now: Time) -> Result<Principal, Error> {
        if token.len() > MAX_JWT_LEN {
            return Err(invalid());
        }
        let cached = self.lock_cache().get(token).cloned();
        let verified = match cached {
            Some(verified) => verified,
            None => {
                let verified = self.check_signature(token)?;
                self.remember(token, &verified, now);
                verified
            }
        };
        let now_secs = now.unix_micros().div_euclid(1_000_000);
        if verified.exp + LEEWAY_SECS <= now_secs {
            return Err(invalid());
        }
        if verified.nbf.is_some_and(|nbf| nbf - LEEWAY_SECS > now_secs) {
            return Err(invalid());
        }
        Ok(verified.principal)
    }

    /// Signature, issuer, audience and claim shape: everything that does not depend on time.
    fn check_signature(&self, token: &str) -> Result<Verified, Error> {
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
        Ok(Verified {
            principal: Principal {
                user_id: claims.sub,
                permissions,
                kind: PrincipalKind::Jwt,
            },
            exp: claims.exp,
            nbf: claims.nbf,
        })
    }

    fn remember(&self, token: &str, verified: &Verified, now: Time) {
        let now_secs = now.unix_micros().div_euclid(1_000_000);
        if verified.exp + LEEWAY_SECS <= now_secs {
            return;
        }
        let mut cache = self.lock_cache();
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, v| v.exp + LEEWAY_SECS > now_secs);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(token.into(), verified.clone());
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Verified>> {
        // The map holds only fully inserted entries; a panic elsewhere cannot leave it torn.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier_and_key() -> (JwtVerifier, EmbeddedKey, JwtSettings, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let key = EmbeddedKey::load_or_create(dir.path()).unwrap();
        let settings = JwtSettings {
            issuer: "https://issuer.test".into(),
            audience: "sessiond".into(),
        };
        let verifier = JwtVerifier::new(vec![key.verify_key().unwrap()], settings.clone());
        (verifier, key, settings, dir)
    }

    #[test]
    fn a_remembered_token_still_expires() {
        let (verifier, key, settings, _dir) = verifier_and_key();
        let start = Time::from_unix_micros(1_800_000_000_000_000);
        let ttl = std::time::Duration::from_secs(60);
        let token = mint(&key, &settings, "u1", &["session.read".into()], ttl, start).unwrap();
        assert_eq!(verifier.verify(&token, start).unwrap().user_id, "u1");
        assert_eq!(verifier.lock_cache().len(), 1);
        // Cached now; still good within its lifetime, refused once exp (plus leeway) passed.
        let later = Time::from_unix_micros(start.unix_micros() + 50_000_000);
        assert!(verifier.verify(&token, later).is_ok());
        let expired = Time::from_unix_micros(start.unix_micros() + (60 + LEEWAY_SECS) * 1_000_000);
        assert!(verifier.verify(&token, expired).is_err());
    }

    #[test]
    fn only_verified_tokens_are_remembered_and_the_cache_is_bounded() {
        let (verifier, key, settings, _dir) = verifier_and_key();
        let now = Time::from_unix_micros(1_800_000_000_000_000);
        let ttl = std::time::Duration::from_secs(600);
        let token = mint(&key, &settings, "u1", &[], ttl, now).unwrap();
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert!(verifier.verify(&tampered, now).is_err());
        assert_eq!(verifier.lock_cache().len(), 0);

        for i in 0..CACHE_CAPACITY + 10 {
            let t = mint(&key, &settings, &format!("u{i}"), &[], ttl, now).unwrap();
            assert_eq!(verifier.verify(&t, now).unwrap().user_id, format!("u{i}"));
        }
        assert!(verifier.lock_cache().len() <= CACHE_CAPACITY);
    }
}
