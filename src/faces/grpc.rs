//! Native gRPC and gRPC-Web: the tonic servers of every RPC service (generated from each
//! service's list, see [`super::rpc`]), each method taking credentials from the
//! `authorization` metadata and calling its [`Rpc`].
//! gRPC-Web (binary and text, over HTTP/1.1 and h2) is the same service behind tonic-web's
//! translation layer.

use std::convert::Infallible;
use std::marker::PhantomData;

use axum::body::Body;
use tonic::codec::BufferSettings;
use tonic::{Request, Response, Status};
use tonic_prost::{ProstDecoder, ProstEncoder};
use tower::util::BoxCloneSyncService;

use super::edges::Credentials;
use super::rpc::{Rpc, Serve};
use super::status::to_status;

/// The protobuf codec of every service: prost's, with buffers of [`CODEC_BUFFER`] bytes.
///
/// tonic starts each request's decoding buffer and each answer's encoding buffer at 8 KiB.
/// Nearly every message of these APIs fits in far less, and a block of 8 KiB is past the C
/// library's per-thread cache of small blocks: every call took two trips through the shared
/// arena (and its merging of freed blocks) for memory it did not use. A message larger than
/// the buffer grows it, as before.
#[derive(Debug)]
pub struct Codec<T, U>(PhantomData<(T, U)>);

/// Starting size of a message's buffer; within the C library's per-thread cache.
const CODEC_BUFFER: usize = 1024;
/// As tonic's default: an answer stream yields to the connection after this many bytes.
const CODEC_YIELD: usize = 32 * 1024;

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::new(CODEC_BUFFER, CODEC_YIELD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::new(CODEC_BUFFER, CODEC_YIELD))
    }
}

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
    content_type(request).is_some_and(|ct| ct.starts_with("application/grpc"))
}

fn content_type(request: &http::Request<Body>) -> Option<&str> {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

/// Whether a request is native gRPC (`application/grpc`, `application/grpc+proto`, …), which
/// browsers cannot make: gRPC-Web's types (`application/grpc-web…`) are not.
pub fn is_native_grpc(request: &http::Request<Body>) -> bool {
    content_type(request).is_some_and(|ct| {
        ct.strip_prefix("application/grpc")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('+') || rest.starts_with(';'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_native_grpc_content_types_are_native_grpc() {
        let request = |content_type: &str| {
            http::Request::builder()
                .header(http::header::CONTENT_TYPE, content_type)
                .body(Body::empty())
                .unwrap()
        };
        for native in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc+json",
        ] {
            assert!(is_native_grpc(&request(native)), "{native}");
            assert!(is_grpc(&request(native)), "{native}");
        }
        for other in [
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/grpc-web-text",
            "application/grpcx",
            "application/json",
            "text/plain",
        ] {
            assert!(!is_native_grpc(&request(other)), "{other}");
        }
        assert!(!is_native_grpc(&http::Request::new(Body::empty())));
    }
}
