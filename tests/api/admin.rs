//! The administration face under `/auth/admin/api` (seed 003
//! `DELETE /auth/admin/api/users/{id}/sessions/{sessionId}`): a user's sessions and the user
//! directory, for callers with a bearer JWT and permissions. Errors are
//! `{"statusCode","error","message","code"}` with a stable code.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery";

fn ops(app: &TestApp) -> String {
    app.bearer("ops", EVERY_PERMISSION)
}

fn users_url(app: &TestApp, rest: &str) -> String {
    app.url(&format!("/auth/admin/api/users{rest}"))
}

async fn admin_get(app: &TestApp, path: &str) -> Answer {
    send(
        app.http
            .get(users_url(app, path))
            .header("authorization", ops(app)),
    )
    .await
}

async fn admin_delete(app: &TestApp, path: &str) -> Answer {
    send(
        app.http
            .delete(users_url(app, path))
            .header("authorization", ops(app)),
    )
    .await
}

async fn admin_post(app: &TestApp, path: &str, body: Option<Value>) -> Answer {
    let mut request = app
        .http
        .post(users_url(app, path))
        .header("authorization", ops(app));
    if let Some(body) = body {
        request = request.json(&body);
    }
    send(request).await
}

/// `POST /auth/admin/api/users/:id/:action` (lock, deactivate, reactivate).
async fn user_action(app: &TestApp, id: &str, action: &str) -> Answer {
    admin_post(app, &format!("/{id}/{action}"), None).await
}

/// Checks that none of these sessions identifies anybody any more.
async fn assert_ended(app: &TestApp, sessions: &[Login], case: &str) {
    for session in sessions {
        assert_eq!(whoami(app, &session.token).await.status, 401, "{case}");
    }
}

async fn admin_put(app: &TestApp, path: &str, body: Value) -> Answer {
    send(
        app.http
            .put(users_url(app, path))
            .header("authorization", ops(app))
            .json(&body),
    )
    .await
}

/// The exact error body of this face.
fn admin_error(status: u16, code: &str, message: &str) -> Value {
    let text = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        _ => panic!("no status text for {status} in these tests"),
    };
    json!({"statusCode": status, "error": text, "message": message, "code": code})
}

#[track_caller]
fn assert_admin_error(answer: &Answer, status: u16, code: &str, message: &str) {
    assert_json_error(answer, status, admin_error(status, code, message));
}

/// A 400 VALIDATION_FAILED whose message starts with `prefix` (serde's wording follows).
#[track_caller]
fn assert_validation_prefix(answer: &Answer, prefix: &str) {
    assert_eq!(answer.status, 400, "{}", answer.body);
    let message = answer.json["message"].as_str().unwrap_or_default();
    assert!(message.starts_with(prefix), "{}", answer.body);
    assert_eq!(
        answer.json,
        admin_error(400, "VALIDATION_FAILED", message),
        "{}",
        answer.body
    );
}

const USER_NOT_FOUND: &str = "User could not be found";
const SESSION_NOT_FOUND: &str = "Session not found for this user";
const AUTH_REQUIRED: &str = "Admin authentication required: missing or invalid bearer token";

fn ids(answer: &Answer) -> Vec<String> {
    answer.json["data"]
        .as_array()
        .unwrap_or_else(|| panic!("data array: {}", answer.body))
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_owned())
        .collect()
}

fn rfc3339(t: sessiond::domain::Time) -> String {
    t.to_rfc3339()
}

// ------------------------------------------------------------------------------------------
// A user's sessions
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn listing_a_users_sessions_answers_each_one_newest_first_with_its_state() {
    let app = spawn_app().await;
    let alice = app
        .add_user_with_password("alice@example.com", PASSWORD)
        .await;
    let bob = app.add_user("bob").await;
    let t0 = app.now();
    let laptop = rest_login(
        &app,
        json!({
            "checks": {
                "user": {"loginName": "alice@example.com"},
                "password": {"password": PASSWORD},
            },
            "lifetime": "3600s",
            "userAgent": {
                "ip": "198.51.100.4",
                "description": "Alice's laptop",
                "header": {"User-Agent": {"values": ["Mozilla/5.0 Firefox/128.0"]}},
            },
        }),
    )
    .await;
    app.advance(Duration::from_secs(1));
    let t1 = app.now();
    let phone = login(&app, &alice).await;
    app.advance(Duration::from_secs(1));
    let t2 = app.now();
    let old = login(&app, &alice).await;
    app.advance(Duration::from_secs(1));
    let t3 = app.now();
    let revoked = admin_delete(&app, &format!("/{}/sessions/{}", alice.id, old.id)).await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    login(&app, &bob).await;

    let answer = admin_get(&app, &format!("/{}/sessions", alice.id)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(
        answer.json,
        json!({
            "data": [
                {
                    "id": old.id,
                    "userId": alice.id.as_str(),
                    "deviceName": "Unknown device",
                    "userAgent": null,
                    "ipAddress": null,
                    "createdAt": rfc3339(t2),
                    "lastActive": rfc3339(t3),
                    "expiresAt": null,
                    "active": false,
                    "revokedAt": rfc3339(t3),
                },
                {
                    "id": phone.id,
                    "userId": alice.id.as_str(),
                    "deviceName": "Unknown device",
                    "userAgent": null,
                    "ipAddress": null,
                    "createdAt": rfc3339(t1),
                    "lastActive": rfc3339(t1),
                    "expiresAt": null,
                    "active": true,
                    "revokedAt": null,
                },
                {
                    "id": laptop.id,
                    "userId": alice.id.as_str(),
                    "deviceName": "Alice's laptop",
                    "userAgent": "Mozilla/5.0 Firefox/128.0",
                    "ipAddress": "198.51.100.4",
                    "createdAt": rfc3339(t0),
                    "lastActive": rfc3339(t0),
                    "expiresAt": rfc3339(t0.saturating_add(Duration::from_secs(3600))),
                    "active": true,
                    "revokedAt": null,
                },
            ],
            "total": 3,
            "nextPageToken": null,
        })
    );
}

#[tokio::test]
async fn the_active_filter_separates_live_sessions_from_revoked_and_expired_ones() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let api = app.api(Protocol::Grpc, Version::V2);
    let live = login(&app, &alice).await;
    app.advance(Duration::from_secs(1));
    let revoked = login(&app, &alice).await;
    app.advance(Duration::from_secs(1));
    let mut short = create_for_user(alice.id.as_str());
    short.lifetime = Some(seconds(10));
    let expired = ok(&api, api.create(Some(&app.admin()), short).await)
        .message
        .session_id;
    ok(
        &api,
        api.delete(Some(&app.admin()), delete(&revoked.id, None))
            .await,
    );
    app.advance(Duration::from_secs(10));

    let active = admin_get(&app, &format!("/{}/sessions?active=true", alice.id)).await;
    assert_eq!(active.status, 200, "{}", active.body);
    assert_eq!(ids(&active), [live.id.as_str()]);
    assert_eq!(active.json["total"], 1);
    assert_eq!(active.json["data"][0]["active"], true);

    let inactive = admin_get(&app, &format!("/{}/sessions?active=false", alice.id)).await;
    assert_eq!(inactive.status, 200, "{}", inactive.body);
    assert_eq!(ids(&inactive), [expired.as_str(), revoked.id.as_str()]);
    assert_eq!(inactive.json["total"], 2);
    assert_eq!(inactive.json["data"][0]["active"], false);
    assert_eq!(
        inactive.json["data"][0]["revokedAt"],
        Value::Null,
        "expired, not revoked"
    );
    assert_eq!(inactive.json["data"][1]["active"], false);
    assert!(inactive.json["data"][1]["revokedAt"].is_string());

    let all = admin_get(&app, &format!("/{}/sessions", alice.id)).await;
    assert_eq!(all.json["total"], 3);

    for bad in ["yes", "1", "TRUE", ""] {
        let answer = admin_get(&app, &format!("/{}/sessions?active={bad}", alice.id)).await;
        assert_admin_error(
            &answer,
            400,
            "VALIDATION_FAILED",
            "active must be true or false",
        );
    }
}

#[tokio::test]
async fn paging_a_users_sessions_returns_each_session_once() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let created = session_ids(&app, &alice, 7, 3).await;
    let mut seen = Vec::new();
    let mut path = format!("/{}/sessions?pageSize=3", alice.id);
    let mut pages = 0;
    loop {
        let answer = admin_get(&app, &path).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        // Counted when asked: the sessions created between pages add up.
        assert_eq!(answer.json["total"], 7 + pages);
        pages += 1;
        let page = ids(&answer);
        assert!(page.len() <= 3);
        seen.extend(page);
        // New sessions between pages never disturb the pages still to come.
        login(&app, &alice).await;
        match answer.json["nextPageToken"].as_str() {
            Some(token) => path = format!("/{}/sessions?pageSize=3&pageToken={token}", alice.id),
            None => {
                assert_eq!(answer.json["nextPageToken"], Value::Null);
                break;
            }
        }
    }
    assert_eq!(pages, 3);
    assert_each_once(&seen, &created);
    // The snake_case spelling works too.
    let snake = admin_get(&app, &format!("/{}/sessions?page_size=2", alice.id)).await;
    assert_eq!(ids(&snake).len(), 2);
}

#[tokio::test]
async fn invalid_page_sizes_and_page_tokens_are_validation_failures() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let bob = app.add_user("bob").await;
    for _ in 0..3 {
        login(&app, &alice).await;
        login(&app, &bob).await;
    }
    let base = format!("/{}/sessions", alice.id);
    let range = "page_size must be between 1 and 1000";
    let number = "pageSize must be a non-negative integer in range";
    for (query, message) in [
        ("pageSize=0", range),
        ("pageSize=1001", range),
        ("pageSize=4294967295", range),
        ("pageSize=-1", number),
        ("pageSize=99999999999", number),
        ("pageSize=abc", number),
        ("pageSize=", number),
    ] {
        let answer = admin_get(&app, &format!("{base}?{query}")).await;
        assert_admin_error(&answer, 400, "VALIDATION_FAILED", message);
    }
    assert_eq!(
        admin_get(&app, &format!("{base}?pageSize=1000"))
            .await
            .status,
        200
    );

    let token_of = |answer: &Answer| {
        answer.json["nextPageToken"]
            .as_str()
            .unwrap_or_else(|| panic!("nextPageToken: {}", answer.body))
            .to_owned()
    };
    let all = admin_get(&app, &format!("{base}?pageSize=1")).await;
    let token = token_of(&all);
    let active_only = token_of(&admin_get(&app, &format!("{base}?pageSize=1&active=true")).await);
    let bobs = token_of(&admin_get(&app, &format!("/{}/sessions?pageSize=1", bob.id)).await);
    let current = login(&app, &alice).await;
    let own = send(
        app.http
            .get(app.url("/auth/sessions?page_size=1"))
            .header("x-session-token", &current.token),
    )
    .await;
    let self_service = own
        .header("link")
        .and_then(|l| l.split("page_token=").nth(1))
        .and_then(|t| t.split('>').next())
        .expect("a self-service page token")
        .to_owned();
    for (what, query) in [
        ("garbled", "pageToken=%%%".to_owned()),
        ("not base64", "pageToken=not*a*token".to_owned()),
        ("made up", format!("pageToken={}", "A".repeat(40))),
        ("too long", format!("pageToken={}", "A".repeat(1000))),
        (
            "another filter's",
            format!("active=false&pageToken={active_only}"),
        ),
        ("another user's", format!("pageToken={bobs}")),
        (
            "the self-service list's",
            format!("pageToken={self_service}"),
        ),
    ] {
        let answer = admin_get(&app, &format!("{base}?{query}")).await;
        assert_eq!(answer.status, 400, "{what}: {}", answer.body);
        assert_eq!(
            answer.json,
            admin_error(
                400,
                "VALIDATION_FAILED",
                "page_token is invalid or was issued for another list"
            ),
            "{what}"
        );
    }
    let next = admin_get(&app, &format!("{base}?pageSize=1&pageToken={token}")).await;
    assert_eq!(next.status, 200, "{}", next.body);
}

#[tokio::test]
async fn listing_sessions_of_an_unknown_user_is_user_not_found() {
    let app = spawn_app().await;
    let answer = admin_get(&app, "/123456789012345678/sessions").await;
    assert_admin_error(&answer, 404, "USER_NOT_FOUND", USER_NOT_FOUND);
}

#[tokio::test]
async fn revoking_one_session_answers_when_it_was_revoked_and_again_the_same() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let target = login(&app, &alice).await;
    let other = login(&app, &alice).await;
    app.advance(Duration::from_secs(3));
    let revoked_at = rfc3339(app.now());
    let path = format!("/{}/sessions/{}", alice.id, target.id);

    let answer = admin_delete(&app, &path).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.json,
        json!({"message": "Session revoked", "sessionId": target.id, "revokedAt": revoked_at})
    );
    assert_eq!(whoami(&app, &target.token).await.status, 401);
    assert_eq!(whoami(&app, &other.token).await.status, 200);

    app.advance(Duration::from_secs(3));
    let again = admin_delete(&app, &path).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json, answer.json, "the original revocation");
    assert_eq!(app.event_count(&target.id).await, 2, "terminated once");
}

#[tokio::test]
async fn revoking_a_session_that_is_not_the_users_is_session_not_found_and_leaves_it_alone() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let bob = app.add_user("bob").await;
    let bobs = login(&app, &bob).await;

    let foreign = admin_delete(&app, &format!("/{}/sessions/{}", alice.id, bobs.id)).await;
    assert_admin_error(&foreign, 404, "SESSION_NOT_FOUND", SESSION_NOT_FOUND);
    assert_eq!(whoami(&app, &bobs.token).await.status, 200);
    assert_eq!(app.event_count(&bobs.id).await, 1);

    let unknown = admin_delete(&app, &format!("/{}/sessions/123456789012345678", alice.id)).await;
    assert_admin_error(&unknown, 404, "SESSION_NOT_FOUND", SESSION_NOT_FOUND);

    let no_user = admin_delete(&app, &format!("/123456789012345678/sessions/{}", bobs.id)).await;
    assert_admin_error(&no_user, 404, "USER_NOT_FOUND", USER_NOT_FOUND);
    assert_eq!(whoami(&app, &bobs.token).await.status, 200);
}

#[tokio::test]
async fn revoking_all_of_a_users_sessions_answers_how_many_this_call_revoked() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let bob = app.add_user("bob").await;
    let sessions = [
        login(&app, &alice).await,
        login(&app, &alice).await,
        login(&app, &alice).await,
    ];
    let already = login(&app, &alice).await;
    admin_delete(&app, &format!("/{}/sessions/{}", alice.id, already.id)).await;
    let bobs = login(&app, &bob).await;

    let answer = admin_delete(&app, &format!("/{}/sessions", alice.id)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.json,
        json!({"message": "All sessions revoked", "count": 3})
    );
    assert_ended(&app, &sessions, "revoked all").await;
    assert_eq!(whoami(&app, &bobs.token).await.status, 200);
    assert_eq!(app.event_count(&already.id).await, 2);
    let listed = admin_get(&app, &format!("/{}/sessions", alice.id)).await;
    assert_eq!(listed.json["total"], 4, "revoked sessions are kept");

    let again = admin_delete(&app, &format!("/{}/sessions", alice.id)).await;
    assert_eq!(
        again.json,
        json!({"message": "All sessions revoked", "count": 0})
    );
    let unknown = admin_delete(&app, "/123456789012345678/sessions").await;
    assert_admin_error(&unknown, 404, "USER_NOT_FOUND", USER_NOT_FOUND);
}

// ------------------------------------------------------------------------------------------
// Authentication and permissions
// ------------------------------------------------------------------------------------------

/// Every admin route: method, path, body, and the permission it needs.
fn routes(
    user: &str,
    session: &str,
) -> Vec<(reqwest::Method, String, Option<Value>, &'static str)> {
    use reqwest::Method;
    vec![
        (
            Method::GET,
            format!("/{user}/sessions"),
            None,
            "session.read",
        ),
        (
            Method::DELETE,
            format!("/{user}/sessions/{session}"),
            None,
            "session.delete",
        ),
        (
            Method::DELETE,
            format!("/{user}/sessions"),
            None,
            "session.delete",
        ),
        (
            Method::POST,
            String::new(),
            Some(json!({"loginName": "newcomer", "password": "a fine password"})),
            "user.write",
        ),
        (Method::GET, format!("/{user}"), None, "user.read"),
        (Method::GET, "?loginName=alice".into(), None, "user.read"),
        (Method::POST, format!("/{user}/lock"), None, "user.write"),
        (
            Method::POST,
            format!("/{user}/deactivate"),
            None,
            "user.write",
        ),
        (
            Method::POST,
            format!("/{user}/reactivate"),
            None,
            "user.write",
        ),
        (
            Method::PUT,
            format!("/{user}/password"),
            Some(json!({"password": "another fine one"})),
            "user.write",
        ),
    ]
}

#[tokio::test]
async fn every_route_without_valid_credentials_is_admin_auth_required() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let session = login(&app, &alice).await;
    let revoked = login(&app, &alice).await;
    admin_delete(&app, &format!("/{}/sessions/{}", alice.id, revoked.id)).await;
    let other_key =
        sessiond::auth::EmbeddedKey::load_or_create(tempfile::tempdir().expect("dir").path())
            .expect("another key");
    let foreign = mint_jwt(
        &other_key,
        "sessiond",
        "sessiond",
        "ops",
        EVERY_PERMISSION,
        Duration::from_secs(3600),
        app.now(),
    );
    let key = sessiond::auth::EmbeddedKey::load(app.data_dir.path()).expect("key");
    let wrong_audience = mint_jwt(
        &key,
        "sessiond",
        "someone-else",
        "ops",
        EVERY_PERMISSION,
        Duration::from_secs(3600),
        app.now(),
    );
    let expiring = app.bearer_with("ops", EVERY_PERMISSION, Duration::from_secs(60));
    app.advance(Duration::from_secs(60 + 31));
    let credentials = [
        ("none", None),
        ("empty", Some(String::new())),
        ("basic", Some("Basic YWxpY2U6c2VjcmV0".to_owned())),
        ("garbage bearer", Some("Bearer not.a.jwt".to_owned())),
        ("another key", Some(format!("Bearer {foreign}"))),
        ("wrong audience", Some(format!("Bearer {wrong_audience}"))),
        ("expired", Some(expiring)),
        (
            "revoked session token",
            Some(format!("Bearer {}", revoked.token)),
        ),
        (
            "unknown session token",
            Some("Bearer sdst_unknown".to_owned()),
        ),
    ];
    for (method, path, body, _) in routes(alice.id.as_str(), &session.id) {
        for (what, credential) in &credentials {
            let mut request = app.http.request(method.clone(), users_url(&app, &path));
            if let Some(credential) = credential {
                request = request.header("authorization", credential);
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            let answer = send(request).await;
            assert_eq!(
                answer.status, 401,
                "{method} {path} ({what}): {}",
                answer.body
            );
            assert_eq!(
                answer.json,
                admin_error(401, "ADMIN_AUTH_REQUIRED", AUTH_REQUIRED),
                "{method} {path} ({what})"
            );
        }
    }
    assert_eq!(
        whoami(&app, &session.token).await.status,
        200,
        "nothing happened"
    );
    let user = admin_get(&app, &format!("/{}", alice.id)).await;
    assert_eq!(user.json["state"], "active");
}

#[tokio::test]
async fn every_route_needs_its_permission() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let session = login(&app, &alice).await;
    for (method, path, body, needed) in routes(alice.id.as_str(), &session.id) {
        let others: Vec<&str> = EVERY_PERMISSION
            .iter()
            .copied()
            .filter(|p| *p != needed)
            .collect();
        let lacking = app.bearer("ops", &others);
        let as_the_user = format!("Bearer {}", session.token);
        for (what, credential) in [
            ("other permissions", &lacking),
            ("the user's own session", &as_the_user),
        ] {
            let mut request = app
                .http
                .request(method.clone(), users_url(&app, &path))
                .header("authorization", credential);
            if let Some(body) = &body {
                request = request.json(body);
            }
            let answer = send(request).await;
            assert_eq!(
                answer.status, 403,
                "{method} {path} ({what}): {}",
                answer.body
            );
            assert_eq!(
                answer.json,
                admin_error(
                    403,
                    "FORBIDDEN",
                    &format!("No matching permissions found (requires {needed})")
                ),
                "{method} {path} ({what})"
            );
        }
    }
    assert_eq!(
        whoami(&app, &session.token).await.status,
        200,
        "nothing happened"
    );
    let listed = admin_get(&app, "?loginName=newcomer").await;
    assert_eq!(listed.json["total"], 0, "no user was created");
}

// ------------------------------------------------------------------------------------------
// Users
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn creating_a_user_answers_201_with_the_user_and_never_its_password() {
    let app = spawn_app().await;
    let answer = admin_post(
        &app,
        "",
        Some(json!({
            "loginName": "Carol@Example.com",
            "displayName": "Carol",
            "organizationId": "acme",
            "password": PASSWORD,
        })),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let id = answer.json["id"].as_str().expect("id").to_owned();
    assert!(id.chars().all(|c| c.is_ascii_digit()), "{id}");
    let now = rfc3339(app.now());
    let user = json!({
        "id": id,
        "loginName": "Carol@Example.com",
        "displayName": "Carol",
        "organizationId": "acme",
        "state": "active",
        "failedPasswordAttempts": 0,
        "createdAt": now,
        "updatedAt": now,
    });
    assert_eq!(answer.json, user);
    for secret in ["argon2", PASSWORD, "\"password", "passwordHash"] {
        assert!(!answer.body.contains(secret), "{secret} in {}", answer.body);
    }

    let got = admin_get(&app, &format!("/{id}")).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.json, user);
    assert!(!got.body.contains("argon2"));
    let found = admin_get(&app, "?loginName=carol@example.COM").await;
    assert_eq!(found.status, 200, "{}", found.body);
    assert_eq!(found.json, json!({"data": [user], "total": 1}));

    // The new user can sign in with the password.
    let session = rest_login(
        &app,
        json!({"checks": {"user": {"loginName": "carol@example.com"}, "password": {"password": PASSWORD}}}),
    )
    .await;
    assert_eq!(
        whoami(&app, &session.token).await.json["identity"]["id"],
        id.as_str()
    );
}

#[tokio::test]
async fn a_new_user_without_display_name_or_organization_gets_the_defaults() {
    let app = spawn_app().await;
    let answer = admin_post(
        &app,
        "",
        Some(json!({"loginName": "dave", "password": PASSWORD})),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(answer.json["displayName"], "dave");
    assert_eq!(answer.json["organizationId"], INSTANCE);
}

#[tokio::test]
async fn creating_a_user_with_a_taken_login_name_in_any_case_is_user_exists() {
    let app = spawn_app().await;
    app.add_user("erin@example.com").await;
    for name in ["erin@example.com", "ERIN@example.com", "Erin@Example.Com"] {
        let answer = admin_post(
            &app,
            "",
            Some(json!({"loginName": name, "password": PASSWORD})),
        )
        .await;
        assert_admin_error(
            &answer,
            409,
            "USER_EXISTS",
            "a user with this login name already exists",
        );
    }
    let listed = admin_get(&app, "?loginName=erin@example.com").await;
    assert_eq!(listed.json["total"], 1);
}

#[tokio::test]
async fn weak_or_empty_passwords_are_validation_failures() {
    let app = spawn_app().await;
    let length = "password: must be between 8 and 200 characters";
    let repeated = "password: must not repeat a single character";
    let long = "x1".repeat(101);
    for (password, message) in [
        ("", length),
        ("short", length),
        ("seven77", length),
        ("aaaaaaaa", repeated),
        ("éééééééééééé", repeated),
        (long.as_str(), length),
    ] {
        let answer = admin_post(
            &app,
            "",
            Some(json!({"loginName": "frank", "password": password})),
        )
        .await;
        assert_admin_error(&answer, 400, "VALIDATION_FAILED", message);
    }
    let listed = admin_get(&app, "?loginName=frank").await;
    assert_eq!(listed.json, json!({"data": [], "total": 0}));

    let user = app.add_user_with_password("grace", PASSWORD).await;
    for (password, message) in [("", length), ("tiny", length), ("zzzzzzzzzz", repeated)] {
        let answer = admin_put(
            &app,
            &format!("/{}/password", user.id),
            json!({"password": password}),
        )
        .await;
        assert_admin_error(&answer, 400, "VALIDATION_FAILED", message);
    }
}

#[tokio::test]
async fn malformed_or_unexpected_user_bodies_are_validation_failures() {
    let app = spawn_app().await;
    let user = app.add_user("heidi").await;
    let invalid = "invalid request body: ";
    let raw_cases: [(&str, &str); 8] = [
        ("{", invalid),
        ("{\"loginName\": \"ivan\", \"password\": ", invalid),
        ("[]", invalid),
        ("null", invalid),
        ("\"ivan\"", invalid),
        (
            "{\"loginName\": 5, \"password\": \"a fine password\"}",
            invalid,
        ),
        (
            "{\"loginName\": \"ivan\", \"password\": [\"a fine password\"]}",
            invalid,
        ),
        ("not json at all", invalid),
    ];
    for (body, prefix) in raw_cases {
        let answer = send(
            app.http
                .post(users_url(&app, ""))
                .header("authorization", ops(&app))
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
        assert_validation_prefix(&answer, prefix);
    }
    for body in [
        json!({"loginName": "ivan", "password": PASSWORD, "role": "admin"}),
        json!({"loginName": "ivan", "password": PASSWORD, "passwordHash": "$argon2id$x"}),
        json!({"loginName": "ivan", "password": PASSWORD, "state": "locked"}),
        json!({"login_name": "ivan", "password": PASSWORD}),
        json!({"password": PASSWORD}),
        json!({"loginName": "ivan"}),
        json!({}),
    ] {
        let answer = admin_post(&app, "", Some(body.clone())).await;
        assert_validation_prefix(&answer, invalid);
    }
    let empty = admin_post(&app, "", None).await;
    assert_validation_prefix(&empty, invalid);

    let login_name = "login name: value length must be between 1 and 200 runes, inclusive";
    let spaced = "login name: must not contain control characters or surrounding whitespace";
    let text = "displayName: at most 200 characters, no control characters";
    let org = "organizationId: at most 200 characters, no control characters";
    for (body, message) in [
        (json!({"loginName": "", "password": PASSWORD}), login_name),
        (
            json!({"loginName": "n".repeat(201), "password": PASSWORD}),
            login_name,
        ),
        (json!({"loginName": " ivan", "password": PASSWORD}), spaced),
        (
            json!({"loginName": "iv\u{0}an", "password": PASSWORD}),
            spaced,
        ),
        (
            json!({"loginName": "ivan", "displayName": "d".repeat(201), "password": PASSWORD}),
            text,
        ),
        (
            json!({"loginName": "ivan", "organizationId": "o\no", "password": PASSWORD}),
            org,
        ),
    ] {
        let answer = admin_post(&app, "", Some(body)).await;
        assert_admin_error(&answer, 400, "VALIDATION_FAILED", message);
    }
    assert_eq!(admin_get(&app, "?loginName=ivan").await.json["total"], 0);

    for body in [
        json!({"password": PASSWORD, "revokeSessions": "yes"}),
        json!({"password": PASSWORD, "revoke_sessions": false}),
        json!({"password": PASSWORD, "extra": 1}),
        json!({"password": 12345678}),
        json!({"revokeSessions": false}),
    ] {
        let answer = admin_put(&app, &format!("/{}/password", user.id), body).await;
        assert_validation_prefix(&answer, invalid);
    }

    let wrong_type = send(
        app.http
            .post(users_url(&app, ""))
            .header("authorization", ops(&app))
            .header("content-type", "text/plain")
            .body(json!({"loginName": "ivan", "password": PASSWORD}).to_string()),
    )
    .await;
    assert_admin_error(
        &wrong_type,
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        "unsupported content type \"text/plain\": use application/json",
    );
}

#[tokio::test]
async fn reading_users_by_id_and_login_name() {
    let app = spawn_app().await;
    let judy = app.add_user("Judy").await;
    app.add_user("ken").await;
    let got = admin_get(&app, &format!("/{}", judy.id)).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.json["loginName"], "Judy");
    assert_eq!(got.json["state"], "active");

    let by_name = admin_get(&app, "?loginName=JUDY").await;
    assert_eq!(ids(&by_name), [judy.id.as_str()]);
    assert_eq!(by_name.json["total"], 1);
    let all = admin_get(&app, "").await;
    assert_eq!(all.json["total"], 2);
    let page = admin_get(&app, "?offset=1&limit=1").await;
    assert_eq!(page.json["total"], 2);
    assert_eq!(ids(&page).len(), 1);
    let beyond = admin_get(&app, "?offset=18446744073709551615").await;
    assert_eq!(beyond.status, 200, "{}", beyond.body);
    assert_eq!(beyond.json["data"], json!([]));

    for (query, message) in [
        (
            "?offset=-1",
            "offset must be a non-negative integer in range",
        ),
        ("?limit=-5", "limit must be a non-negative integer in range"),
        (
            "?limit=many",
            "limit must be a non-negative integer in range",
        ),
        (
            "?offset=99999999999999999999",
            "offset must be a non-negative integer in range",
        ),
    ] {
        let answer = admin_get(&app, query).await;
        assert_admin_error(&answer, 400, "VALIDATION_FAILED", message);
    }
    let unknown = admin_get(&app, "/123456789012345678").await;
    assert_admin_error(&unknown, 404, "USER_NOT_FOUND", USER_NOT_FOUND);
}

// ------------------------------------------------------------------------------------------
// Lock, deactivate, reactivate, password
// ------------------------------------------------------------------------------------------

fn login_with_password(name: &str, password: &str) -> v2::CreateSessionRequest {
    let mut request = login_by_name(name);
    if let Some(checks) = request.checks.as_mut() {
        checks.password = Some(v2::CheckPassword {
            password: password.into(),
        });
    }
    request
}

#[tokio::test]
async fn locking_a_user_ends_its_sessions_and_refuses_logins_until_it_is_reactivated() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let bob = app.add_user("bob").await;
    let sessions = [login(&app, &alice).await, login(&app, &alice).await];
    let bobs = login(&app, &bob).await;
    app.advance(Duration::from_secs(5));

    let locked = user_action(&app, alice.id.as_str(), "lock").await;
    assert_eq!(locked.status, 200, "{}", locked.body);
    assert_eq!(locked.json["revokedSessions"], 2);
    assert_eq!(locked.json["user"]["state"], "locked");
    assert_eq!(locked.json["user"]["id"], alice.id.as_str());
    assert_eq!(locked.json["user"]["updatedAt"], rfc3339(app.now()));
    assert_ended(&app, &sessions, "locked").await;
    assert_eq!(whoami(&app, &bobs.token).await.status, 200);
    assert_eq!(
        admin_get(&app, &format!("/{}", alice.id)).await.json["state"],
        "locked"
    );

    let admin = app.admin();
    for api in app.v2_apis() {
        let outcome = api.create(Some(&admin), login_by_name("alice")).await;
        let failure = fails(&api, outcome, Code::FailedPrecondition, "COMMAND-JLK35");
        assert_eq!(failure.message, "User is locked (COMMAND-JLK35)", "{api}");
        let outcome = api
            .create(Some(&admin), create_for_user(alice.id.as_str()))
            .await;
        fails(&api, outcome, Code::FailedPrecondition, "COMMAND-JLK35");
    }
    let again = user_action(&app, alice.id.as_str(), "lock").await;
    assert_eq!(again.json["revokedSessions"], 0);

    let reactivated = user_action(&app, alice.id.as_str(), "reactivate").await;
    assert_eq!(reactivated.status, 200, "{}", reactivated.body);
    assert_eq!(reactivated.json["revokedSessions"], 0);
    assert_eq!(reactivated.json["user"]["state"], "active");
    let api = app.api(Protocol::Rest, Version::V2);
    let fresh = ok(&api, api.create(Some(&admin), login_by_name("alice")).await);
    assert_eq!(whoami(&app, &fresh.message.session_token).await.status, 200);
    assert_ended(&app, &sessions, "stay ended").await;
}

#[tokio::test]
async fn deactivating_a_user_ends_its_sessions_and_refuses_logins_until_it_is_reactivated() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let sessions = [
        login(&app, &alice).await,
        login(&app, &alice).await,
        login(&app, &alice).await,
    ];
    let deactivated = user_action(&app, alice.id.as_str(), "deactivate").await;
    assert_eq!(deactivated.status, 200, "{}", deactivated.body);
    assert_eq!(deactivated.json["revokedSessions"], 3);
    assert_eq!(deactivated.json["user"]["state"], "inactive");
    assert_ended(&app, &sessions, "deactivated").await;
    let admin = app.admin();
    for api in app.v2_apis() {
        let outcome = api.create(Some(&admin), login_by_name("alice")).await;
        let failure = fails(&api, outcome, Code::FailedPrecondition, "SESSION-Gj4ko");
        assert_eq!(
            failure.message, "User is not active (SESSION-Gj4ko)",
            "{api}"
        );
    }
    let lock = user_action(&app, alice.id.as_str(), "lock").await;
    assert_admin_error(
        &lock,
        400,
        "FAILED_PRECONDITION",
        "a deactivated user cannot be locked; reactivate it first",
    );

    let reactivated = user_action(&app, alice.id.as_str(), "reactivate").await;
    assert_eq!(reactivated.json["user"]["state"], "active");
    let api = app.api(Protocol::Grpc, Version::V2);
    ok(&api, api.create(Some(&admin), login_by_name("alice")).await);

    for action in ["lock", "deactivate", "reactivate"] {
        let unknown = user_action(&app, "123456789012345678", action).await;
        assert_admin_error(&unknown, 404, "USER_NOT_FOUND", USER_NOT_FOUND);
    }
}

#[tokio::test]
async fn a_new_password_ends_the_sessions_and_replaces_the_old_one() {
    let app = spawn_app().await;
    let alice = app.add_user_with_password("alice", PASSWORD).await;
    let sessions = [login(&app, &alice).await, login(&app, &alice).await];
    let admin = app.admin();
    let api = app.api(Protocol::Rest, Version::V2);

    let changed = admin_put(
        &app,
        &format!("/{}/password", alice.id),
        json!({"password": "new battery staple"}),
    )
    .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(changed.json["message"], "Password changed");
    assert_eq!(changed.json["revokedSessions"], 2);
    assert_eq!(changed.json["user"]["id"], alice.id.as_str());
    assert!(!changed.body.contains("argon2") && !changed.body.contains("battery"));
    assert_ended(&app, &sessions, "new password").await;

    let log_in = |password: &str| api.create(Some(&admin), login_with_password("alice", password));
    let refused = |outcome| fails(&api, outcome, Code::InvalidArgument, "COMMAND-3M0fs");
    let failure = refused(log_in(PASSWORD).await);
    assert_eq!(failure.http_status, Some(400));
    let fresh = ok(&api, log_in("new battery staple").await);

    // revokeSessions: false keeps them.
    let kept = admin_put(
        &app,
        &format!("/{}/password", alice.id),
        json!({"password": "third battery staple", "revokeSessions": false}),
    )
    .await;
    assert_eq!(kept.status, 200, "{}", kept.body);
    assert_eq!(kept.json["revokedSessions"], 0);
    assert_eq!(whoami(&app, &fresh.message.session_token).await.status, 200);
    refused(log_in("new battery staple").await);
    ok(&api, log_in("third battery staple").await);

    let unknown = admin_put(
        &app,
        "/123456789012345678/password",
        json!({"password": "a fine password"}),
    )
    .await;
    assert_admin_error(&unknown, 404, "USER_NOT_FOUND", USER_NOT_FOUND);
}

// ------------------------------------------------------------------------------------------
// One session, every face
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_session_created_through_the_session_service_is_the_same_session_on_every_face() {
    let app = spawn_app().await;
    let alice = app.add_user_with_password("alice", PASSWORD).await;
    let admin = app.admin();
    let api = app.api(Protocol::Rest, Version::V2);
    let created = rest_login(
        &app,
        json!({"checks": {"user": {"loginName": "alice"}, "password": {"password": PASSWORD}}}),
    )
    .await;
    let other = login(&app, &alice).await;

    // Self-service: whoami and the other session's list.
    let me = whoami(&app, &created.token).await;
    assert_eq!(me.json["id"], created.id.as_str());
    assert_eq!(me.json["identity"]["id"], alice.id.as_str());
    let theirs = send(
        app.http
            .get(app.url("/auth/sessions"))
            .header("x-session-token", &other.token),
    )
    .await;
    assert_eq!(theirs.json[0]["id"], created.id.as_str());
    // Admin: the same id, the same user, the same creation time as the SessionService says.
    let listed = admin_get(&app, &format!("/{}/sessions", alice.id)).await;
    let entry = listed.json["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|s| s["id"] == created.id.as_str())
        .expect("listed")
        .clone();
    let got = ok(&api, api.get(Some(&admin), get(&created.id, None)).await);
    let session = got.json.expect("json")["session"].clone();
    assert_eq!(entry["userId"], session["factors"]["user"]["id"]);
    assert_eq!(entry["createdAt"], session["creationDate"]);
    assert_eq!(me.json["issued_at"], session["creationDate"]);

    // Revoked by the admin face: gone from the SessionService and from self-service.
    let revoked = admin_delete(&app, &format!("/{}/sessions/{}", alice.id, created.id)).await;
    assert_eq!(revoked.status, 200);
    let outcome = api.get(Some(&admin), get(&created.id, None)).await;
    fails(&api, outcome, Code::NotFound, "QUERY-SFeaa");
    assert_eq!(whoami(&app, &created.token).await.status, 401);

    // Deleted by the SessionService: revoked for the admin face.
    ok(
        &api,
        api.delete(Some(&admin), delete(&other.id, None)).await,
    );
    let after = admin_get(&app, &format!("/{}/sessions?active=false", alice.id)).await;
    let mut inactive = ids(&after);
    inactive.sort();
    let mut expected = vec![created.id.clone(), other.id.clone()];
    expected.sort();
    assert_eq!(inactive, expected);
    for entry in after.json["data"].as_array().expect("data") {
        assert_eq!(entry["revokedAt"], rfc3339(app.now()));
    }

    // Revoked by self-service: gone from the SessionService too.
    let third: Login = login(&app, &alice).await;
    let fourth = login(&app, &alice).await;
    let answer = send(
        app.http
            .delete(app.url(&format!("/auth/sessions/{}", fourth.id)))
            .header("x-session-token", &third.token),
    )
    .await;
    assert_eq!(answer.status, 204);
    let outcome = api.get(Some(&admin), get(&fourth.id, None)).await;
    fails(&api, outcome, Code::NotFound, "QUERY-SFeaa");
}

// ------------------------------------------------------------------------------------------
// Bad input
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn absurd_ids_are_rejected_in_the_admin_shape() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let session = login(&app, &alice).await;
    let long = "1".repeat(201);
    let user_length = "user id: value length must be between 1 and 200 runes, inclusive";
    let user_control = "user id: must not contain control characters";
    let session_length = "session id: value length must be between 1 and 200 runes, inclusive";
    let session_control = "session id: must not contain control characters";
    let invalid = |message: &'static str| (400, "VALIDATION_FAILED", message);
    let bad_utf8 = invalid("Invalid URL: Invalid UTF-8 in `id`");
    let no_user = (404, "USER_NOT_FOUND", USER_NOT_FOUND);
    let sessions = format!("/{}/sessions", alice.id);
    let cases = [
        (Method::GET, format!("/{long}"), invalid(user_length)),
        (
            Method::GET,
            format!("/{long}/sessions"),
            invalid(user_length),
        ),
        (Method::POST, format!("/{long}/lock"), invalid(user_length)),
        (Method::GET, "/a%00b".into(), invalid(user_control)),
        (
            Method::DELETE,
            "/%0D%0A/sessions".into(),
            invalid(user_control),
        ),
        (Method::GET, "/..%2F..%2Fetc/sessions".into(), no_user),
        (Method::GET, "/a%2Fb".into(), no_user),
        (Method::GET, "/%FF%FE".into(), bad_utf8),
        (Method::POST, "/%C0%AF/lock".into(), bad_utf8),
        (
            Method::DELETE,
            format!("{sessions}/%FF"),
            invalid("Invalid URL: Invalid UTF-8 in `session_id`"),
        ),
        (
            Method::DELETE,
            format!("{sessions}/{long}"),
            invalid(session_length),
        ),
        (
            Method::DELETE,
            format!("{sessions}/x%00"),
            invalid(session_control),
        ),
        (
            Method::DELETE,
            format!("{sessions}/a%2Fb"),
            (404, "SESSION_NOT_FOUND", SESSION_NOT_FOUND),
        ),
    ];
    let cases = cases.map(|(method, path, (status, code, message))| {
        let path = format!("/auth/admin/api/users{path}");
        (method, path, status, admin_error(status, code, message))
    });
    let credential = ("authorization", ops(&app));
    assert_routes_answer(&app, (credential.0, &credential.1), cases).await;
    // Credentials are judged first, whatever the path holds.
    let anonymous = send(app.http.get(users_url(&app, "/%FF/sessions"))).await;
    assert_admin_error(&anonymous, 401, "ADMIN_AUTH_REQUIRED", AUTH_REQUIRED);
    assert_eq!(whoami(&app, &session.token).await.status, 200);
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_in_the_admin_shape() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let id = alice.id.as_str();
    let user = format!("/auth/admin/api/users/{id}");
    let cases = [
        (Method::GET, "/auth/admin/api/nothing".into(), 404),
        (
            Method::GET,
            "/auth/admin/api/users/1/sessions/2/more".into(),
            404,
        ),
        (Method::GET, "/auth/admin/".into(), 404),
        (Method::PATCH, "/auth/admin/api/users".into(), 405),
        (Method::DELETE, user.clone(), 405),
        (Method::GET, format!("{user}/lock"), 405),
        (Method::POST, format!("{user}/password"), 405),
        (Method::PUT, format!("{user}/sessions"), 405),
        (Method::GET, format!("{user}/sessions/1"), 405),
    ];
    let credential = ("authorization", ops(&app));
    let credential = (credential.0, credential.1.as_str());
    let cases = cases.map(|(method, path, status)| {
        let expected = if status == 404 {
            admin_error(404, "NOT_FOUND", "Not Found")
        } else {
            admin_error(405, "METHOD_NOT_ALLOWED", "Method Not Allowed")
        };
        (method, path, status, expected)
    });
    assert_routes_answer(&app, credential, cases).await;
    assert_eq!(admin_get(&app, &format!("/{id}")).await.status, 200);
}

#[tokio::test]
async fn bodies_over_the_limit_are_payload_too_large_and_the_server_keeps_serving() {
    let app = spawn_app_with(|config| config.body_limit = 1024).await;
    let alice = app.add_user("alice").await;
    let session = login(&app, &alice).await;
    let message = "request body is larger than 1024 bytes";
    let big =
        json!({"loginName": "mallory", "displayName": "m".repeat(4096), "password": PASSWORD});
    let answer = admin_post(&app, "", Some(big)).await;
    assert_admin_error(&answer, 413, "PAYLOAD_TOO_LARGE", message);
    let answer = admin_put(
        &app,
        &format!("/{}/password", alice.id),
        json!({"password": "p".repeat(2048) + "q"}),
    )
    .await;
    assert_admin_error(&answer, 413, "PAYLOAD_TOO_LARGE", message);

    // Just under the limit is read (and judged on its content).
    let fits = json!({
        "loginName": "m".repeat(200),
        "displayName": "d".repeat(200),
        "organizationId": "o".repeat(200),
        "password": "p".repeat(150) + "q",
    });
    assert!(fits.to_string().len() < 1024);
    assert_eq!(admin_post(&app, "", Some(fits)).await.status, 201);
    assert_eq!(whoami(&app, &session.token).await.status, 200);
    assert_eq!(admin_get(&app, &format!("/{}", alice.id)).await.status, 200);
}

/// The admin error body: `{"statusCode":…,"code":…,"message":…}`.
const ADMIN_ERROR: ErrorShape = ErrorShape {
    at: "",
    status: "statusCode",
    strings: ["code", "message"],
};

#[tokio::test]
async fn no_bad_input_makes_the_admin_face_fail_with_a_server_error() {
    let app = spawn_app_with(|config| config.body_limit = 2048).await;
    let alice = app.add_user("alice").await;
    let id = alice.id.as_str();
    let auth = ops(&app);
    // A call below `/auth/admin/api/users`; `json` with a body sent as JSON.
    let call = |method: Method, path: &str| {
        let request = app.http.request(method, users_url(&app, path));
        request.header("authorization", &auth)
    };
    let json = |method: Method, path: &str, body: &[u8]| {
        let request = call(method, path).header("content-type", "application/json");
        request.body(body.to_vec())
    };
    let sessions = format!("/{id}/sessions");
    let requests = [
        call(
            Method::GET,
            &format!("{sessions}?pageSize=-9223372036854775808"),
        ),
        call(Method::GET, &format!("{sessions}?pageSize=1e3")),
        call(Method::GET, &format!("{sessions}?pageToken=%FF%FE")),
        call(
            Method::GET,
            &format!("{sessions}?pageToken={}", "_".repeat(5000)),
        ),
        call(
            Method::GET,
            &format!("{sessions}?active=true&active=false&active=x"),
        ),
        call(Method::GET, "?loginName=%00"),
        call(Method::GET, &format!("?loginName={}", "n".repeat(300))),
        call(Method::GET, "?limit=0"),
        json(Method::POST, "", &[0xff, 0xfe, 0x00]),
        json(
            Method::POST,
            "",
            b"{\"loginName\":\"\\ud800\",\"password\":\"x\"}",
        ),
        json(Method::POST, "", &[b'['; 2000]),
        json(Method::POST, "", &[b' '; 4096]),
        call(Method::POST, "")
            .header("content-type", "application/json; charset=utf-16")
            .body("{}"),
        call(Method::PUT, &format!("/{id}/password")).body("{\"password\":null}"),
        call(Method::PUT, &format!("/{id}/password"))
            .body("{\"password\":\"a fine password\",\"revokeSessions\":null}"),
        json(Method::POST, &format!("/{id}/lock"), b"{\"garbage\": true}"),
        call(Method::DELETE, &format!("{sessions}/%E2%80%AE")),
    ];
    assert_no_server_error(requests, &ADMIN_ERROR).await;
    let user = admin_get(&app, &format!("/{id}")).await;
    assert_eq!(user.status, 200, "still serving: {}", user.body);
}

/// Password logins of alice with `PASSWORD` from six tasks on three protocols, each until it
/// is refused with a code `refused` accepts; `change` runs once the first login succeeded.
/// Then alice has no active session left and no token handed out identifies her.
async fn logins_in_flight(
    app: &TestApp,
    alice: &sessiond::domain::User,
    change: (&str, impl std::future::Future<Output = ()>),
    refused: fn(Code) -> bool,
) {
    let (case, change) = change;
    const TASKS: usize = 6;
    const MAX_PER_TASK: usize = 20;
    let admin = app.admin();
    let protocols = [Protocol::Rest, Protocol::Grpc, Protocol::ConnectJson];
    let (logged_in_tx, mut logged_in) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let api = app.api(protocols[i % protocols.len()], Version::V2);
        let (admin, tx) = (admin.clone(), logged_in_tx.clone());
        let login = login_with_password(alice.login_name.as_str(), PASSWORD);
        tasks.push(tokio::spawn(async move {
            let mut tokens = Vec::new();
            for _ in 0..MAX_PER_TASK {
                match api.create(Some(&admin), login.clone()).await {
                    Ok(reply) => {
                        tokens.push(reply.message.session_token);
                        let _ = tx.send(());
                    }
                    Err(f) if refused(f.code) => break,
                    Err(f) => panic!("{api}: unexpected failure {f:?}"),
                }
            }
            tokens
        }));
    }
    drop(logged_in_tx);
    logged_in.recv().await.expect("a first login");
    change.await;

    let mut tokens = Vec::new();
    for task in tasks {
        tokens.extend(task.await.expect("task"));
    }
    assert!(!tokens.is_empty(), "{case}");
    let active = admin_get(app, &format!("/{}/sessions?active=true", alice.id)).await;
    assert_eq!(
        active.json["total"], 0,
        "sessions outlived {case}: {}",
        active.body
    );
    for token in &tokens {
        assert_eq!(whoami(app, token).await.status, 401, "{case}");
    }
}

#[tokio::test]
async fn locking_or_deactivating_a_user_while_password_logins_are_in_flight_leaves_no_live_session()
{
    let app = spawn_app().await;
    let alice = app.add_user_with_password("alice", PASSWORD).await;
    for action in ["lock", "deactivate"] {
        let change = async {
            let changed = user_action(&app, alice.id.as_str(), action).await;
            assert_eq!(changed.status, 200, "{action}: {}", changed.body);
        };
        let refused = |code| code == Code::FailedPrecondition;
        logins_in_flight(&app, &alice, (action, change), refused).await;
        let back = user_action(&app, alice.id.as_str(), "reactivate").await;
        assert_eq!(back.status, 200, "{}", back.body);
    }
}

#[tokio::test]
async fn a_new_password_leaves_no_session_of_a_login_with_the_old_one_in_flight() {
    let app = spawn_app().await;
    let alice = app.add_user_with_password("alice", PASSWORD).await;
    let change = async {
        let new = json!({"password": "new battery staple"});
        let changed = admin_put(&app, &format!("/{}/password", alice.id), new).await;
        assert_eq!(changed.status, 200, "{}", changed.body);
    };
    // The old password is refused from now on, however the race went.
    let refused = |code| matches!(code, Code::InvalidArgument | Code::FailedPrecondition);
    logins_in_flight(&app, &alice, ("the new password", change), refused).await;
}
