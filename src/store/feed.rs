//! The store's side of the session event feed: reading the event log by global position, the
//! retention horizon, and the wake-up signal a store raises when it has appended events.
//!
//! The event log is the truth: a reader asks for the events after a position and gets them in
//! position order, with no event ever appearing later below a position already returned (how
//! each backend guarantees that is in its `feed` module). The wake-up only says "look again";
//! losing one delays a reader by at most its poll interval, never loses an event.

use std::sync::Arc;

use tokio::sync::watch;

use crate::domain::{FeedPosition, SessionEventType, Time};

/// A read of the feed.
#[derive(Clone, Debug)]
pub struct FeedQuery {
    /// Events strictly after this position.
    pub after: FeedPosition,
    /// Only this user's events.
    pub user_id: Option<String>,
    /// Only these types; empty means all.
    pub types: Vec<SessionEventType>,
    /// At most this many events.
    pub limit: u32,
}

impl FeedQuery {
    /// The stored names of the types asked for (all three when none is named).
    pub fn type_names(&self) -> [&'static str; 3] {
        let all = SessionEventType::ALL;
        let mut names = all.map(SessionEventType::as_str);
        if !self.types.is_empty() {
            for (slot, t) in names.iter_mut().zip(all) {
                if !self.types.contains(&t) {
                    // No stored event has an empty type: the slot matches nothing.
                    *slot = "";
                }
            }
        }
        names
    }
}

/// One stored event with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedRow {
    pub position: FeedPosition,
    pub session_id: String,
    pub user_id: Option<String>,
    pub event_type: String,
    pub sequence: u64,
    pub created_at: Time,
    pub resource_owner: String,
    pub payload: serde_json::Value,
}

/// What one read of the feed found, all from one snapshot.
#[derive(Clone, Debug)]
pub struct FeedPage {
    /// The matching events after the asked position, in position order.
    pub rows: Vec<FeedRow>,
    /// Where the next read continues: the last row's position if the page is full, else the
    /// head of the log (every event up to it has been looked at; later ones come after it).
    pub scanned_to: FeedPosition,
    /// The highest position a prune has deleted.
    pub horizon: FeedPosition,
    /// The highest position readable now.
    pub head: FeedPosition,
    /// Committed events exist past the head that are not readable yet (PostgreSQL: an older
    /// transaction is still running). They become readable without any new write, so a
    /// reader that wants them soon looks again shortly.
    pub held_back: bool,
}

/// The ends of the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedBounds {
    /// The highest position a prune has deleted ([`FeedPosition::START`] if none).
    pub horizon: FeedPosition,
    /// The highest position readable now ([`FeedPosition::START`] if the log is empty).
    pub head: FeedPosition,
}

/// Raised by a store after it has committed appended events (and, on PostgreSQL, when another
/// replica says it has). Cheap to raise; readers see only that it changed since they last
/// looked, so many raises while nobody looks are one.
#[derive(Clone, Debug)]
pub struct FeedWake(Arc<watch::Sender<u64>>);

impl Default for FeedWake {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(0)))
    }
}

impl FeedWake {
    pub fn wake(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees the next raise.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_blank_the_types_not_asked_for() {
        let mut query = FeedQuery {
            after: FeedPosition::START,
            user_id: None,
            types: Vec::new(),
            limit: 1,
        };
        assert_eq!(
            query.type_names(),
            ["session.added", "session.updated", "session.terminated"]
        );
        query.types = vec![SessionEventType::Terminated];
        assert_eq!(query.type_names(), ["", "", "session.terminated"]);
    }
}
