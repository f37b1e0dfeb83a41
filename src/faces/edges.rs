//! The request edges every HTTP face shares: credentials, path parameters, query strings and
//! bodies, each read once here. What a face cannot take becomes a [`Rejection`], which the
//! face turns into its own error ([`FaceError`]), so every refusal of every route is in its
//! face's shape. The extractors take the face's error type as a parameter:
//! `Path<String, RestError>` rejects in the REST shape, `Path<String, AdminError>` in the
//! admin one.
//!
//! Bodies are read with the configured size limit, whatever their framing (Content-Length
//! or chunked), and their `Content-Encoding` (identity or gzip) undone within the same limit.

use std::convert::Infallible;
use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawQuery, Request};
use http::request::Parts;
use http::{HeaderMap, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use super::FaceState;
use crate::domain::{Error, Principal, SessionToken};

/// The header that carries a request's id, in and out.
pub const REQUEST_ID: &str = "x-request-id";

/// What a request edge could not take. Each face answers it in its own shape.
#[derive(Debug)]
pub enum Rejection {
    /// A path parameter that does not decode (e.g. not UTF-8 once percent-decoded).
    Path(String),
    /// A query string that does not decode.
    Query,
    /// A body over the limit, in bytes.
    TooLarge(usize),
    /// A body that could not be read or decompressed.
    Unreadable,
    /// A `Content-Encoding` other than identity or gzip.
    UnsupportedEncoding,
    /// A `Content-Type` the route does not take (`None`: there was none).
    UnsupportedType(Option<String>),
    /// A body that is not the JSON the route takes.
    Json(String),
}

/// A face's error: made from a core error or a rejected edge, answered in the face's shape.
pub trait FaceError: From<Error> + From<Rejection> + axum::response::IntoResponse + Send {}

impl<T> FaceError for T where T: From<Error> + From<Rejection> + axum::response::IntoResponse + Send {}

/// The `Authorization` header, as the API authenticates it (JWT or session token).
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    authorization: Option<String>,
}

impl Credentials {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Self { authorization }
    }

    pub fn authorization(&self) -> Option<&str> {
        self.authorization.as_deref()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Credentials {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Self::from_headers(&parts.headers))
    }
}

/// The caller, authenticated by its `Authorization` header (a bearer JWT), rejected in the
/// shape of `E`.
pub struct Bearer<E>(pub Principal, pub PhantomData<fn() -> E>);

impl<E: FaceError> FromRequestParts<FaceState> for Bearer<E> {
    type Rejection = E;

    async fn from_request_parts(parts: &mut Parts, state: &FaceState) -> Result<Self, E> {
        let credentials = Credentials::from_headers(&parts.headers);
        match state.api.authenticate(credentials.authorization()).await {
            Ok(principal) => Ok(Self(principal, PhantomData)),
            Err(error) => Err(error.into()),
        }
    }
}

/// The caller's own session token on the self-service face, in Kratos' order of precedence:
/// `X-Session-Token`, the session cookie, `Authorization: Bearer`.
pub fn session_token(headers: &HeaderMap, cookie_name: &str) -> Option<SessionToken> {
    if let Some(token) = headers.get("x-session-token").and_then(|v| v.to_str().ok()) {
        return Some(SessionToken::from_client(token.trim()));
    }
    for cookies in headers.get_all(header::COOKIE) {
        let Ok(cookies) = cookies.to_str() else {
            continue;
        };
        for pair in cookies.split(';') {
            if let Some((name, value)) = pair.trim().split_once('=')
                && name == cookie_name
            {
                return Some(SessionToken::from_client(value.trim_matches('"')));
            }
        }
    }
    let authorization = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    crate::auth::bearer(authorization).map(SessionToken::from_client)
}

/// Path parameters, rejected in the shape of `E`.
pub struct Path<T, E>(pub T, PhantomData<fn() -> E>);

impl<S, T, E> FromRequestParts<S> for Path<T, E>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
    E: FaceError,
{
    type Rejection = E;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, E> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value, PhantomData)),
            Err(rejection) => Err(Rejection::Path(rejection.body_text()).into()),
        }
    }
}

/// The query string as `(key, value)` pairs in order, rejected in the shape of `E`.
pub struct Query<E>(pub Vec<(String, String)>, PhantomData<fn() -> E>);

impl<S: Send + Sync, E: FaceError> FromRequestParts<S> for Query<E> {
    type Rejection = E;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, E> {
        let Ok(RawQuery(query)) = RawQuery::from_request_parts(parts, state).await;
        let query = query.as_deref().unwrap_or_default();
        // Form decoding replaces bytes that are not UTF-8 (`%FF`), which would answer a
        // question the client did not ask: such a query is refused instead.
        if percent_encoding::percent_decode_str(query)
            .decode_utf8()
            .is_err()
        {
            return Err(Rejection::Query.into());
        }
        serde_urlencoded::from_str(query)
            .map(|pairs| Self(pairs, PhantomData))
            .map_err(|_| Rejection::Query.into())
    }
}

/// The body, read within the limit and decoded, rejected in the shape of `E`.
pub struct Body<E> {
    pub bytes: Bytes,
    pub headers: HeaderMap,
    face: PhantomData<fn() -> E>,
}

impl<E: FaceError> FromRequest<FaceState> for Body<E> {
    type Rejection = E;

    async fn from_request(request: Request, state: &FaceState) -> Result<Self, E> {
        let (parts, body) = request.into_parts();
        let bytes = read_decoded(body, &parts.headers, state.body_limit).await?;
        Ok(Self {
            bytes,
            headers: parts.headers,
            face: PhantomData,
        })
    }
}

/// A JSON body (`application/json` or no content type; an empty body is `{}`), rejected in
/// the shape of `E`.
pub struct Json<T, E>(pub T, PhantomData<fn() -> E>);

impl<T: DeserializeOwned, E: FaceError> FromRequest<FaceState> for Json<T, E> {
    type Rejection = E;

    async fn from_request(request: Request, state: &FaceState) -> Result<Self, E> {
        let body = Body::<E>::from_request(request, state).await?;
        match media_type(&body.headers).as_deref() {
            None | Some("application/json") => {}
            Some(other) => return Err(Rejection::UnsupportedType(Some(other.to_owned())).into()),
        }
        let bytes = if body.bytes.iter().all(u8::is_ascii_whitespace) {
            &b"{}"[..]
        } else {
            &body.bytes[..]
        };
        serde_json::from_slice(bytes)
            .map(|value| Self(value, PhantomData))
            .map_err(|e| Rejection::Json(e.to_string()).into())
    }
}

/// Collects a body, failing once it exceeds `limit` bytes, and undoes its `Content-Encoding`
/// (identity or gzip) so that neither the compressed nor the decompressed size can exceed it.
async fn read_decoded(
    body: axum::body::Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, Rejection> {
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(Rejection::TooLarge(limit));
        }
        Err(_) => return Err(Rejection::Unreadable),
    };
    match headers.get(header::CONTENT_ENCODING).map(|v| v.as_bytes()) {
        None | Some(b"identity") => Ok(bytes),
        Some(b"gzip") => {
            use std::io::Read;
            let mut out = Vec::new();
            let decoder = flate2::read::GzDecoder::new(bytes.as_ref());
            // One byte over the limit is enough to know the body is too large.
            let read = decoder
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|_| Rejection::Unreadable)?;
            if read > limit {
                Err(Rejection::TooLarge(limit))
            } else {
                Ok(Bytes::from(out))
            }
        }
        Some(_) => Err(Rejection::UnsupportedEncoding),
    }
}

/// The media type of a `Content-Type` header, lower-cased, without parameters.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn session_token_precedence_is_header_cookie_bearer() {
        let token = |headers: &HeaderMap| session_token(headers, "sid").map(|t| t.into_exposed());
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer from-bearer"),
        );
        assert_eq!(token(&headers).as_deref(), Some("from-bearer"));
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("other=1; sid=from-cookie"),
        );
        assert_eq!(token(&headers).as_deref(), Some("from-cookie"));
        headers.insert("x-session-token", HeaderValue::from_static("from-header"));
        assert_eq!(token(&headers).as_deref(), Some("from-header"));
    }
}
