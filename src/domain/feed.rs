//! The session event feed: what one event says, how a reader asks for events, and the
//! position (cursor) every event has in the one global order.
//!
//! A cursor is opaque to clients. Inside, it is a [`FeedPosition`]: two numbers compared in
//! order. SQLite numbers events with one counter (`"17"`); PostgreSQL with the writing
//! transaction's id and a serial (`"815.17"`). `"0"` is before every event.

use super::Time;

/// What happened to a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionEventType {
    Added,
    Updated,
    Terminated,
}

impl SessionEventType {
    pub const ALL: [SessionEventType; 3] = [Self::Added, Self::Updated, Self::Terminated];

    /// The name stored in the event log and shown to clients.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "session.added",
            Self::Updated => "session.updated",
            Self::Terminated => "session.terminated",
        }
    }

    /// `session.added` or its short form `added` (and likewise for the others).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s || t.as_str().strip_prefix("session.") == Some(s))
    }
}

/// Why a session was terminated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TerminationReason {
    /// Deleted with its own token or by its owner: DeleteSession, or a self-service revoke of
    /// one session.
    Deleted,
    /// By an administrator: the admin API, the Kratos admin API or the `sessions` command.
    RevokedByAdmin,
    /// "Revoke my other sessions".
    RevokedOthers,
    UserLocked,
    UserDeactivated,
    PasswordChanged,
    /// A second factor of its user was enrolled or removed.
    FactorsChanged,
}

impl TerminationReason {
    /// The reason as the event log stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deleted => "deleted",
            Self::RevokedByAdmin => "revoked_by_admin",
            Self::RevokedOthers => "revoke_others",
            Self::UserLocked => "user_locked",
            Self::UserDeactivated => "user_deactivated",
            Self::PasswordChanged => "password_changed",
            Self::FactorsChanged => "factors_changed",
        }
    }

    /// A stored reason. Older logs wrote `revoked_by_operator` for the command line (an
    /// administrator too) and `revoked_by_user` for a self-service revoke of one session (the
    /// grouped ones of "revoke my other sessions" were rewritten to `revoke_others` when the
    /// feed was introduced); unknown reasons read as none.
    pub fn from_stored(s: &str) -> Option<Self> {
        Some(match s {
            "deleted" | "revoked_by_user" => Self::Deleted,
            "revoked_by_admin" | "revoked_by_operator" => Self::RevokedByAdmin,
            "revoke_others" => Self::RevokedOthers,
            "user_locked" => Self::UserLocked,
            "user_deactivated" => Self::UserDeactivated,
            "password_changed" => Self::PasswordChanged,
            "factors_changed" => Self::FactorsChanged,
            _ => return None,
        })
    }
}

/// One event of the feed.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionEvent {
    /// Where this event is: a reader resuming after it gets the events after it.
    pub cursor: String,
    pub session_id: String,
    pub user_id: Option<String>,
    pub event_type: SessionEventType,
    /// The session's own sequence: 1 on creation, +1 per change.
    pub sequence: u64,
    pub occurred_at: Time,
    pub resource_owner: String,
    /// Set only for `Terminated`.
    pub reason: Option<TerminationReason>,
}

/// What a reader of the feed asks for.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// The cursor to continue after. Watch: `None` or empty starts from now. List: `None` or
    /// empty starts from the oldest retained event (a list "from now" would always be
    /// empty). `"0"` is the oldest retained event for both.
    pub after: Option<String>,
    /// Only this user's events.
    pub user_id: Option<String>,
    /// Only these types; empty means all.
    pub types: Vec<SessionEventType>,
    /// List only: page size, default [`DEFAULT_EVENT_PAGE`], at most [`MAX_EVENT_PAGE`]
    /// (larger values are refused).
    pub limit: Option<u32>,
}

pub const DEFAULT_EVENT_PAGE: u32 = 100;
pub const MAX_EVENT_PAGE: u32 = 1000;

/// A page of events and where to continue.
#[derive(Clone, Debug)]
pub struct EventPage {
    pub events: Vec<SessionEvent>,
    /// Never before the page's last event; may be past it (events the filter skipped).
    pub next_cursor: String,
}

/// A position in the global order of events: `(major, minor)` compared in order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FeedPosition {
    /// The writing transaction's id on PostgreSQL; 0 on SQLite.
    pub major: u64,
    /// The event's number.
    pub minor: u64,
}

impl FeedPosition {
    /// Before every event.
    pub const START: FeedPosition = FeedPosition { major: 0, minor: 0 };

    pub fn new(major: u64, minor: u64) -> Self {
        Self { major, minor }
    }

    /// `"N"` or `"M.N"`; `None` for anything else (signs, spaces, overflow, empty parts).
    pub fn parse(text: &str) -> Option<Self> {
        fn number(s: &str) -> Option<u64> {
            if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        }
        match text.split_once('.') {
            None => Some(Self::new(0, number(text)?)),
            Some((major, minor)) => Some(Self::new(number(major)?, number(minor)?)),
        }
    }
}

impl std::fmt::Display for FeedPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.major == 0 {
            write!(f, "{}", self.minor)
        } else {
            write!(f, "{}.{}", self.major, self.minor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_parse_long_and_short_names() {
        for t in SessionEventType::ALL {
            assert_eq!(SessionEventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(
            SessionEventType::parse("terminated"),
            Some(SessionEventType::Terminated)
        );
        assert_eq!(SessionEventType::parse("session."), None);
        assert_eq!(SessionEventType::parse("Added"), None);
    }

    #[test]
    fn positions_round_trip_and_order() {
        for text in ["0", "17", "815.17", "18446744073709551615.1"] {
            assert_eq!(FeedPosition::parse(text).unwrap().to_string(), text);
        }
        assert!(FeedPosition::parse("815.17").unwrap() > FeedPosition::parse("99").unwrap());
        assert!(FeedPosition::new(3, 1) < FeedPosition::new(3, 2));
        for bad in [
            "",
            "-1",
            "1.",
            ".1",
            "1.2.3",
            " 1",
            "+1",
            "abc",
            "18446744073709551616",
            "1e3",
        ] {
            assert_eq!(FeedPosition::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn stored_reasons_read_back() {
        for r in [
            TerminationReason::Deleted,
            TerminationReason::RevokedByAdmin,
            TerminationReason::RevokedOthers,
            TerminationReason::UserLocked,
            TerminationReason::UserDeactivated,
            TerminationReason::PasswordChanged,
        ] {
            assert_eq!(TerminationReason::from_stored(r.as_str()), Some(r));
        }
        assert_eq!(
            TerminationReason::from_stored("revoked_by_operator"),
            Some(TerminationReason::RevokedByAdmin)
        );
        assert_eq!(TerminationReason::from_stored("other"), None);
    }
}
