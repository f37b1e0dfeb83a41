//! The self-service face under `/auth/sessions` (Kratos-compatible; seeds 000
//! `DELETE /auth/sessions/:id` and 002 `DELETE /auth/sessions`): the caller is identified by
//! its own session token, sees and revokes its other sessions, and errors are Kratos'
//! `{"error":{…}}`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use sessiond::domain::{SessionId, UserState};

use crate::helpers::*;

/// `GET /auth/sessions` with a query string (without `?`).
async fn list_mine(app: &TestApp, token: &str, query: &str) -> Answer {
    let url = if query.is_empty() {
        app.url("/auth/sessions")
    } else {
        app.url(&format!("/auth/sessions?{query}"))
    };
    send(app.http.get(url).header("x-session-token", token)).await
}

async fn revoke_mine(app: &TestApp, token: &str, id: &str) -> Answer {
    send(
        app.http
            .delete(app.url(&format!("/auth/sessions/{id}")))
            .header("x-session-token", token),
    )
    .await
}

async fn revoke_my_others(app: &TestApp, token: &str) -> Answer {
    send(
        app.http
            .delete(app.url("/auth/sessions"))
            .header("x-session-token", token),
    )
    .await
}

/// The path and query of the `rel="next"` entry of a `Link` header.
fn next_link(answer: &Answer) -> Option<String> {
    let link = answer.header("link")?;
    link.split(',').find_map(|entry| {
        let (target, params) = entry.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
    })
}

/// The `page_token` of the `rel="next"` link.
fn next_token(answer: &Answer) -> String {
    let next = next_link(answer).unwrap_or_else(|| panic!("a next link: {:?}", answer.headers));
    next.split_once("page_token=")
        .map(|(_, t)| t.split('&').next().unwrap_or_default().to_owned())
        .expect("page_token in the next link")
}

fn total_count(answer: &Answer) -> u64 {
    answer
        .header("x-total-count")
        .expect("X-Total-Count")
        .parse()
        .expect("X-Total-Count is a number")
}

/// Kratos' generic message of an HTTP status.
fn generic_message(status: u16) -> &'static str {
    match status {
        400 => "The request was malformed or contained invalid parameters",
        401 => "The request could not be authorized",
        404 => "The requested resource could not be found",
        405 => "The requested method is not allowed on this resource",
        413 => "The request body is too large",
        _ => panic!("no generic message for {status} in these tests"),
    }
}

fn status_text(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        _ => panic!("no status text for {status} in these tests"),
    }
}

/// The exact error body of this face.
fn kratos_error(status: u16, id: &str, reason: &str) -> Value {
    json!({
        "error": {
            "code": status,
            "status": status_text(status),
            "id": id,
            "reason": reason,
            "message": generic_message(status),
        }
    })
}

#[track_caller]
fn assert_kratos_error(answer: &Answer, status: u16, id: &str, reason: &str) {
    assert_json_error(answer, status, kratos_error(status, id, reason));
}

/// Kratos' `{"error":{"code":…,"status":…,"message":…}}`.
const KRATOS_ERROR: ErrorShape = ErrorShape {
    at: "/error",
    status: "code",
    strings: ["message", "status"],
};

const NO_SESSION: &str = "SESSIOND-NO-SESSION";
const NO_SESSION_REASON: &str = "No valid session credentials found in the request.";

#[track_caller]
fn assert_unauthorized(answer: &Answer) {
    assert_kratos_error(answer, 401, NO_SESSION, NO_SESSION_REASON);
}

/// Whether a session is terminated, read from the store.
async fn is_revoked(app: &TestApp, id: &str) -> bool {
    app.core
        .store()
        .session(&SessionId::parse(id).expect("id"))
        .await
        .expect("reading a session")
        .expect("the session still exists")
        .terminated_at
        .is_some()
}

// ------------------------------------------------------------------------------------------
// whoami
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn whoami_answers_the_current_session_in_the_kratos_session_shape() {
    let app = spawn_app().await;
    let alice = app
        .core
        .add_user(sessiond::core::NewUser {
            login_name: sessiond::domain::LoginName::parse("alice@example.com").expect("name"),
            display_name: Some("Alice Liddell".into()),
            organization_id: Some("wonderland".into()),
            password: Some(sessiond::domain::Password::parse("correct horse battery").expect("pw")),
        })
        .await
        .expect("alice");
    app.advance(Duration::from_secs(5));
    let created_at = app.now();
    let session = rest_login(
        &app,
        json!({
            "checks": {
                "user": {"loginName": "ALICE@example.com"},
                "password": {"password": "correct horse battery"},
            },
            "lifetime": "3600s",
            "userAgent": {
                "fingerprintId": "fp-1",
                "ip": "192.0.2.7",
                "description": "Firefox on Linux",
                "header": {"user-agent": {"values": ["Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"]}},
            },
        }),
    )
    .await;
    app.advance(Duration::from_secs(10));

    let answer = whoami(&app, &session.token).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(
        answer.header("x-kratos-authenticated-identity-id"),
        Some(alice.id.as_str())
    );
    let at = created_at.to_rfc3339();
    assert_eq!(
        answer.json,
        json!({
            "id": session.id,
            "active": true,
            "expires_at": created_at.saturating_add(Duration::from_secs(3600)).to_rfc3339(),
            "authenticated_at": at,
            "issued_at": at,
            "authenticator_assurance_level": "aal1",
            "authentication_methods": [
                {"method": "identifier_first", "aal": "aal0", "completed_at": at},
                {"method": "password", "aal": "aal1", "completed_at": at},
            ],
            "identity": {
                "id": alice.id.as_str(),
                "schema_id": "default",
                "schema_url": "",
                "state": "active",
                "traits": {"login_name": "alice@example.com", "display_name": "Alice Liddell"},
                "organization_id": "wonderland",
                "created_at": START.to_rfc3339(),
                "updated_at": START.to_rfc3339(),
            },
            "devices": [{
                "id": session.id,
                "ip_address": "192.0.2.7",
                "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
            }],
        })
    );
}

#[tokio::test]
async fn whoami_of_a_session_without_password_or_lifetime_is_aal0_without_expiry_or_devices() {
    let app = spawn_app().await;
    let bob = app.add_user("bob").await;
    let session = login(&app, &bob).await;
    let answer = whoami(&app, &session.token).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let at = START.to_rfc3339();
    assert_eq!(
        answer.json,
        json!({
            "id": session.id,
            "active": true,
            "authenticated_at": at,
            "issued_at": at,
            "authenticator_assurance_level": "aal0",
            "authentication_methods": [
                {"method": "identifier_first", "aal": "aal0", "completed_at": at},
            ],
            "identity": {
                "id": bob.id.as_str(),
                "schema_id": "default",
                "schema_url": "",
                "state": "active",
                "traits": {"login_name": "bob", "display_name": "bob"},
                "organization_id": INSTANCE,
                "created_at": at,
                "updated_at": at,
            },
            "devices": [],
        })
    );
}

#[tokio::test]
async fn whoami_accepts_the_token_as_header_bearer_or_session_cookie() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let session = login(&app, &alice).await;
    let url = app.url("/auth/sessions/whoami");
    let carriers = [
        app.http.get(&url).header("x-session-token", &session.token),
        app.http
            .get(&url)
            .header("authorization", format!("Bearer {}", session.token)),
        app.http
            .get(&url)
            .header("cookie", format!("sessiond_session={}", session.token)),
        app.http.get(&url).header(
            "cookie",
            format!("theme=dark; sessiond_session={}; lang=en", session.token),
        ),
    ];
    for (i, request) in carriers.into_iter().enumerate() {
        let answer = send(request).await;
        assert_eq!(answer.status, 200, "carrier {i}: {}", answer.body);
        assert_eq!(answer.json["id"], session.id.as_str(), "carrier {i}");
    }
}

#[tokio::test]
async fn the_session_cookie_name_is_configurable() {
    let app = spawn_app_with(|config| config.session_cookie = "sid".into()).await;
    let alice = app.add_user("alice").await;
    let session = login(&app, &alice).await;
    let url = app.url("/auth/sessions/whoami");
    let named = send(
        app.http
            .get(&url)
            .header("cookie", format!("sid={}", session.token)),
    )
    .await;
    assert_eq!(named.status, 200, "{}", named.body);
    assert_eq!(named.json["id"], session.id.as_str());
    let default_name = send(
        app.http
            .get(&url)
            .header("cookie", format!("sessiond_session={}", session.token)),
    )
    .await;
    assert_unauthorized(&default_name);
}

#[tokio::test]
async fn whoami_is_unauthorized_without_a_token_or_with_an_unknown_one() {
    let app = spawn_app().await;
    let url = app.url("/auth/sessions/whoami");
    let jwt = app.admin();
    // What is wrong, and the header that carries it.
    let credentials = [
        ("unknown token", "x-session-token", "sdst_unknown"),
        ("not a session token", "x-session-token", "garbage"),
        ("empty header", "x-session-token", ""),
        ("unknown bearer", "authorization", "Bearer sdst_nope"),
        ("a JWT is no session", "authorization", jwt.as_str()),
        ("basic auth", "authorization", "Basic YTpi"),
        ("unknown cookie", "cookie", "sessiond_session=sdst_x"),
    ];
    let with = |(what, name, value)| (what, app.http.get(&url).header(name, value));
    let cases = [("no token", app.http.get(&url))]
        .into_iter()
        .chain(credentials.map(with));
    for (what, request) in cases {
        let answer = send(request).await;
        assert_eq!(answer.status, 401, "{what}: {}", answer.body);
        assert_unauthorized(&answer);
    }
}

#[tokio::test]
async fn whoami_is_unauthorized_once_the_session_is_revoked_rotated_or_expired() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let api = app.api(Protocol::Rest, Version::V2);
    let admin = app.admin();

    let revoked = login(&app, &alice).await;
    assert_eq!(whoami(&app, &revoked.token).await.status, 200);
    ok(
        &api,
        api.delete(Some(&admin), delete(&revoked.id, None)).await,
    );
    assert_unauthorized(&whoami(&app, &revoked.token).await);

    let rotated = login(&app, &alice).await;
    let update = ok(
        &api,
        api.set(Some(&admin), set_metadata(&rotated.id, "k", b"v"))
            .await,
    );
    let new_token = update.message.session_token;
    assert!(!new_token.is_empty());
    assert_unauthorized(&whoami(&app, &rotated.token).await);
    let fresh = whoami(&app, &new_token).await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    assert_eq!(fresh.json["id"], rotated.id.as_str());

    let mut short = create_for_user(alice.id.as_str());
    short.lifetime = Some(seconds(60));
    let expiring = ok(&api, api.create(Some(&admin), short).await).message;
    assert_eq!(whoami(&app, &expiring.session_token).await.status, 200);
    app.advance(Duration::from_secs(60));
    assert_unauthorized(&whoami(&app, &expiring.session_token).await);
}

#[tokio::test]
async fn a_session_authenticates_nobody_while_its_user_is_locked_or_deactivated() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let session = login(&app, &alice).await;
    let other = login(&app, &alice).await;
    // The state alone, with the sessions left running: what a login racing a lock could
    // leave behind.
    let mut user = alice.clone();
    for state in [UserState::Locked, UserState::Inactive] {
        user.state = state;
        user.version += 1;
        app.core
            .store()
            .update_user(&user, user.version - 1, None)
            .await
            .expect("changing the state");
        assert_unauthorized(&whoami(&app, &session.token).await);
        assert_unauthorized(&list_mine(&app, &session.token, "").await);
        assert_unauthorized(&revoke_mine(&app, &session.token, &other.id).await);
        assert_unauthorized(&revoke_my_others(&app, &session.token).await);
        assert!(!is_revoked(&app, &other.id).await);
    }
    user.state = UserState::Active;
    user.version += 1;
    app.core
        .store()
        .update_user(&user, user.version - 1, None)
        .await
        .expect("reactivating");
    let back = whoami(&app, &session.token).await;
    assert_eq!(back.status, 200, "{}", back.body);
    assert_eq!(back.json["active"], true);
}

#[tokio::test]
async fn errors_echo_the_request_id() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let session = login(&app, &alice).await;

    let unauthorized = send(
        app.http
            .get(app.url("/auth/sessions/whoami"))
            .header("x-request-id", "req-401"),
    )
    .await;
    let mut expected = kratos_error(401, NO_SESSION, NO_SESSION_REASON);
    expected["error"]["request"] = json!("req-401");
    assert_eq!(unauthorized.status, 401);
    assert_eq!(unauthorized.json, expected);

    let bad = send(
        app.http
            .delete(app.url(&format!("/auth/sessions/{}", session.id)))
            .header("x-session-token", &session.token)
            .header("x-request-id", "d7ef54b1-ec15-46e6-bccb-524b82c035e6"),
    )
    .await;
    let mut expected = kratos_error(
        400,
        "SESSIOND-CURRENT-SESSION",
        "cannot revoke current session",
    );
    expected["error"]["request"] = json!("d7ef54b1-ec15-46e6-bccb-524b82c035e6");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json, expected);
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_under_auth_answer_in_the_kratos_shape() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let session = login(&app, &alice).await;
    let cases = [
        (Method::GET, "/auth/nothing-here".into(), 404),
        (Method::GET, "/auth/sessions/whoami/extra".into(), 404),
        (Method::GET, "/auth/sessions/a/b".into(), 404),
        (Method::PUT, "/auth/sessions".into(), 405),
        (Method::POST, "/auth/sessions".into(), 405),
        (Method::PATCH, "/auth/sessions/whoami".into(), 405),
        (Method::GET, "/auth/sessions/123".into(), 405),
    ];
    let credential = ("x-session-token", session.token.as_str());
    let cases = cases.map(|(method, path, status)| {
        let reason = if status == 404 {
            "Not Found"
        } else {
            "Method Not Allowed"
        };
        (
            method,
            path,
            status,
            kratos_error(status, "SESSIOND-HTTP", reason),
        )
    });
    assert_routes_answer(&app, credential, cases).await;
}

// ------------------------------------------------------------------------------------------
// Listing my other sessions
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn listing_returns_only_the_callers_other_active_sessions_newest_first() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let bob = app.add_user("bob").await;
    let api = app.api(Protocol::Grpc, Version::V2);
    let admin = app.admin();

    let oldest = login(&app, &alice).await;
    app.advance(Duration::from_secs(1));
    let mut expiring = create_for_user(alice.id.as_str());
    expiring.lifetime = Some(seconds(30));
    ok(&api, api.create(Some(&admin), expiring).await);
    app.advance(Duration::from_secs(1));
    let current = login(&app, &alice).await;
    app.advance(Duration::from_secs(1));
    let middle = login(&app, &alice).await;
    app.advance(Duration::from_secs(1));
    let revoked = login(&app, &alice).await;
    ok(
        &api,
        api.delete(Some(&admin), delete(&revoked.id, None)).await,
    );
    app.advance(Duration::from_secs(1));
    let newest = login(&app, &alice).await;
    let _bobs = login(&app, &bob).await;
    app.advance(Duration::from_secs(60));

    let answer = list_mine(&app, &current.token, "").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(
        ids(&answer),
        [newest.id.as_str(), middle.id.as_str(), oldest.id.as_str()]
    );
    assert_eq!(total_count(&answer), 3);
    assert_eq!(answer.header("link"), None, "one page: no next link");
    for session in answer.json.as_array().expect("array") {
        assert_eq!(session["active"], true);
        assert_eq!(session["identity"]["id"], alice.id.as_str());
    }

    // A caller with only its current session sees an empty list.
    let only = login(&app, &app.add_user("carol").await).await;
    let empty = list_mine(&app, &only.token, "").await;
    assert_eq!(empty.status, 200);
    assert_eq!(empty.json, json!([]));
    assert_eq!(total_count(&empty), 0);
    assert_eq!(empty.header("link"), None);
}

#[tokio::test]
async fn following_the_next_links_returns_every_session_exactly_once() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let current = login(&app, &alice).await;
    // Every other session shares a creation time, so ties are ordered by id.
    let created = session_ids(&app, &alice, 7, 2).await;

    let mut seen = Vec::new();
    let mut answer = list_mine(&app, &current.token, "page_size=3").await;
    let mut pages = 0;
    loop {
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(total_count(&answer), 7);
        pages += 1;
        let page = ids(&answer);
        assert!(page.len() <= 3, "page size honoured: {page:?}");
        seen.extend(page);
        let Some(next) = next_link(&answer) else {
            break;
        };
        assert!(
            next.starts_with("/auth/sessions?page_size=3&page_token="),
            "{next}"
        );
        assert!(
            answer
                .header("link")
                .expect("link")
                .ends_with("; rel=\"next\""),
            "{:?}",
            answer.header("link")
        );
        answer = send(
            app.http
                .get(app.url(&next))
                .header("x-session-token", &current.token),
        )
        .await;
    }
    assert_eq!(pages, 3);
    assert_each_once(&seen, &created);
    // Newest first across pages: the full list equals one big page.
    let whole = list_mine(&app, &current.token, "page_size=1000").await;
    assert_eq!(ids(&whole), seen);
}

#[tokio::test]
async fn paging_returns_every_session_once_while_new_sessions_are_created_between_pages() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let current = login(&app, &alice).await;
    let mut originals = BTreeSet::new();
    // All at one instant: the keyset order is by id alone, so new sessions (random ids) land
    // on both sides of any page boundary.
    for _ in 0..12 {
        originals.insert(login(&app, &alice).await.id);
    }

    let mut seen = Vec::new();
    let mut query = "page_size=4".to_owned();
    for _ in 0..20 {
        let answer = list_mine(&app, &current.token, &query).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        seen.extend(ids(&answer));
        for _ in 0..3 {
            login(&app, &alice).await;
        }
        // Some newer ones too, which sort before everything already paged.
        app.advance(Duration::from_secs(1));
        login(&app, &alice).await;
        if next_link(&answer).is_none() {
            break;
        }
        query = format!("page_size=4&page_token={}", next_token(&answer));
    }
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a session came twice: {seen:?}");
    assert!(
        originals.is_subset(&unique),
        "missing: {:?}",
        originals.difference(&unique).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn the_default_page_size_is_250() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let current = login(&app, &alice).await;
    for _ in 0..251 {
        login(&app, &alice).await;
    }
    let first = list_mine(&app, &current.token, "").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(ids(&first).len(), 250);
    assert_eq!(total_count(&first), 251);
    let next = next_link(&first).expect("a next link");
    assert!(
        next.starts_with("/auth/sessions?page_size=250&page_token="),
        "{next}"
    );
    let second = send(
        app.http
            .get(app.url(&next))
            .header("x-session-token", &current.token),
    )
    .await;
    assert_eq!(ids(&second).len(), 1);
    assert_eq!(second.header("link"), None);

    let all = list_mine(&app, &current.token, "page_size=1000").await;
    assert_eq!(ids(&all).len(), 251);
    assert_eq!(all.header("link"), None);
}

#[tokio::test]
async fn invalid_page_sizes_are_bad_requests() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let current = login(&app, &alice).await;
    let not_a_number = (
        "SESSIOND-PAGE",
        "page_size must be an integer between 1 and 1000",
    );
    let out_of_range = ("SESSIOND-PAGE-SIZE", "page_size must be between 1 and 1000");
    let cases = [
        ("page_size=0", out_of_range),
        ("page_size=1001", out_of_range),
        ("page_size=4294967295", out_of_range),
        ("page_size=-1", not_a_number),
        ("page_size=99999999999999999999", not_a_number),
        ("page_size=ten", not_a_number),
        ("page_size=1.5", not_a_number),
        ("page_size=", not_a_number),
        ("per_page=0", out_of_range),
    ];
    for (query, (id, reason)) in cases {
        let answer = list_mine(&app, &current.token, query).await;
        assert_eq!(answer.status, 400, "{query}: {}", answer.body);
        assert_eq!(answer.json, kratos_error(400, id, reason), "{query}");
    }
    for query in ["page_size=1", "page_size=1000", "page_size=%2B5"] {
        let answer = list_mine(&app, &current.token, query).await;
        assert_eq!(answer.status, 200, "{query}: {}", answer.body);
    }
}

#[tokio::test]
async fn forged_garbled_or_foreign_page_tokens_are_bad_requests() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let bob = app.add_user("bob").await;
    let alices = login(&app, &alice).await;
    let bobs = login(&app, &bob).await;
    for _ in 0..3 {
        login(&app, &alice).await;
        login(&app, &bob).await;
    }
    let first = list_mine(&app, &alices.token, "page_size=1").await;
    let token = next_token(&first);
    let bobs_token = next_token(&list_mine(&app, &bobs.token, "page_size=1").await);
    // The admin list of alice's sessions hands out tokens for another list.
    let admin_page = send(
        app.http
            .get(app.url(&format!(
                "/auth/admin/api/users/{}/sessions?pageSize=1&active=true",
                alice.id
            )))
            .header("authorization", app.bearer("ops", &["session.read"])),
    )
    .await;
    assert_eq!(admin_page.status, 200, "{}", admin_page.body);
    let admin_token = admin_page.json["nextPageToken"]
        .as_str()
        .expect("nextPageToken")
        .to_owned();

    let mut flipped = token.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).expect("ascii");
    let mut truncated = token.clone();
    truncated.truncate(token.len() - 4);
    let cases = [
        ("garbled", "not-a-token!".to_owned()),
        ("empty", String::new()),
        ("one bit off", flipped),
        ("truncated", truncated),
        ("too long", "A".repeat(600)),
        (
            "made up",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
        ),
        ("bob's token", bobs_token),
        ("the admin list's token", admin_token),
    ];
    for (what, bad) in cases {
        let answer = list_mine(&app, &alices.token, &format!("page_token={bad}")).await;
        assert_eq!(answer.status, 400, "{what}: {}", answer.body);
        assert_eq!(
            answer.json,
            kratos_error(
                400,
                "SESSIOND-PAGE-TOKEN",
                "page_token is invalid or was issued for another list"
            ),
            "{what}"
        );
    }
    // The genuine token still works.
    let second = list_mine(
        &app,
        &alices.token,
        &format!("page_size=1&page_token={token}"),
    )
    .await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(ids(&second).len(), 1);
    assert_ne!(ids(&second), ids(&first));
}

#[tokio::test]
async fn listing_is_unauthorized_without_a_valid_session() {
    let app = spawn_app().await;
    assert_unauthorized(&send(app.http.get(app.url("/auth/sessions"))).await);
    assert_unauthorized(&list_mine(&app, "sdst_unknown", "").await);
}

// ------------------------------------------------------------------------------------------
// Revoking one of my sessions
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn revoking_another_of_my_sessions_answers_204_and_keeps_its_data() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let current = login(&app, &alice).await;
    let other = login(&app, &alice).await;
    let kept = login(&app, &alice).await;
    app.advance(Duration::from_secs(2));

    let answer = revoke_mine(&app, &current.token, &other.id).await;
    assert_eq!(answer.status, 204, "{}", answer.body);
    assert_eq!(answer.body, "");

    assert_unauthorized(&whoami(&app, &other.token).await);
    assert_eq!(whoami(&app, &current.token).await.status, 200);
    assert_eq!(whoami(&app, &kept.token).await.status, 200);
    assert_eq!(
        ids(&list_mine(&app, &current.token, "").await),
        [kept.id.as_str()]
    );

    // The session still exists, revoked, for the administrator.
    let listed = send(
        app.http
            .get(app.url(&format!("/auth/admin/api/users/{}/sessions", alice.id)))
            .header("authorization", app.bearer("ops", &["session.read"])),
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let revoked = listed.json["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|s| s["id"] == other.id.as_str())
        .expect("the revoked session is still listed")
        .clone();
    assert_eq!(revoked["active"], false);
    assert_eq!(revoked["revokedAt"], app.now().to_rfc3339());
    assert_eq!(app.event_count(&other.id).await, 2, "one termination event");
}

#[tokio::test]
async fn revoking_the_current_session_is_a_bad_request() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let current = login(&app, &alice).await;
    let answer = revoke_mine(&app, &current.token, &current.id).await;
    assert_kratos_error(
        &answer,
        400,
        "SESSIOND-CURRENT-SESSION",
        "cannot revoke current session",
    );
    assert_eq!(whoami(&app, &current.token).await.status, 200);
}

#[tokio::test]
async fn revoking_a_session_that_is_not_mine_answers_204_and_changes_nothing() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let bob = app.add_user("bob").await;
    let current = login(&app, &alice).await;
    let bobs = login(&app, &bob).await;
    let already = login(&app, &alice).await;
    assert_eq!(
        revoke_mine(&app, &current.token, &already.id).await.status,
        204
    );
    assert_eq!(app.event_count(&already.id).await, 2);

    for (what, id) in [
        ("unknown", "123456789012345678"),
        ("not numeric", "some-session"),
        ("another user's", bobs.id.as_str()),
        ("already revoked", already.id.as_str()),
    ] {
        let answer = revoke_mine(&app, &current.token, id).await;
        assert_eq!(answer.status, 204, "{what}: {}", answer.body);
        assert_eq!(answer.body, "", "{what}");
    }
    let still = whoami(&app, &bobs.token).await;
    assert_eq!(still.status, 200, "bob's session survives: {}", still.body);
    assert!(!is_revoked(&app, &bobs.id).await);
    assert_eq!(app.event_count(&bobs.id).await, 1);
    assert_eq!(
        app.event_count(&already.id).await,
        2,
        "no second termination"
    );
}

#[tokio::test]
async fn revoking_with_an_absurd_id_is_a_bad_request() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let current = login(&app, &alice).await;
    let too_long = "9".repeat(201);
    let cases = [
        (
            too_long.as_str(),
            "session id: value length must be between 1 and 200 runes, inclusive",
        ),
        ("a%00b", "session id: must not contain control characters"),
        ("%0A", "session id: must not contain control characters"),
        ("%FF%FE", "Invalid URL: Invalid UTF-8 in `id`"),
        ("%C0%AF", "Invalid URL: Invalid UTF-8 in `id`"),
        (
            "a%2Fb",
            "session id: only ASCII letters, digits, '-' and '_' are allowed",
        ),
    ];
    for (id, reason) in cases {
        let answer = revoke_mine(&app, &current.token, id).await;
        assert_kratos_error(&answer, 400, "SESSIOND-ID-INVALID", reason);
    }
    assert_eq!(whoami(&app, &current.token).await.status, 200);
}

#[tokio::test]
async fn revoking_without_a_valid_session_is_unauthorized() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let target = login(&app, &alice).await;
    assert_unauthorized(
        &send(
            app.http
                .delete(app.url(&format!("/auth/sessions/{}", target.id))),
        )
        .await,
    );
    assert_unauthorized(&revoke_mine(&app, "sdst_unknown", &target.id).await);
    assert_unauthorized(&revoke_mine(&app, "sdst_unknown", "%FF").await);
    assert_unauthorized(&send(app.http.delete(app.url("/auth/sessions"))).await);
    assert!(!is_revoked(&app, &target.id).await);
}

// ------------------------------------------------------------------------------------------
// Revoking my other sessions
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn revoking_my_other_sessions_counts_only_the_ones_this_call_revoked() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let bob = app.add_user("bob").await;
    let current = login(&app, &alice).await;
    let others = [
        login(&app, &alice).await,
        login(&app, &alice).await,
        login(&app, &alice).await,
    ];
    let already = login(&app, &alice).await;
    assert_eq!(
        revoke_mine(&app, &current.token, &already.id).await.status,
        204
    );
    let bobs = login(&app, &bob).await;

    let answer = revoke_my_others(&app, &current.token).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.json, json!({"count": 3}));

    for other in &others {
        assert_unauthorized(&whoami(&app, &other.token).await);
        assert!(is_revoked(&app, &other.id).await, "data kept, revoked");
    }
    assert_eq!(app.event_count(&already.id).await, 2, "not revoked twice");
    assert_eq!(whoami(&app, &current.token).await.status, 200);
    assert_eq!(whoami(&app, &bobs.token).await.status, 200);
    assert_eq!(list_mine(&app, &current.token, "").await.json, json!([]));

    let again = revoke_my_others(&app, &current.token).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json, json!({"count": 0}));
}

#[tokio::test]
async fn revoking_my_other_sessions_includes_every_login_that_returned_before_it() {
    const TASKS: usize = 4;
    const WARM_UP: usize = 24;
    const MAX_PER_TASK: usize = 200;
    const AFTER_PER_TASK: usize = 5;

    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let current = login(&app, &alice).await;
    let admin = app.admin();
    let delete_sent = Arc::new(AtomicBool::new(false));
    let delete_done = Arc::new(AtomicBool::new(false));
    let (created_tx, mut created_rx) = tokio::sync::mpsc::unbounded_channel::<()>();

    let protocols = [
        Protocol::Rest,
        Protocol::Grpc,
        Protocol::ConnectJson,
        Protocol::GrpcWeb,
    ];
    let mut tasks = Vec::new();
    for protocol in protocols.into_iter().take(TASKS) {
        let api = app.api(protocol, Version::V2);
        let admin = admin.clone();
        let user_id = alice.id.as_str().to_owned();
        let (sent, done, tx) = (delete_sent.clone(), delete_done.clone(), created_tx.clone());
        tasks.push(tokio::spawn(async move {
            // (id, returned before the DELETE was sent, started after it returned)
            let mut created = Vec::new();
            let mut after = 0;
            for _ in 0..MAX_PER_TASK {
                let started_after_done = done.load(Ordering::SeqCst);
                let reply = api
                    .create(Some(&admin), create_for_user(&user_id))
                    .await
                    .unwrap_or_else(|f| panic!("{api}: create failed: {f:?}"));
                let before_delete = !sent.load(Ordering::SeqCst);
                created.push((reply.message.session_id, before_delete, started_after_done));
                if before_delete {
                    let _ = tx.send(());
                } else {
                    after += 1;
                    if after >= AFTER_PER_TASK && started_after_done {
                        break;
                    }
                }
            }
            created
        }));
    }
    drop(created_tx);
    for _ in 0..WARM_UP {
        created_rx.recv().await.expect("logins under way");
    }
    delete_sent.store(true, Ordering::SeqCst);
    let answer = revoke_my_others(&app, &current.token).await;
    delete_done.store(true, Ordering::SeqCst);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let count = answer.json["count"].as_u64().expect("count");

    let mut before = Vec::new();
    let mut in_flight = 0u64;
    let mut later = Vec::new();
    for task in tasks {
        for (id, before_delete, started_after_done) in task.await.expect("task") {
            if before_delete {
                before.push(id);
            } else if started_after_done {
                later.push(id);
            } else {
                in_flight += 1;
            }
        }
    }
    assert!(before.len() >= WARM_UP);
    for id in &before {
        assert!(
            is_revoked(&app, id).await,
            "session {id} was created before the DELETE was sent but survived it"
        );
    }
    for id in &later {
        assert!(
            !is_revoked(&app, id).await,
            "session {id} was created after the DELETE returned but is revoked"
        );
    }
    let before = before.len() as u64;
    assert!(
        (before..=before + in_flight).contains(&count),
        "count {count}: {before} created before, {in_flight} in flight"
    );
    assert_eq!(whoami(&app, &current.token).await.status, 200);
}

#[tokio::test]
async fn browsers_on_other_origins_may_send_the_session_token_and_read_the_paging_headers() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let current = login(&app, &alice).await;
    for _ in 0..3 {
        login(&app, &alice).await;
    }
    let origin = "https://app.example.com";
    let preflight = send(
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/auth/sessions"))
            .header("origin", origin)
            .header("access-control-request-method", "DELETE")
            .header(
                "access-control-request-headers",
                "x-session-token,x-request-id",
            ),
    )
    .await;
    assert!(preflight.status < 300, "{}", preflight.status);
    let allowed = preflight
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(allowed.contains("x-session-token"), "{allowed}");

    let answer = send(
        app.http
            .get(app.url("/auth/sessions?page_size=1"))
            .header("origin", origin)
            .header("x-session-token", &current.token),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.header("link").is_some());
    let exposed: Vec<String> = answer
        .header("access-control-expose-headers")
        .unwrap_or_default()
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    for needed in ["link", "x-total-count"] {
        assert!(
            exposed.iter().any(|h| h == needed),
            "{needed} not in {exposed:?}"
        );
    }
}

#[tokio::test]
async fn no_bad_input_makes_the_self_service_face_fail_with_a_server_error() {
    let app = spawn_app_with(|config| config.body_limit = 1024).await;
    let alice = app.add_user("alice").await;
    let current = login(&app, &alice).await;
    let token = current.token.as_str();
    let non_utf8 = reqwest::header::HeaderValue::from_bytes(b"sdst_\xff\xfe").expect("obs-text");
    // whoami with one credential header; any call with the current session's token.
    let whoami_with = |name: &str, value: reqwest::header::HeaderValue| {
        let request = app.http.get(app.url("/auth/sessions/whoami"));
        request.header(name, value)
    };
    let mine = |method: Method, path: &str| {
        let request = app.http.request(method, app.url(path));
        request.header("x-session-token", token)
    };
    let text = |value: &str| reqwest::header::HeaderValue::from_str(value).expect("a header");
    let requests = [
        whoami_with("x-session-token", non_utf8.clone()),
        whoami_with("cookie", non_utf8.clone()),
        whoami_with("authorization", non_utf8),
        whoami_with("x-session-token", text(&"x".repeat(8192))),
        whoami_with("cookie", text("sessiond_session")),
        whoami_with("cookie", text(";;=;sessiond_session=\"\"")),
        whoami_with("authorization", text("Bearer")),
        mine(Method::GET, "/auth/sessions?page_token=%FF%FE"),
        mine(Method::GET, "/auth/sessions?page_size=%00"),
        mine(Method::GET, "/auth/sessions?page_size=1&page_size=0"),
        mine(
            Method::GET,
            &format!("/auth/sessions?page_token={}", "A".repeat(4000)),
        ),
        mine(Method::GET, "/auth/sessions?%"),
        mine(Method::GET, "/auth/sessions").body("x".repeat(4096)),
        mine(Method::DELETE, "/auth/sessions").body("{\"count\":"),
        mine(Method::DELETE, "/auth/sessions/%FF%FE"),
        mine(Method::DELETE, "/auth/sessions/%E2%80%AE"),
        mine(
            Method::DELETE,
            &format!("/auth/sessions/{}", "%2F".repeat(100)),
        ),
    ];
    assert_no_server_error(requests, &KRATOS_ERROR).await;
    let still = whoami(&app, token).await;
    assert_eq!(still.status, 200, "still serving: {}", still.body);
}
