//! The Connect protocol, unary only: `POST /<package>.SessionService/<Method>` with
//! `application/json` or `application/proto` bodies (Content-Length or chunked), an optional
//! `Connect-Protocol-Version: 1` and `Connect-Timeout-Ms`. Errors are Connect's JSON
//! (`{"code":"not_found","message":…,"details":[…]}`) with the matching HTTP status.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use prost::Message;

use super::FaceState;
use super::body::{self, BodyError};
use super::session_api::{
    CreateV2, CreateV2beta, DeleteV2, DeleteV2beta, GetV2, GetV2beta, ListV2, ListV2beta, Rpc,
    SetV2, SetV2beta,
};
use super::status::connect_body;
use crate::domain::error_ids;
use crate::domain::{Error, ErrorKind};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Codec {
    Json,
    Proto,
}

pub fn error_response(error: &Error) -> Response {
    let (status, body) = connect_body(error);
    (status, axum::Json(body)).into_response()
}

fn protocol_error(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> Response {
    let mut response = error_response(&Error::new(
        kind,
        error_ids::CONNECT_REJECTED,
        message.into(),
    ));
    *response.status_mut() = status;
    response
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

async fn unary<R: Rpc>(
    State(state): State<FaceState>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // The body is read before any header is judged, so that an early rejection never leaves
    // an unread body behind on a keep-alive HTTP/1.1 connection.
    let bytes = match body::read_decoded(body, &headers, state.body_limit).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => {
            return protocol_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorKind::ResourceExhausted,
                format!("request body is larger than {} bytes", state.body_limit),
            );
        }
        Err(BodyError::Unreadable) => {
            return protocol_error(
                StatusCode::BAD_REQUEST,
                ErrorKind::InvalidArgument,
                "request body could not be read or decompressed",
            );
        }
        Err(BodyError::UnsupportedEncoding) => {
            let mut response = protocol_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorKind::Unimplemented,
                "unsupported content-encoding: use identity or gzip",
            );
            response
                .headers_mut()
                .insert("accept-encoding", HeaderValue::from_static("gzip"));
            return response;
        }
    };
    if method != Method::POST {
        return protocol_error(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::InvalidArgument,
            format!("{method} is not supported: Connect unary calls use POST"),
        );
    }
    let codec = match body::media_type(&headers).as_deref() {
        Some("application/json") => Codec::Json,
        Some("application/proto") => Codec::Proto,
        other => {
            return protocol_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorKind::InvalidArgument,
                format!(
                    "unsupported content type {:?}: use application/json or application/proto",
                    other.unwrap_or("")
                ),
            );
        }
    };
    if let Some(version) = headers.get("connect-protocol-version")
        && version.as_bytes() != b"1"
    {
        return protocol_error(
            StatusCode::BAD_REQUEST,
            ErrorKind::InvalidArgument,
            "connect-protocol-version must be 1",
        );
    }
    let deadline = match timeout(&headers) {
        Ok(deadline) => deadline,
        Err(()) => {
            return protocol_error(
                StatusCode::BAD_REQUEST,
                ErrorKind::InvalidArgument,
                "invalid Connect-Timeout-Ms header",
            );
        }
    };
    let request = match codec {
        Codec::Json if bytes.iter().all(u8::is_ascii_whitespace) => Ok(R::Request::default()),
        Codec::Json => serde_json::from_slice::<R::Request>(&bytes)
            .map_err(|e| format!("invalid JSON for {}: {e}", R::METHOD)),
        Codec::Proto => R::Request::decode(bytes)
            .map_err(|e| format!("invalid protobuf for {}: {e}", R::METHOD)),
    };
    let request = match request {
        Ok(request) => request,
        Err(message) => {
            return protocol_error(StatusCode::BAD_REQUEST, ErrorKind::InvalidArgument, message);
        }
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let call = async {
        let principal = state.api.authenticate(authorization).await?;
        R::call(&state.api, principal, request).await
    };
    let result = match deadline {
        None => call.await,
        Some(limit) => tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::DeadlineExceeded,
                error_ids::DEADLINE,
                "the request deadline was exceeded",
            ))
        }),
    };
    match result {
        Ok(response) => encode(codec, &response),
        Err(error) => error_response(&error),
    }
}

fn encode<M: Message + serde::Serialize>(codec: Codec, message: &M) -> Response {
    let (content_type, bytes) = match codec {
        Codec::Json => match serde_json::to_vec(message) {
            Ok(bytes) => ("application/json", bytes),
            Err(e) => return error_response(&Error::internal(error_ids::ENCODE_FAILED, e)),
        },
        Codec::Proto => ("application/proto", message.encode_to_vec()),
    };
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        bytes,
    )
        .into_response()
}

fn route<R: Rpc>(router: Router<FaceState>) -> Router<FaceState> {
    router.route(&format!("/{}/{}", R::SERVICE, R::METHOD), any(unary::<R>))
}

/// Every Connect route of both package versions.
pub fn routes() -> Router<FaceState> {
    let router = Router::new();
    let router = route::<ListV2>(router);
    let router = route::<GetV2>(router);
    let router = route::<CreateV2>(router);
    let router = route::<SetV2>(router);
    let router = route::<DeleteV2>(router);
    let router = route::<ListV2beta>(router);
    let router = route::<GetV2beta>(router);
    let router = route::<CreateV2beta>(router);
    let router = route::<SetV2beta>(router);
    route::<DeleteV2beta>(router)
}
