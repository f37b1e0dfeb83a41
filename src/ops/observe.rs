//! What wraps every request on the listener, whatever its face:
//!
//! - a request id: `X-Request-Id` from the client when it is sane (1..128 visible ASCII),
//!   otherwise a fresh UUID; echoed on the response and carried by every log line;
//! - load shedding: at most `max_concurrent` requests in flight; past that a request is
//!   refused at once (gRPC RESOURCE_EXHAUSTED, HTTP 503 in the face's shape) instead of
//!   queueing without bound, so the latency of accepted requests stays bounded;
//! - a request timeout (gRPC DEADLINE_EXCEEDED, HTTP 504);
//! - one access log line per request (face, protocol, method, status, latency; never a
//!   header value or a body) and the request metrics;
//! - the request's span, with the same labels: with `--otlp-endpoint` it continues the
//!   caller's W3C trace and records the answer's status ([`super::trace`]).
//!
//! Refusals are built by the request's [`Face`]; this module knows no face's shape.

use std::borrow::Cow;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode};
use tracing::field::Empty;

use super::Ops;
use super::labels::{classify, streamed};
use super::trace;
use crate::domain::{Error, ErrorKind, error_ids};
use crate::faces::Face;
use crate::faces::edges::REQUEST_ID;

/// The id of the request being served (the client's `X-Request-Id`, or one made up).
#[derive(Clone, Debug)]
pub struct RequestId(pub HeaderValue);

/// A request id is a label, not a secret: a made-up one comes from the thread's generator
/// (uuid's `fast-rng`), not from a system call per request.
fn request_id(request: &Request) -> HeaderValue {
    request
        .headers()
        .get(REQUEST_ID)
        .filter(|v| {
            !v.is_empty() && v.len() <= 128 && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(|| {
            let mut text = uuid::Uuid::encode_buffer();
            let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
            HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("-"))
        })
}

/// A refusal of the middleware itself (overload, timeout), in the shape of the face.
fn refuse(face: Face, kind: ErrorKind, status: StatusCode, headers: &HeaderMap) -> Response {
    let message = match kind {
        ErrorKind::DeadlineExceeded => "request timed out",
        _ => "server overloaded, retry shortly",
    };
    let error = Error::new(kind, error_ids::OVERLOADED, message);
    face.refuse(status, &error, headers)
}

pub async fn middleware(State(ops): State<Ops>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&request);
    request.extensions_mut().insert(RequestId(id.clone()));
    let content_type = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let face = Face::of(request.uri().path(), content_type);
    let route = streamed(
        classify(request.method(), request.uri().path(), content_type),
        request.headers(),
    );
    let span = tracing::info_span!(
        "request",
        request_id = id.to_str().unwrap_or("-"),
        face = route.face,
        protocol = route.protocol,
        method = %route.method,
        status = Empty,
        code = Empty,
        otel.name = Empty,
        otel.kind = Empty,
        otel.status_code = Empty,
    );
    trace::begin_request(&span, request.headers(), &route);
    let _entered = span.enter();

    let mut response = match ops.permits.clone().try_acquire_owned() {
        Err(_) => {
            ops.metrics.shed(&route);
            refuse(
                face,
                ErrorKind::ResourceExhausted,
                StatusCode::SERVICE_UNAVAILABLE,
                request.headers(),
            )
        }
        Ok(permit) => {
            drop(_entered);
            let outcome = {
                use tracing::Instrument;
                tokio::time::timeout(ops.timeout, next.run(request).instrument(span.clone())).await
            };
            drop(permit);
            outcome.unwrap_or_else(|_| {
                refuse(
                    face,
                    ErrorKind::DeadlineExceeded,
                    StatusCode::GATEWAY_TIMEOUT,
                    &HeaderMap::new(),
                )
            })
        }
    };
    response.headers_mut().insert(REQUEST_ID, id);
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let code = match route.protocol {
        "grpc" | "grpc-web" => response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map_or(Cow::Borrowed("0"), |c| Cow::Owned(c.to_owned())),
        _ => Cow::Owned(status.to_string()),
    };
    ops.metrics.request(&route, &code, elapsed);
    let _entered = span.enter();
    tracing::info!(
        target: "sessiond::access",
        status,
        code = %code,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    trace::end_request(&span, &route, status, &code);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_id(id: Option<&[u8]>) -> Request {
        let mut request = Request::new(axum::body::Body::empty());
        if let Some(id) = id {
            request
                .headers_mut()
                .insert(REQUEST_ID, HeaderValue::from_bytes(id).unwrap());
        }
        request
    }

    #[test]
    fn a_sane_client_id_is_kept_and_any_other_is_replaced_by_a_fresh_uuid() {
        assert_eq!(request_id(&with_id(Some(b"req-42"))), "req-42");
        let long = [b'a'; 129];
        for given in [None, Some(&long[..]), Some(b"has space".as_slice())] {
            let made = request_id(&with_id(given));
            let uuid = uuid::Uuid::parse_str(made.to_str().unwrap()).expect("a uuid");
            assert_eq!(uuid.get_version_num(), 4);
            assert_eq!(made.len(), 36, "hyphenated: {made:?}");
            assert_ne!(made, request_id(&with_id(given)), "each one new");
        }
    }
}
