//! The store's side of signals: targets (Shared Signals streams and back-channel logout
//! clients), each with its cursor into the session event log, its delivery lease and its
//! outbox of signed tokens (for what the event log does not hold: stream control events,
//! poll and paused streams); and the subjects a receiver removed from its stream.
//!
//! Signals keep a small connection pool of their own on the same database (one SQLite file,
//! or the PostgreSQL the sessions live in), so delivery never takes a connection a request
//! waits for. Each call is one transaction. The one write that matters for delivery,
//! [`SignalStore::enqueue`], appends tokens (none, when a push target only stores how far its
//! receiver took the log) and moves the target's cursor in the same transaction, and only if
//! the cursor is still the one the caller read: two replicas that turn the same events into
//! tokens cannot both append them.

use std::sync::Arc;

use async_trait::async_trait;

use super::StoreError;
use crate::domain::Time;

pub use super::postgres::signals::PgSignalStore;
pub use super::sqlite::signals::SqliteSignalStore;

/// What a target is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// A Shared Signals stream (push or poll).
    Stream,
    /// A back-channel logout client.
    Logout,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stream => "stream",
            Self::Logout => "logout",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "stream" => Some(Self::Stream),
            "logout" => Some(Self::Logout),
            _ => None,
        }
    }
}

/// A stored target.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetRow {
    pub kind: TargetKind,
    pub id: String,
    /// The target's configuration (JSON, no secret in it).
    pub config: serde_json::Value,
    /// The receiver's `Authorization` header, sealed.
    pub auth: Option<Vec<u8>>,
    /// `enabled`, `paused` or `disabled`.
    pub status: String,
    pub reason: Option<String>,
    /// Events up to this feed position have been delivered (push targets) or turned into
    /// tokens in the outbox (poll and paused streams), or dropped (disabled streams).
    pub cursor: String,
    pub created_at: Time,
    pub updated_at: Time,
    /// The receiver's last stream management call or poll (stream inactivity timeout).
    pub last_activity: Time,
    /// The receiver's last verification request; the Unix epoch if none.
    pub verified_at: Time,
    /// The `jti` and time of the stream-updated event that announced a pause for
    /// inactivity, while the pause waits for the receiver to take it.
    pub inactivity_notice: Option<(String, Time)>,
}

/// A token waiting for delivery (or, on a poll stream, for its acknowledgement).
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxItem {
    pub seq: i64,
    pub jti: String,
    pub token: String,
    pub created_at: Time,
    pub attempts: i64,
    /// When the signalled event happened (none for stream control events).
    pub occurred_at: Option<Time>,
}

/// A token to append.
#[derive(Clone, Debug)]
pub struct NewItem {
    pub jti: String,
    pub token: String,
    /// When the signalled event happened (none for stream control events).
    pub occurred_at: Option<Time>,
}

/// One append to a target's outbox.
#[derive(Clone, Debug, Default)]
pub struct Enqueue {
    /// Move the cursor from this position to `cursor_to`, only if it still is here. `None`:
    /// append without moving the cursor (a verification event).
    pub cursor_from: Option<String>,
    pub cursor_to: Option<String>,
    pub items: Vec<NewItem>,
    /// Keep at most this many tokens, dropping the oldest (a paused stream's bound).
    pub keep_at_most: Option<u64>,
}

/// Signals' storage; both backends hold to the same behaviour.
#[async_trait]
pub trait SignalStore: Send + Sync + 'static {
    /// Inserts a target; `Duplicate` if one of that kind and id exists.
    async fn insert_target(&self, row: &TargetRow) -> Result<(), StoreError>;

    async fn target(&self, kind: TargetKind, id: &str) -> Result<Option<TargetRow>, StoreError>;

    /// Every target, or every target of one kind, oldest first.
    async fn targets(&self, kind: Option<TargetKind>) -> Result<Vec<TargetRow>, StoreError>;

    /// Writes a target's configuration, secret and status (not its cursor); false if gone.
    async fn update_target(&self, row: &TargetRow) -> Result<bool, StoreError>;

    /// Deletes a target with its outbox and removed subjects; false if there was none.
    async fn delete_target(&self, kind: TargetKind, id: &str) -> Result<bool, StoreError>;

    /// Takes or renews the delivery lease of a target for `owner` until `until`, if nobody
    /// else holds it past `now`. True when `owner` holds it.
    async fn lease(
        &self,
        kind: TargetKind,
        id: &str,
        owner: &str,
        now: Time,
        until: Time,
    ) -> Result<bool, StoreError>;

    /// Gives a lease back (on shutdown), so another replica takes over at once.
    async fn release(&self, kind: TargetKind, id: &str, owner: &str) -> Result<(), StoreError>;

    /// Appends tokens (and moves the cursor) in one transaction; false if the cursor moved
    /// meanwhile or the target is gone (nothing written).
    async fn enqueue(
        &self,
        kind: TargetKind,
        id: &str,
        enqueue: &Enqueue,
        now: Time,
    ) -> Result<bool, StoreError>;

    /// The oldest tokens of a target's outbox, in order.
    async fn pending(
        &self,
        kind: TargetKind,
        id: &str,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError>;

    /// How many tokens a target's outbox holds.
    async fn pending_count(&self, kind: TargetKind, id: &str) -> Result<u64, StoreError>;

    /// Removes tokens by `jti` (delivered, acknowledged or given up); returns how many.
    async fn remove_items(
        &self,
        kind: TargetKind,
        id: &str,
        jtis: &[String],
    ) -> Result<u64, StoreError>;

    /// Counts one failed delivery attempt of a token.
    async fn record_attempt(&self, kind: TargetKind, id: &str, jti: &str)
    -> Result<(), StoreError>;

    /// Records a receiver's activity on a target (a management call or a poll) at `now`, and
    /// cancels a pending pause for inactivity. Returns the `jti` of the cancelled announcement.
    async fn record_activity(
        &self,
        kind: TargetKind,
        id: &str,
        now: Time,
    ) -> Result<Option<String>, StoreError>;

    /// Records a verification request of a stream at `now`, unless one was recorded after
    /// `not_after` (too soon). True when recorded.
    async fn claim_verification(
        &self,
        id: &str,
        now: Time,
        not_after: Time,
    ) -> Result<bool, StoreError>;

    /// Records `jti` as the announcement of a pause for inactivity of an enabled stream whose
    /// last activity is at or before `cutoff` and that has none pending. True when recorded (one
    /// replica wins).
    async fn announce_inactivity(
        &self,
        id: &str,
        jti: &str,
        cutoff: Time,
        now: Time,
    ) -> Result<bool, StoreError>;

    /// Pauses an enabled stream whose pending announcement is `jti`, with `reason`. True when
    /// paused.
    async fn pause_inactive(
        &self,
        id: &str,
        jti: &str,
        reason: &str,
        now: Time,
    ) -> Result<bool, StoreError>;

    /// Whether a target's outbox still holds the token `jti`.
    async fn holds(&self, kind: TargetKind, id: &str, jti: &str) -> Result<bool, StoreError>;

    /// How many tokens wait, by target kind: the outboxes' rows plus the terminations after
    /// the cursor of every target that is not disabled (not yet signed; a stream's removed
    /// subjects among them are never signalled).
    async fn outbox_depths(&self) -> Result<Vec<(TargetKind, u64)>, StoreError>;

    /// Removes acknowledged tokens by `jti`; returns when each removed one's event happened.
    async fn acknowledge(
        &self,
        kind: TargetKind,
        id: &str,
        jtis: &[String],
    ) -> Result<Vec<Option<Time>>, StoreError>;

    /// The subjects removed from a stream (canonical JSON).
    async fn removed_subjects(&self, id: &str) -> Result<Vec<String>, StoreError>;

    /// Removes a subject from a stream, unless the stream already holds `max` removed
    /// subjects: false when refused by that bound. A subject already removed is no change,
    /// and never refused. The count and the insert run under one lock per stream, so
    /// concurrent removals cannot pass the bound: it is exact on both stores.
    async fn remove_subject(&self, id: &str, subject: &str, max: u32) -> Result<bool, StoreError>;

    /// Adds back a subject removed from a stream (no change when it was not removed).
    async fn add_subject(&self, id: &str, subject: &str) -> Result<(), StoreError>;
}

pub type DynSignalStore = Arc<dyn SignalStore>;

/// A database error of either backend as a store error.
pub(crate) fn classify(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Duplicate("target"),
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            StoreError::Unavailable(Box::new(e))
        }
        sqlx::Error::Database(db) if db.code().is_some_and(|c| c == "5" || c == "6") => {
            // SQLite BUSY / LOCKED: the file is busy past the timeout.
            StoreError::Unavailable(Box::new(e))
        }
        _ => StoreError::Internal(Box::new(e)),
    }
}

/// The row of a target as both backends read it.
pub(crate) type TargetTuple = (
    String,
    String,
    String,
    Option<Vec<u8>>,
    String,
    Option<String>,
    String,
    i64,
    i64,
    i64,
    i64,
    Option<String>,
    i64,
);

pub(crate) const TARGET_COLUMNS: &str = "kind, id, config, auth, status, reason, cursor, \
     created_at, updated_at, last_activity, verified_at, inactivity_notice, inactivity_notice_at";

pub(crate) fn target_from(t: TargetTuple) -> Result<TargetRow, StoreError> {
    let (kind, id, config, auth, status, reason, cursor, created_at, updated_at) =
        (t.0, t.1, t.2, t.3, t.4, t.5, t.6, t.7, t.8);
    let (last_activity, verified_at, notice, notice_at) = (t.9, t.10, t.11, t.12);
    Ok(TargetRow {
        kind: TargetKind::parse(&kind)
            .ok_or_else(|| StoreError::Internal(format!("unknown target kind {kind:?}").into()))?,
        id,
        config: serde_json::from_str(&config).map_err(|e| StoreError::Internal(Box::new(e)))?,
        auth,
        status,
        reason,
        cursor,
        created_at: Time::from_unix_micros(created_at),
        updated_at: Time::from_unix_micros(updated_at),
        last_activity: Time::from_unix_micros(last_activity),
        verified_at: Time::from_unix_micros(verified_at),
        inactivity_notice: notice.map(|jti| (jti, Time::from_unix_micros(notice_at))),
    })
}

pub(crate) type ItemTuple = (i64, String, String, i64, i64, Option<i64>);

/// The columns of [`ItemTuple`].
pub(crate) const ITEM_COLUMNS: &str = "seq, jti, token, created_at, attempts, occurred_at";

pub(crate) fn item_from(
    (seq, jti, token, created_at, attempts, occurred_at): ItemTuple,
) -> OutboxItem {
    OutboxItem {
        seq,
        jti,
        token,
        created_at: Time::from_unix_micros(created_at),
        attempts,
        occurred_at: occurred_at.map(Time::from_unix_micros),
    }
}

/// The kind and count rows of [`SignalStore::outbox_depths`].
pub(crate) fn depths_from(rows: Vec<(String, i64)>) -> Vec<(TargetKind, u64)> {
    rows.into_iter()
        .filter_map(|(kind, n)| Some((TargetKind::parse(&kind)?, u64::try_from(n).ok()?)))
        .collect()
}
