//! REST/JSON transcoding of the `google.api.http` rules of both package versions, in the
//! shape grpc-gateway gives them: path parameters and (for GET) query parameters are merged
//! into the request message, the body is the rest of it (`body: "*"`), success is 200 (201
//! for CreateSession), and errors are `google.rpc.Status` JSON with the HTTP status of the
//! gRPC code.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode, header};
use serde_json::{Map, Value};

use super::FaceState;
use super::body::{self, BodyError};
use super::session_api::{
    CreateV2, CreateV2beta, DeleteV2, DeleteV2beta, GetV2, GetV2beta, ListV2, ListV2beta, Rpc,
    SetV2, SetV2beta,
};
use super::status::rest_body;
use crate::domain::error_ids;
use crate::domain::{Error, ErrorKind};

pub fn error_response(error: &Error) -> Response {
    let (status, body) = rest_body(error);
    (status, axum::Json(body)).into_response()
}

/// A transport-level rejection (not from the core) in the REST error shape.
pub fn rejection(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> Response {
    let mut response = error_response(&Error::new(kind, error_ids::HTTP_REJECTED, message.into()));
    *response.status_mut() = status;
    response
}

/// Decodes the body as a JSON object (absent or empty: `{}`).
async fn json_object(
    state: &FaceState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Map<String, Value>, Response> {
    let bytes = match body::read_decoded(body, headers, state.body_limit).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => {
            return Err(rejection(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorKind::ResourceExhausted,
                format!("request body is larger than {} bytes", state.body_limit),
            ));
        }
        Err(BodyError::Unreadable) => {
            return Err(rejection(
                StatusCode::BAD_REQUEST,
                ErrorKind::InvalidArgument,
                "request body could not be read or decompressed",
            ));
        }
        Err(BodyError::UnsupportedEncoding) => {
            return Err(rejection(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorKind::InvalidArgument,
                "unsupported content-encoding: use identity or gzip",
            ));
        }
    };
    match body::media_type(headers).as_deref() {
        None | Some("application/json") => {}
        Some(other) => {
            return Err(rejection(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorKind::InvalidArgument,
                format!("unsupported content type {other:?}: use application/json"),
            ));
        }
    }

    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(rejection(
            StatusCode::BAD_REQUEST,
            ErrorKind::InvalidArgument,
            "request body must be a JSON object",
        )),
        Err(e) => Err(rejection(
            StatusCode::BAD_REQUEST,
            ErrorKind::InvalidArgument,
            format!("invalid JSON: {e}"),
        )),
    }
}

/// Runs one RPC from a JSON object, answering with `success` or the error.
async fn call<R: Rpc>(
    state: &FaceState,
    headers: &HeaderMap,
    fields: Map<String, Value>,
    success: StatusCode,
) -> Response {
    let request = match serde_json::from_value::<R::Request>(Value::Object(fields)) {
        Ok(request) => request,
        Err(e) => {
            return rejection(
                StatusCode::BAD_REQUEST,
                ErrorKind::InvalidArgument,
                format!("invalid request for {}: {e}", R::METHOD),
            );
        }
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let result = async {
        let principal = state.api.authenticate(authorization).await?;
        R::call(&state.api, principal, request).await
    }
    .await;
    match result {
        Ok(response) => (success, axum::Json(response)).into_response(),
        Err(error) => error_response(&error),
    }
}

fn set_path_id(fields: &mut Map<String, Value>, id: String) {
    fields.remove("session_id");
    fields.insert("sessionId".into(), Value::String(id));
}

async fn with_body<R: Rpc>(
    State(state): State<FaceState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let status = if R::METHOD == "CreateSession" {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    match json_object(&state, &headers, body).await {
        Ok(fields) => call::<R>(&state, &headers, fields, status).await,
        Err(response) => response,
    }
}

async fn with_id_and_body<R: Rpc>(
    State(state): State<FaceState>,
    Path(session_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match json_object(&state, &headers, body).await {
        Ok(mut fields) => {
            set_path_id(&mut fields, session_id);
            call::<R>(&state, &headers, fields, StatusCode::OK).await
        }
        Err(response) => response,
    }
}

/// GET: the id from the path, other fields (e.g. `sessionToken`) from the query string.
async fn with_id_and_query<R: Rpc>(
    State(state): State<FaceState>,
    Path(session_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let pairs =
        serde_urlencoded::from_str::<Vec<(String, String)>>(query.as_deref().unwrap_or_default());
    let Ok(pairs) = pairs else {
        return rejection(
            StatusCode::BAD_REQUEST,
            ErrorKind::InvalidArgument,
            "malformed query string",
        );
    };
    let mut fields = Map::new();
    for (key, value) in pairs {
        fields.insert(key, Value::String(value));
    }
    set_path_id(&mut fields, session_id);
    call::<R>(&state, &headers, fields, StatusCode::OK).await
}

/// The transcoding table: every `google.api.http` rule of both versions.
pub fn routes() -> Router<FaceState> {
    fn version<L: Rpc, G: Rpc, C: Rpc, S: Rpc, D: Rpc>(
        router: Router<FaceState>,
        prefix: &str,
    ) -> Router<FaceState> {
        router
            .route(&format!("{prefix}/sessions"), post(with_body::<C>))
            .route(&format!("{prefix}/sessions/search"), post(with_body::<L>))
            .route(
                &format!("{prefix}/sessions/{{session_id}}"),
                get(with_id_and_query::<G>)
                    .patch(with_id_and_body::<S>)
                    .delete(with_id_and_body::<D>),
            )
    }
    let router = version::<ListV2, GetV2, CreateV2, SetV2, DeleteV2>(Router::new(), "/v2");
    version::<ListV2beta, GetV2beta, CreateV2beta, SetV2beta, DeleteV2beta>(router, "/v2beta")
}
