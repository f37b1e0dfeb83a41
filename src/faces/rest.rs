//! REST/JSON transcoding of the `google.api.http` rule of every RPC (from the services'
//! lists), in the shape grpc-gateway gives them: path parameters and (for rules without a
//! body) query parameters are merged into the request message, the body is the rest of it
//! (`body: "*"`), success is the rule's status, and errors are `google.rpc.Status` JSON with
//! the HTTP status of the gRPC code ([`RestError`]).

use axum::Router;
use axum::extract::{FromRequest, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::on;
use http::StatusCode;
use serde_json::{Map, Value};

use super::FaceState;
use super::edges::{self, Credentials, Rejection};
use super::rpc::{Rpc, Serve, Visit};
use super::status::rest_body;
use crate::domain::error_ids;
use crate::domain::{Error, ErrorKind};

/// An error in the REST shape: `google.rpc.Status` as JSON.
pub struct RestError {
    status: StatusCode,
    body: Value,
}

impl From<Error> for RestError {
    fn from(error: Error) -> Self {
        let (status, body) = rest_body(&error);
        Self { status, body }
    }
}

impl RestError {
    /// An error sent with a transport status of its own (413, 415, 405, 503, …).
    pub fn with_status(status: StatusCode, error: &Error) -> Self {
        let (_, body) = rest_body(error);
        Self { status, body }
    }

    fn transport(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::with_status(
            status,
            &Error::new(kind, error_ids::HTTP_REJECTED, message.into()),
        )
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::transport(StatusCode::BAD_REQUEST, ErrorKind::InvalidArgument, message)
    }
}

impl From<Rejection> for RestError {
    fn from(rejection: Rejection) -> Self {
        let unsupported = |message: String| {
            Self::transport(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorKind::InvalidArgument,
                message,
            )
        };
        match rejection {
            Rejection::Path(message) => Self::bad_request(message),
            Rejection::Query => Self::bad_request("malformed query string"),
            Rejection::TooLarge(limit) => Self::transport(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorKind::ResourceExhausted,
                format!("request body is larger than {limit} bytes"),
            ),
            Rejection::Unreadable => {
                Self::bad_request("request body could not be read or decompressed")
            }
            Rejection::UnsupportedEncoding => {
                unsupported("unsupported content-encoding: use identity or gzip".into())
            }
            Rejection::UnsupportedType(other) => unsupported(format!(
                "unsupported content type {:?}: use application/json",
                other.unwrap_or_default()
            )),
            Rejection::Json(message) => Self::bad_request(format!("invalid JSON: {message}")),
        }
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

type Path<T> = edges::Path<T, RestError>;
type Query = edges::Query<RestError>;

/// The body as a JSON object (absent or empty: `{}`).
struct Fields(Map<String, Value>);

impl FromRequest<FaceState> for Fields {
    type Rejection = RestError;

    async fn from_request(request: Request, state: &FaceState) -> Result<Self, RestError> {
        match edges::Json::<Value, RestError>::from_request(request, state)
            .await?
            .0
        {
            Value::Object(map) => Ok(Self(map)),
            _ => Err(RestError::bad_request("request body must be a JSON object")),
        }
    }
}

/// Runs one RPC from a JSON object and the path parameters, answering with the rule's status.
async fn call<R: Rpc>(
    state: &FaceState,
    credentials: Credentials,
    mut fields: Map<String, Value>,
    params: Vec<(String, String)>,
) -> Result<Response, RestError> {
    for (name, value) in params {
        fields.remove(&name);
        fields.insert(lower_camel(&name), Value::String(value));
    }
    let request = serde_json::from_value::<R::Request>(Value::Object(fields)).map_err(|e| {
        RestError::bad_request(format!("invalid request for {}: {e}", R::INFO.method))
    })?;
    let response = state.api.serve::<R>(credentials, request).await?;
    Ok((R::INFO.http.success, axum::Json(response)).into_response())
}

/// `session_id` → `sessionId`, the JSON name of a path parameter's field.
fn lower_camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A rule with `body: "*"`: path parameters and the body.
async fn with_body<R: Rpc>(
    State(state): State<FaceState>,
    params: Path<Vec<(String, String)>>,
    credentials: Credentials,
    Fields(fields): Fields,
) -> Result<Response, RestError> {
    call::<R>(&state, credentials, fields, params.0).await
}

/// A rule without a body: path parameters and the other fields (e.g. `sessionToken`) from the
/// query string.
async fn with_query<R: Rpc>(
    State(state): State<FaceState>,
    params: Path<Vec<(String, String)>>,
    query: Query,
    credentials: Credentials,
) -> Result<Response, RestError> {
    let fields = query
        .0
        .into_iter()
        .map(|(key, value)| (key, Value::String(value)))
        .collect();
    call::<R>(&state, credentials, fields, params.0).await
}

/// The transcoding table: the `google.api.http` rule of every RPC of every service.
pub fn routes() -> Router<FaceState> {
    struct Routes(Router<FaceState>);
    impl Visit for Routes {
        fn rpc<R: Rpc>(&mut self) {
            // The event list shares its path with the event stream: `sse.rs` serves both.
            if R::INFO.service == super::events::SERVICE_NAME {
                return;
            }
            let rule = R::INFO.http;
            let router = std::mem::take(&mut self.0);
            self.0 = if rule.body {
                router.route(rule.path, on(rule.verb.filter(), with_body::<R>))
            } else {
                router.route(rule.path, on(rule.verb.filter(), with_query::<R>))
            };
        }
    }
    let mut routes = Routes(Router::new());
    super::visit_rpcs(&mut routes);
    routes.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_parameters_take_their_json_names() {
        assert_eq!(super::lower_camel("session_id"), "sessionId");
        assert_eq!(super::lower_camel("id"), "id");
    }
}
