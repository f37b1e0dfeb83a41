//! The shapes of the self-service face, as Ory Kratos' public API has them: its error
//! (`{"error":{code,status,id,reason,message,request}}`, [`KratosError`]) and its session.

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::edges::Rejection;
use super::status::{http_status_of, log};
use crate::domain::error_ids;
use crate::domain::{Error, Session, Time, User, UserState};

/// An error in Kratos' shape. `request` is the client's `X-Request-Id`, filled in by the
/// face's middleware (see [`super::self_service`]).
#[derive(Clone, Debug)]
pub struct KratosError {
    status: StatusCode,
    id: &'static str,
    reason: String,
    pub(super) request: Option<String>,
}

impl KratosError {
    pub fn new(status: StatusCode, id: &'static str, reason: impl Into<String>) -> Self {
        Self {
            status,
            id,
            reason: reason.into(),
            request: None,
        }
    }

    /// An error sent with a transport status of its own (413, 405, 503, …).
    pub fn with_status(status: StatusCode, error: &Error) -> Self {
        Self::new(status, error.id(), error.message())
    }

    /// With the request id the client sent, if any.
    pub fn for_request(mut self, headers: &HeaderMap) -> Self {
        self.request = headers
            .get(super::edges::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self
    }
}

impl From<Error> for KratosError {
    fn from(error: Error) -> Self {
        log(&error);
        Self::with_status(http_status_of(&error), &error)
    }
}

impl From<Rejection> for KratosError {
    fn from(rejection: Rejection) -> Self {
        let bad = StatusCode::BAD_REQUEST;
        let unsupported = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        match rejection {
            // The one path parameter of this face is a session id.
            Rejection::Path(reason) => Self::new(bad, error_ids::SESSION_ID_INVALID, reason),
            Rejection::Query => Self::new(bad, error_ids::PAGE_INVALID, "malformed query string"),
            Rejection::TooLarge(limit) => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                error_ids::HTTP_REJECTED,
                format!("request body is larger than {limit} bytes"),
            ),
            Rejection::Unreadable => Self::new(
                bad,
                error_ids::HTTP_REJECTED,
                "request body could not be read or decompressed",
            ),
            Rejection::UnsupportedEncoding => Self::new(
                unsupported,
                error_ids::HTTP_REJECTED,
                "unsupported content-encoding: use identity or gzip",
            ),
            Rejection::UnsupportedType(other) => Self::new(
                unsupported,
                error_ids::HTTP_REJECTED,
                format!(
                    "unsupported content type {:?}: use application/json",
                    other.unwrap_or_default()
                ),
            ),
            Rejection::Json(reason) => Self::new(bad, error_ids::HTTP_REJECTED, reason),
        }
    }
}

fn generic_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "The request was malformed or contained invalid parameters",
        401 => "The request could not be authorized",
        403 => "The requested action was forbidden",
        404 => "The requested resource could not be found",
        405 => "The requested method is not allowed on this resource",
        409 => "The resource could not be created due to a conflict",
        413 => "The request body is too large",
        415 => "The request's content type is not supported",
        429 => "Too many requests",
        503 => "The service is temporarily unavailable",
        _ => "An internal server error occurred, please contact the system administrator",
    }
}

impl IntoResponse for KratosError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "code": self.status.as_u16(),
            "status": self.status.canonical_reason().unwrap_or("Error"),
            "id": self.id,
            "reason": self.reason,
            "message": generic_message(self.status),
        });
        if let Some(request) = &self.request {
            body["request"] = Value::String(request.clone());
        }
        let mut response = (self.status, axum::Json(json!({ "error": body }))).into_response();
        if self.request.is_none() {
            // For the face's middleware, which knows the request.
            response.extensions_mut().insert(self);
        }
        response
    }
}

fn rfc3339(t: Time) -> Value {
    Value::String(t.to_rfc3339())
}

/// Which parts of a session an admin read expands (`expand=identity`, `expand=devices`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expand {
    pub identity: bool,
    pub devices: bool,
}

impl Expand {
    pub const ALL: Expand = Expand {
        identity: true,
        devices: true,
    };
}

/// A session in Kratos' `session` shape, identity and devices expanded.
pub fn session_json(session: &Session, user: &User, now: Time) -> Value {
    expanded_session_json(session, Some(user), now, Expand::ALL)
}

/// A session in Kratos' `session` shape: `identity` is null unless expanded (or without a
/// user), `devices` empty unless expanded. `active` also needs the user to be active.
pub fn expanded_session_json(
    session: &Session,
    user: Option<&User>,
    now: Time,
    expand: Expand,
) -> Value {
    let mut methods = Vec::new();
    if let Some(u) = &session.factors.user {
        methods.push(json!({ "method": "identifier_first", "aal": "aal0", "completed_at": rfc3339(u.verified_at) }));
    }
    // Each verified factor is one method (a code by SMS or email is Kratos' `code`, a passkey
    // its `webauthn`). The
    // assurance level is aal2 only with the password and a second factor verified, aal1 with
    // any one factor, aal0 with none.
    let factors = &session.factors;
    let code = factors
        .otp_sms_verified_at
        .max(factors.otp_email_verified_at);
    let second = [
        ("totp", factors.totp_verified_at),
        ("lookup_secret", factors.recovery_code_verified_at),
        ("code", code),
        ("webauthn", factors.web_auth_n.map(|w| w.verified_at)),
    ];
    if let Some(at) = factors.password_verified_at {
        methods.push(json!({ "method": "password", "aal": "aal1", "completed_at": rfc3339(at) }));
    }
    let mut second_verified = false;
    for (method, at) in second {
        if let Some(at) = at {
            second_verified = true;
            methods.push(json!({ "method": method, "aal": "aal2", "completed_at": rfc3339(at) }));
        }
    }
    let aal = match (factors.password_verified_at.is_some(), second_verified) {
        (true, true) => "aal2",
        (false, false) => "aal0",
        _ => "aal1",
    };
    let authenticated_at = [
        factors.user.as_ref().map(|u| u.verified_at),
        factors.password_verified_at,
        factors.totp_verified_at,
        factors.recovery_code_verified_at,
        factors.web_auth_n.map(|w| w.verified_at),
        code,
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(session.creation_date);
    let ua = &session.user_agent;
    let devices: Vec<Value> = if ua.is_empty() || !expand.devices {
        Vec::new()
    } else {
        // Kratos' `user_agent` is the User-Agent header; the description stands in without one.
        let agent = ua
            .header
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("user-agent"))
            .and_then(|(_, v)| v.first().cloned())
            .or_else(|| ua.description.clone())
            .unwrap_or_default();
        vec![json!({ "id": session.id.as_str(), "ip_address": ua.ip, "user_agent": agent })]
    };
    let user_active = user.is_none_or(|u| u.state == UserState::Active);
    let identity = match user {
        Some(user) if expand.identity => identity_json(user),
        _ => Value::Null,
    };
    let mut body = json!({
        "id": session.id.as_str(),
        "active": session.is_active(now) && user_active,
        "authenticated_at": rfc3339(authenticated_at),
        "issued_at": rfc3339(session.creation_date),
        "authenticator_assurance_level": aal,
        "authentication_methods": methods,
        "identity": identity,
        "devices": devices,
    });
    if let Some(expiration) = session.expiration {
        body["expires_at"] = rfc3339(expiration);
    }
    body
}

/// A user as Kratos' `identity`.
fn identity_json(user: &User) -> Value {
    json!({
        "id": user.id.as_str(),
        "schema_id": "default",
        "schema_url": "",
        "state": if user.state == UserState::Inactive { "inactive" } else { "active" },
        "traits": { "login_name": user.login_name.as_str(), "display_name": user.display_name },
        "organization_id": user.organization_id,
        "created_at": rfc3339(user.created_at),
        "updated_at": rfc3339(user.updated_at),
    })
}
