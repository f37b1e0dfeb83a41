//! Kratos' admin session API under `/auth/admin/sessions` and `/auth/admin/identities`, so
//! the Ory SDKs' `IdentityApi` works with a base path of `…/auth`. Callers present
//! `Authorization: Bearer <JWT>` with `session.read` (reads) or `session.delete` (disable,
//! extend, revoke); credentials are judged before anything else in the request. Sessions and
//! errors are in Kratos' shapes ([`KratosError`]), every refusal included.
//!
//! Disabling and revoking terminate sessions (the records stay, `active: false`); extending
//! answers 204 (upstream's default mode) and refuses a terminated session with 404.

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde_json::Value;

use super::FaceState;
use super::edges::{self, Bearer};
use super::kratos::{Expand, KratosError, expanded_session_json};
use super::self_service::{page_request, request_in_errors};
use crate::core::{AdminSessionPage, PageRequest, RevokedBy, SessionAction, SessionWithUser};
use crate::domain::{SessionId, Time, UserId, error_ids};

type Path<T> = edges::Path<T, KratosError>;
type Query = edges::Query<KratosError>;
type Answer = Result<Response, KratosError>;

/// The caller, authenticated by its bearer JWT.
type Admin = edges::Bearer<KratosError>;

/// The query parameters of the admin session routes.
#[derive(Default)]
struct Params {
    page: PageRequest,
    active: Option<bool>,
    expand: Expand,
    /// The `active` and `expand` parameters as given, for the `Link` URLs.
    filters: String,
}

fn bad(id: &'static str, reason: impl Into<String>) -> KratosError {
    KratosError::new(StatusCode::BAD_REQUEST, id, reason)
}

impl FromRequestParts<FaceState> for Params {
    type Rejection = KratosError;

    async fn from_request_parts(parts: &mut Parts, state: &FaceState) -> Result<Self, KratosError> {
        let pairs = Query::from_request_parts(parts, state).await?.0;
        let mut params = Params {
            page: page_request(&pairs)?,
            ..Params::default()
        };
        for (key, value) in &pairs {
            match key.as_str() {
                // Go's strconv.ParseBool, as upstream; empty means no filter.
                "active" => {
                    params.active = match value.as_str() {
                        "" => None,
                        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
                        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
                        _ => {
                            return Err(bad(error_ids::ACTIVE_INVALID, "active must be a boolean"));
                        }
                    };
                    if let Some(active) = params.active {
                        params.filters.push_str(&format!("&active={active}"));
                    }
                }
                "expand" => {
                    let value = value.to_ascii_lowercase();
                    match value.as_str() {
                        "identity" => params.expand.identity = true,
                        "devices" => params.expand.devices = true,
                        _ => {
                            return Err(bad(
                                error_ids::EXPAND_INVALID,
                                "expand must be identity or devices",
                            ));
                        }
                    }
                    params.filters.push_str(&format!("&expand={value}"));
                }
                _ => {}
            }
        }
        Ok(params)
    }
}

fn render(found: &SessionWithUser, now: Time, expand: Expand) -> Value {
    expanded_session_json(&found.session, found.user.as_ref(), now, expand)
}

/// A page of sessions with its `Link` header (`first`, and `next` while more remain), and
/// `X-Total-Count` when given.
fn page_response(
    path: &str,
    params: &Params,
    page: AdminSessionPage,
    now: Time,
    expand: Expand,
    total: Option<u64>,
) -> Response {
    let body: Vec<Value> = page
        .sessions
        .iter()
        .map(|s| render(s, now, expand))
        .collect();
    let mut response = axum::Json(body).into_response();
    let headers = response.headers_mut();
    let size = params.page.size.unwrap_or(crate::core::DEFAULT_PAGE_SIZE);
    let base = format!("{path}?page_size={size}{}", params.filters);
    let mut link = format!("<{base}>; rel=\"first\"");
    if let Some(token) = page.next_token {
        link.push_str(&format!(", <{base}&page_token={token}>; rel=\"next\""));
    }
    if let Ok(value) = HeaderValue::from_str(&link) {
        headers.insert(header::LINK, value);
    }
    if let Some(total) = total {
        headers.insert("x-total-count", HeaderValue::from(total));
    }
    response
}

async fn list_sessions(
    State(state): State<FaceState>,
    Bearer(principal, ..): Admin,
    params: Params,
) -> Answer {
    let core = state.api.core();
    let page = core
        .admin_all_sessions(&principal, params.active, &params.page)
        .await?;
    let now = core.now();
    Ok(page_response(
        "/auth/admin/sessions",
        &params,
        page,
        now,
        params.expand,
        None,
    ))
}

async fn get_session(
    State(state): State<FaceState>,
    Bearer(principal, ..): Admin,
    id: Path<String>,
    params: Params,
) -> Answer {
    let id = SessionId::parse_well_formed(id.0)?;
    let core = state.api.core();
    let found = core
        .admin_session(&principal, &id, SessionAction::Read)
        .await?;
    Ok(axum::Json(render(&found, core.now(), params.expand)).into_response())
}

/// Disables (`DELETE`) or extends (`PATCH …/extend`) a session: 204 either way.
async fn change_session(
    State(state): State<FaceState>,
    Bearer(principal, ..): Admin,
    id: Path<String>,
    action: SessionAction,
) -> Result<StatusCode, KratosError> {
    let id = SessionId::parse_well_formed(id.0)?;
    let core = state.api.core();
    core.admin_session(&principal, &id, action).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_identity_sessions(
    State(state): State<FaceState>,
    Bearer(principal, ..): Admin,
    id: Path<String>,
    params: Params,
) -> Answer {
    let id = UserId::parse(id.0)?;
    let core = state.api.core();
    // Upstream does not look the identity up: an unknown one has no sessions.
    let page = match core
        .admin_user_sessions(&principal, &id, params.active, &params.page)
        .await
    {
        Err(e) if e.id() == error_ids::USER_NOT_FOUND => AdminSessionPage {
            sessions: Vec::new(),
            total: 0,
            next_token: None,
        },
        other => other?,
    };
    let total = page.total;
    let path = format!(
        "/auth/admin/identities/{}/sessions",
        path_segment(id.as_str())
    );
    let now = core.now();
    // As upstream: an identity's sessions come with identity and devices expanded.
    Ok(page_response(
        &path,
        &params,
        page,
        now,
        Expand::ALL,
        Some(total),
    ))
}

/// `value` as one percent-encoded path segment (unreserved characters kept).
fn path_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Revokes an identity's live sessions: 204, also when there was nothing to revoke or no
/// such identity (upstream does not look the identity up either).
async fn revoke_identity_sessions(
    State(state): State<FaceState>,
    Bearer(principal, ..): Admin,
    id: Path<String>,
) -> Result<StatusCode, KratosError> {
    let id = UserId::parse(id.0)?;
    let core = state.api.core();
    match core
        .admin_revoke_user_sessions(&principal, &id, None, RevokedBy::Admin)
        .await
    {
        Err(e) if e.id() != error_ids::USER_NOT_FOUND => Err(e.into()),
        _ => Ok(StatusCode::NO_CONTENT),
    }
}

pub fn routes() -> Router<FaceState> {
    Router::new()
        .route("/auth/admin/sessions", get(list_sessions))
        .route(
            "/auth/admin/sessions/{id}",
            get(get_session).delete(|state, admin, path| {
                change_session(state, admin, path, SessionAction::Disable)
            }),
        )
        .route(
            "/auth/admin/sessions/{id}/extend",
            patch(|state, admin, path| change_session(state, admin, path, SessionAction::Extend)),
        )
        .route(
            "/auth/admin/identities/{id}/sessions",
            get(list_identity_sessions).delete(revoke_identity_sessions),
        )
        .layer(axum::middleware::from_fn(request_in_errors))
}
