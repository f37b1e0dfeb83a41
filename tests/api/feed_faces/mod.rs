//! The session event feed's faces, end to end against the real server: native gRPC (tonic
//! client), gRPC-Web and Connect streaming (proto and JSON) over HTTP/1.1 and h2, the REST
//! list, Server-Sent Events on `/v1/session-events` and the self-service stream on
//! `/auth/sessions/events`; errors in each face's shape; filters, keepalive and shutdown.
//!
//! Every stream is read incrementally with a deadline per message, so a stream that stalls
//! fails the test instead of hanging it.

mod errors;
mod lifecycle;
mod protocols;
mod sse;

use std::time::Duration;

use bytes::{Buf, BytesMut};
use prost::Message;
use serde_json::Value;

use sessiond::domain::User;
pub use sessiond::faces::pb::sessiond::events::v1 as events;

use crate::helpers::*;

/// How long a test waits for the next message of a stream.
pub const WAIT: Duration = Duration::from_secs(10);

pub const WATCH: &str = "/sessiond.events.v1.SessionEventService/WatchSessionEvents";
pub const LIST: &str = "/sessiond.events.v1.SessionEventService/ListSessionEvents";

/// A response body read chunk by chunk, with bytes left over between reads.
pub struct Incoming {
    pub response: reqwest::Response,
    buffer: BytesMut,
    done: bool,
}

impl Incoming {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            buffer: BytesMut::new(),
            done: false,
        }
    }

    /// Reads one more chunk; false at the end of the body.
    async fn fill(&mut self) -> bool {
        if self.done {
            return false;
        }
        match tokio::time::timeout(WAIT, self.response.chunk()).await {
            Err(_) => panic!("no data from the stream within {WAIT:?}"),
            Ok(Err(e)) => panic!("reading the stream failed: {e}"),
            Ok(Ok(None)) => {
                self.done = true;
                false
            }
            Ok(Ok(Some(chunk))) => {
                self.buffer.extend_from_slice(&chunk);
                true
            }
        }
    }

    /// The next length-prefixed frame (gRPC-Web, Connect): `(flags, payload)`; `None` at the
    /// end of the body.
    pub async fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buffer.len() >= 5 {
                let length = u32::from_be_bytes([
                    self.buffer[1],
                    self.buffer[2],
                    self.buffer[3],
                    self.buffer[4],
                ]) as usize;
                if self.buffer.len() >= 5 + length {
                    let flags = self.buffer[0];
                    self.buffer.advance(5);
                    let payload = self.buffer.split_to(length).to_vec();
                    return Some((flags, payload));
                }
            }
            if !self.fill().await {
                assert!(
                    self.buffer.is_empty(),
                    "a partial frame at the end of the stream"
                );
                return None;
            }
        }
    }

    /// The next block of SSE lines up to a blank line; `None` at the end of the body.
    pub async fn sse_block(&mut self) -> Option<Vec<String>> {
        loop {
            if let Some(end) = find(&self.buffer, b"\n\n") {
                let block = self.buffer.split_to(end + 2);
                let text = String::from_utf8(block.to_vec()).expect("SSE is UTF-8");
                return Some(
                    text.trim_end_matches('\n')
                        .split('\n')
                        .map(str::to_owned)
                        .collect(),
                );
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Whether the body ends (with nothing but keepalives) within `limit`.
    pub async fn ends_within(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return false,
                Ok(Ok(None)) | Ok(Err(_)) => return true,
                Ok(Ok(Some(_))) => {}
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One SSE event: its id, event name and data as JSON.
#[derive(Debug)]
pub struct SseEvent {
    pub id: String,
    pub event: String,
    pub data: Value,
}

/// The next event of an SSE stream, skipping comments; `None` at the end.
pub async fn next_sse_event(stream: &mut Incoming) -> Option<SseEvent> {
    loop {
        let block = stream.sse_block().await?;
        if block.iter().all(|l| l.starts_with(':')) {
            continue;
        }
        let field = |name: &str| {
            block
                .iter()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
                .unwrap_or_else(|| panic!("no {name} in {block:?}"))
        };
        let data = serde_json::from_str(&field("data")).expect("data is JSON");
        return Some(SseEvent {
            id: field("id"),
            event: field("event"),
            data,
        });
    }
}

/// Opens `GET path` as an event stream.
pub async fn open_sse(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = client.get(url).header("accept", "text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("SSE request")
}

/// An item of a gRPC-Web stream.
pub enum WebItem {
    Event(events::SessionEvent),
    Status(tonic::Code),
}

/// The next event of a gRPC-Web stream, or its status (from the trailer frame, or from the
/// headers of a trailers-only answer).
pub async fn next_grpc_web(stream: &mut Incoming) -> WebItem {
    let Some((flags, payload)) = stream.frame().await else {
        let code = stream
            .response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|c| c.parse::<i32>().ok())
            .expect("a trailer frame or a trailers-only answer");
        return WebItem::Status(tonic::Code::from_i32(code));
    };
    if flags & 0x80 != 0 {
        let trailers = String::from_utf8_lossy(&payload).to_string();
        let code = trailers
            .lines()
            .find_map(|l| l.trim().strip_prefix("grpc-status:"))
            .and_then(|c| c.trim().parse::<i32>().ok())
            .unwrap_or_else(|| panic!("no grpc-status in {trailers:?}"));
        return WebItem::Status(tonic::Code::from_i32(code));
    }
    WebItem::Event(events::SessionEvent::decode(payload.as_slice()).expect("a SessionEvent"))
}

/// Opens WatchSessionEvents over gRPC-Web (binary) with `client`.
pub async fn open_grpc_web(
    client: &reqwest::Client,
    app: &TestApp,
    auth: Option<&str>,
    request: &events::WatchSessionEventsRequest,
) -> Incoming {
    let mut builder = client
        .post(app.url(WATCH))
        .header("content-type", "application/grpc-web+proto")
        .header("accept", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(frame(0, &request.encode_to_vec()));
    if let Some(auth) = auth {
        builder = builder.header("authorization", auth);
    }
    let response = builder.send().await.expect("gRPC-Web request");
    assert_eq!(response.status(), 200);
    Incoming::new(response)
}

/// Connect's streaming codecs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Json,
    Proto,
}

/// The next event of a Connect stream, or its end-of-stream JSON.
pub enum ConnectItem {
    Event(events::SessionEvent),
    End(Value),
}

/// Opens WatchSessionEvents over Connect streaming with `client`.
pub async fn open_connect(
    client: &reqwest::Client,
    app: &TestApp,
    codec: Codec,
    auth: Option<&str>,
    request: &events::WatchSessionEventsRequest,
) -> (Incoming, Codec) {
    let (content_type, payload) = match codec {
        Codec::Json => (
            "application/connect+json",
            serde_json::to_vec(request).expect("JSON request"),
        ),
        Codec::Proto => ("application/connect+proto", request.encode_to_vec()),
    };
    let mut builder = client
        .post(app.url(WATCH))
        .header("content-type", content_type)
        .header("connect-protocol-version", "1")
        .body(frame(0, &payload));
    if let Some(auth) = auth {
        builder = builder.header("authorization", auth);
    }
    let response = builder.send().await.expect("Connect request");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some(content_type)
    );
    (Incoming::new(response), codec)
}

pub async fn next_connect(stream: &mut (Incoming, Codec)) -> ConnectItem {
    let (flags, payload) = stream
        .0
        .frame()
        .await
        .expect("an envelope before the stream ends");
    if flags & 0x02 != 0 {
        return ConnectItem::End(serde_json::from_slice(&payload).expect("end-of-stream JSON"));
    }
    let event = match stream.1 {
        Codec::Json => serde_json::from_slice(&payload).expect("a SessionEvent in JSON"),
        Codec::Proto => events::SessionEvent::decode(payload.as_slice()).expect("a SessionEvent"),
    };
    ConnectItem::Event(event)
}

/// The native gRPC client with `auth` on every call.
pub fn grpc_request<T>(message: T, auth: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", auth.parse().expect("metadata value"));
    request
}

pub fn grpc_client(
    app: &TestApp,
) -> events::session_event_service_client::SessionEventServiceClient<tonic::transport::Channel> {
    events::session_event_service_client::SessionEventServiceClient::new(app.channel.clone())
}

/// `GET /v1/session-events?<query>`, asked again until `done` says the answer is complete.
/// On PostgreSQL an event is listed only once no older transaction is running anywhere in the
/// cluster, so right after a write the list may briefly lag behind it.
pub async fn list_until(
    app: &TestApp,
    auth: &str,
    query: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Answer {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let answer = send(
            app.http
                .get(app.url(&format!("/v1/session-events?{query}")))
                .header("authorization", auth),
        )
        .await;
        assert_eq!(answer.status, 200, "{query}: {}", answer.body);
        let events = answer.json["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if done(&events) {
            return answer;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{query}: still {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A watch from the oldest retained event.
pub fn from_start() -> events::WatchSessionEventsRequest {
    events::WatchSessionEventsRequest {
        after: "0".into(),
        ..Default::default()
    }
}

/// Creates a session for `user` and deletes it (admin, native gRPC): its id.
pub async fn create_and_delete(app: &TestApp, user: &User) -> String {
    let created = app.create_session_for(user).await;
    app.api(Protocol::Grpc, Version::V2)
        .delete(
            Some(&app.admin()),
            v2::DeleteSessionRequest {
                session_id: created.session_id.clone(),
                session_token: None,
            },
        )
        .await
        .expect("deleting the session");
    readable(app, &created.session_id).await;
    created.session_id
}

/// Waits until the termination of `session` is in the feed's list. On PostgreSQL an event
/// shows once no older transaction anywhere in the cluster is still open (another test's may
/// be); once it shows, so do all events written before it.
pub async fn readable(app: &TestApp, session: &str) {
    readable_as(app, session, "terminated").await;
}

/// Waits until an event of `session` of type `kind` (`added`, `terminated`) is in the
/// feed's list; see [`readable`].
pub async fn readable_as(app: &TestApp, session: &str, kind: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let answer = send(
            app.http
                .get(app.url(&format!(
                    "/v1/session-events?after=0&types={kind}&limit=1000"
                )))
                .header("authorization", app.admin()),
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let listed = answer.json["events"]
            .as_array()
            .is_some_and(|events| events.iter().any(|e| e["sessionId"] == session));
        if listed {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{}", answer.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `(session, type)` pairs a protocol must show for one [`create_and_delete`].
pub fn added_then_terminated(session: &str) -> Vec<(String, i32)> {
    vec![
        (session.to_owned(), events::SessionEventType::Added as i32),
        (
            session.to_owned(),
            events::SessionEventType::Terminated as i32,
        ),
    ]
}
