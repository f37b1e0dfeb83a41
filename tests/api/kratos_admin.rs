//! Kratos' admin session API under `/auth/admin/sessions` and `/auth/admin/identities`
//! (the Ory SDKs' `IdentityApi`): bearer JWTs with `session.read` / `session.delete`, every
//! session of every user by keyset pages, read, disable, extend, and an identity's sessions;
//! every refusal in Kratos' error shape.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const READ: &[&str] = &["session.read"];
const DELETE: &[&str] = &["session.read", "session.delete"];

/// Kratos' `{"error":{"code":…,"status":…,"message":…}}`.
const KRATOS_ERROR: ErrorShape = ErrorShape {
    at: "/error",
    status: "code",
    strings: ["message", "status"],
};

async fn call(app: &TestApp, method: Method, path: &str, auth: Option<&str>) -> Answer {
    let mut request = app.http.request(method, app.url(path));
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    send(request).await
}

async fn ops_get(app: &TestApp, path: &str) -> Answer {
    call(app, Method::GET, path, Some(&app.bearer("ops", READ))).await
}

async fn ops(app: &TestApp, method: Method, path: &str) -> Answer {
    call(app, method, path, Some(&app.bearer("ops", DELETE))).await
}

/// Checks a Kratos error: status, id, and the shape's fields.
#[track_caller]
fn assert_kratos(answer: &Answer, status: u16, id: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let error = &answer.json["error"];
    assert_eq!(error["code"], status, "{}", answer.body);
    assert_eq!(error["id"], id, "{}", answer.body);
    for field in ["status", "reason", "message"] {
        assert!(error[field].is_string(), "{field}: {}", answer.body);
    }
}

/// The target of the `Link` entry with this `rel`.
fn link(answer: &Answer, rel: &str) -> Option<String> {
    let header = answer.header("link")?;
    header.split(", <").find_map(|entry| {
        let (target, params) = entry.split_once(';')?;
        (params.trim() == format!("rel=\"{rel}\"")).then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        })
    })
}

/// Follows `rel="next"` from `first` and returns every id seen, checking each page.
async fn follow(app: &TestApp, first: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut next = Some(first.to_owned());
    while let Some(path) = next {
        let answer = ops_get(app, &path).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        assert!(link(&answer, "first").is_some(), "{:?}", answer.headers);
        seen.extend(ids(&answer));
        next = link(&answer, "next");
        assert!(seen.len() <= 100, "the links end");
    }
    seen
}

#[tokio::test]
async fn all_sessions_come_newest_first_each_once_by_links_without_a_total() {
    let app = spawn_app().await;
    let (alice, bob) = (app.add_user("alice").await, app.add_user("bob").await);
    let mut created = session_ids(&app, &alice, 3, 2).await;
    created.extend(session_ids(&app, &bob, 4, 2).await);

    let first = ops_get(&app, "/auth/admin/sessions?page_size=2").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.header("x-total-count"), None);
    assert_eq!(
        link(&first, "first").as_deref(),
        Some("/auth/admin/sessions?page_size=2")
    );
    let seen = follow(&app, "/auth/admin/sessions?page_size=2").await;
    assert_each_once(&seen, &created);
    let all = ops_get(&app, "/auth/admin/sessions").await;
    assert_eq!(ids(&all).len(), 7);
    assert_eq!(link(&all, "next"), None, "one page: no next");
    // Newest first: Bob's last sessions lead.
    assert!(created[5..].contains(&ids(&all)[0]), "{:?}", ids(&all));
}

#[tokio::test]
async fn the_active_filter_splits_live_from_ended_sessions_and_follows_the_links() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let live = session_ids(&app, &alice, 3, 1).await;
    let revoked = login(&app, &alice).await;
    assert_eq!(
        ops(
            &app,
            Method::DELETE,
            &format!("/auth/admin/sessions/{}", revoked.id)
        )
        .await
        .status,
        204
    );
    let expiring = app.create_expiring_session_for(&alice, 10).await;
    app.advance(Duration::from_secs(20));

    let active = follow(&app, "/auth/admin/sessions?active=true&page_size=2").await;
    assert_each_once(&active, &live);
    let ended = follow(&app, "/auth/admin/sessions?active=false&page_size=1").await;
    assert_each_once(&ended, &[revoked.id.clone(), expiring.session_id.clone()]);
    let answer = ops_get(&app, "/auth/admin/sessions?active=false").await;
    for session in answer.json.as_array().expect("array") {
        assert_eq!(session["active"], false);
    }
    let page = ops_get(&app, "/auth/admin/sessions?active=true&page_size=1").await;
    let next = link(&page, "next").expect("next");
    assert!(next.contains("active=true"), "{next}");

    let identity = format!("/auth/admin/identities/{}/sessions", alice.id.as_str());
    let answer = ops_get(&app, &format!("{identity}?active=true")).await;
    assert_each_once(&ids(&answer), &live);
    let answer = ops_get(&app, &format!("{identity}?active=false")).await;
    assert_eq!(ids(&answer).len(), 2);
}

#[tokio::test]
async fn expand_fills_identity_and_devices_on_request_only() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let session = rest_login(
        &app,
        json!({
            "checks": {"user": {"userId": alice.id.as_str()}},
            "userAgent": {"ip": "192.0.2.7", "header": {"user-agent": {"values": ["probe/1"]}}},
        }),
    )
    .await;
    let path = format!("/auth/admin/sessions/{}", session.id);

    let plain = ops_get(&app, &path).await;
    assert_eq!(plain.status, 200, "{}", plain.body);
    assert_eq!(plain.json["id"], session.id.as_str());
    assert_eq!(plain.json["active"], true);
    assert_eq!(plain.json["identity"], Value::Null);
    assert_eq!(plain.json["devices"], json!([]));

    let identity = ops_get(&app, &format!("{path}?expand=IDENTITY")).await;
    assert_eq!(identity.json["identity"]["id"], alice.id.as_str());
    assert_eq!(identity.json["devices"], json!([]));

    let both = ops_get(&app, &format!("{path}?expand=Devices&expand=identity")).await;
    assert_eq!(both.json["identity"]["traits"]["login_name"], "alice");
    assert_eq!(
        both.json["devices"],
        json!([{"id": session.id, "ip_address": "192.0.2.7", "user_agent": "probe/1"}])
    );

    let listed = ops_get(&app, "/auth/admin/sessions?expand=identity").await;
    assert_eq!(listed.json[0]["identity"]["id"], alice.id.as_str());
    let listed = ops_get(&app, "/auth/admin/sessions").await;
    assert_eq!(listed.json[0]["identity"], Value::Null);
    // An identity's sessions come expanded, as upstream.
    let own = ops_get(
        &app,
        &format!("/auth/admin/identities/{}/sessions", alice.id.as_str()),
    )
    .await;
    assert_eq!(own.json[0]["identity"]["id"], alice.id.as_str());
    assert_eq!(own.json[0]["devices"][0]["ip_address"], "192.0.2.7");
}

#[tokio::test]
async fn disabling_terminates_once_and_is_idempotent() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let session = login(&app, &alice).await;
    let path = format!("/auth/admin/sessions/{}", session.id);

    assert_eq!(ops(&app, Method::DELETE, &path).await.status, 204);
    assert_eq!(whoami(&app, &session.token).await.status, 401);
    assert_eq!(
        app.event_count(&session.id).await,
        2,
        "one terminated event"
    );
    let again = ops(&app, Method::DELETE, &path).await;
    assert_eq!(again.status, 204, "{}", again.body);
    assert_eq!(app.event_count(&session.id).await, 2, "no second event");
    // The record stays, inactive.
    let read = ops_get(&app, &path).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json["active"], false);

    let unknown = ops(&app, Method::DELETE, "/auth/admin/sessions/424242").await;
    assert_kratos(&unknown, 404, "QUERY-SFeaa");
    let unknown = ops_get(&app, "/auth/admin/sessions/424242").await;
    assert_kratos(&unknown, 404, "QUERY-SFeaa");
}

#[tokio::test]
async fn extending_moves_the_expiry_with_one_event_and_keeps_the_token() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let session = app.create_expiring_session_for(&alice, 60).await;
    let id = session.session_id.clone();
    app.advance(Duration::from_secs(120));
    assert_eq!(whoami(&app, &session.session_token).await.status, 401);

    let extend = format!("/auth/admin/sessions/{id}/extend");
    let answer = ops(&app, Method::PATCH, &extend).await;
    assert_eq!(answer.status, 204, "{}", answer.body);
    assert_eq!(app.event_count(&id).await, 2, "one updated event");
    let read = ops_get(&app, &format!("/auth/admin/sessions/{id}")).await;
    let expected = app.now().saturating_add(Duration::from_secs(24 * 3600));
    assert_eq!(read.json["expires_at"], expected.to_rfc3339());
    assert_eq!(read.json["active"], true);
    assert_eq!(whoami(&app, &session.session_token).await.status, 200);

    // A terminated session cannot be extended.
    assert_eq!(
        ops(&app, Method::DELETE, &format!("/auth/admin/sessions/{id}"))
            .await
            .status,
        204
    );
    assert_kratos(&ops(&app, Method::PATCH, &extend).await, 404, "QUERY-SFeaa");
    assert_eq!(app.event_count(&id).await, 3);
    let unknown = ops(&app, Method::PATCH, "/auth/admin/sessions/424242/extend").await;
    assert_kratos(&unknown, 404, "QUERY-SFeaa");
}

#[tokio::test]
async fn the_extend_lifespan_is_a_setting() {
    let app = spawn_app_with(|s| s.session_extend_lifespan = Duration::from_secs(600)).await;
    let alice = app.add_user("alice").await;
    let session = login(&app, &alice).await;
    let path = format!("/auth/admin/sessions/{}", session.id);
    assert_eq!(
        ops(&app, Method::PATCH, &format!("{path}/extend"))
            .await
            .status,
        204
    );
    let expected = app.now().saturating_add(Duration::from_secs(600));
    assert_eq!(
        ops_get(&app, &path).await.json["expires_at"],
        expected.to_rfc3339()
    );
}

#[tokio::test]
async fn an_identitys_sessions_page_with_links_and_revoke_with_204_even_when_none() {
    let app = spawn_app().await;
    let (alice, bob) = (app.add_user("alice").await, app.add_user("bob").await);
    let created = session_ids(&app, &alice, 5, 2).await;
    let bobs = login(&app, &bob).await;
    let path = format!("/auth/admin/identities/{}/sessions", alice.id.as_str());

    let first = ops_get(&app, &format!("{path}?page_size=2")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.header("x-total-count"), Some("5"));
    let seen = follow(&app, &format!("{path}?page_size=2")).await;
    assert_each_once(&seen, &created);

    let unknown = ops_get(&app, "/auth/admin/identities/nobody/sessions").await;
    assert_eq!(unknown.status, 200, "{}", unknown.body);
    assert_eq!(unknown.json, json!([]));

    assert_eq!(ops(&app, Method::DELETE, &path).await.status, 204);
    let after = ops_get(&app, &format!("{path}?active=true")).await;
    assert_eq!(after.json, json!([]));
    let kept = ops_get(&app, &path).await;
    assert_eq!(ids(&kept).len(), 5, "revoked, not deleted");
    assert_eq!(
        whoami(&app, &bobs.token).await.status,
        200,
        "others untouched"
    );
    for id in &created {
        assert_eq!(app.event_count(id).await, 2, "one terminated event each");
    }

    // Nothing left to revoke, or no such identity: still 204.
    let again = ops(&app, Method::DELETE, &path).await;
    assert_eq!(again.status, 204, "{}", again.body);
    let nobody = ops(
        &app,
        Method::DELETE,
        "/auth/admin/identities/nobody/sessions",
    )
    .await;
    assert_eq!(nobody.status, 204, "{}", nobody.body);
}

/// Every route with a well-formed id.
fn routes(session: &str, user: &str) -> Vec<(Method, String, bool)> {
    vec![
        (Method::GET, "/auth/admin/sessions".into(), false),
        (
            Method::GET,
            format!("/auth/admin/sessions/{session}"),
            false,
        ),
        (
            Method::DELETE,
            format!("/auth/admin/sessions/{session}"),
            true,
        ),
        (
            Method::PATCH,
            format!("/auth/admin/sessions/{session}/extend"),
            true,
        ),
        (
            Method::GET,
            format!("/auth/admin/identities/{user}/sessions"),
            false,
        ),
        (
            Method::DELETE,
            format!("/auth/admin/identities/{user}/sessions"),
            true,
        ),
    ]
}

#[tokio::test]
async fn credentials_and_permissions_are_judged_in_kratos_shape() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let session = login(&app, &alice).await;
    let read_only = app.bearer("ops", READ);
    let delete_only = app.bearer("ops", &["session.delete"]);
    for (method, path, writes) in routes(&session.id, alice.id.as_str()) {
        let case = format!("{method} {path}");
        let none = call(&app, method.clone(), &path, None).await;
        assert_eq!(none.status, 401, "{case}: {}", none.body);
        assert_eq!(none.json["error"]["code"], 401, "{case}");
        let garbage = call(&app, method.clone(), &path, Some("Bearer nope")).await;
        assert_eq!(garbage.status, 401, "{case}: {}", garbage.body);
        assert_eq!(garbage.json["error"]["code"], 401, "{case}");
        // A session token is not an administrator.
        let token = format!("Bearer {}", session.token);
        let user = call(&app, method.clone(), &path, Some(&token)).await;
        assert_kratos(&user, 403, "AUTH-AWfge");
        let lacking = if writes { &read_only } else { &delete_only };
        let denied = call(&app, method, &path, Some(lacking)).await;
        assert_kratos(&denied, 403, "AUTH-AWfge");
    }
    assert_eq!(
        whoami(&app, &session.token).await.status,
        200,
        "nothing revoked"
    );
}

#[tokio::test]
async fn bad_input_on_every_route_is_a_kratos_400() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    login(&app, &alice).await;
    let user = alice.id.as_str();
    let identity = format!("/auth/admin/identities/{user}/sessions");
    let cases = [
        (
            "/auth/admin/sessions?page_size=0".to_owned(),
            "SESSIOND-PAGE-SIZE",
        ),
        (
            "/auth/admin/sessions?page_size=1001".to_owned(),
            "SESSIOND-PAGE-SIZE",
        ),
        (
            "/auth/admin/sessions?page_size=x".to_owned(),
            "SESSIOND-PAGE",
        ),
        (
            "/auth/admin/sessions?page_token=forged".to_owned(),
            "SESSIOND-PAGE-TOKEN",
        ),
        (
            "/auth/admin/sessions?active=maybe".to_owned(),
            "SESSIOND-ACTIVE",
        ),
        (
            "/auth/admin/sessions?expand=credentials".to_owned(),
            "SESSIOND-EXPAND",
        ),
        (
            "/auth/admin/sessions/a%21b".to_owned(),
            "SESSIOND-ID-INVALID",
        ),
        (
            "/auth/admin/sessions/1?expand=x".to_owned(),
            "SESSIOND-EXPAND",
        ),
        (format!("{identity}?page_size=0"), "SESSIOND-PAGE-SIZE"),
        (format!("{identity}?active=2"), "SESSIOND-ACTIVE"),
        (
            format!("{identity}?page_token=forged"),
            "SESSIOND-PAGE-TOKEN",
        ),
        (
            format!("/auth/admin/identities/{}/sessions", "u".repeat(201)),
            "SESSIOND-USERID-INVALID",
        ),
    ];
    for (path, id) in cases {
        let answer = ops_get(&app, &path).await;
        assert_kratos(&answer, 400, id);
    }
    let long = "s".repeat(201);
    for (method, path) in [
        (Method::DELETE, format!("/auth/admin/sessions/{long}")),
        (Method::PATCH, format!("/auth/admin/sessions/{long}/extend")),
        (
            Method::PATCH,
            "/auth/admin/sessions/a%20b/extend".to_owned(),
        ),
        (
            Method::DELETE,
            format!("/auth/admin/identities/{}/sessions", "u".repeat(201)),
        ),
    ] {
        let answer = ops(&app, method, &path).await;
        assert_eq!(answer.status, 400, "{path}: {}", answer.body);
        assert_eq!(answer.json["error"]["code"], 400);
    }

    // A page token of another list is refused.
    login(&app, &alice).await;
    let page = ops_get(&app, "/auth/admin/sessions?page_size=1").await;
    let next = link(&page, "next").expect("a next link");
    let (_, token) = next.split_once("page_token=").expect("a page token");
    for path in [
        format!("/auth/admin/sessions?page_size=1&active=true&page_token={token}"),
        format!("{identity}?page_size=1&page_token={token}"),
    ] {
        assert_kratos(&ops_get(&app, &path).await, 400, "SESSIOND-PAGE-TOKEN");
    }
}

#[tokio::test]
async fn transport_refusals_on_these_paths_are_in_kratos_shape_and_carry_the_request_id() {
    let app = spawn_app().await;
    let auth = app.bearer("ops", DELETE);
    let cases = [
        (Method::POST, "/auth/admin/sessions", 405),
        (Method::PUT, "/auth/admin/sessions/1", 405),
        (Method::GET, "/auth/admin/sessions/1/extend", 405),
        (Method::PATCH, "/auth/admin/identities/1/sessions", 405),
        (Method::GET, "/auth/admin/sessions/1/nope", 404),
        (Method::GET, "/auth/admin/identities/1", 404),
    ];
    for (method, path, status) in cases {
        let answer = call(&app, method, path, Some(&auth)).await;
        assert_kratos(&answer, status, "SESSIOND-HTTP");
    }
    // The admin face keeps its own shape.
    let admin = call(&app, Method::GET, "/auth/admin/api/nope", Some(&auth)).await;
    assert_eq!(admin.json["statusCode"], 404, "{}", admin.body);

    let answer = send(
        app.http
            .get(app.url("/auth/admin/sessions?active=maybe"))
            .header("authorization", &auth)
            .header("x-request-id", "req-42"),
    )
    .await;
    assert_eq!(answer.json["error"]["request"], "req-42", "{}", answer.body);
}

#[tokio::test]
async fn hostile_requests_never_fail_the_server() {
    let app = spawn_app().await;
    let alice = app.add_user("alice").await;
    let session = login(&app, &alice).await;
    let auth = app.bearer("ops", DELETE);
    let mut requests = Vec::new();
    for (method, path, _) in routes(&session.id, alice.id.as_str()) {
        for suffix in [
            "?page_size=-1",
            "?expand=",
            "?active=",
            "?page_token=%FF",
            "?%zz=1",
        ] {
            let url = app.url(&format!("{path}{suffix}"));
            requests.push(
                app.http
                    .request(method.clone(), url)
                    .header("authorization", &auth),
            );
        }
        let url = app.url(&path);
        requests.push(
            app.http
                .request(method.clone(), url)
                .header("authorization", &auth)
                .header("content-type", "text/plain")
                .body("x".repeat(2 * 1024 * 1024)),
        );
    }
    for path in [
        "/auth/admin/sessions/%FF",
        "/auth/admin/identities/%FF%FE/sessions",
    ] {
        requests.push(app.http.get(app.url(path)).header("authorization", &auth));
    }
    assert_no_server_error(requests, &KRATOS_ERROR).await;
}
