//! The Connect protocol, unary only: `POST /<package>.<Service>/<Method>` for every RPC of
//! every service, with `application/json` or `application/proto` bodies (Content-Length or
//! chunked), an optional `Connect-Protocol-Version: 1` and `Connect-Timeout-Ms`. Errors are
//! Connect's JSON (`{"code":"not_found","message":…,"details":[…]}`) with the matching HTTP
//! status ([`ConnectError`]).

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use prost::Message;
use serde_json::Value;

use super::FaceState;
use super::edges::{Body, Credentials, Rejection, media_type};
use super::rpc::{Rpc, Serve, Visit};
use super::status::connect_body;
use crate::domain::error_ids;
use crate::domain::{Error, ErrorKind};

/// An error in Connect's shape.
pub struct ConnectError {
    status: StatusCode,
    body: Value,
    /// Whether to say which encodings are accepted (after an unsupported one).
    accept_gzip: bool,
}

impl From<Error> for ConnectError {
    fn from(error: Error) -> Self {
        let (status, body) = connect_body(&error);
        Self {
            status,
            body,
            accept_gzip: false,
        }
    }
}

impl ConnectError {
    /// An error sent with a transport status of its own (413, 415, 405, 503, …).
    pub fn with_status(status: StatusCode, error: &Error) -> Self {
        let (_, body) = connect_body(error);
        Self {
            status,
            body,
            accept_gzip: false,
        }
    }

    fn protocol(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> Self {
        let error = Error::new(kind, error_ids::CONNECT_REJECTED, message.into());
        Self::with_status(status, &error)
    }
}

impl From<Rejection> for ConnectError {
    fn from(rejection: Rejection) -> Self {
        use ErrorKind::{InvalidArgument, ResourceExhausted, Unimplemented};
        match rejection {
            Rejection::TooLarge(limit) => Self::protocol(
                StatusCode::PAYLOAD_TOO_LARGE,
                ResourceExhausted,
                format!("request body is larger than {limit} bytes"),
            ),
            Rejection::Unreadable => Self::protocol(
                StatusCode::BAD_REQUEST,
                InvalidArgument,
                "request body could not be read or decompressed",
            ),
            Rejection::UnsupportedEncoding => Self {
                accept_gzip: true,
                ..Self::protocol(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    Unimplemented,
                    "unsupported content-encoding: use identity or gzip",
                )
            },
            Rejection::UnsupportedType(other) => Self::protocol(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                InvalidArgument,
                format!(
                    "unsupported content type {:?}: use application/json or application/proto",
                    other.unwrap_or_default()
                ),
            ),
            Rejection::Path(message) | Rejection::Json(message) => {
                Self::protocol(StatusCode::BAD_REQUEST, InvalidArgument, message)
            }
            Rejection::Query => Self::protocol(
                StatusCode::BAD_REQUEST,
                InvalidArgument,
                "malformed query string",
            ),
        }
    }
}

impl IntoResponse for ConnectError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if self.accept_gzip {
            response
                .headers_mut()
                .insert("accept-encoding", HeaderValue::from_static("gzip"));
        }
        response
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Codec {
    Json,
    Proto,
}

/// The `Connect-Timeout-Ms` deadline, if any; `Err` when the header is malformed.
fn timeout(headers: &HeaderMap) -> Result<Option<Duration>, ()> {
    let Some(value) = headers.get("connect-timeout-ms") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .filter(|v| !v.is_empty() && v.len() <= 10)
        .and_then(|v| v.parse::<u64>().ok())
        .map(|ms| Some(Duration::from_millis(ms)))
        .ok_or(())
}

/// The codec and deadline of a call, once its method and headers are judged.
fn judge(method: &Method, headers: &HeaderMap) -> Result<(Codec, Option<Duration>), ConnectError> {
    let bad = |message: &str| {
        ConnectError::protocol(StatusCode::BAD_REQUEST, ErrorKind::InvalidArgument, message)
    };
    if method != Method::POST {
        return Err(ConnectError::protocol(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::InvalidArgument,
            format!("{method} is not supported: Connect unary calls use POST"),
        ));
    }
    let codec = match media_type(headers).as_deref() {
        Some("application/json") => Codec::Json,
        Some("application/proto") => Codec::Proto,
        other => return Err(Rejection::UnsupportedType(other.map(str::to_owned)).into()),
    };
    if headers
        .get("connect-protocol-version")
        .is_some_and(|v| v.as_bytes() != b"1")
    {
        return Err(bad("connect-protocol-version must be 1"));
    }
    let deadline = timeout(headers).map_err(|()| bad("invalid Connect-Timeout-Ms header"))?;
    Ok((codec, deadline))
}

// The body is read (by the `Body` extractor) before any header is judged, so that an early
// rejection never leaves an unread body behind on a keep-alive HTTP/1.1 connection.
async fn unary<R: Rpc>(
    State(state): State<FaceState>,
    method: Method,
    credentials: Credentials,
    body: Body<ConnectError>,
) -> Result<Response, ConnectError> {
    let (codec, deadline) = judge(&method, &body.headers)?;
    let bytes = body.bytes;
    let request = match codec {
        Codec::Json if bytes.iter().all(u8::is_ascii_whitespace) => Ok(R::Request::default()),
        Codec::Json => serde_json::from_slice::<R::Request>(&bytes)
            .map_err(|e| format!("invalid JSON for {}: {e}", R::INFO.method)),
        Codec::Proto => R::Request::decode(bytes)
            .map_err(|e| format!("invalid protobuf for {}: {e}", R::INFO.method)),
    }
    .map_err(Rejection::Json)?;
    let call = state.api.serve::<R>(credentials, request);
    let response = match deadline {
        None => call.await?,
        Some(limit) => tokio::time::timeout(limit, call).await.map_err(|_| {
            Error::new(
                ErrorKind::DeadlineExceeded,
                error_ids::DEADLINE,
                "the request deadline was exceeded",
            )
        })??,
    };
    encode(codec, &response)
}

fn encode<M: Message + serde::Serialize>(
    codec: Codec,
    message: &M,
) -> Result<Response, ConnectError> {
    let (content_type, bytes) = match codec {
        Codec::Json => (
            "application/json",
            serde_json::to_vec(message)
                .map_err(|e| Error::internal(error_ids::ENCODE_FAILED, e))?,
        ),
        Codec::Proto => ("application/proto", message.encode_to_vec()),
    };
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        bytes,
    )
        .into_response())
}

/// Every Connect route: one per RPC of every service.
pub fn routes() -> Router<FaceState> {
    struct Routes(Router<FaceState>);
    impl Visit for Routes {
        fn rpc<R: Rpc>(&mut self) {
            let router = std::mem::take(&mut self.0);
            self.0 = router.route(&R::INFO.procedure(), any(unary::<R>));
        }
    }
    let mut routes = Routes(Router::new());
    super::visit_rpcs(&mut routes);
    routes.0
}
