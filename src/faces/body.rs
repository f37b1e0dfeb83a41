//! Reading request bodies with a size limit, shared by the JSON faces.

use axum::body::{Body, Bytes};
use http_body_util::{BodyExt, LengthLimitError, Limited};

pub enum BodyError {
    TooLarge,
    Unreadable,
    UnsupportedEncoding,
}

/// Collects a body (Content-Length or chunked), failing once it exceeds `limit` bytes.
pub async fn read(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Unreadable),
    }
}

/// Reads a body and undoes its `Content-Encoding` (identity or gzip), so that neither the
/// compressed nor the decompressed size can exceed `limit`.
pub async fn read_decoded(
    body: Body,
    headers: &http::HeaderMap,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let bytes = read(body, limit).await?;
    match headers
        .get(http::header::CONTENT_ENCODING)
        .map(|v| v.as_bytes())
    {
        None | Some(b"identity") => Ok(bytes),
        Some(b"gzip") => {
            use std::io::Read;
            let mut out = Vec::new();
            let decoder = flate2::read::GzDecoder::new(bytes.as_ref());
            // One byte over the limit is enough to know the body is too large.
            let read = decoder
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|_| BodyError::Unreadable)?;
            if read > limit {
                Err(BodyError::TooLarge)
            } else {
                Ok(Bytes::from(out))
            }
        }
        Some(_) => Err(BodyError::UnsupportedEncoding),
    }
}

/// The media type of a `Content-Type` header, lower-cased, without parameters.
pub fn media_type(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}
