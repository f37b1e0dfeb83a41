//! The account page at `/ui/`: plain HTML, CSS and JavaScript files embedded in the binary
//! (`ui/` in the repository), no build step. The page is a client of sessiond's public APIs
//! only: it signs in through the login flow (`/auth/self-service/login`), lists and revokes
//! the user's sessions on the self-service face (`/auth/sessions`), signs out with
//! DeleteSession (REST, the session's own token as bearer), and, given an administrator's
//! JWT, reads and revokes a user's sessions on the admin face (`/auth/admin/api`).
//!
//! Every answer carries a strict Content-Security-Policy (scripts, styles and requests from
//! this origin only; no inline script or style, no framing, no form posts), `nosniff` and
//! `no-referrer`. The files are revalidated on every load (`no-cache`) against an `ETag`
//! of their content, so a new binary's page is never mixed with an old script.
//!
//! These routes are not an API, so they are not in the OpenAPI document; they are listed in
//! [`crate::ops::openapi::PAGE_ROUTES`] for metrics labels and the route check. With
//! `--ui false` they are not routed at all (404 like any unknown path).

use axum::Router;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};

/// The Content-Security-Policy of every answer of the page.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("../../ui/index.html");
const APP_JS: &str = include_str!("../../ui/app.js");
const SESSIONS_JS: &str = include_str!("../../ui/sessions.js");
const APP_CSS: &str = include_str!("../../ui/app.css");

/// The headers every answer of the page carries.
fn security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// One embedded file: 200 with its type, or 304 when the client's copy is current.
fn file(request: &HeaderMap, content_type: &'static str, body: &'static str) -> Response {
    let digest = Sha256::digest(body.as_bytes());
    let etag = format!("\"{}\"", hex_prefix(&digest));
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
            body,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    security_headers(headers);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    response
}

fn hex_prefix(digest: &[u8]) -> String {
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

async fn index(headers: HeaderMap) -> Response {
    file(&headers, "text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js(headers: HeaderMap) -> Response {
    file(&headers, "text/javascript; charset=utf-8", APP_JS)
}

async fn sessions_js(headers: HeaderMap) -> Response {
    file(&headers, "text/javascript; charset=utf-8", SESSIONS_JS)
}

async fn app_css(headers: HeaderMap) -> Response {
    file(&headers, "text/css; charset=utf-8", APP_CSS)
}

/// `/ui` → `/ui/`, so the page's relative URLs resolve under `/ui/`.
async fn to_index() -> Response {
    let mut response = Redirect::permanent("/ui/").into_response();
    security_headers(response.headers_mut());
    response
}

pub fn routes() -> Router {
    Router::new()
        .route("/ui", get(to_index))
        .route("/ui/", get(index))
        .route("/ui/app.js", get(app_js))
        .route("/ui/sessions.js", get(sessions_js))
        .route("/ui/app.css", get(app_css))
}
