//! The faces: thin adapters that decode a request, collect credentials, call the one core and
//! encode the result or the error in their own shape.
//!
//! All faces share one listener. Requests whose content type is `application/grpc…` go to
//! the tonic services (native gRPC and, through tonic-web, gRPC-Web); everything else goes to
//! the axum router (Connect, REST, and the other HTTP faces). Which face owns a request, and
//! so the shape of a refusal, is decided once, by [`Face::of`].
//!
//! ```text
//! faces/
//!   mod.rs           Face (who owns a request, refusals in its shape), FaceState, the
//!                    HTTP router, the protocol switch, the registry of RPC services
//!   rpc.rs           Rpc, RpcInfo/ServiceInfo tables, Serve, Visit, rpc_service! (a
//!                    service's list of RPCs → markers, tonic server, tables)
//!   session_api.rs   SessionApi and the SessionService's list of RPCs (v2, v2beta)
//!   user_service.rs  the UserService (v2 subset): users and second factors
//!   convert.rs       wire ↔ domain: request validation, sessions as messages
//!   events.rs        the session event feed (sessiond.events.v1): list RPC, watch stream
//!   sse.rs           the feed as Server-Sent Events, and its REST list on the same path
//!   edges.rs         shared request edges: credentials, path, query, body, JSON; Rejection
//!   grpc.rs          gRPC and gRPC-Web (tonic, tonic-web)
//!   connect.rs       Connect unary              ConnectError
//!   connect_stream.rs Connect streaming (reflection) onto the gRPC service
//!   rest.rs          REST transcoding           RestError (google.rpc.Status JSON)
//!   self_service.rs  Kratos-style /auth/sessions
//!   login.rs         Kratos' native login flow, /auth/self-service/login (no bearer needed)
//!   kratos.rs        KratosError, sessions in Kratos' shape
//!   kratos_admin.rs  Kratos' admin session API, /auth/admin/sessions and /auth/admin/identities
//!   admin.rs         /auth/admin/api            AdminError
//!   admin_json.rs    users and sessions in the admin shape
//!   admin_factors.rs a user's second factors on the admin face
//!   status.rs        the one error table (kind → gRPC code, HTTP status, bodies)
//!   pb.rs            generated protobuf types
//!   ui.rs            the account page at /ui/ (static files, strict CSP), not an API
//! ops/ (beside faces; depends on faces, never the reverse)
//!   mod.rs           Ops: the operations routes and the middleware around every request
//!   observe.rs       request id, load shedding, timeout, access log
//!   labels.rs        face/protocol/method labels of a request (from the RPC tables)
//!   metrics.rs health.rs openapi.rs
//! ```
//!
//! ## Adding an RPC
//!
//! Add one line to its service's list (`session_service!` in `session_api.rs`): method,
//! handler, messages, and the `google.api.http` rule of the proto. Write the handler on
//! [`SessionApi`]. gRPC, gRPC-Web, Connect and REST routes, labels, the drift and OpenAPI
//! tests and the bench's no-op server follow from the list; add the operation to
//! `openapi/openapi.json`.
//!
//! ## Adding a service
//!
//! Write its list with [`rpc::rpc_service!`] (one invocation per package) and add its
//! modules to the `services!` registry below: one line.

pub mod admin;
pub(crate) mod admin_factors;
mod admin_json;
pub mod connect;
mod connect_stream;
mod convert;
pub mod edges;
pub mod events;
#[cfg(test)]
mod fuzz;
pub mod grpc;
mod kratos;
pub mod kratos_admin;
mod login;
pub mod pb;
pub mod rest;
pub mod rpc;
pub mod self_service;
pub mod session_api;
pub mod sse;
pub mod status;
pub mod ui;
pub mod user_service;

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderValue, StatusCode, Uri};

pub use convert::session_to_pb;
pub use session_api::SessionApi;

use crate::domain::{Error, ErrorKind, error_ids};
use rpc::{RpcInfo, ServiceInfo, Visit};

/// What every HTTP handler needs.
#[derive(Clone)]
pub struct FaceState {
    pub api: SessionApi,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Name of the cookie that may carry a session token on the self-service face.
    pub session_cookie: String,
    /// How often an idle event stream sends a keepalive comment.
    pub feed_keepalive: std::time::Duration,
    /// Shared Signals and back-channel logout; `None` when off.
    pub signals: Option<crate::signals::Signals>,
}

/// The registry of RPC services: each package's table, its RPCs for generic code, and its
/// tonic server.
macro_rules! services {
    ($($first:ident $(:: $rest:ident)*),+ $(,)?) => {
        /// Every RPC service served, one table per package.
        pub const SERVICES: &[ServiceInfo] = &[$($first $(:: $rest)*::SERVICE),+];

        /// Runs `visitor` for every RPC of every service.
        pub fn visit_rpcs(visitor: &mut impl Visit) {
            $($first $(:: $rest)*::visit(visitor);)+
        }

        /// Adds the tonic server of every service over `serve` to `routes`.
        pub(crate) fn grpc_servers<S: rpc::Serve>(
            routes: tonic::service::Routes,
            serve: S,
            max_message: usize,
        ) -> tonic::service::Routes {
            use tonic::codec::CompressionEncoding::Gzip;
            routes
            $(
                .add_service(
                    $first $(:: $rest)*::server(serve.clone())
                        .max_decoding_message_size(max_message)
                        .accept_compressed(Gzip)
                        .send_compressed(Gzip),
                )
            )+
        }
    };
}

services!(
    session_api::v2,
    session_api::v2beta,
    user_service::v2,
    events
);

/// The RPC whose gRPC/Connect path (`/<service>/<method>`) this is.
pub fn rpc_of_procedure(path: &str) -> Option<&'static RpcInfo> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    SERVICES
        .iter()
        .filter(|s| s.name == service)
        .flat_map(|s| s.rpcs)
        .find(|r| r.method == method)
}

/// Which face a request belongs to, and so in which shape it is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Face {
    Grpc,
    GrpcWeb,
    Connect,
    /// REST, and every path no other face owns (operations, unknown paths).
    Rest,
    SelfService,
    /// Kratos' admin session API: refused in Kratos' shape, like the self-service face.
    KratosAdmin,
    Admin,
}

/// Whether `path` is `prefix` or below it.
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

impl Face {
    /// The face of a request, by its path and content type.
    pub fn of(path: &str, content_type: Option<&str>) -> Self {
        match content_type {
            Some(c) if c.starts_with("application/grpc-web") => Face::GrpcWeb,
            Some(c) if c.starts_with("application/grpc") => Face::Grpc,
            _ if under(path, "/auth/admin/sessions") || under(path, "/auth/admin/identities") => {
                Face::KratosAdmin
            }
            _ if path.starts_with("/auth/admin/") => Face::Admin,
            _ if path.starts_with("/auth/") => Face::SelfService,
            _ if rpc_of_procedure(path).is_some() || path == events::WATCH_PROCEDURE => {
                Face::Connect
            }
            _ => Face::Rest,
        }
    }

    /// A refusal outside any handler (unknown route, wrong method, overload, timeout) in this
    /// face's shape, with `status` where the shape has an HTTP status of its own.
    pub fn refuse(self, status: StatusCode, error: &Error, headers: &HeaderMap) -> Response {
        match self {
            Face::Grpc | Face::GrpcWeb => {
                let code = status::grpc_code(error.kind());
                let mut response =
                    tonic::Status::new(code, error.message()).into_http::<axum::body::Body>();
                let content_type = if self == Face::Grpc {
                    "application/grpc"
                } else {
                    "application/grpc-web+proto"
                };
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static(content_type),
                );
                response
            }
            Face::Connect => connect::ConnectError::with_status(status, error).into_response(),
            Face::Rest => rest::RestError::with_status(status, error).into_response(),
            Face::Admin => admin::AdminError::with_status(status, error).into_response(),
            Face::SelfService | Face::KratosAdmin => {
                self_service::KratosError::with_status(status, error)
                    .for_request(headers)
                    .into_response()
            }
        }
    }
}

/// The HTTP router of every face, with `operations` (health, metrics, the API document)
/// beside them; unknown paths and wrong methods are refused in the shape of the path's face.
pub fn router(state: FaceState, operations: Router) -> Router {
    Router::new()
        .merge(connect::routes())
        .merge(rest::routes())
        .merge(sse::routes())
        .merge(connect_stream::routes())
        .merge(self_service::routes())
        .merge(kratos_admin::routes())
        .merge(admin::routes())
        .merge(admin_factors::routes())
        .merge(crate::signals::face::routes())
        .with_state(state)
        .merge(operations)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

fn transport_refusal(uri: &Uri, headers: &HeaderMap, status: StatusCode) -> Response {
    let kind = match status {
        StatusCode::NOT_FOUND => ErrorKind::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorKind::Unimplemented,
        _ => ErrorKind::InvalidArgument,
    };
    let message = status.canonical_reason().unwrap_or("Error");
    let error = Error::new(kind, error_ids::HTTP_REJECTED, message);
    Face::of(uri.path(), None).refuse(status, &error, headers)
}

async fn not_found(uri: Uri, headers: HeaderMap) -> Response {
    transport_refusal(&uri, &headers, StatusCode::NOT_FOUND)
}

async fn method_not_allowed(uri: Uri, headers: HeaderMap) -> Response {
    transport_refusal(&uri, &headers, StatusCode::METHOD_NOT_ALLOWED)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_has_one_face() {
        let cases = [
            ("/v2/sessions", None, Face::Rest),
            (
                "/zitadel.session.v2.SessionService/GetSession",
                None,
                Face::Connect,
            ),
            ("/zitadel.session.v2.SessionService/Nope", None, Face::Rest),
            (events::WATCH_PROCEDURE, None, Face::Connect),
            (
                "/sessiond.events.v1.SessionEventService/ListSessionEvents",
                None,
                Face::Connect,
            ),
            ("/v1/session-events", None, Face::Rest),
            ("/auth/sessions/events", None, Face::SelfService),
            (
                "/zitadel.session.v2.SessionService/GetSession",
                Some("application/grpc"),
                Face::Grpc,
            ),
            (
                "/anything",
                Some("application/grpc-web-text"),
                Face::GrpcWeb,
            ),
            ("/auth/sessions/whoami", None, Face::SelfService),
            ("/auth/admin/api/users", None, Face::Admin),
            ("/auth/admin/sessions", None, Face::KratosAdmin),
            ("/auth/admin/sessions/1/extend", None, Face::KratosAdmin),
            ("/auth/admin/identities/1/sessions", None, Face::KratosAdmin),
            ("/auth/admin/sessionsx", None, Face::Admin),
            ("/auth/admin/api/sessions", None, Face::Admin),
            ("/healthz", None, Face::Rest),
        ];
        for (path, content_type, face) in cases {
            assert_eq!(Face::of(path, content_type), face, "{path}");
        }
    }

    #[test]
    fn every_rpc_is_found_by_its_procedure() {
        for service in SERVICES {
            for rpc in service.rpcs {
                let found = rpc_of_procedure(&rpc.procedure()).map(|r| (r.service, r.method));
                assert_eq!(found, Some((rpc.service, rpc.method)));
            }
        }
    }
}
