//! The no-op ceiling: sessiond's transport stack with handlers that answer at once.
//!
//! Same generated protos (`sessiond::faces::pb`), the same gRPC stack
//! (`sessiond::faces::grpc::service` itself: every service, health and reflection, tonic-web,
//! the same response mapping) over a stand-in that answers at once, the same protocol switch
//! (`sessiond::faces::ProtocolSwitch`), the same Connect and REST paths (from sessiond's RPC
//! lists, `sessiond::faces::visit_rpcs`), the same
//! CORS layer and the same listener (`sessiond::app::serve`: one port, HTTP/1.1 and h2c,
//! TCP_NODELAY, the same header limit). What is missing is everything a handler does: no
//! authentication, no core, no store. Request bodies are still decoded into the request message (tonic does that before
//! a gRPC handler runs, so the JSON faces do it too) and a default response is encoded.

use std::net::SocketAddr;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, on};
use http::{HeaderName, Method, StatusCode, header};
use prost::Message;
use sessiond::domain::Error;
use sessiond::faces::ProtocolSwitch;
use sessiond::faces::edges::Credentials;
use sessiond::faces::grpc::GrpcService;
use sessiond::faces::rpc::{Rpc, Serve, Visit};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Same default as `sessiond serve --body-limit`.
const BODY_LIMIT: usize = 1024 * 1024;

/// Answers every RPC at once with its default response.
#[derive(Clone)]
struct Noop;

impl Serve for Noop {
    async fn serve<R: Rpc>(&self, _: Credentials, _: R::Request) -> Result<R::Response, Error> {
        Ok(R::Response::default())
    }
}

/// The gRPC side: `sessiond::faces::grpc::service` itself, over [`Noop`].
fn grpc_service() -> anyhow::Result<GrpcService> {
    let (_reporter, health) = tonic_health::server::health_reporter();
    sessiond::faces::grpc::service(Noop, BODY_LIMIT, health)
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
    (R::INFO.http.success, axum::Json(R::Response::default())).into_response()
}

/// REST GET: nothing to decode but the path.
async fn rest_get<R: Rpc>() -> Response {
    (R::INFO.http.success, axum::Json(R::Response::default())).into_response()
}

async fn whoami() -> Response {
    axum::Json(serde_json::json!({})).into_response()
}

/// The Connect and REST routes of every RPC, from sessiond's lists.
struct Routes(Router);

impl Visit for Routes {
    fn rpc<R: Rpc>(&mut self) {
        let rule = R::INFO.http;
        let router = std::mem::take(&mut self.0).route(&R::INFO.procedure(), any(connect::<R>));
        self.0 = if rule.body {
            router.route(rule.path, on(rule.verb.filter(), rest_body::<R>))
        } else {
            router.route(rule.path, on(rule.verb.filter(), rest_get::<R>))
        };
    }
}

fn http_router() -> Router {
    let mut routes = Routes(Router::new());
    sessiond::faces::visit_rpcs(&mut routes);
    routes
        .0
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
