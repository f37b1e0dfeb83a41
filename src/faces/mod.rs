//! The faces: thin adapters that decode a request, collect credentials, call the one core and
//! encode the result or the error in their own shape.
//!
//! All faces share one listener. Requests whose content type is `application/grpc…` go to
//! the tonic services (native gRPC and, through tonic-web, gRPC-Web); everything else goes to
//! the axum router (Connect, REST, and the other HTTP faces).

// Handlers return a ready `Response` as their error (axum's idiom); it is built once per
// failed request and moved out, so its size does not matter.
#![allow(clippy::result_large_err)]

pub mod admin;
mod body;
pub mod connect;
mod connect_stream;
#[cfg(test)]
mod fuzz;
pub mod grpc;
pub mod health;
pub mod metrics;
pub mod observe;
pub mod openapi;
pub mod pb;
pub mod rest;
pub mod self_service;
pub mod session_api;
pub mod status;

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use futures_util::future::BoxFuture;
use http::StatusCode;

pub use session_api::SessionApi;

use crate::domain::{ErrorKind, error_ids};

/// What every HTTP handler needs.
#[derive(Clone)]
pub struct FaceState {
    pub api: SessionApi,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Name of the cookie that may carry a session token on the self-service face.
    pub session_cookie: String,
    pub metrics: metrics::Metrics,
}

/// The HTTP router of the non-gRPC faces.
pub fn http_router(state: FaceState) -> Router {
    Router::new()
        .merge(connect::routes())
        .merge(rest::routes())
        .merge(self_service::routes())
        .merge(admin::routes())
        .merge(health::routes())
        .merge(openapi::routes())
        .route("/metrics", axum::routing::get(metrics::scrape))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// A transport-level rejection in the error shape of the face that owns the path.
fn rejection(
    uri: &http::Uri,
    headers: &http::HeaderMap,
    status: StatusCode,
    message: &str,
) -> Response {
    let path = uri.path();
    if path.starts_with("/auth/admin/") {
        let code = status
            .canonical_reason()
            .unwrap_or("ERROR")
            .to_ascii_uppercase()
            .replace(' ', "_");
        admin::with_status(status, &code, message)
    } else if path.starts_with("/auth/") {
        self_service::with_status(status, error_ids::HTTP_REJECTED, message, headers)
    } else {
        let kind = match status {
            StatusCode::NOT_FOUND => ErrorKind::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ErrorKind::Unimplemented,
            _ => ErrorKind::InvalidArgument,
        };
        let mut response = rest::rejection(status, kind, message);
        *response.status_mut() = status;
        response
    }
}

async fn not_found(uri: http::Uri, headers: http::HeaderMap) -> Response {
    rejection(&uri, &headers, StatusCode::NOT_FOUND, "Not Found")
}

async fn method_not_allowed(uri: http::Uri, headers: http::HeaderMap) -> Response {
    rejection(
        &uri,
        &headers,
        StatusCode::METHOD_NOT_ALLOWED,
        "Method Not Allowed",
    )
}

/// Sends gRPC and gRPC-Web requests to the tonic services and the rest to the HTTP router.
#[derive(Clone)]
pub struct ProtocolSwitch {
    grpc: grpc::GrpcService,
    http: Router,
}

impl ProtocolSwitch {
    pub fn new(grpc: grpc::GrpcService, http: Router) -> Self {
        Self { grpc, http }
    }
}

impl tower::Service<http::Request<Body>> for ProtocolSwitch {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        use tower::ServiceExt;
        if grpc::is_grpc(&request) {
            let grpc = self.grpc.clone();
            Box::pin(async move { grpc.oneshot(request).await })
        } else if connect_stream::is_connect_stream(&request) {
            Box::pin(connect_stream::serve(self.grpc.clone(), request))
        } else {
            let http = self.http.clone();
            Box::pin(async move { http.oneshot(request).await })
        }
    }
}
