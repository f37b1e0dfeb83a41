//! Passkeys (WebAuthn with user verification), through `webauthn-rs`: registering a
//! credential for a user, the challenge a session is given, and the check of an assertion.
//!
//! The relying party id and the origins browsers may call from are settings
//! ([`PasskeySettings`]); a request naming another `domain` is refused. Every ceremony's
//! state (the challenge) is kept in the store, so any replica can finish what another began;
//! a registration and a session challenge are valid for [`CEREMONY_TIMEOUT`]. A check consumes
//! its challenge and moves the credential's signature counter in one store write, so a
//! challenge is answered once and a counter never goes backwards: an assertion whose counter
//! does not move forward (a cloned authenticator) is refused and logged. Every failed
//! assertion counts toward the lockout limit, like a failed password, and a locked user's
//! assertions are refused; unlike a password, an assertion is not registered as a check in
//! progress before it is verified, and unlike a code its pass needs no record of its own (no
//! guess can pass, so parallel tries need no bound): a passed one costs one store write, the
//! session's.
//!
//! What this module does not do: U2F security keys (challenges other than
//! `USER_VERIFICATION_REQUIREMENT_REQUIRED` find none), registration links, attestation
//! trust (registration asks for no attestation, as ZITADEL does).

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use webauthn_rs::prelude::{
    Credential, CredentialID, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, Url, Uuid, WebauthnError,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};

use super::super::Core;
use super::super::checks::CheckIds;
use super::FactorChange;
use crate::domain::{
    Error, ErrorKind, Permission, Principal, SessionId, Time, User, UserId, error_ids,
};
use crate::store::{CheckOutcome, PasskeyChallenge, PasskeyUse, PendingPasskey, StoredPasskey};

/// How long a registration or a session's challenge may be answered (also the `timeout`
/// the browser is given).
pub const CEREMONY_TIMEOUT: Duration = Duration::from_secs(300);

/// The relying party: its id (a domain), the name authenticators show, and the origins
/// (`scheme://host[:port]`) browsers may run a ceremony from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasskeySettings {
    pub rp_id: String,
    pub rp_name: String,
    pub origins: Vec<String>,
}

impl Default for PasskeySettings {
    fn default() -> Self {
        Self {
            rp_id: "localhost".into(),
            rp_name: "sessiond".into(),
            origins: vec!["http://localhost:8080".into()],
        }
    }
}

impl PasskeySettings {
    /// The relying party these settings describe, or why they cannot describe one (an
    /// origin that is no URL, or whose host is not the relying party id or below it).
    pub fn relying_party(&self) -> Result<Webauthn, String> {
        let mut origins = self
            .origins
            .iter()
            .map(|o| Url::parse(o).map_err(|e| format!("webauthn origin {o:?} is not a URL: {e}")));
        let first = origins
            .next()
            .ok_or_else(|| "at least one webauthn origin is needed".to_owned())??;
        let mut builder = WebauthnBuilder::new(&self.rp_id, &first)
            .map_err(|e| {
                format!(
                    "webauthn origin {first} does not belong to the relying party id {:?}: {e}",
                    self.rp_id
                )
            })?
            .rp_name(&self.rp_name)
            .timeout(CEREMONY_TIMEOUT);
        for origin in origins {
            builder = builder.append_allowed_origin(&origin?);
        }
        builder
            .build()
            .map_err(|e| format!("webauthn settings: {e}"))
    }
}

/// The relying party of the core, built once from its settings.
pub(in crate::core) fn relying_party(settings: &PasskeySettings) -> Option<Arc<Webauthn>> {
    match settings.relying_party() {
        Ok(rp) => Some(Arc::new(rp)),
        Err(e) => {
            tracing::error!(error = %e, "passkeys are off: invalid webauthn settings");
            None
        }
    }
}

/// How strongly a WebAuthn challenge asks the authenticator to verify the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserVerification {
    Required,
    Preferred,
    Discouraged,
}

/// A requested WebAuthn challenge.
#[derive(Clone, Debug)]
pub struct PasskeyChallengeRequest {
    /// The relying party id the client names; empty: the server's.
    pub domain: String,
    pub user_verification: UserVerification,
}

/// A client's answer to a WebAuthn ceremony, as JSON (`{id, rawId, type, response}`),
/// parsed.
#[derive(Clone)]
pub struct PasskeyAssertion(Box<PublicKeyCredential>);

impl PasskeyAssertion {
    /// Parses `credentialAssertionData`. Base64 fields may be padded or use the standard
    /// alphabet; `userHandle` may be empty.
    pub fn parse(mut value: serde_json::Value) -> Result<Self, Error> {
        normalize_base64(
            &mut value,
            &[
                "authenticatorData",
                "clientDataJSON",
                "signature",
                "userHandle",
            ],
        );
        serde_json::from_value::<PublicKeyCredential>(value)
            .map(|c| Self(Box::new(c)))
            .map_err(|e| format_error("credentialAssertionData", &e))
    }
}

impl std::fmt::Debug for PasskeyAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasskeyAssertion(***)")
    }
}

/// A client's answer to a registration (`{id, rawId, type, response: {attestationObject,
/// clientDataJSON}}`), parsed.
pub struct PasskeyAttestation(Box<RegisterPublicKeyCredential>);

impl PasskeyAttestation {
    pub fn parse(mut value: serde_json::Value) -> Result<Self, Error> {
        normalize_base64(&mut value, &["attestationObject", "clientDataJSON"]);
        serde_json::from_value::<RegisterPublicKeyCredential>(value)
            .map(|c| Self(Box::new(c)))
            .map_err(|e| format_error("publicKeyCredential", &e))
    }
}

impl std::fmt::Debug for PasskeyAttestation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasskeyAttestation(***)")
    }
}

fn format_error(field: &str, e: &serde_json::Error) -> Error {
    Error::invalid_argument(
        error_ids::PASSKEY_FORMAT,
        format!("{field}: not a WebAuthn credential ({e})"),
    )
}

/// Rewrites `rawId` and the named fields of `response` as unpadded base64url, so padded or
/// standard-alphabet encodings parse too. Anything that is not a string is left for the
/// parser to refuse.
fn normalize_base64(value: &mut serde_json::Value, response_fields: &[&str]) {
    fn url_safe(text: &mut String) {
        *text = text
            .trim_end_matches('=')
            .chars()
            .map(|c| match c {
                '+' => '-',
                '/' => '_',
                other => other,
            })
            .collect();
    }
    if let Some(serde_json::Value::String(raw)) = value.get_mut("rawId") {
        url_safe(raw);
    }
    if let Some(response) = value.get_mut("response") {
        for field in response_fields {
            if let Some(serde_json::Value::String(text)) = response.get_mut(*field) {
                url_safe(text);
            }
        }
    }
}

/// A passkey as ListPasskeys shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasskeyInfo {
    pub id: String,
    pub name: String,
    pub created_at: Time,
    pub last_used_at: Option<Time>,
    pub user_verified: bool,
    pub sign_count: i64,
    /// The authenticator model (AAGUID), hyphenated.
    pub aaguid: String,
}

/// A begun registration: what RegisterPasskey answers.
#[derive(Debug)]
pub struct PasskeyRegistrationStart {
    pub passkey_id: String,
    /// `{publicKey: {rp, user, challenge, pubKeyCredParams, …}}` for `credentials.create`.
    pub options: serde_json::Value,
    pub change: FactorChange,
}

/// A challenge ready to be given to a session once it is written.
pub(in crate::core) struct ChallengeDraft {
    pub(in crate::core) user_id: UserId,
    state: String,
    rp_id: String,
    /// `{publicKey: {challenge, rpId, allowCredentials, userVerification, timeout}}`.
    pub(in crate::core) options: serde_json::Value,
}

impl ChallengeDraft {
    pub(in crate::core) fn for_session(&self, session: &SessionId, at: Time) -> PasskeyChallenge {
        PasskeyChallenge {
            session_id: session.clone(),
            user_id: self.user_id.clone(),
            state: self.state.clone(),
            rp_id: self.rp_id.clone(),
            created_at: at,
        }
    }
}

/// A passed WebAuthn check, not yet written: whether the authenticator verified the user,
/// and what the session's write applies with it.
pub(in crate::core) struct PasskeyPass {
    pub(in crate::core) user_verified: bool,
    pub(in crate::core) used: PasskeyUse,
}

/// Why an assertion was refused.
enum Refusal {
    Invalid(WebauthnError),
    Cloned { stored: i64, presented: Option<u32> },
}

/// The user handle authenticators keep for a user: a UUID derived from the user id.
fn user_handle(user: &UserId) -> Uuid {
    let digest = Sha256::digest(user.as_str().as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(bytes)
}

/// A server fault of the passkey machinery (a client's bad credential is never one).
fn internal(what: &'static str, e: impl std::fmt::Display) -> Error {
    Error::internal(
        error_ids::PASSKEY_SERVER,
        std::io::Error::other(format!("{what}: {e}")),
    )
}

fn stored_passkey(row: &StoredPasskey) -> Result<Passkey, Error> {
    let mut credential: Credential =
        serde_json::from_str(&row.credential).map_err(|e| internal("stored passkey", e))?;
    // The counter column is the authority: checks move it, not the serialised credential.
    credential.counter = u32::try_from(row.sign_count).unwrap_or(u32::MAX);
    Ok(Passkey::from(credential))
}

/// The AAGUID (authenticator model) in a registration's attestation object, if it carries
/// one.
fn aaguid(attestation: &RegisterPublicKeyCredential) -> Option<[u8; 16]> {
    use webauthn_rs_core::internals::AuthenticatorData;
    use webauthn_rs_core::proto::Registration;
    let object: serde_cbor_2::Value =
        serde_cbor_2::from_slice(attestation.response.attestation_object.as_ref()).ok()?;
    let serde_cbor_2::Value::Map(fields) = object else {
        return None;
    };
    let auth_data = fields.iter().find_map(|(k, v)| match (k, v) {
        (serde_cbor_2::Value::Text(name), serde_cbor_2::Value::Bytes(data))
            if name == "authData" =>
        {
            Some(data)
        }
        _ => None,
    })?;
    let data = AuthenticatorData::<Registration>::try_from(auth_data.as_slice()).ok()?;
    data.acd.map(|acd| acd.aaguid)
}

fn not_pending() -> Error {
    Error::failed_precondition(
        error_ids::PASSKEY_NOT_PENDING,
        "no passkey registration of this id is pending for the user (or it expired)",
    )
}

pub(in crate::core) fn no_challenge() -> Error {
    Error::failed_precondition(
        error_ids::PASSKEY_NO_CHALLENGE,
        "no WebAuthN challenge is waiting for an answer on this session: request one first",
    )
}

impl Core {
    fn relying_party(&self) -> Result<&Webauthn, Error> {
        self.relying_party.as_deref().ok_or_else(|| {
            Error::new(
                ErrorKind::FailedPrecondition,
                error_ids::PASSKEY_DOMAIN,
                "passkeys are not configured on this server",
            )
        })
    }

    /// The relying party id a request names: empty means the server's own; any other is
    /// refused.
    fn rp_id(&self, domain: &str) -> Result<String, Error> {
        let ours = &self.settings.passkeys.rp_id;
        if domain.is_empty() || domain == ours {
            Ok(ours.clone())
        } else {
            Err(Error::invalid_argument(
                error_ids::PASSKEY_DOMAIN,
                format!("domain: this server's relying party id is {ours:?}"),
            ))
        }
    }

    fn expired(&self, created_at: Time) -> bool {
        let age = self
            .clock
            .now()
            .unix_micros()
            .saturating_sub(created_at.unix_micros());
        age > i64::try_from(CEREMONY_TIMEOUT.as_micros()).unwrap_or(i64::MAX)
    }

    /// Begins a passkey registration (replacing a pending one): the options for the
    /// browser's `credentials.create`, with the user's passkeys excluded.
    pub async fn register_passkey(
        &self,
        principal: &Principal,
        user: &UserId,
        domain: &str,
    ) -> Result<PasskeyRegistrationStart, Error> {
        let owner = self
            .factor_owner(principal, user, Permission::UserWrite)
            .await?;
        let rp_id = self.rp_id(domain)?;
        let rp = self.relying_party()?;
        let existing: Vec<CredentialID> = self
            .store
            .passkeys(user)
            .await?
            .into_iter()
            .map(|p| p.credential_id)
            .collect();
        let (options, state) = rp
            .start_passkey_registration(
                user_handle(user),
                owner.login_name.as_str(),
                &owner.display_name,
                (!existing.is_empty()).then_some(existing),
            )
            .map_err(|e| internal("webauthn registration", e))?;
        let passkey_id = crate::domain::new_numeric_id();
        let pending = PendingPasskey {
            id: passkey_id.clone(),
            user_id: user.clone(),
            state: serde_json::to_string(&state).map_err(|e| internal("webauthn state", e))?,
            rp_id,
            created_at: self.clock.now(),
        };
        self.store.begin_passkey_registration(&pending).await?;
        Ok(PasskeyRegistrationStart {
            passkey_id,
            options: serde_json::to_value(&options).map_err(|e| internal("webauthn options", e))?,
            change: self.factor_details(&owner, 0),
        })
    }

    /// Completes a registration with the browser's answer; with `revoke`, ends the user's
    /// other sessions.
    pub async fn verify_passkey_registration(
        &self,
        principal: &Principal,
        user: &UserId,
        passkey_id: &str,
        answer: &PasskeyAttestation,
        name: String,
        revoke: bool,
    ) -> Result<FactorChange, Error> {
        let owner = self
            .factor_owner(principal, user, Permission::UserWrite)
            .await?;
        let pending = self
            .store
            .passkey_registration(user, passkey_id)
            .await?
            .filter(|p| !self.expired(p.created_at))
            .ok_or_else(not_pending)?;
        let state: PasskeyRegistration =
            serde_json::from_str(&pending.state).map_err(|e| internal("webauthn state", e))?;
        let passkey = self
            .relying_party()?
            .finish_passkey_registration(&answer.0, &state)
            .map_err(|e| {
                Error::invalid_argument(
                    error_ids::PASSKEY_REGISTRATION_INVALID,
                    format!("publicKeyCredential: the registration does not verify ({e})"),
                )
            })?;
        let credential = Credential::from(passkey.clone());
        let stored = StoredPasskey {
            id: pending.id,
            user_id: user.clone(),
            credential_id: credential.cred_id.to_vec(),
            credential: serde_json::to_string(&credential)
                .map_err(|e| internal("webauthn credential", e))?,
            public_key: serde_json::to_string(&credential.cred)
                .map_err(|e| internal("webauthn public key", e))?,
            sign_count: i64::from(credential.counter),
            aaguid: aaguid(&answer.0).unwrap_or_default().to_vec(),
            name,
            user_verified: credential.user_verified,
            rp_id: pending.rp_id,
            created_at: self.clock.now(),
            last_used_at: None,
        };
        let revocation = self.factor_revocation(principal, revoke);
        match self
            .store
            .complete_passkey_registration(&stored, revocation.as_ref())
            .await
        {
            Ok(Some(revoked)) => Ok(self.factor_details(&owner, revoked)),
            Ok(None) => Err(not_pending()),
            Err(crate::store::StoreError::Duplicate(_)) => Err(Error::new(
                ErrorKind::AlreadyExists,
                error_ids::PASSKEY_TAKEN,
                "this credential is already registered",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// A user's passkeys (`user.read`, or the user itself).
    pub async fn list_passkeys(
        &self,
        principal: &Principal,
        user: &UserId,
    ) -> Result<Vec<PasskeyInfo>, Error> {
        self.factor_owner(principal, user, Permission::UserRead)
            .await?;
        Ok(self
            .store
            .passkeys(user)
            .await?
            .into_iter()
            .map(|p| PasskeyInfo {
                aaguid: <[u8; 16]>::try_from(p.aaguid.as_slice())
                    .map(|b| Uuid::from_bytes(b).hyphenated().to_string())
                    .unwrap_or_default(),
                id: p.id,
                name: p.name,
                created_at: p.created_at,
                last_used_at: p.last_used_at,
                user_verified: p.user_verified,
                sign_count: p.sign_count,
            })
            .collect())
    }

    /// Removes one passkey (`user.write`, or the user itself); with `revoke`, ends the
    /// user's other sessions.
    pub async fn remove_passkey(
        &self,
        principal: &Principal,
        user: &UserId,
        passkey_id: &str,
        revoke: bool,
    ) -> Result<FactorChange, Error> {
        let owner = self
            .factor_owner(principal, user, Permission::UserWrite)
            .await?;
        let revocation = self.factor_revocation(principal, revoke);
        match self
            .store
            .remove_passkey(user, passkey_id, revocation.as_ref())
            .await?
        {
            Some(revoked) => Ok(self.factor_details(&owner, revoked)),
            None => Err(Error::not_found(
                error_ids::PASSKEY_NOT_FOUND,
                "the user has no passkey of this id",
            )),
        }
    }

    /// The challenge of a session's WebAuthn request for `user`: the request options for
    /// `credentials.get`, offering the user's passkeys of the relying party.
    pub(in crate::core) async fn passkey_challenge(
        &self,
        user: &User,
        request: &PasskeyChallengeRequest,
    ) -> Result<ChallengeDraft, Error> {
        let rp_id = self.rp_id(&request.domain)?;
        if request.user_verification != UserVerification::Required {
            return Err(Error::failed_precondition(
                error_ids::PASSKEY_NONE,
                "the user has no security keys; passkeys answer challenges with \
                 userVerificationRequirement USER_VERIFICATION_REQUIREMENT_REQUIRED",
            ));
        }
        let passkeys = self
            .store
            .passkeys(&user.id)
            .await?
            .iter()
            .filter(|p| p.rp_id == rp_id)
            .map(stored_passkey)
            .collect::<Result<Vec<_>, _>>()?;
        if passkeys.is_empty() {
            return Err(Error::failed_precondition(
                error_ids::PASSKEY_NONE,
                "the user has no passkey for this domain",
            ));
        }
        let (options, state) = self
            .relying_party()?
            .start_passkey_authentication(&passkeys)
            .map_err(|e| internal("webauthn challenge", e))?;
        Ok(ChallengeDraft {
            user_id: user.id.clone(),
            state: serde_json::to_string(&state).map_err(|e| internal("webauthn state", e))?,
            rp_id,
            options: serde_json::to_value(&options).map_err(|e| internal("webauthn options", e))?,
        })
    }

    /// The session check: an assertion answering the session's challenge, by one of the
    /// user's passkeys. A refused assertion counts toward the lockout limit at once; a passed
    /// one is written with the session ([`PasskeyPass`]), which consumes the challenge, moves
    /// the counter and ends the counted check in one transaction.
    pub(in crate::core) async fn check_passkey(
        &self,
        user: &User,
        session: Option<&SessionId>,
        assertion: &PasskeyAssertion,
    ) -> Result<PasskeyPass, Error> {
        let session = session.ok_or_else(no_challenge)?;
        let credential = &assertion.0;
        let (challenge, stored) = self
            .store
            .passkey_check(session, &credential.raw_id)
            .await?
            .filter(|(c, _)| c.user_id == user.id && !self.expired(c.created_at))
            .ok_or_else(no_challenge)?;
        let foreign = || {
            Error::failed_precondition(
                error_ids::PASSKEY_FOREIGN,
                "the credential is not one of the user's passkeys",
            )
        };
        if let Some(handle) = credential.get_user_unique_id()
            && !handle.is_empty()
            && handle != user_handle(&user.id).as_bytes()
        {
            return Err(foreign());
        }
        let stored = stored
            .filter(|p| p.user_id == user.id && p.rp_id == challenge.rp_id)
            .ok_or_else(foreign)?;
        let state: PasskeyAuthentication =
            serde_json::from_str(&challenge.state).map_err(|e| internal("webauthn state", e))?;
        let rp = self.relying_party()?;
        // Not registered as a check in progress: an assertion cannot be guessed, so parallel
        // tries need no bound, and a pass costs no write of its own (it is recorded with the
        // session). A locked user is still refused, and a failure still counts.
        self.refuse_locked(user, CheckIds::FACTOR)?;
        let refusal = match rp.finish_passkey_authentication(credential, &state) {
            Err(WebauthnError::CredentialPossibleCompromise) => Refusal::Cloned {
                stored: stored.sign_count,
                presented: None,
            },
            Err(e) => Refusal::Invalid(e),
            // The challenge's copy of the counter may be older than the stored one: the
            // stored counter decides.
            Ok(result)
                if (result.counter() > 0 || stored.sign_count > 0)
                    && i64::from(result.counter()) <= stored.sign_count =>
            {
                Refusal::Cloned {
                    stored: stored.sign_count,
                    presented: Some(result.counter()),
                }
            }
            Ok(result) => {
                return Ok(PasskeyPass {
                    user_verified: result.user_verified(),
                    used: PasskeyUse {
                        user_id: user.id.clone(),
                        session_id: session.clone(),
                        challenge_created_at: challenge.created_at,
                        passkey_id: stored.id,
                        expected_sign_count: stored.sign_count,
                        sign_count: i64::from(result.counter()),
                        at: self.clock.now(),
                    },
                });
            }
        };
        self.store
            .end_password_check(&user.id, CheckOutcome::FailedUnregistered)
            .await?;
        Err(match refusal {
            Refusal::Cloned {
                stored: known,
                presented,
            } => {
                tracing::warn!(
                    user_id = %user.id.as_str(),
                    passkey_id = %stored.id,
                    stored_sign_count = known,
                    presented_sign_count = ?presented,
                    "passkey assertion refused: its signature counter did not move forward (cloned authenticator?)"
                );
                Error::invalid_argument(
                    error_ids::PASSKEY_CLONED,
                    "the passkey's signature counter went backwards: the assertion is refused",
                )
            }
            Refusal::Invalid(e) => Error::invalid_argument(
                error_ids::PASSKEY_INVALID,
                format!("credentialAssertionData: the assertion does not verify ({e})"),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_must_belong_to_the_relying_party() {
        let ok = PasskeySettings {
            rp_id: "example.com".into(),
            rp_name: "x".into(),
            origins: vec![
                "https://login.example.com".into(),
                "https://example.com".into(),
            ],
        };
        assert!(ok.relying_party().is_ok());
        for origins in [
            vec![],
            vec!["https://evil.test".into()],
            vec!["not a url".into()],
        ] {
            let bad = PasskeySettings {
                origins,
                ..ok.clone()
            };
            assert!(bad.relying_party().is_err());
        }
    }

    #[test]
    fn padded_and_standard_base64_parse() {
        let value = serde_json::json!({
            "id": "AQID", "rawId": "AQI+/w==", "type": "public-key",
            "response": {"authenticatorData": "AQ==", "clientDataJSON": "e30", "signature": "AQ", "userHandle": ""}
        });
        let parsed = PasskeyAssertion::parse(value).expect("parses");
        assert_eq!(parsed.0.raw_id, vec![1, 2, 0x3e, 0xff]);
        assert!(PasskeyAssertion::parse(serde_json::json!({"id": 1})).is_err());
    }

    #[test]
    fn user_handles_are_stable_and_distinct() {
        let a = UserId::from_trusted("1".into());
        let b = UserId::from_trusted("2".into());
        assert_eq!(user_handle(&a), user_handle(&a));
        assert_ne!(user_handle(&a), user_handle(&b));
    }
}
