//! The four protocols as a client speaks them, one call at a time, with every answer checked:
//! a gRPC status other than OK, an HTTP status other than the expected 2xx, or a body that is
//! not the expected answer counts as an error.
//!
//! - native gRPC: tonic's generated client over HTTP/2 (h2c), several channels;
//! - gRPC-Web: `application/grpc-web+proto` over HTTP/1.1 keep-alive, framed by hand;
//! - Connect: `application/json` with `Connect-Protocol-Version: 1` over HTTP/1.1 keep-alive;
//! - REST: the `google.api.http` routes (`/v2/sessions…`) over HTTP/1.1 keep-alive.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sessiond::faces::pb::zitadel::session::v2;
use sessiond::faces::pb::zitadel::session::v2::session_service_client::SessionServiceClient;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

const SERVICE: &str = "zitadel.session.v2.SessionService";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Proto {
    Grpc,
    GrpcWeb,
    Connect,
    Rest,
}

impl Proto {
    pub const ALL: [Proto; 4] = [Proto::Grpc, Proto::GrpcWeb, Proto::Connect, Proto::Rest];

    pub fn name(self) -> &'static str {
        match self {
            Proto::Grpc => "gRPC",
            Proto::GrpcWeb => "gRPC-Web",
            Proto::Connect => "Connect",
            Proto::Rest => "REST",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Op {
    Create,
    CreatePassword,
    Get,
    List,
    Delete,
    Whoami,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Create => "CreateSession (user)",
            Op::CreatePassword => "CreateSession (user+password)",
            Op::Get => "GetSession",
            Op::List => "ListSessions (by user)",
            Op::Delete => "DeleteSession",
            Op::Whoami => "GET /auth/sessions/whoami",
        }
    }

    /// The protocols an operation is offered on (self-service is HTTP/JSON only).
    pub fn protocols(self) -> &'static [Proto] {
        match self {
            Op::Whoami => &[Proto::Rest],
            _ => &Proto::ALL,
        }
    }
}

/// A session the bench knows the id, token and user of.
#[derive(Clone, Debug)]
pub struct SessionRef {
    pub id: String,
    pub token: String,
    pub user_id: String,
}

/// Everything the requests are made of, shared by all workers.
pub struct Workload {
    /// `Bearer <JWT>` with session.read, session.write and session.delete.
    pub bearer: String,
    /// Login names for CreateSession with a user check.
    pub create_logins: Vec<String>,
    /// Login name and password for CreateSession with a password check.
    pub password_login: String,
    pub password: String,
    /// Live sessions for Get and whoami.
    pub read_pool: Vec<SessionRef>,
    /// Users with sessions, for ListSessions by user id.
    pub list_users: Vec<String>,
    /// Live sessions that Delete consumes, each once.
    pub delete_pool: Vec<SessionRef>,
    delete_cursor: AtomicUsize,
    counter: AtomicUsize,
}

/// What one request is about.
pub enum Pick<'a> {
    Login(&'a str),
    Session(&'a SessionRef),
    User(&'a str),
}

impl Workload {
    pub fn new(
        bearer: String,
        create_logins: Vec<String>,
        password_login: String,
        password: String,
        read_pool: Vec<SessionRef>,
        list_users: Vec<String>,
        delete_pool: Vec<SessionRef>,
    ) -> Self {
        Self {
            bearer,
            create_logins,
            password_login,
            password,
            read_pool,
            list_users,
            delete_pool,
            delete_cursor: AtomicUsize::new(0),
            counter: AtomicUsize::new(0),
        }
    }

    /// Deletes left in the pool.
    pub fn deletes_left(&self) -> usize {
        self.delete_pool
            .len()
            .saturating_sub(self.delete_cursor.load(Ordering::Relaxed))
    }

    /// The next request's subject. Deletes against the real server consume the pool (None
    /// when it is empty); against the no-op server they cycle through it without consuming.
    pub fn pick(&self, op: Op, noop: bool) -> Option<Pick<'_>> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let nth = |len: usize| n % len.max(1);
        match op {
            Op::Create => self
                .create_logins
                .get(nth(self.create_logins.len()))
                .map(|s| Pick::Login(s)),
            Op::CreatePassword => Some(Pick::Login(&self.password_login)),
            Op::Get | Op::Whoami => self
                .read_pool
                .get(nth(self.read_pool.len()))
                .map(Pick::Session),
            Op::List => self
                .list_users
                .get(nth(self.list_users.len()))
                .map(|s| Pick::User(s)),
            Op::Delete if noop => self
                .delete_pool
                .get(nth(self.delete_pool.len()))
                .map(Pick::Session),
            Op::Delete => {
                let i = self.delete_cursor.fetch_add(1, Ordering::Relaxed);
                self.delete_pool.get(i).map(Pick::Session)
            }
        }
    }
}

/// One client connection: a gRPC channel (shared by several workers) or an HTTP/1.1
/// keep-alive connection of its own.
pub enum Conn {
    Grpc {
        client: SessionServiceClient<Channel>,
        /// The `authorization` metadata, parsed once.
        auth: MetadataValue<tonic::metadata::Ascii>,
    },
    Http {
        addr: SocketAddr,
        sender: Option<SendRequest<Full<Bytes>>>,
    },
}

pub async fn grpc_channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await?)
}

pub async fn http_connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

fn create_request(login: &str, password: Option<&str>) -> v2::CreateSessionRequest {
    v2::CreateSessionRequest {
        checks: Some(v2::Checks {
            user: Some(v2::CheckUser {
                search: Some(v2::check_user::Search::LoginName(login.to_owned())),
            }),
            password: password.map(|p| v2::CheckPassword {
                password: p.to_owned(),
            }),
            ..Default::default()
        }),
        lifetime: Some(pbjson_types::Duration {
            seconds: 86_400,
            nanos: 0,
        }),
        ..Default::default()
    }
}

fn get_request(s: &SessionRef) -> v2::GetSessionRequest {
    v2::GetSessionRequest {
        session_id: s.id.clone(),
        session_token: Some(s.token.clone()),
    }
}

fn list_request(user: &str) -> v2::ListSessionsRequest {
    v2::ListSessionsRequest {
        queries: vec![v2::SearchQuery {
            query: Some(v2::search_query::Query::UserIdQuery(v2::UserIdQuery {
                id: user.to_owned(),
            })),
        }],
        ..Default::default()
    }
}

fn delete_request(s: &SessionRef) -> v2::DeleteSessionRequest {
    v2::DeleteSessionRequest {
        session_id: s.id.clone(),
        session_token: Some(s.token.clone()),
    }
}

// ---- answer checks (skipped against the no-op server, which answers defaults) ----

fn check_create(r: &v2::CreateSessionResponse) -> Result<(), String> {
    let seq = r.details.as_ref().map(|d| d.sequence);
    if r.session_id.is_empty() || !r.session_token.starts_with("sdst_") || seq != Some(1) {
        return Err(format!(
            "unexpected CreateSession answer: id {:?}, token prefix ok {}, sequence {seq:?}",
            r.session_id,
            r.session_token.starts_with("sdst_")
        ));
    }
    Ok(())
}

fn check_get(r: &v2::GetSessionResponse, s: &SessionRef) -> Result<(), String> {
    let session = r.session.as_ref().ok_or("GetSession: no session")?;
    let user = session
        .factors
        .as_ref()
        .and_then(|f| f.user.as_ref())
        .map(|u| u.id.as_str());
    if session.id != s.id || user != Some(s.user_id.as_str()) {
        return Err(format!(
            "GetSession: got session {} of user {user:?}, wanted {} of {}",
            session.id, s.id, s.user_id
        ));
    }
    Ok(())
}

fn check_list(r: &v2::ListSessionsResponse, user: &str) -> Result<(), String> {
    let total = r.details.as_ref().map(|d| d.total_result).unwrap_or(0);
    if r.sessions.is_empty() || total < r.sessions.len() as u64 {
        return Err(format!(
            "ListSessions: {} sessions, totalResult {total}",
            r.sessions.len()
        ));
    }
    for s in &r.sessions {
        let u = s.factors.as_ref().and_then(|f| f.user.as_ref());
        if u.map(|u| u.id.as_str()) != Some(user) {
            return Err(format!("ListSessions: session {} of another user", s.id));
        }
    }
    Ok(())
}

fn check_delete(r: &v2::DeleteSessionResponse) -> Result<(), String> {
    let seq = r.details.as_ref().map(|d| d.sequence);
    if seq != Some(2) {
        return Err(format!(
            "DeleteSession: details.sequence {seq:?}, wanted 2 (a fresh session terminated)"
        ));
    }
    Ok(())
}

fn check_whoami(body: &[u8], s: &SessionRef) -> Result<(), String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("whoami: invalid JSON: {e}"))?;
    if v["id"].as_str() != Some(s.id.as_str()) || v["active"] != serde_json::Value::Bool(true) {
        return Err(format!(
            "whoami: got id {:?} active {:?}, wanted {}",
            v["id"], v["active"], s.id
        ));
    }
    if v["identity"]["id"].as_str() != Some(s.user_id.as_str()) {
        return Err("whoami: identity of another user".into());
    }
    Ok(())
}

/// Runs one request of `op` over `proto` and checks the answer.
pub async fn call(
    conn: &mut Conn,
    wl: &Workload,
    op: Op,
    proto: Proto,
    noop: bool,
    pick: Pick<'_>,
) -> Result<(), String> {
    match conn {
        Conn::Grpc { client, auth } => grpc_call(client, auth, wl, op, noop, pick).await,
        Conn::Http { addr, sender } => {
            if sender.as_ref().is_none_or(|s| s.is_closed()) {
                *sender = Some(
                    http_connect(*addr)
                        .await
                        .map_err(|e| format!("connect: {e}"))?,
                );
            }
            let Some(s) = sender.as_mut() else {
                return Err("no connection".into());
            };
            let result = http_call(s, wl, op, proto, noop, pick).await;
            if result.is_err() && s.is_closed() {
                *sender = None;
            }
            result
        }
    }
}

async fn grpc_call(
    client: &mut SessionServiceClient<Channel>,
    auth: &MetadataValue<tonic::metadata::Ascii>,
    wl: &Workload,
    op: Op,
    noop: bool,
    pick: Pick<'_>,
) -> Result<(), String> {
    fn req<T>(msg: T, auth: &MetadataValue<tonic::metadata::Ascii>) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.metadata_mut().insert("authorization", auth.clone());
        r
    }
    let status = |s: tonic::Status| format!("gRPC status {:?}: {}", s.code(), s.message());
    match (op, pick) {
        (Op::Create, Pick::Login(login)) => {
            let r = client
                .create_session(req(create_request(login, None), auth))
                .await
                .map_err(status)?
                .into_inner();
            if noop { Ok(()) } else { check_create(&r) }
        }
        (Op::CreatePassword, Pick::Login(login)) => {
            let r = client
                .create_session(req(create_request(login, Some(&wl.password)), auth))
                .await
                .map_err(status)?
                .into_inner();
            if noop { Ok(()) } else { check_create(&r) }
        }
        (Op::Get, Pick::Session(s)) => {
            let r = client
                .get_session(req(get_request(s), auth))
                .await
                .map_err(status)?
                .into_inner();
            if noop { Ok(()) } else { check_get(&r, s) }
        }
        (Op::List, Pick::User(u)) => {
            let r = client
                .list_sessions(req(list_request(u), auth))
                .await
                .map_err(status)?
                .into_inner();
            if noop { Ok(()) } else { check_list(&r, u) }
        }
        (Op::Delete, Pick::Session(s)) => {
            let r = client
                .delete_session(req(delete_request(s), auth))
                .await
                .map_err(status)?
                .into_inner();
            if noop { Ok(()) } else { check_delete(&r) }
        }
        _ => Err(format!("{op:?} is not offered over gRPC")),
    }
}

struct HttpAnswer {
    status: http::StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    request: http::Request<Full<Bytes>>,
) -> Result<HttpAnswer, String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("connection: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(HttpAnswer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

fn build(
    method: http::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<http::Request<Full<Bytes>>, String> {
    let mut b = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "127.0.0.1");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(body)).map_err(|e| e.to_string())
}

fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

/// Decodes a gRPC-Web answer: the message of the data frame, the status from the trailer
/// frame (or from the headers of a trailers-only answer).
fn grpc_web_decode<M: Message + Default>(answer: HttpAnswer) -> Result<M, String> {
    if answer.status != http::StatusCode::OK {
        return Err(format!("gRPC-Web: HTTP {}", answer.status));
    }
    let mut status: Option<String> = answer
        .headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut message = answer
        .headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = answer.body;
    let mut decoded = None;
    while body.remaining() >= 5 {
        let flag = body.get_u8();
        let len = body.get_u32() as usize;
        if body.remaining() < len {
            return Err("gRPC-Web: truncated frame".into());
        }
        let frame = body.split_to(len);
        if flag & 0x80 != 0 {
            for line in String::from_utf8_lossy(&frame).split("\r\n") {
                if let Some((k, v)) = line.split_once(':') {
                    match k.trim().to_ascii_lowercase().as_str() {
                        "grpc-status" => status = Some(v.trim().to_owned()),
                        "grpc-message" => message = Some(v.trim().to_owned()),
                        _ => {}
                    }
                }
            }
        } else {
            decoded = Some(M::decode(frame).map_err(|e| format!("gRPC-Web: bad message: {e}"))?);
        }
    }
    match status.as_deref() {
        Some("0") => decoded.ok_or_else(|| "gRPC-Web: no message".to_string()),
        Some(code) => Err(format!(
            "gRPC-Web status {code}: {}",
            message.unwrap_or_default()
        )),
        None => Err("gRPC-Web: no grpc-status".into()),
    }
}

async fn grpc_web<Req: Message, Resp: Message + Default>(
    sender: &mut SendRequest<Full<Bytes>>,
    wl: &Workload,
    method: &str,
    msg: &Req,
) -> Result<Resp, String> {
    let len = msg.encoded_len();
    let mut frame = BytesMut::with_capacity(5 + len);
    frame.put_u8(0);
    frame.put_u32(len as u32);
    msg.encode(&mut frame).map_err(|e| e.to_string())?;
    let request = build(
        http::Method::POST,
        &format!("/{SERVICE}/{method}"),
        &[
            ("content-type", "application/grpc-web+proto"),
            ("accept", "application/grpc-web+proto"),
            ("x-grpc-web", "1"),
            ("authorization", &wl.bearer),
        ],
        frame.freeze(),
    )?;
    grpc_web_decode(send(sender, request).await?)
}

fn json_decode<M: DeserializeOwned>(
    answer: HttpAnswer,
    expected: http::StatusCode,
    what: &str,
) -> Result<M, String> {
    if answer.status != expected {
        return Err(format!(
            "{what}: HTTP {} (wanted {expected}): {}",
            answer.status,
            snippet(&answer.body)
        ));
    }
    serde_json::from_slice(&answer.body).map_err(|e| format!("{what}: invalid JSON answer: {e}"))
}

async fn connect<Req: Serialize, Resp: DeserializeOwned>(
    sender: &mut SendRequest<Full<Bytes>>,
    wl: &Workload,
    method: &str,
    msg: &Req,
) -> Result<Resp, String> {
    let body = serde_json::to_vec(msg).map_err(|e| e.to_string())?;
    let request = build(
        http::Method::POST,
        &format!("/{SERVICE}/{method}"),
        &[
            ("content-type", "application/json"),
            ("connect-protocol-version", "1"),
            ("authorization", &wl.bearer),
        ],
        Bytes::from(body),
    )?;
    json_decode(
        send(sender, request).await?,
        http::StatusCode::OK,
        "Connect",
    )
}

async fn rest<Resp: DeserializeOwned>(
    sender: &mut SendRequest<Full<Bytes>>,
    wl: &Workload,
    method: http::Method,
    path: &str,
    body: Option<Vec<u8>>,
    expected: http::StatusCode,
) -> Result<Resp, String> {
    let mut headers = vec![("authorization", wl.bearer.as_str())];
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    let request = build(
        method,
        path,
        &headers,
        body.map(Bytes::from).unwrap_or_default(),
    )?;
    json_decode(send(sender, request).await?, expected, "REST")
}

fn to_json<T: Serialize>(msg: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(msg).map_err(|e| e.to_string())
}

async fn http_call(
    sender: &mut SendRequest<Full<Bytes>>,
    wl: &Workload,
    op: Op,
    proto: Proto,
    noop: bool,
    pick: Pick<'_>,
) -> Result<(), String> {
    use http::{Method, StatusCode};
    let ok = |r: Result<(), String>| if noop { Ok(()) } else { r };
    match (op, proto, pick) {
        (Op::Create | Op::CreatePassword, _, Pick::Login(login)) => {
            let password = (op == Op::CreatePassword).then_some(wl.password.as_str());
            let msg = create_request(login, password);
            let r: v2::CreateSessionResponse = match proto {
                Proto::GrpcWeb => grpc_web(sender, wl, "CreateSession", &msg).await?,
                Proto::Connect => connect(sender, wl, "CreateSession", &msg).await?,
                Proto::Rest => {
                    rest(
                        sender,
                        wl,
                        Method::POST,
                        "/v2/sessions",
                        Some(to_json(&msg)?),
                        StatusCode::CREATED,
                    )
                    .await?
                }
                Proto::Grpc => return Err("gRPC over HTTP/1.1".into()),
            };
            ok(check_create(&r))
        }
        (Op::Get, _, Pick::Session(s)) => {
            let msg = get_request(s);
            let r: v2::GetSessionResponse = match proto {
                Proto::GrpcWeb => grpc_web(sender, wl, "GetSession", &msg).await?,
                Proto::Connect => connect(sender, wl, "GetSession", &msg).await?,
                Proto::Rest => {
                    let path = format!("/v2/sessions/{}?sessionToken={}", s.id, s.token);
                    rest(sender, wl, Method::GET, &path, None, StatusCode::OK).await?
                }
                Proto::Grpc => return Err("gRPC over HTTP/1.1".into()),
            };
            ok(check_get(&r, s))
        }
        (Op::List, _, Pick::User(u)) => {
            let msg = list_request(u);
            let r: v2::ListSessionsResponse = match proto {
                Proto::GrpcWeb => grpc_web(sender, wl, "ListSessions", &msg).await?,
                Proto::Connect => connect(sender, wl, "ListSessions", &msg).await?,
                Proto::Rest => {
                    rest(
                        sender,
                        wl,
                        Method::POST,
                        "/v2/sessions/search",
                        Some(to_json(&msg)?),
                        StatusCode::OK,
                    )
                    .await?
                }
                Proto::Grpc => return Err("gRPC over HTTP/1.1".into()),
            };
            ok(check_list(&r, u))
        }
        (Op::Delete, _, Pick::Session(s)) => {
            let msg = delete_request(s);
            let r: v2::DeleteSessionResponse = match proto {
                Proto::GrpcWeb => grpc_web(sender, wl, "DeleteSession", &msg).await?,
                Proto::Connect => connect(sender, wl, "DeleteSession", &msg).await?,
                Proto::Rest => {
                    let path = format!("/v2/sessions/{}", s.id);
                    let body = to_json(&serde_json::json!({ "sessionToken": s.token }))?;
                    rest(
                        sender,
                        wl,
                        Method::DELETE,
                        &path,
                        Some(body),
                        StatusCode::OK,
                    )
                    .await?
                }
                Proto::Grpc => return Err("gRPC over HTTP/1.1".into()),
            };
            ok(check_delete(&r))
        }
        (Op::Whoami, Proto::Rest, Pick::Session(s)) => {
            let request = build(
                Method::GET,
                "/auth/sessions/whoami",
                &[("x-session-token", &s.token)],
                Bytes::new(),
            )?;
            let answer = send(sender, request).await?;
            if answer.status != StatusCode::OK {
                return Err(format!(
                    "whoami: HTTP {}: {}",
                    answer.status,
                    snippet(&answer.body)
                ));
            }
            if noop {
                serde_json::from_slice::<serde_json::Value>(&answer.body)
                    .map(|_| ())
                    .map_err(|e| format!("whoami: invalid JSON: {e}"))
            } else {
                check_whoami(&answer.body, s)
            }
        }
        (op, proto, _) => Err(format!("{op:?} is not offered over {proto:?}")),
    }
}
