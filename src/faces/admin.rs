//! Administration under `/auth/admin/api`: a user's sessions (list, revoke one, revoke all)
//! and the user directory beside them. Callers present `Authorization: Bearer <JWT>` with
//! permissions (`session.read`, `session.delete`, `user.read`, `user.write`). Errors are
//! `{"statusCode", "error", "message", "code"}` with a stable `code` to branch on.

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::FaceState;
use super::body::{self, BodyError};
use super::status::{grpc_code, http_status, log};
use crate::core::{NewUser, PageRequest, UserAction};
use crate::domain::{
    Error, ErrorKind, LoginName, Password, Principal, Session, SessionId, Time, User, UserId,
    error_ids,
};

/// The stable `code` of an error.
pub fn code(error: &Error) -> &'static str {
    match (error.kind(), error.id()) {
        (ErrorKind::NotFound, error_ids::USER_NOT_FOUND) => "USER_NOT_FOUND",
        (ErrorKind::NotFound, error_ids::SESSION_NOT_FOUND) => "SESSION_NOT_FOUND",
        (ErrorKind::NotFound, _) => "NOT_FOUND",
        (ErrorKind::InvalidArgument, _) => "VALIDATION_FAILED",
        (ErrorKind::FailedPrecondition, _) => "FAILED_PRECONDITION",
        (ErrorKind::Unauthenticated, _) => "ADMIN_AUTH_REQUIRED",
        (ErrorKind::PermissionDenied, _) => "FORBIDDEN",
        (ErrorKind::AlreadyExists, _) => "USER_EXISTS",
        (ErrorKind::ResourceExhausted, _) => "TOO_MANY_REQUESTS",
        (ErrorKind::Unavailable, _) => "SERVICE_UNAVAILABLE",
        (ErrorKind::DeadlineExceeded, _) => "TIMEOUT",
        (ErrorKind::Unimplemented, _) => "METHOD_NOT_ALLOWED",
        (ErrorKind::Internal, _) => "INTERNAL_ERROR",
    }
}

pub fn error_response(error: &Error) -> Response {
    log(error);
    let message = match error.kind() {
        ErrorKind::Unauthenticated => {
            "Admin authentication required: missing or invalid bearer token"
        }
        _ => error.message(),
    };
    with_status(http_status(grpc_code(error.kind())), code(error), message)
}

/// A rejection with an explicit status and code.
pub fn with_status(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({
        "statusCode": status.as_u16(),
        "error": status.canonical_reason().unwrap_or("Error"),
        "message": message,
        "code": code,
    });
    (status, axum::Json(body)).into_response()
}

fn rfc3339(t: Option<Time>) -> Value {
    t.map_or(Value::Null, |t| Value::String(t.to_rfc3339()))
}

fn session_json(s: &Session, now: Time) -> Value {
    let ua = &s.user_agent;
    let agent = ua
        .header
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("user-agent"))
        .and_then(|(_, v)| v.first().cloned());
    json!({
        "id": s.id.as_str(),
        "userId": s.user_id().map(UserId::as_str),
        "deviceName": ua.description.clone().unwrap_or_else(|| "Unknown device".to_owned()),
        "userAgent": agent.or_else(|| ua.description.clone()),
        "ipAddress": ua.ip,
        "createdAt": rfc3339(Some(s.creation_date)),
        "lastActive": rfc3339(Some(s.change_date)),
        "expiresAt": rfc3339(s.expiration),
        "active": s.is_active(now),
        "revokedAt": rfc3339(s.terminated_at),
    })
}

pub fn user_json(u: &User) -> Value {
    json!({
        "id": u.id.as_str(),
        "loginName": u.login_name.as_str(),
        "displayName": u.display_name,
        "organizationId": u.organization_id,
        "state": u.state.as_str(),
        "failedPasswordAttempts": u.failed_password_attempts,
        "createdAt": rfc3339(Some(u.created_at)),
        "updatedAt": rfc3339(Some(u.updated_at)),
    })
}

async fn principal(state: &FaceState, headers: &HeaderMap) -> Result<Principal, Response> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    state
        .api
        .authenticate(authorization)
        .await
        .map_err(|e| error_response(&e))
}

/// Path parameters, taken as they come so that a bad one (e.g. not UTF-8 once decoded) is
/// judged after authentication and answered in this face's shape.
type PathParam<T> = Result<Path<T>, PathRejection>;

fn path_value<T>(path: PathParam<T>) -> Result<T, Response> {
    path.map(|Path(value)| value)
        .map_err(|rejection| validation(rejection.body_text()))
}

fn user_id(raw: String) -> Result<UserId, Response> {
    UserId::parse(raw).map_err(|e| error_response(&e))
}

fn validation(message: impl Into<String>) -> Response {
    error_response(&Error::invalid_argument(
        error_ids::ADMIN_INVALID,
        message.into(),
    ))
}

/// Decodes a JSON body into `T`, with this face's error shape for every failure.
async fn json_body<T: DeserializeOwned>(
    state: &FaceState,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, Response> {
    let bytes = match body::read_decoded(body, headers, state.body_limit).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => {
            return Err(with_status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                &format!("request body is larger than {} bytes", state.body_limit),
            ));
        }
        Err(BodyError::Unreadable) => {
            return Err(validation("request body could not be read or decompressed"));
        }
        Err(BodyError::UnsupportedEncoding) => {
            return Err(with_status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "unsupported content-encoding: use identity or gzip",
            ));
        }
    };
    match body::media_type(headers).as_deref() {
        None | Some("application/json") => {}
        Some(other) => {
            return Err(with_status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                &format!("unsupported content type {other:?}: use application/json"),
            ));
        }
    }

    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        &bytes[..]
    };
    serde_json::from_slice(bytes).map_err(|e| validation(format!("invalid request body: {e}")))
}

fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, Response> {
    serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|_| validation("malformed query string"))
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, Response> {
    value
        .parse()
        .map_err(|_| validation(format!("{name} must be a non-negative integer in range")))
}

async fn list_sessions(
    State(state): State<FaceState>,
    id: PathParam<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let run = async {
        let principal = principal(&state, &headers).await?;
        let id = user_id(path_value(id)?)?;
        let mut page = PageRequest::default();
        let mut active = None;
        for (key, value) in query_pairs(query.as_deref())? {
            match key.as_str() {
                "active" => {
                    active = Some(match value.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(validation("active must be true or false")),
                    })
                }
                "pageSize" | "page_size" => page.size = Some(number("pageSize", &value)?),
                "pageToken" | "page_token" => page.token = Some(value),
                _ => {}
            }
        }
        let core = state.api.core();
        let result = core
            .admin_user_sessions(&principal, &id, active, &page)
            .await
            .map_err(|e| error_response(&e))?;
        let now = core.now();
        let data: Vec<Value> = result
            .sessions
            .iter()
            .map(|s| session_json(s, now))
            .collect();
        Ok(axum::Json(
            json!({ "data": data, "total": result.total, "nextPageToken": result.next_token }),
        )
        .into_response())
    };
    run.await.unwrap_or_else(|response| response)
}

async fn revoke_session(
    State(state): State<FaceState>,
    ids: PathParam<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let run = async {
        let principal = principal(&state, &headers).await?;
        let (id, session_id) = path_value(ids)?;
        let id = user_id(id)?;
        let session_id = SessionId::parse(session_id).map_err(|e| error_response(&e))?;
        let session = state
            .api
            .core()
            .admin_revoke_session(&principal, &id, &session_id)
            .await
            .map_err(|e| error_response(&e))?;
        Ok(axum::Json(json!({
            "message": "Session revoked",
            "sessionId": session.id.as_str(),
            "revokedAt": rfc3339(session.terminated_at),
        }))
        .into_response())
    };
    run.await.unwrap_or_else(|response| response)
}

async fn revoke_all(
    State(state): State<FaceState>,
    id: PathParam<String>,
    headers: HeaderMap,
) -> Response {
    let run = async {
        let principal = principal(&state, &headers).await?;
        let id = user_id(path_value(id)?)?;
        let count = state
            .api
            .core()
            .admin_revoke_user_sessions(&principal, &id)
            .await
            .map_err(|e| error_response(&e))?;
        Ok(
            axum::Json(json!({ "message": "All sessions revoked", "count": count }))
                .into_response(),
        )
    };
    run.await.unwrap_or_else(|response| response)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateUserBody {
    login_name: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    organization_id: Option<String>,
    password: String,
}

async fn create_user(State(state): State<FaceState>, headers: HeaderMap, body: Body) -> Response {
    let run = async {
        let principal = principal(&state, &headers).await?;
        let body: CreateUserBody = json_body(&state, &headers, body).await?;
        let new = NewUser {
            login_name: LoginName::parse(body.login_name).map_err(|e| error_response(&e))?,
            display_name: body.display_name,
            organization_id: body.organization_id,
            password: Some(Password::parse_new(body.password).map_err(|e| error_response(&e))?),
        };
        let user = state
            .api
            .core()
            .create_user(&principal, new)
            .await
            .map_err(|e| error_response(&e))?;
        Ok((StatusCode::CREATED, axum::Json(user_json(&user))).into_response())
    };
    run.await.unwrap_or_else(|response| response)
}

async fn get_user(
    State(state): State<FaceState>,
    id: PathParam<String>,
    headers: HeaderMap,
) -> Response {
    let run = async {
        let principal = principal(&state, &headers).await?;
        let id = user_id(path_value(id)?)?;
        let user = state
            .api
            .core()
            .get_user(&principal, &id)
            .await
            .map_err(|e| error_response(&e))?;
        Ok(axum::Json(user_json(&user)).into_response())
    };
    run.await.unwrap_or_else(|response| response)
}

async fn list_users(
    State(state): State<FaceState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let run = async {
        let principal = principal(&state, &headers).await?;
        let mut login_name = None;
        let (mut offset, mut limit) = (0u64, 100u32);
        for (key, value) in query_pairs(query.as_deref())? {
            match key.as_str() {
                "loginName" | "login_name" => {
                    login_name = Some(LoginName::parse(value).map_err(|e| error_response(&e))?)
                }
                "offset" => offset = number("offset", &value)?,
                "limit" => limit = number("limit", &value)?,
                _ => {}
            }
        }
        let (users, total) = state
            .api
            .core()
            .list_users(&principal, login_name, offset, limit)
            .await
            .map_err(|e| error_response(&e))?;
        let data: Vec<Value> = users.iter().map(user_json).collect();
        Ok(axum::Json(json!({ "data": data, "total": total })).into_response())
    };
    run.await.unwrap_or_else(|response| response)
}

async fn change_state(
    state: FaceState,
    id: PathParam<String>,
    headers: HeaderMap,
    action: UserAction,
) -> Response {
    let run = async {
        let principal = principal(&state, &headers).await?;
        let id = user_id(path_value(id)?)?;
        let (user, revoked) = state
            .api
            .core()
            .change_user_state(&principal, &id, action)
            .await
            .map_err(|e| error_response(&e))?;
        Ok(
            axum::Json(json!({ "user": user_json(&user), "revokedSessions": revoked }))
                .into_response(),
        )
    };
    run.await.unwrap_or_else(|response| response)
}

async fn lock(
    State(state): State<FaceState>,
    id: PathParam<String>,
    headers: HeaderMap,
) -> Response {
    change_state(state, id, headers, UserAction::Lock).await
}

async fn deactivate(
    State(state): State<FaceState>,
    id: PathParam<String>,
    headers: HeaderMap,
) -> Response {
    change_state(state, id, headers, UserAction::Deactivate).await
}

async fn reactivate(
    State(state): State<FaceState>,
    id: PathParam<String>,
    headers: HeaderMap,
) -> Response {
    change_state(state, id, headers, UserAction::Reactivate).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PasswordBody {
    password: String,
    #[serde(default = "default_true")]
    revoke_sessions: bool,
}

fn default_true() -> bool {
    true
}

async fn set_password(
    State(state): State<FaceState>,
    id: PathParam<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let run = async {
        let principal = principal(&state, &headers).await?;
        let id = user_id(path_value(id)?)?;
        let body: PasswordBody = json_body(&state, &headers, body).await?;
        let password = Password::parse_new(body.password).map_err(|e| error_response(&e))?;
        let (user, revoked) = state
            .api
            .core()
            .set_password(&principal, &id, &password, body.revoke_sessions)
            .await
            .map_err(|e| error_response(&e))?;
        Ok(axum::Json(json!({ "message": "Password changed", "user": user_json(&user), "revokedSessions": revoked }))
            .into_response())
    };
    run.await.unwrap_or_else(|response| response)
}

pub fn routes() -> Router<FaceState> {
    const BASE: &str = "/auth/admin/api/users";
    Router::new()
        .route(BASE, get(list_users).post(create_user))
        .route(&format!("{BASE}/{{id}}"), get(get_user))
        .route(&format!("{BASE}/{{id}}/lock"), post(lock))
        .route(&format!("{BASE}/{{id}}/deactivate"), post(deactivate))
        .route(&format!("{BASE}/{{id}}/reactivate"), post(reactivate))
        .route(&format!("{BASE}/{{id}}/password"), put(set_password))
        .route(
            &format!("{BASE}/{{id}}/sessions"),
            get(list_sessions).delete(revoke_all),
        )
        .route(
            &format!("{BASE}/{{id}}/sessions/{{session_id}}"),
            axum::routing::delete(revoke_session),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UserState;

    #[test]
    fn codes_follow_the_documented_table() {
        let cases = [
            (Error::invalid_argument("x", "m"), "VALIDATION_FAILED", 400),
            (Error::unauthenticated("x", "m"), "ADMIN_AUTH_REQUIRED", 401),
            (Error::permission_denied("x", "m"), "FORBIDDEN", 403),
            (
                Error::not_found(error_ids::USER_NOT_FOUND, "m"),
                "USER_NOT_FOUND",
                404,
            ),
            (
                Error::not_found(error_ids::SESSION_NOT_FOUND, "m"),
                "SESSION_NOT_FOUND",
                404,
            ),
            (
                Error::new(ErrorKind::AlreadyExists, error_ids::USER_EXISTS, "m"),
                "USER_EXISTS",
                409,
            ),
        ];
        for (error, expected, status) in cases {
            assert_eq!(code(&error), expected);
            assert_eq!(http_status(grpc_code(error.kind())).as_u16(), status);
        }
    }

    #[test]
    fn user_json_never_contains_the_password_hash() {
        let user = User {
            id: UserId::from_trusted("1".into()),
            login_name: LoginName::from_trusted("alice".into()),
            display_name: "Alice".into(),
            organization_id: "org".into(),
            state: UserState::Active,
            password_hash: Some("$argon2id$secret".into()),
            failed_password_attempts: 0,
            created_at: Time::from_unix_micros(0),
            updated_at: Time::from_unix_micros(0),
            version: 1,
        };
        assert!(!user_json(&user).to_string().contains("argon2id"));
    }
}
