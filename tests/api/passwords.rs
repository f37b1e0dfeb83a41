//! Password checks: failures carry a CredentialsCheckError, create nothing, and lock the
//! user out after `max_password_attempts`; login names are looked up without regard to case.

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery staple";

fn password_check(login_name: &str, password: &str) -> v2::Checks {
    v2::Checks {
        user: Some(v2::CheckUser {
            search: Some(v2::check_user::Search::LoginName(login_name.into())),
        }),
        password: Some(v2::CheckPassword {
            password: password.into(),
        }),
        ..Default::default()
    }
}

fn create_with(checks: v2::Checks) -> v2::CreateSessionRequest {
    v2::CreateSessionRequest {
        checks: Some(checks),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_wrong_password_is_invalid_argument_with_a_credentials_check_error_and_creates_nothing() {
    let app = spawn_app().await;
    let admin = app.admin();
    // One user per protocol: the attempts of one user add up towards the lockout.
    for (i, api) in app.v2_apis().into_iter().enumerate() {
        let login = format!("user{i}@example.com");
        let user = app.add_user_with_password(&login, PASSWORD).await;
        let outcome = api
            .create(Some(&admin), create_with(password_check(&login, "wrong")))
            .await;
        let failure = fails(&api, outcome, Code::InvalidArgument, "COMMAND-3M0fs");
        assert_eq!(
            failure.detail,
            Some(Detail {
                type_name: "zitadel.v1.CredentialsCheckError".into(),
                id: "COMMAND-3M0fs".into(),
                message: "Password is invalid".into(),
                failed_attempts: Some(1),
            }),
            "{api}"
        );
        assert_eq!(failure.message, "Password is invalid (COMMAND-3M0fs)");
        assert_http_status(&api, &failure, 400);
        let listed = ok(
            &api,
            api.list(Some(&admin), list(vec![user_id_query(user.id.as_str())]))
                .await,
        );
        assert!(listed.message.sessions.is_empty(), "{api}: no session");
        assert_eq!(listed.message.details.map(|d| d.total_result), Some(0));
    }
}

#[tokio::test]
async fn the_user_is_locked_out_after_the_configured_number_of_failures() {
    let app = spawn_app_with(|config| config.max_password_attempts = 3).await;
    let admin = app.admin();
    let login = "locked@example.com";
    app.add_user_with_password(login, PASSWORD).await;
    // The count is per user, whatever the protocol of each attempt.
    let apis = app.apis();
    for attempt in 1..=3 {
        let api = &apis[attempt * 3 % apis.len()];
        let outcome = api
            .create(Some(&admin), create_with(password_check(login, "wrong")))
            .await;
        let failure = fails(api, outcome, Code::InvalidArgument, "COMMAND-3M0fs");
        assert_eq!(
            failure.detail.and_then(|d| d.failed_attempts),
            Some(attempt as i32),
            "{api}"
        );
    }
    // Now even the right password is refused, on every protocol.
    for api in &apis {
        let outcome = api
            .create(Some(&admin), create_with(password_check(login, PASSWORD)))
            .await;
        let failure = fails(api, outcome, Code::FailedPrecondition, "COMMAND-SFA3t");
        assert_http_status(api, &failure, 400);
    }
}

#[tokio::test]
async fn a_successful_check_resets_the_failure_count() {
    let app = spawn_app_with(|config| config.max_password_attempts = 2).await;
    let admin = app.admin();
    let login = "reset@example.com";
    app.add_user_with_password(login, PASSWORD).await;
    let api = app.api(Protocol::ConnectJson, Version::V2);
    let wrong = async || {
        api.create(Some(&admin), create_with(password_check(login, "wrong")))
            .await
    };
    let failure = fails(&api, wrong().await, Code::InvalidArgument, "COMMAND-3M0fs");
    assert_eq!(failure.detail.and_then(|d| d.failed_attempts), Some(1));
    ok(
        &api,
        api.create(Some(&admin), create_with(password_check(login, PASSWORD)))
            .await,
    );
    let failure = fails(&api, wrong().await, Code::InvalidArgument, "COMMAND-3M0fs");
    assert_eq!(failure.detail.and_then(|d| d.failed_attempts), Some(1));
}

#[tokio::test]
async fn login_names_are_matched_without_regard_to_case() {
    let app = spawn_app().await;
    let admin = app.admin();
    let user = app
        .add_user_with_password("Alice@Example.com", PASSWORD)
        .await;
    let api = app.api(Protocol::Rest, Version::V2);
    let created = ok(
        &api,
        api.create(
            Some(&admin),
            create_with(password_check("aLICE@example.COM", PASSWORD)),
        )
        .await,
    );
    let got = ok(
        &api,
        api.get(Some(&admin), get(&created.message.session_id, None))
            .await,
    );
    let factors = got
        .message
        .session
        .and_then(|s| s.factors)
        .expect("factors");
    let user_factor = factors.user.expect("user factor");
    assert_eq!(user_factor.id, user.id.as_str());
    assert_eq!(user_factor.login_name, "Alice@Example.com", "as registered");
    assert_eq!(
        factors.password.and_then(|p| p.verified_at),
        Some(timestamp(START))
    );
    let json = got.json.expect("JSON");
    assert_protojson_shapes(&json);
    assert_eq!(
        json["session"]["factors"]["password"]["verifiedAt"],
        "2025-03-04T15:13:33.203Z"
    );
    // An unknown login name is NotFound.
    let outcome = api
        .create(
            Some(&admin),
            create_with(password_check("nobody@example.com", PASSWORD)),
        )
        .await;
    fails(&api, outcome, Code::NotFound, "COMMAND-ijzr3");
}

#[tokio::test]
async fn a_password_can_be_checked_later_on_the_sessions_user() {
    let app = spawn_app().await;
    let admin = app.admin();
    let user = app
        .add_user_with_password("later@example.com", PASSWORD)
        .await;
    let api = app.api(Protocol::GrpcWeb, Version::V2beta);
    // A password without any user to check it against is refused.
    fails(
        &api,
        api.create(
            Some(&admin),
            create_with(v2::Checks {
                password: Some(v2::CheckPassword {
                    password: PASSWORD.into(),
                }),
                ..Default::default()
            }),
        )
        .await,
        Code::FailedPrecondition,
        "COMMAND-Sfw3f",
    );
    let session = app.create_session_for(&user).await;
    let reply = ok(
        &api,
        api.set(
            Some(&admin),
            v2::SetSessionRequest {
                session_id: session.session_id.clone(),
                checks: Some(v2::Checks {
                    password: Some(v2::CheckPassword {
                        password: PASSWORD.into(),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await,
    );
    assert_eq!(reply.message.details.map(|d| d.sequence), Some(2));
    let got = ok(
        &api,
        api.get(Some(&admin), get(&session.session_id, None)).await,
    );
    let password = got
        .message
        .session
        .and_then(|s| s.factors)
        .and_then(|f| f.password);
    assert!(password.is_some(), "the password factor is verified");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_cannot_exceed_the_attempt_limit() {
    let app = spawn_app_with(|config| config.max_password_attempts = 3).await;
    let admin = app.admin();
    let login = "guessed@example.com";
    app.add_user_with_password(login, PASSWORD).await;
    let api = app.api(Protocol::Grpc, Version::V2);
    let guesses = (0..6).map(|i| {
        api.create(
            Some(&admin),
            create_with(password_check(login, &format!("guess {i}"))),
        )
    });
    let results = futures_util::future::join_all(guesses).await;
    let mut wrong = Vec::new();
    // Guesses beyond the limit are refused: "locked" once three have failed, "busy" while
    // the three counted ones are still being checked.
    let mut refused = 0;
    for result in results {
        let failure = result.expect_err("every guess is wrong");
        match failure.code {
            Code::InvalidArgument => {
                assert_eq!(failure.id(), "COMMAND-3M0fs");
                wrong.push(failure.detail.and_then(|d| d.failed_attempts));
            }
            Code::FailedPrecondition => {
                assert_eq!(failure.id(), "COMMAND-SFA3t");
                refused += 1;
            }
            Code::ResourceExhausted => {
                assert_eq!(failure.id(), "SESSIOND-PASSWORD-BUSY");
                refused += 1;
            }
            other => panic!("unexpected {other:?}: {failure:?}"),
        }
    }
    wrong.sort_unstable();
    assert_eq!(
        wrong,
        vec![Some(1), Some(2), Some(3)],
        "three counted guesses"
    );
    assert_eq!(refused, 3);
    // And now the user is locked, even for the right password.
    let after = api
        .create(Some(&admin), create_with(password_check(login, PASSWORD)))
        .await;
    assert_eq!(after.expect_err("locked").id(), "COMMAND-SFA3t");
}
