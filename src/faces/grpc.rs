//! Native gRPC and gRPC-Web: the tonic servers of every RPC service (generated from each
//! service's list, see [`super::rpc`]), each method taking credentials from the
//! `authorization` metadata and calling its [`Rpc`].
//! gRPC-Web (binary and text, over HTTP/1.1 and h2) is the same service behind tonic-web's
//! translation layer.

use std::convert::Infallible;

use axum::body::Body;
use tonic::{Request, Response, Status};
use tower::util::BoxCloneSyncService;

use super::edges::Credentials;
use super::rpc::{Rpc, Serve};
use super::status::to_status;

/// The gRPC side of the listener, with bodies in axum's type.
pub type GrpcService = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>;

/// One unary call: credentials from the `authorization` metadata, then the RPC.
pub async fn unary<R: Rpc, S: Serve>(
    serve: &S,
    request: Request<R::Request>,
) -> Result<Response<R::Response>, Status> {
    let credentials = Credentials::from_headers(request.metadata().as_ref());
    serve
        .serve::<R>(credentials, request.into_inner())
        .await
        .map(Response::new)
        .map_err(|e| to_status(&e))
}

/// Every RPC service over `serve` for gRPC and gRPC-Web, with health and reflection;
/// messages over `max_message` bytes are refused with RESOURCE_EXHAUSTED.
pub fn service<S: Serve>(
    serve: S,
    max_message: usize,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
) -> anyhow::Result<GrpcService> {
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(super::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let routes = tonic::service::Routes::new(health)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?);
    let routes = super::grpc_servers(routes, serve, max_message).prepare();
    let svc = tower::ServiceBuilder::new()
        .map_response(|response: http::Response<tonic::body::Body>| response.map(Body::new))
        .layer(tonic_web::GrpcWebLayer::new())
        .map_response(too_large_is_resource_exhausted)
        .map_response(undecodable_requests_are_invalid_arguments)
        .service(routes);
    Ok(GrpcService::new(svc))
}

/// Names of the RPC services, which health is reported for (besides the overall "" entry).
pub fn service_names() -> impl Iterator<Item = &'static str> {
    super::SERVICES.iter().map(|s| s.name)
}

/// tonic reports a message over the size limit as OUT_OF_RANGE; the gRPC specification (and
/// every other face here) says RESOURCE_EXHAUSTED. Such errors are trailers-only responses,
/// so the status is in the headers.
fn too_large_is_resource_exhausted<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let out_of_range = headers
        .get("grpc-status")
        .is_some_and(|s| s.as_bytes() == b"11");
    let too_large = headers.get("grpc-message").is_some_and(|m| {
        m.to_str()
            .is_ok_and(|m| m.contains("too%20large") || m.contains("too large"))
    });
    if out_of_range && too_large {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    response
}

/// tonic answers a request it cannot decode (malformed protobuf, invalid UTF-8, a truncated
/// frame, no message at all) with INTERNAL; that is the client's fault, and connect-go (which
/// ZITADEL serves with) says INVALID_ARGUMENT. Such answers are trailers-only and carry no
/// `grpc-status-details-bin`, whereas every INTERNAL of ours carries an error detail, so the
/// two cannot be confused.
fn undecodable_requests_are_invalid_arguments<B>(
    mut response: http::Response<B>,
) -> http::Response<B> {
    let headers = response.headers_mut();
    let internal = headers
        .get("grpc-status")
        .is_some_and(|s| s.as_bytes() == b"13");
    if internal && !headers.contains_key("grpc-status-details-bin") {
        headers.insert("grpc-status", http::HeaderValue::from_static("3"));
    }
    response
}

/// Whether a request speaks gRPC or gRPC-Web (by its content type).
pub fn is_grpc(request: &http::Request<Body>) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}
