//! Native gRPC and gRPC-Web: the tonic-generated servers of both package versions, each
//! method authenticating from the `authorization` metadata and calling its [`Rpc`].
//! gRPC-Web (binary and text, over HTTP/1.1 and h2) is the same service behind tonic-web's
//! translation layer.

use std::convert::Infallible;

use axum::body::Body;
use tonic::{Request, Response, Status};
use tower::util::BoxCloneSyncService;

use super::pb::zitadel::session::{v2, v2beta};
use super::session_api::{
    CreateV2, CreateV2beta, DeleteV2, DeleteV2beta, GetV2, GetV2beta, ListV2, ListV2beta, Rpc,
    SessionApi, SetV2, SetV2beta,
};
use super::status::to_status;

/// The gRPC side of the listener, with bodies in axum's type.
pub type GrpcService = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>;

async fn unary<R: Rpc>(
    api: &SessionApi,
    request: Request<R::Request>,
) -> Result<Response<R::Response>, Status> {
    let authorization = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let principal = api
        .authenticate(authorization)
        .await
        .map_err(|e| to_status(&e))?;
    R::call(api, principal, request.into_inner())
        .await
        .map(Response::new)
        .map_err(|e| to_status(&e))
}

pub struct V2(SessionApi);
pub struct V2beta(SessionApi);

macro_rules! grpc_service {
    ($server:ty, $pkg:ident, $list:ty, $get:ty, $create:ty, $set:ty, $delete:ty) => {
        #[tonic::async_trait]
        impl $pkg::session_service_server::SessionService for $server {
            async fn list_sessions(
                &self,
                request: Request<$pkg::ListSessionsRequest>,
            ) -> Result<Response<$pkg::ListSessionsResponse>, Status> {
                unary::<$list>(&self.0, request).await
            }

            async fn get_session(
                &self,
                request: Request<$pkg::GetSessionRequest>,
            ) -> Result<Response<$pkg::GetSessionResponse>, Status> {
                unary::<$get>(&self.0, request).await
            }

            async fn create_session(
                &self,
                request: Request<$pkg::CreateSessionRequest>,
            ) -> Result<Response<$pkg::CreateSessionResponse>, Status> {
                unary::<$create>(&self.0, request).await
            }

            async fn set_session(
                &self,
                request: Request<$pkg::SetSessionRequest>,
            ) -> Result<Response<$pkg::SetSessionResponse>, Status> {
                unary::<$set>(&self.0, request).await
            }

            async fn delete_session(
                &self,
                request: Request<$pkg::DeleteSessionRequest>,
            ) -> Result<Response<$pkg::DeleteSessionResponse>, Status> {
                unary::<$delete>(&self.0, request).await
            }
        }
    };
}

grpc_service!(V2, v2, ListV2, GetV2, CreateV2, SetV2, DeleteV2);
grpc_service!(
    V2beta,
    v2beta,
    ListV2beta,
    GetV2beta,
    CreateV2beta,
    SetV2beta,
    DeleteV2beta
);

/// Both session services for gRPC and gRPC-Web; messages over `max_message` bytes are
/// refused with RESOURCE_EXHAUSTED.
pub fn service(
    api: SessionApi,
    max_message: usize,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
) -> anyhow::Result<GrpcService> {
    use tonic::codec::CompressionEncoding::Gzip;
    let v2 = v2::session_service_server::SessionServiceServer::new(V2(api.clone()))
        .max_decoding_message_size(max_message)
        .accept_compressed(Gzip)
        .send_compressed(Gzip);
    let v2beta = v2beta::session_service_server::SessionServiceServer::new(V2beta(api))
        .max_decoding_message_size(max_message)
        .accept_compressed(Gzip)
        .send_compressed(Gzip);
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(super::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let routes = tonic::service::Routes::new(v2)
        .add_service(v2beta)
        .add_service(health)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .prepare();
    let svc = tower::ServiceBuilder::new()
        .map_response(|response: http::Response<tonic::body::Body>| response.map(Body::new))
        .layer(tonic_web::GrpcWebLayer::new())
        .map_response(too_large_is_resource_exhausted)
        .map_response(undecodable_requests_are_invalid_arguments)
        .service(routes);
    Ok(GrpcService::new(svc))
}

/// Names of the services health is reported for (besides the overall "" entry).
pub const SESSION_SERVICES: [&str; 2] = [
    "zitadel.session.v2.SessionService",
    "zitadel.session.v2beta.SessionService",
];

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
