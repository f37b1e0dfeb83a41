//! Opening the SQLite database: the file a URL names, migrations (sqlx's migrator, the same
//! `_sqlx_migrations` bookkeeping as the PostgreSQL store), the writing connection's pragmas,
//! and what a rusqlite error means to the core. It runs no statement on the data.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::store::StoreError;

/// How long a statement waits for a lock before failing with "busy".
pub const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Page cache of the writing connection, in KiB.
pub const WRITER_CACHE_KIB: i64 = 64 * 1024;

/// Size of the write-ahead log (pages) at which the writer checkpoints and restarts it
/// (about 270 MB of frames). Under steady writes that checkpoint, and the sync of the log's
/// header at the first commit after it, are the disk waits on a request's path
/// (`readers::start_checkpointer`): a large log makes them rare. The checkpointer keeps the
/// log copied back, so readers search only its newest frames whatever its size, and empties
/// it once writes stop.
pub const WAL_PAGES_BEFORE_RESTART: i64 = 65536;
/// The log file is cut back to this size (bytes) after it restarts: above the restart size,
/// so a busy log is overwritten in place, never shortened (and its blocks freed and
/// discarded) on the writer's path.
pub const WAL_FILE_LIMIT: i64 = 280 * 1024 * 1024;

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

/// The file a `sqlite://PATH` (or `sqlite:PATH`) URL names; query parameters are ignored.
pub fn database_path(url: &str) -> Result<PathBuf, StoreError> {
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

/// Creates the file if needed, switches it to WAL and applies the migrations.
pub async fn migrate(path: &Path) -> Result<(), StoreError> {
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
    let migrated = MIGRATOR
        .run(&pool)
        .await
        .map_err(crate::store::migration_error);
    pool.close().await;
    migrated
}

/// Opens a connection of the store: through the store's VFS (`vfs`), which writes each
/// commit's log frames in one write.
pub fn connect(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    super::vfs::register().map_err(|e| StoreError::Internal(e.into()))?;
    Connection::open_with_flags_and_vfs(path, flags, super::vfs::NAME).map_err(classify)
}

pub fn open_writer(path: &Path, synchronous: Synchronous) -> Result<Connection, StoreError> {
    let conn = connect(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
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

pub fn classify(e: rusqlite::Error) -> StoreError {
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
