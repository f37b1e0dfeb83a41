//! Self-service session endpoints under `/auth/sessions`, shaped like Ory Kratos' public API
//! so its SDKs work with a base path of `…/auth`. The caller is identified by its own session
//! token (`X-Session-Token`, the session cookie, or `Authorization: Bearer`), the same token
//! CreateSession issued. Errors are Kratos' `{"error":{code,status,reason,message,…}}`.

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::FaceState;
use super::status::{grpc_code, http_status, log};
use crate::core::{CurrentSession, PageRequest};
use crate::domain::error_ids;
use crate::domain::{Error, Session, SessionId, SessionToken, Time, User, UserState};

/// Where the caller's session token was found, in Kratos' order of precedence.
fn session_token(headers: &HeaderMap, cookie_name: &str) -> Option<SessionToken> {
    if let Some(token) = headers.get("x-session-token").and_then(|v| v.to_str().ok()) {
        return Some(SessionToken::from_client(token.trim()));
    }
    for cookies in headers.get_all(header::COOKIE) {
        let Ok(cookies) = cookies.to_str() else {
            continue;
        };
        for pair in cookies.split(';') {
            if let Some((name, value)) = pair.trim().split_once('=')
                && name == cookie_name
            {
                return Some(SessionToken::from_client(value.trim_matches('"')));
            }
        }
    }
    let authorization = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    crate::auth::bearer(authorization).map(SessionToken::from_client)
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

/// The error body of this face.
pub fn error_response(error: &Error, headers: &HeaderMap) -> Response {
    log(error);
    let status = http_status(grpc_code(error.kind()));
    with_status(status, error.id(), error.message(), headers)
}

/// A rejection with an explicit status (transport-level: 404, 405, 413, …).
pub fn with_status(status: StatusCode, id: &str, reason: &str, headers: &HeaderMap) -> Response {
    let mut body = json!({
        "code": status.as_u16(),
        "status": status.canonical_reason().unwrap_or("Error"),
        "id": id,
        "reason": reason,
        "message": generic_message(status),
    });
    if let Some(request) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
        body["request"] = Value::String(request.to_owned());
    }
    (status, axum::Json(json!({ "error": body }))).into_response()
}

fn rfc3339(t: Time) -> Value {
    Value::String(t.to_rfc3339())
}

/// A session in Kratos' `session` shape.
pub fn session_json(session: &Session, user: &User, now: Time) -> Value {
    let mut methods = Vec::new();
    if let Some(u) = &session.factors.user {
        methods.push(json!({ "method": "identifier_first", "aal": "aal0", "completed_at": rfc3339(u.verified_at) }));
    }
    if let Some(at) = session.factors.password_verified_at {
        methods.push(json!({ "method": "password", "aal": "aal1", "completed_at": rfc3339(at) }));
    }
    let aal = if session.factors.password_verified_at.is_some() {
        "aal1"
    } else {
        "aal0"
    };
    let authenticated_at = [
        session.factors.user.as_ref().map(|u| u.verified_at),
        session.factors.password_verified_at,
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(session.creation_date);
    let ua = &session.user_agent;
    let devices: Vec<Value> = if ua.is_empty() {
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
    let mut body = json!({
        "id": session.id.as_str(),
        "active": session.is_active(now) && user.state == UserState::Active,
        "authenticated_at": rfc3339(authenticated_at),
        "issued_at": rfc3339(session.creation_date),
        "authenticator_assurance_level": aal,
        "authentication_methods": methods,
        "identity": {
            "id": user.id.as_str(),
            "schema_id": "default",
            "schema_url": "",
            "state": if user.state == UserState::Inactive { "inactive" } else { "active" },
            "traits": { "login_name": user.login_name.as_str(), "display_name": user.display_name },
            "organization_id": user.organization_id,
            "created_at": rfc3339(user.created_at),
            "updated_at": rfc3339(user.updated_at),
        },
        "devices": devices,
    });
    if let Some(expiration) = session.expiration {
        body["expires_at"] = rfc3339(expiration);
    }
    body
}

async fn current(state: &FaceState, headers: &HeaderMap) -> Result<CurrentSession, Response> {
    let Some(token) = session_token(headers, &state.session_cookie) else {
        return Err(with_status(
            StatusCode::UNAUTHORIZED,
            crate::domain::error_ids::NO_SESSION,
            "No valid session credentials found in the request.",
            headers,
        ));
    };
    state
        .api
        .core()
        .current_session(&token)
        .await
        .map_err(|e| error_response(&e, headers))
}

async fn whoami(State(state): State<FaceState>, headers: HeaderMap) -> Response {
    match current(&state, &headers).await {
        Ok(current) => {
            let body = session_json(&current.session, &current.user, state.api.core().now());
            let mut response = axum::Json(body).into_response();
            if let Ok(value) = HeaderValue::from_str(current.user.id.as_str()) {
                response
                    .headers_mut()
                    .insert("x-kratos-authenticated-identity-id", value);
            }
            response
        }
        Err(response) => response,
    }
}

/// Page parameters: `page_size` (or the legacy `per_page`) and `page_token`.
fn page_request(query: Option<&str>, headers: &HeaderMap) -> Result<PageRequest, Response> {
    let bad = |reason: &str| {
        with_status(
            StatusCode::BAD_REQUEST,
            error_ids::PAGE_INVALID,
            reason,
            headers,
        )
    };
    let pairs = serde_urlencoded::from_str::<Vec<(String, String)>>(query.unwrap_or_default())
        .map_err(|_| bad("malformed query string"))?;
    let mut page = PageRequest::default();
    for (key, value) in pairs {
        match key.as_str() {
            "page_size" | "per_page" => {
                let size = value
                    .parse::<u32>()
                    .map_err(|_| bad("page_size must be an integer between 1 and 1000"))?;
                page.size = Some(size);
            }
            "page_token" => page.token = Some(value),
            _ => {}
        }
    }
    page.size().map_err(|e| error_response(&e, headers))?;
    Ok(page)
}

async fn list(
    State(state): State<FaceState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let page = match page_request(query.as_deref(), &headers) {
        Ok(page) => page,
        Err(response) => return response,
    };
    let current = match current(&state, &headers).await {
        Ok(current) => current,
        Err(response) => return response,
    };
    let core = state.api.core();
    let result = match core.list_other_sessions(&current, &page).await {
        Ok(result) => result,
        Err(e) => return error_response(&e, &headers),
    };
    let now = core.now();
    let body: Vec<Value> = result
        .sessions
        .iter()
        .map(|s| session_json(s, &current.user, now))
        .collect();
    let mut response = axum::Json(body).into_response();
    let response_headers = response.headers_mut();
    response_headers.insert("x-total-count", HeaderValue::from(result.total));
    if let Some(token) = result.next_token {
        let size = page.size.unwrap_or(crate::core::DEFAULT_PAGE_SIZE);
        let link = format!("</auth/sessions?page_size={size}&page_token={token}>; rel=\"next\"");
        if let Ok(value) = HeaderValue::from_str(&link) {
            response_headers.insert(header::LINK, value);
        }
    }
    response
}

async fn revoke_one(
    State(state): State<FaceState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let current = match current(&state, &headers).await {
        Ok(current) => current,
        Err(response) => return response,
    };
    // A bad path (e.g. not UTF-8 once decoded) is judged after authentication, in this shape.
    let id = match id {
        Ok(Path(id)) => id,
        Err(rejection) => {
            let reason = rejection.body_text();
            return with_status(
                StatusCode::BAD_REQUEST,
                error_ids::SESSION_ID_INVALID,
                &reason,
                &headers,
            );
        }
    };
    let id = match SessionId::parse(id) {
        Ok(id) => id,
        Err(e) => return error_response(&e, &headers),
    };
    match state.api.core().revoke_own_session(&current, &id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error_response(&e, &headers),
    }
}

async fn revoke_others(State(state): State<FaceState>, headers: HeaderMap) -> Response {
    let current = match current(&state, &headers).await {
        Ok(current) => current,
        Err(response) => return response,
    };
    match state.api.core().revoke_other_sessions(&current).await {
        Ok(count) => axum::Json(json!({ "count": count })).into_response(),
        Err(e) => error_response(&e, &headers),
    }
}

pub fn routes() -> Router<FaceState> {
    Router::new()
        .route("/auth/sessions/whoami", get(whoami))
        .route("/auth/sessions", get(list).delete(revoke_others))
        .route("/auth/sessions/{id}", axum::routing::delete(revoke_one))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_token_precedence_is_header_cookie_bearer() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer from-bearer"),
        );
        assert_eq!(
            session_token(&headers, "sid")
                .map(|t| t.into_exposed())
                .as_deref(),
            Some("from-bearer")
        );
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("other=1; sid=from-cookie"),
        );
        assert_eq!(
            session_token(&headers, "sid")
                .map(|t| t.into_exposed())
                .as_deref(),
            Some("from-cookie")
        );
        headers.insert("x-session-token", HeaderValue::from_static("from-header"));
        assert_eq!(
            session_token(&headers, "sid")
                .map(|t| t.into_exposed())
                .as_deref(),
            Some("from-header")
        );
    }
}
