//! The session event feed over the core: a page of events, or a live stream of them.

use crate::domain::{Error, EventFilter, EventPage, Principal, SessionEvent, error_ids};

use super::Core;

/// A live stream of events, ending with an error when the server shuts down.
pub type EventStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<SessionEvent, Error>> + Send>>;

fn not_built() -> Error {
    Error::new(
        crate::domain::ErrorKind::Unavailable,
        error_ids::FEED_SHUTDOWN,
        "the session event feed is not available",
    )
}

impl Core {
    pub async fn list_session_events(
        &self,
        _principal: &Principal,
        _filter: EventFilter,
    ) -> Result<EventPage, Error> {
        Err(not_built())
    }

    pub async fn watch_session_events(
        &self,
        _principal: &Principal,
        _filter: EventFilter,
    ) -> Result<EventStream, Error> {
        Err(not_built())
    }
}
