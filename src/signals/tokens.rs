//! What a Security Event Token and a logout token say, built from one session event.
//!
//! - Every termination, whatever its cause, is a CAEP `session-revoked` SET whose subject is
//!   the session and its user (`sub_id` in the complex format, opaque ids), with
//!   `event_timestamp`, `initiating_entity` (from the recorded reason) and `reason_admin`.
//! - A termination for a password change is also a CAEP `credential-change` of the user,
//!   once per user and instant (one change ends all of the user's sessions at once).
//! - SETs carry `iss`, `iat`, `jti`, `aud`, `txn` and `sub_id`, never `sub` or `exp` (SSF).
//! - A logout token (Back-Channel Logout 1.0) carries `iss`, `aud` (the client), `iat`,
//!   `exp` (two minutes later), `jti`, the back-channel logout event, `sub` (the user) and
//!   `sid` (the session), never `nonce`. A client registered with `sessionRequired`
//!   (`backchannel_logout_session_required`) requires `sid` in every logout token: every
//!   termination here is of one session, so every token carries `sid` and both kinds of
//!   client get the same tokens; a token that could not name its session would not be sent
//!   to such a client (it would log out every session of the user at the client instead).
//! - A stream-updated SET (SSF) announces a status the transmitter gives a stream itself: a
//!   pause for inactivity, or that the stream stays enabled after all.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::domain::{SessionEvent, TerminationReason, Time};

pub const SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
pub const CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";
pub const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";
pub const STREAM_UPDATED: &str =
    "https://schemas.openid.net/secevent/ssf/event-type/stream-updated";
pub const BACKCHANNEL_LOGOUT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// JOSE `typ` of a SET and of a logout token.
pub const SET_TYP: &str = "secevent+jwt";
pub const LOGOUT_TYP: &str = "logout+jwt";

/// The `reason` of a pause for inactivity, and of calling it off.
pub const INACTIVE: &str = "The receiver showed no activity for the stream's inactivity_timeout";
pub const ACTIVE_AGAIN: &str = "The receiver showed activity again before the pause took effect";

/// Lifetime of a logout token.
pub const LOGOUT_TOKEN_LIFETIME: i64 = 120;

/// The event types a stream may ask for.
pub const EVENTS_SUPPORTED: [&str; 2] = [SESSION_REVOKED, CREDENTIAL_CHANGE];

/// Who ended a session, in CAEP's words, and why, for an administrator.
pub fn initiator(reason: Option<TerminationReason>) -> (&'static str, &'static str) {
    match reason {
        Some(TerminationReason::Deleted) => ("user", "The session was signed out"),
        Some(TerminationReason::RevokedOthers) => {
            ("user", "The user signed out of their other sessions")
        }
        Some(TerminationReason::RevokedByAdmin) => {
            ("admin", "An administrator revoked the session")
        }
        Some(TerminationReason::UserLocked) => ("admin", "The user was locked"),
        Some(TerminationReason::UserDeactivated) => ("admin", "The user was deactivated"),
        Some(TerminationReason::PasswordChanged) => (
            "policy",
            "The user's password changed; the session ended by policy",
        ),
        Some(TerminationReason::FactorsChanged) => (
            "policy",
            "The user's second factors changed; the session ended by policy",
        ),
        None => ("system", "The session was ended"),
    }
}

fn seconds(t: Time) -> i64 {
    t.unix_parts().0
}

/// The complex subject of one session of one user.
pub fn session_subject(event: &SessionEvent) -> Value {
    let mut subject = json!({
        "format": "complex",
        "session": {"format": "opaque", "id": event.session_id},
    });
    if let Some(user) = &event.user_id {
        subject["user"] = json!({"format": "opaque", "id": user});
    }
    subject
}

/// The claims of a `session-revoked` SET.
pub fn session_revoked(iss: &str, aud: &str, jti: &str, now: Time, event: &SessionEvent) -> Value {
    let (entity, reason) = initiator(event.reason);
    json!({
        "iss": iss,
        "aud": aud,
        "iat": seconds(now),
        "jti": jti,
        "txn": format!("{}.{}", event.session_id, event.sequence),
        "sub_id": session_subject(event),
        "events": {
            SESSION_REVOKED: {
                "event_timestamp": seconds(event.occurred_at),
                "initiating_entity": entity,
                "reason_admin": {"en": reason},
            }
        }
    })
}

/// The claims of a `credential-change` SET for a password change.
pub fn credential_change(
    iss: &str,
    aud: &str,
    jti: &str,
    now: Time,
    user: &str,
    at: Time,
) -> Value {
    json!({
        "iss": iss,
        "aud": aud,
        "iat": seconds(now),
        "jti": jti,
        "txn": format!("{user}.{}", at.unix_micros()),
        "sub_id": {"format": "complex", "user": {"format": "opaque", "id": user}},
        "events": {
            CREDENTIAL_CHANGE: {
                "credential_type": "password",
                "change_type": "update",
                "event_timestamp": seconds(at),
                "initiating_entity": "policy",
                "reason_admin": {"en": "The user's password changed"},
            }
        }
    })
}

/// The claims of a verification SET of a stream.
pub fn verification(
    iss: &str,
    aud: &str,
    jti: &str,
    now: Time,
    stream_id: &str,
    state: Option<&str>,
) -> Value {
    let mut event = json!({});
    if let Some(state) = state {
        event["state"] = Value::String(state.to_owned());
    }
    about_stream(iss, aud, jti, now, stream_id, VERIFICATION, event)
}

/// The claims of a stream-updated SET: the stream now has `status`, for `reason`.
pub fn stream_updated(
    iss: &str,
    aud: &str,
    jti: &str,
    now: Time,
    stream_id: &str,
    status: &str,
    reason: &str,
) -> Value {
    let event = json!({"status": status, "reason": reason});
    about_stream(iss, aud, jti, now, stream_id, STREAM_UPDATED, event)
}

/// A SET whose subject is the stream itself (SSF's own events), carrying one event.
fn about_stream(
    iss: &str,
    aud: &str,
    jti: &str,
    now: Time,
    stream_id: &str,
    event_type: &str,
    event: Value,
) -> Value {
    json!({
        "iss": iss,
        "aud": aud,
        "iat": seconds(now),
        "jti": jti,
        "sub_id": {"format": "opaque", "id": stream_id},
        "events": { event_type: event }
    })
}

/// The claims of a logout token; `None` when the client requires `sid`
/// (`session_required`) and the event names no session.
pub fn logout(
    iss: &str,
    client_id: &str,
    jti: &str,
    now: Time,
    event: &SessionEvent,
    session_required: bool,
) -> Option<Value> {
    if event.session_id.is_empty() {
        if session_required {
            return None;
        }
        event.user_id.as_ref()?;
    }
    let mut claims = json!({
        "iss": iss,
        "aud": client_id,
        "iat": seconds(now),
        "exp": seconds(now) + LOGOUT_TOKEN_LIFETIME,
        "jti": jti,
        "events": { BACKCHANNEL_LOGOUT: {} }
    });
    if !event.session_id.is_empty() {
        claims["sid"] = Value::String(event.session_id.clone());
    }
    if let Some(user) = &event.user_id {
        claims["sub"] = Value::String(user.clone());
    }
    Some(claims)
}

/// The subjects removed from a stream, read once per page of events and matched against
/// each event without building JSON: simple subjects by identity, complex ones if each
/// member is absent on one side or the same. The opaque ids of simple subjects, and complex
/// subjects naming only a session or only a user, are looked up in sets, so a stream with
/// many removed subjects costs the same per event as one with a few.
#[derive(Debug, Default)]
pub struct RemovedSubjects {
    /// Simple opaque subjects: a session id or a user id.
    ids: HashSet<String>,
    /// Complex subjects with only an opaque `session` member.
    sessions: HashSet<String>,
    /// Complex subjects with only an opaque `user` member.
    users: HashSet<String>,
    /// Other complex subjects (both members, or a member that is not an opaque id).
    complex: Vec<(Option<Member>, Option<Member>)>,
}

/// One member of a stored complex subject, as an event's own subject compares with it.
#[derive(Debug)]
enum Member {
    /// `{"format": "opaque", "id": …}`, exactly.
    Opaque(String),
    /// Anything else: never equal to an event's member (always an opaque id).
    Other,
}

impl Member {
    fn of(value: &Value) -> Self {
        opaque_id(value).map_or(Self::Other, |id| Self::Opaque(id.to_owned()))
    }

    fn is(&self, id: &str) -> bool {
        matches!(self, Self::Opaque(ours) if ours == id)
    }
}

/// The id of a subject that is exactly `{"format": "opaque", "id": "<string>"}`.
fn opaque_id(value: &Value) -> Option<&str> {
    let object = value.as_object()?;
    (object.len() == 2 && object.get("format")?.as_str()? == "opaque")
        .then(|| object.get("id")?.as_str())
        .flatten()
}

impl RemovedSubjects {
    /// From stored subjects (canonical JSON); what does not parse names nothing.
    pub fn new<'a>(stored: impl IntoIterator<Item = &'a str>) -> Self {
        let mut removed = Self::default();
        for subject in stored {
            let Ok(subject) = serde_json::from_str::<Value>(subject) else {
                continue;
            };
            removed.add(&subject);
        }
        removed
    }

    fn add(&mut self, subject: &Value) {
        match subject.get("format").and_then(Value::as_str) {
            Some("opaque") => {
                if let Some(id) = opaque_id(subject) {
                    self.ids.insert(id.to_owned());
                }
            }
            Some("complex") => {
                let session = subject.get("session").map(Member::of);
                let user = subject.get("user").map(Member::of);
                match (session, user) {
                    (None, None) => {}
                    (Some(Member::Opaque(id)), None) => {
                        self.sessions.insert(id);
                    }
                    (None, Some(Member::Opaque(id))) => {
                        self.users.insert(id);
                    }
                    members => self.complex.push(members),
                }
            }
            _ => {}
        }
    }

    /// Whether a removed subject names this event's session or user.
    pub fn matches(&self, event: &SessionEvent) -> bool {
        let session = event.session_id.as_str();
        let user = event.user_id.as_deref();
        // An event without a user matches a complex subject's `user` member (absent on the
        // event's side), as it matches any member it lacks.
        let user_member = |member: &Option<Member>| match (member, user) {
            (None, _) | (Some(_), None) => true,
            (Some(m), Some(u)) => m.is(u),
        };
        self.ids.contains(session)
            || user.is_some_and(|u| self.ids.contains(u))
            || self.sessions.contains(session)
            || match user {
                Some(u) => self.users.contains(u),
                None => !self.users.is_empty(),
            }
            || self
                .complex
                .iter()
                .any(|(s, u)| s.as_ref().is_none_or(|m| m.is(session)) && user_member(u))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SessionEventType;

    fn terminated(reason: TerminationReason) -> SessionEvent {
        SessionEvent {
            cursor: "7".into(),
            session_id: "s1".into(),
            user_id: Some("u1".into()),
            event_type: SessionEventType::Terminated,
            sequence: 3,
            occurred_at: Time::from_unix_parts(1_700_000_000, 0),
            resource_owner: "sessiond".into(),
            reason: Some(reason),
        }
    }

    #[test]
    fn session_revoked_names_session_and_user_and_no_sub_or_exp() {
        let now = Time::from_unix_parts(1_700_000_005, 0);
        let claims = session_revoked(
            "https://i",
            "r",
            "j",
            now,
            &terminated(TerminationReason::RevokedByAdmin),
        );
        assert_eq!(claims["sub_id"]["session"]["id"], "s1");
        assert_eq!(claims["sub_id"]["user"]["id"], "u1");
        assert_eq!(
            claims["events"][SESSION_REVOKED]["initiating_entity"],
            "admin"
        );
        assert_eq!(
            claims["events"][SESSION_REVOKED]["event_timestamp"],
            1_700_000_000
        );
        assert!(claims.get("sub").is_none() && claims.get("exp").is_none());
    }

    #[test]
    fn logout_tokens_have_sub_sid_exp_and_never_nonce() {
        let now = Time::from_unix_parts(1_700_000_005, 0);
        for session_required in [false, true] {
            let claims = logout(
                "https://i",
                "app",
                "j",
                now,
                &terminated(TerminationReason::Deleted),
                session_required,
            )
            .expect("a token");
            assert_eq!(claims["sub"], "u1");
            assert_eq!(claims["sid"], "s1");
            assert_eq!(claims["exp"], 1_700_000_125);
            assert!(claims.get("nonce").is_none());
        }
    }

    #[test]
    fn a_client_that_requires_sid_gets_no_token_without_one_and_others_get_sub_alone() {
        let now = Time::from_unix_parts(1_700_000_005, 0);
        let mut event = terminated(TerminationReason::Deleted);
        event.session_id = String::new();
        assert_eq!(logout("https://i", "app", "j", now, &event, true), None);
        let claims = logout("https://i", "app", "j", now, &event, false).expect("a token");
        assert_eq!(claims["sub"], "u1");
        assert!(claims.get("sid").is_none());
        event.user_id = None;
        assert_eq!(logout("https://i", "app", "j", now, &event, false), None);
    }

    #[test]
    fn stream_updated_names_the_stream_and_its_status() {
        let now = Time::from_unix_parts(1_700_000_005, 0);
        let claims = stream_updated("https://i", "r", "j", now, "st1", "paused", INACTIVE);
        assert_eq!(claims["sub_id"], json!({"format": "opaque", "id": "st1"}));
        assert_eq!(claims["events"][STREAM_UPDATED]["status"], "paused");
        assert_eq!(claims["events"][STREAM_UPDATED]["reason"], INACTIVE);
    }

    /// Whether `subject` removed from a stream removes `event`.
    fn removes(subject: Value, event: &SessionEvent) -> bool {
        RemovedSubjects::new([subject.to_string().as_str()]).matches(event)
    }

    #[test]
    fn subjects_match_by_member() {
        let event = terminated(TerminationReason::Deleted);
        let opaque = |id: &str| json!({"format": "opaque", "id": id});
        assert!(removes(opaque("u1"), &event));
        assert!(removes(opaque("s1"), &event));
        assert!(!removes(opaque("u2"), &event));
        // An opaque subject with another member is not the same subject.
        assert!(!removes(
            json!({"format": "opaque", "id": "u1", "x": 1}),
            &event
        ));
        assert!(removes(
            json!({"format": "complex", "user": opaque("u1")}),
            &event
        ));
        assert!(removes(
            json!({"format": "complex", "session": opaque("s1")}),
            &event
        ));
        assert!(removes(
            json!({"format": "complex", "session": opaque("s1"), "user": opaque("u1")}),
            &event
        ));
        assert!(!removes(
            json!({"format": "complex", "session": opaque("s1"), "user": opaque("u2")}),
            &event
        ));
        assert!(!removes(
            json!({"format": "complex", "user": opaque("u2")}),
            &event
        ));
        assert!(!removes(
            json!({"format": "complex", "user": {"format": "email", "email": "a@b"}}),
            &event
        ));
        assert!(!removes(json!({"format": "complex"}), &event));
        assert!(!removes(json!({"format": "email", "email": "a@b"}), &event));
        assert!(!RemovedSubjects::new(["not json"]).matches(&event));
        assert!(!RemovedSubjects::new([]).matches(&event));
    }

    #[test]
    fn an_event_without_a_user_matches_only_what_its_session_decides() {
        let mut event = terminated(TerminationReason::Deleted);
        event.user_id = None;
        let opaque = |id: &str| json!({"format": "opaque", "id": id});
        assert!(!removes(opaque("u1"), &event));
        // A complex subject's user member is absent on the event's side: it does not decide.
        assert!(removes(
            json!({"format": "complex", "user": opaque("u1")}),
            &event
        ));
        assert!(removes(
            json!({"format": "complex", "session": opaque("s1"), "user": opaque("u9")}),
            &event
        ));
        assert!(!removes(
            json!({"format": "complex", "session": opaque("s2"), "user": opaque("u1")}),
            &event
        ));
    }

    #[test]
    fn many_removed_subjects_are_matched_together() {
        let event = terminated(TerminationReason::Deleted);
        let stored: Vec<String> = (2..50)
            .map(|n| {
                json!({"format": "complex", "user": {"format": "opaque", "id": format!("u{n}")}})
                    .to_string()
            })
            .collect();
        let removed = RemovedSubjects::new(stored.iter().map(String::as_str));
        assert!(!removed.matches(&event));
        let mut other = event.clone();
        other.user_id = Some("u7".into());
        assert!(removed.matches(&other));
    }
}
