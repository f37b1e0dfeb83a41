//! Second factors end to end, TOTP: enrolled through the UserService (gRPC, Connect, REST)
//! and checked in CreateSession/SetSession; single use, a foreign seed refused, the one
//! lockout limit shared with passwords and recovery codes, sealed seeds at rest.

use std::time::Duration;

use sessiond::domain::{FactorKind, Time, UserId};
use totp_rs::Secret;

use crate::helpers::*;

#[tokio::test]
async fn totp_is_enrolled_and_checked_over_grpc_connect_and_rest() {
    let app = spawn_app().await;
    let auth = operator(&app);
    for (i, api) in app.user_apis().into_iter().enumerate() {
        let login = format!("totp{i}@example.com");
        let user = app.add_user_with_password(&login, FACTOR_PASSWORD).await;
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
                        with_password(user_check(id), FACTOR_PASSWORD),
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

        let methods = ok(&api, api.methods(Some(&auth), id).await).message;
        assert_eq!(
            methods.auth_method_types,
            vec![
                user::AuthenticationMethodType::Totp as i32,
                user::AuthenticationMethodType::Password as i32
            ],
            "{api}"
        );
        if let Some(json) = ok(&api, api.methods(Some(&auth), id).await).json {
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
        .add_user_with_password("locked@example.com", FACTOR_PASSWORD)
        .await;
    let id = user.id.as_str();
    let secret = enroll_totp(&app, &api, &auth, id).await;
    generate_recovery_codes(&api, &auth, id, 2).await;
    let good = totp_code(&secret, app.now());
    let bad = if good == "123456" { "654321" } else { "123456" };

    let wrong_password = sessions
        .create(Some(&auth), create(with_password(user_check(id), "wrong")))
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
        .create(
            Some(&auth),
            create(with_password(user_check(id), FACTOR_PASSWORD)),
        )
        .await;
    fails(
        &sessions,
        right_password,
        Code::FailedPrecondition,
        "COMMAND-SFA3t",
    );
}
#[tokio::test]
async fn seeds_and_recovery_codes_are_not_stored_in_clear() {
    let app = spawn_app().await;
    let auth = operator(&app);
    let api = app.user_api(UserProtocol::Grpc);
    let user = app.add_user("sealed@example.com").await;
    let id = user.id.as_str();
    let secret = enroll_totp(&app, &api, &auth, id).await;
    let codes = generate_recovery_codes(&api, &auth, id, 3).await;
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
    // The code rows as the database holds them (SQLite; the PostgreSQL rows are written by
    // the same core and checked by the store contract).
    let db = app.data_dir.path().join("sessiond.db");
    if !db.exists() {
        eprintln!("SKIPPED: reading recovery-code rows needs the SQLite store");
        return;
    }
    let conn = rusqlite::Connection::open(&db).expect("open the database");
    let mut statement = conn
        .prepare("SELECT code_hash FROM recovery_codes WHERE user_id = ?1")
        .expect("prepare");
    let hashes: Vec<Vec<u8>> = statement
        .query_map([id], |row| row.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
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
