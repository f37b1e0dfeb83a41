//! Sign-in without a bearer JWT: Kratos' native login flow under `/auth/self-service/login`.
//! A flow is stateless and expires; a login checks the user and the password through the
//! core's CreateSession checks (lockout included) and answers a session token that works on
//! the self-service face and as a bearer on the SessionService.

use serde_json::{Value, json};

use sessiond::domain::SessionId;
use sessiond::domain::error_ids::{LOGIN_FLOW_EXPIRED, LOGIN_FLOW_UNKNOWN, PASSWORD_LOCKED};

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery";

async fn new_flow(app: &TestApp) -> Answer {
    send(app.http.get(app.url("/auth/self-service/login/api"))).await
}

async fn submit(app: &TestApp, flow: &str, body: Value) -> Answer {
    send(
        app.http
            .post(app.url(&format!("/auth/self-service/login?flow={flow}")))
            .header(
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 Safari/537.36",
            )
            .json(&body),
    )
    .await
}

fn password_body(identifier: &str, password: &str) -> Value {
    json!({ "method": "password", "identifier": identifier, "password": password })
}

async fn flow_id(app: &TestApp) -> String {
    let flow = new_flow(app).await;
    assert_eq!(flow.status, 200, "{}", flow.body);
    flow.json["id"].as_str().expect("flow id").to_owned()
}

#[tokio::test]
async fn a_login_flow_has_kratos_native_shape_and_expires_in_an_hour() {
    let app = spawn_app().await;
    let flow = new_flow(&app).await;
    assert_eq!(flow.status, 200, "{}", flow.body);
    let id = flow.json["id"].as_str().expect("id");
    assert_eq!(flow.json["type"], "api");
    assert_eq!(flow.json["state"], "choose_method");
    assert_eq!(flow.json["issued_at"], json!(app.now().to_rfc3339()));
    let expires = app
        .now()
        .saturating_add(std::time::Duration::from_secs(3600));
    assert_eq!(flow.json["expires_at"], json!(expires.to_rfc3339()));
    assert_eq!(
        flow.json["ui"]["action"],
        json!(format!("/auth/self-service/login?flow={id}"))
    );
    assert_eq!(flow.json["ui"]["method"], "POST");
    let names: Vec<&str> = flow.json["ui"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["attributes"]["name"].as_str())
        .collect();
    assert_eq!(names, ["csrf_token", "identifier", "password", "method"]);
    // Each flow is new.
    assert_ne!(flow_id(&app).await, id);
}

#[tokio::test]
async fn the_right_password_answers_a_session_token_that_works_everywhere() {
    let app = spawn_app().await;
    let alice = app
        .add_user_with_password("alice@example.com", PASSWORD)
        .await;
    let flow = flow_id(&app).await;
    let answer = submit(&app, &flow, password_body("Alice@Example.com", PASSWORD)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let token = answer.json["session_token"]
        .as_str()
        .expect("session_token");
    let session = &answer.json["session"];
    assert_eq!(session["identity"]["id"], alice.id.as_str());
    assert_eq!(session["active"], true);
    assert_eq!(session["authenticator_assurance_level"], "aal1");
    let lifetime = std::time::Duration::from_secs(24 * 3600);
    assert_eq!(
        session["expires_at"],
        json!(app.now().saturating_add(lifetime).to_rfc3339())
    );
    assert_eq!(
        session["devices"][0]["user_agent"],
        "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 Safari/537.36"
    );
    assert_eq!(session["devices"][0]["ip_address"], "127.0.0.1");
    // The self-service face knows the token.
    let me = whoami(&app, token).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json["id"], session["id"]);
    // As a bearer on the SessionService, it may end its own session (sign out).
    let id = session["id"].as_str().expect("id");
    let out = send(
        app.http
            .delete(app.url(&format!("/v2/sessions/{id}")))
            .header("authorization", format!("Bearer {token}"))
            .json(&json!({})),
    )
    .await;
    assert_eq!(out.status, 200, "{}", out.body);
    assert_eq!(whoami(&app, token).await.status, 401);
    // The user opened the session: its creator is the user.
    let stored = app
        .core
        .store()
        .session(&SessionId::parse(id).expect("id"))
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(stored.creator, alice.id.as_str());
}

#[tokio::test]
async fn wrong_credentials_answer_the_flow_with_one_message_whatever_was_wrong() {
    let app = spawn_app().await;
    app.add_user_with_password("alice@example.com", PASSWORD)
        .await;
    let flow = flow_id(&app).await;
    let cases = [
        password_body("alice@example.com", "wrong password"),
        password_body("nobody@example.com", PASSWORD),
        password_body("", PASSWORD),
        password_body("alice@example.com", ""),
    ];
    let mut seen = Vec::new();
    for body in cases {
        let answer = submit(&app, &flow, body.clone()).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        assert_eq!(answer.json["id"], flow.as_str(), "{body}: the flow");
        let messages = &answer.json["ui"]["messages"];
        assert_eq!(messages[0]["id"], 4_000_006, "{body}: {}", answer.body);
        assert_eq!(messages[0]["type"], "error");
        seen.push(messages.clone());
        assert!(!answer.body.contains(PASSWORD) && !answer.body.contains("wrong password"));
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
}

#[tokio::test]
async fn logins_count_towards_the_same_lockout_as_create_session() {
    let app = spawn_app_with(|s| s.max_password_attempts = 2).await;
    let alice = app
        .add_user_with_password("alice@example.com", PASSWORD)
        .await;
    let flow = flow_id(&app).await;
    for _ in 0..2 {
        let answer = submit(&app, &flow, password_body("alice@example.com", "nope nope")).await;
        assert_eq!(answer.status, 400, "{}", answer.body);
    }
    // Locked out: even the right password is refused, here and on CreateSession.
    let answer = submit(&app, &flow, password_body("alice@example.com", PASSWORD)).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(
        answer.json["error"]["id"], PASSWORD_LOCKED,
        "{}",
        answer.body
    );
    let create = send(
        app.http
            .post(app.url("/v2/sessions"))
            .header("authorization", app.admin())
            .json(&json!({"checks": {
                "user": {"userId": alice.id.as_str()},
                "password": {"password": PASSWORD}
            }})),
    )
    .await;
    assert_eq!(create.status, 400, "{}", create.body);
    assert!(create.body.contains(PASSWORD_LOCKED), "{}", create.body);
}

#[tokio::test]
async fn unknown_forged_and_expired_flows_are_refused_in_kratos_shape() {
    let app = spawn_app().await;
    app.add_user_with_password("alice@example.com", PASSWORD)
        .await;
    let body = password_body("alice@example.com", PASSWORD);
    let flow = flow_id(&app).await;
    let mut forged = flow.clone();
    let last = if forged.ends_with('A') { "B" } else { "A" };
    forged.replace_range(forged.len() - 1.., last);
    for bad in ["", "nope", "%00", forged.as_str(), &"A".repeat(500)] {
        let answer = submit(&app, bad, body.clone()).await;
        assert_eq!(answer.status, 404, "{bad:?}: {}", answer.body);
        assert_eq!(answer.json["error"]["id"], LOGIN_FLOW_UNKNOWN);
    }
    // A query that is not UTF-8 once decoded is refused as malformed, not guessed at.
    let answer = submit(&app, "%00%FF", body.clone()).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.json["error"]["code"], 400, "{}", answer.body);
    app.advance(std::time::Duration::from_secs(3600));
    let answer = submit(&app, &flow, body).await;
    assert_eq!(answer.status, 410, "{}", answer.body);
    assert_eq!(answer.json["error"]["id"], LOGIN_FLOW_EXPIRED);
    assert_eq!(answer.json["error"]["code"], 410);
}

#[tokio::test]
async fn malformed_submissions_are_client_errors() {
    let app = spawn_app().await;
    let flow = flow_id(&app).await;
    let url = app.url(&format!("/auth/self-service/login?flow={flow}"));
    let cases: [(&str, &str, u16); 5] = [
        (
            "application/json",
            r#"{"method":"totp","identifier":"a","password":"b"}"#,
            400,
        ),
        ("application/json", r#"{"identifier":"a"}"#, 400),
        ("application/json", "{not json", 400),
        (
            "application/json",
            r#"{"method":"password","identifier":7}"#,
            400,
        ),
        ("text/plain", r#"{"method":"password"}"#, 415),
    ];
    for (content_type, body, status) in cases {
        let answer = send(
            app.http
                .post(&url)
                .header("content-type", content_type)
                .body(body),
        )
        .await;
        assert_eq!(answer.status, status, "{body}: {}", answer.body);
        assert!(
            answer.json["error"]["id"].is_string(),
            "{body}: {}",
            answer.body
        );
    }
    let get = send(app.http.get(&url)).await;
    assert_eq!(get.status, 405, "{}", get.body);
}
