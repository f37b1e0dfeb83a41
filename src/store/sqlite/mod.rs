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

mod readers;
mod writer;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, LazyLock, mpsc};

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params, params_from_iter};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use self::readers::{BUSY_TIMEOUT, Readers, start_checkpointer};
use self::writer::Writer;
use super::rows::{
    Columns, SqlBuilder, event_from_row, json, select_events, select_sessions, select_users,
    session_from_row, session_search, to_i64, user_from_row, user_sessions_search,
};
use super::{
    CheckOutcome, NewEvent, PasswordCheck, PoolStats, PruneBatch, Revocation, SessionPage, Store,
    StoreError, StoredEvent, UserListQuery,
};
use crate::domain::{
    LoginName, Session, SessionFilter, SessionId, Time, TokenHash, User, UserId, UserSessionsQuery,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Page cache of the writing connection, in KiB.
const WRITER_CACHE_KIB: i64 = 64 * 1024;

/// Size of the write-ahead log (pages) at which the writer checkpoints and restarts it.
const WAL_PAGES_BEFORE_RESTART: i64 = 16384;
/// The log file is cut back to this size (bytes) after it restarts.
const WAL_FILE_LIMIT: i64 = 64 * 1024 * 1024;

/// How often a commit reaches the disk (`PRAGMA synchronous`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// Survives a crash of the process; a power loss may lose the last commits.
    #[default]
    Normal,
    /// Survives a power loss too: the log is synced on every commit.
    Full,
}

impl std::fmt::Display for Synchronous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Normal => "normal",
            Self::Full => "full",
        })
    }
}

impl FromStr for Synchronous {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "normal" => Ok(Self::Normal),
            "full" => Ok(Self::Full),
            other => Err(format!(
                "unknown synchronous mode {other:?}: use normal or full"
            )),
        }
    }
}

#[derive(Clone)]
pub struct SqliteStore {
    writer: Writer,
    readers: Arc<Readers>,
    /// Dropping the last clone stops the checkpointer.
    _checkpointer: Arc<mpsc::Sender<()>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

/// The file a `sqlite://PATH` (or `sqlite:PATH`) URL names; query parameters are ignored.
fn database_path(url: &str) -> Result<PathBuf, StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::Internal(format!("not a sqlite URL: {url}").into()))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::Internal(
            "an in-memory SQLite database is not supported: give a file path, e.g. \
             sqlite://./data/sessiond.db"
                .into(),
        ));
    }
    Ok(PathBuf::from(path))
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://PATH`) and applies pending
    /// migrations. `readers` bounds the reads that run on the blocking pool at once.
    pub async fn open(
        url: &str,
        readers: u32,
        synchronous: Synchronous,
    ) -> Result<Self, StoreError> {
        let path = database_path(url)?;
        migrate(&path).await?;
        let writer = open_writer(&path, synchronous)?;
        let (stop, stopped) = mpsc::channel();
        start_checkpointer(&path, stopped)?;
        Ok(Self {
            writer: Writer::start(writer).map_err(|e| StoreError::Internal(Box::new(e)))?,
            readers: Arc::new(Readers::new(&path, usize::try_from(readers).unwrap_or(4))),
            _checkpointer: Arc::new(stop),
        })
    }
}

/// Creates the file if needed, switches it to WAL and applies the migrations.
async fn migrate(path: &Path) -> Result<(), StoreError> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(|e| match e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => StoreError::Unavailable(Box::new(e)),
            other => StoreError::Internal(Box::new(other)),
        })?;
    let migrated = MIGRATOR.run(&pool).await.map_err(super::migration_error);
    pool.close().await;
    migrated
}

fn open_writer(path: &Path, synchronous: Synchronous) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(classify)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(classify)?;
    let synchronous = synchronous.to_string();
    for (name, value) in [
        ("journal_mode", "WAL"),
        ("synchronous", synchronous.as_str()),
        ("foreign_keys", "ON"),
        ("temp_store", "memory"),
    ] {
        // journal_mode answers with a row; the others with none.
        conn.pragma_update_and_check(None, name, value, |_| Ok(()))
            .optional()
            .map_err(classify)?;
    }
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
        .map_err(classify)?;
    // The checkpointer thread copies the log into the database as it grows; the writer only
    // checkpoints when the log reaches this size, by then copying just the last few pages,
    // after which the log starts over from its beginning.
    conn.pragma_update(None, "wal_autocheckpoint", WAL_PAGES_BEFORE_RESTART)
        .map_err(classify)?;
    conn.pragma_update_and_check(None, "journal_size_limit", WAL_FILE_LIMIT, |_| Ok(()))
        .map_err(classify)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn classify(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(failure, message) => match failure.code {
            ErrorCode::ConstraintViolation => {
                let message = message.as_deref().unwrap_or_default();
                if message.contains("login_name") {
                    StoreError::Duplicate("login name")
                } else if message.contains("session_events") {
                    StoreError::Conflict
                } else if message.contains("UNIQUE") || message.contains("PRIMARY KEY") {
                    StoreError::Duplicate("id")
                } else {
                    StoreError::Internal(Box::new(e))
                }
            }
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull => StoreError::Unavailable(Box::new(e)),
            _ => StoreError::Internal(Box::new(e)),
        },
        _ => StoreError::Internal(Box::new(e)),
    }
}

impl Columns for rusqlite::Row<'_> {
    fn text(&self, i: usize) -> Result<Option<String>, StoreError> {
        self.get(i).map_err(classify)
    }

    fn int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        self.get(i).map_err(classify)
    }

    fn blob(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(i).map_err(classify)
    }
}

/// A dynamic query: SQL with `?` placeholders and its parameters in order.
struct Query {
    sql: String,
    params: Vec<Value>,
}

impl Query {
    fn new(sql: &str) -> Self {
        Self {
            sql: sql.to_owned(),
            params: Vec::new(),
        }
    }
}

impl SqlBuilder for Query {
    fn sql(&mut self, text: &str) -> &mut Self {
        self.sql.push_str(text);
        self
    }

    fn bind_text(&mut self, value: String) -> &mut Self {
        self.sql.push('?');
        self.params.push(Value::Text(value));
        self
    }

    fn bind_int(&mut self, value: i64) -> &mut Self {
        self.sql.push('?');
        self.params.push(Value::Integer(value));
        self
    }
}

/// A session's columns, encoded on the caller's thread so the writer only runs statements.
struct SessionRow {
    id: String,
    user_id: Option<String>,
    user_verified_at: Option<i64>,
    password_verified_at: Option<i64>,
    metadata: String,
    user_agent: String,
    fingerprint_id: Option<String>,
    expiration: Option<i64>,
    change_date: i64,
    sequence: i64,
    token_hash: [u8; 32],
    terminated_at: Option<i64>,
    creator: String,
    resource_owner: String,
    creation_date: i64,
}

impl SessionRow {
    fn new(s: &Session) -> Result<Self, StoreError> {
        let user = s.factors.user.as_ref();
        Ok(Self {
            id: s.id.as_str().to_owned(),
            user_id: user.map(|u| u.id.as_str().to_owned()),
            user_verified_at: user.map(|u| u.verified_at.unix_micros()),
            password_verified_at: s.factors.password_verified_at.map(Time::unix_micros),
            metadata: json(&s.metadata)?,
            user_agent: json(&s.user_agent)?,
            fingerprint_id: s.user_agent.fingerprint_id.clone(),
            expiration: s.expiration.map(Time::unix_micros),
            change_date: s.change_date.unix_micros(),
            sequence: to_i64(s.sequence),
            token_hash: *s.token_hash.as_bytes(),
            terminated_at: s.terminated_at.map(Time::unix_micros),
            creator: s.creator.clone(),
            resource_owner: s.resource_owner.clone(),
            creation_date: s.creation_date.unix_micros(),
        })
    }
}

/// The columns a session update may change, in this order in [`SessionRow::changeable`].
const CHANGEABLE_COLUMNS: [&str; 11] = [
    "user_id",
    "user_verified_at",
    "password_verified_at",
    "metadata",
    "user_agent",
    "fingerprint_id",
    "expiration",
    "change_date",
    "sequence",
    "token_hash",
    "terminated_at",
];

/// Reads [`CHANGEABLE_COLUMNS`] of a session at an expected sequence.
static SELECT_CHANGEABLE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM sessions WHERE id = ? AND sequence = ?",
        CHANGEABLE_COLUMNS.join(", ")
    )
});

impl SessionRow {
    fn changeable(&self) -> [Value; 11] {
        let int = |v: Option<i64>| v.map_or(Value::Null, Value::Integer);
        let text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::Text);
        [
            text(&self.user_id),
            int(self.user_verified_at),
            int(self.password_verified_at),
            Value::Text(self.metadata.clone()),
            Value::Text(self.user_agent.clone()),
            text(&self.fingerprint_id),
            int(self.expiration),
            Value::Integer(self.change_date),
            Value::Integer(self.sequence),
            Value::Blob(self.token_hash.to_vec()),
            int(self.terminated_at),
        ]
    }

    /// Writes the row over the stored one if that is still at `expected` sequence. Only the
    /// columns that differ are set: every indexed column left out is an index entry SQLite
    /// does not rewrite (a termination touches the row and the two live-session indexes,
    /// not the token and user indexes).
    fn update(&self, conn: &Connection, expected: i64) -> Result<(), StoreError> {
        let mut statement = conn.prepare_cached(&SELECT_CHANGEABLE).map_err(classify)?;
        let stored: Option<[Value; 11]> = statement
            .query_row(params![self.id, expected], |row| {
                let mut values = [const { Value::Null }; 11];
                for (i, value) in values.iter_mut().enumerate() {
                    *value = row.get(i)?;
                }
                Ok(values)
            })
            .optional()
            .map_err(classify)?;
        let Some(stored) = stored else {
            return Err(StoreError::Conflict);
        };
        let mut sql = String::from("UPDATE sessions SET ");
        let mut values = Vec::with_capacity(13);
        for ((column, new), old) in CHANGEABLE_COLUMNS.iter().zip(self.changeable()).zip(stored) {
            if new != old {
                if !values.is_empty() {
                    sql.push_str(", ");
                }
                sql.push_str(column);
                sql.push_str(" = ?");
                values.push(new);
            }
        }
        if values.is_empty() {
            return Ok(());
        }
        sql.push_str(" WHERE id = ?");
        values.push(Value::Text(self.id.clone()));
        conn.prepare_cached(&sql)
            .and_then(|mut st| st.execute(params_from_iter(values)))
            .map(drop)
            .map_err(classify)
    }
}

/// An event's columns, encoded on the caller's thread.
struct EventRow {
    session_id: String,
    sequence: i64,
    event_type: &'static str,
    payload: String,
    created_at: i64,
    editor: String,
}

impl EventRow {
    fn new(session_id: &SessionId, sequence: u64, event: &NewEvent) -> Result<Self, StoreError> {
        Ok(Self {
            session_id: session_id.as_str().to_owned(),
            sequence: to_i64(sequence),
            event_type: event.event_type,
            payload: json(&event.payload)?,
            created_at: event.created_at.unix_micros(),
            editor: event.editor.clone(),
        })
    }

    fn insert(&self, conn: &Connection) -> Result<(), StoreError> {
        conn.prepare_cached(
            "INSERT INTO session_events (session_id, sequence, event_type, payload, created_at, \
             editor) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .and_then(|mut st| {
            st.execute(params![
                self.session_id,
                self.sequence,
                self.event_type,
                self.payload,
                self.created_at,
                self.editor,
            ])
        })
        .map(drop)
        .map_err(classify)
    }
}

/// A user's columns, owned so they can travel to the writer.
struct UserRow {
    id: String,
    login_name: String,
    login_name_folded: String,
    display_name: String,
    organization_id: String,
    state: &'static str,
    password_hash: Option<String>,
    failed_password_attempts: i64,
    created_at: i64,
    updated_at: i64,
}

impl UserRow {
    fn new(user: &User) -> Self {
        Self {
            id: user.id.as_str().to_owned(),
            login_name: user.login_name.as_str().to_owned(),
            login_name_folded: user.login_name.folded().to_owned(),
            display_name: user.display_name.clone(),
            organization_id: user.organization_id.clone(),
            state: user.state.as_str(),
            password_hash: user.password_hash.clone(),
            failed_password_attempts: i64::from(user.failed_password_attempts),
            created_at: user.created_at.unix_micros(),
            updated_at: user.updated_at.unix_micros(),
        }
    }
}

/// A bulk revocation, owned.
struct RevocationRow {
    user: String,
    except: String,
    payload: String,
    at: i64,
    editor: String,
}

impl RevocationRow {
    fn new(
        user: &UserId,
        except: Option<&SessionId>,
        revocation: &Revocation,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            user: user.as_str().to_owned(),
            except: except.map(|id| id.as_str().to_owned()).unwrap_or_default(),
            payload: json(&serde_json::json!({ "reason": revocation.reason }))?,
            at: revocation.at.unix_micros(),
            editor: revocation.editor.clone(),
        })
    }

    /// Terminates the user's live sessions (but `except`): one event per session, sequence
    /// + 1, then the rows themselves.
    fn apply(&self, conn: &Connection) -> Result<u64, StoreError> {
        conn.prepare_cached(
            "INSERT INTO session_events (session_id, sequence, event_type, payload, created_at, \
             editor) SELECT id, sequence + 1, 'session.terminated', ?, ?, ? FROM sessions \
             WHERE user_id = ? AND id <> ? AND terminated_at IS NULL",
        )
        .and_then(|mut st| {
            st.execute(params![
                self.payload,
                self.at,
                self.editor,
                self.user,
                self.except
            ])
        })
        .map_err(classify)?;
        let done = conn
            .prepare_cached(
                "UPDATE sessions SET terminated_at = ?, change_date = ?, sequence = sequence + 1 \
                 WHERE user_id = ? AND id <> ? AND terminated_at IS NULL",
            )
            .and_then(|mut st| st.execute(params![self.at, self.at, self.user, self.except]))
            .map_err(classify)?;
        Ok(done as u64)
    }
}

/// The rows of a prepared statement, decoded.
fn all_rows<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    decode: impl Fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut statement = conn.prepare_cached(sql).map_err(classify)?;
    let mut rows = statement.query(params).map_err(classify)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(classify)? {
        out.push(decode(row)?);
    }
    Ok(out)
}

/// The first row of a prepared statement, decoded, if there is one.
fn first_row<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    decode: impl Fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let mut statement = conn.prepare_cached(sql).map_err(classify)?;
    let mut rows = statement.query(params).map_err(classify)?;
    rows.next().map_err(classify)?.map(decode).transpose()
}

/// Runs a count and a page of sessions in one read transaction (one snapshot).
fn session_page(
    conn: &Connection,
    (count, select): (Query, Query),
) -> Result<SessionPage, StoreError> {
    let tx = conn.unchecked_transaction().map_err(classify)?;
    let total: i64 = tx
        .prepare_cached(&count.sql)
        .and_then(|mut st| st.query_row(params_from_iter(count.params), |row| row.get(0)))
        .map_err(classify)?;
    let sessions = all_rows(&tx, &select.sql, params_from_iter(select.params), |row| {
        session_from_row(row)
    })?;
    tx.commit().map_err(classify)?;
    Ok(SessionPage {
        sessions,
        total: u64::try_from(total).unwrap_or_default(),
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_session(&self, session: &Session, event: &NewEvent) -> Result<(), StoreError> {
        let row = SessionRow::new(session)?;
        let event = EventRow::new(&session.id, session.sequence, event)?;
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO sessions (user_id, user_verified_at, password_verified_at, \
                     metadata, user_agent, fingerprint_id, expiration, change_date, sequence, \
                     token_hash, terminated_at, creator, resource_owner, creation_date, id) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        row.user_id,
                        row.user_verified_at,
                        row.password_verified_at,
                        row.metadata,
                        row.user_agent,
                        row.fingerprint_id,
                        row.expiration,
                        row.change_date,
                        row.sequence,
                        row.token_hash.as_slice(),
                        row.terminated_at,
                        row.creator,
                        row.resource_owner,
                        row.creation_date,
                        row.id,
                    ])
                })
                .map_err(classify)?;
                event.insert(conn)
            })
            .await
    }

    async fn update_session(
        &self,
        session: &Session,
        expected_sequence: u64,
        event: &NewEvent,
    ) -> Result<(), StoreError> {
        let row = SessionRow::new(session)?;
        let event = EventRow::new(&session.id, session.sequence, event)?;
        let expected = to_i64(expected_sequence);
        self.writer
            .write(move |conn| {
                row.update(conn, expected)?;
                event.insert(conn)
            })
            .await
    }

    async fn session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        self.readers.read(|conn| {
            first_row(
                conn,
                select_sessions!(" WHERE s.id = ?"),
                [id.as_str()],
                |row| session_from_row(row),
            )
        })
    }

    async fn session_by_token(&self, hash: &TokenHash) -> Result<Option<Session>, StoreError> {
        self.readers.read(|conn| {
            first_row(
                conn,
                select_sessions!(" WHERE s.token_hash = ?"),
                [hash.as_bytes().as_slice()],
                |row| session_from_row(row),
            )
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
                all_rows(
                    conn,
                    select_events!(" WHERE session_id = ? ORDER BY sequence"),
                    [id],
                    |row| event_from_row(row),
                )
            })
            .await
    }

    async fn insert_user(&self, user: &User) -> Result<(), StoreError> {
        let row = UserRow::new(user);
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO users (id, login_name, login_name_folded, display_name, \
                     organization_id, state, password_hash, failed_password_attempts, \
                     created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        row.id,
                        row.login_name,
                        row.login_name_folded,
                        row.display_name,
                        row.organization_id,
                        row.state,
                        row.password_hash,
                        row.failed_password_attempts,
                        row.created_at,
                        row.updated_at,
                    ])
                })
                .map(drop)
                .map_err(classify)
            })
            .await
    }

    async fn user(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        self.readers.read(|conn| {
            first_row(conn, select_users!(" WHERE id = ?"), [id.as_str()], |row| {
                user_from_row(row)
            })
        })
    }

    async fn user_by_login_name(&self, name: &LoginName) -> Result<Option<User>, StoreError> {
        self.readers.read(|conn| {
            first_row(
                conn,
                select_users!(" WHERE login_name_folded = ?"),
                [name.folded()],
                |row| user_from_row(row),
            )
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
        let (now, stale_before, max) = (
            now.unix_micros(),
            stale_before.unix_micros(),
            i64::from(max_failures),
        );
        self.writer
            .write(move |conn| {
                let granted: Option<i64> = conn
                    .prepare_cached(
                        "UPDATE users SET \
                         password_checks_pending = CASE WHEN password_checks_pending_since < ?1 \
                             THEN 1 ELSE password_checks_pending + 1 END, \
                         password_checks_pending_since = ?2 \
                         WHERE id = ?3 AND state = 'active' AND (?4 = 0 OR \
                             failed_password_attempts + CASE WHEN password_checks_pending_since \
                             < ?1 THEN 0 ELSE password_checks_pending END < ?4) \
                         RETURNING failed_password_attempts",
                    )
                    .and_then(|mut st| {
                        st.query_row(params![stale_before, now, id, max], |row| row.get(0))
                            .optional()
                    })
                    .map_err(classify)?;
                if let Some(failures) = granted {
                    return Ok(PasswordCheck::Granted {
                        failures: u32::try_from(failures).unwrap_or(u32::MAX),
                    });
                }
                // Refused: locked (too many failures, or no longer active), or busy.
                let current: Option<(i64, String)> = conn
                    .prepare_cached(
                        "SELECT failed_password_attempts, state FROM users WHERE id = ?",
                    )
                    .and_then(|mut st| {
                        st.query_row([&id], |row| Ok((row.get(0)?, row.get(1)?)))
                            .optional()
                    })
                    .map_err(classify)?;
                Ok(match current {
                    Some((_, state)) if state != "active" => PasswordCheck::Locked,
                    Some((f, _)) if max > 0 && f >= max => PasswordCheck::Locked,
                    Some(_) => PasswordCheck::Busy,
                    None => PasswordCheck::Locked,
                })
            })
            .await
    }

    async fn end_password_check(
        &self,
        id: &UserId,
        outcome: CheckOutcome,
    ) -> Result<u32, StoreError> {
        let outcome = match outcome {
            CheckOutcome::Passed => "passed",
            CheckOutcome::Failed => "failed",
            CheckOutcome::Aborted => "aborted",
        };
        let id = id.as_str().to_owned();
        let failures: Option<i64> = self
            .writer
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE users SET password_checks_pending = \
                     MAX(password_checks_pending - 1, 0), \
                     failed_password_attempts = CASE ?1 WHEN 'passed' THEN 0 WHEN 'failed' \
                         THEN failed_password_attempts + 1 ELSE failed_password_attempts END \
                     WHERE id = ?2 RETURNING failed_password_attempts",
                )
                .and_then(|mut st| {
                    st.query_row(params![outcome, id], |row| row.get(0))
                        .optional()
                })
                .map_err(classify)
            })
            .await?;
        Ok(failures.map_or(0, |f| u32::try_from(f).unwrap_or(u32::MAX)))
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
        self.writer.write(move |conn| revocation.apply(conn)).await
    }

    async fn update_user(
        &self,
        user: &User,
        revoke: Option<&Revocation>,
    ) -> Result<u64, StoreError> {
        let row = UserRow::new(user);
        let revocation = revoke
            .map(|r| RevocationRow::new(&user.id, None, r))
            .transpose()?;
        self.writer
            .write(move |conn| {
                let updated = conn
                    .prepare_cached(
                        "UPDATE users SET login_name = ?, login_name_folded = ?, \
                         display_name = ?, organization_id = ?, state = ?, password_hash = ?, \
                         failed_password_attempts = ?, updated_at = ? WHERE id = ?",
                    )
                    .and_then(|mut st| {
                        st.execute(params![
                            row.login_name,
                            row.login_name_folded,
                            row.display_name,
                            row.organization_id,
                            row.state,
                            row.password_hash,
                            row.failed_password_attempts,
                            row.updated_at,
                            row.id,
                        ])
                    })
                    .map_err(classify)?;
                if updated != 1 {
                    return Err(StoreError::Conflict);
                }
                match revocation {
                    Some(revocation) => revocation.apply(conn),
                    None => Ok(0),
                }
            })
            .await
    }

    async fn list_users(&self, query: &UserListQuery) -> Result<(Vec<User>, u64), StoreError> {
        let folded = query.login_name.as_ref().map(|n| n.folded().to_owned());
        let (limit, offset) = (i64::from(query.limit), to_i64(query.offset));
        self.readers
            .read_blocking(move |conn| {
                let tx = conn.unchecked_transaction().map_err(classify)?;
                let total: i64 = tx
                    .prepare_cached(
                        "SELECT COUNT(*) FROM users WHERE ?1 IS NULL OR login_name_folded = ?1",
                    )
                    .and_then(|mut st| st.query_row([&folded], |row| row.get(0)))
                    .map_err(classify)?;
                let users = all_rows(
                    &tx,
                    select_users!(
                        " WHERE ?1 IS NULL OR login_name_folded = ?1 \
                         ORDER BY login_name_folded LIMIT ?2 OFFSET ?3"
                    ),
                    params![folded, limit, offset],
                    |row| user_from_row(row),
                )?;
                tx.commit().map_err(classify)?;
                Ok((users, u64::try_from(total).unwrap_or_default()))
            })
            .await
    }

    async fn secret(&self, name: &str) -> Result<[u8; 32], StoreError> {
        let mut fresh = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut fresh);
        let name = name.to_owned();
        let value: Vec<u8> = self
            .writer
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO server_secrets (name, value) VALUES (?, ?) \
                     ON CONFLICT (name) DO NOTHING",
                    params![name, fresh.as_slice()],
                )
                .map_err(classify)?;
                conn.query_row(
                    "SELECT value FROM server_secrets WHERE name = ?",
                    [&name],
                    |row| row.get(0),
                )
                .map_err(classify)
            })
            .await?;
        <[u8; 32]>::try_from(value.as_slice())
            .map_err(|_| StoreError::Internal("a stored secret is not 32 bytes".into()))
    }

    async fn prune(
        &self,
        terminated_before: Time,
        expired_before: Time,
        batch: u32,
    ) -> Result<PruneBatch, StoreError> {
        let (terminated_before, expired_before) = (
            terminated_before.unix_micros(),
            expired_before.unix_micros(),
        );
        self.writer
            .write(move |conn| {
                let ids: Vec<String> = conn
                    .prepare_cached(
                        "SELECT id FROM sessions WHERE (terminated_at IS NOT NULL AND \
                         terminated_at < ?) OR (expiration IS NOT NULL AND expiration < ?) \
                         LIMIT ?",
                    )
                    .and_then(|mut st| {
                        st.query_map(
                            params![terminated_before, expired_before, i64::from(batch)],
                            |row| row.get(0),
                        )?
                        .collect()
                    })
                    .map_err(classify)?;
                let mut deleted = PruneBatch::default();
                let mut events = conn
                    .prepare_cached("DELETE FROM session_events WHERE session_id = ?")
                    .map_err(classify)?;
                let mut sessions = conn
                    .prepare_cached("DELETE FROM sessions WHERE id = ?")
                    .map_err(classify)?;
                for id in &ids {
                    deleted.events += events.execute([id]).map_err(classify)? as u64;
                    deleted.sessions += sessions.execute([id]).map_err(classify)? as u64;
                }
                Ok(deleted)
            })
            .await
    }

    async fn count_live_sessions(&self, now: Time) -> Result<u64, StoreError> {
        let now = now.unix_micros();
        let n: i64 = self
            .readers
            .read_blocking(move |conn| {
                conn.prepare_cached(
                    "SELECT COUNT(*) FROM sessions WHERE terminated_at IS NULL \
                     AND (expiration IS NULL OR expiration > ?)",
                )
                .and_then(|mut st| st.query_row([now], |row| row.get(0)))
                .map_err(classify)
            })
            .await?;
        Ok(u64::try_from(n).unwrap_or_default())
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
        let applied: Vec<i64> = match self
            .readers
            .read_blocking(|conn| {
                conn.prepare("SELECT version FROM _sqlx_migrations WHERE success")
                    .and_then(|mut st| st.query_map([], |row| row.get(0))?.collect())
                    .map_err(classify)
            })
            .await
        {
            Ok(versions) => versions,
            Err(StoreError::Internal(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        Ok(super::migrations_applied(&MIGRATOR, &applied))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.readers
            .read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(classify))
    }
}
