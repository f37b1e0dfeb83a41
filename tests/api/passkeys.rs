//! Passkeys end to end, with a software authenticator signing real WebAuthn ceremonies:
//! registered through the UserService (gRPC, Connect, REST) and checked in SetSession after a
//! WebAuthN challenge; a challenge answered once, a counter that goes backwards refused,
//! failed assertions counted toward the lockout, hostile input refused in each face's shape.

use serde_json::{Value, json};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};

use sessiond::settings::Settings;

use crate::helpers::*;

/// The origin the software authenticator's client data names.
const ORIGIN: &str = "http://localhost:4000";

async fn passkey_app() -> TestApp {
    passkey_app_with(|s| s.max_password_attempts = 3).await
}

/// A server whose relying party accepts the software authenticator's origin.
pub(crate) async fn passkey_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(|s| {
        s.webauthn_origins = vec![ORIGIN.into()];
        configure(s);
    })
    .await
}

pub(crate) fn to_struct(value: Value) -> pbjson_types::Struct {
    serde_json::from_value(value).expect("a JSON object")
}

/// A Struct as JSON. Struct numbers are doubles; whole ones become integers again, as a
/// JavaScript client would read them.
pub(crate) fn from_struct(value: pbjson_types::Struct) -> Value {
    fn integral(value: &mut Value) {
        match value {
            Value::Number(n) => {
                if let Some(f) = n.as_f64()
                    && f.fract() == 0.0
                    && f.abs() < 9e15
                {
                    *value = json!(f as i64);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(integral),
            Value::Object(fields) => fields.values_mut().for_each(integral),
            _ => {}
        }
    }
    let mut json = serde_json::to_value(value).expect("JSON");
    integral(&mut json);
    json
}

/// A software authenticator that verifies its user.
pub(crate) fn authenticator() -> SoftPasskey {
    SoftPasskey::new(true)
}

/// RegisterPasskey, the authenticator's answer, VerifyPasskeyRegistration; the passkey id.
pub(crate) async fn register(
    api: &UserApi,
    auth: &str,
    user: &str,
    key: &mut SoftPasskey,
    name: &str,
) -> String {
    let started = ok(
        api,
        api.call::<RegisterPasskey>(
            Some(auth),
            user::RegisterPasskeyRequest {
                user_id: user.into(),
                domain: "localhost".into(),
                ..Default::default()
            },
        )
        .await,
    )
    .message;
    let options = from_struct(
        started
            .public_key_credential_creation_options
            .expect("creation options"),
    );
    assert_eq!(options["publicKey"]["rp"]["id"], "localhost", "{api}");
    assert_eq!(
        options["publicKey"]["authenticatorSelection"]["userVerification"], "required",
        "{api}"
    );
    let options: CreationChallengeResponse =
        serde_json::from_value(options).expect("webauthn creation options");
    let answer = key
        .do_registration(Url::parse(ORIGIN).expect("url"), options)
        .expect("the authenticator registers");
    ok(
        api,
        api.call::<VerifyPasskey>(
            Some(auth),
            user::VerifyPasskeyRegistrationRequest {
                user_id: user.into(),
                passkey_id: started.passkey_id.clone(),
                public_key_credential: Some(to_struct(
                    serde_json::to_value(&answer).expect("json"),
                )),
                passkey_name: name.into(),
            },
        )
        .await,
    );
    started.passkey_id
}

fn webauthn_challenge(domain: &str) -> v2::RequestChallenges {
    v2::RequestChallenges {
        web_auth_n: Some(v2::request_challenges::WebAuthN {
            domain: domain.into(),
            user_verification_requirement: v2::UserVerificationRequirement::Required as i32,
        }),
        ..Default::default()
    }
}

/// A session for `user` with a WebAuthN challenge: its id and the request options.
async fn challenged_session(sessions: &Api, auth: &str, user: &str) -> (String, Value) {
    let created = ok(
        sessions,
        sessions
            .create(
                Some(auth),
                v2::CreateSessionRequest {
                    challenges: Some(webauthn_challenge("localhost")),
                    ..create(user_check(user))
                },
            )
            .await,
    )
    .message;
    let options = created
        .challenges
        .and_then(|c| c.web_auth_n)
        .and_then(|w| w.public_key_credential_request_options)
        .map(from_struct)
        .expect("request options");
    (created.session_id, options)
}

/// The authenticator's assertion for a challenge's request options, as JSON.
pub(crate) fn assertion(key: &mut SoftPasskey, options: Value) -> Value {
    let options: RequestChallengeResponse =
        serde_json::from_value(options).expect("webauthn request options");
    let signed = key
        .do_authentication(Url::parse(ORIGIN).expect("url"), options)
        .expect("the authenticator signs");
    serde_json::to_value(&signed).expect("json")
}

pub(crate) fn with_webauthn(assertion: Value) -> v2::Checks {
    v2::Checks {
        web_auth_n: Some(v2::CheckWebAuthN {
            credential_assertion_data: Some(to_struct(assertion)),
        }),
        ..Default::default()
    }
}

/// An INVALID_ARGUMENT of any id (a malformed field or a credential that is none).
fn api_invalid<T: std::fmt::Debug>(api: &UserApi, outcome: Outcome<T>) -> Failure {
    match outcome {
        Ok(reply) => panic!("{api}: expected INVALID_ARGUMENT, got {reply:?}"),
        Err(failure) => {
            assert_eq!(failure.code, Code::InvalidArgument, "{api}: {failure:?}");
            failure
        }
    }
}

#[tokio::test]
async fn a_passkey_is_registered_and_signs_in_on_grpc_connect_and_rest() {
    let app = passkey_app().await;
    let auth = operator(&app);
    for (i, api) in app.user_apis().into_iter().enumerate() {
        let user = app
            .add_user_with_password(&format!("passkey{i}@example.com"), FACTOR_PASSWORD)
            .await;
        let id = user.id.as_str();
        let mut key = authenticator();
        let passkey_id = register(&api, &auth, id, &mut key, "laptop").await;

        let listed = ok(
            &api,
            api.call::<ListPasskeys>(
                Some(&auth),
                user::ListPasskeysRequest { user_id: id.into() },
            )
            .await,
        )
        .message;
        assert_eq!(listed.result.len(), 1, "{api}");
        assert_eq!(listed.result[0].id, passkey_id, "{api}");
        assert_eq!(listed.result[0].name, "laptop", "{api}");
        assert_eq!(
            listed.result[0].state,
            user::AuthFactorState::Ready as i32,
            "{api}"
        );
        let methods = ok(&api, api.methods(Some(&auth), id).await).message;
        assert!(
            methods
                .auth_method_types
                .contains(&(user::AuthenticationMethodType::Passkey as i32)),
            "{api}: {methods:?}"
        );

        let sessions = session_api(&app, &api);
        let (session_id, options) = challenged_session(&sessions, &auth, id).await;
        let public_key = &options["publicKey"];
        assert_eq!(public_key["rpId"], "localhost", "{api}");
        assert_eq!(public_key["userVerification"], "required", "{api}");
        assert_eq!(
            public_key["allowCredentials"].as_array().map(Vec::len),
            Some(1),
            "{api}"
        );
        let signed = assertion(&mut key, options);
        let passed = ok(
            &sessions,
            sessions
                .set(Some(&auth), set(&session_id, with_webauthn(signed)))
                .await,
        )
        .message;
        // The Kratos face lists the method; the admin face lists the passkey.
        let answer = whoami(&app, &passed.session_token).await;
        assert_eq!(answer.status, 200, "{api}: {}", answer.body);
        let methods: Vec<&str> = answer.json["authentication_methods"]
            .as_array()
            .map(|m| m.iter().filter_map(|m| m["method"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(methods, ["identifier_first", "webauthn"], "{api}");
        let listed = send(
            app.http
                .get(app.url(&format!("/auth/admin/api/users/{id}/factors")))
                .header("authorization", &auth),
        )
        .await;
        assert_eq!(listed.status, 200, "{api}: {}", listed.body);
        assert_eq!(listed.json["data"][0]["kind"], "passkey", "{api}");
        assert_eq!(listed.json["data"][0]["id"], passkey_id.as_str(), "{api}");
        assert_eq!(listed.json["data"][0]["signCount"], 1, "{api}");
        let session = session_of(&app, &sessions, &session_id).await;
        let factor = session
            .factors
            .and_then(|f| f.web_auth_n)
            .expect("a WebAuthN factor");
        assert!(factor.user_verified, "{api}");
        assert_eq!(
            factor.verified_at,
            Some(Timestamp::from(app.now())),
            "{api}"
        );
    }
}

#[tokio::test]
async fn a_check_answers_an_earlier_challenge_once() {
    let app = passkey_app().await;
    let auth = operator(&app);
    let api = app.user_api(UserProtocol::Grpc);
    let sessions = session_api(&app, &api);
    let user = app.add_user("once@example.com").await;
    let id = user.id.as_str();
    let mut key = authenticator();
    register(&api, &auth, id, &mut key, "key").await;

    let (session_id, options) = challenged_session(&sessions, &auth, id).await;
    let signed = assertion(&mut key, options);

    // A check in CreateSession has no earlier challenge to answer.
    let early = sessions
        .create(
            Some(&auth),
            create(v2::Checks {
                user: user_check(id).user,
                ..with_webauthn(signed.clone())
            }),
        )
        .await;
    fails(&sessions, early, Code::FailedPrecondition, "COMMAND-Ioqu5");

    ok(
        &sessions,
        sessions
            .set(Some(&auth), set(&session_id, with_webauthn(signed.clone())))
            .await,
    );
    // The challenge is spent: the same assertion again is refused.
    let replay = sessions
        .set(Some(&auth), set(&session_id, with_webauthn(signed)))
        .await;
    fails(&sessions, replay, Code::FailedPrecondition, "COMMAND-Ioqu5");
}

#[tokio::test]
async fn a_signature_counter_that_goes_backwards_is_refused() {
    let app = passkey_app().await;
    let auth = operator(&app);
    let api = app.user_api(UserProtocol::ConnectJson);
    let sessions = session_api(&app, &api);
    let user = app.add_user("cloned@example.com").await;
    let id = user.id.as_str();
    let mut key = authenticator();
    register(&api, &auth, id, &mut key, "key").await;

    // Two sessions, two challenges, signed in order: counters 1 and 2.
    let (first, first_options) = challenged_session(&sessions, &auth, id).await;
    let (second, second_options) = challenged_session(&sessions, &auth, id).await;
    let older = assertion(&mut key, first_options);
    let newer = assertion(&mut key, second_options);
    ok(
        &sessions,
        sessions
            .set(Some(&auth), set(&second, with_webauthn(newer)))
            .await,
    );
    // The older assertion now carries a counter below the stored one, as a copy of the
    // key would.
    let cloned = sessions
        .set(Some(&auth), set(&first, with_webauthn(older)))
        .await;
    fails(
        &sessions,
        cloned,
        Code::InvalidArgument,
        "SESSIOND-PASSKEY-COUNTER",
    );
    let session = session_of(&app, &sessions, &first).await;
    assert!(session.factors.and_then(|f| f.web_auth_n).is_none());
}

#[tokio::test]
async fn failed_assertions_count_toward_the_lockout_limit() {
    let app = passkey_app().await;
    let auth = operator(&app);
    let api = app.user_api(UserProtocol::Rest);
    let sessions = session_api(&app, &api);
    let user = app.add_user("locked@example.com").await;
    let id = user.id.as_str();
    let mut key = authenticator();
    register(&api, &auth, id, &mut key, "key").await;

    let (session_id, options) = challenged_session(&sessions, &auth, id).await;
    let mut forged = assertion(&mut key, options);
    // Another signature: the assertion no longer verifies.
    forged["response"]["signature"] = json!("MEUCIQDx");
    // A failure leaves the challenge usable; each one counts. The limit is 3.
    for _ in 0..3 {
        let refused = sessions
            .set(Some(&auth), set(&session_id, with_webauthn(forged.clone())))
            .await;
        fails(&sessions, refused, Code::InvalidArgument, "WEBAU-3M9si");
    }
    let (session_id, options) = challenged_session(&sessions, &auth, id).await;
    let good = assertion(&mut key, options);
    let locked = sessions
        .set(Some(&auth), set(&session_id, with_webauthn(good)))
        .await;
    fails(&sessions, locked, Code::FailedPrecondition, "COMMAND-SF3fg");
}

#[tokio::test]
async fn a_passed_assertion_clears_the_failures_before_it() {
    let app = passkey_app().await;
    let auth = operator(&app);
    let api = app.user_api(UserProtocol::Rest);
    let sessions = session_api(&app, &api);
    let user = app.add_user("cleared@example.com").await;
    let id = user.id.as_str();
    let mut key = authenticator();
    register(&api, &auth, id, &mut key, "key").await;
    // Two failures, a pass, two failures again: under the limit of 3 only if the pass
    // cleared the first two.
    for round in 0..2 {
        let (session_id, options) = challenged_session(&sessions, &auth, id).await;
        let good = assertion(&mut key, options);
        let mut forged = good.clone();
        forged["response"]["signature"] = json!("MEUCIQDx");
        for _ in 0..2 {
            let refused = sessions
                .set(Some(&auth), set(&session_id, with_webauthn(forged.clone())))
                .await;
            fails(&sessions, refused, Code::InvalidArgument, "WEBAU-3M9si");
        }
        let passed = sessions
            .set(Some(&auth), set(&session_id, with_webauthn(good)))
            .await;
        assert!(passed.is_ok(), "round {round}: {passed:?}");
    }
}

#[tokio::test]
async fn webauthn_refusals_and_hostile_input_are_client_errors_on_every_protocol() {
    let app = passkey_app().await;
    let auth = operator(&app);
    let owner = app.add_user("owner@example.com").await;
    let other = app.add_user("other@example.com").await;
    let bare = app.add_user("bare@example.com").await;
    let mut key = authenticator();
    register(
        &app.user_api(UserProtocol::Grpc),
        &auth,
        owner.id.as_str(),
        &mut key,
        "key",
    )
    .await;
    let mut other_key = authenticator();
    register(
        &app.user_api(UserProtocol::Grpc),
        &auth,
        other.id.as_str(),
        &mut other_key,
        "key",
    )
    .await;

    for api in app.user_apis() {
        let sessions = session_api(&app, &api);
        // Challenges: a foreign domain, no requirement, no user, a user without passkeys.
        let foreign_domain = sessions
            .create(
                Some(&auth),
                v2::CreateSessionRequest {
                    challenges: Some(webauthn_challenge("evil.test")),
                    ..create(user_check(owner.id.as_str()))
                },
            )
            .await;
        fails(
            &sessions,
            foreign_domain,
            Code::InvalidArgument,
            "SESSIOND-PASSKEY-DOMAIN",
        );
        let mut unspecified = webauthn_challenge("localhost");
        if let Some(w) = unspecified.web_auth_n.as_mut() {
            w.user_verification_requirement = 0;
        }
        let outcome = sessions
            .create(
                Some(&auth),
                v2::CreateSessionRequest {
                    challenges: Some(unspecified),
                    ..create(user_check(owner.id.as_str()))
                },
            )
            .await;
        fails(
            &sessions,
            outcome,
            Code::InvalidArgument,
            "SESSIOND-PASSKEY-UV",
        );
        let no_user = sessions
            .create(
                Some(&auth),
                v2::CreateSessionRequest {
                    challenges: Some(webauthn_challenge("localhost")),
                    ..Default::default()
                },
            )
            .await;
        fails(
            &sessions,
            no_user,
            Code::FailedPrecondition,
            "COMMAND-eeR2e",
        );
        let none = sessions
            .create(
                Some(&auth),
                v2::CreateSessionRequest {
                    challenges: Some(webauthn_challenge("localhost")),
                    ..create(user_check(bare.id.as_str()))
                },
            )
            .await;
        fails(&sessions, none, Code::FailedPrecondition, "WEBAU-4G8sw");

        // Checks: shapes that are no assertion, and another user's credential.
        let (session_id, options) = challenged_session(&sessions, &auth, owner.id.as_str()).await;
        for hostile in [
            json!({}),
            json!({"id": "x", "rawId": "%%%", "type": "public-key", "response": {}}),
            json!({"id": 1, "rawId": [1, 2], "type": "public-key", "response": "x"}),
            json!({"id": "x", "rawId": "AA", "type": "public-key",
                   "response": {"authenticatorData": "\u{0}", "clientDataJSON": "AA", "signature": "AA"}}),
        ] {
            let outcome = sessions
                .set(Some(&auth), set(&session_id, with_webauthn(hostile)))
                .await;
            fails(&sessions, outcome, Code::InvalidArgument, "WEBAU-ADgv4");
        }
        let missing = sessions
            .set(
                Some(&auth),
                set(
                    &session_id,
                    v2::Checks {
                        web_auth_n: Some(v2::CheckWebAuthN {
                            credential_assertion_data: None,
                        }),
                        ..Default::default()
                    },
                ),
            )
            .await;
        fails_with(&sessions, missing, Code::InvalidArgument);
        let stranger = assertion(&mut other_key, {
            let (_, other_options) = challenged_session(&sessions, &auth, other.id.as_str()).await;
            other_options
        });
        let foreign = sessions
            .set(Some(&auth), set(&session_id, with_webauthn(stranger)))
            .await;
        fails(
            &sessions,
            foreign,
            Code::FailedPrecondition,
            "COMMAND-Aej7i",
        );
        // The challenge survived every refusal: the owner's own key still answers it.
        ok(
            &sessions,
            sessions
                .set(
                    Some(&auth),
                    set(&session_id, with_webauthn(assertion(&mut key, options))),
                )
                .await,
        );

        // Registration: an unknown registration, no credential, an empty name, a code.
        let unknown = api
            .call::<VerifyPasskey>(
                Some(&auth),
                user::VerifyPasskeyRegistrationRequest {
                    user_id: owner.id.as_str().into(),
                    passkey_id: "42".into(),
                    public_key_credential: Some(to_struct(json!({
                        "id": "AA", "rawId": "AA", "type": "public-key",
                        "response": {"attestationObject": "AA", "clientDataJSON": "AA"}
                    }))),
                    passkey_name: "x".into(),
                },
            )
            .await;
        fails(&api, unknown, Code::FailedPrecondition, "WEBAU-5M9so");
        for (credential, name) in [(None, "x"), (Some(to_struct(json!({"id": "AA"}))), "x")] {
            let outcome = api
                .call::<VerifyPasskey>(
                    Some(&auth),
                    user::VerifyPasskeyRegistrationRequest {
                        user_id: owner.id.as_str().into(),
                        passkey_id: "42".into(),
                        public_key_credential: credential,
                        passkey_name: name.into(),
                    },
                )
                .await;
            let failure = api_invalid(&api, outcome);
            assert!(failure.http_status.is_none_or(|s| s == 400), "{api}");
        }
        let unnamed = api
            .call::<VerifyPasskey>(
                Some(&auth),
                user::VerifyPasskeyRegistrationRequest {
                    user_id: owner.id.as_str().into(),
                    passkey_id: "42".into(),
                    public_key_credential: Some(to_struct(json!({}))),
                    passkey_name: "\u{0}".into(),
                },
            )
            .await;
        api_invalid(&api, unnamed);
        let coded = api
            .call::<RegisterPasskey>(
                Some(&auth),
                user::RegisterPasskeyRequest {
                    user_id: owner.id.as_str().into(),
                    code: Some(user::PasskeyRegistrationCode {
                        id: "1".into(),
                        code: "x".into(),
                    }),
                    ..Default::default()
                },
            )
            .await;
        api_invalid(&api, coded);
        let elsewhere = api
            .call::<RegisterPasskey>(
                Some(&auth),
                user::RegisterPasskeyRequest {
                    user_id: owner.id.as_str().into(),
                    domain: "evil.test".into(),
                    ..Default::default()
                },
            )
            .await;
        fails(
            &api,
            elsewhere,
            Code::InvalidArgument,
            "SESSIOND-PASSKEY-DOMAIN",
        );
    }
}

#[tokio::test]
async fn removing_a_passkey_ends_the_users_other_sessions_and_needs_the_right() {
    let app = passkey_app().await;
    let auth = operator(&app);
    for api in app.user_apis() {
        let user = app
            .add_user(&format!("remove-{:?}@example.com", api.protocol).to_lowercase())
            .await;
        let id = user.id.as_str();
        let mut key = authenticator();
        let passkey_id = register(&api, &auth, id, &mut key, "key").await;
        let sessions = session_api(&app, &api);
        let (session_id, _) = challenged_session(&sessions, &auth, id).await;

        let stranger = app.bearer("stranger", &[]);
        let denied = api
            .call::<RemovePasskey>(
                Some(&stranger),
                user::RemovePasskeyRequest {
                    user_id: id.into(),
                    passkey_id: passkey_id.clone(),
                },
            )
            .await;
        fails(&api, denied, Code::PermissionDenied, "AUTH-AWfge");

        ok(
            &api,
            api.call::<RemovePasskey>(
                Some(&auth),
                user::RemovePasskeyRequest {
                    user_id: id.into(),
                    passkey_id: passkey_id.clone(),
                },
            )
            .await,
        );
        let gone = sessions
            .get(
                Some(&auth),
                v2::GetSessionRequest {
                    session_id: session_id.clone(),
                    session_token: None,
                },
            )
            .await;
        fails(&sessions, gone, Code::NotFound, "QUERY-SFeaa");
        let again = api
            .call::<RemovePasskey>(
                Some(&auth),
                user::RemovePasskeyRequest {
                    user_id: id.into(),
                    passkey_id,
                },
            )
            .await;
        fails(&api, again, Code::NotFound, "COMMAND-DAfb2");
        let listed = ok(
            &api,
            api.call::<ListPasskeys>(
                Some(&auth),
                user::ListPasskeysRequest { user_id: id.into() },
            )
            .await,
        )
        .message;
        assert!(listed.result.is_empty(), "{api}");
    }
}

/// `response.clientDataJSON` of a WebAuthn answer (JSON) with one field changed.
fn with_client_data(mut answer: Value, field: &str, value: Value) -> Value {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let encoded = answer["response"]["clientDataJSON"]
        .as_str()
        .expect("clientDataJSON")
        .to_owned();
    let mut client_data: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).expect("base64url"))
            .expect("client data JSON");
    client_data[field] = value;
    answer["response"]["clientDataJSON"] =
        json!(URL_SAFE_NO_PAD.encode(serde_json::to_vec(&client_data).expect("JSON")));
    answer
}

#[tokio::test]
async fn credentials_webauthn_rs_refuses_are_client_errors_with_a_passkey_reason() {
    // No lockout: every refusal here must show its own reason.
    let app = passkey_app_with(|s| s.max_password_attempts = 0).await;
    let auth = operator(&app);
    for (i, api) in app.user_apis().into_iter().enumerate() {
        let user = app.add_user(&format!("unverified{i}@example.com")).await;
        let id = user.id.as_str();
        let mut key = authenticator();
        let started = ok(
            &api,
            api.call::<RegisterPasskey>(
                Some(&auth),
                user::RegisterPasskeyRequest {
                    user_id: id.into(),
                    domain: "localhost".into(),
                    ..Default::default()
                },
            )
            .await,
        )
        .message;
        let options: CreationChallengeResponse = serde_json::from_value(from_struct(
            started
                .public_key_credential_creation_options
                .expect("creation options"),
        ))
        .expect("webauthn creation options");
        let answer = serde_json::to_value(
            key.do_registration(Url::parse(ORIGIN).expect("url"), options)
                .expect("the authenticator registers"),
        )
        .expect("json");
        let verify = |credential: Value| {
            api.call::<VerifyPasskey>(
                Some(&auth),
                user::VerifyPasskeyRegistrationRequest {
                    user_id: id.into(),
                    passkey_id: started.passkey_id.clone(),
                    public_key_credential: Some(to_struct(credential)),
                    passkey_name: "key".into(),
                },
            )
        };
        // Well-formed answers that webauthn-rs refuses: another challenge, another origin,
        // the wrong ceremony type, an attestation object that is no CBOR.
        let mut garbled = answer.clone();
        garbled["response"]["attestationObject"] = json!("oWNmbXRkbm9uZQ");
        for refused in [
            with_client_data(answer.clone(), "challenge", json!("AAAAAAAAAAAAAAAAAAAAAA")),
            with_client_data(answer.clone(), "origin", json!("https://evil.test")),
            with_client_data(answer.clone(), "type", json!("webauthn.get")),
            garbled,
        ] {
            let failure = fails(
                &api,
                verify(refused).await,
                Code::InvalidArgument,
                "WEBAU-3Vb9s",
            );
            assert!(failure.http_status.is_none_or(|s| s == 400), "{api}");
        }
        // The registration is still pending: the genuine answer completes it.
        ok(&api, verify(answer).await);

        // Assertions webauthn-rs refuses, in the session face's shape.
        let sessions = session_api(&app, &api);
        let (session_id, options) = challenged_session(&sessions, &auth, id).await;
        let signed = assertion(&mut key, options);
        let mut bad_signature = signed.clone();
        bad_signature["response"]["signature"] = json!("MEUCIQDx");
        for refused in [
            with_client_data(signed.clone(), "challenge", json!("AAAAAAAAAAAAAAAAAAAAAA")),
            with_client_data(signed.clone(), "origin", json!("https://evil.test")),
            with_client_data(signed.clone(), "type", json!("webauthn.create")),
            bad_signature,
        ] {
            let failure = fails(
                &sessions,
                sessions
                    .set(Some(&auth), set(&session_id, with_webauthn(refused)))
                    .await,
                Code::InvalidArgument,
                "WEBAU-3M9si",
            );
            assert!(failure.http_status.is_none_or(|s| s == 400), "{api}");
        }
        ok(
            &sessions,
            sessions
                .set(Some(&auth), set(&session_id, with_webauthn(signed)))
                .await,
        );
    }
}

#[tokio::test]
async fn the_admin_face_removes_one_passkey_by_id() {
    let app = passkey_app().await;
    let auth = operator(&app);
    let api = app.user_api(UserProtocol::Grpc);
    let user = app.add_user("admin-removes@example.com").await;
    let id = user.id.as_str();
    let mut key = authenticator();
    let kept = register(&api, &auth, id, &mut key, "kept").await;
    let mut other = authenticator();
    let removed = register(&api, &auth, id, &mut other, "removed").await;
    let sessions = session_api(&app, &api);
    let (session_id, _) = challenged_session(&sessions, &auth, id).await;
    let path = |passkey: &str, query: &str| {
        app.url(&format!(
            "/auth/admin/api/users/{id}/factors/passkey/{passkey}{query}"
        ))
    };

    let reader = app.bearer("reader", &["user.read"]);
    let denied = send(
        app.http
            .delete(path(&removed, ""))
            .header("authorization", &reader),
    )
    .await;
    assert_eq!(denied.status, 403, "{}", denied.body);
    let long = send(
        app.http
            .delete(path(&"4".repeat(201), ""))
            .header("authorization", &auth),
    )
    .await;
    assert_eq!(long.status, 400, "{}", long.body);

    let answer = send(
        app.http
            .delete(path(&removed, "?revokeSessions=false"))
            .header("authorization", &auth),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json["kind"], "passkey");
    assert_eq!(answer.json["id"], removed.as_str());
    assert_eq!(answer.json["revokedSessions"], 0);
    // Kept: the session and the other passkey.
    session_of(&app, &sessions, &session_id).await;
    let listed = send(
        app.http
            .get(app.url(&format!("/auth/admin/api/users/{id}/factors")))
            .header("authorization", &auth),
    )
    .await;
    let ids: Vec<&str> = listed.json["data"]
        .as_array()
        .map(|d| d.iter().filter_map(|f| f["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, [kept.as_str()], "{}", listed.body);

    let again = send(
        app.http
            .delete(path(&removed, ""))
            .header("authorization", &auth),
    )
    .await;
    assert_eq!(again.status, 404, "{}", again.body);
    // Without the query, the user's sessions end.
    let answer = send(
        app.http
            .delete(path(&kept, ""))
            .header("authorization", &auth),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json["revokedSessions"], 1, "{}", answer.body);
}
