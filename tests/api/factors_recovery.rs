//! Second factors end to end, recovery codes: generated once, each working once, shown in the
//! session's factors; and the Kratos face's methods and assurance level.

use std::time::Duration;

use sessiond::domain::Time;

use crate::helpers::*;

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
        let generated = generate_recovery_codes(&api, &auth, id, 0).await;
        assert_eq!(generated.len(), 10, "{api}: the default count");
        let code = generated[3].clone();
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
                        with_recovery(v2::Checks::default(), &generated[4]),
                    ),
                )
                .await,
        );
        // New codes replace the old ones.
        generate_recovery_codes(&api, &auth, id, 1).await;
        let outcome = sessions
            .create(
                Some(&auth),
                create(with_recovery(user_check(id), &generated[5])),
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
async fn kratos_sessions_list_each_verified_factor_and_reach_aal2_with_two_kinds() {
    let app = spawn_app().await;
    let auth = operator(&app);
    let api = app.user_api(UserProtocol::Grpc);
    let sessions = app.api(Protocol::Grpc, Version::V2);
    let user = app
        .add_user_with_password("aal@example.com", FACTOR_PASSWORD)
        .await;
    let id = user.id.as_str();
    let secret = enroll_totp(&app, &api, &auth, id).await;
    let codes = generate_recovery_codes(&api, &auth, id, 1).await;
    let created = ok(
        &sessions,
        sessions
            .create(
                Some(&auth),
                create(with_password(user_check(id), FACTOR_PASSWORD)),
            )
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
