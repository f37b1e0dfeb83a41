//! SetSession: token rotation, no-op updates, and the states a session may be set in.

use std::time::Duration;

use crate::helpers::*;

#[tokio::test]
async fn set_session_with_a_change_rotates_the_token_and_the_old_one_is_rejected() {
    let (app, alice, admin) = spawn_app_with_alice().await;
    for api in app.apis() {
        let (session, changed) = changed_session(&app, &api, &alice).await;
        let id = session.session_id.as_str();
        let old = session.session_token.as_str();
        let new = changed.session_token.as_str();
        assert!(new.starts_with("sdst_"), "{api}");
        assert_ne!(new, old, "{api}");

        let failure = token_refused(
            &api,
            api.get(Some(&admin), get(id, Some(old))).await,
            "QUERY-dsfr3",
        );
        assert_eq!(failure.message, "Permission denied (QUERY-dsfr3)", "{api}");
        assert_http_status(&api, &failure, 403);
        let got = ok(&api, api.get(Some(&admin), get(id, Some(new))).await);
        let session = got.message.session.expect("session");
        assert_eq!(session.sequence, 2, "{api}");
        assert_eq!(
            session.metadata.get("k").map(Vec::as_slice),
            Some(&b"v"[..])
        );

        // Each further change rotates again; only the newest token works.
        let again = ok(
            &api,
            api.set(Some(&admin), set_metadata(id, "k", b"w")).await,
        );
        let newest = again.message.session_token.as_str();
        assert_ne!(newest, new, "{api}");
        for stale in [old, new] {
            let outcome = api.get(Some(&admin), get(id, Some(stale))).await;
            token_refused(&api, outcome, "QUERY-dsfr3");
        }
        ok(&api, api.get(Some(&admin), get(id, Some(newest))).await);
    }
}

#[tokio::test]
async fn a_no_op_set_session_returns_an_empty_token_and_keeps_the_sequence() {
    let (app, alice, admin) = spawn_app_with_alice().await;
    for api in app.apis() {
        let (session, changed) = changed_session(&app, &api, &alice).await;
        let id = session.session_id.as_str();
        let token = changed.session_token.clone();
        app.advance(Duration::from_secs(5));
        for request in [
            // Nothing at all.
            v2::SetSessionRequest {
                session_id: id.into(),
                ..Default::default()
            },
            // The same metadata value again.
            set_metadata(id, "k", b"v"),
            // Deleting a key that is not there.
            set_metadata(id, "absent", b""),
        ] {
            let reply = ok(&api, api.set(Some(&admin), request).await);
            assert_eq!(reply.message.session_token, "", "{api}");
            assert_eq!(
                reply.message.details, changed.details,
                "{api}: same sequence and change date"
            );
            if let Some(json) = &reply.json {
                assert!(json.get("sessionToken").is_none(), "{api}: {json}");
                assert_eq!(json["details"]["sequence"], "2", "{api}");
            }
        }
        assert_eq!(app.event_count(id).await, 2, "{api}: no event for a no-op");
        // The current token is still the one from the last real change.
        ok(&api, api.get(Some(&admin), get(id, Some(&token))).await);
    }
}

#[tokio::test]
async fn set_session_deletes_metadata_with_an_empty_value_and_sets_a_lifetime() {
    let (app, alice, admin) = spawn_app_with_alice().await;
    for api in app.apis() {
        let (session, _) = changed_session(&app, &api, &alice).await;
        let id = session.session_id.as_str();
        ok(
            &api,
            api.set(Some(&admin), set_metadata(id, "k", b"")).await,
        );
        let reply = ok(
            &api,
            api.set(
                Some(&admin),
                v2::SetSessionRequest {
                    session_id: id.into(),
                    lifetime: Some(seconds(300)),
                    ..Default::default()
                },
            )
            .await,
        );
        assert_eq!(reply.message.details.map(|d| d.sequence), Some(4), "{api}");
        let got = ok(&api, api.get(Some(&admin), get(id, None)).await);
        let session = got.message.session.expect("session");
        assert!(session.metadata.is_empty(), "{api}");
        let expected =
            sessiond::domain::Time::from_unix_micros(app.now().unix_micros() + 300_000_000);
        assert_eq!(session.expiration_date, Some(timestamp(expected)), "{api}");
        if let Some(json) = &got.json {
            assert_protojson_shapes(json);
        }
    }
}

#[tokio::test]
async fn set_session_on_an_expired_session_is_failed_precondition() {
    let app = spawn_app().await;
    let alice = app.add_user("alice@example.com").await;
    for api in app.apis() {
        // At the very end of its lifetime a session is expired.
        let session = expired_session(&app, &alice, 60, 60).await;
        let admin = app.admin();
        let outcome = api
            .set(Some(&admin), set_metadata(&session.session_id, "k", b"v"))
            .await;
        let failure = fails(&api, outcome, Code::FailedPrecondition, "COMMAND-Hkl3d");
        // FailedPrecondition is HTTP 400.
        assert_http_status(&api, &failure, 400);
        assert_eq!(app.event_count(&session.session_id).await, 1, "{api}");
        // Still readable: expiry is not checked by GetSession.
        ok(
            &api,
            api.get(Some(&admin), get(&session.session_id, None)).await,
        );
    }
}

#[tokio::test]
async fn set_session_on_a_terminated_or_unknown_session_is_not_found() {
    let (app, alice, admin) = spawn_app_with_alice().await;
    for api in app.apis() {
        let session = terminated_session(&app, &api, &alice).await;
        for id in [session.session_id.as_str(), UNKNOWN_SESSION] {
            let outcome = api.set(Some(&admin), set_metadata(id, "k", b"v")).await;
            let failure = fails(&api, outcome, Code::NotFound, "QUERY-SFeaa");
            assert_http_status(&api, &failure, 404);
        }
        assert_eq!(app.event_count(&session.session_id).await, 2, "{api}");
    }
}

#[tokio::test]
async fn a_user_check_for_another_user_is_rejected() {
    let app = spawn_app().await;
    let alice = app.add_user("alice@example.com").await;
    let bob = app.add_user("bob@example.com").await;
    let admin = app.admin();
    for api in app.apis() {
        let session = app.create_session_for(&alice).await;
        let check = |user: &sessiond::domain::User| v2::SetSessionRequest {
            session_id: session.session_id.clone(),
            checks: Some(user_check(user.id.as_str())),
            ..Default::default()
        };
        let other_user = api.set(Some(&admin), check(&bob)).await;
        let outcome = other_user;
        fails(&api, outcome, Code::InvalidArgument, "COMMAND-userchange");
        // Re-checking the same user is a change (new verification time) and rotates.
        let reply = ok(&api, api.set(Some(&admin), check(&alice)).await);
        assert!(!reply.message.session_token.is_empty(), "{api}");
    }
}

#[tokio::test]
async fn a_zero_or_negative_lifetime_is_invalid() {
    let (app, alice, admin) = spawn_app_with_alice().await;
    for api in app.apis() {
        for lifetime in [seconds(0), seconds(-5)] {
            fails(
                &api,
                api.create(
                    Some(&admin),
                    v2::CreateSessionRequest {
                        lifetime: Some(lifetime),
                        ..create_for_user(alice.id.as_str())
                    },
                )
                .await,
                Code::InvalidArgument,
                "COMMAND-asEG4",
            );
        }
    }
}

#[tokio::test]
async fn unsupported_checks_and_challenges_for_another_domain_are_invalid_arguments() {
    let (app, alice, admin) = spawn_app_with_alice().await;
    for api in app.apis() {
        fails(
            &api,
            api.create(
                Some(&admin),
                v2::CreateSessionRequest {
                    checks: Some(v2::Checks {
                        idp_intent: Some(v2::CheckIdpIntent {
                            idp_intent_id: "intent".into(),
                            idp_intent_token: "token".into(),
                        }),
                        ..user_check(alice.id.as_str())
                    }),
                    ..Default::default()
                },
            )
            .await,
            Code::InvalidArgument,
            "SESSIOND-CHECK-UNSUPPORTED",
        );
        fails(
            &api,
            api.create(
                Some(&admin),
                v2::CreateSessionRequest {
                    challenges: Some(v2::RequestChallenges {
                        web_auth_n: Some(v2::request_challenges::WebAuthN {
                            domain: "example.com".into(),
                            user_verification_requirement: 1,
                        }),
                        ..Default::default()
                    }),
                    ..create_for_user(alice.id.as_str())
                },
            )
            .await,
            Code::InvalidArgument,
            "SESSIOND-PASSKEY-DOMAIN",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_to_one_session_all_apply_in_sequence() {
    let (app, alice, admin) = spawn_app_with_alice().await;
    let session = app.create_session_for(&alice).await;
    let id = session.session_id.as_str();
    let apis = app.apis();
    let calls = apis
        .iter()
        .enumerate()
        .map(|(i, api)| api.set(Some(&admin), set_metadata(id, &format!("k{i}"), b"v")));
    let results = futures_util::future::join_all(calls).await;
    let mut sequences = Vec::new();
    let mut tokens = Vec::new();
    for (api, result) in apis.iter().zip(results) {
        let reply = ok(api, result);
        sequences.push(reply.message.details.expect("details").sequence);
        tokens.push(reply.message.session_token);
    }
    sequences.sort_unstable();
    let expected: Vec<u64> = (2..2 + apis.len() as u64).collect();
    assert_eq!(sequences, expected, "every change got its own sequence");
    assert_eq!(app.event_count(id).await, 1 + apis.len());

    let api = app.api(Protocol::Grpc, Version::V2);
    let got = ok(&api, api.get(Some(&admin), get(id, None)).await);
    let session = got.message.session.expect("session");
    assert_eq!(session.sequence, 1 + apis.len() as u64);
    assert_eq!(session.metadata.len(), apis.len(), "no change was lost");
    // Exactly one of the issued tokens is current.
    let mut current = 0;
    for token in &tokens {
        if api.get(Some(&admin), get(id, Some(token))).await.is_ok() {
            current += 1;
        }
    }
    assert_eq!(current, 1, "only the newest token works");
}

#[tokio::test]
async fn an_absurdly_long_lifetime_reads_back_the_same_on_every_protocol() {
    let (app, alice, admin) = spawn_app_with_alice().await;
    let grpc = app.api(Protocol::Grpc, Version::V2);
    let session = ok(
        &grpc,
        grpc.create(
            Some(&admin),
            v2::CreateSessionRequest {
                // The longest lifetime a protobuf Duration can hold.
                lifetime: Some(pbjson_types::Duration {
                    seconds: 315_576_000_000,
                    nanos: 999_999_999,
                }),
                ..create_for_user(alice.id.as_str())
            },
        )
        .await,
    )
    .message;
    // Far beyond what a protobuf Timestamp can hold: every protocol shows its last second.
    let last = Timestamp {
        seconds: 253_402_300_799,
        nanos: 0,
    };
    for api in app.apis() {
        let got = ok(
            &api,
            api.get(Some(&admin), get(&session.session_id, None)).await,
        );
        let expiration = got.message.session.and_then(|s| s.expiration_date);
        assert_eq!(expiration, Some(last), "{api}");
        if let Some(json) = &got.json {
            assert_eq!(json["session"]["expirationDate"], "9999-12-31T23:59:59Z");
        }
    }
}
