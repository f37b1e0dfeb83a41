//! Second factors end to end: TOTP and recovery codes enrolled through the UserService (gRPC,
//! Connect, REST) and checked in CreateSession/SetSession; single use, the one lockout limit
//! shared with passwords, sealed seeds, who may enroll, and the methods not implemented.

use std::time::Duration;

use sessiond::domain::{FactorKind, Time, UserId};
use totp_rs::{Algorithm, Secret, TOTP};

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery staple";

/// The TOTP code of a base32 secret at `at`.
fn totp_code(secret: &str, at: Time) -> String {
    let seed = Secret::Encoded(secret.to_owned())
        .to_bytes()
        .expect("base32 secret");
    let seconds = u64::try_from(at.unix_micros() / 1_000_000).expect("after 1970");
    TOTP::new_unchecked(Algorithm::SHA1, 6, 1, 30, seed).generate(seconds)
}

/// The SessionService client speaking the protocol of a UserService client.
fn session_api(app: &TestApp, api: &UserApi) -> Api {
    let protocol = match api.protocol {
        UserProtocol::Grpc => Protocol::Grpc,
        UserProtocol::ConnectJson => Protocol::ConnectJson,
        UserProtocol::Rest => Protocol::Rest,
    };
    app.api(protocol, Version::V2)
}

/// A bearer with every permission.
fn operator(app: &TestApp) -> String {
    app.bearer("operator", EVERY_PERMISSION)
}

fn with_totp(mut checks: v2::Checks, code: &str) -> v2::Checks {
    checks.totp = Some(v2::CheckTotp { code: code.into() });
    checks
}

fn with_recovery(mut checks: v2::Checks, code: &str) -> v2::Checks {
    checks.recovery_code = Some(v2::CheckRecoveryCode { code: code.into() });
    checks
}

fn create(checks: v2::Checks) -> v2::CreateSessionRequest {
    v2::CreateSessionRequest {
        checks: Some(checks),
        ..Default::default()
    }
}

fn set(session_id: &str, checks: v2::Checks) -> v2::SetSessionRequest {
    v2::SetSessionRequest {
        session_id: session_id.into(),
        checks: Some(checks),
        ..Default::default()
    }
}

fn password(checks: v2::Checks, password: &str) -> v2::Checks {
    v2::Checks {
        password: Some(v2::CheckPassword {
            password: password.into(),
        }),
        ..checks
    }
}

/// Enrolls TOTP for `user` through `api` and returns the secret; the clock then moves one
/// step on, so the code that verified the enrollment is not the current one.
async fn enroll_totp(app: &TestApp, api: &UserApi, auth: &str, user: &str) -> String {
    let registered = ok(
        api,
        api.call::<RegisterTotp>(
            Some(auth),
            user::RegisterTotpRequest {
                user_id: user.into(),
            },
        )
        .await,
    )
    .message;
    let code = totp_code(&registered.secret, app.now());
    ok(
        api,
        api.call::<VerifyTotp>(
            Some(auth),
            user::VerifyTotpRegistrationRequest {
                user_id: user.into(),
                code,
            },
        )
        .await,
    );
    app.advance(Duration::from_secs(30));
    registered.secret
}

async fn session_of(app: &TestApp, api: &Api, id: &str) -> v2::Session {
    let got = ok(
        api,
        api.get(
            Some(&operator(app)),
            v2::GetSessionRequest {
                session_id: id.into(),
                session_token: None,
            },
        )
        .await,
    );
    got.message.session.expect("a session")
}

#[tokio::test]
async fn totp_is_enrolled_and_checked_over_grpc_connect_and_rest() {
    let app = spawn_app().await;
    let auth = operator(&app);
    for (i, api) in app.user_apis().into_iter().enumerate() {
        let login = format!("totp{i}@example.com");
        let user = app.add_user_with_password(&login, PASSWORD).await;
        let id = user.id.as_str();
        let registered = ok(
            &api,
            api.call::<RegisterTotp>(
                Some(&auth),
                user::RegisterTotpRequest { user_id: id.into() },
            )
            .await,
        )
        .message;
        assert_eq!(registered.secret.len(), 32, "{api}: 160 bits in base32");
        assert_eq!(
            registered.uri,
            format!(
                "otpauth://totp/sessiond:totp{i}@example.com?algorithm=SHA1&digits=6&issuer=sessiond&period=30&secret={}",
                registered.secret
            ),
            "{api}"
        );
        let details = registered.details.expect("details");
        assert_eq!(details.resource_owner, INSTANCE, "{api}");

        // Not usable before it is verified.
        let sessions = session_api(&app, &api);
        let early = sessions
            .create(
                Some(&auth),
                create(with_totp(
                    user_check(id),
                    &totp_code(&registered.secret, app.now()),
                )),
            )
            .await;
        fails(&sessions, early, Code::FailedPrecondition, "COMMAND-3Mif9s");

        let wrong = api
            .call::<VerifyTotp>(
                Some(&auth),
                user::VerifyTotpRegistrationRequest {
                    user_id: id.into(),
                    code: "000000".into(),
                },
            )
            .await;
        // One code in a million is right by chance; the seed is random, so this cannot
        // be pinned, but a wrong answer is far likelier than not.
        if let Err(failure) = wrong {
            assert_eq!(failure.code, Code::InvalidArgument, "{api}");
            assert_eq!(failure.id(), "EVENT-8isk2", "{api}");
            ok(
                &api,
                api.call::<VerifyTotp>(
                    Some(&auth),
                    user::VerifyTotpRegistrationRequest {
                        user_id: id.into(),
                        code: totp_code(&registered.secret, app.now()),
                    },
                )
                .await,
            );
        }
        app.advance(Duration::from_secs(30));

        let created = ok(
            &sessions,
            sessions
                .create(
                    Some(&auth),
                    create(with_totp(
                        password(user_check(id), PASSWORD),
                        &totp_code(&registered.secret, app.now()),
                    )),
                )
                .await,
        )
        .message;
        let session = session_of(&app, &sessions, &created.session_id).await;
        let factors = session.factors.expect("factors");
        let checked_at = Some(Timestamp::from(app.now()));
        assert_eq!(
            factors.totp.and_then(|t| t.verified_at),
            checked_at,
            "{api}"
        );
        assert!(factors.password.is_some(), "{api}");

        let methods = ok(
            &api,
            api.call::<ListMethods>(
                Some(&auth),
                user::ListAuthenticationMethodTypesRequest {
                    user_id: id.into(),
                    domain_query: None,
                },
            )
            .await,
        )
        .message;
        assert_eq!(
            methods.auth_method_types,
            vec![
                user::AuthenticationMethodType::Totp as i32,
                user::AuthenticationMethodType::Password as i32
            ],
            "{api}"
        );
        if let Some(json) = ok(
            &api,
            api.call::<ListMethods>(
                Some(&auth),
                user::ListAuthenticationMethodTypesRequest {
                    user_id: id.into(),
                    domain_query: None,
                },
            )
            .await,
        )
        .json
        {
            assert_eq!(
                json["authMethodTypes"],
                serde_json::json!([
                    "AUTHENTICATION_METHOD_TYPE_TOTP",
                    "AUTHENTICATION_METHOD_TYPE_PASSWORD"
                ]),
                "{api}"
            );
        }

        // Registering again while verified is refused; removing works once.
        let again = api
            .call::<RegisterTotp>(
                Some(&auth),
                user::RegisterTotpRequest { user_id: id.into() },
            )
            .await;
        fails(&api, again, Code::AlreadyExists, "COMMAND-do9se");
        let remove =
            || api.call::<RemoveTotp>(Some(&auth), user::RemoveTotpRequest { user_id: id.into() });
        ok(&api, remove().await);
        fails(&api, remove().await, Code::NotFound, "COMMAND-Hd9sd");
    }
}

#[tokio::test]
async fn a_totp_code_is_accepted_once() {
    let app = spawn_app().await;
    let auth = operator(&app);
    let api = app.user_api(UserProtocol::ConnectJson);
    let sessions = app.api(Protocol::ConnectJson, Version::V2);
    let user = app.add_user("once@example.com").await;
    let id = user.id.as_str();
    let secret = enroll_totp(&app, &api, &auth, id).await;
    let code = totp_code(&secret, app.now());
    let created = ok(
        &sessions,
        sessions
            .create(Some(&auth), create(with_totp(user_check(id), &code)))
            .await,
    )
    .message;
    // Same code again, in the same 30 seconds, on the same session and on a new one.
    let replay = sessions
        .set(
            Some(&auth),
            set(&created.session_id, with_totp(v2::Checks::default(), &code)),
        )
        .await;
    fails(&sessions, replay, Code::InvalidArgument, "EVENT-8isk2");
    let replay = sessions
        .create(Some(&auth), create(with_totp(user_check(id), &code)))
        .await;
    fails(&sessions, replay, Code::InvalidArgument, "EVENT-8isk2");
    // An older code (the step before, still inside the skew) is refused too: the steps only
    // move forward.
    let earlier = totp_code(
        &secret,
        Time::from_unix_micros(app.now().unix_micros() - 30_000_000),
    );
    let replay = sessions
        .create(Some(&auth), create(with_totp(user_check(id), &earlier)))
        .await;
    fails(&sessions, replay, Code::InvalidArgument, "EVENT-8isk2");
    // The next step's code passes, on the existing session.
    app.advance(Duration::from_secs(30));
    ok(
        &sessions,
        sessions
            .set(
                Some(&auth),
                set(
                    &created.session_id,
                    with_totp(v2::Checks::default(), &totp_code(&secret, app.now())),
                ),
            )
            .await,
    );
}

#[tokio::test]
async fn a_code_of_another_users_seed_is_refused() {
    let app = spawn_app().await;
    let auth = operator(&app);
    let api = app.user_api(UserProtocol::Grpc);
    let sessions = app.api(Protocol::Grpc, Version::V2);
    let alice = app.add_user("alice@example.com").await;
    let bob = app.add_user("bob@example.com").await;
    let alice_secret = enroll_totp(&app, &api, &auth, alice.id.as_str()).await;
    let bob_secret = enroll_totp(&app, &api, &auth, bob.id.as_str()).await;
    assert_ne!(alice_secret, bob_secret);
    let code = totp_code(&alice_secret, app.now());
    if code != totp_code(&bob_secret, app.now()) {
        let outcome = sessions
            .create(
                Some(&auth),
                create(with_totp(user_check(bob.id.as_str()), &code)),
            )
            .await;
        fails(&sessions, outcome, Code::InvalidArgument, "EVENT-8isk2");
    }
    // A check of TOTP needs a checked user, and one with TOTP set up.
    let outcome = sessions
        .create(Some(&auth), create(with_totp(v2::Checks::default(), &code)))
        .await;
    fails(&sessions, outcome, Code::InvalidArgument, "COMMAND-8N9ds");
    let carol = app.add_user("carol@example.com").await;
    let outcome = sessions
        .create(
            Some(&auth),
            create(with_totp(user_check(carol.id.as_str()), &code)),
        )
        .await;
    fails(
        &sessions,
        outcome,
        Code::FailedPrecondition,
        "COMMAND-3Mif9s",
    );
}

#[tokio::test]
async fn wrong_codes_and_wrong_passwords_count_toward_one_lockout_limit() {
    let app = spawn_app_with(|config| config.max_password_attempts = 3).await;
    let auth = operator(&app);
    let api = app.user_api(UserProtocol::Rest);
    let sessions = app.api(Protocol::Rest, Version::V2);
    let user = app
        .add_user_with_password("locked@example.com", PASSWORD)
        .await;
    let id = user.id.as_str();
    let secret = enroll_totp(&app, &api, &auth, id).await;
    ok(
        &api,
        api.call::<GenerateCodes>(
            Some(&auth),
            user::GenerateRecoveryCodesRequest {
                user_id: id.into(),
                count: 2,
            },
        )
        .await,
    );
    let good = totp_code(&secret, app.now());
    let bad = if good == "123456" { "654321" } else { "123456" };

    let wrong_password = sessions
        .create(Some(&auth), create(password(user_check(id), "wrong")))
        .await;
    fails(
        &sessions,
        wrong_password,
        Code::InvalidArgument,
        "COMMAND-3M0fs",
    );
    let wrong_totp = sessions
        .create(Some(&auth), create(with_totp(user_check(id), bad)))
        .await;
    fails(&sessions, wrong_totp, Code::InvalidArgument, "EVENT-8isk2");
    let wrong_code = sessions
        .create(
            Some(&auth),
            create(with_recovery(user_check(id), "AAAAA-AAAAA")),
        )
        .await;
    fails(
        &sessions,
        wrong_code,
        Code::InvalidArgument,
        "SESSIOND-RECOVERY-INVALID",
    );

    // Three failures of three kinds: locked for every kind, even with the right answer.
    let right_totp = sessions
        .create(Some(&auth), create(with_totp(user_check(id), &good)))
        .await;
    fails(
        &sessions,
        right_totp,
        Code::FailedPrecondition,
        "COMMAND-SF3fg",
    );
    let right_password = sessions
        .create(Some(&auth), create(password(user_check(id), PASSWORD)))
        .await;
    fails(
        &sessions,
        right_password,
        Code::FailedPrecondition,
        "COMMAND-SFA3t",
    );
}

#[tokio::test]
async fn a_recovery_code_works_once_and_shows_in_the_session_factors() {
    let app = spawn_app().await;
    let auth = operator(&app);
    for api in app.user_apis() {
        let sessions = session_api(&app, &api);
        let user = app
            .add_user(&format!("recover-{:?}@example.com", api.protocol))
            .await;
        let id = user.id.as_str();
        let generated = ok(
            &api,
            api.call::<GenerateCodes>(
                Some(&auth),
                user::GenerateRecoveryCodesRequest {
                    user_id: id.into(),
                    count: 0,
                },
            )
            .await,
        )
        .message;
        assert_eq!(
            generated.recovery_codes.len(),
            10,
            "{api}: the default count"
        );
        let code = generated.recovery_codes[3].clone();
        let created = ok(
            &sessions,
            sessions
                .create(Some(&auth), create(with_recovery(user_check(id), &code)))
                .await,
        )
        .message;
        let session = session_of(&app, &sessions, &created.session_id).await;
        let at = session
            .factors
            .and_then(|f| f.recovery_code)
            .and_then(|r| r.verified_at);
        assert_eq!(at, Some(Timestamp::from(app.now())), "{api}");

        // Used up: refused on a new session; written lower case without the dash it is the
        // same code.
        let again = code.to_ascii_lowercase().replace('-', "");
        let outcome = sessions
            .create(Some(&auth), create(with_recovery(user_check(id), &again)))
            .await;
        fails(
            &sessions,
            outcome,
            Code::InvalidArgument,
            "SESSIOND-RECOVERY-INVALID",
        );
        // Another code of the set passes on the existing session.
        ok(
            &sessions,
            sessions
                .set(
                    Some(&auth),
                    set(
                        &created.session_id,
                        with_recovery(v2::Checks::default(), &generated.recovery_codes[4]),
                    ),
                )
                .await,
        );
        // New codes replace the old ones.
        ok(
            &api,
            api.call::<GenerateCodes>(
                Some(&auth),
                user::GenerateRecoveryCodesRequest {
                    user_id: id.into(),
                    count: 1,
                },
            )
            .await,
        );
        let outcome = sessions
            .create(
                Some(&auth),
                create(with_recovery(user_check(id), &generated.recovery_codes[5])),
            )
            .await;
        fails(
            &sessions,
            outcome,
            Code::InvalidArgument,
            "SESSIOND-RECOVERY-INVALID",
        );
        let remove = || {
            api.call::<RemoveCodes>(
                Some(&auth),
                user::RemoveRecoveryCodesRequest { user_id: id.into() },
            )
        };
        ok(&api, remove().await);
        fails(
            &api,
            remove().await,
            Code::NotFound,
            "SESSIOND-RECOVERY-NOT-SET",
        );
    }
}

#[tokio::test]
async fn seeds_and_recovery_codes_are_not_stored_in_clear() {
    let app = spawn_app().await;
    let auth = operator(&app);
    let api = app.user_api(UserProtocol::Grpc);
    let user = app.add_user("sealed@example.com").await;
    let id = user.id.as_str();
    let secret = enroll_totp(&app, &api, &auth, id).await;
    let codes = ok(
        &api,
        api.call::<GenerateCodes>(
            Some(&auth),
            user::GenerateRecoveryCodesRequest {
                user_id: id.into(),
                count: 3,
            },
        )
        .await,
    )
    .message
    .recovery_codes;
    let seed = Secret::Encoded(secret.clone()).to_bytes().expect("base32");
    let rows = app
        .core
        .store()
        .user_factors(&UserId::parse(id).expect("id"))
        .await
        .expect("factor rows");
    let totp = rows
        .iter()
        .find(|f| f.kind == FactorKind::Totp)
        .expect("a TOTP row");
    let stored = totp.secret.clone().expect("a sealed seed");
    assert!(
        stored.len() >= seed.len() + 12 + 16,
        "nonce, ciphertext and tag"
    );
    assert!(!stored.windows(seed.len()).any(|w| w == seed.as_slice()));
    assert!(!stored.windows(secret.len()).any(|w| w == secret.as_bytes()));
    let hashes = app
        .core
        .store()
        .unused_recovery_codes(&UserId::parse(id).expect("id"))
        .await
        .expect("code rows");
    assert_eq!(hashes.len(), 3);
    for code in &codes {
        for hash in &hashes {
            assert_eq!(hash.len(), 32);
            assert!(
                !hash
                    .windows(5)
                    .any(|w| code.as_bytes().windows(5).any(|c| c == w))
            );
        }
    }
}

#[tokio::test]
async fn users_enroll_their_own_factors_and_others_need_user_write() {
    let app = spawn_app().await;
    let api = app.user_api(UserProtocol::ConnectJson);
    let alice = app
        .add_user_with_password("self@example.com", PASSWORD)
        .await;
    let bob = app.add_user("other@example.com").await;
    // Alice's own session token is enough for her own factors.
    let session = ok(
        &app.api(Protocol::ConnectJson, Version::V2),
        app.api(Protocol::ConnectJson, Version::V2)
            .create(
                Some(&app.admin()),
                create(password(user_check(alice.id.as_str()), PASSWORD)),
            )
            .await,
    )
    .message;
    let own = format!("Bearer {}", session.session_token);
    ok(
        &api,
        api.call::<RegisterTotp>(
            Some(&own),
            user::RegisterTotpRequest {
                user_id: alice.id.as_str().into(),
            },
        )
        .await,
    );
    let foreign = api
        .call::<RegisterTotp>(
            Some(&own),
            user::RegisterTotpRequest {
                user_id: bob.id.as_str().into(),
            },
        )
        .await;
    fails(&api, foreign, Code::PermissionDenied, "AUTH-AWfge");
    let reader = app.bearer("reader", &["user.read", "session.write"]);
    let foreign = api
        .call::<GenerateCodes>(
            Some(&reader),
            user::GenerateRecoveryCodesRequest {
                user_id: bob.id.as_str().into(),
                count: 1,
            },
        )
        .await;
    fails(&api, foreign, Code::PermissionDenied, "AUTH-AWfge");
    let listed = api
        .call::<ListMethods>(
            Some(&reader),
            user::ListAuthenticationMethodTypesRequest {
                user_id: bob.id.as_str().into(),
                domain_query: None,
            },
        )
        .await;
    assert!(ok(&api, listed).message.auth_method_types.is_empty());
    let anonymous = api
        .call::<RegisterTotp>(
            None,
            user::RegisterTotpRequest {
                user_id: bob.id.as_str().into(),
            },
        )
        .await;
    assert_eq!(anonymous.expect_err("refused").code, Code::Unauthenticated);
}

#[tokio::test]
async fn enrolling_a_factor_ends_the_users_other_sessions() {
    let app = spawn_app().await;
    let auth = operator(&app);
    let api = app.user_api(UserProtocol::Grpc);
    let sessions = app.api(Protocol::Grpc, Version::V2);
    let user = app.add_user("revoke@example.com").await;
    let other = app.create_session_for(&user).await;
    let mine = app.create_session_for(&user).await;
    let own = format!("Bearer {}", mine.session_token);
    ok(
        &api,
        api.call::<GenerateCodes>(
            Some(&own),
            user::GenerateRecoveryCodesRequest {
                user_id: user.id.as_str().into(),
                count: 1,
            },
        )
        .await,
    );
    let gone = sessions
        .get(
            Some(&auth),
            v2::GetSessionRequest {
                session_id: other.session_id.clone(),
                session_token: None,
            },
        )
        .await;
    fails(&sessions, gone, Code::NotFound, "QUERY-SFeaa");
    session_of(&app, &sessions, &mine.session_id).await;
}

#[tokio::test]
async fn add_human_user_creates_a_user_that_can_sign_in() {
    let app = spawn_app().await;
    let auth = operator(&app);
    for api in app.user_apis() {
        let email = format!("human-{:?}@example.com", api.protocol).to_ascii_lowercase();
        let request = user::AddHumanUserRequest {
            profile: Some(user::SetHumanProfile {
                given_name: "Ada".into(),
                family_name: "Lovelace".into(),
                ..Default::default()
            }),
            email: Some(user::SetHumanEmail {
                email: email.clone(),
                verification: Some(user::set_human_email::Verification::IsVerified(true)),
            }),
            password_type: Some(user::add_human_user_request::PasswordType::Password(
                user::Password {
                    password: PASSWORD.into(),
                    change_required: false,
                },
            )),
            totp_secret: Some("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP".into()),
            ..Default::default()
        };
        let added = ok(
            &api,
            api.call::<AddHumanUser>(Some(&auth), request.clone()).await,
        )
        .message;
        assert!(!added.user_id.is_empty(), "{api}");
        let sessions = session_api(&app, &api);
        let checks = v2::Checks {
            user: Some(v2::CheckUser {
                search: Some(v2::check_user::Search::LoginName(email.clone())),
            }),
            ..Default::default()
        };
        let code = totp_code("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", app.now());
        let created = ok(
            &sessions,
            sessions
                .create(
                    Some(&auth),
                    create(with_totp(password(checks, PASSWORD), &code)),
                )
                .await,
        )
        .message;
        let session = session_of(&app, &sessions, &created.session_id).await;
        let factors = session.factors.expect("factors");
        assert_eq!(
            factors.user.map(|u| u.display_name),
            Some("Ada Lovelace".into())
        );
        assert!(
            factors.totp.is_some(),
            "{api}: the imported secret is verified"
        );
        app.advance(Duration::from_secs(30));

        let duplicate = api.call::<AddHumanUser>(Some(&auth), request).await;
        assert_eq!(
            duplicate.expect_err("taken").code,
            Code::AlreadyExists,
            "{api}"
        );
    }
    let api = app.user_api(UserProtocol::Grpc);
    let without = api
        .call::<AddHumanUser>(
            Some(&app.admin()),
            user::AddHumanUserRequest {
                profile: Some(user::SetHumanProfile {
                    given_name: "A".into(),
                    family_name: "B".into(),
                    ..Default::default()
                }),
                email: Some(user::SetHumanEmail {
                    email: "nobody@example.com".into(),
                    verification: None,
                }),
                ..Default::default()
            },
        )
        .await;
    fails(&api, without, Code::PermissionDenied, "AUTH-AWfge");
}

#[tokio::test]
async fn methods_not_implemented_say_so_on_every_protocol() {
    let app = spawn_app().await;
    let auth = operator(&app);
    for api in app.user_apis() {
        let outcome = api
            .call::<AddOtpSms>(
                Some(&auth),
                user::AddOtpsmsRequest {
                    user_id: "1".into(),
                },
            )
            .await;
        let failure = fails(&api, outcome, Code::Unimplemented, "SESSIOND-UNIMPLEMENTED");
        assert!(
            failure.message.contains("UserService/AddOTPSMS"),
            "{api}: {failure:?}"
        );
        if let Some(status) = failure.http_status {
            assert_eq!(status, 501, "{api}");
        }
        let outcome = api
            .call::<RegisterPasskey>(
                Some(&auth),
                user::RegisterPasskeyRequest {
                    user_id: "1".into(),
                    ..Default::default()
                },
            )
            .await;
        fails(&api, outcome, Code::Unimplemented, "SESSIOND-UNIMPLEMENTED");
    }
}

#[tokio::test]
async fn malformed_factor_input_is_invalid_argument_on_every_protocol() {
    let app = spawn_app().await;
    let auth = operator(&app);
    let user = app.add_user("hostile@example.com").await;
    let id = user.id.as_str();
    for api in app.user_apis() {
        for code in [
            "",
            "12345",
            "1234567",
            "12345a",
            "١٢٣٤٥٦",
            "123 56",
            "\u{0}23456",
        ] {
            let outcome = api
                .call::<VerifyTotp>(
                    Some(&auth),
                    user::VerifyTotpRegistrationRequest {
                        user_id: id.into(),
                        code: code.into(),
                    },
                )
                .await;
            fails(&api, outcome, Code::InvalidArgument, "SESSIOND-TOTP-FORMAT");
        }
        for count in [-1, 51, i32::MAX, i32::MIN] {
            let outcome = api
                .call::<GenerateCodes>(
                    Some(&auth),
                    user::GenerateRecoveryCodesRequest {
                        user_id: id.into(),
                        count,
                    },
                )
                .await;
            fails(
                &api,
                outcome,
                Code::InvalidArgument,
                "SESSIOND-RECOVERY-COUNT",
            );
        }
        for bad_id in ["x".repeat(201), "a\u{7}b".into()] {
            let outcome = api
                .call::<RegisterTotp>(Some(&auth), user::RegisterTotpRequest { user_id: bad_id })
                .await;
            assert_eq!(
                outcome.expect_err("refused").code,
                Code::InvalidArgument,
                "{api}"
            );
        }
        let unknown = api
            .call::<RegisterTotp>(
                Some(&auth),
                user::RegisterTotpRequest {
                    user_id: "404".into(),
                },
            )
            .await;
        fails(&api, unknown, Code::NotFound, "COMMAND-ijzr3");
    }
    let sessions = app.api(Protocol::ConnectJson, Version::V2);
    for code in ["", "x".repeat(201).as_str(), "a\u{1}b"] {
        let outcome = sessions
            .create(Some(&auth), create(with_recovery(user_check(id), code)))
            .await;
        fails(
            &sessions,
            outcome,
            Code::InvalidArgument,
            "SESSIOND-RECOVERY-FORMAT",
        );
    }
    for code in ["", "abcdef", "1234567"] {
        let outcome = sessions
            .create(Some(&auth), create(with_totp(user_check(id), code)))
            .await;
        fails(
            &sessions,
            outcome,
            Code::InvalidArgument,
            "SESSIOND-TOTP-FORMAT",
        );
    }
}

#[tokio::test]
async fn kratos_sessions_list_each_verified_factor_and_reach_aal2_with_two_kinds() {
    let app = spawn_app().await;
    let auth = operator(&app);
    let api = app.user_api(UserProtocol::Grpc);
    let sessions = app.api(Protocol::Grpc, Version::V2);
    let user = app
        .add_user_with_password("aal@example.com", PASSWORD)
        .await;
    let id = user.id.as_str();
    let secret = enroll_totp(&app, &api, &auth, id).await;
    let codes = ok(
        &api,
        api.call::<GenerateCodes>(
            Some(&auth),
            user::GenerateRecoveryCodesRequest {
                user_id: id.into(),
                count: 1,
            },
        )
        .await,
    )
    .message
    .recovery_codes;
    let created = ok(
        &sessions,
        sessions
            .create(Some(&auth), create(password(user_check(id), PASSWORD)))
            .await,
    )
    .message;
    let first = app.now();
    let answer = whoami(&app, &created.session_token).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json["authenticator_assurance_level"], "aal1");

    app.advance(Duration::from_secs(30));
    let set = ok(
        &sessions,
        sessions
            .set(
                Some(&auth),
                set(
                    &created.session_id,
                    with_recovery(
                        with_totp(v2::Checks::default(), &totp_code(&secret, app.now())),
                        &codes[0],
                    ),
                ),
            )
            .await,
    )
    .message;
    let answer = whoami(&app, &set.session_token).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let rfc = |t: Time| {
        let stamp = Timestamp::from(t);
        serde_json::to_value(stamp).expect("timestamp JSON")
    };
    assert_eq!(answer.json["authenticator_assurance_level"], "aal2");
    assert_eq!(
        answer.json["authentication_methods"],
        serde_json::json!([
            {"method": "identifier_first", "aal": "aal0", "completed_at": rfc(first)},
            {"method": "password", "aal": "aal1", "completed_at": rfc(first)},
            {"method": "totp", "aal": "aal2", "completed_at": rfc(app.now())},
            {"method": "lookup_secret", "aal": "aal2", "completed_at": rfc(app.now())},
        ])
    );
    assert_eq!(answer.json["authenticated_at"], rfc(app.now()));
}

#[tokio::test]
async fn the_admin_face_lists_and_removes_factors_in_its_own_shape() {
    let app = spawn_app().await;
    let auth = operator(&app);
    let api = app.user_api(UserProtocol::Grpc);
    let user = app.add_user("admin-factors@example.com").await;
    let id = user.id.as_str();
    enroll_totp(&app, &api, &auth, id).await;
    ok(
        &api,
        api.call::<GenerateCodes>(
            Some(&auth),
            user::GenerateRecoveryCodesRequest {
                user_id: id.into(),
                count: 4,
            },
        )
        .await,
    );
    let base = app.url(&format!("/auth/admin/api/users/{id}/factors"));
    let listed = send(app.http.get(&base).header("authorization", &auth)).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let data = listed.json["data"].as_array().expect("data").clone();
    assert_eq!(data.len(), 2, "{}", listed.body);
    assert_eq!(data[0]["kind"], "recovery_codes");
    assert_eq!(data[0]["remainingCodes"], 4);
    assert_eq!(data[1]["kind"], "totp");
    assert_eq!(data[1]["state"], "ready");
    assert!(!listed.body.to_ascii_lowercase().contains("secret"));

    let kept = app.create_session_for(&user).await;
    let removed = send(
        app.http
            .delete(format!("{base}/totp?revokeSessions=false"))
            .header("authorization", &auth),
    )
    .await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(removed.json["revokedSessions"], 0);
    let sessions = app.api(Protocol::Grpc, Version::V2);
    session_of(&app, &sessions, &kept.session_id).await;
    let removed = send(
        app.http
            .delete(format!("{base}/recovery_codes"))
            .header("authorization", &auth),
    )
    .await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(removed.json["revokedSessions"], 1);

    let again = send(
        app.http
            .delete(format!("{base}/totp"))
            .header("authorization", &auth),
    )
    .await;
    assert_eq!(again.status, 404, "{}", again.body);
    assert_eq!(again.json["statusCode"], 404);
    for (path, status) in [("/sms", 400), ("/totp?revokeSessions=maybe", 400)] {
        let bad = send(
            app.http
                .delete(format!("{base}{path}"))
                .header("authorization", &auth),
        )
        .await;
        assert_eq!(bad.status, status, "{path}: {}", bad.body);
        assert_eq!(bad.json["code"], "VALIDATION_FAILED", "{path}");
    }
    let reader = app.bearer("reader", &["user.read"]);
    let denied = send(
        app.http
            .delete(format!("{base}/totp"))
            .header("authorization", &reader),
    )
    .await;
    assert_eq!(denied.status, 403, "{}", denied.body);
    let unknown = send(
        app.http
            .get(app.url("/auth/admin/api/users/404/factors"))
            .header("authorization", &auth),
    )
    .await;
    assert_eq!(unknown.json["code"], "USER_NOT_FOUND", "{}", unknown.body);
}

/// `sessiond users factors …` against a data directory.
fn factors_cli(data_dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args(["users", "factors"])
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("running sessiond")
}

#[tokio::test]
async fn the_command_line_lists_and_removes_a_users_factors() {
    use sessiond::core::{Core, CoreSettings, NewUser, PasswordHasher};
    use sessiond::domain::{LoginName, Principal};

    let dir = tempfile::tempdir().expect("dir");
    let settings = sessiond::settings::Settings {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let store = sessiond::app::open_store(&settings).await.expect("store");
    let core = Core::new(
        store,
        std::sync::Arc::new(crate::backends::clock()),
        PasswordHasher::new(1024, 1, 1).expect("hasher"),
        CoreSettings::default(),
    );
    let user = core
        .add_user(NewUser {
            login_name: LoginName::parse("cli@example.com").expect("name"),
            display_name: None,
            organization_id: None,
            password: None,
        })
        .await
        .expect("user");
    let system = Principal::system();
    core.generate_recovery_codes(&system, &user.id, 3, false)
        .await
        .expect("codes");
    let id = user.id.as_str();

    let listed = factors_cli(dir.path(), &["list", id]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("one JSON line");
    assert_eq!(line["kind"], "recovery_codes");
    assert_eq!(line["remainingCodes"], 3);

    let removed = factors_cli(
        dir.path(),
        &["remove", id, "recovery_codes", "--keep-sessions"],
    );
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&removed.stderr).trim_end(),
        "recovery_codes removed; 0 session(s) ended"
    );
    let again = factors_cli(dir.path(), &["remove", id, "recovery_codes"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("no recovery codes"));
    let unknown = factors_cli(dir.path(), &["remove", id, "sms"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("totp, recovery_codes"));
    let empty = factors_cli(dir.path(), &["list", id]);
    assert!(empty.status.success());
    assert!(empty.stdout.is_empty());
}

#[tokio::test]
async fn add_human_user_refuses_what_it_cannot_keep_and_creates_nothing() {
    let app = spawn_app().await;
    let auth = operator(&app);
    let base = || user::AddHumanUserRequest {
        username: Some("refused@example.com".into()),
        profile: Some(user::SetHumanProfile {
            given_name: "Ada".into(),
            family_name: "Lovelace".into(),
            ..Default::default()
        }),
        email: Some(user::SetHumanEmail {
            email: "refused@example.com".into(),
            verification: None,
        }),
        ..Default::default()
    };
    let cases: Vec<(&str, user::AddHumanUserRequest)> = vec![
        (
            "userId",
            user::AddHumanUserRequest {
                user_id: Some("42".into()),
                ..base()
            },
        ),
        (
            "totpSecret",
            user::AddHumanUserRequest {
                totp_secret: Some("not base32!".into()),
                ..base()
            },
        ),
        (
            "short totpSecret",
            user::AddHumanUserRequest {
                totp_secret: Some("JBSWY3DP".into()),
                ..base()
            },
        ),
        (
            "hashedPassword",
            user::AddHumanUserRequest {
                password_type: Some(user::add_human_user_request::PasswordType::HashedPassword(
                    user::HashedPassword::default(),
                )),
                ..base()
            },
        ),
        (
            "orgDomain",
            user::AddHumanUserRequest {
                organization: Some(user::Organization {
                    org: Some(user::organization::Org::OrgDomain("example.com".into())),
                }),
                ..base()
            },
        ),
        (
            "metadata",
            user::AddHumanUserRequest {
                metadata: vec![user::SetMetadataEntry::default()],
                ..base()
            },
        ),
        (
            "no profile",
            user::AddHumanUserRequest {
                profile: None,
                ..base()
            },
        ),
        (
            "no email",
            user::AddHumanUserRequest {
                email: None,
                ..base()
            },
        ),
        (
            "email without @",
            user::AddHumanUserRequest {
                email: Some(user::SetHumanEmail {
                    email: "nobody".into(),
                    verification: None,
                }),
                ..base()
            },
        ),
        (
            "empty given name",
            user::AddHumanUserRequest {
                profile: Some(user::SetHumanProfile::default()),
                ..base()
            },
        ),
    ];
    for api in app.user_apis() {
        for (what, request) in &cases {
            let outcome = api.call::<AddHumanUser>(Some(&auth), request.clone()).await;
            let failure = outcome.expect_err(what);
            assert_eq!(
                failure.code,
                Code::InvalidArgument,
                "{api} {what}: {failure:?}"
            );
        }
    }
    // Nothing was created: the login name is still free.
    let api = app.user_api(UserProtocol::Grpc);
    ok(&api, api.call::<AddHumanUser>(Some(&auth), base()).await);
}
