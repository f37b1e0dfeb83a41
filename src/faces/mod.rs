//! The faces: thin adapters that decode a request, collect credentials, call the one core and
//! encode the result or the error in their own shape.
//!
//! All faces share one listener. Requests whose content type is `application/grpc…` go to
//! the tonic services (native gRPC and, through tonic-web, gRPC-Web); everything else goes to
//! the axum router (Connect, REST, and the other HTTP faces).

mod body;
pub mod connect;
pub mod grpc;
pub mod pb;
pub mod rest;
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

use crate::domain::ErrorKind;

/// What every HTTP handler needs.
#[derive(Clone)]
pub struct FaceState {
    pub api: SessionApi,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
}

/// The HTTP router of the non-gRPC faces.
pub fn http_router(state: FaceState) -> Router {
    Router::new()
        .merge(connect::routes())
        .merge(rest::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn not_found() -> Response {
    rest::rejection(StatusCode::NOT_FOUND, ErrorKind::NotFound, "Not Found")
}

async fn method_not_allowed() -> Response {
    let mut response = rest::rejection(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::InvalidArgument,
        "Method Not Allowed",
    );
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
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
        } else {
            let http = self.http.clone();
            Box::pin(async move { http.oneshot(request).await })
        }
    }
}
