//! The embedded default store: one SQLite file in WAL mode, nothing to install.
//!
//! Shape (see `writer` and `readers`): one connection writes, on a thread of its own, with
//! group commit; point reads run inline on a small pool of read-only connections; reads whose
//! cost grows with the data run on the blocking pool; a background thread checkpoints the
//! write-ahead log. Statements are prepared once per connection and cached.
//!
//! Durability: `synchronous=NORMAL` (the default). A committed change survives a crash of
//! the process; a power loss or kernel crash may lose the last few commits (never corrupting
//! the file). `--sqlite-synchronous full` syncs the log on every commit and survives power
//! loss too, at the cost of one fsync per group commit.
//!
//! Migrations are applied with sqlx's migrator (the same `_sqlx_migrations` bookkeeping as the
//! PostgreSQL store) before the connections above are opened.
//!
//! The session event feed reads the log by a global position (see `feed`); every committed
//! write that appended events raises the store's [`FeedWake`] after the commit.
//!
//! This module holds the store object and which connection each call runs on; the SQL is in
//! `statements` (rows from the column lists), `users` and `maintenance`, the opening in `open`.

mod factors;
mod feed;
mod maintenance;
mod open;
pub mod page_cache;
mod passkeys;
mod readers;
pub(crate) mod signals;
mod statements;
mod users;
mod vfs;
mod writer;

use std::sync::{Arc, LazyLock, mpsc};

use async_trait::async_trait;

use self::open::{database_path, migrate, open_writer};
use self::readers::{Readers, start_checkpointer};
use self::statements::{Indexed, Query, Writes, all_rows, first_row, session_page};
use self::users::RevocationRow;
use self::writer::Writer;
use super::columns::{Appended, events, sessions, users as user_columns};
use super::rows::{
    event_from_row, fresh_secret, outcome_name, session_from_row, session_search, to_i64,
    user_from_row, user_sessions_search,
};
use super::{
    CheckOutcome, Edited, FactorAttempt, FactorCheckOutcome, FeedBounds, FeedPage, FeedQuery,
    FeedWake, NewEvent, PasswordCheck, PoolStats, PruneBatch, Revocation, SessionEdit, SessionPage,
    Store, StoreError, StoredEvent, UserListQuery,
};
use super::{Contact, FactorRevocation, OtpChallenge, StoredFactor};
use super::{PasskeyChallenge, PasskeyCheck, PasskeyUse, PendingPasskey, StoredPasskey};
use crate::domain::{
    FactorKind, LoginName, Session, SessionFilter, SessionId, Time, TokenHash, User, UserId,
    UserSessionsQuery,
};

pub use self::open::Synchronous;

/// The store's connections and their settings, for a tool that must open the database the
/// way the store does (the bench's storage ceiling).
pub mod tuning {
    pub use super::open::{WAL_PAGES_BEFORE_RESTART, WRITER_CACHE_KIB, open_writer};
    pub use super::readers::{READER_CACHE_KIB, open_reader};
    pub use super::vfs::NAME as VFS;
}

/// The changing columns that an index reads (see `Indexed`).
static SESSION_WRITES: Writes = Writes::new(
    &sessions::TABLE,
    &[
        Indexed::Kept("user_id"),
        Indexed::Kept("token_hash"),
        Indexed::SetFromNull("terminated_at"),
    ],
);
static USER_WRITES: Writes =
    Writes::new(&user_columns::TABLE, &[Indexed::Kept("login_name_folded")]);
static EVENT_WRITES: Writes = Writes::new(&events::TABLE, &[]);

/// The point reads, built once from the column lists.
static SESSION_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("{} WHERE s.id = ?", *sessions::SELECT));
static SESSION_BY_TOKEN: LazyLock<String> =
    LazyLock::new(|| format!("{} WHERE s.token_hash = ?", *sessions::SELECT));
static EVENTS_OF_SESSION: LazyLock<String> =
    LazyLock::new(|| format!("{} WHERE session_id = ? ORDER BY sequence", *events::SELECT));
static USER_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("{} WHERE id = ?", *user_columns::SELECT));
static USER_BY_LOGIN_NAME: LazyLock<String> =
    LazyLock::new(|| format!("{} WHERE login_name_folded = ?", *user_columns::SELECT));

#[derive(Clone)]
pub struct SqliteStore {
    writer: Writer,
    readers: Arc<Readers>,
    /// Raised after every committed write that appended events.
    wake: FeedWake,
    /// Dropping the last clone stops the checkpointer.
    _checkpointer: Arc<mpsc::Sender<()>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://PATH`) and applies pending
    /// migrations. `readers` bounds the reads that run on the blocking pool at once.
    pub async fn open(
        url: &str,
        readers: u32,
        synchronous: Synchronous,
    ) -> Result<Self, StoreError> {
        page_cache::install();
        let path = database_path(url)?;
        migrate(&path).await?;
        let writer = open_writer(&path, synchronous)?;
        let (stop, stopped) = mpsc::channel();
        start_checkpointer(&path, stopped)?;
        Ok(Self {
            writer: Writer::start(writer).map_err(|e| StoreError::Internal(Box::new(e)))?,
            readers: Arc::new(Readers::new(&path, usize::try_from(readers).unwrap_or(4))),
            wake: FeedWake::default(),
            _checkpointer: Arc::new(stop),
        })
    }
}

impl SqliteStore {
    /// Raises the feed's wake-up if a bulk write appended events; passes its count on.
    fn woken_if(&self, appended: u64) -> Result<u64, StoreError> {
        if appended > 0 {
            self.wake.wake();
        }
        Ok(appended)
    }

    /// The row a point read finds by a unique `key`, decoded; read on this thread.
    fn find<T>(
        &self,
        sql: &str,
        key: &dyn rusqlite::ToSql,
        decode: impl Fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        self.readers
            .read(|conn| first_row(conn, sql, [key], decode))
    }
}

/// A session's row and its event's: encoded on the caller's thread where the change is known
/// before the write, so the writer only runs statements; an edit's, on the writer after its read.
fn session_rows(
    session: &Session,
    event: &NewEvent,
) -> Result<(Vec<super::columns::Value>, Vec<super::columns::Value>), StoreError> {
    let appended = Appended::of(session, event);
    Ok((sessions::encode(session)?, events::encode(&appended)?))
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_session(
        &self,
        session: &Session,
        event: &NewEvent,
    ) -> Result<Option<User>, StoreError> {
        let (row, event) = session_rows(session, event)?;
        let user = session.user_id().map(|id| id.as_str().to_owned());
        // The user is read in the insert's own job: the writer's cache holds its pages, and
        // nothing can change it between the insert and the read.
        let user = self
            .writer
            .write(move |conn| {
                SESSION_WRITES.insert(conn, &row)?;
                EVENT_WRITES.insert(conn, &event)?;
                match user {
                    Some(id) => first_row(conn, &USER_BY_ID, [id], |row| user_from_row(row)),
                    None => Ok(None),
                }
            })
            .await?;
        self.wake.wake();
        Ok(user)
    }

    async fn update_session(
        &self,
        session: &Session,
        expected_sequence: u64,
        event: &NewEvent,
    ) -> Result<(), StoreError> {
        let (row, event) = session_rows(session, event)?;
        let expected = to_i64(expected_sequence);
        self.writer
            .write(move |conn| {
                SESSION_WRITES.update(conn, &row, expected)?;
                EVENT_WRITES.insert(conn, &event)
            })
            .await?;
        self.wake.wake();
        Ok(())
    }

    async fn edit_session(
        &self,
        id: &SessionId,
        edit: SessionEdit,
    ) -> Result<Option<Edited>, StoreError> {
        let id = id.as_str().to_owned();
        // Read on the writer's connection: it is the only writer, so nothing changes the row
        // before this job's write, and its cache holds the pages the write is about to touch,
        // where a read connection drops its cache at every commit.
        let edited = self
            .writer
            .write(move |conn| {
                let Some(before) =
                    first_row(conn, &SESSION_BY_ID, [id], |row| session_from_row(row))?
                else {
                    return Ok(None);
                };
                let Some((after, event)) = edit(&before) else {
                    return Ok(Some(Edited {
                        before,
                        after: None,
                    }));
                };
                let (row, event) = session_rows(&after, &event)?;
                SESSION_WRITES.update(conn, &row, to_i64(before.sequence))?;
                EVENT_WRITES.insert(conn, &event)?;
                Ok(Some(Edited {
                    before,
                    after: Some(after),
                }))
            })
            .await?;
        if edited.as_ref().is_some_and(|e| e.after.is_some()) {
            self.wake.wake();
        }
        Ok(edited)
    }

    async fn session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        self.find(&SESSION_BY_ID, &id.as_str(), |row| session_from_row(row))
    }

    async fn session_by_token(&self, hash: &TokenHash) -> Result<Option<Session>, StoreError> {
        self.find(&SESSION_BY_TOKEN, &hash.as_bytes().as_slice(), |row| {
            session_from_row(row)
        })
    }

    async fn list_sessions(&self, filter: &SessionFilter) -> Result<SessionPage, StoreError> {
        let search = session_search(Query::new, filter);
        self.readers
            .read_blocking(move |conn| session_page(conn, search))
            .await
    }

    async fn session_events(&self, id: &SessionId) -> Result<Vec<StoredEvent>, StoreError> {
        let id = id.as_str().to_owned();
        self.readers
            .read_blocking(move |conn| {
                all_rows(conn, &EVENTS_OF_SESSION, [id], |row| event_from_row(row))
            })
            .await
    }

    async fn insert_user(&self, user: &User) -> Result<(), StoreError> {
        let row = user_columns::encode(user)?;
        self.writer
            .write(move |conn| USER_WRITES.insert(conn, &row))
            .await
    }

    async fn user(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        self.find(&USER_BY_ID, &id.as_str(), |row| user_from_row(row))
    }

    async fn user_by_login_name(&self, name: &LoginName) -> Result<Option<User>, StoreError> {
        self.find(&USER_BY_LOGIN_NAME, &name.folded(), |row| {
            user_from_row(row)
        })
    }

    async fn begin_password_check(
        &self,
        id: &UserId,
        max_failures: u32,
        now: Time,
        stale_before: Time,
    ) -> Result<PasswordCheck, StoreError> {
        let id = id.as_str().to_owned();
        let (now, stale_before) = (now.unix_micros(), stale_before.unix_micros());
        self.writer
            .write(move |conn| users::begin_check(conn, &id, max_failures, now, stale_before))
            .await
    }

    async fn end_password_check(
        &self,
        id: &UserId,
        outcome: CheckOutcome,
    ) -> Result<u32, StoreError> {
        let (id, outcome) = (id.as_str().to_owned(), outcome_name(outcome));
        self.writer
            .write(move |conn| users::end_check(conn, &id, outcome))
            .await
    }

    async fn user_sessions(&self, query: &UserSessionsQuery) -> Result<SessionPage, StoreError> {
        let search = user_sessions_search(Query::new, query);
        self.readers
            .read_blocking(move |conn| session_page(conn, search))
            .await
    }

    async fn terminate_user_sessions(
        &self,
        user: &UserId,
        except: Option<&SessionId>,
        revocation: &Revocation,
    ) -> Result<u64, StoreError> {
        let revocation = RevocationRow::new(user, except, revocation)?;
        let revoked = self
            .writer
            .write(move |conn| revocation.apply(conn))
            .await?;
        self.woken_if(revoked)
    }

    async fn update_user(
        &self,
        user: &User,
        expected_version: u64,
        revoke: Option<&Revocation>,
    ) -> Result<u64, StoreError> {
        let row = user_columns::encode(user)?;
        let expected = to_i64(expected_version);
        let revocation = revoke
            .map(|r| RevocationRow::new(&user.id, None, r))
            .transpose()?;
        let revoked = self
            .writer
            .write(move |conn| {
                USER_WRITES.update(conn, &row, expected)?;
                revocation.map_or(Ok(0), |r| r.apply(conn))
            })
            .await?;
        self.woken_if(revoked)
    }

    async fn list_users(&self, query: &UserListQuery) -> Result<(Vec<User>, u64), StoreError> {
        let folded = query.login_name.as_ref().map(LoginName::folded);
        let (limit, offset) = (i64::from(query.limit), to_i64(query.offset));
        self.readers
            .read_blocking(move |conn| users::list(conn, folded, limit, offset))
            .await
    }

    async fn secret(&self, name: &str) -> Result<[u8; 32], StoreError> {
        let (name, fresh) = (name.to_owned(), fresh_secret());
        self.writer
            .write(move |conn| maintenance::secret(conn, &name, fresh))
            .await
    }

    async fn claim_secret(&self, name: &str, value: [u8; 32]) -> Result<[u8; 32], StoreError> {
        let name = name.to_owned();
        self.writer
            .write(move |conn| maintenance::secret(conn, &name, value))
            .await
    }

    async fn user_factors(&self, user: &UserId) -> Result<Vec<StoredFactor>, StoreError> {
        let user = user.as_str().to_owned();
        self.readers
            .read_blocking(move |conn| factors::of_user(conn, &user))
            .await
    }

    async fn save_factor(
        &self,
        factor: &StoredFactor,
        codes: Option<&[Vec<u8>]>,
        revoke: Option<&FactorRevocation>,
    ) -> Result<u64, StoreError> {
        let write = factors::FactorWrite {
            factor: factor.clone(),
            codes: codes.map(<[Vec<u8>]>::to_vec),
            revocation: revoke
                .map(|r| RevocationRow::new(&factor.user_id, r.except.as_ref(), &r.revocation))
                .transpose()?,
        };
        let revoked = self.writer.write(move |conn| write.apply(conn)).await?;
        self.woken_if(revoked)
    }

    async fn remove_factor(
        &self,
        user: &UserId,
        kind: FactorKind,
        revoke: Option<&FactorRevocation>,
    ) -> Result<Option<u64>, StoreError> {
        let revocation = revoke
            .map(|r| RevocationRow::new(user, r.except.as_ref(), &r.revocation))
            .transpose()?;
        let user = user.as_str().to_owned();
        let revoked = self
            .writer
            .write(move |conn| factors::remove(conn, &user, kind.as_str(), revocation.as_ref()))
            .await?;
        self.woken_if(revoked.unwrap_or(0))?;
        Ok(revoked)
    }

    async fn record_factor_check(
        &self,
        user: &UserId,
        attempt: &FactorAttempt,
        max_failures: u32,
        now: Time,
        stale_before: Time,
    ) -> Result<FactorCheckOutcome, StoreError> {
        let (user, attempt) = (user.as_str().to_owned(), attempt.clone());
        let (now, stale_before) = (now.unix_micros(), stale_before.unix_micros());
        self.writer
            .write(move |conn| {
                factors::record_check(conn, &user, &attempt, max_failures, now, stale_before)
            })
            .await
    }

    async fn passkeys(&self, user: &UserId) -> Result<Vec<StoredPasskey>, StoreError> {
        let user = user.as_str().to_owned();
        self.readers
            .read_blocking(move |conn| passkeys::of_user(conn, &user))
            .await
    }

    async fn begin_passkey_registration(&self, pending: &PendingPasskey) -> Result<(), StoreError> {
        let pending = pending.clone();
        self.writer
            .write(move |conn| passkeys::begin_registration(conn, &pending))
            .await
    }

    async fn passkey_registration(
        &self,
        user: &UserId,
        id: &str,
    ) -> Result<Option<PendingPasskey>, StoreError> {
        let (user, id) = (user.as_str().to_owned(), id.to_owned());
        self.readers
            .read_blocking(move |conn| passkeys::registration(conn, &user, &id))
            .await
    }

    async fn complete_passkey_registration(
        &self,
        passkey: &StoredPasskey,
        revoke: Option<&FactorRevocation>,
    ) -> Result<Option<u64>, StoreError> {
        let revocation = revoke
            .map(|r| RevocationRow::new(&passkey.user_id, r.except.as_ref(), &r.revocation))
            .transpose()?;
        let passkey = passkey.clone();
        let revoked = self
            .writer
            .write(move |conn| passkeys::complete_registration(conn, &passkey, revocation.as_ref()))
            .await?;
        self.woken_if(revoked.unwrap_or(0))?;
        Ok(revoked)
    }

    async fn remove_passkey(
        &self,
        user: &UserId,
        id: &str,
        revoke: Option<&FactorRevocation>,
    ) -> Result<Option<u64>, StoreError> {
        let revocation = revoke
            .map(|r| RevocationRow::new(user, r.except.as_ref(), &r.revocation))
            .transpose()?;
        let (user, id) = (user.as_str().to_owned(), id.to_owned());
        let revoked = self
            .writer
            .write(move |conn| passkeys::remove(conn, &user, &id, revocation.as_ref()))
            .await?;
        self.woken_if(revoked.unwrap_or(0))?;
        Ok(revoked)
    }

    async fn set_passkey_challenge(&self, challenge: &PasskeyChallenge) -> Result<(), StoreError> {
        let challenge = challenge.clone();
        self.writer
            .write(move |conn| passkeys::set_challenge(conn, &challenge))
            .await
    }

    async fn passkey_check(
        &self,
        session: &SessionId,
        credential_id: &[u8],
    ) -> Result<Option<PasskeyCheck>, StoreError> {
        self.readers
            .read(|conn| passkeys::check(conn, session.as_str(), credential_id))
    }

    async fn update_session_with_passkey(
        &self,
        session: &Session,
        expected_sequence: u64,
        event: &NewEvent,
        used: &PasskeyUse,
    ) -> Result<bool, StoreError> {
        let (row, event) = session_rows(session, event)?;
        let expected = to_i64(expected_sequence);
        let used = used.clone();
        let written = self
            .writer
            .write(move |conn| {
                // The writer is the only writer: what it reads here stays true until it
                // commits.
                if !passkeys::use_is_current(conn, &used)? {
                    return Ok(false);
                }
                passkeys::use_passkey(conn, &used)?;
                users::end_check(
                    conn,
                    used.user_id.as_str(),
                    outcome_name(CheckOutcome::PassedUnregistered),
                )?;
                SESSION_WRITES.update(conn, &row, expected)?;
                EVENT_WRITES.insert(conn, &event)?;
                Ok(true)
            })
            .await?;
        if written {
            self.wake.wake();
        }
        Ok(written)
    }

    async fn insert_user_with(
        &self,
        user: &User,
        factors: &[StoredFactor],
        contacts: &[Contact],
    ) -> Result<(), StoreError> {
        let row = user_columns::encode(user)?;
        let factors: Vec<factors::FactorWrite> = factors
            .iter()
            .map(|f| factors::FactorWrite {
                factor: f.clone(),
                codes: None,
                revocation: None,
            })
            .collect();
        let contacts = contacts.to_vec();
        self.writer
            .write(move |conn| {
                USER_WRITES.insert(conn, &row)?;
                for write in &factors {
                    write.apply(conn)?;
                }
                for contact in &contacts {
                    factors::save_contact(conn, contact)?;
                }
                Ok(())
            })
            .await
    }

    async fn user_contacts(&self, user: &UserId) -> Result<Vec<Contact>, StoreError> {
        let user = user.as_str().to_owned();
        self.readers.read(|conn| factors::contacts(conn, &user))
    }

    async fn save_contact(&self, contact: &Contact) -> Result<(), StoreError> {
        let contact = contact.clone();
        self.writer
            .write(move |conn| factors::save_contact(conn, &contact))
            .await
    }

    async fn save_otp_challenge(&self, challenge: &OtpChallenge) -> Result<(), StoreError> {
        let challenge = challenge.clone();
        self.writer
            .write(move |conn| factors::save_challenge(conn, &challenge))
            .await
    }

    async fn otp_challenge(
        &self,
        session: &SessionId,
        kind: FactorKind,
    ) -> Result<Option<OtpChallenge>, StoreError> {
        self.readers
            .read(|conn| factors::challenge(conn, session.as_str(), kind.as_str()))
    }

    async fn prune(
        &self,
        terminated_before: Time,
        expired_before: Time,
        batch: u32,
    ) -> Result<PruneBatch, StoreError> {
        let (terminated, expired) = (
            terminated_before.unix_micros(),
            expired_before.unix_micros(),
        );
        self.writer
            .write(move |conn| maintenance::prune(conn, terminated, expired, batch))
            .await
    }

    async fn count_live_sessions(&self, now: Time) -> Result<u64, StoreError> {
        let now = now.unix_micros();
        self.readers
            .read_blocking(move |conn| maintenance::count_live_sessions(conn, now))
            .await
    }

    async fn feed_events(&self, query: &FeedQuery) -> Result<FeedPage, StoreError> {
        let query = query.clone();
        self.readers
            .read_blocking(move |conn| feed::page(conn, &query))
            .await
    }

    async fn feed_bounds(&self) -> Result<FeedBounds, StoreError> {
        self.readers.read(feed::bounds)
    }

    fn feed_wake(&self) -> FeedWake {
        self.wake.clone()
    }

    fn pools(&self) -> Vec<PoolStats> {
        let (open, idle) = self.readers.stats();
        vec![
            PoolStats {
                name: "sqlite_writer",
                open: 1,
                idle: usize::from(!self.writer.is_busy() && self.writer.queued() == 0),
            },
            PoolStats {
                name: "sqlite_reader",
                open,
                idle,
            },
        ]
    }

    async fn schema_ready(&self) -> Result<bool, StoreError> {
        self.readers.read_blocking(maintenance::schema_ready).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.readers.read(maintenance::ping)
    }
}
