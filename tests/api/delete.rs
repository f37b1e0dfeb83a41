//! DeleteSession semantics (seeds 001 `DELETE /v2/sessions/:sessionId` and 004
//! `DELETE /v2beta/sessions/:sessionId`).

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn deleting_twice_returns_the_same_details_and_writes_no_event() {
    let (app, alice, admin) = spawn_app_with_alice().await;
    for api in app.apis() {
        let session = app.create_session_for(&alice).await;
        let id = session.session_id.as_str();
        let token = session.session_token.as_str();
        app.advance(Duration::from_secs(1));
        let first = ok(
            &api,
            api.delete(Some(&admin), delete(id, Some(token))).await,
        );
        let details = first.message.details.clone().expect("details");
        assert_eq!(details.sequence, 2, "{api}");
        assert_eq!(details.change_date, Some(timestamp(app.now())), "{api}");
        assert_eq!(details.resource_owner, INSTANCE, "{api}");
        assert_eq!(app.event_count(id).await, 2, "{api}");

        app.advance(Duration::from_secs(1));
        // Again with the token, without it (session.delete), and as the owner.
        let as_alice = app.bearer(alice.id.as_str(), &[]);
        for (auth, token) in [(&admin, Some(token)), (&admin, None), (&as_alice, None)] {
            let again = ok(&api, api.delete(Some(auth), delete(id, token)).await);
            assert_eq!(again.message.details, first.message.details, "{api}");
            if let (Some(a), Some(b)) = (&again.json, &first.json) {
                assert_eq!(a, b, "{api}: byte-for-byte the same details");
            }
        }
        assert_eq!(app.event_count(id).await, 2, "{api}: no new event");
    }
}

#[tokio::test]
async fn delete_with_a_stale_token_is_permission_denied() {
    let (app, alice, admin) = spawn_app_with_alice().await;
    for api in app.apis() {
        let (session, _) = changed_session(&app, &api, &alice).await;
        let id = session.session_id.as_str();
        let stale = delete(id, Some(&session.session_token));
        let failure = token_refused(&api, api.delete(Some(&admin), stale).await, "COMMAND-sGr42");
        assert_eq!(
            failure.message, "Session Token is invalid (COMMAND-sGr42)",
            "{api}"
        );
        if api.protocol == Protocol::Rest {
            assert_eq!(failure.http_status, Some(403));
            assert_eq!(
                failure.body,
                Some(json!({
                    "code": 7,
                    "message": "Session Token is invalid (COMMAND-sGr42)",
                    "details": [{
                        "@type": "type.googleapis.com/zitadel.v1.ErrorDetail",
                        "id": "COMMAND-sGr42",
                        "message": "Session Token is invalid",
                    }],
                }))
            );
        }
        if api.protocol == Protocol::ConnectJson {
            let body = failure.body.clone().expect("body");
            assert_eq!(body["code"], "permission_denied");
            assert_eq!(body["details"][0]["type"], "zitadel.v1.ErrorDetail");
        }
        // The token check comes before the permission: session.delete does not help.
        assert_eq!(app.event_count(id).await, 2, "{api}: nothing terminated");
        let got = ok(&api, api.get(Some(&admin), get(id, None)).await);
        assert!(got.message.session.is_some());
    }
}

#[tokio::test]
async fn delete_with_another_sessions_token_is_permission_denied() {
    let (app, alice, admin) = spawn_app_with_alice().await;
    for api in app.apis() {
        let one = app.create_session_for(&alice).await;
        let other = app.create_session_for(&alice).await;
        for token in [other.session_token.as_str(), "garbage"] {
            let request = delete(&one.session_id, Some(token));
            token_refused(
                &api,
                api.delete(Some(&admin), request).await,
                "COMMAND-sGr42",
            );
        }
        assert_eq!(app.event_count(&one.session_id).await, 1, "{api}");
    }
}

#[tokio::test]
async fn deleting_an_unknown_session_with_session_delete_and_no_token_succeeds_with_empty_details()
{
    let app = spawn_app().await;
    let deleter = app.bearer("ops", &["session.delete"]);
    for api in app.apis() {
        let reply = ok(
            &api,
            api.delete(Some(&deleter), delete(UNKNOWN_SESSION, None))
                .await,
        );
        let details = reply.message.details.clone().unwrap_or_default();
        assert_eq!(details, object::Details::default(), "{api}");
        if let Some(json) = &reply.json {
            assert_eq!(json, &json!({"details": {}}), "{api}");
        }
        if api.protocol == Protocol::Rest {
            assert_eq!(reply.http_status, Some(200));
        }
    }
    // Seed example body, byte for byte.
    let response = app
        .http
        .delete(app.url("/v2/sessions/999"))
        .header("authorization", &deleter)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), r#"{"details":{}}"#);
}

#[tokio::test]
async fn deleting_an_unknown_session_with_a_token_is_permission_denied() {
    let app = spawn_app().await;
    let alice = app.add_user("alice@example.com").await;
    let real = app.create_session_for(&alice).await;
    let admin = app.admin();
    for api in app.apis() {
        let request = delete(UNKNOWN_SESSION, Some(&real.session_token));
        token_refused(
            &api,
            api.delete(Some(&admin), request).await,
            "COMMAND-sGr42",
        );
    }
}

#[tokio::test]
async fn deleting_without_token_or_permission_is_permission_denied() {
    let app = spawn_app().await;
    let alice = app.add_user("alice@example.com").await;
    let bob = app.add_user("bob@example.com").await;
    let as_bob = app.bearer(bob.id.as_str(), &["session.read", "session.write"]);
    let bobs_session = app.create_session_for(&bob).await;
    let bob_by_token = format!("Bearer {}", bobs_session.session_token);
    let session = app.create_session_for(&alice).await;
    for api in app.apis() {
        for auth in [&as_bob, &bob_by_token] {
            for id in [session.session_id.as_str(), UNKNOWN_SESSION] {
                let outcome = api.delete(Some(auth), delete(id, None)).await;
                fails(&api, outcome, Code::PermissionDenied, "AUTH-AWfge");
            }
        }
    }
    assert_eq!(app.event_count(&session.session_id).await, 1);
}

#[tokio::test]
async fn users_can_delete_their_own_session_without_a_token() {
    let app = spawn_app().await;
    let alice = app.add_user("alice@example.com").await;
    for (i, api) in app.apis().into_iter().enumerate() {
        let session = app.create_session_for(&alice).await;
        // Alternate: the session's own token as bearer, a sibling session's token, a JWT
        // whose subject is alice (without any permission).
        let sibling = app.create_session_for(&alice).await;
        let auth = match i % 3 {
            0 => format!("Bearer {}", session.session_token),
            1 => format!("Bearer {}", sibling.session_token),
            _ => app.bearer(alice.id.as_str(), &[]),
        };
        let reply = ok(
            &api,
            api.delete(Some(&auth), delete(&session.session_id, None))
                .await,
        );
        assert_eq!(reply.message.details.map(|d| d.sequence), Some(2), "{api}");
        assert_eq!(app.event_count(&session.session_id).await, 2, "{api}");
    }
}

#[tokio::test]
async fn an_empty_session_token_counts_as_none() {
    let app = spawn_app().await;
    let alice = app.add_user("alice@example.com").await;
    let deleter = app.bearer("ops", &["session.delete"]);
    for api in app.apis() {
        let session = app.create_session_for(&alice).await;
        let reply = ok(
            &api,
            api.delete(Some(&deleter), delete(&session.session_id, Some("")))
                .await,
        );
        assert_eq!(reply.message.details.map(|d| d.sequence), Some(2), "{api}");
    }
}

#[tokio::test]
async fn expired_sessions_can_be_deleted() {
    let app = spawn_app().await;
    let alice = app.add_user("alice@example.com").await;
    for api in app.apis() {
        let session = expired_session(&app, &alice, 10, 11).await;
        let request = delete(&session.session_id, Some(&session.session_token));
        let reply = ok(&api, api.delete(Some(&app.admin()), request).await);
        assert_eq!(reply.message.details.map(|d| d.sequence), Some(2), "{api}");
    }
}

#[tokio::test]
async fn after_delete_the_session_is_gone_and_its_token_is_dead() {
    let (app, alice, admin) = spawn_app_with_alice().await;
    for api in app.apis() {
        let session = terminated_session(&app, &api, &alice).await;
        let id = session.session_id.as_str();
        let token = session.session_token.as_str();
        let outcome = api.get(Some(&admin), get(id, None)).await;
        let failure = fails(&api, outcome, Code::NotFound, "QUERY-SFeaa");
        assert_eq!(failure.message, "Session does not exist (QUERY-SFeaa)");
        assert_http_status(&api, &failure, 404);
        let outcome = api.get(Some(&admin), get(id, Some(token))).await;
        fails(&api, outcome, Code::NotFound, "QUERY-SFeaa");
        let bearer = format!("Bearer {token}");
        let outcome = api.get(Some(&bearer), get(id, None)).await;
        fails(&api, outcome, Code::Unauthenticated, "AUTH-7fs1e");
        let listed = ok(
            &api,
            api.list(Some(&admin), list(vec![ids_query(&[id])])).await,
        );
        assert!(listed.message.sessions.is_empty(), "{api}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deletes_terminate_once() {
    let (app, alice, admin) = spawn_app_with_alice().await;
    let session = app.create_session_for(&alice).await;
    let id = session.session_id.as_str();
    let token = session.session_token.as_str();
    let apis = app.apis();
    let calls = apis
        .iter()
        .map(|api| api.delete(Some(&admin), delete(id, Some(token))));
    let results = futures_util::future::join_all(calls).await;
    let mut details = Vec::new();
    for (api, result) in apis.iter().zip(results) {
        details.push(ok(api, result).message.details.expect("details"));
    }
    assert!(details.iter().all(|d| d == &details[0]), "{details:?}");
    assert_eq!(details[0].sequence, 2);
    assert_eq!(app.event_count(id).await, 2, "one termination event");
}

#[tokio::test]
async fn rest_delete_works_without_a_body() {
    let app = spawn_app().await;
    let alice = app.add_user("alice@example.com").await;
    let session = app.create_session_for(&alice).await;
    for (version, id) in [("v2", session.session_id.as_str()), ("v2beta", "42")] {
        let response = app
            .http
            .delete(app.url(&format!("/{version}/sessions/{id}")))
            .header("authorization", app.bearer("ops", &["session.delete"]))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{version}");
    }
    assert_eq!(app.event_count(&session.session_id).await, 2);
}
