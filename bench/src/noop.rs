//! The no-op ceiling: sessiond's transport stack with handlers that answer at once.
//!
//! Same generated protos (`sessiond::faces::pb`), same gRPC stack (tonic `Routes` with both
//! package versions, health and reflection, tonic-web's `GrpcWebLayer`, the same response
//! mapping), same protocol switch (`sessiond::faces::ProtocolSwitch`), the same Connect and
//! REST paths (derived from the `Rpc` constants of `sessiond::faces::session_api`), the same
//! CORS layer and the same listener (`sessiond::app::serve`: one port, HTTP/1.1 and h2c,
//! TCP_NODELAY, the same header limit). What is missing is everything a handler does: no
//! authentication, no core, no store. Request bodies are still decoded into the request message (tonic does that before
//! a gRPC handler runs, so the JSON faces do it too) and a default response is encoded.

use std::net::SocketAddr;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use http::{HeaderName, HeaderValue, Method, StatusCode, header};
use prost::Message;
use sessiond::faces::ProtocolSwitch;
use sessiond::faces::grpc::GrpcService;
use sessiond::faces::pb::zitadel::session::{v2, v2beta};
use sessiond::faces::session_api::{
    CreateV2, CreateV2beta, DeleteV2, DeleteV2beta, GetV2, GetV2beta, ListV2, ListV2beta, Rpc,
    SetV2, SetV2beta,
};
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Same default as `sessiond serve --body-limit`.
const BODY_LIMIT: usize = 1024 * 1024;

struct NoopV2;
struct NoopV2beta;

macro_rules! noop_service {
    ($server:ty, $pkg:ident) => {
        #[tonic::async_trait]
        impl $pkg::session_service_server::SessionService for $server {
            async fn list_sessions(
                &self,
                _request: GrpcRequest<$pkg::ListSessionsRequest>,
            ) -> Result<GrpcResponse<$pkg::ListSessionsResponse>, Status> {
                Ok(GrpcResponse::new(Default::default()))
            }

            async fn get_session(
                &self,
                _request: GrpcRequest<$pkg::GetSessionRequest>,
            ) -> Result<GrpcResponse<$pkg::GetSessionResponse>, Status> {
                Ok(GrpcResponse::new(Default::default()))
            }

            async fn create_session(
                &self,
                _request: GrpcRequest<$pkg::CreateSessionRequest>,
            ) -> Result<GrpcResponse<$pkg::CreateSessionResponse>, Status> {
                Ok(GrpcResponse::new(Default::default()))
            }

            async fn set_session(
                &self,
                _request: GrpcRequest<$pkg::SetSessionRequest>,
            ) -> Result<GrpcResponse<$pkg::SetSessionResponse>, Status> {
                Ok(GrpcResponse::new(Default::default()))
            }

            async fn delete_session(
                &self,
                _request: GrpcRequest<$pkg::DeleteSessionRequest>,
            ) -> Result<GrpcResponse<$pkg::DeleteSessionResponse>, Status> {
                Ok(GrpcResponse::new(Default::default()))
            }
        }
    };
}

noop_service!(NoopV2, v2);
noop_service!(NoopV2beta, v2beta);

/// The gRPC side, built exactly like `sessiond::faces::grpc::service`.
fn grpc_service() -> anyhow::Result<GrpcService> {
    use tonic::codec::CompressionEncoding::Gzip;
    let v2 = v2::session_service_server::SessionServiceServer::new(NoopV2)
        .max_decoding_message_size(BODY_LIMIT)
        .accept_compressed(Gzip)
        .send_compressed(Gzip);
    let v2beta = v2beta::session_service_server::SessionServiceServer::new(NoopV2beta)
        .max_decoding_message_size(BODY_LIMIT)
        .accept_compressed(Gzip)
        .send_compressed(Gzip);
    let (_reporter, health) = tonic_health::server::health_reporter();
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(sessiond::faces::pb::FILE_DESCRIPTOR_SET)
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
        .map_response(status_rewrite_resource_exhausted)
        .map_response(status_rewrite_invalid_argument)
        .service(routes);
    Ok(GrpcService::new(svc))
}

/// The same two header rewrites sessiond applies to every gRPC answer (they only look at
/// headers, so the ceiling pays for them too).
fn status_rewrite_resource_exhausted<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let out_of_range = headers
        .get("grpc-status")
        .is_some_and(|s| s.as_bytes() == b"11");
    let too_large = headers.get("grpc-message").is_some_and(|m| {
        m.to_str()
            .is_ok_and(|m| m.contains("too%20large") || m.contains("too large"))
    });
    if out_of_range && too_large {
        headers.insert("grpc-status", HeaderValue::from_static("8"));
    }
    response
}

fn status_rewrite_invalid_argument<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let internal = headers
        .get("grpc-status")
        .is_some_and(|s| s.as_bytes() == b"13");
    if internal && !headers.contains_key("grpc-status-details-bin") {
        headers.insert("grpc-status", HeaderValue::from_static("3"));
    }
    response
}

async fn body_bytes(body: Body) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| StatusCode::PAYLOAD_TOO_LARGE.into_response())
}

fn is_proto(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/proto"))
}

/// Connect unary: decode the request (JSON or proto), answer the default response.
async fn connect<R: Rpc>(request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match body_bytes(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let proto = is_proto(&parts.headers);
    let decoded = if proto {
        R::Request::decode(bytes).map_err(|e| e.to_string())
    } else if bytes.iter().all(u8::is_ascii_whitespace) {
        Ok(R::Request::default())
    } else {
        serde_json::from_slice::<R::Request>(&bytes).map_err(|e| e.to_string())
    };
    if let Err(message) = decoded {
        return (StatusCode::BAD_REQUEST, message).into_response();
    }
    let response = R::Response::default();
    if proto {
        (
            [(header::CONTENT_TYPE, "application/proto")],
            response.encode_to_vec(),
        )
            .into_response()
    } else {
        match serde_json::to_vec(&response) {
            Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        }
    }
}

/// REST with a JSON body: decode it, answer the default response.
async fn rest_body<R: Rpc>(request: Request) -> Response {
    let bytes = match body_bytes(request.into_body()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if !bytes.iter().all(u8::is_ascii_whitespace)
        && let Err(e) = serde_json::from_slice::<R::Request>(&bytes)
    {
        return (StatusCode::BAD_REQUEST, e.to_string()).into_response();
    }
    let status = if R::METHOD == "CreateSession" {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, axum::Json(R::Response::default())).into_response()
}

/// REST GET: nothing to decode but the path.
async fn rest_get<R: Rpc>() -> Response {
    axum::Json(R::Response::default()).into_response()
}

async fn whoami() -> Response {
    axum::Json(serde_json::json!({})).into_response()
}

fn http_router() -> Router {
    fn connect_route<R: Rpc>(router: Router) -> Router {
        router.route(&format!("/{}/{}", R::SERVICE, R::METHOD), any(connect::<R>))
    }
    fn rest_version<L: Rpc, G: Rpc, C: Rpc, S: Rpc, D: Rpc>(
        router: Router,
        prefix: &str,
    ) -> Router {
        router
            .route(&format!("{prefix}/sessions"), post(rest_body::<C>))
            .route(&format!("{prefix}/sessions/search"), post(rest_body::<L>))
            .route(
                &format!("{prefix}/sessions/{{session_id}}"),
                get(rest_get::<G>)
                    .patch(rest_body::<S>)
                    .delete(rest_body::<D>),
            )
    }
    let mut router = Router::new();
    router = connect_route::<ListV2>(router);
    router = connect_route::<GetV2>(router);
    router = connect_route::<CreateV2>(router);
    router = connect_route::<SetV2>(router);
    router = connect_route::<DeleteV2>(router);
    router = connect_route::<ListV2beta>(router);
    router = connect_route::<GetV2beta>(router);
    router = connect_route::<CreateV2beta>(router);
    router = connect_route::<SetV2beta>(router);
    router = connect_route::<DeleteV2beta>(router);
    router = rest_version::<ListV2, GetV2, CreateV2, SetV2, DeleteV2>(router, "/v2");
    router = rest_version::<ListV2beta, GetV2beta, CreateV2beta, SetV2beta, DeleteV2beta>(
        router, "/v2beta",
    );
    router
        .route("/auth/sessions/whoami", get(whoami))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { StatusCode::NOT_FOUND })
}

/// The CORS layer of `sessiond::app` (any origin, the same headers).
fn cors() -> CorsLayer {
    let allow_headers = [
        "authorization",
        "content-type",
        "x-grpc-web",
        "x-user-agent",
        "grpc-timeout",
        "connect-protocol-version",
        "connect-timeout-ms",
        "x-session-token",
        "x-request-id",
    ]
    .map(HeaderName::from_static);
    let expose_headers = [
        "grpc-status",
        "grpc-message",
        "grpc-status-details-bin",
        "x-request-id",
    ]
    .map(HeaderName::from_static);
    CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(allow_headers)
        .expose_headers(expose_headers)
        .max_age(std::time::Duration::from_secs(7200))
}

pub fn router() -> anyhow::Result<Router> {
    let switch = ProtocolSwitch::new(grpc_service()?, http_router());
    Ok(Router::new().fallback_service(switch).layer(cors()))
}

/// Serves the no-op stack until SIGTERM/SIGINT.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let router = router()?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("noop listening on {}", listener.local_addr()?);
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| eprintln!("no SIGTERM handler: {e}"))
            .ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    };
    // The same protocol limits as sessiond with its default settings.
    let limits = sessiond::app::Limits {
        max_header_bytes: sessiond::settings::Settings::default().max_header_bytes,
    };
    sessiond::app::serve(listener, router, limits, shutdown).await?;
    Ok(())
}
