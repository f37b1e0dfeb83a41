//! The session event feed as Server-Sent Events, and the REST list on the same path.
//!
//! `GET /v1/session-events` answers JSON (`ListSessionEventsResponse`, the REST transcoding
//! of `ListSessionEvents`) unless the client asks for `Accept: text/event-stream`; then it
//! streams. `GET /auth/sessions/events` (in `self_service.rs`) streams the caller's own
//! user's events, authenticated by its session token.
//!
//! One event is `id: <cursor>`, `event: session.added|session.updated|session.terminated`
//! and `data: <the SessionEvent as proto3 JSON, one line>`, then a blank line. A comment
//! (`: keepalive`) goes out every `--feed-keepalive` so proxies keep an idle stream open.
//! A stream resumes after `Last-Event-ID` (what a browser sends when it reconnects), else
//! after `?after=`: the header wins, because the browser repeats the original URL, `?after=`
//! included, on every reconnect. Errors before the stream starts are ordinary JSON answers
//! in the route's shape; once it has started, the stream just ends (at server shutdown, or
//! when the feed fails), and `EventSource` reconnects with the last id.
//!
//! Query parameters: `after`, `user_id` (or `userId`), `types` (repeated or comma-separated;
//! `terminated`, `session.terminated` or `SESSION_EVENT_TYPE_TERMINATED`), and for the list
//! `limit`. Other parameters are ignored (clients add cache busters).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, header};

use super::FaceState;
use super::edges::{self, Credentials};
use super::events::{self, event_to_pb, non_empty, types_from_names};
use super::rest::RestError;
use crate::core::{Encoding, EventBatches};
use crate::domain::{Error, EventFilter, SessionEvent, error_ids};

/// Whether the client asked for an event stream: its `Accept` names `text/event-stream` (as
/// every `EventSource` does). Nothing else gets one, so a client that did not ask is never
/// held open by an answer that does not end.
pub fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
        })
}

/// The filter of a query string. `user_id` is read only where `allow_user` (the
/// self-service stream is always the caller's own user).
pub fn query_filter(pairs: &[(String, String)], allow_user: bool) -> Result<EventFilter, Error> {
    let invalid =
        |message: String| Error::invalid_argument(error_ids::FEED_FILTER_INVALID, message);
    let mut filter = EventFilter::default();
    let mut types = Vec::new();
    for (key, value) in pairs {
        match key.as_str() {
            "after" => filter.after = non_empty(Some(value.clone())),
            "user_id" | "userId" if allow_user => {
                filter.user_id = non_empty(Some(value.clone()));
            }
            "types" | "type" => types.push(value.as_str()),
            "limit" => {
                let limit = value
                    .parse::<u32>()
                    .map_err(|_| invalid(format!("limit must be a whole number, not {value:?}")))?;
                filter.limit = (limit != 0).then_some(limit);
            }
            _ => {}
        }
    }
    filter.types = types_from_names(types)?;
    Ok(filter)
}

/// Where a stream resumes: after `Last-Event-ID` when the client sent one, else `after`.
pub fn resume_after(headers: &HeaderMap, after: Option<String>) -> Option<String> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .or(after)
}

/// One event in the stream's framing.
pub fn frame(event: &SessionEvent) -> Result<Bytes, Error> {
    let data = serde_json::to_string(&event_to_pb(event))
        .map_err(|e| Error::internal(error_ids::ENCODE_FAILED, e))?;
    Ok(Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {data}\n\n",
        event.cursor,
        event.event_type.as_str()
    )))
}

const KEEPALIVE: &[u8] = b": keepalive\n\n";

/// The response streaming `events`, with a keepalive comment every `keepalive`. It ends
/// when the feed ends or fails (the server shutting down says so this way). Each batch of
/// the feed goes out as one chunk, shared by every stream that holds the same batch.
pub fn response(events: EventBatches, keepalive: Duration) -> Response {
    let start = tokio::time::Instant::now() + keepalive;
    let mut ticks = tokio::time::interval_at(start, keepalive);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let body = futures_util::stream::unfold(Some((events, ticks)), |state| async move {
        let (mut events, mut ticks) = state?;
        let chunk = tokio::select! {
            biased;
            item = events.next() => match item {
                Some(Ok(events)) => events.encoded(Encoding::Sse, frame),
                Some(Err(error)) => Err(error),
                None => return None,
            },
            _ = ticks.tick() => Ok(Bytes::from_static(KEEPALIVE)),
        };
        match chunk {
            Ok(bytes) => Some((
                Ok::<_, std::convert::Infallible>(bytes),
                Some((events, ticks)),
            )),
            Err(error) => {
                if error.kind() == crate::domain::ErrorKind::Internal {
                    tracing::error!(error = ?error, "the event stream failed");
                }
                None
            }
        }
    });
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// `GET /v1/session-events`: a JSON page, or the stream for `Accept: text/event-stream`.
async fn list_or_watch(
    State(state): State<FaceState>,
    headers: HeaderMap,
    query: edges::Query<RestError>,
    credentials: Credentials,
) -> Result<Response, RestError> {
    let principal = state.api.authenticate(credentials.authorization()).await?;
    let mut filter = query_filter(&query.0, true)?;
    if wants_event_stream(&headers) {
        filter.after = resume_after(&headers, filter.after);
        filter.limit = None;
        let events = state
            .api
            .core()
            .watch_session_event_batches(&principal, filter)
            .await?;
        Ok(response(events, state.feed_keepalive))
    } else {
        let page = events::list(&state.api, &principal, filter).await?;
        Ok(axum::Json(page).into_response())
    }
}

pub fn routes() -> axum::Router<FaceState> {
    axum::Router::new().route(
        <events::ListSessionEvents as super::rpc::Rpc>::INFO
            .http
            .path,
        get(list_or_watch),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{SessionEventType, TerminationReason, Time};

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn only_an_event_stream_accept_asks_for_the_stream() {
        let mut headers = HeaderMap::new();
        assert!(!wants_event_stream(&headers));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!wants_event_stream(&headers));
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, Text/Event-Stream;q=0.9"),
        );
        assert!(wants_event_stream(&headers));
    }

    #[test]
    fn last_event_id_wins_over_after() {
        let mut headers = HeaderMap::new();
        assert_eq!(resume_after(&headers, Some("3".into())), Some("3".into()));
        headers.insert("last-event-id", HeaderValue::from_static("7"));
        assert_eq!(resume_after(&headers, Some("3".into())), Some("7".into()));
        headers.insert("last-event-id", HeaderValue::from_static(""));
        assert_eq!(resume_after(&headers, None), None);
    }

    #[test]
    fn queries_name_types_in_every_spelling_and_repeat_them() -> Result<(), Error> {
        let filter = query_filter(
            &pairs(&[
                ("types", "added,session.updated"),
                ("types", "SESSION_EVENT_TYPE_TERMINATED"),
                ("user_id", "u1"),
                ("after", "5"),
                ("limit", "10"),
                ("_", "cache-buster"),
            ]),
            true,
        )?;
        assert_eq!(
            filter.types,
            vec![
                SessionEventType::Added,
                SessionEventType::Updated,
                SessionEventType::Terminated
            ]
        );
        assert_eq!(filter.user_id.as_deref(), Some("u1"));
        assert_eq!(filter.after.as_deref(), Some("5"));
        assert_eq!(filter.limit, Some(10));
        let own = query_filter(&pairs(&[("user_id", "someone-else")]), false)?;
        assert_eq!(own.user_id, None);
        for bad in [("types", "deleted"), ("limit", "-1"), ("limit", "many")] {
            let error = query_filter(&pairs(&[bad]), true).err().map(|e| e.id());
            assert_eq!(error, Some(error_ids::FEED_FILTER_INVALID), "{bad:?}");
        }
        Ok(())
    }

    #[test]
    fn an_event_is_one_frame_with_its_cursor_type_and_json_on_one_line() -> Result<(), Error> {
        let event = SessionEvent {
            cursor: "42".into(),
            session_id: "s\n1".into(),
            user_id: Some("u1".into()),
            event_type: SessionEventType::Terminated,
            sequence: 2,
            occurred_at: Time::from_unix_parts(0, 0),
            resource_owner: "sessiond".into(),
            reason: Some(TerminationReason::Deleted),
        };
        let text = String::from_utf8(frame(&event)?.to_vec()).unwrap_or_default();
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines[0], "id: 42");
        assert_eq!(lines[1], "event: session.terminated");
        assert!(lines[2].starts_with("data: {"), "{text}");
        assert_eq!(&lines[3..], ["", ""]);
        let data: serde_json::Value =
            serde_json::from_str(lines[2].trim_start_matches("data: ")).unwrap_or_default();
        assert_eq!(data["sessionId"], "s\n1");
        assert_eq!(data["reason"], "TERMINATION_REASON_DELETED");
        Ok(())
    }
}
