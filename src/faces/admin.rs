//! Administration under `/auth/admin/api`: a user's sessions (list, revoke one, revoke all)
//! and the user directory beside them. Callers present `Authorization: Bearer <JWT>` with
//! permissions (`session.read`, `session.delete`, `user.read`, `user.write`); credentials are
//! judged before anything else in the request. Errors are `{"statusCode", "error",
//! "message", "code"}` with a stable `code` to branch on ([`AdminError`]).

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use http::StatusCode;
use http::request::Parts;
use serde::Deserialize;
use serde_json::{Value, json};

use super::FaceState;
use super::admin_json::{rfc3339, session_json};
use super::edges::{self, Bearer, Rejection};
use super::status::{http_status_of, log};
use crate::core::{NewUser, PageRequest, RevokedBy, UserAction};
use crate::domain::{Error, ErrorKind, LoginName, Password, SessionId, UserId, error_ids};

pub use super::admin_factors::{factor_json, passkey_json};
pub use super::admin_json::user_json;

/// The stable `code` of an error.
pub fn code(error: &Error) -> &'static str {
    match (error.kind(), error.id()) {
        (ErrorKind::NotFound, error_ids::USER_NOT_FOUND) => "USER_NOT_FOUND",
        (ErrorKind::NotFound, error_ids::SESSION_NOT_FOUND) => "SESSION_NOT_FOUND",
        (ErrorKind::NotFound, _) => "NOT_FOUND",
        (ErrorKind::AlreadyExists, error_ids::SIGNALS_EXISTS) => "ALREADY_EXISTS",
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

/// An error in the admin shape.
#[derive(Debug)]
pub struct AdminError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl AdminError {
    /// An error sent with a transport status of its own (404, 405, 503, …).
    pub fn with_status(status: StatusCode, error: &Error) -> Self {
        Self {
            status,
            code: code(error),
            message: error.message().to_owned(),
        }
    }

    pub(super) fn validation(message: impl Into<String>) -> Self {
        Self::from(Error::invalid_argument(
            error_ids::ADMIN_INVALID,
            message.into(),
        ))
    }

    /// A refusal of the transport, whose code is its status' name.
    fn transport(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<Error> for AdminError {
    fn from(error: Error) -> Self {
        log(&error);
        let mut admin = Self::with_status(http_status_of(&error), &error);
        if error.kind() == ErrorKind::Unauthenticated {
            admin.message =
                "Admin authentication required: missing or invalid bearer token".to_owned();
        }
        admin
    }
}

impl From<Rejection> for AdminError {
    fn from(rejection: Rejection) -> Self {
        const UNSUPPORTED: StatusCode = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        match rejection {
            Rejection::Path(message) => Self::validation(message),
            Rejection::Query => Self::validation("malformed query string"),
            Rejection::TooLarge(limit) => Self::transport(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("request body is larger than {limit} bytes"),
            ),
            Rejection::Unreadable => {
                Self::validation("request body could not be read or decompressed")
            }
            Rejection::UnsupportedEncoding => Self::transport(
                UNSUPPORTED,
                "UNSUPPORTED_MEDIA_TYPE",
                "unsupported content-encoding: use identity or gzip",
            ),
            Rejection::UnsupportedType(other) => Self::transport(
                UNSUPPORTED,
                "UNSUPPORTED_MEDIA_TYPE",
                format!(
                    "unsupported content type {:?}: use application/json",
                    other.unwrap_or_default()
                ),
            ),
            Rejection::Json(message) => {
                Self::validation(format!("invalid request body: {message}"))
            }
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let body = json!({
            "statusCode": self.status.as_u16(),
            "error": self.status.canonical_reason().unwrap_or("Error"),
            "message": self.message,
            "code": self.code,
        });
        (self.status, axum::Json(body)).into_response()
    }
}

type Path<T> = edges::Path<T, AdminError>;
pub(super) type Query = edges::Query<AdminError>;
type JsonBody<T> = edges::Json<T, AdminError>;
pub(super) type Answer = Result<Response, AdminError>;

/// The caller, authenticated by its bearer JWT.
pub(super) type Admin = edges::Bearer<AdminError>;

/// One path parameter by name, as the client sent it (percent-decoded).
pub(super) async fn path_param(
    parts: &mut Parts,
    state: &FaceState,
    name: &str,
) -> Result<String, AdminError> {
    let params = Path::<Vec<(String, String)>>::from_request_parts(parts, state).await?;
    params
        .0
        .into_iter()
        .find_map(|(key, value)| (key == name).then_some(value))
        .ok_or_else(|| AdminError::validation(format!("missing path parameter {name}")))
}

/// The `{id}` of a user route.
pub(super) struct UserPath(pub(super) UserId);

impl FromRequestParts<FaceState> for UserPath {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &FaceState) -> Result<Self, AdminError> {
        Ok(Self(UserId::parse(path_param(parts, state, "id").await?)?))
    }
}

/// The `{session_id}` of a session route.
struct SessionPath(SessionId);

impl FromRequestParts<FaceState> for SessionPath {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &FaceState) -> Result<Self, AdminError> {
        let id = path_param(parts, state, "session_id").await?;
        Ok(Self(SessionId::parse(id)?))
    }
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, AdminError> {
    value.parse().map_err(|_| {
        AdminError::validation(format!("{name} must be a non-negative integer in range"))
    })
}

async fn list_sessions(
    State(state): State<FaceState>,
    Bearer(principal, ..): Admin,
    UserPath(id): UserPath,
    query: Query,
) -> Answer {
    let mut page = PageRequest::default();
    let mut active = None;
    for (key, value) in query.0 {
        match key.as_str() {
            "active" => {
                active = Some(match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(AdminError::validation("active must be true or false")),
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
        .await?;
    let now = core.now();
    let data: Vec<Value> = result
        .sessions
        .iter()
        .map(|s| session_json(&s.session, now))
        .collect();
    let body = json!({ "data": data, "total": result.total, "nextPageToken": result.next_token });
    Ok(axum::Json(body).into_response())
}

async fn revoke_session(
    State(state): State<FaceState>,
    Bearer(principal, ..): Admin,
    UserPath(id): UserPath,
    SessionPath(session_id): SessionPath,
) -> Answer {
    let core = state.api.core();
    let session = core
        .admin_revoke_session(&principal, &id, &session_id)
        .await?;
    let body = json!({
        "message": "Session revoked",
        "sessionId": session.id.as_str(),
        "revokedAt": rfc3339(session.terminated_at),
    });
    Ok(axum::Json(body).into_response())
}

async fn revoke_all(
    State(state): State<FaceState>,
    Bearer(principal, ..): Admin,
    UserPath(id): UserPath,
) -> Answer {
    let count = state
        .api
        .core()
        .admin_revoke_user_sessions(&principal, &id, None, RevokedBy::Admin)
        .await?;
    Ok(axum::Json(json!({ "message": "All sessions revoked", "count": count })).into_response())
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

async fn create_user(
    State(state): State<FaceState>,
    Bearer(principal, ..): Admin,
    body: JsonBody<CreateUserBody>,
) -> Answer {
    let body = body.0;
    let new = NewUser {
        login_name: LoginName::parse(body.login_name)?,
        display_name: body.display_name,
        organization_id: body.organization_id,
        password: Some(Password::parse_new(body.password)?),
    };
    let user = state.api.core().create_user(&principal, new).await?;
    Ok((StatusCode::CREATED, axum::Json(user_json(&user))).into_response())
}

async fn get_user(
    State(state): State<FaceState>,
    Bearer(principal, ..): Admin,
    UserPath(id): UserPath,
) -> Answer {
    let user = state.api.core().get_user(&principal, &id).await?;
    Ok(axum::Json(user_json(&user)).into_response())
}

async fn list_users(
    State(state): State<FaceState>,
    Bearer(principal, ..): Admin,
    query: Query,
) -> Answer {
    let mut login_name = None;
    let (mut offset, mut limit) = (0u64, 100u32);
    for (key, value) in query.0 {
        match key.as_str() {
            "loginName" | "login_name" => login_name = Some(LoginName::parse(value)?),
            "offset" => offset = number("offset", &value)?,
            "limit" => limit = number("limit", &value)?,
            _ => {}
        }
    }
    let core = state.api.core();
    let (users, total) = core
        .list_users(&principal, login_name, offset, limit)
        .await?;
    let data: Vec<Value> = users.iter().map(user_json).collect();
    Ok(axum::Json(json!({ "data": data, "total": total })).into_response())
}

/// A change of a user's state, one marker type per route.
trait StateChange {
    const ACTION: UserAction;
}

struct Lock;
struct Deactivate;
struct Reactivate;

impl StateChange for Lock {
    const ACTION: UserAction = UserAction::Lock;
}

impl StateChange for Deactivate {
    const ACTION: UserAction = UserAction::Deactivate;
}

impl StateChange for Reactivate {
    const ACTION: UserAction = UserAction::Reactivate;
}

async fn change_state<C: StateChange>(
    State(state): State<FaceState>,
    Bearer(principal, ..): Admin,
    UserPath(id): UserPath,
) -> Answer {
    let core = state.api.core();
    let (user, revoked) = core.change_user_state(&principal, &id, C::ACTION).await?;
    let body = json!({ "user": user_json(&user), "revokedSessions": revoked });
    Ok(axum::Json(body).into_response())
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
    Bearer(principal, ..): Admin,
    UserPath(id): UserPath,
    body: JsonBody<PasswordBody>,
) -> Answer {
    let body = body.0;
    let password = Password::parse_new(body.password)?;
    let core = state.api.core();
    let (user, revoked) = core
        .set_password(&principal, &id, &password, body.revoke_sessions)
        .await?;
    let body = json!({ "message": "Password changed", "user": user_json(&user), "revokedSessions": revoked });
    Ok(axum::Json(body).into_response())
}

pub fn routes() -> Router<FaceState> {
    const BASE: &str = "/auth/admin/api/users";
    Router::new()
        .route(BASE, get(list_users).post(create_user))
        .route(&format!("{BASE}/{{id}}"), get(get_user))
        .route(&format!("{BASE}/{{id}}/lock"), post(change_state::<Lock>))
        .route(
            &format!("{BASE}/{{id}}/deactivate"),
            post(change_state::<Deactivate>),
        )
        .route(
            &format!("{BASE}/{{id}}/reactivate"),
            post(change_state::<Reactivate>),
        )
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
            (
                Error::failed_precondition(error_ids::FEED_CURSOR_EXPIRED, "m"),
                "FAILED_PRECONDITION",
                410,
            ),
        ];
        for (error, expected, status) in cases {
            assert_eq!(code(&error), expected);
            assert_eq!(http_status_of(&error).as_u16(), status);
        }
    }
}
