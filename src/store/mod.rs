//! Persistence behind one trait. The core decides; the store only reads and writes, and each
//! call is atomic (a transaction of its own, or a savepoint of its own inside a group commit).
//! All SQL lives in the backend modules (SQL is kept per backend, and the contract tests in
//! `tests/` hold every backend to the same behaviour); neither backend decides any rule.
//!
//! Writes use optimistic concurrency: [`Store::update_session`] only applies when the stored
//! sequence is still the one the core read, and `(session_id, sequence)` is unique in the
//! event log, so two writers can never both append the same change. [`Store::update_user`]
//! likewise only applies at the user's `version` the core read. Every write of a `User`
//! column bumps that version, the failure count of a password check included, so a whole-row
//! write read before it conflicts (and the core re-reads) instead of writing an old value
//! back; starting a check changes only its in-progress counters, which are no `User` column,
//! and leaves the version alone.
//!
//! Layout: `columns` (one column list per table), `rows` (decoding and the searches, shared),
//! `sqlite/` and `postgres/` (the backends), `bounded` (a time bound around any store).
//!
//! Adding a column:
//! 1. a migration in both `migrations/sqlite` and `migrations/postgres` (`000N_….sql`);
//! 2. one line in the table's list in `columns`: the position constant, the column name, its
//!    role (`Changes` if updates write it, `Fixed` if only INSERT does) and how to encode it
//!    from the domain value. SELECT, INSERT and UPDATE of both backends follow from the list;
//! 3. if the domain reads it back, its field in the decoder in `rows`, by that constant.
//!
//! The bulk statements written by hand (a user's sessions revoked at once, the password-check
//! counters) name only the columns they change, so a new column needs a DEFAULT or a line
//! there only if they must set it.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{
    Error, FactorKind, LoginName, Session, SessionFilter, SessionId, Time, TokenHash, User, UserId,
    UserSessionsQuery,
};

use crate::domain::error_ids;

mod bounded;
mod columns;
mod factors;
mod feed;
mod passkeys;
mod postgres;
mod rows;
pub mod signals;
mod sqlite;

pub use bounded::{Bounded, Traced};
pub use factors::{Contact, ContactKind, FactorRevocation, OtpChallenge, StoredFactor};
pub use feed::{FeedBounds, FeedPage, FeedQuery, FeedRow, FeedWake};
pub use passkeys::{PasskeyChallenge, PasskeyCheck, PasskeyUse, PendingPasskey, StoredPasskey};
pub use postgres::{PgSettings, PostgresStore};
pub use sqlite::{SqliteStore, Synchronous, page_cache, tuning as sqlite_tuning};

/// One appended event of a session's log.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub event_type: &'static str,
    pub payload: serde_json::Value,
    pub created_at: Time,
    /// User id of whoever caused the change.
    pub editor: String,
}

/// What [`Store::edit_session`] does to a session as stored: its new state and the event
/// recording the change, or `None` to leave it as it is. The store runs it between its read
/// and its write, where no other change to the session can land (on SQLite on the writer's
/// thread, inside its transaction), so it must be quick and must not block.
pub type SessionEdit = Box<dyn FnOnce(&Session) -> Option<(Session, NewEvent)> + Send>;

/// What [`Store::edit_session`] found and did.
#[derive(Clone, Debug)]
pub struct Edited {
    /// The session as it was read.
    pub before: Session,
    /// The session as written, if the edit changed it.
    pub after: Option<Session>,
}

/// A stored event, as read back.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    pub sequence: u64,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub created_at: Time,
    pub editor: String,
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer changed the row first; the core re-reads and retries.
    #[error("concurrent modification")]
    Conflict,
    /// A unique value (login name, id) is taken.
    #[error("duplicate {0}")]
    Duplicate(&'static str),
    /// The database cannot be reached or timed out.
    #[error("store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("store failure")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => Error::new(
                crate::domain::ErrorKind::Unavailable,
                error_ids::STORE_CONFLICT,
                "too many concurrent changes to the same session or user, retry",
            ),
            StoreError::Duplicate(what) => Error::new(
                crate::domain::ErrorKind::AlreadyExists,
                error_ids::DUPLICATE,
                format!("{what} already exists"),
            ),
            StoreError::Unavailable(source) => {
                Error::unavailable(error_ids::STORE_UNAVAILABLE, source)
            }
            StoreError::Internal(source) => Error::internal(error_ids::STORE_FAILED, source),
        }
    }
}

/// Why and by whom sessions are being terminated in bulk.
#[derive(Clone, Debug)]
pub struct Revocation {
    pub at: Time,
    pub editor: String,
    /// Recorded in each `session.terminated` event, e.g. "revoke_others", "user_locked".
    pub reason: &'static str,
}

/// A page of the user directory.
#[derive(Clone, Debug, Default)]
pub struct UserListQuery {
    pub login_name: Option<LoginName>,
    pub offset: u64,
    pub limit: u32,
}

/// Whether a password check may start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordCheck {
    /// Go ahead; `failures` confirmed failures so far.
    Granted { failures: u32 },
    /// The user has `max_failures` confirmed failures: locked out.
    Locked,
    /// Too many checks of this user are in progress right now; retry shortly.
    Busy,
}

/// How a password check ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckOutcome {
    Passed,
    Failed,
    /// Not decided (e.g. the check could not run): neither a pass nor a failure.
    Aborted,
    /// A pass of a check that was never registered as in progress: a passkey assertion,
    /// which cannot be guessed, so parallel tries need no bound (the stores record a code's
    /// check, see [`Store::record_factor_check`], with these outcomes too). Clears the
    /// failures and leaves the checks in progress alone.
    PassedUnregistered,
    /// A failure of a check that was never registered (see `PassedUnregistered`): one more
    /// failure, the checks in progress left alone.
    FailedUnregistered,
}

/// A guessable check of a second factor, verified by the core as far as it can be without the
/// store, for [`Store::record_factor_check`] to record. A candidate pass names what it spends;
/// the store decides whether it still can be spent.
#[derive(Clone, PartialEq, Eq)]
pub enum FactorAttempt {
    /// A TOTP code that matched this time step: a pass if no check took this step or a later
    /// one, and the TOTP is ready.
    TotpStep(i64),
    /// A recovery code with this keyed hash: a pass if one of the user's unused codes has it.
    RecoveryCode(Vec<u8>),
    /// A one-time code that matched the challenge of `kind` on `session` (its keyed hash): a
    /// pass if the challenge still holds that hash, which no other check consumed.
    OtpCode {
        session: SessionId,
        kind: FactorKind,
        hash: Vec<u8>,
    },
    /// A code the core found wrong (or expired): a failure.
    Failed,
}

impl std::fmt::Debug for FactorAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hashes stay out of logs.
        match self {
            Self::TotpStep(step) => f.debug_tuple("TotpStep").field(step).finish(),
            Self::RecoveryCode(_) => f.write_str("RecoveryCode(***)"),
            Self::OtpCode { session, kind, .. } => f
                .debug_struct("OtpCode")
                .field("session", session)
                .field("kind", kind)
                .finish_non_exhaustive(),
            Self::Failed => f.write_str("Failed"),
        }
    }
}

/// How [`Store::record_factor_check`] recorded a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FactorCheckOutcome {
    /// Spent what it named; the failures are cleared.
    Passed,
    /// A wrong code, or a right one already spent: one more failure, `failures` in all.
    Failed { failures: u32 },
    /// Not evaluated: the user has `max_failures` confirmed failures, or is no longer active.
    Locked,
    /// Not evaluated: confirmed failures and password checks in progress reach the limit.
    Busy,
}

/// Occupancy of one connection pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    pub name: &'static str,
    pub open: u32,
    pub idle: usize,
}

/// What one prune batch deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneBatch {
    pub sessions: u64,
    pub events: u64,
}

/// A migration failure as a store error, with a clear message when the database was migrated
/// by a newer sessiond than this one.
fn migration_error(e: sqlx::migrate::MigrateError) -> StoreError {
    use sqlx::migrate::MigrateError;
    match e {
        MigrateError::VersionMissing(version) => StoreError::Internal(
            format!(
                "the database schema is newer than this sessiond binary (it has migration \
                 {version}, which this binary does not know); run a sessiond at least as new as \
                 the one that migrated it"
            )
            .into(),
        ),
        MigrateError::Execute(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) => {
            StoreError::Unavailable(Box::new(e))
        }
        other => StoreError::Internal(Box::new(other)),
    }
}

/// Whether every migration of `migrator` is among the `applied` versions.
fn migrations_applied(migrator: &sqlx::migrate::Migrator, applied: &[i64]) -> bool {
    migrator.iter().all(|m| applied.contains(&m.version))
}

/// A page of sessions and the number of all matches.
pub struct SessionPage {
    pub sessions: Vec<Session>,
    pub total: u64,
}

/// The `Store` methods, written once: `store_methods!(then)` hands this list to the macro
/// `then`, which declares the trait (`declare_store`, below) or implements it by delegation
/// (`Bounded`). One line per method, so a new method is one line here plus its backends.
macro_rules! store_methods {
    ($then:ident) => {
        $then! {
            /// Inserts a new session and its first event (sequence 1), and returns the session's user
            /// as it stands once the session is in (none for a session without a user): on SQLite read
            /// in the same writer job, on PostgreSQL after the commit. A change to the user committed
            /// before that read shows in it; one committed after it sees the session.
            async fn insert_session(&self, session: &Session, event: &NewEvent) -> Result<Option<User>, StoreError>;

            /// Replaces the session's state and appends `event` as sequence `session.sequence`, if and
            /// only if the stored sequence is still `expected_sequence`; otherwise `Conflict`.
            async fn update_session(&self, session: &Session, expected_sequence: u64, event: &NewEvent) -> Result<(), StoreError>;

            /// Reads the session by id and applies `edit` to it, writing what it returns (the state,
            /// and the event as sequence `after.sequence`) at the sequence read, with no other change
            /// in between. `None` if there is no such session; `Conflict` if another writer (another
            /// replica, on PostgreSQL) changed it between the read and the write.
            async fn edit_session(&self, id: &SessionId, edit: SessionEdit) -> Result<Option<Edited>, StoreError>;

            /// A session by id, terminated or not.
            async fn session(&self, id: &SessionId) -> Result<Option<Session>, StoreError>;

            /// The session whose current token has this hash, terminated or not.
            async fn session_by_token(&self, hash: &TokenHash) -> Result<Option<Session>, StoreError>;

            /// Non-terminated sessions matching the filter.
            async fn list_sessions(&self, filter: &SessionFilter) -> Result<SessionPage, StoreError>;

            /// The event log of one session, oldest first.
            async fn session_events(&self, id: &SessionId) -> Result<Vec<StoredEvent>, StoreError>;

            async fn insert_user(&self, user: &User) -> Result<(), StoreError>;
            async fn user(&self, id: &UserId) -> Result<Option<User>, StoreError>;
            async fn user_by_login_name(&self, name: &LoginName) -> Result<Option<User>, StoreError>;

            /// Starts a password check: allowed while confirmed failures plus checks in progress stay
            /// below `max_failures` (0: no limit), so parallel guesses can never get past the limit.
            /// Checks in progress older than `stale_before` (their process died) do not count.
            /// Leaves the user's version alone: the checks in progress are no column of `User`.
            async fn begin_password_check(&self, id: &UserId, max_failures: u32, now: Time, stale_before: Time) -> Result<PasswordCheck, StoreError>;

            /// Ends a password check begun with `begin_password_check`. A pass clears the failures,
            /// a failure adds one; an aborted check only stops counting as in progress. Returns the
            /// confirmed failures after it. Bumps the user's version when the failure count changes.
            async fn end_password_check(&self, id: &UserId, outcome: CheckOutcome) -> Result<u32, StoreError>;

            /// One user's sessions (terminated ones included unless filtered), newest first, and
            /// the number of all matches regardless of the cursor.
            async fn user_sessions(&self, query: &UserSessionsQuery) -> Result<SessionPage, StoreError>;

            /// Terminates, in one transaction, every live session of `user` except `except`,
            /// appending a `session.terminated` event to each. Returns how many were terminated.
            async fn terminate_user_sessions(&self, user: &UserId, except: Option<&SessionId>, revocation: &Revocation) -> Result<u64, StoreError>;

            /// Writes a user's columns (names, state, password hash, failure count) and its new
            /// `version`, if and only if the stored version is still `expected_version`
            /// (otherwise, or if the user is gone, `Conflict`); when `revoke` is given,
            /// terminates all of the user's live sessions in the same transaction. Returns how
            /// many sessions were terminated.
            async fn update_user(&self, user: &User, expected_version: u64, revoke: Option<&Revocation>) -> Result<u64, StoreError>;

            /// Users, optionally only the one with this login name, ordered by login name.
            async fn list_users(&self, query: &UserListQuery) -> Result<(Vec<User>, u64), StoreError>;

            /// A random 32-byte secret shared by every replica, created on first use.
            async fn secret(&self, name: &str) -> Result<[u8; 32], StoreError>;

            /// Stores `value` under `name` unless a value is stored there already; returns the
            /// stored one (the first writer's, on every replica).
            async fn claim_secret(&self, name: &str, value: [u8; 32]) -> Result<[u8; 32], StoreError>;

            /// Deletes up to `batch` sessions terminated before `terminated_before` or expired before
            /// `expired_before`, with their events, in one transaction, raising the feed's
            /// horizon to the highest position deleted.
            async fn prune(&self, terminated_before: Time, expired_before: Time, batch: u32) -> Result<PruneBatch, StoreError>;

            /// A user's factor enrollments (secrets sealed), with the count of unused recovery codes.
            async fn user_factors(&self, user: &UserId) -> Result<Vec<StoredFactor>, StoreError>;

            /// Writes an enrollment (replacing the user's one of that kind); with `codes`, replaces
            /// the user's recovery-code hashes too; with `revoke`, ends sessions in the same
            /// transaction. Returns how many sessions ended.
            async fn save_factor(&self, factor: &StoredFactor, codes: Option<&[Vec<u8>]>, revoke: Option<&FactorRevocation>) -> Result<u64, StoreError>;

            /// Deletes a user's enrollment of one kind (and its recovery codes); with `revoke`, ends
            /// sessions in the same transaction. `None` when there was nothing to delete.
            async fn remove_factor(&self, user: &UserId, kind: FactorKind, revoke: Option<&FactorRevocation>) -> Result<Option<u64>, StoreError>;

            /// Records a check of a code (TOTP, recovery, one-time) in one atomic write: refused
            /// (nothing written) while the user is locked or, with the password checks in progress,
            /// at `max_failures` (0: no limit; in progress means since `stale_before`); else a
            /// candidate pass spends what it names (a recovery code is marked used at `now`) and
            /// clears the failures, and a failure, or a pass whose spend is refused, adds one.
            /// Parallel checks of one user are serialised, so no more than `max_failures` of them
            /// are ever evaluated. Bumps the user's version when the failure count changes.
            async fn record_factor_check(&self, user: &UserId, attempt: &FactorAttempt, max_failures: u32, now: Time, stale_before: Time) -> Result<FactorCheckOutcome, StoreError>;

            /// A user's passkeys, oldest first.
            async fn passkeys(&self, user: &UserId) -> Result<Vec<StoredPasskey>, StoreError>;

            /// Stores a begun passkey registration, replacing the user's earlier pending one.
            async fn begin_passkey_registration(&self, pending: &PendingPasskey) -> Result<(), StoreError>;

            /// The user's pending passkey registration of this id.
            async fn passkey_registration(&self, user: &UserId, id: &str) -> Result<Option<PendingPasskey>, StoreError>;

            /// Stores a verified passkey in place of its pending registration (same id); with
            /// `revoke`, ends sessions in the same transaction. `None` (nothing written) when the
            /// registration is no longer pending.
            async fn complete_passkey_registration(&self, passkey: &StoredPasskey, revoke: Option<&FactorRevocation>) -> Result<Option<u64>, StoreError>;

            /// Deletes one of the user's passkeys; with `revoke`, ends sessions in the same
            /// transaction. `None` when the user has no passkey of this id.
            async fn remove_passkey(&self, user: &UserId, id: &str, revoke: Option<&FactorRevocation>) -> Result<Option<u64>, StoreError>;

            /// Gives a session a WebAuthn challenge, replacing its earlier one.
            async fn set_passkey_challenge(&self, challenge: &PasskeyChallenge) -> Result<(), StoreError>;

            /// The WebAuthn challenge a session was last given, if it is unused, with the passkey
            /// whose raw credential id is `credential_id`, if one is registered: one point read.
            async fn passkey_check(&self, session: &SessionId, credential_id: &[u8]) -> Result<Option<PasskeyCheck>, StoreError>;

            /// `update_session`, and in the same transaction a passed assertion (see
            /// [`PasskeyUse`]): the counted check ends as passed, the challenge is consumed, the
            /// counter moves. `Ok(false)`, with nothing written, when the challenge or the counter
            /// changed since they were read; `Conflict` when the session did.
            async fn update_session_with_passkey(&self, session: &Session, expected_sequence: u64, event: &NewEvent, used: &PasskeyUse) -> Result<bool, StoreError>;
            /// Inserts a new user with its first factor enrollments and contact addresses, in one
            /// transaction: all of it is written or none.
            async fn insert_user_with(&self, user: &User, factors: &[StoredFactor], contacts: &[Contact]) -> Result<(), StoreError>;

            /// A user's contact addresses (email, phone).
            async fn user_contacts(&self, user: &UserId) -> Result<Vec<Contact>, StoreError>;

            /// Writes a contact address, replacing the user's one of that kind.
            async fn save_contact(&self, contact: &Contact) -> Result<(), StoreError>;

            /// Writes a session's one-time-code challenge, replacing its earlier one of that kind.
            async fn save_otp_challenge(&self, challenge: &OtpChallenge) -> Result<(), StoreError>;

            /// A session's pending one-time-code challenge of one kind.
            async fn otp_challenge(&self, session: &SessionId, kind: FactorKind) -> Result<Option<OtpChallenge>, StoreError>;

            /// Whether the database answers.
            async fn ping(&self) -> Result<(), StoreError>;

            /// Whether every migration this binary knows has been applied.
            async fn schema_ready(&self) -> Result<bool, StoreError>;

            /// Sessions neither terminated nor expired at `now`.
            async fn count_live_sessions(&self, now: Time) -> Result<u64, StoreError>;

            /// Events after a position in the global order, filtered, from one snapshot (see `feed`).
            async fn feed_events(&self, query: &FeedQuery) -> Result<FeedPage, StoreError>;

            /// The retention horizon and the head of the event log.
            async fn feed_bounds(&self) -> Result<FeedBounds, StoreError>;
        }
    };
}

pub(crate) use store_methods;

macro_rules! declare_store {
    ($($(#[$doc:meta])* async fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        #[async_trait]
        pub trait Store: Send + Sync + 'static {
            $($(#[$doc])* async fn $name(&self $(, $arg: $ty)*) -> $ret;)*

            /// Connection pools: name, open connections, idle connections.
            fn pools(&self) -> Vec<PoolStats>;

            /// Raised after this store committed appended events (on PostgreSQL also when
            /// another replica did).
            fn feed_wake(&self) -> FeedWake;
        }
    };
}

store_methods!(declare_store);

pub type DynStore = Arc<dyn Store>;
