//! Connect's streaming protocol.
//!
//! - `WatchSessionEvents` (the event feed) is served here directly, with both codecs
//!   (`application/connect+proto` and `application/connect+json`), over HTTP/1.1 and h2: the
//!   one request envelope is decoded, the core's stream becomes message envelopes, and the
//!   last envelope (`flags = 0x02`) is `{}` or `{"error":{code,message,details}}`.
//! - Other streams (gRPC server reflection, `application/connect+proto` only) go to the gRPC
//!   service as they are, since Connect's envelopes are gRPC's length-prefixed frames; the
//!   answer's trailers become the end-of-stream envelope. This is what lets
//!   `buf curl --list-services http://host:8080` work with its default protocol.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body::Frame;
use http_body_util::StreamBody;
use prost::Message;
use serde_json::json;
use tower::ServiceExt;

use super::FaceState;
use super::connect::ConnectError;
use super::edges::{Credentials, media_type};
use super::events::{WATCH_PROCEDURE, event_to_pb};
use super::grpc::GrpcService;
use super::pb::sessiond::events::v1::WatchSessionEventsRequest;
use super::rpc::Serve;
use super::status::{connect_body, connect_code};
use crate::core::{Encoding, Events};
use crate::domain::{Error, SessionEvent, error_ids};

/// Whether a request speaks Connect's streaming protocol with protobuf messages to a stream
/// the gRPC service answers (not one served by [`routes`]).
pub fn is_connect_stream(request: &http::Request<Body>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes() == b"application/connect+proto")
        && request.uri().path() != WATCH_PROCEDURE
}

/// The end-of-stream envelope for gRPC status fields (`grpc-status`, `grpc-message`).
fn end_of_stream(fields: &HeaderMap) -> Bytes {
    let code = fields
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok());
    let body = match code {
        None | Some(0) => json!({}),
        Some(code) => {
            let message = fields
                .get("grpc-message")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            json!({ "error": { "code": connect_code(tonic::Code::from_i32(code)), "message": message } })
        }
    };
    envelope(END_STREAM, body.to_string().as_bytes())
}

pub async fn serve(
    grpc: GrpcService,
    mut request: http::Request<Body>,
) -> Result<http::Response<Body>, Infallible> {
    let headers = request.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc+proto"),
    );
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    let response = grpc.oneshot(request).await?;
    let (mut parts, body) = response.into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/connect+proto"),
    );
    // A trailers-only answer carries its status in the headers.
    let trailers_only = parts.headers.contains_key("grpc-status");
    let mut status_fields = HeaderMap::new();
    for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        if let Some(v) = parts.headers.remove(name) {
            status_fields.insert(name, v);
        }
    }
    let frames = Box::pin(http_body_util::BodyStream::new(body));
    let converted = futures_util::stream::unfold(
        (frames, trailers_only.then_some(status_fields)),
        |(mut inner, pending)| async move {
            match inner.next().await {
                Some(Ok(frame)) => {
                    let frame = match frame.into_trailers() {
                        Ok(trailers) => Frame::data(end_of_stream(&trailers)),
                        Err(frame) => frame,
                    };
                    Some((Ok(frame), (inner, pending)))
                }
                Some(Err(e)) => Some((Err(e), (inner, pending))),
                None => {
                    pending.map(|status| (Ok(Frame::data(end_of_stream(&status))), (inner, None)))
                }
            }
        },
    );
    Ok(http::Response::from_parts(
        parts,
        Body::new(StreamBody::new(converted)),
    ))
}

/// The streaming RPCs served here rather than by the gRPC service: the event watch, in both
/// of Connect's streaming codecs (`application/connect+proto` and `application/connect+json`).
pub fn routes() -> axum::Router<FaceState> {
    axum::Router::new().route(WATCH_PROCEDURE, axum::routing::any(watch))
}

/// A Connect envelope: flags, the payload's length (big-endian), the payload.
fn envelope(flags: u8, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(flags);
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// The end-of-stream envelope: `{}` on success, `{"error": …}` (Connect's error JSON) on
/// failure.
fn end_with(error: Option<&Error>) -> Bytes {
    let body = match error {
        None => json!({}),
        Some(error) => json!({ "error": connect_body(error).1 }),
    };
    envelope(END_STREAM, body.to_string().as_bytes())
}

const END_STREAM: u8 = 0x02;
const COMPRESSED: u8 = 0x01;

#[derive(Clone, Copy, PartialEq, Eq)]
enum StreamCodec {
    Json,
    Proto,
}

impl StreamCodec {
    /// The encoding of an event's envelope, shared by every stream of this codec.
    fn encoding(self) -> Encoding {
        match self {
            StreamCodec::Json => Encoding::ConnectJson,
            StreamCodec::Proto => Encoding::ConnectProto,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            StreamCodec::Json => "application/connect+json",
            StreamCodec::Proto => "application/connect+proto",
        }
    }
}

fn malformed(message: impl Into<String>) -> Error {
    Error::invalid_argument(error_ids::CONNECT_REJECTED, message.into())
}

/// The one request message of a server-streaming call, from its envelope.
fn request_message(codec: StreamCodec, body: &[u8]) -> Result<WatchSessionEventsRequest, Error> {
    let (head, rest) = body
        .split_at_checked(5)
        .ok_or_else(|| malformed("the request holds no complete envelope"))?;
    let flags = head[0];
    let length = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if flags & COMPRESSED != 0 {
        return Err(malformed("compressed request messages are not supported"));
    }
    if flags != 0 || rest.len() != length {
        return Err(malformed(
            "a server-streaming request is exactly one uncompressed message envelope",
        ));
    }
    match codec {
        StreamCodec::Json => serde_json::from_slice(rest)
            .map_err(|e| malformed(format!("invalid JSON for WatchSessionEvents: {e}"))),
        StreamCodec::Proto => WatchSessionEventsRequest::decode(rest)
            .map_err(|e| malformed(format!("invalid protobuf for WatchSessionEvents: {e}"))),
    }
}

/// The envelopes of a batch of events in one buffer, made once per codec and shared.
fn event_envelopes(codec: StreamCodec, events: &Events) -> Result<Bytes, Error> {
    events.encoded(codec.encoding(), |event| encode_event(codec, event))
}

fn encode_event(codec: StreamCodec, event: &SessionEvent) -> Result<Bytes, Error> {
    let message = event_to_pb(event);
    let payload = match codec {
        StreamCodec::Json => serde_json::to_vec(&message)
            .map_err(|e| Error::internal(error_ids::ENCODE_FAILED, e))?,
        StreamCodec::Proto => message.encode_to_vec(),
    };
    Ok(envelope(0, &payload))
}

/// `WatchSessionEvents` over Connect streaming, on HTTP/1.1 and h2 alike. The answer is
/// always HTTP 200 once the call is understood; errors, before or during the stream, are the
/// end-of-stream envelope's.
async fn watch(
    State(state): State<FaceState>,
    method: Method,
    credentials: Credentials,
    body: super::edges::Body<ConnectError>,
) -> Response {
    let codec = match media_type(&body.headers).as_deref() {
        Some("application/connect+json") => StreamCodec::Json,
        Some("application/connect+proto") => StreamCodec::Proto,
        other => {
            let error = malformed(format!(
                "unsupported content type {:?}: use application/connect+json or application/connect+proto",
                other.unwrap_or_default()
            ));
            return ConnectError::with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE, &error)
                .into_response();
        }
    };
    if method != Method::POST {
        let error = malformed(format!(
            "{method} is not supported: Connect streams use POST"
        ));
        return ConnectError::with_status(StatusCode::METHOD_NOT_ALLOWED, &error).into_response();
    }
    let opened = match request_message(codec, &body.bytes) {
        Ok(request) => state.api.watch_session_events(credentials, request).await,
        Err(error) => Err(error),
    };
    let frames = match opened {
        Err(error) => futures_util::stream::iter([end_with(Some(&error))]).boxed(),
        Ok(events) => futures_util::stream::unfold(Some(events), move |events| async move {
            let mut events = events?;
            match events.next().await {
                Some(Ok(batch)) => match event_envelopes(codec, &batch) {
                    Ok(frame) => Some((frame, Some(events))),
                    Err(error) => Some((end_with(Some(&error)), None)),
                },
                Some(Err(error)) => Some((end_with(Some(&error)), None)),
                None => Some((end_with(None), None)),
            }
        })
        .boxed(),
    };
    let mut response = Body::from_stream(frames.map(Ok::<_, Infallible>)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(codec.content_type()),
    );
    response
}
