//! The one error table: how a core [`Error`] looks on every face.
//!
//! | kind               | gRPC | HTTP | Connect code          |
//! |--------------------|------|------|-----------------------|
//! | InvalidArgument    | 3    | 400  | `invalid_argument`    |
//! | DeadlineExceeded   | 4    | 504  | `deadline_exceeded`   |
//! | NotFound           | 5    | 404  | `not_found`           |
//! | AlreadyExists      | 6    | 409  | `already_exists`      |
//! | PermissionDenied   | 7    | 403  | `permission_denied`   |
//! | ResourceExhausted  | 8    | 429  | `resource_exhausted`  |
//! | FailedPrecondition | 9    | 400  | `failed_precondition` |
//! | Internal           | 13   | 500  | `internal`            |
//! | Unavailable        | 14   | 503  | `unavailable`         |
//! | Unauthenticated    | 16   | 401  | `unauthenticated`     |
//!
//! The HTTP faces (REST, Connect unary, admin, Kratos) answer two feed errors with a status of
//! their own ([`http_status_of`]): an expired feed cursor with 410 and a full feed with 503.
//!
//! gRPC codes and HTTP statuses follow the grpc-gateway / connect-go table ZITADEL clients
//! expect. Every error carries a `zitadel.v1.ErrorDetail {id, message}` (or a
//! `CredentialsCheckError` for failed password checks) in the form each protocol uses.
//! Internal errors are logged with their whole cause chain here, once, and reach clients
//! only as "internal error".

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use http::StatusCode;
use prost::Message;
use serde_json::{Value, json};

use super::pb::zitadel::v1::{CredentialsCheckError, ErrorDetail};
use crate::domain::{Error, ErrorKind, error_ids};

/// `google.rpc.Status`, as carried in `grpc-status-details-bin`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<pbjson_types::Any>,
}

pub fn grpc_code(kind: ErrorKind) -> tonic::Code {
    match kind {
        ErrorKind::InvalidArgument => tonic::Code::InvalidArgument,
        ErrorKind::DeadlineExceeded => tonic::Code::DeadlineExceeded,
        ErrorKind::NotFound => tonic::Code::NotFound,
        ErrorKind::AlreadyExists => tonic::Code::AlreadyExists,
        ErrorKind::PermissionDenied => tonic::Code::PermissionDenied,
        ErrorKind::ResourceExhausted => tonic::Code::ResourceExhausted,
        ErrorKind::FailedPrecondition => tonic::Code::FailedPrecondition,
        ErrorKind::Unimplemented => tonic::Code::Unimplemented,
        ErrorKind::Internal => tonic::Code::Internal,
        ErrorKind::Unavailable => tonic::Code::Unavailable,
        ErrorKind::Unauthenticated => tonic::Code::Unauthenticated,
    }
}

/// HTTP status of a gRPC code (grpc-gateway's `HTTPStatusFromCode`, connect-go's table).
pub fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code::*;
    match code {
        Ok => StatusCode::OK,
        Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Unknown | Internal | DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        InvalidArgument | FailedPrecondition | OutOfRange => StatusCode::BAD_REQUEST,
        DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        NotFound => StatusCode::NOT_FOUND,
        AlreadyExists | Aborted => StatusCode::CONFLICT,
        PermissionDenied => StatusCode::FORBIDDEN,
        ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Unauthenticated => StatusCode::UNAUTHORIZED,
    }
}

/// HTTP status of an error on the REST faces: the status of its code, except where an id
/// says more than its code can. An expired feed cursor is 410 Gone (the events it pointed at
/// are gone: resync); a full event feed is 503 (another replica may have room), not 429.
pub fn http_status_of(error: &Error) -> StatusCode {
    match error.id() {
        error_ids::FEED_CURSOR_EXPIRED => StatusCode::GONE,
        error_ids::FEED_SUBSCRIBERS_FULL => StatusCode::SERVICE_UNAVAILABLE,
        _ => http_status(grpc_code(error.kind())),
    }
}

/// Connect's snake_case name of a gRPC code.
pub fn connect_code(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "ok",
        Cancelled => "canceled",
        Unknown => "unknown",
        InvalidArgument => "invalid_argument",
        DeadlineExceeded => "deadline_exceeded",
        NotFound => "not_found",
        AlreadyExists => "already_exists",
        PermissionDenied => "permission_denied",
        ResourceExhausted => "resource_exhausted",
        FailedPrecondition => "failed_precondition",
        Aborted => "aborted",
        OutOfRange => "out_of_range",
        Unimplemented => "unimplemented",
        Internal => "internal",
        Unavailable => "unavailable",
        DataLoss => "data_loss",
        Unauthenticated => "unauthenticated",
    }
}

/// Logs an error once, at the level it deserves: server faults with their cause chain.
pub fn log(error: &Error) {
    match error.kind() {
        ErrorKind::Internal => {
            tracing::error!(error_id = error.id(), error = ?error, "request failed")
        }
        ErrorKind::Unavailable | ErrorKind::DeadlineExceeded => {
            tracing::warn!(error_id = error.id(), error = ?error, "request failed")
        }
        _ => tracing::debug!(error_id = error.id(), error = %error, "request rejected"),
    }
}

/// The error detail of an error: its type name and its message.
enum Detail {
    Error(ErrorDetail),
    Credentials(CredentialsCheckError),
}

impl Detail {
    fn of(error: &Error) -> Self {
        match error.failed_attempts() {
            Some(attempts) => Detail::Credentials(CredentialsCheckError {
                id: error.id().to_owned(),
                message: error.message().to_owned(),
                failed_attempts: i32::try_from(attempts).unwrap_or(i32::MAX),
            }),
            None => Detail::Error(ErrorDetail {
                id: error.id().to_owned(),
                message: error.message().to_owned(),
            }),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Detail::Error(_) => "zitadel.v1.ErrorDetail",
            Detail::Credentials(_) => "zitadel.v1.CredentialsCheckError",
        }
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            Detail::Error(d) => d.encode_to_vec(),
            Detail::Credentials(d) => d.encode_to_vec(),
        }
    }

    fn json(&self) -> Value {
        match self {
            Detail::Error(d) => json!({ "id": d.id, "message": d.message }),
            Detail::Credentials(d) => {
                json!({ "id": d.id, "message": d.message, "failedAttempts": d.failed_attempts })
            }
        }
    }

    fn any(&self) -> pbjson_types::Any {
        pbjson_types::Any {
            type_url: format!("type.googleapis.com/{}", self.type_name()),
            value: self.encode().into(),
        }
    }
}

/// A gRPC status with `grpc-status-details-bin`.
pub fn to_status(error: &Error) -> tonic::Status {
    log(error);
    let code = grpc_code(error.kind());
    let message = error.display_message();
    let details = RpcStatus {
        code: code as i32,
        message: message.clone(),
        details: vec![Detail::of(error).any()],
    };
    tonic::Status::with_details(code, message, details.encode_to_vec().into())
}

/// REST (grpc-gateway) body: `google.rpc.Status` as JSON with a numeric code.
pub fn rest_body(error: &Error) -> (StatusCode, Value) {
    log(error);
    let code = grpc_code(error.kind());
    let detail = Detail::of(error);
    let mut detail_json = detail.json();
    if let Value::Object(map) = &mut detail_json {
        map.insert(
            "@type".into(),
            Value::String(format!("type.googleapis.com/{}", detail.type_name())),
        );
    }
    let body = json!({
        "code": code as i32,
        "message": error.display_message(),
        "details": [detail_json],
    });
    (http_status_of(error), body)
}

/// Connect body: snake_case code, message, and details as base64 proto plus debug JSON.
pub fn connect_body(error: &Error) -> (StatusCode, Value) {
    log(error);
    let code = grpc_code(error.kind());
    let detail = Detail::of(error);
    let body = json!({
        "code": connect_code(code),
        "message": error.display_message(),
        "details": [{
            "type": detail.type_name(),
            "value": STANDARD_NO_PAD.encode(detail.encode()),
            "debug": detail.json(),
        }],
    });
    (http_status_of(error), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_errors_have_statuses_of_their_own_on_rest() {
        let expired = Error::failed_precondition(error_ids::FEED_CURSOR_EXPIRED, "resync");
        let full = Error::new(
            ErrorKind::ResourceExhausted,
            error_ids::FEED_SUBSCRIBERS_FULL,
            "full",
        );
        assert_eq!(rest_body(&expired).0, StatusCode::GONE);
        assert_eq!(grpc_code(expired.kind()), tonic::Code::FailedPrecondition);
        assert_eq!(rest_body(&full).0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(grpc_code(full.kind()), tonic::Code::ResourceExhausted);
        let other = Error::failed_precondition(error_ids::USER_DEACTIVATED, "no");
        assert_eq!(rest_body(&other).0, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn every_kind_has_the_documented_code_and_status() {
        let table = [
            (ErrorKind::InvalidArgument, 3, 400, "invalid_argument"),
            (ErrorKind::DeadlineExceeded, 4, 504, "deadline_exceeded"),
            (ErrorKind::NotFound, 5, 404, "not_found"),
            (ErrorKind::AlreadyExists, 6, 409, "already_exists"),
            (ErrorKind::PermissionDenied, 7, 403, "permission_denied"),
            (ErrorKind::ResourceExhausted, 8, 429, "resource_exhausted"),
            (ErrorKind::FailedPrecondition, 9, 400, "failed_precondition"),
            (ErrorKind::Internal, 13, 500, "internal"),
            (ErrorKind::Unavailable, 14, 503, "unavailable"),
            (ErrorKind::Unauthenticated, 16, 401, "unauthenticated"),
        ];
        for (kind, grpc, http, connect) in table {
            let code = grpc_code(kind);
            assert_eq!(code as i32, grpc, "{kind:?}");
            assert_eq!(http_status(code).as_u16(), http, "{kind:?}");
            assert_eq!(connect_code(code), connect, "{kind:?}");
        }
    }

    #[test]
    fn rest_body_is_a_google_rpc_status_with_an_error_detail() {
        let e =
            Error::permission_denied(error_ids::SESSION_TOKEN_INVALID, "Session Token is invalid");
        let (status, body) = rest_body(&e);
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            body,
            json!({
                "code": 7,
                "message": "Session Token is invalid (COMMAND-sGr42)",
                "details": [{
                    "@type": "type.googleapis.com/zitadel.v1.ErrorDetail",
                    "id": error_ids::SESSION_TOKEN_INVALID,
                    "message": "Session Token is invalid",
                }],
            })
        );
    }

    #[test]
    fn connect_body_has_string_code_and_base64_detail() {
        let e = Error::not_found(error_ids::SESSION_NOT_FOUND, "Session does not exist");
        let (status, body) = connect_body(&e);
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["code"], "not_found");
        let value = body["details"][0]["value"].as_str().unwrap_or_default();
        let bytes = STANDARD_NO_PAD.decode(value).unwrap_or_default();
        let detail = ErrorDetail::decode(bytes.as_slice()).unwrap_or_default();
        assert_eq!(detail.id, error_ids::SESSION_NOT_FOUND);
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let e = Error::internal(error_ids::STORE_FAILED, "disk on fire at /var/lib/secret");
        let (status, body) = rest_body(&e);
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.to_string().contains("disk on fire"));
        let grpc = to_status(&e);
        assert!(!grpc.message().contains("disk on fire"));
    }

    #[test]
    fn failed_password_checks_carry_the_attempt_count() {
        let e = Error::invalid_argument(error_ids::PASSWORD_INVALID, "Password is invalid")
            .with_failed_attempts(3);
        let (_, body) = rest_body(&e);
        assert_eq!(
            body["details"][0]["@type"],
            "type.googleapis.com/zitadel.v1.CredentialsCheckError"
        );
        assert_eq!(body["details"][0]["failedAttempts"], 3);
    }
}
