//! What a call came back with, normalised across protocols: a [`Reply`] or a [`Failure`]
//! (code, message, HTTP status, error detail), parsed from each protocol's error shape, and the
//! assertions tests make on them.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use prost::Message;
use serde_json::Value;

use sessiond::domain::Time;
use sessiond::faces::status::RpcStatus;

use super::{Api, Code, CredentialsCheckError, ErrorDetail};

/// A successful call: the message (always as v2), the HTTP status where there is one, and the
/// raw JSON for the JSON protocols.
#[derive(Debug)]
pub struct Reply<T> {
    pub message: T,
    pub http_status: Option<u16>,
    pub json: Option<Value>,
}

/// The error detail every failure carries.
#[derive(Clone, Debug, PartialEq)]
pub struct Detail {
    /// e.g. `zitadel.v1.ErrorDetail`
    pub type_name: String,
    pub id: String,
    pub message: String,
    pub failed_attempts: Option<i32>,
}

/// A failed call, normalised across protocols.
#[derive(Clone, Debug)]
pub struct Failure {
    pub code: Code,
    pub message: String,
    pub http_status: Option<u16>,
    pub detail: Option<Detail>,
    pub body: Option<Value>,
}

pub type Outcome<T> = Result<Reply<T>, Failure>;

/// HTTP status of a gRPC code (grpc-gateway / connect-go), per the reference §8.
pub fn http_status_of(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::Cancelled => 499,
        Code::Unknown | Code::Internal | Code::DataLoss => 500,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::DeadlineExceeded => 504,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::PermissionDenied => 403,
        Code::ResourceExhausted => 429,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::Unauthenticated => 401,
    }
}

pub fn connect_code_of(name: &str) -> Code {
    match name {
        "canceled" => Code::Cancelled,
        "unknown" => Code::Unknown,
        "invalid_argument" => Code::InvalidArgument,
        "deadline_exceeded" => Code::DeadlineExceeded,
        "not_found" => Code::NotFound,
        "already_exists" => Code::AlreadyExists,
        "permission_denied" => Code::PermissionDenied,
        "resource_exhausted" => Code::ResourceExhausted,
        "failed_precondition" => Code::FailedPrecondition,
        "aborted" => Code::Aborted,
        "out_of_range" => Code::OutOfRange,
        "unimplemented" => Code::Unimplemented,
        "internal" => Code::Internal,
        "unavailable" => Code::Unavailable,
        "data_loss" => Code::DataLoss,
        "unauthenticated" => Code::Unauthenticated,
        other => panic!("unknown Connect code {other:?}"),
    }
}

fn detail_from_any(type_name: &str, bytes: &[u8]) -> Detail {
    match type_name {
        "zitadel.v1.ErrorDetail" => {
            let d = ErrorDetail::decode(bytes).expect("ErrorDetail bytes");
            Detail {
                type_name: type_name.into(),
                id: d.id,
                message: d.message,
                failed_attempts: None,
            }
        }
        "zitadel.v1.CredentialsCheckError" => {
            let d = CredentialsCheckError::decode(bytes).expect("CredentialsCheckError bytes");
            Detail {
                type_name: type_name.into(),
                id: d.id,
                message: d.message,
                failed_attempts: Some(d.failed_attempts),
            }
        }
        other => panic!("unexpected error detail type {other:?}"),
    }
}

/// A gRPC status (native or gRPC-Web) as a [`Failure`], its details decoded.
pub fn failure_from_status(status: &tonic::Status) -> Failure {
    let detail = if status.details().is_empty() {
        None
    } else {
        let rpc = RpcStatus::decode(status.details()).expect("google.rpc.Status details");
        assert_eq!(rpc.code, status.code() as i32, "details code = status code");
        assert_eq!(
            rpc.message,
            status.message(),
            "details message = status message"
        );
        rpc.details.first().map(|any| {
            let type_name = any
                .type_url
                .strip_prefix("type.googleapis.com/")
                .expect("type URL prefix");
            detail_from_any(type_name, &any.value)
        })
    };
    Failure {
        code: status.code(),
        message: status.message().to_owned(),
        http_status: None,
        detail,
        body: None,
    }
}

/// The HTTP status of an error answer must be the one of its code; a body over the size limit
/// is the one exception (413 rather than 429, as the HTTP layer refuses it).
#[track_caller]
fn assert_status_of(status: u16, code: Code, json: &Value) {
    if status == 413 && code == Code::ResourceExhausted {
        return;
    }
    assert_eq!(
        status,
        http_status_of(code),
        "HTTP status of {code:?}: {json}"
    );
}

/// A Connect error body as a [`Failure`]; the HTTP status must match the code.
pub fn failure_from_connect(status: u16, body: &[u8]) -> Failure {
    let json: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("Connect error body is not JSON ({e}): {body:?}"));
    let code = connect_code_of(json["code"].as_str().expect("Connect error code string"));
    assert_status_of(status, code, &json);
    let detail = json["details"].as_array().and_then(|d| d.first()).map(|d| {
        let type_name = d["type"].as_str().expect("detail type");
        let value = d["value"].as_str().expect("detail value");
        let bytes = STANDARD_NO_PAD
            .decode(value.trim_end_matches('='))
            .expect("detail value is base64");
        let detail = detail_from_any(type_name, &bytes);
        assert_eq!(
            d["debug"]["id"],
            detail.id.as_str(),
            "debug agrees with value"
        );
        detail
    });
    http_failure(code, status, detail, json)
}

/// A failure answered over HTTP with a JSON body that holds its message.
fn http_failure(code: Code, status: u16, detail: Option<Detail>, json: Value) -> Failure {
    Failure {
        code,
        message: json["message"].as_str().unwrap_or_default().to_owned(),
        http_status: Some(status),
        detail,
        body: Some(json),
    }
}

/// A REST (`google.rpc.Status` JSON) error as a [`Failure`]; the status must match the code.
pub fn failure_from_rest(status: u16, body: &[u8]) -> Failure {
    let json: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("REST error body is not JSON ({e}): {body:?}"));
    let number = json["code"].as_i64().expect("REST error code is a number");
    let code = Code::from_i32(i32::try_from(number).expect("code fits i32"));
    assert_status_of(status, code, &json);
    let detail = json["details"].as_array().and_then(|d| d.first()).map(|d| {
        let type_url = d["@type"].as_str().expect("@type");
        Detail {
            type_name: type_url
                .strip_prefix("type.googleapis.com/")
                .expect("type URL prefix")
                .to_owned(),
            id: d["id"].as_str().expect("detail id").to_owned(),
            message: d["message"].as_str().expect("detail message").to_owned(),
            failed_attempts: d["failedAttempts"].as_i64().map(|n| n as i32),
        }
    });
    http_failure(code, status, detail, json)
}

impl Failure {
    pub fn id(&self) -> &str {
        self.detail.as_ref().map(|d| d.id.as_str()).unwrap_or("")
    }
}

/// Unwraps a success, naming the client on failure.
#[track_caller]
pub fn ok<T>(api: &impl fmt::Display, outcome: Outcome<T>) -> Reply<T> {
    match outcome {
        Ok(reply) => reply,
        Err(f) => panic!("{api}: expected success, got {f:?}"),
    }
}

/// Asserts a failure with this code and error id (and `message` ending in `(id)`).
#[track_caller]
pub fn fails<T: fmt::Debug>(
    api: &impl fmt::Display,
    outcome: Outcome<T>,
    code: Code,
    id: &str,
) -> Failure {
    let failure = match outcome {
        Ok(reply) => panic!("{api}: expected {code:?} ({id}), got success {reply:?}"),
        Err(f) => f,
    };
    assert_eq!(failure.code, code, "{api}: code of {failure:?}");
    assert_eq!(failure.id(), id, "{api}: error id of {failure:?}");
    assert!(
        failure.message.ends_with(&format!("({id})")),
        "{api}: message {:?} should end with ({id})",
        failure.message
    );
    failure
}

/// Asserts a failure with this code, whatever its id.
#[track_caller]
pub fn fails_with<T: fmt::Debug>(api: &Api, outcome: Outcome<T>, code: Code) -> Failure {
    match outcome {
        Ok(reply) => panic!("{api}: expected {code:?}, got success {reply:?}"),
        Err(f) => {
            assert_eq!(f.code, code, "{api}: code of {f:?}");
            f
        }
    }
}

/// Asserts the HTTP status of a failure on the protocols that have one.
#[track_caller]
pub fn assert_http_status(api: &Api, failure: &Failure, status: u16) {
    if let Some(actual) = failure.http_status {
        assert_eq!(actual, status, "{api}: HTTP status of {failure:?}");
    }
}

/// Asserts the protojson conventions on a JSON answer: 64-bit counters are strings and every
/// timestamp is RFC 3339 with a `Z`.
#[track_caller]
pub fn assert_protojson_shapes(json: &Value) {
    fn walk(key: &str, value: &Value) {
        match value {
            Value::Object(map) => map.iter().for_each(|(k, v)| walk(k, v)),
            Value::Array(items) => items.iter().for_each(|v| walk(key, v)),
            _ => {
                if matches!(key, "sequence" | "totalResult" | "processedSequence") {
                    assert!(value.is_string(), "{key} must be a JSON string: {value}");
                }
                if key.ends_with("Date") || key.ends_with("At") || key == "timestamp" {
                    let s = value
                        .as_str()
                        .unwrap_or_else(|| panic!("{key} is a string"));
                    assert!(s.ends_with('Z'), "{key} must end in Z: {s}");
                    assert!(Time::parse_rfc3339(s).is_some(), "{key} is RFC 3339: {s}");
                }
            }
        }
    }
    walk("", json);
}
