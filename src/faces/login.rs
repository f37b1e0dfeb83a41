//! Sign-in without a bearer JWT, in the shape of Ory Kratos' native ("API") login flow, so
//! a browser page or a Kratos SDK can get a session token with a login name and a password:
//!
//! - `GET /auth/self-service/login/api`: a new login flow (`{id, type:"api", expires_at,
//!   issued_at, request_url, state, ui:{action, method, nodes, …}}`);
//! - `POST /auth/self-service/login?flow=<id>` with
//!   `{"method":"password","identifier":…,"password":…}`: 200 `{session_token, session}`.
//!   The session records the request's `User-Agent` and the address of the connection's peer
//!   (behind a proxy, the proxy's).
//!
//! Wrong credentials (an unknown login name or a wrong password alike) answer 400 with the
//! flow and Kratos' message 4000006; an expired flow 410, an unknown one 404, and every other
//! refusal (lockout, a busy user, a malformed body) is Kratos' `{"error":{…}}`. The checks
//! are the core's ([`crate::core::Core::login_with_password`]). Only the subset of Kratos'
//! flow documented here is offered: no browser flows, no CSRF cookie, no `refresh` or `aal`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};

use super::FaceState;
use super::edges;
use super::self_service::{KratosError, session_json};
use crate::core::LoginFlow;
use crate::domain::{Error, ErrorKind, UserAgent, error_ids};

type Json<T> = edges::Json<T, KratosError>;
type Query = edges::Query<KratosError>;

const FLOW_PATH: &str = "/auth/self-service/login/api";
const SUBMIT_PATH: &str = "/auth/self-service/login";
/// The longest `User-Agent` kept with a session opened by a login, in characters.
const USER_AGENT_CHARS: usize = 512;

/// Kratos' message for wrong credentials.
const CREDENTIALS_INVALID: (u32, &str) = (
    4_000_006,
    "The provided credentials are invalid, check for spelling mistakes in your password or \
     username, email address, or phone number.",
);

fn node(group: &str, attributes: Value, label: Option<(u32, &str)>) -> Value {
    let meta = match label {
        Some((id, text)) => json!({ "label": { "id": id, "text": text, "type": "info" } }),
        None => json!({}),
    };
    let mut attributes = attributes;
    attributes["node_type"] = json!("input");
    attributes["disabled"] = json!(false);
    json!({ "type": "input", "group": group, "attributes": attributes, "messages": [], "meta": meta })
}

/// A flow in Kratos' `loginFlow` shape; `error` is a message shown on the whole form.
fn flow_json(flow: &LoginFlow, identifier: &str, error: Option<(u32, &str)>) -> Value {
    let messages: Vec<Value> = error
        .map(|(id, text)| json!({ "id": id, "text": text, "type": "error" }))
        .into_iter()
        .collect();
    json!({
        "id": flow.id,
        "type": "api",
        "expires_at": flow.expires_at.to_rfc3339(),
        "issued_at": flow.issued_at.to_rfc3339(),
        "request_url": FLOW_PATH,
        "state": "choose_method",
        "refresh": false,
        "requested_aal": "aal1",
        "ui": {
            "action": format!("{SUBMIT_PATH}?flow={}", flow.id),
            "method": "POST",
            "messages": messages,
            "nodes": [
                node("default", json!({ "name": "csrf_token", "type": "hidden", "value": "", "required": true }), None),
                node("default", json!({ "name": "identifier", "type": "text", "value": identifier, "required": true, "autocomplete": "username" }), Some((1_070_004, "ID"))),
                node("password", json!({ "name": "password", "type": "password", "required": true, "autocomplete": "current-password" }), Some((1_070_001, "Password"))),
                node("password", json!({ "name": "method", "type": "submit", "value": "password" }), Some((1_010_001, "Sign in"))),
            ],
        },
    })
}

async fn create_flow(State(state): State<FaceState>) -> Result<Response, KratosError> {
    let flow = state.api.core().new_login_flow().await?;
    Ok(axum::Json(flow_json(&flow, "", None)).into_response())
}

#[derive(Deserialize)]
struct Submit {
    method: String,
    #[serde(default, alias = "password_identifier")]
    identifier: String,
    #[serde(default)]
    password: String,
}

/// The flow of the `flow` query parameter: 404 when unknown or missing, 410 once expired.
async fn flow_of(state: &FaceState, query: &[(String, String)]) -> Result<LoginFlow, KratosError> {
    let id = query
        .iter()
        .find(|(k, _)| k == "flow")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    match state.api.core().login_flow(id).await {
        Ok(flow) => Ok(flow),
        Err(e) if e.id() == error_ids::LOGIN_FLOW_EXPIRED => {
            Err(KratosError::new(StatusCode::GONE, e.id(), e.message()))
        }
        Err(e) => Err(e.into()),
    }
}

/// The `User-Agent` of the request and the peer's address, as the session's user agent.
fn user_agent(headers: &HeaderMap, peer: Option<SocketAddr>) -> UserAgent {
    let mut agent = UserAgent {
        ip: peer.map(|p| p.ip().to_canonical().to_string()),
        ..UserAgent::default()
    };
    if let Some(value) = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        let value: String = value.chars().take(USER_AGENT_CHARS).collect();
        agent.header.insert(String::from("user-agent"), vec![value]);
    }
    agent
}

/// Whether a failed login is a credentials mismatch, answered alike whichever part was wrong.
fn wrong_credentials(kind: ErrorKind, id: &str) -> bool {
    [
        error_ids::USER_NOT_FOUND,
        error_ids::PASSWORD_INVALID,
        error_ids::PASSWORD_NOT_SET,
        error_ids::PASSWORD_LENGTH,
        error_ids::LOGIN_NAME_INVALID,
    ]
    .contains(&id)
        && matches!(kind, ErrorKind::NotFound | ErrorKind::InvalidArgument)
}

async fn submit(
    State(state): State<FaceState>,
    query: Query,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Json<Submit>,
) -> Result<Response, KratosError> {
    let flow = flow_of(&state, &query.0).await?;
    let body = body.0;
    if body.method != "password" {
        return Err(KratosError::new(
            StatusCode::BAD_REQUEST,
            error_ids::LOGIN_METHOD_UNSUPPORTED,
            format!(
                "login method {:?} is not supported: use \"password\"",
                body.method
            ),
        ));
    }
    let core = state.api.core();
    let identifier = body.identifier.clone();
    let change = match core
        .login_with_password(
            body.identifier,
            body.password,
            user_agent(&headers, peer.map(|Extension(ConnectInfo(p))| p)),
        )
        .await
    {
        Ok(change) => change,
        Err(e) if wrong_credentials(e.kind(), e.id()) => {
            super::status::log(&e);
            let shown: String = identifier.chars().take(200).collect();
            let flow = flow_json(&flow, &shown, Some(CREDENTIALS_INVALID));
            return Ok((StatusCode::BAD_REQUEST, axum::Json(flow)).into_response());
        }
        Err(e) => return Err(e.into()),
    };
    let token = change.token.ok_or_else(|| {
        Error::internal(error_ids::LOGIN_TOKEN_MISSING, "the login issued no token")
    })?;
    let current = core.current_session(&token).await?;
    let session = session_json(&current.session, &current.user, core.now());
    Ok(axum::Json(json!({ "session_token": token.expose(), "session": session })).into_response())
}

pub fn routes() -> Router<FaceState> {
    Router::new()
        .route(FLOW_PATH, get(create_flow))
        .route(SUBMIT_PATH, post(submit))
}
