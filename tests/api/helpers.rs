//! The harness: the real server (`app::build` + `app::serve`) on 127.0.0.1:0 with a fresh
//! data directory and a [`ManualClock`], users and bearer JWTs, and one typed client per
//! protocol behind [`Api`], so a behaviour test can run on every protocol and both package
//! versions without copy-paste.

#![allow(dead_code)]

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use sessiond::app::Application;
use sessiond::auth::{EmbeddedKey, JwtSettings, mint};
use sessiond::core::{Core, NewUser};
use sessiond::domain::{LoginName, ManualClock, Password, SessionId, Time, User};
use sessiond::faces::status::RpcStatus;
use sessiond::settings::Settings;

pub use sessiond::faces::pb::wkt::Timestamp;
pub use sessiond::faces::pb::zitadel::object::v2 as object;
pub use sessiond::faces::pb::zitadel::session::{v2, v2beta};
pub use sessiond::faces::pb::zitadel::v1::{
    CredentialsCheckError, ErrorDetail, TimestampQueryMethod,
};
pub use tonic::Code;

/// Where every test's clock starts: 2025-03-04T15:13:33.203Z.
pub const START: Time = Time::from_unix_micros(1_741_101_213_203_000);

/// The instance id a default configuration reports as `resourceOwner`.
pub const INSTANCE: &str = "sessiond";

/// Every session permission a JWT can grant.
pub const ALL_SESSION_PERMISSIONS: &[&str] = &["session.read", "session.write", "session.delete"];

/// A running server and what a test needs to drive it.
pub struct TestApp {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub core: Core,
    pub clock: ManualClock,
    pub data_dir: tempfile::TempDir,
    /// HTTP/1.1 only.
    pub http: reqwest::Client,
    /// HTTP/2 over cleartext (prior knowledge).
    pub h2: reqwest::Client,
    pub channel: Channel,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Set to run the whole faces suite on PostgreSQL (with `SESSIOND_TEST_POSTGRES_URL`)
/// instead of SQLite; CI does both.
pub const FACES_ON_POSTGRES_ENV: &str = "SESSIOND_TEST_FACES_ON_POSTGRES";

fn faces_postgres_url() -> Option<String> {
    let wanted = std::env::var(FACES_ON_POSTGRES_ENV).is_ok_and(|v| v == "1");
    if !wanted {
        return None;
    }
    let url = std::env::var(crate::backends::POSTGRES_ENV)
        .ok()
        .filter(|u| !u.is_empty());
    assert!(
        url.is_some(),
        "{FACES_ON_POSTGRES_ENV}=1 needs {} too",
        crate::backends::POSTGRES_ENV
    );
    url
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns a server whose settings `configure` may adjust first.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let data_dir = tempfile::tempdir().expect("creating a temp dir");
    let mut settings = Settings::for_test(data_dir.path());
    if let Some(url) = faces_postgres_url() {
        settings.database_url = Some(crate::backends::postgres_schema_url(&url).await.into());
    }
    configure(&mut settings);
    let clock = ManualClock::new(START);
    let app = Application::build(settings, Arc::new(clock.clone()))
        .await
        .expect("building the app");
    let addr = app.address();
    let core = app.core().clone();
    let (shutdown, signal) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = signal.await;
    }));
    let base = format!("http://{addr}");
    let http = reqwest::Client::builder()
        .http1_only()
        .build()
        .expect("HTTP/1.1 client");
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("h2c client");
    let channel = Channel::from_shared(base.clone())
        .expect("channel URL")
        .connect_lazy();
    TestApp {
        addr,
        base,
        core,
        clock,
        data_dir,
        http,
        h2,
        channel,
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Signals shutdown and hands back the server task (which resolves once `serve` returns).
    pub fn trigger_shutdown(&mut self) -> JoinHandle<anyhow::Result<()>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.server
            .take()
            .expect("the server was already shut down")
    }

    /// A user without a password (no hashing: cheap).
    pub async fn add_user(&self, login_name: &str) -> User {
        self.add_user_with(login_name, None).await
    }

    /// A user with an argon2id password (one hash, tens of milliseconds).
    pub async fn add_user_with_password(&self, login_name: &str, password: &str) -> User {
        self.add_user_with(login_name, Some(password)).await
    }

    async fn add_user_with(&self, login_name: &str, password: Option<&str>) -> User {
        self.core
            .add_user(NewUser {
                login_name: LoginName::parse(login_name).expect("valid login name"),
                display_name: None,
                organization_id: None,
                password: password.map(|p| Password::parse(p).expect("valid password")),
            })
            .await
            .expect("adding a user")
    }

    /// `Bearer <JWT>` signed with the embedded key, valid for an hour from the clock's now.
    pub fn bearer(&self, subject: &str, permissions: &[&str]) -> String {
        self.bearer_with(subject, permissions, Duration::from_secs(3600))
    }

    pub fn bearer_with(&self, subject: &str, permissions: &[&str], ttl: Duration) -> String {
        let key = EmbeddedKey::load(self.data_dir.path()).expect("the embedded key");
        let jwt = mint_jwt(
            &key,
            "sessiond",
            "sessiond",
            subject,
            permissions,
            ttl,
            self.now(),
        );
        format!("Bearer {jwt}")
    }

    /// `sub: "admin"` with every session permission.
    pub fn admin(&self) -> String {
        self.bearer("admin", ALL_SESSION_PERMISSIONS)
    }

    pub fn now(&self) -> Time {
        use sessiond::domain::Clock;
        self.clock.now()
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub fn api(&self, protocol: Protocol, version: Version) -> Api {
        Api {
            protocol,
            version,
            base: self.base.clone(),
            http: self.http.clone(),
            channel: self.channel.clone(),
        }
    }

    /// One client per protocol and version: 6 × 2.
    pub fn apis(&self) -> Vec<Api> {
        Protocol::ALL
            .into_iter()
            .flat_map(|p| Version::ALL.into_iter().map(move |v| (p, v)))
            .map(|(p, v)| self.api(p, v))
            .collect()
    }

    /// The v2 clients only, one per protocol.
    pub fn v2_apis(&self) -> Vec<Api> {
        Protocol::ALL
            .into_iter()
            .map(|p| self.api(p, Version::V2))
            .collect()
    }

    /// Number of events in a session's log.
    pub async fn event_count(&self, session_id: &str) -> usize {
        let id = SessionId::parse(session_id).expect("session id");
        self.core
            .store()
            .session_events(&id)
            .await
            .expect("reading events")
            .len()
    }

    /// Creates a session for `user` via the core's v2 API on gRPC (fast path for setup).
    pub async fn create_session_for(&self, user: &User) -> v2::CreateSessionResponse {
        self.api(Protocol::Grpc, Version::V2)
            .create(Some(&self.admin()), create_for_user(user.id.as_str()))
            .await
            .expect("creating a session")
            .message
    }
}

/// Signs a JWT with `key`.
pub fn mint_jwt(
    key: &EmbeddedKey,
    issuer: &str,
    audience: &str,
    subject: &str,
    permissions: &[&str],
    ttl: Duration,
    now: Time,
) -> String {
    let permissions: Vec<String> = permissions.iter().map(|p| (*p).to_owned()).collect();
    mint(
        key,
        &JwtSettings {
            issuer: issuer.into(),
            audience: audience.into(),
        },
        subject,
        &permissions,
        ttl,
        now,
    )
    .expect("minting a JWT")
}

/// A CreateSession request that checks `user_id`.
pub fn create_for_user(user_id: &str) -> v2::CreateSessionRequest {
    v2::CreateSessionRequest {
        checks: Some(user_check(user_id)),
        ..Default::default()
    }
}

pub fn user_check(user_id: &str) -> v2::Checks {
    v2::Checks {
        user: Some(v2::CheckUser {
            search: Some(v2::check_user::Search::UserId(user_id.into())),
        }),
        ..Default::default()
    }
}

pub fn get(session_id: &str, token: Option<&str>) -> v2::GetSessionRequest {
    v2::GetSessionRequest {
        session_id: session_id.into(),
        session_token: token.map(Into::into),
    }
}

pub fn delete(session_id: &str, token: Option<&str>) -> v2::DeleteSessionRequest {
    v2::DeleteSessionRequest {
        session_id: session_id.into(),
        session_token: token.map(Into::into),
    }
}

pub fn set_metadata(session_id: &str, key: &str, value: &[u8]) -> v2::SetSessionRequest {
    v2::SetSessionRequest {
        session_id: session_id.into(),
        metadata: [(key.to_owned(), value.to_vec())].into_iter().collect(),
        ..Default::default()
    }
}

pub fn list(queries: Vec<v2::search_query::Query>) -> v2::ListSessionsRequest {
    v2::ListSessionsRequest {
        queries: queries
            .into_iter()
            .map(|q| v2::SearchQuery { query: Some(q) })
            .collect(),
        ..Default::default()
    }
}

pub fn user_id_query(id: &str) -> v2::search_query::Query {
    v2::search_query::Query::UserIdQuery(v2::UserIdQuery { id: id.into() })
}

pub fn ids_query(ids: &[&str]) -> v2::search_query::Query {
    v2::search_query::Query::IdsQuery(v2::IDsQuery {
        ids: ids.iter().map(|s| (*s).to_owned()).collect(),
    })
}

/// Re-encodes a message as its wire-compatible twin of the other package.
pub fn transcode<A: Message, B: Message + Default>(from: &A) -> B {
    B::decode(from.encode_to_vec().as_slice()).expect("wire-compatible messages")
}

// ------------------------------------------------------------------------------------------
// Protocols and outcomes
// ------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Native gRPC over h2c (tonic-generated clients).
    Grpc,
    /// gRPC-Web, binary, over HTTP/1.1.
    GrpcWeb,
    /// gRPC-Web, base64 text, over HTTP/1.1.
    GrpcWebText,
    ConnectJson,
    ConnectProto,
    Rest,
}

impl Protocol {
    pub const ALL: [Protocol; 6] = [
        Protocol::Grpc,
        Protocol::GrpcWeb,
        Protocol::GrpcWebText,
        Protocol::ConnectJson,
        Protocol::ConnectProto,
        Protocol::Rest,
    ];

    /// Whether answers are JSON (and [`Reply::json`] is set).
    pub fn is_json(self) -> bool {
        matches!(self, Protocol::ConnectJson | Protocol::Rest)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V2,
    V2beta,
}

impl Version {
    pub const ALL: [Version; 2] = [Version::V2, Version::V2beta];

    pub fn service(self) -> &'static str {
        match self {
            Version::V2 => "zitadel.session.v2.SessionService",
            Version::V2beta => "zitadel.session.v2beta.SessionService",
        }
    }

    pub fn rest_prefix(self) -> &'static str {
        match self {
            Version::V2 => "/v2",
            Version::V2beta => "/v2beta",
        }
    }
}

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
    Failure {
        code,
        message: json["message"].as_str().unwrap_or_default().to_owned(),
        http_status: Some(status),
        detail,
        body: Some(json),
    }
}

impl Failure {
    pub fn id(&self) -> &str {
        self.detail.as_ref().map(|d| d.id.as_str()).unwrap_or("")
    }
}

/// Unwraps a success, naming the client on failure.
#[track_caller]
pub fn ok<T>(api: &Api, outcome: Outcome<T>) -> Reply<T> {
    match outcome {
        Ok(reply) => reply,
        Err(f) => panic!("{api}: expected success, got {f:?}"),
    }
}

/// Asserts a failure with this code and error id (and `message` ending in `(id)`).
#[track_caller]
pub fn fails<T: fmt::Debug>(api: &Api, outcome: Outcome<T>, code: Code, id: &str) -> Failure {
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

// ------------------------------------------------------------------------------------------
// Raw protocol plumbing
// ------------------------------------------------------------------------------------------

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

fn percent_encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// The typed, protocol-agnostic client
// ------------------------------------------------------------------------------------------

/// A REST call derived from a request's JSON: verb, path after the version prefix, body and
/// the status of success.
pub struct RestCall {
    pub method: reqwest::Method,
    pub path: String,
    pub body: Option<Value>,
    pub success: u16,
}

fn take_session_id(json: &mut Value) -> String {
    let id = json
        .as_object_mut()
        .and_then(|m| m.remove("sessionId"))
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    percent_encode(&id)
}

/// One RPC, as every protocol calls it.
pub trait RpcSpec {
    const METHOD: &'static str;
    type Req: Message + Default + Serialize + Clone + Send + Sync + 'static;
    type Resp: Message + Default + DeserializeOwned + Send + Sync + 'static;
    type BetaReq: Message + Default + Serialize + Send + Sync + 'static;
    type BetaResp: Message + Default + DeserializeOwned + Send + Sync + 'static;

    /// The grpc-gateway mapping of the request's JSON.
    fn rest(json: Value) -> RestCall;

    fn grpc_v2(
        channel: Channel,
        request: tonic::Request<Self::Req>,
    ) -> impl Future<Output = Result<Self::Resp, tonic::Status>>;

    fn grpc_v2beta(
        channel: Channel,
        request: tonic::Request<Self::BetaReq>,
    ) -> impl Future<Output = Result<Self::BetaResp, tonic::Status>>;
}

macro_rules! rpc_spec {
    ($spec:ident, $method:literal, $req:ident, $resp:ident, $call:ident, $rest:expr) => {
        pub struct $spec;

        impl RpcSpec for $spec {
            const METHOD: &'static str = $method;
            type Req = v2::$req;
            type Resp = v2::$resp;
            type BetaReq = v2beta::$req;
            type BetaResp = v2beta::$resp;

            fn rest(json: Value) -> RestCall {
                let f: fn(Value) -> RestCall = $rest;
                f(json)
            }

            async fn grpc_v2(
                channel: Channel,
                request: tonic::Request<v2::$req>,
            ) -> Result<v2::$resp, tonic::Status> {
                v2::session_service_client::SessionServiceClient::new(channel)
                    .$call(request)
                    .await
                    .map(tonic::Response::into_inner)
            }

            async fn grpc_v2beta(
                channel: Channel,
                request: tonic::Request<v2beta::$req>,
            ) -> Result<v2beta::$resp, tonic::Status> {
                v2beta::session_service_client::SessionServiceClient::new(channel)
                    .$call(request)
                    .await
                    .map(tonic::Response::into_inner)
            }
        }
    };
}

rpc_spec!(
    ListSessions,
    "ListSessions",
    ListSessionsRequest,
    ListSessionsResponse,
    list_sessions,
    |json| RestCall {
        method: reqwest::Method::POST,
        path: "/sessions/search".into(),
        body: Some(json),
        success: 200,
    }
);
rpc_spec!(
    GetSession,
    "GetSession",
    GetSessionRequest,
    GetSessionResponse,
    get_session,
    |mut json| {
        let id = take_session_id(&mut json);
        let query = match json.get("sessionToken").and_then(Value::as_str) {
            Some(token) => format!("?sessionToken={}", percent_encode(token)),
            None => String::new(),
        };
        RestCall {
            method: reqwest::Method::GET,
            path: format!("/sessions/{id}{query}"),
            body: None,
            success: 200,
        }
    }
);
rpc_spec!(
    CreateSession,
    "CreateSession",
    CreateSessionRequest,
    CreateSessionResponse,
    create_session,
    |json| RestCall {
        method: reqwest::Method::POST,
        path: "/sessions".into(),
        body: Some(json),
        success: 201,
    }
);
rpc_spec!(
    SetSession,
    "SetSession",
    SetSessionRequest,
    SetSessionResponse,
    set_session,
    |mut json| {
        let id = take_session_id(&mut json);
        RestCall {
            method: reqwest::Method::PATCH,
            path: format!("/sessions/{id}"),
            body: Some(json),
            success: 200,
        }
    }
);
rpc_spec!(
    DeleteSession,
    "DeleteSession",
    DeleteSessionRequest,
    DeleteSessionResponse,
    delete_session,
    |mut json| {
        let id = take_session_id(&mut json);
        RestCall {
            method: reqwest::Method::DELETE,
            path: format!("/sessions/{id}"),
            body: Some(json),
            success: 200,
        }
    }
);

/// A client of one protocol and one package version. Requests and responses are v2
/// messages; v2beta calls are re-encoded on the way (the packages are wire-compatible).
#[derive(Clone)]
pub struct Api {
    pub protocol: Protocol,
    pub version: Version,
    base: String,
    http: reqwest::Client,
    channel: Channel,
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}/{:?}", self.protocol, self.version)
    }
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Api {
    pub async fn list(
        &self,
        auth: Option<&str>,
        request: v2::ListSessionsRequest,
    ) -> Outcome<v2::ListSessionsResponse> {
        self.call::<ListSessions>(auth, request).await
    }

    pub async fn get(
        &self,
        auth: Option<&str>,
        request: v2::GetSessionRequest,
    ) -> Outcome<v2::GetSessionResponse> {
        self.call::<GetSession>(auth, request).await
    }

    pub async fn create(
        &self,
        auth: Option<&str>,
        request: v2::CreateSessionRequest,
    ) -> Outcome<v2::CreateSessionResponse> {
        self.call::<CreateSession>(auth, request).await
    }

    pub async fn set(
        &self,
        auth: Option<&str>,
        request: v2::SetSessionRequest,
    ) -> Outcome<v2::SetSessionResponse> {
        self.call::<SetSession>(auth, request).await
    }

    pub async fn delete(
        &self,
        auth: Option<&str>,
        request: v2::DeleteSessionRequest,
    ) -> Outcome<v2::DeleteSessionResponse> {
        self.call::<DeleteSession>(auth, request).await
    }

    /// The Connect / gRPC-Web path of a method of this version.
    pub fn procedure(&self, method: &str) -> String {
        format!("{}/{}/{method}", self.base, self.version.service())
    }

    pub async fn call<R: RpcSpec>(&self, auth: Option<&str>, request: R::Req) -> Outcome<R::Resp> {
        match (self.protocol, self.version) {
            (Protocol::Grpc, Version::V2) => {
                R::grpc_v2(self.channel.clone(), grpc_request(request, auth))
                    .await
                    .map(|message| Reply {
                        message,
                        http_status: None,
                        json: None,
                    })
                    .map_err(|s| failure_from_status(&s))
            }
            (Protocol::Grpc, Version::V2beta) => {
                let beta: R::BetaReq = transcode(&request);
                R::grpc_v2beta(self.channel.clone(), grpc_request(beta, auth))
                    .await
                    .map(|message| Reply {
                        message: transcode(&message),
                        http_status: None,
                        json: None,
                    })
                    .map_err(|s| failure_from_status(&s))
            }
            (_, Version::V2) => self.http_call::<R, R::Req, R::Resp>(auth, request).await,
            (_, Version::V2beta) => {
                let beta: R::BetaReq = transcode(&request);
                let reply = self
                    .http_call::<R, R::BetaReq, R::BetaResp>(auth, beta)
                    .await?;
                Ok(Reply {
                    message: transcode(&reply.message),
                    http_status: reply.http_status,
                    json: reply.json,
                })
            }
        }
    }

    async fn http_call<R, Q, P>(&self, auth: Option<&str>, request: Q) -> Outcome<P>
    where
        R: RpcSpec,
        Q: Message + Serialize,
        P: Message + Default + DeserializeOwned,
    {
        match self.protocol {
            Protocol::Grpc => unreachable!("native gRPC goes through tonic"),
            Protocol::GrpcWeb | Protocol::GrpcWebText => {
                let text = self.protocol == Protocol::GrpcWebText;
                let answer = grpc_web_call(
                    &self.http,
                    &self.procedure(R::METHOD),
                    auth,
                    &request.encode_to_vec(),
                    text,
                )
                .await;
                assert_eq!(answer.http_status, 200, "{self}: gRPC-Web answers 200");
                let expected_type = if text {
                    "application/grpc-web-text"
                } else {
                    "application/grpc-web"
                };
                let content_type = answer
                    .headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                assert!(
                    content_type.starts_with(expected_type),
                    "{self}: content type {content_type:?}"
                );
                let Some(status) = answer.status.clone() else {
                    panic!("{self}: no grpc-status in {answer:?}");
                };
                if status.code() != Code::Ok {
                    assert!(answer.messages.is_empty(), "{self}: no message on error");
                    return Err(failure_from_status(&status));
                }
                assert_eq!(answer.messages.len(), 1, "{self}: one message");
                let message = P::decode(answer.messages[0].as_slice()).expect("response message");
                Ok(Reply {
                    message,
                    http_status: Some(answer.http_status),
                    json: None,
                })
            }
            Protocol::ConnectJson | Protocol::ConnectProto => {
                let json = self.protocol == Protocol::ConnectJson;
                let (content_type, body) = if json {
                    (
                        "application/json",
                        serde_json::to_vec(&request).expect("request JSON"),
                    )
                } else {
                    ("application/proto", request.encode_to_vec())
                };
                let mut call = self
                    .http
                    .post(self.procedure(R::METHOD))
                    .header("content-type", content_type)
                    .header("connect-protocol-version", "1")
                    .body(body);
                if let Some(auth) = auth {
                    call = call.header("authorization", auth);
                }
                let response = call.send().await.expect("Connect request");
                let status = response.status().as_u16();
                let answer_type = response
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let bytes = response.bytes().await.expect("Connect body");
                if status != 200 {
                    assert_eq!(answer_type, "application/json", "{self}: errors are JSON");
                    return Err(failure_from_connect(status, &bytes));
                }
                assert_eq!(answer_type, content_type, "{self}: answer codec");
                if json {
                    let value: Value = serde_json::from_slice(&bytes).expect("JSON answer");
                    let message: P = serde_json::from_value(value.clone()).expect("message JSON");
                    Ok(Reply {
                        message,
                        http_status: Some(status),
                        json: Some(value),
                    })
                } else {
                    Ok(Reply {
                        message: P::decode(bytes.as_ref()).expect("proto answer"),
                        http_status: Some(status),
                        json: None,
                    })
                }
            }
            Protocol::Rest => {
                let json = serde_json::to_value(&request).expect("request JSON");
                let call = R::rest(json);
                let url = format!("{}{}{}", self.base, self.version.rest_prefix(), call.path);
                let mut builder = self.http.request(call.method, url);
                if let Some(body) = &call.body {
                    builder = builder
                        .header("content-type", "application/json")
                        .body(serde_json::to_vec(body).expect("body"));
                }
                if let Some(auth) = auth {
                    builder = builder.header("authorization", auth);
                }
                let response = builder.send().await.expect("REST request");
                let status = response.status().as_u16();
                let bytes = response.bytes().await.expect("REST body");
                if (200..300).contains(&status) {
                    assert_eq!(status, call.success, "{self}: success status");
                    let value: Value = serde_json::from_slice(&bytes).expect("JSON answer");
                    let message: P = serde_json::from_value(value.clone()).expect("message JSON");
                    Ok(Reply {
                        message,
                        http_status: Some(status),
                        json: Some(value),
                    })
                } else {
                    Err(failure_from_rest(status, &bytes))
                }
            }
        }
    }
}

fn grpc_request<T>(message: T, auth: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(auth) = auth {
        request
            .metadata_mut()
            .insert("authorization", auth.parse().expect("ASCII metadata"));
    }
    request
}

/// Seconds as a protobuf duration.
pub fn seconds(secs: i64) -> pbjson_types::Duration {
    pbjson_types::Duration {
        seconds: secs,
        nanos: 0,
    }
}

pub fn timestamp(t: Time) -> Timestamp {
    Timestamp::from(t)
}

// ------------------------------------------------------------------------------------------
// Raw native gRPC: any bytes to any path
// ------------------------------------------------------------------------------------------

/// A codec that sends and receives message bytes as they are.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut out = vec![0; bytes::Buf::remaining(src)];
        bytes::Buf::copy_to_slice(src, &mut out);
        Ok(Some(out))
    }
}

/// Calls `path` over native gRPC with `message` as the raw request bytes.
pub async fn grpc_raw(
    channel: &Channel,
    path: &str,
    auth: Option<&str>,
    message: Vec<u8>,
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("channel ready");
    let path = http::uri::PathAndQuery::try_from(path).expect("path");
    grpc.unary(grpc_request(message, auth), path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}
