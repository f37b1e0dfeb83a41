//! The typed, protocol-agnostic client: an [`Api`] per protocol and package version, each RPC
//! described once ([`RpcSpec`]) and called the same way on every protocol.

use std::fmt;

use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tonic::transport::Channel;

use super::{
    Code, Outcome, Reply, failure_from_connect, failure_from_rest, failure_from_status,
    grpc_web_call, transcode, v2, v2beta,
};

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
}

pub(super) fn percent_encode(value: &str) -> String {
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

/// A REST call derived from a request's JSON: verb, path, body and the status of success.
pub struct RestCall {
    pub method: reqwest::Method,
    pub path: String,
    pub body: Option<Value>,
    pub success: u16,
}

/// The grpc-gateway mapping of a request's JSON by the RPC's `google.api.http` rule, as the
/// server's list of RPCs states it (the drift test holds that list to the protos): path
/// parameters are taken out of the JSON, and the rest is the body or, for rules without one,
/// the query string.
pub fn rest_call(version: Version, method: &str, mut json: Value) -> RestCall {
    let rule = sessiond::faces::SERVICES
        .iter()
        .filter(|service| service.name == version.service())
        .flat_map(|service| service.rpcs)
        .find(|rpc| rpc.method == method)
        .unwrap_or_else(|| panic!("{method} is not in the list of {}", version.service()))
        .http;
    let mut path = String::new();
    for segment in rule.path.split('/').filter(|s| !s.is_empty()) {
        path.push('/');
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(field) => {
                let value = json
                    .as_object_mut()
                    .and_then(|m| m.remove(&lower_camel(field)))
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                path.push_str(&percent_encode(&value));
            }
            None => path.push_str(segment),
        }
    }
    let body = if rule.body {
        Some(json)
    } else {
        let pairs: Vec<String> = json
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={}", percent_encode(v))))
            .collect();
        if !pairs.is_empty() {
            path.push('?');
            path.push_str(&pairs.join("&"));
        }
        None
    };
    RestCall {
        method: reqwest::Method::from_bytes(rule.verb.as_str().as_bytes()).expect("an HTTP verb"),
        path,
        body,
        success: rule.success.as_u16(),
    }
}

/// `session_id` → `sessionId`: the JSON name of a path parameter.
pub(super) fn lower_camel(field: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// One RPC, as every protocol calls it.
pub trait RpcSpec {
    const METHOD: &'static str;
    type Req: Message + Default + Serialize + Clone + Send + Sync + 'static;
    type Resp: Message + Default + DeserializeOwned + Send + Sync + 'static;
    type BetaReq: Message + Default + Serialize + Send + Sync + 'static;
    type BetaResp: Message + Default + DeserializeOwned + Send + Sync + 'static;

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
    ($spec:ident, $method:literal, $req:ident, $resp:ident, $call:ident) => {
        pub struct $spec;

        impl RpcSpec for $spec {
            const METHOD: &'static str = $method;
            type Req = v2::$req;
            type Resp = v2::$resp;
            type BetaReq = v2beta::$req;
            type BetaResp = v2beta::$resp;

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
    list_sessions
);
rpc_spec!(
    GetSession,
    "GetSession",
    GetSessionRequest,
    GetSessionResponse,
    get_session
);
rpc_spec!(
    CreateSession,
    "CreateSession",
    CreateSessionRequest,
    CreateSessionResponse,
    create_session
);
rpc_spec!(
    SetSession,
    "SetSession",
    SetSessionRequest,
    SetSessionResponse,
    set_session
);
rpc_spec!(
    DeleteSession,
    "DeleteSession",
    DeleteSessionRequest,
    DeleteSessionResponse,
    delete_session
);

/// A client of one protocol and one package version. Requests and responses are v2
/// messages; v2beta calls are re-encoded on the way (the packages are wire-compatible).
#[derive(Clone)]
pub struct Api {
    pub protocol: Protocol,
    pub version: Version,
    pub(super) base: String,
    pub(super) http: reqwest::Client,
    pub(super) channel: Channel,
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
                let call = rest_call(self.version, R::METHOD, json);
                let url = format!("{}{}", self.base, call.path);
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

pub fn grpc_request<T>(message: T, auth: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(auth) = auth {
        request
            .metadata_mut()
            .insert("authorization", auth.parse().expect("ASCII metadata"));
    }
    request
}
