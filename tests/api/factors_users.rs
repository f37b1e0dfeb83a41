//! The UserService beyond the checks: who may enroll, sessions a new factor ends,
//! AddHumanUser, the methods not implemented, and malformed input on every protocol.

use std::time::Duration;

use crate::helpers::*;

#[tokio::test]
async fn users_enroll_their_own_factors_and_others_need_user_write() {
    let app = spawn_app().await;
    let api = app.user_api(UserProtocol::ConnectJson);
    let alice = app
        .add_user_with_password("self@example.com", FACTOR_PASSWORD)
        .await;
    let bob = app.add_user("other@example.com").await;
    // Alice's own session token is enough for her own factors.
    let session = ok(
        &app.api(Protocol::ConnectJson, Version::V2),
        app.api(Protocol::ConnectJson, Version::V2)
            .create(
                Some(&app.admin()),
                create(with_password(
                    user_check(alice.id.as_str()),
                    FACTOR_PASSWORD,
                )),
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
    let listed = api.methods(Some(&reader), bob.id.as_str()).await;
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
    // The revocation feed says why it ended (on PostgreSQL it may show after a moment).
    let query = format!("after=0&types=terminated&user_id={}", user.id.as_str());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let reason = loop {
        let page = send(
            app.http
                .get(app.url(&format!("/v1/session-events?{query}")))
                .header("authorization", &auth),
        )
        .await;
        assert_eq!(page.status, 200, "{}", page.json);
        let ended = page.json["events"].as_array().and_then(|events| {
            events
                .iter()
                .find(|e| e["sessionId"] == other.session_id.as_str())
                .cloned()
        });
        if let Some(event) = ended {
            break event["reason"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "{}", page.json);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(reason, "TERMINATION_REASON_FACTORS_CHANGED");
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
                    password: FACTOR_PASSWORD.into(),
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
                    create(with_totp(with_password(checks, FACTOR_PASSWORD), &code)),
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
            .call::<PasskeyLink>(
                Some(&auth),
                user::CreatePasskeyRegistrationLinkRequest {
                    user_id: "1".into(),
                    ..Default::default()
                },
            )
            .await;
        let failure = fails(&api, outcome, Code::Unimplemented, "SESSIOND-UNIMPLEMENTED");
        assert!(
            failure
                .message
                .contains("UserService/CreatePasskeyRegistrationLink"),
            "{api}: {failure:?}"
        );
        if let Some(status) = failure.http_status {
            assert_eq!(status, 501, "{api}");
        }
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
