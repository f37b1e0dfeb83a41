//! The session event feed, `sessiond.events.v1.SessionEventService`, at the protobuf level:
//! wire ↔ domain conversion, the list RPC (one [`Rpc`] like every unary RPC, so Connect
//! unary, gRPC, gRPC-Web, labels and the drift test come from the same table), and the tonic
//! server with the streaming `WatchSessionEvents`.
//!
//! The other transports of the stream live beside the ones they extend: Connect streaming in
//! `connect_stream.rs`, Server-Sent Events (and the REST list sharing its path) in `sse.rs`.
//! Who sees which events is the core's rule, not this module's.

use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use http::StatusCode;

use super::SessionApi;
use super::edges::Credentials;
use super::pb::sessiond::events::v1 as pb;
use super::rpc::{HttpRule, Rpc, RpcInfo, Serve, ServiceInfo, Verb, Visit};
use super::status::to_status;
use crate::domain::{
    Error, EventFilter, Principal, SessionEvent, SessionEventType, TerminationReason, error_ids,
};

/// The service's fully qualified name.
pub const SERVICE_NAME: &str = "sessiond.events.v1.SessionEventService";

/// The gRPC and Connect path of the streaming RPC.
pub const WATCH_PROCEDURE: &str = "/sessiond.events.v1.SessionEventService/WatchSessionEvents";

/// `sessiond.events.v1.SessionEventService/ListSessionEvents`.
pub struct ListSessionEvents;

impl Rpc for ListSessionEvents {
    type Request = pb::ListSessionEventsRequest;
    type Response = pb::ListSessionEventsResponse;
    const INFO: RpcInfo = RpcInfo {
        service: SERVICE_NAME,
        method: "ListSessionEvents",
        http: HttpRule {
            verb: Verb::Get,
            path: "/v1/session-events",
            body: false,
            success: StatusCode::OK,
        },
    };

    async fn call(
        api: &SessionApi,
        principal: Principal,
        request: pb::ListSessionEventsRequest,
    ) -> Result<pb::ListSessionEventsResponse, Error> {
        list(api, &principal, list_filter(request)?).await
    }
}

/// The service's table. Only the list has a REST rule; the watch is named by
/// [`WATCH_PROCEDURE`] (its labels come from the service name).
pub const SERVICE: ServiceInfo = ServiceInfo {
    name: SERVICE_NAME,
    label: "events.v1",
    rest_root: "/v1/session-events",
    rpcs: &[<ListSessionEvents as Rpc>::INFO],
};

/// Runs `visitor` for the service's unary RPCs.
pub fn visit(visitor: &mut impl Visit) {
    visitor.rpc::<ListSessionEvents>();
}

/// One page of events as the wire carries it.
pub async fn list(
    api: &SessionApi,
    principal: &Principal,
    filter: EventFilter,
) -> Result<pb::ListSessionEventsResponse, Error> {
    let page = api.core().list_session_events(principal, filter).await?;
    Ok(pb::ListSessionEventsResponse {
        events: page.events.iter().map(event_to_pb).collect(),
        next_cursor: page.next_cursor,
    })
}

/// The tonic service of the package over `serve`.
pub struct Grpc<S>(S);

/// The event stream as tonic sends it.
pub type GrpcEventStream =
    Pin<Box<dyn Stream<Item = Result<pb::SessionEvent, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl<S: Serve> pb::session_event_service_server::SessionEventService for Grpc<S> {
    type WatchSessionEventsStream = GrpcEventStream;

    async fn watch_session_events(
        &self,
        request: tonic::Request<pb::WatchSessionEventsRequest>,
    ) -> Result<tonic::Response<GrpcEventStream>, tonic::Status> {
        let credentials = Credentials::from_headers(request.metadata().as_ref());
        let events = self
            .0
            .watch_session_events(credentials, request.into_inner())
            .await
            .map_err(|e| to_status(&e))?;
        // Each event is its own message; tonic puts the messages ready at once (a batch of
        // the feed) into one buffer, written at once.
        let stream = crate::feed::one_by_one(events).map(|item| match item {
            Ok(event) => Ok(event_to_pb(&event)),
            Err(error) => Err(to_status(&error)),
        });
        Ok(tonic::Response::new(Box::pin(stream)))
    }

    async fn list_session_events(
        &self,
        request: tonic::Request<pb::ListSessionEventsRequest>,
    ) -> Result<tonic::Response<pb::ListSessionEventsResponse>, tonic::Status> {
        super::grpc::unary::<ListSessionEvents, S>(&self.0, request).await
    }
}

/// The tonic server of the package over `serve`.
pub fn server<S: Serve>(
    serve: S,
) -> pb::session_event_service_server::SessionEventServiceServer<Grpc<S>> {
    pb::session_event_service_server::SessionEventServiceServer::new(Grpc(serve))
}

/// A domain event as the wire carries it (every transport, SSE included).
pub fn event_to_pb(event: &SessionEvent) -> pb::SessionEvent {
    pb::SessionEvent {
        cursor: event.cursor.clone(),
        session_id: event.session_id.clone(),
        user_id: event.user_id.clone().unwrap_or_default(),
        r#type: type_to_pb(event.event_type) as i32,
        sequence: event.sequence,
        occurred_at: Some(event.occurred_at.into()),
        resource_owner: event.resource_owner.clone(),
        reason: event
            .reason
            .map_or(pb::TerminationReason::Unspecified, reason_to_pb) as i32,
    }
}

fn type_to_pb(event_type: SessionEventType) -> pb::SessionEventType {
    match event_type {
        SessionEventType::Added => pb::SessionEventType::Added,
        SessionEventType::Updated => pb::SessionEventType::Updated,
        SessionEventType::Terminated => pb::SessionEventType::Terminated,
    }
}

fn type_from_pb(event_type: pb::SessionEventType) -> Option<SessionEventType> {
    match event_type {
        pb::SessionEventType::Unspecified => None,
        pb::SessionEventType::Added => Some(SessionEventType::Added),
        pb::SessionEventType::Updated => Some(SessionEventType::Updated),
        pb::SessionEventType::Terminated => Some(SessionEventType::Terminated),
    }
}

fn reason_to_pb(reason: TerminationReason) -> pb::TerminationReason {
    match reason {
        TerminationReason::Deleted => pb::TerminationReason::Deleted,
        TerminationReason::RevokedByAdmin => pb::TerminationReason::RevokedByAdmin,
        TerminationReason::RevokedOthers => pb::TerminationReason::RevokedOthers,
        TerminationReason::UserLocked => pb::TerminationReason::UserLocked,
        TerminationReason::UserDeactivated => pb::TerminationReason::UserDeactivated,
        TerminationReason::PasswordChanged => pb::TerminationReason::PasswordChanged,
        TerminationReason::FactorsChanged => pb::TerminationReason::FactorsChanged,
    }
}

/// An event type as a client may name it in a query string: `terminated`,
/// `session.terminated` or the enum name `SESSION_EVENT_TYPE_TERMINATED`.
pub fn type_from_name(name: &str) -> Option<SessionEventType> {
    SessionEventType::parse(name)
        .or_else(|| pb::SessionEventType::from_str_name(name).and_then(type_from_pb))
}

fn invalid_type(what: impl std::fmt::Display) -> Error {
    Error::invalid_argument(
        error_ids::FEED_FILTER_INVALID,
        format!(
            "unknown session event type {what}: use added, updated or terminated \
             (or session.added, SESSION_EVENT_TYPE_ADDED, …)"
        ),
    )
}

/// The types of a request's `types` field; UNSPECIFIED or an unknown number is refused.
fn types_from_pb(values: &[i32]) -> Result<Vec<SessionEventType>, Error> {
    values
        .iter()
        .map(|&v| {
            pb::SessionEventType::try_from(v)
                .ok()
                .and_then(type_from_pb)
                .ok_or_else(|| invalid_type(v))
        })
        .collect()
}

/// The types named in query values, each value one name or a comma-separated list.
pub fn types_from_names<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<SessionEventType>, Error> {
    let mut types = Vec::new();
    for name in values.into_iter().flat_map(|v| v.split(',')) {
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        let parsed = type_from_name(name).ok_or_else(|| invalid_type(format!("{name:?}")))?;
        if !types.contains(&parsed) {
            types.push(parsed);
        }
    }
    Ok(types)
}

/// An empty string means no filter, as for every optional text field of the wire.
pub(super) fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// The filter of a watch.
pub fn watch_filter(request: pb::WatchSessionEventsRequest) -> Result<EventFilter, Error> {
    Ok(EventFilter {
        after: non_empty(Some(request.after)),
        user_id: non_empty(request.user_id),
        types: types_from_pb(&request.types)?,
        limit: None,
    })
}

/// The filter of a list page (a limit of 0 is the default page size).
pub fn list_filter(request: pb::ListSessionEventsRequest) -> Result<EventFilter, Error> {
    Ok(EventFilter {
        after: non_empty(Some(request.after)),
        user_id: non_empty(request.user_id),
        types: types_from_pb(&request.types)?,
        limit: (request.limit != 0).then_some(request.limit),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Time;

    #[test]
    fn every_type_name_a_client_may_use_is_understood() {
        for name in [
            "terminated",
            "session.terminated",
            "SESSION_EVENT_TYPE_TERMINATED",
        ] {
            assert_eq!(type_from_name(name), Some(SessionEventType::Terminated));
        }
        assert_eq!(type_from_name("SESSION_EVENT_TYPE_UNSPECIFIED"), None);
        assert_eq!(type_from_name("Terminated"), None);
        assert_eq!(
            types_from_names(["added,terminated", "added", ""]).map_err(|e| e.id()),
            Ok(vec![SessionEventType::Added, SessionEventType::Terminated])
        );
        assert!(types_from_names(["added,bogus"]).is_err());
    }

    #[test]
    fn unspecified_or_unknown_types_are_refused() {
        for bad in [0, 4, -1] {
            let request = pb::WatchSessionEventsRequest {
                types: vec![1, bad],
                ..Default::default()
            };
            let error = watch_filter(request).err().map(|e| e.id());
            assert_eq!(error, Some(error_ids::FEED_FILTER_INVALID), "{bad}");
        }
    }

    #[test]
    fn empty_fields_are_no_filter_and_a_zero_limit_is_the_default() {
        let filter = list_filter(pb::ListSessionEventsRequest {
            after: String::new(),
            user_id: Some(String::new()),
            types: vec![],
            limit: 0,
        })
        .map_err(|e| e.id());
        let filter = filter.as_ref().ok();
        assert_eq!(filter.map(|f| f.after.is_none()), Some(true));
        assert_eq!(filter.map(|f| f.user_id.is_none()), Some(true));
        assert_eq!(filter.map(|f| f.limit), Some(None));
    }

    #[test]
    fn events_keep_every_field_on_the_wire() {
        let event = SessionEvent {
            cursor: "815.17".into(),
            session_id: "s1".into(),
            user_id: Some("u1".into()),
            event_type: SessionEventType::Terminated,
            sequence: 3,
            occurred_at: Time::from_unix_parts(1_700_000_000, 0),
            resource_owner: "sessiond".into(),
            reason: Some(TerminationReason::RevokedOthers),
        };
        let wire = event_to_pb(&event);
        assert_eq!(wire.r#type, pb::SessionEventType::Terminated as i32);
        assert_eq!(wire.reason, pb::TerminationReason::RevokedOthers as i32);
        let json = serde_json::to_value(&wire).unwrap_or_default();
        assert_eq!(json["type"], "SESSION_EVENT_TYPE_TERMINATED");
        assert_eq!(json["reason"], "TERMINATION_REASON_REVOKED_OTHERS");
        assert_eq!(json["sequence"], "3");
        assert_eq!(json["userId"], "u1");
        assert_eq!(json["occurredAt"], "2023-11-14T22:13:20Z");
        let added = SessionEvent {
            event_type: SessionEventType::Added,
            reason: None,
            user_id: None,
            ..event
        };
        let json = serde_json::to_value(event_to_pb(&added)).unwrap_or_default();
        assert!(json.get("reason").is_none(), "{json}");
        assert!(json.get("userId").is_none(), "{json}");
    }
}
