//! What wraps every request on the listener, whatever its face:
//!
//! - a request id: `X-Request-Id` from the client when it is sane (1..128 visible ASCII),
//!   otherwise a fresh UUID; echoed on the response and carried by every log line;
//! - load shedding: at most `max_concurrent` requests in flight; past that a request is
//!   refused at once (gRPC RESOURCE_EXHAUSTED, HTTP 503 in the face's shape) instead of
//!   queueing without bound, so the latency of accepted requests stays bounded;
//! - a request timeout (gRPC DEADLINE_EXCEEDED, HTTP 504);
//! - one access log line per request (face, protocol, method, status, latency; never a
//!   header value or a body) and the request metrics.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use tokio::sync::Semaphore;

use super::metrics::Metrics;
use crate::domain::error_ids;

pub const REQUEST_ID: &str = "x-request-id";

/// The id of the request being served (the client's `X-Request-Id`, or one made up).
#[derive(Clone, Debug)]
pub struct RequestId(pub HeaderValue);

/// Settings and shared state of the middleware.
#[derive(Clone)]
pub struct Observe {
    pub metrics: Metrics,
    permits: Arc<Semaphore>,
    timeout: Duration,
}

impl Observe {
    pub fn new(metrics: Metrics, max_concurrent: usize, timeout: Duration) -> Self {
        Self {
            metrics,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            timeout,
        }
    }
}

/// Which face, protocol and method a request is for; labels with bounded cardinality.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub face: &'static str,
    pub protocol: &'static str,
    pub method: Cow<'static, str>,
}

fn session_face(package: &str) -> &'static str {
    match package {
        "zitadel.session.v2.SessionService" => "session.v2",
        "zitadel.session.v2beta.SessionService" => "session.v2beta",
        "grpc.health.v1.Health" => "health",
        p if p.starts_with("grpc.reflection.") => "reflection",
        _ => "unknown",
    }
}

const KNOWN_SEGMENTS: &[&str] = &[
    "auth",
    "admin",
    "api",
    "users",
    "sessions",
    "whoami",
    "lock",
    "deactivate",
    "reactivate",
    "password",
    "v2",
    "v2beta",
    "search",
    "healthz",
    "readyz",
    "metrics",
];

/// The path with every id-like segment replaced by `{id}`.
fn template(path: &str) -> String {
    let mut out = String::new();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(if KNOWN_SEGMENTS.contains(&segment) {
            segment
        } else {
            "{id}"
        });
    }
    if out.is_empty() {
        String::from("/")
    } else {
        out
    }
}

pub fn classify(method: &http::Method, path: &str, content_type: Option<&str>) -> Route {
    let grpc_web = content_type.is_some_and(|c| c.starts_with("application/grpc-web"));
    let grpc = content_type.is_some_and(|c| c.starts_with("application/grpc"));
    let rpc = path.strip_prefix('/').and_then(|p| p.split_once('/'));
    if let Some((service, rpc_method)) = rpc.filter(|(s, _)| s.contains('.')) {
        let face = session_face(service);
        let protocol = if grpc_web {
            "grpc-web"
        } else if grpc {
            "grpc"
        } else {
            "connect"
        };
        let method = if face == "unknown" {
            Cow::Borrowed("other")
        } else {
            Cow::Owned(rpc_method.to_owned())
        };
        return Route {
            face,
            protocol,
            method,
        };
    }
    let rest = |face, name: &'static str| Route {
        face,
        protocol: "rest",
        method: Cow::Borrowed(name),
    };
    for (prefix, face) in [
        ("/v2/sessions", "session.v2"),
        ("/v2beta/sessions", "session.v2beta"),
    ] {
        if let Some(rest_path) = path.strip_prefix(prefix) {
            return match (method.as_str(), rest_path) {
                ("POST", "") => rest(face, "CreateSession"),
                ("POST", "/search") => rest(face, "ListSessions"),
                ("GET", _) => rest(face, "GetSession"),
                ("PATCH", _) => rest(face, "SetSession"),
                ("DELETE", _) => rest(face, "DeleteSession"),
                _ => rest(face, "other"),
            };
        }
    }
    let face = if path.starts_with("/auth/admin/") {
        "admin"
    } else if path.starts_with("/auth/") {
        "self-service"
    } else if matches!(path, "/healthz" | "/readyz" | "/metrics" | "/openapi.json") {
        "ops"
    } else {
        return Route {
            face: "unknown",
            protocol: "http",
            method: Cow::Borrowed("other"),
        };
    };
    Route {
        face,
        protocol: "http",
        method: Cow::Owned(format!("{method} {}", template(path))),
    }
}

fn request_id(request: &Request) -> HeaderValue {
    request
        .headers()
        .get(REQUEST_ID)
        .filter(|v| {
            !v.is_empty() && v.len() <= 128 && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .unwrap_or(HeaderValue::from_static("-"))
        })
}

/// A refusal in the shape of the request's face.
fn refuse(
    route: &Route,
    request: &Request,
    grpc_code: tonic::Code,
    status: StatusCode,
    message: &str,
) -> Response {
    if route.protocol == "grpc" || route.protocol == "grpc-web" {
        let status = tonic::Status::new(grpc_code, message);
        let mut response = status.into_http::<axum::body::Body>();
        let content_type = if route.protocol == "grpc" {
            "application/grpc"
        } else {
            "application/grpc-web+proto"
        };
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        return response;
    }
    let kind = match grpc_code {
        tonic::Code::DeadlineExceeded => crate::domain::ErrorKind::DeadlineExceeded,
        _ => crate::domain::ErrorKind::ResourceExhausted,
    };
    let error = crate::domain::Error::new(kind, error_ids::OVERLOADED, message.to_owned());
    let mut response = match route.protocol {
        "connect" => super::connect::error_response(&error),
        "rest" => super::rest::error_response(&error),
        // These two shapes repeat the HTTP status in the body: build them with the one sent.
        _ if route.face == "admin" => {
            super::admin::with_status(status, super::admin::code(&error), error.message())
        }
        _ => {
            super::self_service::with_status(status, error.id(), error.message(), request.headers())
        }
    };
    *response.status_mut() = status;
    response
}

fn grpc_code(response: &Response) -> Option<&str> {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
}

pub async fn middleware(
    State(observe): State<Observe>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = request_id(&request);
    request.extensions_mut().insert(RequestId(id.clone()));
    let content_type = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let route = classify(request.method(), request.uri().path(), content_type);
    let span = tracing::info_span!(
        "request",
        request_id = id.to_str().unwrap_or("-"),
        face = route.face,
        protocol = route.protocol,
        method = %route.method,
    );
    let _entered = span.enter();

    let mut response = match observe.permits.clone().try_acquire_owned() {
        Err(_) => {
            observe.metrics.shed(&route);
            refuse(
                &route,
                &request,
                tonic::Code::ResourceExhausted,
                StatusCode::SERVICE_UNAVAILABLE,
                "server overloaded, retry shortly",
            )
        }
        Ok(permit) => {
            drop(_entered);
            let outcome = {
                use tracing::Instrument;
                tokio::time::timeout(observe.timeout, next.run(request).instrument(span.clone()))
                    .await
            };
            drop(permit);
            match outcome {
                Ok(response) => response,
                Err(_) => {
                    let placeholder = Request::new(axum::body::Body::empty());
                    refuse(
                        &route,
                        &placeholder,
                        tonic::Code::DeadlineExceeded,
                        StatusCode::GATEWAY_TIMEOUT,
                        "request timed out",
                    )
                }
            }
        }
    };
    response.headers_mut().insert(REQUEST_ID, id);
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let code = match route.protocol {
        "grpc" | "grpc-web" => Cow::Owned(grpc_code(&response).unwrap_or("0").to_owned()),
        _ => Cow::Owned(status.to_string()),
    };
    observe.metrics.request(&route, &code, elapsed);
    let _entered = span.enter();
    tracing::info!(
        target: "sessiond::access",
        status,
        code = %code,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    response.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_labelled_with_bounded_names() {
        let get = http::Method::GET;
        let post = http::Method::POST;
        let r = classify(
            &post,
            "/zitadel.session.v2.SessionService/CreateSession",
            Some("application/grpc"),
        );
        assert_eq!(
            (r.face, r.protocol, r.method.as_ref()),
            ("session.v2", "grpc", "CreateSession")
        );
        let r = classify(
            &post,
            "/zitadel.session.v2beta.SessionService/ListSessions",
            Some("application/json"),
        );
        assert_eq!(
            (r.face, r.protocol, r.method.as_ref()),
            ("session.v2beta", "connect", "ListSessions")
        );
        let r = classify(&get, "/v2/sessions/123", None);
        assert_eq!(
            (r.face, r.protocol, r.method.as_ref()),
            ("session.v2", "rest", "GetSession")
        );
        let r = classify(
            &http::Method::DELETE,
            "/auth/admin/api/users/42/sessions/7",
            None,
        );
        assert_eq!(
            (r.face, r.method.as_ref()),
            ("admin", "DELETE /auth/admin/api/users/{id}/sessions/{id}")
        );
        let r = classify(&get, "/auth/sessions/whoami", None);
        assert_eq!(
            (r.face, r.method.as_ref()),
            ("self-service", "GET /auth/sessions/whoami")
        );
        let r = classify(&get, "/random/junk/path", None);
        assert_eq!((r.face, r.method.as_ref()), ("unknown", "other"));
    }
}
