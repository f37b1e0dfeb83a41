//! gRPC-Web by hand: message framing, text (base64) decoding, trailer parsing and one call.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// One length-prefixed gRPC / gRPC-Web message frame.
pub fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 5);
    out.push(flag);
    out.extend_from_slice(&u32::try_from(payload.len()).expect("len").to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A parsed gRPC-Web answer.
#[derive(Debug)]
pub struct GrpcWebResponse {
    pub http_status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub messages: Vec<Vec<u8>>,
    /// The status from the trailer frame, or from the headers of a trailers-only answer.
    pub status: Option<tonic::Status>,
}

/// Decodes gRPC-Web text: base64 in padded 4-character quanta, possibly one run per frame.
fn decode_grpc_web_text(body: &[u8]) -> Vec<u8> {
    let clean: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let mut out = Vec::new();
    for quantum in clean.chunks(4) {
        out.extend(STANDARD.decode(quantum).expect("gRPC-Web text is base64"));
    }
    out
}

/// Parses a gRPC-Web body (already base64-decoded for the text variant).
pub fn parse_grpc_web(
    http_status: u16,
    headers: reqwest::header::HeaderMap,
    body: &[u8],
) -> GrpcWebResponse {
    let mut messages = Vec::new();
    let mut trailers = None;
    let mut rest = body;
    while !rest.is_empty() {
        assert!(rest.len() >= 5, "truncated gRPC-Web frame header: {rest:?}");
        let flag = rest[0];
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        assert!(rest.len() >= 5 + len, "truncated gRPC-Web frame");
        let payload = &rest[5..5 + len];
        if flag & 0x80 != 0 {
            assert!(trailers.is_none(), "one trailer frame only");
            trailers = Some(trailer_map(payload));
        } else {
            assert!(trailers.is_none(), "no data after the trailer frame");
            messages.push(payload.to_vec());
        }
        rest = &rest[5 + len..];
    }
    let status = match &trailers {
        Some(map) => tonic::Status::from_header_map(map),
        None => tonic::Status::from_header_map(&headers),
    };
    GrpcWebResponse {
        http_status,
        headers,
        messages,
        status,
    }
}

fn trailer_map(payload: &[u8]) -> http::HeaderMap {
    let text = std::str::from_utf8(payload).expect("trailers are ASCII");
    let mut map = http::HeaderMap::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').expect("name: value");
        map.append(
            http::HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes())
                .expect("header name"),
            http::HeaderValue::from_str(value.trim()).expect("header value"),
        );
    }
    map
}

/// Posts one gRPC-Web call with `client` and parses the answer.
pub async fn grpc_web_call(
    client: &reqwest::Client,
    url: &str,
    auth: Option<&str>,
    message: &[u8],
    text: bool,
) -> GrpcWebResponse {
    let content_type = if text {
        "application/grpc-web-text"
    } else {
        "application/grpc-web+proto"
    };
    let framed = frame(0, message);
    let body = if text {
        STANDARD.encode(&framed).into_bytes()
    } else {
        framed
    };
    let mut request = client
        .post(url)
        .header("content-type", content_type)
        .header("accept", content_type)
        .header("x-grpc-web", "1")
        .body(body);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = request.send().await.expect("gRPC-Web request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("gRPC-Web body");
    let raw = if text {
        decode_grpc_web_text(&bytes)
    } else {
        bytes.to_vec()
    };
    parse_grpc_web(status, headers, &raw)
}
