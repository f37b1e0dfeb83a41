//! Plain HTTP for the faces that are not the session service (self-service and admin): an
//! answer with its body read, sessions to call them with, and the checks both faces share
//! (their route tables and that no bad input is a server error). Not for the typed session
//! service clients: those are in `clients`.

use reqwest::{Method, RequestBuilder};
use serde_json::Value;

use sessiond::domain::User;

use super::TestApp;

/// An HTTP answer: status, headers, raw body and the body as JSON (Null if it is not).
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
    pub json: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn send(request: RequestBuilder) -> Answer {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.expect("body");
    let json = serde_json::from_str(&body).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        json,
    }
}

/// A session: its id and the token that identifies its user.
#[derive(Clone, Debug)]
pub struct Login {
    pub id: String,
    pub token: String,
}

/// Creates a session that checked `user` (native gRPC, the fast path).
pub async fn login(app: &TestApp, user: &User) -> Login {
    let created = app.create_session_for(user).await;
    Login {
        id: created.session_id,
        token: created.session_token,
    }
}

/// The ids of `n` sessions of `user` in creation order, `together` at a time sharing one
/// creation instant, the clock a second on before each group.
pub async fn session_ids(app: &TestApp, user: &User, n: usize, together: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        if i % together == 0 {
            app.advance(std::time::Duration::from_secs(1));
        }
        ids.push(login(app, user).await.id);
    }
    ids
}

/// Checks that `seen` holds each of `created` exactly once, in any order.
#[track_caller]
pub fn assert_each_once(seen: &[String], created: &[String]) {
    assert_eq!(seen.len(), created.len(), "no duplicates: {seen:?}");
    let seen: std::collections::BTreeSet<_> = seen.iter().collect();
    assert_eq!(seen, created.iter().collect());
}

/// Creates a session through REST `POST /v2/sessions` with this JSON body.
pub async fn rest_login(app: &TestApp, body: Value) -> Login {
    let answer = send(
        app.http
            .post(app.url("/v2/sessions"))
            .header("authorization", app.admin())
            .json(&body),
    )
    .await;
    assert_eq!(answer.status, 201, "create: {}", answer.body);
    Login {
        id: answer.json["sessionId"].as_str().expect("sessionId").into(),
        token: answer.json["sessionToken"]
            .as_str()
            .expect("sessionToken")
            .into(),
    }
}

/// `GET` of a path without credentials (`/healthz`, `/readyz`).
pub async fn get_path(app: &TestApp, path: &str) -> Answer {
    send(app.http.get(app.url(path))).await
}

pub async fn whoami(app: &TestApp, token: &str) -> Answer {
    send(
        app.http
            .get(app.url("/auth/sessions/whoami"))
            .header("x-session-token", token),
    )
    .await
}

/// Checks that the answer is `status` with this JSON error body.
#[track_caller]
pub fn assert_json_error(answer: &Answer, status: u16, expected: Value) {
    assert_eq!(answer.status, status, "{}", answer.body);
    let content_type = answer.header("content-type");
    assert_eq!(content_type, Some("application/json"), "{}", answer.body);
    assert_eq!(answer.json, expected);
}

/// Sends each `(method, path, status, body)` with one credential header and checks that it
/// answers `status` with exactly this JSON body.
pub async fn assert_routes_answer(
    app: &TestApp,
    credential: (&str, &str),
    cases: impl IntoIterator<Item = (Method, String, u16, Value)>,
) {
    for (method, path, status, expected) in cases {
        let request = app.http.request(method.clone(), app.url(&path));
        let answer = send(request.header(credential.0, credential.1)).await;
        assert_eq!(answer.status, status, "{method} {path}: {}", answer.body);
        assert_eq!(answer.json, expected, "{method} {path}");
    }
}

/// Where a face's error body keeps the HTTP status again and which fields are always strings.
pub struct ErrorShape {
    /// JSON pointer to the error object ("" for the root).
    pub at: &'static str,
    pub status: &'static str,
    pub strings: [&'static str; 2],
}

/// Sends each request and checks that it answers below 500, and in the face's error shape
/// when it fails. Each case is named by its position, method and URL.
pub async fn assert_no_server_error(
    requests: impl IntoIterator<Item = RequestBuilder>,
    shape: &ErrorShape,
) {
    for (i, request) in requests.into_iter().enumerate() {
        let (client, request) = request.build_split();
        let request = request.expect("a valid request");
        let case = format!("request {i}: {} {}", request.method(), request.url());
        let answer = send(RequestBuilder::from_parts(client, request)).await;
        assert!(
            (200..500).contains(&answer.status),
            "{case}: {} {}",
            answer.status,
            answer.body
        );
        if answer.status >= 400 {
            let error = answer.json.pointer(shape.at).unwrap_or(&Value::Null);
            assert_eq!(
                error[shape.status], answer.status,
                "{case}: {}",
                answer.body
            );
            for field in shape.strings {
                assert!(error[field].is_string(), "{case}: {field}: {}", answer.body);
            }
        }
    }
}

/// The ids of a list answer, in order.
pub fn ids(answer: &Answer) -> Vec<String> {
    answer
        .json
        .as_array()
        .unwrap_or_else(|| panic!("a JSON array: {}", answer.body))
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_owned())
        .collect()
}
