//! Self-service session endpoints under `/auth/sessions`, shaped like Ory Kratos' public API
//! so its SDKs work with a base path of `…/auth`. The caller is identified by its own session
//! token (`X-Session-Token`, the session cookie, or `Authorization: Bearer`), the same token
//! CreateSession issued. Errors are Kratos' `{"error":{code,status,reason,message,…}}`
//! ([`KratosError`]), with the client's `X-Request-Id` as `request`.

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::FaceState;
use super::edges::{self, REQUEST_ID, session_token};
use crate::core::{CurrentSession, PageRequest};
use crate::domain::{Principal, SessionEventType, SessionId, error_ids};

pub use super::kratos::{KratosError, session_json};

type Path<T> = edges::Path<T, KratosError>;
type Query = edges::Query<KratosError>;

/// The caller's current session, from its own session token.
struct Current(CurrentSession);

impl FromRequestParts<FaceState> for Current {
    type Rejection = KratosError;

    async fn from_request_parts(parts: &mut Parts, state: &FaceState) -> Result<Self, KratosError> {
        let Some(token) = session_token(&parts.headers, &state.session_cookie) else {
            return Err(KratosError::new(
                StatusCode::UNAUTHORIZED,
                error_ids::NO_SESSION,
                "No valid session credentials found in the request.",
            ));
        };
        Ok(Self(state.api.core().current_session(&token).await?))
    }
}

async fn whoami(
    State(state): State<FaceState>,
    Current(current): Current,
) -> Result<Response, KratosError> {
    let body = session_json(&current.session, &current.user, state.api.core().now());
    let mut response = axum::Json(body).into_response();
    if let Ok(value) = HeaderValue::from_str(current.user.id.as_str()) {
        response
            .headers_mut()
            .insert("x-kratos-authenticated-identity-id", value);
    }
    Ok(response)
}

/// Page parameters: `page_size` (or the legacy `per_page`) and `page_token`.
struct Page(PageRequest);

impl FromRequestParts<FaceState> for Page {
    type Rejection = KratosError;

    async fn from_request_parts(parts: &mut Parts, state: &FaceState) -> Result<Self, KratosError> {
        let query = Query::from_request_parts(parts, state).await?;
        page_request(&query.0).map(Self)
    }
}

pub(super) fn page_request(pairs: &[(String, String)]) -> Result<PageRequest, KratosError> {
    let mut page = PageRequest::default();
    for (key, value) in pairs {
        match key.as_str() {
            "page_size" | "per_page" => {
                let size = value.parse::<u32>().map_err(|_| {
                    KratosError::new(
                        StatusCode::BAD_REQUEST,
                        error_ids::PAGE_INVALID,
                        "page_size must be an integer between 1 and 1000",
                    )
                })?;
                page.size = Some(size);
            }
            "page_token" => page.token = Some(value.clone()),
            _ => {}
        }
    }
    page.size()?;
    Ok(page)
}

async fn list(
    State(state): State<FaceState>,
    // Page parameters are judged before credentials.
    Page(page): Page,
    Current(current): Current,
) -> Result<Response, KratosError> {
    let core = state.api.core();
    let result = core.list_other_sessions(&current, &page).await?;
    let now = core.now();
    let body: Vec<Value> = result
        .sessions
        .iter()
        .map(|s| session_json(s, &current.user, now))
        .collect();
    let mut response = axum::Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert("x-total-count", HeaderValue::from(result.total));
    if let Some(token) = result.next_token {
        let size = page.size.unwrap_or(crate::core::DEFAULT_PAGE_SIZE);
        let link = format!("</auth/sessions?page_size={size}&page_token={token}>; rel=\"next\"");
        if let Ok(value) = HeaderValue::from_str(&link) {
            headers.insert(header::LINK, value);
        }
    }
    Ok(response)
}

/// Revokes one of the caller's sessions. A malformed id is a bad request; a well-formed id
/// that is not one of the caller's sessions is answered like a revoked one (204), so that the
/// answer says nothing about other users' sessions.
async fn revoke_one(
    State(state): State<FaceState>,
    Current(current): Current,
    id: Path<String>,
) -> Result<StatusCode, KratosError> {
    let id = SessionId::parse_well_formed(id.0)?;
    state.api.core().revoke_own_session(&current, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn revoke_others(
    State(state): State<FaceState>,
    Current(current): Current,
) -> Result<Response, KratosError> {
    let count = state.api.core().revoke_other_sessions(&current).await?;
    Ok(axum::Json(json!({ "count": count })).into_response())
}

/// `GET /auth/sessions/events`: the caller's own user's session events as Server-Sent Events
/// (see `sse.rs` for the framing, `after`, `types` and `Last-Event-ID`). This is how a
/// browser tab learns that its session was ended elsewhere: after the termination of the
/// caller's own session the stream ends, and a reconnect is refused with 401.
async fn events(
    State(state): State<FaceState>,
    headers: HeaderMap,
    query: Query,
    Current(current): Current,
) -> Result<Response, KratosError> {
    use futures_util::StreamExt;
    if !super::sse::wants_event_stream(&headers) {
        return Err(KratosError::new(
            StatusCode::NOT_ACCEPTABLE,
            error_ids::HTTP_REJECTED,
            "this route answers only text/event-stream: send Accept: text/event-stream \
             (an EventSource does)",
        ));
    }
    let mut filter = super::sse::query_filter(&query.0, false)?;
    filter.after = super::sse::resume_after(&headers, filter.after);
    filter.limit = None;
    let user = current.user.id.into_string();
    filter.user_id = Some(user.clone());
    let own = current.session.id;
    let principal = Principal::of_session(user, own.clone());
    let events = state
        .api
        .core()
        .watch_session_event_batches(&principal, filter)
        .await?;
    // Ends right after the caller's own termination, without waiting for another event.
    let until_own_end = futures_util::stream::unfold(Some(events), move |events| {
        let own = own.clone();
        async move {
            let mut events = events?;
            let (item, ended) = match events.next().await? {
                Ok(batch) => {
                    let (batch, ended) = batch.until(|event| {
                        event.event_type == SessionEventType::Terminated
                            && event.session_id == own.as_str()
                    });
                    (Ok(batch), ended)
                }
                Err(error) => (Err(error), false),
            };
            Some((item, (!ended).then_some(events)))
        }
    });
    Ok(super::sse::response(
        Box::pin(until_own_end),
        state.feed_keepalive,
    ))
}

/// Puts the client's request id into every error of the face.
pub(super) async fn request_in_errors(request: Request, next: Next) -> Response {
    let mut headers = HeaderMap::new();
    if let Some(id) = request.headers().get(REQUEST_ID) {
        headers.insert(REQUEST_ID, id.clone());
    }
    let mut response = next.run(request).await;
    match response.extensions_mut().remove::<KratosError>() {
        Some(error) if !headers.is_empty() => error.for_request(&headers).into_response(),
        _ => response,
    }
}

pub fn routes() -> Router<FaceState> {
    Router::new()
        .route("/auth/sessions/whoami", get(whoami))
        .route("/auth/sessions/events", get(events))
        .route("/auth/sessions", get(list).delete(revoke_others))
        .route("/auth/sessions/{id}", axum::routing::delete(revoke_one))
        .merge(super::login::routes())
        .layer(axum::middleware::from_fn(request_in_errors))
}
