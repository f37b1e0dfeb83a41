//! Connect's streaming protocol (`application/connect+proto`), for the streaming services we
//! host (gRPC server reflection): the envelopes are gRPC's length-prefixed frames, so the
//! request goes to the gRPC service as is, and the answer's trailers become Connect's final
//! end-of-stream envelope (`flags = 0x02`, JSON `{}` or `{"error":{code,message}}`). This is
//! what lets `buf curl --list-services http://host:8080` work with its default protocol.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, header};
use http_body::Frame;
use http_body_util::StreamBody;
use serde_json::json;
use tower::ServiceExt;

use super::grpc::GrpcService;
use super::status::connect_code;

/// Whether a request speaks Connect's streaming protocol with protobuf messages.
pub fn is_connect_stream(request: &http::Request<Body>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes() == b"application/connect+proto")
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
    let payload = body.to_string().into_bytes();
    let mut envelope = Vec::with_capacity(5 + payload.len());
    envelope.push(0x02);
    envelope.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    envelope.extend_from_slice(&payload);
    Bytes::from(envelope)
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
