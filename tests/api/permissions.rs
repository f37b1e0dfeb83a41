//! Permissions: what a caller may do with which JWT permissions, and whose sessions it sees.

use std::collections::BTreeSet;

use crate::helpers::*;

#[tokio::test]
async fn create_without_session_write_is_permission_denied() {
    let app = spawn_app().await;
    let alice = app.add_user("alice@example.com").await;
    let reader = app.bearer("reader", &["session.read", "session.delete"]);
    for api in app.apis() {
        let outcome = api
            .create(Some(&reader), create_for_user(alice.id.as_str()))
            .await;
        let failure = fails(&api, outcome, Code::PermissionDenied, "AUTH-AWfge");
        assert_http_status(&api, &failure, 403);
        if api.protocol == Protocol::Rest {
            assert_eq!(
                failure.body,
                Some(serde_json::json!({
                    "code": 7,
                    "message": "No matching permissions found (requires session.write) (AUTH-AWfge)",
                    "details": [{
                        "@type": "type.googleapis.com/zitadel.v1.ErrorDetail",
                        "id": "AUTH-AWfge",
                        "message": "No matching permissions found (requires session.write)",
                    }],
                }))
            );
        }
    }
    let listed = app
        .api(Protocol::Grpc, Version::V2)
        .list(Some(&app.admin()), Default::default())
        .await
        .expect("list")
        .message;
    assert!(listed.sessions.is_empty(), "nothing was created");
}

#[tokio::test]
async fn set_without_session_write_is_permission_denied_even_for_the_sessions_user() {
    let app = spawn_app().await;
    let alice = app.add_user("alice@example.com").await;
    let session = app.create_session_for(&alice).await;
    let as_alice = format!("Bearer {}", session.session_token);
    let reader = app.bearer("reader", &["session.read"]);
    for api in app.apis() {
        for auth in [&as_alice, &reader] {
            let outcome = api
                .set(Some(auth), set_metadata(&session.session_id, "k", b"v"))
                .await;
            fails(&api, outcome, Code::PermissionDenied, "AUTH-AWfge");
        }
    }
    assert_eq!(app.event_count(&session.session_id).await, 1);
}

#[tokio::test]
async fn get_of_another_users_session_without_token_or_session_read_is_permission_denied() {
    let app = spawn_app().await;
    let alice = app.add_user("alice@example.com").await;
    let login_client = app.bearer("login-client", &["session.write"]);
    let api = app.api(Protocol::Grpc, Version::V2);
    let session = ok(
        &api,
        api.create(Some(&login_client), create_for_user(alice.id.as_str()))
            .await,
    )
    .message;

    let mallory = app.bearer("mallory", &["session.write", "session.delete"]);
    let as_alice = app.bearer(alice.id.as_str(), &[]);
    let reader = app.bearer("auditor", &["session.read"]);
    for api in app.apis() {
        let outcome = api
            .get(Some(&mallory), get(&session.session_id, None))
            .await;
        let failure = fails(&api, outcome, Code::PermissionDenied, "AUTH-AWfge");
        assert_http_status(&api, &failure, 403);
        // The token grants access to anyone.
        ok(
            &api,
            api.get(
                Some(&mallory),
                get(&session.session_id, Some(&session.session_token)),
            )
            .await,
        );
        // So do session.read, being the creator, or being the checked user.
        ok(
            &api,
            api.get(Some(&reader), get(&session.session_id, None)).await,
        );
        ok(
            &api,
            api.get(Some(&login_client), get(&session.session_id, None))
                .await,
        );
        ok(
            &api,
            api.get(Some(&as_alice), get(&session.session_id, None))
                .await,
        );
        // A wrong token does not fall back to the permission check.
        let outcome = api
            .get(Some(&reader), get(&session.session_id, Some("sdst_wrong")))
            .await;
        fails(&api, outcome, Code::PermissionDenied, "QUERY-dsfr3");
    }
}

#[tokio::test]
async fn list_shows_only_the_sessions_the_caller_may_read_and_counts_only_those() {
    let app = spawn_app().await;
    let alice = app.add_user("alice@example.com").await;
    let bob = app.add_user("bob@example.com").await;
    let client_x = app.bearer("client-x", &["session.write"]);
    let client_y = app.bearer("client-y", &["session.write"]);
    let api = app.api(Protocol::Grpc, Version::V2);
    let create = async |auth: &str, user: &str| {
        ok(&api, api.create(Some(auth), create_for_user(user)).await)
            .message
            .session_id
    };
    let x_alice = create(&client_x, alice.id.as_str()).await;
    let x_bob = create(&client_x, bob.id.as_str()).await;
    let y_alice = create(&client_y, alice.id.as_str()).await;
    let y_none = ok(&api, api.create(Some(&client_y), Default::default()).await)
        .message
        .session_id;

    let as_alice = app.bearer(alice.id.as_str(), &[]);
    let as_bob = app.bearer(bob.id.as_str(), &[]);
    let stranger = app.bearer("stranger", &["session.write", "session.delete"]);
    let cases: Vec<(&str, &str, BTreeSet<&str>)> = vec![
        (
            "client-x",
            &client_x,
            BTreeSet::from([x_alice.as_str(), x_bob.as_str()]),
        ),
        (
            "client-y",
            &client_y,
            BTreeSet::from([y_alice.as_str(), y_none.as_str()]),
        ),
        (
            "alice",
            &as_alice,
            BTreeSet::from([x_alice.as_str(), y_alice.as_str()]),
        ),
        ("bob", &as_bob, BTreeSet::from([x_bob.as_str()])),
        ("stranger", &stranger, BTreeSet::new()),
    ];
    let admin = app.admin();
    for api in app.apis() {
        for (who, auth, expected) in &cases {
            let listed = ok(&api, api.list(Some(auth), Default::default()).await).message;
            let ids: BTreeSet<&str> = listed.sessions.iter().map(|s| s.id.as_str()).collect();
            assert_eq!(&ids, expected, "{api}: {who}");
            assert_eq!(
                listed.details.map(|d| d.total_result),
                Some(expected.len() as u64),
                "{api}: {who}: totalResult agrees with the page"
            );
        }
        // With session.read every session is visible.
        let listed = ok(&api, api.list(Some(&admin), Default::default()).await).message;
        assert_eq!(listed.sessions.len(), 4, "{api}");
        assert_eq!(listed.details.map(|d| d.total_result), Some(4), "{api}");
        // A query for someone else's sessions finds nothing rather than failing.
        let listed = ok(
            &api,
            api.list(Some(&as_bob), list(vec![user_id_query(alice.id.as_str())]))
                .await,
        )
        .message;
        assert!(listed.sessions.is_empty(), "{api}");
        assert_eq!(listed.details.map(|d| d.total_result), Some(0), "{api}");
    }
}
