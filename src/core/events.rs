//! The session event feed as the core offers it: a page of past events, and a live stream.
//! The core decides who sees what and checks the request; the hub (`crate::feed`) and the
//! store do the reading.
//!
//! Visibility: a caller with `session.read` sees every event; any other caller (a user's JWT,
//! a session token) sees only the events of its own user. Such a caller naming another user in
//! the filter is refused with PERMISSION_DENIED (not answered with an empty feed, which would
//! look like a quiet user).
//!
//! Cursors: `"0"` is before the oldest retained event. An empty cursor means, for a list, the
//! oldest retained event too (a list "from now" would always be empty), and for a watch, now.
//! A list page holds 100 events unless the filter says otherwise (0 also means 100); more than
//! 1000 is refused with INVALID_ARGUMENT.

use crate::domain::{
    DEFAULT_EVENT_PAGE, Error, EventFilter, EventPage, FeedPosition, MAX_EVENT_PAGE, Permission,
    Principal, error_ids,
};
use crate::feed::{Selection, cursor_invalid, read_page};

use super::Core;

pub use crate::feed::{Encoding, EventBatches, EventStream, Events, SharedEvent};

impl Core {
    /// A page of past events after the filter's cursor.
    pub async fn list_session_events(
        &self,
        principal: &Principal,
        filter: EventFilter,
    ) -> Result<EventPage, Error> {
        let selection = selection(principal, &filter)?;
        let limit = match filter.limit {
            None | Some(0) => DEFAULT_EVENT_PAGE,
            Some(n) if n <= MAX_EVENT_PAGE => n,
            Some(n) => {
                return Err(Error::invalid_argument(
                    error_ids::FEED_FILTER_INVALID,
                    format!("limit {n} is more than {MAX_EVENT_PAGE} events"),
                ));
            }
        };
        let after = cursor(filter.after.as_deref())?.unwrap_or(FeedPosition::START);
        let page = read_page(self.store(), after, &selection, limit).await?;
        Ok(EventPage {
            events: page.events,
            next_cursor: page.scanned_to.max(after).to_string(),
        })
    }

    /// A live stream of the events after the filter's cursor (from now without one). A bad or
    /// expired cursor fails the call; once streaming, the stream ends after its first error
    /// (`FEED_SHUTDOWN` when the server stops).
    pub async fn watch_session_events(
        &self,
        principal: &Principal,
        filter: EventFilter,
    ) -> Result<EventStream, Error> {
        let batches = self.watch_session_event_batches(principal, filter).await?;
        Ok(crate::feed::one_by_one(batches))
    }

    /// The same stream a batch at a time: what the faces write, each batch in one write.
    pub async fn watch_session_event_batches(
        &self,
        principal: &Principal,
        filter: EventFilter,
    ) -> Result<EventBatches, Error> {
        let selection = selection(principal, &filter)?;
        let after = cursor(filter.after.as_deref())?;
        self.feed.subscribe(after, selection).await
    }

    /// The hub (metrics, shutdown).
    pub fn feed(&self) -> &crate::feed::Feed {
        &self.feed
    }
}

/// The filter's cursor: `None` when empty.
fn cursor(after: Option<&str>) -> Result<Option<FeedPosition>, Error> {
    match after {
        None | Some("") => Ok(None),
        Some(text) => FeedPosition::parse(text)
            .map(Some)
            .ok_or_else(cursor_invalid),
    }
}

/// What the caller may see of what it asked for.
fn selection(principal: &Principal, filter: &EventFilter) -> Result<Selection, Error> {
    let user_id = if principal.can(Permission::SessionRead) {
        filter.user_id.clone().filter(|u| !u.is_empty())
    } else {
        match filter.user_id.as_deref() {
            None | Some("") => {}
            Some(other) if other == principal.user_id => {}
            Some(_) => {
                return Err(Error::permission_denied(
                    error_ids::PERMISSION_MISSING,
                    "the events of another user need session.read",
                ));
            }
        }
        Some(principal.user_id.clone())
    };
    Ok(Selection {
        user_id,
        types: filter.types.clone(),
    })
}
