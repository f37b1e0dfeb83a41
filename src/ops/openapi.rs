//! `GET /openapi.json`: the OpenAPI 3 description of every HTTP route (`openapi/openapi.json`,
//! embedded at build time).
//!
//! The REST routes of the SessionService follow the `google.api.http` rules of the compiled
//! descriptor set (and the services' lists, [`crate::faces::SERVICES`]); the other HTTP
//! routes are listed in [`HTTP_ROUTES`]. `tests/api/openapi.rs`
//! checks that the document covers exactly those, that the list matches the `.route(…)` calls
//! of the faces and what the running server answers, and `tests/openapi/run.sh` checks the
//! server's answers against the document (schemathesis).

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, header};

/// The document, as served.
pub const DOCUMENT: &str = include_str!("../../openapi/openapi.json");

/// Every HTTP route that is not a REST transcoding of an RPC, as `(method, path)` with
/// axum's `{param}` syntax. Add a route here (and to the document) when adding one to a face;
/// `tests/api/openapi.rs` fails until it is.
pub const HTTP_ROUTES: &[(&str, &str)] = &[
    // self_service.rs
    ("GET", "/auth/sessions/whoami"),
    ("GET", "/auth/sessions"),
    ("DELETE", "/auth/sessions"),
    ("DELETE", "/auth/sessions/{id}"),
    ("GET", "/auth/sessions/events"),
    // login.rs
    ("GET", "/auth/self-service/login/api"),
    ("POST", "/auth/self-service/login"),
    // kratos_admin.rs
    ("GET", "/auth/admin/sessions"),
    ("GET", "/auth/admin/sessions/{id}"),
    ("DELETE", "/auth/admin/sessions/{id}"),
    ("PATCH", "/auth/admin/sessions/{id}/extend"),
    ("GET", "/auth/admin/identities/{id}/sessions"),
    ("DELETE", "/auth/admin/identities/{id}/sessions"),
    // admin.rs
    ("GET", "/auth/admin/api/users"),
    ("POST", "/auth/admin/api/users"),
    ("GET", "/auth/admin/api/users/{id}"),
    ("POST", "/auth/admin/api/users/{id}/lock"),
    ("POST", "/auth/admin/api/users/{id}/deactivate"),
    ("POST", "/auth/admin/api/users/{id}/reactivate"),
    ("PUT", "/auth/admin/api/users/{id}/password"),
    // admin_factors.rs
    ("GET", "/auth/admin/api/users/{id}/factors"),
    ("DELETE", "/auth/admin/api/users/{id}/factors/{kind}"),
    (
        "DELETE",
        "/auth/admin/api/users/{id}/factors/passkey/{passkeyId}",
    ),
    ("GET", "/auth/admin/api/users/{id}/sessions"),
    ("DELETE", "/auth/admin/api/users/{id}/sessions"),
    ("DELETE", "/auth/admin/api/users/{id}/sessions/{session_id}"),
    // signals/face.rs
    ("GET", "/.well-known/ssf-configuration"),
    ("GET", "/.well-known/ssf-configuration/{*issuer_path}"),
    ("GET", "/.well-known/ssf-jwks.json"),
    ("GET", "/auth/admin/api/ssf/stream"),
    ("POST", "/auth/admin/api/ssf/stream"),
    ("PATCH", "/auth/admin/api/ssf/stream"),
    ("PUT", "/auth/admin/api/ssf/stream"),
    ("DELETE", "/auth/admin/api/ssf/stream"),
    ("GET", "/auth/admin/api/ssf/status"),
    ("POST", "/auth/admin/api/ssf/status"),
    ("POST", "/auth/admin/api/ssf/subjects/add"),
    ("POST", "/auth/admin/api/ssf/subjects/remove"),
    ("POST", "/auth/admin/api/ssf/verify"),
    ("POST", "/auth/admin/api/ssf/poll/{stream_id}"),
    ("GET", "/auth/admin/api/backchannel-logout-clients"),
    ("POST", "/auth/admin/api/backchannel-logout-clients"),
    (
        "DELETE",
        "/auth/admin/api/backchannel-logout-clients/{client_id}",
    ),
    // ops: health.rs, metrics.rs, this module
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
];

/// The routes of the account page (`faces/ui.rs`): a page, not an API, so the document
/// leaves them out; listed here for metrics labels and for the check that every registered
/// route is listed (`tests/api/openapi.rs`). Served unless `--ui false`.
pub const PAGE_ROUTES: &[(&str, &str)] = &[
    ("GET", "/ui"),
    ("GET", "/ui/"),
    ("GET", "/ui/app.js"),
    ("GET", "/ui/sessions.js"),
    ("GET", "/ui/app.css"),
];

async fn document() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        DOCUMENT,
    )
        .into_response()
}

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/openapi.json", get(document))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_json() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("valid JSON");
        assert!(
            doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
            "{:?}",
            doc["openapi"]
        );
        assert!(doc["paths"].as_object().is_some_and(|p| !p.is_empty()));
    }
}
